// SPDX-License-Identifier: Apache-2.0
//
// Incremental checksum updates (RFC 1624) against full recomputation: CsumDelta over random
// words, then rewrite_packet() over thousands of random IPv4 TCP/UDP/ICMP packets, and the fast
// path's rewrite_v4_known() with a connection's folded deltas over random TCP/UDP packets of
// both its directions, each compared with the same packet built from scratch with the new
// endpoints (the builder computes every checksum in full).
#include "nat/checksum.h"

#include <gtest/gtest.h>

#include <cstring>
#include <random>
#include <vector>

#include "nat/icmp_xlate.h"
#include "nat/xlate_rewrite.h"
#include "nat_test_util.h"
#include "pktgen/packet_builder.h"

namespace baton {
namespace {

using namespace nattest;
using pktgen::Bytes;
using pktgen::Pkt;

uint16_t full_csum(const std::vector<uint16_t>& words) {
  return csum_fold(csum_partial(words.data(), words.size() * 2));
}

bool same_csum(uint16_t a, uint16_t b) {
  return a == b || (a == 0 && b == 0xffff) || (a == 0xffff && b == 0);
}

TEST(CsumDelta, MatchesFullRecomputationOverRandomWords) {
  std::mt19937 rng(1);
  for (int round = 0; round < 20000; ++round) {
    std::vector<uint16_t> w(1 + rng() % 40);
    for (auto& x : w) x = static_cast<uint16_t>(rng());
    const uint16_t before = full_csum(w);
    CsumDelta d;
    const int changes = static_cast<int>(rng() % 6);
    for (int c = 0; c < changes; ++c) {
      size_t i = rng() % w.size();
      uint16_t to = (rng() % 8 == 0) ? 0 : static_cast<uint16_t>(rng());  // zeros too
      d.add16(w[i], to);
      w[i] = to;
    }
    ASSERT_TRUE(same_csum(d.apply(before), full_csum(w))) << "round " << round;
  }
}

TEST(CsumDelta, Rfc1624Example) {
  // RFC 1624 section 4: header checksum 0xdd2f, a word changes 0x5555 -> 0x3285: new 0x0000.
  CsumDelta d;
  d.add16(__builtin_bswap16(0x5555), __builtin_bswap16(0x3285));
  EXPECT_EQ(__builtin_bswap16(d.apply(__builtin_bswap16(0xdd2f))), 0x0000);
}

TEST(CsumDelta, UdpZeroMeansNoChecksumAndStaysZero) {
  CsumDelta d;
  d.add(be32::from_host(0x0a000001), be32::from_host(0xc6336401));
  EXPECT_EQ(d.apply_udp(0), 0);
  // A result of zero is sent as 0xffff: find an old checksum for which apply() gives 0.
  CsumDelta one;
  one.add16(0, 1);  // adds 0xffff + 1 = 1 (one's complement): apply(c) = ~(~c + 1)
  EXPECT_EQ(one.apply(1), 0);
  EXPECT_EQ(one.apply_udp(1), 0xffff);
}

TEST(CsumDelta, FoldedAndInverseUndoTheChange) {
  std::mt19937 rng(3);
  for (int round = 0; round < 20000; ++round) {
    std::vector<uint16_t> w(1 + rng() % 20);
    for (auto& x : w) x = static_cast<uint16_t>(rng());
    const uint16_t before = full_csum(w);
    CsumDelta d;
    for (int c = 0; c < 4; ++c) {
      size_t i = rng() % w.size();
      uint16_t to = static_cast<uint16_t>(rng());
      d.add16(w[i], to);
      w[i] = to;
    }
    const uint16_t after = CsumDelta::of_folded(d.folded()).apply(before);
    ASSERT_TRUE(same_csum(after, full_csum(w))) << "round " << round;
    ASSERT_TRUE(same_csum(d.inverse().apply(after), before)) << "round " << round;
  }
}

// One random packet description, built with any endpoints.
struct RandomPacket {
  uint8_t proto;
  uint8_t ttl, tos;
  uint16_t ip_id;
  bool df, first_fragment_mf;
  Bytes options, payload;
  uint32_t seq, ack;
  uint8_t tcp_flags;
  uint16_t win, icmp_seq;
  bool echo_request;

