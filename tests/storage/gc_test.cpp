// Interval GC vs watermark GC: a held snapshot plus 100,000 updates over K keys.
#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "storage/engine.hpp"
#include "test_util.hpp"

namespace kv::storage {
namespace {

using testing::cat;

constexpr int kKeys = 16;
constexpr int kUpdates = 100'000;

std::string key(int i) { return cat("key", i); }

Engine make(GcPolicy policy) {
  Options o;
  o.background_sweeper = false;
  o.gc_policy = policy;
  return Engine(o);
}

// Returns the live-version count observed while the snapshot was held.
std::uint64_t run_held_snapshot(GcPolicy policy) {
  Options o;
  o.background_sweeper = false;
  o.gc_policy = policy;
  o.txn_timeout = std::chrono::hours(1);  // the held snapshot must not expire mid-test
  Engine e(o);
  for (int i = 0; i < kKeys; ++i) EXPECT_TRUE(e.put(key(i), cat("initial", i)).ok());
  Transaction held = std::move(e.begin(Isolation::kSnapshot)).value();
  for (int u = 0; u < kUpdates; ++u) {
    EXPECT_TRUE(e.put(key(u % kKeys), cat("u", u)).ok());
  }
  e.run_maintenance();
  const std::uint64_t live = e.stats().live_versions;
  if (policy == GcPolicy::kInterval) {
    for (int i = 0; i < kKeys; ++i) EXPECT_LE(e.version_count(key(i)), 2u) << key(i);  // |A|+1
    EXPECT_LE(live, 2u * kKeys);
  } else {
    EXPECT_GE(live, static_cast<std::uint64_t>(kUpdates));  // everything newer than the snapshot
  }
  // The held snapshot still reads exactly its values.
  for (int i = 0; i < kKeys; ++i) {
    auto r = held.get(key(i));
    EXPECT_TRUE(r.ok());
    if (r.ok()) {
      EXPECT_EQ(r->value, cat("initial", i));
    }
  }
  auto sc = held.scan("", "");
  EXPECT_EQ(sc->kvs.size(), static_cast<std::size_t>(kKeys));
  EXPECT_TRUE(held.commit().ok());
  // Current values are the last updates.
  for (int i = 0; i < kKeys; ++i) {
    const int last = kUpdates - kKeys + i;
    EXPECT_EQ(e.get(key(i))->value, cat("u", last));
  }
  // After the snapshot ends, versions fall back to one per key.
  e.run_maintenance();
  EXPECT_EQ(e.stats().live_versions, static_cast<std::uint64_t>(kKeys));
  EXPECT_GE(e.stats().versions_pruned, static_cast<std::uint64_t>(kUpdates - kKeys));
  return live;
}

TEST(GcTest, IntervalBoundsChainsWhileSnapshotHeld) {
  const auto interval = run_held_snapshot(GcPolicy::kInterval);
  const auto watermark = run_held_snapshot(GcPolicy::kWatermark);
  // The contrast the design is about: bounded vs. linear in the number of updates.
  EXPECT_LE(interval, 2u * kKeys);
  EXPECT_GE(watermark, 100u * interval);
}

TEST(GcTest, ManySnapshotsKeepOneVersionEach) {
  Engine e = make(GcPolicy::kInterval);
  ASSERT_TRUE(e.put("k", "v0").ok());
  std::vector<Transaction> snaps;
  std::vector<std::string> expect;
  for (int round = 1; round <= 5; ++round) {
    snaps.push_back(std::move(e.begin()).value());
    expect.push_back(cat("v", (round - 1) * 100));
    for (int u = 1; u <= 100; ++u) {
      ASSERT_TRUE(e.put("k", cat("v", (round - 1) * 100 + u)).ok());
    }
    EXPECT_LE(e.version_count("k"), snaps.size() + 1);
  }
  for (std::size_t i = 0; i < snaps.size(); ++i) EXPECT_EQ(snaps[i].get("k")->value, expect[i]);
  // Ending the middle snapshot frees exactly its version.
  ASSERT_TRUE(snaps[2].commit().ok());
  e.run_maintenance();
  EXPECT_EQ(e.version_count("k"), 5u);  // head + 4 snapshots
  for (std::size_t i : {0u, 1u, 3u, 4u}) EXPECT_EQ(snaps[i].get("k")->value, expect[i]);
  snaps.clear();
  e.run_maintenance();
  EXPECT_EQ(e.version_count("k"), 1u);
}

TEST(GcTest, SnapshotOfAbsentKeyKeepsNothingExtra) {
  Engine e = make(GcPolicy::kInterval);
  Transaction before = std::move(e.begin()).value();  // sees no version of "k"
  for (int u = 0; u < 1000; ++u) ASSERT_TRUE(e.put("k", std::to_string(u)).ok());
  EXPECT_EQ(e.version_count("k"), 1u);
  EXPECT_EQ(before.get("k").code(), StatusCode::kNotFound);
  // A deleted key whose tombstone a snapshot must still see as "newer" keeps it.
  Transaction mid = std::move(e.begin()).value();
  ASSERT_TRUE(e.del("k").ok());
  e.run_maintenance();
  EXPECT_EQ(mid.get("k")->value, "999");
  EXPECT_EQ(e.version_count("k"), 2u);  // tombstone + the version `mid` sees
  ASSERT_TRUE(mid.commit().ok());
  ASSERT_TRUE(before.commit().ok());
  e.run_maintenance();
  EXPECT_EQ(e.version_count("k"), 0u);
  EXPECT_EQ(e.stats().live_versions, 0u);
}

TEST(GcTest, WatermarkKeepsEverythingNewerThanOldestSnapshot) {
  Engine e = make(GcPolicy::kWatermark);
  ASSERT_TRUE(e.put("k", "v0").ok());
  Transaction held = std::move(e.begin()).value();
  for (int u = 1; u <= 500; ++u) ASSERT_TRUE(e.put("k", cat("v", u)).ok());
  e.run_maintenance();
  EXPECT_EQ(e.version_count("k"), 501u);
  EXPECT_EQ(held.get("k")->value, "v0");
  ASSERT_TRUE(held.commit().ok());
  e.run_maintenance();
  EXPECT_EQ(e.version_count("k"), 1u);
}

}  // namespace
}  // namespace kv::storage
