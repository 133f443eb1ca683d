// SPDX-License-Identifier: Apache-2.0
//
// The L7 topology of tests/pipeline/l7_pipeline_test.cc, shared with baton-xlate-bench's l7new
// group (bench/xlate_bench.cc) so that the benchmark drives the very service and frames the
// test checks byte for byte: the configuration, the addresses and MACs on both sides, and the
// client's frames of one connection as a Linux client sends them (SYN with MSS, SACK,
// timestamps and window scale; the handshake's ACK; data at an offset of its stream).
//
// Topology: port 0 "outside" 203.0.113.1/24 (client 203.0.113.9), port 1 "inside" 10.1.0.1/24
// (backends 10.1.0.5 pool web, 10.1.0.6 pool api, 10.1.0.7 pool web). VIP 203.0.113.80:80 from
// local address 10.1.0.100; Host api.example and path /api/ go to pool api; sticky by cookie SID.
// More clients can sit behind 203.0.113.9 as a next hop (config_yaml's `routes`).
#pragma once

#include <cstdint>
#include <string>

#include "common/net_types.h"
#include "pktgen/packet_builder.h"

namespace baton::l7topo {

using pktgen::Bytes;
using pktgen::Pkt;

constexpr uint16_t kOut = 0, kIn = 1;
inline constexpr const char* kOutMac = "02:ba:70:00:00:01";  // port MACs without ports (dataplane.cc)
inline constexpr const char* kInMac = "02:ba:70:00:00:02";
inline constexpr const char* kClientMac = "02:00:00:00:09:09";
inline constexpr const char* kClient = "203.0.113.9";
inline constexpr const char* kVip = "203.0.113.80";
inline constexpr const char* kLocal = "10.1.0.100";
inline constexpr const char* kHostMac[] = {"02:00:00:00:01:05", "02:00:00:00:01:06", "02:00:00:00:01:07"};
inline constexpr const char* kHostIp[] = {"10.1.0.5", "10.1.0.6", "10.1.0.7"};
constexpr int kHosts = 3;
constexpr uint16_t kBackendPort = 8080;
constexpr uint32_t kMaxHead = 1024;

// The configuration (no instance line: each Dataplane needs its own). `routes` are extra lines
// under l3 (each "    - {prefix: ..., via: ..., port: ...}\n").
inline std::string config_yaml(uint32_t capacity, const std::string& routes = "") {
  return "mode: l3\n"
         "ports:\n"
         "  - {name: outside, device: null0, zone: outside}\n"
         "  - {name: inside, device: null1, zone: inside}\n"
         "zones:\n"
         "  - {name: outside, default: permit}\n"
         "  - {name: inside, default: permit}\n"
         "conntrack: {capacity: " + std::to_string(capacity) + "}\n"
         "migration: {enabled: false}\n"
         "l3:\n"
         "  addresses:\n"
         "    - {port: outside, address: 203.0.113.1/24}\n"
         "    - {port: inside, address: 10.1.0.1/24}\n" +
         (routes.empty() ? "" : "  routes:\n" + routes) +
         "lb:\n"
         "  pools:\n"
         "    - {name: web, backends: [{address: 10.1.0.5, port: 8080}, {address: 10.1.0.7, port: 8080}]}\n"
         "    - {name: api, backends: [{address: 10.1.0.6, port: 8080}]}\n"
         "  services:\n"
         "    - name: site\n"
         "      vip: 203.0.113.80\n"
         "      port: 80\n"
         "      mode: l7\n"
         "      local_addresses: [10.1.0.100]\n"
         "      pool: web\n"
         "      max_request_head: " + std::to_string(kMaxHead) + "\n"
         "      sticky: {method: cookie, name: SID}\n"
         "      rules:\n"
         "        - {host: api.example, pool: api}\n"
         "        - {path_prefix: /api/, pool: api}\n"
         "        - {header: {name: X-Canary, value: \"1\"}, pool: api}\n"
         "        - {cookie: {name: backend, value: api}, pool: api}\n";
}

inline Pkt from_client() { return Pkt().eth(kClientMac, kOutMac); }
inline Pkt to_client() { return Pkt().eth(kOutMac, kClientMac); }
inline Pkt from_host(int h) { return Pkt().eth(kHostMac[h], kInMac); }
inline Pkt to_host(int h) { return Pkt().eth(kInMac, kHostMac[h]); }

// The ARP requests that teach the router the client's and host h's MACs.
inline Bytes arp_from_client() {
  return Pkt().eth(kClientMac, "ff:ff:ff:ff:ff:ff").arp(1, kClientMac, kClient, "203.0.113.1").build();
}
inline Bytes arp_from_host(int h) {
  return Pkt().eth(kHostMac[h], "ff:ff:ff:ff:ff:ff").arp(1, kHostMac[h], kHostIp[h], "10.1.0.1").build();
}

// The backend host (index into kHostIp) of an address, or -1.
inline int host_of(const std::string& addr) {
  for (int h = 0; h < kHosts; h++)
    if (addr == kHostIp[h]) return h;
  return -1;
}

// What the client's side of one connection knows: its own numbers and what batond told it.
struct Client {
  std::string addr = kClient;
  uint16_t port = 40000;
  uint32_t isn = 1000;      // C
  uint32_t tsval = 5000;    // the client's TSval clock
  bool timestamps = true;
  uint32_t lb_isn = 0;      // L, read from the SYN-ACK
  uint32_t lb_tsval = 0;    // tl
  uint16_t window = 502;    // raw, under shift 7

  // The SYN: mss 1460, SACK, timestamps unless `timestamps` is false, window scale 7.
  Pkt syn() const {
    Pkt p = from_client().ipv4(addr, kVip).tcp(port, 80).seq(isn).flags(tcpflag::kSyn).win(64240).mss(1460).sack_perm().wscale(7);
    if (timestamps) p.ts(tsval, 0);
    return p;
  }
  // A segment at offset `at` of the client's stream that acknowledges `acked` bytes of batond's
  // (seq C+1+at, ack L+1+acked), no payload yet. seg(0, 0, kAck) completes the handshake.
  Pkt seg(uint32_t at, uint32_t acked, uint8_t flags) const {
    Pkt p = from_client().ipv4(addr, kVip).tcp(port, 80).seq(isn + 1 + at).ack(lb_isn + 1 + acked).flags(flags).win(window);
    if (timestamps) p.ts(tsval, lb_tsval);
    return p;
  }
  // The client's segment carrying `data` at offset `at` of its stream (ack L+1).
  Pkt data(const std::string& data, uint32_t at, uint8_t flags = tcpflag::kAck | tcpflag::kPsh) const {
    return seg(at, 0, flags).payload(data);
  }
};

}  // namespace baton::l7topo
