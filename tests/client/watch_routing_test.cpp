// Push routing of the C++ client, against a scripted fake server on a local socket: the
// server interleaves id-0 WatchEvents pushes (fragments, pushes of other watches, pushes of
// unknown watches, the final canceled push) between the answers of pipelined requests.
// Answers must still pair with their requests in order; each push must reach its watch,
// with the fragments of a revision joined into one batch; the final push ends the watch;
// a lost connection ends every watch with UNAVAILABLE and the revision to resume from.
#include <gtest/gtest.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <condition_variable>
#include <future>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "client/client.hpp"
#include "proto/codec.hpp"
#include "proto/kv.pb.h"

namespace kv::client {
namespace {

namespace pb = ::kovan::kv::v1;

// A one-connection server whose test body reads requests and writes responses by hand.
class FakeServer {
 public:
  FakeServer() {
    listen_fd_ = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    a.sin_port = 0;
    EXPECT_EQ(::bind(listen_fd_, reinterpret_cast<sockaddr*>(&a), sizeof a), 0);
    EXPECT_EQ(::listen(listen_fd_, 4), 0);
    socklen_t len = sizeof a;
    ::getsockname(listen_fd_, reinterpret_cast<sockaddr*>(&a), &len);
    port_ = ntohs(a.sin_port);
  }
  ~FakeServer() {
    close_client();
    ::close(listen_fd_);
  }
  [[nodiscard]] std::string address() const { return "127.0.0.1:" + std::to_string(port_); }

  void accept_one() {
    fd_ = ::accept4(listen_fd_, nullptr, nullptr, SOCK_CLOEXEC);
    ASSERT_GE(fd_, 0);
  }
  void close_client() {
    if (fd_ >= 0) ::close(fd_);
    fd_ = -1;
  }

  // Reads one request frame (blocking).
  pb::Request read() {
    std::string header = read_exact(4);
    const std::uint32_t n = (std::uint32_t(std::uint8_t(header[0])) << 24) |
                            (std::uint32_t(std::uint8_t(header[1])) << 16) |
                            (std::uint32_t(std::uint8_t(header[2])) << 8) |
                            std::uint32_t(std::uint8_t(header[3]));
    pb::Request r;
    EXPECT_TRUE(r.ParseFromString(read_exact(n)));
    return r;
  }
  // Writes several responses in one send, so that the client reads them together.
  void write(const std::vector<pb::Response>& responses) {
    std::string out;
    for (const auto& r : responses) proto::append_message(out, r);
    std::size_t done = 0;
    while (done < out.size()) {
      const ssize_t n = ::send(fd_, out.data() + done, out.size() - done, MSG_NOSIGNAL);
      ASSERT_GT(n, 0);
      done += static_cast<std::size_t>(n);
    }
  }

