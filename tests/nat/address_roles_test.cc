// SPDX-License-Identifier: Apache-2.0
//
// AddressRoles against a std::map model: roles OR together per address, absent addresses have
// none (0.0.0.0 and 255.255.255.255 included), and the answers survive the set's growth.
#include "nat/address_roles.h"

#include <gtest/gtest.h>

#include <map>
#include <random>

namespace baton {
namespace {

TEST(AddressRoles, MatchesAMapModelThroughGrowth) {
  AddressRoles r;
  std::map<uint32_t, uint8_t> model;
  EXPECT_EQ(r.roles(be32::from_host(0x0a000001)), 0);  // empty set
  std::mt19937 rng(7);
  // A /22 pool (consecutive addresses hash apart), then scattered ones with mixed roles.
  for (uint32_t i = 0; i < 1024; i++) {
    r.add(be32::from_host(0xc6120000u + i), AddressRoles::kService | AddressRoles::kReplyDst);
    model[0xc6120000u + i] |= AddressRoles::kService | AddressRoles::kReplyDst;
  }
  for (int i = 0; i < 3000; i++) {
    const uint32_t a = rng() % 2 ? rng() : 0xc6120000u + rng() % 2048;
    const uint8_t role = static_cast<uint8_t>(1u << (rng() % 3));
    r.add(be32::from_host(a), role);
    model[a] |= role;
  }
  r.add(be32::from_host(0), AddressRoles::kReplySrc);
  model[0] |= AddressRoles::kReplySrc;
  EXPECT_EQ(r.size(), model.size());
  for (const auto& [a, roles] : model) ASSERT_EQ(r.roles(be32::from_host(a)), roles) << std::hex << a;
  for (int i = 0; i < 100000; i++) {
    const uint32_t a = rng();
    auto it = model.find(a);
    ASSERT_EQ(r.roles(be32::from_host(a)), it == model.end() ? 0 : it->second) << std::hex << a;
  }
  EXPECT_EQ(r.roles(be32::from_host(0xffffffffu)), model.count(0xffffffffu) ? model[0xffffffffu] : 0);
  EXPECT_TRUE(r.has(be32::from_host(0xc6120005u), AddressRoles::kReplyDst));
  EXPECT_FALSE(r.has(be32::from_host(0xc6130005u), AddressRoles::kReplyDst));
}

}  // namespace
}  // namespace baton
