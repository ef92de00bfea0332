// TLS on the client port, against kovan-server child processes: plaintext clients refused
// with a readable notice, handshakes with `openssl s_client` (TLS 1.2+, 1.1 refused),
// certificate verification both ways (wrong CA, wrong name, missing client certificate),
// the client certificate's CN in the connection context, pipelined requests and
// transactions over TLS, and the handshake deadline.
//
// The certificates are made at test time with the `openssl` command in a temporary folder
// (a throwaway CA, a server certificate for localhost / 127.0.0.1, client certificates):
// no key is ever committed.
#include <netinet/in.h>
#include <openssl/ssl.h>
#include <poll.h>
#include <sys/socket.h>

#include <gtest/gtest.h>

#include <array>
#include <cstdio>
#include <future>

#include "client/client.hpp"
#include "server/auth.hpp"
#include "server_process.hpp"

namespace kv::test {
namespace {

using namespace std::chrono_literals;

// Runs a shell command; its exit status and its stdout+stderr.
struct Shell {
  int rc = -1;
  std::string out;
};
Shell shell(const std::string& command) {
  Shell r;
  FILE* p = ::popen((command + " 2>&1").c_str(), "r");
  if (p == nullptr) return r;
  std::array<char, 4096> buf{};
  std::size_t n = 0;
  while ((n = std::fread(buf.data(), 1, buf.size(), p)) > 0) r.out.append(buf.data(), n);
  const int status = ::pclose(p);
  r.rc = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
  return r;
}

// A throwaway PKI in a temporary folder: ca (signs server, alice and carol), other-ca
// (signs mallory), a server certificate for DNS:localhost and IP:127.0.0.1.
class Pki {
 public:
  Pki() : dir_(temp_path("tls-pki")) {
    fs::remove_all(dir_);
    fs::create_directories(dir_);
    make_ca("ca", "kovan-test-ca");
    make_ca("other-ca", "kovan-other-ca");
    make_leaf("server", "localhost", "ca",
              "subjectAltName=DNS:localhost,IP:127.0.0.1\nextendedKeyUsage=serverAuth\n");
    make_leaf("alice", "alice", "ca", "extendedKeyUsage=clientAuth\n");
    make_leaf("mallory", "mallory", "other-ca", "extendedKeyUsage=clientAuth\n");
    make_leaf("carol", "carol", "ca", "extendedKeyUsage=clientAuth\n");
  }
  ~Pki() {
    std::error_code ignored;
    fs::remove_all(dir_, ignored);
  }
  Pki(const Pki&) = delete;
  Pki& operator=(const Pki&) = delete;

  [[nodiscard]] std::string pem(const std::string& name) const {
    return (dir_ / (name + ".pem")).string();
  }
  [[nodiscard]] std::string key(const std::string& name) const {
    return (dir_ / (name + ".key")).string();
  }
  [[nodiscard]] bool ok() const { return ok_; }

 private:
  void run(const std::string& command) {
    const Shell r = shell(command);
    if (r.rc != 0) {
      ADD_FAILURE() << command << "\n" << r.out;
      ok_ = false;
    }
  }
  void make_ca(const std::string& name, const std::string& cn) {
    run("openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 2 -subj /CN=" +
        cn + " -keyout " + key(name) + " -out " + pem(name));
  }
  void make_leaf(const std::string& name, const std::string& cn, const std::string& ca,
                 const std::string& ext) {
    const std::string csr = (dir_ / (name + ".csr")).string();
    const std::string ext_file = (dir_ / (name + ".ext")).string();
    std::ofstream(ext_file) << ext;
    run("openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -subj /CN=" + cn +
        " -keyout " + key(name) + " -out " + csr);
    run("openssl x509 -req -days 2 -in " + csr + " -CA " + pem(ca) + " -CAkey " + key(ca) +
        " -CAcreateserial -out " + pem(name) + " -extfile " + ext_file);
  }

