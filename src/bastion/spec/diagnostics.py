"""Problems found in a ``.drone.yml``, each with where it is and how to fix it.

Diagnostics are collected, never raised one at a time: a user fixing a file wants every
problem at once. Each carries the file, 1-based line and column, the YAML path inside its
document (``steps[1].image``), a severity (errors stop a run, warnings do not) and a kind:

- ``syntax``     the text is not valid YAML
- ``limit``      hostile or oversized input refused (size, nesting, alias expansion)
- ``schema``     a field has the wrong type or value
- ``unknown``    a field Bastion does not know (a warning, as Drone ignores them)
- ``graph``      depends_on: unknown names, duplicates, cycles
- ``policy``     the repository's trust level does not allow what the pipeline asks for
- ``runtime``    the pipeline cannot run here (type, platform, missing secret)
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from enum import StrEnum
from typing import Any


class Severity(StrEnum):
    ERROR = "error"
    WARNING = "warning"


class Kind(StrEnum):
    SYNTAX = "syntax"
    LIMIT = "limit"
    SCHEMA = "schema"
    UNKNOWN = "unknown"
    GRAPH = "graph"
    POLICY = "policy"
    RUNTIME = "runtime"


@dataclass(frozen=True)
class Diagnostic:
    message: str
    file: str = ".drone.yml"
    line: int = 1
    column: int = 1
    path: str = ""  # YAML path inside the document, e.g. "steps[1].image"
    document: int = 0  # 0-based index of the YAML document in the file
    severity: Severity = Severity.ERROR
    kind: Kind = Kind.SCHEMA

    @property
    def is_error(self) -> bool:
        return self.severity is Severity.ERROR

    def format(self) -> str:
        where = f"{self.file}:{self.line}:{self.column}"
        at = f" {self.path}:" if self.path else ""
        return f"{where}: {self.severity.value} [{self.kind.value}]{at} {self.message}"

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["severity"] = self.severity.value
        data["kind"] = self.kind.value
        return data


def format_path(parts: tuple[str | int, ...]) -> str:
    """``("steps", 1, "image")`` → ``steps[1].image``."""
    out = ""
    for part in parts:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += f".{part}" if out else part
    return out


def has_errors(diagnostics: list[Diagnostic]) -> bool:
    return any(d.is_error for d in diagnostics)
