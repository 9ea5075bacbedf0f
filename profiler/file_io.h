// Internal to profiler/: reading a whole file with POSIX calls, keeping errno, so each
// caller words its own error (sysfs counters, the profile cache).
#pragma once

#include <string>

namespace recsched::profiler {

/// Reads all of `path` into `text`. Returns 0, or the errno of the failing open or read
/// (retrying EINTR); `text` is then unspecified.
int read_whole_file(const std::string& path, std::string& text);

}  // namespace recsched::profiler
