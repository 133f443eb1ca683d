// SPDX-License-Identifier: Apache-2.0
//
// L7 (HTTP/1.1) load balancing through the whole worker pipeline in mode l3, in-process: SYN
// cookies, the request head read over several segments, routing, the backend handshake and the
// splice. Frames batond writes and frames it rewrites are compared byte for byte with frames the
// packet builder makes from scratch (so every checksum is checked against a full computation).
// Values batond chooses itself (the SYN cookie, its TSval clock, the local port) are read from
// the first frame that carries them and then expected everywhere else.
//
// Topology, configuration and the client's frames: l7_topology.h (shared with the l7new
// benchmark). Port 0 "outside" (client 203.0.113.9), port 1 "inside" (backends 10.1.0.5 and .7
// pool web, 10.1.0.6 pool api); VIP 203.0.113.80:80 from local address 10.1.0.100; Host
// api.example and path /api/ go to pool api; sticky by cookie SID.
#include <gtest/gtest.h>
#include <rte_eal.h>
#include <rte_mbuf.h>
#include <unistd.h>

#include <cstring>
#include <functional>
#include <map>
#include <set>
#include <string>
#include <vector>

#include "config/config.h"
#include "dataplane/dataplane.h"
#include "dataplane/parser.h"
#include "migrate/negotiation.h"
#include "pktgen/packet_builder.h"
#include "tests/pipeline/handoff_steps.h"
#include "tests/pipeline/l7_topology.h"
#include "tests/support/eal_env.h"
#include "tests/support/frame_capture.h"
#include "tests/support/test_dataplane.h"

namespace baton {
namespace {

using pktgen::Bytes;
using pktgen::Pkt;
using namespace tcpflag;

::testing::Environment* const kEal =
    ::testing::AddGlobalTestEnvironment(new EalEnv("l7_pipeline_test", 256));

using namespace l7topo;
constexpr uint16_t kSynAckWindow = kMaxHead + L7Proxy::kTailBytes;  // the head buffer

// Frames compared with the offset of the first difference, which gtest's dump does not show.
std::string first_diff(const Bytes& got, const Bytes& want) {
  size_t i = 0;
  while (i < got.size() && i < want.size() && got[i] == want[i]) i++;
  if (i == got.size() && i == want.size()) return "";
  char b[96];
  std::snprintf(b, sizeof b, "differ at byte %zu (got %d, want %d; lengths %zu, %zu)", i,
                i < got.size() ? got[i] : -1, i < want.size() ? want[i] : -1, got.size(), want.size());
  return b;
}
#define EXPECT_FRAME(got, want) EXPECT_EQ(first_diff((got), (want)), "")

PacketMeta parsed(const Bytes& f) {
  PacketMeta pm;
  DropReason why;
  EXPECT_TRUE(parse_packet(f.data(), static_cast<uint32_t>(f.size()), &pm, &why));
  return pm;
}

class L7Pipeline : public ::testing::Test {
 protected:
  void SetUp() override {
    static int n = 0;
    dp_ = test_dataplane("instance: l7p" + std::to_string(n++) + "\n" + config_yaml(4096), "l7.yaml");
    ASSERT_TRUE(dp_);
    w_ = dp_->workers()[0].get();
    w_->set_tx_sink(&cap_.sink);
    w_->set_now(100);
    run(arp_from_client(), kOut);
    for (int i = 0; i < kHosts; i++) run(arp_from_host(i), kIn);
  }

  std::vector<Sent> run(const Bytes& b, uint16_t port) {
    cap_.sent.clear();
    rte_mbuf* m = rte_pktmbuf_alloc(dp_->pool());
    std::memcpy(rte_pktmbuf_append(m, uint16_t(b.size())), b.data(), b.size());
    m->port = port;
    w_->process_burst(&m, 1);
    w_->flush_tx();
    return cap_.sent;
  }
  std::vector<Sent> run(const Pkt& p, uint16_t port) { return run(p.build(), port); }
  uint64_t drops(DropReason r) const { return w_->stats().drops[int(r)]; }
  size_t conns() const { return w_->table().size(); }

  // SYN (mss 1460, SACK, timestamps unless c.timestamps is false, wscale 7) and the cookie
  // SYN-ACK, checked exactly; then the client's ACK. Fills c.lb_isn and c.lb_tsval.
  void handshake(Client& c) {
    auto out = run(c.syn(), kOut);
    ASSERT_EQ(out.size(), 1u);
    const PacketMeta sa = parsed(out[0].frame);
    c.lb_isn = sa.tcp.seq;
    c.lb_tsval = sa.tcp.tsval;
    Pkt want = to_client().ipv4(kVip, kClient).ip_id(0).df().tcp(80, c.port).seq(c.lb_isn).ack(c.isn + 1).flags(kSyn | kAck).win(kSynAckWindow).mss(1460);
    if (c.timestamps) want.sack_perm().ts(c.lb_tsval, c.tsval).wscale(L7Proxy::kLbWscale);
    EXPECT_EQ(out[0].port, kOut);
    EXPECT_FRAME(out[0].frame, want.build());
    c.tsval += 1;
    EXPECT_TRUE(run(c.seg(0, 0, kAck), kOut).empty());
  }

