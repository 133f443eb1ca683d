// SPDX-License-Identifier: Apache-2.0
//
// NAT behaviour (RFC 4787 for UDP, RFC 5382 for TCP, RFC 5508 for ICMP) as data and pure helpers.
// IPv4 only: Baton translates IPv4 to IPv4 (no NAT64, no NAT66).
//
// Theory of operation
//
// A NAT mapping binds an inside endpoint (address, port) to an outside one. RFC 4787 section 4.1
// names three ways to decide whether two outbound packets from the same inside endpoint share a
// mapping, and section 5 three ways to decide whether an inbound packet to a mapping's outside
// endpoint is let through. Both are plain data here:
//
//   * MappingBehavior decides the inside lookup key: the remote address (ADM) and port (APDM) are
//     part of the key, or not (EIM). nat_inside_key() builds it; unused fields are zero so the
//     key hashes over defined bytes only.
//   * FilteringBehavior decides an inbound packet that matches a mapping but no connection:
//     nat_filter_allows() compares its source with the remote endpoints the mapping has sent to
//     (NatPeer list, most recent first, kNatMaxPeers long: see "Filtering memory" below).
//
// Default: endpoint-independent mapping (REQ-1, a MUST) with address-and-port-dependent filtering
// (the choice: stricter than REQ-8's recommendations, as a firewall's default should be).
//
// RFC 4787 (UDP) requirements and how the NAT core meets them:
//   REQ-1  EIM (MUST): MappingBehavior::kEndpointIndependent is the default; ADM/APDM exist for
//          operators who need them (the RFC calls them out as allowed behaviours to describe).
//   REQ-2  paired IP address pooling (RECOMMENDED): PortAllocator leases every block of one inside
//          address from the same outside address while any of its blocks is leased.
//   REQ-3  no port overloading (MUST): an (outside address, port, protocol) is handed to one
//          mapping at a time (PortAllocator bitmaps; NatMappingTable's outside key is unique).
//          REQ-3a (source port 0-1023 -> outside 0-1023, RECOMMENDED): not met by default, the
//          pool's port range starts at 1024 so that no privileged outside port is handed out;
//          an operator may configure a range that includes them. 1024-65535 stays in 1024-65535.
//   REQ-4  port parity preservation (RECOMMENDED): PortAllocator prefers an outside port of the
//          inside port's parity (Params::preserve_parity, on by default).
//   REQ-5  UDP mapping timer >= 2 min (MUST), configurable (MAY), default >= 5 min (RECOMMENDED):
//          NatTimeouts::udp_s, default 300, refused below 120 (kUdpMappingTimeoutMinS). The timer
//          runs from the end of the mapping's last session (RFC 5382 section 4.2 ties TCP
//          mappings to connections the same way). REQ-5a (shorter timers per well-known port):
//          not used.
//   REQ-6  outbound refresh (MUST), inbound refresh (MAY): traffic in either direction keeps
//          the session alive (the connection table ages sessions), and a mapping lives while it
//          has a session; both directions therefore refresh it.
//   REQ-7  conflicting inside/outside address spaces: not applicable; pools are configured
//          statically, an outside interface is never renumbered under the NAT.
//   REQ-8  filtering: EIF or ADF RECOMMENDED, configurable (MAY): all three behaviours are
//          available; the default is APDF (see above), a deliberate, documented deviation.
//   REQ-9  hairpinning with "external source IP address and port" (MUST): the mapping table
//          finds a packet's destination by its outside endpoint and its source by its inside
//          endpoint, so the pipeline rewrites a hairpinned packet's source to the sender's
//          outside endpoint and its destination to the target's inside one (both lookups are
//          here; routing the packet back inside is the pipeline's).
//   REQ-10 ALGs off / separately switchable: Baton has no ALG.
//
// RFC 5382 (TCP): REQ-1 EIM and REQ-7 no port overloading as REQ-1/3 above; REQ-3 filtering as
// REQ-8 above, with the same behaviour for TCP and UDP (3b allows them to differ; one setting
// keeps the configuration simple). REQ-5 idle timeouts (established >= 2 h 4 min, transitory
// >= 4 min) are the connection table's; the mapping outlives its last connection by
// NatTimeouts::tcp_s (default 240 s = the transitory minimum, so a reopened connection from the
// same port keeps its outside port). REQ-8 hairpinning as REQ-9 above. REQ-9 (translate ICMP
// destination unreachable) and REQ-10 (ICMP never ends a mapping): icmp_xlate translates ICMP
// errors, and nothing in the NAT core removes a mapping because of one. REQ-2 (every valid TCP
// sequence, simultaneous open) and REQ-4 (unsolicited SYN handling) are the connection
// tracker's and the pipeline's; REQ-6 (ALGs): none.
//
// RFC 5508 (ICMP) REQ-1: ICMP query mappings live >= 60 s (NatTimeouts::icmp_s, default 60).
//
// Filtering memory. A mapping remembers the last kNatMaxPeers remote endpoints it sent to,
// most recent first. The usual inbound packet belongs to a live connection and never gets here;
// the list decides the rest (a reply after the connection aged out, a new inbound flow under
// ADF). Past kNatMaxPeers distinct remotes the oldest is forgotten, so the error is on the
// strict side: a forgotten remote with no live connection is filtered, never a stranger let in.
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

