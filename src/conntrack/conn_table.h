// SPDX-License-Identifier: Apache-2.0
//
// ConnTable: one worker's shard of the connection table.
//
// Theory of operation
//
// The table is sharded per worker: each worker owns one ConnTable and is its only writer (the
// owner of a flow is FlowKey::owner(workers); other workers hand packets to it). Other
// cores (the control core taking a snapshot or listing, the migration engine) only read.
//
//   FlowKey --rte_hash of its family (RW_CONCURRENCY_LF, EXT_TABLE)--> position
//   slot = the family's first slot + position (IPv4 slots first, then IPv6)
//   slot --> row(slot): ConnEntry (64 bytes) [+ ConnCounters (32 bytes) with accounting]
//            live_[slot] (1 byte: 1 = the slot holds a live entry)
//            key(slot) --> rte_hash's own key store
//
// * Two hashes, one per address family, as VPP keeps its IPv4 and IPv6 session hashes apart
//   (bihash 16_8 and 48_8): rte_hash stores each key with an 8-byte data word, rounded up to 16
//   bytes, so a 40-byte FlowKey costs 48 bytes per position and a third of an IPv4 table's
//   memory. An IPv4 key is stored as 16 bytes (FlowKeyV4: both addresses in one word, then the
//   FlowKey's last word unchanged), 32 per position, and hashed over two words instead of five.
//   Each family has its own capacity (capacity, capacity_v6; 0 = that family is refused). The
//   rows, live flags, VM index and aging lists span both families: callers see slots only.
//
// * Rows: one array, stride 64 or 96. The counters sit right after their entry, so that the
//   two lines a packet touches are neighbours on one page: kept in an array of their own they
//   cost a page walk more per packet (measured: 1M entries, 4 KiB pages, 493 -> 560 cycles).
//
// * Slots are rte_hash key positions, so the key is stored once (in rte_hash's key store) and
//   the entry array needs no free list of its own. A family's hash has `capacity + slack`
//   positions; the table itself refuses inserts beyond capacity (-ENOSPC, counter full_drops: the new
//   flow is dropped, nothing established is evicted). The slack absorbs slots that are deleted
//   but still inside their RCU grace period. EXT_TABLE guarantees that an insert below capacity
//   never fails because of cuckoo displacement limits.
// * Reclaim: deferred, on the caller's QSBR variable, without rte_hash's RCU defer queue
//   (which costs 16 bytes per position: a sixth of the table). With RW_CONCURRENCY_LF,
//   rte_hash_del_key leaves the position allocated; remove() chains the dead slot into a
//   limbo batch through its age_next link (the entry is off the aging list, and readers never
//   follow age links), and a batch of kLimboBatch removals is stamped with a QSBR token. Once
//   every registered reader has reported quiescent since that token, rte_hash_free_key_with_
//   position hands the batch's positions out again. Since position == slot, the entry, its key
//   and its vm_next stay intact for any reader that may still hold the slot number. Batches are
//   reclaimed on remove and, when rte_hash's free list runs dry, on insert; if a reader stays
//   online for long, inserts may fail with -ENOSPC (counter reclaim_stalls).
// * Seqlock per entry (ConnEntry::version): the owner brackets updates with begin_write /
//   end_write (odd while writing). read() copies the entry and key and retries until it sees
//   the same even version before and after. The version is also the entry's wire version, so
//   insert() stores init.version (rounded down to even) unchanged; live_ is what publishes a
//   new entry: a reader that sees live == 0 reports "not live" without looking at the entry.
//   Removal only clears live_ (the content stays until the grace period ends), so a read racing
//   a removal returns the last state before it.
// * VM index: per VM (1..max_vms; 0 = none) an RCU singly-walkable list threaded through
//   ConnEntry::vm_next (vm_prev is owner-only, for O(1) unlink). Insert publishes at the head
//   with a release store; removal rewrites the predecessor's link but leaves the removed
//   entry's vm_next alone, so a walker standing on it continues into the live list (the classic
//   list_del_rcu argument: everything a walker can reach is reclaimed only after it goes
//   quiescent). Listing a VM costs time proportional to its entries, not to the table size.
// * Aging: one doubly linked list per age class (ConnEntry::age_prev/age_next, owner-only), in
//   insertion / last-class-change order. expire() looks at a few list heads per call
//   (round-robin over classes): an expired head is removed, a fresh one (its last_seen was
//   refreshed by traffic) goes to the tail of its class's list. Traffic never touches the
//   lists: lazy LRU. A class change need not move the entry at once (the worker moves it only
//   when the new class times out sooner): every head is judged by its own class's timeout,
//   and a head on another class's list moves to its own when it comes up.
//
// Fields of a read() copy outside the seqlock contract: the link fields (vm_*/age_*) are
// rewritten by neighbours' inserts/removes without a bracket; read() returns them as kNoSlot.
// set_age_class() writes age_class; call it inside the caller's write bracket when readers
// must see the class change together with the state change that caused it. The caller may also
// store the new class in the entry first (the lists find an entry by their ends, not by the
// field).
//
// Threads: every method not marked "any core" is owner-only. "Any core" methods must run while
// the calling thread is online on the QSBR variable given at creation (or while the owner is
// known not to be removing). The table must be destroyed only when no reader can reach it and
// every reader has gone quiescent since the last removal (rte_hash_free frees the positions
// still in limbo with the rest, without waiting).
#pragma once

