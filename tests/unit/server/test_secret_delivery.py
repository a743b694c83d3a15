"""``StageSecrets.delivery``: scopes (repository > organisation > global), filters, per-step
grants and denials with the rule, external secrets through a provider, the references cache,
last use and audit events — on the real store."""

from __future__ import annotations

import secrets
from pathlib import Path

import pytest

from bastion.server.services.audit import AuditLog
from bastion.server.services.secret_providers import (
    ExternalSecret,
    ExternalSecretRequest,
    SecretProviderError,
)
from bastion.server.services.secrets import StageSecrets
from bastion.server.settings import ServerSettings
from bastion.store import Store
from bastion.store.types import (
    AuditQuery,
    Build,
    NewBuild,
    NewStage,
    Repo,
    SecretFilters,
    Stage,
    Status,
)

CONFIG = """\
kind: pipeline
type: docker
name: build
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
  image: plugins/docker:20
  settings:
    password: {from_secret: docker_password}
- name: sneaky
  image: plugins/docker
  commands: [echo $PASSWORD]
  environment:
    PASSWORD: {from_secret: docker_password}
- name: override
  image: busybox
  commands: [echo]
  environment:
    SHARED: plain
---
kind: secret
name: vault_token
get:
  path: secret/data/ci
  name: token
---
kind: pipeline
type: docker
name: deploy
steps:
- name: ship
  image: busybox
  commands: [echo ship]
  environment:
    VAULT: {from_secret: vault_token}
"""

TOKEN = "repo-token-Qz7Wv3Kp"
ORG_TOKEN = "org-token-Lm4Nb8Xc"
GLOBAL_TOKEN = "global-token-Rt5Yu1Io"
DOCKER = "docker-pw-Vc2Bx9Zn"
SHARED = "shared-value-Fj4Hs6Dg"
VAULT = "vault-value-Pp0Oo9Ii"


class FakeProvider:
    def __init__(self, answer: ExternalSecret | Exception | None) -> None:
        self.answer = answer
        self.asked: list[ExternalSecretRequest] = []

    def find(self, request: ExternalSecretRequest) -> ExternalSecret | None:
        self.asked.append(request)
        if isinstance(self.answer, Exception):
            raise self.answer
        return self.answer


def settings(tmp_path: Path) -> ServerSettings:
    return ServerSettings(
        data_dir=tmp_path, rpc_secret=secrets.token_hex(32), database_secret=secrets.token_hex(32)
    )


@pytest.fixture
def service(store: Store, tmp_path: Path) -> StageSecrets:
    return StageSecrets(settings(tmp_path), store)


@pytest.fixture
def repo(store: Store) -> Repo:
    repo = store.create_repo("acme", "web")
    store.set_repo_secret(repo.id, "token", TOKEN)
    store.set_shared_secret("org", "acme", "token", ORG_TOKEN, SecretFilters())
    store.set_shared_secret("global", "", "token", GLOBAL_TOKEN, SecretFilters())
    store.set_shared_secret(
        "org", "acme", "docker_password", DOCKER, SecretFilters(images=("plugins/docker",))
    )
    store.set_shared_secret("global", "", "shared", SHARED, SecretFilters(pull_request=True))
    return repo


def make(
    store: Store, repo: Repo, event: str = "push", *, fork: bool = False, target: str = "main"
) -> tuple[Build, Stage, Stage]:
    build, [stage, deploy] = store.create_build(
        repo.id,
        NewBuild(event=event, fork=fork, after="a" * 40, target=target),
        [
            NewStage(number=1, name="build", status=Status.PENDING),
            NewStage(number=2, name="deploy", status=Status.PENDING),
        ],
    )
    return build, stage, deploy


