#include "generators.hpp"

#include <algorithm>
#include <cmath>
#include <numeric>
#include <stdexcept>

namespace kv::bench {

namespace {

__extension__ typedef unsigned __int128 u128;

std::uint64_t splitmix64(std::uint64_t& x) noexcept {
  std::uint64_t z = (x += 0x9E3779B97F4A7C15ull);
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  return z ^ (z >> 31);
}

std::uint64_t rotl(std::uint64_t x, int k) noexcept { return (x << k) | (x >> (64 - k)); }

double zeta_range(std::uint64_t from, std::uint64_t to, double theta) {
  // sum over i in (from, to] of 1 / i^theta
  double sum = 0;
  for (std::uint64_t i = from + 1; i <= to; ++i)
    sum += 1.0 / std::pow(static_cast<double>(i), theta);
  return sum;
}

}  // namespace

Rng::Rng(std::uint64_t seed) noexcept {
  for (auto& s : s_) s = splitmix64(seed);
}

std::uint64_t Rng::next() noexcept {
  const std::uint64_t result = rotl(s_[1] * 5, 7) * 9;
  const std::uint64_t t = s_[1] << 17;
  s_[2] ^= s_[0];
  s_[3] ^= s_[1];
  s_[1] ^= s_[2];
  s_[0] ^= s_[3];
  s_[2] ^= t;
  s_[3] = rotl(s_[3], 45);
  return result;
}

std::uint64_t Rng::below(std::uint64_t bound) noexcept {
  // Lemire's multiply-shift; the bias (< bound / 2^64) is irrelevant here.
  return static_cast<std::uint64_t>((static_cast<u128>(next()) * bound) >> 64);
}

double Rng::unit() noexcept { return static_cast<double>(next() >> 11) * 0x1.0p-53; }

ZipfianGenerator::ZipfianGenerator(std::uint64_t items, double theta) : theta_(theta) {
  if (items == 0) throw std::invalid_argument("zipfian: items must be >= 1");
  if (!(theta > 0 && theta < 1)) throw std::invalid_argument("zipfian: theta must be in (0, 1)");
  zeta2_ = zeta_range(0, 2, theta_);
  alpha_ = 1.0 / (1.0 - theta_);
  grow(items);
}

void ZipfianGenerator::grow(std::uint64_t items) {
  zetan_ += zeta_range(items_, items, theta_);
  items_ = items;
  const double n = static_cast<double>(items_);
  eta_ = (1.0 - std::pow(2.0 / n, 1.0 - theta_)) / (1.0 - zeta2_ / zetan_);
}

std::uint64_t ZipfianGenerator::next(Rng& rng, std::uint64_t items) {
  if (items > items_) grow(items);
  const double u = rng.unit();
  const double uz = u * zetan_;
  if (uz < 1.0) return 0;
  if (items_ >= 2 && uz < 1.0 + std::pow(0.5, theta_)) return 1;
  const double r = static_cast<double>(items_) * std::pow(eta_ * u - eta_ + 1.0, alpha_);
  return std::min(static_cast<std::uint64_t>(r), items_ - 1);
}

double ZipfianGenerator::probability(std::uint64_t rank) const {
  return 1.0 / (std::pow(static_cast<double>(rank + 1), theta_) * zetan_);
}

std::optional<Distribution> parse_distribution(std::string_view name) {
  if (name == "uniform") return Distribution::kUniform;
  if (name == "zipfian") return Distribution::kZipfian;
  if (name == "latest") return Distribution::kLatest;
  return std::nullopt;
}

std::string_view distribution_name(Distribution d) {
  switch (d) {
    case Distribution::kUniform:
      return "uniform";
    case Distribution::kZipfian:
      return "zipfian";
    case Distribution::kLatest:
      return "latest";
  }
  return "?";
}

std::uint64_t permutation_multiplier(std::uint64_t n) {
  if (n <= 1) return 0;
  std::uint64_t mul = 0x9E3779B97F4A7C15ull % n;
  if (mul == 0) mul = 1;
  while (std::gcd(mul, n) != 1) mul = mul + 1 == n ? 1 : mul + 1;
  return mul;
}

KeyChooser::KeyChooser(Distribution d, std::uint64_t initial_count)
    : d_(d), zipf_(std::max<std::uint64_t>(initial_count, 1)) {}

std::uint64_t KeyChooser::next(Rng& rng, std::uint64_t count) {
  count = std::max<std::uint64_t>(count, 1);
  switch (d_) {
    case Distribution::kUniform:
      return rng.below(count);
    case Distribution::kLatest:
      return count - 1 - zipf_.next(rng, count);
    case Distribution::kZipfian: {
      const std::uint64_t rank = zipf_.next(rng, count);
      if (count != perm_n_) {
        perm_n_ = count;
        perm_mul_ = permutation_multiplier(count);
        perm_add_ = 0x632BE59BD9B4E019ull % count;
      }
      const auto prod = static_cast<u128>(perm_mul_) * rank + perm_add_;
      return static_cast<std::uint64_t>(prod % count);
    }
  }
  return 0;
}

std::string_view op_name(OpKind k) {
  switch (k) {
    case OpKind::kRead:
      return "read";
    case OpKind::kUpdate:
      return "update";
    case OpKind::kInsert:
      return "insert";
    case OpKind::kScan:
      return "scan";
    case OpKind::kRmw:
      return "rmw";
    case OpKind::kTxn:
      return "txn";
  }
  return "?";
}

std::optional<Mix> workload_mix(std::string_view name, double read_ratio) {
  Mix m;
  if (name == "ycsb-a") {
    m.read = 0.5;
    m.update = 0.5;
  } else if (name == "ycsb-b") {
    m.read = 0.95;
    m.update = 0.05;
  } else if (name == "ycsb-c") {
    m.read = 1.0;
  } else if (name == "ycsb-d") {
    m.read = 0.95;
    m.insert = 0.05;
    m.distribution = Distribution::kLatest;
  } else if (name == "ycsb-e") {
    m.scan = 0.95;
    m.insert = 0.05;
  } else if (name == "ycsb-f") {
    m.read = 0.5;
    m.rmw = 0.5;
  } else if (name == "get") {
    m.read = 1.0;
    m.distribution = Distribution::kUniform;
  } else if (name == "set") {
    m.update = 1.0;
    m.distribution = Distribution::kUniform;
  } else if (name == "mixed") {
    m.read = read_ratio;
    m.update = 1.0 - read_ratio;
    m.distribution = Distribution::kUniform;
  } else if (name == "txn") {
    m.txn = 1.0;
    m.distribution = Distribution::kUniform;
  } else {
    return std::nullopt;
  }
  return m;
}

OpKind choose_op(const Mix& mix, Rng& rng) {
  double u = rng.unit();
  const std::pair<double, OpKind> table[] = {
      {mix.read, OpKind::kRead}, {mix.update, OpKind::kUpdate}, {mix.insert, OpKind::kInsert},
      {mix.scan, OpKind::kScan}, {mix.rmw, OpKind::kRmw},       {mix.txn, OpKind::kTxn}};
  OpKind last = OpKind::kRead;
  for (const auto& [p, kind] : table) {
    if (p <= 0) continue;
    last = kind;
    if (u < p) return kind;
    u -= p;
  }
  return last;  // rounding: the last operation with a non-zero share
}

bool needs_kovan(const Mix& mix) { return mix.scan > 0 || mix.txn > 0; }

void record_key(std::uint64_t record, std::string& out) {
  char digits[12];
  for (int i = 11; i >= 0; --i) {
    digits[i] = static_cast<char>('0' + record % 10);
    record /= 10;
  }
  out.assign("user");
  out.append(digits, sizeof digits);
}

std::string record_key(std::uint64_t record) {
  std::string s;
  record_key(record, s);
  return s;
}

}  // namespace kv::bench
