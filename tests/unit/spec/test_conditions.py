"""Drone `when` / `trigger` semantics: globs, include/exclude, status, branch, paths."""

from __future__ import annotations

from typing import Any

import pytest

from bastion.spec.conditions import (
    MatchContext,
    condition_matches,
    explain_mismatch,
    glob_error,
    glob_match,
    paths_match,
    trigger_matches,
    when_matches,
)
from bastion.spec.context import Build, BuildContext, Commit, Repo, System
from bastion.spec.model import Condition, Conditions


def cond(value: Any) -> Condition:
    """A condition written as in YAML: a string, a list or {include, exclude}."""
    return Conditions.model_validate({"branch": value}).branch


def conds(**keys: Any) -> Conditions:
    return Conditions.model_validate(keys)


PUSH = MatchContext(
    action="",
    branch="main",
    event="push",
    instance="ci.example.com",
    ref="refs/heads/main",
    repo="acme/app",
)


# -- glob_match ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("pattern", "value", "expected"),
    [
        # literals and whole-string matching
        ("main", "main", True),
        ("main", "main2", False),
        ("main", "xmain", False),
        ("", "", True),
        ("", "main", False),
        # "*" does not cross "/"
        ("release/*", "release/1.0", True),
        ("release/*", "release/1.0/hotfix", False),
        ("feature-*", "feature-", True),
        ("*", "", True),
        ("*", "a/b", False),
        ("*.md", "README.md", True),
        ("*.md", "docs/README.md", False),
        # "**" as a whole segment crosses "/" (also zero segments in the middle)
        ("refs/heads/**", "refs/heads/feature/deep/x", True),
        ("refs/heads/**", "refs/tags/v1", False),
        ("src/**/*.go", "src/main.go", True),
        ("src/**/*.go", "src/a/b/c.go", True),
        ("src/**/*.go", "src/a/b/c.py", False),
        ("**/*.md", "README.md", True),
        ("**/*.md", "docs/a/README.md", True),
        ("**", "anything/at/all", True),
        ("**", "", True),
        ("a/**", "a", False),  # doublestar v1: a trailing ** needs one more segment
        ("a/**", "a/b", True),
        # "**" inside a segment is just "*"
        ("v**", "v1.2", True),
        ("v**", "v1/2", False),
        ("**.go", "a/b.go", False),
        # "?"
        ("v?.0", "v1.0", True),
        ("v?.0", "v10.0", False),
        ("a?b", "a/b", False),
        # classes
        ("release/[0-9].x", "release/3.x", True),
        ("release/[0-9].x", "release/a.x", False),
        ("[abc]", "b", True),
        ("[^abc]", "b", False),
        ("[^abc]", "d", True),
        ("[!abc]", "d", True),
        ("[a-cx-z]", "y", True),
        (r"[\]]", "]", True),
        # alternatives
        ("{main,develop}", "develop", True),
        ("{main,develop}", "feature", False),
        ("feature/{a,b}-*", "feature/b-1", True),
        ("{a,b}{c,d}", "bd", True),
        # escapes
        (r"a\*", "a*", True),
        (r"a\*", "ab", False),
        (r"\?", "?", True),
        # malformed patterns match nothing (Drone ignores doublestar's error)
        ("[", "[", False),
        ("release/[0-9", "release/1", False),
        ("{a,b", "a", False),
        ("[]", "]", False),
        ("a\\", "a\\", False),
    ],
)
def test_glob_match(pattern: str, value: str, expected: bool) -> None:
    assert glob_match(pattern, value) is expected


@pytest.mark.parametrize(
    ("pattern", "error"),
    [
        ("[", "unclosed '['"),
        ("{a,b", "unclosed '{'"),
        ("[]", "empty character class"),
        ("[-a]", "a class range has no start"),
        ("x\\", "trailing backslash"),
        ("{a,b,c}{d,e,f}{g,h,i}{j,k,l}{m,n,o}{p,q,r}", "too many {...} alternatives"),
        ("release/*", None),
        ("refs/heads/**", None),
    ],
)
def test_glob_error(pattern: str, error: str | None) -> None:
    assert glob_error(pattern) == error


