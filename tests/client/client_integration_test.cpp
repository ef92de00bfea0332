// The C++ client against a real kovan-server process over loopback: every operation,
// interactive and conditional transactions, transact() retries under forced conflicts and
// expiry, the asynchronous pipelined interface, and connection loss (server killed while
// requests are in flight, request timeout, reconnect to a restarted server).
#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <future>
#include <latch>
#include <mutex>
#include <thread>
#include <vector>

#include "client/client.hpp"
#include "server_process.hpp"

namespace kv::test {
namespace {

using client::Client;
using client::Code;
using client::Compare;
using client::Isolation;
using client::Range;
using client::Result;
using client::ScanOptions;
using client::Status;
using client::Transaction;
using client::TxnOp;
using client::TxnRequest;

std::unique_ptr<Client> connect_to(const ServerProcess& server,
                                   client::ClientOptions options = {}) {
  auto c = Client::connect(server.address(), options);
  EXPECT_TRUE(c.ok()) << c.status().to_string() << "\n" << server.output();
  return c.ok() ? std::move(c).value() : nullptr;
}

std::uint64_t counter(Client& c, std::string_view name) {
  auto s = c.stats();
  EXPECT_TRUE(s.ok()) << s.status().to_string();
  auto v = s->get(name);
  EXPECT_TRUE(v.has_value()) << name;
  return v.value_or(0);
}

class ClientTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_NE(server_.port(), 0) << server_.output();
    client_ = connect_to(server_);
    ASSERT_NE(client_, nullptr);
  }
  ServerProcess server_{{"--threads", "2"}};
  std::unique_ptr<Client> client_;
};

TEST_F(ClientTest, PingEchoesPayload) {
  auto r = client_->ping("hello");
  ASSERT_TRUE(r.ok()) << r.status().to_string();
  EXPECT_EQ(r.value(), "hello");
}

TEST_F(ClientTest, PutGetCarryMetadata) {
  auto p1 = client_->put("k", "v1");
  ASSERT_TRUE(p1.ok()) << p1.status().to_string();
  auto p2 = client_->put("k", std::string("v\0two", 5), /*prev_kv=*/true);
  ASSERT_TRUE(p2.ok());
  EXPECT_GT(p2->revision, p1->revision);
  ASSERT_TRUE(p2->prev.has_value());
  EXPECT_EQ(p2->prev->value, "v1");

  auto g = client_->get("k");
  ASSERT_TRUE(g.ok());
  EXPECT_EQ(g->key, "k");
  EXPECT_EQ(g->value, std::string("v\0two", 5));
  EXPECT_EQ(g->create_revision, p1->revision);
  EXPECT_EQ(g->mod_revision, p2->revision);
  EXPECT_EQ(g->version, 2u);

  auto missing = client_->get("absent");
  EXPECT_EQ(missing.code(), Code::kNotFound);
}

TEST_F(ClientTest, DeleteReportsWhetherAKeyExisted) {
  ASSERT_TRUE(client_->put("d", "x").ok());
  auto d1 = client_->del("d", /*prev_kv=*/true);
  ASSERT_TRUE(d1.ok());
  EXPECT_EQ(d1->deleted, 1u);
  ASSERT_TRUE(d1->prev.has_value());
  EXPECT_EQ(d1->prev->value, "x");
  auto d2 = client_->del("d");
  ASSERT_TRUE(d2.ok());
  EXPECT_EQ(d2->deleted, 0u);
  EXPECT_EQ(client_->get("d").code(), Code::kNotFound);
}

TEST_F(ClientTest, ScanRangesPrefixesLimitsAndOptions) {
  for (const char* k : {"a/1", "a/2", "a/3", "b/1", "c"}) ASSERT_TRUE(client_->put(k, k).ok());

  auto between = client_->scan(Range::between("a/2", "b/2"));
  ASSERT_TRUE(between.ok());
  ASSERT_EQ(between->kvs.size(), 3u);
  EXPECT_EQ(between->kvs[0].key, "a/2");
  EXPECT_EQ(between->kvs[2].key, "b/1");
  EXPECT_EQ(between->count, 3u);
  EXPECT_FALSE(between->more);

  auto prefix = client_->scan(Range::with_prefix("a/"), ScanOptions{.limit = 2});
  ASSERT_TRUE(prefix.ok());
  ASSERT_EQ(prefix->kvs.size(), 2u);
  EXPECT_EQ(prefix->count, 3u);
  EXPECT_TRUE(prefix->more);

  auto rev = client_->scan(Range::all(), ScanOptions{.limit = 1, .reverse = true});
  ASSERT_TRUE(rev.ok());
  ASSERT_EQ(rev->kvs.size(), 1u);
  EXPECT_EQ(rev->kvs[0].key, "c");

  auto keys = client_->scan(Range::with_prefix("a/"), ScanOptions{.keys_only = true});
  ASSERT_TRUE(keys.ok());
  ASSERT_EQ(keys->kvs.size(), 3u);
  EXPECT_TRUE(keys->kvs[0].value.empty());

  auto count = client_->scan(Range::all(), ScanOptions{.count_only = true});
  ASSERT_TRUE(count.ok());
  EXPECT_TRUE(count->kvs.empty());
  EXPECT_EQ(count->count, 5u);

  auto bad = client_->scan(Range::between("z", "a"));
  EXPECT_EQ(bad.code(), Code::kInvalidArgument);
  EXPECT_FALSE(bad.status().message().empty());
}

