# One ctest entry per doctest case (doctest_discover_tests), with two guards that make a
# phantom pass impossible to miss:
#   - an entry whose filter ran no test case fails: doctest prints "test cases: 0 |" when
#     its --test-case filter matches nothing (a ';' in a name once split six cases into
#     fragments that matched nothing, each counted a pass), and FAIL_REGULAR_EXPRESSION
#     turns that into a failure, in the Release suite and the sanitizer stages alike;
#   - a case that cannot run on this host (no GPU, NVML, RAPL) calls RECSCHED_SKIP
#     (tests/skip.h), which prints RECSCHED_SKIP_MARKER and its reason; ctest then reports
#     the entry skipped, never passed, and scripts/check-tests.sh lists the reasons.
# tests/guard/ builds a fixture project with this same function to prove both guards work.
include(doctest)

set(RECSCHED_SKIP_MARKER "recsched-test-skipped: ")

# recsched_discover_tests(TARGET [extra doctest_discover_tests PROPERTIES...])
function(recsched_discover_tests target)
  doctest_discover_tests(${target} TEST_PREFIX "${target}: "
    PROPERTIES
      TIMEOUT 300
      FAIL_REGULAR_EXPRESSION "test cases: +0 [|]"
      SKIP_REGULAR_EXPRESSION "${RECSCHED_SKIP_MARKER}"
      ${ARGN})
  target_compile_definitions(${target} PRIVATE RECSCHED_SKIP_MARKER="${RECSCHED_SKIP_MARKER}")
endfunction()
