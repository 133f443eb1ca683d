// SPDX-License-Identifier: Apache-2.0
//
// NatMappingTable: one worker's NAT mappings (inside endpoint <-> outside endpoint), a table of
// its own, distinct from the connection table: one mapping serves every connection of an inside
// endpoint (endpoint-independent mapping), and outlives them by a timeout.
//
// Theory of operation
//
//   NatInsideKey  --rte_hash "<name>i" (LF, EXT_TABLE)--> position == slot
//   NatOutsideKey --rte_hash "<name>o" (LF, EXT_TABLE)--> data = slot
//   slot --> entries_[slot]  NatMapping, a plain record (no pointers): what the API lists and a
//                            migration copies
//            live_[slot]     1 = the slot holds a live mapping
//            links_[slot]    VM index and idle-list links, owner-side bookkeeping kept out of the
//                            record
//
// * One writer, the owning worker; any core reads (the control core lists mappings). As in
//   ConnTable, slots are the inside hash's key positions; unlike it (which keeps its own limbo
//   to save 16 bytes per position), both hashes reclaim deleted positions through rte_hash's
//   RCU defer queue on the caller's QSBR variable, so a slot (and
//   the record in it) is handed out again only after every registered reader went quiescent
//   since its removal. Readers copy a record with read(), a seqlock on NatMapping::version
//   (odd while the owner writes). The table has `capacity + slack` positions and refuses
//   creates beyond `capacity` (kTableFull); the slack absorbs slots in their grace period.
// * Keys. The inside key follows the table's MappingBehavior (nat_policy.h). Mappings of the
//   other types are keyed so the same lookups find them:
//     kDynamic      behaviour key              / (proto, outside addr, outside port)
//     kPortForward  EIM key (proto, addr, port) / (proto, outside addr, outside port)
//     kStatic       (0, inside addr, 0)         / (0, outside addr, 0): every protocol and port
//   lookup_inside() tries the behaviour key, then the EIM key (only under ADM/APDM, only while
//   a port forward exists), then the address-wide key (only while a static mapping exists);
//   lookup_outside() the exact key, then the address-wide one. Most specific wins.
// * Lifetime. A mapping counts the sessions (connections) that use it: session_ref() when a
//   connection starts using it, session_unref() when that connection is removed. While it has
//   sessions it never expires (traffic refreshes the sessions: RFC 4787 REQ-6); when the last
//   one ends, it expires NatTimeouts::for_proto() seconds later (RFC 4787 REQ-5, RFC 5382
//   REQ-5, RFC 5508 REQ-1) unless a new session takes it first. Idle dynamic mappings sit on
//   one FIFO per protocol (one timeout each, so each FIFO is in expiry order) and expire()
//   looks at a few heads per call. Static and port-forward mappings are configuration: they
//   never expire; remove() them.
// * Ports. Dynamic mappings take their outside port from the PortAllocator given at creation
//   (a fixed one, e.g. from a migration, is reserved there) and give it back on removal. Static
//   and port-forward outside endpoints are not the allocator's: configuration must keep them
//   outside the pools' port blocks (a clash is refused as kOutsideInUse, never overwritten).
// * Filtering memory (RFC 4787 section 5): note_outbound() records the remote endpoints a
//   mapping sent to (kNatMaxPeers, most recent first) in the record itself, so the decision and
//   its inputs migrate with it; inbound_allowed() applies the table's FilteringBehavior to a
//   packet that matches no connection. Static and port-forward mappings let everything in: an
//   operator configured them to be reached.
// * VM index: per VM an RCU-walkable singly linked list (the ConnTable argument: a removed
//   entry keeps its next link until the grace period ends), so listing a VM's mappings costs
//   time in proportion to their number.
//
// Threads: methods marked "any core" may run on any thread that is online on the QSBR variable
// (or while the owner is known not to be removing); everything else is owner-only. The table
// must be destroyed only when no reader can reach it.
#pragma once

