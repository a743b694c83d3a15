"""Drone's ``when`` (step) and ``trigger`` (pipeline) conditions, evaluated against a build.

Every behaviour here was checked against Drone's own sources; the comments name them:

* ``drone/runner-go`` ``manifest/cond.go`` and ``drone/drone-yaml`` ``yaml/cond.go`` —
  ``Condition.Match``: a value is rejected if it matches any *exclude* pattern, accepted if
  it matches any *include* pattern, and accepted when there is no include list at all.
  Patterns are matched with ``github.com/bmatcuk/doublestar`` (v1) ``Match``.
* ``drone-runners/drone-runner-docker`` ``engine/compiler/compiler.go`` — the keys a step's
  ``when`` checks (action, branch, cron, event, instance, ref, repo, target), with
  ``branch`` taken from ``build.Target``; ``engine/compiler/util.go`` ``isRunAlways`` /
  ``isRunOnFailure`` — how ``status`` turns into a run policy.
* ``drone/drone`` ``trigger/trigger.go`` — the keys a pipeline ``trigger`` checks (branch
  against ``base.Target``, event, action, ref, repo, target, cron) and the stage's
  ``OnSuccess`` / ``OnFailure`` derived from ``trigger.status``.
* ``drone/drone`` ``service/hook/parser/parse.go`` — for a pull request ``Target`` is the
  branch the PR merges into; for a tag it is GitHub's ``base_ref`` (usually empty), which
  is why Drone's docs say "branch names are not available for tag events".
* ``woodpecker-ci/woodpecker`` ``pipeline/frontend/yaml/constraint/path.go`` and
  ``meltwater/drone-convert-pathschanged`` — ``paths``, which Drone itself leaves to a
  conversion extension (its own ``skipPaths`` is commented out in ``trigger/skip.go``).

Two deliberate departures, both where Drone documents a key its code ignores: a pipeline's
``trigger.instance`` is honoured (Drone's server has ``skipInstance`` but never calls it,
"TODO add instance"), and ``paths`` is evaluated natively rather than by an extension.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache

from bastion.spec.context import BuildContext
from bastion.spec.model import Condition, Conditions

__all__ = [
    "MatchContext",
    "condition_matches",
    "explain_mismatch",
    "glob_error",
    "glob_match",
    "paths_match",
    "trigger_matches",
    "when_matches",
]

# -- glob matching (doublestar v1 semantics) -------------------------------------------------
#
# doublestar v1 (bmatcuk/doublestar, doublestar.go) splits both pattern and value on "/"
# and matches component by component:
#   * a component that is exactly "**" matches zero or more whole components (so
#     "refs/heads/**" matches "refs/heads/a/b" and "src/**/*.go" matches "src/x.go"); a
#     trailing "**" needs at least one component after the prefix ("a/**" does not match
#     "a");
#   * elsewhere "*" (and "**" inside a component, e.g. "v**") matches any run of characters
#     except "/", "?" one character except "/";
#   * "[abc]", "[a-z]", "[^a-z]" are character classes, "{a,b}" alternatives, "\x" a
#     literal x;
#   * a malformed pattern (unclosed "[" or "{", empty class, trailing "\") matches nothing,
#     because Drone ignores the error doublestar returns (``ok, _ := filepath.Match(...)``).
# Matching is linear in the value for each pattern token (a set-of-states simulation), so a
# pattern from an untrusted fork cannot make the matcher backtrack exponentially.

_STAR = 0
_ANY = 1
_LIT = 2
_CLASS = 3

# (kind, literal char, class ranges, class negated)
_Token = tuple[int, str, tuple[tuple[str, str], ...], bool]
_Alternative = tuple[_Token, ...]
# A compiled component: None for a whole "**" component, else its brace alternatives.
_Component = tuple[_Alternative, ...] | None

_MAX_ALTERNATIVES = 256  # brace expansion cap; beyond it the pattern is rejected


class _BadPatternError(ValueError):
    pass


def _find_unescaped(text: str, char: str, start: int) -> int:
    i = start
    while i < len(text):
        if text[i] == "\\":
            i += 2
            continue
        if text[i] == char:
            return i
        i += 1
    return -1


def _split_unescaped(text: str, sep: str) -> list[str]:
    parts: list[str] = []
    start = 0
    while True:
        end = _find_unescaped(text, sep, start)
        if end < 0:
            parts.append(text[start:])
            return parts
        parts.append(text[start:end])
        start = end + 1


def _parse_class(body: str) -> tuple[tuple[tuple[str, str], ...], bool]:
    negated = body[:1] in ("^", "!")
    if negated:
        body = body[1:]
    if not body:
        raise _BadPatternError("empty character class")
    ranges: list[tuple[str, str]] = []
    i = 0
    while i < len(body):
        low = body[i]
        if low == "-":
            raise _BadPatternError("a class range has no start")
        if low == "\\":
            if i + 1 >= len(body):
                raise _BadPatternError("trailing backslash in a class")
            i += 1
            low = body[i]
        i += 1
        high = low
        if i < len(body) and body[i] == "-":
            i += 1
            if i >= len(body):
                raise _BadPatternError("a class range has no end")
            high = body[i]
            if high == "-":
                raise _BadPatternError("a class range has no end")
            if high == "\\":
                if i + 1 >= len(body):
                    raise _BadPatternError("trailing backslash in a class")
                i += 1
                high = body[i]
            i += 1
        ranges.append((low, high))
    return tuple(ranges), negated


def _parse_component(text: str) -> list[_Alternative]:
    """One path component (no unescaped "/") to its brace-expanded token sequences."""
    tokens: list[_Token] = []
    i = 0
    while i < len(text):
        c = text[i]
        if c == "\\":
            if i + 1 >= len(text):
                raise _BadPatternError("trailing backslash")
            tokens.append((_LIT, text[i + 1], (), False))
            i += 2
        elif c == "*":
            if not tokens or tokens[-1][0] != _STAR:  # "**" inside a component acts as "*"
                tokens.append((_STAR, "", (), False))
            i += 1
        elif c == "?":
            tokens.append((_ANY, "", (), False))
            i += 1
        elif c == "[":
            end = _find_unescaped(text, "]", i + 1)
            if end < 0:
                raise _BadPatternError("unclosed '['")
            ranges, negated = _parse_class(text[i + 1 : end])
            tokens.append((_CLASS, "", ranges, negated))
            i = end + 1
        elif c == "{":
            # As doublestar: the options run to the next unescaped "}", and each option is
            # matched followed by the rest of the component.
            end = _find_unescaped(text, "}", i + 1)
            if end < 0:
                raise _BadPatternError("unclosed '{'")
            rest = text[end + 1 :]
            alternatives: list[_Alternative] = []
            for option in _split_unescaped(text[i + 1 : end], ","):
                for tail in _parse_component(option + rest):
                    alternatives.append((*tokens, *tail))
                    if len(alternatives) > _MAX_ALTERNATIVES:
                        raise _BadPatternError("too many {...} alternatives")
            return alternatives
        else:
            tokens.append((_LIT, c, (), False))
            i += 1
    return [tuple(tokens)]


@lru_cache(maxsize=2048)
def _compile(pattern: str) -> tuple[_Component, ...] | str:
    """The compiled pattern, or the reason it is malformed."""
    try:
        components: list[_Component] = []
        for part in _split_unescaped(pattern, "/"):
            components.append(None if part == "**" else tuple(_parse_component(part)))
        return tuple(components)
    except _BadPatternError as exc:
        return str(exc)


def _token_accepts(token: _Token, char: str) -> bool:
    kind = token[0]
    if kind == _ANY:
        return True
    if kind == _LIT:
        return token[1] == char
    hit = any(low <= char <= high for low, high in token[2])
    return hit != token[3]


def _closure(states: set[int], tokens: Sequence[_Token]) -> set[int]:
    # A star may match nothing: whoever stands on it may also stand after it.
    for start in sorted(states):
        state = start
        while state < len(tokens) and tokens[state][0] == _STAR:
            state += 1
            states.add(state)
    return states


def _prefix_matches(tokens: Sequence[_Token], text: str) -> list[bool]:
    """``result[k]`` is whether ``tokens`` match ``text[:k]`` exactly; O(len(text)·len(tokens))."""
    end = len(tokens)
    states = _closure({0}, tokens)
    result = [end in states]
    for char in text:
        following: set[int] = set()
        for state in states:
            if state == end:
                continue
            token = tokens[state]
            if token[0] == _STAR:
                following.add(state)
            elif _token_accepts(token, char):
                following.add(state + 1)
        states = _closure(following, tokens)
        result.append(end in states)
        if not states:
            result.extend([False] * (len(text) + 1 - len(result)))
            break
    return result


def _component_matches(component: tuple[_Alternative, ...], name: str) -> bool:
    return any(_prefix_matches(alternative, name)[-1] for alternative in component)


def _path_matches(components: tuple[_Component, ...], names: list[str]) -> bool:
    # doublestar's doMatching, memoised so that several "**" stay polynomial.
    memo: dict[tuple[int, int], bool] = {}

    def match(pi: int, ni: int) -> bool:
        key = (pi, ni)
        if key in memo:
            return memo[key]
        if pi == len(components):
            result = ni == len(names)
        elif ni == len(names):
            result = False
        else:
            component = components[pi]
            if component is None:
                result = pi + 1 == len(components) or any(
                    match(pi + 1, k) for k in range(ni, len(names))
                )
            else:
                result = _component_matches(component, names[ni]) and match(pi + 1, ni + 1)
        memo[key] = result
        return result

    return match(0, 0)


def glob_match(pattern: str, value: str) -> bool:
    """Whether ``value`` matches the Drone (doublestar v1) glob ``pattern`` as a whole.

    ``*`` matches any run of characters except ``/``; ``**`` as a whole path segment
    matches any number of segments (``refs/heads/**``, ``src/**/*.go``); ``?`` one
    character except ``/``; ``[...]`` / ``[^...]`` classes; ``{a,b}`` alternatives;
    ``\\x`` a literal. A malformed pattern matches nothing (see :func:`glob_error`).
    """
    compiled = _compile(pattern)
    if isinstance(compiled, str):
        return False
    return _path_matches(compiled, value.split("/"))


def glob_error(pattern: str) -> str | None:
    """Why ``pattern`` is malformed (it then never matches), or None; for the linter."""
    compiled = _compile(pattern)
    return compiled if isinstance(compiled, str) else None


# -- the build being matched -----------------------------------------------------------------

_STATUSES = ("success", "failure")


@dataclass(frozen=True)
class MatchContext:
    """The values conditions are matched against.

    ``status`` is ``success`` while the pipeline (for a step) or the pipelines it depends on
    (for a pipeline) are passing, ``failure`` once something failed. ``paths`` is the list
    of changed files, or None when it is not known (``bastion exec`` has no diff), in which
    case ``paths`` conditions pass.
    """

    action: str = ""
    branch: str = ""
    cron: str = ""
    event: str = ""
    instance: str = ""
    ref: str = ""
    repo: str = ""
    status: str = "success"
    target: str = ""
    paths: tuple[str, ...] | None = None

    def __post_init__(self) -> None:
        if self.status not in _STATUSES:
            raise ValueError(f"status must be 'success' or 'failure', not {self.status!r}")

    @classmethod
    def from_build(cls, ctx: BuildContext, *, status: str = "success") -> MatchContext:
        """The match values Drone uses for a build (``manifest.Match`` in the docker runner).

        ``branch`` is the commit's branch, which for a pull request is its *target* branch
        (Drone matches ``build.Target``). For a tag it is empty: Drone takes it from the
        forge's ``base_ref``, which is not a branch of the tag, and documents that branch
        conditions do not apply to tags — so ``branch: [main]`` does not run on tags.
        """
        build = ctx.build
        return cls(
            action=build.action,
            branch="" if build.event == "tag" else ctx.commit.branch,
            cron=build.cron,
            event=build.event,
            instance=ctx.system.host,
            ref=ctx.commit.ref,
            repo=ctx.repo.slug,
            status=status,
            target=build.deploy_to,
            paths=build.changed_files,
        )


# -- conditions ------------------------------------------------------------------------------


def condition_matches(cond: Condition, value: str) -> bool:
    """Drone's ``Condition.Match``: exclude wins, then include; no include list matches all."""
    if any(glob_match(pattern, value) for pattern in cond.exclude):
        return False
    if any(glob_match(pattern, value) for pattern in cond.include):
        return True
    return not cond.include