  // batond's ACK of everything the client sent so far (room: the head buffer left).
  Bytes lb_ack(const Client& c, uint32_t acked, uint32_t buffered) const {
    Pkt p = to_client().ipv4(kVip, kClient).ip_id(0).df().tcp(80, c.port).seq(c.lb_isn + 1).ack(c.isn + 1 + acked).flags(kAck);
    if (c.timestamps)
      p.win(uint16_t((kSynAckWindow - buffered) >> L7Proxy::kLbWscale)).ts(c.lb_tsval, c.tsval);
    else
      p.win(uint16_t(kSynAckWindow - buffered));
    return p.build();
  }

  std::unique_ptr<Dataplane> dp_;
  Worker* w_ = nullptr;
  Capture cap_;
};

TEST_F(L7Pipeline, SynFloodIsAnsweredByCookiesWithoutState) {
  Client c;
  handshake(c);  // one real connection: the only entry
  ASSERT_EQ(conns(), 1u);
  for (uint16_t i = 0; i < 2000; i++) {
    auto out = run(from_client().ipv4(kClient, kVip).tcp(uint16_t(20000 + i), 80).seq(i * 7919u).flags(kSyn).win(1024).build(), kOut);
    ASSERT_EQ(out.size(), 1u);
    const PacketMeta sa = parsed(out[0].frame);
    // Without timestamps the cookie keeps only the MSS: no window scale, no SACK granted.
    EXPECT_EQ(sa.tcp.flags, kSyn | kAck);
    EXPECT_EQ(sa.tcp.ack, i * 7919u + 1);
    EXPECT_EQ(sa.tcp.mss, 536);
    EXPECT_EQ(sa.tcp.wscale, 0xff);
    EXPECT_FALSE(sa.tcp.sack_permitted);
  }
  EXPECT_EQ(conns(), 1u);
  EXPECT_EQ(w_->stats().l7_syn_cookies, 2001u);
  EXPECT_EQ(w_->l7()->pool_free(), w_->l7()->pool_size() - 1);
}

TEST_F(L7Pipeline, AckWithoutValidCookieIsDropped) {
  Client c;
  c.lb_isn = 12345;  // never issued
  EXPECT_TRUE(run(c.data("GET / HTTP/1.1\r\n", 0), kOut).empty());
  EXPECT_EQ(drops(DropReason::kL7BadCookie), 1u);
  EXPECT_EQ(conns(), 0u);
  // A cookie for another client port does not open this one.
  Client real;
  handshake(real);
  Client other = real;
  other.port = 40001;
  EXPECT_TRUE(run(other.data("GET / HTTP/1.1\r\n", 0), kOut).empty());
  EXPECT_EQ(drops(DropReason::kL7BadCookie), 2u);
  EXPECT_EQ(conns(), 1u);
}

TEST_F(L7Pipeline, HeadOverSegmentsIsRoutedSplicedAndRewrittenBothWays) {
  Client c;
  handshake(c);
  EXPECT_EQ(w_->stats().l7_accepted, 1u);
  // The head in three segments, split inside a line and between CR and LF.
  const std::string head = "GET /index.html HTTP/1.1\r\nHost: api.example\r\nUser-Agent: t\r\n\r\n";
  const std::string parts[] = {head.substr(0, 10), head.substr(10, 35), head.substr(45)};
  uint32_t at = 0;
  for (int i = 0; i < 2; i++) {
    c.tsval++;
    auto out = run(c.data(parts[i], at), kOut);
    at += uint32_t(parts[i].size());
    ASSERT_EQ(out.size(), 1u) << "segment " << i << " is ACKed by batond";
    EXPECT_FRAME(out[0].frame, lb_ack(c, at, at));
  }
  // A retransmission of the first segment is ACKed again, nothing more.
  auto dup = run(c.data(parts[0], 0), kOut);
  ASSERT_EQ(dup.size(), 1u);
  EXPECT_FRAME(dup[0].frame, lb_ack(c, at, at));

  // The last segment completes the head: no ACK to the client, a SYN to the api backend from
  // the local address with the client's ISN and options.
  c.tsval++;
  auto syn = run(c.data(parts[2], at), kOut);
  ASSERT_EQ(syn.size(), 1u);
  EXPECT_EQ(syn[0].port, kIn);
  const PacketMeta sp = parsed(syn[0].frame);
  const uint16_t lport = sp.tuple.sport.host();
  EXPECT_FRAME(syn[0].frame, to_host(1).ipv4(kLocal, "10.1.0.6").ip_id(0).df().tcp(lport, 8080).seq(c.isn).flags(kSyn)
                              .win(uint16_t(502u << 7)).mss(1460).sack_perm().ts(c.tsval, 0).wscale(7).build());
  EXPECT_EQ(w_->stats().l7_heads, 1u);

  // The backend answers (its own ISN, clock and window scale): batond replays the head.
  const uint32_t b = 777000, tb = 90000;
  auto replay = run(from_host(1).ipv4("10.1.0.6", kLocal).tcp(8080, lport).seq(b).ack(c.isn + 1).flags(kSyn | kAck)
                        .win(65160).mss(1400).sack_perm().ts(tb, c.tsval).wscale(5).build(), kIn);
  ASSERT_EQ(replay.size(), 1u);
  EXPECT_FRAME(replay[0].frame, to_host(1).ipv4(kLocal, "10.1.0.6").ip_id(0).df().tcp(lport, 8080).seq(c.isn + 1).ack(b + 1)
                                 .flags(kAck | kPsh).win(502).ts(c.tsval, tb).payload(head).build());
  EXPECT_EQ(w_->stats().l7_splices, 1u);
  Dir dir;
  const int32_t slot = w_->table().lookup(FlowKey::from_tuple(parsed(c.data("", 0).build()).tuple, &dir));
  ASSERT_GE(slot, 0);
  EXPECT_EQ(w_->l7()->record(uint32_t(slot)).phase, L7Phase::kSpliced);

  // Backend -> client: seq and TSval shifted into the client's spaces, the window re-expressed
  // under the shift the client was given (5 -> 7), addresses back to VIP -> client.
  const std::string resp = "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok";
  const uint32_t hl = uint32_t(head.size());
  auto r1 = run(from_host(1).ipv4("10.1.0.6", kLocal).tcp(8080, lport).seq(b + 1).ack(c.isn + 1 + hl).flags(kAck | kPsh)
                    .win(2000).ts(tb + 10, c.tsval).payload(resp).build(), kIn);
  ASSERT_EQ(r1.size(), 1u);
  EXPECT_EQ(r1[0].port, kOut);
  EXPECT_FRAME(r1[0].frame, to_client().ipv4(kVip, kClient).ttl(63).tcp(80, c.port).seq(c.lb_isn + 1)
                             .ack(c.isn + 1 + hl).flags(kAck | kPsh).win(500).ts(c.lb_tsval + 10, c.tsval).payload(resp).build());
  // Client -> backend with a SACK block and a timestamp echo: ack, both SACK edges and TSecr go
  // into the backend's spaces; the window passes unchanged (the backend applies the client's
  // own shift).
  const uint32_t rl = uint32_t(resp.size());
  const auto sack = [](uint32_t l, uint32_t r) {
    return Bytes{1, 1, 5, 10, uint8_t(l >> 24), uint8_t(l >> 16), uint8_t(l >> 8), uint8_t(l),
                 uint8_t(r >> 24), uint8_t(r >> 16), uint8_t(r >> 8), uint8_t(r)};
  };
  c.tsval++;
  auto r2 = run(from_client().ipv4(kClient, kVip).tcp(c.port, 80).seq(c.isn + 1 + hl).ack(c.lb_isn + 1 + 1).flags(kAck)
                    .win(600).ts(c.tsval, c.lb_tsval + 10).tcp_option(sack(c.lb_isn + 1 + 1, c.lb_isn + 1 + rl)).build(), kOut);
  ASSERT_EQ(r2.size(), 1u);
  EXPECT_EQ(r2[0].port, kIn);
  EXPECT_FRAME(r2[0].frame, to_host(1).ipv4(kLocal, "10.1.0.6").ttl(63).tcp(lport, 8080).seq(c.isn + 1 + hl).ack(b + 2)
                             .flags(kAck).win(600).ts(c.tsval, tb + 10).tcp_option(sack(b + 2, b + 1 + rl)).build());
  // The rest of the response; the client ACKs all of it.
  auto r3 = run(from_host(1).ipv4("10.1.0.6", kLocal).tcp(8080, lport).seq(b + 2).ack(c.isn + 1 + hl).flags(kAck)
                    .win(2000).ts(tb + 11, c.tsval).payload(resp.substr(1)).build(), kIn);
  ASSERT_EQ(r3.size(), 1u);
  EXPECT_FRAME(r3[0].frame, to_client().ipv4(kVip, kClient).ttl(63).tcp(80, c.port).seq(c.lb_isn + 2).ack(c.isn + 1 + hl)
                             .flags(kAck).win(500).ts(c.lb_tsval + 11, c.tsval).payload(resp.substr(1)).build());
  auto r4 = run(from_client().ipv4(kClient, kVip).tcp(c.port, 80).seq(c.isn + 1 + hl).ack(c.lb_isn + 1 + rl).flags(kAck)
                    .win(600).ts(c.tsval, c.lb_tsval + 11).build(), kOut);
  ASSERT_EQ(r4.size(), 1u);
  EXPECT_FRAME(r4[0].frame, to_host(1).ipv4(kLocal, "10.1.0.6").ttl(63).tcp(lport, 8080).seq(c.isn + 1 + hl).ack(b + 1 + rl)
                             .flags(kAck).win(600).ts(c.tsval, tb + 11).build());
  // Conntrack followed the client's view strictly: a backend segment beyond the window the
  // client offered is dropped, not rewritten.
  auto oow = run(from_host(1).ipv4("10.1.0.6", kLocal).tcp(8080, lport).seq(b + 1 + rl + 10000000).ack(c.isn + 1 + hl)
                     .flags(kAck).win(2000).ts(tb + 12, c.tsval).payload("x").build(), kIn);
  EXPECT_TRUE(oow.empty());
  EXPECT_EQ(drops(DropReason::kTcpOutOfWindow), 1u);
  EXPECT_EQ(w_->stats().conns[int(TcpState::kEstablished)], 1);
  EXPECT_EQ(w_->l7()->pool_free(), w_->l7()->pool_size()) << "the replay was ACKed: buffer back";
}

TEST_F(L7Pipeline, PathHeaderCookieAndDefaultPoolRoute) {
  auto backend_of = [&](uint16_t port, const std::string& head) {
    Client c;
    c.port = port;
    handshake(c);
    auto out = run(c.data(head, 0), kOut);
    EXPECT_EQ(out.size(), 1u);
    return out.empty() ? std::string() : parsed(out[0].frame).tuple.dst.to_string(Family::kV4);
  };
  EXPECT_EQ(backend_of(41000, "GET /api/v1 HTTP/1.1\r\nHost: www.example\r\n\r\n"), "10.1.0.6");
  EXPECT_EQ(backend_of(41001, "GET / HTTP/1.1\r\nHost: w\r\nx-canary: 1\r\n\r\n"), "10.1.0.6");
  EXPECT_EQ(backend_of(41002, "GET / HTTP/1.1\r\nHost: w\r\nCookie: SID=1; backend=api\r\n\r\n"), "10.1.0.6");
  for (uint16_t port : {41003, 41004, 41005}) {  // near misses go to the default pool
    const char* head = port == 41003 ? "GET /apix HTTP/1.1\r\nHost: www.example\r\n\r\n"
                       : port == 41004 ? "GET / HTTP/1.1\r\nHost: w\r\nX-Canary: 2\r\n\r\n"
                                       : "GET / HTTP/1.1\r\nHost: w\r\nCookie: Backend=api\r\n\r\n";
    const std::string web = backend_of(port, head);
    EXPECT_TRUE(web == "10.1.0.5" || web == "10.1.0.7") << head << " -> " << web;
  }
}

TEST_F(L7Pipeline, StickyCookieKeepsOneBackendAcrossConnections) {
  std::map<std::string, std::set<std::string>> by_value;
  for (int i = 0; i < 24; i++) {
    Client c;
    c.port = uint16_t(42000 + i);
    handshake(c);
    const std::string sid = "v" + std::to_string(i % 6);
    auto out = run(c.data("GET / HTTP/1.1\r\nHost: w\r\nCookie: a=1; SID=" + sid + "\r\n\r\n", 0), kOut);
    ASSERT_EQ(out.size(), 1u);
    by_value[sid].insert(parsed(out[0].frame).tuple.dst.to_string(Family::kV4));
  }
  std::set<std::string> all;
  for (auto& [sid, backends] : by_value) {
    EXPECT_EQ(backends.size(), 1u) << "SID=" << sid;
    all.insert(backends.begin(), backends.end());
  }
  EXPECT_EQ(all.size(), 2u) << "different values spread over the pool";
}

TEST_F(L7Pipeline, HeadOverTheLimitGets400) {
  Client c;
  handshake(c);
  const std::string big = "GET / HTTP/1.1\r\nHost: a\r\nX-Pad: " + std::string(1100, 'p');
  auto out1 = run(c.data(big.substr(0, 600), 0), kOut);
  ASSERT_EQ(out1.size(), 1u);
  EXPECT_FRAME(out1[0].frame, lb_ack(c, 600, 600));
  const uint32_t n = uint32_t(big.size());  // 1132: past the limit of 1024
  auto out2 = run(c.data(big.substr(600), 600), kOut);
  ASSERT_EQ(out2.size(), 1u);
  const std::string resp = "HTTP/1.1 400 Bad Request\r\nContent-Type: text/plain\r\nContent-Length: 12\r\n"
                           "Connection: close\r\n\r\nBad Request\n";
  EXPECT_FRAME(out2[0].frame, to_client().ipv4(kVip, kClient).ip_id(0).df().tcp(80, c.port).seq(c.lb_isn + 1).ack(c.isn + 1 + n)
                               .flags(kAck | kPsh | kFin).win(uint16_t((kSynAckWindow - n) >> 7)).ts(c.lb_tsval, c.tsval)
                               .payload(resp).build());
  EXPECT_EQ(w_->stats().l7_head_too_large, 1u);
  EXPECT_EQ(w_->stats().l7_heads, 0u);
  // The client closes: its FIN is ACKed, the buffer goes back, nothing reaches a backend.
  const uint32_t rl = uint32_t(resp.size());
  auto fin = run(from_client().ipv4(kClient, kVip).tcp(c.port, 80).seq(c.isn + 1 + n).ack(c.lb_isn + 2 + rl)
                     .flags(kAck | kFin).win(502).ts(c.tsval, c.lb_tsval).build(), kOut);
  ASSERT_EQ(fin.size(), 1u);
  EXPECT_EQ(fin[0].port, kOut);
  EXPECT_EQ(parsed(fin[0].frame).tcp.ack, c.isn + 1 + n + 1);
  EXPECT_EQ(parsed(fin[0].frame).tcp.seq, c.lb_isn + 2 + rl);
  EXPECT_EQ(w_->stats().conns[int(TcpState::kTimeWait)], 1);
  EXPECT_EQ(w_->l7()->pool_free(), w_->l7()->pool_size());
}

TEST_F(L7Pipeline, MalformedHeadsGet400) {
  const char* bad[] = {
      "GET / HTTP/1.1\nHost: a\n\n",                                          // bare LF
      "GET / HTTP/1.1\r\nHost: a\r\nContent-Length: 1\r\nTransfer-Encoding: chunked\r\n\r\n",  // smuggling
      "\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03",                              // a TLS ClientHello
  };
  uint16_t port = 43000;
  for (const char* h : bad) {
    Client c;
    c.port = port++;
    handshake(c);
    auto out = run(c.data(h, 0), kOut);
    ASSERT_EQ(out.size(), 1u) << h;
    const PacketMeta pm = parsed(out[0].frame);
    EXPECT_EQ(pm.tcp.flags, kAck | kPsh | kFin);
    const std::string body(reinterpret_cast<const char*>(out[0].frame.data() + pm.payload_offset), pm.tcp.payload_len);
    EXPECT_EQ(body.rfind("HTTP/1.1 400 ", 0), 0u) << body;
  }
  EXPECT_EQ(w_->stats().l7_head_malformed, 3u);
}

TEST_F(L7Pipeline, HeadSegmentAfterAGapIsNotTaken) {
  Client c;
  handshake(c);
  auto out = run(c.data("Host: a\r\n\r\n", 16), kOut);  // bytes 0..15 never came
  ASSERT_EQ(out.size(), 1u);
  EXPECT_FRAME(out[0].frame, lb_ack(c, 0, 0)) << "a duplicate ACK asks for byte 0";
  EXPECT_EQ(drops(DropReason::kL7OutOfOrder), 1u);
  // A corrupted segment is never ACKed.
  auto bad = run(c.data("GET / HTTP/1.1\r\n", 0).bad_l4_csum(), kOut);
  EXPECT_TRUE(bad.empty());
  EXPECT_EQ(drops(DropReason::kL7BadChecksum), 1u);
}

TEST_F(L7Pipeline, ClientWithoutTimestampsIsSplicedWithoutThem) {
  Client c;
  c.timestamps = false;
  handshake(c);
  const std::string head = "GET / HTTP/1.1\r\nHost: api.example\r\n\r\n";
  auto syn = run(c.data(head, 0), kOut);
  ASSERT_EQ(syn.size(), 1u);
  const uint16_t lport = parsed(syn[0].frame).tuple.sport.host();
  // Only the MSS survived the cookie: no SACK, no window scale offered to the backend either.
  EXPECT_FRAME(syn[0].frame, to_host(1).ipv4(kLocal, "10.1.0.6").ip_id(0).df().tcp(lport, 8080).seq(c.isn).flags(kSyn)
                              .win(502).mss(1460).build());
  const uint32_t b = 4000000000u;  // the offsets wrap around 2^32
  auto replay = run(from_host(1).ipv4("10.1.0.6", kLocal).tcp(8080, lport).seq(b).ack(c.isn + 1).flags(kSyn | kAck)
                        .win(29200).mss(1460).build(), kIn);
  ASSERT_EQ(replay.size(), 1u);
  EXPECT_FRAME(replay[0].frame, to_host(1).ipv4(kLocal, "10.1.0.6").ip_id(0).df().tcp(lport, 8080).seq(c.isn + 1).ack(b + 1)
                                 .flags(kAck | kPsh).win(502).payload(head).build());
  const uint32_t hl = uint32_t(head.size());
  auto r1 = run(from_host(1).ipv4("10.1.0.6", kLocal).tcp(8080, lport).seq(b + 1).ack(c.isn + 1 + hl).flags(kAck | kPsh)
                    .win(29200).payload("hello").build(), kIn);
  ASSERT_EQ(r1.size(), 1u);
  EXPECT_FRAME(r1[0].frame, to_client().ipv4(kVip, kClient).ttl(63).tcp(80, c.port).seq(c.lb_isn + 1).ack(c.isn + 1 + hl)
                             .flags(kAck | kPsh).win(29200).payload("hello").build());
}

TEST_F(L7Pipeline, BackendRefusingTimestampsResetsBothHalves) {
  Client c;
  handshake(c);
  auto syn = run(c.data("GET / HTTP/1.1\r\nHost: api.example\r\n\r\n", 0), kOut);
  ASSERT_EQ(syn.size(), 1u);
  const uint16_t lport = parsed(syn[0].frame).tuple.sport.host();
  auto out = run(from_host(1).ipv4("10.1.0.6", kLocal).tcp(8080, lport).seq(5).ack(c.isn + 1).flags(kSyn | kAck)
                     .win(29200).mss(1460).build(), kIn);
  ASSERT_EQ(out.size(), 2u);
  if (out[0].port != kIn) std::swap(out[0], out[1]);
  EXPECT_FRAME(out[0].frame, to_host(1).ipv4(kLocal, "10.1.0.6").ip_id(0).df().tcp(lport, 8080).seq(c.isn + 1).flags(kRst).win(0).build());
  const uint32_t hl = uint32_t(std::string("GET / HTTP/1.1\r\nHost: api.example\r\n\r\n").size());
  EXPECT_FRAME(out[1].frame, to_client().ipv4(kVip, kClient).ip_id(0).df().tcp(80, c.port).seq(c.lb_isn + 1)
                              .ack(c.isn + 1 + hl).flags(kRst | kAck).win(uint16_t((kSynAckWindow - hl) >> 7))
                              .ts(c.lb_tsval, c.tsval).build());
  EXPECT_EQ(w_->stats().l7_resets, 1u);
  EXPECT_EQ(w_->stats().conns[int(TcpState::kClose)], 1);
  EXPECT_EQ(w_->l7()->pool_free(), w_->l7()->pool_size());
}

TEST_F(L7Pipeline, SilentClientIsResetAfterTheHeadTimeout) {
  Client c;
  handshake(c);
  w_->set_now(100 + L7Proxy::kHeadTimeoutS - 1);
  w_->housekeeping();
  w_->flush_tx();
  EXPECT_TRUE(cap_.sent.empty());
  cap_.sent.clear();
  w_->set_now(100 + L7Proxy::kHeadTimeoutS);
  w_->housekeeping();
  w_->flush_tx();
  ASSERT_EQ(cap_.sent.size(), 1u);
  EXPECT_EQ(parsed(cap_.sent[0].frame).tcp.flags, kRst | kAck);
  EXPECT_EQ(w_->stats().l7_head_timeouts, 1u);
  EXPECT_EQ(w_->l7()->pool_free(), w_->l7()->pool_size());
}

TEST_F(L7Pipeline, LostReplayIsSentAgainOnTheBackendsSynAck) {
  Client c;
  handshake(c);
  const std::string head = "GET / HTTP/1.1\r\nHost: api.example\r\n\r\n";
  auto syn = run(c.data(head, 0), kOut);
  ASSERT_EQ(syn.size(), 1u);
  const uint16_t lport = parsed(syn[0].frame).tuple.sport.host();
  // The client, not ACKed, retransmits: the SYN goes again.
  auto again = run(c.data(head, 0), kOut);
  ASSERT_EQ(again.size(), 1u);
  EXPECT_FRAME(again[0].frame, syn[0].frame);
  const Bytes synack = from_host(1).ipv4("10.1.0.6", kLocal).tcp(8080, lport).seq(9).ack(c.isn + 1).flags(kSyn | kAck)
                           .win(29200).mss(1460).sack_perm().ts(1, c.tsval).wscale(7).build();
  auto first = run(synack, kIn);
  ASSERT_EQ(first.size(), 1u);
  auto second = run(synack, kIn);  // the backend did not get it
  ASSERT_EQ(second.size(), 1u);
  EXPECT_FRAME(second[0].frame, first[0].frame);
}

// ---- a spliced connection handed off ------------------------------------------------------------

// Two dataplanes with the same L7 service, A (where the VM "api" 10.1.0.6, the api pool's
// backend, runs) and B (where it goes), and the handoff's steps (handoff_steps.h). The client
// connection is spliced at A; the VM's connection travels with its offsets, backend and local
// port, and B goes on splicing it byte for byte as A would have.
class L7Migration : public ::testing::Test {
 protected:
  void start(const std::function<void(Config&)>& edit_b = [](Config&) {}) {
    static int n = 0;
    auto make = [](const std::string& name, bool with_vm, const std::function<void(Config&)>& edit) {
      return test_dataplane("instance: " + name + "\n" + config_yaml(4096) +
                                (with_vm ? "vms:\n  - {name: api, mac: \"02:00:00:00:01:06\", ipv4: [10.1.0.6]}\n" : ""),
                            "l7.yaml", [&](Config& c) {
                              c.nat.capacity = 4096;  // two dataplanes share the test's 256 MB
                              c.lb.sticky_capacity = 4096;
                              edit(c);
                            });
    };
    a_ = make("l7a" + std::to_string(n), true, [](Config&) {});
    b_ = make("l7b" + std::to_string(n++), false, edit_b);
    ASSERT_TRUE(a_ && b_);
    wa_ = a_->workers()[0].get();
    wb_ = b_->workers()[0].get();
    wa_->set_tx_sink(&ca_.sink);
    wb_->set_tx_sink(&cb_.sink);
    wa_->set_now(100);
    wb_->set_now(100);
    for (auto [dp, cap] : {std::make_pair(a_.get(), &ca_), std::make_pair(b_.get(), &cb_)}) {
      run(*dp, *cap, arp_from_client(), kOut);
      for (int i = 0; i < kHosts; i++) run(*dp, *cap, arp_from_host(i), kIn);
    }
    steps_.a = a_.get();
    steps_.b = b_.get();
    steps_.vm_a = *a_->vms().find_by_name("api");
  }
  void TearDown() override {
    if (wa_) wa_->set_tx_sink(nullptr);
    if (wb_) wb_->set_tx_sink(nullptr);
    steps_.inst.reset();
  }
  static std::vector<Sent> run(Dataplane& dp, Capture& c, const Bytes& f, uint16_t port) {
    c.sent.clear();
    rte_mbuf* m = rte_pktmbuf_alloc(dp.pool());
    std::memcpy(rte_pktmbuf_append(m, uint16_t(f.size())), f.data(), f.size());
    m->port = port;
    dp.workers()[0]->process_burst(&m, 1);
    dp.workers()[0]->flush_tx();
    return c.sent;
  }
  std::vector<Sent> at_a(const Pkt& p, uint16_t port) { return run(*a_, ca_, p.build(), port); }
  std::vector<Sent> at_b(const Pkt& p, uint16_t port) { return run(*b_, cb_, p.build(), port); }

