// Single-threaded semantics of the public API: guards, Atomic operations, retire/flush,
// Atom<T>, stats.
#include <gtest/gtest.h>

#include <string>
#include <thread>
#include <utility>
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

TEST(Lifecycle, IdleThreadHoldsNothingAfterUnpin) {
  // A thread that pinned once and is now idle must not hold batches retired later.
  std::atomic<bool> pinned_once{false};
  std::atomic<bool> done{false};
  std::thread idle([&] {
    { kovan::Guard g = kovan::pin(); }
    pinned_once.store(true);
    while (!done.load()) std::this_thread::yield();
  });
  while (!pinned_once.load()) std::this_thread::yield();
  const auto before = Counts::destroyed.load();
  for (int i = 0; i < 500; ++i) kovan::retire(new Item(i));
  kovan::flush();
  EXPECT_EQ(Counts::destroyed.load() - before, 500);
  done.store(true);
  idle.join();
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

// ---------------------------------------------------------------------------------------
// The node header (kovan.cpp, THE NODE HEADER, H1-H4): four words, three of them shared by
// uses whose lifetimes never overlap.
static_assert(sizeof(kovan::Node) == 32, "kovan::Node's header is 32 bytes");

namespace {

// Node types of different sizes, each counting its own destructions: a node deleted through
// another type's deleter (a lost or overwritten type id, H3) shows up as a wrong count, and
// under ASan as a sized delete of the wrong size.
template <int Pad>
struct Sized : Tracked {
  static inline std::atomic<std::int64_t> deleted{0};
  ~Sized() { deleted.fetch_add(1, std::memory_order_relaxed); }
  char pad[Pad] = {};
};

TEST(Header, EachRetiredTypeIsDeletedByItsOwnDeleter) {
  using A = Sized<8>;
  using B = Sized<40>;
  using C = Sized<200>;
  const auto a0 = A::deleted.load(), b0 = B::deleted.load(), c0 = C::deleted.load();
  const auto s0 = kovan::stats();
  // A pinned reader on another thread makes every batch attach to its slot (list nodes and
  // counting nodes both in use, H1-H2) until it lets go.
  std::atomic<bool> pinned{false}, done{false};
  std::thread reader([&] {
    kovan::Guard g = kovan::pin();
    pinned.store(true);
    while (!done.load()) std::this_thread::yield();
  });
  while (!pinned.load()) std::this_thread::yield();
  constexpr int kEach = 3000;
  for (int i = 0; i < kEach; ++i) {  // interleaved: every batch mixes the three types
    kovan::retire(new A());
    kovan::retire(new B());
    kovan::retire(new C());
  }
  done.store(true);
  reader.join();
  kovan::flush();
  EXPECT_EQ(A::deleted.load() - a0, kEach);
  EXPECT_EQ(B::deleted.load() - b0, kEach);
  EXPECT_EQ(C::deleted.load() - c0, kEach);
  const auto s1 = kovan::stats();
  EXPECT_EQ(s1.retired - s0.retired, 3u * kEach);
  // Process-wide: nodes that earlier tests left on other threads' stacks may be freed too.
  EXPECT_GE(s1.reclaimed - s0.reclaimed, 3u * kEach);
}

// The birth era is never shared: protected nodes keep reading their births while their
// batches are emitted and attached (their other words then hold slot links and counts).
TEST(Header, BirthStaysReadableWhileRetiredAndAttached) {
  kovan::Atomic<Item> cell{new Item(-1)};
  kovan::Guard g = kovan::pin();
  // Every node retired below was loaded (or exchanged out) under g: all stay protected, and
  // their batches attach to this thread's own slot until g is reset. Among them are list
  // nodes and counting nodes of many batches.
  std::vector<std::pair<Item*, std::uint64_t>> retired;
  for (std::uint32_t i = 0; i < 8 * kovan::kRetireBatch; ++i) {
    Item* old = cell.exchange(new Item(static_cast<int>(i)), g);
    retired.emplace_back(old, old->birth_era());
    kovan::retire(old);
    if (i % 16 == 15) {
      for (const auto& [p, birth] : retired) {
        ASSERT_EQ(p->birth_era(), birth);
        ASSERT_TRUE(p->alive());
      }
    }
  }
  g.reset();
  kovan::flush();
  delete cell.load_unprotected();
}

}  // namespace
