// SPDX-License-Identifier: Apache-2.0
//
// Routed L3 mode (mode: l3): interface addresses per port, static IPv4 routes with longest
// prefix match, and the ARP neighbour table. Pure logic, no DPDK: the worker hands it header
// fields and byte buffers, tests drive it directly (tests/router).
//
// Theory of operation.
//  - Routes are static (config, restart to change), so the table is built once and then only
//    read, by every worker, with no synchronisation. Each configured address adds a connected
//    route for its subnet unless a configured route names the same prefix.
//  - LPM: the prefixes cut the address space into disjoint ranges, each of which has one
//    longest covering route (or none); the ranges' starts are one sorted array, so a lookup is
//    one binary search over at most 2 x routes + 1 entries. It replaced one sorted array per
//    prefix length searched longest first, which cost about three searches per lookup and a
//    lookup or three per routed packet (~190 instructions a packet in natlbnew). Testable
//    without EAL. rte_lpm (DIR-24-8) would pay 64 MiB of tbl24 per instance for nothing at this
//    size; it is the replacement if routes ever become dynamic and numerous.
//  - Neighbour table (IPv4 -> MAC): a fixed set-associative array (kNeighborBuckets x
//    kNeighborWays) with ONE writer, the worker that owns ARP (worker 0: every ARP frame is
//    handed to it, and other workers send it the addresses they need resolved on a ring). The
//    writer brackets each slot update with a per-slot sequence counter (seqlock); readers on any
//    worker copy the slot and retry if the counter was odd or moved. No locks, no allocation,
//    no slot ever changes size. Methods marked [owner] may only be called by that worker.
//  - Neighbour states (RFC 4861 7.3.2's model, reduced to what ARP needs):
//      incomplete  a request was sent, no answer yet; retried at most once a second, and after
//                  kMaxProbes unanswered requests the entry becomes
//      failed      misses drop without new requests for kFailedHoldS, then resolution restarts
//      reachable   confirmed (ARP from the neighbour) less than kReachableS ago
//      stale       confirmed earlier: still used for forwarding, but each use asks for a
//                  refresh (rate-limited like a retry); after kStaleLifetimeS it is forgotten
//    Expiry is by timestamp, read lazily; a forgotten or failed slot is reused by the next
//    neighbour that hashes to its bucket, and a full bucket evicts its least recently
//    confirmed entry, so the table is bounded and nothing lives forever.
//  - ARP (RFC 826): requests for one of our addresses on the port they arrive on are answered
//    out of the same port; the sender of a request or reply addressed to us is learned (or
//    refreshed) when it lies in a subnet of that port; any other ARP only refreshes a neighbour
//    already in the table (RFC 826's "merge" step) and is never answered.
//  - Not supported, because not needed yet: IPv6 routing (mode l3 drops IPv6 with a counted
//    reason), VLAN-tagged L3 interfaces, a local host stack (packets to our own addresses are
//    dropped, no ICMP errors are generated: TTL expiry, unreachable and neighbour misses drop
//    silently with a counted reason).
#pragma once

#include <array>
#include <atomic>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "common/net_types.h"
#include "config/config.h"

