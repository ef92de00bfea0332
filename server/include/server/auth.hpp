// Authentication, roles and tenant quotas of kovan-server (docs/SECURITY.md).
//
//   * Passwords are stored as salted PBKDF2-HMAC-SHA256 hashes in a self-describing text
//     form, "pbkdf2-sha256$ITERATIONS$SALT_B64$HASH_B64" (OpenSSL's libcrypto); checking
//     one compares the derived bytes in constant time (CRYPTO_memcmp).
//   * The users file (--users FILE) has one user per line: NAME ROLE HASH [KEY=VALUE...],
//     '#' starts a comment. Options: prefix=P (key-prefix restriction) and the quotas
//     max_connections=N, max_txns=N, max_bytes=SIZE, rps=N, burst=N.
//   * A Tenant is the live state of one user name: its current settings (replaced by a
//     reload) and its quota counters (kept across reloads).
//   * FailureDelay slows failed authentications per client address.
//
// Thread safety: UserRegistry, Tenant and FailureDelay are safe for concurrent use (a
// mutex each, plus relaxed atomics for the quota counters, which publish no other data).
// The free functions are reentrant.
#pragma once

#include <atomic>
#include <chrono>
#include <cstdint>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

namespace kv::server {

enum class Role : std::uint8_t { kRead, kReadWrite, kAdmin };

[[nodiscard]] std::string_view role_name(Role r) noexcept;
[[nodiscard]] std::optional<Role> parse_role(std::string_view text) noexcept;

// Limits of one tenant; 0 means unlimited.
struct Quota {
  std::uint32_t max_connections = 0;  // authenticated connections at once
  std::uint32_t max_txns = 0;         // interactive transactions open at once
  std::uint64_t max_bytes = 0;        // bytes written and not yet deleted (see SECURITY.md)
  std::uint32_t rps = 0;              // requests per second (token bucket refill rate)
  std::uint32_t burst = 0;            // bucket size; 0: equal to rps
};

struct UserEntry {
  std::string name;
  Role role = Role::kRead;
  std::string hash;    // "pbkdf2-sha256$..."
  std::string prefix;  // empty: every key
  Quota quota;
};

inline constexpr std::uint32_t kDefaultPbkdf2Iterations = 200'000;

// Equality of two byte strings in time that depends only on their lengths (CRYPTO_memcmp
// over the common length; a length mismatch is false).
[[nodiscard]] bool constant_time_equal(std::string_view a, std::string_view b) noexcept;

// A fresh random salt and the PBKDF2 hash of `password` in the text form above. Throws
// std::runtime_error when libcrypto fails (no randomness).
[[nodiscard]] std::string hash_password(std::string_view password,
                                        std::uint32_t iterations = kDefaultPbkdf2Iterations);
// True when `hash` is well formed and `password` matches it.
[[nodiscard]] bool verify_password(std::string_view password, std::string_view hash);
// True when `hash` is a well-formed hash string (used when the file is loaded).
[[nodiscard]] bool valid_hash(std::string_view hash);

// Parses the users file's text. On error returns nullopt and sets `error` to a message
// naming the line.
[[nodiscard]] std::optional<std::vector<UserEntry>> parse_users(std::string_view text,
                                                                std::string& error);
[[nodiscard]] std::optional<std::vector<UserEntry>> load_users_file(const std::string& path,
                                                                    std::string& error);

// The bearer token in `path` (surrounding whitespace removed); empty with `error` set when
// the file cannot be read, is empty, or holds a token shorter than 16 characters.
[[nodiscard]] std::string load_token_file(const std::string& path, std::string& error);
// True when an HTTP request head carries "Authorization: Bearer <token>" with exactly
// `token` (compared in constant time).
[[nodiscard]] bool bearer_matches(std::string_view request_head, std::string_view token) noexcept;

// True when `key` lies in the key space of `prefix` (every key when it is empty).
[[nodiscard]] bool key_allowed(std::string_view prefix, std::string_view key) noexcept;
// True when the range [start, end) (end empty: no upper bound) lies inside the key space
// of `prefix`.
[[nodiscard]] bool range_allowed(std::string_view prefix, std::string_view start,
                                 std::string_view end) noexcept;

class Tenant {
 public:
  explicit Tenant(std::string name) : name_(std::move(name)) {}

