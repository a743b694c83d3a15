"""``bastion runner`` as a real process, and the embedded runner of ``bastion server
--with-runner``, against the fake RPC server on 127.0.0.1 with the fake backend."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
from pathlib import Path

import pytest
from tests.integration.runner.fakerpc import FakeRpc, FakeRpcServer
from tests.unit.runner.factories import FAKE_CONFIG, stage_details

from bastion.cli.runner_cmd import start_embedded_runner
from bastion.rpc.messages import StepState

SLEEPY = FAKE_CONFIG.replace("BASTION_FAKE_OUTPUT: tests passed", "BASTION_FAKE_SLEEP: forever")


def test_the_runner_process_runs_a_stage_and_stops_cleanly_on_sigterm(
    tmp_path: Path, rpc: FakeRpc, server: FakeRpcServer
) -> None:
    token = tmp_path / "runner.token"
    token.write_text(rpc.token + "\n")
    token.chmod(0o600)
    rpc.add(stage_details(stage_id=1))
    rpc.add(stage_details(SLEEPY, stage_id=2))
    env = {k: v for k, v in os.environ.items() if not k.startswith(("BASTION_", "DRONE_"))}
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "bastion.cli.app",
            "runner",
            "--server",
            server.url,
            "--token-file",
            str(token),
            "--name",
            "proc",
            "--backend",
            "fake",
            "--capacity",
            "2",
        ],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert rpc.wait_complete(1, timeout=30).state is StepState.SUCCESS
        assert rpc.wait_for(lambda: ("steps", 2, "running") in rpc.step_events(2), timeout=30)
        process.send_signal(signal.SIGTERM)
        out, err = process.communicate(timeout=30)
    finally:
        if process.poll() is None:
            process.kill()
            process.communicate()
    assert process.returncode == 0, err
    assert "Traceback" not in out + err
    assert "SIGTERM: stopping" in err
    result = rpc.results[2]
    assert result.state is StepState.ERROR
    assert "proc was stopped" in result.error
    assert rpc.token not in out + err


def test_the_embedded_runner(
    rpc: FakeRpc, server: FakeRpcServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("BASTION_RUNNER_BACKEND", "fake")
    monkeypatch.delenv("BASTION_RUNNER_NAME", raising=False)
    rpc.add(stage_details(stage_id=3))
    stop = threading.Event()
    before = set(threading.enumerate())
    start_embedded_runner(server.url, rpc.token, ca_cert=None, stop=stop)
    try:
        assert rpc.wait_complete(3, timeout=30).state is StepState.SUCCESS
    finally:
        stop.set()
    runner_threads = [t for t in set(threading.enumerate()) - before if t.name == "embedded-runner"]
    for thread in runner_threads:
        thread.join(15)
        assert not thread.is_alive()
