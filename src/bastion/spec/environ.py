"""The ``DRONE_*`` / ``CI_*`` build variables, and Drone's ``${VAR}`` substitution.

Variables follow ``drone/runner-go`` ``environ/environ.go`` (System, Repo, Build, Stage,
Step, Link, Netrc), ``environ/semver.go`` and ``environ/calver.go``, the workspace
variables and git identity that drone-runner-docker's compiler adds to every step
(``engine/compiler/compiler.go``, runner-go ``clone/environ.go``), and the legacy ``CI_*``
names Drone keeps for 0.8 compatibility. Values are the context's strings exactly as
given — commit message, branch, pull-request title are untrusted and are only ever passed
as environment *values*.

Substitution follows ``drone/envsubst`` (which Drone runs over the raw YAML text before
parsing). Bastion instead applies it to single values *after* parsing, never to YAML
text, and never to ``commands``: a command reaches the shell with ``${VAR}`` intact and
the shell reads the value from the environment at run time, so untrusted text can never
become shell code or YAML structure. Only ``$$`` is unescaped in commands
(:func:`unescape_commands`), as Drone's pre-pass would have done.

Clock: ``spec`` reads no clock. Where Drone uses "now" for a time that is still unknown
(``DRONE_BUILD_FINISHED``, ``DRONE_STAGE_FINISHED``, a zero start time) Bastion uses the
start time the caller put in the context.
"""

from __future__ import annotations

import posixpath
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from urllib.parse import urlsplit

from bastion.spec.context import BuildContext

__all__ = [
    "StageInfo",
    "SubstitutionError",
    "build_environ",
    "failure_environ",
    "step_environ",
    "substitute",
    "unescape_commands",
]


@dataclass(frozen=True)
class StageInfo:
    """The stage (pipeline) being run, for the ``DRONE_STAGE_*`` variables."""

    name: str
    number: int
    kind: str = "pipeline"
    type: str = "docker"
    os: str = "linux"
    arch: str = "amd64"
    variant: str = ""
    depends_on: tuple[str, ...] = ()
    started: int = 0
    machine: str = ""


def _flag(value: bool) -> str:
    return "true" if value else "false"


# -- semantic and calendar versions of a tag -------------------------------------------------

# coreos/go-semver ``Version.Set``: metadata after "+", pre-release after "-", then exactly
# three dot-separated integers; identifiers are dot-separated [0-9A-Za-z-]+.
_IDENT = r"[0-9A-Za-z-]+(?:\.[0-9A-Za-z-]+)*"
_SEMVER = re.compile(rf"(\d+)\.(\d+)\.(\d+)(?:-({_IDENT}))?(?:\+({_IDENT}))?")


def _semver(tag: str) -> dict[str, str]:
    """runner-go ``versions``: the tag without one leading ``v``, parsed as semver."""
    text = tag.removeprefix("v")
    match = _SEMVER.fullmatch(text)
    if match is None:
        return {"DRONE_SEMVER_ERROR": f"{text} is not a semantic version (MAJOR.MINOR.PATCH)"}
    major, minor, patch = (str(int(match.group(i))) for i in (1, 2, 3))
    short = f"{major}.{minor}.{patch}"
    pre, build = match.group(4), match.group(5)
    env = {
        "DRONE_SEMVER": short + (f"-{pre}" if pre else "") + (f"+{build}" if build else ""),
        "DRONE_SEMVER_MAJOR": major,
        "DRONE_SEMVER_MINOR": minor,
        "DRONE_SEMVER_PATCH": patch,
        "DRONE_SEMVER_SHORT": short,
    }
    if pre:
        env["DRONE_SEMVER_PRERELEASE"] = pre
    if build:
        env["DRONE_SEMVER_BUILD"] = build
    return env


_NUMBER = re.compile(r"[+-]?[0-9]+")  # what Go's strconv.Atoi accepts


