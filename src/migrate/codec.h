// SPDX-License-Identifier: Apache-2.0
//
// The migration wire format: explicit, versioned, big-endian, bounds-checked (docs/WIRE.md is
// the reference; keep the two in step).
//
// Theory of operation. Every message is one frame: a fixed 28-byte header followed by a body
// whose length the header gives.
//
//   magic u32 'BATN' | version u16 | kind u16 | body_len u32 | migration_id u64 | seq u64 | body
//
// In-memory structs (ConnEntry, VmConfig) are never copied onto the wire: each message has a
// typed struct here with encode(Writer&) / decode(Reader&) that write and read field by field,
// so the layout in memory may change freely while the wire stays put, and a new protocol
// version is a new branch in decode, not a new struct. Reader never reads past its buffer: every
// read is checked, the first failure sticks (later reads return false and change nothing), and
// decode_body() also refuses trailing bytes. Counts are checked against the bytes left before
// anything is allocated, so a hostile length cannot make us reserve gigabytes.
//
// Idempotency: each ConnRecord carries the entry's version (ConnEntry::version, the seqlock
// counter); a destination applies a record only if it is newer than what it holds. The codec
// does not apply anything; it only carries the version.
#pragma once

#include <cstdint>
#include <cstring>
#include <optional>
#include <utility>
#include <string>
#include <string_view>
#include <vector>

#include "common/net_types.h"
#include "config/config.h"
#include "conntrack/conn_entry.h"
#include "dataplane/vm_traffic.h"
#include "lb/l7_proxy.h"
#include "migrate/feedback.h"
#include "nat/conn_xlate.h"

