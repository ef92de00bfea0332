#include "options.hpp"

#include <CLI/CLI.hpp>
#include <charconv>
#include <cstdlib>
#include <fstream>
#include <sstream>

namespace kv::bench {

std::string Target::to_string() const {
  return std::string(protocol == Protocol::kKovan ? "kovan" : "redis") + (tls ? "s://" : "://") +
         host + ":" + std::to_string(port);
}

std::optional<Target> parse_target(std::string_view text, std::string& error) {
  Target t;
  const std::size_t sep = text.find("://");
  if (sep == std::string_view::npos) {
    error =
        "target '" + std::string(text) + "' must look like kovan://HOST:PORT or redis://HOST:PORT";
    return std::nullopt;
  }
  const std::string_view scheme = text.substr(0, sep);
  if (scheme == "kovan" || scheme == "kovans") {
    t.protocol = Target::Protocol::kKovan;
  } else if (scheme == "redis" || scheme == "rediss") {
    t.protocol = Target::Protocol::kRedis;
  } else {
    error = "unknown target scheme '" + std::string(scheme) +
            "' (use kovan://, kovans://, redis:// or rediss://)";
    return std::nullopt;
  }
  t.tls = scheme == "kovans" || scheme == "rediss";
  const std::string_view rest = text.substr(sep + 3);
  const std::size_t colon = rest.rfind(':');
  if (colon == std::string_view::npos || colon == 0 || colon + 1 == rest.size()) {
    error = "target '" + std::string(text) + "' needs HOST:PORT after the scheme";
    return std::nullopt;
  }
  const std::string_view host = rest.substr(0, colon);
  const std::string_view port = rest.substr(colon + 1);
  unsigned value = 0;
  auto [p, ec] = std::from_chars(port.data(), port.data() + port.size(), value);
  if (ec != std::errc{} || p != port.data() + port.size() || value == 0 || value > 65535) {
    error = "target port '" + std::string(port) + "' is not a number in 1..65535";
    return std::nullopt;
  }
  if (host == "localhost" || host == "127.0.0.1") {
    t.host = "127.0.0.1";
  } else {
    error = "target host '" + std::string(host) +
            "' is not allowed: kovan-bench only sends traffic to 127.0.0.1 (or localhost)";
    return std::nullopt;
  }
  t.port = static_cast<std::uint16_t>(value);
  return t;
}

namespace {

// Returns an error message, or empty when the options are consistent.
std::string validate_run(RunOptions& o, const std::string& target, const std::string& dist,
                         bool read_ratio_given) {
  std::string error;
  auto t = parse_target(target, error);
  if (!t) return error;
  o.target = *t;
  auto mix = workload_mix(o.workload, o.read_ratio);
  if (!mix) {
    return "unknown workload '" + o.workload +
           "' (use ycsb-a, ycsb-b, ycsb-c, ycsb-d, ycsb-e, ycsb-f, get, set, mixed, txn)";
  }
  if (read_ratio_given && o.workload != "mixed")
    return "--read-ratio applies only to --workload mixed";
  if (o.read_ratio < 0 || o.read_ratio > 1) return "--read-ratio must be between 0 and 1";
  if (!dist.empty()) {
    o.distribution = parse_distribution(dist);
    if (!o.distribution)
      return "unknown --distribution '" + dist + "' (use zipfian, uniform or latest)";
    mix->distribution = *o.distribution;
  }
  o.mix = *mix;
  if (o.target.protocol == Target::Protocol::kRedis && needs_kovan(o.mix)) {
    return "workload '" + o.workload +
           "' needs scans or transactions, which the redis:// target does not offer";
  }
  if (o.records < 1 || o.records > 1'000'000'000) return "--records must be in 1..1000000000";
  if (o.value_size > (1u << 20)) return "--value-size must be at most 1048576 bytes";
  if (o.connections < 1 || o.connections > 10000) return "--connections must be in 1..10000";
  if (o.threads < 1 || o.threads > 256) return "--threads must be in 1..256";
  if (o.threads > o.connections) return "--threads must not exceed --connections";
  if (o.pipeline < 1 || o.pipeline > 4096) return "--pipeline must be in 1..4096";
  if (!(o.duration_s > 0 && o.duration_s <= 3600)) return "--duration must be in (0, 3600] seconds";
  if (!(o.warmup_s >= 0 && o.warmup_s <= 600)) return "--warmup must be in [0, 600] seconds";
  if (!(o.load_timeout_s > 0 && o.load_timeout_s <= 3600))
    return "--load-timeout must be in (0, 3600] seconds";
  if (!(o.rate >= 0 && o.rate <= 1e8))
    return "--rate must be in [0, 100000000] requests per second";
  if (o.txn_keys < 1 || o.txn_keys > 64) return "--txn-keys must be in 1..64";
  return {};
}

std::string validate_stall(StallOptions& o, const std::string& target) {
  std::string error;
  auto t = parse_target(target, error);
  if (!t) return error;
  o.target = *t;
  if (o.target.protocol != Target::Protocol::kKovan) return "stall needs a kovan:// target";
  if (o.mode != "txn" && o.mode != "thread") return "--mode must be txn or thread";
  if (o.mode == "txn" && (o.txns < 1 || o.txns > 4096)) return "--txns must be in 1..4096";
  if (o.mode == "thread" && (o.server_threads < 2 || o.server_threads > 1024))
    return "--server-threads must be in 2..1024 for --mode thread (worker 0 accepts connections "
           "and must not be stalled)";
  if (o.keys < 1 || o.keys > 100'000'000) return "--keys must be in 1..100000000";
  if (o.mode == "txn" && o.reads_per_txn > o.keys) return "--reads-per-txn must not exceed --keys";
  if (o.value_size > (1u << 20)) return "--value-size must be at most 1048576 bytes";
  if (!(o.rate >= 0 && o.rate <= 1e8)) return "--rate must be in [0, 100000000] updates per second";
  if (o.connections < 1 || o.connections > 1000) return "--connections must be in 1..1000";
  if (o.pipeline < 1 || o.pipeline > 4096) return "--pipeline must be in 1..4096";
  if (!(o.duration_s > 0 && o.duration_s <= 3600)) return "--duration must be in (0, 3600] seconds";
  if (!(o.interval_s >= 0.05 && o.interval_s <= o.duration_s))
    return "--interval must be at least 0.05 s and at most --duration";
  if (o.csv_path.empty()) return "--csv must name a file";
  return {};
}

}  // namespace

ParsedArgs parse_args(const std::vector<std::string>& args) {
  ParsedArgs out;
  CLI::App app{"kovan-bench: load generator for Kovan KV and Redis (loopback only)", "kovan-bench"};
  app.require_subcommand(1);

  std::string run_target = "kovan://127.0.0.1:7379";
  std::string run_dist;
  RunOptions& r = out.run;
  bool no_progress = false;
  CLI::App* run = app.add_subcommand("run", "Drive a workload against one target and report");
  run->add_option("--target", run_target,
                  "kovan://HOST:PORT or redis://HOST:PORT (kovans://, rediss://: TLS)")
      ->capture_default_str();
  Target tls_flags;  // --tls* options of either command, applied to its target below
  const auto add_tls = [&tls_flags](CLI::App* cmd) {
    cmd->add_flag("--tls", tls_flags.tls, "Connect with TLS (as kovans:// / rediss://)");
    cmd->add_option("--tls-ca", tls_flags.tls_ca,
                    "PEM CA file to verify the server with (default: the system store)")
        ->type_name("FILE");
    cmd->add_option("--tls-cert", tls_flags.tls_cert, "PEM client certificate (mutual TLS)")
        ->type_name("FILE");
    cmd->add_option("--tls-key", tls_flags.tls_key, "PEM key of --tls-cert")->type_name("FILE");
  };
  add_tls(run);
  run->add_option("--workload", r.workload,
                  "ycsb-a..ycsb-f (ycsb-e: kovan only), get, set, mixed, txn (kovan only)")
      ->capture_default_str();
  auto* rr = run->add_option("--read-ratio", r.read_ratio, "Share of reads for --workload mixed")
                 ->capture_default_str();
  run->add_option("--records", r.records, "Records in the key space")->capture_default_str();
  run->add_option("--value-size", r.value_size, "Value bytes")->capture_default_str();
  run->add_option("--distribution", run_dist,
                  "Key distribution zipfian|uniform|latest (default: the workload's)");
  run->add_option("--connections", r.connections, "TCP connections in all")->capture_default_str();
  run->add_option("--threads", r.threads, "Sender threads (keep <= client cores)")
      ->capture_default_str();
  run->add_option("--pipeline", r.pipeline, "Requests in flight per connection")
      ->capture_default_str();
  run->add_option("--duration", r.duration_s, "Measured seconds")->capture_default_str();
  run->add_option("--warmup", r.warmup_s, "Seconds run before measuring")->capture_default_str();
  run->add_flag("--load", r.load, "Insert every record before the run");
  run->add_option("--load-timeout", r.load_timeout_s, "Upper bound on the --load phase (s)")
      ->capture_default_str();
  run->add_option("--rate", r.rate,
                  "Open loop: total requests/s at scheduled times (0: closed loop)")
      ->capture_default_str();
  run->add_option("--seed", r.seed, "Random seed")->capture_default_str();
  run->add_option("--txn-keys", r.txn_keys, "Keys per txn operation")->capture_default_str();
  run->add_option("--json", r.json_path, "Write the results as JSON to this file");
  std::string user;
  std::string password_file;
  for (CLI::App* sub : {run}) {
    sub->add_option("--user", user,
                    "Authenticate as this user (password from --password-file or "
                    "$KOVAN_PASSWORD)")
        ->type_name("NAME");
    sub->add_option("--password-file", password_file, "File whose first line is the password")
        ->type_name("FILE");
  }
  run->add_flag("--no-progress", no_progress, "No live progress line");
  run->add_flag("--quiet", r.quiet, "No final table");

  std::string stall_target = "kovan://127.0.0.1:7379";
  StallOptions& s = out.stall;
  CLI::App* stall = app.add_subcommand(
      "stall", "Stall transactions or a server thread under an update load; sample memory");
  stall->add_option("--target", stall_target, "kovan://HOST:PORT")->capture_default_str();
  stall
      ->add_option("--mode", s.mode,
                   "txn: idle transactions holding snapshots; thread: a worker thread parked "
                   "in a reclaimer guard (server needs --enable-fault-injection)")
      ->capture_default_str();
  stall->add_option("--txns", s.txns, "Stalled transactions (mode txn)")->capture_default_str();
  stall->add_option("--reads-per-txn", s.reads_per_txn, "Keys each stalled transaction reads")
      ->capture_default_str();
  stall->add_option("--keys", s.keys, "Keys loaded and updated")->capture_default_str();
  stall->add_option("--value-size", s.value_size, "Value bytes")->capture_default_str();
  stall->add_option("--rate", s.rate, "Updates per second (0: as fast as possible)")
      ->capture_default_str();
  stall->add_option("--connections", s.connections, "Update connections")->capture_default_str();
  stall->add_option("--pipeline", s.pipeline, "Updates in flight per connection")
      ->capture_default_str();
  stall->add_option("--duration", s.duration_s, "Seconds")->capture_default_str();
  stall->add_option("--interval", s.interval_s, "Seconds between samples")->capture_default_str();
  stall
      ->add_option("--server-threads", s.server_threads,
                   "The server's worker threads (mode thread; at least 2)")
      ->capture_default_str();
  stall->add_option("--server-pid", s.server_pid, "Read the server's RSS from /proc/PID/status");
  stall->add_option("--csv", s.csv_path, "CSV output file")->capture_default_str();
  stall->add_option("--png", s.png_path, "Plot to this PNG (needs gnuplot)");
  stall->add_option("--title", s.title, "Plot title");
  stall->add_option("--seed", s.seed, "Random seed")->capture_default_str();
  add_tls(stall);
  stall->add_option("--user", user, "Authenticate as this user")->type_name("NAME");
  stall->add_option("--password-file", password_file, "File whose first line is the password")
      ->type_name("FILE");

  if (args.size() >= 2 && !args[1].empty() && args[1][0] != '-' && args[1] != "run" &&
      args[1] != "stall") {
    out.exit_code = 2;
    out.message = "kovan-bench: unknown command '" + args[1] +
                  "' (use run or stall; kovan-bench --help lists them)\n";
    return out;
  }
  std::vector<const char*> argv;
  argv.reserve(args.size());
  for (const auto& a : args) argv.push_back(a.c_str());
  try {
    app.parse(static_cast<int>(argv.size()), argv.data());
  } catch (const CLI::ParseError& e) {
    std::ostringstream o, err;
    const int rc = app.exit(e, o, err);
    if (rc == 0) {
      out.exit_code = 0;
      out.message = o.str();
    } else {
      out.exit_code = 2;
      out.message = "kovan-bench: " + std::string(e.what()) + "\nRun 'kovan-bench " +
                    (run->parsed()     ? "run "
                     : stall->parsed() ? "stall "
                                       : "") +
                    "--help' for the options.\n";
    }
    return out;
  }

  std::string error;
  if (run->parsed()) {
    out.command = ParsedArgs::Command::kRun;
    r.progress = !no_progress;
    error = validate_run(r, run_target, run_dist, rr->count() > 0);
  } else {
    out.command = ParsedArgs::Command::kStall;
    error = validate_stall(s, stall_target);
  }
  Target& target = run->parsed() ? r.target : s.target;
  target.tls = target.tls || tls_flags.tls;
  target.tls_ca = tls_flags.tls_ca;
  target.tls_cert = tls_flags.tls_cert;
  target.tls_key = tls_flags.tls_key;
  if (error.empty() && !target.tls &&
      !(tls_flags.tls_ca.empty() && tls_flags.tls_cert.empty() && tls_flags.tls_key.empty())) {
    error = "--tls-ca / --tls-cert / --tls-key need --tls or a kovans:// / rediss:// target";
  }
  if (error.empty() && tls_flags.tls_cert.empty() != tls_flags.tls_key.empty()) {
    error = "--tls-cert and --tls-key go together";
  }
  if (error.empty() && !user.empty()) {
    std::string password;
    if (!password_file.empty()) {
      std::ifstream in(password_file);
      if (!in) error = "cannot read the password file " + password_file;
      std::getline(in, password);
      if (!password.empty() && password.back() == '\r') password.pop_back();
    } else if (const char* env = std::getenv("KOVAN_PASSWORD"); env != nullptr) {
      password = env;
    }
    if (error.empty() && password.empty()) {
      error = "--user needs a password: --password-file FILE or $KOVAN_PASSWORD";
    }
    Target& t = run->parsed() ? r.target : s.target;
    if (t.protocol != Target::Protocol::kKovan) error = "--user is for kovan:// targets";
    // The load loop authenticates before its TLS handshake would start: refuse the pair
    // rather than send a password in the clear (`stall` uses the client library: both work).
    if (error.empty() && run->parsed() && t.tls) {
      error = "--user with TLS is not supported by `run` yet (use a plain kovan:// target)";
    }
    t.user = user;
    t.password = password;
  }
  if (!error.empty()) {
    out.exit_code = 2;
    out.message = "kovan-bench: " + error + "\n";
  }
  return out;
}

}  // namespace kv::bench
