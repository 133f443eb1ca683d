// SPDX-License-Identifier: Apache-2.0
#include "conntrack/conn_table.h"

#include <rte_errno.h>
#include <rte_lcore.h>
#include <rte_malloc.h>

#include <algorithm>
#include <new>

namespace baton {

namespace {

// Deleted slots wait out a grace period; while the table is full, inserts can only reuse
// slots whose grace period has ended. capacity/64 extra positions (at least 256) cover the
// removals of one grace period many times over (workers report quiescent every poll, control
// readers every frame of records: microseconds to a millisecond, in which 1M connections/s
// churn about a thousand slots); at 1,000,000 entries it also keeps the hash below 2^20
// positions, so rte_hash's power-of-two rings and buckets do not double. Every position costs
// its full row and key, so the slack is a share of the table's memory.
uint32_t slack_for(uint32_t capacity) { return std::max<uint32_t>(256, capacity / 64); }

// Stamped limbo batches kept apart; when all are taken, a new one joins the newest (waiting
// for a later token is always safe, only slower).
constexpr uint32_t kLimboQueue = 64;
// Positions handed back per reclaim: a batch that absorbed a mass removal (a VM's million
// entries after its migration) goes back a little at a time, not in one stall of the worker.
constexpr uint32_t kReclaimBudget = 256;

// Bytes handed out by the DPDK heaps of every socket.
size_t heap_allocated_bytes() {
  size_t total = 0;
  for (unsigned i = 0; i < rte_socket_count(); ++i) {
    rte_malloc_socket_stats st{};
    if (rte_malloc_get_socket_stats(rte_socket_id_by_idx(i), &st) == 0)
      total += st.heap_allocsz_bytes;
  }
  return total;
}

template <class T>
T* zalloc_array(const char* what, size_t n, int socket) {
  return static_cast<T*>(rte_zmalloc_socket(what, n * sizeof(T), RTE_CACHE_LINE_SIZE, socket));
}

}  // namespace

bool ConnTable::make_hash(FamilyHash& f, const std::string& name, uint32_t capacity,
                          uint32_t first, uint32_t key_len, int socket_id, std::string* err) {
  f.first = first;
  f.capacity = capacity;
  if (capacity == 0) return true;  // the family is refused; no hash
  f.positions = capacity + slack_for(capacity);
  rte_hash_parameters hp{};
  hp.name = name.c_str();
  hp.entries = f.positions;
  hp.key_len = key_len;
  hp.hash_func = nullptr;  // rte_hash's default: CRC32 where the CPU has it, else jhash
  hp.hash_func_init_val = 0;
  hp.socket_id = socket_id;
  // LF: lock-free readers on other cores, one writer (the owner). EXT_TABLE: an insert below
  // capacity never fails for lack of a cuckoo path.
  hp.extra_flag = RTE_HASH_EXTRA_FLAGS_RW_CONCURRENCY_LF | RTE_HASH_EXTRA_FLAGS_EXT_TABLE;
  f.hash = rte_hash_create(&hp);
  if (f.hash == nullptr) {
    *err = std::string("rte_hash_create: ") + rte_strerror(rte_errno);
    return false;
  }
  // rte_hash stores the key of position p at key_store + (p + 1) * key_entry_size and never
  // moves it; rte_hash_get_key_with_position returns that address (and -ENOENT for an empty
  // position, which is fine here). Derive base and stride once and check them at the far end.
  void* k0 = nullptr;
  void* k1 = nullptr;
  void* kl = nullptr;
  rte_hash_get_key_with_position(f.hash, 0, &k0);
  rte_hash_get_key_with_position(f.hash, 1, &k1);
  rte_hash_get_key_with_position(f.hash, static_cast<int32_t>(f.positions - 1), &kl);
  if (!k0 || !k1 || !kl || k1 <= k0) {
    *err = "cannot locate rte_hash key store";
    return false;
  }
  f.key_base = static_cast<const uint8_t*>(k0);
  f.key_stride = static_cast<const uint8_t*>(k1) - f.key_base;
  if (f.key_base + size_t{f.positions - 1} * f.key_stride != kl || f.key_stride < key_len) {
    *err = "unexpected rte_hash key store layout";
    return false;
  }
  return true;
}

std::unique_ptr<ConnTable> ConnTable::create(const Params& p, std::string* err) {
  auto fail = [&](const std::string& why) -> std::unique_ptr<ConnTable> {
    if (err) *err = "conn table '" + p.name + "': " + why;
    return nullptr;
  };
  if (p.name.empty() || p.name.size() > kMaxNameLen)
    return fail("name must be 1.." + std::to_string(kMaxNameLen) + " characters");
  if (p.capacity > kMaxCapacity || p.capacity_v6 > kMaxCapacity)
    return fail("capacity must be 0.." + std::to_string(kMaxCapacity) + " per family");
  if (p.capacity == 0 && p.capacity_v6 == 0) return fail("capacity must not be 0 for both families");
  if (p.rcu == nullptr) return fail("no RCU QSBR variable");
  if (p.age_classes == 0) return fail("at least one age class is needed");
  if (p.ext_bytes > kMaxExtBytes || p.ext_bytes % 8 != 0)
    return fail("extension record must be a multiple of 8 bytes, at most " +
                std::to_string(kMaxExtBytes));

  std::unique_ptr<ConnTable> t(new ConnTable());
  t->name_ = p.name;
  t->max_vms_ = p.max_vms;
  t->age_classes_ = p.age_classes;
  const size_t heap_before = heap_allocated_bytes();

  std::string why;
  if (!t->make_hash(t->fam_[0], p.name + "4", p.capacity, 0, sizeof(FlowKeyV4), p.socket_id, &why))
    return fail(why);
  if (!t->make_hash(t->fam_[1], p.name + "6", p.capacity_v6, t->fam_[0].positions,
                    sizeof(FlowKey), p.socket_id, &why))
    return fail(why);
  t->slots_ = t->fam_[0].positions + t->fam_[1].positions;
  const size_t heap_hash = heap_allocated_bytes();

  t->rcu_ = p.rcu;
  t->limbo_q_.resize(kLimboQueue);
  t->accounting_ = p.accounting;
  t->ext_offset_ = sizeof(ConnEntry) + (p.accounting ? sizeof(ConnCounters) : 0);
  t->ext_bytes_ = p.ext_bytes;
  t->stride_ = t->ext_offset_ + p.ext_bytes;
  t->rows_ = zalloc_array<uint8_t>("conn_rows", size_t{t->slots_} * t->stride_, p.socket_id);
  t->live_ = zalloc_array<uint8_t>("conn_live", t->slots_ + 8, p.socket_id);
  t->vm_head_ = zalloc_array<uint32_t>("conn_vm_head", size_t{p.max_vms} + 1, p.socket_id);
  t->vm_count_ = zalloc_array<uint32_t>("conn_vm_count", size_t{p.max_vms} + 1, p.socket_id);
  if (!t->rows_ || !t->live_ || !t->vm_head_ || !t->vm_count_)
    return fail("out of DPDK memory for " + std::to_string(t->slots_) + " entries");
  for (uint32_t s = 0; s < t->slots_; ++s) {
    new (&t->row(s)) ConnEntry();
    if (p.accounting) new (&t->ctr(s)) ConnCounters();
  }
  std::fill(t->vm_head_, t->vm_head_ + p.max_vms + 1, kNoSlot);
  t->age_head_.assign(p.age_classes, kNoSlot);
  t->age_tail_.assign(p.age_classes, kNoSlot);

  // The worker hashes keys itself (hash()); make sure it is rte_hash's function for both
  // stored forms.
  t->hash_inline_ok_ = true;
  for (const FamilyHash& f : t->fam_)
    if (f.hash && !hash_agrees(f.hash, &f == &t->fam_[0] ? Family::kV4 : Family::kV6))
      t->hash_inline_ok_ = false;

  const size_t heap_after = heap_allocated_bytes();
  t->memory_split_.hash = heap_hash - heap_before;
  t->memory_split_.counters = p.accounting ? size_t{t->slots_} * sizeof(ConnCounters) : 0;
  t->memory_split_.ext = size_t{t->slots_} * p.ext_bytes;
  t->memory_split_.entries =
      heap_after - heap_hash - t->memory_split_.counters - t->memory_split_.ext;
  t->memory_bytes_ = (heap_after - heap_before) + sizeof(ConnTable) +
                     2 * p.age_classes * sizeof(uint32_t) + kLimboQueue * sizeof(Limbo);
  return t;
}

bool ConnTable::hash_agrees(const rte_hash* h, Family f) {
  for (uint32_t i = 0; i < 32; ++i) {
    FlowKey k;
    k.family = f;
    for (size_t j = 0; j < (f == Family::kV4 ? 4 : k.lo_addr.b.size()); ++j) {
      k.lo_addr.b[j] = static_cast<uint8_t>(i * 31 + j * 7);
      k.hi_addr.b[j] = static_cast<uint8_t>(i * 17 + j * 13 + 1);
    }
    k.lo_port = be16::from_host(static_cast<uint16_t>(i * 1000 + 1));
    k.hi_port = be16::from_host(static_cast<uint16_t>(i * 7 + 80));
    k.proto = static_cast<uint8_t>(i);
    k.vlan = static_cast<uint16_t>(i * 3);
    const FlowKeyV4 v = FlowKeyV4::of(k);
    const void* stored = f == Family::kV4 ? static_cast<const void*>(&v) : &k;
    if (hash(k) != rte_hash_hash(h, stored)) return false;
  }
  return true;
}

ConnTable::~ConnTable() {
  // Frees every position, limbo or not, with the rings and key store.
  for (FamilyHash& f : fam_) rte_hash_free(f.hash);
  rte_free(rows_);
  rte_free(live_);
  rte_free(vm_head_);
  rte_free(vm_count_);
}

int32_t ConnTable::lookup(const FlowKey& k) const {
  const FamilyHash& f = fam_of(k.family);
  if (f.hash == nullptr) return -1;
  int32_t pos;
  if (k.family == Family::kV4) {
    const FlowKeyV4 v = FlowKeyV4::of(k);
    pos = rte_hash_lookup(f.hash, &v);
  } else {
    pos = rte_hash_lookup(f.hash, &k);
  }
  return pos >= 0 ? static_cast<int32_t>(f.first) + pos : -1;
}

void ConnTable::lookup_bulk(const FlowKey* const* keys, uint32_t n, int32_t* slots) const {
  lookup_family_bulk(keys, nullptr, n, slots, false);
}

void ConnTable::lookup_bulk(const FlowKey* const* keys, hash_sig_t* sigs, uint32_t n,
                            int32_t* slots) const {
  lookup_family_bulk(keys, sigs, n, slots, hash_inline_ok_);
}

// Looks n stored-form keys up in one family's hash; out[i] = slot or -1.
void ConnTable::lookup_in(const FamilyHash& f, const void** keys, const hash_sig_t* sigs,
                          uint32_t n, int32_t* out, bool with_sigs) const {
  if (f.hash == nullptr) {
    std::fill(out, out + n, -1);
    return;
  }
  if (with_sigs)  // rte_hash only reads the signatures
    rte_hash_lookup_with_hash_bulk(f.hash, keys, const_cast<hash_sig_t*>(sigs), n, out);
  else
    rte_hash_lookup_bulk(f.hash, keys, n, out);
  const int32_t first = static_cast<int32_t>(f.first);
  for (uint32_t i = 0; i < n; ++i) out[i] = out[i] >= 0 ? out[i] + first : -1;
}

// IPv4 keys are looked up in their stored form (built here, two words each), IPv6 keys as they
// are. A burst of one family (the common case) takes one rte_hash call straight into slots;
// a mixed one is split by family and its results put back in order.
void ConnTable::lookup_family_bulk(const FlowKey* const* keys, const hash_sig_t* sigs, uint32_t n,
                                   int32_t* slots, bool with_sigs) const {
  if (n == 0) return;
  FlowKeyV4 v4[RTE_HASH_LOOKUP_BULK_MAX];
  const void* ptr[RTE_HASH_LOOKUP_BULK_MAX];
  uint32_t n4 = 0;
  for (uint32_t i = 0; i < n; ++i) n4 += keys[i]->family == Family::kV4;
  if (n4 == n || n4 == 0) {
    for (uint32_t i = 0; i < n; ++i) {
      if (n4) {
        v4[i] = FlowKeyV4::of(*keys[i]);
        ptr[i] = &v4[i];
      } else {
        ptr[i] = keys[i];
      }
    }
    lookup_in(fam_[n4 ? 0 : 1], ptr, sigs, n, slots, with_sigs);
    return;
  }
  const void* ptr6[RTE_HASH_LOOKUP_BULK_MAX];
  hash_sig_t sig[2][RTE_HASH_LOOKUP_BULK_MAX];
  uint8_t idx[2][RTE_HASH_LOOKUP_BULK_MAX];
  int32_t pos[2][RTE_HASH_LOOKUP_BULK_MAX];
  uint32_t cnt[2] = {0, 0};
  for (uint32_t i = 0; i < n; ++i) {
    const int f = keys[i]->family == Family::kV4 ? 0 : 1;
    const uint32_t j = cnt[f]++;
    if (f == 0) {
      v4[j] = FlowKeyV4::of(*keys[i]);
      ptr[j] = &v4[j];
    } else {
      ptr6[j] = keys[i];
    }
    sig[f][j] = sigs ? sigs[i] : 0;
    idx[f][j] = static_cast<uint8_t>(i);
  }
  lookup_in(fam_[0], ptr, sig[0], cnt[0], pos[0], with_sigs);
  lookup_in(fam_[1], ptr6, sig[1], cnt[1], pos[1], with_sigs);
  for (int f = 0; f < 2; ++f)
    for (uint32_t j = 0; j < cnt[f]; ++j) slots[idx[f][j]] = pos[f][j];
}

int32_t ConnTable::insert(const FlowKey& k, const ConnEntry& init, const ConnCounters* c,
                          Version vmode) {
  if (init.vm_id > max_vms_ || init.age_class >= age_classes_) return -EINVAL;
  FamilyHash& f = fam_of(k.family);
  if (f.size.load(std::memory_order_relaxed) >= f.capacity) {
    ++stats_.full_drops;
    return -ENOSPC;
  }
  const FlowKeyV4 v = FlowKeyV4::of(k);
  const void* stored = k.family == Family::kV4 ? static_cast<const void*>(&v) : &k;
  const hash_sig_t sig = hash_inline_ok_ ? hash(k) : rte_hash_hash(f.hash, stored);
  int32_t pos = rte_hash_add_key_with_hash(f.hash, stored, sig);
  if (pos == -ENOSPC && limbo_count_ > 0) {  // free list dry: reclaim what the readers allow
    limbo_close();
    limbo_reclaim();
    pos = rte_hash_add_key_with_hash(f.hash, stored, sig);
  }
  if (pos < 0) {
    if (pos == -ENOSPC) ++stats_.reclaim_stalls;
    return pos;
  }
  const uint32_t slot = f.first + static_cast<uint32_t>(pos);
  // For a key already present add_key returns its position (touching nothing we use), and a
  // position holds a key exactly while it is live (remove() deletes the key and clears live_
  // together, single writer): so a live position means the key was there. Cheaper than a
  // lookup before every insert, which almost never finds anything.
  if (live(slot)) return -EEXIST;
  ConnEntry& e = row(slot);
  // The slot is not live: readers look at live_ before the content, so plain stores suffice.
  // (A never used row is zero: its "previous version" is 0.)
  uint32_t version = init.version.load(std::memory_order_relaxed) & ~1u;
  if (vmode == Version::kAfterSlot)
    version = std::max(version, (e.version.load(std::memory_order_relaxed) + 2) & ~1u);
  e = init;
  e.version.store(version, std::memory_order_relaxed);
  e.vm_prev = e.vm_next = e.age_prev = e.age_next = kNoSlot;
  if (accounting_) ctr(slot) = c ? *c : ConnCounters{};
  age_link_tail(slot, init.age_class);
  std::atomic_ref<uint8_t>(live_[slot]).store(1, std::memory_order_release);
  if (init.vm_id != 0) vm_link(slot, init.vm_id);  // publishes after the content
  f.size.store(f.size.load(std::memory_order_relaxed) + 1, std::memory_order_relaxed);
  ++stats_.inserts;
  return static_cast<int32_t>(slot);
}

void ConnTable::remove(uint32_t slot) {
  if (slot >= slots_ || !live(slot)) return;
  ConnEntry& e = row(slot);
  if (e.vm_id != 0) vm_unlink(slot, e.vm_id);
  age_unlink(slot);
  std::atomic_ref<uint8_t>(live_[slot]).store(0, std::memory_order_release);
  // Deletes by the key's own bytes in the key store; rte_hash only reads them and keeps the
  // position allocated (RW_CONCURRENCY_LF) until limbo_reclaim() frees it.
  FamilyHash& f = fam_[slot < fam_[1].first ? 0 : 1];
  rte_hash_del_key(f.hash, stored_key(slot));
  f.size.store(f.size.load(std::memory_order_relaxed) - 1, std::memory_order_relaxed);
  ++stats_.removes;
  limbo_append(limbo_open_, slot, slot, 1);  // age_unlink left its age_next at kNoSlot
  ++limbo_count_;
  if (limbo_open_.count >= kLimboBatch) {
    limbo_close();
    limbo_reclaim();
  }
}

void ConnTable::limbo_append(Limbo& b, uint32_t head, uint32_t tail, uint32_t count) {
  if (b.tail != kNoSlot) row(b.tail).age_next = head;
  else b.head = head;
  b.tail = tail;
  b.count += count;
}

void ConnTable::limbo_close() {
  if (limbo_open_.count == 0) return;
  // The token is taken after the removals of the batch: readers that report quiescent after
  // it can no longer hold any of its slots.
  const uint64_t token = rte_rcu_qsbr_start(rcu_);
  Limbo* b;
  if (limbo_n_ < limbo_q_.size()) {
    b = &limbo_q_[(limbo_first_ + limbo_n_) % limbo_q_.size()];
    *b = Limbo{};
    ++limbo_n_;
  } else {
    b = &limbo_q_[(limbo_first_ + limbo_n_ - 1) % limbo_q_.size()];
  }
  limbo_append(*b, limbo_open_.head, limbo_open_.tail, limbo_open_.count);
  b->token = token;
  limbo_open_ = Limbo{};
}

void ConnTable::limbo_reclaim() {
  uint32_t budget = kReclaimBudget;
  while (limbo_n_ > 0 && budget > 0) {
    Limbo& b = limbo_q_[limbo_first_];
    if (rte_rcu_qsbr_check(rcu_, b.token, false) != 1) return;
    for (; b.head != kNoSlot && budget > 0; --budget) {
      const uint32_t s = b.head;
      b.head = row(s).age_next;
      row(s).age_next = kNoSlot;
      const FamilyHash& f = fam_of_slot(s);
      rte_hash_free_key_with_position(f.hash, static_cast<int32_t>(s - f.first));
      --b.count;
      --limbo_count_;
    }
    if (b.head != kNoSlot) return;  // the budget ran out inside this batch
    limbo_first_ = (limbo_first_ + 1) % static_cast<uint32_t>(limbo_q_.size());
    --limbo_n_;
  }
}

void ConnTable::set_age_class(uint32_t slot, uint8_t cls) {
  if (cls >= age_classes_) return;
  age_unlink(slot);
  row(slot).age_class = cls;
  age_link_tail(slot, cls);
}

// The list an entry is on is found from the list ends, not from e.age_class: a caller may have
// stored the new class in the entry (inside its write bracket, so that readers see it with the
// state change) before calling set_age_class(). Unlinking by that field took a head or tail
// entry out of the wrong list's ends: the old list kept a removed slot as its head, and expire()
// then stopped removing anything behind it (bench: fw_new_conn_aging_left).
void ConnTable::age_unlink(uint32_t slot) {
  ConnEntry& e = row(slot);
  uint32_t not_an_end = kNoSlot;  // an unlinked entry: nothing to update (not expected)
  auto end_of = [&](std::vector<uint32_t>& ends) -> uint32_t& {
    if (e.age_class < age_classes_ && ends[e.age_class] == slot) return ends[e.age_class];
    for (uint32_t& x : ends)
      if (x == slot) return x;
    return not_an_end;
  };
  if (e.age_prev != kNoSlot) row(e.age_prev).age_next = e.age_next;
  else end_of(age_head_) = e.age_next;
  if (e.age_next != kNoSlot) row(e.age_next).age_prev = e.age_prev;
  else end_of(age_tail_) = e.age_prev;
  e.age_prev = e.age_next = kNoSlot;
}

void ConnTable::age_link_tail(uint32_t slot, uint8_t cls) {
  ConnEntry& e = row(slot);
  e.age_prev = age_tail_[cls];
  e.age_next = kNoSlot;
  if (age_tail_[cls] != kNoSlot) row(age_tail_[cls]).age_next = slot;
  else age_head_[cls] = slot;
  age_tail_[cls] = slot;
}

void ConnTable::vm_link(uint32_t slot, uint16_t vm) {
  ConnEntry& e = row(slot);
  std::atomic_ref<uint32_t> head(vm_head_[vm]);
  const uint32_t first = head.load(std::memory_order_relaxed);
  e.vm_prev = kNoSlot;
  ref(e.vm_next).store(first, std::memory_order_relaxed);
  if (first != kNoSlot) row(first).vm_prev = slot;
  head.store(slot, std::memory_order_release);  // publish: the entry is complete
  std::atomic_ref<uint32_t> cnt(vm_count_[vm]);
  cnt.store(cnt.load(std::memory_order_relaxed) + 1, std::memory_order_relaxed);
}

void ConnTable::vm_unlink(uint32_t slot, uint16_t vm) {
  ConnEntry& e = row(slot);
  const uint32_t next = ref(e.vm_next).load(std::memory_order_relaxed);
  // Readers may be standing on `slot`: its vm_next stays as is until the grace period ends.
  if (e.vm_prev != kNoSlot)
    ref(row(e.vm_prev).vm_next).store(next, std::memory_order_release);
  else
    std::atomic_ref<uint32_t>(vm_head_[vm]).store(next, std::memory_order_release);
  if (next != kNoSlot) row(next).vm_prev = e.vm_prev;
  std::atomic_ref<uint32_t> cnt(vm_count_[vm]);
  cnt.store(cnt.load(std::memory_order_relaxed) - 1, std::memory_order_relaxed);
}

}  // namespace baton