namespace baton::migrate {

constexpr uint32_t kMagic = 0x4241544e;  // "BATN"
// Protocol versions this build speaks. A frame with a version outside this range is refused
// (kBadVersion); HELLO negotiates the highest common one (negotiation.h).
constexpr uint16_t kProtocolVersionMin = 1;
constexpr uint16_t kProtocolVersionMax = 8;
// Version 2: a ConnRecord of a translated connection (flag 0x20) is followed by its translation
// (XlateExt, kXlateExtSize bytes). Version 1 frames never carry one.
constexpr uint16_t kProtocolVersionXlate = 2;
// Version 3: the extension may be followed by what stands behind the translation (XlateHandoff:
// a dynamic mapping, an LB service and backend, a sticky entry), so SNAT, hairpin and L4 LB
// connections travel; PREPARE lists the endpoints they need (HandoffNeeds) for the destination
// to check before anything moves. Frames are sent at the version both sides negotiated.
constexpr uint16_t kProtocolVersionHandoff = 3;
// Version 4: an L7 connection in phase spliced (or closed, its backend side open) travels as its
// LB full-NAT translation plus an l7 part (phase and splice offsets, lb/l7_proxy.h L7Handoff).
// A peer of version 3 has no l7 part: a VM with L7 connections is UNSUPPORTED there.
constexpr uint16_t kProtocolVersionL7 = 4;
// Version 5: PREPARE says how many of the VM's connections are IPv6 (PrepareMsg::conn_v6), so
// that the destination checks each address family's table (conn_table.h keeps one per family)
// before anything moves. Before it, only the total was checked, against both tables' room.
constexpr uint16_t kProtocolVersionFamilies = 5;
// Version 6: the VM's cumulative traffic travels (VM_COUNTERS, sent with the final delta), so
// its packet and byte counts do not restart at the destination (dataplane/vm_traffic.h); and
// PREPARE's profile ends with the VM's max_half_open (u32).
constexpr uint16_t kProtocolVersionCumulative = 6;
// Version 7: a record may be a compact update (kind byte 2, kCompactRecordSize bytes) of an
// entry the destination holds already from an earlier round: named by its key's fingerprint
// under the migration's seed (FlowKey::fingerprint), with the fields that move and no key.
constexpr uint16_t kProtocolVersionCompact = 7;
// Version 8: the destination tells the source where each entry record of a round went
// (PLACED, a placement per record, before the round's ACK), and an update may then name that
// place (kind byte 3, kPlacedRecordSize bytes: a compact update and the placement), so that the
// destination puts it where it goes without looking its fingerprint up.
constexpr uint16_t kProtocolVersionPlaced = 8;
constexpr size_t kHeaderSize = 28;
constexpr size_t kMaxFrameSize = 16u << 20;  // header + body
constexpr size_t kMaxBodySize = kMaxFrameSize - kHeaderSize;
constexpr size_t kMaxNameLen = 255;      // instance, VM and zone names
constexpr size_t kMaxDetailLen = 4096;   // FAIL / ABORT detail text
constexpr size_t kMaxHeldFrameLen = 16384;
constexpr size_t kConnRecordSize = 112;  // fixed part; docs/WIRE.md gives the layout
constexpr size_t kCompactRecordSize = 84;  // a compact update (version 7), docs/WIRE.md
constexpr size_t kPlacedRecordSize = 88;   // the same and its placement (version 8)
// The kind byte (offset 4) of a record: version 1 called it "deleted".
constexpr uint8_t kRecordEntry = 0, kRecordTombstone = 1, kRecordCompact = 2, kRecordPlaced = 3;
// A placement (PLACED, a placed update): a token of the destination's making, which the source
// only echoes; kNoPlace: none (the record was not installed, or the source has none).
constexpr uint32_t kNoPlace = 0xffffffffu;
constexpr size_t kXlateExtSize = 16;     // the translation after a record with flag 0x20
// Version 3 parts after the extension, present when its parts byte (offset 13) says so.
constexpr size_t kMappingPartSize = 16;
constexpr size_t kLbPartSize = 12;
constexpr size_t kStickyPartSize = 44;
constexpr size_t kL7PartSize = 44;  // version 4
namespace xpart {
constexpr uint8_t kMapping = 0x01;
constexpr uint8_t kLb = 0x02;
constexpr uint8_t kSticky = 0x04;
constexpr uint8_t kL7 = 0x08;  // version 4
constexpr uint8_t kAll = kMapping | kLb | kSticky | kL7;
}  // namespace xpart
constexpr size_t kMaxConnRecordSize = kConnRecordSize + kXlateExtSize + kMappingPartSize +
                                      kLbPartSize + kStickyPartSize + kL7PartSize;
// Bytes of the parts a parts byte announces.
constexpr size_t xlate_parts_size(uint8_t parts) {
  return ((parts & xpart::kMapping) ? kMappingPartSize : 0) +
         ((parts & xpart::kLb) ? kLbPartSize : 0) +
         ((parts & xpart::kSticky) ? kStickyPartSize : 0) + ((parts & xpart::kL7) ? kL7PartSize : 0);
}

enum class MsgKind : uint16_t {
  kHello = 1,
  kPrepare = 2,
  kAccept = 3,
  kFail = 4,
  kEntries = 5,
  kRoundEnd = 6,
  kFinalEnd = 7,
  kActivate = 8,
  kActivated = 9,
  kHeldPackets = 10,
  kAck = 11,
  kAbort = 12,
  kResume = 13,
  kVmCounters = 14,  // version 6
  kPlaced = 15,      // version 8
};
constexpr uint16_t kMsgKindMax = 15;
const char* msg_kind_name(MsgKind k);
bool msg_kind_known(uint16_t v);

// Kinds of state a VM may own (DESIGN.md section 1), one table each. The wire value is the bit
// number in HELLO's bitmap. Only kConn has records in protocol version 1; the others are named so
// that a source can count them and a destination can refuse them as UNSUPPORTED.
enum class StateKind : uint8_t {
  kConn = 0,
  kNatMapping = 1,
  kLbConn = 2,
  kSticky = 3,
  kDynamicAcl = 4,
  kSnoopBinding = 5,
  kMcastMembership = 6,
  kVmCounters = 7,
  kL7Conn = 8,  // an L7 (HTTP) proxied connection: its splice state travels from version 4
};
constexpr uint8_t kStateKindCount = 9;
constexpr uint32_t kind_bit(StateKind k) { return 1u << static_cast<uint8_t>(k); }
// "conn", "nat_mapping", ...; also the name of the kind's table. "kind<N>" for an unknown one.
std::string state_kind_name(uint8_t kind);

enum class CodecError : uint8_t {
  kOk = 0,
  kTruncated,      // fewer bytes than the header or a field needs
  kBadMagic,
  kBadVersion,     // protocol version outside [kProtocolVersionMin, kProtocolVersionMax]
  kUnknownKind,
  kTooLarge,       // body length beyond kMaxBodySize
  kTrailingBytes,  // bytes left after the last field
  kBadCount,       // a count larger than the remaining body can hold
  kStringTooLong,
  kBadValue,       // a field outside its domain (unknown enum, stray flag bits, ...)
  kKindMismatch,   // decode_body<T> on a frame of another kind
};
const char* codec_error_name(CodecError e);

// Appends big-endian fields to a growing buffer. Never fails; the caller keeps within limits
// (encode() of each message asserts its own counts fit their wire width).
class Writer {
 public:
  void u8(uint8_t v) { buf_.push_back(v); }
  void u16(uint16_t v);
  void u32(uint32_t v);
  void u64(uint64_t v);
  // Grows the buffer by n bytes and returns where they start (for fixed-size records written
  // in one go; the pointer is valid until the next write).
  uint8_t* extend(size_t n) {
    size_t at = buf_.size();
    buf_.resize(at + n);
    return buf_.data() + at;
  }
  void bytes(const uint8_t* p, size_t n) { buf_.insert(buf_.end(), p, p + n); }
  void str(std::string_view s);  // u16 length + bytes (callers cap at kMax*Len)
  void ip(const IpAddr& a) { bytes(a.b.data(), a.b.size()); }
  size_t size() const { return buf_.size(); }
  std::vector<uint8_t>& buffer() { return buf_; }
  std::vector<uint8_t> take() { return std::move(buf_); }

