// The one-shot fast paths (docs/STORAGE.md, "Per-core fast paths"): a get that reads the
// head without registering a snapshot, and a blind put committed without a write set. They
// must keep the engine's guarantees: a get never sees a version its commit has not made
// visible (E2), and a put returns only once its commit is visible (E3), even while an
// earlier commit holds the watermark back.
#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <future>
#include <latch>
#include <memory>
#include <string>
#include <thread>

#include "storage/engine.hpp"

namespace kv::storage {
namespace {

using Site = AllocationFaults::Site;

// Holds the first commit that reaches its version allocation (after it took its commit
// timestamp) until released: that timestamp stays unfinished, so W cannot pass it.
class HoldFirstVersion final : public AllocationFaults {
 public:
  void arm() { armed_.store(true, std::memory_order_relaxed); }
  void before_allocation(Site site) override {
    if (site != Site::kVersion || !armed_.exchange(false, std::memory_order_relaxed)) return;
    held_.count_down();
    release_.wait();
  }
  void wait_held() { held_.wait(); }
  void release() { release_.count_down(); }

 private:
  std::atomic<bool> armed_{false};
  std::latch held_{1};
  std::latch release_{1};
};

// A later commit (A, on another key) finishes installing while an earlier one (B) holds its
// timestamp. A's version is in its chain but not visible: a one-shot get must not return
// it, and A's put must not return before B's commit is finished (W >= A's timestamp).
void later_commit_waits_for_earlier(bool prev_kv) {
  auto hold = std::make_shared<HoldFirstVersion>();
  Options o;
  o.background_sweeper = false;
  o.alloc_faults = hold;
  Engine e(o);
  ASSERT_TRUE(e.put("a", "old").ok());
  hold->arm();
  auto b = std::async(std::launch::async, [&] { return e.put("b", "1").ok(); });
  hold->wait_held();  // B holds the next timestamp, unfinished
  auto a = std::async(std::launch::async, [&] { return e.put("a", "new", prev_kv).ok(); });
  // A published its version (the chain has it), behind B's unfinished timestamp.
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(60);
  while (e.version_count("a") < 2 && std::chrono::steady_clock::now() < deadline) {
    std::this_thread::yield();
  }
  ASSERT_EQ(e.version_count("a"), 2u) << "A never installed its version";
  // E2: not visible yet, so a one-shot get returns the previous value.
  Result<KeyValue> seen = e.get("a");
  ASSERT_TRUE(seen.ok());
  EXPECT_EQ(seen->value, "old");
  // E3: A does not return while B holds the watermark back (an observation window: a
  // correct engine waits as long as B is held; a wrong one returns at once).
  EXPECT_EQ(a.wait_for(std::chrono::milliseconds(300)), std::future_status::timeout)
      << "the put returned before an earlier commit was finished";
  hold->release();
  EXPECT_TRUE(b.get());
  EXPECT_TRUE(a.get());
  seen = e.get("a");
  ASSERT_TRUE(seen.ok());
  EXPECT_EQ(seen->value, "new");
  EXPECT_EQ(seen->version, 2);
  EXPECT_EQ(seen->create_revision, 2u);
}

TEST(OneShotFastPath, BlindPutWaitsForEarlierCommitAndGetSkipsInvisibleHead) {
  later_commit_waits_for_earlier(false);  // the blind put
}

TEST(OneShotFastPath, PutWithPrevKvWaitsForEarlierCommitToo) {
  later_commit_waits_for_earlier(true);  // the general one-shot path
}

// The blind put keeps a key's metadata and the one-shot statistics as the general path does.
TEST(OneShotFastPath, BlindPutMetadataStatsAndPruning) {
  Options o;
  o.background_sweeper = false;
  Engine e(o);
  auto p1 = e.put("k", "1");
  ASSERT_TRUE(p1.ok());
  auto p2 = e.put("k", "2");
  ASSERT_TRUE(p2.ok());
  EXPECT_EQ(p2->revision, p1->revision + 1);
  EXPECT_FALSE(p2->prev_kv.has_value());
  Result<KeyValue> kv = e.get("k");
  ASSERT_TRUE(kv.ok());
  EXPECT_EQ(kv->value, "2");
  EXPECT_EQ(kv->create_revision, p1->revision);
  EXPECT_EQ(kv->mod_revision, p2->revision);
  EXPECT_EQ(kv->version, 2);
  // No snapshot is registered by either fast path, and the overwritten version was pruned
  // by the put's own commit.
  EXPECT_EQ(e.version_count("k"), 1u);
  const EngineStats s = e.stats();
  EXPECT_EQ(s.commits, 2u);
  EXPECT_EQ(s.active_snapshots, 0u);
  EXPECT_EQ(s.versions_pruned, 1u);
  EXPECT_EQ(s.txn_write_bytes, 0u);
  // Delete, then put again: a new life of the key.
  ASSERT_TRUE(e.del("k").ok());
  auto p3 = e.put("k", "3");
  ASSERT_TRUE(p3.ok());
  kv = e.get("k");
  ASSERT_TRUE(kv.ok());
  EXPECT_EQ(kv->create_revision, p3->revision);
  EXPECT_EQ(kv->version, 1);
}

}  // namespace
}  // namespace kv::storage
