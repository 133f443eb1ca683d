// SPDX-License-Identifier: Apache-2.0
//
// Sticky table (session persistence), seed 000 section 3.2.1.3.2.
//
// Model. A sticky group has a name, a method (source address, source prefix, HTTP cookie,
// HTTP header), a server farm and a backup farm, whether stickiness applies on the backup
// farm, a timeout, and whether entries time out while connections are still active. An entry
// binds (group, key) to a backend: key derivation is pure (StickyKey::source/source_prefix/value),
// and so are the aging rule (StickyAging) and the choice between the entry and a fresh Maglev
// pick (sticky_decide). The seed's "replicate" and "aggregate state" flags are not modelled:
// migration copies entries explicitly (StickyRecord), and backup state is the pool's business.
//
// Theory of operation of StickyTable
//
// One table is shared by all workers, because one client's connections land on different
// workers. Readers are lock-free; inserts come from any worker.
//
//   StickyKey --rte_hash (RW_CONCURRENCY_LF | MULTI_WRITER_ADD | EXT_TABLE)--> position
//   position == slot --> slots_[slot]: state, gen, key, binding, created, last_used, active
//
// * DPDK 22.11 allows these flags together (it refuses only RW_CONCURRENCY with
//   RW_CONCURRENCY_LF). MULTI_WRITER_ADD serialises adds and deletes on rte_hash's writer
//   lock and gives each lcore a cache of free positions; lookups take no lock. Because of
//   the per-lcore caches, every thread that may insert (get_or_insert, install) or reclaim
//   (expire) must have an lcore id: an EAL lcore, or a thread that called
//   rte_thread_register(). Such calls from other threads return -EINVAL.
// * Race-free insert: rte_hash_add_key returns the existing position when the key is already
//   there, so two workers adding one key meet at one slot. The slot's state goes
//   free -> claimed by one compare-and-swap; the winner fills the entry and publishes it
//   (live, release store); the loser retries until it sees live and reads the winner's
//   backend. Both end with the same backend.
// * binding = backend id (high 32 bits) | expiry (low 32 bits), one 64-bit atomic, so a
//   refresh, a rebind to another backend and a revival of an expired entry are each one
//   compare-and-swap: concurrent workers cannot disagree on the backend.
// * Removal (control side only: expire(), remove()): state live -> dead by CAS, then the key
//   is deleted from rte_hash. Without rte_hash's internal RCU, LF mode does not free the
//   position on delete; the table records (QSBR token, position) and, once every reader has
//   gone quiescent (rte_rcu_qsbr_check), marks the slot free and calls
//   rte_hash_free_key_with_position. A reader holding a position from before the delete
//   therefore finds the slot intact (dead: no match) and never sees it reused under it.
//   remove() only deletes; the slot is reclaimed by a later expire().
// * Expiry against concurrent use is a Dekker handshake (sequentially consistent on both
//   sides): a worker first publishes its use (refresh of the expiry, or active++), then
//   re-reads the state; expire() first marks the entry dead, then re-reads expiry and
//   active count and revives the entry if a use slipped in. Either the worker sees dead (and
//   starts over with a fresh insert) or expire() sees the use (and keeps the entry).
// * A StickyRef (slot, gen) names an entry across quiescent periods, e.g. in a connection's
//   side table for conn_unref at close: gen changes whenever the slot is reused, so a stale
//   ref is ignored instead of touching another client's entry.
// * expire() walks the slot array with a cursor, `budget` slots per call (a clock sweep), and
//   is driven by the control core. Control-side calls (expire, remove, remove_group,
//   set_group, list, install) serialise on a mutex.
// * An entry lives until now >= expiry, where expiry = last use + timeout; uses are insertion,
//   get_or_insert hits, touch() and conn_unref() (so the timer also restarts when the last
//   connection ends). With timeout_active_conns false an entry with active connections never
//   expires (seed: "timeout active connections").
//
// Times are seconds on the caller's monotonic clock (the same `now` as the connection table).
#pragma once

#include <rte_hash.h>
#include <rte_rcu_qsbr.h>

#include <array>
#include <atomic>
#include <cstdint>
#include <deque>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "common/net_types.h"
#include "lb/backend_pool.h"