#include <rte_hash.h>
#include <rte_hash_crc.h>
#include <rte_pause.h>
#include <rte_prefetch.h>
#include <rte_rcu_qsbr.h>

#include <atomic>
#include <cerrno>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <memory>
#include <string>
#include <vector>

#include "common/live_flags.h"
#include "common/net_types.h"
#include "conntrack/conn_entry.h"

namespace baton {

// name, metric suffix (baton_<suffix>), help
#define BATON_FOREACH_CONN_TABLE_COUNTER(X)                                                  \
  X(inserts, "conn_table_inserts_total", "Entries inserted")                                 \
  X(removes, "conn_table_removes_total", "Entries removed (aging included)")                 \
  X(expired, "conn_table_expired_total", "Entries removed by aging")                         \
  X(full_drops, "conn_table_full_total", "Inserts refused: table at capacity")               \
  X(reclaim_stalls, "conn_table_reclaim_stalls_total",                                       \
    "Inserts refused: free slots still waiting for an RCU grace period")                     \
  X(age_requeues, "conn_table_age_requeues_total", "Aging heads found fresh and requeued")

// Written by the owner only; read by the control core (a count a few operations late is fine).
struct alignas(64) ConnTableStats {
#define BATON_COUNTER_FIELD(name, metric, help) uint64_t name = 0;
  BATON_FOREACH_CONN_TABLE_COUNTER(BATON_COUNTER_FIELD)
#undef BATON_COUNTER_FIELD
};

class ConnTable {
 public:
  struct Params {
    std::string name;        // unique per process, at most kMaxNameLen characters
    uint32_t capacity = 0;     // live IPv4 entries allowed
    uint32_t capacity_v6 = 0;  // live IPv6 entries allowed; 0 = IPv6 connections are refused
    uint16_t max_vms = 0;    // VM ids 1..max_vms are indexed; 0 = no VM
    int socket_id = SOCKET_ID_ANY;
    rte_rcu_qsbr* rcu = nullptr;  // shared by all shards; readers registered by the caller
    uint8_t age_classes = 1;
    // Per-connection packet/byte counters (conntrack.accounting): 32 bytes per position, and
    // a second cache line for every packet to touch.
    bool accounting = true;
    // Bytes of another module's per-connection record kept in each row after the entry and its
    // counters (ext(slot)); 0 = none. The translation record (nat/conn_xlate.h) lives here, as
    // Linux conntrack keeps its NAT extension with the connection: a translated packet reads one
    // row, its record on the entry's page and in the counters' line, instead of a line of a
    // second slot-indexed array (a page walk more per packet on 4 KiB pages).
    uint32_t ext_bytes = 0;
  };

  // rte_hash names its rings "HT_<name>"; ring names are limited to 28 characters, so longer
  // names would be truncated into collisions. The two hashes are <name>4 and <name>6.
  static constexpr size_t kMaxNameLen = 18;
  static constexpr uint32_t kMaxCapacity = 1u << 28;
  static constexpr uint32_t kMaxExtBytes = 256;

  static std::unique_ptr<ConnTable> create(const Params& p, std::string* err);
  ~ConnTable();
  ConnTable(const ConnTable&) = delete;
  ConnTable& operator=(const ConnTable&) = delete;

  // ---- Owner (single writer) side --------------------------------------------------------

