// SPDX-License-Identifier: Apache-2.0
//
// A VM's QoS rate (config `vms[].profile.qos_rate_bps`, carried by a migration): the VM's
// traffic is policed to that rate in each direction, from the VM and to the VM, each through
// its own single-rate token bucket (DPDK rte_meter srTCM, colour blind, no excess bucket: a
// packet the committed bucket cannot pay for is dropped, counted as qos_exceeded).
//
// One policer per VM, shared by all workers: a VM's connections are spread over the workers by
// their hash, so per-worker buckets would each have to be given a share of the rate and one
// busy connection would get only its worker's share. The bucket is taken under a spinlock
// instead; only rate-limited VMs pay for it, and their packet rate is bounded by the policer.
//
// The burst (the bucket's depth) is 100 ms at the rate, and at least two full-size frames:
// deep enough that TCP through the policer settles near the rate instead of collapsing on every
// burst of a congestion window (with 20 ms, four iperf3 streams got 30 % of a 40 Mbit/s rate;
// with 100 ms, 58-88 % over five runs), short enough that the rate holds over a fraction of a
// second.
//
// Direction: the worker asks the VM's VmAddresses (vm_traffic.h), as for its traffic counters.
#pragma once

#include <rte_meter.h>
#include <rte_spinlock.h>

#include <atomic>
#include <cstdint>
#include <memory>
#include <string>

#include "common/net_types.h"
#include "config/config.h"
#include "dataplane/vm_traffic.h"

namespace baton {

class VmPolicer {
 public:
  // nullptr with *err when rte_meter refuses the rate; callers create one only for a rate > 0.
  static std::unique_ptr<VmPolicer> create(const VmConfig& vm, std::string* err);

  static uint64_t burst_bytes(uint64_t rate_bps);

  // Worker side: whether a packet of `len` bytes (frame length) going `s` may pass at TSC
  // time `tsc`.
  bool admit(VmSide s, uint32_t len, uint64_t tsc);

  uint64_t dropped(VmSide s) const {
    return dropped_[static_cast<int>(s)].load(std::memory_order_relaxed);
  }

 private:
  VmPolicer() = default;

  rte_spinlock_t lock_ = RTE_SPINLOCK_INITIALIZER;
  rte_meter_srtcm_profile profile_{};
  rte_meter_srtcm meter_[2]{};
  std::atomic<uint64_t> dropped_[2] = {0, 0};
};

}  // namespace baton
