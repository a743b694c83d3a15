"""Parsing .drone.yml into the model: Drone's shapes, and errors with file, line and path."""

from __future__ import annotations

from bastion.spec.diagnostics import Kind, Severity
from bastion.spec.model import SecretRef, settings_to_env
from bastion.spec.parse import parse

FULL = """\
kind: pipeline
type: docker
name: build
platform: {os: linux, arch: amd64}
clone: {depth: 50, retries: 2, skip_verify: false}
workspace: {base: /go, path: src/app}
environment: {GLOBAL: "1"}
services:
- name: db
  image: postgres:15
steps:
- name: test
  image: golang
  commands:
  - go test ./...
  - 42
  environment:
    TOKEN: {from_secret: token}
    N: 3
  when:
    branch: [main, "release/*"]
    event: {exclude: [pull_request]}
- name: publish
  image: plugins/docker
  settings:
    repo: org/app
    tags: [latest, "1.0"]
    password: {from_secret: docker_password}
    build_args: {A: 1}
  depends_on: [test]
  failure: ignore
  mem_limit: 512m
trigger:
  branch: main
volumes:
- name: cache
  temp: {}
image_pull_secrets: [dockerconfig]
concurrency: {limit: 2}
node: {pool: fast}
---
kind: pipeline
name: deploy
depends_on: [build]
steps:
- name: go
  image: alpine
---
kind: secret
name: token
get: {path: secret/data/ci, name: token}
---
kind: signature
hmac: abc123
"""


def test_full_drone_file_parses() -> None:
    result = parse(FULL)
    assert result.ok, [d.format() for d in result.diagnostics]
    assert result.diagnostics == []
    build, deploy = result.manifest.pipelines
    assert build.workspace.full_path == "/go/src/app"
    assert build.clone.depth == 50
    assert build.steps[0].commands == ("go test ./...", "42")
    assert build.steps[0].environment["TOKEN"] == SecretRef(from_secret="token")
    assert build.steps[0].environment["N"] == "3"
    assert build.steps[0].when.branch.include == ("main", "release/*")
    assert build.steps[0].when.event.exclude == ("pull_request",)
    assert build.steps[1].mem_limit == 512 * 1024 * 1024
    assert build.trigger.branch.include == ("main",)
    assert build.concurrency.limit == 2
    assert deploy.depends_on == ("build",)
    assert deploy.workspace.full_path == "/drone/src"
    assert result.manifest.secrets[0].get is not None
    assert result.manifest.signatures[0].hmac == "abc123"


def test_settings_become_plugin_variables() -> None:
    env = settings_to_env(
        {
            "repo": "org/app",
            "tags": ["latest", 1],
            "build_args": {"A": 1},
            "dry-run": True,
            "password": {"from_secret": "pw"},
        }
    )
    assert env["PLUGIN_REPO"] == "org/app"
    assert env["PLUGIN_TAGS"] == "latest,1"
    assert env["PLUGIN_BUILD_ARGS"] == '{"A":1}'
    assert env["PLUGIN_DRY_RUN"] == "true"
    assert env["PLUGIN_PASSWORD"] == SecretRef(from_secret="pw")


def test_errors_are_collected_with_positions_and_paths() -> None:
    text = """\
kind: pipeline
name: x
steps:
- name: a
  image: [not, a, string]
  privileged: maybe
- name: b
  commands: [echo hi]
- name: c
  image: alpine
  failure: sometimes
  comands: [typo]
"""
    result = parse(text, "repo/.drone.yml")
    assert not result.ok
    by_path = {d.path: d for d in result.diagnostics}
    assert by_path["steps[0].image"].line == 5
    assert "expected a string" in by_path["steps[0].image"].message
    assert by_path["steps[0].privileged"].line == 6
    assert "true or false" in by_path["steps[0].privileged"].message
    assert "sometimes" in by_path["steps[2].failure"].message
    assert all(d.file == "repo/.drone.yml" for d in result.diagnostics)
    # the schema errors stop that document; the unknown field is only reported once valid