TEST_F(ClientTest, DeleteRangeByPrefix) {
  for (const char* k : {"p/1", "p/2", "q"}) ASSERT_TRUE(client_->put(k, "v").ok());
  auto d = client_->delete_range(Range::with_prefix("p/"), /*prev_kv=*/true);
  ASSERT_TRUE(d.ok());
  EXPECT_EQ(d->deleted, 2u);
  ASSERT_EQ(d->prev_kvs.size(), 2u);
  EXPECT_EQ(d->prev_kvs[1].key, "p/2");
  auto rest = client_->scan(Range::all());
  ASSERT_TRUE(rest.ok());
  ASSERT_EQ(rest->kvs.size(), 1u);
  EXPECT_EQ(rest->kvs[0].key, "q");
}

TEST_F(ClientTest, StatsReportNamedCounters) {
  ASSERT_TRUE(client_->put("s1", "v").ok());
  ASSERT_TRUE(client_->put("s2", "v").ok());
  auto s = client_->stats();
  ASSERT_TRUE(s.ok());
  EXPECT_EQ(s->get("keys"), 2u);
  EXPECT_GE(s->get("commits").value_or(0), 2u);
  EXPECT_GE(s->get("connections").value_or(0), 1u);
  EXPECT_FALSE(s->get("no_such_counter").has_value());
}

TEST_F(ClientTest, InvalidArgumentCarriesTheServersMessage) {
  auto r = client_->put("", "v");
  EXPECT_EQ(r.code(), Code::kInvalidArgument);
  EXPECT_FALSE(r.status().message().empty());
  EXPECT_FALSE(r.status().outcome_unknown());
  EXPECT_EQ(client_->fault(1).code(), Code::kInvalidArgument);  // fault injection is off
}

TEST_F(ClientTest, ConditionalTransactionRunsTheMatchingBranch) {
  TxnRequest create;
  create.compare.push_back(Compare::missing("lock"));
  create.success.push_back(TxnOp::put("lock", "owner-1"));
  create.failure.push_back(TxnOp::get("lock"));

  auto first = client_->txn(create);
  ASSERT_TRUE(first.ok()) << first.status().to_string();
  EXPECT_TRUE(first->succeeded);
  ASSERT_EQ(first->results.size(), 1u);
  EXPECT_EQ(first->results[0].kind, TxnOp::Kind::kPut);

  auto second = client_->txn(create);
  ASSERT_TRUE(second.ok());
  EXPECT_FALSE(second->succeeded);
  ASSERT_EQ(second->results.size(), 1u);
  EXPECT_TRUE(second->results[0].found);
  EXPECT_EQ(second->results[0].kv.value, "owner-1");

  TxnRequest swap;
  swap.compare.push_back(Compare::value_of("lock", Compare::Op::kEqual, "owner-1"));
  swap.success = {TxnOp::put("lock", "owner-2"), TxnOp::get("missing"),
                  TxnOp::scan_range(Range::with_prefix("lo"))};
  auto third = client_->txn(swap);
  ASSERT_TRUE(third.ok());
  EXPECT_TRUE(third->succeeded);
  ASSERT_EQ(third->results.size(), 3u);
  EXPECT_FALSE(third->results[1].found);
  ASSERT_EQ(third->results[2].kvs.size(), 1u);
  EXPECT_EQ(third->results[2].kvs[0].value, "owner-2");  // ops see earlier ops' effects
}

