// storage/engine.hpp — the Kovan KV storage engine: an in-memory, multi-version (MVCC),
// transactional key-value store. This header is the contract the server builds on.
//
// WHAT IT IS
// ----------
// Keys and values are byte strings. Every committed write gets a revision from one global
// commit clock (etcd-style: the empty store is at revision 1, the first write commits at 2;
// revisions strictly increase but may skip values — a commit that fails validation consumes
// one). Each key reports `create_revision`, `mod_revision` and `version` (writes since the
// key was last created; a delete resets it).
//
// The engine offers
//   * one-shot operations (get, put, del, delete_range, scan) and an etcd-like conditional
//     transaction (`txn`: compares, then a list of operations, else another), each atomic and
//     each executed at a single revision;
//   * interactive transactions (`begin` -> Transaction handle -> get/put/del/scan ->
//     commit/abort) at two isolation levels:
//       - kSerializable (default): strict serializable. Reads come from the snapshot taken at
//         begin; commit validates every point read and every range read (phantoms) against
//         later commits. Read-only transactions never abort.
//       - kSnapshot: snapshot isolation, first committer wins on written keys; write skew is
//         allowed.
//     Conflicts are detected at commit: a transaction that meets another committer's lock
//     gets CONFLICT (after waiting at most 10 ms for it to be released) and should be retried
//     from `begin`; a retried transaction that keeps losing to one-shot writers of its keys
//     gets a window in which they wait (Options::contention_hold_off).
//
// THREAD SAFETY
// -------------
// Engine is safe for concurrent use by any number of threads without external
// synchronization. A Transaction handle is safe to use from any thread; concurrent calls on
// the same handle are serialized internally (a connection normally issues them one by one).
//
// LIFETIMES
// ---------
// The Engine must outlive every Transaction handle it returned. Destroying (or
// move-assigning over) an active Transaction aborts it. Results own their data (values are
// copied out); nothing returned points into the engine.
//
// TRANSACTION LIFECYCLE AND ERRORS
// --------------------------------
//   begin -> active --commit--> committed (commit returns the commit revision)
//                   --abort---> aborted
//                   --commit fails validation--> aborted (CONFLICT)
//                   --older than Options::txn_timeout--> expired (TXN_EXPIRED)
// A transaction's age is measured from begin. An expired transaction is aborted by the
// engine (lazily on its next call, or by the background sweeper / run_maintenance()), leaves
// the active-snapshot set at once, and every later call on it returns TXN_EXPIRED. Calls on
// a committed, aborted or empty (default-constructed, moved-from) handle return
// TXN_NOT_FOUND. Writes are buffered in the transaction until commit (read-your-own-writes).
// After Engine::shutdown(), every call returns UNAVAILABLE.
//
// MEMORY
// ------
// Old versions are pruned by interval GC (docs/STORAGE.md): a key keeps its newest committed
// version plus at most one version per active snapshot, however many updates it receives.
// Pruned versions and the engine's version chains are reclaimed through the kovan reclaimer;
// engine calls pin a kovan guard for their own duration only, never across calls.
#pragma once

#include <atomic>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <type_traits>
#include <utility>
#include <vector>

#include "storage/durability.hpp"
#include "storage/watch.hpp"

namespace kv::storage {

// ---------------------------------------------------------------------------------------
// Status and Result
// ---------------------------------------------------------------------------------------
enum class StatusCode : std::uint8_t {
  kOk = 0,
  kNotFound,           // the key does not exist at the read revision
  kConflict,           // another transaction won; retry with a new transaction
  kTxnExpired,         // the transaction outlived txn_timeout; retry with a new transaction
  kTxnNotFound,        // the handle is empty, committed or aborted
  kInvalidArgument,    // empty or oversized key, oversized value, bad range
  kResourceExhausted,  // too many active transactions / snapshots
  kUnavailable,        // the engine is shutting down
  kInternal,           // a bug: an invariant did not hold
  kStorageFailed,      // a WAL write or fsync failed: writes are refused until restart
                       // (reads go on); the message says which file and why
  kLeaseNotFound,      // the lease was never granted, was revoked, or expired
};

// Stable upper-case name ("OK", "NOT_FOUND", "CONFLICT", ...), for logs and the wire.
std::string_view to_string(StatusCode code) noexcept;

class [[nodiscard]] Status {
 public:
  Status() noexcept = default;  // OK
  Status(StatusCode code, std::string message) : code_(code), message_(std::move(message)) {}

