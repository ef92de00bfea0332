// Thread lifecycle edge cases (docs/RECLAIMER.md, "Thread lifecycle"):
//  * kovan used from a thread_local destructor that runs after kovan's own thread-exit
//    step: the thread's record must still be released and its batch handed over;
//  * a Guard that outlives its thread's exit step (held by a thread_local destroyed late,
//    or by a pthread key destructor): its record must not be reused with a corrupt nesting
//    depth, and the next owner of the record must be protected by its guards.
// Its own test binary: it counts thread records (the high-water mark).
#include <gtest/gtest.h>
#include <pthread.h>

#include <atomic>
#include <latch>
#include <optional>
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

// Destroyed after kovan's thread-exit step when constructed before the thread's first use of
// kovan (thread_local objects are destroyed in reverse order of construction).
struct LateUser {
  ~LateUser() {
    kovan::Guard g = kovan::pin();
    kovan::retire(new Item(0));
  }
};
// Function-local thread_locals are constructed one by one, on first use (namespace-scope
// ones of a file may be constructed together).
LateUser& late_user() {
  thread_local LateUser u;
  return u;
}

void late_user_thread() {
  (void)late_user();                  // constructed first
  { kovan::Guard g = kovan::pin(); }  // then kovan registers this thread
}

TEST(ThreadExit, KovanUsedFromLateThreadLocalDestructor) {
  kovan::flush();
  const kovan::Stats s0 = kovan::stats();
  const auto destroyed0 = Counts::destroyed.load();
  constexpr int kFew = 20;
  for (int i = 0; i < kFew; ++i) std::thread(late_user_thread).join();
  kovan::flush();  // adopts what the exited threads handed over
  const kovan::Stats s1 = kovan::stats();
  // Each thread released its record (reused by the next one) and handed its batch over.
  EXPECT_LE(s1.threads, s0.threads + 2);
  EXPECT_EQ(s1.retired - s0.retired, std::uint64_t{kFew});
  EXPECT_EQ(s1.reclaimed - s0.reclaimed, std::uint64_t{kFew});
  EXPECT_EQ(Counts::destroyed.load() - destroyed0, kFew);
  // More such threads, one after another, than kovan has records.
  constexpr int kMany = 600;
  for (int i = 0; i < kMany; ++i) std::thread(late_user_thread).join();
  kovan::flush();
  const kovan::Stats s2 = kovan::stats();
  EXPECT_LE(s2.threads, s0.threads + 2);
  EXPECT_EQ(s2.retired - s2.reclaimed, s0.retired - s0.reclaimed);
}

// Checks that a thread that pins now (and so likely takes the record the previous thread
// left) is protected: its loaded node survives being unlinked, retired and flushed.
void expect_next_owner_protected() {
  kovan::Atomic<Item> cell(new Item(5));
  std::latch loaded(1), retired(1);
  bool alive = false;
  std::thread next_owner([&] {
    kovan::Guard g = kovan::pin();
    Item* n = cell.load(g);
    loaded.count_down();
    retired.wait();
    alive = n->alive();
  });
  loaded.wait();
  Item* removed = nullptr;
  {
    kovan::Guard g = kovan::pin();
    removed = cell.exchange(new Item(6), g);
  }
  kovan::retire(removed);
  kovan::flush();  // attached to the next owner's slot if it is active, else freed
  retired.count_down();
  next_owner.join();
  EXPECT_TRUE(alive);
  kovan::Guard g = kovan::pin();
  delete cell.exchange(nullptr, g);
}

struct GuardHolder {
  std::optional<kovan::Guard> guard;
};
GuardHolder& holder() {
  thread_local GuardHolder h;
  return h;
}

TEST(ThreadExit, GuardInLateThreadLocal) {
  std::thread([] {
    GuardHolder& h = holder();  // constructed before kovan registers the thread
    h.guard.emplace(kovan::pin());
  }).join();
  expect_next_owner_protected();
  expect_next_owner_protected();
}

// A Guard destroyed by a pthread key destructor: on glibc key destructors run after every
// thread_local destructor, in key order, so this key (created after kovan's) runs after
// kovan's own exit step. The destructor stops until the test lets it go, so that another
// thread pins while the late guard is still alive, and again after it is gone.
struct LateGuard {
  kovan::Guard* guard = nullptr;
  std::latch* in_destructor = nullptr;
  std::latch* go = nullptr;
};

