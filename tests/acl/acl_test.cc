// SPDX-License-Identifier: Apache-2.0
#include "dataplane/acl.h"

#include <gtest/gtest.h>

#include <random>
#include <string>
#include <vector>

#include "tests/support/eal_env.h"

namespace baton {
namespace {

// rte_acl allocates from rte_malloc: one EAL for the whole binary, without hugepages or PCI.
::testing::Environment* const kEal =
    ::testing::AddGlobalTestEnvironment(new EalEnv("acl_test", 256, {"-l", "0"}));

Prefix pfx(const char* s) { return *Prefix::parse(s); }

AclRule rule(const char* zone, Action a) {
  AclRule r;
  r.zone = zone;
  r.action = a;
  return r;
}

Tuple tup(const char* src, uint16_t sp, const char* dst, uint16_t dp, uint8_t proto,
          uint16_t vlan = 0) {
  Tuple t;
  Family f;
  t.src = *IpAddr::parse(src, &f);
  t.dst = *IpAddr::parse(dst, &f);
  t.family = f;
  t.sport = be16::from_host(sp);
  t.dport = be16::from_host(dp);
  t.proto = proto;
  t.vlan = vlan;
  return t;
}

const std::vector<ZoneConfig> kZones = {{"outside", Action::kDeny}, {"inside", Action::kPermit}};
constexpr uint8_t kOutside = 0, kInside = 1;

std::unique_ptr<Acl> build(const std::vector<AclRule>& rules,
                           const std::vector<ZoneConfig>& zones = kZones) {
  std::string err;
  auto acl = Acl::build(rules, zones, &err);
  EXPECT_TRUE(acl) << err;
  return acl;
}

TEST(Acl, NoRulesGivesZoneDefault) {
  auto acl = build({});
  ASSERT_TRUE(acl);
  EXPECT_EQ(acl->rule_count(), 0u);
  auto m = acl->classify_one({kOutside, tup("1.1.1.1", 1, "2.2.2.2", 2, 6)});
  EXPECT_EQ(m.action, Action::kDeny);
  EXPECT_EQ(m.rule, -1);
  m = acl->classify_one({kInside, tup("fd00::1", 1, "fd00::2", 2, 17)});
  EXPECT_EQ(m.action, Action::kPermit);
  EXPECT_EQ(m.rule, -1);
}

TEST(Acl, FirstMatchWins) {
  AclRule narrow = rule("outside", Action::kDeny);
  narrow.dst = pfx("10.1.0.5/32");
  narrow.log = true;
  AclRule wide = rule("outside", Action::kPermit);
  wide.dst = pfx("10.1.0.0/16");
  AclRule narrow_after = rule("outside", Action::kDeny);  // shadowed by `wide`
  narrow_after.dst = pfx("10.1.2.0/24");
  auto acl = build({narrow, wide, narrow_after});
  ASSERT_TRUE(acl);
  auto m = acl->classify_one({kOutside, tup("9.9.9.9", 1000, "10.1.0.5", 80, 6)});
  EXPECT_EQ(m.action, Action::kDeny);
  EXPECT_EQ(m.rule, 0);
  EXPECT_TRUE(m.log);
  m = acl->classify_one({kOutside, tup("9.9.9.9", 1000, "10.1.2.3", 80, 6)});
  EXPECT_EQ(m.action, Action::kPermit);
  EXPECT_EQ(m.rule, 1);
  EXPECT_FALSE(m.log);
}

TEST(Acl, ZoneScopesRulesAndFallsBackToZoneDefault) {
  AclRule r = rule("inside", Action::kDeny);
  r.proto = 17;
  r.dport = {53, 53};
  auto acl = build({r});
  ASSERT_TRUE(acl);
  auto m = acl->classify_one({kInside, tup("10.0.0.1", 5000, "8.8.8.8", 53, 17)});
  EXPECT_EQ(m.rule, 0);
  EXPECT_EQ(m.action, Action::kDeny);
  m = acl->classify_one({kOutside, tup("10.0.0.1", 5000, "8.8.8.8", 53, 17)});
  EXPECT_EQ(m.rule, -1);
  EXPECT_EQ(m.action, Action::kDeny);  // outside's default
  m = acl->classify_one({kInside, tup("10.0.0.1", 5000, "8.8.8.8", 54, 17)});
  EXPECT_EQ(m.rule, -1);
  EXPECT_EQ(m.action, Action::kPermit);  // inside's default
}

TEST(Acl, Ipv4PrefixesOnSourceAndDestination) {
  AclRule r = rule("outside", Action::kPermit);
  r.src = pfx("192.0.2.128/25");
  r.dst = pfx("10.0.0.0/8");
  auto acl = build({r});
  ASSERT_TRUE(acl);
  EXPECT_EQ(acl->classify_one({kOutside, tup("192.0.2.200", 1, "10.200.0.1", 2, 6)}).rule, 0);
  EXPECT_EQ(acl->classify_one({kOutside, tup("192.0.2.127", 1, "10.200.0.1", 2, 6)}).rule, -1);
  EXPECT_EQ(acl->classify_one({kOutside, tup("192.0.2.200", 1, "11.0.0.1", 2, 6)}).rule, -1);
  // A v4 rule never matches v6 traffic.
  EXPECT_EQ(acl->classify_one({kOutside, tup("fd00::1", 1, "fd00::2", 2, 6)}).rule, -1);
}

TEST(Acl, Ipv6PrefixesAcrossWordBoundaries) {
  AclRule r = rule("outside", Action::kPermit);
  r.dst = pfx("2001:db8:0:8000::/49");
  AclRule any6 = rule("outside", Action::kDeny);
  any6.src = pfx("::/0");
  auto acl = build({r, any6});
  ASSERT_TRUE(acl);
  EXPECT_EQ(acl->classify_one({kOutside, tup("fd00::1", 1, "2001:db8:0:8000::1", 2, 6)}).rule,
            0);
  EXPECT_EQ(acl->classify_one({kOutside, tup("fd00::1", 1, "2001:db8:0:ffff:1::", 2, 6)}).rule,
            0);
  EXPECT_EQ(acl->classify_one({kOutside, tup("fd00::1", 1, "2001:db8:0:7fff::1", 2, 6)}).rule,
            1);
  // "::/0" is a v6 rule: v4 traffic does not see it.
  EXPECT_EQ(acl->classify_one({kOutside, tup("1.1.1.1", 1, "2.2.2.2", 2, 6)}).rule, -1);
}

TEST(Acl, PortRanges) {
  AclRule r = rule("outside", Action::kDeny);
  r.dport = {8000, 8100};
  r.sport = {1024, 65535};
  auto acl = build({r});
  ASSERT_TRUE(acl);
  auto cls = [&](uint16_t sp, uint16_t dp) {
    return acl->classify_one({kOutside, tup("1.1.1.1", sp, "2.2.2.2", dp, 6)}).rule;
  };
  EXPECT_EQ(cls(1024, 8000), 0);
  EXPECT_EQ(cls(65535, 8100), 0);
  EXPECT_EQ(cls(40000, 8050), 0);
  EXPECT_EQ(cls(1023, 8050), -1);
  EXPECT_EQ(cls(40000, 7999), -1);
  EXPECT_EQ(cls(40000, 8101), -1);
}

TEST(Acl, ProtoAnyAndExact) {
  AclRule icmp = rule("outside", Action::kPermit);
  icmp.proto = 1;
  AclRule any = rule("outside", Action::kDeny);  // proto absent = any
  auto acl = build({icmp, any});
  ASSERT_TRUE(acl);
  EXPECT_EQ(acl->classify_one({kOutside, tup("1.1.1.1", 7, "2.2.2.2", 7, 1)}).rule, 0);
  EXPECT_EQ(acl->classify_one({kOutside, tup("1.1.1.1", 7, "2.2.2.2", 7, 6)}).rule, 1);
  EXPECT_EQ(acl->classify_one({kOutside, tup("1.1.1.1", 7, "2.2.2.2", 7, 47)}).rule, 1);
  // A rule without addresses applies to IPv6 too.
  EXPECT_EQ(acl->classify_one({kOutside, tup("fd00::1", 7, "fd00::2", 7, 58)}).rule, 1);
}

TEST(Acl, Vlan) {
  AclRule tagged = rule("outside", Action::kDeny);
  tagged.vlan = 10;
  auto acl = build({tagged});
  ASSERT_TRUE(acl);
  EXPECT_EQ(acl->classify_one({kOutside, tup("1.1.1.1", 1, "2.2.2.2", 2, 6, 10)}).rule, 0);
  EXPECT_EQ(acl->classify_one({kOutside, tup("1.1.1.1", 1, "2.2.2.2", 2, 6, 11)}).rule, -1);
  EXPECT_EQ(acl->classify_one({kOutside, tup("1.1.1.1", 1, "2.2.2.2", 2, 6, 0)}).rule, -1);
  EXPECT_EQ(acl->classify_one({kOutside, tup("fd00::1", 1, "fd00::2", 2, 6, 10)}).rule, 0);
}

TEST(Acl, NonIpAndUnknownZoneGetDefaults) {
  auto acl = build({rule("inside", Action::kDeny)});
  ASSERT_TRUE(acl);
  Tuple t;  // family kNone
  EXPECT_EQ(acl->classify_one({kInside, t}).rule, -1);
  auto m = acl->classify_one({200, tup("1.1.1.1", 1, "2.2.2.2", 2, 6)});
  EXPECT_EQ(m.rule, -1);
  EXPECT_EQ(m.action, Action::kDeny);
}

TEST(Acl, BuildRefusesUnknownZone) {
  std::string err;
  AclRule r = rule("dmz", Action::kDeny);
  r.line = 42;
  EXPECT_FALSE(Acl::build({r}, kZones, &err));
  EXPECT_NE(err.find("unknown zone 'dmz'"), std::string::npos) << err;
  EXPECT_NE(err.find("42"), std::string::npos) << err;
}

TEST(Acl, RebuildGivesIndependentInstances) {
  // rte_acl_create returns an existing context of the same name; two live ACLs must not share.
  AclRule p = rule("outside", Action::kPermit);
  auto a = build({p});
  auto b = build({rule("outside", Action::kDeny)});
  ASSERT_TRUE(a && b);
  Tuple t = tup("1.1.1.1", 1, "2.2.2.2", 2, 6);
  EXPECT_EQ(a->classify_one({kOutside, t}).action, Action::kPermit);
  EXPECT_EQ(b->classify_one({kOutside, t}).action, Action::kDeny);
}

// The obvious linear matcher, the specification the tries must agree with.
AclMatch reference(const std::vector<AclRule>& rules, const std::vector<ZoneConfig>& zones,
                   const AclQuery& q) {
  const Tuple& t = q.tuple;
  for (size_t i = 0; i < rules.size(); i++) {
    const AclRule& r = rules[i];
    if (r.zone != zones[q.zone].name) continue;
    if (r.src && !r.src->contains(t.src, t.family)) continue;
    if (r.dst && !r.dst->contains(t.dst, t.family)) continue;
    if (r.proto && *r.proto != t.proto) continue;
    if (r.vlan && *r.vlan != t.vlan) continue;
    if (t.sport.host() < r.sport.lo || t.sport.host() > r.sport.hi) continue;
    if (t.dport.host() < r.dport.lo || t.dport.host() > r.dport.hi) continue;
    return AclMatch{r.action, static_cast<int32_t>(i), r.log};
  }
  return AclMatch{zones[q.zone].default_action, -1, false};
}

// Random values drawn from small pools, so that rules and queries overlap often.
class RandomAcl {
 public:
  explicit RandomAcl(uint32_t seed) : rng_(seed) {}

