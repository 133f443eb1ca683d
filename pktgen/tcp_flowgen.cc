// SPDX-License-Identifier: Apache-2.0
#include "pktgen/tcp_flowgen.h"

#include <algorithm>
#include <stdexcept>

namespace baton::pktgen {
namespace {

// Script positions (FlowState::step).
constexpr uint32_t kStepSyn = 0, kStepSynAck = 1, kStepAck = 2, kStepData = 3, kStepFin = 4,
                   kStepFinAck = 5, kStepLastAck = 6, kStepDone = 7;

// base + i: IPv4 in the 32-bit address, IPv6 in the low 32 bits.
IpAddr offset_addr(const IpAddr& base, bool v6, uint32_t i) {
  IpAddr a = base;
  size_t at = v6 ? 12 : 0;
  uint32_t v = uint32_t(a.b[at]) << 24 | uint32_t(a.b[at + 1]) << 16 |
               uint32_t(a.b[at + 2]) << 8 | a.b[at + 3];
  v += i;
  a.b[at] = uint8_t(v >> 24);
  a.b[at + 1] = uint8_t(v >> 16);
  a.b[at + 2] = uint8_t(v >> 8);
  a.b[at + 3] = uint8_t(v);
  return a;
}

IpAddr base_addr(const std::string& s, bool v6, const char* v6_default) {
  Family f;
  auto a = IpAddr::parse(s, &f);
  if (a && f == (v6 ? Family::kV6 : Family::kV4)) return *a;
  // A v4 default left in place for a v6 run: use the v6 default rather than fail.
  if (v6 && a && f == Family::kV4) return *IpAddr::parse(v6_default, &f);
  throw std::invalid_argument("TcpFlowgen: bad base address " + s);
}

}  // namespace

TcpFlowgen::TcpFlowgen(const FlowgenConfig& cfg) : cfg_(cfg), rng_(cfg.seed) {
  if (cfg_.clients == 0 || cfg_.servers == 0) throw std::invalid_argument("TcpFlowgen: empty range");
  IpAddr cbase = base_addr(cfg_.client_base, cfg_.ipv6, "fd00::1");
  IpAddr sbase = base_addr(cfg_.server_base, cfg_.ipv6, "fd00:1::1");
  flows_.resize(cfg_.flows);
  active_.reserve(cfg_.flows);
  for (uint32_t i = 0; i < cfg_.flows; ++i) {
    FlowState& f = flows_[i];
    FlowEnd& c = f.end[int(Side::kClient)];
    FlowEnd& s = f.end[int(Side::kServer)];
    c.addr = offset_addr(cbase, cfg_.ipv6, i % cfg_.clients);
    c.port = uint16_t(cfg_.client_port_base + i / cfg_.clients);
    s.addr = offset_addr(sbase, cfg_.ipv6, i % cfg_.servers);
    s.port = cfg_.server_port;
    for (FlowEnd* e : {&c, &s}) {
      e->isn = uint32_t(rand());
      e->snd_nxt = e->isn;
      e->tsval = uint32_t(rand() >> 33) + 1;
    }
    active_.push_back(i);
  }
}

// splitmix64: tiny, fast, and the same sequence on every platform (unlike std distributions).
uint64_t TcpFlowgen::rand() {
  uint64_t z = (rng_ += 0x9e3779b97f4a7c15ull);
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
  return z ^ (z >> 31);
}

Tuple TcpFlowgen::tuple(uint32_t flow, Side from) const {
  const FlowEnd& a = flows_[flow].end[int(from)];
  const FlowEnd& b = flows_[flow].end[int(other(from))];
  Tuple t;
  t.src = a.addr;
  t.dst = b.addr;
  t.sport = be16::from_host(a.port);
  t.dport = be16::from_host(b.port);
  t.proto = 6;
  t.family = cfg_.ipv6 ? Family::kV6 : Family::kV4;
  t.vlan = cfg_.vlan;
  return t;
}

GenPacket TcpFlowgen::make(uint32_t flow, Side from, uint32_t seq, uint8_t flags,
                           uint16_t payload_len, bool syn_options) const {
  const FlowState& f = flows_[flow];
  const FlowEnd& me = f.end[int(from)];
  const FlowEnd& peer = f.end[int(other(from))];
  GenPacket g;
  g.from = from;
  g.flow = flow;
  g.seq = seq;
  g.ack = (flags & tcpflag::kAck) ? peer.snd_nxt : 0;
  g.flags = flags;
  g.payload_len = payload_len;

  // RFC 7323 2.2: the window field of a SYN is never scaled.
  uint32_t w = (flags & tcpflag::kSyn) ? cfg_.rcv_window : cfg_.rcv_window >> cfg_.wscale;
  Pkt p;
  if (from == Side::kClient)
    p.eth(cfg_.client_mac, cfg_.server_mac);
  else
    p.eth(cfg_.server_mac, cfg_.client_mac);
  if (cfg_.vlan) p.vlan(cfg_.vlan);
  if (cfg_.ipv6)
    p.ipv6(me.addr, peer.addr);
  else
    p.ipv4(me.addr, peer.addr).df().ip_id(uint16_t(me.snd_nxt ^ flow));
  p.tcp(me.port, peer.port).seq(seq).ack(g.ack).flags(flags).win(uint16_t(std::min(w, 65535u)));
  if (syn_options) p.mss(cfg_.mss).sack_perm().wscale(cfg_.wscale);
  if (cfg_.timestamps) {
    bool peer_sent = peer.snd_nxt != peer.isn;   // RFC 7323 3.2: TSecr 0 until one is seen
    p.ts(me.tsval, peer_sent ? peer.tsval - 1 : 0);
  }
  if (payload_len) p.payload_size(payload_len, uint8_t('a' + flow % 26));
  g.bytes = p.build();
  return g;
}

GenPacket TcpFlowgen::segment(uint32_t flow, Side from, uint8_t flags, uint16_t payload_len) {
  FlowEnd& me = flows_[flow].end[int(from)];
  GenPacket g = make(flow, from, me.snd_nxt, flags, payload_len, flags & tcpflag::kSyn);
  me.snd_nxt += payload_len + ((flags & tcpflag::kSyn) ? 1 : 0) + ((flags & tcpflag::kFin) ? 1 : 0);
  me.tsval += 1;
  return g;
}

GenPacket TcpFlowgen::wrong_seq(uint32_t flow, Side from, int32_t seq_delta, uint8_t flags,
                                uint16_t payload_len) const {
  const FlowEnd& me = flows_[flow].end[int(from)];
  return make(flow, from, me.snd_nxt + uint32_t(seq_delta), flags, payload_len, false);
}

GenPacket TcpFlowgen::step(uint32_t flow) {
  using namespace tcpflag;
  FlowState& f = flows_[flow];
  if (f.step == kStepData && f.data_sent >= 2 * cfg_.data_segments) f.step = kStepFin;
  GenPacket g;
  switch (f.step) {
    case kStepSyn: g = segment(flow, Side::kClient, kSyn, 0); break;
    case kStepSynAck: g = segment(flow, Side::kServer, kSyn | kAck, 0); break;
    case kStepAck: g = segment(flow, Side::kClient, kAck, 0); break;
    case kStepData: {
      Side from = f.data_sent % 2 == 0 ? Side::kClient : Side::kServer;
      f.data_sent++;
      return segment(flow, from, kPsh | kAck, cfg_.segment_size);   // stays in kStepData
    }
    case kStepFin: g = segment(flow, Side::kClient, kFin | kAck, 0); break;
    case kStepFinAck: g = segment(flow, Side::kServer, kFin | kAck, 0); break;
    case kStepLastAck: g = segment(flow, Side::kClient, kAck, 0); break;
    default: throw std::logic_error("TcpFlowgen: step past the end of a flow");
  }
  f.step++;
  return g;
}

bool TcpFlowgen::next(GenPacket* out) {
  while (!active_.empty()) {
    size_t i = rand() % active_.size();
    uint32_t flow = active_[i];
    if (flows_[flow].step == kStepDone) {   // closed by teardowns()
      active_[i] = active_.back();
      active_.pop_back();
      continue;
    }
    *out = step(flow);
    if (flows_[flow].step == kStepDone) {
      active_[i] = active_.back();
      active_.pop_back();
    }
    return true;
  }
  return false;
}

std::vector<GenPacket> TcpFlowgen::conversation() {
  std::vector<GenPacket> v;
  v.reserve(size_t(cfg_.flows) * (6 + 2 * cfg_.data_segments));
  GenPacket g;
  while (next(&g)) v.push_back(std::move(g));
  return v;
}

std::vector<GenPacket> TcpFlowgen::handshakes() {
  std::vector<GenPacket> v;
  std::vector<uint32_t> fresh;
  for (uint32_t i = 0; i < flows_.size(); ++i)
    if (flows_[i].step == kStepSyn) fresh.push_back(i);
  // All SYNs, then all SYN-ACKs, then all ACKs: many half-open flows at once, as on a server.
  for (int round = 0; round < 3; ++round)
    for (uint32_t i : fresh) v.push_back(step(i));
  return v;
}

std::vector<GenPacket> TcpFlowgen::established(size_t n) {
  std::vector<GenPacket> v;
  v.reserve(n);
  size_t idle = 0;   // consecutive flows skipped; a full lap of them means none is established
  while (v.size() < n && idle < flows_.size()) {
    uint32_t i = uint32_t(rr_++ % flows_.size());
    FlowState& f = flows_[i];
    if (f.step != kStepData) {
      ++idle;
      continue;
    }
    idle = 0;
    Side from = f.data_sent % 2 == 0 ? Side::kClient : Side::kServer;
    f.data_sent++;
    v.push_back(segment(i, from, tcpflag::kPsh | tcpflag::kAck, cfg_.segment_size));
  }
  return v;
}

std::vector<GenPacket> TcpFlowgen::teardowns() {
  std::vector<GenPacket> v;
  std::vector<uint32_t> open;
  for (uint32_t i = 0; i < flows_.size(); ++i) {
    if (flows_[i].step == kStepData) {
      flows_[i].step = kStepFin;
      open.push_back(i);
    }
  }
  for (int round = 0; round < 3; ++round)
    for (uint32_t i : open) v.push_back(step(i));
  return v;
}

}  // namespace baton::pktgen
