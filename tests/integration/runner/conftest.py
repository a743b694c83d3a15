"""Fixtures for runner tests: a fake RPC server on 127.0.0.1 and runners started against it.

``start_runner(...)`` runs a ``Runner`` (the real daemon) in a thread with a fast backoff,
by default on a ``FakeBackend``; every runner a test started is stopped at teardown, and the
test fails if it is still running afterwards.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

import pytest
from tests.integration.runner.fakerpc import FakeRpc, FakeRpcServer

from bastion.backends.fake import FakeBackend
from bastion.client import Backoff, RunnerClient
from bastion.engine.backend import Backend
from bastion.runner import Runner, RunnerError, RunnerSettings


@dataclass
class RunningRunner:
    runner: Runner
    stop: threading.Event
    thread: threading.Thread
    errors: list[BaseException] = field(default_factory=list)

    def halt(self, timeout: float = 30.0) -> None:
        self.stop.set()
        self.thread.join(timeout)
        assert not self.thread.is_alive(), "the runner did not stop"


@pytest.fixture
def rpc() -> FakeRpc:
    return FakeRpc()


@pytest.fixture
def server(rpc: FakeRpc) -> Iterator[FakeRpcServer]:
    srv = FakeRpcServer(rpc)
    srv.start()
    yield srv
    srv.stop()
    assert rpc.problems == [], rpc.problems


StartRunner = Callable[..., RunningRunner]


@pytest.fixture
def start_runner(server: FakeRpcServer, rpc: FakeRpc) -> Iterator[StartRunner]:
    started: list[RunningRunner] = []

    def start(
        backend: Backend | None = None,
        *,
        capacity: int = 2,
        name: str = "test-runner",
        token: str | None = None,
        **settings: float,
    ) -> RunningRunner:
        values: dict[str, float] = {"poll_wait": 0.5, "cleanup_interval": 60.0}
        values.update(settings)
        config = RunnerSettings(
            server=server.url,
            token=token or rpc.token,
            name=name,
            capacity=capacity,
            backend="fake",
            **values,  # type: ignore[arg-type]
        )
        client = RunnerClient(
            server.url, config.token, backoff=Backoff(initial=0.05, maximum=0.5), timeout=5.0
        )
        stop = threading.Event()
        runner = Runner(config, stop, backend=backend or FakeBackend(), rpc=client)
        errors: list[BaseException] = []

        def run() -> None:
            try:
                runner.run()
            except RunnerError as exc:
                errors.append(exc)

        thread = threading.Thread(target=run, name="test-runner", daemon=True)
        running = RunningRunner(runner, stop, thread, errors)
        thread.start()
        started.append(running)
        return running

    yield start
    for running in started:
        running.halt()
