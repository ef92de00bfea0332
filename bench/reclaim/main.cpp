// kovan-reclaim-bench: throughput and unreclaimed objects of kovan, liburcu (memb, qsbr),
// xenium (EBR, HP, HE) and no reclamation, on a Treiber stack and a hash map, in one run.
//
// Two modes:
//   matrix (default)  every (repeat, structure, mix, threads, stall) cell runs every scheme
//                     back to back (A B C ... A B C ...), one CSV row per run
//   --timeseries F    one run per scheme with a stalled thread, sampled over time, written
//                     to F; the run stops after --ts-retired retirements or --ts-seconds
//
// The CSV rows are described in docs/BENCHMARKS.md.
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <string_view>
#include <vector>

#include "harness.hpp"

namespace reclaim_bench {

std::array<CounterBlock, kMaxCounterBlocks> Counters::blocks_{};
std::atomic<int> Counters::high_water_{0};

CounterBlock* Counters::claim() noexcept {
  for (int i = 0; i < kMaxCounterBlocks; ++i) {
    bool expected = false;
    // acquire: pairs with the release in ~Holder of the block's previous owner.
    if (blocks_[static_cast<std::size_t>(i)].in_use.compare_exchange_strong(
            expected, true, std::memory_order_acquire, std::memory_order_relaxed)) {
      int hw = high_water_.load(std::memory_order_relaxed);
      // relaxed: the mark only bounds the readers' scan; a reader that misses a brand-new
      // block misses counts that are still zero.
      while (hw < i + 1 &&
             !high_water_.compare_exchange_weak(hw, i + 1, std::memory_order_relaxed)) {
      }
      return &blocks_[static_cast<std::size_t>(i)];
    }
  }
  std::fprintf(stderr, "kovan-reclaim-bench: more than %d threads at once\n", kMaxCounterBlocks);
  std::abort();
}

std::uint64_t Counters::sum(int scheme, bool retired) noexcept {
  const int hw = high_water_.load(std::memory_order_relaxed);
  std::uint64_t total = 0;
  for (int i = 0; i < hw; ++i) {
    const CounterBlock& b = blocks_[static_cast<std::size_t>(i)];
    const auto& c = retired ? b.retired : b.destroyed;
    total += c[static_cast<std::size_t>(scheme)].load(std::memory_order_relaxed);
  }
  return total;
}

namespace {

struct Scheme {
  const char* name;
  RunFn fn;
};

constexpr Scheme kSchemes[] = {
    {"kovan", &run_kovan},         {"xenium-ebr", &run_xenium_ebr}, {"xenium-hp", &run_xenium_hp},
    {"xenium-he", &run_xenium_he}, {"urcu-memb", &run_urcu_memb},   {"urcu-qsbr", &run_urcu_qsbr},
    {"leak", &run_leak},
};

std::vector<std::string> split(const std::string& s) {
  std::vector<std::string> out;
  std::size_t pos = 0;
  while (pos <= s.size()) {
    const std::size_t comma = s.find(',', pos);
    const std::size_t end = comma == std::string::npos ? s.size() : comma;
    if (end > pos) out.push_back(s.substr(pos, end - pos));
    pos = end + 1;
  }
  return out;
}

std::vector<int> split_ints(const std::string& s) {
  std::vector<int> out;
  for (const auto& t : split(s)) out.push_back(std::atoi(t.c_str()));
  return out;
}

void usage() {
  std::fprintf(stderr,
               "usage: kovan-reclaim-bench [options]\n"
               "  --schemes LIST      kovan,xenium-ebr,xenium-hp,xenium-he,urcu-memb,urcu-qsbr,leak"
               " (default: all)\n"
               "  --ds LIST           stack,map (default: both)\n"
               "  --mix LIST          read,write: 90%% or 50%% reads (default: both)\n"
               "  --threads LIST      worker threads (default: 1,2,4,8)\n"
               "  --stall LIST        0,1: without / with one stalled thread (default: 0,1)\n"
               "  --seconds S         seconds per run (default: 1)\n"
               "  --repeat N          repetitions of the whole matrix (default: 1)\n"
               "  --key-range N       map keys (default: 65536; half are present)\n"
               "  --csv FILE          write the matrix CSV here (default: stdout)\n"
               "  --timeseries FILE   instead of the matrix: stalled-thread time series\n"
               "  --ts-ds LIST --ts-mix M --ts-threads N --ts-seconds S --ts-retired N"
               " --sample-ms MS\n");
}

}  // namespace
}  // namespace reclaim_bench

