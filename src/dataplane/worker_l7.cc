// SPDX-License-Identifier: Apache-2.0
//
// The worker's side of the L7 (HTTP/1.1) services: what lb/l7_proxy.h describes, wired into
// the pipeline. Entry points from worker.cc: handle_new() hands a packet to an L7 VIP that
// matched no connection to l7_unknown() (SYN cookie, cookie ACK); handle_known() hands every
// packet of an L7 connection (its side-table record has a phase) to l7_segment(), from the
// client (keyed by the client tuple) or from the backend (found through the ConnXlate reply
// index once the backend side is open); forget() drops the record with the connection, and
// housekeeping() runs l7_age().
//
// Conntrack follows the connection as the client sees it, strictly: the entry is created from
// the client's SYN and batond's SYN-ACK (rebuilt from the cookie), then tracks the client's
// segments as they come, the segments batond writes to the client, and the backend's segments
// after the splice rewrite. Segments between batond and the backend that the client never sees
// (the backend handshake, the replay) are not tracked: their bytes are the client's, which the
// entry has seen already.
//
// Frames batond writes leave through transmit_l3 (route, neighbour; no TTL decrement); they
// count as local_out, and packets batond consumes (SYNs answered, head segments buffered) as
// local_in.
//
// VMs (migration). An L7 connection belongs to the VM at its client's address, else, once the
// head chose a backend, to the VM at the backend's: the entry is created under the client's VM
// and re-filed under the backend's at l7_bind (the VM index is fixed at insert, so the entry is
// inserted again, before its translation exists). Every change a migration carries (tracked
// segments, phase, head buffer freed) is noted for the VM's deltas (note_change).
#include <rte_cycles.h>
#include <rte_mbuf.h>

#include <cerrno>
#include <cstring>

#include "conntrack/age_class.h"
#include "conntrack/conn_table.h"
#include "dataplane/dataplane.h"
#include "dataplane/router.h"
#include "dataplane/worker.h"

