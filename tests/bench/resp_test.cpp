// The RESP encoder and the incremental reply parser.
#include "resp.hpp"

#include <gtest/gtest.h>

#include <string>
#include <vector>

namespace kv::bench::resp {
namespace {

TEST(RespEncode, GetAndSetBytes) {
  std::string out;
  append_get(out, "k1");
  EXPECT_EQ(out, "*2\r\n$3\r\nGET\r\n$2\r\nk1\r\n");
  out.clear();
  append_set(out, "key", std::string("v\r\nx", 4));
  EXPECT_EQ(out, std::string("*3\r\n$3\r\nSET\r\n$3\r\nkey\r\n$4\r\nv\r\nx\r\n"));
  out.clear();
  append_set(out, "k", "");
  EXPECT_EQ(out, "*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$0\r\n\r\n");
}

TEST(RespEncode, CommandsRoundTripThroughTheParser) {
  // A command is itself a RESP array of bulk strings, so the parser reads it back whole.
  std::string out;
  append_set(out, "key", std::string(1000, 'x'));
  append_get(out, "key");
  Reply r = parse_reply(out);
  ASSERT_EQ(r.status, ParseStatus::kComplete);
  EXPECT_EQ(r.type, ReplyType::kArray);
  EXPECT_EQ(r.integer, 3);
  const std::size_t first = r.consumed;
  r = parse_reply(std::string_view(out).substr(first));
  ASSERT_EQ(r.status, ParseStatus::kComplete);
  EXPECT_EQ(r.integer, 2);
  EXPECT_EQ(first + r.consumed, out.size());
}

TEST(RespParse, EveryReplyType) {
  Reply r = parse_reply("+OK\r\n");
  EXPECT_EQ(r.status, ParseStatus::kComplete);
  EXPECT_EQ(r.type, ReplyType::kSimpleString);
  EXPECT_EQ(r.text, "OK");
  EXPECT_EQ(r.consumed, 5u);

  r = parse_reply("-ERR wrong number of arguments\r\n");
  EXPECT_EQ(r.type, ReplyType::kError);
  EXPECT_EQ(r.text, "ERR wrong number of arguments");

  r = parse_reply(":-42\r\n");
  EXPECT_EQ(r.type, ReplyType::kInteger);
  EXPECT_EQ(r.integer, -42);

  r = parse_reply("$5\r\nhe\r\nl\r\n");  // binary-safe payload with CRLF inside
  ASSERT_EQ(r.status, ParseStatus::kComplete);
  EXPECT_EQ(r.type, ReplyType::kBulk);
  EXPECT_EQ(r.text, "he\r\nl");
  EXPECT_EQ(r.consumed, 11u);

  r = parse_reply("$0\r\n\r\n");
  EXPECT_EQ(r.type, ReplyType::kBulk);
  EXPECT_EQ(r.text, "");

  r = parse_reply("$-1\r\n");
  EXPECT_EQ(r.type, ReplyType::kNull);
  EXPECT_EQ(r.consumed, 5u);

  r = parse_reply("*-1\r\n");
  EXPECT_EQ(r.type, ReplyType::kNull);

  r = parse_reply("*2\r\n$1\r\na\r\n*1\r\n:1\r\n+rest");
  ASSERT_EQ(r.status, ParseStatus::kComplete);
  EXPECT_EQ(r.type, ReplyType::kArray);
  EXPECT_EQ(r.integer, 2);
  EXPECT_EQ(r.consumed, 19u);
}

TEST(RespParse, EveryPrefixNeedsMoreAndTheWholeCompletes) {
  const std::vector<std::string> replies = {
      "+OK\r\n",
      "-ERR x\r\n",
      ":12345\r\n",
      "$3\r\nfoo\r\n",
      "$-1\r\n",
      "$0\r\n\r\n",
      "*3\r\n$1\r\na\r\n:2\r\n*1\r\n+x\r\n",
      std::string("$300\r\n") + std::string(300, 'v') + "\r\n"};
  for (const auto& reply : replies) {
    for (std::size_t n = 0; n < reply.size(); ++n) {
      const Reply r = parse_reply(std::string_view(reply).substr(0, n));
      ASSERT_EQ(r.status, ParseStatus::kNeedMore) << reply << " prefix " << n;
    }
    const Reply r = parse_reply(reply);
    ASSERT_EQ(r.status, ParseStatus::kComplete) << reply;
    EXPECT_EQ(r.consumed, reply.size()) << reply;
  }
}

TEST(RespParse, StreamOfRepliesSplitAnywhere) {
  // A pipelined stream of SET and GET replies, fed in every split into two reads.
  const std::string stream = "+OK\r\n$3\r\nabc\r\n$-1\r\n+OK\r\n-ERR no\r\n$2\r\nzz\r\n";
  const std::vector<ReplyType> want = {ReplyType::kSimpleString, ReplyType::kBulk,
                                       ReplyType::kNull,         ReplyType::kSimpleString,
                                       ReplyType::kError,        ReplyType::kBulk};
  for (std::size_t split = 0; split <= stream.size(); ++split) {
    std::string buf;
    std::vector<ReplyType> got;
    auto drain = [&] {
      for (;;) {
        const Reply r = parse_reply(buf);
        if (r.status != ParseStatus::kComplete) {
          ASSERT_EQ(r.status, ParseStatus::kNeedMore);
          return;
        }
        got.push_back(r.type);
        buf.erase(0, r.consumed);
      }
    };
    buf.append(stream, 0, split);
    drain();
    buf.append(stream, split);
    drain();
    EXPECT_EQ(got, want) << "split at " << split;
    EXPECT_TRUE(buf.empty());
  }
}

TEST(RespParse, MalformedInputIsBad) {
  for (const char* bad : {"?what\r\n", "$abc\r\n", "$-2\r\n", "$3\r\nfooXY", ":\r\n", ":12a\r\n",
                          "+OK\rX", "*-5\r\n", "x"}) {
    EXPECT_EQ(parse_reply(bad).status, ParseStatus::kBad) << bad;
  }
  // Nesting beyond the depth limit.
  std::string deep;
  for (int i = 0; i <= kMaxDepth + 1; ++i) deep += "*1\r\n";
  deep += ":1\r\n";
  EXPECT_EQ(parse_reply(deep).status, ParseStatus::kBad);
}

}  // namespace
}  // namespace kv::bench::resp
