"""``services.secrets``: which secret names a pipeline references, which values a stage is
entitled to by event and fork, and what its masker masks."""

from __future__ import annotations

import secrets
from pathlib import Path

import pytest

from bastion.server.services.secrets import StageSecrets, referenced_secrets, stage_secret_names
from bastion.server.settings import ServerSettings
from bastion.spec.parse import parse
from bastion.store import Store
from bastion.store.types import Build, NewBuild, NewStage, Repo, Stage, Status

CONFIG = """\
kind: pipeline
type: docker
name: build
environment:
  GLOBAL: {from_secret: global_one}
image_pull_secrets: [dockerconfig]
services:
- name: db
  image: postgres
  environment:
    POSTGRES_PASSWORD: {from_secret: db_password}
steps:
- name: test
  image: busybox
  commands: [echo hello]
  environment:
    TOKEN: {from_secret: token}
    PLAIN: from_secret
- name: publish
  image: plugins/npm
  settings:
    token: {from_secret: npm}
    nested: {deeper: {from_secret: not_a_reference}}
    username: token
---
kind: pipeline
type: docker
name: deploy
steps:
- name: ship
  image: busybox
  commands: [echo ship]
  environment:
    KEY: {from_secret: deploy_key}
"""

TOKEN = "token-value-Qz7Wv3Kp"
NPM = "npm-value-Vc2Bx9Zn"
DEPLOY = "deploy-value-Fj4Hs6Dg"


def test_referenced_secrets_of_a_pipeline() -> None:
    result = parse(CONFIG)
    assert result.ok, result.diagnostics
    build = result.manifest.pipeline("build")
    assert build is not None
    assert referenced_secrets(build) == {
        "global_one",
        "dockerconfig",
        "db_password",
        "token",
        "npm",
    }
    assert stage_secret_names(CONFIG, "deploy", ".drone.yml") == {"deploy_key"}


def test_no_names_for_an_unknown_pipeline_or_a_broken_config() -> None:
    assert stage_secret_names(CONFIG, "nope", ".drone.yml") == frozenset()
    assert stage_secret_names("kind: pipeline\nsteps: [", "build", ".drone.yml") == frozenset()
    assert stage_secret_names(b"", "build", ".drone.yml") == frozenset()


@pytest.fixture
def service(store: Store, tmp_path: Path) -> StageSecrets:
    settings = ServerSettings(
        data_dir=tmp_path,
        rpc_secret=secrets.token_hex(32),
        database_secret=secrets.token_hex(32),
    )
    return StageSecrets(settings, store)


@pytest.fixture
def repo(store: Store) -> Repo:
    repo = store.create_repo("acme", "web")
    store.set_repo_secret(repo.id, "token", TOKEN)
    store.set_repo_secret(repo.id, "npm", NPM, pull_request=True)
    store.set_repo_secret(repo.id, "deploy_key", DEPLOY, pull_request=True)
    return repo


def make_build(store: Store, repo: Repo, event: str, *, fork: bool = False) -> tuple[Build, Stage]:
    build, [stage, _deploy] = store.create_build(
        repo.id,
        NewBuild(event=event, fork=fork),
        [
            NewStage(number=1, name="build", status=Status.PENDING),
            NewStage(number=2, name="deploy", status=Status.PENDING),
        ],
    )
    return build, stage


@pytest.mark.parametrize("event", ["push", "tag", "custom", "promote", "cron"])
def test_other_events_get_every_referenced_secret(
    service: StageSecrets, store: Store, repo: Repo, event: str
) -> None:
    build, stage = make_build(store, repo, event)
    assert service.secrets(repo, build, stage, CONFIG) == {"token": TOKEN, "npm": NPM}


def test_pull_requests_get_only_flagged_secrets(
    service: StageSecrets, store: Store, repo: Repo
) -> None:
    build, stage = make_build(store, repo, "pull_request")
    assert service.secrets(repo, build, stage, CONFIG) == {"npm": NPM}


@pytest.mark.parametrize("event", ["pull_request", "push"])
def test_forks_get_nothing(service: StageSecrets, store: Store, repo: Repo, event: str) -> None:
    build, stage = make_build(store, repo, event, fork=True)
    assert service.secrets(repo, build, stage, CONFIG) == {}


def test_the_masker_masks_handed_and_repository_secrets(
    service: StageSecrets, store: Store, repo: Repo
) -> None:
    build, stage = make_build(store, repo, "pull_request")
    assert service.secrets(repo, build, stage, CONFIG) == {"npm": NPM}
    masker = service.masker(stage)
    assert masker.mask(f"{TOKEN} {NPM} {DEPLOY}") == "******** ******** ********"
    assert service.masker(stage) is masker  # cached

    # Replaced and deleted after the stage received it: still masked, as is the new value.
    store.set_repo_secret(repo.id, "npm", "npm-rotated-Xy8Kp2", pull_request=True)
    store.delete_repo_secret(repo.id, "token")
    service.repo_secrets_changed(repo.id)
    rebuilt = service.masker(stage)
    assert rebuilt is not masker
    assert rebuilt.mask(f"{NPM} npm-rotated-Xy8Kp2") == "******** ********"
    # The deleted secret was never handed to this stage: it is no longer masked.
    assert rebuilt.mask(TOKEN) == TOKEN


def test_masker_after_a_restart_uses_the_current_secrets(
    service: StageSecrets, store: Store, repo: Repo
) -> None:
    _build, stage = make_build(store, repo, "push")
    assert service.masker(stage).mask(TOKEN) == "********"


def test_values_too_short_to_mask_are_skipped_not_fatal(
    service: StageSecrets, store: Store, repo: Repo
) -> None:
    store.set_repo_secret(repo.id, "pin", "123")  # past the API, which refuses it
    build, stage = make_build(store, repo, "push")
    service.secrets(repo, build, stage, CONFIG)
    assert service.masker(stage).mask(f"{TOKEN} 123") == "******** 123"