 private:
  std::vector<uint8_t> buf_;
};

// Reads big-endian fields from [p, p+n). Each read returns false once the buffer or an earlier
// read failed; error() says why (the first failure).
class Reader {
 public:
  Reader(const uint8_t* p, size_t n) : p_(p), n_(n) {}
  bool u8(uint8_t* v);
  bool u16(uint16_t* v);
  bool u32(uint32_t* v);
  bool u64(uint64_t* v);
  bool bytes(uint8_t* out, size_t n);
  // The next n bytes, consumed in one step; nullptr (and kTruncated) if fewer are left.
  const uint8_t* take(size_t n) {
    if (!need(n)) return nullptr;
    const uint8_t* at = p_ + off_;
    off_ += n;
    return at;
  }
  // The next n bytes without consuming them; nullptr if fewer are left (not an error).
  const uint8_t* peek(size_t n) const { return ok() && n_ - off_ >= n ? p_ + off_ : nullptr; }
  // Consumes n bytes a peek(n) just gave.
  void skip(size_t n) { off_ += n; }
  bool str(std::string* s, size_t max_len);
  bool ip(IpAddr* a) { return bytes(a->b.data(), a->b.size()); }
  // Reads a count of the given wire width (1, 2 or 4 bytes) and checks that `count` elements of
  // at least `min_elem_size` bytes each fit in what is left.
  bool count(uint32_t* n, int width, size_t min_elem_size);
  bool fail(CodecError e) {
    if (err_ == CodecError::kOk) err_ = e;
    return false;
  }
  bool ok() const { return err_ == CodecError::kOk; }
  CodecError error() const { return err_; }
  size_t remaining() const { return ok() ? n_ - off_ : 0; }
  // True when every byte was consumed; otherwise records kTrailingBytes.
  bool finish();