int main(int argc, char** argv) {
  using namespace reclaim_bench;
  std::vector<std::string> schemes;
  for (const auto& s : kSchemes) schemes.emplace_back(s.name);
  std::vector<std::string> dss = {"stack", "map"};
  std::vector<std::string> mixes = {"read", "write"};
  std::vector<int> threads = {1, 2, 4, 8};
  std::vector<int> stalls = {0, 1};
  double seconds = 1.0;
  int repeat = 1;
  std::uint64_t key_range = 65536;
  std::string csv_path;
  std::string ts_path;
  std::string ts_ds = "stack";
  std::string ts_mix = "write";
  int ts_threads = 2;
  double ts_seconds = 10.0;
  std::uint64_t ts_retired = 10'000'000;
  int sample_ms = 10;

  for (int i = 1; i < argc; ++i) {
    const std::string_view a = argv[i];
    auto value = [&]() -> std::string {
      if (i + 1 >= argc) {
        usage();
        std::exit(2);
      }
      return argv[++i];
    };
    if (a == "--schemes")
      schemes = split(value());
    else if (a == "--ds")
      dss = split(value());
    else if (a == "--mix")
      mixes = split(value());
    else if (a == "--threads")
      threads = split_ints(value());
    else if (a == "--stall")
      stalls = split_ints(value());
    else if (a == "--seconds")
      seconds = std::atof(value().c_str());
    else if (a == "--repeat")
      repeat = std::atoi(value().c_str());
    else if (a == "--key-range")
      key_range = std::strtoull(value().c_str(), nullptr, 10);
    else if (a == "--csv")
      csv_path = value();
    else if (a == "--timeseries")
      ts_path = value();
    else if (a == "--ts-ds")
      ts_ds = value();
    else if (a == "--ts-mix")
      ts_mix = value();
    else if (a == "--ts-threads")
      ts_threads = std::atoi(value().c_str());
    else if (a == "--ts-seconds")
      ts_seconds = std::atof(value().c_str());
    else if (a == "--ts-retired")
      ts_retired = std::strtoull(value().c_str(), nullptr, 10);
    else if (a == "--sample-ms")
      sample_ms = std::atoi(value().c_str());
    else {
      usage();
      return a == "--help" || a == "-h" ? 0 : 2;
    }
  }

  std::vector<const Scheme*> chosen;
  for (const auto& name : schemes) {
    const Scheme* found = nullptr;
    for (const auto& s : kSchemes)
      if (name == s.name) found = &s;
    if (found == nullptr) {
      std::fprintf(stderr, "unknown scheme '%s'\n", name.c_str());
      return 2;
    }
    chosen.push_back(found);
  }
  auto parse_ds = [](const std::string& d) { return d == "stack" ? Ds::kStack : Ds::kMap; };
  auto parse_mix = [](const std::string& m) { return m == "write" ? 50 : 90; };

  const std::string& out_path = ts_path.empty() ? csv_path : ts_path;
  std::FILE* out = out_path.empty() ? stdout : std::fopen(out_path.c_str(), "w");
  if (out == nullptr) {
    std::perror(out_path.c_str());
    return 1;
  }
  std::uint64_t errors = 0;

  if (!ts_path.empty()) {
    std::fprintf(out, "scheme,ds,mix,threads,t_s,retired,unreclaimed\n");
    for (const auto& d : split(ts_ds))
      for (const Scheme* s : chosen) {
        RunConfig cfg;
        cfg.ds = parse_ds(d);
        cfg.read_pct = parse_mix(ts_mix);
        cfg.threads = ts_threads;
        cfg.stall = true;
        cfg.seconds = ts_seconds;
        cfg.max_retired = ts_retired;
        cfg.sample_ms = sample_ms;
        cfg.key_range = key_range;
        const RunResult r = s->fn(cfg);
        errors += r.errors;
        for (const Sample& p : r.series)
          std::fprintf(out, "%s,%s,%s,%d,%.4f,%llu,%llu\n", s->name, d.c_str(), ts_mix.c_str(),
                       ts_threads, p.t, static_cast<unsigned long long>(p.retired),
                       static_cast<unsigned long long>(p.unreclaimed));
        std::fflush(out);
        std::fprintf(stderr, "timeseries %-5s %-10s %.2fs retired=%llu max_unreclaimed=%llu\n",
                     d.c_str(), s->name, r.seconds, static_cast<unsigned long long>(r.retired),
                     static_cast<unsigned long long>(r.max_unreclaimed));
      }
  } else {
    std::fprintf(out,
                 "run,scheme,ds,mix,threads,stall,seconds,ops,mops,avg_unreclaimed,"
                 "max_unreclaimed,retired,errors\n");
    for (int rep = 0; rep < repeat; ++rep)
      for (const auto& d : dss)
        for (const auto& m : mixes)
          for (int t : threads)
            for (int st : stalls)
              for (const Scheme* s : chosen) {
                RunConfig cfg;
                cfg.ds = parse_ds(d);
                cfg.read_pct = parse_mix(m);
                cfg.threads = t;
                cfg.stall = st != 0;
                cfg.seconds = seconds;
                cfg.sample_ms = sample_ms;
                cfg.key_range = key_range;
                const RunResult r = s->fn(cfg);
                errors += r.errors;
                const double mops = static_cast<double>(r.ops) / r.seconds / 1e6;
                std::fprintf(out, "%d,%s,%s,%s,%d,%d,%.3f,%llu,%.3f,%.1f,%llu,%llu,%llu\n", rep,
                             s->name, d.c_str(), m.c_str(), t, st, r.seconds,
                             static_cast<unsigned long long>(r.ops), mops, r.avg_unreclaimed,
                             static_cast<unsigned long long>(r.max_unreclaimed),
                             static_cast<unsigned long long>(r.retired),
                             static_cast<unsigned long long>(r.errors));
                std::fflush(out);
                std::fprintf(stderr,
                             "%d %-10s %-5s %-5s t=%d stall=%d %8.3f Mops/s avg_unrec=%.0f\n", rep,
                             s->name, d.c_str(), m.c_str(), t, st, mops, r.avg_unreclaimed);
              }
  }
  if (out != stdout) std::fclose(out);
  if (errors != 0) {
    std::fprintf(stderr, "kovan-reclaim-bench: %llu reads saw a destroyed node\n",
                 static_cast<unsigned long long>(errors));
    return 1;
  }
  return 0;
}
