// One-shot operations, the conditional transaction, interactive transaction lifecycle,
// size limits, expiry through an injected clock, and statistics.
#include <gtest/gtest.h>

#include <string>

#include "storage/engine.hpp"
#include "test_util.hpp"

namespace kv::storage {
namespace {

using testing::cat;

Options quiet() {
  Options o;
  o.background_sweeper = false;
  return o;
}

TEST(EngineOneShot, PutGetMetadataAndRevisions) {
  Engine e(quiet());
  EXPECT_EQ(e.current_revision(), 1u);
  EXPECT_EQ(e.get("a").code(), StatusCode::kNotFound);
  auto p1 = e.put("a", "1");
  ASSERT_TRUE(p1.ok());
  EXPECT_EQ(p1->revision, 2u);
  EXPECT_FALSE(p1->prev_kv.has_value());
  auto p2 = e.put("a", "2", /*prev_kv=*/true);
  ASSERT_TRUE(p2.ok());
  EXPECT_EQ(p2->revision, 3u);
  ASSERT_TRUE(p2->prev_kv.has_value());
  EXPECT_EQ(p2->prev_kv->value, "1");
  EXPECT_EQ(p2->prev_kv->mod_revision, 2u);
  auto g = e.get("a");
  ASSERT_TRUE(g.ok());
  EXPECT_EQ(g->value, "2");
  EXPECT_EQ(g->create_revision, 2u);
  EXPECT_EQ(g->mod_revision, 3u);
  EXPECT_EQ(g->version, 2);
  EXPECT_EQ(e.current_revision(), 3u);
  // Delete resets the version; re-creation starts a new create_revision.
  auto d = e.del("a", true);
  ASSERT_TRUE(d.ok());
  EXPECT_EQ(d->deleted, 1);
  ASSERT_EQ(d->prev_kvs.size(), 1u);
  EXPECT_EQ(d->prev_kvs[0].value, "2");
  EXPECT_EQ(d->revision, 4u);
  EXPECT_EQ(e.get("a").code(), StatusCode::kNotFound);
  auto d2 = e.del("a");
  ASSERT_TRUE(d2.ok());
  EXPECT_EQ(d2->deleted, 0);
  ASSERT_TRUE(e.put("a", "3").ok());
  g = e.get("a");
  ASSERT_TRUE(g.ok());
  EXPECT_EQ(g->create_revision, 5u);
  EXPECT_EQ(g->version, 1);
}

TEST(EngineOneShot, ScanOrderLimitReverseKeysOnlyCount) {
  Engine e(quiet());
  for (const char* k : {"b", "d", "a", "c", "e"}) ASSERT_TRUE(e.put(k, std::string(k) + "v").ok());
  auto keys = [](const ScanResult& r) {
    std::string s;
    for (auto& kv : r.kvs) s += kv.key;
    return s;
  };
  auto all = e.scan("", "");
  ASSERT_TRUE(all.ok());
  EXPECT_EQ(keys(*all), "abcde");
  EXPECT_EQ(all->count, 5u);
  EXPECT_FALSE(all->more);
  EXPECT_EQ(all->kvs[1].value, "bv");
  auto mid = e.scan("b", "d");
  EXPECT_EQ(keys(*mid), "bc");
  ScanOptions o;
  o.limit = 2;
  auto lim = e.scan("", "", o);
  EXPECT_EQ(keys(*lim), "ab");
  EXPECT_TRUE(lim->more);
  EXPECT_EQ(lim->count, 5u);  // count is not capped by the limit
  o.reverse = true;
  auto rev = e.scan("", "", o);
  EXPECT_EQ(keys(*rev), "ed");
  EXPECT_TRUE(rev->more);
  auto rev_mid = e.scan("b", "e", ScanOptions{0, true, false, false});
  EXPECT_EQ(keys(*rev_mid), "dcb");
  auto ko = e.scan("a", "c", ScanOptions{0, false, true, false});
  ASSERT_EQ(ko->kvs.size(), 2u);
  EXPECT_TRUE(ko->kvs[0].value.empty());
  EXPECT_EQ(ko->kvs[0].mod_revision, 4u);  // "a" was the third put
  auto cnt = e.scan("", "", ScanOptions{0, false, false, true});
  EXPECT_TRUE(cnt->kvs.empty());
  EXPECT_EQ(cnt->count, 5u);
  EXPECT_EQ(e.scan("d", "b").code(), StatusCode::kInvalidArgument);
}

TEST(EngineOneShot, DeleteRange) {
  Engine e(quiet());
  for (const char* k : {"a", "b", "c", "d"}) ASSERT_TRUE(e.put(k, "x").ok());
  auto d = e.delete_range("b", "d", true);
  ASSERT_TRUE(d.ok());
  EXPECT_EQ(d->deleted, 2);
  ASSERT_EQ(d->prev_kvs.size(), 2u);
  EXPECT_EQ(d->prev_kvs[0].key, "b");
  auto rest = e.scan("", "");
  ASSERT_EQ(rest->kvs.size(), 2u);
  EXPECT_EQ(rest->kvs[0].key, "a");
  EXPECT_EQ(rest->kvs[1].key, "d");
  auto none = e.delete_range("x", "z");
  ASSERT_TRUE(none.ok());
  EXPECT_EQ(none->deleted, 0);
  EXPECT_EQ(e.delete_range("", "")->deleted, 2);  // everything
  EXPECT_EQ(e.stats().keys, 0u);
}

TEST(EngineCondTxn, CompareTargetsAndBranches) {
  Engine e(quiet());
  ASSERT_TRUE(e.put("k", "v1").ok());  // rev 2
  ASSERT_TRUE(e.put("k", "v2").ok());  // rev 3, version 2, create 2
  auto cmp = [](Compare::Target t, Compare::Op op, std::int64_t n, std::string v = {}) {
    Compare c;
    c.key = "k";
    c.target = t;
    c.op = op;
    c.number = n;
    c.value = std::move(v);
    return c;
  };
  using T = Compare::Target;
  using O = Compare::Op;
  struct Case {
    Compare c;
    bool holds;
  };
  const Case cases[] = {
      {cmp(T::kValue, O::kEqual, 0, "v2"), true},    {cmp(T::kValue, O::kEqual, 0, "v1"), false},
      {cmp(T::kValue, O::kNotEqual, 0, "v1"), true}, {cmp(T::kValue, O::kLess, 0, "v3"), true},
      {cmp(T::kValue, O::kGreater, 0, "v3"), false}, {cmp(T::kVersion, O::kEqual, 2), true},
      {cmp(T::kVersion, O::kGreater, 2), false},     {cmp(T::kCreateRevision, O::kEqual, 2), true},
      {cmp(T::kModRevision, O::kEqual, 3), true},    {cmp(T::kModRevision, O::kLess, 3), false},
  };
  for (const Case& c : cases) {
    CondTxn req;
    req.compare = {c.c};
    TxnOp get;
    get.type = TxnOp::Type::kGet;
    get.key = "k";
    req.success = {get};
    auto r = e.txn(req);
    ASSERT_TRUE(r.ok());
    EXPECT_EQ(r->succeeded, c.holds)
        << static_cast<int>(c.c.target) << " op " << static_cast<int>(c.c.op);
    if (c.holds) {
      ASSERT_EQ(r->results.size(), 1u);
      ASSERT_EQ(r->results[0].kvs.size(), 1u);
      EXPECT_EQ(r->results[0].kvs[0].value, "v2");
    } else {
      EXPECT_TRUE(r->results.empty());
    }
    EXPECT_EQ(r->revision, 3u);  // nothing written
  }
  // Absent key: version 0; value compares are false.
  CondTxn absent;
  Compare c0 = cmp(T::kVersion, O::kEqual, 0);
  c0.key = "new";
  absent.compare = {c0};
  TxnOp put;
  put.type = TxnOp::Type::kPut;
  put.key = "new";
  put.value = "created";
  absent.success = {put};
  auto r = e.txn(absent);
  ASSERT_TRUE(r.ok());
  EXPECT_TRUE(r->succeeded);
  EXPECT_EQ(r->revision, 4u);
  EXPECT_EQ(e.get("new")->value, "created");
  auto again = e.txn(absent);  // now version 1: the failure branch (empty) runs
  EXPECT_FALSE(again->succeeded);
  Compare cv = cmp(T::kValue, O::kNotEqual, 0, "x");
  cv.key = "missing";
  CondTxn vreq;
  vreq.compare = {cv};
  EXPECT_FALSE(e.txn(vreq)->succeeded);
}

TEST(EngineCondTxn, CompareAndSwapAndRangeOps) {
  Engine e(quiet());
  ASSERT_TRUE(e.put("a1", "1").ok());
  ASSERT_TRUE(e.put("a2", "2").ok());
  ASSERT_TRUE(e.put("b1", "3").ok());
  CondTxn req;
  Compare c;
  c.key = "a1";
  c.target = Compare::Target::kValue;
  c.op = Compare::Op::kEqual;
  c.value = "1";
  req.compare = {c};
  TxnOp del;
  del.type = TxnOp::Type::kDelete;
  del.key = "a";
  del.range_end = "b";
  del.prev_kv = true;
  TxnOp put;
  put.type = TxnOp::Type::kPut;
  put.key = "b1";
  put.value = "30";
  put.prev_kv = true;
  TxnOp get;
  get.type = TxnOp::Type::kGet;
  get.key = "a";
  get.range_end = std::string(1, '\0');  // everything from "a"
  req.success = {del, put, get};
  auto r = e.txn(req);
  ASSERT_TRUE(r.ok());
  ASSERT_TRUE(r->succeeded);
  ASSERT_EQ(r->results.size(), 3u);
  EXPECT_EQ(r->results[0].deleted, 2);
  EXPECT_EQ(r->results[0].kvs.size(), 2u);
  ASSERT_EQ(r->results[1].kvs.size(), 1u);
  EXPECT_EQ(r->results[1].kvs[0].value, "3");
  // The get sees the transaction's own writes.
  ASSERT_EQ(r->results[2].kvs.size(), 1u);
  EXPECT_EQ(r->results[2].kvs[0].key, "b1");
  EXPECT_EQ(r->results[2].kvs[0].value, "30");
  // All three writes share one revision.
  EXPECT_EQ(e.get("b1")->mod_revision, r->revision);
  EXPECT_EQ(e.scan("a", "b")->count, 0u);
  // Same request again: compare fails now.
  EXPECT_FALSE(e.txn(req)->succeeded);
}

TEST(EngineLimits, KeyAndValueSizes) {
  Options o = quiet();
  Engine e(o);
  const std::string max_key(o.max_key_bytes, 'k');
  const std::string big_key(o.max_key_bytes + 1, 'k');
  const std::string max_val(o.max_value_bytes, 'v');
  const std::string big_val(o.max_value_bytes + 1, 'v');
  EXPECT_TRUE(e.put(max_key, max_val).ok());
  EXPECT_EQ(e.get(max_key)->value.size(), o.max_value_bytes);
  EXPECT_EQ(e.put(big_key, "v").code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(e.put("k", big_val).code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(e.put("", "v").code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(e.get(big_key).code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(e.del(big_key).code(), StatusCode::kInvalidArgument);
  auto t = e.begin();
  ASSERT_TRUE(t.ok());
  EXPECT_EQ(t->put("k", big_val).code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(t->put(big_key, "v").code(), StatusCode::kInvalidArgument);
  EXPECT_TRUE(t->active());  // a rejected argument does not end the transaction
  CondTxn req;
  TxnOp put;
  put.type = TxnOp::Type::kPut;
  put.key = "k";
  put.value = big_val;
  req.success = {put};
  EXPECT_EQ(e.txn(req).code(), StatusCode::kInvalidArgument);
  Options small;
  small.background_sweeper = false;
  small.max_key_bytes = 4;
  small.max_value_bytes = 2;
  Engine s(small);
  EXPECT_TRUE(s.put("abcd", "xy").ok());
  EXPECT_EQ(s.put("abcde", "x").code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(s.put("a", "xyz").code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(e.stats().keys, 1u);  // nothing oversized was stored
}

TEST(EngineTxn, ReadYourWritesAndLifecycle) {
  Engine e(quiet());
  ASSERT_TRUE(e.put("a", "0").ok());
  auto tr = e.begin();
  ASSERT_TRUE(tr.ok());
  Transaction t = std::move(tr).value();
  EXPECT_NE(t.id(), 0u);
  EXPECT_EQ(t.snapshot_revision(), 2u);
  ASSERT_TRUE(t.put("b", "1").ok());
  ASSERT_TRUE(t.del("a").ok());
  EXPECT_EQ(t.get("b")->value, "1");
  EXPECT_EQ(t.get("a").code(), StatusCode::kNotFound);
  auto s = t.scan("", "");
  ASSERT_EQ(s->kvs.size(), 1u);
  EXPECT_EQ(s->kvs[0].key, "b");
  EXPECT_EQ(e.get("b").code(), StatusCode::kNotFound);  // not visible before commit
  auto c = t.commit();
  ASSERT_TRUE(c.ok());
  EXPECT_EQ(c.value(), 3u);
  EXPECT_EQ(e.get("b")->mod_revision, 3u);
  EXPECT_EQ(e.get("a").code(), StatusCode::kNotFound);
  EXPECT_FALSE(t.active());
  EXPECT_EQ(t.get("b").code(), StatusCode::kTxnNotFound);
  EXPECT_EQ(t.commit().code(), StatusCode::kTxnNotFound);
  EXPECT_EQ(t.abort().code(), StatusCode::kTxnNotFound);
  Transaction empty;
  EXPECT_EQ(empty.get("a").code(), StatusCode::kTxnNotFound);
  // Destroying an active handle aborts it; its writes vanish.
  {
    auto t2 = e.begin(Isolation::kSnapshot);
    ASSERT_TRUE(t2->put("c", "1").ok());
  }
  EXPECT_EQ(e.get("c").code(), StatusCode::kNotFound);
  EXPECT_EQ(e.stats().aborts_user, 1u);
  EXPECT_EQ(e.stats().active_txns, 0u);
  // A read-only commit returns the snapshot revision.
  auto ro = e.begin();
  EXPECT_EQ(ro->get("b")->value, "1");
  EXPECT_EQ(ro->commit().value(), 3u);
}

TEST(EngineTxn, MoveAssignAbortsReplaced) {
  Engine e(quiet());
  Transaction a = std::move(e.begin()).value();
  ASSERT_TRUE(a.put("x", "1").ok());
  Transaction b = std::move(e.begin()).value();
  const auto b_id = b.id();
  a = std::move(b);
  EXPECT_EQ(a.id(), b_id);
  EXPECT_EQ(e.stats().active_txns, 1u);
  EXPECT_EQ(e.stats().aborts_user, 1u);
  ASSERT_TRUE(a.commit().ok());
  EXPECT_EQ(e.get("x").code(), StatusCode::kNotFound);
}

TEST(EngineExpiry, InjectedClockExpiresOnNextCall) {
  auto clock = std::make_shared<ManualClock>();
  Options o = quiet();
  o.clock = clock;
  o.txn_timeout = std::chrono::seconds(5);
  Engine e(o);
  ASSERT_TRUE(e.put("k", "v0").ok());
  Transaction t = std::move(e.begin()).value();
  EXPECT_EQ(t.get("k")->value, "v0");
  clock->advance(std::chrono::seconds(4));
  EXPECT_TRUE(t.get("k").ok());  // 4 s old: still fine
  clock->advance(std::chrono::seconds(2));
  EXPECT_EQ(t.get("k").code(), StatusCode::kTxnExpired);
  EXPECT_EQ(t.put("k", "x").code(), StatusCode::kTxnExpired);
  EXPECT_EQ(t.commit().code(), StatusCode::kTxnExpired);
  EXPECT_EQ(t.abort().code(), StatusCode::kTxnExpired);
  EXPECT_FALSE(t.active());
  const EngineStats s = e.stats();
  EXPECT_EQ(s.aborts_expired, 1u);
  EXPECT_EQ(s.active_txns, 0u);
}

TEST(EngineExpiry, MaintenanceExpiresIdleTransactionAndFreesItsVersions) {
  auto clock = std::make_shared<ManualClock>();
  Options o = quiet();
  o.clock = clock;
  o.txn_timeout = std::chrono::seconds(5);
  Engine e(o);
  ASSERT_TRUE(e.put("k", "v0").ok());
  Transaction idle = std::move(e.begin()).value();
  EXPECT_EQ(idle.get("k")->value, "v0");
  for (int i = 1; i <= 100; ++i) ASSERT_TRUE(e.put("k", cat("v", i)).ok());
  EXPECT_EQ(e.version_count("k"), 2u);  // head + the version the idle snapshot sees
  clock->advance(std::chrono::seconds(6));
  EXPECT_EQ(e.stats().oldest_snapshot_age, std::chrono::seconds(6));
  e.run_maintenance();  // no call on `idle` needed
  EXPECT_EQ(e.stats().active_txns, 0u);
  EXPECT_EQ(e.stats().active_snapshots, 0u);
  EXPECT_EQ(e.version_count("k"), 1u);  // its pinned version is freed
  EXPECT_EQ(idle.get("k").code(), StatusCode::kTxnExpired);
  EXPECT_EQ(e.stats().aborts_expired, 1u);
}

TEST(EngineStatsTest, CountsKeysVersionsBytesCommitsAborts) {
  auto clock = std::make_shared<ManualClock>();
  Options o = quiet();
  o.clock = clock;
  Engine e(o);
  EngineStats s0 = e.stats();
  EXPECT_EQ(s0.keys, 0u);
  EXPECT_EQ(s0.live_versions, 0u);
  EXPECT_EQ(s0.revision, 1u);
  ASSERT_TRUE(e.put("a", std::string(100, 'x')).ok());
  ASSERT_TRUE(e.put("b", "y").ok());
  ASSERT_TRUE(e.del("b").ok());
  EngineStats s1 = e.stats();
  EXPECT_EQ(s1.keys, 1u);
  // "b"'s delete needed by no snapshot: its commit cleared the chain and removed the node.
  EXPECT_EQ(s1.index_nodes, 1u);
  EXPECT_EQ(s1.index_nodes_removed, 1u);
  EXPECT_EQ(s1.commits, 3u);
  EXPECT_EQ(s1.revision, 4u);
  EXPECT_GT(s1.bytes, 100u);
  e.run_maintenance();  // "b" is a lone tombstone no snapshot needs: its chain is cleared
  EngineStats s2 = e.stats();
  EXPECT_EQ(s2.live_versions, 1u);
  EXPECT_EQ(e.version_count("b"), 0u);
  EXPECT_EQ(s2.versions_pruned, 2u);  // "b"'s put and tombstone
  EXPECT_GE(s2.gc_sweeps, 1u);
  // Conflict abort.
  Transaction t1 = std::move(e.begin()).value();
  Transaction t2 = std::move(e.begin()).value();
  (void)t1.get("a");
  (void)t2.get("a");
  ASSERT_TRUE(t1.put("a", "1").ok());
  ASSERT_TRUE(t2.put("a", "2").ok());
  clock->advance(std::chrono::milliseconds(250));
  EngineStats s3 = e.stats();
  EXPECT_EQ(s3.active_txns, 2u);
  EXPECT_EQ(s3.active_snapshots, 2u);
  EXPECT_EQ(s3.oldest_snapshot_age, std::chrono::milliseconds(250));
  ASSERT_TRUE(t1.commit().ok());
  EXPECT_EQ(t2.commit().code(), StatusCode::kConflict);
  EngineStats s4 = e.stats();
  EXPECT_EQ(s4.aborts_conflict, 1u);
  EXPECT_EQ(s4.commits, 4u);
  EXPECT_EQ(s4.active_txns, 0u);
  EXPECT_EQ(s4.oldest_snapshot_age, std::chrono::nanoseconds(0));
  EXPECT_GE(s4.kovan_retired, s2.versions_pruned);
}

TEST(EngineLifecycle, ShutdownMakesCallsUnavailable) {
  Engine e(Options{});  // with the background sweeper
  ASSERT_TRUE(e.put("a", "1").ok());
  Transaction t = std::move(e.begin()).value();
  e.shutdown();
  EXPECT_EQ(e.get("a").code(), StatusCode::kUnavailable);
  EXPECT_EQ(e.put("a", "2").code(), StatusCode::kUnavailable);
  EXPECT_EQ(e.begin().code(), StatusCode::kUnavailable);
  EXPECT_EQ(t.get("a").code(), StatusCode::kUnavailable);
}

TEST(EngineLimits, TooManyActiveTransactions) {
  Options o = quiet();
  o.max_active_txns = 3;
  Engine e(o);
  std::vector<Transaction> held;
  for (int i = 0; i < 3; ++i) held.push_back(std::move(e.begin()).value());
  EXPECT_EQ(e.begin().code(), StatusCode::kResourceExhausted);
  held.pop_back();
  EXPECT_TRUE(e.begin().ok());
}

}  // namespace
}  // namespace kv::storage
