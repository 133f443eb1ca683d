// SPDX-License-Identifier: Apache-2.0
//
// SYN cookies: SipHash against the published test vectors; a cookie issued for a SYN is
// accepted from that client's ACK with the MSS and options recovered, and refused when the
// tuple, seq or ack is altered, when it is older than two intervals (or from the future), or
// after its secret rotated out; an L7Proxy replaces its secret every kSecretLifetimeS and still
// accepts the cookies the previous one issued.
#include "lb/syn_cookie.h"

#include <gtest/gtest.h>

#include "lb/l7_proxy.h"

#include <chrono>
#include <cstdio>
#include <random>
#include <vector>

namespace baton {
namespace {

SipHasher::Key sequential_key() {
  SipHasher::Key k;
  for (size_t i = 0; i < k.size(); ++i) k[i] = static_cast<uint8_t>(i);
  return k;
}

SynCookieSecret secret(uint8_t seed) {
  SynCookieSecret s;
  for (size_t i = 0; i < 16; ++i) {
    s.h0[i] = static_cast<uint8_t>(seed * 31 + i);
    s.h1[i] = static_cast<uint8_t>(seed * 57 + 3 * i + 1);
  }
  return s;
}

Tuple v4_tuple(uint32_t src, uint16_t sport) {
  Tuple t;
  t.family = Family::kV4;
  t.proto = static_cast<uint8_t>(IpProto::kTcp);
  t.src = IpAddr::v4(be32::from_host(src));
  t.dst = IpAddr::v4(be32::from_host(0xc0000201));  // the VIP 192.0.2.1
  t.sport = be16::from_host(sport);
  t.dport = be16::from_host(80);
  return t;
}

Tuple v6_tuple() {
  Family f;
  Tuple t;
  t.family = Family::kV6;
  t.proto = static_cast<uint8_t>(IpProto::kTcp);
  t.src = *IpAddr::parse("2001:db8::10", &f);
  t.dst = *IpAddr::parse("2001:db8::1", &f);
  t.sport = be16::from_host(40000);
  t.dport = be16::from_host(443);
  return t;
}

TEST(SipHasher, MatchesPublishedSipHash24Vectors) {
  // Key 00..0f, message 00..n-1 (SipHash reference implementation, vectors.h).
  const std::pair<size_t, uint64_t> vectors[] = {
      {0, 0x726fdb47dd0e0e31}, {1, 0x74f839c593dc67fd},  {2, 0x0d6c8009d9a94f5a},
      {3, 0x85676696d7fb7e2d}, {7, 0xab0200f58b01d137},  {8, 0x93f5f5799a932462},
      {15, 0xa129ca6149be45e5}, {63, 0x958a324ceb064572}, {0, 0x726fdb47dd0e0e31}};
  uint8_t msg[64];
  for (size_t i = 0; i < sizeof msg; ++i) msg[i] = static_cast<uint8_t>(i);
  std::unique_ptr<SipHasher> h = SipHasher::create(sequential_key());
  ASSERT_TRUE(h) << "OpenSSL has no SIPHASH";
  for (auto [len, want] : vectors) EXPECT_EQ(h->hash(msg, len), want) << "length " << len;

  SipHasher::Key other = sequential_key();
  other[0] ^= 1;
  ASSERT_TRUE(h->set_key(other));
  EXPECT_NE(h->hash(msg, 15), 0xa129ca6149be45e5u);
}

struct Offer {
  const char* description;
  TcpSynOptions offered;
  TcpSynOptions recovered;  // what check() must return
};

TEST(SynCookie, AcceptsTheClientsAckWithMssAndOptionsRecovered) {
  using O = TcpSynOptions;
  const std::vector<Offer> offers = {
      {"all options", {1460, 7, true, true, true}, {1460, 7, true, true, true}},
      {"no window scale", {1460, O::kNone, true, true, false}, {1460, O::kNone, true, true, false}},
      {"window scale 0", {1440, 0, false, true, false}, {1440, 0, false, true, false}},
      {"window scale above 14 is 14 (RFC 7323 2.3)", {1300, 15, false, true, false}, {1300, 14, false, true, false}},
      {"MSS rounded down to the table", {1400, 14, true, true, false}, {1300, 14, true, true, false}},
      {"MSS below the table", {500, 2, false, true, false}, {536, 2, false, true, false}},
      {"no MSS option", {0, 2, false, true, false}, {536, 2, false, true, false}},
      {"jumbo MSS", {9000, 2, false, true, false}, {1460, 2, false, true, false}},
      {"without timestamps only the MSS survives", {1460, 7, true, false, true}, {1460, O::kNone, false, false, false}},
  };
  auto cookies = SynCookie::create(secret(1));
  ASSERT_TRUE(cookies);
  const uint64_t now = 1'000'000;
  for (const Offer& o : offers) {
    SCOPED_TRACE(o.description);
    Tuple t = v4_tuple(0x0a000001, 33000);
    uint32_t client_isn = 0xfffffffe;  // seq + 1 wraps
    SynCookieIssue issued = cookies->issue(t, client_isn, o.offered, now, 0x12345678);
    EXPECT_EQ(issued.agreed, o.recovered);
    std::optional<uint32_t> tsecr;
    if (issued.agreed.timestamps) tsecr = issued.tsval;
    std::optional<TcpSynOptions> got = cookies->check(t, client_isn + 1, issued.isn + 1, tsecr, now + 5);
    ASSERT_TRUE(got);
    EXPECT_EQ(*got, o.recovered);
  }
}

TEST(SynCookie, EncodesMssWithTheFamilysTable) {
  const std::pair<uint16_t, uint16_t> v4[] = {{536, 536}, {1299, 536}, {1300, 1300}, {1439, 1300},
                                              {1440, 1440}, {1459, 1440}, {1460, 1460}, {65535, 1460}};
  const std::pair<uint16_t, uint16_t> v6[] = {{0, 1220}, {1280, 1220}, {1420, 1420}, {1440, 1440},
                                              {8939, 1440}, {8940, 8940}, {9000, 8940}};
  auto cookies = SynCookie::create(secret(2));
  ASSERT_TRUE(cookies);
  auto roundtrip = [&](const Tuple& t, uint16_t mss) {
    SynCookieIssue i = cookies->issue(t, 7, {mss}, 100, 0);
    auto got = cookies->check(t, 8, i.isn + 1, std::nullopt, 100);
    return got ? got->mss : 0;
  };
  for (auto [offered, want] : v4) EXPECT_EQ(roundtrip(v4_tuple(0x0a000002, 1), offered), want) << offered;
  for (auto [offered, want] : v6) EXPECT_EQ(roundtrip(v6_tuple(), offered), want) << offered;
}

TEST(SynCookie, RefusesAlteredTupleSeqOrAck) {
  auto cookies = SynCookie::create(secret(3));
  ASSERT_TRUE(cookies);
  const uint64_t now = 5000;
  for (const Tuple& t : {v4_tuple(0x0a000003, 40000), v6_tuple()}) {
    const uint32_t isn = 0x31337;
    SynCookieIssue i = cookies->issue(t, isn, {1460}, now, 0);
    ASSERT_TRUE(cookies->check(t, isn + 1, i.isn + 1, std::nullopt, now));

    std::vector<Tuple> altered(5, t);
    altered[0].src.b[3] ^= 1;
    altered[1].dst.b[0] ^= 0x80;
    altered[2].sport = be16::from_host(t.sport.host() + 1);
    altered[3].dport = be16::from_host(8080);
    altered[4] = t.reverse();
    for (const Tuple& a : altered) EXPECT_FALSE(cookies->check(a, isn + 1, i.isn + 1, std::nullopt, now));
    // The low 2 bits carry the MSS index, so (as in Linux) a change of 1..3 may only pick
    // another MSS; any change of 4 or more, and every high bit, must fail.
    for (int bit = 2; bit < 32; ++bit) {
      EXPECT_FALSE(cookies->check(t, isn + 1, (i.isn + 1) ^ (1u << bit), std::nullopt, now)) << "ack bit " << bit;
      EXPECT_FALSE(cookies->check(t, (isn + 1) ^ (1u << bit), i.isn + 1, std::nullopt, now)) << "seq bit " << bit;
    }
  }
}

TEST(SynCookie, RefusesCookiesOlderThanTwoIntervals) {
  auto cookies = SynCookie::create(secret(4));
  ASSERT_TRUE(cookies);
  const uint64_t c = 1000;  // the counter at issue
  const uint64_t issued_at = c * SynCookie::kPeriodSeconds + 10;
  Tuple t = v4_tuple(0x0a000004, 1234);
  SynCookieIssue i = cookies->issue(t, 99, {1460}, issued_at, 0);
  auto valid_at = [&](uint64_t counter, uint64_t second) {
    return cookies->check(t, 100, i.isn + 1, std::nullopt, counter * SynCookie::kPeriodSeconds + second)
        .has_value();
  };
  EXPECT_TRUE(valid_at(c, 63));
  EXPECT_TRUE(valid_at(c + 1, 0));
  EXPECT_TRUE(valid_at(c + 1, 63));
  EXPECT_FALSE(valid_at(c + 2, 0));
  EXPECT_FALSE(valid_at(c + 3, 0));
  EXPECT_FALSE(valid_at(c - 1, 63));   // from the future
  EXPECT_FALSE(valid_at(c + 256, 0));  // same low 8 counter bits, another counter in the hash
  EXPECT_FALSE(valid_at(c + 257, 0));
}

TEST(SynCookie, KeepsThePreviousSecretForCookiesInFlightAcrossRotation) {
  auto cookies = SynCookie::create(secret(5));
  ASSERT_TRUE(cookies);
  const uint64_t now = 64 * 500;
  Tuple t = v4_tuple(0x0a000005, 5555);
  SynCookieIssue old_cookie = cookies->issue(t, 1, {1460}, now, 0);
  ASSERT_TRUE(cookies->rotate(secret(6), now + 30));
  SynCookieIssue new_cookie = cookies->issue(t, 1, {1460}, now + 30, 0);
  EXPECT_NE(old_cookie.isn, new_cookie.isn);
  EXPECT_TRUE(cookies->check(t, 2, old_cookie.isn + 1, std::nullopt, now + 40));
  EXPECT_TRUE(cookies->check(t, 2, old_cookie.isn + 1, std::nullopt, now + 64 + 40));
  EXPECT_TRUE(cookies->check(t, 2, new_cookie.isn + 1, std::nullopt, now + 64 + 40));

  // Another secret alone never accepts the first secret's cookies.
  auto stranger = SynCookie::create(secret(6));
  EXPECT_FALSE(stranger->check(t, 2, old_cookie.isn + 1, std::nullopt, now + 40));

  // A second rotation forgets the first secret at once; the second stays previous.
  ASSERT_TRUE(cookies->rotate(secret(7), now + 50));
  EXPECT_FALSE(cookies->check(t, 2, old_cookie.isn + 1, std::nullopt, now + 50));
  EXPECT_TRUE(cookies->check(t, 2, new_cookie.isn + 1, std::nullopt, now + 50));
}

TEST(SynCookie, HidesOptionsInTheLowBitsOfAnEarlierTsval) {
  auto cookies = SynCookie::create(secret(8));
  ASSERT_TRUE(cookies);
  Tuple t = v4_tuple(0x0a000008, 8888);
  const TcpSynOptions all{1460, 7, true, true, true}, none{1460, TcpSynOptions::kNone, false, true, false};
  for (uint32_t ts_now : {0x12345678u, 0x12345640u, 5u, 0u, 0xffffffffu}) {
    for (const TcpSynOptions& o : {all, none}) {
      uint32_t bits = (o.wscale >= 0 ? static_cast<uint32_t>(o.wscale) : 15) | (o.sack_permitted ? 16 : 0) |
                      (o.ecn ? 32 : 0);
      SynCookieIssue i = cookies->issue(t, 1, o, 100, ts_now);
      EXPECT_EQ(i.tsval & 63, bits) << ts_now;
      EXPECT_LT(ts_now - i.tsval, 64u) << ts_now;  // never ahead of the clock, mod 2^32
    }
  }
}

// Many clients, each accepted; prints the cost per cookie for the header's numbers.
TEST(SynCookie, AcceptsManyClientsAndReportsCost) {
  auto cookies = SynCookie::create(secret(9));
  ASSERT_TRUE(cookies);
  std::mt19937 rng(7);
  constexpr int kN = 50000;
  std::vector<Tuple> tuples;
  std::vector<uint32_t> isns, cookie_isns(kN);
  for (int i = 0; i < kN; ++i) {
    tuples.push_back(v4_tuple(rng(), static_cast<uint16_t>(rng())));
    isns.push_back(rng());
  }
  auto t0 = std::chrono::steady_clock::now();
  for (int i = 0; i < kN; ++i) cookie_isns[i] = cookies->issue(tuples[i], isns[i], {1460}, 777, 0).isn;
  auto t1 = std::chrono::steady_clock::now();
  int accepted = 0;
  for (int i = 0; i < kN; ++i)
    accepted += cookies->check(tuples[i], isns[i] + 1, cookie_isns[i] + 1, std::nullopt, 777).has_value();
  auto t2 = std::chrono::steady_clock::now();
  EXPECT_EQ(accepted, kN);
  std::printf("SynCookie: issue %.0f ns, check %.0f ns per cookie\n",
              std::chrono::duration<double, std::nano>(t1 - t0).count() / kN,
              std::chrono::duration<double, std::nano>(t2 - t1).count() / kN);
}

TEST(L7ProxySecret, RotatesEveryLifetimeAndKeepsTheCookiesItIssued) {
  L7Proxy::Params p;
  p.conn_slots = 16;
  p.secret = secret(1);
  std::string err;
  auto x = L7Proxy::create(p, &err);
  ASSERT_TRUE(x) << err;
  const Tuple t = v4_tuple(0x0a000001, 40000);
  TcpInfo syn;
  syn.seq = 1000;
  syn.flags = tcpflag::kSyn;
  syn.mss = 1460;
  const uint64_t t0 = 10000, life = L7Proxy::kSecretLifetimeS;
  EXPECT_FALSE(x->rotate_secret_due(t0));  // schedules the first rotation
  const TcpSegmentSpec before = x->syn_ack(t, syn, 8192, t0 + 120, 0);
  EXPECT_FALSE(x->rotate_secret_due(t0 + life - 1));
  EXPECT_TRUE(x->rotate_secret_due(t0 + life));
  EXPECT_FALSE(x->rotate_secret_due(t0 + life + 1));
  // The same SYN at the same time gets another cookie: the secret changed.
  EXPECT_NE(x->syn_ack(t, syn, 8192, t0 + 120, 0).seq, before.seq);
  // The client's ACK to the SYN-ACK sent before the rotation still proves its cookie.
  TcpInfo ack;
  ack.seq = 1001;
  ack.ack = before.seq + 1;
  ack.flags = tcpflag::kAck;
  EXPECT_TRUE(x->check_cookie(t, ack, t0 + life + 5));
  ack.ack += 1;
  EXPECT_FALSE(x->check_cookie(t, ack, t0 + life + 5));
  EXPECT_TRUE(x->rotate_secret_due(t0 + 2 * life));  // and again, a lifetime later
}

}  // namespace
}  // namespace baton
