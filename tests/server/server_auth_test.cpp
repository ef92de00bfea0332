// Authentication, roles, key prefixes, tenant quotas, the failure delay, protected mode and
// the metrics bearer token, against the kovan-server binary (docs/SECURITY.md).
#include "server/auth.hpp"
#include "server_process.hpp"

namespace kv::test {
namespace {

// Cheap hashes for tests (the iteration count is part of the hash string).
std::string test_hash(const std::string& password) { return server::hash_password(password, 1000); }

class UsersFile {
 public:
  explicit UsersFile(const std::string& tag) : path_(temp_path(tag + ".users")) {}
  ~UsersFile() {
    std::error_code ignored;
    fs::remove(path_, ignored);
  }
  void write(const std::string& text) {
    std::ofstream out(path_);
    out << text;
  }
  [[nodiscard]] std::string path() const { return path_.string(); }

 private:
  fs::path path_;
};

pb::Request auth(std::uint64_t id, const std::string& user, const std::string& password) {
  pb::Request r;
  r.set_id(id);
  r.mutable_authenticate()->set_user(user);
  r.mutable_authenticate()->set_password(password);
  return r;
}

pb::Request scan_prefix(std::uint64_t id, const std::string& prefix) {
  pb::Request r;
  r.set_id(id);
  r.mutable_scan()->set_start(prefix);
  r.mutable_scan()->set_prefix(true);
  return r;
}

pb::Request fault(std::uint64_t id, std::uint32_t ms) {
  pb::Request r;
  r.set_id(id);
  r.mutable_fault()->set_stall_ms(ms);
  return r;
}

// A conditional transaction that puts `key` unconditionally.
pb::Request txn_put(std::uint64_t id, const std::string& key, const std::string& value) {
  pb::Request r;
  r.set_id(id);
  auto* p = r.mutable_txn()->add_success()->mutable_put();
  p->set_key(key);
  p->set_value(value);
  return r;
}

const std::string kUsers =
    "# test users\n"
    "admin admin " +
    test_hash("admin-pw") + "\n" + "writer readwrite " + test_hash("writer-pw") +
    "   # trailing comment\n" + "reader read " + test_hash("reader-pw") + "\n" +
    "tenant readwrite " + test_hash("tenant-pw") + " prefix=t/\n";

class AuthServer : public ::testing::Test {
 protected:
  void start(const std::string& users, std::vector<std::string> extra = {},
             const std::string& threads = "2") {
    file_.write(users);
    std::vector<std::string> args = {"--listen", "127.0.0.1:0", "--threads",
                                     threads,    "--users",     file_.path()};
    args.insert(args.end(), extra.begin(), extra.end());
    server_ = std::make_unique<ServerProcess>(args, "auth");
    port_ = server_->wait_for_port(20s);
    ASSERT_NE(port_, 0) << server_->output();
  }
  std::unique_ptr<Client> login(const std::string& user, const std::string& password) {
    auto c = std::make_unique<Client>(port_);
    EXPECT_TRUE(c->connected());
    const auto r = c->call(auth(1, user, password));
    EXPECT_EQ(r.status().code(), pb::Status::OK) << r.ShortDebugString();
    return c;
  }
  // The value of `key` as the admin sees it ("" when missing).
  std::string admin_get(const std::string& key) {
    auto c = login("admin", "admin-pw");
    const auto r = c->call(get(2, key));
    return r.status().code() == pb::Status::OK ? r.get().kv().value() : std::string();
  }

