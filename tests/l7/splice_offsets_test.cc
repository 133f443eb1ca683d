// SPDX-License-Identifier: Apache-2.0
//
// Splice offsets: a backend's data and the client's acks, SACK blocks and timestamps travel
// through rewrite_segment() and each end sees only its own numbers, across 2^32 wraparound;
// window rescaling; the incremental checksum against a full recomputation over random segments
// (random option layouts, so fields sit at odd offsets too); malformed headers and options
// refused without a byte read past the end or written.
#include "lb/splice_offsets.h"

#include <gtest/gtest.h>

#include <cstring>
#include <memory>
#include <random>
#include <vector>

#include "nat/checksum.h"

namespace baton {
namespace {

constexpr uint8_t kSyn = 0x02, kRst = 0x04, kPsh = 0x08, kAck = 0x10;

struct Seg {
  uint32_t seq = 0, ack = 0;
  uint8_t flags = kAck;
  uint16_t window = 1000;
  std::vector<uint8_t> options;  // padded with EOL to a multiple of 4
  size_t payload = 0;
};

void put32(uint8_t* p, uint32_t v) {
  p[0] = static_cast<uint8_t>(v >> 24);
  p[1] = static_cast<uint8_t>(v >> 16);
  p[2] = static_cast<uint8_t>(v >> 8);
  p[3] = static_cast<uint8_t>(v);
}
uint32_t get32(const uint8_t* p) {
  return uint32_t{p[0]} << 24 | uint32_t{p[1]} << 16 | uint32_t{p[2]} << 8 | p[3];
}
uint16_t get16(const uint8_t* p) { return static_cast<uint16_t>(p[0] << 8 | p[1]); }

std::vector<uint8_t> opt_ts(uint32_t tsval, uint32_t tsecr) {
  std::vector<uint8_t> o = {8, 10, 0, 0, 0, 0, 0, 0, 0, 0};
  put32(&o[2], tsval);
  put32(&o[6], tsecr);
  return o;
}
std::vector<uint8_t> opt_sack(const std::vector<std::pair<uint32_t, uint32_t>>& blocks) {
  std::vector<uint8_t> o = {5, static_cast<uint8_t>(2 + 8 * blocks.size())};
  for (auto [l, r] : blocks) {
    o.resize(o.size() + 8);
    put32(&o[o.size() - 8], l);
    put32(&o[o.size() - 4], r);
  }
  return o;
}
std::vector<uint8_t> cat(std::vector<uint8_t> a, const std::vector<uint8_t>& b) {
  a.insert(a.end(), b.begin(), b.end());
  return a;
}

// The TCP checksum over an IPv4 pseudo-header (10.0.0.1 -> 10.0.0.2) and the segment.
uint16_t full_checksum(std::vector<uint8_t> seg) {
  seg[16] = seg[17] = 0;
  uint8_t pseudo[12] = {10, 0, 0, 1, 10, 0, 0, 2, 0, 6,
                        static_cast<uint8_t>(seg.size() >> 8), static_cast<uint8_t>(seg.size())};
  uint16_t c = csum_fold(csum_partial(seg.data(), seg.size(), csum_partial(pseudo, 12)));
  uint16_t raw;
  std::memcpy(&raw, &c, 2);
  return raw;
}
uint16_t checksum_field(const std::vector<uint8_t>& seg) {
  uint16_t raw;
  std::memcpy(&raw, &seg[16], 2);
  return raw;
}

std::vector<uint8_t> build(const Seg& s, std::mt19937* rng = nullptr) {
  std::vector<uint8_t> opts = s.options;
  while (opts.size() % 4) opts.push_back(0);
  std::vector<uint8_t> b(20 + opts.size() + s.payload, 0);
  b[0] = 0x30, b[1] = 0x39, b[2] = 0x00, b[3] = 0x50;  // ports 12345 -> 80
  put32(&b[4], s.seq);
  put32(&b[8], s.ack);
  b[12] = static_cast<uint8_t>((20 + opts.size()) / 4 << 4);
  b[13] = s.flags;
  b[14] = static_cast<uint8_t>(s.window >> 8);
  b[15] = static_cast<uint8_t>(s.window);
  std::copy(opts.begin(), opts.end(), b.begin() + 20);
  for (size_t i = 20 + opts.size(); i < b.size(); ++i) b[i] = rng ? static_cast<uint8_t>((*rng)()) : 'x';
  uint16_t c = full_checksum(b);
  std::memcpy(&b[16], &c, 2);
  return b;
}

// Rewrites and checks that the checksum still verifies.
std::vector<uint8_t> through(const SpliceDirOffsets& d, const Seg& s) {
  std::vector<uint8_t> b = build(s);
  EXPECT_EQ(rewrite_segment(d, b.data(), b.size()), SpliceRewrite::kOk);
  EXPECT_EQ(checksum_field(b), full_checksum(b));
  return b;
}

SpliceHandshake handshake(uint32_t lb_isn, uint32_t backend_isn) {
  SpliceHandshake h;
  h.lb_isn = lb_isn;
  h.backend_isn = backend_isn;
  h.client_timestamps = h.backend_timestamps = true;
  h.lb_tsval = 0xfffffff0;  // the LB's clock about to wrap
  h.backend_tsval = 77;
  return h;
}

TEST(SpliceOffsets, BackendDataAndClientAcksRoundTripAcrossWraparound) {
  // ISN pairs on either side of 2^32 and far apart, so that both spaces wrap during the transfer.
  const std::pair<uint32_t, uint32_t> isns[] = {
      {0x00000010, 0xfffffff0}, {0xfffffff0, 0x00000010}, {0x7fffffff, 0x80000000},
      {0xffff0000, 0xffff8000}, {12345, 12345}};
  for (auto [lb_isn, backend_isn] : isns) {
    SCOPED_TRACE(::testing::Message() << "L=" << lb_isn << " B=" << backend_isn);
    std::optional<SpliceOffsets> o = make_splice_offsets(handshake(lb_isn, backend_isn));
    ASSERT_TRUE(o);
    const uint32_t client_next = 0xffffff00;  // the client's own seq, never changed
    uint32_t backend_seq = backend_isn + 1, client_view = lb_isn + 1;
    const uint32_t step = 160 * 1460;      // a window's worth of segments between samples
    for (int i = 0; i < 20000; ++i) {      // 20000 * step = 4.7 GB: both spaces wrap
      Seg data{backend_seq, client_next, kAck | kPsh, 500, {}, 0};
      std::vector<uint8_t> to_client = through(o->to_client, data);
      ASSERT_EQ(get32(&to_client[4]), client_view);
      ASSERT_EQ(get32(&to_client[8]), client_next);
      backend_seq += step;
      client_view += step;
      Seg ack{client_next, client_view, kAck, 500, {}, 0};
      std::vector<uint8_t> to_backend = through(o->to_backend, ack);
      ASSERT_EQ(get32(&to_backend[4]), client_next);
      ASSERT_EQ(get32(&to_backend[8]), backend_seq);
    }
  }
}

TEST(SpliceOffsets, ShiftsSackBlocksFromTheClientOnly) {
  const uint32_t L = 0xfffffffe, B = 1000;
  SpliceOffsets o = *make_splice_offsets(handshake(L, B));
  // The client reports backend bytes it holds out of order, in its own (LB-given) numbers.
  Seg from_client{5, L + 1, kAck, 500, cat({1, 1}, opt_sack({{L + 1461, L + 2921}, {L + 4381, 7}})), 0};
  std::vector<uint8_t> b = through(o.to_backend, from_client);
  EXPECT_EQ(get32(&b[8]), B + 1);
  EXPECT_EQ(get32(&b[24]), B + 1461);
  EXPECT_EQ(get32(&b[28]), B + 2921);
  EXPECT_EQ(get32(&b[32]), B + 4381);
  EXPECT_EQ(get32(&b[36]), 7 - L + B);
  // The backend's SACK blocks name client bytes, whose numbers are the same on both halves.
  Seg from_backend{B + 1, 5, kAck, 500, cat({1, 1}, opt_sack({{1000, 2000}})), 0};
  b = through(o.to_client, from_backend);
  EXPECT_EQ(get32(&b[4]), L + 1);
  EXPECT_EQ(get32(&b[24]), 1000u);
  EXPECT_EQ(get32(&b[28]), 2000u);
}

TEST(SpliceOffsets, ShiftsTheBackendClockAndItsEcho) {
  SpliceHandshake h = handshake(1, 2);  // tl = 0xfffffff0, tb = 77
  SpliceOffsets o = *make_splice_offsets(h);
  // Backend -> client: TSval on the backend's clock becomes the LB's; TSecr echoes the client.
  Seg from_backend{3, 9, kAck, 500, cat({1, 1}, opt_ts(77 + 100, 5555)), 0};
  std::vector<uint8_t> b = through(o.to_client, from_backend);
  EXPECT_EQ(get32(&b[24]), 0xfffffff0u + 100);  // wrapped
  EXPECT_EQ(get32(&b[28]), 5555u);
  // Client -> backend: its TSval passes; its echo of the LB-clock value returns to the backend's.
  Seg from_client{9, 3, kAck, 500, cat({1, 1}, opt_ts(5600, 0xfffffff0u + 100)), 0};
  b = through(o.to_backend, from_client);
  EXPECT_EQ(get32(&b[24]), 5600u);
  EXPECT_EQ(get32(&b[28]), 177u);
}

TEST(SpliceOffsets, LeavesAckFieldsOfSegmentsWithoutAck) {
  SpliceOffsets o = *make_splice_offsets(handshake(100, 5000));
  Seg rst{200, 0x12345678, kRst, 0, opt_ts(1, 0xabcdef01), 0};
  std::vector<uint8_t> b = through(o.to_backend, rst);
  EXPECT_EQ(get32(&b[8]), 0x12345678u);
  EXPECT_EQ(get32(&b[26]), 0xabcdef01u);
  b = through(o.to_client, Seg{5001, 0x12345678, kRst, 0, {}, 0});
  EXPECT_EQ(get32(&b[4]), 101u);
}

TEST(SpliceOffsets, RescalesWindowsWhenTheHalvesScaleDifferently) {
  SpliceHandshake h = handshake(1, 2);
  h.client_wscale = 7;
  h.lb_wscale = 9;
  h.backend_wscale = 7;
  SpliceOffsets o = *make_splice_offsets(h);
  // Backend window 1000 << 7 bytes, announced to a client that applies 9.
  EXPECT_EQ(get16(&through(o.to_client, Seg{2, 1, kAck, 1000, {}, 0})[14]), 1000 >> 2);
  // The client's shift reaches the backend unchanged: no rewrite.
  EXPECT_EQ(get16(&through(o.to_backend, Seg{1, 2, kAck, 1000, {}, 0})[14]), 1000);

  h.backend_wscale = SpliceHandshake::kNoWscale;  // the backend declines scaling
  o = *make_splice_offsets(h);
  EXPECT_EQ(get16(&through(o.to_backend, Seg{1, 2, kAck, 100, {}, 0})[14]), 100 << 7);
  EXPECT_EQ(get16(&through(o.to_backend, Seg{1, 2, kAck, 1000, {}, 0})[14]), 65535);  // capped
  EXPECT_EQ(get16(&through(o.to_client, Seg{2, 1, kAck, 5000, {}, 0})[14]), 5000 >> 9);
  // A SYN's window is never scaled (RFC 7323 2.2).
  EXPECT_EQ(get16(&through(o.to_client, Seg{2, 1, kSyn | kAck, 5000, {}, 0})[14]), 5000);

  h.client_wscale = h.lb_wscale = SpliceHandshake::kNoWscale;  // no scaling anywhere
  o = *make_splice_offsets(h);
  EXPECT_EQ(o.to_client.win_from, o.to_client.win_to);
  EXPECT_EQ(o.to_backend.win_from, o.to_backend.win_to);
}

TEST(SpliceOffsets, RefusesTimestampsOnOneHalfOnly) {
  SpliceHandshake h = handshake(1, 2);
  h.backend_timestamps = false;
  EXPECT_FALSE(make_splice_offsets(h));
  h.client_timestamps = false;
  std::optional<SpliceOffsets> o = make_splice_offsets(h);
  ASSERT_TRUE(o);
  EXPECT_EQ(o->to_client.tsval, 0u);
  EXPECT_EQ(o->to_backend.tsecr, 0u);
}

// Random option lists: NOPs, MSS, window scale (3 bytes: shifts later fields to odd offsets),
// SACK-permitted, timestamps, SACK blocks, unknown kinds; at most 40 bytes. Records where the
// timestamp and SACK fields are so that the test can check their new values.
struct RandomOptions {
  std::vector<uint8_t> bytes;
  size_t ts_at = 0, sack_at = 0, sack_blocks = 0;  // offsets in the segment
};
RandomOptions random_options(std::mt19937& rng) {
  RandomOptions r;
  auto room = [&](size_t n) { return r.bytes.size() + n <= 40; };
  for (int n = rng() % 8; n > 0; --n) {
    switch (rng() % 7) {
      case 0: if (room(1)) r.bytes.push_back(1); break;
      case 1: if (room(4)) r.bytes = cat(r.bytes, {2, 4, 5, 0xb4}); break;
      case 2: if (room(3)) r.bytes = cat(r.bytes, {3, 3, 7}); break;
      case 3: if (room(2)) r.bytes = cat(r.bytes, {4, 2}); break;
      case 4:
        if (room(10) && !r.ts_at) {
          r.ts_at = 20 + r.bytes.size() + 2;
          r.bytes = cat(r.bytes, opt_ts(rng(), rng()));
        }
        break;
      case 5: {
        size_t blocks = 1 + rng() % 4;
        if (room(2 + 8 * blocks) && !r.sack_at) {
          r.sack_at = 20 + r.bytes.size() + 2;
          r.sack_blocks = blocks;
          std::vector<std::pair<uint32_t, uint32_t>> v;
          for (size_t i = 0; i < blocks; ++i) v.push_back({rng(), rng()});
          r.bytes = cat(r.bytes, opt_sack(v));
        }
        break;
      }
      case 6: {
        uint8_t len = static_cast<uint8_t>(2 + rng() % 5);
        if (room(len)) {
          r.bytes.push_back(30);
          r.bytes.push_back(len);
          for (int i = 2; i < len; ++i) r.bytes.push_back(static_cast<uint8_t>(rng()));
        }
        break;
      }
    }
  }
  return r;
}

TEST(SpliceOffsets, IncrementalChecksumEqualsFullRecomputationOverRandomSegments) {
  std::mt19937 rng(42);
  int odd_fields = 0;
  for (int iter = 0; iter < 20000; ++iter) {
    SpliceDirOffsets d{static_cast<uint32_t>(rng()), static_cast<uint32_t>(rng()),
                       static_cast<uint32_t>(rng()), static_cast<uint32_t>(rng()),
                       static_cast<uint8_t>(rng() % 15), static_cast<uint8_t>(rng() % 15)};
    if (rng() % 8 == 0) d.seq = d.ack = 0;  // some segments change only options
    RandomOptions opts = random_options(rng);
    Seg s{static_cast<uint32_t>(rng()), static_cast<uint32_t>(rng()),
          static_cast<uint8_t>(rng() & (kSyn | kAck | kPsh)), static_cast<uint16_t>(rng()),
          opts.bytes, rng() % 101};
    std::vector<uint8_t> before = build(s, &rng);
    std::vector<uint8_t> b = before;
    ASSERT_EQ(rewrite_segment(d, b.data(), b.size()), SpliceRewrite::kOk) << "iteration " << iter;
    ASSERT_EQ(checksum_field(b), full_checksum(b)) << "iteration " << iter;

    bool ack = s.flags & kAck;
    EXPECT_EQ(get32(&b[4]), s.seq + d.seq);
    EXPECT_EQ(get32(&b[8]), ack ? s.ack + d.ack : s.ack);
    if (opts.ts_at) {
      odd_fields += opts.ts_at % 2;
      EXPECT_EQ(get32(&b[opts.ts_at]), get32(&before[opts.ts_at]) + d.tsval);
      EXPECT_EQ(get32(&b[opts.ts_at + 4]), get32(&before[opts.ts_at + 4]) + (ack ? d.tsecr : 0));
    }
    for (size_t i = 0; i < 2 * opts.sack_blocks; ++i) {
      size_t at = opts.sack_at + 4 * i;
      EXPECT_EQ(get32(&b[at]), get32(&before[at]) + (ack ? d.ack : 0));
    }
    // Everything else is untouched: ports, payload.
    EXPECT_TRUE(std::equal(b.begin(), b.begin() + 4, before.begin()));
    size_t hlen = (b[12] >> 4) * 4u;
    EXPECT_TRUE(std::equal(b.begin() + hlen, b.end(), before.begin() + hlen));
  }
  EXPECT_GT(odd_fields, 100);  // the generator did put fields at odd offsets
}

struct Malformed {
  const char* description;
  std::vector<uint8_t> header;  // the whole header; the buffer is exactly this long
  SpliceRewrite expect;
};

std::vector<uint8_t> header_with(const std::vector<uint8_t>& options, int doff = -1) {
  std::vector<uint8_t> b = build(Seg{1, 2, kAck, 100, {}, 0});
  b.insert(b.end(), options.begin(), options.end());
  b[12] = static_cast<uint8_t>((doff >= 0 ? doff : static_cast<int>(b.size() / 4)) << 4);
  return b;
}

TEST(SpliceOffsets, RefusesMalformedHeadersWithoutReadingPastTheEnd) {
  std::vector<uint8_t> two_ts = cat(cat({1, 1}, opt_ts(1, 2)), cat({1, 1}, opt_ts(3, 4)));
  std::vector<uint8_t> two_sack = cat(cat({1, 1}, opt_sack({{1, 2}})), cat({1, 1}, opt_sack({{3, 4}})));
  std::vector<uint8_t> short_header = header_with({});
  short_header.pop_back();
  const std::vector<Malformed> cases = {
      {"shorter than a TCP header", short_header, SpliceRewrite::kTruncated},
      {"data offset below 5", header_with({}, 4), SpliceRewrite::kTruncated},
      {"data offset past the buffer", header_with({1, 1, 1, 1}, 7), SpliceRewrite::kTruncated},
      {"kind without length byte at the end", header_with({1, 1, 1, 8}), SpliceRewrite::kBadOptions},
      {"length 0", header_with({30, 0, 1, 1}), SpliceRewrite::kBadOptions},
      {"length 1", header_with({30, 1, 1, 1}), SpliceRewrite::kBadOptions},
      {"length past the header", header_with({8, 10, 0, 0}), SpliceRewrite::kBadOptions},
      {"SACK length not 2 + 8n", header_with({5, 11, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1}), SpliceRewrite::kBadOptions},
      {"SACK without a block", header_with({5, 2, 1, 1}), SpliceRewrite::kBadOptions},
      {"timestamp of length 8", header_with({8, 8, 0, 0, 0, 0, 0, 0}), SpliceRewrite::kBadOptions},
      {"two timestamp options", header_with(two_ts), SpliceRewrite::kBadOptions},
      {"two SACK options", header_with(cat(two_sack, {0, 0, 0, 0})), SpliceRewrite::kBadOptions},
      {"bytes after EOL are not options", header_with({0, 8, 99, 5}), SpliceRewrite::kOk},
      {"unknown option with a valid length", header_with({99, 4, 0, 0}), SpliceRewrite::kOk},
  };
  SpliceDirOffsets d{1000, 2000, 3000, 4000, 0, 3};
  for (const Malformed& c : cases) {
    SCOPED_TRACE(c.description);
    // A heap block of exactly the header's size: ASan reports any read past it.
    auto buf = std::make_unique<uint8_t[]>(c.header.size());
    std::memcpy(buf.get(), c.header.data(), c.header.size());
    EXPECT_EQ(rewrite_segment(d, buf.get(), c.header.size()), c.expect);
    if (c.expect != SpliceRewrite::kOk) {
      EXPECT_EQ(std::memcmp(buf.get(), c.header.data(), c.header.size()), 0) << "modified";
    }
  }
}

}  // namespace
}  // namespace baton
