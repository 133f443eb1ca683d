// SPDX-License-Identifier: Apache-2.0
#include "migrate/vm_state_io.h"

#include <unistd.h>

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

bool VmReader::read_slot(uint16_t shard, uint32_t slot, std::vector<ConnRecord>* out,
                         uint64_t* moved) {
  const ConnTable& t = dp_.shard(shard);
  auto& sent = sent_[shard];
  auto it = sent.find(slot);
  ConnEntry e;
  FlowKey k;
  bool live = t.read(slot, &e, &k) && e.vm_id == vm_;
  if (it != sent.end() && (!live || !(it->second.key == k))) {
    // Gone, or the slot now holds another flow: the destination must forget the old one.
    out->push_back(ConnRecord::tombstone(it->second.key, it->second.version + 2));
    sent.erase(it);
    it = sent.end();
  }
  if (!live) return false;
  if (it != sent.end() && it->second.version == e.version.load(std::memory_order_relaxed))
    return false;  // queued, but nothing new since we sent it
  ConnRecord r = ConnRecord::from_entry(k, e, dp_.now_s());
  if (moved && it != sent.end() && k.proto == 6 &&
      (it->second.end[0] != e.peer[0].end || it->second.end[1] != e.peer[1].end))
    (*moved)++;
  sent[slot] = Sent{k, r.version, {e.peer[0].end, e.peer[1].end}};
  out->push_back(r);
  return true;
}

std::vector<ConnRecord> VmReader::snapshot() {
  std::vector<ConnRecord> out;
  Dataplane::ReaderGuard guard(dp_);
  for (uint16_t w = 0; w < dp_.worker_count(); w++) {
    sent_[w].clear();
    out.reserve(out.size() + dp_.shard(w).vm_count(vm_));
    dp_.shard(w).for_each_in_vm(vm_, [&](uint32_t slot) { read_slot(w, slot, &out, nullptr); });
  }
  return out;
}

std::vector<ConnRecord> VmReader::delta(uint64_t* seq_moved) {
  std::vector<ConnRecord> out;
  VmSlot& vs = dp_.vms().slot(vm_);
  bool overflow = vs.dirty_overflow.exchange(false, std::memory_order_acq_rel);
  Dataplane::ReaderGuard guard(dp_);
  for (uint16_t w = 0; w < dp_.worker_count(); w++) {
    rte_ring* r = vs.dirty[w];
    uint32_t slots[256];
    unsigned n;
    while (r && (n = rte_ring_sc_dequeue_burst_elem(r, slots, sizeof(uint32_t), 256, nullptr)))
      for (unsigned i = 0; i < n; i++) read_slot(w, slots[i], &out, seq_moved);
    if (overflow) {
      // A ring overflowed: some changes were not queued. Walk the whole VM; unchanged entries
      // are skipped by version, vanished ones found by comparing with what was sent.
      std::vector<uint32_t> seen;
      dp_.shard(w).for_each_in_vm(vm_, [&](uint32_t slot) {
        read_slot(w, slot, &out, seq_moved);
        seen.push_back(slot);
      });
      std::vector<uint32_t> gone;
      for (auto& [slot, s] : sent_[w]) {
        ConnEntry e;
        FlowKey k;
        if (!dp_.shard(w).read(slot, &e, &k) || !(k == s.key) || e.vm_id != vm_)
          gone.push_back(slot);
      }
      for (uint32_t slot : gone) read_slot(w, slot, &out, seq_moved);
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
  for (const ConnRecord& r : records) {
    uint16_t owner = dp_.owner_of(r.key);
    if (!cmds[owner]) {
      cmds[owner] = std::make_unique<WorkerCommand>();
      cmds[owner]->kind = WorkerCommand::Kind::kInstall;
      cmds[owner]->vm = vm_;
    }
    InstallItem it;
    it.key = r.key;
    it.deleted = r.deleted;
    it.idle_s = r.idle_s;
    r.to_entry(&it.entry, 0);
    it.entry.version.store(r.version, std::memory_order_relaxed);
    cmds[owner]->items.push_back(it);
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
    it = pending_.erase(it);
  }
  return true;
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
