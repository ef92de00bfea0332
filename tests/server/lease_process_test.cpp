// Leases over the wire (docs/PROTOCOL.md 3.16), against real kovan-server processes and raw
// sockets: grant, put with a lease and with ttl_seconds (also inside TXN), KeyValue.lease in
// reads, keep-alive, time-to-live, revoke, expiry by the server's timer, the stats; a lease
// holder process (tests/server/lease_keepalive.py) killed with SIGKILL loses its keys about
// one TTL later; and a durable server keeps leases and keys across restarts, giving each
// lease its full TTL again, then expires them.
#include <gtest/gtest.h>
#include <spawn.h>
#include <sys/wait.h>

#include <chrono>
#include <fstream>
#include <string>
#include <vector>

#include "durable_harness.hpp"
#include "server/auth.hpp"
#include "server_process.hpp"
#include "test_client.hpp"

namespace kv::test {
namespace {

using Clock = std::chrono::steady_clock;

pb::Request grant(std::uint64_t id, std::int64_t ttl, std::uint64_t lease_id = 0) {
  pb::Request r;
  r.set_id(id);
  r.mutable_lease_grant()->set_ttl_seconds(ttl);
  r.mutable_lease_grant()->set_id(lease_id);
  return r;
}
pb::Request revoke(std::uint64_t id, std::uint64_t lease) {
  pb::Request r;
  r.set_id(id);
  r.mutable_lease_revoke()->set_id(lease);
  return r;
}
pb::Request keepalive(std::uint64_t id, std::uint64_t lease) {
  pb::Request r;
  r.set_id(id);
  r.mutable_lease_keepalive()->set_id(lease);
  return r;
}
pb::Request ttl_of(std::uint64_t id, std::uint64_t lease, bool keys = false) {
  pb::Request r;
  r.set_id(id);
  r.mutable_lease_time_to_live()->set_id(lease);
  r.mutable_lease_time_to_live()->set_keys(keys);
  return r;
}
pb::Request put_lease(std::uint64_t id, std::string key, std::uint64_t lease,
                      std::int64_t ttl = 0) {
  pb::Request r = put(id, std::move(key), "v");
  r.mutable_put()->set_lease(lease);
  r.mutable_put()->set_ttl_seconds(ttl);
  return r;
}

std::vector<std::string> in_memory_args() {
  return {"--listen", "127.0.0.1:0", "--threads", "2", "--summary-interval", "0"};
}

TEST(LeaseProcess, GrantAttachKeepAliveTimeToLiveRevokeOverTheWire) {
  ServerProcess server(in_memory_args(), "lease-wire");
  const std::uint16_t port = server.wait_for_port();
  ASSERT_NE(port, 0) << server.output();
  Client c(port);
  std::uint64_t rid = 1;

  pb::Response g = c.call(grant(rid++, 30));
  ASSERT_EQ(g.status().code(), pb::Status::OK) << g.ShortDebugString();
  const std::uint64_t id = g.lease_grant().id();
  EXPECT_NE(id, 0u);
  EXPECT_EQ(g.lease_grant().ttl_seconds(), 30);
  EXPECT_GT(g.header().revision(), 0u);

  ASSERT_EQ(c.call(put_lease(rid++, "a", id)).status().code(), pb::Status::OK);
  ASSERT_EQ(c.call(put(rid++, "plain", "v")).status().code(), pb::Status::OK);
  pb::Response got = c.call(get(rid++, "a"));
  ASSERT_EQ(got.status().code(), pb::Status::OK);
  EXPECT_EQ(got.get().kv().lease(), id);
  EXPECT_EQ(c.call(get(rid++, "plain")).get().kv().lease(), 0u);
  {
    pb::Request s;
    s.set_id(rid++);
    s.mutable_scan()->set_start("");
    pb::Response sr = c.call(s);
    ASSERT_EQ(sr.scan().kvs_size(), 2);
    EXPECT_EQ(sr.scan().kvs(0).lease(), id);  // "a"
    EXPECT_EQ(sr.scan().kvs(1).lease(), 0u);  // "plain"
  }
  // A lease that does not exist: nothing written.
  pb::Response bad = c.call(put_lease(rid++, "nope", 987654321));
  EXPECT_EQ(bad.status().code(), pb::Status::LEASE_NOT_FOUND) << bad.ShortDebugString();
  EXPECT_EQ(c.call(get(rid++, "nope")).status().code(), pb::Status::NOT_FOUND);
  // Bad arguments.
  EXPECT_EQ(c.call(grant(rid++, 0)).status().code(), pb::Status::INVALID_ARGUMENT);
  EXPECT_EQ(c.call(put_lease(rid++, "x", id, 5)).status().code(), pb::Status::INVALID_ARGUMENT);
  EXPECT_EQ(c.call(grant(rid++, 5, id)).status().code(), pb::Status::INVALID_ARGUMENT);

  // put with ttl_seconds: a one-key lease.
  pb::Response tp = c.call(put_lease(rid++, "short", 0, 1));
  ASSERT_EQ(tp.status().code(), pb::Status::OK) << tp.ShortDebugString();
  const std::uint64_t short_lease = tp.put().lease();
  EXPECT_NE(short_lease, 0u);
  EXPECT_EQ(c.call(get(rid++, "short")).get().kv().lease(), short_lease);

  // A conditional txn: a put op with ttl_seconds in each branch; only the branch that ran
  // keeps its lease.
  const std::uint64_t leases_before = c.call(stats(rid++)).stats().leases();
  {
    pb::Request t;
    t.set_id(rid++);
    auto* s1 = t.mutable_txn()->add_success()->mutable_put();
    s1->set_key("txn-ttl");
    s1->set_ttl_seconds(30);
    auto* s2 = t.mutable_txn()->add_success()->mutable_put();
    s2->set_key("txn-lease");
    s2->set_lease(id);
    t.mutable_txn()->add_success()->mutable_get()->set_key("txn-lease");
    auto* f1 = t.mutable_txn()->add_failure()->mutable_put();
    f1->set_key("never");
    f1->set_ttl_seconds(30);
    pb::Response tr = c.call(t);
    ASSERT_EQ(tr.status().code(), pb::Status::OK) << tr.ShortDebugString();
    ASSERT_TRUE(tr.txn().succeeded());
    const std::uint64_t txn_lease = tr.txn().results(0).put().lease();
    EXPECT_NE(txn_lease, 0u);
    EXPECT_EQ(c.call(get(rid++, "txn-ttl")).get().kv().lease(), txn_lease);
    EXPECT_EQ(tr.txn().results(2).get().kv().lease(), id);  // read in the same txn
    EXPECT_EQ(c.call(stats(rid++)).stats().leases(), leases_before + 1);
  }

  pb::Response tl = c.call(ttl_of(rid++, id, true));
  ASSERT_EQ(tl.status().code(), pb::Status::OK);
  EXPECT_EQ(tl.lease_time_to_live().granted_ttl_seconds(), 30);
  EXPECT_GE(tl.lease_time_to_live().ttl_seconds(), 1);
  EXPECT_LE(tl.lease_time_to_live().ttl_seconds(), 30);
  ASSERT_EQ(tl.lease_time_to_live().keys_size(), 2);
  EXPECT_EQ(tl.lease_time_to_live().keys(0), "a");
  EXPECT_EQ(tl.lease_time_to_live().keys(1), "txn-lease");

  pb::Response ka = c.call(keepalive(rid++, id));
  ASSERT_EQ(ka.status().code(), pb::Status::OK);
  EXPECT_EQ(ka.lease_keepalive().id(), id);
  EXPECT_EQ(ka.lease_keepalive().ttl_seconds(), 30);

  const std::uint64_t rev_before = c.call(ping(rid++)).header().revision();
  pb::Response rv = c.call(revoke(rid++, id));
  ASSERT_EQ(rv.status().code(), pb::Status::OK) << rv.ShortDebugString();
  EXPECT_EQ(rv.lease_revoke().deleted(), 2u);
  EXPECT_GT(rv.header().revision(), rev_before);
  EXPECT_EQ(c.call(get(rid++, "a")).status().code(), pb::Status::NOT_FOUND);
  EXPECT_EQ(c.call(get(rid++, "txn-lease")).status().code(), pb::Status::NOT_FOUND);
  EXPECT_EQ(c.call(get(rid++, "plain")).status().code(), pb::Status::OK);
  EXPECT_EQ(c.call(keepalive(rid++, id)).status().code(), pb::Status::LEASE_NOT_FOUND);
  EXPECT_EQ(c.call(revoke(rid++, id)).status().code(), pb::Status::LEASE_NOT_FOUND);
  EXPECT_EQ(c.call(ttl_of(rid++, id)).status().code(), pb::Status::LEASE_NOT_FOUND);

  // The 1 s lease expires by the server's own timer.
  EXPECT_TRUE(eventually(
      [&] { return c.call(get(rid++, "short")).status().code() == pb::Status::NOT_FOUND; }, 15s));
  pb::Response st = c.call(stats(rid++));
  EXPECT_GE(st.stats().leases_expired(), 1u);
  EXPECT_EQ(st.stats().leases_revoked(), 2u);  // `id`, and the txn's unused branch
  EXPECT_EQ(st.stats().leases(), 1u);          // the txn's lease
}

TEST(LeaseProcess, LeaseLimitFromTheCommandLine) {
  std::vector<std::string> args = in_memory_args();
  args.insert(args.end(), {"--max-leases", "2"});
  ServerProcess server(args, "lease-limit");
  const std::uint16_t port = server.wait_for_port();
  ASSERT_NE(port, 0) << server.output();
  Client c(port);
  const std::uint64_t first = c.call(grant(1, 60)).lease_grant().id();
  ASSERT_EQ(c.call(grant(2, 60)).status().code(), pb::Status::OK);
  EXPECT_EQ(c.call(grant(3, 60)).status().code(), pb::Status::RESOURCE_EXHAUSTED);
  EXPECT_EQ(c.call(put_lease(4, "k", 0, 60)).status().code(), pb::Status::RESOURCE_EXHAUSTED);
  EXPECT_EQ(c.call(get(5, "k")).status().code(), pb::Status::NOT_FOUND);
  ASSERT_EQ(c.call(revoke(6, first)).status().code(), pb::Status::OK);
  EXPECT_EQ(c.call(grant(7, 60)).status().code(), pb::Status::OK);
}

pb::Request authenticate(std::uint64_t id, const std::string& user, const std::string& pw) {
  pb::Request r;
  r.set_id(id);
  r.mutable_authenticate()->set_user(user);
  r.mutable_authenticate()->set_password(pw);
  return r;
}

// Roles: grant, revoke and keep-alive need readwrite; time-to-live is every role's. A user
// with a key prefix attaches only keys inside it and acts only on leases whose keys are all
// inside it.
TEST(LeaseProcess, RolesAndKeyPrefixes) {
  const fs::path users = temp_path("lease-roles.users");
  {
    std::ofstream out(users);
    auto h = [](const char* pw) { return server::hash_password(pw, 1000); };
    out << "writer readwrite " << h("w") << "\n"
        << "reader read " << h("r") << "\n"
        << "tenant readwrite " << h("t") << " prefix=t/\n";
  }
  ServerProcess server({"--listen", "127.0.0.1:0", "--threads", "2", "--summary-interval", "0",
                        "--users", users.string()},
                       "lease-roles");
  const std::uint16_t port = server.wait_for_port(20s);
  ASSERT_NE(port, 0) << server.output();
  Client writer(port), reader(port), tenant(port);
  ASSERT_EQ(writer.call(authenticate(1, "writer", "w")).status().code(), pb::Status::OK);
  ASSERT_EQ(reader.call(authenticate(1, "reader", "r")).status().code(), pb::Status::OK);
  ASSERT_EQ(tenant.call(authenticate(1, "tenant", "t")).status().code(), pb::Status::OK);

  const std::uint64_t shared = writer.call(grant(2, 60)).lease_grant().id();
  ASSERT_NE(shared, 0u);
  ASSERT_EQ(writer.call(put_lease(3, "w/1", shared)).status().code(), pb::Status::OK);
  // The read role: no grant, revoke or keep-alive; time-to-live is allowed.
  EXPECT_EQ(reader.call(grant(2, 60)).status().code(), pb::Status::PERMISSION_DENIED);
  EXPECT_EQ(reader.call(revoke(3, shared)).status().code(), pb::Status::PERMISSION_DENIED);
  EXPECT_EQ(reader.call(keepalive(4, shared)).status().code(), pb::Status::PERMISSION_DENIED);
  pb::Response rt = reader.call(ttl_of(5, shared, true));
  ASSERT_EQ(rt.status().code(), pb::Status::OK) << rt.ShortDebugString();
  EXPECT_EQ(rt.lease_time_to_live().keys_size(), 1);
  EXPECT_EQ(reader.call(put_lease(6, "r/1", 0, 5)).status().code(), pb::Status::PERMISSION_DENIED);
  // The tenant may attach its own keys to any lease, but not act on a lease that holds keys
  // outside its prefix.
  EXPECT_EQ(tenant.call(put_lease(2, "t/1", shared)).status().code(), pb::Status::OK);
  EXPECT_EQ(tenant.call(put_lease(3, "w/2", shared)).status().code(),
            pb::Status::PERMISSION_DENIED);
  EXPECT_EQ(tenant.call(revoke(4, shared)).status().code(), pb::Status::PERMISSION_DENIED);
  EXPECT_EQ(tenant.call(keepalive(5, shared)).status().code(), pb::Status::PERMISSION_DENIED);
  EXPECT_EQ(tenant.call(ttl_of(6, shared, true)).status().code(), pb::Status::PERMISSION_DENIED);
  EXPECT_EQ(writer.call(get(4, "w/1")).status().code(), pb::Status::OK);
  // Its own lease: everything.
  pb::Response own = tenant.call(grant(7, 60));
  ASSERT_EQ(own.status().code(), pb::Status::OK);
  const std::uint64_t mine = own.lease_grant().id();
  ASSERT_EQ(tenant.call(put_lease(8, "t/2", mine)).status().code(), pb::Status::OK);
  EXPECT_EQ(tenant.call(keepalive(9, mine)).status().code(), pb::Status::OK);
  pb::Response rv = tenant.call(revoke(10, mine));
  ASSERT_EQ(rv.status().code(), pb::Status::OK);
  EXPECT_EQ(rv.lease_revoke().deleted(), 1u);
  // The writer revokes the shared lease: its key and the tenant's go.
  pb::Response wr = writer.call(revoke(5, shared));
  ASSERT_EQ(wr.status().code(), pb::Status::OK);
  EXPECT_EQ(wr.lease_revoke().deleted(), 2u);
  std::error_code ignored;
  fs::remove(users, ignored);
}

// A child process (python3) renewing a lease every 0.2 s; its stdout goes to a file.
class Holder {
 public:
  Holder(std::uint16_t port, std::uint64_t lease) : out_(temp_path("lease-holder.out")) {
    std::vector<std::string> argv_s = {"python3", LEASE_KEEPALIVE_PY, std::to_string(port),
                                       std::to_string(lease), "0.2"};
    std::vector<char*> argv;
    for (auto& a : argv_s) argv.push_back(a.data());
    argv.push_back(nullptr);
    posix_spawn_file_actions_t actions;
    posix_spawn_file_actions_init(&actions);
    posix_spawn_file_actions_addopen(&actions, 1, out_.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
    posix_spawn_file_actions_adddup2(&actions, 1, 2);
    ok_ = posix_spawnp(&pid_, "python3", &actions, nullptr, argv.data(), environ) == 0;
    posix_spawn_file_actions_destroy(&actions);
  }
  ~Holder() {
    kill();
    std::error_code ignored;
    fs::remove(out_, ignored);
  }
  bool ok() const { return ok_; }
  std::string output() const { return read_file(out_); }
  void kill() {
    if (ok_ && pid_ > 0) {
      ::kill(pid_, SIGKILL);
      int status = 0;
      ::waitpid(pid_, &status, 0);
      pid_ = -1;
    }
  }

 private:
  fs::path out_;
  pid_t pid_ = -1;
  bool ok_ = false;
};

TEST(LeaseProcess, HolderKilledWithSigkillLosesItsKeysAfterTheTtl) {
  ServerProcess server(in_memory_args(), "lease-holder");
  const std::uint16_t port = server.wait_for_port();
  ASSERT_NE(port, 0) << server.output();
  Client c(port);
  std::uint64_t rid = 1;
  // 2 s: a renewal every 0.2 s leaves 1.8 s of slack for a loaded machine.
  const std::int64_t ttl = 2;
  const std::uint64_t id = c.call(grant(rid++, ttl)).lease_grant().id();
  ASSERT_NE(id, 0u);
  for (const char* k : {"member/1", "member/2", "member/3"}) {
    ASSERT_EQ(c.call(put_lease(rid++, k, id)).status().code(), pb::Status::OK);
  }
  const auto granted = Clock::now();
  Holder holder(port, id);
  ASSERT_TRUE(holder.ok()) << "cannot start python3";
  ASSERT_TRUE(
      eventually([&] { return holder.output().find("renewed 2\n") != std::string::npos; }, 20s))
      << holder.output();
  // While it renews, the keys outlive the TTL more than twice over.
  while (Clock::now() - granted < std::chrono::seconds(2 * ttl + 1)) {
    pb::Response s = c.call(get(rid++, "member/2"));
    ASSERT_EQ(s.status().code(), pb::Status::OK)
        << "a key of a renewed lease vanished; holder: " << holder.output();
  }
  ASSERT_EQ(holder.output().find("failed"), std::string::npos) << holder.output();
  holder.kill();
  const auto killed = Clock::now();
  ASSERT_TRUE(eventually(
      [&] {
        pb::Request s;
        s.set_id(rid++);
        s.mutable_scan()->set_start("member/");
        s.mutable_scan()->set_prefix(true);
        return c.call(s).scan().kvs_size() == 0;
      },
      30s));
  const auto after = Clock::now() - killed;
  // About one TTL (the last renewal was at most 0.2 s before the kill; the server checks
  // every 0.1 s); the upper bound is generous for a loaded machine.
  EXPECT_LT(after, std::chrono::seconds(ttl) + 10s);
  EXPECT_EQ(c.call(ttl_of(rid++, id)).status().code(), pb::Status::LEASE_NOT_FOUND);
  EXPECT_EQ(c.call(keepalive(rid++, id)).status().code(), pb::Status::LEASE_NOT_FOUND);
}

TEST(LeaseProcess, DurableRestartKeepsLeasesAndExpiresThemAfterTheTtl) {
  TempDir dir("lease-durable");
  std::uint64_t short_id = 0, long_id = 0;
  {
    DurableServer s(dir.str(), {}, "lease-durable-1");
    ASSERT_NE(s.port(), 0) << s.output();
    Client c(s.port());
    short_id = c.call(grant(1, 2)).lease_grant().id();
    long_id = c.call(grant(2, 600)).lease_grant().id();
    ASSERT_NE(short_id, 0u);
    ASSERT_NE(long_id, 0u);
    ASSERT_EQ(c.call(put_lease(3, "s/1", short_id)).status().code(), pb::Status::OK);
    ASSERT_EQ(c.call(put_lease(4, "s/2", short_id)).status().code(), pb::Status::OK);
    ASSERT_EQ(c.call(put_lease(5, "l/1", long_id)).status().code(), pb::Status::OK);
    s.crash();  // kill -9: every acknowledged grant and put is in the log
  }
  {
    DurableServer s(dir.str(), {}, "lease-durable-2");
    ASSERT_NE(s.port(), 0) << s.output();
    const auto started = Clock::now();
    Client c(s.port());
    pb::Response t = c.call(ttl_of(1, short_id, true));
    ASSERT_EQ(t.status().code(), pb::Status::OK) << t.ShortDebugString();
    EXPECT_EQ(t.lease_time_to_live().granted_ttl_seconds(), 2);
    ASSERT_EQ(t.lease_time_to_live().keys_size(), 2);
    EXPECT_EQ(c.call(get(2, "s/1")).get().kv().lease(), short_id);
    EXPECT_EQ(c.call(get(3, "l/1")).get().kv().lease(), long_id);
    // Expired by the restarted server's timer, about 2 s after its start.
    std::uint64_t rid = 10;
    ASSERT_TRUE(eventually(
        [&] { return c.call(get(rid++, "s/1")).status().code() == pb::Status::NOT_FOUND; }, 30s));
    EXPECT_GE(Clock::now() - started, 1000ms) << "the lease expired early after the restart";
    EXPECT_EQ(c.call(get(rid++, "s/2")).status().code(), pb::Status::NOT_FOUND);
    EXPECT_EQ(c.call(get(rid++, "l/1")).status().code(), pb::Status::OK);
    EXPECT_EQ(s.stop(), 0);
  }
  {
    DurableServer s(dir.str(), {}, "lease-durable-3");
    ASSERT_NE(s.port(), 0) << s.output();
    Client c(s.port());
    EXPECT_EQ(c.call(ttl_of(1, short_id)).status().code(), pb::Status::LEASE_NOT_FOUND);
    EXPECT_EQ(c.call(get(2, "s/1")).status().code(), pb::Status::NOT_FOUND);
    EXPECT_EQ(c.call(get(3, "l/1")).get().kv().lease(), long_id);
    EXPECT_EQ(c.call(ttl_of(4, long_id)).lease_time_to_live().granted_ttl_seconds(), 600);
  }
}

}  // namespace
}  // namespace kv::test
