// Watch, leases and the lock / election recipes of the C++ client against a real
// kovan-server process: the event stream of a prefix compared with the committed history
// under concurrent writers (every change once, in revision order, transactions grouped,
// prev_kv right); watches from a past revision; leases kept alive by the helper, revoked
// (one revision of deletes), expiring once renewals stop; the mutex recipe under
// contention with a checker over the critical sections; and a holder killed with SIGKILL,
// whose mutex is freed when its lease expires.
#include <gtest/gtest.h>
#include <signal.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <cstdio>
#include <latch>
#include <map>
#include <mutex>
#include <set>
#include <thread>
#include <vector>

#include "client/client.hpp"
#include "concurrency.hpp"
#include "server_process.hpp"

extern char** environ;

namespace kv::test {
namespace {

using client::Client;
using client::Code;
using client::Compare;
using client::KeyValue;
using client::Status;
using client::TxnOp;
using client::TxnRequest;
using client::WatchBatch;
using client::WatchEvent;
using client::WatchKeys;
using client::WatchOptions;

std::unique_ptr<Client> connect_to(const ServerProcess& server) {
  auto c = Client::connect(server.address());
  EXPECT_TRUE(c.ok()) << c.status().to_string() << "\n" << server.output();
  return c.ok() ? std::move(c).value() : nullptr;
}

class WatchLeaseTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_NE(server_.port(), 0) << server_.output();
    client_ = connect_to(server_);
    ASSERT_NE(client_, nullptr);
  }
  ServerProcess server_{{"--threads", "2"}};
  std::unique_ptr<Client> client_;
};

// One committed change as the writers saw it.
struct Change {
  std::uint64_t revision;
  std::string key;
  bool put;
  std::string value;
  bool operator<(const Change& o) const {
    return std::tie(revision, key) < std::tie(o.revision, o.key);
  }
  bool operator==(const Change& o) const {
    return revision == o.revision && key == o.key && put == o.put && value == o.value;
  }
};