 private:
  std::string read_exact(std::size_t n) {
    std::string s(n, '\0');
    std::size_t got = 0;
    while (got < n) {
      const ssize_t k = ::recv(fd_, s.data() + got, n - got, 0);
      if (k <= 0) {
        ADD_FAILURE() << "fake server: connection closed";
        return {};
      }
      got += static_cast<std::size_t>(k);
    }
    return s;
  }
  int listen_fd_ = -1;
  int fd_ = -1;
  std::uint16_t port_ = 0;
};

pb::Response answer(const pb::Request& req) {
  pb::Response r;
  r.set_id(req.id());
  r.mutable_header()->set_revision(1);
  return r;
}

pb::Response get_answer(const pb::Request& req, const std::string& value) {
  pb::Response r = answer(req);
  r.mutable_get()->mutable_kv()->set_key(req.get().key());
  r.mutable_get()->mutable_kv()->set_value(value);
  return r;
}

pb::Response watch_answer(const pb::Request& req, std::uint64_t id, std::uint64_t start) {
  pb::Response r = answer(req);
  r.mutable_watch()->set_watch_id(id);
  r.mutable_watch()->set_start_revision(start);
  return r;
}

// A push of `keys` (puts, value = key + "@" + revision) for `watch` at `revision`.
pb::Response push(std::uint64_t watch, std::uint64_t revision, const std::vector<std::string>& keys,
                  bool fragment = false) {
  pb::Response r;
  r.set_id(0);
  r.mutable_header()->set_revision(revision);
  auto* w = r.mutable_watch_events();
  w->set_watch_id(watch);
  w->set_revision(revision);
  w->set_fragment(fragment);
  for (const auto& k : keys) {
    auto* e = w->add_events();
    e->set_type(k.rfind("-", 0) == 0 ? pb::Event::DELETE : pb::Event::PUT);
    e->mutable_kv()->set_key(k);
    e->mutable_kv()->set_mod_revision(revision);
    if (e->type() == pb::Event::PUT) e->mutable_kv()->set_value(k + "@" + std::to_string(revision));
  }
  return r;
}

// Collects the batches of a callback watch; waits for a count without sleeping.
struct Collector {
  std::mutex mu;
  std::condition_variable cv;
  std::vector<WatchBatch> batches;
  std::function<void(const WatchBatch&)> callback() {
    return [this](const WatchBatch& b) {
      std::lock_guard lock(mu);
      batches.push_back(b);
      cv.notify_all();
    };
  }
  bool wait_for(std::size_t n) {
    std::unique_lock lock(mu);
    return cv.wait_for(lock, std::chrono::seconds(30), [&] { return batches.size() >= n; });
  }
  std::vector<WatchBatch> snapshot() {
    std::lock_guard lock(mu);
    return batches;
  }
};

std::string keys_of(const WatchBatch& b) {
  std::string s;
  for (const auto& e : b.events) s += (s.empty() ? "" : ",") + e.kv.key;
  return s;
}

TEST(WatchRouting, PushesInterleavedWithAnswersReachTheirWatchAndAnswersKeepTheirOrder) {
  FakeServer server;
  std::thread script([&] {
    server.accept_one();
    const pb::Request w1 = server.read();
    EXPECT_EQ(w1.op_case(), pb::Request::kWatch);
    EXPECT_EQ(w1.watch().key(), "a/");
    EXPECT_TRUE(w1.watch().prefix());
    EXPECT_EQ(w1.watch().start_revision(), 5u);
    EXPECT_TRUE(w1.watch().prev_kv());
    // The answer, then at once a revision in two fragments: they come in one read.
    server.write({watch_answer(w1, 7, 5), push(7, 5, {"a/1"}, true), push(7, 5, {"a/2"})});
    const pb::Request w2 = server.read();
    EXPECT_EQ(w2.watch().range_end(), std::string(1, '\0'));
    server.write({watch_answer(w2, 8, 3)});
    // Three pipelined gets; answers and pushes interleaved, one unknown watch among them.
    const pb::Request g1 = server.read();
    const pb::Request g2 = server.read();
    const pb::Request g3 = server.read();
    server.write({push(8, 6, {"b"}), get_answer(g1, "one"), push(7, 6, {"a/3", "-a/1"}),
                  push(99, 6, {"zzz"}), get_answer(g2, "two"), push(8, 7, {"c"}, true),
                  push(7, 7, {"a/4"}), push(8, 7, {"d"}), get_answer(g3, "three")});
    // Watch 7 ends with COMPACTED (a lagging watcher); its later pushes are dropped.
    const pb::Request g4 = server.read();
    pb::Response final_push = push(7, 0, {});
    final_push.mutable_watch_events()->set_canceled(true);
    final_push.mutable_watch_events()->set_cancel_code(pb::Status::COMPACTED);
    final_push.mutable_watch_events()->set_cancel_reason("fell behind");
    final_push.mutable_watch_events()->set_compact_revision(40);
    final_push.mutable_watch_events()->set_resume_revision(8);
    server.write({final_push, push(7, 9, {"a/late"}), get_answer(g4, "four")});
    // Then the connection drops with watch 8 open (revision 9 received in part).
    const pb::Request g5 = server.read();
    server.write({get_answer(g5, "five"), push(8, 9, {"e"}, true)});
    server.close_client();
  });

  ClientOptions options;
  options.request_timeout = std::chrono::milliseconds(30000);
  auto c = Client::connect(server.address(), options);
  ASSERT_TRUE(c.ok()) << c.status().to_string();
  Client& client = *c.value();

  Collector first;
  WatchOptions wo;
  wo.start_revision = 5;
  wo.prev_kv = true;
  auto w7 = client.watch(WatchKeys::with_prefix("a/"), wo, first.callback());
  ASSERT_TRUE(w7.ok()) << w7.status().to_string();
  EXPECT_EQ(w7.value()->id(), 7u);
  EXPECT_EQ(w7.value()->start_revision(), 5u);
  auto w8 = client.watch_stream(WatchKeys::between("b"), {});
  ASSERT_TRUE(w8.ok()) << w8.status().to_string();
  EXPECT_EQ(w8.value()->id(), 8u);

  auto f1 = as_future<KeyValue>([&](Callback<KeyValue> cb) { client.get_async("k1", cb); });
  auto f2 = as_future<KeyValue>([&](Callback<KeyValue> cb) { client.get_async("k2", cb); });
  auto f3 = as_future<KeyValue>([&](Callback<KeyValue> cb) { client.get_async("k3", cb); });
  auto r1 = f1.get();
  auto r2 = f2.get();
  auto r3 = f3.get();
  ASSERT_TRUE(r1.ok() && r2.ok() && r3.ok()) << r1.status().to_string();
  EXPECT_EQ(r1->key + "=" + r1->value, "k1=one");
  EXPECT_EQ(r2->key + "=" + r2->value, "k2=two");
  EXPECT_EQ(r3->key + "=" + r3->value, "k3=three");

  ASSERT_TRUE(first.wait_for(3));
  auto r4 = client.get("k4");
  ASSERT_TRUE(r4.ok()) << r4.status().to_string();
  EXPECT_EQ(r4->value, "four");
  ASSERT_TRUE(first.wait_for(4));
  std::vector<WatchBatch> b7 = first.snapshot();
  ASSERT_EQ(b7.size(), 4u);
  EXPECT_EQ(b7[0].revision, 5u);
  EXPECT_EQ(keys_of(b7[0]), "a/1,a/2");  // two fragments, one batch
  EXPECT_EQ(b7[0].events[1].kv.value, "a/2@5");
  EXPECT_EQ(b7[1].revision, 6u);
  EXPECT_EQ(keys_of(b7[1]), "a/3,-a/1");
  EXPECT_EQ(b7[1].events[1].type, WatchEvent::Type::kDelete);
  EXPECT_EQ(b7[2].revision, 7u);
  EXPECT_FALSE(b7[2].canceled);
  EXPECT_TRUE(b7[3].canceled);
  EXPECT_EQ(b7[3].status.code(), Code::kCompacted);
  EXPECT_EQ(b7[3].compact_revision, 40u);
  EXPECT_EQ(b7[3].resume_revision, 8u);
  EXPECT_FALSE(w7.value()->active());

  WatchStream& s8 = *w8.value();
  auto b = s8.next(std::chrono::seconds(30));
  ASSERT_TRUE(b.has_value());
  EXPECT_EQ(b->revision, 6u);
  EXPECT_EQ(keys_of(*b), "b");
  b = s8.next(std::chrono::seconds(30));
  ASSERT_TRUE(b.has_value());
  EXPECT_EQ(b->revision, 7u);
  EXPECT_EQ(keys_of(*b), "c,d");

  auto r5 = client.get("k5");
  ASSERT_TRUE(r5.ok()) << r5.status().to_string();
  EXPECT_EQ(r5->value, "five");
  b = s8.next(std::chrono::seconds(30));
  ASSERT_TRUE(b.has_value());
  EXPECT_TRUE(b->canceled);
  EXPECT_EQ(b->status.code(), Code::kUnavailable);
  // Revision 9 came only in part: not delivered; resume after the last whole one (7).
  EXPECT_EQ(b->resume_revision, 8u);
  EXPECT_TRUE(b->events.empty());
  EXPECT_FALSE(s8.next(std::chrono::milliseconds(0)).has_value());
  EXPECT_TRUE(s8.ended());
  script.join();
}

TEST(WatchRouting, CancelStopsDeliveryAndSendsCancelWatch) {
  FakeServer server;
  std::promise<void> canceled_seen;
  std::thread script([&] {
    server.accept_one();
    const pb::Request w = server.read();
    server.write({watch_answer(w, 3, 10), push(3, 10, {"x"})});
    const pb::Request c = server.read();
    EXPECT_EQ(c.op_case(), pb::Request::kCancelWatch);
    EXPECT_EQ(c.cancel_watch().watch_id(), 3u);
    // A push already in flight when the cancel arrived, then the answer.
    pb::Response ok = answer(c);
    ok.mutable_cancel_watch();
    server.write({push(3, 11, {"y"}), ok});
    const pb::Request g = server.read();
    server.write({get_answer(g, "v")});
    canceled_seen.set_value();
  });
  auto c = Client::connect(server.address());
  ASSERT_TRUE(c.ok());
  Collector got;
  auto w = c.value()->watch(WatchKeys::single("x"), {}, got.callback());
  ASSERT_TRUE(w.ok());
  ASSERT_TRUE(got.wait_for(1));
  ASSERT_TRUE(w.value()->cancel().ok());
  EXPECT_FALSE(w.value()->active());
  auto r = c.value()->get("g");
  ASSERT_TRUE(r.ok()) << r.status().to_string();
  canceled_seen.get_future().wait();
  EXPECT_EQ(got.snapshot().size(), 1u);  // the push after the cancel was not delivered
  script.join();
}

TEST(WatchRouting, AStalledStreamReaderLosesTheWatchInsteadOfBufferingWithoutBound) {
  FakeServer server;
  std::promise<void> cancel_sent;
  std::thread script([&] {
    server.accept_one();
    const pb::Request w = server.read();
    std::vector<pb::Response> out{watch_answer(w, 4, 1)};
    for (std::uint64_t rev = 1; rev <= 10; ++rev) out.push_back(push(4, rev, {"k"}));
    server.write(out);
    const pb::Request c = server.read();  // the client cancels the watch by itself
    EXPECT_EQ(c.op_case(), pb::Request::kCancelWatch);
    pb::Response ok = answer(c);
    ok.mutable_cancel_watch();
    server.write({ok});
    cancel_sent.set_value();
  });
  auto c = Client::connect(server.address());
  ASSERT_TRUE(c.ok());
  auto s = c.value()->watch_stream(WatchKeys::single("k"), {}, 3);
  ASSERT_TRUE(s.ok());
  // The reader reads nothing until the client has given up on the watch.
  cancel_sent.get_future().wait();
  std::vector<std::uint64_t> revs;
  for (;;) {
    auto b = s.value()->next(std::chrono::seconds(30));
    ASSERT_TRUE(b.has_value());
    if (b->canceled) {
      EXPECT_EQ(b->status.code(), Code::kResourceExhausted);
      EXPECT_EQ(b->resume_revision, 4u);
      break;
    }
    revs.push_back(b->revision);
  }
  EXPECT_EQ(revs, (std::vector<std::uint64_t>{1, 2, 3}));
  script.join();
}

}  // namespace
}  // namespace kv::client