namespace baton {

// ---- The model (pure) -------------------------------------------------------------------------

enum class StickyKeyMethod : uint8_t {
  kSourceAddress = 1,  // client address
  kSourcePrefix = 2,   // client address masked to a prefix (clients behind a NAT pool)
  kHttpCookie = 3,     // value of a named request cookie (learned, e.g. JSESSIONID)
  kHttpHeader = 4,     // value of a named request header
};
// "source-address", "source-prefix", "http-cookie", "http-header"
const char* sticky_key_method_name(StickyKeyMethod m);
std::optional<StickyKeyMethod> parse_sticky_key_method(std::string_view s);

struct StickyGroup {
  std::string name;
  StickyKeyMethod method = StickyKeyMethod::kSourceAddress;
  uint8_t prefix_len_v4 = 24;  // kSourcePrefix, IPv4 clients (0..32)
  uint8_t prefix_len_v6 = 64;  // kSourcePrefix, IPv6 clients (0..128)
  std::string field;           // cookie or header name for the HTTP methods
  std::string server_farm;     // pool names; the integrator resolves them
  std::string backup_farm;     // empty = none
  bool sticky_on_backup = false;
  uint32_t timeout_s = 1800;  // 1..kMaxTimeout
  bool timeout_active_conns = false;

  static constexpr uint32_t kMaxTimeout = 30 * 86400;
  // Empty when valid, else the reason.
  std::string validate() const;
};

// The hash key of an entry: 32 bytes, every byte defined.
struct StickyKey {
  uint16_t group = 0;
  uint8_t method = 0;      // StickyKeyMethod
  uint8_t family = 0;      // Family of a source key; 0 for HTTP values
  uint8_t prefix_len = 0;  // kSourcePrefix only
  uint8_t reserved[3] = {};
  uint32_t value_len = 0;  // HTTP methods: length of the value
  uint32_t reserved2 = 0;
  std::array<uint8_t, 16> data{};  // masked address, or stable_hash64(value) in bytes 0..7

  static StickyKey source(uint16_t group, const IpAddr& a, Family f);
  // Bits beyond prefix_len are zeroed; prefix_len is clamped to the family's width.
  static StickyKey source_prefix(uint16_t group, const IpAddr& a, Family f, uint8_t prefix_len);
  // A cookie or header value, hashed (64 bits) with its length. Two different values collide
  // with probability ~2^-64; a client crafting a collision could only choose which backend it
  // lands on, which a cookie lets it do anyway.
  static StickyKey value(uint16_t group, StickyKeyMethod m, std::string_view value);

  bool operator==(const StickyKey&) const = default;
  // "g3 source-prefix 10.0.0.0/24", "g1 http-cookie #9f0c...(len 32)"
  std::string to_string() const;
};
static_assert(sizeof(StickyKey) == 32, "StickyKey is hashed as raw bytes; no padding allowed");

// The key for a new connection under group g: the client's address for the source methods, the
// cookie or header value for the HTTP ones (nullopt when the request carries none, or for an
// HTTP method without a value).
std::optional<StickyKey> derive_sticky_key(uint16_t group_id, const StickyGroup& g,
                                           const IpAddr& client, Family family,
                                           std::optional<std::string_view> http_value);

// Aging rule of one group (seed: "timeout", "timeout active connections").
struct StickyAging {
  uint32_t timeout_s = 0;
  bool timeout_active_conns = false;

