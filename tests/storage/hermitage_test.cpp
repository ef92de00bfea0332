// Hermitage (Kleppmann) isolation cases, driven from one thread with several transaction
// handles. Each case runs at both isolation levels and asserts every read and which commit
// fails. Table "test" = keys "1" -> "10", "2" -> "20" (value predicates become scans that
// filter on the value).
#include <gtest/gtest.h>

#include <map>
#include <string>

#include "storage/engine.hpp"
#include "test_util.hpp"

namespace kv::storage {
namespace {

using testing::cat;

class Hermitage : public ::testing::TestWithParam<Isolation> {
 protected:
  void SetUp() override {
    Options o;
    o.background_sweeper = false;
    engine_ = std::make_unique<Engine>(o);
    ASSERT_TRUE(engine_->put("1", "10").ok());
    ASSERT_TRUE(engine_->put("2", "20").ok());
  }
  Transaction begin() {
    auto r = engine_->begin(GetParam());
    EXPECT_TRUE(r.ok());
    return std::move(r).value();
  }
  bool serializable() const { return GetParam() == Isolation::kSerializable; }

  // Reads key; "" means NOT_FOUND.
  static std::string read(Transaction& t, const std::string& k) {
    auto r = t.get(k);
    if (!r.ok()) {
      EXPECT_EQ(r.code(), StatusCode::kNotFound) << r.status().to_string();
      return "";
    }
    return r->value;
  }
  static std::map<std::string, std::string> all(Transaction& t) {
    auto r = t.scan("", "");
    EXPECT_TRUE(r.ok());
    std::map<std::string, std::string> m;
    for (auto& kv : r->kvs) m[kv.key] = kv.value;
    return m;
  }
  std::map<std::string, std::string> committed() {
    auto r = engine_->scan("", "");
    EXPECT_TRUE(r.ok());
    std::map<std::string, std::string> m;
    for (auto& kv : r->kvs) m[kv.key] = kv.value;
    return m;
  }
  static void put(Transaction& t, const std::string& k, const std::string& v) {
    ASSERT_TRUE(t.put(k, v).ok());
  }
  static StatusCode commit(Transaction& t) { return t.commit().code(); }

