// SPDX-License-Identifier: Apache-2.0
#include "migrate/vm_state_io.h"

#include <unistd.h>

#include <rte_prefetch.h>

#include <algorithm>
#include <bit>
#include <chrono>

#include "conntrack/conn_table.h"
#include "dataplane/dataplane.h"

namespace baton::migrate {
namespace {

int64_t now_ms() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(
             std::chrono::steady_clock::now().time_since_epoch())
      .count();
}

}  // namespace

VmReader::VmReader(Dataplane& dp, uint16_t vm) : dp_(dp), vm_(vm), sent_(dp.worker_count()) {}

// ---- SentMap ----------------------------------------------------------------------------------

VmReader::Sent* VmReader::SentMap::find(uint32_t slot) {
  if (cells_.empty()) return nullptr;
  for (size_t i = home(slot);; i = (i + 1) & mask_) {
    Sent& c = cells_[i];
    if (c.slot == slot) return &c;
    if (c.slot == kEmpty) return nullptr;
  }
}

void VmReader::SentMap::put(const Sent& s) {
  if ((size_ + 1) * 2 > cells_.size()) grow();
  for (size_t i = home(s.slot);; i = (i + 1) & mask_) {
    Sent& c = cells_[i];
    if (c.slot == kEmpty) size_++;
    if (c.slot == kEmpty || c.slot == s.slot) {
      c = s;
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
    bool stays = i <= j ? (i < k && k <= j) : (i < k || k <= j);
    if (!stays) {
      cells_[i] = cells_[j];
      i = j;
    }
  }
  cells_[i].slot = kEmpty;
  size_--;
}

void VmReader::SentMap::reset(size_t n) {
  size_t cap = 16;
  while (cap < 2 * n) cap *= 2;
  const Sent empty{kEmpty, 0, {0, 0}, FlowKey{}};
  if (cells_.size() >= cap && cells_.size() <= 4 * cap)
    std::fill(cells_.begin(), cells_.end(), empty);
  else
    cells_.assign(cap, empty);
  mask_ = cells_.size() - 1;
  shift_ = 64 - std::countr_zero(cells_.size());
  size_ = 0;
}

void VmReader::SentMap::grow() {
  std::vector<Sent> old = std::move(cells_);
  cells_.clear();
  reset(std::max<size_t>(16, old.size()));  // twice the cells: reset sizes for 2 * n
  for (const Sent& c : old)
    if (c.slot != kEmpty) put(c);
}

// ---- VmReader ---------------------------------------------------------------------------------

void VmReader::read_slot(uint16_t shard, uint32_t slot, uint32_t now_s,
                         std::vector<ConnRecord>* out, uint64_t* moved) {
  const ConnTable& t = dp_.shard(shard);
  SentMap& sent = sent_[shard];
  Sent* it = sent.find(slot);
  ConnEntry e;
  FlowKey k;
  bool live = t.read(slot, &e, &k) && e.vm_id == vm_;
  if (it && (!live || !(it->key == k))) {
    // Gone, or the slot now holds another flow: the destination must forget the old one.
    out->push_back(ConnRecord::tombstone(it->key, it->version + 2));
    sent.erase(it);
    it = nullptr;
  }
  if (!live) return;
  const uint32_t version = e.version.load(std::memory_order_relaxed);
  if (it && it->version == version) return;  // queued, but nothing new since we sent it
  if (moved && it && k.proto == 6 &&
      (it->end[0] != e.peer[0].end || it->end[1] != e.peer[1].end))
    (*moved)++;
  sent.put(Sent{slot, version, {e.peer[0].end, e.peer[1].end}, k});
  out->push_back(ConnRecord::from_entry(k, e, now_s));
}

namespace {
// Reads slots[i] after asking for the lines of slots[i + kAhead]: the slots of a VM are spread
// over the whole table, so each read is otherwise a few serial cache misses.
constexpr size_t kAhead = 8;
void prefetch_slot(const ConnTable& t, const void* sent_cell, uint32_t slot) {
  if (sent_cell) rte_prefetch0(sent_cell);
  const char* e = reinterpret_cast<const char*>(&t.entry(slot));
  rte_prefetch0(e);
  rte_prefetch0(e + sizeof(ConnEntry) - 1);
  const char* k = reinterpret_cast<const char*>(&t.key(slot));
  rte_prefetch0(k);
  rte_prefetch0(k + sizeof(FlowKey) - 1);
}
}  // namespace

void VmReader::read_slots(uint16_t shard, const std::vector<uint32_t>& slots, uint32_t now_s,
                          std::vector<ConnRecord>* out, uint64_t* moved) {
  const ConnTable& t = dp_.shard(shard);
  const SentMap& sent = sent_[shard];
  const size_t n = slots.size();
  for (size_t i = 0; i < std::min(n, kAhead); i++)
    prefetch_slot(t, sent.home_cell(slots[i]), slots[i]);
  for (size_t i = 0; i < n; i++) {
    if (i + kAhead < n) prefetch_slot(t, sent.home_cell(slots[i + kAhead]), slots[i + kAhead]);
    read_slot(shard, slots[i], now_s, out, moved);
  }
}

std::vector<ConnRecord> VmReader::snapshot() {
  std::vector<ConnRecord> out;
  Dataplane::ReaderGuard guard(dp_);
  const uint32_t now_s = dp_.now_s();
  std::vector<uint32_t> slots;
  for (uint16_t w = 0; w < dp_.worker_count(); w++) {
    const ConnTable& t = dp_.shard(w);
    const uint32_t n = t.vm_count(vm_);
    sent_[w].reset(n);
    out.reserve(out.size() + n);
    slots.clear();
    slots.reserve(n);
    // Walk first (a chain of dependent loads), then read with prefetching.
    t.for_each_in_vm(vm_, [&](uint32_t slot) { slots.push_back(slot); });
    read_slots(w, slots, now_s, &out, nullptr);
  }
  return out;
}

std::vector<ConnRecord> VmReader::delta(uint64_t* seq_moved) {
  std::vector<ConnRecord> out;
  VmSlot& vs = dp_.vms().slot(vm_);
  bool overflow = vs.dirty_overflow.exchange(false, std::memory_order_acq_rel);
  Dataplane::ReaderGuard guard(dp_);
  const uint32_t now_s = dp_.now_s();
  std::vector<uint32_t> slots;
  for (uint16_t w = 0; w < dp_.worker_count(); w++) {
    rte_ring* r = vs.dirty[w];
    slots.clear();
    if (r) {
      slots.reserve(rte_ring_count(r));
      uint32_t buf[256];
      unsigned n;
      while ((n = rte_ring_sc_dequeue_burst_elem(r, buf, sizeof(uint32_t), 256, nullptr)))
        slots.insert(slots.end(), buf, buf + n);
    }
    out.reserve(out.size() + slots.size());
    read_slots(w, slots, now_s, &out, seq_moved);
    if (overflow) {
      // A ring overflowed: some changes were not queued. Walk the whole VM; unchanged entries
      // are skipped by version, vanished ones found by comparing with what was sent.
      slots.clear();
      dp_.shard(w).for_each_in_vm(vm_, [&](uint32_t slot) { slots.push_back(slot); });
      read_slots(w, slots, now_s, &out, seq_moved);
      std::vector<uint32_t> gone;
      sent_[w].for_each([&](const Sent& s) {
        ConnEntry e;
        FlowKey k;
        if (!dp_.shard(w).read(s.slot, &e, &k) || !(k == s.key) || e.vm_id != vm_)
          gone.push_back(s.slot);
      });
      read_slots(w, gone, now_s, &out, seq_moved);
    }
  }
  return out;
}

uint64_t VmReader::live() const {
  uint64_t n = 0;
  for (auto& s : sent_) n += s.size();
  return n;
}

VmInstaller::~VmInstaller() {
  // A worker still holds a command we could not wait for (it stopped): leaking it is safer
  // than freeing memory a worker may yet write.
  if (!wait(10000))
    for (auto& c : pending_) c.release();
}

bool VmInstaller::submit(const std::vector<ConnRecord>& records, int timeout_ms) {
  const uint16_t workers = dp_.worker_count();
  std::vector<std::unique_ptr<WorkerCommand>> cmds(workers);
  // Owner of each record once, then one exact-size item vector per owner (no regrowth, which
  // would copy every 144-byte item again).
  std::vector<uint16_t> owner(records.size());
  std::vector<size_t> count(workers, 0);
  for (size_t i = 0; i < records.size(); i++) count[owner[i] = dp_.owner_of(records[i].key)]++;
  for (uint16_t w = 0; w < workers; w++) {
    if (!count[w]) continue;
    cmds[w] = take_command();
    cmds[w]->kind = WorkerCommand::Kind::kInstall;
    cmds[w]->vm = vm_;
    cmds[w]->items.reserve(count[w]);
  }
  for (size_t i = 0; i < records.size(); i++) {
    const ConnRecord& r = records[i];
    InstallItem& it = cmds[owner[i]]->items.emplace_back();
    it.key = r.key;
    it.deleted = r.deleted;
    it.idle_s = r.idle_s;
    r.to_entry(&it.entry, 0);
    it.entry.version.store(r.version, std::memory_order_relaxed);
  }
  int64_t deadline = now_ms() + timeout_ms;
  for (uint16_t w = 0; w < workers; w++) {
    if (!cmds[w]) continue;
    while (!dp_.workers()[w]->command(cmds[w].get())) {
      if (now_ms() > deadline) return false;
      usleep(100);
    }
    pending_.push_back(std::move(cmds[w]));
  }
  return true;
}

bool VmInstaller::wait(int timeout_ms) {
  int64_t deadline = now_ms() + timeout_ms;
  for (auto it = pending_.begin(); it != pending_.end();) {
    WorkerCommand& c = **it;
    while (!c.done.load(std::memory_order_acquire)) {
      if (now_ms() > deadline) return false;
      usleep(50);
    }
    applied += c.applied;
    stale += c.stale;
    failed += c.failed;
    removed += c.removed;
    if (c.kind == WorkerCommand::Kind::kInstall && free_.size() < kMaxFree)
      free_.push_back(std::move(*it));
    it = pending_.erase(it);
  }
  return true;
}

std::unique_ptr<WorkerCommand> VmInstaller::take_command() {
  if (free_.empty()) return std::make_unique<WorkerCommand>();
  std::unique_ptr<WorkerCommand> c = std::move(free_.back());
  free_.pop_back();
  c->items.clear();
  c->applied = c->stale = c->failed = c->removed = 0;
  c->done.store(false, std::memory_order_relaxed);
  return c;
}

bool VmInstaller::delete_vm(Dataplane& dp, uint16_t vm, int timeout_ms, uint64_t* removed) {
  VmInstaller inst(dp, vm);
  int64_t deadline = now_ms() + timeout_ms;
  for (auto& w : dp.workers()) {
    auto c = std::make_unique<WorkerCommand>();
    c->kind = WorkerCommand::Kind::kDeleteVm;
    c->vm = vm;
    while (!w->command(c.get())) {
      if (now_ms() > deadline) return false;
      usleep(100);
    }
    inst.pending_.push_back(std::move(c));
  }
  bool ok = inst.wait(static_cast<int>(std::max<int64_t>(0, deadline - now_ms())));
  if (removed) *removed = inst.removed;
  return ok;
}

}  // namespace baton::migrate