def test_glob_match_stays_fast_on_hostile_input() -> None:
    # A backtracking matcher needs exponential time here; the state-set matcher does not.
    assert not glob_match("*a*a*a*a*a*a*a*a*a*a*b", "a" * 5000)
    assert not glob_match("**/**/**/**/**/x", "/".join(["a"] * 300))


# -- condition_matches -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("yaml", "value", "expected"),
    [
        (None, "anything", True),  # empty condition matches all
        ([], "anything", True),
        ("main", "main", True),  # a string is one include pattern
        ("main", "dev", False),
        (["main", "release/*"], "release/2", True),
        (["main", "release/*"], "dev", False),
        ({"include": ["main"]}, "main", True),
        ({"exclude": ["main"]}, "main", False),
        ({"exclude": ["main"]}, "dev", True),  # exclude only: everything else matches
        ({"include": ["release/*"], "exclude": ["release/1.*"]}, "release/2.0", True),
        ({"include": ["release/*"], "exclude": ["release/1.*"]}, "release/1.4", False),
        ({"include": ["main"], "exclude": ["main"]}, "main", False),  # exclude wins
        ({"include": ["main"], "exclude": ["dev"]}, "feature", False),
    ],
)
def test_condition_matches(yaml: Any, value: str, expected: bool) -> None:
    assert condition_matches(cond(yaml), value) is expected


# -- MatchContext.from_build -----------------------------------------------------------------


def test_from_build_push() -> None:
    ctx = BuildContext(
        repo=Repo(owner="acme", name="app"),
        commit=Commit(ref="refs/heads/dev", branch="dev"),
        build=Build(event="push", changed_files=("a.py",)),
        system=System(host="ci.example.com"),
    )
    assert MatchContext.from_build(ctx) == MatchContext(
        action="",
        branch="dev",
        cron="",
        event="push",
        instance="ci.example.com",
        ref="refs/heads/dev",
        repo="acme/app",
        status="success",
        target="",
        paths=("a.py",),
    )


def test_from_build_pull_request_matches_the_target_branch() -> None:
    ctx = BuildContext(
        commit=Commit(ref="refs/pull/7/head", branch="main", source_branch="feature/x"),
        build=Build(event="pull_request", action="opened", pull_request=7),
    )
    match = MatchContext.from_build(ctx)
    assert match.branch == "main"
    assert match.action == "opened"
    assert when_matches(conds(branch="main"), match)
    assert not when_matches(conds(branch="feature/*"), match)


def test_from_build_tag_has_no_branch() -> None:
    # Drone: "branch names are not available for tag events".
    ctx = BuildContext(
        commit=Commit(ref="refs/tags/v1.2.3", branch="main"),
        build=Build(event="tag", tag="v1.2.3"),
    )
    match = MatchContext.from_build(ctx)
    assert match.branch == ""
    assert not trigger_matches(conds(branch="main"), match)
    assert trigger_matches(conds(ref="refs/tags/*"), match)
    assert trigger_matches(conds(branch={"exclude": ["main"]}), match)


def test_from_build_promote_and_cron_fields() -> None:
    ctx = BuildContext(build=Build(event="promote", deploy_to="production", cron="nightly"))
    match = MatchContext.from_build(ctx, status="failure")
    assert (match.event, match.target, match.cron, match.status) == (
        "promote",
        "production",
        "nightly",
        "failure",
    )


def test_status_must_be_success_or_failure() -> None:
    with pytest.raises(ValueError, match="status must be"):
        MatchContext(status="running")


