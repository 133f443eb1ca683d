// SPDX-License-Identifier: Apache-2.0
//
// The builder lays out bytes and checksums as the RFCs say; checked against known vectors and
// against the parser.
#include "pktgen/packet_builder.h"

#include <gtest/gtest.h>

#include "dataplane/parser.h"

namespace baton::pktgen {
namespace {

TEST(InetChecksum, MatchesTheRfc1071Example) {
  // RFC 1071 section 3: the words 0001 f203 f4f5 f6f7 sum to ddf2; the checksum is ~ddf2.
  const uint8_t data[] = {0x00, 0x01, 0xf2, 0x03, 0xf4, 0xf5, 0xf6, 0xf7};
  EXPECT_EQ(inet_checksum(data, sizeof data), 0x220d);
  // An odd length pads the last byte with zero.
  const uint8_t odd[] = {0x01};
  EXPECT_EQ(inet_checksum(odd, 1), uint16_t(~0x0100));
}

TEST(PacketBuilder, Ipv4HeaderMatchesAKnownVector) {
  // 45 00 00 73 00 00 40 00 40 11 b8 61 c0 a8 00 01 c0 a8 00 c7: a well-known UDP header.
  Bytes b = Pkt().ipv4("192.168.0.1", "192.168.0.199").ip_id(0).df().udp(1, 2)
                .payload_size(0x73 - 28).build();
  const uint8_t want[] = {0x45, 0x00, 0x00, 0x73, 0x00, 0x00, 0x40, 0x00, 0x40, 0x11,
                          0xb8, 0x61, 0xc0, 0xa8, 0x00, 0x01, 0xc0, 0xa8, 0x00, 0xc7};
  ASSERT_GE(b.size(), 34u);
  EXPECT_EQ(Bytes(b.begin() + 14, b.begin() + 34), Bytes(std::begin(want), std::end(want)));
  EXPECT_TRUE(ipv4_checksum_ok(b.data(), b.size()));
}

TEST(PacketBuilder, EthernetAndTagsAreLaidOutOutermostFirst) {
  Bytes b = Pkt().eth("02:00:00:00:00:01", "02:00:00:00:00:02").qinq(0x123, 0x456)
                .ipv4("1.1.1.1", "2.2.2.2").build();
  const uint8_t want[] = {2, 0, 0, 0, 0, 2, 2, 0, 0, 0, 0, 1, 0x88, 0xa8, 0x01, 0x23,
                          0x81, 0x00, 0x04, 0x56, 0x08, 0x00};
  EXPECT_EQ(Bytes(b.begin(), b.begin() + sizeof want), Bytes(std::begin(want), std::end(want)));
}

TEST(PacketBuilder, TcpSynOptionsUseTheLinuxLayout) {
  Bytes b = Pkt().ipv4("1.1.1.1", "2.2.2.2").tcp(1, 2).flags(tcpflag::kSyn).mss(1460)
                .sack_perm().ts(0x01020304, 0).wscale(7).build();
  const uint8_t want[] = {2, 4, 0x05, 0xb4, 4, 2, 8, 10, 1, 2, 3, 4, 0, 0, 0, 0, 1, 3, 3, 7};
  ASSERT_EQ(b.size(), 14u + 20 + 20 + sizeof want);
  EXPECT_EQ(b[14 + 20 + 12], (5 + 5) << 4);   // data offset 10 words
  EXPECT_EQ(Bytes(b.begin() + 54, b.end()), Bytes(std::begin(want), std::end(want)));
}

struct ChecksumCase {
  const char* name;
  Pkt pkt;
};

TEST(PacketBuilder, L4ChecksumsVerifyForEveryProtocolAndFamily) {
  Bytes inner = Pkt().ipv4("10.0.0.1", "10.0.0.2").tcp(1, 2).build();
  Bytes inner6 = Pkt().ipv6("fd00::1", "fd00::2").udp(1, 2).build();
  const ChecksumCase cases[] = {
      {"tcp4", Pkt().ipv4("10.0.0.1", "10.0.0.2").tcp(1, 2).seq(7).payload("abc")},
      {"tcp4 odd payload", Pkt().ipv4("10.0.0.1", "10.0.0.2").tcp(1, 2).payload("abcde")},
      {"tcp6 ext", Pkt().ipv6("fd00::1", "fd00::2").ext(60).tcp(1, 2).mss(1400).payload("x")},
      {"udp4", Pkt().ipv4("10.0.0.1", "10.0.0.2").udp(1, 2).payload("abc")},
      {"udp6", Pkt().ipv6("fd00::1", "fd00::2").udp(1, 2).payload("abc")},
      {"icmp4 echo", Pkt().ipv4("10.0.0.1", "10.0.0.2").icmp_echo(3, 4).payload("ping")},
      {"icmp4 error", Pkt().ipv4("10.0.0.9", "10.0.0.1").icmp_error(3, 1, inner)},
      {"icmp6 echo", Pkt().ipv6("fd00::1", "fd00::2").icmp_echo(3, 4).payload("ping")},
      {"icmp6 error", Pkt().ipv6("fd00::9", "fd00::1").icmp_error(1, 4, inner6)},
      {"vlan tcp4", Pkt().vlan(9).ipv4("10.0.0.1", "10.0.0.2").tcp(1, 2)},
  };
  for (const auto& c : cases) {
    SCOPED_TRACE(c.name);
    Bytes good = c.pkt.build();
    EXPECT_TRUE(l4_checksum_ok(good));
    Bytes bad = Pkt(c.pkt).bad_l4_csum().build();
    EXPECT_FALSE(l4_checksum_ok(bad));
    // fix_checksums repairs it, and also repairs an edited address.
    fix_checksums(bad.data(), bad.size());
    EXPECT_EQ(bad, good);
  }
}

TEST(PacketBuilder, FixChecksumsRepairsAfterAnAddressRewrite) {
  Bytes b = Pkt().ipv4("10.0.0.1", "10.0.0.2").tcp(1, 2).payload("abc").build();
  b[14 + 12] = 192;   // source address: a NAT rewrite without checksum update
  EXPECT_FALSE(ipv4_checksum_ok(b.data(), b.size()));
  fix_checksums(b.data(), b.size());
  EXPECT_TRUE(ipv4_checksum_ok(b.data(), b.size()));
  EXPECT_TRUE(l4_checksum_ok(b));
}

TEST(PacketBuilder, IcmpErrorEmbedsTheInnerPacketWithoutItsL2) {
  Bytes inner = Pkt().vlan(4).ipv4("10.0.0.1", "10.0.0.2").udp(1, 2).payload("abc").build();
  Bytes b = Pkt().ipv4("10.0.0.9", "10.0.0.1").icmp_error(3, 3, inner).build();
  Bytes l3 = strip_l2(inner);
  ASSERT_EQ(l3.size(), 20u + 8 + 3);
  EXPECT_EQ(Bytes(b.begin() + 14 + 20 + 8, b.end()), l3);
  // Cut to the RFC 792 minimum.
  Bytes short_err = Pkt().ipv4("10.0.0.9", "10.0.0.1").icmp_error(3, 3, inner, 28).build();
  EXPECT_EQ(short_err.size(), 14u + 20 + 8 + 28);
}

TEST(PacketBuilder, IcmpErrorIsCappedAtTheRfcSize) {
  Bytes big = Pkt().ipv4("10.0.0.1", "10.0.0.2").udp(1, 2).payload_size(1400).build();
  EXPECT_EQ(Pkt().ipv4("1.1.1.1", "10.0.0.1").icmp_error(3, 4, big).build().size(), 14u + 576);
  Bytes big6 = Pkt().ipv6("fd00::1", "fd00::2").udp(1, 2).payload_size(1400).build();
  EXPECT_EQ(Pkt().ipv6("fd00::9", "fd00::1").icmp_error(2, 0, big6).build().size(), 14u + 1280);
}

TEST(PacketBuilder, Ipv6ExtensionHeadersChainTheirNextHeaders) {
  Bytes b = Pkt().ipv6("fd00::1", "fd00::2").ext(0).ext(43, 16).frag(0, true).tcp(1, 2).build();
  size_t l3 = 14;
  EXPECT_EQ(b[l3 + 6], 0);           // IPv6 next header: hop-by-hop
  EXPECT_EQ(b[l3 + 40], 43);         // hop-by-hop -> routing
  EXPECT_EQ(b[l3 + 40 + 8], 44);     // routing -> fragment
  EXPECT_EQ(b[l3 + 40 + 8 + 1], 1);  // routing length: (16 / 8) - 1
  EXPECT_EQ(b[l3 + 40 + 24], 6);     // fragment -> TCP
  EXPECT_EQ(b[l3 + 40 + 24 + 3] & 1, 1);   // M flag
}

TEST(PacketBuilder, CorruptionsApplyAfterChecksums) {
  Bytes full = Pkt().ipv4("1.1.1.1", "2.2.2.2").udp(1, 2).payload("abcd").build();
  EXPECT_EQ(Pkt().ipv4("1.1.1.1", "2.2.2.2").udp(1, 2).payload("abcd").truncate(20).build(),
            Bytes(full.begin(), full.begin() + 20));
  Bytes padded = Pkt().ipv4("1.1.1.1", "2.2.2.2").udp(1, 2).pad_to(60).build();
  EXPECT_EQ(padded.size(), 60u);
  EXPECT_TRUE(l4_checksum_ok(padded));   // padding is outside the IP packet
  Bytes poked = Pkt().ipv4("1.1.1.1", "2.2.2.2").udp(1, 2).payload("abcd").poke(42, {'z'}).build();
  EXPECT_EQ(poked[42], 'z');
  EXPECT_FALSE(l4_checksum_ok(poked));
}

TEST(PacketBuilder, UdpZeroChecksumIsNoneOnV4Only) {
  Bytes b = Pkt().ipv4("1.1.1.1", "2.2.2.2").udp(1, 2).payload("x").poke(14 + 20 + 6, {0, 0})
                .build();
  EXPECT_TRUE(l4_checksum_ok(b));   // RFC 768: no checksum
  Bytes b6 = Pkt().ipv6("fd00::1", "fd00::2").udp(1, 2).payload("x").poke(14 + 40 + 6, {0, 0})
                 .build();
  EXPECT_FALSE(l4_checksum_ok(b6));   // RFC 8200 8.1: mandatory over IPv6
}

TEST(PacketBuilder, BadAddressLiteralThrows) {
  EXPECT_THROW(Pkt().ipv4("10.0.0.300", "1.1.1.1"), std::invalid_argument);
  EXPECT_THROW(Pkt().ipv6("10.0.0.1", "::1"), std::invalid_argument);
}

}  // namespace
}  // namespace baton::pktgen