  // PREPARE's check at B (the engine's LocalView, every kind supported).
  migrate::Decision prepare_at_b(uint16_t version = migrate::kProtocolVersionMax) {
    migrate::VmReader::KindTally t = migrate::VmReader::tally(*a_, steps_.vm_a);
    migrate::PrepareMsg pm;
    pm.protocol_version = version;
    pm.vm = a_->vms().slot(steps_.vm_a).config;
    pm.counts = t.counts;
    pm.needs = t.needs;
    migrate::LocalView view;
    view.kinds = ~0u;
    view.free.fill(UINT64_MAX);
    Translator* tr = b_->translator();
    view.check_lb = [this, tr](const migrate::LbNeed& n) {
      Dataplane::ReaderGuard guard(*b_);
      return tr->lb()->check_handoff(n.proto, n.vip, n.vip_port, n.backend_addr, n.backend_port, n.local_addr);
    };
    return migrate::decide(pm, view);
  }

  // The client's connection at A, spliced to the VM (10.1.0.6 in pool api) with backend ISN b
  // and TSval tb, wscale 5; the backend has not ACKed the replay yet. Fills c and *lport.
  void splice_at_a(Client& c, const std::string& head, uint32_t b, uint32_t tb, uint16_t* lport) {
    auto sa = at_a(c.syn(), kOut);
    ASSERT_EQ(sa.size(), 1u);
    c.lb_isn = parsed(sa[0].frame).tcp.seq;
    c.lb_tsval = parsed(sa[0].frame).tcp.tsval;
    c.tsval++;
    ASSERT_TRUE(at_a(c.seg(0, 0, kAck), kOut).empty());
    auto syn = at_a(c.data(head, 0), kOut);
    ASSERT_EQ(syn.size(), 1u);
    *lport = parsed(syn[0].frame).tuple.sport.host();
    EXPECT_EQ(parsed(syn[0].frame).tuple.dst.to_string(Family::kV4), "10.1.0.6");
    ASSERT_EQ(at_a(from_host(1).ipv4("10.1.0.6", kLocal).tcp(8080, *lport).seq(b).ack(c.isn + 1).flags(kSyn | kAck)
                       .win(65160).mss(1400).sack_perm().ts(tb, c.tsval).wscale(5), kIn).size(), 1u);
  }