  uint32_t expiry_after_use(uint32_t now) const {
    return now > UINT32_MAX - timeout_s ? UINT32_MAX : now + timeout_s;
  }
  bool expired(uint32_t now, uint32_t expiry, uint32_t active_conns) const {
    return now >= expiry && (active_conns == 0 || timeout_active_conns);
  }
};

// What a new connection does with stickiness, given what the table and the pool say.
enum class StickyAction : uint8_t {
  kUseEntry,       // go to the entry's backend
  kBindCandidate,  // go to the candidate (the pool's pick) and bind the key to it
                   // (get_or_insert without an entry, rebind() with a stale one)
  kCandidateOnly,  // go to the candidate and leave the table alone
};
struct StickyFacts {
  bool has_entry = false;
  bool entry_usable = false;         // the pool says the entry's backend takes persistent conns
  bool entry_in_backup = false;      // ... and it belongs to the backup farm
  bool candidate_in_backup = false;  // the pool's pick came from the backup farm
};
// Seed: "sticky enabled on backup server farm". Without it, a client sent to the backup farm
// is not bound there (and an existing binding to a primary backend is kept for when the
// primary farm comes back); with it, bindings to backup backends are made and honoured.
StickyAction sticky_decide(bool sticky_on_backup, const StickyFacts& f);

// ---- The table --------------------------------------------------------------------------------

struct StickyRef {
  uint32_t slot = UINT32_MAX;
  uint32_t gen = 0;
  bool valid() const { return slot != UINT32_MAX; }
};

struct StickyHit {
  StickyRef ref;
  BackendId backend = kNoBackend;
  bool inserted = false;  // this call created (or revived) the binding with the candidate
};

// Plain form of an entry for migration and listings. Times are relative, because two hosts'
// clocks differ (as ConnRecord's idle_s).
struct StickyRecord {
  StickyKey key;
  BackendId backend = kNoBackend;
  uint32_t age_s = 0;         // since the binding was made
  uint32_t idle_s = 0;        // since last use
  uint32_t ttl_s = 0;         // until expiry (0: due, kept only for active connections)
  uint32_t active_conns = 0;  // informational; install() starts at 0 (see there)
};

// name, metric suffix (baton_<suffix>), help
#define BATON_FOREACH_STICKY_TABLE_COUNTER(X)                                             \
  X(inserts, "sticky_inserts_total", "Sticky entries created")                            \
  X(revived, "sticky_revived_total", "Expired sticky entries bound again before removal") \
  X(rebinds, "sticky_rebinds_total", "Sticky entries moved to another backend")           \
  X(expired, "sticky_expired_total", "Sticky entries removed by aging")                   \
  X(removed, "sticky_removed_total", "Sticky entries removed by the operator")            \
  X(installs, "sticky_installs_total", "Sticky entries installed from records")           \
  X(full, "sticky_full_total", "Inserts refused: table at capacity")                      \
  X(busy, "sticky_busy_total", "Inserts given up: the slot stayed contended")

// A copy for metrics. Inside the table they are relaxed atomics, not per-worker fields as
// elsewhere: any worker writes them, and only on the slow path (new bindings, expiry).
struct StickyTableStats {
#define BATON_COUNTER_FIELD(name, metric, help) uint64_t name = 0;
  BATON_FOREACH_STICKY_TABLE_COUNTER(BATON_COUNTER_FIELD)
#undef BATON_COUNTER_FIELD
};

class StickyTable {
 public:
  struct Params {
    std::string name;          // unique per process, 1..kMaxNameLen characters
    uint32_t capacity = 0;     // live entries allowed (1..kMaxCapacity)
    uint16_t max_groups = 64;  // group ids 0..max_groups-1
    int socket_id = SOCKET_ID_ANY;
    rte_rcu_qsbr* rcu = nullptr;  // the workers' QSBR variable
  };
  static constexpr size_t kMaxNameLen = 19;  // rte_hash ring names, as ConnTable
  static constexpr uint32_t kMaxCapacity = 1u << 26;

  static std::unique_ptr<StickyTable> create(const Params& p, std::string* err);
  // Only when no reader can reach the table (rte_hash_free does not wait for readers).
  ~StickyTable();
  StickyTable(const StickyTable&) = delete;
  StickyTable& operator=(const StickyTable&) = delete;

  // ---- Control side (any thread; serialised internally) --------------------------------
  // Configures (or reconfigures: new timeouts apply from the next use) group id.
  bool set_group(uint16_t id, const StickyGroup& g, std::string* err);
  // Unconfigures the group: its entries stop matching at once and are removed by expire().
  void remove_group(uint16_t id);
  // Looks at up to `budget` slots; removes entries due under their group's rule (and all
  // entries of removed groups); frees slots whose grace period has ended. Returns the
  // number removed. Needs an lcore id (returns 0 without one).
  uint32_t expire(uint32_t now, uint32_t budget);
  bool remove(const StickyKey& k);
  // Entries (all, or those of one group) as records relative to now.
  std::vector<StickyRecord> list(uint32_t now, std::optional<uint16_t> group = {}) const;
  // Installs or overwrites (idempotent) an entry from a record. The active count starts at 0:
  // whoever installs the connections takes their references again (lookup + conn_ref).
  // Returns 0, -EINVAL (group not configured, no lcore id), -ENOSPC, -EBUSY.
  int install(const StickyRecord& r, uint32_t now);
  // A migrated connection's entry (migration destination, from the installing worker): installs
  // r unless a live entry is here, then takes the connection's reference (conn_ref) and says
  // which entry and backend it got in *out. A live entry here with the same backend is kept
  // (its expiry moves to the later of the two); with another backend, the record replaces it
  // only if no connection here uses it (active 0), else the entry here stays: its connections
  // were bound first, and the migrated connection keeps its own backend anyway (a connection's
  // backend is fixed in its translation). Returns 0, or install()'s errors.
  int adopt(const StickyRecord& r, uint32_t now, StickyHit* out);
  // The entry ref names, if it is live and no connection uses it, is removed (a VM's
  // connections are gone and the entry named only it). False when stale or still in use.
  bool remove_if_unused(StickyRef ref);

