#!/usr/bin/env bash
# Builds the libFuzzer targets of tests/fuzz with clang (ASan + UBSan) into
# build-fuzz/ (or $MMREC_FUZZ_DIR), writes their seed corpora, and runs each
# target for SECONDS (default 60) one after the other. Exits 1 on any
# finding (the crashing input is left in build-fuzz/findings/), else 0.
# The last line printed is "fuzz: N passed, M failed".
#   bash scripts/fuzz.sh [SECONDS] [TARGET...]
set -uo pipefail
cd "$(dirname "$0")/.."
seconds=${1:-60}
shift || true
dir=${MMREC_FUZZ_DIR:-build-fuzz}
if ! command -v clang++ > /dev/null; then
  echo "fuzz: clang++ not found (scripts/setup.sh installs clang and libclang-rt-14-dev)"
  echo "fuzz: 0 passed, 1 failed"
  exit 1
fi
if [ ! -f "$dir/build.ninja" ]; then
  CXX=clang++ meson setup "$dir" -Dfuzz=true -Dsanitize=true -Dtests=false -Dbuildtype=debugoptimized > /dev/null \
    || { echo "fuzz: meson setup failed"; echo "fuzz: 0 passed, 1 failed"; exit 1; }
fi
ninja -C "$dir" -j2 tests/fuzz/make_seeds $(printf ' tests/fuzz/fuzz_%s' safetensors train_config tokenizer train_state token_cache) > "$dir/ninja.log" 2>&1 \
  || { tail -30 "$dir/ninja.log"; echo "fuzz: build failed"; echo "fuzz: 0 passed, 1 failed"; exit 1; }
rm -rf "$dir/seeds" && "$dir/tests/fuzz/make_seeds" "$dir/seeds" || { echo "fuzz: 0 passed, 1 failed"; exit 1; }
targets=("$@")
[ ${#targets[@]} -gt 0 ] || targets=(safetensors train_config tokenizer train_state token_cache)
export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1:allocator_may_return_null=1}
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-halt_on_error=1:print_stacktrace=1}
export OMP_WAIT_POLICY=PASSIVE
passed=0 failed=0
for t in "${targets[@]}"; do
  corpus="$dir/corpus/$t"
  mkdir -p "$corpus" "$dir/findings/$t"
  log="$dir/fuzz_$t.log"
  # -rss_limit_mb and -malloc_limit_mb make a loader that balloons a finding.
  if "$dir/tests/fuzz/fuzz_$t" "$corpus" "$dir/seeds/$t" -max_total_time="$seconds" -max_len=8192 \
       -rss_limit_mb=2048 -malloc_limit_mb=1024 -timeout=10 -print_final_stats=1 \
       -artifact_prefix="$dir/findings/$t/" > "$log" 2>&1; then
    echo "fuzz $t: ok, $(grep -o 'stat::number_of_executed_units: *[0-9]*' "$log" | grep -o '[0-9]*$') runs in ${seconds} s"
    passed=$((passed + 1))
  else
    echo "fuzz $t: FINDING (log $log, input in $dir/findings/$t/)"
    grep -m1 -A12 -E "ERROR: |runtime error|==ERROR|deadly signal|out-of-memory|timeout" "$log" | head -20
    failed=$((failed + 1))
  fi
done
echo "fuzz: $passed passed, $failed failed"
[ $failed -eq 0 ]
