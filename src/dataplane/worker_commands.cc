// SPDX-License-Identifier: Apache-2.0
//
// The control side's commands, run by the owning worker between bursts (worker.h
// WorkerCommand): installing a peer's records (a migration's destination) and deleting a VM's
// entries (rollback, or the source after SUCCESS). Only the owner writes its shard, so these
// are plain table writes under the entries' seqlocks.
#include <rte_prefetch.h>

#include <algorithm>

#include "conntrack/age_class.h"
#include "conntrack/conn_table.h"
#include "dataplane/worker.h"
#include "nat/conn_xlate.h"

namespace baton {

namespace {
// The signatures of the keys one install batch (32 items) inserted or removed, each item one key
// (perhaps twice): open-addressed in four times as many cells.
class SigSet {
 public:
  void clear() {
    if (!n_) return;
    std::fill(std::begin(used_), std::end(used_), 0);
    n_ = 0;
  }
  bool has(hash_sig_t sig) const {
    if (!n_) return false;
    for (uint32_t h = sig % kCells;; h = (h + 1) % kCells) {
      if (!(used_[h / 64] >> (h % 64) & 1)) return false;
      if (cell_[h] == sig) return true;
    }
  }
  void add(hash_sig_t sig) {
    for (uint32_t h = sig % kCells;; h = (h + 1) % kCells) {
      if (!(used_[h / 64] >> (h % 64) & 1)) {
        used_[h / 64] |= uint64_t{1} << (h % 64);
        cell_[h] = sig;
        n_++;
        return;
      }
      if (cell_[h] == sig) return;
    }
  }

