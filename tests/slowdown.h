// How many times slower than Release this build runs: ThreadSanitizer ~10x, ASan ~3x.
// A test that must check a rate scales rate and duration together by it: the same number
// of queries, the same checks, at a pace the build can keep. Speed itself is a benchmark's
// business (docs/benchmarks.md), never a test's.
#pragma once

#if defined(__SANITIZE_THREAD__)
#define RECSCHED_TEST_SLOWDOWN 10.0
#elif defined(__SANITIZE_ADDRESS__)
#define RECSCHED_TEST_SLOWDOWN 3.0
#elif defined(__has_feature)
#if __has_feature(thread_sanitizer)
#define RECSCHED_TEST_SLOWDOWN 10.0
#elif __has_feature(address_sanitizer)
#define RECSCHED_TEST_SLOWDOWN 3.0
#endif
#endif
#ifndef RECSCHED_TEST_SLOWDOWN
#define RECSCHED_TEST_SLOWDOWN 1.0
#endif

namespace recsched::testing {
inline constexpr double kSlowdown = RECSCHED_TEST_SLOWDOWN;
}  // namespace recsched::testing