def _calver(tag: str) -> dict[str, str]:
    """runner-go ``calversions``: YYYY.MM[.MICRO[-MODIFIER]] or YY.MM..., year >= 2019."""
    parts = tag.removeprefix("v").split(".", 2)
    if len(parts) < 2 or not (_NUMBER.fullmatch(parts[0]) and _NUMBER.fullmatch(parts[1])):
        return {}
    major, minor = parts[0], parts[1]
    micro = parts[2] if len(parts) > 2 else ""
    micro, _, modifier = micro.partition("-")
    year = int(major)
    if not (18 < year < 100 or 2018 < year < 9999):
        return {}
    short = f"{major}.{minor}" + (f".{micro}" if micro else "")
    env = {
        "DRONE_CALVER": short + (f"-{modifier}" if modifier else ""),
        "DRONE_CALVER_MAJOR_MINOR": f"{major}.{minor}",
        "DRONE_CALVER_MAJOR": major,
        "DRONE_CALVER_MINOR": minor,
        "DRONE_CALVER_MICRO": micro,
        "DRONE_CALVER_SHORT": short,
    }
    if modifier:
        env["DRONE_CALVER_MODIFIER"] = modifier
    return env


# -- the build variables ---------------------------------------------------------------------

_PR_NUMBER = re.compile(r"\d+")


def _workspace(base: str, path: str) -> str:
    full = posixpath.join(base or "/", path)
    return full.rstrip("/") or "/"