#include <rte_hash.h>
#include <rte_pause.h>
#include <rte_rcu_qsbr.h>

#include <atomic>
#include <cstdint>
#include <cstring>
#include <memory>
#include <string>
#include <type_traits>

#include "common/live_flags.h"
#include "common/net_types.h"
#include "nat/nat_policy.h"
#include "nat/port_allocator.h"

namespace baton {

enum class NatType : uint8_t {
  kDynamic = 0,      // source NAT from a pool; created by traffic, expires
  kStatic = 1,       // 1:1, every protocol and port of inside_addr as outside_addr; permanent
  kPortForward = 2,  // destination NAT of one outside (proto, addr, port); permanent
};
const char* nat_type_name(NatType t);  // "snat", "static", "port-forward"

constexpr uint32_t kNatNever = 0xffffffffu;

// One mapping. Plain data, trivially copyable: a migration encodes it field by field.
struct NatMapping {
  uint32_t version = 0;        // seqlock, even = stable; also the record's wire version
  uint8_t proto = 0;           // IpProto; 0 for kStatic (every protocol)
  NatType type = NatType::kDynamic;
  uint16_t vm_id = 0;          // 0 = belongs to no VM
  be32 inside_addr;
  be32 outside_addr;
  be16 inside_port;            // ICMP: query identifier; 0 for kStatic
  be16 outside_port;
  be32 key_remote_addr;        // remote part of the inside key under ADM/APDM, else 0
  be16 key_remote_port;        // ... under APDM, else 0
  uint8_t peer_count = 0;      // valid entries of peers
  uint8_t reserved = 0;
  uint32_t created = 0;        // seconds on the owner's clock
  uint32_t last_used = 0;      // last create / session change / note_outbound
  uint32_t expires = kNatNever;  // kNatNever while sessions > 0, and always for static types
  uint32_t sessions = 0;       // connections using the mapping
  NatPeer peers[kNatMaxPeers] = {};  // remote endpoints sent to, most recent first