  UsersFile file_{"auth"};
  std::unique_ptr<ServerProcess> server_;
  std::uint16_t port_ = 0;
};

TEST_F(AuthServer, EveryRequestButPingNeedsAuthenticationAndNothingIsApplied) {
  start(kUsers);
  Client c(port_);
  ASSERT_TRUE(c.connected());
  EXPECT_EQ(c.call(ping(1, "hi")).status().code(), pb::Status::OK);
  for (const auto& r : {put(2, "k", "v"), get(3, "k"), del(4, "k"), begin(5), stats(6),
                        txn_put(7, "k", "v"), scan_prefix(8, "")}) {
    const auto resp = c.call(r);
    EXPECT_EQ(resp.status().code(), pb::Status::UNAUTHENTICATED) << r.ShortDebugString();
    EXPECT_EQ(resp.id(), r.id());
    EXPECT_EQ(resp.result_case(), pb::Response::RESULT_NOT_SET);
  }
  // The same connection works after a successful AUTHENTICATE; nothing was written.
  const auto a = c.call(auth(9, "writer", "writer-pw"));
  ASSERT_EQ(a.status().code(), pb::Status::OK);
  EXPECT_EQ(a.authenticate().role(), "readwrite");
  EXPECT_EQ(c.call(get(10, "k")).status().code(), pb::Status::NOT_FOUND);
  EXPECT_EQ(c.call(put(11, "k", "v")).status().code(), pb::Status::OK);
  EXPECT_EQ(c.call(get(12, "k")).get().kv().value(), "v");
}

TEST_F(AuthServer, WrongPasswordAndUnknownUserFailAlikeThenASuccessWorks) {
  start(kUsers);
  Client c(port_);
  const auto wrong = c.call(auth(1, "writer", "not-the-password"));
  EXPECT_EQ(wrong.status().code(), pb::Status::UNAUTHENTICATED);
  EXPECT_EQ(wrong.result_case(), pb::Response::RESULT_NOT_SET);
  EXPECT_EQ(c.call(put(2, "w", "1")).status().code(), pb::Status::UNAUTHENTICATED);
  const auto unknown = c.call(auth(3, "nobody", "writer-pw"));
  EXPECT_EQ(unknown.status().code(), pb::Status::UNAUTHENTICATED);
  EXPECT_EQ(unknown.status().message(), wrong.status().message());  // no user enumeration
  // Another user's password does not open this user.
  EXPECT_EQ(c.call(auth(4, "writer", "admin-pw")).status().code(), pb::Status::UNAUTHENTICATED);
  EXPECT_EQ(c.call(auth(5, "writer", "writer-pw")).status().code(), pb::Status::OK);
  EXPECT_EQ(c.call(put(6, "w", "1")).status().code(), pb::Status::OK);
  EXPECT_TRUE(server_->wait_for_log("authentication failed for user 'nobody' from 127.0.0.1"));
  EXPECT_TRUE(server_->wait_for_log("authentication failed for user 'writer' from 127.0.0.1"));
  // A failed re-authentication logs the connection out.
  EXPECT_EQ(c.call(auth(7, "writer", "wrong")).status().code(), pb::Status::UNAUTHENTICATED);
  EXPECT_EQ(c.call(get(8, "w")).status().code(), pb::Status::UNAUTHENTICATED);
}

TEST_F(AuthServer, RolesAreEnforcedAndNothingIsApplied) {
  start(kUsers, {"--enable-fault-injection"});
  auto reader = login("reader", "reader-pw");
  for (const auto& r : {put(2, "r", "v"), del(3, "r"), txn_put(4, "r", "v"), stats(5)}) {
    const auto resp = reader->call(r);
    EXPECT_EQ(resp.status().code(), pb::Status::PERMISSION_DENIED) << r.ShortDebugString();
    EXPECT_EQ(resp.result_case(), pb::Response::RESULT_NOT_SET);
  }
  // Reads and read-only transactions are the read role's.
  EXPECT_EQ(reader->call(get(6, "r")).status().code(), pb::Status::NOT_FOUND);
  const auto b = reader->call(begin(7));
  ASSERT_EQ(b.status().code(), pb::Status::OK);
  EXPECT_EQ(reader->call(put(8, "r", "v", b.begin().txn_id())).status().code(),
            pb::Status::PERMISSION_DENIED);
  EXPECT_EQ(reader->call(get(9, "r", b.begin().txn_id())).status().code(), pb::Status::NOT_FOUND);
  EXPECT_EQ(reader->call(commit(10, b.begin().txn_id())).status().code(), pb::Status::OK);
  EXPECT_EQ(admin_get("r"), "");

  // Statistics and fault injection are the admin's, even with --enable-fault-injection.
  auto writer = login("writer", "writer-pw");
  EXPECT_EQ(writer->call(stats(2)).status().code(), pb::Status::PERMISSION_DENIED);
  EXPECT_EQ(writer->call(fault(3, 1)).status().code(), pb::Status::PERMISSION_DENIED);
  auto admin = login("admin", "admin-pw");
  EXPECT_EQ(admin->call(stats(2)).status().code(), pb::Status::OK);
  EXPECT_EQ(admin->call(fault(3, 1)).status().code(), pb::Status::OK);
  // So are checkpoints and snapshot streams (the image holds every key, whatever the
  // user's prefix). This server is not durable: an admin's checkpoint passes the role check
  // and gets the durability error; a snapshot stream starts.
  pb::Request checkpoint;
  checkpoint.set_id(4);
  checkpoint.mutable_checkpoint();
  pb::Request snapshot;
  snapshot.set_id(5);
  snapshot.mutable_snapshot();
  for (auto* c : {reader.get(), writer.get()}) {
    for (const auto& r : {checkpoint, snapshot}) {
      const auto resp = c->call(r);
      EXPECT_EQ(resp.status().code(), pb::Status::PERMISSION_DENIED) << r.ShortDebugString();
      EXPECT_EQ(resp.result_case(), pb::Response::RESULT_NOT_SET);
    }
  }
  EXPECT_EQ(admin->call(checkpoint).status().code(), pb::Status::INVALID_ARGUMENT);
  const auto streamed = admin->call(snapshot);
  EXPECT_EQ(streamed.status().code(), pb::Status::OK) << streamed.ShortDebugString();
  EXPECT_NE(streamed.snapshot().stream_id(), 0u);
  // The connection stays usable after a refusal.
  EXPECT_EQ(reader->call(get(11, "r")).status().code(), pb::Status::NOT_FOUND);
}

TEST_F(AuthServer, KeyPrefixRestrictsEveryOperation) {
  start(kUsers);
  auto t = login("tenant", "tenant-pw");
  EXPECT_EQ(t->call(put(2, "t/a", "1")).status().code(), pb::Status::OK);
  pb::Request outside_range;
  outside_range.set_id(9);
  outside_range.mutable_delete_range()->set_start("t/");
  outside_range.mutable_delete_range()->set_end("u");
  pb::Request inside_range;
  inside_range.set_id(10);
  inside_range.mutable_scan()->set_start("t/");
  inside_range.mutable_scan()->set_end("t/z");
  for (const auto& r : {put(3, "u/a", "1"), get(4, "u/a"), del(5, "other"), scan_prefix(6, ""),
                        scan_prefix(7, "t"), txn_put(8, "x", "1"), outside_range}) {
    EXPECT_EQ(t->call(r).status().code(), pb::Status::PERMISSION_DENIED) << r.ShortDebugString();
  }
  EXPECT_EQ(t->call(inside_range).status().code(), pb::Status::OK);
  const auto s = t->call(scan_prefix(11, "t/"));
  ASSERT_EQ(s.status().code(), pb::Status::OK);
  EXPECT_EQ(s.scan().count(), 1u);
  EXPECT_EQ(admin_get("u/a"), "");
  EXPECT_EQ(admin_get("x"), "");
  EXPECT_EQ(admin_get("t/a"), "1");
}

TEST_F(AuthServer, FailuresAreDelayedWithoutBlockingTheWorker) {
  start(kUsers, {}, "1");
  auto other = login("writer", "writer-pw");
  Client c(port_);
  using Clock = std::chrono::steady_clock;
  const auto t0 = Clock::now();
  ASSERT_EQ(c.call(auth(1, "writer", "bad")).status().code(), pb::Status::UNAUTHENTICATED);
  const auto first = Clock::now() - t0;
  EXPECT_GE(first, 150ms);  // the first failure waits 200 ms
  // The second failure in a row waits 400 ms after the first answer.
  const auto t1 = Clock::now();
  ASSERT_EQ(c.call(auth(2, "writer", "bad")).status().code(), pb::Status::UNAUTHENTICATED);
  EXPECT_GE(Clock::now() - t1, 330ms);
  // The third waits 800 ms, and a request pipelined behind it is answered after it, in
  // order. Meanwhile the only worker thread serves another connection at once.
  const auto t2 = Clock::now();
  ASSERT_TRUE(c.send_all({auth(3, "writer", "bad"), ping(4)}));
  ASSERT_TRUE(server_->wait_for_log("answer held 800 ms"));  // the hold has begun
  EXPECT_EQ(other->call(ping(5)).status().code(), pb::Status::OK);
  const auto ping_answered = Clock::now() - t2;
  const auto r3 = c.recv(15s);
  const auto third = Clock::now() - t2;
  const auto r4 = c.recv(15s);
  ASSERT_TRUE(r3 && r4);
  EXPECT_EQ(r3->id(), 3u);
  EXPECT_EQ(r3->status().code(), pb::Status::UNAUTHENTICATED);
  EXPECT_EQ(r4->id(), 4u);
  EXPECT_GE(third, 650ms);
  // The worker was free during the hold (a thread sleeping through it would answer the
  // other connection only after it).
  EXPECT_LT(ping_answered, third - 200ms);
}

TEST_F(AuthServer, QuotasRefuseOneTenantWhileAnotherKeepsWorking) {
  start("noisy readwrite " + test_hash("n") +
        " prefix=n/ max_connections=2 max_txns=2 rps=20 burst=20 max_bytes=2000\n" +
        "quiet readwrite " + test_hash("q") + " prefix=q/\n");
  // Connections.
  auto n1 = login("noisy", "n");
  auto n2 = login("noisy", "n");
  Client n3(port_);
  const auto over = n3.call(auth(1, "noisy", "n"));
  EXPECT_EQ(over.status().code(), pb::Status::RESOURCE_EXHAUSTED);
  EXPECT_NE(over.status().message().find("max_connections"), std::string::npos);
  auto q = login("quiet", "q");
  auto q2 = login("quiet", "q");
  auto q3 = login("quiet", "q");
  // Closing one gives the unit back (the server notices the close on its own time).
  n2.reset();
  EXPECT_TRUE(eventually(
      [&] { return n3.call(auth(2, "noisy", "n")).status().code() == pb::Status::OK; }, 10s));

  // Open transactions.
  const auto b1 = n1->call(begin(10));
  const auto b2 = n3.call(begin(11));
  ASSERT_EQ(b1.status().code(), pb::Status::OK);
  ASSERT_EQ(b2.status().code(), pb::Status::OK);
  const auto b3 = n1->call(begin(12));
  EXPECT_EQ(b3.status().code(), pb::Status::RESOURCE_EXHAUSTED);
  EXPECT_NE(b3.status().message().find("max_txns"), std::string::npos);
  EXPECT_EQ(q->call(begin(13)).status().code(), pb::Status::OK);
  EXPECT_EQ(n1->call(abort_txn(14, b1.begin().txn_id())).status().code(), pb::Status::OK);
  EXPECT_EQ(n1->call(begin(15)).status().code(), pb::Status::OK);

  // Bytes stored: 2000 bytes; writes refused once the tenant is at it, deletes credit.
  const std::string big(900, 'x');
  EXPECT_EQ(n1->call(put(20, "n/1", big)).status().code(), pb::Status::OK);
  EXPECT_EQ(n1->call(put(21, "n/2", big)).status().code(), pb::Status::OK);
  EXPECT_EQ(n1->call(put(22, "n/3", big)).status().code(), pb::Status::OK);  // now over
  const auto full = n1->call(put(23, "n/4", big));
  EXPECT_EQ(full.status().code(), pb::Status::RESOURCE_EXHAUSTED);
  EXPECT_NE(full.status().message().find("max_bytes"), std::string::npos);
  EXPECT_EQ(q->call(put(24, "q/1", big)).status().code(), pb::Status::OK);
  EXPECT_EQ(q->call(put(25, "q/2", big + big + big)).status().code(), pb::Status::OK);
  const auto d = n1->call(del(26, "n/3"));
  EXPECT_EQ(d.status().code(), pb::Status::OK);
  EXPECT_FALSE(d.del().has_prev_kv());  // the credit's prev_kv is not shown unasked
  EXPECT_EQ(n1->call(del(27, "n/2")).status().code(), pb::Status::OK);
  EXPECT_EQ(n1->call(put(28, "n/4", big)).status().code(), pb::Status::OK);

  // Requests per second: a pipelined burst past the bucket is not refused but held (the
  // connection is not read until the bucket refills); the other tenant is served meanwhile.
  std::vector<pb::Request> burst;
  for (std::uint64_t i = 0; i < 40; ++i) burst.push_back(ping(100 + i));
  const auto sent = std::chrono::steady_clock::now();
  ASSERT_TRUE(n1->send_all(burst));
  for (std::uint64_t i = 0; i < 20; ++i) {
    ASSERT_EQ(q->call(get(200 + i, "q/1")).status().code(), pb::Status::OK);
  }
  for (std::size_t i = 0; i < burst.size(); ++i) {
    const auto r = n1->recv(20s);
    ASSERT_TRUE(r.has_value()) << i;
    EXPECT_EQ(r->id(), 100 + i);
    EXPECT_EQ(r->status().code(), pb::Status::OK) << r->status().message();
  }
  // 40 requests against a bucket of at most 20 refilling at 20/s: at least 1 s.
  EXPECT_GE(std::chrono::steady_clock::now() - sent, 800ms);
}

// A tenant over its requests per second is paused, not refused: over a window, the
// responses it gets are bounded by its rate (bucket + rps x time), none of them a
// refusal, while another tenant on the same worker is served at once.
TEST_F(AuthServer, OverRateTenantIsPausedNotRefusedWhileAnotherIsServed) {
  start("noisy readwrite " + test_hash("n") + " rps=50 burst=50\n" + "quiet readwrite " +
            test_hash("q") + "\n",
        {}, "1");  // one worker: both tenants share it
  auto noisy = login("noisy", "n");
  auto quiet = login("quiet", "q");
  ASSERT_EQ(quiet->call(put(2, "k", "v")).status().code(), pb::Status::OK);
  std::vector<pb::Request> flood;
  for (std::uint64_t i = 0; i < 600; ++i) flood.push_back(ping(1000 + i));
  const auto sent = std::chrono::steady_clock::now();
  ASSERT_TRUE(noisy->send_all(flood));
  // The other tenant is served while the noisy one waits for its bucket.
  for (std::uint64_t i = 0; i < 50; ++i) {
    const auto t0 = std::chrono::steady_clock::now();
    ASSERT_EQ(quiet->call(get(10 + i, "k")).status().code(), pb::Status::OK);
    EXPECT_LT(std::chrono::steady_clock::now() - t0, 2s);
  }
  // Count what the noisy tenant gets in about 1.5 s.
  std::size_t answered = 0;
  std::size_t refused = 0;
  const auto window_end = sent + 1500ms;
  while (std::chrono::steady_clock::now() < window_end) {
    const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
        window_end - std::chrono::steady_clock::now());
    if (left.count() <= 0) break;
    const auto r = noisy->recv(left);
    if (!r) break;
    ++answered;
    if (r->status().code() != pb::Status::OK) ++refused;
  }
  const double secs =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - sent).count();
  // The bucket (50) plus 50 per second, with margin for a late timer; never all 600.
  EXPECT_LE(static_cast<double>(answered), 50 + 50 * (secs + 0.5) + 10)
      << "answered " << answered << " in " << secs << " s";
  EXPECT_GE(answered, 50u);  // the bucket's worth at least, at once
  EXPECT_EQ(refused, 0u);
  // The paused tenant was not read: the rest of its requests are still coming, in order.
  const auto next = noisy->recv(20s);
  ASSERT_TRUE(next.has_value());
  EXPECT_EQ(next->id(), 1000 + answered);
  EXPECT_EQ(next->status().code(), pb::Status::OK);
}

