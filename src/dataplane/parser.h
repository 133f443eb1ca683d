// SPDX-License-Identifier: Apache-2.0
//
// The packet parser: one pure function from frame bytes to PacketMeta, no DPDK types, so that
// tests, benchmarks and the pcap tools run the exact code the workers run.
//
// Theory of operation. The parser walks the headers once, front to back, and never reads a byte
// at or past `len`. Each layer is bounded by the layer that contains it: L2 by the frame, L4 by
// the IP length (not the frame length, since Ethernet pads short frames to 60 bytes). A failure
// reports the first thing that went wrong as a DropReason and returns false; *m is then partly
// filled and must not be used.
//
//   L2   Ethernet, 802.1Q, QinQ (0x88a8 or 0x8100 outer, then 0x8100). tuple.vlan is the inner
//        (customer) VLAN id, outer_vlan the service tag. A third tag is kBadEthertype.
//   ARP  Ethernet/IPv4 ARP only (htype 1, ptype 0x0800); anything else is kBadIpHeader.
//   IPv4 version, IHL >= 5, header checksum (kBadIpChecksum; computed here unless the NIC already
//        verified it, see Ipv4Csum), total length <= frame. Options are
//        skipped, not interpreted: Baton acts on no IP option, policy on them belongs to ACL.
//        Fragments set is_fragment/frag_id; only the first one carries L4 (has_l4).
//   IPv6 extension headers hop-by-hop (first only, RFC 8200 4.1), routing, destination
//        options, fragment and AH, at most kMaxExtHeaders of them. Jumbograms (payload length
//        0) are not supported, because no Baton port has an MTU anywhere near 64 KiB.
//   TCP  data offset, options MSS, window scale (clamped to 14, RFC 7323 2.3), SACK-permitted,
//        timestamps; a known option with the wrong length or an option running past the header
//        is kBadL4Header.
//   UDP  length field between 8 and the IP payload (whole datagram for a first fragment).
//   ICMP echo request/reply are queries: sport = dport = identifier. Errors (v4: unreachable,
//        time exceeded, parameter problem; v6: also packet too big) must embed the offending IP
//        header plus 8 bytes of its L4 header (RFC 792, RFC 4443 2.4); the embedded tuple goes
//        to icmp.inner, else kBadL4Header.
//   Other protocols (GRE, ESP, SCTP...) parse with ports 0: has_l4 is true whenever the L4
//        fields are final, and false only for a later fragment (offset != 0).
//
// Not checked here: TCP/UDP/ICMP checksums (the NIC verifies them on RX, and a stage that
// rewrites a packet fixes them incrementally), TTL expiry (a routing decision, not a parse one).
#pragma once

#include <cstdint>

#include "dataplane/drop_reason.h"
#include "dataplane/packet_meta.h"

namespace baton {

// Upper bound on the IPv6 extension headers walked before a chain is called bad; real traffic
// carries at most two or three, and the bound keeps a hostile chain from costing more.
constexpr int kMaxExtHeaders = 8;

// What the receiving NIC says about an IPv4 header checksum (DPDK's RTE_MBUF_F_RX_IP_CKSUM_*
// flags, which every physical DPDK NIC sets when RTE_ETH_RX_OFFLOAD_IPV4_CKSUM is on): kUnknown
// has the parser compute it, kGood skips that, kBad is kBadIpChecksum without reading further.
enum class Ipv4Csum : uint8_t { kUnknown, kGood, kBad };

// Fills *m from the frame at data[0, len). Returns true if the packet is well formed enough to
// be classified; else sets *reason and returns false.
bool parse_packet(const uint8_t* data, uint32_t len, PacketMeta* m, DropReason* reason,
                  Ipv4Csum csum = Ipv4Csum::kUnknown);

}  // namespace baton
