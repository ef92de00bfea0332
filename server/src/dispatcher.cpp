#include "server/dispatcher.hpp"

#include <algorithm>
#include <cassert>
#include <chrono>
#include <cstring>
#include <limits>
#include <thread>
#include <utility>

#include <spdlog/spdlog.h>

#include "kovan/kovan.hpp"
#include "snapshot_stream.hpp"

namespace kv::server {

namespace pb = proto::pb;
namespace st = storage;

// ---------------------------------------------------------------------------------------
// ConnectionTxns
// ---------------------------------------------------------------------------------------

bool PeerTxnSlots::acquire(const std::string& peer) {
  std::lock_guard lock(mu_);
  std::uint32_t& n = held_[peer];
  if (n >= max_) return false;
  ++n;
  return true;
}

void PeerTxnSlots::release(const std::string& peer, std::size_t n) noexcept {
  if (n == 0) return;
  std::lock_guard lock(mu_);
  auto it = held_.find(peer);
  if (it == held_.end()) return;
  if (it->second <= n) {
    held_.erase(it);
  } else {
    it->second -= static_cast<std::uint32_t>(n);
  }
}

std::uint32_t PeerTxnSlots::held(const std::string& peer) {
  std::lock_guard lock(mu_);
  auto it = held_.find(peer);
  return it == held_.end() ? 0 : it->second;
}

ConnectionTxns::ConnectionTxns(ServerCounters& counters) noexcept : counters_(&counters) {}

ConnectionTxns::~ConnectionTxns() { clear(); }

void ConnectionTxns::set_peer(PeerTxnSlots* slots, std::string peer) noexcept {
  peer_slots_ = slots;
  peer_ = std::move(peer);
}

void ConnectionTxns::released(std::size_t n) noexcept {
  counters_->txns_open.fetch_sub(n, std::memory_order_relaxed);
  if (peer_slots_ != nullptr) peer_slots_->release(peer_, n);
  // Every transaction of a connection is charged to its tenant (AUTHENTICATE is refused
  // while transactions are held, so the tenant cannot change under them).
  if (auth_.tenant) auth_.tenant->release_txns(n);
}

void ConnectionTxns::login(std::shared_ptr<Tenant> tenant, std::shared_ptr<const UserEntry> user) {
  logout();
  auth_.version = tenant->version();
  auth_.tenant = std::move(tenant);
  auth_.user = std::move(user);
}

void ConnectionTxns::logout() noexcept {
  if (auth_.tenant) auth_.tenant->release_connection();
  auth_.tenant.reset();
  auth_.user.reset();
}

void ConnectionTxns::add_pending_bytes(std::uint64_t id, std::uint64_t n) {
  for (auto& [txn, bytes] : pending_bytes_) {
    if (txn == id) {
      bytes += n;
      return;
    }
  }
  pending_bytes_.emplace_back(id, n);
}

std::uint64_t ConnectionTxns::pending_bytes(std::uint64_t id) const noexcept {
  for (const auto& [txn, bytes] : pending_bytes_) {
    if (txn == id) return bytes;
  }
  return 0;
}

std::size_t ConnectionTxns::prune() noexcept {
  const auto before = txns_.size();
  std::erase_if(txns_, [](const st::Transaction& t) { return !t.active(); });
  const std::size_t gone = before - txns_.size();
  released(gone);
  return gone;
}

ConnectionTxns::Admit ConnectionTxns::admit() {
  if (auth_.tenant) {
    const std::uint32_t limit = auth_.user ? auth_.user->quota.max_txns : 0;
    if (!auth_.tenant->acquire_txn(limit) && (prune() == 0 || !auth_.tenant->acquire_txn(limit))) {
      return Admit::kTenantFull;
    }
  }
  if (peer_slots_ == nullptr) return Admit::kOk;
  if (peer_slots_->acquire(peer_)) return Admit::kOk;
  if (prune() > 0 && peer_slots_->acquire(peer_)) return Admit::kOk;
  counters_->txns_refused_per_peer.fetch_add(1, std::memory_order_relaxed);
  if (auth_.tenant) auth_.tenant->release_txns(1);
  return Admit::kPeerFull;
}

void ConnectionTxns::unadmit() noexcept {
  if (peer_slots_ != nullptr) peer_slots_->release(peer_, 1);
  if (auth_.tenant) auth_.tenant->release_txns(1);
}

st::Transaction* ConnectionTxns::find(std::uint64_t id) noexcept {
  for (auto& t : txns_) {
    if (t.id() == id) return &t;
  }
  return nullptr;
}

bool ConnectionTxns::full(std::uint32_t max) {
  if (txns_.size() < max) return false;
  prune();
  return txns_.size() >= max;
}

void ConnectionTxns::add(st::Transaction txn) {
  try {
    txns_.push_back(std::move(txn));
  } catch (...) {
    unadmit();
    throw;
  }
  counters_->txns_open.fetch_add(1, std::memory_order_relaxed);
}

void ConnectionTxns::erase(std::uint64_t id) noexcept {
  std::erase_if(pending_bytes_, [id](const auto& p) { return p.first == id; });
  for (auto it = txns_.begin(); it != txns_.end(); ++it) {
    if (it->id() == id) {
      txns_.erase(it);
      released(1);
      return;
    }
  }
}

void ConnectionTxns::clear() noexcept {
  std::uint64_t active = 0;
  for (const auto& t : txns_) active += t.active() ? 1 : 0;
  counters_->txns_disconnect_aborted.fetch_add(active, std::memory_order_relaxed);
  released(txns_.size());
  txns_.clear();  // each active handle aborts its transaction as it is destroyed
  snapshot.reset();
  pending_bytes_.clear();
  logout();
}

// ---------------------------------------------------------------------------------------
// Conversions
// ---------------------------------------------------------------------------------------

namespace {

pb::Status::Code to_wire(st::StatusCode code) noexcept {
  switch (code) {
    case st::StatusCode::kOk:
      return pb::Status::OK;
    case st::StatusCode::kNotFound:
      return pb::Status::NOT_FOUND;
    case st::StatusCode::kConflict:
      return pb::Status::CONFLICT;
    case st::StatusCode::kTxnExpired:
      return pb::Status::TXN_EXPIRED;
    case st::StatusCode::kTxnNotFound:
      return pb::Status::TXN_NOT_FOUND;
    case st::StatusCode::kInvalidArgument:
      return pb::Status::INVALID_ARGUMENT;
    case st::StatusCode::kResourceExhausted:
      return pb::Status::RESOURCE_EXHAUSTED;
    case st::StatusCode::kUnavailable:
      return pb::Status::UNAVAILABLE;
    case st::StatusCode::kInternal:
      return pb::Status::INTERNAL;
    case st::StatusCode::kStorageFailed:
      return pb::Status::STORAGE_FAILED;
    case st::StatusCode::kLeaseNotFound:
      return pb::Status::LEASE_NOT_FOUND;
  }
  return pb::Status::INTERNAL;
}

std::uint64_t to_u64(std::int64_t v) noexcept { return v < 0 ? 0 : static_cast<std::uint64_t>(v); }

std::int64_t to_i64(std::uint64_t v) noexcept {
  return static_cast<std::int64_t>(
      std::min<std::uint64_t>(v, std::numeric_limits<std::int64_t>::max()));
}

void fill_kv(st::KeyValue&& from, pb::KeyValue& to) {
  to.set_key(std::move(from.key));
  to.set_value(std::move(from.value));
  to.set_create_revision(from.create_revision);
  to.set_mod_revision(from.mod_revision);
  to.set_version(to_u64(from.version));
  to.set_lease(from.lease);
}

void set_status(pb::Response& r, pb::Status::Code code, std::string_view message) {
  auto* s = r.mutable_status();
  s->set_code(code);
  if (!message.empty()) s->set_message(std::string(message));
}

void set_status(pb::Response& r, const st::Status& status) {
  auto* s = r.mutable_status();
  s->set_code(to_wire(status.code()));
  if (!status.message().empty()) s->set_message(status.message());
}

// The exclusive upper bound of the keys starting with `prefix`; empty (no bound) when
// every byte is 0xFF or the prefix is empty.
std::string prefix_end(std::string_view prefix) {
  std::string end(prefix);
  while (!end.empty() && static_cast<unsigned char>(end.back()) == 0xFF) end.pop_back();
  if (!end.empty()) end.back() = static_cast<char>(static_cast<unsigned char>(end.back()) + 1);
  return end;
}

// [start, end) of a range selection; `end` empty means no upper bound.
struct Range {
  std::string_view start;
  std::string_view end;
  std::string storage;  // backs `end` for prefix ranges
};

Range resolve(const std::string& start, const std::string& end, bool prefix) {
  Range r;
  r.start = start;
  if (prefix) {
    r.storage = prefix_end(start);
    r.end = r.storage;
  } else {
    r.end = end;
  }
  return r;
}

st::ScanOptions scan_options(const pb::ScanRequest& s) {
  st::ScanOptions o;
  o.limit = static_cast<std::size_t>(s.limit());
  o.reverse = s.reverse();
  o.keys_only = s.keys_only();
  o.count_only = s.count_only();
  return o;
}

// Moves a scan's key-values into `out`. The engine already cut them to the response budget
// (ScanOptions::max_bytes / CondTxn::max_response_bytes), copying no value past it.
void fill_scan(std::vector<st::KeyValue>&& kvs, std::size_t count, bool more,
               pb::ScanResponse& out) {
  out.mutable_kvs()->Reserve(static_cast<int>(std::min<std::size_t>(kvs.size(), 1 << 16)));
  for (auto& kv : kvs) fill_kv(std::move(kv), *out.add_kvs());
  out.set_count(count);
  out.set_more(more);
}

st::Compare to_engine(const pb::Compare& c) {
  st::Compare e;
  e.key = c.key();
  switch (c.op()) {
    case pb::Compare::NOT_EQUAL:
      e.op = st::Compare::Op::kNotEqual;
      break;
    case pb::Compare::LESS:
      e.op = st::Compare::Op::kLess;
      break;
    case pb::Compare::GREATER:
      e.op = st::Compare::Op::kGreater;
      break;
    default:
      e.op = st::Compare::Op::kEqual;
      break;
  }
  switch (c.target_case()) {
    case pb::Compare::kVersion:
      e.target = st::Compare::Target::kVersion;
      e.number = to_i64(c.version());
      break;
    case pb::Compare::kCreateRevision:
      e.target = st::Compare::Target::kCreateRevision;
      e.number = to_i64(c.create_revision());
      break;
    case pb::Compare::kModRevision:
      e.target = st::Compare::Target::kModRevision;
      e.number = to_i64(c.mod_revision());
      break;
    case pb::Compare::kValue:
    case pb::Compare::TARGET_NOT_SET:  // rejected by validation
      e.target = st::Compare::Target::kValue;
      e.value = c.value();
      break;
  }
  return e;
}

// The engine spells "no upper bound" in a conditional op as "\0" (an empty range_end
// means "just the key").
std::string txn_range_end(std::string_view end) {
  return end.empty() ? std::string(1, '\0') : std::string(end);
}

// A conditional op needs a non-empty start key; "\0" is the smallest non-empty key, so it
// selects the same keys as "from the first key".
std::string txn_range_start(std::string_view start) {
  return start.empty() ? std::string(1, '\0') : std::string(start);
}

st::TxnOp to_engine(const pb::TxnOp& op) {
  st::TxnOp e;
  switch (op.op_case()) {
    case pb::TxnOp::kGet:
      e.type = st::TxnOp::Type::kGet;
      e.key = op.get().key();
      break;
    case pb::TxnOp::kPut:
      e.type = st::TxnOp::Type::kPut;
      e.key = op.put().key();
      e.value = op.put().value();
      e.prev_kv = op.put().prev_kv();
      e.lease = op.put().lease();  // a ttl_seconds op gets its lease in run()
      break;
    case pb::TxnOp::kDel:
      e.type = st::TxnOp::Type::kDelete;
      e.key = op.del().key();
      e.prev_kv = op.del().prev_kv();
      break;
    case pb::TxnOp::kDeleteRange: {
      const auto& d = op.delete_range();
      Range r = resolve(d.start(), d.end(), d.prefix());
      e.type = st::TxnOp::Type::kDelete;
      e.key = txn_range_start(r.start);
      e.range_end = txn_range_end(r.end);
      e.prev_kv = d.prev_kv();
      break;
    }
    case pb::TxnOp::kScan: {
      const auto& s = op.scan();
      Range r = resolve(s.start(), s.end(), s.prefix());
      e.type = st::TxnOp::Type::kGet;
      e.key = txn_range_start(r.start);
      e.range_end = txn_range_end(r.end);
      e.scan = scan_options(s);
      break;
    }
    case pb::TxnOp::OP_NOT_SET:  // rejected by validation
      break;
  }
  return e;
}

void fill_txn_result(const pb::TxnOp& op, st::TxnOpResult&& r, pb::TxnOpResult& out) {
  out.set_code(pb::Status::OK);
  switch (op.op_case()) {
    case pb::TxnOp::kGet: {
      auto* g = out.mutable_get();
      if (r.kvs.empty()) {
        out.set_code(pb::Status::NOT_FOUND);
      } else {
        fill_kv(std::move(r.kvs.front()), *g->mutable_kv());
      }
      break;
    }
    case pb::TxnOp::kPut: {
      auto* p = out.mutable_put();
      if (!r.kvs.empty()) fill_kv(std::move(r.kvs.front()), *p->mutable_prev_kv());
      break;
    }
    case pb::TxnOp::kDel: {
      auto* d = out.mutable_del();
      d->set_deleted(to_u64(r.deleted));
      if (!r.kvs.empty()) fill_kv(std::move(r.kvs.front()), *d->mutable_prev_kv());
      break;
    }
    case pb::TxnOp::kDeleteRange: {
      auto* d = out.mutable_delete_range();
      d->set_deleted(to_u64(r.deleted));
      for (auto& kv : r.kvs) fill_kv(std::move(kv), *d->add_prev_kvs());
      break;
    }
    case pb::TxnOp::kScan:
      fill_scan(std::move(r.kvs), r.count, r.more, *out.mutable_scan());
      break;
    case pb::TxnOp::OP_NOT_SET:
      break;
  }
}

// SNAPSHOT streams (docs/PROTOCOL.md 3.13): how many may run in the server at once, the
// bytes a stream buffers ahead of its client, the largest chunk, and how long one request
// waits for the producer before it answers with what there is (possibly nothing).
constexpr std::uint32_t kMaxSnapshotStreams = 2;
constexpr std::size_t kSnapshotBuffered = std::size_t{4} << 20;
constexpr std::size_t kSnapshotChunk = std::size_t{1} << 20;
constexpr std::chrono::milliseconds kSnapshotWait{2000};

constexpr std::string_view kUnknownTxn =
    "unknown transaction id (it has finished, or belongs to another connection)";

}  // namespace

// ---------------------------------------------------------------------------------------
// Dispatcher
// ---------------------------------------------------------------------------------------

Dispatcher::Dispatcher(st::Engine& engine, const ServerConfig& config, ServerStatsFn server_stats,
                       ServerCounters* counters)
    : engine_(&engine),
      max_frame_bytes_(config.max_frame_bytes),
      max_txns_per_connection_(config.max_txns_per_connection),
      max_fault_stall_ms_(static_cast<std::uint32_t>(config.max_fault_stall.count())),
      fault_injection_(config.enable_fault_injection),
      durable_(config.durable()),
      server_stats_(std::move(server_stats)),
      counters_(counters) {
  limits_.max_key_bytes = config.max_key_bytes;
  limits_.max_value_bytes = config.max_value_bytes;
  if (!config.users_file.empty()) {
    users_ = std::make_unique<UserRegistry>(config.users_file);
    dummy_hash_ = hash_password("unknown user", kDefaultPbkdf2Iterations);
  }
}

bool Dispatcher::load_users(std::string& error) {
  if (!users_) return true;
  if (!users_->reload(error)) return false;
  spdlog::info("users: {} loaded from {}", users_->size(), users_->path());
  return true;
}

namespace {

void count(ServerCounters* c, std::atomic<std::uint64_t> ServerCounters::*member) noexcept {
  if (c != nullptr) (c->*member).fetch_add(1, std::memory_order_relaxed);
}

// A user name as it may appear in a log line: printable ASCII, at most 64 characters.
std::string printable(std::string_view name) {
  std::string out;
  for (char ch : name.substr(0, 64)) {
    out.push_back(ch >= 0x20 && ch < 0x7F ? ch : '?');
  }
  return out;
}

// Why the operation is outside the user's role or key prefix; empty when allowed.
std::string forbidden(const pb::Request& request, const UserEntry& u) {
  const bool write = u.role != Role::kRead;
  const bool admin = u.role == Role::kAdmin;
  const std::string_view p = u.prefix;
  auto role_msg = [&](std::string_view op, std::string_view needs) {
    return "user '" + u.name + "' (role " + std::string(role_name(u.role)) + ") may not " +
           std::string(op) + " (needs role " + std::string(needs) + ")";
  };
  auto key_msg = [&](std::string_view what) {
    return "user '" + u.name + "' may only use keys starting with its prefix (" +
           std::string(what) + " is outside it)";
  };
  auto range_ok = [&](const std::string& start, const std::string& end, bool prefix) {
    Range r = resolve(start, end, prefix);
    return range_allowed(p, r.start, r.end);
  };
  auto op_ok = [&](const pb::TxnOp& op, std::string& why) {
    switch (op.op_case()) {
      case pb::TxnOp::kGet:
        if (!key_allowed(p, op.get().key())) why = key_msg("a key");
        break;
      case pb::TxnOp::kPut:
        if (!write)
          why = role_msg("write", "readwrite");
        else if (!key_allowed(p, op.put().key()))
          why = key_msg("a key");
        break;
      case pb::TxnOp::kDel:
        if (!write)
          why = role_msg("delete", "readwrite");
        else if (!key_allowed(p, op.del().key()))
          why = key_msg("a key");
        break;
      case pb::TxnOp::kDeleteRange: {
        const auto& d = op.delete_range();
        if (!write)
          why = role_msg("delete", "readwrite");
        else if (!range_ok(d.start(), d.end(), d.prefix()))
          why = key_msg("the range");
        break;
      }
      case pb::TxnOp::kScan: {
        const auto& sc = op.scan();
        if (!range_ok(sc.start(), sc.end(), sc.prefix())) why = key_msg("the range");
        break;
      }
      case pb::TxnOp::OP_NOT_SET:
        break;
    }
    return why.empty();
  };
  std::string why;
  switch (request.op_case()) {
    case pb::Request::kPing:
    case pb::Request::kBegin:
    case pb::Request::kCommit:
    case pb::Request::kAbort:
    case pb::Request::kAuthenticate:
    case pb::Request::OP_NOT_SET:
      return {};
    case pb::Request::kGet:
      return key_allowed(p, request.get().key()) ? std::string() : key_msg("the key");
    case pb::Request::kScan: {
      const auto& sc = request.scan();
      return range_ok(sc.start(), sc.end(), sc.prefix()) ? std::string() : key_msg("the range");
    }
    case pb::Request::kPut:
      if (!write) return role_msg("write", "readwrite");
      return key_allowed(p, request.put().key()) ? std::string() : key_msg("the key");
    case pb::Request::kDel:
      if (!write) return role_msg("delete", "readwrite");
      return key_allowed(p, request.del().key()) ? std::string() : key_msg("the key");
    case pb::Request::kDeleteRange: {
      const auto& d = request.delete_range();
      if (!write) return role_msg("delete", "readwrite");
      return range_ok(d.start(), d.end(), d.prefix()) ? std::string() : key_msg("the range");
    }
    case pb::Request::kTxn: {
      const auto& t = request.txn();
      for (const auto& c : t.compare()) {
        if (!key_allowed(p, c.key())) return key_msg("a compared key");
      }
      for (const auto& op : t.success()) {
        if (!op_ok(op, why)) return why;
      }
      for (const auto& op : t.failure()) {
        if (!op_ok(op, why)) return why;
      }
      return {};
    }
    case pb::Request::kStats:
      return admin ? std::string() : role_msg("read server statistics", "admin");
    case pb::Request::kFault:
      return admin ? std::string() : role_msg("inject faults", "admin");
    case pb::Request::kCheckpoint:
      return admin ? std::string() : role_msg("write checkpoints", "admin");
    case pb::Request::kSnapshot:
      return admin ? std::string() : role_msg("stream snapshots", "admin");
    // Leases (docs/PROTOCOL.md 3.16): the keys a user attaches are checked as its puts are;
    // what a lease request may touch beyond that is checked in run() (lease_keys_allowed).
    case pb::Request::kLeaseGrant:
      return write ? std::string() : role_msg("grant leases", "readwrite");
    case pb::Request::kLeaseRevoke:
      return write ? std::string() : role_msg("revoke leases", "readwrite");
    case pb::Request::kLeaseKeepalive:
      return write ? std::string() : role_msg("renew leases", "readwrite");
    case pb::Request::kLeaseTimeToLive:
      return {};
    case pb::Request::kWatch: {  // role read may watch, inside its prefix
      const auto& w = request.watch();
      std::string end = w.range_end();
      if (w.prefix()) {
        end = prefix_end(w.key());
      } else if (end.empty()) {
        end = w.key() + '\0';  // the single key
      } else if (end == std::string(1, '\0')) {
        end.clear();  // no upper bound
      }
      return range_allowed(p, w.key(), end) ? std::string() : key_msg("the watched range");
    }
    case pb::Request::kCancelWatch:
      return {};
    default:
      break;
  }
  return {};
}

// True for requests that may store bytes (checked against the tenant's max_bytes).
bool stores_bytes(const pb::Request& request) noexcept {
  switch (request.op_case()) {
    case pb::Request::kPut:
      return true;
    case pb::Request::kTxn:
      for (const auto& op : request.txn().success()) {
        if (op.op_case() == pb::TxnOp::kPut) return true;
      }
      for (const auto& op : request.txn().failure()) {
        if (op.op_case() == pb::TxnOp::kPut) return true;
      }
      return false;
    case pb::Request::kCommit:
      return true;
    default:
      return false;
  }
}

}  // namespace

void Dispatcher::refresh_user(ConnectionTxns& txns) const {
  ConnectionAuth& a = txns.auth();
  // A reload changed or removed this user: take its current settings.
  if (a.tenant && a.tenant->version() != a.version) {
    a.version = a.tenant->version();
    a.user = a.tenant->settings();
    if (!a.user) {
      spdlog::info("user '{}' was removed: connection from {} is no longer authenticated",
                   a.tenant->name(), txns.peer());
      txns.logout();
    }
  }
}

std::chrono::milliseconds Dispatcher::take_rate_token(ConnectionTxns& txns) const {
  if (!users_) return std::chrono::milliseconds(0);
  refresh_user(txns);
  const ConnectionAuth& a = txns.auth();
  if (!a.tenant || a.user->quota.rps == 0) return std::chrono::milliseconds(0);
  std::chrono::milliseconds wait{0};
  if (a.tenant->take_token(a.user->quota.rps, a.user->quota.burst, std::chrono::steady_clock::now(),
                           wait)) {
    return std::chrono::milliseconds(0);
  }
  count(counters_, &ServerCounters::quota_rate_pauses);
  return wait;
}

bool Dispatcher::login_by_certificate(ConnectionTxns& txns) const {
  if (!users_ || txns.tls_client_cn.empty()) return false;
  std::shared_ptr<Tenant> tenant = users_->find(txns.tls_client_cn);
  std::shared_ptr<const UserEntry> user = tenant ? tenant->settings() : nullptr;
  if (!user) {
    spdlog::info("connection {}: client certificate CN '{}' names no user; not authenticated",
                 txns.peer(), printable(txns.tls_client_cn));
    return false;
  }
  if (!tenant->acquire_connection(user->quota.max_connections)) {
    count(counters_, &ServerCounters::quota_refusals);
    spdlog::info(
        "connection {}: client certificate names user '{}', which has its max_connections "
        "of {} open already; not authenticated",
        txns.peer(), user->name, user->quota.max_connections);
    return false;
  }
  txns.login(std::move(tenant), user);
  spdlog::debug("user '{}' authenticated from {} by its client certificate", user->name,
                txns.peer());
  return true;
}

bool Dispatcher::admit(const pb::Request& request, ConnectionTxns& txns,
                       pb::Response& response) const {
  refresh_user(txns);
  ConnectionAuth& a = txns.auth();
  if (!a.tenant) {
    // Liveness probes need no user (authenticated pings count against the user's rate).
    if (request.op_case() == pb::Request::kPing) return true;
    error(request.id(), pb::Status::UNAUTHENTICATED,
          "authentication required: send AUTHENTICATE first", response);
    return false;
  }
  const UserEntry& u = *a.user;
  if (std::string why = forbidden(request, u); !why.empty()) {
    error(request.id(), pb::Status::PERMISSION_DENIED, why, response);
    return false;
  }
  // The requests-per-second quota is not checked here: the session takes the token before
  // it dispatches a request and holds the request while the bucket is empty
  // (take_rate_token), so no request is refused for its rate.
  if (a.tenant->bytes_over(u.quota.max_bytes) && stores_bytes(request)) {
    count(counters_, &ServerCounters::quota_refusals);
    error(request.id(), pb::Status::RESOURCE_EXHAUSTED,
          "user '" + u.name + "' stores " + std::to_string(a.tenant->bytes()) +
              " bytes, at its max_bytes quota of " + std::to_string(u.quota.max_bytes) +
              "; delete data to write more",
          response);
    return false;
  }
  return true;
}

void Dispatcher::authenticate(const pb::Request& request, ConnectionTxns& txns,
                              pb::Response& response) const {
  const auto& req = request.authenticate();
  if (!users_) {
    error(request.id(), pb::Status::INVALID_ARGUMENT,
          "authentication is not enabled on this server (it runs without --users)", response);
    return;
  }
  if (txns.size() > 0) {
    error(request.id(), pb::Status::INVALID_ARGUMENT,
          "cannot change the user of a connection that holds open transactions", response);
    return;
  }
  std::shared_ptr<Tenant> tenant = users_->find(req.user());
  std::shared_ptr<const UserEntry> user = tenant ? tenant->settings() : nullptr;
  // An unknown user costs the same hash computation as a known one.
  const bool ok = verify_password(req.password(), user ? user->hash : dummy_hash_) && user;
  if (!ok) {
    txns.logout();
    count(counters_, &ServerCounters::auth_failures);
    const auto now = std::chrono::steady_clock::now();
    const auto release = failure_delay_.failed(txns.peer(), now);
    txns.auth().hold_until = release;
    spdlog::warn("authentication failed for user '{}' from {} (answer held {} ms)",
                 printable(req.user()), txns.peer(),
                 std::chrono::duration_cast<std::chrono::milliseconds>(release - now).count());
    error(request.id(), pb::Status::UNAUTHENTICATED,
          "authentication failed: unknown user or wrong password", response);
    return;
  }
  failure_delay_.succeeded(txns.peer());
  if (txns.auth().tenant != tenant) {
    if (!tenant->acquire_connection(user->quota.max_connections)) {
      count(counters_, &ServerCounters::quota_refusals);
      error(request.id(), pb::Status::RESOURCE_EXHAUSTED,
            "user '" + user->name + "' has its max_connections of " +
                std::to_string(user->quota.max_connections) + " connections open already",
            response);
      return;
    }
    txns.login(tenant, user);
  } else {
    txns.auth().user = user;
    txns.auth().version = tenant->version();
  }
  spdlog::debug("user '{}' authenticated from {}", user->name, txns.peer());
  auto* out = response.mutable_authenticate();
  out->set_role(std::string(role_name(user->role)));
  out->set_key_prefix(user->prefix);
  response.mutable_status();
  response.mutable_header()->set_revision(engine_->current_revision());
}

void Dispatcher::account_bytes(const pb::Request& request, ConnectionTxns& txns,
                               const pb::Response& response) const {
  Tenant* t = txns.auth().tenant.get();
  if (t == nullptr || response.status().code() != pb::Status::OK) return;
  auto size = [](const pb::PutRequest& p) { return p.key().size() + p.value().size(); };
  switch (request.op_case()) {
    case pb::Request::kPut: {
      const auto& p = request.put();
      if (p.txn_id() != 0) {
        txns.add_pending_bytes(p.txn_id(), size(p));
      } else {
        t->charge(size(p));
        if (response.put().has_prev_kv()) {
          const auto& prev = response.put().prev_kv();
          t->credit(prev.key().size() + prev.value().size());
        }
      }
      return;
    }
    case pb::Request::kDel:
      if (response.del().has_prev_kv()) {
        const auto& prev = response.del().prev_kv();
        t->credit(prev.key().size() + prev.value().size());
      }
      return;
    case pb::Request::kDeleteRange:
      for (const auto& prev : response.delete_range().prev_kvs()) {
        t->credit(prev.key().size() + prev.value().size());
      }
      return;
    case pb::Request::kTxn: {
      const auto& ops =
          response.txn().succeeded() ? request.txn().success() : request.txn().failure();
      for (const auto& op : ops) {
        if (op.op_case() == pb::TxnOp::kPut) t->charge(size(op.put()));
      }
      return;
    }
    default:
      return;
  }
}

void Dispatcher::error(std::uint64_t id, pb::Status::Code code, std::string_view message,
                       pb::Response& response) const {
  response.set_id(id);
  set_status(response, code, message);
  response.mutable_header()->set_revision(engine_->current_revision());
}

void Dispatcher::dispatch(const pb::Request& request, ConnectionTxns& txns,
                          pb::Response& response) const noexcept {
  try {
    response.set_id(request.id());
    const proto::Validation v = proto::validate_request(request, limits_);
    if (!v.ok()) {
      error(request.id(), v.code, v.message, response);
      return;
    }
    if (request.op_case() == pb::Request::kAuthenticate) {
      authenticate(request, txns, response);
      return;
    }
    if (users_ && !admit(request, txns, response)) return;
    // With a max_bytes quota, single puts and deletes learn what they replace or remove
    // (prev_kv) so that the tenant is credited; the client sees prev_kv only if it asked.
    const pb::Request* req = &request;
    pb::Request with_prev;
    bool added_prev = false;
    if (users_ && txns.auth().user && txns.auth().user->quota.max_bytes != 0) {
      if (request.has_put() && request.put().txn_id() == 0 && !request.put().prev_kv()) {
        with_prev = request;
        with_prev.mutable_put()->set_prev_kv(true);
        req = &with_prev;
        added_prev = true;
      } else if (request.has_del() && request.del().txn_id() == 0 && !request.del().prev_kv()) {
        with_prev = request;
        with_prev.mutable_del()->set_prev_kv(true);
        req = &with_prev;
        added_prev = true;
      }
    }
    std::uint64_t committing = 0;
    if (users_ && request.has_commit()) committing = txns.pending_bytes(request.commit().txn_id());
    run(*req, txns, response);
    if (users_) {
      account_bytes(*req, txns, response);
      if (committing != 0 && response.status().code() == pb::Status::OK && txns.auth().tenant) {
        txns.auth().tenant->charge(committing);
      }
      if (added_prev) {
        if (response.has_put()) response.mutable_put()->clear_prev_kv();
        if (response.has_del()) response.mutable_del()->clear_prev_kv();
      }
    }
  } catch (const std::exception& e) {
    response.Clear();
    try {
      error(request.id(), pb::Status::INTERNAL, std::string("internal error: ") + e.what(),
            response);
    } catch (...) {
      response.set_id(request.id());
      response.mutable_status()->set_code(pb::Status::INTERNAL);
    }
  }
}

// ---------------------------------------------------------------------------------------
// Plain GET and PUT from their wire bytes (Dispatcher::answer_plain)
// ---------------------------------------------------------------------------------------

namespace {

// Field tags (field number << 3 | wire type) of the shapes answer_plain() recognises.
constexpr std::uint64_t kTagVarint1 = (1 << 3) | 0;  // Request.id, Header.revision
constexpr std::uint64_t kTagBytes1 = (1 << 3) | 2;   // key; Response.get.kv
constexpr std::uint64_t kTagBytes2 = (2 << 3) | 2;   // PutRequest.value; Response.status
constexpr std::uint64_t kTagBytes3 = (3 << 3) | 2;   // Response.header
constexpr std::uint64_t kTagGet = (11 << 3) | 2;     // Request.get, Response.get
constexpr std::uint64_t kTagPut = (12 << 3) | 2;     // Request.put, Response.put

// A cursor over protobuf wire bytes. Every read fails (false) rather than read past the
// end; a varint longer than 10 bytes or above 64 bits fails too (protobuf's own parser
// then decides what such a request means).
struct WireCursor {
  const unsigned char* p;
  const unsigned char* end;

