// Unit tests of flag and config parsing (server/config.hpp).
#include "server/config.hpp"
#include "parse_args.hpp"

#include <gtest/gtest.h>

#include <cstdio>

namespace kv::server {
namespace {

using namespace std::chrono_literals;

using test::parse;

TEST(Config, DefaultsMatchTheDocumentation) {
  ParseOutcome o = parse({});
  ASSERT_EQ(o.action, ParseOutcome::Action::kRun) << o.output;
  EXPECT_EQ(o.config.listen.to_string(), "127.0.0.1:7379");
  EXPECT_EQ(o.config.max_frame_bytes, 4u << 20);
  EXPECT_EQ(o.config.txn_timeout, 5s);
  EXPECT_EQ(o.config.gc_policy, storage::GcPolicy::kInterval);
  EXPECT_FALSE(o.config.metrics_listen.has_value());
  EXPECT_FALSE(o.config.enable_fault_injection);
  EXPECT_GE(o.config.effective_threads(), 1u);
  EXPECT_EQ(o.config.max_input_bytes_total, 128u << 20);
  EXPECT_EQ(o.config.max_output_bytes_total, 128u << 20);
  EXPECT_EQ(o.config.frame_timeout, 30s);
  EXPECT_EQ(o.config.effective_txns_per_peer(), 1024u);  // a quarter of 4096
  EXPECT_EQ(o.config.max_metrics_connections, 16u);
  EXPECT_EQ(o.config.max_fault_stall, 60s);
  EXPECT_TRUE(o.config.config_file.empty());
}

TEST(Config, BudgetFlagsAreAppliedAndChecked) {
  ParseOutcome o = parse({"--max-input-bytes-total", "64MiB", "--max-output-bytes-total", "32MiB",
                          "--frame-timeout", "5s", "--max-txns-per-peer", "10",
                          "--max-metrics-connections", "3", "--max-fault-stall", "250ms"});
  ASSERT_EQ(o.action, ParseOutcome::Action::kRun) << o.output;
  EXPECT_EQ(o.config.max_input_bytes_total, 64u << 20);
  EXPECT_EQ(o.config.max_output_bytes_total, 32u << 20);
  EXPECT_EQ(o.config.frame_timeout, 5s);
  EXPECT_EQ(o.config.effective_txns_per_peer(), 10u);
  EXPECT_EQ(o.config.max_metrics_connections, 3u);
  EXPECT_EQ(o.config.max_fault_stall, 250ms);
  // The per-peer default follows --max-active-txns.
  EXPECT_EQ(parse({"--max-active-txns", "100"}).config.effective_txns_per_peer(), 25u);
  EXPECT_EQ(parse({"--max-active-txns", "2"}).config.effective_txns_per_peer(), 1u);
  for (auto args : std::vector<std::vector<const char*>>{
           {"--max-input-bytes-total", "4MiB"},  // below twice --max-frame-bytes
           {"--max-output-bytes-total", "1k"},
           {"--frame-timeout", "later"},
           {"--max-metrics-connections", "0"},
           {"--max-fault-stall", "11m"}}) {
    ParseOutcome bad = parse(args);
    EXPECT_EQ(bad.action, ParseOutcome::Action::kExit) << args[0];
    EXPECT_EQ(bad.exit_code, 2) << args[0];
    EXPECT_NE(bad.output.find(args[0]), std::string::npos) << bad.output;
  }
}

TEST(Config, ProtectedModeNeedsUsersOrTokenOffLoopback) {
  for (const char* host : {"127.0.0.1:0", "127.3.4.5:0", "[::1]:0", "localhost:0"}) {
    EXPECT_EQ(parse({"--listen", host}).action, ParseOutcome::Action::kRun) << host;
  }
  for (const char* host : {"0.0.0.0:0", "[::]:0", "10.1.2.3:7379", "127.example:0"}) {
    ParseOutcome o = parse({"--listen", host});
    EXPECT_EQ(o.action, ParseOutcome::Action::kExit) << host;
    EXPECT_EQ(o.exit_code, 2);
    EXPECT_NE(o.output.find("--users"), std::string::npos) << o.output;
    EXPECT_NE(o.output.find("--insecure-no-auth"), std::string::npos) << o.output;
    EXPECT_EQ(parse({"--listen", host, "--insecure-no-auth"}).action, ParseOutcome::Action::kRun);
  }
  ParseOutcome m = parse({"--metrics-listen", "0.0.0.0:9100"});
  EXPECT_EQ(m.exit_code, 2);
  EXPECT_NE(m.output.find("--metrics-token-file"), std::string::npos) << m.output;
}

TEST(Config, FlagsAreApplied) {
  ParseOutcome o =
      parse({"--listen", "[::1]:0", "--threads", "3", "--txn-timeout", "250ms", "--gc-policy",
             "watermark", "--max-frame-bytes", "1MiB", "--idle-timeout", "2m", "--metrics-listen",
             "0.0.0.0:9100", "--enable-fault-injection", "--insecure-no-auth"});
  ASSERT_EQ(o.action, ParseOutcome::Action::kRun) << o.output;
  EXPECT_EQ(o.config.listen.host, "::1");
  EXPECT_EQ(o.config.listen.port, 0);
  EXPECT_EQ(o.config.threads, 3u);
  EXPECT_EQ(o.config.txn_timeout, 250ms);
  EXPECT_EQ(o.config.gc_policy, storage::GcPolicy::kWatermark);
  EXPECT_EQ(o.config.max_frame_bytes, 1u << 20);
  EXPECT_EQ(o.config.idle_timeout, 120s);
  ASSERT_TRUE(o.config.metrics_listen.has_value());
  EXPECT_EQ(o.config.metrics_listen->port, 9100);
  EXPECT_TRUE(o.config.enable_fault_injection);
  const storage::Options e = o.config.engine_options();
  EXPECT_EQ(e.txn_timeout, 250ms);
  EXPECT_EQ(e.gc_policy, storage::GcPolicy::kWatermark);
  EXPECT_LE(e.sweeper_period, 250ms / 4);
}

TEST(Config, BadValuesExitTwo) {
  for (auto args : std::vector<std::vector<const char*>>{{"--threads", "-1"},
                                                         {"--listen", "1.2.3.4"},
                                                         {"--listen", "h:70000"},
                                                         {"--idle-timeout", "soon"},
                                                         {"--txn-timeout", "0"},
                                                         {"--bogus"},
                                                         {"--max-frame-bytes", "2GiB"}}) {
    ParseOutcome o = parse(args);
    EXPECT_EQ(o.action, ParseOutcome::Action::kExit) << args[0];
    EXPECT_EQ(o.exit_code, 2) << args[0];
    EXPECT_FALSE(o.output.empty());
  }
}

TEST(Config, HelpExitsZero) {
  ParseOutcome o = parse({"--help"});
  EXPECT_EQ(o.action, ParseOutcome::Action::kExit);
  EXPECT_EQ(o.exit_code, 0);
  EXPECT_NE(o.output.find("--max-txns-per-connection"), std::string::npos);
}

TEST(Config, DurationsAndEndpoints) {
  EXPECT_EQ(parse_duration("250ms"), 250ms);
  EXPECT_EQ(parse_duration("5"), 5s);
  EXPECT_EQ(parse_duration("5s"), 5s);
  EXPECT_EQ(parse_duration("2m"), 120s);
  EXPECT_EQ(parse_duration("1h"), 3600s);
  EXPECT_FALSE(parse_duration(""));
  EXPECT_FALSE(parse_duration("s"));
  EXPECT_FALSE(parse_duration("5x"));
  EXPECT_FALSE(parse_duration("-5s"));
  EXPECT_FALSE(parse_duration("99999999999999h"));
  auto e = parse_endpoint("127.0.0.1:80");
  ASSERT_TRUE(e);
  EXPECT_EQ(e->host, "127.0.0.1");
  EXPECT_EQ(e->port, 80);
  e = parse_endpoint("[::]:7379");
  ASSERT_TRUE(e);
  EXPECT_EQ(e->host, "::");
  EXPECT_EQ(e->to_string(), "[::]:7379");
  EXPECT_FALSE(parse_endpoint("::1:80"));
  EXPECT_FALSE(parse_endpoint("host:"));
  EXPECT_FALSE(parse_endpoint(":80"));
  EXPECT_FALSE(parse_endpoint("host:8o"));
}

}  // namespace
}  // namespace kv::server

