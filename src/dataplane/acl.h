// SPDX-License-Identifier: Apache-2.0
//
// The static ACL: which new connections a zone may initiate.
//
// Theory of operation: the rule list from the config is compiled into two DPDK rte_acl tries,
// one for IPv4 and one for IPv6 (a rule that names no address goes into both). rte_acl returns
// the highest-priority matching rule, so a rule's priority is derived from its position and the
// earliest rule wins, as the config promises ("first match wins"). No match means the zone's
// default action. Each trie reads a packed key (zone, proto, vlan, addresses, ports) laid out to
// match its field definitions; the keys are built here from Tuples, so callers never see DPDK
// types. An Acl is immutable once built: a reload builds a new one and swaps the pointer, and
// classify() is const and lock-free, safe to call from every worker at once.
//
// The first stage only consults the ACL for packets that would create a connection; packets of
// a known connection carry the verdict stored in the entry (STYLE 2).
//
// rte_acl allocates with rte_malloc, so build() needs an initialised EAL.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "common/net_types.h"
#include "config/config.h"

struct rte_acl_ctx;

namespace baton {

struct AclQuery {
  uint8_t zone;   // zone index = position in Config::zones
  Tuple tuple;    // family kV4 or kV6; anything else gets the zone default
};

struct AclMatch {
  Action action;
  int32_t rule;   // index in the rule vector given to build(); -1 = zone default
  bool log;
};

class Acl {
 public:
  // Compiles rules (whose zone names must be among zones) into tries. nullptr and *err on
  // failure: unknown zone, more than 256 zones, or rte_acl refusing the rule set.
  static std::unique_ptr<Acl> build(const std::vector<AclRule>& rules,
                                    const std::vector<ZoneConfig>& zones, std::string* err);
  ~Acl();
  Acl(const Acl&) = delete;
  Acl& operator=(const Acl&) = delete;

  // Bulk lookup: one rte_acl_classify per family per chunk of queries. out[i] answers q[i].
  void classify(const AclQuery* const* q, uint32_t n, AclMatch* out) const;
  AclMatch classify_one(const AclQuery& q) const;

  size_t rule_count() const { return rules_.size(); }

 private:
  struct RuleInfo {
    Action action;
    bool log;
  };
  Acl() = default;
  AclMatch zone_default(uint8_t zone) const;
  AclMatch from_result(uint32_t userdata, uint8_t zone) const;

  std::vector<RuleInfo> rules_;
  std::vector<Action> zone_default_;
  rte_acl_ctx* ctx4_ = nullptr;  // nullptr when no rule applies to the family
  rte_acl_ctx* ctx6_ = nullptr;
};

}  // namespace baton