TEST_F(WatchLeaseTest, EveryCommittedChangeOnceInRevisionOrderWithPrevKv) {
  std::mutex mu;
  std::vector<WatchBatch> batches;
  std::condition_variable cv;
  WatchOptions wo;
  wo.prev_kv = true;
  auto w = client_->watch(WatchKeys::with_prefix("w/"), wo, [&](const WatchBatch& b) {
    std::lock_guard lock(mu);
    batches.push_back(b);
    cv.notify_all();
  });
  ASSERT_TRUE(w.ok()) << w.status().to_string();

  // Writers: puts, deletes and two-key transactions on a few keys, plus writes outside the
  // prefix that must not show.
  constexpr int kWriters = 3;
  constexpr int kOps = 120;
  std::vector<Change> committed;
  std::latch start(kWriters);
  std::vector<std::thread> writers;
  for (int t = 0; t < kWriters; ++t) {
    writers.emplace_back([&, t] {
      auto c = connect_to(server_);
      ASSERT_NE(c, nullptr);
      start.arrive_and_wait();
      std::vector<Change> mine;
      for (int i = 0; i < kOps; ++i) {
        const std::string key = "w/" + std::to_string((i * 7 + t) % 5);
        const std::string value = std::to_string(t) + ":" + std::to_string(i);
        switch (i % 4) {
          case 0:
          case 1: {
            auto r = c->put(key, value);
            ASSERT_TRUE(r.ok()) << r.status().to_string();
            mine.push_back({r->revision, key, true, value});
            break;
          }
          case 2: {
            auto r = c->del(key);
            ASSERT_TRUE(r.ok()) << r.status().to_string();
            if (r->deleted != 0) mine.push_back({r->revision, key, false, ""});
            break;
          }
          case 3: {
            const std::string other = "w/t" + std::to_string(t);
            TxnRequest txn;
            txn.success = {TxnOp::put(key, value), TxnOp::put(other, value),
                           TxnOp::put("outside/" + key, value)};
            auto r = c->txn(txn);
            ASSERT_TRUE(r.ok()) << r.status().to_string();
            mine.push_back({r->revision, key, true, value});
            mine.push_back({r->revision, other, true, value});
            break;
          }
        }
      }
      std::lock_guard lock(mu);
      committed.insert(committed.end(), mine.begin(), mine.end());
    });
  }
  for (auto& t : writers) t.join();
  std::sort(committed.begin(), committed.end());
  const std::uint64_t last = committed.back().revision;
  {
    std::unique_lock lock(mu);
    ASSERT_TRUE(cv.wait_for(lock, std::chrono::seconds(60),
                            [&] { return !batches.empty() && batches.back().revision >= last; }))
        << "events up to revision " << last << " did not arrive";
  }
  std::vector<WatchBatch> got;
  {
    std::lock_guard lock(mu);
    got = batches;
  }
  std::vector<Change> seen;
  std::map<std::string, std::optional<std::string>> current;  // per key, from the stream
  std::uint64_t previous = 0;
  for (const WatchBatch& b : got) {
    ASSERT_FALSE(b.canceled) << b.status.to_string();
    EXPECT_GT(b.revision, previous) << "revisions must strictly increase";
    previous = b.revision;
    for (const WatchEvent& e : b.events) {
      EXPECT_EQ(e.kv.mod_revision, b.revision);
      EXPECT_EQ(e.kv.key.rfind("w/", 0), 0u) << e.kv.key;
      const bool put = e.type == WatchEvent::Type::kPut;
      seen.push_back({b.revision, e.kv.key, put, put ? e.kv.value : ""});
      // prev_kv: the value the stream itself last showed for the key (none after a delete).
      auto it = current.find(e.kv.key);
      const std::optional<std::string> before = it == current.end() ? std::nullopt : it->second;
      if (before) {
        ASSERT_TRUE(e.prev.has_value()) << e.kv.key << " at " << b.revision;
        EXPECT_EQ(e.prev->value, *before) << e.kv.key << " at " << b.revision;
      } else {
        EXPECT_FALSE(e.prev.has_value()) << e.kv.key << " at " << b.revision;
      }
      current[e.kv.key] = put ? std::optional<std::string>(e.kv.value) : std::nullopt;
    }
  }
  std::sort(seen.begin(), seen.end());
  EXPECT_EQ(seen.size(), committed.size());
  EXPECT_TRUE(seen == committed) << "the event stream differs from the committed history";
  // A transaction's events share one batch.
  std::map<std::uint64_t, int> per_revision;
  for (const Change& c : committed) ++per_revision[c.revision];
  for (const WatchBatch& b : got) EXPECT_EQ(b.events.size(), per_revision[b.revision]);
  ASSERT_TRUE(w.value()->cancel().ok());
}

TEST_F(WatchLeaseTest, WatchFromAPastRevisionReplaysAndCancelEnds) {
  auto first = client_->put("p/a", "1");
  ASSERT_TRUE(first.ok()) << first.status().to_string();
  ASSERT_TRUE(client_->put("p/b", "2").ok());
  ASSERT_TRUE(client_->del("p/a").ok());
  WatchOptions wo;
  wo.start_revision = first->revision;
  auto s = client_->watch_stream(WatchKeys::with_prefix("p/"), wo);
  ASSERT_TRUE(s.ok()) << s.status().to_string();
  std::vector<std::string> got;
  while (got.size() < 3) {
    auto b = s.value()->next(std::chrono::seconds(30));
    ASSERT_TRUE(b.has_value());
    ASSERT_FALSE(b->canceled) << b->status.to_string();
    for (const auto& e : b->events) {
      got.push_back((e.type == WatchEvent::Type::kPut ? "put " : "del ") + e.kv.key);
    }
  }
  EXPECT_EQ(got, (std::vector<std::string>{"put p/a", "put p/b", "del p/a"}));
  ASSERT_TRUE(s.value()->cancel().ok());
  EXPECT_FALSE(s.value()->next(std::chrono::milliseconds(0)).has_value());
  // Ordinary calls on the shared connection still work.
  ASSERT_TRUE(client_->get("p/b").ok());
}

