// storage/src/engine.cpp — the public Engine and Transaction (storage/engine.hpp): argument
// routing to EngineImpl (engine_impl.hpp, where the files of each concern are listed) and
// the per-handle mutex that serializes calls on one transaction.
#include <stdexcept>

#include "engine_impl.hpp"

namespace kv::storage {

using detail::TxnState;

// ------------------------------------------------------------------ Transaction
Transaction::Transaction() noexcept = default;
Transaction::Transaction(detail::EngineImpl* engine, std::shared_ptr<TxnState> state) noexcept
    : engine_(engine), state_(std::move(state)) {}
Transaction::Transaction(Transaction&& o) noexcept
    : engine_(std::exchange(o.engine_, nullptr)), state_(std::move(o.state_)) {}
Transaction& Transaction::operator=(Transaction&& o) noexcept {
  if (this != &o) {
    (void)abort_if_active();
    engine_ = std::exchange(o.engine_, nullptr);
    state_ = std::move(o.state_);
  }
  return *this;
}
Transaction::~Transaction() { (void)abort_if_active(); }

bool Transaction::abort_if_active() noexcept {
  if (!state_) return false;
  std::lock_guard lk(state_->mu);
  if (state_->phase != detail::Phase::kActive) return false;
  engine_->user_abort(*state_);
  return true;
}

std::uint64_t Transaction::id() const noexcept { return state_ ? state_->id : 0; }
Isolation Transaction::isolation() const noexcept {
  return state_ ? state_->iso : Isolation::kSerializable;
}
Revision Transaction::snapshot_revision() const noexcept { return state_ ? state_->start_ts : 0; }
bool Transaction::active() const noexcept {
  if (!state_) return false;
  std::lock_guard lk(state_->mu);
  return state_->phase == detail::Phase::kActive;
}

namespace {
Status no_txn() { return Status(StatusCode::kTxnNotFound, "empty transaction handle"); }
}  // namespace

Result<KeyValue> Transaction::get(std::string_view key) {
  if (!state_) return no_txn();
  std::lock_guard lk(state_->mu);
  if (Status s = engine_->admit(*state_); !s.ok()) return s;
  return engine_->txn_get(*state_, key);
}
Result<ScanResult> Transaction::scan(std::string_view start, std::string_view end,
                                     const ScanOptions& opts) {
  if (!state_) return no_txn();
  std::lock_guard lk(state_->mu);
  if (Status s = engine_->admit(*state_); !s.ok()) return s;
  return engine_->txn_scan(*state_, start, end, opts);
}
Status Transaction::put(std::string_view key, std::string_view value, std::uint64_t lease) {
  if (!state_) return no_txn();
  std::lock_guard lk(state_->mu);
  if (Status s = engine_->admit(*state_); !s.ok()) return s;
  if (lease != 0) {
    if (Status s = engine_->lease_check_alive(lease); !s.ok()) return s;
  }
  return engine_->txn_put(*state_, key, value, lease);
}
Status Transaction::del(std::string_view key) {
  if (!state_) return no_txn();
  std::lock_guard lk(state_->mu);
  if (Status s = engine_->admit(*state_); !s.ok()) return s;
  return engine_->txn_del(*state_, key);
}
Result<Revision> Transaction::commit() {
  if (!state_) return no_txn();
  std::lock_guard lk(state_->mu);
  if (Status s = engine_->admit(*state_); !s.ok()) return s;
  Result<Revision> r = engine_->txn_commit(*state_);
  engine_->unregister(*state_);
  return r;
}
Status Transaction::abort() {
  if (!state_) return no_txn();
  std::lock_guard lk(state_->mu);
  switch (state_->phase) {
    case detail::Phase::kActive:
      engine_->user_abort(*state_);
      return Status::Ok();
    case detail::Phase::kExpired:
      return Status(StatusCode::kTxnExpired, "transaction exceeded txn_timeout");
    default:
      return Status(StatusCode::kTxnNotFound, "transaction is no longer active");
  }
}

// ------------------------------------------------------------------ Engine
Engine::Engine(Options options) {
  if (options.durability.data_dir.empty() && options.durability.restore_from.empty()) {
    impl_ = std::make_unique<detail::EngineImpl>(std::move(options));
    return;
  }
  std::string error;
  impl_ = detail::EngineImpl::open(std::move(options), error);
  if (!impl_) throw std::runtime_error(error);
}
Engine::Engine(std::unique_ptr<detail::EngineImpl> impl) noexcept : impl_(std::move(impl)) {}
std::unique_ptr<Engine> Engine::open(Options options, std::string& error) {
  std::unique_ptr<detail::EngineImpl> impl = detail::EngineImpl::open(std::move(options), error);
  if (!impl) return nullptr;
  return std::unique_ptr<Engine>(new Engine(std::move(impl)));
}
Engine::~Engine() = default;

Result<KeyValue> Engine::get(std::string_view key) { return impl_->get(key); }
Status Engine::get_with(std::string_view key, GetVisitor visit, void* ctx) {
  return impl_->get_with(key, visit, ctx);
}
Result<ScanResult> Engine::scan(std::string_view start, std::string_view end,
                                const ScanOptions& opts) {
  return impl_->scan(start, end, opts);
}
namespace {
std::size_t budget_of(std::size_t max_response_bytes) {
  return max_response_bytes == 0 ? detail::kNoBudget : max_response_bytes;
}
}  // namespace

Result<PutResult> Engine::put(std::string_view key, std::string_view value, bool prev_kv,
                              std::size_t max_response_bytes, std::uint64_t lease) {
  return impl_->put(key, value, prev_kv, budget_of(max_response_bytes), lease);
}
Result<DeleteResult> Engine::del(std::string_view key, bool prev_kv,
                                 std::size_t max_response_bytes) {
  return impl_->delete_range(key, {}, true, prev_kv, budget_of(max_response_bytes));
}
Result<DeleteResult> Engine::delete_range(std::string_view start, std::string_view end,
                                          bool prev_kv, std::size_t max_response_bytes) {
  return impl_->delete_range(start, end, false, prev_kv, budget_of(max_response_bytes));
}
Result<CondTxnResult> Engine::txn(const CondTxn& request) { return impl_->txn(request); }
Result<Transaction> Engine::begin(Isolation isolation) { return impl_->begin(isolation); }
Revision Engine::current_revision() const noexcept { return impl_->current_revision(); }
EngineStats Engine::stats() const { return impl_->stats(); }
std::size_t Engine::version_count(std::string_view key) const { return impl_->version_count(key); }
void Engine::run_maintenance() { impl_->run_maintenance(); }
Result<LeaseGrantResult> Engine::lease_grant(std::int64_t ttl_seconds, std::uint64_t id) {
  return impl_->lease_grant(ttl_seconds, id);
}
Result<LeaseRevokeResult> Engine::lease_revoke(std::uint64_t id) {
  return impl_->lease_revoke(id, false);
}
Result<std::int64_t> Engine::lease_keepalive(std::uint64_t id) {
  return impl_->lease_keepalive(id);
}
Result<LeaseInfo> Engine::lease_time_to_live(std::uint64_t id, bool keys) {
  return impl_->lease_time_to_live(id, keys);
}
std::size_t Engine::expire_leases() { return impl_->expire_leases(); }
void Engine::shutdown() { impl_->shutdown(); }
Result<Revision> Engine::checkpoint() { return impl_->checkpoint(); }
Result<Revision> Engine::write_snapshot(const std::function<bool(std::string_view)>& sink) {
  return impl_->write_snapshot(sink);
}
DurabilityStats Engine::durability_stats() const { return impl_->durability_stats(); }
std::vector<std::string> Engine::recovery_notes() const { return impl_->recovery_notes(); }
const Options& Engine::options() const noexcept { return impl_->options(); }

}  // namespace kv::storage