  fs::path dir_;
  bool ok_ = true;
};

class TlsTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() { pki_ = new Pki(); }
  static void TearDownTestSuite() {
    delete pki_;
    pki_ = nullptr;
  }
  void SetUp() override { ASSERT_TRUE(pki_->ok()); }

  // A TLS server; `extra` flags appended.
  static std::unique_ptr<ServerProcess> start_server(std::vector<std::string> extra,
                                                     const std::string& tag) {
    std::vector<std::string> args = {
        "--listen", "127.0.0.1:0", "--threads",         "2",         "--log-level",
        "debug",    "--tls-cert",  pki_->pem("server"), "--tls-key", pki_->key("server")};
    args.insert(args.end(), extra.begin(), extra.end());
    return std::make_unique<ServerProcess>(args, tag);
  }

  static client::ClientOptions tls_options() {
    client::ClientOptions o;
    o.tls = true;
    o.tls_ca_file = pki_->pem("ca");
    o.connect_timeout = 10s;
    o.request_timeout = 20s;
    return o;
  }
  static std::string address(std::uint16_t port) { return "127.0.0.1:" + std::to_string(port); }

  static Pki* pki_;
};

Pki* TlsTest::pki_ = nullptr;

// A plaintext client on the TLS port gets an UNAVAILABLE notice that names the problem;
// the server logs it and frees the slot (with --max-connections 1, a TLS client is served
// afterwards).
TEST_F(TlsTest, PlaintextClientIsRefusedCleanlyAndItsSlotFreed) {
  auto server = start_server({"--max-connections", "1"}, "tls-plain");
  const std::uint16_t port = server->wait_for_port();
  ASSERT_NE(port, 0) << server->output();
  {
    client::ClientOptions plain;
    plain.connect_timeout = 10s;
    plain.request_timeout = 20s;
    auto c = client::Client::connect(address(port), plain);
    ASSERT_TRUE(c.ok()) << c.status().to_string();
    auto put = c.value()->put("k", "v");
    ASSERT_FALSE(put.ok());
    EXPECT_EQ(put.status().code(), client::Code::kUnavailable);
    EXPECT_NE(put.status().message().find("requires TLS"), std::string::npos)
        << put.status().to_string();
  }
  EXPECT_TRUE(server->wait_for_log("not a TLS handshake")) << server->output();
  // The slot comes back once the plaintext connection is closed.
  std::string last;
  EXPECT_TRUE(eventually(
      [&] {
        auto c = client::Client::connect("kovans://" + address(port), tls_options());
        if (!c.ok()) {
          last = c.status().to_string();
          return false;
        }
        auto put = c.value()->put("k", "v");
        last = put.ok() ? "" : put.status().to_string();
        return put.ok();
      },
      15s))
      << last << "\n"
      << server->output();
}

// `openssl s_client` completes a handshake (TLS 1.3 and 1.2 with an ECDHE AEAD suite) and
// verifies the chain; TLS 1.1 is refused by the server.
TEST_F(TlsTest, OpensslClientHandshakesWithTls12AndUpOnly) {
  auto server = start_server({}, "tls-sclient");
  const std::uint16_t port = server->wait_for_port();
  ASSERT_NE(port, 0) << server->output();
  const std::string base = "openssl s_client -brief -connect 127.0.0.1:" + std::to_string(port) +
                           " -CAfile " + pki_->pem("ca") + " -verify_return_error </dev/null";
  const Shell v13 = shell(base);
  EXPECT_EQ(v13.rc, 0) << v13.out;
  EXPECT_NE(v13.out.find("Protocol version: TLSv1.3"), std::string::npos) << v13.out;
  EXPECT_NE(v13.out.find("Verification: OK"), std::string::npos) << v13.out;
  const Shell v12 = shell(base + " -tls1_2");
  EXPECT_EQ(v12.rc, 0) << v12.out;
  EXPECT_NE(v12.out.find("Protocol version: TLSv1.2"), std::string::npos) << v12.out;
  EXPECT_NE(v12.out.find("Ciphersuite: ECDHE-"), std::string::npos) << v12.out;
  EXPECT_NE(v12.out.find("GCM"), std::string::npos) << v12.out;
  // A TLS 1.2 client that offers only a CBC suite finds nothing in common.
  const Shell cbc = shell(base + " -tls1_2 -cipher ECDHE-ECDSA-AES128-SHA256");
  EXPECT_NE(cbc.rc, 0) << cbc.out;
  // The client side lowers its own security level so that it does offer TLS 1.1: the
  // refusal is the server's.
  const Shell v11 = shell(base + " -tls1_1 -cipher DEFAULT@SECLEVEL=0");
  EXPECT_NE(v11.rc, 0) << v11.out;
  EXPECT_TRUE(server->wait_for_log("TLS handshake failed: unsupported protocol"))
      << server->output();
}

// The client verifies the server: a CA that did not sign it, or a name it does not carry,
// fails the connection.
TEST_F(TlsTest, ClientWithWrongCaOrNameFailsVerification) {
  auto server = start_server({}, "tls-wrongca");
  const std::uint16_t port = server->wait_for_port();
  ASSERT_NE(port, 0) << server->output();
  client::ClientOptions wrong = tls_options();
  wrong.tls_ca_file = pki_->pem("other-ca");
  auto c = client::Client::connect(address(port), wrong);
  ASSERT_FALSE(c.ok());
  EXPECT_EQ(c.status().code(), client::Code::kUnavailable);
  EXPECT_NE(c.status().message().find("certificate verify failed"), std::string::npos)
      << c.status().to_string();

  client::ClientOptions other_name = tls_options();
  other_name.tls_server_name = "db.example.com";
  auto d = client::Client::connect(address(port), other_name);
  ASSERT_FALSE(d.ok());
  EXPECT_NE(d.status().message().find("hostname mismatch"), std::string::npos)
      << d.status().to_string();

  // The right CA, and the name given as "localhost" (a DNS name of the certificate), work.
  client::ClientOptions by_name = tls_options();
  auto e = client::Client::connect("localhost:" + std::to_string(port), by_name);
  ASSERT_TRUE(e.ok()) << e.status().to_string();
  EXPECT_TRUE(e.value()->put("k", "v").ok());
}

// --tls-require-client-cert: a client without a certificate, or with one from another CA,
// is refused (nothing applied); one with a good certificate is served, and its CN reaches
// the connection's context (the session logs the value it stored there).
TEST_F(TlsTest, RequiredClientCertificateIsVerifiedAndItsCnReachesTheConnection) {
  auto server =
      start_server({"--tls-ca", pki_->pem("ca"), "--tls-require-client-cert"}, "tls-mutual");
  const std::uint16_t port = server->wait_for_port();
  ASSERT_NE(port, 0) << server->output();

  // Without a certificate. With TLS 1.3 the client may finish its side of the handshake
  // before the server's refusal arrives: then the first request fails instead.
  {
    auto c = client::Client::connect(address(port), tls_options());
    if (c.ok()) {
      auto put = c.value()->put("nocert", "v");
      EXPECT_FALSE(put.ok());
    }
  }
  EXPECT_TRUE(server->wait_for_log("TLS handshake failed")) << server->output();
  {
    client::ClientOptions mallory = tls_options();
    mallory.tls_cert_file = pki_->pem("mallory");
    mallory.tls_key_file = pki_->key("mallory");
    auto c = client::Client::connect(address(port), mallory);
    if (c.ok()) {
      auto put = c.value()->put("mallory", "v");
      EXPECT_FALSE(put.ok());
    }
  }
  EXPECT_EQ(count_of(server->output(), "client certificate CN 'mallory'"), 0u);

  client::ClientOptions alice = tls_options();
  alice.tls_cert_file = pki_->pem("alice");
  alice.tls_key_file = pki_->key("alice");
  auto c = client::Client::connect(address(port), alice);
  ASSERT_TRUE(c.ok()) << c.status().to_string();
  ASSERT_TRUE(c.value()->put("alice", "v").ok());
  EXPECT_TRUE(server->wait_for_log("client certificate CN 'alice'")) << server->output();
  // Nothing the refused clients sent was applied.
  EXPECT_FALSE(c.value()->get("nocert").ok());
  EXPECT_FALSE(c.value()->get("mallory").ok());
}

// Without --tls-require-client-cert, a client without a certificate is served with an
// empty CN; with one from another CA it is refused (a presented certificate is verified).
TEST_F(TlsTest, OptionalClientCertificateIsStillVerifiedWhenPresented) {
  auto server = start_server({"--tls-ca", pki_->pem("ca")}, "tls-optional");
  const std::uint16_t port = server->wait_for_port();
  ASSERT_NE(port, 0) << server->output();
  auto plain = client::Client::connect(address(port), tls_options());
  ASSERT_TRUE(plain.ok()) << plain.status().to_string();
  ASSERT_TRUE(plain.value()->put("k", "v").ok());
  EXPECT_TRUE(server->wait_for_log("client certificate CN ''")) << server->output();

  client::ClientOptions mallory = tls_options();
  mallory.tls_cert_file = pki_->pem("mallory");
  mallory.tls_key_file = pki_->key("mallory");
  auto c = client::Client::connect(address(port), mallory);
  if (c.ok()) {
    EXPECT_FALSE(c.value()->put("mallory", "v").ok());
  }
  EXPECT_TRUE(server->wait_for_log("TLS handshake failed")) << server->output();
  EXPECT_FALSE(plain.value()->get("mallory").ok());
}

// Pipelined requests (hundreds in flight, some larger than a TLS record) and
// transactions over one TLS connection.
TEST_F(TlsTest, TlsSessionServesPipelinedRequestsAndTransactions) {
  auto server = start_server({}, "tls-pipeline");
  const std::uint16_t port = server->wait_for_port();
  ASSERT_NE(port, 0) << server->output();
  auto c = client::Client::connect("kovans://" + address(port), tls_options());
  ASSERT_TRUE(c.ok()) << c.status().to_string();
  client::Client& cl = *c.value();

  constexpr int kN = 500;
  std::vector<std::future<client::Result<client::PutResult>>> puts;
  for (int i = 0; i < kN; ++i) {
    // Every 50th value spans several TLS records (16 KiB each).
    std::string value = i % 50 == 0 ? std::string(100'000, static_cast<char>('a' + i % 26))
                                    : "v" + std::to_string(i);
    puts.push_back(client::as_future<client::PutResult>(
        [&](auto cb) { cl.put_async("key" + std::to_string(i), std::move(value), cb); }));
  }
  for (auto& f : puts) ASSERT_TRUE(f.get().ok());
  std::vector<std::future<client::Result<client::KeyValue>>> gets;
  for (int i = 0; i < kN; ++i) {
    gets.push_back(client::as_future<client::KeyValue>(
        [&](auto cb) { cl.get_async("key" + std::to_string(i), cb); }));
  }
  for (int i = 0; i < kN; ++i) {
    auto r = gets[static_cast<std::size_t>(i)].get();
    ASSERT_TRUE(r.ok()) << i;
    if (i % 50 == 0) {
      EXPECT_EQ(r.value().value.size(), 100'000u);
    } else {
      EXPECT_EQ(r.value().value, "v" + std::to_string(i));
    }
  }
  // Interactive transactions, one of them conflicting with a write from a second
  // TLS connection.
  auto t = cl.begin();
  ASSERT_TRUE(t.ok()) << t.status().to_string();
  ASSERT_TRUE(t.value().get("key1").ok());
  ASSERT_TRUE(t.value().put("key1", "txn").ok());
  auto other = client::Client::connect(address(port), tls_options());
  ASSERT_TRUE(other.ok());
  ASSERT_TRUE(other.value()->put("key1", "outside").ok());
  auto commit = t.value().commit();
  EXPECT_FALSE(commit.ok());
  EXPECT_EQ(commit.status().code(), client::Code::kConflict);
  const auto r = cl.transact([](client::Transaction& tx) -> client::Status {
    auto v = tx.get("counter");
    const long long n = v.ok() ? std::stoll(v.value().value) : 0;
    return tx.put("counter", std::to_string(n + 1));
  });
  ASSERT_TRUE(r.ok()) << r.status.to_string();
  EXPECT_EQ(cl.get("counter").value().value, "1");
  EXPECT_EQ(cl.get("key1").value().value, "outside");
}

// A client that connects and never handshakes, or stops in the middle of its hello, is
// closed after the handshake deadline (--frame-timeout here), freeing its slot.
TEST_F(TlsTest, ConnectionThatNeverHandshakesIsClosedAfterTheDeadline) {
  auto server = start_server({"--frame-timeout", "500ms", "--max-connections", "2"}, "tls-hs");
  const std::uint16_t port = server->wait_for_port();
  ASSERT_NE(port, 0) << server->output();
  Client silent(port);
  ASSERT_TRUE(silent.connected());
  Client partial(port);
  ASSERT_TRUE(partial.connected());
  // The start of a TLS record header announcing a handshake message, then nothing.
  ASSERT_TRUE(partial.send_raw(std::string("\x16\x03\x01\x02\x00\x01", 6)));
  const auto t0 = std::chrono::steady_clock::now();
  EXPECT_TRUE(silent.closed_by_peer(15s));
  EXPECT_TRUE(partial.closed_by_peer(15s));
  EXPECT_GE(std::chrono::steady_clock::now() - t0, 400ms);
  EXPECT_TRUE(server->wait_for_log("no TLS handshake within 500 ms")) << server->output();
  EXPECT_EQ(count_of(server->output(), "no TLS handshake within 500 ms"), 2u) << server->output();
  // Both slots are free again.
  auto a = client::Client::connect(address(port), tls_options());
  auto b = client::Client::connect(address(port), tls_options());
  ASSERT_TRUE(a.ok() && b.ok());
  EXPECT_TRUE(a.value()->put("a", "1").ok());
  EXPECT_TRUE(b.value()->put("b", "1").ok());
}

// The value of a labelled sample ("name{labels}") in a scrape, or -1.
double labelled(const std::string& scraped, const std::string& sample) {
  const auto at = scraped.find("\n" + sample + " ");
  if (at == std::string::npos) return -1;
  return std::strtod(scraped.c_str() + at + sample.size() + 2, nullptr);
}

// A blocking TLS connection made with OpenSSL directly, so that a test can send without
// reading (the client library always reads).
class RawTls {
 public:
  RawTls(std::uint16_t port, const std::string& ca) {
    ctx_ = SSL_CTX_new(TLS_client_method());
    SSL_CTX_load_verify_locations(ctx_, ca.c_str(), nullptr);
    SSL_CTX_set_verify(ctx_, SSL_VERIFY_PEER, nullptr);
    fd_ = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_port = htons(port);
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (::connect(fd_, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0) return;
    ssl_ = SSL_new(ctx_);
    SSL_set_fd(ssl_, fd_);
    ok_ = SSL_connect(ssl_) == 1;
  }
  ~RawTls() {
    if (ssl_ != nullptr) SSL_free(ssl_);
    SSL_CTX_free(ctx_);
    if (fd_ >= 0) ::close(fd_);
  }
  RawTls(const RawTls&) = delete;
  RawTls& operator=(const RawTls&) = delete;

  [[nodiscard]] bool ok() const { return ok_; }
  bool write(std::string_view bytes) {
    while (!bytes.empty()) {
      const int n = SSL_write(ssl_, bytes.data(), static_cast<int>(bytes.size()));
      if (n <= 0) return false;
      bytes.remove_prefix(static_cast<std::size_t>(n));
    }
    return true;
  }
  // The next response frame (blocking); nullopt when the connection ended.
  std::optional<pb::Response> next() {
    for (;;) {
      const proto::FrameResult f = reader_.next();
      if (f.status == proto::FrameStatus::kComplete) {
        pb::Response r;
        if (!r.ParseFromArray(f.payload.data(), static_cast<int>(f.payload.size()))) {
          return std::nullopt;
        }
        return r;
      }
      if (f.status != proto::FrameStatus::kNeedMore) return std::nullopt;
      const std::span<char> space = reader_.prepare();
      const int n = SSL_read(ssl_, space.data(), static_cast<int>(space.size()));
      if (n <= 0) return std::nullopt;
      reader_.commit(static_cast<std::size_t>(n));
    }
  }

 private:
  SSL_CTX* ctx_ = nullptr;
  SSL* ssl_ = nullptr;
  int fd_ = -1;
  bool ok_ = false;
  proto::FrameReader reader_{8u << 20};
};

// The connection budgets work over TLS as over TCP: a client that pipelines reads of a
// large value without reading the answers makes the server stop reading it once
// --max-output-bytes are waiting (unsent output stays bounded, requests stop being
// served), and everything is delivered once it reads.
TEST_F(TlsTest, BackpressureHoldsOverTls) {
  auto server = start_server({"--max-frame-bytes", "64KiB", "--max-output-bytes", "64KiB",
                              "--metrics-listen", "127.0.0.1:0"},
                             "tls-backpressure");
  const std::uint16_t port = server->wait_for_port();
  ASSERT_NE(port, 0) << server->output();
  const std::uint16_t mport = server->metrics_port();
  ASSERT_NE(mport, 0);
  const std::string value(32 * 1024, 'b');
  {
    auto c = client::Client::connect(address(port), tls_options());
    ASSERT_TRUE(c.ok()) << c.status().to_string();
    ASSERT_TRUE(c.value()->put("big", value).ok());
  }
  RawTls raw(port, pki_->pem("ca"));
  ASSERT_TRUE(raw.ok());
  constexpr int kGets = 2000;  // 64 MB of answers
  std::string frames;
  for (int i = 1; i <= kGets; ++i)
    proto::append_message(frames, get(static_cast<std::uint64_t>(i), "big"));
  ASSERT_TRUE(raw.write(frames));  // about 30 KB: fits in the socket buffers

  // The server answers some, then stops reading this connection.
  const std::string gets_sample = "kv_requests_total{op=\"get\"}";
  const std::string out_sample = "kv_connection_buffer_bytes{direction=\"out\"}";
  double served = 0;
  ASSERT_TRUE(eventually(
      [&] {
        served = labelled(scrape(mport), gets_sample);
        return served >= 2;
      },
      15s));
  // Observed for a while: no more than the backlog limit plus one response waits, and
  // far from all the requests are served (the socket buffers hold a few MB at most).
  const auto until = std::chrono::steady_clock::now() + 1s;
  double max_out = 0;
  while (std::chrono::steady_clock::now() < until) {
    const std::string m = scrape(mport);
    max_out = std::max(max_out, labelled(m, out_sample));
    served = labelled(m, gets_sample);
  }
  EXPECT_LE(max_out, 64 * 1024 + 2 * (32 * 1024 + 64)) << "unsent output over the limit";
  EXPECT_LT(served, kGets / 2) << "the server kept reading a client that does not read";

  for (int i = 1; i <= kGets; ++i) {
    auto r = raw.next();
    ASSERT_TRUE(r.has_value()) << i;
    ASSERT_EQ(r->id(), static_cast<std::uint64_t>(i));
    ASSERT_EQ(r->get().kv().value().size(), value.size());
  }
}

// Bad TLS settings stop the server at start with a message naming the flag.
TEST_F(TlsTest, BadTlsSettingsAreRefusedAtStart) {
  {
    ServerProcess s({"--listen", "127.0.0.1:0", "--tls-cert", pki_->pem("server")}, "tls-bad1");
    EXPECT_EQ(s.wait_exit(), 2);
    EXPECT_NE(s.output().find("--tls-cert and --tls-key must be given together"), std::string::npos)
        << s.output();
  }
  {
    ServerProcess s({"--listen", "127.0.0.1:0", "--tls-cert", pki_->pem("server"), "--tls-key",
                     pki_->key("alice")},
                    "tls-bad2");
    EXPECT_NE(s.wait_exit(), 0);
    EXPECT_NE(s.output().find("cannot load --tls-key"), std::string::npos) << s.output();
    EXPECT_NE(s.output().find("mismatch"), std::string::npos) << s.output();
  }
  {
    ServerProcess s({"--listen", "127.0.0.1:0", "--tls-cert", pki_->pem("server"), "--tls-key",
                     pki_->key("server"), "--tls-require-client-cert"},
                    "tls-bad3");
    EXPECT_EQ(s.wait_exit(), 2);
    EXPECT_NE(s.output().find("--tls-require-client-cert needs --tls-ca"), std::string::npos)
        << s.output();
  }
}

// The metrics listener over HTTPS (its own certificate flags; with --metrics-tls-ca the
// scraper must present a certificate).
TEST_F(TlsTest, MetricsListenerServesHttpsAndCountsRejectedHandshakes) {
  auto server =
      start_server({"--metrics-listen", "127.0.0.1:0", "--metrics-tls-cert", pki_->pem("server"),
                    "--metrics-tls-key", pki_->key("server"), "--metrics-tls-ca", pki_->pem("ca")},
                   "tls-metrics");
  const std::uint16_t port = server->wait_for_port();
  ASSERT_NE(port, 0) << server->output();
  const std::uint16_t mport = server->metrics_port();
  ASSERT_NE(mport, 0);
  {
    Client plain(port);  // a plaintext client on the TLS client port, counted below
    ASSERT_TRUE(plain.send_raw("hello"));
    EXPECT_TRUE(plain.closed_by_peer(15s));
  }
  // Plain HTTP gets nothing.
  EXPECT_TRUE(scrape(mport, 3s).empty());
  const std::string curl =
      "printf 'GET /metrics HTTP/1.1\\r\\nHost: x\\r\\n\\r\\n' | "
      "openssl s_client -quiet -connect 127.0.0.1:" +
      std::to_string(mport) + " -CAfile " + pki_->pem("ca") + " -verify_return_error";
  const Shell with_cert =
      shell(curl + " -cert " + pki_->pem("alice") + " -key " + pki_->key("alice"));
  EXPECT_NE(with_cert.out.find("HTTP/1.1 200 OK"), std::string::npos) << with_cert.out;
  EXPECT_NE(with_cert.out.find("kv_tls_handshakes_rejected_total{reason=\"plaintext\"} 1"),
            std::string::npos)
      << with_cert.out;
  const Shell without_cert = shell(curl);
  EXPECT_EQ(without_cert.out.find("HTTP/1.1 200 OK"), std::string::npos) << without_cert.out;
}

}  // namespace
}  // namespace kv::test

namespace kv::test {
namespace {

// --tls-client-cert-login: a verified client certificate whose CN names a user of --users
// logs its connection in as that user without AUTHENTICATE (the user's role and key
// prefix apply); a CN that names no user, or no certificate, leaves the connection
// unauthenticated; an explicit AUTHENTICATE still works and replaces the certificate's
// user.
TEST_F(TlsTest, ClientCertificateCnLogsTheConnectionInAsTheUserItNames) {
  const fs::path users = temp_path("tls-cert-login.users");
  std::ofstream(users) << "alice readwrite " << server::hash_password("alice-pw", 1000)
                       << " prefix=a/ max_connections=2\n"
                       << "reader read " << server::hash_password("reader-pw", 1000) << "\n";
  auto server = start_server(
      {"--tls-ca", pki_->pem("ca"), "--tls-client-cert-login", "--users", users.string()},
      "tls-cert-login");
  const std::uint16_t port = server->wait_for_port();
  ASSERT_NE(port, 0) << server->output();
  auto with_cert = [&](const std::string& name) {
    client::ClientOptions o = tls_options();
    o.tls_cert_file = pki_->pem(name);
    o.tls_key_file = pki_->key(name);
    return o;
  };

  // alice's certificate: authenticated as alice, with her prefix.
  auto alice = client::Client::connect(address(port), with_cert("alice"));
  ASSERT_TRUE(alice.ok()) << alice.status().to_string();
  const auto put_a = alice.value()->put("a/1", "v");
  EXPECT_TRUE(put_a.ok()) << put_a.status().to_string();
  EXPECT_EQ(alice.value()->put("b/1", "v").code(), client::Code::kPermissionDenied);
  EXPECT_TRUE(server->wait_for_log("authenticated from")) << server->output();

  // carol's certificate is valid but names no user: not authenticated.
  auto carol = client::Client::connect(address(port), with_cert("carol"));
  ASSERT_TRUE(carol.ok()) << carol.status().to_string();
  EXPECT_EQ(carol.value()->put("a/2", "v").code(), client::Code::kUnauthenticated);
  EXPECT_EQ(carol.value()->get("a/1").code(), client::Code::kUnauthenticated);
  EXPECT_TRUE(server->wait_for_log("CN 'carol' names no user")) << server->output();

  // No certificate: not authenticated either.
  auto anonymous = client::Client::connect(address(port), tls_options());
  ASSERT_TRUE(anonymous.ok()) << anonymous.status().to_string();
  EXPECT_EQ(anonymous.value()->get("a/1").code(), client::Code::kUnauthenticated);

  // An explicit AUTHENTICATE works with or without a certificate, and replaces the
  // certificate's user: alice's certificate logged in as reader cannot write.
  client::ClientOptions carol_as_alice = with_cert("carol");
  carol_as_alice.user = "alice";
  carol_as_alice.password = "alice-pw";
  auto c2 = client::Client::connect(address(port), carol_as_alice);
  ASSERT_TRUE(c2.ok()) << c2.status().to_string();
  EXPECT_TRUE(c2.value()->put("a/2", "v").ok());
  client::ClientOptions alice_as_reader = with_cert("alice");
  alice_as_reader.user = "reader";
  alice_as_reader.password = "reader-pw";
  auto c3 = client::Client::connect(address(port), alice_as_reader);
  ASSERT_TRUE(c3.ok()) << c3.status().to_string();
  EXPECT_EQ(c3.value()->put("a/3", "v").code(), client::Code::kPermissionDenied);
  const auto got = c3.value()->get("a/1");
  ASSERT_TRUE(got.ok()) << got.status().to_string();
  // Nothing the unauthenticated or read-only connections sent was applied.
  EXPECT_EQ(alice.value()->get("a/3").code(), client::Code::kNotFound);

  // alice's two connections (certificate, password) use her max_connections of 2: a third
  // certificate login is refused, the connection stays unauthenticated.
  auto third = client::Client::connect(address(port), with_cert("alice"));
  ASSERT_TRUE(third.ok()) << third.status().to_string();
  EXPECT_EQ(third.value()->get("a/1").code(), client::Code::kUnauthenticated);
  EXPECT_TRUE(server->wait_for_log("has its max_connections of 2 open already"))
      << server->output();
  std::error_code ignored;
  fs::remove(users, ignored);
}

}  // namespace
}  // namespace kv::test
