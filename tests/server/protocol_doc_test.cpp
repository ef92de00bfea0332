// docs/PROTOCOL.md, checked point by point against a server on loopback through raw
// sockets: what the document promises about id-0 responses (error replies versus
// notices), header revisions on errors and conflicts, the metadata of a transaction's own
// writes, blind writers under SERIALIZABLE, INVALID_ARGUMENT for incomplete conditional
// transactions, a Request with two operations set, and refused connections.
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>

#include "server/auth.hpp"
#include "test_client.hpp"

namespace kv::test {
namespace {

std::string raw_frame(std::string_view payload) {
  std::string out;
  proto::append_frame(out, payload);
  return out;
}

std::uint64_t newest_revision(Client& c, std::uint64_t id) {
  return c.call(stats(id)).stats().revision();
}

// PROTOCOL.md 2.1 / 5: an unparsable frame is answered in its place in the response order
// with id 0 and INVALID_ARGUMENT; notices (id 0 too) never carry INVALID_ARGUMENT.
TEST(ProtocolDoc, IdZeroInvalidArgumentAnswersAnUnparsableFrameInItsPlace) {
  InProcessServer srv;
  Client c(srv.port());
  std::string bytes;
  proto::append_message(bytes, ping(1, "a"));
  bytes += raw_frame(std::string("\x5A\x10\x0A", 3));  // field 11 runs past the payload
  proto::append_message(bytes, ping(3, "c"));
  ASSERT_TRUE(c.send_raw(bytes));
  auto r1 = c.recv();
  auto r2 = c.recv();
  auto r3 = c.recv();
  ASSERT_TRUE(r1 && r2 && r3);
  EXPECT_EQ(r1->id(), 1u);
  EXPECT_EQ(r2->id(), 0u);
  EXPECT_EQ(r2->status().code(), pb::Status::INVALID_ARGUMENT);
  EXPECT_EQ(r2->result_case(), pb::Response::RESULT_NOT_SET);
  EXPECT_EQ(r3->id(), 3u);
  EXPECT_EQ(r3->ping().payload(), "c");
}

TEST(ProtocolDoc, NoticesCarryOtherCodesThanInvalidArgument) {
  auto cfg = InProcessServer::small_config();
  cfg.max_frame_bytes = 4096;
  cfg.max_connections = 1;
  auto srv = std::make_unique<InProcessServer>(cfg);
  {
    Client c(srv->port());
    ASSERT_TRUE(c.send_raw(std::string("\x00\x01\x00\x00", 4)));  // 65536 > 4096
    auto notice = c.recv();
    ASSERT_TRUE(notice.has_value());
    EXPECT_EQ(notice->id(), 0u);
    EXPECT_EQ(notice->status().code(), pb::Status::RESOURCE_EXHAUSTED);
    EXPECT_TRUE(c.closed_by_peer());
  }
  Client held(srv->port());
  ASSERT_EQ(held.call(ping(1)).status().code(), pb::Status::OK);
  {
    Client refused(srv->port());  // over --max-connections
    auto notice = refused.recv();
    ASSERT_TRUE(notice.has_value());
    EXPECT_EQ(notice->id(), 0u);
    EXPECT_EQ(notice->status().code(), pb::Status::RESOURCE_EXHAUSTED);
  }
  srv->server().shutdown();  // the held connection gets the shutdown notice
  auto notice = held.recv();
  ASSERT_TRUE(notice.has_value());
  EXPECT_EQ(notice->id(), 0u);
  EXPECT_EQ(notice->status().code(), pb::Status::UNAVAILABLE);
}

// PROTOCOL.md 5: after a notice the server executes nothing it has not answered before
// the notice. The requests before the oversized frame are answered first.
TEST(ProtocolDoc, NothingAfterAFrameSizeNoticeIsExecuted) {
  auto cfg = InProcessServer::small_config();
  cfg.max_frame_bytes = 4096;
  InProcessServer srv(cfg);
  Client c(srv.port());
  std::string bytes;
  proto::append_message(bytes, put(1, "before", "1"));
  bytes += std::string("\x00\x00\x20\x00", 4);  // 8192 bytes announced
  proto::append_message(bytes, put(2, "after", "1"));
  bytes += std::string(8192, 'x');
  ASSERT_TRUE(c.send_raw(bytes));
  auto r1 = c.recv();
  ASSERT_TRUE(r1.has_value());
  EXPECT_EQ(r1->id(), 1u);
  EXPECT_EQ(r1->status().code(), pb::Status::OK);
  auto notice = c.recv();
  ASSERT_TRUE(notice.has_value());
  EXPECT_EQ(notice->id(), 0u);
  EXPECT_EQ(notice->status().code(), pb::Status::RESOURCE_EXHAUSTED);
  EXPECT_TRUE(c.closed_by_peer());
  Client probe(srv.port());
  EXPECT_EQ(probe.call(get(3, "before")).status().code(), pb::Status::OK);
  EXPECT_EQ(probe.call(get(4, "after")).status().code(), pb::Status::NOT_FOUND);
}

// PROTOCOL.md 2.2: errors carry the newest visible revision, except the errors a
// transaction reports about itself from get/put/del/scan/abort (its snapshot revision).
TEST(ProtocolDoc, HeaderRevisionOfErrors) {
  auto cfg = InProcessServer::small_config();
  cfg.txn_timeout = 150ms;
  InProcessServer srv(cfg);
  Client c(srv.port());
  ASSERT_EQ(c.call(put(1, "a", "1")).status().code(), pb::Status::OK);
  pb::Response begun = c.call(begin(3));
  const std::uint64_t t = begun.begin().txn_id();
  const std::uint64_t snapshot = begun.header().revision();
  const std::uint64_t newest = c.call(put(4, "b", "2")).header().revision();
  ASSERT_GT(newest, snapshot);

  pb::Response invalid = c.call(put(5, "", "v"));  // rejected before touching the store
  EXPECT_EQ(invalid.status().code(), pb::Status::INVALID_ARGUMENT);
  EXPECT_EQ(invalid.header().revision(), newest);
  pb::Response unknown_txn = c.call(get(6, "a", 987654));
  EXPECT_EQ(unknown_txn.status().code(), pb::Status::TXN_NOT_FOUND);
  EXPECT_EQ(unknown_txn.header().revision(), newest);
  pb::Response in_txn_invalid = c.call(put(7, "", "v", t));
  EXPECT_EQ(in_txn_invalid.status().code(), pb::Status::INVALID_ARGUMENT);
  EXPECT_EQ(in_txn_invalid.header().revision(), newest);
  ASSERT_TRUE(c.send_raw(raw_frame(std::string("\x5A\x10\x0A", 3))));
  auto unparsable = c.recv();
  ASSERT_TRUE(unparsable.has_value());
  EXPECT_EQ(unparsable->header().revision(), newest);

  // The transaction expires; what it reports about itself carries its snapshot, except
  // commit, which carries the newest revision.
  Client observer(srv.port());
  ASSERT_TRUE(eventually([&] { return observer.call(stats(8)).stats().aborts_expired() >= 1; }));
  pb::Response expired_get = c.call(get(9, "a", t));
  EXPECT_EQ(expired_get.status().code(), pb::Status::TXN_EXPIRED);
  EXPECT_EQ(expired_get.header().revision(), snapshot);
  pb::Response expired_commit = c.call(commit(10, t));
  EXPECT_EQ(expired_commit.status().code(), pb::Status::TXN_EXPIRED);
  EXPECT_EQ(expired_commit.header().revision(), newest);
}

// PROTOCOL.md 3.9: a commit answered CONFLICT carries the newest visible revision.
TEST(ProtocolDoc, ConflictCarriesTheNewestRevision) {
  InProcessServer srv;
  Client c(srv.port());
  ASSERT_EQ(c.call(put(1, "k", "0")).status().code(), pb::Status::OK);
  const std::uint64_t t = c.call(begin(2)).begin().txn_id();
  ASSERT_EQ(c.call(get(3, "k", t)).status().code(), pb::Status::OK);
  const std::uint64_t other = c.call(put(4, "k", "1")).header().revision();
  ASSERT_EQ(c.call(put(5, "j", "x", t)).status().code(), pb::Status::OK);
  pb::Response r = c.call(commit(6, t));
  EXPECT_EQ(r.status().code(), pb::Status::CONFLICT);
  // Not the transaction's snapshot: the newest visible revision, which is the other
  // writer's commit or, when the failed commit's own revision was given up and became
  // visible as a gap, that one.
  EXPECT_GE(r.header().revision(), other);
  EXPECT_EQ(r.header().revision(), newest_revision(c, 7));
}

// PROTOCOL.md 3.8 / 3.9: a transaction's own writes read back with create_revision,
// mod_revision and version 0, interactive and conditional alike.
TEST(ProtocolDoc, OwnWritesHaveZeroMetadata) {
  InProcessServer srv;
  Client c(srv.port());
  ASSERT_EQ(c.call(put(1, "k", "old")).status().code(), pb::Status::OK);
  const std::uint64_t t = c.call(begin(2)).begin().txn_id();
  ASSERT_EQ(c.call(put(3, "k", "new", t)).status().code(), pb::Status::OK);
  pb::Response g = c.call(get(4, "k", t));
  ASSERT_EQ(g.status().code(), pb::Status::OK);
  EXPECT_EQ(g.get().kv().value(), "new");
  EXPECT_EQ(g.get().kv().create_revision(), 0u);
  EXPECT_EQ(g.get().kv().mod_revision(), 0u);
  EXPECT_EQ(g.get().kv().version(), 0u);
  pb::Request scan;
  scan.set_id(5);
  scan.mutable_scan()->set_start("k");
  scan.mutable_scan()->set_txn_id(t);
  pb::Response s = c.call(scan);
  ASSERT_EQ(s.scan().kvs_size(), 1);
  EXPECT_EQ(s.scan().kvs(0).mod_revision(), 0u);
  ASSERT_EQ(c.call(abort_txn(6, t)).status().code(), pb::Status::OK);

  pb::Request txn;
  txn.set_id(7);
  auto* put_op = txn.mutable_txn()->add_success()->mutable_put();
  put_op->set_key("k");
  put_op->set_value("cond");
  txn.mutable_txn()->add_success()->mutable_get()->set_key("k");
  pb::Response r = c.call(txn);
  ASSERT_EQ(r.status().code(), pb::Status::OK);
  ASSERT_EQ(r.txn().results_size(), 2);
  const pb::KeyValue& kv = r.txn().results(1).get().kv();
  EXPECT_EQ(kv.value(), "cond");
  EXPECT_EQ(kv.create_revision(), 0u);
  EXPECT_EQ(kv.mod_revision(), 0u);
  EXPECT_EQ(kv.version(), 0u);
  // Once committed the key has its real metadata.
  pb::Response after = c.call(get(8, "k"));
  EXPECT_EQ(after.get().kv().mod_revision(), r.header().revision());
  EXPECT_EQ(after.get().kv().version(), 2u);
}

// PROTOCOL.md 3.9: serializable validation checks reads; blind writes do not conflict,
// and the later commit's value is the one that stays.
TEST(ProtocolDoc, BlindWritersUnderSerializableBothCommit) {
  InProcessServer srv;
  Client c(srv.port());
  const std::uint64_t t1 = c.call(begin(1)).begin().txn_id();
  const std::uint64_t t2 = c.call(begin(2)).begin().txn_id();
  ASSERT_EQ(c.call(put(3, "k", "one", t1)).status().code(), pb::Status::OK);
  ASSERT_EQ(c.call(put(4, "k", "two", t2)).status().code(), pb::Status::OK);
  pb::Response c2 = c.call(commit(5, t2));
  pb::Response c1 = c.call(commit(6, t1));
  EXPECT_EQ(c2.status().code(), pb::Status::OK);
  EXPECT_EQ(c1.status().code(), pb::Status::OK);
  EXPECT_GT(c1.commit().revision(), c2.commit().revision());
  EXPECT_EQ(c.call(get(7, "k")).get().kv().value(), "one");
}

// PROTOCOL.md 3.8: a Compare without a target and a TxnOp without an operation make the
// whole request INVALID_ARGUMENT, and nothing runs.
TEST(ProtocolDoc, IncompleteCompareOrTxnOpIsInvalidArgument) {
  InProcessServer srv;
  Client c(srv.port());
  pb::Request no_target;
  no_target.set_id(1);
  no_target.mutable_txn()->add_compare()->set_key("k");
  auto* p = no_target.mutable_txn()->add_success()->mutable_put();
  p->set_key("written");
  p->set_value("v");
  pb::Response r1 = c.call(no_target);
  EXPECT_EQ(r1.id(), 1u);
  EXPECT_EQ(r1.status().code(), pb::Status::INVALID_ARGUMENT);

  pb::Request no_op;
  no_op.set_id(2);
  auto* q = no_op.mutable_txn()->add_success()->mutable_put();
  q->set_key("written");
  q->set_value("v");
  no_op.mutable_txn()->add_success();  // a TxnOp with nothing set
  pb::Response r2 = c.call(no_op);
  EXPECT_EQ(r2.id(), 2u);
  EXPECT_EQ(r2.status().code(), pb::Status::INVALID_ARGUMENT);
  EXPECT_EQ(c.call(get(3, "written")).status().code(), pb::Status::NOT_FOUND);
}

// PROTOCOL.md 2: with two members of Request.op on the wire, protobuf keeps the last one;
// the server executes that one and cannot tell that another was sent.
TEST(ProtocolDoc, RequestWithTwoOpsExecutesTheLastOnTheWire) {
  InProcessServer srv;
  Client c(srv.port());
  const std::string ping_then_get =
      ping(1, "p").SerializeAsString() + get(1, "absent").SerializeAsString();
  ASSERT_TRUE(c.send_raw(raw_frame(ping_then_get)));
  auto r = c.recv();
  ASSERT_TRUE(r.has_value());
  EXPECT_EQ(r->id(), 1u);
  EXPECT_EQ(r->result_case(), pb::Response::kGet);
  EXPECT_EQ(r->status().code(), pb::Status::NOT_FOUND);

  const std::string put_then_ping =
      put(2, "k", "v").SerializeAsString() + ping(2, "q").SerializeAsString();
  ASSERT_TRUE(c.send_raw(raw_frame(put_then_ping)));
  r = c.recv();
  ASSERT_TRUE(r.has_value());
  EXPECT_EQ(r->result_case(), pb::Response::kPing);
  EXPECT_EQ(r->ping().payload(), "q");
  EXPECT_EQ(c.call(get(3, "k")).status().code(), pb::Status::NOT_FOUND);  // never executed
}

// PROTOCOL.md 5: a connection over --max-connections gets its notice and end of stream at
// once; it does not count against the limit (nor in the `connections` counter) while the
// server drains it.
TEST(ProtocolDoc, RefusedConnectionDoesNotCountAgainstTheLimit) {
  auto cfg = InProcessServer::small_config();
  cfg.max_connections = 2;
  InProcessServer srv(cfg);
  Client a(srv.port());
  Client b(srv.port());
  ASSERT_EQ(a.call(ping(1)).status().code(), pb::Status::OK);
  ASSERT_EQ(b.call(ping(2)).status().code(), pb::Status::OK);
  Client refused(srv.port());
  auto notice = refused.recv();
  ASSERT_TRUE(notice.has_value());
  EXPECT_EQ(notice->status().code(), pb::Status::RESOURCE_EXHAUSTED);
  EXPECT_TRUE(refused.closed_by_peer(1s));  // end of stream right after the notice
  // `refused` stays open on this side; the server does not count it.
  EXPECT_EQ(a.call(stats(3)).stats().connections(), 2u);
  b.close();
  ASSERT_TRUE(eventually([&] { return a.call(stats(4)).stats().connections() == 1; }));
  Client c(srv.port());
  EXPECT_EQ(c.call(ping(5)).status().code(), pb::Status::OK);
}

// PROTOCOL.md 3.14 / 7: the worked AUTHENTICATE example, byte for byte, and the
// UNAUTHENTICATED answer to a request sent before it.
TEST(ProtocolDoc, AuthenticateWorkedExampleBytes) {
  const auto users = std::filesystem::temp_directory_path() /
                     ("kovan-protodoc-" + std::to_string(::getpid()) + ".users");
  {
    std::ofstream out(users);
    out << "app readwrite " << server::hash_password("pw", 1000) << "\n";
  }
  auto cfg = InProcessServer::small_config();
  cfg.users_file = users.string();
  InProcessServer srv(cfg);
  Client c(srv.port());
  auto hex = [](std::string_view h) {
    std::string out;
    for (std::size_t i = 0; i + 1 < h.size(); i += 3) {
      out.push_back(static_cast<char>(std::stoi(std::string(h.substr(i, 2)), nullptr, 16)));
    }
    return out;
  };
  // get k before authenticating: UNAUTHENTICATED, header revision 1, no result.
  ASSERT_TRUE(c.send_raw(hex("00 00 00 07 08 02 5a 03 0a 01 6b ")));
  const auto early = c.recv();
  ASSERT_TRUE(early.has_value());
  EXPECT_EQ(early->id(), 2u);
  EXPECT_EQ(early->status().code(), pb::Status::UNAUTHENTICATED);
  EXPECT_EQ(early->status().message(), "authentication required: send AUTHENTICATE first");
  EXPECT_EQ(early->header().revision(), 1u);
  EXPECT_EQ(early->result_case(), pb::Response::RESULT_NOT_SET);

  const std::string request = hex("00 00 00 0e 08 01 b2 01 09 0a 03 61 70 70 12 02 70 77 ");
  pb::Request parsed;
  ASSERT_TRUE(parsed.ParseFromString(request.substr(4)));
  EXPECT_EQ(parsed.authenticate().user(), "app");
  ASSERT_TRUE(c.send_raw(request));
  const std::string expected =
      hex("00 00 00 16 08 01 12 00 1a 02 08 01 b2 01 0b 0a 09 72 65 61 64 77 72 69 74 65 ");
  std::string got(expected.size(), '\0');
  ASSERT_TRUE(c.read_exact(got.data(), got.size(), 5s));
  EXPECT_EQ(got, expected);
  std::filesystem::remove(users);
}

}  // namespace
}  // namespace kv::test
