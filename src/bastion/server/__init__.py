"""The Bastion server: REST API, webhooks, the runner channel, the build services.

Public surface (what ``bastion.cli`` may use): :func:`create_app`, :func:`serve`,
:class:`ServerSettings`, :func:`load_settings`, :func:`dev_defaults`, :class:`SettingsError`.
Everything else is internal. Layout: ``settings`` → ``app`` (factory, lifespan, serve) →
``api/`` (REST), ``hooks`` (webhooks), ``rpc/`` (runners) → ``services/`` (the only code that
changes build state) → ``bastion.store``.
"""

from __future__ import annotations

from bastion.server.app import create_app, serve
from bastion.server.settings import (
    DevSecrets,
    ServerSettings,
    SettingsError,
    dev_defaults,
    load_settings,
)

__all__ = [
    "DevSecrets",
    "ServerSettings",
    "SettingsError",
    "create_app",
    "dev_defaults",
    "load_settings",
    "serve",
]
