// libFuzzer target: arbitrary bytes through the frame reader (in fuzzer-chosen chunk
// sizes), request parsing and validation, and a re-encoding round trip. Built only with
// clang and -DKV_BUILD_FUZZ=ON; see tests/proto/CMakeLists.txt.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <string>

#include "proto/codec.hpp"
#include "proto/frame.hpp"

namespace {

void check(bool cond) {
  if (!cond) std::abort();
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  using namespace kv::proto;
  if (size == 0) return 0;
  // The first byte picks the chunk size used to feed the reader, so the fuzzer explores
  // split points as well as contents.
  const std::size_t chunk = 1 + data[0] % 64;
  const char* bytes = reinterpret_cast<const char*>(data + 1);
  std::size_t left = size - 1;
  constexpr std::uint32_t kMax = 1024;
  FrameReader reader(kMax, 8);
  pb::Request request;
  RequestLimits limits;
  std::string out;
  while (left > 0) {
    std::span<char> space = reader.prepare();
    if (space.empty()) break;
    const std::size_t n = std::min({chunk, space.size(), left});
    std::memcpy(space.data(), bytes, n);
    reader.commit(n);
    bytes += n;
    left -= n;
    for (;;) {
      FrameResult f = reader.next();
      if (f.status != FrameStatus::kComplete) {
        check(f.status != FrameStatus::kOversized || f.length > kMax);
        break;
      }
      check(f.payload.size() <= kMax && f.consumed == 4 + f.payload.size());
      if (!parse_request(f.payload, request)) continue;
      Validation v = validate_request(request, limits);
      check(v.ok() || !v.message.empty());
      // A parsed request re-encodes into a frame that splits back to its own bytes.
      out.clear();
      append_message(out, request);
      FrameResult again = split_frame(out, UINT32_MAX);
      check(again.status == FrameStatus::kComplete && again.consumed == out.size());
    }
    check(reader.capacity() <= std::max<std::size_t>(4 + kMax, FrameReader::kMaxReadWindow));
  }
  return 0;
}
