// A kovan-server child process for black-box client tests: started on 127.0.0.1 with
// port 0 (or a given port), its output in a temporary file, its chosen port read from the
// "listening on HOST:PORT" start-up line. Readiness is polled with a deadline, never slept.
#pragma once

#include <fcntl.h>
#include <signal.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdint>
#include <filesystem>
#include <fstream>
#include <functional>
#include <regex>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

extern char** environ;

namespace kv::test {

// Polls `done` until it holds or `deadline` passes; true when it held. The pause between
// polls only paces the polling; no ordering depends on it.
inline bool eventually(const std::function<bool()>& done,
                       std::chrono::milliseconds deadline = std::chrono::milliseconds(10000)) {
  const auto end = std::chrono::steady_clock::now() + deadline;
  while (std::chrono::steady_clock::now() < end) {
    if (done()) return true;
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
  return done();
}

class ServerProcess {
 public:
  // `port` 0: any free port.
  explicit ServerProcess(std::vector<std::string> extra_args = {}, std::uint16_t port = 0)
      : args_(std::move(extra_args)) {
    static int counter = 0;
    log_ = std::filesystem::temp_directory_path() /
           ("kovan-client-test-" + std::to_string(::getpid()) + "-" + std::to_string(counter++) +
            ".log");
    start(port);
  }
  ~ServerProcess() {
    kill(SIGKILL);
    std::error_code ignored;
    std::filesystem::remove(log_, ignored);
  }
  ServerProcess(const ServerProcess&) = delete;
  ServerProcess& operator=(const ServerProcess&) = delete;

  [[nodiscard]] std::uint16_t port() const { return port_; }
  [[nodiscard]] std::string address() const { return "127.0.0.1:" + std::to_string(port_); }
  [[nodiscard]] bool running() const { return pid_ > 0; }

  // Sends `sig` and reaps the process.
  void kill(int sig) {
    if (pid_ <= 0) return;
    ::kill(pid_, sig);
    int status = 0;
    ::waitpid(pid_, &status, 0);
    pid_ = -1;
  }

  // Starts the server again on the same port (after kill()).
  bool restart() {
    kill(SIGKILL);
    return start(port_);
  }

  [[nodiscard]] std::string output() const {
    std::ifstream in(log_);
    std::stringstream s;
    s << in.rdbuf();
    return s.str();
  }

 private:
  bool start(std::uint16_t port) {
    std::vector<std::string> argv_s = {KOVAN_SERVER_BIN,
                                       "--listen",
                                       "127.0.0.1:" + std::to_string(port),
                                       "--log-level",
                                       "info",
                                       "--summary-interval",
                                       "0"};
    argv_s.insert(argv_s.end(), args_.begin(), args_.end());
    std::vector<char*> argv;
    for (auto& a : argv_s) argv.push_back(a.data());
    argv.push_back(nullptr);
    posix_spawn_file_actions_t actions;
    posix_spawn_file_actions_init(&actions);
    posix_spawn_file_actions_addopen(&actions, 1, log_.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
    posix_spawn_file_actions_adddup2(&actions, 1, 2);
    const int rc = posix_spawn(&pid_, KOVAN_SERVER_BIN, &actions, nullptr, argv.data(), environ);
    posix_spawn_file_actions_destroy(&actions);
    if (rc != 0) {
      pid_ = -1;
      return false;
    }
    std::uint16_t found = 0;
    bool exited = false;
    eventually([&] {
      static const std::regex re("listening on [^ ]*:([0-9]+)");
      std::smatch m;
      const std::string out = output();
      if (std::regex_search(out, m, re)) found = static_cast<std::uint16_t>(std::stoi(m[1]));
      int status = 0;
      exited = found == 0 && ::waitpid(pid_, &status, WNOHANG) == pid_;
      return found != 0 || exited;
    });
    if (exited) pid_ = -1;
    port_ = found;
    return found != 0;
  }

  std::vector<std::string> args_;
  std::filesystem::path log_;
  pid_t pid_ = -1;
  std::uint16_t port_ = 0;
};

}  // namespace kv::test
