// SPDX-License-Identifier: Apache-2.0
// A NatMappingTable with its PortAllocator and QSBR variable, for tests that run under the EAL
// started in nat_mapping_table_test.cc.
#pragma once

#include <gtest/gtest.h>
#include <rte_malloc.h>
#include <rte_rcu_qsbr.h>

#include <memory>
#include <string>
#include <vector>

#include "nat/nat_mapping_table.h"
#include "nat/port_allocator.h"
#include "nat_test_util.h"

namespace baton::nattest {

inline PortAllocator::Params default_alloc() {
  PortAllocator::Params p;
  p.addresses = {ip4("198.51.100.1")};
  return p;
}

struct NatTableOptions {
  NatPolicy policy;
  NatTimeouts timeouts;
  uint32_t capacity = 1024;
  uint16_t max_vms = 8;
  PortAllocator::Params alloc = default_alloc();
};

class NatTableTest : public ::testing::Test {
 protected:
  static constexpr uint32_t kRcuThreads = 4;
  using Options = NatTableOptions;

  void SetUp() override {
    const size_t sz = rte_rcu_qsbr_get_memsize(kRcuThreads);
    rcu_ = static_cast<rte_rcu_qsbr*>(rte_zmalloc("nat_test_rcu", sz, RTE_CACHE_LINE_SIZE));
    ASSERT_NE(rcu_, nullptr);
    ASSERT_EQ(rte_rcu_qsbr_init(rcu_, kRcuThreads), 0);
  }
  void TearDown() override {
    tables_.clear();  // before their allocators and the QSBR variable
    allocators_.clear();
    rte_free(rcu_);
  }

  // A table and its allocator (the latest one is alloc()); nullptr (and a failure) if refused.
  NatMappingTable* make(const Options& o = Options{}) {
    static int seq = 0;
    std::string err;
    auto a = PortAllocator::create(o.alloc, &err);
    EXPECT_NE(a, nullptr) << err;
    if (!a) return nullptr;
    NatMappingTable::Params p;
    p.name = "nat" + std::to_string(seq++);
    p.capacity = o.capacity;
    p.max_vms = o.max_vms;
    p.rcu = rcu_;
    p.policy = o.policy;
    p.timeouts = o.timeouts;
    p.allocator = a.get();
    auto t = NatMappingTable::create(p, &err);
    EXPECT_NE(t, nullptr) << err;
    if (!t) return nullptr;
    allocators_.push_back(std::move(a));
    tables_.push_back(std::move(t));
    return tables_.back().get();
  }
  PortAllocator& alloc() { return *allocators_.back(); }


 public:
  // A dynamic mapping for proto inside:in_port -> remote:rport.
  static NatCreateResult snat(NatMappingTable& t, uint8_t proto, const std::string& inside,
                              uint16_t in_port, const std::string& remote, uint16_t rport,
                              uint32_t now = 0, uint16_t vm = 0) {
    NatMappingRequest r;
    r.proto = proto;
    r.inside_addr = ip4(inside);
    r.inside_port = port(in_port);
    r.remote_addr = ip4(remote);
    r.remote_port = port(rport);
    r.vm_id = vm;
    return t.create(r, now);
  }

 protected:
  rte_rcu_qsbr* rcu_ = nullptr;
  std::vector<std::unique_ptr<PortAllocator>> allocators_;
  std::vector<std::unique_ptr<NatMappingTable>> tables_;
};

}  // namespace baton::nattest
