"""The server's settings: ``BASTION_*`` variables, Drone's names as aliases, an optional TOML file.

Precedence, highest first: values given in code (the ``bastion server`` options), environment
variables (``BASTION_*``, then the ``DRONE_*`` alias of the same meaning), the TOML file named by
``BASTION_CONFIG_FILE`` (keys are the field names below, e.g. ``rpc_secret = "..."``; an
unknown key is an error, so a typo is not silently ignored), the defaults. TOML was chosen
over an env-file because it has types (numbers, booleans) and comments, and ``tomllib`` is in
the standard library.

Drone aliases honoured where the meaning is the same: ``DRONE_SERVER_HOST`` / ``_PROTO`` (the
host name and scheme used in links), ``DRONE_RPC_SECRET``, ``DRONE_DATABASE_SECRET``,
``DRONE_DATABASE_DRIVER`` + ``DRONE_DATABASE_DATASOURCE``, ``DRONE_TLS_CERT`` / ``_KEY``,
``DRONE_CRON_DISABLED``, ``DRONE_GITEA_SERVER``, ``DRONE_GITLAB_SERVER``, ``DRONE_GITHUB_SERVER``,
``DRONE_{GITHUB,GITEA,GITLAB}_CLIENT_ID`` / ``_CLIENT_SECRET``, ``DRONE_USER_FILTER``,
``DRONE_REPOSITORY_FILTER``. ``DRONE_USER_CREATE``
is deliberately *not* honoured (registration stays closed; the bootstrap admin is created by
the server itself): :meth:`ServerSettings.notices` says so when it is set.

:meth:`ServerSettings.validate_security` refuses insecure settings with every problem listed
and how to fix it; :func:`dev_defaults` generates strong values for ``--dev``.
"""

from __future__ import annotations

import base64
import binascii
import ipaddress
import os
import re
import secrets
import tomllib
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal
from urllib.parse import urlsplit

