// YCSB core workloads A-F run in-process against every store, side by side in one run.
//
// Keys are "user" plus the record number zero-padded to 12 digits, so key order is record
// order and a scan of `len` records from record r is the range [key(r), key(r + len)).
// Request distributions: zipfian with constant 0.99 (Gray et al., "Quickly generating
// billion-record synthetic databases", as YCSB does, with the rank scrambled by a hash so
// hot keys are spread over the key space), uniform, and for D "latest" (the newest records
// are the hottest). Read-modify-write (F) is a read followed by a write of the same key, as
// the YCSB client issues it. Workload U (updates only) is an extra, for the per-core
// update rate; it runs only when asked for.
#include <algorithm>
#include <atomic>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <fstream>
#include <latch>
#include <random>
#include <sstream>
#include <thread>

#include "store.hpp"

namespace kv::bench {
namespace {

std::string make_key(std::uint64_t n) {
  char buf[32];
  std::snprintf(buf, sizeof(buf), "user%012llu", static_cast<unsigned long long>(n));
  return buf;
}

std::uint64_t fnv64(std::uint64_t v) {
  std::uint64_t h = 0xcbf29ce484222325ULL;
  for (int i = 0; i < 8; ++i) {
    h ^= v & 0xff;
    h *= 0x100000001b3ULL;
    v >>= 8;
  }
  return h;
}

// Zipfian ranks in [0, n) after Gray et al.; zeta(n) is computed once (O(n)).
class Zipfian {
 public:
  Zipfian(std::uint64_t n, double theta) : n_(n), theta_(theta) {
    for (std::uint64_t i = 1; i <= n; ++i) zetan_ += 1.0 / std::pow(static_cast<double>(i), theta);
    const double zeta2 = 1.0 + 1.0 / std::pow(2.0, theta);
    alpha_ = 1.0 / (1.0 - theta);
    eta_ = (1.0 - std::pow(2.0 / static_cast<double>(n), 1.0 - theta)) / (1.0 - zeta2 / zetan_);
    half_pow_ = 1.0 + std::pow(0.5, theta);
  }
  std::uint64_t next(double u) const {
    const double uz = u * zetan_;
    if (uz < 1.0) return 0;
    if (uz < half_pow_) return 1;
    const auto r = static_cast<std::uint64_t>(static_cast<double>(n_) *
                                              std::pow(eta_ * u - eta_ + 1.0, alpha_));
    return std::min(r, n_ - 1);
  }

