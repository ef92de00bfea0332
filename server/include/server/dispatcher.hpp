// The dispatcher: translates one wire Request into engine calls and the engine's answer
// into a wire Response. It holds no data logic of its own: every read, write and
// transaction decision is the engine's; the dispatcher maps types and status codes,
// resolves connection-local transaction ids, and applies the transport's limits (frame size
// of a scan response, transactions per connection, fault injection switch).
//
// Thread safety: a Dispatcher is immutable after construction (except for the flag that
// lets one fault stall run at a time) and safe for concurrent use by all worker threads. A
// ConnectionTxns belongs to one connection and is used only by the thread serving it.
#pragma once

#include <atomic>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <unordered_map>
#include <vector>

#include "proto/codec.hpp"
#include "server/auth.hpp"
#include "server/config.hpp"
#include "server/metrics.hpp"
#include "storage/engine.hpp"

namespace kv::server {

// Interactive transactions held per client IP address over all connections and workers
// (--max-txns-per-peer), so that one client cannot take every --max-active-txns slot.
// Thread-safe (a mutex: it is touched once per begin and once per transaction end).
class PeerTxnSlots {
 public:
  explicit PeerTxnSlots(std::uint32_t max_per_peer) : max_(max_per_peer) {}
  // Takes one slot for `peer`; false when it holds the maximum already.
  [[nodiscard]] bool acquire(const std::string& peer);
  // Gives back `n` slots of `peer`.
  void release(const std::string& peer, std::size_t n) noexcept;
  [[nodiscard]] std::uint32_t max() const noexcept { return max_; }
  [[nodiscard]] std::uint32_t held(const std::string& peer);

 private:
  std::mutex mu_;
  std::unordered_map<std::string, std::uint32_t> held_;  // peers holding at least one
  std::uint32_t max_;
};

class SnapshotStream;

// The watches of one connection (server/src/watch.hpp): the dispatcher hands WATCH and
// CANCEL_WATCH to it after the auth gate. Used only by the thread serving the connection.
class WatchHandler {
 public:
  virtual ~WatchHandler() = default;
  virtual void watch(const proto::pb::Request& request, proto::pb::Response& response) = 0;
  virtual void cancel(const proto::pb::Request& request, proto::pb::Response& response) = 0;
};

// Authentication state of one connection (docs/SECURITY.md). Used only by the thread
// serving the connection.
struct ConnectionAuth {
  std::shared_ptr<Tenant> tenant;         // nullptr: not authenticated
  std::shared_ptr<const UserEntry> user;  // the tenant's settings as last read
  std::uint64_t version = 0;              // tenant->version() when `user` was read
  // When the answer to the latest failed AUTHENTICATE may be sent (set by the
  // dispatcher, taken by the session, which holds that answer and every later one).
  std::optional<std::chrono::steady_clock::time_point> hold_until;
};

// The per-connection context of the dispatcher: the interactive transactions one
// connection holds, by engine transaction id, and its authentication. Destroying it (or
// clear()) aborts every transaction still open (the engine aborts an active Transaction
// handle when it is destroyed), counts them as aborted by disconnect, and gives back the
// connection's tenant quotas.
class ConnectionTxns {
 public:
  explicit ConnectionTxns(ServerCounters& counters) noexcept;
  ~ConnectionTxns();
  ConnectionTxns(const ConnectionTxns&) = delete;
  ConnectionTxns& operator=(const ConnectionTxns&) = delete;

  // The handle for `id`, or nullptr when this connection has no such transaction.
  [[nodiscard]] storage::Transaction* find(std::uint64_t id) noexcept;
  // True when `max` transactions are held even after dropping handles the engine has
  // already ended (expired ones).
  [[nodiscard]] bool full(std::uint32_t max);
  // Counts this connection's transactions against `slots` under the key `peer` (its client
  // address) from now on. Call before the first add().
  void set_peer(PeerTxnSlots* slots, std::string peer) noexcept;
  // Takes a slot of the peer (and of the tenant, when authenticated) for a transaction
  // about to begin; refused when either holds its maximum even after dropping this
  // connection's handles the engine has ended. A taken slot passes to the transaction by
  // add(), or goes back by unadmit().
  enum class Admit : std::uint8_t { kOk, kPeerFull, kTenantFull };
  [[nodiscard]] Admit admit();
  void unadmit() noexcept;
  void add(storage::Transaction txn);
  void erase(std::uint64_t id) noexcept;
  // Drops every handle (aborting active transactions) and the authentication now.
  void clear() noexcept;
  [[nodiscard]] std::size_t size() const noexcept { return txns_.size(); }

