"""A step's error text and a stage's error are masked by the server before they are stored,
like log lines: a runner (or its engine) may quote what a step printed or was given."""

from __future__ import annotations

from tests.integration.server._support import PIPELINE, FakeRunner, Harness, wait_for

from bastion.rpc.messages import StepState

VALUE = "hunter2-but-longer-Qz7W"


def test_step_errors_and_stage_errors_are_masked_on_arrival(server: Harness) -> None:
    checkout = server.local_repo()
    repo = server.ctx.store.get_repo("acme", "web")
    assert repo is not None
    server.ctx.store.set_repo_secret(repo.id, "token", VALUE)
    checkout.commit({".drone.yml": PIPELINE}, "pipeline")
    checkout.push()
    wait_for(server.builds)
    runner = FakeRunner(server, "r1")
    lease = runner.poll()
    assert lease is not None
    sent = runner.step(lease, 1, StepState.FAILURE, exit_code=1, detail=f"died: TOKEN={VALUE}")
    assert sent.status_code == 204
    done = runner.complete(lease, StepState.FAILURE, error=f"stage failed near {VALUE}")
    assert done.status_code == 204
    build = server.admin.get("/api/repos/acme/web/builds/1")
    assert VALUE not in build.text
    stage = build.json()["stages"][0]
    assert stage["steps"][0]["error"] == "died: TOKEN=********"
    assert stage["error"] == "stage failed near ********"
