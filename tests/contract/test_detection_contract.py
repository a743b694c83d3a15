"""The executor on every backend masks credentials nobody declared, also when a stderr write
cuts one in two on stdout and when a private key block is spread over both streams' turns."""

from __future__ import annotations

import pytest
from tests.contract.harness import Harness
from tests.support.plans import scripted_step
from tests.support.reporters import Recorder

from bastion.engine.executor import Executor
from bastion.engine.masking import SecretMasker, credential_marker
from bastion.engine.status import State
from bastion.spec.conditions import MatchContext
from bastion.spec.context import BuildContext

pytestmark = pytest.mark.timeout(120)

TOKEN = "ghp_" + "Zq9xKvB7wtLmP4Yr" * 2 + "Ab3D"
BODY = "MHcCAQEEIBkVx8Vh1Y3l2w5S0sR8xE0p3W9hV2yX4a1Q6m9N0bC3oAoGCCqGSM49"


def test_an_undeclared_token_cut_by_a_stderr_write_and_a_key_on_stderr(harness: Harness) -> None:
    key = f"-----BEGIN PRIVATE KEY-----\\n{BODY[:30]}\\|{BODY[30:]}\\n-----END PRIVATE KEY-----"
    step = scripted_step(
        "leaky",
        output=f"token={TOKEN[:10]}\\|{TOKEN[10:]}\\| done",
        stderr=f"warn\\|{key}",
    )
    plan = harness.plan([step])
    reporter = Recorder()

    result = Executor(harness.backend, SecretMasker([]), reporter, poll_interval=0.01).run(
        plan, MatchContext.from_build(BuildContext())
    )

    assert result.state is State.SUCCESS, result
    assert reporter.text("leaky", "stdout") == f"token={credential_marker('github-token')} done\n"
    marker = credential_marker("private-key")
    assert reporter.text("leaky", "stderr") == f"warn{marker}\n{marker}\n{marker}\n"
    everything = "".join(reporter.output.values())
    for piece in (TOKEN[:10], TOKEN[10:], BODY[:30], BODY[30:]):
        assert piece not in everything
    assert harness.leftovers(plan) == []