def test_each_step_gets_only_what_it_references_and_may_have(
    service: StageSecrets, store: Store, repo: Repo
) -> None:
    build, stage, _ = make(store, repo)
    got = service.delivery(repo, build, stage, CONFIG, runner="r1")
    # The repository's token wins over the organisation's and the global one.
    assert got.values == {"token": TOKEN, "docker_password": DOCKER, "shared": SHARED}
    assert got.grants == {
        "test": ["shared", "token"],
        "publish": ["docker_password", "shared"],
        "sneaky": ["shared"],
        "override": [],  # sets SHARED itself: the pipeline's secret is not its
    }
    # The plugin-only secret is refused to the step with commands, with the rule; the
    # missing registry credentials to every step.
    assert got.denials["sneaky"]["docker_password"] == (
        "secret 'docker_password' is not available to step 'sneaky': it is limited to the "
        "plugin images plugins/docker, and the step sets commands"
    )
    for step in ("test", "publish", "sneaky", "override"):
        assert "secret 'registry' does not exist" in got.denials[step]["registry"]
    assert DOCKER not in repr(got)


def test_pull_request_denied_with_the_rule_and_never_the_value(
    service: StageSecrets, store: Store, repo: Repo
) -> None:
    build, stage, _ = make(store, repo, "pull_request")
    got = service.delivery(repo, build, stage, CONFIG)
    assert got.values == {"shared": SHARED}  # the only one allowing pull requests
    reason = got.denials["test"]["token"]
    assert reason.startswith("secret 'token' is not available to pull_request builds")
    assert "docker_password" in got.denials["publish"]
    for reasons in got.denials.values():
        for text in reasons.values():
            for value in (TOKEN, DOCKER, ORG_TOKEN, GLOBAL_TOKEN):
                assert value not in text


def test_a_fork_gets_nothing_even_with_allow_pull_request(
    tmp_path: Path, store: Store, repo: Repo
) -> None:
    provider = FakeProvider(ExternalSecret(VAULT, pull_request=True, fork=True))
    service = StageSecrets(settings(tmp_path), store, provider=provider)
    build, stage, deploy = make(store, repo, "pull_request", fork=True)
    got = service.delivery(repo, build, stage, CONFIG)
    assert got.values == {}
    assert "builds of forks" in got.denials["test"]["shared"]
    external = service.delivery(repo, build, deploy, CONFIG)
    assert external.values == {}
    assert "builds of forks" in external.denials["ship"]["vault_token"]
    assert provider.asked == []  # a fork's build is never even asked about


def test_branch_and_event_filters(service: StageSecrets, store: Store, repo: Repo) -> None:
    store.set_repo_secret(repo.id, "token", TOKEN, branches=["release/*"], events=["push"])
    build, stage, _ = make(store, repo, target="feature/x")
    got = service.delivery(repo, build, stage, CONFIG)
    assert "token" not in got.values
    assert "not available on branch 'feature/x'" in got.denials["test"]["token"]
    build, stage, _ = make(store, repo, target="release/2")
    assert service.delivery(repo, build, stage, CONFIG).values["token"] == TOKEN
    build, stage, _ = make(store, repo, "tag", target="release/2")
    assert "to tag builds" in service.delivery(repo, build, stage, CONFIG).denials["test"]["token"]


def test_org_secrets_of_another_namespace_are_not_visible(
    service: StageSecrets, store: Store, repo: Repo
) -> None:
    other = store.create_repo("evil", "web")
    build, stage, _ = make(store, other)
    got = service.delivery(other, build, stage, CONFIG)
    # acme's organisation secrets are not evil's; the global token is.
    assert got.values == {"token": GLOBAL_TOKEN, "shared": SHARED}
    assert "does not exist" in got.denials["publish"]["docker_password"]
    assert service.masker(stage).mask(ORG_TOKEN) == ORG_TOKEN  # not even masked: not its


