// Stalled-transaction run: one transaction takes a snapshot (begin + one read) and then
// stays idle while writer threads update K keys round-robin for N seconds. Once a second
// the engine's live versions and the process RSS are printed, first for GC policy
// `interval` and then for `watermark`, each on its own Engine.
//
// Expected shape: interval keeps each key's newest version plus the one the snapshot sees
// (<= 2K versions); watermark keeps every version newer than the snapshot, so it grows
// linearly with the number of updates.
#include <atomic>
#include <chrono>
#include <cstdio>
#include <fstream>
#include <latch>
#include <thread>

#include <storage/engine.hpp>

#include "store.hpp"

namespace kv::bench {
namespace {

struct StallConfig {
  std::uint64_t keys = 1000;
  int writers = 1;
  int seconds = 10;
  std::size_t value_size = 100;
  std::string csv;
};

const char* kStallUsage =
    "kovan-engine-bench stall [--keys K] [--writers W] [--seconds N] [--value-size B]"
    " [--csv FILE]\n";

bool parse(const std::vector<std::string>& args, StallConfig& c) {
  for (std::size_t i = 0; i < args.size(); ++i) {
    const std::string& a = args[i];
    if (a == "--help" || i + 1 >= args.size()) return false;
    const std::string& v = args[++i];
    if (a == "--keys") {
      c.keys = std::stoull(v);
    } else if (a == "--writers") {
      c.writers = std::stoi(v);
    } else if (a == "--seconds") {
      c.seconds = std::stoi(v);
    } else if (a == "--value-size") {
      c.value_size = std::stoull(v);
    } else if (a == "--csv") {
      c.csv = v;
    } else {
      return false;
    }
  }
  return c.keys > 0 && c.writers > 0 && c.seconds > 0;
}

std::string stall_key(std::uint64_t n) {
  char buf[32];
  std::snprintf(buf, sizeof(buf), "k%010llu", static_cast<unsigned long long>(n));
  return buf;
}

// Returns false if the stalled transaction did not stay active for the whole run.
bool run_policy(const StallConfig& cfg, storage::GcPolicy policy, std::ofstream& csv) {
  const char* pname = policy == storage::GcPolicy::kInterval ? "interval" : "watermark";
  storage::Options opts;
  opts.gc_policy = policy;
  opts.txn_timeout = std::chrono::seconds(cfg.seconds + 60);  // the stall must not expire
  storage::Engine engine(opts);
  const std::string value(cfg.value_size, 'v');
  for (std::uint64_t k = 0; k < cfg.keys; ++k) {
    if (!engine.put(stall_key(k), value).ok()) return false;
  }
  auto txn = engine.begin(storage::Isolation::kSnapshot);
  if (!txn.ok()) return false;
  if (!txn->get(stall_key(0)).ok()) return false;  // the snapshot is taken and used

  std::atomic<bool> stop{false};
  std::atomic<std::uint64_t> updates{0};
  std::latch ready(cfg.writers + 1);
  std::vector<std::thread> writers;
  for (int w = 0; w < cfg.writers; ++w) {
    writers.emplace_back([&, w] {
      std::uint64_t k = static_cast<std::uint64_t>(w);
      ready.arrive_and_wait();
      // Relaxed: `stop` and `updates` carry no data; they only end the loop and count.
      while (!stop.load(std::memory_order_relaxed)) {
        if (engine.put(stall_key(k % cfg.keys), value).ok()) {
          updates.fetch_add(1, std::memory_order_relaxed);
        }
        k += static_cast<std::uint64_t>(cfg.writers);
      }
    });
  }
  ready.arrive_and_wait();
  const auto t0 = std::chrono::steady_clock::now();
  for (int s = 1; s <= cfg.seconds; ++s) {
    std::this_thread::sleep_until(t0 + std::chrono::seconds(s));
    const auto st = engine.stats();
    const std::uint64_t rss = rss_bytes();
    const std::uint64_t ups = updates.load(std::memory_order_relaxed);
    std::printf("%-9s %4d %12llu %14llu %10.1f %12llu\n", pname, s,
                static_cast<unsigned long long>(ups),
                static_cast<unsigned long long>(st.live_versions),
                static_cast<double>(rss) / (1024.0 * 1024.0),
                static_cast<unsigned long long>(st.active_txns));
    std::fflush(stdout);
    if (csv.is_open()) {
      csv << pname << ',' << s << ',' << cfg.keys << ',' << ups << ',' << st.live_versions << ','
          << rss << ',' << st.active_txns << '\n';
    }
  }
  stop.store(true, std::memory_order_relaxed);
  for (auto& th : writers) th.join();
  const bool still_active = txn->active();
  static_cast<void>(txn->abort());
  return still_active;
}

}  // namespace

int run_stall(const std::vector<std::string>& args) {
  StallConfig cfg;
  if (!parse(args, cfg)) {
    std::fputs(kStallUsage, stderr);
    return 2;
  }
  std::ofstream csv;
  if (!cfg.csv.empty()) {
    csv.open(cfg.csv);
    csv << "policy,second,keys,updates,live_versions,rss_bytes,active_txns\n";
  }
  std::printf("# keys %llu, writers %d, %d s per policy, 2K = %llu\n",
              static_cast<unsigned long long>(cfg.keys), cfg.writers, cfg.seconds,
              static_cast<unsigned long long>(2 * cfg.keys));
  std::printf("%-9s %4s %12s %14s %10s %12s\n", "policy", "sec", "updates", "live_versions",
              "rss_MiB", "active_txns");
  int rc = 0;
  for (auto p : {storage::GcPolicy::kInterval, storage::GcPolicy::kWatermark}) {
    if (!run_policy(cfg, p, csv)) {
      std::fprintf(stderr, "stalled transaction did not stay active (or setup failed)\n");
      rc = 1;
    }
  }
  return rc;
}

}  // namespace kv::bench
