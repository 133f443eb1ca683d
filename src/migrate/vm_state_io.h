// SPDX-License-Identifier: Apache-2.0
//
// The two ends of moving one VM's entries, with no network in between (the engine adds that).
//
// VmReader (source) reads a VM's entries from every worker's shard while the workers run:
// snapshot() walks the VM index (time proportional to the VM's entries, never the table), and
// delta() drains the per-worker dirty rings the owners fill while the VM is tracked. Each read
// goes through the entry's seqlock, so no record is torn. The reader remembers what it sent per
// slot, which turns a slot that vanished (or was reused for another flow) into a tombstone.
//
// Why a round is exact: the engine bumps the VM's epoch and waits for a grace period before
// calling delta(). After the grace period every worker has seen the new epoch, so any change
// made from then on queues the entry again; every change made before it is visible to this
// thread. After the pause signal (VM frozen, grace period) no worker touches the VM's entries,
// so the final delta is the VM's state as of the last packet the source processed.
//
// VmInstaller (destination) turns records into WorkerCommands for the owning workers; the
// control side never writes an entry itself.
#pragma once

#include <cstdint>
#include <memory>
#include <vector>

#include "dataplane/worker.h"
#include "migrate/codec.h"

namespace baton {
class Dataplane;
}

namespace baton::migrate {

class VmReader {
 public:
  VmReader(Dataplane& dp, uint16_t vm);

  // Every live entry of the VM. Resets what was sent.
  std::vector<ConnRecord> snapshot();
  // Entries changed (or removed) since the last call, as records and tombstones. Falls back to
  // a full walk if a dirty ring overflowed. *seq_moved counts TCP entries whose sequence state
  // moved since they were last sent (the seed's "snapshot at 99, VM at 110" entries).
  std::vector<ConnRecord> delta(uint64_t* seq_moved);
  // Live entries sent and not since deleted.
  uint64_t live() const;

 private:
  // What was last sent from one slot.
  struct Sent {
    uint32_t slot;  // kEmpty = unused cell
    uint32_t version;
    uint32_t end[2];
    FlowKey key;
  };
  // slot -> Sent, one per shard: open addressing (linear probing, power-of-two size, at most
  // half full, backward-shift deletion), so a lookup is about one cache miss and nothing is
  // allocated per entry. Sized by the VM's entries, not the table's slots, so a small VM on a
  // large table costs little.
  class SentMap {
   public:
    static constexpr uint32_t kEmpty = 0xffffffffu;
    Sent* find(uint32_t slot);
    // Inserts or overwrites.
    void put(const Sent& s);
    void erase(Sent* s);
    // Forgets everything and makes room for n entries without growing.
    void reset(size_t n);
    size_t size() const { return size_; }
    // The cell a lookup of slot starts at (the usual end of it), for prefetching.
    const Sent* home_cell(uint32_t slot) const {
      return cells_.empty() ? nullptr : &cells_[home(slot)];
    }
    template <class Fn>
    void for_each(Fn&& fn) const {
      for (const Sent& s : cells_)
        if (s.slot != kEmpty) fn(s);
    }

   private:
    size_t home(uint32_t slot) const {
      return static_cast<size_t>((uint64_t{slot} * 0x9E3779B97F4A7C15ull) >> shift_);
    }
    void grow();
    std::vector<Sent> cells_;
    size_t mask_ = 0;
    int shift_ = 64;
    size_t size_ = 0;
  };

  // Reads one slot: appends a record (changed or new), a tombstone (vanished or reused) or
  // nothing (unchanged). now_s: the dataplane clock, read once per call of snapshot/delta.
  void read_slot(uint16_t shard, uint32_t slot, uint32_t now_s, std::vector<ConnRecord>* out,
                 uint64_t* moved);
  // read_slot over a list, prefetching ahead.
  void read_slots(uint16_t shard, const std::vector<uint32_t>& slots, uint32_t now_s,
                  std::vector<ConnRecord>* out, uint64_t* moved);

  Dataplane& dp_;
  uint16_t vm_;
  std::vector<SentMap> sent_;  // per shard
};

class VmInstaller {
 public:
  VmInstaller(Dataplane& dp, uint16_t vm) : dp_(dp), vm_(vm) {}
  ~VmInstaller();

  // Splits records by owner and queues one command per owner. False if a command ring stayed
  // full for timeout_ms.
  bool submit(const std::vector<ConnRecord>& records, int timeout_ms);
  // Waits for every queued command; false on timeout (commands stay owned until done).
  bool wait(int timeout_ms);

  uint64_t applied = 0, stale = 0, failed = 0, removed = 0;

  // Removes every entry of the VM on every worker (rollback, or the source after SUCCESS).
  static bool delete_vm(Dataplane& dp, uint16_t vm, int timeout_ms, uint64_t* removed);

 private:
  // A command from the pool (items emptied, capacity kept) or a new one.
  std::unique_ptr<WorkerCommand> take_command();

  Dataplane& dp_;
  uint16_t vm_;
  std::vector<std::unique_ptr<WorkerCommand>> pending_;
  // Finished install commands kept with their item capacity: a round's chunks reuse the
  // memory of the previous round's instead of faulting in fresh pages.
  std::vector<std::unique_ptr<WorkerCommand>> free_;
  static constexpr size_t kMaxFree = 32;
};

}  // namespace baton::migrate
