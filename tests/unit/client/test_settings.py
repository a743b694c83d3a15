"""Where the client finds server, token and TLS options; what it refuses."""

from __future__ import annotations

from pathlib import Path

import pytest

from bastion.client import ClientSettings, ServerURLError, SettingsError

BASE = {"BASTION_SERVER": "https://a.example.com", "BASTION_TOKEN": "t"}


def test_bastion_variables() -> None:
    env = {"BASTION_SERVER": "https://ci.example.com/", "BASTION_TOKEN": "tok"}
    settings = ClientSettings.load(env=env)
    assert (settings.server, settings.token, settings.verify) == (
        "https://ci.example.com",
        "tok",
        True,
    )
    assert "tok" not in repr(settings)


def test_drone_aliases() -> None:
    env = {"DRONE_SERVER": "https://drone.example.com", "DRONE_TOKEN": "dt"}
    settings = ClientSettings.load(env=env)
    assert (settings.server, settings.token) == ("https://drone.example.com", "dt")


def test_bastion_names_win_over_drone_names() -> None:
    env = {
        "BASTION_SERVER": "https://a.example.com",
        "DRONE_SERVER": "https://b.example.com",
        "BASTION_TOKEN": "a",
        "DRONE_TOKEN": "b",
    }
    settings = ClientSettings.load(env=env)
    assert (settings.server, settings.token) == ("https://a.example.com", "a")


def test_arguments_win_over_the_environment() -> None:
    env = {"BASTION_SERVER": "https://a.example.com", "BASTION_TOKEN": "a"}
    assert ClientSettings.load(server="http://127.0.0.1:1", env=env).server == "http://127.0.0.1:1"


def test_token_file(tmp_path: Path) -> None:
    token_file = tmp_path / "token"
    token_file.write_text("from-file\n")
    env = {"BASTION_SERVER": "https://a.example.com", "BASTION_TOKEN_FILE": str(token_file)}
    assert ClientSettings.load(env=env).token == "from-file"
    with pytest.raises(SettingsError, match="cannot read"):
        ClientSettings.load(env={**env, "BASTION_TOKEN_FILE": str(tmp_path / "missing")})


@pytest.mark.parametrize(
    ("env", "needle"),
    [
        ({}, "BASTION_SERVER"),
        ({"BASTION_SERVER": "https://a.example.com"}, "BASTION_TOKEN"),
        ({"BASTION_SERVER": "http://a.example.com", "BASTION_TOKEN": "t"}, "plain HTTP"),
        (
            {
                "BASTION_SERVER": "https://a.example.com",
                "BASTION_TOKEN": "t",
                "BASTION_INSECURE": "maybe",
            },
            "BASTION_INSECURE",
        ),
        (
            {
                "BASTION_SERVER": "https://a.example.com",
                "BASTION_TOKEN": "t",
                "BASTION_CA_CERT": "/nope.pem",
            },
            "/nope.pem",
        ),
    ],
)
def test_refusals_say_what_to_set(env: dict[str, str], needle: str) -> None:
    # SettingsError (a missing setting) is a ServerURLError: the CLI exits 2 for both.
    assert issubclass(SettingsError, ServerURLError)
    with pytest.raises(ServerURLError) as err:
        ClientSettings.load(env=env)
    assert needle in err.value.message


def test_insecure_from_the_environment() -> None:
    env = {"BASTION_SERVER": "http://ci.internal", "BASTION_TOKEN": "t", "BASTION_INSECURE": "true"}
    assert ClientSettings.load(env=env).insecure


def test_ca_cert(tmp_path: Path) -> None:
    ca = tmp_path / "ca.pem"
    ca.write_text("-----BEGIN CERTIFICATE-----\n")
    env = {
        "BASTION_SERVER": "https://a.example.com",
        "BASTION_TOKEN": "t",
        "BASTION_CA_CERT": str(ca),
    }
    assert ClientSettings.load(env=env).verify == str(ca)
