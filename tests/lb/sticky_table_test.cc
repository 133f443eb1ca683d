// SPDX-License-Identifier: Apache-2.0
//
// Sticky tables: the pure model (key derivation, group validation, aging rule, backup-farm
// rule) as fixture tables, then StickyTable under one EAL (--no-huge) for this whole binary:
// insert/lookup/refresh, expiry rules, rebind, stale refs, records, and two concurrency
// contracts (racing inserts agree; expiry with lock-free readers never shows a reused slot).
#include "lb/sticky_table.h"

#include <gtest/gtest.h>
#include <rte_eal.h>
#include <rte_lcore.h>
#include <rte_malloc.h>
#include <rte_rcu_qsbr.h>
#include <unistd.h>

#include <atomic>
#include <functional>
#include <map>
#include <string>
#include <thread>
#include <vector>

#include "tests/support/eal_env.h"

namespace baton {
namespace {

::testing::Environment* const kEal =
    ::testing::AddGlobalTestEnvironment(new EalEnv("lb_test", 256, {"-l", "0"}));

IpAddr v4(uint32_t host) { return IpAddr::v4(be32::from_host(host)); }

StickyGroup group(uint32_t timeout_s = 60, bool timeout_active = false) {
  StickyGroup g;
  g.name = "g";
  g.server_farm = "web";
  g.timeout_s = timeout_s;
  g.timeout_active_conns = timeout_active;
  return g;
}

// ---- Pure model -------------------------------------------------------------------------------

TEST(StickyModel, MethodNamesRoundTrip) {
  for (StickyKeyMethod m : {StickyKeyMethod::kSourceAddress, StickyKeyMethod::kSourcePrefix,
                            StickyKeyMethod::kHttpCookie, StickyKeyMethod::kHttpHeader})
    EXPECT_EQ(parse_sticky_key_method(sticky_key_method_name(m)), m);
  EXPECT_FALSE(parse_sticky_key_method("cookie-insert").has_value());
}

TEST(StickyModel, GroupValidation) {
  struct Case {
    const char* what;
    std::function<void(StickyGroup&)> change;
    const char* error;  // nullptr = valid
  };
  const std::vector<Case> cases = {
      {"defaults", [](StickyGroup&) {}, nullptr},
      {"no name", [](StickyGroup& g) { g.name.clear(); }, "without a name"},
      {"no farm", [](StickyGroup& g) { g.server_farm.clear(); }, "no server farm"},
      {"backup is primary", [](StickyGroup& g) { g.backup_farm = g.server_farm; }, "backup farm"},
      {"timeout 0", [](StickyGroup& g) { g.timeout_s = 0; }, "timeout"},
      {"timeout huge", [](StickyGroup& g) { g.timeout_s = StickyGroup::kMaxTimeout + 1; },
       "timeout"},
      {"cookie without name", [](StickyGroup& g) { g.method = StickyKeyMethod::kHttpCookie; },
       "cookie or header name"},
      {"cookie",
       [](StickyGroup& g) {
         g.method = StickyKeyMethod::kHttpCookie;
         g.field = "SID";
       },
       nullptr},
      {"field on source", [](StickyGroup& g) { g.field = "SID"; }, "only applies"},
      {"v4 prefix 33", [](StickyGroup& g) { g.prefix_len_v4 = 33; }, "IPv4 prefix"},
      {"v6 prefix 129", [](StickyGroup& g) { g.prefix_len_v6 = 129; }, "IPv6 prefix"},
  };
  for (const Case& c : cases) {
    StickyGroup g = group();
    c.change(g);
    const std::string err = g.validate();
    if (c.error == nullptr) {
      EXPECT_EQ(err, "") << c.what;
    } else {
      EXPECT_NE(err.find(c.error), std::string::npos) << c.what << ": '" << err << "'";
    }
  }
}

TEST(StickyModel, KeyDerivation) {
  const IpAddr a = v4(0x0a010203), b = v4(0x0a0102c8), c = v4(0x0a010303);
  // Source address: the exact client.
  EXPECT_EQ(StickyKey::source(1, a, Family::kV4), StickyKey::source(1, a, Family::kV4));
  EXPECT_NE(StickyKey::source(1, a, Family::kV4), StickyKey::source(1, b, Family::kV4));
  EXPECT_NE(StickyKey::source(1, a, Family::kV4), StickyKey::source(2, a, Family::kV4));
  IpAddr dirty = a;
  dirty.b[9] = 0xff;  // bytes past an IPv4 address do not count
  EXPECT_EQ(StickyKey::source(1, dirty, Family::kV4), StickyKey::source(1, a, Family::kV4));
  EXPECT_NE(StickyKey::source(1, a, Family::kV4), StickyKey::source(1, a, Family::kV6));

  // Source prefix: clients of one /24 share a key.
  EXPECT_EQ(StickyKey::source_prefix(1, a, Family::kV4, 24),
            StickyKey::source_prefix(1, b, Family::kV4, 24));
  EXPECT_NE(StickyKey::source_prefix(1, a, Family::kV4, 24),
            StickyKey::source_prefix(1, c, Family::kV4, 24));
  EXPECT_EQ(StickyKey::source_prefix(1, a, Family::kV4, 22),
            StickyKey::source_prefix(1, c, Family::kV4, 22));
  EXPECT_EQ(StickyKey::source_prefix(1, a, Family::kV4, 0),
            StickyKey::source_prefix(1, v4(0xc0a80001), Family::kV4, 0));
  EXPECT_EQ(StickyKey::source_prefix(1, a, Family::kV4, 200).prefix_len, 32) << "clamped";
  EXPECT_NE(StickyKey::source_prefix(1, a, Family::kV4, 32), StickyKey::source(1, a, Family::kV4))
      << "methods do not share keys";
  Family f;
  const IpAddr x = *IpAddr::parse("2001:db8:1:2::1", &f),
               y = *IpAddr::parse("2001:db8:1:2:ffff::9", &f);
  EXPECT_EQ(StickyKey::source_prefix(1, x, Family::kV6, 64),
            StickyKey::source_prefix(1, y, Family::kV6, 64));
  EXPECT_NE(StickyKey::source_prefix(1, x, Family::kV6, 65),
            StickyKey::source_prefix(1, y, Family::kV6, 65));
  EXPECT_EQ(StickyKey::source_prefix(1, a, Family::kV4, 24).to_string(),
            "g1 source-prefix 10.1.2.0/24");

  // HTTP values: the value decides, and cookie and header keys never meet.
  auto cookie = [](std::string_view v) {
    return StickyKey::value(3, StickyKeyMethod::kHttpCookie, v);
  };
  EXPECT_EQ(cookie("abc123"), cookie("abc123"));
  EXPECT_NE(cookie("abc123"), cookie("abc124"));
  EXPECT_NE(cookie("abc123"), StickyKey::value(3, StickyKeyMethod::kHttpHeader, "abc123"));
  EXPECT_EQ(cookie("abc123").value_len, 6u);

  StickyGroup g = group();
  EXPECT_EQ(derive_sticky_key(5, g, a, Family::kV4, std::nullopt),
            StickyKey::source(5, a, Family::kV4));
  g.method = StickyKeyMethod::kSourcePrefix;
  g.prefix_len_v4 = 16;
  EXPECT_EQ(derive_sticky_key(5, g, a, Family::kV4, std::nullopt),
            StickyKey::source_prefix(5, a, Family::kV4, 16));
  g.method = StickyKeyMethod::kHttpCookie;
  g.field = "SID";
  EXPECT_FALSE(derive_sticky_key(5, g, a, Family::kV4, std::nullopt)) << "no cookie, no key";
  EXPECT_FALSE(derive_sticky_key(5, g, a, Family::kV4, std::string_view()));
  EXPECT_EQ(derive_sticky_key(5, g, a, Family::kV4, "s1"),
            StickyKey::value(5, StickyKeyMethod::kHttpCookie, "s1"));
}

// Seed: "timeout" and "timeout active connections".
TEST(StickyModel, AgingRule) {
  struct Case {
    const char* what;
    uint32_t timeout;
    bool timeout_active;
    uint32_t expiry, now, active;
    bool expired;
  };
  const std::vector<Case> cases = {
      {"before expiry", 60, false, 160, 159, 0, false},
      {"at expiry", 60, false, 160, 160, 0, true},
      {"after expiry", 60, false, 160, 1000, 0, true},
      {"active connections hold it", 60, false, 160, 1000, 1, false},
      {"unless they may time out", 60, true, 160, 1000, 3, true},
      {"active but not yet due", 60, true, 160, 100, 3, false},
  };
  for (const Case& c : cases) {
    const StickyAging a{c.timeout, c.timeout_active};
    EXPECT_EQ(a.expired(c.now, c.expiry, c.active), c.expired) << c.what;
  }
  EXPECT_EQ((StickyAging{60, false}.expiry_after_use(100)), 160u);
  EXPECT_EQ((StickyAging{60, false}.expiry_after_use(UINT32_MAX - 10)), UINT32_MAX) << "saturates";
}

// Seed: "sticky enabled on backup server farm".
TEST(StickyModel, BackupFarmRule) {
  using A = StickyAction;
  struct Case {
    const char* what;
    bool sticky_on_backup;
    StickyFacts f;  // has_entry, entry_usable, entry_in_backup, candidate_in_backup
    StickyAction want;
  };
  const std::vector<Case> cases = {
      {"new client, primary", false, {false, false, false, false}, A::kBindCandidate},
      {"new client, backup, not sticky there",
       false,
       {false, false, false, true},
       A::kCandidateOnly},
      {"new client, backup, sticky there", true, {false, false, false, true}, A::kBindCandidate},
      {"bound to a live primary", false, {true, true, false, false}, A::kUseEntry},
      {"bound to a dead primary, primary pick",
       false,
       {true, false, false, false},
       A::kBindCandidate},
      {"bound to a dead primary, backup pick: keep the binding for later",
       false,
       {true, false, false, true},
       A::kCandidateOnly},
      {"bound to a dead primary, backup pick, sticky on backup",
       true,
       {true, false, false, true},
       A::kBindCandidate},
      {"bound to backup, sticky there", true, {true, true, true, false}, A::kUseEntry},
      {"bound to backup, no longer sticky there, primary back",
       false,
       {true, true, true, false},
       A::kBindCandidate},
      {"bound to backup, not sticky there, still on backup",
       false,
       {true, true, true, true},
       A::kCandidateOnly},
  };
  for (const Case& c : cases) EXPECT_EQ(sticky_decide(c.sticky_on_backup, c.f), c.want) << c.what;
}

// ---- StickyTable ------------------------------------------------------------------------------

// Joins on scope exit so that a failed ASSERT does not std::terminate.
struct Joiner {
  std::vector<std::thread>& threads;
  std::function<void()> before;
  ~Joiner() {
    if (before) before();
    for (auto& t : threads)
      if (t.joinable()) t.join();
  }
};

class StickyTableTest : public ::testing::Test {
 protected:
  static constexpr uint32_t kRcuThreads = 4;

