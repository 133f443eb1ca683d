// SPDX-License-Identifier: Apache-2.0
//
// The whole configuration as typed structs. load_config() parses a YAML file into these and
// validates all of it before anything is applied: a bad file is refused with file:line: reason
// and batond exits without touching a port. Fields marked [reload] may change on a reload; all
// others need a restart (there is no reload yet; the marks say what a reload would be allowed).
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "common/net_types.h"

namespace baton {

enum class Mode : uint8_t { kL2, kL3 };
enum class Action : uint8_t { kPermit, kDeny };

struct Prefix {
  IpAddr addr;      // network address (host bits zero)
  uint8_t len = 0;  // prefix length
  Family family = Family::kV4;
  bool contains(const IpAddr& a, Family f) const;
  std::string to_string() const;
  static std::optional<Prefix> parse(const std::string& s);  // "10.0.0.0/8", "::/0", "1.2.3.4"
};

struct PortRange {
  uint16_t lo = 0, hi = 65535;
};

struct PortConfig {
  std::string name;     // used by zones, routes and metrics labels
  std::string device;   // PCI address ("0000:03:00.0") or vdev ("net_af_packet0,iface=veth0")
  std::string zone;
  uint16_t rx_desc = 1024, tx_desc = 1024;
};

struct ZoneConfig {
  std::string name;
  Action default_action = Action::kDeny;  // [reload] new connections initiated from this zone
};

// One static ACL rule. Rules apply to the zone a connection is initiated from; first match wins.
struct AclRule {
  std::string zone;
  std::optional<Prefix> src, dst;   // absent = any
  std::optional<uint8_t> proto;     // absent = any
  PortRange sport, dport;
  std::optional<uint16_t> vlan;     // absent = any
  Action action = Action::kDeny;
  bool log = false;
  int line = 0;                     // source line, for logs and errors
};

struct Timeouts {  // seconds; [reload]
  uint32_t tcp_syn_sent = 30;
  uint32_t tcp_syn_recv = 30;
  uint32_t tcp_established = 432000;  // 5 days, as Linux nf_conntrack
  uint32_t tcp_fin_wait = 120;
  uint32_t tcp_close_wait = 60;
  uint32_t tcp_last_ack = 30;
  uint32_t tcp_time_wait = 120;
  uint32_t tcp_close = 10;
  uint32_t udp = 30;          // unreplied
  uint32_t udp_stream = 180;  // replied
  uint32_t icmp = 30;
};

struct ConntrackConfig {
  uint32_t capacity = 1 << 20;  // entries; new connections beyond it are dropped (table_full)
  Timeouts timeouts;
};

struct VmProfile {  // static policy that travels with the VM
  std::vector<AclRule> acl;         // rules that apply to this VM's traffic, zone = vm name
  uint64_t qos_rate_bps = 0;        // 0 = unlimited
  std::optional<IpAddr> nat_public_ip;
};

struct VmConfig {
  std::string name;
  MacAddr mac;
  std::vector<IpAddr> ipv4;  // stored as IpAddr with Family kV4
  std::vector<IpAddr> ipv6;
  uint16_t vlan = 0;
  VmProfile profile;
};

struct L3Address {
  std::string port;
  Prefix prefix;  // address/len; unlike other prefixes, addr keeps its host bits (192.0.2.1/24)
};
struct Route {
  Prefix prefix;
  IpAddr via;          // next hop; zero = directly connected
  std::string port;
};

struct ControlConfig {
  std::string listen = "127.0.0.1:9090";  // control API (HTTP/JSON)
};
struct MetricsConfig {
  std::string listen = "127.0.0.1:9100";  // Prometheus /metrics
};

struct PeerConfig {
  std::string name;
  std::string address;  // host:port of the peer's migration listener
};

struct MigrationConfig {
  bool enabled = true;
  std::string listen;     // host:port; empty = do not accept incoming migrations
  std::string cert, key, ca;  // PEM files for mutual TLS 1.3
  std::vector<PeerConfig> peers;
  uint32_t hold_packets = 4096;     // per-VM freeze buffer
  uint32_t timeout_ms = 5000;       // a stalled peer turns into FAIL(TIMEOUT)
  uint32_t headroom_percent = 10;   // capacity a destination keeps free beyond the VM's entries
  uint32_t max_delta_rounds = 8;
};

struct EalConfig {
  std::string file_prefix = "baton";
  uint32_t memory_mb = 512;
  bool no_huge = true;
  std::vector<std::string> extra_args;
};

struct Config {
  std::string file;  // path it came from
  std::string instance = "baton";
  Mode mode = Mode::kL2;
  uint16_t workers = 1;
  uint32_t burst = 32;
  EalConfig eal;
  std::vector<PortConfig> ports;
  std::vector<ZoneConfig> zones;
  std::vector<AclRule> acl;
  ConntrackConfig conntrack;
  std::vector<VmConfig> vms;
  std::vector<L3Address> l3_addresses;
  std::vector<Route> routes;
  ControlConfig control;
  MetricsConfig metrics;
  MigrationConfig migration;
};

struct ConfigError {
  std::string file;
  int line = 0;  // 1-based; 0 when the error is not tied to a line
  std::string reason;
  std::string to_string() const;  // "file:line: reason"
};

// Parses and validates; on failure returns nullopt and fills *err.
std::optional<Config> load_config(const std::string& path, ConfigError* err);
std::optional<Config> parse_config(const std::string& yaml_text, const std::string& name,
                                   ConfigError* err);

}  // namespace baton
