// SPDX-License-Identifier: Apache-2.0
//
// Incremental Internet checksum updates (RFC 1624, eqn. 3: HC' = ~(~HC + ~m + m')).
//
// Theory of operation: a rewrite of an address or port changes a few 16-bit words of the data a
// checksum covers, so the new checksum follows from the old one and the words' old and new
// values; nothing else in the packet is read. A translation known when the connection is set up
// (NAT, LB) is folded once into a CsumDelta, the sum of (~old + new) over every changed word, and
// the fast path adds that delta to each packet's checksum (VPP's NAT keeps the same precomputed
// sums). All values are the raw network-order 16-bit words as they sit in the packet: the
// one's-complement sum is byte-order independent (RFC 1071 section 2(B)), so no swapping is
// needed on either side.
//
// UDP over IPv4: a transmitted checksum of 0 means "none" (RFC 768), so it stays 0 after a
// rewrite, and a computed 0 is sent as 0xffff. TCP and ICMP have no such case.
#pragma once

#include <cstdint>

#include "common/net_types.h"

namespace baton {

// A precomputed sum of word changes; apply() to any checksum covering those words.
class CsumDelta {
 public:
  constexpr CsumDelta() = default;

  // Record that a 16-bit word changes from `from` to `to` (raw network-order values).
  constexpr CsumDelta& add16(uint16_t from, uint16_t to) {
    sum_ += static_cast<uint16_t>(~from);
    sum_ += to;
    return *this;
  }
  constexpr CsumDelta& add(be16 from, be16 to) { return add16(from.raw(), to.raw()); }
  constexpr CsumDelta& add(be32 from, be32 to) {
    add16(static_cast<uint16_t>(from.raw()), static_cast<uint16_t>(to.raw()));
    return add16(static_cast<uint16_t>(from.raw() >> 16), static_cast<uint16_t>(to.raw() >> 16));
  }
  constexpr CsumDelta& add(const CsumDelta& other) {
    sum_ += other.sum_;
    return *this;
  }

  // The updated checksum field (raw network order) for a field that held `csum`.
  constexpr uint16_t apply(uint16_t csum) const {
    uint64_t s = static_cast<uint16_t>(~csum);
    s += sum_;
    while (s >> 16) s = (s & 0xffff) + (s >> 16);
    return static_cast<uint16_t>(~s);
  }
  // UDP/IPv4: 0 means no checksum and stays so; a result of 0 is sent as 0xffff (RFC 768).
  constexpr uint16_t apply_udp(uint16_t csum) const {
    if (csum == 0) return 0;
    uint16_t r = apply(csum);
    return r == 0 ? 0xffff : r;
  }
  constexpr bool empty() const { return sum_ == 0; }

  // The sum folded to 16 bits: what a record keeps (a translation's deltas, conn_xlate.h).
  constexpr uint16_t folded() const {
    uint64_t s = sum_;
    while (s >> 16) s = (s & 0xffff) + (s >> 16);
    return static_cast<uint16_t>(s);
  }
  static constexpr CsumDelta of_folded(uint16_t f) {
    CsumDelta d;
    d.sum_ = f;
    return d;
  }
  // The change back: every word from its new value to its old one. In one's complement the
  // negation of a sum is its complement.
  constexpr CsumDelta inverse() const { return of_folded(static_cast<uint16_t>(~folded())); }

 private:
  uint64_t sum_ = 0;  // wide enough that no fold is needed while adding
};

// One's-complement sum over a byte range (RFC 1071), not inverted; for full computations in
// tests and on the slow path (ICMP errors, generated packets).
inline uint32_t csum_partial(const void* data, size_t len, uint32_t sum = 0) {
  const auto* p = static_cast<const uint8_t*>(data);
  uint64_t s = sum;
  while (len >= 2) {
    uint16_t w;
    __builtin_memcpy(&w, p, 2);
    s += w;
    p += 2;
    len -= 2;
  }
  if (len) {
    uint16_t w = 0;
    __builtin_memcpy(&w, p, 1);  // the odd byte is the high-order byte of a zero-padded word
    s += w;
  }
  while (s >> 16) s = (s & 0xffff) + (s >> 16);
  return static_cast<uint32_t>(s);
}
// The checksum field value for a folded sum.
inline uint16_t csum_fold(uint32_t sum) {
  while (sum >> 16) sum = (sum & 0xffff) + (sum >> 16);
  return static_cast<uint16_t>(~sum);
}

}  // namespace baton
