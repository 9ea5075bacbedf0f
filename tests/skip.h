// A test case that needs what this host lacks (a GPU, NVML, RAPL) says why and returns:
// RECSCHED_SKIP prints RECSCHED_SKIP_MARKER and the reason, ctest reports the entry
// skipped (SKIP_REGULAR_EXPRESSION, tests/cmake/RecschedDoctest.cmake), and
// scripts/check-tests.sh lists every skip with its reason after a run. Use it at the top
// of a case, before any check: a skipped entry's failures are not reported.
#pragma once

#include <cstdio>
#include <string>

#ifndef RECSCHED_SKIP_MARKER
#error "RECSCHED_SKIP_MARKER comes from recsched_discover_tests (tests/cmake/RecschedDoctest.cmake)"
#endif

namespace recsched::testing {

inline void announce_skip(const std::string& why) {
  std::printf("%s%s\n", RECSCHED_SKIP_MARKER, why.c_str());
  std::fflush(stdout);
}

}  // namespace recsched::testing

#define RECSCHED_SKIP(why)                   \
  do {                                       \
    ::recsched::testing::announce_skip(why); \
    return;                                  \
  } while (0)
