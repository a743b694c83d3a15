"""``services.secret_rules``: image matching and the reason each rule gives."""

from __future__ import annotations

import dataclasses

import pytest

from bastion.server.services.secret_rules import (
    build_denial,
    image_matches,
    normal_image,
    pull_applies,
    step_denial,
)
from bastion.store.types import Build, SecretFilters, Status

BUILD = Build(
    id=1,
    repo_id=1,
    number=7,
    parent=0,
    status=Status.PENDING,
    event="push",
    action="",
    link="",
    title="",
    message="",
    before="",
    after="abc",
    ref="refs/heads/main",
    source_repo="",
    source="main",
    target="main",
    author_login="",
    author_name="",
    author_email="",
    author_avatar="",
    sender="",
    deploy_to="",
    cron="",
    trigger="",
    fork=False,
    error="",
    params={},
    created=0,
    updated=0,
    started=0,
    finished=0,
)


def build(**changes: object) -> Build:
    return dataclasses.replace(BUILD, **changes)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("image", "patterns"),
    [
        ("plugins/docker", ("plugins/docker",)),
        ("plugins/docker:20", ("plugins/docker",)),
        ("docker.io/plugins/docker:latest", ("plugins/docker",)),
        ("index.docker.io/plugins/docker", ("plugins/docker:latest",)),
        ("alpine", ("library/alpine",)),
        ("docker.io/library/alpine:3.19", ("alpine:3.*",)),
        ("plugins/slack@sha256:abcd", ("plugins/*",)),
        ("registry.example.com:5000/team/deploy:1", ("registry.example.com:5000/team/*",)),
    ],
)
def test_images_that_match(image: str, patterns: tuple[str, ...]) -> None:
    assert image_matches(image, patterns)


@pytest.mark.parametrize(
    ("image", "patterns"),
    [
        ("plugins/docker-evil", ("plugins/docker",)),
        ("evil/plugins/docker", ("plugins/docker",)),
        ("plugins/docker:20", ("plugins/docker:19",)),
        ("ghcr.io/plugins/docker", ("plugins/docker",)),  # another registry is another image
        ("alpine", ("alpine:3",)),
    ],
)
def test_images_that_do_not(image: str, patterns: tuple[str, ...]) -> None:
    assert not image_matches(image, patterns)


def test_normal_image() -> None:
    assert normal_image("docker.io/library/alpine:latest") == "alpine:latest"
    assert normal_image("quay.io/x/y") == "quay.io/x/y"


def test_fork_is_refused_whatever_the_flags() -> None:
    everything = SecretFilters(pull_request=True)
    reason = build_denial("token", everything, build(event="pull_request", fork=True))
    assert "not available to builds of forks" in reason
    assert "'token'" in reason


def test_pull_request_needs_the_flag() -> None:
    reason = build_denial("docker_password", SecretFilters(), build(event="pull_request"))
    assert reason.startswith("secret 'docker_password' is not available to pull_request builds")
    assert "allow-pull-request" in reason
    assert not build_denial("x", SecretFilters(pull_request=True), build(event="pull_request"))


def test_events_and_branches() -> None:
    tags_only = SecretFilters(events=("tag", "promote"))
    assert "is not available to push builds" in build_denial("k", tags_only, BUILD)
    assert "tag, promote" in build_denial("k", tags_only, BUILD)
    assert not build_denial("k", tags_only, build(event="tag"))
    release = SecretFilters(branches=("release/*", "main"))
    assert not build_denial("k", release, BUILD)
    assert not build_denial("k", release, build(target="release/1.2"))
    reason = build_denial("k", release, build(target="feature/x"))
    assert "not available on branch 'feature/x'" in reason
    assert "release/*, main" in reason


def test_plugin_only_and_image_rules() -> None:
    docker = SecretFilters(images=("plugins/docker",))
    assert not step_denial("pw", docker, "publish", "plugins/docker:20", plugin=True)
    commands = step_denial("pw", docker, "build", "plugins/docker", plugin=False)
    assert "plugin images plugins/docker" in commands
    assert "sets commands or an entrypoint" in commands
    other = step_denial("pw", docker, "publish", "evil/docker", plugin=True)
    assert "not 'evil/docker'" in other
    computed = step_denial("pw", docker, "publish", "plugins/${IMAGE}", plugin=True)
    assert "only known at run time" in computed
    assert not step_denial("pw", SecretFilters(), "build", "alpine", plugin=False)


def test_pull_credentials_apply_to_matching_images_only() -> None:
    private = SecretFilters(images=("registry.example.com/*",))
    assert pull_applies(private, "registry.example.com/app")
    assert not pull_applies(private, "alpine")
    assert pull_applies(SecretFilters(), "alpine")
