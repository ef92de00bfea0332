// Every operation of the protocol against an in-process server over loopback, pipelining,
// and interactive transactions.
#include <gtest/gtest.h>

#include "test_client.hpp"

namespace kv::test {
namespace {

class ServerOps : public ::testing::Test {
 protected:
  InProcessServer srv;
  Client c{srv.port()};
};

TEST_F(ServerOps, PingEchoesPayloadAndId) {
  ASSERT_TRUE(c.connected());
  pb::Response r = c.call(ping(42, "hello"));
  EXPECT_EQ(r.id(), 42u);
  EXPECT_EQ(r.status().code(), pb::Status::OK);
  ASSERT_TRUE(r.has_ping());
  EXPECT_EQ(r.ping().payload(), "hello");
  EXPECT_TRUE(r.has_header());
}

TEST_F(ServerOps, PutGetDeleteWithMetadata) {
  pb::Response r = c.call(put(1, "k", "v1"));
  ASSERT_EQ(r.status().code(), pb::Status::OK);
  ASSERT_TRUE(r.has_put());
  EXPECT_FALSE(r.put().has_prev_kv());
  const std::uint64_t rev1 = r.header().revision();
  EXPECT_GT(rev1, 0u);

  r = c.call(put(2, "k", "v2", 0, /*prev_kv=*/true));
  ASSERT_EQ(r.status().code(), pb::Status::OK);
  ASSERT_TRUE(r.put().has_prev_kv());
  EXPECT_EQ(r.put().prev_kv().value(), "v1");
  const std::uint64_t rev2 = r.header().revision();
  EXPECT_GT(rev2, rev1);

  r = c.call(get(3, "k"));
  ASSERT_EQ(r.status().code(), pb::Status::OK);
  const pb::KeyValue& kv = r.get().kv();
  EXPECT_EQ(kv.key(), "k");
  EXPECT_EQ(kv.value(), "v2");
  EXPECT_EQ(kv.create_revision(), rev1);
  EXPECT_EQ(kv.mod_revision(), rev2);
  EXPECT_EQ(kv.version(), 2u);
  EXPECT_GE(r.header().revision(), rev2);

  r = c.call(get(4, "missing"));
  EXPECT_EQ(r.id(), 4u);
  EXPECT_EQ(r.status().code(), pb::Status::NOT_FOUND);
  EXPECT_TRUE(r.has_get());
  EXPECT_FALSE(r.get().has_kv());

  r = c.call(del(5, "k"));
  ASSERT_EQ(r.status().code(), pb::Status::OK);
  EXPECT_EQ(r.del().deleted(), 1u);
  r = c.call(del(6, "k"));
  ASSERT_EQ(r.status().code(), pb::Status::OK);
  EXPECT_EQ(r.del().deleted(), 0u);
  EXPECT_EQ(c.call(get(7, "k")).status().code(), pb::Status::NOT_FOUND);

  // Recreated: version restarts at 1 and create_revision moves.
  r = c.call(put(8, "k", "v3"));
  const std::uint64_t rev3 = r.header().revision();
  r = c.call(get(9, "k"));
  EXPECT_EQ(r.get().kv().version(), 1u);
  EXPECT_EQ(r.get().kv().create_revision(), rev3);
}

TEST_F(ServerOps, DeleteWithPrevKv) {
  c.call(put(1, "k", "old"));
  pb::Request r;
  r.set_id(2);
  r.mutable_del()->set_key("k");
  r.mutable_del()->set_prev_kv(true);
  pb::Response resp = c.call(r);
  ASSERT_EQ(resp.status().code(), pb::Status::OK);
  EXPECT_EQ(resp.del().deleted(), 1u);
  EXPECT_EQ(resp.del().prev_kv().value(), "old");
}

TEST_F(ServerOps, ScanOptions) {
  for (const char* k : {"a", "b1", "b2", "b3", "c"}) c.call(put(1, k, std::string("v") + k));
  pb::Request r;
  r.set_id(10);
  auto* s = r.mutable_scan();
  s->set_start("b");
  s->set_prefix(true);
  pb::Response resp = c.call(r);
  ASSERT_EQ(resp.status().code(), pb::Status::OK);
  ASSERT_EQ(resp.scan().kvs_size(), 3);
  EXPECT_EQ(resp.scan().kvs(0).key(), "b1");
  EXPECT_EQ(resp.scan().kvs(2).key(), "b3");
  EXPECT_EQ(resp.scan().kvs(1).value(), "vb2");
  EXPECT_EQ(resp.scan().count(), 3u);
  EXPECT_FALSE(resp.scan().more());

  s->set_limit(2);
  s->set_reverse(true);
  s->set_keys_only(true);
  resp = c.call(r);
  ASSERT_EQ(resp.scan().kvs_size(), 2);
  EXPECT_EQ(resp.scan().kvs(0).key(), "b3");
  EXPECT_EQ(resp.scan().kvs(1).key(), "b2");
  EXPECT_TRUE(resp.scan().kvs(0).value().empty());
  EXPECT_TRUE(resp.scan().more());

  // [a, c) without prefix; count_only.
  s->Clear();
  s->set_start("a");
  s->set_end("c");
  s->set_count_only(true);
  resp = c.call(r);
  EXPECT_EQ(resp.scan().kvs_size(), 0);
  EXPECT_EQ(resp.scan().count(), 4u);

  // Everything: empty start, empty end.
  s->Clear();
  resp = c.call(r);
  EXPECT_EQ(resp.scan().kvs_size(), 5);
}

TEST_F(ServerOps, DeleteRangeAndPrefix) {
  for (const char* k : {"a", "b1", "b2", "c"}) c.call(put(1, k, "v"));
  pb::Request r;
  r.set_id(2);
  r.mutable_delete_range()->set_start("b");
  r.mutable_delete_range()->set_prefix(true);
  r.mutable_delete_range()->set_prev_kv(true);
  pb::Response resp = c.call(r);
  ASSERT_EQ(resp.status().code(), pb::Status::OK);
  EXPECT_EQ(resp.delete_range().deleted(), 2u);
  ASSERT_EQ(resp.delete_range().prev_kvs_size(), 2);
  EXPECT_EQ(resp.delete_range().prev_kvs(0).key(), "b1");
  r.mutable_delete_range()->Clear();
  r.mutable_delete_range()->set_start("a");
  r.mutable_delete_range()->set_end("c");
  resp = c.call(r);
  EXPECT_EQ(resp.delete_range().deleted(), 1u);
  EXPECT_EQ(c.call(get(3, "a")).status().code(), pb::Status::NOT_FOUND);
  EXPECT_EQ(c.call(get(4, "c")).status().code(), pb::Status::OK);
}

TEST_F(ServerOps, ConditionalTransaction) {
  const std::uint64_t rev = c.call(put(1, "k", "v")).header().revision();
  pb::Request r;
  r.set_id(2);
  auto* t = r.mutable_txn();
  auto* cmp = t->add_compare();
  cmp->set_key("k");
  cmp->set_op(pb::Compare::EQUAL);
  cmp->set_mod_revision(rev);
  t->add_success()->mutable_put()->set_key("k");
  t->mutable_success(0)->mutable_put()->set_value("won");
  t->add_success()->mutable_get()->set_key("k");
  t->add_failure()->mutable_get()->set_key("k");
  auto* sc = t->add_success()->mutable_scan();
  sc->set_prefix(true);

  pb::Response resp = c.call(r);
  ASSERT_EQ(resp.status().code(), pb::Status::OK);
  ASSERT_TRUE(resp.txn().succeeded());
  ASSERT_EQ(resp.txn().results_size(), 3);
  EXPECT_TRUE(resp.txn().results(0).has_put());
  EXPECT_EQ(resp.txn().results(1).get().kv().value(), "won");  // sees the put before it
  EXPECT_EQ(resp.txn().results(2).scan().kvs_size(), 1);
  EXPECT_GT(resp.header().revision(), rev);

  // Same compare again: mod_revision changed, so the failure branch runs.
  resp = c.call(r);
  ASSERT_EQ(resp.status().code(), pb::Status::OK);
  EXPECT_FALSE(resp.txn().succeeded());
  ASSERT_EQ(resp.txn().results_size(), 1);
  EXPECT_EQ(resp.txn().results(0).get().kv().value(), "won");

  // A get of a missing key inside the transaction reports NOT_FOUND per op.
  pb::Request m;
  m.set_id(3);
  m.mutable_txn()->add_success()->mutable_get()->set_key("absent");
  resp = c.call(m);
  ASSERT_EQ(resp.status().code(), pb::Status::OK);
  ASSERT_EQ(resp.txn().results_size(), 1);
  EXPECT_EQ(resp.txn().results(0).code(), pb::Status::NOT_FOUND);

  // Value compare against a missing key is false.
  pb::Request v;
  v.set_id(4);
  auto* vc = v.mutable_txn()->add_compare();
  vc->set_key("absent");
  vc->set_op(pb::Compare::NOT_EQUAL);
  vc->set_value("x");
  resp = c.call(v);
  EXPECT_FALSE(resp.txn().succeeded());
}

TEST_F(ServerOps, InteractiveTransactionReadsItsWritesAndCommits) {
  c.call(put(1, "k", "before"));
  pb::Response b = c.call(begin(2));
  ASSERT_EQ(b.status().code(), pb::Status::OK);
  const std::uint64_t txn = b.begin().txn_id();
  ASSERT_NE(txn, 0u);
  const std::uint64_t snap = b.header().revision();

  EXPECT_EQ(c.call(put(3, "k", "inside", txn)).status().code(), pb::Status::OK);
  EXPECT_EQ(c.call(get(4, "k", txn)).get().kv().value(), "inside");
  // Not visible outside until commit.
  Client other(srv.port());
  EXPECT_EQ(other.call(get(5, "k")).get().kv().value(), "before");

  EXPECT_EQ(c.call(del(6, "gone", txn)).status().code(), pb::Status::OK);
  pb::Request s;
  s.set_id(7);
  s.mutable_scan()->set_txn_id(txn);
  pb::Response sr = c.call(s);
  ASSERT_EQ(sr.status().code(), pb::Status::OK);
  EXPECT_EQ(sr.header().revision(), snap);

  pb::Response cm = c.call(commit(8, txn));
  ASSERT_EQ(cm.status().code(), pb::Status::OK);
  EXPECT_GT(cm.commit().revision(), snap);
  EXPECT_EQ(cm.header().revision(), cm.commit().revision());
  EXPECT_EQ(other.call(get(9, "k")).get().kv().value(), "inside");
  // The id is finished now.
  EXPECT_EQ(c.call(get(10, "k", txn)).status().code(), pb::Status::TXN_NOT_FOUND);
  EXPECT_EQ(c.call(commit(11, txn)).status().code(), pb::Status::TXN_NOT_FOUND);
}

TEST_F(ServerOps, SnapshotIsStableAndSerializableConflictIsReported) {
  c.call(put(1, "x", "0"));
  const std::uint64_t t1 = c.call(begin(2)).begin().txn_id();
  EXPECT_EQ(c.call(get(3, "x", t1)).get().kv().value(), "0");
  Client other(srv.port());
  ASSERT_EQ(other.call(put(4, "x", "1")).status().code(), pb::Status::OK);
  // Still the snapshot's value.
  EXPECT_EQ(c.call(get(5, "x", t1)).get().kv().value(), "0");
  EXPECT_EQ(c.call(put(6, "y", "from-t1", t1)).status().code(), pb::Status::OK);
  // t1 read x, which changed since its snapshot: serializable commit fails.
  pb::Response r = c.call(commit(7, t1));
  EXPECT_EQ(r.status().code(), pb::Status::CONFLICT);
  EXPECT_FALSE(r.status().message().empty());
  EXPECT_EQ(other.call(get(8, "y")).status().code(), pb::Status::NOT_FOUND);
}

TEST_F(ServerOps, AbortDiscardsWrites) {
  const std::uint64_t t = c.call(begin(1, pb::SNAPSHOT)).begin().txn_id();
  c.call(put(2, "k", "v", t));
  pb::Response r = c.call(abort_txn(3, t));
  EXPECT_EQ(r.status().code(), pb::Status::OK);
  EXPECT_TRUE(r.has_abort());
  EXPECT_EQ(c.call(get(4, "k")).status().code(), pb::Status::NOT_FOUND);
  EXPECT_EQ(c.call(abort_txn(5, t)).status().code(), pb::Status::TXN_NOT_FOUND);
}

TEST_F(ServerOps, TransactionIdOfAnotherConnectionIsNotFound) {
  const std::uint64_t t = c.call(begin(1)).begin().txn_id();
  Client other(srv.port());
  EXPECT_EQ(other.call(get(2, "k", t)).status().code(), pb::Status::TXN_NOT_FOUND);
  EXPECT_EQ(other.call(put(3, "k", "v", t)).status().code(), pb::Status::TXN_NOT_FOUND);
  EXPECT_EQ(other.call(commit(4, t)).status().code(), pb::Status::TXN_NOT_FOUND);
  EXPECT_EQ(other.call(abort_txn(5, t)).status().code(), pb::Status::TXN_NOT_FOUND);
  // Still usable by its owner.
  EXPECT_EQ(c.call(put(6, "k", "v", t)).status().code(), pb::Status::OK);
  EXPECT_EQ(c.call(commit(7, t)).status().code(), pb::Status::OK);
}

TEST_F(ServerOps, StatsReportEngineAndServer) {
  c.call(put(1, "a", "1"));
  c.call(put(2, "b", "2"));
  const std::uint64_t t = c.call(begin(3)).begin().txn_id();
  ASSERT_NE(t, 0u);
  pb::Response r = c.call(stats(4));
  ASSERT_EQ(r.status().code(), pb::Status::OK);
  EXPECT_EQ(r.stats().keys(), 2u);
  EXPECT_EQ(r.stats().active_txns(), 1u);
  EXPECT_EQ(r.stats().server_txns(), 1u);
  EXPECT_EQ(r.stats().connections(), 1u);
  EXPECT_GE(r.stats().commits(), 2u);
  EXPECT_EQ(r.stats().requests_total(), 3u);  // the stats request counts once answered
  EXPECT_EQ(r.stats().revision(), r.header().revision());
}

TEST_F(ServerOps, FaultRequestIsRefusedWhenDisabled) {
  pb::Request r;
  r.set_id(1);
  r.mutable_fault()->set_stall_ms(1);
  pb::Response resp = c.call(r);
  EXPECT_EQ(resp.status().code(), pb::Status::INVALID_ARGUMENT);
  EXPECT_FALSE(resp.has_fault());
}

TEST(ServerFault, StallsInsideAGuardWhenEnabled) {
  auto cfg = InProcessServer::small_config();
  cfg.enable_fault_injection = true;
  InProcessServer srv(cfg);
  Client c(srv.port());
  pb::Request r;
  r.set_id(1);
  r.mutable_fault()->set_stall_ms(20);
  const auto t0 = std::chrono::steady_clock::now();
  pb::Response resp = c.call(r);
  EXPECT_EQ(resp.status().code(), pb::Status::OK);
  EXPECT_TRUE(resp.has_fault());
  EXPECT_GE(std::chrono::steady_clock::now() - t0, 20ms);
}

std::string hex_bytes(std::initializer_list<int> bytes) {
  std::string out;
  for (int b : bytes) out.push_back(static_cast<char>(b));
  return out;
}

// The byte-level example of docs/PROTOCOL.md section 7, verbatim.
TEST(ProtocolDoc, WorkedExampleBytesAreExact) {
  InProcessServer srv;  // fresh store: revision 1, the put commits at 2
  Client c(srv.port());
  const std::string requests =
      hex_bytes({0x00, 0x00, 0x00, 0x0a, 0x08, 0x01, 0x62, 0x06, 0x0a, 0x01, 0x6b, 0x12, 0x01,
                 0x76,                                                              // put k=v, id 1
                 0x00, 0x00, 0x00, 0x07, 0x08, 0x02, 0x5a, 0x03, 0x0a, 0x01, 0x6b,  // get k, id 2
                 0x00, 0x00, 0x00, 0x07, 0x08, 0x03, 0x5a, 0x03, 0x0a, 0x01, 0x78});  // get x
  const std::string expected = hex_bytes(
      {0x00, 0x00, 0x00, 0x0a, 0x08, 0x01, 0x12, 0x00, 0x1a, 0x02, 0x08, 0x02, 0x62, 0x00, 0x00,
       0x00, 0x00, 0x18, 0x08, 0x02, 0x12, 0x00, 0x1a, 0x02, 0x08, 0x02, 0x5a, 0x0e, 0x0a, 0x0c,
       0x0a, 0x01, 0x6b, 0x12, 0x01, 0x76, 0x18, 0x02, 0x20, 0x02, 0x28, 0x01, 0x00, 0x00, 0x00,
       0x0c, 0x08, 0x03, 0x12, 0x02, 0x08, 0x01, 0x1a, 0x02, 0x08, 0x02, 0x5a, 0x00});
  ASSERT_TRUE(c.send_raw(requests));
  std::string got(expected.size(), '\0');
  ASSERT_TRUE(c.read_exact(got.data(), got.size(), 5s));
  EXPECT_EQ(got, expected);
}

// Pipelined requests in one write: every response comes back, in request order.
class Pipelining : public ::testing::TestWithParam<int> {};

TEST_P(Pipelining, ResponsesComeBackInRequestOrder) {
  InProcessServer srv;
  Client c(srv.port());
  const int depth = GetParam();
  std::vector<pb::Request> batch;
  for (int i = 0; i < depth; ++i) {
    const std::string key = "key" + std::to_string(i % 7);
    // Interleave writes and reads of a few keys: each read must see the write before it.
    if (i % 2 == 0) {
      batch.push_back(put(static_cast<std::uint64_t>(i + 1), key, std::to_string(i)));
    } else {
      batch.push_back(get(static_cast<std::uint64_t>(i + 1), "key" + std::to_string((i - 1) % 7)));
    }
  }
  ASSERT_TRUE(c.send_all(batch));
  for (int i = 0; i < depth; ++i) {
    auto r = c.recv();
    ASSERT_TRUE(r.has_value()) << "response " << i;
    ASSERT_EQ(r->id(), static_cast<std::uint64_t>(i + 1));
    ASSERT_EQ(r->status().code(), pb::Status::OK);
    if (i % 2 == 1) {
      ASSERT_EQ(r->get().kv().value(), std::to_string(i - 1));
    }
  }
}

INSTANTIATE_TEST_SUITE_P(Depths, Pipelining, ::testing::Values(1, 2, 16, 100, 1000));

}  // namespace
}  // namespace kv::test
