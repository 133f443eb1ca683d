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

std::string base_plus(const std::string& extra) { return std::string(kBase) + extra; }

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
  EXPECT_EQ(c->vms[0].profile.max_half_open, 256u);
  EXPECT_EQ(c->vms[1].profile.max_half_open, 0u);  // no limit
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
  EXPECT_EQ(c->conntrack.v6_capacity(), 1u << 18);  // a quarter of capacity unless given
  EXPECT_TRUE(c->conntrack.accounting);
  auto off = parse_config(base_plus("conntrack: {accounting: false}\n"), "off.yaml", &err);
  ASSERT_TRUE(off) << err.to_string();
  EXPECT_FALSE(off->conntrack.accounting);
  auto v4only = parse_config(base_plus("conntrack: {capacity: 1000, capacity_v6: 0}\n"), "v4.yaml", &err);
  ASSERT_TRUE(v4only) << err.to_string();
  EXPECT_EQ(v4only->conntrack.v6_capacity(), 0u);
  auto v6 = parse_config(base_plus("conntrack: {capacity: 1000, capacity_v6: 5000}\n"), "v6.yaml", &err);
  ASSERT_TRUE(v6) << err.to_string();
  EXPECT_EQ(v6->conntrack.v6_capacity(), 5000u);
}

// ---- nat and lb --------------------------------------------------------------------------

// A routed instance with one interface address and one VM; the nat/lb cases below add to it
// from line 11 on.
constexpr const char* kL3Base =
    "mode: l3\n"                                                     // 1
    "ports:\n"                                                       // 2
    "  - {name: wan, device: d0, zone: z}\n"                         // 3
    "  - {name: lan, device: d1, zone: z}\n"                         // 4
    "zones: [{name: z}]\n"                                           // 5
    "l3:\n"                                                          // 6
    "  addresses:\n"                                                 // 7
    "    - {port: wan, address: 192.0.2.1/24}\n"                     // 8
    "vms:\n"                                                         // 9
    "  - {name: v, mac: \"02:00:00:00:00:01\", ipv4: [10.1.0.9]}\n"; // 10

std::string l3_plus(const std::string& extra) { return std::string(kL3Base) + extra; }
// "nat:" on line 11, the caller's lines from 12.
std::string nat(const std::string& body) { return l3_plus("nat:\n" + body); }
// A pool 'p' with one backend (lines 11-13), "services:" on 14, the caller's lines from 15.
std::string svc(const std::string& services) {
  return l3_plus("lb:\n  pools:\n    - {name: p, backends: [{address: 10.2.0.1}]}\n"
                 "  services:\n" + services);
}

Config must_parse(const std::string& yaml) {
  ConfigError err;
  auto c = parse_config(yaml, "good.yaml", &err);
  EXPECT_TRUE(c) << err.to_string();
  return c ? *c : Config{};
}

std::string v4(const IpAddr& a) { return a.to_string(Family::kV4); }