def build_environ(
    ctx: BuildContext,
    stage: StageInfo,
    *,
    workspace_base: str,
    workspace_path: str,
    netrc: bool = False,
) -> dict[str, str]:
    """The variables every step of ``stage`` gets, as Drone sets them.

    ``netrc`` adds ``DRONE_NETRC_MACHINE`` (the clone host); the credentials
    (``DRONE_NETRC_USERNAME``, ``_PASSWORD``, ``_FILE``) are secrets and are added by the
    engine, never here. Step variables come from :func:`step_environ`; the status
    variables change at run time (:func:`failure_environ`).
    """
    repo, commit, build, system = ctx.repo, ctx.commit, ctx.build, ctx.system
    started = str(build.started)
    env: dict[str, str] = {
        # System (runner-go environ.System)
        "CI": "true",
        "DRONE": "true",
        "DRONE_SYSTEM_PROTO": system.proto,
        "DRONE_SYSTEM_HOST": system.host,
        "DRONE_SYSTEM_HOSTNAME": system.hostname,
        "DRONE_SYSTEM_VERSION": system.version,
        # Repository (environ.Repo)
        "DRONE_REPO": repo.slug,
        "DRONE_REPO_SCM": repo.scm,
        "DRONE_REPO_OWNER": repo.owner,
        "DRONE_REPO_NAMESPACE": repo.owner,
        "DRONE_REPO_NAME": repo.name,
        "DRONE_REPO_LINK": repo.link,
        "DRONE_REPO_BRANCH": repo.branch,
        "DRONE_REMOTE_URL": repo.http_url,
        "DRONE_GIT_HTTP_URL": repo.http_url,
        "DRONE_GIT_SSH_URL": repo.ssh_url,
        "DRONE_REPO_VISIBILITY": repo.visibility,
        "DRONE_REPO_PRIVATE": _flag(repo.private),
        # Build and commit (environ.Build). For a pull request the branch is the target
        # branch and DRONE_SOURCE_BRANCH the branch the change comes from.
        "DRONE_BRANCH": commit.branch,
        "DRONE_SOURCE_BRANCH": commit.source_branch or commit.branch,
        "DRONE_TARGET_BRANCH": commit.branch,
        "DRONE_COMMIT": commit.sha,
        "DRONE_COMMIT_SHA": commit.sha,
        "DRONE_COMMIT_BEFORE": commit.before,
        "DRONE_COMMIT_AFTER": commit.sha,
        "DRONE_COMMIT_REF": commit.ref,
        "DRONE_COMMIT_BRANCH": commit.branch,
        "DRONE_COMMIT_LINK": commit.link,
        "DRONE_COMMIT_MESSAGE": commit.message,
        "DRONE_COMMIT_AUTHOR": commit.author,
        "DRONE_COMMIT_AUTHOR_NAME": commit.author_name,
        "DRONE_COMMIT_AUTHOR_EMAIL": commit.author_email,
        "DRONE_COMMIT_AUTHOR_AVATAR": commit.author_avatar,
        "DRONE_BUILD_NUMBER": str(build.number),
        "DRONE_BUILD_PARENT": str(build.parent),
        "DRONE_BUILD_EVENT": build.event,
        "DRONE_BUILD_ACTION": build.action,
        "DRONE_BUILD_STATUS": "success",
        "DRONE_BUILD_DEBUG": "false",
        "DRONE_BUILD_CREATED": str(build.created),
        "DRONE_BUILD_STARTED": started,
        "DRONE_BUILD_FINISHED": started,
        "DRONE_BUILD_TRIGGER": build.trigger,
        "DRONE_BUILD_LINK": build.link
        or f"{system.proto}://{system.host}/{repo.slug}/{build.number}",
        "DRONE_DEPLOY_TO": build.deploy_to,
        "DRONE_DEPLOY_ID": "0",
        # Stage (environ.Stage). DRONE_STAGE_VERSION is left out: in Drone it is the
        # database row's optimistic-lock counter, not something a step can use.
        "DRONE_STAGE_KIND": stage.kind,
        "DRONE_STAGE_TYPE": stage.type,
        "DRONE_STAGE_NAME": stage.name,
        "DRONE_STAGE_NUMBER": str(stage.number),
        "DRONE_STAGE_MACHINE": stage.machine,
        "DRONE_STAGE_OS": stage.os,
        "DRONE_STAGE_ARCH": stage.arch,
        "DRONE_STAGE_VARIANT": stage.variant,
        "DRONE_STAGE_STATUS": "success",
        "DRONE_STAGE_STARTED": str(stage.started or build.started),
        "DRONE_STAGE_FINISHED": str(stage.started or build.started),
        "DRONE_STAGE_DEPENDS_ON": ",".join(stage.depends_on),
        "DRONE_CARD_PATH": "/dev/stdout",
        # Workspace (drone-runner-docker compiler)
        "DRONE_WORKSPACE": _workspace(workspace_base, workspace_path),
        "DRONE_WORKSPACE_BASE": workspace_base,
        "DRONE_WORKSPACE_PATH": workspace_path,
        # Git identity (runner-go clone.Environ, added to every step)
        "GIT_AUTHOR_NAME": commit.author_name or "bastion",
        "GIT_AUTHOR_EMAIL": commit.author_email or "noreply@bastion",
        "GIT_COMMITTER_NAME": commit.author_name or "bastion",
        "GIT_COMMITTER_EMAIL": commit.author_email or "noreply@bastion",
        "GIT_TERMINAL_PROMPT": "0",
        # Legacy Drone 0.8 names, kept by Drone "for backward compatibility".
        "CI_REPO": repo.slug,
        "CI_REPO_NAME": repo.slug,
        "CI_REPO_LINK": repo.link,
        "CI_REPO_REMOTE": repo.http_url,
        "CI_REMOTE_URL": repo.http_url,
        "CI_REPO_PRIVATE": _flag(repo.private),
        "CI_BUILD_NUMBER": str(build.number),
        "CI_PARENT_BUILD_NUMBER": str(build.parent),
        "CI_BUILD_CREATED": str(build.created),
        "CI_BUILD_STARTED": started,
        "CI_BUILD_FINISHED": started,
        "CI_BUILD_STATUS": "success",
        "CI_BUILD_EVENT": build.event,
        "CI_BUILD_LINK": commit.link,
        "CI_BUILD_TARGET": build.deploy_to,
        "CI_COMMIT_SHA": commit.sha,
        "CI_COMMIT_REF": commit.ref,
        "CI_COMMIT_BRANCH": commit.branch,
        "CI_COMMIT_MESSAGE": commit.message,
        "CI_COMMIT_AUTHOR": commit.author,
        "CI_COMMIT_AUTHOR_NAME": commit.author_name,
        "CI_COMMIT_AUTHOR_EMAIL": commit.author_email,
        "CI_COMMIT_AUTHOR_AVATAR": commit.author_avatar,
    }
    if build.cron:
        env["DRONE_CRON"] = build.cron  # the cron job's name, as Drone sets it for cron builds
    if build.event == "pull_request":
        # Drone takes the number from the ref (refs/pull/42/head); the context may know it.
        found = _PR_NUMBER.search(commit.ref)
        number = str(build.pull_request) if build.pull_request else (found[0] if found else "")
        env["DRONE_PULL_REQUEST"] = number
        env["DRONE_PULL_REQUEST_TITLE"] = build.pull_request_title
    tag = build.tag or (
        commit.ref.removeprefix("refs/tags/") if commit.ref.startswith("refs/tags/") else ""
    )
    if tag:
        env["DRONE_TAG"] = tag
        env.update(_semver(tag))
        env.update(_calver(tag))
    if netrc and repo.http_url:
        host = urlsplit(repo.http_url).hostname
        if host:
            env["DRONE_NETRC_MACHINE"] = host
    for name, value in build.params:
        # As in Drone, a deployment's parameters are variables of every step; unlike Drone,
        # one named like a variable Bastion sets never replaces it (the server also refuses
        # DRONE_* / CI_* names).
        env.setdefault(name, value)
    return env


