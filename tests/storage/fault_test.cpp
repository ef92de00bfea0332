// Allocation failures in the middle of a commit (Options::alloc_faults). A commit that
// cannot allocate must give back every commit lock and its timestamp and apply nothing, so
// later commits neither conflict forever on a leaked lock nor wait forever for visibility
// (the watermark W cannot pass a timestamp that is never finished).
#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <functional>
#include <future>
#include <memory>
#include <new>
#include <optional>
#include <string>
#include <thread>

#include "storage/engine.hpp"

namespace kv::storage {
namespace {

using Site = AllocationFaults::Site;

// Throws std::bad_alloc at the n-th allocation of one site after arm() (once).
class FailNth final : public AllocationFaults {
 public:
  void arm(Site site, int n) {
    site_.store(site, std::memory_order_relaxed);
    countdown_.store(n, std::memory_order_relaxed);
  }
  void before_allocation(Site site) override {
    if (site != site_.load(std::memory_order_relaxed)) return;
    if (countdown_.load(std::memory_order_relaxed) > 0 &&
        countdown_.fetch_sub(1, std::memory_order_relaxed) == 1) {
      fired_.fetch_add(1, std::memory_order_relaxed);
      throw std::bad_alloc();
    }
  }
  int fired() const { return fired_.load(std::memory_order_relaxed); }

 private:
  std::atomic<Site> site_{Site::kVersion};
  std::atomic<int> countdown_{0};
  std::atomic<int> fired_{0};
};

struct Fixture {
  std::shared_ptr<FailNth> faults = std::make_shared<FailNth>();
  std::unique_ptr<Engine> engine;
  Fixture() {
    Options o;
    o.background_sweeper = false;
    o.alloc_faults = faults;
    engine = std::make_unique<Engine>(o);
  }
  Engine& e() { return *engine; }
};

// Runs `work` on a thread and waits for it at most `limit` (generous: a loaded machine).
// If it does not finish, the thread is stuck inside the engine: the engine is leaked and
// the thread detached, so that the test reports the hang instead of hanging.
bool finishes(Fixture& f, const std::function<void()>& work,
              std::chrono::seconds limit = std::chrono::seconds(60)) {
  auto done = std::make_shared<std::promise<void>>();
  std::future<void> fut = done->get_future();
  std::thread th([work, done] {
    work();
    done->set_value();
  });
  if (fut.wait_for(limit) == std::future_status::ready) {
    th.join();
    return true;
  }
  th.detach();
  (void)f.engine.release();
  return false;
}

// Commits t, turning an escaping bad_alloc into a test failure.
std::optional<Result<Revision>> commit_no_throw(Transaction& t) {
  try {
    return t.commit();
  } catch (const std::bad_alloc&) {
    ADD_FAILURE() << "bad_alloc escaped from commit()";
    return std::nullopt;
  }
}

TEST(CommitAllocationFailure, VersionFailureAppliesNothingAndLaterCommitsFinish) {
  Fixture f;
  ASSERT_TRUE(f.e().put("a", "old").ok());
  ASSERT_TRUE(f.e().put("b", "old").ok());
  auto t = f.e().begin();
  ASSERT_TRUE(t.ok());
  ASSERT_TRUE(t->put("a", "new").ok());
  ASSERT_TRUE(t->put("b", "new").ok());
  f.faults->arm(Site::kVersion, 2);  // "a" gets its version, "b" does not
  auto r = commit_no_throw(*t);
  EXPECT_EQ(f.faults->fired(), 1);
  if (r) {
    EXPECT_EQ(r->code(), StatusCode::kResourceExhausted) << r->status().to_string();
  }
  EXPECT_FALSE(t->active());
  // Another key (needs the failed timestamp finished) and a written key (needs its lock).
  auto c = std::make_shared<std::optional<Result<PutResult>>>();
  auto a = std::make_shared<std::optional<Result<PutResult>>>();
  ASSERT_TRUE(finishes(f, [&e = f.e(), c, a] {
    *c = e.put("c", "x");
    *a = e.put("a", "again");
  })) << "a later commit waited forever for the failed commit's timestamp";
  ASSERT_TRUE(c->has_value() && (*c)->ok()) << (*c)->status().to_string();
  ASSERT_TRUE(a->has_value() && (*a)->ok()) << (*a)->status().to_string();
  // Nothing of the failed commit is visible, now or later.
  auto ga = f.e().get("a");
  ASSERT_TRUE(ga.ok());
  EXPECT_EQ(ga->value, "again");
  EXPECT_EQ(ga->version, 2) << "a version of the failed commit stayed in the chain";
  auto gb = f.e().get("b");
  ASSERT_TRUE(gb.ok());
  EXPECT_EQ(gb->value, "old");
  EXPECT_EQ(f.e().version_count("b"), 1u);
  EXPECT_EQ(f.e().stats().active_snapshots, 0u);
}

TEST(CommitAllocationFailure, IndexInsertFailureReleasesEarlierLocks) {
  Fixture f;
  ASSERT_TRUE(f.e().put("a", "old").ok());
  auto t = f.e().begin();
  ASSERT_TRUE(t.ok());
  ASSERT_TRUE(t->put("a", "new").ok());
  ASSERT_TRUE(t->put("b", "new").ok());  // a new key: its node is inserted at commit
  f.faults->arm(Site::kIndexInsert, 2);  // "a" is locked, then "b" cannot be inserted
  auto r = commit_no_throw(*t);
  EXPECT_EQ(f.faults->fired(), 1);
  if (r) {
    EXPECT_EQ(r->code(), StatusCode::kResourceExhausted) << r->status().to_string();
  }
  auto a = std::make_shared<std::optional<Result<PutResult>>>();
  auto b = std::make_shared<std::optional<Result<PutResult>>>();
  ASSERT_TRUE(finishes(f, [&e = f.e(), a, b] {
    *a = e.put("a", "x");
    *b = e.put("b", "y");
  }));
  ASSERT_TRUE(a->has_value() && (*a)->ok()) << "lock of 'a' leaked: " << (*a)->status().to_string();
  ASSERT_TRUE(b->has_value() && (*b)->ok()) << (*b)->status().to_string();
  EXPECT_EQ(f.e().get("a")->value, "x");
  EXPECT_EQ(f.e().get("b")->value, "y");
}

TEST(CommitAllocationFailure, OneShotWriteReportsAndEngineContinues) {
  Fixture f;
  f.faults->arm(Site::kVersion, 1);
  std::optional<Result<PutResult>> r;
  try {
    r = f.e().put("k", "v");
  } catch (const std::bad_alloc&) {
    ADD_FAILURE() << "bad_alloc escaped from put()";
  }
  if (r) {
    EXPECT_EQ(r->code(), StatusCode::kResourceExhausted);
  }
  EXPECT_EQ(f.e().get("k").code(), StatusCode::kNotFound);
  auto again = std::make_shared<std::optional<Result<PutResult>>>();
  ASSERT_TRUE(finishes(f, [&e = f.e(), again] { *again = e.put("k", "v2"); }));
  ASSERT_TRUE(again->has_value() && (*again)->ok()) << (*again)->status().to_string();
  EXPECT_EQ(f.e().get("k")->value, "v2");
  EXPECT_EQ(f.e().stats().aborts_out_of_memory, 1u);
}

}  // namespace
}  // namespace kv::storage
