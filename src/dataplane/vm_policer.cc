// SPDX-License-Identifier: Apache-2.0
#include "dataplane/vm_policer.h"

#include <rte_errno.h>

#include <algorithm>
#include <cstring>

namespace baton {

uint64_t VmPolicer::burst_bytes(uint64_t rate_bps) {
  constexpr uint64_t kMinBurst = 2 * 1518;  // two full-size Ethernet frames
  return std::max<uint64_t>(rate_bps / 8 / 10, kMinBurst);  // 100 ms at the rate
}

std::unique_ptr<VmPolicer> VmPolicer::create(const VmConfig& vm, std::string* err) {
  std::unique_ptr<VmPolicer> p(new VmPolicer());
  rte_meter_srtcm_params params{};
  params.cir = std::max<uint64_t>(vm.profile.qos_rate_bps / 8, 1);
  params.cbs = burst_bytes(vm.profile.qos_rate_bps);
  params.ebs = 0;  // no excess bucket: what the committed one cannot pay for is dropped
  int rc = rte_meter_srtcm_profile_config(&p->profile_, &params);
  for (int s = 0; rc == 0 && s < 2; s++) rc = rte_meter_srtcm_config(&p->meter_[s], &p->profile_);
  if (rc != 0) {
    *err = "VM '" + vm.name + "' qos_rate_bps " + std::to_string(vm.profile.qos_rate_bps) +
           ": rte_meter refuses it (" + rte_strerror(-rc) + ")";
    return nullptr;
  }
  return p;
}

bool VmPolicer::admit(VmSide side, uint32_t len, uint64_t tsc) {
  const int s = static_cast<int>(side);
  rte_spinlock_lock(&lock_);
  // Workers read their TSC before taking the lock, so a bucket can see a time a little older
  // than one it has seen: rte_meter's unsigned difference would then wrap to a huge refill.
  const uint64_t t = std::max(tsc, meter_[s].time);
  const bool green =
      rte_meter_srtcm_color_blind_check(&meter_[s], &profile_, t, len) == RTE_COLOR_GREEN;
  rte_spinlock_unlock(&lock_);
  if (!green) dropped_[s].fetch_add(1, std::memory_order_relaxed);
  return green;
}

}  // namespace baton
