// SPDX-License-Identifier: Apache-2.0
//
// SpliceOffsets: the sequence-number, timestamp and window arithmetic that joins the two TCP
// halves of a delayed-binding (L7) connection, and the in-place rewrite of a TCP header that
// applies it. Pure logic over bytes: no DPDK.
//
// Theory of operation. Delayed binding runs two handshakes:
//   client  --SYN(seq=C, TSval=tc)-->                 LB
//   client  <--SYN-ACK(seq=L, ack=C+1, TSval=tl)--    LB     L is the SYN cookie, tl its TSval
//   client  --ACK, request head-->                    LB     the LB reads the head, picks B
//           LB --SYN(seq=C, client's options)-->      backend
//           LB <--SYN-ACK(seq=B, ack=C+1, TSval=tb)-- backend
//           LB --ACK, replayed head-->                backend
// The LB's SYN to the backend replays the client's ISN C, its TSval and the options agreed
// with the client (those the SYN cookie recovered), so the client's sequence and timestamp
// spaces are the same on both halves. Only the backend's spaces differ: the backend numbers
// its bytes from B where the client expects L, and its TSval clock runs from tb where the
// client saw tl. With dseq = L - B and dts = tl - tb (modulo 2^32):
//
//   field                      client -> backend        backend -> client
//   seq                        unchanged                + dseq
//   ack       (if ACK set)     - dseq                   unchanged
//   SACK edges (if ACK set)    - dseq (RFC 2018 3)      unchanged
//   TSval                      unchanged                + dts
//   TSecr     (if ACK set)     - dts (RFC 7323 3.2)     unchanged
//   window    (not on SYN)     rescaled if the halves' window scales differ (below)
//
// A SACK block and an ack refer to the other side's bytes, a TSecr echoes the other side's
// clock; that is why each direction shifts its own seq/TSval by one offset and its
// ack/SACK/TSecr by the other direction's. SpliceDirOffsets stores the four additive offsets of
// one direction, already negated where needed, so the rewrite is one code path for both.
//
// Window scale (RFC 7323 2). A window field means window << shift, where the shift is the one
// its sender announced, and the receiver applies the shift it received. The client's shift
// reaches the backend unchanged, but the LB announced its own shift to the client before it
// knew the backend's, and the backend may decline scaling. So per direction the window is
// rewritten to min(65535, (window << from) >> to), from = the sender's shift on its half, to =
// the shift the receiver applies on its half (0 where scaling is off). Rounding down can only
// make an advertised window smaller, never larger than what the receiver really offers.
//
// Offsets that cannot bridge: timestamps agreed with the client but refused by the backend
// (the client expects a TSopt on every segment, RFC 7323 3.2); make_splice_offsets() refuses.
// Timestamps refused by the client never reach the backend. SACK needs nothing either way: a
// backend that declined it ignores the client's blocks, and a backend is offered SACK only when
// the client agreed to it.
//
// The LB must keep every segment it sends to the client before the splice at TSval tl (so the
// client never echoes a value the backend did not send, shifted) and at seq L+1.
//
// All arithmetic is modulo 2^32; the offsets are plain fields that a migration copies.
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>

namespace baton {

// What the rewrite adds to the fields of a segment travelling in one direction.
struct SpliceDirOffsets {
  uint32_t seq = 0;    // added to seq
  uint32_t ack = 0;    // added to ack and to every SACK block edge, when ACK is set
  uint32_t tsval = 0;  // added to TSval
  uint32_t tsecr = 0;  // added to TSecr, when ACK is set
  uint8_t win_from = 0, win_to = 0;  // window' = min(65535, (window << from) >> to)

  bool operator==(const SpliceDirOffsets&) const = default;
};

// Per-connection splice state (LB connection entry; migrated as is).
struct SpliceOffsets {
  SpliceDirOffsets to_backend;  // segments from the client
  SpliceDirOffsets to_client;   // segments from the backend

  bool operator==(const SpliceOffsets&) const = default;
};

// The values of the two handshakes the offsets follow from (see the diagram above).
struct SpliceHandshake {
  uint32_t lb_isn = 0;       // L: seq of the LB's SYN-ACK to the client (the SYN cookie)
  uint32_t backend_isn = 0;  // B: seq of the backend's SYN-ACK
  bool client_timestamps = false;   // the LB's SYN-ACK to the client carried a TSopt
  bool backend_timestamps = false;  // the backend's SYN-ACK carried a TSopt
  uint32_t lb_tsval = 0;       // tl: TSval of the LB's SYN-ACK (and of its later segments)
  uint32_t backend_tsval = 0;  // tb: TSval of the backend's SYN-ACK
  // Window-scale shifts (0..14) or kNoWscale: the client's (agreed with the LB and replayed to
  // the backend), the one the LB announced to the client, the backend's.
  static constexpr int8_t kNoWscale = -1;
  int8_t client_wscale = kNoWscale;
  int8_t lb_wscale = kNoWscale;
  int8_t backend_wscale = kNoWscale;
};

// Derives the offsets; nullopt when the halves cannot be joined (timestamps on the client half
// only).
std::optional<SpliceOffsets> make_splice_offsets(const SpliceHandshake& h);

enum class SpliceRewrite : uint8_t {
  kOk,
  kTruncated,    // fewer than 20 bytes, or the data offset points past `len`
  kBadOptions,   // an option runs past the header, has length < 2, or SACK/TS has a bad length
};
const char* to_string(SpliceRewrite r);

// Rewrites the TCP header at `tcp` (header and options; `len` = bytes readable from `tcp`, at
// least the header) for one direction of a spliced connection and updates its checksum
// incrementally (RFC 1624). Options are walked within the header only: EOL ends them, NOP is
// skipped, anything else needs a length byte >= 2 that stays inside the header. On any error
// the segment is left untouched. The checksum field must hold a full checksum (not the
// pseudo-header sum of a checksum offload). Addresses and ports are not touched: NAT rewrites
// them, with its own checksum delta, before or after this.
SpliceRewrite rewrite_segment(const SpliceDirOffsets& d, uint8_t* tcp, size_t len);

}  // namespace baton
