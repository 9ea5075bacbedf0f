#!/usr/bin/env bash
# The guard's own test: builds tests/guard/fixture (a case name with a ';', a case that
# skips) and checks that
#   1. scripts/check-tests.sh discovery fails, naming the ';' case and both fragments;
#   2. under recsched_discover_tests the fragments fail in ctest and the skip is a skip;
#   3. under plain doctest_discover_tests the fragments "pass" and the skip "passes", and
#      scripts/check-tests.sh results catches them, and lists each real skip (the
#      RECSCHED_SKIP one, an exit 77) with its reason.
# Usage: guard_test.sh SOURCE_DIR WORK_DIR
set -uo pipefail
src="$1" work="$2"
fail() { echo "guard_test: FAILED: $*"; exit 1; }
expect() {  # TEXT-TO-FIND, FILE
  grep -qF -- "$1" "$2" || { echo "--- $2:"; cat "$2"; fail "'$1' not in $2"; }
}
rm -rf "$work" && mkdir -p "$work"
cmake -S "$src/tests/guard/fixture" -B "$work/build" -G Ninja -DCMAKE_BUILD_TYPE=Debug \
  -DRECSCHED_TESTS_DIR="$src/tests" >"$work/configure.log" 2>&1 || { cat "$work/configure.log"; fail "configure"; }
cmake --build "$work/build" >"$work/build.log" 2>&1 || { cat "$work/build.log"; fail "build"; }

# 1. Discovery.
bash "$src/scripts/check-tests.sh" discovery "$work/build" >"$work/discovery.log" 2>&1
[ $? -eq 1 ] || { cat "$work/discovery.log"; fail "discovery did not fail on the ';' name"; }
expect "test case 'one half; the other half' has a ';'" "$work/discovery.log"
expect "test case 'one half; the other half' has no ctest entry of its own" "$work/discovery.log"
expect "filters on 'one half', which names no test case" "$work/discovery.log"
expect "filters on ' the other half', which names no test case" "$work/discovery.log"

# 2. and 3. Run both; ctest must fail (the guarded fragments).
ctest --test-dir "$work/build" --output-junit "$work/junit.xml" >"$work/ctest.log" 2>&1 &&
  fail "ctest passed with the fragments"
grep -E "guarded:one half .*(Failed|Passed)" "$work/ctest.log" | grep -q Failed ||
  { cat "$work/ctest.log"; fail "guarded 'one half' did not fail"; }
grep -E "guarded: the other half .*(Failed|Passed)" "$work/ctest.log" | grep -q Failed ||
  { cat "$work/ctest.log"; fail "guarded ' the other half' did not fail"; }
grep -E "guarded:a case that needs a device this host lacks .*Skipped" -q "$work/ctest.log" ||
  { cat "$work/ctest.log"; fail "the skipping case was not reported skipped"; }
grep -E "guarded:a case that runs and passes .*Passed" -q "$work/ctest.log" ||
  { cat "$work/ctest.log"; fail "the good case did not pass"; }
grep -E "plain:one half .*Passed" -q "$work/ctest.log" ||
  { cat "$work/ctest.log"; fail "plain 'one half' did not pass (the fixture no longer shows the old bug)"; }

bash "$src/scripts/check-tests.sh" results "$work/junit.xml" >"$work/results.log" 2>&1
[ $? -eq 1 ] || { cat "$work/results.log"; fail "results did not fail on the phantom passes"; }
expect "check-tests: plain:one half passed having run no test case" "$work/results.log"
expect "check-tests: plain: the other half passed having run no test case" "$work/results.log"
expect "check-tests: 2 of 9 tests skipped" "$work/results.log"
expect "check-tests:   guarded:a case that needs a device this host lacks: no frobnicator on this host" "$work/results.log"
expect "check-tests:   exits 77: no widget on this host" "$work/results.log"
expect "check-tests: plain:a case that needs a device this host lacks said it skipped (no frobnicator on this host) but ctest counted it passed" "$work/results.log"
echo "guard_test: the guards caught the ';' name (discovery, ctest, results) and reported the skip"
