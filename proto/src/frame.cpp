#include "proto/frame.hpp"

#include <algorithm>
#include <cstring>

namespace kv::proto {

void put_frame_header(char* out, std::uint32_t length) noexcept {
  out[0] = static_cast<char>((length >> 24) & 0xFF);
  out[1] = static_cast<char>((length >> 16) & 0xFF);
  out[2] = static_cast<char>((length >> 8) & 0xFF);
  out[3] = static_cast<char>(length & 0xFF);
}

std::uint32_t get_frame_header(const char* in) noexcept {
  const auto byte = [in](int i) {
    return static_cast<std::uint32_t>(static_cast<unsigned char>(in[i]));
  };
  return (byte(0) << 24) | (byte(1) << 16) | (byte(2) << 8) | byte(3);
}

FrameResult split_frame(std::string_view input, std::uint32_t max_frame_bytes) noexcept {
  FrameResult r;
  if (input.size() < kFrameHeaderBytes) {
    r.status = FrameStatus::kNeedMore;
    r.needed = kFrameHeaderBytes;
    return r;
  }
  r.length = get_frame_header(input.data());
  if (r.length > max_frame_bytes) {
    r.status = FrameStatus::kOversized;
    return r;
  }
  const std::size_t total = kFrameHeaderBytes + r.length;
  if (input.size() < total) {
    r.status = FrameStatus::kNeedMore;
    r.needed = total;
    return r;
  }
  r.status = FrameStatus::kComplete;
  r.consumed = total;
  r.payload = input.substr(kFrameHeaderBytes, r.length);
  return r;
}

void append_frame(std::string& out, std::string_view payload) {
  const std::size_t at = out.size();
  out.resize(at + kFrameHeaderBytes + payload.size());
  put_frame_header(out.data() + at, static_cast<std::uint32_t>(payload.size()));
  if (!payload.empty()) {
    std::memcpy(out.data() + at + kFrameHeaderBytes, payload.data(), payload.size());
  }
}

FrameReader::FrameReader(std::uint32_t max_frame_bytes, std::size_t initial_capacity)
    : buf_(std::max<std::size_t>(initial_capacity, kFrameHeaderBytes)),
      initial_capacity_(buf_.size()),
      max_frame_bytes_(max_frame_bytes) {}

std::size_t FrameReader::wanted_capacity() const noexcept {
  if (failed_) return buf_.size();
  const std::size_t cap = buf_.size();
  const std::size_t n = end_ - begin_;  // what prepare() keeps after compacting
  const bool full = n == cap;
  const bool widen = last_read_filled_ && cap < kMaxReadWindow;
  if (!full && !widen) return cap;
  // How far this frame may take the buffer: its whole length once the header is there
  // (next() checked it against the limit, so this is at most 4 + max_frame_bytes_), and
  // the read window for a sender that keeps the buffer full.
  std::size_t ceiling = widen ? kMaxReadWindow : n + 1;
  if (n >= kFrameHeaderBytes) {
    const std::uint32_t len = get_frame_header(buf_.data() + begin_);
    if (len <= max_frame_bytes_) ceiling = std::max(ceiling, kFrameHeaderBytes + len);
  }
  ceiling = std::max(ceiling, n + 1);
  // Never more than double what is there: capacity follows the bytes that arrived.
  return std::max(cap, std::min(cap * 2, ceiling));
}

std::span<char> FrameReader::prepare(bool grow) {
  if (failed_) return {};
  const std::size_t want = grow ? wanted_capacity() : buf_.size();
  // Move the partial frame to the front so that the free tail is as large as possible.
  if (begin_ > 0) {
    const std::size_t n = end_ - begin_;
    if (n > 0) std::memmove(buf_.data(), buf_.data() + begin_, n);
    begin_ = 0;
    end_ = n;
  }
  if (want > buf_.size()) buf_.resize(want);
  return {buf_.data() + end_, buf_.size() - end_};
}

void FrameReader::commit(std::size_t n) noexcept {
  last_read_filled_ = (end_ + n == buf_.size());
  end_ += n;
}

FrameResult FrameReader::next() noexcept {
  if (failed_) {
    FrameResult r;
    r.status = FrameStatus::kOversized;
    if (end_ - begin_ >= kFrameHeaderBytes) r.length = get_frame_header(buf_.data() + begin_);
    return r;
  }
  FrameResult r =
      split_frame(std::string_view(buf_.data() + begin_, end_ - begin_), max_frame_bytes_);
  switch (r.status) {
    case FrameStatus::kComplete:
      begin_ += r.consumed;
      if (begin_ == end_) begin_ = end_ = 0;  // cheap reset keeps the next read at the front
      break;
    case FrameStatus::kOversized:
      failed_ = true;
      break;
    case FrameStatus::kNeedMore:
      break;
  }
  return r;
}

void FrameReader::shrink() {
  if (begin_ != end_ || buf_.size() <= initial_capacity_) return;
  std::vector<char>(initial_capacity_).swap(buf_);
  begin_ = end_ = 0;
  last_read_filled_ = false;
}

}  // namespace kv::proto