pthread_key_t late_guard_key() {
  static const pthread_key_t key = [] {
    pthread_key_t k;
    EXPECT_EQ(pthread_key_create(&k,
                                 [](void* p) {
                                   auto* lg = static_cast<LateGuard*>(p);
                                   lg->in_destructor->count_down();
                                   lg->go->wait();
                                   delete lg->guard;
                                 }),
              0);
    return k;
  }();
  return key;
}

TEST(ThreadExit, GuardDestroyedAfterThreadExitStep) {
  const pthread_key_t key = late_guard_key();
  const kovan::Stats s0 = kovan::stats();
  for (int i = 0; i < 3; ++i) {
    std::latch in_destructor(1), go(1);
    LateGuard lg{nullptr, &in_destructor, &go};
    std::thread exiting([&] {
      lg.guard = new kovan::Guard(kovan::pin());
      ASSERT_EQ(pthread_setspecific(key, &lg), 0);
      kovan::Guard inner = kovan::pin();  // nested, released normally
    });
    in_destructor.wait();           // past kovan's exit step, the outer guard still alive
    expect_next_owner_protected();  // must not be handed that thread's record
    go.count_down();
    exiting.join();
    expect_next_owner_protected();  // after the late guard was destroyed
  }
  // The record held by the late guard was released once that guard was destroyed.
  EXPECT_LE(kovan::stats().threads, s0.threads + 3);
}

// The exit step with a late guard alive: it lets go of the guard's batches and runs the
// deletions they release right there, and those destructors use kovan (pin, load, retire,
// allocate) on the exiting thread's record while the late guard still holds it. By the
// time a later key destructor runs, every such node must be deleted, the record must not
// have been handed to another thread, and what the destructors retired must be handed over.
kovan::Atomic<Item>& shared_cell() {
  static kovan::Atomic<Item> cell(new Item(7));
  return cell;
}

struct UsesKovanWhenDestroyed : Item {
  static inline std::atomic<int> destroyed{0};
  UsesKovanWhenDestroyed() : Item(1) {}
  ~UsesKovanWhenDestroyed() {
    kovan::Guard g = kovan::pin();
    if (shared_cell().load(g)->value != 7) std::abort();
    kovan::retire(new Item(2));
    destroyed.fetch_add(1);
  }
};

TEST(ThreadExit, ExitStepDeletionsUseKovanWhileALateGuardLives) {
  constexpr int kNodes = 1'000;  // several times kFreeQuota
  const pthread_key_t key = late_guard_key();
  kovan::flush();
  const kovan::Stats s0 = kovan::stats();
  std::vector<UsesKovanWhenDestroyed*> nodes;
  for (int i = 0; i < kNodes; ++i) nodes.push_back(new UsesKovanWhenDestroyed());
  UsesKovanWhenDestroyed::destroyed = 0;
  std::latch pinned(1), retired(1), in_destructor(1), go(1);
  LateGuard lg{nullptr, &in_destructor, &go};
  std::thread exiting([&] {
    lg.guard = new kovan::Guard(kovan::pin());  // protects the nodes below (born earlier)
    (void)shared_cell().load(*lg.guard);
    ASSERT_EQ(pthread_setspecific(key, &lg), 0);
    pinned.count_down();
    retired.wait();
  });
  pinned.wait();
  for (auto* n : nodes) kovan::retire(n);
  kovan::flush();  // attached to the exiting thread's slot, held by the late guard
  EXPECT_EQ(UsesKovanWhenDestroyed::destroyed.load(), 0);
  retired.count_down();
  in_destructor.wait();  // kovan's exit step is over; the late guard is alive
  EXPECT_EQ(UsesKovanWhenDestroyed::destroyed.load(), kNodes);
  expect_next_owner_protected();  // the exiting thread's record was not released
  go.count_down();
  exiting.join();
  kovan::flush();  // adopts what the destructors retired
  const kovan::Stats s1 = kovan::stats();
  EXPECT_EQ(s1.retired - s0.retired, s1.reclaimed - s0.reclaimed);
  EXPECT_EQ(s1.retired - s0.retired, static_cast<std::uint64_t>(2 * kNodes) + 1);
}

}  // namespace