  IpAddr addr(Family f) {
    IpAddr a;
    if (f == Family::kV4) {
      const uint8_t pool[][4] = {{10, 0, 0, 0}, {10, 1, 0, 0}, {192, 168, 1, 0}, {172, 16, 0, 0}};
      std::memcpy(a.b.data(), pool[pick(4)], 4);
      a.b[2] ^= static_cast<uint8_t>(pick(4));
      a.b[3] = static_cast<uint8_t>(pick(256));
    } else {
      a.b[0] = 0xfd;
      a.b[1] = static_cast<uint8_t>(pick(2));
      a.b[7] = static_cast<uint8_t>(pick(4));           // around the /64 boundary
      a.b[8] = static_cast<uint8_t>(pick(2) << 7);
      a.b[15] = static_cast<uint8_t>(pick(256));
    }
    return a;
  }
  std::optional<Prefix> prefix(Family f) {
    if (pick(3) == 0) return std::nullopt;
    Prefix p;
    p.family = f;
    p.len = static_cast<uint8_t>(f == Family::kV4 ? pick(33) : pick(129));
    std::string text = addr(f).to_string(f) + "/" + std::to_string(p.len);
    return *Prefix::parse(text);  // normalises host bits
  }
  PortRange ports() {
    switch (pick(3)) {
      case 0: return {};
      case 1: {
        uint16_t p = port();
        return {p, p};
      }
      default: {
        uint16_t a = port(), b = port();
        return {std::min(a, b), std::max(a, b)};
      }
    }
  }
  uint16_t port() {
    const uint16_t pool[] = {0, 22, 53, 80, 443, 1024, 8000, 8080, 40000, 65535};
    uint16_t p = pool[pick(10)];
    return pick(2) ? p : static_cast<uint16_t>(p + pick(3));
  }
  uint8_t proto() {
    const uint8_t pool[] = {1, 6, 17, 58, 47};
    return pool[pick(5)];
  }
  uint16_t vlan() { return static_cast<uint16_t>(pick(3) == 0 ? pick(4096) : pick(3)); }

