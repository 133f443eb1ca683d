// SPDX-License-Identifier: Apache-2.0
//
// The VMs this instance protects, and the per-VM switches the migration engine flips.
//
// Theory of operation: a VM has a small id (1..kMaxVms-1; 0 means "no VM") that every connection
// entry carries. The control core is the only writer of this table; workers read it. A VM's
// `state` decides what a worker does with the VM's packets:
//   kLocal     forward as usual
//   kTracking  forward, and queue every changed entry on the VM's per-worker dirty ring
//   kFrozen    do not process: park the packet on the VM's hold ring (migration pause)
//   kArriving  entries are being installed by a migration: park packets until activation
//   kGone      handed to a peer: entries deleted, packets treated like any unknown flow
// A VM's profile rules (config `vms[].profile.acl`, carried by a migration) are compiled into
// the VM's own rte_acl context when it is added; workers consult it for a new connection of the
// VM after the zone ACL permits it (first match wins; no match leaves the zone's verdict). A VM
// with a QoS rate gets a policer (vm_policer.h) that workers ask for each of its packets.
// Lookup by address is an rte_hash with lock-free readers so that a VM that arrives through a
// migration can be added while workers run. Hold and dirty rings are created when a migration
// starts and freed only after the workers have passed a grace period.
#pragma once

#include <rte_hash.h>
#include <rte_ring.h>

#include <atomic>
#include <cstdint>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

#include "common/net_types.h"
#include "config/config.h"
#include "dataplane/acl.h"
#include "dataplane/vm_policer.h"
#include "dataplane/vm_traffic.h"

namespace baton {

enum class VmState : uint8_t { kLocal, kTracking, kFrozen, kArriving, kGone };
const char* vm_state_name(VmState s);

constexpr uint16_t kMaxVms = 1024;
constexpr uint16_t kMaxWorkers = 64;

struct alignas(64) VmSlot {
  std::atomic<VmState> state{VmState::kLocal};
  std::atomic<uint16_t> epoch{1};         // change-tracking epoch (see Worker::note_change)
  bool used = false;
  rte_ring* hold = nullptr;               // MP/SC: workers park, control drains
  // The profile's QoS rate, or nullptr when it has none; on state's cache line, as every packet
  // of the VM reads both. Owned like profile_acl (below).
  std::atomic<VmPolicer*> policer{nullptr};
  // Which way a packet of the VM goes (vm_traffic.h); every used slot has one. Owned like
  // profile_acl.
  std::atomic<const VmAddresses*> addresses{nullptr};
  std::atomic<uint32_t> max_half_open{0};  // the profile's; 0 = no limit
  // SP/SC per worker: slot numbers of changed entries, one ring per epoch parity. An entry is
  // queued once per epoch, so a delta round (which starts a new epoch) drains only the ring of
  // the epoch that ended: an entry already queued in the new epoch is not queued again when it
  // changes later in that epoch, so reading it now would miss those changes. dirty_ring()
  // picks the ring; dirty_overflow[p] says ring p lost a slot.
  rte_ring* dirty[2][kMaxWorkers] = {};
  std::atomic<bool> dirty_overflow[2] = {false, false};
  std::atomic<uint64_t> held{0}, hold_dropped{0};
  // The declared MAC (byte i in bits 8i..8i+7; 0 = none) for workers, which may not read
  // `config`: mode l3 forwards to it while ARP has not resolved the VM (Worker::transmit_l3).
  std::atomic<uint64_t> mac{0};
  // The profile's rules, or nullptr when it has none. Owned by the table; a removed VM's
  // context is handed to the caller, who frees it after a grace period.
  std::atomic<const Acl*> profile_acl{nullptr};
  VmConfig config;                        // control core only
  // What migrations brought with the VM (its counts at its earlier instances); control core
  // only, under the table's control_mutex(). The VM's lifetime traffic is this plus the
  // workers' rows (Dataplane::vm_traffic).
  VmTraffic carried;

  static int parity(uint16_t epoch) { return epoch & 1; }
};

class VmTable {
 public:
  static std::unique_ptr<VmTable> create(const std::vector<VmConfig>& vms, std::string* err);
  ~VmTable();

  // Worker side: which VM owns this address (0 = none). Lock-free.
  uint16_t find_by_ip(const IpAddr& a, Family f) const;
  VmSlot& slot(uint16_t id) { return slots_[id]; }
  const VmSlot& slot(uint16_t id) const { return slots_[id]; }

  // Control side (one thread at a time: callers hold control_mutex()).
  std::optional<uint16_t> find_by_name(const std::string& name) const;
  // Adds a VM (config or migration). Fails on a duplicate name or address, or profile rules
  // rte_acl (or a QoS rate rte_meter) refuses.
  std::optional<uint16_t> add(const VmConfig& vm, std::string* err);
  // What a removed VM leaves behind that a worker may still be reading: free it after a grace
  // period.
  struct Retired {
    std::unique_ptr<const Acl> acl;
    std::unique_ptr<VmPolicer> policer;
    std::unique_ptr<const VmAddresses> addresses;
  };
  // Forgets a VM's addresses and frees its id; caller ensures no entries remain.
  [[nodiscard]] Retired remove(uint16_t id);
  // Creates the hold ring and per-worker dirty rings for a migration.
  bool open_migration_rings(uint16_t id, uint16_t workers, uint32_t hold_packets,
                            uint32_t dirty_size, std::string* err);
  void close_migration_rings(uint16_t id);  // after a grace period; rings must be empty
  std::vector<uint16_t> ids() const;
  std::mutex& control_mutex() { return mu_; }

 private:
  VmTable() = default;
  struct IpKey {
    IpAddr addr;
    uint32_t family;
  };
  static IpKey ip_key(const IpAddr& a, Family f) { return IpKey{a, static_cast<uint32_t>(f)}; }

  rte_hash* by_ip_ = nullptr;
  // Addresses in by_ip_: with none (a firewall protecting no declared VM) find_by_ip answers
  // without a lookup, which would otherwise be two per new connection. Written by the control
  // thread under mu_, read by workers; a stale read is the same race as a lookup that runs
  // just before an add.
  std::atomic<uint32_t> addresses_{0};
  std::unique_ptr<VmSlot[]> slots_;
  mutable std::mutex mu_;
};

}  // namespace baton
