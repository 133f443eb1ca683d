// SPDX-License-Identifier: Apache-2.0
//
// Per-worker counters: plain fields on the worker's own cache lines, written only by that worker
// and summed by the control core on read (a torn 64-bit read cannot happen on x86-64, and a
// counter read a few packets late is fine). Declared once in a list that also gives the metric
// names, so struct, metrics and API cannot drift.
#pragma once

#include <array>
#include <cstdint>

#include "dataplane/drop_reason.h"

namespace baton {

// name, metric suffix (baton_<suffix>), help
#define BATON_FOREACH_WORKER_COUNTER(X)                                                   \
  X(rx_packets, "worker_rx_packets_total", "Packets received by the worker")              \
  X(tx_packets, "worker_tx_packets_total", "Packets transmitted by the worker")           \
  X(dropped, "worker_dropped_packets_total", "Packets dropped by the worker, all reasons") \
  X(conn_created, "conn_created_total", "Connections created")                            \
  X(conn_translated, "conn_translated_total", "Connections created with NAT/LB translation") \
  X(xlated_packets, "translated_packets_total", "Packets rewritten by NAT/LB")            \
  X(conn_expired, "conn_expired_total", "Connections removed by aging")                   \
  X(conn_closed, "conn_closed_total", "Connections removed after close")                  \
  X(handoff_out, "handoff_out_packets_total", "Packets handed to the owning worker")      \
  X(held_packets, "held_packets_total", "Packets held for a frozen VM")                    \
  X(local_in, "worker_local_in_packets_total", "Frames for Baton itself, consumed (ARP)")  \
  X(local_out, "worker_local_out_packets_total", "Frames Baton originated (ARP requests)") \
  X(polls, "worker_polls_total", "RX polls")                                              \
  X(busy_polls, "worker_busy_polls_total", "RX polls that returned packets")              \
  X(busy_cycles, "worker_busy_cycles_total", "TSC cycles spent on polls with work")       \
  X(total_cycles, "worker_cycles_total", "TSC cycles in the poll loop")                   \
  X(l7_syn_cookies, "l7_syn_cookies_total", "SYN-ACKs with a SYN cookie sent for L7 VIPs (no state kept)") \
  X(l7_accepted, "l7_accepted_total", "L7 connections created by a valid cookie ACK")     \
  X(l7_heads, "l7_heads_total", "L7 request heads read and routed")                       \
  X(l7_splices, "l7_splices_total", "L7 connections spliced to a backend")                \
  X(l7_head_too_large, "l7_head_too_large_total", "L7 request heads over max_request_head, answered 400") \
  X(l7_head_malformed, "l7_head_malformed_total", "L7 request heads malformed or unsupported, answered 400") \
  X(l7_no_backend, "l7_no_backend_total", "L7 requests answered 503: no backend in the routed pool") \
  X(l7_head_timeouts, "l7_head_timeouts_total", "L7 connections reset: head or backend handshake not done in time") \
  X(l7_cookie_secret_rotations, "l7_cookie_secret_rotations_total", "SYN-cookie secrets replaced (L7Proxy::kSecretLifetimeS)") \
  X(l7_resets, "l7_resets_total", "L7 connections reset by batond (backend refused, splice impossible, policy)")

constexpr int kConnKindUdp = 10, kConnKindIcmp = 11, kConnKindOther = 12, kConnKinds = 13;
inline int conn_kind(uint8_t proto, uint8_t tcp_state) {
  switch (proto) {
    case 6: return tcp_state < 10 ? tcp_state : 0;
    case 17: return kConnKindUdp;
    case 1:
    case 58: return kConnKindIcmp;
    default: return kConnKindOther;
  }
}

struct alignas(64) WorkerStats {
#define BATON_COUNTER_FIELD(name, metric, help) uint64_t name = 0;
  BATON_FOREACH_WORKER_COUNTER(BATON_COUNTER_FIELD)
#undef BATON_COUNTER_FIELD
  std::array<uint64_t, kDropReasonCount> drops{};
  // Live connections by kind/state (a gauge kept by the owner): TCP states by TcpState value,
  // then UDP, ICMP, other.
  std::array<int64_t, kConnKinds> conns{};
};

}  // namespace baton
