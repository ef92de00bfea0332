// Unit tests of the pure frame codec (proto/frame.hpp).
#include "proto/frame.hpp"

#include <gtest/gtest.h>

#include <algorithm>
#include <cstring>
#include <random>
#include <string>
#include <vector>

namespace kv::proto {
namespace {

std::string frame_of(std::string_view payload) {
  std::string out;
  append_frame(out, payload);
  return out;
}

// Feeds `stream` to a FrameReader in chunks whose sizes come from `chunk_sizes` (cycled)
// and collects the payloads of complete frames.
std::vector<std::string> read_all(const std::string& stream, std::uint32_t max,
                                  const std::vector<std::size_t>& chunk_sizes,
                                  bool* oversized = nullptr, std::size_t initial = 16) {
  FrameReader reader(max, initial);
  std::vector<std::string> frames;
  std::size_t pos = 0;
  std::size_t chunk_index = 0;
  while (pos < stream.size()) {
    std::span<char> space = reader.prepare();
    if (space.empty()) break;  // failed
    const std::size_t want = chunk_sizes[chunk_index++ % chunk_sizes.size()];
    const std::size_t n = std::min({want, space.size(), stream.size() - pos});
    std::memcpy(space.data(), stream.data() + pos, n);
    reader.commit(n);
    pos += n;
    for (;;) {
      FrameResult f = reader.next();
      if (f.status == FrameStatus::kComplete) {
        frames.emplace_back(f.payload);
        continue;
      }
      if (f.status == FrameStatus::kOversized && oversized != nullptr) *oversized = true;
      break;
    }
  }
  return frames;
}

TEST(FrameHeader, BigEndianRoundTrip) {
  char h[4];
  put_frame_header(h, 0x01020304u);
  EXPECT_EQ(h[0], 0x01);
  EXPECT_EQ(h[1], 0x02);
  EXPECT_EQ(h[2], 0x03);
  EXPECT_EQ(h[3], 0x04);
  EXPECT_EQ(get_frame_header(h), 0x01020304u);
  put_frame_header(h, 0xFFFFFFFEu);
  EXPECT_EQ(get_frame_header(h), 0xFFFFFFFEu);
}

TEST(SplitFrame, ReportsNeedMoreUntilTheWholeFrameIsThere) {
  const std::string f = frame_of("hello");
  for (std::size_t n = 0; n < f.size(); ++n) {
    FrameResult r = split_frame(std::string_view(f).substr(0, n), 100);
    EXPECT_EQ(r.status, FrameStatus::kNeedMore) << n;
    EXPECT_EQ(r.needed, n < 4 ? 4u : f.size()) << n;
    EXPECT_EQ(r.consumed, 0u);
  }
  FrameResult r = split_frame(f, 100);
  ASSERT_EQ(r.status, FrameStatus::kComplete);
  EXPECT_EQ(r.payload, "hello");
  EXPECT_EQ(r.consumed, f.size());
  EXPECT_EQ(r.length, 5u);
}

TEST(SplitFrame, EmptyPayloadIsAFrame) {
  const std::string f = frame_of("");
  FrameResult r = split_frame(f, 0);
  ASSERT_EQ(r.status, FrameStatus::kComplete);
  EXPECT_TRUE(r.payload.empty());
  EXPECT_EQ(r.consumed, 4u);
}

TEST(SplitFrame, LengthAtTheLimitIsAcceptedAndAboveIsRejectedFromTheHeaderAlone) {
  const std::string at_limit = frame_of(std::string(10, 'x'));
  EXPECT_EQ(split_frame(at_limit, 10).status, FrameStatus::kComplete);
  EXPECT_EQ(split_frame(at_limit, 9).status, FrameStatus::kOversized);
  // Only the 4 header bytes: the decision is made before any payload exists.
  char h[4];
  put_frame_header(h, 0xFFFFFFFFu);
  FrameResult r = split_frame(std::string_view(h, 4), kDefaultMaxFrameBytes);
  EXPECT_EQ(r.status, FrameStatus::kOversized);
  EXPECT_EQ(r.length, 0xFFFFFFFFu);
}

TEST(FrameReader, SplitAtEveryByteBoundaryYieldsTheSameFrames) {
  const std::vector<std::string> payloads = {"a", "", std::string(300, 'b'), "tail\0x"};
  std::string stream;
  for (const auto& p : payloads) append_frame(stream, p);
  // Two chunks split at every position.
  for (std::size_t cut = 0; cut <= stream.size(); ++cut) {
    FrameReader reader(1000, 8);
    std::vector<std::string> got;
    auto feed = [&](std::string_view part) {
      while (!part.empty()) {
        std::span<char> space = reader.prepare();
        ASSERT_FALSE(space.empty());
        const std::size_t n = std::min(space.size(), part.size());
        std::memcpy(space.data(), part.data(), n);
        reader.commit(n);
        part.remove_prefix(n);
        for (FrameResult f = reader.next(); f.status == FrameStatus::kComplete; f = reader.next()) {
          got.emplace_back(f.payload);
        }
      }
    };
    feed(std::string_view(stream).substr(0, cut));
    feed(std::string_view(stream).substr(cut));
    EXPECT_EQ(got, payloads) << "cut at " << cut;
    EXPECT_EQ(reader.buffered(), 0u);
  }
  // One byte at a time.
  EXPECT_EQ(read_all(stream, 1000, {1}), payloads);
}

TEST(FrameReader, ManyFramesInOneBuffer) {
  std::string stream;
  std::vector<std::string> payloads;
  for (int i = 0; i < 1000; ++i) {
    payloads.push_back("payload-" + std::to_string(i));
    append_frame(stream, payloads.back());
  }
  EXPECT_EQ(read_all(stream, 64, {1 << 20}, nullptr, 1 << 20), payloads);
  // Random chunk sizes too.
  std::mt19937 rng(7);
  std::vector<std::size_t> sizes;
  for (int i = 0; i < 64; ++i) sizes.push_back(1 + rng() % 97);
  EXPECT_EQ(read_all(stream, 64, sizes), payloads);
}

TEST(FrameReader, OversizedLengthIsRejectedBeforeBufferingThePayload) {
  FrameReader reader(1024, 16);
  std::span<char> space = reader.prepare();
  put_frame_header(space.data(), 1u << 30);  // 1 GiB announced
  reader.commit(4);
  FrameResult r = reader.next();
  EXPECT_EQ(r.status, FrameStatus::kOversized);
  EXPECT_EQ(r.length, 1u << 30);
  EXPECT_TRUE(reader.failed());
  EXPECT_LE(reader.capacity(), 16u);      // nothing was allocated for the payload
  EXPECT_TRUE(reader.prepare().empty());  // a failed reader offers no space
  EXPECT_EQ(reader.next().status, FrameStatus::kOversized);  // sticky
}

TEST(FrameReader, FramesAfterAGoodOneStillDetectOversize) {
  std::string stream = frame_of("ok");
  char h[4];
  put_frame_header(h, 2000);
  stream.append(h, 4);
  stream.append("junk");
  bool oversized = false;
  EXPECT_EQ(read_all(stream, 1000, {3}, &oversized), std::vector<std::string>{"ok"});
  EXPECT_TRUE(oversized);
}

TEST(FrameReader, GrowsToHoldALargeFrameButNotBeyondIt) {
  // Larger than the read window, so only the frame can take the buffer this far.
  const std::string big(300'000, 'z');
  const std::string stream = frame_of(big);
  FrameReader reader(400'000, 64);
  std::size_t pos = 0;
  std::string got;
  while (pos < stream.size()) {
    std::span<char> space = reader.prepare();
    ASSERT_LE(reader.capacity(), std::max<std::size_t>(4 + big.size(), 64));
    const std::size_t n =
        std::min<std::size_t>(space.size(), std::min<std::size_t>(1000, stream.size() - pos));
    std::memcpy(space.data(), stream.data() + pos, n);
    reader.commit(n);
    pos += n;
    FrameResult f = reader.next();
    if (f.status == FrameStatus::kComplete) got = f.payload;
  }
  EXPECT_EQ(got, big);
  reader.shrink();
  EXPECT_EQ(reader.capacity(), 64u);
}

TEST(FrameReader, AHeaderAloneDoesNotReserveTheFrameItAnnounces) {
  FrameReader reader(kDefaultMaxFrameBytes, 4096);
  char h[4];
  put_frame_header(h, kDefaultMaxFrameBytes);
  std::span<char> space = reader.prepare();
  std::memcpy(space.data(), h, 4);
  reader.commit(4);
  EXPECT_EQ(reader.next().status, FrameStatus::kNeedMore);
  EXPECT_EQ(reader.wanted_capacity(), 4096u);
  space = reader.prepare();
  EXPECT_EQ(reader.capacity(), 4096u);
  EXPECT_EQ(space.size(), 4092u);
}

TEST(FrameReader, CapacityFollowsTheBytesThatArrive) {
  // A 1 MiB frame arriving in reads that fill whatever space is offered.
  const std::string big(1u << 20, 'q');
  const std::string stream = frame_of(big);
  FrameReader reader(kDefaultMaxFrameBytes, 4096);
  std::size_t pos = 0;
  std::string got;
  while (pos < stream.size()) {
    const std::size_t before = reader.buffered();
    std::span<char> space = reader.prepare();
    // Never more than twice what has arrived (or the initial size).
    ASSERT_LE(reader.capacity(), std::max<std::size_t>(4096, 2 * before)) << pos;
    const std::size_t n = std::min(space.size(), stream.size() - pos);
    std::memcpy(space.data(), stream.data() + pos, n);
    reader.commit(n);
    pos += n;
    FrameResult f = reader.next();
    if (f.status == FrameStatus::kComplete) got = f.payload;
  }
  EXPECT_EQ(got, big);
  EXPECT_EQ(reader.capacity(), 4 + big.size());  // the last step fits the frame exactly
}

TEST(FrameReader, PrepareWithoutGrowthOffersOnlyTheSpaceThereIs) {
  FrameReader reader(1000, 64);
  const std::string stream = frame_of(std::string(500, 'a'));
  std::span<char> space = reader.prepare(false);
  ASSERT_EQ(space.size(), 64u);
  std::memcpy(space.data(), stream.data(), 64);
  reader.commit(64);
  EXPECT_EQ(reader.next().status, FrameStatus::kNeedMore);
  EXPECT_EQ(reader.wanted_capacity(), 128u);  // doubles, toward the 504 bytes it needs
  EXPECT_TRUE(reader.prepare(false).empty());
  EXPECT_EQ(reader.capacity(), 64u);
  EXPECT_EQ(reader.prepare(true).size(), 64u);
  EXPECT_EQ(reader.capacity(), 128u);
}

TEST(FrameReader, ReadWindowWidensForFastSendersAndStaysBounded) {
  FrameReader reader(kDefaultMaxFrameBytes, 1000);  // a multiple of the 5-byte frame
  std::string small = frame_of("x");
  for (int round = 0; round < 40; ++round) {
    std::span<char> space = reader.prepare();
    // Fill the whole window with 5-byte frames and a partial one.
    std::size_t n = 0;
    while (n + small.size() <= space.size()) {
      std::memcpy(space.data() + n, small.data(), small.size());
      n += small.size();
    }
    reader.commit(n);
    while (reader.next().status == FrameStatus::kComplete) {
    }
  }
  EXPECT_GT(reader.capacity(), 100'000u);
  EXPECT_LE(reader.capacity(), FrameReader::kMaxReadWindow);
}

TEST(FrameReader, GarbageEitherFailsOrFramesWithoutOverreading) {
  std::mt19937 rng(42);
  for (int trial = 0; trial < 200; ++trial) {
    std::string garbage(1 + rng() % 200, '\0');
    for (char& c : garbage) c = static_cast<char>(rng());
    bool oversized = false;
    auto frames = read_all(garbage, 64, {1 + rng() % 13}, &oversized);
    std::size_t total = 0;
    for (const auto& f : frames) {
      EXPECT_LE(f.size(), 64u);
      total += 4 + f.size();
    }
    EXPECT_LE(total, garbage.size());
  }
}

}  // namespace
}  // namespace kv::proto
