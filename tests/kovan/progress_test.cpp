// Bounded work per operation and the points where user destructors run
// (kovan/kovan.hpp, "THE GUARANTEES"; docs/RECLAIMER.md, "Progress"):
//  * one unpin or one retire deletes at most kFreeQuota nodes, however much it finished;
//  * no destructor of a retired node runs inside a Node constructor (allocation advances
//    the era, which helps, which releases batches);
//  * no era advance happens while a thread is helping (the wait-freedom argument counts
//    on every advance after a request being preceded by help).
// Built against kovan_testhooks.
#include <gtest/gtest.h>

#include <atomic>
#include <latch>
#include <thread>
#include <vector>

#include "kovan/detail/test_hooks.hpp"
#include "tracked.hpp"

namespace {

using kovan_test::Counts;
using kovan_test::Tracked;
namespace hooks = kovan::detail::test;

struct Obj : Tracked {
  explicit Obj(std::uint64_t v) : value(v) {}
  std::uint64_t value;
};

// The deletions that one call makes on this thread (no other thread deletes meanwhile).
template <class Fn>
std::int64_t deletions_in(Fn&& fn) {
  const auto before = Counts::destroyed.load();
  fn();
  return Counts::destroyed.load() - before;
}

// A pinned thread is handed 20,000 nodes (all born before it pinned); its unpin releases
// every one of those batches. The unpin itself may delete at most kFreeQuota of them; the
// rest go on this thread's free queue, drained by its next operations and by flush().
TEST(Progress, UnpinDeletesABoundedNumberOfNodes) {
  constexpr int kNodes = 20'000;
  std::vector<Obj*> nodes;
  for (int i = 0; i < kNodes; ++i) nodes.push_back(new Obj(i));
  kovan::Atomic<Obj> cell(new Obj(0));
  const auto destroyed0 = Counts::destroyed.load();
  kovan::Guard g = kovan::pin();
  (void)cell.load(g);
  std::thread([&] {
    for (Obj* o : nodes) kovan::retire(o);
    kovan::flush();  // everything attached to our slot
  }).join();
  EXPECT_EQ(Counts::destroyed.load() - destroyed0, 0);  // all held by our guard
  const std::int64_t in_unpin = deletions_in([&] { g.reset(); });
  std::printf("unpin releasing %d nodes deleted %lld of them\n", kNodes,
              static_cast<long long>(in_unpin));
  EXPECT_LE(in_unpin, static_cast<std::int64_t>(kovan::kFreeQuota));
  // Later operations drain the rest, at most kFreeQuota each.
  std::int64_t most = 0;
  for (int i = 0; i < 10; ++i) {
    most = std::max(most, deletions_in([] { kovan::Guard h = kovan::pin(); }));
  }
  EXPECT_LE(most, static_cast<std::int64_t>(kovan::kFreeQuota));
  kovan::flush();
  EXPECT_EQ(Counts::destroyed.load() - destroyed0, kNodes);
  kovan::Guard h = kovan::pin();
  delete cell.exchange(nullptr, h);
}

// A thread that finished more than its quota and then exits runs the rest of its queued
// deletions in its exit path: nothing is left behind once it is joined.
TEST(Progress, ThreadExitRunsItsQueuedDeletions) {
  constexpr int kNodes = 5'000;
  std::vector<Obj*> nodes;
  for (int i = 0; i < kNodes; ++i) nodes.push_back(new Obj(i));
  kovan::Atomic<Obj> cell(new Obj(0));
  const auto destroyed0 = Counts::destroyed.load();
  std::latch pinned(1), retired(1);
  std::int64_t in_unpin = 0;
  std::thread reader([&] {
    kovan::Guard g = kovan::pin();
    (void)cell.load(g);
    pinned.count_down();
    retired.wait();
    in_unpin = deletions_in([&] { g.reset(); });
  });  // exits with the rest of the 5,000 queued
  pinned.wait();
  for (Obj* o : nodes) kovan::retire(o);
  kovan::flush();  // everything attached to the reader's slot
  retired.count_down();
  reader.join();
  EXPECT_LE(in_unpin, static_cast<std::int64_t>(kovan::kFreeQuota));
  EXPECT_EQ(Counts::destroyed.load() - destroyed0, kNodes);
  kovan::Guard h = kovan::pin();
  delete cell.exchange(nullptr, h);
}

struct Held : Tracked {
  static inline std::atomic<int> destroyed{0};
  ~Held() { destroyed.fetch_add(1); }
};

// A thread whose unpin released more than its quota and then stays idle (alive, no more
// kovan calls) does not keep the rest: it is published for other threads, whose ordinary
// retires delete it, kFreeQuota per retire.
TEST(Progress, AnIdleThreadDoesNotKeepWhatItFinished) {
  constexpr int kNodes = 20'000;
  std::vector<Held*> nodes;
  for (int i = 0; i < kNodes; ++i) nodes.push_back(new Held());
  kovan::Atomic<Obj> cell(new Obj(0));
  Held::destroyed = 0;
  std::latch pinned(1), retired(1), unpinned(1), done(1);
  std::thread idle([&] {
    kovan::Guard g = kovan::pin();
    (void)cell.load(g);
    pinned.count_down();
    retired.wait();
    g.reset();  // releases all 20,000, deletes at most kFreeQuota
    unpinned.count_down();
    done.wait();  // idle, and alive
  });
  pinned.wait();
  for (Held* h : nodes) kovan::retire(h);
  kovan::flush();  // everything attached to the idle thread's slot
  retired.count_down();
  unpinned.wait();
  EXPECT_LE(Held::destroyed.load(), static_cast<int>(kovan::kFreeQuota));
  // Ordinary retires of this thread (no flush): enough for the quota to cover 20,000.
  const int retires = 4 * (kNodes / static_cast<int>(kovan::kFreeQuota) + 1) *
                      static_cast<int>(kovan::kRetireBatch) / 8;
  for (int i = 0; i < retires && Held::destroyed.load() < kNodes; ++i) {
    kovan::retire(new Obj(i));
  }
  EXPECT_EQ(Held::destroyed.load(), kNodes);
  done.count_down();
  idle.join();
  kovan::flush();
  kovan::Guard h = kovan::pin();
  delete cell.exchange(nullptr, h);
}

// 12,000 orphaned nodes (200 threads each retire 60 and exit); then each retire of this
// thread may delete at most kFreeQuota nodes, though one of them adopts the orphans.
TEST(Progress, RetireDeletesABoundedNumberOfNodes) {
  constexpr int kThreads = 200, kPer = 60;
  const auto destroyed0 = Counts::destroyed.load();
  for (int t = 0; t < kThreads; ++t) {
    std::thread([] {
      for (int i = 0; i < kPer; ++i) kovan::retire(new Obj(i));
    }).join();
  }
  std::int64_t most = 0;
  for (int i = 0; i < 4000; ++i) {
    Obj* o = new Obj(i);
    most = std::max(most, deletions_in([o] { kovan::retire(o); }));
  }
  std::printf("largest number of deletions in one retire: %lld\n", static_cast<long long>(most));
  EXPECT_LE(most, static_cast<std::int64_t>(kovan::kFreeQuota));
  kovan::flush();
  EXPECT_EQ(Counts::destroyed.load() - destroyed0, kThreads * kPer + 4000);
}

// Destructors that notice where they run: inside a Node constructor on this thread (a
// thread-local flag set around allocations), and whether they allocate enough to advance
// the era themselves.
thread_local bool tl_constructing = false;
std::atomic<int> g_reentrant{0};
std::atomic<int> g_probes_destroyed{0};

struct Probe : Tracked {
  ~Probe() {
    if (tl_constructing) g_reentrant.fetch_add(1);
    // Allocates enough to advance the era at least once (an era advance from here).
    for (std::uint32_t i = 0; i < kovan::kEraFrequency; ++i) Obj tmp(i);
    g_probes_destroyed.fetch_add(1);
  }
};

std::latch* g_published = nullptr;
std::latch* g_resume = nullptr;
std::latch* g_helping = nullptr;
std::latch* g_walk = nullptr;

// A requester R stops with its slow-path request open. Thread H allocates until the era
// advances, so H helps R; H stops right before walking its helper slot's list. Meanwhile
// this thread retires and flushes 64 probes (born before R pinned): they are attached to
// R's slot and to H's helper slot. R resumes, finds its result, unpins (releasing its
// reference). Then H walks its helper list and releases the last reference — inside the
// allocation that advanced the era. The probes must not be destroyed there; and their
// destructors, which advance the era, must not run while H is helping.
TEST(Progress, NoDestructorRunsInsideANodeConstructor) {
  constexpr int kProbes = 64;
  std::vector<Probe*> probes;
  for (int i = 0; i < kProbes; ++i) probes.push_back(new Probe());
  kovan::Atomic<Obj> cell(new Obj(42));
  std::latch published(1), resume(1), helping(1), walk(1), r_done(1);
  g_published = &published;
  g_resume = &resume;
  g_helping = &helping;
  g_walk = &walk;
  g_reentrant = 0;
  g_probes_destroyed = 0;
  hooks::nested_advances = 0;
  hooks::fast_path_tries = 0;
  hooks::on_request_published = +[] {
    hooks::on_request_published = nullptr;
    g_published->count_down();
    g_resume->wait();
  };
  hooks::on_help_walk = +[] {
    hooks::on_help_walk = nullptr;
    g_helping->count_down();
    g_walk->wait();
  };
  std::thread requester([&] {
    kovan::Guard g = kovan::pin();
    Obj* got = cell.load(g);
    EXPECT_EQ(got->value, 42u);
    g.reset();
    r_done.count_down();
  });
  published.wait();
  hooks::fast_path_tries = kovan::kFastPathTries;
  std::thread helper([&] {
    const std::uint64_t e0 = hooks::global_era();
    tl_constructing = true;
    for (std::uint32_t i = 0; i < 2 * kovan::kEraFrequency && hooks::global_era() == e0; ++i) {
      Obj tmp(i);  // the era advance in here helps the requester
    }
    tl_constructing = false;
    kovan::flush();  // an explicit point where deferred deletions may run
  });
  helping.wait();
  for (Probe* p : probes) kovan::retire(p);
  kovan::flush();  // attached to the requester's slot and the helper's helper slot
  resume.count_down();
  r_done.wait();
  walk.count_down();
  helper.join();
  requester.join();
  EXPECT_EQ(g_reentrant.load(), 0) << "destructors ran inside a Node constructor";
  EXPECT_EQ(hooks::nested_advances.load(), 0u) << "the era advanced while helping";
  EXPECT_EQ(g_probes_destroyed.load(), kProbes);
  kovan::Guard g = kovan::pin();
  delete cell.exchange(nullptr, g);
}

}  // namespace
