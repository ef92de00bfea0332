// Response budgets and memory limits, tested as an outsider: a kovan-server child process,
// raw sockets, and the server's memory read from /proc/PID/status (VmHWM, the peak resident
// set, reset through /proc/PID/clear_refs before each measured step).
//
//   * A request that returns key-values copies at most what fits one response frame,
//     however large the range or however many reads it holds.
//   * A write whose returned key-values (txn reads, prev_kvs) would not fit a frame is
//     refused with RESOURCE_EXHAUSTED and nothing applied; an OK answer is complete.
//   * --max-memory: puts are refused above it while reads and deletes are served;
//     --max-txn-bytes caps one transaction's buffered writes.
//
// The binary is KOVAN_SERVER_BIN, or $KOVAN_TEST_SERVER_BIN when set (to run these tests
// against another build of the server).
#include <gtest/gtest.h>

#include <cstdio>

#include "server/config.hpp"
#include "server_process.hpp"

namespace kv::test {
namespace {

constexpr std::size_t kMiB = 1 << 20;

// A kovan-server child process on 127.0.0.1, any free port.
class ServerProcess : public kv::test::ServerProcess {
 public:
  explicit ServerProcess(std::vector<std::string> args)
      : kv::test::ServerProcess(with_listen(std::move(args)), "budget"),
        port_(wait_for_port(20s)) {}
  [[nodiscard]] std::uint16_t port() const { return port_; }
  // A field of /proc/PID/status in bytes ("VmHWM", "VmRSS"); 0 if unreadable.
  [[nodiscard]] std::uint64_t status_bytes(const std::string& field) const {
    return status_kib(field) * 1024;
  }

