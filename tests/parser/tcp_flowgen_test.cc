// SPDX-License-Identifier: Apache-2.0
//
// The flow generator produces conversations the parser accepts, in which every segment's seq is
// the sender's next seq and every ack is the other side's next seq: what the strict TCP tracker
// will demand.
#include "pktgen/tcp_flowgen.h"

#include <gtest/gtest.h>

#include <array>
#include <map>
#include <optional>
#include <set>

#include "dataplane/parser.h"

namespace baton::pktgen {
namespace {

// Follows both ends of every flow from the parsed packets and checks seq/ack continuity.
class SeqChecker {
 public:
  explicit SeqChecker(const TcpFlowgen& gen) : gen_(gen) {}

  void check(const GenPacket& g) {
    PacketMeta m;
    DropReason r;
    ASSERT_TRUE(parse_packet(g.bytes.data(), uint32_t(g.bytes.size()), &m, &r))
        << drop_reason_name(r);
    ASSERT_TRUE(l4_checksum_ok(g.bytes));
    EXPECT_EQ(m.tuple, gen_.tuple(g.flow, g.from));
    EXPECT_EQ(m.tcp.seq, g.seq);
    EXPECT_EQ(m.tcp.ack, g.ack);
    EXPECT_EQ(m.tcp.flags, g.flags);
    EXPECT_EQ(m.tcp.payload_len, g.payload_len);
    auto& ends = next_[g.flow];
    int me = int(g.from), peer = 1 - me;
    if (m.tcp.flags & tcpflag::kSyn) {
      EXPECT_FALSE(ends[me].has_value()) << "second SYN on flow " << g.flow;
      EXPECT_NE(m.tcp.wscale, 0xff);
      EXPECT_NE(m.tcp.mss, 0);
      EXPECT_TRUE(m.tcp.sack_permitted);
      ends[me] = m.tcp.seq;
    } else {
      ASSERT_TRUE(ends[me].has_value()) << "data before SYN on flow " << g.flow;
      EXPECT_EQ(m.tcp.seq, *ends[me]) << "flow " << g.flow;
      // RFC 7323 2.2: after the handshake the window is scaled, and covers the configured buffer.
      EXPECT_EQ(uint32_t(m.tcp.window) << gen_.config().wscale, gen_.config().rcv_window);
    }
    if (m.tcp.flags & tcpflag::kAck) {
      ASSERT_TRUE(ends[peer].has_value());
      EXPECT_EQ(m.tcp.ack, *ends[peer]) << "flow " << g.flow;
    }
    uint32_t len = m.tcp.payload_len + ((m.tcp.flags & tcpflag::kSyn) ? 1 : 0) +
                   ((m.tcp.flags & tcpflag::kFin) ? 1 : 0);
    *ends[me] += len;
    if (m.tcp.flags & tcpflag::kFin) ++fins_[g.flow];
  }
  size_t closed_flows() const {
    size_t n = 0;
    for (auto& [f, c] : fins_) n += c == 2;
    return n;
  }