  // Mutual TLS: the subject common name of the client certificate this connection
  // presented and the server verified against --tls-ca; empty on plain TCP, without
  // --tls-ca, or when the client sent no certificate. Set once by the session after the
  // handshake, before the first request is dispatched. Authentication may take it as the
  // user name ("the CN names the user"; docs/SECURITY.md).
  std::string tls_client_cn;
  // The connection's SNAPSHOT stream (docs/PROTOCOL.md 3.13), at most one; destroyed (its
  // producer cancelled and joined) with the connection or when the next stream starts.
  std::unique_ptr<SnapshotStream> snapshot;
  // The connection's watches (null: this connection cannot watch, e.g. in-process tests
  // that drive the dispatcher without a session).
  WatchHandler* watches = nullptr;
  [[nodiscard]] ConnectionAuth& auth() noexcept { return auth_; }
  [[nodiscard]] const std::string& peer() const noexcept { return peer_; }
  // Makes `tenant` (with `user`, its settings) this connection's user; the caller took a
  // connection unit of it. Gives back the previous tenant's unit.
  void login(std::shared_ptr<Tenant> tenant, std::shared_ptr<const UserEntry> user);
  // Drops the authentication (and the tenant's connection unit).
  void logout() noexcept;
  // The hold time of a failed AUTHENTICATE's answer, once (see ConnectionAuth).
  [[nodiscard]] std::optional<std::chrono::steady_clock::time_point> take_hold() noexcept {
    auto h = auth_.hold_until;
    auth_.hold_until.reset();
    return h;
  }
  // Bytes written by transaction `id` so far, charged to the tenant when it commits.
  void add_pending_bytes(std::uint64_t id, std::uint64_t n);
  [[nodiscard]] std::uint64_t pending_bytes(std::uint64_t id) const noexcept;

 private:
  // Drops handles of transactions the engine has already ended (expired); returns how
  // many went.
  std::size_t prune() noexcept;
  void released(std::size_t n) noexcept;  // n transactions left this connection

  std::vector<storage::Transaction> txns_;  // few per connection: linear search is fastest
  ServerCounters* counters_;
  PeerTxnSlots* peer_slots_ = nullptr;
  std::string peer_;
  ConnectionAuth auth_;
  std::vector<std::pair<std::uint64_t, std::uint64_t>> pending_bytes_;  // (txn id, bytes)
};

class Dispatcher {
 public:
  // Fills the server part of a STATS response (connections, requests); called on the
  // requesting worker's thread, must be thread-safe.
  using ServerStatsFn = std::function<void(proto::pb::StatsResponse&)>;

  // `engine` must outlive the Dispatcher and every ConnectionTxns used with it. With
  // config.users_file set, requests must be authenticated (load_users() before serving).
  Dispatcher(storage::Engine& engine, const ServerConfig& config, ServerStatsFn server_stats,
             ServerCounters* counters = nullptr);

  // Reads the users file (at start and on SIGHUP). False with `error` set when it cannot
  // be read or parsed (the users in force stay). True and nothing done without --users.
  bool load_users(std::string& error);
  [[nodiscard]] bool auth_enabled() const noexcept { return users_ != nullptr; }

  // Answers `request` into `response`, which must be freshly cleared. Sets id, status,
  // header and (on success) the result member matching the request. Never throws: an
  // unexpected exception becomes INTERNAL.
  void dispatch(const proto::pb::Request& request, ConnectionTxns& txns,
                proto::pb::Response& response) const noexcept;