namespace baton {

// One IPv4 interface address (address with host bits, prefix length) on a port index.
struct L3Interface {
  uint16_t port = 0;
  be32 addr;
  uint8_t len = 0;
  bool contains(be32 a) const;
};

struct RouteEntry {
  be32 net;          // host bits zero
  uint8_t len = 0;
  uint16_t port = 0;  // egress port index
  be32 via;          // zero: directly connected, the next hop is the destination itself
  bool connected() const { return via.raw() == 0; }
  be32 next_hop(be32 dst) const { return connected() ? dst : via; }
};

enum class NeighborState : uint8_t { kNone, kIncomplete, kReachable, kStale, kFailed };
const char* neighbor_state_name(NeighborState s);

// What a reader learns about a next hop. `mac` is valid iff `usable`; `solicit` asks the owner
// to send (or consider sending) an ARP request for it.
struct NeighborLookup {
  bool usable = false;
  bool solicit = false;
  MacAddr mac;
};

// A parsed Ethernet/IPv4 ARP packet (the fields Router needs).
struct ArpView {
  uint16_t op = 0;  // 1 request, 2 reply
  MacAddr sender_mac;
  be32 sender_ip, target_ip;
};

enum class ArpVerdict : uint8_t {
  kReply,    // answer built into the reply buffer: send it out of the ingress port
  kLearned,  // addressed to us (or a merge): the table was updated, nothing to send
  kIgnored,  // not for us
};

// Builds a 42-byte Ethernet + ARP frame (no padding) into out[0..41].
constexpr size_t kArpFrameLen = 42;
void build_arp_frame(uint8_t* out, uint16_t op, const MacAddr& eth_dst, const MacAddr& eth_src,
                     const MacAddr& sha, be32 spa, const MacAddr& tha, be32 tpa);

// Decrements the TTL of the IPv4 header at `ip` and patches its checksum incrementally
// (RFC 1624 eqn. 3: HC' = ~(~HC + ~m + m'), over the TTL/protocol word m). The caller has
// checked ttl > 1. Inline, with ~m + m' a constant: m' = m - 0x0100 and m >= 0x0100, so
// ~m + m' = (0xffff - m) + (m - 0x0100) = 0xfeff whatever the TTL and protocol, and the
// checksum does not wait for the TTL's load (a dependent chain on every routed packet).
inline void ipv4_decrement_ttl(uint8_t* ip) {
  ip[8]--;
  uint32_t sum = uint16_t(~(ip[10] << 8 | ip[11])) + 0xfeffu;
  sum = (sum & 0xffff) + (sum >> 16);  // at most 0xffff + 0xfeff: one fold suffices
  ip[10] = uint8_t(~sum >> 8);
  ip[11] = uint8_t(~sum);
}

class Router {
 public:
  static constexpr uint32_t kNeighborBuckets = 512;  // power of two
  static constexpr uint32_t kNeighborWays = 8;
  static constexpr uint32_t kNeighborSlots = kNeighborBuckets * kNeighborWays;
  static constexpr uint32_t kReachableS = 30;
  static constexpr uint32_t kStaleLifetimeS = 600;
  static constexpr uint32_t kRetryS = 1;
  static constexpr uint32_t kMaxProbes = 3;
  // Routes, connected ones included: an index is carried in 24 bits (Worker::stash_route).
  static constexpr uint32_t kMaxRoutes = 1u << 24;
  static constexpr uint32_t kFailedHoldS = 5;

  // From the config: l3.addresses (IPv4 only; IPv6 ones are ignored) and l3.routes, with port
  // names resolved to port indexes in config order. port_macs[i] is port index i's MAC.
  // Refuses (nullptr, *err) duplicate routes, a next hop outside every subnet of its port, an
  // address on a port that has another address of an overlapping subnet.
  static std::unique_ptr<Router> build(const Config& cfg, const std::vector<MacAddr>& port_macs,
                                       std::string* err);
  // The same from already-resolved parts (tests).
  static std::unique_ptr<Router> build(const std::vector<L3Interface>& ifs,
                                       const std::vector<RouteEntry>& routes,
                                       const std::vector<MacAddr>& port_macs, std::string* err);

  // --- read side: any thread -------------------------------------------------------------
  // Longest-prefix match; nullptr when no route covers dst.
  const RouteEntry* route(be32 dst) const;
  const RouteEntry& route_at(uint32_t i) const { return routes_[i]; }
  int route_index(const RouteEntry* r) const { return r ? int(r - routes_.data()) : -1; }
  const std::vector<RouteEntry>& routes() const { return routes_; }
  const std::vector<L3Interface>& interfaces() const { return ifs_; }
  // Is a one of our own addresses (any port)?
  bool is_local(be32 a) const;
  const MacAddr& port_mac(uint16_t port) const { return port_macs_[port]; }
  uint16_t port_count() const { return static_cast<uint16_t>(port_macs_.size()); }

  // The lookups fill an out-parameter that the packet path reads field by field: returned
  // from the call (or copied whole after it), the NeighborLookup was assembled on the
  // stack in narrow stores and read back as words, a store-forwarding stall on every routed
  // packet. The by-value forms are for tests.
  void neighbor(be32 ip, uint32_t now_s, NeighborLookup* out) const;
  NeighborLookup neighbor(be32 ip, uint32_t now_s) const {
    NeighborLookup r;
    neighbor(ip, now_s, &r);
    return r;
  }
  NeighborState neighbor_state(be32 ip, uint32_t now_s) const;
  // Bumped after every write to the neighbour table (NeighborCache's validity check).
  uint64_t generation() const { return generation_.load(std::memory_order_acquire); }
  struct NeighborInfo {
    be32 ip;
    MacAddr mac;
    NeighborState state;
    uint32_t age_s;
  };
  std::vector<NeighborInfo> neighbors(uint32_t now_s) const;  // for the API and tests

  // Translated addresses (NAT outside addresses, VIPs; translator.h) that are not interface
  // addresses: ARP requests for one of them are answered on a port whose subnet holds it.
  // Set before the workers start.
  void set_service_addresses(std::vector<be32> addrs);

