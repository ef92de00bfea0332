// The engine's statistics are kept per thread (one cell per thread shard) and summed by
// stats(): after concurrent commits, aborts, overwrites and deletes on many threads (more
// threads than cells, so cells are shared too), every counter must sum exactly to what the
// threads did, and the gauges (keys, live versions, bytes) must match the store's contents.
#include <gtest/gtest.h>

#include <latch>
#include <string>
#include <thread>
#include <vector>

#include "storage/engine.hpp"
#include "test_util.hpp"

namespace kv::storage {
namespace {

using testing::cat;

Options quiet() {
  Options o;
  o.background_sweeper = false;  // the counts below are all made by the test's threads
  return o;
}

std::string key_of(int thread, int round) { return cat(cat("k", thread) + "-", round) + "/"; }

TEST(EngineStatsSums, ExactAfterConcurrentCommitsOnMoreThreadsThanCells) {
  constexpr int kThreads = 20;  // more than ShardedCounter::kShards: cells are shared too
  constexpr int kRounds = 150;
  Engine e(quiet());
  std::latch start(kThreads);
  std::vector<std::thread> pool;
  std::vector<int> failures(kThreads, 0);
  for (int i = 0; i < kThreads; ++i) {
    pool.emplace_back([&, i] {
      int& bad = failures[static_cast<std::size_t>(i)];
      start.arrive_and_wait();  // all threads count at once
      for (int r = 0; r < kRounds; ++r) {
        const std::string k = key_of(i, r);
        // A new key, then an overwrite: 2 commits.
        bad += !e.put(k, "v1").ok();
        bad += !e.put(k, std::string(50, 'w')).ok();
        // A delete of another thread's key (present or not yet written): 1 commit, and the
        // live-key and version counters go down on this thread's cell for a key another
        // thread's cell counted up. Its attempt may lose to that thread's put and run again
        // inside the call: a one-shot retry, never an abort its caller sees.
        bad += !e.del(key_of((i + 1) % kThreads, r)).ok();
        // An interactive transaction aborted by the user: 1 user abort.
        {
          auto t = e.begin();
          bad += !t.ok();
          if (t.ok()) {
            bad += !t->put(cat(k, 7), "x").ok();
            bad += !t->abort().ok();
          }
        }
        // An interactive transaction that commits: 1 commit.
        {
          auto t = e.begin();
          bad += !t.ok();
          if (t.ok()) {
            bad += !t->put(cat(k, 8), "y").ok();
            bad += !t->commit().ok();
          }
        }
        // A serializable transaction whose read changed: 1 commit (the one-shot put) and 1
        // conflict abort.
        {
          const std::string x = cat(k, 9);
          auto t = e.begin();
          bad += !t.ok();
          if (t.ok()) {
            (void)t->get(x);
            bad += !e.put(x, "z").ok();
            bad += !t->put(x, "t").ok();
            bad += t->commit().code() != StatusCode::kConflict;
          }
        }
      }
    });
  }
  for (auto& t : pool) t.join();
  for (int i = 0; i < kThreads; ++i) ASSERT_EQ(failures[static_cast<std::size_t>(i)], 0) << i;

  const EngineStats s = e.stats();
  constexpr std::uint64_t kOps = std::uint64_t{kThreads} * kRounds;
  EXPECT_EQ(s.commits, 5 * kOps);
  EXPECT_EQ(s.aborts_user, kOps);
  EXPECT_EQ(s.aborts_conflict, kOps);  // the serializable transactions' only
  EXPECT_EQ(s.aborts_expired, 0u);
  EXPECT_EQ(s.txn_write_bytes, 0u);  // every write set was released
  EXPECT_EQ(s.active_txns, 0u);

  // The gauges against the store's contents.
  ScanOptions count;
  count.count_only = true;
  auto all = e.scan("", "", count);
  ASSERT_TRUE(all.ok());
  EXPECT_EQ(s.keys, all->count);
  std::uint64_t versions = 0;
  for (int i = 0; i < kThreads; ++i) {
    for (int r = 0; r < kRounds; ++r) {
      const std::string k = key_of(i, r);
      for (const std::string& key : {k, cat(k, 7), cat(k, 8), cat(k, 9)}) {
        versions += e.version_count(key);
      }
    }
  }
  EXPECT_EQ(s.live_versions, versions);

  // Delete everything from many threads at once (each thread deletes keys that other
  // threads' cells counted), then prune: every gauge sums back to zero.
  std::latch start2(kThreads);
  pool.clear();
  for (int i = 0; i < kThreads; ++i) {
    pool.emplace_back([&, i] {
      start2.arrive_and_wait();
      for (int r = 0; r < kRounds; ++r) {
        const std::string k = key_of((i + 3) % kThreads, r);
        for (const std::string& key : {k, cat(k, 8), cat(k, 9)}) (void)e.del(key);
      }
    });
  }
  for (auto& t : pool) t.join();
  e.run_maintenance();
  const EngineStats z = e.stats();
  EXPECT_EQ(z.keys, 0u);
  EXPECT_EQ(z.live_versions, 0u);
  EXPECT_EQ(z.index_nodes, 0u);
  EXPECT_EQ(z.bytes, 0u);  // index bytes and version bytes both back to zero
  // Every version live before the deletes, and every tombstone they installed (one per
  // key that was live), was pruned.
  EXPECT_EQ(z.versions_pruned, s.versions_pruned + s.live_versions + s.keys);
}

}  // namespace
}  // namespace kv::storage