// After a pause, the tenant resumes once its bucket refills: every held request is
// answered and applied, in order, at the tenant's rate.
TEST_F(AuthServer, PausedTenantResumesAfterRefillAndLosesNothing) {
  start("noisy readwrite " + test_hash("n") + " rps=100 burst=10\n" + "quiet readwrite " +
            test_hash("q") + "\n",
        {}, "1");
  auto noisy = login("noisy", "n");
  std::vector<pb::Request> writes;
  for (std::uint64_t i = 0; i < 60; ++i) {
    writes.push_back(put(100 + i, "n/" + std::to_string(i), "v" + std::to_string(i)));
  }
  const auto sent = std::chrono::steady_clock::now();
  ASSERT_TRUE(noisy->send_all(writes));
  for (std::size_t i = 0; i < writes.size(); ++i) {
    const auto r = noisy->recv(20s);
    ASSERT_TRUE(r.has_value()) << i;
    EXPECT_EQ(r->id(), 100 + i);
    EXPECT_EQ(r->status().code(), pb::Status::OK) << r->status().message();
  }
  // 60 requests, 10 from the bucket, 50 at 100/s: at least 0.5 s.
  EXPECT_GE(std::chrono::steady_clock::now() - sent, 400ms);
  auto quiet = login("quiet", "q");
  for (std::uint64_t i = 0; i < 60; ++i) {
    const auto r = quiet->call(get(300 + i, "n/" + std::to_string(i)));
    ASSERT_EQ(r.status().code(), pb::Status::OK) << i;
    EXPECT_EQ(r.get().kv().value(), "v" + std::to_string(i));
  }
  // Refilled: the tenant is served again, at once (within a generous bound).
  ASSERT_TRUE(eventually(
      [&] {
        const auto t0 = std::chrono::steady_clock::now();
        const bool ok = noisy->call(ping(500)).status().code() == pb::Status::OK;
        return ok && std::chrono::steady_clock::now() - t0 < 1s;
      },
      10s));
}

