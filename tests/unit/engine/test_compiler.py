"""The compiler: hardening values, secrets only where referenced, refusals before running."""

from __future__ import annotations

import pytest

from bastion.engine.compiler import CompileError, CompileOptions, compile_pipeline, shell_script
from bastion.engine.hardening import DEFAULT_CAPABILITIES, Hardening
from bastion.engine.plan import FailurePolicy, MountKind, PullPolicy, StepKind
from bastion.spec.context import Build, BuildContext, Commit
from bastion.spec.diagnostics import Kind
from bastion.spec.parse import parse

GIB = 1 << 30


def compile_text(text: str, secrets: dict[str, str] | None = None, **options: object):  # type: ignore[no-untyped-def]
    result = parse(text)
    assert result.ok, [d.format() for d in result.diagnostics]
    opts = CompileOptions(run_id="r1", **options)  # type: ignore[arg-type]
    return compile_pipeline(result.manifest, 0, BuildContext(), secrets or {}, opts)


BASIC = """\
kind: pipeline
name: ci
environment: {SHARED: "yes"}
services:
- name: Cache DB
  image: redis
steps:
- name: build
  image: golang:1.22
  commands:
  - go build
  - echo "$${HOME}"
- name: publish
  image: plugins/docker
  settings:
    password: {from_secret: docker_password}
    repo: org/${DRONE_REPO_NAME}
- name: notify
  image: alpine
  environment:
    TOKEN: {from_secret: slack}
  failure: ignore
"""


def test_every_container_is_hardened() -> None:
    plan = compile_text(BASIC, {"docker_password": "hunter22", "slack": "xoxb-123456"})
    h = Hardening()
    for step in plan.all_steps():
        c = step.container
        assert c.privileged is False
        assert c.cap_drop == ("ALL",)
        assert c.cap_add == DEFAULT_CAPABILITIES
        for cap in ("NET_RAW", "MKNOD", "SYS_CHROOT", "AUDIT_WRITE", "SETFCAP"):
            assert cap not in c.cap_add
        assert "no-new-privileges:true" in c.security_opt
        assert not any("unconfined" in o for o in c.security_opt)
        assert c.pids_limit == h.pids_limit
        assert c.mem_limit == c.memswap_limit == h.mem_limit
        assert c.nano_cpus == int(h.cpus * 1e9)
        assert not c.network_mode and not c.devices and not c.dns and not c.extra_hosts
        assert [m.kind for m in c.mounts] == [MountKind.VOLUME]
        assert c.mounts[0].target == "/drone/src"
        assert c.labels["io.bastion.run"] == "r1"
    assert plan.network == "bastion-r1"


def test_secrets_reach_only_the_steps_that_reference_them() -> None:
    plan = compile_text(BASIC, {"docker_password": "hunter22", "slack": "xoxb-123456"})
    publish, notify, build = plan.step("publish"), plan.step("notify"), plan.step("build")
    assert publish.container.env["PLUGIN_PASSWORD"] == "hunter22"
    assert "xoxb-123456" not in publish.container.env.values()
    assert notify.container.env["TOKEN"] == "xoxb-123456"
    assert "hunter22" not in notify.container.env.values()
    for value in ("hunter22", "xoxb-123456"):
        assert value not in build.container.env.values()
        assert value not in plan.step("Cache DB").container.env.values()
    assert publish.secrets == ("docker_password",)
    assert publish.secret_env == frozenset({"PLUGIN_PASSWORD"})
    assert "hunter22" not in repr(plan)


def test_missing_secret_is_an_error_naming_it() -> None:
    with pytest.raises(CompileError) as info:
        compile_text(BASIC, {"slack": "xoxb-123456"}, missing_secret_hint="pass --secret")
    (problem,) = info.value.diagnostics
    assert "docker_password" in problem.message
    assert "pass --secret" in problem.message
    assert problem.kind is Kind.RUNTIME


def test_commands_become_a_set_e_script_without_substitution() -> None:
    plan = compile_text(BASIC, {"docker_password": "hunter22", "slack": "xoxb-123456"})
    build = plan.step("build").container
    assert build.entrypoint == ("/bin/sh", "-c")
    assert build.command is not None
    script = build.command[0]
    assert script.startswith("set -e\n")
    assert 'echo "${HOME}"' in script  # $$ unescaped, left for the shell
    assert "go build" in script
    assert build.working_dir == "/drone/src"


def test_settings_and_environment_are_substituted_after_parsing() -> None:
    ctx = BuildContext(commit=Commit(message="$(touch /pwned) ${DRONE_COMMIT_SHA}", sha="abc"))
    result = parse(BASIC)
    plan = compile_pipeline(
        result.manifest,
        0,
        ctx,
        {"docker_password": "hunter22", "slack": "xoxb-123456"},
        CompileOptions(run_id="r1"),
    )
    env = plan.step("publish").container.env
    assert env["PLUGIN_REPO"] == "org/project"
    # Untrusted text is only ever a value: exactly as written, never expanded.
    assert env["DRONE_COMMIT_MESSAGE"] == "$(touch /pwned) ${DRONE_COMMIT_SHA}"
    assert "pwned" not in (plan.step("build").container.command or ("",))[0]


