// SPDX-License-Identifier: Apache-2.0
// Small helpers shared by the NAT tests.
#pragma once

#include <gtest/gtest.h>

#include <cstdio>
#include <string>
#include <vector>

#include "common/net_types.h"

namespace baton::nattest {

inline be32 ip4(const std::string& s) {
  Family f;
  auto a = IpAddr::parse(s, &f);
  EXPECT_TRUE(a && f == Family::kV4) << s;
  return a ? a->as_v4() : be32();
}
inline std::string str(be32 a) { return IpAddr::v4(a).to_string(Family::kV4); }
inline be16 port(uint16_t p) { return be16::from_host(p); }

constexpr uint8_t kTcp = static_cast<uint8_t>(IpProto::kTcp);
constexpr uint8_t kUdp = static_cast<uint8_t>(IpProto::kUdp);
constexpr uint8_t kIcmp = static_cast<uint8_t>(IpProto::kIcmp);

// Byte-equal, except that a 16-bit word at an even offset may be 0x0000 in one and 0xffff in the
// other: the two zeros of one's-complement arithmetic, both valid in a checksum field (an
// incremental update and a full computation may pick different ones).
inline ::testing::AssertionResult same_packet(const std::vector<uint8_t>& got,
                                              const std::vector<uint8_t>& want) {
  if (got.size() != want.size())
    return ::testing::AssertionFailure() << "size " << got.size() << " != " << want.size();
  for (size_t i = 0; i + 1 < got.size(); i += 2) {
    const unsigned g = got[i] << 8 | got[i + 1], w = want[i] << 8 | want[i + 1];
    if (g == w || (g == 0 && w == 0xffff) || (g == 0xffff && w == 0)) continue;
    char buf[64];
    std::snprintf(buf, sizeof buf, "offset %zu: %04x, want %04x", i, g, w);
    return ::testing::AssertionFailure() << buf;
  }
  if (got.size() % 2 && got.back() != want.back())
    return ::testing::AssertionFailure() << "last byte differs";
  return ::testing::AssertionSuccess();
}

}  // namespace baton::nattest
