"""Lockouts live in the database: guesses spread over two servers on one PostgreSQL database
add up to one lockout that both enforce, and a lockout survives a restart (SQLite)."""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from tests.integration.server._support import Harness, start_server
from tests.integration.store.conftest import postgres_admin_url, postgres_url

from bastion.crypto import new_token

__all__ = ["postgres_admin_url", "postgres_url"]  # fixtures, used by name


def _stop(server: Iterator[Harness]) -> None:
    for _ in server:  # runs the generator's cleanup: the server stops
        pass


def _guess(server: Harness) -> int:
    bearer = {"Authorization": f"Bearer {new_token('api')}"}
    return server.client().get("/api/user", headers=bearer).status_code


@pytest.mark.postgres
def test_two_servers_count_and_enforce_one_lockout(tmp_path: Path, postgres_url: str) -> None:
    shared: dict[str, Any] = {
        "database_url": postgres_url,
        "rpc_secret": secrets.token_hex(32),
        "database_secret": secrets.token_hex(32),
        "auth_source_limit": 4,
    }
    first = start_server(tmp_path, **shared)
    second = start_server(tmp_path, **shared)
    a = next(first)
    b = next(second)
    try:
        assert [_guess(a), _guess(b), _guess(a), _guess(b)] == [401] * 4
        assert _guess(a) == 429
        assert _guess(b) == 429
        assert b.admin.get("/api/user").status_code == 429
    finally:
        for generator in (first, second):
            _stop(generator)


def test_a_lockout_survives_a_restart(tmp_path: Path) -> None:
    settings: dict[str, Any] = {
        "rpc_secret": secrets.token_hex(32),
        "database_secret": secrets.token_hex(32),
        "auth_source_limit": 2,
    }
    first = start_server(tmp_path, **settings)
    server = next(first)
    assert [_guess(server), _guess(server), _guess(server)] == [401, 401, 429]
    _stop(first)
    second = start_server(tmp_path, **settings)
    again = next(second)
    try:
        assert again.admin.get("/api/user").status_code == 429
    finally:
        _stop(second)
