// Bad input and resource limits against an in-process server: every case gets a typed
// error or a close as docs/PROTOCOL.md says, and the server keeps serving other clients.
#include <fcntl.h>

#include <gtest/gtest.h>

#include "test_client.hpp"

namespace kv::test {
namespace {

std::string raw_frame(std::string_view payload) {
  std::string out;
  proto::append_frame(out, payload);
  return out;
}

// The server still answers a fresh client.
void expect_serving(std::uint16_t port) {
  Client probe(port);
  ASSERT_TRUE(probe.connected());
  pb::Response r = probe.call(ping(99, "alive"));
  EXPECT_EQ(r.status().code(), pb::Status::OK);
  EXPECT_EQ(r.ping().payload(), "alive");
}

TEST(BadInput, UnparsablePayloadGetsInvalidArgumentAndTheConnectionStays) {
  InProcessServer srv;
  Client c(srv.port());
  // A length-delimited field (id 11) whose length runs past the payload.
  ASSERT_TRUE(c.send_raw(raw_frame(std::string("\x5A\x10\x0A", 3))));
  auto r = c.recv();
  ASSERT_TRUE(r.has_value());
  EXPECT_EQ(r->id(), 0u);
  EXPECT_EQ(r->status().code(), pb::Status::INVALID_ARGUMENT);
  EXPECT_FALSE(r->status().message().empty());
  // Framing is intact, so the connection goes on.
  EXPECT_EQ(c.call(ping(2)).id(), 2u);
  EXPECT_EQ(srv.server().counters().frames_unparsable.load(), 1u);
}

TEST(BadInput, EmptyFrameAndMissingOperationAreInvalidArguments) {
  InProcessServer srv;
  Client c(srv.port());
  ASSERT_TRUE(c.send_raw(raw_frame("")));
  auto r = c.recv();
  ASSERT_TRUE(r.has_value());
  EXPECT_EQ(r->status().code(), pb::Status::INVALID_ARGUMENT);
  pb::Request no_op;
  no_op.set_id(5);
  pb::Response resp = c.call(no_op);
  EXPECT_EQ(resp.id(), 5u);
  EXPECT_EQ(resp.status().code(), pb::Status::INVALID_ARGUMENT);
}

TEST(BadInput, UnknownFieldsAreIgnored) {
  InProcessServer srv;
  Client c(srv.port());
  std::string payload = ping(7, "x").SerializeAsString();
  payload += std::string("\xC0\x3E\x01", 3);    // field 1000 = 1 (varint)
  payload += std::string("\xCA\x3E\x02zz", 5);  // field 1001 = "zz"
  ASSERT_TRUE(c.send_raw(raw_frame(payload)));
  auto r = c.recv();
  ASSERT_TRUE(r.has_value());
  EXPECT_EQ(r->id(), 7u);
  EXPECT_EQ(r->status().code(), pb::Status::OK);
  EXPECT_EQ(r->ping().payload(), "x");
  // An operation number this server does not know: no op set.
  pb::Request unknown_op;
  unknown_op.set_id(8);
  std::string p2 = unknown_op.SerializeAsString() + std::string("\xFA\x06\x00", 3);  // field 111
  ASSERT_TRUE(c.send_raw(raw_frame(p2)));
  r = c.recv();
  ASSERT_TRUE(r.has_value());
  EXPECT_EQ(r->id(), 8u);
  EXPECT_EQ(r->status().code(), pb::Status::INVALID_ARGUMENT);
}

TEST(BadInput, EmptyAndOversizedKeysAndValues) {
  auto cfg = InProcessServer::small_config();
  cfg.max_key_bytes = 16;
  cfg.max_value_bytes = 32;
  InProcessServer srv(cfg);
  Client c(srv.port());
  EXPECT_EQ(c.call(get(1, "")).status().code(), pb::Status::INVALID_ARGUMENT);
  EXPECT_EQ(c.call(put(2, "", "v")).status().code(), pb::Status::INVALID_ARGUMENT);
  EXPECT_EQ(c.call(del(3, "")).status().code(), pb::Status::INVALID_ARGUMENT);
  EXPECT_EQ(c.call(put(4, std::string(17, 'k'), "v")).status().code(),
            pb::Status::INVALID_ARGUMENT);
  EXPECT_EQ(c.call(put(5, "k", std::string(33, 'v'))).status().code(),
            pb::Status::INVALID_ARGUMENT);
  pb::Response ok = c.call(put(6, std::string(16, 'k'), std::string(32, 'v')));
  EXPECT_EQ(ok.status().code(), pb::Status::OK);
  // The id is echoed on errors.
  EXPECT_EQ(c.call(get(77, "")).id(), 77u);
}

TEST(BadInput, OversizedFrameIsRefusedBeforeItsPayloadAndTheConnectionCloses) {
  auto cfg = InProcessServer::small_config();
  cfg.max_frame_bytes = 1024;
  InProcessServer srv(cfg);
  Client c(srv.port());
  // A good request first: its response must still arrive, in order.
  std::string bytes;
  proto::append_message(bytes, ping(1));
  char header[4];
  proto::put_frame_header(header, 1025);
  bytes.append(header, 4);
  ASSERT_TRUE(c.send_raw(bytes));  // no payload is ever sent
  auto first = c.recv();
  ASSERT_TRUE(first.has_value());
  EXPECT_EQ(first->id(), 1u);
  auto r = c.recv();
  ASSERT_TRUE(r.has_value());
  EXPECT_EQ(r->id(), 0u);
  EXPECT_EQ(r->status().code(), pb::Status::RESOURCE_EXHAUSTED);
  EXPECT_TRUE(c.closed_by_peer());
  EXPECT_EQ(srv.server().counters().frames_oversized.load(), 1u);
  expect_serving(srv.port());
}

TEST(BadInput, GarbageBytesEndInATypedErrorOrCloseAndTheServerStaysUp) {
  InProcessServer srv;
  for (int trial = 0; trial < 20; ++trial) {
    Client c(srv.port());
    std::string garbage;
    std::uint32_t x = 2654435761u * static_cast<std::uint32_t>(trial + 1);
    for (int i = 0; i < 64; ++i) {
      x = x * 1103515245u + 12345u;
      garbage.push_back(static_cast<char>(x >> 24));
    }
    ASSERT_TRUE(c.send_raw(garbage));
    c.close();
  }
  EXPECT_TRUE(eventually([&] { return srv.server().counters().connections_open.load() == 0; }));
  expect_serving(srv.port());
}

TEST(BadInput, TruncatedFrameThenDisconnect) {
  InProcessServer srv;
  {
    Client c(srv.port());
    const std::string f = raw_frame(ping(1, "payload").SerializeAsString());
    ASSERT_TRUE(c.send_raw(std::string_view(f).substr(0, f.size() - 3)));
    // No response can come: the frame is incomplete.
    EXPECT_FALSE(c.recv(100ms).has_value());
  }
  EXPECT_TRUE(eventually([&] { return srv.server().counters().connections_open.load() == 0; }));
  expect_serving(srv.port());
}

TEST(BadInput, HalfClosedClientStillReceivesEveryResponse) {
  InProcessServer srv;
  Client c(srv.port());
  std::vector<pb::Request> batch;
  for (int i = 1; i <= 200; ++i) batch.push_back(put(static_cast<std::uint64_t>(i), "k", "v"));
  ASSERT_TRUE(c.send_all(batch));
  ASSERT_EQ(::shutdown(c.fd(), SHUT_WR), 0);  // "no more requests"
  for (int i = 1; i <= 200; ++i) {
    auto r = c.recv();
    ASSERT_TRUE(r.has_value()) << i;
    ASSERT_EQ(r->id(), static_cast<std::uint64_t>(i));
  }
  EXPECT_TRUE(c.closed_by_peer());
}

TEST(BadInput, ResponseLargerThanTheFrameLimitBecomesAnError) {
  auto cfg = InProcessServer::small_config();
  cfg.max_frame_bytes = 4096;
  cfg.max_value_bytes = 3000;
  InProcessServer srv(cfg);
  Client c(srv.port());
  ASSERT_EQ(c.call(put(1, "a", std::string(3000, 'x'))).status().code(), pb::Status::OK);
  // Two gets of a 3000-byte value in one conditional transaction: over 4096 bytes.
  pb::Request r;
  r.set_id(2);
  r.mutable_txn()->add_success()->mutable_get()->set_key("a");
  r.mutable_txn()->add_success()->mutable_get()->set_key("a");
  pb::Response resp = c.call(r);
  EXPECT_EQ(resp.id(), 2u);
  EXPECT_EQ(resp.status().code(), pb::Status::RESOURCE_EXHAUSTED);
  // A scan is cut to fit instead, with `more` set.
  ASSERT_EQ(c.call(put(3, "b", std::string(3000, 'y'))).status().code(), pb::Status::OK);
  pb::Request s;
  s.set_id(4);
  s.mutable_scan();
  resp = c.call(s);
  ASSERT_EQ(resp.status().code(), pb::Status::OK);
  EXPECT_EQ(resp.scan().kvs_size(), 1);  // one 3000-byte value fits a 4096-byte frame, two do not
  EXPECT_TRUE(resp.scan().more());
  EXPECT_EQ(resp.scan().count(), 2u);
}

TEST(Limits, DroppedConnectionAbortsItsTransactions) {
  InProcessServer srv;
  Client observer(srv.port());
  {
    Client c(srv.port());
    const std::uint64_t t = c.call(begin(1)).begin().txn_id();
    ASSERT_NE(t, 0u);
    ASSERT_EQ(c.call(get(2, "k", t)).status().code(), pb::Status::NOT_FOUND);
    ASSERT_EQ(c.call(put(3, "k", "uncommitted", t)).status().code(), pb::Status::OK);
    EXPECT_EQ(observer.call(stats(4)).stats().active_txns(), 1u);
  }  // closes mid-transaction
  EXPECT_TRUE(eventually([&] { return observer.call(stats(5)).stats().active_txns() == 0; }));
  EXPECT_EQ(srv.server().counters().txns_disconnect_aborted.load(), 1u);
  EXPECT_EQ(srv.server().counters().txns_open.load(), 0u);
  // Another client writes the key; the aborted write never appears.
  EXPECT_EQ(observer.call(get(6, "k")).status().code(), pb::Status::NOT_FOUND);
  EXPECT_EQ(observer.call(put(7, "k", "mine")).status().code(), pb::Status::OK);
  EXPECT_EQ(observer.call(get(8, "k")).get().kv().value(), "mine");
}

TEST(Limits, MaxTransactionsPerConnection) {
  auto cfg = InProcessServer::small_config();
  cfg.max_txns_per_connection = 2;
  InProcessServer srv(cfg);
  Client c(srv.port());
  const std::uint64_t a = c.call(begin(1)).begin().txn_id();
  const std::uint64_t b = c.call(begin(2)).begin().txn_id();
  ASSERT_NE(a, 0u);
  ASSERT_NE(b, 0u);
  pb::Response third = c.call(begin(3));
  EXPECT_EQ(third.status().code(), pb::Status::RESOURCE_EXHAUSTED);
  EXPECT_FALSE(third.has_begin());
  // Another connection has its own allowance.
  Client other(srv.port());
  EXPECT_EQ(other.call(begin(4)).status().code(), pb::Status::OK);
  // Finishing one frees a slot.
  EXPECT_EQ(c.call(commit(5, a)).status().code(), pb::Status::OK);
  EXPECT_EQ(c.call(begin(6)).status().code(), pb::Status::OK);
}

TEST(Limits, ExpiredTransactionIsAbortedWhileItsConnectionIsIdle) {
  auto cfg = InProcessServer::small_config();
  cfg.txn_timeout = 150ms;
  InProcessServer srv(cfg);
  Client c(srv.port());
  Client observer(srv.port());
  const std::uint64_t t = c.call(begin(1)).begin().txn_id();
  ASSERT_EQ(c.call(put(2, "k", "v", t)).status().code(), pb::Status::OK);
  // The owner sends nothing; the engine's sweeper ends the transaction on its own.
  EXPECT_TRUE(eventually([&] { return observer.call(stats(3)).stats().active_txns() == 0; }));
  EXPECT_GE(observer.call(stats(4)).stats().aborts_expired(), 1u);
  pb::Response r = c.call(get(5, "k", t));
  EXPECT_EQ(r.status().code(), pb::Status::TXN_EXPIRED);
  EXPECT_EQ(c.call(commit(6, t)).status().code(), pb::Status::TXN_EXPIRED);
  EXPECT_EQ(c.call(commit(7, t)).status().code(), pb::Status::TXN_NOT_FOUND);
}

TEST(Limits, MaxConnectionsRefusesPolitely) {
  auto cfg = InProcessServer::small_config();
  cfg.max_connections = 2;
  InProcessServer srv(cfg);
  auto a = std::make_unique<Client>(srv.port());
  Client b(srv.port());
  ASSERT_EQ(a->call(ping(1)).status().code(), pb::Status::OK);
  ASSERT_EQ(b.call(ping(2)).status().code(), pb::Status::OK);
  {
    Client refused(srv.port());
    ASSERT_TRUE(refused.connected());  // the TCP handshake completes; then the refusal
    auto r = refused.recv();
    ASSERT_TRUE(r.has_value());
    EXPECT_EQ(r->id(), 0u);
    EXPECT_EQ(r->status().code(), pb::Status::RESOURCE_EXHAUSTED);
    EXPECT_TRUE(refused.closed_by_peer());
  }
  EXPECT_EQ(srv.server().counters().connections_refused.load(), 1u);
  a.reset();
  EXPECT_TRUE(eventually([&] { return srv.server().counters().connections_open.load() == 1; }));
  Client c(srv.port());
  EXPECT_EQ(c.call(ping(3)).status().code(), pb::Status::OK);
}

TEST(Limits, IdleConnectionsAreClosedWithANotice) {
  auto cfg = InProcessServer::small_config();
  cfg.idle_timeout = 100ms;
  InProcessServer srv(cfg);
  Client c(srv.port());
  ASSERT_EQ(c.call(ping(1)).status().code(), pb::Status::OK);
  auto r = c.recv(5s);  // nothing sent: the notice arrives after ~100 ms
  ASSERT_TRUE(r.has_value());
  EXPECT_EQ(r->id(), 0u);
  EXPECT_EQ(r->status().code(), pb::Status::UNAVAILABLE);
  EXPECT_TRUE(c.closed_by_peer());
  EXPECT_EQ(srv.server().counters().connections_idle_closed.load(), 1u);
  expect_serving(srv.port());
}

TEST(Limits, ManyIdleConnectionsAreAllServed) {
  InProcessServer srv;
  std::vector<std::unique_ptr<Client>> clients;
  constexpr int kClients = 500;
  for (int i = 0; i < kClients; ++i) {
    clients.push_back(std::make_unique<Client>(srv.port()));
    ASSERT_TRUE(clients.back()->connected());
  }
  EXPECT_TRUE(eventually([&] {
    return srv.server().counters().connections_open.load() == static_cast<std::uint64_t>(kClients);
  }));
  for (int i = 0; i < kClients; i += 50) {
    EXPECT_EQ(
        clients[static_cast<std::size_t>(i)]->call(ping(static_cast<std::uint64_t>(i + 1))).id(),
        static_cast<std::uint64_t>(i + 1));
  }
  clients.clear();
  EXPECT_TRUE(eventually([&] { return srv.server().counters().connections_open.load() == 0; }));
}

TEST(Limits, ClientThatSendsButNeverReadsIsThrottled) {
  auto cfg = InProcessServer::small_config();
  cfg.max_output_bytes = 64 * 1024;
  cfg.max_frame_bytes = 64 * 1024;
  cfg.max_value_bytes = 32 * 1024;
  InProcessServer srv(cfg);
  {
    Client setup(srv.port());
    ASSERT_EQ(setup.call(put(1, "big", std::string(32 * 1024, 'v'))).status().code(),
              pb::Status::OK);
  }
  // Small receive buffer so the kernel cannot absorb much on our side.
  Client c(srv.port(), 16 * 1024);
  constexpr int kRequests = 4000;  // 4000 x 32 KiB = 125 MiB of responses if all were served
  std::vector<pb::Request> batch;
  for (int i = 0; i < kRequests; ++i)
    batch.push_back(get(static_cast<std::uint64_t>(i + 1), "big"));
  ASSERT_TRUE(c.send_all(batch));  // ~40 KB: fits in the socket buffers
  const std::uint64_t base = srv.server().total_requests();
  // The server serves until its unsent output passes the limit, then stops reading. Give
  // it time to (wrongly) serve everything; with backpressure it stays far below.
  Client other(srv.port());
  for (int i = 0; i < 20; ++i) EXPECT_EQ(other.call(ping(1)).status().code(), pb::Status::OK);
  EXPECT_FALSE(
      eventually([&] { return srv.server().total_requests() - base >= kRequests; }, 300ms));
  const std::uint64_t served = srv.server().total_requests() - base - 20;
  EXPECT_LT(served, 1000u) << "the server kept reading a client that does not read";
  // Reading now lets everything through, in order.
  for (int i = 0; i < kRequests; ++i) {
    auto r = c.recv();
    ASSERT_TRUE(r.has_value()) << i;
    ASSERT_EQ(r->id(), static_cast<std::uint64_t>(i + 1));
    ASSERT_EQ(r->get().kv().value().size(), 32u * 1024);
  }
}

TEST(Limits, ConnectionBufferAccountingFollowsTheBuffersAndReturnsToZero) {
  auto cfg = InProcessServer::small_config();
  cfg.max_output_bytes = 64 * 1024;
  cfg.max_frame_bytes = 512 * 1024;
  cfg.max_value_bytes = 256 * 1024;
  InProcessServer srv(cfg);
  const auto& counters = srv.server().counters();
  EXPECT_EQ(srv.server().connection_buffer_bytes(), 0u);
  {
    std::vector<std::unique_ptr<Client>> idle;
    for (int i = 0; i < 5; ++i) {
      idle.push_back(std::make_unique<Client>(srv.port()));
      ASSERT_EQ(idle.back()->call(ping(1)).status().code(), pb::Status::OK);
    }
    // Five initial 4 KiB receive buffers, nothing unsent.
    EXPECT_TRUE(eventually([&] { return srv.server().connection_buffer_bytes() == 5u * 4096; }))
        << srv.server().connection_buffer_bytes();
    // A large request grows one receive buffer: counted.
    ASSERT_EQ(idle[0]->call(put(2, "big", std::string(200 * 1024, 'v'))).status().code(),
              pb::Status::OK);
    EXPECT_GT(counters.input_buffer_bytes.load(), 5u * 4096 + 200 * 1024);
    // A client that does not read leaves responses unsent: counted as output.
    Client slow(srv.port(), 4096);
    std::vector<pb::Request> gets;
    for (int i = 0; i < 40; ++i) gets.push_back(get(static_cast<std::uint64_t>(10 + i), "big"));
    ASSERT_TRUE(slow.send_all(gets));
    EXPECT_TRUE(eventually([&] { return counters.output_buffer_bytes.load() >= 64u * 1024; }))
        << counters.output_buffer_bytes.load();
    // Once the client reads everything, the output account is back to zero.
    for (int i = 0; i < 40; ++i) ASSERT_TRUE(slow.recv().has_value()) << i;
    EXPECT_TRUE(eventually([&] { return counters.output_buffer_bytes.load() == 0; }))
        << counters.output_buffer_bytes.load();
  }
  // Every connection closed: every byte given back.
  EXPECT_TRUE(eventually([&] { return srv.server().connection_buffer_bytes() == 0; }))
      << "in " << counters.input_buffer_bytes.load() << " out "
      << counters.output_buffer_bytes.load();
}

}  // namespace
}  // namespace kv::test
