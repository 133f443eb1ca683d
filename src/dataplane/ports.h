// SPDX-License-Identifier: Apache-2.0
//
// DPDK ports as the config names them. Any ethdev works: a PCI address is passed to EAL as an
// allow-list entry, anything else as a --vdev string (net_af_packet, net_af_xdp, net_tap,
// net_memif, net_pcap, net_ring, ...). Each port gets one RX/TX queue pair per worker when the
// device has that many; a device with fewer TX queues than workers shares a queue under a
// spinlock (only such devices pay it), and workers beyond its RX queues simply do not poll it.
#pragma once

#include <rte_ethdev.h>
#include <rte_mempool.h>
#include <rte_spinlock.h>

#include <cstdint>
#include <string>
#include <vector>

#include "config/config.h"

namespace baton {

struct PortCounters {
  uint64_t rx_packets = 0, rx_bytes = 0, tx_packets = 0, tx_bytes = 0;
  uint64_t rx_errors = 0, tx_errors = 0, rx_missed = 0, rx_nombuf = 0;
  std::vector<uint64_t> q_rx_packets, q_tx_packets;
};

struct Port {
  std::string name, device, zone;
  uint8_t zone_id = 0;
  uint16_t port_id = 0;
  uint16_t rx_queues = 0, tx_queues = 0;
  rte_ether_addr mac{};
  // One lock per TX queue, used only when tx_queues < workers.
  std::vector<rte_spinlock_t> tx_locks;
  bool shared_tx = false;
};

class Ports {
 public:
  // EAL arguments this port list needs (--vdev / -a), before rte_eal_init. The number of
  // af_packet queue pairs follows the worker count unless the device string sets qpairs.
  static std::vector<std::string> eal_args(const Config& cfg);

  // After rte_eal_init: finds, configures and starts every port. Fails with a reason naming
  // the port on any error, after stopping the ports it had started.
  bool init(const Config& cfg, rte_mempool* pool, std::string* err);
  void stop();

  std::vector<Port>& all() { return ports_; }
  const std::vector<Port>& all() const { return ports_; }
  PortCounters counters(size_t index) const;

 private:
  std::vector<Port> ports_;
};

}  // namespace baton
