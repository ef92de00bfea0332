// Test helpers for durable kovan-server processes (--data-dir): a temporary data directory,
// a server started on it, raw-socket request helpers that tell "acknowledged" from "lost
// with the connection", and kovan-cli as a child process.
#pragma once

#include <algorithm>
#include <cstdlib>
#include <memory>
#include <optional>
#include <random>
#include <string>
#include <vector>

#include "server_process.hpp"

namespace kv::test {

// A fresh directory under the temp dir, removed (with what it holds) at the end.
class TempDir {
 public:
  explicit TempDir(const std::string& name) : path_(temp_path(name)) {
    std::error_code ignored;
    fs::remove_all(path_, ignored);
    fs::create_directories(path_);
  }
  ~TempDir() {
    std::error_code ignored;
    fs::remove_all(path_, ignored);
  }
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;
  [[nodiscard]] const fs::path& path() const { return path_; }
  [[nodiscard]] std::string str() const { return path_.string(); }

 private:
  fs::path path_;
};

// A kovan-server on 127.0.0.1 (any port) with --data-dir `dir` and `extra` flags. Waits for
// the port; port() is 0 when it did not come up (the test then reads output()).
class DurableServer {
 public:
  DurableServer(const std::string& dir, std::vector<std::string> extra, const std::string& tag,
                std::chrono::milliseconds start_timeout = 60s) {
    std::vector<std::string> args = {"--listen",   "127.0.0.1:0", "--summary-interval", "0",
                                     "--data-dir", dir,           "--shutdown-grace",   "200ms"};
    // Two workers unless the test chooses.
    if (std::find(extra.begin(), extra.end(), "--threads") == extra.end()) {
      args.insert(args.end(), {"--threads", "2"});
    }
    args.insert(args.end(), extra.begin(), extra.end());
    proc_ = std::make_unique<ServerProcess>(args, tag);
    port_ = proc_->wait_for_port(start_timeout);
  }
  [[nodiscard]] std::uint16_t port() const { return port_; }
  ServerProcess& proc() { return *proc_; }
  [[nodiscard]] std::string output() const { return proc_->output(); }
  // kill -9 and reap.
  void crash() {
    proc_->signal(SIGKILL);
    (void)proc_->wait_exit(30s);
  }
  // SIGTERM; the exit code (-1 if it did not exit).
  int stop() {
    proc_->signal(SIGTERM);
    return proc_->wait_exit(30s);
  }

 private:
  std::unique_ptr<ServerProcess> proc_;
  std::uint16_t port_ = 0;
};

// One request, one response; nullopt when the connection broke first (the outcome of a
// write is then unknown).
inline std::optional<pb::Response> try_call(Client& c, const pb::Request& r,
                                            std::chrono::milliseconds timeout = 30s) {
  if (!c.send(r)) return std::nullopt;
  return c.recv(timeout);
}

// The current revision (the header of a PING), 0 on failure.
inline std::uint64_t current_revision(std::uint16_t port) {
  Client c(port);
  auto r = try_call(c, ping(1));
  return r ? r->header().revision() : 0;
}

// Every live key with the given prefix (several scans when the frame limit cuts one).
inline std::vector<pb::KeyValue> scan_prefix(std::uint16_t port, const std::string& prefix) {
  std::vector<pb::KeyValue> out;
  Client c(port);
  std::string start = prefix;
  for (std::uint64_t id = 1;; ++id) {
    pb::Request r;
    r.set_id(id);
    auto* s = r.mutable_scan();
    s->set_start(start);
    if (prefix.empty()) {
      s->set_end("");
    } else {
      std::string end = prefix;
      end.back() = static_cast<char>(end.back() + 1);
      s->set_end(end);
    }
    auto resp = try_call(c, r);
    if (!resp || resp->status().code() != pb::Status::OK) {
      ADD_FAILURE() << "scan failed: " << (resp ? resp->ShortDebugString() : "no response");
      return out;
    }
    for (const auto& kv : resp->scan().kvs()) out.push_back(kv);
    if (!resp->scan().more() || resp->scan().kvs_size() == 0) return out;
    start = out.back().key() + std::string(1, '\0');
  }
}

inline std::string cli_bin() { return KOVAN_CLI_BIN; }

// Runs kovan-cli with `args`; its exit code, stdout and stderr in `output`.
inline int run_cli(const std::vector<std::string>& args, std::string& output) {
  const fs::path out = temp_path("cli.out");
  std::vector<std::string> argv_s = {cli_bin()};
  argv_s.insert(argv_s.end(), args.begin(), args.end());
  std::vector<char*> argv;
  for (auto& a : argv_s) argv.push_back(a.data());
  argv.push_back(nullptr);
  posix_spawn_file_actions_t actions;
  posix_spawn_file_actions_init(&actions);
  posix_spawn_file_actions_addopen(&actions, 1, out.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
  posix_spawn_file_actions_adddup2(&actions, 1, 2);
  pid_t pid = -1;
  const int rc = posix_spawn(&pid, argv_s[0].c_str(), &actions, nullptr, argv.data(), environ);
  posix_spawn_file_actions_destroy(&actions);
  if (rc != 0) return -1;
  int status = 0;
  ::waitpid(pid, &status, 0);
  output = read_file(out);
  std::error_code ignored;
  fs::remove(out, ignored);
  return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
}

// A seed for randomized tests: $KOVAN_TEST_SEED or a fresh one (printed by the caller).
inline std::uint64_t test_seed() {
  const char* env = std::getenv("KOVAN_TEST_SEED");
  if (env != nullptr && *env != '\0') return std::strtoull(env, nullptr, 10);
  return std::random_device{}();
}

}  // namespace kv::test
