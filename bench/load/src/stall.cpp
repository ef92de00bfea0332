#include "stall.hpp"

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <future>
#include <iostream>
#include <mutex>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "client/client.hpp"
#include "engine.hpp"

namespace kv::bench {

namespace {

using kv::client::Client;
using SteadyClock = std::chrono::steady_clock;

struct Sample {
  double t_s = 0;
  std::string phase;
  std::uint64_t live_versions = 0;
  std::uint64_t keys = 0;
  std::uint64_t bytes = 0;
  std::uint64_t unreclaimed = 0;
  std::uint64_t rss_kb = 0;
  std::uint64_t active_txns = 0;
  std::uint64_t oldest_snapshot_age_ms = 0;
  std::uint64_t versions_pruned = 0;
  std::uint64_t commits = 0;
};

std::uint64_t rss_kb(std::int64_t pid) {
  if (pid <= 0) return 0;
  std::ifstream f("/proc/" + std::to_string(pid) + "/status");
  std::string line;
  while (std::getline(f, line)) {
    if (line.rfind("VmRSS:", 0) == 0) return std::strtoull(line.c_str() + 6, nullptr, 10);
  }
  return 0;
}

bool take_sample(Client& c, std::int64_t pid, double t, const char* phase, Sample& s,
                 std::string& error) {
  auto st = c.stats();
  if (!st.ok()) {
    error = "stats: " + st.status().to_string();
    return false;
  }
  const auto& v = st.value();
  auto get = [&](const char* n) { return v.get(n).value_or(0); };
  s.t_s = t;
  s.phase = phase;
  s.live_versions = get("live_versions");
  s.keys = get("keys");
  s.bytes = get("bytes");
  const std::uint64_t retired = get("reclaimer_retired");
  const std::uint64_t reclaimed = get("reclaimer_reclaimed");
  s.unreclaimed = retired > reclaimed ? retired - reclaimed : 0;
  s.rss_kb = rss_kb(pid);
  s.active_txns = get("active_txns");
  s.oldest_snapshot_age_ms = get("oldest_snapshot_age_ms");
  s.versions_pruned = get("versions_pruned");
  s.commits = get("commits");
  return true;
}

void write_csv(const std::string& path, const std::vector<Sample>& samples) {
  std::ofstream f(path);
  f << "t_s,phase,live_versions,keys,bytes,unreclaimed,rss_kb,active_txns,"
       "oldest_snapshot_age_ms,versions_pruned,commits\n";
  for (const auto& s : samples) {
    char t[32];
    std::snprintf(t, sizeof t, "%.2f", s.t_s);
    f << t << ',' << s.phase << ',' << s.live_versions << ',' << s.keys << ',' << s.bytes << ','
      << s.unreclaimed << ',' << s.rss_kb << ',' << s.active_txns << ',' << s.oldest_snapshot_age_ms
      << ',' << s.versions_pruned << ',' << s.commits << '\n';
  }
}

void plot(const StallOptions& o) {
  if (o.png_path.empty()) return;
  if (std::system("command -v gnuplot >/dev/null 2>&1") != 0) {
    std::cerr << "kovan-bench: gnuplot not found; no plot written\n";
    return;
  }
  const std::string script = o.png_path + ".gp";
  {
    std::ofstream g(script);
    g << "set terminal pngcairo size 900,500 noenhanced\n"
      << "set output '" << o.png_path << "'\n"
      << "set datafile separator ','\n"
      << "set key below horizontal\n"
      << "set title '" << (o.title.empty() ? "kovan-bench stall (" + o.mode + ")" : o.title)
      << "'\n"
      << "set xlabel 'seconds'\nset ylabel 'count'\nset y2label 'RSS (MiB)'\n"
      << "set ytics nomirror\nset y2tics\nset grid\n"
      << "plot '" << o.csv_path << "' using 1:3 with linespoints title 'live versions', \\\n"
      << "     '' using 1:6 with linespoints title 'unreclaimed objects', \\\n"
      << "     '' using 1:4 with lines dashtype 2 title 'keys', \\\n"
      << "     '' using 1:($7/1024) axes x1y2 with lines lw 2 title 'RSS (MiB)'\n";
  }
  const std::string cmd = "gnuplot '" + script + "'";
  if (std::system(cmd.c_str()) != 0) {
    std::cerr << "kovan-bench: gnuplot failed on " << script << "\n";
  } else {
    std::cout << "plot: " << o.png_path << "\n";
  }
  std::remove(script.c_str());
}

}  // namespace

int run_stall(const StallOptions& o) {
  const std::string address = o.target.host + ":" + std::to_string(o.target.port);
  kv::client::ClientOptions copts;
  copts.tls = o.target.tls;
  copts.tls_ca_file = o.target.tls_ca;
  copts.tls_cert_file = o.target.tls_cert;
  copts.tls_key_file = o.target.tls_key;
  copts.user = o.target.user;
  copts.password = o.target.password;
  copts.request_timeout = std::chrono::milliseconds(static_cast<long long>(o.duration_s * 1000) +
                                                    30000);  // the fault call waits this long

  // Connections for sampling and, in thread mode, for the FAULT request. The server assigns
  // connections to its worker threads round-robin at accept, and accepts on worker 0. The
  // sampler must not share the stalled worker, and the stalled worker must not be worker 0
  // (new connections would no longer be accepted), so: the sampler goes to worker 0 and
  // the fault connection to worker 1, located by counting accepted connections.
  std::vector<std::unique_ptr<Client>> control;
  auto open_control = [&]() -> bool {
    auto c = Client::connect(address, copts);
    if (!c.ok()) {
      std::cerr << "kovan-bench: " << c.status().to_string() << "\n";
      return false;
    }
    control.push_back(std::move(c.value()));
    return true;
  };
  if (!open_control()) return 1;
  Client* sampler_ptr = control.front().get();
  Client* fault_client = nullptr;
  if (o.mode == "thread") {
    auto st = control.front()->stats();
    const auto total = st.ok() ? st.value().get("connections_total") : std::nullopt;
    if (!total || *total == 0) {
      std::cerr << "kovan-bench: the server does not report connections_total\n";
      return 1;
    }
    const std::uint64_t base = *total - 1;  // accept index of control[0]
    const std::uint64_t workers = o.server_threads;
    sampler_ptr = nullptr;
    for (std::uint64_t i = 0; sampler_ptr == nullptr || fault_client == nullptr; ++i) {
      if (i == control.size() && !open_control()) return 1;
      const std::uint64_t worker = (base + i) % workers;
      if (worker == 0 && sampler_ptr == nullptr) sampler_ptr = control[i].get();
      if (worker == 1 && fault_client == nullptr) fault_client = control[i].get();
    }
    auto check = sampler_ptr->stats();
    const auto now_total = check.ok() ? check.value().get("connections_total") : std::nullopt;
    if (!now_total || *now_total != base + control.size()) {
      std::cerr << "kovan-bench: other clients connected meanwhile; cannot place the stalled "
                   "connection (run the thread stall on an otherwise idle server)\n";
      return 1;
    }
    if (auto s = fault_client->fault(0); !s.ok()) {
      std::cerr << "kovan-bench: the server refused FAULT (" << s.to_string()
                << "); start it with --enable-fault-injection\n";
      return 1;
    }
  }
  Client& sampler = *sampler_ptr;

  // Load the keys.
  LoadConfig load;
  load.target = o.target;
  load.records = o.keys;
  load.value_size = o.value_size;
  load.connections = o.connections;
  load.pipeline = o.pipeline;
  load.duration_s = 120;
  load.load_mode = true;
  load.seed = o.seed;
  const LoadResult loaded = run_load(load);
  if (!loaded.connected || loaded.errors_total() != 0) {
    std::cerr << "kovan-bench: loading failed: " << loaded.error << " (" << loaded.errors_total()
              << " errors)\n";
    return 1;
  }

  std::vector<Sample> samples;
  std::string error;
  const auto t0 = SteadyClock::now();
  auto elapsed = [&] { return std::chrono::duration<double>(SteadyClock::now() - t0).count(); };
  Sample s;
  if (!take_sample(sampler, o.server_pid, 0, "before", s, error)) {
    std::cerr << "kovan-bench: " << error << "\n";
    return 1;
  }
  samples.push_back(s);

  // Stall.
  std::vector<std::unique_ptr<Client>> txn_clients;
  std::vector<kv::client::Transaction> txns;
  std::future<kv::client::Result<kv::client::Done>> fault_done;
  if (o.mode == "txn") {
    constexpr std::uint32_t kTxnsPerConnection = 32;  // below the server's default of 64
    for (std::uint32_t i = 0; i < o.txns; ++i) {
      if (i % kTxnsPerConnection == 0) {
        auto c = Client::connect(address, copts);
        if (!c.ok()) {
          std::cerr << "kovan-bench: " << c.status().to_string() << "\n";
          return 1;
        }
        txn_clients.push_back(std::move(c.value()));
      }
      auto t = txn_clients.back()->begin();
      if (!t.ok()) {
        std::cerr << "kovan-bench: begin: " << t.status().to_string() << "\n";
        return 1;
      }
      for (std::uint32_t r = 0; r < o.reads_per_txn; ++r) {
        const std::uint64_t key =
            (static_cast<std::uint64_t>(r) * o.keys) / std::max(o.reads_per_txn, 1u);
        auto got = t.value().get(record_key(key));
        if (!got.ok() && !got.status().is_not_found()) {
          std::cerr << "kovan-bench: read in transaction: " << got.status().to_string() << "\n";
          return 1;
        }
      }
      txns.push_back(std::move(t.value()));
    }
  } else {
    const auto stall_ms = static_cast<std::uint32_t>(o.duration_s * 1000);
    fault_done =
        kv::client::as_future<kv::client::Done>([&](kv::client::Callback<kv::client::Done> cb) {
          fault_client->fault_async(stall_ms, std::move(cb));
        });
  }

  // Sample while the update load runs.
  std::mutex mu;
  std::condition_variable cv;
  bool stop = false;
  std::string sampler_error;
  std::thread sampler_thread([&] {
    const auto start = SteadyClock::now();
    const auto step = std::chrono::duration_cast<SteadyClock::duration>(
        std::chrono::duration<double>(o.interval_s));
    for (int i = 1;; ++i) {
      std::unique_lock lock(mu);
      if (cv.wait_until(lock, start + i * step, [&] { return stop; })) return;
      lock.unlock();
      Sample x;
      if (!take_sample(sampler, o.server_pid, elapsed(), "stall", x, sampler_error)) return;
      lock.lock();
      samples.push_back(x);
    }
  });

  LoadConfig upd;
  upd.target = o.target;
  upd.mix = *workload_mix("set");
  upd.mix.distribution = Distribution::kUniform;
  upd.records = o.keys;
  upd.value_size = o.value_size;
  upd.connections = o.connections;
  upd.pipeline = o.pipeline;
  upd.rate = o.rate;
  upd.duration_s = o.duration_s;
  upd.seed = o.seed;
  const LoadResult updates = run_load(upd);
  {
    std::lock_guard lock(mu);
    stop = true;
  }
  cv.notify_all();
  sampler_thread.join();

  // End the stall and take one more sample an interval later.
  for (auto& t : txns) (void)t.abort();
  txns.clear();
  if (fault_done.valid()) {
    if (fault_done.wait_for(std::chrono::seconds(30)) != std::future_status::ready) {
      std::cerr << "kovan-bench: the FAULT stall did not end\n";
    }
  }
  std::this_thread::sleep_for(std::chrono::duration<double>(o.interval_s));
  if (take_sample(sampler, o.server_pid, elapsed(), "after", s, error)) samples.push_back(s);

  write_csv(o.csv_path, samples);
  std::uint64_t max_versions = 0, max_unreclaimed = 0, max_rss = 0;
  for (const auto& x : samples) {
    max_versions = std::max(max_versions, x.live_versions);
    max_unreclaimed = std::max(max_unreclaimed, x.unreclaimed);
    max_rss = std::max(max_rss, x.rss_kb);
  }
  std::printf(
      "stall mode %s: %llu updates in %.1f s (%.0f/s), %llu errors; keys %llu\n"
      "live versions: before %llu, max %llu, after %llu\n"
      "unreclaimed objects: before %llu, max %llu, after %llu\n"
      "RSS (KiB): before %llu, max %llu, after %llu\n"
      "csv: %s\n",
      o.mode.c_str(), static_cast<unsigned long long>(updates.ops), updates.measured_s,
      updates.measured_s > 0 ? static_cast<double>(updates.ops) / updates.measured_s : 0.0,
      static_cast<unsigned long long>(updates.errors_total()),
      static_cast<unsigned long long>(o.keys),
      static_cast<unsigned long long>(samples.front().live_versions),
      static_cast<unsigned long long>(max_versions),
      static_cast<unsigned long long>(samples.back().live_versions),
      static_cast<unsigned long long>(samples.front().unreclaimed),
      static_cast<unsigned long long>(max_unreclaimed),
      static_cast<unsigned long long>(samples.back().unreclaimed),
      static_cast<unsigned long long>(samples.front().rss_kb),
      static_cast<unsigned long long>(max_rss),
      static_cast<unsigned long long>(samples.back().rss_kb), o.csv_path.c_str());
  plot(o);
  if (!sampler_error.empty()) {
    std::cerr << "kovan-bench: sampling stopped early: " << sampler_error << "\n";
    return 1;
  }
  return updates.connected ? 0 : 1;
}

}  // namespace kv::bench