TEST_F(ClientTest, InteractiveTransactionIsolatesUntilCommit) {
  auto other = connect_to(server_);
  auto t = client_->begin(Isolation::kSerializable);
  ASSERT_TRUE(t.ok()) << t.status().to_string();
  EXPECT_TRUE(t->open());
  EXPECT_NE(t->id(), 0u);
  ASSERT_TRUE(t->put("t/a", "1").ok());
  ASSERT_TRUE(t->put("t/b", "2").ok());
  ASSERT_TRUE(t->del("t/b").ok());

  auto own = t->get("t/a");
  ASSERT_TRUE(own.ok());
  EXPECT_EQ(own->value, "1");
  EXPECT_EQ(t->get("t/b").code(), Code::kNotFound);
  auto scan = t->scan(Range::with_prefix("t/"));
  ASSERT_TRUE(scan.ok());
  EXPECT_EQ(scan->kvs.size(), 1u);
  EXPECT_EQ(other->get("t/a").code(), Code::kNotFound);  // invisible before commit

  auto rev = t->commit();
  ASSERT_TRUE(rev.ok()) << rev.status().to_string();
  EXPECT_FALSE(t->open());
  auto after = other->get("t/a");
  ASSERT_TRUE(after.ok());
  EXPECT_EQ(after->mod_revision, rev.value());
  EXPECT_EQ(t->commit().code(), Code::kInvalidArgument);  // finished
}

TEST_F(ClientTest, AbortAndDestructorDiscardWrites) {
  {
    auto t = client_->begin(Isolation::kSnapshot);
    ASSERT_TRUE(t.ok());
    EXPECT_EQ(t->isolation(), Isolation::kSnapshot);
    ASSERT_TRUE(t->put("gone", "1").ok());
    ASSERT_TRUE(t->abort().ok());
    EXPECT_FALSE(t->open());
  }
  {
    auto t = client_->begin();
    ASSERT_TRUE(t.ok());
    ASSERT_TRUE(t->put("gone2", "1").ok());
    EXPECT_EQ(counter(*client_, "server_txns"), 1u);
  }  // destroyed open: aborted
  // The abort was queued on this connection before the stats request, and the server
  // executes a connection's requests in order.
  EXPECT_EQ(counter(*client_, "server_txns"), 0u);
  EXPECT_EQ(client_->get("gone").code(), Code::kNotFound);
  EXPECT_EQ(client_->get("gone2").code(), Code::kNotFound);
  EXPECT_GE(counter(*client_, "aborts_user"), 2u);
}

TEST_F(ClientTest, TransactRetriesAForcedConflict) {
  auto other = connect_to(server_);
  ASSERT_TRUE(client_->put("counter", "10").ok());
  int runs = 0;
  auto r = client_->transact([&](Transaction& t) -> Status {
    ++runs;
    auto v = t.get("counter");
    if (!v.ok()) return v.status();
    if (runs == 1) {
      // Another client changes the key this transaction read: its commit must conflict.
      auto p = other->put("counter", "100");
      if (!p.ok()) return p.status();
    }
    return t.put("counter", std::to_string(std::stoi(v->value) + 1));
  });
  ASSERT_TRUE(r.ok()) << r.status.to_string();
  EXPECT_EQ(r.attempts, 2u);
  EXPECT_EQ(runs, 2);
  auto final_value = client_->get("counter");
  ASSERT_TRUE(final_value.ok());
  EXPECT_EQ(final_value->value, "101");
  EXPECT_EQ(final_value->mod_revision, r.revision);
  EXPECT_GE(counter(*client_, "aborts_conflict"), 1u);
}

TEST_F(ClientTest, TransactGivesUpAfterMaxAttempts) {
  auto other = connect_to(server_);
  ASSERT_TRUE(client_->put("hot", "0").ok());
  int runs = 0;
  client::TransactOptions opts;
  opts.max_attempts = 3;
  opts.initial_backoff = std::chrono::microseconds(100);
  auto r = client_->transact(
      [&](Transaction& t) -> Status {
        ++runs;
        auto v = t.get("hot");
        if (!v.ok()) return v.status();
        if (!other->put("hot", std::to_string(runs)).ok()) return Status(Code::kInternal, "put");
        return t.put("hot", "mine");
      },
      opts);
  EXPECT_EQ(r.status.code(), Code::kConflict);
  EXPECT_EQ(r.attempts, 3u);
  EXPECT_EQ(runs, 3);
  EXPECT_EQ(client_->get("hot")->value, "3");
}