def step_environ(step_name: str, step_number: int) -> dict[str, str]:
    """``DRONE_STEP_NAME`` and ``DRONE_STEP_NUMBER`` (runner-go ``environ.StepArgs``)."""
    return {"DRONE_STEP_NAME": step_name, "DRONE_STEP_NUMBER": str(step_number)}


def failure_environ(
    failed_steps: Sequence[str], failed_stages: Sequence[str] = ()
) -> dict[str, str]:
    """The status variables once something has failed, for steps that run after a failure
    (``when: status: [failure]``); Drone's runtime overrides them the same way."""
    env = {
        "DRONE_BUILD_STATUS": "failure",
        "DRONE_STAGE_STATUS": "failure",
        "CI_BUILD_STATUS": "failure",
        "DRONE_FAILED_STEPS": ",".join(failed_steps),
    }
    if failed_stages:
        env["DRONE_FAILED_STAGES"] = ",".join(failed_stages)
    return env


# -- substitution ----------------------------------------------------------------------------


class SubstitutionError(ValueError):
    """A ``${...}`` expression Drone would reject with "bad substitution"."""

    def __init__(self, message: str, position: int) -> None:
        super().__init__(f"bad substitution at character {position + 1}: {message}")
        self.position = position


_MAX_DEPTH = 16  # nesting of ${...} inside an argument, e.g. ${A:-${B:-${C}}}

# Shell patterns for ${VAR#pattern} and friends. Unlike the path globs of conditions, "*"
# here matches "/" too ("${path##*/}" is a basename), as in the shell and drone/envsubst.
_P_STAR, _P_ANY, _P_LIT, _P_CLASS = range(4)
_PToken = tuple[int, str, tuple[tuple[str, str], ...], bool]


def _shell_pattern(pattern: str) -> list[_PToken]:
    tokens: list[_PToken] = []
    i = 0
    while i < len(pattern):
        c = pattern[i]
        if c == "\\" and i + 1 < len(pattern):
            tokens.append((_P_LIT, pattern[i + 1], (), False))
            i += 2
            continue
        if c == "*":
            if not tokens or tokens[-1][0] != _P_STAR:
                tokens.append((_P_STAR, "", (), False))
        elif c == "?":
            tokens.append((_P_ANY, "", (), False))
        elif c == "[":
            end = pattern.find("]", i + 2)  # "]" right after "[" belongs to the class
            body = pattern[i + 1 : end] if end > 0 else ""
            negated = body[:1] in ("!", "^")
            if negated:
                body = body[1:]
            if end < 0 or not body:
                tokens.append((_P_LIT, c, (), False))  # the shell reads a lone "[" literally
            else:
                ranges: list[tuple[str, str]] = []
                k = 0
                while k < len(body):
                    if k + 2 < len(body) and body[k + 1] == "-":
                        ranges.append((body[k], body[k + 2]))
                        k += 3
                    else:
                        ranges.append((body[k], body[k]))
                        k += 1
                tokens.append((_P_CLASS, "", tuple(ranges), negated))
                i = end
        else:
            tokens.append((_P_LIT, c, (), False))
        i += 1
    return tokens


def _pattern_prefixes(tokens: Sequence[_PToken], text: str) -> list[int]:
    """The lengths of the prefixes of ``text`` that ``tokens`` match, shortest first.

    A set-of-states simulation, O(len(text)·len(tokens)): the value may be long and
    untrusted, and must not be able to make matching slow.
    """
    end = len(tokens)

    def closure(states: set[int]) -> set[int]:
        for start in list(states):
            state = start
            while state < end and tokens[state][0] == _P_STAR:
                state += 1
                states.add(state)
        return states

    states = closure({0})
    lengths = [0] if end in states else []
    for index, char in enumerate(text, start=1):
        following: set[int] = set()
        for state in states:
            if state == end:
                continue
            kind, literal, ranges, negated = tokens[state]
            if kind == _P_STAR:
                following.add(state)
            elif (
                kind == _P_ANY
                or (kind == _P_LIT and literal == char)
                or (kind == _P_CLASS and any(a <= char <= b for a, b in ranges) != negated)
            ):
                following.add(state + 1)
        states = closure(following)
        if not states:
            break
        if end in states:
            lengths.append(index)
    return lengths


