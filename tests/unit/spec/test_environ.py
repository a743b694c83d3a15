"""Build variables as Drone sets them, and Drone-compatible, injection-free substitution."""

from __future__ import annotations

import dataclasses

import pytest

from bastion.spec.context import Build, BuildContext, Commit, Repo, System
from bastion.spec.environ import (
    StageInfo,
    SubstitutionError,
    build_environ,
    failure_environ,
    step_environ,
    substitute,
    unescape_commands,
)

SHA = "762941318ee16e59dabbacb1b4049eec22f0d303"
BEFORE = "7fd1a60b01f91b314f59955a4e4d4e80d8edf11d"

PUSH = BuildContext(
    repo=Repo(
        owner="octocat",
        name="hello-world",
        branch="main",
        private=True,
        visibility="private",
        link="https://git.example.com/octocat/hello-world",
        http_url="https://git.example.com/octocat/hello-world.git",
        ssh_url="git@git.example.com:octocat/hello-world.git",
    ),
    commit=Commit(
        sha=SHA,
        before=BEFORE,
        ref="refs/heads/main",
        branch="main",
        message="update README",
        author="octocat",
        author_name="The Octocat",
        author_email="octocat@example.com",
        author_avatar="https://git.example.com/avatars/octocat",
        link=f"https://git.example.com/octocat/hello-world/commit/{SHA}",
    ),
    build=Build(
        number=42, parent=0, event="push", trigger="@hook", created=1700000000, started=1700000005
    ),
    system=System(host="ci.example.com", hostname="ci.example.com", proto="https", version="0.1.0"),
)
STAGE = StageInfo(name="default", number=1, depends_on=("lint", "unit"), machine="runner-1")


def environ(ctx: BuildContext = PUSH, *, netrc: bool = False) -> dict[str, str]:
    return build_environ(ctx, STAGE, workspace_base="/drone", workspace_path="src", netrc=netrc)


