// SPDX-License-Identifier: Apache-2.0
//
// A worker lcore: polls its RX queue of every port, runs the pipeline over each burst, and owns
// one shard of the connection table.
//
// Theory of operation. The owner of a flow is FlowKey::owner(workers) (symmetric, over
// the address pair). A packet read by another worker is handed to the owner on the owner's
// handoff ring, so the state of a flow has exactly one writer and both directions of a flow
// are seen by that writer, whatever the NIC's RSS does. The control core never writes an entry:
// it sends WorkerCommand objects on the command ring, and the owner applies them between
// bursts. The pipeline per burst is
//   parse -> owner/handoff -> bulk lookup -> [miss: ACL, VM classify, create] -> track -> tx
// and every drop carries a DropReason counted per worker.
//
// Idle back-off: after a run of empty polls the loop sleeps, growing to kMaxIdleSleepUs, so two
// instances and real TCP endpoints can share a 2-core machine. Any packet resets it.
#pragma once

#include <rte_hash.h>
#include <rte_mbuf.h>
#include <rte_ring.h>

#include <atomic>
#include <cstdint>
#include <memory>
#include <string_view>
#include <vector>

#include "common/net_types.h"
#include "conntrack/conn_entry.h"
#include "conntrack/tcp_tracker.h"
#include "dataplane/packet_meta.h"
#include "dataplane/router.h"
#include "dataplane/translator.h"
#include "lb/l7_proxy.h"
#include "nat/conn_xlate.h"
#include "dataplane/vm_table.h"
#include "dataplane/vm_traffic.h"
#include "dataplane/worker_stats.h"

namespace baton {

class Dataplane;
struct VmSlot;
class ConnTable;

// What a translated connection brings besides its entry (InstallItem::xlate indexes it), kept
// apart so that the items of the many untranslated ones stay small (they are written by the
// control core and read by the worker once each, inside the freeze).
struct InstallXlate {
  ConnXlate xlate;       // the reply tuple and kind (no local references)
  XlateHandoff handoff;  // ... and what stands behind it (Translator::adopt resolves it here)
  L7Handoff l7;          // an L7 connection's phase and splice offsets (l7.has)
};

// One entry to install or delete at the destination of a migration.
struct InstallItem {
  static constexpr uint32_t kNoXlate = UINT32_MAX;
  // User-provided, so that emplace_back() runs the members' initialisers only and does not
  // zero the whole item first (a `rep stos` per item before the installer fills it in).
  InstallItem() {}
  FlowKey key;
  ConnEntry entry;      // version = the source's version; links ignored
  ConnCounters counters;
  uint32_t idle_s = 0;  // age at the source; last_seen = now - idle_s
  bool deleted = false;
  uint32_t xlate = kNoXlate;  // entry.flags & kXlate: its InstallXlate in WorkerCommand::xlates
  uint32_t order = UINT32_MAX;  // the installer's: which entry record of its round (PLACED)
  // Result: the slot holding the item's key once the item is done (inserted, updated, or
  // already newer), or -1 (removed, refused, or no such entry).
  int32_t installed = -1;
};

struct WorkerCommand {
  enum class Kind : uint8_t {
    kInstall,    // install/update items as pending entries of vm
    kDeleteVm,   // remove every entry of vm (destination, on FAIL)
    kRetireVm,   // kDeleteVm, and zero vm's traffic row: the VM leaves the table, its id is freed
    kClearEpochs,  // zero the change-tracking mark of every entry of vm (migrate::begin_epoch)
  };
  Kind kind = Kind::kInstall;
  uint16_t vm = 0;
  uint64_t fp_seed = 0;  // updates' fingerprints are under it
  std::vector<InstallItem> items;
  // Compact updates (migrate/codec.h) of entries earlier commands installed, each naming the
  // slot the installer learned its key is in; applied after items. The two never concern one
  // key in one round (a slot is read once a round, and an update goes only to a key sent in
  // an earlier one), so the order between them carries nothing.
  std::vector<ConnUpdate> updates;
  std::vector<InstallXlate> xlates;  // indexed by InstallItem::xlate
  // The translation item `it` brings, or nullptr (untranslated).
  const InstallXlate* xlate_of(const InstallItem& it) const {
    return it.xlate < xlates.size() ? &xlates[it.xlate] : nullptr;
  }
  // Results, written by the worker before `done` is released. unmatched: updates whose slot
  // no longer holds their key (the destination FAILs: it cannot place the update).
  uint32_t applied = 0, stale = 0, failed = 0, removed = 0, unmatched = 0;
  // Why the first translated item could not be installed (this instance cannot hold its
  // mapping, service, backend or sticky entry): the migration FAILs with CONFLICT and this.
  std::string conflict;
  std::atomic<bool> done{false};
};

// Test and benchmark hook: with Dataplane::create(..., with_ports = false) there is no device
// to transmit on. If a sink is set, flush_tx hands it each port index's staged packets instead
// of calling rte_eth_tx_burst; the sink owns them from then on (frees or recycles them). A plain
// function pointer, called once per port per flush, never per packet.
struct TxSink {
  void (*fn)(void* ctx, uint16_t port_index, rte_mbuf** pkts, uint32_t n) = nullptr;
  void* ctx = nullptr;
};

class Worker {
 public:
  static constexpr uint32_t kMaxBurst = 64;
  static constexpr uint32_t kMaxIdleSleepUs = 200;
  static constexpr uint32_t kMaxInjectPerLoop = 4096;