namespace kv::server {
namespace {

// TLS flags: applied, from the command line and the config file, and checked in pairs.
TEST(Config, TlsFlagsAndConfigKeys) {
  ParseOutcome o = parse({"--tls-cert", "s.pem", "--tls-key", "s.key", "--tls-ca", "ca.pem",
                          "--tls-require-client-cert", "--metrics-listen", "127.0.0.1:0",
                          "--metrics-tls-cert", "m.pem", "--metrics-tls-key", "m.key"});
  ASSERT_EQ(o.action, ParseOutcome::Action::kRun) << o.output;
  EXPECT_EQ(o.config.tls_cert, "s.pem");
  EXPECT_EQ(o.config.tls_key, "s.key");
  EXPECT_EQ(o.config.tls_ca, "ca.pem");
  EXPECT_TRUE(o.config.tls_require_client_cert);
  EXPECT_EQ(o.config.metrics_tls_cert, "m.pem");
  EXPECT_NE(o.config.describe().find("tls=mutual"), std::string::npos);
  EXPECT_TRUE(parse({}).config.tls_cert.empty());

  const std::string file = ::testing::TempDir() + "kovan-tls-config.toml";
  {
    std::FILE* f = std::fopen(file.c_str(), "w");
    ASSERT_NE(f, nullptr);
    std::fputs("tls-cert = \"/etc/kovan/s.pem\"\ntls-key = \"/etc/kovan/s.key\"\n", f);
    std::fclose(f);
  }
  o = parse({"--config", file.c_str()});
  ASSERT_EQ(o.action, ParseOutcome::Action::kRun) << o.output;
  EXPECT_EQ(o.config.tls_cert, "/etc/kovan/s.pem");
  EXPECT_EQ(o.config.tls_key, "/etc/kovan/s.key");
  std::remove(file.c_str());

  // The handshake deadline: --frame-timeout, 30 s when that is 0, capped by --idle-timeout.
  EXPECT_EQ(parse({"--frame-timeout", "2s"}).config.tls_handshake_timeout(), 2s);
  EXPECT_EQ(parse({"--frame-timeout", "0", "--idle-timeout", "0"}).config.tls_handshake_timeout(),
            30s);
  EXPECT_EQ(parse({"--idle-timeout", "1s"}).config.tls_handshake_timeout(), 1s);

  for (auto [args, message] : std::vector<std::pair<std::vector<const char*>, std::string>>{
           {{"--tls-cert", "s.pem"}, "--tls-cert and --tls-key must be given together"},
           {{"--tls-key", "s.key"}, "--tls-cert and --tls-key must be given together"},
           {{"--tls-ca", "ca.pem"}, "--tls-ca needs --tls-cert"},
           {{"--tls-cert", "s.pem", "--tls-key", "s.key", "--tls-require-client-cert"},
            "--tls-require-client-cert needs --tls-ca"},
           {{"--tls-cert", "s.pem", "--tls-key", "s.key", "--tls-ca", "ca.pem",
             "--tls-client-cert-login"},
            "--tls-client-cert-login needs --tls-ca (the CA that signs client certificates) and "
            "--users"},
           {{"--tls-cert", "s.pem", "--tls-key", "s.key", "--tls-client-cert-login"},
            "--tls-client-cert-login needs --tls-ca"},
           {{"--metrics-tls-cert", "m.pem", "--metrics-tls-key", "m.key"},
            "--metrics-tls-cert needs --metrics-listen"},
           {{"--metrics-listen", "127.0.0.1:0", "--metrics-tls-key", "m.key"},
            "--metrics-tls-cert and --metrics-tls-key must be given together"}}) {
    o = parse(args);
    EXPECT_EQ(o.exit_code, 2) << message;
    EXPECT_NE(o.output.find(message), std::string::npos) << o.output;
  }
}

}  // namespace
}  // namespace kv::server
