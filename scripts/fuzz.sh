#!/usr/bin/env bash
# Builds the libFuzzer harnesses (tests/fuzz, clang, ASan+UBSan) into ${FUZZ_BUILD_DIR:-build-fuzz}
# and fuzzes each for --seconds N (default 600: the documented long run; CI runs 20).
# Usage: scripts/fuzz.sh [--seconds N] [--parallel P] [--no-build] [harness ...]
# Each harness first replays its seed corpus (tests/fuzz/corpus/<harness>, never written
# to), then fuzzes into a working corpus in <build>/corpus/<harness> seeded from it, with
# its dictionary (tests/fuzz/dict/), leak detection, a 10 s per-input timeout and a 2 GiB
# memory limit. A crash, leak, timeout or out-of-memory input is saved under
# <build>/artifacts/<harness>/ and fails the run. One line per harness: executions,
# coverage (cov: edges, ft: features), corpus size, result, time.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT="$PWD"
BUILD="${FUZZ_BUILD_DIR:-build-fuzz}"
SECONDS_EACH=600
PARALLEL=1
BUILD_FIRST=1
HARNESSES=()
while [ $# -gt 0 ]; do
  case "$1" in
    --seconds) SECONDS_EACH="$2"; shift 2 ;;
    --parallel) PARALLEL="$2"; shift 2 ;;
    --no-build) BUILD_FIRST=0; shift ;;
    -h|--help) sed -n '2,11p' "$0"; exit 0 ;;
    -*) echo "fuzz.sh: unknown option $1" >&2; exit 2 ;;
    *) HARNESSES+=("$1"); shift ;;
  esac
done
ALL=(fuzz_kserve_json fuzz_kserve_binary fuzz_config fuzz_model_spec fuzz_safetensors
     fuzz_policy_body fuzz_http_request)
