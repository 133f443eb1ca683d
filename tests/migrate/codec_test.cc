// SPDX-License-Identifier: Apache-2.0
#include "migrate/codec.h"

#include <gtest/gtest.h>

#include <cstring>
#include <random>
#include <set>

namespace baton::migrate {
namespace {

IpAddr v4(uint8_t a, uint8_t b, uint8_t c, uint8_t d) {
  IpAddr r;
  r.b[0] = a; r.b[1] = b; r.b[2] = c; r.b[3] = d;
  return r;
}

// A handoff that fits kind k (codec.cc parts_fit), with random fields in their domains.
XlateHandoff random_handoff(std::mt19937_64& rng, XlateKind k) {
  auto u = [&](uint64_t n) { return static_cast<uint64_t>(rng() % n); };
  auto a32 = [&] { return be32::from_host(static_cast<uint32_t>(rng() | 1)); };
  auto p16 = [&] { return be16::from_host(static_cast<uint16_t>(rng())); };
  XlateHandoff h;
  const bool lb = k == XlateKind::kLbNat || k == XlateKind::kLbFullNat;
  if (k == XlateKind::kSnat || (k == XlateKind::kHairpin && u(2))) {
    h.has_mapping = true;
    h.mapping_behavior = static_cast<uint8_t>(u(3));
    h.filtering = static_cast<uint8_t>(u(3));
    h.inside_addr = a32();
    h.inside_port = p16();
    h.outside_addr = a32();
    h.outside_port = p16();
  }
  if (lb) {
    h.has_lb = true;
    h.vip = a32();
    h.vip_port = p16();
    h.backend_addr = a32();
    h.backend_port = p16();
  }
  if (lb && u(2)) {
    h.has_sticky = true;
    h.sticky_method = static_cast<uint8_t>(1 + u(4));
    if (h.sticky_method <= 2) {
      h.sticky_family = static_cast<uint8_t>(Family::kV4);
      h.sticky_prefix_len = h.sticky_method == 2 ? static_cast<uint8_t>(u(33)) : 0;
    } else {
      h.sticky_value_len = static_cast<uint32_t>(rng());
    }
    for (auto& b : h.sticky_data) b = static_cast<uint8_t>(rng());
    h.sticky_backend_addr = a32();
    h.sticky_backend_port = p16();
    h.sticky_age_s = static_cast<uint32_t>(rng());
    h.sticky_idle_s = static_cast<uint32_t>(rng());
    h.sticky_ttl_s = static_cast<uint32_t>(rng());
  }
  return h;
}

ConnRecord random_record(std::mt19937_64& rng) {
  auto u = [&](uint64_t n) { return static_cast<uint64_t>(rng() % n); };
  ConnRecord r;
  r.key.family = u(2) ? Family::kV4 : Family::kV6;
  for (int i = 0; i < (r.key.family == Family::kV4 ? 4 : 16); ++i) {
    r.key.lo_addr.b[i] = static_cast<uint8_t>(rng());
    r.key.hi_addr.b[i] = static_cast<uint8_t>(rng());
  }
  static constexpr uint8_t kProtos[] = {6, 17, 1, 58};
  r.key.proto = kProtos[u(4)];
  r.key.vlan = static_cast<uint16_t>(u(4096));
  r.key.lo_port = be16::from_host(static_cast<uint16_t>(rng()));
  r.key.hi_port = be16::from_host(static_cast<uint16_t>(rng()));
  r.version = static_cast<uint32_t>(rng());
  r.deleted = u(8) == 0;
  r.l4_state = static_cast<uint8_t>(u(static_cast<uint8_t>(TcpState::kCount)));
  r.flags = static_cast<uint8_t>(rng()) & ConnRecord::kWireFlags;
  r.zone = static_cast<uint8_t>(rng());
  r.idle_s = static_cast<uint32_t>(rng());
  for (int d = 0; d < 2; ++d) {
    r.peer[d].end = static_cast<uint32_t>(rng());
    r.peer[d].maxend = static_cast<uint32_t>(rng());
    r.peer[d].maxwin = static_cast<uint32_t>(rng());
    r.peer[d].wscale = static_cast<uint8_t>(u(15));
    r.peer[d].flags = static_cast<uint8_t>(u(32));
    r.packets[d] = rng();
    r.bytes[d] = rng();
  }
  // A tombstone carries no translation, nor does an IPv6 connection; a live translated record
  // carries a valid one.
  if (r.deleted || r.key.family != Family::kV4) r.flags &= ~connflag::kXlate;
  if (r.flags & connflag::kXlate) {
    r.xlate.reply_src = be32::from_host(static_cast<uint32_t>(rng()));
    r.xlate.reply_dst = be32::from_host(static_cast<uint32_t>(rng()));
    r.xlate.reply_sport = be16::from_host(static_cast<uint16_t>(rng()));
    r.xlate.reply_dport = be16::from_host(static_cast<uint16_t>(rng()));
    r.xlate.kind = static_cast<XlateKind>(1 + u(static_cast<uint8_t>(XlateKind::kCount) - 1));
    r.xlate.handoff = random_handoff(rng, r.xlate.kind);
    if (r.xlate.kind == XlateKind::kLbFullNat && u(2)) {  // an L7 connection (version 4)
      r.xlate.l7.has = true;
      r.xlate.l7.phase = u(2) ? L7Phase::kSpliced : L7Phase::kClosed;
      for (SpliceDirOffsets* d : {&r.xlate.l7.offsets.to_backend, &r.xlate.l7.offsets.to_client}) {
        d->seq = static_cast<uint32_t>(rng());
        d->ack = static_cast<uint32_t>(rng());
        d->tsval = static_cast<uint32_t>(rng());
        d->tsecr = static_cast<uint32_t>(rng());
        d->win_from = static_cast<uint8_t>(u(15));
        d->win_to = static_cast<uint8_t>(u(15));
      }
    }
  }
  return r;
}

PrepareMsg sample_prepare() {
  PrepareMsg m;
  m.protocol_version = 1;
  m.source_instance = "baton-a";
  m.vm.name = "web1";
  m.vm.mac = *MacAddr::parse("52:54:00:12:34:56");
  m.vm.ipv4 = {v4(10, 0, 0, 5), v4(10, 0, 1, 5)};
  Family f;
  m.vm.ipv6 = {*IpAddr::parse("2001:db8::5", &f)};
  m.vm.vlan = 100;
  m.vm.profile.qos_rate_bps = 1'000'000'000;
  m.vm.profile.nat_public_ip = v4(203, 0, 113, 7);
  m.nat_family = Family::kV4;
  AclRule a;
  a.zone = "web1";
  a.src = Prefix::parse("10.0.0.0/8");
  a.proto = 6;
  a.dport = {80, 443};
  a.vlan = 100;
  a.action = Action::kPermit;
  a.log = true;
  AclRule b;
  b.zone = "web1";
  b.dst = Prefix::parse("2001:db8::/32");
  b.action = Action::kDeny;
  m.vm.profile.acl = {a, b};
  m.counts = {{static_cast<uint8_t>(StateKind::kConn), 12345},
              {static_cast<uint8_t>(StateKind::kNatMapping), 0}};
  return m;
}

template <typename Msg>
void expect_round_trip(const Msg& m, uint64_t id = 0x1122334455667788ull, uint64_t seq = 42) {
  auto bytes = encode_frame(m, id, seq);
  Frame f;
  ASSERT_EQ(decode_frame(bytes.data(), bytes.size(), &f), CodecError::kOk);
  EXPECT_EQ(f.header.kind, Msg::kKind);
  EXPECT_EQ(f.header.migration_id, id);
  EXPECT_EQ(f.header.seq, seq);
  EXPECT_EQ(f.header.body_len, bytes.size() - kHeaderSize);
  Msg out;
  ASSERT_EQ(decode_body(f, &out), CodecError::kOk) << msg_kind_name(Msg::kKind);
  EXPECT_TRUE(out == m) << msg_kind_name(Msg::kKind);
}

// Decoding every strict prefix of a frame fails cleanly, both as a whole frame and as a frame
// whose header was patched to claim the shorter body.
template <typename Msg>
void expect_every_truncation_rejected(const Msg& m) {
  auto bytes = encode_frame(m, 1, 1);
  for (size_t len = 0; len < bytes.size(); ++len) {
    Frame f;
    EXPECT_EQ(decode_frame(bytes.data(), len, &f), CodecError::kTruncated) << len;
  }
  for (size_t body = 0; body + kHeaderSize < bytes.size(); ++body) {
    Frame f;
    FrameHeader h;
    ASSERT_EQ(decode_header(bytes.data(), bytes.size(), &h), CodecError::kOk);
    f.header = h;
    f.header.body_len = static_cast<uint32_t>(body);
    f.body.assign(bytes.begin() + kHeaderSize, bytes.begin() + kHeaderSize + body);
    Msg out;
    CodecError e = decode_body(f, &out);
    EXPECT_TRUE(e == CodecError::kTruncated || e == CodecError::kBadCount)
        << msg_kind_name(Msg::kKind) << " body " << body << ": " << codec_error_name(e);
  }
}

TEST(Codec, ConnRecordIsFixedSize) {
  Writer w;
  ConnRecord{}.encode(w);
  EXPECT_EQ(w.size(), kConnRecordSize);
}

TEST(Codec, HeaderIsBigEndianWithMagicBatn) {
  auto b = encode_frame(AckMsg{0x0102030405060708ull}, 0xa1a2a3a4a5a6a7a8ull, 9);
  ASSERT_EQ(b.size(), kHeaderSize + 8);
  EXPECT_EQ(std::string(b.begin(), b.begin() + 4), "BATN");
  EXPECT_EQ(b[4], 0); EXPECT_EQ(b[5], kProtocolVersionMax);       // version
  EXPECT_EQ(b[6], 0); EXPECT_EQ(b[7], 11);                        // ACK
  EXPECT_EQ(b[11], 8);                                            // body length
  EXPECT_EQ(b[12], 0xa1); EXPECT_EQ(b[19], 0xa8);                 // migration id
  EXPECT_EQ(b[27], 9);                                            // seq
  EXPECT_EQ(b[28], 1); EXPECT_EQ(b[35], 8);                       // acked seq
}

TEST(Codec, RoundTripsEveryMessageKind) {
  std::mt19937_64 rng(7);
  expect_round_trip(HelloMsg{1, 1, "baton-a", kind_bit(StateKind::kConn) | kind_bit(StateKind::kSticky)});
  expect_round_trip(sample_prepare());
  PrepareMsg no_nat = sample_prepare();
  no_nat.vm.profile.nat_public_ip.reset();
  no_nat.nat_family = Family::kNone;
  no_nat.vm.profile.acl.clear();
  expect_round_trip(no_nat);
  expect_round_trip(AcceptMsg{});
  expect_round_trip(FailMsg{FailReason::kResources, "table conn: 10 > 5 free"});
  for (int rounds = 0; rounds < 20; ++rounds) {
    EntriesMsg e;
    e.round = static_cast<uint32_t>(rounds);
    size_t n = rng() % 200;
    for (size_t i = 0; i < n; ++i) e.records.push_back(random_record(rng));
    expect_round_trip(e, rng(), rng());
  }
  expect_round_trip(RoundEndMsg{3, 1000});
  expect_round_trip(FinalEndMsg{8, 123456789012ull});
  expect_round_trip(ActivateMsg{});
  expect_round_trip(ActivatedMsg{{{0, 17}, {1, 2}}});
  HeldPacketsMsg h;
  h.packets.push_back({Side::kVm, std::vector<uint8_t>(60, 0xab)});
  h.packets.push_back({Side::kNetwork, std::vector<uint8_t>(1514, 0x5a)});
  h.packets.push_back({Side::kVm, {}});
  expect_round_trip(h);
  expect_round_trip(AckMsg{77});
  expect_round_trip(AbortMsg{FailReason::kAborted, "operator"});
  expect_round_trip(VmCountersMsg{VmTraffic{{1, 0xffffffffffull}, {1500, 0x0102030405060708ull}}});
  expect_round_trip(PlacedMsg{3, {0, 0x01020304, kNoPlace}});
  expect_round_trip(PlacedMsg{0, {}});
}

// PLACED (version 8): round u32, count u32, a u32 placement per entry record, big-endian.
TEST(Codec, PlacedHasItsDocumentedLayout) {
  auto f = encode_frame(PlacedMsg{7, {0x0a0b0c0d, kNoPlace}}, 1, 2);
  ASSERT_EQ(f.size(), kHeaderSize + 16);
  const std::vector<uint8_t> body(f.begin() + kHeaderSize, f.end());
  EXPECT_EQ(body, (std::vector<uint8_t>{0, 0, 0, 7, 0, 0, 0, 2, 0x0a, 0x0b, 0x0c, 0x0d, 0xff,
                                        0xff, 0xff, 0xff}));
  EXPECT_STREQ(msg_kind_name(MsgKind::kPlaced), "PLACED");
  std::vector<uint8_t> lying(f);  // counts three placements, holds two
  lying[kHeaderSize + 7] = 3;
  Frame g;
  ASSERT_EQ(decode_frame(lying.data(), lying.size(), &g), CodecError::kOk);
  PlacedMsg m;
  EXPECT_NE(decode_body(g, &m), CodecError::kOk);
}

// VM_COUNTERS (version 6): four u64, big-endian: from_vm packets and bytes, to_vm packets and
// bytes (docs/WIRE.md).
TEST(Codec, VmCountersHaveTheirDocumentedLayout) {
  auto b = encode_frame(VmCountersMsg{VmTraffic{{1, 2}, {3, 0x0102030405060708ull}}}, 1, 1);
  ASSERT_EQ(b.size(), kHeaderSize + 32);
  EXPECT_EQ(b[7], 14);                                  // kind
  EXPECT_EQ(b[kHeaderSize + 7], 1);                     // packets from the VM
  EXPECT_EQ(b[kHeaderSize + 15], 3);                    // bytes from the VM
  EXPECT_EQ(b[kHeaderSize + 23], 2);                    // packets to the VM
  EXPECT_EQ(b[kHeaderSize + 24], 1);                    // bytes to the VM, high byte first
  EXPECT_EQ(b[kHeaderSize + 31], 8);
  EXPECT_STREQ(msg_kind_name(MsgKind::kVmCounters), "VM_COUNTERS");
}

TEST(Codec, LargestEntriesFrameFitsAndRoundTrips) {
  std::mt19937_64 rng(9);
  EntriesMsg e;
  e.records.resize(kMaxRecordsPerFrame);
  for (auto& r : e.records) r = random_record(rng);
  auto bytes = encode_frame(e, 1, 1);
  EXPECT_LE(bytes.size(), kMaxFrameSize);
  Frame f;
  ASSERT_EQ(decode_frame(bytes.data(), bytes.size(), &f), CodecError::kOk);
  EntriesMsg out;
  ASSERT_EQ(decode_body(f, &out), CodecError::kOk);
  EXPECT_TRUE(out == e);
}

TEST(Codec, ConnRecordFromAndToEntryKeepsStateAndConvertsIdleTime) {
  ConnEntry e;
  e.version.store(8);
  e.l4_state = static_cast<uint8_t>(TcpState::kEstablished);
  e.flags = connflag::kOrigIsHi | connflag::kFromPeer | connflag::kPending;
  e.zone = 3;
  e.last_seen = 1000;
  e.peer[0] = {100, 2000, 65535, 7, peerflag::kWscaleSeen, 0};
  e.peer[1] = {300, 4000, 1024, 2, peerflag::kDataSeen, 0};
  ConnCounters c;
  c.packets[0] = 5; c.bytes[1] = 999;
  FlowKey k;
  k.family = Family::kV4;
  k.proto = 6;
  ConnRecord r = ConnRecord::from_entry(k, e, c, 1030);
  EXPECT_EQ(r.version, 8u);
  EXPECT_EQ(r.idle_s, 30u);
  EXPECT_EQ(r.flags, connflag::kOrigIsHi);  // host-local flags stay home
  ConnEntry d;
  d.flags = connflag::kPending;
  r.to_entry(&d, 50);  // the destination's clock is different
  EXPECT_EQ(d.last_seen, 20u);
  EXPECT_EQ(d.flags, connflag::kPending | connflag::kOrigIsHi);
  EXPECT_EQ(d.peer[0].maxend, 2000u);
  EXPECT_EQ(d.peer[1].wscale, 2);
  EXPECT_EQ(r.counters().packets[0], 5u);
  EXPECT_EQ(r.counters().bytes[1], 999u);
  ConnRecord r2 = ConnRecord::from_entry(k, e, c, 10);  // clock behind last_seen
  EXPECT_EQ(r2.idle_s, 0u);
  r.to_entry(&d, 5);  // idle longer than the destination's uptime
  EXPECT_EQ(d.last_seen, 0u);
  ConnRecord t = ConnRecord::tombstone(k, 9);
  EXPECT_TRUE(t.deleted);
  expect_round_trip(EntriesMsg{2, {t}});
}

// The delta path encodes straight from the entry; it must write what the record would.
TEST(Codec, EncodingFromTheEntryWritesTheRecordsBytes) {
  std::mt19937_64 rng(21);
  for (int i = 0; i < 1000; i++) {
    ConnRecord src = random_record(rng);
    ConnEntry e;
    const ConnCounters c = src.counters();
    e.version.store(src.version);
    e.l4_state = src.l4_state;
    e.flags = static_cast<uint8_t>(rng());  // host-local bits too: they must stay home
    e.zone = src.zone;
    e.last_seen = static_cast<uint32_t>(rng() % 5000);
    for (int d = 0; d < 2; d++) {
      e.peer[d] = src.peer[d];
      e.peer[d].reserved = static_cast<uint16_t>(rng());  // not carried
    }
    const uint32_t now = static_cast<uint32_t>(rng() % 5000);
    uint8_t want[kConnRecordSize], got[kConnRecordSize];
    std::memset(got, 0xa5, sizeof got);
    ConnRecord::from_entry(src.key, e, c, now).encode_to(want);
    ConnRecord::encode_entry(src.key, e, c, now, got);
    ASSERT_EQ(std::memcmp(want, got, kConnRecordSize), 0) << "entry " << i;
    std::memset(got, 0xa5, sizeof got);
    ConnRecord::tombstone(src.key, src.version).encode_to(want);
    ConnRecord::encode_tombstone(src.key, src.version, got);
    ASSERT_EQ(std::memcmp(want, got, kConnRecordSize), 0) << "tombstone " << i;
  }
}

// Version 7's compact update: 84 bytes at documented offsets, big-endian, no key but its
// protocol and fingerprint; decodes to the record that encodes to the same bytes.
TEST(Codec, CompactUpdateHasItsDocumentedLayoutAndRoundTrips) {
  std::mt19937_64 rng(77);
  for (int i = 0; i < 200; i++) {
    const ConnRecord src = random_record(rng);
    ConnEntry e;
    e.version.store(src.version);
    e.l4_state = src.l4_state;
    // host-local bits too: they stay home
    e.flags = static_cast<uint8_t>(src.flags | connflag::kPending | connflag::kL7);
    e.zone = src.zone;
    e.last_seen = 100;
    e.peer[0] = src.peer[0];
    e.peer[1] = src.peer[1];
    const ConnCounters c = src.counters();
    const uint64_t fp = src.key.fingerprint(42);
    uint8_t b[kCompactRecordSize + 8];
    std::memset(b, 0xa5, sizeof b);
    ASSERT_EQ(ConnRecord::encode_compact(fp, src.key.proto, e, c, 130, b), kCompactRecordSize);
    EXPECT_EQ(b[kCompactRecordSize], 0xa5) << "writes its 84 bytes only";
    EXPECT_EQ(ConnRecord::wire_size(b), kCompactRecordSize);
    auto be = [&](size_t at, int n) {
      uint64_t v = 0;
      for (int k = 0; k < n; k++) v = v << 8 | b[at + k];
      return v;
    };
    EXPECT_EQ(be(0, 4), src.version);
    EXPECT_EQ(b[4], kRecordCompact);
    EXPECT_EQ(b[5], src.key.proto);
    EXPECT_EQ(b[6], src.l4_state);
    EXPECT_EQ(b[7], src.flags);
    EXPECT_EQ(b[8], src.zone);
    EXPECT_EQ(be(9, 3), 0u);
    EXPECT_EQ(be(12, 8), fp);
    EXPECT_EQ(be(20, 4), 30u) << "idle seconds";
    EXPECT_EQ(be(24, 4), src.peer[0].end);
    EXPECT_EQ(be(38 + 8, 4), src.peer[1].maxwin);
    EXPECT_EQ(b[38 + 12], src.peer[1].wscale);
    EXPECT_EQ(be(52, 8), src.packets[0]);
    EXPECT_EQ(be(76, 8), src.bytes[1]);

    Reader r(b, kCompactRecordSize);
    ConnRecord out;
    ASSERT_TRUE(out.decode(r, kProtocolVersionCompact)) << codec_error_name(r.error());
    EXPECT_TRUE(r.finish());
    EXPECT_TRUE(out.compact);
    EXPECT_FALSE(out.deleted);
    EXPECT_EQ(out.fingerprint, fp);
    EXPECT_EQ(out.key.proto, src.key.proto);
    EXPECT_EQ(out.version, src.version);
    EXPECT_EQ(out.idle_s, 30u);
    EXPECT_EQ(out.counters().bytes[1], src.bytes[1]);
    uint8_t again[kMaxConnRecordSize];
    ASSERT_EQ(out.encode_to(again), kCompactRecordSize);
    EXPECT_EQ(std::memcmp(again, b, kCompactRecordSize), 0);
  }
}

TEST(Codec, CompactUpdateIsRefusedBeforeVersion7AndWithGarbage) {
  ConnEntry e;
  e.version.store(4);
  e.l4_state = static_cast<uint8_t>(TcpState::kEstablished);
  uint8_t good[kCompactRecordSize];
  ConnRecord::encode_compact(0x1234, 6, e, ConnCounters{}, 0, good);
  auto decodes = [](const uint8_t* b, uint16_t version) {
    Reader r(b, kCompactRecordSize);
    ConnRecord out;
    const bool ok = out.decode(r, version);
    // kind 3 is read as a whole record (kind byte 3 refused there), which 84 bytes cannot hold
    EXPECT_TRUE(ok || r.error() == CodecError::kBadValue ||
                (b[4] == 3 && r.error() == CodecError::kTruncated))
        << codec_error_name(r.error());
    return ok;
  };
  EXPECT_TRUE(decodes(good, kProtocolVersionCompact));
  EXPECT_FALSE(decodes(good, kProtocolVersionCumulative)) << "a version-6 frame has no kind 2";
  auto with = [&](size_t at, uint8_t v) {
    std::vector<uint8_t> b(good, good + kCompactRecordSize);
    b[at] = v;
    return b;
  };
  EXPECT_FALSE(decodes(with(10, 1).data(), kProtocolVersionCompact)) << "reserved byte";
  EXPECT_FALSE(decodes(with(7, connflag::kPending).data(), kProtocolVersionCompact))
      << "a host-local flag";
  EXPECT_FALSE(decodes(with(6, static_cast<uint8_t>(TcpState::kCount)).data(),
                       kProtocolVersionCompact)) << "no such TCP state";
  EXPECT_FALSE(decodes(with(24 + 12, 15).data(), kProtocolVersionCompact)) << "window scale 15";
  std::vector<uint8_t> zero_fp(good, good + kCompactRecordSize);
  std::memset(zero_fp.data() + 12, 0, 8);
  EXPECT_FALSE(decodes(zero_fp.data(), kProtocolVersionCompact)) << "fingerprint 0";
  EXPECT_FALSE(decodes(with(4, 3).data(), kProtocolVersionCompact)) << "record kind 3";
  for (size_t n = 0; n < kCompactRecordSize; n++) {  // truncated anywhere
    Reader r(good, n);
    ConnRecord out;
    EXPECT_FALSE(out.decode(r, kProtocolVersionCompact));
  }
}

// Version 8's placed update: the compact update's 84 bytes with kind byte 3, then the
// placement (u32); refused before version 8, without its placement, and with kNoPlace.
TEST(Codec, PlacedUpdateIsACompactUpdateAndItsPlacement) {
  std::mt19937_64 rng(78);
  for (int i = 0; i < 100; i++) {
    const ConnRecord src = random_record(rng);
    ConnEntry e;
    e.version.store(src.version);
    e.l4_state = src.l4_state;
    e.flags = src.flags;
    e.zone = src.zone;
    e.peer[0] = src.peer[0];
    e.peer[1] = src.peer[1];
    const uint64_t fp = src.key.fingerprint(9);
    const uint32_t place = static_cast<uint32_t>(rng()) & 0x7fffffff;
    uint8_t compact[kCompactRecordSize], b[kPlacedRecordSize + 4];
    std::memset(b, 0xa5, sizeof b);
    ConnRecord::encode_compact(fp, src.key.proto, e, src.counters(), 0, compact);
    ASSERT_EQ(ConnRecord::encode_compact(fp, src.key.proto, e, src.counters(), 0, b, place),
              kPlacedRecordSize);
    EXPECT_EQ(b[kPlacedRecordSize], 0xa5) << "writes its 88 bytes only";
    EXPECT_EQ(b[4], kRecordPlaced);
    EXPECT_EQ(ConnRecord::wire_size(b), kPlacedRecordSize);
    EXPECT_EQ(std::memcmp(b, compact, 4), 0);
    EXPECT_EQ(std::memcmp(b + 5, compact + 5, kCompactRecordSize - 5), 0);
    EXPECT_EQ(b[84] << 24 | b[85] << 16 | b[86] << 8 | b[87], static_cast<int>(place));
    Reader r(b, kPlacedRecordSize);
    ConnRecord out;
    ASSERT_TRUE(out.decode(r, kProtocolVersionPlaced)) << codec_error_name(r.error());
    EXPECT_TRUE(r.finish());
    EXPECT_TRUE(out.compact);
    EXPECT_EQ(out.place, place);
    EXPECT_EQ(out.fingerprint, fp);
    uint8_t again[kMaxConnRecordSize];
    ASSERT_EQ(out.encode_to(again), kPlacedRecordSize);
    EXPECT_EQ(std::memcmp(again, b, kPlacedRecordSize), 0);
    Reader r7(b, kPlacedRecordSize);
    EXPECT_FALSE(ConnRecord().decode(r7, kProtocolVersionCompact)) << "a version-7 frame";
    EXPECT_EQ(r7.error(), CodecError::kBadValue);
    Reader cut(b, kCompactRecordSize);
    EXPECT_FALSE(ConnRecord().decode(cut, kProtocolVersionPlaced)) << "no placement";
    std::memset(b + 84, 0xff, 4);
    Reader none(b, kPlacedRecordSize);
    EXPECT_FALSE(ConnRecord().decode(none, kProtocolVersionPlaced)) << "placed nowhere";
  }
}

// The key a compact update names: every byte of the key and the seed count, for any seed
// (0 too) and for keys that differ in one field only, as a host's connections do.
TEST(Codec, FingerprintSeesEveryByteOfTheKeyAndTheSeed) {
  std::mt19937_64 rng(3);
  for (const uint64_t seed : {uint64_t{0}, uint64_t{7}, uint64_t{1} << 63, ~uint64_t{0}}) {
    std::set<uint64_t> seen;
    for (int i = 0; i < 2000; i++) {
      const FlowKey k = random_record(rng).key;
      const uint64_t fp = k.fingerprint(seed);
      EXPECT_NE(fp, 0u);
      EXPECT_EQ(fp, k.fingerprint(seed)) << "a function of key and seed";
      EXPECT_NE(fp, k.fingerprint(seed + 1));
      EXPECT_TRUE(seen.insert(fp).second);
      for (size_t byte = 0; byte < sizeof(FlowKey); byte++) {
        FlowKey m = k;
        reinterpret_cast<uint8_t*>(&m)[byte] ^= static_cast<uint8_t>(1 + rng() % 255);
        ASSERT_NE(m.fingerprint(seed), fp) << "byte " << byte << " seed " << seed;
      }
    }
    // One client's connections to one server: IPv4 keys apart in the source port and the
    // last address byte only.
    seen.clear();
    FlowKey k;
    k.family = Family::kV4;
    k.proto = 6;
    k.hi_addr.b[0] = 10;
    k.lo_addr.b[0] = 10;
    for (uint32_t port = 0; port < 65536; port++)
      for (uint8_t host : {1, 2}) {
        k.lo_addr.b[3] = host;
        k.lo_port = be16::from_host(static_cast<uint16_t>(port));
        ASSERT_TRUE(seen.insert(k.fingerprint(seed)).second) << "port " << port << " seed " << seed;
      }
  }
}

TEST(Codec, EntriesFrameWriterBuildsTheFrameEncodeFrameWould) {
  std::mt19937_64 rng(5);
  EntriesMsg m;
  m.round = 7;
  for (int i = 0; i < 10; i++) m.records.push_back(random_record(rng));
  EntriesFrameWriter w;
  for (int pass = 0; pass < 2; pass++) {  // the buffer is reused
    w.begin(99, 7, 16);
    for (const ConnRecord& r : m.records) r.encode_to(w.add());
    EXPECT_EQ(w.records(), 10u);
    auto [p, n] = w.finish();
    set_frame_seq(p, 12);
    std::vector<uint8_t> want = encode_frame(m, 99, 12);
    ASSERT_EQ(n, want.size());
    EXPECT_EQ(std::vector<uint8_t>(p, p + n), want);
  }
  w.begin(1, 0, 2);
  EXPECT_NE(w.add(), nullptr);
  EXPECT_NE(w.add(), nullptr);
  EXPECT_TRUE(w.full());
  EXPECT_EQ(w.add(), nullptr);
  w.begin(1, 0, 2);  // an empty frame is still a valid one
  auto [p, n] = w.finish();
  Frame f;
  ASSERT_EQ(decode_frame(p, n, &f), CodecError::kOk);
  EntriesMsg out;
  ASSERT_EQ(decode_body(f, &out), CodecError::kOk);
  EXPECT_TRUE(out.records.empty());
}

TEST(Codec, RejectsTruncationAtEveryLength) {
  std::mt19937_64 rng(3);
  expect_every_truncation_rejected(HelloMsg{1, 1, "baton-a", 1});
  expect_every_truncation_rejected(sample_prepare());
  expect_every_truncation_rejected(FailMsg{FailReason::kConflict, "mac in use"});
  EntriesMsg e{1, {random_record(rng), random_record(rng), random_record(rng)}};
  expect_every_truncation_rejected(e);
  expect_every_truncation_rejected(RoundEndMsg{1, 3});
  expect_every_truncation_rejected(FinalEndMsg{1, 3});
  expect_every_truncation_rejected(ActivatedMsg{{{0, 3}}});
  expect_every_truncation_rejected(
      HeldPacketsMsg{{{Side::kVm, std::vector<uint8_t>(64, 1)}, {Side::kNetwork, {1, 2}}}});
  expect_every_truncation_rejected(AckMsg{5});
  expect_every_truncation_rejected(AbortMsg{FailReason::kAborted, "x"});
  expect_every_truncation_rejected(VmCountersMsg{VmTraffic{{1, 2}, {3, 4}}});
  expect_every_truncation_rejected(PlacedMsg{1, {5, 6}});
}

class CodecCorrupt : public ::testing::Test {
 protected:
  void SetUp() override { bytes_ = encode_frame(RoundEndMsg{1, 2}, 3, 4); }
  CodecError decode() {
    Frame f;
    return decode_frame(bytes_.data(), bytes_.size(), &f);
  }
  void put16(size_t off, uint16_t v) {
    bytes_[off] = static_cast<uint8_t>(v >> 8);
    bytes_[off + 1] = static_cast<uint8_t>(v);
  }
  void put32(size_t off, uint32_t v) {
    put16(off, static_cast<uint16_t>(v >> 16));
    put16(off + 2, static_cast<uint16_t>(v));
  }
  std::vector<uint8_t> bytes_;
};

TEST_F(CodecCorrupt, RejectsBadMagic) {
  bytes_[0] ^= 0x20;
  EXPECT_EQ(decode(), CodecError::kBadMagic);
}

TEST_F(CodecCorrupt, RejectsUnknownVersion) {
  for (uint16_t v : {uint16_t{0}, uint16_t{kProtocolVersionMax + 1}, uint16_t{0xffff}}) {
    put16(4, v);
    EXPECT_EQ(decode(), CodecError::kBadVersion) << v;
  }
}

TEST_F(CodecCorrupt, RejectsUnknownKind) {
  for (uint16_t k : {uint16_t{0}, uint16_t{kMsgKindMax + 1}, uint16_t{0xffff}}) {
    put16(6, k);
    EXPECT_EQ(decode(), CodecError::kUnknownKind) << k;
  }
}

TEST_F(CodecCorrupt, RejectsWrongLength) {
  put32(8, 13);  // one more than the body
  EXPECT_EQ(decode(), CodecError::kTruncated);
  put32(8, 11);  // one less: a byte is left over
  EXPECT_EQ(decode(), CodecError::kTrailingBytes);
}

TEST_F(CodecCorrupt, RejectsOversizedBodyFromTheHeaderAlone) {
  put32(8, static_cast<uint32_t>(kMaxBodySize + 1));
  FrameHeader h;
  EXPECT_EQ(decode_header(bytes_.data(), kHeaderSize, &h), CodecError::kTooLarge);
  put32(8, 0xffffffffu);
  EXPECT_EQ(decode_header(bytes_.data(), kHeaderSize, &h), CodecError::kTooLarge);
  put32(8, static_cast<uint32_t>(kMaxBodySize));
  EXPECT_EQ(decode_header(bytes_.data(), kHeaderSize, &h), CodecError::kOk);
}

TEST_F(CodecCorrupt, RejectsTrailingBytesInsideTheBody) {
  bytes_.push_back(0);
  put32(8, 13);
  Frame f;
  ASSERT_EQ(decode_frame(bytes_.data(), bytes_.size(), &f), CodecError::kOk);
  RoundEndMsg m;
  EXPECT_EQ(decode_body(f, &m), CodecError::kTrailingBytes);
}

TEST_F(CodecCorrupt, RejectsBodyOfAnotherKind) {
  Frame f;
  ASSERT_EQ(decode_frame(bytes_.data(), bytes_.size(), &f), CodecError::kOk);
  FinalEndMsg m;
  EXPECT_EQ(decode_body(f, &m), CodecError::kKindMismatch);
}

// Builds a frame of `kind` around a hand-made body.
Frame raw_frame(MsgKind kind, const std::vector<uint8_t>& body) {
  Frame f;
  f.header.kind = kind;
  f.header.body_len = static_cast<uint32_t>(body.size());
  f.body = body;
  return f;
}

TEST(Codec, RejectsCountsLargerThanTheBody) {
  std::mt19937_64 rng(5);
  Writer w;
  w.u32(1);       // round
  w.u32(1000);    // claims 1000 records
  random_record(rng).encode(w);
  EntriesMsg e;
  EXPECT_EQ(decode_body(raw_frame(MsgKind::kEntries, w.take()), &e), CodecError::kBadCount);
  Writer w2;
  w2.u32(0xffffffffu);  // packets
  HeldPacketsMsg h;
  EXPECT_EQ(decode_body(raw_frame(MsgKind::kHeldPackets, w2.take()), &h), CodecError::kBadCount);
  Writer w3;
  w3.u8(200);  // 200 kind counts, none present
  ActivatedMsg a;
  EXPECT_EQ(decode_body(raw_frame(MsgKind::kActivated, w3.take()), &a), CodecError::kBadCount);
}

TEST(Codec, RejectsStringsOverTheirLimit) {
  HelloMsg h{1, 1, std::string(kMaxNameLen + 1, 'x'), 1};
  Frame f;
  auto b = encode_frame(h, 1, 1);
  ASSERT_EQ(decode_frame(b.data(), b.size(), &f), CodecError::kOk);
  HelloMsg out;
  EXPECT_EQ(decode_body(f, &out), CodecError::kStringTooLong);
  Writer w;
  w.u8(static_cast<uint8_t>(FailReason::kConflict));
  w.str(std::string(kMaxDetailLen + 1, 'y'));
  FailMsg fm;
  EXPECT_EQ(decode_body(raw_frame(MsgKind::kFail, w.take()), &fm), CodecError::kStringTooLong);
  // The encoder cuts detail text to the limit instead of producing an undecodable frame.
  FailMsg longer{FailReason::kConflict, std::string(kMaxDetailLen + 100, 'z')};
  b = encode_frame(longer, 1, 1);
  ASSERT_EQ(decode_frame(b.data(), b.size(), &f), CodecError::kOk);
  ASSERT_EQ(decode_body(f, &fm), CodecError::kOk);
  EXPECT_EQ(fm.detail.size(), kMaxDetailLen);
}

TEST(Codec, RejectsFieldsOutsideTheirDomain) {
  std::mt19937_64 rng(11);
  auto entries_with = [&](auto mutate) {
    ConnRecord r = random_record(rng);
    r.key.proto = 6;
    r.key.family = Family::kV4;
    r.key.lo_addr = v4(10, 0, 0, 1);
    r.key.hi_addr = v4(10, 0, 0, 2);
    Writer w;
    w.u32(0);
    w.u32(1);
    r.encode(w);
    auto body = w.take();
    mutate(body.data() + 8);
    EntriesMsg e;
    return decode_body(raw_frame(MsgKind::kEntries, body), &e);
  };
  EXPECT_EQ(entries_with([](uint8_t*) {}), CodecError::kOk);
  EXPECT_EQ(entries_with([](uint8_t* p) { p[4] = 2; }), CodecError::kBadValue);   // deleted
  EXPECT_EQ(entries_with([](uint8_t* p) { p[5] = 5; }), CodecError::kBadValue);   // family
  EXPECT_EQ(entries_with([](uint8_t* p) { p[7] = 0x10; }), CodecError::kBadValue);  // vlan
  // An IPv4 address's 12 trailing bytes, each word of them, in either address.
  for (int at : {9 + 4, 9 + 8, 9 + 15, 25 + 4, 25 + 11, 25 + 15})
    EXPECT_EQ(entries_with([at](uint8_t* p) { p[at] = 1; }), CodecError::kBadValue) << at;
  EXPECT_EQ(entries_with([](uint8_t* p) { p[45] = 200; }), CodecError::kBadValue);  // tcp state
  EXPECT_EQ(entries_with([](uint8_t* p) { p[46] = connflag::kFromPeer; }), CodecError::kBadValue);
  EXPECT_EQ(entries_with([](uint8_t* p) { p[52 + 12] = 15; }), CodecError::kBadValue);  // wscale
  EXPECT_EQ(entries_with([](uint8_t* p) { p[52 + 13] = 0x80; }), CodecError::kBadValue);
  Writer w;
  w.u8(200);
  w.str("");
  FailMsg f;
  EXPECT_EQ(decode_body(raw_frame(MsgKind::kFail, w.take()), &f), CodecError::kBadValue);
  Writer w2;
  w2.u8(0);  // FAIL with reason none makes no sense
  w2.str("");
  EXPECT_EQ(decode_body(raw_frame(MsgKind::kFail, w2.take()), &f), CodecError::kBadValue);
  ActivatedMsg a;
  Writer w3;
  w3.u8(2);
  w3.u8(0); w3.u64(1);
  w3.u8(0); w3.u64(2);  // the same kind twice
  EXPECT_EQ(decode_body(raw_frame(MsgKind::kActivated, w3.take()), &a), CodecError::kBadValue);
}

// Random corruption of valid frames never crashes and never decodes into something that does
// not re-encode to the same bytes.
TEST(Codec, SurvivesRandomCorruption) {
  std::mt19937_64 rng(13);
  EntriesMsg e{1, {random_record(rng), random_record(rng)}};
  std::vector<std::vector<uint8_t>> seeds = {
      encode_frame(sample_prepare(), 1, 1), encode_frame(e, 1, 2),
      encode_frame(HeldPacketsMsg{{{Side::kVm, {1, 2, 3}}}}, 1, 3)};
  for (int i = 0; i < 20000; ++i) {
    auto b = seeds[i % seeds.size()];
    int flips = 1 + static_cast<int>(rng() % 4);
    for (int k = 0; k < flips; ++k)
      b[kHeaderSize + rng() % (b.size() - kHeaderSize)] = static_cast<uint8_t>(rng());
    Frame f;
    if (decode_frame(b.data(), b.size(), &f) != CodecError::kOk) continue;
    switch (f.header.kind) {
      case MsgKind::kPrepare: { PrepareMsg m; (void)decode_body(f, &m); break; }
      case MsgKind::kEntries: {
        EntriesMsg m;
        if (decode_body(f, &m) == CodecError::kOk) {
          EXPECT_EQ(encode_frame(m, 1, 2), b);
        }
        break;
      }
      default: { HeldPacketsMsg m; (void)decode_body(f, &m); break; }
    }
  }
}

TEST(Feedback, NamesAndRetryAdvice) {
  EXPECT_STREQ(fail_reason_name(FailReason::kNone), "SUCCESS");
  EXPECT_STREQ(fail_reason_name(FailReason::kResources), "RESOURCES");
  EXPECT_STREQ(fail_reason_name(FailReason::kAuth), "AUTH");
  for (uint8_t v = 0; v < kFailReasonCount; ++v) {
    auto r = static_cast<FailReason>(v);
    EXPECT_EQ(parse_fail_reason(fail_reason_name(r)), r);
    EXPECT_EQ(retry_may_help(r), r == FailReason::kTransfer || r == FailReason::kTimeout);
  }
  EXPECT_FALSE(fail_reason_from_wire(kFailReasonCount).has_value());
  EXPECT_FALSE(parse_fail_reason("NOPE").has_value());
}


// ---- translated connections (protocol version 2) ---------------------------------------------

ConnRecord translated_record() {
  std::mt19937_64 rng(21);
  ConnRecord r;
  do r = random_record(rng); while (r.deleted || r.key.family != Family::kV4);
  r.flags |= connflag::kXlate;
  r.xlate.reply_src = be32::from_host(0x0a000005);
  r.xlate.reply_dst = be32::from_host(0xc6336401);
  r.xlate.reply_sport = be16::from_host(80);
  r.xlate.reply_dport = be16::from_host(40000);
  r.xlate.kind = XlateKind::kStatic;
  return r;
}

TEST(Codec, TranslatedRecordCarriesItsReplyTupleAfterTheFixedBytes) {
  const ConnRecord r = translated_record();
  Writer w;
  r.encode(w);
  ASSERT_EQ(w.size(), kConnRecordSize + kXlateExtSize);
  const uint8_t* p = w.buffer().data();
  EXPECT_EQ(p[46] & 0x20, 0x20);
  const uint8_t ext[kXlateExtSize] = {10, 0, 0, 5, 198, 51, 100, 1, 0, 80, 0x9c, 0x40, 2, 0, 0, 0};
  EXPECT_EQ(std::memcmp(p + kConnRecordSize, ext, kXlateExtSize), 0);
  Reader rd(p, w.size());
  ConnRecord out;
  ASSERT_TRUE(out.decode(rd, 2));
  EXPECT_TRUE(rd.finish());
  EXPECT_TRUE(out == r);
  EXPECT_EQ(out.xlate.kind, XlateKind::kStatic);
  EXPECT_EQ(out.xlate.reply_dport.host(), 40000);
}

TEST(Codec, TranslatedRecordIsRefusedInVersion1AndOnATombstone) {
  Writer w;
  translated_record().encode(w);
  {
    Reader rd(w.buffer().data(), w.size());
    ConnRecord out;
    EXPECT_FALSE(out.decode(rd, 1));
    EXPECT_EQ(rd.error(), CodecError::kBadValue);
  }
  std::vector<uint8_t> b = w.buffer();
  b[4] = 1;  // deleted
  Reader rd(b.data(), b.size());
  ConnRecord out;
  EXPECT_FALSE(out.decode(rd, 2));
  EXPECT_EQ(rd.error(), CodecError::kBadValue);
}

TEST(Codec, TranslationExtensionRejectsGarbage) {
  Writer w;
  translated_record().encode(w);
  const std::vector<uint8_t> good = w.buffer();
  struct Case {
    const char* what;
    size_t at;
    uint8_t value;
  } cases[] = {{"kind none", kConnRecordSize + 12, 0},
               {"kind beyond the list", kConnRecordSize + 12, static_cast<uint8_t>(XlateKind::kCount)},
               {"reserved byte", kConnRecordSize + 13, 1},
               {"last reserved byte", kConnRecordSize + 15, 0x80}};
  for (const Case& c : cases) {
    std::vector<uint8_t> b = good;
    b[c.at] = c.value;
    Reader rd(b.data(), b.size());
    ConnRecord out;
    EXPECT_FALSE(out.decode(rd, 2)) << c.what;
    EXPECT_EQ(rd.error(), CodecError::kBadValue) << c.what;
  }
  Reader rd(good.data(), good.size() - 1);  // the extension cut short
  ConnRecord out;
  EXPECT_FALSE(out.decode(rd, 2));
  EXPECT_EQ(rd.error(), CodecError::kTruncated);
}

// Translation is IPv4's: a peer's translated record with an IPv6 key is refused, not installed
// with a rewrite read from the wrong header.
TEST(Codec, TranslatedRecordOfAnIpv6ConnectionIsRefused) {
  ConnRecord r = translated_record();
  r.key.family = Family::kV6;
  r.key.lo_addr.b[15] = 1;
  Writer w;
  r.encode(w);
  Reader rd(w.buffer().data(), w.size());
  ConnRecord out;
  EXPECT_FALSE(out.decode(rd, kProtocolVersionMax));
  EXPECT_EQ(rd.error(), CodecError::kBadValue);
}

TEST(Codec, EntriesFrameWriterMixesPlainAndTranslatedRecords) {
  std::mt19937_64 rng(33);
  EntriesMsg m;
  m.round = 2;
  for (int i = 0; i < 12; i++) m.records.push_back(i % 3 ? random_record(rng) : translated_record());
  EntriesFrameWriter w;
  w.begin(5, 2, 16);
  for (const ConnRecord& r : m.records) r.encode_to(w.add());
  auto [p, n] = w.finish();
  set_frame_seq(p, 3);
  EXPECT_EQ(std::vector<uint8_t>(p, p + n), encode_frame(m, 5, 3));
  Frame f;
  ASSERT_EQ(decode_frame(p, n, &f), CodecError::kOk);
  EntriesMsg out;
  ASSERT_EQ(decode_body(f, &out), CodecError::kOk);
  EXPECT_TRUE(out == m);
}

TEST(Codec, EncodeEntryCarriesTheTranslationOnlyWithItsRecord) {
  ConnEntry e;
  e.flags = connflag::kXlate;
  FlowKey k = translated_record().key;
  ConnXlate x;
  x.reply_src = be32::from_host(1);
  x.kind = XlateKind::kDnat;
  uint8_t buf[kMaxConnRecordSize];
  EXPECT_EQ(ConnRecord::encode_entry(k, e, {}, 0, buf, &x), kConnRecordSize + kXlateExtSize);
  EXPECT_EQ(ConnRecord::wire_size(buf), kConnRecordSize + kXlateExtSize);
  EXPECT_EQ(ConnRecord::encode_entry(k, e, {}, 0, buf, nullptr), kConnRecordSize);
  EXPECT_EQ(buf[46] & 0x20, 0);
}

// ---- what stands behind a translation (protocol version 3) ------------------------------------

ConnRecord handoff_record(XlateKind k, bool sticky) {
  ConnRecord r = translated_record();
  r.xlate.kind = k;
  XlateHandoff& h = r.xlate.handoff;
  if (k == XlateKind::kSnat || k == XlateKind::kHairpin) {
    h.has_mapping = true;
    h.mapping_behavior = 0;
    h.filtering = 2;
    h.inside_addr = be32::from_host(0x0a010005);
    h.inside_port = be16::from_host(40000);
    h.outside_addr = be32::from_host(0xcb00710a);  // 203.0.113.10
    h.outside_port = be16::from_host(20001);
  } else {
    h.has_lb = true;
    h.vip = be32::from_host(0xcb007164);
    h.vip_port = be16::from_host(80);
    h.backend_addr = be32::from_host(0x0a020002);
    h.backend_port = be16::from_host(8080);
    if (sticky) {
      h.has_sticky = true;
      h.sticky_method = 1;  // source address
      h.sticky_family = static_cast<uint8_t>(Family::kV4);
      h.sticky_data = {10, 1, 0, 5};
      h.sticky_backend_addr = be32::from_host(0x0a020003);
      h.sticky_backend_port = be16::from_host(8080);
      h.sticky_age_s = 100;
      h.sticky_idle_s = 7;
      h.sticky_ttl_s = 1793;
    }
  }
  return r;
}

TEST(Codec, HandoffPartsRoundTripPerKindWithTheirDocumentedSizes) {
  struct Case {
    XlateKind kind;
    bool sticky;
    size_t size;
  } cases[] = {
      {XlateKind::kSnat, false, kConnRecordSize + kXlateExtSize + kMappingPartSize},
      {XlateKind::kHairpin, false, kConnRecordSize + kXlateExtSize + kMappingPartSize},
      {XlateKind::kLbNat, false, kConnRecordSize + kXlateExtSize + kLbPartSize},
      {XlateKind::kLbFullNat, true, kConnRecordSize + kXlateExtSize + kLbPartSize + kStickyPartSize},
  };
  for (const Case& c : cases) {
    const ConnRecord r = handoff_record(c.kind, c.sticky);
    Writer w;
    r.encode(w, kProtocolVersionHandoff);
    ASSERT_EQ(w.size(), c.size) << xlate_kind_name(c.kind);
    EXPECT_EQ(ConnRecord::wire_size(w.buffer().data()), c.size);
    Reader rd(w.buffer().data(), w.size());
    ConnRecord out;
    ASSERT_TRUE(out.decode(rd, kProtocolVersionHandoff)) << codec_error_name(rd.error());
    EXPECT_TRUE(rd.finish());
    EXPECT_TRUE(out == r) << xlate_kind_name(c.kind);
    EXPECT_EQ(out.xlate.handoff, r.xlate.handoff);
  }
  // Byte layout of the mapping part (docs/WIRE.md): after the 16-byte extension.
  Writer w;
  handoff_record(XlateKind::kSnat, false).encode(w, kProtocolVersionHandoff);
  const uint8_t* p = w.buffer().data() + kConnRecordSize;
  EXPECT_EQ(p[13], xpart::kMapping);
  const uint8_t part[kMappingPartSize] = {0, 2, 0, 0, 10, 1, 0, 5, 0x9c, 0x40, 203, 0, 113, 10, 0x4e, 0x21};
  EXPECT_EQ(std::memcmp(p + kXlateExtSize, part, kMappingPartSize), 0);
}

TEST(Codec, AVersion2PeerGetsNoHandoffAndRefusesOne) {
  const ConnRecord r = handoff_record(XlateKind::kLbNat, true);
  Writer w2;
  r.encode(w2, kProtocolVersionXlate);
  ASSERT_EQ(w2.size(), kConnRecordSize + kXlateExtSize) << "a version-2 record has no parts";
  EXPECT_EQ(w2.buffer()[kConnRecordSize + 13], 0);
  {
    Reader rd(w2.buffer().data(), w2.size());
    ConnRecord out;
    ASSERT_TRUE(out.decode(rd, kProtocolVersionXlate));
    EXPECT_EQ(out.xlate.handoff, XlateHandoff{});
  }
  Writer w3;
  r.encode(w3, kProtocolVersionHandoff);
  Reader rd(w3.buffer().data(), w3.size());
  ConnRecord out;
  EXPECT_FALSE(out.decode(rd, kProtocolVersionXlate));
  EXPECT_EQ(rd.error(), CodecError::kBadValue);
}

TEST(Codec, HandoffPartsRejectGarbageAndMissingParts) {
  const size_t ext = kConnRecordSize, part = kConnRecordSize + kXlateExtSize;
  struct Case {
    const char* what;
    XlateKind kind;
    bool sticky;
    size_t at;
    uint8_t value;
  } cases[] = {
      {"snat without its mapping", XlateKind::kSnat, false, ext + 13, 0},
      {"snat with an lb part", XlateKind::kSnat, false, ext + 13, xpart::kMapping | xpart::kLb},
      {"unknown part bit", XlateKind::kSnat, false, ext + 13, xpart::kMapping | 0x08},
      {"static NAT with a mapping", XlateKind::kSnat, false, ext + 12, static_cast<uint8_t>(XlateKind::kStatic)},
      {"mapping behaviour beyond the list", XlateKind::kSnat, false, part, 3},
      {"filtering beyond the list", XlateKind::kSnat, false, part + 1, 3},
      {"mapping reserved byte", XlateKind::kSnat, false, part + 2, 1},
      {"outside address zero", XlateKind::kSnat, false, part + 10, 0},
      {"lb without its service", XlateKind::kLbNat, false, ext + 13, 0},
      {"sticky without lb", XlateKind::kLbNat, true, ext + 13, xpart::kSticky},
      {"lb with a mapping", XlateKind::kLbNat, false, ext + 13, xpart::kLb | xpart::kMapping},
      {"vip zero", XlateKind::kLbNat, false, part, 0},
      {"sticky method zero", XlateKind::kLbNat, true, part + kLbPartSize, 0},
      {"sticky method beyond the list", XlateKind::kLbNat, true, part + kLbPartSize, 5},
      {"source sticky key without a family", XlateKind::kLbNat, true, part + kLbPartSize + 1, 0},
      {"sticky reserved byte", XlateKind::kLbNat, true, part + kLbPartSize + 30, 1},
  };
  for (const Case& c : cases) {
    Writer w;
    handoff_record(c.kind, c.sticky).encode(w, kProtocolVersionHandoff);
    std::vector<uint8_t> b = w.buffer();
    // Some cases zero a whole address: its other bytes too.
    b[c.at] = c.value;
    if (std::string(c.what).find("zero") != std::string::npos && std::string(c.what).find("method") == std::string::npos)
      std::memset(b.data() + c.at, 0, 4);
    Reader rd(b.data(), b.size());
    ConnRecord out;
    bool ok = out.decode(rd, kProtocolVersionHandoff) && rd.finish();
    EXPECT_FALSE(ok) << c.what;
    EXPECT_TRUE(rd.error() == CodecError::kBadValue || rd.error() == CodecError::kTrailingBytes)
        << c.what << ": " << codec_error_name(rd.error());
  }
  // A part cut short.
  Writer w;
  handoff_record(XlateKind::kLbFullNat, true).encode(w, kProtocolVersionHandoff);
  Reader rd(w.buffer().data(), w.size() - 1);
  ConnRecord out;
  EXPECT_FALSE(out.decode(rd, kProtocolVersionHandoff));
  EXPECT_EQ(rd.error(), CodecError::kTruncated);
}

// ---- an L7 connection's splice state (protocol version 4) --------------------------------------

ConnRecord l7_record() {
  ConnRecord r = handoff_record(XlateKind::kLbFullNat, false);
  r.xlate.l7.has = true;
  r.xlate.l7.phase = L7Phase::kSpliced;
  r.xlate.l7.offsets.to_backend = {0x00000000, 0x87654321, 0x00000000, 0xfffff000, 7, 5};
  r.xlate.l7.offsets.to_client = {0x789abcdf, 0x00000000, 0x00001000, 0x00000000, 5, 7};
  return r;
}

TEST(Codec, L7PartRoundTripsWithItsDocumentedLayout) {
  const ConnRecord r = l7_record();
  Writer w;
  r.encode(w, kProtocolVersionL7);
  const size_t size = kConnRecordSize + kXlateExtSize + kLbPartSize + kL7PartSize;
  ASSERT_EQ(w.size(), size);
  EXPECT_EQ(ConnRecord::wire_size(w.buffer().data()), size);
  const uint8_t* p = w.buffer().data() + kConnRecordSize;
  EXPECT_EQ(p[13], xpart::kLb | xpart::kL7);
  // docs/WIRE.md: phase, 3 zero, then to_backend and to_client {seq, ack, tsval, tsecr,
  // win_from, win_to, 2 zero}, big-endian, after the lb part.
  const uint8_t part[kL7PartSize] = {
      3, 0, 0, 0,
      0, 0, 0, 0, 0x87, 0x65, 0x43, 0x21, 0, 0, 0, 0, 0xff, 0xff, 0xf0, 0, 7, 5, 0, 0,
      0x78, 0x9a, 0xbc, 0xdf, 0, 0, 0, 0, 0, 0, 0x10, 0, 0, 0, 0, 0, 5, 7, 0, 0};
  EXPECT_EQ(std::memcmp(p + kXlateExtSize + kLbPartSize, part, kL7PartSize), 0);
  Reader rd(w.buffer().data(), w.size());
  ConnRecord out;
  ASSERT_TRUE(out.decode(rd, kProtocolVersionL7)) << codec_error_name(rd.error());
  EXPECT_TRUE(rd.finish());
  EXPECT_EQ(out.xlate.l7, r.xlate.l7);
  EXPECT_TRUE(out == r);
  // With a sticky entry the l7 part still comes last.
  ConnRecord s = l7_record();
  s.xlate.handoff = handoff_record(XlateKind::kLbFullNat, true).xlate.handoff;
  Writer ws;
  s.encode(ws, kProtocolVersionL7);
  ASSERT_EQ(ws.size(), size + kStickyPartSize);
  Reader rs(ws.buffer().data(), ws.size());
  ASSERT_TRUE(out.decode(rs, kProtocolVersionL7));
  EXPECT_TRUE(out == s);
}

TEST(Codec, AVersion3PeerGetsNoL7PartAndRefusesOne) {
  const ConnRecord r = l7_record();
  Writer w3;
  r.encode(w3, kProtocolVersionHandoff);
  ASSERT_EQ(w3.size(), kConnRecordSize + kXlateExtSize + kLbPartSize);
  EXPECT_EQ(w3.buffer()[kConnRecordSize + 13], xpart::kLb);
  Writer w4;
  r.encode(w4, kProtocolVersionL7);
  Reader rd(w4.buffer().data(), w4.size());
  ConnRecord out;
  EXPECT_FALSE(out.decode(rd, kProtocolVersionHandoff));
  EXPECT_EQ(rd.error(), CodecError::kBadValue);
}

TEST(Codec, L7PartRejectsGarbage) {
  const size_t ext = kConnRecordSize, l7 = kConnRecordSize + kXlateExtSize + kLbPartSize;
  struct Case {
    const char* what;
    size_t at;
    uint8_t value;
  } cases[] = {
      {"l7 part on an lb nat connection", ext + 12, static_cast<uint8_t>(XlateKind::kLbNat)},
      {"l7 part without the lb part", ext + 13, xpart::kL7},
      {"phase none", l7, 0},
      {"phase reading (holds a head buffer)", l7, static_cast<uint8_t>(L7Phase::kReading)},
      {"phase beyond the list", l7, 6},
      {"reserved byte after the phase", l7 + 2, 1},
      {"to_backend window shift beyond 14", l7 + 4 + 16, 15},
      {"to_client window shift beyond 14", l7 + 24 + 17, 15},
      {"to_client reserved byte", l7 + 24 + 19, 1},
  };
  for (const Case& c : cases) {
    Writer w;
    l7_record().encode(w, kProtocolVersionL7);
    std::vector<uint8_t> b = w.buffer();
    b[c.at] = c.value;
    Reader rd(b.data(), b.size());
    ConnRecord out;
    const bool ok = out.decode(rd, kProtocolVersionL7) && rd.finish();
    EXPECT_FALSE(ok) << c.what;
    EXPECT_TRUE(rd.error() == CodecError::kBadValue || rd.error() == CodecError::kTrailingBytes)
        << c.what << ": " << codec_error_name(rd.error());
  }
  Writer w;
  l7_record().encode(w, kProtocolVersionL7);
  for (size_t n = kConnRecordSize + kXlateExtSize; n < w.size(); n++) {
    Reader rd(w.buffer().data(), n);
    ConnRecord out;
    EXPECT_FALSE(out.decode(rd, kProtocolVersionL7)) << n;
    EXPECT_EQ(rd.error(), CodecError::kTruncated) << n;
  }
}

// m encoded and decoded again: the first error (frame, then body), the message in *out if none.
CodecError reencoded(const PrepareMsg& m, PrepareMsg* out) {
  auto bytes = encode_frame(m, 1, 1);
  Frame f;
  const CodecError e = decode_frame(bytes.data(), bytes.size(), &f);
  return e == CodecError::kOk ? decode_body(f, out) : e;
}

TEST(Codec, PrepareCarriesHandoffNeedsFromVersion3Only) {
  PrepareMsg m = sample_prepare();
  m.protocol_version = kProtocolVersionHandoff;
  m.needs.nat = {{6, be32::from_host(0x0a010005), be32::from_host(0xcb00710a), be16::from_host(20001)}};
  LbNeed lb;
  lb.proto = 6;
  lb.vip = be32::from_host(0xcb007164);
  lb.vip_port = be16::from_host(80);
  lb.backend_addr = be32::from_host(0x0a020002);
  lb.backend_port = be16::from_host(8080);
  lb.local_addr = be32::from_host(0xcb007165);
  m.needs.lb = {lb};
  expect_round_trip(m);
  expect_every_truncation_rejected(m);

  PrepareMsg old = m;
  old.protocol_version = kProtocolVersionXlate;
  PrepareMsg out;
  ASSERT_EQ(reencoded(old, &out), CodecError::kOk);
  EXPECT_TRUE(out.needs.nat.empty() && out.needs.lb.empty()) << "version 2 has no needs";

  // An outside address of zero is refused.
  PrepareMsg bad = m;
  bad.needs.nat[0].outside_addr = be32();
  EXPECT_EQ(reencoded(bad, &out), CodecError::kBadValue);
}

TEST(Codec, PrepareCarriesItsIpv6ConnectionsFromVersion5Only) {
  PrepareMsg m = sample_prepare();
  m.protocol_version = kProtocolVersionFamilies;
  m.counts = {{static_cast<uint8_t>(StateKind::kConn), 1000}};
  m.conn_v6 = 300;
  expect_round_trip(m);
  expect_every_truncation_rejected(m);

  PrepareMsg old = m;
  old.protocol_version = kProtocolVersionL7;
  PrepareMsg out;
  ASSERT_EQ(reencoded(old, &out), CodecError::kOk);
  EXPECT_EQ(out.conn_v6, 0u) << "version 4 has no family split";

  // More IPv6 connections than connections is refused.
  PrepareMsg bad = m;
  bad.conn_v6 = 1001;
  EXPECT_EQ(reencoded(bad, &out), CodecError::kBadValue);
}

// Version 6 ends the profile with max_half_open (u32); a version-5 PREPARE has none (the source
// refuses such a peer for a VM that has a limit: engine.cc).
TEST(Codec, PrepareCarriesMaxHalfOpenFromVersion6Only) {
  PrepareMsg m = sample_prepare();
  m.protocol_version = kProtocolVersionCumulative;
  m.vm.profile.max_half_open = 0x01020304;
  expect_round_trip(m);
  expect_every_truncation_rejected(m);
  auto b = encode_frame(m, 1, 1);
  EXPECT_EQ(std::vector<uint8_t>(b.end() - 4, b.end()), (std::vector<uint8_t>{1, 2, 3, 4}));

  PrepareMsg old = m;
  old.protocol_version = kProtocolVersionFamilies;
  PrepareMsg out;
  ASSERT_EQ(reencoded(old, &out), CodecError::kOk);
  EXPECT_EQ(out.vm.profile.max_half_open, 0u);
  EXPECT_EQ(encode_frame(old, 1, 1).size() + 4, b.size());
}

}  // namespace
}  // namespace baton::migrate
