// SPDX-License-Identifier: Apache-2.0
#include "migrate/vm_state_io.h"

#include <unistd.h>

#include <rte_pause.h>
#include <rte_prefetch.h>

#include <algorithm>
#include <bit>
#include <chrono>
#include <cstring>
#include <set>
#include <tuple>

#include "conntrack/conn_table.h"
#include "dataplane/dataplane.h"

namespace baton::migrate {
namespace {

// Backward-shift deletion in a linear-probing table (the sent map, FingerprintSlots): the
// member at j, whose home is k, stays where it is over the hole at i only if its home lies
// in (i, j] going round the table; otherwise it moves into the hole.
bool stays_in_run(size_t i, size_t j, size_t k) {
  return i <= j ? (i < k && k <= j) : (i < k || k <= j);
}

int64_t now_ms() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(
             std::chrono::steady_clock::now().time_since_epoch())
      .count();
}

}  // namespace

VmReader::VmReader(Dataplane& dp, uint16_t vm, uint64_t fp_seed)
    : dp_(dp), vm_(vm), fp_mix_(fp_seed), sent_(dp.worker_count()) {}

// ---- SentMap ----------------------------------------------------------------------------------

VmReader::Sent* VmReader::SentMap::find(uint32_t slot) {
  if (cells_.empty()) return nullptr;
  for (size_t i = home(slot);; i = (i + 1) & mask_) {
    Sent& c = cells_[i];
    if (c.slot == slot) return &c;
    if (c.slot == kEmpty) return nullptr;
  }
}

void VmReader::SentMap::put(const Sent& s, const FlowKey& key) {
  if ((size_ + 1) * 2 > cells_.size()) grow();
  for (size_t i = home(s.slot);; i = (i + 1) & mask_) {
    Sent& c = cells_[i];
    if (c.slot == kEmpty) size_++;
    if (c.slot == kEmpty || c.slot == s.slot) {
      c = s;
      keys_[i] = key;
      return;
    }
  }
}

void VmReader::SentMap::erase(Sent* s) {
  // Backward-shift deletion: pull later members of the probe run into the hole when their home
  // is not between the hole and where they sit, so that no lookup meets a premature empty cell.
  size_t i = static_cast<size_t>(s - cells_.data());
  for (size_t j = (i + 1) & mask_; cells_[j].slot != kEmpty; j = (j + 1) & mask_) {
    size_t k = home(cells_[j].slot);
    const bool stays = stays_in_run(i, j, k);
    if (!stays) {
      cells_[i] = cells_[j];
      keys_[i] = keys_[j];
      i = j;
    }
  }
  cells_[i].slot = kEmpty;
  size_--;
}

void VmReader::SentMap::reset(size_t n) {
  size_t cap = 16;
  while (cap < 2 * n) cap *= 2;
  const Sent empty{kEmpty, 0, {0, 0}, 0, 0};
  if (cells_.size() >= cap && cells_.size() <= 4 * cap) {
    std::fill(cells_.begin(), cells_.end(), empty);
  } else {
    cells_.assign(cap, empty);
    keys_.assign(cap, FlowKey{});  // a key is written with its cell, never read before
  }
  mask_ = cells_.size() - 1;
  shift_ = 64 - std::countr_zero(cells_.size());
  size_ = 0;
}

void VmReader::SentMap::grow() {
  std::vector<Sent, HugePageAllocator<Sent>> old = std::move(cells_);
  std::vector<FlowKey, HugePageAllocator<FlowKey>> old_keys = std::move(keys_);
  cells_.clear();
  reset(std::max<size_t>(16, old.size()));  // twice the cells: reset sizes for 2 * n
  for (size_t i = 0; i < old.size(); i++)
    if (old[i].slot != kEmpty) put(old[i], old_keys[i]);
}

// ---- VmReader ---------------------------------------------------------------------------------

struct VmReader::VectorOut {
  static constexpr bool kStreamed = false;  // no PLACED answers these records
  std::vector<ConnRecord>* v;
  uint16_t version = kProtocolVersionMax;
  void record(const FlowKey& k, const ConnEntry& e, const ConnCounters& c, uint32_t now_s,
              const ConnXlate* x, const XlateHandoff* h, const L7Handoff* l7) {
    v->push_back(ConnRecord::from_entry(k, e, c, now_s, x, h, l7));
  }
  void tombstone(const FlowKey& k, uint32_t version) {
    v->push_back(ConnRecord::tombstone(k, version));
  }
  uint32_t round() const { return 0; }
  bool compact_ok(uint32_t) const { return false; }  // records only
  void compact(uint64_t, uint8_t, const ConnEntry&, const ConnCounters&, uint32_t, uint32_t) {}
};

