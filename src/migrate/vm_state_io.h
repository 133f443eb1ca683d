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
// calling delta(Drain::kEndedEpoch). After the grace period every worker has seen the new
// epoch, so any change made from then on queues the entry again; every change made before it
// is visible to this thread. The round drains only the rings of the epoch that ended: an entry
// queued in the new epoch is read in the next round, since its later changes in this epoch do
// not queue it again (an entry is queued once per epoch). After the pause signal (VM frozen,
// grace period) no worker touches the VM's entries, so the final delta, delta(Drain::kAll), is
// the VM's state as of the last packet the source processed.
//
// Both can also stream: snapshot(out) and delta(out) encode each record straight from the entry
// into ENTRIES frames built in one reused buffer and hand each frame over as soon as it is full,
// so the sender ships frame k while frame k+1 is read (and the destination installs frame k).
// The reader is online in RCU only while it fills a frame, never while a frame is sent: a slot
// read in a later frame may have been freed and reused meanwhile, which read_slot sees (not live,
// another key or another VM) exactly as it sees a slot reused between two rounds.
//
// VmInstaller (destination) turns records into WorkerCommands for the owning workers; the
// control side never writes an entry itself. submit(frame) decodes an ENTRIES frame into reused
// buffers and commands, so a round allocates nothing once the first frames have sized them.
#pragma once

#include <sys/mman.h>

#include <cstdint>
#include <cstdlib>
#include <functional>
#include <memory>
#include <utility>
#include <vector>

#include "dataplane/vm_table.h"
#include "dataplane/worker.h"
#include "migrate/codec.h"

namespace baton {
class Dataplane;
}

namespace baton::migrate {

// Anonymous memory for a large array read at random (the reader's sent map): 2 MiB aligned and
// advised for transparent huge pages, so that a probe does not also miss the TLB. The kernel
// may still hand out 4 KiB pages; that is only slower.
template <class T>
struct HugePageAllocator {
  using value_type = T;
  static constexpr size_t kHuge = size_t{2} << 20;
  HugePageAllocator() = default;
  template <class U>
  HugePageAllocator(const HugePageAllocator<U>&) {}
  T* allocate(size_t n) {
    size_t bytes = n * sizeof(T);
    if (bytes < kHuge) return std::allocator<T>().allocate(n);
    bytes = (bytes + kHuge - 1) & ~(kHuge - 1);
    void* p = std::aligned_alloc(kHuge, bytes);
    if (!p) throw std::bad_alloc();
    madvise(p, bytes, MADV_HUGEPAGE);
    return static_cast<T*>(p);
  }
  void deallocate(T* p, size_t n) {
    if (n * sizeof(T) < kHuge)
      std::allocator<T>().deallocate(p, n);
    else
      std::free(p);
  }
  template <class U>
  bool operator==(const HugePageAllocator<U>&) const { return true; }
};

class VmReader {
 public:
  // fp_seed: the migration's fingerprint seed (FlowKey::fingerprint), the destination's
  // VmInstaller's; it names keys in compact updates.
  VmReader(Dataplane& dp, uint16_t vm, uint64_t fp_seed = 0);

  // Every live entry of the VM. Resets what was sent.
  std::vector<ConnRecord> snapshot();
  // Which dirty rings a delta drains: those of the epoch before the current one (a round while
  // the VM runs), or both (the final delta, the VM frozen).
  enum class Drain { kEndedEpoch, kAll };
  // Entries changed (or removed) as queued on the drained rings, as records and tombstones.
  // Falls back to a full walk if a drained ring overflowed. *seq_moved counts TCP entries whose
  // sequence state moved since they were last sent (the seed's "snapshot at 99, VM at 110").
  std::vector<ConnRecord> delta(Drain which, uint64_t* seq_moved);

  // Where a streamed read puts its records: ENTRIES frames of (migration_id, round) with at most
  // per_frame records each, handed to emit() one by one as they fill, then the last partial one
  // (no frame at all when there is nothing to send). A frame's seq is 0: the sender sets it
  // (set_frame_seq). The bytes are valid during the call only. emit may throw; the read stops.
  struct FrameOut {
    uint64_t migration_id = 0;
    uint32_t round = 0;
    size_t per_frame = kRecordsPerFrame;
    uint16_t version = kProtocolVersionMax;  // the frames' (negotiated with the peers)
    std::function<void(uint8_t* frame, size_t len, uint32_t records)> emit;
  };
  struct Counts {
    // records counts every record; tombstones and compact (version 7 updates) are among them,
    // placed (version 8: naming their place at the destination) among the compact ones.
    uint64_t records = 0, tombstones = 0, seq_moved = 0, compact = 0, placed = 0;
  };
  // snapshot() and delta() as frames; same records in the same order.
  Counts snapshot(const FrameOut& out);
  Counts delta(Drain which, const FrameOut& out);