// A rate pause is the server's doing: it counts neither against --frame-timeout (complete
// frames wait in the buffer) nor against --idle-timeout, even when it lasts longer than both.
TEST_F(AuthServer, RatePauseCountsAgainstNeitherFrameNorIdleTimeout) {
  start("slow readwrite " + test_hash("s") + " rps=1 burst=1\n",
        {"--frame-timeout", "300ms", "--idle-timeout", "700ms"}, "1");
  auto slow = login("slow", "s");
  const auto sent = std::chrono::steady_clock::now();
  ASSERT_TRUE(slow->send_all({ping(1), ping(2), ping(3)}));
  for (std::uint64_t id = 1; id <= 3; ++id) {
    const auto r = slow->recv(20s);
    ASSERT_TRUE(r.has_value()) << id;
    EXPECT_EQ(r->id(), id);
    EXPECT_EQ(r->status().code(), pb::Status::OK) << r->status().message();
  }
  // One token at once, then one per second: the pauses were longer than both timeouts.
  EXPECT_GE(std::chrono::steady_clock::now() - sent, 1800ms);
}

// One pass over a connection dispatches a bounded number of frames: thousands of requests
// buffered on one tenant's connection do not keep its worker from another tenant's request
// that became ready at the same time. The only worker is stalled (FAULT) while both
// connections' requests arrive, so both are waiting when it resumes; the STATS answer
// tells how many of the pipelined requests went first.
TEST_F(AuthServer, DeepPipelineTakesOneShareOfItsWorker) {
  start("noisy readwrite " + test_hash("n") + "\nadmin admin " + test_hash("admin-pw") + "\n",
        {"--enable-fault-injection"}, "1");
  auto noisy = login("noisy", "n");
  auto admin = login("admin", "admin-pw");
  auto staller = login("admin", "admin-pw");
  constexpr std::uint64_t kPipelined = 5000;
  std::vector<pb::Request> pings;
  for (std::uint64_t i = 0; i < kPipelined; ++i) pings.push_back(ping(10 + i));
  // Warm-up: the noisy connection's receive buffer grows to the read window.
  ASSERT_TRUE(noisy->send_all(pings));
  for (std::uint64_t i = 0; i < kPipelined; ++i) ASSERT_TRUE(noisy->recv(20s).has_value()) << i;

  const auto before = admin->call(stats(2));
  ASSERT_EQ(before.status().code(), pb::Status::OK);
  ASSERT_TRUE(staller->send(fault(3, 3000)));
  ASSERT_TRUE(server_->wait_for_log("fault injection: stalling")) << server_->output();
  ASSERT_TRUE(noisy->send_all(pings));
  ASSERT_TRUE(admin->send(stats(4)));
  const auto after = admin->recv(20s);
  ASSERT_TRUE(after.has_value());
  ASSERT_EQ(after->status().code(), pb::Status::OK);
  // Between the two STATS: the first STATS, the FAULT, and the pipelined pings dispatched
  // before this STATS: a few passes' worth, not the whole buffer.
  const std::uint64_t went_first =
      after->stats().requests_total() - before.stats().requests_total();
  EXPECT_LT(went_first, 1000u) << "requests dispatched before the STATS";
  std::printf("requests dispatched before the STATS: %llu\n",
              static_cast<unsigned long long>(went_first));
  for (std::uint64_t i = 0; i < kPipelined; ++i) {
    const auto r = noisy->recv(20s);
    ASSERT_TRUE(r.has_value()) << i;
    ASSERT_EQ(r->id(), 10 + i);
  }
}