  static Status Ok() noexcept { return Status(); }
  bool ok() const noexcept { return code_ == StatusCode::kOk; }
  StatusCode code() const noexcept { return code_; }
  const std::string& message() const noexcept { return message_; }
  // "CONFLICT: read key 'a' changed after the snapshot"
  std::string to_string() const;

 private:
  StatusCode code_ = StatusCode::kOk;
  std::string message_;
};

// A value or a non-OK Status. Accessing value() of a non-OK result is a programming error
// (asserted in debug builds).
template <class T>
class [[nodiscard]] Result {
 public:
  Result(T value) : value_(std::move(value)) {}          // NOLINT: implicit by design
  Result(Status status) : status_(std::move(status)) {}  // NOLINT: must not be OK
  Result(StatusCode code, std::string message) : status_(code, std::move(message)) {}

  bool ok() const noexcept { return value_.has_value(); }
  const Status& status() const noexcept { return status_; }
  StatusCode code() const noexcept { return status_.code(); }

  T& value() & { return *value_; }
  const T& value() const& { return *value_; }
  T&& value() && { return std::move(*value_); }
  T* operator->() { return &*value_; }
  const T* operator->() const { return &*value_; }
  T& operator*() & { return *value_; }
  const T& operator*() const& { return *value_; }

 private:
  Status status_;
  std::optional<T> value_;
};

// ---------------------------------------------------------------------------------------
// Data types
// ---------------------------------------------------------------------------------------
using Revision = std::uint64_t;

struct KeyValue {
  std::string key;
  std::string value;             // empty when the read asked for keys only
  Revision create_revision = 0;  // revision of the write that (re)created the key
  Revision mod_revision = 0;     // revision of the latest write
  std::int64_t version = 0;      // writes since (re)creation: 1 after the first put
  std::uint64_t lease = 0;       // the lease the key is attached to (0: none)
};

// A key-value read in place (Engine::get_with): views of the engine's own bytes, valid only
// during the visitor call that receives it.
struct KeyValueView {
  std::string_view key;
  std::string_view value;
  Revision create_revision = 0;
  Revision mod_revision = 0;
  std::int64_t version = 0;
  std::uint64_t lease = 0;
};
// The visitor of Engine::get_with.
using GetVisitor = void (*)(void* ctx, const KeyValueView& kv);

enum class Isolation : std::uint8_t {
  kSerializable = 0,  // default; strict serializable
  kSnapshot = 1,      // snapshot isolation, first committer wins
};

enum class GcPolicy : std::uint8_t {
  kInterval = 0,   // keep only versions some active snapshot can see (default)
  kWatermark = 1,  // keep every version newer than the oldest active snapshot (for comparison)
};

// Time source. The engine measures transaction ages and lease lifetimes with it.
class Clock {
 public:
  virtual ~Clock() = default;
  virtual std::chrono::steady_clock::time_point now() const noexcept = 0;
};

// A clock that moves only when told to; for tests of txn_timeout without sleeping.
// Thread-safe.
class ManualClock final : public Clock {
 public:
  std::chrono::steady_clock::time_point now() const noexcept override;
  void advance(std::chrono::nanoseconds d) noexcept;

 private:
  std::atomic<std::int64_t> ns_{1'000'000'000};
};

// Fault injection for tests, in the manner of Clock: the engine calls before_allocation()
// before each allocation a commit makes after it took its first commit lock. A hook throws
// std::bad_alloc to simulate that the allocation failed; the commit then returns
// RESOURCE_EXHAUSTED with nothing applied, and every lock and timestamp it took is given
// back. Production code leaves Options::alloc_faults null (the cost is one pointer test).
class AllocationFaults {
 public:
  enum class Site : std::uint8_t {
    kIndexInsert,  // looking up (and, for a new key, inserting) a written key's index node
    kVersion,      // allocating the new version of a written key
  };
  virtual ~AllocationFaults() = default;
  virtual void before_allocation(Site site) = 0;
};

struct Options {
  std::size_t max_key_bytes = 4096;       // larger keys: INVALID_ARGUMENT
  std::size_t max_value_bytes = 1 << 20;  // larger values: INVALID_ARGUMENT
  std::chrono::milliseconds txn_timeout{5000};
  GcPolicy gc_policy = GcPolicy::kInterval;
  bool background_sweeper = true;  // a thread that expires txns and prunes chains
  std::chrono::milliseconds sweeper_period{1000};
  // Leases (see "Leases" below). More leases alive (or being granted) at once:
  // RESOURCE_EXHAUSTED. 0: no limit.
  std::size_t max_leases = 0;
  // How often the background sweeper revokes expired leases (a lease outlives its TTL by at
  // most about this much). Without the sweeper, call expire_leases().
  std::chrono::milliseconds lease_check_period{100};
  std::size_t max_active_txns = 4096;              // more concurrent begin()s: RESOURCE_EXHAUSTED
  std::shared_ptr<const Clock> clock;              // null: std::chrono::steady_clock
  std::shared_ptr<AllocationFaults> alloc_faults;  // null: none (tests only)