  Worker(Dataplane& dp, uint16_t id, unsigned lcore);
  Worker(const Worker&) = delete;  // key_ptrs_ points into the object itself
  Worker& operator=(const Worker&) = delete;
  ~Worker();
  bool init(std::string* err);

  int run();  // lcore entry; returns when the dataplane stops

  uint16_t id() const { return id_; }
  unsigned lcore() const { return lcore_; }
  const WorkerStats& stats() const { return stats_; }
  // Its figures for VM `vm` (vm_traffic.h), since the VM got its id here; read by the control
  // core and the other workers like stats().
  const VmWorkerRow& vm_row(uint16_t vm) const { return vm_rows_[vm]; }
  ConnTable& table() { return *table_; }
  const ConnTable& table() const { return *table_; }
  // L7 services' side table of this shard (phase, splice offsets per slot) and head buffers;
  // nullptr when no service is in mode l7.
  L7Proxy* l7() { return l7_.get(); }
  const L7Proxy* l7() const { return l7_.get(); }

  // Multi-producer entry points (other workers, control core).
  bool handoff(rte_mbuf* m) { return rte_ring_mp_enqueue(handoff_, m) == 0; }
  bool inject(rte_mbuf* m) { return rte_ring_mp_enqueue(inject_, m) == 0; }
  bool command(WorkerCommand* c) { return rte_ring_mp_enqueue(commands_, c) == 0; }
  // Mode l3: a next hop (be32 raw | egress port index << 32) another worker needs resolved;
  // only the neighbour-table owner (worker 0) has this ring.
  bool resolve(uint64_t nh_port) {
    return resolve_ && rte_ring_mp_enqueue_elem(resolve_, &nh_port, sizeof nh_port) == 0;
  }

  // Processes one burst as if it had been received (public for in-process tests and the
  // benchmark: drives the pipeline without a port).
  void process_burst(rte_mbuf** pkts, uint32_t n);
  void flush_tx();
  void set_tx_sink(TxSink* sink) { tx_sink_ = sink; }  // nullptr: transmit on the ports
  // Pins the worker's clock (tests, benchmarks): housekeeping() stops reading the TSC clock.
  void set_now(uint32_t now_s) {
    now_s_ = now_s;
    clock_pinned_ = true;
  }
  // Aging, commands, inject: what one loop iteration does besides RX.
  void housekeeping();

 private:
  // One datagram's fragments (tracked, not reassembled: docs/ARCHITECTURE.md). Later fragments
  // carry no ports, so they are matched to the first fragment's decision by (src, dst, IP id,
  // proto) and get what it got: passed if it was accepted, and for a translated connection the
  // same addresses (their ports, and the L4 checksum over the whole datagram, are in the first
  // fragment, which rewrite_v4 patched). With several workers the one that receives a first
  // fragment also notes where it sent it (owner), so the later ones follow it there: a
  // translated connection's owner may depend on a port (translator.h).
  struct FragSlot {
    IpAddr src, dst;      // as received
    uint32_t id = 0;
    uint8_t proto = 0;
    bool valid = false;   // the first fragment was accepted by this worker
    bool xlate = false;   // ... and translated: later fragments leave as xlate_src -> xlate_dst
    uint16_t owner = 0;   // the worker the first fragment went to
    be32 xlate_src, xlate_dst;
    uint32_t expires = 0;

