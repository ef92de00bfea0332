// Model-based randomized test: long single-threaded random op streams against a std::map
// model that tracks etcd metadata (create_revision, mod_revision, version).
#include <gtest/gtest.h>

#include <algorithm>
#include <map>
#include <optional>
#include <random>
#include <string>
#include <vector>

#include "storage/engine.hpp"
#include "test_util.hpp"

namespace kv::storage {
namespace {

using testing::cat;

struct Meta {
  std::string value;
  Revision create = 0;
  Revision mod = 0;
  std::int64_t version = 0;
};
using Model = std::map<std::string, Meta>;

void model_put(Model& m, const std::string& k, const std::string& v, Revision rev) {
  auto it = m.find(k);
  if (it == m.end()) {
    m[k] = Meta{v, rev, rev, 1};
  } else {
    it->second.value = v;
    it->second.mod = rev;
    ++it->second.version;
  }
}

void expect_kv(const KeyValue& kv, const std::string& k, const Meta& m, bool with_value = true) {
  EXPECT_EQ(kv.key, k);
  if (with_value) {
    EXPECT_EQ(kv.value, m.value) << k;
  }
  EXPECT_EQ(kv.create_revision, m.create) << k;
  EXPECT_EQ(kv.mod_revision, m.mod) << k;
  EXPECT_EQ(kv.version, m.version) << k;
}

class ModelTest : public ::testing::TestWithParam<GcPolicy> {};

TEST_P(ModelTest, RandomOpsMatchStdMap) {
  Options o;
  o.background_sweeper = false;
  o.gc_policy = GetParam();
  Engine e(o);
  Model m;
  std::mt19937_64 rng(12345);
  auto key = [&] { return cat("k", rng() % 40); };
  auto pick = [&](int n) { return static_cast<int>(rng() % static_cast<unsigned>(n)); };
  Revision rev = 1;
  for (int step = 0; step < 20000; ++step) {
    const int op = pick(100);
    if (op < 30) {
      const std::string k = key(), v = cat("v", step);
      auto r = e.put(k, v, pick(2) == 0);
      ASSERT_TRUE(r.ok());
      ASSERT_EQ(r->revision, rev + 1);
      rev = r->revision;
      model_put(m, k, v, rev);
    } else if (op < 40) {
      const std::string k = key();
      auto r = e.del(k);
      ASSERT_TRUE(r.ok());
      const bool had = m.erase(k) == 1;
      ASSERT_EQ(r->deleted, had ? 1 : 0);
      if (had) rev = r->revision;
    } else if (op < 43) {
      std::string a = key(), b = key();
      if (b < a) std::swap(a, b);
      auto r = e.delete_range(a, b);
      ASSERT_TRUE(r.ok());
      std::int64_t n = 0;
      for (auto it = m.lower_bound(a); it != m.end() && it->first < b;) {
        it = m.erase(it);
        ++n;
      }
      ASSERT_EQ(r->deleted, n);
      if (n > 0) rev = r->revision;
    } else if (op < 70) {
      const std::string k = key();
      auto r = e.get(k);
      auto it = m.find(k);
      if (it == m.end()) {
        ASSERT_EQ(r.code(), StatusCode::kNotFound);
      } else {
        ASSERT_TRUE(r.ok());
        expect_kv(*r, k, it->second);
      }
    } else if (op < 85) {
      std::string a = key(), b = pick(4) == 0 ? std::string() : key();
      if (!b.empty() && b < a) std::swap(a, b);
      ScanOptions so;
      so.limit = static_cast<std::size_t>(pick(4) == 0 ? 0 : pick(6));
      so.reverse = pick(2) == 0;
      so.keys_only = pick(4) == 0;
      auto r = e.scan(a, b, so);
      ASSERT_TRUE(r.ok());
      std::vector<std::pair<std::string, Meta>> want;
      for (auto it = m.lower_bound(a); it != m.end() && (b.empty() || it->first < b); ++it) {
        want.emplace_back(it->first, it->second);
      }
      if (so.reverse) std::reverse(want.begin(), want.end());
      const bool cut = so.limit != 0 && want.size() > so.limit;
      EXPECT_EQ(r->count, want.size());  // the whole range, not capped by the limit
      if (cut) want.resize(so.limit);
      ASSERT_EQ(r->more, cut);
      ASSERT_EQ(r->kvs.size(), want.size());
      for (std::size_t i = 0; i < want.size(); ++i) {
        expect_kv(r->kvs[i], want[i].first, want[i].second, !so.keys_only);
      }
      EXPECT_EQ(r->revision, rev);
    } else if (op < 92) {
      // Conditional put on version.
      const std::string k = key();
      auto it = m.find(k);
      const std::int64_t ver = it == m.end() ? 0 : it->second.version;
      const bool expect_success = pick(2) == 0;
      CondTxn req;
      Compare c;
      c.key = k;
      c.target = Compare::Target::kVersion;
      c.op = Compare::Op::kEqual;
      c.number = expect_success ? ver : ver + 1;
      req.compare = {c};
      TxnOp put;
      put.type = TxnOp::Type::kPut;
      put.key = k;
      put.value = cat("c", step);
      req.success = {put};
      auto r = e.txn(req);
      ASSERT_TRUE(r.ok());
      ASSERT_EQ(r->succeeded, expect_success);
      if (expect_success) {
        rev = r->revision;
        model_put(m, k, put.value, rev);
      } else {
        ASSERT_EQ(r->revision, rev);
      }
    } else {
      // Interactive transaction with a few buffered ops, then commit or abort.
      auto tr = e.begin(pick(2) == 0 ? Isolation::kSerializable : Isolation::kSnapshot);
      ASSERT_TRUE(tr.ok());
      Transaction t = std::move(tr).value();
      Model shadow = m;
      std::map<std::string, std::optional<std::string>> writes;
      const int n = 1 + pick(5);
      for (int i = 0; i < n; ++i) {
        const std::string k = key();
        if (pick(3) == 0) {
          ASSERT_TRUE(t.del(k).ok());
          writes[k] = std::nullopt;
          shadow.erase(k);
        } else if (pick(2) == 0) {
          const std::string v = cat("t", step) + cat(".", i);
          ASSERT_TRUE(t.put(k, v).ok());
          writes[k] = v;
          shadow[k].value = v;
        } else {
          auto r = t.get(k);
          auto it = shadow.find(k);
          if (it == shadow.end()) {
            ASSERT_EQ(r.code(), StatusCode::kNotFound);
          } else {
            ASSERT_TRUE(r.ok());
            ASSERT_EQ(r->value, it->second.value);
          }
        }
      }
      if (pick(4) == 0) {
        ASSERT_TRUE(t.abort().ok());
        continue;
      }
      auto c = t.commit();
      ASSERT_TRUE(c.ok()) << c.status().to_string();  // single-threaded: never conflicts
      bool wrote = false;
      for (auto& [k, v] : writes) {
        if (v) {
          model_put(m, k, *v, c.value());
          wrote = true;
        } else if (m.erase(k) == 1) {
          wrote = true;
        }
      }
      if (!writes.empty()) {
        ASSERT_GT(c.value(), rev);
        rev = c.value();
      } else {
        ASSERT_EQ(c.value(), rev);
      }
      (void)wrote;
    }
    if (step % 1000 == 0) e.run_maintenance();
  }
  // Final full comparison, and GC left exactly one version per live key.
  e.run_maintenance();
  auto all = e.scan("", "");
  ASSERT_EQ(all->kvs.size(), m.size());
  std::size_t i = 0;
  for (auto& [k, meta] : m) expect_kv(all->kvs[i++], k, meta);
  EXPECT_EQ(e.stats().keys, m.size());
  EXPECT_EQ(e.stats().live_versions, m.size());
}

// A transaction's scans merge its snapshot with its own buffered writes (which win on equal
// keys, and hide deleted keys), in both directions, with and without a limit. The model is
// the committed map overlaid with the write set.
TEST(ModelTxnScan, MergesOwnWritesForwardAndReverse) {
  Options o;
  o.background_sweeper = false;
  Engine e(o);
  std::mt19937_64 rng(777);
  auto pick = [&](int n) { return static_cast<int>(rng() % static_cast<unsigned>(n)); };
  auto key = [&] { return cat("k", pick(30)); };
  std::map<std::string, std::string> committed;
  for (int round = 0; round < 300; ++round) {
    // Change the committed state a little.
    for (int i = 0; i < 3; ++i) {
      const std::string k = key();
      if (pick(3) == 0) {
        ASSERT_TRUE(e.del(k).ok());
        committed.erase(k);
      } else {
        const std::string v = cat("c", round);
        ASSERT_TRUE(e.put(k, v).ok());
        committed[k] = v;
      }
    }
    auto t = e.begin(pick(2) == 0 ? Isolation::kSerializable : Isolation::kSnapshot);
    ASSERT_TRUE(t.ok());
    std::map<std::string, std::string> view = committed;  // snapshot + own writes
    for (int i = pick(8); i > 0; --i) {
      const std::string k = key();
      if (pick(3) == 0) {
        ASSERT_TRUE(t->del(k).ok());
        view.erase(k);
      } else {
        const std::string v = cat("w", i);
        ASSERT_TRUE(t->put(k, v).ok());
        view[k] = v;
      }
    }
    for (int q = 0; q < 4; ++q) {
      std::string a = pick(4) == 0 ? std::string() : key();
      std::string b = pick(4) == 0 ? std::string() : key();
      if (!b.empty() && b < a) std::swap(a, b);
      ScanOptions so;
      so.reverse = pick(2) == 0;
      so.limit = static_cast<std::size_t>(pick(3) == 0 ? 0 : 1 + pick(5));
      std::vector<std::pair<std::string, std::string>> want;
      for (auto it = view.lower_bound(a); it != view.end() && (b.empty() || it->first < b); ++it) {
        want.emplace_back(it->first, it->second);
      }
      if (so.reverse) std::reverse(want.begin(), want.end());
      auto r = t->scan(a, b, so);
      ASSERT_TRUE(r.ok());
      ASSERT_EQ(r->count, want.size()) << a << ".." << b << (so.reverse ? " reverse" : "");
      const bool cut = so.limit != 0 && want.size() > so.limit;
      if (cut) want.resize(so.limit);
      ASSERT_EQ(r->more, cut);
      ASSERT_EQ(r->kvs.size(), want.size());
      for (std::size_t i = 0; i < want.size(); ++i) {
        ASSERT_EQ(r->kvs[i].key, want[i].first) << i << (so.reverse ? " reverse" : "");
        ASSERT_EQ(r->kvs[i].value, want[i].second) << want[i].first;
      }
    }
    ASSERT_TRUE(t->abort().ok());
  }
}

INSTANTIATE_TEST_SUITE_P(Policies, ModelTest,
                         ::testing::Values(GcPolicy::kInterval, GcPolicy::kWatermark),
                         [](const auto& param_info) {
                           return param_info.param == GcPolicy::kInterval ? "Interval"
                                                                          : "Watermark";
                         });

}  // namespace
}  // namespace kv::storage