  // Live entries sent and not since deleted.
  uint64_t live() const;

  // The destination's PLACED for the last streamed round (one destination only: the frames of
  // 1:n are the same for all, and each destination places entries its own way): later updates
  // of those entries name their placement. False, and nothing taken, when it is not for the
  // last round or does not count its entry records.
  bool apply_placed(const PlacedMsg& m);

  // What the VM's entries need at a destination, per StateKind (PREPARE's counts): every entry
  // is a conn; the distinct dynamic mappings its SNAT and hairpin connections hold are
  // nat_mappings, each load-balanced connection an lb_conn, the distinct sticky entries they
  // hold stickies, an L7 connection an l7_conn. An L7 connection travels with its splice state
  // (kProtocolVersionL7) once it holds no head buffer (lb/l7_proxy.h); until then it is left
  // out of the records.
  // carried_xlate: translated entries the records carry (kProtocolVersionXlate);
  // carried_handoff: those of them that also need their handoff (kProtocolVersionHandoff);
  // carried_l7: L7 connections among them (kProtocolVersionL7; their backends are LB needs);
  // l7_held: L7 connections holding a head buffer now, which are not carried (the engine may
  // report them; their clients lose them at the switch).
  // needs: the endpoints they use, for the destination to check at PREPARE.
  //
  // The sticky entries of a VM are those its connections hold a reference on (the entry that
  // chose or confirmed the connection's backend): they travel with the connections. An entry
  // no live connection of the VM holds (its connections are over, the binding waits for its
  // timeout) stays at the source: it names a client, not the VM's state in flight.
  struct KindTally {
    std::vector<KindCount> counts;
    uint64_t conn_v6 = 0;  // of counts' kConn, the IPv6 connections
    uint64_t carried_xlate = 0;
    uint64_t carried_handoff = 0;
    uint64_t carried_l7 = 0;
    uint64_t l7_held = 0;
    HandoffNeeds needs;
  };
  static KindTally tally(Dataplane& dp, uint16_t vm);

 private:
  // What was last sent from one slot: 32 bytes, half a line, so that a probe reads one line.
  // The key itself, needed only for a tombstone, is kept aside (SentMap::key); the key's
  // fingerprint tells whether the slot still holds it.
  struct alignas(32) Sent {
    uint32_t slot;  // kEmpty = unused cell
    uint32_t version;
    uint32_t end[2];
    uint64_t fp;     // the key's fingerprint
    uint32_t round;  // in which the key was first sent from this slot
    uint32_t place = kNoPlace;  // at the destination (PLACED), named by placed updates
  };
  static_assert(sizeof(Sent) == 32);
  // slot -> Sent, one per shard: open addressing (linear probing, power-of-two size, at most
  // half full, backward-shift deletion), so a lookup is about one cache miss and nothing is
  // allocated per entry. Sized by the VM's entries, not the table's slots, so a small VM on a
  // large table costs little.
  class SentMap {
   public:
    static constexpr uint32_t kEmpty = 0xffffffffu;
    Sent* find(uint32_t slot);
    // Inserts or overwrites.
    void put(const Sent& s, const FlowKey& key);
    void erase(Sent* s);
    const FlowKey& key(const Sent* s) const {
      return keys_[static_cast<size_t>(s - cells_.data())];
    }
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
    std::vector<Sent, HugePageAllocator<Sent>> cells_;
    std::vector<FlowKey, HugePageAllocator<FlowKey>> keys_;  // per cell
    size_t mask_ = 0;
    int shift_ = 64;
    size_t size_ = 0;
  };

  // Record sinks for read_slot: a ConnRecord vector, or frames (defined in the .cc).
  struct VectorOut;
  struct WireOut;

  // Reads one slot: hands out a record (changed or new), a tombstone (vanished or reused) or
  // nothing (unchanged). now_s: the dataplane clock, read once per call of snapshot/delta.
  template <class Out>
  void read_slot(uint16_t shard, uint32_t slot, uint32_t now_s, Out& out, uint64_t* moved);
  // read_slot over a list, prefetching ahead; filling: the slots are new to the sent map (a
  // snapshot), which will write their keys.
  template <class Out>
  void read_slots(uint16_t shard, const uint32_t* slots, size_t n, uint32_t now_s, Out& out,
                  uint64_t* moved, bool filling = false);
  // The bodies of snapshot() and delta() for either sink.
  template <class Out>
  void snapshot_into(Out& out);
  template <class Out>
  void delta_into(Drain which, Out& out, uint64_t* moved);

