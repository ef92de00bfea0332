// Value types of the Kovan KV client: key-values, ranges, scan options, the conditional
// transaction (compare / success / failure) and the results of each operation. They mirror
// the messages of proto/kv.proto without exposing protobuf to callers.
//
// Keys and values are arbitrary bytes held in std::string. Thread safety: plain values.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "client/status.hpp"

namespace kv::client {

// A key with its etcd-style metadata (docs/PROTOCOL.md, 2.2).
struct KeyValue {
  std::string key;
  std::string value;  // empty for keys_only scans
  std::uint64_t create_revision = 0;
  std::uint64_t mod_revision = 0;
  std::uint64_t version = 0;
  std::uint64_t lease = 0;  // the lease the key is attached to (0: none)
  friend bool operator==(const KeyValue&, const KeyValue&) = default;
};

enum class Isolation : std::uint8_t { kSerializable = 0, kSnapshot = 1 };

// A key range, as in docs/PROTOCOL.md 3.5.
struct Range {
  std::string start;
  std::string end;  // empty: no upper bound (must be empty with prefix)
  bool prefix = false;

  // Keys k with start <= k < end (an empty end: no upper bound).
  [[nodiscard]] static Range between(std::string start, std::string end = {}) {
    return Range{std::move(start), std::move(end), false};
  }
  // Keys starting with `p` (every key when `p` is empty).
  [[nodiscard]] static Range with_prefix(std::string p) { return Range{std::move(p), {}, true}; }
  [[nodiscard]] static Range all() { return Range{{}, {}, true}; }
};

struct ScanOptions {
  std::uint64_t limit = 0;  // 0: no limit
  bool keys_only = false;
  bool count_only = false;
  bool reverse = false;
};

struct ScanResult {
  std::uint64_t revision = 0;  // the revision the scan read at
  std::vector<KeyValue> kvs;
  std::uint64_t count = 0;  // live keys in the whole range (not capped by limit)
  bool more = false;        // the limit (or the frame size) cut the result
};

// Options of Client::put beyond the key and the value.
struct PutOptions {
  bool prev_kv = false;  // return the value the put replaced
  // Attach the key to this lease (LEASE_NOT_FOUND when it is not alive). 0: no lease (a put
  // without a lease detaches the key from the lease it had).
  std::uint64_t lease = 0;
  // Non-zero: the server grants a new lease of this many seconds and attaches the key to it
  // (PutResult::lease names it); `lease` must then be 0.
  std::int64_t ttl_seconds = 0;
};

struct PutResult {
  std::uint64_t revision = 0;    // the commit revision of the put
  std::optional<KeyValue> prev;  // when prev_kv was requested and the key existed
  std::uint64_t lease = 0;       // with PutOptions::ttl_seconds: the lease granted
};

struct DeleteResult {
  std::uint64_t revision = 0;
  std::uint64_t deleted = 0;     // 1 if a live key was deleted
  std::optional<KeyValue> prev;  // when prev_kv was requested and a key was deleted
};

struct DeleteRangeResult {
  std::uint64_t revision = 0;
  std::uint64_t deleted = 0;
  std::vector<KeyValue> prev_kvs;  // when prev_kv was requested, in key order
};

// A conditional-transaction guard: compares one attribute of `key` with an operand.
struct Compare {
  enum class Op : std::uint8_t { kEqual = 0, kNotEqual = 1, kLess = 2, kGreater = 3 };
  enum class Target : std::uint8_t { kVersion, kCreateRevision, kModRevision, kValue };

  std::string key;
  Op op = Op::kEqual;
  Target target = Target::kVersion;
  std::uint64_t number = 0;  // operand for version / create_revision / mod_revision
  std::string value;         // operand for kValue

  [[nodiscard]] static Compare version(std::string key, Op op, std::uint64_t n) {
    return Compare{std::move(key), op, Target::kVersion, n, {}};
  }
  [[nodiscard]] static Compare create_revision(std::string key, Op op, std::uint64_t n) {
    return Compare{std::move(key), op, Target::kCreateRevision, n, {}};
  }
  [[nodiscard]] static Compare mod_revision(std::string key, Op op, std::uint64_t n) {
    return Compare{std::move(key), op, Target::kModRevision, n, {}};
  }
  [[nodiscard]] static Compare value_of(std::string key, Op op, std::string v) {
    return Compare{std::move(key), op, Target::kValue, 0, std::move(v)};
  }
  // "the key does not exist" (version == 0).
  [[nodiscard]] static Compare missing(std::string key) {
    return version(std::move(key), Op::kEqual, 0);
  }
};

// One operation of a conditional transaction's success or failure branch.
struct TxnOp {
  enum class Kind : std::uint8_t { kGet, kPut, kDelete, kDeleteRange, kScan };

  Kind kind = Kind::kGet;
  std::string key;    // get, put, del
  std::string value;  // put
  bool prev_kv = false;
  std::uint64_t lease = 0;  // put: attach the key to this lease (0: none)
  Range range;              // delete_range, scan
  ScanOptions scan;         // scan