  // Ports as translated: a static mapping keeps them, the others replace them.
  be16 outside_port_for(be16 inside) const { return type == NatType::kStatic ? inside : outside_port; }
  be16 inside_port_for(be16 outside) const { return type == NatType::kStatic ? outside : inside_port; }
  NatInsideKey inside_key() const {
    NatInsideKey k;
    k.proto = proto;
    k.inside_addr = inside_addr;
    k.inside_port = inside_port;
    k.remote_addr = key_remote_addr;
    k.remote_port = key_remote_port;
    return k;
  }
  NatOutsideKey outside_key() const { return nat_outside_key(proto, outside_addr, outside_port); }
};
static_assert(sizeof(NatMapping) == 76);
static_assert(std::is_trivially_copyable_v<NatMapping>);

// What create() is asked for.
struct NatMappingRequest {
  NatType type = NatType::kDynamic;
  uint8_t proto = 0;           // TCP, UDP, ICMP (dynamic); TCP, UDP (port forward); ignored (static)
  be32 inside_addr;
  be16 inside_port;            // ignored for kStatic
  // kDynamic: the first remote endpoint (part of the key under ADM/APDM; first filtering peer).
  be32 remote_addr;
  be16 remote_port;
  // kStatic / kPortForward: the outside endpoint (port ignored for kStatic). kDynamic: used only
  // with fixed_outside, which reserves it in the allocator instead of allocating.
  be32 outside_addr;
  be16 outside_port;
  bool fixed_outside = false;
  uint16_t vm_id = 0;
};

enum class NatError : uint8_t {
  kNone = 0,
  kExists,          // the inside key has a mapping already (its slot is returned)
  kOutsideInUse,    // the outside endpoint is taken (or, fixed: not this worker's to give)
  kTableFull,       // at capacity
  kReclaimStall,    // free slots still in their RCU grace period
  kHostLimit,       // PortAllocator: the host is at its block limit
  kPoolExhausted,   // PortAllocator: no block left
  kInvalid,         // bad request (type/proto/ports, vm_id > max_vms, no allocator)
};
const char* nat_error_name(NatError e);

struct NatCreateResult {
  int32_t slot = -1;
  NatError error = NatError::kNone;
  bool ok() const { return error == NatError::kNone; }
};

// name, metric suffix (baton_<suffix>), help
#define BATON_FOREACH_NAT_TABLE_COUNTER(X)                                                   \
  X(creates, "nat_mappings_created_total", "Mappings created")                              \
  X(removes, "nat_mappings_removed_total", "Mappings removed (expiry included)")            \
  X(expired, "nat_mappings_expired_total", "Mappings removed by expiry")                    \
  X(full, "nat_mapping_table_full_total", "Creates refused: table at capacity")             \
  X(reclaim_stalls, "nat_mapping_reclaim_stalls_total",                                     \
    "Creates refused: free slots still waiting for an RCU grace period")                    \
  X(port_failures, "nat_mapping_port_failures_total",                                       \
    "Creates refused: no outside port (host block limit or pool exhausted)")                \
  X(outside_conflicts, "nat_mapping_outside_conflicts_total",                               \
    "Creates refused: outside endpoint taken")

// Written by the owner only; read by the control core (a count a few operations late is fine).
struct alignas(64) NatTableStats {
#define BATON_COUNTER_FIELD(name, metric, help) uint64_t name = 0;
  BATON_FOREACH_NAT_TABLE_COUNTER(BATON_COUNTER_FIELD)
#undef BATON_COUNTER_FIELD
};

class NatMappingTable {
 public:
  struct Params {
    std::string name;              // unique per process, at most kMaxNameLen characters
    uint32_t capacity = 0;         // live mappings allowed
    uint16_t max_vms = 0;          // VM ids 1..max_vms are indexed; 0 = no VM
    int socket_id = SOCKET_ID_ANY;
    rte_rcu_qsbr* rcu = nullptr;   // readers registered by the caller
    NatPolicy policy;
    NatTimeouts timeouts;
    PortAllocator* allocator = nullptr;  // for dynamic mappings; outlives the table
  };

  // Each hash appends one letter to the name; rte_hash's ring names allow 19 characters.
  static constexpr size_t kMaxNameLen = 18;
  static constexpr uint32_t kMaxCapacity = 1u << 26;

  static std::unique_ptr<NatMappingTable> create(const Params& p, std::string* err);
  ~NatMappingTable();
  NatMappingTable(const NatMappingTable&) = delete;
  NatMappingTable& operator=(const NatMappingTable&) = delete;

  // ---- Any core ------------------------------------------------------------------------------

  // The mapping an outbound packet (proto, inside:port -> remote:port) uses, or -1. ICMP
  // queries pass the identifier as both ports.
  int32_t lookup_inside(uint8_t proto, be32 inside, be16 inside_port, be32 remote,
                        be16 remote_port) const;
  // The mapping whose outside endpoint an inbound packet is addressed to, or -1.
  int32_t lookup_outside(uint8_t proto, be32 outside, be16 outside_port) const;

  // Consistent copy of a live mapping; false if the slot is not live.
  bool read(uint32_t slot, NatMapping& out) const;
  bool live(uint32_t slot) const {
    return slot < slots_ && live_flag(live_, slot);
  }
  // fn(uint32_t slot) for every live slot; O(slots), for listings.
  template <class Fn>
  void for_each(Fn&& fn) const;
  // fn(uint32_t slot) for VM vm's mappings live when visited; safe against concurrent changes
  // (mappings created during the walk may be missed).
  template <class Fn>
  void for_each_in_vm(uint16_t vm, Fn&& fn) const;
  uint32_t vm_count(uint16_t vm) const {
    return vm <= max_vms_ ? std::atomic_ref<uint32_t>(vm_count_[vm]).load(std::memory_order_relaxed)
                          : 0;
  }