struct VmReader::WireOut {
  static constexpr bool kStreamed = true;
  EntriesFrameWriter& w;
  const FrameOut& fo;
  Counts c;
  uint16_t version;
  uint8_t* next() {
    uint8_t* p = w.add();
    if (!p) {
      flush();
      p = w.add();
    }
    c.records++;
    return p;
  }
  void record(const FlowKey& k, const ConnEntry& e, const ConnCounters& c, uint32_t now_s,
              const ConnXlate* x, const XlateHandoff* h, const L7Handoff* l7) {
    ConnRecord::encode_entry(k, e, c, now_s, next(), x, h, fo.version, l7);
  }
  void tombstone(const FlowKey& k, uint32_t version) {
    ConnRecord::encode_tombstone(k, version, next());
    c.tombstones++;
  }
  uint32_t round() const { return fo.round; }
  // An entry first sent in an earlier round is installed at the destination (a round ends
  // with the peers' ACK of everything in it): a peer that speaks version 7 takes its update
  // as a compact record.
  bool compact_ok(uint32_t first_round) const {
    return version >= kProtocolVersionCompact && first_round < fo.round;
  }
  void compact(uint64_t fp, uint8_t proto, const ConnEntry& e, const ConnCounters& ctr,
               uint32_t now_s, uint32_t place) {
    if (version < kProtocolVersionPlaced) place = kNoPlace;
    ConnRecord::encode_compact(fp, proto, e, ctr, now_s, next(), place);
    c.compact++;
    c.placed += place != kNoPlace;
  }
  // Hands over the records gathered so far (if any) and starts the next frame.
  void flush() {
    if (w.records()) {
      auto [p, n] = w.finish();
      fo.emit(p, n, w.records());
    }
    w.begin(fo.migration_id, fo.round, fo.per_frame, fo.version);
  }
};

template <class Out>
void VmReader::read_slot(uint16_t shard, uint32_t slot, uint32_t now_s, Out& out,
                         uint64_t* moved) {
  const ConnTable& t = dp_.shard(shard);
  SentMap& sent = sent_[shard];
  Sent* it = sent.find(slot);
  ConnEntry e;
  ConnCounters ctr;
  bool live = t.read(slot, &e, nullptr, &ctr) && e.vm_id == vm_;
  // The key as its fingerprint from the stored form, no FlowKey built: most slots of a delta
  // are updates, which need no more of it. It is the entry's key: we are online, and a slot is
  // reused only after a grace period.
  const uint64_t fp = live ? t.key_fingerprint(slot, fp_mix_) : 0;
  // An L7 connection travels with its splice state (l7_proxy.h L7Handoff), and only when it
  // holds no head buffer: until then it is not sent (a tombstone if it was), as if absent.
  L7Handoff l7;
  const L7Proxy* lp = live && (e.flags & connflag::kL7) ? dp_.workers()[shard]->l7() : nullptr;
  if (lp) {
    L7ConnRecord rec;
    live = out.version >= kProtocolVersionL7 && lp->read(slot, t.entry(slot).version, &rec) &&
           l7_carried(rec, e.flags & connflag::kXlate);
    l7 = {true, rec.phase, rec.offsets};
  }
  if (it && (!live || it->fp != fp)) {
    // Gone, or the slot now holds another flow: the destination must forget the old one.
    out.tombstone(sent.key(it), it->version + 2);
    sent.erase(it);
    it = nullptr;
  }
  if (!live) return;
  const uint32_t version = e.version.load(std::memory_order_relaxed);
  if (it && it->version == version) return;  // queued, but nothing new since we sent it
  const uint8_t proto = t.key_proto(slot);
  if (moved && it && proto == 6 &&
      (it->end[0] != e.peer[0].end || it->end[1] != e.peer[1].end))
    (*moved)++;
  if (it) {
    // The cell of this slot, found above (no second probe), and its key is the slot's. Only the
    // changed fields are written: assigning a whole Sent built on the stack made GCC copy it
    // through mismatched halves (a store-forwarding stall, the top of the final delta's
    // profile at the source: 10k records read in 0.66 instead of 1.06 ms).
    it->version = version;
    it->end[0] = e.peer[0].end;
    it->end[1] = e.peer[1].end;
    // An L7 connection's phase travels in its translation's l7 part: whole records only.
    if (out.compact_ok(it->round) && !(e.flags & connflag::kL7)) {
      out.compact(fp, proto, e, ctr, now_s, it->place);
      return;
    }
  }
  const FlowKey k = t.key(slot);
  if (!it) sent.put({slot, version, {e.peer[0].end, e.peer[1].end}, fp, out.round()}, k);
  // A translated connection's record is fixed while its flag is set and its slot is not reused
  // before a grace period (conn_xlate.h): we are online, so it is stable here.
  const ConnXlateTable* xt = dp_.xlate(shard);
  const ConnXlate* x = (e.flags & connflag::kXlate) && xt ? &xt->at(slot) : nullptr;
  XlateHandoff h;
  // What stands behind the translation (mapping, backend, sticky entry) is referenced by the
  // record and so live while we are online; a version-2 peer gets no handoff.
  if (x && out.version >= kProtocolVersionHandoff && dp_.translator())
    dp_.translator()->describe(shard, *x, now_s, &h);
  out.record(k, e, ctr, now_s, x, x ? &h : nullptr, l7.has ? &l7 : nullptr);
  if (Out::kStreamed && out.version >= kProtocolVersionPlaced) sent_order_.add(shard, slot);
}