  // Memory limit (docs/OPERATIONS.md, "Memory limit"). The engine counts its index nodes,
  // versions, the write sets of unfinished transactions and external_memory_bytes (below);
  // EngineStats::memory_bytes shows the sum. A put (one-shot, in a conditional or an
  // interactive transaction) that would take the sum above max_memory_bytes gets
  // RESOURCE_EXHAUSTED and changes nothing; reads, deletes, aborts and commits are always
  // served (a commit's data was counted when it was buffered). 0: no limit.
  std::uint64_t max_memory_bytes = 0;
  // A put that would take one transaction's write set above this many bytes gets
  // RESOURCE_EXHAUSTED; the transaction stays active with its earlier writes. 0: no limit.
  std::uint64_t max_txn_bytes = std::uint64_t{64} << 20;
  // Bytes held outside the engine that count against max_memory_bytes (a server's
  // connection buffers). Called on every put while max_memory_bytes is set; must be
  // thread-safe and cheap. Null: nothing outside the engine is counted.
  std::function<std::uint64_t()> external_memory_bytes;

  // Durability (storage/durability.hpp, docs/PERSISTENCE.md). Default: in memory only.
  DurabilityOptions durability;

  // Watch change feed (storage/watch.hpp, docs/STORAGE.md section 11): bytes of recent
  // committed changes kept in memory for watchers. 0: no in-memory history (watchers are
  // served from the WAL when durable, else get `compacted`).
  std::size_t watch_history_bytes = std::size_t{64} << 20;
  // Fairness under write contention (docs/STORAGE.md, "Contention"): after 2 conflict
  // aborts in a row of commits writing a key, fresh one-shot writes of that key wait for a
  // window of this length, doubled with every further abort (at most 512 times it), so a
  // retried transaction gets to commit. 0: no windows.
  std::chrono::microseconds contention_hold_off{100};
};

// Response budgets. A read that returns key-values can be given a budget in bytes (the room
// a server has in one response frame). Each key-value returned is charged its key and value
// bytes plus kKeyValueOverhead; each op of a conditional transaction is charged
// kOpResultOverhead besides. Both allowances are upper bounds of the protobuf encoding of a
// KeyValue and of a TxnOpResult around it (docs/PROTOCOL.md), so a response whose charges
// fit its budget fits its frame. The engine stops copying once the budget is spent.
inline constexpr std::size_t kKeyValueOverhead = 64;
inline constexpr std::size_t kOpResultOverhead = 32;

// What one key-value costs against a response budget.
constexpr std::size_t response_cost(std::size_t key_bytes, std::size_t value_bytes) noexcept {
  return key_bytes + value_bytes + kKeyValueOverhead;
}

// Range arguments: [start, end). An empty `end` means "no upper bound"; an empty `start`
// means "from the first key". A single key k is the range [k, k + '\0').
struct ScanOptions {
  std::size_t limit = 0;    // at most this many keys (0: no limit)
  bool reverse = false;     // descending key order (the limit keeps the largest keys)
  bool keys_only = false;   // KeyValue::value left empty
  bool count_only = false;  // no kvs at all, only `count`
  // Response budget in bytes (see response_cost); 0: none. The scan returns the longest
  // prefix of its result whose costs fit, sets `more` when that cut it, and copies no value
  // past it; `count` still covers the whole range.
  std::size_t max_bytes = 0;
};

struct ScanResult {
  std::vector<KeyValue> kvs;  // in key order (descending if reverse)
  std::size_t count = 0;      // keys in the range (all of them, not capped by limit)
  bool more = false;          // the limit or the byte budget cut the result
  Revision revision = 0;      // the revision the scan read at
  std::size_t bytes = 0;      // the response cost of `kvs` (sum of response_cost)
};

struct PutResult {
  Revision revision = 0;            // the commit revision of this put
  std::optional<KeyValue> prev_kv;  // when asked for and the key existed
};

struct DeleteResult {
  Revision revision = 0;  // commit revision (the read revision if nothing was deleted)
  std::int64_t deleted = 0;
  std::vector<KeyValue> prev_kvs;  // when asked for
};

// etcd-like conditional transaction. A compare on a key that does not exist sees
// version = create_revision = mod_revision = 0, and a value compare on it is false for every
// operator (as etcd does).
struct Compare {
  enum class Target : std::uint8_t { kValue, kVersion, kCreateRevision, kModRevision };
  enum class Op : std::uint8_t { kEqual, kNotEqual, kLess, kGreater };
  std::string key;
  Target target = Target::kValue;
  Op op = Op::kEqual;
  std::string value;        // for kValue (byte-wise comparison)
  std::int64_t number = 0;  // for the others
};

struct TxnOp {
  enum class Type : std::uint8_t { kGet, kPut, kDelete };
  Type type = Type::kGet;
  std::string key;
  std::string range_end;    // kGet/kDelete: empty = the single key `key`; else [key, range_end)
                            // ("\0" as range_end means "no upper bound", as in etcd)
  std::string value;        // kPut
  ScanOptions scan;         // kGet over a range
  bool prev_kv = false;     // kPut/kDelete: return the previous key-values
  std::uint64_t lease = 0;  // kPut: attach the key to this lease (0: to none; see Leases)
};

struct TxnOpResult {
  TxnOp::Type type = TxnOp::Type::kGet;
  std::vector<KeyValue> kvs;  // kGet: the values read; kPut/kDelete: prev kvs if asked
  std::size_t count = 0;      // kGet: keys in range
  bool more = false;          // kGet
  std::int64_t deleted = 0;   // kDelete
};

struct CondTxn {
  std::vector<Compare> compare;  // all must hold (empty: true)
  std::vector<TxnOp> success;
  std::vector<TxnOp> failure;
  // Response budget in bytes shared by the ops of the branch that runs, spent in op order
  // (0: none). Each op is charged kOpResultOverhead, each key-value it returns its
  // response_cost. A range get is cut to what remains (`more` set, as ScanOptions::max_bytes;
  // its own max_bytes, if smaller, still applies). A point get or prev_kv that does not fit
  // what remains fails the whole transaction with RESOURCE_EXHAUSTED before anything is
  // committed: a transaction never commits with a result it could not return.
  std::size_t max_response_bytes = 0;
};

struct CondTxnResult {
  bool succeeded = false;            // the compares held and `success` ran
  Revision revision = 0;             // commit revision (the read revision if nothing was written)
  std::vector<TxnOpResult> results;  // one per op of the branch that ran
};

struct EngineStats {
  std::uint64_t keys = 0;              // keys whose newest version is not a delete
  std::uint64_t index_nodes = 0;       // nodes in the ordered index: live keys, plus deleted keys
                                       // whose tombstone a snapshot still needs, plus nodes left
                                       // by commits that installed nothing (until the next sweep)
  std::uint64_t live_versions = 0;     // versions reachable from the index
  std::uint64_t bytes = 0;             // approx. bytes held by index nodes and live versions
  std::uint64_t active_txns = 0;       // interactive transactions begun and not finished
  std::uint64_t active_snapshots = 0;  // snapshots registered (txns + one-shot ops)
  std::uint64_t snapshot_slots_scanned = 0;         // registry slots a pruner scans to collect the
                                                    // active snapshots (a diagnostic: its cost)
  std::chrono::nanoseconds oldest_snapshot_age{0};  // age of the oldest active txn (0: none)
  Revision revision = 0;                            // current (visible) revision
  std::uint64_t versions_pruned = 0;
  std::uint64_t commits = 0;          // transactions (incl. one-shot writes) that committed
  std::uint64_t aborts_conflict = 0;  // transactions that ended in CONFLICT for their caller
                                      // (a one-shot write's retried attempts are not counted)
  std::uint64_t aborts_expired = 0;
  std::uint64_t aborts_user = 0;           // abort() calls and destroyed active handles
  std::uint64_t aborts_out_of_memory = 0;  // commits that could not allocate (nothing applied)
  std::uint64_t gc_sweeps = 0;             // completed background/maintenance sweeps
  std::uint64_t index_nodes_removed = 0;   // index nodes of dead keys unlinked and retired
  std::uint64_t kovan_retired = 0;         // process-wide kovan counters
  std::uint64_t kovan_reclaimed = 0;
  std::uint64_t txn_write_bytes = 0;  // write sets of transactions not yet finished
  std::uint64_t memory_bytes = 0;     // what counts against Options::max_memory_bytes
  std::uint64_t leases = 0;           // leases alive (granted, not yet revoked or expired)
  std::uint64_t leases_expired = 0;   // leases ended by expiry since the engine started
  std::uint64_t leases_revoked = 0;   // leases ended by lease_revoke since the engine started
  // Contention (docs/STORAGE.md, section 3): commits that waited for a busy commit lock,
  // and one-shot writes that waited for a hold-off window.
  std::uint64_t commit_lock_waits = 0;
  std::uint64_t one_shot_hold_offs = 0;
  // One-shot writes' attempts that lost a validation and ran again inside the call (the
  // caller saw no abort).
  std::uint64_t one_shot_retries = 0;
};

// ---------------------------------------------------------------------------------------
// Leases (etcd-style). A lease lives for its TTL after its grant or its latest keep-alive,
// on Options::clock. A put that names a lease attaches the key to it (the lease is recorded
// in the key's new version: KeyValue::lease); a put without one detaches the key (it is
// attached to no lease afterwards); a delete ends the attachment. When a lease is revoked or
// expires, every key still attached to it is deleted in ONE commit through the normal
// commit path (one revision, ordinary deletes), then the lease is gone.
//
// No race between attaching and revoking: a commit that attaches a key (one-shot put,
// conditional txn op, or interactive transaction) checks at commit time, under the key's
// commit lock, that the lease is alive, and the revoke waits for such commits to be visible
// before it reads the attached keys. So a put either lands before the revoke's deletion (and
// is deleted by it) or fails with LEASE_NOT_FOUND having written nothing. An interactive
// transaction's put checks the lease when it is buffered and again at commit (the commit
// then aborts the transaction with LEASE_NOT_FOUND).
//
// Lease ids are never 0. A grant and the end of a lease (revoke or expiry) each take a
// revision of their own (the record that a durable engine logs; revisions may skip values
// anyway); a server-chosen id is the revision of its grant when that id is free.
// Durability: grants and ends are WAL records, the attachment travels with the key's
// version, checkpoints hold the leases alive; after recovery every lease has its full TTL
// again, counted from the open (it never expires early). docs/PERSISTENCE.md.
// ---------------------------------------------------------------------------------------
inline constexpr std::int64_t kMaxLeaseTtlSeconds = 1'000'000'000;  // about 31 years

struct LeaseGrantResult {
  std::uint64_t id = 0;
  std::int64_t ttl_seconds = 0;  // the TTL granted
  Revision revision = 0;         // the grant's revision
};

struct LeaseRevokeResult {
  std::int64_t deleted = 0;  // keys deleted with the lease
  Revision revision = 0;     // the deletion's commit revision (the read revision if none)
};

struct LeaseInfo {
  std::uint64_t id = 0;
  std::int64_t ttl_seconds = 0;          // remaining, rounded up (>= 1 while alive)
  std::int64_t granted_ttl_seconds = 0;  // as granted
  std::vector<std::string> keys;         // attached keys, in key order (when asked for)
};

// Value bytes that engine reads (gets, scans, prev_kvs, compares) copied out on the calling
// thread since it started. A diagnostic for tests of the response budgets; never reset.
std::uint64_t value_bytes_copied_on_this_thread() noexcept;

namespace detail {
class EngineImpl;
struct TxnState;
}  // namespace detail

// ---------------------------------------------------------------------------------------
// Transaction: a handle to one interactive transaction. Move-only; see the lifecycle above.
// ---------------------------------------------------------------------------------------
class Transaction {
 public:
  Transaction() noexcept;
  Transaction(Transaction&&) noexcept;
  Transaction& operator=(Transaction&&) noexcept;  // aborts the transaction it replaces
  Transaction(const Transaction&) = delete;
  Transaction& operator=(const Transaction&) = delete;
  ~Transaction();  // aborts if still active

