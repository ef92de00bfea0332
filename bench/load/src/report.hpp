// Output of `kovan-bench run`: the final table, the live progress line and the JSON file.
//
// JSON layout (latencies in microseconds):
//   { "target", "workload", "distribution", "records", "value_size", "connections",
//     "threads", "pipeline", "rate", "duration_s", "warmup_s", "seed",
//     "ops", "throughput_ops_per_s", "misses", "txn_aborts", "unsent_scheduled",
//     "ops_by_kind": {"read": n, ...},
//     "latency_us": {"from_intended": {"p50","p90","p99","p99_9","max","mean"},
//                    "from_send": {...}},
//     "errors_total": n, "errors": {"CODE": n, ...},
//     "series": [{"second", "ops", "errors", "p50_us", "p99_us", "max_us"}, ...] }
// "from_intended" and "from_send" are equal in a closed-loop run (an operation is sent when
// it is intended).
//
// Thread safety: pure functions of their arguments.
#pragma once

#include <string>

#include "engine.hpp"
#include "options.hpp"

namespace kv::bench {

[[nodiscard]] std::string format_table(const RunOptions& o, const LoadResult& r);
[[nodiscard]] std::string format_json(const RunOptions& o, const LoadResult& r);
[[nodiscard]] std::string format_progress(const SecondStats& s);

}  // namespace kv::bench
