// SPDX-License-Identifier: Apache-2.0
#include "conntrack/tcp_tracker.h"

#include <algorithm>

namespace baton {
namespace {

using tcpseq::after;
using tcpseq::before;

constexpr uint8_t st(TcpState s) { return static_cast<uint8_t>(s); }

// Cells of the transition table: a next state, or one of three actions.
constexpr uint8_t sNO = st(TcpState::kNone), sSS = st(TcpState::kSynSent),
                  sS2 = st(TcpState::kSynSent2), sSR = st(TcpState::kSynRecv),
                  sES = st(TcpState::kEstablished), sFW = st(TcpState::kFinWait),
                  sCW = st(TcpState::kCloseWait), sLA = st(TcpState::kLastAck),
                  sTW = st(TcpState::kTimeWait), sCL = st(TcpState::kClose);
constexpr uint8_t sIV = 0xf0;  // invalid: drop as tcp_invalid, entry untouched
constexpr uint8_t sIG = 0xf1;  // forward unchanged: no window check, no update (see below)
constexpr uint8_t sRO = 0xf2;  // (re)open: rebuild the entry from this SYN, state SYN_SENT
constexpr uint8_t sHO = 0xf3;  // half-open: the responder's bare ACK in SYN_SENT (see below)

constexpr int kStates = static_cast<int>(TcpState::kCount);
constexpr int kKinds = static_cast<int>(TcpSegKind::kCount);
constexpr int kFromInitiator = 0, kFromResponder = 1;

// kTransitions[state][who sends][segment kind] -> next state or action. Modelled on Linux's
// tcp_conntracks[] (which is [dir][kind][state]); the differences are deliberate and strict:
//  - NONE is never a live state: entries are created by init() from a SYN (no loose pickup).
//  - An initiator SYN in SYN_SENT rebuilds the initiator's side (sRO): a retransmission with the
//    same ISN gives the same state, a new ISN restarts the attempt (RFC 9293 3.10.7.3).
//  - A SYN without ACK in a synchronised state is forwarded unchanged (sIG), not dropped: RFC 5961
//    4.2 has the endpoint answer it with a challenge ACK, and the RST that ACK provokes (exact
//    seq) is what closes a stale entry when a client reconnects from the same port. It can never
//    change the entry.
//  - Only the initiator may reopen TIME_WAIT/CLOSE in place (RFC 1122 4.2.2.13 port reuse). A
//    SYN from the responder would be a connection in the other direction, which the ACL must
//    judge afresh, so it is refused until the entry ages out.
//  - The responder's bare ACK before its SYN-ACK (sHO; Linux sIG, "half-open") is forwarded
//    unchanged and its ack remembered. A responder answers a SYN so when it still holds an older
//    connection on the tuple (its TIME_WAIT: a client that reuses its port towards another VIP
//    which picks the same backend); the initiator then resets it with seq = that ack (RFC 9293
//    3.10.7.3), that RST (and only one so exact) is accepted and clears the responder's
//    TIME_WAIT, and the initiator's next SYN connects. Dropping the ACK left the client
//    retrying into the same TIME_WAIT until it gave up. An ACK carrying data is refused: without
//    a SYN from that side there is no window to check it against.
//  - The ACK moves FIN_WAIT->CLOSE_WAIT and LAST_ACK->TIME_WAIT only once it covers the FIN(s),
//    and a retransmitted FIN does not advance the close (guards in track()); Linux moves on any.
constexpr uint8_t kTransitions[kStates][2][kKinds] = {
    //           ------------ initiator sends -----------   ------------ responder sends -----------
    //           SYN  SYNACK FIN  ACK  RST  NONE             SYN  SYNACK FIN  ACK  RST  NONE
    /* NONE   */ {{sIV, sIV, sIV, sIV, sIV, sIV},            {sIV, sIV, sIV, sIV, sIV, sIV}},
    /* SS     */ {{sRO, sIV, sIV, sIV, sCL, sIV},            {sS2, sSR, sIV, sHO, sCL, sIV}},
    /* SS2    */ {{sS2, sSR, sIV, sIV, sCL, sIV},            {sS2, sSR, sIV, sIV, sCL, sIV}},
    /* SR     */ {{sIG, sSR, sFW, sES, sCL, sIV},            {sIG, sSR, sFW, sSR, sCL, sIV}},
    /* ES     */ {{sIG, sIV, sFW, sES, sCL, sIV},            {sIG, sES, sFW, sES, sCL, sIV}},
    /* FW     */ {{sIG, sIV, sLA, sCW, sCL, sIV},            {sIG, sFW, sLA, sCW, sCL, sIV}},
    /* CW     */ {{sIG, sIV, sLA, sCW, sCL, sIV},            {sIG, sCW, sLA, sCW, sCL, sIV}},
    /* LA     */ {{sIG, sIV, sLA, sTW, sCL, sIV},            {sIG, sLA, sLA, sTW, sCL, sIV}},
    /* TW     */ {{sRO, sIV, sTW, sTW, sCL, sIV},            {sIV, sIV, sTW, sTW, sCL, sIV}},
    /* CLOSE  */ {{sRO, sIV, sCL, sCL, sCL, sIV},            {sIV, sIV, sCL, sCL, sCL, sIV}},
};
static_assert(sNO == 0 && sCL + 1 == kStates, "table rows follow TcpState");

TcpVerdict reject(DropReason r) { return {false, r, false}; }
TcpVerdict accept(bool changed) { return {true, kNoDrop, changed}; }

bool seen(const TcpPeer& p) { return p.flags & peerflag::kDataSeen; }

// A side's window tracking as its SYN (or SYN-ACK) starts it.
TcpPeer peer_from_syn(const TcpInfo& syn) {
  TcpPeer p;
  p.end = p.maxend = syn.seq + 1 + syn.payload_len;  // the SYN occupies one sequence number
  p.maxwin = syn.window ? syn.window : 1;              // a SYN's window is never scaled
  p.flags = peerflag::kDataSeen;
  if (syn.wscale != 0xff) {
    p.wscale = std::min(syn.wscale, TcpTracker::kMaxWscale);
    p.flags |= peerflag::kWscaleSeen;
  }
  if (syn.sack_permitted) p.flags |= peerflag::kSackPerm;
  return p;
}

// Checks III and IV: the ack covers nothing the receiver did not send, and is not older than
// the sender's largest window (Linux MAXACKWINDOW).
bool ack_ok(uint32_t ack, const TcpPeer& sender, const TcpPeer& receiver) {
  uint32_t max_ack_win = sender.maxwin ? sender.maxwin : TcpTracker::kMaxAckWindowDefault;
  return !after(ack, receiver.end) && !before(ack, receiver.end - max_ack_win);
}

}  // namespace

const char* tcp_state_name(TcpState s) {
  static const char* const kNames[] = {"none",      "syn_sent",   "syn_sent2", "syn_recv",
                                       "established", "fin_wait", "close_wait", "last_ack",
                                       "time_wait", "close"};
  static_assert(sizeof(kNames) / sizeof(kNames[0]) == kStates);
  auto i = static_cast<int>(s);
  return i < kStates ? kNames[i] : "invalid";
}

TcpSegKind TcpTracker::classify(uint8_t flags) {
  using namespace tcpflag;
  // Linux tcp_valid_flags: PSH, ECE and CWR do not matter; every other combination is invalid.
  switch (flags & (kFin | kSyn | kRst | kAck | kUrg)) {
    case kSyn:
    case kSyn | kUrg:
      return TcpSegKind::kSyn;
    case kSyn | kAck:
      return TcpSegKind::kSynAck;
    case kRst:
    case kRst | kAck:
      return TcpSegKind::kRst;
    case kFin | kAck:
    case kFin | kAck | kUrg:
      return TcpSegKind::kFin;
    case kAck:
    case kAck | kUrg:
      return TcpSegKind::kAck;
    default:
      return TcpSegKind::kNone;
  }
}

void TcpTracker::init(ConnEntry& e, Dir d, const TcpInfo& syn) const {
  e.l4_state = st(TcpState::kSynSent);
  if (d == Dir::kHiToLo)
    e.flags |= connflag::kOrigIsHi;
  else
    e.flags &= static_cast<uint8_t>(~connflag::kOrigIsHi);
  e.peer[static_cast<int>(d)] = peer_from_syn(syn);
  e.peer[static_cast<int>(opposite(d))] = TcpPeer{};
}

TcpVerdict TcpTracker::track_table(ConnEntry& e, Dir d, const TcpInfo& seg) const {
  if (e.l4_state >= kStates) return reject(DropReason::kTcpInvalid);
  const auto state = static_cast<TcpState>(e.l4_state);
  const TcpSegKind kind = classify(seg.flags);
  const int who = d == e.orig_dir() ? kFromInitiator : kFromResponder;
  const uint8_t cell = kTransitions[e.l4_state][who][static_cast<int>(kind)];

  if (cell == sIV) return reject(DropReason::kTcpInvalid);
  if (cell == sIG) return accept(false);
  if (cell == sRO) {
    init(e, d, seg);
    return accept(state != TcpState::kSynSent);
  }
  if (cell == sHO) {
    if (seg.payload_len) return reject(DropReason::kTcpInvalid);
    TcpPeer& responder = e.peer[static_cast<int>(d)];
    responder.end = seg.ack;
    responder.half_open_ack = 1;
    return accept(false);
  }

  // Updated in place: everything that can reject comes before the first store, except for a
  // side's first segment, whose start is undone on a reject (a rejected segment leaves e as
  // it was). Working on copies instead cost GCC a spill of every field (about 250 instructions
  // a segment in the new-connections benchmark).
  TcpPeer& s = e.peer[static_cast<int>(d)];
  TcpPeer& r = e.peer[static_cast<int>(opposite(d))];
  const bool has_ack = seg.flags & tcpflag::kAck;

  if (kind == TcpSegKind::kRst) {
    if (!seen(s)) {
      // The responder before its SYN-ACK: RFC 9293 3.10.7.3, an RST in SYN-SENT is acceptable
      // only if it acknowledges the SYN (its seq is usually 0 and says nothing).
      if (!has_ack || seg.ack != r.end) return reject(DropReason::kTcpBadRst);
    } else if (!seen(r) && r.half_open_ack && seg.seq == r.end) {
      // The initiator's answer to the responder's half-open ACK (sHO above): closes.
    } else {
      // ack 0 on RST+ACK: stacks that set ACK without an ack number (Linux tolerates them too).
      if (has_ack && seg.ack != 0 && seen(r) && !ack_ok(seg.ack, s, r))
        return reject(DropReason::kTcpBadRst);
      if (seg.seq != s.end) {
        // RFC 5961 3.2: in the window but not exact -> the endpoint sends a challenge ACK and
        // keeps the connection, so we forward it and keep the entry as it is.
        bool in_window = seen(r) && !before(seg.seq, s.end - r.maxwin) && !after(seg.seq, s.maxend);
        return in_window ? accept(false) : reject(DropReason::kTcpBadRst);
      }
    }
    const bool changed = cell != e.l4_state;
    e.l4_state = cell;
    return accept(changed);
  }

  const bool is_syn = kind == TcpSegKind::kSyn || kind == TcpSegKind::kSynAck;
  TcpPeer undo_s, undo_r;  // the two sides before a first segment started s
  bool started = false;
  if (!seen(s)) {
    // The responder's first segment: its SYN-ACK, or its SYN in a simultaneous open (the table
    // lets nothing else through in SYN_SENT).
    if (!is_syn) return reject(DropReason::kTcpInvalid);
    // RFC 9293 3.10.7.3: a SYN-ACK must acknowledge the SYN (ISS < ack <= SND.NXT). We keep no
    // ISS, so we ask for ack == SND.NXT; that is exact unless the SYN carried data the responder
    // did not take (TCP Fast Open fallback), and then the data-less SYN retransmission that
    // follows re-initialises the initiator's side and the next SYN-ACK matches.
    if (kind == TcpSegKind::kSynAck && seg.ack != r.end)
      return reject(DropReason::kTcpOutOfWindow);
    undo_s = s;
    undo_r = r;
    started = true;
    s = peer_from_syn(seg);
    // RFC 7323 2.2: scaling is in force only if both SYNs carried the option.
    if (!((s.flags & peerflag::kWscaleSeen) && (r.flags & peerflag::kWscaleSeen)))
      s.wscale = r.wscale = 0;
  }
  auto refuse = [&](DropReason why) {
    if (started) [[unlikely]] {
      s = undo_s;
      r = undo_r;
    }
    return reject(why);
  };
  if (!seen(r)) return refuse(DropReason::kTcpInvalid);  // unreachable through the table

  const uint32_t seq = seg.seq;
  const uint32_t data_end = seq + seg.payload_len + (is_syn ? 1 : 0);
  const uint32_t end = data_end + ((seg.flags & tcpflag::kFin) ? 1 : 0);
  const uint32_t ack = has_ack ? seg.ack : r.end;  // no ACK: nothing to check, as if current

  const bool in_window = !after(data_end, s.maxend)         // I: within what the receiver allows
                         && !before(end, s.end - r.maxwin)  // II: not older than a window
                         && ack_ok(ack, s, r);              // III, IV
  if (!in_window) return refuse(DropReason::kTcpOutOfWindow);
  // A side that sent FIN has closed its sending half (RFC 9293 3.6): nothing may follow its FIN
  // in sequence space.
  if ((s.flags & peerflag::kFinSent) && after(end, s.end)) return refuse(DropReason::kTcpInvalid);

  // Apply: van Rooij's updates, as in Linux tcp_in_window().
  uint32_t win = seg.window;
  if (!is_syn) win <<= s.wscale;  // RFC 7323 2.2: a SYN's window is never scaled
  s.maxwin = std::max(s.maxwin, win);
  if (after(end, s.end)) s.end = end;
  if (after(end, s.maxend)) r.maxwin += end - s.maxend;  // a FIN one past the window edge
  if (!before(ack + win, r.maxend)) {
    r.maxend = ack + win;
    if (win == 0) ++r.maxend;  // room for a one-byte zero-window probe (RFC 9293 3.8.6.1)
  }

  const bool fin = kind == TcpSegKind::kFin;
  const bool fin_again = fin && (s.flags & peerflag::kFinSent);
  if (fin) s.flags |= peerflag::kFinSent;
  if (has_ack && (r.flags & peerflag::kFinSent) && ack == r.end) r.flags |= peerflag::kFinAcked;

  auto next = static_cast<TcpState>(cell);
  if (fin_again) next = state;  // a retransmitted FIN does not advance the close
  if (kind == TcpSegKind::kAck) {
    const uint8_t acked = (s.flags | r.flags) & peerflag::kFinAcked;
    const bool both_acked = (s.flags & r.flags) & peerflag::kFinAcked;
    if (state == TcpState::kFinWait && next == TcpState::kCloseWait && !acked) next = state;
    if (state == TcpState::kLastAck && next == TcpState::kTimeWait && !both_acked) next = state;
  }

  e.l4_state = st(next);
  return accept(next != state);
}

uint32_t TcpTracker::timeout_s(TcpState s) const {
  switch (s) {
    case TcpState::kSynSent:
    case TcpState::kSynSent2:
      return timeouts_.tcp_syn_sent;
    case TcpState::kSynRecv:
      return timeouts_.tcp_syn_recv;
    case TcpState::kEstablished:
      return timeouts_.tcp_established;
    case TcpState::kFinWait:
      return timeouts_.tcp_fin_wait;
    case TcpState::kCloseWait:
      return timeouts_.tcp_close_wait;
    case TcpState::kLastAck:
      return timeouts_.tcp_last_ack;
    case TcpState::kTimeWait:
      return timeouts_.tcp_time_wait;
    case TcpState::kNone:
    case TcpState::kClose:
    case TcpState::kCount:
      break;
  }
  return timeouts_.tcp_close;
}

}  // namespace baton
