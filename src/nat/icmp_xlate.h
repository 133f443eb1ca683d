// SPDX-License-Identifier: Apache-2.0
//
// NAT translation of IPv4 packets in a byte buffer: a packet's own endpoints (TCP, UDP, ICMP
// query identifiers) and ICMP errors with the packet they quote. Pure functions; no DPDK.
//
// Theory of operation
//
// Every function takes the buffer from the IPv4 header on (pointer + length) and never reads or
// writes outside it; the IPv4 total length bounds the packet (Ethernet padding after it is left
// alone). Input is validated completely before the first byte is written, so an error leaves the
// buffer untouched. Checksums are updated incrementally (RFC 1624, CsumDelta in checksum.h): each
// changed 16-bit word adds (~old + new) to the sum of every checksum that covers it:
//
//   word changed            covered by
//   IPv4 src/dst address    IPv4 header checksum, TCP/UDP checksum (pseudo-header)
//   TCP/UDP port            TCP/UDP checksum
//   ICMP query identifier   ICMP checksum (no pseudo-header)
//   anything in the quote   the enclosing ICMP error's checksum, as well as the above for the
//                           quoted packet's own checksums
//
// UDP over IPv4 with checksum 0 means "no checksum" and keeps 0 (RFC 768; apply_udp()).
//
// ICMP errors (RFC 5508 section 4, RFC 5382 REQ-9): destination unreachable (3), time exceeded
// (11) and parameter problem (12) quote the offending packet's IPv4 header and at least 8 bytes
// after it (RFC 792; routers quote more, RFC 1812 4.3.2.3). The quote is the packet as it was on
// the far side of the NAT, so it is translated the opposite way from the error itself: an error
// coming in to outside address X about a packet X:x -> R gets outer destination X -> I and quoted
// source X:x -> I:i. The quoted IPv4 header checksum and the quoted L4 checksum are updated when
// they lie inside the quote (UDP's at bytes 6-7 always; TCP's at 16-17 only if >= 18 bytes were
// quoted: a quote that ends between its two bytes leaves that byte as it was, since its new value
// depends on the missing one), then the ICMP checksum over all of it, then the outer header. The quoted IPv4 total
// length describes the original packet and is never used as a bound.
//
// Not translated, with the reason:
//   * ICMP redirects (5) and source quench (4, deprecated by RFC 6633), router advertisement
//     etc.: a NAT must not let the outside redirect inside hosts (kUnsupportedIcmp).
//   * ICMP errors that are themselves fragmented (kFragment) or that quote a non-first fragment,
//     which carries no ports (kQuotedFragment): a NAT cannot tell which mapping they belong to.
//   * A non-first fragment of a TCP/UDP/ICMP packet has no L4 header: rewrite_packet() changes
//     its addresses only (its ports, and the L4 checksum's pseudo-header part, are in the first
//     fragment, which gets the same rewrite).
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>

#include "common/net_types.h"

namespace baton {

enum class XlateError : uint8_t {
  kOk = 0,
  kTruncated,         // shorter than its headers, or than the IPv4 total length
  kNotIpv4,           // IP version is not 4
  kBadHeader,         // IHL < 5, or total length < header length
  kUnsupportedProto,  // not TCP, UDP or ICMP (outer packet or quoted one)
  kIcmpError,         // rewrite_packet() got an ICMP error: use translate_icmp_error()
  kNotIcmpError,      // translate_icmp_error()/parse_icmp_error() got something else
  kUnsupportedIcmp,   // an ICMP type the NAT does not translate (see the header comment)
  kFragment,          // the ICMP error is fragmented
  kQuotedTruncated,   // the quote holds less than an IPv4 header + 8 bytes
  kQuotedMalformed,   // the quote is not IPv4, has IHL < 5, or quotes an ICMP error
  kQuotedFragment,    // the quote is a non-first fragment (no ports)
  kBadRewrite,        // ports asked for an ICMP error's outer header, or two ICMP identifiers
};
const char* xlate_error_name(XlateError e);

// Endpoint changes for one IPv4 packet; an unset field stays as it is. For an ICMP query the
// identifier plays both ports (net_types' Tuple convention): it becomes src_port if set, else
// dst_port; setting both to different values is kBadRewrite.
struct PacketRewrite {
  std::optional<be32> src_addr, dst_addr;
  std::optional<be16> src_port, dst_port;
};

constexpr bool is_icmp_error_type(uint8_t type) { return type == 3 || type == 11 || type == 12; }
// Queries that carry an identifier: echo (8/0) and timestamp (13/14).
constexpr bool is_icmp_query_type(uint8_t type) {
  return type == 0 || type == 8 || type == 13 || type == 14;
}

// Rewrites a TCP, UDP or ICMP query packet's addresses and ports (identifier) in place, with
// every checksum the change affects.
XlateError rewrite_packet(uint8_t* ip, size_t len, const PacketRewrite& rw);

// Translates an ICMP error in place: `outer` for its own IPv4 header (addresses only), `quoted`
// for the packet it quotes (addresses and ports).
XlateError translate_icmp_error(uint8_t* ip, size_t len, const PacketRewrite& outer,
                                const PacketRewrite& quoted);

// What an ICMP error is about, to find its mapping and its owner worker: the quoted packet's
// endpoints as they appear in the quote.
struct IcmpErrorInfo {
  uint8_t type = 0, code = 0;
  uint8_t proto = 0;     // quoted packet's protocol
  be32 src, dst;         // quoted packet's addresses
  be16 sport, dport;     // quoted ports; ICMP query: the identifier in both
};
XlateError parse_icmp_error(const uint8_t* ip, size_t len, IcmpErrorInfo* out);

}  // namespace baton
