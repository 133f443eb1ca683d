// SPDX-License-Identifier: Apache-2.0
//
// NatMappingTable under one EAL (--no-huge) for the whole nat_test binary: create and lookup both
// ways, static and port-forward keys, capacity, session counting and expiry, VM listing, record
// round trip, then the concurrent contracts (seqlock copies, no slot reuse while a reader that
// may hold it is online) with std::thread readers on a QSBR variable.
#include "nat/nat_mapping_table.h"
#include "nat/conn_xlate.h"

#include <gtest/gtest.h>
#include <rte_eal.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <set>
#include <thread>

#include "nat_table_fixture.h"
#include "tests/support/eal_env.h"

namespace baton {
namespace {

using namespace nattest;

::testing::Environment* const kEal =
    ::testing::AddGlobalTestEnvironment(new EalEnv("nat_test", 256, {"-l", "0"}));

using NatMappingTableTest = NatTableTest;

// The translation index keeps reply keys in their 16-byte IPv4 form: a key finds its slot alone
// and in a bulk lookup, an IPv6 key with the same bytes finds nothing and cannot be added, and
// a removed key is gone.
TEST_F(NatTableTest, ReplyKeysInTheirIpv4Form) {
  std::string err;
  ConnTable::Params tp;
  tp.name = "xt_conns";
  tp.capacity = 64;
  tp.rcu = rcu_;
  tp.ext_bytes = sizeof(XlateRewrite);
  auto conns = ConnTable::create(tp, &err);
  ASSERT_TRUE(conns) << err;
  auto t = ConnXlateTable::create("xt_test", *conns, 64, SOCKET_ID_ANY, &err);
  ASSERT_TRUE(t) << err;
  auto key = [](uint32_t i, Family f) {
    Tuple tu;
    tu.family = f;
    tu.proto = 6;
    tu.vlan = 7;
    tu.src = IpAddr::v4(be32::from_host(0xc0a80000u + i));
    tu.dst = IpAddr::v4(be32::from_host(0x0a000001u));
    tu.sport = be16::from_host(static_cast<uint16_t>(1000 + i));
    tu.dport = be16::from_host(80);
    return FlowKey::from_tuple(tu, nullptr);
  };
  int rc = 0;
  for (uint32_t i = 0; i < 40; i++) ASSERT_TRUE(t->add_reply(key(i, Family::kV4), 100 - i, &rc)) << rc;
  EXPECT_FALSE(t->add_reply(key(3, Family::kV4), 5, &rc));
  EXPECT_EQ(rc, -EEXIST);
  EXPECT_FALSE(t->add_reply(key(50, Family::kV6), 5, &rc));
  EXPECT_EQ(rc, -EINVAL);
  EXPECT_EQ(t->size(), 40u);
  std::vector<FlowKey> ks;
  for (uint32_t i = 0; i < 48; i++) ks.push_back(key(i, i % 4 == 3 ? Family::kV6 : Family::kV4));
  std::vector<const FlowKey*> ps;
  for (auto& k : ks) ps.push_back(&k);
  std::vector<int32_t> slots(ks.size(), -2);
  t->lookup_reply_bulk(ps.data(), static_cast<uint32_t>(ps.size()), slots.data());
  // The worker's form: its own signatures (ConnTable::hash), which the index takes here.
  EXPECT_TRUE(t->takes_signatures());
  std::vector<hash_sig_t> sigs;
  for (auto& k : ks) sigs.push_back(ConnTable::hash(k));
  std::vector<int32_t> signed_slots(ks.size(), -2);
  t->lookup_reply_bulk(ps.data(), sigs.data(), static_cast<uint32_t>(ps.size()),
                       signed_slots.data());
  for (uint32_t i = 0; i < ks.size(); i++) {
    const int32_t want = (i < 40 && i % 4 != 3) ? static_cast<int32_t>(100 - i) : -1;
    EXPECT_EQ(slots[i], want) << i;
    EXPECT_EQ(signed_slots[i], want) << i;
    EXPECT_EQ(t->lookup_reply(ks[i]), want) << i;
  }
  t->remove_reply(key(0, Family::kV4));
  EXPECT_EQ(t->lookup_reply(key(0, Family::kV4)), -1);
  EXPECT_EQ(t->lookup_reply(key(1, Family::kV4)), 99);
  EXPECT_EQ(t->size(), 39u);
  // The stored form holds the whole key.
  EXPECT_EQ(FlowKeyV4::of(key(9, Family::kV4)).expand(), key(9, Family::kV4));
}

TEST_F(NatMappingTableTest, RejectsBadParams) {
  struct Case {
    const char* what;
    void (*edit)(NatMappingTable::Params&);
    const char* error;
  };
  const Case cases[] = {
      {"long name", [](auto& p) { p.name = "nineteen_characters"; }, "name must be"},
      {"no name", [](auto& p) { p.name.clear(); }, "name must be"},
      {"capacity 0", [](auto& p) { p.capacity = 0; }, "capacity"},
      {"no RCU", [](auto& p) { p.rcu = nullptr; }, "RCU"},
      {"UDP timeout 60 s", [](auto& p) { p.timeouts.udp_s = 60; }, "REQ-5"},
  };
  for (const Case& c : cases) {
    NatMappingTable::Params p;
    p.name = "bad";
    p.capacity = 16;
    p.rcu = rcu_;
    c.edit(p);
    std::string err;
    EXPECT_EQ(NatMappingTable::create(p, &err), nullptr) << c.what;
    EXPECT_NE(err.find(c.error), std::string::npos) << c.what << ": " << err;
  }
}

TEST_F(NatMappingTableTest, CreateThenLookupBothWays) {
  NatMappingTable* t = make();
  ASSERT_TRUE(t);
  auto r = snat(*t, kTcp, "10.0.0.5", 40000, "203.0.113.7", 443, /*now=*/100, /*vm=*/3);
  ASSERT_TRUE(r.ok()) << nat_error_name(r.error);
  NatMapping m;
  ASSERT_TRUE(t->read(r.slot, m));
  EXPECT_EQ(m.type, NatType::kDynamic);
  EXPECT_EQ(m.proto, kTcp);
  EXPECT_EQ(m.inside_addr, ip4("10.0.0.5"));
  EXPECT_EQ(m.inside_port, port(40000));
  EXPECT_EQ(m.outside_addr, ip4("198.51.100.1"));
  EXPECT_GE(m.outside_port.host(), 1024);
  EXPECT_EQ(m.outside_port.host() % 2, 0) << "parity preserved";
  EXPECT_EQ(m.vm_id, 3);
  EXPECT_EQ(m.created, 100u);
  EXPECT_EQ(m.sessions, 0u);
  EXPECT_EQ(m.expires, 100u + 240u);
  ASSERT_EQ(m.peer_count, 1);
  EXPECT_EQ(m.peers[0].addr, ip4("203.0.113.7"));
  EXPECT_EQ(m.version % 2, 0u);
  EXPECT_TRUE(alloc().in_use(kTcp, m.outside_addr, m.outside_port));

  EXPECT_EQ(t->lookup_inside(kTcp, ip4("10.0.0.5"), port(40000), ip4("192.0.2.1"), port(1)), r.slot);
  EXPECT_EQ(t->lookup_outside(kTcp, m.outside_addr, m.outside_port), r.slot);
  EXPECT_EQ(t->lookup_outside(kUdp, m.outside_addr, m.outside_port), -1);
  EXPECT_EQ(t->lookup_inside(kUdp, ip4("10.0.0.5"), port(40000), ip4("192.0.2.1"), port(1)), -1);
  EXPECT_EQ(t->size(), 1u);
  EXPECT_EQ(t->stats().creates, 1u);

  // The same inside endpoint again: refused, with the slot that has it.
  auto again = snat(*t, kTcp, "10.0.0.5", 40000, "192.0.2.9", 80);
  EXPECT_EQ(again.error, NatError::kExists);
  EXPECT_EQ(again.slot, r.slot);
  EXPECT_EQ(alloc().stats().ports_in_use, 1u) << "a refused create takes no port";

  t->remove(static_cast<uint32_t>(r.slot), 200);
  EXPECT_FALSE(t->read(r.slot, m));
  EXPECT_EQ(t->lookup_outside(kTcp, m.outside_addr, m.outside_port), -1);
  EXPECT_EQ(t->lookup_inside(kTcp, ip4("10.0.0.5"), port(40000), ip4("192.0.2.1"), port(1)), -1);
  EXPECT_FALSE(alloc().in_use(kTcp, m.outside_addr, m.outside_port));
  EXPECT_EQ(t->size(), 0u);
}

TEST_F(NatMappingTableTest, StaticAndPortForwardMappingsAreFoundBothWays) {
  NatMappingTable* t = make();
  ASSERT_TRUE(t);
  NatMappingRequest st;
  st.type = NatType::kStatic;
  st.inside_addr = ip4("10.0.0.7");
  st.outside_addr = ip4("198.51.100.77");
  st.vm_id = 1;
  auto s = t->create(st, 0);
  ASSERT_TRUE(s.ok()) << nat_error_name(s.error);

  NatMappingRequest pf;
  pf.type = NatType::kPortForward;
  pf.proto = kTcp;
  pf.inside_addr = ip4("10.0.0.7");
  pf.inside_port = port(8080);
  pf.outside_addr = ip4("198.51.100.77");
  pf.outside_port = port(80);
  auto f = t->create(pf, 0);
  ASSERT_TRUE(f.ok()) << nat_error_name(f.error);

  // Every protocol and port of the address goes through the static mapping, ports unchanged...
  for (uint8_t proto : {kTcp, kUdp, kIcmp}) {
    ASSERT_EQ(t->lookup_inside(proto, ip4("10.0.0.7"), port(5555), ip4("1.2.3.4"), port(9)), s.slot);
    ASSERT_EQ(t->lookup_outside(proto, ip4("198.51.100.77"), port(5555)), s.slot);
    EXPECT_EQ(t->mapping(s.slot).outside_port_for(port(5555)), port(5555));
    EXPECT_EQ(t->mapping(s.slot).inside_port_for(port(5555)), port(5555));
  }
  // ...except where the more specific port forward applies.
  ASSERT_EQ(t->lookup_outside(kTcp, ip4("198.51.100.77"), port(80)), f.slot);
  EXPECT_EQ(t->mapping(f.slot).inside_port_for(port(80)), port(8080));
  ASSERT_EQ(t->lookup_inside(kTcp, ip4("10.0.0.7"), port(8080), ip4("1.2.3.4"), port(9)), f.slot);
  EXPECT_EQ(t->mapping(f.slot).outside_port_for(port(8080)), port(80));
  // Configuration is let in whatever the filtering, and never expires.
  EXPECT_TRUE(t->inbound_allowed(s.slot, ip4("1.2.3.4"), port(9)));
  EXPECT_TRUE(t->inbound_allowed(f.slot, ip4("1.2.3.4"), port(9)));
  EXPECT_EQ(t->expire(kNatNever - 1, 100), 0u);
  EXPECT_EQ(t->size(), 2u);
  EXPECT_EQ(alloc().stats().ports_in_use, 0u) << "configured endpoints are not the pool's";
  // A port forward clashing with another outside endpoint is refused.
  pf.inside_port = port(8081);
  EXPECT_EQ(t->create(pf, 0).error, NatError::kOutsideInUse);
  // Bad requests.
  NatMappingRequest bad = pf;
  bad.proto = kIcmp;
  EXPECT_EQ(t->create(bad, 0).error, NatError::kInvalid);
  bad = st;
  bad.vm_id = 99;
  EXPECT_EQ(t->create(bad, 0).error, NatError::kInvalid);

  t->remove(static_cast<uint32_t>(s.slot), 0);
  EXPECT_EQ(t->lookup_outside(kUdp, ip4("198.51.100.77"), port(5555)), -1);
  EXPECT_EQ(t->lookup_outside(kTcp, ip4("198.51.100.77"), port(80)), f.slot);
}

TEST_F(NatMappingTableTest, PortForwardIsFoundUnderAddressDependentMapping) {
  Options o;
  o.policy.mapping = MappingBehavior::kAddressAndPortDependent;
  NatMappingTable* t = make(o);
  ASSERT_TRUE(t);
  NatMappingRequest pf;
  pf.type = NatType::kPortForward;
  pf.proto = kUdp;
  pf.inside_addr = ip4("10.0.0.8");
  pf.inside_port = port(53);
  pf.outside_addr = ip4("198.51.100.1");
  pf.outside_port = port(53);
  auto f = t->create(pf, 0);
  ASSERT_TRUE(f.ok());
  EXPECT_EQ(t->lookup_inside(kUdp, ip4("10.0.0.8"), port(53), ip4("8.8.8.8"), port(3333)), f.slot);
  // A dynamic mapping of another port of that host has its own key.
  auto d = snat(*t, kUdp, "10.0.0.8", 5353, "8.8.8.8", 53);
  ASSERT_TRUE(d.ok());
  EXPECT_EQ(t->lookup_inside(kUdp, ip4("10.0.0.8"), port(5353), ip4("8.8.8.8"), port(53)), d.slot);
  EXPECT_EQ(t->lookup_inside(kUdp, ip4("10.0.0.8"), port(5353), ip4("8.8.4.4"), port(53)), -1);
}

TEST_F(NatMappingTableTest, FullTableRefusesAndCostsNoPort) {
  Options o;
  o.capacity = 10;
  NatMappingTable* t = make(o);
  ASSERT_TRUE(t);
  for (int i = 0; i < 10; ++i)
    ASSERT_TRUE(snat(*t, kUdp, "10.0.0.1", static_cast<uint16_t>(1000 + i), "192.0.2.1", 53).ok());
  auto r = snat(*t, kUdp, "10.0.0.1", 2000, "192.0.2.1", 53);
  EXPECT_EQ(r.error, NatError::kTableFull);
  EXPECT_EQ(t->stats().full, 1u);
  EXPECT_EQ(alloc().stats().ports_in_use, 10u);
  EXPECT_EQ(t->capacity(), 10u);
}

TEST_F(NatMappingTableTest, PortFailuresAreReportedByReason) {
  Options o;
  o.alloc.layout = PortBlockLayout{2000, 2015, 4};  // 4 blocks of 4 ports
  o.alloc.max_blocks_per_host = 1;
  NatMappingTable* t = make(o);
  ASSERT_TRUE(t);
  for (int i = 0; i < 4; ++i)
    ASSERT_TRUE(snat(*t, kUdp, "10.0.0.1", static_cast<uint16_t>(1000 + i), "192.0.2.1", 53).ok());
  EXPECT_EQ(snat(*t, kUdp, "10.0.0.1", 999, "192.0.2.1", 53).error, NatError::kHostLimit);
  for (int h = 2; h <= 4; ++h)
    ASSERT_TRUE(snat(*t, kUdp, "10.0.0." + std::to_string(h), 1, "192.0.2.1", 53).ok());
  EXPECT_EQ(snat(*t, kUdp, "10.0.0.5", 1, "192.0.2.1", 53).error, NatError::kPoolExhausted);
  EXPECT_EQ(t->stats().port_failures, 2u);
  EXPECT_EQ(snat(*t, 47, "10.0.0.5", 1, "192.0.2.1", 53).error, NatError::kInvalid);
}

TEST_F(NatMappingTableTest, SessionsHoldTheMappingAndTheLastOneStartsItsTimer) {
  NatMappingTable* t = make();
  ASSERT_TRUE(t);
  auto r = snat(*t, kUdp, "10.0.0.1", 5000, "192.0.2.1", 53, /*now=*/0);
  ASSERT_TRUE(r.ok());
  const uint32_t s = static_cast<uint32_t>(r.slot);
  t->session_ref(s, 10);
  t->session_ref(s, 20);
  EXPECT_EQ(t->mapping(s).sessions, 2u);
  EXPECT_EQ(t->mapping(s).expires, kNatNever);
  EXPECT_EQ(t->expire(100000, 100), 0u);
  t->session_unref(s, 30);
  EXPECT_EQ(t->mapping(s).expires, kNatNever);
  t->session_unref(s, 40);
  EXPECT_EQ(t->mapping(s).sessions, 0u);
  EXPECT_EQ(t->mapping(s).expires, 40u + 300u);
  t->session_unref(s, 50);  // ignored
  EXPECT_EQ(t->mapping(s).sessions, 0u);
  EXPECT_EQ(t->expire(339, 100), 0u);
  std::vector<uint32_t> seen;
  EXPECT_EQ(t->expire(340, 100, [&](uint32_t slot) { seen.push_back(slot); }), 1u);
  EXPECT_EQ(seen, std::vector<uint32_t>{s});
  EXPECT_EQ(t->size(), 0u);
  EXPECT_EQ(alloc().stats().ports_in_use, 0u);
  EXPECT_EQ(t->stats().expired, 1u);
}

TEST_F(NatMappingTableTest, ExpiryIsPerProtocolAndBoundedPerCall) {
  NatMappingTable* t = make();
  ASSERT_TRUE(t);
  for (int i = 0; i < 30; ++i) {
    ASSERT_TRUE(snat(*t, kTcp, "10.0.0.1", static_cast<uint16_t>(1000 + i), "192.0.2.1", 80, 0).ok());
    ASSERT_TRUE(snat(*t, kUdp, "10.0.0.1", static_cast<uint16_t>(1000 + i), "192.0.2.1", 53, 0).ok());
    ASSERT_TRUE(snat(*t, kIcmp, "10.0.0.1", static_cast<uint16_t>(1000 + i), "192.0.2.1", 0, 0).ok());
  }
  EXPECT_EQ(t->expire(59, 1000), 0u);
  const uint32_t first = t->expire(60, 7);  // at most 7 list heads looked at
  EXPECT_GT(first, 0u);
  EXPECT_LE(first, 7u);
  EXPECT_EQ(first + t->expire(60, 1000), 30u) << "ICMP: 60 s";
  EXPECT_EQ(t->expire(240, 1000), 30u) << "TCP: 240 s";
  EXPECT_EQ(t->size(), 30u);
  EXPECT_EQ(t->expire(300, 1000), 30u) << "UDP: 300 s";
  EXPECT_EQ(t->size(), 0u);
  EXPECT_EQ(alloc().stats().ports_in_use, 0u);
}

TEST_F(NatMappingTableTest, ListsTheMappingsOfOneVm) {
  NatMappingTable* t = make();
  ASSERT_TRUE(t);
  std::set<int32_t> vm2;
  for (int i = 0; i < 40; ++i) {
    auto r = snat(*t, kTcp, "10.0.0." + std::to_string(1 + i % 4), static_cast<uint16_t>(2000 + i),
                  "192.0.2.1", 80, 0, static_cast<uint16_t>(1 + i % 3));
    ASSERT_TRUE(r.ok());
    if (i % 3 == 1) vm2.insert(r.slot);
  }
  auto listed = [&](uint16_t vm) {
    std::set<int32_t> s;
    t->for_each_in_vm(vm, [&](uint32_t slot) { EXPECT_TRUE(s.insert(static_cast<int32_t>(slot)).second); });
    return s;
  };
  EXPECT_EQ(listed(2), vm2);
  EXPECT_EQ(t->vm_count(2), vm2.size());
  // Remove every other one (head, middle and tail positions of the list).
  int k = 0;
  for (auto it = vm2.begin(); it != vm2.end(); ++k) {
    if (k % 2 == 0) {
      t->remove(static_cast<uint32_t>(*it), 0);
      it = vm2.erase(it);
    } else {
      ++it;
    }
  }
  EXPECT_EQ(listed(2), vm2);
  EXPECT_EQ(t->vm_count(2), vm2.size());
  uint32_t all = 0;
  t->for_each([&](uint32_t) { ++all; });
  EXPECT_EQ(all, t->size());
  EXPECT_TRUE(listed(0).empty());
  EXPECT_TRUE(listed(100).empty());
}

TEST_F(NatMappingTableTest, RecordRoundTripsIntoAnotherTable) {
  NatMappingTable* a = make();
  ASSERT_TRUE(a);
  auto r = snat(*a, kUdp, "10.0.0.1", 5000, "192.0.2.1", 53, 5, 2);
  ASSERT_TRUE(r.ok());
  a->session_ref(r.slot, 6);
  a->note_outbound(r.slot, ip4("192.0.2.2"), port(123), 7);
  NatMapping rec;
  ASSERT_TRUE(a->read(r.slot, rec));

  NatMappingTable* b = make();  // its own allocator, the same pool
  ASSERT_TRUE(b);
  auto ins = b->insert(rec, 50);
  ASSERT_TRUE(ins.ok()) << nat_error_name(ins.error);
  NatMapping got;
  ASSERT_TRUE(b->read(ins.slot, got));
  EXPECT_EQ(std::memcmp(&got, &rec, sizeof rec), 0) << "every field kept";
  EXPECT_TRUE(alloc().in_use(kUdp, rec.outside_addr, rec.outside_port)) << "port reserved";
  EXPECT_EQ(b->lookup_outside(kUdp, rec.outside_addr, rec.outside_port), ins.slot);
  EXPECT_EQ(b->insert(rec, 50).error, NatError::kExists);
  // Its outside endpoint is taken: another host cannot have it.
  NatMapping other = rec;
  other.inside_addr = ip4("10.0.0.2");
  EXPECT_EQ(b->insert(other, 50).error, NatError::kOutsideInUse);
  // The session ends at b: the timer starts there.
  b->session_unref(ins.slot, 60);
  EXPECT_EQ(b->mapping(ins.slot).expires, 360u);
}

// ---- concurrency -------------------------------------------------------------------------------

TEST_F(NatMappingTableTest, ConcurrentReaderNeverSeesATornRecord) {
  NatMappingTable* t = make();
  ASSERT_TRUE(t);
  auto r = snat(*t, kUdp, "10.0.0.1", 5000, "192.0.2.1", 53);
  ASSERT_TRUE(r.ok());
  const uint32_t slot = static_cast<uint32_t>(r.slot);
  std::atomic<bool> stop{false};

  // The owner: note_outbound(n) writes peer n at the front and last_used = n; every copy must
  // show peers[0] = n, peers[1] = n - 1 and last_used = n together.
  std::thread writer([&] {
    for (uint32_t n = 2; !stop.load(std::memory_order_relaxed); ++n) {
      t->note_outbound(slot, be32::from_host(n), port(static_cast<uint16_t>(n)), n);
      if (n % 64 == 0) {  // and some session churn, which moves the mapping on and off its list
        t->session_ref(slot, n);
        t->session_unref(slot, n);
      }
      for (int p = 0; p < 16; ++p) rte_pause();
    }
  });
  uint64_t reads = 0, torn = 0, changes = 0;
  std::thread reader([&] {
    rte_rcu_qsbr_thread_register(rcu_, 1);
    rte_rcu_qsbr_thread_online(rcu_, 1);
    uint32_t last = 0;
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(4);
    for (; (reads < 2'000'000 || changes < 1000) && std::chrono::steady_clock::now() < deadline;
         ++reads) {
      NatMapping m;
      if (!t->read(slot, m)) {
        ++torn;
        continue;
      }
      const uint32_t n = m.last_used;
      const bool ok = m.version % 2 == 0 &&
                      (n < 2 || (m.peers[0].addr.host() == n &&
                                 m.peers[0].port.host() == static_cast<uint16_t>(n) &&
                                 (n < 3 || m.peers[1].addr.host() == n - 1))) &&
                      m.inside_port == port(5000) && m.peer_count <= kNatMaxPeers;
      if (!ok) ++torn;
      if (n != last) ++changes;
      last = n;
      if ((reads & 1023) == 0) rte_rcu_qsbr_quiescent(rcu_, 1);
    }
    rte_rcu_qsbr_thread_offline(rcu_, 1);
    rte_rcu_qsbr_thread_unregister(rcu_, 1);
  });
  reader.join();
  stop.store(true);
  writer.join();
  EXPECT_EQ(torn, 0u) << "of " << reads << " reads";
  EXPECT_GT(changes, 10u) << "the reader never overlapped the writer; the test proves nothing";
}

TEST_F(NatMappingTableTest, RemovedSlotIsNotReusedWhileAReaderIsOnline) {
  Options o;
  o.capacity = 16;
  o.alloc.hold_down_s = 0;  // the clock stands still here; let emptied blocks come back
  NatMappingTable* t = make(o);
  ASSERT_TRUE(t);
  auto victim = snat(*t, kUdp, "10.0.0.1", 5000, "192.0.2.1", 53);
  ASSERT_TRUE(victim.ok());
  std::atomic<int> phase{0};  // 1: reader online holding the victim; 2: may go quiescent; 3: gone
  std::thread reader([&] {
    rte_rcu_qsbr_thread_register(rcu_, 2);
    rte_rcu_qsbr_thread_online(rcu_, 2);
    NatMapping m;
    EXPECT_TRUE(t->read(victim.slot, m));
    phase.store(1);
    while (phase.load() < 2) std::this_thread::yield();
    rte_rcu_qsbr_quiescent(rcu_, 2);
    rte_rcu_qsbr_thread_offline(rcu_, 2);
    rte_rcu_qsbr_thread_unregister(rcu_, 2);
    phase.store(3);
  });
  struct Release {
    std::thread& th;
    std::atomic<int>& ph;
    ~Release() {
      if (ph.load() < 2) ph.store(2);
      if (th.joinable()) th.join();
    }
  } release{reader, phase};
  while (phase.load() < 1) std::this_thread::yield();

  t->remove(static_cast<uint32_t>(victim.slot), 0);
  EXPECT_EQ(t->mapping(victim.slot).inside_port, port(5000)) << "record intact for the reader";
  uint32_t stalls = 0;
  for (int i = 0; i < 600; ++i) {
    auto r = snat(*t, kUdp, "10.0.0.2", static_cast<uint16_t>(1000 + i), "192.0.2.1", 53);
    if (!r.ok()) {
      ASSERT_EQ(r.error, NatError::kReclaimStall) << i;
      ++stalls;
      continue;
    }
    ASSERT_NE(r.slot, victim.slot) << "slot reused while a reader that held it was online";
    t->remove(static_cast<uint32_t>(r.slot), 0);
  }
  EXPECT_GT(stalls, 0u);
  EXPECT_EQ(alloc().stats().ports_in_use, 0u) << "stalled creates gave their ports back";

  phase.store(2);
  while (phase.load() < 3) std::this_thread::yield();
  bool reused = false;
  for (uint32_t i = 0; i < 2 * t->slots() && !reused; ++i) {
    auto r = snat(*t, kUdp, "10.0.0.3", static_cast<uint16_t>(1000 + i % 50000), "192.0.2.1", 53);
    ASSERT_TRUE(r.ok()) << "no slot reclaimed after the reader went quiescent";
    reused = r.slot == victim.slot;
    t->remove(static_cast<uint32_t>(r.slot), 0);
  }
  EXPECT_TRUE(reused);
}

}  // namespace
}  // namespace baton
