// SPDX-License-Identifier: Apache-2.0
//
// NAT and load balancing through the whole worker pipeline in mode l3, in-process
// (Dataplane::create(cfg, false), a --no-huge pool, transmit captured by a TxSink). Each case
// sends frames as the hosts would and compares what leaves with the frame the same hosts
// would have produced with the translated addresses (built by the packet builder, so the
// checksums of the expected frame are computed from scratch: equal bytes prove the
// incremental updates right).
//
// Topology: port 0 "outside" 203.0.113.1/24 (remote 203.0.113.9, router 203.0.113.254),
// port 1 "inside" 10.1.0.1/24 (hosts 10.1.0.5, 10.1.0.6, 10.1.0.7).
#include <gtest/gtest.h>
#include <rte_eal.h>
#include <rte_mbuf.h>
#include <unistd.h>

#include <algorithm>
#include <cstring>
#include <functional>
#include <mutex>
#include <set>
#include <string>
#include <tuple>
#include <vector>

#include "config/config.h"
#include "dataplane/dataplane.h"
#include "migrate/codec.h"
#include "migrate/negotiation.h"
#include "migrate/vm_state_io.h"
#include "tests/pipeline/handoff_steps.h"
#include "pktgen/packet_builder.h"
#include "tests/support/eal_env.h"
#include "tests/support/frame_capture.h"
#include "tests/support/test_dataplane.h"

namespace baton {
namespace {

using pktgen::Bytes;
using pktgen::Pkt;
using namespace tcpflag;

// Lcores 1 and 2 for the two-worker case's worker threads (sharing the machine's CPUs).
::testing::Environment* const kEal = ::testing::AddGlobalTestEnvironment(
    new EalEnv("xlate_pipeline_test", 256, {"--lcores", "0@0,1@(0-1),2@(0-1)"}));

constexpr uint16_t kOut = 0, kIn = 1;
// Without ports, port index i has MAC 02:ba:70:00:00:0(i+1) (dataplane.cc).
const char* kOutMac = "02:ba:70:00:00:01";
const char* kInMac = "02:ba:70:00:00:02";
const char* kRemoteMac = "02:00:00:00:09:09";
const char* kHostMac[] = {"02:00:00:00:01:05", "02:00:00:00:01:06", "02:00:00:00:01:07"};
const char* kHostIp[] = {"10.1.0.5", "10.1.0.6", "10.1.0.7"};

const char* kBaseYaml =
    "mode: l3\n"
    "ports:\n"
    "  - {name: outside, device: null0, zone: outside}\n"
    "  - {name: inside, device: null1, zone: inside}\n"
    "zones:\n"
    "  - {name: outside, default: permit}\n"
    "  - {name: inside, default: permit}\n"
    "conntrack: {capacity: 4096}\n"
    "migration: {enabled: false}\n"
    "l3:\n"
    "  addresses:\n"
    "    - {port: outside, address: 203.0.113.1/24}\n"
    "    - {port: inside, address: 10.1.0.1/24}\n";

IpAddr v4(const char* s) {
  Family f;
  return *IpAddr::parse(s, &f);
}

PortForward port_forward(uint8_t proto, const char* outside, uint16_t outside_port,
                         const char* inside, uint16_t inside_port) {
  PortForward f;
  f.proto = proto;
  f.outside = v4(outside);
  f.outside_port = outside_port;
  f.inside = v4(inside);
  f.inside_port = inside_port;
  return f;
}

class XlatePipeline : public ::testing::Test {
 protected:
  // Builds the dataplane from the base config edited by `edit`, then lets every host announce
  // itself (an ARP request for the gateway teaches the router its address).
  void start(const std::function<void(Config&)>& edit) {
    static int n = 0;
    dp_ = test_dataplane("instance: xl" + std::to_string(n++) + "\n" + kBaseYaml, "x.yaml", edit);
    ASSERT_TRUE(dp_);
    w_ = dp_->workers()[0].get();
    w_->set_tx_sink(&cap_.sink);
    w_->set_now(100);
    for (const char* ip : {"203.0.113.9", "203.0.113.19"})
      run(Pkt().eth(kRemoteMac, "ff:ff:ff:ff:ff:ff").arp(1, kRemoteMac, ip, "203.0.113.1").build(), kOut);
    for (int i = 0; i < 3; i++)
      run(Pkt().eth(kHostMac[i], "ff:ff:ff:ff:ff:ff").arp(1, kHostMac[i], kHostIp[i], "10.1.0.1").build(), kIn);
  }

  std::vector<Sent> run(const Bytes& b, uint16_t port) {
    cap_.sent.clear();
    rte_mbuf* m = rte_pktmbuf_alloc(dp_->pool());
    std::memcpy(rte_pktmbuf_append(m, uint16_t(b.size())), b.data(), b.size());
    m->port = port;
    w_->process_burst(&m, 1);
    w_->flush_tx();
    return cap_.sent;
  }
  // The frames as one burst (one process_burst call), each from its port.
  std::vector<Sent> run_burst(const std::vector<std::pair<Bytes, uint16_t>>& burst) {
    std::vector<rte_mbuf*> m;
    for (const auto& [b, port] : burst) {
      m.push_back(rte_pktmbuf_alloc(dp_->pool()));
      EXPECT_NE(m.back(), nullptr);
      std::memcpy(rte_pktmbuf_append(m.back(), uint16_t(b.size())), b.data(), b.size());
      m.back()->port = port;
    }
    cap_.sent.clear();
    w_->process_burst(m.data(), static_cast<uint32_t>(m.size()));
    w_->flush_tx();
    return cap_.sent;
  }
  uint64_t drops(DropReason r) const { return w_->stats().drops[int(r)]; }

  // Sends `in` on port `from`; expects exactly one frame out of port `to` equal to `want`
  // (built as the receiving host should see it: TTL one less, our MAC as source).
  void expect_forwarded(const Bytes& in, uint16_t from, const Bytes& want, uint16_t to) {
    auto out = run(in, from);
    ASSERT_EQ(out.size(), 1u) << "dropped or not sent";
    EXPECT_EQ(out[0].port, to);
    EXPECT_EQ(out[0].frame, want);
  }

