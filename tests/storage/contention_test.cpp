// Write contention (docs/STORAGE.md, section 3, "Contention"): one-shot writes wait for a
// busy commit lock instead of failing, even when its holder is stopped for a long time; a
// snapshot-isolation transaction retried against a one-shot writer of the same key
// commits within a bounded number of attempts; one-shot writes of several keys, waiting in
// key order, never deadlock.
//
// Threads start on latches; the one timed wait (the holder stopped for 1.5 s) is the
// simulated preemption itself, and it begins only once a writer is seen waiting.
#include <gtest/gtest.h>
#include <pthread.h>
#include <sched.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdio>
#include <latch>
#include <mutex>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "storage/engine.hpp"
#include "test_util.hpp"

namespace kv::storage {
namespace {

using testing::cat;

#if defined(__SANITIZE_THREAD__) || defined(__SANITIZE_ADDRESS__)
constexpr bool kSanitized = true;
#else
constexpr bool kSanitized = false;
#endif
constexpr int scaled(int n) { return kSanitized ? n / 4 : n; }

// Pins the calling thread to the i-th CPU it may run on (when there are at least two), so
// that racing threads really overlap on a loaded machine.
void pin_to_own_cpu(int i) {
  cpu_set_t allowed;
  if (sched_getaffinity(0, sizeof allowed, &allowed) != 0 || CPU_COUNT(&allowed) < 2) return;
  int seen = 0;
  for (int cpu = 0; cpu < CPU_SETSIZE; ++cpu) {
    if (!CPU_ISSET(cpu, &allowed)) continue;
    if (seen++ == i) {
      cpu_set_t one;
      CPU_ZERO(&one);
      CPU_SET(cpu, &one);
      pthread_setaffinity_np(pthread_self(), sizeof one, &one);
      return;
    }
  }
}

// Stops the commit of one chosen thread inside its critical section (after it took its
// locks and its timestamp, before it builds its versions) until released: a lock holder
// preempted for as long as the test wants.
class StopHolder final : public AllocationFaults {
 public:
  void choose(std::thread::id id) {
    std::lock_guard lk(mu_);
    holder_ = id;
  }
  void before_allocation(Site site) override {
    if (site != Site::kVersion) return;
    std::unique_lock lk(mu_);
    if (std::this_thread::get_id() != holder_ || released_) return;
    stopped_ = true;
    cv_.notify_all();
    cv_.wait(lk, [&] { return released_; });
  }
  void wait_stopped() {
    std::unique_lock lk(mu_);
    cv_.wait(lk, [&] { return stopped_; });
  }
  void release() {
    std::lock_guard lk(mu_);
    released_ = true;
    cv_.notify_all();
  }