namespace {
// Reads slots[i] after asking for the lines of slots[i + kAhead]: the slots of a VM are spread
// over the whole table, so each read is otherwise a few serial cache (and TLB) misses.
constexpr size_t kAhead = 16;

// How many slots one online stretch of the reader covers when streaming: about one frame.
constexpr size_t kSlotsPerGuard = kRecordsPerFrame;
}  // namespace

template <class Out>
void VmReader::read_slots(uint16_t shard, const uint32_t* slots, size_t n, uint32_t now_s,
                          Out& out, uint64_t* moved, bool filling) {
  const ConnTable& t = dp_.shard(shard);
  const SentMap& sent = sent_[shard];
  auto prefetch = [&](uint32_t slot) {
    if (const Sent* cell = sent.home_cell(slot)) {
      rte_prefetch0(cell);  // half a line, aligned
      // A snapshot writes every slot's key aside (40 bytes, perhaps two lines); without asking
      // for them ahead those writes were its largest cost (12 -> 4.4M entries a second).
      if (filling) {
        const FlowKey* key = &sent.key(cell);
        __builtin_prefetch(key, 1, 3);
        __builtin_prefetch(reinterpret_cast<const char*>(key + 1) - 1, 1, 3);
      }
    }
    t.prefetch(slot);
    t.prefetch_key(slot);
  };
  for (size_t i = 0; i < std::min(n, kAhead); i++) prefetch(slots[i]);
  for (size_t i = 0; i < n; i++) {
    if (i + kAhead < n) prefetch(slots[i + kAhead]);
    read_slot(shard, slots[i], now_s, out, moved);
  }
}

template <class Out>
void VmReader::snapshot_into(Out& out) {
  const uint32_t now_s = dp_.now_s();
  for (uint16_t w = 0; w < dp_.worker_count(); w++) {
    const ConnTable& t = dp_.shard(w);
    slots_.clear();
    {
      // Walk first (a chain of dependent loads), then read with prefetching.
      Dataplane::ReaderGuard guard(dp_);
      const uint32_t n = t.vm_count(vm_);
      sent_[w].reset(n);
      slots_.reserve(n);
      if (Out::kStreamed) sent_order_.slots.reserve(sent_order_.slots.size() + n);
      t.for_each_in_vm(vm_, [&](uint32_t slot) { slots_.push_back(slot); });
    }
    for (size_t i = 0; i < slots_.size(); i += kSlotsPerGuard) {
      Dataplane::ReaderGuard guard(dp_);
      read_slots(w, slots_.data() + i, std::min(kSlotsPerGuard, slots_.size() - i), now_s, out,
                 nullptr, true);
    }
  }
}

template <class Out>
void VmReader::delta_into(Drain which, Out& out, uint64_t* moved) {
  VmSlot& vs = dp_.vms().slot(vm_);
  const int ended = VmSlot::parity(vs.epoch.load(std::memory_order_acquire) - 1);
  bool drain[2] = {which == Drain::kAll || ended == 0, which == Drain::kAll || ended == 1};
  bool overflow = false;
  for (int p = 0; p < 2; p++)
    if (drain[p]) overflow |= vs.dirty_overflow[p].exchange(false, std::memory_order_acq_rel);
  const uint32_t now_s = dp_.now_s();
  auto read_all = [&](uint16_t w, const std::vector<uint32_t>& slots) {
    for (size_t i = 0; i < slots.size(); i += kSlotsPerGuard) {
      Dataplane::ReaderGuard guard(dp_);
      read_slots(w, slots.data() + i, std::min(kSlotsPerGuard, slots.size() - i), now_s, out,
                 moved);
    }
  };
  for (uint16_t w = 0; w < dp_.worker_count(); w++) {
    slots_.clear();
    for (int p = 0; p < 2; p++) {
      rte_ring* r = drain[p] ? vs.dirty[p][w] : nullptr;
      if (!r) continue;
      slots_.reserve(slots_.size() + rte_ring_count(r));
      uint32_t buf[256];
      unsigned n;
      while ((n = rte_ring_sc_dequeue_burst_elem(r, buf, sizeof(uint32_t), 256, nullptr)))
        slots_.insert(slots_.end(), buf, buf + n);
    }
    read_all(w, slots_);
    if (overflow) {
      // A ring overflowed: some changes were not queued. Walk the whole VM; unchanged entries
      // are skipped by version, vanished ones found by comparing with what was sent.
      slots_.clear();
      gone_.clear();
      {
        Dataplane::ReaderGuard guard(dp_);
        dp_.shard(w).for_each_in_vm(vm_, [&](uint32_t slot) { slots_.push_back(slot); });
        sent_[w].for_each([&](const Sent& s) {
          ConnEntry e;
          FlowKey k;
          if (!dp_.shard(w).read(s.slot, &e, &k) || k.fingerprint(fp_mix_) != s.fp ||
              e.vm_id != vm_)
            gone_.push_back(s.slot);
        });
      }
      // Tombstones first: a key may have vanished from one slot and come back in another
      // (a flow closed and opened again). Its new entry starts at a version unrelated to the
      // old one's, so after the new record the old one's tombstone would remove it at the
      // destination; before it, the tombstone removes the old entry and the record installs
      // the new one. (The rings keep that order by themselves: removal queued first.)
      read_all(w, gone_);
      read_all(w, slots_);
    }
  }
}