  static RandomPacket make(std::mt19937& rng) {
    RandomPacket r;
    const uint8_t protos[] = {kTcp, kUdp, kIcmp};
    r.proto = protos[rng() % 3];
    r.ttl = static_cast<uint8_t>(rng());
    r.tos = static_cast<uint8_t>(rng());
    r.ip_id = static_cast<uint16_t>(rng());
    r.df = rng() & 1;
    r.first_fragment_mf = rng() % 8 == 0;
    r.options.resize((rng() % 11) * 4);
    for (auto& b : r.options) b = static_cast<uint8_t>(1 + rng() % 255);  // no EOL inside
    r.payload.resize(rng() % 300);
    for (auto& b : r.payload) b = static_cast<uint8_t>(rng());
    r.seq = rng();
    r.ack = rng();
    r.tcp_flags = static_cast<uint8_t>(rng() & 0x3f);
    r.win = static_cast<uint16_t>(rng());
    r.icmp_seq = static_cast<uint16_t>(rng());
    r.echo_request = rng() & 1;
    return r;
  }

  // L3 bytes of the packet with these endpoints (ICMP: sport is the identifier).
  Bytes build(be32 src, be32 dst, uint16_t sport, uint16_t dport) const {
    Pkt p;
    p.ipv4(IpAddr::v4(src), IpAddr::v4(dst)).ttl(ttl).tos(tos).ip_id(ip_id);
    if (df) p.df();
    if (first_fragment_mf) p.frag(0, true);
    if (!options.empty()) p.ip_options(options);
    if (proto == kTcp) p.tcp(sport, dport).seq(seq).ack(ack).flags(tcp_flags).win(win);
    if (proto == kUdp) p.udp(sport, dport);
    if (proto == kIcmp) p.icmp_echo(sport, icmp_seq, echo_request);
    p.payload(payload);
    return pktgen::strip_l2(p.build());
  }
};

TEST(RewritePacket, MatchesFullRecomputationOverRandomPackets) {
  std::mt19937 rng(7);
  int zero_udp = 0;
  for (int round = 0; round < 5000; ++round) {
    const RandomPacket rp = RandomPacket::make(rng);
    be32 src = be32::from_host(rng()), dst = be32::from_host(rng());
    uint16_t sport = static_cast<uint16_t>(rng()), dport = static_cast<uint16_t>(rng());
    if (rp.proto == kIcmp) dport = sport;
    Bytes pkt = rp.build(src, dst, sport, dport);

    // A random subset of the four endpoints changes (ICMP: one identifier).
    PacketRewrite rw;
    if (rng() & 1) rw.src_addr = src = be32::from_host(rng());
    if (rng() & 1) rw.dst_addr = dst = be32::from_host(rng());
    if (rng() & 1) {
      sport = static_cast<uint16_t>(rng());
      rw.src_port = port(sport);
      if (rp.proto == kIcmp) dport = sport;
    }
    if (rp.proto != kIcmp && (rng() & 1)) {
      dport = static_cast<uint16_t>(rng());
      rw.dst_port = port(dport);
    }
    Bytes want = rp.build(src, dst, sport, dport);

    // UDP without checksum (RFC 768): 0 before, 0 after.
    const size_t l4 = 20 + rp.options.size();
    if (rp.proto == kUdp && rng() % 4 == 0) {
      pkt[l4 + 6] = pkt[l4 + 7] = 0;
      want[l4 + 6] = want[l4 + 7] = 0;
      ++zero_udp;
    }
    ASSERT_EQ(rewrite_packet(pkt.data(), pkt.size(), rw), XlateError::kOk) << "round " << round;
    ASSERT_TRUE(same_packet(pkt, want)) << "round " << round << " proto " << int(rp.proto);
  }
  EXPECT_GT(zero_udp, 100);
}

// A connection's two directions through its precomputed rewrite: the original direction leaves
// with the reply tuple reversed, the reply direction with the original one reversed, both as a
// full recomputation would have them (UDP without checksum kept so). A packet that does not
// carry its direction's tuple is refused untouched (the worker then rewrites from the packet).
TEST(XlateRewrite, BothDirectionsMatchFullRecomputationOverRandomPackets) {
  std::mt19937 rng(11);
  int refused = 0;
  for (int round = 0; round < 5000; ++round) {
    RandomPacket rp = RandomPacket::make(rng);
    if (rp.proto == kIcmp) rp.proto = (rng() & 1) ? kTcp : kUdp;
    const V4Endpoints orig{be32::from_host(rng()), be32::from_host(rng()),
                           port(static_cast<uint16_t>(rng())), port(static_cast<uint16_t>(rng()))};
    V4Endpoints reply = {orig.dst, orig.src, orig.dport, orig.sport};  // then some of it changes
    if (rng() & 1) reply.src = be32::from_host(rng());
    if (rng() & 1) reply.dst = be32::from_host(rng());
    if (rng() & 1) reply.sport = port(static_cast<uint16_t>(rng()));
    if (rng() & 1) reply.dport = port(static_cast<uint16_t>(rng()));
    const XlateRewrite r = XlateRewrite::make(orig, reply);
    const int dir = static_cast<int>(rng() & 1);
    const V4Endpoints& from = dir == 0 ? orig : reply;
    const V4Endpoints& other = dir == 0 ? reply : orig;
    Bytes pkt = rp.build(from.src, from.dst, from.sport.host(), from.dport.host());
    Bytes want = rp.build(other.dst, other.src, other.dport.host(), other.sport.host());
    const size_t l4 = 20 + rp.options.size();
    if (rp.proto == kUdp && rng() % 4 == 0) pkt[l4 + 6] = pkt[l4 + 7] = want[l4 + 6] = want[l4 + 7] = 0;
    if (rng() % 8 == 0) {  // another tuple's packet
      pkt[12] ^= 0x80;
      const Bytes before = pkt;
      ASSERT_FALSE(rewrite_v4_known(pkt.data(), pkt.data() + l4, rp.proto == kTcp, r, dir));
      ASSERT_EQ(pkt, before);
      ++refused;
      continue;
    }
    ASSERT_TRUE(rewrite_v4_known(pkt.data(), pkt.data() + l4, rp.proto == kTcp, r, dir));
    ASSERT_TRUE(same_packet(pkt, want)) << "round " << round << " dir " << dir;
  }
  EXPECT_GT(refused, 100);
}

TEST(RewritePacket, NonFirstFragmentGetsItsAddressesOnly) {
  Bytes frag = pktgen::strip_l2(
      Pkt().ipv4("10.0.0.1", "192.0.2.7").frag(1480, false).udp(1111, 2222).payload("xyz").build());
  // What follows the header is data of the middle of a datagram: only the header changes.
  Bytes want = frag;
  const be32 x = ip4("198.51.100.1");
  const uint32_t raw = x.raw();
  std::memcpy(want.data() + 12, &raw, 4);
  want[10] = want[11] = 0;
  const uint16_t c = csum_fold(csum_partial(want.data(), 20));
  std::memcpy(want.data() + 10, &c, 2);
  PacketRewrite rw;
  rw.src_addr = x;
  rw.src_port = port(40000);  // not in this fragment
  ASSERT_EQ(rewrite_packet(frag.data(), frag.size(), rw), XlateError::kOk);
  EXPECT_TRUE(same_packet(frag, want));
}

TEST(RewritePacket, LeavesEthernetPaddingAlone) {
  Bytes pkt = pktgen::strip_l2(Pkt().ipv4("10.0.0.1", "192.0.2.7").udp(1, 2).build());
  Bytes want = pktgen::strip_l2(Pkt().ipv4("10.0.0.9", "192.0.2.7").udp(1, 2).build());
  pkt.resize(pkt.size() + 18, 0xee);  // trailer past the IPv4 total length
  PacketRewrite rw;
  rw.src_addr = ip4("10.0.0.9");
  ASSERT_EQ(rewrite_packet(pkt.data(), pkt.size(), rw), XlateError::kOk);
  for (size_t i = want.size(); i < pkt.size(); ++i) EXPECT_EQ(pkt[i], 0xee);
  pkt.resize(want.size());
  EXPECT_TRUE(same_packet(pkt, want));
}

}  // namespace
}  // namespace baton