def test_push_full_variable_list() -> None:
    assert environ() == {
        "CI": "true",
        "DRONE": "true",
        "DRONE_SYSTEM_PROTO": "https",
        "DRONE_SYSTEM_HOST": "ci.example.com",
        "DRONE_SYSTEM_HOSTNAME": "ci.example.com",
        "DRONE_SYSTEM_VERSION": "0.1.0",
        "DRONE_REPO": "octocat/hello-world",
        "DRONE_REPO_SCM": "git",
        "DRONE_REPO_OWNER": "octocat",
        "DRONE_REPO_NAMESPACE": "octocat",
        "DRONE_REPO_NAME": "hello-world",
        "DRONE_REPO_LINK": "https://git.example.com/octocat/hello-world",
        "DRONE_REPO_BRANCH": "main",
        "DRONE_REMOTE_URL": "https://git.example.com/octocat/hello-world.git",
        "DRONE_GIT_HTTP_URL": "https://git.example.com/octocat/hello-world.git",
        "DRONE_GIT_SSH_URL": "git@git.example.com:octocat/hello-world.git",
        "DRONE_REPO_VISIBILITY": "private",
        "DRONE_REPO_PRIVATE": "true",
        "DRONE_BRANCH": "main",
        "DRONE_SOURCE_BRANCH": "main",
        "DRONE_TARGET_BRANCH": "main",
        "DRONE_COMMIT": SHA,
        "DRONE_COMMIT_SHA": SHA,
        "DRONE_COMMIT_BEFORE": BEFORE,
        "DRONE_COMMIT_AFTER": SHA,
        "DRONE_COMMIT_REF": "refs/heads/main",
        "DRONE_COMMIT_BRANCH": "main",
        "DRONE_COMMIT_LINK": f"https://git.example.com/octocat/hello-world/commit/{SHA}",
        "DRONE_COMMIT_MESSAGE": "update README",
        "DRONE_COMMIT_AUTHOR": "octocat",
        "DRONE_COMMIT_AUTHOR_NAME": "The Octocat",
        "DRONE_COMMIT_AUTHOR_EMAIL": "octocat@example.com",
        "DRONE_COMMIT_AUTHOR_AVATAR": "https://git.example.com/avatars/octocat",
        "DRONE_BUILD_NUMBER": "42",
        "DRONE_BUILD_PARENT": "0",
        "DRONE_BUILD_EVENT": "push",
        "DRONE_BUILD_ACTION": "",
        "DRONE_BUILD_STATUS": "success",
        "DRONE_BUILD_DEBUG": "false",
        "DRONE_BUILD_CREATED": "1700000000",
        "DRONE_BUILD_STARTED": "1700000005",
        "DRONE_BUILD_FINISHED": "1700000005",
        "DRONE_BUILD_TRIGGER": "@hook",
        "DRONE_BUILD_LINK": "https://ci.example.com/octocat/hello-world/42",
        "DRONE_DEPLOY_TO": "",
        "DRONE_DEPLOY_ID": "0",
        "DRONE_STAGE_KIND": "pipeline",
        "DRONE_STAGE_TYPE": "docker",
        "DRONE_STAGE_NAME": "default",
        "DRONE_STAGE_NUMBER": "1",
        "DRONE_STAGE_MACHINE": "runner-1",
        "DRONE_STAGE_OS": "linux",
        "DRONE_STAGE_ARCH": "amd64",
        "DRONE_STAGE_VARIANT": "",
        "DRONE_STAGE_STATUS": "success",
        "DRONE_STAGE_STARTED": "1700000005",
        "DRONE_STAGE_FINISHED": "1700000005",
        "DRONE_STAGE_DEPENDS_ON": "lint,unit",
        "DRONE_CARD_PATH": "/dev/stdout",
        "DRONE_WORKSPACE": "/drone/src",
        "DRONE_WORKSPACE_BASE": "/drone",
        "DRONE_WORKSPACE_PATH": "src",
        "GIT_AUTHOR_NAME": "The Octocat",
        "GIT_AUTHOR_EMAIL": "octocat@example.com",
        "GIT_COMMITTER_NAME": "The Octocat",
        "GIT_COMMITTER_EMAIL": "octocat@example.com",
        "GIT_TERMINAL_PROMPT": "0",
        "CI_REPO": "octocat/hello-world",
        "CI_REPO_NAME": "octocat/hello-world",
        "CI_REPO_LINK": "https://git.example.com/octocat/hello-world",
        "CI_REPO_REMOTE": "https://git.example.com/octocat/hello-world.git",
        "CI_REMOTE_URL": "https://git.example.com/octocat/hello-world.git",
        "CI_REPO_PRIVATE": "true",
        "CI_BUILD_NUMBER": "42",
        "CI_PARENT_BUILD_NUMBER": "0",
        "CI_BUILD_CREATED": "1700000000",
        "CI_BUILD_STARTED": "1700000005",
        "CI_BUILD_FINISHED": "1700000005",
        "CI_BUILD_STATUS": "success",
        "CI_BUILD_EVENT": "push",
        "CI_BUILD_LINK": f"https://git.example.com/octocat/hello-world/commit/{SHA}",
        "CI_BUILD_TARGET": "",
        "CI_COMMIT_SHA": SHA,
        "CI_COMMIT_REF": "refs/heads/main",
        "CI_COMMIT_BRANCH": "main",
        "CI_COMMIT_MESSAGE": "update README",
        "CI_COMMIT_AUTHOR": "octocat",
        "CI_COMMIT_AUTHOR_NAME": "The Octocat",
        "CI_COMMIT_AUTHOR_EMAIL": "octocat@example.com",
        "CI_COMMIT_AUTHOR_AVATAR": "https://git.example.com/avatars/octocat",
    }


def test_pull_request() -> None:
    ctx = dataclasses.replace(
        PUSH,
        commit=dataclasses.replace(
            PUSH.commit, ref="refs/pull/32/head", branch="main", source_branch="feature/readme"
        ),
        build=dataclasses.replace(
            PUSH.build,
            event="pull_request",
            action="synchronized",
            pull_request=32,
            pull_request_title="feat: update README",
        ),
    )
    env = environ(ctx)
    assert env["DRONE_PULL_REQUEST"] == "32"
    assert env["DRONE_PULL_REQUEST_TITLE"] == "feat: update README"
    assert env["DRONE_SOURCE_BRANCH"] == "feature/readme"
    assert env["DRONE_TARGET_BRANCH"] == "main"
    assert env["DRONE_BRANCH"] == "main"  # Drone: the target branch
    assert env["DRONE_COMMIT_BRANCH"] == "main"
    assert env["DRONE_BUILD_ACTION"] == "synchronized"
    assert "DRONE_TAG" not in env