TEST_F(ClientTest, TransactDoesNotRetryOtherErrors) {
  int runs = 0;
  auto r = client_->transact([&](Transaction& t) -> Status {
    ++runs;
    (void)t.put("never", "1");
    return Status(Code::kInvalidArgument, "caller gave up");
  });
  EXPECT_EQ(r.status.code(), Code::kInvalidArgument);
  EXPECT_EQ(r.attempts, 1u);
  EXPECT_EQ(runs, 1);
  EXPECT_EQ(client_->get("never").code(), Code::kNotFound);
}

TEST_F(ClientTest, ConcurrentTransactIncrementsAreNotLost) {
  constexpr int kThreads = 4;
  constexpr int kIncrements = 25;
  ASSERT_TRUE(client_->put("shared", "0").ok());
  std::vector<std::unique_ptr<Client>> clients;
  for (int i = 0; i < kThreads; ++i) clients.push_back(connect_to(server_));
  std::atomic<std::uint32_t> attempts{0};
  std::latch start(kThreads);
  std::vector<std::thread> threads;
  for (int i = 0; i < kThreads; ++i) {
    threads.emplace_back([&, i] {
      start.arrive_and_wait();
      for (int k = 0; k < kIncrements; ++k) {
        client::TransactOptions opts;
        opts.max_attempts = 1000;
        auto r = clients[static_cast<std::size_t>(i)]->transact(
            [](Transaction& t) -> Status {
              auto v = t.get("shared");
              if (!v.ok()) return v.status();
              return t.put("shared", std::to_string(std::stoi(v->value) + 1));
            },
            opts);
        EXPECT_TRUE(r.ok()) << r.status.to_string();
        attempts.fetch_add(r.attempts, std::memory_order_relaxed);
      }
    });
  }
  for (auto& t : threads) t.join();
  EXPECT_EQ(client_->get("shared")->value, std::to_string(kThreads * kIncrements));
  EXPECT_GE(attempts.load(), static_cast<std::uint32_t>(kThreads * kIncrements));
}

TEST_F(ClientTest, AsyncCallsArePipelinedAndAnsweredInOrder) {
  constexpr int kRequests = 2000;
  std::mutex mu;
  std::vector<std::uint64_t> revisions;
  std::atomic<int> failures{0};
  std::latch done(kRequests);
  for (int i = 0; i < kRequests; ++i) {
    client_->put_async("async/" + std::to_string(i % 100), std::to_string(i),
                       [&](Result<client::PutResult> r) {
                         if (r.ok()) {
                           std::lock_guard lock(mu);
                           revisions.push_back(r->revision);
                         } else {
                           failures.fetch_add(1, std::memory_order_relaxed);
                         }
                         done.count_down();
                       });
  }
  done.wait();
  EXPECT_EQ(failures.load(), 0);
  ASSERT_EQ(revisions.size(), static_cast<std::size_t>(kRequests));
  // Callbacks run in response order, which is request order: revisions increase.
  for (std::size_t i = 1; i < revisions.size(); ++i) ASSERT_LT(revisions[i - 1], revisions[i]);

  auto f = client::as_future<client::KeyValue>(
      [&](client::Callback<client::KeyValue> cb) { client_->get_async("async/99", cb); });
  auto got = f.get();
  ASSERT_TRUE(got.ok());
  EXPECT_EQ(got->value, std::to_string(kRequests - 1));
  EXPECT_EQ(client_->in_flight(), 0u);
}

TEST_F(ClientTest, AsyncCallsFromManyThreadsShareOneConnection) {
  constexpr int kThreads = 4;
  constexpr int kPerThread = 300;
  std::atomic<int> ok{0};
  std::latch done(kThreads * kPerThread);
  std::latch start(kThreads);
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      start.arrive_and_wait();
      for (int i = 0; i < kPerThread; ++i) {
        client_->put_async("mt/" + std::to_string(t) + "/" + std::to_string(i), "v",
                           [&](Result<client::PutResult> r) {
                             if (r.ok()) ok.fetch_add(1, std::memory_order_relaxed);
                             done.count_down();
                           });
      }
    });
  }
  for (auto& th : threads) th.join();
  done.wait();
  EXPECT_EQ(ok.load(), kThreads * kPerThread);
  auto count = client_->scan(Range::with_prefix("mt/"), ScanOptions{.count_only = true});
  ASSERT_TRUE(count.ok());
  EXPECT_EQ(count->count, static_cast<std::uint64_t>(kThreads * kPerThread));
  EXPECT_EQ(client_->connections_opened(), 1u);
}

