// SPDX-License-Identifier: Apache-2.0
//
// Everything the workers share, built once from the config and torn down in reverse: the mbuf
// pool, the ports, the VM table, the compiled ACL, one connection-table shard per worker, the
// RCU variable that tells the control core when every worker has moved past a point.
//
// Threads that may read the tables besides the workers (control API, migration sessions) take
// a ReaderGuard: it gives them an RCU reader id and keeps them online while they read, so that
// a slot they are reading is never reused under them.
#pragma once

#include <rte_mempool.h>
#include <rte_rcu_qsbr.h>

#include <atomic>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "config/config.h"
#include "conntrack/conn_table.h"
#include "conntrack/tcp_tracker.h"
#include "dataplane/acl.h"
#include "dataplane/ports.h"
#include "nat/conn_xlate.h"
#include "dataplane/router.h"
#include "dataplane/translator.h"
#include "dataplane/vm_table.h"
#include "dataplane/worker.h"

namespace baton {

class Dataplane {
 public:
  static constexpr uint32_t kControlReaders = 16;

  // Builds everything after rte_eal_init. With `with_ports` false (tests, benchmarks) no port
  // is touched and packets are driven through Worker::process_burst.
  static std::unique_ptr<Dataplane> create(const Config& cfg, bool with_ports, std::string* err);
  ~Dataplane();

  // Launches workers on the worker lcores (the main lcore stays with the control side).
  bool start(std::string* err);
  void stop();  // stops polling, waits for workers, drains TX
  bool running() const { return running_.load(std::memory_order_relaxed); }

  const Config& config() const { return cfg_; }
  Ports& ports() { return ports_; }
  VmTable& vms() { return *vms_; }
  const Acl& acl() const { return *acl_; }
  const TcpTracker& tracker() const { return tracker_; }
  // Mode l3 only (nullptr in l2). Read side for anyone; worker 0 alone writes its neighbours.
  const Router* router() const { return router_.get(); }
  rte_mempool* pool() { return pool_; }
  std::vector<std::unique_ptr<Worker>>& workers() { return workers_; }
  ConnTable& shard(uint16_t w) { return *shards_[w]; }
  // NAT/LB: the decision stage, and each shard's translation records (nullptr when the config
  // translates nothing).
  Translator* translator() { return translator_.get(); }
  ConnXlateTable* xlate(uint16_t w) { return xlates_.empty() ? nullptr : xlates_[w].get(); }
  uint16_t worker_count() const { return static_cast<uint16_t>(workers_.size()); }
  uint16_t owner_of(const FlowKey& k) const { return k.owner(worker_count()); }
  int port_index(uint16_t port_id) const { return port_index_[port_id]; }
  uint32_t capacity_per_worker() const { return capacity_per_worker_; }
  // What the workers forwarded of VM `vm` since it got its id here (vm_traffic.h); with the
  // VM's slot's `carried`, its lifetime traffic.
  VmTraffic vm_traffic(uint16_t vm) const;
  // The VM's half-open TCP connections opened in direction `side`, over all workers (a worker
  // asks for a new connection of a VM with max_half_open; a sum a few packets late is fine).
  uint32_t vm_half_open(uint16_t vm, VmSide side) const;

  // Blocks until every worker has passed a quiescent point after this call: anything a
  // worker did before is visible, and any packet it reads after sees what was stored before.
  void grace_period();

  class ReaderGuard {
   public:
    explicit ReaderGuard(Dataplane& dp);
    ~ReaderGuard();
    ReaderGuard(const ReaderGuard&) = delete;
    ReaderGuard& operator=(const ReaderGuard&) = delete;

   private:
    Dataplane& dp_;
    unsigned id_;
  };

  // Seconds since start on the TSC clock; workers read it once per loop.
  uint32_t now_s() const;

 private:
  friend class Worker;
  explicit Dataplane(const Config& cfg) : cfg_(cfg), tracker_(cfg.conntrack.timeouts) {}
  unsigned acquire_reader_id();
  void release_reader_id(unsigned id);

  Config cfg_;
  rte_mempool* pool_ = nullptr;
  Ports ports_;
  bool with_ports_ = false;
  std::unique_ptr<VmTable> vms_;
  std::unique_ptr<Acl> acl_;
  TcpTracker tracker_;
  std::unique_ptr<Router> router_;
  rte_rcu_qsbr* rcu_ = nullptr;
  std::vector<std::unique_ptr<ConnTable>> shards_;
  std::unique_ptr<Translator> translator_;
  std::vector<std::unique_ptr<ConnXlateTable>> xlates_;
  std::vector<std::unique_ptr<Worker>> workers_;
  std::vector<int> port_index_;
  uint32_t capacity_per_worker_ = 0;
  std::atomic<bool> running_{false};
  std::mutex readers_mu_;
  std::vector<bool> reader_used_;
  uint64_t tsc_start_ = 0, tsc_hz_ = 1;
};

}  // namespace baton
