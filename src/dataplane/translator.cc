// SPDX-License-Identifier: Apache-2.0
#include "dataplane/translator.h"

#include <algorithm>

#include "dataplane/vm_table.h"

namespace baton {
namespace {

bool raw_less(be32 a, be32 b) { return a.raw() < b.raw(); }

bool covers(const Prefix& p, be32 a) { return p.contains(IpAddr::v4(a), Family::kV4); }

DropReason drop_of(NatError e) {
  switch (e) {
    case NatError::kHostLimit:
    case NatError::kPoolExhausted:
    case NatError::kOutsideInUse:
      return DropReason::kNatPortsExhausted;
    default:
      return DropReason::kNatTableFull;
  }
}

}  // namespace

std::unique_ptr<Translator> Translator::create(const Config& cfg, uint16_t workers,
                                               rte_rcu_qsbr* rcu, std::string* err) {
  std::unique_ptr<Translator> t(new Translator());
  t->workers_ = workers;
  const NatConfig& nat = cfg.nat;
  t->hairpinning_ = nat.hairpinning;
  for (const StaticNat& s : nat.static_nat) {
    t->static_out_[s.outside.as_v4().raw()] = s.inside.as_v4();
    t->static_in_[s.inside.as_v4().raw()] = s.outside.as_v4();
    t->service_addrs_.push_back(s.outside.as_v4());
  }
  for (const PortForward& f : nat.port_forward) {
    const Endpoint in{f.inside.as_v4(), be16::from_host(f.inside_port)};
    t->forwards_[ForwardKey{f.proto, f.outside.as_v4().raw(), be16::from_host(f.outside_port).raw()}] = in;
    t->forward_targets_.insert(ForwardKey{f.proto, in.addr.raw(), in.port.raw()});
    t->service_addrs_.push_back(f.outside.as_v4());
  }
  static std::atomic<int> seq{0};
  const int n = seq++;
  for (size_t r = 0; r < nat.snat.size(); r++) {
    const SnatRule& rc = nat.snat[r];
    SnatState rule;
    rule.cfg = rc;
    rule.layout = PortBlockLayout{rc.ports.lo, rc.ports.hi, rc.block_size};
    if (std::string e = rule.layout.check(); !e.empty()) {
      *err = "snat rule " + rc.name + ": " + e;
      return nullptr;
    }
    for (const IpAddr& a : rc.pool) {
      rule.pool.push_back(a.as_v4());
      t->service_addrs_.push_back(a.as_v4());
    }
    std::sort(rule.pool.begin(), rule.pool.end(), raw_less);
    for (uint16_t w = 0; w < workers; w++) {
      PortAllocator::Params ap;
      ap.addresses = rule.pool;
      ap.layout = rule.layout;
      ap.max_blocks_per_host = rc.max_blocks_per_host;
      ap.worker = w;
      ap.workers = workers;
      auto alloc = PortAllocator::create(ap, err);
      if (!alloc) return nullptr;
      NatMappingTable::Params mp;
      mp.name = "nm" + std::to_string(n) + "_" + std::to_string(r) + "_" + std::to_string(w);
      mp.capacity = std::max<uint32_t>(64, nat.capacity);
      mp.max_vms = kMaxVms - 1;
      mp.rcu = rcu;
      mp.policy.mapping = static_cast<MappingBehavior>(rc.mapping);
      mp.policy.filtering = static_cast<FilteringBehavior>(rc.filtering);
      mp.timeouts.tcp_s = mp.timeouts.udp_s = nat.mapping_timeout_s;
      mp.allocator = alloc.get();
      auto table = NatMappingTable::create(mp, err);
      if (!table) return nullptr;
      rule.alloc.push_back(std::move(alloc));
      rule.maps.push_back(std::move(table));
    }
    t->snat_.push_back(std::move(rule));
  }
  t->lb_ = LoadBalancer::create(cfg, workers, rcu, err);
  if (!t->lb_) return nullptr;
  for (be32 a : t->lb_->addresses()) t->service_addrs_.push_back(a);
  std::sort(t->service_addrs_.begin(), t->service_addrs_.end(), raw_less);
  t->service_addrs_.erase(std::unique(t->service_addrs_.begin(), t->service_addrs_.end()),
                          t->service_addrs_.end());
  for (be32 a : t->service_addrs_) t->roles_.add(a, AddressRoles::kService);
  for (const SnatState& r : t->snat_)
    for (be32 a : r.pool) t->roles_.add(a, AddressRoles::kReplyDst);
  for (be32 a : t->lb_->local_addresses()) t->roles_.add(a, AddressRoles::kReplyDst);
  for (be32 a : t->lb_->nat_backend_addresses()) t->roles_.add(a, AddressRoles::kReplySrc);
  for (const ForwardKey& f : t->forward_targets_)
    t->roles_.add(be32::from_raw(f.addr), AddressRoles::kReplySrc);
  t->enabled_ = cfg.nat.enabled() || cfg.lb.enabled();
  return t;
}

Translator::~Translator() {
  // Tables before the allocators they hand ports back to.
  for (SnatState& r : snat_) r.maps.clear();
}

int Translator::pool_rule(be32 a) const {
  for (size_t r = 0; r < snat_.size(); r++)
    if (std::binary_search(snat_[r].pool.begin(), snat_[r].pool.end(), a, raw_less))
      return static_cast<int>(r);
  return -1;
}

int Translator::source_rule(be32 s, be32 d) const {
  for (size_t r = 0; r < snat_.size(); r++) {
    const SnatRule& c = snat_[r].cfg;
    if (!covers(c.source, s)) continue;
    bool excluded = c.exclude.empty() ? covers(c.source, d)
                                      : std::any_of(c.exclude.begin(), c.exclude.end(),
                                                    [&](const Prefix& p) { return covers(p, d); });
    if (!excluded) return static_cast<int>(r);
  }
  return -1;
}

XlateVerdict Translator::translate_source(uint16_t worker, const Tuple& t, uint32_t now_s,
                                          ConnXlate* x) {
  const be32 s = t.src.as_v4(), d = t.dst.as_v4();
  if (auto i = static_in_.find(s.raw()); i != static_in_.end()) {
    x->reply_dst = i->second;
    if (x->kind == XlateKind::kNone) x->kind = XlateKind::kStatic;
    return {XlateVerdict::kTranslate};
  }
  const int r = source_rule(s, d);
  if (r < 0) return x->kind == XlateKind::kNone ? XlateVerdict{} : XlateVerdict{XlateVerdict::kTranslate};
  NatMappingTable& mt = *snat_[r].maps[worker];
  int32_t slot = mt.lookup_inside(t.proto, s, t.sport, d, t.dport);
  if (slot < 0) {
    NatMappingRequest req;
    req.type = NatType::kDynamic;
    req.proto = t.proto;
    req.inside_addr = s;
    req.inside_port = t.sport;
    req.remote_addr = d;
    req.remote_port = t.dport;
    NatCreateResult res = mt.create(req, now_s);
    if (!res.ok()) return {XlateVerdict::kDrop, drop_of(res.error)};
    slot = res.slot;
  } else {
    mt.note_outbound(static_cast<uint32_t>(slot), d, t.dport, now_s);  // filtering memory
  }
  mt.session_ref(static_cast<uint32_t>(slot), now_s);
  const NatMapping& mp = mt.mapping(static_cast<uint32_t>(slot));
  x->reply_dst = mp.outside_addr;
  x->reply_dport = mp.outside_port;
  if (t.proto == 1) x->reply_sport = mp.outside_port;  // ICMP: one identifier, both "ports"
  x->mapping = static_cast<uint32_t>(slot);
  x->nat_rule = static_cast<uint8_t>(r);
  if (x->kind == XlateKind::kNone) x->kind = XlateKind::kSnat;
  return {XlateVerdict::kTranslate};
}

void Translator::release(uint16_t worker, const ConnXlate& x, uint8_t proto, uint32_t now_s) {
  (void)proto;
  if (x.service != kNoService) return lb_->release(x, now_s);
  if (x.mapping != kNoMapping && x.nat_rule < snat_.size())
    snat_[x.nat_rule].maps[worker]->session_unref(x.mapping, now_s);
}

uint32_t Translator::age(uint16_t worker, uint32_t now_s, uint32_t budget) {
  uint32_t n = 0;
  for (SnatState& r : snat_) n += r.maps[worker]->expire(now_s, budget);
  return n;
}

// ---- migration ----------------------------------------------------------------------------------

bool Translator::describe(uint16_t worker, const ConnXlate& x, uint32_t now_s,
                          XlateHandoff* h) const {
  *h = XlateHandoff{};
  if (x.service != kNoService) return lb_->describe(x, now_s, h);
  if (x.mapping == kNoMapping) return x.kind != XlateKind::kSnat;
  if (x.nat_rule >= snat_.size() || worker >= snat_[x.nat_rule].maps.size()) return false;
  const NatMappingTable& mt = *snat_[x.nat_rule].maps[worker];
  NatMapping m;
  if (!mt.read(x.mapping, m)) return false;
  h->has_mapping = true;
  h->mapping_behavior = static_cast<uint8_t>(mt.policy().mapping);
  h->filtering = static_cast<uint8_t>(mt.policy().filtering);
  h->inside_addr = m.inside_addr;
  h->inside_port = m.inside_port;
  h->outside_addr = m.outside_addr;
  h->outside_port = m.outside_port;
  return true;
}

std::string Translator::check_mapping(uint8_t proto, be32 inside, be32 outside,
                                      be16 outside_port) const {
  const std::string ep = IpAddr::v4(outside).to_string(Family::kV4) + ":" +
                         std::to_string(outside_port.host()) + "/" + std::to_string(proto);
  const int r = pool_rule(outside);
  if (r < 0) return "snat pool address " + IpAddr::v4(outside).to_string(Family::kV4) + " is in no pool here";
  const SnatState& rule = snat_[r];
  const int w = port_owner(outside_port.host(), rule.layout, workers_);
  if (w < 0) return "snat outside " + ep + " is outside rule " + rule.cfg.name + "'s port range here";
  std::optional<be32> holder = rule.alloc[w]->lessee(outside, outside_port);
  if (holder && *holder != inside)
    return "snat outside " + ep + ": its port block is leased to " +
           IpAddr::v4(*holder).to_string(Family::kV4) + " here";
  return {};
}

bool Translator::adopt(uint16_t worker, const Tuple& t, const XlateHandoff& h, uint32_t now_s,
                       ConnXlate* x, std::string* why) {
  switch (x->kind) {
    case XlateKind::kStatic:
    case XlateKind::kDnat:
      return true;  // nothing but the reply tuple
    case XlateKind::kLbNat:
    case XlateKind::kLbFullNat:
      if (!lb_) {
        *why = "no load balancer here";
        return false;
      }
      return lb_->adopt(worker, t, h, now_s, x, why);
    case XlateKind::kSnat:
    case XlateKind::kHairpin:
      break;
    default:
      *why = "translation kind not supported here";
      return false;
  }
  if (!h.has_mapping) {
    if (x->kind == XlateKind::kHairpin) return true;  // a statically mapped source
    *why = "snat connection without its mapping";
    return false;
  }
  const std::string ep = IpAddr::v4(h.outside_addr).to_string(Family::kV4) + ":" +
                         std::to_string(h.outside_port.host()) + "/" + std::to_string(t.proto);
  // The mapping is the one of the connection's source (RFC 4787: the inside endpoint), and its
  // outside endpoint is where the reply tuple points.
  if (t.src.as_v4() != h.inside_addr || h.outside_addr != x->reply_dst ||
      (t.proto != 1 && (t.sport != h.inside_port || h.outside_port != x->reply_dport))) {
    *why = "snat mapping does not match its connection";
    return false;
  }
  *why = check_mapping(t.proto, h.inside_addr, h.outside_addr, h.outside_port);
  if (!why->empty()) return false;
  const int r = pool_rule(h.outside_addr);
  NatMappingTable& mt = *snat_[r].maps[worker];
  if (static_cast<uint8_t>(mt.policy().mapping) != h.mapping_behavior ||
      static_cast<uint8_t>(mt.policy().filtering) != h.filtering) {
    *why = "snat rule " + snat_[r].cfg.name + " has another mapping or filtering behaviour here";
    return false;
  }
  const be32 d = t.dst.as_v4();
  int32_t slot = mt.lookup_inside(t.proto, h.inside_addr, h.inside_port, d, t.dport);
  if (slot >= 0) {
    const NatMapping& m = mt.mapping(static_cast<uint32_t>(slot));
    if (m.outside_addr != h.outside_addr || m.outside_port != h.outside_port) {
      *why = "inside endpoint " + IpAddr::v4(h.inside_addr).to_string(Family::kV4) + ":" +
             std::to_string(h.inside_port.host()) + " is mapped to another outside endpoint here";
      return false;
    }
    mt.note_outbound(static_cast<uint32_t>(slot), d, t.dport, now_s);
  } else {
    NatMappingRequest req;
    req.type = NatType::kDynamic;
    req.proto = t.proto;
    req.inside_addr = h.inside_addr;
    req.inside_port = h.inside_port;
    req.remote_addr = d;
    req.remote_port = t.dport;
    req.outside_addr = h.outside_addr;
    req.outside_port = h.outside_port;
    req.fixed_outside = true;
    NatCreateResult res = mt.create(req, now_s);
    if (!res.ok()) {
      *why = res.error == NatError::kOutsideInUse
                 ? "snat outside " + ep + " is taken here (by another host, or not this worker's port)"
                 : "snat outside " + ep + ": " + nat_error_name(res.error);
      return false;
    }
    slot = res.slot;
  }
  mt.session_ref(static_cast<uint32_t>(slot), now_s);
  x->nat_rule = static_cast<uint8_t>(r);
  x->mapping = static_cast<uint32_t>(slot);
  return true;
}

void Translator::drop_unused(uint16_t worker, const std::vector<ConnXlate>& held, uint32_t now_s) {
  std::vector<std::pair<uint8_t, uint32_t>> maps;
  for (const ConnXlate& x : held) {
    if (x.service != kNoService && x.sticky_slot != UINT32_MAX)
      lb_->drop_unused_sticky(StickyRef{x.sticky_slot, x.sticky_gen});
    else if (x.mapping != kNoMapping && x.nat_rule < snat_.size())
      maps.emplace_back(x.nat_rule, x.mapping);
  }
  std::sort(maps.begin(), maps.end());
  maps.erase(std::unique(maps.begin(), maps.end()), maps.end());
  for (auto [r, slot] : maps) {
    NatMappingTable& mt = *snat_[r].maps[worker];
    if (mt.live(slot) && mt.mapping(slot).sessions == 0) mt.remove(slot, now_s);
  }
}

int Translator::owner(const Tuple& t) const {
  if (t.family != Family::kV4 || workers_ < 2) return -1;
  if (int w = lb_->owner(t); w >= 0) return w;
  const be32 s = t.src.as_v4(), d = t.dst.as_v4();
  for (const SnatState& r : snat_) {
    const bool dpool = std::binary_search(r.pool.begin(), r.pool.end(), d, raw_less);
    const bool spool = !dpool && std::binary_search(r.pool.begin(), r.pool.end(), s, raw_less);
    if (dpool || spool) {
      int w = port_owner((dpool ? t.dport : t.sport).host(), r.layout, workers_);
      if (w >= 0) return w;
    }
  }
  if (auto o = static_out_.find(d.raw()); o != static_out_.end()) return inside_owner(o->second, workers_);
  if (auto o = static_out_.find(s.raw()); o != static_out_.end()) return inside_owner(o->second, workers_);
  if (static_in_.count(s.raw())) return inside_owner(s, workers_);
  if (static_in_.count(d.raw())) return inside_owner(d, workers_);
  if (t.proto == 6 || t.proto == 17) {
    if (auto f = forwards_.find(ForwardKey{t.proto, d.raw(), t.dport.raw()}); f != forwards_.end())
      return inside_owner(f->second.addr, workers_);
    if (auto f = forwards_.find(ForwardKey{t.proto, s.raw(), t.sport.raw()}); f != forwards_.end())
      return inside_owner(f->second.addr, workers_);
    if (forward_targets_.count(ForwardKey{t.proto, s.raw(), t.sport.raw()})) return inside_owner(s, workers_);
    if (forward_targets_.count(ForwardKey{t.proto, d.raw(), t.dport.raw()})) return inside_owner(d, workers_);
  }
  if (source_rule(s, d) >= 0) return inside_owner(s, workers_);
  if (source_rule(d, s) >= 0) return inside_owner(d, workers_);
  return -1;
}

}  // namespace baton