#include "common/net_types.h"

namespace baton {

// RFC 4787 section 4.1.
enum class MappingBehavior : uint8_t {
  kEndpointIndependent = 0,      // EIM: key (proto, inside addr, inside port)
  kAddressDependent = 1,         // ADM: + remote address
  kAddressAndPortDependent = 2,  // APDM: + remote address and port
};

// RFC 4787 section 5.
enum class FilteringBehavior : uint8_t {
  kEndpointIndependent = 0,      // EIF: anyone may send to a live mapping
  kAddressDependent = 1,         // ADF: only an address the mapping has sent to
  kAddressAndPortDependent = 2,  // APDF: only an address and port the mapping has sent to
};

struct NatPolicy {
  MappingBehavior mapping = MappingBehavior::kEndpointIndependent;        // RFC 4787 REQ-1
  FilteringBehavior filtering = FilteringBehavior::kAddressAndPortDependent;
};

// Mapping lifetimes after the mapping's last session ended, in seconds.
struct NatTimeouts {
  uint32_t tcp_s = 240;   // RFC 5382 REQ-5 transitory minimum
  uint32_t udp_s = 300;   // RFC 4787 REQ-5c
  uint32_t icmp_s = 60;   // RFC 5508 REQ-1

  uint32_t for_proto(uint8_t proto) const {
    return proto == static_cast<uint8_t>(IpProto::kTcp)   ? tcp_s
           : proto == static_cast<uint8_t>(IpProto::kUdp) ? udp_s
                                                          : icmp_s;
  }
};
constexpr uint32_t kUdpMappingTimeoutMinS = 120;   // RFC 4787 REQ-5 (MUST)
constexpr uint32_t kIcmpMappingTimeoutMinS = 60;   // RFC 5508 REQ-1 (MUST)

// Empty if usable, else why not.
inline std::string check_timeouts(const NatTimeouts& t) {
  if (t.udp_s < kUdpMappingTimeoutMinS)
    return "UDP mapping timeout " + std::to_string(t.udp_s) + " s is below RFC 4787 REQ-5's " +
           std::to_string(kUdpMappingTimeoutMinS) + " s";
  if (t.icmp_s < kIcmpMappingTimeoutMinS)
    return "ICMP mapping timeout " + std::to_string(t.icmp_s) + " s is below RFC 5508 REQ-1's " +
           std::to_string(kIcmpMappingTimeoutMinS) + " s";
  if (t.tcp_s == 0) return "TCP mapping timeout must be at least 1 s";
  return {};
}

// ---- Keys ------------------------------------------------------------------------------------

// Inside lookup key, 16 bytes, every byte defined. remote_* are zero unless the mapping behaviour
// puts them in the key.
struct NatInsideKey {
  be32 inside_addr;
  be32 remote_addr;
  be16 inside_port;
  be16 remote_port;
  uint8_t proto = 0;
  uint8_t reserved[3] = {0, 0, 0};
  bool operator==(const NatInsideKey&) const = default;
};
static_assert(sizeof(NatInsideKey) == 16, "hashed as raw bytes; no padding allowed");

// Outside lookup key, 8 bytes: the outside endpoint of a mapping.
struct NatOutsideKey {
  be32 outside_addr;
  be16 outside_port;
  uint8_t proto = 0;
  uint8_t reserved = 0;
  bool operator==(const NatOutsideKey&) const = default;
};
static_assert(sizeof(NatOutsideKey) == 8, "hashed as raw bytes; no padding allowed");

// The key under which an outbound packet (proto, inside:port -> remote:port) finds its mapping.
// ICMP queries pass the identifier as both ports (net_types' Tuple convention).
constexpr NatInsideKey nat_inside_key(MappingBehavior m, uint8_t proto, be32 inside,
                                      be16 inside_port, be32 remote, be16 remote_port) {
  NatInsideKey k;
  k.proto = proto;
  k.inside_addr = inside;
  k.inside_port = inside_port;
  if (m != MappingBehavior::kEndpointIndependent) k.remote_addr = remote;
  if (m == MappingBehavior::kAddressAndPortDependent) k.remote_port = remote_port;
  return k;
}

constexpr NatOutsideKey nat_outside_key(uint8_t proto, be32 outside, be16 outside_port) {
  NatOutsideKey k;
  k.proto = proto;
  k.outside_addr = outside;
  k.outside_port = outside_port;
  return k;
}

// ---- Filtering -------------------------------------------------------------------------------

// A remote endpoint a mapping has sent to.
struct NatPeer {
  be32 addr;
  be16 port;
  uint16_t reserved = 0;
  bool operator==(const NatPeer&) const = default;
};
static_assert(sizeof(NatPeer) == 8);
constexpr size_t kNatMaxPeers = 4;

// RFC 4787 section 5: may an inbound packet from remote:port pass a mapping that has sent to
// peers[0..n)? (For a packet that belongs to no live connection; see the header comment.)
constexpr bool nat_filter_allows(FilteringBehavior f, const NatPeer* peers, size_t n, be32 remote,
                                 be16 remote_port) {
  if (f == FilteringBehavior::kEndpointIndependent) return true;
  for (size_t i = 0; i < n; ++i) {
    if (peers[i].addr != remote) continue;
    if (f == FilteringBehavior::kAddressDependent || peers[i].port == remote_port) return true;
  }
  return false;
}

// Records that the mapping sent to addr:port: moves it to the front of peers[0..*n), or inserts
// it there and drops the oldest when the list is full. *n <= kNatMaxPeers.
constexpr void nat_note_peer(NatPeer* peers, uint8_t* n, be32 addr, be16 port) {
  const NatPeer p{addr, port, 0};
  size_t i = 0;
  while (i < *n && !(peers[i] == p)) ++i;
  if (i == *n) {
    if (*n < kNatMaxPeers) ++*n;
    i = *n - 1;  // overwrite the oldest (or the new last position)
  }
  for (; i > 0; --i) peers[i] = peers[i - 1];
  peers[0] = p;
}

// ---- Names (config and API) ------------------------------------------------------------------

constexpr const char* behavior_name(uint8_t b) {
  return b == 0 ? "endpoint-independent" : b == 1 ? "address-dependent"
                                                  : "address-and-port-dependent";
}
constexpr const char* mapping_behavior_name(MappingBehavior m) {
  return behavior_name(static_cast<uint8_t>(m));
}
constexpr const char* filtering_behavior_name(FilteringBehavior f) {
  return behavior_name(static_cast<uint8_t>(f));
}
// Parses the names above (RFC 4787's terms, lower case, dash separated).
inline std::optional<MappingBehavior> parse_mapping_behavior(std::string_view s) {
  for (uint8_t b = 0; b < 3; ++b)
    if (s == behavior_name(b)) return static_cast<MappingBehavior>(b);
  return std::nullopt;
}
inline std::optional<FilteringBehavior> parse_filtering_behavior(std::string_view s) {
  for (uint8_t b = 0; b < 3; ++b)
    if (s == behavior_name(b)) return static_cast<FilteringBehavior>(b);
  return std::nullopt;
}

}  // namespace baton
