// SPDX-License-Identifier: Apache-2.0
#include "migrate/negotiation.h"

#include <algorithm>

namespace baton::migrate {

Version negotiate_version(uint16_t local_min, uint16_t local_max, uint16_t remote_min,
                          uint16_t remote_max) {
  uint16_t lo = std::max(local_min, remote_min);
  uint16_t hi = std::min(local_max, remote_max);
  if (local_min > local_max || remote_min > remote_max || lo > hi) return {};
  return {true, hi};
}

namespace {

Decision fail(FailReason r, std::string detail) { return {r, std::move(detail)}; }

bool contains(const std::vector<IpAddr>& v, const IpAddr& a) {
  return std::find(v.begin(), v.end(), a) != v.end();
}

bool contains(const std::vector<uint16_t>& v, uint16_t x) {
  return std::find(v.begin(), v.end(), x) != v.end();
}

// Entries plus headroom, without overflow: ceil(n * (100 + h) / 100).
unsigned __int128 with_headroom(uint64_t n, uint32_t headroom_percent) {
  unsigned __int128 x = static_cast<unsigned __int128>(n) * (100u + headroom_percent);
  return (x + 99) / 100;
}

std::string u128_to_string(unsigned __int128 v) {
  if (v == 0) return "0";
  std::string s;
  while (v) {
    s.insert(s.begin(), static_cast<char>('0' + static_cast<int>(v % 10)));
    v /= 10;
  }
  return s;
}

std::optional<Decision> check_unsupported(const PrepareMsg& req, const LocalView& local) {
  if (req.protocol_version < local.version_min || req.protocol_version > local.version_max) {
    return fail(FailReason::kUnsupported,
                "protocol version " + std::to_string(req.protocol_version) +
                    " not supported (this instance speaks " + std::to_string(local.version_min) +
                    ".." + std::to_string(local.version_max) + ")");
  }
  for (const auto& c : req.counts) {
    if (c.count == 0) continue;  // a kind with nothing to move needs no support
    bool known = c.kind < 32 && (local.kinds & (1u << c.kind)) && c.kind < kStateKindCount;
    if (!known) {
      return fail(FailReason::kUnsupported, "state kind " + state_kind_name(c.kind) + " (" +
                                                std::to_string(c.count) +
                                                " entries) not supported here");
    }
    // Splice state has a wire form from version 4 on: below it an L7 connection cannot move
    // even to a peer that could hold it.
    if (c.kind == static_cast<uint8_t>(StateKind::kL7Conn) &&
        req.protocol_version < kProtocolVersionL7) {
      return fail(FailReason::kUnsupported,
                  "state kind l7_conn (" + std::to_string(c.count) + " entries) needs protocol " +
                      std::to_string(kProtocolVersionL7) + ", the session speaks " +
                      std::to_string(req.protocol_version));
    }
  }
  return std::nullopt;
}

std::optional<Decision> check_conflict(const PrepareMsg& req, const LocalView& local) {
  const VmConfig& vm = req.vm;
  if (contains(local.vlans_reserved, vm.vlan)) {
    return fail(FailReason::kConflict, "vlan " + std::to_string(vm.vlan) + " of vm " + vm.name +
                                           " is reserved on this instance");
  }
  if (!local.vlans_served.empty() && !contains(local.vlans_served, vm.vlan)) {
    return fail(FailReason::kConflict, "vlan " + std::to_string(vm.vlan) + " of vm " + vm.name +
                                           " is not served by this instance");
  }
  for (const auto& other : local.vms) {
    bool same_vm = other.name == vm.name && other.mac == vm.mac;
    if (same_vm) continue;
    if (other.name == vm.name) {
      return fail(FailReason::kConflict, "vm name " + vm.name + " is in use here by mac " +
                                             other.mac.to_string() + " (request has " +
                                             vm.mac.to_string() + ")");
    }
    if (other.mac == vm.mac) {
      return fail(FailReason::kConflict,
                  "mac " + vm.mac.to_string() + " is owned by vm " + other.name + " here");
    }
    // Addresses are scoped by VLAN: the same IP on two VLANs is two different hosts.
    if (other.vlan != vm.vlan) continue;
    for (const auto& a : vm.ipv4) {
      if (contains(other.ipv4, a)) {
        return fail(FailReason::kConflict, "ipv4 " + a.to_string(Family::kV4) + " vlan " +
                                               std::to_string(vm.vlan) + " is owned by vm " +
                                               other.name + " here");
      }
    }
    for (const auto& a : vm.ipv6) {
      if (contains(other.ipv6, a)) {
        return fail(FailReason::kConflict, "ipv6 " + a.to_string(Family::kV6) + " vlan " +
                                               std::to_string(vm.vlan) + " is owned by vm " +
                                               other.name + " here");
      }
    }
  }
  for (const NatNeed& n : req.needs.nat) {
    std::string why = local.check_nat ? local.check_nat(n) : "this instance has no SNAT pool";
    if (!why.empty()) return fail(FailReason::kConflict, "vm " + vm.name + ": " + why);
  }
  for (const LbNeed& n : req.needs.lb) {
    std::string why = local.check_lb ? local.check_lb(n) : "this instance has no load balancer";
    if (!why.empty()) return fail(FailReason::kConflict, "vm " + vm.name + ": " + why);
  }
  if (vm.profile.nat_public_ip && req.nat_family != Family::kNone) {
    for (const auto& n : local.nat_public_in_use) {
      if (n.family == req.nat_family && n.addr == *vm.profile.nat_public_ip) {
        return fail(FailReason::kConflict, "nat public ip " + n.addr.to_string(n.family) +
                                               " of vm " + vm.name + " is in use here");
      }
    }
  }
  return std::nullopt;
}

// RESOURCES naming `table` when its n entries plus headroom do not fit its free slots.
std::optional<Decision> short_of_room(const std::string& table, uint64_t n, uint64_t free,
                                      uint32_t headroom_percent) {
  const unsigned __int128 need = with_headroom(n, headroom_percent);
  if (n == 0 || need <= free) return std::nullopt;
  return fail(FailReason::kResources,
              "table " + table + ": " + std::to_string(n) + " entries + " +
                  std::to_string(headroom_percent) + "% headroom = " + u128_to_string(need) +
                  " > " + std::to_string(free) + " free");
}

std::optional<Decision> check_resources(const PrepareMsg& req, const LocalView& local) {
  for (const auto& c : req.counts) {
    if (c.kind >= kStateKindCount) continue;
    if (auto d = short_of_room(state_kind_name(c.kind), c.count, local.free[c.kind],
                               local.headroom_percent))
      return d;
  }
  if (req.protocol_version >= kProtocolVersionFamilies && local.conn_free_by_family) {
    const uint64_t conns = req.count_of(StateKind::kConn);
    const uint64_t v6 = std::min(req.conn_v6, conns);
    const auto& room = *local.conn_free_by_family;
    if (auto d = short_of_room("conn (IPv4)", conns - v6, room[0], local.headroom_percent))
      return d;
    if (auto d = short_of_room("conn (IPv6)", v6, room[1], local.headroom_percent)) return d;
  }
  if (local.acl_rules_free && req.vm.profile.acl.size() > *local.acl_rules_free) {
    return fail(FailReason::kResources, "table acl: " +
                                            std::to_string(req.vm.profile.acl.size()) +
                                            " rules > " + std::to_string(*local.acl_rules_free) +
                                            " free");
  }
  return std::nullopt;
}

}  // namespace

Decision decide(const PrepareMsg& req, const LocalView& local) {
  if (auto d = check_unsupported(req, local)) return *d;
  if (auto d = check_conflict(req, local)) return *d;
  if (auto d = check_resources(req, local)) return *d;
  return {};
}

}  // namespace baton::migrate
