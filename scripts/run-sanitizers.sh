#!/usr/bin/env bash
# The test suite under the sanitizers, and a short fuzzing run: CI's second half (.ci/run
# calls it after scripts/run-tests.sh). Each build has its own directory, CPU only (no CUDA
# runner), Debug at -O1 -g1:
#   asan  build-asan  ASan + UBSan (LeakSanitizer on): the whole ctest suite
#   tsan  build-tsan  TSan: the whole ctest suite (suppressions: tests/sanitizers/tsan.supp)
#   fuzz  build-fuzz  clang + libFuzzer: every harness over its seed corpus, then
#                     FUZZ_SECONDS (default 20) of fuzzing each, nproc at a time (scripts/fuzz.sh)
# Usage: scripts/run-sanitizers.sh [asan] [tsan] [fuzz]   (default: all three)
# Every test of the suite runs and counts except the .deb check (label "package") and the
# HAProxy fleet test (label "fleet", which runs in the main suite); bench/
# is built, since recsched-load's tests (load_test, load_daemon_test) are part of the
# suite. ctest's
# own output goes to <build>/ctest.log (printed when a test fails), so the main
# suite's ctest summary stays the last one CI prints; each stage prints one result line
# and its time. Exits non-zero if any stage fails.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT="$PWD"
STAGES=("$@")
[ ${#STAGES[@]} -eq 0 ] && STAGES=(asan tsan fuzz)
JOBS="$(nproc)"

bash scripts/install-deps.sh

# -O1 -g1 (line tables, as OSS-Fuzz's -gline-tables-only): stacks keep file:line, and the
# build takes about 30 % less time than -O1 -g.
configure_build() {  # DIR, extra cmake arguments...
  local dir="$1"
  shift
  mkdir -p "$dir"
  cmake -S . -B "$dir" -G Ninja -DCMAKE_BUILD_TYPE=Debug -DCMAKE_CXX_FLAGS_DEBUG="-O1 -g1" \
    -DRECSCHED_BUILD_BENCH=ON -DRECSCHED_WITH_CUDA=OFF "$@" >"$dir/configure.log" 2>&1 ||
    { cat "$dir/configure.log"; return 1; }
  cmake --build "$dir" -j "$JOBS" >"$dir/build.log" 2>&1 ||
    { tail -n 60 "$dir/build.log"; return 1; }
}

REPORT_RE='ERROR: (AddressSanitizer|LeakSanitizer)|runtime error:|WARNING: ThreadSanitizer'

# ctest into DIR/ctest.log; one line of result, the failures' output if any. Every test
# counts under every sanitizer: the ones that check a rate scale rate and duration by the
# build's slowdown (tests/slowdown.h), so none is set aside. The guard
# (scripts/check-tests.sh) runs here too: one ctest entry per doctest case before, the
# skipped tests and their reasons after.
run_ctest() {  # NAME, DIR, [command prefix...]
  local name="$1" dir="$2"
  shift 2
  bash scripts/check-tests.sh discovery "$dir" >"$dir/discovery.log" 2>&1 ||
    { echo "run-sanitizers: $name: FAILED: test discovery:"; cat "$dir/discovery.log"; return 1; }
  local rc=0
  # -LE package: the .deb check (packaging/check-deb.sh) rightly refuses a package whose
  # binaries link libasan or libtsan; a sanitizer build is not a shippable package.
  # -LE fleet: three daemons, HAProxy and a load through it measure shares and restarts
  # in wall time; the agent and the drain they use run here in daemon_test.
  "$@" ctest --test-dir "$dir" --output-on-failure -j "$JOBS" -LE "package|fleet" \
    --output-junit "$ROOT/$dir/ctest-junit.xml" --test-output-size-passed 4194304 \
    >"$dir/ctest.log" 2>&1 || rc=$?
  local summary
  summary="$(grep -E '^[0-9]+% tests passed' "$dir/ctest.log" | tail -n 1 || true)"
  if [ "$rc" -ne 0 ]; then
    echo "run-sanitizers: $name: FAILED; ctest output:"
    sed -n '/The following tests FAILED/,$p;/\*\*\*Failed\|\*\*\*Exception\|Timeout/p' "$dir/ctest.log" | head -n 40
    grep -n -A 30 -E "$REPORT_RE" "$dir/ctest.log" | head -n 200 || true
    return 1
  fi
  # Not in ctest's own words, so CI's reading of the main suite's summary is not confused.
  local total
  total="$(sed -n 's/.* out of \([0-9]*\).*/\1/p' <<<"$summary")"
  echo "run-sanitizers: $name: ${total:-?} tests, none failed (log: $dir/ctest.log)"
  bash scripts/check-tests.sh results "$ROOT/$dir/ctest-junit.xml" | sed "s/^check-tests:/run-sanitizers: $name:/"
  return "${PIPESTATUS[0]}"
}

# Sanitizer settings for every test and the binaries they start.
export ASAN_OPTIONS="detect_leaks=1:check_initialization_order=1:detect_stack_use_after_return=1:strict_init_order=1"
export UBSAN_OPTIONS="print_stacktrace=1:halt_on_error=1"
export TSAN_OPTIONS="halt_on_error=0:second_deadlock_stack=1:suppressions=$ROOT/tests/sanitizers/tsan.supp"

# TSan's runtime needs a fixed layout; kernels with high mmap randomness break it, so
# the tests run with address randomisation off where setarch allows.
NORAND=()
if setarch "$(uname -m)" -R true 2>/dev/null; then NORAND=(setarch "$(uname -m)" -R); fi

# CPU seconds (user + sys) of this script's finished children: with the wall times, it
# shows how much of a stage's time went to other work on a shared machine.
cpu_s() { awk '{ printf "%d", ($16 + $17) / 100 }' /proc/$$/stat 2>/dev/null || echo 0; }
mmss() { echo "$(($1 / 60))m$(($1 % 60))s"; }

failed=()
times=()
for stage in "${STAGES[@]}"; do
  start=$SECONDS
  cpu0=$(cpu_s)
  built=0 built_cpu=$cpu0
  ok=1
  case "$stage" in
    asan)
      echo "run-sanitizers: ASan+UBSan: building build-asan"
      configure_build build-asan -DRECSCHED_SANITIZE=address,undefined || ok=0
      built=$((SECONDS - start)) built_cpu=$(cpu_s)
      [ "$ok" = 1 ] && { run_ctest "ASan+UBSan" build-asan || ok=0; }
      ;;
    tsan)
      echo "run-sanitizers: TSan: building build-tsan"
      configure_build build-tsan -DRECSCHED_SANITIZE=thread || ok=0
      built=$((SECONDS - start)) built_cpu=$(cpu_s)
      [ "$ok" = 1 ] && { run_ctest "TSan" build-tsan "${NORAND[@]}" || ok=0; }
      ;;
    fuzz)
      bash scripts/fuzz.sh --seconds "${FUZZ_SECONDS:-20}" --parallel "$JOBS" || ok=0
      ;;
    *)
      echo "run-sanitizers: unknown stage '$stage' (asan, tsan, fuzz)" >&2
      exit 2
      ;;
  esac
  t=$((SECONDS - start)) cpu=$(($(cpu_s) - cpu0))
  if [ "$stage" = fuzz ]; then
    times+=("fuzz $(mmss "$t") wall, ${cpu} s CPU")
  else
    times+=("$stage $(mmss "$t") wall, ${cpu} s CPU (build $(mmss "$built"), $((built_cpu - cpu0)) s CPU)")
  fi
  [ "$ok" = 1 ] || failed+=("$stage")
done

echo "run-sanitizers: stage times: ${times[*]/%/;}"
if [ ${#failed[@]} -ne 0 ]; then
  echo "run-sanitizers: FAILED: ${failed[*]}"
  exit 1
fi
echo "run-sanitizers: all stages passed: ${STAGES[*]}"
