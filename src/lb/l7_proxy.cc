// SPDX-License-Identifier: Apache-2.0
#include "lb/l7_proxy.h"

#include <openssl/rand.h>

#include <algorithm>
#include <cstring>

#include "dataplane/packet_meta.h"
#include "nat/checksum.h"

namespace baton {
namespace {

constexpr size_t kIpHeaderLen = 20, kTcpHeaderLen = 20;
constexpr uint8_t kMaxWscale = 14;  // RFC 7323 2.3

void put16(uint8_t* p, uint16_t v) {
  p[0] = static_cast<uint8_t>(v >> 8);
  p[1] = static_cast<uint8_t>(v);
}
void put32(uint8_t* p, uint32_t v) {
  put16(p, static_cast<uint16_t>(v >> 16));
  put16(p + 2, static_cast<uint16_t>(v));
}

// Options as Linux lays them out (and the test packet builder): MSS; SACK-permitted folded into
// the timestamp option's padding; window scale last. Returns the length (a multiple of 4).
size_t write_options(const TcpSegmentSpec& s, uint8_t* o) {
  size_t n = 0;
  if (s.mss) {
    o[n++] = 2, o[n++] = 4;
    put16(o + n, s.mss);
    n += 2;
  }
  if (s.timestamps) {
    if (s.sack_permitted)
      o[n++] = 4, o[n++] = 2;
    else
      o[n++] = 1, o[n++] = 1;
    o[n++] = 8, o[n++] = 10;
    put32(o + n, s.tsval);
    put32(o + n + 4, s.tsecr);
    n += 8;
  } else if (s.sack_permitted) {
    o[n++] = 1, o[n++] = 1, o[n++] = 4, o[n++] = 2;
  }
  if (s.wscale >= 0) o[n++] = 1, o[n++] = 3, o[n++] = 3, o[n++] = static_cast<uint8_t>(s.wscale);
  return n;
}

// The one's-complement sum of the TCP pseudo-header (RFC 9293 3.1).
uint32_t pseudo_sum(const uint8_t* src, const uint8_t* dst, uint16_t tcp_len) {
  uint8_t ph[12];
  std::memcpy(ph, src, 4);
  std::memcpy(ph + 4, dst, 4);
  ph[8] = 0;
  ph[9] = 6;
  put16(ph + 10, tcp_len);
  return csum_partial(ph, sizeof ph);
}

}  // namespace

size_t write_tcp_frame(const TcpSegmentSpec& s, uint8_t* out, size_t cap) {
  uint8_t opts[40];
  const size_t olen = write_options(s, opts);
  const size_t tcp_len = kTcpHeaderLen + olen + s.payload.size();
  const size_t frame = kEthHeaderLen + kIpHeaderLen + tcp_len;
  if (frame > cap || kIpHeaderLen + tcp_len > 0xffff) return 0;

  std::memset(out, 0, 12);  // MACs: the router's job
  out[12] = 0x08, out[13] = 0x00;
  uint8_t* ip = out + kEthHeaderLen;
  ip[0] = 0x45, ip[1] = 0;
  put16(ip + 2, static_cast<uint16_t>(kIpHeaderLen + tcp_len));
  put16(ip + 4, 0);       // id: DF set, never fragmented (RFC 6864 4.1)
  put16(ip + 6, 0x4000);  // DF
  ip[8] = 64, ip[9] = 6;
  put16(ip + 10, 0);
  std::memcpy(ip + 12, &s.src, 4);
  std::memcpy(ip + 16, &s.dst, 4);
  const uint16_t ip_csum = csum_fold(csum_partial(ip, kIpHeaderLen));
  std::memcpy(ip + 10, &ip_csum, 2);

  uint8_t* tcp = ip + kIpHeaderLen;
  std::memcpy(tcp, &s.sport, 2);
  std::memcpy(tcp + 2, &s.dport, 2);
  put32(tcp + 4, s.seq);
  put32(tcp + 8, s.ack);
  tcp[12] = static_cast<uint8_t>((kTcpHeaderLen + olen) / 4 << 4);
  tcp[13] = s.flags;
  put16(tcp + 14, s.window);
  put16(tcp + 16, 0);
  put16(tcp + 18, 0);
  std::memcpy(tcp + kTcpHeaderLen, opts, olen);
  if (!s.payload.empty()) std::memcpy(tcp + kTcpHeaderLen + olen, s.payload.data(), s.payload.size());
  const uint16_t csum = csum_fold(
      csum_partial(tcp, tcp_len, pseudo_sum(ip + 12, ip + 16, static_cast<uint16_t>(tcp_len))));
  std::memcpy(tcp + 16, &csum, 2);
  return frame;
}

bool tcp_checksum_ok(const uint8_t* ip, size_t len) {
  if (len < kIpHeaderLen) return false;
  const size_t ihl = static_cast<size_t>(ip[0] & 0x0f) * 4;
  const size_t total = static_cast<size_t>(ip[2]) << 8 | ip[3];
  if (ihl < kIpHeaderLen || total > len || total < ihl + kTcpHeaderLen) return false;
  const uint16_t tcp_len = static_cast<uint16_t>(total - ihl);
  return csum_fold(csum_partial(ip + ihl, tcp_len, pseudo_sum(ip + 12, ip + 16, tcp_len))) == 0;
}

uint16_t rescale_window(uint16_t window, uint8_t from, uint8_t to) {
  const uint32_t bytes = uint32_t{window} << std::min(from, kMaxWscale);
  return static_cast<uint16_t>(std::min<uint32_t>(bytes >> std::min(to, kMaxWscale), 0xffff));
}

const char* l7_phase_name(L7Phase p) {
  switch (p) {
    case L7Phase::kNone: return "none";
    case L7Phase::kReading: return "reading";
    case L7Phase::kConnecting: return "connecting";
    case L7Phase::kSpliced: return "spliced";
    case L7Phase::kResponded: return "responded";
    case L7Phase::kClosed: return "closed";
  }
  return "?";
}

std::unique_ptr<L7Proxy> L7Proxy::create(const Params& p, std::string* err) {
  std::unique_ptr<L7Proxy> x(new L7Proxy());
  x->cookie_ = SynCookie::create(p.secret);
  if (!x->cookie_) {
    *err = "L7: OpenSSL offers no SipHash for SYN cookies";
    return nullptr;
  }
  x->records_.resize(p.conn_slots);
  // Each buffer costs the raw bytes and the parser's own copy of the head.
  const uint32_t cap = p.max_head + kTailBytes;
  const uint32_t n = p.pending ? p.pending
                               : std::clamp<uint32_t>(kPoolBudget / (cap + p.max_head), 16, 4096);
  x->pool_.resize(n);
  x->free_.reserve(n);
  HttpHeadLimits limits;
  limits.max_head_bytes = p.max_head;
  for (uint32_t i = 0; i < n; i++) {
    L7Pending& q = x->pool_[i];
    q.buf = std::make_unique<uint8_t[]>(cap);
    q.cap = cap;
    q.parser = std::make_unique<HttpHeadParser>(limits);
    x->free_.push_back(n - 1 - i);  // hands out 0, 1, 2, ... first
  }
  return x;
}

bool L7Proxy::read(uint32_t slot, const std::atomic<uint32_t>& version, L7ConnRecord* out) const {
  for (int tries = 0; tries < 1000; tries++) {
    const uint32_t v = version.load(std::memory_order_acquire);
    if (v & 1) continue;
    *out = records_[slot];
    std::atomic_thread_fence(std::memory_order_acquire);
    if (version.load(std::memory_order_relaxed) == v) return true;
  }
  return false;
}

namespace {
uint16_t syn_ack_window(uint32_t max_head) {  // the head buffer; a SYN's window is never scaled
  return static_cast<uint16_t>(std::min<uint32_t>(max_head + L7Proxy::kTailBytes, 0xffff));
}
}  // namespace

TcpSegmentSpec L7Proxy::syn_ack(const Tuple& syn, const TcpInfo& tcp, uint32_t max_head,
                                uint64_t now_s, uint32_t ts_now) {
  TcpSynOptions offered;
  offered.mss = tcp.mss;
  offered.wscale = tcp.wscale == 0xff ? TcpSynOptions::kNone : static_cast<int8_t>(tcp.wscale);
  offered.sack_permitted = tcp.sack_permitted;
  offered.timestamps = tcp.has_timestamp;
  const SynCookieIssue is = cookie_->issue(syn, tcp.seq, offered, now_s, ts_now);
  TcpSegmentSpec s;
  s.src = syn.dst.as_v4();
  s.dst = syn.src.as_v4();
  s.sport = syn.dport;
  s.dport = syn.sport;
  s.seq = is.isn;
  s.ack = tcp.seq + 1;
  s.flags = tcpflag::kSyn | tcpflag::kAck;
  s.window = syn_ack_window(max_head);
  s.mss = is.agreed.mss;
  s.sack_permitted = is.agreed.sack_permitted;
  s.timestamps = is.agreed.timestamps;
  s.tsval = is.tsval;
  s.tsecr = tcp.tsval;
  // Window scaling only when the cookie can recover the client's shift (it rides in TSval).
  s.wscale = is.agreed.wscale >= 0 ? static_cast<int8_t>(kLbWscale) : -1;
  return s;
}

std::optional<TcpSynOptions> L7Proxy::check_cookie(const Tuple& t, const TcpInfo& tcp,
                                                   uint64_t now_s) {
  std::optional<uint32_t> tsecr;
  if (tcp.has_timestamp) tsecr = tcp.tsecr;
  return cookie_->check(t, tcp.seq, tcp.ack, tsecr, now_s);
}

bool L7Proxy::rotate_secret_due(uint64_t now_s) {
  if (!next_rotation_s_) next_rotation_s_ = now_s + kSecretLifetimeS;
  if (now_s < next_rotation_s_) return false;
  SynCookieSecret next;
  if (RAND_bytes(next.h0.data(), static_cast<int>(next.h0.size())) != 1 ||
      RAND_bytes(next.h1.data(), static_cast<int>(next.h1.size())) != 1 ||
      !cookie_->rotate(next, now_s))
    return false;
  next_rotation_s_ = now_s + kSecretLifetimeS;
  return true;
}

void L7Proxy::handshake(const TcpInfo& ack, const TcpSynOptions& o, uint32_t max_head,
                        TcpInfo* syn, TcpInfo* syn_ack) {
  const uint8_t shift = o.wscale >= 0 ? static_cast<uint8_t>(o.wscale) : 0;
  *syn = TcpInfo{};
  syn->seq = ack.seq - 1;
  syn->flags = tcpflag::kSyn;
  syn->window = rescale_window(ack.window, shift, 0);
  syn->mss = o.mss;
  syn->wscale = o.wscale >= 0 ? shift : 0xff;
  syn->sack_permitted = o.sack_permitted;
  *syn_ack = TcpInfo{};
  syn_ack->seq = ack.ack - 1;
  syn_ack->ack = ack.seq;
  syn_ack->flags = tcpflag::kSyn | tcpflag::kAck;
  syn_ack->window = syn_ack_window(max_head);
  syn_ack->mss = o.mss;
  syn_ack->wscale = o.wscale >= 0 ? kLbWscale : 0xff;
  syn_ack->sack_permitted = o.sack_permitted;
}

uint32_t L7Proxy::open(uint32_t slot, const TcpInfo& ack, const TcpSynOptions& client,
                       uint32_t now_s) {
  if (free_.empty()) return kNoPending;
  const uint32_t i = free_.back();
  free_.pop_back();
  in_use_.fetch_add(1, std::memory_order_relaxed);
  L7Pending& p = pool_[i];
  p.in_use = true;
  p.conn_slot = slot;
  p.since = now_s;
  p.client_isn = ack.seq - 1;
  p.lb_isn = ack.ack - 1;
  p.lb_tsval = client.timestamps ? ack.tsecr : 0;
  p.lb_wscale = client.wscale >= 0 ? static_cast<int8_t>(kLbWscale) : -1;
  p.client = client;
  p.client_tsval = ack.tsval;
  p.client_window = ack.window;
  p.rcv_nxt = ack.seq;
  p.snd_nxt = ack.ack;
  p.backend_isn = 0;
  p.backend_tsval = 0;
  p.backend_mss = 536;
  p.backend_ack = 0;
  p.len = 0;
  p.parser->reset();
  return i;
}

void L7Proxy::release(uint32_t i) {
  if (i >= pool_.size() || !pool_[i].in_use) return;
  pool_[i].in_use = false;
  free_.push_back(i);
  in_use_.fetch_sub(1, std::memory_order_relaxed);
}

void L7Proxy::forget(uint32_t slot) {
  if (slot >= records_.size()) return;
  release(records_[slot].pending);
  records_[slot] = L7ConnRecord{};
}

L7Take L7Proxy::take(L7Pending& p, uint32_t seq, std::span<const uint8_t> data,
                     uint32_t max_head) {
  if (static_cast<int32_t>(seq - p.rcv_nxt) > 0) return L7Take::kGap;
  const uint32_t skip = p.rcv_nxt - seq;  // already taken (a partial retransmission)
  if (skip >= data.size()) return L7Take::kDuplicate;
  data = data.subspan(skip);
  const uint32_t n = static_cast<uint32_t>(std::min<size_t>(data.size(), p.cap - p.len));
  std::memcpy(p.buf.get() + p.len, data.data(), n);
  p.len += n;
  p.rcv_nxt += n;
  // The parser stops at the end of the head; what follows stays in the buffer for the replay.
  switch (p.parser->feed(std::string_view(reinterpret_cast<const char*>(data.data()), n))) {
    case HttpParseStatus::kComplete:
      return p.parser->head_length() > max_head ? L7Take::kTooLarge : L7Take::kComplete;
    case HttpParseStatus::kError:
      return p.parser->error() == HttpParseError::kTooLarge ? L7Take::kTooLarge : L7Take::kMalformed;
    case HttpParseStatus::kNeedMore:
      break;
  }
  // Everything buffered so far is head (the parser consumed it all).
  return p.len > max_head ? L7Take::kTooLarge : L7Take::kNeedMore;
}

TcpSegmentSpec L7Proxy::to_client(const L7Pending& p, const Tuple& ct, uint8_t flags,
                                  std::span<const uint8_t> payload) const {
  TcpSegmentSpec s;
  s.src = ct.dst.as_v4();
  s.dst = ct.src.as_v4();
  s.sport = ct.dport;
  s.dport = ct.sport;
  s.seq = p.snd_nxt;
  s.ack = p.rcv_nxt;
  s.flags = flags;
  // The right edge (rcv_nxt + room) stays where the SYN-ACK put it: the window never shrinks.
  const uint32_t room = p.cap - p.len;
  s.window = static_cast<uint16_t>(p.lb_wscale >= 0 ? room >> p.lb_wscale
                                                    : std::min<uint32_t>(room, 0xffff));
  s.timestamps = p.client.timestamps;
  s.tsval = p.lb_tsval;  // splice_offsets.h: every segment before the splice carries tl
  s.tsecr = p.client_tsval;
  s.payload = payload;
  return s;
}

TcpSegmentSpec L7Proxy::backend_syn(const L7Pending& p, const Tuple& to) const {
  TcpSegmentSpec s;
  s.src = to.src.as_v4();
  s.dst = to.dst.as_v4();
  s.sport = to.sport;
  s.dport = to.dport;
  s.seq = p.client_isn;
  s.flags = tcpflag::kSyn;
  // A SYN's window is never scaled; the client's, as its last segment advertised it.
  const uint8_t shift = p.client.wscale >= 0 ? static_cast<uint8_t>(p.client.wscale) : 0;
  s.window = rescale_window(p.client_window, shift, 0);
  s.mss = p.client.mss;
  s.wscale = p.client.wscale;
  s.sack_permitted = p.client.sack_permitted;
  s.timestamps = p.client.timestamps;
  s.tsval = p.client_tsval;
  return s;
}

TcpSegmentSpec L7Proxy::backend_data(const L7Pending& p, const Tuple& to, const SpliceOffsets& o,
                                     uint32_t from, uint32_t n) const {
  // The client's segment as it would have been, through the client->backend rewrite.
  const SpliceDirOffsets& d = o.to_backend;
  TcpSegmentSpec s;
  s.src = to.src.as_v4();
  s.dst = to.dst.as_v4();
  s.sport = to.sport;
  s.dport = to.dport;
  s.seq = p.client_isn + 1 + from + d.seq;
  s.ack = p.lb_isn + 1 + d.ack;
  s.flags = tcpflag::kAck | (from + n == p.len ? tcpflag::kPsh : 0);
  s.window = rescale_window(p.client_window, d.win_from, d.win_to);
  s.timestamps = p.client.timestamps;
  s.tsval = p.client_tsval + d.tsval;
  s.tsecr = p.lb_tsval + d.tsecr;
  s.payload = p.bytes().subspan(from, n);
  return s;
}

}  // namespace baton
