// SPDX-License-Identifier: Apache-2.0
//
// ICMP translation: query identifiers, errors with their quoted packet (both directions, every
// quoted protocol, quotes of many lengths) checked against the same packets built from scratch;
// malformed and truncated input rejected with the right error, without touching the buffer and
// without reading past its end (buffers are exact-size heap copies, so ASan sees any overrun).
#include "nat/icmp_xlate.h"

#include <gtest/gtest.h>

#include <cstring>
#include <memory>
#include <random>

#include "nat/checksum.h"
#include "nat_test_util.h"
#include "pktgen/packet_builder.h"

namespace baton {
namespace {

using namespace nattest;
using pktgen::Bytes;
using pktgen::Pkt;

// The offending packet as a full frame (icmp_error() strips its L2).
Bytes offending(uint8_t proto, be32 src, be32 dst, uint16_t sport, uint16_t dport,
                const Bytes& payload) {
  Pkt p;
  p.ipv4(IpAddr::v4(src), IpAddr::v4(dst)).ip_id(0x1234).ttl(1);
  if (proto == kTcp) p.tcp(sport, dport).seq(0xabcdef01).ack(0x10203040);
  if (proto == kUdp) p.udp(sport, dport);
  if (proto == kIcmp) p.icmp_echo(sport, 77, true);
  return p.payload(payload).build();
}

Bytes icmp_error(uint8_t type, uint8_t code, be32 src, be32 dst, const Bytes& inner,
                 size_t max_inner) {
  return pktgen::strip_l2(Pkt().ipv4(IpAddr::v4(src), IpAddr::v4(dst)).ip_id(0x4321).ttl(64)
                              .icmp_error(type, code, inner, max_inner).build());
}

// Calls fn on an exact-size heap copy of `bytes` (first `len` bytes); returns what it returned
// and checks that an error left the bytes alone.
template <class Fn>
XlateError on_copy(const Bytes& bytes, size_t len, Fn&& fn, Bytes* out = nullptr) {
  std::unique_ptr<uint8_t[]> buf(new uint8_t[len ? len : 1]);
  std::copy(bytes.begin(), bytes.begin() + static_cast<long>(len), buf.get());
  XlateError r = fn(buf.get(), len);
  if (r != XlateError::kOk) {
    EXPECT_TRUE(std::equal(bytes.begin(), bytes.begin() + static_cast<long>(len), buf.get()))
        << "buffer changed on error " << xlate_error_name(r);
  }
  if (out) out->assign(buf.get(), buf.get() + len);
  return r;
}

const be32 kInside = be32::from_host(0x0a000005);    // 10.0.0.5
const be32 kOutside = be32::from_host(0xc6336401);   // 198.51.100.1
const be32 kRemote = be32::from_host(0xcb007107);    // 203.0.113.7
const be32 kRouter = be32::from_host(0xc0000201);    // 192.0.2.1

TEST(IcmpQuery, EchoIdentifierTranslatedBothWays) {
  // Outbound request: source 10.0.0.5 id 4242 -> 198.51.100.1 id 1500.
  Bytes req = pktgen::strip_l2(Pkt().ipv4(IpAddr::v4(kInside), IpAddr::v4(kRemote))
                                   .icmp_echo(4242, 9, true).payload("ping-payload").build());
  Bytes want = pktgen::strip_l2(Pkt().ipv4(IpAddr::v4(kOutside), IpAddr::v4(kRemote))
                                    .icmp_echo(1500, 9, true).payload("ping-payload").build());
  PacketRewrite out;
  out.src_addr = kOutside;
  out.src_port = port(1500);
  ASSERT_EQ(rewrite_packet(req.data(), req.size(), out), XlateError::kOk);
  EXPECT_TRUE(same_packet(req, want));
  // Inbound reply: destination 198.51.100.1 id 1500 -> 10.0.0.5 id 4242.
  Bytes rep = pktgen::strip_l2(Pkt().ipv4(IpAddr::v4(kRemote), IpAddr::v4(kOutside))
                                   .icmp_echo(1500, 9, false).payload("pong").build());
  Bytes want_rep = pktgen::strip_l2(Pkt().ipv4(IpAddr::v4(kRemote), IpAddr::v4(kInside))
                                        .icmp_echo(4242, 9, false).payload("pong").build());
  PacketRewrite in;
  in.dst_addr = kInside;
  in.dst_port = port(4242);
  ASSERT_EQ(rewrite_packet(rep.data(), rep.size(), in), XlateError::kOk);
  EXPECT_TRUE(same_packet(rep, want_rep));
}

TEST(IcmpQuery, TwoDifferentIdentifiersAreRefused) {
  Bytes req = pktgen::strip_l2(Pkt().ipv4("10.0.0.5", "203.0.113.7").icmp_echo(1, 1).build());
  PacketRewrite rw;
  rw.src_port = port(5);
  rw.dst_port = port(6);
  EXPECT_EQ(on_copy(req, req.size(), [&](uint8_t* p, size_t n) { return rewrite_packet(p, n, rw); }),
            XlateError::kBadRewrite);
}

struct Direction {
  const char* name;
  bool inbound;  // error from the outside about a packet the NAT sent out
};

TEST(IcmpError, MatchesFullRecomputationForEveryQuoteLength) {
  std::mt19937 rng(3);
  const uint8_t protos[] = {kUdp, kTcp, kIcmp};
  const std::pair<uint8_t, uint8_t> types[] = {{3, 3}, {3, 4}, {3, 13}, {11, 0}, {12, 0}};
  const size_t quote_lens[] = {28, 30, 37, 38, 39, 48, 100, 548};
  int cases = 0;
  for (bool inbound : {true, false})
    for (uint8_t proto : protos)
      for (auto [type, code] : types)
        for (size_t qlen : quote_lens)
          for (int rep = 0; rep < 8; ++rep) {
            Bytes payload(rng() % 600);
            for (auto& b : payload) b = static_cast<uint8_t>(rng());
            const uint16_t in_port = static_cast<uint16_t>(rng());
            const uint16_t out_port = static_cast<uint16_t>(rng());
            const uint16_t r_port = proto == kIcmp ? 0 : static_cast<uint16_t>(rng());
            Bytes before, want;
            PacketRewrite outer, quoted;
            if (inbound) {
              // Router -> outside, quoting outside:x -> remote. Becomes router -> inside,
              // quoting inside:i -> remote.
              before = icmp_error(type, code, kRouter, kOutside,
                                  offending(proto, kOutside, kRemote, out_port, r_port, payload), qlen);
              want = icmp_error(type, code, kRouter, kInside,
                                offending(proto, kInside, kRemote, in_port, r_port, payload), qlen);
              outer.dst_addr = kInside;
              quoted.src_addr = kInside;
              quoted.src_port = port(in_port);
            } else {
              // Inside host -> remote, quoting remote:r -> inside:i. Becomes outside -> remote,
              // quoting remote:r -> outside:x.
              const uint16_t q_sport = proto == kIcmp ? in_port : r_port;
              const uint16_t q_sport_x = proto == kIcmp ? out_port : r_port;
              before = icmp_error(type, code, kInside, kRemote,
                                  offending(proto, kRemote, kInside, q_sport, in_port, payload), qlen);
              want = icmp_error(type, code, kOutside, kRemote,
                                offending(proto, kRemote, kOutside, q_sport_x, out_port, payload), qlen);
              outer.src_addr = kOutside;
              quoted.dst_addr = kOutside;
              quoted.dst_port = port(out_port);
            }
            Bytes got;
            XlateError r = on_copy(before, before.size(), [&](uint8_t* p, size_t n) {
              return translate_icmp_error(p, n, outer, quoted);
            }, &got);
            ASSERT_EQ(r, XlateError::kOk) << xlate_error_name(r);
            if (proto == kTcp && qlen == 20 + 17) {
              // The quote cuts the TCP checksum in half: that byte is left as it was (its new
              // value depends on the missing one), and the ICMP checksum covers what is there.
              const size_t at = 20 + 8 + 20 + 16;
              want[at] = before[at];
              want[22] = want[23] = 0;
              const uint16_t c = csum_fold(csum_partial(want.data() + 20, want.size() - 20));
              std::memcpy(want.data() + 22, &c, 2);
            }
            ASSERT_TRUE(same_packet(got, want))
                << (inbound ? "inbound" : "outbound") << " proto " << int(proto) << " type "
                << int(type) << " quote " << qlen;
            ++cases;
          }
  EXPECT_EQ(cases, 2 * 3 * 5 * 8 * 8);
}

TEST(IcmpError, ParseReportsTheQuotedEndpoints) {
  Bytes err = icmp_error(3, 3, kRouter, kOutside,
                         offending(kUdp, kOutside, kRemote, 1500, 53, Bytes(20, 1)), 28);
  IcmpErrorInfo info;
  ASSERT_EQ(parse_icmp_error(err.data(), err.size(), &info), XlateError::kOk);
  EXPECT_EQ(info.type, 3);
  EXPECT_EQ(info.code, 3);
  EXPECT_EQ(info.proto, kUdp);
  EXPECT_EQ(info.src, kOutside);
  EXPECT_EQ(info.dst, kRemote);
  EXPECT_EQ(info.sport.host(), 1500);
  EXPECT_EQ(info.dport.host(), 53);
  Bytes ping = icmp_error(11, 0, kRouter, kOutside,
                          offending(kIcmp, kOutside, kRemote, 777, 777, {}), 28);
  ASSERT_EQ(parse_icmp_error(ping.data(), ping.size(), &info), XlateError::kOk);
  EXPECT_EQ(info.proto, kIcmp);
  EXPECT_EQ(info.sport.host(), 777);
  EXPECT_EQ(info.dport.host(), 777);
}

TEST(IcmpError, RejectsMalformedInputWithTheRightError) {
  const Bytes udp = offending(kUdp, kOutside, kRemote, 1500, 53, Bytes(40, 7));
  const Bytes good = icmp_error(3, 3, kRouter, kOutside, udp, 100);
  const Bytes short_quote = icmp_error(3, 3, kRouter, kOutside, udp, 40);
  auto poke = [](Bytes b, size_t off, std::initializer_list<uint8_t> v) {
    std::copy(v.begin(), v.end(), b.begin() + static_cast<long>(off));
    return b;
  };
  const size_t q = 28;  // quoted IPv4 header in `good`
  struct Case {
    const char* what;
    Bytes bytes;
    XlateError want;
    PacketRewrite outer = {};
  };
  PacketRewrite with_port;
  with_port.src_port = port(1);
  const Case cases[] = {
      {"empty", {}, XlateError::kTruncated},
      {"short header", Bytes(good.begin(), good.begin() + 19), XlateError::kTruncated},
      {"IPv6 version", poke(good, 0, {0x65}), XlateError::kNotIpv4},
      {"IHL 4", poke(good, 0, {0x44}), XlateError::kBadHeader},
      {"total length < IHL", poke(good, 2, {0, 19}), XlateError::kBadHeader},
      {"total length > buffer", poke(good, 2, {0x7f, 0xff}), XlateError::kTruncated},
      {"not ICMP", poke(good, 9, {17}), XlateError::kNotIcmpError},
      {"echo, not an error", poke(good, 20, {8}), XlateError::kNotIcmpError},
      {"redirect", poke(good, 20, {5}), XlateError::kUnsupportedIcmp},
      {"source quench", poke(good, 20, {4}), XlateError::kUnsupportedIcmp},
      {"fragmented error (MF)", poke(good, 6, {0x20, 0}), XlateError::kFragment},
      {"fragmented error (offset)", poke(good, 6, {0, 1}), XlateError::kFragment},
      {"quote not IPv4", poke(good, q, {0x65}), XlateError::kQuotedMalformed},
      {"quote IHL 4", poke(good, q, {0x44}), XlateError::kQuotedMalformed},
      {"quote IHL 15 past the quote", poke(short_quote, q, {0x4f}), XlateError::kQuotedTruncated},
      {"quote non-first fragment", poke(good, q + 6, {0, 3}), XlateError::kQuotedFragment},
      {"quote GRE", poke(good, q + 9, {47}), XlateError::kUnsupportedProto},
      {"quote ICMP error", poke(poke(good, q + 9, {1}), q + 20, {3}), XlateError::kQuotedMalformed},
      {"outer ports", good, XlateError::kBadRewrite, with_port},
  };
  for (const Case& c : cases) {
    PacketRewrite quoted;
    quoted.src_addr = kInside;
    quoted.src_port = port(4242);
    XlateError r = on_copy(c.bytes, c.bytes.size(), [&](uint8_t* p, size_t n) {
      return translate_icmp_error(p, n, c.outer, quoted);
    });
    EXPECT_EQ(r, c.want) << c.what << ": got " << xlate_error_name(r);
    if (c.outer.src_port) continue;
    IcmpErrorInfo info;
    EXPECT_EQ(on_copy(c.bytes, c.bytes.size(), [&](uint8_t* p, size_t n) {
                return parse_icmp_error(p, n, &info);
              }),
              c.want)
        << c.what << " (parse)";
  }
  // The other way round: an ICMP error handed to rewrite_packet().
  EXPECT_EQ(on_copy(good, good.size(), [&](uint8_t* p, size_t n) {
              return rewrite_packet(p, n, PacketRewrite{});
            }),
            XlateError::kIcmpError);
  Bytes gre = pktgen::strip_l2(Pkt().ipv4("10.0.0.1", "10.0.0.2").proto(47).payload("gre!").build());
  EXPECT_EQ(on_copy(gre, gre.size(), [&](uint8_t* p, size_t n) {
              return rewrite_packet(p, n, PacketRewrite{});
            }),
            XlateError::kUnsupportedProto);
}

TEST(IcmpError, EveryTruncationIsRejected) {
  for (uint8_t proto : {kUdp, kTcp, kIcmp}) {
    const Bytes err = icmp_error(3, 1, kRouter, kOutside,
                                 offending(proto, kOutside, kRemote, 1500, 80, Bytes(64, 9)), 548);
    PacketRewrite outer, quoted;
    outer.dst_addr = kInside;
    quoted.src_addr = kInside;
    quoted.src_port = port(4242);
    auto xlate = [&](uint8_t* p, size_t n) { return translate_icmp_error(p, n, outer, quoted); };
    for (size_t len = 0; len < err.size(); ++len) {
      // The buffer ends before the packet does.
      EXPECT_EQ(on_copy(err, len, xlate), XlateError::kTruncated) << len;
      // A packet that says it is this short: fine once it holds the quoted header and 8 bytes.
      if (len < 4) continue;
      Bytes shorter(err.begin(), err.begin() + static_cast<long>(len));
      shorter[2] = static_cast<uint8_t>(len >> 8);
      shorter[3] = static_cast<uint8_t>(len);
      XlateError r = on_copy(shorter, len, xlate);
      if (len >= 20 + 8 + 20 + 8) EXPECT_EQ(r, XlateError::kOk) << len;
      else if (len < 20) EXPECT_EQ(r, XlateError::kTruncated) << len;  // shorter than a header
      else if (len < 28) EXPECT_EQ(r, XlateError::kTruncated) << len;  // no ICMP header
      else EXPECT_EQ(r, XlateError::kQuotedTruncated) << len;
    }
  }
}

TEST(IcmpError, RandomBytesNeverCrashOrChangeTheBufferOnError) {
  std::mt19937 rng(11);
  const Bytes base = icmp_error(3, 3, kRouter, kOutside,
                                offending(kTcp, kOutside, kRemote, 1500, 80, Bytes(30, 1)), 60);
  PacketRewrite outer, quoted;
  outer.dst_addr = kInside;
  quoted.src_addr = kInside;
  quoted.src_port = port(1);
  int ok = 0;
  for (int i = 0; i < 20000; ++i) {
    Bytes b = base;
    b.resize(rng() % (base.size() + 8));
    for (int k = rng() % 4; k >= 0; --k)
      if (!b.empty()) b[rng() % b.size()] = static_cast<uint8_t>(rng());
    if (on_copy(b, b.size(), [&](uint8_t* p, size_t n) {
          return translate_icmp_error(p, n, outer, quoted);
        }) == XlateError::kOk)
      ++ok;
    on_copy(b, b.size(), [&](uint8_t* p, size_t n) { return rewrite_packet(p, n, quoted); });
  }
  EXPECT_GT(ok, 0);
}

}  // namespace
}  // namespace baton