  std::unique_ptr<Dataplane> a_, b_;
  Worker* wa_ = nullptr;
  Worker* wb_ = nullptr;
  Capture ca_, cb_;
  pipetest::HandoffSteps steps_;
};

// The VM behind the spliced connection moves: at B the next segments both ways are rewritten
// with the offsets A computed (seq/ack, SACK, timestamps, window scale) and A's addresses and
// local port, strict conntrack accepts them, nothing is created and no backend is chosen; the
// connection counts on its backend at B; A holds nothing after the delete. A connection still
// waiting for the backend's ACK of its replay (a head buffer held) is not carried until it has
// it.
TEST_F(L7Migration, SplicedConnectionContinuesByteExactAtDestination) {
  ASSERT_NO_FATAL_FAILURE(start());
  Client c;
  const std::string head = "GET /api/items HTTP/1.1\r\nHost: www.example\r\n\r\n";
  const uint32_t hl = uint32_t(head.size()), b = 3'000'000'000u, tb = 4'000'000'000u;
  uint16_t lport = 0;
  ASSERT_NO_FATAL_FAILURE(splice_at_a(c, head, b, tb, &lport));
  migrate::VmReader::KindTally t = migrate::VmReader::tally(*a_, steps_.vm_a);
  EXPECT_EQ(t.l7_held, 1u) << "the replay is not ACKed: the head buffer is held";
  EXPECT_EQ(t.carried_l7, 0u);

  ASSERT_NO_FATAL_FAILURE(steps_.precopy());
  EXPECT_EQ(wb_->table().size(), 0u) << "a connection holding a head buffer does not travel";

  // The backend ACKs the replay and answers; the client ACKs with a SACK block.
  const std::string resp = "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok";
  const uint32_t rl = uint32_t(resp.size());
  auto r1 = at_a(from_host(1).ipv4("10.1.0.6", kLocal).tcp(8080, lport).seq(b + 1).ack(c.isn + 1 + hl).flags(kAck | kPsh)
                     .win(2000).ts(tb + 10, c.tsval).payload(resp), kIn);
  ASSERT_EQ(r1.size(), 1u);
  EXPECT_EQ(wa_->l7()->pool_free(), wa_->l7()->pool_size()) << "replay ACKed: buffer back";
  t = migrate::VmReader::tally(*a_, steps_.vm_a);
  EXPECT_EQ(t.l7_held, 0u);
  EXPECT_EQ(t.carried_l7, 1u);
  ASSERT_EQ(t.needs.lb.size(), 1u);
  EXPECT_EQ(t.needs.lb[0].backend_addr, be32::from_host(0x0a010006));
  const migrate::Decision d = prepare_at_b();
  EXPECT_TRUE(d.accepted()) << d.detail;
  EXPECT_EQ(prepare_at_b(migrate::kProtocolVersionHandoff).reason, migrate::FailReason::kUnsupported)
      << "a version-3 session cannot carry it";
  ASSERT_NO_FATAL_FAILURE(steps_.delta());
  EXPECT_EQ(wb_->table().size(), 1u) << "carried once its buffer is free";

  c.tsval++;
  ASSERT_EQ(at_a(c.seg(hl, 1, kAck).win(600), kOut).size(), 1u);  // moves the client's state on
  ASSERT_NO_FATAL_FAILURE(steps_.final_delta());
  EXPECT_TRUE(steps_.inst->conflict.empty()) << steps_.inst->conflict;
  EXPECT_EQ(steps_.inst->failed, 0u);
  steps_.activate();

  // At B, client -> backend: ack, SACK edges and TSecr into the backend's spaces, addresses to
  // local:lport -> 10.1.0.6:8080, exactly as A would have written it.
  const auto sack = [](uint32_t l, uint32_t r) {
    return Bytes{1, 1, 5, 10, uint8_t(l >> 24), uint8_t(l >> 16), uint8_t(l >> 8), uint8_t(l),
                 uint8_t(r >> 24), uint8_t(r >> 16), uint8_t(r >> 8), uint8_t(r)};
  };
  c.tsval++;
  const std::string more = "GET /api/next HTTP/1.1\r\nHost: www.example\r\n\r\n";
  auto o = at_b(from_client().ipv4(kClient, kVip).tcp(c.port, 80).seq(c.isn + 1 + hl).ack(c.lb_isn + 1 + 1).flags(kAck | kPsh)
                    .win(600).ts(c.tsval, c.lb_tsval + 10).tcp_option(sack(c.lb_isn + 1 + 1, c.lb_isn + 1 + rl)).payload(more), kOut);
  ASSERT_EQ(o.size(), 1u);
  EXPECT_EQ(o[0].port, kIn);
  EXPECT_FRAME(o[0].frame, to_host(1).ipv4(kLocal, "10.1.0.6").ttl(63).tcp(lport, 8080).seq(c.isn + 1 + hl).ack(b + 2)
                           .flags(kAck | kPsh).win(600).ts(c.tsval, tb + 10).tcp_option(sack(b + 2, b + 1 + rl)).payload(more).build());
  // Backend -> client: seq and TSval into the client's spaces, window 5 -> 7, VIP -> client.
  o = at_b(from_host(1).ipv4("10.1.0.6", kLocal).tcp(8080, lport).seq(b + 1 + rl).ack(c.isn + 1 + hl + uint32_t(more.size()))
               .flags(kAck | kPsh).win(2000).ts(tb + 20, c.tsval).payload(resp), kIn);
  ASSERT_EQ(o.size(), 1u);
  EXPECT_EQ(o[0].port, kOut);
  EXPECT_FRAME(o[0].frame, to_client().ipv4(kVip, kClient).ttl(63).tcp(80, c.port).seq(c.lb_isn + 1 + rl)
                           .ack(c.isn + 1 + hl + uint32_t(more.size())).flags(kAck | kPsh).win(500)
                           .ts(c.lb_tsval + 20, c.tsval).payload(resp).build());
  for (int r = 0; r < kDropReasonCount; r++)
    EXPECT_EQ(wb_->stats().drops[r], 0u) << drop_reason_name(static_cast<DropReason>(r));
  EXPECT_EQ(wb_->stats().conn_created, 0u);
  EXPECT_EQ(wb_->stats().l7_splices, 0u) << "no handshake with a backend at B";
  EXPECT_EQ(wb_->stats().l7_heads, 0u) << "no new backend choice at B";
  for (const BackendStatus& s : b_->translator()->lb()->pools()[1]->list())
    EXPECT_EQ(s.active_conns, 1) << "the connection counts on its backend at B";

  pipetest::HandoffSteps::delete_vm(*wa_, steps_.vm_a);
  EXPECT_EQ(wa_->table().size(), 0u);
  EXPECT_EQ(a_->xlate(0)->size(), 0u) << "A's reply key (local port) is free";
  EXPECT_EQ(wa_->l7()->pool_free(), wa_->l7()->pool_size());
  for (const auto& pool : a_->translator()->lb()->pools())
    for (const BackendStatus& s : pool->list()) EXPECT_EQ(s.active_conns, 0) << "A's backend count";
}

// B's api pool has another backend than the VM: PREPARE says CONFLICT naming it, the installer
// refuses the record with the reason, and B holds nothing after the rollback.
TEST_F(L7Migration, BackendUnknownAtDestinationIsAConflict) {
  ASSERT_NO_FATAL_FAILURE(start([](Config& cfg) {
    Family f;
    cfg.lb.pools[1].backends[0].address = *IpAddr::parse("10.1.0.7", &f);
  }));
  Client c;
  const std::string head = "GET /api/items HTTP/1.1\r\nHost: www.example\r\n\r\n";
  const uint32_t hl = uint32_t(head.size());
  uint16_t lport = 0;
  ASSERT_NO_FATAL_FAILURE(splice_at_a(c, head, 77, 88, &lport));
  ASSERT_EQ(at_a(from_host(1).ipv4("10.1.0.6", kLocal).tcp(8080, lport).seq(78).ack(c.isn + 1 + hl).flags(kAck)
                     .win(2000).ts(89, c.tsval), kIn).size(), 1u);
  const migrate::Decision d = prepare_at_b();
  EXPECT_EQ(d.reason, migrate::FailReason::kConflict);
  EXPECT_NE(d.detail.find("backend 10.1.0.6:8080 is not in any pool of lb service site"), std::string::npos) << d.detail;
  ASSERT_NO_FATAL_FAILURE(steps_.precopy());
  ASSERT_NO_FATAL_FAILURE(steps_.final_delta());
  EXPECT_EQ(steps_.inst->failed, 1u);
  EXPECT_NE(steps_.inst->conflict.find("10.1.0.6:8080"), std::string::npos) << steps_.inst->conflict;
  pipetest::HandoffSteps::delete_vm(*wb_, steps_.vm_b);
  EXPECT_EQ(wb_->table().size(), 0u);
  EXPECT_EQ(b_->xlate(0)->size(), 0u);
  for (const auto& pool : b_->translator()->lb()->pools())
    for (const BackendStatus& s : pool->list()) EXPECT_EQ(s.active_conns, 0);
  for (uint32_t i = 0; i < wb_->table().slots(); i++) EXPECT_FALSE(wb_->l7()->is_l7(i)) << i;
}

}  // namespace
}  // namespace baton
