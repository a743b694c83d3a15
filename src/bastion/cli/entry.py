"""The ``bastion`` console script: a tiny shim so that Ctrl-C is handled from the first
instant, even while the heavy modules (docker-py, pydantic, Rich) are still importing."""

from __future__ import annotations

import sys


def main() -> None:
    try:
        from bastion.cli.app import main as app_main  # noqa: PLC0415 - see the docstring

        app_main()
    except KeyboardInterrupt:
        sys.stderr.write("interrupted\n")
        sys.exit(130)
