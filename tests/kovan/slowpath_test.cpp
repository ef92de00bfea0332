// The helped slow path of a protected load, driven deterministically through the test
// hooks (kovan_testhooks): a requester publishes its request and stops; another thread
// advancing the era must finish the load for it, with a finite reservation.
#include <gtest/gtest.h>

#include <atomic>
#include <latch>
#include <thread>
#include <vector>

#include "kovan/detail/test_hooks.hpp"
#include "structures.hpp"

namespace {

using namespace kovan_test;
namespace hooks = kovan::detail::test;

struct Obj : Tracked {
  explicit Obj(int v) : value(v) {}
  int value;
};

std::latch* g_published = nullptr;
std::latch* g_resume = nullptr;

TEST(SlowPath, AdvancerHelpsAStoppedRequester) {
  kovan::Atomic<Obj> cell(new Obj(42));
  std::latch published(1), resume(1);
  g_published = &published;
  g_resume = &resume;
  hooks::fast_path_tries = 0;  // every load takes the slow path
  hooks::on_request_published = +[] {
    hooks::on_request_published = nullptr;  // only the first request stops
    g_published->count_down();
    g_resume->wait();
  };
  const kovan::Stats s0 = kovan::stats();
  Obj* got = nullptr;
  std::uint64_t slot_era = 0;
  std::thread requester([&] {
    kovan::Guard g = kovan::pin();
    got = cell.load(g);  // stops inside the slow path until `resume`
    slot_era = hooks::slot_era_of_current_thread();
    EXPECT_TRUE(got->alive());
  });
  published.wait();
  // The requester is stopped with its request open. Advance the era: each advance must
  // first help the open request.
  const std::uint64_t era_before = hooks::global_era();
  for (std::uint32_t i = 0; i < 3 * kovan::kEraFrequency; ++i) Obj tmp(i);
  EXPECT_GT(hooks::global_era(), era_before);
  EXPECT_GE(kovan::stats().helps - s0.helps, 1u);
  resume.count_down();
  requester.join();
  hooks::fast_path_tries = kovan::kFastPathTries;
  EXPECT_EQ(got, cell.load_unprotected());
  EXPECT_EQ(got->value, 42);
  // The reservation stayed a finite era, never "infinity".
  EXPECT_LE(slot_era, hooks::global_era());
  EXPECT_GE(kovan::stats().slow_loads - s0.slow_loads, 1u);
  kovan::Guard g = kovan::pin();
  delete cell.exchange(nullptr, g);
}

// Every load on the slow path, concurrently with writers: the helped results must be
// protected exactly like fast-path ones (canaries, exact accounting; ASan/TSan builds).
TEST(SlowPath, StressEveryLoadSlow) {
  hooks::fast_path_tries = 0;
  g_canary_failures = 0;
  const kovan::Stats s0 = kovan::stats();
  const auto destroyed0 = Counts::destroyed.load();
  constexpr int kThreads = 4, kOps = 5000;
  {
    TreiberStack stack;
    MSQueue queue;
    std::vector<std::thread> ts;
    for (int t = 0; t < kThreads; ++t)
      ts.emplace_back([&, t] {
        for (int i = 0; i < kOps; ++i) {
          stack.push(i);
          queue.enqueue(std::uint64_t(t) * kOps + i);
          (void)stack.pop();
          (void)queue.dequeue();
        }
      });
    for (auto& th : ts) th.join();
    while (stack.pop()) {
    }
    while (queue.dequeue()) {
    }
  }
  hooks::fast_path_tries = kovan::kFastPathTries;
  kovan::flush();
  const kovan::Stats s1 = kovan::stats();
  EXPECT_EQ(g_canary_failures.load(), 0);
  EXPECT_GT(s1.slow_loads - s0.slow_loads, std::uint64_t{kThreads} * kOps);
  EXPECT_EQ(s1.retired - s0.retired, s1.reclaimed - s0.reclaimed);
  EXPECT_EQ(Counts::destroyed.load() - destroyed0,
            static_cast<std::int64_t>(s1.retired - s0.retired) + 1);  // + the queue's dummy
}

}  // namespace