std::vector<ConnRecord> VmReader::snapshot() {
  std::vector<ConnRecord> v;
  VectorOut out{&v};
  snapshot_into(out);
  return v;
}

std::vector<ConnRecord> VmReader::delta(Drain which, uint64_t* seq_moved) {
  std::vector<ConnRecord> v;
  VectorOut out{&v};
  delta_into(which, out, seq_moved);
  return v;
}

VmReader::Counts VmReader::snapshot(const FrameOut& fo) {
  sent_order_.restart(fo.round);
  WireOut out{writer_, fo, {}, fo.version};
  writer_.begin(fo.migration_id, fo.round, fo.per_frame, fo.version);
  snapshot_into(out);
  out.flush();
  return out.c;
}

VmReader::Counts VmReader::delta(Drain which, const FrameOut& fo) {
  sent_order_.restart(fo.round);
  WireOut out{writer_, fo, {}, fo.version};
  writer_.begin(fo.migration_id, fo.round, fo.per_frame, fo.version);
  delta_into(which, out, &out.c.seq_moved);
  out.flush();
  return out.c;
}

bool VmReader::apply_placed(const PlacedMsg& m) {
  const SentOrder& o = sent_order_;
  if (m.round != o.round || m.places.size() != o.slots.size()) return false;
  // Each cell was put or updated by this round's record (a round reads a slot once), and no
  // round ran since: the cell is that record's. Cells are found at random: asked for ahead.
  for (size_t run = 0; run < o.runs.size(); run++) {
    SentMap& sent = sent_[o.runs[run].shard];
    const size_t end = o.end(run);
    auto ask = [&](size_t i) {
      if (const Sent* c = sent.home_cell(o.slots[i])) __builtin_prefetch(c, 1, 3);
    };
    for (size_t i = o.runs[run].begin; i < std::min(end, o.runs[run].begin + kAhead); i++) ask(i);
    for (size_t i = o.runs[run].begin; i < end; i++) {
      if (i + kAhead < end) ask(i + kAhead);
      if (Sent* s = sent.find(o.slots[i])) s->place = m.places[i];
    }
  }
  sent_order_.restart(o.round);
  return true;
}

uint64_t VmReader::live() const {
  uint64_t n = 0;
  for (auto& s : sent_) n += s.size();
  return n;
}