  [[nodiscard]] static TxnOp get(std::string key) {
    TxnOp op;
    op.kind = Kind::kGet;
    op.key = std::move(key);
    return op;
  }
  [[nodiscard]] static TxnOp put(std::string key, std::string value, std::uint64_t lease = 0) {
    TxnOp op;
    op.kind = Kind::kPut;
    op.key = std::move(key);
    op.value = std::move(value);
    op.lease = lease;
    return op;
  }
  [[nodiscard]] static TxnOp del(std::string key) {
    TxnOp op;
    op.kind = Kind::kDelete;
    op.key = std::move(key);
    return op;
  }
  [[nodiscard]] static TxnOp delete_range(Range r) {
    TxnOp op;
    op.kind = Kind::kDeleteRange;
    op.range = std::move(r);
    return op;
  }
  [[nodiscard]] static TxnOp scan_range(Range r, ScanOptions options = {}) {
    TxnOp op;
    op.kind = Kind::kScan;
    op.range = std::move(r);
    op.scan = options;
    return op;
  }
};

struct TxnRequest {
  std::vector<Compare> compare;
  std::vector<TxnOp> success;
  std::vector<TxnOp> failure;
};

// The outcome of one op of the branch that ran. Which fields are meaningful depends on
// `kind`: get -> found/kv; put -> kvs (the previous value, when prev_kv); del and
// delete_range -> deleted and kvs (previous values, when prev_kv); scan -> kvs, count, more.
struct TxnOpResult {
  TxnOp::Kind kind = TxnOp::Kind::kGet;
  bool found = false;  // get: the key existed (the op's code was OK, not NOT_FOUND)
  KeyValue kv;         // get
  std::vector<KeyValue> kvs;
  std::uint64_t deleted = 0;
  std::uint64_t count = 0;
  bool more = false;
};

struct TxnResult {
  std::uint64_t revision = 0;
  bool succeeded = false;  // every compare held: the success branch ran
  std::vector<TxnOpResult> results;
};

// Engine and server counters (docs/PROTOCOL.md 3.10), in the order of StatsResponse, named
// as its fields ("revision", "keys", "commits", ...). Counters a newer server adds appear
// here without a client change.
struct Stats {
  std::uint64_t header_revision = 0;
  // Numbers, and flags as 0/1 (e.g. "durable", "storage_failed").
  std::vector<std::pair<std::string, std::uint64_t>> counters;
  // Text fields that are set (e.g. "storage_error").
  std::vector<std::pair<std::string, std::string>> texts;

  // The counter named `name`, or nullopt when the server did not report it.
  [[nodiscard]] std::optional<std::uint64_t> get(std::string_view name) const {
    for (const auto& [n, v] : counters) {
      if (n == name) return v;
    }
    return std::nullopt;
  }
};

// The outcome of Client::save_snapshot: a complete image whose size and CRC-32C matched
// what the server announced.
struct SnapshotInfo {
  std::uint64_t revision = 0;  // the revision the image holds
  std::uint64_t bytes = 0;
  std::uint32_t crc32c = 0;
};

// --- Watch (docs/CLIENT.md "Watch", docs/PROTOCOL.md 3.15) -----------------------------

// What a watch follows: one key, the keys with a prefix, or a key range.
struct WatchKeys {
  std::string key;
  // Wire encoding (WatchRequest.range_end): empty: the single key `key`; one zero byte:
  // every key >= key; otherwise keys in [key, range_end). Use the factories.
  std::string range_end;
  bool prefix = false;

  [[nodiscard]] static WatchKeys single(std::string key) {
    return WatchKeys{std::move(key), {}, false};
  }
  // Keys starting with `p` (every key when `p` is empty).
  [[nodiscard]] static WatchKeys with_prefix(std::string p) {
    return WatchKeys{std::move(p), {}, true};
  }
  // Keys k with start <= k < end; an empty `end`: no upper bound.
  [[nodiscard]] static WatchKeys between(std::string start, std::string end = {}) {
    if (end.empty()) end.assign(1, '\0');
    return WatchKeys{std::move(start), std::move(end), false};
  }
};

struct WatchOptions {
  // The first revision to report; 0: changes committed after the watch is created.
  std::uint64_t start_revision = 0;
  bool prev_kv = false;    // each event carries the key-value the change replaced
  bool no_put = false;     // leave out puts
  bool no_delete = false;  // leave out deletes
};

struct WatchEvent {
  enum class Type : std::uint8_t { kPut = 0, kDelete = 1 };
  Type type = Type::kPut;
  // kPut: the new key-value. kDelete: the key, with mod_revision = the delete's revision.
  KeyValue kv;
  std::optional<KeyValue> prev;  // with WatchOptions::prev_kv, when the key existed before
};

// Every event of one revision in the watched range (one transaction), in key order; or,
// with `canceled`, the watch's last delivery.
struct WatchBatch {
  std::uint64_t watch_id = 0;
  std::uint64_t revision = 0;
  std::vector<WatchEvent> events;  // may be empty on the final batch

  // The watch ended (this is its last batch), and why, in `status`:
  //   COMPACTED: the watcher fell behind everything the server keeps (or started before
  //     it); compact_revision is the oldest revision available: re-read, then watch again
  //     from the read's revision + 1.
  //   RESOURCE_EXHAUSTED: the server ended it for another limit, or this client's buffer
  //     for a WatchStream overflowed (the reader fell behind);
  //   UNAVAILABLE: the connection was lost or the server shut down.
  // Otherwise: watch again from resume_revision (the first revision not delivered).
  bool canceled = false;
  Status status;
  std::uint64_t compact_revision = 0;
  std::uint64_t resume_revision = 0;
};

// --- Leases (docs/CLIENT.md "Leases", docs/PROTOCOL.md 3.16) ---------------------------

struct LeaseGrant {
  std::uint64_t id = 0;
  std::int64_t ttl_seconds = 0;  // granted (grant) or renewed for (keep-alive)
};

struct LeaseRevokeResult {
  std::uint64_t revision = 0;  // the revision of the deletion of its keys
  std::uint64_t deleted = 0;   // keys deleted with it
};

struct LeaseInfo {
  std::uint64_t id = 0;
  std::int64_t ttl_seconds = 0;          // remaining, rounded up
  std::int64_t granted_ttl_seconds = 0;  // as granted
  std::vector<std::string> keys;         // with keys requested, in key order
};

}  // namespace kv::client
