// Index-node removal under concurrency: puts racing the removal of the same key are never
// lost, readers and scanners walking over removed nodes see a sorted, duplicate-free index,
// and the index shrinks back to the live keys. Run under ASan and TSan too.
#include <gtest/gtest.h>

#include <atomic>
#include <latch>
#include <map>
#include <optional>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "storage/engine.hpp"
#include "test_util.hpp"

namespace kv::storage {
namespace {

using testing::cat;

#ifdef KV_TSAN
constexpr int kRounds = 500;  // TSan is ~10x slower; the interleavings are what matter
#else
constexpr int kRounds = 1500;
#endif
constexpr int kOwners = 2;
constexpr int kOwnKeys = 8;
constexpr int kSharedWriters = 2;
constexpr int kSharedKeys = 8;

struct Op {
  Revision rev;
  std::optional<std::string> value;  // nullopt: a delete
};

TEST(StressIndexRemoval, PutsRacingRemovalAreNeverLost) {
  // A maintenance thread sweeps continuously (instead of the background sweeper, so that
  // once the threads are joined the final run_maintenance() is the only pruner).
  Options o;
  o.background_sweeper = false;
  o.txn_timeout = std::chrono::minutes(10);
  Engine e(o);

  std::atomic<int> writers_left{kOwners + kSharedWriters};
  std::latch go(kOwners + kSharedWriters + 2);
  std::atomic<long> lost{0};         // a put that could not be read back by its writer
  std::atomic<long> resurrected{0};  // a delete that could be read back as present
  std::atomic<long> bad_scans{0};    // unsorted / duplicate keys / key outside the range
  std::atomic<long> failed_ops{0};   // an error other than CONFLICT (see `shared`)
  std::vector<std::vector<std::vector<Op>>> logs(kSharedWriters,
                                                 std::vector<std::vector<Op>>(kSharedKeys));

  // Each owner alone writes its keys: put, read back, delete, read back. The deletes leave
  // the index (at commit, or in the sweeper when a reader's snapshot held the tombstone),
  // so the next put races with the removal of the same key.
  auto owner = [&](int id) {
    go.arrive_and_wait();
    for (int round = 0; round < kRounds; ++round) {
      for (int j = 0; j < kOwnKeys; ++j) {
        const std::string k = cat(cat("o", id) + "-", j);
        const std::string v = cat("v", round);
        auto p = e.put(k, v);
        if (!p.ok()) {
          ++failed_ops;
          continue;
        }
        auto r = e.get(k);
        if (!r.ok() || r->value != v || r->mod_revision != p->revision) ++lost;
        if (!e.del(k).ok()) ++failed_ops;
        if (e.get(k).code() != StatusCode::kNotFound) ++resurrected;
      }
    }
    writers_left.fetch_sub(1);
  };
  // Shared keys: random puts and deletes from several threads; the final state must be the
  // last write by revision.
  auto shared = [&](int id) {
    std::mt19937 rng(static_cast<unsigned>(id) * 7919U + 1);
    go.arrive_and_wait();
    for (int i = 0; i < kRounds * 8; ++i) {
      const int j = static_cast<int>(rng() % kSharedKeys);
      const std::string k = cat("s", j);
      if (rng() % 2 == 0) {
        const std::string v = cat(cat("w", id) + "-", i);
        auto p = e.put(k, v);
        // A one-shot put waits for a busy lock and reads nothing: it never answers CONFLICT
        // (docs/STORAGE.md, "Contention").
        if (p.ok()) {
          logs[id][j].push_back({p->revision, v});
        } else {
          ++failed_ops;
        }
      } else {
        auto d = e.del(k);
        if (d.ok()) {
          logs[id][j].push_back({d->revision, std::nullopt});
        } else if (d.code() != StatusCode::kConflict) {
          ++failed_ops;
        }
      }
    }
    writers_left.fetch_sub(1);
  };
  // Readers: forward and reverse scans, point reads, and serializable scan+write
  // transactions whose validation walks ranges that lose and regain nodes.
  auto reader = [&] {
    go.arrive_and_wait();
    ScanOptions rev;
    rev.reverse = true;
    int i = 0;
    while (writers_left.load() > 0) {
      auto fwd = e.scan("", "");
      if (fwd.ok()) {
        for (std::size_t x = 1; x < fwd->kvs.size(); ++x) {
          if (!(fwd->kvs[x - 1].key < fwd->kvs[x].key)) ++bad_scans;
        }
      }
      auto bwd = e.scan("o", "p", rev);
      if (bwd.ok()) {
        for (std::size_t x = 0; x < bwd->kvs.size(); ++x) {
          if (bwd->kvs[x].key < "o" || bwd->kvs[x].key >= "p") ++bad_scans;
          if (x > 0 && !(bwd->kvs[x].key < bwd->kvs[x - 1].key)) ++bad_scans;
        }
      }
      (void)e.get(cat("s", i % kSharedKeys));
      auto t = e.begin();
      if (t.ok()) {
        (void)t->scan("s", "t");
        (void)t->put("reader", std::to_string(i));
        (void)t->commit();  // CONFLICT is expected often; it must just not crash
      }
      ++i;
    }
  };
  auto maintenance = [&] {
    go.arrive_and_wait();
    while (writers_left.load() > 0) e.run_maintenance();
  };

  std::vector<std::thread> ts;
  for (int i = 0; i < kOwners; ++i) ts.emplace_back(owner, i);
  for (int i = 0; i < kSharedWriters; ++i) ts.emplace_back(shared, i);
  ts.emplace_back(reader);
  ts.emplace_back(maintenance);
  for (auto& t : ts) t.join();

  EXPECT_EQ(lost.load(), 0);
  EXPECT_EQ(resurrected.load(), 0);
  EXPECT_EQ(bad_scans.load(), 0);
  EXPECT_EQ(failed_ops.load(), 0);

  std::uint64_t live = 0;
  for (int j = 0; j < kSharedKeys; ++j) {
    std::optional<Op> last;
    for (int w = 0; w < kSharedWriters; ++w) {
      for (const Op& op : logs[w][j]) {
        if (!last || op.rev > last->rev) last = op;
      }
    }
    const std::string k = cat("s", j);
    auto r = e.get(k);
    if (last && last->value) {
      ++live;
      ASSERT_TRUE(r.ok()) << k << " lost its last put at revision " << last->rev;
      EXPECT_EQ(r->value, *last->value) << k;
      EXPECT_EQ(r->mod_revision, last->rev) << k;
    } else {
      EXPECT_EQ(r.code(), StatusCode::kNotFound) << k;
    }
  }
  if (e.get("reader").ok()) ++live;
  for (int id = 0; id < kOwners; ++id) {
    for (int j = 0; j < kOwnKeys; ++j) {
      EXPECT_EQ(e.get(cat(cat("o", id) + "-", j)).code(), StatusCode::kNotFound);
    }
  }
  e.run_maintenance();
  const EngineStats s = e.stats();
  EXPECT_EQ(s.keys, live);
  EXPECT_EQ(s.index_nodes, live);  // every dead key's node is gone
  // At least the owners' final deletes removed their nodes. (Not every delete removes one:
  // when a reader's snapshot still needs the tombstone, the next put reuses the node.)
  EXPECT_GE(s.index_nodes_removed, static_cast<std::uint64_t>(kOwners * kOwnKeys));
  auto all = e.scan("", "");
  ASSERT_TRUE(all.ok());
  EXPECT_EQ(all->kvs.size(), live);
}

// Many keys inserted and deleted by several threads while others scan: the index ends
// with exactly the keys that were not deleted, and nodes retired through kovan are freed.
TEST(StressIndexRemoval, ChurnReturnsIndexToLiveKeys) {
  constexpr int kThreads = 3;
#ifdef KV_TSAN
  constexpr int kPerThread = 5000;
#else
  constexpr int kPerThread = 15000;
#endif
  Options o;
  o.background_sweeper = false;  // the scanner sweeps (see the first test)
  o.txn_timeout = std::chrono::minutes(10);
  Engine e(o);
  std::latch go(kThreads + 1);
  std::atomic<int> left{kThreads};
  std::atomic<long> failures{0};
  std::atomic<long> bad_scans{0};
  auto worker = [&](int id) {
    go.arrive_and_wait();
    for (int i = 0; i < kPerThread; ++i) {
      const std::string k = cat(cat("c", id) + "-", 1000000 + i);
      if (!e.put(k, "x").ok()) ++failures;
      // Keep every 16th key; delete the others a little later (interleaved with inserts).
      if (i >= 8 && (i - 8) % 16 != 0) {
        if (!e.del(cat(cat("c", id) + "-", 1000000 + i - 8)).ok()) ++failures;
      }
    }
    left.fetch_sub(1);
  };
  auto scanner = [&] {
    go.arrive_and_wait();
    ScanOptions keys;
    keys.keys_only = true;
    while (left.load() > 0) {
      auto r = e.scan("c", "d", keys);
      if (!r.ok()) continue;
      for (std::size_t x = 1; x < r->kvs.size(); ++x) {
        if (!(r->kvs[x - 1].key < r->kvs[x].key)) ++bad_scans;
      }
      e.run_maintenance();
    }
  };
  std::vector<std::thread> ts;
  for (int i = 0; i < kThreads; ++i) ts.emplace_back(worker, i);
  ts.emplace_back(scanner);
  for (auto& t : ts) t.join();
  EXPECT_EQ(failures.load(), 0);
  EXPECT_EQ(bad_scans.load(), 0);
  // Keys kept per thread: i in [0, 8) and i >= 8 with (i - 8) % 16 == 0 deleted... i.e. the
  // keys never deleted are the last 8 and those with (i - 8) % 16 == 0 shifted by 8.
  std::uint64_t expected = 0;
  for (int i = 0; i < kPerThread; ++i) {
    const bool deleted = i + 8 < kPerThread && i % 16 != 0;
    if (!deleted) ++expected;
  }
  expected *= kThreads;
  e.run_maintenance();
  const EngineStats s = e.stats();
  EXPECT_EQ(s.keys, expected);
  EXPECT_EQ(s.index_nodes, expected);
  auto all = e.scan("", "");
  ASSERT_TRUE(all.ok());
  EXPECT_EQ(all->kvs.size(), expected);
  EXPECT_GT(s.kovan_reclaimed, 0u);
}

}  // namespace
}  // namespace kv::storage
