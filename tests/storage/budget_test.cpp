// Response budgets and memory limits of the engine (storage/engine.hpp): reads stop copying
// values once their budget is spent while `count` and `more` stay exact; a write whose
// returned key-values would not fit is refused with nothing applied; puts are refused above
// Options::max_memory_bytes and past Options::max_txn_bytes, while reads and deletes are
// served. "Nothing extra copied" is measured with value_bytes_copied_on_this_thread().
#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "storage/engine.hpp"
#include "test_util.hpp"

namespace kv::storage {
namespace {

using testing::cat;

constexpr std::size_t kValue = 1000;

// Value bytes copied by `f` on this thread.
template <class F>
std::uint64_t copied_by(F&& f) {
  const std::uint64_t before = value_bytes_copied_on_this_thread();
  f();
  return value_bytes_copied_on_this_thread() - before;
}

Options quiet() {
  Options o;
  o.background_sweeper = false;
  return o;
}

// Keys k000..k(n-1), each with a kValue-byte value.
void fill(Engine& e, int n, std::size_t value_bytes = kValue) {
  for (int i = 0; i < n; ++i) {
    char key[8];
    std::snprintf(key, sizeof key, "k%03d", i);
    ASSERT_TRUE(e.put(key, std::string(value_bytes, static_cast<char>('a' + i % 26))).ok());
  }
}

const std::size_t kCost = response_cost(4, kValue);  // one "kNNN" key-value

TEST(ScanBudget, CutsTheResultKeepsCountExactAndCopiesNothingPastIt) {
  Engine e(quiet());
  fill(e, 100);
  for (bool reverse : {false, true}) {
    ScanOptions o;
    o.reverse = reverse;
    o.max_bytes = 5 * kCost + kCost / 2;  // room for 5 and a half
    Result<ScanResult> r = ScanResult{};
    const std::uint64_t copied = copied_by([&] { r = e.scan("", "", o); });
    ASSERT_TRUE(r.ok());
    ASSERT_EQ(r->kvs.size(), 5u) << reverse;
    EXPECT_EQ(r->count, 100u);
    EXPECT_TRUE(r->more);
    EXPECT_EQ(r->bytes, 5 * kCost);
    EXPECT_EQ(r->kvs.front().key, reverse ? "k099" : "k000");
    EXPECT_EQ(r->kvs.back().key, reverse ? "k095" : "k004");
    EXPECT_EQ(copied, 5 * kValue) << "values past the budget were copied";
  }
}

TEST(ScanBudget, ExactFitIsNotCutAndKeysOnlyCostsNoValue) {
  Engine e(quiet());
  fill(e, 10);
  ScanOptions o;
  o.max_bytes = 10 * kCost;
  Result<ScanResult> r = e.scan("", "", o);
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(r->kvs.size(), 10u);
  EXPECT_FALSE(r->more);
  o.max_bytes = 10 * response_cost(4, 0);
  o.keys_only = true;
  std::uint64_t copied = copied_by([&] { r = e.scan("", "", o); });
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(r->kvs.size(), 10u);
  EXPECT_FALSE(r->more);
  EXPECT_EQ(copied, 0u);
  // A first key-value that does not fit: nothing returned, but counted and flagged.
  o.keys_only = false;
  o.max_bytes = kCost - 1;
  copied = copied_by([&] { r = e.scan("", "", o); });
  ASSERT_TRUE(r.ok());
  EXPECT_TRUE(r->kvs.empty());
  EXPECT_TRUE(r->more);
  EXPECT_EQ(r->count, 10u);
  EXPECT_EQ(copied, 0u);
}

TEST(ScanBudget, TheResultIsAPrefixOfTheRange) {
  // A large value between small ones: once it does not fit, the smaller keys after it are
  // not returned either (a client continues from the last key returned).
  Engine e(quiet());
  ASSERT_TRUE(e.put("a", "1").ok());
  ASSERT_TRUE(e.put("b", std::string(10'000, 'b')).ok());
  ASSERT_TRUE(e.put("c", "1").ok());
  for (bool reverse : {false, true}) {
    ScanOptions o;
    o.reverse = reverse;
    o.max_bytes = 2 * response_cost(1, 1) + 100;
    Result<ScanResult> r = e.scan("", "", o);
    ASSERT_TRUE(r.ok());
    ASSERT_EQ(r->kvs.size(), 1u);
    EXPECT_EQ(r->kvs[0].key, reverse ? "c" : "a");
    EXPECT_TRUE(r->more);
    EXPECT_EQ(r->count, 3u);
  }
}

TEST(ScanBudget, LimitStopsCopyingAtTheLimit) {
  Engine e(quiet());
  fill(e, 300, 10'000);
  for (bool reverse : {false, true}) {
    ScanOptions o;
    o.limit = 3;
    o.reverse = reverse;
    Result<ScanResult> r = ScanResult{};
    const std::uint64_t copied = copied_by([&] { r = e.scan("", "", o); });
    ASSERT_TRUE(r.ok());
    EXPECT_EQ(r->kvs.size(), 3u);
    EXPECT_EQ(r->count, 300u);
    EXPECT_TRUE(r->more);
    EXPECT_EQ(copied, 3u * 10'000) << "a limited scan copied values it dropped";
  }
}

TEST(ScanBudget, InteractiveScanSeesOwnWritesWithinTheBudget) {
  Engine e(quiet());
  fill(e, 10);
  auto t = e.begin();
  ASSERT_TRUE(t.ok());
  ASSERT_TRUE(t->put("k0005", std::string(kValue, 'z')).ok());  // own write, between keys
  ScanOptions o;
  o.max_bytes = 7 * kCost;  // six fit: the own write "k0005" costs one byte more than kCost
  Result<ScanResult> r = ScanResult{};
  const std::uint64_t copied = copied_by([&] { r = t->scan("", "", o); });
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(r->count, 11u);
  EXPECT_TRUE(r->more);
  ASSERT_EQ(r->kvs.size(), 6u);  // k000, k0005, k001 .. k004
  EXPECT_EQ(r->kvs[1].key, "k0005");
  EXPECT_EQ(r->kvs.back().key, "k004");
  EXPECT_EQ(copied, 6 * kValue);
}

TEST(TxnBudget, ManyGetsOfABigValueFailBeforeCopyingPastTheBudgetAndApplyNothing) {
  Engine e(quiet());
  ASSERT_TRUE(e.put("big", std::string(1 << 20, 'b')).ok());
  CondTxn c;
  c.max_response_bytes = 4u << 20;
  TxnOp put;
  put.type = TxnOp::Type::kPut;
  put.key = "marker";
  put.value = "1";
  c.success.push_back(put);
  TxnOp get;
  get.key = "big";
  for (int i = 0; i < 256; ++i) c.success.push_back(get);
  const Revision before = e.current_revision();
  Result<CondTxnResult> r = CondTxnResult{};
  const std::uint64_t copied = copied_by([&] { r = e.txn(c); });
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.code(), StatusCode::kResourceExhausted);
  EXPECT_NE(r.status().message().find("nothing was applied"), std::string::npos);
  EXPECT_LE(copied, 4u << 20) << "values past the budget were copied";
  EXPECT_EQ(e.get("marker").code(), StatusCode::kNotFound);
  EXPECT_EQ(e.current_revision(), before);
  EXPECT_EQ(e.stats().txn_write_bytes, 0u);

  // Three gets fit: everything is returned and the put commits.
  c.success.resize(4);
  r = e.txn(c);
  ASSERT_TRUE(r.ok()) << r.status().to_string();
  ASSERT_EQ(r->results.size(), 4u);
  for (int i = 1; i < 4; ++i) EXPECT_EQ(r->results[i].kvs.at(0).value.size(), 1u << 20);
  EXPECT_TRUE(e.get("marker").ok());
}

TEST(TxnBudget, RangeGetsShareTheBudgetInOpOrderAndArePrefixCut) {
  Engine e(quiet());
  fill(e, 20);
  CondTxn c;
  TxnOp scan;
  scan.key = "k";
  scan.range_end = std::string(1, '\0');
  c.success = {scan, scan};
  c.max_response_bytes = 2 * kOpResultOverhead + 15 * kCost;
  Result<CondTxnResult> r = CondTxnResult{};
  const std::uint64_t copied = copied_by([&] { r = e.txn(c); });
  ASSERT_TRUE(r.ok()) << r.status().to_string();
  ASSERT_EQ(r->results.size(), 2u);
  EXPECT_EQ(r->results[0].kvs.size(), 15u);
  EXPECT_TRUE(r->results[0].more);
  EXPECT_EQ(r->results[0].count, 20u);
  EXPECT_TRUE(r->results[1].kvs.empty());  // the first scan spent the budget
  EXPECT_TRUE(r->results[1].more);
  EXPECT_EQ(r->results[1].count, 20u);
  EXPECT_EQ(copied, 15 * kValue);

  // A point get after the budget is spent fails the transaction (a get cannot be cut).
  TxnOp get;
  get.key = "k000";
  TxnOp put;
  put.type = TxnOp::Type::kPut;
  put.key = "marker";
  c.success = {put, scan, get};
  r = e.txn(c);
  EXPECT_EQ(r.code(), StatusCode::kResourceExhausted);
  EXPECT_EQ(e.get("marker").code(), StatusCode::kNotFound);

  // Ops are charged too: a budget below one op's allowance refuses the transaction.
  c.success = {put};
  c.max_response_bytes = kOpResultOverhead - 1;
  EXPECT_EQ(e.txn(c).code(), StatusCode::kResourceExhausted);
  c.max_response_bytes = kOpResultOverhead;
  EXPECT_TRUE(e.txn(c).ok());
  // ... on top of what they return: one get fits exactly its op and key-value allowance.
  c.success = {get};
  c.max_response_bytes = kOpResultOverhead + kCost;
  EXPECT_TRUE(e.txn(c).ok());
  c.max_response_bytes = kOpResultOverhead + kCost - 1;
  EXPECT_EQ(e.txn(c).code(), StatusCode::kResourceExhausted);
}

TEST(TxnBudget, DeleteRangePrevKvsThatDoNotFitDeleteNothing) {
  Engine e(quiet());
  fill(e, 5, 1 << 20);
  CondTxn c;
  TxnOp del;
  del.type = TxnOp::Type::kDelete;
  del.key = "k";
  del.range_end = std::string(1, '\0');
  del.prev_kv = true;
  c.success = {del};
  c.max_response_bytes = (4u << 20) - 1024;
  Result<CondTxnResult> r = CondTxnResult{};
  std::uint64_t copied = copied_by([&] { r = e.txn(c); });
  EXPECT_EQ(r.code(), StatusCode::kResourceExhausted);
  EXPECT_LE(copied, 4u << 20);
  EXPECT_EQ(e.stats().keys, 5u);

  // One-shot delete_range and del with prev_kv: the same rule.
  Result<DeleteResult> d = DeleteResult{};
  copied = copied_by([&] { d = e.delete_range("k", "", true, (4u << 20) - 1024); });
  EXPECT_EQ(d.code(), StatusCode::kResourceExhausted);
  EXPECT_LE(copied, 4u << 20);
  EXPECT_EQ(e.stats().keys, 5u);
  copied = copied_by([&] { d = e.del("k000", true, 1000); });
  EXPECT_EQ(d.code(), StatusCode::kResourceExhausted);
  EXPECT_EQ(copied, 0u);
  EXPECT_TRUE(e.get("k000").ok());
  // Without prev_kv the budget does not matter: only keys are read.
  d = e.delete_range("k", "", false, 1000);
  ASSERT_TRUE(d.ok());
  EXPECT_EQ(d->deleted, 5);
  EXPECT_EQ(e.stats().keys, 0u);

  // Within the budget every deleted key-value comes back.
  fill(e, 3, 1 << 20);
  d = e.delete_range("k", "", true, (4u << 20) - 1024);
  ASSERT_TRUE(d.ok());
  EXPECT_EQ(d->deleted, 3);
  EXPECT_EQ(d->prev_kvs.size(), 3u);
}

TEST(TxnBudget, PutPrevKvThatDoesNotFitWritesNothing) {
  Engine e(quiet());
  ASSERT_TRUE(e.put("a", std::string(5000, 'a')).ok());
  Result<PutResult> p = e.put("a", "new", true, 4000);
  EXPECT_EQ(p.code(), StatusCode::kResourceExhausted);
  EXPECT_EQ(e.get("a")->value.size(), 5000u);
  p = e.put("a", "new", true, 6000);
  ASSERT_TRUE(p.ok());
  ASSERT_TRUE(p->prev_kv.has_value());
  EXPECT_EQ(p->prev_kv->value.size(), 5000u);
  // An absent key has no prev_kv to charge.
  EXPECT_TRUE(e.put("b", "x", true, 1).ok());
}

// ------------------------------------------------------------------ memory limits

TEST(MemoryLimit, PutsAreRefusedAboveTheLimitWhileReadsAndDeletesAreServed) {
  Options o = quiet();
  o.max_memory_bytes = 8u << 20;
  Engine e(o);
  const std::string v(64 << 10, 'v');
  int accepted = 0;
  Status refusal;
  for (int i = 0; i < 1000; ++i) {
    Result<PutResult> r = e.put(cat("key", i), v);
    if (!r.ok()) {
      refusal = r.status();
      break;
    }
    ++accepted;
  }
  ASSERT_EQ(refusal.code(), StatusCode::kResourceExhausted) << "never refused";
  EXPECT_NE(refusal.message().find("memory limit"), std::string::npos) << refusal.message();
  EXPECT_GT(accepted, 100);  // 8 MiB / 64 KiB = 128, less the per-key overheads
  EXPECT_LE(e.stats().memory_bytes, o.max_memory_bytes);
  // Nothing of the refused put is left behind.
  EXPECT_EQ(e.get(cat("key", accepted)).code(), StatusCode::kNotFound);
  EXPECT_EQ(e.stats().txn_write_bytes, 0u);
  // Reads and deletes are served; a put in an interactive or conditional txn is refused too.
  EXPECT_TRUE(e.get("key0").ok());
  EXPECT_TRUE(e.scan("", "").ok());
  CondTxn c;
  TxnOp put;
  put.type = TxnOp::Type::kPut;
  put.key = "other";
  put.value = v;
  c.success = {put};
  EXPECT_EQ(e.txn(c).code(), StatusCode::kResourceExhausted);
  {
    auto t = e.begin();
    ASSERT_TRUE(t.ok());
    EXPECT_EQ(t->put("other", v).code(), StatusCode::kResourceExhausted);
    EXPECT_TRUE(t->del("key1").ok());
    EXPECT_TRUE(t->commit().ok());
  }
  // Deleting frees space: puts are accepted again.
  for (int i = 2; i < 20; ++i) ASSERT_TRUE(e.del(cat("key", i)).ok());
  e.run_maintenance();
  EXPECT_TRUE(e.put("again", v).ok());
}

TEST(MemoryLimit, OpenWriteSetsCountAndAreReleasedWhenTheTransactionEnds) {
  Options o = quiet();
  o.max_memory_bytes = 4u << 20;
  o.txn_timeout = std::chrono::milliseconds(50);
  auto clock = std::make_shared<ManualClock>();
  o.clock = clock;
  Engine e(o);
  const std::string v(256 << 10, 'v');
  auto t = e.begin();
  ASSERT_TRUE(t.ok());
  int buffered = 0;
  while (t->put(cat("t", buffered), v).ok()) ++buffered;
  EXPECT_GE(buffered, 10);
  EXPECT_LT(buffered, 16);
  EXPECT_GE(e.stats().txn_write_bytes, buffered * v.size());
  // Another writer is refused for the open transaction's buffered bytes.
  EXPECT_EQ(e.put("x", v).code(), StatusCode::kResourceExhausted);
  // Abort releases them.
  ASSERT_TRUE(t->abort().ok());
  EXPECT_EQ(e.stats().txn_write_bytes, 0u);
  EXPECT_TRUE(e.put("x", v).ok());
  // So does expiry.
  auto t2 = e.begin();
  ASSERT_TRUE(t2.ok());
  ASSERT_TRUE(t2->put("y", v).ok());
  EXPECT_GT(e.stats().txn_write_bytes, 0u);
  clock->advance(std::chrono::milliseconds(100));
  e.run_maintenance();
  EXPECT_EQ(e.stats().txn_write_bytes, 0u);
  // And commit (once the handle is gone); replacing a buffered value is charged the change.
  {
    auto t3 = e.begin();
    ASSERT_TRUE(t3.ok());
    ASSERT_TRUE(t3->put("z", v).ok());
    const std::uint64_t one = e.stats().txn_write_bytes;
    ASSERT_TRUE(t3->put("z", "small").ok());
    EXPECT_EQ(e.stats().txn_write_bytes, one - v.size() + 5);
    ASSERT_TRUE(t3->del("z").ok());
    EXPECT_EQ(e.stats().txn_write_bytes, one - v.size());
    ASSERT_TRUE(t3->commit().ok());
  }
  EXPECT_EQ(e.stats().txn_write_bytes, 0u);
}

TEST(MemoryLimit, ExternalBytesCount) {
  Options o = quiet();
  o.max_memory_bytes = 1u << 20;
  auto external = std::make_shared<std::atomic<std::uint64_t>>(0);
  o.external_memory_bytes = [external] { return external->load(); };
  Engine e(o);
  EXPECT_TRUE(e.put("a", "1").ok());
  external->store(1u << 20);
  EXPECT_EQ(e.put("b", "1").code(), StatusCode::kResourceExhausted);
  EXPECT_GE(e.stats().memory_bytes, 1u << 20);
  external->store(0);
  EXPECT_TRUE(e.put("b", "1").ok());
}

TEST(TxnBytesLimit, APutPastTheCapIsRefusedAndNothingElseChanges) {
  Options o = quiet();
  o.max_txn_bytes = 1u << 20;
  Engine e(o);
  const std::string v(100 << 10, 'v');
  auto t = e.begin();
  ASSERT_TRUE(t.ok());
  int buffered = 0;
  Status refusal;
  for (; buffered < 100; ++buffered) {
    Status s = t->put(cat("k", buffered), v);
    if (!s.ok()) {
      refusal = s;
      break;
    }
  }
  EXPECT_EQ(refusal.code(), StatusCode::kResourceExhausted);
  EXPECT_NE(refusal.message().find("per transaction"), std::string::npos) << refusal.message();
  EXPECT_GE(buffered, 9);
  EXPECT_LE(buffered, 10);
  EXPECT_TRUE(t->active());
  // Replacing a buffered value by one no larger, and deleting, still work.
  EXPECT_TRUE(t->put("k0", "small").ok());
  EXPECT_TRUE(t->del("k1").ok());
  Result<Revision> c = t->commit();
  ASSERT_TRUE(c.ok()) << c.status().to_string();
  EXPECT_EQ(e.get("k0")->value, "small");
  EXPECT_EQ(e.get("k1").code(), StatusCode::kNotFound);
  EXPECT_TRUE(e.get("k2").ok());
  EXPECT_EQ(e.get(cat("k", buffered)).code(), StatusCode::kNotFound);
  // The default cap is 64 MiB.
  EXPECT_EQ(Options{}.max_txn_bytes, std::uint64_t{64} << 20);
}

}  // namespace
}  // namespace kv::storage
