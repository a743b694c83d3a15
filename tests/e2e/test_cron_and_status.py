"""Real processes (``bastion server``, a runner on the fake backend, the ``bastion`` CLI): a
cron job added with the CLI fires from the server's own loop, builds its branch with
``DRONE_CRON`` set, and runs; a GitHub webhook build reports ``pending`` and then
``success`` to the forge's commit status API, with the server's token, on the pushed commit.
"""

from __future__ import annotations

import json
import threading
import uuid
from collections.abc import Iterator
from http.server import ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from tests.e2e._forge import FakeForge, _handler
from tests.e2e._support import Stack, create_local_repo, new_checkout, push, wait_for
from tests.e2e.test_webhooks import (
    GITEA_TOKEN,
    GITHUB,
    GITHUB_TOKEN,
    forge_server,
    push_payload,
    register,
    signed_headers,
)

pytestmark = [pytest.mark.slow]

CRON_PIPELINE = """\
kind: pipeline
type: docker
name: nightly
trigger:
  event: [cron]
steps:
  - name: show
    image: bastion/busybox:latest
    environment:
      BASTION_FAKE_OUTPUT: "cron=${DRONE_CRON} event=${DRONE_BUILD_EVENT} branch=${DRONE_BRANCH}"
"""

STATUS_PIPELINE = """\
kind: pipeline
type: docker
name: default
steps:
  - name: show
    image: bastion/busybox:latest
    environment:
      BASTION_FAKE_OUTPUT: "hello"
"""


class StatusForge(FakeForge):
    """The e2e fake forge, plus GitHub's commit status endpoint (statuses recorded with
    whether they carried the forge's token)."""

    def __init__(self, root: Path, *, api_tokens: dict[str, str]) -> None:
        super().__init__(root, api_tokens=api_tokens)
        self.statuses: list[tuple[str, dict[str, Any], bool]] = []
        self._http.server_close()
        forge = self

        class Handler(_handler(self)):  # type: ignore[misc]  # a class made at run time
            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length", "0") or 0)
                body = self.rfile.read(length)
                parts = self.path.split("?")[0].strip("/").split("/")
                ok = self.headers.get("Authorization", "") == (
                    f"Bearer {forge.api_tokens.get('github', '')}"
                )
                if parts[:3] != ["api", "v3", "repos"] or parts[5:6] != ["statuses"]:
                    self._send(404, b'{"message": "Not Found"}', "application/json")
                    return
                with forge._lock:
                    forge.statuses.append((parts[6], json.loads(body), ok))
                self._send(201 if ok else 401, b"{}", "application/json")

        self._http = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._http.daemon_threads = True
        self._thread = threading.Thread(target=self._http.serve_forever, daemon=True)

    def posted(self) -> list[tuple[str, dict[str, Any], bool]]:
        with self._lock:
            return list(self.statuses)


@pytest.fixture
def status_forge(tmp_path: Path) -> Iterator[StatusForge]:
    fake = StatusForge(
        tmp_path / "forge", api_tokens={"github": GITHUB_TOKEN, "gitea": GITEA_TOKEN}
    )
    fake.start()
    try:
        yield fake
    finally:
        fake.stop()


def test_a_cron_job_added_with_the_cli_fires_from_the_servers_loop(stack: Stack) -> None:
    server = stack.server(env={"BASTION_CRON_INTERVAL": "0.5"})
    checkout, url = create_local_repo(stack, server, "acme/nightly")
    push(checkout, url, CRON_PIPELINE, "A nightly pipeline")
    stack.runner(server, "r1", backend="fake")

    added = stack.cli(
        server, "cron", "add", "acme/nightly", "often", "*/2 * * * * *", "--format", "json"
    )
    assert json.loads(added.stdout)["branch"] == "main"
    api = stack.api(server)

    def cron_build() -> dict[str, Any] | None:
        builds = api.get("/api/repos/acme/nightly/builds").json()
        done = [b for b in builds if b["event"] == "cron" and b["status"] == "success"]
        return done[-1] if done else None

    build = wait_for(cron_build, 60, "a cron build")
    stack.cli(server, "cron", "update", "acme/nightly", "often", "--disable")
    assert (build["cron"], build["target"], build["trigger"]) == ("often", "main", "@cron")
    full = stack.build(server, "acme/nightly", build["number"])
    step = full["stages"][0]["steps"][0]
    lines = [
        line["out"]
        for line in stack.logs(server, "acme/nightly", build["number"], 1, step["number"])
    ]
    assert "cron=often event=cron branch=main\n" in lines

    info = json.loads(
        stack.cli(server, "cron", "info", "acme/nightly", "often", "--format", "json").stdout
    )
    assert info["prev"] > 0
    assert info["disabled"] is True
    executed = stack.cli(server, "cron", "exec", "acme/nightly", "often", "--format", "json")
    assert json.loads(executed.stdout)["event"] == "cron"


def test_a_github_build_reports_its_states_to_the_forge(
    stack: Stack, status_forge: StatusForge
) -> None:
    server = forge_server(stack, status_forge)
    stack.runner(server, "r1", backend="fake")
    secret = register(stack, server, status_forge, GITHUB)
    checkout = new_checkout(stack.tmp / "work-status", stack.tmp / "home")
    sha = checkout.commit({".drone.yml": STATUS_PIPELINE, "README.md": "hi\n"}, "Pipeline")
    status_forge.publish(checkout.path, GITHUB.owner, GITHUB.name)
    body = push_payload(GITHUB, sha)
    response = stack.api(server, token=None).post(
        "/hook",
        params={"repo": GITHUB.slug},
        content=body,
        headers=signed_headers(GITHUB, body, secret, str(uuid.uuid4())),
    )
    assert response.status_code == 200, response.text
    build = stack.wait_build(server, GITHUB.slug, 1)
    assert build["status"] == "success", build

    def reported() -> list[tuple[str, dict[str, Any], bool]] | None:
        posted = status_forge.posted()
        return posted if posted and posted[-1][1]["state"] == "success" else None

    posted = wait_for(reported, 30, "the success status")
    assert {p[0] for p in posted} == {sha}
    assert all(ok for _, _, ok in posted)
    assert posted[0][1]["state"] == "pending"
    assert posted[-1][1] == {
        "state": "success",
        "context": "continuous-integration/bastion/push",
        "description": "the build succeeded",
        "target_url": f"{server.url}/{GITHUB.slug}/1",
    }