    bool holds(const PacketMeta& pm) const {
      return id == pm.frag_id && src == pm.tuple.src && dst == pm.tuple.dst &&
             proto == pm.tuple.proto;
    }
    // A first fragment was sent to worker `to` (not accepted yet), until `expires`.
    void note(const PacketMeta& pm, uint16_t to, uint32_t until);
    // ... and accepted by worker `self`; xlated_ip: its IPv4 header as translated, or nullptr.
    void accept(const PacketMeta& pm, uint16_t self, uint32_t until, const uint8_t* xlated_ip);
  };
  static constexpr uint32_t kFragSlots = 1024;

  void process_owned(rte_mbuf** pkts, uint32_t n);
  void lookup_burst(uint32_t n, int32_t* slots, uint64_t* reply_hits);
  void handle_new(rte_mbuf* m, const PacketMeta& pm, const FlowKey& k, Dir d);
  void handle_known(rte_mbuf* m, const PacketMeta& pm, uint32_t slot, Dir d);
  void forward(rte_mbuf* m);
  // NAT/LB (translator.h, nat/conn_xlate.h): rewrites a packet of translated connection `slot`
  // travelling in the original direction (orig) or the reply direction.
  // false: the packet cannot be translated (a malformed ICMP error) and must be dropped.
  bool translate(rte_mbuf* m, const PacketMeta& pm, uint32_t slot, bool orig);
  [[gnu::noinline]] bool translate_other(rte_mbuf* m, const PacketMeta& pm, const V4Endpoints& to);
  // Slow path of a new connection: the translation decision and the VM it belongs to.
  XlateVerdict decide_xlate(const PacketMeta& pm, ConnXlate* x);
  bool reclaim_dead(const FlowKey& reply_key);
  // Makes the connection at slot translated by x: the record, its reply key, then kXlate inside
  // a write bracket (a reader that sees the flag reads a complete record). false: the reply key
  // is held by a live connection (*rc = -EEXIST) or the index is full (-ENOSPC); the entry is
  // left untranslated and x's references are the caller's to release.
  bool attach_xlate(uint32_t slot, const ConnXlate& x, uint8_t proto, uint16_t vlan, int* rc);
  // ConnXlateTable::set, with the routes of both directions' destinations in mode l3.
  void record_xlate(uint32_t slot, const ConnXlate& x);
  // Migration: the translation of an installed entry, if this instance can hold what stands
  // behind it; false with *why otherwise (nothing held then).
  bool install_xlate(uint32_t slot, const InstallItem& it, const InstallXlate* ix,
                     std::string* why);
  // Mode l3 (router.h): ingress checks before conntrack (false: dropped), route + neighbour +
  // rewrite + egress port on forward, ARP on the neighbour-table owner.
  bool l3_ingress(rte_mbuf* m, const PacketMeta& pm);
  void forward_l3(rte_mbuf* m);
  void transmit_l3(rte_mbuf* m);  // forward_l3 without the TTL decrement (frames we write)
  // What l3_ingress (or a frame's writer, or translate) leaves for transmit_l3 in the mbuf: the
  // route's index (kNoRouteIndex: none yet, transmit_l3 routes the destination the packet
  // leaves with) and where IPv4 starts (at most 255: mode l3 takes untagged frames only), in
  // the hash word (the RSS hash is not used past RX). The mbuf's first cache line, which RX
  // wrote: l2_len, in the second, was a miss on every packet whose mbuf was not in cache (at
  // 64k flows with cold mbufs, l3fw 290-295 -> 228-234 cycles a packet).
  static constexpr uint32_t kNoRouteIndex = 0xffffff;
  static void stash_route(rte_mbuf* m, uint32_t route, uint16_t l3_offset) {
    m->hash.usr = route << 8 | l3_offset;
  }
  static uint32_t stashed_route(const rte_mbuf* m) { return m->hash.usr >> 8; }
  static uint32_t stashed_l3_offset(const rte_mbuf* m) { return m->hash.usr & 0xff; }
  void handle_arp(rte_mbuf* m, const PacketMeta& pm);
  void ask_neighbor(uint16_t port, be32 ip);
  void send_frame(uint16_t port, const uint8_t* frame, uint32_t len);
  void drop(rte_mbuf* m, DropReason r);
  bool hold(rte_mbuf* m, uint16_t vm);  // parks the packet on a frozen VM's hold ring
  bool profile_permits(uint16_t vm, const Tuple& seen) const;
  static VmSide vm_side(const VmSlot& vs, const PacketMeta& pm);
  // Which way the SYN of VM connection (k, e) went: its initiator's address as the source.
  VmSide initiator_side(const FlowKey& k, const ConnEntry& e) const;
  // The profile's max_half_open lets the VM's new TCP connection in direction `side` open.
  bool half_open_admits(uint16_t vm, VmSide side) const;
  static bool half_open(int tcp_state) {
    return tcp_state == static_cast<int>(TcpState::kSynSent) ||
           tcp_state == static_cast<int>(TcpState::kSynSent2) ||
           tcp_state == static_cast<int>(TcpState::kSynRecv);
  }
  // The live-connection gauges follow an entry's state from `from` to `to` (-1: the entry is
  // new / removed): by kind and state, and a VM's half-open TCP connections by the direction
  // of their SYN (`initiator()`, asked only when that count moves).
  template <typename InitiatorFn>
  void restate(uint8_t proto, const ConnEntry& e, int from, int to, InitiatorFn initiator) {
    if (from >= 0) stats_.conns[conn_kind(proto, static_cast<uint8_t>(from))]--;
    if (to >= 0) stats_.conns[conn_kind(proto, static_cast<uint8_t>(to))]++;
    if (e.vm_id && proto == 6) {
      const int delta = int{half_open(to)} - int{half_open(from)};
      if (delta) vm_rows_[e.vm_id].half_open[static_cast<int>(initiator())] += delta;
    }
  }
  // The VM's QoS policer (vm_policer.h), if it has one, admits the packet.
  bool qos_admits(VmSlot& vs, const PacketMeta& pm, const rte_mbuf* m);
  // Adds a packet the worker passes to the VM's traffic row, by its direction. The direction
  // is asked where it is needed (here, the policer, a half-open count that moves) rather than
  // kept in a local across the tracker: that cost every packet of no VM 7 instructions.
  void count_vm(uint16_t vm, const PacketMeta& pm, const rte_mbuf* m);
  void note_change(uint32_t slot, ConnEntry& e);
  void queue_change(VmSlot& vs, uint16_t epoch, uint32_t slot);  // on the epoch's dirty ring
  void forget(uint32_t slot);  // state gauge bookkeeping before a removal
  void apply(WorkerCommand& c);
  void apply_updates(WorkerCommand& c);  // c.updates, after c.items
  // An installed entry of the peer's brought up to date in place from u: the slot's key and
  // what the entry owns elsewhere (translation, L7 offsets) stay; ends at the source's version.
  // key: the slot's key if the caller has it (read back only if a half-open count moves);
  // l7: an L7 connection's handoff, whose phase may have moved on (or nullptr).
  void update_in_place(const ConnUpdate& u, const FlowKey* key, const L7Handoff* l7);
  void reclass(uint32_t slot, uint8_t old_class);  // after a class change (worker.cc)
  void age();
  FragSlot& frag_slot(const PacketMeta& pm);
  void accept_first_fragment(const rte_mbuf* m, const PacketMeta& pm, bool translated);

