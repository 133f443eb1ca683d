// SPDX-License-Identifier: Apache-2.0
//
// LoadBalancer: the L4 services of the configuration at run time: each service's backend pool
// (Maglev, lb/backend_pool.h), the shared sticky table (lb/sticky_table.h), the health checker
// (lb/health_checker.h) that marks backends, and a control thread that ages sticky entries and
// frees retired pool snapshots after an RCU grace period.
//
// Theory of operation. For the first packet of a connection to a VIP (proto, address, port),
// decide() picks the backend: the sticky entry of the client if the service has a sticky group
// and the entry's backend may take persistent connections, else the pool's Maglev pick (over
// the 5-tuple hash), bound in the sticky table as the seed's rules say (sticky_decide). The
// decision becomes the connection's reply tuple:
//   mode nat      reply = backend:port -> client:port     (the backend routes back through us)
//   mode fullnat  reply = backend:port -> local:lport     (the backend needs no route back)
// and lives in the connection's ConnXlate; the pool never re-maps an existing connection.
// The local port of full NAT is chosen among the ports whose block belongs to the deciding
// worker (port_owner), so that the backend's answers reach that worker; a port is free when
// its reply tuple is in no connection (the caller's `taken`), as Linux's nf_nat_used_tuple.
//
// Owners (several workers): a VIP connection is owned by inside_owner(client); a backend's
// answer in mode nat (source = a backend endpoint of a nat service) by inside_owner(its
// destination, the client); in full NAT by port_owner(local port).
//
// Mode l7 (lb/l7_proxy.h): the first packet decides nothing; the worker answers the handshake
// with a SYN cookie and reads the request head, then decide_l7() takes the pool the service's
// L7Router chose and the sticky value the head carries, and fills the reply tuple as full NAT
// does (the backend's side is opened from a local address). The sticky key (a cookie or header
// value) belongs to the service, not to a rule: a value seen by rules with different pools is
// bound to the backend of the pool its latest request went to.
//
// Threads: decide()/release() on the owning worker; owner() on any worker; start()/stop() and
// the listings on the control side.
#pragma once

#include <rte_rcu_qsbr.h>

#include <atomic>
#include <cstdint>
#include <deque>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <thread>
#include <unordered_map>
#include <unordered_set>
#include <vector>

#include "common/net_types.h"
#include "config/config.h"
#include "dataplane/drop_reason.h"
#include "lb/backend_pool.h"
#include "lb/health_checker.h"
#include "lb/l7_router.h"
#include "lb/syn_cookie.h"
#include "lb/sticky_table.h"
#include "nat/conn_xlate.h"
#include "nat/port_allocator.h"

namespace baton {

class LoadBalancer {
 public:
  struct Service {
    ServiceConfig cfg;
    BackendPool* pool = nullptr;
    BackendPool* backup = nullptr;
    int sticky_group = -1;             // group id in the sticky table, -1 = none
    StickyGroup group;
    std::vector<be32> local;           // full NAT source addresses
    std::optional<L7Router> router;    // mode l7: rules -> pool index (into pools())
  };

  static std::unique_ptr<LoadBalancer> create(const Config& cfg, uint16_t workers,
                                              rte_rcu_qsbr* rcu, std::string* err);
  ~LoadBalancer();

  bool start(std::string* err);  // health checks and the control thread
  void stop();

  // VIPs and full-NAT local addresses.
  std::vector<be32> addresses() const;
  const std::vector<be32>& local_addresses() const { return local_addrs_; }
  // Addresses of the backends of mode nat services (their answers are translated replies).
  std::vector<be32> nat_backend_addresses() const;
  int owner(const Tuple& t) const;

  enum class Verdict : uint8_t { kNotMine, kTranslate, kNoBackend };
  // t is the original tuple of a new connection. On kTranslate *x holds the reply tuple, the
  // service and backend, and the sticky reference.
  template <class TakenFn>
  Verdict decide(uint16_t worker, const Tuple& t, uint32_t now_s, ConnXlate* x, TakenFn&& taken);
  void release(const ConnXlate& x, uint32_t now_s);
  // For a packet that may open a connection to an L4 service: asks for the Maglev slot
  // decide() will read, so that a burst's misses overlap (the caller is online in RCU).
  void prefetch_choice(const Tuple& t) const;

  // Mode l7. The service whose VIP t (TCP) is addressed to, or -1.
  int l7_service(const Tuple& t) const {
    if (t.proto != 6 || t.family != Family::kV4) return -1;
    const int si = service_of(6, t.dst.as_v4(), t.dport);
    return si >= 0 && services_[si].cfg.mode == LbMode::kL7 ? si : -1;
  }
  // For client tuple t of L7 service `service`, whose request head routed to `pool` (an index
  // into pools()) with `sticky_value` (the sticky cookie or header, if the head had it): as
  // decide() in full NAT.
  template <class TakenFn>
  Verdict decide_l7(uint16_t worker, const Tuple& t, int service, uint32_t pool,
                    std::optional<std::string_view> sticky_value, uint32_t now_s, ConnXlate* x,
                    TakenFn&& taken);
  // The largest max_request_head of the L7 services (0 when there is none), and the secret
  // every worker's SYN cookies use.
  uint32_t l7_max_head() const;
  const SynCookieSecret& syn_cookie_secret() const { return syn_secret_; }

