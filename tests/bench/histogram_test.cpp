// The latency histogram: bucket arithmetic, percentiles against exact quantiles of known
// distributions (<= 1 % relative error), merging.
#include "histogram.hpp"

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <random>
#include <vector>

namespace kv::bench {
namespace {

// Exact quantile with the same rank rule as Histogram::percentile: the ceil(q*n)-th
// smallest value (1-based).
std::uint64_t exact_quantile(std::vector<std::uint64_t> sorted, double q) {
  const auto n = sorted.size();
  auto rank = static_cast<std::size_t>(std::ceil(q * static_cast<double>(n)));
  rank = std::clamp<std::size_t>(rank, 1, n);
  return sorted[rank - 1];
}

void expect_within_one_percent(const std::vector<std::uint64_t>& values, const char* what) {
  Histogram h;
  for (auto v : values) h.record(v);
  std::vector<std::uint64_t> sorted = values;
  std::sort(sorted.begin(), sorted.end());
  for (double q : {0.0, 0.1, 0.5, 0.9, 0.99, 0.999, 0.9999, 1.0}) {
    const double exact = static_cast<double>(exact_quantile(sorted, q));
    const double got = static_cast<double>(h.percentile(q));
    EXPECT_LE(std::abs(got - exact), 0.01 * exact + 0.5)
        << what << " q=" << q << " exact=" << exact << " got=" << got;
  }
  EXPECT_EQ(h.max(), sorted.back()) << what;
  EXPECT_EQ(h.min(), sorted.front()) << what;
  EXPECT_EQ(h.count(), values.size()) << what;
}

TEST(Histogram, BucketsCoverEveryValueWithBoundedWidth) {
  std::mt19937_64 rng(7);
  std::vector<std::uint64_t> probes;
  for (std::uint64_t v = 0; v < 5000; ++v) probes.push_back(v);
  for (int e = 8; e <= Histogram::kMaxExponent; ++e) {
    const std::uint64_t base = std::uint64_t{1} << e;
    probes.push_back(base - 1);
    probes.push_back(base);
    probes.push_back(base + 1);
    for (int i = 0; i < 200; ++i) probes.push_back(base + rng() % base);
  }
  std::size_t prev_index = 0;
  std::uint64_t prev_value = 0;
  std::sort(probes.begin(), probes.end());
  for (auto v : probes) {
    const std::size_t i = Histogram::bucket_of(v);
    ASSERT_LT(i, Histogram::kBucketCount) << v;
    const std::uint64_t low = Histogram::bucket_low(i);
    const std::uint64_t width = Histogram::bucket_width(i);
    ASSERT_LE(low, v);
    ASSERT_LT(v, low + width);
    if (v >= Histogram::kSubCount) {
      ASSERT_LE(static_cast<double>(width) / static_cast<double>(low), 1.0 / 128 + 1e-12) << v;
    } else {
      ASSERT_EQ(width, 1u);
    }
    if (v > prev_value) {
      ASSERT_GE(i, prev_index) << "buckets must be monotonic at " << v;
    }
    prev_index = i;
    prev_value = v;
  }
}

TEST(Histogram, SmallValuesAreExact) {
  Histogram h;
  for (std::uint64_t v = 1; v <= 100; ++v) h.record(v);
  EXPECT_EQ(h.percentile(0.5), 50u);
  EXPECT_EQ(h.percentile(0.9), 90u);
  EXPECT_EQ(h.percentile(0.99), 99u);
  EXPECT_EQ(h.percentile(1.0), 100u);
  EXPECT_EQ(h.percentile(0.0), 1u);
  EXPECT_DOUBLE_EQ(h.mean(), 50.5);
}

TEST(Histogram, UniformDistributionWithinOnePercent) {
  std::mt19937_64 rng(1);
  std::uniform_int_distribution<std::uint64_t> d(1000, 10'000'000);
  std::vector<std::uint64_t> v(200'000);
  for (auto& x : v) x = d(rng);
  expect_within_one_percent(v, "uniform");
}

TEST(Histogram, ExponentialDistributionWithinOnePercent) {
  std::mt19937_64 rng(2);
  std::exponential_distribution<double> d(1.0 / 150'000.0);  // mean 150 us in ns
  std::vector<std::uint64_t> v(200'000);
  for (auto& x : v) x = static_cast<std::uint64_t>(d(rng)) + 1;
  expect_within_one_percent(v, "exponential");
}

TEST(Histogram, LogNormalHeavyTailWithinOnePercent) {
  std::mt19937_64 rng(3);
  std::lognormal_distribution<double> d(std::log(100'000.0), 1.5);
  std::vector<std::uint64_t> v(200'000);
  for (auto& x : v) x = static_cast<std::uint64_t>(d(rng));
  expect_within_one_percent(v, "lognormal");
}

TEST(Histogram, KnownBimodalPercentiles) {
  // 99 % at 100 us, 1 % at 10 ms: p50 and p90 ~ 100 us, p99 ~ 100 us (rank 99 000 of
  // 100 000 is still in the low mode), p99.9 ~ 10 ms.
  Histogram h;
  h.record_n(100'000, 99'000);
  h.record_n(10'000'000, 1'000);
  auto near = [](std::uint64_t got, double want) {
    return std::abs(static_cast<double>(got) - want) <= 0.01 * want;
  };
  EXPECT_TRUE(near(h.percentile(0.5), 100'000)) << h.percentile(0.5);
  EXPECT_TRUE(near(h.percentile(0.99), 100'000)) << h.percentile(0.99);
  EXPECT_TRUE(near(h.percentile(0.991), 10'000'000)) << h.percentile(0.991);
  EXPECT_TRUE(near(h.percentile(0.999), 10'000'000)) << h.percentile(0.999);
  EXPECT_EQ(h.max(), 10'000'000u);
}

TEST(Histogram, MergeEqualsRecordingEverythingInOne) {
  std::mt19937_64 rng(4);
  std::exponential_distribution<double> d(1.0 / 50'000.0);
  Histogram all, a, b;
  for (int i = 0; i < 50'000; ++i) {
    const auto v = static_cast<std::uint64_t>(d(rng));
    all.record(v);
    (i % 3 == 0 ? a : b).record(v);
  }
  a.merge(b);
  EXPECT_EQ(a.count(), all.count());
  EXPECT_EQ(a.min(), all.min());
  EXPECT_EQ(a.max(), all.max());
  for (double q : {0.5, 0.9, 0.99, 0.999}) EXPECT_EQ(a.percentile(q), all.percentile(q)) << q;
  Histogram empty;
  a.merge(empty);
  EXPECT_EQ(a.count(), all.count());
}

TEST(Histogram, EmptyAndClamped) {
  Histogram h;
  EXPECT_EQ(h.percentile(0.99), 0u);
  EXPECT_EQ(h.max(), 0u);
  EXPECT_EQ(h.min(), 0u);
  h.record(~std::uint64_t{0});
  EXPECT_EQ(h.max(), Histogram::kMaxValue);
  EXPECT_EQ(h.percentile(0.5), Histogram::kMaxValue);
  h.reset();
  EXPECT_EQ(h.count(), 0u);
  EXPECT_EQ(h.percentile(0.5), 0u);
}

}  // namespace
}  // namespace kv::bench
