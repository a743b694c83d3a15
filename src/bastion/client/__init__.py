"""Typed httpx clients of a Bastion server.

* ``BastionClient``: the REST API (Drone's paths) for people and scripts: the CLI uses it.
* ``RunnerClient``: the server↔runner channel (``bastion.rpc.messages``), with retries.
* ``ClientSettings``: server URL, token and TLS options from arguments or ``BASTION_*``.

Errors: see ``bastion.client.errors``. This package imports only ``bastion.rpc`` of Bastion.
"""

from __future__ import annotations

from bastion.client._http import check_server_url, is_loopback
from bastion.client.errors import (
    ClientError,
    LeaseLostError,
    RetriesExhaustedError,
    ServerURLError,
    UnauthorizedError,
    UnreachableError,
)
from bastion.client.rest import BastionClient
from bastion.client.runner import Backoff, RunnerClient
from bastion.client.settings import ClientSettings, SettingsError
from bastion.client.sse import SSEEvent, iter_events

__all__ = [
    "Backoff",
    "BastionClient",
    "ClientError",
    "ClientSettings",
    "LeaseLostError",
    "RetriesExhaustedError",
    "RunnerClient",
    "SSEEvent",
    "ServerURLError",
    "SettingsError",
    "UnauthorizedError",
    "UnreachableError",
    "check_server_url",
    "is_loopback",
    "iter_events",
]
