"""Cron expressions as Drone writes them (six fields, seconds first), the usual five fields
and the macros; names and branches; and DRONE_CRON in a cron build's environment."""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime

import pytest
from tests.unit.spec.test_environ import PUSH, environ

from bastion.server.errors import BadRequest
from bastion.server.services.cron import check_branch, check_expr, check_name, next_run

NOON = datetime(2026, 11, 26, 12, 0, 0, tzinfo=UTC).timestamp()


def at(timestamp: int) -> datetime:
    return datetime.fromtimestamp(timestamp, UTC)


@pytest.mark.parametrize(
    ("expr", "expected"),
    [
        ("0 0 3 * * *", datetime(2026, 11, 27, 3, 0, 0, tzinfo=UTC)),  # Drone: seconds first
        ("30 15 * * * *", datetime(2026, 11, 26, 12, 15, 30, tzinfo=UTC)),
        ("*/10 * * * * *", datetime(2026, 11, 26, 12, 0, 10, tzinfo=UTC)),
        ("15 4 * * *", datetime(2026, 11, 27, 4, 15, 0, tzinfo=UTC)),  # minute first
        ("0 0 * * 1", datetime(2026, 11, 30, 0, 0, 0, tzinfo=UTC)),  # next Monday
        ("@hourly", datetime(2026, 11, 26, 13, 0, 0, tzinfo=UTC)),
        ("@daily", datetime(2026, 11, 27, 0, 0, 0, tzinfo=UTC)),
        ("@WEEKLY", datetime(2026, 11, 29, 0, 0, 0, tzinfo=UTC)),
        ("@monthly", datetime(2026, 12, 1, 0, 0, 0, tzinfo=UTC)),
        ("@yearly", datetime(2027, 1, 1, 0, 0, 0, tzinfo=UTC)),
        ("0 0 0 1 1 ?", datetime(2027, 1, 1, 0, 0, 0, tzinfo=UTC)),
    ],
)
def test_next_run(expr: str, expected: datetime) -> None:
    assert check_expr(expr) == " ".join(expr.split())
    assert at(next_run(expr, NOON)) == expected


def test_next_run_is_strictly_after_the_start() -> None:
    on_the_hour = datetime(2026, 11, 26, 13, 0, 0, tzinfo=UTC).timestamp()
    assert at(next_run("@hourly", on_the_hour)) == datetime(2026, 11, 26, 14, tzinfo=UTC)


@pytest.mark.parametrize(
    "expr",
    [
        "",
        "   ",
        "* * *",
        "* * * * * * *",
        "61 * * * *",
        "* * 32 * *",
        "@every 5m",
        "@reboot",
        "a b c d e",
        "0 0 0 0 0 0",
        "0 0 30 2 *",  # never happens
        "0 0 0 31 4 *",
        "x" * 300,
    ],
)
def test_bad_expressions_are_refused_naming_the_field(expr: str) -> None:
    with pytest.raises(BadRequest, match=r"^field expr: "):
        check_expr(expr)


@pytest.mark.parametrize("name", ["nightly", "a", "deploy-prod_2.0"])
def test_good_names(name: str) -> None:
    assert check_name(name) == name


@pytest.mark.parametrize("name", ["", "-x", "a b", "a/b", "x" * 101, "ünï"])
def test_bad_names(name: str) -> None:
    with pytest.raises(BadRequest, match=r"^field name: "):
        check_name(name)


@pytest.mark.parametrize("branch", ["main", "release/2.0", "feature/x-y_z"])
def test_good_branches(branch: str) -> None:
    assert check_branch(branch) == branch


@pytest.mark.parametrize(
    "branch", ["", "../main", "-f", "/abs", "a..b", "a b", "a//b", "x.lock", "trail/", "$(id)"]
)
def test_bad_branches(branch: str) -> None:
    with pytest.raises(BadRequest, match=r"^field branch: "):
        check_branch(branch)


def test_drone_cron_is_set_for_cron_builds_only() -> None:
    cron = dataclasses.replace(
        PUSH, build=dataclasses.replace(PUSH.build, event="cron", cron="nightly")
    )
    env = environ(cron)
    assert env["DRONE_CRON"] == "nightly"
    assert env["DRONE_BUILD_EVENT"] == "cron"
    assert "DRONE_CRON" not in environ(PUSH)
