// CRC-32C (Castagnoli, reflected polynomial 0x82F63B78), as used by the SNAPSHOT stream to
// let a client check that the image it received is complete and intact
// (docs/PROTOCOL.md 3.13). Table-driven, portable; fast enough for backups.
//
// Thread safety: pure functions (the table is a constant built at compile time).
#pragma once

#include <cstdint>
#include <string_view>

namespace kv::proto {

// Extends `crc` (the CRC of the bytes before `data`; 0 for none) over `data`:
// crc32c_extend(crc32c_extend(0, a), b) == crc32c_extend(0, a + b).
[[nodiscard]] std::uint32_t crc32c_extend(std::uint32_t crc, std::string_view data) noexcept;

[[nodiscard]] inline std::uint32_t crc32c(std::string_view data) noexcept {
  return crc32c_extend(0, data);
}

}  // namespace kv::proto