 private:
  static constexpr uint32_t kCells = 128;
  hash_sig_t cell_[kCells];
  uint64_t used_[kCells / 64] = {};
  uint32_t n_ = 0;
};
}  // namespace

bool Worker::install_xlate(uint32_t slot, const InstallItem& it, const InstallXlate* ixp,
                           std::string* why) {
  if (!xlate_ || !translator_) {
    *why = "this instance translates nothing";
    return false;
  }
  if (!ixp) {
    *why = "translated entry without its translation";
    return false;
  }
  const InstallXlate& ix = *ixp;
  // Static NAT and port forwarding hold nothing but the reply tuple; a dynamic mapping (SNAT,
  // hairpin), an LB service, backend and sticky entry are resolved to this instance's own
  // (Translator::adopt). This worker owns the connection (conn_owner), as it owns the port
  // blocks of the mapping's outside port when the instances are alike.
  const Tuple t = it.key.tuple((it.entry.flags & connflag::kOrigIsHi) ? Dir::kHiToLo : Dir::kLoToHi);
  ConnXlate x = ix.xlate;
  if (!translator_->adopt(id_, t, ix.handoff, now_s_, &x, why)) return false;
  // An L7 connection lands on an L7 service here, and nothing else does: the packets of one
  // are spliced (offsets), of the other translated only.
  const bool l7_service = translator_->lb() && ix.handoff.has_lb &&
                          translator_->lb()->services()[x.service].cfg.mode == LbMode::kL7;
  if (l7_service != ix.l7.has || (ix.l7.has && !l7_)) {
    *why = "lb service " + IpAddr::v4(ix.handoff.vip).to_string(Family::kV4) + ":" +
           std::to_string(ix.handoff.vip_port.host()) +
           (ix.l7.has ? " is not in mode l7 here" : " is in mode l7 here");
    translator_->release(id_, x, it.key.proto, now_s_);
    translator_->drop_unused(id_, {x}, now_s_);
    return false;
  }
  int rc;
  if (!attach_xlate(slot, x, it.key.proto, it.key.vlan, &rc)) {
    translator_->release(id_, x, it.key.proto, now_s_);
    translator_->drop_unused(id_, {x}, now_s_);
    *why = rc == -ENOSPC ? "translation index full"
                         : "reply tuple " + to_string(reply_tuple(x, it.key.proto, it.key.vlan)) +
                               " is used by another connection here";
    return false;
  }
  // attach_xlate's write bracket moved the version on; the entry keeps the source's, or the
  // next delta of this connection (the source's version + 2) would look like a duplicate.
  if (ix.l7.has) install_l7(slot, ix.l7, x.service);
  table_->entry(slot).version.store(it.entry.version.load(std::memory_order_relaxed),
                                    std::memory_order_release);
  stats_.conn_translated++;
  return true;
}

// The side-table record of an installed L7 connection: its phase and offsets, no head buffer
// (only connections without one travel, lb/l7_proxy.h). Pending like its entry: the packet path
// reaches the record only after the entry's kPending check.
void Worker::install_l7(uint32_t slot, const L7Handoff& h, uint16_t service) {
  L7ConnRecord& r = l7_->record(slot);
  table_->begin_write(slot);
  r = L7ConnRecord{};
  r.phase = h.phase;
  r.service = service;
  r.offsets = h.offsets;
  table_->entry(slot).flags |= connflag::kL7;
  table_->end_write(slot);
}

// Inline: the final delta's every update (a call was a fifth of its instructions).
[[gnu::always_inline]] inline void Worker::update_in_place(const ConnUpdate& u, const FlowKey* key,
                                                        const L7Handoff* l7) {
  ConnEntry& e = table_->entry(u.slot);
  // Only the state gauge moves, if the state did (forget() would also drop what the entry owns
  // elsewhere: its translation, its L7 state). The key is read back only if a half-open count
  // moves.
  if (u.l4_state != e.l4_state)
    restate(u.proto, e, e.l4_state, u.l4_state, [&] {
      return initiator_side(key ? *key : table_->key(u.slot), e);
    });
  table_->begin_write(u.slot);
  e.l4_state = u.l4_state;
  // A connection's translation (and L7 record) is fixed at its creation: the installed one
  // stays.
  e.flags = static_cast<uint8_t>((u.flags & ~connflag::kXlate) |
                                 (e.flags & (connflag::kXlate | connflag::kL7)) |
                                 connflag::kPending | connflag::kFromPeer);
  e.zone = u.zone;
  e.peer[0] = u.peer[0];
  e.peer[1] = u.peer[1];
  table_->set_counters(u.slot, u.counters);
  e.last_seen = now_s_ - std::min(now_s_, u.idle_s);
  // An L7 connection's offsets are fixed at the splice; its phase may have moved on
  // (spliced -> closed).
  if (l7 && l7->has && (e.flags & connflag::kL7)) l7_->record(u.slot).phase = l7->phase;
  const uint8_t cls = static_cast<uint8_t>(
      age_class_of(u.proto, static_cast<TcpState>(e.l4_state), e.flags & connflag::kReplied));
  // end_write leaves version even; set it to the source's version afterwards.
  table_->end_write(u.slot);
  e.version.store(u.version, std::memory_order_release);
  if (cls != e.age_class) table_->set_age_class(u.slot, cls);
}

void Worker::apply_updates(WorkerCommand& c) {
  // The slots are known up front: each entry's line and its key's are asked for a few updates
  // ahead (the key for the check below).
  constexpr size_t kAhead = 24;
  const size_t n = c.updates.size();
  auto ask = [&](size_t i) {
    const uint32_t s = c.updates[i].slot;
    if (s < table_->slots()) {
      table_->prefetch(s);
      table_->prefetch_key(s);
    }
  };
  const FlowKey::Seed seed(c.fp_seed);
  auto holds = [&](const ConnUpdate& u) {
    if (!table_->live(u.slot)) return false;
    const ConnEntry& e = table_->entry(u.slot);
    return e.vm_id == c.vm && (e.flags & connflag::kFromPeer) &&
           table_->key_fingerprint(u.slot, seed) == u.fingerprint;
  };
  for (size_t i = 0; i < std::min(n, kAhead); i++) ask(i);
  for (size_t i = 0; i < n; i++) {
    if (i + kAhead < n) ask(i + kAhead);
    const ConnUpdate& u = c.updates[i];
    // The slot must still hold the key, as one of this migration's entries; an update placed
    // nowhere is counted, never applied elsewhere.
    if (!holds(u)) {
      c.unmatched++;
      continue;
    }
    const ConnEntry& e = table_->entry(u.slot);
    // Versions make a duplicated or reordered delta harmless.
    if (u.version <= e.version.load(std::memory_order_relaxed)) {
      c.stale++;
      continue;
    }
    update_in_place(u, nullptr, nullptr);
    c.applied++;
  }
}

void Worker::apply(WorkerCommand& c) {
  switch (c.kind) {
    case WorkerCommand::Kind::kInstall: {
      // Keys are looked up a batch ahead (one bulk rte_hash call per batch, signatures computed
      // here) and the entries found are prefetched while the batch before is written, so that
      // the misses of one overlap the work on the other. A batch's lookups ran before the batch
      // ahead of it and its own earlier items were applied: an item looks again when one of
      // those inserted or removed a key of its signature (in practice a tombstone and the flow
      // that took its slot).
      constexpr uint32_t kBatch = 32;
      struct Batch {
        hash_sig_t sigs[kBatch];  // per item
        int32_t found[kBatch];    // per item: the slot its key is in, or -1
        uint32_t n = 0;
      } batch[2];
      SigSet changed[2];  // by the batch whose items inserted or removed them
      auto look_up = [&](Batch& b, size_t first) {
        b.n = static_cast<uint32_t>(std::min<size_t>(kBatch, c.items.size() - first));
        const FlowKey* keys[kBatch];
        for (uint32_t k = 0; k < b.n; k++) {
          const InstallItem& it = c.items[first + k];
          keys[k] = &it.key;
          b.sigs[k] = ConnTable::hash(it.key);
        }
        table_->lookup_bulk(keys, b.sigs, b.n, b.found);
        for (uint32_t k = 0; k < b.n; k++)
          if (b.found[k] >= 0) table_->prefetch(static_cast<uint32_t>(b.found[k]));
      };
      if (!c.items.empty()) look_up(batch[0], 0);
      for (size_t i = 0; i < c.items.size(); i++) {
        InstallItem& it = c.items[i];
        const uint32_t j = static_cast<uint32_t>(i % kBatch);
        const size_t bi = i / kBatch;
        Batch& cur = batch[bi % 2];
        SigSet& changing = changed[bi % 2];
        if (j == 0) {
          changing.clear();  // batch bi - 2's: it was applied before this batch was looked up
          if (i + kBatch < c.items.size()) look_up(batch[(bi + 1) % 2], i + kBatch);
        }
        const hash_sig_t sig = cur.sigs[j];
        int32_t slot = changed[0].has(sig) || changed[1].has(sig) ? table_->lookup(it.key)
                                                                  : cur.found[j];
        if (slot >= 0 && !(table_->entry(slot).flags & connflag::kFromPeer)) {
          // An entry this instance made itself for the arriving VM's address (a frame flooded
          // here before the VM came) lives in another version space: the source's wins.
          forget(static_cast<uint32_t>(slot));
          table_->remove(static_cast<uint32_t>(slot));
          changing.add(sig);
          slot = -1;
        }
        if (slot >= 0) {
          ConnEntry& e = table_->entry(slot);
          // Versions make a duplicated or reordered delta harmless.
          if (it.entry.version.load(std::memory_order_relaxed) <=
              e.version.load(std::memory_order_relaxed)) {
            c.stale++;
            if (!it.deleted) it.installed = slot;
            continue;
          }
          if (it.deleted) {
            forget(slot);
            table_->remove(slot);
            changing.add(sig);
            c.removed++;
            continue;
          }
          // The entry stays. it.key is the table's key (found by it).
          ConnUpdate u;
          u.slot = static_cast<uint32_t>(slot);
          u.version = it.entry.version.load(std::memory_order_relaxed);
          u.idle_s = it.idle_s;
          u.proto = it.key.proto;
          u.l4_state = it.entry.l4_state;
          u.flags = it.entry.flags;
          u.zone = it.entry.zone;
          u.peer[0] = it.entry.peer[0];
          u.peer[1] = it.entry.peer[1];
          u.counters = it.counters;
          const InstallXlate* ix = c.xlate_of(it);
          update_in_place(u, &it.key, ix ? &ix->l7 : nullptr);
          c.applied++;
          it.installed = slot;
          continue;
        }
        if (it.deleted) {
          c.stale++;
          continue;
        }
        ConnEntry e = it.entry;
        e.vm_id = c.vm;
        // kXlate is set by install_xlate once the translation is in place.
        e.flags = static_cast<uint8_t>((e.flags & ~connflag::kXlate) | connflag::kPending |
                                       connflag::kFromPeer);
        e.last_seen = now_s_ - std::min(now_s_, it.idle_s);
        e.age_class = static_cast<uint8_t>(age_class_of(
            it.key.proto, static_cast<TcpState>(e.l4_state), e.flags & connflag::kReplied));
        e.mig_epoch = 0;
        slot = table_->insert(it.key, e, &it.counters);
        if (slot >= 0) changing.add(sig);
        std::string why;
        if (slot >= 0 && (it.entry.flags & connflag::kXlate) &&
            !install_xlate(static_cast<uint32_t>(slot), it, c.xlate_of(it), &why)) {
          table_->remove(static_cast<uint32_t>(slot));  // untranslated it would be wrong
          slot = -1;
          if (c.conflict.empty()) c.conflict = why;
        }
        if (slot < 0) {
          c.failed++;
        } else {
          c.applied++;
          it.installed = slot;
          restate(it.key.proto, e, -1, e.l4_state, [&] { return initiator_side(it.key, e); });
        }
      }
      apply_updates(c);
      break;
    }
    case WorkerCommand::Kind::kDeleteVm:
    case WorkerCommand::Kind::kRetireVm: {
      std::vector<uint32_t> slots;
      std::vector<ConnXlate> held;  // what the VM's connections held besides themselves
      table_->for_each_in_vm(c.vm, [&](uint32_t s) { slots.push_back(s); });
      for (uint32_t s : slots) {
        if (table_->entry(s).flags & connflag::kXlate) held.push_back(xlate_->at(s));
        forget(s);
        table_->remove(s);
      }
      // Their mappings and VM-only sticky entries go now, not after their timeouts: the VM
      // lives elsewhere (or never arrived here).
      if (!held.empty()) translator_->drop_unused(id_, held, now_s_);
      c.removed = static_cast<uint32_t>(slots.size());
      stats_.conn_closed += slots.size();
      if (c.kind == WorkerCommand::Kind::kRetireVm) vm_rows_[c.vm] = VmWorkerRow{};
      break;
    }
    case WorkerCommand::Kind::kClearEpochs:
      // mig_epoch is the owner's own field, outside the entry's version bracket (note_change).
      table_->for_each_in_vm(c.vm, [&](uint32_t s) { table_->entry(s).mig_epoch = 0; });
      break;
  }
  c.done.store(true, std::memory_order_release);
}

}  // namespace baton