VmReader::KindTally VmReader::tally(Dataplane& dp, uint16_t vm) {
  uint64_t n[kStateKindCount] = {};
  KindTally t;
  const Translator* tr = dp.translator();
  const uint32_t now_s = dp.now_s();
  // Distinct mappings (worker, rule, slot), sticky entries (slot), needs.
  std::set<std::tuple<uint16_t, uint8_t, uint32_t>> mappings;
  std::set<uint32_t> stickies;
  std::set<std::tuple<uint8_t, uint32_t, uint32_t, uint16_t>> nat_needs;
  std::set<std::tuple<uint8_t, uint32_t, uint16_t, uint32_t, uint16_t, uint32_t>> lb_needs;
  for (uint16_t w = 0; w < dp.worker_count(); w++) {
    const ConnTable& table = dp.shard(w);
    const ConnXlateTable* xt = dp.xlate(w);
    const L7Proxy* l7 = dp.workers()[w]->l7();
    Dataplane::ReaderGuard guard(dp);
    table.for_each_in_vm(vm, [&](uint32_t slot) {
      ConnEntry e;
      FlowKey k;
      if (!table.read(slot, &e, &k) || e.vm_id != vm) return;
      n[static_cast<int>(StateKind::kConn)]++;
      if (k.family == Family::kV6) t.conn_v6++;
      if (l7 && (e.flags & connflag::kL7)) {
        n[static_cast<int>(StateKind::kL7Conn)]++;
        L7ConnRecord rec;
        if (!l7->read(slot, table.entry(slot).version, &rec) ||
            !l7_carried(rec, (e.flags & connflag::kXlate) && xt)) {
          t.l7_held++;
          return;
        }
        t.carried_l7++;  // and its translation below, with its backend as an LB need
      }
      if (!(e.flags & connflag::kXlate) || !xt) return;
      const ConnXlate& x = xt->at(slot);
      t.carried_xlate++;
      if (x.kind == XlateKind::kStatic || x.kind == XlateKind::kDnat) return;
      t.carried_handoff++;
      XlateHandoff h;
      if (!tr || !tr->describe(w, x, now_s, &h)) return;
      if (h.has_mapping) {
        mappings.emplace(w, x.nat_rule, x.mapping);
        nat_needs.emplace(k.proto, h.inside_addr.raw(), h.outside_addr.raw(), h.outside_port.raw());
      }
      if (h.has_lb) {
        n[static_cast<int>(StateKind::kLbConn)]++;
        const bool fullnat = x.kind == XlateKind::kLbFullNat;
        lb_needs.emplace(k.proto, h.vip.raw(), h.vip_port.raw(), h.backend_addr.raw(),
                         h.backend_port.raw(), fullnat ? x.reply_dst.raw() : 0);
      }
      if (h.has_sticky) stickies.insert(x.sticky_slot);
    });
  }
  n[static_cast<int>(StateKind::kNatMapping)] = mappings.size();
  n[static_cast<int>(StateKind::kSticky)] = stickies.size();
  for (auto [proto, inside, outside, port] : nat_needs) {
    if (t.needs.nat.size() == HandoffNeeds::kMaxNeeds) break;
    t.needs.nat.push_back({proto, be32::from_raw(inside), be32::from_raw(outside), be16::from_raw(port)});
  }
  for (auto [proto, vip, vport, backend, bport, local] : lb_needs) {
    if (t.needs.lb.size() == HandoffNeeds::kMaxNeeds) break;
    LbNeed need;
    need.proto = proto;
    need.vip = be32::from_raw(vip);
    need.vip_port = be16::from_raw(vport);
    need.backend_addr = be32::from_raw(backend);
    need.backend_port = be16::from_raw(bport);
    need.local_addr = be32::from_raw(local);
    t.needs.lb.push_back(need);
  }
  t.counts.push_back({static_cast<uint8_t>(StateKind::kConn), n[0]});
  for (uint8_t k = 1; k < kStateKindCount; k++)
    if (n[k]) t.counts.push_back({k, n[k]});
  return t;
}

VmInstaller::~VmInstaller() {
  // A worker still holds a command we could not wait for (it stopped): leaking it is safer
  // than freeing memory a worker may yet write.
  if (!wait(10000))
    for (Pending& p : pending_) p.c.release();
}

// ---- FingerprintSlots -------------------------------------------------------------------------

void FingerprintSlots::put(uint64_t fp, uint16_t worker, uint32_t slot) {
  if ((size_ + 1) * 2 > cells_.size()) grow();
  for (size_t i = home(fp);; i = (i + 1) & mask_) {
    Cell& c = cells_[i];
    if (c.fp == 0) {
      c = {fp, slot, worker};
      size_++;
      return;
    }
    if (c.fp == fp) {
      // Another slot for the same fingerprint: two keys of the migration collide (a key that
      // moves is erased first). Neither may take the other's updates: ambiguous for good.
      if (c.slot != slot || c.worker != worker) c.slot = kNoSlot;
      return;
    }
  }
}

void FingerprintSlots::erase(uint64_t fp) {
  if (cells_.empty()) return;
  size_t i = home(fp);
  for (; cells_[i].fp != fp; i = (i + 1) & mask_)
    if (cells_[i].fp == 0) return;
  // Backward-shift deletion, as SentMap::erase.
  for (size_t j = (i + 1) & mask_; cells_[j].fp != 0; j = (j + 1) & mask_) {
    const size_t k = home(cells_[j].fp);
    const bool stays = stays_in_run(i, j, k);
    if (!stays) {
      cells_[i] = cells_[j];
      i = j;
    }
  }
  cells_[i].fp = 0;
  size_--;
}

void FingerprintSlots::reserve(size_t n) {
  if (cells_.size() < 2 * n) grow(2 * n);
}