from pydantic import (
    AliasChoices,
    Field,
    SecretStr,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic_settings import (
    BaseSettings,
    InitSettingsSource,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
)

from bastion.crypto import new_token
from bastion.server.database_keys import database_key_problems
from bastion.server.secret_files import read_secret_file, write_secret_file

MIB = 1 << 20
SECRET_BYTES = 32  # both server secrets must carry at least 256 random bits
DEFAULT_LEASE_SECONDS = 60
MAX_DEFAULT_LEASE_SECONDS = 120  # the bound for "a runner that disappears"

# File names in the data directory (names, not secrets).
RPC_SECRET_FILE = "rpc-secret"  # noqa: S105
DATABASE_SECRET_FILE = "database-secret"  # noqa: S105
ADMIN_TOKEN_FILE = "admin.token"  # noqa: S105
EMBEDDED_RUNNER_TOKEN_FILE = "embedded-runner.token"  # noqa: S105

_GENERATE_HINT = "generate one with: openssl rand -hex 32"


class SettingsError(ValueError):
    """The settings cannot be used; ``problems`` lists each one with how to fix it."""

    def __init__(self, problems: list[str]) -> None:
        self.problems = list(problems)
        super().__init__("\n".join(f"- {p}" for p in self.problems))


def _default_data_dir() -> Path:
    base = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(base) / "bastion"


def _alias(*names: str) -> Any:
    return AliasChoices(*names)


class ServerSettings(BaseSettings):
    """Everything ``bastion server`` can be told. Secret values are ``SecretStr``: they never
    appear in a repr, a log line or an error message."""

    model_config = SettingsConfigDict(
        env_prefix="BASTION_", extra="ignore", populate_by_name=True, frozen=True
    )

    config_file: Path | None = None

    # Where to listen, and how the server is reached.
    host: str = "127.0.0.1"
    port: int = Field(default=8080, ge=1, le=65535)
    server_host: str = Field(
        default="", validation_alias=_alias("BASTION_SERVER_HOST", "DRONE_SERVER_HOST")
    )
    server_proto: Literal["http", "https", ""] = Field(
        default="", validation_alias=_alias("BASTION_SERVER_PROTO", "DRONE_SERVER_PROTO")
    )
    public_url: str = ""  # how runners and forges reach the server; derived when empty
    tls_cert: Path | None = Field(
        default=None, validation_alias=_alias("BASTION_TLS_CERT", "DRONE_TLS_CERT")
    )
    tls_key: Path | None = Field(
        default=None, validation_alias=_alias("BASTION_TLS_KEY", "DRONE_TLS_KEY")
    )
    # The CA that signed tls_cert, for the server's own clients (local-forge git hooks,
    # the embedded runner) when it is a private CA; the system's CAs otherwise.
    ca_cert: Path | None = None
    # Plain HTTP on a non-loopback address, for a server behind a TLS-terminating proxy on a
    # private network. Off by default; validate_security names it as the last resort.
    allow_plain_http: bool = False

    # Storage.
    data_dir: Path = Field(default_factory=_default_data_dir)
    database_url: str = ""  # default: sqlite:///<data_dir>/bastion.db
    drone_database_driver: str = Field(
        default="", validation_alias=_alias("DRONE_DATABASE_DRIVER", "drone_database_driver")
    )
    drone_database_datasource: str = Field(
        default="",
        validation_alias=_alias("DRONE_DATABASE_DATASOURCE", "drone_database_datasource"),
    )
    database_secret: SecretStr = Field(
        default=SecretStr(""),
        validation_alias=_alias("BASTION_DATABASE_SECRET", "DRONE_DATABASE_SECRET"),
    )
    # The key as a file instead (mode 0600 or stricter), and previous keys that still decrypt
    # values written before a rotation (bastion.server.database_keys, docs/operations.md).
    database_secret_file: Path | None = None
    database_secret_previous: SecretStr = SecretStr("")  # comma-separated
    database_secret_previous_file: Path | None = None
    # Audit events older than this are purged by the periodic maintenance.
    audit_retention_days: int = Field(default=365, ge=1)
    log_store: Literal["file", "database"] = "file"
    log_limit_bytes: int = Field(default=5 * MIB, ge=1024)

    # The server/runner channel.
    rpc_secret: SecretStr = Field(
        default=SecretStr(""), validation_alias=_alias("BASTION_RPC_SECRET", "DRONE_RPC_SECRET")
    )
    lease_seconds: int = Field(default=DEFAULT_LEASE_SECONDS, ge=1, le=3600)
    heartbeat_interval: float = Field(default=10.0, gt=0)
    poll_timeout: float = Field(default=30.0, gt=0, le=300)
    reaper_interval: float = Field(default=2.0, gt=0, le=60)
    requery_interval: float = Field(default=1.0, gt=0, le=10)

    # Modes.
    dev: bool = False
    embedded_runner: bool = False
    cron_disabled: bool = Field(
        default=False, validation_alias=_alias("BASTION_CRON_DISABLED", "DRONE_CRON_DISABLED")
    )
    # How often the cron loop looks for due jobs (server/services/cron.py), in seconds.
    cron_interval: float = Field(default=30.0, gt=0, le=3600)
    # Commit statuses are reported as "<status_context>/<event>" (Drone's names: push, pr, ...).
    status_context: str = Field(
        default="continuous-integration/bastion", min_length=1, max_length=200
    )
    drone_user_create: str = Field(
        default="", validation_alias=_alias("DRONE_USER_CREATE", "drone_user_create")
    )
    # Which builds wait for an approval, for repositories that do not choose
    # (services.approvals): pull requests from forks unless told otherwise.
    approval_mode: Literal["none", "forks", "pull_requests", "all_events"] = "forks"
    # The longest build timeout (minutes) a repository may set without a system administrator.
    timeout_max: int = Field(default=180, ge=1, le=24 * 60)

    # Forges.
    github_api_url: str = "https://api.github.com"
    github_token: SecretStr = SecretStr("")
    gitea_url: str = Field(
        default="", validation_alias=_alias("BASTION_GITEA_URL", "DRONE_GITEA_SERVER")
    )
    gitea_token: SecretStr = SecretStr("")
    gitlab_url: str = Field(
        default="https://gitlab.com",
        validation_alias=_alias("BASTION_GITLAB_URL", "DRONE_GITLAB_SERVER"),
    )
    gitlab_token: SecretStr = SecretStr("")
    webhook_secret: SecretStr = SecretStr("")  # fallback for repositories without their own

    # External secrets (``kind: secret`` documents): a provider speaking Drone's secret
    # extension protocol (bastion.server.services.secret_providers). Off when no endpoint.
    secret_plugin_endpoint: str = Field(
        default="",
        validation_alias=_alias("BASTION_SECRET_PLUGIN_ENDPOINT", "DRONE_SECRET_PLUGIN_ENDPOINT"),
    )
    secret_plugin_token: SecretStr = Field(
        default=SecretStr(""),
        validation_alias=_alias("BASTION_SECRET_PLUGIN_TOKEN", "DRONE_SECRET_PLUGIN_TOKEN"),
    )
    secret_plugin_skip_verify: bool = Field(
        default=False,
        validation_alias=_alias(
            "BASTION_SECRET_PLUGIN_SKIP_VERIFY", "DRONE_SECRET_PLUGIN_SKIP_VERIFY"
        ),
    )
    secret_plugin_ca_cert: Path | None = None  # a private CA that signed the provider's cert
    # At most 20 s: the stage's details (which wait for the provider) must reach the runner
    # within the 30 s its requests allow beyond a long-poll.
    secret_plugin_timeout: float = Field(default=10.0, gt=0, le=20)
    # Secrets not changed for longer than this are flagged overdue by the API and the CLI.
    secret_rotation_days: int = Field(default=90, ge=1, le=3650)

    # API tokens (server/api/tokens.py): the lifetime of a new token when none is asked for,
    # the longest one may ask for, and whether a token may never expire at all.
    token_default_days: int = Field(default=90, ge=1, le=3650)
    token_max_days: int = Field(default=365, ge=1, le=36500)
    token_allow_never: bool = False
    # Brute-force protection (server/services/guard.py): failures counted in a sliding window
    # per account and per source address; reaching a limit locks it (doubling per lockout).
    auth_window_seconds: int = Field(default=300, ge=10, le=86400)
    auth_account_limit: int = Field(default=10, ge=1, le=10000)
    auth_source_limit: int = Field(default=50, ge=1, le=100000)
    auth_lockout_seconds: int = Field(default=900, ge=1, le=86400)
    # Comma-separated addresses or networks of reverse proxies whose X-Forwarded-For is
    # believed; from anyone else the header is ignored (a client could name any address).
    trusted_proxies: str = ""

    @field_validator("trusted_proxies")
    @classmethod
    def _check_trusted_proxies(cls, value: str) -> str:
        for item in (part.strip() for part in value.split(",")):
            if item:
                try:
                    ipaddress.ip_network(item, strict=False)
                except ValueError:
                    raise ValueError(
                        f"BASTION_TRUSTED_PROXIES: {item!r} is not an IP address or network"
                    ) from None
        return value

    # Login (bastion.server.identity). OAuth2 applications on the forges; a forge without a
    # client id offers no login. ``*_server``: the forge's web address (authorize, token).
    github_server: str = Field(
        default="https://github.com",
        validation_alias=_alias("BASTION_GITHUB_SERVER", "DRONE_GITHUB_SERVER"),
    )
    github_client_id: str = Field(
        default="", validation_alias=_alias("BASTION_GITHUB_CLIENT_ID", "DRONE_GITHUB_CLIENT_ID")
    )
    github_client_secret: SecretStr = Field(
        default=SecretStr(""),
        validation_alias=_alias("BASTION_GITHUB_CLIENT_SECRET", "DRONE_GITHUB_CLIENT_SECRET"),
    )
    gitea_client_id: str = Field(
        default="", validation_alias=_alias("BASTION_GITEA_CLIENT_ID", "DRONE_GITEA_CLIENT_ID")
    )
    gitea_client_secret: SecretStr = Field(
        default=SecretStr(""),
        validation_alias=_alias("BASTION_GITEA_CLIENT_SECRET", "DRONE_GITEA_CLIENT_SECRET"),
    )
    gitlab_client_id: str = Field(
        default="", validation_alias=_alias("BASTION_GITLAB_CLIENT_ID", "DRONE_GITLAB_CLIENT_ID")
    )
    gitlab_client_secret: SecretStr = Field(
        default=SecretStr(""),
        validation_alias=_alias("BASTION_GITLAB_CLIENT_SECRET", "DRONE_GITLAB_CLIENT_SECRET"),
    )
    # Comma-separated. Organisations whose members may log in (registration is closed
    # otherwise); logins that are administrators, re-checked at every forge login; globs on
    # owner/name of the repositories that may be activated.
    user_filter: str = Field(
        default="", validation_alias=_alias("BASTION_USER_FILTER", "DRONE_USER_FILTER")
    )
    admins: str = ""
    repository_filter: str = Field(
        default="",
        validation_alias=_alias("BASTION_REPOSITORY_FILTER", "DRONE_REPOSITORY_FILTER"),
    )
    # A forge account younger than this may not log in (0: no minimum).
    min_account_age_days: int = Field(default=0, ge=0, le=3650)
    # A session ends after this long without a request, and at the latest after the lifetime.
    session_idle_seconds: int = Field(default=12 * 3600, ge=60)
    session_lifetime_seconds: int = Field(default=7 * 24 * 3600, ge=60)
    # How long forge permissions are trusted before they are asked again.
    permission_cache_seconds: int = Field(default=300, ge=0, le=86400)

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        path: object = None
        if isinstance(init_settings, InitSettingsSource):
            path = init_settings.init_kwargs.get("config_file")
        path = path or os.environ.get("BASTION_CONFIG_FILE")
        sources: list[PydanticBaseSettingsSource] = [init_settings, env_settings]
        if path:
            sources.append(_TomlFile(settings_cls, Path(str(path))))
        return tuple(sources)

    @model_validator(mode="after")
    def _drone_datasource(self) -> ServerSettings:
        # Checked here so that an unusable Drone datasource is a settings error at once.
        if not self.database_url and self.drone_database_datasource:
            _drone_database_url(self.drone_database_driver, self.drone_database_datasource)
        return self

    # -- derived values ------------------------------------------------------------------------

    @property
    def tls(self) -> bool:
        return self.tls_cert is not None and self.tls_key is not None

    @property
    def effective_database_url(self) -> str:
        if self.database_url:
            return self.database_url
        if self.drone_database_datasource:
            return _drone_database_url(self.drone_database_driver, self.drone_database_datasource)
        return f"sqlite:///{self.data_dir / 'bastion.db'}"

    @property
    def internal_url(self) -> str:
        """How processes on this machine reach the server (embedded runner, git hooks)."""
        scheme = "https" if self.tls else "http"
        host = self.host
        if host in {"0.0.0.0", "", "::"}:  # noqa: S104 - a wildcard is reached on loopback
            host = "127.0.0.1"
        if ":" in host and not host.startswith("["):
            host = f"[{host}]"
        return f"{scheme}://{host}:{self.port}"

    @property
    def effective_public_url(self) -> str:
        """How runners on other hosts and forges reach the server (links, webhook URLs)."""
        if self.public_url:
            return self.public_url.rstrip("/")
        if self.server_host:
            proto = self.server_proto or ("https" if self.tls else "http")
            return f"{proto}://{self.server_host}"
        return self.internal_url

    @property
    def local_ca_cert(self) -> Path | None:
        """The CA file the server's own clients (git hooks, the embedded runner) trust:
        ``ca_cert``, else the server's certificate itself (right for a self-signed one; set
        ``BASTION_CA_CERT`` when a CA signed it), else the system's CAs (None)."""
        if self.ca_cert is not None:
            return self.ca_cert
        return self.tls_cert if self.tls else None

    @property
    def link_host(self) -> str:
        """The host name used in links and ``DRONE_SYSTEM_HOST``."""
        if self.server_host:
            return self.server_host
        return self.effective_public_url.split("://", 1)[-1].split("/", 1)[0]

    @property
    def link_proto(self) -> str:
        return self.effective_public_url.split("://", 1)[0]

    @property
    def effective_heartbeat_interval(self) -> float:
        """The interval runners are told: at most a third of the lease, so that two lost
        heartbeats in a row do not lose a healthy runner's stage."""
        return min(self.heartbeat_interval, self.lease_seconds / 3)

    @property
    def log_dir(self) -> Path:
        return self.data_dir / "logs"

    @property
    def repos_dir(self) -> Path:
        return self.data_dir / "repos"

    # -- checks --------------------------------------------------------------------------------

    def validate_security(self) -> None:
        """Raise :class:`SettingsError` listing every insecure or unusable setting."""
        problems: list[str] = []
        rpc_problem = secret_strength_problem(self.rpc_secret.get_secret_value())
        if rpc_problem:
            problems.append(
                f"BASTION_RPC_SECRET (or DRONE_RPC_SECRET) {rpc_problem}: it signs the "
                f"server's internal requests and must be at least {SECRET_BYTES} random "
                f"bytes; {_GENERATE_HINT} (or start with --dev to generate one)"
            )
        problems.extend(database_key_problems(self))
        if not self.tls and not _is_loopback(self.host) and not self.allow_plain_http:
            problems.append(
                f"plain HTTP on {self.host}, which is not a loopback address: tokens and "
                "build logs would cross the network unencrypted; set BASTION_TLS_CERT and "
                "BASTION_TLS_KEY, or listen on 127.0.0.1 (--host 127.0.0.1); only behind a "
                "TLS-terminating proxy on a private network set BASTION_ALLOW_PLAIN_HTTP=true"
            )
        if (self.tls_cert is None) != (self.tls_key is None):
            problems.append("BASTION_TLS_CERT and BASTION_TLS_KEY must be set together")
        for name, path in (("BASTION_TLS_CERT", self.tls_cert), ("BASTION_TLS_KEY", self.tls_key)):
            if path is not None and not path.is_file():
                problems.append(f"{name}: {path} is not a readable file")
        # Only an interval set on purpose can contradict the lease: the default is clamped to a
        # third of the lease (effective_heartbeat_interval).
        if "heartbeat_interval" in self.model_fields_set and (
            self.heartbeat_interval >= self.lease_seconds
        ):
            problems.append(
                f"BASTION_HEARTBEAT_INTERVAL ({self.heartbeat_interval:g} s) must be shorter "
                f"than BASTION_LEASE_SECONDS ({self.lease_seconds} s)"
            )
        if self.public_url and not self.public_url.startswith(("http://", "https://")):
            problems.append("BASTION_PUBLIC_URL must start with http:// or https://")
        problems.extend(self._secret_plugin_problems())
        url = self.effective_database_url
        if not url.startswith(("sqlite:", "postgresql")):
            problems.append(
                "the database URL must be sqlite:///PATH or postgresql+psycopg://...; other "
                "databases are not supported"
            )
        if problems:
            raise SettingsError(problems)

    def _secret_plugin_problems(self) -> list[str]:
        # The provider's replies carry secret values and its token lets anyone ask for
        # them: TLS off loopback, a strong token (a weak one only with --dev).
        endpoint = self.secret_plugin_endpoint.strip()
        if not endpoint:
            return []
        problems: list[str] = []
        name = "BASTION_SECRET_PLUGIN_ENDPOINT (or DRONE_SECRET_PLUGIN_ENDPOINT)"
        scheme, _, rest = endpoint.partition("://")
        host = urlsplit(endpoint).hostname or ""
        if scheme not in {"http", "https"} or not rest or not host:
            problems.append(f"{name} must be an http:// or https:// URL with a host")
        elif scheme == "http" and not _is_loopback(host):
            problems.append(
                f"{name} uses plain HTTP to {host}, which is not a loopback address: the "
                "provider's replies hold secret values; use https://"
            )
        token_problem = secret_strength_problem(self.secret_plugin_token.get_secret_value())
        if token_problem and (not self.dev or not self.secret_plugin_token.get_secret_value()):
            problems.append(
                f"BASTION_SECRET_PLUGIN_TOKEN (or DRONE_SECRET_PLUGIN_TOKEN) {token_problem}: "
                f"it signs requests for secret values and must be at least {SECRET_BYTES} "
                f"random bytes; {_GENERATE_HINT}, and give the provider the same value"
            )
        if self.secret_plugin_skip_verify and not self.dev:
            problems.append(
                "BASTION_SECRET_PLUGIN_SKIP_VERIFY would accept any certificate for the "
                "secret provider (anyone in between reads the secrets); set "
                "BASTION_SECRET_PLUGIN_CA_CERT to the CA that signed it instead (allowed "
                "only with --dev)"
            )
        ca = self.secret_plugin_ca_cert
        if ca is not None and not ca.is_file():
            problems.append(f"BASTION_SECRET_PLUGIN_CA_CERT: {ca} is not a readable file")
        return problems

    def notices(self) -> list[str]:
        """Things worth saying at start-up that do not stop it."""
        out: list[str] = []
        if self.drone_user_create:
            out.append(
                "DRONE_USER_CREATE is ignored: Bastion creates its bootstrap admin 'admin' "
                "itself and never opens registration; create users with `bastion user add`"
            )
        if self.dev and self.secret_plugin_endpoint.strip():
            if secret_strength_problem(self.secret_plugin_token.get_secret_value()):
                out.append("--dev: the secret provider's token is weak; refused without --dev")
            if self.secret_plugin_skip_verify:
                out.append("--dev: the secret provider's certificate is not verified")
        if self.lease_seconds > MAX_DEFAULT_LEASE_SECONDS:
            out.append(
                f"BASTION_LEASE_SECONDS is {self.lease_seconds}: a stage of a runner that "
                f"disappears stays running that long before it ends as error"
            )
        return out

    def with_dev_defaults(self, dev: DevSecrets) -> ServerSettings:
        """These settings, with the generated secrets where none was given."""
        update: dict[str, Any] = {}
        if not self.rpc_secret.get_secret_value():
            update["rpc_secret"] = SecretStr(dev.rpc_secret)
        if not self.database_secret.get_secret_value() and self.database_secret_file is None:
            update["database_secret"] = SecretStr(dev.database_secret)
        return self.model_copy(update=update)


def load_settings(**overrides: Any) -> ServerSettings:
    """Settings from the environment and the config file, with ``overrides`` (options given on
    the command line; ``None`` values are left out) on top. Raises :class:`SettingsError`."""
    given = {k: v for k, v in overrides.items() if v is not None}
    try:
        return ServerSettings(**given)
    except ValidationError as exc:
        problems = []
        for error in exc.errors():
            field = ".".join(str(part) for part in error["loc"]) or "settings"
            message = str(error["msg"]).removeprefix("Value error, ")
            problems.append(f"{_setting_name(field)}: {message}")
        raise SettingsError(problems) from None
    except ValueError as exc:  # the config file: unreadable, not TOML, unknown keys
        raise SettingsError([str(exc)]) from None


def _setting_name(field: str) -> str:
    if field.isupper():
        return field
    return "BASTION_" + field.upper()


class _TomlFile(PydanticBaseSettingsSource):
    """The TOML config file; unknown keys are refused with their names."""

    def __init__(self, settings_cls: type[BaseSettings], path: Path) -> None:
        super().__init__(settings_cls)
        self.path = path

    def get_field_value(self, field: Any, field_name: str) -> tuple[Any, str, bool]:
        raise NotImplementedError  # __call__ reads the whole file at once

    def __call__(self) -> dict[str, Any]:
        try:
            data = tomllib.loads(self.path.read_text(encoding="utf-8"))
        except OSError as exc:
            raise ValueError(f"config file {self.path}: {exc.strerror}") from None
        except tomllib.TOMLDecodeError as exc:
            raise ValueError(f"config file {self.path}: {exc}") from None
        known = {
            name
            for name in self.settings_cls.model_fields
            if name != "config_file" and not name.startswith("drone_")
        }
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(
                f"config file {self.path}: unknown setting(s) {', '.join(unknown)}; "
                f"known: {', '.join(sorted(known))}"
            )
        return data


def _drone_database_url(driver: str, datasource: str) -> str:
    driver = driver.strip().lower() or "sqlite3"
    if driver == "sqlite3":
        return f"sqlite:///{datasource}"
    if driver == "postgres":
        for prefix in ("postgres://", "postgresql://"):
            if datasource.startswith(prefix):
                return "postgresql+psycopg://" + datasource[len(prefix) :]
        raise ValueError(
            "DRONE_DATABASE_DATASOURCE for postgres must be a URL postgres://user:pw@host/db"
        )
    raise ValueError(
        f"DRONE_DATABASE_DRIVER {driver!r} is not supported: use sqlite3 or postgres "
        "(or BASTION_DATABASE_URL)"
    )


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


_HEX = re.compile(r"^(?:[0-9a-fA-F]{2})+$")
_BASE64 = re.compile(r"^[A-Za-z0-9+/_-]+={0,2}$")
_MIN_TEXT_CHARS = 43  # a 32-byte secret written in base64 without padding


def secret_strength_problem(text: str) -> str | None:
    """Why ``text`` is weaker than :data:`SECRET_BYTES` random bytes, or None.

    Hex is read as bytes (64 hex characters = 32 bytes), as is base64 (44 characters); any
    other text needs at least 43 characters. Then the material must not look patterned: few
    distinct values or a repetition that compresses (``aaaa…``, ``abcabc…``, ``0123…`` twice)
    is refused however long it is. This cannot prove randomness; it catches what people type.
    """
    value = text.strip()
    if not value:
        return "is not set"
    material: bytes
    if _HEX.match(value):
        material = bytes.fromhex(value)
        if len(material) < SECRET_BYTES:
            return f"is too short ({len(material)} bytes of hex, {SECRET_BYTES} needed)"
    else:
        decoded = _b64(value) if _BASE64.match(value) and len(value) % 4 == 0 else None
        if decoded is not None and len(decoded) >= SECRET_BYTES:
            material = decoded
        else:
            if len(value) < _MIN_TEXT_CHARS:
                return f"is too short ({len(value)} characters, {_MIN_TEXT_CHARS} needed)"
            material = value.encode("utf-8")
    distinct = len(set(material))
    if distinct < max(8, len(set(value)) // 2, len(material) // 4):
        return "has too few distinct characters to be random (low entropy)"
    if len(zlib.compress(material, 9)) < len(material):
        return "repeats itself (low entropy)"
    return None


def _b64(value: str) -> bytes | None:
    alt = b"-_" if ("-" in value or "_" in value) else b"+/"
    try:
        return base64.b64decode(value, altchars=alt, validate=True)
    except (binascii.Error, ValueError):
        return None


# -- --dev ----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class DevSecrets:
    """What ``--dev`` generated or found in the data directory. ``created`` lists the files
    written by this call (empty when every value was reused)."""

    rpc_secret: str
    database_secret: str
    admin_token: str
    rpc_secret_file: Path
    database_secret_file: Path
    admin_token_file: Path
    created: tuple[Path, ...]

    def __repr__(self) -> str:
        return f"DevSecrets(files in {self.admin_token_file.parent}, created={self.created!r})"


def dev_defaults(data_dir: Path) -> DevSecrets:
    """Strong secrets and a bootstrap admin token in ``data_dir`` (files of mode 0600, made
    with ``os.open(..., 0o600)`` so they are never readable by others, not even briefly);
    values already there are reused, so a restart keeps the same database key and token."""
    data_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    created: list[Path] = []

    def ensure(name: str, make: str) -> tuple[str, Path]:
        path = data_dir / name
        value = read_secret_file(path)
        if value is None:
            write_secret_file(path, make)
            created.append(path)
            value = make
        return value, path

    rpc, rpc_path = ensure(RPC_SECRET_FILE, secrets.token_hex(SECRET_BYTES))
    db, db_path = ensure(DATABASE_SECRET_FILE, secrets.token_hex(SECRET_BYTES))
    token, token_path = ensure(ADMIN_TOKEN_FILE, new_token("api"))
    return DevSecrets(rpc, db, token, rpc_path, db_path, token_path, tuple(created))
