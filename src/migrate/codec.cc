// SPDX-License-Identifier: Apache-2.0
#include "migrate/codec.h"

#include <algorithm>
#include <cassert>
#include <cstring>

namespace baton::migrate {

const char* msg_kind_name(MsgKind k) {
  switch (k) {
    case MsgKind::kHello: return "HELLO";
    case MsgKind::kPrepare: return "PREPARE";
    case MsgKind::kAccept: return "ACCEPT";
    case MsgKind::kFail: return "FAIL";
    case MsgKind::kEntries: return "ENTRIES";
    case MsgKind::kRoundEnd: return "ROUND_END";
    case MsgKind::kFinalEnd: return "FINAL_END";
    case MsgKind::kActivate: return "ACTIVATE";
    case MsgKind::kActivated: return "ACTIVATED";
    case MsgKind::kHeldPackets: return "HELD_PACKETS";
    case MsgKind::kAck: return "ACK";
    case MsgKind::kAbort: return "ABORT";
    case MsgKind::kResume: return "RESUME";
    case MsgKind::kVmCounters: return "VM_COUNTERS";
    case MsgKind::kPlaced: return "PLACED";
  }
  return "UNKNOWN";
}

bool msg_kind_known(uint16_t v) { return v >= 1 && v <= kMsgKindMax; }

std::string state_kind_name(uint8_t kind) {
  static constexpr const char* kNames[kStateKindCount] = {
      "conn", "nat_mapping", "lb_conn", "sticky", "dynamic_acl", "snoop_binding",
      "mcast_membership", "vm_counters", "l7_conn"};
  if (kind < kStateKindCount) return kNames[kind];
  return "kind" + std::to_string(kind);
}

const char* codec_error_name(CodecError e) {
  switch (e) {
    case CodecError::kOk: return "ok";
    case CodecError::kTruncated: return "truncated";
    case CodecError::kBadMagic: return "bad_magic";
    case CodecError::kBadVersion: return "bad_version";
    case CodecError::kUnknownKind: return "unknown_kind";
    case CodecError::kTooLarge: return "too_large";
    case CodecError::kTrailingBytes: return "trailing_bytes";
    case CodecError::kBadCount: return "bad_count";
    case CodecError::kStringTooLong: return "string_too_long";
    case CodecError::kBadValue: return "bad_value";
    case CodecError::kKindMismatch: return "kind_mismatch";
  }
  return "unknown";
}

// ---- Writer / Reader --------------------------------------------------------------------------

namespace {
inline uint8_t* put16(uint8_t* p, uint16_t v) {
  p[0] = static_cast<uint8_t>(v >> 8);
  p[1] = static_cast<uint8_t>(v);
  return p + 2;
}
inline uint8_t* put32(uint8_t* p, uint32_t v) {
  p[0] = static_cast<uint8_t>(v >> 24);
  p[1] = static_cast<uint8_t>(v >> 16);
  p[2] = static_cast<uint8_t>(v >> 8);
  p[3] = static_cast<uint8_t>(v);
  return p + 4;
}
inline uint8_t* put64(uint8_t* p, uint64_t v) {
  return put32(put32(p, static_cast<uint32_t>(v >> 32)), static_cast<uint32_t>(v));
}
inline uint16_t get16(const uint8_t* p) { return static_cast<uint16_t>(p[0] << 8 | p[1]); }
inline uint32_t get32(const uint8_t* p) {
  return static_cast<uint32_t>(p[0]) << 24 | static_cast<uint32_t>(p[1]) << 16 |
         static_cast<uint32_t>(p[2]) << 8 | p[3];
}
inline uint64_t get64(const uint8_t* p) {
  return static_cast<uint64_t>(get32(p)) << 32 | get32(p + 4);
}
}  // namespace

void Writer::u16(uint16_t v) { put16(extend(2), v); }
void Writer::u32(uint32_t v) { put32(extend(4), v); }
void Writer::u64(uint64_t v) { put64(extend(8), v); }
void Writer::str(std::string_view s) {
  assert(s.size() <= 0xffff);
  u16(static_cast<uint16_t>(s.size()));
  bytes(reinterpret_cast<const uint8_t*>(s.data()), s.size());
}

bool Reader::need(size_t k) {
  if (!ok()) return false;
  if (n_ - off_ < k) return fail(CodecError::kTruncated);
  return true;
}
bool Reader::u8(uint8_t* v) {
  if (!need(1)) return false;
  *v = p_[off_++];
  return true;
}
bool Reader::u16(uint16_t* v) {
  if (!need(2)) return false;
  *v = static_cast<uint16_t>(p_[off_] << 8 | p_[off_ + 1]);
  off_ += 2;
  return true;
}
bool Reader::u32(uint32_t* v) {
  uint16_t hi, lo;
  if (!need(4)) return false;
  u16(&hi);
  u16(&lo);
  *v = static_cast<uint32_t>(hi) << 16 | lo;
  return true;
}
bool Reader::u64(uint64_t* v) {
  uint32_t hi, lo;
  if (!need(8)) return false;
  u32(&hi);
  u32(&lo);
  *v = static_cast<uint64_t>(hi) << 32 | lo;
  return true;
}
bool Reader::bytes(uint8_t* out, size_t n) {
  if (!need(n)) return false;
  std::copy(p_ + off_, p_ + off_ + n, out);
  off_ += n;
  return true;
}
bool Reader::str(std::string* s, size_t max_len) {
  uint16_t len;
  if (!u16(&len)) return false;
  if (len > max_len) return fail(CodecError::kStringTooLong);
  if (!need(len)) return false;
  s->assign(reinterpret_cast<const char*>(p_ + off_), len);
  off_ += len;
  return true;
}
bool Reader::count(uint32_t* n, int width, size_t min_elem_size) {
  uint32_t v = 0;
  if (width == 1) {
    uint8_t x;
    if (!u8(&x)) return false;
    v = x;
  } else if (width == 2) {
    uint16_t x;
    if (!u16(&x)) return false;
    v = x;
  } else {
    if (!u32(&v)) return false;
  }
  if (min_elem_size != 0 && static_cast<uint64_t>(v) * min_elem_size > n_ - off_) {
    return fail(CodecError::kBadCount);
  }
  *n = v;
  return true;
}
bool Reader::finish() {
  if (!ok()) return false;
  if (off_ != n_) return fail(CodecError::kTrailingBytes);
  return true;
}

// ---- shared pieces ----------------------------------------------------------------------------

namespace {

bool read_family(Reader& r, Family* f, bool allow_none) {
  uint8_t v;
  if (!r.u8(&v)) return false;
  if (v == 4) {
    *f = Family::kV4;
  } else if (v == 6) {
    *f = Family::kV6;
  } else if (v == 0 && allow_none) {
    *f = Family::kNone;
  } else {
    return r.fail(CodecError::kBadValue);
  }
  return true;
}

// An address of a known family: 4 or 16 bytes on the wire, IpAddr's v4 layout in memory.
void write_addr(Writer& w, const IpAddr& a, Family f) {
  w.bytes(a.b.data(), f == Family::kV4 ? 4 : 16);
}
bool read_addr(Reader& r, IpAddr* a, Family f) {
  *a = IpAddr{};
  return r.bytes(a->b.data(), f == Family::kV4 ? 4 : 16);
}

// Prefix: family (0 = absent), address, length.
void write_prefix(Writer& w, const std::optional<Prefix>& p) {
  if (!p) {
    w.u8(0);
    return;
  }
  w.u8(static_cast<uint8_t>(p->family));
  write_addr(w, p->addr, p->family);
  w.u8(p->len);
}
bool read_prefix(Reader& r, std::optional<Prefix>* out) {
  Family f;
  if (!read_family(r, &f, true)) return false;
  if (f == Family::kNone) {
    out->reset();
    return true;
  }
  Prefix p;
  p.family = f;
  if (!read_addr(r, &p.addr, f) || !r.u8(&p.len)) return false;
  if (p.len > (f == Family::kV4 ? 32 : 128)) return r.fail(CodecError::kBadValue);
  *out = p;
  return true;
}

// Smallest wire size of one ACL rule (all optional parts absent, empty zone).
constexpr size_t kMinAclRuleSize = 2 + 1 + 1 + 1 + 8 + 1 + 1 + 1;

void write_acl(Writer& w, const AclRule& a) {
  w.str(a.zone);
  write_prefix(w, a.src);
  write_prefix(w, a.dst);
  w.u8(a.proto ? 1 : 0);
  if (a.proto) w.u8(*a.proto);
  w.u16(a.sport.lo);
  w.u16(a.sport.hi);
  w.u16(a.dport.lo);
  w.u16(a.dport.hi);
  w.u8(a.vlan ? 1 : 0);
  if (a.vlan) w.u16(*a.vlan);
  w.u8(static_cast<uint8_t>(a.action));
  w.u8(a.log ? 1 : 0);
}
bool read_acl(Reader& r, AclRule* a) {
  uint8_t has, action, log;
  if (!r.str(&a->zone, kMaxNameLen) || !read_prefix(r, &a->src) || !read_prefix(r, &a->dst) ||
      !r.u8(&has))
    return false;
  if (has > 1) return r.fail(CodecError::kBadValue);
  if (has) {
    uint8_t p;
    if (!r.u8(&p)) return false;
    a->proto = p;
  }
  if (!r.u16(&a->sport.lo) || !r.u16(&a->sport.hi) || !r.u16(&a->dport.lo) ||
      !r.u16(&a->dport.hi) || !r.u8(&has))
    return false;
  if (has > 1) return r.fail(CodecError::kBadValue);
  if (has) {
    uint16_t v;
    if (!r.u16(&v)) return false;
    if (v > 4095) return r.fail(CodecError::kBadValue);
    a->vlan = v;
  }
  if (!r.u8(&action) || !r.u8(&log)) return false;
  if (action > 1 || log > 1 || a->sport.lo > a->sport.hi || a->dport.lo > a->dport.hi)
    return r.fail(CodecError::kBadValue);
  a->action = static_cast<Action>(action);
  a->log = log;
  return true;
}

bool acl_equal(const AclRule& a, const AclRule& b) {
  auto pfx_eq = [](const std::optional<Prefix>& x, const std::optional<Prefix>& y) {
    if (x.has_value() != y.has_value()) return false;
    return !x || (x->addr == y->addr && x->len == y->len && x->family == y->family);
  };
  return a.zone == b.zone && pfx_eq(a.src, b.src) && pfx_eq(a.dst, b.dst) && a.proto == b.proto &&
         a.sport.lo == b.sport.lo && a.sport.hi == b.sport.hi && a.dport.lo == b.dport.lo &&
         a.dport.hi == b.dport.hi && a.vlan == b.vlan && a.action == b.action && a.log == b.log;
}

void write_counts(Writer& w, const std::vector<KindCount>& v) {
  assert(v.size() <= 0xff);
  w.u8(static_cast<uint8_t>(v.size()));
  for (const auto& c : v) {
    w.u8(c.kind);
    w.u64(c.count);
  }
}
bool read_counts(Reader& r, std::vector<KindCount>* out) {
  uint32_t n;
  if (!r.count(&n, 1, 9)) return false;
  out->clear();
  uint64_t seen_hi[8] = {};  // 256 bits: each kind at most once
  for (uint32_t i = 0; i < n; ++i) {
    KindCount c;
    if (!r.u8(&c.kind) || !r.u64(&c.count)) return false;
    uint64_t bit = 1ull << (c.kind % 64);
    if (seen_hi[c.kind / 64] & bit) return r.fail(CodecError::kBadValue);
    seen_hi[c.kind / 64] |= bit;
    out->push_back(c);
  }
  return true;
}

bool peer_equal(const TcpPeer& a, const TcpPeer& b) {
  return a.end == b.end && a.maxend == b.maxend && a.maxwin == b.maxwin &&
         a.wscale == b.wscale && a.flags == b.flags;
}

constexpr uint8_t kKnownPeerFlags = peerflag::kWscaleSeen | peerflag::kSackPerm |
                                    peerflag::kFinSent | peerflag::kFinAcked | peerflag::kDataSeen;

}  // namespace

// ---- ConnRecord -------------------------------------------------------------------------------

ConnRecord ConnRecord::from_entry(const FlowKey& key, const ConnEntry& e, const ConnCounters& c,
                                  uint32_t now_s,
                                  const ConnXlate* x, const XlateHandoff* h,
                                  const L7Handoff* l7) {
  ConnRecord r;
  r.key = key;
  r.version = e.version.load(std::memory_order_relaxed);
  r.l4_state = e.l4_state;
  r.flags = e.flags & kWireFlags;
  if (!x) r.flags &= ~connflag::kXlate;
  if (r.flags & connflag::kXlate)
    r.xlate = XlateExt::of(*x, h ? *h : XlateHandoff{}, l7 ? *l7 : L7Handoff{});
  r.zone = e.zone;
  r.idle_s = now_s >= e.last_seen ? now_s - e.last_seen : 0;
  for (int d = 0; d < 2; ++d) {
    r.peer[d] = e.peer[d];
    r.peer[d].half_open_ack = 0;
    r.peer[d].reserved = 0;
    r.packets[d] = c.packets[d];
    r.bytes[d] = c.bytes[d];
  }
  return r;
}

ConnRecord ConnRecord::tombstone(const FlowKey& key, uint32_t version) {
  ConnRecord r;
  r.key = key;
  r.version = version;
  r.deleted = true;
  return r;
}

void ConnRecord::to_entry(ConnEntry* e, uint32_t now_s) const {
  // kXlate included: the installer installs the translation (xlate) with the entry.
  e->l4_state = l4_state;
  e->flags = static_cast<uint8_t>((e->flags & ~kWireFlags) | (flags & kWireFlags));
  e->zone = zone;
  e->last_seen = now_s >= idle_s ? now_s - idle_s : 0;
  for (int d = 0; d < 2; ++d) {
    e->peer[d] = peer[d];
  }
}

// Layout (112 bytes): version u32, deleted u8, family u8, proto u8, vlan u16, lo_addr[16],
// hi_addr[16], lo_port u16, hi_port u16, l4_state u8, flags u8, zone u8, idle_s u32,
// 2 x {end u32, maxend u32, maxwin u32, wscale u8, flags u8}, packets[2] u64, bytes[2] u64.
// The one writer of that layout: from a ConnRecord, or straight from a table entry (the
// delta path, which should not build a record only to read it back).
namespace {
struct RecordFields {
  uint32_t version;
  bool deleted;
  uint8_t l4_state, flags, zone;
  uint32_t idle_s;
  const TcpPeer* peer;     // [2], or nullptr: zeros
  const uint64_t* packets;  // [2], or nullptr: zeros
  const uint64_t* bytes;    // [2], or nullptr: zeros
  const XlateExt* xlate;    // written (and flag 0x20 kept) only when non-null
  bool handoff = true;      // version >= 3: the xlate's parts follow it
  bool l7 = true;           // version >= 4: ... including its l7 part
};
// Extension (16 bytes): reply_src addr4, reply_dst addr4, reply_sport u16, reply_dport u16,
// kind u8, parts u8 (version 3; 0 before), 2 bytes zero. Then the parts the parts byte names,
// in this order (docs/WIRE.md):
//   mapping (16): mapping_behavior u8, filtering u8, 2 zero, inside addr4, inside_port u16,
//                 outside addr4, outside_port u16
//   lb (12):      vip addr4, vip_port u16, backend addr4, backend_port u16
//   sticky (44):  method u8, family u8, prefix_len u8, 1 zero, value_len u32, data[16],
//                 backend addr4, backend_port u16, 2 zero, age_s u32, idle_s u32, ttl_s u32
//   l7 (44):      phase u8, 3 zero, then per direction (to_backend, to_client): seq u32,
//                 ack u32, tsval u32, tsecr u32, win_from u8, win_to u8, 2 zero (version 4)
constexpr uint8_t kMaxWscale = 14;  // RFC 7323 2.3

uint8_t* put_l7(uint8_t* p, const L7Handoff& l7) {
  *p++ = static_cast<uint8_t>(l7.phase);
  *p++ = 0;
  *p++ = 0;
  *p++ = 0;
  for (const SpliceDirOffsets* d : {&l7.offsets.to_backend, &l7.offsets.to_client}) {
    p = put32(p, d->seq);
    p = put32(p, d->ack);
    p = put32(p, d->tsval);
    p = put32(p, d->tsecr);
    *p++ = d->win_from;
    *p++ = d->win_to;
    *p++ = 0;
    *p++ = 0;
  }
  return p;
}

// The l7 part; false on a phase that does not travel, a shift beyond 14 or stray bytes.
bool get_l7(const uint8_t* p, L7Handoff* l7) {
  const auto phase = static_cast<L7Phase>(p[0]);
  if ((phase != L7Phase::kSpliced && phase != L7Phase::kClosed) || p[1] || p[2] || p[3])
    return false;
  l7->has = true;
  l7->phase = phase;
  p += 4;
  for (SpliceDirOffsets* d : {&l7->offsets.to_backend, &l7->offsets.to_client}) {
    d->seq = get32(p);
    d->ack = get32(p + 4);
    d->tsval = get32(p + 8);
    d->tsecr = get32(p + 12);
    d->win_from = p[16];
    d->win_to = p[17];
    if (d->win_from > kMaxWscale || d->win_to > kMaxWscale || p[18] || p[19]) return false;
    p += 20;
  }
  return true;
}

uint8_t* put_parts(uint8_t* p, const XlateHandoff& h) {
  if (h.has_mapping) {
    *p++ = h.mapping_behavior;
    *p++ = h.filtering;
    *p++ = 0;
    *p++ = 0;
    p = put32(p, h.inside_addr.host());
    p = put16(p, h.inside_port.host());
    p = put32(p, h.outside_addr.host());
    p = put16(p, h.outside_port.host());
  }
  if (h.has_lb) {
    p = put32(p, h.vip.host());
    p = put16(p, h.vip_port.host());
    p = put32(p, h.backend_addr.host());
    p = put16(p, h.backend_port.host());
  }
  if (h.has_sticky) {
    *p++ = h.sticky_method;
    *p++ = h.sticky_family;
    *p++ = h.sticky_prefix_len;
    *p++ = 0;
    p = put32(p, h.sticky_value_len);
    std::memcpy(p, h.sticky_data.data(), 16);
    p += 16;
    p = put32(p, h.sticky_backend_addr.host());
    p = put16(p, h.sticky_backend_port.host());
    *p++ = 0;
    *p++ = 0;
    p = put32(p, h.sticky_age_s);
    p = put32(p, h.sticky_idle_s);
    p = put32(p, h.sticky_ttl_s);
  }
  return p;
}

// What moves on an established entry, as a record and a compact update both carry it: both
// peers' windows (14 bytes each), then packets and bytes per direction (60 bytes in all).
inline uint8_t* put_moving(uint8_t* p, const TcpPeer* peer, const uint64_t* packets,
                           const uint64_t* bytes) {
  for (int d = 0; d < 2; d++) {
    p = put32(p, peer[d].end);
    p = put32(p, peer[d].maxend);
    p = put32(p, peer[d].maxwin);
    *p++ = peer[d].wscale;
    *p++ = peer[d].flags;
  }
  for (int d = 0; d < 2; d++) p = put64(p, packets[d]);
  for (int d = 0; d < 2; d++) p = put64(p, bytes[d]);
  return p;
}
// put_moving's bytes back; false on a window scale over 14 (RFC 7323 2.3) or an unknown peer flag.
// The outputs never overlap the bytes or each other (__restrict: no run-time overlap checks
// around the counters' vector copy).
bool get_moving(const uint8_t* __restrict p, TcpPeer* __restrict peer,
                uint64_t* __restrict packets, uint64_t* __restrict bytes) {
  for (int d = 0; d < 2; d++, p += 14) {
    TcpPeer& pr = peer[d];
    pr = TcpPeer{};
    pr.end = get32(p);
    pr.maxend = get32(p + 4);
    pr.maxwin = get32(p + 8);
    pr.wscale = p[12];
    pr.flags = p[13];
    if (pr.wscale > 14 || (pr.flags & ~kKnownPeerFlags)) return false;
  }
  for (int d = 0; d < 2; d++, p += 8) packets[d] = get64(p);
  for (int d = 0; d < 2; d++, p += 8) bytes[d] = get64(p);
  return true;
}

// A TCP entry's state is a TcpState; other protocols leave the byte unused.
bool state_fits(uint8_t proto, uint8_t l4_state) {
  return proto != static_cast<uint8_t>(IpProto::kTcp) ||
         l4_state < static_cast<uint8_t>(TcpState::kCount);
}

inline size_t put_record(uint8_t* out, const FlowKey& key, const RecordFields& f) {
  uint8_t* p = put32(out, f.version);
  *p++ = f.deleted ? 1 : 0;
  *p++ = static_cast<uint8_t>(key.family);
  *p++ = key.proto;
  p = put16(p, key.vlan);
  std::memcpy(p, key.lo_addr.b.data(), 16);
  std::memcpy(p + 16, key.hi_addr.b.data(), 16);
  p += 32;
  p = put16(p, key.lo_port.host());
  p = put16(p, key.hi_port.host());
  *p++ = f.l4_state;
  *p++ = static_cast<uint8_t>(f.flags & ConnRecord::kWireFlags &
                              (f.xlate ? 0xff : ~connflag::kXlate));
  *p++ = f.zone;
  p = put32(p, f.idle_s);
  if (f.peer) {
    p = put_moving(p, f.peer, f.packets, f.bytes);
  } else {
    std::memset(p, 0, 2 * 14 + 4 * 8);
    p += 2 * 14 + 4 * 8;
  }
  assert(p == out + kConnRecordSize);
  if (!f.xlate) return kConnRecordSize;
  p = put32(p, f.xlate->reply_src.host());
  p = put32(p, f.xlate->reply_dst.host());
  p = put16(p, f.xlate->reply_sport.host());
  p = put16(p, f.xlate->reply_dport.host());
  *p++ = static_cast<uint8_t>(f.xlate->kind);
  const uint8_t parts =
      f.handoff ? static_cast<uint8_t>(f.xlate->parts() & (f.l7 ? xpart::kAll : ~xpart::kL7)) : 0;
  *p++ = parts;
  *p++ = 0;
  *p++ = 0;
  if (parts) p = put_parts(p, f.xlate->handoff);
  if (parts & xpart::kL7) p = put_l7(p, f.xlate->l7);
  const size_t n = kConnRecordSize + kXlateExtSize + xlate_parts_size(parts);
  assert(p == out + n);
  return n;
}

// The extension after a record with flag 0x20 (its first 16 bytes); false on a kind outside
// kSnat..kLbFullNat, unknown parts bits or stray reserved bytes.
bool get_xlate(const uint8_t* p, XlateExt* x) {
  x->reply_src = be32::from_host(get32(p));
  x->reply_dst = be32::from_host(get32(p + 4));
  x->reply_sport = be16::from_host(get16(p + 8));
  x->reply_dport = be16::from_host(get16(p + 10));
  if (p[12] == 0 || p[12] >= static_cast<uint8_t>(XlateKind::kCount) || (p[13] & ~xpart::kAll) ||
      p[14] || p[15])
    return false;
  x->kind = static_cast<XlateKind>(p[12]);
  x->handoff = XlateHandoff{};
  x->l7 = L7Handoff{};
  return true;
}

// Which parts a kind may carry: SNAT needs its mapping, a hairpin has one when its source is
// dynamically mapped (not static NAT), an LB connection needs its service and may hold a
// sticky entry; static NAT and port forwarding hold nothing. An L7 connection is a full-NAT one
// (its backend side opened from a local address) with an l7 part.
bool parts_fit(XlateKind k, uint8_t parts) {
  switch (k) {
    case XlateKind::kSnat: return parts == xpart::kMapping;
    case XlateKind::kHairpin: return (parts & ~xpart::kMapping) == 0;
    case XlateKind::kLbNat:
      return (parts & xpart::kLb) && !(parts & (xpart::kMapping | xpart::kL7));
    case XlateKind::kLbFullNat: return (parts & xpart::kLb) && !(parts & xpart::kMapping);
    default: return parts == 0;
  }
}

// The parts after the extension; false on a value outside its domain.
bool get_parts(const uint8_t* p, uint8_t parts, XlateHandoff* h) {
  if (parts & xpart::kMapping) {
    if (p[0] > 2 || p[1] > 2 || p[2] || p[3]) return false;  // nat_policy.h behaviours
    h->has_mapping = true;
    h->mapping_behavior = p[0];
    h->filtering = p[1];
    h->inside_addr = be32::from_host(get32(p + 4));
    h->inside_port = be16::from_host(get16(p + 8));
    h->outside_addr = be32::from_host(get32(p + 10));
    h->outside_port = be16::from_host(get16(p + 14));
    if (h->outside_addr == be32() || h->inside_addr == be32()) return false;
    p += kMappingPartSize;
  }
  if (parts & xpart::kLb) {
    h->has_lb = true;
    h->vip = be32::from_host(get32(p));
    h->vip_port = be16::from_host(get16(p + 4));
    h->backend_addr = be32::from_host(get32(p + 6));
    h->backend_port = be16::from_host(get16(p + 10));
    if (h->vip == be32() || h->backend_addr == be32()) return false;
    p += kLbPartSize;
  }
  if (parts & xpart::kSticky) {
    // StickyKeyMethod 1..4; a source key has an address family, a value key a length.
    const uint8_t method = p[0], family = p[1], plen = p[2];
    const uint32_t vlen = get32(p + 4);
    const bool source = method == 1 || method == 2;
    if (method < 1 || method > 4 || p[3] || p[30] || p[31]) return false;
    if (source ? (family != static_cast<uint8_t>(Family::kV4) &&
                  family != static_cast<uint8_t>(Family::kV6)) || vlen != 0
               : family != 0 || plen != 0)
      return false;
    if (plen > (family == static_cast<uint8_t>(Family::kV4) ? 32 : 128) || (method != 2 && plen))
      return false;
    h->has_sticky = true;
    h->sticky_method = method;
    h->sticky_family = family;
    h->sticky_prefix_len = plen;
    h->sticky_value_len = vlen;
    std::memcpy(h->sticky_data.data(), p + 8, 16);
    h->sticky_backend_addr = be32::from_host(get32(p + 24));
    h->sticky_backend_port = be16::from_host(get16(p + 28));
    h->sticky_age_s = get32(p + 32);
    h->sticky_idle_s = get32(p + 36);
    h->sticky_ttl_s = get32(p + 40);
    if (h->sticky_backend_addr == be32()) return false;
  }
  return true;
}
}  // namespace

void ConnRecord::encode(Writer& w, uint16_t wire_version) const {
  uint8_t* p = w.extend(kMaxConnRecordSize);
  w.buffer().resize(w.size() - kMaxConnRecordSize + encode_to(p, wire_version));
}

size_t ConnRecord::encode_to(uint8_t* out, uint16_t wire_version) const {
  if (compact) {
    ConnEntry e;  // the fields encode_compact reads; last_seen 0 at "now" idle_s
    e.version.store(version, std::memory_order_relaxed);
    e.l4_state = l4_state;
    e.flags = flags;
    e.zone = zone;
    e.peer[0] = peer[0];
    e.peer[1] = peer[1];
    return encode_compact(fingerprint, key.proto, e, counters(), idle_s, out, place);
  }
  const bool x = !deleted && (flags & connflag::kXlate);
  return put_record(out, key, {version, deleted, l4_state, flags, zone, idle_s, peer, packets,
                               bytes, x ? &xlate : nullptr,
                               wire_version >= kProtocolVersionHandoff,
                               wire_version >= kProtocolVersionL7});
}

size_t ConnRecord::encode_entry(const FlowKey& key, const ConnEntry& e, const ConnCounters& c,
                                uint32_t now_s, uint8_t* out, const ConnXlate* x, const XlateHandoff* h,
                                uint16_t wire_version, const L7Handoff* l7) {
  // from_entry(key, e, c, now_s, x, h, l7).encode_to(out, wire_version), without the record.
  XlateExt ext;
  if (x && (e.flags & connflag::kXlate))
    ext = XlateExt::of(*x, h ? *h : XlateHandoff{}, l7 ? *l7 : L7Handoff{});
  return put_record(out, key,
                    {e.version.load(std::memory_order_relaxed), false, e.l4_state, e.flags, e.zone,
                     now_s >= e.last_seen ? now_s - e.last_seen : 0, e.peer, c.packets, c.bytes,
                     x && (e.flags & connflag::kXlate) ? &ext : nullptr,
                     wire_version >= kProtocolVersionHandoff, wire_version >= kProtocolVersionL7});
}

size_t ConnRecord::encode_tombstone(const FlowKey& key, uint32_t version, uint8_t* out) {
  // tombstone(key, version).encode_to(out): the fields after the key are zero.
  return put_record(out, key, {version, true, 0, 0, 0, 0, nullptr, nullptr, nullptr, nullptr});
}

size_t ConnRecord::encode_compact(uint64_t fp, uint8_t proto, const ConnEntry& e,
                                  const ConnCounters& c, uint32_t now_s, uint8_t* out,
                                  uint32_t place) {
  uint8_t* p = put32(out, e.version.load(std::memory_order_relaxed));
  p[0] = place == kNoPlace ? kRecordCompact : kRecordPlaced;
  p[1] = proto;
  p[2] = e.l4_state;
  p[3] = static_cast<uint8_t>(e.flags & kWireFlags);
  p[4] = e.zone;
  p[5] = p[6] = p[7] = 0;
  p = put64(p + 8, fp);
  p = put32(p, now_s >= e.last_seen ? now_s - e.last_seen : 0);
  p = put_moving(p, e.peer, c.packets, c.bytes);
  assert(p == out + kCompactRecordSize);
  if (place == kNoPlace) return kCompactRecordSize;
  put32(p, place);
  return kPlacedRecordSize;
}

bool ConnRecord::parse_compact(const uint8_t* p, ConnUpdate* u) {
  u->version = get32(p);
  u->proto = p[5];
  u->l4_state = p[6];
  u->flags = p[7];
  u->zone = p[8];
  u->fingerprint = compact_fingerprint(p);
  u->idle_s = get32(p + 20);
  return get_moving(p + 24, u->peer, u->counters.packets, u->counters.bytes) && !(p[9] | p[10] | p[11]) &&
         u->fingerprint != 0 && !(u->flags & ~kWireFlags) && state_fits(u->proto, u->l4_state);
}

bool ConnRecord::decode_compact(Reader& r, bool placed) {
  const uint8_t* p = r.take(placed ? kPlacedRecordSize : kCompactRecordSize);
  if (!p) return false;
  ConnUpdate u;
  if (!parse_compact(p, &u)) return r.fail(CodecError::kBadValue);
  place = placed ? placed_place(p) : kNoPlace;
  if (placed && place == kNoPlace) return r.fail(CodecError::kBadValue);
  version = u.version;
  key = FlowKey{};
  key.proto = u.proto;
  l4_state = u.l4_state;
  flags = u.flags;
  zone = u.zone;
  fingerprint = u.fingerprint;
  idle_s = u.idle_s;
  for (int d = 0; d < 2; d++) {
    peer[d] = u.peer[d];
    packets[d] = u.counters.packets[d];
    bytes[d] = u.counters.bytes[d];
  }
  deleted = false;
  compact = true;
  return true;
}

bool ConnRecord::decode(Reader& r, uint16_t wire_version) {
  if (const uint8_t* p = r.peek(5); p && (p[4] == kRecordCompact || p[4] == kRecordPlaced)) {
    const bool placed = p[4] == kRecordPlaced;
    if (wire_version < (placed ? kProtocolVersionPlaced : kProtocolVersionCompact))
      return r.fail(CodecError::kBadValue);
    return decode_compact(r, placed);
  }
  compact = false;
  fingerprint = 0;
  place = kNoPlace;
  if (!decode_fixed(r)) return false;
  if (!(flags & connflag::kXlate)) return true;
  // Only version 2 defines the flag; a tombstone never carries a translation, nor does an IPv6
  // connection (translation is IPv4's).
  if (wire_version < kProtocolVersionXlate || deleted || key.family != Family::kV4)
    return r.fail(CodecError::kBadValue);
  const uint8_t* p = r.take(kXlateExtSize);
  if (!p) return false;
  if (!get_xlate(p, &xlate)) return r.fail(CodecError::kBadValue);
  const uint8_t parts = p[13];
  if (parts == 0 && wire_version < kProtocolVersionHandoff) return true;
  if (wire_version < kProtocolVersionHandoff || !parts_fit(xlate.kind, parts))
    return r.fail(CodecError::kBadValue);
  if ((parts & xpart::kL7) && wire_version < kProtocolVersionL7) return r.fail(CodecError::kBadValue);
  const uint8_t* q = r.take(xlate_parts_size(parts));
  if (!q) return false;
  if (!get_parts(q, parts, &xlate.handoff)) return r.fail(CodecError::kBadValue);
  // The l7 part comes last.
  if ((parts & xpart::kL7) && !get_l7(q + xlate_parts_size(parts & ~xpart::kL7), &xlate.l7))
    return r.fail(CodecError::kBadValue);
  return true;
}

bool ConnRecord::decode_fixed(Reader& r) {
  if (r.remaining() >= kConnRecordSize) {
    // Fast path: the whole record is there, so no field can be truncated; the checks (and
    // their error, kBadValue) are those of the field-by-field path below.
    const uint8_t* p = r.take(kConnRecordSize);
    version = get32(p);
    const uint8_t del = p[4];
    if (p[5] == 4)
      key.family = Family::kV4;
    else if (p[5] == 6)
      key.family = Family::kV6;
    else
      return r.fail(CodecError::kBadValue);
    const uint8_t proto = p[6];
    const uint16_t vlan = get16(p + 7);
    // Each address in one 16-byte store, for the same reason as the key's tail below (GCC
    // copies a 16-byte memcpy from an unaligned source in two 8-byte halves).
    using u64x2 = uint64_t __attribute__((vector_size(16)));
    u64x2 lo, hi;
    std::memcpy(&lo, p + 9, 16);
    std::memcpy(&hi, p + 25, 16);
    std::memcpy(key.lo_addr.b.data(), &lo, 16);
    std::memcpy(key.hi_addr.b.data(), &hi, 16);
    const uint16_t lo_port = get16(p + 41), hi_port = get16(p + 43);
    l4_state = p[45];
    flags = p[46];
    zone = p[47];
    idle_s = get32(p + 48);
    if (!get_moving(p + 52, peer, packets, bytes)) return r.fail(CodecError::kBadValue);
    if (del > 1 || vlan > 4095 || (flags & ~kWireFlags)) return r.fail(CodecError::kBadValue);
    if (!state_fits(proto, l4_state)) return r.fail(CodecError::kBadValue);
    if (key.family == Family::kV4 && !(key.lo_addr.is_v4_form() && key.hi_addr.is_v4_form()))
      return r.fail(CodecError::kBadValue);
    deleted = del;
    // The key's last word (ports, proto, family, vlan) in one store: its readers load it
    // whole (the installer's copy, the owner's tuple), and a load spanning several smaller
    // stores is not forwarded from them (a stall of a dozen cycles per record).
    struct Tail {
      be16 lo_port, hi_port;
      uint8_t proto;
      Family family;
      uint16_t vlan;
    } tail{be16::from_host(lo_port), be16::from_host(hi_port), proto, key.family, vlan};
    static_assert(sizeof(Tail) == 8 &&
                  offsetof(FlowKey, vlan) + 2 - offsetof(FlowKey, lo_port) == 8);
    uint64_t word;
    std::memcpy(&word, &tail, sizeof word);
    std::memcpy(&key.lo_port, &word, sizeof word);
    return true;
  }
  uint8_t del;
  uint16_t lo_port, hi_port;
  if (!r.u32(&version) || !r.u8(&del) || !read_family(r, &key.family, false) ||
      !r.u8(&key.proto) || !r.u16(&key.vlan) || !r.ip(&key.lo_addr) || !r.ip(&key.hi_addr) ||
      !r.u16(&lo_port) || !r.u16(&hi_port) || !r.u8(&l4_state) || !r.u8(&flags) ||
      !r.u8(&zone) || !r.u32(&idle_s))
    return false;
  for (auto& p : peer) {
    p = TcpPeer{};
    if (!r.u32(&p.end) || !r.u32(&p.maxend) || !r.u32(&p.maxwin) || !r.u8(&p.wscale) ||
        !r.u8(&p.flags))
      return false;
    // RFC 7323 section 2.3: a shift above 14 is not a valid window scale.
    if (p.wscale > 14 || (p.flags & ~kKnownPeerFlags)) return r.fail(CodecError::kBadValue);
  }
  for (auto& v : packets)
    if (!r.u64(&v)) return false;
  for (auto& v : bytes)
    if (!r.u64(&v)) return false;
  if (del > 1 || key.vlan > 4095 || (flags & ~kWireFlags)) return r.fail(CodecError::kBadValue);
  if (!state_fits(key.proto, l4_state)) return r.fail(CodecError::kBadValue);
  // An IPv4 key keeps bytes 4..15 zero: the table keeps only the first four (FlowKeyV4).
  if (key.family == Family::kV4 && !(key.lo_addr.is_v4_form() && key.hi_addr.is_v4_form()))
    return r.fail(CodecError::kBadValue);
  deleted = del;
  key.lo_port = be16::from_host(lo_port);
  key.hi_port = be16::from_host(hi_port);
  return true;
}

bool ConnRecord::operator==(const ConnRecord& o) const {
  return compact == o.compact && fingerprint == o.fingerprint && place == o.place && key == o.key &&
         version == o.version && deleted == o.deleted && l4_state == o.l4_state &&
         flags == o.flags && zone == o.zone && idle_s == o.idle_s && peer_equal(peer[0], o.peer[0]) &&
         peer_equal(peer[1], o.peer[1]) && packets[0] == o.packets[0] &&
         packets[1] == o.packets[1] && bytes[0] == o.bytes[0] && bytes[1] == o.bytes[1] &&
         (!(flags & connflag::kXlate) || xlate == o.xlate);
}

// ---- messages ---------------------------------------------------------------------------------

void HelloMsg::encode(Writer& w) const {
  w.u16(version_min);
  w.u16(version_max);
  w.str(instance);
  w.u32(kinds);
}
bool HelloMsg::decode(Reader& r) {
  if (!r.u16(&version_min) || !r.u16(&version_max) || !r.str(&instance, kMaxNameLen) ||
      !r.u32(&kinds))
    return false;
  if (version_min == 0 || version_min > version_max) return r.fail(CodecError::kBadValue);
  return true;
}

void PrepareMsg::encode(Writer& w) const {
  w.u16(protocol_version);
  w.str(source_instance);
  w.str(vm.name);
  w.bytes(vm.mac.b.data(), 6);
  assert(vm.ipv4.size() <= 0xffff && vm.ipv6.size() <= 0xffff && vm.profile.acl.size() <= 0xffff);
  w.u16(static_cast<uint16_t>(vm.ipv4.size()));
  for (const auto& a : vm.ipv4) write_addr(w, a, Family::kV4);
  w.u16(static_cast<uint16_t>(vm.ipv6.size()));
  for (const auto& a : vm.ipv6) write_addr(w, a, Family::kV6);
  w.u16(vm.vlan);
  w.u64(vm.profile.qos_rate_bps);
  if (vm.profile.nat_public_ip && nat_family != Family::kNone) {
    w.u8(static_cast<uint8_t>(nat_family));
    write_addr(w, *vm.profile.nat_public_ip, nat_family);
  } else {
    w.u8(0);
  }
  w.u16(static_cast<uint16_t>(vm.profile.acl.size()));
  for (const auto& a : vm.profile.acl) write_acl(w, a);
  write_counts(w, counts);
  if (protocol_version < kProtocolVersionHandoff) return;
  // Version 3: nat needs (11 bytes each), then lb needs (19 bytes each), u32 counts.
  const size_t nn = std::min(needs.nat.size(), HandoffNeeds::kMaxNeeds);
  const size_t ln = std::min(needs.lb.size(), HandoffNeeds::kMaxNeeds);
  w.u32(static_cast<uint32_t>(nn));
  for (size_t i = 0; i < nn; i++) {
    const NatNeed& n = needs.nat[i];
    w.u8(n.proto);
    w.u32(n.inside_addr.host());
    w.u32(n.outside_addr.host());
    w.u16(n.outside_port.host());
  }
  w.u32(static_cast<uint32_t>(ln));
  for (size_t i = 0; i < ln; i++) {
    const LbNeed& n = needs.lb[i];
    w.u8(n.proto);
    w.u32(n.vip.host());
    w.u16(n.vip_port.host());
    w.u32(n.backend_addr.host());
    w.u16(n.backend_port.host());
    w.u32(n.local_addr.host());
  }
  if (protocol_version >= kProtocolVersionFamilies) w.u64(conn_v6);
  if (protocol_version >= kProtocolVersionCumulative) w.u32(vm.profile.max_half_open);
}

namespace {
constexpr size_t kNatNeedSize = 11, kLbNeedSize = 17;
bool read_be32(Reader& r, be32* v) {
  uint32_t x;
  if (!r.u32(&x)) return false;
  *v = be32::from_host(x);
  return true;
}
bool read_be16(Reader& r, be16* v) {
  uint16_t x;
  if (!r.u16(&x)) return false;
  *v = be16::from_host(x);
  return true;
}
bool read_needs(Reader& r, HandoffNeeds* needs) {
  uint32_t n;
  if (!r.count(&n, 4, kNatNeedSize)) return false;
  if (n > HandoffNeeds::kMaxNeeds) return r.fail(CodecError::kBadCount);
  needs->nat.assign(n, NatNeed{});
  for (NatNeed& x : needs->nat) {
    if (!r.u8(&x.proto) || !read_be32(r, &x.inside_addr) || !read_be32(r, &x.outside_addr) ||
        !read_be16(r, &x.outside_port))
      return false;
    if (x.outside_addr == be32()) return r.fail(CodecError::kBadValue);
  }
  if (!r.count(&n, 4, kLbNeedSize)) return false;
  if (n > HandoffNeeds::kMaxNeeds) return r.fail(CodecError::kBadCount);
  needs->lb.assign(n, LbNeed{});
  for (LbNeed& x : needs->lb) {
    if (!r.u8(&x.proto) || !read_be32(r, &x.vip) || !read_be16(r, &x.vip_port) ||
        !read_be32(r, &x.backend_addr) || !read_be16(r, &x.backend_port) ||
        !read_be32(r, &x.local_addr))
      return false;
    if (x.vip == be32() || x.backend_addr == be32()) return r.fail(CodecError::kBadValue);
  }
  return true;
}
}  // namespace

bool PrepareMsg::decode(Reader& r) {
  uint32_t n;
  if (!r.u16(&protocol_version) || !r.str(&source_instance, kMaxNameLen) ||
      !r.str(&vm.name, kMaxNameLen) || !r.bytes(vm.mac.b.data(), 6) || !r.count(&n, 2, 4))
    return false;
  vm.ipv4.assign(n, IpAddr{});
  for (auto& a : vm.ipv4)
    if (!read_addr(r, &a, Family::kV4)) return false;
  if (!r.count(&n, 2, 16)) return false;
  vm.ipv6.assign(n, IpAddr{});
  for (auto& a : vm.ipv6)
    if (!read_addr(r, &a, Family::kV6)) return false;
  if (!r.u16(&vm.vlan) || !r.u64(&vm.profile.qos_rate_bps) || !read_family(r, &nat_family, true))
    return false;
  if (vm.vlan > 4095) return r.fail(CodecError::kBadValue);
  vm.profile.nat_public_ip.reset();
  if (nat_family != Family::kNone) {
    IpAddr a;
    if (!read_addr(r, &a, nat_family)) return false;
    vm.profile.nat_public_ip = a;
  }
  if (!r.count(&n, 2, kMinAclRuleSize)) return false;
  vm.profile.acl.assign(n, AclRule{});
  for (auto& a : vm.profile.acl)
    if (!read_acl(r, &a)) return false;
  if (!read_counts(r, &counts)) return false;
  needs = HandoffNeeds{};
  conn_v6 = 0;
  vm.profile.max_half_open = 0;
  if (protocol_version >= kProtocolVersionHandoff && !read_needs(r, &needs)) return false;
  if (protocol_version < kProtocolVersionFamilies) return true;
  if (!r.u64(&conn_v6)) return false;
  if (conn_v6 > count_of(StateKind::kConn)) return r.fail(CodecError::kBadValue);
  return protocol_version < kProtocolVersionCumulative || r.u32(&vm.profile.max_half_open);
}

bool operator==(const PrepareMsg& a, const PrepareMsg& b) {
  if (a.protocol_version != b.protocol_version || a.source_instance != b.source_instance ||
      a.vm.name != b.vm.name || a.vm.mac != b.vm.mac || a.vm.ipv4 != b.vm.ipv4 ||
      a.vm.ipv6 != b.vm.ipv6 || a.vm.vlan != b.vm.vlan ||
      a.vm.profile.qos_rate_bps != b.vm.profile.qos_rate_bps ||
      a.vm.profile.max_half_open != b.vm.profile.max_half_open ||
      a.vm.profile.nat_public_ip != b.vm.profile.nat_public_ip || a.nat_family != b.nat_family ||
      a.counts != b.counts || a.needs != b.needs || a.conn_v6 != b.conn_v6 ||
      a.vm.profile.acl.size() != b.vm.profile.acl.size())
    return false;
  for (size_t i = 0; i < a.vm.profile.acl.size(); ++i)
    if (!acl_equal(a.vm.profile.acl[i], b.vm.profile.acl[i])) return false;
  return true;
}

namespace {

// FAIL and ABORT: a reason (never kNone) and its detail, cut to kMaxDetailLen.
void encode_reason(Writer& w, FailReason reason, const std::string& detail) {
  w.u8(static_cast<uint8_t>(reason));
  w.str(detail.substr(0, kMaxDetailLen));
}
bool decode_reason(Reader& r, FailReason* reason, std::string* detail) {
  uint8_t v;
  if (!r.u8(&v) || !r.str(detail, kMaxDetailLen)) return false;
  auto fr = fail_reason_from_wire(v);
  if (!fr || *fr == FailReason::kNone) return r.fail(CodecError::kBadValue);
  *reason = *fr;
  return true;
}

}  // namespace

void FailMsg::encode(Writer& w) const { encode_reason(w, reason, detail); }
bool FailMsg::decode(Reader& r) { return decode_reason(r, &reason, &detail); }

void EntriesMsg::encode(Writer& w) const {
  assert(records.size() <= kMaxRecordsPerFrame);
  w.u32(round);
  w.u32(static_cast<uint32_t>(records.size()));
  for (const auto& rec : records) rec.encode(w);
}
bool EntriesMsg::decode(Reader& r) {
  uint32_t n;
  if (!r.u32(&round) || !r.count(&n, 4, kCompactRecordSize)) return false;
  records.assign(n, ConnRecord{});
  for (auto& rec : records)
    if (!rec.decode(r)) return false;
  return true;
}

void EntriesFrameWriter::begin(uint64_t migration_id, uint32_t round, size_t max_records,
                               uint16_t version) {
  assert(max_records <= kMaxRecordsPerFrame);
  const size_t need = kHeaderSize + 8 + max_records * kMaxConnRecordSize;
  if (buf_.size() < need) buf_.resize(need);  // only the first frame (or a larger one) grows
  FrameHeader h;
  h.version = version;
  version_ = version;
  h.kind = MsgKind::kEntries;
  h.migration_id = migration_id;
  uint8_t* p = put32(buf_.data(), h.magic);
  p = put16(p, h.version);
  p = put16(p, static_cast<uint16_t>(h.kind));
  p = put32(p, 0);  // body_len, by finish()
  p = put64(p, h.migration_id);
  p = put64(p, 0);  // seq, by the sender
  put32(p, round);
  records_ = 0;
  max_records_ = max_records;
  used_ = 0;
  last_ = kNone;
}

std::pair<uint8_t*, size_t> EntriesFrameWriter::finish() {
  settle();
  const size_t body = 8 + used_;
  put32(buf_.data() + 8, static_cast<uint32_t>(body));
  put32(buf_.data() + kHeaderSize + 4, static_cast<uint32_t>(records_));
  return {buf_.data(), kHeaderSize + body};
}

void set_frame_seq(uint8_t* frame, uint64_t seq) { put64(frame + 20, seq); }

void RoundEndMsg::encode(Writer& w) const {
  w.u32(round);
  w.u64(entries);
}
bool RoundEndMsg::decode(Reader& r) { return r.u32(&round) && r.u64(&entries); }

void FinalEndMsg::encode(Writer& w) const {
  w.u32(round);
  w.u64(entries_total);
}
bool FinalEndMsg::decode(Reader& r) { return r.u32(&round) && r.u64(&entries_total); }

void ActivatedMsg::encode(Writer& w) const { write_counts(w, installed); }
bool ActivatedMsg::decode(Reader& r) { return read_counts(r, &installed); }

void HeldPacketsMsg::encode(Writer& w) const {
  w.u32(static_cast<uint32_t>(packets.size()));
  for (const auto& p : packets) {
    assert(p.frame.size() <= kMaxHeldFrameLen);
    w.u8(static_cast<uint8_t>(p.side));
    w.u16(static_cast<uint16_t>(p.frame.size()));
    w.bytes(p.frame.data(), p.frame.size());
  }
}
bool HeldPacketsMsg::decode(Reader& r) {
  uint32_t n;
  if (!r.count(&n, 4, 3)) return false;
  packets.assign(n, HeldPacket{});
  for (auto& p : packets) {
    uint8_t side;
    uint16_t len;
    if (!r.u8(&side) || !r.u16(&len)) return false;
    if (side > 1 || len > kMaxHeldFrameLen) return r.fail(CodecError::kBadValue);
    p.side = static_cast<Side>(side);
    p.frame.resize(len);
    if (!r.bytes(p.frame.data(), len)) return false;
  }
  return true;
}

void AckMsg::encode(Writer& w) const { w.u64(acked_seq); }

void PlacedMsg::encode(Writer& w) const {
  w.u32(round);
  w.u32(static_cast<uint32_t>(places.size()));
  for (uint32_t p : places) w.u32(p);
}
bool PlacedMsg::decode(Reader& r) {
  uint32_t n;
  if (!r.u32(&round) || !r.count(&n, 4, 4)) return false;
  places.resize(n);
  for (uint32_t& p : places)
    if (!r.u32(&p)) return false;
  return true;
}
bool AckMsg::decode(Reader& r) { return r.u64(&acked_seq); }

// from_vm packets, from_vm bytes, to_vm packets, to_vm bytes.
void VmCountersMsg::encode(Writer& w) const {
  for (int s = 0; s < 2; s++) {
    w.u64(traffic.packets[s]);
    w.u64(traffic.bytes[s]);
  }
}
bool VmCountersMsg::decode(Reader& r) {
  for (int s = 0; s < 2; s++)
    if (!r.u64(&traffic.packets[s]) || !r.u64(&traffic.bytes[s])) return false;
  return true;
}

void ResumeMsg::encode(Writer& w) const {
  w.u64(acked_seq);
  w.u64(sent_seq);
}
bool ResumeMsg::decode(Reader& r) {
  if (!r.u64(&acked_seq) || !r.u64(&sent_seq)) return false;
  return acked_seq <= sent_seq || r.fail(CodecError::kBadValue);
}

void AbortMsg::encode(Writer& w) const { encode_reason(w, reason, detail); }
bool AbortMsg::decode(Reader& r) { return decode_reason(r, &reason, &detail); }

// ---- frames -----------------------------------------------------------------------------------

void encode_header(const FrameHeader& h, Writer& w) {
  w.u32(h.magic);
  w.u16(h.version);
  w.u16(static_cast<uint16_t>(h.kind));
  w.u32(h.body_len);
  w.u64(h.migration_id);
  w.u64(h.seq);
}

CodecError decode_header(const uint8_t* p, size_t n, FrameHeader* h) {
  if (n < kHeaderSize) return CodecError::kTruncated;
  Reader r(p, kHeaderSize);
  FrameHeader out;
  uint16_t kind;
  r.u32(&out.magic);
  r.u16(&out.version);
  r.u16(&kind);
  r.u32(&out.body_len);
  r.u64(&out.migration_id);
  r.u64(&out.seq);
  if (out.magic != kMagic) return CodecError::kBadMagic;
  if (out.version < kProtocolVersionMin || out.version > kProtocolVersionMax)
    return CodecError::kBadVersion;
  if (!msg_kind_known(kind)) return CodecError::kUnknownKind;
  if (out.body_len > kMaxBodySize) return CodecError::kTooLarge;
  out.kind = static_cast<MsgKind>(kind);
  *h = out;
  return CodecError::kOk;
}

CodecError decode_frame(const uint8_t* p, size_t n, Frame* f) {
  FrameHeader h;
  CodecError e = decode_header(p, n, &h);
  if (e != CodecError::kOk) return e;
  size_t total = kHeaderSize + h.body_len;
  if (n < total) return CodecError::kTruncated;
  if (n > total) return CodecError::kTrailingBytes;
  f->header = h;
  f->body.assign(p + kHeaderSize, p + total);
  return CodecError::kOk;
}

}  // namespace baton::migrate