TEST_F(AuthServer, SighupReloadAddsAndRemovesUsers) {
  start("alice readwrite " + test_hash("a") + "\n");
  auto alice = login("alice", "a");
  {
    Client c(port_);
    EXPECT_EQ(c.call(auth(1, "bob", "b")).status().code(), pb::Status::UNAUTHENTICATED);
  }
  file_.write("bob read " + test_hash("b") + "\n");
  server_->signal(SIGHUP);
  ASSERT_TRUE(server_->wait_for_log("re-read the users file"));
  auto bob = login("bob", "b");
  EXPECT_EQ(bob->call(put(2, "k", "v")).status().code(), pb::Status::PERMISSION_DENIED);
  // alice is gone: her open connection is no longer authenticated, a new login fails.
  EXPECT_EQ(alice->call(get(3, "k")).status().code(), pb::Status::UNAUTHENTICATED);
  Client c(port_);
  EXPECT_EQ(c.call(auth(4, "alice", "a")).status().code(), pb::Status::UNAUTHENTICATED);
  // A broken file keeps the users in force.
  file_.write("bob superuser x\n");
  server_->signal(SIGHUP);
  ASSERT_TRUE(server_->wait_for_log("keeping the current users"));
  EXPECT_EQ(bob->call(get(5, "k")).status().code(), pb::Status::NOT_FOUND);
}