 private:
  bool need(size_t k);
  const uint8_t* p_;
  size_t n_;
  size_t off_ = 0;
  CodecError err_ = CodecError::kOk;
};

struct FrameHeader {
  uint32_t magic = kMagic;
  uint16_t version = kProtocolVersionMax;
  MsgKind kind = MsgKind::kHello;
  uint32_t body_len = 0;
  uint64_t migration_id = 0;
  uint64_t seq = 0;
};

struct Frame {
  FrameHeader header;
  std::vector<uint8_t> body;
};

// ---- records and messages -------------------------------------------------------------------

// The translation of a connection as it travels: its reply tuple and kind (version 2), and from
// version 3 what stands behind it (handoff: mapping, LB service and backend, sticky entry) in
// host-independent terms. Host-local bookkeeping (NAT mapping slot, LB service and backend ids,
// sticky reference) stays home: the destination resolves the handoff to its own
// (Translator::adopt, from Worker::apply).
struct XlateExt {
  be32 reply_src, reply_dst;
  be16 reply_sport, reply_dport;
  XlateKind kind = XlateKind::kNone;  // kSnat..kLbFullNat on the wire; kNone is refused
  XlateHandoff handoff;               // version 3; all false (no parts) before
  L7Handoff l7;                       // version 4; has = false before
  bool operator==(const XlateExt& o) const {
    return reply_src == o.reply_src && reply_dst == o.reply_dst &&
           reply_sport == o.reply_sport && reply_dport == o.reply_dport && kind == o.kind &&
           handoff == o.handoff && l7 == o.l7;
  }
  static XlateExt of(const ConnXlate& x, const XlateHandoff& h = {}, const L7Handoff& l7 = {}) {
    return {x.reply_src, x.reply_dst, x.reply_sport, x.reply_dport, x.kind, h, l7};
  }
  // Which version-3 and -4 parts the handoff fills (xpart bits).
  uint8_t parts() const {
    return static_cast<uint8_t>((handoff.has_mapping ? xpart::kMapping : 0) |
                                (handoff.has_lb ? xpart::kLb : 0) |
                                (handoff.has_sticky ? xpart::kSticky : 0) |
                                (l7.has ? xpart::kL7 : 0));
  }
  // A record for this instance: the reply tuple and kind, no mapping/service/sticky reference.
  ConnXlate to_xlate() const {
    ConnXlate x;
    x.reply_src = reply_src;
    x.reply_dst = reply_dst;
    x.reply_sport = reply_sport;
    x.reply_dport = reply_dport;
    x.kind = kind;
    return x;
  }
};

// One connection as it travels: the key, the fields a destination needs to go on tracking it
// strictly (TCP window state of both sides), and the counters. A translated connection
// (flags & connflag::kXlate, version 2) carries its XlateExt after the 112 fixed bytes. Host-local fields (slot links,
// owner, aging list, vm_id, pending/dirty flags) stay home; last_seen becomes a relative idle
// time because the two hosts' clocks differ.
struct ConnRecord {
  static constexpr uint8_t kWireFlags =
      connflag::kOrigIsHi | connflag::kReplied | connflag::kXlate;

  FlowKey key;
  uint32_t version = 0;  // entry version; newer wins, equal or older is a no-op
  bool deleted = false;  // a delta saying "this entry is gone"; the fields below are ignored
  uint8_t l4_state = 0;  // TcpState for TCP
  uint8_t flags = 0;     // kWireFlags bits only
  uint8_t zone = 0;
  uint32_t idle_s = 0;   // seconds since last use, on the source's clock
  TcpPeer peer[2];       // reserved is not carried
  uint64_t packets[2] = {0, 0};
  uint64_t bytes[2] = {0, 0};
  XlateExt xlate;  // valid when flags & connflag::kXlate
  // A compact update (version 7): the key is not carried but for its protocol (key.proto);
  // fingerprint names it (FlowKey::fingerprint under the migration's seed). deleted is false,
  // flags has no kXlate meaning (the destination keeps the translation it installed).
  bool compact = false;
  uint64_t fingerprint = 0;
  uint32_t place = kNoPlace;  // a compact update's placement (version 8), if it has one

  // x: the connection's translation record when e has kXlate; without one the flag is dropped.
  static ConnRecord from_entry(const FlowKey& key, const ConnEntry& e, const ConnCounters& c,
                               uint32_t now_s,
                               const ConnXlate* x = nullptr, const XlateHandoff* h = nullptr,
                               const L7Handoff* l7 = nullptr);
  static ConnRecord tombstone(const FlowKey& key, uint32_t version);
  // Fills the fields the record carries but the counters (counters()); leaves host-local ones
  // (links, owner, vm_id) alone and sets last_seen = now_s - idle_s (saturating at 0).
  void to_entry(ConnEntry* e, uint32_t now_s) const;
  ConnCounters counters() const {
    ConnCounters c;
    for (int d = 0; d < 2; ++d) c.packets[d] = packets[d], c.bytes[d] = bytes[d];
    return c;
  }

