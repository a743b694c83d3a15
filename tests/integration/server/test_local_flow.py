"""A push to the local forge, through the post-receive hook, to a build a runner completes."""

from __future__ import annotations

import subprocess
import tempfile
import time
from pathlib import Path

from tests.integration.server._support import PIPELINE, FakeRunner, Harness, wait_for

from bastion.rpc.messages import PATH_SOURCE, StageDetails, StepState


def test_push_to_the_local_forge_starts_a_build_a_runner_completes(server: Harness) -> None:
    checkout = server.local_repo()
    sha = checkout.commit({".drone.yml": PIPELINE}, "Add the pipeline\n\nwith a body")
    output = checkout.push()
    assert "build requested" in output

    builds = wait_for(server.builds)
    build = builds[0]
    assert build["number"] == 1
    assert build["event"] == "push"
    assert build["after"] == sha
    assert build["target"] == "main"
    assert build["ref"] == "refs/heads/main"
    assert build["message"].startswith("Add the pipeline")
    assert build["author_name"] == "Ada Lovelace"
    assert build["status"] == "pending"

    runner = FakeRunner(server, "r1")
    lease = runner.poll()
    assert lease is not None
    details = runner.details(lease.stage_id, lease)
    assert details.status_code == 200
    stage = StageDetails.model_validate_json(details.content)
    assert stage.pipeline == "build"
    assert stage.config == PIPELINE.decode()
    assert stage.build.sha == sha
    assert stage.clone.kind == "bundle"
    assert stage.clone.url == PATH_SOURCE.format(stage_id=lease.stage_id)
    assert stage.secrets == {}

    source = runner.call("GET", stage.clone.url, lease)
    assert source.status_code == 200
    assert source.headers["content-type"] == "application/x-git-bundle"
    # The bundle's scratch directory is removed once it is sent.
    wait_for(lambda: not list(Path(tempfile.gettempdir()).glob("bastion-source-*")))
    bundle = server.tmp / "source.bundle"
    bundle.write_bytes(source.content)
    clone = server.tmp / "from-bundle"
    subprocess.run(["git", "clone", "--quiet", str(bundle), str(clone)], check=True, timeout=60)
    head = subprocess.run(
        ["git", "-C", str(clone), "rev-parse", "HEAD"], capture_output=True, text=True, check=True
    )
    assert head.stdout.strip() == sha

    assert server.build(1)["status"] == "running"
    beat = runner.heartbeat(lease)
    assert beat.status_code == 200
    assert beat.json()["cancel"] is False
    assert runner.step(lease, 1, StepState.RUNNING).status_code == 204
    assert runner.logs(lease, 1, [(0, "hello"), (1, "world")]).status_code == 204
    assert runner.step(lease, 1, StepState.SUCCESS, exit_code=0).status_code == 204
    assert runner.complete(lease, StepState.SUCCESS).status_code == 204

    done = server.build(1)
    assert done["status"] == "success"
    assert done["finished"] >= done["started"] > 0
    assert done["stages"][0]["status"] == "success"
    assert done["stages"][0]["machine"] == "r1"
    assert done["stages"][0]["steps"][0]["status"] == "success"
    logs = server.admin.get("/api/repos/acme/web/builds/1/logs/1/1").json()
    assert logs == [
        {"pos": 0, "out": "hello\n", "time": 0},
        {"pos": 1, "out": "world\n", "time": 1},
    ]

    # The lease ended with the stage: the runner may not touch it any more.
    assert runner.heartbeat(lease).status_code == 409


def test_custom_build_of_the_branch_head(server: Harness) -> None:
    checkout = server.local_repo()
    sha = checkout.commit({".drone.yml": PIPELINE}, "First")
    checkout.push()
    wait_for(server.builds)
    response = server.admin.post("/api/repos/acme/web/builds", params={"branch": "main"})
    assert response.status_code == 200, response.text
    build = response.json()
    assert build["event"] == "custom"
    assert build["after"] == sha
    assert build["sender"] == "admin"
    assert build["message"] == "First"
    assert [s["status"] for s in build["stages"]] == ["pending"]

    missing = server.admin.post("/api/repos/acme/web/builds", params={"branch": "nope"})
    assert missing.status_code == 400
    assert "no branch 'nope'" in missing.json()["message"]
    bad = server.admin.post("/api/repos/acme/web/builds", params={"branch": "--upload-pack=x"})
    assert bad.status_code == 400


def test_latest_build_and_pagination(server: Harness) -> None:
    checkout = server.local_repo()
    checkout.commit({".drone.yml": PIPELINE}, "First")
    checkout.push()
    wait_for(server.builds)
    for _ in range(3):
        server.admin.post("/api/repos/acme/web/builds").raise_for_status()
    page = server.admin.get("/api/repos/acme/web/builds", params={"page": 2, "per_page": 3})
    assert [b["number"] for b in page.json()] == [1]
    latest = server.admin.get("/api/repos/acme/web/builds/latest", params={"branch": "main"})
    assert latest.json()["number"] == 4
    none = server.admin.get("/api/repos/acme/web/builds/latest", params={"branch": "dev"})
    assert none.status_code == 404
    too_many = server.admin.get("/api/repos/acme/web/builds", params={"per_page": 101})
    assert too_many.status_code == 400
    assert "per_page" in too_many.json()["message"]


def test_a_forged_local_hook_is_refused(server: Harness) -> None:
    checkout = server.local_repo()
    sha = checkout.commit({".drone.yml": PIPELINE}, "First")
    body = (
        '{"owner":"acme","name":"web","updates":[{"before":"'
        + "0" * 40
        + '","after":"'
        + sha
        + '","ref":"refs/heads/main"}],"sent":'
        + str(int(time.time()))
        + "}"
    ).encode()
    headers = {"X-Bastion-Repo": "acme/web", "X-Bastion-Signature": "0" * 64}
    response = server.client().post("/hook/local", content=body, headers=headers)
    assert response.status_code == 401
    assert server.builds() == []


def test_openapi_is_served_without_the_runner_channel(server: Harness) -> None:
    spec = server.client().get("/openapi.json").json()
    assert "/api/repos/{owner}/{name}/builds" in spec["paths"]
    assert not any(path.startswith("/rpc") for path in spec["paths"])
    assert server.client().get("/docs").status_code == 200