def _trim(value: str, pattern: str, *, suffix: bool, longest: bool) -> str:
    tokens = _shell_pattern(pattern)
    if suffix:
        # Match the reversed pattern against the reversed value. (drone/envsubst reverses
        # the pattern *text*, which breaks classes such as [0-9]; reversing tokens does not.)
        lengths = _pattern_prefixes(tokens[::-1], value[::-1])
    else:
        lengths = _pattern_prefixes(tokens, value)
    if not lengths:
        return value
    cut = lengths[-1] if longest else lengths[0]
    return value[: len(value) - cut] if suffix else value[cut:]


def _offset(text: str) -> int | None:
    stripped = text.strip()
    return int(stripped) if _NUMBER.fullmatch(stripped) else None


def _substring(value: str, offset_text: str, length_text: str | None) -> str:
    """${VAR:offset} and ${VAR:offset:length}; an offset or length that is not a number
    leaves the value unchanged (drone/envsubst ``toSubstr``). A negative offset counts
    from the end (write ``${VAR: -3}``: ``${VAR:-3}`` is a default), a negative length
    stops that many characters before the end, as in bash."""
    offset = _offset(offset_text)
    if offset is None:
        return value
    if offset < 0:
        offset = max(len(value) + offset, 0)
    if length_text is None:
        return value[offset:]
    length = _offset(length_text)
    if length is None:
        return value
    if length < 0:
        return value[offset : max(len(value) + length, offset)]
    return value[offset : offset + length]


def _is_name_char(char: str) -> bool:
    # drone/envsubst ``acceptIdent``: letters, digits, "_" and "-". So ${A-b} names a
    # variable "A-b" (unset, hence empty): Drone does not support the ${VAR-default} form.
    return char.isalnum() or char in "_-"


_CASING: Mapping[str, Callable[[str], str]] = {
    "^^": str.upper,
    ",,": str.lower,
    "^": lambda s: s[:1].upper() + s[1:],
    ",": lambda s: s[:1].lower() + s[1:],
}