// A server keeping only 4 KiB of history: a watch from revision 1 after many writes gets
// COMPACTED with the oldest revision available; the documented way back (re-read, then
// watch from the read's revision + 1) sees the next change.
TEST(WatchCompacted, AStartOlderThanTheHistoryIsCompactedAndReReadThenWatchWorks) {
  ServerProcess server({"--threads", "2", "--watch-history", "4096"});
  ASSERT_NE(server.port(), 0) << server.output();
  auto c = connect_to(server);
  ASSERT_NE(c, nullptr);
  const std::string value(100, 'x');
  for (int i = 0; i < 200; ++i) ASSERT_TRUE(c->put("c/" + std::to_string(i % 10), value).ok());
  auto w = c->watch_stream(WatchKeys::with_prefix("c/"), WatchOptions{.start_revision = 1});
  ASSERT_FALSE(w.ok());
  EXPECT_EQ(w.code(), Code::kCompacted) << w.status().to_string();
  EXPECT_GT(w.status().compact_revision(), 1u);
  auto scan = c->scan(client::Range::with_prefix("c/"));
  ASSERT_TRUE(scan.ok());
  EXPECT_EQ(scan->kvs.size(), 10u);
  auto again = c->watch_stream(WatchKeys::with_prefix("c/"),
                               WatchOptions{.start_revision = scan->revision + 1});
  ASSERT_TRUE(again.ok()) << again.status().to_string();
  auto p = c->put("c/new", "1");
  ASSERT_TRUE(p.ok());
  auto b = again.value()->next(std::chrono::seconds(30));
  ASSERT_TRUE(b.has_value());
  EXPECT_EQ(b->revision, p->revision);
}

TEST_F(WatchLeaseTest, LeaseRevokeDeletesItsKeysInOneRevision) {
  auto g = client_->lease_grant(60);
  ASSERT_TRUE(g.ok()) << g.status().to_string();
  for (const char* k : {"l/a", "l/b", "l/c"}) {
    ASSERT_TRUE(client_->put(k, "v", client::PutOptions{.lease = g->id}).ok());
  }
  EXPECT_EQ(client_->get("l/a")->lease, g->id);
  auto info = client_->lease_time_to_live(g->id, true);
  ASSERT_TRUE(info.ok()) << info.status().to_string();
  EXPECT_EQ(info->keys, (std::vector<std::string>{"l/a", "l/b", "l/c"}));
  EXPECT_EQ(info->granted_ttl_seconds, 60);
  auto s = client_->watch_stream(WatchKeys::with_prefix("l/"));
  ASSERT_TRUE(s.ok());
  auto r = client_->lease_revoke(g->id);
  ASSERT_TRUE(r.ok()) << r.status().to_string();
  EXPECT_EQ(r->deleted, 3u);
  auto b = s.value()->next(std::chrono::seconds(30));
  ASSERT_TRUE(b.has_value());
  EXPECT_EQ(b->revision, r->revision);
  ASSERT_EQ(b->events.size(), 3u);  // one revision, three deletes
  for (const auto& e : b->events) EXPECT_EQ(e.type, WatchEvent::Type::kDelete);
  EXPECT_EQ(client_->lease_keepalive(g->id).code(), Code::kLeaseNotFound);
  EXPECT_EQ(client_->put("l/x", "v", client::PutOptions{.lease = g->id}).code(),
            Code::kLeaseNotFound);
}

TEST_F(WatchLeaseTest, KeepAliveKeepsKeysAndTheyExpireWhenItStops) {
  auto p = client_->put("ttl/k", "v", client::PutOptions{.ttl_seconds = 2});
  ASSERT_TRUE(p.ok()) << p.status().to_string();
  ASSERT_NE(p->lease, 0u);
  const auto start = std::chrono::steady_clock::now();
  {
    client::LeaseKeepAlive keep(*client_, p->lease, 2);
    // Three TTLs: without renewals the key would have expired twice over.
    while (std::chrono::steady_clock::now() - start < std::chrono::seconds(6)) {
      ASSERT_TRUE(client_->get("ttl/k").ok()) << "the key expired while kept alive";
      ASSERT_TRUE(keep.alive()) << keep.lost_reason().to_string();
      std::this_thread::sleep_for(std::chrono::milliseconds(250));  // paces the checks
    }
    EXPECT_GE(keep.renewals(), 4u);
  }
  // Renewals stopped: the key goes within the TTL (plus the server's timer and margin).
  const auto stopped = std::chrono::steady_clock::now();
  ASSERT_TRUE(eventually([&] { return client_->get("ttl/k").code() == Code::kNotFound; },
                         std::chrono::seconds(20)));
  EXPECT_GE(std::chrono::steady_clock::now() - stopped, std::chrono::milliseconds(500));
  EXPECT_EQ(client_->lease_time_to_live(p->lease).code(), Code::kLeaseNotFound);
}