TEST(ConfigNatLb, ExampleFileLoadsWithEveryKey) {
  ConfigError err;
  auto c = load_config(BATON_SOURCE_DIR "/config/nat-lb-example.yaml", &err);
  ASSERT_TRUE(c) << err.to_string();
  EXPECT_EQ(c->mode, Mode::kL3);
  const NatConfig& n = c->nat;
  EXPECT_EQ(n.mapping_timeout_s, 300u);
  EXPECT_EQ(n.capacity, 262144u);
  EXPECT_TRUE(n.hairpinning);
  ASSERT_EQ(n.snat.size(), 2u);
  const SnatRule& e = n.snat[0];
  EXPECT_EQ(e.name, "egress");
  EXPECT_EQ(e.source.to_string(), "10.1.0.0/16");
  ASSERT_EQ(e.exclude.size(), 1u);
  EXPECT_EQ(e.exclude[0].to_string(), "10.0.0.0/8");
  // Two addresses, a range of four and a /30 of four, in the order written.
  ASSERT_EQ(e.pool.size(), 10u);
  EXPECT_EQ(v4(e.pool[1]), "203.0.113.11");
  EXPECT_EQ(v4(e.pool[2]), "203.0.113.12");
  EXPECT_EQ(v4(e.pool[5]), "203.0.113.15");
  EXPECT_EQ(v4(e.pool[6]), "203.0.113.16");
  EXPECT_EQ(v4(e.pool[9]), "203.0.113.19");
  EXPECT_EQ(e.ports.lo, 2048);
  EXPECT_EQ(e.ports.hi, 65535);
  EXPECT_EQ(e.block_size, 64);
  EXPECT_EQ(e.max_blocks_per_host, 16);
  EXPECT_EQ(e.mapping, NatBehavior::kEndpointIndependent);
  EXPECT_EQ(e.filtering, NatBehavior::kAddressAndPortDependent);
  EXPECT_GT(e.line, 0);
  const SnatRule& lab = n.snat[1];
  ASSERT_EQ(lab.pool.size(), 1u);  // a bare scalar is a one-item pool
  EXPECT_EQ(v4(lab.pool[0]), "203.0.113.20");
  EXPECT_EQ(lab.exclude.size(), 1u);
  EXPECT_EQ(lab.exclude[0].to_string(), "10.2.0.0/16");  // default: its own source
  EXPECT_EQ(lab.block_size, 128);
  EXPECT_EQ(lab.mapping, NatBehavior::kAddressDependent);
  EXPECT_EQ(lab.filtering, NatBehavior::kEndpointIndependent);
  ASSERT_EQ(n.static_nat.size(), 1u);
  EXPECT_EQ(v4(n.static_nat[0].inside), "10.1.0.5");
  EXPECT_EQ(v4(n.static_nat[0].outside), "203.0.113.50");
  ASSERT_EQ(n.port_forward.size(), 2u);
  EXPECT_EQ(n.port_forward[0].proto, 6);
  EXPECT_EQ(v4(n.port_forward[0].outside), "203.0.113.11");
  EXPECT_EQ(n.port_forward[0].outside_port, 443);
  EXPECT_EQ(v4(n.port_forward[0].inside), "10.1.0.6");
  EXPECT_EQ(n.port_forward[0].inside_port, 8443);
  EXPECT_EQ(n.port_forward[1].proto, 17);

  const LbConfig& lb = c->lb;
  EXPECT_EQ(lb.sticky_capacity, 65536u);
  ASSERT_EQ(lb.pools.size(), 4u);
  const PoolConfig& web = lb.pools[0];
  ASSERT_EQ(web.backends.size(), 3u);
  EXPECT_EQ(v4(web.backends[0].address), "10.2.0.11");
  EXPECT_EQ(web.backends[0].port, 8080);
  EXPECT_EQ(web.backends[0].weight, 3u);
  EXPECT_EQ(web.backends[1].weight, 1u);
  EXPECT_EQ(web.backends[2].state, BackendState::kDraining);
  EXPECT_EQ(web.health.kind, HealthCheckKind::kHttp);
  EXPECT_EQ(web.health.interval_ms, 2000u);
  EXPECT_EQ(web.health.timeout_ms, 1000u);
  EXPECT_EQ(web.health.rise, 2);
  EXPECT_EQ(web.health.fall, 3);
  EXPECT_EQ(web.health.http_path, "/healthz");
  EXPECT_EQ(web.health.http_host, "www.example");
  EXPECT_EQ(web.health.expect_lo, 200);
  EXPECT_EQ(web.health.expect_hi, 399);
  EXPECT_EQ(lb.pools[1].backends[0].port, 0);  // the service's port
  EXPECT_EQ(lb.pools[1].health.kind, HealthCheckKind::kTcp);
  EXPECT_EQ(lb.pools[2].backends[1].state, BackendState::kDown);
  EXPECT_EQ(lb.pools[3].health.kind, HealthCheckKind::kNone);

  ASSERT_EQ(lb.services.size(), 3u);
  const ServiceConfig& s = lb.services[0];
  EXPECT_EQ(s.name, "web");
  EXPECT_EQ(v4(s.vip), "198.51.100.10");
  EXPECT_EQ(s.proto, 6);
  EXPECT_EQ(s.port, 80);
  EXPECT_EQ(s.mode, LbMode::kL7);
  ASSERT_EQ(s.local_addresses.size(), 2u);
  EXPECT_EQ(v4(s.local_addresses[1]), "198.51.100.21");
  EXPECT_EQ(s.pool, "web");
  EXPECT_EQ(s.backup_pool, "web-backup");
  EXPECT_EQ(s.table_size, 65537u);
  EXPECT_EQ(s.sticky.method, StickyMethod::kCookie);
  EXPECT_EQ(s.sticky.name, "SESSIONID");  // cookie names keep their case
  EXPECT_EQ(s.sticky.timeout_s, 600u);
  EXPECT_FALSE(s.sticky.on_backup);
  EXPECT_FALSE(s.sticky.timeout_active_conns);
  EXPECT_EQ(s.max_request_head, 8192u);
  ASSERT_EQ(s.l7_rules.size(), 3u);
  EXPECT_EQ(s.l7_rules[0].host, "api.example");
  EXPECT_EQ(s.l7_rules[0].path_prefix, "/v1");
  EXPECT_EQ(s.l7_rules[0].pool, "api");
  EXPECT_EQ(s.l7_rules[1].header_name, "x-canary");  // header names compare case-insensitively
  EXPECT_EQ(s.l7_rules[1].header_value, "1");
  EXPECT_EQ(s.l7_rules[2].cookie_name, "backend");
  EXPECT_EQ(s.l7_rules[2].cookie_value, "api");
  const ServiceConfig& tls = lb.services[1];
  EXPECT_EQ(tls.mode, LbMode::kFullNat);
  EXPECT_EQ(tls.table_size, 1009u);
  EXPECT_EQ(tls.sticky.method, StickyMethod::kSourcePrefix);
  EXPECT_EQ(tls.sticky.prefix_len, 24);
  EXPECT_TRUE(tls.sticky.timeout_active_conns);
  const ServiceConfig& dns = lb.services[2];
  EXPECT_EQ(dns.proto, 17);
  EXPECT_EQ(dns.mode, LbMode::kNat);
  EXPECT_TRUE(dns.local_addresses.empty());
  EXPECT_EQ(dns.sticky.method, StickyMethod::kSourceAddress);
  EXPECT_EQ(dns.sticky.timeout_s, 60u);
}