  // Slot of k, or -1. (Also safe from any core: rte_hash readers are lock-free.)
  int32_t lookup(const FlowKey& k) const;
  // n <= RTE_HASH_LOOKUP_BULK_MAX (64); slots[i] = slot of *keys[i] or -1. The keys may mix
  // families.
  void lookup_bulk(const FlowKey* const* keys, uint32_t n, int32_t* slots) const;
  // The same with each key's hash(keys[i]) given (the worker computes it while the key is
  // still in registers, which spares rte_hash an indirect call per key).
  void lookup_bulk(const FlowKey* const* keys, hash_sig_t* sigs, uint32_t n, int32_t* slots) const;

  // rte_hash's own hash of the stored key (its default: CRC32C, init 0, over the FlowKeyV4 or the
  // FlowKey), computed inline. create() checks that it matches rte_hash_hash(); if it ever did
  // not (another default hash function in another DPDK), hash_is_inline() is false and callers
  // must use the lookup without signatures.
  static hash_sig_t hash(const FlowKey& k) {
#if defined(__SSE4_2__) && defined(__x86_64__)
    if (k.family == Family::kV4) {
      const FlowKeyV4 v = FlowKeyV4::of(k);
      return static_cast<hash_sig_t>(__builtin_ia32_crc32di(__builtin_ia32_crc32di(0, v.addrs), v.tail));
    }
    uint64_t w[5];
    std::memcpy(w, &k, sizeof w);
    uint64_t c = 0;
    for (uint64_t x : w) c = __builtin_ia32_crc32di(c, x);
    return static_cast<hash_sig_t>(c);
#else
    if (k.family == Family::kV4) {
      const FlowKeyV4 v = FlowKeyV4::of(k);
      return rte_hash_crc(&v, sizeof v, 0);
    }
    return rte_hash_crc(&k, sizeof k, 0);
#endif
  }
  bool hash_is_inline() const { return hash_inline_ok_; }
  // Whether hash() is h's own hash of keys of family f in their stored form (FlowKeyV4 for
  // IPv4, the FlowKey for IPv6): any rte_hash of such keys may then be given hash()'s
  // signatures (checked on sample keys; create() and the translation index ask it).
  static bool hash_agrees(const rte_hash* h, Family f);

  // Links the new entry into VM init.vm_id's index (0 = none) and at the tail of aging list
  // init.age_class. Returns the slot, -EEXIST, -ENOSPC (at capacity, or no slot out of its
  // grace period yet), -EINVAL (vm_id > max_vms or age_class >= age_classes).
  // c: the first counters (none: zero); ignored without accounting.
  // Version: kGiven stores init.version (rounded down to even) as it is: an entry copied from
  // a peer keeps the peer's wire version. kAfterSlot (the owner's own new entries) stores at
  // least the slot's previous version + 2, so that a slot's versions never go back: a
  // migration reader that sent the slot's previous occupant then always sees a change, even
  // when the new entry has the same key (a flow closed and opened again, kept in one slot).
  enum class Version : uint8_t { kGiven, kAfterSlot };
  int32_t insert(const FlowKey& k, const ConnEntry& init, const ConnCounters* c = nullptr,
                 Version v = Version::kGiven);
  // Unlinks from the VM index and the aging list and deletes the key; the slot is handed out
  // again only after an RCU grace period.
  void remove(uint32_t slot);

  ConnEntry& entry(uint32_t slot) { return row(slot); }
  const ConnEntry& entry(uint32_t slot) const { return row(slot); }
  // The key, from rte_hash's key store (position-indexed, never moved by cuckoo moves).
  FlowKey key(uint32_t slot) const {
    const uint8_t* p = stored_key(slot);
    FlowKey k;
    if (slot < fam_[1].first) {
      FlowKeyV4 v;
      std::memcpy(&v, p, sizeof v);
      k = v.expand();
    } else {
      std::memcpy(static_cast<void*>(&k), p, sizeof k);
    }
    return k;
  }
  // key(slot).proto, read from the stored key.
  uint8_t key_proto(uint32_t slot) const {
    static_assert(offsetof(FlowKey, proto) == FlowKeyV4::kTailOffset + 4);
    return stored_key(slot)[(slot < fam_[1].first ? 8 : FlowKeyV4::kTailOffset) + 4];
  }
  // key(slot).fingerprint(seed), without building the FlowKey of an IPv4 key.
  uint64_t key_fingerprint(uint32_t slot, FlowKey::Seed seed) const {
    const uint8_t* p = stored_key(slot);
    if (slot < fam_[1].first) {
      FlowKeyV4 v;
      std::memcpy(&v, p, sizeof v);
      return v.fingerprint(seed);
    }
    uint64_t w[5];  // the stored FlowKey's words
    std::memcpy(w, p, sizeof w);
    return FlowKey::fingerprint_of(w, seed);
  }
  void prefetch_key(uint32_t slot) const {
    const uint8_t* p = stored_key(slot);
    rte_prefetch0(p);
    rte_prefetch0(p + (slot < fam_[1].first ? sizeof(FlowKeyV4) : sizeof(FlowKey)) - 1);
  }

