// What the public API protects, and for how long (kovan.hpp, "WHAT A GUARD PROTECTS").
//
// Each test builds the one situation where a pointer handed out by the API is born after the
// era its guard published, then makes the node unreachable, retires it and forces the batch
// out with flush(): a node the guard does not cover is freed on the spot, so reading it is a
// use-after-free (AddressSanitizer reports it; without ASan the canary shows it). The era is
// moved by allocating on the calling thread (every kEraFrequency allocations advance it), so
// the tests are deterministic; one concurrent test repeats the Atom<T> case under a
// background writer, as a user would hit it.
#include <gtest/gtest.h>

#include <atomic>
#include <latch>
#include <thread>

#include "kovan/kovan.hpp"
#include "tracked.hpp"

namespace {

using kovan_test::Counts;
using kovan_test::kAlive;
using kovan_test::kDead;
using kovan_test::Tracked;

struct Item : Tracked {
  explicit Item(int v) : value(v) {}
  int value;
};

// A plain value for Atom<T>, with a canary that its destructor overwrites.
struct Val {
  explicit Val(int x) : v(x) {}
  Val(const Val& o) : v(o.v) {}
  Val& operator=(const Val&) = delete;
  ~Val() { canary = kDead; }
  bool alive() const { return canary == kAlive; }
  int v;
  volatile std::uint64_t canary = kAlive;
};

struct Plain : kovan::Node {};

// Moves the global era forward by at least two steps with allocations on this thread (the
// calling thread's guard, if any, keeps the era it published).
void advance_era() {
  const std::uint64_t e0 = kovan::stats().era;
  while (kovan::stats().era < e0 + 2) {
    for (std::uint32_t i = 0; i < kovan::kEraFrequency; ++i) Plain tmp;
  }
}

// Another thread replaces the value of `cell`, retires what it removed and hands its batch
// over at once (flush), so the removed node is freed unless some guard covers it.
void replace_and_retire_elsewhere(kovan::Atomic<Item>& cell) {
  std::thread([&] {
    Item* removed = nullptr;
    {
      kovan::Guard g = kovan::pin();
      removed = cell.exchange(new Item(-1), g);
    }
    kovan::retire(removed);
    kovan::flush();
  }).join();
}

// --- Atom<T> ------------------------------------------------------------------------

TEST(ApiSafety, AtomUpdateHandleOutlivesReplacement) {
  kovan::Atom<Val> cell(1);
  kovan::flush();  // start from an empty partial batch
  kovan::Guard outer = kovan::pin();
  auto h = cell.update([](const Val& cur) {
    advance_era();  // the installed node is born after the era `outer` published
    return Val(cur.v + 1);
  });
  ASSERT_EQ(h->v, 2);
  kovan::flush();  // hands over the node update replaced (born before outer: held)
  // Another thread replaces h's node, retires it and hands its batch over: h's node is
  // freed now unless h's guard covers it.
  std::thread([&] {
    cell.store(Val(3));
    kovan::flush();
  }).join();
  EXPECT_TRUE(h->alive());
  EXPECT_EQ(h->v, 2);
}

TEST(ApiSafety, AtomExchangeHandleOutlivesReclamation) {
  kovan::Atom<Val> cell(1);
  kovan::flush();
  kovan::Guard outer = kovan::pin();
  advance_era();
  std::thread([&] { cell.store(Val(2)); }).join();  // a node born after outer's era
  kovan::flush();
  auto h = cell.exchange(Val(3));  // h -> that node, which exchange retired
  kovan::flush();
  EXPECT_TRUE(h->alive());
  EXPECT_EQ(h->v, 2);
}

// The user's report: update under an outer guard while another thread keeps storing.
TEST(ApiSafety, AtomUpdateUnderOuterGuardWithBackgroundWriter) {
  kovan::Atom<Val> cell(0);
  std::atomic<bool> stop{false};
  std::atomic<std::uint64_t> stores{0};
  std::thread writer([&] {
    for (int i = 0; !stop.load(std::memory_order_relaxed); ++i) {
      cell.store(Val(i));
      stores.fetch_add(1, std::memory_order_release);
    }
  });
  long failures = 0;
  for (int it = 0; it < 100; ++it) {
    kovan::Guard outer = kovan::pin();
    const std::uint64_t era0 = kovan::stats().era;
    auto h = cell.update([&](const Val& cur) {
      // Let the era move between the guard's publication and the new node's birth.
      while (kovan::stats().era == era0) std::this_thread::yield();
      return Val(cur.v + 1);
    });
    // Wait until the writer has replaced our node and retired enough after it for its batch
    // to be attached and finished.
    const std::uint64_t s0 = stores.load(std::memory_order_acquire);
    while (stores.load(std::memory_order_acquire) < s0 + 3 * kovan::kRetireBatch) {
      std::this_thread::yield();
    }
    if (!h->alive()) ++failures;
  }
  stop.store(true);
  writer.join();
  EXPECT_EQ(failures, 0);
}

// --- Atomic<T> ----------------------------------------------------------------------

TEST(ApiSafety, CompareExchangeDesiredIsCoveredByTheGuard) {
  Item* initial = new Item(0);
  kovan::Atomic<Item> cell(initial);
  kovan::Guard g = kovan::pin();
  Item* cur = cell.load(g);
  advance_era();
  Item* mine = new Item(1);  // born after g's era
  ASSERT_TRUE(cell.compare_exchange_strong(cur, mine, g));
  replace_and_retire_elsewhere(cell);  // another thread unlinks and retires `mine`
  EXPECT_TRUE(mine->alive());
  EXPECT_EQ(mine->value, 1);
  g.reset();
  delete initial;
  delete cell.load_unprotected();
}

TEST(ApiSafety, ExchangeResultIsCoveredByTheGuard) {
  Item* initial = new Item(0);
  kovan::Atomic<Item> cell(initial);
  kovan::flush();
  kovan::Guard g = kovan::pin();
  advance_era();
  Item* young = nullptr;
  std::thread([&] {
    young = new Item(1);  // born after g's era, installed by another thread
    cell.store(young);
  }).join();
  // (Exchanging in nullptr: a fresh node would be covered first, which raises the era and
  // would hide a missing cover of the result.)
  Item* old = cell.exchange(nullptr, g);
  ASSERT_EQ(old, young);
  kovan::retire(old);
  kovan::flush();  // `old` alone in a batch: freed now unless g covers it
  EXPECT_TRUE(old->alive());
  EXPECT_EQ(old->value, 1);
  g.reset();
  delete initial;
}

TEST(ApiSafety, StoreWithGuardCoversTheStoredNode) {
  Item* initial = new Item(0);
  kovan::Atomic<Item> cell(initial);
  kovan::Guard g = kovan::pin();
  advance_era();
  Item* mine = new Item(1);
  cell.store(mine, g);
  replace_and_retire_elsewhere(cell);
  EXPECT_TRUE(mine->alive());
  g.reset();
  delete initial;
  delete cell.load_unprotected();
}

// --- birth_era() ----------------------------------------------------------------------

// A retired node's birth era must not change while a guard still covers it: the first node
// of a batch (its counting node) used to have its birth overwritten with the batch's
// minimum birth when the batch was attached.
TEST(ApiSafety, BirthEraDoesNotChangeWhenTheNodeIsRetired) {
  kovan::flush();             // empty partial batch: the next retired node counts the batch
  Item* older = new Item(0);  // born at an older era
  advance_era();
  kovan::Atomic<Item> cell(new Item(1));
  kovan::Guard g = kovan::pin();
  Item* n = cell.load(g);
  const std::uint64_t born = n->birth_era();
  ASSERT_LT(older->birth_era(), born);
  kovan::retire(cell.exchange(nullptr, g));  // n: the batch's counting node
  kovan::retire(older);                      // an older node in the same batch
  kovan::flush();                            // attached to g's slot, which covers both
  EXPECT_TRUE(n->alive());
  EXPECT_EQ(n->birth_era(), born);
}

// The same, with the reads concurrent with the attach (ThreadSanitizer reports a data race
// on the birth field if the runtime writes it).
TEST(ApiSafety, BirthEraReadConcurrentlyWithRetire) {
  for (int round = 0; round < 50; ++round) {
    Item* older = new Item(-1);  // born before the node the reader watches
    advance_era();
    kovan::Atomic<Item> cell(new Item(round));
    std::latch loaded(1), retired(1);
    std::atomic<bool> changed{false};
    std::thread reader([&] {
      kovan::Guard g = kovan::pin();
      Item* n = cell.load(g);
      const std::uint64_t born = n->birth_era();
      loaded.count_down();
      for (int i = 0; i < 2000; ++i) {
        if (n->birth_era() != born) changed.store(true);
      }
      retired.wait();
      if (n->birth_era() != born) changed.store(true);
    });
    loaded.wait();
    {
      kovan::Guard g = kovan::pin();
      Item* n = cell.exchange(nullptr, g);
      kovan::flush();  // n counts the next batch
      kovan::retire(n);
      kovan::retire(older);
    }
    kovan::flush();
    retired.count_down();
    reader.join();
    EXPECT_FALSE(changed.load()) << "round " << round;
  }
  kovan::flush();
}

}  // namespace
