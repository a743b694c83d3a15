"""``bastion lint``: every problem of a ``.drone.yml``, as text or JSON.

Parses the file, then applies the trust policy as for an untrusted repository (``--trusted``
for a trusted one). Prints every diagnostic and exits 2 if there is any, or prints nothing
and exits 0.
"""

from __future__ import annotations

import json
import sys
from enum import StrEnum
from pathlib import Path

from bastion.cli.errors import EXIT_INVALID, EXIT_OK, CliError
from bastion.cli.sources import read_pipeline_file
from bastion.engine.hardening import Hardening, SettingsError, load_hardening
from bastion.policy.trust import review_pipeline
from bastion.spec.diagnostics import Diagnostic, Kind
from bastion.spec.parse import parse


class OutputFormat(StrEnum):
    TEXT = "text"
    JSON = "json"


def lint_diagnostics(path: Path, *, trusted: bool) -> list[Diagnostic]:
    result = parse(read_pipeline_file(path), filename=str(path))
    diagnostics = list(result.diagnostics)
    # Pipelines that validated are reviewed even when another document has errors: every
    # problem is reported at once.
    if result.manifest.pipelines:
        hardening = _hardening()
        for index, pipeline in enumerate(result.manifest.pipelines):
            for refusal in review_pipeline(
                pipeline,
                trusted=trusted,
                max_mem_limit=hardening.max_mem_limit,
                reserved_paths=hardening.runner_paths,
            ):
                diagnostics.append(
                    result.manifest.diagnostic(
                        index, refusal.path, refusal.message, kind=Kind.POLICY
                    )
                )
    diagnostics.sort(key=lambda d: (d.line, d.column))
    return diagnostics


def run_lint(path: Path, *, trusted: bool, output: OutputFormat) -> int:
    diagnostics = lint_diagnostics(path, trusted=trusted)
    if not diagnostics:
        return EXIT_OK
    if output is OutputFormat.JSON:
        json.dump([d.to_dict() for d in diagnostics], sys.stdout, indent=2)
        sys.stdout.write("\n")
    else:
        for d in diagnostics:
            sys.stdout.write(d.format() + "\n")
    return EXIT_INVALID


def _hardening() -> Hardening:
    try:
        return load_hardening()
    except SettingsError as exc:
        raise CliError(f"invalid setting: {exc}") from None
