"""Attack tests of the plugin-only rule: a secret limited to images must reach only the
image's own program, so a step that makes the container run other code — a ``command``, a
loader or interpreter variable, a volume or workspace over the image's programs — is
refused it, on the real store through ``StageSecrets.delivery``."""

from __future__ import annotations

import secrets
from pathlib import Path

import pytest

from bastion.engine.secret_refs import pipeline_refs
from bastion.server.services.secrets import StageSecrets
from bastion.server.settings import ServerSettings
from bastion.spec.parse import parse
from bastion.store import Store
from bastion.store.types import NewBuild, NewStage, Repo, SecretFilters, Status

DOCKER = "docker-pw-Vc2Bx9Zn"

HEADER = """\
kind: pipeline
type: docker
name: build
"""


def _service(store: Store, tmp_path: Path) -> StageSecrets:
    settings = ServerSettings(
        data_dir=tmp_path, rpc_secret=secrets.token_hex(32), database_secret=secrets.token_hex(32)
    )
    return StageSecrets(settings, store)


@pytest.fixture
def repo(store: Store) -> Repo:
    repo = store.create_repo("acme", "web")
    store.set_repo_secret(repo.id, "docker_password", DOCKER, images=("plugins/docker",))
    return repo


def _deliver(store: Store, repo: Repo, tmp_path: Path, config: str) -> tuple[dict[str, str], str]:
    """The values the stage gets and the denial of step ``publish`` ("" when granted)."""
    build, [stage] = store.create_build(
        repo.id,
        NewBuild(event="push", after="b" * 40, target="main"),
        [NewStage(number=1, name="build", status=Status.PENDING)],
    )
    got = _service(store, tmp_path).delivery(repo, build, stage, config)
    denial = got.denials.get("publish", {}).get("docker_password", "")
    assert (denial == "") == ("docker_password" in got.grants["publish"])
    return got.values, denial


def _publish(extra: str, *, pipeline: str = "") -> str:
    return (
        HEADER
        + pipeline
        + """\
steps:
- name: publish
  image: plugins/docker
  settings:
    password: {from_secret: docker_password}
"""
        + extra
    )


def test_a_plain_plugin_step_still_gets_it(store: Store, repo: Repo, tmp_path: Path) -> None:
    config = _publish(
        "  environment:\n    DOCKER_BUILDKIT: '1'\n  volumes:\n  - {name: cache, path: /cache}\n",
        pipeline="volumes:\n- name: cache\n  temp: {}\n",
    )
    values, denial = _deliver(store, repo, tmp_path, config)
    assert denial == ""
    assert values == {"docker_password": DOCKER}


def test_a_command_is_not_the_plugins_own_program(store: Store, repo: Repo, tmp_path: Path) -> None:
    # With an image whose entrypoint runs its arguments, `command` is a shell script.
    config = _publish("  command: [sh, -c, 'echo $PLUGIN_PASSWORD | base64']\n")
    values, denial = _deliver(store, repo, tmp_path, config)
    assert values == {}
    assert denial == (
        "secret 'docker_password' is not available to step 'publish': it is limited to the "
        "plugin images plugins/docker, and the step sets command"
    )


@pytest.mark.parametrize(
    "variable",
    [
        "LD_PRELOAD",
        "LD_LIBRARY_PATH",
        "GCONV_PATH",
        "BASH_ENV",
        "ENV",
        "PATH",
        "BASH_FUNC_docker%%",
        "NODE_OPTIONS",
        "PYTHONPATH",
        "JAVA_TOOL_OPTIONS",
        "GIT_SSH_COMMAND",
        "HOME",
    ],
)
def test_a_variable_that_loads_other_code_is_refused(
    store: Store, repo: Repo, tmp_path: Path, variable: str
) -> None:
    config = _publish(f"  environment:\n    '{variable}': /drone/src/evil.so\n")
    values, denial = _deliver(store, repo, tmp_path, config)
    assert values == {}
    assert f"the step sets the variable {variable}" in denial


