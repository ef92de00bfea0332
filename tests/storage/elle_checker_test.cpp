// The list-append checker itself: known-bad histories must be rejected with the cycle,
// known-good ones accepted.
#include <gtest/gtest.h>

#include "elle.hpp"

namespace kv::storage::elle {
namespace {

MicroOp app(std::string k, std::int64_t v) { return MicroOp{true, std::move(k), v, {}}; }
MicroOp rd(std::string k, std::vector<std::int64_t> l) {
  return MicroOp{false, std::move(k), 0, std::move(l)};
}

TEST(ElleChecker, AcceptsSerialHistory) {
  std::vector<Txn> h = {
      Txn{{app("x", 1), rd("y", {})}, 1, 2},
      Txn{{rd("x", {1}), app("y", 2)}, 3, 4},
      Txn{{rd("x", {1}), rd("y", {2})}, 5, 6},
  };
  Report r = check(h, {{"x", {1}}, {"y", {2}}});
  EXPECT_TRUE(r.ok) << r.problem;
}

TEST(ElleChecker, DetectsWriteSkewCycle) {
  // T0 reads y empty and appends x; T1 reads x empty and appends y: rw edges both ways.
  std::vector<Txn> h = {
      Txn{{rd("y", {}), app("x", 1)}, 1, 4},
      Txn{{rd("x", {}), app("y", 2)}, 2, 3},
  };
  Report r = check(h, {{"x", {1}}, {"y", {2}}});
  ASSERT_FALSE(r.ok);
  EXPECT_NE(r.problem.find("cycle"), std::string::npos) << r.problem;
  EXPECT_NE(r.problem.find("rw(x)"), std::string::npos) << r.problem;
  EXPECT_NE(r.problem.find("rw(y)"), std::string::npos) << r.problem;
}

TEST(ElleChecker, DetectsCircularInformationFlow) {
  // G1c: T0 -wr(x)-> T1 and T1 -wr(y)-> T0.
  std::vector<Txn> h = {
      Txn{{app("x", 1), rd("y", {2})}, 1, 4},
      Txn{{app("y", 2), rd("x", {1})}, 2, 3},
  };
  Report r = check(h, {{"x", {1}}, {"y", {2}}});
  ASSERT_FALSE(r.ok);
  EXPECT_NE(r.problem.find("wr("), std::string::npos) << r.problem;
}

TEST(ElleChecker, DetectsRealTimeViolation) {
  // T1 starts after T0 ended but does not see T0's append: rt T0->T1, rw T1->T0.
  std::vector<Txn> h = {
      Txn{{app("x", 1)}, 1, 2},
      Txn{{rd("x", {})}, 3, 4},
  };
  EXPECT_FALSE(check(h, {{"x", {1}}}).ok);
  EXPECT_TRUE(check(h, {{"x", {1}}}, /*real_time=*/false).ok);  // only strictness is broken
}

TEST(ElleChecker, DetectsNonPrefixReadAndPhantomValue) {
  std::vector<Txn> h = {
      Txn{{app("x", 1)}, 1, 2}, Txn{{app("x", 2)}, 3, 4},
      Txn{{rd("x", {2})}, 5, 6},  // skipped 1: not a prefix of [1, 2]
  };
  EXPECT_FALSE(check(h, {{"x", {1, 2}}}).ok);
  std::vector<Txn> h2 = {Txn{{app("x", 1)}, 1, 2}};
  Report r = check(h2, {{"x", {1, 7}}});  // 7 came from no committed transaction
  ASSERT_FALSE(r.ok);
  EXPECT_NE(r.problem.find("7"), std::string::npos);
}

TEST(ElleChecker, DetectsLostUpdate) {
  // Two committed appends to x, but the final list holds only the second.
  std::vector<Txn> h = {
      Txn{{app("x", 1)}, 1, 3},
      Txn{{app("x", 2)}, 2, 4},
  };
  Report r = check(h, {{"x", {2}}});
  ASSERT_FALSE(r.ok);
  EXPECT_NE(r.problem.find("lost update"), std::string::npos) << r.problem;
  EXPECT_TRUE(check(h, {{"x", {1, 2}}}).ok);
}

}  // namespace
}  // namespace kv::storage::elle