  // A plain GET or PUT answered from its wire bytes: no protobuf message is built for it
  // (docs/BENCHMARKS.md, "Server per core"). Recognises a Request that holds an id and a get
  // or put with only key (and value) set, within the key and value limits, on a server
  // without --users; `writes` false refuses puts (they go to the commit threads). Then it
  // runs the request exactly as dispatch() would, appends the framed response to `out`
  // and returns what it answered. Returns nullopt, with `out` untouched and nothing run,
  // for everything else: the caller then parses the request and calls dispatch().
  struct PlainAnswer {
    OpKind op;
    proto::pb::Status::Code code;
    std::uint64_t id;
  };
  [[nodiscard]] std::optional<PlainAnswer> answer_plain(std::string_view payload, bool writes,
                                                        std::string& out) const noexcept;

  // Fills `response` with a request-less error (id 0), e.g. for an unparsable frame.
  void error(std::uint64_t id, proto::pb::Status::Code code, std::string_view message,
             proto::pb::Response& response) const;

  [[nodiscard]] const proto::RequestLimits& limits() const noexcept { return limits_; }

  // Requests-per-second quota (docs/SECURITY.md, "Tenants"): takes one token of the
  // connection's tenant for the request about to be dispatched. Zero when it may run now
  // (not authenticated, no rate, or a token taken); otherwise how long until the bucket
  // holds a token again: the session then holds that request and stops reading the
  // connection for at least that long (backpressure through TCP, no refusal).
  [[nodiscard]] std::chrono::milliseconds take_rate_token(ConnectionTxns& txns) const;
  // Mutual TLS login (--tls-client-cert-login; docs/SECURITY.md): when the connection's
  // verified client certificate CN (txns.tls_client_cn) names a user of the users file,
  // authenticates the connection as that user (taking a unit of its max_connections) and
  // returns true; otherwise leaves it unauthenticated and returns false.
  bool login_by_certificate(ConnectionTxns& txns) const;

 private:
  void run(const proto::pb::Request& request, ConnectionTxns& txns,
           proto::pb::Response& response) const;
  void authenticate(const proto::pb::Request& request, ConnectionTxns& txns,
                    proto::pb::Response& response) const;
  // LeaseGrant, LeaseRevoke, LeaseKeepAlive, LeaseTimeToLive (docs/PROTOCOL.md 3.16).
  void run_lease(const proto::pb::Request& request, ConnectionTxns& txns,
                 proto::pb::Response& response) const;
  // Takes the current settings of the connection's user when a reload changed them (and
  // logs the connection out when the user was removed).
  void refresh_user(ConnectionTxns& txns) const;
  // The auth gate: false (with `response` filled) when the request may not run.
  bool admit(const proto::pb::Request& request, ConnectionTxns& txns,
             proto::pb::Response& response) const;
  // Charges the bytes a successful write stored to the connection's tenant.
  void account_bytes(const proto::pb::Request& request, ConnectionTxns& txns,
                     const proto::pb::Response& response) const;

  storage::Engine* engine_;
  proto::RequestLimits limits_;
  std::uint32_t max_frame_bytes_;
  std::uint32_t max_txns_per_connection_;
  std::uint32_t max_fault_stall_ms_;
  bool fault_injection_;
  // True while a FAULT stall runs (one at a time). It guards no other data: relaxed.
  mutable std::atomic<bool> stalling_{false};
  // SNAPSHOT streams: ids handed out, and streams alive in the server (at most
  // kMaxSnapshotStreams). Counters that publish nothing: relaxed.
  mutable std::atomic<std::uint64_t> next_stream_id_{1};
  mutable std::atomic<std::uint32_t> snapshot_streams_{0};
  // Set once the first STORAGE_FAILED has been logged (a flag guarding nothing: relaxed).
  mutable std::atomic<bool> storage_failure_logged_{false};
  bool durable_;
  ServerStatsFn server_stats_;
  ServerCounters* counters_;             // may be nullptr (then nothing is counted)
  std::unique_ptr<UserRegistry> users_;  // nullptr: no authentication
  std::string dummy_hash_;               // checked for unknown users (same cost)
  mutable FailureDelay failure_delay_;
};

}  // namespace kv::server
