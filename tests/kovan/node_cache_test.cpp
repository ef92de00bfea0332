// The per-thread node cache (kovan/detail/runtime.hpp, "THE NODE CACHE"; docs/RECLAIMER.md,
// "the node cache"), invariants C1-C4:
//  * a batch of deleted nodes is reused by the same thread's next allocations;
//  * a block serves every size of its class (it was allocated at the class size);
//  * a class holds at most kCacheDepth blocks;
//  * a thread's exit step empties its cache, also for a thread that only deleted nodes,
//    and deletions after the exit step bypass the cache;
//  * over-aligned node types get aligned memory.
// Built against kovan_testhooks (the cached_blocks counter). In AddressSanitizer builds the
// cache is bypassed on purpose (KOVAN_NODE_CACHE is 0), and these tests skip.
#include <gtest/gtest.h>
#include <malloc.h>
#include <pthread.h>

#include <algorithm>
#include <cstdint>
#include <set>
#include <thread>
#include <vector>

#include "kovan/detail/test_hooks.hpp"
#include "kovan/kovan.hpp"

namespace {

namespace hooks = kovan::detail::test;
using kovan::detail::kCacheClassBytes;
using kovan::detail::kCacheDepth;
using kovan::detail::tl_cache;

// 32-byte header + 8 = 40 bytes, and 32 + 16 = 48 bytes: both in the class of 48-byte blocks.
struct Small : kovan::Node {
  std::uint64_t v = 1;
};
struct Full : kovan::Node {
  std::uint64_t a = 2, b = 3;
};
static_assert(sizeof(Small) == 40 && sizeof(Full) == 48);
constexpr std::size_t kClass48 = (48 - 1) / kCacheClassBytes;

struct alignas(128) Wide : kovan::Node {
  std::uint64_t v = 4;
};

#define SKIP_WITHOUT_CACHE()                                  \
  if (!KOVAN_NODE_CACHE)                                      \
  GTEST_SKIP() << "the node cache is bypassed in this build " \
                  "(AddressSanitizer)"

TEST(NodeCache, ABatchOfDeletedNodesIsReusedByTheSameThread) {
  SKIP_WITHOUT_CACHE();
  std::thread([] {
    constexpr int kBatch = 64;  // one finished batch (kRetireBatch)
    std::vector<Small*> first;
    for (int i = 0; i < kBatch; ++i) first.push_back(new Small());
    const std::set<void*> addresses(first.begin(), first.end());
    for (Small* s : first) delete s;
    EXPECT_EQ(tl_cache.count[kClass48], static_cast<std::uint32_t>(kBatch));
    std::vector<Small*> second;
    for (int i = 0; i < kBatch; ++i) second.push_back(new Small());
    for (Small* s : second) EXPECT_EQ(addresses.count(s), 1u);  // every block came back
    EXPECT_EQ(tl_cache.count[kClass48], 0u);
    for (Small* s : second) delete s;
  }).join();
}

TEST(NodeCache, RetiredNodesGoBackToTheThreadThatDeletesThem) {
  SKIP_WITHOUT_CACHE();
  std::thread([] {
    for (int i = 0; i < 1000; ++i) kovan::retire(new Small());
    kovan::flush();  // deletes them here: their blocks are cached on this thread
    EXPECT_GE(tl_cache.count[kClass48], 64u);
  }).join();
}

TEST(NodeCache, BlocksServeEverySizeOfTheirClass) {
  SKIP_WITHOUT_CACHE();
  std::thread([] {
    Small* s = new Small();
    // Allocated at the class size (48), not at sizeof(Small) (40).
    EXPECT_GE(malloc_usable_size(s), 48u);
    void* block = s;
    delete s;
    Full* f = new Full();  // same class: the block just cached
    EXPECT_EQ(static_cast<void*>(f), block);
    EXPECT_GE(malloc_usable_size(f), sizeof(Full));
    f->a = 5;
    f->b = 6;
    EXPECT_EQ(f->a + f->b, 11u);
    delete f;
  }).join();
}

TEST(NodeCache, AClassHoldsAtMostKCacheDepthBlocks) {
  SKIP_WITHOUT_CACHE();
  std::thread([] {
    const std::int64_t before = hooks::cached_blocks.load();
    std::vector<Small*> nodes;
    for (std::uint32_t i = 0; i < 8 * kCacheDepth; ++i) nodes.push_back(new Small());
    for (Small* s : nodes) delete s;
    EXPECT_EQ(tl_cache.count[kClass48], kCacheDepth);
    EXPECT_LE(hooks::cached_blocks.load() - before, static_cast<std::int64_t>(kCacheDepth));
  }).join();
}

TEST(NodeCache, ThreadExitEmptiesTheCache) {
  SKIP_WITHOUT_CACHE();
  const std::int64_t before = hooks::cached_blocks.load();
  std::int64_t cached_in_thread = 0;
  std::thread([&] {
    std::vector<Small*> nodes;
    for (int i = 0; i < 100; ++i) nodes.push_back(new Small());
    for (Small* s : nodes) delete s;
    cached_in_thread = hooks::cached_blocks.load() - before;
    // Some of these are deleted by the retires, the others at the exit step (partial batch).
    for (int i = 0; i < 300; ++i) kovan::retire(new Full());
  }).join();
  EXPECT_GE(cached_in_thread, 100);
  EXPECT_EQ(hooks::cached_blocks.load(), before);  // nothing kept by the exited thread
}

TEST(NodeCache, AThreadThatOnlyDeletesNodesEmptiesItsCacheAtExit) {
  SKIP_WITHOUT_CACHE();
  std::vector<Small*> nodes;
  for (int i = 0; i < 50; ++i) nodes.push_back(new Small());
  const std::int64_t before = hooks::cached_blocks.load();
  std::int64_t cached_in_thread = 0;
  std::thread([&] {
    // This thread never pins, retires or allocates a node: its first cached free is what
    // gives it kovan's exit step.
    for (Small* s : nodes) delete s;
    cached_in_thread = hooks::cached_blocks.load() - before;
  }).join();
  EXPECT_EQ(cached_in_thread, 50);
  EXPECT_EQ(hooks::cached_blocks.load(), before);
}

// A key created now is created after kovan's exit key, so glibc runs its destructor after
// kovan's exit step: the nodes it deletes must not be cached (the cache was emptied). It
// deletes one node per round of key destructors and sets itself again, for as many rounds
// as glibc runs: a node cached in the last round would never be given back.
pthread_key_t g_late_key;
// The nodes still to delete, owned by the exiting thread (a plain pointer: thread_local
// objects with destructors are gone by the time key destructors run).
thread_local std::vector<Small*>* tl_late_nodes = nullptr;
void late_delete(void* p) {
  delete static_cast<Small*>(p);
  if (tl_late_nodes->empty()) {
    delete tl_late_nodes;
    tl_late_nodes = nullptr;
    return;
  }
  Small* next = tl_late_nodes->back();
  tl_late_nodes->pop_back();
  (void)pthread_setspecific(g_late_key, next);
}

TEST(NodeCache, DeletionsAfterTheExitStepBypassTheCache) {
  SKIP_WITHOUT_CACHE();
  ASSERT_EQ(pthread_key_create(&g_late_key, &late_delete), 0);
  const std::int64_t before = hooks::cached_blocks.load();
  std::thread([] {
    delete new Small();  // this thread caches (a block is in its cache)
    // One node per round of key destructors: the first round and the re-runs.
    tl_late_nodes = new std::vector<Small*>();
    for (int i = 1; i < PTHREAD_DESTRUCTOR_ITERATIONS; ++i) tl_late_nodes->push_back(new Small());
    ASSERT_EQ(pthread_setspecific(g_late_key, new Small()), 0);
  }).join();
  EXPECT_EQ(hooks::cached_blocks.load(), before);
  pthread_key_delete(g_late_key);
}

TEST(NodeCache, OverAlignedNodesAreAligned) {
  std::vector<Wide*> nodes;
  for (int i = 0; i < 64; ++i) nodes.push_back(new Wide());
  for (Wide* w : nodes) {
    EXPECT_EQ(reinterpret_cast<std::uintptr_t>(w) % alignof(Wide), 0u);
    EXPECT_EQ(w->v, 4u);
  }
  for (int i = 0; i < 32; ++i) kovan::retire(nodes[static_cast<std::size_t>(i)]);
  for (std::size_t i = 32; i < nodes.size(); ++i) delete nodes[i];
  kovan::flush();
}

}  // namespace