  uint32_t size() const { return size_.load(std::memory_order_relaxed); }
  uint32_t capacity() const { return capacity_; }
  uint32_t slots() const { return slots_; }  // slot numbers are < slots()
  const NatPolicy& policy() const { return policy_; }
  const NatTimeouts& timeouts() const { return timeouts_; }
  const NatTableStats& stats() const { return stats_; }
  const std::string& name() const { return name_; }

  // ---- Owner (single writer) -----------------------------------------------------------------

  // A new mapping with no session (it expires unless session_ref() follows). Dynamic: the
  // outside endpoint comes from the allocator (or is reserved there with fixed_outside).
  NatCreateResult create(const NatMappingRequest& req, uint32_t now_s);
  // Installs a complete record (a migration's, or a listing's copy): every field is kept except
  // version (rounded down to even) and expires (recomputed: never with sessions, else now_s +
  // timeout). A dynamic record's outside port is reserved in the allocator.
  NatCreateResult insert(const NatMapping& rec, uint32_t now_s);
  // Deletes both keys and gives a dynamic mapping's port back to the allocator. The slot and its
  // record stay readable until the grace period ends.
  void remove(uint32_t slot, uint32_t now_s);

  // Session accounting (see the header comment). unref on a mapping with no session is ignored.
  void session_ref(uint32_t slot, uint32_t now_s);
  void session_unref(uint32_t slot, uint32_t now_s);
  // Records that the mapping sent to remote:port (filtering memory). Call it when a session to
  // a new remote endpoint starts, not per packet.
  void note_outbound(uint32_t slot, be32 remote, be16 remote_port, uint32_t now_s);
  // RFC 4787 section 5: may an inbound packet from remote:port that belongs to no connection
  // pass this mapping?
  bool inbound_allowed(uint32_t slot, be32 remote, be16 remote_port) const;

  // The owner's direct view of a slot (no seqlock needed on the writer's own thread).
  const NatMapping& mapping(uint32_t slot) const { return entries_[slot]; }

  // Aging, a little every loop: looks at up to `budget` idle-list heads and removes those whose
  // expiry has come (on_expire(slot) first; it must not remove the slot). Returns the number
  // removed.
  template <class ExpireFn>
  uint32_t expire(uint32_t now_s, uint32_t budget, ExpireFn&& on_expire);
  uint32_t expire(uint32_t now_s, uint32_t budget) {
    return expire(now_s, budget, [](uint32_t) {});
  }

 private:
  static constexpr uint32_t kNone = 0xffffffffu;
  static constexpr uint8_t kNoList = 0xff;

  struct Links {
    uint32_t vm_prev = kNone;   // owner only
    uint32_t vm_next = kNone;   // atomic_ref: readers walk it
    uint32_t idle_prev = kNone, idle_next = kNone;  // owner only
    uint8_t idle_list = kNoList;                    // which idle FIFO, or none
  };

  NatMappingTable() = default;

  static std::atomic_ref<uint32_t> ref(uint32_t& x) { return std::atomic_ref<uint32_t>(x); }
  NatCreateResult install(NatMapping rec, bool port_taken, uint32_t now_s);
  int32_t find_inside(const NatInsideKey& k) const;
  int32_t find_outside(const NatOutsideKey& k) const;
  void begin_write(uint32_t slot) {
    std::atomic_ref<uint32_t> v(entries_[slot].version);
    v.store(v.load(std::memory_order_relaxed) + 1, std::memory_order_relaxed);
    std::atomic_thread_fence(std::memory_order_release);  // odd before any data store
  }
  void end_write(uint32_t slot) {
    std::atomic_ref<uint32_t> v(entries_[slot].version);
    v.store(v.load(std::memory_order_relaxed) + 1, std::memory_order_release);
  }
  void idle_link_tail(uint32_t slot, uint32_t now_s);  // stamps expires = now + timeout
  void idle_unlink(uint32_t slot);
  void vm_link(uint32_t slot, uint16_t vm);
  void vm_unlink(uint32_t slot, uint16_t vm);

