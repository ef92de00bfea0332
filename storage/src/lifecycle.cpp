// storage/src/lifecycle.cpp — the engine's life and its transactions' lives: construction
// and destruction, argument checks, snapshot registration, begin, expiry, abort, and the
// background sweeper thread. Invariants: engine_impl.hpp (E1-E6), snapshots.hpp (S1).
#include <unistd.h>

#include "engine_impl.hpp"

namespace kv::storage::detail {

namespace {

class SteadyClock final : public Clock {
 public:
  std::chrono::steady_clock::time_point now() const noexcept override {
    return std::chrono::steady_clock::now();
  }
};

}  // namespace

EngineImpl::EngineImpl(Options opts)
    : opts_(std::move(opts)),
      clock_src_(opts_.clock ? opts_.clock : std::make_shared<SteadyClock>()),
      registry_(opts_.max_active_txns + kOneShotSlots) {
  // A durable engine starts its threads once recovery has filled it (start_threads()).
  if (opts_.background_sweeper && opts_.durability.data_dir.empty()) {
    sweeper_ = std::thread([this] { sweeper_loop(); });
  }
}

bool EngineImpl::start_threads(std::string* err) {
  const bool checkpointer =
      opts_.durability.checkpoint_every.count() > 0 || opts_.durability.checkpoint_every_bytes > 0;
  // The trigger is set before the flusher starts (it reads it without a lock).
  if (checkpointer) wal_->set_checkpoint_trigger([this] { request_checkpoint(); });
  if (!wal_->start(err)) return false;
  if (opts_.background_sweeper) sweeper_ = std::thread([this] { sweeper_loop(); });
  if (checkpointer) checkpointer_ = std::thread([this] { checkpointer_loop(); });
  return true;
}

void EngineImpl::stop_checkpointer() {
  {
    std::lock_guard lk(cp_mu_);
    cp_stop_ = true;
  }
  cp_cv_.notify_all();
  if (checkpointer_.joinable()) checkpointer_.join();
}

EngineImpl::~EngineImpl() {
  stop_checkpointer();
  stop_sweeper();
  wal_.reset();  // writes and fsyncs what is buffered
  // No other thread may touch the engine now (contract): free chains directly.
  for (KeyNode* n = index_.first_unprotected(); n != nullptr; n = SkipList::next_unprotected(n)) {
    Version* v = n->head.load_unprotected(std::memory_order_relaxed);
    while (v != nullptr) {
      Version* nx = v->next.load_unprotected(std::memory_order_relaxed);
      delete v;
      v = nx;
    }
  }
  kovan::flush();
  if (lock_fd_ >= 0) ::close(lock_fd_);  // releases the directory's lock
}

// ------------------------------------------------------------------ argument checks
Status EngineImpl::check_key(std::string_view key) const {
  if (key.empty()) return invalid("empty key");
  if (key.size() > opts_.max_key_bytes) {
    return invalid("key of " + std::to_string(key.size()) + " bytes exceeds max_key_bytes " +
                   std::to_string(opts_.max_key_bytes));
  }
  return Status::Ok();
}

Status EngineImpl::check_value(std::string_view value) const {
  if (value.size() > opts_.max_value_bytes) {
    return invalid("value of " + std::to_string(value.size()) + " bytes exceeds max_value_bytes " +
                   std::to_string(opts_.max_value_bytes));
  }
  return Status::Ok();
}

Status EngineImpl::check_range(std::string_view start, std::string_view end) const {
  if (start.size() > opts_.max_key_bytes || end.size() > opts_.max_key_bytes) {
    return invalid("range bound exceeds max_key_bytes");
  }
  if (!end.empty() && end.compare(start) < 0) return invalid("range end before start");
  return Status::Ok();
}

Status EngineImpl::check_open() const {
  if (shutdown_.load(std::memory_order_acquire)) {  // pairs with shutdown()'s release
    return Status(StatusCode::kUnavailable, "engine is shutting down");
  }
  return Status::Ok();
}

// ------------------------------------------------------------------ snapshots
Status EngineImpl::open_snapshot(TxnState& t) {
  if (!registry_.acquire(clock_, &t.slot, &t.start_ts)) {
    return Status(StatusCode::kResourceExhausted, "too many active snapshots");
  }
  t.has_slot = true;
  return Status::Ok();
}

void EngineImpl::close_snapshot(TxnState& t) noexcept {
  if (t.has_slot) {
    registry_.release(t.slot);
    t.has_slot = false;
  }
}

// ------------------------------------------------------------------ transactions
Result<Transaction> EngineImpl::begin(Isolation iso) {
  if (Status s = check_open(); !s.ok()) return s;
  auto t = std::make_shared<TxnState>();
  t->id = next_id();
  t->iso = iso;
  t->track_reads = iso == Isolation::kSerializable;
  t->started = clock_src_->now();
  {
    std::lock_guard lk(txns_mu_);
    if (txns_.size() >= opts_.max_active_txns) {
      return Status(StatusCode::kResourceExhausted, "too many active transactions");
    }
    if (Status s = open_snapshot(*t); !s.ok()) return s;
    t->registered = true;
    txns_.emplace(t->id, t);
  }
  return Transaction(this, std::move(t));
}

std::uint64_t EngineImpl::next_id() noexcept {
  // Ids only need to be unique (a lock owner, a key of txns_), so each thread takes a block
  // of kIdBlock from a process-wide counter and hands them out alone: no shared line is
  // written per transaction. Process-wide (not per engine) because the block is per thread
  // and a thread may use several engines; ids from it are unique in every engine. Never
  // kGcOwner or below (the counter starts above it), never kDeadOwner (2^64 ids).
  constexpr std::uint64_t kIdBlock = 1024;
  static std::atomic<std::uint64_t> blocks{kGcOwner + 1};
  thread_local std::uint64_t next = 0;
  thread_local std::uint64_t end = 0;
  if (next == end) {
    next = blocks.fetch_add(kIdBlock, std::memory_order_relaxed);  // uniqueness only
    end = next + kIdBlock;
  }
  return next++;
}

void EngineImpl::unregister(TxnState& t) {
  if (!t.registered) return;
  t.registered = false;
  std::lock_guard lk(txns_mu_);
  txns_.erase(t.id);
}

bool EngineImpl::expired(const TxnState& t) const noexcept {
  return clock_src_->now() - t.started > opts_.txn_timeout;
}

Status EngineImpl::admit(TxnState& t) {
  switch (t.phase) {
    case Phase::kActive:
      break;
    case Phase::kExpired:
      return Status(StatusCode::kTxnExpired, "transaction exceeded txn_timeout");
    default:
      return Status(StatusCode::kTxnNotFound, "transaction is no longer active");
  }
  if (Status s = check_open(); !s.ok()) return s;
  if (expired(t)) {
    abort_locked(t, AbortCause::kExpired);
    unregister(t);
    return Status(StatusCode::kTxnExpired, "transaction exceeded txn_timeout");
  }
  return Status::Ok();
}

void EngineImpl::abort_locked(TxnState& t, AbortCause cause) {
  close_snapshot(t);
  t.writes.clear();
  t.write_leases.clear();
  t.write_charge.release();
  t.read_keys.clear();
  t.ranges.clear();
  switch (cause) {
    case AbortCause::kConflict:
      t.phase = Phase::kAborted;
      // A one-shot write's lost attempt is counted by one_shot() (engine_impl.hpp): as a
      // retry, or as the caller's CONFLICT when it gives up.
      if (!t.one_shot) aborts_conflict_.fetch_add(1, std::memory_order_relaxed);
      break;
    case AbortCause::kExpired:
      t.phase = Phase::kExpired;
      aborts_expired_.fetch_add(1, std::memory_order_relaxed);
      break;
    case AbortCause::kUser:
      t.phase = Phase::kAborted;
      aborts_user_.fetch_add(1, std::memory_order_relaxed);
      break;
    case AbortCause::kOutOfMemory:
      t.phase = Phase::kAborted;
      aborts_oom_.fetch_add(1, std::memory_order_relaxed);
      break;
    case AbortCause::kStorage:
    case AbortCause::kLease:  // a lease named by a put was not alive at commit
      t.phase = Phase::kAborted;
      break;
  }
}

void EngineImpl::user_abort(TxnState& t) {
  abort_locked(t, AbortCause::kUser);
  unregister(t);
}

void EngineImpl::expire_txns() {
  std::vector<std::shared_ptr<TxnState>> due;
  {
    std::lock_guard lk(txns_mu_);
    for (auto& [id, t] : txns_) {
      if (expired(*t)) due.push_back(t);
    }
  }
  for (auto& t : due) {
    std::lock_guard lk(t->mu);  // never taken while holding txns_mu_
    if (t->phase == Phase::kActive && expired(*t)) {
      abort_locked(*t, AbortCause::kExpired);
      unregister(*t);
    }
  }
}

// ------------------------------------------------------------------ maintenance, shutdown
void EngineImpl::run_maintenance() {
  expire_txns();
  registry_.shrink();  // in case a release at the top met a shrink already running
  sweep();
}

void EngineImpl::shutdown() {
  shutdown_.store(true, std::memory_order_release);  // pairs with check_open()'s acquire
  stop_checkpointer();
  stop_sweeper();
}

// Wakes every lease_check_period (when shorter than sweeper_period) to revoke expired
// leases; the maintenance sweep still runs every sweeper_period.
void EngineImpl::sweeper_loop() {
  const auto period = std::min<std::chrono::milliseconds>(
      opts_.sweeper_period,
      std::max<std::chrono::milliseconds>(opts_.lease_check_period, std::chrono::milliseconds(1)));
  last_maintenance_ = std::chrono::steady_clock::now();
  std::unique_lock lk(sweeper_mu_);
  while (!stop_) {
    sweeper_cv_.wait_for(lk, period, [this] { return stop_; });
    if (stop_) break;
    lk.unlock();
    (void)expire_leases();
    if (std::chrono::steady_clock::now() - last_maintenance_ >= opts_.sweeper_period) {
      run_maintenance();
      last_maintenance_ = std::chrono::steady_clock::now();
    }
    lk.lock();
  }
  kovan::flush();
}

void EngineImpl::stop_sweeper() {
  {
    std::lock_guard lk(sweeper_mu_);
    stop_ = true;
  }
  sweeper_cv_.notify_all();
  if (sweeper_.joinable()) sweeper_.join();
}

}  // namespace kv::storage::detail
