// Plain GET and PUT answered from their wire bytes (Dispatcher::answer_plain): the answer must be
// byte for byte what the general path (parse, dispatch, serialize) answers, and every request of
// another shape must be declined untouched. Two engines fed the same requests stay in the same
// state, so one runs the plain path and the other the general one and their bytes are compared.
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <random>

#include "server/auth.hpp"
#include "server/dispatcher.hpp"
#include "test_client.hpp"

namespace kv::test {
namespace {

namespace fs = std::filesystem;

server::ServerConfig twin_config() {
  server::ServerConfig c = InProcessServer::small_config();
  c.max_key_bytes = 64;
  c.max_value_bytes = 3000;
  return c;
}

// One engine and dispatcher.
struct Side {
  explicit Side(const server::ServerConfig& config)
      : engine(config.engine_options()),
        dispatcher(
            engine, config, [](pb::StatsResponse&) {}, &counters),
        txns(counters) {}

  // The general path, as the session runs it for a request answer_plain declined.
  std::string general(std::string_view payload) {
    pb::Request request;
    pb::Response response;
    if (!proto::parse_request(payload, request)) {
      dispatcher.error(0, pb::Status::INVALID_ARGUMENT,
                       "frame payload is not a valid Request message", response);
    } else {
      dispatcher.dispatch(request, txns, response);
    }
    std::string out;
    proto::append_message(out, response);
    return out;
  }

  storage::Engine engine;
  server::ServerCounters counters;
  server::Dispatcher dispatcher;
  server::ConnectionTxns txns;
};

class PlainRequests : public ::testing::Test {
 protected:
  // Runs `payload` on the plain side (falling back to the general path when declined, as
  // the session does) and on the general side; expects the same bytes. Returns whether the
  // plain path took it.
  bool same_answer(std::string_view payload, bool writes = true) {
    std::string out = "earlier output";
    const auto a = plain.dispatcher.answer_plain(payload, writes, out);
    const std::string expected = general.general(payload);
    if (!a) {
      EXPECT_EQ(out, "earlier output") << "a declined request left output behind";
      EXPECT_EQ(plain.general(payload), expected);
      return false;
    }
    EXPECT_EQ(out.substr(0, 14), "earlier output");
    EXPECT_EQ(out.substr(14), expected) << "payload " << testing::PrintToString(payload);
    pb::Response r;
    EXPECT_TRUE(r.ParseFromString(expected.substr(proto::kFrameHeaderBytes)));
    EXPECT_EQ(a->id, r.id());
    EXPECT_EQ(a->code, r.status().code());
    return true;
  }