TEST(ConfigNatLb, DefaultsApplyToTheSmallestRuleAndService) {
  Config c = must_parse(l3_plus(
      "nat:\n"
      "  snat:\n"
      "    - {name: e, source: 10.1.0.0/16, pool: [203.0.113.1]}\n"
      "    - {name: f, source: 10.3.0.0/16, pool: [203.0.113.2], exclude: [192.0.2.0/24]}\n"
      "lb:\n"
      "  pools:\n"
      "    - {name: p, backends: [{address: 10.2.0.1}]}\n"
      "  services:\n"
      "    - {name: s, vip: 198.51.100.1, port: 80, pool: p}\n"));
  EXPECT_EQ(c.nat.mapping_timeout_s, 300u);
  EXPECT_EQ(c.nat.capacity, 1u << 18);
  EXPECT_TRUE(c.nat.hairpinning);
  ASSERT_EQ(c.nat.snat.size(), 2u);
  const SnatRule& r = c.nat.snat[0];
  ASSERT_EQ(r.exclude.size(), 1u);
  EXPECT_EQ(r.exclude[0].to_string(), "10.1.0.0/16");
  ASSERT_EQ(c.nat.snat[1].exclude.size(), 1u);  // written: replaces the default
  EXPECT_EQ(c.nat.snat[1].exclude[0].to_string(), "192.0.2.0/24");
  EXPECT_EQ(r.ports.lo, 1024);
  EXPECT_EQ(r.ports.hi, 65535);
  EXPECT_EQ(r.block_size, 64);
  EXPECT_EQ(r.max_blocks_per_host, 16);
  EXPECT_EQ(r.mapping, NatBehavior::kEndpointIndependent);      // RFC 4787 REQ-1
  EXPECT_EQ(r.filtering, NatBehavior::kAddressAndPortDependent);
  EXPECT_EQ(c.lb.sticky_capacity, 1u << 16);
  const BackendConfig& b = c.lb.pools[0].backends[0];
  EXPECT_EQ(b.port, 0);
  EXPECT_EQ(b.weight, 1u);
  EXPECT_EQ(b.state, BackendState::kUp);
  EXPECT_EQ(c.lb.pools[0].health.kind, HealthCheckKind::kNone);
  const ServiceConfig& s = c.lb.services[0];
  EXPECT_EQ(s.proto, 6);
  EXPECT_EQ(s.mode, LbMode::kNat);
  EXPECT_EQ(s.table_size, 65537u);
  EXPECT_EQ(s.sticky.method, StickyMethod::kNone);
  EXPECT_TRUE(s.backup_pool.empty());
}

TEST(ConfigNatLb, DefaultBlockSizeShrinksToANarrowPortRange) {
  Config c = must_parse(
      nat("  snat:\n    - {name: e, source: 10.1.0.0/16, pool: [203.0.113.1], ports: "
          "5000-5009}\n"));
  ASSERT_EQ(c.nat.snat.size(), 1u);
  EXPECT_EQ(c.nat.snat[0].block_size, 10);
}

// One address may have several owners as long as no protocol and port has two.
TEST(ConfigNatLb, OwnersOfDifferentPortsOfOneAddressAreAccepted) {
  Config c = must_parse(l3_plus(
      "nat:\n"
      "  snat:\n"
      "    - {name: e, source: 10.1.0.0/16, pool: [203.0.113.1], ports: 1024-32767}\n"
      "  port_forward:\n"
      "    - {proto: tcp, outside: 203.0.113.1:22, inside: 10.1.0.5:22}\n"
      "    - {proto: udp, outside: 203.0.113.1:22, inside: 10.1.0.5:22}\n"
      "lb:\n"
      "  pools:\n"
      "    - {name: p, backends: [{address: 10.2.0.1}]}\n"
      "  services:\n"
      "    - {name: a, vip: 203.0.113.1, port: 80, pool: p}\n"
      "    - {name: b, vip: 203.0.113.1, proto: udp, port: 80, pool: p}\n"
      "    - {name: c, vip: 203.0.113.1, port: 443, pool: p}\n"));
  EXPECT_EQ(c.nat.snat.size(), 1u);
  EXPECT_EQ(c.nat.port_forward.size(), 2u);
  EXPECT_EQ(c.lb.services.size(), 3u);
}

TEST(ConfigNatLb, NatTunablesWithoutRulesAreAcceptedInModeL2) {
  Config c = must_parse(base_plus("nat: {capacity: 1024}\nlb: {sticky_capacity: 1024}\n"));
  EXPECT_FALSE(c.nat.enabled());
  EXPECT_EQ(c.nat.capacity, 1024u);
  EXPECT_FALSE(c.lb.enabled());
}

TEST(ConfigNatLb, MaglevTableMustHoldAHundredSlotsPerBackend) {
  auto with_backends = [](int n) {
    std::string backends;
    for (int i = 1; i <= n; i++)
      backends += "        - {address: 10.2.0." + std::to_string(i) + "}\n";
    return l3_plus("lb:\n  pools:\n    - name: p\n      backends:\n" + backends +
                   "  services:\n    - {name: s, vip: 198.51.100.1, port: 80, pool: p, "
                   "table_size: 1009}\n");
  };
  ConfigError err;
  EXPECT_TRUE(parse_config(with_backends(10), "ok.yaml", &err)) << err.to_string();
  EXPECT_FALSE(parse_config(with_backends(11), "bad.yaml", &err));
  EXPECT_EQ(err.line, 16 + 11);  // the service, after 11 backend lines
  EXPECT_NE(err.reason.find("too small for pool 'p' (11 backends"), std::string::npos)
      << err.to_string();
}

