// Single-threaded semantics of the public API: guards, Atomic operations, retire/flush,
// Atom<T>, stats.
#include <gtest/gtest.h>

#include <latch>
#include <string>
#include <thread>
#include <vector>

#include "kovan/kovan.hpp"
#include "tracked.hpp"

namespace {

using kovan_test::Counts;
using kovan_test::Tracked;

struct Item : Tracked {
  explicit Item(int v) : value(v) {}
  int value;
};

TEST(Lifecycle, RetireThenFlushFreesExactlyOnce) {
  const auto before = Counts::destroyed.load();
  const auto s0 = kovan::stats();
  for (int i = 0; i < 1000; ++i) kovan::retire(new Item(i));
  kovan::flush();
  EXPECT_EQ(Counts::destroyed.load() - before, 1000);
  const auto s1 = kovan::stats();
  EXPECT_EQ(s1.retired - s0.retired, 1000u);
  EXPECT_EQ(s1.reclaimed - s0.reclaimed, 1000u);
  kovan::flush();  // a second flush frees nothing twice
  EXPECT_EQ(Counts::destroyed.load() - before, 1000);
}

TEST(Lifecycle, GuardKeepsLoadedNodeAliveUntilReleased) {
  kovan::Atomic<Item> cell(new Item(7));
  const auto before = Counts::destroyed.load();
  Item* seen = nullptr;
  {
    kovan::Guard g = kovan::pin();
    seen = cell.load(g);
    ASSERT_EQ(seen->value, 7);
    Item* old = cell.exchange(new Item(8), g);
    ASSERT_EQ(old, seen);
    kovan::retire(old);
    kovan::flush();  // attaches to our own (pinned) slot: must not free
    EXPECT_TRUE(seen->alive());
    EXPECT_EQ(seen->value, 7);
    EXPECT_EQ(Counts::destroyed.load() - before, 0);
  }
  // Guard gone: the slot let go of the batch, which is freed on the spot.
  EXPECT_EQ(Counts::destroyed.load() - before, 1);
  kovan::Guard g = kovan::pin();
  EXPECT_EQ(cell.load(g)->value, 8);
  g.reset();
  delete cell.load_unprotected();
}

TEST(Lifecycle, GuardsNestAndMove) {
  kovan::Atomic<Item> cell(new Item(1));
  const auto before = Counts::destroyed.load();
  kovan::Guard outer = kovan::pin();
  Item* p = cell.load(outer);
  {
    kovan::Guard inner = kovan::pin();
    kovan::retire(cell.exchange(new Item(2), inner));
  }  // the inner guard's end must not unpin the thread
  kovan::flush();
  EXPECT_TRUE(p->alive());
  EXPECT_EQ(Counts::destroyed.load() - before, 0);
  kovan::Guard moved = std::move(outer);
  EXPECT_FALSE(outer.active());  // NOLINT(bugprone-use-after-move): checking the moved-from state
  EXPECT_TRUE(moved.active());
  EXPECT_TRUE(p->alive());
  moved.reset();
  EXPECT_EQ(Counts::destroyed.load() - before, 1);
  delete cell.load_unprotected();
}

TEST(Lifecycle, CompareExchangeSemantics) {
  kovan::Guard g = kovan::pin();
  Item* a = new Item(1);
  Item* b = new Item(2);
  Item* c = new Item(3);
  kovan::Atomic<Item> cell(a);
  Item* expected = b;  // wrong guess
  EXPECT_FALSE(cell.compare_exchange_strong(expected, c, g));
  EXPECT_EQ(expected, a);  // reloaded through the guard
  EXPECT_TRUE(cell.compare_exchange_strong(expected, c, g));
  EXPECT_EQ(cell.load(g), c);
  expected = c;
  while (!cell.compare_exchange_weak(expected, b, g)) {
    ASSERT_EQ(expected, c);  // weak may fail spuriously, but only with the same value
  }
  EXPECT_EQ(cell.load(g), b);
  EXPECT_EQ(cell.exchange(nullptr, g), b);
  EXPECT_EQ(cell.load(g), nullptr);
  kovan::Atomic<Item> empty;
  EXPECT_EQ(empty.load(g), nullptr);
  delete a;
  delete b;
  delete c;
}

TEST(Lifecycle, BirthErasAreStampedAndGrow) {
  Item first(0);
  const auto e0 = first.birth_era();
  EXPECT_GE(e0, 1u);
  // Enough allocations on this thread advance the era.
  std::uint64_t last = e0;
  for (std::uint32_t i = 0; i < 4 * kovan::kEraFrequency; ++i) {
    Item x(1);
    EXPECT_GE(x.birth_era(), last);
    last = x.birth_era();
  }
  EXPECT_GT(last, e0);
  EXPECT_GE(kovan::stats().era, last);
}

TEST(Lifecycle, IdleThreadHoldsOnlyNodesBornByItsLastEra) {
  // A thread that pinned once and is now idle may keep its slot active at the era E of its
  // last unpin (docs/RECLAIMER.md, "Idle threads"): it holds nodes born at or before E,
  // never nodes born after E, and nothing once it has flushed.
  std::vector<Item*> old;
  for (int i = 0; i < 500; ++i) old.push_back(new Item(i));  // born at or before E
  std::atomic<int> step{0};
  std::thread idle([&] {
    { kovan::Guard g = kovan::pin(); }
    step.store(1);
    while (step.load() != 2) std::this_thread::yield();
    kovan::flush();  // ends the idle reservation, deleting what it released
    step.store(3);
    while (step.load() != 4) std::this_thread::yield();
  });
  while (step.load() != 1) std::this_thread::yield();
  kovan::flush();  // this thread's own idle reservation (earlier tests) out of the way
  const auto era_e = kovan::stats().era;
  // Move the era past E: this thread's allocations advance it every kEraFrequency.
  for (std::uint32_t i = 0; i < 2 * kovan::kEraFrequency; ++i) delete new Item(0);
  ASSERT_GT(kovan::stats().era, era_e);
  auto before = Counts::destroyed.load();
  for (int i = 0; i < 500; ++i) kovan::retire(new Item(i));  // born after E
  kovan::flush();
  EXPECT_EQ(Counts::destroyed.load() - before, 500) << "young nodes are never held";
  before = Counts::destroyed.load();
  for (Item* it : old) kovan::retire(it);
  kovan::flush();
  EXPECT_LT(Counts::destroyed.load() - before, 500) << "the idle slot reserves era E";
  step.store(2);
  while (step.load() != 3) std::this_thread::yield();
  kovan::flush();
  EXPECT_EQ(Counts::destroyed.load() - before, 500) << "a flushed idle thread holds nothing";
  step.store(4);
  idle.join();
}

// The pins that skip their fence (docs/RECLAIMER.md, "Idle-active slots"). Thread A pins
// and unpins once, so that its slot may stay active, and optionally flushes; then this
// thread runs `between`; then A pins again, loads the cell and holds the node while this
// thread unlinks it, retires it and flushes. The node must survive until A's guard ends.
// Returns whether it did (a freed node's canary reads kDead; ASan reports the read).
template <class Between>
bool repin_protects(bool a_flushes, Between between) {
  kovan::Atomic<Item> cell(new Item(1));
  std::latch idle(1), go(1), loaded(1), retired(1);
  bool alive = false;
  std::thread a([&] {
    { kovan::Guard g = kovan::pin(); }
    if (a_flushes) kovan::flush();  // deactivates the slot that stayed active
    idle.count_down();
    go.wait();
    kovan::Guard g = kovan::pin();
    Item* p = cell.load(g);
    loaded.count_down();
    retired.wait();
    alive = p->alive();
  });
  idle.wait();
  between(cell);
  go.count_down();
  loaded.wait();
  {
    kovan::Guard g = kovan::pin();
    kovan::retire(cell.exchange(new Item(3), g));
  }
  kovan::flush();  // attaches the batch now, and deletes it if no slot holds it
  retired.count_down();
  a.join();
  kovan::flush();
  delete cell.load_unprotected();
  return alive;
}

TEST(Lifecycle, ARepinWithTheEraUnchangedProtectsWhatItLoads) {
  // Nothing in between: A's next pin is the fenceless one.
  EXPECT_TRUE(repin_protects(false, [](kovan::Atomic<Item>&) {}));
}

TEST(Lifecycle, ARepinAfterFlushProtectsWhatItLoads) {
  // A's flush deactivated its slot: the next pin must activate it again, era unchanged.
  EXPECT_TRUE(repin_protects(true, [](kovan::Atomic<Item>&) {}));
}

TEST(Lifecycle, ARepinAfterTheEraMovedProtectsWhatItLoads) {
  // The era moves while A is idle, and the cell then holds a node born after A's last
  // published era: A's next pin must publish the new era before its load.
  EXPECT_TRUE(repin_protects(false, [](kovan::Atomic<Item>& cell) {
    const auto e = kovan::stats().era;
    for (std::uint32_t i = 0; i < 2 * kovan::kEraFrequency; ++i) delete new Item(0);
    EXPECT_GT(kovan::stats().era, e);
    kovan::Guard g = kovan::pin();
    kovan::retire(cell.exchange(new Item(2), g));  // born after A's era
  }));
}

TEST(Atom, LoadStoreExchangeUpdate) {
  kovan::Atom<std::string> cell(std::string("one"));
  EXPECT_EQ(*cell.load(), "one");
  cell.store("two");
  EXPECT_EQ(*cell.load(), "two");
  {
    auto h = cell.load();
    auto old = cell.exchange("three");
    EXPECT_EQ(*old, "two");
    EXPECT_EQ(*h, "two");  // still alive: both handles pin the thread
    EXPECT_EQ(*cell.load(), "three");
  }
  auto current = cell.load();
  EXPECT_TRUE(cell.compare_exchange(current, "four"));
  EXPECT_FALSE(cell.compare_exchange(current, "five"));  // cell moved on
  EXPECT_EQ(*cell.load(), "four");
  auto installed = cell.update([](const std::string& s) {
    std::string t = s;
    t.push_back('!');
    return t;
  });
  EXPECT_EQ(*installed, "four!");
  EXPECT_EQ(*cell.load(), "four!");
}

TEST(Atom, ConcurrentUpdatesAreNotLost) {
  kovan::Atom<long> counter(0L);
  constexpr int kThreads = 4, kPer = 5000;
  std::vector<std::thread> ts;
  for (int t = 0; t < kThreads; ++t)
    ts.emplace_back([&] {
      for (int i = 0; i < kPer; ++i) (void)counter.update([](long v) { return v + 1; });
    });
  for (auto& t : ts) t.join();
  EXPECT_EQ(*counter.load(), long{kThreads} * kPer);
}

}  // namespace
