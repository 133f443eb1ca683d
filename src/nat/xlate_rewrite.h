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

// A translated connection's two rewrites as the fast path applies them, derived once from its
// original tuple (as the initiator sends it) and its reply tuple (as the responder sends it).
// Index 0 is the original direction, 1 the reply direction: a packet of direction i carries
// tuple i and leaves with tuple 1 - i reversed (src, dst := dst[1-i], src[1-i]; the ports
// alike), and its checksums change by the deltas of direction i, folded here once
// (RFC 1624; VPP's NAT keeps its sessions' sums the same way) instead of summed from the
// packet's eight old and new words each time. Direction 1's deltas are direction 0's inverse.
// 32 bytes: it is what a translated connection keeps in its row (conn_xlate.h).
struct XlateRewrite {
  static constexpr uint16_t kNoRoute = 0xffff;

  be32 src[2], dst[2];
  be16 sport[2], dport[2];
  uint16_t ip_delta = 0;  // direction 0's, the IPv4 header's: the addresses
  uint16_t l4_delta = 0;  // direction 0's, TCP's and UDP's: the addresses (pseudo-header), ports
  // The owner's (mode l3, Worker): route[i] is the route to src[1 - i], where direction i's
  // packets are sent, found once; kNoRoute when not known (each packet looks it up then).
  uint16_t route[2] = {kNoRoute, kNoRoute};

  static XlateRewrite make(const V4Endpoints& orig, const V4Endpoints& reply) {
    XlateRewrite r;
    r.src[0] = orig.src, r.dst[0] = orig.dst, r.sport[0] = orig.sport, r.dport[0] = orig.dport;
    r.src[1] = reply.src, r.dst[1] = reply.dst, r.sport[1] = reply.sport, r.dport[1] = reply.dport;
    CsumDelta ip;
    ip.add(orig.src, reply.dst).add(orig.dst, reply.src);
    CsumDelta l4 = ip;
    l4.add(orig.sport, reply.dport).add(orig.dport, reply.sport);
    r.ip_delta = ip.folded();
    r.l4_delta = l4.folded();
    return r;
  }
  CsumDelta ip(int i) const { return delta(ip_delta, i); }
  CsumDelta l4(int i) const { return delta(l4_delta, i); }
  // Where a packet of direction i goes: tuple 1 - i reversed.
  V4Endpoints to(int i) const { return {dst[1 - i], src[1 - i], dport[1 - i], sport[1 - i]}; }

 private:
  static CsumDelta delta(uint16_t d, int i) {
    const CsumDelta c = CsumDelta::of_folded(d);
    return i ? c.inverse() : c;
  }
};
static_assert(sizeof(XlateRewrite) == 32);

// rewrite_v4 for a TCP (tcp) or UDP packet of direction i of r, with r's deltas. Only when
// the packet carries exactly tuple i (the deltas are of that change): false, and nothing
// written, when it does not (the caller then rewrites with rewrite_v4, which sums the
// packet's own words).
inline bool rewrite_v4_known(uint8_t* ip, uint8_t* l4, bool tcp, const XlateRewrite& r, int i) {
  be32 src, dst;
  be16 sport, dport;
  std::memcpy(&src, ip + 12, 4);
  std::memcpy(&dst, ip + 16, 4);
  std::memcpy(&sport, l4, 2);
  std::memcpy(&dport, l4 + 2, 2);
  if (src != r.src[i] || dst != r.dst[i] || sport != r.sport[i] || dport != r.dport[i])
    return false;
  const V4Endpoints to = r.to(i);
  uint16_t c;
  std::memcpy(&c, ip + 10, 2);
  c = r.ip(i).apply(c);
  std::memcpy(ip + 10, &c, 2);
  std::memcpy(ip + 12, &to.src, 4);
  std::memcpy(ip + 16, &to.dst, 4);
  const int at = tcp ? 16 : 6;
  std::memcpy(&c, l4 + at, 2);
  const CsumDelta d = r.l4(i);
  c = tcp ? d.apply(c) : d.apply_udp(c);
  std::memcpy(l4 + at, &c, 2);
  std::memcpy(l4, &to.sport, 2);
  std::memcpy(l4 + 2, &to.dport, 2);
  return true;
}

}  // namespace baton
