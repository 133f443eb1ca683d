// SPDX-License-Identifier: Apache-2.0
//
// TcpTracker: the strict TCP state machine and sequence-window checks of connection tracking.
// Pure logic over a ConnEntry and the parsed TcpInfo; no DPDK, no clock, no counters.
//
// Theory of operation. The reference is Linux nf_conntrack_proto_tcp with tcp_be_liberal=0 and
// no loose pickup, itself built on Guido van Rooij's "Real Stateful TCP Packet Filtering in IP
// Filter". Each segment is handled in three steps:
//
//  1. Classify the flags into one of six kinds (SYN, SYN-ACK, FIN, ACK, RST, NONE). Anything
//     outside Linux's tcp_valid_flags (no flags, SYN+FIN, SYN+RST, FIN without ACK, ...) is
//     NONE, and NONE is invalid in every state.
//  2. Look up kTransitions[state][direction relative to the initiator][kind] (tcp_tracker.cc):
//     the next state, "invalid", "forward unchanged" or "reopen". The table is the whole state
//     machine; the code only adds guards that need sequence numbers (a FIN retransmission does
//     not advance the close, an ACK only moves FIN_WAIT/LAST_ACK on once it covers the FIN).
//  3. Check the segment against the window of its direction and, only if it passes, apply it.
//     Per direction TcpPeer keeps end (highest seq+len sent), maxend (highest seq+len the other
//     side's ack+window allows), maxwin (largest window advertised) and the window scale:
//       I.   seq + len  <= sender.maxend                       (not beyond the receiver's window)
//       II.  seq + len  >= sender.end - receiver.maxwin        (not older than a window)
//       III. ack        <= receiver.end                        (no ack of data never sent)
//       IV.  ack        >= receiver.end - MAXACKWINDOW(sender) (not a stale ack)
//     All comparisons are modulo 2^32 (tcpseq::before/after). Window scaling applies only once
//     both SYNs carried the option (RFC 7323 2.2) and never to a SYN's own window.
//
// RST (RFC 5961 3.2): an RST whose seq is exactly the sender's next sequence number closes the
// entry; one elsewhere in the receiver's window is forwarded but leaves the state alone, because
// an RFC 5961 endpoint answers it with a challenge ACK rather than resetting; any other RST is
// dropped as tcp_bad_rst. In SYN_SENT the responder's RST is acceptable only when it acknowledges
// the SYN (RFC 9293 3.10.7.3).
//
// Not supported, because the parser does not hand them over: SACK blocks (Linux takes the highest
// SACK edge as the ack for checks III/IV; here a SACK beyond the cumulative ack is not used) and
// timestamps (PAWS). Not supported, because a strict firewall should not need them: loose pickup
// of mid-stream connections, tcp_be_liberal, and Linux's "ignored packet" resynchronisation.
#pragma once

#include <cstdint>

#include "common/net_types.h"
#include "config/config.h"
#include "conntrack/conn_entry.h"
#include "dataplane/drop_reason.h"
#include "dataplane/packet_meta.h"

namespace baton {

// Sequence-space comparisons modulo 2^32 (RFC 9293 3.4): a is before b when b - a, as a signed
// 32-bit distance, is positive. Valid while the two are less than 2^31 apart.
namespace tcpseq {
constexpr bool before(uint32_t a, uint32_t b) { return static_cast<int32_t>(a - b) < 0; }
constexpr bool after(uint32_t a, uint32_t b) { return before(b, a); }
}  // namespace tcpseq

// What the flags of a segment make it, for the transition table.
enum class TcpSegKind : uint8_t { kSyn, kSynAck, kFin, kAck, kRst, kNone, kCount };

// `reason` means something only when !accept; accepted segments carry kNoDrop.
constexpr DropReason kNoDrop = DropReason::kCount;

struct TcpVerdict {
  bool accept;
  DropReason reason;
  bool state_changed;  // e.l4_state changed (including a reopen out of TIME_WAIT/CLOSE)
  // Four bytes, returned in one register built from the fields: at three, GCC assembled it
  // on the stack byte by byte and read it back as a word (a store-forwarding stall on every
  // track_table return, 18 % of its time in the new-connections profile).
  uint8_t pad = 0;
};
static_assert(sizeof(TcpVerdict) == 4);

class TcpTracker {
 public:
  // Linux MAXACKWINCONST: the ack lower bound (check IV) while the sender's window is unknown.
  static constexpr uint32_t kMaxAckWindowDefault = 66000;
  // RFC 7323 2.3: a shift above 14 is treated as 14.
  static constexpr uint8_t kMaxWscale = 14;

