"""The trust policy refuses, with reasons, what an untrusted pipeline may not have."""

from __future__ import annotations

import pytest

from bastion.policy.trust import review_pipeline
from bastion.spec.model import Pipeline
from bastion.spec.parse import parse

GIB = 1 << 30


def pipeline(yaml_steps: str, volumes: str = "") -> Pipeline:
    text = f"kind: pipeline\nsteps:\n{yaml_steps}"
    if volumes:
        text += f"volumes:\n{volumes}"
    result = parse(text)
    assert result.ok, [d.format() for d in result.diagnostics]
    return result.manifest.pipelines[0]


UNTRUSTED_ONLY = [
    ("- {name: a, image: x, privileged: true}\n", "", "privileged"),
    ("- {name: a, image: x, devices: [{name: d, path: /dev/kvm}]}\n", "", "devices"),
    ("- {name: a, image: x, network_mode: host}\n", "", "network_mode"),
    ("- {name: a, image: x, dns: [1.1.1.1]}\n", "", "dns"),
    ("- {name: a, image: x, dns_search: [corp]}\n", "", "dns_search"),
    ("- {name: a, image: x, extra_hosts: ['db:10.0.0.1']}\n", "", "extra_hosts"),
    ("- {name: a, image: x, shm_size: 1g}\n", "", "shm_size"),
    (
        "- {name: a, image: x, volumes: [{name: h, path: /h}]}\n",
        "- {name: h, host: {path: /srv/cache}}\n",
        "volumes",
    ),
    (
        "- {name: a, image: x, volumes: [{name: m, path: /m}]}\n",
        "- {name: m, temp: {medium: memory}}\n",
        "volumes",
    ),
]


@pytest.mark.parametrize(("steps", "volumes", "field"), UNTRUSTED_ONLY)
def test_untrusted_refused_trusted_allowed(steps: str, volumes: str, field: str) -> None:
    p = pipeline(steps, volumes)
    refusals = review_pipeline(p, trusted=False, max_mem_limit=8 * GIB)
    assert refusals, field
    assert all(r.trusted_allows for r in refusals)
    assert any(r.field == field for r in refusals)
    first = refusals[0]
    assert "untrusted" in first.message
    assert "trusted" in first.message  # says what would allow it
    assert review_pipeline(p, trusted=True, max_mem_limit=8 * GIB) == []


def test_refusal_names_step_and_path() -> None:
    p = pipeline("- {name: ok, image: x}\n- {name: evil, image: x, privileged: true}\n")
    (refusal,) = review_pipeline(p, trusted=False, max_mem_limit=8 * GIB)
    assert refusal.step == "evil"
    assert refusal.path == ("steps", 1, "privileged")
    assert "'evil'" in refusal.message


def test_privileged_service_is_refused_too() -> None:
    text = (
        "kind: pipeline\nservices:\n- {name: dind, image: docker:dind, privileged: true}\n"
        "steps:\n- {name: a, image: x}\n"
    )
    p = parse(text).manifest.pipelines[0]
    (refusal,) = review_pipeline(p, trusted=False, max_mem_limit=8 * GIB)
    assert refusal.path == ("services", 0, "privileged")


@pytest.mark.parametrize(
    "host_path",
    [
        "/var/run/docker.sock",
        "/run/docker.sock",
        "/var/run",
        "/var/run/",
        "/run",
        "/",
        "/var/lib/docker",
        "/var/lib/docker/volumes",
        "/var/../var/run/docker.sock",
        "//var/run/docker.sock",
        "/run/containerd/containerd.sock",
    ],
)
def test_runtime_socket_is_refused_even_when_trusted(host_path: str) -> None:
    p = pipeline(
        "- {name: a, image: x, volumes: [{name: sock, path: /var/run/docker.sock}]}\n",
        f"- {{name: sock, host: {{path: '{host_path}'}}}}\n",
    )
    refusals = review_pipeline(p, trusted=True, max_mem_limit=8 * GIB)
    assert len(refusals) == 1
    assert not refusals[0].trusted_allows
    assert "container runtime" in refusals[0].message


@pytest.mark.parametrize("path", ["/drone/src", "/drone", "/", "/drone/src/"])
def test_mount_over_the_workspace_is_refused_for_everyone(path: str) -> None:
    p = pipeline(
        f"- {{name: a, image: x, volumes: [{{name: c, path: '{path}'}}]}}\n",
        "- {name: c, temp: {}}\n",
    )
    refusals = review_pipeline(p, trusted=True, max_mem_limit=8 * GIB)
    assert any("over the workspace" in r.message for r in refusals)


def test_mount_inside_the_workspace_is_fine() -> None:
    p = pipeline(
        "- {name: a, image: x, volumes: [{name: c, path: /drone/src/node_modules}]}\n",
        "- {name: c, temp: {}}\n",
    )
    assert review_pipeline(p, trusted=False, max_mem_limit=8 * GIB) == []


def test_runner_paths_are_reserved() -> None:
    p = pipeline(
        "- {name: a, image: x, volumes: [{name: c, path: /bastion/bin}]}\n",
        "- {name: c, temp: {}}\n",
    )
    (refusal,) = review_pipeline(
        p, trusted=True, max_mem_limit=8 * GIB, reserved_paths=["/bastion"]
    )
    assert "reserved" in refusal.message


def test_memory_above_the_runner_maximum_is_refused() -> None:
    p = pipeline("- {name: a, image: x, mem_limit: 16g}\n")
    (refusal,) = review_pipeline(p, trusted=True, max_mem_limit=8 * GIB)
    assert refusal.field == "mem_limit"
    assert "BASTION_MAX_MEMORY_LIMIT" in refusal.message
    assert (
        review_pipeline(
            pipeline("- {name: a, image: x, mem_limit: 1g}\n"), trusted=False, max_mem_limit=8 * GIB
        )
        == []
    )