  // L7 services: delayed binding and splice (dataplane/worker_l7.cc, lb/l7_proxy.h).
  // A packet to an L7 VIP that matched no connection: SYN cookie or cookie ACK.
  void l7_unknown(rte_mbuf* m, const PacketMeta& pm, const FlowKey& k, Dir d, int service);
  // A packet of L7 connection `slot`, from the client or from its backend.
  void l7_segment(rte_mbuf* m, const PacketMeta& pm, uint32_t slot, bool from_client);
  void l7_splice(rte_mbuf* m, const PacketMeta& pm, uint32_t slot, bool from_client);
  void l7_backend_early(rte_mbuf* m, const PacketMeta& pm, uint32_t slot);
  void l7_read(rte_mbuf* m, const PacketMeta& pm, uint32_t slot);
  void l7_bind(rte_mbuf* m, uint32_t slot);
  void l7_backend_synack(rte_mbuf* m, const PacketMeta& pm, uint32_t slot);
  void l7_replay(uint32_t slot, uint32_t from);
  void l7_to_client(uint32_t slot, uint8_t flags, std::string_view payload = {});
  void l7_respond(uint32_t slot, int status);
  void l7_reset(uint32_t slot);
  void l7_set_phase(uint32_t slot, L7Phase p);
  void l7_free_buffer(uint32_t slot);  // the head buffer goes back to the pool
  // Re-files connection *slot under VM vm (its backend); false: no slot (connection dropped).
  bool l7_relink(uint32_t* slot, uint16_t vm);
  // Migration: the L7 record of a connection install_xlate installed (worker_commands.cc).
  void install_l7(uint32_t slot, const L7Handoff& h, uint16_t service);
  void l7_age();
  TcpVerdict l7_track(uint32_t slot, Dir d, const TcpInfo& seg, uint32_t len);
  uint32_t l7_emit(const TcpSegmentSpec& s);  // frame bytes sent, 0 if none
  void consume(rte_mbuf* m);  // a packet for Baton itself: counted as local_in, freed