  // version: the frame's protocol version; below kProtocolVersionHandoff the handoff is left
  // out, below kProtocolVersionL7 the l7 part.
  void encode(Writer& w, uint16_t version = kProtocolVersionMax) const;
  // version: the frame's protocol version; below kProtocolVersionXlate flag 0x20 is refused,
  // below kProtocolVersionHandoff a parts byte other than 0, below kProtocolVersionL7 the l7
  // part's bit.
  bool decode(Reader& r, uint16_t version = kProtocolVersionMax);
  // The same wire bytes as encode() (112, 128 with a translation, more with its version-3
  // parts), written to out (room for kMaxConnRecordSize); returns how many.
  size_t encode_to(uint8_t* out, uint16_t version = kProtocolVersionMax) const;
  // The wire bytes of from_entry(key, e, now_s, x, h) and tombstone(key, version), written
  // straight to out (the reader encodes a delta this way, record by record); returns how many.
  static size_t encode_entry(const FlowKey& key, const ConnEntry& e, const ConnCounters& c,
                             uint32_t now_s, uint8_t* out,
                             const ConnXlate* x = nullptr, const XlateHandoff* h = nullptr,
                             uint16_t version = kProtocolVersionMax,
                             const L7Handoff* l7 = nullptr);
  static size_t encode_tombstone(const FlowKey& key, uint32_t version, uint8_t* out);
  // A compact update of entry e (kCompactRecordSize bytes): fingerprint names its key, proto
  // is the key's.
  // With a placement (not kNoPlace), a placed update (kPlacedRecordSize bytes).
  static size_t encode_compact(uint64_t fingerprint, uint8_t proto, const ConnEntry& e,
                               const ConnCounters& c, uint32_t now_s, uint8_t* out,
                               uint32_t place = kNoPlace);
  // The kCompactRecordSize bytes of a compact update at p (its kind byte checked by the
  // caller), straight into where they go: decode_compact's record, or the destination's
  // update for its owner (all of *u but the slot). False on a value outside its domain
  // (decode's checks).
  static bool parse_compact(const uint8_t* p, ConnUpdate* u);
  // The fingerprint a compact update at p names (its 84 bytes there), for the destination to
  // find the entry before it parses the rest.
  static uint64_t compact_fingerprint(const uint8_t* p) {
    uint64_t be;  // big-endian at offset 12, as every wire field
    std::memcpy(&be, p + 12, sizeof be);
    return __builtin_bswap64(be);
  }
  // The placement a placed update at p carries (after its first 84 bytes).
  static uint32_t placed_place(const uint8_t* p) {
    uint32_t be;
    std::memcpy(&be, p + kCompactRecordSize, sizeof be);
    return __builtin_bswap32(be);
  }
  // Length of the encoded record at p (its flags byte says whether an extension follows, the
  // extension's parts byte what follows that).
  static size_t wire_size(const uint8_t* p) {
    if (p[4] == kRecordCompact) return kCompactRecordSize;
    if (p[4] == kRecordPlaced) return kPlacedRecordSize;
    return (p[46] & connflag::kXlate)
               ? kConnRecordSize + kXlateExtSize + xlate_parts_size(p[kConnRecordSize + 13])
               : kConnRecordSize;
  }
  bool operator==(const ConnRecord& o) const;

