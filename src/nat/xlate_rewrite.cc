// SPDX-License-Identifier: Apache-2.0
#include "nat/xlate_rewrite.h"

#include <algorithm>

namespace baton {
namespace {

template <class T>
T load(const uint8_t* p) {
  T v;
  std::memcpy(&v, p, sizeof v);
  return v;
}
template <class T>
void store(uint8_t* p, T v) {
  std::memcpy(p, &v, sizeof v);
}
void patch_csum(uint8_t* at, const CsumDelta& d) { store<uint16_t>(at, d.apply(load<uint16_t>(at))); }

}  // namespace

// Errors are rare: the ICMP checksum is recomputed over the message rather than patched.
bool icmp_error_translate(uint8_t* ip, uint32_t len, const V4Endpoints& to) {
  if (len < 20) return false;
  const uint32_t ihl = (ip[0] & 0x0f) * 4u;
  const uint32_t total = std::min<uint32_t>(len, uint32_t{ip[2]} << 8 | ip[3]);
  if (ihl < 20 || total < ihl + 8 + 20) return false;
  uint8_t* icmp = ip + ihl;
  uint8_t* in = icmp + 8;
  const uint32_t in_ihl = (in[0] & 0x0f) * 4u;
  const uint32_t quoted = total - ihl - 8;
  if ((in[0] >> 4) != 4 || in_ihl < 20 || quoted < in_ihl + 8) return false;
  uint8_t* l4 = in + in_ihl;
  const uint32_t l4_quoted = quoted - in_ihl;
  const uint8_t proto = in[9];

  const be32 in_src = load<be32>(in + 12), in_dst = load<be32>(in + 16);
  CsumDelta addrs;
  addrs.add(in_src, to.dst).add(in_dst, to.src);
  patch_csum(in + 10, addrs);
  store(in + 12, to.dst);
  store(in + 16, to.src);
  if (proto == 6 || proto == 17) {
    CsumDelta d = addrs;
    d.add(load<be16>(l4), to.dport).add(load<be16>(l4 + 2), to.sport);
    store(l4, to.dport);
    store(l4 + 2, to.sport);
    const uint32_t at = proto == 6 ? 16 : 6;
    if (l4_quoted >= at + 2) {  // the quote may end before TCP's checksum
      uint16_t c = load<uint16_t>(l4 + at);
      store<uint16_t>(l4 + at, proto == 6 ? d.apply(c) : d.apply_udp(c));
    }
  } else if (proto == 1) {
    const bool request = l4[0] == 8;  // the identifier belongs to the requester
    store(l4 + 4, request ? to.dport : to.sport);
    // The quoted ICMP checksum is left as it was: RFC 5508 does not require it, and it
    // covers the whole original message, which the quote may not hold.
  }

  // Outer header: the error goes to the translated endpoint; if the flow's own endpoint sent
  // it (e.g. port unreachable), its source is translated too.
  CsumDelta outer;
  const be32 osrc = load<be32>(ip + 12), odst = load<be32>(ip + 16);
  outer.add(odst, to.dst);
  store(ip + 16, to.dst);
  if (osrc == in_dst) {
    outer.add(osrc, to.src);
    store(ip + 12, to.src);
  }
  patch_csum(ip + 10, outer);
  store<uint16_t>(icmp + 2, 0);
  store<uint16_t>(icmp + 2, csum_fold(csum_partial(icmp, total - ihl)));
  return true;
}

}  // namespace baton
