// kovan-bench: the load generator of Kovan KV (see src/options.hpp for the commands).
#include <unistd.h>

#include <cstdio>
#include <fstream>
#include <iostream>
#include <string>
#include <vector>

#include "engine.hpp"
#include "options.hpp"
#include "report.hpp"
#include "stall.hpp"
#include "watch_bench.hpp"

namespace {

using namespace kv::bench;

int run_command(const RunOptions& o) {
  const bool tty = o.progress && ::isatty(STDERR_FILENO) == 1;
  LoadConfig cfg;
  cfg.target = o.target;
  cfg.mix = o.mix;
  cfg.records = o.records;
  cfg.value_size = o.value_size;
  cfg.connections = o.connections;
  cfg.threads = o.threads;
  cfg.pipeline = o.pipeline;
  cfg.seed = o.seed;
  cfg.txn_keys = o.txn_keys;

  if (o.load) {
    LoadConfig load = cfg;
    load.load_mode = true;
    load.duration_s = o.load_timeout_s;
    if (tty)
      std::fprintf(stderr, "loading %llu records...\n", static_cast<unsigned long long>(o.records));
    const LoadResult l = run_load(load);
    if (!l.connected) {
      std::cerr << "kovan-bench: " << l.error << "\n";
      return 1;
    }
    if (l.errors_total() != 0 || l.ops < o.records) {
      std::cerr << "kovan-bench: loading stored " << l.ops << " of " << o.records << " records ("
                << l.errors_total() << " errors)\n";
      return 1;
    }
  }

  cfg.rate = o.rate;
  cfg.duration_s = o.duration_s;
  cfg.warmup_s = o.warmup_s;
  auto progress = [&](const SecondStats& s) {
    if (tty) std::fprintf(stderr, "\r%s   ", format_progress(s).c_str());
  };
  const LoadResult r = run_load(cfg, progress);
  if (tty) std::fprintf(stderr, "\n");
  if (!r.connected) {
    std::cerr << "kovan-bench: " << r.error << "\n";
    return 1;
  }
  if (!o.quiet) std::cout << format_table(o, r);
  if (!o.json_path.empty()) {
    std::ofstream f(o.json_path);
    f << format_json(o, r);
    if (!f) {
      std::cerr << "kovan-bench: cannot write " << o.json_path << "\n";
      return 1;
    }
  }
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  const std::vector<std::string> args(argv, argv + argc);
  if (args.size() >= 2 && args[1] == "watch") return run_watch_bench(args);
  const ParsedArgs parsed = parse_args(args);
  if (parsed.exit_code >= 0) {
    std::fputs(parsed.message.c_str(), parsed.exit_code == 0 ? stdout : stderr);
    return parsed.exit_code;
  }
  switch (parsed.command) {
    case ParsedArgs::Command::kRun:
      return run_command(parsed.run);
    case ParsedArgs::Command::kStall:
      return run_stall(parsed.stall);
    case ParsedArgs::Command::kNone:
      break;
  }
  return 2;
}
