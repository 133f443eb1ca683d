// SPDX-License-Identifier: Apache-2.0
//
// The translation stage's slow path: for the first packet of a new connection, decide whether
// and how it is translated (NAT in src/nat, load balancing in src/lb) and express the decision
// as the connection's reply tuple (nat/conn_xlate.h). The fast path never comes here.
//
// Order of decisions for a new connection with original tuple S:s -> D:d (first match wins):
//   1. D:d/proto is a load-balanced service (VIP)   -> backend (sticky, else Maglev)
//   2. D:d/proto is a port forward                  -> D:d rewritten to the inside host
//   3. D is a static NAT outside address            -> D rewritten to the inside address
//   4. D is an SNAT pool address                    -> D:d rewritten by the mapping that owns it,
//                                                      if RFC 4787 filtering lets S:s in
//   5. S is a static NAT inside address             -> S rewritten to its outside address
//   6. S matches an SNAT rule and D is not excluded -> S:s rewritten through a mapping
//   otherwise the connection is not translated. After 2-4, a source that 5 or 6 would
//   translate is translated as well (hairpinning, RFC 4787 REQ-9: two inside hosts talk
//   through their outside addresses).
//
// Owners with several workers (owner()): every packet of a translated connection, both
// directions, must reach one worker, and a dynamic mapping must be made by the worker whose
// port blocks it takes its port from. So the owner is computed from what the translation keeps
// fixed, before any table is read:
//   an SNAT pool address:port (either end)          -> port_owner(port): the port's block
//   a static NAT inside or outside address          -> inside_owner(inside address)
//   a port-forward outside endpoint or its target   -> inside_owner(inside address)
//   S or D an SNAT source, the other end not excluded -> inside_owner(that source)
//   anything else                                    -> FlowKey::owner(workers) (symmetric)
// A dynamic mapping is thus always made on inside_owner(S), whose allocator hands out only
// ports p with port_owner(p) == inside_owner(S): replies find the same worker.
//
// Threads: decide()/release()/age() run on the worker that owns the connection, with that
// worker's id; owner() on any worker; the rules and static maps are read-only after create().
#pragma once

#include <rte_rcu_qsbr.h>

#include <cstdint>
#include <memory>
#include <string>
#include <unordered_map>
#include <unordered_set>
#include <vector>

#include "common/net_types.h"
#include "config/config.h"
#include "dataplane/drop_reason.h"
#include "lb/load_balancer.h"
#include "nat/address_roles.h"
#include "nat/conn_xlate.h"
#include "nat/nat_mapping_table.h"
#include "nat/port_allocator.h"

namespace baton {

struct XlateVerdict {
  enum Kind : uint8_t { kPass, kTranslate, kDrop } kind = kPass;
  DropReason reason = DropReason::kCount;
};

class Translator {
 public:
  static std::unique_ptr<Translator> create(const Config& cfg, uint16_t workers,
                                            rte_rcu_qsbr* rcu, std::string* err);
  ~Translator();

  bool enabled() const { return enabled_; }
  // Control-side threads of the load balancer (health checks, sticky aging).
  bool start(std::string* err) { return !lb_ || lb_->start(err); }
  void stop() {
    if (lb_) lb_->stop();
  }
  LoadBalancer* lb() { return lb_.get(); }
  // Addresses that are ours to translate (VIPs, pool, static and forwarded outside addresses,
  // full-NAT local addresses): the router answers ARP for them and routes their packets after
  // translation.
  const std::vector<be32>& service_addresses() const { return service_addrs_; }
  bool is_service_address(be32 a) const { return roles_.has(a, AddressRoles::kService); }
  // Whether a packet with tuple t is probably the reply direction of a translated connection:
  // sent to an SNAT pool or full-NAT local address, or by a mode-nat backend or port-forward
  // target. The worker then looks it up in the translation index first. A hint only: a
  // backend's own connections and static NAT are looked up the other way round first, and
  // either order finds the same connection.
  bool expects_reply(const Tuple& t) const {
    return t.family == Family::kV4 && ((roles_.roles(t.dst.as_v4()) & AddressRoles::kReplyDst) ||
                                       (roles_.roles(t.src.as_v4()) & AddressRoles::kReplySrc));
  }

  // The worker that owns tuple t's connection (see the header comment), or -1 when the
  // default symmetric owner applies.
  int owner(const Tuple& t) const;