def test_pull_request_number_from_ref_when_not_given() -> None:
    ctx = dataclasses.replace(
        PUSH,
        commit=dataclasses.replace(PUSH.commit, ref="refs/pull/7/head"),
        build=dataclasses.replace(PUSH.build, event="pull_request"),
    )
    assert environ(ctx)["DRONE_PULL_REQUEST"] == "7"


def test_push_has_no_pull_request_variables() -> None:
    assert not {k for k in environ() if k.startswith(("DRONE_PULL_REQUEST", "DRONE_SEMVER"))}


def _tag(name: str, *, from_ref_only: bool = False) -> dict[str, str]:
    ctx = dataclasses.replace(
        PUSH,
        commit=dataclasses.replace(PUSH.commit, ref=f"refs/tags/{name}"),
        build=dataclasses.replace(PUSH.build, event="tag", tag="" if from_ref_only else name),
    )
    env = environ(ctx)
    return {
        k: v for k, v in env.items() if k.startswith(("DRONE_TAG", "DRONE_SEMVER", "DRONE_CALVER"))
    }


def test_tag_with_semver_parts() -> None:
    assert _tag("v1.2.3-rc.1+build.5") == {
        "DRONE_TAG": "v1.2.3-rc.1+build.5",
        "DRONE_SEMVER": "1.2.3-rc.1+build.5",
        "DRONE_SEMVER_MAJOR": "1",
        "DRONE_SEMVER_MINOR": "2",
        "DRONE_SEMVER_PATCH": "3",
        "DRONE_SEMVER_PRERELEASE": "rc.1",
        "DRONE_SEMVER_BUILD": "build.5",
        "DRONE_SEMVER_SHORT": "1.2.3",
    }


def test_tag_taken_from_the_ref_as_drone_does() -> None:
    env = _tag("v2.0.0", from_ref_only=True)
    assert env["DRONE_TAG"] == "v2.0.0"
    assert env["DRONE_SEMVER"] == "2.0.0"
    assert "DRONE_SEMVER_PRERELEASE" not in env


def test_tag_that_is_not_semver() -> None:
    env = _tag("release-candidate")
    assert env["DRONE_TAG"] == "release-candidate"
    assert "DRONE_SEMVER" not in env
    assert "DRONE_SEMVER_ERROR" in env


def test_calver_tag() -> None:
    assert _tag("2024.05.1-beta") == {
        "DRONE_TAG": "2024.05.1-beta",
        "DRONE_SEMVER": "2024.5.1-beta",  # also valid semver, as in Drone
        "DRONE_SEMVER_MAJOR": "2024",
        "DRONE_SEMVER_MINOR": "5",
        "DRONE_SEMVER_PATCH": "1",
        "DRONE_SEMVER_PRERELEASE": "beta",
        "DRONE_SEMVER_SHORT": "2024.5.1",
        "DRONE_CALVER": "2024.05.1-beta",
        "DRONE_CALVER_MAJOR_MINOR": "2024.05",
        "DRONE_CALVER_MAJOR": "2024",
        "DRONE_CALVER_MINOR": "05",
        "DRONE_CALVER_MICRO": "1",
        "DRONE_CALVER_MODIFIER": "beta",
        "DRONE_CALVER_SHORT": "2024.05.1",
    }


def test_small_version_is_not_calver() -> None:
    assert not {k for k in _tag("v1.2.3") if k.startswith("DRONE_CALVER")}


def test_promote_target() -> None:
    ctx = dataclasses.replace(
        PUSH, build=dataclasses.replace(PUSH.build, event="promote", deploy_to="production")
    )
    env = environ(ctx)
    assert env["DRONE_DEPLOY_TO"] == "production"
    assert env["CI_BUILD_TARGET"] == "production"


