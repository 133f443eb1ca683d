// SPDX-License-Identifier: Apache-2.0
#include "control/daemon_api.h"

#include <unistd.h>

#include <chrono>

#include "common/log.h"
#include "conntrack/age_class.h"
#include "conntrack/conn_table.h"
#include "dataplane/dataplane.h"
#include "migrate/engine.h"

namespace baton {

using control::ApiRequest;
using control::ApiResult;
using nlohmann::json;

namespace {

const char* kind_name(int kind) {
  if (kind < kConnKindUdp) return tcp_state_name(static_cast<TcpState>(kind));
  if (kind == kConnKindUdp) return "udp";
  if (kind == kConnKindIcmp) return "icmp";
  return "other";
}

WorkerStats sum_stats(Dataplane& dp) {
  WorkerStats t;
  for (auto& w : dp.workers()) {
    const WorkerStats& s = w->stats();
#define BATON_SUM(name, metric, help) t.name += s.name;
    BATON_FOREACH_WORKER_COUNTER(BATON_SUM)
#undef BATON_SUM
    for (int i = 0; i < kDropReasonCount; i++) t.drops[i] += s.drops[i];
    for (int i = 0; i < kConnKinds; i++) t.conns[i] += s.conns[i];
  }
  return t;
}

std::string state_label(uint8_t proto, const ConnEntry& e) {
  if (proto == 6) return tcp_state_name(static_cast<TcpState>(e.l4_state));
  return (e.flags & connflag::kReplied) ? "ASSURED" : "UNREPLIED";
}

}  // namespace

DaemonApi::DaemonApi(Dataplane& dp, MigrationEngine* engine)
    : dp_(dp), engine_(engine), xlate_(dp), busy_ratio_(dp.worker_count()) {}

DaemonApi::~DaemonApi() { stop(); }

bool DaemonApi::start(std::string* err) {
  control::HttpApiConfig hc;
  hc.listen = dp_.config().control.listen;
  http_ = std::make_unique<control::HttpApi>(hc);
  register_routes();
  if (!http_->start(err)) {
    *err = "control API on " + hc.listen + ": " + *err;
    return false;
  }
  metrics_ = std::make_unique<control::MetricsServer>(dp_.config().metrics.listen,
                                                      [this] { return collect(); });
  if (!metrics_->start(err)) {
    *err = "metrics on " + dp_.config().metrics.listen + ": " + *err;
    http_->stop();
    return false;
  }
  sampling_ = true;
  sampler_ = std::thread([this] { sample_rates(); });
  return true;
}

void DaemonApi::stop() {
  sampling_ = false;
  if (sampler_.joinable()) sampler_.join();
  if (http_) http_->stop();
  if (metrics_) metrics_->stop();
}

void DaemonApi::sample_rates() {
  uint64_t last_created = sum_stats(dp_).conn_created;
  std::vector<uint64_t> last_busy(dp_.worker_count()), last_total(dp_.worker_count());
  auto last = std::chrono::steady_clock::now();
  while (sampling_) {
    for (int i = 0; i < 10 && sampling_; i++) usleep(100 * 1000);
    auto now = std::chrono::steady_clock::now();
    double secs = std::chrono::duration<double>(now - last).count();
    last = now;
    uint64_t created = sum_stats(dp_).conn_created;
    new_conns_per_s_ = secs > 0 ? (created - last_created) / secs : 0;
    last_created = created;
    for (uint16_t w = 0; w < dp_.worker_count(); w++) {
      const WorkerStats& s = dp_.workers()[w]->stats();
      uint64_t busy = s.busy_cycles, total = s.total_cycles;
      uint64_t dt = total - last_total[w];
      busy_ratio_[w] = dt ? static_cast<double>(busy - last_busy[w]) / dt : 0.0;
      last_busy[w] = busy;
      last_total[w] = total;
    }
  }
}

json DaemonApi::ports_json() {
  json out = json::array();
  auto& ports = dp_.ports().all();
  for (size_t i = 0; i < ports.size(); i++) {
    PortCounters c = dp_.ports().counters(i);
    out.push_back({{"name", ports[i].name},      {"device", ports[i].device},
                   {"zone", ports[i].zone},      {"rx_packets", c.rx_packets},
                   {"rx_bytes", c.rx_bytes},     {"tx_packets", c.tx_packets},
                   {"tx_bytes", c.tx_bytes},     {"rx_errors", c.rx_errors},
                   {"tx_errors", c.tx_errors},   {"rx_missed", c.rx_missed},
                   {"rx_queues", ports[i].rx_queues}, {"tx_queues", ports[i].tx_queues}});
  }
  return out;
}

json DaemonApi::workers_json() {
  json out = json::array();
  for (auto& w : dp_.workers()) {
    const WorkerStats& s = w->stats();
    out.push_back({{"id", w->id()},
                   {"lcore", w->lcore()},
                   {"rx_packets", s.rx_packets},
                   {"tx_packets", s.tx_packets},
                   {"dropped", s.dropped},
                   {"busy_ratio", busy_ratio_[w->id()].load()},
                   {"connections", w->table().size()},
                   {"capacity", w->table().capacity()},
                   {"connections_v6", w->table().size(Family::kV6)},
                   {"capacity_v6", w->table().capacity(Family::kV6)}});
  }
  return out;
}

namespace {
json traffic_json(const VmTraffic& t) {
  json out = json::object();
  for (VmSide side : {VmSide::kFromVm, VmSide::kToVm}) {
    const int i = static_cast<int>(side);
    out[vm_side_name(side)] = {{"packets", t.packets[i]},
                                                          {"bytes", t.bytes[i]}};
  }
  return out;
}
}  // namespace

json DaemonApi::vms_json() {
  json out = json::array();
  VmTable& vms = dp_.vms();
  std::lock_guard<std::mutex> lock(vms.control_mutex());
  for (uint16_t id : vms.ids()) {
    const VmSlot& s = vms.slot(id);
    json v4 = json::array(), v6 = json::array();
    for (auto& a : s.config.ipv4) v4.push_back(a.to_string(Family::kV4));
    for (auto& a : s.config.ipv6) v6.push_back(a.to_string(Family::kV6));
    uint64_t conns = 0;
    for (auto& w : dp_.workers()) conns += w->table().vm_count(id);
    const VmTraffic here = dp_.vm_traffic(id);
    json v = {{"id", id},
              {"name", s.config.name},
              {"mac", s.config.mac.to_string()},
              {"ipv4", v4},
              {"ipv6", v6},
              {"vlan", s.config.vlan},
              {"state", vm_state_name(s.state.load())},
              {"connections", conns},
              // forwarded here, brought by migrations, and the two together
              {"traffic", traffic_json(here)},
              {"carried", traffic_json(s.carried)}};
    VmTraffic lifetime = s.carried;
    lifetime += here;
    v["lifetime"] = traffic_json(lifetime);
    v["half_open"] = {{"from_vm", dp_.vm_half_open(id, VmSide::kFromVm)},
                      {"to_vm", dp_.vm_half_open(id, VmSide::kToVm)},
                      {"limit", s.config.profile.max_half_open
                                    ? json(s.config.profile.max_half_open) : json(nullptr)}};
    if (const VmPolicer* p = s.policer.load(std::memory_order_acquire))
      v["qos"] = {{"rate_bps", s.config.profile.qos_rate_bps},
                  {"burst_bytes", VmPolicer::burst_bytes(s.config.profile.qos_rate_bps)},
                  {"dropped_from_vm", p->dropped(VmSide::kFromVm)},
                  {"dropped_to_vm", p->dropped(VmSide::kToVm)}};
    out.push_back(std::move(v));
  }
  return out;
}

json DaemonApi::counters_json() {
  WorkerStats t = sum_stats(dp_);
  json drops = json::object();
  for (int i = 0; i < kDropReasonCount; i++)
    drops[drop_reason_name(static_cast<DropReason>(i))] = t.drops[i];
  json totals = json::object();
#define BATON_JSON(name, metric, help) totals[#name] = t.name;
  BATON_FOREACH_WORKER_COUNTER(BATON_JSON)
#undef BATON_JSON
  json conns = json::object();
  for (int i = 0; i < kConnKinds; i++)
    if (t.conns[i]) conns[kind_name(i)] = t.conns[i];
  uint64_t size = 0, cap = 0;
  for (auto& w : dp_.workers()) {
    size += w->table().size();
    cap += w->table().capacity();
  }
  return {{"drops", drops}, {"totals", totals}, {"connections_by_state", conns},
          {"connections", size}, {"capacity", cap},
          {"new_connections_per_second", new_conns_per_s_.load()}};
}

json DaemonApi::connections_json(const std::string& vm, const std::string& addr,
                                 const std::string& state, size_t limit) {
  json out = json::array();
  uint16_t vm_id = 0;
  if (!vm.empty()) {
    std::lock_guard<std::mutex> lock(dp_.vms().control_mutex());
    auto id = dp_.vms().find_by_name(vm);
    if (!id) return out;
    vm_id = *id;
  }
  std::optional<IpAddr> want_addr;
  Family want_family = Family::kNone;
  if (!addr.empty()) want_addr = IpAddr::parse(addr, &want_family);
  const Timeouts& to = dp_.config().conntrack.timeouts;
  uint32_t now = dp_.now_s();
  Dataplane::ReaderGuard guard(dp_);
  for (auto& w : dp_.workers()) {
    const ConnTable& t = w->table();
    auto row = [&](uint32_t slot) {
      if (out.size() >= limit) return;
      ConnEntry e;
      FlowKey k;
      ConnCounters c;
      if (!t.read(slot, &e, &k, &c)) return;
      if (want_addr && !(k.lo_addr == *want_addr || k.hi_addr == *want_addr)) return;
      std::string st = state_label(k.proto, e);
      if (!state.empty() && strcasecmp(st.c_str(), state.c_str()) != 0) return;
      Dir od = e.orig_dir();
      Tuple o = k.tuple(od);
      int oi = static_cast<int>(od), ri = 1 - oi;
      uint32_t idle = now > e.last_seen ? now - e.last_seen : 0;
      uint32_t timeout = age_class_timeout(to, e.age_class);
      json flags = json::array();
      if (e.flags & connflag::kPending) flags.push_back("pending");
      if (e.flags & connflag::kFromPeer) flags.push_back("migrated");
      if (e.flags & connflag::kReplied) flags.push_back("replied");
      std::string vm_name;
      if (e.vm_id) vm_name = dp_.vms().slot(e.vm_id).config.name;
      json xlate = nullptr;
      if ((e.flags & connflag::kXlate) && dp_.xlate(w->id())) {
        // Written before the flag was set and never changed after (conn_xlate.h).
        const ConnXlate& x = dp_.xlate(w->id())->at(slot);
        xlate = {{"kind", xlate_kind_name(x.kind)},
                 {"reply_src", IpAddr::v4(x.reply_src).to_string(Family::kV4)},
                 {"reply_dst", IpAddr::v4(x.reply_dst).to_string(Family::kV4)},
                 {"reply_sport", x.reply_sport.host()},
                 {"reply_dport", x.reply_dport.host()}};
        flags.push_back("translated");
      }
      json tcp = nullptr;
      if (k.proto == 6) {
        auto peer = [](const TcpPeer& p) {
          return json{{"end", p.end}, {"maxend", p.maxend}, {"maxwin", p.maxwin},
                      {"wscale", p.wscale}};
        };
        tcp = {{"orig", peer(e.peer[oi])}, {"reply", peer(e.peer[ri])}};
      }
      out.push_back({{"tcp", tcp},{"proto", proto_name(k.proto)},
                     {"state", st},
                     {"src", o.src.to_string(k.family)},
                     {"dst", o.dst.to_string(k.family)},
                     {"sport", o.sport.host()},
                     {"dport", o.dport.host()},
                     {"vlan", k.vlan},
                     {"vm", vm_name},
                     {"zone", e.zone < dp_.config().zones.size()
                                  ? dp_.config().zones[e.zone].name : ""},
                     {"idle_s", idle},
                     {"timeout_s", timeout > idle ? timeout - idle : 0},
                     {"version", e.version.load()},
                     {"owner", w->id()},
                     {"flags", flags}});
      if (t.accounting()) {  // without it, like conntrack -L without nf_conntrack_acct: none
        json& row = out.back();
        row["packets_orig"] = c.packets[oi];
        row["bytes_orig"] = c.bytes[oi];
        row["packets_reply"] = c.packets[ri];
        row["bytes_reply"] = c.bytes[ri];
      }
      if (!xlate.is_null()) {
        json& row = out.back();
        row["xlate"] = xlate["kind"];
        for (const char* f : {"reply_src", "reply_dst", "reply_sport", "reply_dport"}) row[f] = xlate[f];
      }
    };
    if (vm_id)
      t.for_each_in_vm(vm_id, row);
    else
      t.for_each(row);
  }
  return out;
}

void DaemonApi::register_routes() {
  http_->route("GET", "/v1/ports", [this](const ApiRequest&) { return ApiResult::ok(ports_json()); });
  http_->route("GET", "/v1/workers",
               [this](const ApiRequest&) { return ApiResult::ok(workers_json()); });
  http_->route("GET", "/v1/vms", [this](const ApiRequest&) { return ApiResult::ok(vms_json()); });
  http_->route("GET", "/v1/counters",
               [this](const ApiRequest&) { return ApiResult::ok(counters_json()); });
  http_->route("GET", "/v1/connections", [this](const ApiRequest& r) {
    size_t limit = 1000;
    if (auto l = r.query_value("limit")) {
      char* end = nullptr;
      unsigned long v = std::strtoul(l->c_str(), &end, 10);
      if (l->empty() || *end || v == 0) return ApiResult::error(400, "limit must be a positive integer");
      limit = v;
    }
    std::string addr = r.query_value("addr").value_or("");
    if (!addr.empty() && !IpAddr::parse(addr, nullptr))
      return ApiResult::error(400, "addr is not an IPv4 or IPv6 address");
    std::string vm = r.query_value("vm").value_or("");
    if (!vm.empty()) {
      std::lock_guard<std::mutex> lock(dp_.vms().control_mutex());
      if (!dp_.vms().find_by_name(vm)) return ApiResult::error(404, "no VM named '" + vm + "'");
    }
    return ApiResult::ok(connections_json(vm, addr, r.query_value("state").value_or(""), limit));
  });
  xlate_.register_routes(*http_);
  if (engine_) engine_->register_routes(*http_);
}

std::vector<prometheus::MetricFamily> DaemonApi::collect() {
  using control::add_sample;
  std::vector<prometheus::MetricFamily> out;
  auto& ports = dp_.ports().all();
  auto rx_p = control::counter_family("baton_port_rx_packets_total", "Packets received by port and queue");
  auto tx_p = control::counter_family("baton_port_tx_packets_total", "Packets transmitted by port and queue");
  auto rx_b = control::counter_family("baton_port_rx_bytes_total", "Bytes received by port");
  auto tx_b = control::counter_family("baton_port_tx_bytes_total", "Bytes transmitted by port");
  auto rx_e = control::counter_family("baton_port_rx_errors_total", "Receive errors by port");
  auto tx_e = control::counter_family("baton_port_tx_errors_total", "Transmit errors by port");
  auto miss = control::counter_family("baton_port_rx_missed_packets_total", "Packets the port dropped for lack of RX descriptors");
  for (size_t i = 0; i < ports.size(); i++) {
    PortCounters c = dp_.ports().counters(i);
    const std::string& n = ports[i].name;
    for (size_t q = 0; q < c.q_rx_packets.size(); q++)
      add_sample(rx_p, {{"port", n}, {"queue", std::to_string(q)}}, c.q_rx_packets[q]);
    for (size_t q = 0; q < c.q_tx_packets.size(); q++)
      add_sample(tx_p, {{"port", n}, {"queue", std::to_string(q)}}, c.q_tx_packets[q]);
    add_sample(rx_b, {{"port", n}}, c.rx_bytes);
    add_sample(tx_b, {{"port", n}}, c.tx_bytes);
    add_sample(rx_e, {{"port", n}}, c.rx_errors);
    add_sample(tx_e, {{"port", n}}, c.tx_errors);
    add_sample(miss, {{"port", n}}, c.rx_missed);
  }
  for (auto* f : {&rx_p, &tx_p, &rx_b, &tx_b, &rx_e, &tx_e, &miss}) out.push_back(std::move(*f));

  WorkerStats t = sum_stats(dp_);
  auto drops = control::counter_family("baton_drops_total", "Packets dropped, by reason");
  for (int i = 0; i < kDropReasonCount; i++)
    add_sample(drops, {{"reason", drop_reason_name(static_cast<DropReason>(i))}}, t.drops[i]);
  out.push_back(std::move(drops));

  // Per-worker counters from the one list that declares them.
#define BATON_METRIC(name, metric, help)                                           \
  {                                                                                \
    auto f = control::counter_family("baton_" metric, help);                       \
    for (auto& w : dp_.workers())                                                  \
      add_sample(f, {{"worker", std::to_string(w->id())}}, w->stats().name);       \
    out.push_back(std::move(f));                                                   \
  }
  BATON_FOREACH_WORKER_COUNTER(BATON_METRIC)
#undef BATON_METRIC

  auto by_state = control::gauge_family("baton_connections", "Live connections by protocol state");
  for (int i = 0; i < kConnKinds; i++)
    add_sample(by_state, {{"state", kind_name(i)}}, static_cast<double>(t.conns[i]));
  out.push_back(std::move(by_state));
  auto occ = control::gauge_family("baton_conn_table_entries", "Entries in the connection table shard, per address family");
  auto cap = control::gauge_family("baton_conn_table_capacity_entries", "Capacity of the connection table shard, per address family");
  auto mem = control::gauge_family("baton_conn_table_memory_bytes", "Memory of the connection table shard");
  auto busy = control::gauge_family("baton_worker_busy_ratio", "Share of the last second the worker spent on polls with work");
  for (auto& w : dp_.workers()) {
    control::MetricLabels l = {{"worker", std::to_string(w->id())}};
    // Each address family has a hash and a capacity of its own (conntrack.capacity_v6).
    for (Family f : {Family::kV4, Family::kV6}) {
      control::MetricLabels lf = l;
      lf.emplace_back("family", f == Family::kV4 ? "ipv4" : "ipv6");
      add_sample(occ, lf, w->table().size(f));
      add_sample(cap, lf, w->table().capacity(f));
    }
    add_sample(mem, l, static_cast<double>(w->table().memory_bytes()));
    add_sample(busy, l, busy_ratio_[w->id()].load());
  }
  for (auto* f : {&occ, &cap, &mem, &busy}) out.push_back(std::move(*f));
  auto rate = control::gauge_family("baton_new_connections_per_second", "Connections created per second over the last second");
  add_sample(rate, {}, new_conns_per_s_.load());
  out.push_back(std::move(rate));
  collect_vms(out);
  xlate_.collect(out);
  if (engine_) engine_->collect(out);
  return out;
}

// Per VM: its traffic through this instance (counters: they start when the VM arrives here),
// what migrations brought with it (gauges: a dashboard adds them for the VM's lifetime), its
// half-open connections (and limit), and for a VM with a QoS rate the rate and the drops per
// direction.
void DaemonApi::collect_vms(std::vector<prometheus::MetricFamily>& out) {
  auto packets = control::counter_family("baton_vm_packets_total", "Packets of a VM forwarded by this instance, by direction (from_vm, to_vm)");
  auto bytes = control::counter_family("baton_vm_bytes_total", "Frame bytes of a VM forwarded by this instance, by direction");
  auto carried_packets = control::gauge_family("baton_vm_carried_packets", "A VM's packets counted at the instances it migrated from, by direction");
  auto carried_bytes = control::gauge_family("baton_vm_carried_bytes", "A VM's frame bytes counted at the instances it migrated from, by direction");
  auto half_open = control::gauge_family("baton_vm_half_open_connections", "A VM's TCP connections still in their handshake, by the direction of their SYN");
  auto half_open_limit = control::gauge_family("baton_vm_half_open_limit", "A VM's profile max_half_open, per direction of the SYN");
  auto rate = control::gauge_family("baton_vm_qos_rate_bits_per_second", "A VM's profile rate, policed in each direction");
  auto dropped = control::counter_family("baton_vm_qos_dropped_packets_total", "Packets over a VM's rate, by direction (from_vm, to_vm)");
  VmTable& vms = dp_.vms();
  std::lock_guard<std::mutex> lock(vms.control_mutex());  // the policer lives while we hold it
  for (uint16_t id : vms.ids()) {
    const VmSlot& s = vms.slot(id);
    const VmTraffic here = dp_.vm_traffic(id);
    for (VmSide side : {VmSide::kFromVm, VmSide::kToVm}) {
      const int i = static_cast<int>(side);
      const control::MetricLabels l{{"vm", s.config.name}, {"direction", vm_side_name(side)}};
      control::add_sample(packets, l, static_cast<double>(here.packets[i]));
      control::add_sample(bytes, l, static_cast<double>(here.bytes[i]));
      control::add_sample(carried_packets, l, static_cast<double>(s.carried.packets[i]));
      control::add_sample(carried_bytes, l, static_cast<double>(s.carried.bytes[i]));
      control::add_sample(half_open, l, static_cast<double>(dp_.vm_half_open(id, side)));
      if (s.config.profile.max_half_open)
        control::add_sample(half_open_limit, l, static_cast<double>(s.config.profile.max_half_open));
      if (const VmPolicer* p = s.policer.load(std::memory_order_acquire))
        control::add_sample(dropped, l, static_cast<double>(p->dropped(side)));
    }
    if (s.policer.load(std::memory_order_acquire))
      control::add_sample(rate, {{"vm", s.config.name}},
                          static_cast<double>(s.config.profile.qos_rate_bps));
  }
  for (auto* f : {&packets, &bytes, &carried_packets, &carried_bytes, &half_open, &half_open_limit,
                  &rate, &dropped})
    out.push_back(std::move(*f));
}

void DaemonApi::log_final_counters() {
  WorkerStats t = sum_stats(dp_);
  std::string drops;
  for (int i = 0; i < kDropReasonCount; i++)
    if (t.drops[i])
      drops += std::string(" ") + drop_reason_name(static_cast<DropReason>(i)) + "=" +
               std::to_string(t.drops[i]);
  BLOG_INFO("batond", "final counters: rx=%lu tx=%lu dropped=%lu conns_created=%lu expired=%lu%s%s",
            t.rx_packets, t.tx_packets, t.dropped, t.conn_created, t.conn_expired,
            drops.empty() ? "" : " drops:", drops.c_str());
  auto& ports = dp_.ports().all();
  for (size_t i = 0; i < ports.size(); i++) {
    PortCounters c = dp_.ports().counters(i);
    BLOG_INFO("batond", "port %s: rx=%lu tx=%lu rx_missed=%lu rx_errors=%lu tx_errors=%lu",
              ports[i].name.c_str(), c.rx_packets, c.tx_packets, c.rx_missed, c.rx_errors,
              c.tx_errors);
  }
}

}  // namespace baton
