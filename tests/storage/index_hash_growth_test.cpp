// The index's hash hint (storage/src/index.hpp, I7 and I8): it starts small, doubles as keys
// arrive so that chains stay short at millions of keys, and grows while readers and writers
// run: a reader never misses a key that is present (the skip list answers a miss of the
// hint) and never touches a removed or freed node (run under ASan and TSan too).
#include <gtest/gtest.h>

#include <atomic>
#include <cstdint>
#include <latch>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "index.hpp"
#include "test_util.hpp"

namespace kv::storage::detail {
namespace {

using testing::cat;

KeyNode* insert(SkipList& s, const std::string& key) {
  kovan::Guard g = kovan::pin();
  bool inserted = false;
  KeyNode* n = s.find_or_insert(key, g, &inserted);
  EXPECT_TRUE(inserted) << key;
  return n;
}

// Removes `key` as the engine does (I6): the single remover marks the owner dead first.
void remove_key(SkipList& s, const std::string& key) {
  kovan::Guard g = kovan::pin();
  KeyNode* n = s.find(key, g);
  ASSERT_NE(n, nullptr) << key;
  n->owner.store(~std::uint64_t{0}, std::memory_order_relaxed);
  s.remove(n, g);
}

TEST(IndexHashGrowth, SmallIndexHasSmallTable) {
  SkipList s;
  const SkipList::HashStats st = s.hash_stats();
  EXPECT_LE(st.buckets, std::size_t{1} << 10);
  EXPECT_EQ(st.nodes, 0U);
}

// Today's defect: a fixed table of 2^18 buckets holds 2 M keys in chains of 8 on average.
// With growth the load stays at most 2 per bucket and the longest chain near a Poisson(2)
// maximum (about 11 at a million buckets; 16 leaves a wide margin, a fixed table gives ~25).
TEST(IndexHashGrowth, ChainsStayShortAtTwoMillionKeys) {
#ifdef KV_TSAN
  constexpr std::size_t kKeys = 600'000;  // TSan is ~10x slower; still 2.3x a fixed 2^18 table
#else
  constexpr std::size_t kKeys = 2'000'000;
#endif
  SkipList s;
  for (std::size_t i = 0; i < kKeys; ++i) insert(s, cat("key-", static_cast<long long>(i)));
  const SkipList::HashStats st = s.hash_stats();
  EXPECT_EQ(st.nodes, kKeys);
  EXPECT_EQ(s.size(), kKeys);
  EXPECT_LE(st.nodes, 2 * st.buckets) << "buckets " << st.buckets;
  EXPECT_LE(st.longest_chain, 16U) << "buckets " << st.buckets;
  // The hint has every key (no node was lost by a migration), checked on a sample.
  for (std::size_t i = 0; i < kKeys; i += 101) {
    ASSERT_TRUE(s.hash_has(cat("key-", static_cast<long long>(i)))) << i;
  }
}

// Removals shrink chains (the table is not shrunk) and leave the hint exact.
TEST(IndexHashGrowth, RemovalsLeaveTheHintExact) {
  SkipList s;
  constexpr int kKeys = 20'000;
  for (int i = 0; i < kKeys; ++i) insert(s, cat("k", i));
  for (int i = 0; i < kKeys; i += 2) remove_key(s, cat("k", i));
  const SkipList::HashStats st = s.hash_stats();
  EXPECT_EQ(st.nodes, static_cast<std::size_t>(kKeys / 2));
  EXPECT_EQ(s.size(), static_cast<std::size_t>(kKeys / 2));
  for (int i = 0; i < kKeys; ++i) EXPECT_EQ(s.hash_has(cat("k", i)), i % 2 == 1) << i;
}

// Live keys at the end: kStableKeys + kWriters * kWriterKeys / 2; doublings start above
// 2 x 2^10 keys.
#ifdef KV_TSAN
constexpr int kWriterKeys = 20'000;  // TSan is ~10x slower; 21 k live keys: 4 doublings
#else
constexpr int kWriterKeys = 40'000;  // 41 k live keys: 5 doublings
#endif
constexpr int kWriters = 2;
constexpr int kReaders = 2;
constexpr int kStableKeys = 1'000;

// Writers insert fresh keys (keeping the even ones, removing each odd one right after it
// is inserted) and so drive the table through several doublings; readers look up keys
// known present (the stable ones, and even keys a writer has published) and must always
// find exactly that key, unmarked.
TEST(StressIndexHashGrowth, ReadersNeverMissPresentKeysAcrossGrowth) {
  SkipList s;
  for (int i = 0; i < kStableKeys; ++i) insert(s, cat("stable-", i));
  const std::uint64_t growths_before = s.hash_stats().growths;

  std::vector<std::atomic<int>> published(kWriters);  // even keys [0, published) present
  for (auto& p : published) p.store(0);
  std::atomic<int> writers_left{kWriters};
  std::atomic<long> misses{0};  // a present key not found
  std::atomic<long> wrong{0};   // a node of another key, or a marked one
  std::atomic<long> lookups{0};
  std::latch go(kWriters + kReaders);

  auto writer = [&](int w) {
    go.arrive_and_wait();
    const std::string prefix = cat("w", w) + "-";
    for (int i = 0; i < kWriterKeys; ++i) {
      const std::string k = cat(prefix, i);
      insert(s, k);
      if (i % 2 == 1) {
        remove_key(s, k);
      } else {
        // release: a reader that sees i + 1 sees key i inserted (acquire below).
        published[w].store(i + 1, std::memory_order_release);
      }
    }
    writers_left.fetch_sub(1, std::memory_order_release);
  };
  auto reader = [&](int r) {
    std::mt19937 rng(static_cast<unsigned>(r) * 7919U + 3);
    go.arrive_and_wait();
    auto check = [&](const std::string& k, bool present) {
      kovan::Guard g = kovan::pin();
      KeyNode* n = s.find(k, g);
      if (n == nullptr) {
        if (present) ++misses;
        return;
      }
      if (n->key != k || n->marked.load(std::memory_order_acquire)) {
        // A present key's node is never marked; a removed key's may be (found just
        // before its removal), but never another key's node.
        if (present || n->key != k) ++wrong;
      }
    };
    long done = 0;
    // At least some lookups after the writers finished, so the check never passes vacuously.
    for (int tail = 0; tail < 200;) {
      if (writers_left.load(std::memory_order_acquire) == 0) ++tail;
      check(cat("stable-", static_cast<int>(rng() % kStableKeys)), true);
      const int w = static_cast<int>(rng() % kWriters);
      const int upto = published[w].load(std::memory_order_acquire);
      if (upto > 0) {
        const int i = static_cast<int>(rng() % static_cast<unsigned>(upto)) & ~1;
        check(cat(cat("w", w) + "-", i), true);
        check(cat(cat("w", w) + "-", i + 1), false);  // odd: removed or about to be
      }
      done += 3;
    }
    lookups += done;
  };

  std::vector<std::thread> threads;
  for (int w = 0; w < kWriters; ++w) threads.emplace_back(writer, w);
  for (int r = 0; r < kReaders; ++r) threads.emplace_back(reader, r);
  for (auto& t : threads) t.join();

  EXPECT_EQ(misses.load(), 0);
  EXPECT_EQ(wrong.load(), 0);
  EXPECT_GT(lookups.load(), 0);
  const SkipList::HashStats st = s.hash_stats();
  const std::size_t live = kStableKeys + kWriters * (kWriterKeys / 2);
  EXPECT_EQ(s.size(), live);
  EXPECT_EQ(st.nodes, live);
  EXPECT_LE(st.nodes, 2 * st.buckets);
  EXPECT_GE(st.growths - growths_before, 4U);
  // Quiescent: the hint is exact again (no node lost or left behind by a migration).
  for (int i = 0; i < kStableKeys; ++i) ASSERT_TRUE(s.hash_has(cat("stable-", i))) << i;
  for (int w = 0; w < kWriters; ++w) {
    for (int i = 0; i < kWriterKeys; ++i) {
      ASSERT_EQ(s.hash_has(cat(cat("w", w) + "-", i)), i % 2 == 0) << w << " " << i;
    }
  }
}

}  // namespace
}  // namespace kv::storage::detail
