// Command-line validation of kovan-bench: good arguments resolve, bad ones give a clear
// message and exit code 2.
#include "options.hpp"

#include <gtest/gtest.h>

#include <string>
#include <vector>

namespace kv::bench {
namespace {

ParsedArgs parse(std::vector<std::string> args) {
  args.insert(args.begin(), "kovan-bench");
  return parse_args(args);
}

void expect_error(std::vector<std::string> args, const std::string& fragment) {
  const ParsedArgs p = parse(args);
  std::string joined;
  for (const auto& a : args) joined += a + " ";
  EXPECT_EQ(p.exit_code, 2) << joined;
  EXPECT_NE(p.message.find(fragment), std::string::npos)
      << joined << "\nmessage: " << p.message << "\nexpected to contain: " << fragment;
}

TEST(Options, DefaultsAndOverrides) {
  ParsedArgs p = parse({"run"});
  ASSERT_EQ(p.exit_code, -1) << p.message;
  EXPECT_EQ(p.command, ParsedArgs::Command::kRun);
  EXPECT_EQ(p.run.target.protocol, Target::Protocol::kKovan);
  EXPECT_EQ(p.run.target.port, 7379);
  EXPECT_EQ(p.run.workload, "ycsb-a");
  EXPECT_EQ(p.run.mix.distribution, Distribution::kZipfian);

  p = parse({"run",
             "--target",
             "redis://localhost:6390",
             "--workload",
             "mixed",
             "--read-ratio",
             "0.9",
             "--distribution",
             "latest",
             "--connections",
             "8",
             "--threads",
             "2",
             "--pipeline",
             "16",
             "--duration",
             "2.5",
             "--warmup",
             "0",
             "--rate",
             "1000",
             "--records",
             "500",
             "--value-size",
             "32",
             "--seed",
             "9",
             "--load",
             "--json",
             "out.json"});
  ASSERT_EQ(p.exit_code, -1) << p.message;
  EXPECT_EQ(p.run.target.protocol, Target::Protocol::kRedis);
  EXPECT_EQ(p.run.target.host, "127.0.0.1");
  EXPECT_EQ(p.run.target.port, 6390);
  EXPECT_DOUBLE_EQ(p.run.mix.read, 0.9);
  EXPECT_NEAR(p.run.mix.update, 0.1, 1e-12);
  EXPECT_EQ(p.run.mix.distribution, Distribution::kLatest);
  EXPECT_EQ(p.run.connections, 8u);
  EXPECT_EQ(p.run.threads, 2u);
  EXPECT_EQ(p.run.pipeline, 16u);
  EXPECT_DOUBLE_EQ(p.run.duration_s, 2.5);
  EXPECT_DOUBLE_EQ(p.run.rate, 1000);
  EXPECT_TRUE(p.run.load);
  EXPECT_EQ(p.run.json_path, "out.json");

  p = parse({"run", "--workload", "ycsb-d"});
  EXPECT_EQ(p.run.mix.distribution, Distribution::kLatest);

  p = parse({"stall", "--txns", "8", "--keys", "2000", "--rate", "0", "--duration", "3",
             "--interval", "0.5"});
  ASSERT_EQ(p.exit_code, -1) << p.message;
  EXPECT_EQ(p.command, ParsedArgs::Command::kStall);
  EXPECT_EQ(p.stall.txns, 8u);
  EXPECT_EQ(p.stall.keys, 2000u);
}

TEST(Options, HelpExitsZero) {
  ParsedArgs p = parse({"run", "--help"});
  EXPECT_EQ(p.exit_code, 0);
  EXPECT_NE(p.message.find("--workload"), std::string::npos) << p.message;
  p = parse({"--help"});
  EXPECT_EQ(p.exit_code, 0);
  EXPECT_NE(p.message.find("stall"), std::string::npos) << p.message;
}

TEST(Options, BadTargetsAreRefused) {
  expect_error({"run", "--target", "127.0.0.1:7379"}, "must look like kovan://HOST:PORT");
  expect_error({"run", "--target", "http://127.0.0.1:80"}, "unknown target scheme 'http'");
  expect_error({"run", "--target", "kovan://10.0.0.5:7379"}, "only sends traffic to 127.0.0.1");
  expect_error({"run", "--target", "kovan://example.com:7379"}, "only sends traffic to 127.0.0.1");
  expect_error({"run", "--target", "kovan://127.0.0.1:0"}, "not a number in 1..65535");
  expect_error({"run", "--target", "kovan://127.0.0.1:99999"}, "not a number in 1..65535");
  expect_error({"run", "--target", "kovan://127.0.0.1"}, "needs HOST:PORT");
  expect_error({"stall", "--target", "redis://127.0.0.1:6379"}, "stall needs a kovan:// target");
}

TEST(Options, BadWorkloadsAreRefused) {
  expect_error({"run", "--workload", "ycsb-z"}, "unknown workload 'ycsb-z'");
  expect_error({"run", "--target", "redis://127.0.0.1:6379", "--workload", "ycsb-e"},
               "redis:// target does not offer");
  expect_error({"run", "--target", "redis://127.0.0.1:6379", "--workload", "txn"},
               "redis:// target does not offer");
  expect_error({"run", "--workload", "get", "--read-ratio", "0.5"},
               "--read-ratio applies only to --workload mixed");
  expect_error({"run", "--workload", "mixed", "--read-ratio", "1.5"},
               "--read-ratio must be between 0 and 1");
  expect_error({"run", "--distribution", "pareto"}, "unknown --distribution 'pareto'");
}

TEST(Options, BadNumbersAreRefused) {
  expect_error({"run", "--connections", "0"}, "--connections must be in 1..10000");
  expect_error({"run", "--connections", "2", "--threads", "4"},
               "--threads must not exceed --connections");
  expect_error({"run", "--pipeline", "0"}, "--pipeline must be in 1..4096");
  expect_error({"run", "--duration", "0"}, "--duration must be in (0, 3600]");
  expect_error({"run", "--duration", "7200"}, "--duration must be in (0, 3600]");
  expect_error({"run", "--warmup", "-1"}, "--warmup must be in [0, 600]");
  expect_error({"run", "--rate", "-5"}, "--rate must be in");
  expect_error({"run", "--records", "0"}, "--records must be in");
  expect_error({"run", "--value-size", "2000000"}, "--value-size must be at most");
  expect_error({"run", "--txn-keys", "0"}, "--txn-keys must be in 1..64");
  expect_error({"run", "--connections", "abc"}, "--connections");
  expect_error({"stall", "--interval", "10", "--duration", "5"}, "--interval must be");
  expect_error({"stall", "--mode", "disk"}, "--mode must be txn or thread");
  expect_error({"stall", "--keys", "10", "--reads-per-txn", "20"},
               "--reads-per-txn must not exceed --keys");
}

TEST(Options, UnknownOptionsAndMissingCommandExitTwo) {
  expect_error({"run", "--frobnicate"}, "frobnicate");
  expect_error({"run", "--connections"}, "--connections");
  const ParsedArgs p = parse({});
  EXPECT_EQ(p.exit_code, 2);
  EXPECT_FALSE(p.message.empty());
  expect_error({"walk"}, "walk");
}

}  // namespace
}  // namespace kv::bench