namespace baton {
namespace {

using namespace tcpflag;
using tcpseq::after;
using tcpseq::before;

constexpr std::string_view k400 =
    "HTTP/1.1 400 Bad Request\r\nContent-Type: text/plain\r\nContent-Length: 12\r\n"
    "Connection: close\r\n\r\nBad Request\n";
constexpr std::string_view k503 =
    "HTTP/1.1 503 Service Unavailable\r\nContent-Type: text/plain\r\nContent-Length: 20\r\n"
    "Connection: close\r\n\r\nService Unavailable\n";
constexpr uint32_t kMaxReplaySegment = 1460;  // fits an mbuf with every header and option

// TSval clock of the SYN-ACKs: milliseconds (RFC 7323 5.4 allows 1 ms to 1 s per tick).
uint32_t ts_clock_ms() {
  return static_cast<uint32_t>(rte_get_tsc_cycles() / (rte_get_tsc_hz() / 1000));
}

uint32_t load32(const uint8_t* p) {
  return uint32_t{p[0]} << 24 | uint32_t{p[1]} << 16 | uint32_t{p[2]} << 8 | p[3];
}

// A segment batond writes, as the tracker reads segments off the wire.
TcpInfo tcp_info(const TcpSegmentSpec& s) {
  TcpInfo t;
  t.seq = s.seq;
  t.ack = s.ack;
  t.window = s.window;
  t.flags = s.flags;
  t.has_timestamp = s.timestamps;
  t.tsval = s.tsval;
  t.tsecr = s.tsecr;
  t.payload_len = static_cast<uint16_t>(s.payload.size());
  return t;
}

std::span<const uint8_t> bytes_of(std::string_view s) {
  return {reinterpret_cast<const uint8_t*>(s.data()), s.size()};
}

// The backend side of a connection: local address:port -> backend:port.
Tuple backend_tuple(const ConnXlate& x) {
  return reply_tuple(x, 6, 0).reverse();
}

TcpSegmentSpec reset_to(const Tuple& t, uint32_t seq) {
  TcpSegmentSpec s;
  s.src = t.src.as_v4();
  s.dst = t.dst.as_v4();
  s.sport = t.sport;
  s.dport = t.dport;
  s.seq = seq;
  s.flags = kRst;
  return s;
}

}  // namespace

void Worker::consume(rte_mbuf* m) {
  stats_.local_in++;
  rte_pktmbuf_free(m);
}

uint32_t Worker::l7_emit(const TcpSegmentSpec& s) {
  const RouteEntry* r = router_->route(s.dst);
  rte_mbuf* m = r ? rte_pktmbuf_alloc(dp_.pool()) : nullptr;
  if (!m) return 0;  // no route (config) or no mbuf: as a segment lost on the way
  const size_t len = write_tcp_frame(s, rte_pktmbuf_mtod(m, uint8_t*), rte_pktmbuf_tailroom(m));
  if (!len || !rte_pktmbuf_append(m, static_cast<uint16_t>(len))) {
    rte_pktmbuf_free(m);
    return 0;
  }
  stash_route(m, static_cast<uint32_t>(router_->route_index(r)), kEthHeaderLen);
  stats_.local_out++;
  transmit_l3(m);
  return static_cast<uint32_t>(len);
}

// handle_known's TCP bookkeeping, for the client's view of an L7 connection.
TcpVerdict Worker::l7_track(uint32_t slot, Dir d, const TcpInfo& seg, uint32_t len) {
  ConnEntry& e = table_->entry(slot);
  const uint8_t old_state = e.l4_state, old_class = e.age_class;
  table_->begin_write(slot);
  const TcpVerdict v = dp_.tracker().track(e, d, seg);
  if (v.accept) {
    if (v.state_changed) {
      restate(6, e, old_state, e.l4_state, [&] { return initiator_side(table_->key(slot), e); });
      e.age_class = static_cast<uint8_t>(age_class_of(6, static_cast<TcpState>(e.l4_state), false));
    }
    table_->count(slot, d, len);
    e.last_seen = now_s_;
  }
  table_->end_write(slot);
  if (e.age_class != old_class) reclass(slot, old_class);
  if (v.accept && e.vm_id) note_change(slot, e);
  return v;
}

void Worker::l7_set_phase(uint32_t slot, L7Phase p) {
  L7ConnRecord& r = l7_->record(slot);
  table_->begin_write(slot);
  r.phase = p;
  table_->end_write(slot);
  if (ConnEntry& e = table_->entry(slot); e.vm_id) note_change(slot, e);
  if (p == L7Phase::kClosed) l7_free_buffer(slot);
  if (r.pending != kNoPending) l7_->pending(r.pending).since = now_s_;
}

void Worker::l7_free_buffer(uint32_t slot) {
  L7ConnRecord& r = l7_->record(slot);
  if (r.pending == kNoPending) return;
  table_->begin_write(slot);
  l7_->release(r.pending);
  r.pending = kNoPending;
  table_->end_write(slot);
  // A spliced connection without its buffer is one a migration carries: a delta must see it.
  if (ConnEntry& e = table_->entry(slot); e.vm_id) note_change(slot, e);
}

bool Worker::l7_relink(uint32_t* slot, uint16_t vm) {
  const uint32_t old = *slot;
  ConnEntry e = table_->entry(old);
  const FlowKey k = table_->key(old);
  const L7ConnRecord r = l7_->record(old);
  table_->begin_write(old);
  l7_->record(old) = L7ConnRecord{};  // the buffer moves with the record, not back to the pool
  table_->end_write(old);
  table_->remove(old);
  removed_in_burst_ = true;  // later packets of this burst may hold the old slot
  e.vm_id = vm;
  e.mig_epoch = 0;
  const int32_t ns = table_->insert(k, e, nullptr, ConnTable::Version::kAfterSlot);
  if (ns < 0) {
    l7_->release(r.pending);
    restate(6, e, e.l4_state, -1, [&] { return initiator_side(k, e); });
    stats_.conn_closed++;
    return false;
  }
  *slot = static_cast<uint32_t>(ns);
  table_->begin_write(*slot);
  l7_->record(*slot) = r;
  table_->end_write(*slot);
  if (r.pending != kNoPending) l7_->pending(r.pending).conn_slot = *slot;
  note_change(*slot, table_->entry(*slot));
  return true;
}

// ---- no connection yet: the stateless half ---------------------------------------------------

void Worker::l7_unknown(rte_mbuf* m, const PacketMeta& pm, const FlowKey& k, Dir d, int service) {
  const TcpInfo& tcp = pm.tcp;
  const LoadBalancer::Service& s = lb_->services()[service];
  if (TcpTracker::may_create(tcp)) {  // a SYN: the cookie answers it, nothing is stored
    l7_emit(l7_->syn_ack(pm.tuple, tcp, s.cfg.max_request_head, now_s_, ts_clock_ms()));
    stats_.l7_syn_cookies++;
    return consume(m);
  }
  if ((tcp.flags & (kSyn | kRst | kFin | kAck)) != kAck) return drop(m, DropReason::kNoConnection);
  std::optional<TcpSynOptions> opts = l7_->check_cookie(pm.tuple, tcp, now_s_);
  if (!opts) return drop(m, DropReason::kL7BadCookie);
  if (!l7_->pool_free()) return drop(m, DropReason::kL7Busy);  // as a full accept queue
  const uint16_t vm = dp_.vms().find_by_ip(pm.tuple.src, pm.tuple.family);
  if (vm) {
    const VmState st = dp_.vms().slot(vm).state.load(std::memory_order_acquire);
    if (st == VmState::kFrozen || st == VmState::kArriving) {
      hold(m, vm);
      return;
    }
  }

  ConnEntry e;
  e.vm_id = vm;
  const int pidx = dp_.port_index(m->port);
  e.zone = pidx >= 0 ? dp_.ports().all()[pidx].zone_id : 0;
  e.last_seen = now_s_;
  TcpInfo syn, syn_ack;
  L7Proxy::handshake(tcp, *opts, s.cfg.max_request_head, &syn, &syn_ack);
  dp_.tracker().init(e, d, syn);
  if (!dp_.tracker().track(e, opposite(d), syn_ack).accept) return drop(m, DropReason::kTcpInvalid);
  e.age_class = static_cast<uint8_t>(age_class_of(6, static_cast<TcpState>(e.l4_state), false));
  e.flags |= connflag::kL7;
  const int32_t slot = table_->insert(k, e, nullptr, ConnTable::Version::kAfterSlot);
  if (slot < 0) return drop(m, DropReason::kTableFull);
  const uint32_t us = static_cast<uint32_t>(slot);
  const uint32_t pending = l7_->open(us, tcp, *opts, now_s_);
  L7ConnRecord& r = l7_->record(us);
  table_->begin_write(us);
  r = L7ConnRecord{};
  r.phase = L7Phase::kReading;
  r.service = static_cast<uint16_t>(service);
  r.pending = pending;
  table_->end_write(us);
  stats_.conn_created++;
  restate(6, e, -1, e.l4_state, [&] { return initiator_side(k, e); });
  stats_.l7_accepted++;
  if (vm) note_change(us, table_->entry(us));
  l7_segment(m, pm, us, true);  // the ACK itself (and any data it carries)
}

// ---- a packet of an L7 connection ------------------------------------------------------------

void Worker::l7_segment(rte_mbuf* m, const PacketMeta& pm, uint32_t slot, bool from_client) {
  L7ConnRecord& r = l7_->record(slot);
  const ConnEntry& e = table_->entry(slot);
  const Dir od = e.orig_dir();
  const TcpInfo& tcp = pm.tcp;

  if (from_client && TcpTracker::may_create(tcp)) {
    // The client reuses its port after the connection ended: a fresh handshake, by cookie.
    const auto st = static_cast<TcpState>(e.l4_state);
    if (st != TcpState::kTimeWait && st != TcpState::kClose && r.phase != L7Phase::kClosed)
      return drop(m, DropReason::kTcpInvalid);
    const FlowKey k = table_->key(slot);
    const int service = r.service;
    forget(slot);
    table_->remove(slot);
    stats_.conn_closed++;
    return l7_unknown(m, pm, k, od, service);
  }

  if (r.phase == L7Phase::kSpliced) return l7_splice(m, pm, slot, from_client);
  if (!from_client) return l7_backend_early(m, pm, slot);

  // From the client, before the splice.
  if (r.phase == L7Phase::kClosed || r.pending == kNoPending) return consume(m);
  if (r.phase == L7Phase::kReading && tcp.payload_len &&
      !tcp_checksum_ok(rte_pktmbuf_mtod(m, uint8_t*) + pm.l3_offset, m->data_len - pm.l3_offset))
    return drop(m, DropReason::kL7BadChecksum);  // bytes batond would ACK and keep
  const TcpVerdict v = l7_track(slot, od, tcp, m->pkt_len);
  if (!v.accept) return drop(m, v.reason);
  L7Pending& p = l7_->pending(r.pending);
  if (tcp.has_timestamp) p.client_tsval = tcp.tsval;
  p.client_window = tcp.window;
  if (tcp.flags & kRst) {  // the client gave up
    if (r.phase == L7Phase::kConnecting)
      l7_emit(reset_to(backend_tuple(xlate_->at(slot)), p.client_isn + 1));
    l7_set_phase(slot, L7Phase::kClosed);
    return consume(m);
  }
  switch (r.phase) {
    case L7Phase::kReading:
      return l7_read(m, pm, slot);
    case L7Phase::kConnecting:
      // Nothing is ACKed while the backend side opens. A retransmission of bytes batond holds
      // means the client still waits: the SYN goes again (the client's RTO is the timer).
      if (tcp.payload_len && before(tcp.seq, p.rcv_nxt)) {
        l7_emit(l7_->backend_syn(p, backend_tuple(xlate_->at(slot))));
        return consume(m);
      }
      if (tcp.payload_len || (tcp.flags & kFin)) return drop(m, DropReason::kL7Held);
      return consume(m);
    case L7Phase::kResponded: {
      // Closing after batond's answer: the client's data and FIN are ACKed and discarded.
      const uint32_t end = tcp.seq + tcp.payload_len + ((tcp.flags & kFin) ? 1 : 0);
      if (end != tcp.seq) {
        if (after(end, p.rcv_nxt)) p.rcv_nxt = end;
        l7_to_client(slot, kAck);
      }
      if (static_cast<TcpState>(e.l4_state) == TcpState::kTimeWait) l7_free_buffer(slot);  // closed both ways
      return consume(m);
    }
    default:
      return drop(m, DropReason::kL7BadSegment);
  }
}

// The fast path of a spliced connection: offsets, tracking, addresses, forward. A segment is
// rewritten before it is tracked (a refused one is dropped, rewritten or not); the client's is
// tracked as it came, the backend's as the client will see it.
void Worker::l7_splice(rte_mbuf* m, const PacketMeta& pm, uint32_t slot, bool from_client) {
  L7ConnRecord& r = l7_->record(slot);
  const Dir od = table_->entry(slot).orig_dir();
  const TcpInfo& tcp = pm.tcp;
  uint8_t* th = rte_pktmbuf_mtod(m, uint8_t*) + pm.l4_offset;
  const size_t tlen = m->data_len - pm.l4_offset;
  if (from_client) {
    if (rewrite_segment(r.offsets.to_backend, th, tlen) != SpliceRewrite::kOk)
      return drop(m, DropReason::kL7BadSegment);
    const TcpVerdict v = l7_track(slot, od, tcp, m->pkt_len);
    if (!v.accept) return drop(m, v.reason);
  } else {
    if (r.pending != kNoPending) {
      // The replay is not acknowledged yet: a SYN-ACK again means it was lost, a repeated
      // ACK short of its end that part of it was; either way it goes again.
      L7Pending& p = l7_->pending(r.pending);
      const uint32_t replay_end = p.client_isn + 1 + p.len;
      if (tcp.flags & kSyn) {
        if ((tcp.flags & kAck) && tcp.seq == p.backend_isn) l7_replay(slot, 0);
        return consume(m);
      }
      if ((tcp.flags & kAck) && !before(tcp.ack, replay_end)) {
        l7_free_buffer(slot);
      } else if ((tcp.flags & kAck) && !tcp.payload_len && tcp.ack == p.backend_ack &&
                 after(tcp.ack, p.client_isn)) {
        l7_replay(slot, tcp.ack - (p.client_isn + 1));
      } else {
        p.backend_ack = tcp.ack;
      }
    }
    if (rewrite_segment(r.offsets.to_client, th, tlen) != SpliceRewrite::kOk)
      return drop(m, DropReason::kL7BadSegment);
    TcpInfo seen = tcp;  // what the client will see: conntrack's view
    seen.seq = load32(th + 4);
    seen.ack = load32(th + 8);
    seen.window = static_cast<uint16_t>(th[14] << 8 | th[15]);
    const TcpVerdict v = l7_track(slot, opposite(od), seen, m->pkt_len);
    if (!v.accept) return drop(m, v.reason);
  }
  translate(m, pm, slot, from_client);
  return forward(m);
}

// A backend segment before the splice: its SYN-ACK (or refusal) while connecting; after a reset,
// anything but a RST is answered with one.
void Worker::l7_backend_early(rte_mbuf* m, const PacketMeta& pm, uint32_t slot) {
  const L7ConnRecord& r = l7_->record(slot);
  const TcpInfo& tcp = pm.tcp;
  if (r.phase == L7Phase::kConnecting) {
    const L7Pending& p = l7_->pending(r.pending);
    const bool acks_syn = (tcp.flags & kAck) && tcp.ack == p.client_isn + 1;
    if ((tcp.flags & (kSyn | kAck | kRst | kFin)) == (kSyn | kAck) && acks_syn)
      return l7_backend_synack(m, pm, slot);
    if ((tcp.flags & kRst) && acks_syn) {  // the backend refused
      stats_.l7_resets++;
      l7_reset(slot);
      return consume(m);
    }
  } else if (r.phase == L7Phase::kClosed && !(tcp.flags & kRst) && (tcp.flags & kAck)) {
    l7_emit(reset_to(backend_tuple(xlate_->at(slot)), tcp.ack));  // the client is gone
  }
  return drop(m, DropReason::kL7BadSegment);
}

// Phase kReading: a client segment, tracked, with payload or a FIN.
void Worker::l7_read(rte_mbuf* m, const PacketMeta& pm, uint32_t slot) {
  const L7ConnRecord& r = l7_->record(slot);
  L7Pending& p = l7_->pending(r.pending);
  const TcpInfo& tcp = pm.tcp;
  if (!tcp.payload_len) {
    if (tcp.flags & kFin) {  // closed before a whole request: nothing to route
      stats_.l7_resets++;
      l7_reset(slot);
    }
    return consume(m);
  }
  const uint8_t* data = rte_pktmbuf_mtod(m, const uint8_t*) + pm.payload_offset;
  const uint32_t max_head = lb_->services()[r.service].cfg.max_request_head;
  switch (l7_->take(p, tcp.seq, {data, tcp.payload_len}, max_head)) {
    case L7Take::kNeedMore:
    case L7Take::kDuplicate:
      l7_to_client(slot, kAck);
      return consume(m);
    case L7Take::kGap:
      l7_to_client(slot, kAck);  // a duplicate ACK: asks for what is missing
      return drop(m, DropReason::kL7OutOfOrder);
    case L7Take::kComplete:
      stats_.l7_heads++;
      return l7_bind(m, slot);
    case L7Take::kTooLarge:
      stats_.l7_head_too_large++;
      l7_respond(slot, 400);
      return consume(m);
    case L7Take::kMalformed:
      stats_.l7_head_malformed++;
      l7_respond(slot, 400);
      return consume(m);
  }
}

// The head is complete: route it, choose the backend, open the backend side.
void Worker::l7_bind(rte_mbuf* m, uint32_t slot) {
  ConnXlate x;
  {
    const L7ConnRecord& r = l7_->record(slot);
    const ConnEntry& e = table_->entry(slot);
    const L7Decision route = lb_->services()[r.service].router->route(*l7_->pending(r.pending).parser);
    auto taken = [&](const Tuple& reply) {
      Dir rd;
      const FlowKey rk = FlowKey::from_tuple(reply, &rd);
      return xlate_->lookup_reply(rk) >= 0 || table_->lookup(rk) >= 0;
    };
    if (lb_->decide_l7(id_, table_->key(slot).tuple(e.orig_dir()), r.service, route.pool,
                       route.sticky_key, now_s_, &x, taken) != LoadBalancer::Verdict::kTranslate) {
      stats_.l7_no_backend++;
      l7_respond(slot, 503);
      return consume(m);
    }
    // The backend is a VM: the connection is its state from now on (header comment).
    const uint16_t vm = e.vm_id ? 0 : dp_.vms().find_by_ip(IpAddr::v4(x.reply_src), Family::kV4);
    if (vm && !l7_relink(&slot, vm)) {
      translator_->release(id_, x, 6, now_s_);
      return drop(m, DropReason::kTableFull);
    }
  }
  L7ConnRecord& r = l7_->record(slot);
  L7Pending& p = l7_->pending(r.pending);
  ConnEntry& e = table_->entry(slot);
  const Tuple ct = table_->key(slot).tuple(e.orig_dir());
  // As for L4 services: the ACL sees the backend, and nothing we cannot route gets a SYN.
  Tuple seen = ct;
  seen.dst = IpAddr::v4(x.reply_src);
  seen.dport = x.reply_sport;
  DropReason why = DropReason::kCount;
  if (dp_.acl().classify_one(AclQuery{e.zone, seen}).action != Action::kPermit) {
    why = DropReason::kAclDeny;
  } else if (!router_->route(x.reply_src)) {
    why = DropReason::kNoRoute;
  } else {
    record_xlate(slot, x);  // the record before its reply key and flag (conn_xlate.h)
    Dir rd;
    const FlowKey rk = FlowKey::from_tuple(reply_tuple(x, 6, ct.vlan), &rd);
    int rc = 0;
    if (!reclaim_dead(rk) || !xlate_->add_reply(rk, slot, &rc))
      why = rc == -ENOSPC ? DropReason::kNatTableFull : DropReason::kXlateConflict;
  }
  if (why != DropReason::kCount) {
    translator_->release(id_, x, 6, now_s_);
    stats_.l7_resets++;
    l7_reset(slot);
    return drop(m, why);
  }
  table_->begin_write(slot);
  e.flags |= connflag::kXlate;
  r.phase = L7Phase::kConnecting;
  table_->end_write(slot);
  if (e.vm_id) note_change(slot, e);
  p.since = now_s_;
  stats_.conn_translated++;
  l7_emit(l7_->backend_syn(p, backend_tuple(x)));
  consume(m);  // not ACKed: the backend will, once it has the replay
}

void Worker::l7_backend_synack(rte_mbuf* m, const PacketMeta& pm, uint32_t slot) {
  L7ConnRecord& r = l7_->record(slot);
  L7Pending& p = l7_->pending(r.pending);
  const TcpInfo& tcp = pm.tcp;
  SpliceHandshake h;
  h.lb_isn = p.lb_isn;
  h.backend_isn = tcp.seq;
  h.client_timestamps = p.client.timestamps;
  h.backend_timestamps = tcp.has_timestamp;
  h.lb_tsval = p.lb_tsval;
  h.backend_tsval = tcp.tsval;
  h.client_wscale = p.client.wscale;
  h.lb_wscale = p.lb_wscale;
  h.backend_wscale = tcp.wscale == 0xff ? SpliceHandshake::kNoWscale : static_cast<int8_t>(tcp.wscale);
  const std::optional<SpliceOffsets> o = make_splice_offsets(h);
  if (!o) {  // timestamps agreed with the client, refused by the backend
    stats_.l7_resets++;
    l7_reset(slot);
    return drop(m, DropReason::kL7BadSegment);
  }
  p.backend_isn = tcp.seq;
  p.backend_tsval = tcp.tsval;
  p.backend_mss = tcp.mss ? tcp.mss : 536;
  p.backend_ack = tcp.ack;
  table_->begin_write(slot);
  r.offsets = *o;
  r.phase = L7Phase::kSpliced;
  table_->end_write(slot);
  if (ConnEntry& e = table_->entry(slot); e.vm_id) note_change(slot, e);
  p.since = now_s_;
  stats_.l7_splices++;
  l7_replay(slot, 0);
  consume(m);
}

// The buffered bytes from `from` on, to the backend (the first segment ACKs its SYN-ACK).
void Worker::l7_replay(uint32_t slot, uint32_t from) {
  const L7ConnRecord& r = l7_->record(slot);
  const L7Pending& p = l7_->pending(r.pending);
  const Tuple bt = backend_tuple(xlate_->at(slot));
  const uint32_t seg = std::min<uint32_t>(p.backend_mss, kMaxReplaySegment);
  for (uint32_t off = from; off < p.len; off += seg)
    l7_emit(l7_->backend_data(p, bt, r.offsets, off, std::min(seg, p.len - off)));
}

// A segment from batond to the client (tracked like any other segment the client receives).
void Worker::l7_to_client(uint32_t slot, uint8_t flags, std::string_view payload) {
  L7Pending& p = l7_->pending(l7_->record(slot).pending);
  const ConnEntry& e = table_->entry(slot);
  const TcpSegmentSpec s =
      l7_->to_client(p, table_->key(slot).tuple(e.orig_dir()), flags, bytes_of(payload));
  p.snd_nxt += static_cast<uint32_t>(payload.size()) + ((flags & kFin) ? 1 : 0);
  l7_track(slot, opposite(e.orig_dir()), tcp_info(s), l7_emit(s));
}

// batond answers the request itself and closes (HTTP/1.1 "Connection: close", then FIN).
void Worker::l7_respond(uint32_t slot, int status) {
  l7_to_client(slot, kAck | kPsh | kFin, status == 400 ? k400 : k503);
  l7_set_phase(slot, L7Phase::kResponded);
}

// RST to the client (and to the backend while its handshake is open); the entry then ages
// out in conntrack's CLOSE state.
void Worker::l7_reset(uint32_t slot) {
  const L7ConnRecord& r = l7_->record(slot);
  if (r.pending != kNoPending) {
    const L7Pending& p = l7_->pending(r.pending);
    if (r.phase == L7Phase::kConnecting)
      l7_emit(reset_to(backend_tuple(xlate_->at(slot)), p.client_isn + 1));
    l7_to_client(slot, kRst | kAck);
  }
  l7_set_phase(slot, L7Phase::kClosed);
}

// Head buffers held too long: a head that does not come, a backend that does not answer.
void Worker::l7_age() {
  if (l7_->rotate_secret_due(now_s_)) stats_.l7_cookie_secret_rotations++;
  l7_->sweep_due(now_s_, [&](uint32_t slot) {
    L7ConnRecord& r = l7_->record(slot);
    const auto st = static_cast<TcpState>(table_->entry(slot).l4_state);
    if (r.phase == L7Phase::kSpliced || st == TcpState::kTimeWait || st == TcpState::kClose)
      return l7_free_buffer(slot);  // nothing more to wait for
    stats_.l7_head_timeouts++;
    l7_reset(slot);
  });
}

}  // namespace baton