void FingerprintSlots::grow(size_t at_least) {
  std::vector<Cell, HugePageAllocator<Cell>> old = std::move(cells_);
  size_t cap = std::max<size_t>(16, old.size() * 2);
  while (cap < at_least) cap *= 2;
  cells_.assign(cap, Cell{0, 0, 0});
  mask_ = cap - 1;
  shift_ = 64 - std::countr_zero(cap);
  size_ = 0;
  for (const Cell& c : old)
    if (c.fp) put(c.fp, c.worker, c.slot);
}

// ---- VmInstaller ------------------------------------------------------------------------------

VmInstaller::VmInstaller(Dataplane& dp, uint16_t vm, uint64_t fp_seed)
    : dp_(dp), vm_(vm), fp_seed_(fp_seed),
      place_bits_(static_cast<uint8_t>(std::bit_width(dp.worker_count() - 1u))) {}

WorkerCommand& VmInstaller::start(uint16_t w) {
  std::unique_ptr<WorkerCommand>& c = building_[w];
  c = take_command();
  c->kind = WorkerCommand::Kind::kInstall;
  c->vm = vm_;
  c->fp_seed = fp_seed_;
  return *c;
}

template <class T>
void VmInstaller::make_room(std::vector<T>& v, size_t n) {
  // Room for this owner's share of the n records and some: a pooled command has it already,
  // and few commands ever regrow (each regrowth copies every element).
  const uint16_t workers = dp_.worker_count();
  v.reserve(std::max(2 * v.capacity(), workers == 1 ? n : n / workers + n / 4 + 16));
}

ConnUpdate* VmInstaller::compact_update(uint64_t fp, size_t n) {
  // It goes where this migration's entry with its key is.
  const FingerprintSlots::Cell* at = slots_.find(fp);
  if (!at || at->slot == kNoSlot) {
    unmatched++;
    return nullptr;
  }
  ConnUpdate& u = append(command_for(at->worker).updates, n);
  u.slot = at->slot;
  return &u;
}

ConnUpdate* VmInstaller::placed_update(uint32_t place, size_t n) {
  // The slot is checked where it is used: the worker applies an update only where its slot
  // still holds its key (Worker::apply_updates), so a stale or forged placement places nothing.
  const uint16_t w = static_cast<uint16_t>(place & ((1u << place_bits_) - 1));
  if (place == kNoPlace || w >= dp_.worker_count()) {
    unmatched++;
    return nullptr;
  }
  ConnUpdate& u = append(command_for(w).updates, n);
  u.slot = place >> place_bits_;
  return &u;
}

bool VmInstaller::add_compact(const uint8_t* p, size_t n, bool placed) {
  ConnUpdate* u = placed ? placed_update(ConnRecord::placed_place(p), n)
                         : compact_update(ConnRecord::compact_fingerprint(p), n);
  if (!u) {  // placed nowhere (counted); its bytes are checked all the same
    ConnUpdate scratch;
    return ConnRecord::parse_compact(p, &scratch);
  }
  // On a bad value the caller discards the frame's commands, this update with them.
  return ConnRecord::parse_compact(p, u);
}

void VmInstaller::add(const ConnRecord& r, size_t n) {
  if (r.compact) {  // a decoded one (the vector path); frames take add_compact
    ConnUpdate* u =
        r.place != kNoPlace ? placed_update(r.place, n) : compact_update(r.fingerprint, n);
    if (!u) return;
    u->version = r.version;
    u->fingerprint = r.fingerprint;
    u->idle_s = r.idle_s;
    u->proto = r.key.proto;
    u->l4_state = r.l4_state;
    u->flags = r.flags;
    u->zone = r.zone;
    u->peer[0] = r.peer[0];
    u->peer[1] = r.peer[1];
    u->counters = r.counters();
    return;
  }
  // To its key's owner by the packet path's rule (translator.h), which for a translated
  // connection is not the symmetric hash.
  const uint16_t w =
      conn_owner(dp_.xlate(0) ? dp_.translator() : nullptr,
                 r.key.tuple((r.flags & connflag::kOrigIsHi) ? Dir::kHiToLo : Dir::kLoToHi),
                 r.key, dp_.worker_count());
  WorkerCommand& c = command_for(w);
  // Filled in place. It was filled in a scratch item and copied in, which read back whole
  // words the record's decode and to_entry had written in smaller pieces (store-forwarding
  // stalls, two thirds of this function's time).
  InstallItem& it = append(c.items, n);
  it.key = r.key;
  it.deleted = r.deleted;
  if (!r.deleted) {
    it.order = static_cast<uint32_t>(places_.size());
    places_.push_back(kNoPlace);
  }
  it.idle_s = r.idle_s;
  if (r.flags & connflag::kXlate) {
    it.xlate = static_cast<uint32_t>(c.xlates.size());
    c.xlates.push_back({r.xlate.to_xlate(), r.xlate.handoff, r.xlate.l7});
  }
  r.to_entry(&it.entry, 0);
  it.counters = r.counters();
  it.entry.version.store(r.version, std::memory_order_relaxed);
}

