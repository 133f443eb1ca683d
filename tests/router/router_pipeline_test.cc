// SPDX-License-Identifier: Apache-2.0
//
// Mode l3 through the whole worker pipeline, in-process (Dataplane::create(cfg, false), a
// --no-huge pool, transmit captured by a TxSink): ARP answered out of the ingress port, a
// neighbour miss counted and turned into an ARP request on the egress port, then the packet
// routed with TTL, checksum and MACs rewritten; every ingress drop reason.
#include <gtest/gtest.h>
#include <rte_eal.h>
#include <rte_mbuf.h>
#include <unistd.h>

#include <cstring>
#include <mutex>
#include <string>
#include <vector>

#include "config/config.h"
#include "dataplane/dataplane.h"
#include "dataplane/router.h"
#include "pktgen/packet_builder.h"
#include "tests/support/eal_env.h"
#include "tests/support/frame_capture.h"
#include "tests/support/test_dataplane.h"

namespace baton {
namespace {

using pktgen::Bytes;
using pktgen::Pkt;

::testing::Environment* const kEal =
    ::testing::AddGlobalTestEnvironment(new EalEnv("router_pipeline_test", 256));

// Without ports, port index i has MAC 02:ba:70:00:00:0(i+1) (dataplane.cc).
const char* kOutMac = "02:ba:70:00:00:01";
const char* kInMac = "02:ba:70:00:00:02";
const char* kCliMac = "02:00:00:91:01:02";
const char* kSrvMac = "02:00:00:91:02:02";

class L3Pipeline : public ::testing::Test {
 protected:
  void SetUp() override {
    static int n = 0;
    std::string y = "instance: l3t" + std::to_string(n++) +
                    "\n"
                    "mode: l3\n"
                    "ports:\n"
                    "  - {name: outside, device: null0, zone: outside}\n"
                    "  - {name: inside, device: null1, zone: inside}\n"
                    "zones:\n"
                    "  - {name: outside, default: deny}\n"
                    "  - {name: inside, default: permit}\n"
                    "acl:\n"
                    "  - {zone: outside, dst: 10.91.2.2/32, proto: tcp, dport: 7000, action: permit}\n"
                    "conntrack: {capacity: 1024}\n"
                    "migration: {enabled: false}\n"
                    "l3:\n"
                    "  addresses:\n"
                    "    - {port: outside, address: 10.91.1.1/24}\n"
                    "    - {port: inside, address: 10.91.2.1/24}\n"
                    "  routes:\n"
                    "    - {prefix: 10.50.0.0/16, via: 10.91.2.9, port: inside}\n";
    dp_ = test_dataplane(y, "l3.yaml");
    ASSERT_TRUE(dp_);
    w_ = dp_->workers()[0].get();
    w_->set_tx_sink(&cap_.sink);
    w_->set_now(100);
  }

  // One frame in on port index `port`; returns what was transmitted.
  std::vector<Sent> run(const Bytes& b, uint16_t port) {
    cap_.sent.clear();
    rte_mbuf* m = rte_pktmbuf_alloc(dp_->pool());
    std::memcpy(rte_pktmbuf_append(m, uint16_t(b.size())), b.data(), b.size());
    m->port = port;
    w_->process_burst(&m, 1);
    w_->flush_tx();
    return cap_.sent;
  }
  uint64_t drops(DropReason r) const { return w_->stats().drops[int(r)]; }

  Bytes syn(uint8_t ttl = 64, const char* dst = "10.91.2.2", const char* dmac = kOutMac) {
    return Pkt().eth(kCliMac, dmac).ipv4("10.91.1.2", dst).ttl(ttl).tcp(40000, 7000)
        .seq(1000).flags(tcpflag::kSyn).win(64240).build();
  }

