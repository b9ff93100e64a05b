#!/usr/bin/env bash
# Runs one phase of `make install` / `make test` and prints how long it took, so the CI log shows each
# generation's time:
#
#   scripts/phase.sh [--needs PATH] LABEL COMMAND [ARGS...]
#
# --needs PATH: skip the phase (successfully) while PATH does not exist, e.g. a test directory not written yet.
# When COMMAND is pytest, "no tests collected" (its exit status 5) counts as success too.
set -uo pipefail
needs=""
if [ "${1:-}" = --needs ]; then needs="$2"; shift 2; fi
label="$1"; shift
started=$SECONDS
report() { printf '==> %s: %s in %d s\n' "$label" "$1" $((SECONDS - started)); }

if [ -n "$needs" ] && [ ! -e "$needs" ]; then
  report "skipped ($needs does not exist)"
  exit 0
fi
printf '==> %s: %s\n' "$label" "$*"
"$@"
rc=$?
if [ "$rc" = 5 ] && [ "$(basename "$1")" = pytest ]; then
  report "no tests collected (ok)"
  exit 0
fi
if [ "$rc" = 0 ]; then report ok; else report "FAILED (exit $rc)"; fi
exit "$rc"