  std::unique_ptr<Dataplane> dp_;
  Worker* w_ = nullptr;
  Capture cap_;
};

// Frames on the inside link come from a host to our inside MAC and leave to a host from it.
Pkt from_host(int h) { return Pkt().eth(kHostMac[h], kInMac); }
Pkt to_host(int h) { return Pkt().eth(kInMac, kHostMac[h]); }
Pkt from_remote() { return Pkt().eth(kRemoteMac, kOutMac); }
Pkt to_remote() { return Pkt().eth(kOutMac, kRemoteMac); }

TEST_F(XlatePipeline, StaticNatRewritesBothDirections) {
  start([](Config& c) { c.nat.static_nat.push_back({v4("10.1.0.5"), v4("203.0.113.50")}); });
  // Outbound: the source becomes the public address.
  expect_forwarded(from_host(0).ipv4("10.1.0.5", "203.0.113.9").tcp(40000, 80).seq(1000).flags(kSyn).win(64240).mss(1460).build(), kIn,
                   to_remote().ipv4("203.0.113.50", "203.0.113.9").ttl(63).tcp(40000, 80).seq(1000).flags(kSyn).win(64240).mss(1460).build(), kOut);
  // The reply reaches the private address.
  expect_forwarded(from_remote().ipv4("203.0.113.9", "203.0.113.50").tcp(80, 40000).seq(5000).ack(1001).flags(kSyn | kAck).win(65000).mss(1460).build(), kOut,
                   to_host(0).ipv4("203.0.113.9", "10.1.0.5").ttl(63).tcp(80, 40000).seq(5000).ack(1001).flags(kSyn | kAck).win(65000).mss(1460).build(), kIn);
  expect_forwarded(from_host(0).ipv4("10.1.0.5", "203.0.113.9").tcp(40000, 80).seq(1001).ack(5001).flags(kAck).win(502).payload("hello").build(), kIn,
                   to_remote().ipv4("203.0.113.50", "203.0.113.9").ttl(63).tcp(40000, 80).seq(1001).ack(5001).flags(kAck).win(502).payload("hello").build(), kOut);
  // Inbound to the public address opens a connection to the private one.
  expect_forwarded(from_remote().ipv4("203.0.113.9", "203.0.113.50").udp(5353, 53).payload("q").build(), kOut,
                   to_host(0).ipv4("203.0.113.9", "10.1.0.5").ttl(63).udp(5353, 53).payload("q").build(), kIn);
  EXPECT_EQ(w_->stats().conn_translated, 2u);
  EXPECT_EQ(dp_->xlate(0)->size(), 2u);
}

TEST_F(XlatePipeline, AnswersArpForTranslatedAddresses) {
  start([](Config& c) { c.nat.static_nat.push_back({v4("10.1.0.5"), v4("203.0.113.50")}); });
  auto out = run(Pkt().eth(kRemoteMac, "ff:ff:ff:ff:ff:ff").arp(1, kRemoteMac, "203.0.113.9", "203.0.113.50").build(), kOut);
  ASSERT_EQ(out.size(), 1u);
  EXPECT_EQ(out[0].frame, Pkt().eth(kOutMac, kRemoteMac).arp(2, kOutMac, "203.0.113.50", "203.0.113.9", kRemoteMac).build());
}

TEST_F(XlatePipeline, PortForwardRewritesDestinationAndReplySource) {
  start([](Config& c) {
    c.nat.port_forward.push_back(port_forward(6, "203.0.113.10", 8080, "10.1.0.6", 80));
  });
  expect_forwarded(from_remote().ipv4("203.0.113.9", "203.0.113.10").tcp(5555, 8080).seq(7).flags(kSyn).win(1000).build(), kOut,
                   to_host(1).ipv4("203.0.113.9", "10.1.0.6").ttl(63).tcp(5555, 80).seq(7).flags(kSyn).win(1000).build(), kIn);
  expect_forwarded(from_host(1).ipv4("10.1.0.6", "203.0.113.9").tcp(80, 5555).seq(900).ack(8).flags(kSyn | kAck).win(1000).build(), kIn,
                   to_remote().ipv4("203.0.113.10", "203.0.113.9").ttl(63).tcp(8080, 5555).seq(900).ack(8).flags(kSyn | kAck).win(1000).build(), kOut);
  // Another port of the same address is ours but not forwarded: dropped, not routed back out.
  EXPECT_TRUE(run(from_remote().ipv4("203.0.113.9", "203.0.113.10").tcp(5555, 8081).flags(kSyn).build(), kOut).empty());
  EXPECT_EQ(drops(DropReason::kLocalDelivery), 1u);
}

TEST_F(XlatePipeline, IcmpErrorIsTranslatedWithTheQuotedPacket) {
  start([](Config& c) { c.nat.static_nat.push_back({v4("10.1.0.5"), v4("203.0.113.50")}); });
  run(from_host(0).ipv4("10.1.0.5", "203.0.113.9").udp(40001, 53).payload("query").build(), kIn);
  // A router on the outside reports the translated datagram unreachable.
  Bytes quoted_out = Pkt().eth(kOutMac, kRemoteMac).ipv4("203.0.113.50", "203.0.113.9").ttl(63).udp(40001, 53).payload("query").build();
  Bytes quoted_in = Pkt().eth(kHostMac[0], kInMac).ipv4("10.1.0.5", "203.0.113.9").ttl(63).udp(40001, 53).payload("query").build();
  expect_forwarded(from_remote().ipv4("203.0.113.254", "203.0.113.50").icmp_error(3, 3, quoted_out).build(), kOut,
                   to_host(0).ipv4("203.0.113.254", "10.1.0.5").ttl(63).icmp_error(3, 3, quoted_in).build(), kIn);
  // The remote end itself answers port unreachable: its own address stays.
  expect_forwarded(from_remote().ipv4("203.0.113.9", "203.0.113.50").icmp_error(3, 3, quoted_out).build(), kOut,
                   to_host(0).ipv4("203.0.113.9", "10.1.0.5").ttl(63).icmp_error(3, 3, quoted_in).build(), kIn);
}

TEST_F(XlatePipeline, IcmpEchoThroughStaticNat) {
  start([](Config& c) { c.nat.static_nat.push_back({v4("10.1.0.5"), v4("203.0.113.50")}); });
  expect_forwarded(from_host(0).ipv4("10.1.0.5", "203.0.113.9").icmp_echo(77, 1).build(), kIn,
                   to_remote().ipv4("203.0.113.50", "203.0.113.9").ttl(63).icmp_echo(77, 1).build(), kOut);
  expect_forwarded(from_remote().ipv4("203.0.113.9", "203.0.113.50").icmp_echo(77, 1, false).build(), kOut,
                   to_host(0).ipv4("203.0.113.9", "10.1.0.5").ttl(63).icmp_echo(77, 1, false).build(), kIn);
}

TEST_F(XlatePipeline, ExpiryRemovesTheReplyKey) {
  start([](Config& c) { c.nat.static_nat.push_back({v4("10.1.0.5"), v4("203.0.113.50")}); });
  run(from_host(0).ipv4("10.1.0.5", "203.0.113.9").udp(40001, 53).payload("q").build(), kIn);
  ASSERT_EQ(dp_->xlate(0)->size(), 1u);
  w_->set_now(100 + 3600);
  for (int i = 0; i < 8; i++) w_->housekeeping();
  EXPECT_EQ(dp_->xlate(0)->size(), 0u);
  EXPECT_EQ(w_->stats().conn_expired, 1u);
  // A late reply has nothing to match: the strict table drops it.
  run(from_remote().ipv4("203.0.113.9", "203.0.113.50").tcp(53, 40001).flags(kAck).build(), kOut);
  EXPECT_EQ(drops(DropReason::kNoConnection), 1u);
}


// ---- source NAT -------------------------------------------------------------------------------

SnatRule snat_rule(NatBehavior filtering = NatBehavior::kAddressAndPortDependent) {
  SnatRule r;
  r.name = "egress";
  r.source = *Prefix::parse("10.1.0.0/24");
  r.pool = {v4("203.0.113.10")};
  r.ports = PortRange{20000, 20255};
  r.block_size = 64;
  r.max_blocks_per_host = 2;
  r.filtering = filtering;
  return r;
}

// The outside source port the remote sees for a flow, from the frame that left.
uint16_t sport_of(const Bytes& frame) { return uint16_t(frame[34] << 8 | frame[35]); }

TEST_F(XlatePipeline, SnatRewritesSourceFromThePool) {
  start([](Config& c) { c.nat.snat.push_back(snat_rule()); });
  auto out = run(from_host(0).ipv4("10.1.0.5", "203.0.113.9").tcp(40000, 80).seq(1).flags(kSyn).win(1000).build(), kIn);
  ASSERT_EQ(out.size(), 1u);
  const uint16_t p = sport_of(out[0].frame);
  EXPECT_GE(p, 20000);
  EXPECT_LE(p, 20255);
  EXPECT_EQ(out[0].frame, to_remote().ipv4("203.0.113.10", "203.0.113.9").ttl(63).tcp(p, 80).seq(1).flags(kSyn).win(1000).build());
  expect_forwarded(from_remote().ipv4("203.0.113.9", "203.0.113.10").tcp(80, p).seq(50).ack(2).flags(kSyn | kAck).win(1000).build(), kOut,
                   to_host(0).ipv4("203.0.113.9", "10.1.0.5").ttl(63).tcp(80, 40000).seq(50).ack(2).flags(kSyn | kAck).win(1000).build(), kIn);
  const auto& rule = dp_->translator()->snat_rules()[0];
  EXPECT_EQ(rule.maps[0]->size(), 1u);
}

// RFC 4787 REQ-1: the same inside endpoint keeps its outside endpoint for every destination.
TEST_F(XlatePipeline, SnatEndpointIndependentMappingAcrossDestinations) {
  start([](Config& c) { c.nat.snat.push_back(snat_rule()); });
  auto a = run(from_host(0).ipv4("10.1.0.5", "203.0.113.9").udp(5000, 3478).payload("a").build(), kIn);
  auto b = run(from_host(0).ipv4("10.1.0.5", "203.0.113.19").udp(5000, 3479).payload("b").build(), kIn);
  ASSERT_EQ(a.size(), 1u);
  ASSERT_EQ(b.size(), 1u);
  EXPECT_EQ(sport_of(a[0].frame), sport_of(b[0].frame));
  // Another inside host gets another port (and its own block).
  auto c = run(from_host(1).ipv4("10.1.0.6", "203.0.113.9").udp(5000, 3478).payload("c").build(), kIn);
  ASSERT_EQ(c.size(), 1u);
  EXPECT_NE(sport_of(c[0].frame), sport_of(a[0].frame));
}

// A reply in the burst that created its connection: the bulk lookup ran before the connection
// existed, and the worker looks again for a miss whose key is a reply key added earlier in the
// burst (Worker::process_owned), not for every miss.
TEST_F(XlatePipeline, ReplyInTheBurstThatCreatedItsConnectionIsTranslated) {
  start([](Config& c) { c.nat.snat.push_back(snat_rule()); });
  auto a = run(from_host(0).ipv4("10.1.0.5", "203.0.113.9").udp(5000, 3478).payload("a").build(), kIn);
  ASSERT_EQ(a.size(), 1u);
  const uint16_t p = sport_of(a[0].frame);  // the mapping a new destination reuses (REQ-1)
  auto sent = run_burst(
      {{from_host(0).ipv4("10.1.0.5", "203.0.113.19").udp(5000, 3479).payload("b").build(), kIn},
       {from_remote().ipv4("203.0.113.19", "203.0.113.10").udp(3479, p).payload("r").build(), kOut},
       {from_host(1).ipv4("10.1.0.6", "203.0.113.9").udp(6000, 3478).payload("c").build(), kIn}});
  ASSERT_EQ(sent.size(), 3u) << "dropped: xlate_conflict " << drops(DropReason::kXlateConflict)
                             << ", nat_filtered " << drops(DropReason::kNatFiltered);
  const Sent* reply = nullptr;
  for (const Sent& s : sent)
    if (s.port == kIn) reply = &s;
  ASSERT_NE(reply, nullptr);
  EXPECT_EQ(reply->frame, to_host(0).ipv4("203.0.113.19", "10.1.0.5").ttl(63).udp(3479, 5000).payload("r").build());
  EXPECT_EQ(w_->stats().conn_created, 3u);
}

// The worker looks a packet up in the translation index first when the translator expects a
// reply (sent to a pool address, or by a port-forward target or mode-nat backend), else in the
// connection table first (Worker::lookup_burst). The guess only orders the lookups: a burst
// with replies and originals, one of them sent by a port-forward target on a connection of its
// own (guessed wrong), finds every connection and translates each packet its way.
TEST_F(XlatePipeline, ReplyGuessOrdersLookupsButFindsEveryConnection) {
  start([](Config& c) {
    c.nat.snat.push_back(snat_rule());
    c.nat.port_forward.push_back(port_forward(17, "203.0.113.11", 5353, "10.1.0.6", 53));
  });
  auto a = run(from_host(0).ipv4("10.1.0.5", "203.0.113.9").udp(5000, 3478).payload("a").build(), kIn);
  auto q = run(from_remote().ipv4("203.0.113.9", "203.0.113.11").udp(7000, 5353).payload("q").build(), kOut);
  auto o = run(from_host(1).ipv4("10.1.0.6", "203.0.113.9").udp(4000, 3478).payload("o").build(), kIn);
  ASSERT_EQ(a.size(), 1u);
  ASSERT_EQ(q.size(), 1u);
  ASSERT_EQ(o.size(), 1u);
  const uint16_t pa = sport_of(a[0].frame), po = sport_of(o[0].frame);
  Tuple own;
  own.family = Family::kV4;
  own.proto = 17;
  own.src = v4("10.1.0.6");
  own.dst = v4("203.0.113.9");
  own.sport = be16::from_host(4000);
  own.dport = be16::from_host(3478);
  ASSERT_TRUE(dp_->translator()->expects_reply(own)) << "the case this test is about";

  auto sent = run_burst(
      {{from_remote().ipv4("203.0.113.9", "203.0.113.10").udp(3478, pa).payload("r1").build(), kOut},
       {from_host(0).ipv4("10.1.0.5", "203.0.113.9").udp(5000, 3478).payload("a2").build(), kIn},
       {from_host(1).ipv4("10.1.0.6", "203.0.113.9").udp(4000, 3478).payload("o2").build(), kIn},
       {from_host(1).ipv4("10.1.0.6", "203.0.113.9").udp(53, 7000).payload("ans").build(), kIn}});
  const std::vector<Bytes> want = {
      to_host(0).ipv4("203.0.113.9", "10.1.0.5").ttl(63).udp(3478, 5000).payload("r1").build(),
      to_remote().ipv4("203.0.113.10", "203.0.113.9").ttl(63).udp(pa, 3478).payload("a2").build(),
      to_remote().ipv4("203.0.113.10", "203.0.113.9").ttl(63).udp(po, 3478).payload("o2").build(),
      to_remote().ipv4("203.0.113.11", "203.0.113.9").ttl(63).udp(5353, 7000).payload("ans").build()};
  ASSERT_EQ(sent.size(), want.size());
  for (const Bytes& w : want)
    EXPECT_TRUE(std::any_of(sent.begin(), sent.end(), [&](const Sent& s) { return s.frame == w; }));
  EXPECT_EQ(w_->stats().conn_created, 3u);
}

// RFC 4787 REQ-8 (APDF, the default here): only the endpoint the mapping sent to gets in.
TEST_F(XlatePipeline, SnatFilteringAddressAndPortDependent) {
  start([](Config& c) { c.nat.snat.push_back(snat_rule()); });
  auto a = run(from_host(0).ipv4("10.1.0.5", "203.0.113.9").udp(5000, 3478).payload("a").build(), kIn);
  ASSERT_EQ(a.size(), 1u);
  const uint16_t p = sport_of(a[0].frame);
  // The same remote address from another port: refused.
  EXPECT_TRUE(run(from_remote().ipv4("203.0.113.9", "203.0.113.10").udp(3479, p).payload("x").build(), kOut).empty());
  EXPECT_EQ(drops(DropReason::kNatFiltered), 1u);
  // To a port with no mapping: refused as such.
  EXPECT_TRUE(run(from_remote().ipv4("203.0.113.9", "203.0.113.10").udp(3478, 20200).payload("x").build(), kOut).empty());
  EXPECT_EQ(drops(DropReason::kNatNoMapping), 1u);
}

TEST_F(XlatePipeline, SnatFilteringEndpointIndependentLetsOthersIn) {
  start([](Config& c) { c.nat.snat.push_back(snat_rule(NatBehavior::kEndpointIndependent)); });
  auto a = run(from_host(0).ipv4("10.1.0.5", "203.0.113.9").udp(5000, 3478).payload("a").build(), kIn);
  ASSERT_EQ(a.size(), 1u);
  const uint16_t p = sport_of(a[0].frame);
  expect_forwarded(from_remote().ipv4("203.0.113.9", "203.0.113.10").udp(4000, p).payload("x").build(), kOut,
                   to_host(0).ipv4("203.0.113.9", "10.1.0.5").ttl(63).udp(4000, 5000).payload("x").build(), kIn);
}

TEST_F(XlatePipeline, SnatIcmpEchoIdentifierTranslated) {
  start([](Config& c) { c.nat.snat.push_back(snat_rule()); });
  auto out = run(from_host(0).ipv4("10.1.0.5", "203.0.113.9").icmp_echo(77, 1).build(), kIn);
  ASSERT_EQ(out.size(), 1u);
  const uint16_t id = uint16_t(out[0].frame[38] << 8 | out[0].frame[39]);
  EXPECT_EQ(out[0].frame, to_remote().ipv4("203.0.113.10", "203.0.113.9").ttl(63).icmp_echo(id, 1).build());
  expect_forwarded(from_remote().ipv4("203.0.113.9", "203.0.113.10").icmp_echo(id, 1, false).build(), kOut,
                   to_host(0).ipv4("203.0.113.9", "10.1.0.5").ttl(63).icmp_echo(77, 1, false).build(), kIn);
}

// RFC 4787 REQ-9: two inside hosts reach each other through the outside address.
TEST_F(XlatePipeline, SnatHairpinning) {
  start([](Config& c) {
    c.nat.snat.push_back(snat_rule());
    c.nat.port_forward.push_back(port_forward(17, "203.0.113.10", 53, "10.1.0.6", 5353));
  });
  auto out = run(from_host(0).ipv4("10.1.0.5", "203.0.113.10").udp(5000, 53).payload("h").build(), kIn);
  ASSERT_EQ(out.size(), 1u);
  EXPECT_EQ(out[0].port, kIn);
  const uint16_t p = sport_of(out[0].frame);
  EXPECT_EQ(out[0].frame, to_host(1).ipv4("203.0.113.10", "10.1.0.6").ttl(63).udp(p, 5353).payload("h").build());
  expect_forwarded(from_host(1).ipv4("10.1.0.6", "203.0.113.10").udp(5353, p).payload("r").build(), kIn,
                   to_host(0).ipv4("203.0.113.10", "10.1.0.5").ttl(63).udp(53, 5000).payload("r").build(), kIn);
}

TEST_F(XlatePipeline, SnatHostBlockLimitIsCountedNotCrashed) {
  start([](Config& c) { c.nat.snat.push_back(snat_rule()); });
  // 2 blocks of 64 ports per host, under APDM-free EIM: 128 inside ports fit, the next do not.
  int sent = 0;
  for (int i = 0; i < 140; i++)
    sent += int(run(from_host(0).ipv4("10.1.0.5", "203.0.113.9").udp(uint16_t(6000 + i), 53).payload("q").build(), kIn).size());
  EXPECT_EQ(sent, 128);
  EXPECT_EQ(drops(DropReason::kNatPortsExhausted), 12u);
}

TEST_F(XlatePipeline, MappingOutlivesItsConnectionThenExpires) {
  start([](Config& c) {
    c.nat.snat.push_back(snat_rule());
    c.nat.mapping_timeout_s = 300;
  });
  run(from_host(0).ipv4("10.1.0.5", "203.0.113.9").udp(5000, 53).payload("q").build(), kIn);
  const auto& maps = *dp_->translator()->snat_rules()[0].maps[0];
  ASSERT_EQ(maps.size(), 1u);
  w_->set_now(100 + 60);  // the UDP connection (30 s unreplied) expires, the mapping waits
  for (int i = 0; i < 8; i++) w_->housekeeping();
  EXPECT_EQ(dp_->xlate(0)->size(), 0u);
  EXPECT_EQ(maps.size(), 1u);
  w_->set_now(100 + 60 + 301);
  for (int i = 0; i < 8; i++) w_->housekeeping();
  EXPECT_EQ(maps.size(), 0u);
}


// A client reusing its port after a translated connection closed gets a new connection with a
// translation decided afresh (the old one's backend or mapping may be gone), as a SYN restarts a
// TIME_WAIT entry in Linux conntrack.
TEST_F(XlatePipeline, SynOnClosedTranslatedConnectionStartsANewOne) {
  start([](Config& c) { c.nat.static_nat.push_back({v4("10.1.0.5"), v4("203.0.113.50")}); });
  auto out = [](uint32_t seq, uint32_t ack, uint8_t fl) {
    return from_host(0).ipv4("10.1.0.5", "203.0.113.9").tcp(40000, 80).seq(seq).ack(ack).flags(fl).win(1000).build();
  };
  auto in = [](uint32_t seq, uint32_t ack, uint8_t fl) {
    return from_remote().ipv4("203.0.113.9", "203.0.113.50").tcp(80, 40000).seq(seq).ack(ack).flags(fl).win(1000).build();
  };
  ASSERT_EQ(run(out(100, 0, kSyn), kIn).size(), 1u);
  ASSERT_EQ(run(in(900, 101, kSyn | kAck), kOut).size(), 1u);
  ASSERT_EQ(run(out(101, 901, kAck), kIn).size(), 1u);
  ASSERT_EQ(run(out(101, 901, kFin | kAck), kIn).size(), 1u);
  ASSERT_EQ(run(in(901, 102, kFin | kAck), kOut).size(), 1u);
  ASSERT_EQ(run(out(102, 902, kAck), kIn).size(), 1u);
  EXPECT_EQ(w_->stats().conn_created, 1u);
  // The same port again, a new ISN: a new connection, translated, answered.
  auto o = run(out(50000, 0, kSyn), kIn);
  ASSERT_EQ(o.size(), 1u);
  EXPECT_EQ(o[0].frame, to_remote().ipv4("203.0.113.50", "203.0.113.9").ttl(63).tcp(40000, 80).seq(50000).flags(kSyn).win(1000).build());
  EXPECT_EQ(w_->stats().conn_created, 2u);
  EXPECT_EQ(dp_->xlate(0)->size(), 1u);
  ASSERT_EQ(run(in(7000, 50001, kSyn | kAck), kOut).size(), 1u);
}

// ---- a translated connection handed off -------------------------------------------------------

// Two dataplanes in one process, A (where the VM "web" 10.1.0.5 runs) and B (where it goes),
// and the handoff's sequence as MigrationEngine runs it (track, snapshot, freeze, final delta,
// activate), every record crossing the wire as ENTRIES frames of the negotiated version.
class XlateMigration : public ::testing::Test {
 protected:
  void start(const std::function<void(Config&)>& edit_a, const std::function<void(Config&)>& edit_b) {
    static int n = 0;
    auto make = [](const std::string& name, bool with_vm, const std::function<void(Config&)>& edit) {
      return test_dataplane("instance: " + name + "\n" + kBaseYaml +
                                (with_vm ? "vms:\n  - {name: web, mac: \"02:00:00:00:01:05\", ipv4: [10.1.0.5]}\n" : ""),
                            "x.yaml", [&](Config& c) {
                              c.nat.capacity = 4096;  // two dataplanes share the test's 256 MB
                              c.lb.sticky_capacity = 4096;
                              edit(c);
                            });
    };
    a_ = make("xha" + std::to_string(n), true, edit_a);
    b_ = make("xhb" + std::to_string(n++), false, edit_b);
    ASSERT_TRUE(a_ && b_);
    wa_ = a_->workers()[0].get();
    wb_ = b_->workers()[0].get();
    wa_->set_tx_sink(&ca_.sink);
    wb_->set_tx_sink(&cb_.sink);
    wa_->set_now(100);
    wb_->set_now(100);
    for (auto site : {std::make_pair(a_.get(), &ca_), std::make_pair(b_.get(), &cb_)}) {
      run(*site.first, *site.second, Pkt().eth(kRemoteMac, "ff:ff:ff:ff:ff:ff").arp(1, kRemoteMac, "203.0.113.9", "203.0.113.1").build(), kOut);
      for (int i = 0; i < 3; i++)
        run(*site.first, *site.second, Pkt().eth(kHostMac[i], "ff:ff:ff:ff:ff:ff").arp(1, kHostMac[i], kHostIp[i], "10.1.0.1").build(), kIn);
    }
    vm_a_ = *a_->vms().find_by_name("web");
  }
  void TearDown() override {
    if (wa_) wa_->set_tx_sink(nullptr);
    if (wb_) wb_->set_tx_sink(nullptr);
    steps_.inst.reset();
  }