  void SetUp() override {
    const size_t sz = rte_rcu_qsbr_get_memsize(kRcuThreads);
    rcu_ = static_cast<rte_rcu_qsbr*>(rte_zmalloc("lb_test_rcu", sz, RTE_CACHE_LINE_SIZE));
    ASSERT_NE(rcu_, nullptr);
    ASSERT_EQ(rte_rcu_qsbr_init(rcu_, kRcuThreads), 0);
  }
  void TearDown() override {
    table_.reset();
    rte_free(rcu_);
  }

  StickyTable& make(uint32_t capacity = 1024, uint32_t timeout_s = 60,
                    bool timeout_active = false) {
    static int seq = 0;
    StickyTable::Params p;
    p.name = "st" + std::to_string(seq++);
    p.capacity = capacity;
    p.max_groups = 8;
    p.rcu = rcu_;
    std::string err;
    table_ = StickyTable::create(p, &err);
    EXPECT_NE(table_, nullptr) << err;
    EXPECT_TRUE(table_->set_group(1, group(timeout_s, timeout_active), &err)) << err;
    return *table_;
  }
  // Sweeps the whole table (a few times: slots freed in one sweep are reclaimed in the next).
  uint32_t expire_all(uint32_t now) {
    uint32_t n = 0;
    for (int i = 0; i < 2; ++i) n += table_->expire(now, UINT32_MAX);
    return n;
  }
  static StickyKey key(uint32_t i, uint16_t g = 1) {
    return StickyKey::source(g, v4(0x0b000000 + i), Family::kV4);
  }
  StickyHit insert(const StickyKey& k, BackendId b, uint32_t now) {
    StickyHit h;
    EXPECT_EQ(table_->get_or_insert(k, b, now, &h), 0);
    return h;
  }

