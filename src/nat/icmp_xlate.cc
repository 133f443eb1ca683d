// SPDX-License-Identifier: Apache-2.0
#include "nat/icmp_xlate.h"

#include <cstring>

#include "nat/checksum.h"

namespace baton {

namespace {

constexpr uint8_t kTcp = static_cast<uint8_t>(IpProto::kTcp);
constexpr uint8_t kUdp = static_cast<uint8_t>(IpProto::kUdp);
constexpr uint8_t kIcmp = static_cast<uint8_t>(IpProto::kIcmp);
constexpr size_t kIpMin = 20;
constexpr size_t kQuoteL4Min = 8;   // RFC 792: the quote holds 64 bits of the datagram's data
constexpr size_t kTcpCsumEnd = 18;  // TCP checksum at bytes 16-17

// Raw (network order) 16-bit words.
uint16_t rd16(const uint8_t* p) {
  uint16_t v;
  std::memcpy(&v, p, 2);
  return v;
}
uint16_t rd16_host(const uint8_t* p) { return be16::from_raw(rd16(p)).host(); }

// One IPv4 header as located in a buffer.
struct Ipv4 {
  size_t ihl = 0;       // header bytes
  size_t len = 0;       // bytes of the packet in the buffer (header included)
  uint8_t proto = 0;
  bool first = true;    // fragment offset 0: the L4 header is here
  bool fragmented = false;
};

// An outer packet: bounded by its total length.
XlateError parse_outer(const uint8_t* p, size_t avail, Ipv4* ip) {
  if (avail < kIpMin) return XlateError::kTruncated;
  if (p[0] >> 4 != 4) return XlateError::kNotIpv4;
  ip->ihl = size_t{p[0] & 0x0fu} * 4;
  const size_t total = rd16_host(p + 2);
  if (ip->ihl < kIpMin || total < ip->ihl) return XlateError::kBadHeader;
  if (total > avail) return XlateError::kTruncated;
  ip->len = total;
  ip->proto = p[9];
  const uint16_t frag = rd16_host(p + 6);
  ip->first = (frag & 0x1fff) == 0;
  ip->fragmented = (frag & 0x3fff) != 0;  // MF or an offset
  return XlateError::kOk;
}

// A quoted packet: bounded by the quote, whatever its total length says.
XlateError parse_quoted(const uint8_t* p, size_t avail, Ipv4* ip) {
  if (avail < kIpMin) return XlateError::kQuotedTruncated;
  if (p[0] >> 4 != 4) return XlateError::kQuotedMalformed;
  ip->ihl = size_t{p[0] & 0x0fu} * 4;
  if (ip->ihl < kIpMin) return XlateError::kQuotedMalformed;
  if (avail < ip->ihl + kQuoteL4Min) return XlateError::kQuotedTruncated;
  ip->len = avail;
  ip->proto = p[9];
  const uint16_t frag = rd16_host(p + 6);
  ip->first = (frag & 0x1fff) == 0;
  ip->fragmented = (frag & 0x3fff) != 0;
  if (!ip->first) return XlateError::kQuotedFragment;
  if (ip->proto == kIcmp && !is_icmp_query_type(p[ip->ihl])) return XlateError::kQuotedMalformed;
  if (ip->proto != kTcp && ip->proto != kUdp && ip->proto != kIcmp)
    return XlateError::kUnsupportedProto;
  return XlateError::kOk;
}

// The identifier an ICMP query gets, if any; false when the rewrite names two different ones.
bool icmp_identifier(const PacketRewrite& rw, std::optional<be16>* id) {
  if (rw.src_port && rw.dst_port && *rw.src_port != *rw.dst_port) return false;
  *id = rw.src_port ? rw.src_port : rw.dst_port;
  return true;
}

// Writes the raw word `to` at p and adds the change to every delta given.
void put16(uint8_t* p, uint16_t to, CsumDelta* a, CsumDelta* b = nullptr, CsumDelta* c = nullptr) {
  const uint16_t from = rd16(p);
  std::memcpy(p, &to, 2);
  for (CsumDelta* d : {a, b, c})
    if (d) d->add16(from, to);
}
void put32(uint8_t* p, be32 to, CsumDelta* a, CsumDelta* b, CsumDelta* c) {
  const uint32_t raw = to.raw();
  uint16_t w[2];
  std::memcpy(w, &raw, 4);
  put16(p, w[0], a, b, c);
  put16(p + 2, w[1], a, b, c);
}

// Applies rw to a validated packet. Its L4 header (when ip.first) has the bytes the caller
// checked: 8 at least, TCP's checksum only if they reach it. Every word changed is also added
// to *enclosing (the checksum of an ICMP error around a quote), if given.
void apply(uint8_t* p, const Ipv4& ip, const PacketRewrite& rw, CsumDelta* enclosing) {
  CsumDelta ip_sum, l4_sum;  // changes under the IPv4 header checksum / the L4 checksum
  const bool pseudo = ip.proto == kTcp || ip.proto == kUdp;
  CsumDelta* l4_pseudo = pseudo ? &l4_sum : nullptr;
  if (rw.src_addr) put32(p + 12, *rw.src_addr, &ip_sum, l4_pseudo, enclosing);
  if (rw.dst_addr) put32(p + 16, *rw.dst_addr, &ip_sum, l4_pseudo, enclosing);
  put16(p + 10, ip_sum.apply(rd16(p + 10)), enclosing);
  if (!ip.first) return;  // no L4 header in this fragment

  uint8_t* l4 = p + ip.ihl;
  const size_t l4_len = ip.len - ip.ihl;
  if (pseudo) {
    if (rw.src_port) put16(l4, rw.src_port->raw(), &l4_sum, enclosing);
    if (rw.dst_port) put16(l4 + 2, rw.dst_port->raw(), &l4_sum, enclosing);
    if (ip.proto == kUdp) put16(l4 + 6, l4_sum.apply_udp(rd16(l4 + 6)), enclosing);
    else if (l4_len >= kTcpCsumEnd) put16(l4 + 16, l4_sum.apply(rd16(l4 + 16)), enclosing);
    return;
  }
  std::optional<be16> id;
  icmp_identifier(rw, &id);  // checked by the caller
  if (id) put16(l4 + 4, id->raw(), &l4_sum, enclosing);
  put16(l4 + 2, l4_sum.apply(rd16(l4 + 2)), enclosing);
}

// The outer ICMP error and the quote inside it, validated.
struct IcmpError {
  Ipv4 outer, quoted;
  uint8_t* icmp = nullptr;
  uint8_t* quote = nullptr;
};

XlateError locate_icmp_error(uint8_t* p, size_t len, IcmpError* e) {
  if (XlateError r = parse_outer(p, len, &e->outer); r != XlateError::kOk) return r;
  if (e->outer.proto != kIcmp) return XlateError::kNotIcmpError;
  if (e->outer.fragmented) return XlateError::kFragment;
  if (e->outer.len - e->outer.ihl < 8) return XlateError::kTruncated;
  e->icmp = p + e->outer.ihl;
  const uint8_t type = e->icmp[0];
  if (is_icmp_query_type(type)) return XlateError::kNotIcmpError;
  if (!is_icmp_error_type(type)) return XlateError::kUnsupportedIcmp;
  e->quote = e->icmp + 8;
  return parse_quoted(e->quote, e->outer.len - e->outer.ihl - 8, &e->quoted);
}

}  // namespace

const char* xlate_error_name(XlateError e) {
  switch (e) {
    case XlateError::kOk: return "ok";
    case XlateError::kTruncated: return "truncated";
    case XlateError::kNotIpv4: return "not_ipv4";
    case XlateError::kBadHeader: return "bad_header";
    case XlateError::kUnsupportedProto: return "unsupported_proto";
    case XlateError::kIcmpError: return "icmp_error";
    case XlateError::kNotIcmpError: return "not_icmp_error";
    case XlateError::kUnsupportedIcmp: return "unsupported_icmp";
    case XlateError::kFragment: return "fragment";
    case XlateError::kQuotedTruncated: return "quoted_truncated";
    case XlateError::kQuotedMalformed: return "quoted_malformed";
    case XlateError::kQuotedFragment: return "quoted_fragment";
    case XlateError::kBadRewrite: return "bad_rewrite";
  }
  return "unknown";
}

XlateError rewrite_packet(uint8_t* p, size_t len, const PacketRewrite& rw) {
  Ipv4 ip;
  if (XlateError r = parse_outer(p, len, &ip); r != XlateError::kOk) return r;
  if (ip.proto != kTcp && ip.proto != kUdp && ip.proto != kIcmp)
    return XlateError::kUnsupportedProto;
  if (ip.first) {
    const size_t l4_len = ip.len - ip.ihl;
    const uint8_t* l4 = p + ip.ihl;
    if (l4_len < (ip.proto == kTcp ? 20u : 8u)) return XlateError::kTruncated;
    if (ip.proto == kIcmp) {
      if (is_icmp_error_type(l4[0])) return XlateError::kIcmpError;
      if (!is_icmp_query_type(l4[0])) return XlateError::kUnsupportedIcmp;
      std::optional<be16> id;
      if (!icmp_identifier(rw, &id)) return XlateError::kBadRewrite;
    }
  }
  apply(p, ip, rw, nullptr);
  return XlateError::kOk;
}

XlateError translate_icmp_error(uint8_t* p, size_t len, const PacketRewrite& outer,
                                const PacketRewrite& quoted) {
  if (outer.src_port || outer.dst_port) return XlateError::kBadRewrite;
  IcmpError e;
  if (XlateError r = locate_icmp_error(p, len, &e); r != XlateError::kOk) return r;
  // Two different "ports" are a contradiction only for a quoted ICMP query (one identifier);
  // a quoted TCP/UDP packet has both.
  std::optional<be16> id;
  if (e.quoted.proto == 1 && !icmp_identifier(quoted, &id)) return XlateError::kBadRewrite;

  CsumDelta icmp_sum;  // the ICMP checksum covers the whole quote
  apply(e.quote, e.quoted, quoted, &icmp_sum);
  put16(e.icmp + 2, icmp_sum.apply(rd16(e.icmp + 2)), nullptr);
  Ipv4 header_only = e.outer;  // the outer ICMP header has no ports; its checksum is done above
  header_only.first = false;
  apply(p, header_only, outer, nullptr);
  return XlateError::kOk;
}

XlateError parse_icmp_error(const uint8_t* p, size_t len, IcmpErrorInfo* out) {
  IcmpError e;
  // locate_icmp_error() only reads; it takes a mutable pointer for translate_icmp_error().
  if (XlateError r = locate_icmp_error(const_cast<uint8_t*>(p), len, &e); r != XlateError::kOk)
    return r;
  out->type = e.icmp[0];
  out->code = e.icmp[1];
  out->proto = e.quoted.proto;
  uint32_t a;
  std::memcpy(&a, e.quote + 12, 4);
  out->src = be32::from_raw(a);
  std::memcpy(&a, e.quote + 16, 4);
  out->dst = be32::from_raw(a);
  const uint8_t* l4 = e.quote + e.quoted.ihl;
  if (e.quoted.proto == kIcmp) {
    out->sport = out->dport = be16::from_raw(rd16(l4 + 4));
  } else {
    out->sport = be16::from_raw(rd16(l4));
    out->dport = be16::from_raw(rd16(l4 + 2));
  }
  return XlateError::kOk;
}

}  // namespace baton
