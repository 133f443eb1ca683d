// SPDX-License-Identifier: Apache-2.0
//
// baton-pktgen: sends synthetic TCP conversations (pktgen/tcp_flowgen: handshake, data both
// ways, teardown, correct seq/ack) through a device under test and counts what comes back.
//
// Two DPDK ports: port 0 is the client side, port 1 the server side. Each client packet goes
// out of port 0 and is expected on port 1, each server packet the other way. Packets are sent
// one at a time in the conversation's order and each is waited for (bounded), so the device
// sees both directions in the order a real pair of endpoints would produce them; this is a
// correctness tool for strict stateful devices, not a rate generator.
//
//   baton-pktgen [EAL args] -- --flows N [--segments M] [--attack] [--timeout-ms T]
//
// --attack adds, per flow, a segment far outside the window after the handshake; a strict
// firewall must drop it (it is counted as "attacks_passed" if it comes through).
// Prints one JSON object: sent, received, late, lost, attacks_sent, attacks_passed, and the
// first lost packets (their index in the conversation script, direction and flags). A packet
// that comes through only after its wait expired is counted as late, not lost: the
// conversation goes on without it, as a strict device's state does not depend on it arriving.
// Exit 0 when every conversation packet came through and no attack did.
//
//   baton-pktgen [EAL args] -- --open --flows N [--clients C] [--timeout-ms T]
//
// --open only opens the connections, as fast as the device takes them, and leaves them open
// (the state a migration benchmark moves): every SYN in bursts, then every SYN|ACK, then every
// ACK, at most kWindow packets in flight. Clients are C addresses from 10.0.0.1 (default 64;
// flow i uses port 10000 + i / C). Prints flows, sent, received, lost and seconds; exit 0 when
// nothing was lost.
#include <rte_cycles.h>
#include <rte_eal.h>
#include <rte_ethdev.h>
#include <rte_mbuf.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

#include "pktgen/tcp_flowgen.h"

namespace {

using baton::pktgen::GenPacket;
using baton::pktgen::Side;

struct Options {
  uint32_t flows = 16;
  uint32_t segments = 4;
  bool attack = false;
  bool open = false;
  uint32_t clients = 64;
  uint32_t timeout_ms = 1000;
};

bool parse_options(int argc, char** argv, Options* o) {
  for (int i = 0; i < argc; i++) {
    std::string a = argv[i];
    auto num = [&](uint32_t* v) {
      if (i + 1 >= argc) return false;
      char* end = nullptr;
      unsigned long x = std::strtoul(argv[++i], &end, 10);
      if (*end || x == 0) return false;
      *v = static_cast<uint32_t>(x);
      return true;
    };
    if (a == "--flows") {
      if (!num(&o->flows)) return false;
    } else if (a == "--segments") {
      if (!num(&o->segments)) return false;
    } else if (a == "--timeout-ms") {
      if (!num(&o->timeout_ms)) return false;
    } else if (a == "--attack") {
      o->attack = true;
    } else if (a == "--open") {
      o->open = true;
    } else if (a == "--clients") {
      if (!num(&o->clients)) return false;
    } else {
      return false;
    }
  }
  return true;
}

bool port_init(uint16_t port, rte_mempool* pool) {
  rte_eth_conf conf{};
  if (rte_eth_dev_configure(port, 1, 1, &conf) != 0) return false;
  if (rte_eth_rx_queue_setup(port, 0, 512, rte_eth_dev_socket_id(port), nullptr, pool) != 0)
    return false;
  if (rte_eth_tx_queue_setup(port, 0, 512, rte_eth_dev_socket_id(port), nullptr) != 0)
    return false;
  if (rte_eth_dev_start(port) != 0) return false;
  rte_eth_promiscuous_enable(port);
  return true;
}

// Before the first packet: both links up (a memif client is up only once the server, batond,
// answered its connect) and one receive poll on each port. A memif client hands the server
// its receive buffers (the server-to-client ring's head) only from inside rx_burst, so until
// it has polled once the server has no slot to transmit into and batond drops the first
// forwarded packet as tx_full.
bool wait_links_up_and_poll(uint32_t timeout_ms) {
  const uint64_t deadline = rte_get_tsc_cycles() + rte_get_tsc_hz() / 1000 * timeout_ms;
  for (;;) {
    bool all_up = true;
    for (uint16_t port = 0; port < 2; port++) {
      rte_eth_link link{};
      if (rte_eth_link_get_nowait(port, &link) != 0 || link.link_status != RTE_ETH_LINK_UP)
        all_up = false;
    }
    if (all_up) {
      for (uint16_t port = 0; port < 2; port++) {
        rte_mbuf* pkts[32];
        uint16_t n = rte_eth_rx_burst(port, 0, pkts, 32);
        rte_pktmbuf_free_bulk(pkts, n);
      }
      return true;
    }
    if (rte_get_tsc_cycles() >= deadline) return false;
    rte_delay_us_sleep(10 * 1000);
  }
}

bool send_one(rte_mempool* pool, uint16_t port, const std::vector<uint8_t>& bytes) {
  rte_mbuf* m = rte_pktmbuf_alloc(pool);
  if (!m) return false;
  char* p = rte_pktmbuf_append(m, static_cast<uint16_t>(bytes.size()));
  if (!p) {
    rte_pktmbuf_free(m);
    return false;
  }
  std::memcpy(p, bytes.data(), bytes.size());
  for (int tries = 0; tries < 1000; tries++)
    if (rte_eth_tx_burst(port, 0, &m, 1) == 1) return true;
  rte_pktmbuf_free(m);
  return false;
}

bool same(const rte_mbuf* m, const std::vector<uint8_t>& bytes) {
  return m->data_len == bytes.size() &&
         std::memcmp(rte_pktmbuf_mtod(m, const void*), bytes.data(), bytes.size()) == 0;
}

// Packets whose wait expired; one that shows up later moves from here to the late count.
struct Missing {
  std::vector<const GenPacket*> packets;
  uint64_t late = 0;

