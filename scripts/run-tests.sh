#!/usr/bin/env bash
# The README's test command: installs dependencies, builds, runs the whole suite.
# Around ctest, scripts/check-tests.sh guards against tests that count without testing:
# before, every doctest case must be exactly one ctest entry; after, it prints how many
# tests were skipped and why, and fails on an entry that passed having run no case.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install-deps.sh
bash scripts/build.sh
BUILD="${BUILD_DIR:-build}"
bash scripts/check-tests.sh discovery "$BUILD"
junit="$(cd "$BUILD" && pwd)/ctest-junit.xml"
rc=0
# A passed test's output is kept whole (ctest cuts it at 1 KiB by default) so that the
# guard reads doctest's closing summary in the JUnit file.
ctest --test-dir "$BUILD" --output-on-failure -j "$(nproc)" --output-junit "$junit" \
  --test-output-size-passed 4194304 || rc=$?
bash scripts/check-tests.sh results "$junit" || rc=1
exit "$rc"
