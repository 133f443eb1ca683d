// SPDX-License-Identifier: Apache-2.0
//
// The parser against packets from the builder: valid ones parse to the expected fields, each
// malformed one is dropped with its own reason, and no truncation or corruption makes the parser
// succeed wrongly or read past the frame (every parse runs on an exact-size heap copy, so ASan
// catches a one-byte overread).
#include "dataplane/parser.h"

#include <gtest/gtest.h>

#include <cctype>
#include <cstring>
#include <memory>
#include <string>
#include <vector>

#include "pktgen/packet_builder.h"

namespace baton {
namespace {

using pktgen::Bytes;
using pktgen::Pkt;

struct Parsed {
  bool ok = false;
  PacketMeta m;
  DropReason reason = DropReason::kCount;
};

Parsed parse(const uint8_t* p, size_t n) {
  std::unique_ptr<uint8_t[]> copy(new uint8_t[n]);   // exactly n bytes: overreads are caught
  if (n) std::memcpy(copy.get(), p, n);
  Parsed r;
  r.ok = parse_packet(copy.get(), uint32_t(n), &r.m, &r.reason);
  return r;
}
Parsed parse(const Bytes& b) { return parse(b.data(), b.size()); }

IpAddr ip(const char* s) {
  Family f;
  return *IpAddr::parse(s, &f);
}
be16 port(uint16_t p) { return be16::from_host(p); }

Tuple tuple(const char* s, uint16_t sp, const char* d, uint16_t dp, uint8_t proto, Family f,
            uint16_t vlan = 0) {
  Tuple t;
  t.src = ip(s);
  t.dst = ip(d);
  t.sport = port(sp);
  t.dport = port(dp);
  t.proto = proto;
  t.family = f;
  t.vlan = vlan;
  return t;
}

Pkt tcp4() { return Pkt().ipv4("10.0.0.1", "10.0.0.2").tcp(1234, 80); }
Pkt tcp6() { return Pkt().ipv6("2001:db8::1", "2001:db8::2").tcp(1234, 80); }
Pkt udp4() { return Pkt().ipv4("10.0.0.1", "10.0.0.2").udp(5353, 53); }
Pkt udp6() { return Pkt().ipv6("2001:db8::1", "2001:db8::2").udp(5353, 53); }

// ---------------------------------------------------------------------------------------------
// Valid packets

TEST(Parser, TcpSynV4FillsTupleFlagsOptionsAndOffsets) {
  Bytes b = Pkt()
                .eth("02:00:00:00:00:0a", "02:00:00:00:00:0b")
                .ipv4("10.0.0.1", "10.0.0.2")
                .ttl(33)
                .tcp(1234, 80)
                .seq(1000)
                .ack(0)
                .flags(tcpflag::kSyn)
                .win(29200)
                .mss(1460)
                .sack_perm()
                .ts(111, 0)
                .wscale(7)
                .build();
  Parsed p = parse(b);
  ASSERT_TRUE(p.ok) << drop_reason_name(p.reason);
  const PacketMeta& m = p.m;
  EXPECT_EQ(m.l3, L3Kind::kIpv4);
  EXPECT_EQ(m.tuple, tuple("10.0.0.1", 1234, "10.0.0.2", 80, 6, Family::kV4));
  EXPECT_EQ(m.src_mac, *MacAddr::parse("02:00:00:00:00:0a"));
  EXPECT_EQ(m.dst_mac, *MacAddr::parse("02:00:00:00:00:0b"));
  EXPECT_EQ(m.ttl, 33);
  EXPECT_EQ(m.l3_offset, 14);
  EXPECT_EQ(m.l4_offset, 34);
  EXPECT_EQ(m.payload_offset, 34 + 40);
  EXPECT_EQ(m.l3_len, 60);
  EXPECT_TRUE(m.has_l4);
  EXPECT_FALSE(m.is_fragment);
  EXPECT_EQ(m.tcp.seq, 1000u);
  EXPECT_EQ(m.tcp.flags, tcpflag::kSyn);
  EXPECT_EQ(m.tcp.window, 29200);
  EXPECT_EQ(m.tcp.mss, 1460);
  EXPECT_EQ(m.tcp.wscale, 7);
  EXPECT_TRUE(m.tcp.sack_permitted);
  EXPECT_TRUE(m.tcp.has_timestamp);
  EXPECT_EQ(m.tcp.tsval, 111u);
  EXPECT_EQ(m.tcp.tsecr, 0u);
  EXPECT_EQ(m.tcp.payload_len, 0);
}

TEST(Parser, TcpWithoutOptionsReportsThemAbsent) {
  Parsed p = parse(tcp4().flags(tcpflag::kAck).seq(5).ack(7).payload("hello").build());
  ASSERT_TRUE(p.ok);
  EXPECT_EQ(p.m.tcp.wscale, 0xff);
  EXPECT_EQ(p.m.tcp.mss, 0);
  EXPECT_FALSE(p.m.tcp.sack_permitted);
  EXPECT_FALSE(p.m.tcp.has_timestamp);
  EXPECT_EQ(p.m.tcp.ack, 7u);
  EXPECT_EQ(p.m.tcp.payload_len, 5);
  EXPECT_EQ(p.m.payload_offset, 14 + 20 + 20);
}

// The established-flow layout (NOP, NOP, timestamps) takes the parser's shortcut; the same
// option with any other padding takes the general loop; both must read the same values.
TEST(Parser, TimestampOptionReadsTheSameOnTheShortcutAndTheGeneralPath) {
  for (const Bytes& opt : {Bytes{1, 1, 8, 10, 0, 0, 0, 7, 0x80, 0, 0, 9},   // shortcut
                           Bytes{8, 10, 0, 0, 0, 7, 0x80, 0, 0, 9, 1, 1},   // general loop
                           Bytes{1, 1, 8, 10, 0, 0, 0, 7, 0x80, 0, 0, 9, 1, 1, 1, 0}}) {
    Parsed p = parse(tcp4().flags(tcpflag::kAck).tcp_option(opt).payload("x").build());
    ASSERT_TRUE(p.ok) << drop_reason_name(p.reason);
    EXPECT_TRUE(p.m.tcp.has_timestamp);
    EXPECT_EQ(p.m.tcp.tsval, 7u);
    EXPECT_EQ(p.m.tcp.tsecr, 0x80000009u);
    EXPECT_EQ(p.m.tcp.payload_len, 1);
  }
  // A NOP, NOP prefix with a timestamp of the wrong length is still malformed.
  Parsed bad = parse(tcp4().tcp_option({1, 1, 8, 9, 0, 0, 0, 7, 0, 0, 0, 9}).build());
  EXPECT_FALSE(bad.ok);
  EXPECT_EQ(bad.reason, DropReason::kBadL4Header);
}

// The NIC's checksum verdict (Ipv4Csum) replaces the parser's own check, both ways.
TEST(Parser, NicChecksumVerdictIsTrustedBothWays) {
  const Bytes good = tcp4().build(), bad = tcp4().ip_csum(0x1234).build();
  PacketMeta m;
  DropReason why = DropReason::kCount;
  EXPECT_TRUE(parse_packet(good.data(), uint32_t(good.size()), &m, &why, Ipv4Csum::kUnknown));
  EXPECT_FALSE(parse_packet(good.data(), uint32_t(good.size()), &m, &why, Ipv4Csum::kBad));
  EXPECT_EQ(why, DropReason::kBadIpChecksum);
  why = DropReason::kCount;
  EXPECT_FALSE(parse_packet(bad.data(), uint32_t(bad.size()), &m, &why, Ipv4Csum::kUnknown));
  EXPECT_EQ(why, DropReason::kBadIpChecksum);
  EXPECT_TRUE(parse_packet(bad.data(), uint32_t(bad.size()), &m, &why, Ipv4Csum::kGood));
}

// Parsing into a PacketMeta left over from another packet gives what a fresh one gives.
TEST(Parser, ReusedMetaIsResetCompletely) {
  PacketMeta reused;
  DropReason why;
  const Bytes icmp_err =
      Pkt().ipv4("10.0.0.9", "10.0.0.1").icmp_error(3, 3, tcp4().build()).build();
  ASSERT_TRUE(parse_packet(icmp_err.data(), uint32_t(icmp_err.size()), &reused, &why));
  ASSERT_TRUE(reused.icmp.is_error);
  const Bytes b = tcp4().flags(tcpflag::kAck).build();
  PacketMeta fresh;
  ASSERT_TRUE(parse_packet(b.data(), uint32_t(b.size()), &reused, &why));
  ASSERT_TRUE(parse_packet(b.data(), uint32_t(b.size()), &fresh, &why));
  EXPECT_EQ(std::memcmp(&reused, &fresh, sizeof fresh), 0);
  EXPECT_FALSE(reused.icmp.is_error);
  EXPECT_EQ(reused.tcp.wscale, 0xff);
}

TEST(Parser, TcpPayloadLengthComesFromIpLengthNotEthernetPadding) {
  Bytes b = tcp4().payload("ab").pad_to(60).build();
  ASSERT_EQ(b.size(), 60u);   // 14 + 20 + 20 + 2 = 56, padded by the "NIC" to 60
  Parsed p = parse(b);
  ASSERT_TRUE(p.ok);
  EXPECT_EQ(p.m.tcp.payload_len, 2);
  EXPECT_EQ(p.m.l3_len, 42);
}

TEST(Parser, TcpWindowScaleAboveFourteenIsClampedAndSackBlocksAreSkipped) {
  // NOP NOP SACK(10: one block) then NOP NOP.
  Bytes sack = {1, 1, 5, 10, 0, 0, 0, 1, 0, 0, 0, 2, 1, 1};
  Parsed p = parse(tcp4().wscale(20).tcp_option(sack).build());
  ASSERT_TRUE(p.ok) << drop_reason_name(p.reason);
  EXPECT_EQ(p.m.tcp.wscale, 14);
}

TEST(Parser, TcpOptionsStopAtEndOfList) {
  // EOL, then bytes that would be a malformed MSS if read.
  Parsed p = parse(tcp4().tcp_option({0, 2, 9, 9}).build());
  ASSERT_TRUE(p.ok) << drop_reason_name(p.reason);
  EXPECT_EQ(p.m.tcp.mss, 0);
}

TEST(Parser, TcpV6) {
  Parsed p = parse(tcp6().ttl(7).seq(9).flags(tcpflag::kSyn | tcpflag::kAck).mss(1440).build());
  ASSERT_TRUE(p.ok);
  EXPECT_EQ(p.m.l3, L3Kind::kIpv6);
  EXPECT_EQ(p.m.tuple, tuple("2001:db8::1", 1234, "2001:db8::2", 80, 6, Family::kV6));
  EXPECT_EQ(p.m.ttl, 7);
  EXPECT_EQ(p.m.l4_offset, 14 + 40);
  EXPECT_EQ(p.m.tcp.mss, 1440);
  EXPECT_EQ(p.m.tcp.flags, tcpflag::kSyn | tcpflag::kAck);
}

TEST(Parser, UdpV4AndV6) {
  Parsed p4 = parse(udp4().payload("query").build());
  ASSERT_TRUE(p4.ok);
  EXPECT_EQ(p4.m.tuple, tuple("10.0.0.1", 5353, "10.0.0.2", 53, 17, Family::kV4));
  EXPECT_EQ(p4.m.payload_offset, 14 + 20 + 8);
  Parsed p6 = parse(udp6().payload("query").build());
  ASSERT_TRUE(p6.ok);
  EXPECT_EQ(p6.m.tuple, tuple("2001:db8::1", 5353, "2001:db8::2", 53, 17, Family::kV6));
  EXPECT_EQ(p6.m.l3_len, 40 + 8 + 5);
}

TEST(Parser, IcmpEchoIsAQueryKeyedByIdentifier) {
  Parsed req = parse(Pkt().ipv4("10.0.0.1", "10.0.0.2").icmp_echo(0x4242, 1).build());
  ASSERT_TRUE(req.ok);
  EXPECT_TRUE(req.m.icmp.is_query);
  EXPECT_TRUE(req.m.icmp.is_request);
  EXPECT_FALSE(req.m.icmp.is_error);
  EXPECT_EQ(req.m.icmp.type, 8);
  EXPECT_EQ(req.m.tuple, tuple("10.0.0.1", 0x4242, "10.0.0.2", 0x4242, 1, Family::kV4));

  Parsed rep = parse(Pkt().ipv6("2001:db8::2", "2001:db8::1").icmp_echo(7, 1, false).build());
  ASSERT_TRUE(rep.ok);
  EXPECT_TRUE(rep.m.icmp.is_query);
  EXPECT_FALSE(rep.m.icmp.is_request);
  EXPECT_EQ(rep.m.icmp.type, 129);
  EXPECT_EQ(rep.m.tuple, tuple("2001:db8::2", 7, "2001:db8::1", 7, 58, Family::kV6));
}

TEST(Parser, IcmpInformationalMessagesParseWithoutFlowFields) {
  // ICMPv6 neighbour solicitation (135).
  Parsed p = parse(Pkt().ipv6("fe80::1", "ff02::1:ff00:2").ttl(255).icmp(135, 0).build());
  ASSERT_TRUE(p.ok);
  EXPECT_FALSE(p.m.icmp.is_query);
  EXPECT_FALSE(p.m.icmp.is_error);
  EXPECT_EQ(p.m.icmp.type, 135);
  EXPECT_EQ(p.m.tuple.sport, be16{});
}

TEST(Parser, IcmpV4ErrorCarriesTheEmbeddedTupleAndTcpSeq) {
  Bytes inner = Pkt().ipv4("10.0.0.2", "192.0.2.9").tcp(40000, 443).seq(0xdeadbeef).build();
  Bytes b = Pkt().vlan(30).ipv4("198.51.100.1", "10.0.0.2").icmp_error(3, 4, inner).build();
  Parsed p = parse(b);
  ASSERT_TRUE(p.ok) << drop_reason_name(p.reason);
  const IcmpInfo& i = p.m.icmp;
  EXPECT_TRUE(i.is_error);
  EXPECT_FALSE(i.is_query);
  EXPECT_EQ(i.type, 3);
  EXPECT_EQ(i.code, 4);
  ASSERT_TRUE(i.has_inner);
  EXPECT_EQ(i.inner, tuple("10.0.0.2", 40000, "192.0.2.9", 443, 6, Family::kV4, 30));
  EXPECT_EQ(i.inner_tcp_seq, 0xdeadbeefu);
  // The outer packet's own tuple is ICMP between the router and the host.
  EXPECT_EQ(p.m.tuple.proto, 1);
  EXPECT_EQ(p.m.tuple.src, ip("198.51.100.1"));
}

TEST(Parser, IcmpV4ErrorWithOnlyHeaderPlusEightBytesIsEnough) {
  Bytes inner = udp4().payload("lots of payload").build();
  Parsed p = parse(Pkt().ipv4("192.0.2.1", "10.0.0.1").icmp_error(11, 0, inner, 28).build());
  ASSERT_TRUE(p.ok) << drop_reason_name(p.reason);
  ASSERT_TRUE(p.m.icmp.has_inner);
  EXPECT_EQ(p.m.icmp.inner, tuple("10.0.0.1", 5353, "10.0.0.2", 53, 17, Family::kV4));
}

TEST(Parser, IcmpV4ErrorAboutAnEchoUsesTheIdentifier) {
  Bytes inner = Pkt().ipv4("10.0.0.1", "192.0.2.1").icmp_echo(99, 3).build();
  Parsed p = parse(Pkt().ipv4("192.0.2.254", "10.0.0.1").icmp_error(11, 0, inner).build());
  ASSERT_TRUE(p.ok);
  EXPECT_EQ(p.m.icmp.inner, tuple("10.0.0.1", 99, "192.0.2.1", 99, 1, Family::kV4));
}

TEST(Parser, IcmpV6PacketTooBigCarriesTheEmbeddedTuple) {
  Bytes inner = Pkt().ipv6("2001:db8::1", "2001:db8:9::9").ext(60).tcp(5555, 80).seq(77).build();
  Bytes b = Pkt().ipv6("2001:db8:ff::1", "2001:db8::1").icmp_error(2, 0, inner, SIZE_MAX, 1400)
                .build();
  Parsed p = parse(b);
  ASSERT_TRUE(p.ok) << drop_reason_name(p.reason);
  EXPECT_TRUE(p.m.icmp.is_error);
  ASSERT_TRUE(p.m.icmp.has_inner);
  EXPECT_EQ(p.m.icmp.inner, tuple("2001:db8::1", 5555, "2001:db8:9::9", 80, 6, Family::kV6));
  EXPECT_EQ(p.m.icmp.inner_tcp_seq, 77u);
}

TEST(Parser, IcmpErrorAboutALaterFragmentHasNoInnerFlow) {
  Bytes inner = udp4().frag(64, true).payload_size(16).build();
  Parsed p = parse(Pkt().ipv4("192.0.2.1", "10.0.0.1").icmp_error(11, 1, inner).build());
  ASSERT_TRUE(p.ok);
  EXPECT_TRUE(p.m.icmp.is_error);
  EXPECT_FALSE(p.m.icmp.has_inner);
}

struct VlanCase {
  const char* name;
  Pkt pkt;
  uint16_t vlan, outer_vlan, l3_offset;
};

TEST(Parser, VlanTagsFillInnerAndOuterIds) {
  const VlanCase cases[] = {
      {"untagged", tcp4(), 0, 0, 14},
      {"802.1Q", Pkt(tcp4()).vlan(100), 100, 0, 18},
      {"QinQ 88a8+8100", Pkt(tcp4()).qinq(200, 300), 300, 200, 22},
      {"double 8100", Pkt(tcp4()).vlan(7).vlan(8), 8, 7, 22},
      {"lone service tag", Pkt(tcp4()).vlan(9, 0x88a8), 0, 9, 18},
  };
  for (const auto& c : cases) {
    SCOPED_TRACE(c.name);
    Parsed p = parse(c.pkt.build());
    ASSERT_TRUE(p.ok) << drop_reason_name(p.reason);
    EXPECT_EQ(p.m.tuple.vlan, c.vlan);
    EXPECT_EQ(p.m.outer_vlan, c.outer_vlan);
    EXPECT_EQ(p.m.l3_offset, c.l3_offset);
    EXPECT_EQ(p.m.tuple.sport, port(1234));
  }
}

TEST(Parser, VlanPriorityBitsAreNotPartOfTheId) {
  Bytes b = Pkt(tcp4()).vlan(5).build();
  b[14] |= 0xf0;   // PCP 7, DEI 1
  Parsed p = parse(b);
  ASSERT_TRUE(p.ok);
  EXPECT_EQ(p.m.tuple.vlan, 5);
}

TEST(Parser, ArpRequest) {
  Bytes b = Pkt()
                .eth("02:00:00:00:00:0a", "ff:ff:ff:ff:ff:ff")
                .vlan(5)
                .arp(1, "02:00:00:00:00:0a", "10.0.0.1", "10.0.0.254")
                .build();
  Parsed p = parse(b);
  ASSERT_TRUE(p.ok) << drop_reason_name(p.reason);
  EXPECT_EQ(p.m.l3, L3Kind::kArp);
  EXPECT_EQ(p.m.arp_op, 1);
  EXPECT_EQ(p.m.arp_sender_ip, ip("10.0.0.1"));
  EXPECT_EQ(p.m.arp_target_ip, ip("10.0.0.254"));
  EXPECT_EQ(p.m.arp_sender_mac, *MacAddr::parse("02:00:00:00:00:0a"));
  EXPECT_EQ(p.m.tuple.vlan, 5);
  EXPECT_EQ(p.m.l3_offset, 18);
  EXPECT_TRUE(p.m.dst_mac.is_multicast());
}

TEST(Parser, Ipv4OptionsAreSkipped) {
  // Router alert (RFC 2113), padded to 4 bytes: IHL 6.
  Parsed p = parse(tcp4().ip_options({0x94, 0x04, 0x00, 0x00}).payload("x").build());
  ASSERT_TRUE(p.ok) << drop_reason_name(p.reason);
  EXPECT_EQ(p.m.l4_offset, 14 + 24);
  EXPECT_EQ(p.m.tuple.dport, port(80));
  EXPECT_EQ(p.m.tcp.payload_len, 1);
}

TEST(Parser, Ipv6ExtensionChainIsWalkedToTheTransportHeader) {
  Bytes b = Pkt()
                .ipv6("2001:db8::1", "2001:db8::2")
                .ext(0, 8)     // hop-by-hop
                .ext(60, 16)   // destination options
                .ext(43, 24)   // routing (type 0, no segments left)
                .ext(51, 16)   // AH
                .ext(60, 8)
                .udp(1, 2)
                .payload("p")
                .build();
  Parsed p = parse(b);
  ASSERT_TRUE(p.ok) << drop_reason_name(p.reason);
  EXPECT_EQ(p.m.tuple.proto, 17);
  EXPECT_EQ(p.m.l4_offset, 14 + 40 + 8 + 16 + 24 + 16 + 8);
  EXPECT_EQ(p.m.tuple.dport, port(2));
}

TEST(Parser, Ipv6NoNextHeaderAndUnknownProtocolsHaveNoPorts) {
  Parsed p = parse(Pkt().ipv6("2001:db8::1", "2001:db8::2").payload("x").build());
  ASSERT_TRUE(p.ok);
  EXPECT_EQ(p.m.tuple.proto, 59);
  EXPECT_TRUE(p.m.has_l4);
  Parsed gre = parse(Pkt().ipv4("10.0.0.1", "10.0.0.2").proto(47).payload_size(8).build());
  ASSERT_TRUE(gre.ok);
  EXPECT_EQ(gre.m.tuple.proto, 47);
  EXPECT_EQ(gre.m.tuple.sport, be16{});
}

struct FragCase {
  const char* name;
  Pkt pkt;
  bool is_fragment, first_fragment, has_l4;
  uint32_t frag_id;
};

TEST(Parser, FragmentsOnlyTheFirstCarriesPorts) {
  const FragCase cases[] = {
      {"v4 first", Pkt(udp4()).ip_id(0x1234).frag(0, true).payload_size(32), true, true, true,
       0x1234},
      {"v4 middle", Pkt(udp4()).ip_id(0x1234).frag(40, true).payload_size(32), true, false, false,
       0x1234},
      {"v4 last", Pkt(udp4()).ip_id(0x1234).frag(80, false).payload_size(32), true, false, false,
       0x1234},
      {"v4 DF whole", Pkt(udp4()).df(), false, false, true, 0},
      {"v6 first", Pkt(udp6()).ip_id(0xabcdef01).frag(0, true).payload_size(32), true, true,
       true, 0xabcdef01},
      {"v6 last", Pkt(udp6()).ip_id(0xabcdef01).frag(1232, false).payload_size(32), true, false,
       false, 0xabcdef01},
      {"v6 atomic (RFC 6946)", Pkt(udp6()).frag(0, false), false, false, true, 0},
  };
  for (const auto& c : cases) {
    SCOPED_TRACE(c.name);
    Parsed p = parse(c.pkt.build());
    ASSERT_TRUE(p.ok) << drop_reason_name(p.reason);
    EXPECT_EQ(p.m.is_fragment, c.is_fragment);
    EXPECT_EQ(p.m.first_fragment, c.first_fragment);
    EXPECT_EQ(p.m.has_l4, c.has_l4);
    EXPECT_EQ(p.m.frag_id, c.frag_id);
    EXPECT_EQ(p.m.tuple.proto, 17);
    EXPECT_EQ(p.m.tuple.dport, c.has_l4 ? port(53) : be16{});
  }
}

TEST(Parser, FirstFragmentUdpLengthMayExceedTheFragment) {
  // The UDP length describes the whole datagram; only its first 16 bytes are in this fragment.
  Parsed p = parse(Pkt(udp4()).udp_len(2000).frag(0, true).payload_size(8).build());
  ASSERT_TRUE(p.ok) << drop_reason_name(p.reason);
  EXPECT_TRUE(p.m.first_fragment);
}

// ---------------------------------------------------------------------------------------------
// Malformed packets: each is dropped with its own reason.

struct BadCase {
  const char* name;
  Bytes bytes;
  DropReason reason;
};

Bytes set_byte(Bytes b, size_t at, uint8_t v) {
  b.at(at) = v;
  return b;
}

std::vector<BadCase> bad_cases() {
  using D = DropReason;
  Bytes tcp = tcp4().build();
  Bytes err_inner = tcp4().build();
  // An IPv4 header with a good checksum but version 5.
  Bytes v5 = tcp4().ip_version(5).build();
  return {
      {"empty frame", {}, D::kTruncated},
      {"13 bytes of ethernet", Bytes(tcp.begin(), tcp.begin() + 13), D::kTruncated},
      {"vlan tag cut", Pkt().vlan(3).ethertype(0x0800).truncate(16).build(), D::kTruncated},
      {"qinq inner tag cut", Pkt().qinq(1, 2).truncate(20).build(), D::kTruncated},
      {"LLDP ethertype", Pkt().ethertype(0x88cc).payload_size(40).build(), D::kBadEthertype},
      {"802.3 length field", Pkt().ethertype(0x0040).payload_size(64).build(), D::kBadEthertype},
      {"third vlan tag", Pkt(tcp4()).qinq(1, 2).vlan(3).build(), D::kBadEthertype},
      {"ipv4 header cut", tcp4().truncate(14 + 19).build(), D::kTruncated},
      {"ipv4 version 5", v5, D::kBadIpHeader},
      {"ipv4 ihl 4", tcp4().ihl(4).build(), D::kBadIpHeader},
      {"ipv4 options cut", tcp4().ihl(15).truncate(14 + 40).build(), D::kTruncated},
      {"ipv4 bad checksum", tcp4().ip_csum(0x1234).build(), D::kBadIpChecksum},
      {"ipv4 flipped byte", set_byte(tcp, 14 + 8, 1), D::kBadIpChecksum},
      {"ipv4 total length < ihl", tcp4().ip_total_len(19).build(), D::kBadIpHeader},
      {"ipv4 total length > frame", tcp4().ip_total_len(100).build(), D::kTruncated},
      {"ipv6 header cut", tcp6().truncate(14 + 39).build(), D::kTruncated},
      {"ipv6 version 4", tcp6().ip_version(4).build(), D::kBadIpHeader},
      {"ipv6 jumbogram", tcp6().ip_total_len(0).build(), D::kBadIpHeader},
      {"ipv6 payload length > frame", tcp6().ip_total_len(21).build(), D::kTruncated},
      {"hop-by-hop not first", tcp6().ext(60).ext(0).build(), D::kBadExtHeader},
      {"ext header past payload", tcp6().ext(60, 16).ip_total_len(8).build(), D::kBadExtHeader},
      {"ext header fragment of 4", tcp6().ext(60, 16).ip_total_len(4).build(), D::kBadExtHeader},
      {"nine ext headers", Pkt(tcp6()).ext(0).ext(60).ext(60).ext(60).ext(60).ext(60).ext(60)
                               .ext(60).ext(60).build(), D::kBadExtHeader},
      {"routing type 0 with segments left",
       tcp6().ext_raw(43, {0, 0, 0, 1, 0, 0, 0, 0}).build(), D::kBadExtHeader},
      {"tcp shorter than 20 in ip", tcp4().ip_total_len(20 + 19).build(), D::kBadL4Header},
      {"tcp data offset 4", tcp4().doff(4).build(), D::kBadL4Header},
      {"tcp data offset past ip end", tcp4().doff(6).build(), D::kBadL4Header},
      {"tcp mss length 3", tcp4().tcp_option({2, 3, 0, 0}).build(), D::kBadL4Header},
      {"tcp wscale length 4", tcp4().tcp_option({3, 4, 7, 0}).build(), D::kBadL4Header},
      {"tcp sackperm length 3", tcp4().tcp_option({4, 3, 0, 0}).build(), D::kBadL4Header},
      {"tcp timestamp length 8", tcp4().tcp_option({8, 8, 0, 0, 0, 0, 0, 0}).build(),
       D::kBadL4Header},
      {"tcp option length 0", tcp4().tcp_option({1, 1, 30, 0}).build(), D::kBadL4Header},
      {"tcp option length 1", tcp4().tcp_option({1, 1, 30, 1}).build(), D::kBadL4Header},
      {"tcp option past header", tcp4().tcp_option({1, 1, 30, 6}).build(), D::kBadL4Header},
      {"tcp option kind without length", tcp4().tcp_option({1, 1, 1, 2}).build(),
       D::kBadL4Header},
      {"tcp6 option past header", tcp6().tcp_option({5, 18, 0, 0}).build(), D::kBadL4Header},
      {"udp shorter than 8 in ip", udp4().ip_total_len(27).build(), D::kBadL4Header},
      {"udp length 7", udp4().udp_len(7).build(), D::kBadL4Header},
      {"udp length past ip end", udp4().payload("abc").udp_len(12).build(), D::kBadL4Header},
      {"icmp shorter than 8", Pkt().ipv4("1.1.1.1", "2.2.2.2").icmp(8, 0).ip_total_len(27)
                                  .build(), D::kBadL4Header},
      {"icmp error without inner", Pkt().ipv4("1.1.1.1", "2.2.2.2").icmp(3, 1).build(),
       D::kBadL4Header},
      {"icmp error inner too short",
       Pkt().ipv4("1.1.1.1", "2.2.2.2").icmp_error(3, 1, err_inner, 27).build(), D::kBadL4Header},
      {"icmp error inner not ipv4",
       Pkt().ipv4("1.1.1.1", "2.2.2.2").icmp_error(3, 1, tcp6().build()).build(),
       D::kBadL4Header},
      {"icmp error inner ihl 3",
       Pkt().ipv4("1.1.1.1", "2.2.2.2").icmp_error(3, 1, tcp4().ihl(3).build()).build(),
       D::kBadL4Header},
      {"icmpv6 error inner too short",
       Pkt().ipv6("::1", "::2").icmp_error(1, 0, tcp6().build(), 47).build(), D::kBadL4Header},
      {"icmpv6 error inner bad chain",
       Pkt().ipv6("::1", "::2").icmp_error(1, 0, tcp6().ext(60).ext(0).build()).build(),
       D::kBadL4Header},
      {"arp cut", Pkt().arp(1, "2:0:0:0:0:1", "1.1.1.1", "1.1.1.2").truncate(14 + 27).build(),
       D::kTruncated},
      {"arp not ethernet", Pkt().arp(1, "2:0:0:0:0:1", "1.1.1.1", "1.1.1.2")
                               .poke(15, {6}).build(), D::kBadIpHeader},
      {"arp not ipv4", Pkt().arp(1, "2:0:0:0:0:1", "1.1.1.1", "1.1.1.2")
                           .poke(16, {0x86, 0xdd}).build(), D::kBadIpHeader},
  };
}

class ParserMalformed : public ::testing::TestWithParam<BadCase> {};

TEST_P(ParserMalformed, DropsWithTheExpectedReason) {
  const BadCase& c = GetParam();
  Parsed p = parse(c.bytes);
  EXPECT_FALSE(p.ok);
  EXPECT_STREQ(drop_reason_name(p.reason), drop_reason_name(c.reason));
}

std::string case_name(const ::testing::TestParamInfo<BadCase>& info) {
  std::string s;
  for (const char* p = info.param.name; *p; ++p) s += std::isalnum(uint8_t(*p)) ? *p : '_';
  return s;
}

INSTANTIATE_TEST_SUITE_P(Table, ParserMalformed, ::testing::ValuesIn(bad_cases()), case_name);

// ---------------------------------------------------------------------------------------------
// Every truncation of a valid packet is caught; no corruption reads out of bounds.

std::vector<std::pair<const char*, Bytes>> valid_packets() {
  Bytes inner4 = tcp4().seq(1).build();
  Bytes inner6 = Pkt(udp6()).ext(0).payload("x").build();
  return {
      {"tcp4 syn", tcp4().flags(tcpflag::kSyn).mss(1460).sack_perm().ts(1, 2).wscale(7)
                       .payload("data").build()},
      {"tcp6 qinq", Pkt(tcp6()).qinq(1, 2).mss(1220).payload("d").build()},
      {"udp4 ip options", Pkt(udp4()).vlan(4).ip_options({1, 1, 1, 0}).payload("q").build()},
      {"udp6 ext chain", Pkt(udp6()).ext(0).ext(43).ext(51, 12).ext(60, 24).payload("q").build()},
      {"udp6 first fragment", Pkt(udp6()).ext(60).frag(0, true).payload_size(16).build()},
      {"udp4 later fragment", Pkt(udp4()).frag(8, false).payload_size(16).build()},
      {"icmp4 echo", Pkt().ipv4("1.1.1.1", "2.2.2.2").icmp_echo(1, 2).payload("ping").build()},
      {"icmp4 error", Pkt().ipv4("3.3.3.3", "10.0.0.1").icmp_error(3, 3, inner4).build()},
      {"icmp6 error", Pkt().ipv6("::3", "2001:db8::1").icmp_error(3, 0, inner6).build()},
      {"arp", Pkt().arp(2, "2:0:0:0:0:1", "1.1.1.1", "1.1.1.2", "2:0:0:0:0:2").build()},
  };
}

TEST(ParserTruncation, EveryShorterFrameIsDroppedAsTruncated) {
  for (const auto& [name, full] : valid_packets()) {
    SCOPED_TRACE(name);
    ASSERT_TRUE(parse(full).ok) << drop_reason_name(parse(full).reason);
    for (size_t n = 0; n < full.size(); ++n) {
      Parsed p = parse(full.data(), n);
      EXPECT_FALSE(p.ok) << "length " << n;
      EXPECT_EQ(p.reason, DropReason::kTruncated) << "length " << n << ": "
                                                  << drop_reason_name(p.reason);
    }
  }
}

TEST(ParserTruncation, PaddingAfterTheIpPacketIsAccepted) {
  Bytes full = Pkt(tcp4()).payload("abc").pad_to(80).build();
  for (size_t n = 14 + 20 + 20 + 3; n <= full.size(); ++n) {
    Parsed p = parse(full.data(), n);
    ASSERT_TRUE(p.ok) << n;
    EXPECT_EQ(p.m.tcp.payload_len, 3);
  }
}

// Deterministic corruption: flip bytes of valid packets (and repair the IPv4 checksum so the
// mutation reaches the deeper headers). The parser may accept or reject; it must stay in bounds
// and keep its offsets inside the frame.
TEST(ParserTruncation, RandomCorruptionStaysInBounds) {
  uint64_t x = 0x2545f4914f6cdd1dull;
  auto rnd = [&x] {
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    return x;
  };
  int accepted = 0, rejected = 0;
  for (const auto& [name, full] : valid_packets()) {
    for (int iter = 0; iter < 2000; ++iter) {
      Bytes b = full;
      int flips = 1 + int(rnd() % 4);
      for (int k = 0; k < flips; ++k) b[rnd() % b.size()] = uint8_t(rnd());
      if (rnd() % 2) pktgen::fix_checksums(b.data(), b.size());
      size_t n = b.size() - rnd() % 4;
      Parsed p = parse(b.data(), n);
      if (!p.ok) {
        ++rejected;
        continue;
      }
      ++accepted;
      ASSERT_LE(p.m.l3_offset + p.m.l3_len, n) << name;
      ASSERT_LE(p.m.payload_offset, n) << name;
      ASSERT_LE(p.m.l4_offset, p.m.payload_offset) << name;
    }
  }
  EXPECT_GT(accepted, 0);
  EXPECT_GT(rejected, 0);
}

}  // namespace
}  // namespace baton
