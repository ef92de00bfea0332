// storage/src/reads.cpp — reads at a transaction's snapshot (E2), merged with its own
// buffered writes, and the buffering of writes. Reads take a kovan guard for the call only
// (I1) and record what a serializable transaction read, as keys and ranges (never nodes, E6),
// for validation at commit. Response budgets (engine.hpp) are checked before a value is
// copied, so a read never copies a value it cannot return. Buffering a put enforces the
// memory limits (Options::max_memory_bytes, max_txn_bytes).
#include "engine_impl.hpp"

namespace kv::storage {

namespace {
// Value bytes copied out by reads on this thread (value_bytes_copied_on_this_thread()).
thread_local std::uint64_t tl_value_bytes_copied = 0;
}  // namespace

std::uint64_t value_bytes_copied_on_this_thread() noexcept { return tl_value_bytes_copied; }

}  // namespace kv::storage

namespace kv::storage::detail {

namespace {

void copy_value(std::string& to, std::string_view from) {
  to.assign(from);
  tl_value_bytes_copied += from.size();
}

void fill(KeyValue* kv, std::string_view key, const Version* v, bool with_value) {
  kv->key.assign(key);
  if (with_value) copy_value(kv->value, v->value());
  kv->create_revision = v->create_rev;
  kv->mod_revision = v->commit_ts;
  kv->version = v->version;
  kv->lease = v->lease;
}

// The lease of an own (buffered) put of `key`.
std::uint64_t own_lease(const TxnState& t, std::string_view key) {
  if (t.write_leases.empty()) return 0;
  auto it = t.write_leases.find(key);
  return it == t.write_leases.end() ? 0 : it->second;
}

std::size_t write_entry_cost(std::string_view key, const std::optional<std::string>& value) {
  return key.size() + (value ? value->size() : 0) + kWriteEntryOverhead;
}

}  // namespace

Result<KeyValue> EngineImpl::txn_get(TxnState& t, std::string_view key, std::size_t budget) {
  if (Status s = check_key(key); !s.ok()) return s;
  auto over = [&](std::size_t value_bytes) {
    return budget != kNoBudget && response_cost(key.size(), value_bytes) > budget;
  };
  if (auto w = t.writes.find(key); w != t.writes.end()) {
    if (!w->second) return Status(StatusCode::kNotFound, "");
    if (over(w->second->size())) return budget_exceeded(budget, "reading one key");
    KeyValue kv;
    kv.key.assign(key);
    copy_value(kv.value, *w->second);
    kv.lease = own_lease(t, key);
    return kv;
  }
  if (t.track_reads) t.read_keys.emplace_back(key);
  kovan::Guard g = kovan::pin();
  const KeyNode* n = index_.find(key, g);
  if (n == nullptr) return Status(StatusCode::kNotFound, "");
  const Version* v = visible_at(n, t.start_ts, g);
  if (v == nullptr || v->tombstone) return Status(StatusCode::kNotFound, "");
  if (over(v->value_size)) return budget_exceeded(budget, "reading one key");
  return read_value(key, v);
}

namespace {
// Visits live version v of node n (both kept by the caller's guard, I1).
void visit_version(const KeyNode* n, const Version* v, GetVisitor visit, void* ctx) {
  const KeyValueView kv{n->key, v->value(), v->create_rev, v->commit_ts, v->version, v->lease};
  visit(ctx, kv);
}
}  // namespace

Status EngineImpl::get_with(std::string_view key, GetVisitor visit, void* ctx) {
  if (Status s = check_open(); !s.ok()) return s;
  if (Status s = check_key(key); !s.ok()) return s;
  {
    // The head read of the one-shot get (one_shot.cpp, EngineImpl::get; docs/STORAGE.md,
    // "One-shot get without a snapshot"): the newest version, if W covers it. The guard
    // is held across the visitor: the node and the version (its value bytes inline) are
    // not deleted before the visitor returns, even if a writer replaces the head and GC
    // prunes and retires the version meanwhile (I1).
    kovan::Guard g = kovan::pin();
    const KeyNode* n = index_.find(key, g);
    if (n == nullptr) return Status(StatusCode::kNotFound, "");
    // acquire (kovan load): pairs with publish()'s release store of the head.
    const Version* v = n->head.load(g);
    if (v == nullptr) return Status(StatusCode::kNotFound, "");
    // seq_cst load, after the head's acquire load in program order: pairs with the clock's
    // seq_cst updates of W (snapshots.hpp), as in EngineImpl::get.
    if (v->commit_ts <= clock_.visible()) {
      if (v->tombstone) return Status(StatusCode::kNotFound, "");
      visit_version(n, v, visit, ctx);
      return Status::Ok();
    }
  }
  // The newest version is not visible yet (E9): read at a registered snapshot, which sees
  // the version before it. Nothing is buffered in t, so the index alone answers.
  TxnState t;
  t.track_reads = false;
  if (Status s = open_snapshot(t); !s.ok()) return s;
  SnapshotCloser closer(this, t);  // also if visit throws
  kovan::Guard g = kovan::pin();
  const KeyNode* n = index_.find(key, g);
  if (n == nullptr) return Status(StatusCode::kNotFound, "");
  const Version* v = visible_at(n, t.start_ts, g);
  if (v == nullptr || v->tombstone) return Status(StatusCode::kNotFound, "");
  visit_version(n, v, visit, ctx);
  return Status::Ok();
}

KeyValue EngineImpl::read_value(std::string_view key, const Version* v) {
  KeyValue kv;
  fill(&kv, key, v, true);
  return kv;
}

// Walks [start, end) in key order (descending if kReverse), merging the index at t's
// snapshot with t's write set (which wins on equal keys), and calls
// emit(key, version-or-null, own-write-or-null) for each key of either.
template <bool kReverse, class Emit>
void EngineImpl::merge_scan(const TxnState& t, std::string_view start, std::string_view end,
                            const kovan::Guard& g, Emit&& emit) {
  // The first key of the walk, the step to the next one, and the far bound.
  KeyNode* n;
  if constexpr (kReverse) {
    n = end.empty() ? index_.last(g) : index_.last_less(end, g);
  } else {
    n = index_.lower_bound(start, g);
  }
  auto step = [&](KeyNode* m) {
    if constexpr (kReverse) {
      return index_.last_less(m->key, g);
    } else {
      return index_.next(m, g);
    }
  };
  auto in_range = [&](std::string_view k) {
    if constexpr (kReverse) {
      return k.compare(start) >= 0;
    } else {
      return in_upper(k, end, false);
    }
  };
  // The write set walked in the same direction.
  auto [w, w_end] = [&] {
    if constexpr (kReverse) {
      return std::pair(
          end.empty() ? t.writes.rbegin() : std::make_reverse_iterator(t.writes.lower_bound(end)),
          t.writes.rend());
    } else {
      return std::pair(t.writes.lower_bound(start), t.writes.end());
    }
  }();
  for (;;) {
    const bool n_ok = n != nullptr && in_range(n->key);
    const bool w_ok = w != w_end && in_range(w->first);
    if (!n_ok && !w_ok) break;
    // c < 0: the write's key comes first in walk order; 0: the same key.
    int c = !n_ok ? -1 : !w_ok ? 1 : w->first.compare(n->key);
    if (kReverse && n_ok && w_ok) c = c < 0 ? 1 : (c > 0 ? -1 : 0);
    if (c <= 0) {
      if (c == 0) n = step(n);  // the own write hides the snapshot's version
      emit(std::string_view(w->first), static_cast<const Version*>(nullptr), &w->second);
      ++w;
    } else {
      emit(std::string_view(n->key), static_cast<const Version*>(visible_at(n, t.start_ts, g)),
           static_cast<const std::optional<std::string>*>(nullptr));
      n = step(n);
    }
  }
}

Result<ScanResult> EngineImpl::txn_scan(TxnState& t, std::string_view start, std::string_view end,
                                        const ScanOptions& opts, std::size_t budget) {
  if (Status s = check_range(start, end); !s.ok()) return s;
  ScanResult out;
  out.revision = t.start_ts;
  const bool collect = !opts.count_only;
  const std::size_t limit = collect ? opts.limit : 0;
  if (opts.max_bytes != 0) budget = std::min(budget, opts.max_bytes);
  kovan::Guard g = kovan::pin();

  // One key, from the snapshot (v) or from the write set (own). Once the limit or the
  // budget cut the result (`more`), later keys are only counted: the result stays a prefix
  // of the range in walk order, and no value past the cut is copied.
  auto emit = [&](std::string_view key, const Version* v, const std::optional<std::string>* own) {
    if (own != nullptr ? !own->has_value() : (v == nullptr || v->tombstone)) return;
    ++out.count;  // every key of the range is counted, also past the limit
    if (!collect || out.more) return;
    if (limit != 0 && out.kvs.size() == limit) {
      out.more = true;
      return;
    }
    const std::size_t value_bytes =
        opts.keys_only ? 0 : (own != nullptr ? (*own)->size() : v->value_size);
    const std::size_t cost = response_cost(key.size(), value_bytes);
    if (budget != kNoBudget && out.bytes + cost > budget) {
      out.more = true;
      return;
    }
    out.bytes += cost;
    KeyValue kv;
    if (own != nullptr) {
      kv.key.assign(key);
      if (!opts.keys_only) copy_value(kv.value, **own);
      kv.lease = own_lease(t, key);
    } else {
      fill(&kv, key, v, !opts.keys_only);
    }
    out.kvs.push_back(std::move(kv));
  };
  if (opts.reverse) {
    merge_scan<true>(t, start, end, g, emit);
  } else {
    merge_scan<false>(t, start, end, g, emit);
  }
  // The count covers the whole range, so the whole range was read (also when a limit cut
  // the returned keys).
  if (t.track_reads) t.ranges.push_back(RangeRead{std::string(start), std::string(end), false});
  return out;
}

std::uint64_t EngineImpl::memory_bytes() const {
  std::uint64_t b = index_.bytes() + version_bytes_.load(std::memory_order_relaxed) +
                    txn_write_bytes_.load(std::memory_order_relaxed);
  if (opts_.external_memory_bytes) b += opts_.external_memory_bytes();
  return b;
}

Status EngineImpl::txn_put(TxnState& t, std::string_view key, std::string_view value,
                           std::uint64_t lease) {
  if (Status s = check_key(key); !s.ok()) return s;
  if (Status s = check_value(value); !s.ok()) return s;
  auto it = t.writes.find(key);
  const std::size_t old_cost = it == t.writes.end() ? 0 : write_entry_cost(key, it->second);
  const std::size_t new_cost = key.size() + value.size() + kWriteEntryOverhead;
  if (new_cost > old_cost) {
    if (Status s = check_write_room(t.write_charge.bytes(), new_cost - old_cost); !s.ok()) {
      return s;
    }
  }
  // The lease entry first: a failure to allocate it leaves the write set as it was.
  if (lease != 0) {
    t.write_leases.insert_or_assign(std::string(key), lease);
  } else if (!t.write_leases.empty()) {
    t.write_leases.erase(std::string(key));
  }
  if (it == t.writes.end()) {
    t.writes.emplace(std::string(key), std::optional<std::string>(std::string(value)));
  } else {
    it->second = std::string(value);
  }
  t.write_charge.adjust(txn_write_bytes_,
                        static_cast<std::int64_t>(new_cost) - static_cast<std::int64_t>(old_cost));
  return Status::Ok();
}

Status EngineImpl::check_write_room(std::uint64_t charged, std::uint64_t grow) const {
  if (opts_.max_txn_bytes != 0 && charged + grow > opts_.max_txn_bytes) {
    return Status(StatusCode::kResourceExhausted,
                  "the transaction's writes would exceed the limit of " +
                      std::to_string(opts_.max_txn_bytes) +
                      " bytes per transaction; the put was not applied");
  }
  if (opts_.max_memory_bytes != 0) {
    const std::uint64_t used = memory_bytes();
    if (used + grow > opts_.max_memory_bytes) {
      return Status(StatusCode::kResourceExhausted,
                    "memory limit reached: " + std::to_string(used) + " bytes in use of " +
                        std::to_string(opts_.max_memory_bytes) +
                        "; writes that add data are refused until deletes free space (reads "
                        "and deletes are served)");
    }
  }
  return Status::Ok();
}

Status EngineImpl::txn_del(TxnState& t, std::string_view key) {
  if (Status s = check_key(key); !s.ok()) return s;
  // Never refused for memory: a delete is how space is freed.
  auto it = t.writes.find(key);
  const std::size_t old_cost = it == t.writes.end() ? 0 : write_entry_cost(key, it->second);
  const std::size_t new_cost = key.size() + kWriteEntryOverhead;
  if (it == t.writes.end()) {
    t.writes.emplace(std::string(key), std::nullopt);
  } else {
    it->second = std::nullopt;
  }
  if (!t.write_leases.empty()) t.write_leases.erase(std::string(key));
  t.write_charge.adjust(txn_write_bytes_,
                        static_cast<std::int64_t>(new_cost) - static_cast<std::int64_t>(old_cost));
  return Status::Ok();
}

}  // namespace kv::storage::detail
