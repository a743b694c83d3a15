"""External secrets: the interface a secret provider implements, and what a lookup returns.

A pipeline configuration may hold ``kind: secret`` documents whose ``get: {path, name}``
names a secret kept outside Bastion (Vault, Kubernetes, a company's own store). When a step
refers to such a document through ``from_secret``, :class:`~bastion.server.services.secrets`
asks the configured :class:`SecretProvider` with an :class:`ExternalSecretRequest` and
applies the same rules as to stored secrets: a fork build never receives one (it is not
even asked for), a pull request build only when the provider's reply allows it.

``find`` returns ``None`` when the provider has no such secret, and raises
:class:`SecretProviderError` when the provider cannot answer (unreachable, timed out, an
error status, an unusable reply): the caller fails the steps that reference the secret with
a message naming it and saying the provider is unavailable, rather than running them
without it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from bastion.store.types import Build, Repo


class SecretProviderError(Exception):
    """The provider could not answer; the message names the secret and why, never a value."""


@dataclass(frozen=True)
class ExternalSecretRequest:
    """One lookup: ``name`` is the ``kind: secret`` document's name, ``path`` and ``key``
    its ``get.path`` and ``get.name``; the repository and build say who is asking."""

    name: str
    path: str
    key: str
    repo: Repo
    build: Build


@dataclass(frozen=True)
class ExternalSecret:
    """A provider's answer: the value and whether pull request / fork builds may have it
    (``fork`` is reported for completeness: Bastion never hands a secret to a fork build)."""

    value: str
    pull_request: bool
    fork: bool

    def __repr__(self) -> str:
        # The value must never reach a log line through a repr.
        return f"ExternalSecret(value=***, pull_request={self.pull_request}, fork={self.fork})"


class SecretProvider(Protocol):
    """Where external secrets come from."""

    def find(self, request: ExternalSecretRequest) -> ExternalSecret | None:
        """The secret, ``None`` when the provider has none; :class:`SecretProviderError`
        when it cannot answer."""
        ...