TEST(ConfigLoad, MigrationResumeKeysLoadAndDefault) {
  Config d = must_parse(kBase);
  EXPECT_EQ(d.migration.resume_window_bytes, 64u << 20);
  EXPECT_EQ(d.migration.resume_grace_ms, 10000u);
  Config c = must_parse(base_plus(
      "migration: {enabled: false, resume_window_bytes: 2097152, resume_grace_ms: 0}\n"));
  EXPECT_EQ(c.migration.resume_window_bytes, 2u << 20);
  EXPECT_EQ(c.migration.resume_grace_ms, 0u);  // 0 turns resume off
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
    {"max_half_open negative",
     base_plus("vms:\n  - name: v\n    mac: 02:00:00:00:00:01\n    profile: {max_half_open: -3}\n"),
     10, "expected an integer"},
    {"duplicate key", base_plus("workers: 1\nworkers: 2\n"), 8, "duplicate key 'workers'"},
    {"wrong type: map where a scalar goes", base_plus("workers: {a: 1}\n"), 7,
     "expected an integer"},
    {"wrong type: scalar where a list goes", base_plus("acl: permit\n"), 7, "expected a list"},
    {"workers out of range", base_plus("workers: 65\n"), 7, "out of range 1..64"},
    {"workers zero", base_plus("workers: 0\n"), 7, "out of range 1..64"},
    {"workers negative", base_plus("workers: -1\n"), 7, "expected an integer"},
    {"capacity zero", base_plus("conntrack: {capacity: 0}\n"), 7, "capacity: 0 is out of range"},
    {"timeout zero", base_plus("conntrack:\n  timeouts: {udp: 0}\n"), 8, "udp: 0 is out of range"},
    {"capacity_v6 negative", base_plus("conntrack: {capacity_v6: -1}\n"), 7, "capacity_v6"},
    {"accounting not a boolean", base_plus("conntrack: {accounting: maybe}\n"), 7, "accounting"},
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
    {"resume window under one MiB",
     base_plus("migration: {enabled: false, resume_window_bytes: 1000}\n"), 7, "out of range"},
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

// Each snat rule on one line, after "  snat:" on line 12.
std::string snat(const std::string& rules) { return nat("  snat:\n" + rules); }
constexpr const char* kEgress = "    - {name: e, source: 10.1.0.0/16, pool: [203.0.113.1]}\n";  // 13

const BadCase kNatLbBadCases[] = {
    // nat
    {"nat in mode l2", base_plus("nat:\n  static:\n    - {inside: 10.1.0.5, outside: "
                                 "203.0.113.5}\n"),
     1, "cannot run nat: it needs mode: l3"},
    {"unknown key in nat", nat("  hairpin: true\n"), 12, "unknown key 'hairpin'"},
    {"mapping timeout below RFC 4787 REQ-5", nat("  mapping_timeout: 60\n"), 12,
     "RFC 4787 REQ-5 needs at least 120 seconds"},
    {"nat capacity zero", nat("  capacity: 0\n"), 12, "out of range 1..16777216"},
    {"unknown key in an snat rule",
     snat("    - {name: e, source: 10.1.0.0/16, pool: [203.0.113.1], mapng: x}\n"), 13,
     "unknown key 'mapng'"},
    {"snat rule without pool", snat("    - {name: e, source: 10.1.0.0/16}\n"), 13,
     "missing required key 'pool'"},
    {"snat rule without source", snat("    - {name: e, pool: [203.0.113.1]}\n"), 13,
     "missing required key 'source'"},
    {"snat rule without name", snat("    - {source: 10.1.0.0/16, pool: [203.0.113.1]}\n"), 13,
     "missing required key 'name'"},
    {"duplicate snat rule", snat(std::string(kEgress) +
                                 "    - {name: e, source: 10.3.0.0/16, pool: [203.0.113.2]}\n"),
     14, "duplicate snat rule 'e' (first defined at line 13)"},
    {"IPv6 snat source", snat("    - {name: e, source: \"fd00::/64\", pool: [203.0.113.1]}\n"), 13,
     "is an IPv6 prefix; NAT and the load balancer are IPv4 only"},
    {"IPv6 exclude", snat("    - {name: e, source: 10.1.0.0/16, exclude: [\"::/0\"], pool: "
                          "[203.0.113.1]}\n"),
     13, "IPv4 only"},
    {"IPv6 pool address", snat("    - {name: e, source: 10.1.0.0/16, pool: [\"2001:db8::1\"]}\n"),
     13, "'2001:db8::1' is an IPv6 address"},
    {"pool prefix with host bits",
     snat("    - {name: e, source: 10.1.0.0/16, pool: [203.0.113.9/30]}\n"), 13,
     "did you mean 203.0.113.8/30"},
    {"pool range reversed",
     snat("    - {name: e, source: 10.1.0.0/16, pool: [\"203.0.113.20-203.0.113.10\"]}\n"), 13,
     "has first > last"},
    {"pool range with a bad end",
     snat("    - {name: e, source: 10.1.0.0/16, pool: [\"203.0.113.20-203.0.113\"]}\n"), 13,
     "bad IP address '203.0.113'"},
    {"pool expands past the cap",
     snat("    - {name: e, source: 10.1.0.0/16, pool: [203.0.112.0/22, 203.0.116.1]}\n"), 13,
     "more than 1024 addresses"},
    {"pool lists an address twice",
     snat("    - {name: e, source: 10.1.0.0/16, pool: [203.0.113.1, 203.0.113.0/30]}\n"), 13,
     "203.0.113.1 is already in this pool"},
    {"pool address not unicast", snat("    - {name: e, source: 10.1.0.0/16, pool: [224.0.0.1]}\n"),
     13, "not a unicast host address"},
    {"pool prefix in loopback",
     snat("    - {name: e, source: 10.1.0.0/16, pool: [127.0.0.0/30]}\n"), 13,
     "127.0.0.0 is not a unicast host address"},
    {"empty pool", snat("    - {name: e, source: 10.1.0.0/16, pool: []}\n"), 13,
     "at least one address"},
    {"bad mapping behaviour",
     snat("    - {name: e, source: 10.1.0.0/16, pool: [203.0.113.1], mapping: full-cone}\n"), 13,
     "expected one of endpoint-independent, address-dependent, address-and-port-dependent"},
    {"block larger than the port range",
     snat("    - {name: e, source: 10.1.0.0/16, pool: [203.0.113.1], ports: 1024-1087, "
          "block_size: 128}\n"),
     13, "128 is larger than the port range 1024-1087 (64 ports)"},
    {"block size zero",
     snat("    - {name: e, source: 10.1.0.0/16, pool: [203.0.113.1], block_size: 0}\n"), 13,
     "out of range 1..32768"},
    {"snat port range includes port 0",
     snat("    - {name: e, source: 10.1.0.0/16, pool: [203.0.113.1], ports: 0-1023}\n"), 13,
     "port '0-1023' is out of range 1..65535"},
    {"two snat rules share ports of one address",
     snat(std::string(kEgress) + "    - {name: f, source: 10.3.0.0/16, pool: [203.0.113.1], "
                                 "ports: 60000-65535}\n"),
     14, "nat.snat[1].pool[0] 203.0.113.1 ports 60000-65535 collides with nat.snat[0].pool[0] "
         "203.0.113.1 ports 1024-65535 (line 13)"},
    {"two snat rules share an address on disjoint ports",
     snat("    - {name: e, source: 10.1.0.0/16, pool: [203.0.113.1], ports: 1024-2047}\n"
          "    - {name: f, source: 10.3.0.0/16, pool: [203.0.113.1], ports: 2048-4095}\n"),
     14, "nat.snat[1].pool[0] 203.0.113.1 ports 2048-4095 collides with nat.snat[0].pool[0]"},
    {"empty exclude list",
     snat("    - {name: e, source: 10.1.0.0/16, exclude: [], pool: [203.0.113.1]}\n"), 13,
     "exclude: must not be empty (leave it out to exclude the rule's own source)"},
    {"snat pool address is an interface address",
     snat("    - {name: e, source: 10.1.0.0/16, pool: [192.0.2.1]}\n"), 13,
     "collides with l3.addresses[0] (interface) 192.0.2.1"},
    {"static outside address in an snat pool",
     nat(std::string("  snat:\n") + kEgress +
         "  static:\n    - {inside: 10.1.0.5, outside: 203.0.113.1}\n"),
     15, "nat.static[0].outside 203.0.113.1 collides with nat.snat[0].pool[0]"},
    {"static outside address is a VM's address",
     nat("  static:\n    - {inside: 10.1.0.5, outside: 10.1.0.9}\n"), 13,
     "collides with vm 'v' 10.1.0.9"},
    {"static without outside", nat("  static:\n    - {inside: 10.1.0.5}\n"), 13,
     "missing required key 'outside'"},
    {"static inside twice", nat("  static:\n    - {inside: 10.1.0.5, outside: 203.0.113.5}\n"
                                "    - {inside: 10.1.0.5, outside: 203.0.113.6}\n"),
     14, "duplicate static NAT inside address '10.1.0.5' (first defined at line 13)"},
    {"static outside twice", nat("  static:\n    - {inside: 10.1.0.5, outside: 203.0.113.5}\n"
                                 "    - {inside: 10.1.0.6, outside: 203.0.113.5}\n"),
     14, "nat.static[1].outside 203.0.113.5 collides with nat.static[0].outside"},
    {"IPv6 static inside", nat("  static:\n    - {inside: \"fd00::5\", outside: 203.0.113.5}\n"),
     13, "IPv4 only"},
    {"port forward on a static outside address",
     nat("  static:\n    - {inside: 10.1.0.5, outside: 203.0.113.5}\n"
         "  port_forward:\n    - {proto: tcp, outside: 203.0.113.5:80, inside: 10.1.0.6:80}\n"),
     15, "nat.port_forward[0].outside 203.0.113.5 tcp/80 collides with nat.static[0].outside"},
    {"port forward inside an snat port range",
     nat(std::string("  snat:\n") + kEgress +
         "  port_forward:\n    - {proto: udp, outside: 203.0.113.1:5060, inside: 10.1.0.6:5060}\n"),
     15, "203.0.113.1 udp/5060 collides with nat.snat[0].pool[0] 203.0.113.1 ports 1024-65535"},
    {"port forward twice",
     nat("  port_forward:\n    - {outside: 203.0.113.1:80, inside: 10.1.0.6:80}\n"
         "    - {proto: tcp, outside: 203.0.113.1:80, inside: 10.1.0.7:80}\n"),
     14, "collides with nat.port_forward[0].outside 203.0.113.1 tcp/80 (line 13)"},
    {"port forward of icmp",
     nat("  port_forward:\n    - {proto: icmp, outside: 203.0.113.1:80, inside: 10.1.0.6:80}\n"),
     13, "expected one of tcp, udp, got 'icmp'"},
    {"port forward without a port",
     nat("  port_forward:\n    - {outside: 203.0.113.1, inside: 10.1.0.6:80}\n"), 13,
     "expected IPv4 address:port"},
    {"port forward to port 0",
     nat("  port_forward:\n    - {outside: 203.0.113.1:80, inside: 10.1.0.6:0}\n"), 13,
     "port in '10.1.0.6:0' is out of range 1..65535"},
    {"IPv6 port forward",
     nat("  port_forward:\n    - {outside: \"[2001:db8::1]:80\", inside: 10.1.0.6:80}\n"), 13,
     "is an IPv6 endpoint; NAT and the load balancer are IPv4 only"},
    {"port forward without inside", nat("  port_forward:\n    - {outside: 203.0.113.1:80}\n"), 13,
     "missing required key 'inside'"},

    // lb: pools
    {"lb in mode l2", base_plus("lb:\n  pools: [{name: p, backends: [{address: 10.2.0.1}]}]\n"
                                "  services: [{name: s, vip: 198.51.100.1, port: 80, pool: "
                                "p}]\n"),
     1, "cannot run lb: it needs mode: l3"},
    {"unknown key in lb", l3_plus("lb:\n  sticky_table: 5\n"), 12, "unknown key 'sticky_table'"},
    {"pool without backends", l3_plus("lb:\n  pools:\n    - {name: p, backends: []}\n"), 13,
     "at least one backend is required"},
    {"pool without name", l3_plus("lb:\n  pools:\n    - {backends: [{address: 10.2.0.1}]}\n"), 13,
     "missing required key 'name'"},
    {"duplicate pool", l3_plus("lb:\n  pools:\n    - {name: p, backends: [{address: 10.2.0.1}]}\n"
                               "    - {name: p, backends: [{address: 10.2.0.2}]}\n"),
     14, "duplicate pool 'p' (first defined at line 13)"},
    {"backend weight zero",
     l3_plus("lb:\n  pools:\n    - {name: p, backends: [{address: 10.2.0.1, weight: 0}]}\n"), 13,
     "weight 0 is not allowed (1..65535); to stop new connections use state: down or draining"},
    {"backend weight too big",
     l3_plus("lb:\n  pools:\n    - {name: p, backends: [{address: 10.2.0.1, weight: 65536}]}\n"),
     13, "65536 is out of range 1..65535"},
    {"backend bad state",
     l3_plus("lb:\n  pools:\n    - {name: p, backends: [{address: 10.2.0.1, state: drain}]}\n"),
     13, "expected one of up, down, draining, got 'drain'"},
    {"backend listed twice",
     l3_plus("lb:\n  pools:\n    - name: p\n      backends:\n        - {address: 10.2.0.1, port: "
             "80}\n        - {address: 10.2.0.1, port: 80}\n"),
     16, "duplicate backend '10.2.0.1:80' (first defined at line 15)"},
    {"IPv6 backend",
     l3_plus("lb:\n  pools:\n    - {name: p, backends: [{address: \"fd00::1\"}]}\n"), 13,
     "IPv4 only"},
    {"health check without type",
     l3_plus("lb:\n  pools:\n    - {name: p, backends: [{address: 10.2.0.1}], health_check: "
             "{rise: 2}}\n"),
     13, "missing required key 'type'"},
    {"http keys on a tcp health check",
     l3_plus("lb:\n  pools:\n    - {name: p, backends: [{address: 10.2.0.1}], health_check: "
             "{type: tcp, path: /}}\n"),
     13, "path: only for health_check type http"},
    {"timing keys on health check none",
     l3_plus("lb:\n  pools:\n    - {name: p, backends: [{address: 10.2.0.1}], health_check: "
             "{type: none, interval_ms: 500}}\n"),
     13, "interval_ms: only for health_check type tcp or http"},
    {"health check timeout longer than its interval",
     l3_plus("lb:\n  pools:\n    - {name: p, backends: [{address: 10.2.0.1}], health_check: "
             "{type: tcp, interval_ms: 500, timeout_ms: 800}}\n"),
     13, "timeout_ms (800) must not exceed interval_ms (500)"},
    {"health check expects an impossible status",
     l3_plus("lb:\n  pools:\n    - {name: p, backends: [{address: 10.2.0.1}], health_check: "
             "{type: http, expect: 200-700}}\n"),
     13, "status code '200-700' is out of range 100..599"},
    {"health check path without slash",
     l3_plus("lb:\n  pools:\n    - {name: p, backends: [{address: 10.2.0.1}], health_check: "
             "{type: http, path: health}}\n"),
     13, "must start with '/'"},

    // lb: services
    {"service without vip", svc("    - {name: s, port: 80, pool: p}\n"), 15,
     "missing required key 'vip'"},
    {"service without port", svc("    - {name: s, vip: 198.51.100.1, pool: p}\n"), 15,
     "missing required key 'port'"},
    {"service without pool", svc("    - {name: s, vip: 198.51.100.1, port: 80}\n"), 15,
     "missing required key 'pool'"},
    {"IPv6 vip", svc("    - {name: s, vip: \"2001:db8::10\", port: 80, pool: p}\n"), 15,
     "is an IPv6 address; NAT and the load balancer are IPv4 only"},
    {"service with an unknown pool", svc("    - {name: s, vip: 198.51.100.1, port: 80, pool: q}\n"),
     15, "unknown pool 'q' (pools: p)"},
    {"service with an unknown backup pool",
     svc("    - {name: s, vip: 198.51.100.1, port: 80, pool: p, backup_pool: q}\n"), 15,
     "unknown pool 'q'"},
    {"backup pool is the pool",
     svc("    - {name: s, vip: 198.51.100.1, port: 80, pool: p, backup_pool: p}\n"), 15,
     "the backup pool must differ from pool 'p'"},
    {"duplicate service", svc("    - {name: s, vip: 198.51.100.1, port: 80, pool: p}\n"
                              "    - {name: s, vip: 198.51.100.2, port: 80, pool: p}\n"),
     16, "duplicate service 's' (first defined at line 15)"},
    {"two services on one vip, protocol and port",
     svc("    - {name: s, vip: 198.51.100.1, port: 80, pool: p}\n"
         "    - {name: t, vip: 198.51.100.1, port: 80, pool: p, mode: fullnat, "
         "local_addresses: [198.51.100.9]}\n"),
     16, "lb.services[1].vip 198.51.100.1 tcp/80 collides with lb.services[0].vip 198.51.100.1 "
         "tcp/80 (line 15)"},
    {"vip on a static outside address",
     l3_plus("nat:\n  static:\n    - {inside: 10.1.0.5, outside: 198.51.100.1}\n"
             "lb:\n  pools:\n    - {name: p, backends: [{address: 10.2.0.1}]}\n"
             "  services:\n    - {name: s, vip: 198.51.100.1, port: 80, pool: p}\n"),
     18, "collides with nat.static[0].outside 198.51.100.1 (line 13)"},
    {"port forward on a vip's port",
     l3_plus("lb:\n  pools:\n    - {name: p, backends: [{address: 10.2.0.1}]}\n"
             "  services:\n    - {name: s, vip: 198.51.100.1, port: 80, pool: p}\n"
             "nat:\n  port_forward:\n    - {outside: 198.51.100.1:80, inside: 10.1.0.6:80}\n"),
     18, "nat.port_forward[0].outside 198.51.100.1 tcp/80 collides with lb.services[0].vip"},
    {"vip on an interface address",
     svc("    - {name: s, vip: 192.0.2.1, port: 80, pool: p}\n"), 15,
     "collides with l3.addresses[0] (interface) 192.0.2.1"},
    {"vip is not unicast", svc("    - {name: s, vip: 255.255.255.255, port: 80, pool: p}\n"), 15,
     "not a unicast host address"},
    {"backend is a vip",
     l3_plus("lb:\n  pools:\n    - {name: p, backends: [{address: 198.51.100.1}]}\n"
             "  services:\n    - {name: s, vip: 198.51.100.1, port: 80, pool: p}\n"),
     13, "backend 198.51.100.1 is batond's own lb.services[0].vip"},
    {"bad service mode", svc("    - {name: s, vip: 198.51.100.1, port: 80, pool: p, mode: dsr}\n"),
     15, "expected one of nat, fullnat, l7, got 'dsr'"},
    {"mode l7 over udp",
     svc("    - {name: s, vip: 198.51.100.1, proto: udp, port: 80, pool: p, mode: l7, "
         "local_addresses: [198.51.100.9]}\n"),
     15, "mode l7 (HTTP/1.1) needs proto tcp"},
    {"service protocol icmp", svc("    - {name: s, vip: 198.51.100.1, proto: icmp, port: 80, "
                                  "pool: p}\n"),
     15, "expected one of tcp, udp"},
    {"fullnat without local addresses",
     svc("    - {name: s, vip: 198.51.100.1, port: 80, pool: p, mode: fullnat}\n"), 15,
     "mode fullnat needs local_addresses"},
    {"l7 with an empty local address list",
     svc("    - {name: s, vip: 198.51.100.1, port: 80, pool: p, mode: l7, local_addresses: []}\n"),
     15, "at least one address is required"},
    {"local addresses with mode nat",
     svc("    - {name: s, vip: 198.51.100.1, port: 80, pool: p, local_addresses: "
         "[198.51.100.9]}\n"),
     15, "only for mode fullnat or l7"},
    {"local address shared by two services",
     svc("    - {name: s, vip: 198.51.100.1, port: 80, pool: p, mode: fullnat, local_addresses: "
         "[198.51.100.9]}\n"
         "    - {name: t, vip: 198.51.100.1, port: 81, pool: p, mode: fullnat, local_addresses: "
         "[198.51.100.9]}\n"),
     16, "lb.services[1].local_addresses[0] 198.51.100.9 collides with "
         "lb.services[0].local_addresses[0]"},
    {"table size not prime",
     svc("    - {name: s, vip: 198.51.100.1, port: 80, pool: p, table_size: 65536}\n"), 15,
     "65536 is not prime"},
    {"table size too small",
     svc("    - {name: s, vip: 198.51.100.1, port: 80, pool: p, table_size: 997}\n"), 15,
     "out of range 1009..1000003"},
    {"cookie stickiness without l7",
     svc("    - {name: s, vip: 198.51.100.1, port: 80, pool: p, sticky: {method: cookie, name: "
         "SID}}\n"),
     15, "cookie stickiness reads the HTTP request and needs mode l7 (mode is nat)"},
    {"header stickiness without a name",
     svc("    - {name: s, vip: 198.51.100.1, port: 80, pool: p, mode: l7, local_addresses: "
         "[198.51.100.9], sticky: {method: header}}\n"),
     15, "method header needs name"},
    {"sticky cookie name is not a token",
     svc("    - {name: s, vip: 198.51.100.1, port: 80, pool: p, mode: l7, local_addresses: "
         "[198.51.100.9], sticky: {method: cookie, name: \"a b\"}}\n"),
     15, "'a b' is not an HTTP token"},
    {"source-prefix stickiness without prefix_len",
     svc("    - {name: s, vip: 198.51.100.1, port: 80, pool: p, sticky: {method: "
         "source-prefix}}\n"),
     15, "method source-prefix needs prefix_len (1..32)"},
    {"source-prefix stickiness with prefix_len 0",
     svc("    - {name: s, vip: 198.51.100.1, port: 80, pool: p, sticky: {method: source-prefix, "
         "prefix_len: 0}}\n"),
     15, "out of range 1..32"},
    {"prefix_len with source-address stickiness",
     svc("    - {name: s, vip: 198.51.100.1, port: 80, pool: p, sticky: {method: source-address, "
         "prefix_len: 24}}\n"),
     15, "prefix_len: only for method source-prefix"},
    {"sticky name with source-address stickiness",
     svc("    - {name: s, vip: 198.51.100.1, port: 80, pool: p, sticky: {method: source-address, "
         "name: SID}}\n"),
     15, "name: only for method cookie or header"},
    {"sticky without method",
     svc("    - {name: s, vip: 198.51.100.1, port: 80, pool: p, sticky: {timeout: 60}}\n"), 15,
     "missing required key 'method'"},
    {"sticky on backup without a backup pool",
     svc("    - {name: s, vip: 198.51.100.1, port: 80, pool: p, sticky: {method: source-address, "
         "on_backup: true}}\n"),
     15, "the service has no backup_pool"},
    {"rules without l7",
     svc("    - {name: s, vip: 198.51.100.1, port: 80, pool: p, rules: [{host: a, pool: p}]}\n"),
     15, "rules: only for mode l7 (mode is nat)"},
    {"max request head without l7",
     svc("    - {name: s, vip: 198.51.100.1, port: 80, pool: p, mode: fullnat, local_addresses: "
         "[198.51.100.9], max_request_head: 4096}\n"),
     15, "max_request_head: only for mode l7 (mode is fullnat)"},
    {"rule without a condition",
     svc("    - name: s\n      vip: 198.51.100.1\n      port: 80\n      pool: p\n      mode: l7\n"
         "      local_addresses: [198.51.100.9]\n      rules:\n        - {pool: p}\n"),
     22, "a rule needs at least one of host, path_prefix, header, cookie"},
    {"rule with an unknown pool",
     svc("    - name: s\n      vip: 198.51.100.1\n      port: 80\n      pool: p\n      mode: l7\n"
         "      local_addresses: [198.51.100.9]\n      rules:\n        - {host: a.example, pool: "
         "api}\n"),
     22, "unknown pool 'api'"},
    {"rule path without slash",
     svc("    - name: s\n      vip: 198.51.100.1\n      port: 80\n      pool: p\n      mode: l7\n"
         "      local_addresses: [198.51.100.9]\n      rules:\n        - {path_prefix: v1, pool: "
         "p}\n"),
     22, "must start with '/'"},
    {"rule header without value",
     svc("    - name: s\n      vip: 198.51.100.1\n      port: 80\n      pool: p\n      mode: l7\n"
         "      local_addresses: [198.51.100.9]\n      rules:\n        - {header: {name: X-A}, "
         "pool: p}\n"),
     22, "missing required key 'value'"},
    {"rule host with a space",
     svc("    - name: s\n      vip: 198.51.100.1\n      port: 80\n      pool: p\n      mode: l7\n"
         "      local_addresses: [198.51.100.9]\n      rules:\n        - {host: \"a b\", pool: "
         "p}\n"),
     22, "'a b' is not a host name"},
    {"max request head too small",
     svc("    - {name: s, vip: 198.51.100.1, port: 80, pool: p, mode: l7, local_addresses: "
         "[198.51.100.9], max_request_head: 100}\n"),
     15, "out of range 1024..65536"},
};

INSTANTIATE_TEST_SUITE_P(NatLb, ConfigBad, ::testing::ValuesIn(kNatLbBadCases),
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
