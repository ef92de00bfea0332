// Uses every exported library of an installed Kovan KV: the C++ client against a running
// server (put, then get), the kovan reclaimer (publish, retire, flush), and the generated
// wire messages. Usage: consumer HOST:PORT. Prints "consumer ok" and exits 0 on success.
#include <proto/kv.pb.h>
#include <client/client.hpp>
#include <cstdio>
#include <kovan/kovan.hpp>
#include <string>

namespace {

struct Item : kovan::Node {
  int value;
  explicit Item(int v) : value(v) {}
};

int fail(const std::string& what) {
  std::fprintf(stderr, "consumer: %s\n", what.c_str());
  return 1;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc != 2) return fail("usage: consumer HOST:PORT");

  // The client library.
  auto connected = kv::client::Client::connect(argv[1]);
  if (!connected.ok()) return fail("connect: " + connected.status().to_string());
  kv::client::Client& client = *connected.value();
  if (auto put = client.put("packaging/key", "installed"); !put.ok()) {
    return fail("put: " + put.status().to_string());
  }
  auto got = client.get("packaging/key");
  if (!got.ok()) return fail("get: " + got.status().to_string());
  if (got.value().value != "installed") return fail("get returned '" + got.value().value + "'");

  // The reclaimer.
  {
    kovan::Atomic<Item> cell{new Item(1)};
    {
      kovan::Guard g = kovan::pin();
      Item* old = cell.exchange(new Item(2), g);
      if (old->value != 1) return fail("reclaimer: exchange returned the wrong node");
      kovan::retire(old);
    }
    kovan::flush();
    if (kovan::stats().retired < 1) return fail("reclaimer: retire not counted");
  }

  // The generated protocol messages.
  kovan::kv::v1::Request request;
  request.set_id(7);
  std::string wire;
  if (!request.SerializeToString(&wire)) return fail("protobuf: serialization failed");
  kovan::kv::v1::Request back;
  if (!back.ParseFromString(wire) || back.id() != 7) return fail("protobuf: round trip failed");

  std::puts("consumer ok");
  return 0;
}
