"""Detected credentials on a real server: a runner's marker and a credential the runner let
through are both stored masked and audited once per step and kind, with where it happened
and never the value; a non-admin cannot read the events."""

from __future__ import annotations

from tests.integration.server._support import PIPELINE, FakeRunner, Harness, wait_for

from bastion.rpc.messages import StepState
from bastion.server.services.logs import CREDENTIAL_EVENT

TOKEN = "glpat-" + "Xk3vP9" * 4
KEY = [
    "-----BEGIN EC PRIVATE KEY-----",
    "MHcCAQEEIBkVx8Vh1Y3l2w5S0sR8xE0p3W9hV2yX4a1Q6m9N0bC3oAoGCCqGSM49",
    "AwEHoUQDQgAEXkWq0n2b5Yk8rV1sX9c3L7hJ2m4Q6t8W0aZ5d1e3F7g9h2K4m6P8",
    "-----END EC PRIVATE KEY-----",
]


def test_credentials_in_uploaded_logs_are_masked_and_audited(server: Harness) -> None:
    checkout = server.local_repo()
    checkout.commit({".drone.yml": PIPELINE}, "Pipeline")
    checkout.push()
    wait_for(server.builds)
    runner = FakeRunner(server, "r1")
    lease = runner.poll()
    assert lease is not None
    runner.step(lease, 1, StepState.RUNNING)
    lines = [
        "pushing with [masked: github-token]",  # the runner's masker did its job
        f"git clone https://oauth2:{TOKEN}@gitlab.example.com/g/p.git",  # it did not
        *KEY,
        f"again {TOKEN}",
    ]
    assert runner.logs(lease, 1, list(enumerate(lines))).status_code == 204
    runner.run(lease)

    logs = server.admin.get("/api/repos/acme/web/builds/1/logs/1/1").json()
    stored = [line["out"].rstrip("\n") for line in logs]
    assert stored == [
        "pushing with [masked: github-token]",
        "git clone https://oauth2:[masked: gitlab-token]@gitlab.example.com/g/p.git",
        *["[masked: private-key]"] * len(KEY),
        "again [masked: gitlab-token]",
    ]
    answer = server.admin.get("/api/audit", params={"kind": CREDENTIAL_EVENT})
    assert answer.status_code == 200
    events = answer.json()
    assert sorted(event["detail"]["kind"] for event in events) == [
        "github-token",
        "gitlab-token",
        "private-key",
    ]
    for event in events:
        assert (event["repo"], event["build"], event["stage"], event["runner"]) == (
            "acme/web",
            1,
            1,
            "r1",
        )
    everything = answer.text + str(logs)
    assert TOKEN not in everything
    assert all(line not in everything for line in KEY[1:3])
    for path in server.live.settings.log_dir.rglob("*.log"):
        assert TOKEN not in path.read_text()
    assert server.client(server.user_token("mallory")).get("/api/audit").status_code == 403
