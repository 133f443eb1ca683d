// SPDX-License-Identifier: Apache-2.0
#include "dataplane/dataplane.h"

#include <rte_cycles.h>
#include <rte_errno.h>
#include <rte_launch.h>
#include <rte_lcore.h>
#include <rte_malloc.h>

#include <cstring>

#include "common/log.h"
#include "conntrack/age_class.h"
#include "conntrack/conn_table.h"

namespace baton {
namespace {

int worker_main(void* arg) { return static_cast<Worker*>(arg)->run(); }

}  // namespace

std::unique_ptr<Dataplane> Dataplane::create(const Config& cfg, bool with_ports,
                                             std::string* err) {
  std::unique_ptr<Dataplane> dp(new Dataplane(cfg));
  dp->with_ports_ = with_ports;
  dp->tsc_start_ = rte_get_tsc_cycles();
  dp->tsc_hz_ = rte_get_tsc_hz();
  const uint16_t workers = cfg.workers;
  if (workers > kMaxWorkers) {
    *err = "too many workers";
    return nullptr;
  }

  // mbufs: every RX/TX descriptor, per-worker staging and rings, the hold buffers, slack.
  uint32_t ports = static_cast<uint32_t>(cfg.ports.size());
  uint32_t nb_mbufs = ports * workers * 2048u + workers * 4096u + cfg.migration.hold_packets * 2u +
                      8192u;
  char name[RTE_MEMPOOL_NAMESIZE];
  std::snprintf(name, sizeof name, "mbuf_%s", cfg.instance.substr(0, 16).c_str());
  dp->pool_ = rte_pktmbuf_pool_create(name, nb_mbufs, 256, 0, RTE_MBUF_DEFAULT_BUF_SIZE,
                                      SOCKET_ID_ANY);
  if (!dp->pool_) {
    *err = std::string("cannot create mbuf pool: ") + rte_strerror(rte_errno);
    return nullptr;
  }

  dp->vms_ = VmTable::create(cfg.vms, err);
  if (!dp->vms_) return nullptr;
  dp->acl_ = Acl::build(cfg.acl, cfg.zones, err);
  if (!dp->acl_) return nullptr;

  unsigned threads = workers + kControlReaders;
  size_t sz = rte_rcu_qsbr_get_memsize(threads);
  dp->rcu_ = static_cast<rte_rcu_qsbr*>(rte_zmalloc("rcu", sz, RTE_CACHE_LINE_SIZE));
  if (!dp->rcu_ || rte_rcu_qsbr_init(dp->rcu_, threads) != 0) {
    *err = "cannot create RCU variable";
    return nullptr;
  }
  dp->reader_used_.assign(kControlReaders, false);

  dp->translator_ = Translator::create(cfg, workers, dp->rcu_, err);
  if (!dp->translator_) return nullptr;
  if (LoadBalancer* lb = dp->translator_->lb()) {
    Dataplane* self = dp.get();
    lb->set_clock([self] { return self->now_s(); });
  }

  dp->capacity_per_worker_ = std::max<uint32_t>(1, (cfg.conntrack.capacity + workers - 1) / workers);
  const uint32_t v6_per_worker = (cfg.conntrack.v6_capacity() + workers - 1) / workers;
  static std::atomic<int> seq{0};
  int n = seq++;
  for (uint16_t w = 0; w < workers; w++) {
    ConnTable::Params p;
    p.name = "ct" + std::to_string(n) + "_" + std::to_string(w);
    p.capacity = dp->capacity_per_worker_;
    p.capacity_v6 = v6_per_worker;
    p.max_vms = kMaxVms - 1;
    p.rcu = dp->rcu_;
    p.age_classes = kAgeClassCount;
    p.accounting = cfg.conntrack.accounting;
    if (dp->translator_->enabled()) p.ext_bytes = sizeof(XlateRewrite);
    auto t = ConnTable::create(p, err);
    if (!t) return nullptr;
    dp->shards_.push_back(std::move(t));
  }

  if (dp->translator_->enabled()) {
    for (uint16_t w = 0; w < workers; w++) {
      auto x = ConnXlateTable::create(std::to_string(n) + "_" + std::to_string(w),
                                      *dp->shards_[w], dp->capacity_per_worker_, SOCKET_ID_ANY,
                                      err);
      if (!x) return nullptr;
      dp->xlates_.push_back(std::move(x));
    }
  }

  if (with_ports && !dp->ports_.init(cfg, dp->pool_, err)) return nullptr;
  dp->port_index_.assign(RTE_MAX_ETHPORTS, -1);
  if (with_ports) {
    for (size_t i = 0; i < dp->ports_.all().size(); i++)
      dp->port_index_[dp->ports_.all()[i].port_id] = static_cast<int>(i);
  } else {
    // Tests drive the pipeline with mbuf->port = 0 or 1 standing for the configured ports.
    for (size_t i = 0; i < cfg.ports.size(); i++) {
      Port p;
      p.name = cfg.ports[i].name;
      p.zone = cfg.ports[i].zone;
      p.port_id = static_cast<uint16_t>(i);
      for (size_t z = 0; z < cfg.zones.size(); z++)
        if (cfg.zones[z].name == p.zone) p.zone_id = static_cast<uint8_t>(z);
      p.tx_queues = 1;
      p.mac = rte_ether_addr{{0x02, 0xba, 0x70, 0x00, 0x00, static_cast<uint8_t>(i + 1)}};
      dp->ports_.all().push_back(std::move(p));
      dp->port_index_[i] = static_cast<int>(i);
    }
  }

  if (cfg.mode == Mode::kL3) {  // before the workers, which keep pointers into it
    std::vector<MacAddr> macs;
    for (const Port& p : dp->ports_.all()) {
      MacAddr m;
      std::memcpy(m.b.data(), p.mac.addr_bytes, 6);
      macs.push_back(m);
    }
    dp->router_ = Router::build(cfg, macs, err);
    if (!dp->router_) return nullptr;
    dp->router_->set_service_addresses(dp->translator_->service_addresses());
    for (const RouteEntry& r : dp->router_->routes())
      BLOG_INFO("router", "route %s/%u -> port %s via %s",
                IpAddr::v4(r.net).to_string(Family::kV4).c_str(), r.len,
                cfg.ports[r.port].name.c_str(),
                r.connected() ? "connected" : IpAddr::v4(r.via).to_string(Family::kV4).c_str());
  }

  // Worker i runs on the i-th worker lcore EAL was given (the main lcore is the control core).
  unsigned lcore = rte_get_next_lcore(-1, 1, 0);
  for (uint16_t w = 0; w < workers; w++) {
    auto wk = std::make_unique<Worker>(*dp, w, lcore);
    lcore = rte_get_next_lcore(lcore, 1, 0);
    if (!wk->init(err)) return nullptr;
    dp->workers_.push_back(std::move(wk));
  }
  return dp;
}

Dataplane::~Dataplane() {
  stop();
  workers_.clear();
  router_.reset();
  if (with_ports_) ports_.stop();
  xlates_.clear();
  translator_.reset();
  shards_.clear();
  vms_.reset();
  acl_.reset();
  if (rcu_) rte_free(rcu_);
  if (pool_) rte_mempool_free(pool_);
}

bool Dataplane::start(std::string* err) {
  if (!translator_->start(err)) return false;  // health checks before traffic
  running_.store(true);
  for (auto& w : workers_) {
    unsigned lcore = w->lcore();
    if (lcore >= RTE_MAX_LCORE) {
      *err = "not enough lcores for " + std::to_string(workers_.size()) +
             " workers (give EAL one lcore per worker plus the main lcore)";
      running_.store(false);
      rte_eal_mp_wait_lcore();
      return false;
    }
    if (int rc = rte_eal_remote_launch(worker_main, w.get(), lcore); rc != 0) {
      *err = "cannot launch worker on lcore " + std::to_string(lcore);
      running_.store(false);
      rte_eal_mp_wait_lcore();
      return false;
    }
  }
  return true;
}

void Dataplane::stop() {
  if (translator_) translator_->stop();
  if (!running_.exchange(false)) return;
  rte_eal_mp_wait_lcore();
}

void Dataplane::grace_period() { rte_rcu_qsbr_synchronize(rcu_, RTE_QSBR_THRID_INVALID); }

VmTraffic Dataplane::vm_traffic(uint16_t vm) const {
  VmTraffic t;
  for (const auto& w : workers_) t += w->vm_row(vm).traffic;
  return t;
}

uint32_t Dataplane::vm_half_open(uint16_t vm, VmSide side) const {
  int64_t n = 0;
  for (const auto& w : workers_) n += w->vm_row(vm).half_open[static_cast<int>(side)];
  return static_cast<uint32_t>(std::max<int64_t>(n, 0));
}

uint32_t Dataplane::now_s() const {
  return static_cast<uint32_t>((rte_get_tsc_cycles() - tsc_start_) / tsc_hz_);
}

unsigned Dataplane::acquire_reader_id() {
  for (;;) {
    {
      std::lock_guard<std::mutex> lock(readers_mu_);
      for (unsigned i = 0; i < kControlReaders; i++)
        if (!reader_used_[i]) {
          reader_used_[i] = true;
          return worker_count() + i;
        }
    }
    rte_delay_us_sleep(100);
  }
}

void Dataplane::release_reader_id(unsigned id) {
  std::lock_guard<std::mutex> lock(readers_mu_);
  reader_used_[id - worker_count()] = false;
}

Dataplane::ReaderGuard::ReaderGuard(Dataplane& dp) : dp_(dp), id_(dp.acquire_reader_id()) {
  rte_rcu_qsbr_thread_register(dp_.rcu_, id_);
  rte_rcu_qsbr_thread_online(dp_.rcu_, id_);
}

Dataplane::ReaderGuard::~ReaderGuard() {
  rte_rcu_qsbr_thread_offline(dp_.rcu_, id_);
  rte_rcu_qsbr_thread_unregister(dp_.rcu_, id_);
  dp_.release_reader_id(id_);
}

}  // namespace baton