class _Substituter:
    """A recursive-descent reading of the drone/envsubst grammar, evaluated as it reads.

    Values come only from ``variables`` and are written to the output as they are: the
    result of a substitution is never read again, so a value containing ``${...}`` or
    ``$(...)`` stays literal text.
    """

    def __init__(self, text: str, variables: Mapping[str, str]) -> None:
        self.text = text
        self.variables = variables
        self.pos = 0

    def fail(self, message: str) -> SubstitutionError:
        return SubstitutionError(message, self.pos)

    def peek(self, offset: int = 0) -> str:
        index = self.pos + offset
        return self.text[index] if index < len(self.text) else ""

    def top(self) -> str:
        out: list[str] = []
        text = self.text
        while self.pos < len(text):
            dollar = text.find("$", self.pos)
            if dollar < 0:
                out.append(text[self.pos :])
                break
            out.append(text[self.pos : dollar])
            self.pos = dollar
            if text.startswith("$$", dollar):
                out.append("$")  # "$$" is an escaped "$"
                self.pos += 2
            elif text.startswith("${", dollar):
                out.append(self.expression(0))
            else:
                # A "$" not followed by "{": Drone's envsubst leaves "$VAR" alone.
                out.append("$")
                self.pos += 1
        return "".join(out)

    def argument(self, stops: str, depth: int, *, escapes: bool = False) -> str:
        """Text up to one of ``stops`` (not consumed), with nested ``${...}`` evaluated."""
        out: list[str] = []
        text = self.text
        while True:
            if self.pos >= len(text):
                raise self.fail("missing '}'")
            char = text[self.pos]
            if char in stops:
                return "".join(out)
            if text.startswith("$$", self.pos):
                out.append("$")
                self.pos += 2
            elif text.startswith("${", self.pos):
                out.append(self.expression(depth + 1))
            elif escapes and char == "\\" and self.peek(1) in ("/", "\\"):
                out.append(self.peek(1))  # "\/" and "\\" in ${VAR/pattern/replacement}
                self.pos += 2
            else:
                out.append(char)
                self.pos += 1

    def close(self) -> None:
        if self.peek() != "}":
            raise self.fail("expected '}'")
        self.pos += 1

    def expression(self, depth: int) -> str:
        if depth > _MAX_DEPTH:
            raise self.fail("${...} nested too deeply")
        self.pos += 2  # "${"
        length_of = self.peek() == "#"
        if length_of:
            self.pos += 1
        start = self.pos
        while self.pos < len(self.text) and _is_name_char(self.text[self.pos]):
            self.pos += 1
        name = self.text[start : self.pos]
        if not name:
            raise self.fail("expected a variable name after '${'")
        value = self.variables.get(name, "")  # unset variables are empty, as in Drone
        if length_of:
            self.close()
            return str(len(value))

        op = self.peek()
        if op == "}":
            self.pos += 1
            return value
        if op == "=" or (op == ":" and self.peek(1) in ("=", "-", "?", "+")):
            # ${VAR=default}, ${VAR:=default}, ${VAR:-default}: the default when the value
            # is empty (unset and empty are the same here). drone/envsubst also treats
            # ${VAR:?word} and ${VAR:+word} as defaults; so does Bastion, for compatibility.
            self.pos += 1 if op == "=" else 2
            default = self.argument("}", depth)
            self.close()
            return value or default
        if op == ":":
            self.pos += 1
            offset_text = self.argument(":}", depth)
            if not offset_text:
                raise self.fail("expected an offset after ':'")
            length_text = None
            if self.peek() == ":":
                self.pos += 1
                length_text = self.argument("}", depth)
                if not length_text:
                    raise self.fail("expected a length after ':'")
            self.close()
            return _substring(value, offset_text, length_text)
        if op in ("^", ","):
            casing = op
            self.pos += 1
            if self.peek() in ("^", ","):
                casing += self.peek()
                self.pos += 1
            self.close()
            # A mixed form such as ${VAR^,} is not a function in drone/envsubst either.
            convert = _CASING.get(casing)
            return convert(value) if convert else value
        if op in ("#", "%"):
            longest = self.peek(1) == op
            self.pos += 2 if longest else 1
            pattern = self.argument("}", depth)
            if not pattern:
                raise self.fail(f"expected a pattern after '{op}'")
            self.close()
            return _trim(value, pattern, suffix=op == "%", longest=longest)
        if op == "/":
            mode = "/"
            self.pos += 1
            if self.peek() in ("/", "#", "%"):
                mode += self.peek()
                self.pos += 1
            old = self.argument("/}", depth, escapes=True)
            if not old:
                raise self.fail("expected a pattern after '/'")
            if self.peek() != "/":
                raise self.fail("expected '/' after the pattern")
            self.pos += 1
            new = self.argument("}", depth, escapes=True)
            self.close()
            # drone/envsubst replaces literal text (not a shell pattern) here.
            if mode == "//":
                return value.replace(old, new)
            if mode == "/#":
                return new + value[len(old) :] if value.startswith(old) else value
            if mode == "/%":
                return value[: len(value) - len(old)] + new if value.endswith(old) else value
            return value.replace(old, new, 1)
        raise self.fail(f"unexpected {op!r} after the variable name" if op else "missing '}'")


def substitute(text: str, variables: Mapping[str, str]) -> str:
    """Drone's ``${VAR}`` substitution over one already-parsed value.

    Supported: ``${VAR}``, ``${#VAR}``, ``${VAR=default}`` / ``${VAR:=default}`` /
    ``${VAR:-default}`` (the default may itself contain ``${...}``), ``${VAR^}``,
    ``${VAR^^}``, ``${VAR,}``, ``${VAR,,}``, ``${VAR:offset}``, ``${VAR:offset:length}``,
    ``${VAR#pattern}``, ``${VAR##pattern}``, ``${VAR%pattern}``, ``${VAR%%pattern}``,
    ``${VAR/old/new}``, ``${VAR//old/new}``, ``${VAR/#old/new}``, ``${VAR/%old/new}``.
    ``$$`` is an escaped ``$``. As in drone/envsubst, an unknown variable is empty and a
    bare ``$VAR`` (no braces) is left as it is. Substituted values are never expanded
    again. Raises :class:`SubstitutionError` for a malformed ``${...}``.
    """
    return _Substituter(text, variables).top()


def unescape_commands(command: str) -> str:
    """A command as Drone's pre-pass would leave it, without substituting anything:
    ``$$`` becomes ``$`` (so ``$${HOME}`` reaches the shell as ``${HOME}``); ``${VAR}`` is
    left for the shell to expand from the step's environment at run time."""
    return command.replace("$$", "$")
