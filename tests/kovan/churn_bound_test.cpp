// The memory bound where threads come and go and where batches are formed from orphans and
// by flush() (docs/RECLAIMER.md, "The memory bound"): the era must advance with
// allocations however they are spread over threads, a stalled reservation must be handed
// only old nodes even by flush(), and no batch may exceed the documented size B.
#include <gtest/gtest.h>

#include <algorithm>
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

// B of docs/RECLAIMER.md: the largest batch for s reservation slots.
std::uint64_t max_batch(std::uint64_t slots) {
  return std::max<std::uint64_t>(kovan::kRetireBatch, slots + 1) + slots;
}

// A reader that pins, loads `cell` and stays inside its guard until woken.
class StalledReader {
 public:
  explicit StalledReader(kovan::Atomic<Obj>& cell)
      : t_([this, &cell] {
          kovan::Guard g = kovan::pin();
          Obj* mine = cell.load(g);
          ready_.count_down();
          wake_.wait();
          intact_ = mine->alive();
        }) {
    ready_.wait();
  }
  bool wake() {
    wake_.count_down();
    t_.join();
    return intact_;
  }

 private:
  std::latch ready_{1}, wake_{1};
  bool intact_ = false;
  std::thread t_;
};

// 4,000 short-lived threads, each replacing the cell's object 100 times (100 allocations,
// 100 retirements, fewer than kEraFrequency), one after another, while a reader is stalled
// inside its guard. The era must still advance about once per kEraFrequency allocations,
// and the stalled reader must hold no more than the documented bound.
TEST(ChurnBound, ShortLivedThreadsAdvanceTheEraAndKeepTheBound) {
  constexpr int kThreads = 4000;
  constexpr std::uint64_t kPerThread = 100;
  kovan::Atomic<Obj> cell(new Obj(0));
  StalledReader reader(cell);
  const kovan::Stats s0 = kovan::stats();
  for (int t = 0; t < kThreads; ++t) {
    std::thread([&] {
      for (std::uint64_t i = 0; i < kPerThread; ++i) {
        kovan::Guard g = kovan::pin();
        kovan::retire(cell.exchange(new Obj(i + 1), g));
      }
    }).join();
  }
  const kovan::Stats s1 = kovan::stats();
  const std::uint64_t allocations = kThreads * kPerThread;
  const std::uint64_t held = (s1.retired - s0.retired) - (s1.reclaimed - s0.reclaimed);
  // Threads alive at once: this one, the reader, one writer; hwm counts every record used.
  const std::uint64_t n = s1.threads;
  const std::uint64_t s = 2 * n;
  const std::uint64_t F = (n + 1) * kovan::kEraFrequency;  // + the exited threads' remainder
  // (M + F) * B with M = 1 live object, plus each thread's partial batch and free queue.
  const std::uint64_t bound = (1 + F) * max_batch(s) + n * (max_batch(s) + kovan::kFreeQuota);
  std::printf("churn: era advanced %llu for %llu allocations; unreclaimed %llu (bound %llu)\n",
              static_cast<unsigned long long>(s1.era - s0.era),
              static_cast<unsigned long long>(allocations), static_cast<unsigned long long>(held),
              static_cast<unsigned long long>(bound));
  EXPECT_GE(s1.era - s0.era, allocations / kovan::kEraFrequency / 2);
  EXPECT_LE(held, bound);
  EXPECT_TRUE(reader.wake());
  kovan::flush();
  kovan::Guard g = kovan::pin();
  delete cell.exchange(nullptr, g);
}

// Threads that only build nodes (and free them themselves, never publishing them) never
// register with kovan; their allocations must still be carried over at exit, or 400 such
// threads of 100 allocations each would leave the era where it was.
TEST(ChurnBound, ThreadsThatOnlyAllocateAdvanceTheEra) {
  constexpr int kThreads = 400;
  constexpr std::uint64_t kPerThread = 100;  // fewer than kEraFrequency
  const std::uint64_t e0 = hooks::global_era();
  for (int t = 0; t < kThreads; ++t) {
    std::thread([] {
      for (std::uint64_t i = 0; i < kPerThread; ++i) delete new Obj(i);
    }).join();
  }
  const std::uint64_t advanced = hooks::global_era() - e0;
  std::printf("allocating threads: era advanced %llu for %llu allocations\n",
              static_cast<unsigned long long>(advanced),
              static_cast<unsigned long long>(kThreads * kPerThread));
  EXPECT_GE(advanced, kThreads * kPerThread / kovan::kEraFrequency / 2);
}