  Dataplane& dp_;
  uint16_t vm_;
  FlowKey::Seed fp_mix_;  // the migration's fingerprint seed, mixed once
  std::vector<SentMap> sent_;  // per shard
  // Kept from round to round, so a round allocates nothing once they have their size.
  std::vector<uint32_t> slots_, gone_;
  EntriesFrameWriter writer_;
  // The last streamed round's entry records, in the order sent: what its PLACED counts
  // (version 8 frames only). A round reads shard after shard, so the slots are kept alone (4
  // bytes a record: this stream is on the snapshot's per-record path, and at 8 bytes it cost
  // 15 % of the snapshot rate) with where each shard's run starts.
  class SentOrder {
   public:
    struct Run {
      uint16_t shard;
      size_t begin;
    };
    void restart(uint32_t round) {
      slots.clear();
      runs.clear();
      this->round = round;
    }
    void add(uint16_t shard, uint32_t slot) {
      if (runs.empty() || runs.back().shard != shard) [[unlikely]]
        runs.push_back({shard, slots.size()});
      slots.push_back(slot);
    }
    size_t end(size_t run) const {
      return run + 1 < runs.size() ? runs[run + 1].begin : slots.size();
    }
    std::vector<uint32_t> slots;
    std::vector<Run> runs;
    uint32_t round = 0;
  };
  SentOrder sent_order_;
};

// fingerprint -> where a migration's entry with that key is at the destination (owner worker,
// slot), learnt by VmInstaller from the workers' results (InstallItem::installed): how a
// compact update finds its entry with no key. Open addressing as VmReader's sent map, keyed by
// the fingerprint itself (well mixed, never 0). A fingerprint put for two places (two keys
// that collide; a key that moves is erased first) is ambiguous from then on: find() gives its
// cell with slot kNoSlot, and it places nothing.
class FingerprintSlots {
 public:
  struct Cell {
    uint64_t fp;    // 0 = empty
    uint32_t slot;  // kNoSlot: two keys of the migration have this fingerprint
    uint16_t worker;
  };
  const Cell* find(uint64_t fp) const {  // inline: once per compact update
    if (cells_.empty()) return nullptr;
    for (size_t i = home(fp);; i = (i + 1) & mask_) {
      const Cell& c = cells_[i];
      if (c.fp == fp) return &c;
      if (c.fp == 0) return nullptr;
    }
  }
  void put(uint64_t fp, uint16_t worker, uint32_t slot);
  void erase(uint64_t fp);
  size_t size() const { return size_; }
  // Room for n fingerprints without growing.
  void reserve(size_t n);
  // Asks for the line fp's lookup starts at (to read or write it).
  void prefetch(uint64_t fp) const {
    if (!cells_.empty()) __builtin_prefetch(&cells_[home(fp)], 1, 3);
  }

 private:
  size_t home(uint64_t fp) const { return static_cast<size_t>(fp >> shift_); }
  void grow(size_t at_least = 0);
  std::vector<Cell, HugePageAllocator<Cell>> cells_;
  size_t mask_ = 0;
  int shift_ = 64;
  size_t size_ = 0;
};

class VmInstaller {
 public:
  // fp_seed: the migration's fingerprint seed, the source's VmReader's (compact updates).
  VmInstaller(Dataplane& dp, uint16_t vm, uint64_t fp_seed = 0);
  ~VmInstaller();

  // Splits records by owner and queues one command per owner. False if a command ring stayed
  // full for timeout_ms.
  bool submit(const std::vector<ConnRecord>& records, int timeout_ms);
  // The same for the records of an ENTRIES frame, decoded into a reused buffer. kOk and
  // *queued = false: a command ring stayed full. Any other error: the body does not decode
  // (decode_body's checks) and nothing was queued. *records: how many the frame carried.
  CodecError submit(const Frame& entries, int timeout_ms, bool* queued, uint32_t* records);
  // Waits for every queued command; false on timeout (commands stay owned until done).
  bool wait(int timeout_ms);
  // Sizes what the installer learns per entry for n entries (PREPARE's count), so that a
  // snapshot does not grow it step by step.
  void expect(uint64_t n) { slots_.reserve(n); }

  // Where this round's entry records went, in the order they came (PLACED's placements; call
  // after wait()), and a new round starts counting. A placement is (slot << place_bits_) |
  // worker: a placed update names the slot and its owner with no lookup.
  std::vector<uint32_t> take_places() { return std::exchange(places_, {}); }

  uint64_t applied = 0, stale = 0, failed = 0, removed = 0;
  // Compact updates this instance could not place: no entry of this migration has their key
  // (never installed here, or gone). The destination FAILs (TRANSFER): a retry sends records.
  uint64_t unmatched = 0;
  // The first translated record this instance could not hold, and why (Worker::install_xlate):
  // the destination FAILs the migration with CONFLICT and this detail.
  std::string conflict;