  void arrived(const rte_mbuf* m) {
    for (size_t i = 0; i < packets.size(); i++)
      if (same(m, packets[i]->bytes)) {
        packets.erase(packets.begin() + static_cast<long>(i));
        late++;
        return;
      }
  }
};

// Waits for a frame equal to `bytes` on port; other frames (ARP, late ones) are discarded.
bool expect(uint16_t port, const std::vector<uint8_t>& bytes, uint32_t timeout_ms,
            Missing* missing) {
  const uint64_t deadline = rte_get_tsc_cycles() + rte_get_tsc_hz() / 1000 * timeout_ms;
  rte_mbuf* pkts[32];
  while (rte_get_tsc_cycles() < deadline) {
    uint16_t n = rte_eth_rx_burst(port, 0, pkts, 32);
    bool found = false;
    for (uint16_t i = 0; i < n; i++) {
      rte_mbuf* m = pkts[i];
      if (!found && same(m, bytes))
        found = true;
      else
        missing->arrived(m);
      rte_pktmbuf_free(m);
    }
    if (found) return true;
    if (!n) rte_delay_us_sleep(20);
  }
  return false;
}

// --open: one phase of the handshakes (packets all from one side) in bursts, at most kWindow in
// flight; returns how many came out of the other port.
uint64_t send_phase(rte_mempool* pool, const std::vector<const GenPacket*>& phase, uint16_t out,
                    uint32_t timeout_ms, uint64_t* send_failed) {
  constexpr uint32_t kBurst = 32, kWindow = 256;
  const uint16_t in = static_cast<uint16_t>(1 - out);
  uint64_t sent = 0, received = 0;
  rte_mbuf* pkts[kBurst];
  auto drain = [&] {
    const uint16_t n = rte_eth_rx_burst(in, 0, pkts, kBurst);
    received += n;
    rte_pktmbuf_free_bulk(pkts, n);
    return n;
  };
  // Drains until at most `left` packets are in flight or timeout_ms passes; true if they are.
  auto wait_for = [&](uint64_t left) {
    const uint64_t deadline = rte_get_tsc_cycles() + rte_get_tsc_hz() / 1000 * timeout_ms;
    while (sent - received > left && rte_get_tsc_cycles() < deadline)
      if (!drain()) rte_pause();
    return sent - received <= left;
  };
  for (size_t i = 0; i < phase.size();) {
    if (sent - received >= kWindow && !wait_for(kWindow / 2 - 1))
      break;  // the device stopped answering
    const uint32_t n = static_cast<uint32_t>(std::min<size_t>(kBurst, phase.size() - i));
    if (rte_pktmbuf_alloc_bulk(pool, pkts, n) != 0) {
      drain();
      continue;
    }
    for (uint32_t k = 0; k < n; k++) {
      const auto& b = phase[i + k]->bytes;
      std::memcpy(rte_pktmbuf_append(pkts[k], static_cast<uint16_t>(b.size())), b.data(),
                  b.size());
    }
    uint16_t done = 0;
    for (int tries = 0; done < n && tries < 1000; tries++) {
      done = static_cast<uint16_t>(done + rte_eth_tx_burst(out, 0, pkts + done, n - done));
      drain();
    }
    if (done < n) {
      rte_pktmbuf_free_bulk(pkts + done, n - done);
      *send_failed += n - done;
    }
    sent += done;
    i += n;
  }
  wait_for(0);
  return received;
}

}  // namespace

