"""Server settings: the refusal matrix, Drone aliases, the config file, ``--dev`` secrets."""

from __future__ import annotations

import base64
import os
import secrets
import stat
from pathlib import Path
from typing import Any

import pytest

from bastion.server.settings import (
    ServerSettings,
    SettingsError,
    dev_defaults,
    load_settings,
    secret_strength_problem,
)

STRONG = secrets.token_hex(32)


@pytest.fixture(autouse=True)
def _clean_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in list(os.environ):
        if name.startswith(("BASTION_", "DRONE_")):
            monkeypatch.delenv(name)


def settings(tmp_path: Path, **values: Any) -> ServerSettings:
    base: dict[str, Any] = {
        "data_dir": tmp_path,
        "rpc_secret": secrets.token_hex(32),
        "database_secret": secrets.token_hex(32),
    }
    base.update(values)
    return ServerSettings(**base)


def problems(s: ServerSettings) -> list[str]:
    with pytest.raises(SettingsError) as caught:
        s.validate_security()
    return caught.value.problems


def test_strong_settings_on_loopback_are_accepted(tmp_path: Path) -> None:
    settings(tmp_path).validate_security()
    settings(tmp_path, host="::1").validate_security()
    settings(tmp_path, host="localhost").validate_security()


@pytest.mark.parametrize(
    ("rpc_secret", "why"),
    [
        ("", "is not set"),
        ("changeme", "too short"),
        (secrets.token_hex(16), "too short (16 bytes of hex"),
        ("a" * 64, "low entropy"),
        ("0123456789abcdef" * 4, "low entropy"),
        ("correct horse battery staple " * 2, "low entropy"),
        (base64.b64encode(b"\0" * 32).decode(), "low entropy"),
    ],
)
def test_a_weak_rpc_secret_is_refused(tmp_path: Path, rpc_secret: str, why: str) -> None:
    [problem] = problems(settings(tmp_path, rpc_secret=rpc_secret))
    assert problem.startswith("BASTION_RPC_SECRET (or DRONE_RPC_SECRET)")
    assert why in problem
    assert "openssl rand -hex 32" in problem
    if rpc_secret:
        assert rpc_secret not in problem


@pytest.mark.parametrize(
    "value",
    [secrets.token_hex(32), secrets.token_urlsafe(32), base64.b64encode(os.urandom(32)).decode()],
)
def test_random_secrets_pass(value: str) -> None:
    assert secret_strength_problem(value) is None


def test_database_secret_missing_or_weak(tmp_path: Path) -> None:
    [missing] = problems(settings(tmp_path, database_secret=""))
    assert "BASTION_DATABASE_SECRET (or DRONE_DATABASE_SECRET) is not set" in missing
    [weak] = problems(settings(tmp_path, database_secret="0" * 64))
    assert weak.startswith("BASTION_DATABASE_SECRET:")
    assert "distinct byte values" in weak
    # Drone's usual 32-character key is 16 random bytes: refused, with the way out.
    [drone_style] = problems(settings(tmp_path, database_secret=secrets.token_hex(16)))
    assert "openssl rand -hex 32" in drone_style


def test_plain_http_on_a_public_address_is_refused(tmp_path: Path) -> None:
    [problem] = problems(settings(tmp_path, host="0.0.0.0"))
    assert "plain HTTP on 0.0.0.0" in problem
    assert "BASTION_TLS_CERT" in problem
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    cert.write_text("cert")
    key.write_text("key")
    settings(tmp_path, host="0.0.0.0", tls_cert=cert, tls_key=key).validate_security()
    settings(tmp_path, host="0.0.0.0", allow_plain_http=True).validate_security()


def test_every_problem_is_listed_at_once(tmp_path: Path) -> None:
    found = problems(
        settings(
            tmp_path,
            rpc_secret="short",
            database_secret="",
            host="10.0.0.5",
            tls_cert=tmp_path / "missing.pem",
        )
    )
    assert len(found) == 5
    assert any("must be set together" in p for p in found)
    assert any("missing.pem is not a readable file" in p for p in found)


def test_lease_and_heartbeat_bounds(tmp_path: Path) -> None:
    defaults = settings(tmp_path)
    assert defaults.lease_seconds == 60
    assert defaults.effective_heartbeat_interval == 10
    assert settings(tmp_path, lease_seconds=3).effective_heartbeat_interval == 1
    [problem] = problems(settings(tmp_path, lease_seconds=5, heartbeat_interval=5))
    assert "BASTION_HEARTBEAT_INTERVAL" in problem
    assert settings(tmp_path, lease_seconds=600).notices()