# -- when (steps) ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("when", "ctx", "expected"),
    [
        ({}, PUSH, True),
        ({"branch": "main"}, PUSH, True),
        ({"branch": "dev"}, PUSH, False),
        ({"branch": {"exclude": ["main"]}}, PUSH, False),
        ({"event": ["push", "tag"]}, PUSH, True),
        ({"event": "pull_request"}, PUSH, False),
        ({"event": {"exclude": ["pull_request"]}}, PUSH, True),
        ({"ref": "refs/heads/*"}, PUSH, True),
        ({"ref": "refs/tags/*"}, PUSH, False),
        ({"repo": "acme/*"}, PUSH, True),
        ({"repo": "other/app"}, PUSH, False),
        ({"instance": "ci.example.com"}, PUSH, True),
        ({"instance": "ci.other.org"}, PUSH, False),
        ({"action": "opened"}, PUSH, False),  # a push has no action
        ({"target": "production"}, MatchContext(event="promote", target="production"), True),
        ({"target": "production"}, MatchContext(event="promote", target="staging"), False),
        ({"cron": "nightly"}, MatchContext(event="cron", cron="nightly"), True),
        ({"cron": "nightly"}, MatchContext(event="cron", cron="weekly"), False),
        # keys are ANDed
        ({"branch": "main", "event": "push"}, PUSH, True),
        ({"branch": "main", "event": "tag"}, PUSH, False),
    ],
)
def test_when_keys(when: dict[str, Any], ctx: MatchContext, expected: bool) -> None:
    assert when_matches(conds(**when), ctx) is expected


@pytest.mark.parametrize(
    ("status", "on_success", "on_failure"),
    [
        (None, True, False),  # default: only while passing
        (["success"], True, False),
        (["failure"], False, True),
        (["success", "failure"], True, True),
        ({"exclude": ["success"]}, False, True),
        ({"exclude": ["failure"]}, True, False),
        (["changed"], True, False),  # drone-runner-docker falls back to on-success
        (["*"], True, True),
    ],
)
def test_when_status(status: Any, on_success: bool, on_failure: bool) -> None:
    when = conds(status=status)
    assert when_matches(when, MatchContext(status="success")) is on_success
    assert when_matches(when, MatchContext(status="failure")) is on_failure


# -- trigger (pipelines) ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("status", "on_success", "on_failure"),
    [
        (None, True, False),
        (["success"], True, False),
        (["failure"], False, True),
        (["success", "failure"], True, True),
        (["changed"], False, False),  # Drone's OnSuccess = Status.Match("success")
    ],
)
def test_trigger_status(status: Any, on_success: bool, on_failure: bool) -> None:
    trigger = conds(status=status)
    assert trigger_matches(trigger, MatchContext(status="success")) is on_success
    assert trigger_matches(trigger, MatchContext(status="failure")) is on_failure


@pytest.mark.parametrize("event", ["push", "pull_request", "tag", "promote", "rollback", "cron"])
def test_trigger_without_event_runs_for_every_event(event: str) -> None:
    # drone/drone trigger.go has no special case: promote and rollback builds run every
    # pipeline whose trigger does not exclude them.
    assert trigger_matches(conds(branch={"exclude": ["wip/*"]}), MatchContext(event=event))


def test_trigger_event_include_excludes_promote() -> None:
    trigger = conds(event=["push", "pull_request"])
    assert not trigger_matches(trigger, MatchContext(event="promote", target="production"))


def test_trigger_honours_instance() -> None:
    trigger = conds(instance="ci.example.com")
    assert trigger_matches(trigger, MatchContext(instance="ci.example.com"))
    assert not trigger_matches(trigger, MatchContext(instance="ci.other.org"))