def test_an_inherited_pipeline_variable_counts_too(
    store: Store, repo: Repo, tmp_path: Path
) -> None:
    config = _publish("", pipeline="environment:\n  LD_PRELOAD: /drone/src/evil.so\n")
    values, denial = _deliver(store, repo, tmp_path, config)
    assert values == {}
    assert "the step sets the variable LD_PRELOAD" in denial
    # The step's own value wins over the pipeline's: then the step sets it itself.
    overridden = _publish(
        "  environment:\n    LD_PRELOAD: ''\n", pipeline="environment:\n  LD_PRELOAD: /x.so\n"
    )
    assert "LD_PRELOAD" in _deliver(store, repo, tmp_path, overridden)[1]


@pytest.mark.parametrize("path", ["/bin", "/usr/local/bin", "/", "/etc", "/lib/", "/usr/../bin"])
def test_a_volume_over_the_images_programs_is_refused(
    store: Store, repo: Repo, tmp_path: Path, path: str
) -> None:
    # An earlier step with commands writes a fake plugin binary into the volume.
    config = _publish(
        f"  volumes:\n  - {{name: tools, path: '{path}'}}\n",
        pipeline="volumes:\n- name: tools\n  temp: {}\n",
    )
    values, denial = _deliver(store, repo, tmp_path, config)
    assert values == {}
    assert "the step mounts a volume at " in denial
    assert "over the image's own programs" in denial


def test_a_workspace_over_the_images_programs_is_refused(
    store: Store, repo: Repo, tmp_path: Path
) -> None:
    # The cloned repository (the attacker's files) would replace /bin/drone-docker.
    config = _publish("", pipeline="workspace:\n  path: /bin\n")
    values, denial = _deliver(store, repo, tmp_path, config)
    assert values == {}
    assert "the workspace /bin is over the image's own programs" in denial


def test_unfiltered_secrets_are_not_affected(store: Store, repo: Repo, tmp_path: Path) -> None:
    store.set_repo_secret(repo.id, "docker_password", DOCKER)  # no images: no plugin rule
    config = _publish("  command: [x]\n  environment:\n    LD_PRELOAD: /x.so\n")
    values, denial = _deliver(store, repo, tmp_path, config)
    assert denial == ""
    assert values == {"docker_password": DOCKER}


def test_refs_say_why_a_step_is_not_a_plugin() -> None:
    result = parse(
        HEADER + "steps:\n- name: a\n  image: x\n  commands: [echo]\n- name: b\n  image: x\n",
        ".drone.yml",
    )
    pipeline = result.manifest.pipelines[0]
    a, b = pipeline_refs(pipeline)
    assert (a.plugin, a.not_plugin) == (False, "the step sets commands")
    assert (b.plugin, b.not_plugin) == (True, "")
    assert SecretFilters().images == ()


@pytest.mark.parametrize(
    ("params", "refused"),
    [({"LD_PRELOAD": "/drone/src/evil.so"}, True), ({"VERSION": "1.2.3"}, False)],
)
def test_a_deployment_parameter_that_loads_other_code_is_refused(
    store: Store, repo: Repo, tmp_path: Path, params: dict[str, str], refused: bool
) -> None:
    # Parameters are variables of every step (a writer sets them at promote), not in the
    # configuration the references are read from.
    build, [stage] = store.create_build(
        repo.id,
        NewBuild(event="promote", after="d" * 40, target="main", params=params),
        [NewStage(number=1, name="build", status=Status.PENDING)],
    )
    got = _service(store, tmp_path).delivery(repo, build, stage, _publish(""))
    if refused:
        assert got.values == {}
        assert got.denials["publish"]["docker_password"].endswith(
            "and the build's parameter LD_PRELOAD can make it run other code"
        )
    else:
        assert got.values == {"docker_password": DOCKER}
        assert "publish" not in got.denials