TEST_F(WatchLeaseTest, KeepAliveReportsALostLease) {
  auto g = client_->lease_grant(3);
  ASSERT_TRUE(g.ok());
  std::atomic<int> reported{0};
  client::LeaseKeepAlive keep(*client_, g->id, 3, [&](const Status& s) {
    EXPECT_EQ(s.code(), Code::kLeaseNotFound);
    reported.fetch_add(1);
  });
  ASSERT_TRUE(client_->lease_revoke(g->id).ok());
  ASSERT_TRUE(keep.wait_lost(std::chrono::seconds(20)));
  EXPECT_EQ(keep.lost_reason().code(), Code::kLeaseNotFound);
  EXPECT_EQ(reported.load(), 1);
}

// N contenders, each entering the critical section several times. Inside, a holder marks
// the section taken with a conditional transaction that succeeds only when no one else has
// marked it, increments a counter by read-then-write, and clears its mark only if the mark
// is still its own: any two sections that overlap make one of those transactions fail or
// lose an increment.
TEST_F(WatchLeaseTest, MutexRecipeGivesMutualExclusionUnderContention) {
  constexpr int kContenders = 4;
  constexpr int kRounds = 6;
  std::atomic<int> overlaps{0};
  std::atomic<int> errors{0};
  std::latch start(kContenders);
  std::vector<std::thread> threads;
  for (int t = 0; t < kContenders; ++t) {
    threads.emplace_back([&, t] {
      auto c = connect_to(server_);
      ASSERT_NE(c, nullptr);
      auto session = recipes::Session::create(*c, 10);
      ASSERT_TRUE(session.ok()) << session.status().to_string();
      recipes::Mutex mutex(*session.value(), "locks/shared/");
      const std::string me = std::to_string(t);
      start.arrive_and_wait();
      for (int i = 0; i < kRounds; ++i) {
        Status s = mutex.lock(std::chrono::seconds(120));
        if (!s.ok()) {
          ADD_FAILURE() << s.to_string();
          errors.fetch_add(1);
          return;
        }
        TxnRequest enter;
        enter.compare = {Compare::missing("cs/holder"), mutex.is_owner()};
        enter.success = {TxnOp::put("cs/holder", me)};
        auto e = c->txn(enter);
        if (!e.ok() || !e->succeeded) overlaps.fetch_add(1);
        auto v = c->get("cs/counter");
        const long n = v.ok() ? std::stol(v->value) : 0;
        if (!c->put("cs/counter", std::to_string(n + 1)).ok()) errors.fetch_add(1);
        TxnRequest exit;
        exit.compare = {Compare::value_of("cs/holder", Compare::Op::kEqual, me)};
        exit.success = {TxnOp::del("cs/holder")};
        auto x = c->txn(exit);
        if (!x.ok() || !x->succeeded) overlaps.fetch_add(1);
        if (!mutex.unlock().ok()) errors.fetch_add(1);
      }
    });
  }
  for (auto& t : threads) t.join();
  EXPECT_EQ(errors.load(), 0);
  EXPECT_EQ(overlaps.load(), 0) << "two critical sections overlapped";
  auto n = client_->get("cs/counter");
  ASSERT_TRUE(n.ok());
  EXPECT_EQ(n->value, std::to_string(kContenders * kRounds)) << "an increment was lost";
  // Every session's key is gone with its unlock.
  auto left = client_->scan(client::Range::with_prefix("locks/shared/"));
  ASSERT_TRUE(left.ok());
  EXPECT_EQ(left->kvs.size(), 0u);
}

