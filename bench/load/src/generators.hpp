// Random sources, key choosers and the operation mixes of kovan-bench's workloads.
//
// Key choosers follow YCSB's core generators:
//   - uniform: every record equally likely;
//   - zipfian: record popularity follows Zipf's law with constant theta (0.99 by default),
//     drawn with the rejection-free method of Gray et al., "Quickly Generating
//     Billion-Record Synthetic Databases" (SIGMOD 1994), which YCSB uses. The popularity
//     rank is then mapped to a record through a fixed affine permutation of [0, n), so the
//     hot records are spread over the key space instead of being the lowest keys (YCSB's
//     "scrambled" zipfian does the same with a hash);
//   - latest: the most recently inserted records are the most popular (rank r maps to
//     record n - 1 - r, with n the current record count).
// The zipfian generator supports a record count that grows (inserts in YCSB D and E): the
// zeta sum is extended incrementally when n grows.
//
// Thread safety: every type here is a plain value used by one thread; kovan-bench gives
// each thread its own, seeded from --seed and the thread's index.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

namespace kv::bench {

// xoshiro256** seeded through splitmix64: fast, good enough for load generation, and
// reproducible for a given seed.
class Rng {
 public:
  explicit Rng(std::uint64_t seed) noexcept;
  [[nodiscard]] std::uint64_t next() noexcept;
  // Uniform in [0, bound); bound > 0.
  [[nodiscard]] std::uint64_t below(std::uint64_t bound) noexcept;
  // Uniform in [0, 1).
  [[nodiscard]] double unit() noexcept;

 private:
  std::uint64_t s_[4];
};

class ZipfianGenerator {
 public:
  static constexpr double kYcsbTheta = 0.99;
  // Ranks in [0, items); items >= 1.
  explicit ZipfianGenerator(std::uint64_t items, double theta = kYcsbTheta);
  // A rank in [0, items): 0 is the most popular. `items` may grow between calls (never
  // shrink below the count given at construction); the constants are updated then.
  [[nodiscard]] std::uint64_t next(Rng& rng, std::uint64_t items);
  [[nodiscard]] std::uint64_t next(Rng& rng) { return next(rng, items_); }
  [[nodiscard]] std::uint64_t items() const noexcept { return items_; }
  // The probability of rank r among `items` ranks (for tests): 1 / ((r+1)^theta * zeta).
  [[nodiscard]] double probability(std::uint64_t rank) const;

 private:
  void grow(std::uint64_t items);

  double theta_;
  std::uint64_t items_ = 0;
  double zeta2_ = 0;
  double zetan_ = 0;
  double alpha_ = 0;
  double eta_ = 0;
};

enum class Distribution : std::uint8_t { kUniform, kZipfian, kLatest };
[[nodiscard]] std::optional<Distribution> parse_distribution(std::string_view name);
[[nodiscard]] std::string_view distribution_name(Distribution d);

// Chooses an existing record among `count` records (count >= 1).
class KeyChooser {
 public:
  KeyChooser(Distribution d, std::uint64_t initial_count);
  [[nodiscard]] std::uint64_t next(Rng& rng, std::uint64_t count);

 private:
  Distribution d_;
  ZipfianGenerator zipf_;
  std::uint64_t perm_mul_ = 1;  // coprime with perm_n_
  std::uint64_t perm_add_ = 0;
  std::uint64_t perm_n_ = 0;
};

// The permutation used for zipfian: record = (mul * rank + add) mod n, mul coprime with n.
[[nodiscard]] std::uint64_t permutation_multiplier(std::uint64_t n);

// Operations a workload issues.
enum class OpKind : std::uint8_t {
  kRead,    // GET key
  kUpdate,  // PUT/SET an existing key
  kInsert,  // PUT/SET a new key (the record count grows)
  kScan,    // SCAN from a key, up to a random length (kovan only)
  kRmw,     // read a key, then write it (two round trips)
  kTxn,     // multi-key read-modify-write transaction (kovan only)
};
inline constexpr int kOpKinds = 6;
[[nodiscard]] std::string_view op_name(OpKind k);

// Proportions of each operation (they sum to 1) and the default key distribution.
struct Mix {
  double read = 0;
  double update = 0;
  double insert = 0;
  double scan = 0;
  double rmw = 0;
  double txn = 0;
  Distribution distribution = Distribution::kZipfian;
  std::uint32_t max_scan_length = 100;  // scans draw a length uniformly in [1, max]
};

// Workload names: ycsb-a .. ycsb-f, get, set, mixed (read_ratio reads, the rest updates),
// txn. Returns nullopt for an unknown name.
[[nodiscard]] std::optional<Mix> workload_mix(std::string_view name, double read_ratio = 0.5);
// Draws one operation from the mix.
[[nodiscard]] OpKind choose_op(const Mix& mix, Rng& rng);
// True when the workload needs operations that only the kovan:// target offers.
[[nodiscard]] bool needs_kovan(const Mix& mix);

// Record keys: "user" followed by the record number zero-padded to 12 digits, so that
// key order equals record order (scans in YCSB E read consecutive records).
[[nodiscard]] std::string record_key(std::uint64_t record);
void record_key(std::uint64_t record, std::string& out);

}  // namespace kv::bench
