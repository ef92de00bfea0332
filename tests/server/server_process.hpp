// Test helpers for the kovan-server binary as a child process: spawn it with flags (and
// optionally a lower RLIMIT_NOFILE), read its log, its memory (/proc/PID/status) and CPU
// time (/proc/PID/stat), and scrape its metrics endpoint.
#pragma once

#include <fcntl.h>
#include <signal.h>
#include <spawn.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <regex>
#include <sstream>

#include "test_client.hpp"

extern char** environ;

namespace kv::test {

namespace fs = std::filesystem;

inline std::string read_file(const fs::path& p) {
  std::ifstream in(p);
  std::stringstream s;
  s << in.rdbuf();
  return s.str();
}

// Under ASan or TSan the server's resident set measures the sanitizer's shadow memory and
// quarantine more than what the server allocates: tests check RSS bounds only in plain
// builds (and check the server's own byte accounting in every build).
#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
inline constexpr bool kRssIsMeaningful = false;
#else
inline constexpr bool kRssIsMeaningful = true;
#endif

// The server binary under test: KOVAN_SERVER_BIN, or $KOVAN_TEST_SERVER_BIN when set (to run
// the process tests against another build of the server, e.g. an older one).
inline std::string server_bin() {
  const char* env = std::getenv("KOVAN_TEST_SERVER_BIN");
  return env != nullptr && *env != '\0' ? std::string(env) : std::string(KOVAN_SERVER_BIN);
}

inline fs::path temp_path(const std::string& name) {
  return fs::temp_directory_path() / ("kovan-test-" + std::to_string(::getpid()) + "-" + name);
}

// Occurrences of `needle` in `text`.
inline std::size_t count_of(const std::string& text, const std::string& needle) {
  std::size_t n = 0;
  for (auto at = text.find(needle); at != std::string::npos; at = text.find(needle, at + 1)) ++n;
  return n;
}

// A kovan-server child process whose stdout and stderr go to a file.
class ServerProcess {
 public:
  // `max_files`: when non-zero, the child starts with RLIMIT_NOFILE set to it (soft and
  // hard), through prlimit(1) exec'ing the server: the limit is in place before the server
  // reads it at start (it raises its soft limit to the hard one), so there is no window.
  explicit ServerProcess(std::vector<std::string> args, const std::string& tag = "server",
                         rlim_t max_files = 0)
      : log_(temp_path(tag + ".log")) {
    const std::string bin = server_bin();
    std::vector<std::string> argv_s;
    if (max_files != 0) {
      argv_s = {"/usr/bin/prlimit",
                "--nofile=" + std::to_string(max_files) + ":" + std::to_string(max_files), "--"};
    }
    argv_s.push_back(bin);
    argv_s.insert(argv_s.end(), args.begin(), args.end());
    std::vector<char*> argv;
    for (auto& a : argv_s) argv.push_back(a.data());
    argv.push_back(nullptr);
    posix_spawn_file_actions_t actions;
    posix_spawn_file_actions_init(&actions);
    posix_spawn_file_actions_addopen(&actions, 1, log_.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
    posix_spawn_file_actions_adddup2(&actions, 1, 2);
    // prlimit(1) execs the server in the same process, so pid_ is the server's.
    const int rc = posix_spawn(&pid_, argv_s[0].c_str(), &actions, nullptr, argv.data(), environ);
    posix_spawn_file_actions_destroy(&actions);
    EXPECT_EQ(rc, 0);
  }
  ~ServerProcess() {
    if (!exited_ && pid_ > 0) {
      ::kill(pid_, SIGKILL);
      int status = 0;
      ::waitpid(pid_, &status, 0);
    }
    std::error_code ignored;
    fs::remove(log_, ignored);
  }
  ServerProcess(const ServerProcess&) = delete;
  ServerProcess& operator=(const ServerProcess&) = delete;

  [[nodiscard]] pid_t pid() const { return pid_; }
  std::string output() const { return read_file(log_); }

  // The client port from the start-up line ("listening on HOST:PORT"), 0 if it does not
  // appear within the deadline.
  std::uint16_t wait_for_port(std::chrono::milliseconds timeout = 10s) {
    std::uint16_t port = 0;
    eventually(
        [&] {
          std::smatch m;
          const std::string out = output();
          static const std::regex re("listening on [^ ]*:([0-9]+)");
          if (std::regex_search(out, m, re)) port = static_cast<std::uint16_t>(std::stoi(m[1]));
          return port != 0 || has_exited();
        },
        timeout);
    return port;
  }
  std::uint16_t metrics_port() const {
    std::smatch m;
    const std::string out = output();
    static const std::regex re("metrics on port ([0-9]+)");
    if (std::regex_search(out, m, re)) return static_cast<std::uint16_t>(std::stoi(m[1]));
    return 0;
  }
  // True once `text` appears in the log (within `timeout`).
  bool wait_for_log(const std::string& text, std::chrono::milliseconds timeout = 10s) {
    return eventually([&] { return output().find(text) != std::string::npos; }, timeout);
  }

  // A "Vm...:" field of /proc/PID/status in KiB (VmRSS, VmHWM), 0 if unreadable.
  std::uint64_t status_kib(const std::string& field) const {
    const std::string s = read_file("/proc/" + std::to_string(pid_) + "/status");
    const auto at = s.find(field + ":");
    if (at == std::string::npos) return 0;
    return std::strtoull(s.c_str() + at + field.size() + 1, nullptr, 10);
  }
  // Resets VmHWM to the current resident set (Linux: "5" to /proc/PID/clear_refs).
  bool reset_peak() const {
    std::ofstream out("/proc/" + std::to_string(pid_) + "/clear_refs");
    out << "5";
    out.flush();
    return static_cast<bool>(out);
  }
  std::uint64_t rss_kib() const { return status_kib("VmRSS"); }
  std::uint64_t hwm_kib() const { return status_kib("VmHWM"); }

  // User + system CPU time consumed so far, in clock ticks (/proc/PID/stat fields 14, 15).
  std::uint64_t cpu_ticks() const {
    const std::string s = read_file("/proc/" + std::to_string(pid_) + "/stat");
    const auto paren = s.rfind(')');
    if (paren == std::string::npos) return 0;
    std::istringstream in(s.substr(paren + 2));
    std::string field;
    std::uint64_t utime = 0;
    std::uint64_t stime = 0;
    for (int i = 3; i <= 15 && in >> field; ++i) {
      if (i == 14) utime = std::strtoull(field.c_str(), nullptr, 10);
      if (i == 15) stime = std::strtoull(field.c_str(), nullptr, 10);
    }
    return utime + stime;
  }

  bool has_exited() {
    if (exited_) return true;
    int status = 0;
    if (::waitpid(pid_, &status, WNOHANG) == pid_) {
      exited_ = true;
      exit_code_ = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
    }
    return exited_;
  }
  // Exit code, or -1 if it has not exited within `timeout`.
  int wait_exit(std::chrono::milliseconds timeout = 10s) {
    return eventually([&] { return has_exited(); }, timeout) ? exit_code_ : -1;
  }
  void signal(int sig) { ::kill(pid_, sig); }

 private:
  fs::path log_;
  pid_t pid_ = -1;
  bool exited_ = false;
  int exit_code_ = -1;
};

// GET /metrics from 127.0.0.1:port; the whole HTTP response, empty on failure.
inline std::string scrape(std::uint16_t port, std::chrono::milliseconds timeout = 5s) {
  Client http(port);
  if (!http.connected() || !http.send_raw("GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n")) return {};
  std::string body;
  char buf[4096];
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  for (;;) {
    const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
        deadline - std::chrono::steady_clock::now());
    if (left.count() <= 0) return {};
    pollfd p{http.fd(), POLLIN, 0};
    if (::poll(&p, 1, static_cast<int>(left.count())) <= 0) return {};
    const ssize_t n = ::recv(http.fd(), buf, sizeof buf, 0);
    if (n <= 0) break;
    body.append(buf, static_cast<std::size_t>(n));
  }
  return body;
}

// The value of an unlabelled sample `name` in a scrape, or -1.
inline double metric(const std::string& scraped, const std::string& name) {
  const auto at = scraped.find("\n" + name + " ");
  if (at == std::string::npos) return -1;
  return std::strtod(scraped.c_str() + at + name.size() + 2, nullptr);
}

}  // namespace kv::test
