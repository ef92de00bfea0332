// Coordination recipes on Kovan KV's leases, conditional transactions and watches: a
// session (a lease kept alive in the background), a distributed mutex and a leader
// election, in the manner of etcd's concurrency package (docs/CLIENT.md, "Recipes").
//
// The queue. A contender writes one key under the recipe's prefix, named after its
// session's lease and attached to it, only if the key does not exist yet (a conditional
// transaction). The key's create_revision is its place in the queue: the contender with the
// lowest one holds the mutex (or leads). Every other contender watches only the key just
// ahead of it (the greatest create_revision below its own) until that key is deleted, then
// looks again: each release wakes one waiter, not all of them (no thundering herd). A holder
// that dies stops renewing its lease; the server deletes its key when the lease expires,
// which wakes the next contender.
//
// Fencing. Holding the mutex is only as good as the session's lease: a holder paused longer
// than the TTL loses it. Writes that must happen only while holding it should be guarded by
// Mutex::is_owner() in a conditional transaction, which the server checks atomically.
//
// Thread safety: a Session, Mutex or Election is used by one thread at a time; several may
// share one Client.
#pragma once

#include <chrono>
#include <cstdint>
#include <memory>
#include <string>

#include "client/client.hpp"

namespace kv::recipes {

using client::Client;
using client::Result;
using client::Status;

// A lease granted for this process and kept alive in the background (LeaseKeepAlive) for
// as long as the Session lives. Destroying it (or close()) revokes the lease, which
// deletes every key attached to it: the mutexes held and the candidacies of this session.
class Session {
 public:
  [[nodiscard]] static Result<std::unique_ptr<Session>> create(Client& client,
                                                               std::int64_t ttl_seconds = 10);
  ~Session();
  Session(const Session&) = delete;
  Session& operator=(const Session&) = delete;

  [[nodiscard]] Client& client() const noexcept { return client_; }
  [[nodiscard]] std::uint64_t lease() const noexcept { return lease_; }
  [[nodiscard]] std::int64_t ttl_seconds() const noexcept { return ttl_; }
  // False once the lease is known lost (its keys are then gone or going).
  [[nodiscard]] bool alive() const;
  // Revokes the lease now. The keep-alive stops first.
  Status close();

 private:
  Session(Client& client, std::uint64_t lease, std::int64_t ttl);
  Client& client_;
  std::uint64_t lease_;
  std::int64_t ttl_;
  std::unique_ptr<client::LeaseKeepAlive> keepalive_;
  bool closed_ = false;
};

// The contender's key under `prefix` for `session` and the queue logic shared by Mutex and
// Election.
class Contender {
 public:
  Contender(Session& session, std::string prefix);

  // Puts this session's key (if it is not there yet) with `value`; the key's
  // create_revision becomes revision(). True when the key was created, false when this
  // session had it already (its value is then unchanged).
  [[nodiscard]] Result<bool> enqueue(const std::string& value);
  // Waits until no key under the prefix has a create_revision below revision(), watching
  // only the next key ahead. UNAVAILABLE with "timed out" after `timeout`;
  // LEASE_NOT_FOUND when the session's key vanished (the lease was lost).
  Status wait_turn(std::chrono::milliseconds timeout);
  // Deletes the key (the place in the queue).
  Status leave();

  [[nodiscard]] const std::string& key() const noexcept { return key_; }
  [[nodiscard]] std::uint64_t revision() const noexcept { return revision_; }
  [[nodiscard]] Session& session() const noexcept { return session_; }
  [[nodiscard]] const std::string& prefix() const noexcept { return prefix_; }

 private:
  Session& session_;
  std::string prefix_;
  std::string key_;
  std::uint64_t revision_ = 0;
};

// A distributed mutex under `prefix` (e.g. "locks/jobs/"): lock() returns once this session
// is first in the prefix's queue.
class Mutex {
 public:
  Mutex(Session& session, std::string prefix) : c_(session, std::move(prefix)) {}

  // Blocks until held (or `timeout`: UNAVAILABLE "timed out", and the place in the queue
  // is given up). Locking a mutex this session already holds returns at once.
  Status lock(std::chrono::milliseconds timeout = std::chrono::hours(24 * 365));
  Status unlock();

  // The key that represents the holder, and its create_revision: a fencing token that
  // grows with every new holder.
  [[nodiscard]] const std::string& key() const noexcept { return c_.key(); }
  [[nodiscard]] std::uint64_t revision() const noexcept { return c_.revision(); }
  // A compare that holds exactly while this Mutex is held (for conditional transactions).
  [[nodiscard]] client::Compare is_owner() const {
    return client::Compare::create_revision(c_.key(), client::Compare::Op::kEqual, c_.revision());
  }

 private:
  Contender c_;
};

// A leader election under `prefix`: the leader is the candidate with the lowest
// create_revision; its key's value is the leader's proclamation.
class Election {
 public:
  Election(Session& session, std::string prefix) : c_(session, std::move(prefix)) {}

  // Becomes a candidate with `value` and blocks until this session leads (or `timeout`:
  // UNAVAILABLE "timed out", and the candidacy is withdrawn).
  Status campaign(const std::string& value,
                  std::chrono::milliseconds timeout = std::chrono::hours(24 * 365));
  // The leader changes its value (INVALID_ARGUMENT when this session does not lead).
  Status proclaim(const std::string& value);
  // Gives up the leadership (or the candidacy).
  Status resign();
  // The current leader's key-value; NOT_FOUND when there is none.
  [[nodiscard]] Result<client::KeyValue> leader() const;
  [[nodiscard]] const std::string& key() const noexcept { return c_.key(); }
  [[nodiscard]] std::uint64_t revision() const noexcept { return c_.revision(); }

 private:
  Contender c_;
};

}  // namespace kv::recipes
