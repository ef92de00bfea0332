// Leases in the storage engine (engine.hpp, "Leases"; lease.cpp K1-K4): attach on put,
// detach on a plain put, expiry and revoke deleting every attached key in one commit, keep-
// alive, the race between attaching and revoking, the lease limit, and durability (WAL
// records, checkpoints, a full TTL after a restart, old format files). Time is a ManualClock:
// no test sleeps to make a lease expire.
#include <gtest/gtest.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <filesystem>
#include <fstream>
#include <future>
#include <latch>
#include <mutex>
#include <set>
#include <stdexcept>
#include <thread>
#include <vector>

#include "storage/engine.hpp"
#include "test_util.hpp"
#include "wal.hpp"  // storage/src: the record format, to write old-format and unknown records

namespace kv::storage {
namespace {

namespace fs = std::filesystem;
using namespace std::chrono_literals;
using testing::cat;

class TempDir {
 public:
  TempDir() {
    std::string tmpl = (fs::temp_directory_path() / "kv-lease-XXXXXX").string();
    char* p = ::mkdtemp(tmpl.data());
    EXPECT_NE(p, nullptr);
    path_ = tmpl;
  }
  ~TempDir() {
    std::error_code ec;
    fs::remove_all(path_, ec);
  }
  const std::string& path() const { return path_; }