  // Orig tuple t (IPv4; TCP, UDP or ICMP echo request). On kTranslate *x is the reply tuple and
  // its bookkeeping (mapping reference, backend). `taken(reply)` says whether a reply tuple is
  // already used by another connection of the calling worker.
  template <class TakenFn>
  XlateVerdict decide(uint16_t worker, const Tuple& t, uint32_t now_s, ConnXlate* x,
                      TakenFn&& taken);
  // The connection that held x is gone.
  void release(uint16_t worker, const ConnXlate& x, uint8_t proto, uint32_t now_s);
  // Mapping expiry on the owner, a little per call.
  uint32_t age(uint16_t worker, uint32_t now_s, uint32_t budget);

  // ---- Migration (src/migrate, nat/conn_xlate.h XlateHandoff) --------------------------------
  // Source, any core online in RCU: what stands behind connection x of worker `worker`'s shard
  // (its dynamic mapping, LB service, backend and sticky entry) into *h. False when x holds a
  // reference that cannot be read (it does not travel then).
  bool describe(uint16_t worker, const ConnXlate& x, uint32_t now_s, XlateHandoff* h) const;
  // Destination, on the worker `worker` that owns the connection with original tuple t
  // (conn_owner): resolves h to this instance's references into *x (whose reply tuple and kind
  // are the record's). SNAT/hairpin: the mapping of t's source is found or created with exactly
  // the carried outside endpoint (its port block leased to the same inside host, or free and
  // then leased to it) and gets the connection's session; LB: LoadBalancer::adopt. False with
  // *why when this instance cannot hold it (pool address unknown here, port held by another
  // host, policy differs, service or backend unknown ...); nothing is held then.
  bool adopt(uint16_t worker, const Tuple& t, const XlateHandoff& h, uint32_t now_s, ConnXlate* x,
             std::string* why);
  // PREPARE's check of one dynamic mapping a VM's connections hold (proto, inside host, outside
  // endpoint): empty when this instance can take it, else the reason. Any core.
  std::string check_mapping(uint8_t proto, be32 inside, be32 outside, be16 outside_port) const;
  // After a VM's connections are gone (deleted on the worker, rolled back or handed off):
  // the mappings they held that have no session left are removed (their ports go back at
  // once rather than after the mapping timeout), and their sticky entries keyed by the VM's
  // own address that no connection uses (LoadBalancer::drop_unused_sticky). `held`: the
  // connections' records as they were.
  void drop_unused(uint16_t worker, const std::vector<ConnXlate>& held, uint32_t now_s);

  // ---- Read side (API, metrics; any core online in RCU) --------------------------------------
  struct SnatState {
    SnatRule cfg;
    PortBlockLayout layout;
    std::vector<be32> pool;                                // sorted by raw value
    std::vector<std::unique_ptr<PortAllocator>> alloc;     // per worker
    std::vector<std::unique_ptr<NatMappingTable>> maps;    // per worker
  };
  const std::vector<SnatState>& snat_rules() const { return snat_; }

 private:
  Translator() = default;
  struct ForwardKey {
    uint8_t proto;
    uint32_t addr;  // be32 raw
    uint16_t port;  // be16 raw
    bool operator==(const ForwardKey&) const = default;
  };
  struct ForwardHash {
    size_t operator()(const ForwardKey& k) const {
      return (uint64_t{k.addr} << 24 ^ uint64_t{k.port} << 8 ^ k.proto) * 0x9e3779b97f4a7c15ull;
    }
  };
  struct Endpoint {
    be32 addr;
    be16 port;
  };

  // SNAT rule whose pool holds a, or -1.
  int pool_rule(be32 a) const;
  // SNAT rule translating connections from s to d, or -1.
  int source_rule(be32 s, be32 d) const;
  // Source translation of S:s (static or SNAT) for a new connection to D:d, into x's
  // reply_dst/reply_dport. kPass when S is not translated.
  XlateVerdict translate_source(uint16_t worker, const Tuple& t, uint32_t now_s, ConnXlate* x);