def test_promote_parameters_are_variables_that_never_replace_ours() -> None:
    params = (("VERSION", "1.2.3"), ("DRONE_COMMIT_SHA", "forged"), ("CI", "false"))
    ctx = dataclasses.replace(
        PUSH,
        build=dataclasses.replace(
            PUSH.build, event="promote", deploy_to="production", params=params
        ),
    )
    env = environ(ctx)
    assert env["VERSION"] == "1.2.3"
    assert env["DRONE_COMMIT_SHA"] == SHA
    assert env["CI"] == "true"


def test_netrc_machine_only_never_credentials() -> None:
    env = environ(netrc=True)
    assert env["DRONE_NETRC_MACHINE"] == "git.example.com"
    assert not {"DRONE_NETRC_USERNAME", "DRONE_NETRC_PASSWORD", "DRONE_NETRC_FILE"} & set(env)
    assert "DRONE_NETRC_MACHINE" not in environ()


def test_absolute_workspace_path() -> None:
    env = build_environ(PUSH, STAGE, workspace_base="/drone", workspace_path="/go/src/app")
    assert env["DRONE_WORKSPACE"] == "/go/src/app"


def test_untrusted_values_are_passed_verbatim() -> None:
    message = 'fix: $(touch /pwned) `id` ${DRONE_COMMIT_SHA} $$HOME\n"quoted"'
    ctx = dataclasses.replace(PUSH, commit=dataclasses.replace(PUSH.commit, message=message))
    env = environ(ctx)
    assert env["DRONE_COMMIT_MESSAGE"] == message
    assert env["CI_COMMIT_MESSAGE"] == message


def test_step_environ() -> None:
    assert step_environ("test", 3) == {"DRONE_STEP_NAME": "test", "DRONE_STEP_NUMBER": "3"}


def test_failure_environ() -> None:
    assert failure_environ(["test", "lint"], ["backend"]) == {
        "DRONE_BUILD_STATUS": "failure",
        "DRONE_STAGE_STATUS": "failure",
        "CI_BUILD_STATUS": "failure",
        "DRONE_FAILED_STEPS": "test,lint",
        "DRONE_FAILED_STAGES": "backend",
    }


# -- substitute ------------------------------------------------------------------------------

VARS = {
    "VAR": "abcABC123ABCabc",
    "FILE": "bash.string.txt",
    "PATH_NAME": "/home/bozo/ideas/thoughts.for.today",
    "SLASHED": "foo/bar/baz",
    "SHA": SHA,
    "DEFAULT": "foo",
    "EMPTY": "",
}


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("plain text", "plain text"),
        ("${VAR}", "abcABC123ABCabc"),
        ("pre-${VAR}-post", "pre-abcABC123ABCabc-post"),
        ("${#VAR}", "15"),
        ("${VAR^}", "AbcABC123ABCabc"),
        ("${VAR^^}", "ABCABC123ABCABC"),
        ("${VAR,}", "abcABC123ABCabc"),
        ("${VAR,,}", "abcabc123abcabc"),
        ("${PATH_NAME:11}", "ideas/thoughts.for.today"),
        ("${PATH_NAME:11:5}", "ideas"),
        ("${SHA:0:8}", "76294131"),
        ("${SHA: -4}", "d303"),
        ("${SHA:x}", SHA),  # not a number: unchanged, as drone/envsubst
        ("${VAR:100}", ""),
        ("${UNSET=xyz}", "xyz"),
        ("${UNSET:=xyz}", "xyz"),
        ("${UNSET:-xyz}", "xyz"),
        ("${EMPTY:-xyz}", "xyz"),
        ("${VAR:-xyz}", "abcABC123ABCabc"),
        ("${UNSET=${DEFAULT}-suffix}", "foo-suffix"),
        ("${UNSET=prefix${DEFAULT}-suffix}", "prefixfoo-suffix"),
        ("${UNSET=${VAR^^}}", "ABCABC123ABCABC"),
        ("${VAR/abc/xyz}", "xyzABC123ABCabc"),
        ("${VAR//abc/xyz}", "xyzABC123ABCxyz"),
        ("${VAR/#abc/XYZ}", "XYZABC123ABCabc"),
        ("${VAR/%abc/XYZ}", "abcABC123ABCXYZ"),
        ("${VAR/abc/}", "ABC123ABCabc"),
        (r"${SLASHED//\//-}", "foo-bar-baz"),
        ("${FILE#*.}", "string.txt"),
        ("${FILE##*.}", "txt"),
        ("${FILE%.*}", "bash.string"),
        ("${FILE%%.*}", "bash"),
        ("${PATH_NAME##*/}", "thoughts.for.today"),
        ("${FILE%[a-z]}", "bash.string.tx"),
        ("${FILE#nomatch}", "bash.string.txt"),
        # unknown variables are empty, as drone/envsubst with Drone's mapping
        ("${UNSET}", ""),
        ("a${UNSET}b", "ab"),
        # "$$" escapes; a bare $VAR is not substituted by Drone
        ("$${VAR}", "${VAR}"),
        ("$$VAR", "$VAR"),
        ("$VAR", "$VAR"),
        ("$$$${VAR}", "$${VAR}"),
        ("$$${VAR}", "$abcABC123ABCabc"),
        ("cost: 5$", "cost: 5$"),
        ("some ${VAR}$${x$${VAR}$VAR${VAR}", "some abcABC123ABCabc${x${VAR}$VARabcABC123ABCabc"),
    ],
)
def test_substitute(text: str, expected: str) -> None:
    assert substitute(text, VARS) == expected