  // Engine-unique id (never 0 for a real transaction), for logs and connection maps.
  std::uint64_t id() const noexcept;
  Isolation isolation() const noexcept;
  Revision snapshot_revision() const noexcept;  // the revision reads see
  bool active() const noexcept;                 // not committed, aborted or expired

  // Reads see the snapshot plus this transaction's own writes. NOT_FOUND if absent.
  [[nodiscard]] Result<KeyValue> get(std::string_view key);
  [[nodiscard]] Result<ScanResult> scan(std::string_view start, std::string_view end,
                                        const ScanOptions& opts = {});
  // Buffered until commit; metadata of own writes shows mod_revision 0 until committed.
  // A non-zero lease attaches the key to it (LEASE_NOT_FOUND, nothing buffered, if it is not
  // alive now; checked again at commit, see Leases); 0 detaches the key.
  [[nodiscard]] Status put(std::string_view key, std::string_view value, std::uint64_t lease = 0);
  [[nodiscard]] Status del(std::string_view key);
  // Returns the commit revision (the snapshot revision for a transaction that wrote
  // nothing). On CONFLICT the transaction is aborted.
  [[nodiscard]] Result<Revision> commit();
  // OK, or TXN_NOT_FOUND / TXN_EXPIRED if it was no longer active.
  Status abort();

