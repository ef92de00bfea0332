// Frame codec of the Kovan KV wire protocol (docs/PROTOCOL.md, "Framing").
//
// A frame is a 4-byte big-endian unsigned payload length N followed by N payload bytes.
// This header is pure: no I/O, no protobuf, no allocation except inside FrameReader's own
// buffer, which grows only to hold one frame no larger than the configured limit. It can
// therefore be unit-tested split at every byte boundary and fuzzed.
//
// Thread safety: the free functions are reentrant. A FrameReader is a plain value owned by
// one connection; it is not safe for concurrent use.
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>
#include <string>
#include <string_view>
#include <vector>

namespace kv::proto {

inline constexpr std::size_t kFrameHeaderBytes = 4;
// Default upper bound on a frame's payload length (the server's --max-frame-bytes).
inline constexpr std::uint32_t kDefaultMaxFrameBytes = 4u << 20;

enum class FrameStatus : std::uint8_t {
  kComplete,   // a whole frame is available: see FrameResult::payload
  kNeedMore,   // the bytes end inside a header or payload: read more
  kOversized,  // the header announces a payload longer than the limit: the stream cannot
               // be framed any further (no payload byte has been or needs to be buffered)
};

struct FrameResult {
  FrameStatus status = FrameStatus::kNeedMore;
  // Payload length from the header; valid once the header is complete (kComplete,
  // kOversized, and kNeedMore with at least 4 bytes available), else 0.
  std::uint32_t length = 0;
  // Bytes at the front of the input that this frame occupies (header + payload) when
  // kComplete; 0 otherwise.
  std::size_t consumed = 0;
  // kNeedMore: the total number of bytes the input must hold before a call can make
  // progress (4 while the header is incomplete, then 4 + length).
  std::size_t needed = 0;
  // kComplete: the payload, pointing into the input.
  std::string_view payload;
};

// Looks at the front of `input` and reports the first frame in it. Never reads past
// `input`; checks the announced length against `max_frame_bytes` as soon as the 4 header
// bytes are there, before any payload is available.
[[nodiscard]] FrameResult split_frame(std::string_view input,
                                      std::uint32_t max_frame_bytes) noexcept;

// Writes the 4-byte big-endian header for a payload of `length` bytes.
void put_frame_header(char* out, std::uint32_t length) noexcept;
// Reads a 4-byte big-endian header.
[[nodiscard]] std::uint32_t get_frame_header(const char* in) noexcept;

// Appends header + payload to `out` (which may already hold earlier frames).
void append_frame(std::string& out, std::string_view payload);

// An incremental frame reader over its own receive buffer, designed for a socket loop:
//
//   std::span<char> space = reader.prepare();      // where the next read may write
//   size_t n = read(fd, space.data(), space.size());
//   reader.commit(n);
//   for (;;) {
//     FrameResult f = reader.next();
//     if (f.status == FrameStatus::kComplete) { handle(f.payload); continue; }
//     if (f.status == FrameStatus::kOversized) { report; close; }
//     break;  // kNeedMore
//   }
//
// Payload views returned by next() stay valid until the following prepare() (which may
// move or reallocate the buffer).
//
// Growth follows the bytes that actually arrive, never the length a header announces: the
// buffer grows only when it is full (or the previous read filled it: a fast sender), and
// then at most doubles, up to the room the frame under assembly needs (at most
// 4 + max_frame_bytes) or the read window (kMaxReadWindow), whichever is larger. So the
// capacity stays at most max(initial_capacity, 2 x the most bytes it has held at once), and
// a peer that sends a header announcing a large frame and then stalls costs nothing extra.
class FrameReader {
 public:
  static constexpr std::size_t kMaxReadWindow = 256 * 1024;

  explicit FrameReader(std::uint32_t max_frame_bytes, std::size_t initial_capacity = 4096);

  // Free space after the buffered bytes. Compacts consumed bytes away first; then, when
  // `grow` is true, grows the buffer to wanted_capacity(), so the span holds at least 1
  // byte unless the reader has failed. With `grow` false the buffer keeps its size and the
  // span may be empty (the caller could not afford the growth; see wanted_capacity()).
  [[nodiscard]] std::span<char> prepare(bool grow = true);
  // The capacity prepare(true) would grow the buffer to (equal to capacity() when it would
  // not grow). Lets a caller account for the growth before it happens.
  [[nodiscard]] std::size_t wanted_capacity() const noexcept;
  // Records that `n` bytes were written at the start of the span from prepare().
  void commit(std::size_t n) noexcept;

  // Extracts the next frame from the buffered bytes. kOversized is sticky.
  [[nodiscard]] FrameResult next() noexcept;

  // Bytes received but not yet returned as frames.
  [[nodiscard]] std::size_t buffered() const noexcept { return end_ - begin_; }
  [[nodiscard]] std::size_t capacity() const noexcept { return buf_.size(); }
  [[nodiscard]] bool failed() const noexcept { return failed_; }
  [[nodiscard]] std::size_t initial_capacity() const noexcept { return initial_capacity_; }

  // When nothing is buffered and the buffer grew beyond the initial capacity, returns it
  // to the initial capacity (called when a connection goes quiet after large frames).
  void shrink();

 private:
  std::vector<char> buf_;
  std::size_t begin_ = 0;  // first unconsumed byte
  std::size_t end_ = 0;    // one past the last received byte
  std::size_t initial_capacity_;
  std::uint32_t max_frame_bytes_;
  bool last_read_filled_ = false;  // the previous commit filled all offered space
  bool failed_ = false;
};

}  // namespace kv::proto