bool VmInstaller::queue(int timeout_ms) {
  int64_t deadline = now_ms() + timeout_ms;
  bool ok = true;
  for (uint16_t w = 0; w < dp_.worker_count(); w++) {
    std::unique_ptr<WorkerCommand>& c = building_[w];
    if (!c) continue;
    while (ok && !dp_.workers()[w]->command(c.get())) {
      if (now_ms() > deadline) ok = false;
      usleep(100);
    }
    if (ok) {
      pending_.push_back({std::move(c), w});
    } else {
      discard(w);
    }
  }
  return ok;
}

void VmInstaller::discard(uint16_t w) {
  if (free_.size() < kMaxFree) free_.push_back(std::move(building_[w]));
  building_[w].reset();
}

bool VmInstaller::submit(const std::vector<ConnRecord>& records, int timeout_ms) {
  for (const ConnRecord& r : records) add(r, records.size());
  return queue(timeout_ms);
}

CodecError VmInstaller::submit(const Frame& f, int timeout_ms, bool* queued, uint32_t* records) {
  *queued = false;
  *records = 0;
  if (f.header.kind != MsgKind::kEntries) return CodecError::kKindMismatch;
  // EntriesMsg::decode's checks, one record at a time straight into the commands.
  Reader r(f.body.data(), f.body.size());
  uint32_t round, n;
  const size_t smallest =
      f.header.version >= kProtocolVersionCompact ? kCompactRecordSize : kConnRecordSize;
  if (!r.u32(&round) || !r.count(&n, 4, smallest)) return r.error();
  // The map cell of a compact update a few records on is asked for ahead: the map is read at
  // random, a miss per update otherwise. Records differ in size, so a second cursor walks
  // ahead; it stops where a record would not fit (decode() reports that one).
  constexpr size_t kBodyAhead = 2048;
  const uint8_t* ahead = f.body.data() + 8;
  size_t left = f.body.size() - 8;
  auto look_ahead = [&] {
    // The frame's own bytes a little further on: another core wrote them (the socket's copy,
    // or here the bench's sender), and the hardware's stream prefetch stops at each page.
    rte_prefetch0(ahead + kBodyAhead);
    rte_prefetch0(ahead + kBodyAhead + kCompactRecordSize - 1);  // a record is 84 bytes or more
    size_t size = 0;
    if (left >= kCompactRecordSize && ahead[4] == kRecordCompact) {
      slots_.prefetch(ConnRecord::compact_fingerprint(ahead));
      size = kCompactRecordSize;
    } else if (left >= kPlacedRecordSize && ahead[4] == kRecordPlaced) {
      size = kPlacedRecordSize;  // no lookup to ask for
    } else if (left >= kConnRecordSize + kXlateExtSize) {
      size = ConnRecord::wire_size(ahead);
    }
    if (size == 0 || size > left) size = left;  // the end, or a record decode() will refuse
    ahead += size;
    left -= size;
  };
  constexpr uint32_t kAhead = 16;
  for (uint32_t i = 0; i < kAhead && left; i++) look_ahead();
  ConnRecord rec;  // decode() sets every field: one record reused (no zeroing per record)
  const bool compact = f.header.version >= kProtocolVersionCompact;
  const bool placed = f.header.version >= kProtocolVersionPlaced;
  bool ok = true;
  for (uint32_t i = 0; ok && i < n; i++) {
    if (left) look_ahead();
    // A compact update goes from its bytes into its item: most of a final delta, where a
    // decoded record copied into the item was a third of the destination's instructions.
    const uint8_t* p = compact ? r.peek(kCompactRecordSize) : nullptr;
    if (p && p[4] == kRecordCompact) {
      r.skip(kCompactRecordSize);
      ok = add_compact(p, n, false) || r.fail(CodecError::kBadValue);
      continue;
    }
    if (p && p[4] == kRecordPlaced && placed && (p = r.peek(kPlacedRecordSize))) {
      r.skip(kPlacedRecordSize);
      ok = add_compact(p, n, true) || r.fail(CodecError::kBadValue);
      continue;
    }
    ok = rec.decode(r, f.header.version);
    if (ok) add(rec, n);
  }
  if (!ok || !r.finish()) {
    for (uint16_t w = 0; w < dp_.worker_count(); w++)
      if (building_[w]) discard(w);
    return r.ok() ? CodecError::kBadValue : r.error();
  }
  *records = n;
  *queued = queue(timeout_ms);
  return CodecError::kOk;
}

