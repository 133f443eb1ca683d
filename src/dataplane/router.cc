// SPDX-License-Identifier: Apache-2.0
#include "dataplane/router.h"

#include <algorithm>
#include <bit>
#include <cstring>
#include <map>

namespace baton {
namespace {

uint32_t mask_of(uint8_t len) { return len == 0 ? 0 : ~0u << (32 - len); }

uint64_t pack(const MacAddr& mac, uint8_t state) {
  uint64_t v = 0;
  for (int i = 0; i < 6; i++) v |= uint64_t(mac.b[i]) << (8 * i);
  return v | uint64_t(state) << 48;
}

// The MAC of packed bits (byte i in bits 8i..8i+7, this target being little-endian), written
// as one 4-byte and one 2-byte store: the MAC is read on as 4 + 2 bytes right after (memcpy
// into the frame), and byte-wise stores (what GCC makes of a MacAddr assignment) could not be
// forwarded to those loads, a stall on every routed packet's neighbour lookup.
void store_mac(uint64_t bits, MacAddr* m) {
  static_assert(std::endian::native == std::endian::little);
  std::memcpy(m->b.data(), &bits, 6);
}

void put16(uint8_t* p, uint16_t v) {
  p[0] = uint8_t(v >> 8);
  p[1] = uint8_t(v);
}

const MacAddr kBroadcast{{0xff, 0xff, 0xff, 0xff, 0xff, 0xff}};

}  // namespace

bool L3Interface::contains(be32 a) const {
  uint32_t m = mask_of(len);
  return (a.host() & m) == (addr.host() & m);
}

const char* neighbor_state_name(NeighborState s) {
  switch (s) {
    case NeighborState::kNone: return "none";
    case NeighborState::kIncomplete: return "incomplete";
    case NeighborState::kReachable: return "reachable";
    case NeighborState::kStale: return "stale";
    case NeighborState::kFailed: return "failed";
  }
  return "?";
}

void build_arp_frame(uint8_t* out, uint16_t op, const MacAddr& eth_dst, const MacAddr& eth_src,
                     const MacAddr& sha, be32 spa, const MacAddr& tha, be32 tpa) {
  std::memcpy(out, eth_dst.b.data(), 6);
  std::memcpy(out + 6, eth_src.b.data(), 6);
  put16(out + 12, 0x0806);
  put16(out + 14, 1);       // htype Ethernet
  put16(out + 16, 0x0800);  // ptype IPv4
  out[18] = 6;
  out[19] = 4;
  put16(out + 20, op);
  std::memcpy(out + 22, sha.b.data(), 6);
  uint32_t raw = spa.raw();
  std::memcpy(out + 28, &raw, 4);
  std::memcpy(out + 32, tha.b.data(), 6);
  raw = tpa.raw();
  std::memcpy(out + 38, &raw, 4);
}

// ---- construction ---------------------------------------------------------------------------

std::unique_ptr<Router> Router::build(const Config& cfg, const std::vector<MacAddr>& port_macs,
                                      std::string* err) {
  auto port_of = [&](const std::string& name) -> int {
    for (size_t i = 0; i < cfg.ports.size(); i++)
      if (cfg.ports[i].name == name) return int(i);
    return -1;
  };
  std::vector<L3Interface> ifs;
  for (const L3Address& a : cfg.l3_addresses) {
    if (a.prefix.family != Family::kV4) continue;  // IPv6 is not routed (router.h)
    int p = port_of(a.port);
    if (p < 0) {
      *err = "l3 address on unknown port " + a.port;
      return nullptr;
    }
    ifs.push_back(L3Interface{uint16_t(p), a.prefix.addr.as_v4(), a.prefix.len});
  }
  std::vector<RouteEntry> routes;
  for (const Route& r : cfg.routes) {
    if (r.prefix.family != Family::kV4) continue;
    int p = port_of(r.port);
    if (p < 0) {
      *err = "route to unknown port " + r.port;
      return nullptr;
    }
    routes.push_back(RouteEntry{r.prefix.addr.as_v4(), r.prefix.len, uint16_t(p), r.via.as_v4()});
  }
  return build(ifs, routes, port_macs, err);
}

std::unique_ptr<Router> Router::build(const std::vector<L3Interface>& ifs,
                                      const std::vector<RouteEntry>& routes_in,
                                      const std::vector<MacAddr>& port_macs, std::string* err) {
  std::unique_ptr<Router> r(new Router());
  r->port_macs_ = port_macs;
  auto text = [](be32 a, uint8_t len) {
    return IpAddr::v4(a).to_string(Family::kV4) + "/" + std::to_string(len);
  };
  for (size_t i = 0; i < ifs.size(); i++) {
    const L3Interface& x = ifs[i];
    if (x.port >= port_macs.size()) {
      *err = "l3 address " + text(x.addr, x.len) + " on a port index out of range";
      return nullptr;
    }
    if (x.len == 0 || x.len > 32) {
      *err = "l3 address " + text(x.addr, x.len) + ": prefix length must be 1..32";
      return nullptr;
    }
    for (size_t j = 0; j < i; j++) {
      const L3Interface& y = ifs[j];
      uint8_t l = std::min(x.len, y.len);
      if ((x.addr.host() & mask_of(l)) == (y.addr.host() & mask_of(l))) {
        *err = "l3 addresses " + text(y.addr, y.len) + " and " + text(x.addr, x.len) +
               " overlap (one subnet per interface address)";
        return nullptr;
      }
    }
  }
  r->ifs_ = ifs;

  std::map<std::pair<uint8_t, uint32_t>, bool> seen;
  for (const RouteEntry& e : routes_in) {
    RouteEntry n = e;
    n.net = be32::from_host(e.net.host() & mask_of(e.len));
    if (!seen.emplace(std::make_pair(n.len, n.net.host()), true).second) {
      *err = "duplicate route " + text(n.net, n.len);
      return nullptr;
    }
    if (n.port >= port_macs.size()) {
      *err = "route " + text(n.net, n.len) + " to a port index out of range";
      return nullptr;
    }
    bool has_addr = false, via_ok = n.connected();
    for (const L3Interface& x : ifs)
      if (x.port == n.port) {
        has_addr = true;
        if (!n.connected() && x.contains(n.via)) via_ok = true;
      }
    if (!has_addr) {
      *err = "route " + text(n.net, n.len) +
             ": its port has no IPv4 address, so next hops there cannot be resolved";
      return nullptr;
    }
    if (!via_ok) {
      *err = "route " + text(n.net, n.len) + ": next hop " +
             IpAddr::v4(n.via).to_string(Family::kV4) + " is not in a subnet of its port";
      return nullptr;
    }
    r->routes_.push_back(n);
  }
  // Connected routes from the interface addresses, unless configured explicitly.
  for (const L3Interface& x : ifs) {
    be32 net = be32::from_host(x.addr.host() & mask_of(x.len));
    if (seen.emplace(std::make_pair(x.len, net.host()), true).second)
      r->routes_.push_back(RouteEntry{net, x.len, x.port, be32()});
  }

  if (r->routes_.size() >= kMaxRoutes) {
    *err = "too many routes: " + std::to_string(r->routes_.size()) + " (at most " +
           std::to_string(kMaxRoutes - 1) + " with the connected ones)";
    return nullptr;
  }

  // LPM ranges: every prefix starts a range at its first address and at the one after its
  // last; between two such boundaries the covering prefixes do not change, so a range takes
  // the longest that covers its start. Neighbours with the same route are merged.
  std::vector<uint32_t> cuts{0};
  for (const RouteEntry& e : r->routes_) {
    const uint64_t first = e.net.host(), end = first + (uint64_t{1} << (32 - e.len));
    cuts.push_back(static_cast<uint32_t>(first));
    if (end <= UINT32_MAX) cuts.push_back(static_cast<uint32_t>(end));
  }
  std::sort(cuts.begin(), cuts.end());
  cuts.erase(std::unique(cuts.begin(), cuts.end()), cuts.end());
  for (uint32_t c : cuts) {
    int32_t best = -1;
    for (size_t i = 0; i < r->routes_.size(); i++) {
      const RouteEntry& e = r->routes_[i];
      if ((c & mask_of(e.len)) == e.net.host() && (best < 0 || e.len > r->routes_[best].len))
        best = static_cast<int32_t>(i);
    }
    if (!r->range_route_.empty() && r->range_route_.back() == best) continue;
    r->range_start_.push_back(c);
    r->range_route_.push_back(best);
  }
  r->slots_.reset(new Slot[kNeighborSlots]);
  return r;
}

// ---- read side --------------------------------------------------------------------------------

const RouteEntry* Router::route(be32 dst) const {
  // The last range starting at or before dst (the first starts at 0).
  const auto it = std::upper_bound(range_start_.begin(), range_start_.end(), dst.host());
  const int32_t i = range_route_[static_cast<size_t>(it - range_start_.begin()) - 1];
  return i < 0 ? nullptr : &routes_[static_cast<size_t>(i)];
}

void Router::set_service_addresses(std::vector<be32> addrs) {
  std::sort(addrs.begin(), addrs.end(), [](be32 x, be32 y) { return x.raw() < y.raw(); });
  service_addrs_ = std::move(addrs);
}

bool Router::is_local(be32 a) const {
  for (const L3Interface& x : ifs_)
    if (x.addr == a) return true;
  return false;
}

const L3Interface* Router::address_on(uint16_t port, be32 a) const {
  for (const L3Interface& x : ifs_)
    if (x.port == port && x.addr == a) return &x;
  return nullptr;
}

const L3Interface* Router::subnet_on(uint16_t port, be32 a) const {
  for (const L3Interface& x : ifs_)
    if (x.port == port && x.contains(a)) return &x;
  return nullptr;
}

MacAddr Router::Snapshot::mac() const {
  MacAddr m;
  store_mac(mac_state, &m);
  return m;
}

uint32_t Router::bucket_of(be32 ip) {
  return (ip.raw() * 2654435761u) >> 23 & (kNeighborBuckets - 1);
}

// Seqlock read: copy, then check that the owner did not write meanwhile.
Router::Snapshot Router::read(const Slot& s) const {
  for (;;) {
    uint32_t q1 = s.seq.load(std::memory_order_acquire);
    if (q1 & 1) continue;  // the owner is mid-write (a few stores): spin
    Snapshot r;
    r.ip = s.ip.load(std::memory_order_relaxed);
    r.mac_state = s.mac_state.load(std::memory_order_relaxed);
    r.since = s.since.load(std::memory_order_relaxed);
    std::atomic_thread_fence(std::memory_order_acquire);
    if (s.seq.load(std::memory_order_relaxed) != q1) continue;
    return r;
  }
}

NeighborState Router::derived(const Snapshot& s, uint32_t now_s) const {
  uint32_t age = now_s - std::min(now_s, s.since);
  switch (s.st()) {
    case Stored::kEmpty: return NeighborState::kNone;
    case Stored::kIncomplete: return NeighborState::kIncomplete;
    case Stored::kFailed:
      return age < kFailedHoldS ? NeighborState::kFailed : NeighborState::kNone;
    case Stored::kReachable:
      if (age < kReachableS) return NeighborState::kReachable;
      if (age < kStaleLifetimeS) return NeighborState::kStale;
      return NeighborState::kNone;
  }
  return NeighborState::kNone;
}

void Router::judge(const Snapshot& s, uint32_t now_s, NeighborLookup* r) const {
  *r = NeighborLookup{};
  switch (derived(s, now_s)) {
    case NeighborState::kReachable:
      r->usable = true;
      store_mac(s.mac_state, &r->mac);
      break;
    case NeighborState::kStale:
      r->usable = true;
      store_mac(s.mac_state, &r->mac);
      r->solicit = true;  // refresh
      break;
    case NeighborState::kFailed:
      break;  // hold-down: no new requests
    case NeighborState::kIncomplete:
    case NeighborState::kNone:
      r->solicit = true;
      break;
  }
}

void Router::neighbor(be32 ip, uint32_t now_s, NeighborLookup* out) const {
  const uint32_t b = bucket_of(ip) * kNeighborWays;
  for (uint32_t w = 0; w < kNeighborWays; w++) {
    const Slot& s = slots_[b + w];
    if (s.ip.load(std::memory_order_relaxed) != ip.raw()) continue;  // cheap filter
    Snapshot snap = read(s);
    if (snap.ip == ip.raw()) return judge(snap, now_s, out);
  }
  *out = NeighborLookup{};
  out->solicit = true;
}

NeighborState Router::neighbor_state(be32 ip, uint32_t now_s) const {
  const uint32_t b = bucket_of(ip) * kNeighborWays;
  for (uint32_t w = 0; w < kNeighborWays; w++) {
    Snapshot snap = read(slots_[b + w]);
    if (snap.ip == ip.raw() && snap.st() != Stored::kEmpty) return derived(snap, now_s);
  }
  return NeighborState::kNone;
}

std::vector<Router::NeighborInfo> Router::neighbors(uint32_t now_s) const {
  std::vector<NeighborInfo> out;
  for (uint32_t i = 0; i < kNeighborSlots; i++) {
    Snapshot s = read(slots_[i]);
    NeighborState st = derived(s, now_s);
    if (st == NeighborState::kNone) continue;
    out.push_back({be32::from_raw(s.ip), s.mac(), st, now_s - std::min(now_s, s.since)});
  }
  return out;
}

// ---- write side (owner) -------------------------------------------------------------------------

void Router::write(Slot& s, uint32_t ip, const MacAddr& mac, Stored st, uint32_t since) {
  uint32_t q = s.seq.load(std::memory_order_relaxed);
  s.seq.store(q + 1, std::memory_order_relaxed);
  std::atomic_thread_fence(std::memory_order_release);
  s.ip.store(ip, std::memory_order_relaxed);
  s.mac_state.store(pack(mac, uint8_t(st)), std::memory_order_relaxed);
  s.since.store(since, std::memory_order_relaxed);
  s.seq.store(q + 2, std::memory_order_release);
  generation_.fetch_add(1, std::memory_order_release);
}

Router::Slot* Router::find(be32 ip) {
  const uint32_t b = bucket_of(ip) * kNeighborWays;
  for (uint32_t w = 0; w < kNeighborWays; w++) {
    Slot& s = slots_[b + w];
    // The owner is the only writer: its own plain view of the slot is current.
    if (s.ip.load(std::memory_order_relaxed) == ip.raw() &&
        Stored(s.mac_state.load(std::memory_order_relaxed) >> 48) != Stored::kEmpty)
      return &s;
  }
  return nullptr;
}

// A slot for a new neighbour: an empty or forgotten one, else the least recently confirmed.
Router::Slot* Router::victim(be32 ip, uint32_t now_s) {
  const uint32_t b = bucket_of(ip) * kNeighborWays;
  Slot* best = nullptr;
  uint32_t best_since = UINT32_MAX;
  for (uint32_t w = 0; w < kNeighborWays; w++) {
    Slot& s = slots_[b + w];
    Snapshot snap = read(s);
    NeighborState st = derived(snap, now_s);
    if (st == NeighborState::kNone) return &s;
    if (st == NeighborState::kIncomplete && now_s - std::min(now_s, s.last_request) >= kFailedHoldS)
      return &s;  // abandoned resolution
    if (snap.since < best_since) {
      best_since = snap.since;
      best = &s;
    }
  }
  return best;
}

void Router::learn(be32 ip, const MacAddr& mac, uint32_t now_s, bool create) {
  Slot* s = find(ip);
  if (!s) {
    if (!create) return;
    s = victim(ip, now_s);
  }
  write(*s, ip.raw(), mac, Stored::kReachable, now_s);
  s->probes = 0;
}

ArpVerdict Router::on_arp(uint16_t port, const ArpView& a, uint32_t now_s, uint8_t* reply) {
  if (port >= port_count()) return ArpVerdict::kIgnored;
  const bool for_us =
      address_on(port, a.target_ip) != nullptr ||
      (std::binary_search(service_addrs_.begin(), service_addrs_.end(), a.target_ip,
                          [](be32 x, be32 y) { return x.raw() < y.raw(); }) &&
       subnet_on(port, a.target_ip) != nullptr);
  // Learn only plausible neighbours: a unicast MAC and an address of this port's subnets that
  // is not ours (ARP probes have sender 0.0.0.0 and teach nothing).
  const bool learnable = a.sender_ip.raw() != 0 && !a.sender_mac.is_multicast() &&
                         subnet_on(port, a.sender_ip) && !is_local(a.sender_ip);
  bool learned = false;
  if (learnable) {
    if (for_us) {
      learn(a.sender_ip, a.sender_mac, now_s, true);
      learned = true;
    } else if (find(a.sender_ip)) {
      learn(a.sender_ip, a.sender_mac, now_s, false);  // RFC 826 merge
      learned = true;
    }
  }
  if (for_us && a.op == 1) {
    const MacAddr& mine = port_macs_[port];
    build_arp_frame(reply, 2, a.sender_mac, mine, mine, a.target_ip, a.sender_mac, a.sender_ip);
    return ArpVerdict::kReply;
  }
  return learned ? ArpVerdict::kLearned : ArpVerdict::kIgnored;
}

bool Router::solicit(uint16_t port, be32 ip, uint32_t now_s, uint8_t* request) {
  if (port >= port_count()) return false;
  const L3Interface* src = subnet_on(port, ip);
  if (!src) {
    for (const L3Interface& x : ifs_)
      if (x.port == port) {
        src = &x;
        break;
      }
  }
  if (!src) return false;  // no address to ask from (Router::build refuses such routes)

  Slot* s = find(ip);
  bool send = false;
  if (s) {
    Snapshot snap = read(*s);
    switch (derived(snap, now_s)) {
      case NeighborState::kReachable:
      case NeighborState::kFailed:
        return false;
      case NeighborState::kStale:  // refresh, at most once per kRetryS
        if (now_s - std::min(now_s, s->last_request) < kRetryS) return false;
        s->last_request = now_s;
        send = true;
        break;
      case NeighborState::kIncomplete:
        if (now_s - std::min(now_s, s->last_request) < kRetryS) return false;
        if (s->probes >= kMaxProbes) {
          write(*s, ip.raw(), MacAddr{}, Stored::kFailed, now_s);
          return false;
        }
        s->probes++;
        s->last_request = now_s;
        send = true;
        break;
      case NeighborState::kNone:  // forgotten: start over in the same slot
        break;
    }
  }
  if (!send) {
    if (!s) s = victim(ip, now_s);
    write(*s, ip.raw(), MacAddr{}, Stored::kIncomplete, now_s);
    s->probes = 1;
    s->last_request = now_s;
  }
  const MacAddr& mine = port_macs_[port];
  build_arp_frame(request, 1, kBroadcast, mine, mine, src->addr, MacAddr{}, ip);
  return true;
}

}  // namespace baton
