// The kovan-server binary as a child process: flags, config file, metrics endpoint, and
// graceful shutdown on SIGTERM / SIGINT.
#include "server_process.hpp"

namespace kv::test {
namespace {

TEST(Process, HelpListsEveryFlagAndExitsZero) {
  ServerProcess p({"--help"}, "help");
  EXPECT_EQ(p.wait_exit(), 0);
  const std::string out = p.output();
  for (const char* flag :
       {"--listen", "--threads", "--txn-timeout", "--gc-policy", "--max-connections",
        "--max-frame-bytes", "--idle-timeout", "--max-txns-per-connection", "--log-level",
        "--metrics-listen", "--config", "--enable-fault-injection", "--shutdown-grace"}) {
    EXPECT_NE(out.find(flag), std::string::npos) << flag;
  }
}

TEST(Process, BadFlagsExitTwoWithAMessage) {
  const std::vector<std::vector<std::string>> cases = {
      {"--no-such-flag"},
      {"--threads", "many"},
      {"--listen", "localhost"},
      {"--gc-policy", "sometimes"},
      {"--txn-timeout", "5 parsecs"},
      {"--max-frame-bytes", "1"},
      {"--log-level", "loud"},
      {"--config", "/nonexistent/kovan.toml"},
      {"positional"},
  };
  int i = 0;
  for (const auto& args : cases) {
    ServerProcess p(args, "bad" + std::to_string(i++));
    EXPECT_EQ(p.wait_exit(), 2) << args[0];
    EXPECT_NE(p.output().find("kovan-server:"), std::string::npos) << p.output();
  }
}

TEST(Process, ConfigFileSetsTheSameKeysAndRejectsUnknownOnes) {
  const fs::path good = temp_path("good.toml");
  {
    std::ofstream f(good);
    f << "listen = \"127.0.0.1:0\"\nthreads = 1\nmax-connections = 7\nidle-timeout = \"90s\"\n";
  }
  {
    ServerProcess p({"--config", good.string(), "--shutdown-grace", "100ms"}, "cfg");
    ASSERT_NE(p.wait_for_port(), 0) << p.output();
    const std::string out = p.output();
    EXPECT_NE(out.find("threads=1"), std::string::npos) << out;
    EXPECT_NE(out.find("max-connections=7"), std::string::npos) << out;
    EXPECT_NE(out.find("idle-timeout=90s"), std::string::npos) << out;
    p.signal(SIGINT);
    EXPECT_EQ(p.wait_exit(), 0);
  }
  const fs::path bad = temp_path("bad.toml");
  {
    std::ofstream f(bad);
    f << "listen = \"127.0.0.1:0\"\nmax-conections = 7\n";  // misspelt
  }
  ServerProcess p({"--config", bad.string()}, "cfgbad");
  EXPECT_EQ(p.wait_exit(), 2) << p.output();
  fs::remove(good);
  fs::remove(bad);
}

TEST(Process, MetricsEndpointServesPrometheusText) {
  ServerProcess p({"--listen", "127.0.0.1:0", "--threads", "2", "--metrics-listen", "127.0.0.1:0",
                   "--shutdown-grace", "100ms"},
                  "metrics");
  const std::uint16_t port = p.wait_for_port();
  ASSERT_NE(port, 0) << p.output();
  const std::uint16_t mport = p.metrics_port();
  ASSERT_NE(mport, 0) << p.output();
  {
    Client c(port);
    ASSERT_EQ(c.call(put(1, "k", "v")).status().code(), pb::Status::OK);
    ASSERT_EQ(c.call(get(2, "k")).status().code(), pb::Status::OK);
  }
  Client http(mport);
  ASSERT_TRUE(http.send_raw("GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n"));
  std::string body;
  char buf[4096];
  for (;;) {
    const ssize_t n = ::recv(http.fd(), buf, sizeof buf, 0);
    if (n <= 0) break;
    body.append(buf, static_cast<std::size_t>(n));
  }
  EXPECT_EQ(body.rfind("HTTP/1.1 200 OK", 0), 0u) << body;
  EXPECT_NE(body.find("kv_requests_total{op=\"put\"} 1"), std::string::npos) << body;
  EXPECT_NE(body.find("kv_requests_total{op=\"get\"} 1"), std::string::npos);
  EXPECT_NE(body.find("kv_request_duration_seconds_bucket{op=\"get\",le=\"+Inf\"} 1"),
            std::string::npos);
  EXPECT_NE(body.find("kv_connections "), std::string::npos);
  EXPECT_NE(body.find("kv_versions "), std::string::npos);
  EXPECT_NE(body.find("kovan_unreclaimed "), std::string::npos);
  EXPECT_NE(body.find("process_resident_memory_bytes "), std::string::npos);
  p.signal(SIGTERM);
  EXPECT_EQ(p.wait_exit(), 0);
}

TEST(Process, SigtermNotifiesAnswersUnavailableAndExitsZero) {
  ServerProcess p({"--listen", "127.0.0.1:0", "--threads", "2", "--shutdown-grace", "10s"}, "term");
  const std::uint16_t port = p.wait_for_port();
  ASSERT_NE(port, 0) << p.output();
  Client c(port);
  ASSERT_EQ(c.call(put(1, "k", "v")).status().code(), pb::Status::OK);
  const std::uint64_t t = c.call(begin(2)).begin().txn_id();
  ASSERT_NE(t, 0u);

  p.signal(SIGTERM);
  auto notice = c.recv(5s);
  ASSERT_TRUE(notice.has_value()) << p.output();
  EXPECT_EQ(notice->id(), 0u);
  EXPECT_EQ(notice->status().code(), pb::Status::UNAVAILABLE);
  // New requests on the open connection are answered, with UNAVAILABLE.
  pb::Response r = c.call(get(3, "k"));
  EXPECT_EQ(r.id(), 3u);
  EXPECT_EQ(r.status().code(), pb::Status::UNAVAILABLE);
  EXPECT_EQ(c.call(commit(4, t)).status().code(), pb::Status::UNAVAILABLE);
  // New connections are not accepted any more.
  EXPECT_TRUE(eventually([&] {
    Client late(port);
    return !late.connected() || late.closed_by_peer(1s);
  }));
  // Closing the last connection lets the server exit well before the grace period.
  const auto t0 = std::chrono::steady_clock::now();
  c.close();
  EXPECT_EQ(p.wait_exit(5s), 0) << p.output();
  EXPECT_LT(std::chrono::steady_clock::now() - t0, 5s);
}

TEST(Process, GracePeriodBoundsShutdownWhenClientsStayConnected) {
  ServerProcess p({"--listen", "127.0.0.1:0", "--threads", "2", "--shutdown-grace", "200ms"},
                  "grace");
  const std::uint16_t port = p.wait_for_port();
  ASSERT_NE(port, 0) << p.output();
  Client c(port);
  ASSERT_EQ(c.call(ping(1)).status().code(), pb::Status::OK);
  p.signal(SIGINT);
  auto notice = c.recv(5s);
  ASSERT_TRUE(notice.has_value());
  EXPECT_EQ(notice->status().code(), pb::Status::UNAVAILABLE);
  EXPECT_TRUE(c.closed_by_peer(5s));  // closed by the server at the end of the grace period
  EXPECT_EQ(p.wait_exit(5s), 0) << p.output();
}

TEST(Process, ListenFailureIsReported) {
  InProcessServer holder;  // occupies a port
  ServerProcess p({"--listen", "127.0.0.1:" + std::to_string(holder.port())}, "busy");
  EXPECT_EQ(p.wait_exit(), 1);
  EXPECT_NE(p.output().find("cannot listen"), std::string::npos) << p.output();
}

}  // namespace
}  // namespace kv::test