def test_missing_image_and_unknown_fields() -> None:
    text = "kind: pipeline\nsteps:\n- name: b\n  comands: [echo]\n  commands: [echo]\n"
    result = parse(text)
    errors = [d for d in result.diagnostics if d.is_error]
    warnings = [d for d in result.diagnostics if d.severity is Severity.WARNING]
    assert "has no image" in errors[0].message
    assert warnings[0].kind is Kind.UNKNOWN
    assert warnings[0].path == "steps[0].comands"
    assert warnings[0].line == 4


def test_unquoted_colon_in_command_explains_the_yaml_pitfall() -> None:
    text = 'kind: pipeline\nsteps:\n- name: a\n  image: x\n  commands:\n  - echo "a": b\n'
    result = parse(text)
    (problem,) = [d for d in result.diagnostics if d.is_error]
    assert "quote the whole command" in problem.message
    assert problem.line == 5 or problem.line == 6


def test_graph_errors_duplicates_unknown_and_cycles() -> None:
    text = """\
kind: pipeline
steps:
- {name: a, image: x, depends_on: [c]}
- {name: b, image: x, depends_on: [a, nope]}
- {name: c, image: x, depends_on: [b]}
- {name: a, image: x}
---
kind: pipeline
name: p2
depends_on: [ghost]
steps: [{name: s, image: x}]
"""
    result = parse(text)
    messages = [d.message for d in result.diagnostics if d.kind is Kind.GRAPH]
    assert any("used twice" in m for m in messages)
    assert any("'nope'" in m for m in messages)
    assert any("cycle" in m for m in messages)
    assert any("'ghost'" in m for m in messages)


def test_hostile_and_odd_documents() -> None:
    assert "mapping" in parse("- just\n- a list\n").diagnostics[0].message
    assert "no kind" in parse("name: x\n").diagnostics[0].message
    assert "0.8" in parse("pipeline:\n  build:\n    image: x\n").diagnostics[0].message
    assert "unknown kind" in parse("kind: template\n").diagnostics[0].message
    assert "no YAML document" in parse("").diagnostics[0].message
    assert "at least one step" in parse("kind: pipeline\nsteps: []\n").diagnostics[0].message
    unknown_type = parse("kind: pipeline\ntype: nomad\nsteps: [{name: a}]\n")
    assert "unknown pipeline type 'nomad'" in unknown_type.diagnostics[0].message


def test_other_pipeline_types_parse_without_images() -> None:
    result = parse("kind: pipeline\ntype: exec\nsteps:\n- name: a\n  commands: [make]\n")
    assert result.ok


def test_volumes_and_undeclared_volume() -> None:
    text = """\
kind: pipeline
steps:
- name: a
  image: x
  volumes: [{name: cache, path: /cache}, {name: other, path: /o}]
volumes:
- name: cache
  temp:
- name: bad
"""
    result = parse(text)
    messages = [d.message for d in result.diagnostics]
    assert any("exactly one of temp" in m for m in messages)


def test_undeclared_volume_is_reported() -> None:
    text = "kind: pipeline\nsteps:\n- {name: a, image: x, volumes: [{name: o, path: /o}]}\n"
    (problem,) = parse(text).diagnostics
    assert "volume 'o' is not declared" in problem.message


def test_conditions_accept_string_list_and_include_exclude() -> None:
    text = """\
kind: pipeline
steps:
- name: a
  image: x
  when:
    branch: main
    event: [push, tag]
    ref: {include: ["refs/tags/*"], exclude: "refs/tags/rc*"}
    status: [success, failure]
"""
    step = parse(text).manifest.pipelines[0].steps[0]
    assert step.when.branch.include == ("main",)
    assert step.when.event.include == ("push", "tag")
    assert step.when.ref.exclude == ("refs/tags/rc*",)
    assert step.when.status.include == ("success", "failure")


def test_condition_with_unknown_key_is_an_error() -> None:
    text = "kind: pipeline\nsteps:\n- {name: a, image: x, when: {branch: {includes: [main]}}}\n"
    result = parse(text)
    assert not result.ok
