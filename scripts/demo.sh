#!/usr/bin/env bash
# The newcomer's first command: set everything up (scripts/setup.sh), then run the pipeline of
# examples/greeter with `bastion exec`: a service, unit and integration tests, a step that
# prints a (fake) secret, which shows as ******** in the log, and a notification step.
# Extra arguments go to `bastion exec`, e.g. scripts/demo.sh --explain.
# The exit code is bastion's: 0 success, 1 pipeline failed, 2 invalid file or options,
# 3 Docker engine unreachable, 130 interrupted.
set -euo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"

"$REPO/scripts/setup.sh"
cd "$REPO/examples/greeter"

printf '\n[demo] bastion exec in examples/greeter (.drone.yml), secrets from demo.secrets\n\n' >&2
# --branch main: the publish step runs on main only, and bastion exec would otherwise take
# the branch of this checkout, which may be a feature branch.
exec "$REPO/.venv/bin/bastion" exec --branch main --secret-file demo.secrets "$@"
