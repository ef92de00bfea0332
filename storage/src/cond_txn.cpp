// storage/src/cond_txn.cpp — etcd-like conditional transactions: every compare is read in
// one serializable one-shot transaction, then the success or failure ops run in it, and it
// commits (retried on CONFLICT like every one-shot write). No shared state of its own.
#include "engine_impl.hpp"

namespace kv::storage::detail {

namespace {

bool compare_holds(const Compare& c, const Result<KeyValue>& cur) {
  const bool present = cur.ok();
  if (c.target == Compare::Target::kValue) {
    if (!present) return false;
    const int r = cur->value.compare(c.value);
    switch (c.op) {
      case Compare::Op::kEqual:
        return r == 0;
      case Compare::Op::kNotEqual:
        return r != 0;
      case Compare::Op::kLess:
        return r < 0;
      case Compare::Op::kGreater:
        return r > 0;
    }
    return false;
  }
  std::int64_t actual = 0;
  if (present) {
    switch (c.target) {
      case Compare::Target::kVersion:
        actual = cur->version;
        break;
      case Compare::Target::kCreateRevision:
        actual = static_cast<std::int64_t>(cur->create_revision);
        break;
      case Compare::Target::kModRevision:
        actual = static_cast<std::int64_t>(cur->mod_revision);
        break;
      case Compare::Target::kValue:
        break;
    }
  }
  switch (c.op) {
    case Compare::Op::kEqual:
      return actual == c.number;
    case Compare::Op::kNotEqual:
      return actual != c.number;
    case Compare::Op::kLess:
      return actual < c.number;
    case Compare::Op::kGreater:
      return actual > c.number;
  }
  return false;
}

Status check_op(const EngineImpl& e, const TxnOp& op) {
  if (Status s = e.check_key(op.key); !s.ok()) return s;
  if (op.type == TxnOp::Type::kPut) return e.check_value(op.value);
  if (!op.range_end.empty() && op.range_end != std::string_view("\0", 1)) {
    return e.check_range(op.key, op.range_end);
  }
  return Status::Ok();
}

}  // namespace

Result<CondTxnResult> EngineImpl::txn(const CondTxn& req) {
  for (const Compare& c : req.compare) {
    if (Status s = check_key(c.key); !s.ok()) return s;
  }
  for (const auto* ops : {&req.success, &req.failure}) {
    for (const TxnOp& op : *ops) {
      if (Status s = check_op(*this, op); !s.ok()) return s;
    }
  }
  return one_shot<CondTxnResult>(
      [&](TxnState& t) -> Result<CondTxnResult> {
        std::size_t left = req.max_response_bytes == 0 ? kNoBudget : req.max_response_bytes;
        CondTxnResult res;
        res.succeeded = true;
        for (const Compare& c : req.compare) {
          Result<KeyValue> cur = txn_get(t, c.key);
          if (!cur.ok() && cur.code() != StatusCode::kNotFound) return cur.status();
          if (!compare_holds(c, cur)) {
            res.succeeded = false;
            break;
          }
        }
        for (const TxnOp& op : res.succeeded ? req.success : req.failure) {
          Result<TxnOpResult> r = run_op(t, op, &left);
          if (!r.ok()) return r.status();
          res.results.push_back(std::move(r).value());
        }
        return res;
      },
      [](CondTxnResult& r, Revision rev) { r.revision = rev; });
}

Result<TxnOpResult> EngineImpl::run_op(TxnState& t, const TxnOp& op, std::size_t* left) {
  TxnOpResult out;
  out.type = op.type;
  const bool ranged = !op.range_end.empty();
  const std::string_view end =
      op.range_end == std::string_view("\0", 1) ? std::string_view() : op.range_end;
  // The op's own result, then its key-values, are charged to what is left of the budget.
  const std::size_t budget = *left;
  if (budget != kNoBudget) {
    if (budget < kOpResultOverhead) return budget_exceeded(budget, "too many ops");
    *left -= kOpResultOverhead;
  }
  auto charge = [&](const std::vector<KeyValue>& kvs) {
    if (*left == kNoBudget) return;
    for (const KeyValue& kv : kvs) *left -= response_cost(kv.key.size(), kv.value.size());
  };
  switch (op.type) {
    case TxnOp::Type::kGet: {
      if (!ranged) {
        Result<KeyValue> r = txn_get(t, op.key, *left);
        if (r.ok()) {
          out.kvs.push_back(std::move(r).value());
          out.count = 1;
        } else if (r.code() != StatusCode::kNotFound) {
          return r.status();  // also over the budget: the transaction fails uncommitted
        }
        charge(out.kvs);
        return out;
      }
      Result<ScanResult> r = txn_scan(t, op.key, end, op.scan, *left);
      if (!r.ok()) return r.status();
      out.kvs = std::move(r->kvs);
      out.count = r->count;
      out.more = r->more;
      charge(out.kvs);
      return out;
    }
    case TxnOp::Type::kPut: {
      if (op.prev_kv) {
        Result<KeyValue> r = txn_get(t, op.key, *left);
        if (r.ok()) {
          out.kvs.push_back(std::move(r).value());
        } else if (r.code() != StatusCode::kNotFound) {
          return r.status();
        }
      }
      if (Status s = txn_put(t, op.key, op.value, op.lease); !s.ok()) return s;
      charge(out.kvs);
      return out;
    }
    case TxnOp::Type::kDelete: {
      Result<DeleteResult> r = delete_in(t, op.key, end, !ranged, op.prev_kv, *left);
      if (!r.ok()) return r.status();
      out.deleted = r->deleted;
      out.kvs = std::move(r->prev_kvs);
      charge(out.kvs);
      return out;
    }
  }
  return Status(StatusCode::kInternal, "unknown op type");
}

}  // namespace kv::storage::detail
