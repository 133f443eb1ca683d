// SPDX-License-Identifier: Apache-2.0
#include "nat/nat_mapping_table.h"

#include <rte_errno.h>
#include <rte_malloc.h>

#include <algorithm>

namespace baton {

namespace {

// As ConnTable: capacity/32 extra positions (at least 256) absorb one grace period of churn.
uint32_t slack_for(uint32_t capacity) { return std::max<uint32_t>(256, capacity / 32); }
constexpr uint32_t kReclaimTrigger = 64;
constexpr uint32_t kReclaimBatch = 64;

template <class T>
T* zalloc_array(const char* what, size_t n, int socket) {
  return static_cast<T*>(rte_zmalloc_socket(what, n * sizeof(T), RTE_CACHE_LINE_SIZE, socket));
}

rte_hash* make_hash(const std::string& name, uint32_t entries, uint32_t key_len, int socket,
                    rte_rcu_qsbr* rcu, std::string* why) {
  rte_hash_parameters hp{};
  hp.name = name.c_str();
  hp.entries = entries;
  hp.key_len = key_len;
  hp.socket_id = socket;
  // LF: lock-free readers on other cores, one writer. EXT_TABLE: an insert below capacity never
  // fails for lack of a cuckoo path.
  hp.extra_flag = RTE_HASH_EXTRA_FLAGS_RW_CONCURRENCY_LF | RTE_HASH_EXTRA_FLAGS_EXT_TABLE;
  rte_hash* h = rte_hash_create(&hp);
  if (h == nullptr) {
    *why = std::string("rte_hash_create: ") + rte_strerror(rte_errno);
    return nullptr;
  }
  rte_hash_rcu_config rc{};
  rc.v = rcu;
  rc.mode = RTE_HASH_QSBR_MODE_DQ;
  rc.trigger_reclaim_limit = kReclaimTrigger;
  rc.max_reclaim_size = kReclaimBatch;
  if (rte_hash_rcu_qsbr_add(h, &rc) != 0) {
    *why = std::string("rte_hash_rcu_qsbr_add: ") + rte_strerror(rte_errno);
    rte_hash_free(h);
    return nullptr;
  }
  return h;
}

NatInsideKey static_key(be32 inside) {
  return nat_inside_key(MappingBehavior::kEndpointIndependent, 0, inside, be16(), be32(), be16());
}

}  // namespace

const char* nat_type_name(NatType t) {
  switch (t) {
    case NatType::kDynamic: return "snat";
    case NatType::kStatic: return "static";
    case NatType::kPortForward: return "port-forward";
  }
  return "unknown";
}

const char* nat_error_name(NatError e) {
  switch (e) {
    case NatError::kNone: return "ok";
    case NatError::kExists: return "exists";
    case NatError::kOutsideInUse: return "outside_in_use";
    case NatError::kTableFull: return "table_full";
    case NatError::kReclaimStall: return "reclaim_stall";
    case NatError::kHostLimit: return "host_block_limit";
    case NatError::kPoolExhausted: return "pool_exhausted";
    case NatError::kInvalid: return "invalid";
  }
  return "unknown";
}

std::unique_ptr<NatMappingTable> NatMappingTable::create(const Params& p, std::string* err) {
  auto fail = [&](const std::string& why) -> std::unique_ptr<NatMappingTable> {
    if (err) *err = "nat mapping table '" + p.name + "': " + why;
    return nullptr;
  };
  if (p.name.empty() || p.name.size() > kMaxNameLen)
    return fail("name must be 1.." + std::to_string(kMaxNameLen) + " characters");
  if (p.capacity == 0 || p.capacity > kMaxCapacity)
    return fail("capacity must be 1.." + std::to_string(kMaxCapacity));
  if (p.rcu == nullptr) return fail("no RCU QSBR variable");
  if (std::string why = check_timeouts(p.timeouts); !why.empty()) return fail(why);

  std::unique_ptr<NatMappingTable> t(new NatMappingTable());
  t->name_ = p.name;
  t->capacity_ = p.capacity;
  t->slots_ = p.capacity + slack_for(p.capacity);
  t->max_vms_ = p.max_vms;
  t->policy_ = p.policy;
  t->timeouts_ = p.timeouts;
  t->allocator_ = p.allocator;

  std::string why;
  t->inside_hash_ = make_hash(p.name + "i", t->slots_, sizeof(NatInsideKey), p.socket_id, p.rcu, &why);
  if (!t->inside_hash_) return fail(why);
  t->outside_hash_ = make_hash(p.name + "o", t->slots_, sizeof(NatOutsideKey), p.socket_id, p.rcu, &why);
  if (!t->outside_hash_) return fail(why);

  t->entries_ = zalloc_array<NatMapping>("nat_entries", t->slots_, p.socket_id);
  t->live_ = zalloc_array<uint8_t>("nat_live", t->slots_ + 8, p.socket_id);
  t->links_ = zalloc_array<Links>("nat_links", t->slots_, p.socket_id);
  t->vm_head_ = zalloc_array<uint32_t>("nat_vm_head", size_t{p.max_vms} + 1, p.socket_id);
  t->vm_count_ = zalloc_array<uint32_t>("nat_vm_count", size_t{p.max_vms} + 1, p.socket_id);
  if (!t->entries_ || !t->live_ || !t->links_ || !t->vm_head_ || !t->vm_count_)
    return fail("out of DPDK memory for " + std::to_string(t->slots_) + " mappings");
  std::fill(t->entries_, t->entries_ + t->slots_, NatMapping{});
  std::fill(t->links_, t->links_ + t->slots_, Links{});
  std::fill(t->vm_head_, t->vm_head_ + p.max_vms + 1, kNone);
  return t;
}

NatMappingTable::~NatMappingTable() {
  rte_hash_free(inside_hash_);  // drains the defer queues (non-blocking)
  rte_hash_free(outside_hash_);
  rte_free(entries_);
  rte_free(live_);
  rte_free(links_);
  rte_free(vm_head_);
  rte_free(vm_count_);
}

// ---- lookups (any core) --------------------------------------------------------------------------

int32_t NatMappingTable::find_inside(const NatInsideKey& k) const {
  int32_t pos = rte_hash_lookup(inside_hash_, &k);
  return pos >= 0 && live(static_cast<uint32_t>(pos)) ? pos : -1;
}

int32_t NatMappingTable::find_outside(const NatOutsideKey& k) const {
  void* data = nullptr;
  if (rte_hash_lookup_data(outside_hash_, &k, &data) < 0) return -1;
  const auto slot = static_cast<uint32_t>(reinterpret_cast<uintptr_t>(data));
  return live(slot) ? static_cast<int32_t>(slot) : -1;
}

int32_t NatMappingTable::lookup_inside(uint8_t proto, be32 inside, be16 inside_port, be32 remote,
                                       be16 remote_port) const {
  int32_t s = find_inside(nat_inside_key(policy_.mapping, proto, inside, inside_port, remote, remote_port));
  if (s < 0 && policy_.mapping != MappingBehavior::kEndpointIndependent &&
      forwards_.load(std::memory_order_relaxed) != 0)
    s = find_inside(nat_inside_key(MappingBehavior::kEndpointIndependent, proto, inside,
                                   inside_port, remote, remote_port));
  if (s < 0 && statics_.load(std::memory_order_relaxed) != 0) s = find_inside(static_key(inside));
  return s;
}

int32_t NatMappingTable::lookup_outside(uint8_t proto, be32 outside, be16 outside_port) const {
  int32_t s = find_outside(nat_outside_key(proto, outside, outside_port));
  if (s < 0 && statics_.load(std::memory_order_relaxed) != 0)
    s = find_outside(nat_outside_key(0, outside, be16()));
  return s;
}

// ---- create / insert / remove (owner) ------------------------------------------------------------

NatCreateResult NatMappingTable::create(const NatMappingRequest& req, uint32_t now_s) {
  NatMapping m;
  m.type = req.type;
  m.vm_id = req.vm_id;
  m.inside_addr = req.inside_addr;
  m.created = m.last_used = now_s;
  switch (req.type) {
    case NatType::kStatic:  // address-wide: proto and ports stay 0
      m.outside_addr = req.outside_addr;
      return install(m, false, now_s);
    case NatType::kPortForward:
      m.proto = req.proto;
      m.inside_port = req.inside_port;
      m.outside_addr = req.outside_addr;
      m.outside_port = req.outside_port;
      return install(m, false, now_s);
    case NatType::kDynamic:
      break;
  }
  m.proto = req.proto;
  m.inside_port = req.inside_port;
  const NatInsideKey key = nat_inside_key(policy_.mapping, req.proto, req.inside_addr,
                                          req.inside_port, req.remote_addr, req.remote_port);
  m.key_remote_addr = key.remote_addr;
  m.key_remote_port = key.remote_port;
  if (req.remote_addr != be32()) nat_note_peer(m.peers, &m.peer_count, req.remote_addr, req.remote_port);
  if (req.fixed_outside) {
    m.outside_addr = req.outside_addr;
    m.outside_port = req.outside_port;
    return install(m, false, now_s);
  }
  // Check what install() would refuse before taking a port, so a refused create costs none.
  if (allocator_ == nullptr || nat_proto_space(req.proto) < 0) return {-1, NatError::kInvalid};
  if (int32_t s = find_inside(key); s >= 0) return {s, NatError::kExists};
  if (size() >= capacity_) {
    ++stats_.full;
    return {-1, NatError::kTableFull};
  }
  const PortAllocator::Result r = allocator_->allocate(req.proto, req.inside_addr, req.inside_port, now_s);
  if (!r.ok()) {
    ++stats_.port_failures;
    return {-1, r.status == PortAllocStatus::kHostLimit ? NatError::kHostLimit
                                                         : NatError::kPoolExhausted};
  }
  m.outside_addr = r.addr;
  m.outside_port = r.port;
  return install(m, true, now_s);
}

NatCreateResult NatMappingTable::insert(const NatMapping& rec, uint32_t now_s) {
  return install(rec, false, now_s);
}

NatCreateResult NatMappingTable::install(NatMapping m, bool port_taken, uint32_t now_s) {
  const bool dynamic = m.type == NatType::kDynamic;
  auto refuse = [&](NatCreateResult r) {
    if (port_taken) allocator_->release(m.proto, m.outside_addr, m.outside_port, now_s);
    return r;
  };
  bool valid = m.vm_id <= max_vms_ && m.peer_count <= kNatMaxPeers;
  switch (m.type) {
    case NatType::kStatic:
      valid = valid && m.proto == 0 && m.inside_port == be16() && m.outside_port == be16() &&
              m.key_remote_addr == be32() && m.key_remote_port == be16();
      break;
    case NatType::kPortForward:
      valid = valid && (m.proto == static_cast<uint8_t>(IpProto::kTcp) ||
                        m.proto == static_cast<uint8_t>(IpProto::kUdp)) &&
              m.key_remote_addr == be32() && m.key_remote_port == be16();
      break;
    case NatType::kDynamic:
      valid = valid && allocator_ != nullptr && nat_proto_space(m.proto) >= 0;
      break;
    default:
      valid = false;
  }
  if (!valid) return refuse({-1, NatError::kInvalid});

  const NatInsideKey ik = m.inside_key();
  const NatOutsideKey outk = m.outside_key();
  if (int32_t s = find_inside(ik); s >= 0) return refuse({s, NatError::kExists});
  if (size() >= capacity_) {
    ++stats_.full;
    return refuse({-1, NatError::kTableFull});
  }
  if (find_outside(outk) >= 0) {
    ++stats_.outside_conflicts;
    return refuse({-1, NatError::kOutsideInUse});
  }
  if (dynamic && !port_taken) {
    PortAllocStatus st = allocator_->reserve(m.proto, m.inside_addr, m.outside_addr, m.outside_port);
    if (st == PortAllocStatus::kHostLimit) {
      ++stats_.port_failures;
      return {-1, NatError::kHostLimit};
    }
    if (st != PortAllocStatus::kOk) {
      ++stats_.outside_conflicts;
      return {-1, NatError::kOutsideInUse};
    }
    port_taken = true;
  }

  const int32_t pos = rte_hash_add_key(inside_hash_, &ik);
  if (pos < 0) {
    if (pos == -ENOSPC) ++stats_.reclaim_stalls;
    return refuse({-1, pos == -ENOSPC ? NatError::kReclaimStall : NatError::kInvalid});
  }
  const auto slot = static_cast<uint32_t>(pos);
  // The slot is not live: readers look at live_ before the record, so plain stores suffice.
  m.version &= ~1u;
  m.expires = kNatNever;
  entries_[slot] = m;
  links_[slot] = Links{};
  if (dynamic && m.sessions == 0) idle_link_tail(slot, now_s);  // sets expires
  if (rte_hash_add_key_data(outside_hash_, &outk, reinterpret_cast<void*>(uintptr_t{slot})) != 0) {
    // Not expected (EXT_TABLE, same size as the inside hash); undo.
    if (links_[slot].idle_list != kNoList) idle_unlink(slot);
    rte_hash_del_key(inside_hash_, &ik);
    ++stats_.reclaim_stalls;
    return refuse({-1, NatError::kReclaimStall});
  }
  std::atomic_ref<uint8_t>(live_[slot]).store(1, std::memory_order_release);
  if (m.vm_id != 0) vm_link(slot, m.vm_id);  // publishes after the record
  if (m.type == NatType::kPortForward) forwards_.fetch_add(1, std::memory_order_relaxed);
  if (m.type == NatType::kStatic) statics_.fetch_add(1, std::memory_order_relaxed);
  size_.store(size() + 1, std::memory_order_relaxed);
  ++stats_.creates;
  return {pos, NatError::kNone};
}

void NatMappingTable::remove(uint32_t slot, uint32_t now_s) {
  if (!live(slot)) return;
  const NatMapping& m = entries_[slot];
  if (m.vm_id != 0) vm_unlink(slot, m.vm_id);
  if (links_[slot].idle_list != kNoList) idle_unlink(slot);
  std::atomic_ref<uint8_t>(live_[slot]).store(0, std::memory_order_release);
  const NatOutsideKey outk = m.outside_key();
  const NatInsideKey ik = m.inside_key();
  rte_hash_del_key(outside_hash_, &outk);
  rte_hash_del_key(inside_hash_, &ik);  // the slot waits out a grace period before reuse
  if (m.type == NatType::kDynamic) allocator_->release(m.proto, m.outside_addr, m.outside_port, now_s);
  if (m.type == NatType::kPortForward) forwards_.fetch_sub(1, std::memory_order_relaxed);
  if (m.type == NatType::kStatic) statics_.fetch_sub(1, std::memory_order_relaxed);
  size_.store(size() - 1, std::memory_order_relaxed);
  ++stats_.removes;
}

// ---- sessions and filtering (owner) --------------------------------------------------------------

void NatMappingTable::session_ref(uint32_t slot, uint32_t now_s) {
  if (!live(slot)) return;
  NatMapping& m = entries_[slot];
  begin_write(slot);
  if (++m.sessions == 1 && links_[slot].idle_list != kNoList) {
    idle_unlink(slot);
    m.expires = kNatNever;
  }
  m.last_used = now_s;
  end_write(slot);
}

void NatMappingTable::session_unref(uint32_t slot, uint32_t now_s) {
  if (!live(slot) || entries_[slot].sessions == 0) return;
  NatMapping& m = entries_[slot];
  begin_write(slot);
  m.last_used = now_s;
  if (--m.sessions == 0 && m.type == NatType::kDynamic) idle_link_tail(slot, now_s);
  end_write(slot);
}

void NatMappingTable::note_outbound(uint32_t slot, be32 remote, be16 remote_port, uint32_t now_s) {
  if (!live(slot)) return;
  NatMapping& m = entries_[slot];
  begin_write(slot);
  nat_note_peer(m.peers, &m.peer_count, remote, remote_port);
  m.last_used = now_s;
  end_write(slot);
}

bool NatMappingTable::inbound_allowed(uint32_t slot, be32 remote, be16 remote_port) const {
  if (!live(slot)) return false;
  const NatMapping& m = entries_[slot];
  if (m.type != NatType::kDynamic) return true;  // configured to be reached
  return nat_filter_allows(policy_.filtering, m.peers, m.peer_count, remote, remote_port);
}

// ---- lists (owner) -------------------------------------------------------------------------------

// Appends to the idle FIFO of the mapping's protocol and stamps its expiry. One timeout per
// FIFO and a clock that does not go back keep each FIFO in expiry order.
void NatMappingTable::idle_link_tail(uint32_t slot, uint32_t now_s) {
  NatMapping& m = entries_[slot];
  Links& l = links_[slot];
  const auto list = static_cast<uint8_t>(nat_proto_space(m.proto));
  m.expires = now_s + timeouts_.for_proto(m.proto);
  l.idle_list = list;
  l.idle_prev = idle_tail_[list];
  l.idle_next = kNone;
  if (idle_tail_[list] != kNone) links_[idle_tail_[list]].idle_next = slot;
  else idle_head_[list] = slot;
  idle_tail_[list] = slot;
}

void NatMappingTable::idle_unlink(uint32_t slot) {
  Links& l = links_[slot];
  const uint8_t list = l.idle_list;
  if (l.idle_prev != kNone) links_[l.idle_prev].idle_next = l.idle_next;
  else idle_head_[list] = l.idle_next;
  if (l.idle_next != kNone) links_[l.idle_next].idle_prev = l.idle_prev;
  else idle_tail_[list] = l.idle_prev;
  l.idle_prev = l.idle_next = kNone;
  l.idle_list = kNoList;
}

void NatMappingTable::vm_link(uint32_t slot, uint16_t vm) {
  std::atomic_ref<uint32_t> head(vm_head_[vm]);
  const uint32_t first = head.load(std::memory_order_relaxed);
  links_[slot].vm_prev = kNone;
  ref(links_[slot].vm_next).store(first, std::memory_order_relaxed);
  if (first != kNone) links_[first].vm_prev = slot;
  head.store(slot, std::memory_order_release);  // publish: the record is complete
  std::atomic_ref<uint32_t> cnt(vm_count_[vm]);
  cnt.store(cnt.load(std::memory_order_relaxed) + 1, std::memory_order_relaxed);
}

void NatMappingTable::vm_unlink(uint32_t slot, uint16_t vm) {
  Links& l = links_[slot];
  const uint32_t next = ref(l.vm_next).load(std::memory_order_relaxed);
  // A reader may stand on `slot`: its vm_next stays until the grace period ends.
  if (l.vm_prev != kNone) ref(links_[l.vm_prev].vm_next).store(next, std::memory_order_release);
  else std::atomic_ref<uint32_t>(vm_head_[vm]).store(next, std::memory_order_release);
  if (next != kNone) links_[next].vm_prev = l.vm_prev;
  std::atomic_ref<uint32_t> cnt(vm_count_[vm]);
  cnt.store(cnt.load(std::memory_order_relaxed) - 1, std::memory_order_relaxed);
}

}  // namespace baton
