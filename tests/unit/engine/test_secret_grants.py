"""Per-step secret grants and denials in the compiler (defense in depth on the runner), and
the executor failing a refused step without ever creating its container."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from tests.support.reporters import Recorder

from bastion.backends.fake import FakeBackend
from bastion.engine.compiler import CompileOptions, compile_pipeline
from bastion.engine.executor import Executor
from bastion.engine.masking import SecretMasker
from bastion.engine.plan import Plan
from bastion.engine.status import State
from bastion.spec.conditions import MatchContext
from bastion.spec.context import BuildContext
from bastion.spec.parse import parse

PIPELINE = """\
kind: pipeline
name: ci
environment:
  SHARED: {from_secret: shared}
image_pull_secrets: [registry]
steps:
- name: test
  image: busybox
  commands: [echo test]
  environment:
    TOKEN: {from_secret: token}
- name: publish
  image: plugins/docker
  settings:
    password: {from_secret: docker_password}
- name: after
  image: busybox
  commands: [echo after]
"""

VALUES = {
    "token": "token-value-Qz7Wv3Kp",
    "docker_password": "docker-pw-Vc2Bx9Zn",
    "shared": "shared-value-Fj4Hs6Dg",
    "registry": '{"auths": {"registry.example.com": {"username": "u", "password": "p4ss-Wd9"}}}',
}


def compile_with(
    grants: Mapping[str, Sequence[str]] | None,
    denials: Mapping[str, Mapping[str, str]] | None = None,
    values: Mapping[str, str] = VALUES,
    text: str = PIPELINE,
) -> Plan:
    result = parse(text)
    assert result.ok
    options = CompileOptions(run_id="g1", secret_grants=grants, secret_denials=denials or {})
    return compile_pipeline(result.manifest, 0, BuildContext(), dict(values), options)


def test_each_step_gets_only_its_grants_even_when_sent_more() -> None:
    plan = compile_with({"test": ["token", "shared"], "publish": ["shared"], "after": ["shared"]})
    test, publish, after = plan.steps
    assert test.container.env["TOKEN"] == VALUES["token"]
    assert test.refused == ""
    # The server sent docker_password's value, but not as a grant of "publish".
    assert "PLUGIN_PASSWORD" not in publish.container.env
    assert "was not granted to step 'publish'" in publish.refused
    assert after.container.env["SHARED"] == VALUES["shared"]
    assert after.refused == ""
    for step in plan.steps:
        assert step.container.pull_auth is None  # registry not granted to anyone


def test_a_denial_fails_that_step_with_the_servers_reason() -> None:
    reason = (
        "secret 'token' is not available to pull_request builds: it does not allow pull requests"
    )
    plan = compile_with(
        {"test": ["shared"], "publish": ["docker_password", "shared"], "after": ["shared"]},
        {"test": {"token": reason}},
        values={k: v for k, v in VALUES.items() if k != "token"},
    )
    test, publish, after = plan.steps
    assert test.refused == reason
    assert "TOKEN" not in test.container.env
    assert publish.refused == "" and after.refused == ""
    assert publish.container.env["PLUGIN_PASSWORD"] == VALUES["docker_password"]


def test_pull_credentials_follow_the_grants() -> None:
    everyone = {"test": ["shared", "token", "registry"], "publish": ["shared"], "after": ["shared"]}
    plan = compile_with({**everyone, "publish": ["docker_password", "shared"]})
    test, publish, _after = plan.steps
    assert test.container.pull_auth is None  # busybox is not on registry.example.com
    text = PIPELINE.replace(
        "image: busybox\n  commands: [echo test]",
        "image: registry.example.com/app\n  commands: [echo test]",
    )
    plan = compile_with({**everyone, "publish": ["docker_password", "shared"]}, text=text)
    assert plan.steps[0].container.pull_auth == {"username": "u", "password": "p4ss-Wd9"}
    assert plan.steps[1].container.pull_auth is None  # no grant: not its credentials
    denied = compile_with(
        {
            "test": ["shared", "token"],
            "publish": ["docker_password", "shared"],
            "after": ["shared"],
        },
        {"test": {"registry": "secret 'registry' does not exist: ..."}},
        text=text,
    )
    assert denied.steps[0].refused.startswith("secret 'registry' does not exist")


def test_without_grants_every_step_may_use_what_it_references() -> None:
    plan = compile_with(None)  # bastion exec
    assert all(step.refused == "" for step in plan.steps)
    assert plan.steps[1].container.env["PLUGIN_PASSWORD"] == VALUES["docker_password"]


def test_the_executor_fails_a_refused_step_without_a_container() -> None:
    reason = "secret 'token' is not available to pull_request builds: no"
    plan = compile_with(
        {"test": ["shared"], "publish": ["docker_password", "shared"], "after": ["shared"]},
        {"test": {"token": reason}},
    )
    backend = FakeBackend()
    recorder = Recorder()
    result = Executor(backend, SecretMasker(VALUES.values()), recorder, poll_interval=0.01).run(
        plan, MatchContext.from_build(BuildContext())
    )
    by_name = {s.name: s for s in result.steps}
    assert by_name["test"].state is State.FAILURE
    assert by_name["test"].detail == reason
    # Sequential steps after a failure are skipped, as after any failure; nothing of "test"
    # was ever created.
    assert by_name["publish"].state is State.SKIPPED
    assert all(spec.alias != "test" for spec in backend.started)
    assert result.state is State.FAILURE
    assert backend.resources_of(plan.run_id) == []


def test_parallel_steps_run_beside_a_refused_one() -> None:
    text = PIPELINE.replace(
        "steps:\n", "steps:\n- {name: root, image: busybox, commands: [true]}\n"
    )
    for name in ("test", "publish", "after"):
        text = text.replace(f"- name: {name}\n", f"- name: {name}\n  depends_on: [root]\n")
    plan = compile_with(
        {
            "root": ["shared"],
            "test": ["shared"],
            "publish": ["docker_password", "shared"],
            "after": ["shared"],
        },
        {"test": {"token": "secret 'token' is not available: no"}},
        text=text,
    )
    backend = FakeBackend()
    result = Executor(backend, SecretMasker(()), Recorder(), poll_interval=0.01).run(
        plan, MatchContext.from_build(BuildContext())
    )
    states = {s.name: s.state for s in result.steps}
    assert states == {
        "root": State.SUCCESS,
        "test": State.FAILURE,
        "publish": State.SUCCESS,
        "after": State.SUCCESS,
    }
    assert sorted(spec.alias for spec in backend.started) == ["after", "publish", "root"]


def test_a_refused_service_fails_the_pipeline() -> None:
    text = PIPELINE.replace(
        "steps:\n",
        "services:\n- name: db\n  image: busybox\n  environment:\n"
        "    PW: {from_secret: token}\nsteps:\n",
    )
    grants = {"db": ["shared"], "test": ["shared"], "publish": ["shared"], "after": ["shared"]}
    denial = {"db": {"token": "secret 'token' is not available to pull_request builds: no"}}
    plan = compile_with(grants, denial, text=text)
    backend = FakeBackend()
    result = Executor(backend, SecretMasker(()), Recorder(), poll_interval=0.01).run(
        plan, MatchContext.from_build(BuildContext())
    )
    by_name = {s.name: s for s in result.steps}
    assert by_name["db"].state is State.ERROR
    assert by_name["db"].detail.startswith("secret 'token' is not available")
    assert result.state is State.FAILURE
    assert all(spec.alias != "db" for spec in backend.started)


def test_a_pull_secret_that_is_not_a_docker_config_gives_no_credentials() -> None:
    # Whatever JSON a secret's owner stored, the compiler neither crashes nor invents auth.
    everyone = {"test": ["shared", "token", "registry"], "publish": ["shared"], "after": ["shared"]}
    text = PIPELINE.replace(
        "image: busybox\n  commands: [echo test]",
        "image: registry.example.com/app\n  commands: [echo test]",
    )
    for stored in (
        "[1]",
        '"auths"',
        "42",
        '{"auths": []}',
        '{"auths": {"registry.example.com": {"username": 1, "password": ["x"]}}}',
        '{"auths": {"registry.example.com": {"auth": 7}}}',
    ):
        plan = compile_with(everyone, values={**VALUES, "registry": stored}, text=text)
        assert plan.steps[0].container.pull_auth is None, stored
