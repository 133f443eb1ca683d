// SPDX-License-Identifier: Apache-2.0
#include "dataplane/ports.h"

#include <rte_errno.h>

#include <algorithm>

#include "common/log.h"

namespace baton {
namespace {

bool is_pci_address(const std::string& d) {
  // DDDD:BB:DD.F or BB:DD.F
  return !d.empty() && d.find("net_") != 0 && std::count(d.begin(), d.end(), ':') >= 1 &&
         d.find('.') != std::string::npos && d.find(',') == std::string::npos;
}

std::string device_name(const std::string& d) { return d.substr(0, d.find(',')); }

// Symmetric Toeplitz key (0x6d5a repeated): both directions of a flow get the same RSS hash,
// so on NICs with RSS most packets already arrive at their owner and skip the handoff ring.
uint8_t kSymmetricRssKey[40] = {
    0x6d, 0x5a, 0x6d, 0x5a, 0x6d, 0x5a, 0x6d, 0x5a, 0x6d, 0x5a, 0x6d, 0x5a, 0x6d, 0x5a,
    0x6d, 0x5a, 0x6d, 0x5a, 0x6d, 0x5a, 0x6d, 0x5a, 0x6d, 0x5a, 0x6d, 0x5a, 0x6d, 0x5a,
    0x6d, 0x5a, 0x6d, 0x5a, 0x6d, 0x5a, 0x6d, 0x5a, 0x6d, 0x5a, 0x6d, 0x5a};

}  // namespace

std::vector<std::string> Ports::eal_args(const Config& cfg) {
  std::vector<std::string> args;
  bool any_pci = false;
  for (const PortConfig& p : cfg.ports) {
    if (is_pci_address(p.device)) {
      args.push_back("-a");
      args.push_back(p.device);
      any_pci = true;
      continue;
    }
    std::string dev = p.device;
    if (dev.rfind("net_af_packet", 0) == 0) {
      if (dev.find("qpairs=") == std::string::npos) dev += ",qpairs=" + std::to_string(cfg.workers);
      // The kernel drops what does not fit the socket's ring while a worker sleeps or is
      // preempted by the endpoints on a small machine: give it room for bursts.
      if (dev.find("framecnt=") == std::string::npos) dev += ",framecnt=4096";
    }
    args.push_back("--vdev=" + dev);
  }
  if (!any_pci) args.push_back("--no-pci");
  return args;
}

bool Ports::init(const Config& cfg, rte_mempool* pool, std::string* err) {
  for (size_t i = 0; i < cfg.ports.size(); i++) {
    const PortConfig& pc = cfg.ports[i];
    Port p;
    p.name = pc.name;
    p.device = pc.device;
    p.zone = pc.zone;
    for (size_t z = 0; z < cfg.zones.size(); z++)
      if (cfg.zones[z].name == pc.zone) p.zone_id = static_cast<uint8_t>(z);
    if (rte_eth_dev_get_port_by_name(device_name(pc.device).c_str(), &p.port_id) != 0) {
      *err = "port '" + pc.name + "': device '" + pc.device + "' not found by DPDK";
      stop();
      return false;
    }
    rte_eth_dev_info info;
    if (int rc = rte_eth_dev_info_get(p.port_id, &info); rc != 0) {
      *err = "port '" + pc.name + "': cannot get device info: " + rte_strerror(-rc);
      stop();
      return false;
    }
    p.rx_queues = std::min<uint16_t>(cfg.workers, std::max<uint16_t>(info.max_rx_queues, 1));
    p.tx_queues = std::min<uint16_t>(cfg.workers, std::max<uint16_t>(info.max_tx_queues, 1));
    p.shared_tx = p.tx_queues < cfg.workers;
    p.tx_locks.resize(p.tx_queues);
    for (auto& l : p.tx_locks) rte_spinlock_init(&l);

    rte_eth_conf conf{};
    if (p.rx_queues > 1 && info.flow_type_rss_offloads) {
      conf.rxmode.mq_mode = RTE_ETH_MQ_RX_RSS;
      conf.rx_adv_conf.rss_conf.rss_key = kSymmetricRssKey;
      conf.rx_adv_conf.rss_conf.rss_key_len = sizeof kSymmetricRssKey;
      conf.rx_adv_conf.rss_conf.rss_hf = (RTE_ETH_RSS_IP) & info.flow_type_rss_offloads;
    }
    // The NIC verifies IPv4 header checksums where it can; the parser then skips its own
    // (parse_packet's Ipv4Csum). Virtual devices mostly cannot, and report "unknown".
    conf.rxmode.offloads = RTE_ETH_RX_OFFLOAD_IPV4_CKSUM & info.rx_offload_capa;
    int rc = rte_eth_dev_configure(p.port_id, p.rx_queues, p.tx_queues, &conf);
    if (rc != 0) {
      *err = "port '" + pc.name + "': configure failed: " + rte_strerror(-rc);
      stop();
      return false;
    }
    uint16_t rxd = pc.rx_desc, txd = pc.tx_desc;
    rte_eth_dev_adjust_nb_rx_tx_desc(p.port_id, &rxd, &txd);
    int socket = rte_eth_dev_socket_id(p.port_id);
    for (uint16_t q = 0; q < p.rx_queues; q++) {
      rc = rte_eth_rx_queue_setup(p.port_id, q, rxd, socket, nullptr, pool);
      if (rc != 0) {
        *err = "port '" + pc.name + "': rx queue setup failed: " + rte_strerror(-rc);
        stop();
        return false;
      }
    }
    for (uint16_t q = 0; q < p.tx_queues; q++) {
      rc = rte_eth_tx_queue_setup(p.port_id, q, txd, socket, nullptr);
      if (rc != 0) {
        *err = "port '" + pc.name + "': tx queue setup failed: " + rte_strerror(-rc);
        stop();
        return false;
      }
    }
    if ((rc = rte_eth_dev_start(p.port_id)) != 0) {
      *err = "port '" + pc.name + "': start failed: " + rte_strerror(-rc);
      stop();
      return false;
    }
    // A bump in the wire must see every frame, whatever its destination MAC.
    rte_eth_promiscuous_enable(p.port_id);
    rte_eth_macaddr_get(p.port_id, &p.mac);
    BLOG_INFO("ports", "port %s (%s) id=%u zone=%s rxq=%u txq=%u%s", p.name.c_str(),
              p.device.c_str(), p.port_id, p.zone.c_str(), p.rx_queues, p.tx_queues,
              p.shared_tx ? " (shared tx)" : "");
    ports_.push_back(std::move(p));
  }
  return true;
}

void Ports::stop() {
  for (Port& p : ports_) {
    rte_eth_dev_stop(p.port_id);
    rte_eth_dev_close(p.port_id);
  }
  ports_.clear();
}

PortCounters Ports::counters(size_t index) const {
  PortCounters c;
  const Port& p = ports_.at(index);
  rte_eth_stats s{};
  if (rte_eth_stats_get(p.port_id, &s) != 0) return c;
  c.rx_packets = s.ipackets;
  c.rx_bytes = s.ibytes;
  c.tx_packets = s.opackets;
  c.tx_bytes = s.obytes;
  c.rx_errors = s.ierrors;
  c.tx_errors = s.oerrors;
  c.rx_missed = s.imissed;
  c.rx_nombuf = s.rx_nombuf;
  for (uint16_t q = 0; q < p.rx_queues && q < RTE_ETHDEV_QUEUE_STAT_CNTRS; q++)
    c.q_rx_packets.push_back(s.q_ipackets[q]);
  for (uint16_t q = 0; q < p.tx_queues && q < RTE_ETHDEV_QUEUE_STAT_CNTRS; q++)
    c.q_tx_packets.push_back(s.q_opackets[q]);
  return c;
}

}  // namespace baton