 private:
  bool decode_fixed(Reader& r);  // the 112 bytes
  bool decode_compact(Reader& r, bool placed);  // a compact (84 bytes) or placed (88) update
};

struct KindCount {
  uint8_t kind = 0;     // StateKind wire value; unknown values are kept (and refused by decide)
  uint64_t count = 0;
  bool operator==(const KindCount&) const = default;
};

struct HelloMsg {
  static constexpr MsgKind kKind = MsgKind::kHello;
  uint16_t version_min = kProtocolVersionMin;
  uint16_t version_max = kProtocolVersionMax;
  std::string instance;
  uint32_t kinds = kind_bit(StateKind::kConn);  // bitmap of StateKind this side can carry
  void encode(Writer& w) const;
  bool decode(Reader& r);
  bool operator==(const HelloMsg&) const = default;
};

// What the VM's translated connections need at a destination, for PREPARE's checks (version 3):
// the distinct outside endpoints of their dynamic mappings, and the distinct (service, backend,
// full-NAT local address) they use. At most kMaxNeeds of each are listed (the destination
// checks those; the installer still checks every record).
struct NatNeed {
  uint8_t proto = 0;
  be32 inside_addr, outside_addr;
  be16 outside_port;
  bool operator==(const NatNeed&) const = default;
};
struct LbNeed {
  uint8_t proto = 0;
  be32 vip, backend_addr, local_addr;  // local_addr 0: mode nat
  be16 vip_port, backend_port;
  bool operator==(const LbNeed&) const = default;
};
struct HandoffNeeds {
  static constexpr size_t kMaxNeeds = 65536;
  std::vector<NatNeed> nat;
  std::vector<LbNeed> lb;
  bool operator==(const HandoffNeeds&) const = default;
};

struct PrepareMsg {
  static constexpr MsgKind kKind = MsgKind::kPrepare;
  uint16_t protocol_version = kProtocolVersionMax;  // the version the source will speak
  std::string source_instance;
  VmConfig vm;              // identity and profile; acl[].line is not carried (it is local)
  // VmProfile::nat_public_ip carries no family; the wire needs one. kNone = no NAT public IP.
  Family nat_family = Family::kNone;
  std::vector<KindCount> counts;  // entries per state kind, each kind at most once
  HandoffNeeds needs;             // protocol_version >= 3 only
  uint64_t conn_v6 = 0;  // protocol_version >= 5: how many of the kConn entries are IPv6
  uint64_t count_of(StateKind k) const {  // counts' entry for k, 0 if absent
    for (const KindCount& c : counts)
      if (c.kind == static_cast<uint8_t>(k)) return c.count;
    return 0;
  }
  void encode(Writer& w) const;
  bool decode(Reader& r);
};
bool operator==(const PrepareMsg& a, const PrepareMsg& b);

struct AcceptMsg {
  static constexpr MsgKind kKind = MsgKind::kAccept;
  void encode(Writer&) const {}
  bool decode(Reader&) { return true; }
  bool operator==(const AcceptMsg&) const = default;
};

struct FailMsg {
  static constexpr MsgKind kKind = MsgKind::kFail;
  FailReason reason = FailReason::kTransfer;
  std::string detail;
  void encode(Writer& w) const;
  bool decode(Reader& r);
  bool operator==(const FailMsg&) const = default;
};

struct EntriesMsg {
  static constexpr MsgKind kKind = MsgKind::kEntries;
  uint32_t round = 0;  // 0 = snapshot, 1.. = deltas, last = final (FINAL_END names it)
  std::vector<ConnRecord> records;
  void encode(Writer& w) const;
  bool decode(Reader& r);
  bool operator==(const EntriesMsg&) const = default;
};
// How many records fit one ENTRIES frame (each may carry a translation).
constexpr size_t kMaxRecordsPerFrame = (kMaxBodySize - 8) / kMaxConnRecordSize;
// How many the engine puts in one (115 KiB): large enough that a TLS write is large and
// per-frame costs vanish, small enough that the destination installs frame k while the source
// reads frame k+1 (a freeze is as long as the slower of the two plus one frame, not the sum).
constexpr size_t kRecordsPerFrame = 1024;
static_assert(kRecordsPerFrame <= kMaxRecordsPerFrame);

// Builds ENTRIES frames record by record in one buffer kept from frame to frame: no EntriesMsg,
// no ConnRecord vector, no allocation once the buffer has its size. The frame's seq is left 0
// for the sender to set per link (set_frame_seq), since one frame may go to several peers.
//   w.begin(mid, round, n); for each record: encode into w.add(); auto [p, len] = w.finish();
class EntriesFrameWriter {
 public:
  // Starts a frame of at most max_records (<= kMaxRecordsPerFrame) records, with header version
  // `version` (the records added must be encoded for it).
  void begin(uint64_t migration_id, uint32_t round, size_t max_records,
             uint16_t version = kProtocolVersionMax);
  // Room for the next record, kMaxConnRecordSize bytes; nullptr once max_records were added.
  // The record written there says its own length (ConnRecord::wire_size), read at the next
  // add() or finish().
  uint8_t* add() {
    if (records_ == max_records_) return nullptr;
    settle();
    records_++;
    last_ = used_;
    return buf_.data() + kHeaderSize + 8 + used_;
  }
  uint32_t records() const { return static_cast<uint32_t>(records_); }
  uint16_t version() const { return version_; }
  bool full() const { return records_ == max_records_; }
  // Patches body_len and the count; the frame is valid until the next begin().
  std::pair<uint8_t*, size_t> finish();

