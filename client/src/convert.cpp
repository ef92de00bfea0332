#include "convert.hpp"

#include <google/protobuf/descriptor.h>
#include <google/protobuf/reflection.h>

#include <string>

#include "proto/codec.hpp"

namespace kv::client {

std::string_view code_name(Code code) noexcept {
  return proto::code_name(static_cast<proto::pb::Status::Code>(code));
}

std::string Status::to_string() const {
  if (ok()) return "OK";
  std::string s(code_name(code_));
  if (!message_.empty()) s += ": " + message_;
  if (outcome_unknown_) s += " [outcome unknown]";
  return s;
}

namespace detail {

namespace {

void set_range(const Range& range, std::string* start, std::string* end, bool& prefix) {
  *start = range.start;
  *end = range.end;
  prefix = range.prefix;
}

void encode_op(pb::TxnOp& out, const TxnOp& op) {
  switch (op.kind) {
    case TxnOp::Kind::kGet:
      out.mutable_get()->set_key(op.key);
      break;
    case TxnOp::Kind::kPut: {
      auto* p = out.mutable_put();
      p->set_key(op.key);
      p->set_value(op.value);
      p->set_prev_kv(op.prev_kv);
      p->set_lease(op.lease);
      break;
    }
    case TxnOp::Kind::kDelete: {
      auto* d = out.mutable_del();
      d->set_key(op.key);
      d->set_prev_kv(op.prev_kv);
      break;
    }
    case TxnOp::Kind::kDeleteRange: {
      auto* d = out.mutable_delete_range();
      bool prefix = false;
      set_range(op.range, d->mutable_start(), d->mutable_end(), prefix);
      d->set_prefix(prefix);
      d->set_prev_kv(op.prev_kv);
      break;
    }
    case TxnOp::Kind::kScan: {
      auto* s = out.mutable_scan();
      bool prefix = false;
      set_range(op.range, s->mutable_start(), s->mutable_end(), prefix);
      s->set_prefix(prefix);
      s->set_limit(op.scan.limit);
      s->set_keys_only(op.scan.keys_only);
      s->set_count_only(op.scan.count_only);
      s->set_reverse(op.scan.reverse);
      break;
    }
  }
}

std::vector<KeyValue> kvs_of(const google::protobuf::RepeatedPtrField<pb::KeyValue>& in) {
  std::vector<KeyValue> out;
  out.reserve(static_cast<std::size_t>(in.size()));
  for (const auto& kv : in) out.push_back(kv_of(kv));
  return out;
}

ScanResult scan_of(const pb::ScanResponse& s, std::uint64_t revision) {
  ScanResult out;
  out.revision = revision;
  out.kvs = kvs_of(s.kvs());
  out.count = s.count();
  out.more = s.more();
  return out;
}

Status mismatch(const pb::Response& r) {
  return Status(Code::kInternal, "protocol error: response result " +
                                     std::to_string(static_cast<int>(r.result_case())) +
                                     " does not match the request");
}

// OK status and the expected result member, or the status to return.
Status check(const pb::Response& r, pb::Response::ResultCase expected) {
  Status s = status_of(r);
  if (!s.ok()) return s;
  if (r.result_case() != expected) return mismatch(r);
  return s;
}

}  // namespace

void encode_ping(pb::Request& r, std::string_view payload) {
  r.mutable_ping()->set_payload(std::string(payload));
}

void encode_get(pb::Request& r, std::string_view key, std::uint64_t txn_id) {
  auto* g = r.mutable_get();
  g->set_key(std::string(key));
  g->set_txn_id(txn_id);
}

void encode_put(pb::Request& r, std::string_view key, std::string_view value, bool prev_kv,
                std::uint64_t txn_id) {
  auto* p = r.mutable_put();
  p->set_key(std::string(key));
  p->set_value(std::string(value));
  p->set_prev_kv(prev_kv);
  p->set_txn_id(txn_id);
}

void encode_put(pb::Request& r, std::string_view key, std::string_view value,
                const PutOptions& options) {
  encode_put(r, key, value, options.prev_kv, 0);
  r.mutable_put()->set_lease(options.lease);
  r.mutable_put()->set_ttl_seconds(options.ttl_seconds);
}

void encode_watch(pb::Request& r, const WatchKeys& keys, const WatchOptions& options) {
  auto* w = r.mutable_watch();
  w->set_key(keys.key);
  w->set_range_end(keys.range_end);
  w->set_prefix(keys.prefix);
  w->set_start_revision(options.start_revision);
  w->set_prev_kv(options.prev_kv);
  w->set_no_put(options.no_put);
  w->set_no_delete(options.no_delete);
}

void encode_cancel_watch(pb::Request& r, std::uint64_t watch_id) {
  r.mutable_cancel_watch()->set_watch_id(watch_id);
}

void encode_lease_grant(pb::Request& r, std::int64_t ttl_seconds, std::uint64_t id) {
  r.mutable_lease_grant()->set_ttl_seconds(ttl_seconds);
  r.mutable_lease_grant()->set_id(id);
}

void encode_lease_revoke(pb::Request& r, std::uint64_t id) { r.mutable_lease_revoke()->set_id(id); }

void encode_lease_keepalive(pb::Request& r, std::uint64_t id) {
  r.mutable_lease_keepalive()->set_id(id);
}

void encode_lease_time_to_live(pb::Request& r, std::uint64_t id, bool keys) {
  r.mutable_lease_time_to_live()->set_id(id);
  r.mutable_lease_time_to_live()->set_keys(keys);
}

void encode_del(pb::Request& r, std::string_view key, bool prev_kv, std::uint64_t txn_id) {
  auto* d = r.mutable_del();
  d->set_key(std::string(key));
  d->set_prev_kv(prev_kv);
  d->set_txn_id(txn_id);
}

void encode_delete_range(pb::Request& r, const Range& range, bool prev_kv) {
  auto* d = r.mutable_delete_range();
  bool prefix = false;
  set_range(range, d->mutable_start(), d->mutable_end(), prefix);
  d->set_prefix(prefix);
  d->set_prev_kv(prev_kv);
}

void encode_scan(pb::Request& r, const Range& range, const ScanOptions& options,
                 std::uint64_t txn_id) {
  auto* s = r.mutable_scan();
  bool prefix = false;
  set_range(range, s->mutable_start(), s->mutable_end(), prefix);
  s->set_prefix(prefix);
  s->set_limit(options.limit);
  s->set_keys_only(options.keys_only);
  s->set_count_only(options.count_only);
  s->set_reverse(options.reverse);
  s->set_txn_id(txn_id);
}

void encode_txn(pb::Request& r, const TxnRequest& request) {
  auto* t = r.mutable_txn();
  for (const Compare& c : request.compare) {
    auto* pc = t->add_compare();
    pc->set_key(c.key);
    pc->set_op(static_cast<pb::Compare::Op>(c.op));
    switch (c.target) {
      case Compare::Target::kVersion:
        pc->set_version(c.number);
        break;
      case Compare::Target::kCreateRevision:
        pc->set_create_revision(c.number);
        break;
      case Compare::Target::kModRevision:
        pc->set_mod_revision(c.number);
        break;
      case Compare::Target::kValue:
        pc->set_value(c.value);
        break;
    }
  }
  for (const TxnOp& op : request.success) encode_op(*t->add_success(), op);
  for (const TxnOp& op : request.failure) encode_op(*t->add_failure(), op);
}

void encode_begin(pb::Request& r, Isolation isolation) {
  r.mutable_begin()->set_isolation(isolation == Isolation::kSnapshot ? pb::SNAPSHOT
                                                                     : pb::SERIALIZABLE);
}

void encode_commit(pb::Request& r, std::uint64_t txn_id) { r.mutable_commit()->set_txn_id(txn_id); }

void encode_abort(pb::Request& r, std::uint64_t txn_id) { r.mutable_abort()->set_txn_id(txn_id); }

void encode_stats(pb::Request& r) { r.mutable_stats(); }

void encode_fault(pb::Request& r, std::uint32_t stall_ms) {
  r.mutable_fault()->set_stall_ms(stall_ms);
}

Status status_of(const pb::Response& r) {
  const int code = r.status().code();
  if (code == 0) return Status();
  if (code < 0 || code > static_cast<int>(Code::kLeaseNotFound)) {
    return Status(Code::kInternal,
                  "unknown status code " + std::to_string(code) + ": " + r.status().message());
  }
  Status out(static_cast<Code>(code), r.status().message());
  out.set_compact_revision(r.status().compact_revision());
  return out;
}

KeyValue kv_of(const pb::KeyValue& kv) {
  return KeyValue{kv.key(),          kv.value(),   kv.create_revision(),
                  kv.mod_revision(), kv.version(), kv.lease()};
}

Result<std::string> decode_ping(const pb::Response& r) {
  Status s = check(r, pb::Response::kPing);
  if (!s.ok()) return s;
  return r.ping().payload();
}

Result<KeyValue> decode_get(const pb::Response& r) {
  Status s = check(r, pb::Response::kGet);
  if (!s.ok()) return s;
  return kv_of(r.get().kv());
}

Result<PutResult> decode_put(const pb::Response& r) {
  Status s = check(r, pb::Response::kPut);
  if (!s.ok()) return s;
  PutResult out;
  out.revision = r.header().revision();
  if (r.put().has_prev_kv()) out.prev = kv_of(r.put().prev_kv());
  out.lease = r.put().lease();
  return out;
}

Result<DeleteResult> decode_del(const pb::Response& r) {
  Status s = check(r, pb::Response::kDel);
  if (!s.ok()) return s;
  DeleteResult out;
  out.revision = r.header().revision();
  out.deleted = r.del().deleted();
  if (r.del().has_prev_kv()) out.prev = kv_of(r.del().prev_kv());
  return out;
}

Result<DeleteRangeResult> decode_delete_range(const pb::Response& r) {
  Status s = check(r, pb::Response::kDeleteRange);
  if (!s.ok()) return s;
  DeleteRangeResult out;
  out.revision = r.header().revision();
  out.deleted = r.delete_range().deleted();
  out.prev_kvs = kvs_of(r.delete_range().prev_kvs());
  return out;
}

Result<ScanResult> decode_scan(const pb::Response& r) {
  Status s = check(r, pb::Response::kScan);
  if (!s.ok()) return s;
  return scan_of(r.scan(), r.header().revision());
}

Result<TxnResult> decode_txn(const pb::Response& r) {
  Status s = check(r, pb::Response::kTxn);
  if (!s.ok()) return s;
  TxnResult out;
  out.revision = r.header().revision();
  out.succeeded = r.txn().succeeded();
  for (const pb::TxnOpResult& op : r.txn().results()) {
    TxnOpResult res;
    switch (op.result_case()) {
      case pb::TxnOpResult::kGet:
        res.kind = TxnOp::Kind::kGet;
        res.found = op.code() == pb::Status::OK && op.get().has_kv();
        if (res.found) res.kv = kv_of(op.get().kv());
        break;
      case pb::TxnOpResult::kPut:
        res.kind = TxnOp::Kind::kPut;
        if (op.put().has_prev_kv()) res.kvs.push_back(kv_of(op.put().prev_kv()));
        break;
      case pb::TxnOpResult::kDel:
        res.kind = TxnOp::Kind::kDelete;
        res.deleted = op.del().deleted();
        if (op.del().has_prev_kv()) res.kvs.push_back(kv_of(op.del().prev_kv()));
        break;
      case pb::TxnOpResult::kDeleteRange:
        res.kind = TxnOp::Kind::kDeleteRange;
        res.deleted = op.delete_range().deleted();
        res.kvs = kvs_of(op.delete_range().prev_kvs());
        break;
      case pb::TxnOpResult::kScan:
        res.kind = TxnOp::Kind::kScan;
        res.kvs = kvs_of(op.scan().kvs());
        res.count = op.scan().count();
        res.more = op.scan().more();
        break;
      case pb::TxnOpResult::RESULT_NOT_SET:
        return Status(Code::kInternal, "protocol error: txn op result without a result");
    }
    out.results.push_back(std::move(res));
  }
  return out;
}

Result<std::pair<std::uint64_t, std::uint64_t>> decode_begin(const pb::Response& r) {
  Status s = check(r, pb::Response::kBegin);
  if (!s.ok()) return s;
  if (r.begin().txn_id() == 0) {
    return Status(Code::kInternal, "protocol error: begin returned transaction id 0");
  }
  return std::make_pair(r.begin().txn_id(), r.header().revision());
}

Result<std::uint64_t> decode_commit(const pb::Response& r) {
  Status s = check(r, pb::Response::kCommit);
  if (!s.ok()) return s;
  return r.commit().revision();
}

Status decode_empty(const pb::Response& r, pb::Response::ResultCase expected) {
  return check(r, expected);
}

Result<Stats> decode_stats(const pb::Response& r) {
  Status s = check(r, pb::Response::kStats);
  if (!s.ok()) return s;
  Stats out;
  out.header_revision = r.header().revision();
  // Every uint64 field by reflection, in field-number order, so that counters added to
  // StatsResponse appear without a client change.
  const pb::StatsResponse& m = r.stats();
  const google::protobuf::Descriptor* d = m.GetDescriptor();
  const google::protobuf::Reflection* refl = m.GetReflection();
  for (int i = 0; i < d->field_count(); ++i) {
    const google::protobuf::FieldDescriptor* f = d->field(i);
    if (f->is_repeated()) continue;
    if (f->cpp_type() == google::protobuf::FieldDescriptor::CPPTYPE_BOOL) {
      out.counters.emplace_back(f->name(), refl->GetBool(m, f) ? 1u : 0u);  // flags as 0/1
      continue;
    }
    if (f->cpp_type() == google::protobuf::FieldDescriptor::CPPTYPE_STRING) {
      const std::string text = refl->GetString(m, f);
      if (!text.empty()) out.texts.emplace_back(f->name(), text);
      continue;
    }
    if (f->cpp_type() != google::protobuf::FieldDescriptor::CPPTYPE_UINT64) continue;
    out.counters.emplace_back(f->name(), refl->GetUInt64(m, f));
  }
  return out;
}

void encode_checkpoint(pb::Request& r) { r.mutable_checkpoint(); }

void encode_snapshot(pb::Request& r, std::uint64_t stream_id, std::uint64_t offset) {
  auto* s = r.mutable_snapshot();
  s->set_stream_id(stream_id);
  s->set_offset(offset);
}

Result<std::uint64_t> decode_checkpoint(const pb::Response& r) {
  Status s = check(r, pb::Response::kCheckpoint);
  if (!s.ok()) return s;
  return r.checkpoint().revision();
}

Result<SnapshotChunk> decode_snapshot(const pb::Response& r) {
  Status s = check(r, pb::Response::kSnapshot);
  if (!s.ok()) return s;
  const pb::SnapshotResponse& m = r.snapshot();
  if (m.stream_id() == 0) {
    return Status(Code::kInternal, "protocol error: snapshot chunk without a stream id");
  }
  SnapshotChunk c;
  c.stream_id = m.stream_id();
  c.offset = m.offset();
  c.data = m.data();
  c.done = m.done();
  c.total_bytes = m.total_bytes();
  c.crc32c = m.crc32c();
  c.revision = m.revision();
  return c;
}

Result<WatchCreated> decode_watch(const pb::Response& r) {
  Status s = check(r, pb::Response::kWatch);
  if (!s.ok()) return s;
  if (r.watch().watch_id() == 0) {
    return Status(Code::kInternal, "protocol error: watch created with id 0");
  }
  return WatchCreated{r.watch().watch_id(), r.watch().start_revision()};
}

Result<LeaseGrant> decode_lease_grant(const pb::Response& r) {
  Status s = check(r, pb::Response::kLeaseGrant);
  if (!s.ok()) return s;
  if (r.lease_grant().id() == 0) {
    return Status(Code::kInternal, "protocol error: lease granted with id 0");
  }
  return LeaseGrant{r.lease_grant().id(), r.lease_grant().ttl_seconds()};
}

Result<LeaseRevokeResult> decode_lease_revoke(const pb::Response& r) {
  Status s = check(r, pb::Response::kLeaseRevoke);
  if (!s.ok()) return s;
  return LeaseRevokeResult{r.header().revision(), r.lease_revoke().deleted()};
}

Result<LeaseGrant> decode_lease_keepalive(const pb::Response& r) {
  Status s = check(r, pb::Response::kLeaseKeepalive);
  if (!s.ok()) return s;
  return LeaseGrant{r.lease_keepalive().id(), r.lease_keepalive().ttl_seconds()};
}

Result<LeaseInfo> decode_lease_time_to_live(const pb::Response& r) {
  Status s = check(r, pb::Response::kLeaseTimeToLive);
  if (!s.ok()) return s;
  const auto& m = r.lease_time_to_live();
  LeaseInfo out{m.id(), m.ttl_seconds(), m.granted_ttl_seconds(), {}};
  out.keys.assign(m.keys().begin(), m.keys().end());
  return out;
}

void append_watch_events(const pb::WatchEvents& push, WatchBatch& batch) {
  batch.watch_id = push.watch_id();
  if (push.revision() != 0) batch.revision = push.revision();
  batch.events.reserve(batch.events.size() + static_cast<std::size_t>(push.events_size()));
  for (const pb::Event& e : push.events()) {
    WatchEvent out;
    out.type = e.type() == pb::Event::DELETE ? WatchEvent::Type::kDelete : WatchEvent::Type::kPut;
    out.kv = kv_of(e.kv());
    if (e.has_prev_kv()) out.prev = kv_of(e.prev_kv());
    batch.events.push_back(std::move(out));
  }
  if (push.canceled()) {
    batch.canceled = true;
    const int code = push.cancel_code();
    if (code < 0 || code > static_cast<int>(Code::kLeaseNotFound)) {
      batch.status =
          Status(Code::kInternal, "watch ended with unknown code " + std::to_string(code) + ": " +
                                      push.cancel_reason());
    } else {
      batch.status = Status(static_cast<Code>(code), push.cancel_reason());
    }
    batch.compact_revision = push.compact_revision();
    batch.resume_revision = push.resume_revision();
  }
}

}  // namespace detail
}  // namespace kv::client