def test_external_secrets_go_through_the_provider(tmp_path: Path, store: Store, repo: Repo) -> None:
    provider = FakeProvider(ExternalSecret(VAULT, pull_request=False, fork=False))
    service = StageSecrets(settings(tmp_path), store, provider=provider)
    build, _, deploy = make(store, repo)
    got = service.delivery(repo, build, deploy, CONFIG)
    assert got.values == {"vault_token": VAULT}
    assert got.grants == {"ship": ["vault_token"]}
    [asked] = provider.asked
    assert (asked.name, asked.path, asked.key, asked.repo.slug) == (
        "vault_token",
        "secret/data/ci",
        "token",
        "acme/web",
    )
    assert service.masker(deploy).mask(VAULT) == "********"

    pr, _, pr_deploy = make(store, repo, "pull_request")
    assert (
        "pull_request builds"
        in service.delivery(repo, pr, pr_deploy, CONFIG).denials["ship"]["vault_token"]
    )
    provider.answer = SecretProviderError("vault_token", "connection refused")
    down = service.delivery(repo, build, deploy, CONFIG)
    assert (
        "secret provider is unavailable: connection refused" in down.denials["ship"]["vault_token"]
    )
    provider.answer = None
    assert (
        "has no secret at 'secret/data/ci'"
        in service.delivery(repo, build, deploy, CONFIG).denials["ship"]["vault_token"]
    )


def test_without_a_provider_an_external_reference_is_denied(
    service: StageSecrets, store: Store, repo: Repo
) -> None:
    build, _, deploy = make(store, repo)
    got = service.delivery(repo, build, deploy, CONFIG)
    assert "no secret provider is configured" in got.denials["ship"]["vault_token"]


def test_references_are_parsed_once_per_commit_and_pipeline(
    service: StageSecrets, store: Store, repo: Repo
) -> None:
    build, stage, deploy = make(store, repo)
    for _ in range(3):
        service.delivery(repo, build, stage, CONFIG)
    assert service.parses == 1
    service.delivery(repo, build, deploy, CONFIG)
    assert service.parses == 2
    again, stage2, _ = make(store, repo)  # same sha, another build
    service.delivery(repo, again, stage2, CONFIG)
    assert service.parses == 2


def test_no_parsing_when_no_scope_holds_a_secret(
    service: StageSecrets, store: Store, tmp_path: Path
) -> None:
    lonely = store.create_repo("solo", "app")
    build, stage, _ = make(store, lonely)
    got = service.delivery(lonely, build, stage, CONFIG)
    assert (got.values, got.grants, got.denials) == ({}, {}, {})
    assert service.parses == 0
    store.set_shared_secret("global", "", "token", GLOBAL_TOKEN, SecretFilters())
    assert service.delivery(lonely, build, stage, CONFIG).values == {"token": GLOBAL_TOKEN}
    assert service.parses == 1


def test_use_is_recorded_and_audited_without_values(
    tmp_path: Path, store: Store, repo: Repo
) -> None:
    service = StageSecrets(settings(tmp_path), store, audit=AuditLog(store))
    build, stage, _ = make(store, repo)
    service.delivery(repo, build, stage, CONFIG, runner="runner-1")
    [token] = [s for s in store.describe_repo_secrets(repo.id) if s.name == "token"]
    assert token.last_used > 0
    assert token.last_build == f"acme/web#{build.number}"
    docker = store.describe_shared_secret("org", "acme", "docker_password")
    assert docker is not None
    assert docker.last_build == f"acme/web#{build.number}"
    events = store.list_audit_events(AuditQuery(kind="secret.delivered"))
    by_secret = {e.secret: e for e in events}
    assert set(by_secret) == {"token", "docker_password", "shared"}
    assert by_secret["docker_password"].detail["steps"] == ["publish"]
    assert by_secret["docker_password"].runner == "runner-1"
    assert by_secret["docker_password"].detail["scope"] == "org"
    assert by_secret["token"].detail["scope"] == "repo"
    for event in events:
        for value in (TOKEN, DOCKER, SHARED):
            assert value not in repr(event)


def test_an_undecryptable_row_is_a_denial_not_an_error(
    service: StageSecrets, store: Store, repo: Repo
) -> None:
    from sqlalchemy import text

    with store._engine.begin() as connection:  # an attacker edits the database
        connection.execute(
            text("UPDATE shared_secrets SET images = '[]' WHERE name = 'docker_password'")
        )
    build, stage, _ = make(store, repo)
    got = service.delivery(repo, build, stage, CONFIG)
    assert "docker_password" not in got.values
    assert "cannot be decrypted on the server" in got.denials["publish"]["docker_password"]
    # The edit tried to widen it to steps with commands: they do not get it either.
    assert "docker_password" not in got.grants["sneaky"]
