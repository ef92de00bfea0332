// Hostile and careless clients against a real kovan-server process: memory stays bounded
// (read from /proc/PID/status), accept errors do not spin, signals do not kill silently,
// transaction slots are shared fairly between peers, and fault stalls are capped.
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <thread>

#include "server_process.hpp"

namespace kv::test {
namespace {

constexpr std::uint64_t kMiB = 1024;  // /proc reports KiB

// Starts a server with `args` on an ephemeral port; fails the test when it does not come up.
std::uint16_t start(ServerProcess& p) {
  const std::uint16_t port = p.wait_for_port(15s);
  EXPECT_NE(port, 0) << p.output();
  return port;
}

std::vector<std::string> with_defaults(std::vector<std::string> args) {
  std::vector<std::string> out = {"--listen", "127.0.0.1:0",      "--summary-interval",
                                  "0",        "--shutdown-grace", "100ms"};
  out.insert(out.end(), args.begin(), args.end());
  return out;
}

// Sends as much of `bytes` as the socket takes now; returns the count sent.
std::size_t send_some(int fd, std::string_view bytes) {
  std::size_t sent = 0;
  while (sent < bytes.size()) {
    const ssize_t n =
        ::send(fd, bytes.data() + sent, bytes.size() - sent, MSG_NOSIGNAL | MSG_DONTWAIT);
    if (n <= 0) break;
    sent += static_cast<std::size_t>(n);
  }
  return sent;
}

// Every worker has finished the handlers queued before this call: a ping on one fresh
// connection per worker (connections are assigned round-robin) is answered.
void sync_workers(std::uint16_t port, int workers) {
  std::vector<std::unique_ptr<Client>> cs;
  for (int i = 0; i < workers; ++i) cs.push_back(std::make_unique<Client>(port));
  for (auto& c : cs) ASSERT_EQ(c->call(ping(1)).status().code(), pb::Status::OK);
}

std::string header_announcing(std::uint32_t length) {
  std::string h(4, '\0');
  proto::put_frame_header(h.data(), length);
  return h;
}

// --- 1. Input: a header alone must not cost the frame it announces ----------------------

TEST(Hardening, HeaderOnlyConnectionsDoNotReserveTheirFrames) {
  ServerProcess p(with_defaults({"--threads", "2", "--metrics-listen", "127.0.0.1:0"}), "hdr");
  const std::uint16_t port = start(p);
  const std::uint16_t mport = p.metrics_port();
  ASSERT_NE(mport, 0);
  sync_workers(port, 2);
  const std::uint64_t before = p.rss_kib();

  constexpr int kConnections = 300;
  const std::string header = header_announcing(4u << 20);  // exactly --max-frame-bytes
  std::vector<std::unique_ptr<Client>> attackers;
  for (int i = 0; i < kConnections; ++i) {
    attackers.push_back(std::make_unique<Client>(port));
    ASSERT_TRUE(attackers.back()->connected());
    ASSERT_TRUE(attackers.back()->send_raw(header));
  }
  // The server has read every header (its byte counter), and both workers have finished
  // the handlers that read them.
  const double expected = 4.0 * kConnections;  // the headers (plus the sync pings before)
  ASSERT_TRUE(eventually(
      [&] { return metric(scrape(mport), "kv_received_bytes_total") >= expected; }, 20s));
  sync_workers(port, 2);
  const std::uint64_t peak = p.hwm_kib();
  std::printf("RSS before %llu KiB, peak with %d header-only connections %llu KiB\n",
              static_cast<unsigned long long>(before), kConnections,
              static_cast<unsigned long long>(peak));
  // 300 x 4 MiB would be 1200 MiB; a few KiB per connection is what they may cost.
  if (kRssIsMeaningful) {
    EXPECT_LT(peak - before, 48 * kMiB) << "before " << before << " KiB, peak " << peak << " KiB";
  }
  // Everyone else is still served.
  Client c(port);
  EXPECT_EQ(c.call(put(1, "k", "v")).status().code(), pb::Status::OK);
}

TEST(Hardening, IncompleteFrameIsClosedAfterTheFrameTimeoutEvenWhileBytesTrickle) {
  ServerProcess p(with_defaults({"--threads", "2", "--frame-timeout", "1s"}), "frame");
  const std::uint16_t port = start(p);
  Client idle(port);  // a connection with no partial frame is not affected
  ASSERT_EQ(idle.call(ping(1)).status().code(), pb::Status::OK);

  Client slow(port);
  ASSERT_TRUE(slow.send_raw(header_announcing(1000)));
  const auto t0 = std::chrono::steady_clock::now();
  // One payload byte every 100 ms: activity, but the frame would need 100 s.
  std::optional<pb::Response> notice;
  while (!notice && std::chrono::steady_clock::now() - t0 < 20s) {
    if (!slow.send_raw("x")) break;
    notice = slow.recv(100ms);
  }
  ASSERT_TRUE(notice.has_value()) << "no notice; log:\n" << p.output();
  const auto took = std::chrono::steady_clock::now() - t0;
  EXPECT_GE(took, 900ms);
  EXPECT_EQ(notice->id(), 0u);
  EXPECT_EQ(notice->status().code(), pb::Status::UNAVAILABLE);
  EXPECT_NE(notice->status().message().find("--frame-timeout"), std::string::npos)
      << notice->status().message();
  EXPECT_TRUE(slow.closed_by_peer(5s));
  EXPECT_EQ(idle.call(ping(2)).status().code(), pb::Status::OK);
}

TEST(Hardening, BufferedInputIsBoundedServerWide) {
  ServerProcess p(with_defaults({"--threads", "2", "--metrics-listen", "127.0.0.1:0",
                                 "--max-input-bytes-total", "16MiB", "--frame-timeout", "60s"}),
                  "inbudget");
  const std::uint16_t port = start(p);
  const std::uint16_t mport = p.metrics_port();
  ASSERT_NE(mport, 0);
  sync_workers(port, 2);
  const std::uint64_t before = p.rss_kib();

  // 40 connections each start a 4 MiB frame and send 2 MiB of it: 80 MiB offered.
  constexpr int kConnections = 40;
  const std::string chunk = header_announcing(4u << 20) + std::string(2u << 20, 'x');
  std::vector<std::unique_ptr<Client>> attackers;
  std::vector<std::size_t> sent(kConnections, 0);
  for (int i = 0; i < kConnections; ++i) {
    attackers.push_back(std::make_unique<Client>(port));
    ASSERT_TRUE(attackers.back()->connected());
  }
  // Keep pushing (non-blocking) until a connection had to wait for the budget, then for 2
  // more seconds: the kernel's socket buffers absorb what the server leaves unread.
  const auto push = [&] {
    for (int i = 0; i < kConnections; ++i) {
      sent[i] += send_some(attackers[i]->fd(), std::string_view(chunk).substr(sent[i]));
    }
  };
  ASSERT_TRUE(eventually(
      [&] {
        push();
        return metric(scrape(mport), "kv_buffer_budget_waits_total{direction=\"in\"}") >= 1;
      },
      20s))
      << scrape(mport);
  const auto until = std::chrono::steady_clock::now() + 2s;
  while (std::chrono::steady_clock::now() < until) {
    push();
    std::this_thread::sleep_for(50ms);
  }
  const std::string m = scrape(mport);
  const double received = metric(m, "kv_received_bytes_total");
  const std::uint64_t peak = p.hwm_kib();
  std::printf("RSS before %llu KiB, peak %llu KiB; server read %.1f MiB\n",
              static_cast<unsigned long long>(before), static_cast<unsigned long long>(peak),
              received / (1 << 20));
  // It stopped reading near the budget, far from the 80 MiB offered.
  EXPECT_LT(received, 32.0 * (1 << 20));
  if (kRssIsMeaningful) {
    EXPECT_LT(peak - before, 40 * kMiB) << "before " << before << " KiB, peak " << peak;
  }
  const auto in_at = m.find("kv_connection_buffer_bytes{direction=\"in\"} ");
  ASSERT_NE(in_at, std::string::npos) << m;
  // The budget, plus the initial 4 KiB buffers, which are always granted (every
  // connection of this test, with room to spare).
  EXPECT_LE(std::strtod(m.c_str() + in_at + 43, nullptr), 16.0 * (1 << 20) + 64 * 4096);
  // A small request still gets through: every connection keeps its initial buffer.
  Client c(port);
  EXPECT_EQ(c.call(put(1, "k", "v")).status().code(), pb::Status::OK);
}

// --- 5. Output: clients that pipeline and never read -------------------------------------

// The unsent-output gauge from a metrics page; -1 when absent.
double out_bytes(const std::string& metrics) {
  const std::string name = "kv_connection_buffer_bytes{direction=\"out\"} ";
  const auto at = metrics.find(name);
  return at == std::string::npos ? -1.0 : std::strtod(metrics.c_str() + at + name.size(), nullptr);
}

// `n` connections with tiny receive buffers that each pipeline 40 `get big` and never
// read; fewer are returned if a connection or its send fails.
std::vector<std::unique_ptr<Client>> non_reading_pipeliners(std::uint16_t port, int n) {
  std::string requests;
  for (int i = 0; i < 40; ++i) proto::append_message(requests, get(100 + i, "big"));
  std::vector<std::unique_ptr<Client>> out;
  for (int i = 0; i < n; ++i) {
    auto c = std::make_unique<Client>(port, 4096);
    if (!c->connected() || send_some(c->fd(), requests) != requests.size()) break;
    out.push_back(std::move(c));
  }
  return out;
}

TEST(Hardening, NonReadingPipelinersAreHeldByTheServerWideOutputBudget) {
  ServerProcess p(with_defaults({"--threads", "2", "--metrics-listen", "127.0.0.1:0",
                                 "--max-output-bytes-total", "32MiB"}),
                  "outbudget");
  const std::uint16_t port = start(p);
  const std::uint16_t mport = p.metrics_port();
  ASSERT_NE(mport, 0);
  {
    Client w(port);
    ASSERT_EQ(w.call(put(1, "big", std::string(1000 * 1000, 'v'))).status().code(), pb::Status::OK);
  }
  sync_workers(port, 2);
  const std::uint64_t before = p.rss_kib();

  // 40 connections x 40 pipelined `get big` (40 MB each) with tiny receive buffers: the
  // per-connection limit (8 MiB) alone would let them hold 320 MiB.
  constexpr int kConnections = 40;
  std::vector<std::unique_ptr<Client>> attackers = non_reading_pipeliners(port, kConnections);
  ASSERT_EQ(attackers.size(), static_cast<std::size_t>(kConnections));
  ASSERT_TRUE(eventually([&] { return out_bytes(scrape(mport)) >= 32.0 * (1 << 20); }, 20s))
      << scrape(mport);
  sync_workers(port, 2);  // both workers passed the point where they paused
  const double held = out_bytes(scrape(mport));
  const std::uint64_t peak = p.hwm_kib();
  std::printf("RSS before %llu KiB, peak %llu KiB; unsent output %.1f MiB\n",
              static_cast<unsigned long long>(before), static_cast<unsigned long long>(peak),
              held / (1 << 20));
  // The budget plus at most one response per connection (the one that crossed it).
  EXPECT_LE(held, 32.0 * (1 << 20) + kConnections * 1.01e6);
  if (kRssIsMeaningful) {
    EXPECT_LT(peak - before, 128 * kMiB) << "before " << before << " KiB, peak " << peak;
  }
  // A well-behaved client is still answered, large responses included.
  Client c(port);
  pb::Response r = c.call(get(1, "big"));
  EXPECT_EQ(r.status().code(), pb::Status::OK);
  EXPECT_EQ(r.get().kv().value().size(), 1000u * 1000u);
}

// --max-memory counts the connections' buffers as well as the engine's data: unsent output
// held for clients that do not read pushes the total over the limit, so puts are refused
// until those connections go away.
TEST(Hardening, MaxMemoryCountsUnsentOutput) {
  ServerProcess p(with_defaults({"--threads", "2", "--metrics-listen", "127.0.0.1:0",
                                 "--max-memory", "24MiB", "--max-output-bytes-total", "64MiB"}),
                  "memout");
  const std::uint16_t port = start(p);
  const std::uint16_t mport = p.metrics_port();
  ASSERT_NE(mport, 0);
  Client w(port);
  ASSERT_EQ(w.call(put(1, "big", std::string(1000 * 1000, 'v'))).status().code(), pb::Status::OK);
  ASSERT_EQ(w.call(put(2, "small", "x")).status().code(), pb::Status::OK);

  // 40 non-reading connections x 40 pipelined `get big`: unsent output far above 24 MiB,
  // while the stored data is about 1 MB.
  std::vector<std::unique_ptr<Client>> attackers = non_reading_pipeliners(port, 40);
  ASSERT_EQ(attackers.size(), 40u);
  ASSERT_TRUE(eventually([&] { return out_bytes(scrape(mport)) >= 32.0 * (1 << 20); }, 20s))
      << scrape(mport);
  pb::Response refused = w.call(put(3, "another", "y"));
  EXPECT_EQ(refused.status().code(), pb::Status::RESOURCE_EXHAUSTED);
  EXPECT_NE(refused.status().message().find("memory limit"), std::string::npos)
      << refused.status().message();
  // Reads and deletes are still served.
  EXPECT_EQ(w.call(get(4, "small")).status().code(), pb::Status::OK);

  // The connections go away with their output: puts are accepted again.
  attackers.clear();
  ASSERT_TRUE(eventually([&] { return out_bytes(scrape(mport)) < 1.0 * (1 << 20); }, 20s))
      << scrape(mport);
  EXPECT_EQ(w.call(put(5, "another", "y")).status().code(), pb::Status::OK);
}

// --- 6. Transactions: one peer address cannot take every slot ----------------------------

TEST(Hardening, OnePeerCannotTakeEveryTransactionSlot) {
  // 64 slots in the server; by default one peer address may hold a quarter of them.
  ServerProcess p(with_defaults({"--threads", "2", "--max-active-txns", "64"}), "peers");
  const std::uint16_t port = start(p);
  // The attacker (127.0.0.1) opens transactions on 8 connections until refused.
  std::vector<std::unique_ptr<Client>> attackers;
  int held = 0;
  std::string refusal;
  for (int c = 0; c < 8 && refusal.empty(); ++c) {
    attackers.push_back(std::make_unique<Client>(port, 0, "127.0.0.1"));
    for (int i = 0; i < 16; ++i) {
      pb::Response r = attackers.back()->call(begin(1 + i));
      if (r.status().code() != pb::Status::OK) {
        EXPECT_EQ(r.status().code(), pb::Status::RESOURCE_EXHAUSTED);
        refusal = r.status().message();
        break;
      }
      ++held;
    }
  }
  EXPECT_EQ(held, 16) << refusal;
  EXPECT_NE(refusal.find("--max-txns-per-peer"), std::string::npos) << refusal;
  // Another peer (127.0.0.2) still begins, and so do two more.
  for (const char* other : {"127.0.0.2", "127.0.0.3", "127.0.0.4"}) {
    Client victim(port, 0, other);
    ASSERT_TRUE(victim.connected()) << other;
    pb::Response r = victim.call(begin(1));
    EXPECT_EQ(r.status().code(), pb::Status::OK) << other << ": " << r.status().message();
  }
  // The attacker stays refused, on any of its connections.
  pb::Response b = attackers.front()->call(begin(100));
  EXPECT_EQ(b.status().code(), pb::Status::RESOURCE_EXHAUSTED);
  // Dropping a connection returns its slots.
  attackers.front()->close();
  Client again(port, 0, "127.0.0.1");
  EXPECT_TRUE(eventually([&] { return again.call(begin(7)).status().code() == pb::Status::OK; }));
}

// --- 7. Out of descriptors: accept errors back off ---------------------------------------

TEST(Hardening, OutOfDescriptorsOnBothListenersDoesNotSpin) {
#if defined(KV_UBSAN)
  GTEST_SKIP() << "the UBSan runtime reports false errors while the server is out of "
                  "descriptors (its memory probe needs a pipe)";
#endif
  ServerProcess p(with_defaults({"--threads", "1", "--metrics-listen", "127.0.0.1:0",
                                 "--max-connections", "1000"}),
                  "emfile", 64);
  const std::uint16_t port = start(p);
  const std::uint16_t mport = p.metrics_port();
  ASSERT_NE(mport, 0);
  Client keeper(port);
  ASSERT_EQ(keeper.call(ping(1)).status().code(), pb::Status::OK);
  // Use up the descriptors with client connections, then queue connections on both
  // listeners that the server cannot accept.
  std::vector<std::unique_ptr<Client>> held;
  for (int i = 0; i < 100; ++i) held.push_back(std::make_unique<Client>(port));
  for (int i = 0; i < 40; ++i) held.push_back(std::make_unique<Client>(mport));
  ASSERT_TRUE(p.wait_for_log("accept failed")) << p.output();

  const long ticks_per_s = ::sysconf(_SC_CLK_TCK);
  const std::uint64_t cpu0 = p.cpu_ticks();
  const auto t0 = std::chrono::steady_clock::now();
  // Requests on an accepted connection are answered promptly meanwhile.
  std::chrono::steady_clock::duration worst{};
  for (int i = 0; i < 20; ++i) {
    const auto s = std::chrono::steady_clock::now();
    ASSERT_EQ(keeper.call(ping(10 + i)).status().code(), pb::Status::OK);
    worst = std::max(worst, std::chrono::steady_clock::now() - s);
    std::this_thread::sleep_for(100ms);  // pacing of this client, not thread ordering
  }
  const double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  const double cpu = static_cast<double>(p.cpu_ticks() - cpu0) / static_cast<double>(ticks_per_s);
  const std::string log = p.output();
  const std::size_t lines = count_of(log, "accept failed");
  std::printf("%.2f s CPU in %.2f s; %zu 'accept failed' lines; slowest ping %.1f ms\n", cpu, secs,
              lines, std::chrono::duration<double, std::milli>(worst).count());
  EXPECT_LT(cpu, 0.1 * secs) << "server CPU while out of descriptors";
  EXPECT_LE(lines, 10u) << log.substr(0, 4000);
  EXPECT_LT(worst, 500ms);
  // Once descriptors free up, both listeners accept again.
  held.clear();
  EXPECT_TRUE(eventually(
      [&] {
        Client c(port);
        return c.connected() && c.call(ping(1)).status().code() == pb::Status::OK;
      },
      10s))
      << p.output();
  EXPECT_TRUE(eventually([&] { return !scrape(mport).empty(); }, 10s)) << p.output();
}

TEST(Hardening, MetricsConnectionsAreCountedAgainstALimit) {
  ServerProcess p(with_defaults({"--threads", "1", "--metrics-listen", "127.0.0.1:0",
                                 "--max-metrics-connections", "4"}),
                  "mlimit");
  const std::uint16_t port = start(p);
  const std::uint16_t mport = p.metrics_port();
  ASSERT_NE(mport, 0);
  // Four scrapers that connect and say nothing hold every slot...
  std::vector<std::unique_ptr<Client>> silent;
  for (int i = 0; i < 4; ++i) silent.push_back(std::make_unique<Client>(mport));
  sync_workers(port, 1);  // the single worker has accepted them
  // ...so a fifth is closed at once (well before the 5 s request timeout).
  const auto t0 = std::chrono::steady_clock::now();
  Client extra(mport);
  ASSERT_TRUE(extra.connected());
  EXPECT_TRUE(extra.closed_by_peer(4s));
  EXPECT_LT(std::chrono::steady_clock::now() - t0, 4s);
  // Freed slots serve scrapes again.
  silent.clear();
  EXPECT_TRUE(eventually([&] { return !scrape(mport).empty(); }, 10s));
  EXPECT_GE(metric(scrape(mport), "kv_metrics_connections_refused_total"), 1.0);
}

// --- 8. Signals ------------------------------------------------------------------------------

TEST(Hardening, SighupReloadsTheLogLevelAndDoesNotKill) {
  const fs::path cfg = temp_path("hup.toml");
  {
    std::ofstream f(cfg);
    f << "log-level = \"info\"\nmax-connections = 100\n";
  }
  ServerProcess p(with_defaults({"--threads", "1", "--config", cfg.string()}), "hup");
  const std::uint16_t port = start(p);
  {
    std::ofstream f(cfg);
    f << "log-level = \"debug\"\nmax-connections = 200\n";
  }
  p.signal(SIGHUP);
  ASSERT_TRUE(p.wait_for_log("received SIGHUP")) << p.output();
  ASSERT_TRUE(p.wait_for_log("log-level is now debug")) << p.output();
  EXPECT_TRUE(p.wait_for_log("max-connections changed")) << p.output();
  EXPECT_FALSE(p.has_exited());
  Client c(port);
  EXPECT_EQ(c.call(ping(1)).status().code(), pb::Status::OK);
  EXPECT_TRUE(p.wait_for_log("opened on worker")) << "debug logging is not on:\n" << p.output();
  // A config file that no longer parses keeps the running settings.
  {
    std::ofstream f(cfg);
    f << "log-level = \"shouting\"\n";
  }
  p.signal(SIGHUP);
  EXPECT_TRUE(p.wait_for_log("keeping the current settings")) << p.output();
  EXPECT_EQ(c.call(ping(2)).status().code(), pb::Status::OK);
  p.signal(SIGTERM);
  EXPECT_EQ(p.wait_exit(), 0) << p.output();
  fs::remove(cfg);
}

TEST(Hardening, SighupWithoutAConfigFileIsLoggedAndIgnored) {
  ServerProcess p(with_defaults({"--threads", "1"}), "hup2");
  const std::uint16_t port = start(p);
  p.signal(SIGHUP);
  ASSERT_TRUE(p.wait_for_log("received SIGHUP")) << p.output();
  Client c(port);
  EXPECT_EQ(c.call(ping(1)).status().code(), pb::Status::OK);
  EXPECT_FALSE(p.has_exited());
}

TEST(Hardening, SigquitShutsDownGracefullyAndSaysSo) {
  ServerProcess p(with_defaults({"--threads", "1"}), "quit");
  const std::uint16_t port = start(p);
  Client c(port);
  ASSERT_EQ(c.call(ping(1)).status().code(), pb::Status::OK);
  p.signal(SIGQUIT);
  auto notice = c.recv(5s);
  ASSERT_TRUE(notice.has_value()) << p.output();
  EXPECT_EQ(notice->status().code(), pb::Status::UNAVAILABLE);
  EXPECT_EQ(p.wait_exit(), 0) << p.output();
  EXPECT_NE(p.output().find("received SIGQUIT"), std::string::npos) << p.output();
}

// --- 9. Fault injection -----------------------------------------------------------------

pb::Request fault(std::uint64_t id, std::uint32_t stall_ms) {
  pb::Request r;
  r.set_id(id);
  r.mutable_fault()->set_stall_ms(stall_ms);
  return r;
}

TEST(Hardening, FaultStallsAreCappedAndOneAtATime) {
  ServerProcess p(
      with_defaults({"--threads", "2", "--enable-fault-injection", "--max-fault-stall", "3s"}),
      "fault");
  const std::uint16_t port = start(p);
  Client a(port);  // consecutive connections go to the two workers
  Client b(port);
  ASSERT_EQ(a.call(ping(1)).status().code(), pb::Status::OK);
  ASSERT_EQ(b.call(ping(1)).status().code(), pb::Status::OK);

  // Over the cap: refused without stalling.
  const auto t0 = std::chrono::steady_clock::now();
  pb::Response r = a.call(fault(2, 5000));
  EXPECT_EQ(r.status().code(), pb::Status::INVALID_ARGUMENT);
  EXPECT_NE(r.status().message().find("--max-fault-stall"), std::string::npos)
      << r.status().message();
  EXPECT_LT(std::chrono::steady_clock::now() - t0, 2s);

  // One stall at a time: while a's worker stalls, b's FAULT is refused at once.
  ASSERT_TRUE(a.send(fault(3, 2500)));
  ASSERT_TRUE(p.wait_for_log("fault injection: stalling")) << p.output();
  const auto t1 = std::chrono::steady_clock::now();
  r = b.call(fault(4, 100));
  EXPECT_EQ(r.status().code(), pb::Status::RESOURCE_EXHAUSTED) << r.status().message();
  EXPECT_NE(r.status().message().find("in progress"), std::string::npos) << r.status().message();
  EXPECT_LT(std::chrono::steady_clock::now() - t1, 2s);
  auto done = a.recv(10s);
  ASSERT_TRUE(done.has_value());
  EXPECT_EQ(done->id(), 3u);
  EXPECT_EQ(done->status().code(), pb::Status::OK);
  // The stall is over: the next one is allowed. Each stall is logged, start and end.
  EXPECT_EQ(b.call(fault(5, 10)).status().code(), pb::Status::OK);
  EXPECT_TRUE(p.wait_for_log("fault injection: stall of 10 ms ended")) << p.output();
  EXPECT_EQ(count_of(p.output(), "fault injection: stalling"), 2u) << p.output();
}

}  // namespace
}  // namespace kv::test