 private:
  const TcpFlowgen& gen_;
  std::map<uint32_t, std::array<std::optional<uint32_t>, 2>> next_;
  std::map<uint32_t, int> fins_;
};

TEST(TcpFlowgen, ConversationIsWellFormedWithConsistentSeqAndAck) {
  FlowgenConfig cfg;
  cfg.flows = 50;
  cfg.data_segments = 3;
  TcpFlowgen gen(cfg);
  auto pkts = gen.conversation();
  ASSERT_EQ(pkts.size(), 50u * (3 + 2 * 3 + 3));
  SeqChecker check(gen);
  for (const auto& g : pkts) {
    check.check(g);
    if (::testing::Test::HasFatalFailure()) return;
  }
  EXPECT_EQ(check.closed_flows(), 50u);
  GenPacket extra;
  EXPECT_FALSE(gen.next(&extra));
}

TEST(TcpFlowgen, FlowsAreInterleavedButEachKeepsItsScriptOrder) {
  FlowgenConfig cfg;
  cfg.flows = 8;
  TcpFlowgen gen(cfg);
  auto pkts = gen.conversation();
  std::set<uint32_t> first_ten;
  for (size_t i = 0; i < 10; ++i) first_ten.insert(pkts[i].flow);
  EXPECT_GT(first_ten.size(), 2u);
  std::map<uint32_t, std::vector<uint8_t>> flags;
  for (const auto& g : pkts) flags[g.flow].push_back(g.flags);
  for (const auto& [flow, f] : flags) {
    ASSERT_EQ(f.size(), 3u + 2 * cfg.data_segments + 3);
    EXPECT_EQ(f[0], tcpflag::kSyn);
    EXPECT_EQ(f[1], tcpflag::kSyn | tcpflag::kAck);
    EXPECT_EQ(f.back(), tcpflag::kAck);
    EXPECT_EQ(f[f.size() - 2], tcpflag::kFin | tcpflag::kAck);
  }
}

TEST(TcpFlowgen, SameSeedSameBytesOtherSeedOtherBytes) {
  FlowgenConfig cfg;
  cfg.flows = 5;
  auto a = TcpFlowgen(cfg).conversation();
  auto b = TcpFlowgen(cfg).conversation();
  cfg.seed = 2;
  auto c = TcpFlowgen(cfg).conversation();
  ASSERT_EQ(a.size(), b.size());
  bool differs = false;
  for (size_t i = 0; i < a.size(); ++i) {
    EXPECT_EQ(a[i].bytes, b[i].bytes);
    differs |= a[i].bytes != c[i].bytes;
  }
  EXPECT_TRUE(differs);
}

TEST(TcpFlowgen, EveryFlowHasItsOwnTuple) {
  FlowgenConfig cfg;
  cfg.flows = 1000;
  cfg.clients = 7;
  cfg.servers = 3;
  TcpFlowgen gen(cfg);
  std::set<std::pair<std::array<uint8_t, 16>, uint16_t>> clients;
  for (uint32_t i = 0; i < gen.flow_count(); ++i) {
    Tuple t = gen.tuple(i, Side::kClient);
    clients.insert({t.src.b, t.sport.host()});
    EXPECT_EQ(t.dport.host(), 80);
    EXPECT_EQ(gen.tuple(i, Side::kServer), t.reverse());
  }
  EXPECT_EQ(clients.size(), 1000u);
}

TEST(TcpFlowgen, PhasesGiveHandshakesThenOnlyDataThenTeardowns) {
  FlowgenConfig cfg;
  cfg.flows = 10;
  cfg.vlan = 42;
  cfg.ipv6 = true;
  TcpFlowgen gen(cfg);
  SeqChecker check(gen);
  auto hs = gen.handshakes();
  ASSERT_EQ(hs.size(), 30u);
  for (const auto& g : hs) check.check(g);
  // More data than the script's data_segments: a benchmark's steady state.
  auto data = gen.established(1000);
  ASSERT_EQ(data.size(), 1000u);
  for (const auto& g : data) {
    EXPECT_EQ(g.flags, tcpflag::kPsh | tcpflag::kAck);
    EXPECT_EQ(g.payload_len, cfg.segment_size);
    check.check(g);
  }
  auto td = gen.teardowns();
  ASSERT_EQ(td.size(), 30u);
  for (const auto& g : td) check.check(g);
  EXPECT_EQ(check.closed_flows(), 10u);
  EXPECT_TRUE(gen.established(5).empty());
  GenPacket g;
  EXPECT_FALSE(gen.next(&g));
}

TEST(TcpFlowgen, EstablishedIsEmptyBeforeAnyHandshake) {
  TcpFlowgen gen(FlowgenConfig{});
  EXPECT_TRUE(gen.established(10).empty());
}

TEST(TcpFlowgen, WrongSeqShiftsOnlyTheSeqAndDoesNotAdvanceTheFlow) {
  FlowgenConfig cfg;
  cfg.flows = 2;
  TcpFlowgen gen(cfg);
  gen.handshakes();
  uint32_t next = gen.flow(1).end[int(Side::kServer)].snd_nxt;
  GenPacket bad = gen.wrong_seq(1, Side::kServer, -100000, tcpflag::kRst | tcpflag::kAck);
  PacketMeta m;
  DropReason r;
  ASSERT_TRUE(parse_packet(bad.bytes.data(), uint32_t(bad.bytes.size()), &m, &r));
  EXPECT_EQ(m.tcp.seq, next - 100000);
  EXPECT_EQ(m.tcp.ack, gen.flow(1).end[int(Side::kClient)].snd_nxt);
  EXPECT_EQ(m.tcp.flags, tcpflag::kRst | tcpflag::kAck);
  EXPECT_EQ(gen.flow(1).end[int(Side::kServer)].snd_nxt, next);
  EXPECT_TRUE(l4_checksum_ok(bad.bytes));
}

}  // namespace
}  // namespace baton::pktgen
