// Index-node removal: deleted keys leave the ordered index once no snapshot needs them,
// snapshots keep what they can see, and serializable validation stays correct across a
// removal and a re-insert of the same key.
#include <gtest/gtest.h>

#include <string>
#include <utility>

#include "storage/engine.hpp"
#include "test_util.hpp"

namespace kv::storage {
namespace {

using testing::cat;

Options quiet() {
  Options o;
  o.background_sweeper = false;  // removal happens at commit or in run_maintenance()
  o.txn_timeout = std::chrono::hours(1);
  return o;
}

std::string key(int i) {
  std::string k = cat("k", 100000 + i);  // fixed width: key order = numeric order
  return k;
}

TEST(IndexRemoval, DeletedKeysLeaveTheIndex) {
  constexpr int kKeys = 5000;
  constexpr int kKeep = 500;  // every 10th key survives
  Engine e(quiet());
  for (int i = 0; i < kKeys; ++i) ASSERT_TRUE(e.put(key(i), "v").ok());
  ASSERT_EQ(e.stats().index_nodes, static_cast<std::uint64_t>(kKeys));
  for (int i = 0; i < kKeys; ++i) {
    if (i % 10 != 0) {
      ASSERT_TRUE(e.del(key(i)).ok());
    }
  }
  // No snapshot needs the tombstones: each delete's commit removed its node.
  EngineStats s = e.stats();
  EXPECT_EQ(s.keys, static_cast<std::uint64_t>(kKeep));
  EXPECT_EQ(s.index_nodes, static_cast<std::uint64_t>(kKeep));
  EXPECT_EQ(s.index_nodes_removed, static_cast<std::uint64_t>(kKeys - kKeep));
  EXPECT_EQ(s.live_versions, static_cast<std::uint64_t>(kKeep));
  // The survivors are intact and in order, both ways.
  auto all = e.scan("", "");
  ASSERT_TRUE(all.ok());
  ASSERT_EQ(all->kvs.size(), static_cast<std::size_t>(kKeep));
  for (int j = 0; j < kKeep; ++j) EXPECT_EQ(all->kvs[j].key, key(10 * j));
  ScanOptions rev;
  rev.reverse = true;
  auto back = e.scan("", "", rev);
  ASSERT_TRUE(back.ok());
  ASSERT_EQ(back->kvs.size(), static_cast<std::size_t>(kKeep));
  EXPECT_EQ(back->kvs.front().key, key(10 * (kKeep - 1)));
  // delete_range removes the rest; re-inserting a removed key works and is counted once.
  ASSERT_TRUE(e.delete_range("", "").ok());
  EXPECT_EQ(e.stats().index_nodes, 0u);
  ASSERT_TRUE(e.put(key(7), "again").ok());
  EXPECT_EQ(e.stats().index_nodes, 1u);
  auto r = e.get(key(7));
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(r->value, "again");
  EXPECT_EQ(r->version, 1);  // a fresh key: its history restarted
  e.run_maintenance();
  EXPECT_EQ(e.stats().index_nodes, 1u);
}

TEST(IndexRemoval, HeldSnapshotKeepsDeletedKeyUntilItEnds) {
  Engine e(quiet());
  ASSERT_TRUE(e.put("a", "1").ok());
  ASSERT_TRUE(e.put("b", "2").ok());
  Transaction held = std::move(e.begin(Isolation::kSnapshot)).value();
  ASSERT_TRUE(e.del("b").ok());
  e.run_maintenance();
  // "b"'s tombstone is newer than the held snapshot: its node and old version stay.
  EXPECT_EQ(e.stats().index_nodes, 2u);
  EXPECT_EQ(e.get("b").code(), StatusCode::kNotFound);
  auto r = held.get("b");
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(r->value, "2");
  auto sc = held.scan("", "");
  ASSERT_TRUE(sc.ok());
  ASSERT_EQ(sc->kvs.size(), 2u);
  EXPECT_EQ(sc->kvs[1].key, "b");
  ASSERT_TRUE(held.commit().ok());
  e.run_maintenance();
  EXPECT_EQ(e.stats().index_nodes, 1u);
  EXPECT_EQ(e.version_count("b"), 0u);
}

TEST(IndexRemoval, NodesOfCommitsThatInstalledNothingAreSwept) {
  Engine e(quiet());
  ASSERT_TRUE(e.put("x", "0").ok());
  // A delete of an absent key installs nothing; its commit removes the node it created.
  ASSERT_TRUE(e.del("ghost").ok());
  EXPECT_EQ(e.stats().index_nodes, 1u);
  // A commit that fails validation leaves the nodes of its writes; the sweep removes them.
  Transaction t = std::move(e.begin()).value();
  ASSERT_TRUE(t.get("x").ok());
  ASSERT_TRUE(t.put("fresh", "1").ok());
  ASSERT_TRUE(e.put("x", "1").ok());
  EXPECT_EQ(t.commit().code(), StatusCode::kConflict);
  EXPECT_EQ(e.stats().index_nodes, 2u);
  e.run_maintenance();
  EXPECT_EQ(e.stats().index_nodes, 1u);
  EXPECT_EQ(e.get("fresh").code(), StatusCode::kNotFound);
}

// The key was removed from the index before T read it; a writer re-inserts it afterwards.
TEST(IndexRemoval, PhantomDetectedAfterRemovalThenReinsert) {
  Engine e(quiet());
  ASSERT_TRUE(e.put("k1", "a").ok());
  ASSERT_TRUE(e.put("k5", "b").ok());
  ASSERT_TRUE(e.del("k5").ok());
  ASSERT_EQ(e.stats().index_nodes, 1u);  // "k5"'s node is gone
  Transaction t = std::move(e.begin()).value();
  auto sc = t.scan("k0", "k9");
  ASSERT_TRUE(sc.ok());
  ASSERT_EQ(sc->kvs.size(), 1u);
  ASSERT_TRUE(t.put("z", "t").ok());
  ASSERT_TRUE(e.put("k5", "phantom").ok());  // a fresh node inside the scanned range
  EXPECT_EQ(t.commit().code(), StatusCode::kConflict);

  // Point read of a removed key, then a re-insert: the read is validated by key.
  ASSERT_TRUE(e.del("k5").ok());
  e.run_maintenance();  // also sweeps the node "z" that t's failed commit left behind
  ASSERT_EQ(e.stats().index_nodes, 1u);
  Transaction p = std::move(e.begin()).value();
  EXPECT_EQ(p.get("k5").code(), StatusCode::kNotFound);
  ASSERT_TRUE(p.put("z", "p").ok());
  ASSERT_TRUE(e.put("k5", "again").ok());
  EXPECT_EQ(p.commit().code(), StatusCode::kConflict);

  // Without an interfering write the same shape commits (validation is not over-eager).
  ASSERT_TRUE(e.del("k5").ok());
  Transaction q = std::move(e.begin()).value();
  EXPECT_EQ(q.get("k5").code(), StatusCode::kNotFound);
  ASSERT_TRUE(q.scan("k0", "k9").ok());
  ASSERT_TRUE(q.put("z", "q").ok());
  EXPECT_TRUE(q.commit().ok());
}

// Insert, delete and re-insert inside a range T scanned, with sweeps in between. A key
// created and deleted after T's snapshot reads "absent" to T and at T's commit point alike,
// so its node goes at once (E8) and does not fail T by itself; the re-insert that is still
// there at T's commit is a phantom, and T's commit must fail.
TEST(IndexRemoval, PhantomDetectedAcrossInsertDeleteReinsert) {
  Engine e(quiet());
  ASSERT_TRUE(e.put("k1", "a").ok());
  Transaction t = std::move(e.begin()).value();
  auto sc = t.scan("k0", "k9");
  ASSERT_TRUE(sc.ok());
  ASSERT_EQ(sc->kvs.size(), 1u);
  ASSERT_TRUE(t.put("z", "t").ok());
  ASSERT_TRUE(e.put("k5", "in").ok());
  ASSERT_TRUE(e.del("k5").ok());
  e.run_maintenance();
  EXPECT_EQ(e.stats().index_nodes, 1u);  // "k5" is newer than T's snapshot and deleted
  ASSERT_TRUE(e.put("k5", "back").ok());
  e.run_maintenance();
  EXPECT_EQ(e.stats().index_nodes, 2u);
  EXPECT_EQ(t.commit().code(), StatusCode::kConflict);
  ASSERT_TRUE(e.del("k5").ok());
  e.run_maintenance();
  EXPECT_EQ(e.stats().index_nodes, 1u);
}

// The same range read, with "k5" created and deleted (twice) while T runs and absent at its
// commit: T's scan still holds at its commit point, so T commits.
TEST(IndexRemoval, RangeReadHoldsAcrossCreateDeleteOfRemovedKey) {
  Engine e(quiet());
  ASSERT_TRUE(e.put("k1", "a").ok());
  Transaction t = std::move(e.begin()).value();
  auto sc = t.scan("k0", "k9");
  ASSERT_TRUE(sc.ok());
  ASSERT_EQ(sc->kvs.size(), 1u);
  ASSERT_TRUE(t.put("z", "t").ok());
  for (int i = 0; i < 2; ++i) {
    ASSERT_TRUE(e.put("k5", "in").ok());
    ASSERT_TRUE(e.del("k5").ok());
    e.run_maintenance();
  }
  EXPECT_EQ(e.stats().index_nodes, 1u);  // "k1" only: "k5" is gone while T runs
  EXPECT_TRUE(t.commit().ok());
  EXPECT_EQ(e.get("z")->value, "t");
}

}  // namespace
}  // namespace kv::storage
