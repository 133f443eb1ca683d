// SPDX-License-Identifier: Apache-2.0
#include "dataplane/vm_table.h"

#include <rte_errno.h>
#include <rte_jhash.h>

#include <atomic>
#include <cstdio>

namespace baton {

const char* vm_state_name(VmState s) {
  switch (s) {
    case VmState::kLocal: return "local";
    case VmState::kTracking: return "tracking";
    case VmState::kFrozen: return "frozen";
    case VmState::kArriving: return "arriving";
    case VmState::kGone: return "gone";
  }
  return "?";
}

std::unique_ptr<VmTable> VmTable::create(const std::vector<VmConfig>& vms, std::string* err) {
  std::unique_ptr<VmTable> t(new VmTable());
  static std::atomic<int> seq{0};
  char name[RTE_HASH_NAMESIZE];
  std::snprintf(name, sizeof name, "vm_by_ip_%d", seq++);
  rte_hash_parameters p{};
  p.name = name;
  p.entries = kMaxVms * 8;
  p.key_len = sizeof(IpKey);
  p.hash_func = rte_jhash;
  p.socket_id = SOCKET_ID_ANY;
  p.extra_flag = RTE_HASH_EXTRA_FLAGS_RW_CONCURRENCY_LF;
  t->by_ip_ = rte_hash_create(&p);
  if (!t->by_ip_) {
    *err = std::string("cannot create VM address table: ") + rte_strerror(rte_errno);
    return nullptr;
  }
  t->slots_.reset(new VmSlot[kMaxVms]);
  t->slots_[0].used = true;  // id 0 is "no VM"
  for (const VmConfig& vm : vms)
    if (!t->add(vm, err)) return nullptr;
  return t;
}

VmTable::~VmTable() {
  for (uint16_t id = 1; id < kMaxVms; id++) {
    close_migration_rings(id);
    delete slots_[id].profile_acl.load(std::memory_order_relaxed);
    delete slots_[id].policer.load(std::memory_order_relaxed);
    delete slots_[id].addresses.load(std::memory_order_relaxed);
  }
  if (by_ip_) rte_hash_free(by_ip_);
}

uint16_t VmTable::find_by_ip(const IpAddr& a, Family f) const {
  if (addresses_.load(std::memory_order_relaxed) == 0) return 0;
  IpKey k = ip_key(a, f);
  void* data = nullptr;
  if (rte_hash_lookup_data(by_ip_, &k, &data) < 0) return 0;
  return static_cast<uint16_t>(reinterpret_cast<uintptr_t>(data));
}

std::optional<uint16_t> VmTable::find_by_name(const std::string& name) const {
  for (uint16_t id = 1; id < kMaxVms; id++)
    if (slots_[id].used && slots_[id].config.name == name) return id;
  return std::nullopt;
}

std::optional<uint16_t> VmTable::add(const VmConfig& vm, std::string* err) {
  if (find_by_name(vm.name)) {
    *err = "VM '" + vm.name + "' already exists";
    return std::nullopt;
  }
  auto owner_of = [&](const IpAddr& a, Family f) { return find_by_ip(a, f); };
  for (const IpAddr& a : vm.ipv4)
    if (owner_of(a, Family::kV4)) {
      *err = "address " + a.to_string(Family::kV4) + " already belongs to another VM";
      return std::nullopt;
    }
  for (const IpAddr& a : vm.ipv6)
    if (owner_of(a, Family::kV6)) {
      *err = "address " + a.to_string(Family::kV6) + " already belongs to another VM";
      return std::nullopt;
    }
  std::unique_ptr<Acl> profile;
  if (!vm.profile.acl.empty()) {
    // The rules name the VM as their zone (a migration's records may not): one zone whose
    // default permits, so a connection no rule matches keeps the zone ACL's verdict.
    std::vector<AclRule> rules = vm.profile.acl;
    for (AclRule& r : rules) r.zone = vm.name;
    std::string why;
    profile = Acl::build(rules, {ZoneConfig{vm.name, Action::kPermit}}, &why);
    if (!profile) {
      *err = "VM '" + vm.name + "' profile rules: " + why;
      return std::nullopt;
    }
  }
  std::unique_ptr<VmPolicer> policer;
  if (vm.profile.qos_rate_bps) {
    policer = VmPolicer::create(vm, err);
    if (!policer) return std::nullopt;
  }
  uint16_t id = 0;
  for (uint16_t i = 1; i < kMaxVms; i++)
    if (!slots_[i].used) {
      id = i;
      break;
    }
  if (!id) {
    *err = "VM table full";
    return std::nullopt;
  }
  VmSlot& s = slots_[id];
  s.used = true;
  s.config = vm;
  uint64_t mac = 0;
  for (int i = 0; i < 6; i++) mac |= uint64_t{vm.mac.b[i]} << (8 * i);
  s.mac.store(mac, std::memory_order_relaxed);  // published with the addresses below
  s.profile_acl.store(profile.release(), std::memory_order_relaxed);
  s.policer.store(policer.release(), std::memory_order_relaxed);
  s.addresses.store(new VmAddresses(vm), std::memory_order_relaxed);
  s.max_half_open.store(vm.profile.max_half_open, std::memory_order_relaxed);
  s.carried = VmTraffic{};
  s.state.store(VmState::kLocal, std::memory_order_release);
  auto put = [&](const IpAddr& a, Family f) {
    IpKey k = ip_key(a, f);
    if (rte_hash_add_key_data(by_ip_, &k, reinterpret_cast<void*>(static_cast<uintptr_t>(id))) == 0)
      addresses_.fetch_add(1, std::memory_order_release);
  };
  for (const IpAddr& a : vm.ipv4) put(a, Family::kV4);
  for (const IpAddr& a : vm.ipv6) put(a, Family::kV6);
  return id;
}

VmTable::Retired VmTable::remove(uint16_t id) {
  VmSlot& s = slots_[id];
  for (const IpAddr& a : s.config.ipv4) {
    IpKey k = ip_key(a, Family::kV4);
    if (rte_hash_del_key(by_ip_, &k) >= 0) addresses_.fetch_sub(1, std::memory_order_relaxed);
  }
  for (const IpAddr& a : s.config.ipv6) {
    IpKey k = ip_key(a, Family::kV6);
    if (rte_hash_del_key(by_ip_, &k) >= 0) addresses_.fetch_sub(1, std::memory_order_relaxed);
  }
  close_migration_rings(id);
  s.used = false;
  s.mac.store(0, std::memory_order_relaxed);
  s.config = VmConfig{};
  s.state.store(VmState::kGone, std::memory_order_release);
  Retired r;
  r.acl.reset(s.profile_acl.exchange(nullptr, std::memory_order_acq_rel));
  r.policer.reset(s.policer.exchange(nullptr, std::memory_order_acq_rel));
  r.addresses.reset(s.addresses.exchange(nullptr, std::memory_order_acq_rel));
  return r;
}

bool VmTable::open_migration_rings(uint16_t id, uint16_t workers, uint32_t hold_packets,
                                   uint32_t dirty_size, std::string* err) {
  VmSlot& s = slots_[id];
  static std::atomic<int> seq{0};
  char name[RTE_RING_NAMESIZE];
  int n = seq++;
  if (!s.hold) {
    std::snprintf(name, sizeof name, "hold_%d", n);
    s.hold = rte_ring_create(name, rte_align32pow2(hold_packets + 1), SOCKET_ID_ANY,
                             RING_F_SC_DEQ | RING_F_EXACT_SZ);
    if (!s.hold) {
      *err = std::string("cannot create hold ring: ") + rte_strerror(rte_errno);
      return false;
    }
  }
  for (int p = 0; p < 2; p++)
    for (uint16_t w = 0; w < workers; w++) {
      rte_ring*& r = s.dirty[p][w];
      if (r) continue;
      std::snprintf(name, sizeof name, "dirty_%d_%d_%u", n, p, w);
      r = rte_ring_create_elem(name, sizeof(uint32_t), rte_align32pow2(dirty_size), SOCKET_ID_ANY,
                               RING_F_SP_ENQ | RING_F_SC_DEQ);
      if (!r) {
        *err = std::string("cannot create dirty ring: ") + rte_strerror(rte_errno);
        return false;
      }
    }
  s.held = 0;
  s.hold_dropped = 0;
  for (auto& o : s.dirty_overflow) o = false;
  return true;
}

void VmTable::close_migration_rings(uint16_t id) {
  VmSlot& s = slots_[id];
  if (s.hold) {
    rte_ring_free(s.hold);
    s.hold = nullptr;
  }
  for (auto& rings : s.dirty)
    for (auto& r : rings) {
      if (r) rte_ring_free(r);
      r = nullptr;
    }
}

std::vector<uint16_t> VmTable::ids() const {
  std::vector<uint16_t> v;
  for (uint16_t id = 1; id < kMaxVms; id++)
    if (slots_[id].used) v.push_back(id);
  return v;
}

}  // namespace baton
