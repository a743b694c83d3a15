#!/usr/bin/env bash
# Set everything up (scripts/setup.sh), then run every check the project has, in this order:
#   ruff check, ruff format --check, mypy (strict), lint-imports (the architecture contracts),
#   pytest (the whole suite; arguments go to pytest: scripts/test.sh -k masking -x).
#
# All phases run even when one fails, and the script fails at the end: one run (and one CI
# run) then shows every problem at once, and a formatting slip does not hide a failing test.
# The static checks take seconds, so running pytest after them costs nothing extra. Only a
# failed set-up stops the run at once, since nothing after it could be trusted.
set -euo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="$REPO/.venv"

"$REPO/scripts/setup.sh"
cd "$REPO"

# `bench/` and `tests/` may not exist yet in a checkout (git keeps no empty folders).
lint_paths=()
for dir in src tests bench; do
  if [ -d "$dir" ]; then lint_paths+=("$dir"); fi
done

failed=()

header() { printf '\n==> %s\n' "$*"; }

# phase NAME COMMAND...: run a check, remember its name when it fails.
phase() {
  local name="$1"
  shift
  header "$name"
  if ! "$@"; then
    failed+=("$name")
  fi
}

phase "ruff check" "$VENV/bin/ruff" check "${lint_paths[@]}"
phase "ruff format --check" "$VENV/bin/ruff" format --check "${lint_paths[@]}"
phase "mypy (strict)" "$VENV/bin/mypy"
# --no-cache: leave no .import_linter_cache folder in the checkout (it takes a second anyway).
phase "lint-imports" "$VENV/bin/lint-imports" --no-cache

# The suite runs the store and the server against a real PostgreSQL too: start a throwaway
# cluster here (idempotent) so that a failure to start it is reported as its own phase.
header "PostgreSQL for the tests"
if pg_url="$("$REPO/scripts/postgres.sh" | tail -n 1)" && [ -n "$pg_url" ]; then
  export BASTION_TEST_POSTGRES_URL="$pg_url"
  echo "PostgreSQL ready on ${pg_url##*@}"
else
  failed+=("PostgreSQL start")
fi

header "pytest${*:+ $*}"
pytest_rc=0
"$VENV/bin/pytest" "$@" || pytest_rc=$?
if [ "$pytest_rc" -eq 5 ]; then
  # pytest's "no tests ran": a suite that tests nothing must not pass.
  printf '[test] pytest collected no tests (exit 5): that counts as a failure\n' >&2
  failed+=("pytest (no tests collected)")
elif [ "$pytest_rc" -ne 0 ]; then
  failed+=("pytest")
fi

echo
if [ "${#failed[@]}" -gt 0 ]; then
  joined="$(printf '%s, ' "${failed[@]}")"
  printf '[test] FAILED: %s\n' "${joined%, }" >&2
  exit 1
fi
printf '[test] all phases passed: ruff, ruff format, mypy, lint-imports, pytest\n'