 private:
  friend class detail::EngineImpl;
  Transaction(detail::EngineImpl* engine, std::shared_ptr<detail::TxnState> state) noexcept;
  bool abort_if_active() noexcept;
  detail::EngineImpl* engine_ = nullptr;
  std::shared_ptr<detail::TxnState> state_;  // shared with the engine's expiry sweeper
};

// ---------------------------------------------------------------------------------------
// Engine
// ---------------------------------------------------------------------------------------
class Engine {
 public:
  // An engine; with options.durability.data_dir set, the same as open() but throwing
  // std::runtime_error (with open()'s message) when the directory cannot be opened.
  explicit Engine(Options options = {});
  // Opens an engine. With a data_dir: takes the directory's lock file (a second engine on
  // the same directory is refused), restores from durability.restore_from if given, and
  // recovers (the newest valid checkpoint, then the WAL after it). On failure returns null
  // and sets `error` (naming the file and offset of a damaged record).
  static std::unique_ptr<Engine> open(Options options, std::string& error);
  ~Engine();  // stops the sweeper; every Transaction must be gone by then
  Engine(const Engine&) = delete;
  Engine& operator=(const Engine&) = delete;

  // One-shot operations. Each runs atomically at one revision. Writers that meet a
  // concurrent committer wait for it: a put (without prev_kv), and a txn without compares
  // or reads, never return CONFLICT. A write that reads (del, prev_kv, compares) retries
  // internally when what it read changed, and returns CONFLICT only if that happens on
  // every one of many retries.
  [[nodiscard]] Result<KeyValue> get(std::string_view key);
  // The same read as get() (same visibility, docs/STORAGE.md "A get without copies"), without
  // copying: calls visit(ctx, kv) once with views of the version's key and value, which stay
  // valid until visit returns (the engine holds its reclamation guard around the call), and
  // returns OK; NOT_FOUND (visit not called) if the key is absent or deleted; any other
  // refusal as get(). visit must not keep the views, and should be short: while it runs,
  // memory retired by every thread is held back. An exception from visit propagates.
  [[nodiscard]] Status get_with(std::string_view key, GetVisitor visit, void* ctx);
  template <class F>
  [[nodiscard]] Status get_with(std::string_view key, F&& visit) {
    using Fn = std::remove_reference_t<F>;
    return get_with(
        key, [](void* c, const KeyValueView& kv) { (*static_cast<Fn*>(c))(kv); },
        const_cast<void*>(static_cast<const void*>(std::addressof(visit))));
  }
  [[nodiscard]] Result<ScanResult> scan(std::string_view start, std::string_view end,
                                        const ScanOptions& opts = {});
  //
  // max_response_bytes (0: none) is a response budget for the prev_kv(s) asked for, as in
  // CondTxn: when they do not fit, the call returns RESOURCE_EXHAUSTED and writes nothing.
  // A non-zero lease attaches the key to that lease (LEASE_NOT_FOUND, nothing written, if
  // it is not alive); 0 detaches the key from its lease, if any (see Leases).
  [[nodiscard]] Result<PutResult> put(std::string_view key, std::string_view value,
                                      bool prev_kv = false, std::size_t max_response_bytes = 0,
                                      std::uint64_t lease = 0);
  // deleted == 0 (and OK) when the key did not exist.
  [[nodiscard]] Result<DeleteResult> del(std::string_view key, bool prev_kv = false,
                                         std::size_t max_response_bytes = 0);
  [[nodiscard]] Result<DeleteResult> delete_range(std::string_view start, std::string_view end,
                                                  bool prev_kv = false,
                                                  std::size_t max_response_bytes = 0);
  [[nodiscard]] Result<CondTxnResult> txn(const CondTxn& request);