def paths_match(cond: Condition, paths: tuple[str, ...] | None) -> bool:
    """Whether the changed files satisfy a ``paths`` condition (Woodpecker's ``Path.Match``).

    * changed files unknown (None) or none at all (an empty commit): the condition passes —
      Woodpecker's ``on_empty`` default, and Drone's own commented-out ``skipPaths`` ("if
      the list of changed files is empty the system will force-run all pipelines");
    * ``exclude``: fails when *every* changed file matches an exclude pattern;
    * ``include``: passes when *any* changed file matches an include pattern.

    Both checks apply when both lists are given. Patterns use :func:`glob_match`.
    """
    if cond.empty or not paths:
        return True
    if cond.exclude and all(
        any(glob_match(pattern, path) for pattern in cond.exclude) for path in paths
    ):
        return False
    return not cond.include or any(
        glob_match(pattern, path) for pattern in cond.include for path in paths
    )


def _step_runs_on(status: Condition) -> tuple[bool, bool]:
    """(on success, on failure) of a step, from drone-runner-docker's run policy.

    No status condition: on success only. Matching both ``success`` and ``failure``:
    always. Matching ``failure``: on failure only. Anything else (``[success]``, or a value
    Drone no longer knows such as ``changed``) falls back to on success.
    """
    if status.empty:
        return True, False
    on_failure = condition_matches(status, "failure")
    if on_failure and condition_matches(status, "success"):
        return True, True
    if on_failure:
        return False, True
    return True, False