  static std::vector<Sent> run(Dataplane& dp, Capture& c, const Bytes& f, uint16_t port) {
    c.sent.clear();
    rte_mbuf* m = rte_pktmbuf_alloc(dp.pool());
    std::memcpy(rte_pktmbuf_append(m, uint16_t(f.size())), f.data(), f.size());
    m->port = port;
    dp.workers()[0]->process_burst(&m, 1);
    dp.workers()[0]->flush_tx();
    return c.sent;
  }
  std::vector<Sent> at_a(const Bytes& f, uint16_t port) { return run(*a_, ca_, f, port); }
  std::vector<Sent> at_b(const Bytes& f, uint16_t port) { return run(*b_, cb_, f, port); }

  // PREPARE's check at B of what the VM's connections need (the engine's LocalView).
  migrate::Decision prepare_at_b() {
    migrate::VmReader::KindTally t = migrate::VmReader::tally(*a_, vm_a_);
    migrate::PrepareMsg pm;
    pm.vm = a_->vms().slot(vm_a_).config;
    pm.counts = t.counts;
    pm.needs = t.needs;
    migrate::LocalView view;
    view.kinds = ~0u;
    view.free.fill(UINT64_MAX);
    Translator* tr = b_->translator();
    view.check_nat = [tr](const migrate::NatNeed& n) {
      return tr->check_mapping(n.proto, n.inside_addr, n.outside_addr, n.outside_port);
    };
    view.check_lb = [this, tr](const migrate::LbNeed& n) {
      Dataplane::ReaderGuard guard(*b_);
      return tr->lb()->check_handoff(n.proto, n.vip, n.vip_port, n.backend_addr, n.backend_port, n.local_addr);
    };
    return migrate::decide(pm, view);
  }