  rte_rcu_qsbr* rcu_ = nullptr;
  std::unique_ptr<StickyTable> table_;
};

TEST_F(StickyTableTest, RejectsBadParams) {
  StickyTable::Params p;
  p.name = "this_name_is_far_too_long";
  p.capacity = 10;
  p.rcu = rcu_;
  std::string err;
  EXPECT_EQ(StickyTable::create(p, &err), nullptr);
  EXPECT_NE(err.find("name"), std::string::npos) << err;
  p.name = "ok";
  p.capacity = 0;
  EXPECT_EQ(StickyTable::create(p, &err), nullptr);
  p.capacity = 10;
  p.rcu = nullptr;
  EXPECT_EQ(StickyTable::create(p, &err), nullptr);
  p.rcu = rcu_;
  auto t = StickyTable::create(p, &err);
  ASSERT_NE(t, nullptr) << err;
  EXPECT_FALSE(t->set_group(64, group(), &err)) << "id beyond max_groups";
  EXPECT_FALSE(t->set_group(0, group(0), &err));
  EXPECT_NE(err.find("timeout"), std::string::npos) << err;
}

TEST_F(StickyTableTest, FirstCandidateWinsAndLaterOnesGetIt) {
  StickyTable& t = make();
  StickyHit h = insert(key(1), 7, 100);
  EXPECT_TRUE(h.inserted);
  EXPECT_EQ(h.backend, 7u);
  StickyHit again = insert(key(1), 9, 110);
  EXPECT_FALSE(again.inserted);
  EXPECT_EQ(again.backend, 7u);
  EXPECT_EQ(again.ref.slot, h.ref.slot);
  auto l = t.lookup(key(1), 120);
  ASSERT_TRUE(l.has_value());
  EXPECT_EQ(l->backend, 7u);
  EXPECT_FALSE(t.lookup(key(2), 120).has_value());
  EXPECT_EQ(t.size(), 1u);
  EXPECT_EQ(t.stats().inserts, 1u);

  StickyHit unused;
  EXPECT_EQ(t.get_or_insert(key(3, 2), 7, 100, &unused), -EINVAL) << "group 2 not configured";
  EXPECT_EQ(t.get_or_insert(key(3), kNoBackend, 100, &unused), -EINVAL);
}

TEST_F(StickyTableTest, UseRefreshesTheTimeoutAndExpiryRebinds) {
  StickyTable& t = make(1024, 60);
  insert(key(1), 7, 100);  // expiry 160
  EXPECT_TRUE(t.lookup(key(1), 159));
  EXPECT_FALSE(t.lookup(key(1), 160)) << "due entries do not match";
  insert(key(2), 8, 100);
  EXPECT_EQ(insert(key(2), 9, 150).backend, 8u);  // use at 150: expiry 210
  EXPECT_TRUE(t.lookup(key(2), 200));
  StickyHit h = insert(key(2), 8, 200);
  t.touch(h.ref, 250);  // expiry 310
  EXPECT_TRUE(t.lookup(key(2), 300));

  // key 1 is due but not removed yet: the next client binds afresh.
  StickyHit revived = insert(key(1), 11, 170);
  EXPECT_TRUE(revived.inserted);
  EXPECT_EQ(revived.backend, 11u);
  EXPECT_EQ(t.stats().revived, 1u);
  EXPECT_EQ(t.size(), 2u);
}

TEST_F(StickyTableTest, ExpireFollowsTheGroupRules) {
  StickyTable& t = make(1024, 60, false);
  std::string err;
  ASSERT_TRUE(t.set_group(2, group(60, true), &err));
  StickyHit idle = insert(key(1), 1, 100);
  StickyHit busy = insert(key(2), 2, 100);
  StickyHit busy_may_expire = insert(key(3, 2), 3, 100);
  ASSERT_TRUE(t.conn_ref(busy.ref));
  ASSERT_TRUE(t.conn_ref(busy_may_expire.ref));
  (void)idle;

  EXPECT_EQ(expire_all(159), 0u);
  EXPECT_EQ(expire_all(160), 2u) << "idle one, and the busy one of the timeout-active group";
  EXPECT_TRUE(t.lookup(key(2), 160)) << "active connections keep it";
  EXPECT_FALSE(t.lookup(key(1), 160));
  EXPECT_FALSE(t.lookup(key(3, 2), 160));
  EXPECT_FALSE(t.conn_ref(busy_may_expire.ref)) << "stale ref";

  t.conn_unref(busy.ref, 500);  // last connection ends: the timer restarts (expiry 560)
  EXPECT_EQ(expire_all(559), 0u);
  EXPECT_EQ(expire_all(560), 1u);
  EXPECT_EQ(t.size(), 0u);
  EXPECT_EQ(t.stats().expired, 3u);
}

TEST_F(StickyTableTest, RemovedGroupStopsMatchingAndIsSweptAway) {
  StickyTable& t = make();
  insert(key(1), 1, 100);
  insert(key(2), 1, 100);
  t.remove_group(1);
  EXPECT_FALSE(t.lookup(key(1), 100));
  EXPECT_EQ(expire_all(101), 2u);
  EXPECT_EQ(t.size(), 0u);
}

TEST_F(StickyTableTest, RebindMovesOnceAndStaleRefsAreIgnored) {
  StickyTable& t = make();
  StickyHit h = insert(key(1), 5, 100);
  EXPECT_EQ(t.rebind(h.ref, 5, 6, 110), 6u);
  EXPECT_EQ(t.rebind(h.ref, 5, 7, 110), 6u) << "another worker already moved it";
  EXPECT_EQ(t.lookup(key(1), 110)->backend, 6u);
  EXPECT_EQ(t.stats().rebinds, 1u);

  ASSERT_TRUE(t.conn_ref(h.ref));
  ASSERT_TRUE(t.remove(key(1)));
  EXPECT_FALSE(t.remove(key(1)));
  expire_all(110);  // no reader registered: the slot is free again at once
  // Reuse slots until one lands on the old one; a stale ref must not touch the newcomer.
  StickyHit other;
  for (uint32_t i = 2; i < 200 && other.ref.slot != h.ref.slot; ++i) other = insert(key(i), 9, 120);
  ASSERT_EQ(other.ref.slot, h.ref.slot) << "slot was not reused (test setup)";
  EXPECT_NE(other.ref.gen, h.ref.gen);
  ASSERT_TRUE(t.conn_ref(other.ref));
  t.conn_unref(h.ref, 130);  // stale
  EXPECT_FALSE(t.conn_ref(h.ref));
  EXPECT_EQ(t.rebind(h.ref, 9, 1, 130), kNoBackend);
  bool found = false;
  for (const auto& r : t.list(130))
    if (r.backend == 9 && r.active_conns == 1) found = true;
  EXPECT_TRUE(found) << "the newcomer kept its reference";
}

TEST_F(StickyTableTest, RecordsRoundTripThroughInstall) {
  StickyTable& src = make();
  std::string err;
  insert(key(1), 3, 100);
  StickyHit h = insert(key(2), 4, 100);
  ASSERT_TRUE(src.conn_ref(h.ref));
  insert(key(2), 4, 130);  // last used 130, expiry 190
  std::vector<StickyRecord> recs = src.list(150);
  ASSERT_EQ(recs.size(), 2u);
  std::map<BackendId, StickyRecord> by_backend;
  for (const auto& r : recs) by_backend[r.backend] = r;
  EXPECT_EQ(by_backend[4].age_s, 50u);
  EXPECT_EQ(by_backend[4].idle_s, 20u);
  EXPECT_EQ(by_backend[4].ttl_s, 40u);
  EXPECT_EQ(by_backend[4].active_conns, 1u);
  EXPECT_EQ(src.list(150, 2).size(), 0u);

  // Another table on another clock (now = 5000).
  std::unique_ptr<StickyTable> keep = std::move(table_);
  StickyTable& dst = make();
  for (const auto& r : recs) EXPECT_EQ(dst.install(r, 5000), 0);
  for (const auto& r : recs) EXPECT_EQ(dst.install(r, 5000), 0) << "idempotent";
  EXPECT_EQ(dst.size(), 2u);
  EXPECT_EQ(dst.lookup(key(1), 5000)->backend, 3u);
  EXPECT_EQ(dst.lookup(key(2), 5039)->backend, 4u);
  EXPECT_FALSE(dst.lookup(key(2), 5040)) << "ttl carried over";
  std::vector<StickyRecord> back = dst.list(5000);
  for (const auto& r : back)
    if (r.backend == 4) {
      EXPECT_EQ(r.age_s, 50u);
      EXPECT_EQ(r.idle_s, 20u);
      EXPECT_EQ(r.active_conns, 0u) << "connections take their references again";
    }
  StickyRecord bad = recs[0];
  bad.key.group = 5;
  EXPECT_EQ(dst.install(bad, 5000), -EINVAL);
  table_.reset();
  table_ = std::move(keep);
}

TEST_F(StickyTableTest, FullTableRefusesNewKeys) {
  StickyTable& t = make(4);
  for (uint32_t i = 0; i < 4; ++i) insert(key(i), 1, 100);
  StickyHit h;
  EXPECT_EQ(t.get_or_insert(key(99), 1, 100, &h), -ENOSPC);
  EXPECT_EQ(t.get_or_insert(key(2), 5, 100, &h), 0) << "existing keys still match";
  EXPECT_EQ(h.backend, 1u);
  EXPECT_EQ(t.stats().full, 1u);
}

TEST_F(StickyTableTest, CallsWithoutAnLcoreAreRefused) {
  StickyTable& t = make();
  int rc = 0;
  std::thread([&] {
    StickyHit h;
    rc = t.get_or_insert(key(1), 1, 100, &h);
  }).join();
  EXPECT_EQ(rc, -EINVAL);
}

// Two workers insert the same keys at the same time with different candidates; every key
// ends up with one backend and both workers were told that backend. The workers meet at a
// barrier before each batch and walk it in the same order, so they race on most keys.
TEST_F(StickyTableTest, RacingInsertsAgree) {
  constexpr uint32_t kBatch = 256;
  constexpr uint32_t kKeys = 160 * kBatch;
  StickyTable& t = make(kKeys);
  std::vector<BackendId> got[2] = {std::vector<BackendId>(kKeys, kNoBackend),
                                   std::vector<BackendId>(kKeys, kNoBackend)};
  std::atomic<uint32_t> arrived[2] = {0, 0};
  std::atomic<int> failures{0};
  std::vector<std::thread> threads;
  Joiner join{threads, nullptr};
  for (int w = 0; w < 2; ++w) {
    threads.emplace_back([&, w] {
      const bool registered = rte_thread_register() == 0;
      if (!registered) failures.fetch_add(1);
      for (uint32_t b = 0; b * kBatch < kKeys; ++b) {
        arrived[w].store(b + 1, std::memory_order_release);
        while (arrived[1 - w].load(std::memory_order_acquire) < b + 1) std::this_thread::yield();
        for (uint32_t k = b * kBatch; registered && k < (b + 1) * kBatch; ++k) {
          StickyHit h;
          if (t.get_or_insert(key(k), 1 + static_cast<BackendId>(w), 100, &h) != 0)
            failures.fetch_add(1);
          else
            got[w][k] = h.backend;
        }
      }
      if (registered) rte_thread_unregister();
    });
  }
  for (auto& th : threads) th.join();
  ASSERT_EQ(failures.load(), 0);
  EXPECT_EQ(t.size(), kKeys);
  for (uint32_t k = 0; k < kKeys; ++k) {
    ASSERT_EQ(got[0][k], got[1][k]) << "key " << k;
    ASSERT_EQ(t.lookup(key(k), 100)->backend, got[0][k]);
  }
  EXPECT_EQ(t.stats().inserts, kKeys);
}

// A removed entry's slot is handed out again only after every registered reader has gone
// quiescent. Reader 1 is put online (and later quiescent) on its behalf by this thread; freed
// positions go to this lcore's cache, last in first out, so a reclaimed slot is the very next
// one an insert gets.
TEST_F(StickyTableTest, SlotIsReusedOnlyAfterEveryReaderWentQuiescent) {
  StickyTable& t = make();
  ASSERT_EQ(rte_rcu_qsbr_thread_register(rcu_, 1), 0);
  rte_rcu_qsbr_thread_online(rcu_, 1);
  const StickyHit victim = insert(key(1), 5, 100);
  ASSERT_TRUE(t.remove(key(1)));
  t.expire(100, 0);  // budget 0: only tries to reclaim
  for (uint32_t i = 2; i < 50; ++i)
    EXPECT_NE(insert(key(i), 6, 100).ref.slot, victim.ref.slot) << "reused inside the grace period";

  rte_rcu_qsbr_quiescent(rcu_, 1);
  t.expire(100, 0);
  EXPECT_EQ(insert(key(99), 7, 100).ref.slot, victim.ref.slot) << "reclaimed after it";
  rte_rcu_qsbr_thread_offline(rcu_, 1);
  rte_rcu_qsbr_thread_unregister(rcu_, 1);
}

// The control side inserts and expires in rounds while readers look keys up without locks.
// Key i is always bound to backend 1 + i % 97; a reader that ever saw another backend for key
// i would have read a slot reused before it went quiescent.
TEST_F(StickyTableTest, ExpiryWithLockFreeReaders) {
  constexpr uint32_t kKeysPerRound = 2000;
  constexpr uint32_t kRounds = 60;
  StickyTable& t = make(kKeysPerRound * 2, 1);
  auto backend_for = [](uint32_t i) { return static_cast<BackendId>(1 + i % 97); };
  std::atomic<bool> stop{false};
  std::atomic<uint64_t> hits{0}, wrong{0};
  std::atomic<uint32_t> round_base{0};
  std::vector<std::thread> threads;
  Joiner join{threads, [&] { stop.store(true); }};
  for (uint32_t r = 1; r <= 2; ++r) {
    threads.emplace_back([&, r] {
      rte_rcu_qsbr_thread_register(rcu_, r);
      rte_rcu_qsbr_thread_online(rcu_, r);
      uint64_t x = r;
      while (!stop.load(std::memory_order_relaxed)) {
        x = x * 6364136223846793005ull + 1442695040888963407ull;
        const uint32_t i = round_base.load(std::memory_order_relaxed) +
                           static_cast<uint32_t>((x >> 33) % (2 * kKeysPerRound));
        if (auto h = t.lookup(key(i), 0)) {
          hits.fetch_add(1, std::memory_order_relaxed);
          if (h->backend != backend_for(i)) wrong.fetch_add(1);
        }
        rte_rcu_qsbr_quiescent(rcu_, r);
      }
      rte_rcu_qsbr_thread_offline(rcu_, r);
      rte_rcu_qsbr_thread_unregister(rcu_, r);
    });
  }
  // now = 0 keeps every entry valid for the readers; expire() runs at now = 10.
  uint32_t removed = 0;
  for (uint32_t round = 0; round < kRounds; ++round) {
    const uint32_t base = round * kKeysPerRound;
    round_base.store(base > kKeysPerRound ? base - kKeysPerRound : 0);
    for (uint32_t i = base; i < base + kKeysPerRound; ++i) {
      StickyHit h;
      int rc = t.get_or_insert(key(i), backend_for(i), 0, &h);
      // Slots freed last round may still wait for a reader's quiescent state; budget 0
      // only reclaims.
      for (int spin = 0; rc == -ENOSPC && spin < 1000; ++spin) {
        t.expire(0, 0);
        std::this_thread::yield();
        rc = t.get_or_insert(key(i), backend_for(i), 0, &h);
      }
      ASSERT_EQ(rc, 0) << "round " << round << " key " << i;
      ASSERT_EQ(h.backend, backend_for(i));
    }
    removed += t.expire(10, UINT32_MAX);
  }
  stop.store(true);
  for (auto& th : threads) th.join();
  EXPECT_EQ(removed, kRounds * kKeysPerRound);
  EXPECT_GT(hits.load(), 0u);
  EXPECT_EQ(wrong.load(), 0u);
}

}  // namespace
}  // namespace baton
