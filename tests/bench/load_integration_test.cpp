// kovan-bench end to end: short runs against a real kovan-server process and a real
// redis-server process on loopback, checked through the --json output, the exit codes and
// the stall CSV.
#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <spawn.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <arpa/inet.h>
#include <gtest/gtest.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <regex>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

extern char** environ;

namespace {

namespace fs = std::filesystem;
using namespace std::chrono_literals;

std::string read_file(const fs::path& p) {
  std::ifstream f(p);
  std::stringstream s;
  s << f.rdbuf();
  return s.str();
}

fs::path temp_dir() {
  static const fs::path dir = [] {
    fs::path d = fs::temp_directory_path() / ("kovan-bench-it-" + std::to_string(::getpid()));
    fs::create_directories(d);
    return d;
  }();
  return dir;
}

// A child process with stdout and stderr sent to a file; killed (SIGTERM, then SIGKILL)
// and reaped by PID when destroyed.
class Child {
 public:
  Child(const std::vector<std::string>& args, const std::string& log_name)
      : log_(temp_dir() / log_name) {
    posix_spawn_file_actions_t fa;
    posix_spawn_file_actions_init(&fa);
    posix_spawn_file_actions_addopen(&fa, 1, log_.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
    posix_spawn_file_actions_adddup2(&fa, 1, 2);
    std::vector<char*> argv;
    for (const auto& a : args) argv.push_back(const_cast<char*>(a.c_str()));
    argv.push_back(nullptr);
    if (posix_spawn(&pid_, argv[0], &fa, nullptr, argv.data(), environ) != 0) pid_ = -1;
    posix_spawn_file_actions_destroy(&fa);
  }
  ~Child() { stop(); }
  Child(const Child&) = delete;
  Child& operator=(const Child&) = delete;

  [[nodiscard]] pid_t pid() const { return pid_; }
  [[nodiscard]] std::string output() const { return read_file(log_); }

  // Waits (bounded) for the child to exit; returns its exit status, or -1.
  int wait_exit(std::chrono::milliseconds limit) {
    const auto deadline = std::chrono::steady_clock::now() + limit;
    while (pid_ > 0) {
      int status = 0;
      const pid_t r = ::waitpid(pid_, &status, WNOHANG);
      if (r == pid_) {
        pid_ = -1;
        return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
      }
      if (std::chrono::steady_clock::now() > deadline) return -1;
      std::this_thread::sleep_for(10ms);  // polling an external process, not ordering threads
    }
    return -1;
  }

  void stop() {
    if (pid_ <= 0) return;
    ::kill(pid_, SIGTERM);
    if (wait_exit(5000ms) == -1 && pid_ > 0) {
      ::kill(pid_, SIGKILL);
      (void)wait_exit(5000ms);
    }
  }

 private:
  fs::path log_;
  pid_t pid_ = -1;
};

// Runs kovan-bench to completion (bounded) and returns its exit status.
int run_bench(const std::vector<std::string>& args, std::string* output = nullptr,
              const char* log = "bench.log") {
  std::vector<std::string> full = {KOVAN_BENCH_BIN};
  full.insert(full.end(), args.begin(), args.end());
  Child c(full, log);
  const int rc = c.wait_exit(60s);
  if (output) *output = c.output();
  return rc;
}

// Polls the server log for its "listening on HOST:PORT" line.
std::uint16_t wait_for_kovan_port(Child& server) {
  const auto deadline = std::chrono::steady_clock::now() + 10s;
  static const std::regex re("listening on [^ ]*:([0-9]+)");
  while (std::chrono::steady_clock::now() < deadline) {
    std::smatch m;
    const std::string out = server.output();
    if (std::regex_search(out, m, re)) return static_cast<std::uint16_t>(std::stoi(m[1]));
    std::this_thread::sleep_for(20ms);
  }
  return 0;
}

std::uint16_t free_port() {
  const int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  a.sin_port = 0;
  socklen_t len = sizeof a;
  if (::bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0 ||
      ::getsockname(fd, reinterpret_cast<sockaddr*>(&a), &len) != 0) {
    ::close(fd);
    return 0;
  }
  ::close(fd);
  return ntohs(a.sin_port);
}

// True once a PING on `port` is answered +PONG (bounded).
bool wait_for_redis(std::uint16_t port) {
  const auto deadline = std::chrono::steady_clock::now() + 10s;
  while (std::chrono::steady_clock::now() < deadline) {
    const int fd = ::socket(AF_INET, SOCK_STREAM, 0);
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    a.sin_port = htons(port);
    if (::connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) == 0) {
      const char ping[] = "PING\r\n";
      char buf[16] = {};
      if (::write(fd, ping, sizeof ping - 1) == sizeof ping - 1 &&
          ::read(fd, buf, sizeof buf - 1) > 0 && std::string(buf).rfind("+PONG", 0) == 0) {
        ::close(fd);
        return true;
      }
    }
    ::close(fd);
    std::this_thread::sleep_for(20ms);
  }
  return false;
}

std::int64_t json_int(const std::string& json, const std::string& key) {
  const std::regex re("\"" + key + "\": ([0-9]+)");
  std::smatch m;
  if (!std::regex_search(json, m, re)) return -1;
  return std::stoll(m[1]);
}

struct JsonRun {
  int rc = -1;
  std::string json;
  std::string output;
};

JsonRun bench_json(std::vector<std::string> args, const std::string& name) {
  const fs::path out = temp_dir() / (name + ".json");
  fs::remove(out);
  args.push_back("--json");
  args.push_back(out.string());
  args.push_back("--no-progress");
  JsonRun r;
  r.rc = run_bench(args, &r.output, (name + ".log").c_str());
  r.json = read_file(out);
  return r;
}

void expect_clean(const JsonRun& r) {
  ASSERT_EQ(r.rc, 0) << r.output;
  EXPECT_GT(json_int(r.json, "ops"), 0) << r.json;
  EXPECT_EQ(json_int(r.json, "errors_total"), 0) << r.json;
  EXPECT_NE(r.json.find("\"series\": [\n    {\"second\": 1"), std::string::npos) << r.json;
  EXPECT_NE(r.json.find("\"from_intended\": {\"p50\": "), std::string::npos) << r.json;
}

class KovanTarget : public ::testing::Test {
 protected:
  void SetUp() override {
    server_ = std::make_unique<Child>(
        std::vector<std::string>{KOVAN_SERVER_BIN, "--listen", "127.0.0.1:0", "--threads", "2",
                                 "--txn-timeout", "60s", "--enable-fault-injection", "--log-level",
                                 "info"},
        "kovan-server.log");
    ASSERT_GT(server_->pid(), 0);
    port_ = wait_for_kovan_port(*server_);
    ASSERT_NE(port_, 0) << server_->output();
    target_ = "kovan://127.0.0.1:" + std::to_string(port_);
  }
  std::unique_ptr<Child> server_;
  std::uint16_t port_ = 0;
  std::string target_;
};

TEST_F(KovanTarget, YcsbAClosedLoopWithLoad) {
  const JsonRun r =
      bench_json({"run", "--target", target_, "--workload", "ycsb-a", "--records", "2000", "--load",
                  "--duration", "1", "--warmup", "0.2", "--connections", "4", "--pipeline", "4"},
                 "kovan-ycsb-a");
  expect_clean(r);
  EXPECT_EQ(json_int(r.json, "misses"), 0) << r.json;  // every record was loaded
  EXPECT_GT(json_int(r.json, "read"), 0) << r.json;
  EXPECT_GT(json_int(r.json, "update"), 0) << r.json;
}

TEST_F(KovanTarget, ScansTransactionsAndOpenLoop) {
  JsonRun r = bench_json({"run", "--target", target_, "--workload", "ycsb-e", "--records", "500",
                          "--load", "--duration", "0.5", "--warmup", "0", "--connections", "2"},
                         "kovan-ycsb-e");
  expect_clean(r);
  EXPECT_GT(json_int(r.json, "scan"), 0) << r.json;
  r = bench_json({"run", "--target", target_, "--workload", "txn", "--records", "500", "--duration",
                  "0.5", "--warmup", "0", "--connections", "2", "--pipeline", "2"},
                 "kovan-txn");
  expect_clean(r);
  EXPECT_GT(json_int(r.json, "txn"), 0) << r.json;
  // Open loop at 2000 requests/s for 1 s: the schedule has exactly 2000 intended sends
  // (1000 per connection); each was either completed or reported as never sent.
  r = bench_json({"run", "--target", target_, "--workload", "get", "--records", "500", "--duration",
                  "1", "--warmup", "0", "--connections", "2", "--rate", "2000"},
                 "kovan-open");
  expect_clean(r);
  const auto ops = json_int(r.json, "ops");
  EXPECT_NEAR(static_cast<double>(ops + json_int(r.json, "unsent_scheduled")), 2000.0, 2.0)
      << r.json;
  EXPECT_GT(ops, 1000) << r.json;
}

TEST_F(KovanTarget, StallTransactionsPinVersionsAndTheCsvIsWritten) {
  const fs::path csv = temp_dir() / "stall.csv";
  std::string out;
  const int rc = run_bench({"stall",
                            "--target",
                            target_,
                            "--mode",
                            "txn",
                            "--txns",
                            "2",
                            "--keys",
                            "500",
                            "--reads-per-txn",
                            "100",
                            "--rate",
                            "4000",
                            "--duration",
                            "1.5",
                            "--interval",
                            "0.5",
                            "--server-pid",
                            std::to_string(server_->pid()),
                            "--csv",
                            csv.string()},
                           &out, "stall.log");
  ASSERT_EQ(rc, 0) << out;
  std::ifstream f(csv);
  std::string line;
  std::getline(f, line);
  EXPECT_EQ(line.rfind("t_s,phase,live_versions,keys,bytes,unreclaimed,rss_kb", 0), 0u) << line;
  std::uint64_t max_versions = 0, rows = 0, max_rss = 0;
  while (std::getline(f, line)) {
    ++rows;
    std::vector<std::string> cells;
    std::stringstream ss(line);
    for (std::string c; std::getline(ss, c, ',');) cells.push_back(c);
    ASSERT_EQ(cells.size(), 11u) << line;
    if (cells[1] == "stall")
      max_versions = std::max<std::uint64_t>(max_versions, std::stoull(cells[2]));
    max_rss = std::max<std::uint64_t>(max_rss, std::stoull(cells[6]));
  }
  EXPECT_GE(rows, 4u);  // before, >= 2 during, after
  // Two open snapshots keep older versions of updated keys alive: more versions than keys.
  EXPECT_GT(max_versions, 500u) << out;
  EXPECT_GT(max_rss, 0u);
}

TEST_F(KovanTarget, StallThreadRunsWithFaultInjection) {
  const fs::path csv = temp_dir() / "stall-thread.csv";
  std::string out;
  const int rc =
      run_bench({"stall", "--target", target_, "--mode", "thread", "--keys", "500", "--rate",
                 "2000", "--duration", "1", "--interval", "0.5", "--csv", csv.string()},
                &out, "stall-thread.log");
  ASSERT_EQ(rc, 0) << out;
  EXPECT_NE(out.find("stall mode thread"), std::string::npos) << out;
}

TEST(RedisTarget, YcsbBAndSetWithLoad) {
  const std::string redis = REDIS_SERVER_BIN;
  if (redis.empty()) GTEST_SKIP() << "redis-server not installed";
  const std::uint16_t port = free_port();
  ASSERT_NE(port, 0);
  Child server({redis, "--save", "", "--appendonly", "no", "--bind", "127.0.0.1", "--port",
                std::to_string(port)},
               "redis.log");
  ASSERT_TRUE(wait_for_redis(port)) << server.output();
  const std::string target = "redis://127.0.0.1:" + std::to_string(port);
  JsonRun r =
      bench_json({"run", "--target", target, "--workload", "ycsb-b", "--records", "2000", "--load",
                  "--duration", "1", "--warmup", "0.2", "--connections", "4", "--pipeline", "8"},
                 "redis-ycsb-b");
  expect_clean(r);
  EXPECT_EQ(json_int(r.json, "misses"), 0) << r.json;
  r = bench_json({"run", "--target", target, "--workload", "ycsb-f", "--records", "2000",
                  "--duration", "0.5", "--warmup", "0", "--connections", "2"},
                 "redis-ycsb-f");
  expect_clean(r);
  EXPECT_GT(json_int(r.json, "rmw"), 0) << r.json;
}

// A throwaway CA and a server certificate for 127.0.0.1 in the test's temporary folder,
// made with the openssl command (never committed). False when openssl failed.
bool make_test_pki() {
  const std::string d = temp_dir().string();
  const std::string cmd =
      "cd " + d +
      " && openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 2"
      " -subj /CN=bench-ca -keyout ca.key -out ca.pem 2>/dev/null"
      " && openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -subj /CN=127.0.0.1"
      " -keyout server.key -out server.csr 2>/dev/null"
      " && printf 'subjectAltName=IP:127.0.0.1\\n' > server.ext"
      " && openssl x509 -req -days 2 -in server.csr -CA ca.pem -CAkey ca.key -CAcreateserial"
      " -extfile server.ext -out server.pem 2>/dev/null";
  return std::system(cmd.c_str()) == 0;
}

// kovan-bench over TLS: kovans:// against a TLS kovan-server, rediss:// against Redis's
// --tls-port (when redis-server has TLS), and a CA that did not sign the server: refused.
TEST(TlsTarget, KovanAndRedisOverTls) {
  ASSERT_TRUE(make_test_pki());
  const std::string ca = (temp_dir() / "ca.pem").string();
  Child server(
      {KOVAN_SERVER_BIN, "--listen", "127.0.0.1:0", "--threads", "2", "--tls-cert",
       (temp_dir() / "server.pem").string(), "--tls-key", (temp_dir() / "server.key").string()},
      "kovan-tls.log");
  const std::uint16_t port = wait_for_kovan_port(server);
  ASSERT_NE(port, 0) << server.output();
  const std::string target = "kovans://127.0.0.1:" + std::to_string(port);
  JsonRun r = bench_json(
      {"run", "--target", target, "--tls-ca", ca, "--workload", "ycsb-a", "--records", "2000",
       "--load", "--duration", "1", "--warmup", "0.2", "--connections", "4", "--pipeline", "16"},
      "kovan-tls-ycsb-a");
  expect_clean(r);
  EXPECT_EQ(json_int(r.json, "misses"), 0) << r.json;
  // The server's own CA is required: the system store does not know it.
  std::string out;
  EXPECT_NE(run_bench({"run", "--target", target, "--duration", "0.2"}, &out), 0);
  EXPECT_NE(out.find("certificate verify failed"), std::string::npos) << out;

  const std::string redis = REDIS_SERVER_BIN;
  if (redis.empty()) GTEST_SKIP() << "redis-server not installed";
  const std::uint16_t plain_port = free_port();
  const std::uint16_t tls_port = free_port();
  Child rs(
      {redis, "--save", "", "--appendonly", "no", "--bind", "127.0.0.1", "--port",
       std::to_string(plain_port), "--tls-port", std::to_string(tls_port), "--tls-cert-file",
       (temp_dir() / "server.pem").string(), "--tls-key-file", (temp_dir() / "server.key").string(),
       "--tls-ca-cert-file", ca, "--tls-auth-clients", "no"},
      "redis-tls.log");
  if (!wait_for_redis(plain_port)) GTEST_SKIP() << "redis-server without TLS:\n" << rs.output();
  r = bench_json({"run", "--target", "rediss://127.0.0.1:" + std::to_string(tls_port), "--tls-ca",
                  ca, "--workload", "ycsb-b", "--records", "2000", "--load", "--duration", "1",
                  "--warmup", "0.2", "--connections", "4", "--pipeline", "8"},
                 "redis-tls-ycsb-b");
  expect_clean(r);
  EXPECT_EQ(json_int(r.json, "misses"), 0) << r.json;
}

TEST(BenchBinary, BadArgumentsAndUnreachableTargets) {
  std::string out;
  EXPECT_EQ(run_bench({"run", "--pipeline", "0"}, &out), 2);
  EXPECT_NE(out.find("--pipeline must be in 1..4096"), std::string::npos) << out;
  EXPECT_EQ(run_bench({"run", "--target", "redis://127.0.0.1:6379", "--workload", "txn"}, &out), 2);
  EXPECT_EQ(run_bench({"run", "--help"}, &out), 0);
  // Nothing listens on a port we just released: exit 1 with the reason.
  const std::uint16_t port = free_port();
  EXPECT_EQ(run_bench({"run", "--target", "kovan://127.0.0.1:" + std::to_string(port), "--duration",
                       "0.2", "--warmup", "0", "--connections", "1"},
                      &out),
            1);
  EXPECT_NE(out.find("connect to kovan://127.0.0.1:"), std::string::npos) << out;
}

}  // namespace