  // ---- Migration (Translator::describe / adopt / check_handoff) ----------------------------
  // The lb and sticky parts of load-balanced connection x's handoff into *h (VIP, backend and
  // sticky entry by address and port). Any core online in RCU; false if x names no service.
  bool describe(const ConnXlate& x, uint32_t now_s, XlateHandoff* h) const;
  // Destination, on the worker that owns the connection with original tuple t: resolves h to
  // this instance's service, backend and sticky entry into *x (whose reply tuple and kind are
  // set), counts the connection on its backend and takes its sticky reference. False with
  // *why, holding nothing, when the service, the backend or the sticky group is not here, the
  // mode differs, or the full-NAT local endpoint is not this worker's.
  bool adopt(uint16_t worker, const Tuple& t, const XlateHandoff& h, uint32_t now_s, ConnXlate* x,
             std::string* why);
  // PREPARE's check of one (service, backend, full-NAT local address; 0 = mode nat) a VM's
  // connections use: empty when this instance has them, else the reason. Online in RCU.
  std::string check_handoff(uint8_t proto, be32 vip, be16 vip_port, be32 backend,
                            be16 backend_port, be32 local) const;
  // After the connections that held ref are gone (a VM deleted or rolled back): an entry keyed
  // by a source address (it names that client alone) that no connection uses is removed.
  // Prefix, cookie and header entries may serve other clients and age out as usual.
  void drop_unused_sticky(StickyRef ref);

  const std::vector<Service>& services() const { return services_; }
  const std::vector<std::unique_ptr<BackendPool>>& pools() const { return pools_; }
  const std::vector<std::string>& pool_names() const { return pool_names_; }
  StickyTable* sticky() { return sticky_.get(); }
  HealthChecker* health() { return health_.get(); }
  // Clock of the sticky table (the dataplane's seconds).
  void set_clock(std::function<uint32_t()> now) { now_ = std::move(now); }

 private:
  LoadBalancer() = default;
  struct Key {
    uint8_t proto;
    uint32_t addr;  // be32 raw
    uint16_t port;  // be16 raw
    bool operator==(const Key&) const = default;
  };
  struct KeyHash {
    size_t operator()(const Key& k) const {
      return (uint64_t{k.addr} << 24 ^ uint64_t{k.port} << 8 ^ k.proto) * 0x9e3779b97f4a7c15ull;
    }
  };
  // The backend of `pool` (or its backup farm) at addr:port.
  static std::optional<BackendId> backend_at(const BackendPool& pool, be32 addr, be16 port);
  // The backend of service s at addr:port: in its pool (or backup farm), in mode l7 in any pool
  // its rules may route to.
  std::optional<BackendId> service_backend(const Service& s, be32 addr, be16 port) const;
  // Address and port of backend id (ids name their pool: id >> 16).
  std::optional<BackendPick> backend_endpoint(BackendId id) const;
  int service_of(uint8_t proto, be32 a, be16 p) const {
    auto it = vips_.find(Key{proto, a.raw(), p.raw()});
    return it == vips_.end() ? -1 : it->second;
  }
  // The backend for a new connection of s from `pool` (s.pool for L4), sticky as the service's
  // group says (http_value: the request's sticky cookie or header, L7 only).
  std::optional<BackendPick> choose(const Service& s, const BackendPool& pool, const Tuple& t,
                                    std::optional<std::string_view> http_value, uint32_t now_s,
                                    StickyRef* ref);
  // Full NAT: a local address and port of this worker's blocks whose reply tuple is free, into
  // x's reply_dst/reply_dport. Next-fit from the worker's cursor, as Linux picks ephemeral
  // ports: the port after the last one handed out is almost always free (a port comes round
  // again only after the worker went through all of its others), so a new connection probes
  // about once however many are open. (Starting from a point derived from the client instead
  // made every connection of one client port probe past all the ports that client already
  // held: quadratic, 1,000 new connections per second at 20k.)
  template <class TakenFn>
  bool pick_local(uint16_t worker, const Service& s, const Tuple& t, ConnXlate* x, TakenFn&& taken);
  void control_loop();
  void retire(std::function<void()> free_fn);

