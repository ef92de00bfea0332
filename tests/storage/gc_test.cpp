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

// A stalled snapshot cannot see a key created and deleted after it began, so it must not
// pin the key's tombstone or its index node (E8).
void run_unique_put_delete_pairs(GcPolicy policy) {
  Options o;
  o.background_sweeper = false;
  o.gc_policy = policy;
  o.txn_timeout = std::chrono::hours(1);
  Engine e(o);
  ASSERT_TRUE(e.put("base", "old").ok());
  Transaction held = std::move(e.begin()).value();
  ASSERT_TRUE(e.put("base", "new").ok());
  constexpr int kPairs = 100'000;
  for (int i = 0; i < kPairs; ++i) {
    const std::string k = cat("p", i);
    ASSERT_TRUE(e.put(k, "v").ok());
    ASSERT_TRUE(e.del(k).ok());
  }
  e.run_maintenance();
  const EngineStats st = e.stats();
  EXPECT_LE(st.index_nodes, 10u) << "tombstones pinned by the held snapshot";
  EXPECT_LE(st.live_versions, 10u);
  EXPECT_LE(st.bytes, 64u * 1024u);
  // The held snapshot still reads what it saw, and none of the pairs.
  EXPECT_EQ(held.get("base")->value, "old");
  EXPECT_EQ(held.get(cat("p", kPairs / 2)).code(), StatusCode::kNotFound);
  auto sc = held.scan("p", "q");
  ASSERT_TRUE(sc.ok());
  EXPECT_EQ(sc->count, 0u);
  EXPECT_TRUE(held.commit().ok());  // read-only: commits
  EXPECT_EQ(e.get("base")->value, "new");
}

TEST(GcTest, StalledSnapshotDoesNotPinKeysBornAfterItInterval) {
  run_unique_put_delete_pairs(GcPolicy::kInterval);
}

TEST(GcTest, StalledSnapshotDoesNotPinKeysBornAfterItWatermark) {
  run_unique_put_delete_pairs(GcPolicy::kWatermark);
}

// Removing such a key early must not let a snapshot-isolation transaction that began before
// it overwrite it unchecked: first committer wins still aborts the later writer.
TEST(GcTest, SnapshotIsolationWriterStillConflictsWithRemovedKey) {
  Engine e = make(GcPolicy::kInterval);
  Transaction si = std::move(e.begin(Isolation::kSnapshot)).value();
  ASSERT_TRUE(e.put("k", "created").ok());
  ASSERT_TRUE(e.del("k").ok());
  e.run_maintenance();
  ASSERT_TRUE(si.put("k", "mine").ok());
  auto c = si.commit();
  EXPECT_EQ(c.code(), StatusCode::kConflict);
  EXPECT_EQ(e.get("k").code(), StatusCode::kNotFound);
  // A snapshot-isolation transaction that began after the removal writes the key freely.
  Transaction later = std::move(e.begin(Isolation::kSnapshot)).value();
  ASSERT_TRUE(later.put("k", "later").ok());
  EXPECT_TRUE(later.commit().ok());
  EXPECT_EQ(e.get("k")->value, "later");
}

// A serializable transaction that read the key as absent before its short life still
// commits: it reads "absent" at its commit point too (E8).
TEST(GcTest, SerializableReaderOfRemovedKeyCommits) {
  Engine e = make(GcPolicy::kInterval);
  Transaction t = std::move(e.begin()).value();
  EXPECT_EQ(t.get("k").code(), StatusCode::kNotFound);
  ASSERT_TRUE(e.put("k", "created").ok());
  ASSERT_TRUE(e.del("k").ok());
  e.run_maintenance();
  EXPECT_EQ(e.stats().index_nodes, 0u);
  ASSERT_TRUE(t.put("other", "x").ok());
  EXPECT_TRUE(t.commit().ok());
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
