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
  // IPv4 and IPv6 connections are kept in separate hashes (an IPv4 key is stored in 16 bytes,
  // an IPv6 one in 40), each with its capacity; new connections beyond it are dropped
  // (table_full). capacity_v6 unset: a quarter of capacity; 0: IPv6 connections are refused.
  uint32_t capacity = 1 << 20;
  std::optional<uint32_t> capacity_v6;
  uint32_t v6_capacity() const { return capacity_v6 ? *capacity_v6 : capacity / 4; }
  bool accounting = true;       // per-connection packet/byte counters (32 bytes per entry)
  Timeouts timeouts;
};

struct VmProfile {  // static policy that travels with the VM
  std::vector<AclRule> acl;         // rules that apply to this VM's traffic, zone = vm name
  uint64_t qos_rate_bps = 0;        // 0 = unlimited
  std::optional<IpAddr> nat_public_ip;
  // SYN-flood guard (seed 000 3.2.1.2.3): at most this many of the VM's TCP connections opened
  // in one direction (by the VM, or to it) may be unfinished handshakes; 0 = no limit.
  uint32_t max_half_open = 0;
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
  // A dropped link resumes (docs/WIRE.md): the source keeps at most this many unacknowledged
  // bytes per peer for resending (beyond it it waits for ACKs), and a destination keeps a
  // dropped migration's pending state this long for the source to come back; 0 = no resume.
  uint32_t resume_window_bytes = 64u << 20;
  uint32_t resume_grace_ms = 10000;
};

// ---- NAT (IPv4) --------------------------------------------------------------------------
// Schema and the rules the loader enforces (outside addresses and ports have one owner each):
// docs/CONFIG.md, sections nat and lb. Both need mode l3.
// RFC 4787 names the same three behaviours for mapping (section 4.1) and filtering (5).
enum class NatBehavior : uint8_t { kEndpointIndependent, kAddressDependent, kAddressAndPortDependent };

struct SnatRule {           // restart only: live mappings hold leases on the pool's blocks
  std::string name;
  Prefix source;                       // inside addresses this rule translates
  std::vector<Prefix> exclude;         // destinations left untranslated (default: source)
  std::vector<IpAddr> pool;            // outside addresses (IPv4), ranges/prefixes expanded
  PortRange ports{1024, 65535};        // outside port range handed out in blocks
  uint16_t block_size = 64;            // ports per block; <= range size, leftover ports unused
  uint16_t max_blocks_per_host = 16;
  NatBehavior mapping = NatBehavior::kEndpointIndependent;             // RFC 4787 REQ-1
  NatBehavior filtering = NatBehavior::kAddressAndPortDependent;       // RFC 4787 REQ-8 option
  int line = 0;
};
struct StaticNat {          // 1:1, both directions (a VM's private address <-> public address)
                            // [reload] yes (new connections); takes precedence over snat
  IpAddr inside, outside;
  int line = 0;
};
struct PortForward {        // destination NAT: outside addr:port -> inside addr:port [reload]
  uint8_t proto = 6;
  IpAddr outside;
  uint16_t outside_port = 0;
  IpAddr inside;
  uint16_t inside_port = 0;
  int line = 0;
};
struct NatConfig {
  std::vector<SnatRule> snat;
  std::vector<StaticNat> static_nat;
  std::vector<PortForward> port_forward;
  uint32_t mapping_timeout_s = 300;  // [reload] after the last session ends (REQ-5: >= 120)
  uint32_t capacity = 1 << 18;       // mappings per worker
  bool hairpinning = true;           // [reload] RFC 4787 REQ-9
  bool enabled() const { return !snat.empty() || !static_nat.empty() || !port_forward.empty(); }
};

// ---- Load balancer (IPv4) ---------------------------------------------------------------
enum class BackendState : uint8_t { kUp, kDown, kDraining };
enum class HealthCheckKind : uint8_t { kNone, kTcp, kHttp };

struct HealthCheckConfig {  // [reload]
  HealthCheckKind kind = HealthCheckKind::kNone;
  uint32_t interval_ms = 2000, timeout_ms = 1000;
  uint16_t rise = 2, fall = 3;
  std::string http_path = "/";
  std::string http_host;                 // Host header; default the backend address
  uint16_t expect_lo = 200, expect_hi = 399;  // accepted status codes
};
struct BackendConfig {      // [reload]: backends come, go, change weight and state in place
  IpAddr address;
  uint16_t port = 0;         // 0 = the service's port
  uint32_t weight = 1;       // 1..65535
  BackendState state = BackendState::kUp;
  int line = 0;
};
struct PoolConfig {
  std::string name;
  std::vector<BackendConfig> backends;
  HealthCheckConfig health;
  int line = 0;
};
enum class StickyMethod : uint8_t { kNone, kSourceAddress, kSourcePrefix, kCookie, kHeader };
// Seed 000 section 3.2.1.3.2: a sticky group (named after its service) with a method, the
// service's farm and backup farm, whether it sticks on the backup farm, a timeout, and whether
// entries time out while connections still use them.
struct StickyConfig {
  StickyMethod method = StickyMethod::kNone;
  uint8_t prefix_len = 32;     // kSourcePrefix
  std::string name;            // cookie name (case kept) or header name (lower-case)
  uint32_t timeout_s = 600;    // [reload]
  bool on_backup = false;
  bool timeout_active_conns = false;
};
enum class LbMode : uint8_t { kNat, kFullNat, kL7 };
struct L7RuleConfig {             // [reload] first match wins; fields ANDed; empty = any
  // host and header_name are lower-case (they compare case-insensitively); the rest as written.
  std::string host, path_prefix, header_name, header_value, cookie_name, cookie_value;
  std::string pool;
  int line = 0;
};
struct ServiceConfig {
  std::string name;
  IpAddr vip;
  uint8_t proto = 6;
  uint16_t port = 0;
  LbMode mode = LbMode::kNat;
  std::vector<IpAddr> local_addresses;  // kFullNat / kL7: source addresses towards backends
  std::string pool, backup_pool;
  uint32_t table_size = 65537;          // Maglev lookup table, prime
  StickyConfig sticky;
  std::vector<L7RuleConfig> l7_rules;   // kL7
  uint32_t max_request_head = 8192;     // kL7: bytes; larger heads get 400
  int line = 0;
};
struct LbConfig {
  std::vector<PoolConfig> pools;
  std::vector<ServiceConfig> services;
  uint32_t sticky_capacity = 1 << 16;
  bool enabled() const { return !services.empty(); }
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
  NatConfig nat;
  LbConfig lb;
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
