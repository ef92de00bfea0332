#include "server/auth.hpp"

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/rand.h>

#include <algorithm>
#include <charconv>
#include <fstream>
#include <sstream>
#include <stdexcept>

namespace kv::server {

namespace {

constexpr std::string_view kScheme = "pbkdf2-sha256";
constexpr std::size_t kSaltBytes = 16;
constexpr std::size_t kHashBytes = 32;
constexpr std::uint32_t kMinIterations = 1000;
constexpr std::uint32_t kMaxIterations = 100'000'000;

std::string b64_encode(const unsigned char* data, std::size_t n) {
  std::string out(4 * ((n + 2) / 3) + 1, '\0');
  const int len =
      EVP_EncodeBlock(reinterpret_cast<unsigned char*>(out.data()), data, static_cast<int>(n));
  out.resize(static_cast<std::size_t>(len));
  return out;
}

// Standard base64 with padding; nullopt when malformed.
std::optional<std::string> b64_decode(std::string_view text) {
  if (text.empty() || text.size() % 4 != 0) return std::nullopt;
  std::string out(text.size() / 4 * 3, '\0');
  const int len = EVP_DecodeBlock(reinterpret_cast<unsigned char*>(out.data()),
                                  reinterpret_cast<const unsigned char*>(text.data()),
                                  static_cast<int>(text.size()));
  if (len < 0) return std::nullopt;
  std::size_t n = static_cast<std::size_t>(len);
  // EVP_DecodeBlock counts the padding as zero bytes.
  if (text.back() == '=') --n;
  if (text.size() >= 2 && text[text.size() - 2] == '=') --n;
  out.resize(n);
  return out;
}

struct ParsedHash {
  std::uint32_t iterations = 0;
  std::string salt;
  std::string hash;
};

std::optional<ParsedHash> parse_hash(std::string_view text) {
  std::vector<std::string_view> parts;
  std::size_t at = 0;
  for (;;) {
    const auto dollar = text.find('$', at);
    parts.push_back(text.substr(at, dollar == std::string_view::npos ? text.npos : dollar - at));
    if (dollar == std::string_view::npos) break;
    at = dollar + 1;
  }
  if (parts.size() != 4 || parts[0] != kScheme) return std::nullopt;
  ParsedHash p;
  auto [ptr, ec] =
      std::from_chars(parts[1].data(), parts[1].data() + parts[1].size(), p.iterations);
  if (ec != std::errc() || ptr != parts[1].data() + parts[1].size()) return std::nullopt;
  if (p.iterations < kMinIterations || p.iterations > kMaxIterations) return std::nullopt;
  auto salt = b64_decode(parts[2]);
  auto hash = b64_decode(parts[3]);
  if (!salt || !hash || salt->size() < 8 || hash->size() != kHashBytes) return std::nullopt;
  p.salt = std::move(*salt);
  p.hash = std::move(*hash);
  return p;
}

std::string derive(std::string_view password, std::string_view salt, std::uint32_t iterations) {
  std::string out(kHashBytes, '\0');
  if (PKCS5_PBKDF2_HMAC(password.data(), static_cast<int>(password.size()),
                        reinterpret_cast<const unsigned char*>(salt.data()),
                        static_cast<int>(salt.size()), static_cast<int>(iterations), EVP_sha256(),
                        static_cast<int>(kHashBytes),
                        reinterpret_cast<unsigned char*>(out.data())) != 1) {
    throw std::runtime_error("PBKDF2 failed in libcrypto");
  }
  return out;
}

template <class T>
bool parse_number(std::string_view text, T& out) {
  auto [ptr, ec] = std::from_chars(text.data(), text.data() + text.size(), out);
  return ec == std::errc() && ptr == text.data() + text.size() && ptr != text.data();
}

// "123", "64k", "64KiB", "10MiB", "1G"... (binary multiples).
bool parse_size(std::string_view text, std::uint64_t& out) {
  std::size_t digits = 0;
  while (digits < text.size() && text[digits] >= '0' && text[digits] <= '9') ++digits;
  std::uint64_t n = 0;
  if (!parse_number(text.substr(0, digits), n)) return false;
  std::string unit(text.substr(digits));
  std::transform(unit.begin(), unit.end(), unit.begin(),
                 [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
  std::uint64_t factor = 0;
  if (unit.empty() || unit == "b") {
    factor = 1;
  } else if (unit == "k" || unit == "kb" || unit == "kib") {
    factor = 1ull << 10;
  } else if (unit == "m" || unit == "mb" || unit == "mib") {
    factor = 1ull << 20;
  } else if (unit == "g" || unit == "gb" || unit == "gib") {
    factor = 1ull << 30;
  } else {
    return false;
  }
  if (n > (1ull << 50) / factor) return false;
  out = n * factor;
  return true;
}

// The exclusive upper bound of the keys starting with `prefix`; empty when unbounded.
std::string prefix_end(std::string_view prefix) {
  std::string end(prefix);
  while (!end.empty() && static_cast<unsigned char>(end.back()) == 0xFF) end.pop_back();
  if (!end.empty()) end.back() = static_cast<char>(static_cast<unsigned char>(end.back()) + 1);
  return end;
}

bool valid_name(std::string_view name) {
  if (name.empty() || name.size() > 128) return false;
  return std::all_of(name.begin(), name.end(), [](unsigned char c) {
    return std::isalnum(c) != 0 || c == '_' || c == '-' || c == '.' || c == '@';
  });
}

}  // namespace

std::string_view role_name(Role r) noexcept {
  switch (r) {
    case Role::kRead:
      return "read";
    case Role::kReadWrite:
      return "readwrite";
    case Role::kAdmin:
      return "admin";
  }
  return "read";
}

std::optional<Role> parse_role(std::string_view text) noexcept {
  if (text == "read") return Role::kRead;
  if (text == "readwrite") return Role::kReadWrite;
  if (text == "admin") return Role::kAdmin;
  return std::nullopt;
}

bool constant_time_equal(std::string_view a, std::string_view b) noexcept {
  // The lengths are not secret (both are the fixed hash size in practice); the bytes are.
  if (a.size() != b.size()) return false;
  if (a.empty()) return true;
  return CRYPTO_memcmp(a.data(), b.data(), a.size()) == 0;
}

std::string hash_password(std::string_view password, std::uint32_t iterations) {
  iterations = std::clamp(iterations, kMinIterations, kMaxIterations);
  unsigned char salt[kSaltBytes];
  if (RAND_bytes(salt, sizeof salt) != 1) throw std::runtime_error("no randomness for the salt");
  const std::string_view salt_view(reinterpret_cast<const char*>(salt), sizeof salt);
  const std::string hash = derive(password, salt_view, iterations);
  return std::string(kScheme) + "$" + std::to_string(iterations) + "$" +
         b64_encode(salt, sizeof salt) + "$" +
         b64_encode(reinterpret_cast<const unsigned char*>(hash.data()), hash.size());
}

bool verify_password(std::string_view password, std::string_view hash) {
  const auto parsed = parse_hash(hash);
  if (!parsed) return false;
  return constant_time_equal(derive(password, parsed->salt, parsed->iterations), parsed->hash);
}

bool valid_hash(std::string_view hash) { return parse_hash(hash).has_value(); }

std::optional<std::vector<UserEntry>> parse_users(std::string_view text, std::string& error) {
  std::vector<UserEntry> users;
  std::istringstream in{std::string(text)};
  std::string line;
  int number = 0;
  auto fail = [&](const std::string& why) {
    error = "line " + std::to_string(number) + ": " + why;
    return std::nullopt;
  };
  while (std::getline(in, line)) {
    ++number;
    if (const auto hash = line.find('#'); hash != std::string::npos) line.resize(hash);
    std::istringstream words(line);
    std::vector<std::string> w;
    for (std::string word; words >> word;) w.push_back(std::move(word));
    if (w.empty()) continue;
    if (w.size() < 3) return fail("expected NAME ROLE HASH [OPTION=VALUE...]");
    UserEntry u;
    u.name = w[0];
    if (!valid_name(u.name)) {
      return fail("user name '" + u.name + "' must be 1-128 of [A-Za-z0-9_.@-]");
    }
    const auto role = parse_role(w[1]);
    if (!role) return fail("role '" + w[1] + "' is not read, readwrite or admin");
    u.role = *role;
    if (!valid_hash(w[2])) {
      return fail("the hash of '" + u.name +
                  "' is not pbkdf2-sha256$ITERATIONS$SALT$HASH (make one with "
                  "`kovan-server hash-password`)");
    }
    u.hash = w[2];
    for (std::size_t i = 3; i < w.size(); ++i) {
      const auto eq = w[i].find('=');
      if (eq == std::string::npos) return fail("option '" + w[i] + "' is not KEY=VALUE");
      const std::string key = w[i].substr(0, eq);
      const std::string value = w[i].substr(eq + 1);
      bool ok = true;
      if (key == "prefix") {
        u.prefix = value;
        ok = !value.empty();
      } else if (key == "max_connections") {
        ok = parse_number(value, u.quota.max_connections);
      } else if (key == "max_txns") {
        ok = parse_number(value, u.quota.max_txns);
      } else if (key == "max_bytes") {
        ok = parse_size(value, u.quota.max_bytes);
      } else if (key == "rps") {
        ok = parse_number(value, u.quota.rps);
      } else if (key == "burst") {
        ok = parse_number(value, u.quota.burst);
      } else {
        return fail("unknown option '" + key +
                    "' (known: prefix, max_connections, max_txns, max_bytes, rps, burst)");
      }
      if (!ok) return fail("bad value '" + value + "' for " + key);
    }
    for (const auto& other : users) {
      if (other.name == u.name) return fail("user '" + u.name + "' appears twice");
    }
    users.push_back(std::move(u));
  }
  return users;
}

std::optional<std::vector<UserEntry>> load_users_file(const std::string& path, std::string& error) {
  std::ifstream in(path);
  if (!in) {
    error = "cannot read the users file " + path;
    return std::nullopt;
  }
  std::stringstream s;
  s << in.rdbuf();
  std::string why;
  auto users = parse_users(s.str(), why);
  if (!users) error = path + ": " + why;
  return users;
}

std::string load_token_file(const std::string& path, std::string& error) {
  std::ifstream in(path);
  if (!in) {
    error = "cannot read " + path;
    return {};
  }
  std::stringstream s;
  s << in.rdbuf();
  std::string token = s.str();
  const auto first = token.find_first_not_of(" \t\r\n");
  const auto last = token.find_last_not_of(" \t\r\n");
  token = first == std::string::npos ? std::string() : token.substr(first, last - first + 1);
  if (token.size() < 16 || token.find_first_of(" \t\r\n") != std::string::npos) {
    error = path + " must hold one token of at least 16 characters without spaces";
    return {};
  }
  return token;
}

bool bearer_matches(std::string_view head, std::string_view token) noexcept {
  // Header names are case-insensitive: look for the line by a lower-cased copy's offsets.
  std::size_t at = 0;
  while (at < head.size()) {
    std::size_t eol = head.find('\n', at);
    if (eol == std::string_view::npos) eol = head.size();
    std::string_view line = head.substr(at, eol - at);
    if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
    at = eol + 1;
    constexpr std::string_view kName = "authorization:";
    if (line.size() < kName.size()) continue;
    bool same = true;
    for (std::size_t i = 0; i < kName.size(); ++i) {
      if (std::tolower(static_cast<unsigned char>(line[i])) != kName[i]) same = false;
    }
    if (!same) continue;
    std::string_view value = line.substr(kName.size());
    while (!value.empty() && (value.front() == ' ' || value.front() == '\t'))
      value.remove_prefix(1);
    while (!value.empty() && (value.back() == ' ' || value.back() == '\t')) value.remove_suffix(1);
    constexpr std::string_view kBearer = "Bearer ";
    if (value.substr(0, kBearer.size()) != kBearer) return false;
    return constant_time_equal(value.substr(kBearer.size()), token);
  }
  return false;
}

bool key_allowed(std::string_view prefix, std::string_view key) noexcept {
  return key.substr(0, prefix.size()) == prefix;
}

bool range_allowed(std::string_view prefix, std::string_view start, std::string_view end) noexcept {
  if (prefix.empty()) return true;
  if (!key_allowed(prefix, start)) return false;
  std::string bound;
  try {
    bound = prefix_end(prefix);
  } catch (...) {
    return false;
  }
  if (bound.empty()) return true;  // the prefix is all 0xFF: its key space is unbounded
  return !end.empty() && end <= bound;
}

// ---------------------------------------------------------------------------------------
// Tenant
// ---------------------------------------------------------------------------------------

std::shared_ptr<const UserEntry> Tenant::settings() const {
  std::lock_guard lock(mu_);
  return settings_;
}

void Tenant::set_settings(std::shared_ptr<const UserEntry> s) {
  std::lock_guard lock(mu_);
  settings_ = std::move(s);
  version_.fetch_add(1, std::memory_order_relaxed);
}

namespace {
// Takes one unit of `counter` when it is under `limit` (0: no limit). Relaxed: a counter
// publishes nothing; the compare-exchange loop never passes the limit.
bool acquire_under(std::atomic<std::uint32_t>& counter, std::uint32_t limit) noexcept {
  std::uint32_t cur = counter.load(std::memory_order_relaxed);
  do {
    if (limit != 0 && cur >= limit) return false;
  } while (!counter.compare_exchange_weak(cur, cur + 1, std::memory_order_relaxed));
  return true;
}

void release_n(std::atomic<std::uint32_t>& counter, std::uint32_t n) noexcept {
  std::uint32_t cur = counter.load(std::memory_order_relaxed);
  while (!counter.compare_exchange_weak(cur, cur >= n ? cur - n : 0, std::memory_order_relaxed)) {
  }
}
}  // namespace

bool Tenant::acquire_connection(std::uint32_t limit) noexcept {
  return acquire_under(connections_, limit);
}
void Tenant::release_connection() noexcept { release_n(connections_, 1); }
bool Tenant::acquire_txn(std::uint32_t limit) noexcept { return acquire_under(txns_, limit); }
void Tenant::release_txns(std::size_t n) noexcept {
  release_n(txns_, static_cast<std::uint32_t>(n));
}

bool Tenant::bytes_over(std::uint64_t limit) const noexcept {
  return limit != 0 && bytes_.load(std::memory_order_relaxed) >= limit;
}
void Tenant::charge(std::uint64_t n) noexcept { bytes_.fetch_add(n, std::memory_order_relaxed); }
void Tenant::credit(std::uint64_t n) noexcept {
  std::uint64_t cur = bytes_.load(std::memory_order_relaxed);
  while (!bytes_.compare_exchange_weak(cur, cur >= n ? cur - n : 0, std::memory_order_relaxed)) {
  }
}

bool Tenant::take_token(std::uint32_t rps, std::uint32_t burst,
                        std::chrono::steady_clock::time_point now,
                        std::chrono::milliseconds& retry_after) {
  if (rps == 0) return true;
  const double size = burst != 0 ? burst : rps;
  std::lock_guard lock(mu_);
  if (tokens_ < 0) {
    tokens_ = size;
  } else {
    const double secs = std::chrono::duration<double>(now - refilled_).count();
    if (secs > 0) tokens_ = std::min(size, tokens_ + secs * rps);
  }
  refilled_ = std::max(refilled_, now);
  if (tokens_ >= 1) {
    tokens_ -= 1;
    return true;
  }
  const double wait_ms = (1 - tokens_) * 1000.0 / rps;
  retry_after = std::chrono::milliseconds(static_cast<std::int64_t>(wait_ms) + 1);
  return false;
}

// ---------------------------------------------------------------------------------------
// UserRegistry
// ---------------------------------------------------------------------------------------

bool UserRegistry::reload(std::string& error) {
  auto users = load_users_file(path_, error);
  if (!users) return false;
  set_users(std::move(*users));
  return true;
}

void UserRegistry::set_users(std::vector<UserEntry> users) {
  std::lock_guard lock(mu_);
  std::unordered_map<std::string, std::shared_ptr<Tenant>> next;
  for (auto& u : users) {
    auto it = tenants_.find(u.name);
    std::shared_ptr<Tenant> t =
        it != tenants_.end() ? it->second : std::make_shared<Tenant>(u.name);
    const std::string name = u.name;
    t->set_settings(std::make_shared<const UserEntry>(std::move(u)));
    next.emplace(name, std::move(t));
  }
  for (auto& [name, t] : tenants_) {
    if (next.find(name) == next.end()) t->set_settings(nullptr);  // removed
  }
  tenants_ = std::move(next);
}

std::shared_ptr<Tenant> UserRegistry::find(std::string_view name) const {
  std::lock_guard lock(mu_);
  auto it = tenants_.find(std::string(name));
  return it == tenants_.end() ? nullptr : it->second;
}

std::size_t UserRegistry::size() const {
  std::lock_guard lock(mu_);
  return tenants_.size();
}

// ---------------------------------------------------------------------------------------
// FailureDelay
// ---------------------------------------------------------------------------------------

FailureDelay::Clock::time_point FailureDelay::failed(const std::string& peer,
                                                     Clock::time_point now) {
  std::lock_guard lock(mu_);
  if (peers_.size() >= kMaxPeers) {
    std::erase_if(peers_, [&](const auto& e) { return now - e.second.release > kForget; });
  }
  Entry& e = peers_[peer];
  if (e.failures > 0 && now - e.release > kForget) e.failures = 0;
  ++e.failures;
  const std::uint32_t shift = std::min<std::uint32_t>(e.failures - 1, 16);
  const auto delay = std::min<std::chrono::milliseconds>(kBase * (1u << shift), kCap);
  e.release = std::max(now, e.release) + delay;
  return e.release;
}

void FailureDelay::succeeded(const std::string& peer) {
  std::lock_guard lock(mu_);
  peers_.erase(peer);
}

}  // namespace kv::server
