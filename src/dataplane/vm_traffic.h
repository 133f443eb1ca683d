// SPDX-License-Identifier: Apache-2.0
//
// A VM's cumulative traffic (DESIGN.md section 1, "cumulative data"; seed 000 3.2.1.1.4: the
// packet counts that billing, accounting and QoS read must not restart when the VM moves).
//
// Which way a packet goes: one whose source address (as received, before any translation) is
// one of the VM's addresses comes from the VM; any other packet of the VM's connections goes to
// it (replies to its translated connections arrive for the public address). The QoS policer
// and the traffic counters both ask VmAddresses, so they cannot disagree.
//
// Counting: each worker adds the VM's forwarded packets to its own VmWorkerRow (worker.h),
// zeroed when the VM's entries are deleted (the id may be given to another VM); the control
// core sums the rows. What a migration brought (VM_COUNTERS, docs/WIRE.md) is kept apart in
// VmSlot::carried, so this instance's own counters stay true Prometheus counters.
#pragma once

#include <cstdint>
#include <vector>

#include "common/net_types.h"
#include "config/config.h"

namespace baton {

enum class VmSide : int { kFromVm = 0, kToVm = 1 };
// The label the API and the metrics give a direction.
inline const char* vm_side_name(VmSide s) { return s == VmSide::kFromVm ? "from_vm" : "to_vm"; }

class VmAddresses {
 public:
  explicit VmAddresses(const VmConfig& vm) {
    for (const IpAddr& a : vm.ipv4) addrs_.push_back({a, Family::kV4});
    for (const IpAddr& a : vm.ipv6) addrs_.push_back({a, Family::kV6});
  }
  // A VM has a handful of addresses: a scan beats a hash here.
  VmSide side_of(const IpAddr& src, Family f) const {
    for (const Addr& a : addrs_)
      if (a.family == f && a.ip == src) return VmSide::kFromVm;
    return VmSide::kToVm;
  }

 private:
  struct Addr {
    IpAddr ip;
    Family family;
  };
  std::vector<Addr> addrs_;  // fixed at creation
};

// Packets and bytes (frame lengths) by VmSide.
struct VmTraffic {
  uint64_t packets[2] = {0, 0};
  uint64_t bytes[2] = {0, 0};

  void count(VmSide s, uint32_t len) {
    packets[static_cast<int>(s)]++;
    bytes[static_cast<int>(s)] += len;
  }
  uint64_t total_packets() const { return packets[0] + packets[1]; }
  uint64_t total_bytes() const { return bytes[0] + bytes[1]; }
  VmTraffic& operator+=(const VmTraffic& o) {
    for (int s = 0; s < 2; s++) packets[s] += o.packets[s], bytes[s] += o.bytes[s];
    return *this;
  }
  bool operator==(const VmTraffic&) const = default;
};

// What a worker keeps per VM: the traffic it forwarded, and the VM's TCP connections it owns
// that are still in their handshake (SYN_SENT, SYN_SENT2, SYN_RECV), by the direction of the
// opening SYN (the profile's max_half_open limits each; seed 000 3.2.1.2.3). Half-open
// connections are entries, so their count travels with them when the VM migrates.
struct VmWorkerRow {
  VmTraffic traffic;
  int32_t half_open[2] = {0, 0};
};

}  // namespace baton