  [[nodiscard]] const std::string& name() const noexcept { return name_; }
  // The current settings; nullptr once the user was removed by a reload.
  [[nodiscard]] std::shared_ptr<const UserEntry> settings() const;
  // Bumped by every reload that changed or removed this user (relaxed: a connection that
  // sees the old value uses the old settings for one more request).
  [[nodiscard]] std::uint64_t version() const noexcept {
    return version_.load(std::memory_order_relaxed);
  }
  void set_settings(std::shared_ptr<const UserEntry> s);

  // Quota counters. The acquire functions take one unit when under `limit` (0: none) and
  // report false otherwise; every successful acquire is paired with one release.
  [[nodiscard]] bool acquire_connection(std::uint32_t limit) noexcept;
  void release_connection() noexcept;
  [[nodiscard]] bool acquire_txn(std::uint32_t limit) noexcept;
  void release_txns(std::size_t n) noexcept;
  // Bytes stored: charge() adds (may go over the limit: the check is before the write),
  // credit() subtracts what deletes and overwrites gave back (never below 0).
  [[nodiscard]] bool bytes_over(std::uint64_t limit) const noexcept;
  void charge(std::uint64_t n) noexcept;
  void credit(std::uint64_t n) noexcept;
  [[nodiscard]] std::uint64_t bytes() const noexcept {
    return bytes_.load(std::memory_order_relaxed);
  }
  [[nodiscard]] std::uint32_t connections() const noexcept {
    return connections_.load(std::memory_order_relaxed);
  }
  [[nodiscard]] std::uint32_t txns() const noexcept {
    return txns_.load(std::memory_order_relaxed);
  }
  // Token bucket: true when a request may run now; otherwise false and `retry_after` is
  // how long until a token is available.
  [[nodiscard]] bool take_token(std::uint32_t rps, std::uint32_t burst,
                                std::chrono::steady_clock::time_point now,
                                std::chrono::milliseconds& retry_after);

 private:
  const std::string name_;
  mutable std::mutex mu_;  // guards settings_ and the bucket
  std::shared_ptr<const UserEntry> settings_;
  double tokens_ = -1;  // < 0: the bucket starts full on first use
  std::chrono::steady_clock::time_point refilled_{};
  std::atomic<std::uint64_t> version_{0};
  std::atomic<std::uint32_t> connections_{0};
  std::atomic<std::uint32_t> txns_{0};
  std::atomic<std::uint64_t> bytes_{0};
};

// The users of --users: a map of tenants by name, replaced as a whole by reload().
class UserRegistry {
 public:
  explicit UserRegistry(std::string path) : path_(std::move(path)) {}
  // Reads the file again: adds, changes and removes users (their tenants keep their
  // counters). On error keeps the current users and returns false with `error` set.
  bool reload(std::string& error);
  void set_users(std::vector<UserEntry> users);
  // The tenant of `name` when that user exists now, else nullptr.
  [[nodiscard]] std::shared_ptr<Tenant> find(std::string_view name) const;
  [[nodiscard]] const std::string& path() const noexcept { return path_; }
  [[nodiscard]] std::size_t size() const;

 private:
  const std::string path_;
  mutable std::mutex mu_;
  std::unordered_map<std::string, std::shared_ptr<Tenant>> tenants_;  // present users only
};

// Per client address: how long the answer to a failed authentication is held. The n-th
// failure in a row from one address waits base * 2^(n-1) (at most `cap`) after the later
// of now and the previous failure's answer, so one address gets at most one failure answer
// per delay however many connections it opens. A success from the address, or kForget
// without a failure, resets it.
class FailureDelay {
 public:
  using Clock = std::chrono::steady_clock;
  static constexpr auto kBase = std::chrono::milliseconds(200);
  static constexpr auto kCap = std::chrono::milliseconds(5000);
  static constexpr auto kForget = std::chrono::seconds(60);
  static constexpr std::size_t kMaxPeers = 100'000;

  // Records a failure of `peer` at `now`; returns when its answer may be sent.
  Clock::time_point failed(const std::string& peer, Clock::time_point now);
  void succeeded(const std::string& peer);

 private:
  struct Entry {
    std::uint32_t failures = 0;
    Clock::time_point release{};  // answer time of the latest failure
  };
  std::mutex mu_;
  std::unordered_map<std::string, Entry> peers_;
};

}  // namespace kv::server
