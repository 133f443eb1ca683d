// SPDX-License-Identifier: Apache-2.0
//
// The pure Router (mode l3): longest prefix match, connected and next-hop routes, the ARP
// neighbour table's states and expiry, ARP replies and requests byte for byte, and the RFC 1624
// TTL rewrite against a full checksum recomputation. No EAL, no mbufs.
#include <gtest/gtest.h>

#include <atomic>
#include <cstring>
#include <random>
#include <set>
#include <thread>

#include "config/config.h"
#include "dataplane/router.h"
#include "pktgen/packet_builder.h"

namespace baton {
namespace {

using pktgen::Bytes;
using pktgen::Pkt;

be32 ip(const char* s) {
  Family f;
  return IpAddr::parse(s, &f)->as_v4();
}
MacAddr mac(const char* s) { return *MacAddr::parse(s); }

const MacAddr kMac0 = mac("02:ba:70:00:00:01"), kMac1 = mac("02:ba:70:00:00:02");

// port 0: 192.0.2.1/24; port 1: 198.51.100.1/24 and 10.1.2.1/24.
std::unique_ptr<Router> make(std::vector<RouteEntry> routes = {}) {
  std::vector<L3Interface> ifs = {{0, ip("192.0.2.1"), 24},
                                  {1, ip("198.51.100.1"), 24},
                                  {1, ip("10.1.2.1"), 24}};
  std::string err;
  auto r = Router::build(ifs, routes, {kMac0, kMac1}, &err);
  EXPECT_TRUE(r) << err;
  return r;
}

TEST(RouterLpm, LongestPrefixWins) {
  auto r = make({{ip("0.0.0.0"), 0, 0, ip("192.0.2.254")},
                 {ip("10.0.0.0"), 8, 0, ip("192.0.2.10")},
                 {ip("10.1.0.0"), 16, 1, ip("198.51.100.20")},
                 {ip("10.1.2.128"), 25, 0, ip("192.0.2.11")},
                 {ip("10.1.2.77"), 32, 0, ip("192.0.2.12")}});
  struct Case {
    const char* dst;
    uint8_t len;
    uint16_t port;
    const char* next_hop;
  } cases[] = {
      {"8.8.8.8", 0, 0, "192.0.2.254"},      // default
      {"10.200.0.1", 8, 0, "192.0.2.10"},
      {"10.1.9.9", 16, 1, "198.51.100.20"},
      {"10.1.2.5", 24, 1, "10.1.2.5"},       // connected (from the address)
      {"10.1.2.200", 25, 0, "192.0.2.11"},
      {"10.1.2.77", 32, 0, "192.0.2.12"},
      {"10.1.2.76", 24, 1, "10.1.2.76"},
      {"198.51.100.7", 24, 1, "198.51.100.7"},
      {"192.0.2.99", 24, 0, "192.0.2.99"},
  };
  for (const Case& c : cases) {
    const RouteEntry* e = r->route(ip(c.dst));
    ASSERT_TRUE(e) << c.dst;
    EXPECT_EQ(e->len, c.len) << c.dst;
    EXPECT_EQ(e->port, c.port) << c.dst;
    EXPECT_EQ(e->next_hop(ip(c.dst)), ip(c.next_hop)) << c.dst;
  }
}

TEST(RouterLpm, NoDefaultMeansNoRoute) {
  auto r = make();
  EXPECT_EQ(r->route(ip("8.8.8.8")), nullptr);
  EXPECT_EQ(r->routes().size(), 3u);  // one connected route per address
  ASSERT_TRUE(r->route(ip("10.1.2.9")));
  EXPECT_TRUE(r->route(ip("10.1.2.9"))->connected());
}

TEST(RouterLpm, ExplicitRouteReplacesConnectedOne) {
  auto r = make({{ip("10.1.2.0"), 24, 1, ip("10.1.2.254")}});
  EXPECT_EQ(r->routes().size(), 3u);
  EXPECT_EQ(r->route(ip("10.1.2.9"))->next_hop(ip("10.1.2.9")), ip("10.1.2.254"));
}

// Random tables (nested, overlapping, adjacent prefixes, with and without a default) against
// a plain scan for the longest covering prefix: at every prefix's edges and at random
// addresses.
TEST(RouterLpm, AgreesWithAScanOverEveryPrefix) {
  std::mt19937 rng(11);
  for (int table = 0; table < 200; table++) {
    std::vector<RouteEntry> routes;
    std::set<std::pair<uint8_t, uint32_t>> seen;
    const int n = 1 + static_cast<int>(rng() % 24);
    for (int i = 0; i < n; i++) {
      // Mostly inside 10.0.0.0/8 so that prefixes nest and touch; now and then anywhere.
      const uint8_t len = static_cast<uint8_t>(rng() % 4 == 0 ? rng() % 33 : 8 + rng() % 25);
      uint32_t a = rng() % 3 ? (10u << 24) | (rng() & 0xffffff) : rng();
      a &= len ? ~0u << (32 - len) : 0;
      if (!seen.insert({len, a}).second) continue;
      routes.push_back({be32::from_host(a), len, 0, ip("192.0.2.254")});
    }
    auto r = make(routes);
    ASSERT_TRUE(r);
    auto scan = [&](uint32_t h) -> const RouteEntry* {
      const RouteEntry* best = nullptr;
      for (const RouteEntry& e : r->routes()) {
        const uint32_t m = e.len ? ~0u << (32 - e.len) : 0;
        if ((h & m) == e.net.host() && (!best || e.len > best->len)) best = &e;
      }
      return best;
    };
    std::vector<uint32_t> probes;
    for (const RouteEntry& e : r->routes()) {
      const uint64_t first = e.net.host(), end = first + (uint64_t{1} << (32 - e.len));
      for (uint64_t p : {first - 1, first, first + 1, end - 1, end})
        if (p <= UINT32_MAX) probes.push_back(static_cast<uint32_t>(p));
    }
    for (int i = 0; i < 200; i++) probes.push_back(rng() % 2 ? rng() : (10u << 24) | (rng() & 0xffffff));
    for (uint32_t h : probes)
      ASSERT_EQ(r->route(be32::from_host(h)), scan(h)) << "table " << table << ", address " << h;
  }
}

TEST(RouterBuild, RefusesBadTables) {
  std::vector<L3Interface> ifs = {{0, ip("192.0.2.1"), 24}, {1, ip("198.51.100.1"), 24}};
  std::string err;
  EXPECT_FALSE(Router::build(ifs, {{ip("10.0.0.0"), 8, 0, ip("198.51.100.9")}}, {kMac0, kMac1}, &err));
  EXPECT_NE(err.find("not in a subnet"), std::string::npos) << err;
  EXPECT_FALSE(Router::build(ifs,
                             {{ip("10.0.0.0"), 8, 0, ip("192.0.2.9")},
                              {ip("10.0.0.0"), 8, 1, ip("198.51.100.9")}},
                             {kMac0, kMac1}, &err));
  EXPECT_NE(err.find("duplicate"), std::string::npos) << err;
  EXPECT_FALSE(Router::build({{0, ip("192.0.2.1"), 24}, {1, ip("192.0.2.129"), 25}}, {},
                             {kMac0, kMac1}, &err));
  EXPECT_NE(err.find("overlap"), std::string::npos) << err;
  EXPECT_FALSE(Router::build({{0, ip("192.0.2.1"), 24}}, {{ip("10.0.0.0"), 8, 1, be32()}},
                             {kMac0, kMac1}, &err));
  EXPECT_NE(err.find("no IPv4 address"), std::string::npos) << err;
}

TEST(RouterBuild, FromTheConfigUsersWrite) {
  ConfigError ce;
  auto cfg = parse_config(R"(
mode: l3
ports:
  - {name: up, device: null0, zone: outside}
  - {name: down, device: null1, zone: inside}
zones: [{name: outside}, {name: inside}]
l3:
  addresses:
    - {port: up, address: 10.91.1.1/24}
    - {port: down, address: 10.91.2.1/24}
    - {port: down, address: "2001:db8::1/64"}
  routes:
    - {prefix: 10.50.0.0/16, via: 10.91.2.9, port: down}
    - {prefix: 0.0.0.0/0, via: 10.91.1.254, port: up}
)", "l3.yaml", &ce);
  ASSERT_TRUE(cfg) << ce.to_string();
  std::string err;
  auto r = Router::build(*cfg, {kMac0, kMac1}, &err);
  ASSERT_TRUE(r) << err;
  EXPECT_EQ(r->interfaces().size(), 2u);  // the IPv6 address is not routed
  EXPECT_EQ(r->routes().size(), 4u);
  EXPECT_EQ(r->route(ip("10.50.3.3"))->port, 1);
  EXPECT_EQ(r->route(ip("10.50.3.3"))->next_hop(ip("10.50.3.3")), ip("10.91.2.9"));
  EXPECT_EQ(r->route(ip("1.1.1.1"))->next_hop(ip("1.1.1.1")), ip("10.91.1.254"));
  EXPECT_EQ(r->route(ip("10.91.2.2"))->next_hop(ip("10.91.2.2")), ip("10.91.2.2"));
  EXPECT_TRUE(r->is_local(ip("10.91.1.1")));
  EXPECT_FALSE(r->is_local(ip("10.91.1.2")));
}

// ---- ARP ------------------------------------------------------------------------------------

TEST(RouterArp, AnswersRequestForOurAddressAndLearnsSender) {
  auto r = make();
  ArpView req{1, mac("02:00:00:00:00:aa"), ip("192.0.2.7"), ip("192.0.2.1")};
  uint8_t out[kArpFrameLen];
  ASSERT_EQ(r->on_arp(0, req, 100, out), ArpVerdict::kReply);
  Bytes want = Pkt()
                   .eth("02:ba:70:00:00:01", "02:00:00:00:00:aa")
                   .arp(2, "02:ba:70:00:00:01", "192.0.2.1", "192.0.2.7", "02:00:00:00:00:aa")
                   .build();
  ASSERT_EQ(want.size(), kArpFrameLen);
  EXPECT_EQ(Bytes(out, out + kArpFrameLen), want);
  NeighborLookup n = r->neighbor(ip("192.0.2.7"), 100);
  EXPECT_TRUE(n.usable);
  EXPECT_FALSE(n.solicit);
  EXPECT_EQ(n.mac, mac("02:00:00:00:00:aa"));
}

TEST(RouterArp, IgnoresWhatIsNotOurs) {
  auto r = make();
  uint8_t out[kArpFrameLen];
  // Our address, but asked on the other port: not answered there.
  EXPECT_EQ(r->on_arp(1, {1, mac("02:00:00:00:00:aa"), ip("198.51.100.7"), ip("192.0.2.1")}, 1, out),
            ArpVerdict::kIgnored);
  // Someone else's address.
  EXPECT_EQ(r->on_arp(0, {1, mac("02:00:00:00:00:aa"), ip("192.0.2.7"), ip("192.0.2.8")}, 1, out),
            ArpVerdict::kIgnored);
  EXPECT_EQ(r->neighbor_state(ip("192.0.2.7"), 1), NeighborState::kNone);
  // Sender outside the port's subnets: answered (it asked for us) but not learned.
  EXPECT_EQ(r->on_arp(0, {1, mac("02:00:00:00:00:bb"), ip("203.0.113.5"), ip("192.0.2.1")}, 1, out),
            ArpVerdict::kReply);
  EXPECT_EQ(r->neighbor_state(ip("203.0.113.5"), 1), NeighborState::kNone);
  // An ARP probe (sender 0.0.0.0) for our address is defended, teaches nothing.
  EXPECT_EQ(r->on_arp(0, {1, mac("02:00:00:00:00:cc"), be32(), ip("192.0.2.1")}, 1, out),
            ArpVerdict::kReply);
  EXPECT_EQ(r->neighbors(1).size(), 0u);
}

TEST(RouterArp, MergeUpdatesKnownNeighbourOnly) {
  auto r = make();
  uint8_t out[kArpFrameLen];
  r->on_arp(0, {2, mac("02:00:00:00:00:aa"), ip("192.0.2.7"), ip("192.0.2.1")}, 10, out);
  // Gratuitous ARP (not addressed to us) with a new MAC: a known neighbour moves.
  EXPECT_EQ(r->on_arp(0, {1, mac("02:00:00:00:00:ab"), ip("192.0.2.7"), ip("192.0.2.7")}, 20, out),
            ArpVerdict::kLearned);
  EXPECT_EQ(r->neighbor(ip("192.0.2.7"), 20).mac, mac("02:00:00:00:00:ab"));
  // An unknown one is not created by it.
  EXPECT_EQ(r->on_arp(0, {1, mac("02:00:00:00:00:ac"), ip("192.0.2.8"), ip("192.0.2.8")}, 20, out),
            ArpVerdict::kIgnored);
  EXPECT_EQ(r->neighbor_state(ip("192.0.2.8"), 20), NeighborState::kNone);
}

// ---- neighbour states --------------------------------------------------------------------------

TEST(RouterNeighbor, ReachableThenStaleThenForgotten) {
  auto r = make();
  uint8_t out[kArpFrameLen];
  r->on_arp(0, {2, mac("02:00:00:00:00:aa"), ip("192.0.2.7"), ip("192.0.2.1")}, 1000, out);
  const be32 n = ip("192.0.2.7");
  EXPECT_EQ(r->neighbor_state(n, 1000 + Router::kReachableS - 1), NeighborState::kReachable);
  NeighborLookup l = r->neighbor(n, 1000 + Router::kReachableS);
  EXPECT_EQ(r->neighbor_state(n, 1000 + Router::kReachableS), NeighborState::kStale);
  EXPECT_TRUE(l.usable);
  EXPECT_TRUE(l.solicit);  // a stale entry is used and refreshed
  EXPECT_EQ(l.mac, mac("02:00:00:00:00:aa"));
  // The refresh request goes out at most once per kRetryS.
  uint8_t req[kArpFrameLen];
  EXPECT_TRUE(r->solicit(0, n, 1040, req));
  EXPECT_FALSE(r->solicit(0, n, 1040, req));
  EXPECT_TRUE(r->solicit(0, n, 1041, req));
  // An answer makes it reachable again.
  r->on_arp(0, {2, mac("02:00:00:00:00:aa"), n, ip("192.0.2.1")}, 1042, out);
  EXPECT_EQ(r->neighbor_state(n, 1042), NeighborState::kReachable);
  EXPECT_FALSE(r->solicit(0, n, 1043, req));
  // Never confirmed again: forgotten after kStaleLifetimeS.
  const uint32_t gone = 1042 + Router::kStaleLifetimeS;
  EXPECT_EQ(r->neighbor_state(n, gone - 1), NeighborState::kStale);
  EXPECT_EQ(r->neighbor_state(n, gone), NeighborState::kNone);
  EXPECT_FALSE(r->neighbor(n, gone).usable);
  EXPECT_TRUE(r->neighbor(n, gone).solicit);
}

TEST(RouterNeighbor, ResolutionIsRateLimitedAndFails) {
  auto r = make();
  const be32 n = ip("10.1.2.50");
  uint8_t req[kArpFrameLen];
  EXPECT_FALSE(r->neighbor(n, 0).usable);
  EXPECT_TRUE(r->neighbor(n, 0).solicit);
  ASSERT_TRUE(r->solicit(1, n, 5, req));
  // The request: broadcast, from port 1's MAC and the address of the subnet holding n.
  Bytes want = Pkt()
                   .eth("02:ba:70:00:00:02", "ff:ff:ff:ff:ff:ff")
                   .arp(1, "02:ba:70:00:00:02", "10.1.2.1", "10.1.2.50")
                   .build();
  EXPECT_EQ(Bytes(req, req + kArpFrameLen), want);
  EXPECT_EQ(r->neighbor_state(n, 5), NeighborState::kIncomplete);
  EXPECT_FALSE(r->solicit(1, n, 5, req));  // same second
  EXPECT_TRUE(r->solicit(1, n, 6, req));   // probe 2
  EXPECT_TRUE(r->solicit(1, n, 7, req));   // probe 3
  EXPECT_FALSE(r->solicit(1, n, 8, req));  // kMaxProbes unanswered: failed
  EXPECT_EQ(r->neighbor_state(n, 8), NeighborState::kFailed);
  EXPECT_FALSE(r->neighbor(n, 9).solicit);  // hold-down: readers do not even ask
  EXPECT_FALSE(r->solicit(1, n, 9, req));
  EXPECT_TRUE(r->solicit(1, n, 8 + Router::kFailedHoldS, req));  // starts over
  EXPECT_EQ(r->neighbor_state(n, 8 + Router::kFailedHoldS), NeighborState::kIncomplete);
  // The reply completes it.
  uint8_t out[kArpFrameLen];
  EXPECT_EQ(r->on_arp(1, {2, mac("02:00:00:00:00:50"), n, ip("10.1.2.1")}, 14, out),
            ArpVerdict::kLearned);
  NeighborLookup l = r->neighbor(n, 14);
  EXPECT_TRUE(l.usable);
  EXPECT_EQ(l.mac, mac("02:00:00:00:00:50"));
}

TEST(RouterNeighbor, TableIsBoundedAndKeepsRecentNeighbours) {
  std::string err;
  auto r = Router::build({{0, ip("10.0.0.1"), 16}}, {}, {kMac0}, &err);
  ASSERT_TRUE(r) << err;
  uint8_t out[kArpFrameLen];
  const uint32_t n = Router::kNeighborSlots + 2000;
  for (uint32_t i = 0; i < n; i++) {
    be32 a = be32::from_host(ip("10.0.0.2").host() + i);
    MacAddr m = mac("02:00:00:00:00:00");
    m.b[4] = uint8_t(i >> 8);
    m.b[5] = uint8_t(i);
    r->on_arp(0, {1, m, a, ip("10.0.0.1")}, i / 100, out);
  }
  EXPECT_LE(r->neighbors(n / 100).size(), Router::kNeighborSlots);
  // The last one learned is there with its MAC.
  NeighborLookup l = r->neighbor(be32::from_host(ip("10.0.0.2").host() + n - 1), n / 100);
  ASSERT_TRUE(l.usable);
  EXPECT_EQ(l.mac.b[5], uint8_t(n - 1));
}

// A worker's NeighborCache answers what the table answers, whatever happens between two
// lookups: a neighbour learned, moved to another MAC within the same second, gone stale (a
// refresh request on every use, so not kept), failed, forgotten, evicted. Random events over a
// few addresses, each lookup compared with the table's own answer at that moment.
TEST(RouterNeighbor, CacheAnswersAsTheTable) {
  auto r = make();
  NeighborCache cache;
  std::mt19937 rng(11);
  std::vector<be32> hosts;
  for (int i = 0; i < 12; i++) hosts.push_back(be32::from_host(ip("192.0.2.10").host() + i));
  uint8_t out[kArpFrameLen];
  uint32_t now = 1000;
  uint64_t hits_possible = 0;
  for (int step = 0; step < 20000; step++) {
    const be32 h = hosts[rng() % hosts.size()];
    switch (rng() % 8) {
      case 0: {  // an ARP reply (learn, confirm, or a new MAC for the same address)
        MacAddr m = mac("02:00:00:00:00:00");
        m.b[5] = uint8_t(rng() % 3);
        r->on_arp(0, {2, m, h, ip("192.0.2.1")}, now, out);
        break;
      }
      case 1:
        r->solicit(0, h, now, out);
        break;
      case 2:  // time passes: sometimes a second, sometimes into stale or past the lifetime
        now += (rng() % 4 == 0) ? Router::kReachableS : (rng() % 16 == 0 ? Router::kStaleLifetimeS : 1);
        break;
      default: {
        NeighborLookup want = r->neighbor(h, now), got;
        cache.lookup(*r, h, now, &got);
        ASSERT_EQ(got.usable, want.usable) << "step " << step;
        ASSERT_EQ(got.solicit, want.solicit) << "step " << step;
        if (want.usable) ASSERT_EQ(got.mac, want.mac) << "step " << step;
        hits_possible += want.usable && !want.solicit;
      }
    }
  }
  EXPECT_GT(hits_possible, 1000u);  // the cache had answers to keep
}

// One writer, one reader: the reader never sees a torn MAC (seqlock).
TEST(RouterNeighbor, ReadersNeverSeeTornEntries) {
  auto r = make();
  const be32 n = ip("192.0.2.7");
  const MacAddr a = mac("02:11:11:11:11:11"), b = mac("02:22:22:22:22:22");
  uint8_t out[kArpFrameLen];
  r->on_arp(0, {2, a, n, ip("192.0.2.1")}, 0, out);
  std::atomic<bool> stop{false};
  std::atomic<uint64_t> torn{0}, reads{0};
  std::thread reader([&] {
    while (!stop.load(std::memory_order_relaxed)) {
      NeighborLookup l = r->neighbor(n, 0);
      if (!l.usable || (l.mac != a && l.mac != b)) torn++;
      reads++;
    }
  });
  for (int i = 0; i < 200000; i++) r->on_arp(0, {2, (i & 1) ? b : a, n, ip("192.0.2.1")}, 0, out);
  stop = true;
  reader.join();
  EXPECT_EQ(torn.load(), 0u) << "of " << reads.load() << " reads";
}

// ---- TTL and checksum ----------------------------------------------------------------------------

TEST(RouterRewrite, TtlDecrementMatchesFullRecomputation) {
  std::mt19937 rng(7);
  for (int i = 0; i < 100000; i++) {
    uint8_t h[20];
    for (uint8_t& x : h) x = uint8_t(rng());
    h[0] = 0x45;
    h[8] = uint8_t(2 + rng() % 254);  // ttl > 1
    h[10] = h[11] = 0;
    uint16_t c = pktgen::inet_checksum(h, 20);
    h[10] = uint8_t(c >> 8);
    h[11] = uint8_t(c);
    uint8_t ttl = h[8];
    ipv4_decrement_ttl(h);
    ASSERT_EQ(h[8], ttl - 1);
    uint8_t z[20];
    std::memcpy(z, h, 20);
    z[10] = z[11] = 0;
    uint16_t full = pktgen::inet_checksum(z, 20);
    uint16_t inc = uint16_t(h[10] << 8 | h[11]);
    ASSERT_EQ(inc, full) << "case " << i;
  }
}

TEST(RouterRewrite, TtlDecrementOnRealFrameKeepsItValid) {
  Bytes f = Pkt()
                .eth("02:00:00:00:00:01", "02:ba:70:00:00:01")
                .ipv4("10.91.1.2", "10.91.2.2")
                .ttl(64)
                .tcp(40000, 7000)
                .flags(tcpflag::kSyn)
                .build();
  ipv4_decrement_ttl(f.data() + 14);
  EXPECT_EQ(f[14 + 8], 63);
  EXPECT_TRUE(pktgen::ipv4_checksum_ok(f.data(), f.size()));
  EXPECT_TRUE(pktgen::l4_checksum_ok(f));  // TTL is not in the pseudo-header
}

}  // namespace
}  // namespace baton
