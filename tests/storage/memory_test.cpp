// Memory per key (docs/BENCHMARKS.md, "Memory per key"): a version is one allocation with its
// value inline, index nodes are compact, and the heap bytes an engine holds per key (16-byte
// keys, 100-byte values, as the benchmark) stay under a bound after a load and after every
// key was overwritten ten times. The heap is read from glibc's mallinfo2 (bytes in chunks in
// use, headers included), so these figures do not depend on timing.
#include <gtest/gtest.h>
#include <malloc.h>

#include <cstdint>
#include <cstdio>
#include <string>

#include "index.hpp"
#include "storage/engine.hpp"

namespace kv::storage {
namespace {

using detail::KeyNode;
using detail::Version;

std::size_t heap_in_use() { return mallinfo2().uordblks; }

std::string record_key(int i) {  // "user" + 12 digits = 16 bytes, as kovan-bench
  char buf[17];
  std::snprintf(buf, sizeof buf, "user%012d", i);
  return std::string(buf, 16);
}

TEST(VersionLayout, ValueIsInlineInTheVersionsOwnAllocation) {
  const std::string value(100, 'v');
  Version* v = Version::make(7, 5, 3, false, value);
  EXPECT_EQ(v->commit_ts, 7u);
  EXPECT_EQ(v->create_rev, 5u);
  EXPECT_EQ(v->version, 3);
  EXPECT_FALSE(v->tombstone);
  EXPECT_EQ(v->value(), value);
  EXPECT_NE(v->value().data(), value.data());  // a copy
  // The bytes lie inside the version's own block: one allocation per version.
  const char* base = reinterpret_cast<const char*>(v);
  EXPECT_GE(v->value().data(), base);
  EXPECT_LE(v->value().data() + v->value().size(), base + malloc_usable_size(v));
  EXPECT_EQ(v->footprint(), sizeof(Version) + value.size());
  delete v;

  Version* t = Version::make(9, 0, 0, true, {});
  EXPECT_TRUE(t->tombstone);
  EXPECT_TRUE(t->value().empty());
  delete t;
}

TEST(KeyNodeLayout, FixedPartIsCompact) {
  // The kovan header (32 bytes), the key's view, hash_next, head, owner and one word for the
  // hash, the height and the flags.
  EXPECT_LE(sizeof(KeyNode), 80u);
  EXPECT_LE(sizeof(Version), 80u);  // room for one more 8-byte field than today's 72
}

// Heap bytes per key held by an engine: 100,000 keys, then ten overwrites of every key and a
// maintenance pass (prunes old versions) plus a kovan flush (frees what was retired).
TEST(EngineMemory, HeapBytesPerKeyAfterLoadAndAfterOverwrites) {
  constexpr int kKeys = 100'000;
#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
  GTEST_SKIP() << "the sanitizers' allocators do not keep glibc's accounting";
#endif
  // Measured: about 389 with a separately allocated value and the 112-byte node (128 + 112
  // for version and value, 144..160 for the node, plus the hash table); 341 with the value
  // inline (208) and the 96-byte node (128..144); 309 with kovan's 32-byte header instead of
  // 48 (a 192-byte version, a 112..128-byte node). With a header 8 bytes longer (40 bytes,
  // tried on purpose) it measured 338 (the version back in glibc's 208-byte class): the
  // bound sits between.
  constexpr double kMaxBytesPerKey = 320;
  const std::string value(100, 'x');
  Options o;
  o.background_sweeper = false;
  // The store's own bytes: no watch history (a separate, fixed budget: watch_history_bytes).
  o.watch_history_bytes = 0;
  const std::size_t empty = heap_in_use();
  double loaded = 0;
  {
    Engine e(o);
    for (int i = 0; i < kKeys; ++i) ASSERT_TRUE(e.put(record_key(i), value).ok());
    e.run_maintenance();
    kovan::flush();
    loaded = static_cast<double>(heap_in_use() - empty) / kKeys;
    std::printf("heap bytes per key after load: %.1f\n", loaded);
    EXPECT_LE(loaded, kMaxBytesPerKey);

    for (int round = 0; round < 10; ++round) {
      for (int i = 0; i < kKeys; ++i) ASSERT_TRUE(e.put(record_key(i), value).ok());
      e.run_maintenance();
    }
    e.run_maintenance();
    kovan::flush();
    EXPECT_EQ(e.stats().live_versions, static_cast<std::uint64_t>(kKeys));
    const double overwritten = static_cast<double>(heap_in_use() - empty) / kKeys;
    std::printf("heap bytes per key after 10 overwrites: %.1f\n", overwritten);
    EXPECT_LE(overwritten, kMaxBytesPerKey);
  }
}

}  // namespace
}  // namespace kv::storage