def _pipeline_runs_on(status: Condition) -> tuple[bool, bool]:
    """(on success, on failure) of a pipeline, as drone/drone ``trigger.go`` sets
    ``OnSuccess = status.Match("success")`` and ``OnFailure = status.Match("failure")``,
    the latter forced off when there is no status condition."""
    return condition_matches(status, "success"), (
        not status.empty and condition_matches(status, "failure")
    )


_MAX_SHOWN = 80


def _show(text: str) -> str:
    """A value or pattern for a message: control characters escaped, long text cut."""
    shown = "".join(c if c.isprintable() else repr(c)[1:-1] for c in text)
    return shown if len(shown) <= _MAX_SHOWN else shown[: _MAX_SHOWN - 1] + "…"


def _show_list(patterns: Sequence[str]) -> str:
    return "[" + ", ".join(_show(p) for p in patterns) + "]"


def _explain_value(key: str, cond: Condition, value: str, ctx: MatchContext) -> str | None:
    if condition_matches(cond, value):
        return None
    if any(glob_match(pattern, value) for pattern in cond.exclude):
        reason = f"{key} '{_show(value)}' matches exclude {_show_list(cond.exclude)}"
    else:
        reason = f"{key} '{_show(value)}' does not match include {_show_list(cond.include)}"
    if key == "branch" and ctx.event == "tag":
        reason += " (a tag event has no branch; use ref: refs/tags/* to select tags)"
    return reason


