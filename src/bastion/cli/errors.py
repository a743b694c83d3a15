"""Exit codes and the one exception type commands raise to end with a message.

0 success; 1 the pipeline failed; 2 the file, its content or the options are invalid (the
message says where and why); 3 Bastion could not do its work (Docker engine unreachable);
130 interrupted (Ctrl-C).
"""

from __future__ import annotations

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_INVALID = 2
EXIT_UNAVAILABLE = 3
EXIT_INTERRUPTED = 130


class CliError(Exception):
    """End the command with ``message`` on stderr and ``code`` as exit status."""

    def __init__(self, message: str, code: int = EXIT_INVALID) -> None:
        super().__init__(message)
        self.message = message
        self.code = code
