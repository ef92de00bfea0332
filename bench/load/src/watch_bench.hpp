// kovan-bench watch: the cost and the delivery rate of watches (docs/BENCHMARKS.md,
// "Watch"). For each watcher count, writers put keys under one prefix as fast as they can
// for a fixed time while that many watches follow the prefix; it reports the writes per
// second and the events per second delivered to all the watchers together (each write is
// one event per watcher), next to a run without watchers.
//
//   kovan-bench watch --target kovan://127.0.0.1:7379 --watchers 0,1,100,10000 --duration 10
#pragma once

#include <string>
#include <vector>

namespace kv::bench {

// Runs `kovan-bench watch ARGS...` (args[0] is the program name, args[1] "watch"). Returns
// the process exit code: 0, 1 when the run failed, 2 for bad arguments.
int run_watch_bench(const std::vector<std::string>& args);

}  // namespace kv::bench
