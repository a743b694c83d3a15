"""Fixtures of the server tests: a real server in a thread (see ``_support``), its
environment cleaned of ``BASTION_*`` / ``DRONE_*`` variables."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import pytest
from tests.integration.server._support import FakeForge, Harness, start_server


@pytest.fixture(autouse=True)
def _clean_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in list(os.environ):
        if name.startswith(("BASTION_", "DRONE_")):
            monkeypatch.delenv(name)


@pytest.fixture
def forge() -> FakeForge:
    return FakeForge()


@pytest.fixture
def server(tmp_path: Path, forge: FakeForge) -> Iterator[Harness]:
    yield from start_server(tmp_path, {"github": forge, "gitea": forge, "gitlab": forge})


@pytest.fixture
def make_server(tmp_path: Path, forge: FakeForge) -> Iterator[Callable[..., Harness]]:
    """Start a server with settings of the test's choosing (``lease_seconds=1`` ...)."""
    with ExitStack() as stack:

        def make(**overrides: Any) -> Harness:
            generator = start_server(
                tmp_path, {"github": forge, "gitea": forge, "gitlab": forge}, **overrides
            )
            harness = next(generator)
            stack.callback(lambda: next(generator, None))
            return harness

        yield make