# -- paths -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("yaml", "paths", "expected"),
    [
        (None, ("a.go",), True),
        (["docs/**"], None, True),  # unknown changes (bastion exec): pass
        (["docs/**"], (), True),  # empty commit: pass, as Woodpecker's on_empty default
        (["docs/**"], ("docs/a.md",), True),
        (["docs/**"], ("src/a.go", "docs/a.md"), True),  # any changed file
        (["docs/**"], ("src/a.go",), False),
        ("*.md", ("README.md",), True),
        ("*.md", ("docs/README.md",), False),
        ({"exclude": ["*.md"]}, ("README.md",), False),  # every file excluded
        ({"exclude": ["*.md"]}, ("README.md", "main.go"), True),  # not every file
        ({"exclude": ["docs/**"]}, ("docs/a.md", "README.md"), True),
        ({"exclude": ["**/*.md"]}, ("docs/a.md", "README.md"), False),  # ** matches no dir
        ({"include": ["src/**"], "exclude": ["src/**/*_test.go"]}, ("src/a_test.go",), False),
        ({"include": ["src/**"], "exclude": ["src/**/*_test.go"]}, ("src/a.go",), True),
        ({"include": ["*.yml"], "exclude": [".drone.yml"]}, (".drone.yml", "ci.yml"), True),
        ({"include": ["*.yml"], "exclude": [".drone.yml"]}, (".drone.yml",), False),
    ],
)
def test_paths_match(yaml: Any, paths: tuple[str, ...] | None, expected: bool) -> None:
    assert paths_match(cond(yaml), paths) is expected


def test_paths_in_when_and_trigger() -> None:
    when = conds(paths=["docs/**"])
    assert when_matches(when, MatchContext(paths=("docs/x.md",)))
    assert not when_matches(when, MatchContext(paths=("src/x.go",)))
    assert trigger_matches(when, MatchContext(paths=None))


# -- explain_mismatch ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("keys", "ctx", "for_step", "reason"),
    [
        ({"branch": ["main", "release/*"]}, PUSH, True, None),
        (
            {"branch": ["main", "release/*"]},
            MatchContext(branch="dev"),
            True,
            "branch 'dev' does not match include [main, release/*]",
        ),
        (
            {"branch": {"include": ["release/*"], "exclude": ["release/1.*"]}},
            MatchContext(branch="release/1.2"),
            False,
            "branch 'release/1.2' matches exclude [release/1.*]",
        ),
        (
            {"event": "tag"},
            PUSH,
            False,
            "event 'push' does not match include [tag]",
        ),
        (
            {"branch": "main"},
            MatchContext(event="tag", branch=""),
            False,
            "branch '' does not match include [main] "
            "(a tag event has no branch; use ref: refs/tags/* to select tags)",
        ),
        (
            {"paths": ["docs/**"]},
            MatchContext(paths=("a.go", "b.go")),
            True,
            "paths: none of the 2 changed files match include [docs/**]",
        ),
        (
            {"paths": {"exclude": ["*.md"]}},
            MatchContext(paths=("a.md",)),
            True,
            "paths: all 1 changed files match exclude [*.md]",
        ),
        (
            {},
            MatchContext(status="failure"),
            True,
            "status 'failure': without a status condition a step runs only when the "
            "pipeline is passing (add status: [failure] or [success, failure])",
        ),
        (
            {},
            MatchContext(status="failure"),
            False,
            "status 'failure': without a status condition a pipeline runs only when the "
            "pipelines it depends on passed (add status: [failure] or [success, failure])",
        ),
        (
            {"status": "failure"},
            MatchContext(status="success"),
            True,
            "status 'success' is not selected by include [failure]",
        ),
        # the first failing key is reported, in Drone's trigger order
        (
            {"event": "tag", "branch": "dev"},
            PUSH,
            False,
            "branch 'main' does not match include [dev]",
        ),
    ],
)
def test_explain_mismatch(
    keys: dict[str, Any], ctx: MatchContext, for_step: bool, reason: str | None
) -> None:
    assert explain_mismatch(conds(**keys), ctx, for_step=for_step) == reason


def test_explain_mismatch_escapes_untrusted_text() -> None:
    branch = "evil\n[bastion] build passed\x1b[0m" + "x" * 200
    reason = explain_mismatch(conds(branch="main"), MatchContext(branch=branch), for_step=True)
    assert reason is not None
    assert "\n" not in reason
    assert "\x1b" not in reason
    assert reason.startswith("branch 'evil\\n[bastion] build passed\\x1b[0m")
    assert len(reason) < 160