// flush() used to attach its whole partial batch, padded, to every eligible slot without
// the split by birth: one old node flushed with 63 young ones made the stalled reader hold
// all of them. Each of 500 old objects (born before the stall) is retired with 40 young ones
// and flushed; the stalled reader may hold the old ones and at most s young ones each.
TEST(ChurnBound, FlushSplitsByBirthToo) {
  constexpr int kOld = 500;
  constexpr int kYoung = 40;  // 41 retires per flush: the attach attempts fall anywhere
  std::vector<Obj*> old;
  for (int i = 0; i < kOld; ++i) old.push_back(new Obj(i));
  kovan::Atomic<Obj> cell(new Obj(0));
  StalledReader reader(cell);
  // Move the era past the reader's: everything allocated from here on is young.
  const std::uint64_t e0 = hooks::global_era();
  for (std::uint32_t i = 0; i < 4 * kovan::kEraFrequency && hooks::global_era() <= e0 + 1; ++i) {
    Obj tmp(i);
  }
  ASSERT_GT(hooks::global_era(), e0 + 1);
  const kovan::Stats s0 = kovan::stats();
  for (Obj* o : old) {
    kovan::retire(o);
    for (int y = 0; y < kYoung; ++y) kovan::retire(new Obj(y));
    kovan::flush();
  }
  const kovan::Stats s1 = kovan::stats();
  const std::uint64_t held = (s1.retired - s0.retired) - (s1.reclaimed - s0.reclaimed);
  const std::uint64_t n = s1.threads;
  const std::uint64_t s = 2 * n;
  std::printf("flush with a stalled reader: unreclaimed %llu for %d old objects (s = %llu)\n",
              static_cast<unsigned long long>(held), kOld, static_cast<unsigned long long>(s));
  // Every flush hands over everything, so the only holder is the stalled reader: at most
  // each old node plus s young ones carried into its batch.
  EXPECT_GE(held, static_cast<std::uint64_t>(kOld));  // the old ones really are protected
  EXPECT_LE(held, kOld * (s + 1));
  EXPECT_TRUE(reader.wake());
  kovan::flush();
  kovan::Guard g = kovan::pin();
  delete cell.exchange(nullptr, g);
}

// Orphans: 200 threads each retire 60 objects and exit, leaving 12,000 orphaned nodes; one
// thread then retires and flushes. No batch may be larger than B = max(R, s + 1) + s,
// however many orphans are adopted at once, and all of them are freed by the flush.
TEST(ChurnBound, AdoptedOrphansFormBatchesOfBoundedSize) {
  constexpr int kThreads = 200;
  constexpr int kPer = 60;  // fewer than kRetireBatch: each exit leaves its batch orphaned
  const auto destroyed0 = Counts::destroyed.load();
  const kovan::Stats s0 = kovan::stats();
  hooks::largest_batch = 0;
  for (int t = 0; t < kThreads; ++t) {
    std::thread([] {
      for (int i = 0; i < kPer; ++i) kovan::retire(new Obj(i));
    }).join();
  }
  for (std::uint32_t i = 0; i < 4 * kovan::kRetireBatch; ++i) kovan::retire(new Obj(i));
  kovan::flush();
  const kovan::Stats s1 = kovan::stats();
  const std::uint64_t s = 2 * s1.threads;
  const std::uint64_t largest = hooks::largest_batch.load();
  std::printf("orphans: largest batch %llu (B = %llu)\n", static_cast<unsigned long long>(largest),
              static_cast<unsigned long long>(max_batch(s)));
  EXPECT_LE(largest, max_batch(s));
  EXPECT_EQ(s1.retired - s0.retired, s1.reclaimed - s0.reclaimed);
  EXPECT_EQ(Counts::destroyed.load() - destroyed0, kThreads * kPer + 4 * kovan::kRetireBatch);
}

}  // namespace
