// SPDX-License-Identifier: Apache-2.0
#include "dataplane/worker.h"

#include <rte_cycles.h>
#include <rte_errno.h>
#include <rte_ethdev.h>
#include <rte_prefetch.h>
#include <unistd.h>

#include <bit>
#include <cstddef>
#include <cstdio>
#include <cstring>

#include "common/log.h"
#include "conntrack/age_class.h"
#include "conntrack/conn_table.h"
#include "dataplane/dataplane.h"
#include "dataplane/parser.h"
#include "dataplane/router.h"
#include "nat/icmp_xlate.h"
#include "nat/xlate_rewrite.h"

namespace baton {
namespace {

constexpr uint32_t kAgeBudget = 64;       // list heads looked at per loop
constexpr uint32_t kFragLifetimeS = 30;   // a fragment train older than this is forgotten

bool is_icmp_control(const PacketMeta& pm) {
  // Neighbour discovery and MLD are link machinery, not flows: a bump in the wire passes them
  // (snooping them is the switch-state work's job).
  if (pm.tuple.proto != 58) return false;
  uint8_t t = pm.icmp.type;
  return (t >= 130 && t <= 137) || t == 143;
}

// FlowKey::from_tuple without its byte-wise address comparison (std::array's <=> is a memcmp
// call): the same canonical key and direction, comparing each address as two big-endian 64-bit
// words, which orders exactly as the bytes do. The key is written in the five 8-byte words the
// hash then reads (ConnTable::hash): built field by field, its last word came from four
// narrower stores, and the hash's load of it right after could not be store-forwarded (about
// 10 % of process_burst in the profile).
static_assert(sizeof(FlowKey) == 40 && offsetof(FlowKey, hi_addr) == 16 &&
              offsetof(FlowKey, lo_port) == 32 && offsetof(FlowKey, hi_port) == 34 &&
              offsetof(FlowKey, proto) == 36 && offsetof(FlowKey, family) == 37 &&
              offsetof(FlowKey, vlan) == 38);
static_assert(offsetof(Tuple, dst) == 16 && offsetof(Tuple, sport) == 32 &&
              offsetof(Tuple, dport) == 34 && offsetof(Tuple, proto) == 36 &&
              offsetof(Tuple, family) == 37 && offsetof(Tuple, vlan) == 38);
static_assert(std::endian::native == std::endian::little);  // the word layouts below

// The key of a tuple given as words: each address as the two words it lies in memory as, and
// `tail`, the last word in the layout of both Tuple and FlowKey (ports, proto, family, vlan).
// Scalars and selects, not arrays swapped in place: those went through the stack, and a 16-byte
// reload of two 8-byte stores cannot be forwarded either.
inline void canonical_key(uint64_t s0, uint64_t s1, uint64_t d0, uint64_t d1, uint64_t tail,
                          FlowKey* k, Dir* dir) {
  const uint64_t bs0 = __builtin_bswap64(s0), bd0 = __builtin_bswap64(d0);
  const uint64_t bs1 = __builtin_bswap64(s1), bd1 = __builtin_bswap64(d1);
  const uint16_t sport = static_cast<uint16_t>(tail), dport = static_cast<uint16_t>(tail >> 16);
  const bool src_is_lo = bs0 != bd0   ? bs0 < bd0
                         : bs1 != bd1 ? bs1 < bd1
                                      : __builtin_bswap16(sport) <= __builtin_bswap16(dport);
  // Otherwise the addresses and the two ports change places.
  const uint64_t swapped = (tail & ~uint64_t{0xffffffff}) | uint64_t{sport} << 16 | dport;
  const uint64_t w[5] = {src_is_lo ? s0 : d0, src_is_lo ? s1 : d1, src_is_lo ? d0 : s0,
                         src_is_lo ? d1 : s1, src_is_lo ? tail : swapped};
  auto* out = reinterpret_cast<uint8_t*>(k);
  for (int i = 0; i < 5; i++) std::memcpy(out + 8 * i, &w[i], 8);  // word by word
  *dir = src_is_lo ? Dir::kLoToHi : Dir::kHiToLo;
}
// A value as loaded, hidden from the optimiser: GCC merges loads of adjacent narrow fields that
// are OR-ed into one word into a single wide load, which is what must not happen below.
template <class T>
inline T as_loaded(T v) {
  asm("" : "+r"(v));
  return v;
}
inline void canonical_key(const Tuple& t, FlowKey* k, Dir* dir) {
  // Each field read as the parser wrote it: its stores are narrower than these words (an IPv4
  // address's four bytes into a zeroed 16-byte one; the tail's five fields one by one), and a
  // load spanning several stores cannot be forwarded from them (a stall of a dozen cycles
  // each, three a packet).
  const uint64_t tail = uint64_t{as_loaded(t.sport.raw())} |
                        uint64_t{as_loaded(t.dport.raw())} << 16 |
                        uint64_t{as_loaded(t.proto)} << 32 |
                        uint64_t{as_loaded(static_cast<uint8_t>(t.family))} << 40 |
                        uint64_t{as_loaded(t.vlan)} << 48;
  if (t.family == Family::kV4)
    return canonical_key(as_loaded(t.src.as_v4().raw()), 0, as_loaded(t.dst.as_v4().raw()), 0,
                         tail, k, dir);
  uint64_t s[2], d[2];  // IpAddr::v6 wrote each address whole
  std::memcpy(s, t.src.b.data(), 16);
  std::memcpy(d, t.dst.b.data(), 16);
  canonical_key(s[0], s[1], d[0], d[1], tail, k, dir);
}
inline FlowKey canonical_key(const Tuple& t, Dir* dir) {
  FlowKey k;
  canonical_key(t, &k, dir);
  return k;
}
// canonical_key(reply_tuple(x, proto, vlan)) from the translation's fields: the Tuple in
// between was built by narrow stores (an IPv4 address into a zeroed 16-byte one) that the key's
// 8-byte loads could not forward, a stall on every translated connection's creation and end.
inline FlowKey reply_key(const ConnXlate& x, uint8_t proto, uint16_t vlan, Dir* dir) {
  const uint64_t tail = x.reply_sport.raw() | uint64_t{x.reply_dport.raw()} << 16 |
                        uint64_t{proto} << 32 | uint64_t{static_cast<uint8_t>(Family::kV4)} << 40 |
                        uint64_t{vlan} << 48;
  FlowKey k;  // the addresses as IpAddr::v4 lays them out
  canonical_key(x.reply_src.raw(), 0, x.reply_dst.raw(), 0, tail, &k, dir);
  return k;
}

// The NIC's verdict on the IPv4 header checksum (RTE_ETH_RX_OFFLOAD_IPV4_CKSUM, ports.cc).
Ipv4Csum rx_ipv4_csum(uint64_t ol_flags) {
  switch (ol_flags & RTE_MBUF_F_RX_IP_CKSUM_MASK) {
    case RTE_MBUF_F_RX_IP_CKSUM_GOOD: return Ipv4Csum::kGood;
    case RTE_MBUF_F_RX_IP_CKSUM_BAD: return Ipv4Csum::kBad;
    default: return Ipv4Csum::kUnknown;  // UNKNOWN (and NONE, which no IPv4 driver sets)
  }
}

// The declared MAC of a VM served here that owns ip, if there is one.
bool declared_vm_mac(const VmTable& vms, be32 ip, MacAddr* mac) {
  const uint16_t id = vms.find_by_ip(IpAddr::v4(ip), Family::kV4);
  if (!id) return false;
  const uint64_t bits = vms.slot(id).mac.load(std::memory_order_relaxed);
  if (!bits) return false;
  for (int i = 0; i < 6; i++) mac->b[i] = static_cast<uint8_t>(bits >> (8 * i));
  return true;
}

}  // namespace

Worker::Worker(Dataplane& dp, uint16_t id, unsigned lcore) : dp_(dp), id_(id), lcore_(lcore) {
  for (uint32_t i = 0; i < kMaxBurst; i++) key_ptrs_[i] = &keys_[i];
}

Worker::~Worker() {
  for (rte_ring* r : {handoff_, inject_}) {
    if (!r) continue;
    void* m;
    while (rte_ring_dequeue(r, &m) == 0) rte_pktmbuf_free(static_cast<rte_mbuf*>(m));
    rte_ring_free(r);
  }
  if (commands_) rte_ring_free(commands_);
  if (resolve_) rte_ring_free(resolve_);
  for (TxBuf& t : tx_) rte_pktmbuf_free_bulk(t.pkts, t.n);
}

bool Worker::init(std::string* err) {
  table_ = &dp_.shard(id_);
  xlate_ = dp_.xlate(id_);
  translator_ = xlate_ ? dp_.translator() : nullptr;
  char name[RTE_RING_NAMESIZE];
  static std::atomic<int> seq{0};
  int n = seq++;
  auto mk = [&](const char* what, unsigned size, unsigned flags) -> rte_ring* {
    std::snprintf(name, sizeof name, "%s_%d_%u", what, n, id_);
    rte_ring* r = rte_ring_create(name, size, SOCKET_ID_ANY, flags);
    if (!r) *err = std::string("cannot create ring ") + name + ": " + rte_strerror(rte_errno);
    return r;
  };
  if (!(handoff_ = mk("handoff", 4096, RING_F_SC_DEQ))) return false;
  if (!(inject_ = mk("inject", 8192, RING_F_SC_DEQ))) return false;
  if (!(commands_ = mk("cmd", 1024, RING_F_SC_DEQ))) return false;
  tx_.resize(dp_.ports().all().size());
  frags_.resize(kFragSlots);
  if (LoadBalancer* lb = translator_ ? translator_->lb() : nullptr; lb && lb->l7_max_head()) {
    L7Proxy::Params lp;
    lp.conn_slots = table_->slots();
    lp.max_head = lb->l7_max_head();
    lp.secret = lb->syn_cookie_secret();
    if (!(l7_ = L7Proxy::create(lp, err))) return false;
    lb_ = lb;
  }
  if (dp_.config().mode == Mode::kL3) {
    l3_ = true;
    router_ = dp_.router_.get();
    if (id_ == 0) {  // the neighbour table's one writer (router.h)
      neighbor_owner_ = dp_.router_.get();
      std::snprintf(name, sizeof name, "resolve_%d", n);
      resolve_ = rte_ring_create_elem(name, sizeof(uint64_t), 1024, SOCKET_ID_ANY, RING_F_SC_DEQ);
      if (!resolve_) {
        *err = std::string("cannot create ring ") + name + ": " + rte_strerror(rte_errno);
        return false;
      }
    }
  }
  return true;
}

int Worker::run() {
  rte_rcu_qsbr_thread_register(dp_.rcu_, id_);
  rte_rcu_qsbr_thread_online(dp_.rcu_, id_);
  BLOG_INFO("worker", "worker %u on lcore %u", id_, lcore_);
  std::vector<Port>& ports = dp_.ports().all();
  rte_mbuf* pkts[kMaxBurst];
  const uint32_t burst = std::min<uint32_t>(dp_.config().burst, kMaxBurst);
  uint32_t idle = 0;
  uint64_t last = rte_rdtsc();
  while (dp_.running()) {
    uint32_t got = 0;
    // Packets handed over by other workers and injected by the control core go first: an
    // injected packet (parked during a migration) is older than anything now on the wire.
    // The inject ring is drained (up to a bound) so a whole parked backlog precedes new RX.
    for (rte_ring* r : {handoff_, inject_}) {
      for (uint32_t taken = 0; taken < kMaxInjectPerLoop;) {
        unsigned n = rte_ring_sc_dequeue_burst(r, reinterpret_cast<void**>(pkts), burst, nullptr);
        if (!n) break;
        got += n;
        taken += n;
        process_burst(pkts, n);
        if (r == handoff_) break;  // handoff is ordinary traffic: one burst per loop
      }
    }
    for (Port& p : ports) {
      if (id_ >= p.rx_queues) continue;
      uint16_t n = rte_eth_rx_burst(p.port_id, id_, pkts, burst);
      stats_.polls++;
      if (n) {
        got += n;
        stats_.busy_polls++;
        process_burst(pkts, n);
      }
    }
    flush_tx();
    housekeeping();
    rte_rcu_qsbr_quiescent(dp_.rcu_, id_);

    uint64_t t = rte_rdtsc();
    stats_.total_cycles += t - last;
    if (got) {
      stats_.busy_cycles += t - last;
      idle = 0;
    } else if (++idle > 32) {
      // Back off: sleeping hands the core to the TCP endpoints and the other instance.
      uint32_t us = std::min<uint32_t>(1u << std::min<uint32_t>((idle - 32) / 8, 8), kMaxIdleSleepUs);
      rte_rcu_qsbr_thread_offline(dp_.rcu_, id_);
      usleep(us);
      rte_rcu_qsbr_thread_online(dp_.rcu_, id_);
    } else {
      rte_pause();
    }
    last = rte_rdtsc();
  }
  flush_tx();
  rte_rcu_qsbr_thread_offline(dp_.rcu_, id_);
  rte_rcu_qsbr_thread_unregister(dp_.rcu_, id_);
  return 0;
}

void Worker::housekeeping() {
  if (!clock_pinned_) now_s_ = dp_.now_s();
  void* c;
  // One command per loop keeps a large install from stalling forwarding.
  if (rte_ring_sc_dequeue(commands_, &c) == 0) apply(*static_cast<WorkerCommand*>(c));
  if (resolve_) {  // next hops other workers missed (mode l3, worker 0)
    uint64_t asks[32];
    unsigned k = rte_ring_sc_dequeue_burst_elem(resolve_, asks, sizeof asks[0], 32, nullptr);
    for (unsigned i = 0; i < k; i++)
      ask_neighbor(static_cast<uint16_t>(asks[i] >> 32), be32::from_raw(static_cast<uint32_t>(asks[i])));
  }
  age();
  if (l7_) l7_age();
}

void Worker::process_burst(rte_mbuf** pkts, uint32_t n) {
  rte_mbuf* owned[kMaxBurst];
  uint32_t n_owned = 0;
  stats_.rx_packets += n;
  const bool l2 = dp_.config().mode == Mode::kL2;
  const uint16_t workers = dp_.worker_count();

  for (uint32_t i = 0; i < n; i++) {
    if (i + 2 < n) rte_prefetch0(rte_pktmbuf_mtod(pkts[i + 2], void*));
    rte_mbuf* m = pkts[i];
    PacketMeta& pm = metas_[n_owned];
    DropReason why;
    if (unlikely(m->nb_segs != 1)) {
      drop(m, DropReason::kTruncated);  // the parser reads one contiguous segment
      continue;
    }
    if (!parse_packet(rte_pktmbuf_mtod(m, const uint8_t*), m->data_len, &pm, &why,
                      rx_ipv4_csum(m->ol_flags))) {
      drop(m, why);
      continue;
    }
    if (unlikely(pm.l3 == L3Kind::kArp || is_icmp_control(pm))) {
      if (l2)
        forward(m);
      else if (pm.l3 != L3Kind::kArp)
        drop(m, DropReason::kIpv6Unrouted);
      else if (neighbor_owner_)
        handle_arp(m, pm);
      else if (dp_.workers()[0]->handoff(m))  // ARP belongs to the neighbour table's owner
        stats_.handoff_out++;
      else
        drop(m, DropReason::kHandoffRingFull);
      continue;
    }
    if (!l2 && !l3_ingress(m, pm)) continue;
    // ICMP errors belong to the flow of the packet they quote.
    const Tuple& t = (pm.icmp.is_error && pm.icmp.has_inner) ? pm.icmp.inner : pm.tuple;
    FlowKey& k = keys_[n_owned];
    canonical_key(t, &k, &dirs_[n_owned]);
    if (workers > 1) {
      // A translated connection's owner follows what its translation keeps fixed
      // (translator.h); everything else hashes symmetrically.
      uint16_t owner = conn_owner(translator_, t, k, workers);
      if (unlikely(pm.is_fragment) && translator_) {
        // A translated connection's owner may depend on a port, which only the first fragment
        // of a datagram carries: the later ones follow it, on the same ring after it (RSS
        // hashes addresses only, so they all arrive here). One this worker has no note of
        // stays here to be dropped: sent on by its port-less tuple, it could come back from a
        // worker whose note points here. Without translation no owner depends on a port.
        FragSlot& f = frag_slot(pm);
        if (pm.first_fragment)
          f.note(pm, owner, now_s_ + kFragLifetimeS);
        else
          owner = f.holds(pm) && now_s_ < f.expires ? f.owner : id_;
      }
      if (owner != id_) {
        if (dp_.workers()[owner]->handoff(m))
          stats_.handoff_out++;
        else
          drop(m, DropReason::kHandoffRingFull);
        continue;
      }
    }
    sigs_[n_owned] = ConnTable::hash(k);
    owned[n_owned++] = m;
  }
  if (n_owned) process_owned(owned, n_owned);
}

void Worker::process_owned(rte_mbuf** pkts, uint32_t n) {
  int32_t slots[kMaxBurst];
  uint64_t reply_hits = 0;  // bit i: slots[i] was found by packet i's reply tuple
  lookup_burst(n, slots, &reply_hits);
  // Every entry's lines requested at once: with a large table each is a cache (and TLB) miss,
  // and issuing them together overlaps them. A translated connection's rewrite, both
  // directions, is in its row (conn_xlate.h).
  for (uint32_t i = 0; i < n; i++)
    if (slots[i] >= 0) table_->prefetch(static_cast<uint32_t>(slots[i]));
  // A new connection to a load-balanced service reads one slot of its pool's Maglev table
  // (65,537 slots, rarely in cache: that line's miss was 84 % of BackendPool::pick's samples
  // in the full-NAT + LB connections profile). Ask for each miss's slot now, all at once.
  if (LoadBalancer* lb = translator_ ? translator_->lb() : nullptr)
    for (uint32_t i = 0; i < n; i++) {
      if (slots[i] >= 0) continue;
      const PacketMeta& pm = metas_[i];
      if (pm.tuple.proto == 17 || (pm.tuple.proto == 6 && TcpTracker::may_create(pm.tcp)))
        lb->prefetch_choice(pm.tuple);
    }
  // The bulk lookup ran before this burst created anything. A miss looks again only if its
  // signature is one of a key created earlier in the burst: a second packet of that flow, or
  // a reply to a translated one (whose reply key is added with it). A removal frees a key:
  // after one, every miss looks again. (Every miss looked again after any translated
  // connection was created until session 10: two lookups for each later SYN of a burst.)
  hash_sig_t created_sigs[2 * kMaxBurst];
  uint32_t n_created = 0;
  uint64_t created_bits = 0;  // bit sig % 64 of each: most misses need no scan
  bool relook_all = false;
  auto created_earlier = [&](hash_sig_t sig) {
    if (relook_all) return true;
    if (!(created_bits >> (sig & 63) & 1)) return false;
    for (uint32_t j = 0; j < n_created; j++)
      if (created_sigs[j] == sig) return true;
    return false;
  };
  removed_in_burst_ = false;
  for (uint32_t i = 0; i < n; i++) {
    const PacketMeta& pm = metas_[i];
    rte_mbuf* m = pkts[i];
    if (unlikely(pm.is_fragment && !pm.first_fragment)) {
      // Non-first fragments carry no ports: they pass if the first fragment of the same
      // datagram was accepted (docs: fragments are tracked, not reassembled), with the
      // addresses it was translated to (worker.h, FragSlot).
      const FragSlot& f = frag_slot(pm);
      const bool seen = f.holds(pm);
      if (!seen || !f.valid || now_s_ >= f.expires) {
        // A translated flow's when we can tell: its first fragment was translated, or it is
        // addressed to a NAT/LB address, which only translated connections use.
        const bool xlated = seen ? f.xlate
                                 : translator_ && pm.l3 == L3Kind::kIpv4 &&
                                       translator_->is_service_address(pm.tuple.dst.as_v4());
        drop(m, xlated ? DropReason::kXlateFragment : DropReason::kFragment);
        continue;
      }
      if (f.xlate) {
        PacketRewrite rw;
        rw.src_addr = f.xlate_src;
        rw.dst_addr = f.xlate_dst;
        if (rewrite_packet(rte_pktmbuf_mtod(m, uint8_t*) + pm.l3_offset,
                           m->data_len - pm.l3_offset, rw) != XlateError::kOk) {
          drop(m, DropReason::kXlateFragment);
          continue;
        }
        stats_.xlated_packets++;
      }
      forward(m);
      continue;
    }
    if (unlikely(removed_in_burst_) && slots[i] >= 0 && !table_->live(static_cast<uint32_t>(slots[i]))) {
      slots[i] = -1;  // its connection was replaced earlier in this burst: look again
      reply_hits &= ~(uint64_t{1} << i);
    }
    relook_all |= removed_in_burst_;
    if (slots[i] < 0 && created_earlier(sigs_[i])) {
      slots[i] = table_->lookup(keys_[i]);
      if (slots[i] < 0 && xlate_ && (slots[i] = xlate_->lookup_reply(keys_[i])) >= 0)
        reply_hits |= uint64_t{1} << i;
    }
    if (reply_hits >> i & 1) {
      const ConnEntry& e = table_->entry(static_cast<uint32_t>(slots[i]));
      handle_known(m, pm, static_cast<uint32_t>(slots[i]),
                   e.orig_dir() == Dir::kLoToHi ? Dir::kHiToLo : Dir::kLoToHi);
      continue;
    }
    if (slots[i] >= 0) {
      handle_known(m, pm, static_cast<uint32_t>(slots[i]), dirs_[i]);
    } else {
      const uint64_t created = stats_.conn_created, translated = stats_.conn_translated;
      handle_new(m, pm, keys_[i], dirs_[i]);
      if (stats_.conn_created != created) {
        created_sigs[n_created++] = sigs_[i];
        created_bits |= uint64_t{1} << (sigs_[i] & 63);
        if (stats_.conn_translated != translated) {
          created_sigs[n_created++] = reply_sig_;
          created_bits |= uint64_t{1} << (reply_sig_ & 63);
        }
      }
    }
  }
}

// The burst's keys in the connection table and, for a translated connection's reply direction,
// in the translation index. The two key sets are disjoint (a translated connection is refused
// when its reply key is taken, worker.cc xlate_conflict), so the order of the two lookups
// decides only what a packet pays: a packet the translator expects to be a reply (addressed to
// an SNAT pool or a full-NAT local address, or sent by a mode-nat backend or a port-forward
// target: Translator::expects_reply) looks in the index first and
// spares the connection table's miss (two bucket lines), the others the other way round. Both
// rounds are bulk lookups; only a packet missing both pays two.
void Worker::lookup_burst(uint32_t n, int32_t* slots, uint64_t* reply_hits) {
  const FlowKey* const* kp = key_ptrs_;
  if (!xlate_) return table_->lookup_bulk(kp, sigs_, n, slots);
  uint64_t reply_first = 0;
  for (uint32_t i = 0; i < n; i++)
    if (translator_->expects_reply(metas_[i].tuple)) reply_first |= uint64_t{1} << i;
  // Round r: the connection table for packets whose turn it is (round 0: not reply_first;
  // round 1: reply_first ones that missed the index), the index for the others.
  uint64_t missed = n >= 64 ? ~uint64_t{0} : (uint64_t{1} << n) - 1;
  for (int round = 0; round < 2; round++) {
    const FlowKey* ck[kMaxBurst];
    const FlowKey* rk[kMaxBurst];
    hash_sig_t cs[kMaxBurst], rs[kMaxBurst];
    uint8_t cat[kMaxBurst], rat[kMaxBurst];
    uint32_t nc = 0, nr = 0;
    for (uint32_t i = 0; i < n; i++) {
      if (!(missed >> i & 1)) continue;
      const bool to_conns = (reply_first >> i & 1) == static_cast<uint64_t>(round);
      if (to_conns) {
        ck[nc] = kp[i];
        cs[nc] = sigs_[i];
        cat[nc++] = static_cast<uint8_t>(i);
      } else {
        rk[nr] = kp[i];
        rs[nr] = sigs_[i];
        rat[nr++] = static_cast<uint8_t>(i);
      }
    }
    int32_t got[kMaxBurst];
    if (nc) {
      table_->lookup_bulk(ck, cs, nc, got);
      for (uint32_t j = 0; j < nc; j++) {
        slots[cat[j]] = got[j];
        if (got[j] >= 0) missed &= ~(uint64_t{1} << cat[j]);
      }
    }
    if (nr) {
      xlate_->lookup_reply_bulk(rk, rs, nr, got);
      for (uint32_t j = 0; j < nr; j++) {
        slots[rat[j]] = got[j];
        if (got[j] >= 0) {
          missed &= ~(uint64_t{1} << rat[j]);
          *reply_hits |= uint64_t{1} << rat[j];
        }
      }
    }
    if (!missed) break;
  }
}

void Worker::handle_new(rte_mbuf* m, const PacketMeta& pm, const FlowKey& k, Dir d) {
  if (pm.icmp.is_error) return drop(m, DropReason::kIcmpNoFlow);
  if (l7_) {  // an L7 VIP answers handshakes itself (worker_l7.cc)
    if (const int si = lb_->l7_service(pm.tuple); si >= 0) return l7_unknown(m, pm, k, d, si);
  }
  const uint8_t proto = pm.tuple.proto;
  if (proto == 6 && !TcpTracker::may_create(pm.tcp))
    return drop(m, DropReason::kNoConnection);  // strict: no mid-stream pickup
  if ((proto == 1 || proto == 58) && !(pm.icmp.is_query && pm.icmp.is_request))
    return drop(m, DropReason::kNoConnection);

  // Which VM the flow belongs to: the protected end's address.
  uint16_t vm = dp_.vms().find_by_ip(pm.tuple.dst, pm.tuple.family);
  if (!vm) vm = dp_.vms().find_by_ip(pm.tuple.src, pm.tuple.family);
  if (vm) {
    VmState st = dp_.vms().slot(vm).state.load(std::memory_order_acquire);
    if (st == VmState::kFrozen || st == VmState::kArriving) {
      hold(m, vm);
      return;
    }
  }
  const int pidx = dp_.port_index(m->port);
  const uint8_t zone = pidx >= 0 ? dp_.ports().all()[pidx].zone_id : 0;
  ConnXlate x;
  XlateVerdict xv;
  if (translator_) {
    xv = decide_xlate(pm, &x);
    if (xv.kind == XlateVerdict::kDrop) return drop(m, xv.reason);
    // Our translated addresses answer nothing else (no host stack), and must not be routed
    // back out where we answer ARP for them.
    if (xv.kind == XlateVerdict::kPass && pm.l3 == L3Kind::kIpv4 &&
        translator_->is_service_address(pm.tuple.dst.as_v4()))
      return drop(m, DropReason::kLocalDelivery);
  }
  // Mode l3: nothing we cannot route creates state (a translated connection: below, where it
  // goes after translation).
  if (l3_ && xv.kind != XlateVerdict::kTranslate && !router_->route(pm.tuple.dst.as_v4()))
    return drop(m, DropReason::kNoRoute);
  const bool translated = xv.kind == XlateVerdict::kTranslate;
  // The ACL sees the destination after DNAT and the source before SNAT, as iptables' FORWARD
  // chain does: rules name the inside hosts, whatever their public addresses.
  Tuple seen = pm.tuple;
  if (translated) {
    seen.dst = IpAddr::v4(x.reply_src);
    seen.dport = x.reply_sport;
  }
  AclMatch am = dp_.acl().classify_one(AclQuery{zone, seen});
  if (am.action != Action::kPermit) {
    if (translated) translator_->release(id_, x, proto, now_s_);
    return drop(m, DropReason::kAclDeny);
  }
  if (translated) {
    if (l3_ && !router_->route(x.reply_src)) {
      translator_->release(id_, x, proto, now_s_);
      return drop(m, DropReason::kNoRoute);  // nothing we cannot route creates state
    }
    if (!vm) {
      // A translated flow belongs to the VM behind its inside address (a static NAT or port
      // forward reaches the VM under its public address).
      vm = dp_.vms().find_by_ip(IpAddr::v4(x.reply_src), Family::kV4);
      if (!vm) vm = dp_.vms().find_by_ip(IpAddr::v4(x.reply_dst), Family::kV4);
      if (vm) {
        VmState st = dp_.vms().slot(vm).state.load(std::memory_order_acquire);
        if (st == VmState::kFrozen || st == VmState::kArriving) {
          translator_->release(id_, x, proto, now_s_);
          hold(m, vm);
          return;
        }
      }
    }
  }

  if (vm && !profile_permits(vm, seen)) {
    if (translated) translator_->release(id_, x, proto, now_s_);
    return drop(m, DropReason::kProfileDeny);
  }
  const VmSide side = vm ? vm_side(dp_.vms().slot(vm), pm) : VmSide::kToVm;
  if (vm && proto == 6 && !half_open_admits(vm, side)) {  // the SYN would open one too many
    if (translated) translator_->release(id_, x, proto, now_s_);
    return drop(m, DropReason::kHalfOpenLimit);
  }
  if (vm && !qos_admits(dp_.vms().slot(vm), pm, m)) {  // a SYN over the rate opens nothing
    if (translated) translator_->release(id_, x, proto, now_s_);
    return drop(m, DropReason::kQosExceeded);
  }

  ConnEntry e;
  e.vm_id = vm;
  e.zone = zone;
  e.last_seen = now_s_;
  if (d == Dir::kHiToLo) e.flags |= connflag::kOrigIsHi;
  if (proto == 6) dp_.tracker().init(e, d, pm.tcp);
  e.age_class = static_cast<uint8_t>(
      age_class_of(proto, static_cast<TcpState>(e.l4_state), false));
  ConnCounters first;
  first.packets[static_cast<int>(d)] = 1;
  first.bytes[static_cast<int>(d)] = m->pkt_len;
  int32_t slot = table_->insert(k, e, &first, ConnTable::Version::kAfterSlot);
  if (slot < 0) {
    if (translated) translator_->release(id_, x, proto, now_s_);
    return drop(m, DropReason::kTableFull);
  }
  if (xv.kind == XlateVerdict::kTranslate) {
    int rc = 0;
    if (!attach_xlate(static_cast<uint32_t>(slot), x, proto, pm.tuple.vlan, &rc)) {
      table_->remove(static_cast<uint32_t>(slot));
      translator_->release(id_, x, proto, now_s_);
      return drop(m, rc == -ENOSPC ? DropReason::kNatTableFull : DropReason::kXlateConflict);
    }
    stats_.conn_translated++;
  }
  stats_.conn_created++;
  restate(proto, e, -1, e.l4_state, [&] { return side; });  // the packet is the SYN
  if (vm) {
    note_change(static_cast<uint32_t>(slot), table_->entry(slot));
    vm_rows_[vm].traffic.count(side, m->pkt_len);
  }
  if (xv.kind == XlateVerdict::kTranslate) translate(m, pm, static_cast<uint32_t>(slot), true);
  if (unlikely(pm.first_fragment)) accept_first_fragment(m, pm, translated);
  forward(m);
}

void Worker::handle_known(rte_mbuf* m, const PacketMeta& pm, uint32_t slot, Dir d) {
  ConnEntry& e = table_->entry(slot);
  if (e.vm_id) {
    VmSlot& vs = dp_.vms().slot(e.vm_id);
    VmState st = vs.state.load(std::memory_order_acquire);
    if (unlikely(st == VmState::kFrozen || st == VmState::kArriving)) {
      hold(m, e.vm_id);
      return;
    }
    if (unlikely(e.flags & connflag::kPending)) {
      // Installed by a migration. The VM's activation (one store of its state) makes every
      // pending entry of the VM usable at once; the owner clears the mark on first use.
      if (st != VmState::kLocal && st != VmState::kTracking)
        return drop(m, DropReason::kNoConnection);
      table_->begin_write(slot);
      e.flags &= ~connflag::kPending;
      table_->end_write(slot);
    }
    // Before the tracker: a packet over the rate changes nothing, as if lost on the wire.
    if (unlikely(!qos_admits(vs, pm, m))) return drop(m, DropReason::kQosExceeded);
  }
  if (pm.icmp.is_error) {
    // Related traffic: passes for a known flow, changes nothing in it.
    if ((e.flags & connflag::kXlate) && !translate(m, pm, slot, d == e.orig_dir()))
      return drop(m, DropReason::kIcmpNoFlow);
    if (e.vm_id) count_vm(e.vm_id, pm, m);
    return forward(m);
  }
  if (e.flags & connflag::kL7) {
    // Counted as taken in: the proxy may hold a head's bytes before it sends them on.
    if (e.vm_id) count_vm(e.vm_id, pm, m);
    return l7_segment(m, pm, slot, d == e.orig_dir());
  }
  if (unlikely((e.flags & connflag::kXlate) && pm.tuple.proto == 6 &&
               (pm.tcp.flags & (tcpflag::kSyn | tcpflag::kAck)) == tcpflag::kSyn &&
               d == e.orig_dir() &&
               (e.l4_state == static_cast<uint8_t>(TcpState::kTimeWait) ||
                e.l4_state == static_cast<uint8_t>(TcpState::kClose)))) {
    // A new connection on the tuple of one that is over (a client reusing its port). Its
    // translation is decided afresh, as Linux conntrack restarts a TIME_WAIT entry on SYN:
    // the old backend or mapping may be gone.
    const FlowKey k = table_->key(slot);
    forget(slot);
    table_->remove(slot);
    stats_.conn_closed++;
    removed_in_burst_ = true;  // later packets of this burst may hold the old slot
    return handle_new(m, pm, k, d);
  }
  table_->begin_write(slot);
  uint8_t old_class = e.age_class;
  if (pm.tuple.proto == 6) {
    uint8_t old_state = e.l4_state;
    TcpVerdict v = dp_.tracker().track(e, d, pm.tcp);
    if (!v.accept) {
      table_->end_write(slot);
      return drop(m, v.reason);
    }
    if (v.state_changed)
      restate(6, e, old_state, e.l4_state, [&] { return initiator_side(table_->key(slot), e); });
    if (v.state_changed)
      e.age_class = static_cast<uint8_t>(
          age_class_of(6, static_cast<TcpState>(e.l4_state), false));
  } else if (d != e.orig_dir() && !(e.flags & connflag::kReplied)) {
    e.flags |= connflag::kReplied;
    e.age_class = static_cast<uint8_t>(age_class_of(pm.tuple.proto, TcpState::kNone, true));
  }
  table_->count(slot, d, m->pkt_len);
  e.last_seen = now_s_;
  table_->end_write(slot);
  if (e.age_class != old_class) reclass(slot, old_class);
  if (e.vm_id) {
    note_change(slot, e);
    count_vm(e.vm_id, pm, m);
  }
  const bool translated = e.flags & connflag::kXlate;
  if (translated) translate(m, pm, slot, d == e.orig_dir());
  if (unlikely(pm.first_fragment)) accept_first_fragment(m, pm, translated);
  forward(m);
}

// The VM's own profile rules, consulted after the zone ACL permitted: first match wins, and a
// connection no rule matches is permitted (VmTable builds the context with that default).
bool Worker::profile_permits(uint16_t vm, const Tuple& seen) const {
  const Acl* rules = dp_.vms().slot(vm).profile_acl.load(std::memory_order_acquire);
  return !rules || rules->classify_one(AclQuery{0, seen}).action == Action::kPermit;
}

VmSide Worker::vm_side(const VmSlot& vs, const PacketMeta& pm) {
  const VmAddresses* a = vs.addresses.load(std::memory_order_acquire);
  return a ? a->side_of(pm.tuple.src, pm.tuple.family) : VmSide::kToVm;
}

VmSide Worker::initiator_side(const FlowKey& k, const ConnEntry& e) const {
  const VmAddresses* a = dp_.vms().slot(e.vm_id).addresses.load(std::memory_order_acquire);
  const IpAddr& from = (e.flags & connflag::kOrigIsHi) ? k.hi_addr : k.lo_addr;
  return a ? a->side_of(from, k.family) : VmSide::kToVm;
}

bool Worker::half_open_admits(uint16_t vm, VmSide side) const {
  const uint32_t limit = dp_.vms().slot(vm).max_half_open.load(std::memory_order_relaxed);
  return !limit || dp_.vm_half_open(vm, side) < limit;
}

bool Worker::qos_admits(VmSlot& vs, const PacketMeta& pm, const rte_mbuf* m) {
  VmPolicer* p = vs.policer.load(std::memory_order_acquire);
  return !p || p->admit(vm_side(vs, pm), m->pkt_len, rte_rdtsc());
}

void Worker::count_vm(uint16_t vm, const PacketMeta& pm, const rte_mbuf* m) {
  vm_rows_[vm].traffic.count(vm_side(dp_.vms().slot(vm), pm), m->pkt_len);
}

// Change tracking for a VM under migration. The VM's epoch is bumped by the control core at
// each delta round, followed by a grace period; an entry changed in an epoch is queued once
// for it. Costs one load of the VM's state for VMs not being migrated.
void Worker::note_change(uint32_t slot, ConnEntry& e) {
  VmSlot& vs = dp_.vms().slot(e.vm_id);
  VmState st = vs.state.load(std::memory_order_relaxed);
  // kFrozen too: a packet whose processing began before the freeze (it saw kTracking) may
  // finish after it; its change must still reach the final delta, which drains the rings
  // only after the grace period that waits for this very packet.
  if (likely(st != VmState::kTracking && st != VmState::kFrozen)) return;
  uint16_t epoch = vs.epoch.load(std::memory_order_acquire);
  if (e.mig_epoch == epoch) return;
  e.mig_epoch = epoch;  // owner-only field, outside the version bracket on purpose
  queue_change(vs, epoch, slot);
}

void Worker::queue_change(VmSlot& vs, uint16_t epoch, uint32_t slot) {
  const int p = VmSlot::parity(epoch);
  rte_ring* r = vs.dirty[p][id_];
  if (!r || rte_ring_sp_enqueue_elem(r, &slot, sizeof slot) != 0)
    vs.dirty_overflow[p].store(true, std::memory_order_release);
}

void Worker::forget(uint32_t slot) {
  ConnEntry& e = table_->entry(slot);
  const FlowKey k = table_->key(slot);
  restate(k.proto, e, e.l4_state, -1, [&] { return initiator_side(k, e); });
  if (l7_) l7_->forget(slot);
  if (e.flags & connflag::kXlate) {
    const ConnXlate& x = xlate_->at(slot);
    Dir rd;
    xlate_->remove_reply(reply_key(x, k.proto, k.vlan, &rd));
    translator_->release(id_, x, k.proto, now_s_);
  }
  if (e.vm_id) {
    // A removal is a change too: the migration reader turns the vanished slot into a tombstone.
    VmSlot& vs = dp_.vms().slot(e.vm_id);
    VmState st = vs.state.load(std::memory_order_relaxed);
    if (st == VmState::kTracking || st == VmState::kFrozen)
      queue_change(vs, vs.epoch.load(std::memory_order_acquire), slot);
  }
}

bool Worker::hold(rte_mbuf* m, uint16_t vm) {
  VmSlot& vs = dp_.vms().slot(vm);
  if (vs.hold && rte_ring_mp_enqueue(vs.hold, m) == 0) {
    vs.held.fetch_add(1, std::memory_order_relaxed);
    stats_.held_packets++;
    return true;
  }
  vs.hold_dropped.fetch_add(1, std::memory_order_relaxed);
  drop(m, DropReason::kFrozenOverflow);
  return false;
}

// ---- translation (translator.h, nat/conn_xlate.h) -----------------------------------------------

XlateVerdict Worker::decide_xlate(const PacketMeta& pm, ConnXlate* x) {
  if (pm.l3 != L3Kind::kIpv4 || !pm.has_l4) return {};
  return translator_->decide(id_, pm.tuple, now_s_, x, [&](const Tuple& reply) {
    Dir rd;
    const FlowKey rk = canonical_key(reply, &rd);
    return xlate_->lookup_reply(rk) >= 0 || table_->lookup(rk) >= 0;
  });
}

// A new connection's reply tuple may still belong to a connection that is over: a client that
// reuses its port towards another VIP which picks the same backend, a backend's TIME_WAIT. A
// closed TCP connection gives the tuple up (as a SYN does to a TIME_WAIT entry in Linux
// conntrack); a live one keeps it and the new connection is refused (false).
bool Worker::reclaim_dead(const FlowKey& rk) {
  int32_t other = xlate_->lookup_reply(rk);
  if (other < 0) other = table_->lookup(rk);
  if (other < 0) return true;
  const ConnEntry& e = table_->entry(static_cast<uint32_t>(other));
  const auto st = static_cast<TcpState>(e.l4_state);
  if (rk.proto != 6 || (st != TcpState::kTimeWait && st != TcpState::kClose)) return false;
  forget(static_cast<uint32_t>(other));
  table_->remove(static_cast<uint32_t>(other));
  stats_.conn_closed++;
  removed_in_burst_ = true;  // later packets of this burst may hold its slot
  return true;
}

bool Worker::attach_xlate(uint32_t slot, const ConnXlate& x, uint8_t proto, uint16_t vlan,
                          int* rc) {
  // The record first, then the flag inside a write bracket: a reader that sees the flag
  // reads a complete record (conn_xlate.h).
  record_xlate(slot, x);
  Dir rd;
  const FlowKey rk = reply_key(x, proto, vlan, &rd);
  *rc = -EEXIST;
  if (!reclaim_dead(rk) || !xlate_->add_reply(rk, slot, rc)) return false;
  reply_sig_ = ConnTable::hash(rk);
  table_->begin_write(slot);
  table_->entry(slot).flags |= connflag::kXlate;
  table_->end_write(slot);
  return true;
}

void Worker::record_xlate(uint32_t slot, const ConnXlate& x) {
  XlateRewrite& r = xlate_->set(slot, x);
  if (!l3_) return;
  for (int i = 0; i < 2; i++) {  // the router does not change under a running dataplane
    const int route = router_->route_index(router_->route(r.src[1 - i]));
    if (route >= 0 && route < XlateRewrite::kNoRoute) r.route[i] = static_cast<uint16_t>(route);
  }
}

bool Worker::translate(rte_mbuf* m, const PacketMeta& pm, uint32_t slot, bool orig) {
  const XlateRewrite& r = xlate_->rewrite(slot);
  const int i = orig ? 0 : 1;
  const uint8_t proto = pm.tuple.proto;
  uint8_t* pkt = rte_pktmbuf_mtod(m, uint8_t*);
  const bool done = likely((proto == 6 || proto == 17) && !pm.icmp.is_error) &&
                    rewrite_v4_known(pkt + pm.l3_offset, pkt + pm.l4_offset, proto == 6, r, i);
  if (!done && !translate_other(m, pm, r.to(i))) return false;
  stats_.xlated_packets++;
  // Where the packet now goes, src[1 - i], has its route kept with the connection
  // (record_xlate); without one, transmit_l3 routes the new destination.
  if (l3_ && r.route[i] != XlateRewrite::kNoRoute)
    stash_route(m, r.route[i], static_cast<uint16_t>(stashed_l3_offset(m)));
  return true;
}

// ICMP queries, ICMP errors, and a TCP/UDP packet without its direction's tuple (the rewrite's
// deltas are not its change): summed from the packet. Out of line: rare, and its locals would
// cost translate() a stack frame.
bool Worker::translate_other(rte_mbuf* m, const PacketMeta& pm, const V4Endpoints& to) {
  uint8_t* ip = rte_pktmbuf_mtod(m, uint8_t*) + pm.l3_offset;
  if (!pm.icmp.is_error) {
    rewrite_v4(ip, rte_pktmbuf_mtod(m, uint8_t*) + pm.l4_offset, pm.tuple.proto,
               pm.tuple.proto == 1 && pm.icmp.type == 0, to);
    return true;
  }
  // An ICMP error about a translated packet (RFC 5508 section 4.2): it goes to the translated
  // endpoint (and comes from its translated peer if the peer itself sent it), and the packet
  // it quotes, which went the other way, is translated back.
  PacketRewrite outer, quoted;
  outer.dst_addr = to.dst;
  if (pm.tuple.src == pm.icmp.inner.dst) outer.src_addr = to.src;
  quoted.src_addr = to.dst;
  quoted.src_port = to.dport;
  quoted.dst_addr = to.src;
  quoted.dst_port = to.sport;
  return translate_icmp_error(ip, m->data_len - pm.l3_offset, outer, quoted) == XlateError::kOk;
}

Worker::FragSlot& Worker::frag_slot(const PacketMeta& pm) {
  uint32_t h = pm.frag_id * 2654435761u ^ pm.tuple.src.b[3] ^ (pm.tuple.dst.b[3] << 8);
  return frags_[h % kFragSlots];
}

// After the first fragment was processed (and translated, if its connection is): its later
// fragments pass, with the addresses it left with.
void Worker::accept_first_fragment(const rte_mbuf* m, const PacketMeta& pm, bool translated) {
  frag_slot(pm).accept(pm, id_, now_s_ + kFragLifetimeS,
                       translated ? rte_pktmbuf_mtod(m, const uint8_t*) + pm.l3_offset : nullptr);
}

void Worker::FragSlot::note(const PacketMeta& pm, uint16_t to, uint32_t until) {
  *this = FragSlot{pm.tuple.src, pm.tuple.dst, pm.frag_id, pm.tuple.proto};
  owner = to;
  expires = until;
}

void Worker::FragSlot::accept(const PacketMeta& pm, uint16_t self, uint32_t until,
                              const uint8_t* xlated_ip) {
  note(pm, self, until);
  valid = true;
  if (!xlated_ip) return;
  xlate = true;
  std::memcpy(&xlate_src, xlated_ip + 12, 4);
  std::memcpy(&xlate_dst, xlated_ip + 16, 4);
}

// ---- mode l3 (router.h) ------------------------------------------------------------------------

// Before conntrack: what is not ours to route is dropped before it touches state. Reads only: a
// packet handed to its flow's owner or parked and re-injected runs it again unchanged. Where IPv4
// starts is stashed in the mbuf (stash_route) for forward_l3, which is where the frame is
// rewritten, and the route is found there, for the destination the packet leaves with.
// Per-packet LPM rather than a route cached in the conntrack entry: a lookup is one binary
// search over a few ranges, and a cache would need room in the entry for little gain. A
// translated connection is the exception: its packets' new destinations are fixed, and their
// routes are kept with its rewrite (record_xlate), so such a packet is routed by no lookup at
// all, where routing here, before translation, would look up a destination it leaves without.
bool Worker::l3_ingress(rte_mbuf* m, const PacketMeta& pm) {
  const int in = dp_.port_index(m->port);
  if (unlikely(in < 0)) return drop(m, DropReason::kNoRoute), false;
  if (pm.l3 != L3Kind::kIpv4) return drop(m, DropReason::kIpv6Unrouted), false;
  // Untagged interfaces only; broadcast and multicast frames are not routed (no host stack).
  if (pm.tuple.vlan || pm.outer_vlan || pm.dst_mac != router_->port_mac(static_cast<uint16_t>(in)))
    return drop(m, DropReason::kNotForUs), false;
  const be32 dst = pm.tuple.dst.as_v4();
  if (router_->is_local(dst)) return drop(m, DropReason::kLocalDelivery), false;
  if (pm.ttl <= 1) return drop(m, DropReason::kTtlExceeded), false;  // no ICMP time exceeded
  // Routed when it leaves (transmit_l3), by the destination it leaves with: a translated
  // connection's packets by the route kept with its rewrite (record_xlate), the others by a
  // lookup then. A new connection is refused before it creates state if nothing routes where
  // it goes (handle_new); routes do not change under a running dataplane.
  stash_route(m, kNoRouteIndex, pm.l3_offset);
  return true;
}

void Worker::forward_l3(rte_mbuf* m) {
  ipv4_decrement_ttl(rte_pktmbuf_mtod(m, uint8_t*) + stashed_l3_offset(m));
  transmit_l3(m);
}

// The route stashed in the mbuf (hash.usr), the neighbour's MAC, staged for TX.
void Worker::transmit_l3(rte_mbuf* m) {
  uint8_t* eth = rte_pktmbuf_mtod(m, uint8_t*);
  uint8_t* ip = eth + stashed_l3_offset(m);
  uint32_t dst_raw;
  std::memcpy(&dst_raw, ip + 16, 4);
  uint32_t route = stashed_route(m);
  if (route == kNoRouteIndex) {
    const int found = router_->route_index(router_->route(be32::from_raw(dst_raw)));
    if (found < 0) return drop(m, DropReason::kNoRoute);
    route = static_cast<uint32_t>(found);
  }
  if (unlikely(route >= router_->routes().size())) return drop(m, DropReason::kNoRoute);
  const RouteEntry& r = router_->route_at(route);
  const be32 nh = r.next_hop(be32::from_raw(dst_raw));
  NeighborLookup nb;  // filled in place, then read field by field (router.h)
  neighbors_.lookup(*router_, nh, now_s_, &nb);
  if (nb.solicit) ask_neighbor(r.port, nh);
  // A VM served here is reachable at its declared MAC before ARP has resolved it. Otherwise a
  // VM that just arrived by migration would lose every packet parked during the freeze (they
  // are released at activation, before any ARP exchange with the VM) as neighbor_miss.
  if (!nb.usable && !(r.connected() && declared_vm_mac(dp_.vms(), nh, &nb.mac)))
    return drop(m, DropReason::kNeighborMiss);
  std::memcpy(eth, nb.mac.b.data(), 6);
  std::memcpy(eth + 6, router_->port_mac(r.port).b.data(), 6);
  TxBuf& t = tx_[r.port];
  t.pkts[t.n++] = m;
  if (t.n == kMaxBurst * 2) flush_tx();
}

// On worker 0 only (every ARP frame is handed to it). A request for our address is turned into
// the reply in place and sent back out of the port it came in on.
void Worker::handle_arp(rte_mbuf* m, const PacketMeta& pm) {
  const int in = dp_.port_index(m->port);
  if (in < 0 || pm.tuple.vlan || pm.outer_vlan || m->data_len < kArpFrameLen)
    return drop(m, DropReason::kArpIgnored);
  ArpView a{pm.arp_op, pm.arp_sender_mac, pm.arp_sender_ip.as_v4(), pm.arp_target_ip.as_v4()};
  uint8_t* frame = rte_pktmbuf_mtod(m, uint8_t*);
  switch (neighbor_owner_->on_arp(static_cast<uint16_t>(in), a, now_s_, frame)) {
    case ArpVerdict::kReply: {
      rte_pktmbuf_trim(m, static_cast<uint16_t>(m->data_len - kArpFrameLen));
      TxBuf& t = tx_[in];
      t.pkts[t.n++] = m;
      if (t.n == kMaxBurst * 2) flush_tx();
      return;
    }
    case ArpVerdict::kLearned:
      stats_.local_in++;  // consumed by Baton itself: neither forwarded nor dropped
      rte_pktmbuf_free(m);
      return;
    case ArpVerdict::kIgnored:
      return drop(m, DropReason::kArpIgnored);
  }
}

// A packet needs next hop ip on port. The owner runs the neighbour state machine (which
// rate-limits requests); any other worker tells the owner, at most once a second per address.
void Worker::ask_neighbor(uint16_t port, be32 ip) {
  if (neighbor_owner_) {
    uint8_t req[kArpFrameLen];
    if (neighbor_owner_->solicit(port, ip, now_s_, req)) send_frame(port, req, kArpFrameLen);
    return;
  }
  AskMemo& a = asked_[(ip.raw() * 2654435761u) >> 26];
  if (a.ip == ip.raw() && a.when == now_s_) return;
  a = AskMemo{ip.raw(), now_s_};
  dp_.workers()[0]->resolve(uint64_t(ip.raw()) | uint64_t(port) << 32);  // full ring: next time
}

void Worker::send_frame(uint16_t port, const uint8_t* frame, uint32_t len) {
  if (port >= tx_.size()) return;
  rte_mbuf* m = rte_pktmbuf_alloc(dp_.pool());
  if (!m) return;
  stats_.local_out++;  // originated here: counted in tx, never in rx
  char* p = rte_pktmbuf_append(m, static_cast<uint16_t>(len));
  if (!p) {
    rte_pktmbuf_free(m);
    return;
  }
  std::memcpy(p, frame, len);
  TxBuf& t = tx_[port];
  t.pkts[t.n++] = m;
  if (t.n == kMaxBurst * 2) flush_tx();
}

void Worker::forward(rte_mbuf* m) {
  if (l3_) return forward_l3(m);  // the egress port is a per-packet decision
  // Transparent L2: a bump in the wire between exactly two ports.
  int in = dp_.port_index(m->port);
  int out = (in == 0) ? 1 : 0;
  if (unlikely(in < 0 || static_cast<size_t>(out) >= tx_.size()))
    return drop(m, DropReason::kNoRoute);
  TxBuf& t = tx_[out];
  t.pkts[t.n++] = m;
  if (t.n == kMaxBurst * 2) flush_tx();
}

void Worker::drop(rte_mbuf* m, DropReason r) {
  stats_.dropped++;
  stats_.drops[static_cast<int>(r)]++;
  rte_pktmbuf_free(m);
}

void Worker::flush_tx() {
  std::vector<Port>& ports = dp_.ports().all();
  for (size_t p = 0; p < tx_.size(); p++) {
    TxBuf& t = tx_[p];
    if (!t.n) continue;
    if (tx_sink_) {  // tests and benchmarks without ports (worker.h, TxSink)
      tx_sink_->fn(tx_sink_->ctx, static_cast<uint16_t>(p), t.pkts, t.n);
      stats_.tx_packets += t.n;
      t.n = 0;
      continue;
    }
    Port& port = ports[p];
    uint16_t q = id_ % port.tx_queues;
    uint32_t sent = 0;
    if (port.shared_tx) rte_spinlock_lock(&port.tx_locks[q]);
    for (int tries = 0; tries < 4 && sent < t.n; tries++)
      sent += rte_eth_tx_burst(port.port_id, q, t.pkts + sent, t.n - sent);
    if (port.shared_tx) rte_spinlock_unlock(&port.tx_locks[q]);
    stats_.tx_packets += sent;
    for (uint32_t i = sent; i < t.n; i++) drop(t.pkts[i], DropReason::kTxFull);
    t.n = 0;
  }
}

// The entry's class changed from old_class. It moves to its new class's aging list only if that
// class times out sooner; otherwise aging moves it when its old list brings it up (ConnTable::
// expire judges every head by its own class). A connection's life is mostly changes to longer
// timeouts (SYN_RECV -> ESTABLISHED, LAST_ACK -> TIME_WAIT): list moves spared, with the
// neighbours' lines they touch.
void Worker::reclass(uint32_t slot, uint8_t old_class) {
  const Timeouts& to = dp_.config().conntrack.timeouts;
  const uint8_t cls = table_->entry(slot).age_class;
  if (age_class_timeout(to, cls) < age_class_timeout(to, old_class)) table_->set_age_class(slot, cls);
}

void Worker::age() {
  const Timeouts& to = dp_.config().conntrack.timeouts;
  uint32_t removed = table_->expire(
      now_s_, kAgeBudget,
      [&](const ConnEntry& e) {
        // Entries of a VM being handed off must stay until the migration decides.
        if (e.vm_id) {
          VmState st = dp_.vms().slot(e.vm_id).state.load(std::memory_order_relaxed);
          if (st == VmState::kFrozen || st == VmState::kArriving) return UINT32_MAX;
        }
        return age_class_timeout(to, e.age_class);
      },
      [&](uint32_t slot) { forget(slot); });
  stats_.conn_expired += removed;
  if (translator_) translator_->age(id_, now_s_, kAgeBudget);
}

}  // namespace baton
