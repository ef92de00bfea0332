// Unit tests of the protobuf-level codec (proto/codec.hpp).
#include "proto/codec.hpp"

#include <gtest/gtest.h>

#include "proto/frame.hpp"

namespace kv::proto {
namespace {

TEST(Codec, AppendMessageFramesAResponseThatParsesBack) {
  pb::Response resp;
  resp.set_id(77);
  resp.mutable_status()->set_code(pb::Status::NOT_FOUND);
  resp.mutable_header()->set_revision(12);
  std::string out = "prefix";
  append_message(out, resp);
  FrameResult f = split_frame(std::string_view(out).substr(6), kDefaultMaxFrameBytes);
  ASSERT_EQ(f.status, FrameStatus::kComplete);
  EXPECT_EQ(f.consumed, out.size() - 6);
  pb::Response back;
  ASSERT_TRUE(back.ParseFromArray(f.payload.data(), static_cast<int>(f.payload.size())));
  EXPECT_EQ(back.id(), 77u);
  EXPECT_EQ(back.status().code(), pb::Status::NOT_FOUND);
  EXPECT_EQ(back.header().revision(), 12u);
}

TEST(Codec, ParseRequestAcceptsUnknownFieldsAndRejectsGarbage) {
  pb::Request req;
  req.set_id(5);
  req.mutable_get()->set_key("k");
  std::string bytes = req.SerializeAsString();
  // Field 1000, varint 1: an unknown field is ignored.
  bytes += std::string("\xC0\x3E\x01", 3);
  pb::Request parsed;
  ASSERT_TRUE(parse_request(bytes, parsed));
  EXPECT_EQ(parsed.id(), 5u);
  EXPECT_EQ(parsed.get().key(), "k");
  // A truncated length-delimited field is not a Request.
  EXPECT_FALSE(parse_request(std::string("\x5A\x10\x0A", 3), parsed));
  // Wire type 7 does not exist.
  EXPECT_FALSE(parse_request(std::string("\x0F\x00", 2), parsed));
}

TEST(Validate, AcceptsWellFormedRequests) {
  RequestLimits limits;
  pb::Request r;
  r.mutable_ping();
  EXPECT_TRUE(validate_request(r, limits).ok());
  r.mutable_put()->set_key("k");
  EXPECT_TRUE(validate_request(r, limits).ok());
  r.mutable_scan()->set_start("a");
  r.mutable_scan()->set_end("b");
  EXPECT_TRUE(validate_request(r, limits).ok());
  r.mutable_scan()->clear_end();
  r.mutable_scan()->set_prefix(true);
  EXPECT_TRUE(validate_request(r, limits).ok());
  auto* txn = r.mutable_txn();
  auto* c = txn->add_compare();
  c->set_key("k");
  c->set_version(0);
  txn->add_success()->mutable_put()->set_key("k");
  txn->add_failure()->mutable_get()->set_key("k");
  EXPECT_TRUE(validate_request(r, limits).ok());
}

TEST(Validate, RejectsEachStructuralProblem) {
  RequestLimits limits;
  limits.max_key_bytes = 8;
  limits.max_value_bytes = 16;
  limits.max_txn_ops = 2;
  auto expect_invalid = [&](const pb::Request& r) {
    Validation v = validate_request(r, limits);
    EXPECT_EQ(v.code, pb::Status::INVALID_ARGUMENT) << r.ShortDebugString();
    EXPECT_FALSE(v.message.empty());
  };
  pb::Request r;
  expect_invalid(r);  // no op
  r.mutable_get();
  expect_invalid(r);  // empty key
  r.mutable_get()->set_key("123456789");
  expect_invalid(r);  // key too long
  r.mutable_put()->set_key("k");
  r.mutable_put()->set_value(std::string(17, 'v'));
  expect_invalid(r);  // value too long
  r.mutable_put()->set_value("v");
  r.mutable_put()->set_prev_kv(true);
  r.mutable_put()->set_txn_id(3);
  expect_invalid(r);  // prev_kv inside a txn
  r.mutable_del();
  expect_invalid(r);  // empty key
  r.mutable_scan()->set_prefix(true);
  r.mutable_scan()->set_end("z");
  expect_invalid(r);  // prefix with end
  r.mutable_scan()->set_prefix(false);
  r.mutable_scan()->set_start("z");
  expect_invalid(r);  // start >= end
  r.mutable_delete_range()->set_start("b");
  r.mutable_delete_range()->set_end("a");
  expect_invalid(r);
  r.mutable_commit();
  expect_invalid(r);  // txn_id 0
  r.mutable_abort();
  expect_invalid(r);
  r.mutable_begin()->set_isolation(static_cast<pb::Isolation>(9));
  expect_invalid(r);
  r.mutable_fault()->set_stall_ms(limits.max_stall_ms + 1);
  expect_invalid(r);
  auto* txn = r.mutable_txn();
  txn->add_compare()->set_key("k");
  expect_invalid(r);  // compare without target
  txn->mutable_compare(0)->set_value("x");
  txn->add_success();
  expect_invalid(r);  // op without operation
  txn->mutable_success(0)->mutable_get()->set_key("k");
  txn->mutable_success(0)->mutable_get()->set_txn_id(1);
  expect_invalid(r);  // txn_id inside a conditional op
  txn->mutable_success(0)->mutable_get()->set_txn_id(0);
  EXPECT_TRUE(validate_request(r, limits).ok());
  for (int i = 0; i < 3; ++i) txn->add_failure()->mutable_del()->set_key("k");
  expect_invalid(r);  // too many ops
}

TEST(Codec, CodeNamesCoverEveryCode) {
  for (int c = pb::Status::Code_MIN; c <= pb::Status::Code_MAX; ++c) {
    // Values may be kept free for codes another change adds (docs/PROTOCOL.md 4).
    if (!pb::Status::Code_IsValid(c)) {
      EXPECT_EQ(code_name(static_cast<pb::Status::Code>(c)), "UNKNOWN");
      continue;
    }
    EXPECT_EQ(code_name(static_cast<pb::Status::Code>(c)),
              pb::Status::Code_Name(static_cast<pb::Status::Code>(c)));
  }
}

TEST(Codec, StorageFailedIsCodeEleven) {
  EXPECT_EQ(static_cast<int>(pb::Status::STORAGE_FAILED), 11);
  EXPECT_EQ(code_name(pb::Status::STORAGE_FAILED), "STORAGE_FAILED");
}

}  // namespace
}  // namespace kv::proto
