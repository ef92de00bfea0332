// Concurrent structures under kovan with 1-16 threads (more threads than cores on purpose):
// canaries checked on every read, exact accounting after join + flush.
#include <gtest/gtest.h>

#include <atomic>
#include <barrier>
#include <random>
#include <thread>
#include <vector>

#include "structures.hpp"

namespace {

using namespace kovan_test;

struct Accounting {
  kovan::Stats s0 = kovan::stats();
  std::int64_t live0 = Counts::live();
  // Call after the structure is destroyed: every node built since is gone exactly once
  // (retired ones by the reclaimer, the rest by the structure), and the reclaimer's
  // counters balance.
  void expect_all_reclaimed(std::int64_t retired_expected) const {
    kovan::flush();  // adopt the orphans of exited threads and finish our own batch
    const kovan::Stats s1 = kovan::stats();
    EXPECT_EQ(s1.retired - s0.retired, static_cast<std::uint64_t>(retired_expected));
    EXPECT_EQ(s1.reclaimed - s0.reclaimed, s1.retired - s0.retired) << "unreclaimed nodes remain";
    EXPECT_EQ(Counts::live(), live0) << "nodes leaked (positive) or freed twice (negative)";
  }
};

class Stress : public ::testing::TestWithParam<int> {};

TEST_P(Stress, TreiberStack) {
  const int threads = GetParam();
  constexpr int kOps = 20000;
  g_canary_failures = 0;
  Accounting acc;
  std::atomic<std::int64_t> pops{0};
  std::atomic<std::uint64_t> popped_sum{0};
  std::uint64_t pushed_sum = 0;
  {
    TreiberStack stack;
    std::barrier start(threads);
    std::vector<std::thread> ts;
    for (int t = 0; t < threads; ++t) {
      pushed_sum += static_cast<std::uint64_t>(kOps) * (kOps + 1) / 2 + std::uint64_t(t) * kOps;
      ts.emplace_back([&, t] {
        start.arrive_and_wait();
        std::uint64_t local = 0;
        std::int64_t n = 0;
        for (int i = 1; i <= kOps; ++i) {
          stack.push(static_cast<std::uint64_t>(i + t));
          if (auto v = stack.pop()) local += *v, ++n;
        }
        popped_sum += local;
        pops += n;
      });
    }
    for (auto& th : ts) th.join();
    // Drain the rest on this thread; every pushed value comes out exactly once.
    while (auto v = stack.pop()) popped_sum += *v, ++pops;
  }
  EXPECT_EQ(pops.load(), std::int64_t{threads} * kOps);
  EXPECT_EQ(popped_sum.load(), pushed_sum);
  EXPECT_EQ(g_canary_failures.load(), 0);
  acc.expect_all_reclaimed(std::int64_t{threads} * kOps);
}

TEST_P(Stress, MichaelScottQueue) {
  const int threads = GetParam();
  constexpr int kOps = 20000;
  g_canary_failures = 0;
  Accounting acc;
  std::atomic<std::int64_t> deq{0};
  std::atomic<bool> order_ok{true};
  {
    MSQueue q;
    std::barrier start(threads);
    std::vector<std::thread> ts;
    for (int t = 0; t < threads; ++t) {
      ts.emplace_back([&, t] {
        start.arrive_and_wait();
        for (int i = 0; i < kOps; ++i) {
          q.enqueue((std::uint64_t(t) << 32) | std::uint64_t(i));
          if (q.dequeue()) deq.fetch_add(1);
        }
      });
    }
    for (auto& th : ts) th.join();
    // FIFO per producer: the rest comes out in increasing order for each producer.
    std::vector<std::int64_t> last(threads, -1);
    while (auto v = q.dequeue()) {
      deq.fetch_add(1);
      const auto producer = static_cast<int>(*v >> 32);
      const auto seq = static_cast<std::int64_t>(*v & 0xffffffffu);
      if (seq <= last[producer]) order_ok = false;
      last[producer] = seq;
    }
  }
  EXPECT_TRUE(order_ok.load());
  EXPECT_EQ(deq.load(), std::int64_t{threads} * kOps);
  EXPECT_EQ(g_canary_failures.load(), 0);
  // The queue retires one node per dequeue (the old dummy).
  acc.expect_all_reclaimed(std::int64_t{threads} * kOps);
}

TEST_P(Stress, CowHashMapReadHeavy) {
  const int threads = GetParam();
  constexpr int kOps = 20000;
  constexpr std::uint64_t kKeys = 512;
  g_canary_failures = 0;
  Accounting acc;
  std::atomic<std::int64_t> writes{0};
  std::atomic<long> wrong{0};
  {
    CowHashMap map;
    for (std::uint64_t k = 0; k < kKeys; ++k) (void)map.put(k, k * 3);  // retires 512 - 64 buckets
    writes += static_cast<std::int64_t>(kKeys) - 64;
    std::barrier start(threads);
    std::vector<std::thread> ts;
    for (int t = 0; t < threads; ++t) {
      ts.emplace_back([&, t] {
        std::mt19937_64 rng(t);
        start.arrive_and_wait();
        std::int64_t w = 0;
        for (int i = 0; i < kOps; ++i) {
          const std::uint64_t k = rng() % kKeys;
          if (rng() % 10 == 0) {
            (void)map.put(k, k * 3);  // value invariant: always 3k
            ++w;
          } else if (auto v = map.get(k); !v || *v != k * 3) {
            wrong.fetch_add(1);
          }
        }
        writes += w;
      });
    }
    for (auto& th : ts) th.join();
  }
  EXPECT_EQ(wrong.load(), 0);
  EXPECT_EQ(g_canary_failures.load(), 0);
  acc.expect_all_reclaimed(writes.load());
}

std::string ThreadsName(const ::testing::TestParamInfo<int>& p) {
  std::string name = std::to_string(p.param);
  name.insert(name.begin(), 't');
  return name;
}
INSTANTIATE_TEST_SUITE_P(Threads, Stress, ::testing::Values(1, 2, 4, 8, 16), ThreadsName);

// Hundreds of short-lived threads retire and exit without flush(); their leftovers are
// adopted, nothing leaks or is freed twice, and thread slots are reused.
TEST(Churn, ShortLivedThreadsHandOverEverything) {
  g_canary_failures = 0;
  Accounting acc;
  constexpr int kWaves = 40, kPerWave = 8, kOps = 300;
  {
    TreiberStack stack;
    for (int i = 0; i < 1000; ++i) stack.push(i);
    for (int w = 0; w < kWaves; ++w) {
      std::vector<std::thread> ts;
      for (int t = 0; t < kPerWave; ++t) {
        ts.emplace_back([&] {
          for (int i = 0; i < kOps; ++i) {
            if (auto v = stack.pop()) stack.push(*v);
          }
          // exit without flush()
        });
      }
      for (auto& th : ts) th.join();
    }
  }
  EXPECT_EQ(g_canary_failures.load(), 0);
  // 320 threads ran; only a wave's worth of slots (plus earlier users) were ever needed.
  EXPECT_LE(kovan::stats().threads, std::uint64_t{kPerWave} + 24);
  acc.expect_all_reclaimed(std::int64_t{kWaves} * kPerWave * kOps);
}

// Orphans are adopted on the ordinary retire path too, not only by flush().
struct Orphan : Tracked {
  static inline std::atomic<int> freed{0};
  ~Orphan() { freed.fetch_add(1); }
};

TEST(Churn, OrphansAdoptedByOrdinaryRetire) {
  Orphan::freed = 0;
  std::thread([] {
    for (int i = 0; i < 10; ++i) kovan::retire(new Orphan());  // a partial batch, then exit
  }).join();
  EXPECT_EQ(Orphan::freed.load(), 0);  // handed over, not freed by the exiting thread
  // This thread retires without flush(). Within kRetireBatch retires its retire path adopts
  // the orphans into its own batch; no slot is active, so the attach frees them.
  for (std::uint32_t i = 0; i < 2 * kovan::kRetireBatch; ++i) kovan::retire(new Tracked());
  EXPECT_EQ(Orphan::freed.load(), 10);
  kovan::flush();
}

}  // namespace