  using M = std::map<std::string, std::string>;
  std::unique_ptr<Engine> engine_;
};

// G0, dirty write: the final state comes from one transaction's writes, never a mix.
TEST_P(Hermitage, G0_DirtyWrite) {
  Transaction t1 = begin(), t2 = begin();
  put(t1, "1", "11");
  put(t2, "1", "12");
  put(t1, "2", "21");
  EXPECT_EQ(commit(t1), StatusCode::kOk);
  EXPECT_EQ(read(t2, "1"), "12");  // own write
  put(t2, "2", "22");
  if (serializable()) {
    // Blind writes serialize after t1 (ww order t1 -> t2 on both keys, no cycle).
    EXPECT_EQ(commit(t2), StatusCode::kOk);
    EXPECT_EQ(committed(), (M{{"1", "12"}, {"2", "22"}}));
  } else {
    EXPECT_EQ(commit(t2), StatusCode::kConflict);  // first committer wins
    EXPECT_EQ(committed(), (M{{"1", "11"}, {"2", "21"}}));
  }
}

// G1a, aborted read.
TEST_P(Hermitage, G1a_AbortedRead) {
  Transaction t1 = begin(), t2 = begin();
  put(t1, "1", "101");
  put(t1, "2", "201");
  EXPECT_EQ(all(t2), (M{{"1", "10"}, {"2", "20"}}));
  EXPECT_TRUE(t1.abort().ok());
  EXPECT_EQ(all(t2), (M{{"1", "10"}, {"2", "20"}}));
  EXPECT_EQ(commit(t2), StatusCode::kOk);
  EXPECT_EQ(committed(), (M{{"1", "10"}, {"2", "20"}}));
}

// G1b, intermediate read.
TEST_P(Hermitage, G1b_IntermediateRead) {
  Transaction t1 = begin(), t2 = begin();
  put(t1, "1", "101");
  EXPECT_EQ(read(t2, "1"), "10");
  put(t1, "1", "11");
  EXPECT_EQ(commit(t1), StatusCode::kOk);
  EXPECT_EQ(read(t2, "1"), "10");
  EXPECT_EQ(commit(t2), StatusCode::kOk);  // read-only never aborts
  EXPECT_EQ(committed(), (M{{"1", "11"}, {"2", "20"}}));
}

// G1c, circular information flow.
TEST_P(Hermitage, G1c_CircularInformationFlow) {
  Transaction t1 = begin(), t2 = begin();
  put(t1, "1", "11");
  put(t2, "2", "22");
  EXPECT_EQ(read(t1, "2"), "20");
  EXPECT_EQ(read(t2, "1"), "10");
  EXPECT_EQ(commit(t1), StatusCode::kOk);
  if (serializable()) {
    EXPECT_EQ(commit(t2), StatusCode::kConflict);  // read "1" was overwritten by t1
    EXPECT_EQ(committed(), (M{{"1", "11"}, {"2", "20"}}));
  } else {
    EXPECT_EQ(commit(t2), StatusCode::kOk);
    EXPECT_EQ(committed(), (M{{"1", "11"}, {"2", "22"}}));
  }
}

// OTV, observed transaction vanishes.
TEST_P(Hermitage, OTV_ObservedTransactionVanishes) {
  Transaction t1 = begin(), t2 = begin(), t3 = begin();
  put(t1, "1", "11");
  put(t1, "2", "19");
  put(t2, "1", "12");
  EXPECT_EQ(commit(t1), StatusCode::kOk);
  Transaction t4 = begin();  // begins after t1 committed
  EXPECT_EQ(read(t3, "1"), "10");
  EXPECT_EQ(read(t4, "1"), "11");
  put(t2, "2", "18");
  EXPECT_EQ(read(t3, "2"), "20");
  EXPECT_EQ(read(t4, "2"), "19");
  if (serializable()) {
    EXPECT_EQ(commit(t2), StatusCode::kOk);  // blind writes after t1
  } else {
    EXPECT_EQ(commit(t2), StatusCode::kConflict);
  }
  EXPECT_EQ(read(t3, "2"), "20");
  EXPECT_EQ(read(t4, "1"), "11");
  EXPECT_EQ(read(t4, "2"), "19");
  EXPECT_EQ(commit(t3), StatusCode::kOk);
  EXPECT_EQ(commit(t4), StatusCode::kOk);
}

// PMP, predicate-many-preceders (read variant).
TEST_P(Hermitage, PMP_PredicateManyPreceders) {
  Transaction t1 = begin(), t2 = begin();
  auto with_value = [](const M& m, const std::string& v) {
    M out;
    for (auto& [k, val] : m) {
      if (val == v) out[k] = val;
    }
    return out;
  };
  EXPECT_TRUE(with_value(all(t1), "30").empty());
  put(t2, "3", "30");
  EXPECT_EQ(commit(t2), StatusCode::kOk);
  EXPECT_EQ(all(t1), (M{{"1", "10"}, {"2", "20"}}));  // no phantom
  EXPECT_EQ(commit(t1), StatusCode::kOk);             // read-only
}

// PMP, write variant: t2 deletes by a predicate that t1's committed update changed.
TEST_P(Hermitage, PMP_Write) {
  Transaction t1 = begin(), t2 = begin();
  for (auto& [k, v] : all(t1)) put(t1, k, std::to_string(std::stoi(v) + 10));
  M seen = all(t2);
  EXPECT_EQ(seen, (M{{"1", "10"}, {"2", "20"}}));
  EXPECT_EQ(commit(t1), StatusCode::kOk);
  for (auto& [k, v] : seen) {
    if (v == "20") {
      ASSERT_TRUE(t2.del(k).ok());
    }
  }
  EXPECT_EQ(commit(t2), StatusCode::kConflict);
  EXPECT_EQ(committed(), (M{{"1", "20"}, {"2", "30"}}));
}

// P4, lost update.
TEST_P(Hermitage, P4_LostUpdate) {
  Transaction t1 = begin(), t2 = begin();
  EXPECT_EQ(read(t1, "1"), "10");
  EXPECT_EQ(read(t2, "1"), "10");
  put(t1, "1", "11");
  put(t2, "1", "11");
  EXPECT_EQ(commit(t1), StatusCode::kOk);
  EXPECT_EQ(commit(t2), StatusCode::kConflict);
}

// G-single, read skew.
TEST_P(Hermitage, GSingle_ReadSkew) {
  Transaction t1 = begin(), t2 = begin();
  EXPECT_EQ(read(t1, "1"), "10");
  EXPECT_EQ(read(t2, "1"), "10");
  EXPECT_EQ(read(t2, "2"), "20");
  put(t2, "1", "12");
  put(t2, "2", "18");
  EXPECT_EQ(commit(t2), StatusCode::kOk);
  EXPECT_EQ(read(t1, "2"), "20");  // not 18: no read skew
  EXPECT_EQ(commit(t1), StatusCode::kOk);
}

// G-single, write variant: t1 acts on a stale read of a key t2 rewrote.
TEST_P(Hermitage, GSingle_WritePredicate) {
  Transaction t1 = begin(), t2 = begin();
  EXPECT_EQ(read(t1, "1"), "10");
  EXPECT_EQ(all(t2), (M{{"1", "10"}, {"2", "20"}}));
  put(t2, "1", "12");
  put(t2, "2", "18");
  EXPECT_EQ(commit(t2), StatusCode::kOk);
  for (auto& [k, v] : all(t1)) {
    if (v == "20") {
      ASSERT_TRUE(t1.del(k).ok());
    }
  }
  EXPECT_EQ(commit(t1), StatusCode::kConflict);
  EXPECT_EQ(committed(), (M{{"1", "12"}, {"2", "18"}}));
}

// G2-item, write skew.
TEST_P(Hermitage, G2Item_WriteSkew) {
  Transaction t1 = begin(), t2 = begin();
  EXPECT_EQ(all(t1), (M{{"1", "10"}, {"2", "20"}}));
  EXPECT_EQ(all(t2), (M{{"1", "10"}, {"2", "20"}}));
  put(t1, "1", "11");
  put(t2, "2", "21");
  EXPECT_EQ(commit(t1), StatusCode::kOk);
  if (serializable()) {
    EXPECT_EQ(commit(t2), StatusCode::kConflict);
    EXPECT_EQ(committed(), (M{{"1", "11"}, {"2", "20"}}));
  } else {
    EXPECT_EQ(commit(t2), StatusCode::kOk);  // SI allows write skew
    EXPECT_EQ(committed(), (M{{"1", "11"}, {"2", "21"}}));
  }
}

// G2, anti-dependency cycles with predicates (phantoms).
TEST_P(Hermitage, G2_AntiDependencyPredicates) {
  Transaction t1 = begin(), t2 = begin();
  auto multiples_of_3 = [](const M& m) {
    int n = 0;
    for (auto& [k, v] : m) n += std::stoi(v) % 3 == 0 ? 1 : 0;
    return n;
  };
  EXPECT_EQ(multiples_of_3(all(t1)), 0);
  EXPECT_EQ(multiples_of_3(all(t2)), 0);
  put(t1, "3", "30");
  put(t2, "4", "42");
  EXPECT_EQ(commit(t1), StatusCode::kOk);
  if (serializable()) {
    EXPECT_EQ(commit(t2), StatusCode::kConflict);  // phantom "3" in t2's range
    EXPECT_EQ(committed(), (M{{"1", "10"}, {"2", "20"}, {"3", "30"}}));
  } else {
    EXPECT_EQ(commit(t2), StatusCode::kOk);
    EXPECT_EQ(committed(), (M{{"1", "10"}, {"2", "20"}, {"3", "30"}, {"4", "42"}}));
  }
}

// G2, two anti-dependency edges: t1 -rw-> t2 -wr-> t3 -rw-> t1.
TEST_P(Hermitage, G2_TwoEdges) {
  Transaction t1 = begin();
  EXPECT_EQ(all(t1), (M{{"1", "10"}, {"2", "20"}}));
  Transaction t2 = begin();
  put(t2, "2", "25");
  EXPECT_EQ(commit(t2), StatusCode::kOk);
  Transaction t3 = begin();
  EXPECT_EQ(all(t3), (M{{"1", "10"}, {"2", "25"}}));
  EXPECT_EQ(commit(t3), StatusCode::kOk);
  put(t1, "1", "0");
  if (serializable()) {
    EXPECT_EQ(commit(t1), StatusCode::kConflict);
  } else {
    EXPECT_EQ(commit(t1), StatusCode::kOk);
  }
}

// Phantom under a limited scan: the scan reports how many keys the whole range holds (its
// `count` is not capped by the limit), so the whole range is validated, not only the keys
// returned.
TEST_P(Hermitage, LimitedScanValidatesTheCountedRange) {
  Transaction t1 = begin();
  ScanOptions one;
  one.limit = 1;
  auto r = t1.scan("1", "", one);
  ASSERT_TRUE(r.ok());
  ASSERT_EQ(r->kvs.size(), 1u);
  EXPECT_EQ(r->kvs[0].key, "1");
  EXPECT_EQ(r->count, 2u);  // "1" and "2"
  EXPECT_TRUE(r->more);
  put(t1, "x", "1");
  ASSERT_TRUE(engine_->put("9", "90").ok());  // beyond the returned key, inside the range
  if (serializable()) {
    EXPECT_EQ(commit(t1), StatusCode::kConflict);  // t1's count (2) is now stale
  } else {
    EXPECT_EQ(commit(t1), StatusCode::kOk);
  }
  Transaction t2 = begin();
  auto r2 = t2.scan("1", "", one);
  ASSERT_TRUE(r2.ok());
  EXPECT_EQ(r2->count, serializable() ? 3u : 4u);  // "1", "2", "9" (+ t1's "x" under SI)
  put(t2, "y", "1");
  ASSERT_TRUE(engine_->put("0", "x").ok());  // outside the scanned range
  EXPECT_EQ(commit(t2), StatusCode::kOk);
}

INSTANTIATE_TEST_SUITE_P(BothLevels, Hermitage,
                         ::testing::Values(Isolation::kSerializable, Isolation::kSnapshot),
                         [](const auto& param_info) {
                           return param_info.param == Isolation::kSerializable ? "Serializable"
                                                                               : "Snapshot";
                         });

}  // namespace
}  // namespace kv::storage
