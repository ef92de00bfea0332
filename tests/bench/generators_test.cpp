// Key choosers (zipfian skew, uniform spread, latest), the YCSB operation mixes and keys.
#include "generators.hpp"

#include <gtest/gtest.h>

#include <algorithm>
#include <array>
#include <cmath>
#include <map>
#include <numeric>
#include <set>
#include <vector>

namespace kv::bench {
namespace {

TEST(Rng, IsReproducibleAndInRange) {
  Rng a(42), b(42), c(43);
  bool differs = false;
  for (int i = 0; i < 1000; ++i) {
    const auto x = a.next();
    EXPECT_EQ(x, b.next());
    differs = differs || x != c.next();
    const double u = a.unit();
    ASSERT_EQ(u, b.unit());
    ASSERT_GE(u, 0.0);
    ASSERT_LT(u, 1.0);
    const auto small = a.below(7);
    ASSERT_EQ(small, b.below(7));
    ASSERT_LT(small, 7u);
  }
  EXPECT_TRUE(differs);
}

// Share of the `top` most popular ranks under Zipf(theta) over n ranks.
double zipf_top_share(std::uint64_t n, std::uint64_t top, double theta) {
  double zeta = 0, head = 0;
  for (std::uint64_t i = 1; i <= n; ++i) {
    const double p = 1.0 / std::pow(static_cast<double>(i), theta);
    zeta += p;
    if (i <= top) head += p;
  }
  return head / zeta;
}

TEST(Zipfian, TopRanksGetTheirZipfShare) {
  constexpr std::uint64_t kN = 1000;
  constexpr int kDraws = 1'000'000;
  ZipfianGenerator z(kN);
  Rng rng(5);
  std::vector<std::uint64_t> counts(kN, 0);
  for (int i = 0; i < kDraws; ++i) {
    const auto r = z.next(rng);
    ASSERT_LT(r, kN);
    ++counts[r];
  }
  // Ranks 0 and 1 are drawn exactly by the method; the tail uses its continuous
  // approximation, so the wider shares get a wider tolerance.
  const double p0 = static_cast<double>(counts[0]) / kDraws;
  EXPECT_NEAR(p0, zipf_top_share(kN, 1, 0.99), 0.003);
  EXPECT_NEAR(p0, z.probability(0), 0.003);
  const double p1 = static_cast<double>(counts[1]) / kDraws;
  EXPECT_NEAR(p1, z.probability(1), 0.003);
  double top10 = 0, top100 = 0;
  for (int i = 0; i < 100; ++i)
    (i < 10 ? top10 : top100) += static_cast<double>(counts[static_cast<std::size_t>(i)]);
  top100 += top10;
  EXPECT_NEAR(top10 / kDraws, zipf_top_share(kN, 10, 0.99), 0.02);
  EXPECT_NEAR(top100 / kDraws, zipf_top_share(kN, 100, 0.99), 0.02);
  // Skew: 1 % of the ranks take well over a third of the draws; the bottom half far less.
  EXPECT_GT(top10 / kDraws, 0.35);
  double bottom_half = 0;
  for (std::uint64_t i = kN / 2; i < kN; ++i) bottom_half += static_cast<double>(counts[i]);
  EXPECT_LT(bottom_half / kDraws, 0.15);
}

TEST(Zipfian, GrowingItemCountMatchesAFreshGenerator) {
  ZipfianGenerator grown(100);
  Rng rng(6);
  std::uint64_t max_seen = 0;
  for (int i = 0; i < 100'000; ++i) max_seen = std::max(max_seen, grown.next(rng, 5000));
  EXPECT_EQ(grown.items(), 5000u);
  EXPECT_LT(max_seen, 5000u);
  EXPECT_GE(max_seen, 100u);
  ZipfianGenerator fresh(5000);
  EXPECT_NEAR(grown.probability(0), fresh.probability(0), 1e-12);
  EXPECT_NEAR(grown.probability(4999), fresh.probability(4999), 1e-15);
}

TEST(KeyChooser, ZipfianSpreadsHotKeysButKeepsTheSkew) {
  constexpr std::uint64_t kN = 10'000;
  KeyChooser k(Distribution::kZipfian, kN);
  Rng rng(8);
  std::map<std::uint64_t, std::uint64_t> counts;
  constexpr int kDraws = 500'000;
  for (int i = 0; i < kDraws; ++i) {
    const auto key = k.next(rng, kN);
    ASSERT_LT(key, kN);
    ++counts[key];
  }
  std::vector<std::pair<std::uint64_t, std::uint64_t>> by_count(counts.begin(), counts.end());
  std::sort(by_count.begin(), by_count.end(),
            [](const auto& a, const auto& b) { return a.second > b.second; });
  // The hottest 1 % of keys carry the zipfian share of the top 100 ranks.
  double top = 0;
  for (std::size_t i = 0; i < 100; ++i) top += static_cast<double>(by_count[i].second);
  EXPECT_NEAR(top / kDraws, zipf_top_share(kN, 100, 0.99), 0.03);
  // ... and they are not simply the lowest keys.
  std::uint64_t hot_low = 0;
  for (std::size_t i = 0; i < 100; ++i) hot_low += by_count[i].first < 100 ? 1 : 0;
  EXPECT_LT(hot_low, 10u);
}

TEST(KeyChooser, PermutationIsABijection) {
  for (std::uint64_t n : {1ull, 2ull, 10ull, 1000ull, 1024ull, 999'983ull, 1'000'000ull}) {
    const std::uint64_t mul = permutation_multiplier(n);
    if (n > 1) {
      EXPECT_EQ(std::gcd(mul, n), 1u) << n;
    }
  }
  // All ranks of a small key space map to distinct keys.
  KeyChooser k(Distribution::kZipfian, 1000);
  const std::uint64_t mul = permutation_multiplier(1000);
  std::set<std::uint64_t> images;
  for (std::uint64_t r = 0; r < 1000; ++r) images.insert((mul * r) % 1000);
  EXPECT_EQ(images.size(), 1000u);
}

TEST(KeyChooser, UniformIsFlat) {
  constexpr std::uint64_t kN = 100;
  KeyChooser k(Distribution::kUniform, kN);
  Rng rng(9);
  std::vector<int> counts(kN, 0);
  constexpr int kDraws = 200'000;
  for (int i = 0; i < kDraws; ++i) ++counts[k.next(rng, kN)];
  // Chi-square with 99 degrees of freedom: the 99.99th percentile is about 157.
  double chi = 0;
  const double expected = static_cast<double>(kDraws) / kN;
  for (int c : counts) chi += (c - expected) * (c - expected) / expected;
  EXPECT_LT(chi, 157.0);
}

TEST(KeyChooser, LatestFavoursTheNewestRecords) {
  KeyChooser k(Distribution::kLatest, 1000);
  Rng rng(10);
  std::uint64_t newest = 0, old_half = 0;
  constexpr int kDraws = 100'000;
  for (int i = 0; i < kDraws; ++i) {
    const auto key = k.next(rng, 1000);
    ASSERT_LT(key, 1000u);
    newest += key == 999 ? 1 : 0;
    old_half += key < 500 ? 1 : 0;
  }
  EXPECT_NEAR(static_cast<double>(newest) / kDraws, ZipfianGenerator(1000).probability(0), 0.01);
  EXPECT_LT(static_cast<double>(old_half) / kDraws, 0.15);
  // After inserts the newest record is the favourite.
  std::uint64_t after = 0;
  for (int i = 0; i < kDraws; ++i) after += k.next(rng, 1500) == 1499 ? 1 : 0;
  EXPECT_GT(static_cast<double>(after) / kDraws, 0.1);
}

struct Ratios {
  double read, update, insert, scan, rmw, txn;
};

Ratios measure(const Mix& mix) {
  Rng rng(11);
  std::array<int, kOpKinds> c{};
  constexpr int kDraws = 200'000;
  for (int i = 0; i < kDraws; ++i) ++c[static_cast<std::size_t>(choose_op(mix, rng))];
  auto f = [&](OpKind k) { return static_cast<double>(c[static_cast<std::size_t>(k)]) / kDraws; };
  return {f(OpKind::kRead), f(OpKind::kUpdate), f(OpKind::kInsert),
          f(OpKind::kScan), f(OpKind::kRmw),    f(OpKind::kTxn)};
}

TEST(Workloads, YcsbMixesHaveTheirRatios) {
  struct Case {
    const char* name;
    Ratios want;
    Distribution dist;
  };
  const Case cases[] = {
      {"ycsb-a", {0.5, 0.5, 0, 0, 0, 0}, Distribution::kZipfian},
      {"ycsb-b", {0.95, 0.05, 0, 0, 0, 0}, Distribution::kZipfian},
      {"ycsb-c", {1, 0, 0, 0, 0, 0}, Distribution::kZipfian},
      {"ycsb-d", {0.95, 0, 0.05, 0, 0, 0}, Distribution::kLatest},
      {"ycsb-e", {0, 0, 0.05, 0.95, 0, 0}, Distribution::kZipfian},
      {"ycsb-f", {0.5, 0, 0, 0, 0.5, 0}, Distribution::kZipfian},
      {"get", {1, 0, 0, 0, 0, 0}, Distribution::kUniform},
      {"set", {0, 1, 0, 0, 0, 0}, Distribution::kUniform},
      {"txn", {0, 0, 0, 0, 0, 1}, Distribution::kUniform},
  };
  for (const auto& c : cases) {
    const auto mix = workload_mix(c.name);
    ASSERT_TRUE(mix.has_value()) << c.name;
    EXPECT_EQ(mix->distribution, c.dist) << c.name;
    const Ratios got = measure(*mix);
    EXPECT_NEAR(got.read, c.want.read, 0.01) << c.name;
    EXPECT_NEAR(got.update, c.want.update, 0.01) << c.name;
    EXPECT_NEAR(got.insert, c.want.insert, 0.01) << c.name;
    EXPECT_NEAR(got.scan, c.want.scan, 0.01) << c.name;
    EXPECT_NEAR(got.rmw, c.want.rmw, 0.01) << c.name;
    EXPECT_NEAR(got.txn, c.want.txn, 0.01) << c.name;
  }
  const Ratios mixed = measure(*workload_mix("mixed", 0.3));
  EXPECT_NEAR(mixed.read, 0.3, 0.01);
  EXPECT_NEAR(mixed.update, 0.7, 0.01);
  EXPECT_FALSE(workload_mix("ycsb-g").has_value());
  EXPECT_TRUE(needs_kovan(*workload_mix("ycsb-e")));
  EXPECT_TRUE(needs_kovan(*workload_mix("txn")));
  EXPECT_FALSE(needs_kovan(*workload_mix("ycsb-f")));
  EXPECT_FALSE(needs_kovan(*workload_mix("ycsb-d")));
}

TEST(Keys, FixedWidthAndOrdered) {
  EXPECT_EQ(record_key(0), "user000000000000");
  EXPECT_EQ(record_key(123456789), "user000123456789");
  std::string prev = record_key(0);
  for (std::uint64_t r : {1ull, 9ull, 10ull, 99ull, 100ull, 12345ull, 999'999'999'999ull}) {
    const std::string k = record_key(r);
    EXPECT_EQ(k.size(), 16u);
    EXPECT_LT(prev, k);
    prev = k;
  }
}

}  // namespace
}  // namespace kv::bench