 private:
  std::uint64_t n_;
  double theta_;
  double zetan_ = 0.0;
  double alpha_ = 0.0;
  double eta_ = 0.0;
  double half_pow_ = 0.0;
};

struct Workload {
  char name;
  double read, update, insert, scan, rmw;
  bool latest;  // request distribution "latest" (D)
};

constexpr Workload kWorkloads[] = {
    {'A', 0.50, 0.50, 0.0, 0.0, 0.0, false}, {'B', 0.95, 0.05, 0.0, 0.0, 0.0, false},
    {'C', 1.00, 0.00, 0.0, 0.0, 0.0, false}, {'F', 0.50, 0.00, 0.0, 0.0, 0.50, false},
    {'D', 0.95, 0.00, 0.05, 0.0, 0.0, true}, {'E', 0.00, 0.00, 0.05, 0.95, 0.0, false},
    {'U', 0.00, 1.00, 0.0, 0.0, 0.0, false},  // not YCSB: updates only, run when asked for
};

struct Config {
  std::uint64_t records = 100000;
  std::size_t value_size = 100;
  std::vector<int> threads{1, 2};
  double seconds = 2.0;
  // When set: each thread runs exactly this many operations instead of running for
  // `seconds` (deterministic work, for instruction counts under callgrind).
  std::uint64_t ops = 0;
  long long watch_history = -1;  // the engine's watch history bytes (-1: its default, 64 MiB)
  std::string workloads = "ABCFDE";
  std::vector<std::string> dists{"zipfian", "uniform"};
  std::vector<std::string> stores{"engine", "map", "cds"};
  std::size_t max_scan = 100;
  std::string csv;
};

std::vector<std::string> split(const std::string& s) {
  std::vector<std::string> out;
  std::stringstream ss(s);
  std::string item;
  while (std::getline(ss, item, ',')) {
    if (!item.empty()) out.push_back(item);
  }
  return out;
}

const char* kUsage =
    "kovan-engine-bench ycsb [--records N] [--value-size B] [--threads 1,2] [--seconds S]\n"
    "    [--workloads ABCFDE] [--dists zipfian,uniform] [--stores engine,map,cds]\n"
    "    [--max-scan N] [--csv FILE] [--ops N (per thread, instead of --seconds)]\n"
    "    [--watch-history BYTES (engine; default 64 MiB, 0: no watch feed)]\n";

bool parse(const std::vector<std::string>& args, Config& c) {
  for (std::size_t i = 0; i < args.size(); ++i) {
    const std::string& a = args[i];
    if (a == "--help") return false;
    if (i + 1 >= args.size()) return false;
    const std::string& v = args[++i];
    if (a == "--records") {
      c.records = std::stoull(v);
    } else if (a == "--value-size") {
      c.value_size = std::stoull(v);
    } else if (a == "--threads") {
      c.threads.clear();
      for (const auto& t : split(v)) c.threads.push_back(std::stoi(t));
    } else if (a == "--seconds") {
      c.seconds = std::stod(v);
    } else if (a == "--workloads") {
      c.workloads = v;
    } else if (a == "--dists") {
      c.dists = split(v);
    } else if (a == "--stores") {
      c.stores = split(v);
    } else if (a == "--max-scan") {
      c.max_scan = std::stoull(v);
    } else if (a == "--watch-history") {
      c.watch_history = std::stoll(v);
    } else if (a == "--ops") {
      c.ops = std::stoull(v);
    } else if (a == "--csv") {
      c.csv = v;
    } else {
      return false;
    }
  }
  return c.records >= 2 && !c.threads.empty() && c.seconds > 0;
}

struct Shared {
  const Config* cfg;
  const Zipfian* zipf;
  std::atomic<std::uint64_t> next_record;  // records [0, next_record) exist or are inserting
};

// Runs one (workload, distribution, thread count) cell on one store; returns ops/s.
double run_cell(Store& store, const Workload& w, bool uniform, int threads, Shared& sh) {
  std::atomic<bool> stop{false};
  std::vector<std::uint64_t> ops(static_cast<std::size_t>(threads), 0);
  std::latch ready(threads + 1);
  std::vector<std::thread> pool;
  const std::string value(sh.cfg->value_size, 'v');
  for (int t = 0; t < threads; ++t) {
    pool.emplace_back([&, t] {
      store.thread_enter();
      std::mt19937_64 rng(0x9e3779b97f4a7c15ULL * static_cast<std::uint64_t>(t + 1) +
                          static_cast<std::uint64_t>(w.name));
      std::uniform_real_distribution<double> u01(0.0, 1.0);
      std::string out;
      std::uint64_t n = 0;
      auto pick = [&]() -> std::uint64_t {
        // Relaxed: the record count only sizes the key choice; a key not yet inserted reads
        // as absent, which YCSB tolerates as well.
        const std::uint64_t count = sh.next_record.load(std::memory_order_relaxed);
        if (uniform)
          return static_cast<std::uint64_t>(u01(rng) * static_cast<double>(count)) % count;
        const std::uint64_t rank = sh.zipf->next(u01(rng));
        if (w.latest) return count - 1 - std::min(rank, count - 1);
        return fnv64(rank) % count;
      };
      ready.arrive_and_wait();
      // Relaxed: `stop` carries no data; the per-thread counts are read after join().
      const std::uint64_t fixed = sh.cfg->ops;
      while (fixed != 0 ? n < fixed : !stop.load(std::memory_order_relaxed)) {
        const double op = u01(rng);
        if (op < w.read) {
          static_cast<void>(store.read(make_key(pick()), out));
        } else if (op < w.read + w.update) {
          store.write(make_key(pick()), value);
        } else if (op < w.read + w.update + w.insert) {
          const std::uint64_t r = sh.next_record.fetch_add(1, std::memory_order_relaxed);
          store.write(make_key(r), value);
        } else if (op < w.read + w.update + w.insert + w.scan) {
          const std::uint64_t start = pick();
          const std::size_t len =
              1 + static_cast<std::size_t>(u01(rng) * static_cast<double>(sh.cfg->max_scan)) %
                      sh.cfg->max_scan;
          static_cast<void>(store.scan(make_key(start), make_key(start + len), len));
        } else {
          const std::string k = make_key(pick());
          static_cast<void>(store.read(k, out));
          store.write(k, value);
        }
        ++n;
      }
      ops[static_cast<std::size_t>(t)] = n;
      store.thread_exit();
    });
  }
  ready.arrive_and_wait();
  const auto t0 = std::chrono::steady_clock::now();
  if (sh.cfg->ops == 0) std::this_thread::sleep_for(std::chrono::duration<double>(sh.cfg->seconds));
  stop.store(true, std::memory_order_relaxed);
  for (auto& th : pool) th.join();
  const double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  std::uint64_t total = 0;
  for (auto n : ops) total += n;
  return static_cast<double>(total) / secs;
}

struct Loaded {
  std::unique_ptr<Store> store;
  std::unique_ptr<Shared> shared;
  double rss_per_key = 0.0;
  double stats_per_key = 0.0;
};

}  // namespace

int run_ycsb(const std::vector<std::string>& args) {
  Config cfg;
  if (!parse(args, cfg)) {
    std::fputs(kUsage, stderr);
    return 2;
  }
  std::printf("# computing zeta(%llu, 0.99)...\n", static_cast<unsigned long long>(cfg.records));
  const Zipfian zipf(cfg.records, 0.99);
  const std::string value(cfg.value_size, 'v');

  std::vector<Loaded> loaded;
  for (const auto& s : cfg.stores) {
    Loaded l;
    const std::uint64_t rss0 = rss_bytes();
    if (s == "engine") {
      l.store = make_engine_store(cfg.watch_history);
    } else if (s == "map") {
      l.store = make_map_store();
    } else if (s == "cds") {
      l.store = make_cds_store();
      if (!l.store) {
        std::printf("# libcds not built in; store 'cds' skipped\n");
        continue;
      }
    } else {
      std::fprintf(stderr, "unknown store '%s'\n", s.c_str());
      return 2;
    }
    const auto load0 = std::chrono::steady_clock::now();
    for (std::uint64_t r = 0; r < cfg.records; ++r) l.store->write(make_key(r), value);
    const double load_s =
        std::chrono::duration<double>(std::chrono::steady_clock::now() - load0).count();
    const std::uint64_t rss1 = rss_bytes();
    l.rss_per_key =
        static_cast<double>(rss1 - std::min(rss0, rss1)) / static_cast<double>(cfg.records);
    l.stats_per_key = l.store->bytes_per_key();
    l.shared = std::make_unique<Shared>();
    l.shared->cfg = &cfg;
    l.shared->zipf = &zipf;
    l.shared->next_record.store(cfg.records, std::memory_order_relaxed);
    std::printf(
        "# loaded %-22s %llu records: %.0f B/key (RSS growth), %.0f B/key (%s); load %.0f "
        "inserts/s (1 thread)\n",
        std::string(l.store->name()).c_str(), static_cast<unsigned long long>(cfg.records),
        l.rss_per_key, l.stats_per_key,
        s == "engine" ? "EngineStats::bytes/keys"
        : s == "map"  ? "size estimate"
                      : "n/a",
        static_cast<double>(cfg.records) / load_s);
    loaded.push_back(std::move(l));
  }

  std::ofstream csv;
  if (!cfg.csv.empty()) {
    csv.open(cfg.csv);
    csv << "workload,dist,threads,store,ops_per_s,rss_bytes_per_key,store_bytes_per_key\n";
  }
  std::printf("%-8s %-8s %-7s %-22s %14s\n", "workload", "dist", "threads", "store", "ops/s");
  for (char wn : cfg.workloads) {
    const Workload* w = nullptr;
    for (const auto& cand : kWorkloads) {
      if (cand.name == wn) w = &cand;
    }
    if (w == nullptr) continue;
    for (const auto& dist : cfg.dists) {
      const bool uniform = dist == "uniform";
      // D's distribution is "latest" whatever --dists says; run it once.
      if (w->latest && &dist != &cfg.dists.front()) continue;
      const std::string dname = w->latest ? "latest" : dist;
      for (int th : cfg.threads) {
        for (auto& l : loaded) {
          if (w->scan > 0 && !l.store->supports_scan()) {
            std::printf("%-8c %-8s %-7d %-22s %14s\n", w->name, dname.c_str(), th,
                        std::string(l.store->name()).c_str(), "n/a");
            continue;
          }
          const double rate = run_cell(*l.store, *w, uniform, th, *l.shared);
          std::printf("%-8c %-8s %-7d %-22s %14.0f\n", w->name, dname.c_str(), th,
                      std::string(l.store->name()).c_str(), rate);
          std::fflush(stdout);
          if (csv.is_open()) {
            csv << w->name << ',' << dname << ',' << th << ',' << l.store->name() << ','
                << static_cast<std::uint64_t>(rate) << ',' << l.rss_per_key << ','
                << l.stats_per_key << '\n';
          }
        }
      }
    }
  }
  return 0;
}

}  // namespace kv::bench
