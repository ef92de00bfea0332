#include "histogram.hpp"

#include <algorithm>
#include <bit>
#include <cmath>

namespace kv::bench {

std::size_t Histogram::bucket_of(std::uint64_t value) noexcept {
  value = std::min(value, kMaxValue);
  if (value < kSubCount) return static_cast<std::size_t>(value);
  const int e = std::bit_width(value) - 1;  // >= kSubBits
  const int shift = e - kSubBits;
  const std::uint64_t sub = (value >> shift) & (kSubCount - 1);
  return static_cast<std::size_t>(kSubCount + static_cast<std::uint64_t>(shift) * kSubCount + sub);
}

std::uint64_t Histogram::bucket_low(std::size_t index) noexcept {
  if (index < kSubCount) return index;
  const std::size_t shift = (index - kSubCount) / kSubCount;
  const std::uint64_t sub = (index - kSubCount) % kSubCount;
  return (kSubCount + sub) << shift;
}

std::uint64_t Histogram::bucket_width(std::size_t index) noexcept {
  if (index < kSubCount) return 1;
  return std::uint64_t{1} << ((index - kSubCount) / kSubCount);
}

void Histogram::record_n(std::uint64_t value, std::uint64_t n) noexcept {
  if (n == 0) return;
  value = std::min(value, kMaxValue);
  counts_[bucket_of(value)] += n;
  total_ += n;
  min_ = std::min(min_, value);
  max_ = std::max(max_, value);
  sum_ += static_cast<long double>(value) * static_cast<long double>(n);
}

void Histogram::merge(const Histogram& other) noexcept {
  if (other.total_ == 0) return;
  for (std::size_t i = 0; i < kBucketCount; ++i) counts_[i] += other.counts_[i];
  total_ += other.total_;
  min_ = std::min(min_, other.min_);
  max_ = std::max(max_, other.max_);
  sum_ += other.sum_;
}

void Histogram::reset() noexcept {
  std::fill(counts_.begin(), counts_.end(), 0);
  total_ = 0;
  min_ = ~std::uint64_t{0};
  max_ = 0;
  sum_ = 0;
}

double Histogram::mean() const noexcept {
  return total_ == 0 ? 0.0 : static_cast<double>(sum_ / static_cast<long double>(total_));
}

std::uint64_t Histogram::percentile(double q) const noexcept {
  if (total_ == 0) return 0;
  q = std::clamp(q, 0.0, 1.0);
  if (q >= 1.0) return max_;
  auto rank = static_cast<std::uint64_t>(std::ceil(q * static_cast<double>(total_)));
  rank = std::clamp<std::uint64_t>(rank, 1, total_);
  std::uint64_t seen = 0;
  for (std::size_t i = 0; i < kBucketCount; ++i) {
    seen += counts_[i];
    if (seen >= rank) {
      const std::uint64_t low = bucket_low(i);
      const std::uint64_t mid = low + (bucket_width(i) - 1) / 2;
      return std::clamp(mid, min_, max_);
    }
  }
  return max_;
}

}  // namespace kv::bench
