// Unit tests of the password hashes, the constant-time comparison, the users file parser
// and the key-prefix checks (server/auth.hpp).
#include "server/auth.hpp"

#include <gtest/gtest.h>

namespace kv::server {
namespace {

TEST(ConstantTimeEqual, ComparesEveryByte) {
  EXPECT_TRUE(constant_time_equal("", ""));
  EXPECT_TRUE(constant_time_equal("abcdef", "abcdef"));
  EXPECT_FALSE(constant_time_equal("abcdef", "abcdeg"));  // last byte
  EXPECT_FALSE(constant_time_equal("xbcdef", "abcdef"));  // first byte
  EXPECT_FALSE(constant_time_equal("abc", "abcd"));       // lengths
  EXPECT_FALSE(constant_time_equal("abcd", "abc"));
  const std::string a(32, '\0');
  std::string b = a;
  b[17] = '\x01';
  EXPECT_FALSE(constant_time_equal(a, b));  // bytes after a NUL count
}

TEST(PasswordHash, IsSaltedSelfDescribingAndVerifies) {
  const std::string h1 = hash_password("correct horse", 1000);
  const std::string h2 = hash_password("correct horse", 1000);
  EXPECT_EQ(h1.rfind("pbkdf2-sha256$1000$", 0), 0u) << h1;
  EXPECT_NE(h1, h2);  // a fresh salt each time
  EXPECT_TRUE(valid_hash(h1));
  EXPECT_TRUE(verify_password("correct horse", h1));
  EXPECT_TRUE(verify_password("correct horse", h2));
  EXPECT_FALSE(verify_password("correct horsf", h1));
  EXPECT_FALSE(verify_password("", h1));
  EXPECT_FALSE(verify_password("correct horse", "plaintext"));
  EXPECT_FALSE(verify_password("correct horse", "pbkdf2-sha256$1000$AAAA$AAAA"));
  EXPECT_FALSE(valid_hash("pbkdf2-sha256$10$" + h1.substr(19)));  // too few iterations
}

TEST(UsersFile, ParsesUsersOptionsAndComments) {
  const std::string h = hash_password("pw", 1000);
  std::string error;
  const auto users = parse_users("# comment\n\n  alice admin " + h + "  # admin\nbob read " + h +
                                     " prefix=app/ max_connections=3 max_txns=4 max_bytes=1MiB "
                                     "rps=100 burst=200\n",
                                 error);
  ASSERT_TRUE(users) << error;
  ASSERT_EQ(users->size(), 2u);
  EXPECT_EQ((*users)[0].name, "alice");
  EXPECT_EQ((*users)[0].role, Role::kAdmin);
  EXPECT_EQ((*users)[1].prefix, "app/");
  EXPECT_EQ((*users)[1].quota.max_connections, 3u);
  EXPECT_EQ((*users)[1].quota.max_txns, 4u);
  EXPECT_EQ((*users)[1].quota.max_bytes, 1u << 20);
  EXPECT_EQ((*users)[1].quota.rps, 100u);
  EXPECT_EQ((*users)[1].quota.burst, 200u);
}

TEST(UsersFile, RejectsBadLinesNamingTheLine) {
  const std::string h = hash_password("pw", 1000);
  const std::vector<std::pair<std::string, std::string>> cases = {
      {"alice admin", "line 1"},
      {"alice root " + h, "role 'root'"},
      {"alice admin secret", "hash"},
      {"\nalice admin " + h + " colour=blue", "line 2: unknown option 'colour'"},
      {"alice admin " + h + " rps=fast", "bad value"},
      {"alice admin " + h + "\nalice read " + h, "appears twice"},
      {"al ice admin " + h, "role 'ice'"},
  };
  for (const auto& [text, expected] : cases) {
    std::string error;
    EXPECT_FALSE(parse_users(text, error)) << text;
    EXPECT_NE(error.find(expected), std::string::npos) << error;
  }
}

TEST(KeyPrefix, KeysAndRangesMustStayInside) {
  EXPECT_TRUE(key_allowed("", "anything"));
  EXPECT_TRUE(key_allowed("app/", "app/x"));
  EXPECT_FALSE(key_allowed("app/", "app"));
  EXPECT_FALSE(key_allowed("app/", "apq/x"));
  EXPECT_TRUE(range_allowed("app/", "app/", "app0"));  // exactly the prefix's key space
  EXPECT_TRUE(range_allowed("app/", "app/a", "app/b"));
  EXPECT_FALSE(range_allowed("app/", "app/", ""));      // no upper bound
  EXPECT_FALSE(range_allowed("app/", "app/", "app1"));  // past it
  EXPECT_FALSE(range_allowed("app/", "a", "app/z"));    // starts before it
  EXPECT_TRUE(range_allowed("\xff", "\xff", ""));       // an all-0xFF prefix is unbounded
}

TEST(TokenBucket, RefusesPastTheBurstAndRefills) {
  Tenant t("t");
  const auto t0 = std::chrono::steady_clock::now();
  std::chrono::milliseconds retry{0};
  for (int i = 0; i < 5; ++i) EXPECT_TRUE(t.take_token(10, 5, t0, retry));
  EXPECT_FALSE(t.take_token(10, 5, t0, retry));
  EXPECT_GT(retry.count(), 0);
  EXPECT_LE(retry.count(), 101);
  EXPECT_TRUE(t.take_token(10, 5, t0 + std::chrono::milliseconds(110), retry));
}

TEST(BearerToken, MatchesOnlyTheExactToken) {
  const std::string head =
      "GET /metrics HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer s3cret-token-123\r\n\r\n";
  EXPECT_TRUE(bearer_matches(head, "s3cret-token-123"));
  EXPECT_FALSE(bearer_matches(head, "s3cret-token-12"));
  EXPECT_FALSE(bearer_matches(head, "s3cret-token-1234"));
  EXPECT_FALSE(bearer_matches("GET /metrics HTTP/1.1\r\n\r\n", "s3cret-token-123"));
  EXPECT_TRUE(bearer_matches("GET / HTTP/1.1\nauthorization:   Bearer abc\n\n", "abc"));
}

TEST(FailureDelay, GrowsPerPeerAndSerializesAnswers) {
  FailureDelay d;
  const auto t0 = std::chrono::steady_clock::now();
  const auto r1 = d.failed("10.0.0.1", t0);
  EXPECT_EQ(r1 - t0, FailureDelay::kBase);
  const auto r2 = d.failed("10.0.0.1", t0);  // at once, from another connection
  EXPECT_EQ(r2 - r1, 2 * FailureDelay::kBase);
  EXPECT_EQ(d.failed("10.0.0.2", t0) - t0, FailureDelay::kBase);  // other peers unaffected
  d.succeeded("10.0.0.1");
  EXPECT_EQ(d.failed("10.0.0.1", r2) - r2, FailureDelay::kBase);
  for (int i = 0; i < 20; ++i) (void)d.failed("10.0.0.3", t0);
  const auto last = d.failed("10.0.0.3", t0);
  const auto before = d.failed("10.0.0.3", t0);
  EXPECT_EQ(before - last, FailureDelay::kCap);
}

}  // namespace
}  // namespace kv::server