  explicit WireCursor(std::string_view s) noexcept
      : p(reinterpret_cast<const unsigned char*>(s.data())), end(p + s.size()) {}
  [[nodiscard]] bool done() const noexcept { return p == end; }
  bool varint(std::uint64_t& v) noexcept {
    v = 0;
    for (int shift = 0; shift < 64; shift += 7) {
      if (p == end) return false;
      const std::uint64_t b = *p++;
      if (shift == 63 && b > 1) return false;
      v |= (b & 0x7F) << shift;
      if ((b & 0x80) == 0) return true;
    }
    return false;
  }
  bool bytes(std::string_view& out) noexcept {
    std::uint64_t n = 0;
    if (!varint(n) || n > static_cast<std::uint64_t>(end - p)) return false;
    out = std::string_view(reinterpret_cast<const char*>(p), n);
    p += n;
    return true;
  }
};

// GetRequest {key = 1; txn_id = 2}: the key, when txn_id is absent or 0 and nothing else
// is there (each field once).
bool plain_get(std::string_view body, std::string_view& key) noexcept {
  WireCursor c(body);
  bool have_key = false;
  bool have_txn = false;
  while (!c.done()) {
    std::uint64_t tag = 0;
    std::uint64_t v = 0;
    if (!c.varint(tag)) return false;
    if (tag == kTagBytes1 && !have_key) {
      if (!c.bytes(key)) return false;
      have_key = true;
    } else if (tag == ((2 << 3) | 0) && !have_txn) {
      if (!c.varint(v) || v != 0) return false;
      have_txn = true;
    } else {
      return false;
    }
  }
  return have_key;
}

// PutRequest {key = 1; value = 2; prev_kv = 3; txn_id = 4; lease = 5; ttl_seconds = 6}:
// key and value, when the other fields are absent or 0 (each field once).
bool plain_put(std::string_view body, std::string_view& key, std::string_view& value) noexcept {
  WireCursor c(body);
  unsigned seen = 0;  // bit n: field n was there
  while (!c.done()) {
    std::uint64_t tag = 0;
    if (!c.varint(tag)) return false;
    const std::uint64_t field = tag >> 3;
    if (field < 1 || field > 6 || (seen & (1u << field)) != 0) return false;
    seen |= 1u << field;
    if (field <= 2) {
      if ((tag & 7) != 2 || !c.bytes(field == 1 ? key : value)) return false;
    } else {
      std::uint64_t v = 0;
      if ((tag & 7) != 0 || !c.varint(v) || v != 0) return false;
    }
  }
  return (seen & (1u << 1)) != 0;
}

std::size_t varint_size(std::uint64_t v) noexcept {
  std::size_t n = 1;
  while (v >= 0x80) {
    v >>= 7;
    ++n;
  }
  return n;
}

char* put_varint(char* at, std::uint64_t v) noexcept {
  while (v >= 0x80) {
    *at++ = static_cast<char>(static_cast<unsigned char>(v) | 0x80);
    v >>= 7;
  }
  *at++ = static_cast<char>(v);
  return at;
}

// Size of a varint field (tag and value), 0 when the value is 0 (proto3 leaves it out).
std::size_t varint_field_size(std::uint64_t v) noexcept { return v == 0 ? 0 : 1 + varint_size(v); }
char* put_varint_field(char* at, std::uint64_t tag, std::uint64_t v) noexcept {
  if (v == 0) return at;
  *at++ = static_cast<char>(tag);
  return put_varint(at, v);
}
std::size_t bytes_field_size(std::size_t n) noexcept { return n == 0 ? 0 : 1 + varint_size(n) + n; }
char* put_bytes_field(char* at, std::uint64_t tag, std::string_view s) noexcept {
  if (s.empty()) return at;
  *at++ = static_cast<char>(tag);
  at = put_varint(at, s.size());
  std::memcpy(at, s.data(), s.size());
  return at + s.size();
}

// Appends the framed Response {id, status {} (OK), header {revision}, <result>} where the
// result member `result_tag` holds `result_size` bytes that `fill` writes: the bytes
// protobuf's serializer produces for the same message (fields in number order, zero
// scalars and empty strings left out, present empty messages as tag + length 0).
template <class Fill>
void append_ok(std::string& out, std::uint64_t id, std::uint64_t revision, std::uint64_t result_tag,
               std::size_t result_size, Fill&& fill) {
  const std::size_t header_size = varint_field_size(revision);
  const std::size_t size = varint_field_size(id) + 2 + 1 + varint_size(header_size) + header_size +
                           1 + varint_size(result_size) + result_size;
  const std::size_t at = out.size();
  out.resize(at + proto::kFrameHeaderBytes + size);
  char* p = out.data() + at;
  proto::put_frame_header(p, static_cast<std::uint32_t>(size));
  p += proto::kFrameHeaderBytes;
  p = put_varint_field(p, kTagVarint1, id);
  *p++ = static_cast<char>(kTagBytes2);  // status: code OK, no message
  *p++ = 0;
  *p++ = static_cast<char>(kTagBytes3);
  p = put_varint(p, header_size);
  p = put_varint_field(p, kTagVarint1, revision);
  *p++ = static_cast<char>(result_tag);
  p = put_varint(p, result_size);
  p = fill(p);
  assert(p == out.data() + out.size());
}

}  // namespace

std::optional<Dispatcher::PlainAnswer> Dispatcher::answer_plain(std::string_view payload,
                                                                bool writes,
                                                                std::string& out) const noexcept {
  if (users_) return std::nullopt;  // every request goes through the auth gate
  // Request {id = 1; get = 11 | put = 12}: each once, nothing else.
  WireCursor c(payload);
  std::uint64_t id = 0;
  std::uint64_t op_tag = 0;
  std::string_view body;
  bool have_id = false;
  while (!c.done()) {
    std::uint64_t tag = 0;
    if (!c.varint(tag)) return std::nullopt;
    if (tag == kTagVarint1 && !have_id) {
      if (!c.varint(id)) return std::nullopt;
      have_id = true;
    } else if ((tag == kTagGet || tag == kTagPut) && op_tag == 0) {
      if (!c.bytes(body)) return std::nullopt;
      op_tag = tag;
    } else {
      return std::nullopt;
    }
  }
  std::string_view key;
  std::string_view value;
  if (op_tag == kTagGet) {
    if (!plain_get(body, key)) return std::nullopt;
  } else if (op_tag == kTagPut) {
    if (!writes || !plain_put(body, key, value)) return std::nullopt;
    if (value.size() > limits_.max_value_bytes) return std::nullopt;
  } else {
    return std::nullopt;
  }
  // The rest of validate_request() for these shapes: a key that is not empty and within
  // the limit (its refusal, with its message, comes from dispatch()).
  if (key.empty() || key.size() > limits_.max_key_bytes) return std::nullopt;

  const std::size_t at = out.size();
  const OpKind op = op_tag == kTagGet ? OpKind::kGet : OpKind::kPut;
  // What dispatch() answers when the engine refuses, or throws.
  auto answer_error = [&](auto&& fill) -> PlainAnswer {
    out.resize(at);
    pb::Response response;
    try {
      response.set_id(id);
      fill(response);
    } catch (const std::exception& e) {
      response.Clear();
      try {
        error(id, pb::Status::INTERNAL, std::string("internal error: ") + e.what(), response);
      } catch (...) {
        response.set_id(id);
        response.mutable_status()->set_code(pb::Status::INTERNAL);
      }
    }
    proto::append_message(out, response);
    return PlainAnswer{op, response.status().code(), id};
  };
  try {
    if (op == OpKind::kGet) {
      // Encoded from the engine's own bytes, inside the visitor (the views die with it).
      // The revision is read after the version, as the general path reads it after get().
      auto encode = [&](const st::KeyValueView& kv) {
        const std::uint64_t revision = engine_->current_revision();
        const std::uint64_t version = to_u64(kv.version);
        const std::size_t kv_size =
            bytes_field_size(kv.key.size()) + bytes_field_size(kv.value.size()) +
            varint_field_size(kv.create_revision) + varint_field_size(kv.mod_revision) +
            varint_field_size(version) + varint_field_size(kv.lease);
        const std::size_t get_size = 1 + varint_size(kv_size) + kv_size;  // GetResponse.kv
        append_ok(out, id, revision, kTagGet, get_size, [&](char* p) {
          *p++ = static_cast<char>(kTagBytes1);
          p = put_varint(p, kv_size);
          p = put_bytes_field(p, kTagBytes1, kv.key);
          p = put_bytes_field(p, kTagBytes2, kv.value);
          p = put_varint_field(p, (3 << 3) | 0, kv.create_revision);
          p = put_varint_field(p, (4 << 3) | 0, kv.mod_revision);
          p = put_varint_field(p, (5 << 3) | 0, version);
          return put_varint_field(p, (6 << 3) | 0, kv.lease);
        });
      };
      const st::Status s = engine_->get_with(key, encode);
      if (!s.ok()) {
        const std::uint64_t revision = engine_->current_revision();
        return answer_error([&](pb::Response& response) {
          set_status(response, s);
          response.mutable_header()->set_revision(revision);
          if (s.code() == st::StatusCode::kNotFound) response.mutable_get();
        });
      }
      return PlainAnswer{op, pb::Status::OK, id};
    }
    const std::size_t budget =
        max_frame_bytes_ > 1024 ? max_frame_bytes_ - 1024 : max_frame_bytes_ / 2;
    auto r = engine_->put(key, value, false, budget, 0);
    if (!r.ok()) {
      return answer_error([&](pb::Response& response) {
        const st::Status& s = r.status();
        if (s.code() == st::StatusCode::kStorageFailed &&
            !storage_failure_logged_.exchange(true, std::memory_order_relaxed)) {
          spdlog::error(
              "storage failure: {}; every write is refused (STORAGE_FAILED) until the "
              "storage is fixed and the server restarted; reads go on",
              s.message());
        }
        set_status(response, s);
        response.mutable_header()->set_revision(engine_->current_revision());
      });
    }
    append_ok(out, id, r->revision, kTagPut, 0, [](char* p) { return p; });  // put {}
    return PlainAnswer{op, pb::Status::OK, id};
  } catch (const std::exception& e) {
    const char* what = e.what();
    return answer_error([&](pb::Response& response) {
      error(id, pb::Status::INTERNAL, std::string("internal error: ") + what, response);
    });
  }
}

void Dispatcher::run(const pb::Request& request, ConnectionTxns& txns,
                     pb::Response& response) const {
  // The response budget of every request that returns key-values: the frame limit less
  // the envelope around them (id, status, header, the txn wrapper: far below 1 KiB). The
  // engine charges each key-value and txn op an upper bound of its encoding and copies
  // nothing past the budget, so a response built here always fits the frame limit, and
  // a write whose prev_kv(s) or txn results would not fit is refused before it commits
  // (docs/PROTOCOL.md, "Response size budget").
  // (Frames of 1 KiB or less, allowed but impractical, keep half for the envelope.)
  const std::size_t budget =
      max_frame_bytes_ > 1024 ? max_frame_bytes_ - 1024 : max_frame_bytes_ / 2;
  auto scan_opts = [&](const pb::ScanRequest& s) {
    st::ScanOptions o = scan_options(s);
    o.max_bytes = budget;
    return o;
  };
  auto* header = response.mutable_header();
  response.mutable_status();  // always present on the wire, OK unless set below

  // Resolves a txn_id of this connection; answers TXN_NOT_FOUND when there is none.
  auto txn_for = [&](std::uint64_t id) -> st::Transaction* {
    st::Transaction* t = txns.find(id);
    if (t == nullptr) {
      set_status(response, pb::Status::TXN_NOT_FOUND, kUnknownTxn);
      header->set_revision(engine_->current_revision());
    }
    return t;
  };
  auto fail = [&](const st::Status& s) {
    // The first storage failure is logged once (the engine refuses writes from then on and
    // every refused write carries the reason to its client).
    if (s.code() == st::StatusCode::kStorageFailed &&
        !storage_failure_logged_.exchange(true, std::memory_order_relaxed)) {
      spdlog::error(
          "storage failure: {}; every write is refused (STORAGE_FAILED) until the "
          "storage is fixed and the server restarted; reads go on",
          s.message());
    }
    set_status(response, s);
    header->set_revision(engine_->current_revision());
  };

  switch (request.op_case()) {
    case pb::Request::kPing:
      response.mutable_ping()->set_payload(request.ping().payload());
      header->set_revision(engine_->current_revision());
      return;

    case pb::Request::kGet: {
      const auto& g = request.get();
      if (g.txn_id() != 0) {
        st::Transaction* t = txn_for(g.txn_id());
        if (t == nullptr) return;
        auto r = t->get(g.key());
        header->set_revision(t->snapshot_revision());
        if (r.ok()) {
          fill_kv(std::move(r).value(), *response.mutable_get()->mutable_kv());
        } else {
          set_status(response, r.status());
          if (r.code() == st::StatusCode::kNotFound) response.mutable_get();
        }
        return;
      }
      auto r = engine_->get(g.key());
      header->set_revision(engine_->current_revision());
      if (r.ok()) {
        fill_kv(std::move(r).value(), *response.mutable_get()->mutable_kv());
      } else {
        set_status(response, r.status());
        if (r.code() == st::StatusCode::kNotFound) response.mutable_get();
      }
      return;
    }

    case pb::Request::kPut: {
      const auto& p = request.put();
      if (p.txn_id() != 0) {
        st::Transaction* t = txn_for(p.txn_id());
        if (t == nullptr) return;
        st::Status s = t->put(p.key(), p.value(), p.lease());
        header->set_revision(t->snapshot_revision());
        if (s.ok()) {
          response.mutable_put();
        } else {
          set_status(response, s);
        }
        return;
      }
      // ttl_seconds: a one-key lease, granted first and revoked again if the put fails.
      std::uint64_t lease = p.lease();
      if (p.ttl_seconds() != 0) {
        auto g = engine_->lease_grant(p.ttl_seconds());
        if (!g.ok()) return fail(g.status());
        lease = g->id;
      }
      auto r = engine_->put(p.key(), p.value(), p.prev_kv(), budget, lease);
      if (!r.ok()) {
        if (p.ttl_seconds() != 0) (void)engine_->lease_revoke(lease);
        return fail(r.status());
      }
      header->set_revision(r->revision);
      auto* out = response.mutable_put();
      if (r->prev_kv) fill_kv(std::move(*r->prev_kv), *out->mutable_prev_kv());
      if (p.ttl_seconds() != 0) out->set_lease(lease);
      return;
    }

    case pb::Request::kDel: {
      const auto& d = request.del();
      if (d.txn_id() != 0) {
        st::Transaction* t = txn_for(d.txn_id());
        if (t == nullptr) return;
        st::Status s = t->del(d.key());
        header->set_revision(t->snapshot_revision());
        if (s.ok()) {
          // Buffered until commit: whether a live key existed is known only then.
          response.mutable_del();
        } else {
          set_status(response, s);
        }
        return;
      }
      auto r = engine_->del(d.key(), d.prev_kv(), budget);
      if (!r.ok()) return fail(r.status());
      header->set_revision(r->revision);
      auto* out = response.mutable_del();
      out->set_deleted(to_u64(r->deleted));
      if (!r->prev_kvs.empty()) fill_kv(std::move(r->prev_kvs.front()), *out->mutable_prev_kv());
      return;
    }

    case pb::Request::kDeleteRange: {
      const auto& d = request.delete_range();
      Range range = resolve(d.start(), d.end(), d.prefix());
      auto r = engine_->delete_range(range.start, range.end, d.prev_kv(), budget);
      if (!r.ok()) return fail(r.status());
      header->set_revision(r->revision);
      auto* out = response.mutable_delete_range();
      out->set_deleted(to_u64(r->deleted));
      for (auto& kv : r->prev_kvs) fill_kv(std::move(kv), *out->add_prev_kvs());
      return;
    }

    case pb::Request::kScan: {
      const auto& s = request.scan();
      Range range = resolve(s.start(), s.end(), s.prefix());
      if (s.txn_id() != 0) {
        st::Transaction* t = txn_for(s.txn_id());
        if (t == nullptr) return;
        auto r = t->scan(range.start, range.end, scan_opts(s));
        header->set_revision(t->snapshot_revision());
        if (!r.ok()) {
          set_status(response, r.status());
          return;
        }
        fill_scan(std::move(r->kvs), r->count, r->more, *response.mutable_scan());
        return;
      }
      auto r = engine_->scan(range.start, range.end, scan_opts(s));
      if (!r.ok()) return fail(r.status());
      header->set_revision(r->revision);
      fill_scan(std::move(r->kvs), r->count, r->more, *response.mutable_scan());
      return;
    }

    case pb::Request::kTxn: {
      const auto& t = request.txn();
      st::CondTxn c;
      c.compare.reserve(static_cast<std::size_t>(t.compare_size()));
      for (const auto& cmp : t.compare()) c.compare.push_back(to_engine(cmp));
      c.success.reserve(static_cast<std::size_t>(t.success_size()));
      for (const auto& op : t.success()) c.success.push_back(to_engine(op));
      c.failure.reserve(static_cast<std::size_t>(t.failure_size()));
      for (const auto& op : t.failure()) c.failure.push_back(to_engine(op));
      c.max_response_bytes = budget;
      // Put ops with ttl_seconds: a lease each, granted before the transaction; the leases
      // of the branch that did not run (or of a failed transaction) are revoked again.
      std::vector<std::uint64_t> granted;  // success ops, then failure ops; 0: none
      auto grant_ops = [&](const auto& ops, std::vector<st::TxnOp>& eops) -> st::Status {
        for (int i = 0; i < ops.size(); ++i) {
          const std::int64_t ttl =
              ops[i].op_case() == pb::TxnOp::kPut ? ops[i].put().ttl_seconds() : 0;
          if (ttl == 0) {
            granted.push_back(0);
            continue;
          }
          auto g = engine_->lease_grant(ttl);
          if (!g.ok()) return g.status();
          granted.push_back(g->id);
          eops[static_cast<std::size_t>(i)].lease = g->id;
        }
        return st::Status::Ok();
      };
      auto revoke_granted = [&](std::size_t from, std::size_t to) {
        for (std::size_t i = from; i < to && i < granted.size(); ++i) {
          if (granted[i] != 0) (void)engine_->lease_revoke(granted[i]);
        }
      };
      const std::size_t n_success = static_cast<std::size_t>(t.success_size());
      if (st::Status gs = grant_ops(t.success(), c.success); !gs.ok()) {
        revoke_granted(0, granted.size());
        return fail(gs);
      }
      if (st::Status gs = grant_ops(t.failure(), c.failure); !gs.ok()) {
        revoke_granted(0, granted.size());
        return fail(gs);
      }
      auto r = engine_->txn(c);
      if (!r.ok()) {
        revoke_granted(0, granted.size());
        return fail(r.status());
      }
      if (r->succeeded) {
        revoke_granted(n_success, granted.size());
      } else {
        revoke_granted(0, n_success);
      }
      header->set_revision(r->revision);
      auto* out = response.mutable_txn();
      out->set_succeeded(r->succeeded);
      const auto& ops = r->succeeded ? t.success() : t.failure();
      const std::size_t base = r->succeeded ? 0 : n_success;
      const std::size_t n = std::min(r->results.size(), static_cast<std::size_t>(ops.size()));
      for (std::size_t i = 0; i < n; ++i) {
        auto* res = out->add_results();
        fill_txn_result(ops[static_cast<int>(i)], std::move(r->results[i]), *res);
        if (base + i < granted.size() && granted[base + i] != 0) {
          res->mutable_put()->set_lease(granted[base + i]);
        }
      }
      return;
    }

    case pb::Request::kBegin: {
      if (txns.full(max_txns_per_connection_)) {
        set_status(response, pb::Status::RESOURCE_EXHAUSTED,
                   "this connection holds --max-txns-per-connection transactions already");
        header->set_revision(engine_->current_revision());
        return;
      }
      if (const auto admitted = txns.admit(); admitted != ConnectionTxns::Admit::kOk) {
        if (admitted == ConnectionTxns::Admit::kTenantFull) {
          count(counters_, &ServerCounters::quota_refusals);
          set_status(response, pb::Status::RESOURCE_EXHAUSTED,
                     "user '" + txns.auth().tenant->name() + "' holds its max_txns of " +
                         std::to_string(txns.auth().user->quota.max_txns) +
                         " open transactions already");
        } else {
          set_status(response, pb::Status::RESOURCE_EXHAUSTED,
                     "this client address holds --max-txns-per-peer transactions already");
        }
        header->set_revision(engine_->current_revision());
        return;
      }
      const auto iso = request.begin().isolation() == pb::SNAPSHOT ? st::Isolation::kSnapshot
                                                                   : st::Isolation::kSerializable;
      auto r = engine_->begin(iso);
      if (!r.ok()) {
        txns.unadmit();
        return fail(r.status());
      }
      header->set_revision(r->snapshot_revision());
      response.mutable_begin()->set_txn_id(r->id());
      txns.add(std::move(r).value());
      return;
    }

    case pb::Request::kCommit: {
      const std::uint64_t id = request.commit().txn_id();
      st::Transaction* t = txn_for(id);
      if (t == nullptr) return;
      auto r = t->commit();
      txns.erase(id);  // committed, or aborted by the failed commit
      if (!r.ok()) return fail(r.status());
      header->set_revision(*r);
      response.mutable_commit()->set_revision(*r);
      return;
    }

    case pb::Request::kAbort: {
      const std::uint64_t id = request.abort().txn_id();
      st::Transaction* t = txn_for(id);
      if (t == nullptr) return;
      header->set_revision(t->snapshot_revision());
      st::Status s = t->abort();
      txns.erase(id);
      if (!s.ok()) {
        set_status(response, s);
        return;
      }
      response.mutable_abort();
      return;
    }

    case pb::Request::kStats: {
      const st::EngineStats e = engine_->stats();
      auto* out = response.mutable_stats();
      out->set_revision(e.revision);
      out->set_keys(e.keys);
      out->set_live_versions(e.live_versions);
      out->set_bytes(e.bytes);
      out->set_active_txns(e.active_txns);
      out->set_oldest_snapshot_age_ms(static_cast<std::uint64_t>(
          std::chrono::duration_cast<std::chrono::milliseconds>(e.oldest_snapshot_age).count()));
      out->set_versions_pruned(e.versions_pruned);
      out->set_commits(e.commits);
      out->set_aborts_conflict(e.aborts_conflict);
      out->set_aborts_expired(e.aborts_expired);
      out->set_aborts_user(e.aborts_user);
      out->set_reclaimer_retired(e.kovan_retired);
      out->set_reclaimer_reclaimed(e.kovan_reclaimed);
      out->set_index_nodes(e.index_nodes);
      out->set_active_snapshots(e.active_snapshots);
      out->set_gc_sweeps(e.gc_sweeps);
      out->set_leases(e.leases);
      out->set_leases_expired(e.leases_expired);
      out->set_leases_revoked(e.leases_revoked);
      if (durable_) {
        const st::DurabilityStats d = engine_->durability_stats();
        out->set_durable(d.enabled);
        out->set_wal_bytes(d.wal_bytes);
        out->set_wal_records(d.wal_records);
        out->set_wal_fsyncs(d.fsyncs);
        out->set_checkpoints(d.checkpoints);
        out->set_last_checkpoint_revision(d.last_checkpoint_revision);
        out->set_durable_revision(d.durable_revision);
        out->set_storage_failed(d.write_refused);
        if (d.write_refused) out->set_storage_error(d.refusal_reason);
      }
      if (server_stats_) server_stats_(*out);
      header->set_revision(e.revision);
      return;
    }

    case pb::Request::kCheckpoint: {
      // With --users, only the admin role gets here (forbidden()).
      if (!durable_) {
        set_status(response, pb::Status::INVALID_ARGUMENT,
                   "checkpoints need a durable server (start it with --data-dir)");
        header->set_revision(engine_->current_revision());
        return;
      }
      auto r = engine_->checkpoint();
      if (!r.ok()) return fail(r.status());
      header->set_revision(*r);
      response.mutable_checkpoint()->set_revision(*r);
      return;
    }

    case pb::Request::kSnapshot: {
      // With --users, only the admin role gets here (forbidden()): the image holds every key.
      const auto& q = request.snapshot();
      header->set_revision(engine_->current_revision());
      if (q.stream_id() == 0) {
        txns.snapshot.reset();  // a new stream ends the connection's previous one
        if (snapshot_streams_.load(std::memory_order_relaxed) >= kMaxSnapshotStreams) {
          set_status(response, pb::Status::RESOURCE_EXHAUSTED,
                     "too many snapshot streams in progress (at most " +
                         std::to_string(kMaxSnapshotStreams) + "); try again later");
          return;
        }
        const std::uint64_t id = next_stream_id_.fetch_add(1, std::memory_order_relaxed);
        txns.snapshot =
            std::make_unique<SnapshotStream>(*engine_, id, kSnapshotBuffered, &snapshot_streams_);
      } else if (!txns.snapshot || txns.snapshot->id() != q.stream_id()) {
        set_status(response, pb::Status::INVALID_ARGUMENT,
                   "unknown snapshot stream " + std::to_string(q.stream_id()) +
                       " (it ended, failed, or belongs to another connection); start again "
                       "with stream_id 0");
        return;
      } else if (q.offset() != txns.snapshot->position()) {
        set_status(response, pb::Status::INVALID_ARGUMENT,
                   "snapshot offset " + std::to_string(q.offset()) +
                       " is not the stream position " + std::to_string(txns.snapshot->position()) +
                       " (chunks are sequential)");
        return;
      }
      SnapshotStream& stream = *txns.snapshot;
      const std::size_t room = budget > 256 ? budget - 256 : budget / 2;
      SnapshotStream::Chunk c = stream.take(std::min(kSnapshotChunk, room), kSnapshotWait);
      if (!c.status.ok()) {
        txns.snapshot.reset();
        return fail(c.status);
      }
      auto* out = response.mutable_snapshot();
      out->set_stream_id(stream.id());
      out->set_offset(c.offset);
      out->set_data(std::move(c.data));
      if (c.done) {
        out->set_done(true);
        out->set_total_bytes(c.total_bytes);
        out->set_crc32c(c.crc32c);
        out->set_revision(c.revision);
        header->set_revision(c.revision);
        txns.snapshot.reset();
      }
      return;
    }

    case pb::Request::kFault: {
      if (!fault_injection_) {
        set_status(response, pb::Status::INVALID_ARGUMENT,
                   "fault injection is disabled (start the server with --enable-fault-injection)");
        header->set_revision(engine_->current_revision());
        return;
      }
      const std::uint32_t stall_ms = request.fault().stall_ms();
      if (stall_ms > max_fault_stall_ms_) {
        set_status(response, pb::Status::INVALID_ARGUMENT,
                   "stall_ms " + std::to_string(stall_ms) + " exceeds --max-fault-stall (" +
                       std::to_string(max_fault_stall_ms_) + " ms)");
        header->set_revision(engine_->current_revision());
        return;
      }
      // One stall at a time, so that FAULT requests cannot freeze every worker. The flag
      // orders nothing else: relaxed exchange and store.
      if (stalling_.exchange(true, std::memory_order_relaxed)) {
        set_status(response, pb::Status::RESOURCE_EXHAUSTED,
                   "another fault stall is in progress (one at a time)");
        header->set_revision(engine_->current_revision());
        return;
      }
      struct EndStall {
        std::atomic<bool>& flag;
        ~EndStall() { flag.store(false, std::memory_order_relaxed); }
      } end_stall{stalling_};
      spdlog::warn("fault injection: stalling a worker thread for {} ms", stall_ms);
      {
        // A stalled thread: pinned by the reclaimer for the whole stall, as a preempted
        // reader would be.
        kovan::Guard guard = kovan::pin();
        std::this_thread::sleep_for(std::chrono::milliseconds(stall_ms));
      }
      spdlog::warn("fault injection: stall of {} ms ended", stall_ms);
      response.mutable_fault();
      header->set_revision(engine_->current_revision());
      return;
    }

    case pb::Request::kLeaseGrant:
    case pb::Request::kLeaseRevoke:
    case pb::Request::kLeaseKeepalive:
    case pb::Request::kLeaseTimeToLive:
      run_lease(request, txns, response);
      return;
    case pb::Request::kWatch:
    case pb::Request::kCancelWatch:
      if (txns.watches == nullptr) {
        set_status(response, pb::Status::INVALID_ARGUMENT, "this connection cannot watch");
        header->set_revision(engine_->current_revision());
        return;
      }
      if (request.has_watch()) {
        txns.watches->watch(request, response);
      } else {
        txns.watches->cancel(request, response);
      }
      return;

    case pb::Request::kAuthenticate:  // answered by dispatch()
    case pb::Request::OP_NOT_SET:     // rejected by validation
    default:
      break;
  }
  set_status(response, pb::Status::INVALID_ARGUMENT, "request has no operation set");
}

void Dispatcher::run_lease(const pb::Request& request, ConnectionTxns& txns,
                           pb::Response& response) const {
  auto* header = response.mutable_header();
  auto fail = [&](const st::Status& s) {
    set_status(response, s);
    header->set_revision(engine_->current_revision());
  };
  // A user with a key prefix acts only on leases whose attached keys are all inside it (a
  // revoke deletes them; a keep-alive keeps them; a time-to-live lists them).
  const std::string_view prefix =
      users_ && txns.auth().user ? std::string_view(txns.auth().user->prefix) : std::string_view();
  auto allowed = [&](std::uint64_t id) {
    if (prefix.empty()) return true;
    auto info = engine_->lease_time_to_live(id, true);
    if (!info.ok()) return true;  // the request itself reports LEASE_NOT_FOUND
    for (const std::string& k : info->keys) {
      if (!key_allowed(prefix, k)) {
        set_status(response, pb::Status::PERMISSION_DENIED,
                   "user '" + txns.auth().user->name + "' may not act on lease " +
                       std::to_string(id) + ": a key attached to it is outside its prefix");
        header->set_revision(engine_->current_revision());
        return false;
      }
    }
    return true;
  };
  switch (request.op_case()) {
    case pb::Request::kLeaseGrant: {
      const auto& q = request.lease_grant();
      auto r = engine_->lease_grant(q.ttl_seconds(), q.id());
      if (!r.ok()) return fail(r.status());
      header->set_revision(r->revision);
      auto* out = response.mutable_lease_grant();
      out->set_id(r->id);
      out->set_ttl_seconds(r->ttl_seconds);
      return;
    }
    case pb::Request::kLeaseRevoke: {
      const std::uint64_t id = request.lease_revoke().id();
      if (!allowed(id)) return;
      auto r = engine_->lease_revoke(id);
      if (!r.ok()) return fail(r.status());
      header->set_revision(r->revision);
      response.mutable_lease_revoke()->set_deleted(to_u64(r->deleted));
      return;
    }
    case pb::Request::kLeaseKeepalive: {
      const std::uint64_t id = request.lease_keepalive().id();
      if (!allowed(id)) return;
      auto r = engine_->lease_keepalive(id);
      if (!r.ok()) return fail(r.status());
      header->set_revision(engine_->current_revision());
      auto* out = response.mutable_lease_keepalive();
      out->set_id(id);
      out->set_ttl_seconds(*r);
      return;
    }
    case pb::Request::kLeaseTimeToLive: {
      const auto& q = request.lease_time_to_live();
      if (!allowed(q.id())) return;
      auto r = engine_->lease_time_to_live(q.id(), q.keys());
      if (!r.ok()) return fail(r.status());
      header->set_revision(engine_->current_revision());
      auto* out = response.mutable_lease_time_to_live();
      out->set_id(q.id());
      out->set_ttl_seconds(r->ttl_seconds);
      out->set_granted_ttl_seconds(r->granted_ttl_seconds);
      for (std::string& k : r->keys) out->add_keys(std::move(k));
      return;
    }
    default:
      set_status(response, pb::Status::INVALID_ARGUMENT, "not a lease request");
      header->set_revision(engine_->current_revision());
      return;
  }
}

}  // namespace kv::server