TEST_F(ClientTest, BlockingCallInsideACallbackIsRefused) {
  std::promise<Code> inner;
  client_->ping_async("x", [&](Result<std::string>) { inner.set_value(client_->ping().code()); });
  EXPECT_EQ(inner.get_future().get(), Code::kInvalidArgument);
  EXPECT_TRUE(client_->ping().ok());
}

TEST(ClientConnect, RefusedAndMalformedAddresses) {
  EXPECT_EQ(Client::connect("no-port").code(), Code::kInvalidArgument);
  EXPECT_EQ(Client::connect("127.0.0.1:99999").code(), Code::kInvalidArgument);
  // A port nobody listens on: bind one, learn it, close it.
  ServerProcess s;
  const std::string addr = s.address();
  s.kill(SIGKILL);
  auto c = Client::connect(addr);
  EXPECT_EQ(c.code(), Code::kUnavailable);
}

TEST(ClientExpiry, TransactRetriesAnExpiredTransaction) {
  ServerProcess server({"--threads", "2", "--txn-timeout", "100ms"});
  ASSERT_NE(server.port(), 0) << server.output();
  auto c = connect_to(server);
  auto watcher = connect_to(server);
  ASSERT_TRUE(c->put("e", "1").ok());
  int runs = 0;
  auto r = c->transact([&](Transaction& t) -> Status {
    ++runs;
    if (runs == 1) {
      // Wait (polling the server's counters, with a deadline) until the server has
      // expired this transaction; its next request then reports TXN_EXPIRED.
      const bool expired = eventually([&] { return counter(*watcher, "aborts_expired") >= 1; });
      if (!expired) return Status(Code::kInternal, "the transaction never expired");
    }
    auto v = t.get("e");
    if (!v.ok()) return v.status();
    return t.put("e", v->value + "+");
  });
  ASSERT_TRUE(r.ok()) << r.status.to_string();
  EXPECT_EQ(r.attempts, 2u);
  EXPECT_EQ(c->get("e")->value, "1+");
}

TEST(ClientFailure, ServerKilledWhileRequestsAreInFlight) {
  ServerProcess server({"--threads", "2", "--enable-fault-injection"});
  ASSERT_NE(server.port(), 0) << server.output();
  auto c = connect_to(server);
  ASSERT_TRUE(c->put("x", "0").ok());
  auto t = c->begin();
  ASSERT_TRUE(t.ok());
  ASSERT_TRUE(t->put("x", "1").ok());

  // A stall parks the server's thread for this connection; the commit is pipelined
  // behind it, so both are in flight when the server dies.
  std::promise<Status> stalled;
  std::promise<Status> committed;
  c->fault_async(30000, [&](Result<client::Done> r) { stalled.set_value(r.status()); });
  t->commit_async([&](Result<std::uint64_t> r) { committed.set_value(r.status()); });
  EXPECT_EQ(c->in_flight(), 2u);
  server.kill(SIGKILL);

  const Status s1 = stalled.get_future().get();
  const Status s2 = committed.get_future().get();
  EXPECT_EQ(s1.code(), Code::kUnavailable);
  EXPECT_FALSE(s1.outcome_unknown());  // not a write
  EXPECT_EQ(s2.code(), Code::kUnavailable);
  EXPECT_TRUE(s2.outcome_unknown()) << s2.to_string();  // a commit: never retried silently

  // With the server gone, calls fail fast with UNAVAILABLE and are not resent.
  auto down = c->get("x");
  EXPECT_EQ(down.code(), Code::kUnavailable);

  ASSERT_TRUE(server.restart()) << server.output();
  // The next calls reconnect (polled with a deadline while the new process comes up).
  ASSERT_TRUE(eventually([&] { return c->ping().ok(); }));
  EXPECT_GE(c->connections_opened(), 2u);
  EXPECT_EQ(c->get("x").code(), Code::kNotFound);  // in-memory store: a fresh server
  auto p = c->put("x", "after");
  ASSERT_TRUE(p.ok()) << p.status().to_string();
}

TEST(ClientFailure, TransactionDoesNotSurviveAReconnect) {
  ServerProcess server({"--threads", "2"});
  ASSERT_NE(server.port(), 0);
  auto c = connect_to(server);
  auto t = c->begin();
  ASSERT_TRUE(t.ok());
  server.kill(SIGKILL);
  ASSERT_TRUE(server.restart());
  ASSERT_TRUE(eventually([&] { return c->ping().ok(); }));
  auto g = t->get("k");
  EXPECT_EQ(g.code(), Code::kUnavailable);
  EXPECT_FALSE(t->open());
}

