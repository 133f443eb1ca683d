// SPDX-License-Identifier: Apache-2.0
//
// ConnTable under one EAL (--no-huge): single-threaded behaviour against std:: models, then the
// concurrent contracts (seqlock copies, RCU slot reuse, VM walks during churn) with std::thread
// readers registered on a QSBR variable under ids the test assigns.
#include "conntrack/conn_table.h"

#include <gtest/gtest.h>
#include <rte_eal.h>
#include <rte_malloc.h>
#include <rte_rcu_qsbr.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <functional>
#include <cstdio>
#include <map>
#include <random>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "tests/support/eal_env.h"

namespace baton {
namespace {

::testing::Environment* const kEal =
    ::testing::AddGlobalTestEnvironment(new EalEnv("table_test", 512, {"-l", "0"}));

// Key i of VM vm: 10.0.x.y:(1024 + i % 50000) -> 11.0.0.1:(1000 + vm), TCP. The VM is encoded
// in the key so that a reader can check a (key, entry) pair it copied belongs together.
FlowKey make_key(uint32_t i, uint16_t vm = 0) {
  Tuple t;
  t.family = Family::kV4;
  t.proto = static_cast<uint8_t>(IpProto::kTcp);
  t.src = IpAddr::v4(be32::from_host(0x0a000000u | (i & 0xffffff)));
  t.dst = IpAddr::v4(be32::from_host(0x0b000001u));
  t.sport = be16::from_host(static_cast<uint16_t>(1024 + i % 50000));
  t.dport = be16::from_host(static_cast<uint16_t>(1000 + vm));
  return FlowKey::from_tuple(t, nullptr);
}
uint16_t vm_of_key(const FlowKey& k) { return static_cast<uint16_t>(k.hi_port.host() - 1000); }

// IPv6 key i: 2001:db8::<i>:(2000 + i % 50000) -> 2001:db8:1::<vm>:443, UDP; its ports and
// protocol differ from make_key's so that the families do not share tails.
FlowKey make_key6(uint32_t i, uint16_t vm = 0) {
  Tuple t;
  t.family = Family::kV6;
  t.proto = static_cast<uint8_t>(IpProto::kUdp);
  uint8_t a[16] = {0x20, 0x01, 0x0d, 0xb8};
  a[12] = static_cast<uint8_t>(i >> 24); a[13] = static_cast<uint8_t>(i >> 16);
  a[14] = static_cast<uint8_t>(i >> 8); a[15] = static_cast<uint8_t>(i);
  t.src = IpAddr::v6(a);
  uint8_t b[16] = {0x20, 0x01, 0x0d, 0xb8, 0, 1};
  b[15] = static_cast<uint8_t>(vm);
  t.dst = IpAddr::v6(b);
  t.sport = be16::from_host(static_cast<uint16_t>(2000 + i % 50000));
  t.dport = be16::from_host(443);
  return FlowKey::from_tuple(t, nullptr);
}

// Joins on scope exit, so that a failed ASSERT in the test body does not std::terminate.
struct Joiner {
  std::thread& t;
  std::function<void()> before;
  ~Joiner() {
    if (before) before();
    if (t.joinable()) t.join();
  }
};

ConnEntry make_entry(uint16_t vm, uint32_t last_seen = 0, uint8_t age_class = 0,
                     uint64_t tag = 0) {
  ConnEntry e;
  e.vm_id = vm;
  e.last_seen = last_seen;
  e.age_class = age_class;
  e.peer[0].maxwin = static_cast<uint32_t>(tag);
  e.peer[1].maxend = static_cast<uint32_t>(tag * 3);
  return e;
}

class ConnTableTest : public ::testing::Test {
 protected:
  static constexpr uint32_t kRcuThreads = 4;

  void SetUp() override {
    size_t sz = rte_rcu_qsbr_get_memsize(kRcuThreads);
    rcu_ = static_cast<rte_rcu_qsbr*>(rte_zmalloc("test_rcu", sz, RTE_CACHE_LINE_SIZE));
    ASSERT_NE(rcu_, nullptr);
    ASSERT_EQ(rte_rcu_qsbr_init(rcu_, kRcuThreads), 0);
  }
  void TearDown() override { rte_free(rcu_); }

  std::unique_ptr<ConnTable> make(uint32_t capacity, uint16_t max_vms = 16,
                                  uint8_t age_classes = 2, bool accounting = true,
                                  uint32_t capacity_v6 = 64) {
    static int seq = 0;
    ConnTable::Params p;
    p.name = "ct" + std::to_string(seq++);
    p.capacity = capacity;
    p.capacity_v6 = capacity_v6;
    p.max_vms = max_vms;
    p.socket_id = SOCKET_ID_ANY;
    p.rcu = rcu_;
    p.age_classes = age_classes;
    p.accounting = accounting;
    std::string err;
    auto t = ConnTable::create(p, &err);
    EXPECT_NE(t, nullptr) << err;
    return t;
  }

  std::set<uint32_t> vm_slots(const ConnTable& t, uint16_t vm) {
    std::set<uint32_t> s;
    t.for_each_in_vm(vm, [&](uint32_t slot) { EXPECT_TRUE(s.insert(slot).second) << slot; });
    return s;
  }