  AclRule rule(const std::vector<ZoneConfig>& zones) {
    AclRule r;
    r.zone = zones[pick(zones.size())].name;
    uint32_t fam = pick(3);  // v4, v6 or no address
    if (fam < 2) {
      Family f = fam == 0 ? Family::kV4 : Family::kV6;
      r.src = prefix(f);
      r.dst = prefix(f);
    }
    if (pick(2)) r.proto = proto();
    r.sport = ports();
    r.dport = ports();
    if (pick(4) == 0) r.vlan = vlan();
    r.action = pick(2) ? Action::kPermit : Action::kDeny;
    r.log = pick(2);
    return r;
  }
  AclQuery query(size_t nzones) {
    AclQuery q;
    q.zone = static_cast<uint8_t>(pick(nzones));
    Family f = pick(2) ? Family::kV4 : Family::kV6;
    q.tuple.family = f;
    q.tuple.src = addr(f);
    q.tuple.dst = addr(f);
    q.tuple.sport = be16::from_host(port());
    q.tuple.dport = be16::from_host(port());
    q.tuple.proto = proto();
    q.tuple.vlan = vlan();
    return q;
  }
  uint32_t pick(size_t n) { return static_cast<uint32_t>(rng_() % n); }

 private:
  std::mt19937 rng_;
};

TEST(Acl, AgreesWithLinearReferenceOnRandomRules) {
  const std::vector<ZoneConfig> zones = {
      {"z0", Action::kDeny}, {"z1", Action::kPermit}, {"z2", Action::kDeny}};
  for (uint32_t seed : {1u, 2u, 3u}) {
    RandomAcl gen(seed);
    std::vector<AclRule> rules;
    for (int i = 0; i < 100; i++) rules.push_back(gen.rule(zones));
    std::string err;
    auto acl = Acl::build(rules, zones, &err);
    ASSERT_TRUE(acl) << err;
    ASSERT_EQ(acl->rule_count(), 100u);

    std::vector<AclQuery> queries;
    for (int i = 0; i < 10000; i++) queries.push_back(gen.query(zones.size()));
    std::vector<const AclQuery*> ptrs;
    for (auto& q : queries) ptrs.push_back(&q);
    std::vector<AclMatch> got(queries.size());
    acl->classify(ptrs.data(), static_cast<uint32_t>(ptrs.size()), got.data());

    int mismatches = 0, matched = 0;
    for (size_t i = 0; i < queries.size(); i++) {
      AclMatch want = reference(rules, zones, queries[i]);
      matched += want.rule >= 0;
      if (got[i].rule != want.rule || got[i].action != want.action || got[i].log != want.log) {
        if (++mismatches <= 5)
          ADD_FAILURE() << "seed " << seed << " query " << i << " zone "
                        << int(queries[i].zone) << " " << to_string(queries[i].tuple)
                        << ": got rule " << got[i].rule << ", want rule " << want.rule;
      }
      if (i % 97 == 0) {  // the single-query path agrees with the bulk path
        AclMatch one = acl->classify_one(queries[i]);
        EXPECT_EQ(one.rule, got[i].rule);
      }
    }
    EXPECT_EQ(mismatches, 0) << "seed " << seed;
    // The pools are chosen so that a good share of queries hit a rule, not only defaults.
    EXPECT_GT(matched, 1000) << "seed " << seed;
  }
}

}  // namespace
}  // namespace baton
