"""Attack tests of secret delivery found in review: values that could not be masked, and
names or values that try to slip past the rules (``StageSecrets`` on the real store)."""

from __future__ import annotations

import secrets
from pathlib import Path

import pytest

from bastion.server.services.secret_providers import ExternalSecret, ExternalSecretRequest
from bastion.server.services.secrets import StageSecrets
from bastion.server.settings import ServerSettings
from bastion.store import Store
from bastion.store.types import Build, NewBuild, NewStage, Repo, Stage, Status

CONFIG = """\
kind: pipeline
type: docker
name: build
steps:
- name: ship
  image: busybox
  commands: [echo]
  environment:
    VAULT: {from_secret: vault_token}
---
kind: secret
name: vault_token
get:
  path: secret/data/ci
  name: token
"""


class Provider:
    def __init__(self, value: str) -> None:
        self.value = value

    def find(self, request: ExternalSecretRequest) -> ExternalSecret | None:
        return ExternalSecret(self.value, pull_request=False, fork=False)


def _service(store: Store, tmp_path: Path, provider: Provider) -> StageSecrets:
    settings = ServerSettings(
        data_dir=tmp_path, rpc_secret=secrets.token_hex(32), database_secret=secrets.token_hex(32)
    )
    return StageSecrets(settings, store, provider=provider)


def _stage(store: Store) -> tuple[Repo, Build, Stage]:
    repo = store.create_repo("acme", "web")
    build, [stage] = store.create_build(
        repo.id,
        NewBuild(event="push", after="c" * 40, target="main"),
        [NewStage(number=1, name="build", status=Status.PENDING)],
    )
    return repo, build, stage


@pytest.mark.parametrize("value", ["abc", " ab \n", "\n\n\t"])
def test_an_external_value_too_short_to_mask_is_not_handed_out(
    store: Store, tmp_path: Path, value: str
) -> None:
    # A stored secret that short is refused by the API; a provider's must not slip through
    # (the masker skips it: it would show in the logs as is).
    repo, build, stage = _stage(store)
    got = _service(store, tmp_path, Provider(value)).delivery(repo, build, stage, CONFIG)
    assert got.values == {}
    assert got.grants == {"ship": []}
    assert got.denials["ship"]["vault_token"] == (
        "secret 'vault_token': the secret provider's value is shorter than 4 characters "
        "(surrounding whitespace does not count) and could not be masked in build logs"
    )


def test_an_external_value_long_enough_is_handed_out_and_masked(
    store: Store, tmp_path: Path
) -> None:
    repo, build, stage = _stage(store)
    service = _service(store, tmp_path, Provider("abcd"))
    got = service.delivery(repo, build, stage, CONFIG)
    assert got.values == {"vault_token": "abcd"}
    assert service.masker(stage).mask("x abcd y") == "x ******** y"


def test_a_stored_value_too_short_to_mask_is_not_handed_out(store: Store, tmp_path: Path) -> None:
    # The API refuses it; a row written before that rule, or by the store directly, is not
    # trusted to be maskable either.
    repo, build, stage = _stage(store)
    store.set_repo_secret(repo.id, "vault_token", "ab")
    config = CONFIG.split("---", maxsplit=1)[0]  # the stored secret, no kind: secret
    service = _service(store, tmp_path, Provider("unused-value"))
    got = service.delivery(repo, build, stage, config)
    assert got.values == {}
    assert got.grants == {"ship": []}
    assert got.denials["ship"]["vault_token"].startswith(
        "secret 'vault_token' is shorter than 4 characters"
    )


def test_a_value_handed_out_stays_masked_after_many_other_stages(
    store: Store, tmp_path: Path
) -> None:
    # An external value is in no scope: only the memory of what the stage was handed masks
    # it on the server. Hundreds of later stages must not push that memory out.
    from dataclasses import replace

    repo, build, stage = _stage(store)
    provider = Provider("first-value-Tk3Lp8Wq")
    service = _service(store, tmp_path, provider)
    service.delivery(repo, build, stage, CONFIG)
    for offset in range(1, 400):
        provider.value = f"later-value-{offset:04d}"
        service.delivery(repo, build, replace(stage, id=stage.id + offset), CONFIG)
    assert service.masker(stage).mask("x first-value-Tk3Lp8Wq y") == "x ******** y"


@pytest.mark.parametrize("after", ["main", "c" * 12, ""])
def test_references_are_not_cached_for_what_is_not_a_full_commit_id(
    store: Store, tmp_path: Path, after: str
) -> None:
    # A name that can move (a branch, a short id) may point at another configuration next
    # time: stale references would grant a plugin-only secret to a step that now has commands.
    repo = store.create_repo("acme", "web")
    build, [stage] = store.create_build(
        repo.id,
        NewBuild(event="push", after=after, target="main"),
        [NewStage(number=1, name="build", status=Status.PENDING)],
    )
    store.set_repo_secret(repo.id, "pw", "docker-pw-Vc2Bx9Zn", images=("plugins/docker",))
    plugin = (
        "kind: pipeline\ntype: docker\nname: build\nsteps:\n- name: publish\n"
        "  image: plugins/docker\n  settings:\n    password: {from_secret: pw}\n"
    )
    service = _service(store, tmp_path, Provider("unused-value"))
    assert service.delivery(repo, build, stage, plugin).grants == {"publish": ["pw"]}
    moved = plugin + "  commands: [echo $PLUGIN_PASSWORD]\n"
    got = service.delivery(repo, build, stage, moved)
    assert got.grants == {"publish": []}
    assert "the step sets commands" in got.denials["publish"]["pw"]
