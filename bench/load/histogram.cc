#include "bench/load/histogram.h"

#include <algorithm>
#include <bit>
#include <cmath>
#include <stdexcept>

namespace recsched::load {

Histogram::Histogram(int precision_bits) : precision_bits_(precision_bits) {
  if (precision_bits < 1 || precision_bits > 16)
    throw std::invalid_argument("histogram precision must be 1..16 bits");
  sub_buckets_ = uint64_t{1} << precision_bits;
  // Exact buckets for [0, 2^p), then 2^p buckets for each of the powers p .. 63.
  counts_.assign(sub_buckets_ * size_t(64 - precision_bits + 1), 0);
}

size_t Histogram::index_of(uint64_t value) const {
  if (value < sub_buckets_) return size_t(value);
  const int msb = 63 - std::countl_zero(value);  // >= p
  const int shift = msb - precision_bits_;
  // value >> shift is in [2^p, 2^(p+1)): the bucket within this power of two.
  return size_t(sub_buckets_ * uint64_t(shift + 1) + ((value >> shift) - sub_buckets_));
}

uint64_t Histogram::bucket_lower(size_t index) const {
  if (index < sub_buckets_) return index;
  const uint64_t shift = index / sub_buckets_ - 1;
  const uint64_t within = index % sub_buckets_;
  return (sub_buckets_ + within) << shift;
}

uint64_t Histogram::bucket_upper(size_t index) const {
  if (index < sub_buckets_) return index + 1;
  const uint64_t shift = index / sub_buckets_ - 1;
  const uint64_t lower = bucket_lower(index), width = uint64_t{1} << shift;
  return lower > ~uint64_t{0} - width ? ~uint64_t{0} : lower + width;  // the top one saturates
}

void Histogram::record(uint64_t value) {
  ++counts_[index_of(value)];
  if (count_ == 0 || value < min_) min_ = value;
  max_ = std::max(max_, value);
  ++count_;
  sum_ += double(value);
}

void Histogram::merge(const Histogram& other) {
  if (other.precision_bits_ != precision_bits_)
    throw std::invalid_argument("merging histograms of different precision");
  if (other.count_ == 0) return;
  for (size_t i = 0; i < counts_.size(); ++i) counts_[i] += other.counts_[i];
  min_ = count_ == 0 ? other.min_ : std::min(min_, other.min_);
  max_ = std::max(max_, other.max_);
  count_ += other.count_;
  sum_ += other.sum_;
}

void Histogram::reset() {
  std::fill(counts_.begin(), counts_.end(), 0);
  count_ = 0;
  min_ = max_ = 0;
  sum_ = 0;
}

double Histogram::percentile(double q) const {
  if (count_ == 0) return 0.0;
  q = std::clamp(q, 0.0, 100.0);
  const uint64_t rank = std::max<uint64_t>(1, uint64_t(std::ceil(q / 100.0 * double(count_))));
  uint64_t seen = 0;
  for (size_t i = 0; i < counts_.size(); ++i) {
    seen += counts_[i];
    if (seen >= rank) {
      const uint64_t lo = bucket_lower(i), hi = bucket_upper(i);
      // Exact buckets (width 1) hold a single value.
      const double mid = hi - lo == 1 ? double(lo) : (double(lo) + double(hi)) / 2.0;
      return std::clamp(mid, double(min_), double(max_));
    }
  }
  return double(max_);
}

}  // namespace recsched::load