TEST(ClientFailure, SilentServerTripsTheRequestTimeout) {
  ServerProcess server({"--threads", "2", "--enable-fault-injection"});
  ASSERT_NE(server.port(), 0);
  client::ClientOptions opts;
  opts.request_timeout = std::chrono::milliseconds(200);
  auto c = connect_to(server, opts);
  const auto start = std::chrono::steady_clock::now();
  const Status s = c->fault(2000);
  const auto waited = std::chrono::steady_clock::now() - start;
  EXPECT_EQ(s.code(), Code::kUnavailable) << s.to_string();
  EXPECT_LT(waited, std::chrono::milliseconds(1500));
  // A new connection; it works once the server answers again (at worst after the stall).
  client::ClientOptions patient;
  patient.request_timeout = std::chrono::milliseconds(10000);
  auto fresh = connect_to(server, patient);
  EXPECT_TRUE(fresh->ping().ok());
  EXPECT_TRUE(eventually([&] { return c->ping().ok(); }));
  EXPECT_EQ(c->connections_opened(), 2u);
}

TEST(ClientFailure, ServerShutdownFailsCallsWithUnavailable) {
  ServerProcess server({"--threads", "2", "--shutdown-grace", "200ms"});
  ASSERT_NE(server.port(), 0);
  auto c = connect_to(server);
  ASSERT_TRUE(c->put("k", "v").ok());
  server.kill(SIGTERM);  // graceful: notice, then close; waits for the exit
  auto r = c->get("k");
  EXPECT_EQ(r.code(), Code::kUnavailable);
  ASSERT_TRUE(server.restart());
  EXPECT_TRUE(eventually([&] { return c->ping().ok(); }));
}

// A request frame over the server's --max-frame-bytes is refused from its 4-byte header,
// unread: the server answers the requests before it, sends a RESOURCE_EXHAUSTED notice and
// closes. The client must report that request, and the one pipelined behind it, as not
// applied rather than as writes of unknown outcome.
TEST(ClientFrameLimit, RequestTheServerRefusedUnreadIsReportedNotApplied) {
  ServerProcess server(
      {"--threads", "1", "--max-frame-bytes", "64KiB", "--enable-fault-injection"});
  ASSERT_NE(server.port(), 0) << server.output();
  auto c = connect_to(server);  // accepts frames up to 4 MiB: the request is sent
  std::promise<Status> stalled;
  std::promise<Status> before;
  std::promise<Status> big;
  std::promise<Status> after;
  // The stall keeps the server from answering (and from sending its notice) until all four
  // requests are queued on this one connection.
  c->fault_async(1000, [&](Result<client::Done> r) { stalled.set_value(r.status()); });
  c->put_async("before", "1", [&](Result<client::PutResult> r) { before.set_value(r.status()); });
  c->put_async("big", std::string(100 * 1024, 'x'),
               [&](Result<client::PutResult> r) { big.set_value(r.status()); });
  c->put_async("after", "1", [&](Result<client::PutResult> r) { after.set_value(r.status()); });
  EXPECT_EQ(c->connections_opened(), 1u);
  EXPECT_TRUE(stalled.get_future().get().ok());
  const Status s0 = before.get_future().get();
  const Status s1 = big.get_future().get();
  const Status s2 = after.get_future().get();
  EXPECT_TRUE(s0.ok()) << s0.to_string();
  // The refused request carries the notice's code; the one behind it was lost with the
  // connection. Neither was applied.
  EXPECT_EQ(s1.code(), Code::kResourceExhausted) << s1.to_string();
  EXPECT_EQ(s2.code(), Code::kUnavailable) << s2.to_string();
  for (const Status& s : {s1, s2}) {
    EXPECT_FALSE(s.outcome_unknown()) << s.to_string();
    EXPECT_NE(s.message().find("not applied"), std::string::npos) << s.to_string();
    EXPECT_NE(s.message().find("exceeds the limit"), std::string::npos) << s.to_string();
  }
  // Indeed nothing from the refused frame on was applied (the next call reconnects).
  EXPECT_TRUE(c->get("before").ok());
  EXPECT_EQ(c->get("big").code(), Code::kNotFound);
  EXPECT_EQ(c->get("after").code(), Code::kNotFound);
}