// A child process that runs lock_demo; its stdout is a pipe read line by line.
class Child {
 public:
  explicit Child(std::vector<std::string> args) {
    int out[2];
    int in[2];
    EXPECT_EQ(::pipe(out), 0);
    EXPECT_EQ(::pipe(in), 0);
    posix_spawn_file_actions_t actions;
    posix_spawn_file_actions_init(&actions);
    posix_spawn_file_actions_adddup2(&actions, out[1], 1);
    posix_spawn_file_actions_adddup2(&actions, in[0], 0);
    posix_spawn_file_actions_addclose(&actions, out[0]);
    posix_spawn_file_actions_addclose(&actions, in[1]);
    std::vector<char*> argv;
    for (auto& a : args) argv.push_back(a.data());
    argv.push_back(nullptr);
    EXPECT_EQ(posix_spawn(&pid_, argv[0], &actions, nullptr, argv.data(), environ), 0);
    posix_spawn_file_actions_destroy(&actions);
    ::close(out[1]);
    ::close(in[0]);
    out_ = ::fdopen(out[0], "r");
    in_fd_ = in[1];
  }
  ~Child() {
    kill(SIGKILL);
    if (out_ != nullptr) std::fclose(out_);
    if (in_fd_ >= 0) ::close(in_fd_);
  }
  std::string line() {
    char buf[512];
    if (std::fgets(buf, sizeof buf, out_) == nullptr) return {};
    return buf;
  }
  void kill(int sig) {
    if (pid_ <= 0) return;
    ::kill(pid_, sig);
    int status = 0;
    ::waitpid(pid_, &status, 0);
    pid_ = -1;
  }

 private:
  pid_t pid_ = -1;
  FILE* out_ = nullptr;
  int in_fd_ = -1;
};

TEST_F(WatchLeaseTest, AHolderKilledWithSigkillFreesTheMutexAfterItsTtl) {
  constexpr int kTtl = 2;
  Child holder({LOCK_DEMO_BIN, server_.address(), "locks/k/", std::to_string(kTtl)});
  const std::string acquired = holder.line();
  ASSERT_EQ(acquired.rfind("acquired ", 0), 0u) << acquired;
  // While the holder lives, another session waits (and gives up at its timeout).
  auto session = recipes::Session::create(*client_, 10);
  ASSERT_TRUE(session.ok()) << session.status().to_string();
  recipes::Mutex mutex(*session.value(), "locks/k/");
  const Status busy = mutex.lock(std::chrono::milliseconds(3 * kTtl * 1000));
  EXPECT_EQ(busy.code(), Code::kUnavailable) << busy.to_string();
  holder.kill(SIGKILL);
  const auto killed = std::chrono::steady_clock::now();
  const Status s = mutex.lock(std::chrono::seconds(60));
  ASSERT_TRUE(s.ok()) << s.to_string();
  const auto waited = std::chrono::steady_clock::now() - killed;
  // Its lease had been renewed at most TTL/3 before the kill: at least 2/3 of the TTL
  // remained (minus scheduling slack), and the server's expiry timer frees it soon after.
  EXPECT_GE(waited, std::chrono::milliseconds(kTtl * 1000 / 2));
  EXPECT_LE(waited, std::chrono::seconds(kTtl + 15));
  ASSERT_TRUE(mutex.unlock().ok());
}

TEST_F(WatchLeaseTest, ElectionLeaderIsTheFirstCandidateAndTheNextOneTakesOver) {
  auto c2 = connect_to(server_);
  ASSERT_NE(c2, nullptr);
  auto s1 = recipes::Session::create(*client_, 10);
  auto s2 = recipes::Session::create(*c2, 10);
  ASSERT_TRUE(s1.ok() && s2.ok());
  recipes::Election e1(*s1.value(), "elect/");
  recipes::Election e2(*s2.value(), "elect/");
  ASSERT_TRUE(e1.campaign("one").ok());
  auto leader = e1.leader();
  ASSERT_TRUE(leader.ok());
  EXPECT_EQ(leader->value, "one");
  EXPECT_EQ(e2.campaign("two", std::chrono::milliseconds(500)).code(), Code::kUnavailable);
  ASSERT_TRUE(e1.proclaim("one-b").ok());
  EXPECT_EQ(e2.leader()->value, "one-b");
  std::thread resigner([&] { EXPECT_TRUE(e1.resign().ok()); });
  const Status won = e2.campaign("two", std::chrono::seconds(60));
  resigner.join();
  ASSERT_TRUE(won.ok()) << won.to_string();
  EXPECT_EQ(e2.leader()->value, "two");
  EXPECT_EQ(e1.proclaim("x").code(), Code::kInvalidArgument);  // no longer a candidate
}

}  // namespace
}  // namespace kv::test