int main(int argc, char** argv) {
  int used = rte_eal_init(argc, argv);
  if (used < 0) {
    std::fprintf(stderr, "baton-pktgen: EAL init failed\n");
    return 2;
  }
  Options opt;
  if (!parse_options(argc - used - 1, argv + used + 1, &opt)) {
    std::fprintf(stderr,
                 "usage: baton-pktgen [EAL args] -- --flows N [--segments M] [--attack] "
                 "[--timeout-ms T]\n"
                 "       baton-pktgen [EAL args] -- --open --flows N [--clients C] "
                 "[--timeout-ms T]\n");
    return 2;
  }
  if (rte_eth_dev_count_avail() < 2) {
    std::fprintf(stderr, "baton-pktgen: needs two ports (client side, server side)\n");
    return 2;
  }
  rte_mempool* pool = rte_pktmbuf_pool_create("pktgen", 4095, 64, 0,
                                              RTE_MBUF_DEFAULT_BUF_SIZE, rte_socket_id());
  if (!pool || !port_init(0, pool) || !port_init(1, pool)) {
    std::fprintf(stderr, "baton-pktgen: port setup failed\n");
    return 2;
  }
  if (!wait_links_up_and_poll(10 * 1000)) {
    std::fprintf(stderr, "baton-pktgen: the ports' links did not come up within 10 s\n");
    return 2;
  }
  baton::pktgen::FlowgenConfig cfg;
  cfg.flows = opt.flows;
  cfg.data_segments = opt.segments;
  cfg.clients = opt.clients;
  if (opt.open && 10000 + (opt.flows - 1) / opt.clients > 65535) {
    std::fprintf(stderr, "baton-pktgen: %u flows need more than %u clients (ports run out)\n",
                 opt.flows, opt.clients);
    return 2;
  }
  baton::pktgen::TcpFlowgen gen(cfg);

  if (opt.open) {
    const std::vector<GenPacket> hs = gen.handshakes();
    std::vector<const GenPacket*> phase[3];  // SYN, SYN|ACK, ACK
    for (const GenPacket& g : hs)
      phase[(g.flags & baton::tcpflag::kSyn) ? ((g.flags & baton::tcpflag::kAck) ? 1 : 0) : 2]
          .push_back(&g);
    uint64_t sent = 0, received = 0, send_failed = 0;
    const uint64_t t0 = rte_get_tsc_cycles();
    for (int k = 0; k < 3; k++) {
      received += send_phase(pool, phase[k], k == 1 ? 1 : 0, opt.timeout_ms, &send_failed);
      sent += phase[k].size();
    }
    const double s = static_cast<double>(rte_get_tsc_cycles() - t0) / rte_get_tsc_hz();
    std::printf("{\"flows\": %u, \"sent\": %lu, \"received\": %lu, \"lost\": %lu, "
                "\"send_failed\": %lu, \"seconds\": %.3f}\n",
                opt.flows, sent, received, sent - received, send_failed, s);
    rte_eth_dev_stop(0);
    rte_eth_dev_stop(1);
    rte_eal_cleanup();
    return received == sent ? 0 : 1;
  }

  // Handshakes first, then (optionally) one attack per flow, then data and teardown.
  std::vector<GenPacket> script = gen.handshakes();
  std::vector<GenPacket> attacks;
  if (opt.attack)
    for (uint32_t f = 0; f < gen.flow_count(); f++)
      attacks.push_back(gen.wrong_seq(f, Side::kClient, 1 << 30,
                                      baton::tcpflag::kAck | baton::tcpflag::kPsh, 10));
  std::vector<GenPacket> rest;
  GenPacket p;
  while (gen.next(&p)) rest.push_back(p);

  uint64_t sent = 0, received = 0, attacks_passed = 0, send_failed = 0;
  Missing missing;
  std::vector<const GenPacket*> order;  // conversation index of each packet, for the report
  auto run = [&](const GenPacket& g, bool is_attack) {
    uint16_t out = g.from == Side::kClient ? 0 : 1;
    if (!send_one(pool, out, g.bytes)) {
      send_failed++;
      return;
    }
    bool back = expect(static_cast<uint16_t>(1 - out), g.bytes, is_attack ? 50 : opt.timeout_ms,
                       &missing);
    if (is_attack) {
      attacks_passed += back;
    } else {
      sent++;
      order.push_back(&g);
      if (back)
        received++;
      else
        missing.packets.push_back(&g);
    }
  };
  for (const GenPacket& g : script) run(g, false);
  for (const GenPacket& g : attacks) run(g, true);
  for (const GenPacket& g : rest) run(g, false);
  // A last look for stragglers before judging.
  for (uint16_t port = 0; port < 2; port++) expect(port, {}, 100, &missing);

  std::string lost_list;
  for (size_t i = 0; i < missing.packets.size() && i < 8; i++) {
    const GenPacket* g = missing.packets[i];
    size_t index = 0;
    while (order[index] != g) index++;
    char item[128];
    std::snprintf(item, sizeof(item),
                  "%s{\"index\": %zu, \"flow\": %u, \"from\": \"%s\", \"tcp_flags\": %u}",
                  i ? ", " : "", index, g->flow, g->from == Side::kClient ? "client" : "server",
                  g->flags);
    lost_list += item;
  }
  const uint64_t lost = missing.packets.size();
  std::printf(
      "{\"flows\": %u, \"sent\": %lu, \"received\": %lu, \"late\": %lu, \"lost\": %lu, "
      "\"send_failed\": %lu, \"attacks_sent\": %zu, \"attacks_passed\": %lu, "
      "\"first_lost\": [%s]}\n",
      opt.flows, sent, received, missing.late, lost, send_failed, attacks.size(),
      attacks_passed, lost_list.c_str());
  rte_eth_dev_stop(0);
  rte_eth_dev_stop(1);
  rte_eal_cleanup();
  return (lost == 0 && send_failed == 0 && attacks_passed == 0) ? 0 : 1;
}
