// SPDX-License-Identifier: Apache-2.0
//
// PortAllocator: block leases per host, per-protocol port spaces, per-worker partition (and
// port_owner() agreeing with it), exhaustion, hold-down recycling, paired pooling, reservation,
// checked against fixture tables and against a model under random churn.
#include "nat/port_allocator.h"

#include <gtest/gtest.h>

#include <map>
#include <random>
#include <set>
#include <tuple>
#include <vector>

#include "nat_test_util.h"

namespace baton {
namespace {

using namespace nattest;

PortAllocator::Params small(uint16_t block = 8, uint16_t blocks = 4, uint16_t max_per_host = 2) {
  PortAllocator::Params p;
  p.addresses = {ip4("198.51.100.1")};
  p.layout.port_lo = 2000;
  p.layout.port_hi = static_cast<uint16_t>(2000 + block * blocks - 1);
  p.layout.block_size = block;
  p.max_blocks_per_host = max_per_host;
  p.hold_down_s = 100;
  p.preserve_port = false;
  p.preserve_parity = false;
  return p;
}

std::unique_ptr<PortAllocator> make(const PortAllocator::Params& p) {
  std::string err;
  auto a = PortAllocator::create(p, &err);
  EXPECT_NE(a, nullptr) << err;
  return a;
}

TEST(PortAllocator, RejectsBadParams) {
  struct Case {
    const char* what;
    void (*edit)(PortAllocator::Params&);
    const char* error;
  };
  const Case cases[] = {
      {"no address", [](auto& p) { p.addresses.clear(); }, "no outside address"},
      {"duplicate address", [](auto& p) { p.addresses.push_back(p.addresses[0]); }, "twice"},
      {"port 0", [](auto& p) { p.layout.port_lo = 0; }, "start at 1"},
      {"empty range", [](auto& p) { p.layout.port_lo = 3000; p.layout.port_hi = 2999; }, "empty"},
      {"block 0", [](auto& p) { p.layout.block_size = 0; }, "at least 1"},
      {"block > range", [](auto& p) { p.layout.block_size = 40000; }, "larger than"},
      {"worker >= workers", [](auto& p) { p.worker = 2; p.workers = 2; }, "worker 2 of 2"},
      {"no workers", [](auto& p) { p.workers = 0; }, "worker 0 of 0"},
      {"more workers than blocks", [](auto& p) { p.workers = 5; }, "4 port blocks cannot"},
      {"zero blocks per host", [](auto& p) { p.max_blocks_per_host = 0; }, "max blocks"},
  };
  for (const Case& c : cases) {
    PortAllocator::Params p = small();
    c.edit(p);
    std::string err;
    EXPECT_EQ(PortAllocator::create(p, &err), nullptr) << c.what;
    EXPECT_NE(err.find(c.error), std::string::npos) << c.what << ": " << err;
  }
  EXPECT_NE(make(small()), nullptr);
}

TEST(PortAllocator, PortOwnerFollowsBlocksRoundRobin) {
  struct Case {
    uint16_t port, lo, hi, block, workers;
    int owner;
  };
  const Case cases[] = {
      {1024, 1024, 65535, 64, 2, 0},   {1087, 1024, 65535, 64, 2, 0},
      {1088, 1024, 65535, 64, 2, 1},   {1152, 1024, 65535, 64, 2, 0},
      {1023, 1024, 65535, 64, 2, -1},  // below the range
      {65535, 1024, 65535, 64, 2, 1},  // 64512 ports = 1008 whole blocks: 65535 is in block 1007
      {65535, 1024, 65535, 100, 3, -1},  // tail past the last whole block
      {65499, 1024, 65535, 100, 3, 644 % 3},
      {5000, 1, 65535, 1, 4, 4999 % 4},
      {30000, 1024, 65535, 64, 1, 0},
  };
  for (const Case& c : cases) {
    PortBlockLayout l{c.lo, c.hi, c.block};
    EXPECT_EQ(port_owner(c.port, l, c.workers), c.owner) << c.port << " " << c.block;
  }
}

TEST(PortAllocator, HostGetsAnotherBlockWhenFullUpToItsLimit) {
  auto a = make(small(/*block=*/8, /*blocks=*/4, /*max_per_host=*/2));
  const be32 h = ip4("10.0.0.1");
  std::set<uint16_t> ports;
  for (int i = 0; i < 16; ++i) {
    auto r = a->allocate(kUdp, h, port(5000), 0);
    ASSERT_TRUE(r.ok()) << i << " " << port_alloc_status_name(r.status);
    EXPECT_TRUE(ports.insert(r.port.host()).second);
    EXPECT_EQ(a->stats().blocks_leased, i < 8 ? 1u : 2u) << i;
  }
  // Two whole blocks: 16 ports in two aligned runs of 8.
  std::set<uint32_t> blocks;
  for (uint16_t p : ports) blocks.insert((p - 2000) / 8);
  EXPECT_EQ(blocks.size(), 2u);
  auto r = a->allocate(kUdp, h, port(5000), 0);
  EXPECT_EQ(r.status, PortAllocStatus::kHostLimit);
  EXPECT_EQ(a->stats().fail_host_limit, 1u);
  // Another protocol has its own space in the same blocks; another host its own blocks.
  EXPECT_TRUE(a->allocate(kTcp, h, port(5000), 0).ok());
  EXPECT_EQ(a->stats().blocks_leased, 2u);
  EXPECT_TRUE(a->allocate(kUdp, ip4("10.0.0.2"), port(5000), 0).ok());
  EXPECT_EQ(a->stats().blocks_leased, 3u);
  EXPECT_EQ(a->stats().hosts, 2u);
  EXPECT_EQ(a->stats().ports_in_use, 18u);
}

TEST(PortAllocator, ProtocolsHaveSeparatePortSpaces) {
  auto a = make(small());
  const be32 h = ip4("10.0.0.1");
  auto t = a->allocate(kTcp, h, port(7), 0);
  auto u = a->allocate(kUdp, h, port(7), 0);
  auto i = a->allocate(kIcmp, h, port(7), 0);
  ASSERT_TRUE(t.ok() && u.ok() && i.ok());
  EXPECT_EQ(t.port, u.port);  // same block, same cursor start: the same number, no clash
  EXPECT_EQ(t.port, i.port);
  EXPECT_EQ(a->allocate(6 + 100, h, port(7), 0).status, PortAllocStatus::kBadProto);
  EXPECT_TRUE(a->in_use(kTcp, t.addr, t.port));
  EXPECT_TRUE(a->release(kUdp, u.addr, u.port, 0));
  EXPECT_TRUE(a->in_use(kTcp, t.addr, t.port));
  EXPECT_FALSE(a->in_use(kUdp, u.addr, u.port));
  EXPECT_FALSE(a->release(kUdp, u.addr, u.port, 0)) << "double release";
}

TEST(PortAllocator, ExhaustedPoolFailsAndCounts) {
  auto a = make(small(/*block=*/8, /*blocks=*/4, /*max_per_host=*/1));
  for (int h = 1; h <= 4; ++h)
    ASSERT_TRUE(a->allocate(kTcp, ip4("10.0.0." + std::to_string(h)), port(1), 0).ok()) << h;
  auto r = a->allocate(kTcp, ip4("10.0.0.5"), port(1), 0);
  EXPECT_EQ(r.status, PortAllocStatus::kPoolExhausted);
  EXPECT_EQ(a->stats().fail_exhausted, 1u);
  EXPECT_EQ(a->stats().blocks_leased, 4u);
}

TEST(PortAllocator, FreedBlockWaitsOutItsHoldDown) {
  auto a = make(small(/*block=*/8, /*blocks=*/2, /*max_per_host=*/1));
  const be32 h1 = ip4("10.0.0.1"), h2 = ip4("10.0.0.2"), h3 = ip4("10.0.0.3");
  auto p1 = a->allocate(kTcp, h1, port(1), 10);
  auto p2 = a->allocate(kUdp, h1, port(1), 10);
  ASSERT_TRUE(a->allocate(kTcp, h2, port(1), 10).ok());
  ASSERT_TRUE(p1.ok() && p2.ok());
  // Not all of h1's ports are free yet: the block stays h1's.
  ASSERT_TRUE(a->release(kTcp, p1.addr, p1.port, 20));
  EXPECT_EQ(a->stats().blocks_leased, 2u);
  ASSERT_TRUE(a->release(kUdp, p2.addr, p2.port, 30));  // now it is free; hold-down until 130
  EXPECT_EQ(a->stats().blocks_leased, 1u);
  EXPECT_EQ(a->stats().block_releases, 1u);
  EXPECT_EQ(a->stats().hosts, 1u);
  std::vector<PortAllocator::Lease> leases;
  a->for_each_lease(31, [&](const PortAllocator::Lease& l) { leases.push_back(l); });
  ASSERT_EQ(leases.size(), 2u);
  int held = 0;
  for (auto& l : leases)
    if (l.held) {
      ++held;
      EXPECT_EQ(l.host, h1);
      EXPECT_EQ(l.available_at, 130u);
    }
  EXPECT_EQ(held, 1);

  EXPECT_EQ(a->allocate(kTcp, h3, port(1), 129).status, PortAllocStatus::kPoolExhausted);
  auto r = a->allocate(kTcp, h3, port(1), 130);
  ASSERT_TRUE(r.ok());
  EXPECT_EQ((r.port.host() - 2000) / 8, (p1.port.host() - 2000) / 8) << "the freed block";
  leases.clear();
  a->for_each_lease(130, [&](const PortAllocator::Lease& l) { leases.push_back(l); });
  ASSERT_EQ(leases.size(), 2u);
  for (auto& l : leases) EXPECT_FALSE(l.held);
}

TEST(PortAllocator, FreedPortIsNotReusedAtOnce) {
  auto a = make(small(/*block=*/8, /*blocks=*/4, /*max_per_host=*/4));
  const be32 h = ip4("10.0.0.1");
  auto keep = a->allocate(kUdp, h, port(1), 0);  // keeps the block leased
  std::set<uint16_t> seen;
  for (int i = 0; i < 7; ++i) {
    auto r = a->allocate(kUdp, h, port(1), 0);
    ASSERT_TRUE(r.ok());
    EXPECT_TRUE(seen.insert(r.port.host()).second) << "port " << r.port.host() << " reused early";
    ASSERT_TRUE(a->release(kUdp, r.addr, r.port, 0));
  }
  EXPECT_EQ(seen.size(), 7u);  // went round the whole block before coming back
  EXPECT_EQ(seen.count(keep.port.host()), 0u);
}

TEST(PortAllocator, PreservesTheInsidePortWhenItsBlockIsHeld) {
  PortAllocator::Params p = small(/*block=*/8, /*blocks=*/4, /*max_per_host=*/4);
  p.preserve_port = true;
  auto a = make(p);
  const be32 h = ip4("10.0.0.1");
  auto first = a->allocate(kTcp, h, port(40000), 0);  // not in any block: any port
  ASSERT_TRUE(first.ok());
  const uint16_t base = static_cast<uint16_t>(first.port.host() / 8 * 8);
  const uint16_t want = static_cast<uint16_t>(base + 5);
  auto r = a->allocate(kTcp, h, port(want), 0);
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(r.port.host(), want);
  EXPECT_EQ(a->stats().preserved, 1u);
  // Taken now: the next one with the same inside port gets another.
  EXPECT_NE(a->allocate(kTcp, h, port(want), 0).port.host(), want);
  // Another host's block is not used for preservation.
  auto other = a->allocate(kTcp, ip4("10.0.0.2"), port(want), 0);
  EXPECT_NE(other.port.host(), want);
}

TEST(PortAllocator, ReserveTakesAFixedPortOrSaysWhyNot) {
  PortAllocator::Params p = small(/*block=*/8, /*blocks=*/4, /*max_per_host=*/1);
  p.addresses.push_back(ip4("198.51.100.2"));
  p.workers = 2;
  p.worker = 0;  // owns blocks 0 and 2: ports 2000-2007, 2016-2023
  auto a = make(p);
  const be32 x1 = p.addresses[0], x2 = p.addresses[1];
  const be32 h1 = ip4("10.0.0.1"), h2 = ip4("10.0.0.2");
  EXPECT_EQ(a->reserve(kTcp, h1, x1, port(2003)), PortAllocStatus::kOk);
  EXPECT_TRUE(a->in_use(kTcp, x1, port(2003)));
  EXPECT_EQ(a->reserve(kTcp, h1, x1, port(2003)), PortAllocStatus::kInUse);
  EXPECT_EQ(a->reserve(kUdp, h1, x1, port(2003)), PortAllocStatus::kOk);
  EXPECT_EQ(a->reserve(kTcp, h2, x1, port(2004)), PortAllocStatus::kInUse) << "h1's block";
  EXPECT_EQ(a->reserve(kTcp, h1, x1, port(2010)), PortAllocStatus::kNotOwned) << "worker 1's";
  EXPECT_EQ(a->reserve(kTcp, h1, ip4("203.0.113.9"), port(2003)), PortAllocStatus::kNotOwned);
  EXPECT_EQ(a->reserve(kTcp, h1, x2, port(2003)), PortAllocStatus::kAddrConflict);
  EXPECT_EQ(a->reserve(kTcp, h1, x1, port(2016)), PortAllocStatus::kHostLimit);
  EXPECT_EQ(a->reserve(kTcp, h2, x1, port(2017)), PortAllocStatus::kOk);
  // Reserved blocks left the free FIFO: no block of x1 is left for a third host on x1.
  auto r = a->allocate(kTcp, ip4("10.0.0.3"), port(1), 0);
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(r.addr, x2);
  EXPECT_TRUE(a->release(kTcp, x1, port(2003), 0));
  EXPECT_TRUE(a->release(kUdp, x1, port(2003), 0));
  EXPECT_EQ(a->stats().ports_in_use, 2u);
}

TEST(PortAllocator, WorkersPartitionThePoolAndPortOwnerAgrees) {
  for (uint16_t workers : {1, 2, 3, 4}) {
    PortAllocator::Params p = small(/*block=*/4, /*blocks=*/12, /*max_per_host=*/3);
    p.addresses.push_back(ip4("198.51.100.2"));
    p.workers = workers;
    std::set<std::tuple<uint32_t, uint16_t>> all;
    for (uint16_t w = 0; w < workers; ++w) {
      p.worker = w;
      auto a = make(p);
      ASSERT_TRUE(a);
      uint32_t got = 0;
      for (uint32_t h = 1;; ++h) {  // new hosts until the pool is exhausted
        bool host_ok = false;
        for (;;) {
          auto r = a->allocate(kUdp, be32::from_host(0x0a000000u + h), port(1), 0);
          if (!r.ok()) break;
          host_ok = true;
          ++got;
          EXPECT_EQ(port_owner(r.port.host(), p.layout, workers), w) << r.port.host();
          EXPECT_TRUE(all.emplace(r.addr.raw(), r.port.host()).second)
              << "port handed out twice: " << r.port.host();
        }
        if (!host_ok) break;
      }
      EXPECT_EQ(got, a->owned_blocks() * 4u) << "worker " << w << " of " << workers;
    }
    EXPECT_EQ(all.size(), 2u * 48u) << workers << " workers together hand out every port once";
  }
}

TEST(PortAllocator, PairedPoolingKeepsAHostOnOneAddress) {
  PortAllocator::Params p = small(/*block=*/4, /*blocks=*/8, /*max_per_host=*/8);
  p.addresses = {ip4("198.51.100.1"), ip4("198.51.100.2"), ip4("198.51.100.3")};
  auto a = make(p);
  std::map<uint32_t, std::set<uint32_t>> addrs_of_host;
  for (int round = 0; round < 6; ++round)
    for (uint32_t h = 1; h <= 4; ++h)
      for (int i = 0; i < 4; ++i) {
        auto r = a->allocate(kTcp, be32::from_host(0x0a000000u + h), port(1), 0);
        if (r.ok()) addrs_of_host[h].insert(r.addr.raw());
      }
  for (auto& [h, addrs] : addrs_of_host) EXPECT_EQ(addrs.size(), 1u) << "host " << h;
}

TEST(PortAllocator, PairedHostFailsRatherThanMovingAddress) {
  PortAllocator::Params p = small(/*block=*/4, /*blocks=*/2, /*max_per_host=*/4);
  p.addresses = {ip4("198.51.100.1"), ip4("198.51.100.2")};
  auto a = make(p);
  const be32 h = ip4("10.0.0.1");
  auto first = a->allocate(kTcp, h, port(1), 0);
  ASSERT_TRUE(first.ok());
  // Fill the rest of h's address with other hosts (on a 2-address pool, hosts start on either).
  for (uint32_t o = 2; o < 50; ++o) {
    auto r = a->allocate(kTcp, be32::from_host(0x0a000000u + o), port(1), 0);
    if (!r.ok()) break;
  }
  for (int i = 0; i < 3; ++i) ASSERT_TRUE(a->allocate(kTcp, h, port(1), 0).ok());  // block full
  auto r = a->allocate(kTcp, h, port(1), 0);
  EXPECT_EQ(r.status, PortAllocStatus::kPoolExhausted);
}

TEST(PortAllocator, RandomChurnMatchesAModel) {
  PortAllocator::Params p = small(/*block=*/16, /*blocks=*/32, /*max_per_host=*/3);
  p.addresses.push_back(ip4("198.51.100.2"));
  p.hold_down_s = 5;
  p.preserve_port = true;
  p.preserve_parity = true;
  auto a = make(p);
  std::mt19937 rng(42);
  // (proto, addr, port) -> host
  std::map<std::tuple<uint8_t, uint32_t, uint16_t>, uint32_t> live;
  const uint8_t protos[] = {kTcp, kUdp, kIcmp};
  uint32_t now = 0;
  for (int step = 0; step < 20000; ++step) {
    if (step % 100 == 0) ++now;
    if (live.empty() || rng() % 3 != 0) {
      const uint32_t h = 1 + rng() % 40;
      const uint8_t proto = protos[rng() % 3];
      auto r = a->allocate(proto, be32::from_host(0x0a000000u + h), port(1000 + rng() % 64), now);
      if (!r.ok()) continue;
      auto [it, fresh] = live.emplace(std::make_tuple(proto, r.addr.raw(), r.port.host()), h);
      ASSERT_TRUE(fresh) << "port overloading at step " << step;
      // Paired: every live port of h is on one address.
      for (auto& [k, host] : live) {
        if (host == h) {
          ASSERT_EQ(std::get<1>(k), r.addr.raw());
        }
      }
    } else {
      auto it = live.begin();
      std::advance(it, rng() % live.size());
      auto [proto, addr, prt] = it->first;
      ASSERT_TRUE(a->release(proto, be32::from_raw(addr), port(prt), now));
      live.erase(it);
    }
    ASSERT_EQ(a->stats().ports_in_use, live.size());
  }
  std::set<uint32_t> hosts;
  for (auto& [k, h] : live) hosts.insert(h);
  EXPECT_EQ(a->stats().hosts, hosts.size());
  EXPECT_EQ(a->stats().allocs - a->stats().releases, live.size());
}

}  // namespace
}  // namespace baton
