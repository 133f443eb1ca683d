// SPDX-License-Identifier: Apache-2.0
//
// A declarative packet builder for tests and benchmarks (after Katran's PacketBuilder):
//
//   auto frame = Pkt().eth("02:00:00:00:00:01", "02:00:00:00:00:02").vlan(10)
//                    .ipv4("10.0.0.1", "10.0.0.2").tcp(1234, 80)
//                    .seq(100).ack(0).flags(tcpflag::kSyn).win(65535)
//                    .mss(1460).sack_perm().ts(1, 0).wscale(7).payload("abc").build();
//
// Theory of operation. Each call only records what was asked for; build() lays the headers out
// in one pass, then fills every length field and checksum (IPv4 header, TCP/UDP/ICMPv6 over the
// pseudo-header, ICMPv4 over the message) so that an unremarkable chain gives a valid frame.
// Corruption is applied after that, so a test says exactly which single thing is wrong:
// overrides of one field (.ip_total_len(), .ihl(), .doff(), .udp_len(), .ip_csum()),
// .bad_l4_csum(), .poke() of raw bytes at an offset, .truncate() and .pad_to() of the frame.
//
// A builder is a value: copy it to make variants of one packet.
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "common/net_types.h"
#include "dataplane/packet_meta.h"

namespace baton::pktgen {

using Bytes = std::vector<uint8_t>;

class PacketBuilder {
 public:
  // --- L2 ---
  PacketBuilder& eth(const MacAddr& src, const MacAddr& dst);
  PacketBuilder& eth(const std::string& src, const std::string& dst);
  // An 802.1Q tag (TPID 0x8100), or any TPID; tags are emitted in call order, outermost first.
  PacketBuilder& vlan(uint16_t id, uint16_t tpid = 0x8100);
  // 802.1ad: service tag 0x88a8 `outer`, then customer tag 0x8100 `inner`.
  PacketBuilder& qinq(uint16_t outer, uint16_t inner);
  // Overrides the final ethertype (default: from the L3 chosen).
  PacketBuilder& ethertype(uint16_t type);

  // --- L3 ---
  PacketBuilder& ipv4(const std::string& src, const std::string& dst);
  PacketBuilder& ipv6(const std::string& src, const std::string& dst);
  PacketBuilder& ipv4(const IpAddr& src, const IpAddr& dst);
  PacketBuilder& ipv6(const IpAddr& src, const IpAddr& dst);
  PacketBuilder& ttl(uint8_t ttl);                 // v4 TTL or v6 hop limit
  PacketBuilder& tos(uint8_t tos);
  PacketBuilder& ip_id(uint32_t id);               // v4 identification / v6 fragment id
  PacketBuilder& df();
  // A fragment at byte `offset` (multiple of 8). v4: flags/offset fields; v6: appends a
  // fragment header to the extension chain. What follows in the frame is whatever L4/payload
  // was asked for, laid out as usual.
  PacketBuilder& frag(uint16_t offset, bool more);
  PacketBuilder& ip_options(Bytes opts);           // v4 options, padded to 4 with EOL
  PacketBuilder& proto(uint8_t proto);             // overrides the IP protocol / next header
  // Appends an IPv6 extension header of `type` (0, 43, 60, 51) whose total length is
  // `len` bytes (a multiple of 8; AH: of 4, >= 12). The body is zeros: Pad1 options for
  // hop-by-hop/destination options, a type 0 routing header with no segments left.
  PacketBuilder& ext(uint8_t type, size_t len = 8);
  PacketBuilder& ext_raw(uint8_t type, Bytes bytes);   // as is; next-header byte is filled in
  PacketBuilder& ip_total_len(uint16_t v);         // v4 total length / v6 payload length
  PacketBuilder& ihl(uint8_t words);
  PacketBuilder& ip_csum(uint16_t v);              // v4 header checksum, host order
  PacketBuilder& ip_version(uint8_t v);

  // ARP (Ethernet/IPv4): op 1 request, 2 reply.
  PacketBuilder& arp(uint16_t op, const std::string& sender_mac, const std::string& sender_ip,
                     const std::string& target_ip, const std::string& target_mac = "0:0:0:0:0:0");

  // --- L4 ---
  PacketBuilder& tcp(uint16_t sport, uint16_t dport);
  PacketBuilder& seq(uint32_t v);
  PacketBuilder& ack(uint32_t v);
  PacketBuilder& flags(uint8_t f);
  PacketBuilder& win(uint16_t w);
  PacketBuilder& wscale(uint8_t shift);
  PacketBuilder& mss(uint16_t mss);
  PacketBuilder& sack_perm();
  PacketBuilder& ts(uint32_t tsval, uint32_t tsecr);
  PacketBuilder& tcp_option(Bytes raw);            // appended after the named options
  PacketBuilder& doff(uint8_t words);              // overrides data offset

  PacketBuilder& udp(uint16_t sport, uint16_t dport);
  PacketBuilder& udp_len(uint16_t v);

