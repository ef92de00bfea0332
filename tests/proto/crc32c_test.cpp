// CRC-32C of the SNAPSHOT stream (proto/crc32c.hpp): known vectors and incremental use.
#include "proto/crc32c.hpp"

#include <gtest/gtest.h>

#include <string>

namespace kv::proto {
namespace {

TEST(Crc32c, KnownVectors) {
  EXPECT_EQ(crc32c(""), 0u);
  EXPECT_EQ(crc32c("123456789"), 0xE3069283u);            // the standard check value of CRC-32C
  EXPECT_EQ(crc32c(std::string(32, '\0')), 0x8A9136AAu);  // RFC 3720 B.4
  EXPECT_EQ(crc32c(std::string(32, '\xff')), 0x62A8AB43u);
}

TEST(Crc32c, ExtendEqualsOneShotAndDetectsAFlippedBit) {
  std::string data;
  for (int i = 0; i < 10000; ++i) data.push_back(static_cast<char>(i * 131 + 7));
  const std::uint32_t whole = crc32c(data);
  for (std::size_t cut : {0u, 1u, 4999u, 10000u}) {
    EXPECT_EQ(crc32c_extend(crc32c(std::string_view(data).substr(0, cut)),
                            std::string_view(data).substr(cut)),
              whole)
        << cut;
  }
  data[5000] ^= 0x10;
  EXPECT_NE(crc32c(data), whole);
}

}  // namespace
}  // namespace kv::proto