  std::string name_;
  rte_hash* inside_hash_ = nullptr;
  rte_hash* outside_hash_ = nullptr;
  NatMapping* entries_ = nullptr;   // slots_
  uint8_t* live_ = nullptr;         // slots_ + 8, atomic_ref
  Links* links_ = nullptr;          // slots_
  uint32_t* vm_head_ = nullptr;     // max_vms_ + 1, atomic_ref
  uint32_t* vm_count_ = nullptr;    // max_vms_ + 1, atomic_ref
  uint32_t idle_head_[kNatProtoSpaces] = {kNone, kNone, kNone};  // owner only
  uint32_t idle_tail_[kNatProtoSpaces] = {kNone, kNone, kNone};
  uint8_t expire_cursor_ = 0;
  uint32_t capacity_ = 0;
  uint32_t slots_ = 0;
  uint16_t max_vms_ = 0;
  NatPolicy policy_;
  NatTimeouts timeouts_;
  PortAllocator* allocator_ = nullptr;
  std::atomic<uint32_t> size_{0};
  std::atomic<uint32_t> forwards_{0};  // live port forwards (EIM fallback needed under ADM/APDM)
  std::atomic<uint32_t> statics_{0};   // live static mappings (address-wide fallback needed)
  NatTableStats stats_;
};

// ---- templates and inline bodies -------------------------------------------------------------

inline bool NatMappingTable::read(uint32_t slot, NatMapping& out) const {
  if (slot >= slots_) return false;
  const NatMapping& e = entries_[slot];
  std::atomic_ref<uint32_t> version(const_cast<uint32_t&>(e.version));
  for (;;) {
    const uint32_t v1 = version.load(std::memory_order_acquire);
    if (v1 & 1) {
      rte_pause();
      continue;
    }
    if (!live(slot)) return false;
    std::memcpy(static_cast<void*>(&out), &e, sizeof out);
    std::atomic_thread_fence(std::memory_order_acquire);  // data loads before the re-check
    if (version.load(std::memory_order_relaxed) == v1) {
      out.version = v1;
      return true;
    }
  }
}

template <class Fn>
void NatMappingTable::for_each(Fn&& fn) const {
  for_each_live(live_, slots_, fn);
}

template <class Fn>
void NatMappingTable::for_each_in_vm(uint16_t vm, Fn&& fn) const {
  if (vm == 0 || vm > max_vms_) return;
  uint32_t s = std::atomic_ref<uint32_t>(vm_head_[vm]).load(std::memory_order_acquire);
  while (s != kNone) {
    const uint32_t next = ref(links_[s].vm_next).load(std::memory_order_acquire);
    if (live(s)) fn(s);
    s = next;
  }
}

template <class ExpireFn>
uint32_t NatMappingTable::expire(uint32_t now_s, uint32_t budget, ExpireFn&& on_expire) {
  uint32_t removed = 0, looked = 0;
  // Each FIFO is in expiry order: take its expired heads, stop at the first fresh one. Start
  // at another FIFO each call so that a long run in one does not starve the others.
  const uint8_t start = expire_cursor_;
  expire_cursor_ = static_cast<uint8_t>((start + 1) % kNatProtoSpaces);
  for (uint8_t i = 0; i < kNatProtoSpaces && looked < budget; ++i) {
    const uint8_t l = static_cast<uint8_t>((start + i) % kNatProtoSpaces);
    for (uint32_t s = idle_head_[l]; s != kNone && looked < budget; s = idle_head_[l]) {
      ++looked;
      if (entries_[s].expires > now_s) break;
      on_expire(s);
      remove(s, now_s);
      ++stats_.expired;
      ++removed;
    }
  }
  return removed;
}

}  // namespace baton
