// kovan-engine-bench: in-process benchmarks of the Kovan KV storage engine.
//   kovan-engine-bench ycsb  [options]   YCSB A-F against the engine and two baselines
//   kovan-engine-bench stall [options]   live versions and RSS under a stalled transaction
// Run a command with --help for its options.
#include <cstdio>
#include <fstream>
#include <string>
#include <vector>

#include <unistd.h>

#include "store.hpp"

namespace kv::bench {

std::uint64_t rss_bytes() {
  std::ifstream in("/proc/self/statm");
  std::uint64_t size = 0;
  std::uint64_t resident = 0;
  if (!(in >> size >> resident)) return 0;
  const long page = sysconf(_SC_PAGESIZE);
  return resident * static_cast<std::uint64_t>(page > 0 ? page : 4096);
}

#ifndef KV_BENCH_HAVE_CDS
std::unique_ptr<Store> make_cds_store() { return nullptr; }
#endif

}  // namespace kv::bench

int main(int argc, char** argv) {
  std::vector<std::string> args(argv + 1, argv + argc);
  if (args.empty() || (args[0] != "ycsb" && args[0] != "stall")) {
    std::fprintf(stderr,
                 "usage: kovan-engine-bench ycsb|stall [options]  (--help for the options)\n");
    return 2;
  }
  const std::string cmd = args[0];
  args.erase(args.begin());
  return cmd == "ycsb" ? kv::bench::run_ycsb(args) : kv::bench::run_stall(args);
}
