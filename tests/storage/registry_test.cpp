// The active-snapshot registry: the range of slots a pruner scans follows the snapshots open
// now, not the most that were ever open at once.
#include <gtest/gtest.h>

#include <algorithm>
#include <atomic>
#include <random>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "storage/engine.hpp"
#include "test_util.hpp"

namespace kv::storage {
namespace {

constexpr std::size_t kBurst = 4000;
constexpr std::uint64_t kSmall = 64;  // the registry never shrinks below this many slots

Options quiet() {
  Options o;
  o.background_sweeper = false;  // the shrink must not depend on the sweeper
  o.txn_timeout = std::chrono::hours(1);
  return o;
}

std::vector<Transaction> open_burst(Engine& e) {
  std::vector<Transaction> txns;
  txns.reserve(kBurst);
  for (std::size_t i = 0; i < kBurst; ++i) {
    auto t = e.begin();
    EXPECT_TRUE(t.ok());
    txns.push_back(std::move(t).value());
  }
  return txns;
}

// After closing, updates (which prune, and so scan the registry) keep the range small.
void expect_small_after_updates(Engine& e) {
  EXPECT_LE(e.stats().snapshot_slots_scanned, kSmall);
  for (int i = 0; i < 100; ++i) ASSERT_TRUE(e.put("k", "v").ok());
  auto t = e.begin();
  ASSERT_TRUE(t.ok());
  // While open, a new snapshot takes a slot inside the small range, not its old high one.
  EXPECT_LE(e.stats().snapshot_slots_scanned, kSmall);
  ASSERT_TRUE(t->put("k", "w").ok());
  ASSERT_TRUE(t->commit().ok());
  EXPECT_LE(e.stats().snapshot_slots_scanned, kSmall);
}

TEST(SnapshotRegistry, ScanRangeShrinksAfterBurstClosedInOrder) {
  Engine e(quiet());
  ASSERT_TRUE(e.put("k", "v0").ok());
  {
    std::vector<Transaction> txns = open_burst(e);
    EXPECT_GE(e.stats().snapshot_slots_scanned, kBurst);
    for (Transaction& t : txns) ASSERT_TRUE(t.commit().ok());
  }
  EXPECT_EQ(e.stats().active_snapshots, 0u);
  expect_small_after_updates(e);
}

TEST(SnapshotRegistry, ScanRangeShrinksAfterBurstClosedInAnyOrder) {
  for (const int order : {0, 1}) {
    Engine e(quiet());
    ASSERT_TRUE(e.put("k", "v0").ok());
    std::vector<Transaction> txns = open_burst(e);
    if (order == 0) {
      std::reverse(txns.begin(), txns.end());
    } else {
      std::shuffle(txns.begin(), txns.end(), std::mt19937(42));
    }
    // Keep one transaction open in the middle of the range: the range shrinks to it.
    Transaction keep = std::move(txns[kBurst / 2]);
    for (Transaction& t : txns) (void)t.abort();
    const std::uint64_t with_one = e.stats().snapshot_slots_scanned;
    EXPECT_LT(with_one, kBurst) << "order " << order;
    ASSERT_TRUE(keep.abort().ok());
    EXPECT_EQ(e.stats().active_snapshots, 0u);
    expect_small_after_updates(e);
  }
}

// The range shrinks down to the highest slot in use and no further: the snapshot there is
// still collected, so pruning keeps the version it reads.
TEST(SnapshotRegistry, ShrinkStopsAtHighestSlotInUse) {
  Engine e(quiet());
  ASSERT_TRUE(e.put("k", "v0").ok());
  std::vector<Transaction> txns = open_burst(e);
  constexpr std::size_t kHeld = kBurst / 2;
  for (std::size_t i = 0; i < kBurst; ++i) {
    if (i != kHeld) {
      ASSERT_TRUE(txns[i].abort().ok());
    }
  }
  // Slots were claimed in order, so the held one is slot kHeld.
  EXPECT_EQ(e.stats().snapshot_slots_scanned, kHeld + 1);
  for (int u = 1; u <= 50; ++u) ASSERT_TRUE(e.put("k", testing::cat("v", u)).ok());
  e.run_maintenance();
  auto r = txns[kHeld].get("k");
  ASSERT_TRUE(r.ok()) << r.status().to_string();
  EXPECT_EQ(r->value, "v0");
  EXPECT_EQ(e.version_count("k"), 2u);  // the newest, and the held snapshot's
}

// Threads open and close bursts of transactions (shrinking and re-growing the range) while a
// writer updates one key (every update prunes, scanning the registry) and maintenance runs.
// Every transaction re-reads the key before it closes and must see what it saw first.
TEST(SnapshotRegistry, ConcurrentShrinkNeverHidesASnapshot) {
  Options o = quiet();
  Engine e(o);
  ASSERT_TRUE(e.put("k", "0").ok());
  std::atomic<bool> stop{false};
  std::atomic<int> mismatches{0};
  std::atomic<int> failures{0};
  std::thread writer([&] {
    for (int u = 1; !stop.load(std::memory_order_relaxed); ++u) {
      if (!e.put("k", std::to_string(u)).ok()) failures.fetch_add(1);
      if (u % 64 == 0) e.run_maintenance();
    }
  });
  auto churn = [&](unsigned seed) {
    std::mt19937 rng(seed);
    for (int round = 0; round < 150; ++round) {
      std::vector<std::pair<Transaction, std::string>> open;
      const int n = 80 + static_cast<int>(rng() % 120);
      for (int i = 0; i < n; ++i) {
        auto t = e.begin(Isolation::kSnapshot);
        if (!t.ok()) {
          failures.fetch_add(1);
          continue;
        }
        auto r = t->get("k");
        if (!r.ok()) failures.fetch_add(1);
        open.emplace_back(std::move(t).value(), r.ok() ? r->value : "");
      }
      // Close in random order, re-reading first: top releases shrink the range while the
      // other thread claims slots.
      std::shuffle(open.begin(), open.end(), rng);
      for (auto& [t, seen] : open) {
        auto r = t.get("k");
        if (!r.ok() || r->value != seen) mismatches.fetch_add(1);
        (void)t.abort();
      }
    }
  };
  std::thread a(churn, 1u);
  std::thread b(churn, 2u);
  a.join();
  b.join();
  stop.store(true);
  writer.join();
  EXPECT_EQ(mismatches.load(), 0);
  EXPECT_EQ(failures.load(), 0);
  EXPECT_EQ(e.stats().active_snapshots, 0u);
  EXPECT_LE(e.stats().snapshot_slots_scanned, kSmall);
}

}  // namespace
}  // namespace kv::storage
