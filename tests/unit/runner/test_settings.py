"""Runner settings: labels, names, capacity and the token are checked up front."""

from __future__ import annotations

import pytest

from bastion.runner import RunnerSettings, RunnerSettingsError, parse_labels


def test_labels_accept_bastion_and_drone_syntax() -> None:
    assert parse_labels(["gpu=yes", "zone:eu,arch = arm64", ""]) == {
        "gpu": "yes",
        "zone": "eu",
        "arch": "arm64",
    }


@pytest.mark.parametrize("bad", ["novalue", "=x", "bad key=1", "-x=1"])
def test_bad_labels(bad: str) -> None:
    with pytest.raises(RunnerSettingsError, match="KEY=VALUE"):
        parse_labels([bad])


def test_defaults() -> None:
    settings = RunnerSettings(server="http://127.0.0.1:8080", token="t" * 32)
    assert (settings.capacity, settings.backend, settings.insecure) == (2, "docker", False)
    assert settings.name
    assert "t" * 32 not in repr(settings)


@pytest.mark.parametrize(
    ("kwargs", "needle"),
    [
        ({"token": " "}, "bastion runner add"),
        ({"name": "bad name"}, "runner name"),
        ({"capacity": 0}, "capacity"),
        ({"capacity": 1000}, "capacity"),
    ],
)
def test_refused_settings(kwargs: dict[str, object], needle: str) -> None:
    values: dict[str, object] = {"server": "http://127.0.0.1:1", "token": "t" * 32, **kwargs}
    with pytest.raises(RunnerSettingsError, match=needle):
        RunnerSettings(**values)  # type: ignore[arg-type]
