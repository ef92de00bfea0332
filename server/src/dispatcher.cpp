#include "server/dispatcher.hpp"

#include <algorithm>
#include <chrono>
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
}

std::size_t ConnectionTxns::prune() noexcept {
  const auto before = txns_.size();
  std::erase_if(txns_, [](const st::Transaction& t) { return !t.active(); });
  const std::size_t gone = before - txns_.size();
  released(gone);
  return gone;
}

bool ConnectionTxns::admit() {
  if (peer_slots_ == nullptr) return true;
  if (peer_slots_->acquire(peer_)) return true;
  if (prune() > 0 && peer_slots_->acquire(peer_)) return true;
  counters_->txns_refused_per_peer.fetch_add(1, std::memory_order_relaxed);
  return false;
}

void ConnectionTxns::unadmit() noexcept {
  if (peer_slots_ != nullptr) peer_slots_->release(peer_, 1);
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

Dispatcher::Dispatcher(st::Engine& engine, const ServerConfig& config, ServerStatsFn server_stats)
    : engine_(&engine),
      max_frame_bytes_(config.max_frame_bytes),
      max_txns_per_connection_(config.max_txns_per_connection),
      max_fault_stall_ms_(static_cast<std::uint32_t>(config.max_fault_stall.count())),
      fault_injection_(config.enable_fault_injection),
      durable_(config.durable()),
      server_stats_(std::move(server_stats)) {
  limits_.max_key_bytes = config.max_key_bytes;
  limits_.max_value_bytes = config.max_value_bytes;
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
    run(request, txns, response);
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
        st::Status s = t->put(p.key(), p.value());
        header->set_revision(t->snapshot_revision());
        if (s.ok()) {
          response.mutable_put();
        } else {
          set_status(response, s);
        }
        return;
      }
      auto r = engine_->put(p.key(), p.value(), p.prev_kv(), budget);
      if (!r.ok()) return fail(r.status());
      header->set_revision(r->revision);
      auto* out = response.mutable_put();
      if (r->prev_kv) fill_kv(std::move(*r->prev_kv), *out->mutable_prev_kv());
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
      auto r = engine_->txn(c);
      if (!r.ok()) return fail(r.status());
      header->set_revision(r->revision);
      auto* out = response.mutable_txn();
      out->set_succeeded(r->succeeded);
      const auto& ops = r->succeeded ? t.success() : t.failure();
      const std::size_t n = std::min(r->results.size(), static_cast<std::size_t>(ops.size()));
      for (std::size_t i = 0; i < n; ++i) {
        fill_txn_result(ops[static_cast<int>(i)], std::move(r->results[i]), *out->add_results());
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
      if (!txns.admit()) {
        set_status(response, pb::Status::RESOURCE_EXHAUSTED,
                   "this client address holds --max-txns-per-peer transactions already");
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
      // (Once roles exist: the admin-role check of the requesting connection goes here.)
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
      // (Once roles exist: the admin-role check of the requesting connection goes here.)
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

    case pb::Request::OP_NOT_SET:  // rejected by validation
      break;
  }
  set_status(response, pb::Status::INVALID_ARGUMENT, "request has no operation set");
}

}  // namespace kv::server