  // Seqlock bracket around every update of a live entry by the owner.
  void begin_write(uint32_t slot) {
    std::atomic<uint32_t>& v = row(slot).version;
    v.store(v.load(std::memory_order_relaxed) + 1, std::memory_order_relaxed);
    std::atomic_thread_fence(std::memory_order_release);  // odd before any data store
  }
  void end_write(uint32_t slot) {
    std::atomic<uint32_t>& v = row(slot).version;
    v.store(v.load(std::memory_order_relaxed) + 1, std::memory_order_release);
  }

  // Accounting, inside the write bracket; no-ops without it.
  void count(uint32_t slot, Dir d, uint32_t bytes) {
    if (!accounting_) return;
    ConnCounters& c = ctr(slot);
    c.packets[static_cast<int>(d)]++;
    c.bytes[static_cast<int>(d)] += bytes;
  }
  void set_counters(uint32_t slot, const ConnCounters& c) {
    if (accounting_) ctr(slot) = c;
  }
  bool accounting() const { return accounting_; }
  // The slot's extension record (Params::ext_bytes bytes; its owner constructs it). Owner and,
  // under the owner's publication rules for that record, any core.
  uint8_t* ext(uint32_t slot) const { return rows_ + size_t{slot} * stride_ + ext_offset_; }
  uint32_t ext_bytes() const { return ext_bytes_; }
  // Asks for what a packet of the slot touches: the entry's line, and its counters' and
  // extension's.
  void prefetch(uint32_t slot) const {
    const uint8_t* r = rows_ + size_t{slot} * stride_;
    rte_prefetch0(r);
    rte_prefetch0(r + stride_ - 1);  // an entry at a 32-byte offset spans two lines too
  }

  // Moves the entry to the tail of class cls (also when it is already in cls).
  void set_age_class(uint32_t slot, uint8_t cls);

  // Aging, a little every loop. Looks at up to `budget` list heads, round-robin over the
  // classes: a head with now_s - last_seen >= timeout_of(entry) is removed (on_expire(slot)
  // first; it must not remove the slot itself), a fresh one goes to the tail of its list.
  // A last_seen in the future counts as age 0. Returns the number removed.
  template <class TimeoutFn, class ExpireFn>
  uint32_t expire(uint32_t now_s, uint32_t budget, TimeoutFn&& timeout_of, ExpireFn&& on_expire);

  // ---- Any core (online in RCU) ------------------------------------------------------------

  // Consistent copy of a live entry (and its key if key_out, its counters if counters_out:
  // zero without accounting); false if the slot is not live. Link fields of *out are kNoSlot
  // (see the header comment).
  bool read(uint32_t slot, ConnEntry* out, FlowKey* key_out,
            ConnCounters* counters_out = nullptr) const;
  bool live(uint32_t slot) const {
    return slot < slots_ && live_flag(live_, slot);
  }

  // Walks VM vm's entries: fn(uint32_t slot) for each entry live when visited. Safe against
  // the owner's concurrent inserts/removes; entries inserted during the walk may be missed.
  template <class Fn>
  void for_each_in_vm(uint16_t vm, Fn&& fn) const;
  uint32_t vm_count(uint16_t vm) const {
    return vm <= max_vms_ ? std::atomic_ref<uint32_t>(vm_count_[vm]).load(std::memory_order_relaxed)
                          : 0;
  }
  // fn(uint32_t slot) for every live slot; O(capacity), for listings.
  template <class Fn>
  void for_each(Fn&& fn) const;

