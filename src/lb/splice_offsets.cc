// SPDX-License-Identifier: Apache-2.0
#include "lb/splice_offsets.h"

#include <algorithm>
#include <cstring>

#include "nat/checksum.h"

namespace baton {
namespace {

constexpr size_t kTcpHeader = 20;
constexpr size_t kSeqAt = 4, kAckAt = 8, kWindowAt = 14, kCsumAt = 16;
constexpr uint8_t kFlagSyn = 0x02, kFlagAck = 0x10;
constexpr uint8_t kOptEol = 0, kOptNop = 1, kOptSack = 5, kOptTimestamp = 8;
constexpr uint8_t kMaxWscale = 14;  // RFC 7323 2.3

uint16_t load16(const uint8_t* p) {
  uint16_t w;
  std::memcpy(&w, p, 2);
  return w;
}

// Adds `add` to the big-endian 32-bit field at tcp+off and records the change in `delta`. The
// checksum sums 16-bit words at even offsets, and an option field may start at an odd one
// (options need no alignment), so the words covering the field are recorded, not the field.
void add_be32(uint8_t* tcp, size_t off, uint32_t add, CsumDelta& delta) {
  if (add == 0) return;
  size_t start = off & ~size_t{1}, end = (off + 5) & ~size_t{1};  // 2 or 3 words
  uint16_t before[3];
  for (size_t w = start; w < end; w += 2) before[(w - start) / 2] = load16(tcp + w);
  uint8_t* p = tcp + off;
  uint32_t v = (uint32_t{p[0]} << 24 | uint32_t{p[1]} << 16 | uint32_t{p[2]} << 8 | p[3]) + add;
  p[0] = static_cast<uint8_t>(v >> 24);
  p[1] = static_cast<uint8_t>(v >> 16);
  p[2] = static_cast<uint8_t>(v >> 8);
  p[3] = static_cast<uint8_t>(v);
  for (size_t w = start; w < end; w += 2) delta.add16(before[(w - start) / 2], load16(tcp + w));
}

uint32_t shift_if(bool on, int8_t shift) {
  return on ? std::min<uint32_t>(static_cast<uint32_t>(shift), kMaxWscale) : 0;
}

}  // namespace

std::optional<SpliceOffsets> make_splice_offsets(const SpliceHandshake& h) {
  if (h.client_timestamps != h.backend_timestamps) return std::nullopt;
  uint32_t dseq = h.lb_isn - h.backend_isn;
  uint32_t dts = h.client_timestamps ? h.lb_tsval - h.backend_tsval : 0;
  // RFC 7323 2.2: scaling is on for a half only when both of its SYNs carried the option.
  bool client_half = h.client_wscale >= 0 && h.lb_wscale >= 0;
  bool backend_half = h.client_wscale >= 0 && h.backend_wscale >= 0;

  SpliceOffsets o;
  o.to_client.seq = dseq;
  o.to_client.tsval = dts;
  o.to_client.win_from = static_cast<uint8_t>(shift_if(backend_half, h.backend_wscale));
  o.to_client.win_to = static_cast<uint8_t>(shift_if(client_half, h.lb_wscale));
  o.to_backend.ack = 0u - dseq;
  o.to_backend.tsecr = 0u - dts;
  o.to_backend.win_from = static_cast<uint8_t>(shift_if(client_half, h.client_wscale));
  o.to_backend.win_to = static_cast<uint8_t>(shift_if(backend_half, h.client_wscale));
  return o;
}

const char* to_string(SpliceRewrite r) {
  switch (r) {
    case SpliceRewrite::kOk: return "ok";
    case SpliceRewrite::kTruncated: return "truncated";
    case SpliceRewrite::kBadOptions: return "bad_options";
  }
  return "?";
}

SpliceRewrite rewrite_segment(const SpliceDirOffsets& d, uint8_t* tcp, size_t len) {
  if (len < kTcpHeader) return SpliceRewrite::kTruncated;
  size_t hlen = static_cast<size_t>(tcp[12] >> 4) * 4;
  if (hlen < kTcpHeader || hlen > len) return SpliceRewrite::kTruncated;

  // Validate and locate first, so that a bad segment is left exactly as it was.
  size_t sack_at = 0, sack_blocks = 0, ts_at = 0;
  for (size_t i = kTcpHeader; i < hlen;) {
    uint8_t kind = tcp[i];
    if (kind == kOptEol) break;
    if (kind == kOptNop) {
      ++i;
      continue;
    }
    if (i + 1 >= hlen) return SpliceRewrite::kBadOptions;
    size_t olen = tcp[i + 1];
    if (olen < 2 || i + olen > hlen) return SpliceRewrite::kBadOptions;
    if (kind == kOptSack) {  // RFC 2018 3: 2 + 8n bytes; a second SACK option is refused
      if (olen < 10 || (olen - 2) % 8 != 0 || sack_at) return SpliceRewrite::kBadOptions;
      sack_at = i + 2;
      sack_blocks = (olen - 2) / 8;
    } else if (kind == kOptTimestamp) {  // RFC 7323 3.2: exactly 10 bytes, once
      if (olen != 10 || ts_at) return SpliceRewrite::kBadOptions;
      ts_at = i + 2;
    }
    i += olen;
  }

  bool ack = tcp[13] & kFlagAck;
  CsumDelta delta;
  add_be32(tcp, kSeqAt, d.seq, delta);
  if (ack) add_be32(tcp, kAckAt, d.ack, delta);
  if (ack)
    for (size_t b = 0; b < 2 * sack_blocks; ++b) add_be32(tcp, sack_at + 4 * b, d.ack, delta);
  if (ts_at) {
    add_be32(tcp, ts_at, d.tsval, delta);
    if (ack) add_be32(tcp, ts_at + 4, d.tsecr, delta);
  }
  // RFC 7323 2.2: the window of a SYN is never scaled.
  if (d.win_from != d.win_to && !(tcp[13] & kFlagSyn)) {
    uint16_t before = load16(tcp + kWindowAt);
    uint32_t bytes = uint32_t{tcp[kWindowAt]} << 8 | tcp[kWindowAt + 1];
    bytes <<= std::min(d.win_from, kMaxWscale);
    uint32_t w = std::min<uint32_t>(bytes >> std::min(d.win_to, kMaxWscale), 0xffff);
    tcp[kWindowAt] = static_cast<uint8_t>(w >> 8);
    tcp[kWindowAt + 1] = static_cast<uint8_t>(w);
    delta.add16(before, load16(tcp + kWindowAt));
  }
  if (!delta.empty()) {
    uint16_t csum = delta.apply(load16(tcp + kCsumAt));
    std::memcpy(tcp + kCsumAt, &csum, 2);
  }
  return SpliceRewrite::kOk;
}

}  // namespace baton
