// SPDX-License-Identifier: Apache-2.0
#include "config/config.h"

#include <gtest/gtest.h>

#include <fstream>

namespace baton {
namespace {

// The smallest valid file; the broken cases below are variations of it.
constexpr const char* kBase =
    "mode: l2\n"                                  // 1
    "ports:\n"                                    // 2
    "  - {name: a, device: d0, zone: z}\n"        // 3
    "  - {name: b, device: d1, zone: z}\n"        // 4
    "zones:\n"                                    // 5
    "  - {name: z}\n";                            // 6

TEST(ConfigLoad, ExampleFileLoads) {
  ConfigError err;
  auto c = load_config(BATON_SOURCE_DIR "/config/example.yaml", &err);
  ASSERT_TRUE(c) << err.to_string();
  EXPECT_EQ(c->instance, "a");
  EXPECT_EQ(c->mode, Mode::kL2);
  ASSERT_EQ(c->ports.size(), 2u);
  EXPECT_EQ(c->ports[0].name, "uplink");
  EXPECT_EQ(c->ports[0].device, "net_af_packet0,iface=veth-a-up");
  EXPECT_EQ(c->ports[1].zone, "inside");
  ASSERT_EQ(c->zones.size(), 2u);
  EXPECT_EQ(c->zones[0].default_action, Action::kDeny);
  EXPECT_EQ(c->zones[1].default_action, Action::kPermit);
  ASSERT_GE(c->acl.size(), 4u);
  const AclRule& r0 = c->acl[0];
  EXPECT_EQ(r0.zone, "outside");
  ASSERT_TRUE(r0.dst);
  EXPECT_EQ(r0.dst->to_string(), "10.1.0.0/16");
  EXPECT_EQ(r0.proto, 6);
  EXPECT_EQ(r0.dport.lo, 22);
  EXPECT_EQ(r0.dport.hi, 22);
  EXPECT_EQ(r0.sport.lo, 0);
  EXPECT_EQ(r0.sport.hi, 65535);
  EXPECT_TRUE(r0.log);
  EXPECT_GT(r0.line, 0);
  EXPECT_EQ(c->acl[3].dport.lo, 8000);
  EXPECT_EQ(c->acl[3].dport.hi, 8100);
  EXPECT_EQ(c->acl[3].vlan, 10);
  EXPECT_FALSE(c->acl[3].proto);
  EXPECT_EQ(c->conntrack.capacity, 1000000u);
  EXPECT_EQ(c->conntrack.timeouts.udp, 30u);
  EXPECT_EQ(c->conntrack.timeouts.tcp_close, 10u);  // default kept
  ASSERT_EQ(c->vms.size(), 2u);
  EXPECT_EQ(c->vms[0].mac.to_string(), "02:00:00:00:01:10");
  ASSERT_EQ(c->vms[0].ipv6.size(), 1u);
  EXPECT_EQ(c->vms[0].ipv6[0].to_string(Family::kV6), "fd00::10");
  ASSERT_TRUE(c->vms[0].profile.nat_public_ip);
  ASSERT_EQ(c->vms[0].profile.acl.size(), 3u);
  EXPECT_EQ(c->vms[0].profile.acl[0].zone, "web1");
  ASSERT_EQ(c->l3_addresses.size(), 2u);
  EXPECT_EQ(c->l3_addresses[0].prefix.to_string(), "192.0.2.1/24");  // host bits kept
  ASSERT_EQ(c->routes.size(), 2u);
  EXPECT_EQ(c->routes[0].via.to_string(Family::kV4), "192.0.2.254");
  EXPECT_EQ(c->metrics.listen, "127.0.0.1:9100");
  ASSERT_EQ(c->migration.peers.size(), 1u);
  EXPECT_EQ(c->migration.peers[0].address, "127.0.0.1:7401");
  EXPECT_EQ(c->migration.cert, BATON_SOURCE_DIR "/config/a.pem");
}

TEST(ConfigLoad, DefaultsApplyWhenSectionsAreAbsent) {
  ConfigError err;
  auto c = parse_config(kBase, "base.yaml", &err);
  ASSERT_TRUE(c) << err.to_string();
  EXPECT_EQ(c->file, "base.yaml");
  EXPECT_EQ(c->workers, 1);
  EXPECT_EQ(c->burst, 32u);
  EXPECT_EQ(c->zones[0].default_action, Action::kDeny);
  EXPECT_EQ(c->ports[0].rx_desc, 1024);
  EXPECT_EQ(c->control.listen, "127.0.0.1:9090");
  EXPECT_EQ(c->conntrack.capacity, 1u << 20);
}

TEST(ConfigLoad, MissingFileIsAnError) {
  ConfigError err;
  EXPECT_FALSE(load_config("/nonexistent/baton.yaml", &err));
  EXPECT_EQ(err.file, "/nonexistent/baton.yaml");
  EXPECT_NE(err.to_string().find("cannot open"), std::string::npos);
}

TEST(ConfigLoad, ErrorTextIsFileLineReason) {
  ConfigError e{"x.yaml", 7, "bad thing"};
  EXPECT_EQ(e.to_string(), "x.yaml:7: bad thing");
}

struct BadCase {
  const char* description;
  std::string yaml;
  int line;
  const char* reason;  // substring of the reason
};

std::string base_plus(const std::string& extra) { return std::string(kBase) + extra; }

const BadCase kBadCases[] = {
    {"unknown top-level key", base_plus("wrokers: 2\n"), 7, "unknown key 'wrokers'"},
    {"unknown key in a port", "mode: l2\nports:\n  - {name: a, devce: d0, zone: z}\n", 3,
     "unknown key 'devce'"},
    {"unknown key in a nested map", base_plus("conntrack:\n  timeouts:\n    tcp_estab: 5\n"), 9,
     "unknown key 'tcp_estab'"},
    {"unknown key in a rule", base_plus("acl:\n  - {zone: z, action: permit, dprot: 22}\n"), 8,
     "unknown key 'dprot'"},
    {"unknown key in a vm profile",
     base_plus("vms:\n  - name: v\n    mac: 02:00:00:00:00:01\n    profile: {qos: 5}\n"), 10,
     "unknown key 'qos'"},
    {"duplicate key", base_plus("workers: 1\nworkers: 2\n"), 8, "duplicate key 'workers'"},
    {"wrong type: map where a scalar goes", base_plus("workers: {a: 1}\n"), 7,
     "expected an integer"},
    {"wrong type: scalar where a list goes", base_plus("acl: permit\n"), 7, "expected a list"},
    {"workers out of range", base_plus("workers: 65\n"), 7, "out of range 1..64"},
    {"workers zero", base_plus("workers: 0\n"), 7, "out of range 1..64"},
    {"workers negative", base_plus("workers: -1\n"), 7, "expected an integer"},
    {"capacity zero", base_plus("conntrack: {capacity: 0}\n"), 7, "capacity: 0 is out of range"},
    {"timeout zero", base_plus("conntrack:\n  timeouts: {udp: 0}\n"), 8, "udp: 0 is out of range"},
    {"bad mode", "mode: l4\nports: []\n", 1, "expected l2 or l3"},
    {"bad boolean", base_plus("eal: {no_huge: maybe}\n"), 7, "expected true or false"},
    {"bad address in a rule", base_plus("acl:\n  - {zone: z, dst: 10.0.0.300/8, action: deny}\n"),
     8, "bad address prefix '10.0.0.300/8'"},
    {"prefix too long", base_plus("acl:\n  - {zone: z, src: 10.0.0.0/33, action: deny}\n"), 8,
     "bad address prefix"},
    {"host bits set", base_plus("acl:\n  - {zone: z, src: 10.1.0.5/16, action: deny}\n"), 8,
     "did you mean 10.1.0.0/16"},
    {"mixed families", base_plus("acl:\n  - {zone: z, src: 10.0.0.0/8, dst: \"fd00::/8\", action: "
                                 "deny}\n"),
     8, "different address families"},
    {"port out of range", base_plus("acl:\n  - {zone: z, dport: 70000, action: deny}\n"), 8,
     "out of range 0..65535"},
    {"port range reversed", base_plus("acl:\n  - {zone: z, dport: \"90-80\", action: deny}\n"), 8,
     "lo > hi"},
    {"bad protocol", base_plus("acl:\n  - {zone: z, proto: tcpp, action: deny}\n"), 8,
     "bad protocol 'tcpp'"},
    {"protocol number too big", base_plus("acl:\n  - {zone: z, proto: 256, action: deny}\n"), 8,
     "bad protocol"},
    {"vlan out of range", base_plus("acl:\n  - {zone: z, vlan: 4096, action: deny}\n"), 8,
     "out of range 0..4095"},
    {"rule without action", base_plus("acl:\n  - {zone: z, proto: tcp}\n"), 8,
     "missing required key 'action'"},
    {"bad action", base_plus("acl:\n  - {zone: z, action: allow}\n"), 8,
     "expected permit or deny"},
    {"rule references an unknown zone", base_plus("acl:\n  - {zone: dmz, action: deny}\n"), 8,
     "unknown zone 'dmz'"},
    {"port references an unknown zone",
     "mode: l2\nports:\n  - {name: a, device: d0, zone: z}\n  - {name: b, device: d1, zone: y}\n"
     "zones:\n  - {name: z}\n",
     4, "unknown zone 'y'"},
    {"port without device", "mode: l2\nports:\n  - {name: a, zone: z}\n", 3,
     "missing required key 'device'"},
    {"port without name", "ports:\n  - {device: d0, zone: z}\n", 2, "missing required key 'name'"},
    {"no ports at all", "mode: l3\nzones: [{name: z}]\n", 1, "at least one port"},
    {"mode l2 with one port", "mode: l2\nports:\n  - {name: a, device: d0, zone: z}\nzones: "
                              "[{name: z}]\n",
     1, "exactly 2 ports"},
    {"duplicate port name", "mode: l2\nports:\n  - {name: a, device: d0, zone: z}\n  - {name: "
                            "a, device: d1, zone: z}\nzones: [{name: z}]\n",
     4, "duplicate port 'a' (first defined at line 3)"},
    {"duplicate zone", base_plus("  - {name: z, default: permit}\n"), 7, "duplicate zone 'z'"},
    {"duplicate vm", base_plus("vms:\n  - {name: v, mac: \"02:00:00:00:00:01\"}\n  - {name: v, "
                               "mac: \"02:00:00:00:00:02\"}\n"),
     9, "duplicate vm 'v'"},
    {"duplicate vm mac", base_plus("vms:\n  - {name: v, mac: \"02:00:00:00:00:01\"}\n  - {name: "
                                   "w, mac: \"02:00:00:00:00:01\"}\n"),
     9, "duplicate vm MAC"},
    {"duplicate vm ip", base_plus("vms:\n  - {name: v, mac: \"02:00:00:00:00:01\", ipv4: "
                                  "[10.0.0.1]}\n  - {name: w, mac: \"02:00:00:00:00:02\", ipv4: "
                                  "[10.0.0.1]}\n"),
     9, "duplicate vm address '10.0.0.1'"},
    {"bad mac", base_plus("vms:\n  - {name: v, mac: \"02:00:00:00:01\"}\n"), 8,
     "bad MAC address"},
    {"multicast mac", base_plus("vms:\n  - {name: v, mac: \"01:00:5e:00:00:01\"}\n"), 8,
     "not a unicast MAC"},
    {"ipv6 in the ipv4 list", base_plus("vms:\n  - {name: v, mac: \"02:00:00:00:00:01\", ipv4: "
                                        "[\"fd00::1\"]}\n"),
     8, "is not an IPv4 address"},
    {"vm vlan out of range", base_plus("vms:\n  - {name: v, mac: \"02:00:00:00:00:01\", vlan: "
                                       "5000}\n"),
     8, "out of range 0..4095"},
    {"route to an unknown port",
     base_plus("l3:\n  routes:\n    - {prefix: 0.0.0.0/0, via: 192.0.2.1, port: wan}\n"), 9,
     "unknown port 'wan'"},
    {"route next hop of the wrong family",
     base_plus("l3:\n  routes:\n    - {prefix: 0.0.0.0/0, via: \"fe80::1\", port: a}\n"), 9,
     "different families"},
    {"bad listen address", base_plus("metrics: {listen: \"127.0.0.1\"}\n"), 7,
     "expected host:port"},
    {"listen port out of range", base_plus("control:\n  listen: 127.0.0.1:99999\n"), 8,
     "out of range"},
    {"duplicate peer", base_plus("migration:\n  enabled: false\n  peers:\n    - {name: b, "
                                 "address: 10.0.0.2:7400}\n    - {name: b, address: "
                                 "10.0.0.3:7400}\n"),
     11, "duplicate peer 'b'"},
    {"migration without TLS material",
     base_plus("migration:\n  listen: 127.0.0.1:7400\n"), 8, "cert is required"},
    {"headroom over 100", base_plus("migration: {enabled: false, headroom_percent: 101}\n"), 7,
     "out of range 0..100"},
    {"syntax error: unclosed flow map", "mode: l2\nports:\n  - {name: a, device: d0\n", 4,
     "YAML syntax error"},
    {"syntax error: bad indentation", "mode: l2\nports:\n  - name: a\n   device: d0\n", 4,
     "YAML syntax error"},
    {"empty file", "", 1, "empty"},
    {"top level is not a map", "- a\n- b\n", 1, "expected a map"},
};

class ConfigBad : public ::testing::TestWithParam<BadCase> {};

TEST_P(ConfigBad, IsRefusedWithLineAndReason) {
  const BadCase& c = GetParam();
  ConfigError err;
  auto cfg = parse_config(c.yaml, "bad.yaml", &err);
  ASSERT_FALSE(cfg) << c.description << ": was accepted";
  EXPECT_EQ(err.file, "bad.yaml");
  EXPECT_EQ(err.line, c.line) << c.description << ": " << err.to_string();
  EXPECT_NE(err.reason.find(c.reason), std::string::npos)
      << c.description << ": reason was: " << err.to_string();
}

INSTANTIATE_TEST_SUITE_P(Table, ConfigBad, ::testing::ValuesIn(kBadCases),
                         [](const ::testing::TestParamInfo<BadCase>& i) {
                           std::string n = i.param.description;
                           for (char& ch : n)
                             if (!isalnum(static_cast<unsigned char>(ch))) ch = '_';
                           return n + "_" + std::to_string(i.index);
                         });

TEST(Prefix, ParsesNormalisesAndContains) {
  auto p = Prefix::parse("10.1.2.3/16");
  ASSERT_TRUE(p);
  EXPECT_EQ(p->to_string(), "10.1.0.0/16");
  Family f;
  EXPECT_TRUE(p->contains(*IpAddr::parse("10.1.255.1", &f), Family::kV4));
  EXPECT_FALSE(p->contains(*IpAddr::parse("10.2.0.1", &f), Family::kV4));
  auto h = Prefix::parse("1.2.3.4");
  ASSERT_TRUE(h);
  EXPECT_EQ(h->len, 32);
  auto any6 = Prefix::parse("::/0");
  ASSERT_TRUE(any6);
  EXPECT_EQ(any6->family, Family::kV6);
  EXPECT_TRUE(any6->contains(*IpAddr::parse("fd00::1", &f), Family::kV6));
  EXPECT_FALSE(any6->contains(*IpAddr::parse("10.0.0.1", &f), Family::kV4));
  auto p6 = Prefix::parse("fd00:1::/33");
  ASSERT_TRUE(p6);
  EXPECT_TRUE(p6->contains(*IpAddr::parse("fd00:1:7fff::1", &f), Family::kV6));
  EXPECT_FALSE(p6->contains(*IpAddr::parse("fd00:1:8000::1", &f), Family::kV6));
  EXPECT_FALSE(Prefix::parse("fd00::/129"));
  EXPECT_FALSE(Prefix::parse("10.0.0.0/"));
  EXPECT_FALSE(Prefix::parse("10.0.0.0/a"));
  EXPECT_FALSE(Prefix::parse("nope/8"));
}

}  // namespace
}  // namespace baton