namespace kv::bench {
namespace {

// TLS targets: kovans:// and rediss:// schemes, or --tls, with the CA and client
// certificate options; the TLS options without TLS, or half a certificate, are refused.
TEST(Options, TlsTargetsAndFlags) {
  ParsedArgs p = parse({"run", "--target", "kovans://127.0.0.1:7400", "--tls-ca", "ca.pem"});
  ASSERT_EQ(p.exit_code, -1) << p.message;
  EXPECT_TRUE(p.run.target.tls);
  EXPECT_EQ(p.run.target.tls_ca, "ca.pem");
  EXPECT_EQ(p.run.target.to_string(), "kovans://127.0.0.1:7400");
  p = parse({"run", "--target", "rediss://localhost:6400"});
  ASSERT_EQ(p.exit_code, -1) << p.message;
  EXPECT_EQ(p.run.target.protocol, Target::Protocol::kRedis);
  EXPECT_TRUE(p.run.target.tls);
  p = parse({"run", "--target", "kovan://127.0.0.1:7400", "--tls", "--tls-cert", "a.pem",
             "--tls-key", "a.key"});
  ASSERT_EQ(p.exit_code, -1) << p.message;
  EXPECT_TRUE(p.run.target.tls);
  EXPECT_EQ(p.run.target.tls_cert, "a.pem");
  p = parse({"run", "--target", "kovan://127.0.0.1:7400"});
  EXPECT_FALSE(p.run.target.tls);
  p = parse({"stall", "--target", "kovans://127.0.0.1:7400", "--csv", "x.csv"});
  ASSERT_EQ(p.exit_code, -1) << p.message;
  EXPECT_TRUE(p.stall.target.tls);
  expect_error({"run", "--target", "kovan://127.0.0.1:7400", "--tls-ca", "ca.pem"},
               "need --tls or a kovans://");
  expect_error({"run", "--tls", "--tls-cert", "a.pem"}, "--tls-cert and --tls-key go together");
}

}  // namespace
}  // namespace kv::bench