  rte_rcu_qsbr* rcu_ = nullptr;
};

TEST_F(ConnTableTest, RejectsBadParams) {
  ConnTable::Params p;
  p.name = "this_name_is_far_too_long_for_rte_hash";
  p.capacity = 10;
  p.rcu = rcu_;
  std::string err;
  EXPECT_EQ(ConnTable::create(p, &err), nullptr);
  EXPECT_NE(err.find("name"), std::string::npos) << err;
  p.name = "ok";
  p.capacity = 0;
  EXPECT_EQ(ConnTable::create(p, &err), nullptr);
  p.capacity = 10;
  p.rcu = nullptr;
  EXPECT_EQ(ConnTable::create(p, &err), nullptr);
}

TEST_F(ConnTableTest, InsertLookupRemove) {
  auto t = make(100);
  ASSERT_TRUE(t);
  FlowKey k = make_key(1, 3);
  EXPECT_EQ(t->lookup(k), -1);
  ConnEntry init = make_entry(3, 42, 1, 7);
  init.version.store(10);
  int32_t slot = t->insert(k, init);
  ASSERT_GE(slot, 0);
  EXPECT_LT(static_cast<uint32_t>(slot), t->slots());
  EXPECT_EQ(t->lookup(k), slot);
  EXPECT_EQ(t->key(slot), k);
  EXPECT_EQ(t->entry(slot).peer[0].maxwin, 7u);
  EXPECT_EQ(t->entry(slot).version.load(), 10u);  // wire version kept
  EXPECT_EQ(t->size(), 1u);
  EXPECT_EQ(t->vm_count(3), 1u);
  EXPECT_EQ(t->insert(k, init), -EEXIST);
  EXPECT_EQ(t->insert(make_key(2), make_entry(17)), -EINVAL);     // vm beyond max_vms
  EXPECT_EQ(t->insert(make_key(2), make_entry(0, 0, 2)), -EINVAL);  // no such age class

  ConnEntry copy;
  FlowKey kc;
  ASSERT_TRUE(t->read(slot, &copy, &kc));
  EXPECT_EQ(kc, k);
  EXPECT_EQ(copy.last_seen, 42u);
  EXPECT_EQ(copy.peer[1].maxend, 21u);
  EXPECT_EQ(copy.vm_next, kNoSlot);

  t->begin_write(slot);
  EXPECT_EQ(t->entry(slot).version.load() & 1, 1u);
  t->entry(slot).peer[1].maxwin = 5;
  t->end_write(slot);
  EXPECT_EQ(t->entry(slot).version.load(), 12u);

  t->remove(slot);
  EXPECT_EQ(t->lookup(k), -1);
  EXPECT_FALSE(t->read(slot, &copy, nullptr));
  EXPECT_EQ(t->size(), 0u);
  EXPECT_EQ(t->vm_count(3), 0u);
  EXPECT_TRUE(vm_slots(*t, 3).empty());
  EXPECT_EQ(t->stats().inserts, 1u);
  EXPECT_EQ(t->stats().removes, 1u);
  // The key can come back (possibly in another slot).
  EXPECT_GE(t->insert(k, init), 0);
}

TEST_F(ConnTableTest, BulkLookupMatchesSingleLookups) {
  auto t = make(1000);
  ASSERT_TRUE(t);
  for (uint32_t i = 0; i < 400; i += 2) ASSERT_GE(t->insert(make_key(i), make_entry(0)), 0);
  for (uint32_t n : {1u, 7u, 64u}) {
    std::vector<FlowKey> keys;
    for (uint32_t i = 0; i < n; ++i) keys.push_back(make_key(i * 5 + n));
    std::vector<const FlowKey*> ptrs;
    for (auto& k : keys) ptrs.push_back(&k);
    std::vector<int32_t> slots(n, -2);
    t->lookup_bulk(ptrs.data(), n, slots.data());
    for (uint32_t i = 0; i < n; ++i) {
      EXPECT_EQ(slots[i], t->lookup(keys[i])) << "n=" << n << " i=" << i;
      EXPECT_EQ(slots[i] >= 0, ((i * 5 + n) % 2 == 0 && i * 5 + n < 400));
    }
  }
}

// IPv4 and IPv6 keys live in two hashes (the IPv4 one stores 16-byte keys): both kinds insert,
// look up (alone and in mixed bursts, with and without signatures), read back their whole key
// and remove, in distinct slots, each against its own capacity.
TEST_F(ConnTableTest, BothFamiliesInOneTable) {
  auto t = make(300, 16, 2, true, 200);
  ASSERT_TRUE(t);
  EXPECT_TRUE(t->hash_is_inline());
  EXPECT_EQ(t->capacity(), 500u);
  EXPECT_EQ(t->capacity(Family::kV4), 300u);
  EXPECT_EQ(t->capacity(Family::kV6), 200u);
  std::set<int32_t> used;
  for (uint32_t i = 0; i < 200; i += 2) {
    const int32_t s4 = t->insert(make_key(i, 1), make_entry(1, 0, 0, i));
    const int32_t s6 = t->insert(make_key6(i, 2), make_entry(2, 0, 0, i + 1));
    ASSERT_GE(s4, 0);
    ASSERT_GE(s6, 0);
    EXPECT_TRUE(used.insert(s4).second && used.insert(s6).second);
    EXPECT_EQ(t->key(s4), make_key(i, 1));
    EXPECT_EQ(t->key(s6), make_key6(i, 2));
    EXPECT_EQ(t->insert(make_key6(i, 2), make_entry(2)), -EEXIST);
  }
  EXPECT_EQ(t->size(Family::kV4), 100u);
  EXPECT_EQ(t->size(Family::kV6), 100u);
  EXPECT_EQ(t->size(), 200u);
  EXPECT_EQ(vm_slots(*t, 1).size(), 100u);
  EXPECT_EQ(vm_slots(*t, 2).size(), 100u);
  // A v4 key and a v6 key whose addresses share their first four bytes are different keys.
  FlowKey alias = make_key6(0, 2);
  alias.family = Family::kV4;
  EXPECT_EQ(t->lookup(alias), -1);

  for (uint32_t n : {1u, 2u, 33u, 64u}) {
    std::vector<FlowKey> keys;
    for (uint32_t i = 0; i < n; ++i)  // mixed: every third key IPv6, half of them absent
      keys.push_back(i % 3 == 0 ? make_key6(i * 7 % 230, 2) : make_key(i * 5 % 230, 1));
    std::vector<const FlowKey*> ptrs;
    std::vector<hash_sig_t> sigs;
    for (auto& k : keys) {
      ptrs.push_back(&k);
      sigs.push_back(ConnTable::hash(k));
    }
    std::vector<int32_t> plain(n, -2), with_sigs(n, -2);
    t->lookup_bulk(ptrs.data(), n, plain.data());
    t->lookup_bulk(ptrs.data(), sigs.data(), n, with_sigs.data());
    for (uint32_t i = 0; i < n; ++i) {
      const int32_t want = t->lookup(keys[i]);
      EXPECT_EQ(plain[i], want) << "n=" << n << " i=" << i;
      EXPECT_EQ(with_sigs[i], want) << "n=" << n << " i=" << i;
      const uint32_t id = i % 3 == 0 ? i * 7 % 230 : i * 5 % 230;
      EXPECT_EQ(want >= 0, id % 2 == 0 && id < 200) << "n=" << n << " i=" << i;
      if (want >= 0) {
        ConnEntry e;
        FlowKey k;
        ASSERT_TRUE(t->read(static_cast<uint32_t>(want), &e, &k));
        EXPECT_EQ(k, keys[i]);
        EXPECT_EQ(e.peer[0].maxwin, id + (i % 3 == 0 ? 1 : 0));
      }
    }
  }

  // Each family is held to its own capacity.
  for (uint32_t i = 1; i < 400 && t->size(Family::kV6) < 200; i += 2)
    ASSERT_GE(t->insert(make_key6(i, 2), make_entry(2)), 0);
  EXPECT_EQ(t->insert(make_key6(1001, 2), make_entry(2)), -ENOSPC);
  EXPECT_GE(t->insert(make_key(1001, 1), make_entry(1)), 0);

  // Removal by either family frees the key for reuse.
  const int32_t s6 = t->lookup(make_key6(0, 2));
  const int32_t s4 = t->lookup(make_key(0, 1));
  ASSERT_GE(s6, 0);
  ASSERT_GE(s4, 0);
  t->remove(static_cast<uint32_t>(s6));
  t->remove(static_cast<uint32_t>(s4));
  EXPECT_EQ(t->lookup(make_key6(0, 2)), -1);
  EXPECT_EQ(t->lookup(make_key(0, 1)), -1);
  EXPECT_GE(t->insert(make_key6(0, 2), make_entry(2)), 0);
}

TEST_F(ConnTableTest, AFamilyWithoutCapacityIsRefused) {
  auto t = make(100, 16, 2, true, 0);
  ASSERT_TRUE(t);
  EXPECT_EQ(t->insert(make_key6(1), make_entry(0)), -ENOSPC);
  EXPECT_EQ(t->stats().full_drops, 1u);
  EXPECT_EQ(t->lookup(make_key6(1)), -1);
  const FlowKey k4 = make_key(1), k6 = make_key6(1);
  const FlowKey* ptrs[2] = {&k6, &k4};
  ASSERT_GE(t->insert(k4, make_entry(0)), 0);
  int32_t slots[2] = {-2, -2};
  t->lookup_bulk(ptrs, 2, slots);
  EXPECT_EQ(slots[0], -1);
  EXPECT_EQ(slots[1], t->lookup(k4));
  EXPECT_GE(slots[1], 0);

  ConnTable::Params p;
  p.name = "nofam";
  p.rcu = rcu_;
  std::string err;
  EXPECT_EQ(ConnTable::create(p, &err), nullptr);  // both capacities 0
  EXPECT_NE(err.find("capacity"), std::string::npos) << err;
}

TEST_F(ConnTableTest, FullTableRefusesNewFlowsAndKeepsEstablished) {
  constexpr uint32_t kCap = 1000;
  auto t = make(kCap);
  ASSERT_TRUE(t);
  std::vector<int32_t> slot(kCap);
  for (uint32_t i = 0; i < kCap; ++i) {
    slot[i] = t->insert(make_key(i, 1), make_entry(1, i, 0, i));
    ASSERT_GE(slot[i], 0) << i;
  }
  EXPECT_EQ(t->size(), kCap);
  EXPECT_EQ(t->insert(make_key(kCap, 1), make_entry(1)), -ENOSPC);
  EXPECT_EQ(t->insert(make_key(kCap + 1, 2), make_entry(2)), -ENOSPC);
  EXPECT_EQ(t->stats().full_drops, 2u);
  EXPECT_EQ(t->lookup(make_key(kCap, 1)), -1);
  for (uint32_t i = 0; i < kCap; ++i) {
    ASSERT_EQ(t->lookup(make_key(i, 1)), slot[i]);
    ASSERT_EQ(t->entry(slot[i]).peer[0].maxwin, i);
    ASSERT_EQ(t->entry(slot[i]).last_seen, i);
  }
  EXPECT_EQ(t->vm_count(1), kCap);
  EXPECT_EQ(t->vm_count(2), 0u);
  t->remove(slot[17]);
  EXPECT_GE(t->insert(make_key(kCap, 1), make_entry(1)), 0);
  EXPECT_EQ(t->insert(make_key(kCap + 2, 1), make_entry(1)), -ENOSPC);
}

TEST_F(ConnTableTest, VmIndexMatchesModelUnderRandomChurn) {
  constexpr uint32_t kCap = 2000, kKeys = 3000;
  constexpr uint16_t kVms = 8;
  auto t = make(kCap, kVms);
  ASSERT_TRUE(t);
  std::mt19937 rng(12345);
  std::map<uint32_t, std::pair<uint32_t, uint16_t>> model;  // key id -> (slot, vm)
  auto check = [&] {
    std::set<uint32_t> all_model, all_table;
    for (uint16_t vm = 0; vm <= kVms; ++vm) {
      std::set<uint32_t> expect;
      for (auto& [id, sv] : model) {
        if (sv.second == vm) expect.insert(sv.first);
        all_model.insert(sv.first);
      }
      if (vm == 0) continue;  // VM 0 = none, not indexed
      ASSERT_EQ(vm_slots(*t, vm), expect) << "vm " << vm;
      ASSERT_EQ(t->vm_count(vm), expect.size()) << "vm " << vm;
    }
    t->for_each([&](uint32_t s) { all_table.insert(s); });
    ASSERT_EQ(all_table, all_model);
    ASSERT_EQ(t->size(), model.size());
  };
  for (int op = 0; op < 30000; ++op) {
    uint32_t id = rng() % kKeys;
    auto it = model.find(id);
    if (it != model.end()) {
      ASSERT_EQ(t->lookup(make_key(id, it->second.second)), static_cast<int32_t>(it->second.first));
      t->remove(it->second.first);
      model.erase(it);
    } else {
      uint16_t vm = static_cast<uint16_t>(rng() % (kVms + 1));
      int32_t s = t->insert(make_key(id, vm), make_entry(vm));
      if (model.size() >= kCap) {
        ASSERT_EQ(s, -ENOSPC);
      } else {
        ASSERT_GE(s, 0);
        model[id] = {static_cast<uint32_t>(s), vm};
      }
    }
    if (op % 1000 == 999) check();
  }
  // Drain everything: every list empties.
  for (auto& [id, sv] : model) t->remove(sv.first);
  model.clear();
  check();
}

TEST_F(ConnTableTest, VmWalkVisitsOnlyThatVmInABigTable) {
  // Functional stand-in for "time proportional to the VM's entries": the walk calls fn exactly
  // as many times as the VM has entries, however many other entries the table holds.
  auto t = make(60000, 4);
  ASSERT_TRUE(t);
  for (uint32_t i = 0; i < 50000; ++i) ASSERT_GE(t->insert(make_key(i, 1), make_entry(1)), 0);
  std::set<int32_t> mine;
  for (uint32_t i = 0; i < 3; ++i) mine.insert(t->insert(make_key(100000 + i, 2), make_entry(2)));
  uint32_t calls = 0;
  std::set<int32_t> seen;
  t->for_each_in_vm(2, [&](uint32_t s) {
    ++calls;
    seen.insert(static_cast<int32_t>(s));
  });
  EXPECT_EQ(calls, 3u);
  EXPECT_EQ(seen, mine);
  EXPECT_EQ(t->vm_count(1), 50000u);
}

TEST_F(ConnTableTest, AgingRemovesOnlyExpiredWithPerClassTimeout) {
  auto t = make(100, 4, 2);
  ASSERT_TRUE(t);
  const uint32_t timeout[2] = {10, 100};
  auto tmo = [&](const ConnEntry& e) { return timeout[e.age_class]; };
  int32_t a = t->insert(make_key(1), make_entry(0, 0, 0));
  int32_t b = t->insert(make_key(2), make_entry(0, 0, 0));
  int32_t c = t->insert(make_key(3), make_entry(0, 5, 0));
  int32_t d = t->insert(make_key(4), make_entry(0, 0, 1));
  ASSERT_TRUE(a >= 0 && b >= 0 && c >= 0 && d >= 0);
  std::vector<uint32_t> expired;
  auto on_exp = [&](uint32_t s) { expired.push_back(s); };

  EXPECT_EQ(t->expire(9, 100, tmo, on_exp), 0u);  // nothing old enough
  EXPECT_EQ(t->size(), 4u);
  EXPECT_EQ(t->expire(10, 100, tmo, on_exp), 2u);  // a, b: age 10 >= 10; c: 5; d: class 1
  EXPECT_EQ(expired, (std::vector<uint32_t>{uint32_t(a), uint32_t(b)}));
  EXPECT_EQ(t->lookup(make_key(1)), -1);
  EXPECT_EQ(t->lookup(make_key(2)), -1);
  EXPECT_EQ(t->lookup(make_key(3)), c);
  EXPECT_EQ(t->lookup(make_key(4)), d);
  EXPECT_EQ(t->expire(15, 100, tmo, on_exp), 1u);  // c
  EXPECT_EQ(t->expire(99, 100, tmo, on_exp), 0u);  // d lives 100 s in class 1
  EXPECT_EQ(t->expire(100, 100, tmo, on_exp), 1u);
  EXPECT_EQ(t->size(), 0u);
  EXPECT_EQ(t->stats().expired, 4u);
  // A last_seen in the future is age 0, not a huge unsigned age.
  ASSERT_GE(t->insert(make_key(5), make_entry(0, 1000, 0)), 0);
  EXPECT_EQ(t->expire(500, 10, tmo, on_exp), 0u);
}

// Regression (bench fw_new_conn_aging_left): the worker stores an entry's new age class in the
// entry (inside its write bracket) and then calls set_age_class(). Unlinking used the entry's
// class field to pick the list, so moving a list's head left the old list headed by a slot
// that was later removed; expire() then "removed" that dead head forever and nothing behind it
// (the bench stalled after 6145 of 196608). Aging must remove everything, from a thread that
// is not a registered reader, and every slot must be reusable afterwards.
TEST_F(ConnTableTest, AgingRemovesAllAfterClassStoredBeforeSetAgeClass) {
  constexpr uint32_t kN = 20000;
  auto t = make(kN, 4, 3);
  ASSERT_TRUE(t);
  std::vector<uint32_t> slots;
  for (uint32_t i = 0; i < kN; ++i) {
    int32_t s = t->insert(make_key(i, 1), make_entry(1, 0, 0));
    ASSERT_GE(s, 0) << i;
    slots.push_back(static_cast<uint32_t>(s));
  }
  // Class changes in the worker's way, in insertion order (each mover is its list's head).
  for (uint8_t cls : {1, 2}) {
    for (uint32_t i = 0; i < kN; i += cls) {
      t->entry(slots[i]).age_class = cls;
      t->set_age_class(slots[i], cls);
    }
  }
  auto tmo = [](const ConnEntry&) { return 1u; };
  uint64_t removed = 0;
  for (uint32_t guard = 0; t->size() > 0 && guard < kN; ++guard)
    removed += t->expire(1000, 64, tmo, [](uint32_t) {});
  EXPECT_EQ(t->size(), 0u);
  EXPECT_EQ(removed, kN);
  EXPECT_EQ(t->stats().removes, kN);
  EXPECT_EQ(t->vm_count(1), 0u);
  EXPECT_EQ(t->expire(2000, 64, tmo, [](uint32_t) {}), 0u);
  // Every position is free again (no reader online): a full refill succeeds, twice over.
  for (int round = 0; round < 2; ++round) {
    for (uint32_t i = 0; i < kN; ++i)
      ASSERT_GE(t->insert(make_key(kN * (round + 1) + i, 1), make_entry(1, 0, 2)), 0)
          << "round " << round << " insert " << i;
    EXPECT_EQ(t->size(), kN);
    removed = 0;
    for (uint32_t guard = 0; t->size() > 0 && guard < kN; ++guard)
      removed += t->expire(3000 + round, 64, tmo, [](uint32_t) {});
    EXPECT_EQ(removed, kN);
  }
  EXPECT_EQ(t->stats().reclaim_stalls, 0u);
}

// The worker changes an entry's class without moving it when the new class lives longer
// (Worker::reclass): aging judges it by its own class and moves it to that class's list.
TEST_F(ConnTableTest, AClassChangedInPlaceIsJudgedByItsOwnTimeout) {
  auto t = make(16, 16, 2);
  ASSERT_TRUE(t);
  const int32_t a = t->insert(make_key(1, 1), make_entry(1, 0, 0));
  const int32_t b = t->insert(make_key(2, 1), make_entry(1, 0, 0));
  ASSERT_GE(a, 0);
  ASSERT_GE(b, 0);
  t->entry(a).age_class = 1;  // e.g. SYN_RECV -> ESTABLISHED, still on class 0's list
  auto timeout = [](const ConnEntry& e) { return e.age_class == 0 ? 10u : 100u; };
  auto none = [](uint32_t) {};
  EXPECT_EQ(t->expire(20, 4, timeout, none), 1u);  // b, not a
  EXPECT_FALSE(t->live(b));
  EXPECT_TRUE(t->live(a));
  EXPECT_GE(t->stats().age_requeues, 1u);
  EXPECT_EQ(t->expire(99, 8, timeout, none), 0u);
  EXPECT_EQ(t->expire(100, 8, timeout, none), 1u);
  EXPECT_FALSE(t->live(a));
  EXPECT_EQ(t->size(), 0u);
}

TEST_F(ConnTableTest, AgingMovesRefreshedHeadToTail) {
  auto t = make(100, 4, 1);
  ASSERT_TRUE(t);
  auto tmo = [](const ConnEntry&) { return 10u; };
  auto none = [](uint32_t) {};
  int32_t a = t->insert(make_key(1), make_entry(0, 0));
  int32_t b = t->insert(make_key(2), make_entry(0, 0));
  ASSERT_TRUE(a >= 0 && b >= 0);
  // Traffic refreshes a (under the write bracket); the list order is untouched.
  t->begin_write(a);
  t->entry(a).last_seen = 8;
  t->end_write(a);
  // Budget 1: only the head (a) is looked at; fresh, so it goes to the tail.
  EXPECT_EQ(t->expire(10, 1, tmo, none), 0u);
  EXPECT_EQ(t->stats().age_requeues, 1u);
  EXPECT_EQ(t->entry(b).age_next, static_cast<uint32_t>(a));
  // Now b is the head, and expired.
  EXPECT_EQ(t->expire(10, 1, tmo, none), 1u);
  EXPECT_EQ(t->lookup(make_key(2)), -1);
  EXPECT_EQ(t->lookup(make_key(1)), a);
  EXPECT_EQ(t->expire(17, 5, tmo, none), 0u);
  EXPECT_EQ(t->expire(18, 5, tmo, none), 1u);
}

TEST_F(ConnTableTest, SetAgeClassMovesToThatClassTail) {
  auto t = make(100, 4, 2);
  ASSERT_TRUE(t);
  const uint32_t timeout[2] = {10, 1000};
  auto tmo = [&](const ConnEntry& e) { return timeout[e.age_class]; };
  auto none = [](uint32_t) {};
  int32_t a = t->insert(make_key(1), make_entry(0, 0, 0));  // e.g. SYN_SENT, short timeout
  int32_t b = t->insert(make_key(2), make_entry(0, 0, 0));
  ASSERT_TRUE(a >= 0 && b >= 0);
  t->begin_write(a);
  t->set_age_class(a, 1);  // e.g. ESTABLISHED
  t->end_write(a);
  EXPECT_EQ(t->entry(a).age_class, 1);
  EXPECT_EQ(t->expire(50, 10, tmo, none), 1u);  // only b
  EXPECT_EQ(t->lookup(make_key(1)), a);
  EXPECT_EQ(t->expire(1000, 10, tmo, none), 1u);
  EXPECT_EQ(t->size(), 0u);
}

TEST_F(ConnTableTest, SeqlockReaderNeverSeesTornEntry) {
  auto t = make(16);
  ASSERT_TRUE(t);
  int32_t slot = t->insert(make_key(1, 1), make_entry(1));
  ASSERT_GE(slot, 0);
  std::atomic<bool> stop{false};
  std::atomic<uint64_t> writes{0};

  // The owner: every update keeps packets[0] == packets[1], peer[0].end == peer[1].end + 7,
  // bytes[0] == ~bytes[1], last_seen == low bits of packets (the counters are in their own
  // array, written in the same bracket).
  std::thread writer([&] {
    uint64_t n = 0;
    while (!stop.load(std::memory_order_relaxed)) {
      ++n;
      t->begin_write(slot);
      ConnEntry& e = t->entry(slot);
      ConnCounters c;
      c.packets[0] = n;
      e.peer[1].end = static_cast<uint32_t>(n * 3);
      c.bytes[0] = n * 1500;
      e.last_seen = static_cast<uint32_t>(n);
      e.peer[0].end = static_cast<uint32_t>(n * 3 + 7);
      c.bytes[1] = ~(n * 1500);
      c.packets[1] = n;
      t->set_counters(slot, c);
      t->end_write(slot);
      // A packet's worth of other work between updates, so that readers also get through
      // while the writer is running (a writer that never leaves the bracket starves them).
      for (int p = 0; p < 16; ++p) rte_pause();
    }
    writes.store(n);
  });

  Joiner wj{writer, [&] { stop.store(true); }};
  uint64_t torn = 0, reads = 0, changes = 0, mid_write = 0;
  std::thread reader([&] {
    rte_rcu_qsbr_thread_register(rcu_, 1);
    rte_rcu_qsbr_thread_online(rcu_, 1);
    uint64_t last = 0;
    auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(5);
    // Millions of reads, and enough value changes that the two threads really overlapped
    // (on a loaded 2-core box they may otherwise just take turns), within a deadline.
    for (; (reads < 3'000'000 || changes < 1000) && std::chrono::steady_clock::now() < deadline;
         ++reads) {
      if (t->entry(slot).version.load(std::memory_order_relaxed) & 1) ++mid_write;
      ConnEntry e;
      FlowKey k;
      ConnCounters c;
      if (!t->read(slot, &e, &k, &c)) {
        ++torn;
        continue;
      }
      bool ok = c.packets[0] == c.packets[1] && e.peer[0].end == e.peer[1].end + 7 &&
                c.bytes[0] == ~c.bytes[1] && c.bytes[0] == c.packets[0] * 1500 &&
                e.last_seen == static_cast<uint32_t>(c.packets[0]) && e.vm_id == 1 &&
                (e.version.load() & 1) == 0 && vm_of_key(k) == 1;
      if (!ok) ++torn;
      if (c.packets[0] != last) ++changes;
      last = c.packets[0];
      if ((reads & 1023) == 0) rte_rcu_qsbr_quiescent(rcu_, 1);
    }
    rte_rcu_qsbr_thread_offline(rcu_, 1);
    rte_rcu_qsbr_thread_unregister(rcu_, 1);
  });
  reader.join();
  stop.store(true);
  writer.join();
  EXPECT_EQ(torn, 0u) << "of " << reads << " reads";
  EXPECT_GT(changes, 10u) << "reader never overlapped the writer; test proves nothing";
  EXPECT_GT(writes.load(), 10u);
  std::printf("seqlock: %lu reads (%lu started mid-write), %lu value changes seen, %lu writes\n",
              static_cast<unsigned long>(reads), static_cast<unsigned long>(mid_write),
              static_cast<unsigned long>(changes), static_cast<unsigned long>(writes.load()));
}

TEST_F(ConnTableTest, RemovedSlotNotReusedWhileReaderOnline) {
  constexpr uint32_t kCap = 64;
  auto t = make(kCap);
  ASSERT_TRUE(t);
  for (uint32_t i = 0; i < kCap; ++i) ASSERT_GE(t->insert(make_key(i, 1), make_entry(1, 0, 0, i)), 0);
  const int32_t victim = t->lookup(make_key(5, 1));
  ASSERT_GE(victim, 0);

  std::atomic<int> phase{0};  // 0 start, 1 reader online & holds victim, 2 may quiesce, 3 done
  std::thread reader([&] {
    rte_rcu_qsbr_thread_register(rcu_, 2);
    rte_rcu_qsbr_thread_online(rcu_, 2);
    ConnEntry e;
    EXPECT_TRUE(t->read(victim, &e, nullptr));  // holds a reference to `victim` from now on
    phase.store(1);
    while (phase.load() < 2) std::this_thread::yield();
    rte_rcu_qsbr_quiescent(rcu_, 2);
    rte_rcu_qsbr_thread_offline(rcu_, 2);
    rte_rcu_qsbr_thread_unregister(rcu_, 2);
    phase.store(3);
  });
  Joiner rj{reader, [&] { if (phase.load() < 2) phase.store(2); }};
  while (phase.load() < 1) std::this_thread::yield();

  t->remove(victim);
  ConnEntry e;
  EXPECT_FALSE(t->read(victim, &e, nullptr));
  EXPECT_EQ(t->entry(victim).peer[0].maxwin, 5u);  // content intact for the reader
  // Churn: insert and remove new flows. Every free position is used once, then deleted ones
  // pile up behind the reader's grace period and inserts fail; the victim never comes back.
  uint32_t id = 1000, stalls = 0;
  for (int i = 0; i < 1000; ++i, ++id) {
    int32_t s = t->insert(make_key(id, 1), make_entry(1));
    if (s < 0) {
      ASSERT_EQ(s, -ENOSPC) << "churn " << i;
      ++stalls;
      continue;
    }
    ASSERT_NE(s, victim) << "slot reused while a reader that held it was online";
    t->remove(static_cast<uint32_t>(s));
  }
  EXPECT_GT(stalls, 0u);
  EXPECT_EQ(t->stats().reclaim_stalls, stalls);
  EXPECT_EQ(t->entry(victim).peer[0].maxwin, 5u);

  phase.store(2);
  while (phase.load() < 3) std::this_thread::yield();
  bool reused = false;
  for (uint32_t i = 0; i < 2 * t->slots() && !reused; ++i, ++id) {
    int32_t s = t->insert(make_key(id, 1), make_entry(1));
    ASSERT_GE(s, 0) << "no slot reclaimed after the reader went quiescent";
    reused = s == victim;
    t->remove(static_cast<uint32_t>(s));
  }
  EXPECT_TRUE(reused);
}

// The owner's own new entries (kAfterSlot) never give a slot a lower version than its last
// occupant had, even for the same key: a migration reader that sent the old one compares by
// version. A copied entry (kGiven, a peer's) keeps the version it brings.
TEST_F(ConnTableTest, ANewEntryContinuesItsSlotsVersionsACopyKeepsItsOwn) {
  auto t = make(64);
  ASSERT_TRUE(t);
  const FlowKey k = make_key(7, 1);
  for (uint32_t i = 0; i < 5; i++) ASSERT_GE(t->insert(make_key(100 + i, 1), make_entry(1)), 0);
  const int32_t first = t->insert(k, make_entry(1), nullptr, ConnTable::Version::kAfterSlot);
  ASSERT_GE(first, 0);
  EXPECT_EQ(t->entry(first).version.load(), 2u) << "a never used row's previous version is 0";
  for (int i = 0; i < 3; i++) {
    t->begin_write(first);
    t->end_write(first);
  }
  const uint32_t old_version = t->entry(first).version.load();
  ASSERT_EQ(old_version, 8u);
  // The same key again until it lands in the same slot (positions come back after reclaim).
  auto reinsert = [&](ConnTable::Version v, uint32_t given) {
    t->remove(static_cast<uint32_t>(first));
    for (uint32_t id = 1000; id < 1000 + 4 * t->slots(); id++) {
      ConnEntry e = make_entry(1);
      e.version.store(given);
      const int32_t s = t->insert(k, e, nullptr, v);
      EXPECT_GE(s, 0);
      if (s == first) return true;
      t->remove(static_cast<uint32_t>(s));
    }
    return false;
  };
  ASSERT_TRUE(reinsert(ConnTable::Version::kAfterSlot, 0));
  EXPECT_EQ(t->entry(first).version.load(), old_version + 2);
  ASSERT_TRUE(reinsert(ConnTable::Version::kAfterSlot, 100));
  EXPECT_EQ(t->entry(first).version.load(), 100u) << "a higher given version stands";
  ASSERT_TRUE(reinsert(ConnTable::Version::kGiven, 4));
  EXPECT_EQ(t->entry(first).version.load(), 4u) << "a copy keeps the version it brings";
}

TEST_F(ConnTableTest, ConcurrentVmWalkSeesOnlyThatVm) {
  constexpr uint32_t kCap = 4096, kKeys = 8000;
  auto t = make(kCap, 4);
  ASSERT_TRUE(t);
  std::atomic<bool> stop{false};
  std::atomic<uint64_t> walks{0}, visits{0}, bad{0};
  std::thread reader([&] {
    rte_rcu_qsbr_thread_register(rcu_, 3);
    rte_rcu_qsbr_thread_online(rcu_, 3);
    while (!stop.load(std::memory_order_relaxed)) {
      t->for_each_in_vm(1, [&](uint32_t s) {
        visits.fetch_add(1, std::memory_order_relaxed);
        if (t->entry(s).vm_id != 1) bad.fetch_add(1);
        ConnEntry e;
        FlowKey k;
        if (t->read(s, &e, &k) && (e.vm_id != 1 || vm_of_key(k) != 1)) bad.fetch_add(1);
      });
      walks.fetch_add(1, std::memory_order_relaxed);
      rte_rcu_qsbr_quiescent(rcu_, 3);
    }
    rte_rcu_qsbr_thread_offline(rcu_, 3);
    rte_rcu_qsbr_thread_unregister(rcu_, 3);
  });

  Joiner rj{reader, [&] { stop.store(true); }};
  std::mt19937 rng(777);
  std::map<uint32_t, std::pair<uint32_t, uint16_t>> model;
  auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(20);
  int ops = 0;
  for (; ops < 400000 && std::chrono::steady_clock::now() < deadline; ++ops) {
    uint32_t id = rng() % kKeys;
    auto it = model.find(id);
    if (it != model.end()) {
      t->remove(it->second.first);
      model.erase(it);
    } else {
      uint16_t vm = static_cast<uint16_t>(1 + rng() % 3);
      int32_t s = t->insert(make_key(id, vm), make_entry(vm));
      if (s >= 0) model[id] = {static_cast<uint32_t>(s), vm};
      else ASSERT_EQ(s, -ENOSPC);
    }
  }
  stop.store(true);
  reader.join();
  EXPECT_EQ(bad.load(), 0u);
  EXPECT_GT(walks.load(), 0u);
  EXPECT_GT(visits.load(), 0u);
  std::set<uint32_t> expect;
  for (auto& [id, sv] : model)
    if (sv.second == 1) expect.insert(sv.first);
  EXPECT_EQ(vm_slots(*t, 1), expect);
  EXPECT_EQ(t->vm_count(1), expect.size());
  std::printf("vm walk: %d owner ops, %lu walks, %lu visits\n", ops,
              static_cast<unsigned long>(walks.load()), static_cast<unsigned long>(visits.load()));
}

// More stamped limbo batches than the table keeps apart (a reader stalls for thousands of
// removals): the newest batch absorbs the rest, and once the reader quiesces the positions
// come back as inserts need them.
TEST_F(ConnTableTest, LimboOverflowMergesBatchesAndReclaimsAll) {
  constexpr uint32_t kCap = 8192;
  auto t = make(kCap, 16, 2, true, 0);  // IPv4 only: every position is one of its keys'
  ASSERT_TRUE(t);
  std::atomic<int> phase{0};
  std::thread reader([&] {
    rte_rcu_qsbr_thread_register(rcu_, 2);
    rte_rcu_qsbr_thread_online(rcu_, 2);
    phase.store(1);
    while (phase.load() < 2) std::this_thread::yield();
    rte_rcu_qsbr_thread_offline(rcu_, 2);
    rte_rcu_qsbr_thread_unregister(rcu_, 2);
    phase.store(3);
  });
  Joiner rj{reader, [&] { if (phase.load() < 2) phase.store(2); }};
  while (phase.load() < 1) std::this_thread::yield();

  uint32_t id = 0, stalls = 0;
  for (uint32_t i = 0; i < 3 * t->slots(); ++i, ++id) {
    int32_t s = t->insert(make_key(id, 1), make_entry(1));
    if (s < 0) {
      ASSERT_EQ(s, -ENOSPC);
      ++stalls;
      continue;
    }
    t->remove(static_cast<uint32_t>(s));
  }
  EXPECT_GT(stalls, 0u);
  EXPECT_EQ(t->size(), 0u);
  EXPECT_EQ(t->limbo(), t->slots());  // every position removed and waiting
  EXPECT_GT(t->slots() / 64, 64u);    // more batches than kept apart: merging was exercised

  phase.store(2);
  while (phase.load() < 3) std::this_thread::yield();
  // Back a little at a time (256 positions a call), not in one stall.
  ASSERT_GE(t->insert(make_key(id++, 1), make_entry(1)), 0);
  EXPECT_EQ(t->limbo(), t->slots() - 256);
  for (uint32_t i = 1; i < kCap; ++i, ++id)
    ASSERT_GE(t->insert(make_key(id, 1), make_entry(1)), 0) << "insert " << i;
  EXPECT_EQ(t->size(), kCap);
  EXPECT_LE(t->limbo(), t->slots() - kCap);
}

TEST_F(ConnTableTest, CountersFollowTheSlotWithAccountingOnly) {
  for (bool acct : {true, false}) {
    SCOPED_TRACE(acct ? "accounting" : "no accounting");
    auto t = make(16, 16, 2, acct);
    ASSERT_TRUE(t);
    EXPECT_EQ(t->accounting(), acct);
    ConnCounters first;
    first.packets[1] = 1;
    first.bytes[1] = 60;
    int32_t a = t->insert(make_key(1, 1), make_entry(1), &first);
    ASSERT_GE(a, 0);
    t->begin_write(a);
    t->count(a, Dir::kLoToHi, 1500);
    t->count(a, Dir::kHiToLo, 40);
    t->end_write(a);
    ConnEntry e;
    ConnCounters c;
    ASSERT_TRUE(t->read(a, &e, nullptr, &c));
    EXPECT_EQ(c.packets[0], acct ? 1u : 0u);
    EXPECT_EQ(c.bytes[0], acct ? 1500u : 0u);
    EXPECT_EQ(c.packets[1], acct ? 2u : 0u);
    EXPECT_EQ(c.bytes[1], acct ? 100u : 0u);
    // A new entry in a reused slot starts from its own counters, not the last owner's.
    t->remove(a);
    int32_t b = t->insert(make_key(2, 1), make_entry(1));
    ASSERT_GE(b, 0);
    ASSERT_TRUE(t->read(b, &e, nullptr, &c));
    EXPECT_EQ(c.packets[0] + c.packets[1] + c.bytes[0] + c.bytes[1], 0u);
  }
}

// A module's record in the row (Params::ext_bytes, the translation record): its own bytes per
// slot, after the counters, untouched by the entry's and counters' writes, in the memory split;
// a size that is not a multiple of 8 or too large is refused.
TEST_F(ConnTableTest, ExtensionRecordLivesInItsSlotsRow) {
  for (bool acct : {true, false}) {
    SCOPED_TRACE(acct ? "accounting" : "no accounting");
    ConnTable::Params p;
    static int seq = 0;
    p.name = "ext" + std::to_string(seq++);
    p.capacity = 64;
    p.rcu = rcu_;
    p.accounting = acct;
    p.ext_bytes = 32;
    std::string err;
    auto t = ConnTable::create(p, &err);
    ASSERT_TRUE(t) << err;
    EXPECT_EQ(t->ext_bytes(), 32u);
    EXPECT_EQ(t->memory_split().ext, size_t{t->slots()} * 32);
    for (uint32_t s = 0; s < t->slots(); s++) std::memset(t->ext(s), static_cast<int>(s & 0xff), 32);
    std::vector<int32_t> slots;
    for (uint32_t i = 0; i < 40; i++) {
      slots.push_back(t->insert(make_key(i, 1), make_entry(0)));
      ASSERT_GE(slots.back(), 0);
      t->begin_write(slots.back());
      t->count(slots.back(), Dir::kHiToLo, 1500);
      t->end_write(slots.back());
    }
    for (uint32_t s = 0; s < t->slots(); s++) {
      const uint8_t* x = t->ext(s);
      ASSERT_EQ(std::count(x, x + 32, static_cast<uint8_t>(s & 0xff)), 32) << "slot " << s;
      if (s + 1 < t->slots()) EXPECT_GE(t->ext(s + 1) - x, acct ? 128 : 96);
    }
  }
  ConnTable::Params bad;
  bad.name = "extbad";
  bad.capacity = 8;
  bad.rcu = rcu_;
  std::string err;
  for (uint32_t b : {12u, ConnTable::kMaxExtBytes + 8}) {
    bad.ext_bytes = b;
    EXPECT_EQ(ConnTable::create(bad, &err), nullptr) << b;
    EXPECT_NE(err.find("extension"), std::string::npos) << err;
  }
}

TEST_F(ConnTableTest, ReportsMemoryAtOneMillion) {
  for (bool acct : {true, false}) {
    auto t = make(1'000'000, 1024, 4, acct, 0);  // IPv4 only
    ASSERT_TRUE(t);
    const size_t mem = t->memory_bytes();
    // At least the entry array, the key store and the live flags are in there.
    const size_t counters = acct ? sizeof(ConnCounters) : 0;
    EXPECT_GE(mem, size_t{t->slots()} *
                       (sizeof(ConnEntry) + sizeof(FlowKeyV4) + 1 + counters));
    EXPECT_EQ(t->memory_split().counters, size_t{t->slots()} * counters);
    EXPECT_LT(mem / t->capacity(), 400u);
    std::printf("conn table (accounting %s): capacity %u, %u positions, %zu bytes, %.1f bytes per entry\n",
                acct ? "on" : "off", t->capacity(), t->slots(), mem, double(mem) / t->capacity());
    RecordProperty(acct ? "bytes_per_entry" : "bytes_per_entry_no_accounting",
                   std::to_string(mem / t->capacity()));
  }
}

}  // namespace
}  // namespace baton
