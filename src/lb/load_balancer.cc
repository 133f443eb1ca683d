// SPDX-License-Identifier: Apache-2.0
#include "lb/load_balancer.h"

#include <openssl/rand.h>
#include <rte_hash_crc.h>
#include <rte_lcore.h>

#include <algorithm>
#include <chrono>

#include "common/log.h"

namespace baton {
namespace {

bool raw_less(be32 a, be32 b) { return a.raw() < b.raw(); }

// The configured method in the sticky table's terms (same numbering, kNone excluded).
StickyKeyMethod sticky_method_of(const StickyConfig& c) {
  return static_cast<StickyKeyMethod>(static_cast<uint8_t>(c.method));
}
static_assert(static_cast<uint8_t>(StickyMethod::kSourceAddress) ==
                  static_cast<uint8_t>(StickyKeyMethod::kSourceAddress) &&
              static_cast<uint8_t>(StickyMethod::kHeader) ==
                  static_cast<uint8_t>(StickyKeyMethod::kHttpHeader));

// A backend without a port listens on the port of the (first) service that uses its pool.
uint16_t service_port_of(const Config& cfg, const std::string& pool) {
  for (const ServiceConfig& s : cfg.lb.services)
    if (s.pool == pool || s.backup_pool == pool) return s.port;
  return 0;
}

}  // namespace

std::unique_ptr<LoadBalancer> LoadBalancer::create(const Config& cfg, uint16_t workers,
                                                   rte_rcu_qsbr* rcu, std::string* err) {
  std::unique_ptr<LoadBalancer> lb(new LoadBalancer());
  lb->workers_ = workers;
  lb->local_cursor_ = std::make_unique<LocalCursor[]>(workers);
  lb->rcu_ = rcu;
  if (!cfg.lb.enabled()) return lb;
  LoadBalancer* self = lb.get();
  // Pools, numbered backends: id = pool index << 16 | backend index, unique process-wide.
  for (size_t pi = 0; pi < cfg.lb.pools.size(); pi++) {
    const PoolConfig& pc = cfg.lb.pools[pi];
    BackendPool::Params pp;
    pp.name = pc.name;
    pp.retire = [self](std::function<void()> f) { self->retire(std::move(f)); };
    auto pool = BackendPool::create(pp, err);
    if (!pool) return nullptr;
    for (size_t bi = 0; bi < pc.backends.size(); bi++) {
      const BackendConfig& bc = pc.backends[bi];
      BackendSpec spec;
      spec.id = static_cast<BackendId>(pi << 16 | bi);
      spec.addr = bc.address.as_v4();
      spec.port = be16::from_host(bc.port ? bc.port : service_port_of(cfg, pc.name));
      spec.weight = bc.weight;
      spec.admin = bc.state == BackendState::kUp ? AdminState::kUp
                   : bc.state == BackendState::kDraining ? AdminState::kDraining
                                                         : AdminState::kDown;
      spec.healthy = true;
      if (!pool->add(spec, err)) {
        *err = "pool " + pc.name + ": " + *err;
        return nullptr;
      }
    }
    lb->pool_names_.push_back(pc.name);
    lb->pools_.push_back(std::move(pool));
  }
  auto pool_index = [&](const std::string& name) -> int {
    for (size_t i = 0; i < lb->pool_names_.size(); i++)
      if (lb->pool_names_[i] == name) return static_cast<int>(i);
    return -1;
  };
  static std::atomic<int> seq{0};
  StickyTable::Params sp;
  sp.name = "sticky" + std::to_string(seq++);
  sp.capacity = std::max<uint32_t>(64, cfg.lb.sticky_capacity);
  sp.rcu = rcu;
  lb->sticky_ = StickyTable::create(sp, err);
  if (!lb->sticky_) return nullptr;

  for (const ServiceConfig& sc : cfg.lb.services) {
    Service s;
    s.cfg = sc;
    const int pi = pool_index(sc.pool);
    if (pi < 0) {
      *err = "service " + sc.name + ": unknown pool " + sc.pool;
      return nullptr;
    }
    s.pool = lb->pools_[pi].get();
    if (!sc.backup_pool.empty()) {
      const int bi = pool_index(sc.backup_pool);
      if (bi < 0) {
        *err = "service " + sc.name + ": unknown backup pool " + sc.backup_pool;
        return nullptr;
      }
      s.backup = lb->pools_[bi].get();
      if (!s.pool->set_backup(s.backup, err)) return nullptr;
    }
    if (sc.sticky.method != StickyMethod::kNone) {
      s.group.name = sc.name;
      s.group.method = sticky_method_of(sc.sticky);
      s.group.prefix_len_v4 = sc.sticky.prefix_len;
      s.group.field = sc.sticky.name;
      s.group.server_farm = sc.pool;
      s.group.backup_farm = sc.backup_pool;
      s.group.sticky_on_backup = sc.sticky.on_backup;
      s.group.timeout_s = sc.sticky.timeout_s;
      s.group.timeout_active_conns = sc.sticky.timeout_active_conns;
      s.sticky_group = static_cast<int>(lb->services_.size());
      if (!lb->sticky_->set_group(static_cast<uint16_t>(s.sticky_group), s.group, err)) {
        *err = "service " + sc.name + ": sticky: " + *err;
        return nullptr;
      }
    }
    if (sc.mode == LbMode::kL7) {
      // Every target is sticky the service's way when it uses a cookie or a header.
      L7Target def;
      def.pool = static_cast<uint32_t>(pi);
      if (sc.sticky.method == StickyMethod::kCookie || sc.sticky.method == StickyMethod::kHeader) {
        def.sticky_by = sc.sticky.method == StickyMethod::kCookie ? StickyBy::kCookie : StickyBy::kHeader;
        def.sticky_name = sc.sticky.name;
      }
      std::vector<L7Rule> rules;
      for (const L7RuleConfig& rc : sc.l7_rules) {
        L7Rule r;
        r.name = "line " + std::to_string(rc.line);
        if (!rc.host.empty()) r.match.host = rc.host;
        if (!rc.path_prefix.empty()) r.match.path_prefix = rc.path_prefix;
        if (!rc.header_name.empty()) r.match.header = NameValue{rc.header_name, rc.header_value};
        if (!rc.cookie_name.empty()) r.match.cookie = NameValue{rc.cookie_name, rc.cookie_value};
        r.target = def;
        const int rp = pool_index(rc.pool);
        if (rp < 0) {
          *err = "service " + sc.name + ": rule at line " + std::to_string(rc.line) + ": unknown pool " + rc.pool;
          return nullptr;
        }
        r.target.pool = static_cast<uint32_t>(rp);
        rules.push_back(std::move(r));
      }
      std::string why;
      s.router = L7Router::build(std::move(rules), def, &why);
      if (!s.router) {
        *err = "service " + sc.name + ": " + why;
        return nullptr;
      }
    }
    for (const IpAddr& a : sc.local_addresses) {
      s.local.push_back(a.as_v4());
      lb->local_addrs_.push_back(a.as_v4());
    }
    const int index = static_cast<int>(lb->services_.size());
    lb->vips_[Key{sc.proto, sc.vip.as_v4().raw(), be16::from_host(sc.port).raw()}] = index;
    if (sc.mode == LbMode::kNat) {
      for (const BackendConfig& b : cfg.lb.pools[pi].backends)
        lb->nat_backends_.insert(Key{sc.proto, b.address.as_v4().raw(),
                                     be16::from_host(b.port ? b.port : service_port_of(cfg, sc.pool)).raw()});
    }
    lb->services_.push_back(std::move(s));
  }
  if (lb->l7_max_head() &&
      (RAND_bytes(lb->syn_secret_.h0.data(), static_cast<int>(lb->syn_secret_.h0.size())) != 1 ||
       RAND_bytes(lb->syn_secret_.h1.data(), static_cast<int>(lb->syn_secret_.h1.size())) != 1)) {
    *err = "L7: no random bytes for the SYN cookie secret";
    return nullptr;
  }
  std::sort(lb->local_addrs_.begin(), lb->local_addrs_.end(), raw_less);
  lb->local_addrs_.erase(std::unique(lb->local_addrs_.begin(), lb->local_addrs_.end()),
                         lb->local_addrs_.end());

  // Health checks: one target per (pool, backend) with a check configured.
  lb->health_ = std::make_unique<HealthChecker>([self](HealthChecker::Id id, bool up) {
    const size_t pi = id >> 32;
    const BackendId bid = static_cast<BackendId>(id & 0xffffffffu);
    std::string e;
    if (pi < self->pools_.size()) self->pools_[pi]->set_healthy(bid, up, &e);
    BLOG_INFO("lb", "pool %s backend %u is %s", self->pool_names_[pi].c_str(), bid & 0xffff,
              up ? "up" : "down");
  });
  for (size_t pi = 0; pi < cfg.lb.pools.size(); pi++) {
    const PoolConfig& pc = cfg.lb.pools[pi];
    if (pc.health.kind == HealthCheckKind::kNone) continue;
    for (size_t bi = 0; bi < pc.backends.size(); bi++) {
      HealthChecker::Target tg;
      tg.id = uint64_t{pi} << 32 | (pi << 16 | bi);
      tg.addr = pc.backends[bi].address.as_v4();
      tg.port = be16::from_host(pc.backends[bi].port ? pc.backends[bi].port
                                                      : service_port_of(cfg, pc.name));
      tg.config.kind = pc.health.kind == HealthCheckKind::kHttp ? HealthProbeConfig::Kind::kHttp
                                                                : HealthProbeConfig::Kind::kTcp;
      tg.config.interval_ms = pc.health.interval_ms;
      tg.config.timeout_ms = pc.health.timeout_ms;
      tg.config.rise = pc.health.rise;
      tg.config.fall = pc.health.fall;
      tg.config.http_path = pc.health.http_path;
      tg.config.http_host = pc.health.http_host;
      tg.config.status_min = pc.health.expect_lo;
      tg.config.status_max = pc.health.expect_hi;
      tg.initially_up = true;
      if (!lb->health_->add(tg, err)) {
        *err = "pool " + pc.name + " health check: " + *err;
        return nullptr;
      }
    }
  }
  return lb;
}

LoadBalancer::~LoadBalancer() {
  stop();
  // Detach backups before the pools go, then run what is still waiting for a grace period
  // (no worker runs any more when the dataplane destroys us).
  for (auto& p : pools_) p->set_backup(nullptr, nullptr);
  for (auto& r : retired_) r.second();
  retired_.clear();
}

bool LoadBalancer::start(std::string* err) {
  if (services_.empty()) return true;
  if (!health_->start(err)) return false;
  running_ = true;
  control_ = std::thread([this] { control_loop(); });
  return true;
}

void LoadBalancer::stop() {
  if (health_) health_->stop();
  running_ = false;
  if (control_.joinable()) control_.join();
}

void LoadBalancer::retire(std::function<void()> free_fn) {
  std::lock_guard<std::mutex> lock(retire_mu_);
  retired_.emplace_back(rcu_ ? rte_rcu_qsbr_start(rcu_) : 0, std::move(free_fn));
}

// Sticky aging and freeing retired pool snapshots, ten times a second. The thread registers
// with EAL: the sticky table's deferred frees need an lcore id.
void LoadBalancer::control_loop() {
  rte_thread_register();
  while (running_) {
    const uint32_t now = now_ ? now_() : 0;
    sticky_->expire(now, 4096);
    std::deque<std::function<void()>> due;
    {
      std::lock_guard<std::mutex> lock(retire_mu_);
      while (!retired_.empty() &&
             (!rcu_ || rte_rcu_qsbr_check(rcu_, retired_.front().first, false) == 1)) {
        due.push_back(std::move(retired_.front().second));
        retired_.pop_front();
      }
    }
    for (auto& f : due) f();
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
  rte_thread_unregister();
}

std::vector<be32> LoadBalancer::addresses() const {
  std::vector<be32> a = local_addrs_;
  for (const Service& s : services_) a.push_back(s.cfg.vip.as_v4());
  return a;
}

std::vector<be32> LoadBalancer::nat_backend_addresses() const {
  std::vector<be32> a;
  for (const Key& k : nat_backends_) a.push_back(be32::from_raw(k.addr));
  return a;
}

int LoadBalancer::owner(const Tuple& t) const {
  if (services_.empty() || workers_ < 2 || t.family != Family::kV4) return -1;
  const be32 s = t.src.as_v4(), d = t.dst.as_v4();
  if (service_of(t.proto, d, t.dport) >= 0) return inside_owner(s, workers_);
  if (service_of(t.proto, s, t.sport) >= 0) return inside_owner(d, workers_);  // quoted in ICMP
  if (nat_backends_.count(Key{t.proto, s.raw(), t.sport.raw()})) return inside_owner(d, workers_);
  if (nat_backends_.count(Key{t.proto, d.raw(), t.dport.raw()})) return inside_owner(s, workers_);
  if (std::binary_search(local_addrs_.begin(), local_addrs_.end(), d, raw_less))
    return port_owner(t.dport.host(), local_layout_, workers_);
  if (std::binary_search(local_addrs_.begin(), local_addrs_.end(), s, raw_less))
    return port_owner(t.sport.host(), local_layout_, workers_);
  return -1;
}

namespace {
// The flow hash Maglev places a connection by.
uint64_t flow_hash(const Tuple& t) {
  const uint32_t words[3] = {t.src.as_v4().raw(), t.dst.as_v4().raw(),
                             uint32_t{t.sport.raw()} << 16 | t.dport.raw()};
  return rte_hash_crc(words, sizeof words, t.proto);
}
}  // namespace

void LoadBalancer::prefetch_choice(const Tuple& t) const {
  if (t.family != Family::kV4) return;
  const int si = service_of(t.proto, t.dst.as_v4(), t.dport);
  if (si < 0 || services_[si].cfg.mode == LbMode::kL7) return;
  services_[si].pool->prefetch_pick(flow_hash(t));
}

std::optional<BackendPick> LoadBalancer::choose(const Service& s, const BackendPool& pool,
                                                const Tuple& t,
                                                std::optional<std::string_view> http_value,
                                                uint32_t now_s, StickyRef* ref) {
  std::optional<BackendPick> candidate = pool.pick(flow_hash(t));
  if (s.sticky_group < 0) return candidate;
  std::optional<StickyKey> key =
      derive_sticky_key(static_cast<uint16_t>(s.sticky_group), s.group, t.src, Family::kV4, http_value);
  if (!key) return candidate;  // an HTTP method without the cookie or header in the request
  std::optional<StickyHit> hit = sticky_->lookup(*key, now_s);
  std::optional<BackendPick> bound;
  if (hit) bound = pool.find_persistent(hit->backend);
  StickyFacts f;
  f.has_entry = hit.has_value();
  f.entry_usable = bound.has_value();
  f.entry_in_backup = bound && bound->backup;
  f.candidate_in_backup = candidate && candidate->backup;
  switch (sticky_decide(s.group.sticky_on_backup, f)) {
    case StickyAction::kUseEntry:
      sticky_->touch(hit->ref, now_s);
      if (sticky_->conn_ref(hit->ref)) *ref = hit->ref;
      return bound;
    case StickyAction::kBindCandidate: {
      if (!candidate) return std::nullopt;
      if (hit) {  // its backend went away: move the binding (unless another worker did)
        BackendId now_bound = sticky_->rebind(hit->ref, hit->backend, candidate->id, now_s);
        if (now_bound != kNoBackend && now_bound != candidate->id) {
          if (auto other = pool.find_persistent(now_bound)) candidate = other;
        }
        if (now_bound != kNoBackend && sticky_->conn_ref(hit->ref)) *ref = hit->ref;
        return candidate;
      }
      StickyHit got;
      if (sticky_->get_or_insert(*key, candidate->id, now_s, &got) == 0) {
        if (got.backend != candidate->id) {  // another worker bound this client first
          if (auto other = pool.find_persistent(got.backend)) candidate = other;
        }
        if (sticky_->conn_ref(got.ref)) *ref = got.ref;
      }
      return candidate;
    }
    case StickyAction::kCandidateOnly:
      return candidate;
  }
  return candidate;
}

void LoadBalancer::release(const ConnXlate& x, uint32_t now_s) {
  if (x.service >= services_.size()) return;
  const Service& s = services_[x.service];
  // An L7 rule may have chosen another pool than the service's: the id says which (pool << 16).
  if (s.cfg.mode == LbMode::kL7 && (x.backend >> 16) < pools_.size())
    pools_[x.backend >> 16]->conn_closed(x.backend);
  else
    s.pool->conn_closed(x.backend);
  if (x.sticky_slot != UINT32_MAX) sticky_->conn_unref(StickyRef{x.sticky_slot, x.sticky_gen}, now_s);
}

// ---- migration --------------------------------------------------------------------------------

std::optional<BackendId> LoadBalancer::backend_at(const BackendPool& pool, be32 addr, be16 port) {
  const PoolSnapshot* s = pool.snapshot();
  for (int farm = 0; s && farm < 2; farm++) {  // the farm, then its backup (not the backup's)
    for (const PoolSnapshot::Backend& b : s->backends)
      if (b.spec.addr == addr && b.spec.port == port) return b.spec.id;
    s = s->backup ? s->backup->snapshot() : nullptr;
  }
  return std::nullopt;
}

std::optional<BackendId> LoadBalancer::service_backend(const Service& s, be32 addr,
                                                       be16 port) const {
  if (s.cfg.mode != LbMode::kL7) return backend_at(*s.pool, addr, port);
  // Mode l7: the rules may route to any pool; the backend is found in the first that has it.
  for (const auto& p : pools_)
    if (std::optional<BackendId> id = backend_at(*p, addr, port)) return id;
  return std::nullopt;
}

std::optional<BackendPick> LoadBalancer::backend_endpoint(BackendId id) const {
  if ((id >> 16) >= pools_.size()) return std::nullopt;
  const PoolSnapshot* s = pools_[id >> 16]->snapshot();
  const PoolSnapshot::Backend* b = s ? s->find(id) : nullptr;
  if (!b) return std::nullopt;
  return BackendPick{id, b->spec.addr, b->spec.port, false};
}

bool LoadBalancer::describe(const ConnXlate& x, uint32_t now_s, XlateHandoff* h) const {
  if (x.service >= services_.size()) return false;
  const Service& s = services_[x.service];
  h->has_lb = true;
  h->vip = s.cfg.vip.as_v4();
  h->vip_port = be16::from_host(s.cfg.port);
  h->backend_addr = x.reply_src;  // the backend answers from its own endpoint
  h->backend_port = x.reply_sport;
  if (x.sticky_slot == UINT32_MAX) return true;
  // The entry the connection holds; gone (removed by the operator) = not carried.
  std::optional<StickyRecord> r = sticky_->read(StickyRef{x.sticky_slot, x.sticky_gen}, now_s);
  if (!r) return true;
  std::optional<BackendPick> b = backend_endpoint(r->backend);
  if (!b) return true;  // its backend left the pool: the destination would bind afresh anyway
  h->has_sticky = true;
  h->sticky_method = r->key.method;
  h->sticky_family = r->key.family;
  h->sticky_prefix_len = r->key.prefix_len;
  h->sticky_value_len = r->key.value_len;
  h->sticky_data = r->key.data;
  h->sticky_backend_addr = b->addr;
  h->sticky_backend_port = b->port;
  h->sticky_age_s = r->age_s;
  h->sticky_idle_s = r->idle_s;
  h->sticky_ttl_s = r->ttl_s;
  return true;
}

std::string LoadBalancer::check_handoff(uint8_t proto, be32 vip, be16 vip_port, be32 backend,
                                        be16 backend_port, be32 local) const {
  auto ep = [](be32 a, be16 p) {
    return IpAddr::v4(a).to_string(Family::kV4) + ":" + std::to_string(p.host());
  };
  const int si = service_of(proto, vip, vip_port);
  if (si < 0) return "lb service " + ep(vip, vip_port) + "/" + std::to_string(proto) + " is not configured here";
  const Service& s = services_[si];
  const bool fullnat = local != be32();
  // An L7 connection's backend side is opened from a local address, as in full NAT.
  if ((s.cfg.mode == LbMode::kFullNat || s.cfg.mode == LbMode::kL7) != fullnat)
    return "lb service " + s.cfg.name + " (" + ep(vip, vip_port) + ") has another mode here";
  if (!service_backend(s, backend, backend_port))
    return "backend " + ep(backend, backend_port) + " is not in " +
           (s.cfg.mode == LbMode::kL7 ? "any pool" : "pool " + s.cfg.pool) + " of lb service " +
           s.cfg.name + " here";
  if (fullnat && std::find(s.local.begin(), s.local.end(), local) == s.local.end())
    return "full-NAT local address " + IpAddr::v4(local).to_string(Family::kV4) +
           " is not one of lb service " + s.cfg.name + "'s here";
  return {};
}

bool LoadBalancer::adopt(uint16_t worker, const Tuple& t, const XlateHandoff& h, uint32_t now_s,
                         ConnXlate* x, std::string* why) {
  if (!h.has_lb) {
    *why = "load-balanced connection without its service";
    return false;
  }
  const bool fullnat = x->kind == XlateKind::kLbFullNat;
  *why = check_handoff(t.proto, h.vip, h.vip_port, h.backend_addr, h.backend_port,
                       fullnat ? x->reply_dst : be32());
  if (!why->empty()) return false;
  const int si = service_of(t.proto, h.vip, h.vip_port);
  const Service& s = services_[si];
  if (fullnat && workers_ > 1 &&
      port_owner(x->reply_dport.host(), local_layout_, workers_) != worker) {
    *why = "full-NAT local port " + std::to_string(x->reply_dport.host()) +
           " belongs to another worker here than the connection (worker counts differ)";
    return false;
  }
  const BackendId id = *service_backend(s, h.backend_addr, h.backend_port);
  StickyHit hit;
  if (h.has_sticky) {
    if (s.sticky_group < 0 || static_cast<uint8_t>(s.group.method) != h.sticky_method ||
        (h.sticky_method == static_cast<uint8_t>(StickyKeyMethod::kSourcePrefix) &&
         h.sticky_family == static_cast<uint8_t>(Family::kV4) &&
         s.group.prefix_len_v4 != h.sticky_prefix_len)) {
      *why = "lb service " + s.cfg.name + " has no sticky group of that method here";
      return false;
    }
    StickyRecord r;
    r.key.group = static_cast<uint16_t>(s.sticky_group);
    r.key.method = h.sticky_method;
    r.key.family = h.sticky_family;
    r.key.prefix_len = h.sticky_prefix_len;
    r.key.value_len = h.sticky_value_len;
    r.key.data = h.sticky_data;
    std::optional<BackendId> sb = service_backend(s, h.sticky_backend_addr, h.sticky_backend_port);
    if (!sb) {
      *why = "sticky backend " + IpAddr::v4(h.sticky_backend_addr).to_string(Family::kV4) + ":" +
             std::to_string(h.sticky_backend_port.host()) + " is not in pool " + s.cfg.pool + " here";
      return false;
    }
    r.backend = *sb;
    r.age_s = h.sticky_age_s;
    r.idle_s = h.sticky_idle_s;
    r.ttl_s = h.sticky_ttl_s;
    if (int rc = sticky_->adopt(r, now_s, &hit); rc != 0) {
      *why = "sticky table: " + std::string(rc == -ENOSPC ? "full" : "busy");
      return false;
    }
  }
  x->service = static_cast<uint16_t>(si);
  x->backend = id;
  x->sticky_slot = hit.ref.slot;
  x->sticky_gen = hit.ref.gen;
  if (s.cfg.mode == LbMode::kL7)
    pools_[id >> 16]->conn_opened(id);  // as decide_l7: the pool the request was routed to
  else
    s.pool->conn_opened(id);
  return true;
}

void LoadBalancer::drop_unused_sticky(StickyRef ref) {
  std::optional<StickyRecord> r = sticky_->read(ref, 0);
  if (r && r->key.method == static_cast<uint8_t>(StickyKeyMethod::kSourceAddress))
    sticky_->remove_if_unused(ref);
}

uint32_t LoadBalancer::l7_max_head() const {
  uint32_t m = 0;
  for (const Service& s : services_)
    if (s.cfg.mode == LbMode::kL7) m = std::max(m, s.cfg.max_request_head);
  return m;
}

}  // namespace baton
