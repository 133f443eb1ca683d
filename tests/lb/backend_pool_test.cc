// SPDX-License-Identifier: Apache-2.0
//
// BackendPool: validation, which backends take new and persistent connections, the backup
// farm, snapshot publication and retirement, counters, readers during rebuilds.
#include "lb/backend_pool.h"

#include <gtest/gtest.h>

#include <atomic>
#include <functional>
#include <set>
#include <thread>
#include <vector>

namespace baton {
namespace {

BackendSpec backend(BackendId id, uint32_t weight = 1, AdminState admin = AdminState::kUp,
                    bool healthy = true) {
  BackendSpec b;
  b.id = id;
  b.addr = be32::from_host(0x0a000000u + id);  // 10.0.0.<id>
  b.port = be16::from_host(8080);
  b.weight = weight;
  b.admin = admin;
  b.healthy = healthy;
  return b;
}

uint64_t flow_hash(uint64_t i) { return (i + 1) * 0x9e3779b97f4a7c15ull ^ (i >> 7); }

// Retired snapshots are kept until the test says the grace period is over.
class BackendPoolTest : public ::testing::Test {
 protected:
  void TearDown() override { end_grace_period(); }

  std::unique_ptr<BackendPool> make(const std::string& name, uint32_t size = 65537) {
    BackendPool::Params p;
    p.name = name;
    p.maglev_size = size;
    p.retire = [this](std::function<void()> free_fn) { retired_.push_back(std::move(free_fn)); };
    std::string err;
    auto pool = BackendPool::create(std::move(p), &err);
    EXPECT_NE(pool, nullptr) << err;
    return pool;
  }
  void end_grace_period() {
    for (auto& f : retired_) f();
    retired_.clear();
  }
  static std::set<BackendId> picked(const BackendPool& pool, uint32_t flows = 20000) {
    std::set<BackendId> ids;
    for (uint32_t i = 0; i < flows; ++i)
      if (auto p = pool.pick(flow_hash(i))) ids.insert(p->id);
    return ids;
  }

