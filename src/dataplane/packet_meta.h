// SPDX-License-Identifier: Apache-2.0
//
// What the parser learns about one packet, filled once and read by every later stage. Offsets
// are from the start of the frame; a stage that rewrites headers uses them, never re-parses.
#pragma once

#include <cstdint>

#include "common/net_types.h"
#include "dataplane/drop_reason.h"

namespace baton {

enum class L3Kind : uint8_t { kNone, kIpv4, kIpv6, kArp };

// TCP flag bits as on the wire (byte 13 of the header).
namespace tcpflag {
constexpr uint8_t kFin = 0x01, kSyn = 0x02, kRst = 0x04, kPsh = 0x08, kAck = 0x10, kUrg = 0x20,
                  kEce = 0x40, kCwr = 0x80;
}

struct TcpInfo {
  uint32_t seq = 0, ack = 0;   // host order
  uint16_t window = 0;         // raw, unscaled, host order
  uint8_t flags = 0;
  uint8_t wscale = 0xff;       // option value, 0xff = option absent
  uint16_t mss = 0;            // 0 = absent
  bool sack_permitted = false;
  bool has_timestamp = false;
  uint32_t tsval = 0, tsecr = 0;
  uint16_t payload_len = 0;    // TCP payload bytes in this segment
};

// For an ICMP/ICMPv6 error: the offending packet's tuple as the sender of the error saw it
// (i.e. the embedded header's own direction). The flow it belongs to is inner.reverse()'s key.
struct IcmpInfo {
  uint8_t type = 0, code = 0;
  bool is_error = false;        // destination unreachable, time exceeded, param problem, too big
  bool is_query = false;        // echo request/reply
  bool is_request = false;      // echo request
  Tuple inner;                  // valid when is_error && has_inner
  bool has_inner = false;
  uint32_t inner_tcp_seq = 0;   // when the embedded packet is TCP
};

// 32-byte aligned, and so a whole number of 32-byte vectors (224 bytes): the parser clears it
// with seven vector stores.
struct alignas(32) PacketMeta {
  L3Kind l3 = L3Kind::kNone;
  Tuple tuple;                 // directional, as seen on the wire
  MacAddr src_mac, dst_mac;
  uint16_t outer_vlan = 0;     // QinQ service tag, 0 if none
  uint16_t l3_offset = 0, l4_offset = 0, payload_offset = 0;
  uint16_t l3_len = 0;         // IP total length (v4) or header+payload (v6)
  uint8_t ttl = 0;
  bool is_fragment = false;    // any fragment
  bool first_fragment = false; // offset 0 with more-fragments set
  uint32_t frag_id = 0;
  bool has_l4 = false;         // ports/ICMP fields valid (false for non-first fragments)
  TcpInfo tcp;
  IcmpInfo icmp;
  // ARP (when l3 == kArp)
  uint16_t arp_op = 0;
  IpAddr arp_sender_ip, arp_target_ip;
  MacAddr arp_sender_mac;
};

}  // namespace baton