  std::unique_ptr<Dataplane> dp_;
  Worker* w_ = nullptr;
  Capture cap_;
};

TEST_F(L3Pipeline, AnswersArpOutOfTheIngressPort) {
  auto out = run(Pkt().eth(kCliMac, "ff:ff:ff:ff:ff:ff").arp(1, kCliMac, "10.91.1.2", "10.91.1.1").build(), 0);
  ASSERT_EQ(out.size(), 1u);
  EXPECT_EQ(out[0].port, 0);
  EXPECT_EQ(out[0].frame,
            Pkt().eth(kOutMac, kCliMac).arp(2, kOutMac, "10.91.1.1", "10.91.1.2", kCliMac).build());
  EXPECT_EQ(dp_->router()->neighbor_state(be32::from_host(0x0a5b0102), 100),
            NeighborState::kReachable);
  // Not our address, from a neighbour we do not know: ignored (a known one would be refreshed).
  out = run(Pkt().eth(kCliMac, "ff:ff:ff:ff:ff:ff").arp(1, kCliMac, "10.91.1.3", "10.91.1.9").build(), 0);
  EXPECT_TRUE(out.empty());
  EXPECT_EQ(drops(DropReason::kArpIgnored), 1u);
}

TEST_F(L3Pipeline, NeighbourMissAsksThenRoutesWithRewrite) {
  auto out = run(syn(), 0);
  EXPECT_EQ(drops(DropReason::kNeighborMiss), 1u);
  ASSERT_EQ(out.size(), 1u);  // the ARP request for the server, out of the inside port
  EXPECT_EQ(out[0].port, 1);
  EXPECT_EQ(out[0].frame,
            Pkt().eth(kInMac, "ff:ff:ff:ff:ff:ff").arp(1, kInMac, "10.91.2.1", "10.91.2.2").build());
  // Asked once per second only.
  out = run(syn(), 0);
  EXPECT_TRUE(out.empty());
  EXPECT_EQ(drops(DropReason::kNeighborMiss), 2u);
  // The server answers; the retransmitted SYN is routed.
  out = run(Pkt().eth(kSrvMac, kInMac).arp(2, kSrvMac, "10.91.2.2", "10.91.2.1", kInMac).build(), 1);
  EXPECT_TRUE(out.empty());
  out = run(syn(), 0);
  ASSERT_EQ(out.size(), 1u);
  EXPECT_EQ(out[0].port, 1);
  Bytes want = syn(63, "10.91.2.2", kSrvMac);
  std::memcpy(want.data() + 6, MacAddr::parse(kInMac)->b.data(), 6);
  EXPECT_EQ(out[0].frame, want);  // same bytes as built with TTL 63 (so checksum recomputed)
  EXPECT_TRUE(pktgen::ipv4_checksum_ok(out[0].frame.data(), out[0].frame.size()));
  EXPECT_EQ(w_->stats().conn_created, 1u);
}

// A VM served here (declared, or arrived by migration: its parked packets are released at
// activation, before any ARP exchange with it) is reached at its declared MAC while ARP for it
// is still unresolved; the request still goes out so the table learns it.
TEST_F(L3Pipeline, DeclaredVmIsReachedAtItsMacBeforeArpResolvesIt) {
  VmConfig vm;
  vm.name = "vm1";
  vm.mac = *MacAddr::parse(kSrvMac);
  vm.ipv4.push_back(IpAddr::v4(be32::from_host(0x0a5b0202)));  // 10.91.2.2
  {
    std::string err;
    std::lock_guard<std::mutex> lock(dp_->vms().control_mutex());
    ASSERT_TRUE(dp_->vms().add(vm, &err)) << err;
  }
  auto out = run(syn(), 0);
  EXPECT_EQ(drops(DropReason::kNeighborMiss), 0u);
  ASSERT_EQ(out.size(), 2u);
  EXPECT_EQ(out[0].frame,
            Pkt().eth(kInMac, "ff:ff:ff:ff:ff:ff").arp(1, kInMac, "10.91.2.1", "10.91.2.2").build());
  Bytes want = syn(63, "10.91.2.2", kSrvMac);
  std::memcpy(want.data() + 6, MacAddr::parse(kInMac)->b.data(), 6);
  EXPECT_EQ(out[1].port, 1);
  EXPECT_EQ(out[1].frame, want);
}

TEST_F(L3Pipeline, IngressDropsAreNamed) {
  run(syn(1), 0);
  EXPECT_EQ(drops(DropReason::kTtlExceeded), 1u);
  run(syn(64, "10.91.2.2", "02:00:00:00:00:99"), 0);
  EXPECT_EQ(drops(DropReason::kNotForUs), 1u);
  run(syn(64, "10.91.2.2", "ff:ff:ff:ff:ff:ff"), 0);
  EXPECT_EQ(drops(DropReason::kNotForUs), 2u);
  run(syn(64, "10.91.2.1"), 0);
  EXPECT_EQ(drops(DropReason::kLocalDelivery), 1u);
  run(syn(64, "8.8.8.8"), 0);
  EXPECT_EQ(drops(DropReason::kNoRoute), 1u);
  EXPECT_EQ(dp_->shard(0).size(), 0u);  // refused before it made a connection
  run(Pkt().eth(kCliMac, kOutMac).ipv6("2001:db8::2", "2001:db8:1::2").udp(1, 2).build(), 0);
  EXPECT_EQ(drops(DropReason::kIpv6Unrouted), 1u);
  // Routed but denied by the outside zone's ACL: dropped before any neighbour work.
  run(Pkt().eth(kCliMac, kOutMac).ipv4("10.91.1.2", "10.50.1.1").tcp(40000, 22)
          .flags(tcpflag::kSyn).build(), 0);
  EXPECT_EQ(drops(DropReason::kAclDeny), 1u);
  EXPECT_EQ(drops(DropReason::kNeighborMiss), 0u);
  EXPECT_EQ(w_->stats().conn_created, 0u);
}

TEST_F(L3Pipeline, StaticRouteUsesItsNextHop) {
  // 10.50.0.0/16 via 10.91.2.9: the ARP request is for the next hop, not the destination.
  auto out = run(Pkt().eth(kSrvMac, kInMac).ipv4("10.91.2.2", "10.50.1.1").udp(5000, 53).build(), 1);
  EXPECT_EQ(drops(DropReason::kNeighborMiss), 1u);
  ASSERT_EQ(out.size(), 1u);
  EXPECT_EQ(out[0].frame,
            Pkt().eth(kInMac, "ff:ff:ff:ff:ff:ff").arp(1, kInMac, "10.91.2.1", "10.91.2.9").build());
}

}  // namespace
}  // namespace baton