@pytest.mark.parametrize(
    "text",
    ["${", "${}", "${VAR", "${ VAR}", "${VAR:}", "${VAR#}", "${VAR/x}", "${VAR+x}", "${VAR!}"],
)
def test_bad_substitution(text: str) -> None:
    with pytest.raises(SubstitutionError, match="bad substitution"):
        substitute(text, VARS)


def test_deep_nesting_is_refused_not_a_crash() -> None:
    text = "${A=" * 50 + "x" + "}" * 50
    with pytest.raises(SubstitutionError, match="nested too deeply"):
        substitute(text, {})


@pytest.mark.parametrize(
    "message",
    [
        "$(touch /pwned)",
        "${DRONE_COMMIT_SHA}",
        "`touch /pwned`; ${DRONE_COMMIT_SHA^^} $${x} $$",
        "${A=${DRONE_COMMIT_SHA}}",
    ],
)
def test_injection_stays_literal(message: str) -> None:
    variables = {"DRONE_COMMIT_MESSAGE": message, "DRONE_COMMIT_SHA": SHA}
    assert substitute("${DRONE_COMMIT_MESSAGE}", variables) == message
    assert substitute("msg=${DRONE_COMMIT_MESSAGE^^}", variables) == "msg=" + message.upper()
    assert substitute("${UNSET:-${DRONE_COMMIT_MESSAGE}}", variables) == message
    # the value is not re-read even when a trim or replace moves text around
    assert substitute("${DRONE_COMMIT_MESSAGE#?}", variables) == message[1:]
    assert SHA not in substitute("${DRONE_COMMIT_MESSAGE}", variables)


def test_hostile_trim_pattern_stays_fast() -> None:
    variables = {"V": "a" * 5000, "P": "*a*a*a*a*a*a*a*a*b"}
    assert substitute("${V##*a*a*a*a*a*a*a*a*b}", variables) == variables["V"]
    assert substitute("${V%%${P}}", variables) == variables["V"]


# -- unescape_commands -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("command", "expected"),
    [
        ("echo $${HOME}", "echo ${HOME}"),
        ("echo ${DRONE_COMMIT_SHA}", "echo ${DRONE_COMMIT_SHA}"),  # the shell expands it
        ("echo $$$$", "echo $$"),
        ("echo $$$", "echo $$"),
        ("printf '%s' \"$DRONE_COMMIT_MESSAGE\"", "printf '%s' \"$DRONE_COMMIT_MESSAGE\""),
        ("go test ./...", "go test ./..."),
    ],
)
def test_unescape_commands(command: str, expected: str) -> None:
    assert unescape_commands(command) == expected
