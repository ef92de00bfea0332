// storage/src/one_shot.cpp — one-shot operations: each runs in a fresh transaction of its
// own (a registered snapshot for reads; a serializable transaction, retried on CONFLICT,
// for writes; one_shot() is in engine_impl.hpp). No shared state beyond the engine's.
#include "engine_impl.hpp"

namespace kv::storage::detail {

Result<KeyValue> EngineImpl::get(std::string_view key) {
  if (Status s = check_open(); !s.ok()) return s;
  if (Status s = check_key(key); !s.ok()) return s;
  {
    // The head read (docs/STORAGE.md, "One-shot get without a snapshot"): no snapshot is
    // registered. The newest version, if W covers it (W read after the head), is the value
    // at the moment W passed it or at the head load, whichever is later: no newer version
    // can be visible before that moment (a later version of the key has a larger timestamp,
    // E1, and W grows in order, C1). Pruning never unlinks a head (E4), and the guard keeps
    // the version's memory (I1), so nothing needs to be pinned for the copy.
    kovan::Guard g = kovan::pin();
    const KeyNode* n = index_.find(key, g);
    if (n == nullptr) return Status(StatusCode::kNotFound, "");
    // acquire (kovan load): pairs with publish()'s release store of the head.
    const Version* v = n->head.load(g);
    if (v == nullptr) return Status(StatusCode::kNotFound, "");
    // seq_cst load, after the head's acquire load in program order (an acquire load keeps
    // later loads after it): pairs with the clock's seq_cst updates of W (snapshots.hpp).
    if (v->commit_ts <= clock_.visible()) {
      if (v->tombstone) return Status(StatusCode::kNotFound, "");
      return read_value(key, v);
    }
  }
  // The newest version is not visible yet (its commit is finishing, or waiting for the log,
  // E9): read at a registered snapshot, which returns the version before it.
  TxnState t;
  t.track_reads = false;
  if (Status s = open_snapshot(t); !s.ok()) return s;
  SnapshotCloser closer(this, t);
  return txn_get(t, key);
}

Result<ScanResult> EngineImpl::scan(std::string_view start, std::string_view end,
                                    const ScanOptions& o) {
  if (Status s = check_open(); !s.ok()) return s;
  TxnState t;
  t.track_reads = false;
  if (Status s = open_snapshot(t); !s.ok()) return s;
  SnapshotCloser closer(this, t);
  return txn_scan(t, start, end, o);
}

Result<PutResult> EngineImpl::put(std::string_view key, std::string_view value, bool prev_kv,
                                  std::size_t budget, std::uint64_t lease) {
  if (Status s = check_key(key); !s.ok()) return s;
  if (Status s = check_value(value); !s.ok()) return s;
  if (!prev_kv) return put_blind(key, value, lease);
  return one_shot<PutResult>(
      [&](TxnState& t) -> Result<PutResult> {
        PutResult pr;
        if (prev_kv) {
          Result<KeyValue> old = txn_get(t, key, budget);
          if (old.ok()) {
            pr.prev_kv = std::move(old).value();
          } else if (old.code() != StatusCode::kNotFound) {
            return old.status();  // over the budget: nothing is written
          }
        }
        if (Status s = txn_put(t, key, value, lease); !s.ok()) return s;
        return pr;
      },
      [](PutResult& pr, Revision rev) { pr.revision = rev; });
}

// A put that returns no previous value reads nothing: a serializable commit of it has
// nothing to validate and cannot lose (one-shot writes wait for busy locks), so it needs no
// snapshot, no write set and no retry loop (docs/STORAGE.md, "The blind one-shot put"). Its
// outcomes are those of the general path: the same limit checks and messages, the same
// hold-off on a key whose committers keep losing, the same statistics.
Result<PutResult> EngineImpl::put_blind(std::string_view key, std::string_view value,
                                        std::uint64_t lease) {
  if (Status s = check_open(); !s.ok()) return s;
  // As txn_put() on a fresh write set (nothing charged yet). The bytes are not charged to
  // txn_write_bytes while the commit runs: they go straight into the version.
  if (Status s = check_write_room(0, key.size() + value.size() + kWriteEntryOverhead); !s.ok()) {
    return s;
  }
  // "Contention": a fresh write keeps off a key whose committers keep losing, at most one cap.
  const std::pair<std::string_view, bool> keys[1] = {{key, true}};
  if (hot_.window_open(keys)) {
    hot_.hold_off(keys);
    hold_offs_.fetch_add(1, std::memory_order_relaxed);
  }
  try {
    Result<Revision> c = commit_blind(next_id(), key, value, lease);
    if (!c.ok()) return c.status();
    PutResult pr;
    pr.revision = c.value();
    return pr;
  } catch (const std::bad_alloc&) {
    // commit_blind gave back its lock and its timestamp, and published nothing.
    aborts_oom_.fetch_add(1, std::memory_order_relaxed);
    return Status(StatusCode::kResourceExhausted,
                  "out of memory while committing; nothing was applied");
  }
}

Result<DeleteResult> EngineImpl::delete_range(std::string_view start, std::string_view end,
                                              bool single, bool prev_kv, std::size_t budget) {
  if (single) {
    if (Status s = check_key(start); !s.ok()) return s;
  } else if (Status s = check_range(start, end); !s.ok()) {
    return s;
  }
  return one_shot<DeleteResult>(
      [&](TxnState& t) -> Result<DeleteResult> {
        return delete_in(t, start, end, single, prev_kv, budget);
      },
      [](DeleteResult& dr, Revision rev) { dr.revision = rev; });
}

Result<DeleteResult> EngineImpl::delete_in(TxnState& t, std::string_view start,
                                           std::string_view end, bool single, bool prev_kv,
                                           std::size_t budget) {
  DeleteResult dr;
  if (!prev_kv) budget = kNoBudget;  // only keys are read, and none is returned
  if (single) {
    Result<KeyValue> old = txn_get(t, start, budget);
    if (!old.ok()) {
      if (old.code() == StatusCode::kNotFound) return dr;
      return old.status();
    }
    if (Status s = txn_del(t, start); !s.ok()) return s;
    dr.deleted = 1;
    if (prev_kv) dr.prev_kvs.push_back(std::move(old).value());
    return dr;
  }
  ScanOptions so;
  so.keys_only = !prev_kv;
  Result<ScanResult> found = txn_scan(t, start, end, so, budget);
  if (!found.ok()) return found.status();
  // Every deleted key-value must be returned: a cut result fails the call before the
  // deletes are buffered (the scan stopped copying values at the budget).
  if (found->more) return budget_exceeded(budget, "the deleted key-values");
  for (KeyValue& kv : found->kvs) {
    if (Status s = txn_del(t, kv.key); !s.ok()) return s;
    ++dr.deleted;
    if (prev_kv) dr.prev_kvs.push_back(std::move(kv));
  }
  return dr;
}

}  // namespace kv::storage::detail
