"""Fixtures of the server unit tests: the real store on SQLite in the test's directory."""

from __future__ import annotations

import os
import secrets
from collections.abc import Iterator
from pathlib import Path

import pytest

from bastion.store import Store


@pytest.fixture(autouse=True)
def _clean_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in list(os.environ):
        if name.startswith(("BASTION_", "DRONE_")):
            monkeypatch.delenv(name)


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    db = Store(f"sqlite:///{tmp_path / 'bastion.db'}", secret_key=secrets.token_bytes(32))
    db.migrate()
    yield db
    db.close()