  // ---- Workers (any thread online in RCU) ------------------------------------------------
  // The live, unexpired binding of k, or nullopt. Does not refresh the entry.
  std::optional<StickyHit> lookup(const StickyKey& k, uint32_t now) const;
  // The entry ref names as a record relative to now, or nullopt if the ref is stale (the
  // migration reader, for the entry a connection holds).
  std::optional<StickyRecord> read(StickyRef ref, uint32_t now) const;
  // The binding of k: an existing live one (refreshed), else a new one to `candidate`.
  // Concurrent callers with different candidates all get the same backend. Returns 0, or
  // -EINVAL (group not configured, no lcore id, candidate kNoBackend), -ENOSPC (table full),
  // -EBUSY (slot kept contended; go to the candidate without stickiness).
  int get_or_insert(const StickyKey& k, BackendId candidate, uint32_t now, StickyHit* out);
  // Moves the binding from `expected` to `replacement` (its backend went away) unless another
  // worker already moved it; returns the backend the entry now names, or kNoBackend if ref is
  // stale (the entry is gone; use replacement without stickiness).
  BackendId rebind(StickyRef ref, BackendId expected, BackendId replacement, uint32_t now);
  // Refreshes the expiry (e.g. another request on a kept-alive connection).
  void touch(StickyRef ref, uint32_t now);
  // A connection now uses / stopped using the entry. conn_ref is false if the entry is gone
  // (then do not call conn_unref); conn_unref of a stale ref does nothing.
  bool conn_ref(StickyRef ref);
  void conn_unref(StickyRef ref, uint32_t now);

  uint32_t size() const { return size_.load(std::memory_order_relaxed); }
  uint32_t capacity() const { return capacity_; }
  StickyTableStats stats() const;
  const std::string& name() const { return name_; }

 private:
  struct Slot;
  struct GroupRule {
    std::atomic<uint32_t> timeout_s{0};  // 0 = not configured
    std::atomic<bool> timeout_active_conns{false};
  };
  enum class Meet : uint8_t { kClaimed, kLive, kRetry };

  StickyTable() = default;
  std::optional<StickyAging> rule(uint16_t group) const;
  Slot* slot_of(StickyRef ref) const;  // nullptr when stale
  // Position of k, added if absent (capacity permitting): >= 0, or -ENOSPC.
  int32_t find_or_add(const StickyKey& k, hash_sig_t sig);
  Meet meet(uint32_t pos, const StickyKey& k, BackendId backend, uint32_t expiry, uint32_t created,
            uint32_t last_used);
  void refresh(Slot& s, const StickyAging& a, uint32_t now);
  void kill(uint32_t pos);  // live -> dead already done; delete key, queue the slot
  void reclaim();

  std::string name_;
  rte_hash* hash_ = nullptr;
  Slot* slots_ = nullptr;
  uint32_t nslots_ = 0;
  uint32_t capacity_ = 0;
  uint16_t max_groups_ = 0;
  std::unique_ptr<GroupRule[]> groups_;
  rte_rcu_qsbr* rcu_ = nullptr;
  std::atomic<uint32_t> size_{0};

  mutable std::mutex control_mu_;
  uint32_t cursor_ = 0;                                 // expire() sweep position
  std::vector<uint32_t> dying_;                         // deleted since the last token
  std::deque<std::pair<uint64_t, uint32_t>> deferred_;  // (QSBR token, slot)

  struct AtomicStats {
#define BATON_COUNTER_FIELD(name, metric, help) std::atomic<uint64_t> name{0};
    BATON_FOREACH_STICKY_TABLE_COUNTER(BATON_COUNTER_FIELD)
#undef BATON_COUNTER_FIELD
  };
  mutable AtomicStats stats_;
};

}  // namespace baton
