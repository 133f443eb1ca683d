// SPDX-License-Identifier: Apache-2.0
//
// The destination's answer to PREPARE, as a pure function of the request and a snapshot of local
// facts (no tables, no locks, no I/O), so that every FAIL reason is unit-tested and the engine
// only has to fill a LocalView.
//
// Checks run in this order and the first failure is the answer, because the order is how sure
// the hypervisor can be that moving elsewhere or later would help:
//   1. UNSUPPORTED  protocol version outside what we speak; a state kind with entries that we
//                   cannot hold, or that the session's version cannot carry (l7_conn below 4).
//   2. CONFLICT     the VM's identity or profile clashes with what this instance already has:
//                   its MAC or one of its IPs (within its VLAN) owned by a different VM, its NAT
//                   public IP in use, its VLAN reserved here or not served here, its name taken by
//                   a VM with another MAC; a mapping's outside endpoint its SNAT connections hold
//                   is in no pool here or its port block is leased to another host; an LB
//                   service, backend or full-NAT local address its connections use is unknown.
//   3. RESOURCES    for each kind, entries * (1 + headroom%) must fit the table's free slots; the
//                   VM's ACL rules must fit the free rule slots. The detail names the table.
// A VM already present here with the same name and MAC is the same VM (pre-provisioned
// destination): its own addresses are not a conflict.
#pragma once

#include <array>
#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <vector>

#include "config/config.h"
#include "migrate/codec.h"
#include "migrate/feedback.h"

namespace baton::migrate {

// The highest protocol version both sides speak, if any.
struct Version {
  bool ok = false;
  uint16_t value = 0;
};
Version negotiate_version(uint16_t local_min, uint16_t local_max, uint16_t remote_min,
                          uint16_t remote_max);

struct NatAddr {
  IpAddr addr;
  Family family = Family::kV4;
};

struct LocalView {
  uint16_t version_min = kProtocolVersionMin;
  uint16_t version_max = kProtocolVersionMax;
  uint32_t kinds = kind_bit(StateKind::kConn);  // StateKind bitmap this instance can install
  std::array<uint64_t, kStateKindCount> free{};  // free slots per kind's table
  // The connection tables' free slots per address family, IPv4 then IPv6 (free[kConn] is their
  // sum), checked against a version-5 PREPARE's split; nullopt checks the sum only.
  std::optional<std::array<uint64_t, 2>> conn_free_by_family;
  uint32_t headroom_percent = 10;                // MigrationConfig::headroom_percent
  std::vector<VmConfig> vms;                     // VMs configured or installed here
  std::vector<NatAddr> nat_public_in_use;        // NAT public addresses taken here
  // Zone/ACL constraints. Empty vlans_served = any VLAN; reserved VLANs are never given to a VM.
  std::vector<uint16_t> vlans_served;
  std::vector<uint16_t> vlans_reserved;
  std::optional<uint64_t> acl_rules_free;        // nullopt = no limit on per-VM ACL rules
  // Checks of PREPARE's handoff needs (version 3: the dynamic mappings and LB backends the
  // VM's connections hold) against this instance's translation: empty = it can hold it, else
  // the CONFLICT detail. Unset: any such need is a conflict (nothing is translated here).
  std::function<std::string(const NatNeed&)> check_nat;
  std::function<std::string(const LbNeed&)> check_lb;
};

struct Decision {
  FailReason reason = FailReason::kNone;  // kNone = ACCEPT
  std::string detail;                     // human text for FAIL; empty for ACCEPT
  bool accepted() const { return reason == FailReason::kNone; }
};

Decision decide(const PrepareMsg& req, const LocalView& local);

}  // namespace baton::migrate