  // The handoff's steps (handoff_steps.h) between a_ and b_; vm_b_ is the VM's id at B.
  void precopy() {
    steps_.a = a_.get();
    steps_.b = b_.get();
    steps_.vm_a = vm_a_;
    steps_.version = version_;
    steps_.precopy();
    vm_b_ = steps_.vm_b;
  }
  void final_delta() { steps_.final_delta(); }
  void activate() { steps_.activate(); }
  static void delete_vm(Worker& w, uint16_t vm) { pipetest::HandoffSteps::delete_vm(w, vm); }
  migrate::VmInstaller* inst() { return steps_.inst.get(); }
  // Every table of `dp` that a translated connection fills is empty.
  static void expect_holds_nothing(Dataplane& dp, const char* who) {
    EXPECT_EQ(dp.shard(0).size(), 0u) << who;
    if (dp.xlate(0)) {
      EXPECT_EQ(dp.xlate(0)->size(), 0u) << who;
    }
    for (const auto& r : dp.translator()->snat_rules()) {
      EXPECT_EQ(r.maps[0]->size(), 0u) << who << ": mappings";
      EXPECT_EQ(r.alloc[0]->stats().ports_in_use, 0u) << who << ": ports";
    }
    if (LoadBalancer* lb = dp.translator()->lb(); lb && lb->sticky())
      EXPECT_EQ(lb->sticky()->size(), 0u) << who << ": sticky entries";
  }
  void expect_no_drops_at_b() {
    for (int r = 0; r < kDropReasonCount; r++)
      if (wb_->stats().drops[r]) ADD_FAILURE() << "B dropped: " << drop_reason_name(static_cast<DropReason>(r));
  }

