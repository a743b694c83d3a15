"""Where the client finds its server and token: arguments first, then the environment.

=======================  =====================  =================================================
variable                 Drone alias            meaning
=======================  =====================  =================================================
``BASTION_SERVER``       ``DRONE_SERVER``       the server's URL, e.g. ``https://ci.example.com``
``BASTION_TOKEN``        ``DRONE_TOKEN``        the API token
``BASTION_TOKEN_FILE``                          a file holding the token (kept out of ``ps``)
``BASTION_INSECURE``                            ``true``: allow plain HTTP to a non-loopback host
``BASTION_CA_CERT``                             CA certificate file for a server with a private CA
=======================  =====================  =================================================

The token is deliberately not a command-line option of the client commands: arguments are
visible to every user of the machine (``ps``), environment variables and files are not.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from bastion.client._http import check_server_url
from bastion.client.errors import ServerURLError

_TRUE = frozenset({"1", "true", "yes", "on"})
_FALSE = frozenset({"", "0", "false", "no", "off"})


class SettingsError(ServerURLError):
    """A client setting is missing or has a value the client cannot use."""


def env_flag(env: Mapping[str, str], name: str) -> bool:
    raw = env.get(name, "").strip().lower()
    if raw in _TRUE:
        return True
    if raw in _FALSE:
        return False
    raise SettingsError(f"{name}={raw!r}: use true or false")


def read_token_file(path: str | Path) -> str:
    """The token in a file (surrounding whitespace removed), or ``SettingsError``."""
    try:
        token = Path(path).read_text(encoding="utf-8").strip()
    except (OSError, UnicodeDecodeError) as exc:
        raise SettingsError(f"token file {path}: cannot read it ({exc})") from None
    if not token:
        raise SettingsError(f"token file {path} is empty")
    return token


@dataclass(frozen=True)
class ClientSettings:
    server: str
    token: str = field(repr=False)
    insecure: bool = False
    ca_cert: str = ""

    @property
    def verify(self) -> bool | str:
        return self.ca_cert or True

    @classmethod
    def load(
        cls,
        *,
        server: str | None = None,
        insecure: bool | None = None,
        ca_cert: str | None = None,
        env: Mapping[str, str] | None = None,
        require_token: bool = True,
    ) -> ClientSettings:
        """Settings from the arguments given, else the environment (see the module docstring)."""
        env = os.environ if env is None else env
        server = server or env.get("BASTION_SERVER") or env.get("DRONE_SERVER") or ""
        if not server:
            raise SettingsError(
                "no server given: set BASTION_SERVER (or DRONE_SERVER) to the server's URL, "
                "e.g. https://ci.example.com, or pass --server"
            )
        insecure = env_flag(env, "BASTION_INSECURE") if insecure is None else insecure
        ca_cert = ca_cert if ca_cert is not None else env.get("BASTION_CA_CERT", "")
        if ca_cert and not Path(ca_cert).is_file():
            raise SettingsError(f"CA certificate {ca_cert}: no such file")
        token = env.get("BASTION_TOKEN") or env.get("DRONE_TOKEN") or ""
        if not token and env.get("BASTION_TOKEN_FILE"):
            token = read_token_file(env["BASTION_TOKEN_FILE"])
        if not token and require_token:
            raise SettingsError(
                "no token given: set BASTION_TOKEN (or DRONE_TOKEN), or BASTION_TOKEN_FILE to "
                "a file holding it (an admin creates one with: bastion user token LOGIN)"
            )
        return cls(
            server=check_server_url(server, insecure=insecure),
            token=token.strip(),
            insecure=insecure,
            ca_cert=ca_cert,
        )
