"""Implementations of the engine's ``Backend`` protocol (``bastion.engine.backend``).

* ``docker.DockerBackend``: containers on a Docker Engine, through docker-py.
* ``fake.FakeBackend``: no containers; scripted by ``BASTION_FAKE_*`` step variables, for
  fast engine, scheduler and server tests (product code: the runner can use it too).

A contract suite (``tests/contract``) runs the same cases against both. ``create_backend``
maps the names a user types (``--backend docker``) to an instance; the Docker backend is
imported only when asked for, so the fake works where docker-py cannot reach an engine.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from bastion.engine.backend import Backend

if TYPE_CHECKING:
    from bastion.backends.fake import FakeBackend

BACKEND_NAMES: tuple[str, ...] = ("docker", "fake")

__all__ = ["BACKEND_NAMES", "FakeBackend", "create_backend"]


def __getattr__(name: str) -> object:
    # ``FakeBackend`` on first use: ``bastion exec`` imports ``bastion.backends.docker``,
    # and with it this package, without ever needing the fake.
    if name == "FakeBackend":
        from bastion.backends.fake import FakeBackend  # noqa: PLC0415

        return FakeBackend
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def create_backend(name: str) -> Backend:
    """A backend with its default settings, by name; ``ValueError`` for an unknown name."""
    if name == "docker":
        from bastion.backends.docker import DockerBackend  # noqa: PLC0415 - only when asked

        return DockerBackend()
    if name == "fake":
        from bastion.backends.fake import FakeBackend  # noqa: PLC0415 - only when asked

        return FakeBackend()
    raise ValueError(f"unknown backend {name!r}: choose one of {', '.join(BACKEND_NAMES)}")