  std::unique_ptr<Dataplane> a_, b_;
  Worker* wa_ = nullptr;
  Worker* wb_ = nullptr;
  Capture ca_, cb_;
  uint16_t vm_a_ = 0, vm_b_ = 0;
  uint16_t version_ = migrate::kProtocolVersionMax;
  pipetest::HandoffSteps steps_;
};

// A VM behind static NAT moves from A to B mid-conversation (the handoff's sequence as
// MigrationEngine runs it: track, snapshot, freeze, final delta, activate), its records
// crossing the wire codec. At B the next segments are translated both ways and accepted by
// strict conntrack without creating anything; A's entry and reply key are gone after delete.
TEST_F(XlateMigration, StaticNatConnectionContinuesAtDestination) {
  // The VM is declared at A; B learns it from PREPARE.
  auto make = [](const std::string& name, bool with_vm) {
    return test_dataplane("instance: " + name + "\n" + kBaseYaml +
                              (with_vm ? "vms:\n  - {name: web, mac: \"02:00:00:00:01:05\", ipv4: [10.1.0.5]}\n" : ""),
                          "x.yaml", [](Config& c) {
                            c.nat.static_nat.push_back({v4("10.1.0.5"), v4("203.0.113.50")});
                          });
  };
  static int n = 0;
  auto a = make("xma" + std::to_string(n), true);
  auto b = make("xmb" + std::to_string(n++), false);
  ASSERT_TRUE(a && b);
  Capture ca, cb;
  Worker& wa = *a->workers()[0];
  Worker& wb = *b->workers()[0];
  wa.set_tx_sink(&ca.sink);
  wb.set_tx_sink(&cb.sink);
  wa.set_now(100);
  wb.set_now(100);
  auto run = [](Dataplane& dp, Capture& c, const Bytes& f, uint16_t port) {
    c.sent.clear();
    rte_mbuf* m = rte_pktmbuf_alloc(dp.pool());
    std::memcpy(rte_pktmbuf_append(m, uint16_t(f.size())), f.data(), f.size());
    m->port = port;
    dp.workers()[0]->process_burst(&m, 1);
    dp.workers()[0]->flush_tx();
    return c.sent;
  };
  for (auto site : {std::make_pair(a.get(), &ca), std::make_pair(b.get(), &cb)}) {
    run(*site.first, *site.second, Pkt().eth(kRemoteMac, "ff:ff:ff:ff:ff:ff").arp(1, kRemoteMac, "203.0.113.9", "203.0.113.1").build(), kOut);
    run(*site.first, *site.second, Pkt().eth(kHostMac[0], "ff:ff:ff:ff:ff:ff").arp(1, kHostMac[0], "10.1.0.5", "10.1.0.1").build(), kIn);
  }
  auto out_seg = [](uint32_t seq, uint32_t ack, uint8_t fl, const char* data) {
    return from_host(0).ipv4("10.1.0.5", "203.0.113.9").tcp(40000, 80).seq(seq).ack(ack).flags(fl).win(1000).payload(data).build();
  };
  auto out_seen = [](uint32_t seq, uint32_t ack, uint8_t fl, const char* data) {
    return to_remote().ipv4("203.0.113.50", "203.0.113.9").ttl(63).tcp(40000, 80).seq(seq).ack(ack).flags(fl).win(1000).payload(data).build();
  };
  auto in_seg = [](uint32_t seq, uint32_t ack, uint8_t fl, const char* data) {
    return from_remote().ipv4("203.0.113.9", "203.0.113.50").tcp(80, 40000).seq(seq).ack(ack).flags(fl).win(1000).payload(data).build();
  };
  auto in_seen = [](uint32_t seq, uint32_t ack, uint8_t fl, const char* data) {
    return to_host(0).ipv4("203.0.113.9", "10.1.0.5").ttl(63).tcp(80, 40000).seq(seq).ack(ack).flags(fl).win(1000).payload(data).build();
  };
  // The conversation at A.
  ASSERT_EQ(run(*a, ca, out_seg(100, 0, kSyn, ""), kIn).size(), 1u);
  ASSERT_EQ(run(*a, ca, in_seg(900, 101, kSyn | kAck, ""), kOut).size(), 1u);
  ASSERT_EQ(run(*a, ca, out_seg(101, 901, kAck, "abc"), kIn).size(), 1u);

  // Hand off.
  const uint16_t vm_a = *a->vms().find_by_name("web");
  std::string err;
  ASSERT_TRUE(a->vms().open_migration_rings(vm_a, 1, 1024, 8192, &err)) << err;
  VmConfig vc = a->vms().slot(vm_a).config;
  auto idb = b->vms().add(vc, &err);
  ASSERT_TRUE(idb) << err;
  const uint16_t vm_b = *idb;
  b->vms().slot(vm_b).state.store(VmState::kArriving);
  ASSERT_TRUE(b->vms().open_migration_rings(vm_b, 1, 1024, 8192, &err)) << err;
  migrate::VmReader reader(*a, vm_a);
  migrate::VmInstaller inst(*b, vm_b);
  auto ship = [&](const std::vector<migrate::ConnRecord>& recs, uint32_t round) {
    migrate::EntriesMsg em;
    em.round = round;
    em.records = recs;
    std::vector<uint8_t> frame = migrate::encode_frame(em, 42, round + 1);
    migrate::Frame f;
    ASSERT_EQ(migrate::decode_frame(frame.data(), frame.size(), &f), migrate::CodecError::kOk);
    migrate::EntriesMsg got;
    ASSERT_EQ(migrate::decode_body(f, &got), migrate::CodecError::kOk);
    ASSERT_TRUE(inst.submit(got.records, 1000));
    wb.housekeeping();
    ASSERT_TRUE(inst.wait(1000));
  };
  VmSlot& vs = a->vms().slot(vm_a);
  vs.epoch.fetch_add(1);
  vs.state.store(VmState::kTracking);
  a->grace_period();
  auto snap = reader.snapshot();
  ASSERT_EQ(snap.size(), 1u);
  EXPECT_EQ(snap[0].xlate.kind, XlateKind::kStatic) << "the record carries its translation";
  ship(snap, 0);
  // One more segment at A, then freeze and the final delta.
  ASSERT_EQ(run(*a, ca, in_seg(901, 104, kAck, "hello"), kOut).size(), 1u);
  vs.state.store(VmState::kFrozen);
  a->grace_period();
  auto fin = reader.delta(migrate::VmReader::Drain::kAll, nullptr);
  ASSERT_EQ(fin.size(), 1u);
  ship(fin, 1);
  EXPECT_EQ(inst.failed, 0u);
  EXPECT_EQ(inst.applied, 2u) << "stale " << inst.stale;
  b->vms().slot(vm_b).state.store(VmState::kLocal);
  b->grace_period();
  EXPECT_EQ(b->xlate(0)->size(), 1u);

  // B continues the conversation, translating both ways.
  auto o = run(*b, cb, out_seg(104, 906, kAck, "more"), kIn);
  for (int r = 0; r < kDropReasonCount; r++)
    if (wb.stats().drops[r]) ADD_FAILURE() << "B dropped: " << drop_reason_name(static_cast<DropReason>(r));
  ASSERT_EQ(o.size(), 1u);
  EXPECT_EQ(o[0].frame, out_seen(104, 906, kAck, "more"));
  o = run(*b, cb, in_seg(906, 108, kAck, "reply"), kOut);
  ASSERT_EQ(o.size(), 1u);
  EXPECT_EQ(o[0].frame, in_seen(906, 108, kAck, "reply"));
  EXPECT_EQ(wb.stats().conn_created, 0u);
  EXPECT_EQ(wb.stats().dropped, 0u);

  // A lets go of the VM: its entry and reply key are gone.
  WorkerCommand del;
  del.kind = WorkerCommand::Kind::kDeleteVm;
  del.vm = vm_a;
  ASSERT_TRUE(wa.command(&del));
  wa.housekeeping();
  ASSERT_TRUE(del.done.load());
  EXPECT_EQ(a->shard(0).size(), 0u);
  EXPECT_EQ(a->xlate(0)->size(), 0u);
  wa.set_tx_sink(nullptr);
  wb.set_tx_sink(nullptr);
}

// SNAT: the VM's connection through a dynamic mapping moves with its mapping. At B the
// mapping is recreated with exactly A's outside endpoint (no allocation of its own), both
// directions are translated byte-exact and nothing new is created; A holds nothing after delete.
TEST_F(XlateMigration, SnatConnectionKeepsItsOutsidePortAtDestination) {
  auto with_snat = [](Config& c) { c.nat.snat.push_back(snat_rule()); };
  ASSERT_NO_FATAL_FAILURE(start(with_snat, with_snat));
  auto out_seg = [](uint32_t seq, uint32_t ack, uint8_t fl, const char* data) {
    return from_host(0).ipv4("10.1.0.5", "203.0.113.9").tcp(40000, 80).seq(seq).ack(ack).flags(fl).win(1000).payload(data).build();
  };
  auto in_seg = [](uint16_t p, uint32_t seq, uint32_t ack, uint8_t fl, const char* data) {
    return from_remote().ipv4("203.0.113.9", "203.0.113.10").tcp(80, p).seq(seq).ack(ack).flags(fl).win(1000).payload(data).build();
  };
  auto o = at_a(out_seg(100, 0, kSyn, ""), kIn);
  ASSERT_EQ(o.size(), 1u);
  const uint16_t p = sport_of(o[0].frame);
  ASSERT_EQ(at_a(in_seg(p, 900, 101, kSyn | kAck, ""), kOut).size(), 1u);
  ASSERT_EQ(at_a(out_seg(101, 901, kAck, "abc"), kIn).size(), 1u);

  const migrate::Decision d = prepare_at_b();
  EXPECT_TRUE(d.accepted()) << d.detail;
  ASSERT_NO_FATAL_FAILURE(precopy());
  ASSERT_EQ(at_a(in_seg(p, 901, 104, kAck, "hello"), kOut).size(), 1u);  // moves on at A
  ASSERT_NO_FATAL_FAILURE(final_delta());
  EXPECT_EQ(inst()->failed, 0u) << inst()->conflict;
  EXPECT_TRUE(inst()->conflict.empty()) << inst()->conflict;
  activate();

  const auto& rule_b = b_->translator()->snat_rules()[0];
  ASSERT_EQ(rule_b.maps[0]->size(), 1u);
  const int32_t ms = rule_b.maps[0]->lookup_outside(6, be32::from_host(0xcb00710a), be16::from_host(p));
  ASSERT_GE(ms, 0) << "B holds the mapping of A's outside port";
  EXPECT_EQ(rule_b.maps[0]->mapping(ms).sessions, 1u);
  EXPECT_EQ(rule_b.alloc[0]->stats().ports_in_use, 1u) << "B took A's port and no other";

  o = at_b(out_seg(104, 906, kAck, "more"), kIn);
  expect_no_drops_at_b();
  ASSERT_EQ(o.size(), 1u);
  EXPECT_EQ(o[0].frame, to_remote().ipv4("203.0.113.10", "203.0.113.9").ttl(63).tcp(p, 80).seq(104).ack(906).flags(kAck).win(1000).payload("more").build());
  o = at_b(in_seg(p, 906, 108, kAck, "reply"), kOut);
  ASSERT_EQ(o.size(), 1u);
  EXPECT_EQ(o[0].frame, to_host(0).ipv4("203.0.113.9", "10.1.0.5").ttl(63).tcp(80, 40000).seq(906).ack(108).flags(kAck).win(1000).payload("reply").build());
  EXPECT_EQ(wb_->stats().conn_created, 0u);

  delete_vm(*wa_, vm_a_);
  expect_holds_nothing(*a_, "A after delete");
}

// The mapping's outside port lies in a port block B has leased to another inside host: PREPARE
// says CONFLICT naming it, and the record, sent all the same, fails at the installer with the
// reason (the engine's FAIL(CONFLICT)); B rolls back to holding only the other host's state.
TEST_F(XlateMigration, SnatPortBlockHeldByAnotherHostAtDestinationIsAConflict) {
  auto with_snat = [](Config& c) { c.nat.snat.push_back(snat_rule()); };
  ASSERT_NO_FATAL_FAILURE(start(with_snat, with_snat));
  auto o = at_a(from_host(0).ipv4("10.1.0.5", "203.0.113.9").tcp(40000, 80).seq(100).flags(kSyn).win(1000).build(), kIn);
  ASSERT_EQ(o.size(), 1u);
  const uint16_t p = sport_of(o[0].frame);
  // Host 10.1.0.6 takes the same block at B first.
  o = at_b(from_host(1).ipv4("10.1.0.6", "203.0.113.9").tcp(40000, 80).seq(100).flags(kSyn).win(1000).build(), kIn);
  ASSERT_EQ(o.size(), 1u);
  const auto& rule_b = b_->translator()->snat_rules()[0];
  ASSERT_EQ(rule_b.alloc[0]->lessee(be32::from_host(0xcb00710a), be16::from_host(p)), be32::from_host(0x0a010006))
      << "precondition: the block of A's port is leased to another host at B";

  const migrate::Decision d = prepare_at_b();
  EXPECT_EQ(d.reason, migrate::FailReason::kConflict);
  EXPECT_NE(d.detail.find("leased to 10.1.0.6"), std::string::npos) << d.detail;

  ASSERT_NO_FATAL_FAILURE(precopy());
  ASSERT_NO_FATAL_FAILURE(final_delta());
  EXPECT_EQ(inst()->failed, 1u);
  EXPECT_NE(inst()->conflict.find("203.0.113.10:" + std::to_string(p)), std::string::npos) << inst()->conflict;
  delete_vm(*wb_, vm_b_);  // rollback
  EXPECT_EQ(b_->shard(0).size(), 1u) << "only the other host's connection";
  EXPECT_EQ(rule_b.maps[0]->size(), 1u);
  EXPECT_EQ(rule_b.alloc[0]->stats().ports_in_use, 1u);
}

// ---- load-balanced connections handed off ----

// Service 203.0.113.100:80 whose backend is the VM (10.1.0.5:8080). At B the VM's backend is
// draining and listed after another: B's Maglev would never pick it and its ids differ.
void lb_config(Config& c, LbMode mode, bool at_b, bool vm_backend = true) {
  PoolConfig pool;
  pool.name = "web";
  if (at_b) pool.backends.push_back({v4("10.1.0.6"), 8080, 1, BackendState::kUp, 0});
  if (vm_backend) pool.backends.push_back({v4("10.1.0.5"), 8080, 1, at_b ? BackendState::kDraining : BackendState::kUp, 0});
  c.lb.pools.push_back(pool);
  ServiceConfig s;
  s.name = "www";
  s.vip = v4("203.0.113.100");
  s.port = 80;
  s.mode = mode;
  s.pool = "web";
  if (mode == LbMode::kFullNat) s.local_addresses = {v4("10.1.0.100")};
  s.sticky.method = StickyMethod::kSourceAddress;
  c.lb.services.push_back(s);
}

// Full NAT's local port search (LoadBalancer::pick_local) probes about once per new connection
// however many connections are open, even when every client uses the same source port (it used
// to start each search from the client's port: quadratic).
TEST_F(XlatePipeline, FullNatLocalPortSearchStaysConstantPerConnection) {
  ASSERT_NO_FATAL_FAILURE(start([](Config& c) {
    lb_config(c, LbMode::kFullNat, false);
    c.lb.services.back().sticky.method = StickyMethod::kNone;
  }));
  LoadBalancer& lb = *dp_->translator()->lb();
  std::set<std::tuple<uint32_t, uint16_t, uint32_t, uint16_t>> open;  // reply tuples in use
  uint64_t probes = 0;
  constexpr uint32_t kConns = 20000;
  for (uint32_t i = 0; i < kConns; i++) {
    Tuple t;
    t.family = Family::kV4;
    t.proto = 6;
    t.src = IpAddr::v4(be32::from_host(0xc0000000u + i));  // many clients, one source port
    t.dst = v4("203.0.113.100");
    t.sport = be16::from_host(40000);
    t.dport = be16::from_host(80);
    ConnXlate x;
    auto taken = [&](const Tuple& r) {
      probes++;
      return open.count({r.src.as_v4().raw(), r.sport.raw(), r.dst.as_v4().raw(), r.dport.raw()}) > 0;
    };
    ASSERT_EQ(lb.decide(0, t, 100, &x, taken), LoadBalancer::Verdict::kTranslate) << i;
    const Tuple r = reply_tuple(x, 6, 0);
    ASSERT_TRUE(open.insert({r.src.as_v4().raw(), r.sport.raw(), r.dst.as_v4().raw(), r.dport.raw()}).second)
        << "reply tuple handed out twice";
  }
  EXPECT_LT(probes, kConns * 11 / 10);
}

struct LbCase {
  LbMode mode;
  const char* backend_sees;  // the connection's source at the backend
};

class XlateMigrationLb : public XlateMigration, public ::testing::WithParamInterface<LbCase> {};

TEST_P(XlateMigrationLb, ConnectionKeepsItsBackendAndStickyEntryAtDestination) {
  const LbCase c = GetParam();
  ASSERT_NO_FATAL_FAILURE(start([&](Config& cfg) { lb_config(cfg, c.mode, false); }, [&](Config& cfg) { lb_config(cfg, c.mode, true); }));
  auto in_seg = [](uint16_t sport, uint32_t seq, uint32_t ack, uint8_t fl, const char* data) {
    return from_remote().ipv4("203.0.113.9", "203.0.113.100").tcp(sport, 80).seq(seq).ack(ack).flags(fl).win(1000).payload(data).build();
  };
  // What the VM sees and sends: from the client (nat) or the local address (full NAT).
  auto o = at_a(in_seg(50000, 100, 0, kSyn, ""), kOut);
  ASSERT_EQ(o.size(), 1u);
  const uint16_t lport = sport_of(o[0].frame);  // the client's port, or the full-NAT local port
  if (c.mode == LbMode::kNat) {
    EXPECT_EQ(lport, 50000);
  }
  auto vm_seg = [&](uint32_t seq, uint32_t ack, uint8_t fl, const char* data) {
    return from_host(0).ipv4("10.1.0.5", c.backend_sees).tcp(8080, lport).seq(seq).ack(ack).flags(fl).win(1000).payload(data).build();
  };
  ASSERT_EQ(at_a(vm_seg(900, 101, kSyn | kAck, ""), kIn).size(), 1u);
  ASSERT_EQ(at_a(in_seg(50000, 101, 901, kAck, "GET"), kOut).size(), 1u);

  const migrate::Decision d = prepare_at_b();
  EXPECT_TRUE(d.accepted()) << d.detail;
  ASSERT_NO_FATAL_FAILURE(precopy());
  ASSERT_NO_FATAL_FAILURE(final_delta());
  EXPECT_TRUE(inst()->conflict.empty()) << inst()->conflict;
  EXPECT_EQ(inst()->failed, 0u);
  activate();

  LoadBalancer& lb_b = *b_->translator()->lb();
  ASSERT_EQ(lb_b.sticky()->size(), 1u) << "the client's sticky entry travelled";
  o = at_b(in_seg(50000, 104, 901, kAck, "more"), kOut);
  expect_no_drops_at_b();
  ASSERT_EQ(o.size(), 1u);
  EXPECT_EQ(o[0].frame, to_host(0).ipv4(c.backend_sees, "10.1.0.5").ttl(63).tcp(lport, 8080).seq(104).ack(901).flags(kAck).win(1000).payload("more").build());
  o = at_b(vm_seg(901, 108, kAck, "200 OK"), kIn);
  ASSERT_EQ(o.size(), 1u);
  EXPECT_EQ(o[0].frame, to_remote().ipv4("203.0.113.100", "203.0.113.9").ttl(63).tcp(80, 50000).seq(901).ack(108).flags(kAck).win(1000).payload("200 OK").build());
  EXPECT_EQ(wb_->stats().conn_created, 0u);
  for (const BackendStatus& s : lb_b.pools()[0]->list())
    EXPECT_EQ(s.active_conns, s.spec.addr == be32::from_host(0x0a010005) ? 1 : 0) << "the connection counts on its backend at B";

  // A new connection of the same client at B: the sticky entry sends it to the VM, which
  // B's own Maglev never would (draining there).
  o = at_b(in_seg(50001, 500, 0, kSyn, ""), kOut);
  ASSERT_EQ(o.size(), 1u);
  EXPECT_EQ(o[0].frame[33], 5) << "to 10.1.0.5";

  delete_vm(*wa_, vm_a_);
  expect_holds_nothing(*a_, "A after delete");
}

INSTANTIATE_TEST_SUITE_P(Modes, XlateMigrationLb,
                         ::testing::Values(LbCase{LbMode::kNat, "203.0.113.9"},
                                           LbCase{LbMode::kFullNat, "10.1.0.100"}),
                         [](const auto& i) { return std::string(i.param.mode == LbMode::kNat ? "Nat" : "FullNat"); });

// B's pool does not have the VM's backend: PREPARE says CONFLICT naming it, the installer
// refuses the record with the reason, and B holds nothing after the rollback.
TEST_F(XlateMigration, LbBackendUnknownAtDestinationIsAConflict) {
  ASSERT_NO_FATAL_FAILURE(start([](Config& cfg) { lb_config(cfg, LbMode::kNat, false); },
        [](Config& cfg) { lb_config(cfg, LbMode::kNat, true, false); }));
  auto o = at_a(from_remote().ipv4("203.0.113.9", "203.0.113.100").tcp(50000, 80).seq(100).flags(kSyn).win(1000).build(), kOut);
  ASSERT_EQ(o.size(), 1u);
  const migrate::Decision d = prepare_at_b();
  EXPECT_EQ(d.reason, migrate::FailReason::kConflict);
  EXPECT_NE(d.detail.find("backend 10.1.0.5:8080 is not in pool web"), std::string::npos) << d.detail;
  ASSERT_NO_FATAL_FAILURE(precopy());
  ASSERT_NO_FATAL_FAILURE(final_delta());
  EXPECT_EQ(inst()->failed, 1u);
  EXPECT_NE(inst()->conflict.find("10.1.0.5:8080"), std::string::npos) << inst()->conflict;
  delete_vm(*wb_, vm_b_);
  expect_holds_nothing(*b_, "B after rollback");
  for (const BackendStatus& s : b_->translator()->lb()->pools()[0]->list()) EXPECT_EQ(s.active_conns, 0);
}

// A version-2 peer gets the static-NAT record without any handoff part, and the reader's
// frames say version 2.
TEST_F(XlateMigration, Version2PeerGetsStaticNatWithoutParts) {
  auto with_static = [](Config& c) { c.nat.static_nat.push_back({v4("10.1.0.5"), v4("203.0.113.50")}); };
  ASSERT_NO_FATAL_FAILURE(start(with_static, with_static));
  version_ = migrate::kProtocolVersionXlate;
  ASSERT_EQ(at_a(from_host(0).ipv4("10.1.0.5", "203.0.113.9").tcp(40000, 80).seq(100).flags(kSyn).win(1000).build(), kIn).size(), 1u);
  ASSERT_NO_FATAL_FAILURE(precopy());
  ASSERT_NO_FATAL_FAILURE(final_delta());
  EXPECT_EQ(inst()->failed, 0u) << inst()->conflict;
  EXPECT_EQ(b_->xlate(0)->size(), 1u);
}

// ---- fragments of translated datagrams ----------------------------------------------------------

// The fragments a host sends for `whole` (an Ethernet + 20-byte IPv4 header frame from the
// builder): up to `chunk` bytes (a multiple of 8) of its IP payload each, the headers copied
// with the fragment's length, offset and MF bit, the header checksum recomputed.
constexpr size_t kL2 = 14, kIpHdr = 20, kChunk = 800;
void set_ip_checksum(uint8_t* ip) {
  ip[10] = ip[11] = 0;
  const uint16_t c = pktgen::inet_checksum(ip, kIpHdr);
  ip[10] = uint8_t(c >> 8), ip[11] = uint8_t(c);
}
std::vector<Bytes> fragment(const Bytes& whole, size_t chunk = kChunk) {
  std::vector<Bytes> out;
  const size_t n = whole.size() - kL2 - kIpHdr;
  for (size_t off = 0; off < n; off += chunk) {
    const size_t len = std::min(chunk, n - off);
    Bytes f(whole.begin(), whole.begin() + kL2 + kIpHdr);
    f.insert(f.end(), whole.begin() + kL2 + kIpHdr + off, whole.begin() + kL2 + kIpHdr + off + len);
    uint8_t* ip = f.data() + kL2;
    const uint16_t total = uint16_t(kIpHdr + len);
    const uint16_t flags = uint16_t((off + len < n ? 0x2000 : 0) | off / 8);
    ip[2] = uint8_t(total >> 8), ip[3] = uint8_t(total);
    ip[6] = uint8_t(flags >> 8), ip[7] = uint8_t(flags);
    set_ip_checksum(ip);
    out.push_back(f);
  }
  return out;
}

// The datagram the receiver reassembles from fragments in order (header of the first, offsets
// and MF cleared): its L4 checksum covers every fragment's payload.
Bytes reassemble(const std::vector<Bytes>& frags) {
  Bytes whole(frags[0].begin(), frags[0].begin() + kL2 + kIpHdr);
  for (const Bytes& f : frags) whole.insert(whole.end(), f.begin() + kL2 + kIpHdr, f.end());
  uint8_t* ip = whole.data() + kL2;
  const uint16_t total = uint16_t(whole.size() - kL2);
  ip[2] = uint8_t(total >> 8), ip[3] = uint8_t(total);
  ip[6] = ip[7] = 0;
  set_ip_checksum(ip);
  return whole;
}

uint16_t ip_id_of(const Bytes& frame) { return uint16_t(frame[kL2 + 4] << 8 | frame[kL2 + 5]); }
Bytes ip_src_of(const Bytes& frame) { return Bytes(&frame[kL2 + 12], &frame[kL2 + 16]); }
Bytes ip_dst_of(const Bytes& frame) { return Bytes(&frame[kL2 + 16], &frame[kL2 + 20]); }

Bytes pattern(size_t n, uint8_t seed) {
  Bytes b(n);
  for (size_t i = 0; i < n; i++) b[i] = uint8_t(seed + i * 7 + (i >> 8));
  return b;
}

class XlateFragments : public XlatePipeline {
 protected:
  std::vector<Bytes> send(const Bytes& whole, uint16_t from, uint16_t to) {
    std::vector<Bytes> out;
    for (const Bytes& f : fragment(whole)) {
      auto o = run(f, from);
      EXPECT_EQ(o.size(), 1u) << "fragment " << out.size() << " dropped; fragment drops "
                              << drops(DropReason::kFragment) << ", xlate_fragment "
                              << drops(DropReason::kXlateFragment);
      if (o.empty()) return out;
      EXPECT_EQ(o[0].port, to);
      out.push_back(o[0].frame);
    }
    return out;
  }
};

// What left is exactly `want` fragmented as the sender fragmented it: every fragment has the
// translated addresses, its IP id, and a correct header checksum (recomputed here), and the
// reassembled datagram's L4 checksum is right (the first fragment's carries the whole change).
void expect_fragments_of(const std::vector<Bytes>& got, const Bytes& want) {
  const std::vector<Bytes> want_frags = fragment(want);
  ASSERT_EQ(got.size(), want_frags.size());
  for (size_t i = 0; i < got.size(); i++) {
    EXPECT_TRUE(pktgen::ipv4_checksum_ok(got[i].data(), got[i].size())) << "fragment " << i;
    EXPECT_EQ(ip_src_of(got[i]), ip_src_of(want)) << "fragment " << i;
    EXPECT_EQ(ip_dst_of(got[i]), ip_dst_of(want)) << "fragment " << i;
    EXPECT_EQ(ip_id_of(got[i]), ip_id_of(want)) << "fragment " << i;
    EXPECT_EQ(got[i], want_frags[i]) << "fragment " << i;
  }
  EXPECT_TRUE(pktgen::l4_checksum_ok(reassemble(got)));
}

TEST_F(XlateFragments, SnatTranslatesEveryFragmentOfADatagramBothWays) {
  start([](Config& c) { c.nat.snat.push_back(snat_rule()); });
  const Bytes q = pattern(2000, 1), r = pattern(1700, 2);  // 3 fragments each
  auto out = send(from_host(0).ipv4("10.1.0.5", "203.0.113.9").ip_id(4242).udp(5000, 53).payload(q).build(), kIn, kOut);
  ASSERT_EQ(out.size(), 3u);
  const uint16_t p = sport_of(out[0]);
  expect_fragments_of(out, to_remote().ipv4("203.0.113.10", "203.0.113.9").ttl(63).ip_id(4242).udp(p, 53).payload(q).build());
  // The answer, fragmented by the remote host, reaches the inside host in every fragment.
  auto back = send(from_remote().ipv4("203.0.113.9", "203.0.113.10").ip_id(999).udp(53, p).payload(r).build(), kOut, kIn);
  expect_fragments_of(back, to_host(0).ipv4("203.0.113.9", "10.1.0.5").ttl(63).ip_id(999).udp(53, 5000).payload(r).build());
  EXPECT_EQ(w_->stats().xlated_packets, 6u);
  EXPECT_EQ(w_->stats().dropped, 0u);
}

// ping -s 4000 through SNAT: the first fragment carries the identifier SNAT translates.
TEST_F(XlateFragments, SnatTranslatesAFragmentedIcmpEchoBothWays) {
  start([](Config& c) { c.nat.snat.push_back(snat_rule()); });
  const Bytes data = pattern(4000, 3);
  auto out = send(from_host(0).ipv4("10.1.0.5", "203.0.113.9").ip_id(7).icmp_echo(77, 1).payload(data).build(), kIn, kOut);
  ASSERT_EQ(out.size(), 6u);
  const uint16_t id = uint16_t(out[0][38] << 8 | out[0][39]);
  EXPECT_NE(id, 77);
  expect_fragments_of(out, to_remote().ipv4("203.0.113.10", "203.0.113.9").ttl(63).ip_id(7).icmp_echo(id, 1).payload(data).build());
  auto back = send(from_remote().ipv4("203.0.113.9", "203.0.113.10").ip_id(8).icmp_echo(id, 1, false).payload(data).build(), kOut, kIn);
  expect_fragments_of(back, to_host(0).ipv4("203.0.113.9", "10.1.0.5").ttl(63).ip_id(8).icmp_echo(77, 1, false).payload(data).build());
}

TEST_F(XlateFragments, StaticNatTranslatesInboundFragmentsToTheInsideHost) {
  start([](Config& c) { c.nat.static_nat.push_back({v4("10.1.0.5"), v4("203.0.113.50")}); });
  const Bytes q = pattern(2000, 4), r = pattern(900, 5);
  auto in = send(from_remote().ipv4("203.0.113.9", "203.0.113.50").ip_id(11).udp(5353, 53).payload(q).build(), kOut, kIn);
  expect_fragments_of(in, to_host(0).ipv4("203.0.113.9", "10.1.0.5").ttl(63).ip_id(11).udp(5353, 53).payload(q).build());
  auto out = send(from_host(0).ipv4("10.1.0.5", "203.0.113.9").ip_id(12).udp(53, 5353).payload(r).build(), kIn, kOut);
  expect_fragments_of(out, to_remote().ipv4("203.0.113.50", "203.0.113.9").ttl(63).ip_id(12).udp(53, 5353).payload(r).build());
}

TEST_F(XlateFragments, PortForwardTranslatesFragmentsToTheInsideHost) {
  start([](Config& c) {
    c.nat.port_forward.push_back(port_forward(17, "203.0.113.10", 53, "10.1.0.6", 5353));
  });
  const Bytes q = pattern(1800, 6), r = pattern(2500, 7);
  auto in = send(from_remote().ipv4("203.0.113.9", "203.0.113.10").ip_id(21).udp(4000, 53).payload(q).build(), kOut, kIn);
  expect_fragments_of(in, to_host(1).ipv4("203.0.113.9", "10.1.0.6").ttl(63).ip_id(21).udp(4000, 5353).payload(q).build());
  auto out = send(from_host(1).ipv4("10.1.0.6", "203.0.113.9").ip_id(22).udp(5353, 4000).payload(r).build(), kIn, kOut);
  expect_fragments_of(out, to_remote().ipv4("203.0.113.10", "203.0.113.9").ttl(63).ip_id(22).udp(53, 4000).payload(r).build());
}

TEST_F(XlateFragments, LoadBalancerSendsEveryFragmentToTheBackend) {
  start([](Config& c) {
    PoolConfig pool;
    pool.name = "dns";
    pool.backends.push_back({v4("10.1.0.7"), 5353, 1, BackendState::kUp, 0});
    c.lb.pools.push_back(pool);
    ServiceConfig s;
    s.name = "dns";
    s.vip = v4("203.0.113.100");
    s.proto = 17;
    s.port = 53;
    s.mode = LbMode::kNat;
    s.pool = "dns";
    s.sticky.method = StickyMethod::kNone;
    c.lb.services.push_back(s);
    c.lb.sticky_capacity = 4096;
  });
  const Bytes q = pattern(2000, 8), r = pattern(3000, 9);
  auto in = send(from_remote().ipv4("203.0.113.9", "203.0.113.100").ip_id(31).udp(4000, 53).payload(q).build(), kOut, kIn);
  expect_fragments_of(in, to_host(2).ipv4("203.0.113.9", "10.1.0.7").ttl(63).ip_id(31).udp(4000, 5353).payload(q).build());
  auto out = send(from_host(2).ipv4("10.1.0.7", "203.0.113.9").ip_id(32).udp(5353, 4000).payload(r).build(), kIn, kOut);
  expect_fragments_of(out, to_remote().ipv4("203.0.113.100", "203.0.113.9").ttl(63).ip_id(32).udp(53, 4000).payload(r).build());
}

// A later fragment whose first one was not accepted here, or was too long ago, has no
// translation to get: dropped, counted as a translated flow's when that is clear.
TEST_F(XlateFragments, LaterFragmentWithoutItsFirstIsDropped) {
  start([](Config& c) { c.nat.snat.push_back(snat_rule()); });
  const Bytes q = pattern(2000, 10);
  // To the pool address: only translated connections are addressed there.
  auto reply = fragment(from_remote().ipv4("203.0.113.9", "203.0.113.10").ip_id(41).udp(53, 20001).payload(q).build());
  EXPECT_TRUE(run(reply[1], kOut).empty());
  EXPECT_EQ(drops(DropReason::kXlateFragment), 1u);
  // Between addresses no translation owns: the plain fragment drop.
  auto plain = fragment(from_remote().ipv4("203.0.113.9", "10.1.0.6").ip_id(42).udp(53, 4000).payload(q).build());
  EXPECT_TRUE(run(plain[1], kOut).empty());
  EXPECT_EQ(drops(DropReason::kFragment), 1u);
  // The first fragment translated, the next one after the fragment lifetime (30 s).
  auto out = fragment(from_host(0).ipv4("10.1.0.5", "203.0.113.9").ip_id(43).udp(5000, 53).payload(q).build());
  ASSERT_EQ(run(out[0], kIn).size(), 1u);
  ASSERT_EQ(run(out[1], kIn).size(), 1u);
  w_->set_now(100 + 31);
  EXPECT_TRUE(run(out[2], kIn).empty());
  EXPECT_EQ(drops(DropReason::kXlateFragment), 2u);
  EXPECT_EQ(drops(DropReason::kFragment), 1u);
}

// Two workers (both running), every frame read by worker 0 as with one RX queue. The reply
// datagram's first fragment belongs to the worker that owns the SNAT port; its later fragments,
// without a port, would hash (by address pair) to the other one: they must follow the first.
struct ThreadCapture {
  TxSink sink{&ThreadCapture::on_tx, this};
  std::mutex mu;
  std::vector<Sent> sent;
  static void on_tx(void* ctx, uint16_t port, rte_mbuf** pkts, uint32_t n) {
    auto* c = static_cast<ThreadCapture*>(ctx);
    std::lock_guard<std::mutex> g(c->mu);
    for (uint32_t i = 0; i < n; i++) {
      const uint8_t* p = rte_pktmbuf_mtod(pkts[i], const uint8_t*);
      c->sent.push_back({port, Bytes(p, p + pkts[i]->data_len)});
      rte_pktmbuf_free(pkts[i]);
    }
  }
  std::vector<Bytes> take(size_t n) {  // waits up to 5 s for n frames
    for (int i = 0; i < 5000; i++) {
      {
        std::lock_guard<std::mutex> g(mu);
        if (sent.size() >= n) break;
      }
      usleep(1000);
    }
    std::lock_guard<std::mutex> g(mu);
    std::vector<Bytes> out;
    for (const Sent& s : sent) out.push_back(s.frame);
    sent.clear();
    return out;
  }
};

TEST_F(XlateFragments, LaterFragmentsFollowTheFirstToItsOwnerWorker) {
  ASSERT_NO_FATAL_FAILURE(start([](Config& c) {
    c.workers = 2;
    c.nat.capacity = 4096;  // two shards in the test's 256 MB
    c.lb.sticky_capacity = 4096;
    c.nat.snat.push_back(snat_rule());
  }));
  // An inside host whose SNAT connections live on the other worker than the one the address
  // pair (remote, pool address) hashes to.
  Tuple later;
  later.family = Family::kV4;
  later.proto = 17;
  later.src = v4("203.0.113.9");
  later.dst = v4("203.0.113.10");
  const uint16_t by_pair = uint16_t(FlowKey::from_tuple(later, nullptr).owner(2));
  int h = 0;
  while (h < 3 && inside_owner(v4(kHostIp[h]).as_v4(), 2) == by_pair) h++;
  ASSERT_LT(h, 3) << "no inside host owned by the other worker";
  const uint16_t owner = inside_owner(v4(kHostIp[h]).as_v4(), 2);

  ThreadCapture caps[2];
  for (int i = 0; i < 2; i++) {
    dp_->workers()[i]->set_tx_sink(&caps[i].sink);
    dp_->workers()[i]->set_now(100);
  }
  std::string err;
  ASSERT_TRUE(dp_->start(&err)) << err;
  auto inject = [&](const Bytes& whole, uint16_t port) {
    for (const Bytes& f : fragment(whole)) {
      rte_mbuf* m = rte_pktmbuf_alloc(dp_->pool());
      ASSERT_NE(m, nullptr);
      std::memcpy(rte_pktmbuf_append(m, uint16_t(f.size())), f.data(), f.size());
      m->port = port;
      ASSERT_TRUE(dp_->workers()[0]->inject(m));
    }
  };
  const Bytes q = pattern(2000, 11), r = pattern(2000, 12);
  inject(from_host(h).ipv4(kHostIp[h], "203.0.113.9").ip_id(51).udp(5000, 53).payload(q).build(), kIn);
  auto out = caps[owner].take(3);
  ASSERT_EQ(out.size(), 3u);
  const uint16_t p = sport_of(out[0]);
  inject(from_remote().ipv4("203.0.113.9", "203.0.113.10").ip_id(52).udp(53, p).payload(r).build(), kOut);
  auto back = caps[owner].take(3);
  dp_->stop();
  for (int i = 0; i < 2; i++) dp_->workers()[i]->set_tx_sink(nullptr);

  expect_fragments_of(out, to_remote().ipv4("203.0.113.10", "203.0.113.9").ttl(63).ip_id(51).udp(p, 53).payload(q).build());
  expect_fragments_of(back, to_host(h).ipv4("203.0.113.9", kHostIp[h]).ttl(63).ip_id(52).udp(53, 5000).payload(r).build());
  EXPECT_TRUE(caps[1 - owner].sent.empty());
  for (int i = 0; i < 2; i++) {
    const WorkerStats& s = dp_->workers()[i]->stats();
    EXPECT_EQ(s.dropped, 0u) << "worker " << i << ": fragment " << s.drops[int(DropReason::kFragment)]
                             << ", xlate_fragment " << s.drops[int(DropReason::kXlateFragment)];
  }
}

}  // namespace
}  // namespace baton