  // Both families together, or one of them.
  uint32_t size() const { return size(Family::kV4) + size(Family::kV6); }
  uint32_t capacity() const { return fam_[0].capacity + fam_[1].capacity; }
  uint32_t size(Family f) const { return fam_of(f).size.load(std::memory_order_relaxed); }
  uint32_t capacity(Family f) const { return fam_of(f).capacity; }
  // Positions in both hashes (capacities + slack): slot numbers are < slots().
  uint32_t slots() const { return slots_; }
  // DPDK heap growth measured across create() (rte_hash buckets, ext buckets, key store, free
  // rings, entry array, live flags, VM heads) plus the object itself and its limbo ring.
  size_t memory_bytes() const { return memory_bytes_; }
  // The same split by what create() allocated, for the memory budget (docs/PERFORMANCE.md).
  struct MemorySplit {
    size_t hash = 0;     // both rte_hash: buckets, ext buckets, key store, free rings
    size_t entries = 0;  // ConnEntry array, live flags, VM heads and counts
    size_t counters = 0; // ConnCounters in the rows (accounting)
    size_t ext = 0;      // extension records in the rows (Params::ext_bytes)
  };
  // Removed slots still waiting for their grace period (owner's view).
  uint32_t limbo() const { return limbo_count_; }
  const MemorySplit& memory_split() const { return memory_split_; }
  uint16_t max_vms() const { return max_vms_; }
  uint8_t age_classes() const { return age_classes_; }
  const ConnTableStats& stats() const { return stats_; }
  const std::string& name() const { return name_; }

 private:
  ConnTable() = default;

  static std::atomic_ref<uint32_t> ref(uint32_t& x) { return std::atomic_ref<uint32_t>(x); }
  void age_unlink(uint32_t slot);
  void age_link_tail(uint32_t slot, uint8_t cls);
  void vm_link(uint32_t slot, uint16_t vm);
  void vm_unlink(uint32_t slot, uint16_t vm);

  // Limbo: removed slots chained through age_next, in batches stamped with a QSBR token.
  struct Limbo {
    uint32_t head = kNoSlot, tail = kNoSlot, count = 0;
    uint64_t token = 0;
  };
  static constexpr uint32_t kLimboBatch = 64;  // removals per token
  void limbo_append(Limbo& b, uint32_t head, uint32_t tail, uint32_t count);
  void limbo_close();           // stamps the open batch and queues it
  void limbo_reclaim();         // frees (some of) the batches whose grace period has ended

  // One address family's hash and its range of slots [first, first + positions).
  struct FamilyHash {
    rte_hash* hash = nullptr;  // nullptr when the family's capacity is 0
    uint32_t first = 0, positions = 0, capacity = 0;
    std::atomic<uint32_t> size{0};  // owner writes, any core reads
    const uint8_t* key_base = nullptr;  // key of position p at key_base + p * key_stride
    size_t key_stride = 0;
  };
  const FamilyHash& fam_of(Family f) const { return fam_[f == Family::kV4 ? 0 : 1]; }
  FamilyHash& fam_of(Family f) { return fam_[f == Family::kV4 ? 0 : 1]; }
  const FamilyHash& fam_of_slot(uint32_t slot) const { return fam_[slot < fam_[1].first ? 0 : 1]; }
  const uint8_t* stored_key(uint32_t slot) const {
    const FamilyHash& f = fam_of_slot(slot);
    return f.key_base + size_t{slot - f.first} * f.key_stride;
  }
  void lookup_family_bulk(const FlowKey* const* keys, const hash_sig_t* sigs, uint32_t n,
                          int32_t* slots, bool with_sigs) const;
  void lookup_in(const FamilyHash& f, const void** keys, const hash_sig_t* sigs, uint32_t n,
                 int32_t* out, bool with_sigs) const;
  bool make_hash(FamilyHash& f, const std::string& name, uint32_t capacity, uint32_t first,
                 uint32_t key_len, int socket_id, std::string* err);

  std::string name_;
  FamilyHash fam_[2];  // [0] IPv4 (FlowKeyV4), [1] IPv6 (FlowKey)
  // The table's memory, not the object's: const methods hand out what readers may see.
  ConnEntry& row(uint32_t slot) const {
    return *reinterpret_cast<ConnEntry*>(rows_ + size_t{slot} * stride_);
  }
  ConnCounters& ctr(uint32_t slot) const {  // accounting only
    return *reinterpret_cast<ConnCounters*>(rows_ + size_t{slot} * stride_ + sizeof(ConnEntry));
  }