  uint16_t workers_ = 1;
  bool enabled_ = false;
  bool hairpinning_ = true;
  std::vector<be32> service_addrs_;  // sorted by raw value
  AddressRoles roles_;               // the same and more, for lookups
  std::unordered_map<ForwardKey, Endpoint, ForwardHash> forwards_;
  std::unordered_set<ForwardKey, ForwardHash> forward_targets_;  // (proto, inside, port)
  std::unordered_map<uint32_t, be32> static_out_;  // outside raw -> inside
  std::unordered_map<uint32_t, be32> static_in_;   // inside raw -> outside
  std::vector<SnatState> snat_;
  std::unique_ptr<LoadBalancer> lb_;
};

// The worker that owns the connection with tuple t (either direction) and canonical key k:
// Translator::owner when a translation rule covers t, else the symmetric hash. The packet path
// and the migration installer both ask this, so an installed entry sits where its packets go.
inline uint16_t conn_owner(const Translator* tr, const Tuple& t, const FlowKey& k,
                           uint16_t workers) {
  if (workers < 2) return 0;
  const int xo = tr ? tr->owner(t) : -1;
  return xo >= 0 ? static_cast<uint16_t>(xo) : k.owner(workers);
}

// ---- inline ------------------------------------------------------------------------------

template <class TakenFn>
XlateVerdict Translator::decide(uint16_t worker, const Tuple& t, uint32_t now_s, ConnXlate* x,
                                TakenFn&& taken) {
  if (t.family != Family::kV4) return {};
  const be32 s = t.src.as_v4(), d = t.dst.as_v4();
  if (lb_) {
    switch (lb_->decide(worker, t, now_s, x, taken)) {
      case LoadBalancer::Verdict::kTranslate: return {XlateVerdict::kTranslate};
      case LoadBalancer::Verdict::kNoBackend: return {XlateVerdict::kDrop, DropReason::kLbNoBackend};
      case LoadBalancer::Verdict::kNotMine: break;
    }
  }
  // The responder's side of the reply tuple (its source), then the initiator's side.
  x->reply_dst = s;
  x->reply_dport = t.sport;
  bool dst_done = true;
  if (t.proto == 6 || t.proto == 17) {
    if (auto f = forwards_.find(ForwardKey{t.proto, d.raw(), t.dport.raw()}); f != forwards_.end()) {
      x->reply_src = f->second.addr;
      x->reply_sport = f->second.port;
      x->kind = XlateKind::kDnat;
    } else {
      dst_done = false;
    }
  } else {
    dst_done = false;
  }
  if (!dst_done) {
    if (auto o = static_out_.find(d.raw()); o != static_out_.end()) {
      x->reply_src = o->second;
      x->reply_sport = t.dport;
      x->kind = XlateKind::kStatic;
      dst_done = true;
    } else if (int r = pool_rule(d); r >= 0) {
      NatMappingTable& mt = *snat_[r].maps[worker];
      int32_t slot = mt.lookup_outside(t.proto, d, t.dport);
      if (slot < 0) return {XlateVerdict::kDrop, DropReason::kNatNoMapping};
      if (!mt.inbound_allowed(static_cast<uint32_t>(slot), s, t.sport))
        return {XlateVerdict::kDrop, DropReason::kNatFiltered};  // RFC 4787 section 5
      const NatMapping& mp = mt.mapping(static_cast<uint32_t>(slot));
      x->reply_src = mp.inside_addr;
      x->reply_sport = t.proto == 1 ? mp.inside_port : mp.inside_port_for(t.dport);
      if (t.proto == 1) x->reply_dport = mp.inside_port;  // ICMP: one identifier, both "ports"
      x->kind = XlateKind::kSnat;
      x->nat_rule = static_cast<uint8_t>(r);
      x->mapping = static_cast<uint32_t>(slot);
      mt.session_ref(static_cast<uint32_t>(slot), now_s);
      dst_done = true;
    }
  }
  if (dst_done) {
    if (!hairpinning_ || x->kind == XlateKind::kNone) return {XlateVerdict::kTranslate};
    // Hairpinning: an inside source reaching an outside address of ours is translated too,
    // so that the inside destination answers through us, not to the source directly.
    ConnXlate src = *x;
    src.mapping = kNoMapping;
    src.nat_rule = 0xff;
    XlateVerdict v = translate_source(worker, t, now_s, &src);
    if (v.kind == XlateVerdict::kDrop) {
      release(worker, *x, t.proto, now_s);
      return v;
    }
    if (v.kind == XlateVerdict::kTranslate) {
      // One mapping reference per connection: the source's, whose outside port is in the
      // reply tuple. The destination mapping only found the inside host; its reference goes.
      release(worker, *x, t.proto, now_s);
      *x = src;
      x->kind = XlateKind::kHairpin;
    }
    return {XlateVerdict::kTranslate};
  }
  x->reply_src = d;
  x->reply_sport = t.dport;
  return translate_source(worker, t, now_s, x);
}

}  // namespace baton
