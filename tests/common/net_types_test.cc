// SPDX-License-Identifier: Apache-2.0
#include "common/net_types.h"

#include <gtest/gtest.h>

#include <cstring>

namespace baton {
namespace {

Tuple tcp4(const char* s, uint16_t sp, const char* d, uint16_t dp) {
  Tuple t;
  Family f;
  t.src = *IpAddr::parse(s, &f);
  t.dst = *IpAddr::parse(d, &f);
  t.family = f;
  t.sport = be16::from_host(sp);
  t.dport = be16::from_host(dp);
  t.proto = 6;
  return t;
}

TEST(FlowKey, BothDirectionsMapToOneKey) {
  Tuple t = tcp4("10.0.0.2", 40000, "10.0.0.1", 80);
  Dir d1, d2;
  FlowKey k1 = FlowKey::from_tuple(t, &d1);
  FlowKey k2 = FlowKey::from_tuple(t.reverse(), &d2);
  EXPECT_EQ(k1, k2);
  EXPECT_NE(d1, d2);
  EXPECT_EQ(k1.owner_hash(), k2.owner_hash());
  EXPECT_EQ(k1.tuple(d1), t);
  EXPECT_EQ(k1.tuple(d2), t.reverse());
}

TEST(FlowKey, SameAddressOrdersByPort) {
  Tuple t = tcp4("10.0.0.1", 9000, "10.0.0.1", 80);
  Dir d;
  FlowKey k = FlowKey::from_tuple(t, &d);
  EXPECT_EQ(d, Dir::kHiToLo);
  EXPECT_EQ(k.lo_port.host(), 80);
}

TEST(ByteOrder, Be16HoldsWireBytes) {
  be16 v = be16::from_host(0x1234);
  const uint8_t* p = reinterpret_cast<const uint8_t*>(&v);
  EXPECT_EQ(p[0], 0x12);
  EXPECT_EQ(p[1], 0x34);
  EXPECT_EQ(v.host(), 0x1234);
}

TEST(Address, ParsesAndPrints) {
  Family f;
  auto a = IpAddr::parse("2001:db8::1", &f);
  ASSERT_TRUE(a);
  EXPECT_EQ(f, Family::kV6);
  EXPECT_EQ(a->to_string(f), "2001:db8::1");
  EXPECT_FALSE(IpAddr::parse("300.1.1.1", &f));
  EXPECT_EQ(MacAddr::parse("02:00:00:00:00:0a")->to_string(), "02:00:00:00:00:0a");
  EXPECT_FALSE(MacAddr::parse("02:00:00:00:00"));
  EXPECT_FALSE(MacAddr::parse("02:00:00:00:00:0a:ff"));
}

// MacAddr's own == (word compares) agrees with byte equality: each byte position matters.
TEST(Address, MacEqualityLooksAtEveryByte) {
  const MacAddr a = *MacAddr::parse("02:ba:70:00:00:01");
  EXPECT_TRUE(a == *MacAddr::parse("02:ba:70:00:00:01"));
  for (int i = 0; i < 6; i++) {
    MacAddr b = a;
    b.b[i] ^= 0x10;
    EXPECT_FALSE(a == b) << "byte " << i;
    EXPECT_TRUE(a != b) << "byte " << i;
    EXPECT_NE(a <=> b, std::strong_ordering::equal);
  }
}

// The IPv4 store's 16 bytes give the same fingerprint as the whole key they expand to (the
// destination checks a compact update's key from the store).
TEST(FlowKey, AnIpv4KeysStoredFormHasItsFingerprint) {
  uint64_t x = 0x9e3779b97f4a7c15ull;
  auto next = [&] {
    x ^= x << 13, x ^= x >> 7, x ^= x << 17;
    return x;
  };
  for (int i = 0; i < 1000; i++) {
    FlowKey k;
    k.family = Family::kV4;
    k.proto = static_cast<uint8_t>(next());
    k.vlan = static_cast<uint16_t>(next() & 0xfff);
    const uint64_t a = next();
    std::memcpy(k.lo_addr.b.data(), &a, 4);
    std::memcpy(k.hi_addr.b.data(), reinterpret_cast<const uint8_t*>(&a) + 4, 4);
    k.lo_port = be16::from_host(static_cast<uint16_t>(next()));
    k.hi_port = be16::from_host(static_cast<uint16_t>(next()));
    const uint64_t seed = i % 7 == 0 ? 0 : next();
    const FlowKeyV4 v = FlowKeyV4::of(k);
    ASSERT_EQ(v.fingerprint(seed), k.fingerprint(seed)) << i;
    ASSERT_EQ(v.expand(), k) << i;
  }
}

}  // namespace
}  // namespace baton
