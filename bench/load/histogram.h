// A log-linear latency histogram with a bounded relative error (HdrHistogram's idea, small):
// values below 2^p are kept exactly; above, each power of two [2^m, 2^(m+1)) is cut into
// 2^p equal buckets, so a bucket is at most 1/2^p of its lower bound wide. A percentile is
// reported as its bucket's midpoint (clipped to the exact min and max), which is within
// relative_error() = 1/2^(p+1) of the true value. Standard library only.
#pragma once

#include <cstddef>
#include <cstdint>
#include <vector>

namespace recsched::load {

class Histogram {
 public:
  /// `precision_bits` p in [1, 16]: 2^p buckets per power of two (7: error <= 0.39 %).
  explicit Histogram(int precision_bits = 7);

  /// Records one value (any unit; the load generator uses nanoseconds).
  void record(uint64_t value);
  /// Adds another histogram's counts; both must have the same precision.
  void merge(const Histogram& other);
  void reset();

  uint64_t count() const { return count_; }
  uint64_t min() const { return count_ ? min_ : 0; }
  uint64_t max() const { return max_; }
  double mean() const { return count_ ? sum_ / double(count_) : 0.0; }
  /// The q-th percentile, q in [0, 100]: the value v with at least ceil(q/100 x count)
  /// recorded values <= v (nearest rank), reported as its bucket's midpoint; 0 when empty.
  double percentile(double q) const;
  /// Bound on |percentile(q) - exact| / exact: 1 / 2^(p+1).
  double relative_error() const { return 1.0 / double(uint64_t{2} << precision_bits_); }

  /// Bucket index of a value, and a bucket's [lower, upper) range (exposed for tests; the
  /// top bucket's upper bound saturates at 2^64 - 1).
  size_t index_of(uint64_t value) const;
  uint64_t bucket_lower(size_t index) const;
  uint64_t bucket_upper(size_t index) const;
  size_t bucket_count() const { return counts_.size(); }

 private:
  int precision_bits_;
  uint64_t sub_buckets_;  // 2^p
  std::vector<uint64_t> counts_;
  uint64_t count_ = 0;
  uint64_t min_ = 0, max_ = 0;
  double sum_ = 0;
};

}  // namespace recsched::load
