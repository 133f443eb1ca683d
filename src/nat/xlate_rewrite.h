// SPDX-License-Identifier: Apache-2.0
//
// The fast path's rewrite of an IPv4 packet's addresses and ports in place, patching the IPv4
// header checksum and the TCP/UDP checksum (which covers the pseudo-header's addresses)
// incrementally, RFC 1624. Unlike icmp_xlate.h's rewrite_packet(), which validates a raw
// buffer first, it trusts the parser's offsets: every packet of a translated flow passes here.
// ICMP errors go through icmp_xlate.h.
// For an ICMP query the "port" is the identifier (both ports of its tuple carry it): only the
// source side's identifier is written, since the identifier is one field; the ICMP checksum
// does not cover the addresses.
#pragma once

#include <cstdint>
#include <cstring>

#include "common/net_types.h"
#include "nat/checksum.h"

namespace baton {

struct V4Endpoints {
  be32 src, dst;
  be16 sport, dport;
};

// ip: the IPv4 header; l4: its payload (the caller parsed both and knows the packet holds the
// L4 header: 20 bytes for TCP, 8 for UDP and ICMP). For ICMP echo the identifier takes the
// value of `sport` for a request and of `dport` for a reply (the identifier belongs to the
// requester; a reply carries it back to it).
inline void rewrite_v4(uint8_t* ip, uint8_t* l4, uint8_t proto, bool icmp_echo_reply,
                       const V4Endpoints& to) {
  be32 osrc, odst;
  std::memcpy(&osrc, ip + 12, 4);
  std::memcpy(&odst, ip + 16, 4);
  CsumDelta addrs;
  addrs.add(osrc, to.src).add(odst, to.dst);
  uint16_t c;
  std::memcpy(&c, ip + 10, 2);
  c = addrs.apply(c);
  std::memcpy(ip + 10, &c, 2);
  std::memcpy(ip + 12, &to.src, 4);
  std::memcpy(ip + 16, &to.dst, 4);

  if (proto == 6 || proto == 17) {
    be16 osp, odp;
    std::memcpy(&osp, l4, 2);
    std::memcpy(&odp, l4 + 2, 2);
    CsumDelta d = addrs;
    d.add(osp, to.sport).add(odp, to.dport);
    const int at = proto == 6 ? 16 : 6;
    std::memcpy(&c, l4 + at, 2);
    c = proto == 6 ? d.apply(c) : d.apply_udp(c);
    std::memcpy(l4 + at, &c, 2);
    std::memcpy(l4, &to.sport, 2);
    std::memcpy(l4 + 2, &to.dport, 2);
  } else if (proto == 1) {
    be16 oid;
    std::memcpy(&oid, l4 + 4, 2);
    const be16 nid = icmp_echo_reply ? to.dport : to.sport;
    std::memcpy(&c, l4 + 2, 2);
    c = CsumDelta().add(oid, nid).apply(c);
    std::memcpy(l4 + 2, &c, 2);
    std::memcpy(l4 + 4, &nid, 2);
  }
}

}  // namespace baton
