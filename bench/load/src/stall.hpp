// `kovan-bench stall`: what a stall costs the server in memory.
//
//   mode txn:    T interactive transactions each read `reads_per_txn` keys and then stay
//                idle (holding their snapshots) for the whole run;
//   mode thread: one FAULT request parks a server worker thread inside a reclaimer guard
//                for the whole run (the server must run with --enable-fault-injection).
// Meanwhile an update load (`rate` puts per second, uniform over `keys` keys) runs, and the
// server's counters (live versions, unreclaimed objects = reclaimer retired - reclaimed,
// approximate bytes) and its RSS (from /proc/PID/status when --server-pid is given) are
// sampled every interval into a CSV file, plotted with gnuplot when --png is given and
// gnuplot is installed. A last sample is taken one interval after the stall ends.
#pragma once

#include "options.hpp"

namespace kv::bench {

// Returns the process exit code (0 success, 1 the run failed).
[[nodiscard]] int run_stall(const StallOptions& options);

}  // namespace kv::bench
