// SPDX-License-Identifier: Apache-2.0
#include "lb/backend_pool.h"

#include <algorithm>
#include <set>
#include <utility>

namespace baton {

const char* admin_state_name(AdminState s) {
  switch (s) {
    case AdminState::kUp:
      return "up";
    case AdminState::kDraining:
      return "draining";
    case AdminState::kDown:
      return "down";
  }
  return "?";
}

std::optional<AdminState> parse_admin_state(std::string_view s) {
  if (s == "up") return AdminState::kUp;
  if (s == "draining") return AdminState::kDraining;
  if (s == "down") return AdminState::kDown;
  return std::nullopt;
}

std::string BackendSpec::maglev_key() const {
  return IpAddr::v4(addr).to_string(Family::kV4) + ":" + std::to_string(port.host());
}

const PoolSnapshot::Backend* PoolSnapshot::find(BackendId id) const {
  auto it = std::lower_bound(backends.begin(), backends.end(), id,
                             [](const Backend& b, BackendId v) { return b.spec.id < v; });
  return it != backends.end() && it->spec.id == id ? &*it : nullptr;
}

std::unique_ptr<BackendPool> BackendPool::create(Params p, std::string* err) {
  auto fail = [&](const std::string& why) -> std::unique_ptr<BackendPool> {
    if (err) *err = "pool '" + p.name + "': " + why;
    return nullptr;
  };
  if (!p.retire) return fail("no retire callback");
  if (p.maglev_size < 3 || p.maglev_size > Maglev::kMaxSize || !Maglev::is_prime(p.maglev_size))
    return fail("maglev table size " + std::to_string(p.maglev_size) + " is not a prime in [3, " +
                std::to_string(Maglev::kMaxSize) + "]");
  std::unique_ptr<BackendPool> pool(new BackendPool());
  pool->name_ = std::move(p.name);
  pool->maglev_size_ = p.maglev_size;
  pool->retire_ = std::move(p.retire);
  pool->current_.store(new PoolSnapshot(), std::memory_order_release);
  return pool;
}

BackendPool::~BackendPool() { delete current_.load(std::memory_order_acquire); }

bool BackendPool::validate_and_publish(Backends next, const BackendPool* backup, std::string* err) {
  auto fail = [&](const std::string& why) {
    if (err) *err = "pool '" + name_ + "': " + why;
    return false;
  };
  if (next.size() > kMaxBackends)
    return fail("more than " + std::to_string(kMaxBackends) + " backends");
  std::sort(next.begin(), next.end(),
            [](const auto& a, const auto& b) { return a.spec.id < b.spec.id; });
  std::set<std::pair<uint32_t, uint16_t>> endpoints;
  for (size_t i = 0; i < next.size(); ++i) {
    const BackendSpec& s = next[i].spec;
    const std::string who = "backend " + std::to_string(s.id);
    if (s.id == kNoBackend) return fail(who + ": reserved id");
    if (i > 0 && next[i - 1].spec.id == s.id) return fail(who + ": duplicate id");
    if (s.addr.raw() == 0) return fail(who + ": address 0.0.0.0");
    if (s.port.raw() == 0) return fail(who + ": port 0");
    if (s.weight > kMaxWeight) return fail(who + ": weight above " + std::to_string(kMaxWeight));
    if (!endpoints.insert({s.addr.raw(), s.port.raw()}).second)
      return fail(who + ": " + s.maglev_key() + " is already in the pool");
  }

  auto snap = std::make_unique<PoolSnapshot>();
  std::vector<MaglevBackend> input;
  for (uint32_t i = 0; i < next.size(); ++i) {
    if (!next[i].spec.takes_new()) continue;
    input.push_back({next[i].spec.id, next[i].spec.maglev_key(), next[i].spec.weight});
    snap->maglev_index.push_back(i);
  }
  std::string merr;
  std::optional<Maglev> m = Maglev::build(input, maglev_size_, &merr);
  if (!m) return fail(merr);
  snap->maglev = std::move(*m);
  snap->backends = std::move(next);
  snap->backup = backup;

  const PoolSnapshot* old = current_.exchange(snap.release(), std::memory_order_acq_rel);
  retire_([old] { delete old; });
  return true;
}

PoolSnapshot::Backend* BackendPool::find_mut(Backends& list, BackendId id, std::string* err) const {
  for (auto& b : list)
    if (b.spec.id == id) return &b;
  if (err) *err = "pool '" + name_ + "': no backend " + std::to_string(id);
  return nullptr;
}

template <class Fn>
bool BackendPool::mutate(BackendId id, std::string* err, Fn&& fn) {
  std::lock_guard lock(mu_);
  const PoolSnapshot* cur = snapshot();
  Backends next = cur->backends;
  PoolSnapshot::Backend* b = find_mut(next, id, err);
  if (b == nullptr) return false;
  fn(b->spec);
  return validate_and_publish(std::move(next), cur->backup, err);
}

bool BackendPool::add(const BackendSpec& spec, std::string* err) {
  std::lock_guard lock(mu_);
  const PoolSnapshot* cur = snapshot();
  Backends next = cur->backends;
  next.push_back({spec, std::make_shared<BackendCounters>()});
  return validate_and_publish(std::move(next), cur->backup, err);
}

bool BackendPool::remove(BackendId id, std::string* err) {
  std::lock_guard lock(mu_);
  const PoolSnapshot* cur = snapshot();
  Backends next = cur->backends;
  if (find_mut(next, id, err) == nullptr) return false;
  std::erase_if(next, [id](const auto& b) { return b.spec.id == id; });
  return validate_and_publish(std::move(next), cur->backup, err);
}

bool BackendPool::set_weight(BackendId id, uint32_t weight, std::string* err) {
  return mutate(id, err, [&](BackendSpec& s) { s.weight = weight; });
}

bool BackendPool::set_admin(BackendId id, AdminState state, std::string* err) {
  return mutate(id, err, [&](BackendSpec& s) { s.admin = state; });
}

bool BackendPool::set_healthy(BackendId id, bool healthy, std::string* err) {
  return mutate(id, err, [&](BackendSpec& s) { s.healthy = healthy; });
}

bool BackendPool::set_backends(const std::vector<BackendSpec>& specs, bool keep_health,
                               std::string* err) {
  std::lock_guard lock(mu_);
  const PoolSnapshot* cur = snapshot();
  Backends next;
  for (const BackendSpec& s : specs) {
    const PoolSnapshot::Backend* old = cur->find(s.id);
    PoolSnapshot::Backend b{s, old ? old->counters : std::make_shared<BackendCounters>()};
    if (old && keep_health) b.spec.healthy = old->spec.healthy;
    next.push_back(std::move(b));
  }
  return validate_and_publish(std::move(next), cur->backup, err);
}

bool BackendPool::set_backup(const BackendPool* backup, std::string* err) {
  if (backup == this) {
    if (err) *err = "pool '" + name_ + "': a pool cannot be its own backup";
    return false;
  }
  std::lock_guard lock(mu_);
  return validate_and_publish(snapshot()->backends, backup, err);
}

std::vector<BackendStatus> BackendPool::list() const {
  std::lock_guard lock(mu_);  // keeps the snapshot current (and alive) while reading
  std::vector<BackendStatus> out;
  for (const auto& b : snapshot()->backends)
    out.push_back({b.spec, b.counters->active.load(std::memory_order_relaxed),
                   b.counters->total.load(std::memory_order_relaxed)});
  return out;
}

std::optional<BackendStatus> BackendPool::status(BackendId id) const {
  std::lock_guard lock(mu_);
  const PoolSnapshot::Backend* b = snapshot()->find(id);
  if (b == nullptr) return std::nullopt;
  return BackendStatus{b->spec, b->counters->active.load(std::memory_order_relaxed),
                       b->counters->total.load(std::memory_order_relaxed)};
}

std::optional<BackendPick> BackendPool::pick(uint64_t flow_hash) const {
  const PoolSnapshot* s = snapshot();
  bool backup = false;
  if (s->maglev.empty() && s->backup != nullptr) {
    s = s->backup->snapshot();
    backup = true;
  }
  const int32_t i = s->maglev.lookup_index(flow_hash);
  if (i < 0) return std::nullopt;
  const BackendSpec& b = s->backends[s->maglev_index[static_cast<uint32_t>(i)]].spec;
  return BackendPick{b.id, b.addr, b.port, backup};
}

void BackendPool::prefetch_pick(uint64_t flow_hash) const {
  const PoolSnapshot* s = snapshot();
  if (s->maglev.empty() && s->backup != nullptr) s = s->backup->snapshot();
  s->maglev.prefetch(flow_hash);
}

const PoolSnapshot::Backend* BackendPool::find_any(BackendId id, bool* backup) const {
  const PoolSnapshot* s = snapshot();
  *backup = false;
  if (const PoolSnapshot::Backend* b = s->find(id)) return b;
  if (s->backup == nullptr) return nullptr;
  *backup = true;
  return s->backup->snapshot()->find(id);
}

std::optional<BackendPick> BackendPool::find_persistent(BackendId id) const {
  bool backup = false;
  const PoolSnapshot::Backend* b = find_any(id, &backup);
  if (b == nullptr || !b->spec.takes_persistent()) return std::nullopt;
  return BackendPick{b->spec.id, b->spec.addr, b->spec.port, backup};
}

void BackendPool::conn_opened(BackendId id) const {
  bool backup = false;
  if (const PoolSnapshot::Backend* b = find_any(id, &backup)) {
    b->counters->active.fetch_add(1, std::memory_order_relaxed);
    b->counters->total.fetch_add(1, std::memory_order_relaxed);
  }
}

void BackendPool::conn_closed(BackendId id) const {
  bool backup = false;
  if (const PoolSnapshot::Backend* b = find_any(id, &backup))
    b->counters->active.fetch_sub(1, std::memory_order_relaxed);
}

}  // namespace baton