// With the server's limit in ClientOptions::max_frame_bytes, the client refuses the request
// itself: nothing is sent, and the connection (with its transactions) survives.
TEST(ClientFrameLimit, RequestOverTheClientsLimitIsRefusedBeforeSending) {
  ServerProcess server({"--threads", "2", "--max-frame-bytes", "64KiB"});
  ASSERT_NE(server.port(), 0) << server.output();
  client::ClientOptions opts;
  opts.max_frame_bytes = 64 * 1024;
  auto c = connect_to(server, opts);
  auto t = c->begin();
  ASSERT_TRUE(t.ok()) << t.status().to_string();
  ASSERT_TRUE(t->put("small", "1").ok());
  const Status s = t->put("big", std::string(100 * 1024, 'x'));
  EXPECT_EQ(s.code(), Code::kResourceExhausted) << s.to_string();
  EXPECT_FALSE(s.outcome_unknown());
  EXPECT_NE(s.message().find("not applied"), std::string::npos) << s.to_string();
  auto one_shot = c->put("big", std::string(100 * 1024, 'x'));
  EXPECT_EQ(one_shot.code(), Code::kResourceExhausted) << one_shot.status().to_string();
  EXPECT_FALSE(one_shot.status().outcome_unknown());
  ASSERT_TRUE(t->open());
  auto committed = t->commit();
  EXPECT_TRUE(committed.ok()) << committed.status().to_string();
  EXPECT_TRUE(c->get("small").ok());
  EXPECT_EQ(c->get("big").code(), Code::kNotFound);
  EXPECT_EQ(c->connections_opened(), 1u);
}

// A peer that accepts but never reads: the client's socket write times out part-way
// through a large frame. The frame written completely before it may have been applied
// (outcome unknown); the one cut off, and any behind it, cannot have been.
TEST(ClientFailure, FrameNotCompletelyWrittenIsReportedNotApplied) {
  const int listener = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  ASSERT_GE(listener, 0);
  const int small = 4096;
  ::setsockopt(listener, SOL_SOCKET, SO_RCVBUF, &small, sizeof small);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  ASSERT_EQ(::bind(listener, reinterpret_cast<sockaddr*>(&addr), sizeof addr), 0);
  ASSERT_EQ(::listen(listener, 4), 0);
  socklen_t len = sizeof addr;
  ASSERT_EQ(::getsockname(listener, reinterpret_cast<sockaddr*>(&addr), &len), 0);
  const std::string address = "127.0.0.1:" + std::to_string(ntohs(addr.sin_port));

  client::ClientOptions opts;
  opts.request_timeout = std::chrono::milliseconds(2000);
  opts.max_frame_bytes = 64u << 20;
  auto c = Client::connect(address, opts);
  ASSERT_TRUE(c.ok()) << c.status().to_string();
  std::promise<Status> first;
  std::promise<Status> huge;
  std::promise<Status> behind;
  // The calling thread writes its frame; the write of the 16 MiB frame, which no socket
  // buffer can hold, blocks and then fails (send timeout or the I/O thread's request
  // timeout, whichever comes first). A request submitted while that write is blocked is
  // queued behind it on the same connection and never written.
  Client& client = *c.value();
  client.put_async("first", "1", [&](Result<client::PutResult> r) { first.set_value(r.status()); });
  std::thread writer([&] {
    client.put_async("huge", std::string(16u << 20, 'x'),
                     [&](Result<client::PutResult> r) { huge.set_value(r.status()); });
  });
  // Both frames are pending once the writer has queued "huge" (and is writing it).
  EXPECT_TRUE(eventually([&] { return client.in_flight() == 2; }));
  client.put_async("behind", "1",
                   [&](Result<client::PutResult> r) { behind.set_value(r.status()); });
  writer.join();
  const Status s0 = first.get_future().get();
  const Status s1 = huge.get_future().get();
  const Status s2 = behind.get_future().get();
  ::close(listener);
  EXPECT_EQ(s0.code(), Code::kUnavailable);
  EXPECT_TRUE(s0.outcome_unknown()) << s0.to_string();
  for (const Status& s : {s1, s2}) {
    EXPECT_EQ(s.code(), Code::kUnavailable) << s.to_string();
    EXPECT_FALSE(s.outcome_unknown()) << s.to_string();
    EXPECT_NE(s.message().find("not applied"), std::string::npos) << s.to_string();
  }
}

// ---------------------------------------------------------------------------------------
// Authentication (docs/SECURITY.md)
// ---------------------------------------------------------------------------------------

