// The memory bound under a stalled reader (docs/RECLAIMER.md, "The memory bound").
//
// One thread pins, loads the current object of a cell and blocks on a latch while writers
// replace the cell's object millions of times (each replacement retires one object). The
// number of unreclaimed objects must plateau: after 4x the retirements it is within the
// documented bound (M + F) * B (+ the writers' own partial batches), and far below the
// number retired. The stalled reader's object must still be intact when it wakes. With an
// idle (unpinned) thread instead, almost nothing is held.
#include <gtest/gtest.h>

#include <atomic>
#include <barrier>
#include <latch>
#include <thread>
#include <vector>

#include "tracked.hpp"

namespace {

using kovan_test::Tracked;

struct Obj : Tracked {
  explicit Obj(std::uint64_t v) : value(v) {}
  std::uint64_t value;
};

constexpr int kWriters = 3;
constexpr std::uint64_t kPhase = 500'000;  // retirements per phase (all writers together)

// (M + F) * B plus what writers hold without any stall (a partial batch each, and batches
// attached to a writer's own guard while it is open).
std::uint64_t documented_bound(std::uint64_t live_objects, std::uint64_t threads) {
  const std::uint64_t F = threads * kovan::kEraFrequency;
  const std::uint64_t B = kovan::kRetireBatch;  // batches attach at kRetireBatch nodes here
  return (live_objects + F) * B + 2 * threads * B;
}

struct StallRun {
  std::uint64_t after_1x = 0, after_4x = 0, retired = 0;
  bool stalled_object_intact = false;
};

StallRun run_writers(bool reader_pinned) {
  kovan::Atomic<Obj> cell(new Obj(0));
  std::latch reader_ready(1), wake(1);
  std::atomic<bool> intact{false};
  std::thread reader([&] {
    if (reader_pinned) {
      kovan::Guard g = kovan::pin();
      Obj* mine = cell.load(g);
      reader_ready.count_down();
      wake.wait();  // stalled inside its guard
      intact = mine->alive() && mine->value == 0;
    } else {
      { kovan::Guard g = kovan::pin(); }
      reader_ready.count_down();
      wake.wait();  // idle: no guard
      intact = true;
    }
  });
  reader_ready.wait();
  const kovan::Stats s0 = kovan::stats();
  StallRun r;
  auto phase = [&](std::uint64_t n) {
    std::barrier start(kWriters);
    std::vector<std::thread> ws;
    for (int w = 0; w < kWriters; ++w)
      ws.emplace_back([&] {
        start.arrive_and_wait();
        for (std::uint64_t i = 0; i < n / kWriters; ++i) {
          kovan::Guard g = kovan::pin();
          kovan::retire(cell.exchange(new Obj(i + 1), g));
        }
      });
    for (auto& t : ws) t.join();
    const kovan::Stats s = kovan::stats();
    return (s.retired - s0.retired) - (s.reclaimed - s0.reclaimed);
  };
  r.after_1x = phase(kPhase);
  (void)phase(kPhase);
  (void)phase(kPhase);
  r.after_4x = phase(kPhase);
  r.retired = kovan::stats().retired - s0.retired;
  wake.count_down();
  reader.join();
  r.stalled_object_intact = intact.load();
  kovan::flush();
  { kovan::Guard g = kovan::pin(); delete cell.exchange(nullptr, g); }
  return r;
}

TEST(Bound, StalledReaderHoldsABoundedNumberOfObjects) {
  const StallRun r = run_writers(/*reader_pinned=*/true);
  // Writer threads exit after each phase and new ones start, so count every thread used.
  const std::uint64_t threads = kovan::stats().threads;
  const std::uint64_t bound = documented_bound(/*live_objects=*/1, threads);
  RecordProperty("unreclaimed_after_1x", std::to_string(r.after_1x));
  RecordProperty("unreclaimed_after_4x", std::to_string(r.after_4x));
  RecordProperty("bound", std::to_string(bound));
  EXPECT_EQ(r.retired, 4 * (kPhase / kWriters) * kWriters);
  EXPECT_LE(r.after_4x, bound);
  EXPECT_LE(r.after_4x * 100, r.retired) << "should be far below the retirements";
  // A plateau: 4x the retirements does not mean 4x the unreclaimed objects.
  EXPECT_LT(r.after_4x, 2 * r.after_1x + 2 * threads * kovan::kRetireBatch);
  EXPECT_TRUE(r.stalled_object_intact);
  std::printf("stalled reader: unreclaimed after 1x = %llu, after 4x = %llu, bound = %llu, retired = %llu\n",
              static_cast<unsigned long long>(r.after_1x), static_cast<unsigned long long>(r.after_4x),
              static_cast<unsigned long long>(bound), static_cast<unsigned long long>(r.retired));
}

TEST(Bound, IdleThreadHoldsNearlyNothing) {
  const StallRun r = run_writers(/*reader_pinned=*/false);
  const std::uint64_t threads = kovan::stats().threads;
  // Only the writers' partial batches and batches racing with their own short guards.
  EXPECT_LE(r.after_4x, 2 * threads * kovan::kRetireBatch);
  EXPECT_TRUE(r.stalled_object_intact);
  std::printf("idle reader: unreclaimed after 4x = %llu (retired %llu)\n",
              static_cast<unsigned long long>(r.after_4x), static_cast<unsigned long long>(r.retired));
}

}  // namespace
