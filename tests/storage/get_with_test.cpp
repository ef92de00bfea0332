// Engine::get_with: the one-shot get read in place (docs/STORAGE.md, "A get without copies").
// It must answer as Engine::get does (values, metadata, NOT_FOUND for an absent or deleted
// key, never a version whose commit is not visible yet, E2), copy no value, and keep the
// views it hands out valid for the whole visitor call, also while a writer replaces the key
// and GC prunes and frees the old versions (run under ASan: a view of freed memory is a
// heap-use-after-free there).
#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <future>
#include <latch>
#include <memory>
#include <string>
#include <thread>

#include "kovan/kovan.hpp"
#include "storage/engine.hpp"

namespace kv::storage {
namespace {

// What a visitor saw, copied out after the call (for comparison with Engine::get).
struct Seen {
  int calls = 0;
  KeyValue kv;
};

Status get_copy(Engine& e, std::string_view key, Seen& seen) {
  return e.get_with(key, [&](const KeyValueView& v) {
    ++seen.calls;
    seen.kv.key.assign(v.key);
    seen.kv.value.assign(v.value);
    seen.kv.create_revision = v.create_revision;
    seen.kv.mod_revision = v.mod_revision;
    seen.kv.version = v.version;
    seen.kv.lease = v.lease;
  });
}

void expect_same_as_get(Engine& e, std::string_view key) {
  Seen seen;
  Status s = get_copy(e, key, seen);
  Result<KeyValue> r = e.get(key);
  ASSERT_EQ(s.code(), r.code()) << key;
  if (!r.ok()) {
    EXPECT_EQ(seen.calls, 0) << key;
    return;
  }
  EXPECT_EQ(seen.calls, 1) << key;
  EXPECT_EQ(seen.kv.key, r->key);
  EXPECT_EQ(seen.kv.value, r->value);
  EXPECT_EQ(seen.kv.create_revision, r->create_revision);
  EXPECT_EQ(seen.kv.mod_revision, r->mod_revision);
  EXPECT_EQ(seen.kv.version, r->version);
  EXPECT_EQ(seen.kv.lease, r->lease);
}

TEST(GetWith, ValuesMetadataAbsentAndTombstone) {
  Options o;
  o.background_sweeper = false;
  Engine e(o);
  ASSERT_TRUE(e.put("a", "1").ok());                     // rev 2
  ASSERT_TRUE(e.put("b", std::string(5000, 'x')).ok());  // rev 3
  ASSERT_TRUE(e.put("a", "22").ok());                    // rev 4
  auto lease = e.lease_grant(60);
  ASSERT_TRUE(lease.ok());
  ASSERT_TRUE(e.put("l", "leased", false, 0, lease->id).ok());
  ASSERT_TRUE(e.put("d", "gone").ok());
  // A snapshot older than the delete keeps "d"'s chain: its head stays a tombstone.
  auto reader = e.begin(Isolation::kSnapshot);
  ASSERT_TRUE(reader.ok());
  ASSERT_TRUE(reader->get("d").ok());
  ASSERT_TRUE(e.del("d").ok());
  e.run_maintenance();
  ASSERT_EQ(e.version_count("d"), 2u) << "the tombstone head is gone";
  ASSERT_TRUE(e.put("e", "").ok());  // an empty value is a value

  Seen a;
  ASSERT_TRUE(get_copy(e, "a", a).ok());
  EXPECT_EQ(a.calls, 1);
  EXPECT_EQ(a.kv.key, "a");
  EXPECT_EQ(a.kv.value, "22");
  EXPECT_EQ(a.kv.create_revision, 2u);
  EXPECT_EQ(a.kv.mod_revision, 4u);
  EXPECT_EQ(a.kv.version, 2);
  EXPECT_EQ(a.kv.lease, 0u);

  Seen l;
  ASSERT_TRUE(get_copy(e, "l", l).ok());
  EXPECT_EQ(l.kv.value, "leased");
  EXPECT_EQ(l.kv.lease, lease->id);

  for (const char* absent : {"zz", "d", "ab"}) {
    Seen none;
    EXPECT_EQ(get_copy(e, absent, none).code(), StatusCode::kNotFound) << absent;
    EXPECT_EQ(none.calls, 0);
  }
  Seen empty_key;
  EXPECT_EQ(get_copy(e, "", empty_key).code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(empty_key.calls, 0);

  for (const char* k : {"a", "b", "l", "d", "e", "zz"}) expect_same_as_get(e, k);
  EXPECT_EQ(reader->get("d")->value, "gone");  // the snapshot still sees the value

  // In place: no value bytes copied by the engine.
  const std::uint64_t copied = value_bytes_copied_on_this_thread();
  std::size_t size = 0;
  ASSERT_TRUE(e.get_with("b", [&](const KeyValueView& v) { size = v.value.size(); }).ok());
  EXPECT_EQ(size, 5000u);
  EXPECT_EQ(value_bytes_copied_on_this_thread(), copied);
}

// Holds the first commit that reaches its version allocation (after it took its commit
// timestamp) until released: that timestamp stays unfinished, so W cannot pass it.
class HoldFirstVersion final : public AllocationFaults {
 public:
  void arm() { armed_.store(true, std::memory_order_relaxed); }
  void before_allocation(Site site) override {
    if (site != Site::kVersion || !armed_.exchange(false, std::memory_order_relaxed)) return;
    held_.count_down();
    release_.wait();
  }
  void wait_held() { held_.wait(); }
  void release() { release_.count_down(); }

 private:
  std::atomic<bool> armed_{false};
  std::latch held_{1};
  std::latch release_{1};
};

// A later commit (A, on "a") installs its version while an earlier one (B) holds its
// timestamp: A's version is the head of "a" but not visible, so get_with must visit the
// version before it, as Engine::get does (E2). Also a key whose only version is invisible.
TEST(GetWith, VersionNotYetVisibleIsNotReturned) {
  auto hold = std::make_shared<HoldFirstVersion>();
  Options o;
  o.background_sweeper = false;
  o.alloc_faults = hold;
  Engine e(o);
  ASSERT_TRUE(e.put("a", "old").ok());
  hold->arm();
  auto b = std::async(std::launch::async, [&] { return e.put("b", "1").ok(); });
  hold->wait_held();
  auto a = std::async(std::launch::async, [&] { return e.put("a", "new").ok(); });
  auto n = std::async(std::launch::async, [&] { return e.put("n", "new").ok(); });
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(60);
  while ((e.version_count("a") < 2 || e.version_count("n") < 1) &&
         std::chrono::steady_clock::now() < deadline) {
    std::this_thread::yield();
  }
  ASSERT_EQ(e.version_count("a"), 2u) << "A never installed its version";
  ASSERT_EQ(e.version_count("n"), 1u) << "the put of n never installed its version";
  Seen seen;
  ASSERT_TRUE(get_copy(e, "a", seen).ok());
  EXPECT_EQ(seen.calls, 1);
  EXPECT_EQ(seen.kv.value, "old");
  EXPECT_EQ(seen.kv.version, 1);
  Seen none;
  EXPECT_EQ(get_copy(e, "n", none).code(), StatusCode::kNotFound);
  EXPECT_EQ(none.calls, 0);
  hold->release();
  EXPECT_TRUE(b.get());
  EXPECT_TRUE(a.get());
  EXPECT_TRUE(n.get());
  expect_same_as_get(e, "a");
  Seen now;
  ASSERT_TRUE(get_copy(e, "a", now).ok());
  EXPECT_EQ(now.kv.value, "new");
  ASSERT_TRUE(get_copy(e, "n", now).ok());
  EXPECT_EQ(now.kv.value, "new");
}

// Inside the visitor, another thread overwrites the key many times, deletes it, runs GC
// (which prunes the visited version and removes the node) and flushes its reclamation
// queue, then exits (which frees everything it retired that no guard protects). The views
// must still hold the bytes the visitor was given.
TEST(GetWith, ViewStaysValidWhileWriterOverwritesAndGcPrunes) {
  Options o;
  o.background_sweeper = false;
  Engine e(o);
  const std::string key(100, 'k');
  const std::string value(4096, 'v');
  for (int round = 0; round < 20; ++round) {
    ASSERT_TRUE(e.put(key, value).ok());
    bool visited = false;
    Status s = e.get_with(key, [&](const KeyValueView& v) {
      visited = true;
      std::thread writer([&] {
        for (int i = 0; i < 8; ++i) ASSERT_TRUE(e.put(key, std::string(4096, 'w')).ok());
        ASSERT_TRUE(e.del(key).ok());
        e.run_maintenance();
        kovan::flush();
      });
      writer.join();
      ASSERT_EQ(e.version_count(key), 0u) << "GC did not prune the key";
      EXPECT_EQ(v.key, key);
      EXPECT_EQ(v.value, value);
    });
    ASSERT_TRUE(s.ok());
    ASSERT_TRUE(visited);
  }
}

// An exception from the visitor propagates and leaves the engine usable (the guard and,
// on the snapshot path, the snapshot are released).
TEST(GetWith, VisitorExceptionPropagates) {
  Options o;
  o.background_sweeper = false;
  Engine e(o);
  ASSERT_TRUE(e.put("a", "1").ok());
  EXPECT_THROW((void)e.get_with("a", [](const KeyValueView&) { throw std::runtime_error("x"); }),
               std::runtime_error);
  ASSERT_TRUE(e.put("a", "2").ok());
  e.run_maintenance();
  EXPECT_EQ(e.version_count("a"), 1u);
  expect_same_as_get(e, "a");
}

}  // namespace
}  // namespace kv::storage
