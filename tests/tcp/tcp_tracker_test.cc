// SPDX-License-Identifier: Apache-2.0
//
// TcpTracker against fixture tables: {description, segments (who, flags, seq, ack, win, wscale,
// len) each with its expected verdict and the state after it, final state}. The first segment of
// every case is the creating SYN (may_create + init); the rest go through track(). The runner
// also checks, for every rejected segment, that the entry was left exactly as it was.
#include "conntrack/tcp_tracker.h"

#include <gtest/gtest.h>

#include <cstring>
#include <string>
#include <vector>

namespace baton {
namespace {

enum class Who { kInit, kResp };
constexpr Who I = Who::kInit, R = Who::kResp;

using namespace tcpflag;
constexpr uint8_t fS = kSyn, fSA = kSyn | kAck, fA = kAck, fPA = kPsh | kAck, fFA = kFin | kAck,
                  fR = kRst, fRA = kRst | kAck;
constexpr uint8_t kNo = 0xff;  // no window-scale option

constexpr DropReason kOk = kNoDrop, kInv = DropReason::kTcpInvalid,
                     kOow = DropReason::kTcpOutOfWindow, kBadRst = DropReason::kTcpBadRst;
constexpr TcpState SS = TcpState::kSynSent, S2 = TcpState::kSynSent2, SR = TcpState::kSynRecv,
                   ES = TcpState::kEstablished, FW = TcpState::kFinWait,
                   CW = TcpState::kCloseWait, LA = TcpState::kLastAck, TW = TcpState::kTimeWait,
                   CL = TcpState::kClose;

struct Seg {
  Who who;
  uint8_t flags;
  uint32_t seq, ack;
  uint16_t win;
  uint8_t wscale;
  uint16_t len;
  DropReason expect;  // kOk = accepted
  TcpState state;     // state after the segment
};

struct Case {
  const char* description;
  std::vector<Seg> segs;
  TcpState final_state;
};

TcpInfo info(const Seg& s) {
  TcpInfo t;
  t.seq = s.seq;
  t.ack = s.ack;
  t.window = s.win;
  t.flags = s.flags;
  t.wscale = s.wscale;
  t.payload_len = s.len;
  return t;
}

std::string verdict_name(DropReason r) { return r == kNoDrop ? "accept" : drop_reason_name(r); }
TcpState state_of(const ConnEntry& e) { return static_cast<TcpState>(e.l4_state); }
std::string sname(TcpState s) { return tcp_state_name(s); }

// Everything track() may write.
bool same_tcp(const ConnEntry& a, const ConnEntry& b) {
  return a.l4_state == b.l4_state && a.flags == b.flags &&
         std::memcmp(a.peer, b.peer, sizeof(a.peer)) == 0;
}

// Runs a case with the initiator sending in direction idir; returns the final entry.
ConnEntry run(const Case& c, Dir idir = Dir::kLoToHi) {
  SCOPED_TRACE(c.description);
  const TcpTracker t{Timeouts{}};
  ConnEntry e;
  for (size_t i = 0; i < c.segs.size(); ++i) {
    const Seg& s = c.segs[i];
    SCOPED_TRACE("segment " + std::to_string(i));
    const Dir d = s.who == I ? idir : opposite(idir);
    if (i == 0) {
      EXPECT_TRUE(TcpTracker::may_create(info(s)));
      t.init(e, d, info(s));
      EXPECT_EQ(e.orig_dir(), idir);
      EXPECT_EQ(sname(state_of(e)), sname(s.state));
      continue;
    }
    const ConnEntry before = e;
    const TcpVerdict v = t.track(e, d, info(s));
    EXPECT_EQ(verdict_name(v.accept ? kNoDrop : v.reason), verdict_name(s.expect));
    if (!v.accept) {
      EXPECT_TRUE(same_tcp(before, e)) << "a rejected segment modified the entry";
    }
    EXPECT_EQ(v.state_changed, before.l4_state != e.l4_state);
    EXPECT_EQ(sname(state_of(e)), sname(s.state));
  }
  EXPECT_EQ(sname(state_of(e)), sname(c.final_state));
  return e;
}

// Initiator ISN 1000, responder ISN 5000, no window scaling, 65535 windows.
#define HANDSHAKE                                 \
  {I, fS, 1000, 0, 65535, kNo, 0, kOk, SS},       \
      {R, fSA, 5000, 1001, 65535, kNo, 0, kOk, SR}, \
      {I, fA, 1001, 5001, 65535, kNo, 0, kOk, ES}

const Case kNormal = {
    "handshake, data both ways, FIN from the initiator, FIN from the responder, last ACK",
    {HANDSHAKE,
     {I, fPA, 1001, 5001, 65535, kNo, 100, kOk, ES},
     {R, fA, 5001, 1101, 65535, kNo, 0, kOk, ES},
     {R, fPA, 5001, 1101, 65535, kNo, 200, kOk, ES},
     {I, fA, 1101, 5201, 65535, kNo, 0, kOk, ES},
     {I, fFA, 1101, 5201, 65535, kNo, 0, kOk, FW},
     {R, fA, 5201, 1102, 65535, kNo, 0, kOk, CW},
     {R, fFA, 5201, 1102, 65535, kNo, 0, kOk, LA},
     {I, fA, 1102, 5202, 65535, kNo, 0, kOk, TW},
     {I, fA, 1102, 5202, 65535, kNo, 0, kOk, TW}},  // retransmitted last ACK
    TW};

TEST(TcpStateMachine, HandshakeDataAndClose) { run(kNormal); }

TEST(TcpStateMachine, InitiatorOnTheHiSideWorksAlike) {
  ConnEntry e = run(kNormal, Dir::kHiToLo);
  EXPECT_TRUE(e.flags & connflag::kOrigIsHi);
  EXPECT_EQ(e.peer[static_cast<int>(Dir::kHiToLo)].end, 1102u);
}

TEST(TcpStateMachine, SynRetransmitWithSameIsnIsAccepted) {
  run({"SYN sent twice with the same ISN, then the handshake completes",
       {{I, fS, 1000, 0, 65535, kNo, 0, kOk, SS},
        {I, fS, 1000, 0, 65535, kNo, 0, kOk, SS},
        {R, fSA, 5000, 1001, 65535, kNo, 0, kOk, SR},
        {I, fS, 1000, 0, 65535, kNo, 0, kOk, SR},  // SYN-ACK lost on the way back: forwarded
        {R, fSA, 5000, 1001, 65535, kNo, 0, kOk, SR},
        {I, fA, 1001, 5001, 65535, kNo, 0, kOk, ES}},
       ES});
}

TEST(TcpStateMachine, SynWithNewIsnInSynSentReinitialises) {
  run({"a second SYN with another ISN replaces the first; a SYN-ACK for the old one is stale",
       {{I, fS, 1000, 0, 65535, kNo, 0, kOk, SS},
        {I, fS, 7000, 0, 65535, kNo, 0, kOk, SS},
        {R, fSA, 5000, 1001, 65535, kNo, 0, kOow, SS},
        {R, fSA, 5000, 7001, 65535, kNo, 0, kOk, SR},
        {I, fA, 7001, 5001, 65535, kNo, 0, kOk, ES}},
       ES});
}

TEST(TcpStateMachine, SimultaneousOpen) {
  run({"both sides send SYN, then both SYN-ACK (RFC 9293 figure 7)",
       {{I, fS, 1000, 0, 65535, kNo, 0, kOk, SS},
        {R, fS, 5000, 0, 65535, kNo, 0, kOk, S2},
        {I, fSA, 1000, 5001, 65535, kNo, 0, kOk, SR},
        {R, fSA, 5000, 1001, 65535, kNo, 0, kOk, SR},
        {I, fA, 1001, 5001, 65535, kNo, 0, kOk, ES},
        {R, fPA, 5001, 1001, 65535, kNo, 10, kOk, ES},
        {I, fA, 1001, 5011, 65535, kNo, 0, kOk, ES}},
       ES});
}

TEST(TcpStateMachine, HalfCloseKeepsDataFlowingTheOtherWay) {
  run({"initiator closes; responder keeps sending until its own FIN",
       {HANDSHAKE,
        {I, fFA, 1001, 5001, 65535, kNo, 0, kOk, FW},
        {I, fFA, 1001, 5001, 65535, kNo, 0, kOk, FW},     // FIN retransmit: no progress
        {R, fPA, 5001, 1001, 65535, kNo, 100, kOk, FW},   // data not yet acking the FIN
        {I, fA, 1002, 5101, 65535, kNo, 0, kOk, FW},      // closer's own ACK: no progress
        {R, fPA, 5101, 1002, 65535, kNo, 400, kOk, CW},   // acks the FIN
        {I, fA, 1002, 5501, 65535, kNo, 0, kOk, CW},
        {I, fPA, 1002, 5501, 65535, kNo, 10, kInv, CW},   // data after its own FIN
        {R, fFA, 5501, 1002, 65535, kNo, 0, kOk, LA},
        {R, fFA, 5501, 1002, 65535, kNo, 0, kOk, LA},     // FIN retransmit
        {I, fA, 1002, 5502, 65535, kNo, 0, kOk, TW}},
       TW});
}

TEST(TcpStateMachine, SimultaneousCloseNeedsBothFinsAcked) {
  run({"both FINs cross; TIME_WAIT only after each has been acknowledged",
       {HANDSHAKE,
        {I, fFA, 1001, 5001, 65535, kNo, 0, kOk, FW},
        {R, fFA, 5001, 1001, 65535, kNo, 0, kOk, LA},
        {I, fA, 1002, 5002, 65535, kNo, 0, kOk, LA},
        {R, fA, 5002, 1002, 65535, kNo, 0, kOk, TW}},
       TW});
}

TEST(TcpRst, InWindowExactSeqCloses) {
  run({"RST at exactly the sender's next sequence number closes the entry",
       {HANDSHAKE,
        {I, fPA, 1001, 5001, 65535, kNo, 100, kOk, ES},
        {R, fRA, 5001, 1101, 0, kNo, 0, kOk, CL},
        {R, fR, 5001, 0, 0, kNo, 0, kOk, CL}},
       CL});
}

TEST(TcpRst, WrongSeqIsDroppedAndConnectionUnaffected) {
  run({"RSTs outside the window or with a bogus ack are dropped; in-window inexact ones "
       "are forwarded without closing (RFC 5961 challenge ACK)",
       {HANDSHAKE,
        {R, fR, 5001 + 200000, 0, 0, kNo, 0, kBadRst, ES},
        {R, fR, 5001u - 70000u, 0, 0, kNo, 0, kBadRst, ES},
        {R, fRA, 5001, 1001 + 5000, 0, kNo, 0, kBadRst, ES},  // acks data never sent
        {I, fPA, 1001, 5001, 65535, kNo, 100, kOk, ES},
        {R, fA, 5001, 1101, 65535, kNo, 0, kOk, ES},
        {R, fR, 5001 + 100, 0, 0, kNo, 0, kOk, ES},           // in window, not exact
        {R, fPA, 5001, 1101, 65535, kNo, 50, kOk, ES}},
       ES});
}

TEST(TcpRst, ResponderRefusingTheSynMustAckIt) {
  run({"RST+ACK answering a SYN closes only when it acknowledges the SYN",
       {{I, fS, 1000, 0, 65535, kNo, 0, kOk, SS},
        {R, fRA, 0, 1002, 0, kNo, 0, kBadRst, SS},
        {R, fR, 0, 0, 0, kNo, 0, kBadRst, SS},
        {R, fRA, 0, 1001, 0, kNo, 0, kOk, CL}},
       CL});
}

TEST(TcpRst, InitiatorResetOfTheResponderHalfOpenAckCloses) {
  run({"a responder still in TIME_WAIT on the tuple answers the SYN with a bare ACK of its old "
       "connection: forwarded unchanged; only the initiator's RST with seq = that ack closes, "
       "and the SYN retransmission then connects",
       {{I, fS, 1000, 0, 65535, kNo, 0, kOk, SS},
        {I, fR, 424242, 0, 0, kNo, 0, kBadRst, SS},  // no half-open ACK seen yet
        {R, fA, 777, 424242, 65535, kNo, 0, kOk, SS},
        {R, fA, 777, 424242, 65535, kNo, 0, kOk, SS},  // the ACK for a SYN retransmission
        {I, fR, 424243, 0, 0, kNo, 0, kBadRst, SS},
        {I, fR, 424242, 0, 0, kNo, 0, kOk, CL},
        {I, fS, 1000, 0, 65535, kNo, 0, kOk, SS},
        {R, fSA, 5000, 1001, 65535, kNo, 0, kOk, SR},
        {I, fA, 1001, 5001, 65535, kNo, 0, kOk, ES}},
       ES});
}

TEST(TcpFlags, InvalidCombinationsAreDropped) {
  run({"SYN+FIN, SYN+RST, no flags, FIN without ACK, data before the SYN-ACK",
       {{I, fS, 1000, 0, 65535, kNo, 0, kOk, SS},
        {I, fA, 1001, 5001, 65535, kNo, 0, kInv, SS},
        {R, fPA, 5001, 1001, 65535, kNo, 10, kInv, SS},
        {R, fSA, 5000, 1001, 65535, kNo, 0, kOk, SR},
        {I, fA, 1001, 5001, 65535, kNo, 0, kOk, ES},
        {I, kSyn | kFin, 1001, 0, 65535, kNo, 0, kInv, ES},
        {R, kSyn | kRst, 5001, 0, 65535, kNo, 0, kInv, ES},
        {I, 0, 1001, 0, 65535, kNo, 0, kInv, ES},
        {I, kFin, 1001, 0, 65535, kNo, 0, kInv, ES},
        {I, kFin | kPsh | kUrg, 1001, 0, 65535, kNo, 0, kInv, ES},
        {I, kRst | kFin, 1001, 0, 65535, kNo, 0, kInv, ES},
        {I, fPA | kEce | kCwr, 1001, 5001, 65535, kNo, 10, kOk, ES}},
       ES});
}

TEST(TcpStateMachine, SynInEstablishedIsForwardedWithoutChange) {
  // RFC 5961 4.2: the endpoint answers with a challenge ACK; the entry must not move.
  ConnEntry e = run({"handshake", {HANDSHAKE}, ES});
  const ConnEntry before = e;
  const TcpTracker t{Timeouts{}};
  TcpInfo syn;
  syn.seq = 123456789;
  syn.flags = kSyn;
  syn.window = 1024;
  TcpVerdict v = t.track(e, Dir::kLoToHi, syn);
  EXPECT_TRUE(v.accept);
  EXPECT_FALSE(v.state_changed);
  EXPECT_TRUE(same_tcp(before, e));
}

// Both sides offer scale 7; the responder then advertises 1000 << 7 = 128000 bytes from ack 1001,
// so the initiator may send up to 129001.
#define SCALED_HANDSHAKE                            \
  {I, fS, 1000, 0, 65535, 7, 0, kOk, SS},           \
      {R, fSA, 5000, 1001, 65535, 7, 0, kOk, SR},   \
      {I, fA, 1001, 5001, 1024, kNo, 0, kOk, ES},   \
      {R, fA, 5001, 1001, 1000, kNo, 0, kOk, ES}

TEST(TcpWindow, RejectsSegmentBeyondScaledWindow) {
  run({"a segment ending one byte past ack + (win << wscale) is out of window",
       {SCALED_HANDSHAKE,
        {I, fPA, 128002, 5001, 1024, kNo, 1000, kOow, ES},
        {I, fPA, 1001, 5001, 1024, kNo, 1000, kOk, ES}},
       ES});
}

TEST(TcpWindow, AcceptsSegmentEndingExactlyAtWindowEdge) {
  run({"a segment ending exactly at ack + (win << wscale) is in window",
       {SCALED_HANDSHAKE, {I, fPA, 128001, 5001, 1024, kNo, 1000, kOk, ES}}, ES});
}

TEST(TcpWindow, ScaleAppliesOnlyWhenBothSidesOffer) {
  ConnEntry both = run({"both offer: 1000 << 7 allows a segment ending at 100100",
                        {SCALED_HANDSHAKE, {I, fPA, 100000, 5001, 1024, kNo, 100, kOk, ES}},
                        ES});
  EXPECT_EQ(both.peer[0].wscale, 7);
  EXPECT_EQ(both.peer[1].wscale, 7);

  ConnEntry one = run({"only the initiator offers: windows stay unscaled (RFC 7323 2.2)",
                       {{I, fS, 1000, 0, 65535, 7, 0, kOk, SS},
                        {R, fSA, 5000, 1001, 65535, kNo, 0, kOk, SR},
                        {I, fA, 1001, 5001, 1024, kNo, 0, kOk, ES},
                        {R, fA, 5001, 1001, 1000, kNo, 0, kOk, ES},
                        {I, fPA, 100000, 5001, 1024, kNo, 100, kOow, ES},
                        // the SYN-ACK's own 65535 (never scaled) is the limit: 1001 + 65535
                        {I, fPA, 66436, 5001, 1024, kNo, 100, kOk, ES},
                        {I, fPA, 66437, 5001, 1024, kNo, 100, kOow, ES}},
                       ES});
  EXPECT_EQ(one.peer[0].wscale, 0);
  EXPECT_EQ(one.peer[1].wscale, 0);
  EXPECT_EQ(one.peer[1].maxwin, 65535u);  // 1000 unscaled never beat the SYN-ACK's window
}

TEST(TcpWindow, SequenceWrapsAround2To32MidStream) {
  run({"initiator ISN just below 2^32; data crosses zero; an old segment from before is rejected",
       {{I, fS, 0xFFFFFF00u, 0, 65535, kNo, 0, kOk, SS},
        {R, fSA, 5000, 0xFFFFFF01u, 65535, kNo, 0, kOk, SR},
        {I, fA, 0xFFFFFF01u, 5001, 65535, kNo, 0, kOk, ES},
        {I, fPA, 0xFFFFFF01u, 5001, 65535, kNo, 1000, kOk, ES},   // ends at 0x2E9
        {R, fA, 5001, 0x2E9, 65535, kNo, 0, kOk, ES},
        {I, fPA, 0x2E9, 5001, 65535, kNo, 1000, kOk, ES},
        {R, fA, 5001, 0x6D1, 65535, kNo, 0, kOk, ES},
        {I, fPA, 0xFFFFFF01u, 5001, 65535, kNo, 1000, kOk, ES},   // retransmission: fine
        {I, fPA, 0xFFFF0000u, 5001, 65535, kNo, 10, kOow, ES},    // a window too old
        {R, fA, 5001, 0x6D2, 65535, kNo, 0, kOow, ES}},           // acks one byte never sent
       ES});
}

TEST(TcpWindow, AckOfDataNeverSentIsRejected) {
  run({"acks beyond what the other side sent, or older than its window, are dropped",
       {HANDSHAKE,
        {I, fPA, 1001, 5001, 65535, kNo, 100, kOk, ES},
        {R, fA, 5001, 1102, 65535, kNo, 0, kOow, ES},
        {R, fA, 5001, 1101, 65535, kNo, 0, kOk, ES},
        {I, fA, 1101, 5002, 65535, kNo, 0, kOow, ES},
        {I, fA, 1101, 5001u - 70000u, 65535, kNo, 0, kOow, ES}},
       ES});
}

TEST(TcpWindow, ZeroWindowAllowsOneByteProbe) {
  run({"receiver closes its window; a one-byte probe passes, two bytes do not",
       {HANDSHAKE,
        {I, fPA, 1001, 5001, 65535, kNo, 65535, kOk, ES},
        {R, fA, 5001, 66536, 0, kNo, 0, kOk, ES},
        {I, fPA, 66536, 5001, 65535, kNo, 2, kOow, ES},
        {I, fPA, 66536, 5001, 65535, kNo, 1, kOk, ES}},
       ES});
}

TEST(TcpStateMachine, TimeWaitReusedByNewSynFromInitiator) {
  std::vector<Seg> segs = kNormal.segs;
  segs.push_back({R, fS, 9000, 0, 65535, kNo, 0, kInv, TW});  // responder may not reopen
  segs.push_back({I, fS, 90000, 0, 65535, kNo, 0, kOk, SS});
  segs.push_back({R, fSA, 9000, 90001, 65535, kNo, 0, kOk, SR});
  segs.push_back({I, fA, 90001, 9001, 65535, kNo, 0, kOk, ES});
  segs.push_back({I, fPA, 90001, 9001, 65535, kNo, 10, kOk, ES});
  ConnEntry e = run({"port reuse: a SYN from the initiator in TIME_WAIT starts afresh", segs, ES});
  EXPECT_FALSE(e.peer[0].flags & peerflag::kFinSent);
  EXPECT_FALSE(e.peer[1].flags & peerflag::kFinSent);
}

TEST(TcpNoPickup, MidStreamSegmentsCannotCreate) {
  TcpInfo t;
  for (uint8_t f : {fA, fPA, fSA, fFA, fR, fRA, uint8_t(kSyn | kFin), uint8_t(kSyn | kRst),
                    uint8_t(0)}) {
    t.flags = f;
    EXPECT_FALSE(TcpTracker::may_create(t)) << "flags " << int(f);
  }
  t.flags = kSyn;
  EXPECT_TRUE(TcpTracker::may_create(t));
  t.flags = kSyn | kEce | kCwr;  // ECN-setup SYN (RFC 3168 6.1.1)
  EXPECT_TRUE(TcpTracker::may_create(t));
}

TEST(TcpTracker, InitRecordsTheSynOptions) {
  const TcpTracker t{Timeouts{}};
  ConnEntry e;
  e.flags = connflag::kOrigIsHi | connflag::kPending;
  TcpInfo syn;
  syn.flags = kSyn;
  syn.seq = 41;
  syn.window = 0;
  syn.wscale = 20;  // clamped to 14 (RFC 7323 2.3)
  syn.sack_permitted = true;
  t.init(e, Dir::kLoToHi, syn);
  EXPECT_EQ(e.orig_dir(), Dir::kLoToHi);
  EXPECT_TRUE(e.flags & connflag::kPending);  // other bits untouched
  const TcpPeer& p = e.peer[0];
  EXPECT_EQ(p.end, 42u);
  EXPECT_EQ(p.maxend, 42u);
  EXPECT_EQ(p.maxwin, 1u);
  EXPECT_EQ(p.wscale, 14);
  EXPECT_EQ(p.flags, peerflag::kDataSeen | peerflag::kWscaleSeen | peerflag::kSackPerm);
  EXPECT_EQ(e.peer[1].flags, 0);
}

TEST(TcpTracker, TimeoutsComeFromConfig) {
  Timeouts to;
  to.tcp_syn_sent = 1; to.tcp_syn_recv = 2; to.tcp_established = 3; to.tcp_fin_wait = 4;
  to.tcp_close_wait = 5; to.tcp_last_ack = 6; to.tcp_time_wait = 7; to.tcp_close = 8;
  const TcpTracker t{to};
  EXPECT_EQ(t.timeout_s(SS), 1u);
  EXPECT_EQ(t.timeout_s(S2), 1u);
  EXPECT_EQ(t.timeout_s(SR), 2u);
  EXPECT_EQ(t.timeout_s(ES), 3u);
  EXPECT_EQ(t.timeout_s(FW), 4u);
  EXPECT_EQ(t.timeout_s(CW), 5u);
  EXPECT_EQ(t.timeout_s(LA), 6u);
  EXPECT_EQ(t.timeout_s(TW), 7u);
  EXPECT_EQ(t.timeout_s(CL), 8u);
}

TEST(TcpSeq, BeforeAndAfterWrap) {
  EXPECT_TRUE(tcpseq::before(0xFFFFFFF0u, 0x10u));
  EXPECT_TRUE(tcpseq::after(0x10u, 0xFFFFFFF0u));
  EXPECT_FALSE(tcpseq::before(5u, 5u));
  EXPECT_FALSE(tcpseq::after(5u, 5u));
  EXPECT_TRUE(tcpseq::before(1u, 2u));
}

// The seed's example (000 section 5.1): a snapshot of the entry taken when the VM's next seq was
// 99, while the VM went on to send up to 110. What the window algorithm really implies:
//  - the VM's own next segment (seq 110) is still inside the window the snapshot knew, so the
//    stale copy accepts it: the sender-side check alone does not expose a small staleness;
//  - the peer's ACK of 110 acknowledges data the snapshot never saw sent (check III): rejected;
//  - after a transfer larger than the window, the VM's segments lie beyond the snapshot's maxend
//    (check I): rejected. The live entry accepts all of them.
TEST(TcpWindow, StaleSnapshotRejectsWhatItNeverSaw) {
  const TcpTracker t{Timeouts{}};
  const Dir vm = Dir::kLoToHi, peer = Dir::kHiToLo;
  auto seg = [](uint8_t flags, uint32_t seq, uint32_t ack, uint16_t len) {
    TcpInfo s;
    s.flags = flags; s.seq = seq; s.ack = ack; s.window = 65535; s.payload_len = len;
    return s;
  };
  ConnEntry live;
  t.init(live, vm, seg(kSyn, 98, 0, 0));
  ASSERT_TRUE(t.track(live, peer, seg(fSA, 5000, 99, 0)).accept);
  ASSERT_TRUE(t.track(live, vm, seg(fA, 99, 5001, 0)).accept);
  const ConnEntry snapshot = live;  // VM's next seq is 99

  ASSERT_TRUE(t.track(live, vm, seg(fPA, 99, 5001, 11)).accept);  // VM went on to 110
  ASSERT_TRUE(t.track(live, peer, seg(fA, 5001, 110, 0)).accept);

  ConnEntry stale = snapshot;
  EXPECT_TRUE(t.track(stale, vm, seg(fPA, 110, 5001, 10)).accept);  // still in its window
  stale = snapshot;
  TcpVerdict v = t.track(stale, peer, seg(fA, 5001, 110, 0));
  EXPECT_FALSE(v.accept);
  EXPECT_EQ(verdict_name(v.reason), verdict_name(kOow));
  EXPECT_TRUE(same_tcp(stale, snapshot));
  EXPECT_TRUE(t.track(live, vm, seg(fPA, 110, 5001, 10)).accept);
  EXPECT_TRUE(t.track(live, peer, seg(fA, 5001, 120, 0)).accept);

  // A transfer of 100 x 1400 bytes, each acknowledged: far more than the 65535-byte window.
  uint32_t next = 120;
  for (int i = 0; i < 100; ++i) {
    ASSERT_TRUE(t.track(live, vm, seg(fPA, next, 5001, 1400)).accept);
    next += 1400;
    ASSERT_TRUE(t.track(live, peer, seg(fA, 5001, next, 0)).accept);
  }
  EXPECT_TRUE(t.track(live, vm, seg(fPA, next, 5001, 1400)).accept);
  stale = snapshot;
  v = t.track(stale, vm, seg(fPA, next, 5001, 1400));
  EXPECT_FALSE(v.accept);
  EXPECT_EQ(verdict_name(v.reason), verdict_name(kOow));
  EXPECT_TRUE(same_tcp(stale, snapshot));
}

}  // namespace
}  // namespace baton
