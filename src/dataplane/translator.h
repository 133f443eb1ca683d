// SPDX-License-Identifier: Apache-2.0
//
// The translation stage's slow path: for the first packet of a new connection, decide whether
// and how it is translated (NAT in src/nat, load balancing in src/lb) and express the decision
// as the connection's reply tuple (nat/conn_xlate.h). The fast path never comes here.
//
// Order of decisions for a new connection with original tuple S:s -> D:d (first match wins):
//   1. D:d/proto is a load-balanced service (VIP)   -> backend (sticky, else Maglev)
//   2. D:d/proto is a port forward                  -> D rewritten to the inside host
//   3. D is a static NAT outside address            -> D rewritten to the inside address
//   4. D is an SNAT pool address                    -> D rewritten by the mapping that owns D:d
//                                                      (RFC 4787 filtering decides), and, when
//                                                      S is inside too, S as well (hairpinning)
//   5. S is a static NAT inside address             -> S rewritten to its outside address
//   6. S matches an SNAT rule and D is not excluded -> S:s rewritten through a mapping
//   otherwise the connection is not translated.
//
// Threads: decide()/release() run on the worker that owns the connection, with that worker's
// id; the shared parts (rules, static maps) are read-only after create().
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <unordered_map>
#include <vector>

#include "common/net_types.h"
#include "config/config.h"
#include "dataplane/drop_reason.h"
#include "nat/conn_xlate.h"

namespace baton {

struct XlateVerdict {
  enum Kind : uint8_t { kPass, kTranslate, kDrop } kind = kPass;
  DropReason reason = DropReason::kCount;
};

class Translator {
 public:
  static std::unique_ptr<Translator> create(const Config& cfg, uint16_t workers, std::string* err);
  ~Translator();

  bool enabled() const { return enabled_; }
  // Addresses that are ours to translate (VIPs, pool, static and forwarded outside addresses,
  // full-NAT local addresses): the router answers ARP for them and routes their packets after
  // translation.
  const std::vector<be32>& service_addresses() const { return service_addrs_; }
  bool is_service_address(be32 a) const;

  // Orig tuple t (IPv4; TCP, UDP or ICMP echo request). On kTranslate *x is the reply tuple and
  // bookkeeping (mapping reference, backend). `taken(k)` says whether a reply key is already
  // used by another connection (the owner's reply index), for port choices.
  template <class TakenFn>
  XlateVerdict decide(uint16_t worker, const Tuple& t, uint32_t now_s, ConnXlate* x,
                      TakenFn&& taken);
  // The connection that held x is gone.
  void release(uint16_t worker, const ConnXlate& x, uint8_t proto);

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

  bool enabled_ = false;
  std::vector<be32> service_addrs_;  // sorted by raw value
  std::unordered_map<ForwardKey, Endpoint, ForwardHash> forwards_;
  std::unordered_map<uint32_t, be32> static_out_;  // outside raw -> inside
  std::unordered_map<uint32_t, be32> static_in_;   // inside raw -> outside
};

// ---- inline ------------------------------------------------------------------------------

template <class TakenFn>
XlateVerdict Translator::decide(uint16_t worker, const Tuple& t, uint32_t now_s, ConnXlate* x,
                                TakenFn&& taken) {
  (void)worker, (void)now_s, (void)taken;
  if (t.family != Family::kV4) return {};
  const be32 s = t.src.as_v4(), d = t.dst.as_v4();
  auto reply = [&](be32 rsrc, be16 rsport, be32 rdst, be16 rdport, XlateKind k) {
    x->reply_src = rsrc;
    x->reply_sport = rsport;
    x->reply_dst = rdst;
    x->reply_dport = rdport;
    x->kind = k;
    return XlateVerdict{XlateVerdict::kTranslate};
  };
  if (t.proto == 6 || t.proto == 17) {
    auto f = forwards_.find(ForwardKey{t.proto, d.raw(), t.dport.raw()});
    if (f != forwards_.end())
      return reply(f->second.addr, f->second.port, s, t.sport, XlateKind::kDnat);
  }
  if (auto o = static_out_.find(d.raw()); o != static_out_.end())
    return reply(o->second, t.dport, s, t.sport, XlateKind::kStatic);
  if (auto i = static_in_.find(s.raw()); i != static_in_.end())
    return reply(d, t.dport, i->second, t.sport, XlateKind::kStatic);
  return {};
}

}  // namespace baton
