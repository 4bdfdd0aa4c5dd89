#!/usr/bin/env bash
# Runs every test suite of the build in build/ (or $MMREC_BUILD_DIR) and
# prints the totals as the last line: "tests: N passed, M failed".
set -uo pipefail
cd "$(dirname "$0")/.."
build=${MMREC_BUILD_DIR:-build}
# Idle OpenMP threads (oneDNN) must not spin against oneTBB work.
export OMP_WAIT_POLICY=${OMP_WAIT_POLICY:-PASSIVE}
meson test -C "$build" --num-processes 1 --print-errorlogs "$@"
status=$?
python3 scripts/count_tests.py "$build/meson-logs/testlog.json"
counted=$?
[ $status -eq 0 ] && [ $counted -eq 0 ]
