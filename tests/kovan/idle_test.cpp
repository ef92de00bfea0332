// Idle-active slots (docs/RECLAIMER.md, "Idle-active slots"): an unpin that keeps its slot
// active detaches the batches attached to it with an exchange. A batch attached between
// the unpin's load of the list and that exchange must be detached too (and so released),
// not lost. The test-hooks build stops the unpin exactly there.
#include <gtest/gtest.h>

#include <latch>
#include <thread>
#include <vector>

#include "kovan/detail/test_hooks.hpp"
#include "kovan/kovan.hpp"
#include "tracked.hpp"

namespace {

using kovan_test::Counts;
using kovan_test::Tracked;
namespace hooks = kovan::detail::test;

struct Item : Tracked {};

std::latch* g_attach_now = nullptr;
std::latch* g_attached = nullptr;

TEST(Idle, ABatchAttachedWhileTheUnpinDetachesIsNotLost) {
  kovan::flush();  // this thread reserves nothing
  // 2 x 2R nodes, all born before the other thread pins (so its era covers them): each
  // 2R retirements make at least one attach attempt with at least R of them.
  constexpr std::size_t kHalf = 2 * kovan::kRetireBatch;
  std::vector<Item*> nodes;
  for (std::size_t i = 0; i < 2 * kHalf; ++i) nodes.push_back(new Item);
  const auto destroyed0 = Counts::destroyed.load();
  std::latch pinned(1), first_attached(1), attach_now(1), attached(1);
  g_attach_now = &attach_now;
  g_attached = &attached;
  std::thread a([&] {
    kovan::Guard g = kovan::pin();
    pinned.count_down();
    first_attached.wait();
    hooks::on_unpin_detach = +[] {
      hooks::on_unpin_detach = nullptr;  // only this unpin stops
      g_attach_now->count_down();
      g_attached->wait();
    };
    g.reset();  // finds the first batches attached; the hook lets the others attach
    kovan::flush();
  });
  pinned.wait();
  // No allocation from here on, so the era stays put and the unpin keeps the slot active.
  for (std::size_t i = 0; i < kHalf; ++i) kovan::retire(nodes[i]);
  first_attached.count_down();
  attach_now.wait();
  for (std::size_t i = kHalf; i < 2 * kHalf; ++i) kovan::retire(nodes[i]);
  attached.count_down();
  a.join();
  kovan::flush();
  EXPECT_EQ(Counts::destroyed.load() - destroyed0, static_cast<std::int64_t>(2 * kHalf))
      << "a batch attached during the unpin's detach was lost";
}

}  // namespace
