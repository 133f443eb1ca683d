// SPDX-License-Identifier: Apache-2.0
//
// Pure NAT policy helpers: lookup keys per mapping behaviour, filtering decisions per filtering
// behaviour (fixture tables), the bounded peer memory, names and timeout checks.
#include "nat/nat_policy.h"

#include <gtest/gtest.h>

#include "nat_test_util.h"

namespace baton {
namespace {

using namespace nattest;

TEST(NatPolicy, DefaultsAreEndpointIndependentMappingAndAddressAndPortDependentFiltering) {
  NatPolicy p;
  EXPECT_EQ(p.mapping, MappingBehavior::kEndpointIndependent);
  EXPECT_EQ(p.filtering, FilteringBehavior::kAddressAndPortDependent);
}

TEST(NatPolicy, InsideKeyHoldsWhatTheMappingBehaviourSays) {
  struct Case {
    MappingBehavior m;
    bool has_remote_addr, has_remote_port;
  };
  const Case cases[] = {
      {MappingBehavior::kEndpointIndependent, false, false},
      {MappingBehavior::kAddressDependent, true, false},
      {MappingBehavior::kAddressAndPortDependent, true, true},
  };
  const be32 in = ip4("10.0.0.1"), r1 = ip4("203.0.113.1"), r2 = ip4("203.0.113.2");
  for (const Case& c : cases) {
    const NatInsideKey k = nat_inside_key(c.m, kUdp, in, port(5000), r1, port(53));
    EXPECT_EQ(k.inside_addr, in);
    EXPECT_EQ(k.inside_port, port(5000));
    EXPECT_EQ(k.proto, kUdp);
    EXPECT_EQ(k.remote_addr, c.has_remote_addr ? r1 : be32());
    EXPECT_EQ(k.remote_port, c.has_remote_port ? port(53) : be16());
    // Same key for another remote port / address exactly when the behaviour ignores it.
    EXPECT_EQ(k == nat_inside_key(c.m, kUdp, in, port(5000), r1, port(54)), !c.has_remote_port);
    EXPECT_EQ(k == nat_inside_key(c.m, kUdp, in, port(5000), r2, port(53)), !c.has_remote_addr);
    EXPECT_FALSE(k == nat_inside_key(c.m, kTcp, in, port(5000), r1, port(53)));
    EXPECT_FALSE(k == nat_inside_key(c.m, kUdp, in, port(5001), r1, port(53)));
  }
}

TEST(NatPolicy, FilteringDecisionTable) {
  const be32 a = ip4("203.0.113.1"), b = ip4("203.0.113.2");
  const NatPeer sent[] = {{a, port(53), 0}};
  struct Case {
    FilteringBehavior f;
    be32 from;
    uint16_t from_port;
    bool allowed;
  };
  const Case cases[] = {
      {FilteringBehavior::kEndpointIndependent, a, 53, true},
      {FilteringBehavior::kEndpointIndependent, a, 54, true},
      {FilteringBehavior::kEndpointIndependent, b, 53, true},
      {FilteringBehavior::kAddressDependent, a, 53, true},
      {FilteringBehavior::kAddressDependent, a, 54, true},
      {FilteringBehavior::kAddressDependent, b, 53, false},
      {FilteringBehavior::kAddressAndPortDependent, a, 53, true},
      {FilteringBehavior::kAddressAndPortDependent, a, 54, false},
      {FilteringBehavior::kAddressAndPortDependent, b, 53, false},
  };
  for (const Case& c : cases)
    EXPECT_EQ(nat_filter_allows(c.f, sent, 1, c.from, port(c.from_port)), c.allowed)
        << filtering_behavior_name(c.f) << " from " << str(c.from) << ":" << c.from_port;
  // A mapping that has sent to no one admits no one, unless filtering is independent.
  EXPECT_FALSE(nat_filter_allows(FilteringBehavior::kAddressDependent, sent, 0, a, port(53)));
  EXPECT_TRUE(nat_filter_allows(FilteringBehavior::kEndpointIndependent, sent, 0, a, port(53)));
}

TEST(NatPolicy, PeerMemoryIsMostRecentFirstAndBounded) {
  NatPeer peers[kNatMaxPeers];
  uint8_t n = 0;
  for (uint32_t i = 1; i <= 6; ++i) nat_note_peer(peers, &n, be32::from_host(i), port(100));
  ASSERT_EQ(n, kNatMaxPeers);
  for (size_t i = 0; i < kNatMaxPeers; ++i) EXPECT_EQ(peers[i].addr.host(), 6 - i);
  // Seen again: moves to the front, nothing is dropped.
  nat_note_peer(peers, &n, be32::from_host(4), port(100));
  EXPECT_EQ(n, kNatMaxPeers);
  const uint32_t want[] = {4, 6, 5, 3};
  for (size_t i = 0; i < kNatMaxPeers; ++i) EXPECT_EQ(peers[i].addr.host(), want[i]);
  // Same address, other port: another peer.
  nat_note_peer(peers, &n, be32::from_host(4), port(101));
  EXPECT_EQ(peers[0].port, port(101));
  EXPECT_EQ(peers[1].port, port(100));
  EXPECT_EQ(peers[1].addr.host(), 4u);
  // Forgotten peers are filtered (the strict side), remembered ones pass.
  EXPECT_FALSE(nat_filter_allows(FilteringBehavior::kAddressDependent, peers, n,
                                 be32::from_host(3), port(100)));
  EXPECT_TRUE(nat_filter_allows(FilteringBehavior::kAddressAndPortDependent, peers, n,
                                be32::from_host(5), port(100)));
}

TEST(NatPolicy, NamesRoundTrip) {
  for (auto m : {MappingBehavior::kEndpointIndependent, MappingBehavior::kAddressDependent,
                 MappingBehavior::kAddressAndPortDependent})
    EXPECT_EQ(parse_mapping_behavior(mapping_behavior_name(m)), m);
  for (auto f : {FilteringBehavior::kEndpointIndependent, FilteringBehavior::kAddressDependent,
                 FilteringBehavior::kAddressAndPortDependent})
    EXPECT_EQ(parse_filtering_behavior(filtering_behavior_name(f)), f);
  EXPECT_EQ(parse_mapping_behavior("full-cone"), std::nullopt);
  EXPECT_EQ(parse_filtering_behavior(""), std::nullopt);
}

TEST(NatPolicy, TimeoutCheckNamesTheRequirement) {
  NatTimeouts t;
  EXPECT_EQ(check_timeouts(t), "");
  t.udp_s = 119;
  EXPECT_NE(check_timeouts(t).find("REQ-5"), std::string::npos);
  t = NatTimeouts{};
  t.icmp_s = 59;
  EXPECT_NE(check_timeouts(t).find("RFC 5508"), std::string::npos);
  t = NatTimeouts{};
  t.tcp_s = 0;
  EXPECT_NE(check_timeouts(t), "");
}

}  // namespace
}  // namespace baton
