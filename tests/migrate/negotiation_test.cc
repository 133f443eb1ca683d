// SPDX-License-Identifier: Apache-2.0
#include "migrate/negotiation.h"

#include <gtest/gtest.h>

namespace baton::migrate {
namespace {

IpAddr ip(const char* s) {
  Family f;
  return *IpAddr::parse(s, &f);
}

VmConfig vm(const char* name, const char* mac, const char* ipv4, uint16_t vlan) {
  VmConfig v;
  v.name = name;
  v.mac = *MacAddr::parse(mac);
  v.ipv4 = {ip(ipv4)};
  v.vlan = vlan;
  return v;
}

PrepareMsg request(uint64_t conns = 1000) {
  PrepareMsg m;
  m.source_instance = "baton-a";
  m.vm = vm("web1", "52:54:00:00:00:01", "10.0.0.5", 100);
  m.vm.ipv6 = {ip("2001:db8::5")};
  m.counts = {{static_cast<uint8_t>(StateKind::kConn), conns}};
  return m;
}

LocalView local() {
  LocalView l;
  l.free[static_cast<uint8_t>(StateKind::kConn)] = 1'000'000;
  l.headroom_percent = 10;
  l.vms = {vm("db1", "52:54:00:00:00:02", "10.0.0.6", 100)};
  return l;
}

TEST(NegotiateVersion, PicksHighestCommonVersion) {
  EXPECT_EQ(negotiate_version(1, 3, 2, 5).value, 3);
  EXPECT_TRUE(negotiate_version(1, 3, 2, 5).ok);
  EXPECT_EQ(negotiate_version(2, 5, 1, 3).value, 3);
  EXPECT_EQ(negotiate_version(1, 1, 1, 1).value, 1);
  EXPECT_FALSE(negotiate_version(1, 2, 3, 4).ok);
  EXPECT_FALSE(negotiate_version(3, 1, 1, 3).ok);  // malformed range
}

TEST(Decide, AcceptsWhenEverythingFits) {
  Decision d = decide(request(), local());
  EXPECT_TRUE(d.accepted()) << d.detail;
  EXPECT_EQ(d.reason, FailReason::kNone);
}

TEST(Decide, RefusesUnknownProtocolVersionAsUnsupported) {
  PrepareMsg r = request();
  r.protocol_version = kProtocolVersionMax + 1;
  Decision d = decide(r, local());
  EXPECT_EQ(d.reason, FailReason::kUnsupported);
  EXPECT_NE(d.detail.find("protocol version"), std::string::npos) << d.detail;
}

TEST(Decide, RefusesStateKindItCannotHoldAsUnsupported) {
  PrepareMsg r = request();
  r.counts.push_back({static_cast<uint8_t>(StateKind::kDynamicAcl), 3});
  Decision d = decide(r, local());
  EXPECT_EQ(d.reason, FailReason::kUnsupported);
  EXPECT_NE(d.detail.find("dynamic_acl"), std::string::npos) << d.detail;
  r.counts.back() = {200, 1};  // a kind this build has never heard of
  d = decide(r, local());
  EXPECT_EQ(d.reason, FailReason::kUnsupported);
  EXPECT_NE(d.detail.find("kind200"), std::string::npos) << d.detail;
}

TEST(Decide, RefusesDynamicNatLbAndL7ConnectionsAsUnsupported) {
  // What VmReader::tally reports for a VM with SNAT, load-balanced or L7 connections.
  for (StateKind k : {StateKind::kNatMapping, StateKind::kLbConn, StateKind::kL7Conn}) {
    PrepareMsg r = request();
    r.counts.push_back({static_cast<uint8_t>(k), 1});
    Decision d = decide(r, local());
    EXPECT_EQ(d.reason, FailReason::kUnsupported) << state_kind_name(static_cast<uint8_t>(k));
    EXPECT_NE(d.detail.find(state_kind_name(static_cast<uint8_t>(k))), std::string::npos)
        << d.detail;
  }
  EXPECT_EQ(state_kind_name(static_cast<uint8_t>(StateKind::kL7Conn)), "l7_conn");
}

// A peer that holds L7 connections accepts them at version 4; at version 3 (no l7 part on the
// wire) they are UNSUPPORTED even there, and a VM without any still moves.
TEST(Decide, L7ConnectionsNeedVersion4) {
  LocalView l = local();
  l.kinds |= kind_bit(StateKind::kL7Conn) | kind_bit(StateKind::kLbConn);
  l.free.fill(1'000'000);
  PrepareMsg r = request();
  r.counts.push_back({static_cast<uint8_t>(StateKind::kLbConn), 2});
  r.counts.push_back({static_cast<uint8_t>(StateKind::kL7Conn), 2});
  r.protocol_version = kProtocolVersionL7;
  Decision d = decide(r, l);
  EXPECT_TRUE(d.accepted()) << d.detail;
  r.protocol_version = kProtocolVersionHandoff;
  d = decide(r, l);
  EXPECT_EQ(d.reason, FailReason::kUnsupported);
  EXPECT_NE(d.detail.find("l7_conn (2 entries) needs protocol 4"), std::string::npos) << d.detail;
  r.counts.pop_back();
  EXPECT_TRUE(decide(r, l).accepted()) << "the L4 connections alone move at version 3";
}

TEST(Decide, IgnoresUnsupportedKindWithNoEntries) {
  PrepareMsg r = request();
  r.counts.push_back({static_cast<uint8_t>(StateKind::kSticky), 0});
  EXPECT_TRUE(decide(r, local()).accepted());
}

TEST(Decide, RefusesTableWithoutHeadroomAsResourcesNamingTheTable) {
  LocalView l = local();
  l.free[0] = 1100;  // exactly 1000 * 1.10
  EXPECT_TRUE(decide(request(1000), l).accepted());
  l.free[0] = 1099;
  Decision d = decide(request(1000), l);
  EXPECT_EQ(d.reason, FailReason::kResources);
  EXPECT_NE(d.detail.find("table conn"), std::string::npos) << d.detail;
  EXPECT_NE(d.detail.find("1099 free"), std::string::npos) << d.detail;
  l.free[0] = ~0ull;  // no overflow in entries * (1 + headroom)
  d = decide(request(~0ull), l);
  EXPECT_EQ(d.reason, FailReason::kResources);
}

// Version 5: each address family's connection table is checked against its share (1000
// connections, 300 of them IPv6, with 10 % headroom: 770 IPv4 and 330 IPv6 slots).
TEST(Decide, ChecksEachAddressFamilysTableFromVersion5) {
  PrepareMsg m = request(1000);
  m.conn_v6 = 300;
  LocalView l = local();
  l.conn_free_by_family = std::array<uint64_t, 2>{770, 330};
  EXPECT_TRUE(decide(m, l).accepted());
  l.conn_free_by_family = std::array<uint64_t, 2>{769, 100'000};
  Decision d = decide(m, l);
  EXPECT_EQ(d.reason, FailReason::kResources);
  EXPECT_NE(d.detail.find("table conn (IPv4): 700 entries"), std::string::npos) << d.detail;
  l.conn_free_by_family = std::array<uint64_t, 2>{100'000, 329};
  d = decide(m, l);
  EXPECT_EQ(d.reason, FailReason::kResources);
  EXPECT_NE(d.detail.find("table conn (IPv6): 300 entries"), std::string::npos) << d.detail;
  // A version-4 source says nothing of families: only the sum is checked.
  m.protocol_version = kProtocolVersionL7;
  EXPECT_TRUE(decide(m, l).accepted());
}

TEST(Decide, RefusesAclRulesBeyondFreeRuleSlots) {
  LocalView l = local();
  l.acl_rules_free = 1;
  PrepareMsg r = request();
  r.vm.profile.acl.resize(2);
  Decision d = decide(r, l);
  EXPECT_EQ(d.reason, FailReason::kResources);
  EXPECT_NE(d.detail.find("table acl"), std::string::npos) << d.detail;
}

TEST(Decide, RefusesMacOwnedByAnotherVmAsConflict) {
  LocalView l = local();
  l.vms.push_back(vm("other", "52:54:00:00:00:01", "10.9.9.9", 200));
  Decision d = decide(request(), l);
  EXPECT_EQ(d.reason, FailReason::kConflict);
  EXPECT_NE(d.detail.find("owned by vm other"), std::string::npos) << d.detail;
}

TEST(Decide, RefusesIpOwnedByAnotherVmOnTheSameVlanAsConflict) {
  LocalView l = local();
  l.vms.push_back(vm("other", "52:54:00:00:00:09", "10.0.0.5", 100));
  Decision d = decide(request(), l);
  EXPECT_EQ(d.reason, FailReason::kConflict);
  EXPECT_NE(d.detail.find("ipv4 10.0.0.5"), std::string::npos) << d.detail;
  l.vms.back().vlan = 200;  // same address on another VLAN is another host
  EXPECT_TRUE(decide(request(), l).accepted());
  VmConfig v6 = vm("v6", "52:54:00:00:00:0a", "10.7.7.7", 100);
  v6.ipv6 = {ip("2001:db8::5")};
  l.vms.push_back(v6);
  d = decide(request(), l);
  EXPECT_EQ(d.reason, FailReason::kConflict);
  EXPECT_NE(d.detail.find("ipv6 2001:db8::5"), std::string::npos) << d.detail;
}

TEST(Decide, RefusesNatPublicIpInUseAsConflict) {
  LocalView l = local();
  l.nat_public_in_use = {{ip("203.0.113.7"), Family::kV4}};
  PrepareMsg r = request();
  r.vm.profile.nat_public_ip = ip("203.0.113.7");
  r.nat_family = Family::kV4;
  Decision d = decide(r, l);
  EXPECT_EQ(d.reason, FailReason::kConflict);
  EXPECT_NE(d.detail.find("nat public ip 203.0.113.7"), std::string::npos) << d.detail;
  r.vm.profile.nat_public_ip = ip("203.0.113.8");
  EXPECT_TRUE(decide(r, l).accepted());
}

TEST(Decide, RefusesVlanClashAsConflict) {
  LocalView l = local();
  l.vlans_reserved = {100};
  Decision d = decide(request(), l);
  EXPECT_EQ(d.reason, FailReason::kConflict);
  EXPECT_NE(d.detail.find("vlan 100"), std::string::npos) << d.detail;
  l.vlans_reserved.clear();
  l.vlans_served = {200, 300};
  d = decide(request(), l);
  EXPECT_EQ(d.reason, FailReason::kConflict);
  EXPECT_NE(d.detail.find("not served"), std::string::npos) << d.detail;
  l.vlans_served.push_back(100);
  EXPECT_TRUE(decide(request(), l).accepted());
}

TEST(Decide, RefusesNameUsedByADifferentVmAsConflict) {
  LocalView l = local();
  l.vms.push_back(vm("web1", "52:54:00:00:00:77", "10.3.3.3", 100));
  EXPECT_EQ(decide(request(), l).reason, FailReason::kConflict);
}

TEST(Decide, AcceptsTheSameVmPreProvisionedHere) {
  LocalView l = local();
  l.vms.push_back(request().vm);
  EXPECT_TRUE(decide(request(), l).accepted());
}

TEST(Decide, ReportsUnsupportedBeforeConflictBeforeResources) {
  LocalView l = local();
  l.free[0] = 0;
  l.vms.push_back(vm("other", "52:54:00:00:00:01", "10.9.9.9", 200));
  PrepareMsg r = request();
  EXPECT_EQ(decide(r, l).reason, FailReason::kConflict);
  r.protocol_version = 0;
  EXPECT_EQ(decide(r, l).reason, FailReason::kUnsupported);
}

// Version 3: the endpoints the VM's translated connections need are checked by the local
// view's checkers; the first refusal is a CONFLICT whose detail is the checker's reason.
TEST(Decide, HandoffNeedsAreCheckedAsConflicts) {
  PrepareMsg r = request();
  r.protocol_version = kProtocolVersionHandoff;
  r.counts.push_back({static_cast<uint8_t>(StateKind::kNatMapping), 1});
  r.counts.push_back({static_cast<uint8_t>(StateKind::kLbConn), 1});
  r.needs.nat = {{6, ip("10.0.0.5").as_v4(), ip("203.0.113.10").as_v4(), be16::from_host(20001)}};
  LbNeed lb;
  lb.proto = 6;
  lb.vip = ip("203.0.113.100").as_v4();
  lb.vip_port = be16::from_host(80);
  lb.backend_addr = ip("10.0.0.7").as_v4();
  lb.backend_port = be16::from_host(8080);
  r.needs.lb = {lb};
  LocalView l = local();
  l.kinds |= kind_bit(StateKind::kNatMapping) | kind_bit(StateKind::kLbConn);
  l.free[static_cast<uint8_t>(StateKind::kNatMapping)] = 100;
  l.free[static_cast<uint8_t>(StateKind::kLbConn)] = 100;

  // No translation here at all.
  Decision d = decide(r, l);
  EXPECT_EQ(d.reason, FailReason::kConflict);
  EXPECT_NE(d.detail.find("no SNAT pool"), std::string::npos) << d.detail;

  std::vector<std::string> asked;
  l.check_nat = [&](const NatNeed& n) {
    asked.push_back("nat " + IpAddr::v4(n.outside_addr).to_string(Family::kV4));
    return std::string();
  };
  l.check_lb = [&](const LbNeed& n) {
    asked.push_back("lb " + IpAddr::v4(n.backend_addr).to_string(Family::kV4));
    return std::string("backend 10.0.0.7:8080 is not in pool web");
  };
  d = decide(r, l);
  EXPECT_EQ(d.reason, FailReason::kConflict);
  EXPECT_NE(d.detail.find("backend 10.0.0.7:8080 is not in pool web"), std::string::npos) << d.detail;
  EXPECT_EQ(asked, (std::vector<std::string>{"nat 203.0.113.10", "lb 10.0.0.7"}));

  l.check_lb = [](const LbNeed&) { return std::string(); };
  d = decide(r, l);
  EXPECT_TRUE(d.accepted()) << d.detail;

  // Without the kinds advertised, the counts are refused first (a peer that translates nothing).
  l.kinds = kind_bit(StateKind::kConn);
  EXPECT_EQ(decide(r, l).reason, FailReason::kUnsupported);
}

}  // namespace
}  // namespace baton::migrate
