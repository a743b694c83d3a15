"""Typed model of the ``.drone.yml`` language: pipelines, steps, conditions, secrets.

These pydantic models validate the plain values the loader produced; every validation error
carries the YAML path (``loc``) that ``bastion.spec.parse`` turns into file, line and column.
Fields follow Drone's documentation; where YAML allows several shapes (a condition as a
string, a list or ``{include, exclude}``; an environment value as a scalar or
``{from_secret: name}``) a *before* validator normalises them to one shape, so that the rest
of Bastion sees a single type. Unknown fields are kept (``extra="allow"``) and reported as
warnings rather than errors, as Drone ignores them.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    field_validator,
    model_validator,
)

# -- helpers for YAML's loose shapes -------------------------------------------------------


def _scalar_to_str(value: Any) -> Any:
    """YAML reads ``1``, ``true`` and ``1.5`` as numbers and booleans; where Drone expects
    text (a command, a variable's value) they are used as written."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return str(value)
    return value


def _one_or_many(value: Any) -> Any:
    """A field that takes a list also takes a single value: ``depends_on: build``."""
    if value is None:
        return ()
    if isinstance(value, str | int | float | bool):
        return (_scalar_to_str(value),)
    if isinstance(value, list | tuple):
        return tuple(_scalar_to_str(v) for v in value)
    return value


def _commands(value: Any) -> Any:
    if value is None:
        return ()
    if isinstance(value, str):
        return (value,)
    if isinstance(value, list | tuple):
        out: list[Any] = []
        for item in value:
            if isinstance(item, dict):
                # `- echo "a: b"` unquoted is read by YAML as a mapping {echo "a": "b"}.
                raise ValueError(
                    "a command was read as a mapping because it contains ': ' - "
                    "quote the whole command, e.g. - 'echo \"a: b\"'"
                )
            out.append(_scalar_to_str(item))
        return tuple(out)
    return value


def _byte_size(value: Any) -> Any:
    """Docker-style sizes: an integer number of bytes or a string like ``512m``, ``2g``."""
    if value is None or isinstance(value, bool):
        return value
    if isinstance(value, int):
        return value
    if isinstance(value, str):
        m = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([kmgt]?)i?b?\s*", value, re.IGNORECASE)
        if not m:
            raise ValueError(
                f"{value!r} is not a size: write a number of bytes or a number with a unit "
                "k, m, g or t, e.g. 512m"
            )
        factor = {"": 1, "k": 1 << 10, "m": 1 << 20, "g": 1 << 30, "t": 1 << 40}
        return int(float(m.group(1)) * factor[m.group(2).lower()])
    return value


StrTuple = Annotated[tuple[str, ...], BeforeValidator(_one_or_many)]
Commands = Annotated[tuple[str, ...], BeforeValidator(_commands)]
ByteSize = Annotated[int, BeforeValidator(_byte_size), Field(ge=0)]


class SpecModel(BaseModel):
    """Base of every model: immutable, unknown keys kept for the unknown-field warning."""

    model_config = ConfigDict(extra="allow", frozen=True, strict=False)


# -- conditions ------------------------------------------------------------------------------


class Condition(SpecModel):
    """One key of ``when`` / ``trigger``: glob patterns to include and to exclude."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    include: StrTuple = ()
    exclude: StrTuple = ()

    @classmethod
    def _normalise(cls, value: Any) -> Any:
        if value is None:
            return {}
        if isinstance(value, str | int | float | bool):
            return {"include": (_scalar_to_str(value),)}
        if isinstance(value, list | tuple):
            return {"include": value}
        return value

    @property
    def empty(self) -> bool:
        return not self.include and not self.exclude


ConditionField = Annotated[Condition, BeforeValidator(Condition._normalise)]


class Conditions(SpecModel):
    """``when`` (per step) and ``trigger`` (per pipeline). All keys are ANDed."""

    model_config = ConfigDict(extra="allow", frozen=True)

    action: ConditionField = Condition()
    branch: ConditionField = Condition()
    cron: ConditionField = Condition()
    event: ConditionField = Condition()
    instance: ConditionField = Condition()
    ref: ConditionField = Condition()
    repo: ConditionField = Condition()
    status: ConditionField = Condition()
    target: ConditionField = Condition()
    paths: ConditionField = Condition()


# -- environment and settings ----------------------------------------------------------------


class SecretRef(SpecModel):
    """``{from_secret: name}``: the value comes from the secret called ``name``."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    from_secret: str = Field(min_length=1)


def _env_value(value: Any) -> Any:
    if value is None:
        return ""
    if isinstance(value, dict):
        return value  # validated as SecretRef
    if isinstance(value, str | int | float | bool):
        return _scalar_to_str(value)
    raise ValueError(
        "an environment value must be a string or {from_secret: NAME}; "
        "lists and mappings are only allowed under settings"
    )


EnvValue = Annotated[SecretRef | str, BeforeValidator(_env_value)]


def settings_to_env(settings: Mapping[str, Any]) -> dict[str, str | SecretRef]:
    """Drone's plugin convention: ``settings: {foo_bar: x}`` becomes ``PLUGIN_FOO_BAR=x``.

    Strings are passed as written, lists of scalars comma-joined (as Drone does), other
    values JSON-encoded; ``{from_secret: name}`` stays a reference for the compiler.
    """
    env: dict[str, str | SecretRef] = {}
    for key, value in settings.items():
        name = "PLUGIN_" + re.sub(r"[^A-Za-z0-9]", "_", str(key)).upper()
        if isinstance(value, dict) and set(value) == {"from_secret"}:
            env[name] = SecretRef(from_secret=str(value["from_secret"]))
        elif isinstance(value, str):
            env[name] = value
        elif isinstance(value, bool | int | float):
            env[name] = _scalar_to_str(value)
        elif isinstance(value, list) and all(
            isinstance(v, str | int | float | bool) for v in value
        ):
            env[name] = ",".join(str(_scalar_to_str(v)) for v in value)
        else:
            env[name] = json.dumps(value, separators=(",", ":"), default=str)
    return env


# -- pipeline parts --------------------------------------------------------------------------


class Platform(SpecModel):
    os: str = "linux"
    arch: str = "amd64"
    variant: str = ""
    version: str = ""


class Clone(SpecModel):
    disable: bool = False
    depth: int = Field(default=0, ge=0)
    retries: int = Field(default=0, ge=0)
    skip_verify: bool = False
    tags: bool = False


class Workspace(SpecModel):
    base: str = "/drone"
    path: str = "src"

    @property
    def full_path(self) -> str:
        if self.path.startswith("/"):
            return self.path.rstrip("/") or "/"
        base = self.base.rstrip("/") or ""
        return f"{base}/{self.path}".rstrip("/") if self.path else (base or "/")


class VolumeMount(SpecModel):
    """A step's use of a pipeline volume: ``{name, path}``."""

    name: str = Field(min_length=1)
    path: str = Field(min_length=1)

    @field_validator("path")
    @classmethod
    def _absolute(cls, v: str) -> str:
        if not v.startswith("/"):
            raise ValueError(f"the mount path {v!r} must be absolute, e.g. /cache")
        return v


class TempVolume(SpecModel):
    medium: Literal["", "memory"] = ""


class HostVolume(SpecModel):
    path: str = Field(min_length=1)


class Volume(SpecModel):
    """A pipeline volume: ``temp: {}`` (per-run scratch) or ``host: {path}`` (trusted)."""

    name: str = Field(min_length=1)
    temp: TempVolume | None = None
    host: HostVolume | None = None

    @model_validator(mode="before")
    @classmethod
    def _bare_temp(cls, data: Any) -> Any:
        # `temp:` with nothing after it is YAML null; Drone reads it as `temp: {}`.
        if isinstance(data, dict) and "temp" in data and data["temp"] is None:
            return {**data, "temp": {}}
        return data

    @model_validator(mode="after")
    def _exactly_one_kind(self) -> Volume:
        if (self.temp is None) == (self.host is None):
            raise ValueError(
                f"volume {self.name!r} must have exactly one of temp: {{}} or host: {{path: ...}}"
            )
        return self


class Device(SpecModel):
    name: str = Field(min_length=1)
    path: str = Field(min_length=1)


class Concurrency(SpecModel):
    limit: int = Field(default=0, ge=0)


class Step(SpecModel):
    """A step or a service container. Services ignore ``when``, ``depends_on``, ``detach``."""

    name: str = Field(min_length=1)
    image: str = ""
    commands: Commands = ()
    command: Commands = ()
    entrypoint: Commands = ()
    environment: dict[str, EnvValue] = Field(default_factory=dict)
    settings: dict[str, Any] = Field(default_factory=dict)
    when: Conditions = Conditions()
    depends_on: StrTuple = ()
    detach: bool = False
    failure: Literal["", "fail", "ignore", "fast"] = ""
    privileged: bool = False
    pull: Literal["", "always", "never", "if-not-exists", "default"] = ""
    user: Annotated[str, BeforeValidator(_scalar_to_str)] = ""
    volumes: tuple[VolumeMount, ...] = ()
    devices: tuple[Device, ...] = ()
    network_mode: str = ""
    dns: StrTuple = ()
    dns_search: StrTuple = ()
    extra_hosts: StrTuple = ()
    shm_size: ByteSize | None = None
    mem_limit: ByteSize | None = None
    working_dir: str = ""
    shell: str = ""

    @field_validator("environment", mode="before")
    @classmethod
    def _env_mapping(cls, v: Any) -> Any:
        if v is None:
            return {}
        if isinstance(v, list):
            raise ValueError(
                "environment must be a mapping NAME: value; a list of NAME=value strings is "
                "docker-compose syntax"
            )
        return v

    @field_validator("settings", mode="before")
    @classmethod
    def _settings_mapping(cls, v: Any) -> Any:
        return {} if v is None else v


class Pipeline(SpecModel):
    """``kind: pipeline``: a stage, run by one runner in one network and workspace."""

    kind: Literal["pipeline"] = "pipeline"
    type: str = "docker"
    name: str = Field(default="default", min_length=1)
    platform: Platform = Platform()
    node: dict[str, Annotated[str, BeforeValidator(_scalar_to_str)]] = Field(default_factory=dict)
    clone: Clone = Clone()
    workspace: Workspace = Workspace()
    environment: dict[str, EnvValue] = Field(default_factory=dict)
    steps: tuple[Step, ...] = Field(default=(), min_length=1)
    services: tuple[Step, ...] = ()
    volumes: tuple[Volume, ...] = ()
    trigger: Conditions = Conditions()
    depends_on: StrTuple = ()
    image_pull_secrets: StrTuple = ()
    concurrency: Concurrency = Concurrency()

    @field_validator("environment", "node", mode="before")
    @classmethod
    def _maybe_null_mapping(cls, v: Any) -> Any:
        return {} if v is None else v

    @field_validator("services", "volumes", mode="before")
    @classmethod
    def _maybe_null_list(cls, v: Any) -> Any:
        return () if v is None else v


class SecretGet(SpecModel):
    path: str = Field(min_length=1)
    name: str = ""


class SecretDoc(SpecModel):
    """``kind: secret``: names a secret held by an external provider (``get``)."""

    kind: Literal["secret"] = "secret"
    type: str = ""
    name: str = Field(min_length=1)
    get: SecretGet | None = None
    data: str | None = None


class SignatureDoc(SpecModel):
    """``kind: signature``: the HMAC ``drone sign`` / ``bastion sign`` writes."""

    kind: Literal["signature"] = "signature"
    hmac: str = Field(min_length=1)


Resource = Pipeline | SecretDoc | SignatureDoc

# The pipeline types Drone knows, and which Bastion runner runs each.
PIPELINE_TYPES: Mapping[str, str] = {
    "docker": "the docker runner (bastion exec, bastion runner)",
    "kubernetes": "a kubernetes runner (not available in this version of Bastion)",
    "exec": "an exec runner, which runs steps on the host without isolation "
    "(Bastion refuses to provide one)",
    "ssh": "an ssh runner, which runs steps on a remote host without isolation "
    "(not available in Bastion)",
    "digitalocean": "a digitalocean runner (not available in Bastion)",
    "macstadium": "a macstadium runner (not available in Bastion)",
}
RUNNABLE_TYPES = frozenset({"docker"})