  uint16_t workers_ = 1;
  rte_rcu_qsbr* rcu_ = nullptr;
  std::vector<Service> services_;
  std::vector<std::unique_ptr<BackendPool>> pools_;
  std::vector<std::string> pool_names_;
  std::unordered_map<Key, int, KeyHash> vips_;
  std::unordered_set<Key, KeyHash> nat_backends_;  // backend endpoints of mode nat services
  std::vector<be32> local_addrs_;                   // sorted by raw value
  PortBlockLayout local_layout_{1024, 65535, 64};
  // pick_local's next-fit position per worker, an index into that worker's local ports; each
  // on its own cache line, written by its worker only.
  struct alignas(64) LocalCursor {
    uint32_t next = 0;
  };
  std::unique_ptr<LocalCursor[]> local_cursor_;
  std::unique_ptr<StickyTable> sticky_;
  std::unique_ptr<HealthChecker> health_;
  std::function<uint32_t()> now_;
  std::thread control_;
  std::atomic<bool> running_{false};
  std::mutex retire_mu_;
  std::deque<std::pair<uint64_t, std::function<void()>>> retired_;  // (QSBR token, free)
  SynCookieSecret syn_secret_;
};

// ---- inline ------------------------------------------------------------------------------

template <class TakenFn>
LoadBalancer::Verdict LoadBalancer::decide(uint16_t worker, const Tuple& t, uint32_t now_s,
                                           ConnXlate* x, TakenFn&& taken) {
  const int si = service_of(t.proto, t.dst.as_v4(), t.dport);
  // An L7 VIP never gets here through a first packet: the worker's cookie path takes its SYNs.
  if (si < 0 || services_[si].cfg.mode == LbMode::kL7) return Verdict::kNotMine;
  const Service& s = services_[si];
  StickyRef ref;
  std::optional<BackendPick> b = choose(s, *s.pool, t, std::nullopt, now_s, &ref);
  if (!b) return Verdict::kNoBackend;
  x->reply_src = b->addr;
  x->reply_sport = b->port;
  x->service = static_cast<uint16_t>(si);
  x->backend = b->id;
  x->sticky_slot = ref.slot;
  x->sticky_gen = ref.gen;
  s.pool->conn_opened(b->id);  // a backup farm's id is looked up in its pool as well
  if (s.cfg.mode == LbMode::kNat) {
    x->reply_dst = t.src.as_v4();
    x->reply_dport = t.sport;
    x->kind = XlateKind::kLbNat;
  } else {
    if (!pick_local(worker, s, t, x, taken)) {
      release(*x, now_s);
      return Verdict::kNoBackend;
    }
    x->kind = XlateKind::kLbFullNat;
  }
  return Verdict::kTranslate;
}

template <class TakenFn>
LoadBalancer::Verdict LoadBalancer::decide_l7(uint16_t worker, const Tuple& t, int service,
                                              uint32_t pool,
                                              std::optional<std::string_view> sticky_value,
                                              uint32_t now_s, ConnXlate* x, TakenFn&& taken) {
  if (service < 0 || static_cast<size_t>(service) >= services_.size() || pool >= pools_.size())
    return Verdict::kNoBackend;
  const Service& s = services_[service];
  StickyRef ref;
  std::optional<BackendPick> b = choose(s, *pools_[pool], t, sticky_value, now_s, &ref);
  if (!b) return Verdict::kNoBackend;
  x->reply_src = b->addr;
  x->reply_sport = b->port;
  x->service = static_cast<uint16_t>(service);
  x->backend = b->id;
  x->sticky_slot = ref.slot;
  x->sticky_gen = ref.gen;
  x->kind = XlateKind::kLbFullNat;  // the same translation; the L7 record says the rest
  pools_[b->id >> 16]->conn_opened(b->id);
  if (!pick_local(worker, s, t, x, taken)) {
    release(*x, now_s);
    return Verdict::kNoBackend;
  }
  return Verdict::kTranslate;
}

template <class TakenFn>
bool LoadBalancer::pick_local(uint16_t worker, const Service& s, const Tuple& t, ConnXlate* x,
                              TakenFn&& taken) {
  // This worker's ports, numbered k = 0..n-1: blocks worker, worker + W, worker + 2W, ...
  const uint32_t bs = local_layout_.block_size;
  const uint32_t blocks = local_layout_.blocks();
  const uint32_t mine = blocks > worker ? (blocks - worker + workers_ - 1) / workers_ : 0;
  const uint32_t n = mine * bs;
  if (n == 0) return false;
  uint32_t& cursor = local_cursor_[worker].next;
  for (uint32_t i = 0; i < n; i++) {
    const uint32_t k = (cursor + i) % n;
    const uint32_t blk = worker + (k / bs) * workers_;
    x->reply_dport = be16::from_host(static_cast<uint16_t>(local_layout_.first_port(blk) + k % bs));
    for (const be32 local : s.local) {
      x->reply_dst = local;
      if (!taken(reply_tuple(*x, t.proto, t.vlan))) {
        cursor = k + 1;
        return true;
      }
    }
  }
  return false;
}

}  // namespace baton