  explicit TcpTracker(const Timeouts& t) : timeouts_(t) {}

  static TcpSegKind classify(uint8_t flags);

  // May a segment with no connection entry create one? Only a SYN without ACK/RST/FIN: no loose
  // pickup (a mid-stream segment of an unknown connection is dropped as no_connection).
  static bool may_create(const TcpInfo& seg) { return classify(seg.flags) == TcpSegKind::kSyn; }

  // Initialises a fresh entry's TCP fields from the creating SYN sent in direction d: sets
  // kOrigIsHi when d == kHiToLo (clears it otherwise), state kSynSent, peer[d] from the SYN
  // (end, maxend, maxwin, wscale, kWscaleSeen/kSackPerm) and peer[opposite(d)] empty.
  void init(ConnEntry& e, Dir d, const TcpInfo& syn) const;

  // Checks one segment travelling in direction d against the entry and, if acceptable, applies
  // it (state and window tracking). When it rejects, e is left exactly as it was.
  //
  // Inline so that the common case costs no call: an ACK (PSH/ECE/CWR ignored, as in
  // classify()) in ESTABLISHED, whose table cell is ESTABLISHED from either side, goes through
  // established_ack(), the table path specialised to that cell; everything else goes through
  // the table. Both give the same verdict and the same entry (checked against each other
  // over random segments when the fast path was written).
  TcpVerdict track(ConnEntry& e, Dir d, const TcpInfo& seg) const {
    using namespace tcpflag;
    if (e.l4_state == static_cast<uint8_t>(TcpState::kEstablished) &&
        (seg.flags & (kFin | kSyn | kRst | kAck | kUrg)) == kAck) [[likely]]
      return established_ack(e, d, seg);
    return track_table(e, d, seg);
  }
  // The general path alone (what track() does for every segment but the fast-path one).
  TcpVerdict track_table(ConnEntry& e, Dir d, const TcpInfo& seg) const;

  // Idle timeout of an entry in state s, from the configured Timeouts.
  uint32_t timeout_s(TcpState s) const;

 private:
  // track_table() for kind ACK in ESTABLISHED (cell ESTABLISHED, no SYN, no FIN, ack present),
  // updating the entry in place: every rejection happens before the first store.
  static TcpVerdict established_ack(ConnEntry& e, Dir d, const TcpInfo& seg) {
    using tcpseq::after;
    using tcpseq::before;
    TcpPeer& s = e.peer[static_cast<int>(d)];
    TcpPeer& r = e.peer[static_cast<int>(opposite(d))];
    // Neither side seen yet cannot be ESTABLISHED through the table; an installed entry could.
    if (!(s.flags & r.flags & peerflag::kDataSeen)) [[unlikely]]
      return {false, DropReason::kTcpInvalid, false};
    const uint32_t end = seg.seq + seg.payload_len;  // no SYN, no FIN: data end == end
    const uint32_t ack = seg.ack;
    const uint32_t max_ack_win = s.maxwin ? s.maxwin : kMaxAckWindowDefault;
    if (after(end, s.maxend) || before(end, s.end - r.maxwin)  // I, II
        || after(ack, r.end) || before(ack, r.end - max_ack_win))  // III, IV
      return {false, DropReason::kTcpOutOfWindow, false};
    if ((s.flags & peerflag::kFinSent) && after(end, s.end)) [[unlikely]]
      return {false, DropReason::kTcpInvalid, false};
    const uint32_t win = static_cast<uint32_t>(seg.window) << s.wscale;
    if (win > s.maxwin) s.maxwin = win;
    if (after(end, s.end)) s.end = end;
    // (The table path's "end beyond maxend" widening cannot apply: check I excluded it.)
    if (!before(ack + win, r.maxend)) r.maxend = ack + win + (win == 0 ? 1 : 0);
    if ((r.flags & peerflag::kFinSent) && ack == r.end) r.flags |= peerflag::kFinAcked;
    return {true, kNoDrop, false};
  }

  Timeouts timeouts_;
};

}  // namespace baton
