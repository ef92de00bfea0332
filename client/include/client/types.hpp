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

namespace kv::client {

// A key with its etcd-style metadata (docs/PROTOCOL.md, 2.2).
struct KeyValue {
  std::string key;
  std::string value;  // empty for keys_only scans
  std::uint64_t create_revision = 0;
  std::uint64_t mod_revision = 0;
  std::uint64_t version = 0;
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

struct PutResult {
  std::uint64_t revision = 0;    // the commit revision of the put
  std::optional<KeyValue> prev;  // when prev_kv was requested and the key existed
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
  Range range;       // delete_range, scan
  ScanOptions scan;  // scan

  [[nodiscard]] static TxnOp get(std::string key) {
    TxnOp op;
    op.kind = Kind::kGet;
    op.key = std::move(key);
    return op;
  }
  [[nodiscard]] static TxnOp put(std::string key, std::string value) {
    TxnOp op;
    op.kind = Kind::kPut;
    op.key = std::move(key);
    op.value = std::move(value);
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

}  // namespace kv::client
