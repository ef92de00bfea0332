// A helper must never read a requester's source after the source's lifetime ended.
//
// The helped slow path hands a requester's source address to helpers (era advancers). When
// the source is a member of a plain heap object (or an Atom<T>, a vector element, a stack
// variable), nothing kovan manages keeps it alive: the requester may finish its load on its
// own, return, and free the object while a helper is between its re-check of the request and
// its read of the source. The test hooks stop a helper exactly there; the requester then
// completes, returns and destroys the object; the helper resumes and reads. Before the fix
// AddressSanitizer reports a heap-use-after-free in help(); now ~Atomic waits for the
// helper's read to end (the on_destroy_wait hook lets the helper go on). The last test is
// the usual case, a source inside a retired kovan node, which the runtime itself must keep
// alive for the helper (docs/RECLAIMER.md, the parent problem).
#include <gtest/gtest.h>

#include <atomic>
#include <latch>
#include <memory>
#include <thread>
#include <vector>

#include "kovan/detail/test_hooks.hpp"
#include "tracked.hpp"

namespace {

using kovan_test::Tracked;
namespace hooks = kovan::detail::test;

struct Obj : Tracked {
  explicit Obj(int v) : value(v) {}
  int value;
};

struct Plain : kovan::Node {};

// Test phases, advanced by the hooks and the threads (atomic wait/notify, no sleeps).
std::atomic<int> g_phase{0};
constexpr int kPublished = 1;  // the requester published its request and stopped
constexpr int kHelperIn = 2;   // a helper is committed to reading the source, stopped
constexpr int kReleased = 3;   // the source was destroyed, or its destructor is waiting

void advance_to(int phase) {
  int cur = g_phase.load();
  while (cur < phase && !g_phase.compare_exchange_weak(cur, phase)) {
  }
  g_phase.notify_all();
}
void wait_for(int phase) {
  for (int cur = g_phase.load(); cur < phase; cur = g_phase.load()) g_phase.wait(cur);
}

void install_hooks() {
  g_phase = 0;
  hooks::fast_path_tries = 0;  // every load takes the helped slow path
  hooks::on_request_published = +[] {
    hooks::on_request_published = nullptr;  // only the first request stops
    advance_to(kPublished);
    wait_for(kHelperIn);
  };
  hooks::on_helper_reading = +[] {
    hooks::on_helper_reading = nullptr;
    advance_to(kHelperIn);
    wait_for(kReleased);
  };
  hooks::on_destroy_wait = +[] { advance_to(kReleased); };
}

void remove_hooks() {
  hooks::fast_path_tries = kovan::kFastPathTries;
  hooks::on_request_published = nullptr;
  hooks::on_helper_reading = nullptr;
  hooks::on_destroy_wait = nullptr;
}

// Runs `load_and_destroy` on a requester thread while another thread advances the era (and
// so helps); returns the number of helps made.
template <class Fn>
std::uint64_t run_with_stopped_helper(Fn load_and_destroy) {
  install_hooks();
  const std::uint64_t helps0 = kovan::stats().helps;
  std::thread requester([&] {
    load_and_destroy();
    advance_to(kReleased);  // (before the fix nothing else lets the helper go on)
  });
  wait_for(kPublished);
  std::thread advancer([] {
    // Each era advance helps open requests first; the hook stops the helper inside help().
    while (g_phase.load() < kHelperIn) {
      for (std::uint32_t i = 0; i < kovan::kEraFrequency; ++i) Plain tmp;
    }
  });
  requester.join();
  advancer.join();
  remove_hooks();
  return kovan::stats().helps - helps0;
}

struct Holder {
  explicit Holder(Obj* o) : cell(o) {}
  kovan::Atomic<Obj> cell;
};

TEST(HelperSource, SourceInPlainHeapObject) {
  Obj* target = new Obj(7);
  int seen = 0;
  const auto helps = run_with_stopped_helper([&] {
    auto* holder = new Holder(target);
    {
      kovan::Guard g = kovan::pin();
      seen = holder->cell.load(g)->value;  // completes on its own while the helper waits
    }
    delete holder;  // the source's lifetime ends here
  });
  EXPECT_EQ(seen, 7);
  EXPECT_GE(helps, 1u);
  delete target;
}

TEST(HelperSource, SourceInVectorElement) {
  Obj* target = new Obj(8);
  int seen = 0;
  const auto helps = run_with_stopped_helper([&] {
    auto cells = std::make_unique<std::vector<kovan::Atomic<Obj>>>(4);
    (*cells)[2].store(target);
    {
      kovan::Guard g = kovan::pin();
      seen = (*cells)[2].load(g)->value;
    }
    cells.reset();
  });
  EXPECT_EQ(seen, 8);
  EXPECT_GE(helps, 1u);
  delete target;
}

TEST(HelperSource, SourceInAtom) {
  int seen = 0;
  const auto helps = run_with_stopped_helper([&] {
    auto cell = std::make_unique<kovan::Atom<int>>(9);
    seen = *cell->load();
    cell.reset();
  });
  EXPECT_EQ(seen, 9);
  EXPECT_GE(helps, 1u);
}

// The source inside a kovan node (the usual case): the node was retired and its batch was
// attached only to the requester's slot before the helper published its helper slot; the
// requester then completes, unpins and lets go of the batch while the helper still has to
// read the source. Finishing the batch must see the helper slot (whose era covers the node)
// and defer it. The batch is made so that its counting node is younger than the helper's
// era and the node holding the source older: the check must use the batch's minimum birth,
// not the counting node's.
std::atomic<bool> g_parent_destroyed_in_window{false};

struct Parent : Tracked {
  explicit Parent(Obj* c) : child(c) {}
  ~Parent() {
    if (g_phase.load() == kHelperIn) g_parent_destroyed_in_window = true;
  }
  kovan::Atomic<Obj> child;
};

TEST(HelperSource, RetiredNodeHoldingTheSourceOutlivesTheHelper) {
  g_phase = 0;
  g_parent_destroyed_in_window = false;
  Obj* leaf = new Obj(3);
  kovan::Atomic<Parent> root(new Parent(leaf));
  kovan::flush();  // this thread's partial batch is empty
  std::latch loaded(1), retired(1);
  int seen = 0;
  std::thread requester([&] {
    {
      kovan::Guard g = kovan::pin();
      Parent* parent = root.load(g);  // born before this guard's era
      loaded.count_down();
      retired.wait();                       // parent is unlinked and retired meanwhile
      seen = parent->child.load(g)->value;  // helped slow path (hooks)
    }  // unpin: lets go of the parent's batch while the helper is stopped
    advance_to(kReleased);
  });
  loaded.wait();
  Parent* parent = root.load_unprotected();
  root.store(nullptr);
  // One batch {parent, young (the counting node, born after the requester's era)}: the
  // split by birth keeps them together only when the young node is too few for a batch of
  // its own, which this thread's guard arranges (a second slot whose era covers the young
  // node, E1 < birth(young) <= E2). The batch is attached to both slots; this thread lets
  // go of it at once, so the requester's unpin finishes it.
  const std::uint64_t e0 = kovan::stats().era;
  while (kovan::stats().era < e0 + 2) {
    for (std::uint32_t i = 0; i < kovan::kEraFrequency; ++i) Plain tmp;
  }
  Obj* young = new Obj(-1);
  {
    kovan::Guard outer = kovan::pin();
    kovan::retire(parent);
    kovan::retire(young);
    kovan::flush();
  }
  install_hooks();
  retired.count_down();
  wait_for(kPublished);
  std::thread advancer([] {
    while (g_phase.load() < kHelperIn) {
      for (std::uint32_t i = 0; i < kovan::kEraFrequency; ++i) Plain tmp;
    }
  });
  requester.join();
  advancer.join();
  remove_hooks();
  EXPECT_EQ(seen, 3);
  EXPECT_FALSE(g_parent_destroyed_in_window.load());
  kovan::flush();  // adopts the deferred batch and frees it
  delete leaf;
}

}  // namespace