  // Leases (see "Leases" above).
  // ttl_seconds in [1, kMaxLeaseTtlSeconds] (else INVALID_ARGUMENT); id 0: the engine
  // chooses; else that id (INVALID_ARGUMENT if a lease with it is alive). RESOURCE_EXHAUSTED
  // over Options::max_leases.
  [[nodiscard]] Result<LeaseGrantResult> lease_grant(std::int64_t ttl_seconds,
                                                     std::uint64_t id = 0);
  // Deletes every attached key in one commit, then ends the lease. LEASE_NOT_FOUND if it is
  // not alive (also while an expiry or another revoke of it is under way).
  [[nodiscard]] Result<LeaseRevokeResult> lease_revoke(std::uint64_t id);
  // Renews the lease for its full TTL from now; returns that TTL. LEASE_NOT_FOUND if it is
  // not alive (an expired lease cannot be renewed, even before it is revoked).
  [[nodiscard]] Result<std::int64_t> lease_keepalive(std::uint64_t id);
  [[nodiscard]] Result<LeaseInfo> lease_time_to_live(std::uint64_t id, bool keys = false);
  // Revokes every lease whose TTL has passed, each as lease_revoke does; returns how many.
  // The background sweeper calls it every Options::lease_check_period.
  std::size_t expire_leases();