[ ${#HARNESSES[@]} -eq 0 ] && HARNESSES=("${ALL[@]}")

declare -A DICT=(
  [fuzz_kserve_json]=kserve [fuzz_kserve_binary]=kserve [fuzz_config]=config
  [fuzz_model_spec]=model_spec [fuzz_safetensors]=safetensors [fuzz_policy_body]=policy
  [fuzz_http_request]=http)

if [ "$BUILD_FIRST" = 1 ]; then
  start=$SECONDS
  bash scripts/install-deps.sh --fuzz
  # clang 16: clang 14 cannot capture structured bindings in lambdas (P1091), which the code does.
  CXX_CLANG="${FUZZ_CXX:-$(command -v clang++-16 || true)}"
  # OpenMP: GCC's libgomp, the runtime oneDNN uses, so set_blas_threads reaches it (clang's
  # own libomp would be a second runtime; libomp-16-dev is there only for omp.h).
  [ -n "$CXX_CLANG" ] || { echo "fuzz.sh: clang++-16 not found (scripts/install-deps.sh --fuzz installs it)" >&2; exit 1; }
  mkdir -p "$BUILD"
  cmake -S . -B "$BUILD" -G Ninja -DCMAKE_CXX_COMPILER="$CXX_CLANG" -DCMAKE_BUILD_TYPE=Debug \
    -DCMAKE_CXX_FLAGS_DEBUG="-O1 -gline-tables-only" -DRECSCHED_FUZZ=ON -DRECSCHED_BUILD_TESTS=OFF \
    -DRECSCHED_BUILD_BENCH=OFF -DRECSCHED_WITH_CUDA=OFF \
    -DOpenMP_CXX_FLAGS=-fopenmp=libgomp -DOpenMP_CXX_LIB_NAMES=gomp \
    -DOpenMP_gomp_LIBRARY="$(gcc -print-file-name=libgomp.so)" >"$BUILD/configure.log" 2>&1 ||
    { cat "$BUILD/configure.log"; exit 1; }
  cmake --build "$BUILD" -j "$(nproc)" --target "${HARNESSES[@]}" >"$BUILD/build.log" 2>&1 ||
    { tail -n 60 "$BUILD/build.log"; exit 1; }
  echo "fuzz.sh: built ${#HARNESSES[@]} harnesses in $((SECONDS - start)) s ($BUILD, $CXX_CLANG)"
fi

export ASAN_OPTIONS="detect_leaks=1"
# Stacks with function names and lines: llvm-symbolizer where installed, else binutils.
if [ -z "${ASAN_SYMBOLIZER_PATH:-}" ]; then
  ASAN_SYMBOLIZER_PATH="$(command -v llvm-symbolizer-16 || command -v llvm-symbolizer || command -v addr2line || true)"
  export ASAN_SYMBOLIZER_PATH
fi
export UBSAN_OPTIONS="print_stacktrace=1:halt_on_error=1"

# One harness: replay the seeds, then fuzz. Writes <build>/logs/<harness>.log and a
# one-line result to <build>/logs/<harness>.result.
fuzz_one() {
  local h="$1"
  local bin="$BUILD/tests/fuzz/$h" seeds="$ROOT/tests/fuzz/corpus/$h"
  local work="$BUILD/corpus/$h" art="$BUILD/artifacts/$h/" log="$BUILD/logs/$h.log"
  mkdir -p "$work" "$art" "$BUILD/logs"
  local t0=$SECONDS rc=0
  {
    "$bin" -runs=0 -detect_leaks=1 -artifact_prefix="$art" "$seeds" &&
      nice -n 10 "$bin" -max_total_time="$SECONDS_EACH" -timeout=10 -rss_limit_mb=2048 \
        -malloc_limit_mb=2048 -detect_leaks=1 -print_final_stats=1 \
        -dict="$ROOT/tests/fuzz/dict/${DICT[$h]}.dict" -artifact_prefix="$art" "$work" "$seeds"
  } >"$log" 2>&1 || rc=$?
  local t=$((SECONDS - t0))
  local last execs cov ft corp
  last="$(grep -E '^#[0-9]+[[:space:]]+DONE' "$log" | tail -n 1 || true)"
  execs="$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -n 1)"
  cov="$(sed -n 's/.* cov: \([0-9]*\).*/\1/p' <<<"$last")"
  ft="$(sed -n 's/.* ft: \([0-9]*\).*/\1/p' <<<"$last")"
  corp="$(find "$work" -type f | wc -l)"
  local result="ok"
  if [ "$rc" -ne 0 ]; then
    result="FAILED (exit $rc; $(grep -m1 -oE 'ERROR: [A-Za-z]+: [a-z-]+|runtime error: .*|FUZZ_CHECK failed: .*|ALARM: .*|out-of-memory.*|Leak.*' "$log" || echo 'see log'); log $log)"
  fi
  printf 'fuzz.sh: %-20s execs %-10s cov %-6s ft %-7s corpus %-6s %s in %ss\n' \
    "$h" "${execs:-?}" "${cov:-?}" "${ft:-?}" "$corp" "$result" "$t" >"$BUILD/logs/$h.result"
  [ "$rc" -eq 0 ]
}

start=$SECONDS
failed=0
running=0
for h in "${HARNESSES[@]}"; do
  fuzz_one "$h" &
  running=$((running + 1))
  if [ "$running" -ge "$PARALLEL" ]; then
    wait -n || failed=1
    running=$((running - 1))
  fi
done
while [ "$running" -gt 0 ]; do
  wait -n || failed=1
  running=$((running - 1))
done
for h in "${HARNESSES[@]}"; do cat "$BUILD/logs/$h.result"; done
echo "fuzz.sh: ${#HARNESSES[@]} harnesses, ${SECONDS_EACH} s each, $((SECONDS - start)) s in all"
if [ "$failed" -ne 0 ]; then
  echo "fuzz.sh: FAILED: a harness crashed, leaked, hung or ran out of memory (inputs in $BUILD/artifacts/)"
  exit 1
fi
