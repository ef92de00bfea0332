#include "watch_bench.hpp"

#include <CLI/CLI.hpp>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdio>
#include <iostream>
#include <memory>
#include <mutex>
#include <sstream>
#include <thread>

#include "client/client.hpp"

namespace kv::bench {

namespace {

using client::Client;

struct WatchBenchOptions {
  std::string target = "kovan://127.0.0.1:7379";
  std::vector<std::uint64_t> watchers{0, 1, 100, 10000};
  double duration_s = 10;
  std::uint32_t writers = 4;    // connections writing, one thread each
  std::uint32_t pipeline = 16;  // puts in flight per writer
  std::uint64_t keys = 1000;    // distinct keys written under the prefix
  std::uint32_t value_size = 100;
  std::uint32_t watches_per_connection = 1000;
};

struct Phase {
  std::uint64_t watchers = 0;
  double writes_per_s = 0;
  double events_per_s = 0;
  double delivered = 0;  // events delivered / events expected (writes x watchers), after drain
  std::uint64_t write_errors = 0;
};

// Puts for `seconds` through `client` with `pipeline` requests in flight; returns the puts
// answered OK and counts failures in `errors`.
std::uint64_t write_for(Client& client, double seconds, std::uint32_t pipeline, std::uint64_t keys,
                        const std::string& value, std::uint64_t seed,
                        std::atomic<std::uint64_t>& errors) {
  std::mutex mu;
  std::condition_variable cv;
  std::uint32_t in_flight = 0;
  std::uint64_t ok = 0;
  const auto end = std::chrono::steady_clock::now() + std::chrono::duration<double>(seconds);
  std::uint64_t i = seed;
  while (std::chrono::steady_clock::now() < end) {
    {
      std::unique_lock lock(mu);
      cv.wait(lock, [&] { return in_flight < pipeline; });
      ++in_flight;
    }
    client.put_async("wb/" + std::to_string(i++ % keys), value,
                     [&](client::Result<client::PutResult> r) {
                       std::lock_guard lock(mu);
                       --in_flight;
                       if (r.ok()) {
                         ++ok;
                       } else {
                         errors.fetch_add(1, std::memory_order_relaxed);
                       }
                       cv.notify_one();
                     });
  }
  std::unique_lock lock(mu);
  cv.wait(lock, [&] { return in_flight == 0; });
  return ok;
}

bool run_phase(const WatchBenchOptions& o, std::uint64_t watchers, Phase& out, std::string& error) {
  out.watchers = watchers;
  // Watches, spread over connections of at most watches_per_connection each.
  std::atomic<std::uint64_t> events{0};
  std::vector<std::unique_ptr<Client>> watch_clients;
  std::vector<std::unique_ptr<client::Watch>> watches;
  for (std::uint64_t w = 0; w < watchers; ++w) {
    if (w % o.watches_per_connection == 0) {
      auto c = Client::connect(o.target);
      if (!c.ok()) {
        error = c.status().to_string();
        return false;
      }
      watch_clients.push_back(std::move(c).value());
    }
    auto watch = watch_clients.back()->watch(
        client::WatchKeys::with_prefix("wb/"), {}, [&events](const client::WatchBatch& b) {
          // Relaxed: a counter read after the writers stop and the deliveries drain.
          events.fetch_add(b.events.size(), std::memory_order_relaxed);
        });
    if (!watch.ok()) {
      error = "watch " + std::to_string(w) + ": " + watch.status().to_string();
      return false;
    }
    watches.push_back(std::move(watch).value());
  }
  std::vector<std::unique_ptr<Client>> writers;
  for (std::uint32_t i = 0; i < o.writers; ++i) {
    auto c = Client::connect(o.target);
    if (!c.ok()) {
      error = c.status().to_string();
      return false;
    }
    writers.push_back(std::move(c).value());
  }
  const std::string value(o.value_size, 'v');
  std::atomic<std::uint64_t> written{0};
  std::atomic<std::uint64_t> errors{0};
  const std::uint64_t events_before = events.load(std::memory_order_relaxed);
  const auto start = std::chrono::steady_clock::now();
  std::vector<std::thread> threads;
  for (std::uint32_t i = 0; i < o.writers; ++i) {
    threads.emplace_back([&, i] {
      written.fetch_add(
          write_for(*writers[i], o.duration_s, o.pipeline, o.keys, value, i * 7919ull, errors),
          std::memory_order_relaxed);
    });
  }
  for (auto& t : threads) t.join();
  const double elapsed =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  const std::uint64_t events_in_window = events.load(std::memory_order_relaxed) - events_before;
  // Let the deliveries catch up (bounded), to report how much of the stream arrived.
  const std::uint64_t expected = written.load() * watchers;
  const auto drain_end = std::chrono::steady_clock::now() + std::chrono::seconds(30);
  while (events.load(std::memory_order_relaxed) - events_before < expected &&
         std::chrono::steady_clock::now() < drain_end) {
    std::this_thread::sleep_for(std::chrono::milliseconds(50));  // polls a counter
  }
  out.writes_per_s = static_cast<double>(written.load()) / elapsed;
  out.events_per_s = static_cast<double>(events_in_window) / elapsed;
  out.delivered = expected == 0 ? 1.0
                                : static_cast<double>(events.load() - events_before) /
                                      static_cast<double>(expected);
  out.write_errors = errors.load();
  watches.clear();
  return true;
}

}  // namespace

int run_watch_bench(const std::vector<std::string>& args) {
  WatchBenchOptions o;
  CLI::App app{
      "kovan-bench watch: events/s delivered to N watchers of one prefix, and the "
      "write throughput with and without them"};
  app.add_option("--target", o.target, "kovan://127.0.0.1:PORT")->capture_default_str();
  app.add_option("--watchers", o.watchers, "Watcher counts, one run each (0: no watchers)")
      ->delimiter(',')
      ->capture_default_str();
  app.add_option("--duration", o.duration_s, "Seconds of writing per run")
      ->check(CLI::PositiveNumber)
      ->capture_default_str();
  app.add_option("--writers", o.writers, "Writing connections")
      ->check(CLI::Range(1u, 1024u))
      ->capture_default_str();
  app.add_option("--pipeline", o.pipeline, "Puts in flight per writer")
      ->check(CLI::Range(1u, 4096u))
      ->capture_default_str();
  app.add_option("--keys", o.keys, "Distinct keys written")
      ->check(CLI::Range(std::uint64_t{1}, std::uint64_t{1} << 40))
      ->capture_default_str();
  app.add_option("--value-size", o.value_size, "Bytes per value")
      ->check(CLI::Range(0u, 1u << 20))
      ->capture_default_str();
  app.add_option("--watches-per-connection", o.watches_per_connection,
                 "Watches sharing one connection (the server's limit is 10000)")
      ->check(CLI::Range(1u, 10000u))
      ->capture_default_str();
  std::vector<std::string> rest(args.begin() + 2, args.end());
  std::reverse(rest.begin(), rest.end());
  try {
    app.parse(rest);
  } catch (const CLI::ParseError& e) {
    std::ostringstream out;
    std::ostringstream err;
    const int rc = app.exit(e, out, err);
    std::fputs((out.str() + err.str()).c_str(), rc == 0 ? stdout : stderr);
    return rc == 0 ? 0 : 2;
  }
  std::printf("%10s %14s %16s %10s\n", "watchers", "writes/s", "events/s", "delivered");
  for (const std::uint64_t n : o.watchers) {
    Phase p;
    std::string error;
    if (!run_phase(o, n, p, error)) {
      std::cerr << "kovan-bench watch: " << error << "\n";
      return 1;
    }
    std::printf("%10llu %14.0f %16.0f %9.1f%%%s\n", static_cast<unsigned long long>(n),
                p.writes_per_s, p.events_per_s, 100.0 * p.delivered,
                p.write_errors != 0 ? "  (write errors)" : "");
    std::fflush(stdout);
  }
  return 0;
}

}  // namespace kv::bench
