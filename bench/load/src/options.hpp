// Command-line interface of kovan-bench: the options of its subcommands and their parsing
// and validation. Parsing is a pure function of the arguments so that tests can check the
// error messages and exit codes without running anything.
//
//   kovan-bench run   --target kovan://127.0.0.1:7379 --workload ycsb-a --duration 10 ...
//   kovan-bench stall --target kovan://127.0.0.1:7379 --txns 4 --keys 10000 --rate 50000 ...
//
// Exit codes: 0 success (and --help), 1 the run failed (connection refused, server errors
// in a stall run), 2 bad arguments.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "generators.hpp"

namespace kv::bench {

struct Target {
  enum class Protocol : std::uint8_t { kKovan, kRedis };
  Protocol protocol = Protocol::kKovan;
  std::string host = "127.0.0.1";
  std::uint16_t port = 7379;
  // TLS: kovans:// / rediss:// targets, or --tls. The server certificate is verified
  // against tls_ca (default: the system store) and must name the target host.
  bool tls = false;
  std::string tls_ca;
  std::string tls_cert;  // client certificate and key (mutual TLS)
  std::string tls_key;
  // Authentication (docs/SECURITY.md), kovan targets only: every connection sends
  // AUTHENTICATE first. The password comes from --password-file or $KOVAN_PASSWORD.
  std::string user;
  std::string password;
  [[nodiscard]] std::string to_string() const;
};

// "kovan://HOST:PORT" or "redis://HOST:PORT" (kovans:// and rediss:// for TLS) with HOST 127.0.0.1
// or localhost (kovan-bench only sends traffic over loopback). On failure returns nullopt and sets
// `error`.
[[nodiscard]] std::optional<Target> parse_target(std::string_view text, std::string& error);

struct RunOptions {
  Target target;
  std::string workload = "ycsb-a";
  Mix mix;                  // resolved from workload, read_ratio and distribution
  double read_ratio = 0.5;  // mixed only
  std::uint64_t records = 100000;
  std::uint32_t value_size = 100;
  std::optional<Distribution> distribution;  // overrides the workload's default
  std::uint32_t connections = 50;
  std::uint32_t threads = 1;
  std::uint32_t pipeline = 1;
  double duration_s = 10;
  double warmup_s = 1;
  bool load = false;
  double load_timeout_s = 120;
  double rate = 0;  // total requests per second; 0: closed loop
  std::uint64_t seed = 1;
  std::uint32_t txn_keys = 4;  // keys per txn operation
  std::string json_path;
  bool progress = true;  // shown only when stderr is a terminal
  bool quiet = false;    // no final table
};

struct StallOptions {
  Target target;
  std::string mode = "txn";  // txn: stalled client transactions; thread: stalled worker thread
  std::uint32_t txns = 4;
  std::uint32_t reads_per_txn = 1000;
  std::uint64_t keys = 10000;
  std::uint32_t value_size = 100;
  double rate = 50000;  // updates per second (0: as fast as possible)
  std::uint32_t connections = 4;
  std::uint32_t pipeline = 16;
  double duration_s = 20;
  double interval_s = 1;
  std::uint32_t server_threads = 2;  // the server's --threads (thread mode places the stall)
  std::int64_t server_pid = 0;       // read RSS from /proc/PID/status when set
  std::string csv_path = "stall.csv";
  std::string png_path;  // plotted with gnuplot when set and gnuplot is installed
  std::string title;
  std::uint64_t seed = 1;
};

struct ParsedArgs {
  enum class Command : std::uint8_t { kNone, kRun, kStall };
  Command command = Command::kNone;
  // -1: proceed with `command`; otherwise exit with this code after printing `message`
  // (to stdout for exit 0, stderr otherwise).
  int exit_code = -1;
  std::string message;
  RunOptions run;
  StallOptions stall;
};

// args[0] is the program name.
[[nodiscard]] ParsedArgs parse_args(const std::vector<std::string>& args);

}  // namespace kv::bench