  Dataplane& dp_;
  uint16_t id_;
  unsigned lcore_;
  ConnTable* table_ = nullptr;  // owned by Dataplane
  ConnXlateTable* xlate_ = nullptr;  // owned by Dataplane; nullptr when nothing is translated
  Translator* translator_ = nullptr;
  LoadBalancer* lb_ = nullptr;        // set when an L7 service exists (with l7_)
  std::unique_ptr<L7Proxy> l7_;
  rte_ring* handoff_ = nullptr;
  rte_ring* inject_ = nullptr;
  rte_ring* commands_ = nullptr;
  uint32_t now_s_ = 0;
  bool clock_pinned_ = false;
  // A connection was removed during the burst (handle_known replaced a closed translated one,
  // attach_xlate reclaimed a dead one holding its reply key).
  bool removed_in_burst_ = false;
  hash_sig_t reply_sig_ = 0;  // ConnTable signature of the reply key attach_xlate last added
  WorkerStats stats_;
  std::unique_ptr<VmWorkerRow[]> vm_rows_{new VmWorkerRow[kMaxVms]};  // by VM id, owner-written
  // Per-burst scratch of process_burst, indexed by owned packet. Members rather than locals:
  // a local array of PacketMeta (which has default member initialisers) would be
  // value-initialised on every burst, 64 x ~200 bytes, although parse_packet() resets each
  // meta it fills anyway. Only process_burst/process_owned use them (never re-entered).
  PacketMeta metas_[kMaxBurst];
  FlowKey keys_[kMaxBurst];
  // &keys_[i], for the bulk lookups' key arrays: set once (a Worker never moves) rather than
  // built, and zeroed (rep stos) to quiet GCC, on every burst.
  const FlowKey* key_ptrs_[kMaxBurst];
  hash_sig_t sigs_[kMaxBurst];
  Dir dirs_[kMaxBurst];
  // TX staging per port index.
  struct TxBuf {
    rte_mbuf* pkts[kMaxBurst * 2];
    uint32_t n = 0;
  };
  std::vector<TxBuf> tx_;
  TxSink* tx_sink_ = nullptr;
  std::vector<FragSlot> frags_;
  // Mode l3. router_ is read by every worker; neighbor_owner_ is set on worker 0 only, the one
  // writer of the neighbour table (router.h).
  bool l3_ = false;
  const Router* router_ = nullptr;
  Router* neighbor_owner_ = nullptr;
  NeighborCache neighbors_;  // this worker's memo of resolved next hops
  rte_ring* resolve_ = nullptr;
  struct AskMemo {
    uint32_t ip = 0, when = UINT32_MAX;
  };
  AskMemo asked_[64];  // non-owners ask the owner about a next hop at most once a second
};

}  // namespace baton
