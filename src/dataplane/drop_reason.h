// SPDX-License-Identifier: Apache-2.0
//
// Every reason a packet can be dropped, declared once. The list gives the enum, the metric label
// (baton_drops_total{reason="..."}) and the API name, so they cannot drift apart.
#pragma once

#include <cstdint>

namespace baton {

#define BATON_FOREACH_DROP_REASON(X)                                          \
  X(kTruncated, "truncated")             /* header runs past the mbuf */      \
  X(kBadEthertype, "bad_ethertype")      /* not IPv4/IPv6/ARP/VLAN */         \
  X(kBadIpHeader, "bad_ip_header")       /* version, IHL, length fields */    \
  X(kBadIpChecksum, "bad_ip_checksum")                                        \
  X(kBadL4Header, "bad_l4_header")       /* TCP data offset, UDP length */    \
  X(kBadExtHeader, "bad_ext_header")     /* IPv6 extension chain */           \
  X(kFragment, "fragment")               /* non-first fragment, no flow */    \
  X(kTtlExceeded, "ttl_exceeded")                                             \
  X(kAclDeny, "acl_deny")                                                     \
  X(kProfileDeny, "profile_deny")        /* the VM's own profile rules */     \
  X(kQosExceeded, "qos_exceeded")        /* over the VM's profile rate */     \
  X(kHalfOpenLimit, "half_open_limit")   /* SYN over the VM's max_half_open */\
  X(kNoConnection, "no_connection")      /* mid-stream, no entry: no pickup */\
  X(kTcpInvalid, "tcp_invalid")          /* flags or state transition */      \
  X(kTcpOutOfWindow, "tcp_out_of_window")                                     \
  X(kTcpBadRst, "tcp_bad_rst")           /* RST with unacceptable seq */      \
  X(kTableFull, "table_full")                                                 \
  X(kIcmpNoFlow, "icmp_no_flow")         /* ICMP error for unknown flow */    \
  X(kFrozenOverflow, "frozen_overflow")  /* hold buffer of a frozen VM full */\
  X(kHandoffRingFull, "handoff_ring_full")                                    \
  X(kNoRoute, "no_route")                                                     \
  X(kTxFull, "tx_full")                                                       \
  X(kArpIgnored, "arp_ignored")          /* L3 mode: ARP not for us */        \
  X(kNotForUs, "not_for_us")             /* L3: not our MAC, tagged, bcast */\
  X(kNeighborMiss, "neighbor_miss")      /* L3: next hop not resolved yet */  \
  X(kIpv6Unrouted, "ipv6_unrouted")      /* L3: IPv6 is not routed */         \
  X(kLocalDelivery, "local_delivery")    /* L3: to our address, no stack */   \
  X(kNatNoMapping, "nat_no_mapping")     /* to a pool address, no mapping */  \
  X(kNatFiltered, "nat_filtered")        /* RFC 4787 filtering refused it */  \
  X(kNatPortsExhausted, "nat_ports_exhausted") /* no port/block for a host */ \
  X(kNatTableFull, "nat_table_full")     /* mapping or reply index full */    \
  X(kXlateConflict, "xlate_conflict")    /* reply tuple used by a live conn */\
  X(kLbNoBackend, "lb_no_backend")       /* no eligible backend, no backup */ \
  X(kXlateFragment, "xlate_fragment")    /* later fragment of translated flow*/\
  X(kL7BadCookie, "l7_bad_cookie")       /* L7 VIP: no conn, no valid cookie */\
  X(kL7Busy, "l7_busy")                  /* L7: no head buffer free (ACK) */  \
  X(kL7OutOfOrder, "l7_out_of_order")    /* L7 head segment after a gap */    \
  X(kL7BadChecksum, "l7_bad_checksum")   /* L7 head segment, bad TCP csum */  \
  X(kL7Held, "l7_held")                  /* L7 client data while connecting */\
  X(kL7BadSegment, "l7_bad_segment")     /* L7: unexpected or unsplicable seg*/

enum class DropReason : uint8_t {
#define BATON_DROP_ENUM(name, label) name,
  BATON_FOREACH_DROP_REASON(BATON_DROP_ENUM)
#undef BATON_DROP_ENUM
      kCount
};

inline const char* drop_reason_name(DropReason r) {
  static const char* const kNames[] = {
#define BATON_DROP_NAME(name, label) label,
      BATON_FOREACH_DROP_REASON(BATON_DROP_NAME)
#undef BATON_DROP_NAME
  };
  return kNames[static_cast<int>(r)];
}

constexpr int kDropReasonCount = static_cast<int>(DropReason::kCount);

}  // namespace baton