bool VmInstaller::wait(int timeout_ms) {
  const int64_t start = now_ms(), deadline = start + timeout_ms;
  for (Pending& p : pending_) {
    // The last command of a round is what the freeze waits for: spin on it for a while
    // before sleeping (a usleep is 50-100 us, the whole budget of a small round).
    while (!p.c->done.load(std::memory_order_acquire)) {
      const int64_t now = now_ms();
      if (now > deadline) {
        reap();
        return false;
      }
      if (now - start < kSpinMs)
        rte_pause();
      else
        usleep(50);
    }
  }
  reap();
  return true;
}

void VmInstaller::reap() {
  size_t k = 0;
  for (; k < pending_.size() && pending_[k].c->done.load(std::memory_order_acquire); k++) {
    Pending& p = pending_[k];
    WorkerCommand& c = *p.c;
    applied += c.applied;
    stale += c.stale;
    failed += c.failed;
    removed += c.removed;
    unmatched += c.unmatched;
    if (conflict.empty()) conflict = c.conflict;
    // Where each key now is (or that it is gone), for the compact updates of later rounds.
    if (c.kind == WorkerCommand::Kind::kInstall) learn(p.worker, c);
    if (c.kind == WorkerCommand::Kind::kInstall && free_.size() < kMaxFree)
      free_.push_back(std::move(p.c));
  }
  pending_.erase(pending_.begin(), pending_.begin() + static_cast<long>(k));
}

void VmInstaller::learn(uint16_t worker, const WorkerCommand& c) {
  // The map is read at random: each key's cell is asked for a few items ahead (the grace of a
  // snapshot of 1M entries, where nothing else was in the way of these misses).
  constexpr size_t kAhead = 8;
  uint64_t fps[kAhead];
  const size_t n = c.items.size();
  auto fp_at = [&](size_t i) {
    const uint64_t fp = c.items[i].key.fingerprint(fp_mix_);
    slots_.prefetch(fp);
    fps[i % kAhead] = fp;
  };
  for (size_t i = 0; i < std::min(n, kAhead); i++) fp_at(i);
  for (size_t i = 0; i < n; i++) {
    const uint64_t fp = fps[i % kAhead];
    const int32_t installed = c.items[i].installed;
    if (i + kAhead < n) fp_at(i + kAhead);
    if (installed >= 0) {
      slots_.put(fp, worker, static_cast<uint32_t>(installed));
      if (c.items[i].order < places_.size())
        places_[c.items[i].order] = place_of(worker, static_cast<uint32_t>(installed));
    } else {
      slots_.erase(fp);
    }
  }
}

std::unique_ptr<WorkerCommand> VmInstaller::take_command() {
  // Commands the workers finished since: their items were just read, so reusing them now
  // writes into cached lines rather than ones a whole round old.
  reap();
  if (free_.empty()) return std::make_unique<WorkerCommand>();
  std::unique_ptr<WorkerCommand> c = std::move(free_.back());
  free_.pop_back();
  c->items.clear();
  c->updates.clear();
  c->xlates.clear();
  c->applied = c->stale = c->failed = c->removed = c->unmatched = 0;
  c->conflict.clear();
  c->done.store(false, std::memory_order_relaxed);
  return c;
}

bool VmInstaller::delete_vm(Dataplane& dp, uint16_t vm, int timeout_ms, uint64_t* removed,
                            bool retire) {
  return run_on_workers(dp, vm,
                        retire ? WorkerCommand::Kind::kRetireVm : WorkerCommand::Kind::kDeleteVm,
                        timeout_ms, removed);
}

bool VmInstaller::run_on_workers(Dataplane& dp, uint16_t vm, WorkerCommand::Kind kind,
                                 int timeout_ms, uint64_t* removed) {
  VmInstaller inst(dp, vm);
  int64_t deadline = now_ms() + timeout_ms;
  for (auto& w : dp.workers()) {
    auto c = std::make_unique<WorkerCommand>();
    c->kind = kind;
    c->vm = vm;
    while (!w->command(c.get())) {
      if (now_ms() > deadline) return false;
      usleep(100);
    }
    inst.pending_.push_back({std::move(c), 0});
  }
  bool ok = inst.wait(static_cast<int>(std::max<int64_t>(0, deadline - now_ms())));
  if (removed) *removed = inst.removed;
  return ok;
}

bool begin_epoch(Dataplane& dp, uint16_t vm, int timeout_ms) {
  std::atomic<uint16_t>& epoch = dp.vms().slot(vm).epoch;
  const uint16_t e = epoch.load(std::memory_order_acquire);  // only the control core moves it
  if (next_epoch(e) < e &&
      !VmInstaller::run_on_workers(dp, vm, WorkerCommand::Kind::kClearEpochs, timeout_ms, nullptr))
    return false;
  epoch.store(next_epoch(e), std::memory_order_seq_cst);
  return true;
}

}  // namespace baton::migrate