  // Interactive transactions.
  [[nodiscard]] Result<Transaction> begin(Isolation isolation = Isolation::kSerializable);

  // The newest revision whose commit is fully visible.
  Revision current_revision() const noexcept;
  EngineStats stats() const;

  // Committed versions currently chained under `key` (0 if the key was never written).
  // A diagnostic for tests and operators; O(chain).
  std::size_t version_count(std::string_view key) const;

  // What the background sweeper does once: expire transactions older than txn_timeout,
  // then prune every version chain. Safe to call concurrently with everything.
  void run_maintenance();

  // Stops the sweeper; later calls (and calls on live transactions) return UNAVAILABLE.
  void shutdown();

  // Durability. A checkpoint of the state at one revision (read from an MVCC snapshot while
  // writers go on) to DIR/checkpoint-<rev>.ckpt, then WAL segments wholly below it deleted.
  // Returns the checkpoint's revision; INVALID_ARGUMENT for an in-memory engine,
  // UNAVAILABLE when the file could not be written (the state is untouched).
  [[nodiscard]] Result<Revision> checkpoint();
  // Streams a consistent image at one revision, in the checkpoint format, to `sink` in
  // chunks (it works for in-memory engines too). A sink returning false aborts the stream
  // (UNAVAILABLE). Returns the image's revision.
  [[nodiscard]] Result<Revision> write_snapshot(
      const std::function<bool(std::string_view chunk)>& sink);
  DurabilityStats durability_stats() const;
  // What recovery did that an operator should know (a torn tail cut, a bad checkpoint
  // skipped, a log truncated by WalRecovery::kTruncate); empty for a clean open.
  std::vector<std::string> recovery_notes() const;

  const Options& options() const noexcept;

  // Watch change feed (storage/watch.hpp). Thread-safe. The groups of `q.from` on within
  // [q.start, q.end), up to the visible revision (docs/STORAGE.md section 11).
  [[nodiscard]] ChangeBatch read_changes(const ChangeQuery& q) const;
  // The oldest revision a reader can start from now (with need_prev: from the in-memory
  // log only).
  [[nodiscard]] Revision oldest_change_revision(bool need_prev) const;
  ChangeLogStats change_log_stats() const;
  // Called on the committing thread once per committed revision that changed something,
  // after it is visible. Must be cheap, thread-safe and not throw; may be replaced at any
  // time (the engine keeps every listener it was given until it is destroyed). Null: none.
  void set_change_listener(std::function<void(Revision)> listener);

 private:
  explicit Engine(std::unique_ptr<detail::EngineImpl> impl) noexcept;
  std::unique_ptr<detail::EngineImpl> impl_;
};

}  // namespace kv::storage
