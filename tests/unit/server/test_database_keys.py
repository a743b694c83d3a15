"""The database keys: from the environment or a private key file, previous keys from a list
or a file; refusals name the setting (and file, line or entry) and never echo key material."""

from __future__ import annotations

import os
import secrets
from pathlib import Path
from typing import Any

import pytest

from bastion.server.database_keys import DatabaseKeyError, load_database_keys
from bastion.server.settings import ServerSettings, SettingsError, dev_defaults

CURRENT = secrets.token_hex(32)
OLD_1 = secrets.token_hex(32)
OLD_2 = secrets.token_hex(32)


@pytest.fixture(autouse=True)
def _clean_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in list(os.environ):
        if name.startswith(("BASTION_", "DRONE_")):
            monkeypatch.delenv(name)


def settings(tmp_path: Path, **values: Any) -> ServerSettings:
    base: dict[str, Any] = {"data_dir": tmp_path, "rpc_secret": secrets.token_hex(32)}
    base.update(values)
    return ServerSettings(**base)


def key_file(path: Path, content: str, mode: int = 0o600) -> Path:
    path.write_text(content)
    path.chmod(mode)
    return path


def problems(s: ServerSettings) -> str:
    with pytest.raises(DatabaseKeyError) as info:
        load_database_keys(s)
    text = "\n".join(info.value.problems)
    for key in (CURRENT, OLD_1, OLD_2):
        assert key not in text
    return text


def test_from_the_environment_with_previous_keys(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("BASTION_DATABASE_SECRET", CURRENT)
    monkeypatch.setenv("BASTION_DATABASE_SECRET_PREVIOUS", f"{OLD_1}, {OLD_2},{CURRENT},")
    keys = load_database_keys(settings(tmp_path))
    assert keys.current == bytes.fromhex(CURRENT)
    assert keys.previous == (bytes.fromhex(OLD_1), bytes.fromhex(OLD_2))  # current dropped
    assert CURRENT not in repr(keys)
    assert OLD_1 not in repr(keys)


def test_from_files(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    current = key_file(tmp_path / "db.key", CURRENT + "\n")
    previous = key_file(tmp_path / "old.keys", f"# rotated 2026-11\n{OLD_1}\n\n{OLD_2}\n", 0o400)
    monkeypatch.setenv("BASTION_DATABASE_SECRET_FILE", str(current))
    monkeypatch.setenv("BASTION_DATABASE_SECRET_PREVIOUS_FILE", str(previous))
    s = settings(tmp_path)
    s.validate_security()
    keys = load_database_keys(s)
    assert keys.current == bytes.fromhex(CURRENT)
    assert keys.previous == (bytes.fromhex(OLD_1), bytes.fromhex(OLD_2))


@pytest.mark.parametrize("mode", [0o640, 0o604, 0o660, 0o644])
def test_a_key_file_others_can_read_is_refused(tmp_path: Path, mode: int) -> None:
    path = key_file(tmp_path / "db.key", CURRENT, mode)
    text = problems(settings(tmp_path, database_secret_file=path))
    assert "BASTION_DATABASE_SECRET_FILE" in text
    assert str(path) in text
    assert f"{mode:04o}" in text
    assert "chmod 600" in text
    assert path.stat().st_mode & 0o777 == mode  # not silently "fixed"


def test_a_previous_key_file_others_can_read_is_refused(tmp_path: Path) -> None:
    path = key_file(tmp_path / "old.keys", OLD_1, 0o644)
    text = problems(settings(tmp_path, database_secret=CURRENT, database_secret_previous_file=path))
    assert "BASTION_DATABASE_SECRET_PREVIOUS_FILE" in text


def test_both_value_and_file_is_refused(tmp_path: Path) -> None:
    path = key_file(tmp_path / "db.key", CURRENT)
    text = problems(settings(tmp_path, database_secret=OLD_1, database_secret_file=path))
    assert "both set" in text


def test_missing_file_directory_and_weak_keys_name_where(tmp_path: Path) -> None:
    assert "cannot be read" in problems(settings(tmp_path, database_secret_file=tmp_path / "nope"))
    assert "not a regular file" in problems(settings(tmp_path, database_secret_file=tmp_path))
    weak = key_file(tmp_path / "weak.key", "0" * 64)
    assert "distinct byte values" in problems(settings(tmp_path, database_secret_file=weak))
    text = problems(
        settings(tmp_path, database_secret=CURRENT, database_secret_previous=f"{OLD_1},hunter2")
    )
    assert "BASTION_DATABASE_SECRET_PREVIOUS (entry 2)" in text
    assert "hunter2" not in text
    lines = key_file(tmp_path / "old.keys", f"{OLD_1}\nnot-a-key\n")
    text = problems(
        settings(tmp_path, database_secret=CURRENT, database_secret_previous_file=lines)
    )
    assert "line 2" in text


def test_validate_security_lists_key_problems(tmp_path: Path) -> None:
    path = key_file(tmp_path / "db.key", CURRENT, 0o644)
    with pytest.raises(SettingsError) as info:
        settings(tmp_path, database_secret_file=path).validate_security()
    assert any("BASTION_DATABASE_SECRET_FILE" in p for p in info.value.problems)
    with pytest.raises(SettingsError) as info:
        settings(tmp_path).validate_security()
    assert any("is not set" in p for p in info.value.problems)


def test_dev_mode_keeps_a_configured_key_file(tmp_path: Path) -> None:
    path = key_file(tmp_path / "db.key", CURRENT)
    s = settings(tmp_path, dev=True, database_secret_file=path)
    s = s.with_dev_defaults(dev_defaults(tmp_path / "data"))
    assert load_database_keys(s).current == bytes.fromhex(CURRENT)