TEST(AuthProcess, ProtectedModeRefusesNonLoopbackWithoutUsers) {
  {
    ServerProcess p({"--listen", "0.0.0.0:0"}, "protected");
    EXPECT_EQ(p.wait_exit(), 2);
    EXPECT_NE(p.output().find("--users"), std::string::npos) << p.output();
    EXPECT_NE(p.output().find("--insecure-no-auth"), std::string::npos);
  }
  {
    ServerProcess p({"--listen", "127.0.0.1:0", "--metrics-listen", "0.0.0.0:0"}, "protected-m");
    EXPECT_EQ(p.wait_exit(), 2);
    EXPECT_NE(p.output().find("--metrics-token-file"), std::string::npos) << p.output();
  }
  UsersFile users("protected");
  users.write("admin admin " + test_hash("x") + "\n");
  {
    ServerProcess p({"--listen", "0.0.0.0:0", "--users", users.path()}, "protected-ok");
    EXPECT_NE(p.wait_for_port(20s), 0) << p.output();
  }
  {
    ServerProcess p({"--listen", "0.0.0.0:0", "--insecure-no-auth"}, "protected-insecure");
    EXPECT_NE(p.wait_for_port(20s), 0) << p.output();
  }
  {
    ServerProcess p({"--listen", "127.0.0.1:0", "--users", "/nonexistent/users"}, "nousers");
    EXPECT_EQ(p.wait_exit(), 2);
    EXPECT_NE(p.output().find("/nonexistent/users"), std::string::npos);
  }
}