 private:
  std::string path_;
};

struct Fixture {
  std::shared_ptr<ManualClock> clock = std::make_shared<ManualClock>();
  Options opts() const {
    Options o;
    o.background_sweeper = false;
    o.clock = clock;
    return o;
  }
  Options durable(const std::string& dir) const {
    Options o = opts();
    o.durability.data_dir = dir;
    return o;
  }
};

std::unique_ptr<Engine> open_ok(const Options& o) {
  std::string err;
  auto e = Engine::open(o, err);
  if (e == nullptr) throw std::runtime_error("open failed: " + err);
  return e;
}

std::uint64_t lease_of(Engine& e, const std::string& key) {
  Result<KeyValue> kv = e.get(key);
  return kv.ok() ? kv->lease : ~std::uint64_t{0};
}

bool exists(Engine& e, const std::string& key) { return e.get(key).ok(); }

TEST(Lease, GrantAttachAndReadsReportTheLease) {
  Fixture f;
  Engine e(f.opts());
  Result<LeaseGrantResult> g = e.lease_grant(2);
  ASSERT_TRUE(g.ok()) << g.status().to_string();
  EXPECT_NE(g->id, 0u);
  EXPECT_EQ(g->ttl_seconds, 2);
  ASSERT_TRUE(e.put("a", "1", false, 0, g->id).ok());
  ASSERT_TRUE(e.put("b", "2", false, 0, g->id).ok());
  ASSERT_TRUE(e.put("c", "3").ok());
  EXPECT_EQ(lease_of(e, "a"), g->id);
  EXPECT_EQ(lease_of(e, "c"), 0u);
  Result<ScanResult> sc = e.scan("", "");
  ASSERT_TRUE(sc.ok());
  ASSERT_EQ(sc->kvs.size(), 3u);
  EXPECT_EQ(sc->kvs[0].lease, g->id);
  EXPECT_EQ(sc->kvs[1].lease, g->id);
  EXPECT_EQ(sc->kvs[2].lease, 0u);
  f.clock->advance(500ms);
  Result<LeaseInfo> ttl = e.lease_time_to_live(g->id, true);
  ASSERT_TRUE(ttl.ok());
  EXPECT_EQ(ttl->ttl_seconds, 2);  // 1.5 s, rounded up
  EXPECT_EQ(ttl->granted_ttl_seconds, 2);
  EXPECT_EQ(ttl->keys, (std::vector<std::string>{"a", "b"}));
  EXPECT_EQ(e.stats().leases, 1u);
  // A caller-chosen id; a taken one is refused; bad TTLs are refused.
  EXPECT_TRUE(e.lease_grant(5, 777).ok());
  EXPECT_EQ(e.lease_grant(5, 777).code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(e.lease_grant(0).code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(e.lease_grant(-3).code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(e.lease_grant(kMaxLeaseTtlSeconds + 1).code(), StatusCode::kInvalidArgument);
}

TEST(Lease, ExpiryDeletesEveryAttachedKeyInOneCommit) {
  Fixture f;
  Engine e(f.opts());
  const std::uint64_t id = e.lease_grant(2)->id;
  for (int i = 0; i < 20; ++i) ASSERT_TRUE(e.put(cat("k", i), "v", false, 0, id).ok());
  ASSERT_TRUE(e.put("other", "v").ok());
  // A reader's snapshot from before the expiry still sees every key: the deletion is one
  // commit, not a series a reader could see half of.
  Result<Transaction> before = e.begin(Isolation::kSnapshot);
  ASSERT_TRUE(before.ok());
  f.clock->advance(1900ms);
  EXPECT_EQ(e.expire_leases(), 0u);
  EXPECT_TRUE(exists(e, "k0"));
  const std::uint64_t commits = e.stats().commits;
  const Revision rev = e.current_revision();
  f.clock->advance(200ms);
  EXPECT_EQ(e.expire_leases(), 1u);
  for (int i = 0; i < 20; ++i) EXPECT_FALSE(exists(e, cat("k", i))) << i;
  EXPECT_TRUE(exists(e, "other"));
  EXPECT_EQ(e.stats().commits - commits, 1u) << "the keys were deleted by more than one commit";
  // One revision for the deletion, one for the lease's end record.
  EXPECT_EQ(e.current_revision(), rev + 2);
  Result<ScanResult> old = before->scan("k", "l");
  ASSERT_TRUE(old.ok());
  EXPECT_EQ(old->kvs.size(), 20u);
  EXPECT_EQ(e.lease_time_to_live(id).code(), StatusCode::kLeaseNotFound);
  EXPECT_EQ(e.lease_keepalive(id).code(), StatusCode::kLeaseNotFound);
  EXPECT_EQ(e.stats().leases, 0u);
  EXPECT_EQ(e.stats().leases_expired, 1u);
  EXPECT_EQ(e.stats().leases_revoked, 0u);
}

TEST(Lease, KeepAliveRenewsForTheFullTtl) {
  Fixture f;
  Engine e(f.opts());
  const std::uint64_t id = e.lease_grant(2)->id;
  ASSERT_TRUE(e.put("k", "v", false, 0, id).ok());
  for (int round = 0; round < 5; ++round) {
    f.clock->advance(1500ms);
    Result<std::int64_t> ka = e.lease_keepalive(id);
    ASSERT_TRUE(ka.ok()) << round;
    EXPECT_EQ(*ka, 2);
    EXPECT_EQ(e.lease_time_to_live(id)->ttl_seconds, 2);
    EXPECT_EQ(e.expire_leases(), 0u);
    EXPECT_TRUE(exists(e, "k")) << round;
  }
  f.clock->advance(1999ms);
  EXPECT_EQ(e.expire_leases(), 0u);
  EXPECT_EQ(e.lease_time_to_live(id)->ttl_seconds, 1);
  f.clock->advance(1ms);
  // Expired: no longer renewable, even before the sweeper ran.
  EXPECT_EQ(e.lease_keepalive(id).code(), StatusCode::kLeaseNotFound);
  EXPECT_EQ(e.put("late", "v", false, 0, id).code(), StatusCode::kLeaseNotFound);
  EXPECT_EQ(e.expire_leases(), 1u);
  EXPECT_FALSE(exists(e, "k"));
  EXPECT_FALSE(exists(e, "late"));
}

TEST(Lease, RevokeDeletesTheKeysAndEndsTheLease) {
  Fixture f;
  Engine e(f.opts());
  const std::uint64_t id = e.lease_grant(60)->id;
  const std::uint64_t other = e.lease_grant(60)->id;
  ASSERT_TRUE(e.put("a", "1", false, 0, id).ok());
  ASSERT_TRUE(e.put("b", "2", false, 0, id).ok());
  ASSERT_TRUE(e.put("c", "3", false, 0, other).ok());
  Result<LeaseRevokeResult> r = e.lease_revoke(id);
  ASSERT_TRUE(r.ok()) << r.status().to_string();
  EXPECT_EQ(r->deleted, 2);
  EXPECT_FALSE(exists(e, "a"));
  EXPECT_FALSE(exists(e, "b"));
  EXPECT_TRUE(exists(e, "c"));
  EXPECT_EQ(e.lease_revoke(id).code(), StatusCode::kLeaseNotFound);
  EXPECT_EQ(e.lease_keepalive(id).code(), StatusCode::kLeaseNotFound);
  EXPECT_EQ(e.lease_time_to_live(id).code(), StatusCode::kLeaseNotFound);
  EXPECT_EQ(e.stats().leases_revoked, 1u);
  EXPECT_EQ(e.stats().leases, 1u);
  // Unknown ids.
  EXPECT_EQ(e.lease_revoke(123456).code(), StatusCode::kLeaseNotFound);
  EXPECT_EQ(e.lease_keepalive(0).code(), StatusCode::kLeaseNotFound);
}

TEST(Lease, PutNamingADeadLeaseWritesNothing) {
  Fixture f;
  Engine e(f.opts());
  const std::uint64_t id = e.lease_grant(60)->id;
  ASSERT_TRUE(e.lease_revoke(id).ok());
  // One-shot put.
  EXPECT_EQ(e.put("k", "v", false, 0, id).code(), StatusCode::kLeaseNotFound);
  EXPECT_EQ(e.put("k", "v", false, 0, 999).code(), StatusCode::kLeaseNotFound);
  EXPECT_FALSE(exists(e, "k"));
  // Conditional transaction: nothing of the branch is applied.
  CondTxn t;
  TxnOp p1;
  p1.type = TxnOp::Type::kPut;
  p1.key = "x";
  p1.value = "1";
  TxnOp p2 = p1;
  p2.key = "y";
  p2.lease = id;
  t.success = {p1, p2};
  EXPECT_EQ(e.txn(t).code(), StatusCode::kLeaseNotFound);
  EXPECT_FALSE(exists(e, "x"));
  EXPECT_FALSE(exists(e, "y"));
  // ... and with a live lease it attaches.
  const std::uint64_t live = e.lease_grant(60)->id;
  t.success[1].lease = live;
  ASSERT_TRUE(e.txn(t).ok());
  EXPECT_EQ(lease_of(e, "y"), live);
  EXPECT_EQ(lease_of(e, "x"), 0u);
  // Interactive transaction: refused when buffered; and at commit when the lease ended
  // after the put was buffered (the whole transaction is aborted, nothing written).
  Result<Transaction> tx = e.begin();
  ASSERT_TRUE(tx.ok());
  EXPECT_EQ(tx->put("i", "v", id).code(), StatusCode::kLeaseNotFound);
  ASSERT_TRUE(tx->put("j", "v").ok());
  ASSERT_TRUE(tx->put("i", "v", live).ok());
  Result<KeyValue> own = tx->get("i");
  ASSERT_TRUE(own.ok());
  EXPECT_EQ(own->lease, live);  // read-your-own-writes shows the lease
  ASSERT_TRUE(e.lease_revoke(live).ok());
  EXPECT_EQ(tx->commit().code(), StatusCode::kLeaseNotFound);
  EXPECT_FALSE(tx->active());
  EXPECT_FALSE(exists(e, "i"));
  EXPECT_FALSE(exists(e, "j"));
  EXPECT_FALSE(exists(e, "y"));  // deleted with `live`
  // An interactive transaction that attaches with a live lease commits it.
  const std::uint64_t l3 = e.lease_grant(60)->id;
  Result<Transaction> tx2 = e.begin();
  ASSERT_TRUE(tx2->put("m", "v", l3).ok());
  ASSERT_TRUE(tx2->commit().ok());
  EXPECT_EQ(lease_of(e, "m"), l3);
  EXPECT_EQ(e.lease_revoke(l3)->deleted, 1);
}

TEST(Lease, PlainPutDetachesAndAnotherLeaseMovesTheKey) {
  Fixture f;
  Engine e(f.opts());
  const std::uint64_t l1 = e.lease_grant(60)->id;
  const std::uint64_t l2 = e.lease_grant(60)->id;
  ASSERT_TRUE(e.put("plain", "v", false, 0, l1).ok());
  ASSERT_TRUE(e.put("moved", "v", false, 0, l1).ok());
  ASSERT_TRUE(e.put("deleted", "v", false, 0, l1).ok());
  ASSERT_TRUE(e.put("kept", "v", false, 0, l1).ok());
  ASSERT_TRUE(e.put("plain", "v2").ok());  // etcd: a put without a lease detaches
  EXPECT_EQ(lease_of(e, "plain"), 0u);
  ASSERT_TRUE(e.put("moved", "v2", false, 0, l2).ok());
  ASSERT_TRUE(e.del("deleted").ok());
  ASSERT_TRUE(e.put("deleted", "again").ok());  // re-created without a lease
  EXPECT_EQ(e.lease_time_to_live(l1, true)->keys, (std::vector<std::string>{"kept"}));
  EXPECT_EQ(e.lease_time_to_live(l2, true)->keys, (std::vector<std::string>{"moved"}));
  Result<LeaseRevokeResult> r = e.lease_revoke(l1);
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(r->deleted, 1);
  EXPECT_TRUE(exists(e, "plain"));
  EXPECT_TRUE(exists(e, "moved"));
  EXPECT_TRUE(exists(e, "deleted"));
  EXPECT_FALSE(exists(e, "kept"));
  EXPECT_EQ(e.lease_revoke(l2)->deleted, 1);
  EXPECT_FALSE(exists(e, "moved"));
}

TEST(Lease, LimitOnLeasesAlive) {
  Fixture f;
  Options o = f.opts();
  o.max_leases = 3;
  Engine e(o);
  std::vector<std::uint64_t> ids;
  for (int i = 0; i < 3; ++i) ids.push_back(e.lease_grant(10)->id);
  EXPECT_EQ(e.lease_grant(10).code(), StatusCode::kResourceExhausted);
  ASSERT_TRUE(e.lease_revoke(ids[0]).ok());
  EXPECT_TRUE(e.lease_grant(10).ok());
  f.clock->advance(11s);
  EXPECT_EQ(e.expire_leases(), 3u);
  EXPECT_TRUE(e.lease_grant(10).ok());
}

// Attachers race a revoke: each put either lands before the revoke's deletion (and is
// deleted by it: `deleted` counts it) or fails with LEASE_NOT_FOUND; no key survives.
TEST(Lease, AttachRacingRevokeNeverLeavesAKey) {
  Fixture f;
  Engine e(f.opts());
  constexpr int kRounds = 30;
  constexpr int kWriters = 3;
  for (int round = 0; round < kRounds; ++round) {
    const std::uint64_t id = e.lease_grant(60)->id;
    std::atomic<bool> revoked{false};
    std::atomic<long> ok_puts{0};
    std::latch go(kWriters + 1);
    std::vector<std::thread> writers;
    for (int w = 0; w < kWriters; ++w) {
      writers.emplace_back([&, w] {
        go.arrive_and_wait();
        // Keep attaching until a put fails after the revoke returned.
        for (int i = 0;; ++i) {
          const bool after = revoked.load();
          Result<PutResult> p =
              e.put(cat(cat(cat("r", round) + "-", w) + "-", i), "v", false, 0, id);
          if (p.ok()) {
            ok_puts.fetch_add(1);
            EXPECT_FALSE(after) << "a put attached after the revoke returned";
          } else {
            EXPECT_EQ(p.code(), StatusCode::kLeaseNotFound);
            if (after) break;
          }
        }
      });
    }
    go.arrive_and_wait();
    Result<LeaseRevokeResult> r = e.lease_revoke(id);
    ASSERT_TRUE(r.ok()) << r.status().to_string();
    revoked.store(true);
    for (auto& t : writers) t.join();
    EXPECT_EQ(r->deleted, ok_puts.load()) << "round " << round;
    Result<ScanResult> left = e.scan(cat("r", round) + "-", cat("r", round) + ".");
    ASSERT_TRUE(left.ok());
    EXPECT_EQ(left->count, 0u) << "round " << round << ": keys survived their lease";
  }
}

// A commit that attaches a key and is not yet visible (held between its log write and its
// fsync) when the revoke starts: the revoke waits for it (K2, K3) and deletes the key.
TEST(Lease, RevokeWaitsForAnAttachingCommitInFlight) {
  Fixture f;
  TempDir dir;
  Options o = f.durable(dir.path());
  auto faults = std::make_shared<FileFaults>();
  o.durability.faults = faults;
  auto e = open_ok(o);
  const std::uint64_t id = e->lease_grant(60)->id;
  std::mutex mu;
  std::condition_variable cv;
  bool hold = true, held = false;
  faults->before_wal_sync = [&] {
    std::unique_lock lk(mu);
    if (!hold) return;
    held = true;
    cv.notify_all();
    cv.wait(lk, [&] { return !hold; });
  };
  auto put = std::async(std::launch::async, [&] { return e->put("k", "v", false, 0, id); });
  {
    std::unique_lock lk(mu);
    cv.wait(lk, [&] { return held; });  // the put is published, not yet visible
  }
  const std::uint64_t snapshots = e->stats().active_snapshots;  // the put's own
  auto revoke = std::async(std::launch::async, [&] { return e->lease_revoke(id); });
  // The revoke has begun once the lease is no longer alive.
  while (e->lease_keepalive(id).ok()) std::this_thread::yield();
  // A revoke that did not wait would take its snapshot now (below the put): give it up to a
  // second to show one, then let the put's fsync go.
  const auto deadline = std::chrono::steady_clock::now() + 1s;
  while (e->stats().active_snapshots == snapshots && std::chrono::steady_clock::now() < deadline) {
    std::this_thread::yield();
  }
  {
    std::lock_guard lk(mu);
    hold = false;
  }
  cv.notify_all();
  ASSERT_TRUE(put.get().ok());
  Result<LeaseRevokeResult> r = revoke.get();
  ASSERT_TRUE(r.ok()) << r.status().to_string();
  EXPECT_EQ(r->deleted, 1);
  EXPECT_FALSE(exists(*e, "k"));
  faults->before_wal_sync = nullptr;
}

// A key detached while the revoke waits for a commit in flight stays in the lease's key set
// (K1: the set is not changed once the lease is revoking); the revoke must read it and skip
// it, not delete it.
TEST(Lease, RevokeSkipsAKeyDetachedWhileItWaits) {
  Fixture f;
  TempDir dir;
  Options o = f.durable(dir.path());
  auto faults = std::make_shared<FileFaults>();
  o.durability.faults = faults;
  auto e = open_ok(o);
  const std::uint64_t id = e->lease_grant(60)->id;
  ASSERT_TRUE(e->put("k", "leased", false, 0, id).ok());
  std::mutex mu;
  std::condition_variable cv;
  bool hold = true, held = false;
  faults->before_wal_sync = [&] {
    std::unique_lock lk(mu);
    if (!hold) return;
    held = true;
    cv.notify_all();
    cv.wait(lk, [&] { return !hold; });
  };
  auto attach = std::async(std::launch::async, [&] { return e->put("k2", "v", false, 0, id); });
  {
    std::unique_lock lk(mu);
    cv.wait(lk, [&] { return held; });  // k2's commit is in flight: the revoke must wait
  }
  auto revoke = std::async(std::launch::async, [&] { return e->lease_revoke(id); });
  while (e->lease_keepalive(id).ok()) std::this_thread::yield();  // revoking
  auto detach = std::async(std::launch::async, [&] { return e->put("k", "plain"); });
  // The detaching version is published (not yet visible: its log write waits too).
  while (e->version_count("k") < 2) std::this_thread::yield();
  {
    std::lock_guard lk(mu);
    hold = false;
  }
  cv.notify_all();
  ASSERT_TRUE(attach.get().ok());
  ASSERT_TRUE(detach.get().ok());
  Result<LeaseRevokeResult> r = revoke.get();
  ASSERT_TRUE(r.ok()) << r.status().to_string();
  EXPECT_EQ(r->deleted, 1);
  EXPECT_FALSE(exists(*e, "k2"));
  Result<KeyValue> k = e->get("k");
  ASSERT_TRUE(k.ok()) << "a key detached before the deletion was deleted";
  EXPECT_EQ(k->value, "plain");
  EXPECT_EQ(k->lease, 0u);
  faults->before_wal_sync = nullptr;
}

TEST(LeaseDurability, RestartKeepsLeasesAndKeysAndGivesTheFullTtl) {
  Fixture f;
  TempDir dir;
  std::uint64_t l1 = 0, l2 = 0, l3 = 0;
  {
    auto e = open_ok(f.durable(dir.path()));
    l1 = e->lease_grant(10)->id;
    l2 = e->lease_grant(3)->id;
    l3 = e->lease_grant(5)->id;
    ASSERT_TRUE(e->put("a", "1", false, 0, l1).ok());
    ASSERT_TRUE(e->put("b", "2", false, 0, l2).ok());
    ASSERT_TRUE(e->put("c", "3", false, 0, l3).ok());
    ASSERT_TRUE(e->put("d", "4", false, 0, l1).ok());
    ASSERT_TRUE(e->put("d", "5").ok());  // detached
    ASSERT_EQ(e->lease_revoke(l3)->deleted, 1);
    f.clock->advance(2500ms);  // l2 has 0.5 s left
    ASSERT_EQ(e->lease_time_to_live(l2)->ttl_seconds, 1);
  }
  auto e = open_ok(f.durable(dir.path()));
  EXPECT_EQ(e->stats().leases, 2u);
  EXPECT_EQ(lease_of(*e, "a"), l1);
  EXPECT_EQ(lease_of(*e, "b"), l2);
  EXPECT_EQ(lease_of(*e, "d"), 0u);
  EXPECT_FALSE(exists(*e, "c"));
  EXPECT_EQ(e->lease_time_to_live(l3).code(), StatusCode::kLeaseNotFound);
  Result<LeaseInfo> t2 = e->lease_time_to_live(l2, true);
  ASSERT_TRUE(t2.ok());
  EXPECT_EQ(t2->ttl_seconds, 3);  // the full TTL again, from the open
  EXPECT_EQ(t2->keys, (std::vector<std::string>{"b"}));
  EXPECT_EQ(e->lease_time_to_live(l1, true)->keys, (std::vector<std::string>{"a"}));
  f.clock->advance(2900ms);  // past the 0.5 s it had left before the restart
  EXPECT_EQ(e->expire_leases(), 0u);
  EXPECT_TRUE(exists(*e, "b"));
  f.clock->advance(200ms);
  EXPECT_EQ(e->expire_leases(), 1u);
  EXPECT_FALSE(exists(*e, "b"));
  // A new lease after the restart gets an id no lease had before.
  const std::uint64_t l4 = e->lease_grant(1)->id;
  EXPECT_NE(l4, l1);
  EXPECT_NE(l4, l2);
  EXPECT_NE(l4, l3);
  e.reset();
  // The expiry was logged: after another restart b and l2 stay gone.
  e = open_ok(f.durable(dir.path()));
  EXPECT_FALSE(exists(*e, "b"));
  EXPECT_EQ(e->lease_time_to_live(l2).code(), StatusCode::kLeaseNotFound);
  EXPECT_TRUE(e->lease_time_to_live(l1).ok());
  EXPECT_TRUE(e->lease_time_to_live(l4).ok());
}

// The grant records of the first session are in a segment the checkpoint trims: after the
// restart, the leases come from the checkpoint; records after it are replayed over it.
TEST(LeaseDurability, CheckpointCarriesLeasesAndTheLogReplaysOverIt) {
  Fixture f;
  TempDir dir;
  std::uint64_t kept = 0, ended_after = 0, granted_after = 0;
  {
    auto e = open_ok(f.durable(dir.path()));
    kept = e->lease_grant(7)->id;
    ended_after = e->lease_grant(7)->id;
    ASSERT_TRUE(e->put("k", "v", false, 0, kept).ok());
    ASSERT_TRUE(e->put("e", "v", false, 0, ended_after).ok());
  }
  {
    auto e = open_ok(f.durable(dir.path()));  // a second segment
    Result<Revision> ck = e->checkpoint();
    ASSERT_TRUE(ck.ok()) << ck.status().to_string();
    ASSERT_EQ(e->lease_revoke(ended_after)->deleted, 1);
    granted_after = e->lease_grant(4)->id;
    ASSERT_TRUE(e->put("g", "v", false, 0, granted_after).ok());
  }
  // The first segment is gone: only the checkpoint knows `kept`.
  int segments = 0;
  for (const auto& d : fs::directory_iterator(dir.path())) {
    segments += d.path().filename().string().rfind("wal-", 0) == 0 ? 1 : 0;
  }
  EXPECT_EQ(segments, 1);
  auto e = open_ok(f.durable(dir.path()));
  EXPECT_TRUE(e->recovery_notes().empty()) << e->recovery_notes().front();
  Result<LeaseInfo> t = e->lease_time_to_live(kept, true);
  ASSERT_TRUE(t.ok()) << t.status().to_string();
  EXPECT_EQ(t->granted_ttl_seconds, 7);
  EXPECT_EQ(t->keys, (std::vector<std::string>{"k"}));
  EXPECT_EQ(e->lease_time_to_live(ended_after).code(), StatusCode::kLeaseNotFound);
  EXPECT_FALSE(exists(*e, "e"));
  EXPECT_EQ(e->lease_time_to_live(granted_after)->granted_ttl_seconds, 4);
  EXPECT_EQ(lease_of(*e, "g"), granted_after);
  f.clock->advance(4s);
  EXPECT_EQ(e->expire_leases(), 1u);
  EXPECT_FALSE(exists(*e, "g"));
  f.clock->advance(3s);
  EXPECT_EQ(e->expire_leases(), 1u);
  EXPECT_FALSE(exists(*e, "k"));
}

// write_snapshot carries the leases too (a restore gets them).
TEST(LeaseDurability, SnapshotRestoreCarriesLeases) {
  Fixture f;
  Engine src(f.opts());
  const std::uint64_t id = src.lease_grant(9)->id;
  ASSERT_TRUE(src.put("k", "v", false, 0, id).ok());
  TempDir dir;
  const std::string image = dir.path() + "/image.kvs";
  {
    std::ofstream out(image, std::ios::binary);
    ASSERT_TRUE(src.write_snapshot([&](std::string_view c) {
                     out.write(c.data(), static_cast<std::streamsize>(c.size()));
                     return true;
                   })
                    .ok());
  }
  Options o = f.durable(dir.path() + "/data");
  o.durability.restore_from = image;
  auto e = open_ok(o);
  EXPECT_EQ(lease_of(*e, "k"), id);
  EXPECT_EQ(e->lease_time_to_live(id)->granted_ttl_seconds, 9);
}

// Format version 1 files (no lease records) are still read; a record of a kind this build
// does not know is skipped in order.
TEST(LeaseDurability, ReadsFormatVersion1AndSkipsUnknownRecordKinds) {
  using namespace detail;
  TempDir dir;
  {
    std::string seg = file_header(kWalMagic, 1);
    // Rewrite the version field (offset 8) to 1 and the header checksum.
    seg[8] = 1;
    seg.resize(kFileHeader - 4);
    put_u32(seg, crc32_of(seg));
    auto commit = [&](Revision rev, std::string_view key) {
      std::string p;
      put_u8(p, kRecCommit);
      put_u64(p, rev);
      put_u32(p, 1);
      put_u8(p, kOpPut);
      put_bytes(p, key);
      put_bytes(p, "v");
      put_u64(p, rev);
      put_u64(p, 1);
      append_frame(seg, p);
    };
    commit(2, "a");
    std::string unknown;
    put_u8(unknown, 99);
    put_u64(unknown, 3);
    put_bytes(unknown, "a future record");
    append_frame(seg, unknown);
    commit(4, "b");
    std::ofstream(dir.path() + "/" + segment_name(1), std::ios::binary) << seg;
  }
  Fixture f;
  auto e = open_ok(f.durable(dir.path()));
  EXPECT_TRUE(exists(*e, "a"));
  EXPECT_TRUE(exists(*e, "b"));
  EXPECT_EQ(e->current_revision(), 4u);
  EXPECT_EQ(e->get("b")->mod_revision, 4u);
}

}  // namespace
}  // namespace kv::storage