  // Removes every entry of the VM on every worker (a destination's rollback); retire: the VM
  // then leaves the table (the source after SUCCESS), its traffic rows are zeroed too.
  static bool delete_vm(Dataplane& dp, uint16_t vm, int timeout_ms, uint64_t* removed,
                        bool retire = false);
  // Has every worker run a command of `kind` for the VM's entries and waits for them all.
  static bool run_on_workers(Dataplane& dp, uint16_t vm, WorkerCommand::Kind kind,
                             int timeout_ms, uint64_t* removed);

 private:
  // A command from the pool (items emptied, capacity kept) or a new one.
  std::unique_ptr<WorkerCommand> take_command();
  // Takes the finished commands at the front of pending_: results added up, back to the pool.
  void reap();
  // Where a command's items left their keys (InstallItem::installed), into slots_.
  void learn(uint16_t worker, const WorkerCommand& c);
  // Appends r to its owner's command in building_ (taken with room for `hint` items).
  void add(const ConnRecord& r, size_t hint);
  // The same for the compact update at p (kCompactRecordSize bytes, or kPlacedRecordSize when
  // placed); false on a bad value.
  bool add_compact(const uint8_t* p, size_t hint, bool placed);
  // building_[w], taken from the pool if there is none yet.
  WorkerCommand& command_for(uint16_t w) { return building_[w] ? *building_[w] : start(w); }
  WorkerCommand& start(uint16_t w);
  // A new element at v's end, v given room for its owner's share of `hint` records first.
  template <class T>
  T& append(std::vector<T>& v, size_t hint) {
    if (v.size() == v.capacity()) [[unlikely]]
      make_room(v, hint);
    return v.emplace_back();
  }
  template <class T>
  void make_room(std::vector<T>& v, size_t hint);
  // A compact update for the owner its key is with, its slot filled in; nullptr (counted in
  // unmatched) when this migration holds no entry of that fingerprint.
  ConnUpdate* compact_update(uint64_t fp, size_t hint);
  // The update of a placed one (no lookup): nullptr when the placement names no worker here.
  ConnUpdate* placed_update(uint32_t place, size_t hint);
  uint32_t place_of(uint16_t worker, uint32_t slot) const {
    const uint64_t p = (uint64_t{slot} << place_bits_) | worker;
    return p >= kNoPlace ? kNoPlace : static_cast<uint32_t>(p);
  }
  // Queues building_'s commands on their owners' rings; false if one stayed full (that one and
  // those after it go back to the pool).
  bool queue(int timeout_ms);
  void discard(uint16_t worker);  // building_[worker] back to the pool

  // A command on a worker's ring, and which worker.
  struct Pending {
    std::unique_ptr<WorkerCommand> c;
    uint16_t worker = 0;
  };

  Dataplane& dp_;
  uint16_t vm_;
  uint64_t fp_seed_;
  FlowKey::Seed fp_mix_{fp_seed_};
  std::unique_ptr<WorkerCommand> building_[kMaxWorkers];  // per owner, during a submit
  std::vector<Pending> pending_;
  FingerprintSlots slots_;
  uint8_t place_bits_;           // bits of a placement that name the worker
  std::vector<uint32_t> places_;  // this round's, per entry record (InstallItem::order)
  // Finished install commands kept with their item capacity: a round's chunks reuse the
  // memory of the previous round's instead of faulting in fresh pages.
  std::vector<std::unique_ptr<WorkerCommand>> free_;
  static constexpr size_t kMaxFree = 32;
  static constexpr int64_t kSpinMs = 2;  // wait() spins this long before it sleeps
};

// Starts the VM's next change-tracking epoch (tracking's start, and each delta round); the
// caller waits a grace period after it. Epochs alternate in parity (VmSlot::dirty) and skip 0,
// the mark of an entry never queued. Before the 16-bit epoch wraps, every owner clears the
// marks of the VM's entries: an entry idle through 65,535 rounds (failed migrations of the VM
// in a row) would otherwise look queued already in the epoch that reuses its old number, and
// its next change would miss the final delta. False if a worker did not clear in time; the
// epoch has not moved then, and the caller fails the migration.
bool begin_epoch(Dataplane& dp, uint16_t vm, int timeout_ms);
// The epoch after e: e + 1, or 2 after 0xffff (0 is skipped, and the parity must alternate).
constexpr uint16_t next_epoch(uint16_t e) { return e == 0xffff ? 2 : static_cast<uint16_t>(e + 1); }

}  // namespace baton::migrate
