#include "proto/codec.hpp"

#include "proto/frame.hpp"

namespace kv::proto {

bool parse_request(std::string_view payload, pb::Request& out) {
  // ParseFromArray clears `out` first. The size fits in int: frames are bounded by a
  // uint32 limit that the server keeps far below 2 GiB.
  if (payload.size() > static_cast<std::size_t>(INT32_MAX)) return false;
  return out.ParseFromArray(payload.data(), static_cast<int>(payload.size()));
}

void append_message(std::string& out, const google::protobuf::MessageLite& message) {
  const std::size_t size = message.ByteSizeLong();
  const std::size_t at = out.size();
  out.resize(at + kFrameHeaderBytes + size);
  auto* dst = reinterpret_cast<std::uint8_t*>(out.data() + at);
  put_frame_header(out.data() + at, static_cast<std::uint32_t>(size));
  // ByteSizeLong() above cached the sizes that this pass relies on.
  message.SerializeWithCachedSizesToArray(dst + kFrameHeaderBytes);
}

namespace {

Validation invalid(std::string_view message) noexcept {
  return Validation{pb::Status::INVALID_ARGUMENT, message};
}

Validation check_key(const std::string& key, const RequestLimits& limits) noexcept {
  if (key.empty()) return invalid("key must not be empty");
  if (key.size() > limits.max_key_bytes) return invalid("key longer than the key size limit");
  return {};
}

Validation check_range(const std::string& start, const std::string& end, bool prefix,
                       const RequestLimits& limits) noexcept {
  if (start.size() > limits.max_key_bytes || end.size() > limits.max_key_bytes) {
    return invalid("range bound longer than the key size limit");
  }
  if (prefix) {
    if (!end.empty()) return invalid("a prefix range must have an empty end");
    return {};
  }
  if (!end.empty() && !(start < end)) return invalid("range start must be below its end");
  return {};
}

Validation check_get(const pb::GetRequest& r, const RequestLimits& limits) noexcept {
  return check_key(r.key(), limits);
}

Validation check_put(const pb::PutRequest& r, const RequestLimits& limits) noexcept {
  if (Validation v = check_key(r.key(), limits); !v.ok()) return v;
  if (r.value().size() > limits.max_value_bytes) {
    return invalid("value longer than the value size limit");
  }
  if (r.prev_kv() && r.txn_id() != 0) {
    return invalid("prev_kv is not supported inside an interactive transaction");
  }
  if (r.ttl_seconds() < 0) return invalid("ttl_seconds must not be negative");
  if (r.ttl_seconds() != 0 && r.lease() != 0) {
    return invalid("a put names a lease or asks for one (ttl_seconds), not both");
  }
  if (r.ttl_seconds() != 0 && r.txn_id() != 0) {
    return invalid("ttl_seconds is not supported inside an interactive transaction");
  }
  return {};
}

Validation check_del(const pb::DeleteRequest& r, const RequestLimits& limits) noexcept {
  if (Validation v = check_key(r.key(), limits); !v.ok()) return v;
  if (r.prev_kv() && r.txn_id() != 0) {
    return invalid("prev_kv is not supported inside an interactive transaction");
  }
  return {};
}

Validation check_txn_ops(const google::protobuf::RepeatedPtrField<pb::TxnOp>& ops,
                         const RequestLimits& limits) noexcept {
  if (static_cast<std::size_t>(ops.size()) > limits.max_txn_ops) {
    return invalid("too many operations in a conditional transaction branch");
  }
  for (const pb::TxnOp& op : ops) {
    Validation v;
    switch (op.op_case()) {
      case pb::TxnOp::kGet:
        if (op.get().txn_id() != 0) return invalid("txn_id is not allowed in a conditional op");
        v = check_get(op.get(), limits);
        break;
      case pb::TxnOp::kPut:
        if (op.put().txn_id() != 0) return invalid("txn_id is not allowed in a conditional op");
        v = check_put(op.put(), limits);
        break;
      case pb::TxnOp::kDel:
        if (op.del().txn_id() != 0) return invalid("txn_id is not allowed in a conditional op");
        v = check_del(op.del(), limits);
        break;
      case pb::TxnOp::kDeleteRange:
        v = check_range(op.delete_range().start(), op.delete_range().end(),
                        op.delete_range().prefix(), limits);
        break;
      case pb::TxnOp::kScan:
        if (op.scan().txn_id() != 0) return invalid("txn_id is not allowed in a conditional op");
        v = check_range(op.scan().start(), op.scan().end(), op.scan().prefix(), limits);
        break;
      case pb::TxnOp::OP_NOT_SET:
        return invalid("conditional transaction op has no operation set");
    }
    if (!v.ok()) return v;
  }
  return {};
}

Validation check_txn(const pb::TxnRequest& r, const RequestLimits& limits) noexcept {
  if (static_cast<std::size_t>(r.compare_size()) > limits.max_txn_ops) {
    return invalid("too many compares in a conditional transaction");
  }
  for (const pb::Compare& c : r.compare()) {
    if (Validation v = check_key(c.key(), limits); !v.ok()) return v;
    if (c.target_case() == pb::Compare::TARGET_NOT_SET) {
      return invalid("compare has no target (version, create_revision, mod_revision, value)");
    }
    if (!pb::Compare::Op_IsValid(c.op())) return invalid("compare has an unknown op");
  }
  if (Validation v = check_txn_ops(r.success(), limits); !v.ok()) return v;
  return check_txn_ops(r.failure(), limits);
}

}  // namespace

Validation validate_request(const pb::Request& request, const RequestLimits& limits) noexcept {
  switch (request.op_case()) {
    case pb::Request::kPing:
    case pb::Request::kStats:
    case pb::Request::kCheckpoint:
      return {};
    case pb::Request::kSnapshot:
      if (request.snapshot().stream_id() == 0 && request.snapshot().offset() != 0) {
        return invalid("a snapshot stream starts at offset 0");
      }
      return {};
    case pb::Request::kGet:
      return check_get(request.get(), limits);
    case pb::Request::kPut:
      return check_put(request.put(), limits);
    case pb::Request::kDel:
      return check_del(request.del(), limits);
    case pb::Request::kDeleteRange: {
      const auto& r = request.delete_range();
      return check_range(r.start(), r.end(), r.prefix(), limits);
    }
    case pb::Request::kScan: {
      const auto& r = request.scan();
      return check_range(r.start(), r.end(), r.prefix(), limits);
    }
    case pb::Request::kTxn:
      return check_txn(request.txn(), limits);
    case pb::Request::kBegin:
      if (!pb::Isolation_IsValid(request.begin().isolation())) {
        return invalid("unknown isolation level");
      }
      return {};
    case pb::Request::kCommit:
      if (request.commit().txn_id() == 0) return invalid("txn_id must be non-zero");
      return {};
    case pb::Request::kAbort:
      if (request.abort().txn_id() == 0) return invalid("txn_id must be non-zero");
      return {};
    case pb::Request::kFault:
      if (request.fault().stall_ms() > limits.max_stall_ms) {
        return invalid("stall_ms above the limit");
      }
      return {};
    case pb::Request::kAuthenticate:
      if (request.authenticate().user().empty()) return invalid("user must not be empty");
      if (request.authenticate().user().size() > 128 ||
          request.authenticate().password().size() > 1024) {
        return invalid("user or password too long (128 and 1024 bytes at most)");
      }
      return {};
    case pb::Request::kLeaseGrant:
      if (request.lease_grant().ttl_seconds() < 1) return invalid("ttl_seconds must be >= 1");
      return {};
    case pb::Request::kLeaseRevoke:
      if (request.lease_revoke().id() == 0) return invalid("lease id must be non-zero");
      return {};
    case pb::Request::kLeaseKeepalive:
      if (request.lease_keepalive().id() == 0) return invalid("lease id must be non-zero");
      return {};
    case pb::Request::kLeaseTimeToLive:
      if (request.lease_time_to_live().id() == 0) return invalid("lease id must be non-zero");
      return {};
    case pb::Request::kWatch: {
      // The range's shape is checked by the server's watch code (docs/PROTOCOL.md 3.15).
      const auto& w = request.watch();
      if (w.key().size() > limits.max_key_bytes || w.range_end().size() > limits.max_key_bytes) {
        return invalid("watch key or range_end longer than the key limit");
      }
      return {};
    }
    case pb::Request::kCancelWatch:
      return {};
    case pb::Request::OP_NOT_SET:
      return invalid("request has no operation set (or one this server does not know)");
    default:
      break;
  }
  return invalid("request has an unknown operation");
}

std::string_view code_name(pb::Status::Code code) noexcept {
  switch (code) {
    case pb::Status::OK:
      return "OK";
    case pb::Status::NOT_FOUND:
      return "NOT_FOUND";
    case pb::Status::CONFLICT:
      return "CONFLICT";
    case pb::Status::TXN_EXPIRED:
      return "TXN_EXPIRED";
    case pb::Status::TXN_NOT_FOUND:
      return "TXN_NOT_FOUND";
    case pb::Status::INVALID_ARGUMENT:
      return "INVALID_ARGUMENT";
    case pb::Status::RESOURCE_EXHAUSTED:
      return "RESOURCE_EXHAUSTED";
    case pb::Status::UNAVAILABLE:
      return "UNAVAILABLE";
    case pb::Status::INTERNAL:
      return "INTERNAL";
    case pb::Status::UNAUTHENTICATED:
      return "UNAUTHENTICATED";
    case pb::Status::PERMISSION_DENIED:
      return "PERMISSION_DENIED";
    case pb::Status::STORAGE_FAILED:
      return "STORAGE_FAILED";
    case pb::Status::COMPACTED:
      return "COMPACTED";
    case pb::Status::LEASE_NOT_FOUND:
      return "LEASE_NOT_FOUND";
    default:
      return "UNKNOWN";
  }
}

}  // namespace kv::proto