 private:
  static std::vector<std::string> with_listen(std::vector<std::string> args) {
    args.insert(args.begin(), {"--listen", "127.0.0.1:0"});
    return args;
  }
  std::uint16_t port_;
};

// Request builders beyond test_client.hpp.
pb::Request scan_prefix(std::uint64_t id, std::string prefix, std::uint64_t limit = 0,
                        bool reverse = false) {
  pb::Request r;
  r.set_id(id);
  auto* s = r.mutable_scan();
  s->set_start(std::move(prefix));
  s->set_prefix(true);
  s->set_limit(limit);
  s->set_reverse(reverse);
  return r;
}
pb::Request count_prefix(std::uint64_t id, std::string prefix) {
  pb::Request r = scan_prefix(id, std::move(prefix));
  r.mutable_scan()->set_count_only(true);
  return r;
}
pb::Request delete_prefix(std::uint64_t id, std::string prefix, bool prev_kv) {
  pb::Request r;
  r.set_id(id);
  auto* d = r.mutable_delete_range();
  d->set_start(std::move(prefix));
  d->set_prefix(true);
  d->set_prev_kv(prev_kv);
  return r;
}
// txn{ put marker=1; get `key` x gets }
pb::Request marker_and_gets(std::uint64_t id, const std::string& marker, const std::string& key,
                            int gets) {
  pb::Request r;
  r.set_id(id);
  auto* p = r.mutable_txn()->add_success()->mutable_put();
  p->set_key(marker);
  p->set_value("1");
  for (int i = 0; i < gets; ++i) r.mutable_txn()->add_success()->mutable_get()->set_key(key);
  return r;
}

std::string key_of(std::string_view prefix, int i) {
  char buf[16];
  std::snprintf(buf, sizeof buf, "%05d", i);
  return std::string(prefix) + buf;
}

// Stores n values of `bytes` bytes under prefix (pipelined 8 at a time).
void store(Client& c, std::string_view prefix, int n, std::size_t bytes) {
  const std::string v(bytes, 'v');
  for (int i = 0; i < n; i += 8) {
    std::vector<pb::Request> batch;
    for (int j = i; j < std::min(n, i + 8); ++j) batch.push_back(put(j + 1, key_of(prefix, j), v));
    ASSERT_TRUE(c.send_all(batch));
    for (std::size_t j = 0; j < batch.size(); ++j) {
      auto r = c.recv(30s);
      ASSERT_TRUE(r.has_value());
      ASSERT_EQ(r->status().code(), pb::Status::OK) << r->status().message();
    }
  }
}

// ------------------------------------------------------------------ flags

server::ParseOutcome parse(std::vector<const char*> args) {
  args.insert(args.begin(), "kovan-server");
  return server::parse_command_line(static_cast<int>(args.size()), args.data());
}

TEST(MemoryFlags, DefaultsParseAndReachTheEngine) {
  server::ParseOutcome d = parse({});
  ASSERT_EQ(d.action, server::ParseOutcome::Action::kRun);
  EXPECT_EQ(d.config.max_memory, 0u);
  EXPECT_EQ(d.config.max_txn_bytes, std::uint64_t{64} << 20);
  EXPECT_NE(d.config.describe().find("max-memory=off"), std::string::npos);

  server::ParseOutcome o = parse({"--max-memory", "1GiB", "--max-txn-bytes", "8MiB"});
  ASSERT_EQ(o.action, server::ParseOutcome::Action::kRun) << o.output;
  EXPECT_EQ(o.config.max_memory, std::uint64_t{1} << 30);
  EXPECT_EQ(o.config.max_txn_bytes, std::uint64_t{8} << 20);
  const storage::Options e = o.config.engine_options();
  EXPECT_EQ(e.max_memory_bytes, std::uint64_t{1} << 30);
  EXPECT_EQ(e.max_txn_bytes, std::uint64_t{8} << 20);

  server::ParseOutcome bad = parse({"--max-memory", "lots"});
  EXPECT_EQ(bad.action, server::ParseOutcome::Action::kExit);
  EXPECT_EQ(bad.exit_code, 2);
  EXPECT_NE(bad.output.find("--max-memory"), std::string::npos) << bad.output;
}

// ------------------------------------------------------------------ reads within a frame

TEST(ResponseBudget, TxnOfManyGetsOfABigValueCopiesOnlyAFrame) {
  ServerProcess srv({"--threads", "1"});
  ASSERT_NE(srv.port(), 0) << srv.output();
  Client c(srv.port());
  ASSERT_EQ(c.call(put(1, "big", std::string(kMiB, 'b'))).status().code(), pb::Status::OK);
  ASSERT_TRUE(srv.reset_peak());
  const std::uint64_t base = srv.status_bytes("VmRSS");
  // A 2 KB request that reads 256 MiB.
  pb::Request r = marker_and_gets(2, "marker", "big", 256);
  pb::Response resp = c.call(r);
  EXPECT_EQ(resp.status().code(), pb::Status::RESOURCE_EXHAUSTED);
  EXPECT_NE(resp.status().message().find("nothing was applied"), std::string::npos)
      << resp.status().message();
  const std::uint64_t grew = srv.status_bytes("VmHWM") - base;
  std::printf("peak RSS above the base: %llu MiB\n", static_cast<unsigned long long>(grew / kMiB));
  if (kRssIsMeaningful) {
    EXPECT_LT(grew, 64 * kMiB) << "peak RSS grew by " << grew / kMiB << " MiB";
  }
  EXPECT_EQ(c.call(get(3, "marker")).status().code(), pb::Status::NOT_FOUND);
}

TEST(ResponseBudget, ScansOfALargeRangeCopyOnlyWhatFitsAFrame) {
  ServerProcess srv({"--threads", "1"});
  ASSERT_NE(srv.port(), 0) << srv.output();
  Client c(srv.port());
  constexpr int kKeys = 128;  // 128 MiB under "r/"
  store(c, "r/", kKeys, kMiB);
  ASSERT_TRUE(srv.reset_peak());
  const std::uint64_t base = srv.status_bytes("VmRSS");
  for (int round = 0; round < 4; ++round) {
    for (bool reverse : {false, true}) {
      pb::Response resp = c.call(scan_prefix(10, "r/", 0, reverse));
      ASSERT_EQ(resp.status().code(), pb::Status::OK) << resp.status().message();
      EXPECT_EQ(resp.scan().kvs_size(), 3);  // 3 x 1 MiB fit a 4 MiB frame
      EXPECT_TRUE(resp.scan().more());
      EXPECT_EQ(resp.scan().count(), static_cast<std::uint64_t>(kKeys));
      EXPECT_EQ(resp.scan().kvs(0).key(), key_of("r/", reverse ? kKeys - 1 : 0));
    }
    pb::Response limited = c.call(scan_prefix(11, "r/", 2));
    ASSERT_EQ(limited.status().code(), pb::Status::OK);
    EXPECT_EQ(limited.scan().kvs_size(), 2);
    EXPECT_EQ(limited.scan().count(), static_cast<std::uint64_t>(kKeys));
    pb::Request t;
    t.set_id(12);
    auto* s = t.mutable_txn()->add_success()->mutable_scan();
    s->set_start("r/");
    s->set_prefix(true);
    pb::Response tr = c.call(t);
    ASSERT_EQ(tr.status().code(), pb::Status::OK) << tr.status().message();
    EXPECT_EQ(tr.txn().results(0).scan().kvs_size(), 3);
    EXPECT_TRUE(tr.txn().results(0).scan().more());
    EXPECT_EQ(tr.txn().results(0).scan().count(), static_cast<std::uint64_t>(kKeys));
    // In an interactive transaction.
    pb::Response b = c.call(begin(13));
    ASSERT_EQ(b.status().code(), pb::Status::OK);
    pb::Request is = scan_prefix(14, "r/");
    is.mutable_scan()->set_txn_id(b.begin().txn_id());
    pb::Response ir = c.call(is);
    ASSERT_EQ(ir.status().code(), pb::Status::OK) << ir.status().message();
    EXPECT_EQ(ir.scan().kvs_size(), 3);
    EXPECT_TRUE(ir.scan().more());
    EXPECT_EQ(ir.scan().count(), static_cast<std::uint64_t>(kKeys));
    ASSERT_EQ(c.call(abort_txn(15, b.begin().txn_id())).status().code(), pb::Status::OK);
  }
  const std::uint64_t grew = srv.status_bytes("VmHWM") - base;
  std::printf("peak RSS above the base: %llu MiB\n", static_cast<unsigned long long>(grew / kMiB));
  if (kRssIsMeaningful) {
    EXPECT_LT(grew, 64 * kMiB) << "peak RSS grew by " << grew / kMiB << " MiB";
  }
}

// ------------------------------------------------------------------ no error after a commit

TEST(ResponseBudget, WritesWhoseResultsDoNotFitAreRefusedWithNothingApplied) {
  ServerProcess srv({"--threads", "1"});
  ASSERT_NE(srv.port(), 0) << srv.output();
  Client c(srv.port());
  ASSERT_EQ(c.call(put(1, "big", std::string(kMiB, 'b'))).status().code(), pb::Status::OK);
  store(c, "d/", 5, kMiB);

  // txn{put marker; get big x5}: 5 MiB of reads cannot come back in a 4 MiB frame.
  pb::Response resp = c.call(marker_and_gets(2, "marker", "big", 5));
  EXPECT_EQ(resp.status().code(), pb::Status::RESOURCE_EXHAUSTED);
  EXPECT_EQ(c.call(get(3, "marker")).status().code(), pb::Status::NOT_FOUND)
      << "the put of a refused txn was applied";

  // delete_range{prev_kv} over 5 x 1 MiB, one-shot and inside a txn.
  resp = c.call(delete_prefix(4, "d/", true));
  EXPECT_EQ(resp.status().code(), pb::Status::RESOURCE_EXHAUSTED);
  EXPECT_EQ(c.call(count_prefix(5, "d/")).scan().count(), 5u) << "a refused delete was applied";
  pb::Request t;
  t.set_id(6);
  *t.mutable_txn()->add_success()->mutable_delete_range() =
      delete_prefix(0, "d/", true).delete_range();
  resp = c.call(t);
  EXPECT_EQ(resp.status().code(), pb::Status::RESOURCE_EXHAUSTED);
  EXPECT_EQ(c.call(count_prefix(7, "d/")).scan().count(), 5u) << "a refused txn was applied";

  // Without prev_kv the same delete is served.
  resp = c.call(delete_prefix(8, "d/", false));
  ASSERT_EQ(resp.status().code(), pb::Status::OK);
  EXPECT_EQ(resp.delete_range().deleted(), 5u);

  // Every size: an OK answer carries every read, a refusal applied nothing.
  for (int gets = 1; gets <= 5; ++gets) {
    const std::string marker = "m" + std::to_string(gets);
    resp = c.call(marker_and_gets(100 + gets, marker, "big", gets));
    const bool applied = c.call(get(200 + gets, marker)).status().code() == pb::Status::OK;
    if (resp.status().code() == pb::Status::OK) {
      EXPECT_TRUE(applied) << gets;
      ASSERT_EQ(resp.txn().results_size(), gets + 1);
      for (int i = 1; i <= gets; ++i) {
        EXPECT_EQ(resp.txn().results(i).get().kv().value().size(), kMiB) << gets;
      }
    } else {
      EXPECT_EQ(resp.status().code(), pb::Status::RESOURCE_EXHAUSTED) << gets;
      EXPECT_FALSE(applied) << gets << ": refused with RESOURCE_EXHAUSTED but applied";
    }
  }
}

TEST(ResponseBudget, NearTheFrameLimitAnOkAnswerIsCompleteAndARefusalAppliedNothing) {
  // A small frame limit, and values of every size around what fits: the response budget
  // must decide before the commit, so the server's last-resort "response would exceed"
  // reply never follows a write.
  ServerProcess srv({"--threads", "1", "--max-frame-bytes", "4096", "--max-key-bytes", "1024",
                     "--max-value-bytes", "3900"});
  ASSERT_NE(srv.port(), 0) << srv.output();
  Client c(srv.port());
  std::uint64_t id = 1;
  int ok = 0;
  int refused = 0;
  for (std::size_t size = 1000; size <= 3900; size += 97) {
    ASSERT_EQ(c.call(put(id++, "v", std::string(size, 'x'))).status().code(), pb::Status::OK);
    for (int gets = 1; gets <= 3; ++gets) {
      const std::string marker = "m" + std::to_string(size) + "-" + std::to_string(gets);
      pb::Response resp = c.call(marker_and_gets(id++, marker, "v", gets));
      const bool applied = c.call(get(id++, marker)).status().code() == pb::Status::OK;
      if (resp.status().code() == pb::Status::OK) {
        ++ok;
        EXPECT_TRUE(applied);
        ASSERT_EQ(resp.txn().results_size(), gets + 1);
        for (int i = 1; i <= gets; ++i) {
          EXPECT_EQ(resp.txn().results(i).get().kv().value().size(), size);
        }
      } else {
        ++refused;
        EXPECT_EQ(resp.status().code(), pb::Status::RESOURCE_EXHAUSTED);
        EXPECT_FALSE(applied) << size << " x " << gets
                              << ": refused but applied: " << resp.status().message();
      }
      // delete_range{prev_kv} of one key: the same rule.
      ASSERT_EQ(c.call(put(id++, "w" + marker, std::string(size, 'w'))).status().code(),
                pb::Status::OK);
      pb::Response d = c.call(delete_prefix(id++, "w" + marker, true));
      const bool deleted = c.call(get(id++, "w" + marker)).status().code() == pb::Status::NOT_FOUND;
      if (d.status().code() == pb::Status::OK) {
        EXPECT_TRUE(deleted);
        ASSERT_EQ(d.delete_range().prev_kvs_size(), 1);
      } else {
        EXPECT_EQ(d.status().code(), pb::Status::RESOURCE_EXHAUSTED);
        EXPECT_FALSE(deleted) << size << ": refused but deleted";
      }
    }
  }
  EXPECT_GT(ok, 0);
  EXPECT_GT(refused, 0);
}

TEST(ResponseBudget, TinyFramesStillServeSmallTransactions) {
  // Frames of 1 KiB or less keep half of the frame for the envelope.
  ServerProcess srv({"--threads", "1", "--max-frame-bytes", "512", "--max-key-bytes", "64",
                     "--max-value-bytes", "200"});
  ASSERT_NE(srv.port(), 0) << srv.output();
  Client c(srv.port());
  pb::Response r = c.call(marker_and_gets(1, "a", "a", 1));
  ASSERT_EQ(r.status().code(), pb::Status::OK) << r.status().message();
  EXPECT_EQ(r.txn().results(1).get().kv().value(), "1");
  ASSERT_EQ(c.call(put(2, "b", std::string(200, 'b'))).status().code(), pb::Status::OK);
  pb::Response s = c.call(scan_prefix(3, ""));
  ASSERT_EQ(s.status().code(), pb::Status::OK);
  EXPECT_EQ(s.scan().kvs_size(), 1);  // "a" fits; "b" with its 200 bytes does not
  EXPECT_TRUE(s.scan().more());
  EXPECT_EQ(s.scan().count(), 2u);
}

// ------------------------------------------------------------------ memory limits

TEST(MemoryLimit, DistinctPutsStopAtTheLimitWhileReadsAndDeletesAreServed) {
  ServerProcess srv({"--threads", "2", "--max-memory", "256MiB"});
  ASSERT_NE(srv.port(), 0) << srv.output();
  Client c(srv.port());
  const std::string v(kMiB, 'v');
  std::vector<std::string> accepted;
  int refused = 0;
  std::string refusal;
  constexpr int kPuts = 1500;
  for (int i = 0; i < kPuts; i += 8) {
    std::vector<pb::Request> batch;
    for (int j = i; j < std::min(kPuts, i + 8); ++j) {
      batch.push_back(put(static_cast<std::uint64_t>(j + 1), key_of("p/", j), v));
    }
    ASSERT_TRUE(c.send_all(batch));
    for (std::size_t j = 0; j < batch.size(); ++j) {
      auto r = c.recv(30s);
      ASSERT_TRUE(r.has_value());
      if (r->status().code() == pb::Status::OK) {
        accepted.push_back(key_of("p/", static_cast<int>(r->id() - 1)));
      } else {
        ASSERT_EQ(r->status().code(), pb::Status::RESOURCE_EXHAUSTED) << r->status().message();
        ++refused;
        refusal = r->status().message();
      }
    }
  }
  EXPECT_GT(accepted.size(), 200u);
  EXPECT_LE(accepted.size(), 256u);
  EXPECT_EQ(refused, kPuts - static_cast<int>(accepted.size()));
  EXPECT_NE(refusal.find("memory limit"), std::string::npos) << refusal;
  const std::uint64_t peak = srv.status_bytes("VmHWM");
  std::printf("accepted %zu of %d puts; peak RSS %llu MiB\n", accepted.size(), kPuts,
              static_cast<unsigned long long>(peak / kMiB));
  if (kRssIsMeaningful) {
    EXPECT_LT(peak, 512 * kMiB) << "peak RSS " << peak / kMiB << " MiB with --max-memory 256MiB";
  }

  // Reads are served; so are deletes, and they make room for new puts.
  ASSERT_FALSE(accepted.empty());
  pb::Response g = c.call(get(10'000, accepted.front()));
  ASSERT_EQ(g.status().code(), pb::Status::OK);
  EXPECT_EQ(g.get().kv().value().size(), kMiB);
  EXPECT_EQ(c.call(count_prefix(10'001, "p/")).scan().count(), accepted.size());
  EXPECT_EQ(c.call(put(10'002, "new", v)).status().code(), pb::Status::RESOURCE_EXHAUSTED);
  for (int i = 0; i < 16; ++i) {
    pb::Response d = c.call(del(10'100 + i, accepted[i]));
    ASSERT_EQ(d.status().code(), pb::Status::OK);
    EXPECT_EQ(d.del().deleted(), 1u);
  }
  EXPECT_EQ(c.call(put(10'200, "new", v)).status().code(), pb::Status::OK);
}

TEST(MemoryLimit, OneTransactionBuffersAtMostMaxTxnBytes) {
  // The default cap (64 MiB) without any flag.
  ServerProcess srv({"--threads", "1", "--txn-timeout", "120s"});
  ASSERT_NE(srv.port(), 0) << srv.output();
  Client c(srv.port());
  pb::Response b = c.call(begin(1));
  ASSERT_EQ(b.status().code(), pb::Status::OK);
  const std::uint64_t txn = b.begin().txn_id();
  const std::string v(kMiB, 't');
  int buffered = 0;
  std::string refusal;
  for (int i = 0; i < 70; ++i) {
    pb::Response r = c.call(put(2 + i, key_of("t/", i), v, txn));
    if (r.status().code() == pb::Status::OK) {
      ++buffered;
    } else {
      EXPECT_EQ(r.status().code(), pb::Status::RESOURCE_EXHAUSTED);
      refusal = r.status().message();
    }
  }
  EXPECT_EQ(buffered, 63);  // 64 MiB less the per-entry allowance
  EXPECT_NE(refusal.find("per transaction"), std::string::npos) << refusal;
  // The transaction lives on with what it buffered.
  pb::Response cm = c.call(commit(100, txn));
  ASSERT_EQ(cm.status().code(), pb::Status::OK) << cm.status().message();
  EXPECT_EQ(c.call(count_prefix(101, "t/")).scan().count(), 63u);

  // A smaller cap from the flag.
  ServerProcess small({"--threads", "1", "--txn-timeout", "120s", "--max-txn-bytes", "4MiB"});
  ASSERT_NE(small.port(), 0) << small.output();
  Client c2(small.port());
  b = c2.call(begin(1));
  const std::uint64_t txn2 = b.begin().txn_id();
  buffered = 0;
  for (int i = 0; i < 8; ++i) {
    if (c2.call(put(2 + i, key_of("t/", i), v, txn2)).status().code() == pb::Status::OK) ++buffered;
  }
  EXPECT_EQ(buffered, 3);
}

}  // namespace
}  // namespace kv::test
