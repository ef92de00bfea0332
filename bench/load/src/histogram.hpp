// A log-bucketed latency histogram (in the manner of HdrHistogram, written for kovan-bench).
//
// Values are unsigned 64-bit integers (kovan-bench records nanoseconds). Values below 128
// get one bucket each (exact). A value v >= 128 with its highest set bit at position e falls
// into one of 128 equal-width buckets that split [2^e, 2^(e+1)); a bucket therefore spans
// at most 1/128 of its lower bound. Percentiles report the bucket's midpoint (clamped to the
// exact recorded maximum), so the relative error of any reported percentile is at most
// 1/256 (< 0.4 %), inside the 1 % the load generator promises. min and max are exact.
//
// Values above kMaxValue (about 4.9 hours in nanoseconds) are clamped to it.
//
// Thread safety: a Histogram is a plain value; concurrent record() calls on one histogram
// need external synchronization. kovan-bench keeps one per thread and merges them.
#pragma once

#include <cstddef>
#include <cstdint>
#include <vector>

namespace kv::bench {

class Histogram {
 public:
  static constexpr int kSubBits = 7;  // 128 buckets per power of two
  static constexpr std::uint64_t kSubCount = std::uint64_t{1} << kSubBits;
  static constexpr int kMaxExponent = 43;  // highest bit position tracked
  static constexpr std::uint64_t kMaxValue = (std::uint64_t{1} << (kMaxExponent + 1)) - 1;
  static constexpr std::size_t kBucketCount =
      kSubCount + static_cast<std::size_t>(kMaxExponent - kSubBits + 1) * kSubCount;

  Histogram() : counts_(kBucketCount, 0) {}

  void record(std::uint64_t value) noexcept { record_n(value, 1); }
  void record_n(std::uint64_t value, std::uint64_t n) noexcept;
  // Adds every value recorded in `other`.
  void merge(const Histogram& other) noexcept;
  void reset() noexcept;

  [[nodiscard]] std::uint64_t count() const noexcept { return total_; }
  [[nodiscard]] std::uint64_t min() const noexcept { return total_ == 0 ? 0 : min_; }
  [[nodiscard]] std::uint64_t max() const noexcept { return max_; }
  [[nodiscard]] double mean() const noexcept;

  // The value at quantile q in [0, 1]: the smallest recorded bucket whose cumulative count
  // reaches ceil(q * count) (at least 1), reported as described above. 0 when empty;
  // percentile(1.0) == max().
  [[nodiscard]] std::uint64_t percentile(double q) const noexcept;

  // Bucket arithmetic, exposed for tests.
  [[nodiscard]] static std::size_t bucket_of(std::uint64_t value) noexcept;
  [[nodiscard]] static std::uint64_t bucket_low(std::size_t index) noexcept;
  [[nodiscard]] static std::uint64_t bucket_width(std::size_t index) noexcept;

 private:
  std::vector<std::uint64_t> counts_;
  std::uint64_t total_ = 0;
  std::uint64_t min_ = ~std::uint64_t{0};
  std::uint64_t max_ = 0;
  long double sum_ = 0;
};

}  // namespace kv::bench