// The users file line of `name` with `password` hashed by the server binary.
std::string user_line(const std::string& name, const std::string& role, const std::string& password,
                      const std::string& options = {}) {
  const std::string cmd = "echo '" + password + "' | " + std::string(KOVAN_SERVER_BIN) +
                          " hash-password --iterations 1000";
  FILE* p = ::popen(cmd.c_str(), "r");
  EXPECT_NE(p, nullptr);
  char buf[512] = {};
  const bool got = p != nullptr && std::fgets(buf, sizeof buf, p) != nullptr;
  if (p != nullptr) ::pclose(p);
  EXPECT_TRUE(got);
  std::string hash(buf);
  while (!hash.empty() && (hash.back() == '\n' || hash.back() == '\r')) hash.pop_back();
  return name + " " + role + " " + hash + " " + options + "\n";
}

class ClientAuthTest : public ::testing::Test {
 protected:
  static std::string users_file() {
    static const std::string path = [] {
      const auto p = std::filesystem::temp_directory_path() /
                     ("kovan-client-auth-" + std::to_string(::getpid()) + ".users");
      std::ofstream out(p);
      out << user_line("app", "readwrite", "app-pw", "prefix=app/")
          << user_line("ro", "read", "ro-pw");
      return p.string();
    }();
    return path;
  }
  static client::ClientOptions as(const std::string& user, const std::string& password) {
    client::ClientOptions o;
    o.user = user;
    o.password = password;
    return o;
  }
  ServerProcess server_{{"--threads", "2", "--users", users_file()}};
};

TEST_F(ClientAuthTest, CodesAreMappedAndRequestsNeedAUser) {
  ASSERT_NE(server_.port(), 0) << server_.output();
  auto anon = connect_to(server_);
  ASSERT_NE(anon, nullptr);
  EXPECT_TRUE(anon->ping("x").ok());
  const auto r = anon->get("app/k");
  EXPECT_EQ(r.code(), Code::kUnauthenticated) << r.status().to_string();
  EXPECT_EQ(client::code_name(Code::kUnauthenticated), "UNAUTHENTICATED");
  EXPECT_EQ(client::code_name(Code::kPermissionDenied), "PERMISSION_DENIED");

  auto wrong = Client::connect(server_.address(), as("app", "nope"));
  EXPECT_EQ(wrong.code(), Code::kUnauthenticated) << wrong.status().to_string();

  auto app = connect_to(server_, as("app", "app-pw"));
  ASSERT_NE(app, nullptr);
  EXPECT_TRUE(app->put("app/k", "v").ok());
  const auto denied = app->put("other", "v");
  EXPECT_EQ(denied.code(), Code::kPermissionDenied) << denied.status().to_string();
  auto ro = connect_to(server_, as("ro", "ro-pw"));
  ASSERT_NE(ro, nullptr);
  EXPECT_EQ(ro->put("app/k", "w").code(), Code::kPermissionDenied);
  EXPECT_EQ(ro->get("app/k")->value, "v");
}

TEST_F(ClientAuthTest, ReconnectAuthenticatesAgain) {
  ASSERT_NE(server_.port(), 0) << server_.output();
  auto app = connect_to(server_, as("app", "app-pw"));
  ASSERT_NE(app, nullptr);
  ASSERT_TRUE(server_.restart()) << server_.output();
  // The first call may see the old connection fail; a later one reconnects and
  // authenticates (pipelined ahead of it).
  bool ok = false;
  for (int i = 0; i < 50 && !ok; ++i) ok = app->put("app/again", "1").ok();
  EXPECT_TRUE(ok);
  EXPECT_GE(app->connections_opened(), 2u);
}

TEST(ClientPassword, FromFileOrEnvironment) {
  const auto path =
      std::filesystem::temp_directory_path() / ("kovan-client-pw-" + std::to_string(::getpid()));
  {
    std::ofstream out(path);
    out << "from-file\nsecond line\n";
  }
  EXPECT_EQ(client::password_from_env_or_file(path.string()).value(), "from-file");
  ::setenv("KOVAN_TEST_PASSWORD_ENV", "from-env", 1);
  EXPECT_EQ(client::password_from_env_or_file("", "KOVAN_TEST_PASSWORD_ENV").value(), "from-env");
  ::unsetenv("KOVAN_TEST_PASSWORD_ENV");
  EXPECT_EQ(client::password_from_env_or_file("", "KOVAN_TEST_PASSWORD_ENV").code(),
            Code::kInvalidArgument);
  EXPECT_EQ(client::password_from_env_or_file("/nonexistent/pw").code(), Code::kInvalidArgument);
  std::filesystem::remove(path);
}

}  // namespace
}  // namespace kv::test
