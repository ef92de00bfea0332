// Translation between the client's value types and the messages of proto/kv.proto. Pure:
// no I/O, unit-tested on its own.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

#include "client/status.hpp"
#include "client/types.hpp"
#include "proto/kv.pb.h"

namespace kv::client::detail {

namespace pb = ::kovan::kv::v1;

// --- Requests (the id is assigned by the connection) --------------------------------------
void encode_ping(pb::Request& r, std::string_view payload);
void encode_get(pb::Request& r, std::string_view key, std::uint64_t txn_id);
void encode_put(pb::Request& r, std::string_view key, std::string_view value, bool prev_kv,
                std::uint64_t txn_id);
// With PutOptions: prev_kv, lease and ttl_seconds (outside transactions).
void encode_put(pb::Request& r, std::string_view key, std::string_view value,
                const PutOptions& options);
void encode_del(pb::Request& r, std::string_view key, bool prev_kv, std::uint64_t txn_id);
void encode_delete_range(pb::Request& r, const Range& range, bool prev_kv);
void encode_scan(pb::Request& r, const Range& range, const ScanOptions& options,
                 std::uint64_t txn_id);
void encode_txn(pb::Request& r, const TxnRequest& request);
void encode_begin(pb::Request& r, Isolation isolation);
void encode_commit(pb::Request& r, std::uint64_t txn_id);
void encode_abort(pb::Request& r, std::uint64_t txn_id);
void encode_stats(pb::Request& r);
void encode_fault(pb::Request& r, std::uint32_t stall_ms);
void encode_checkpoint(pb::Request& r);
void encode_snapshot(pb::Request& r, std::uint64_t stream_id, std::uint64_t offset);
void encode_watch(pb::Request& r, const WatchKeys& keys, const WatchOptions& options);
void encode_cancel_watch(pb::Request& r, std::uint64_t watch_id);
void encode_lease_grant(pb::Request& r, std::int64_t ttl_seconds, std::uint64_t id);
void encode_lease_revoke(pb::Request& r, std::uint64_t id);
void encode_lease_keepalive(pb::Request& r, std::uint64_t id);
void encode_lease_time_to_live(pb::Request& r, std::uint64_t id, bool keys);

// --- Responses ------------------------------------------------------------------------------
// The response's status as a client Status (unknown codes become INTERNAL).
[[nodiscard]] Status status_of(const pb::Response& r);
[[nodiscard]] KeyValue kv_of(const pb::KeyValue& kv);

// Each returns the response's status when it is not OK, or INTERNAL when the result
// member does not match the operation.
[[nodiscard]] Result<std::string> decode_ping(const pb::Response& r);
[[nodiscard]] Result<KeyValue> decode_get(const pb::Response& r);
[[nodiscard]] Result<PutResult> decode_put(const pb::Response& r);
[[nodiscard]] Result<DeleteResult> decode_del(const pb::Response& r);
[[nodiscard]] Result<DeleteRangeResult> decode_delete_range(const pb::Response& r);
[[nodiscard]] Result<ScanResult> decode_scan(const pb::Response& r);
[[nodiscard]] Result<TxnResult> decode_txn(const pb::Response& r);
// txn_id and the snapshot revision.
[[nodiscard]] Result<std::pair<std::uint64_t, std::uint64_t>> decode_begin(const pb::Response& r);
[[nodiscard]] Result<std::uint64_t> decode_commit(const pb::Response& r);
[[nodiscard]] Status decode_empty(const pb::Response& r, pb::Response::ResultCase expected);
[[nodiscard]] Result<Stats> decode_stats(const pb::Response& r);
[[nodiscard]] Result<std::uint64_t> decode_checkpoint(const pb::Response& r);
// One chunk of a SNAPSHOT stream (docs/PROTOCOL.md 3.13).
struct SnapshotChunk {
  std::uint64_t stream_id = 0;
  std::uint64_t offset = 0;
  std::string data;
  bool done = false;
  std::uint64_t total_bytes = 0;
  std::uint32_t crc32c = 0;
  std::uint64_t revision = 0;
};
[[nodiscard]] Result<SnapshotChunk> decode_snapshot(const pb::Response& r);
// WATCH: the watch id (non-zero) and its start revision.
struct WatchCreated {
  std::uint64_t watch_id = 0;
  std::uint64_t start_revision = 0;
};
[[nodiscard]] Result<WatchCreated> decode_watch(const pb::Response& r);
[[nodiscard]] Result<LeaseGrant> decode_lease_grant(const pb::Response& r);
[[nodiscard]] Result<LeaseRevokeResult> decode_lease_revoke(const pb::Response& r);
[[nodiscard]] Result<LeaseGrant> decode_lease_keepalive(const pb::Response& r);
[[nodiscard]] Result<LeaseInfo> decode_lease_time_to_live(const pb::Response& r);
// Appends the events of one WatchEvents push to `batch` (fragments of one revision
// accumulate); sets the cancel fields when the push is the watch's last. Unknown cancel
// codes become INTERNAL.
void append_watch_events(const pb::WatchEvents& push, WatchBatch& batch);

}  // namespace kv::client::detail