  std::vector<std::function<void()>> retired_;
};

TEST_F(BackendPoolTest, CreateRejectsBadParams) {
  std::string err;
  BackendPool::Params p;
  p.name = "x";
  EXPECT_EQ(BackendPool::create(p, &err), nullptr);
  EXPECT_NE(err.find("retire"), std::string::npos) << err;
  p.retire = [](std::function<void()> f) { f(); };
  p.maglev_size = 65536;
  EXPECT_EQ(BackendPool::create(p, &err), nullptr);
  EXPECT_NE(err.find("prime"), std::string::npos) << err;
}

TEST_F(BackendPoolTest, RefusesBadBackendsAndChangesNothing) {
  auto pool = make("web");
  std::string err;
  ASSERT_TRUE(pool->add(backend(1), &err)) << err;
  const PoolSnapshot* before = pool->snapshot();

  struct Case {
    const char* what;
    BackendSpec spec;
    const char* error;
  };
  BackendSpec zero_addr = backend(2);
  zero_addr.addr = be32();
  BackendSpec zero_port = backend(2);
  zero_port.port = be16();
  BackendSpec same_endpoint = backend(2);
  same_endpoint.addr = backend(1).addr;
  const std::vector<Case> cases = {
      {"duplicate id", backend(1), "duplicate id"},
      {"address 0", zero_addr, "address"},
      {"port 0", zero_port, "port 0"},
      {"weight too large", backend(2, BackendPool::kMaxWeight + 1), "weight"},
      {"same address:port", same_endpoint, "already in the pool"},
      {"reserved id", backend(kNoBackend), "reserved"},
  };
  for (const Case& c : cases) {
    err.clear();
    EXPECT_FALSE(pool->add(c.spec, &err)) << c.what;
    EXPECT_NE(err.find(c.error), std::string::npos) << c.what << ": " << err;
    EXPECT_EQ(pool->snapshot(), before) << c.what << ": nothing published";
  }
  EXPECT_FALSE(pool->set_admin(99, AdminState::kDown, &err));
  EXPECT_NE(err.find("no backend 99"), std::string::npos) << err;
  EXPECT_FALSE(pool->remove(99, &err));
  EXPECT_EQ(pool->list().size(), 1u);
}

TEST_F(BackendPoolTest, OnlyUpAndHealthyBackendsTakeNewConnections) {
  auto pool = make("web");
  std::string err;
  for (BackendId id : {1, 2, 3, 4}) ASSERT_TRUE(pool->add(backend(id), &err)) << err;
  EXPECT_EQ(picked(*pool), (std::set<BackendId>{1, 2, 3, 4}));

  ASSERT_TRUE(pool->set_admin(1, AdminState::kDraining, &err));
  ASSERT_TRUE(pool->set_admin(2, AdminState::kDown, &err));
  ASSERT_TRUE(pool->set_healthy(3, false, &err));
  EXPECT_EQ(picked(*pool), (std::set<BackendId>{4}));

  ASSERT_TRUE(pool->set_weight(4, 0, &err));
  EXPECT_FALSE(pool->pick(1).has_value()) << "nobody takes new connections";
  EXPECT_FALSE(pool->snapshot()->has_new_capacity());

  ASSERT_TRUE(pool->set_healthy(3, true, &err));
  EXPECT_EQ(picked(*pool), (std::set<BackendId>{3}));
}

// Fixture table: who takes persistent (sticky) connections.
TEST_F(BackendPoolTest, DrainingHonoursPersistenceDownAndUnhealthyDoNot) {
  struct Case {
    BackendSpec spec;
    bool takes_new, takes_persistent;
  };
  const std::vector<Case> cases = {
      {backend(1, 1, AdminState::kUp, true), true, true},
      {backend(2, 1, AdminState::kDraining, true), false, true},
      {backend(3, 1, AdminState::kDown, true), false, false},
      {backend(4, 1, AdminState::kUp, false), false, false},
      {backend(5, 1, AdminState::kDraining, false), false, false},
      {backend(6, 0, AdminState::kUp, true), false, true},
  };
  auto pool = make("web");
  std::string err;
  for (const Case& c : cases) ASSERT_TRUE(pool->add(c.spec, &err)) << err;
  const std::set<BackendId> news = picked(*pool);
  for (const Case& c : cases) {
    EXPECT_EQ(c.spec.takes_new(), c.takes_new) << c.spec.id;
    EXPECT_EQ(c.spec.takes_persistent(), c.takes_persistent) << c.spec.id;
    EXPECT_EQ(news.count(c.spec.id) == 1, c.takes_new) << c.spec.id;
    auto p = pool->find_persistent(c.spec.id);
    EXPECT_EQ(p.has_value(), c.takes_persistent) << c.spec.id;
    if (p) {
      EXPECT_EQ(p->addr, c.spec.addr);
      EXPECT_EQ(p->port, c.spec.port);
      EXPECT_FALSE(p->backup);
    }
  }
  EXPECT_FALSE(pool->find_persistent(77).has_value());
}

TEST_F(BackendPoolTest, BackupFarmServesOnlyWhenNoPrimaryBackendCan) {
  auto primary = make("web");
  auto backup = make("sorry");
  std::string err;
  ASSERT_TRUE(primary->add(backend(1), &err));
  ASSERT_TRUE(primary->add(backend(2), &err));
  ASSERT_TRUE(backup->add(backend(10), &err));
  EXPECT_FALSE(primary->set_backup(primary.get(), &err));
  ASSERT_TRUE(primary->set_backup(backup.get(), &err)) << err;

  EXPECT_EQ(picked(*primary), (std::set<BackendId>{1, 2}));
  ASSERT_TRUE(primary->set_healthy(1, false, &err));
  ASSERT_TRUE(primary->set_admin(2, AdminState::kDraining, &err));
  auto p = primary->pick(5);
  ASSERT_TRUE(p.has_value());
  EXPECT_EQ(p->id, 10u);
  EXPECT_TRUE(p->backup);
  EXPECT_EQ(picked(*primary), (std::set<BackendId>{10}));

  auto persist = primary->find_persistent(10);
  ASSERT_TRUE(persist.has_value());
  EXPECT_TRUE(persist->backup);
  EXPECT_TRUE(primary->find_persistent(2).has_value()) << "draining primary keeps its clients";

  ASSERT_TRUE(primary->set_healthy(1, true, &err));
  EXPECT_EQ(picked(*primary), (std::set<BackendId>{1})) << "primary again as soon as it can";
  EXPECT_FALSE(primary->pick(5)->backup);

  ASSERT_TRUE(primary->set_healthy(1, false, &err));
  ASSERT_TRUE(backup->set_admin(10, AdminState::kDown, &err));
  EXPECT_FALSE(primary->pick(5).has_value()) << "no backend anywhere";
  ASSERT_TRUE(primary->set_backup(nullptr, &err));
  EXPECT_FALSE(primary->find_persistent(10).has_value());
}

TEST_F(BackendPoolTest, EveryChangePublishesASnapshotAndRetiresTheOldOne) {
  auto pool = make("web");
  std::string err;
  ASSERT_TRUE(pool->add(backend(1), &err));
  end_grace_period();
  const PoolSnapshot* old = pool->snapshot();
  ASSERT_TRUE(pool->add(backend(2), &err));
  ASSERT_TRUE(pool->set_weight(2, 5, &err));
  EXPECT_EQ(retired_.size(), 2u);
  EXPECT_NE(pool->snapshot(), old);
  // A reader still holding the old snapshot sees it whole until the grace period ends.
  ASSERT_NE(old->find(1), nullptr);
  EXPECT_EQ(old->backends.size(), 1u);
  EXPECT_EQ(old->maglev.lookup(123), 1u);
  EXPECT_EQ(pool->snapshot()->find(2)->spec.weight, 5u);
  EXPECT_FALSE(pool->set_weight(2, BackendPool::kMaxWeight + 1, &err));
  EXPECT_EQ(retired_.size(), 2u) << "a refused change publishes nothing";
}

TEST_F(BackendPoolTest, DrainingOneBackendLeavesOtherFlowsWhereTheyWere) {
  auto pool = make("web");
  std::string err;
  for (BackendId id = 1; id <= 10; ++id) ASSERT_TRUE(pool->add(backend(id), &err));
  constexpr uint32_t kFlows = 100000;
  std::vector<BackendId> before(kFlows);
  for (uint32_t i = 0; i < kFlows; ++i) before[i] = pool->pick(flow_hash(i))->id;
  ASSERT_TRUE(pool->set_admin(4, AdminState::kDraining, &err));
  uint32_t moved_others = 0, others = 0;
  for (uint32_t i = 0; i < kFlows; ++i) {
    const BackendId now = pool->pick(flow_hash(i))->id;
    EXPECT_NE(now, 4u);
    if (before[i] != 4) {
      ++others;
      if (now != before[i]) ++moved_others;
    }
  }
  EXPECT_LE(static_cast<double>(moved_others) / others, 0.02);
}

TEST_F(BackendPoolTest, CountsConnectionsAndKeepsCountersAcrossReload) {
  auto pool = make("web");
  std::string err;
  ASSERT_TRUE(pool->add(backend(1), &err));
  ASSERT_TRUE(pool->add(backend(2), &err));
  pool->conn_opened(1);
  pool->conn_opened(1);
  pool->conn_opened(2);
  pool->conn_closed(1);
  pool->conn_opened(42);  // unknown: ignored
  EXPECT_EQ(pool->status(1)->active_conns, 1);
  EXPECT_EQ(pool->status(1)->total_conns, 2u);
  EXPECT_EQ(pool->status(2)->active_conns, 1);

  ASSERT_TRUE(pool->set_healthy(1, false, &err));
  // Reload: 1 stays (keeps counters and, with keep_health, its health), 2 goes, 3 comes.
  ASSERT_TRUE(pool->set_backends({backend(1, 3), backend(3)}, true, &err)) << err;
  auto s1 = pool->status(1);
  ASSERT_TRUE(s1.has_value());
  EXPECT_EQ(s1->active_conns, 1);
  EXPECT_EQ(s1->spec.weight, 3u);
  EXPECT_FALSE(s1->spec.healthy);
  EXPECT_FALSE(pool->status(2).has_value());
  EXPECT_EQ(pool->status(3)->active_conns, 0);
  ASSERT_TRUE(pool->set_backends({backend(1, 3), backend(3)}, false, &err));
  EXPECT_TRUE(pool->status(1)->spec.healthy);
  EXPECT_FALSE(pool->set_backends({backend(1), backend(1)}, false, &err));
  EXPECT_EQ(pool->list().size(), 2u);
}

// Workers pick while the control side flips health: every pick names a backend that took new
// connections in some published snapshot, never the one that is down throughout. Snapshots
// are freed only after the reader has stopped (the test's grace period).
TEST_F(BackendPoolTest, ReadersPickWhileThePoolChanges) {
  auto pool = make("web", 251);
  std::string err;
  for (BackendId id = 1; id <= 4; ++id) ASSERT_TRUE(pool->add(backend(id), &err));
  ASSERT_TRUE(pool->set_admin(4, AdminState::kDown, &err));
  std::atomic<bool> stop{false};
  std::atomic<uint64_t> picks{0}, bad{0};
  std::thread reader([&] {
    for (uint64_t i = 0; !stop.load(std::memory_order_relaxed); ++i) {
      auto p = pool->pick(flow_hash(i));
      if (p && (p->id < 1 || p->id > 3)) bad.fetch_add(1);
      picks.fetch_add(1, std::memory_order_relaxed);
    }
  });
  for (int round = 0; round < 2000; ++round) {
    const BackendId id = 1 + round % 3;
    ASSERT_TRUE(pool->set_healthy(id, round % 2 == 0, &err));
  }
  while (picks.load() < 1000) std::this_thread::yield();
  stop.store(true);
  reader.join();
  EXPECT_EQ(bad.load(), 0u);
}

}  // namespace
}  // namespace baton