  server::ServerConfig config = twin_config();
  Side plain{config};
  Side general{config};
};

std::string bytes_of(const pb::Request& r) { return r.SerializeAsString(); }

pb::Request put_req(std::uint64_t id, const std::string& key, const std::string& value) {
  return put(id, key, value);
}

// A varint, for hand-built encodings.
std::string varint(std::uint64_t v) {
  std::string s;
  while (v >= 0x80) {
    s.push_back(static_cast<char>((v & 0x7F) | 0x80));
    v >>= 7;
  }
  s.push_back(static_cast<char>(v));
  return s;
}
std::string field_bytes(int field, std::string_view body) {
  return varint(static_cast<std::uint64_t>(field) << 3 | 2) + varint(body.size()) +
         std::string(body);
}
std::string field_varint(int field, std::uint64_t v) {
  return varint(static_cast<std::uint64_t>(field) << 3) + varint(v);
}

TEST_F(PlainRequests, AnswersAreTheBytesOfTheGeneralPath) {
  EXPECT_TRUE(same_answer(bytes_of(put_req(1, "k", "v1"))));
  EXPECT_TRUE(same_answer(bytes_of(put_req(2, "k", "v2"))));  // version 2, a new mod revision
  EXPECT_TRUE(same_answer(bytes_of(get(3, "k"))));
  EXPECT_TRUE(same_answer(bytes_of(get(0, "k"))));  // id 0 is left out on the wire
  EXPECT_TRUE(same_answer(bytes_of(get(~0ull, "k"))));
  EXPECT_TRUE(same_answer(bytes_of(get(4, "missing"))));  // NOT_FOUND, with its message
  EXPECT_TRUE(same_answer(bytes_of(put_req(5, "empty", ""))));
  EXPECT_TRUE(same_answer(bytes_of(get(6, "empty"))));  // a kv with no value field
  EXPECT_TRUE(same_answer(bytes_of(put_req(7, std::string(64, 'K'), std::string(3000, 'v')))));
  EXPECT_TRUE(same_answer(bytes_of(get(8, std::string(64, 'K')))));  // multi-byte lengths
  EXPECT_TRUE(same_answer(bytes_of(put_req(1ull << 40, std::string("\0\xff", 2), "x"))));
  EXPECT_TRUE(same_answer(bytes_of(get(9, std::string("\0\xff", 2)))));
  for (std::uint64_t i = 0; i < 300; ++i) {  // revisions past one varint byte
    EXPECT_TRUE(same_answer(bytes_of(put_req(100 + i, "r" + std::to_string(i % 7), "v"))));
  }
  EXPECT_TRUE(same_answer(bytes_of(get(500, "r3"))));
  // A key with a lease (ttl_seconds takes the general path) read by a plain get.
  pb::Request with_ttl = put_req(600, "leased", "v");
  with_ttl.mutable_put()->set_ttl_seconds(60);
  EXPECT_FALSE(same_answer(bytes_of(with_ttl)));
  EXPECT_TRUE(same_answer(bytes_of(get(601, "leased"))));
  pb::Response r;
  const std::string answer = general.general(bytes_of(get(602, "leased")));
  ASSERT_TRUE(r.ParseFromString(answer.substr(proto::kFrameHeaderBytes)));
  EXPECT_NE(r.get().kv().lease(), 0u);
}

TEST_F(PlainRequests, OtherEncodingsOfThePlainShapesMeanTheSame) {
  ASSERT_TRUE(same_answer(bytes_of(put_req(1, "k", "v"))));
  const std::string get_body = field_bytes(1, "k");
  // id after the op; explicit zero txn_id / prev_kv / lease / ttl; a non-minimal varint.
  EXPECT_TRUE(same_answer(field_bytes(11, get_body) + field_varint(1, 9)));
  EXPECT_TRUE(same_answer(field_varint(1, 9) + field_bytes(11, get_body + field_varint(2, 0))));
  EXPECT_TRUE(same_answer(field_bytes(12, field_bytes(2, "w") + field_bytes(1, "k") +
                                              field_varint(3, 0) + field_varint(4, 0) +
                                              field_varint(5, 0) + field_varint(6, 0))));
  EXPECT_TRUE(same_answer(std::string("\x08\x85\x80\x00", 4) + field_bytes(11, get_body)));
  EXPECT_TRUE(same_answer(field_bytes(11, get_body)));  // no id at all
}

TEST_F(PlainRequests, EveryOtherShapeIsDeclinedUntouched) {
  ASSERT_TRUE(same_answer(bytes_of(put_req(1, "k", "v"))));
  const std::string get_body = field_bytes(1, "k");
  pb::Request r;
  // Transactions, leases, ttl, prev_kv: the general path's features.
  r = get(2, "k");
  r.mutable_get()->set_txn_id(7);
  EXPECT_FALSE(same_answer(bytes_of(r)));
  r = put(3, "k", "v", 0, /*prev_kv=*/true);
  EXPECT_FALSE(same_answer(bytes_of(r)));
  r = put(4, "k", "v");
  r.mutable_put()->set_txn_id(9);
  EXPECT_FALSE(same_answer(bytes_of(r)));
  r = put(5, "k", "v");
  r.mutable_put()->set_lease(3);
  EXPECT_FALSE(same_answer(bytes_of(r)));
  r = put(6, "k", "v");
  r.mutable_put()->set_ttl_seconds(5);
  EXPECT_FALSE(same_answer(bytes_of(r)));
  r = put(7, "k", "v");
  r.mutable_put()->set_ttl_seconds(-1);  // invalid: the general path's message
  EXPECT_FALSE(same_answer(bytes_of(r)));
  // Invalid requests: their refusals come from validation.
  EXPECT_FALSE(same_answer(bytes_of(get(8, ""))));
  EXPECT_FALSE(same_answer(bytes_of(put_req(9, "", "v"))));
  EXPECT_FALSE(same_answer(bytes_of(get(10, std::string(65, 'K')))));
  EXPECT_FALSE(same_answer(bytes_of(put_req(11, "k", std::string(3001, 'v')))));
  EXPECT_FALSE(same_answer(field_varint(1, 12)));  // no op
  // Other operations.
  EXPECT_FALSE(same_answer(bytes_of(ping(13, "p"))));
  EXPECT_FALSE(same_answer(bytes_of(del(14, "k"))));
  // Encodings the plain reader does not take: repeated fields, unknown fields, wrong wire
  // types, truncation, garbage.
  EXPECT_FALSE(same_answer(field_bytes(11, get_body + field_bytes(1, "k2"))));
  EXPECT_FALSE(same_answer(field_bytes(11, get_body + field_varint(9, 1))));
  EXPECT_FALSE(same_answer(field_bytes(11, get_body) + field_varint(2, 1)));
  EXPECT_FALSE(same_answer(field_varint(1, 1) + field_varint(1, 2) + field_bytes(11, get_body)));
  EXPECT_FALSE(same_answer(field_bytes(11, get_body) + field_bytes(11, get_body)));
  EXPECT_FALSE(same_answer(field_bytes(11, get_body) + field_bytes(12, field_bytes(1, "k"))));
  EXPECT_FALSE(same_answer(field_bytes(11, field_varint(1, 5))));
  EXPECT_FALSE(same_answer(field_varint(11, 5)));
  const std::string whole = bytes_of(get(15, "k"));
  for (std::size_t n = 0; n < whole.size(); ++n) {
    EXPECT_FALSE(same_answer(whole.substr(0, n))) << n;
  }
  EXPECT_FALSE(same_answer(std::string(12, '\xff')));
  // A put where writes go elsewhere (the commit threads).
  EXPECT_FALSE(same_answer(bytes_of(put_req(16, "k", "v")), /*writes=*/false));
  EXPECT_TRUE(same_answer(bytes_of(get(17, "k")), /*writes=*/false));
}

TEST_F(PlainRequests, MutatedRequestsAnswerAsTheGeneralPathDoes) {
  std::mt19937_64 rng(15);
  int taken = 0;
  for (int i = 0; i < 4000; ++i) {
    const std::string key = "key" + std::to_string(rng() % 20);
    std::string p = (rng() % 2 == 0)
                        ? bytes_of(get(rng() % 1000, key))
                        : bytes_of(put_req(rng() % 1000, key, std::string(rng() % 40, 'v')));
    switch (rng() % 4) {
      case 0:  // flip a byte
        p[rng() % p.size()] = static_cast<char>(rng());
        break;
      case 1:  // cut
        p.resize(rng() % p.size());
        break;
      case 2:  // insert a byte
        p.insert(p.begin() + static_cast<std::ptrdiff_t>(rng() % (p.size() + 1)),
                 static_cast<char>(rng()));
        break;
      default:  // unchanged
        break;
    }
    if (same_answer(p)) ++taken;
    if (HasFailure()) break;
  }
  EXPECT_GT(taken, 1000);  // the comparison covered the plain path, not only the fallback
}

TEST(PlainRequestsAuth, WithUsersEveryRequestTakesTheGeneralPath) {
  const fs::path users = fs::temp_directory_path() / ("plain-users-" + std::to_string(::getpid()));
  {
    std::ofstream out(users);
    out << "writer readwrite " << server::hash_password("pw", 1000) << "\n";
  }
  server::ServerConfig config = twin_config();
  config.users_file = users.string();
  Side side(config);
  std::string error;
  ASSERT_TRUE(side.dispatcher.load_users(error)) << error;
  std::string out;
  EXPECT_FALSE(side.dispatcher.answer_plain(bytes_of(get(1, "k")), true, out));
  EXPECT_FALSE(side.dispatcher.answer_plain(bytes_of(put_req(2, "k", "v")), true, out));
  EXPECT_TRUE(out.empty());
  fs::remove(users);
}

TEST(PlainRequestsServer, APlainAnswerOverTheFrameLimitBecomesAnError) {
  auto cfg = InProcessServer::small_config();
  cfg.max_frame_bytes = 4096;
  InProcessServer srv(cfg);
  Client c(srv.port());
  // The put's frame fits (4,096 bytes at most); its get answer adds the key again and the
  // envelope, which does not.
  const std::string key(60, 'k');
  const std::string value(4096 - 80, 'v');
  ASSERT_LE(put(1, key, value).ByteSizeLong(), 4096u);
  ASSERT_EQ(c.call(put(1, key, value)).status().code(), pb::Status::OK);
  pb::Response r = c.call(get(2, key));
  EXPECT_EQ(r.id(), 2u);
  EXPECT_EQ(r.status().code(), pb::Status::RESOURCE_EXHAUSTED);
  EXPECT_EQ(r.status().message(), "response would exceed --max-frame-bytes");
  // The connection goes on.
  EXPECT_EQ(c.call(get(3, "absent")).status().code(), pb::Status::NOT_FOUND);
}

}  // namespace
}  // namespace kv::test