 private:
  // Counts the last added record's bytes into used_.
  void settle() {
    if (last_ != kNone) used_ = last_ + ConnRecord::wire_size(buf_.data() + kHeaderSize + 8 + last_);
    last_ = kNone;
  }
  static constexpr size_t kNone = SIZE_MAX;
  std::vector<uint8_t> buf_;
  size_t records_ = 0, max_records_ = 0;
  uint16_t version_ = kProtocolVersionMax;
  size_t used_ = 0;     // body bytes after round and count taken by settled records
  size_t last_ = kNone;  // offset of the last added record, not yet settled
};

// Rewrites the seq field of an encoded frame (at least kHeaderSize bytes).
void set_frame_seq(uint8_t* frame, uint64_t seq);

struct RoundEndMsg {
  static constexpr MsgKind kKind = MsgKind::kRoundEnd;
  uint32_t round = 0;
  uint64_t entries = 0;  // records sent in this round, for the destination to check
  void encode(Writer& w) const;
  bool decode(Reader& r);
  bool operator==(const RoundEndMsg&) const = default;
};

struct FinalEndMsg {
  static constexpr MsgKind kKind = MsgKind::kFinalEnd;
  uint32_t round = 0;          // the final round's number
  uint64_t entries_total = 0;  // distinct live entries the destination should now hold
  void encode(Writer& w) const;
  bool decode(Reader& r);
  bool operator==(const FinalEndMsg&) const = default;
};

struct ActivateMsg {
  static constexpr MsgKind kKind = MsgKind::kActivate;
  void encode(Writer&) const {}
  bool decode(Reader&) { return true; }
  bool operator==(const ActivateMsg&) const = default;
};

struct ActivatedMsg {
  static constexpr MsgKind kKind = MsgKind::kActivated;
  std::vector<KindCount> installed;  // entries made active, per kind
  void encode(Writer& w) const;
  bool decode(Reader& r);
  bool operator==(const ActivatedMsg&) const = default;
};

// Which side of the middlebox a held packet came in on.
enum class Side : uint8_t { kVm = 0, kNetwork = 1 };

struct HeldPacket {
  Side side = Side::kVm;
  std::vector<uint8_t> frame;  // the Ethernet frame as received, at most kMaxHeldFrameLen
  bool operator==(const HeldPacket&) const = default;
};

struct HeldPacketsMsg {
  static constexpr MsgKind kKind = MsgKind::kHeldPackets;
  std::vector<HeldPacket> packets;  // in arrival order
  void encode(Writer& w) const;
  bool decode(Reader& r);
  bool operator==(const HeldPacketsMsg&) const = default;
};

struct AckMsg {
  static constexpr MsgKind kKind = MsgKind::kAck;
  uint64_t acked_seq = 0;  // every frame with seq <= acked_seq has been applied
  void encode(Writer& w) const;
  bool decode(Reader& r);
  bool operator==(const AckMsg&) const = default;
};

// Destination -> source, version 8, before the ACK of a ROUND_END: where the round's entry
// records (kind 0, in the order they were sent; tombstones and updates are not counted) went,
// one placement each (kNoPlace: not installed). The source may name them in later updates.
struct PlacedMsg {
  static constexpr MsgKind kKind = MsgKind::kPlaced;
  static constexpr size_t kMaxPlaces = (kMaxBodySize - 8) / 4;  // what one frame holds
  uint32_t round = 0;
  std::vector<uint32_t> places;
  void encode(Writer& w) const;
  bool decode(Reader& r);
  bool operator==(const PlacedMsg&) const = default;
};

struct AbortMsg {
  static constexpr MsgKind kKind = MsgKind::kAbort;
  FailReason reason = FailReason::kAborted;
  std::string detail;
  void encode(Writer& w) const;
  bool decode(Reader& r);
  bool operator==(const AbortMsg&) const = default;
};

// The VM's traffic as of the freeze: what the source forwarded and what it had been brought
// (its lifetime counts). The destination adds it to what it was brought, at activation.
struct VmCountersMsg {
  static constexpr MsgKind kKind = MsgKind::kVmCounters;
  VmTraffic traffic;
  void encode(Writer& w) const;
  bool decode(Reader& r);
  bool operator==(const VmCountersMsg&) const = default;
};

// A source's first frame on a new connection after the old one dropped (docs/WIRE.md, "Sequence,
// ACK and resume"). The header carries the migration's id and seq 0: RESUME stands outside the
// numbered stream. The destination answers ACK(the last seq it applied), or FAIL(TRANSFER) when
// it no longer holds the migration, FAIL(AUTH) when another peer's certificate started it.
struct ResumeMsg {
  static constexpr MsgKind kKind = MsgKind::kResume;
  uint64_t acked_seq = 0;  // the highest seq the source holds an ACK for
  uint64_t sent_seq = 0;   // the highest seq the source has sent
  void encode(Writer& w) const;
  bool decode(Reader& r);
  bool operator==(const ResumeMsg&) const = default;
};

// ---- frames ----------------------------------------------------------------------------------

void encode_header(const FrameHeader& h, Writer& w);

// Header + body of one message, ready for PeerLink::send. The header's version defaults to
// kProtocolVersionMax, except HELLO, whose header always carries kProtocolVersionMin (WIRE.md).
template <typename Msg>
std::vector<uint8_t> encode_frame(const Msg& msg, uint64_t migration_id, uint64_t seq,
                                  uint16_t version = Msg::kKind == MsgKind::kHello
                                                         ? kProtocolVersionMin
                                                         : kProtocolVersionMax) {
  Writer w;
  w.buffer().reserve(kHeaderSize + 64);
  FrameHeader h;
  h.version = version;
  h.kind = Msg::kKind;
  h.migration_id = migration_id;
  h.seq = seq;
  encode_header(h, w);
  msg.encode(w);
  size_t body = w.size() - kHeaderSize;
  // Patch body_len (offset 8) now that the body is known.
  auto& b = w.buffer();
  b[8] = static_cast<uint8_t>(body >> 24);
  b[9] = static_cast<uint8_t>(body >> 16);
  b[10] = static_cast<uint8_t>(body >> 8);
  b[11] = static_cast<uint8_t>(body);
  return w.take();
}

// Parses and checks the first kHeaderSize bytes: magic, version, kind, body length limit.
CodecError decode_header(const uint8_t* p, size_t n, FrameHeader* h);
// A whole frame in one buffer: the header, then exactly body_len bytes (fewer = kTruncated,
// more = kTrailingBytes).
CodecError decode_frame(const uint8_t* p, size_t n, Frame* f);

// Decodes a frame's body as Msg; refuses another kind, short bodies and trailing bytes.
template <typename Msg>
CodecError decode_body(const Frame& f, Msg* out) {
  if (f.header.kind != Msg::kKind) return CodecError::kKindMismatch;
  Reader r(f.body.data(), f.body.size());
  Msg m;
  if (!m.decode(r) || !r.finish()) return r.ok() ? CodecError::kBadValue : r.error();
  *out = std::move(m);
  return CodecError::kOk;
}

}  // namespace baton::migrate
