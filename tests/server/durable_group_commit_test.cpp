// Group commit across the connections of one worker (docs/PERSISTENCE.md, "Group commit
// across connections"): with --fsync always, a durable write runs on a commit thread, so a
// worker waiting for the log goes on serving its other connections and their commits share
// an fsync. Real kovan-server processes with --data-dir, --threads 1.
#include <algorithm>
#include <atomic>
#include <barrier>
#include <thread>
#include <vector>

#include "durable_harness.hpp"

namespace kv::test {
namespace {

std::uint64_t stat_u64(std::uint16_t port, const char* name) {
  Client c(port);
  auto r = try_call(c, stats(1));
  if (!r || r->status().code() != pb::Status::OK) return ~std::uint64_t{0};
  const auto& m = r->stats();
  const auto* d = m.GetDescriptor()->FindFieldByName(name);
  return d == nullptr ? ~std::uint64_t{0} : m.GetReflection()->GetUInt64(m, d);
}

struct LogCounts {
  std::uint64_t records = 0;
  std::uint64_t fsyncs = 0;
};

// `clients` connections, each writing `writes` keys one at a time (waiting for each answer),
// all at once; returns what the log did for them.
LogCounts concurrent_writers(std::uint16_t port, int clients, int writes) {
  const LogCounts before{stat_u64(port, "wal_records"), stat_u64(port, "wal_fsyncs")};
  std::atomic<int> failures{0};
  std::barrier start(clients);
  std::vector<std::thread> threads;
  for (int c = 0; c < clients; ++c) {
    threads.emplace_back([&, c] {
      Client client(port);
      start.arrive_and_wait();
      for (int i = 0; i < writes; ++i) {
        const std::uint64_t id = static_cast<std::uint64_t>(i) + 1;
        auto r = try_call(client, put(id, "c" + std::to_string(c) + "/" + std::to_string(i), "v"));
        if (!r || r->status().code() != pb::Status::OK || r->id() != id) failures.fetch_add(1);
      }
    });
  }
  for (auto& t : threads) t.join();
  EXPECT_EQ(failures.load(), 0);
  return {stat_u64(port, "wal_records") - before.records,
          stat_u64(port, "wal_fsyncs") - before.fsyncs};
}

// One worker, 16 connections writing at once: their commits share fsyncs. Without commit
// threads the worker blocks in each commit's fsync, so every record gets an fsync of its
// own (records == fsyncs exactly: nothing else can run while it waits).
TEST(GroupCommit, ConnectionsOfOneWorkerShareFsyncs) {
  TempDir dir("group");
  DurableServer s(dir.str(), {"--threads", "1"}, "group");
  ASSERT_NE(s.port(), 0) << s.output();
  constexpr int kClients = 16;
  constexpr int kWrites = 40;
  const LogCounts n = concurrent_writers(s.port(), kClients, kWrites);
  EXPECT_EQ(n.records, std::uint64_t{kClients} * kWrites);
  // Shared fsyncs: well under one per record (a batch of 2 on average at least).
  EXPECT_LE(n.fsyncs * 2, n.records) << "records " << n.records << ", fsyncs " << n.fsyncs;
  // Every write is there, at its own key.
  EXPECT_EQ(scan_prefix(s.port(), "c").size(), static_cast<std::size_t>(kClients * kWrites));
}

// The control: commit threads are what makes the difference. A server told to use none
// (the behaviour before they existed) gives every record an fsync of its own on one worker,
// so the test above measures the feature and not the machine.
TEST(GroupCommit, WithoutCommitThreadsEachRecordHasItsOwnFsync) {
  TempDir dir("nogroup");
  DurableServer s(dir.str(), {"--threads", "1", "--commit-threads", "0"}, "nogroup");
  ASSERT_NE(s.port(), 0) << s.output();
  const LogCounts n = concurrent_writers(s.port(), 8, 10);
  EXPECT_EQ(n.records, 80u);
  EXPECT_EQ(n.fsyncs, n.records);
}

// A connection's pipelined requests keep their order and see their own writes while its
// writes wait on commit threads; reads and writes of other connections go on meanwhile.
TEST(GroupCommit, PipelinedRequestsStayInOrderAndSeeEarlierWrites) {
  TempDir dir("order");
  DurableServer s(dir.str(), {"--threads", "1"}, "order");
  ASSERT_NE(s.port(), 0) << s.output();
  Client c(s.port());
  std::vector<pb::Request> batch;
  std::uint64_t id = 1;
  for (int round = 0; round < 20; ++round) {
    batch.push_back(put(id++, "k", "v" + std::to_string(round)));
    batch.push_back(get(id++, "k"));
    batch.push_back(del(id++, "k"));
    batch.push_back(get(id++, "k"));
  }
  // Interactive transaction through the same path: its commit waits for the log.
  ASSERT_TRUE(c.send_all(batch));
  for (std::uint64_t want = 1; want < id; ++want) {
    auto r = c.recv(30s);
    ASSERT_TRUE(r.has_value()) << "no answer for request " << want;
    ASSERT_EQ(r->id(), want);
    const int round = static_cast<int>((want - 1) / 4);
    switch ((want - 1) % 4) {
      case 0:
      case 2:
        EXPECT_EQ(r->status().code(), pb::Status::OK) << r->ShortDebugString();
        break;
      case 1:
        ASSERT_EQ(r->status().code(), pb::Status::OK) << r->ShortDebugString();
        EXPECT_EQ(r->get().kv().value(), "v" + std::to_string(round));
        break;
      case 3:
        EXPECT_EQ(r->status().code(), pb::Status::NOT_FOUND) << r->ShortDebugString();
        break;
    }
  }
  auto b = c.call(begin(900));
  ASSERT_EQ(b.status().code(), pb::Status::OK);
  const std::uint64_t txn = b.begin().txn_id();
  ASSERT_EQ(c.call(put(901, "t", "1", txn)).status().code(), pb::Status::OK);
  auto committed = c.call(commit(902, txn));
  ASSERT_EQ(committed.status().code(), pb::Status::OK) << committed.ShortDebugString();
  auto read = c.call(get(903, "t"));
  ASSERT_EQ(read.status().code(), pb::Status::OK);
  EXPECT_EQ(read.get().kv().mod_revision(), committed.commit().revision());
}

// A client that closes its connection while its write waits for the log: the server stays
// healthy (the commit thread hands the connection's state back), and the write, acknowledged
// or not, is whole.
TEST(GroupCommit, ClosingWhileAWriteIsInFlightIsSafe) {
  TempDir dir("close");
  DurableServer s(dir.str(), {"--threads", "1"}, "close");
  ASSERT_NE(s.port(), 0) << s.output();
  for (int i = 0; i < 50; ++i) {
    Client c(s.port());
    auto b = c.call(begin(1));
    ASSERT_EQ(b.status().code(), pb::Status::OK);
    ASSERT_EQ(c.call(put(2, "x" + std::to_string(i), "1", b.begin().txn_id())).status().code(),
              pb::Status::OK);
    ASSERT_TRUE(c.send(commit(3, b.begin().txn_id())));
    ASSERT_TRUE(c.send(put(4, "y" + std::to_string(i), "1")));
    c.close();  // with the commit (and the put behind it) possibly on a commit thread
  }
  Client c(s.port());
  EXPECT_EQ(c.call(ping(1)).status().code(), pb::Status::OK);
  // Every closed connection's transaction is gone (closing is asynchronous: wait for it).
  EXPECT_TRUE(eventually([&] { return stat_u64(s.port(), "server_txns") == 0; }, 20s))
      << "transactions still open: " << stat_u64(s.port(), "server_txns");
  EXPECT_FALSE(s.proc().has_exited());
}

}  // namespace
}  // namespace kv::test
