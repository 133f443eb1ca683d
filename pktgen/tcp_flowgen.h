// SPDX-License-Identifier: Apache-2.0
//
// Synthetic TCP conversations, generated in-process for tests and benchmarks.
//
// Theory of operation. Flow i runs between client (client_base + i % clients, port
// client_port_base + i / clients) and server (server_base + i % servers, server_port). Each flow
// follows one script, strictly alternating so that every segment acknowledges everything the
// other side has sent (ack == the other side's next seq, always):
//
//   C->S SYN (MSS, SACK-permitted, timestamps, window scale)   S->C SYN|ACK (same options)
//   C->S ACK
//   data_segments x { C->S PSH|ACK + segment_size bytes,  S->C PSH|ACK + segment_size bytes }
//   C->S FIN|ACK   S->C FIN|ACK   C->S ACK
//
// Windows are advertised scaled after the handshake (RFC 7323 2.2: never in a SYN) and always
// cover the data in flight. Initial sequence numbers and the interleaving across flows come from
// one seeded generator, so a seed names one exact packet sequence on every machine. The order
// within a flow is always the script order.
//
// Three ways to consume it: next() streams the interleaved conversation packet by packet;
// conversation() returns all of it; handshakes() + established(n) + teardowns() drive every
// flow through one phase at a time, established(n) giving only data packets (the cycle
// benchmarks' steady state). Phases and next() share the per-flow state, so mixing them is
// possible but consumes the same script.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "common/net_types.h"
#include "pktgen/packet_builder.h"

namespace baton::pktgen {

// Which endpoint sent a packet.
enum class Side : uint8_t { kClient = 0, kServer = 1 };
inline Side other(Side s) { return s == Side::kClient ? Side::kServer : Side::kClient; }

struct FlowgenConfig {
  uint32_t flows = 16;
  bool ipv6 = false;
  std::string client_base = "10.0.0.1";   // or an IPv6 address when ipv6
  uint32_t clients = 64;                   // addresses client_base + [0, clients)
  std::string server_base = "10.1.0.1";
  uint32_t servers = 4;
  uint16_t client_port_base = 10000;
  uint16_t server_port = 80;
  uint16_t vlan = 0;                       // 0 = untagged
  MacAddr client_mac = *MacAddr::parse("02:00:00:00:00:01");
  MacAddr server_mac = *MacAddr::parse("02:00:00:00:00:02");
  uint32_t data_segments = 4;              // M per direction
  uint16_t segment_size = 100;             // payload bytes per data segment
  uint16_t mss = 1460;
  uint8_t wscale = 7;
  uint32_t rcv_window = 256 * 1024;        // bytes each side advertises
  bool timestamps = true;
  uint64_t seed = 1;
};

struct GenPacket {
  Bytes bytes;
  Side from = Side::kClient;
  uint32_t flow = 0;
  // What the segment says, for assertions without re-parsing.
  uint32_t seq = 0, ack = 0;
  uint8_t flags = 0;
  uint16_t payload_len = 0;
};

// One endpoint's view of its half of the connection.
struct FlowEnd {
  IpAddr addr;
  uint16_t port = 0;
  uint32_t isn = 0;
  uint32_t snd_nxt = 0;   // next sequence number this end sends
  uint32_t tsval = 0;
};

struct FlowState {
  FlowEnd end[2];          // indexed by Side
  uint32_t step = 0;       // position in the script
  uint32_t data_sent = 0;  // data segments sent so far, both directions
};

class TcpFlowgen {
 public:
  explicit TcpFlowgen(const FlowgenConfig& cfg);

  // The next packet of the interleaved conversation; false once every flow has closed.
  bool next(GenPacket* out);
  // Everything next() would still produce.
  std::vector<GenPacket> conversation();

  // Phase-at-a-time use (see the header comment). handshakes() returns 3 packets per flow that
  // has not started; established(n) returns n data segments, round-robin over the flows and
  // alternating direction, and keeps going past data_segments (a benchmark asks for as many as
  // it likes); teardowns() closes every flow that is established.
  std::vector<GenPacket> handshakes();
  std::vector<GenPacket> established(size_t n);
  std::vector<GenPacket> teardowns();

  // A segment from `from` on `flow` whose seq is the sender's next seq + seq_delta (ack and
  // window correct), without advancing the flow: for out-of-window and bad-RST tests.
  GenPacket wrong_seq(uint32_t flow, Side from, int32_t seq_delta,
                      uint8_t flags = tcpflag::kAck | tcpflag::kPsh,
                      uint16_t payload_len = 0) const;
  // A valid in-order segment with arbitrary flags and length, advancing the flow's seq.
  GenPacket segment(uint32_t flow, Side from, uint8_t flags, uint16_t payload_len);

  const FlowState& flow(uint32_t i) const { return flows_[i]; }
  uint32_t flow_count() const { return uint32_t(flows_.size()); }
  const FlowgenConfig& config() const { return cfg_; }
  // The tuple of `flow` as sent by `from`.
  Tuple tuple(uint32_t flow, Side from) const;

 private:
  uint64_t rand();
  uint32_t script_len() const;
  GenPacket step(uint32_t flow);
  GenPacket make(uint32_t flow, Side from, uint32_t seq, uint8_t flags, uint16_t payload_len,
                 bool syn_options) const;

  FlowgenConfig cfg_;
  uint64_t rng_;
  std::vector<FlowState> flows_;
  std::vector<uint32_t> active_;   // flows with script left, for next()
  size_t rr_ = 0;                  // round-robin cursor for established()
};

}  // namespace baton::pktgen
