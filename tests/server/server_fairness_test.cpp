// Sharing a worker between tenants (docs/SECURITY.md, "Sharing a worker"), against the
// kovan-server binary: a worker's turns go round the tenants with requests ready, not
// round their connections, so a tenant with many connections each pipelining deeply gets
// no more dispatches between two of another tenant's requests than one turn's worth.
#include "server/auth.hpp"
#include "server_process.hpp"

namespace kv::test {
namespace {

std::string test_hash(const std::string& password) { return server::hash_password(password, 1000); }

pb::Request auth(std::uint64_t id, const std::string& user, const std::string& password) {
  pb::Request r;
  r.set_id(id);
  r.mutable_authenticate()->set_user(user);
  r.mutable_authenticate()->set_password(password);
  return r;
}

pb::Request fault(std::uint64_t id, std::uint32_t ms) {
  pb::Request r;
  r.set_id(id);
  r.mutable_fault()->set_stall_ms(ms);
  return r;
}

class UsersFile {
 public:
  explicit UsersFile(const std::string& text) : path_(temp_path("fair.users")) {
    std::ofstream out(path_);
    out << text;
  }
  ~UsersFile() {
    std::error_code ignored;
    fs::remove(path_, ignored);
  }
  [[nodiscard]] std::string path() const { return path_.string(); }

 private:
  fs::path path_;
};

std::unique_ptr<Client> login(std::uint16_t port, const std::string& user,
                              const std::string& password) {
  auto c = std::make_unique<Client>(port);
  EXPECT_TRUE(c->connected());
  const auto r = c->call(auth(1, user, password));
  EXPECT_EQ(r.status().code(), pb::Status::OK) << r.ShortDebugString();
  return c;
}

// Tenant A ("noisy") has 16 connections, each with 2,000 pings buffered; tenant B (the
// admin user, which may ask for STATS) has 4 connections with one STATS each. The server
// has one worker, stalled (FAULT) while all of these arrive, so all of them are waiting
// when it resumes. Each STATS answer tells how many requests the worker had dispatched
// when it ran: how many of A's went before B's. With turns per connection, every one of
// A's 16 connections has a turn of 32 before B's (16 x 32 = 512: A's requests arrived
// first); with turns per tenant, A has one turn (32) before B's, whose turn serves all 4
// of its connections.
TEST(Fairness, ManyPipeliningConnectionsOfOneTenantGetOneTenantsTurns) {
  UsersFile users("noisy readwrite " + test_hash("n") + "\nadmin admin " + test_hash("admin-pw") +
                  "\n");
  ServerProcess server({"--listen", "127.0.0.1:0", "--threads", "1", "--users", users.path(),
                        "--enable-fault-injection"},
                       "fair");
  const std::uint16_t port = server.wait_for_port(20s);
  ASSERT_NE(port, 0) << server.output();

  constexpr int kConnections = 16;
  constexpr std::uint64_t kPipelined = 2000;
  constexpr int kB = 4;
  std::vector<std::unique_ptr<Client>> a;
  for (int i = 0; i < kConnections; ++i) a.push_back(login(port, "noisy", "n"));
  std::vector<std::unique_ptr<Client>> b;
  for (int i = 0; i < kB; ++i) b.push_back(login(port, "admin", "admin-pw"));
  auto staller = login(port, "admin", "admin-pw");
  std::vector<pb::Request> pings;
  for (std::uint64_t i = 0; i < kPipelined; ++i) pings.push_back(ping(10 + i));

  const auto before = staller->call(stats(2));
  ASSERT_EQ(before.status().code(), pb::Status::OK);
  ASSERT_TRUE(staller->send(fault(3, 3000)));
  ASSERT_TRUE(server.wait_for_log("fault injection: stalling")) << server.output();
  for (auto& c : a) ASSERT_TRUE(c->send_all(pings));
  for (auto& c : b) ASSERT_TRUE(c->send(stats(100)));

  // Requests dispatched before each of B's, less the first STATS and the FAULT: A's, and
  // up to kB - 1 of B's own.
  std::vector<std::uint64_t> went_first;
  for (auto& c : b) {
    const auto r = c->recv(30s);
    ASSERT_TRUE(r.has_value());
    ASSERT_EQ(r->status().code(), pb::Status::OK);
    ASSERT_EQ(r->id(), 100u);
    went_first.push_back(r->stats().requests_total() - before.stats().requests_total() - 2);
  }
  std::string shown;
  for (const auto n : went_first) shown += std::to_string(n) + " ";
  std::printf("requests dispatched before each of B's: %s\n", shown.c_str());
  // A still had requests waiting when B's last one ran (else this says nothing).
  const std::uint64_t most = *std::max_element(went_first.begin(), went_first.end());
  ASSERT_LT(most, kConnections * kPipelined) << "A's pipelines were all served first";
  for (std::size_t i = 0; i < went_first.size(); ++i) {
    EXPECT_LE(went_first[i], 2 * 32u + kB) << "B's connection " << i << " (all: " << shown << ")";
  }

  // Nothing of A's was lost or reordered.
  for (auto& c : a) {
    for (std::uint64_t i = 0; i < kPipelined; ++i) {
      const auto r = c->recv(30s);
      ASSERT_TRUE(r.has_value()) << i;
      ASSERT_EQ(r->id(), 10 + i);
      ASSERT_EQ(r->status().code(), pb::Status::OK);
    }
  }
}

}  // namespace
}  // namespace kv::test
