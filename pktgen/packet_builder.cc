// SPDX-License-Identifier: Apache-2.0
#include "pktgen/packet_builder.h"

#include <algorithm>
#include <cstdlib>
#include <stdexcept>

#include "dataplane/parser.h"

namespace baton::pktgen {
namespace {

constexpr uint16_t kEthIpv4 = 0x0800, kEthIpv6 = 0x86dd, kEthArp = 0x0806;
constexpr uint16_t kEthExperimental = 0x88b5;   // IEEE 802 local experimental
constexpr uint8_t kNoNextHeader = 59, kExtFragment = 44, kExtAh = 51;

// Test code: a bad literal is a bug in the test, so fail loudly.
IpAddr must_ip(const std::string& s, Family want) {
  Family f;
  auto a = IpAddr::parse(s, &f);
  if (!a || f != want) throw std::invalid_argument("PacketBuilder: bad address " + s);
  return *a;
}

MacAddr must_mac(const std::string& s) {
  auto m = MacAddr::parse(s);
  if (!m) throw std::invalid_argument("PacketBuilder: bad MAC " + s);
  return *m;
}

void put16(Bytes& b, uint16_t v) {
  b.push_back(uint8_t(v >> 8));
  b.push_back(uint8_t(v));
}
void put32(Bytes& b, uint32_t v) {
  put16(b, uint16_t(v >> 16));
  put16(b, uint16_t(v));
}
void set16(uint8_t* p, uint16_t v) {
  p[0] = uint8_t(v >> 8);
  p[1] = uint8_t(v);
}
void append(Bytes& b, const uint8_t* p, size_t n) { b.insert(b.end(), p, p + n); }

// Unfolded-then-folded RFC 1071 sum of big-endian words.
uint32_t partial_sum(const uint8_t* p, size_t n, uint32_t initial) {
  uint64_t s = initial;
  for (; n >= 2; p += 2, n -= 2) s += uint32_t(p[0]) << 8 | p[1];
  if (n) s += uint32_t(p[0]) << 8;
  while (s >> 16) s = (s & 0xffff) + (s >> 16);
  return uint32_t(s);
}

// Pseudo-header sum (RFC 793 / RFC 8200 8.1) for an upper-layer segment of `len` bytes.
uint32_t pseudo_sum(Family f, const IpAddr& src, const IpAddr& dst, uint8_t proto, size_t len) {
  size_t alen = f == Family::kV6 ? 16 : 4;
  uint32_t s = partial_sum(src.b.data(), alen, 0);
  s = partial_sum(dst.b.data(), alen, s);
  return s + proto + uint32_t(len >> 16) + uint32_t(len & 0xffff);
}

// Offset of the checksum field inside an L4 header of this protocol.
int l4_csum_offset(uint8_t proto) {
  switch (proto) {
    case 6: return 16;
    case 17: return 6;
    case 1:
    case 58: return 2;
    default: return -1;
  }
}

size_t l2_len(const uint8_t* f, size_t len) {
  size_t off = 12;
  while (off + 2 <= len) {
    uint16_t t = uint16_t(f[off] << 8 | f[off + 1]);
    if (t != 0x8100 && t != 0x88a8) break;
    off += 4;
  }
  return std::min(off + 2, len);
}

}  // namespace

uint16_t inet_checksum(const uint8_t* p, size_t n, uint32_t initial) {
  return uint16_t(~partial_sum(p, n, initial));
}

// --- L2 ---

PacketBuilder& PacketBuilder::eth(const MacAddr& src, const MacAddr& dst) {
  src_mac_ = src;
  dst_mac_ = dst;
  return *this;
}
PacketBuilder& PacketBuilder::eth(const std::string& src, const std::string& dst) {
  return eth(must_mac(src), must_mac(dst));
}
PacketBuilder& PacketBuilder::vlan(uint16_t id, uint16_t tpid) {
  vlans_.emplace_back(tpid, id);
  return *this;
}
PacketBuilder& PacketBuilder::qinq(uint16_t outer, uint16_t inner) {
  vlans_.emplace_back(0x88a8, outer);
  vlans_.emplace_back(0x8100, inner);
  return *this;
}
PacketBuilder& PacketBuilder::ethertype(uint16_t type) {
  ethertype_ = type;
  return *this;
}

// --- L3 ---

PacketBuilder& PacketBuilder::ipv4(const IpAddr& src, const IpAddr& dst) {
  l3_ = L3::kV4;
  src_ip_ = src;
  dst_ip_ = dst;
  return *this;
}
PacketBuilder& PacketBuilder::ipv6(const IpAddr& src, const IpAddr& dst) {
  l3_ = L3::kV6;
  src_ip_ = src;
  dst_ip_ = dst;
  return *this;
}
PacketBuilder& PacketBuilder::ipv4(const std::string& src, const std::string& dst) {
  return ipv4(must_ip(src, Family::kV4), must_ip(dst, Family::kV4));
}
PacketBuilder& PacketBuilder::ipv6(const std::string& src, const std::string& dst) {
  return ipv6(must_ip(src, Family::kV6), must_ip(dst, Family::kV6));
}
PacketBuilder& PacketBuilder::ttl(uint8_t v) {
  ttl_ = v;
  return *this;
}
PacketBuilder& PacketBuilder::tos(uint8_t v) {
  tos_ = v;
  return *this;
}
PacketBuilder& PacketBuilder::ip_id(uint32_t id) {
  ip_id_ = id;
  return *this;
}
PacketBuilder& PacketBuilder::df() {
  df_ = true;
  return *this;
}
PacketBuilder& PacketBuilder::frag(uint16_t offset, bool more) {
  is_frag_ = true;
  frag_off_ = offset;
  more_frags_ = more;
  if (l3_ == L3::kV6) exts_.push_back({kExtFragment, {}});   // filled in by build()
  return *this;
}
PacketBuilder& PacketBuilder::ip_options(Bytes opts) {
  ip_opts_ = std::move(opts);
  while (ip_opts_.size() % 4) ip_opts_.push_back(0);
  return *this;
}
PacketBuilder& PacketBuilder::proto(uint8_t p) {
  proto_ = p;
  return *this;
}
PacketBuilder& PacketBuilder::ext(uint8_t type, size_t len) {
  Bytes b(len, 0);
  if (len >= 2) b[1] = uint8_t(type == kExtAh ? len / 4 - 2 : len / 8 - 1);
  exts_.push_back({type, std::move(b)});
  return *this;
}
PacketBuilder& PacketBuilder::ext_raw(uint8_t type, Bytes bytes) {
  exts_.push_back({type, std::move(bytes)});
  return *this;
}
PacketBuilder& PacketBuilder::ip_total_len(uint16_t v) {
  ip_total_len_ = v;
  return *this;
}
PacketBuilder& PacketBuilder::ihl(uint8_t words) {
  ihl_ = words;
  return *this;
}
PacketBuilder& PacketBuilder::ip_csum(uint16_t v) {
  ip_csum_ = v;
  return *this;
}
PacketBuilder& PacketBuilder::ip_version(uint8_t v) {
  ip_version_ = v;
  return *this;
}

PacketBuilder& PacketBuilder::arp(uint16_t op, const std::string& sender_mac,
                                  const std::string& sender_ip, const std::string& target_ip,
                                  const std::string& target_mac) {
  l3_ = L3::kArp;
  arp_op_ = op;
  arp_sha_ = must_mac(sender_mac);
  arp_tha_ = must_mac(target_mac);
  arp_spa_ = must_ip(sender_ip, Family::kV4);
  arp_tpa_ = must_ip(target_ip, Family::kV4);
  return *this;
}

// --- L4 ---

PacketBuilder& PacketBuilder::tcp(uint16_t sport, uint16_t dport) {
  l4_ = L4::kTcp;
  sport_ = sport;
  dport_ = dport;
  return *this;
}
PacketBuilder& PacketBuilder::seq(uint32_t v) {
  seq_ = v;
  return *this;
}
PacketBuilder& PacketBuilder::ack(uint32_t v) {
  ack_ = v;
  return *this;
}
PacketBuilder& PacketBuilder::flags(uint8_t f) {
  flags_ = f;
  return *this;
}
PacketBuilder& PacketBuilder::win(uint16_t w) {
  win_ = w;
  return *this;
}
PacketBuilder& PacketBuilder::wscale(uint8_t shift) {
  wscale_ = shift;
  return *this;
}
PacketBuilder& PacketBuilder::mss(uint16_t v) {
  mss_ = v;
  return *this;
}
PacketBuilder& PacketBuilder::sack_perm() {
  sack_perm_ = true;
  return *this;
}
PacketBuilder& PacketBuilder::ts(uint32_t tsval, uint32_t tsecr) {
  ts_ = std::make_pair(tsval, tsecr);
  return *this;
}
PacketBuilder& PacketBuilder::tcp_option(Bytes raw) {
  tcp_opts_raw_.insert(tcp_opts_raw_.end(), raw.begin(), raw.end());
  return *this;
}
PacketBuilder& PacketBuilder::doff(uint8_t words) {
  doff_ = words;
  return *this;
}
PacketBuilder& PacketBuilder::udp(uint16_t sport, uint16_t dport) {
  l4_ = L4::kUdp;
  sport_ = sport;
  dport_ = dport;
  return *this;
}
PacketBuilder& PacketBuilder::udp_len(uint16_t v) {
  udp_len_ = v;
  return *this;
}
PacketBuilder& PacketBuilder::icmp_echo(uint16_t id, uint16_t sq, bool request) {
  l4_ = L4::kIcmp;
  icmp_echo_ = true;
  icmp_echo_request_ = request;
  icmp_code_ = 0;
  icmp_rest_ = uint32_t(id) << 16 | sq;
  return *this;
}
PacketBuilder& PacketBuilder::icmp(uint8_t type, uint8_t code, uint32_t rest) {
  l4_ = L4::kIcmp;
  icmp_echo_ = false;
  icmp_type_ = type;
  icmp_code_ = code;
  icmp_rest_ = rest;
  return *this;
}
PacketBuilder& PacketBuilder::icmp_error(uint8_t type, uint8_t code, const Bytes& inner_frame,
                                         size_t max_inner, uint32_t rest) {
  icmp(type, code, rest);
  icmp_inner_ = strip_l2(inner_frame);
  icmp_max_inner_ = max_inner;
  return *this;
}
PacketBuilder& PacketBuilder::bad_l4_csum() {
  bad_l4_csum_ = true;
  return *this;
}

// --- payload and corruption ---

PacketBuilder& PacketBuilder::payload(std::string_view s) {
  payload_.assign(s.begin(), s.end());
  return *this;
}
PacketBuilder& PacketBuilder::payload(Bytes b) {
  payload_ = std::move(b);
  return *this;
}
PacketBuilder& PacketBuilder::payload_size(size_t n, uint8_t fill) {
  payload_.assign(n, fill);
  return *this;
}
PacketBuilder& PacketBuilder::truncate(size_t n) {
  truncate_ = n;
  return *this;
}
PacketBuilder& PacketBuilder::pad_to(size_t n) {
  pad_to_ = n;
  return *this;
}
PacketBuilder& PacketBuilder::poke(size_t offset, Bytes bytes) {
  pokes_.emplace_back(offset, std::move(bytes));
  return *this;
}

// --- assembly ---

uint8_t PacketBuilder::l4_proto() const {
  if (proto_) return *proto_;
  switch (l4_) {
    case L4::kTcp: return 6;
    case L4::kUdp: return 17;
    case L4::kIcmp: return l3_ == L3::kV6 ? 58 : 1;
    case L4::kNone: break;
  }
  return l3_ == L3::kV6 ? kNoNextHeader : 253;   // RFC 3692 experimental
}

Bytes PacketBuilder::build_l4() const {
  Bytes b;
  switch (l4_) {
    case L4::kTcp: {
      Bytes opts;
      if (mss_) opts.insert(opts.end(), {2, 4, uint8_t(mss_ >> 8), uint8_t(mss_)});
      // The layout Linux sends on a SYN: options 4-byte aligned with NOPs.
      if (ts_) {
        if (sack_perm_)
          opts.insert(opts.end(), {4, 2});
        else
          opts.insert(opts.end(), {1, 1});
        opts.insert(opts.end(), {8, 10});
        put32(opts, ts_->first);
        put32(opts, ts_->second);
      } else if (sack_perm_) {
        opts.insert(opts.end(), {1, 1, 4, 2});
      }
      if (wscale_) opts.insert(opts.end(), {1, 3, 3, *wscale_});
      opts.insert(opts.end(), tcp_opts_raw_.begin(), tcp_opts_raw_.end());
      while (opts.size() % 4) opts.push_back(0);
      uint8_t doff = doff_ ? *doff_ : uint8_t(5 + opts.size() / 4);
      put16(b, sport_);
      put16(b, dport_);
      put32(b, seq_);
      put32(b, ack_);
      b.push_back(uint8_t(doff << 4));
      b.push_back(flags_);
      put16(b, win_);
      put16(b, 0);   // checksum
      put16(b, 0);   // urgent pointer
      append(b, opts.data(), opts.size());
      break;
    }
    case L4::kUdp:
      put16(b, sport_);
      put16(b, dport_);
      put16(b, udp_len_ ? *udp_len_ : uint16_t(8 + payload_.size()));
      put16(b, 0);
      break;
    case L4::kIcmp: {
      uint8_t type = icmp_type_;
      if (icmp_echo_) {
        bool v6 = l3_ == L3::kV6;
        type = icmp_echo_request_ ? (v6 ? 128 : 8) : (v6 ? 129 : 0);
      }
      b.push_back(type);
      b.push_back(icmp_code_);
      put16(b, 0);
      put32(b, icmp_rest_);
      if (!icmp_inner_.empty()) {
        // RFC 1812 4.3.2.3: at most 576 bytes in all; RFC 4443 2.4(c): at most 1280.
        size_t room = l3_ == L3::kV6 ? 1280 - 40 - 8 : 576 - 20 - 8;
        size_t n = std::min({icmp_inner_.size(), room, icmp_max_inner_});
        append(b, icmp_inner_.data(), n);
      }
      break;
    }
    case L4::kNone:
      break;
  }
  append(b, payload_.data(), payload_.size());
  return b;
}

Bytes PacketBuilder::build() const {
  Bytes l4 = build_l4();
  uint8_t proto = l4_proto();

  // L4 checksum over the pseudo-header (TCP, UDP, ICMPv6) or the message alone (ICMPv4).
  int csum_at = l4_ == L4::kNone ? -1 : l4_csum_offset(proto);
  if (csum_at >= 0 && l4.size() >= size_t(csum_at) + 2 && (l3_ == L3::kV4 || l3_ == L3::kV6)) {
    Family fam = l3_ == L3::kV6 ? Family::kV6 : Family::kV4;
    uint32_t init = proto == 1 ? 0 : pseudo_sum(fam, src_ip_, dst_ip_, proto, l4.size());
    uint16_t c = inet_checksum(l4.data(), l4.size(), init);
    if (proto == 17 && c == 0) c = 0xffff;   // RFC 768: 0 means "no checksum"
    if (bad_l4_csum_) c ^= 0x5555;
    set16(l4.data() + csum_at, c);
  }

  Bytes l3;
  uint16_t ethertype = kEthExperimental;
  switch (l3_) {
    case L3::kV4: {
      ethertype = kEthIpv4;
      size_t hlen = 20 + ip_opts_.size();
      uint8_t ihl = ihl_ ? *ihl_ : uint8_t(hlen / 4);
      uint8_t ver = ip_version_ ? *ip_version_ : 4;
      l3.push_back(uint8_t(ver << 4 | (ihl & 0xf)));
      l3.push_back(tos_);
      put16(l3, ip_total_len_ ? *ip_total_len_ : uint16_t(hlen + l4.size()));
      put16(l3, uint16_t(ip_id_));
      uint16_t frag = uint16_t((df_ ? 0x4000 : 0) | (is_frag_ && more_frags_ ? 0x2000 : 0) |
                               (is_frag_ ? (frag_off_ / 8) & 0x1fff : 0));
      put16(l3, frag);
      l3.push_back(ttl_);
      l3.push_back(proto);
      put16(l3, 0);
      append(l3, src_ip_.b.data(), 4);
      append(l3, dst_ip_.b.data(), 4);
      append(l3, ip_opts_.data(), ip_opts_.size());
      set16(l3.data() + 10, ip_csum_ ? *ip_csum_ : inet_checksum(l3.data(), hlen));
      break;
    }
    case L3::kV6: {
      ethertype = kEthIpv6;
      Bytes ext;
      for (size_t i = 0; i < exts_.size(); ++i) {
        Bytes h = exts_[i].bytes;
        if (exts_[i].type == kExtFragment && h.empty()) {
          h.assign(8, 0);
          set16(h.data() + 2, uint16_t((frag_off_ & 0xfff8) | (more_frags_ ? 1 : 0)));
          h[4] = uint8_t(ip_id_ >> 24);
          h[5] = uint8_t(ip_id_ >> 16);
          h[6] = uint8_t(ip_id_ >> 8);
          h[7] = uint8_t(ip_id_);
        }
        if (!h.empty()) h[0] = i + 1 < exts_.size() ? exts_[i + 1].type : proto;
        append(ext, h.data(), h.size());
      }
      uint8_t ver = ip_version_ ? *ip_version_ : 6;
      put32(l3, uint32_t(ver) << 28 | uint32_t(tos_) << 20);
      put16(l3, ip_total_len_ ? *ip_total_len_ : uint16_t(ext.size() + l4.size()));
      l3.push_back(exts_.empty() ? proto : exts_[0].type);
      l3.push_back(ttl_);
      append(l3, src_ip_.b.data(), 16);
      append(l3, dst_ip_.b.data(), 16);
      append(l3, ext.data(), ext.size());
      break;
    }
    case L3::kArp:
      ethertype = kEthArp;
      put16(l3, 1);
      put16(l3, kEthIpv4);
      l3.push_back(6);
      l3.push_back(4);
      put16(l3, arp_op_);
      append(l3, arp_sha_.b.data(), 6);
      append(l3, arp_spa_.b.data(), 4);
      append(l3, arp_tha_.b.data(), 6);
      append(l3, arp_tpa_.b.data(), 4);
      break;
    case L3::kNone:
      break;
  }

  Bytes f;
  f.reserve(22 + l3.size() + l4.size() + pad_to_);
  append(f, dst_mac_.b.data(), 6);
  append(f, src_mac_.b.data(), 6);
  for (auto [tpid, id] : vlans_) {
    put16(f, tpid);
    put16(f, id & 0x0fff);
  }
  put16(f, ethertype_ ? *ethertype_ : ethertype);
  append(f, l3.data(), l3.size());
  if (l3_ != L3::kArp) append(f, l4.data(), l4.size());
  if (f.size() < pad_to_) f.resize(pad_to_, 0);
  for (const auto& [off, bytes] : pokes_) {
    if (f.size() < off + bytes.size()) f.resize(off + bytes.size(), 0);
    std::copy(bytes.begin(), bytes.end(), f.begin() + off);
  }
  if (truncate_ && *truncate_ < f.size()) f.resize(*truncate_);
  return f;
}

// --- checksum helpers ---

Bytes strip_l2(const Bytes& frame) {
  size_t off = l2_len(frame.data(), frame.size());
  return Bytes(frame.begin() + off, frame.end());
}

bool ipv4_checksum_ok(const uint8_t* frame, size_t len) {
  size_t off = l2_len(frame, len);
  if (off < 2 || len < off + 20 || frame[off - 2] != 0x08 || frame[off - 1] != 0x00) return false;
  size_t ihl = (frame[off] & 0xf) * 4u;
  if (ihl < 20 || len < off + ihl) return false;
  return inet_checksum(frame + off, ihl) == 0;
}

bool l4_checksum_ok(const uint8_t* frame, size_t len) {
  PacketMeta m;
  DropReason r;
  if (!parse_packet(frame, uint32_t(len), &m, &r) || !m.has_l4 || m.is_fragment) return false;
  if (m.l3 != L3Kind::kIpv4 && m.l3 != L3Kind::kIpv6) return false;
  int at = l4_csum_offset(m.tuple.proto);
  if (at < 0) return false;
  const uint8_t* seg = frame + m.l4_offset;
  size_t n = size_t(m.l3_offset) + m.l3_len - m.l4_offset;
  if (n < size_t(at) + 2) return false;
  if (m.tuple.proto == 17 && m.tuple.family == Family::kV4 && seg[6] == 0 && seg[7] == 0)
    return true;
  uint32_t init = m.tuple.proto == 1
                      ? 0
                      : pseudo_sum(m.tuple.family, m.tuple.src, m.tuple.dst, m.tuple.proto, n);
  return inet_checksum(seg, n, init) == 0;
}

void fix_checksums(uint8_t* frame, size_t len) {
  size_t off = l2_len(frame, len);
  if (off >= 2 && len >= off + 20 && frame[off - 2] == 0x08 && frame[off - 1] == 0x00) {
    size_t ihl = (frame[off] & 0xf) * 4u;
    if (ihl >= 20 && len >= off + ihl) {
      set16(frame + off + 10, 0);
      set16(frame + off + 10, inet_checksum(frame + off, ihl));
    }
  }
  PacketMeta m;
  DropReason r;
  if (!parse_packet(frame, uint32_t(len), &m, &r) || !m.has_l4 || m.is_fragment) return;
  int at = l4_csum_offset(m.tuple.proto);
  if (at < 0) return;
  uint8_t* seg = frame + m.l4_offset;
  size_t n = size_t(m.l3_offset) + m.l3_len - m.l4_offset;
  if (n < size_t(at) + 2) return;
  set16(seg + at, 0);
  uint32_t init = m.tuple.proto == 1
                      ? 0
                      : pseudo_sum(m.tuple.family, m.tuple.src, m.tuple.dst, m.tuple.proto, n);
  uint16_t c = inet_checksum(seg, n, init);
  if (m.tuple.proto == 17 && c == 0) c = 0xffff;
  set16(seg + at, c);
}

}  // namespace baton::pktgen