def test_drone_aliases(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DRONE_RPC_SECRET", STRONG)
    monkeypatch.setenv("DRONE_DATABASE_SECRET", STRONG)
    monkeypatch.setenv("DRONE_SERVER_HOST", "ci.example.com")
    monkeypatch.setenv("DRONE_SERVER_PROTO", "https")
    monkeypatch.setenv("DRONE_DATABASE_DRIVER", "postgres")
    monkeypatch.setenv("DRONE_DATABASE_DATASOURCE", "postgres://u:p@db:5432/drone?sslmode=disable")
    monkeypatch.setenv("DRONE_USER_CREATE", "username:octocat,admin:true")
    s = load_settings(data_dir=tmp_path)
    assert s.rpc_secret.get_secret_value() == STRONG
    assert s.database_secret.get_secret_value() == STRONG
    assert s.effective_public_url == "https://ci.example.com"
    assert s.link_host == "ci.example.com"
    assert s.effective_database_url == "postgresql+psycopg://u:p@db:5432/drone?sslmode=disable"
    assert any("DRONE_USER_CREATE is ignored" in n for n in s.notices())
    monkeypatch.setenv("BASTION_RPC_SECRET", "bastion-wins-" + STRONG)
    assert load_settings(data_dir=tmp_path).rpc_secret.get_secret_value().startswith("bastion-")


def test_unsupported_drone_database_is_a_settings_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DRONE_DATABASE_DRIVER", "mysql")
    monkeypatch.setenv("DRONE_DATABASE_DATASOURCE", "root:pw@tcp(db)/drone")
    with pytest.raises(SettingsError) as caught:
        load_settings(data_dir=tmp_path)
    assert "mysql" in str(caught.value)


def test_defaults(tmp_path: Path) -> None:
    s = settings(tmp_path)
    assert s.host == "127.0.0.1"
    assert s.effective_database_url == f"sqlite:///{tmp_path / 'bastion.db'}"
    assert s.internal_url == "http://127.0.0.1:8080"
    assert s.log_store == "file"
    assert s.log_limit_bytes == 5 * 1024 * 1024
    assert settings(tmp_path, host="0.0.0.0").internal_url == "http://127.0.0.1:8080"
    assert STRONG not in repr(settings(tmp_path, rpc_secret=STRONG))


def test_config_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    config = tmp_path / "bastion.toml"
    config.write_text(f'rpc_secret = "{STRONG}"\nport = 9000\nlog_store = "database"\n')
    monkeypatch.setenv("BASTION_CONFIG_FILE", str(config))
    monkeypatch.setenv("BASTION_PORT", "9001")
    s = load_settings(data_dir=tmp_path)
    assert s.rpc_secret.get_secret_value() == STRONG
    assert s.log_store == "database"
    assert s.port == 9001  # the environment wins over the file
    assert load_settings(data_dir=tmp_path, port=9002).port == 9002  # options win over both

    config.write_text("rpc_secert = 'typo'\n")
    with pytest.raises(SettingsError) as caught:
        load_settings(data_dir=tmp_path)
    assert "unknown setting(s) rpc_secert" in str(caught.value)


def test_bad_values_name_the_variable(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BASTION_LEASE_SECONDS", "soon")
    with pytest.raises(SettingsError) as caught:
        load_settings(data_dir=tmp_path)
    assert caught.value.problems[0].startswith("BASTION_LEASE_SECONDS")


def test_dev_defaults_generate_0600_files_and_reuse_them(tmp_path: Path) -> None:
    data = tmp_path / "data"
    first = dev_defaults(data)
    assert len(first.created) == 3
    for path in (first.rpc_secret_file, first.database_secret_file, first.admin_token_file):
        assert stat.S_IMODE(path.stat().st_mode) == 0o600
        assert path.parent == data
    assert stat.S_IMODE(data.stat().st_mode) == 0o700
    assert first.admin_token.startswith("bst_api_")
    assert first.rpc_secret not in repr(first)
    s = settings(tmp_path, rpc_secret="", database_secret="").with_dev_defaults(first)
    s.validate_security()

    second = dev_defaults(data)
    assert second.created == ()
    assert (second.rpc_secret, second.database_secret, second.admin_token) == (
        first.rpc_secret,
        first.database_secret,
        first.admin_token,
    )
    # Given values win over the generated ones.
    given = settings(tmp_path, rpc_secret=STRONG).with_dev_defaults(second)
    assert given.rpc_secret.get_secret_value() == STRONG


def test_dev_defaults_tighten_a_loosened_file(tmp_path: Path) -> None:
    first = dev_defaults(tmp_path)
    first.rpc_secret_file.chmod(0o644)
    assert dev_defaults(tmp_path).rpc_secret == first.rpc_secret
    assert stat.S_IMODE(first.rpc_secret_file.stat().st_mode) == 0o600
