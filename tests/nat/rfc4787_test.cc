// SPDX-License-Identifier: Apache-2.0
//
// One test per RFC 4787 (UDP) requirement the NAT core claims (nat_policy.h says which and how),
// then RFC 5382 (TCP) and RFC 5508 (ICMP) where the core is what meets them. Each test drives the
// mapping table and port allocator as the pipeline will: lookup_inside on an outbound packet,
// create on a miss, session_ref/unref as connections come and go, lookup_outside and
// inbound_allowed on an inbound packet.
#include <gtest/gtest.h>

#include <set>

#include "nat/icmp_xlate.h"
#include "nat_table_fixture.h"
#include "pktgen/packet_builder.h"

namespace baton {
namespace {

using namespace nattest;
using pktgen::Bytes;
using pktgen::Pkt;

class Rfc4787 : public NatTableTest {};
class Rfc5382 : public NatTableTest {};
class Rfc5508 : public NatTableTest {};

// The mapping an outbound packet uses: the existing one, or a new one.
int32_t outbound(NatMappingTable& t, uint8_t proto, const std::string& in, uint16_t in_port,
                 const std::string& remote, uint16_t rport, uint32_t now = 0) {
  int32_t s = t.lookup_inside(proto, ip4(in), port(in_port), ip4(remote), port(rport));
  if (s >= 0) {
    t.note_outbound(static_cast<uint32_t>(s), ip4(remote), port(rport), now);
    return s;
  }
  auto r = NatTableTest::snat(t, proto, in, in_port, remote, rport, now);
  EXPECT_TRUE(r.ok()) << nat_error_name(r.error);
  return r.slot;
}

void endpoint_independent_mapping(NatMappingTable* eim, NatMappingTable* apdm, uint8_t proto) {
  // STUN-style: one inside endpoint talks to two servers; both see the same outside endpoint.
  const int32_t a = outbound(*eim, proto, "10.0.0.1", 5000, "203.0.113.1", 3478);
  const int32_t b = outbound(*eim, proto, "10.0.0.1", 5000, "203.0.113.2", 3479);
  ASSERT_GE(a, 0);
  EXPECT_EQ(a, b);
  EXPECT_EQ(eim->size(), 1u);
  // Negative control: address-and-port-dependent mapping gives each server its own.
  const int32_t c = outbound(*apdm, proto, "10.0.0.1", 5000, "203.0.113.1", 3478);
  const int32_t d = outbound(*apdm, proto, "10.0.0.1", 5000, "203.0.113.2", 3479);
  ASSERT_GE(c, 0);
  ASSERT_GE(d, 0);
  EXPECT_NE(c, d);
  EXPECT_NE(apdm->mapping(c).outside_port, apdm->mapping(d).outside_port);
}

TEST_F(Rfc4787, Req1EndpointIndependentMapping) {
  Options apdm;
  apdm.policy.mapping = MappingBehavior::kAddressAndPortDependent;
  NatMappingTable* eim = make();
  NatMappingTable* dep = make(apdm);
  ASSERT_TRUE(eim && dep);
  endpoint_independent_mapping(eim, dep, kUdp);
}

TEST_F(Rfc4787, Req2PairedAddressPooling) {
  Options o;
  o.capacity = 4096;
  o.alloc.addresses = {ip4("198.51.100.1"), ip4("198.51.100.2"), ip4("198.51.100.3"),
                       ip4("198.51.100.4")};
  NatMappingTable* t = make(o);
  ASSERT_TRUE(t);
  std::set<uint32_t> pool_used;
  for (int h = 1; h <= 16; ++h) {
    const std::string host = "10.0.0." + std::to_string(h);
    std::set<uint32_t> addrs;
    // 200 mappings per host over every protocol: several blocks, one address.
    for (int i = 0; i < 200; ++i) {
      const uint8_t proto = i % 3 == 0 ? kTcp : i % 3 == 1 ? kUdp : kIcmp;
      const int32_t s = outbound(*t, proto, host, static_cast<uint16_t>(10000 + i), "192.0.2.1", 80);
      ASSERT_GE(s, 0);
      addrs.insert(t->mapping(s).outside_addr.raw());
    }
    EXPECT_EQ(addrs.size(), 1u) << host;
    pool_used.insert(*addrs.begin());
  }
  EXPECT_GT(pool_used.size(), 1u) << "hosts are spread over the pool";
}

TEST_F(Rfc4787, Req3NoPortOverloading) {
  NatMappingTable* t = make();
  ASSERT_TRUE(t);
  std::set<std::pair<uint32_t, uint16_t>> outside;
  for (int h = 1; h <= 50; ++h) {  // every host uses the same inside port, to the same server
    const std::string host = "10.0.1." + std::to_string(h);
    const int32_t s = outbound(*t, kUdp, host, 5000, "192.0.2.1", 53);
    ASSERT_GE(s, 0);
    const NatMapping& m = t->mapping(s);
    EXPECT_TRUE(outside.emplace(m.outside_addr.raw(), m.outside_port.host()).second);
    EXPECT_EQ(t->lookup_outside(kUdp, m.outside_addr, m.outside_port), s) << "back to " << host;
  }
  // A configured endpoint never takes over a dynamic one.
  const NatMapping& m = t->mapping(t->lookup_inside(kUdp, ip4("10.0.1.1"), port(5000), ip4("192.0.2.1"), port(53)));
  NatMappingRequest pf;
  pf.type = NatType::kPortForward;
  pf.proto = kUdp;
  pf.inside_addr = ip4("10.0.9.9");
  pf.inside_port = port(53);
  pf.outside_addr = m.outside_addr;
  pf.outside_port = m.outside_port;
  EXPECT_EQ(t->create(pf, 0).error, NatError::kOutsideInUse);
}

TEST_F(Rfc4787, Req3aPortsAbove1023StayAbove1023) {
  NatMappingTable* t = make();
  ASSERT_TRUE(t);
  for (int i = 0; i < 500; ++i) {
    const int32_t s = outbound(*t, kUdp, "10.0.0." + std::to_string(1 + i % 7),
                               static_cast<uint16_t>(1024 + i * 97), "192.0.2.1", 53);
    ASSERT_GE(s, 0);
    EXPECT_GE(t->mapping(s).outside_port.host(), 1024);
  }
}

TEST_F(Rfc4787, Req4PortParityPreservation) {
  auto mismatches = [&](bool preserve) {
    Options o;
    o.alloc.preserve_parity = preserve;
    o.alloc.preserve_port = false;
    NatMappingTable* t = make(o);
    EXPECT_TRUE(t);
    int bad = 0;
    for (int i = 0; i < 100; ++i) {
      const uint16_t in_port = static_cast<uint16_t>(20000 + (i * 7919) % 9973);  // mixed parity
      const int32_t s = outbound(*t, kUdp, "10.0.0.1", in_port, "192.0.2.1", 53);
      if (s < 0) return -1;
      bad += (t->mapping(s).outside_port.host() & 1) != (in_port & 1);
    }
    return bad;
  };
  EXPECT_EQ(mismatches(true), 0);
  EXPECT_GT(mismatches(false), 10) << "negative control: without it parity is left to chance";
}

TEST_F(Rfc4787, Req5UdpMappingTimerIsAtLeastTwoMinutes) {
  NatMappingTable* t = make();  // default: 300 s (REQ-5c)
  ASSERT_TRUE(t);
  const int32_t s = outbound(*t, kUdp, "10.0.0.1", 5000, "192.0.2.1", 53, 1000);
  t->session_ref(s, 1000);
  t->session_unref(s, 1010);  // the last session ends: the timer starts
  EXPECT_EQ(t->expire(1010 + 120, 100), 0u);
  EXPECT_EQ(t->expire(1010 + 299, 100), 0u);
  EXPECT_EQ(t->expire(1010 + 300, 100), 1u);
  // Configurable (REQ-5b), but not below two minutes.
  Options o;
  o.timeouts.udp_s = 120;
  NatMappingTable* t2 = make(o);
  ASSERT_TRUE(t2);
  ASSERT_GE(outbound(*t2, kUdp, "10.0.0.1", 5000, "192.0.2.1", 53, 0), 0);
  EXPECT_EQ(t2->expire(119, 100), 0u);
  EXPECT_EQ(t2->expire(120, 100), 1u);
  NatMappingTable::Params p;
  p.name = "short";
  p.capacity = 16;
  p.rcu = rcu_;
  p.timeouts.udp_s = 119;
  std::string err;
  EXPECT_EQ(NatMappingTable::create(p, &err), nullptr);
  EXPECT_NE(err.find("REQ-5"), std::string::npos) << err;
}

TEST_F(Rfc4787, Req6OutboundRefreshKeepsTheMapping) {
  NatMappingTable* t = make();
  ASSERT_TRUE(t);
  const int32_t s = outbound(*t, kUdp, "10.0.0.1", 5000, "192.0.2.1", 53, 0);
  const NatMapping first = t->mapping(s);
  // While traffic keeps a session alive (the connection table refreshes it in both directions,
  // REQ-6 and REQ-6a), the mapping stays, however long.
  t->session_ref(s, 0);
  EXPECT_EQ(t->expire(100000, 100), 0u);
  t->session_unref(s, 100000);
  // New outbound traffic before the timer runs out takes the same mapping and stops the timer.
  EXPECT_EQ(t->expire(100000 + 200, 100), 0u);
  EXPECT_EQ(outbound(*t, kUdp, "10.0.0.1", 5000, "192.0.2.9", 123, 100200), s);
  t->session_ref(s, 100200);
  EXPECT_EQ(t->expire(100000 + 300, 100), 0u) << "the old deadline has no effect";
  t->session_unref(s, 100250);
  EXPECT_EQ(t->expire(100250 + 299, 100), 0u);
  EXPECT_EQ(t->mapping(s).outside_port, first.outside_port);
  EXPECT_EQ(t->expire(100250 + 300, 100), 1u);
}

// A mapping that sent to 203.0.113.1:53 and 203.0.113.2:123; inbound packets with no connection.
struct FilterCase {
  const char* from;
  uint16_t from_port;
  bool allowed;
};
void check_filtering(NatMappingTable& t, const FilterCase* cases, size_t n) {
  const int32_t s = outbound(t, kUdp, "10.0.0.1", 5000, "203.0.113.1", 53);
  ASSERT_GE(s, 0);
  outbound(t, kUdp, "10.0.0.1", 5000, "203.0.113.2", 123);
  const NatMapping& m = t.mapping(s);
  for (size_t i = 0; i < n; ++i) {
    const FilterCase& c = cases[i];
    // Inbound: find the mapping by its outside endpoint, then filter.
    const int32_t in = t.lookup_outside(kUdp, m.outside_addr, m.outside_port);
    ASSERT_EQ(in, s);
    EXPECT_EQ(t.inbound_allowed(in, ip4(c.from), port(c.from_port)), c.allowed)
        << filtering_behavior_name(t.policy().filtering) << " from " << c.from << ":" << c.from_port;
  }
}

TEST_F(Rfc4787, Req8EndpointIndependentFiltering) {
  Options o;
  o.policy.filtering = FilteringBehavior::kEndpointIndependent;
  NatMappingTable* t = make(o);
  ASSERT_TRUE(t);
  const FilterCase cases[] = {{"203.0.113.1", 53, true}, {"203.0.113.1", 54, true},
                              {"203.0.113.2", 53, true}, {"198.18.0.1", 9999, true}};
  check_filtering(*t, cases, std::size(cases));
}

TEST_F(Rfc4787, Req8AddressDependentFiltering) {
  Options o;
  o.policy.filtering = FilteringBehavior::kAddressDependent;
  NatMappingTable* t = make(o);
  ASSERT_TRUE(t);
  const FilterCase cases[] = {{"203.0.113.1", 53, true}, {"203.0.113.1", 54, true},
                              {"203.0.113.2", 53, true}, {"198.18.0.1", 53, false}};
  check_filtering(*t, cases, std::size(cases));
}

TEST_F(Rfc4787, Req8AddressAndPortDependentFilteringIsTheDefault) {
  NatMappingTable* t = make();
  ASSERT_TRUE(t);
  EXPECT_EQ(t->policy().filtering, FilteringBehavior::kAddressAndPortDependent);
  const FilterCase cases[] = {{"203.0.113.1", 53, true},  {"203.0.113.1", 54, false},
                              {"203.0.113.2", 123, true}, {"203.0.113.2", 53, false},
                              {"198.18.0.1", 53, false}};
  check_filtering(*t, cases, std::size(cases));
}

TEST_F(Rfc4787, Req9HairpinningUsesTheExternalSourceAddressAndPort) {
  NatMappingTable* t = make();
  ASSERT_TRUE(t);
  // A and B behind the NAT both talk to a server, so both have mappings.
  const int32_t sa = outbound(*t, kUdp, "10.0.0.1", 4000, "192.0.2.1", 3478);
  const int32_t sb = outbound(*t, kUdp, "10.0.0.2", 5000, "192.0.2.1", 3478);
  ASSERT_GE(sa, 0);
  ASSERT_GE(sb, 0);
  const NatMapping a = t->mapping(sa), b = t->mapping(sb);
  // A sends to B's outside endpoint (learnt from the server).
  Bytes pkt = pktgen::strip_l2(Pkt().ipv4(IpAddr::v4(ip4("10.0.0.1")), IpAddr::v4(b.outside_addr))
                                   .udp(4000, b.outside_port.host()).payload("hello B").build());
  // Destination: by the outside endpoint; source: A's own mapping, as for any outbound packet.
  const int32_t dst = t->lookup_outside(kUdp, b.outside_addr, b.outside_port);
  const int32_t src = t->lookup_inside(kUdp, ip4("10.0.0.1"), port(4000), b.outside_addr, b.outside_port);
  ASSERT_EQ(dst, sb);
  ASSERT_EQ(src, sa);
  PacketRewrite rw;
  rw.src_addr = a.outside_addr;  // REQ-9a: external source IP address and port
  rw.src_port = a.outside_port;
  rw.dst_addr = b.inside_addr;
  rw.dst_port = b.inside_port;
  ASSERT_EQ(rewrite_packet(pkt.data(), pkt.size(), rw), XlateError::kOk);
  Bytes want = pktgen::strip_l2(Pkt().ipv4(IpAddr::v4(a.outside_addr), IpAddr::v4(ip4("10.0.0.2")))
                                    .udp(a.outside_port.host(), 5000).payload("hello B").build());
  EXPECT_TRUE(same_packet(pkt, want));
}

// ---- RFC 5382 (TCP) ----------------------------------------------------------------------------

TEST_F(Rfc5382, Req1TcpEndpointIndependentMapping) {
  Options apdm;
  apdm.policy.mapping = MappingBehavior::kAddressAndPortDependent;
  NatMappingTable* eim = make();
  NatMappingTable* dep = make(apdm);
  ASSERT_TRUE(eim && dep);
  endpoint_independent_mapping(eim, dep, kTcp);
}

TEST_F(Rfc5382, Req3TcpFilteringFollowsTheConfiguredBehaviour) {
  Options o;
  o.policy.filtering = FilteringBehavior::kAddressDependent;
  NatMappingTable* t = make(o);
  ASSERT_TRUE(t);
  const int32_t s = outbound(*t, kTcp, "10.0.0.1", 40000, "203.0.113.1", 443);
  ASSERT_GE(s, 0);
  EXPECT_TRUE(t->inbound_allowed(s, ip4("203.0.113.1"), port(8443)));
  EXPECT_FALSE(t->inbound_allowed(s, ip4("203.0.113.9"), port(443)));
}

TEST_F(Rfc5382, Req5TcpMappingOutlivesItsLastConnectionByTheTransitoryTimeout) {
  NatMappingTable* t = make();
  ASSERT_TRUE(t);
  const int32_t s = outbound(*t, kTcp, "10.0.0.1", 40000, "203.0.113.1", 443, 0);
  t->session_ref(s, 0);
  EXPECT_EQ(t->expire(2 * 3600 + 4 * 60, 100), 0u) << "established for 2 h 4 min";
  t->session_unref(s, 10000);
  EXPECT_EQ(t->expire(10000 + 239, 100), 0u);
  EXPECT_EQ(t->expire(10000 + 240, 100), 1u);
}

TEST_F(Rfc5382, Req7TcpNoPortOverloading) {
  NatMappingTable* t = make();
  ASSERT_TRUE(t);
  const int32_t a = outbound(*t, kTcp, "10.0.0.1", 40000, "203.0.113.1", 443);
  const int32_t b = outbound(*t, kTcp, "10.0.0.2", 40000, "203.0.113.1", 443);
  ASSERT_GE(a, 0);
  ASSERT_GE(b, 0);
  EXPECT_FALSE(t->mapping(a).outside_addr == t->mapping(b).outside_addr &&
               t->mapping(a).outside_port == t->mapping(b).outside_port);
}

TEST_F(Rfc5382, Req9IcmpDestinationUnreachableIsTranslated) {
  NatMappingTable* t = make();
  ASSERT_TRUE(t);
  const int32_t s = outbound(*t, kTcp, "10.0.0.1", 40000, "203.0.113.1", 443);
  ASSERT_GE(s, 0);
  const NatMapping m = t->mapping(s);
  auto syn = [&](be32 src, uint16_t sport) {
    return Pkt().ipv4(IpAddr::v4(src), IpAddr::v4(ip4("203.0.113.1"))).tcp(sport, 443)
        .flags(tcpflag::kSyn).seq(1000).build();
  };
  auto unreachable = [&](be32 dst, const Bytes& inner) {
    return pktgen::strip_l2(Pkt().ipv4(IpAddr::v4(ip4("192.0.2.254")), IpAddr::v4(dst))
                                .icmp_error(3, 1, inner, 48).build());
  };
  Bytes err = unreachable(m.outside_addr, syn(m.outside_addr, m.outside_port.host()));
  // Which mapping: the quoted source is the outside endpoint.
  IcmpErrorInfo info;
  ASSERT_EQ(parse_icmp_error(err.data(), err.size(), &info), XlateError::kOk);
  ASSERT_EQ(t->lookup_outside(info.proto, info.src, info.sport), s);
  PacketRewrite outer, quoted;
  outer.dst_addr = m.inside_addr;
  quoted.src_addr = m.inside_addr;
  quoted.src_port = m.inside_port;
  ASSERT_EQ(translate_icmp_error(err.data(), err.size(), outer, quoted), XlateError::kOk);
  EXPECT_TRUE(same_packet(err, unreachable(ip4("10.0.0.1"), syn(ip4("10.0.0.1"), 40000))));
  EXPECT_TRUE(t->live(s)) << "RFC 5382 REQ-10: ICMP does not end the mapping";
}

// ---- RFC 5508 (ICMP) ---------------------------------------------------------------------------

TEST_F(Rfc5508, Req1IcmpQueryMappingLivesAtLeastSixtySeconds) {
  NatMappingTable* t = make();
  ASSERT_TRUE(t);
  const int32_t s = outbound(*t, kIcmp, "10.0.0.1", 777, "203.0.113.1", 777, 50);
  ASSERT_GE(s, 0);
  EXPECT_EQ(t->expire(50 + 59, 100), 0u);
  EXPECT_EQ(t->expire(50 + 60, 100), 1u);
  NatMappingTable::Params p;
  p.name = "icmp59";
  p.capacity = 16;
  p.rcu = rcu_;
  p.timeouts.icmp_s = 59;
  std::string err;
  EXPECT_EQ(NatMappingTable::create(p, &err), nullptr);
}

}  // namespace
}  // namespace baton