  // --- write side: [owner] only --------------------------------------------------------------
  // An ARP frame received on port `port`; may fill reply[0..kArpFrameLen).
  ArpVerdict on_arp(uint16_t port, const ArpView& a, uint32_t now_s, uint8_t* reply);
  // A packet needs `ip` (a next hop on `port`). Returns true when an ARP request should go out
  // now, built into request[0..kArpFrameLen); the state machine rate-limits it.
  bool solicit(uint16_t port, be32 ip, uint32_t now_s, uint8_t* request);

 private:
  struct Slot {
    std::atomic<uint32_t> seq{0};       // odd while the owner writes
    std::atomic<uint32_t> ip{0};        // be32 raw; 0 = never used
    std::atomic<uint64_t> mac_state{0};  // mac bytes 0..5 in bits 0..47, state in 48..55
    std::atomic<uint32_t> since{0};     // reachable: last confirmation; failed: when it failed
    // Owner-only (readers never look at these).
    uint32_t last_request = 0;
    uint32_t probes = 0;
  };
  enum class Stored : uint8_t { kEmpty, kIncomplete, kReachable, kFailed };
  // A slot as read, in scalars only (the MAC stays packed until asked for), so that it lives in
  // registers: with a MacAddr member GCC built it on the stack byte by byte and read it back as
  // words, a store-forwarding stall on every routed packet's neighbour lookup.
  struct Snapshot {
    uint32_t ip;
    uint32_t since;
    uint64_t mac_state;  // as in Slot
    Stored st() const { return static_cast<Stored>(mac_state >> 48); }
    MacAddr mac() const;
  };

  Router() = default;
  static uint32_t bucket_of(be32 ip);
  Snapshot read(const Slot& s) const;
  void judge(const Snapshot& s, uint32_t now_s, NeighborLookup* out) const;
  NeighborState derived(const Snapshot& s, uint32_t now_s) const;
  void write(Slot& s, uint32_t ip, const MacAddr& mac, Stored st, uint32_t since);
  Slot* find(be32 ip);
  Slot* victim(be32 ip, uint32_t now_s);
  void learn(be32 ip, const MacAddr& mac, uint32_t now_s, bool create);
  const L3Interface* address_on(uint16_t port, be32 a) const;  // our address a on port
  const L3Interface* subnet_on(uint16_t port, be32 a) const;   // a subnet of port holding a

  std::vector<L3Interface> ifs_;
  std::vector<RouteEntry> routes_;
  // LPM ranges: range i covers [range_start_[i], range_start_[i + 1]) (host order; the first
  // starts at 0) and goes by routes_[range_route_[i]], or nowhere when that is -1.
  std::vector<uint32_t> range_start_;
  std::vector<int32_t> range_route_;
  std::vector<MacAddr> port_macs_;
  std::vector<be32> service_addrs_;  // sorted by raw value
  std::unique_ptr<Slot[]> slots_;
  std::atomic<uint64_t> generation_{0};
};

// A reader's memo of the next hops it resolved (one per worker): the same answer as
// Router::neighbor without its bucket walk and seqlock copy (about 90 instructions of every
// routed packet, most packets of a burst going to a few next hops), kept while the clock's
// second and the table's generation are unchanged. A neighbour's state is a function of its
// slot and the second, so within both the answer cannot differ. Only answers that ask nothing
// of the owner (usable, no solicitation) are kept: a stale neighbour's refresh request still
// goes out on every use, rate-limited by the owner as before.
class NeighborCache {
 public:
  void lookup(const Router& r, be32 ip, uint32_t now_s, NeighborLookup* out) {
    Entry& e = entries_[(ip.raw() * 0x9e3779b1u) >> (32 - kBits)];
    const uint64_t gen = r.generation();  // before the lookup: a write during it invalidates
    if (e.usable && e.ip == ip.raw() && e.now_s == now_s && e.gen == gen) {
      out->usable = true;
      out->solicit = false;
      out->mac = e.mac;
      return;
    }
    r.neighbor(ip, now_s, out);
    e.usable = out->usable && !out->solicit;
    if (e.usable) {
      e.ip = ip.raw();
      e.now_s = now_s;
      e.gen = gen;
      e.mac = out->mac;
    }
  }

 private:
  static constexpr int kBits = 6;
  struct Entry {
    uint64_t gen = 0;
    uint32_t ip = 0, now_s = 0;
    MacAddr mac;
    bool usable = false;
  };
  std::array<Entry, 1u << kBits> entries_{};
};

}  // namespace baton
