// SPDX-License-Identifier: Apache-2.0
//
// AddressRoles: what the translation stage's configured IPv4 addresses are, asked per packet.
//
// The addresses are few (pool, VIPs, static and forwarded outside addresses, full-NAT local
// addresses, backends: hundreds at most) and fixed at start, but asked about for every routed
// packet (is it ours to translate?) and every packet of a translating worker (is it probably a
// reply?). A sorted vector cost a binary search of 8 to 10 steps per question (about 90
// instructions for a /24 pool); here an open-addressing set, at most half full, 8 bytes a slot,
// answers in one or two probes of a cache-resident array.
//
// Threads: built once (add, then lookups); read-only afterwards, from any core.
#pragma once

#include <cstdint>
#include <vector>

#include "common/net_types.h"

namespace baton {

class AddressRoles {
 public:
  enum Role : uint8_t {
    kService = 1,    // ours to translate: the router answers ARP for it, routes it after translation
    kReplyDst = 2,   // a translated connection's reply is sent to it (SNAT pool, full-NAT local)
    kReplySrc = 4,   // a translated connection's reply comes from it (backend of a nat-mode
                     // service, port-forward target)
  };

  // Adds roles to address a (ORed with any it has).
  void add(be32 a, uint8_t roles) {
    if (2 * (used_ + 1) > slots_.size()) grow();
    Slot& s = slots_[find(a.raw())];
    if (s.roles == 0) {
      s.addr = a.raw();
      used_++;
    }
    s.roles |= roles;
  }
  uint8_t roles(be32 a) const {
    return slots_.empty() ? 0 : slots_[find(a.raw())].roles;
  }
  bool has(be32 a, Role r) const { return roles(a) & r; }
  size_t size() const { return used_; }

 private:
  struct Slot {
    uint32_t addr = 0;  // raw (network order)
    uint8_t roles = 0;  // 0 = empty
  };
  // The index of the slot holding addr, or of the empty slot where it would go.
  size_t find(uint32_t addr) const {
    const size_t mask = slots_.size() - 1;
    size_t i = (addr * 0x9e3779b1u) >> shift_;
    while (slots_[i].roles && slots_[i].addr != addr) i = (i + 1) & mask;
    return i;
  }
  void grow() {
    std::vector<Slot> old = std::move(slots_);
    const size_t n = old.empty() ? 16 : 2 * old.size();
    slots_.assign(n, Slot{});
    shift_ = 32 - __builtin_ctzll(n);
    used_ = 0;
    for (const Slot& s : old)
      if (s.roles) add(be32::from_raw(s.addr), s.roles);
  }

  std::vector<Slot> slots_;  // a power of two, at most half used
  uint32_t shift_ = 32;      // 32 - log2(slots): the hash's top bits index the array
  size_t used_ = 0;
};

}  // namespace baton