  // Echo request/reply (v4 type 8/0, v6 128/129, chosen by the L3 family).
  PacketBuilder& icmp_echo(uint16_t id, uint16_t seq, bool request = true);
  // Any ICMP/ICMPv6 message: type, code, the 4 "rest of header" bytes (host order).
  PacketBuilder& icmp(uint8_t type, uint8_t code, uint32_t rest = 0);
  // An error embedding `inner_frame`, a frame from build() whose L2 headers are stripped.
  // Embedded as RFC 1812 4.3.2.3 / RFC 4443 2.4(c) do: v4 up to 576 bytes in all, v6 up to
  // 1280; `max_inner` cuts it shorter (e.g. 28 = IPv4 header + 8). For hand-made embedded
  // bytes use .icmp(type, code).payload(bytes).
  PacketBuilder& icmp_error(uint8_t type, uint8_t code, const Bytes& inner_frame,
                            size_t max_inner = SIZE_MAX, uint32_t rest = 0);
  PacketBuilder& bad_l4_csum();

  // --- payload and corruption ---
  PacketBuilder& payload(std::string_view s);
  PacketBuilder& payload(Bytes b);
  PacketBuilder& payload_size(size_t n, uint8_t fill = 0xab);
  PacketBuilder& truncate(size_t n);               // final frame cut to n bytes
  PacketBuilder& pad_to(size_t n);                 // Ethernet padding (zeros) up to n bytes
  PacketBuilder& poke(size_t offset, Bytes bytes); // overwrite after checksums

  Bytes build() const;

 private:
  enum class L3 : uint8_t { kNone, kV4, kV6, kArp };
  enum class L4 : uint8_t { kNone, kTcp, kUdp, kIcmp };
  struct Ext {
    uint8_t type;
    Bytes bytes;
  };

  uint8_t l4_proto() const;
  Bytes build_l4() const;

  MacAddr src_mac_ = *MacAddr::parse("02:00:00:00:00:01");
  MacAddr dst_mac_ = *MacAddr::parse("02:00:00:00:00:02");
  std::vector<std::pair<uint16_t, uint16_t>> vlans_;   // (tpid, id)
  std::optional<uint16_t> ethertype_;

  L3 l3_ = L3::kNone;
  IpAddr src_ip_, dst_ip_;
  uint8_t ttl_ = 64, tos_ = 0;
  uint32_t ip_id_ = 1;
  bool df_ = false;
  bool is_frag_ = false, more_frags_ = false;
  uint16_t frag_off_ = 0;
  Bytes ip_opts_;
  std::vector<Ext> exts_;
  std::optional<uint8_t> proto_;
  std::optional<uint16_t> ip_total_len_;
  std::optional<uint8_t> ihl_;
  std::optional<uint16_t> ip_csum_;
  std::optional<uint8_t> ip_version_;

  uint16_t arp_op_ = 0;
  MacAddr arp_sha_, arp_tha_;
  IpAddr arp_spa_, arp_tpa_;

  L4 l4_ = L4::kNone;
  uint16_t sport_ = 0, dport_ = 0;
  uint32_t seq_ = 0, ack_ = 0;
  uint8_t flags_ = tcpflag::kAck;
  uint16_t win_ = 65535;
  std::optional<uint8_t> wscale_;
  uint16_t mss_ = 0;
  bool sack_perm_ = false;
  std::optional<std::pair<uint32_t, uint32_t>> ts_;
  Bytes tcp_opts_raw_;
  std::optional<uint8_t> doff_;
  std::optional<uint16_t> udp_len_;
  uint8_t icmp_type_ = 0, icmp_code_ = 0;
  uint32_t icmp_rest_ = 0;
  bool icmp_echo_ = false, icmp_echo_request_ = false;
  bool bad_l4_csum_ = false;
  Bytes icmp_inner_;
  size_t icmp_max_inner_ = SIZE_MAX;

  Bytes payload_;
  std::optional<size_t> truncate_;
  size_t pad_to_ = 0;
  std::vector<std::pair<size_t, Bytes>> pokes_;
};

using Pkt = PacketBuilder;

// RFC 1071 Internet checksum of [p, p+n) added to `initial` (a partial, unfolded sum); the
// result is the value to store (complemented, folded).
uint16_t inet_checksum(const uint8_t* p, size_t n, uint32_t initial = 0);

// Verifies the IPv4 header checksum of a frame (false for anything that is not IPv4).
bool ipv4_checksum_ok(const uint8_t* frame, size_t len);

// Verifies the TCP, UDP, ICMP or ICMPv6 checksum of a whole (unfragmented) frame, with the
// pseudo-header where the protocol has one. False if the frame does not parse or is a fragment.
// UDP over IPv4 with checksum 0 ("none", RFC 768) counts as correct.
bool l4_checksum_ok(const uint8_t* frame, size_t len);
inline bool l4_checksum_ok(const Bytes& b) { return l4_checksum_ok(b.data(), b.size()); }

// Rewrites the IPv4 header and L4 checksums of a frame in place (e.g. after a test edits an
// address). Does nothing for frames that do not parse.
void fix_checksums(uint8_t* frame, size_t len);

// The bytes from the L3 header on (L2 and VLAN tags stripped).
Bytes strip_l2(const Bytes& frame);

}  // namespace baton::pktgen