TEST(AuthProcess, MetricsNeedTheBearerToken) {
  UsersFile token("token");
  token.write("0123456789abcdef-token\n");
  ServerProcess p({"--listen", "127.0.0.1:0", "--metrics-listen", "0.0.0.0:0",
                   "--metrics-token-file", token.path()},
                  "token");
  ASSERT_NE(p.wait_for_port(20s), 0) << p.output();
  const std::uint16_t mport = p.metrics_port();
  ASSERT_NE(mport, 0);
  EXPECT_NE(scrape(mport).find("401 Unauthorized"), std::string::npos);
  auto with = [&](const std::string& header) {
    Client http(mport);
    EXPECT_TRUE(http.send_raw("GET /metrics HTTP/1.1\r\nHost: x\r\n" + header + "\r\n\r\n"));
    std::string body;
    char buf[4096];
    for (;;) {
      pollfd pf{http.fd(), POLLIN, 0};
      if (::poll(&pf, 1, 5000) <= 0) break;
      const ssize_t n = ::recv(http.fd(), buf, sizeof buf, 0);
      if (n <= 0) break;
      body.append(buf, static_cast<std::size_t>(n));
    }
    return body;
  };
  EXPECT_NE(with("Authorization: Bearer wrong-token-0000000").find("401"), std::string::npos);
  const std::string ok = with("authorization: Bearer 0123456789abcdef-token");
  EXPECT_NE(ok.find("200 OK"), std::string::npos) << ok;
  EXPECT_GE(metric(ok, "kv_metrics_unauthorized_total"), 2);
}

TEST(AuthProcess, AuthenticateWithoutUsersIsInvalidArgument) {
  ServerProcess p({"--listen", "127.0.0.1:0"}, "noauth");
  const auto port = p.wait_for_port(20s);
  ASSERT_NE(port, 0);
  Client c(port);
  EXPECT_EQ(c.call(auth(1, "x", "y")).status().code(), pb::Status::INVALID_ARGUMENT);
  EXPECT_EQ(c.call(put(2, "k", "v")).status().code(), pb::Status::OK);
}

}  // namespace
}  // namespace kv::test