 private:
  std::mutex mu_;
  std::condition_variable cv_;
  std::thread::id holder_;
  bool stopped_ = false;
  bool released_ = false;
};

// A lock holder stopped for 1.5 s — longer than the old retry budget of a one-shot write
// (1000 attempts with backoff, about 1 s), after which it answered CONFLICT. One-shot puts,
// deletes and conditional puts of the held key must all succeed.
TEST(Contention, OneShotWritesNeverConflictWithPreemptedHolder) {
  auto stop = std::make_shared<StopHolder>();
  Options o;
  o.alloc_faults = stop;
  Engine e(o);
  ASSERT_TRUE(e.put("hot", "v0").ok());

  std::thread holder([&] {
    stop->choose(std::this_thread::get_id());
    auto t = e.begin(Isolation::kSnapshot);
    ASSERT_TRUE(t.ok());
    ASSERT_TRUE(t->put("hot", "held").ok());
    auto c = t->commit();  // stops inside, holding the lock of "hot"
    EXPECT_TRUE(c.ok()) << c.status().to_string();
  });
  stop->wait_stopped();

  constexpr int kWriters = 3;
  constexpr int kOps = 4;
  std::atomic<int> conflicts{0};
  std::atomic<int> other_errors{0};
  std::atomic<int> done{0};
  std::latch go(kWriters);
  std::vector<std::thread> writers;
  for (int w = 0; w < kWriters; ++w) {
    writers.emplace_back([&, w] {
      go.arrive_and_wait();
      for (int i = 0; i < kOps; ++i) {
        Status s;
        switch ((w + i) % 3) {
          case 0: {
            auto p = e.put("hot", cat("p", w * 100 + i));
            s = p.ok() ? Status::Ok() : p.status();
            break;
          }
          case 1: {
            auto d = e.del("hot");
            s = d.ok() ? Status::Ok() : d.status();
            break;
          }
          default: {
            CondTxn req;  // no compares, puts only: reads nothing
            TxnOp op;
            op.type = TxnOp::Type::kPut;
            op.key = "hot";
            op.value = cat("c", w * 100 + i);
            req.success.push_back(op);
            op.key = "cold";
            req.success.push_back(op);
            auto r = e.txn(req);
            s = r.ok() ? Status::Ok() : r.status();
            break;
          }
        }
        if (s.code() == StatusCode::kConflict) {
          conflicts.fetch_add(1);
        } else if (!s.ok()) {
          other_errors.fetch_add(1);
        }
      }
      done.fetch_add(1);
    });
  }
  // The preemption starts once a writer waits for the lock (or, with one-shot writes that
  // do not wait, once they all gave up), and lasts 1.5 s.
  while (e.stats().commit_lock_waits == 0 && done.load() < kWriters) std::this_thread::yield();
  std::this_thread::sleep_for(std::chrono::milliseconds(1500));
  const int finished_while_held = done.load();
  stop->release();
  holder.join();
  for (auto& t : writers) t.join();

  EXPECT_EQ(conflicts.load(), 0) << "one-shot writes answered CONFLICT while the holder was "
                                    "stopped";
  EXPECT_EQ(other_errors.load(), 0);
  EXPECT_EQ(finished_while_held, 0) << "a writer finished without the lock's holder";
  EXPECT_GE(e.stats().commit_lock_waits, 1U);
  // The delete read the key before the holder's commit, so its first attempt lost its
  // validation and ran again: a retry inside the call, not an abort anyone saw.
  EXPECT_GE(e.stats().one_shot_retries, 1U);
  EXPECT_EQ(e.stats().aborts_conflict, 0U) << "a one-shot write's retry counted as an abort";
  // Every write after the holder's: the key holds one of the writers' values or is absent.
  auto r = e.get("hot");
  if (r.ok()) EXPECT_NE(r->value, "held");
}

// The window of a key, step by step (single-threaded, deterministic): it opens after two
// conflict aborts in a row of commits writing the key, not after one; a one-shot put then
// waits for it (counted in one_shot_hold_offs); a committed interactive transaction that
// writes the key closes it at once.
TEST(Contention, WindowOpensAfterTwoLossesAndClosesWhenTheLoserCommits) {
  Options o;
  o.contention_hold_off = std::chrono::milliseconds(300);  // longer than any step below
  Engine e(o);
  ASSERT_TRUE(e.put("k", "0").ok());
  // A snapshot-isolation write of "k" that loses to a one-shot put made after its begin.
  auto lose = [&] {
    auto t = e.begin(Isolation::kSnapshot);
    ASSERT_TRUE(t.ok());
    ASSERT_TRUE(t->put("k", "t").ok());
    ASSERT_TRUE(e.put("k", "o").ok());
    EXPECT_EQ(t->commit().code(), StatusCode::kConflict);
  };
  auto hold_offs = [&] { return e.stats().one_shot_hold_offs; };

  lose();
  ASSERT_TRUE(e.put("k", "a").ok());
  EXPECT_EQ(hold_offs(), 0U) << "a window opened after one loss";
  lose();  // two in a row: the window is open
  auto t = e.begin(Isolation::kSnapshot);
  ASSERT_TRUE(t.ok());
  ASSERT_TRUE(t->put("k", "winner").ok());
  ASSERT_TRUE(t->commit().ok());  // the loser commits: the window closes
  ASSERT_TRUE(e.put("k", "b").ok());
  EXPECT_EQ(hold_offs(), 0U) << "the window stayed open after the losing writer committed";

  lose();
  lose();  // open again
  auto p = e.put("k", "c");
  ASSERT_TRUE(p.ok());
  EXPECT_EQ(hold_offs(), 1U) << "a one-shot put did not wait for an open window";
  EXPECT_EQ(e.get("k")->value, "c");
}

struct RetryFigures {
  int transactions = 0;
  int max_attempts = 0;
  int p99_attempts = 0;
  double mean_attempts = 0;
  int gave_up = 0;
  std::uint64_t writer_puts = 0;
  std::uint64_t hold_offs = 0;
};

// One thread puts a hot key in a loop; another runs snapshot-isolation read-modify-write
// transactions of it (with a little work between the read and the commit, as a client's
// round trip), each retried until it commits or `give_up` attempts failed.
RetryFigures starve(std::chrono::microseconds hold_off, int transactions, int give_up) {
  Options o;
  o.contention_hold_off = hold_off;
  Engine e(o);
  for (int i = 0; i < 64; ++i) EXPECT_TRUE(e.put(cat("side", i), "x").ok());
  EXPECT_TRUE(e.put("hot", "0").ok());
  std::atomic<bool> stop{false};
  std::atomic<std::uint64_t> puts{0};
  std::atomic<int> unexpected{0};
  std::latch go(2);
  std::thread writer([&] {
    pin_to_own_cpu(0);
    go.arrive_and_wait();
    for (std::uint64_t i = 0; !stop.load(std::memory_order_relaxed); ++i) {
      auto p = e.put("hot", cat("w", static_cast<long long>(i)));
      if (!p.ok()) unexpected.fetch_add(1);
      puts.fetch_add(1, std::memory_order_relaxed);
    }
  });
  std::vector<int> attempts;
  attempts.reserve(static_cast<std::size_t>(transactions));
  int gave_up = 0;
  std::thread client([&] {
    pin_to_own_cpu(1);
    go.arrive_and_wait();
    for (int n = 0; n < transactions; ++n) {
      int a = 1;
      for (;; ++a) {
        auto t = e.begin(Isolation::kSnapshot);
        if (!t.ok()) {
          unexpected.fetch_add(1);
          break;
        }
        auto v = t->get("hot");
        // The work between read and commit: 64 point reads.
        for (int i = 0; i < 64; ++i) (void)t->get(cat("side", i));
        if (!t->put("hot", v.ok() ? v->value + "+" : "x").ok()) unexpected.fetch_add(1);
        auto c = t->commit();
        if (c.ok()) break;
        if (c.code() != StatusCode::kConflict) unexpected.fetch_add(1);
        if (a == give_up) {
          ++gave_up;
          break;
        }
      }
      attempts.push_back(a);
    }
    stop.store(true);
  });
  client.join();
  writer.join();
  EXPECT_EQ(unexpected.load(), 0);
  RetryFigures f;
  f.transactions = static_cast<int>(attempts.size());
  f.gave_up = gave_up;
  std::sort(attempts.begin(), attempts.end());
  if (!attempts.empty()) {
    f.max_attempts = attempts.back();
    f.p99_attempts = attempts[attempts.size() * 99 / 100];
    double sum = 0;
    for (int a : attempts) sum += a;
    f.mean_attempts = sum / static_cast<double>(attempts.size());
  }
  f.writer_puts = puts.load();
  f.hold_offs = e.stats().one_shot_hold_offs;
  return f;
}

void print(const char* label, const RetryFigures& f) {
  std::printf(
      "[contention] %s: %d SI transactions, attempts mean %.2f p99 %d max %d, gave up "
      "(%s) %d; writer puts %llu, hold-offs %llu\n",
      label, f.transactions, f.mean_attempts, f.p99_attempts, f.max_attempts, "200 in a row",
      f.gave_up, static_cast<unsigned long long>(f.writer_puts),
      static_cast<unsigned long long>(f.hold_offs));
}

// With the windows (default options), the worst transaction commits within 100 attempts
// (it needs about 12 losses in a row to reach the cap of the window, 51 ms, longer than a
// preemption of its thread on a loaded machine), and none gives up.
TEST(Contention, SnapshotTransactionsDoNotStarveAgainstOneShotWriter) {
  const RetryFigures f = starve(Options{}.contention_hold_off, scaled(5000), 200);
  print("with windows", f);
  // No transaction gives up (200 attempts in a row): before the windows 3-10 gave up in
  // every run. The worst one needs 2-12 attempts on an idle machine; with the two cores
  // oversubscribed (load average 14) 104-118 were seen, so the bound is the give-up limit.
  EXPECT_EQ(f.gave_up, 0);
  EXPECT_LT(f.max_attempts, 200);
  EXPECT_GT(f.writer_puts, 0U);
}

// The same workload without windows, for the figure (not asserted: how often the writer
// wins depends on the scheduler). Run with --gtest_also_run_disabled_tests.
TEST(Contention, DISABLED_FigureWithoutWindows) {
  print("without windows", starve(std::chrono::microseconds(0), scaled(5000), 200));
}

// One-shot writes of several keys (conditional transactions of puts, keys in random
// order) and serializable transactions writing the same keys: the one-shot writes wait in
// key order and never deadlock (the test would hang) or answer CONFLICT.
TEST(Contention, MultiKeyOneShotWritesWaitWithoutDeadlock) {
  Engine e;
  constexpr int kKeys = 6;
  const int rounds = scaled(2000);
  std::atomic<int> conflicts{0};
  std::atomic<int> other_errors{0};
  std::latch go(4);
  auto one_shot = [&](int id) {
    pin_to_own_cpu(id % 2);
    std::mt19937 rng(static_cast<unsigned>(id) * 31U + 7U);
    go.arrive_and_wait();
    for (int i = 0; i < rounds; ++i) {
      CondTxn req;
      std::vector<int> ks(kKeys);
      for (int k = 0; k < kKeys; ++k) ks[k] = k;
      std::shuffle(ks.begin(), ks.end(), rng);
      const std::string v = cat(cat("o", id) + "-", i);
      for (int k = 0; k < 3; ++k) {
        TxnOp op;
        op.type = TxnOp::Type::kPut;
        op.key = cat("k", ks[static_cast<std::size_t>(k)]);
        op.value = v;
        req.success.push_back(op);
      }
      auto r = e.txn(req);
      if (r.code() == StatusCode::kConflict) {
        conflicts.fetch_add(1);
      } else if (!r.ok()) {
        other_errors.fetch_add(1);
      }
    }
  };
  auto interactive = [&](int id) {
    pin_to_own_cpu(id % 2);
    std::mt19937 rng(static_cast<unsigned>(id) * 17U + 3U);
    go.arrive_and_wait();
    for (int i = 0; i < rounds; ++i) {
      auto t = e.begin(Isolation::kSerializable);
      if (!t.ok()) {
        other_errors.fetch_add(1);
        continue;
      }
      const std::string v = cat(cat("i", id) + "-", i);
      for (int k = 0; k < 3; ++k) {
        if (!t->put(cat("k", static_cast<int>(rng() % kKeys)), v).ok()) other_errors.fetch_add(1);
      }
      auto c = t->commit();
      if (!c.ok() && c.code() != StatusCode::kConflict) other_errors.fetch_add(1);
    }
  };
  std::vector<std::thread> ts;
  ts.emplace_back(one_shot, 0);
  ts.emplace_back(one_shot, 1);
  ts.emplace_back(interactive, 2);
  ts.emplace_back(interactive, 3);
  for (auto& t : ts) t.join();
  EXPECT_EQ(conflicts.load(), 0);
  EXPECT_EQ(other_errors.load(), 0);
}

}  // namespace
}  // namespace kv::storage