def _explain_paths(cond: Condition, paths: tuple[str, ...] | None) -> str | None:
    if paths_match(cond, paths):
        return None
    assert paths  # paths_match passes when the list is unknown or empty
    if cond.exclude and all(any(glob_match(p, path) for p in cond.exclude) for path in paths):
        return f"paths: all {len(paths)} changed files match exclude {_show_list(cond.exclude)}"
    return f"paths: none of the {len(paths)} changed files match include {_show_list(cond.include)}"


def _explain_status(cond: Condition, status: str, *, for_step: bool) -> str | None:
    on_success, on_failure = _step_runs_on(cond) if for_step else _pipeline_runs_on(cond)
    runs = on_success if status == "success" else on_failure
    if runs:
        return None
    if cond.empty:
        what = "a step runs" if for_step else "a pipeline runs"
        after = "the pipeline is passing" if for_step else "the pipelines it depends on passed"
        return (
            f"status '{status}': without a status condition {what} only when {after} "
            "(add status: [failure] or [success, failure])"
        )
    parts = []
    if cond.include:
        parts.append(f"include {_show_list(cond.include)}")
    if cond.exclude:
        parts.append(f"exclude {_show_list(cond.exclude)}")
    return f"status '{status}' is not selected by {' and '.join(parts)}"


def explain_mismatch(conds: Conditions, ctx: MatchContext, *, for_step: bool) -> str | None:
    """None when ``conds`` match ``ctx``, else a short reason naming the first failing key.

    Keys are checked in the order of Drone's trigger (branch, event, action, ref, repo,
    target, cron), then instance, paths and status; all keys must match (AND).
    """
    for key, value in (
        ("branch", ctx.branch),
        ("event", ctx.event),
        ("action", ctx.action),
        ("ref", ctx.ref),
        ("repo", ctx.repo),
        ("target", ctx.target),
        ("cron", ctx.cron),
        ("instance", ctx.instance),
    ):
        reason = _explain_value(key, getattr(conds, key), value, ctx)
        if reason is not None:
            return reason
    reason = _explain_paths(conds.paths, ctx.paths)
    if reason is not None:
        return reason
    return _explain_status(conds.status, ctx.status, for_step=for_step)


def when_matches(when: Conditions, ctx: MatchContext) -> bool:
    """Whether a step with this ``when`` runs. Without a ``status`` key a step runs only
    while the pipeline passes; ``status: [failure]`` runs it only after a failure and
    ``status: [success, failure]`` always."""
    return explain_mismatch(when, ctx, for_step=True) is None


def trigger_matches(trigger: Conditions, ctx: MatchContext) -> bool:
    """Whether a pipeline with this ``trigger`` runs. ``ctx.status`` is the state of the
    pipelines it depends on; without a ``status`` key it runs only if they passed.

    As in Drone, events are not filtered by default: a pipeline without ``trigger.event``
    also runs for ``promote``, ``rollback``, ``cron`` and ``custom`` builds.
    """
    return explain_mismatch(trigger, ctx, for_step=False) is None