  uint8_t* rows_ = nullptr;             // slots_ rows of stride_ bytes
  uint32_t stride_ = sizeof(ConnEntry);  // entry [+ counters] [+ extension]
  uint32_t ext_offset_ = 0, ext_bytes_ = 0;
  bool accounting_ = false;
  uint8_t* live_ = nullptr;             // slots_ flags, accessed through atomic_ref
  uint32_t* vm_head_ = nullptr;         // max_vms_ + 1, atomic_ref (readers walk from here)
  uint32_t* vm_count_ = nullptr;        // max_vms_ + 1, atomic_ref
  std::vector<uint32_t> age_head_, age_tail_;  // owner-only
  rte_rcu_qsbr* rcu_ = nullptr;
  Limbo limbo_open_;                    // removed since the last token (owner-only)
  std::vector<Limbo> limbo_q_;          // ring of stamped batches, oldest at limbo_first_
  uint32_t limbo_first_ = 0, limbo_n_ = 0, limbo_count_ = 0;
  bool hash_inline_ok_ = false;         // hash() == rte_hash_hash() (checked in create())
  uint32_t slots_ = 0;
  uint16_t max_vms_ = 0;
  uint8_t age_classes_ = 1;
  uint8_t age_cursor_ = 0;
  size_t memory_bytes_ = 0;
  MemorySplit memory_split_;
  ConnTableStats stats_;
};

// ---- templates and inline bodies -------------------------------------------------------------

inline bool ConnTable::read(uint32_t slot, ConnEntry* out, FlowKey* key_out,
                            ConnCounters* counters_out) const {
  if (slot >= slots_) return false;
  const ConnEntry& e = entry(slot);
  for (;;) {
    uint32_t v1 = e.version.load(std::memory_order_acquire);
    if (v1 & 1) {
      rte_pause();
      continue;
    }
    if (!std::atomic_ref<uint8_t>(live_[slot]).load(std::memory_order_acquire)) return false;
    *out = e;
    if (key_out) *key_out = key(slot);
    if (counters_out) *counters_out = accounting_ ? ctr(slot) : ConnCounters{};
    std::atomic_thread_fence(std::memory_order_acquire);  // data loads before the re-check
    if (e.version.load(std::memory_order_relaxed) == v1) {
      out->version.store(v1, std::memory_order_relaxed);
      out->vm_prev = out->vm_next = out->age_prev = out->age_next = kNoSlot;
      return true;
    }
  }
}

template <class Fn>
void ConnTable::for_each_in_vm(uint16_t vm, Fn&& fn) const {
  if (vm == 0 || vm > max_vms_) return;
  uint32_t s = std::atomic_ref<uint32_t>(vm_head_[vm]).load(std::memory_order_acquire);
  while (s != kNoSlot) {
    // Load the successor before calling fn: fn may be slow, the link stays valid either way.
    uint32_t next = ref(row(s).vm_next).load(std::memory_order_acquire);
    if (live(s)) fn(s);
    s = next;
  }
}

template <class Fn>
void ConnTable::for_each(Fn&& fn) const {
  for_each_live(live_, slots_, fn);
}

template <class TimeoutFn, class ExpireFn>
uint32_t ConnTable::expire(uint32_t now_s, uint32_t budget, TimeoutFn&& timeout_of,
                           ExpireFn&& on_expire) {
  uint32_t removed = 0;
  for (uint32_t n = 0; n < budget && size() > 0; ++n) {
    uint8_t cls = age_cursor_;
    for (uint8_t i = 0; i < age_classes_ && age_head_[cls] == kNoSlot; ++i)
      cls = static_cast<uint8_t>(cls + 1 == age_classes_ ? 0 : cls + 1);
    uint32_t s = age_head_[cls];
    if (s == kNoSlot) break;  // cannot happen while size() > 0; be safe
    age_cursor_ = static_cast<uint8_t>(cls + 1 == age_classes_ ? 0 : cls + 1);

    const ConnEntry& e = entry(s);
    uint32_t age = now_s >= e.last_seen ? now_s - e.last_seen : 0;
    if (age >= static_cast<uint32_t>(timeout_of(e))) {
      on_expire(s);
      remove(s);
      ++stats_.expired;
      ++removed;
    } else {
      // An entry whose class changed without a move (set_age_class is the caller's choice)
      // goes to its own class's list now.
      const uint8_t own = e.age_class < age_classes_ ? e.age_class : cls;
      if (own != cls || age_tail_[cls] != s) {
        age_unlink(s);
        age_link_tail(s, own);
        ++stats_.age_requeues;
      }
    }
  }
  return removed;
}

}  // namespace baton