def test_services_are_detached_and_named_by_slug() -> None:
    plan = compile_text(BASIC, {"docker_password": "hunter22", "slack": "xoxb-123456"})
    (svc,) = plan.services
    assert svc.kind is StepKind.SERVICE and svc.detach
    assert svc.container.alias == "cache-db"
    assert [s.number for s in plan.all_steps()] == [1, 2, 3, 4]


def test_sequential_and_dag_dependencies() -> None:
    plan = compile_text(BASIC, {"docker_password": "hunter22", "slack": "xoxb-123456"})
    assert plan.step("build").depends_on == ()
    assert plan.step("publish").depends_on == ("build",)
    assert plan.step("notify").depends_on == ("publish",)
    assert plan.step("notify").failure is FailurePolicy.IGNORE
    dag = compile_text(
        "kind: pipeline\nsteps:\n- {name: a, image: x}\n- {name: b, image: x}\n"
        "- {name: c, image: x, depends_on: [a, b]}\n"
    )
    assert [s.depends_on for s in dag.steps] == [(), (), ("a", "b")]


def test_untrusted_privileged_is_refused_with_position() -> None:
    text = "kind: pipeline\nsteps:\n- name: dind\n  image: docker\n  privileged: true\n"
    with pytest.raises(CompileError) as info:
        compile_text(text)
    (problem,) = info.value.diagnostics
    assert problem.kind is Kind.POLICY
    assert problem.line == 5
    assert problem.path == "steps[0].privileged"
    plan = compile_text(text, trusted=True)
    assert plan.steps[0].container.privileged is True


def test_limits_follow_settings_and_step_mem_limit() -> None:
    h = Hardening(pids_limit=64, mem_limit=GIB, cpus=0.5, read_only_rootfs=True)
    plan = compile_text(
        "kind: pipeline\nsteps:\n- {name: a, image: x, mem_limit: 256m}\n- {name: b, image: x}\n",
        hardening=h,
    )
    a, b = (s.container for s in plan.steps)
    assert a.mem_limit == 256 << 20
    assert b.mem_limit == GIB
    assert a.pids_limit == 64
    assert a.nano_cpus == 500_000_000
    assert a.read_only_rootfs and "/tmp" in a.tmpfs


def test_volumes_compile_to_run_scoped_volumes() -> None:
    text = """\
kind: pipeline
steps:
- name: a
  image: x
  volumes: [{name: cache, path: /cache}, {name: mem, path: /mem}]
volumes:
- {name: cache, temp: {}}
- {name: mem, temp: {medium: memory}}
"""
    plan = compile_text(text, trusted=True)
    mounts = {m.target: m for m in plan.steps[0].container.mounts}
    assert mounts["/cache"].kind is MountKind.VOLUME
    assert mounts["/cache"].source == "bastion-r1-vol-cache"
    assert mounts["/mem"].kind is MountKind.TMPFS
    assert plan.volumes == ("bastion-r1-vol-cache",)


def test_pull_policy_and_plugin_entrypoint() -> None:
    plan = compile_text(
        "kind: pipeline\nsteps:\n- {name: a, image: x, pull: never, entrypoint: [/bin/run], "
        "command: [--flag]}\n- {name: b, image: x, pull: always}\n- {name: c, image: x}\n"
    )
    a, b, c = plan.steps
    assert a.container.pull is PullPolicy.NEVER
    assert a.container.entrypoint == ("/bin/run",)
    assert a.container.command == ("--flag",)
    assert b.container.pull is PullPolicy.ALWAYS
    assert c.container.pull is PullPolicy.IF_NOT_EXISTS
    assert c.container.entrypoint is None


def test_non_docker_types_and_other_platforms_are_refused() -> None:
    with pytest.raises(CompileError, match="kubernetes"):
        compile_text("kind: pipeline\ntype: kubernetes\nsteps: [{name: a, image: x}]\n")
    with pytest.raises(CompileError, match="arm64"):
        compile_text("kind: pipeline\nplatform: {arch: arm64}\nsteps: [{name: a, image: x}]\n")


def test_shell_script_quotes_the_trace() -> None:
    script = shell_script(("echo 'it''s'", "false"))
    assert script.splitlines()[0] == "set -e"
    assert "printf '+ %s\\n'" in script


def test_drone_variables_are_set_for_every_step() -> None:
    ctx = BuildContext(build=Build(event="tag", tag="v1.2.3"))
    result = parse("kind: pipeline\nsteps: [{name: a, image: x}]\n")
    plan = compile_pipeline(result.manifest, 0, ctx, {}, CompileOptions(run_id="r"))
    env = plan.steps[0].container.env
    assert env["CI"] == "true"
    assert env["DRONE"] == "true"
    assert env["DRONE_BUILD_EVENT"] == "tag"
    assert env["DRONE_TAG"] == "v1.2.3"
    assert env["DRONE_STEP_NAME"] == "a"
    assert env["DRONE_WORKSPACE"] == "/drone/src"
