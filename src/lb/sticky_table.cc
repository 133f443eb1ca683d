// SPDX-License-Identifier: Apache-2.0
#include "lb/sticky_table.h"

#include <rte_errno.h>
#include <rte_lcore.h>
#include <rte_malloc.h>
#include <rte_pause.h>
#include <sched.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <new>

#include "lb/maglev.h"

namespace baton {

// ---- Model ------------------------------------------------------------------------------------

const char* sticky_key_method_name(StickyKeyMethod m) {
  switch (m) {
    case StickyKeyMethod::kSourceAddress:
      return "source-address";
    case StickyKeyMethod::kSourcePrefix:
      return "source-prefix";
    case StickyKeyMethod::kHttpCookie:
      return "http-cookie";
    case StickyKeyMethod::kHttpHeader:
      return "http-header";
  }
  return "?";
}

std::optional<StickyKeyMethod> parse_sticky_key_method(std::string_view s) {
  for (StickyKeyMethod m : {StickyKeyMethod::kSourceAddress, StickyKeyMethod::kSourcePrefix,
                            StickyKeyMethod::kHttpCookie, StickyKeyMethod::kHttpHeader})
    if (s == sticky_key_method_name(m)) return m;
  return std::nullopt;
}

std::string StickyGroup::validate() const {
  if (name.empty()) return "sticky group without a name";
  const std::string who = "sticky group '" + name + "': ";
  if (!parse_sticky_key_method(sticky_key_method_name(method))) return who + "unknown method";
  const bool http =
      method == StickyKeyMethod::kHttpCookie || method == StickyKeyMethod::kHttpHeader;
  if (http && field.empty())
    return who + sticky_key_method_name(method) + " needs the cookie or header name";
  if (!http && !field.empty()) return who + "a field name only applies to the HTTP methods";
  if (prefix_len_v4 > 32) return who + "IPv4 prefix length above 32";
  if (prefix_len_v6 > 128) return who + "IPv6 prefix length above 128";
  if (server_farm.empty()) return who + "no server farm";
  if (backup_farm == server_farm) return who + "the backup farm is the server farm";
  if (timeout_s == 0 || timeout_s > kMaxTimeout)
    return who + "timeout must be 1.." + std::to_string(kMaxTimeout) + " s";
  return "";
}

StickyKey StickyKey::source(uint16_t group, const IpAddr& a, Family f) {
  StickyKey k;
  k.group = group;
  k.method = static_cast<uint8_t>(StickyKeyMethod::kSourceAddress);
  k.family = static_cast<uint8_t>(f);
  k.data = a.b;
  if (f == Family::kV4) std::fill(k.data.begin() + 4, k.data.end(), 0);
  return k;
}

StickyKey StickyKey::source_prefix(uint16_t group, const IpAddr& a, Family f, uint8_t prefix_len) {
  StickyKey k = source(group, a, f);
  k.method = static_cast<uint8_t>(StickyKeyMethod::kSourcePrefix);
  const unsigned width = f == Family::kV4 ? 32 : 128;
  const unsigned len = std::min<unsigned>(prefix_len, width);
  k.prefix_len = static_cast<uint8_t>(len);
  for (unsigned bit = len; bit < 128; ++bit)
    k.data[bit / 8] &= static_cast<uint8_t>(~(0x80u >> (bit % 8)));
  return k;
}

StickyKey StickyKey::value(uint16_t group, StickyKeyMethod m, std::string_view value) {
  StickyKey k;
  k.group = group;
  k.method = static_cast<uint8_t>(m);
  k.value_len = static_cast<uint32_t>(std::min<size_t>(value.size(), UINT32_MAX));
  const uint64_t h = stable_hash64(value, 0x737469636b79ull /* "sticky" */);
  std::memcpy(k.data.data(), &h, sizeof h);
  return k;
}

std::string StickyKey::to_string() const {
  const auto m = static_cast<StickyKeyMethod>(method);
  char buf[96];
  if (m == StickyKeyMethod::kSourceAddress || m == StickyKeyMethod::kSourcePrefix) {
    IpAddr a;
    a.b = data;
    const std::string addr = a.to_string(static_cast<Family>(family));
    if (m == StickyKeyMethod::kSourcePrefix)
      std::snprintf(buf, sizeof buf, "g%u %s %s/%u", group, sticky_key_method_name(m),
                    addr.c_str(), prefix_len);
    else
      std::snprintf(buf, sizeof buf, "g%u %s %s", group, sticky_key_method_name(m), addr.c_str());
  } else {
    uint64_t h;
    std::memcpy(&h, data.data(), sizeof h);
    std::snprintf(buf, sizeof buf, "g%u %s #%016llx (len %u)", group, sticky_key_method_name(m),
                  static_cast<unsigned long long>(h), value_len);
  }
  return buf;
}

std::optional<StickyKey> derive_sticky_key(uint16_t group_id, const StickyGroup& g,
                                           const IpAddr& client, Family family,
                                           std::optional<std::string_view> http_value) {
  switch (g.method) {
    case StickyKeyMethod::kSourceAddress:
      return StickyKey::source(group_id, client, family);
    case StickyKeyMethod::kSourcePrefix:
      return StickyKey::source_prefix(group_id, client, family,
                                      family == Family::kV4 ? g.prefix_len_v4 : g.prefix_len_v6);
    case StickyKeyMethod::kHttpCookie:
    case StickyKeyMethod::kHttpHeader:
      if (!http_value || http_value->empty()) return std::nullopt;
      return StickyKey::value(group_id, g.method, *http_value);
  }
  return std::nullopt;
}

StickyAction sticky_decide(bool sticky_on_backup, const StickyFacts& f) {
  if (f.has_entry && f.entry_usable && (!f.entry_in_backup || sticky_on_backup))
    return StickyAction::kUseEntry;
  if (f.candidate_in_backup && !sticky_on_backup) return StickyAction::kCandidateOnly;
  return StickyAction::kBindCandidate;
}

// ---- Table ------------------------------------------------------------------------------------

namespace {

enum : uint8_t { kFree = 0, kClaimed = 1, kLive = 2, kDead = 3 };

uint64_t pack(BackendId backend, uint32_t expiry) { return (uint64_t{backend} << 32) | expiry; }
BackendId backend_of(uint64_t binding) { return static_cast<BackendId>(binding >> 32); }
uint32_t expiry_of(uint64_t binding) { return static_cast<uint32_t>(binding); }

// Positions deleted but within their grace period need room: capacity/32 extra (at least 256)
// absorbs a sweep's worth of churn, as in ConnTable.
uint32_t slack_for(uint32_t capacity) { return std::max<uint32_t>(256, capacity / 32); }

// A claimed slot is filled by another thread between two stores and a dead one is a few
// instructions from being deleted or revived; spin briefly, then yield in case that thread
// was preempted, then give up (-EBUSY).
constexpr int kSpinAttempts = 64;
constexpr int kMaxAttempts = 4096;
void backoff(int attempt) {
  if (attempt < kSpinAttempts)
    rte_pause();
  else
    sched_yield();
}

bool has_lcore() { return rte_lcore_id() != LCORE_ID_ANY; }

}  // namespace

struct alignas(64) StickyTable::Slot {
  std::atomic<uint8_t> state{kFree};
  std::atomic<uint32_t> gen{0};
  std::atomic<uint64_t> binding{0};  // backend << 32 | expiry
  std::atomic<uint32_t> created{0};
  std::atomic<uint32_t> last_used{0};
  std::atomic<uint32_t> active{0};
  StickyKey key;  // written while claimed, stable while live/dead
};

std::unique_ptr<StickyTable> StickyTable::create(const Params& p, std::string* err) {
  static_assert(sizeof(Slot) == 64, "one cache line per entry");
  auto fail = [&](const std::string& why) -> std::unique_ptr<StickyTable> {
    if (err) *err = "sticky table '" + p.name + "': " + why;
    return nullptr;
  };
  if (p.name.empty() || p.name.size() > kMaxNameLen)
    return fail("name must be 1.." + std::to_string(kMaxNameLen) + " characters");
  if (p.capacity == 0 || p.capacity > kMaxCapacity)
    return fail("capacity must be 1.." + std::to_string(kMaxCapacity));
  if (p.max_groups == 0) return fail("max_groups must be at least 1");
  if (p.rcu == nullptr) return fail("no RCU QSBR variable");

  std::unique_ptr<StickyTable> t(new StickyTable());
  t->name_ = p.name;
  t->capacity_ = p.capacity;
  t->max_groups_ = p.max_groups;
  t->rcu_ = p.rcu;
  t->groups_ = std::make_unique<GroupRule[]>(p.max_groups);

  rte_hash_parameters hp{};
  hp.name = p.name.c_str();
  hp.entries = p.capacity + slack_for(p.capacity);
  hp.key_len = sizeof(StickyKey);
  hp.hash_func = nullptr;  // rte_hash's default (CRC32 where the CPU has it)
  hp.socket_id = p.socket_id;
  hp.extra_flag = RTE_HASH_EXTRA_FLAGS_RW_CONCURRENCY_LF | RTE_HASH_EXTRA_FLAGS_MULTI_WRITER_ADD |
                  RTE_HASH_EXTRA_FLAGS_EXT_TABLE;
  t->hash_ = rte_hash_create(&hp);
  if (t->hash_ == nullptr) return fail(std::string("rte_hash_create: ") + rte_strerror(rte_errno));

  // With per-lcore free-position caches, positions run up to max_key_id - 1.
  const int32_t max_id = rte_hash_max_key_id(t->hash_);
  if (max_id <= 0) return fail("rte_hash_max_key_id failed");
  t->nslots_ = static_cast<uint32_t>(max_id);
  t->slots_ = static_cast<Slot*>(rte_zmalloc_socket(
      "sticky_slots", size_t{t->nslots_} * sizeof(Slot), RTE_CACHE_LINE_SIZE, p.socket_id));
  if (t->slots_ == nullptr)
    return fail("out of DPDK memory for " + std::to_string(t->nslots_) + " slots");
  for (uint32_t i = 0; i < t->nslots_; ++i) new (&t->slots_[i]) Slot();
  return t;
}

StickyTable::~StickyTable() {
  rte_hash_free(hash_);
  if (slots_ != nullptr) {
    for (uint32_t i = 0; i < nslots_; ++i) slots_[i].~Slot();
    rte_free(slots_);
  }
}

std::optional<StickyAging> StickyTable::rule(uint16_t group) const {
  if (group >= max_groups_) return std::nullopt;
  const GroupRule& g = groups_[group];
  const uint32_t timeout = g.timeout_s.load(std::memory_order_relaxed);
  if (timeout == 0) return std::nullopt;
  return StickyAging{timeout, g.timeout_active_conns.load(std::memory_order_relaxed)};
}

bool StickyTable::set_group(uint16_t id, const StickyGroup& g, std::string* err) {
  std::string why = g.validate();
  if (why.empty() && id >= max_groups_)
    why = "group id " + std::to_string(id) + " not below max_groups " + std::to_string(max_groups_);
  if (!why.empty()) {
    if (err) *err = "sticky table '" + name_ + "': " + why;
    return false;
  }
  std::lock_guard lock(control_mu_);
  groups_[id].timeout_active_conns.store(g.timeout_active_conns, std::memory_order_relaxed);
  groups_[id].timeout_s.store(g.timeout_s, std::memory_order_relaxed);
  return true;
}

void StickyTable::remove_group(uint16_t id) {
  if (id >= max_groups_) return;
  std::lock_guard lock(control_mu_);
  groups_[id].timeout_s.store(0, std::memory_order_relaxed);
}

StickyTable::Slot* StickyTable::slot_of(StickyRef ref) const {
  if (ref.slot >= nslots_) return nullptr;
  Slot& s = slots_[ref.slot];
  if (s.state.load(std::memory_order_acquire) != kLive) return nullptr;
  if (s.gen.load(std::memory_order_relaxed) != ref.gen) return nullptr;
  return &s;
}

// Moves the expiry to now + timeout if that is later (one CAS per second at most, so a busy
// entry does not bounce its cache line on every use), and records the use.
void StickyTable::refresh(Slot& s, const StickyAging& a, uint32_t now) {
  const uint32_t want = a.expiry_after_use(now);
  uint64_t b = s.binding.load(std::memory_order_relaxed);
  while (expiry_of(b) < want &&
         !s.binding.compare_exchange_weak(b, pack(backend_of(b), want), std::memory_order_seq_cst,
                                          std::memory_order_relaxed)) {
  }
  if (s.last_used.load(std::memory_order_relaxed) < now)
    s.last_used.store(now, std::memory_order_relaxed);
}

StickyTable::Meet StickyTable::meet(uint32_t pos, const StickyKey& k, BackendId backend,
                                    uint32_t expiry, uint32_t created, uint32_t last_used) {
  Slot& s = slots_[pos];
  uint8_t st = s.state.load(std::memory_order_acquire);
  if (st == kLive) return Meet::kLive;
  if (st != kFree || !s.state.compare_exchange_strong(st, kClaimed, std::memory_order_acquire))
    return Meet::kRetry;
  // Ours until published: readers look at the state before anything else.
  s.key = k;
  s.binding.store(pack(backend, expiry), std::memory_order_relaxed);
  s.created.store(created, std::memory_order_relaxed);
  s.last_used.store(last_used, std::memory_order_relaxed);
  s.active.store(0, std::memory_order_relaxed);
  s.gen.store(s.gen.load(std::memory_order_relaxed) + 1, std::memory_order_relaxed);
  s.state.store(kLive, std::memory_order_release);
  size_.fetch_add(1, std::memory_order_relaxed);
  return Meet::kClaimed;
}

std::optional<StickyHit> StickyTable::lookup(const StickyKey& k, uint32_t now) const {
  const std::optional<StickyAging> a = rule(k.group);
  if (!a) return std::nullopt;
  const int32_t pos = rte_hash_lookup(hash_, &k);
  if (pos < 0 || static_cast<uint32_t>(pos) >= nslots_) return std::nullopt;
  const Slot& s = slots_[pos];
  if (s.state.load(std::memory_order_acquire) != kLive) return std::nullopt;
  const uint64_t b = s.binding.load(std::memory_order_acquire);
  if (a->expired(now, expiry_of(b), s.active.load(std::memory_order_relaxed))) return std::nullopt;
  return StickyHit{
      {static_cast<uint32_t>(pos), s.gen.load(std::memory_order_relaxed)}, backend_of(b), false};
}

int32_t StickyTable::find_or_add(const StickyKey& k, hash_sig_t sig) {
  int32_t pos = rte_hash_lookup_with_hash(hash_, &k, sig);
  if (pos >= 0) return pos;
  if (size() >= capacity_) {
    stats_.full.fetch_add(1, std::memory_order_relaxed);
    return -ENOSPC;
  }
  // Returns the existing position if another thread added k meanwhile.
  pos = rte_hash_add_key_with_hash(hash_, &k, sig);
  if (pos == -ENOSPC) stats_.full.fetch_add(1, std::memory_order_relaxed);
  return pos;
}

int StickyTable::get_or_insert(const StickyKey& k, BackendId candidate, uint32_t now,
                               StickyHit* out) {
  const std::optional<StickyAging> a = rule(k.group);
  if (!a || candidate == kNoBackend || !has_lcore()) return -EINVAL;
  const hash_sig_t sig = rte_hash_hash(hash_, &k);
  const uint32_t expiry = a->expiry_after_use(now);

  for (int attempt = 0; attempt < kMaxAttempts; backoff(attempt++)) {
    const int32_t pos = find_or_add(k, sig);
    if (pos < 0) return pos;
    Slot& s = slots_[pos];
    const Meet m = meet(static_cast<uint32_t>(pos), k, candidate, expiry, now, now);
    if (m == Meet::kRetry) continue;
    bool inserted = m == Meet::kClaimed;
    BackendId backend = candidate;
    if (inserted) {
      stats_.inserts.fetch_add(1, std::memory_order_relaxed);
    } else {
      uint64_t b = s.binding.load(std::memory_order_acquire);
      for (;;) {
        if (a->expired(now, expiry_of(b), s.active.load(std::memory_order_relaxed))) {
          // Due but not yet removed: bind it afresh, exactly one worker wins.
          if (!s.binding.compare_exchange_weak(b, pack(candidate, expiry),
                                               std::memory_order_seq_cst))
            continue;
          s.created.store(now, std::memory_order_relaxed);
          s.last_used.store(now, std::memory_order_relaxed);
          stats_.revived.fetch_add(1, std::memory_order_relaxed);
          inserted = true;
        } else {
          backend = backend_of(b);
          refresh(s, *a, now);
        }
        break;
      }
      // Dekker with expire(): our use is published; if the entry died meanwhile, start over.
      if (s.state.load(std::memory_order_seq_cst) != kLive) continue;
    }
    *out = StickyHit{
        {static_cast<uint32_t>(pos), s.gen.load(std::memory_order_relaxed)}, backend, inserted};
    return 0;
  }
  stats_.busy.fetch_add(1, std::memory_order_relaxed);
  return -EBUSY;
}

BackendId StickyTable::rebind(StickyRef ref, BackendId expected, BackendId replacement,
                              uint32_t now) {
  Slot* s = slot_of(ref);
  const std::optional<StickyAging> a = s ? rule(s->key.group) : std::nullopt;
  if (!a || replacement == kNoBackend) return kNoBackend;
  uint64_t b = s->binding.load(std::memory_order_acquire);
  while (backend_of(b) == expected) {
    if (s->binding.compare_exchange_weak(b, pack(replacement, a->expiry_after_use(now)),
                                         std::memory_order_seq_cst)) {
      s->last_used.store(now, std::memory_order_relaxed);
      stats_.rebinds.fetch_add(1, std::memory_order_relaxed);
      return replacement;
    }
  }
  return backend_of(b);
}

void StickyTable::touch(StickyRef ref, uint32_t now) {
  Slot* s = slot_of(ref);
  if (s == nullptr) return;
  if (const std::optional<StickyAging> a = rule(s->key.group)) refresh(*s, *a, now);
}

bool StickyTable::conn_ref(StickyRef ref) {
  Slot* s = slot_of(ref);
  if (s == nullptr) return false;
  s->active.fetch_add(1, std::memory_order_seq_cst);
  // Dekker with expire(): the reference is published; back out if the entry died meanwhile.
  if (s->state.load(std::memory_order_seq_cst) != kLive) {
    s->active.fetch_sub(1, std::memory_order_relaxed);
    return false;
  }
  return true;
}

void StickyTable::conn_unref(StickyRef ref, uint32_t now) {
  Slot* s = slot_of(ref);
  if (s == nullptr) return;
  uint32_t n = s->active.load(std::memory_order_relaxed);
  while (n > 0 && !s->active.compare_exchange_weak(n, n - 1, std::memory_order_relaxed)) {
  }
  // The idle timer restarts when a connection ends (so a long download is not followed by an
  // immediate expiry).
  if (const std::optional<StickyAging> a = rule(s->key.group)) refresh(*s, *a, now);
}

// ---- Control side -------------------------------------------------------------------------

void StickyTable::kill(uint32_t pos) {
  rte_hash_del_key(hash_, &slots_[pos].key);
  size_.fetch_sub(1, std::memory_order_relaxed);
  dying_.push_back(pos);
}

void StickyTable::reclaim() {
  if (!dying_.empty()) {
    // One token covers everything deleted since the last one.
    const uint64_t token = rte_rcu_qsbr_start(rcu_);
    for (uint32_t pos : dying_) deferred_.emplace_back(token, pos);
    dying_.clear();
  }
  while (!deferred_.empty() && rte_rcu_qsbr_check(rcu_, deferred_.front().first, false) == 1) {
    const uint32_t pos = deferred_.front().second;
    slots_[pos].state.store(kFree, std::memory_order_release);
    rte_hash_free_key_with_position(hash_, static_cast<int32_t>(pos));
    deferred_.pop_front();
  }
}

uint32_t StickyTable::expire(uint32_t now, uint32_t budget) {
  if (!has_lcore()) return 0;
  std::lock_guard lock(control_mu_);
  uint32_t removed = 0;
  for (uint32_t n = 0; n < budget && n < nslots_; ++n) {
    const uint32_t pos = cursor_;
    cursor_ = cursor_ + 1 == nslots_ ? 0 : cursor_ + 1;
    Slot& s = slots_[pos];
    if (s.state.load(std::memory_order_acquire) != kLive) continue;
    const std::optional<StickyAging> a = rule(s.key.group);
    auto due = [&] {
      return !a || a->expired(now, expiry_of(s.binding.load(std::memory_order_seq_cst)),
                              s.active.load(std::memory_order_seq_cst));
    };
    if (!due()) continue;
    uint8_t st = kLive;
    if (!s.state.compare_exchange_strong(st, kDead, std::memory_order_seq_cst)) continue;
    if (!due()) {  // a worker used it between the check and the CAS: keep it
      s.state.store(kLive, std::memory_order_seq_cst);
      continue;
    }
    kill(pos);
    ++removed;
  }
  stats_.expired.fetch_add(removed, std::memory_order_relaxed);
  reclaim();
  return removed;
}

bool StickyTable::remove(const StickyKey& k) {
  std::lock_guard lock(control_mu_);
  const int32_t pos = rte_hash_lookup(hash_, &k);
  if (pos < 0) return false;
  uint8_t st = kLive;
  if (!slots_[pos].state.compare_exchange_strong(st, kDead, std::memory_order_seq_cst))
    return false;
  kill(static_cast<uint32_t>(pos));
  stats_.removed.fetch_add(1, std::memory_order_relaxed);
  return true;
}

std::vector<StickyRecord> StickyTable::list(uint32_t now, std::optional<uint16_t> group) const {
  std::lock_guard lock(control_mu_);  // no slot is reclaimed (or its key rewritten) meanwhile
  std::vector<StickyRecord> out;
  for (uint32_t pos = 0; pos < nslots_; ++pos) {
    const Slot& s = slots_[pos];
    if (s.state.load(std::memory_order_acquire) != kLive) continue;
    if (group && s.key.group != *group) continue;
    const uint64_t b = s.binding.load(std::memory_order_relaxed);
    auto since = [now](uint32_t t) { return now > t ? now - t : 0; };
    StickyRecord r;
    r.key = s.key;
    r.backend = backend_of(b);
    r.age_s = since(s.created.load(std::memory_order_relaxed));
    r.idle_s = since(s.last_used.load(std::memory_order_relaxed));
    r.ttl_s = expiry_of(b) > now ? expiry_of(b) - now : 0;
    r.active_conns = s.active.load(std::memory_order_relaxed);
    out.push_back(r);
  }
  return out;
}

int StickyTable::install(const StickyRecord& r, uint32_t now) {
  if (!rule(r.key.group) || r.backend == kNoBackend || !has_lcore()) return -EINVAL;
  std::lock_guard lock(control_mu_);
  auto ago = [now](uint32_t d) { return now > d ? now - d : 0; };
  const uint32_t expiry = now > UINT32_MAX - r.ttl_s ? UINT32_MAX : now + r.ttl_s;
  const hash_sig_t sig = rte_hash_hash(hash_, &r.key);
  for (int attempt = 0; attempt < kMaxAttempts; backoff(attempt++)) {
    const int32_t pos = find_or_add(r.key, sig);
    if (pos < 0) return pos;
    const Meet m =
        meet(static_cast<uint32_t>(pos), r.key, r.backend, expiry, ago(r.age_s), ago(r.idle_s));
    if (m == Meet::kRetry) continue;
    if (m == Meet::kLive) {  // the record wins: a retried install converges on it
      Slot& s = slots_[pos];
      s.binding.store(pack(r.backend, expiry), std::memory_order_seq_cst);
      s.created.store(ago(r.age_s), std::memory_order_relaxed);
      s.last_used.store(ago(r.idle_s), std::memory_order_relaxed);
    }
    stats_.installs.fetch_add(1, std::memory_order_relaxed);
    return 0;
  }
  stats_.busy.fetch_add(1, std::memory_order_relaxed);
  return -EBUSY;
}

int StickyTable::adopt(const StickyRecord& r, uint32_t now, StickyHit* out) {
  if (!rule(r.key.group) || r.backend == kNoBackend || !has_lcore()) return -EINVAL;
  std::lock_guard lock(control_mu_);  // expire() does not kill the entry under us
  auto ago = [now](uint32_t d) { return now > d ? now - d : 0; };
  const uint32_t expiry = now > UINT32_MAX - r.ttl_s ? UINT32_MAX : now + r.ttl_s;
  const hash_sig_t sig = rte_hash_hash(hash_, &r.key);
  for (int attempt = 0; attempt < kMaxAttempts; backoff(attempt++)) {
    const int32_t pos = find_or_add(r.key, sig);
    if (pos < 0) return pos;
    const Meet m =
        meet(static_cast<uint32_t>(pos), r.key, r.backend, expiry, ago(r.age_s), ago(r.idle_s));
    if (m == Meet::kRetry) continue;
    Slot& s = slots_[pos];
    if (m == Meet::kLive) {
      uint64_t b = s.binding.load(std::memory_order_seq_cst);
      for (;;) {
        const bool same = backend_of(b) == r.backend;
        if (!same && s.active.load(std::memory_order_seq_cst) > 0) break;  // ours stays
        const uint64_t want = pack(r.backend, same ? std::max(expiry, expiry_of(b)) : expiry);
        if (s.binding.compare_exchange_weak(b, want, std::memory_order_seq_cst)) {
          if (!same) s.created.store(ago(r.age_s), std::memory_order_relaxed);
          if (s.last_used.load(std::memory_order_relaxed) < ago(r.idle_s))
            s.last_used.store(ago(r.idle_s), std::memory_order_relaxed);
          break;
        }
      }
    }
    stats_.installs.fetch_add(1, std::memory_order_relaxed);
    const StickyRef ref{static_cast<uint32_t>(pos), s.gen.load(std::memory_order_relaxed)};
    if (!conn_ref(ref)) return -EBUSY;  // cannot happen under the mutex; kept for safety
    *out = StickyHit{ref, backend_of(s.binding.load(std::memory_order_acquire)), m == Meet::kClaimed};
    return 0;
  }
  stats_.busy.fetch_add(1, std::memory_order_relaxed);
  return -EBUSY;
}

bool StickyTable::remove_if_unused(StickyRef ref) {
  std::lock_guard lock(control_mu_);
  Slot* s = slot_of(ref);
  if (s == nullptr || s->active.load(std::memory_order_seq_cst) != 0) return false;
  uint8_t st = kLive;
  if (!s->state.compare_exchange_strong(st, kDead, std::memory_order_seq_cst)) return false;
  if (s->active.load(std::memory_order_seq_cst) != 0) {  // a worker took it meanwhile
    s->state.store(kLive, std::memory_order_seq_cst);
    return false;
  }
  kill(ref.slot);
  stats_.removed.fetch_add(1, std::memory_order_relaxed);
  return true;
}

std::optional<StickyRecord> StickyTable::read(StickyRef ref, uint32_t now) const {
  const Slot* s = slot_of(ref);
  if (s == nullptr) return std::nullopt;
  auto since = [now](uint32_t t) { return now > t ? now - t : 0; };
  const uint64_t b = s->binding.load(std::memory_order_acquire);
  StickyRecord r;
  r.key = s->key;  // stable while live (written only while claimed)
  r.backend = backend_of(b);
  r.age_s = since(s->created.load(std::memory_order_relaxed));
  r.idle_s = since(s->last_used.load(std::memory_order_relaxed));
  r.ttl_s = expiry_of(b) > now ? expiry_of(b) - now : 0;
  r.active_conns = s->active.load(std::memory_order_relaxed);
  // The slot may have been reused while we read: the ref must still name it.
  if (s->state.load(std::memory_order_acquire) != kLive ||
      s->gen.load(std::memory_order_acquire) != ref.gen)
    return std::nullopt;
  return r;
}

StickyTableStats StickyTable::stats() const {
  StickyTableStats s;
#define BATON_COUNTER_COPY(name, metric, help) s.name = stats_.name.load(std::memory_order_relaxed);
  BATON_FOREACH_STICKY_TABLE_COUNTER(BATON_COUNTER_COPY)
#undef BATON_COUNTER_COPY
  return s;
}

}  // namespace baton
