// SPDX-License-Identifier: Apache-2.0
#include "control/xlate_api.h"

#include "control/metrics.h"
#include "dataplane/dataplane.h"

namespace baton {

using control::ApiRequest;
using control::ApiResult;
using nlohmann::json;

namespace {

std::string ep(be32 a, be16 p) { return IpAddr::v4(a).to_string(Family::kV4) + ":" + std::to_string(p.host()); }
std::string addr(be32 a) { return IpAddr::v4(a).to_string(Family::kV4); }
const char* proto_label(uint8_t p) { return p == 6 ? "tcp" : p == 17 ? "udp" : p == 1 ? "icmp" : "any"; }

}  // namespace

json XlateApi::mappings_json(const std::string& inside, size_t limit) {
  json out = json::array();
  Translator* tr = dp_.translator();
  if (!tr) return out;
  const uint32_t now = dp_.now_s();
  Dataplane::ReaderGuard guard(dp_);
  for (const Translator::SnatState& rule : tr->snat_rules()) {
    for (size_t w = 0; w < rule.maps.size(); w++) {
      const NatMappingTable& t = *rule.maps[w];
      t.for_each([&](uint32_t slot) {
        NatMapping m;
        if (out.size() >= limit || !t.read(slot, m)) return;
        if (!inside.empty() && addr(m.inside_addr) != inside) return;
        json peers = json::array();
        for (uint8_t i = 0; i < m.peer_count && i < kNatMaxPeers; i++)
          peers.push_back(ep(m.peers[i].addr, m.peers[i].port));
        out.push_back({{"type", nat_type_name(m.type)},
                       {"rule", rule.cfg.name},
                       {"proto", proto_label(m.proto)},
                       {"inside", ep(m.inside_addr, m.inside_port)},
                       {"outside", ep(m.outside_addr, m.outside_port)},
                       {"sessions", m.sessions},
                       {"age_s", now > m.created ? now - m.created : 0},
                       {"expires_in_s", m.expires == kNatNever ? json(nullptr)
                                                               : json(m.expires > now ? m.expires - now : 0)},
                       {"peers", peers},
                       {"owner", w},
                       {"version", m.version}});
      });
    }
  }
  for (const StaticNat& s : dp_.config().nat.static_nat) {
    if (!inside.empty() && s.inside.to_string(Family::kV4) != inside) continue;
    out.push_back({{"type", "static"}, {"proto", "any"}, {"inside", s.inside.to_string(Family::kV4)},
                   {"outside", s.outside.to_string(Family::kV4)}});
  }
  for (const PortForward& f : dp_.config().nat.port_forward) {
    if (!inside.empty() && f.inside.to_string(Family::kV4) != inside) continue;
    out.push_back({{"type", "port-forward"}, {"proto", proto_label(f.proto)},
                   {"inside", f.inside.to_string(Family::kV4) + ":" + std::to_string(f.inside_port)},
                   {"outside", f.outside.to_string(Family::kV4) + ":" + std::to_string(f.outside_port)}});
  }
  return out;
}

json XlateApi::blocks_json() {
  json out = json::array();
  Translator* tr = dp_.translator();
  if (!tr) return out;
  const uint32_t now = dp_.now_s();
  for (const Translator::SnatState& rule : tr->snat_rules())
    for (size_t w = 0; w < rule.alloc.size(); w++)
      rule.alloc[w]->for_each_lease(now, [&](const PortAllocator::Lease& l) {
        out.push_back({{"rule", rule.cfg.name},
                       {"outside", addr(l.outside)},
                       {"first_port", l.first_port},
                       {"last_port", l.last_port},
                       {"host", addr(l.host)},
                       {"state", l.held ? "hold-down" : "leased"},
                       {"ports_used", {{"tcp", l.ports_used[0]}, {"udp", l.ports_used[1]}, {"icmp", l.ports_used[2]}}},
                       {"owner", w}});
      });
  return out;
}

json XlateApi::services_json() {
  json out = json::array();
  LoadBalancer* lb = dp_.translator() ? dp_.translator()->lb() : nullptr;
  if (!lb) return out;
  for (const LoadBalancer::Service& s : lb->services()) {
    const char* mode = s.cfg.mode == LbMode::kNat ? "nat" : s.cfg.mode == LbMode::kFullNat ? "fullnat" : "l7";
    json local = json::array();
    for (be32 a : s.local) local.push_back(addr(a));
    json sticky = nullptr;
    if (s.sticky_group >= 0)
      sticky = {{"method", sticky_key_method_name(s.group.method)},
                {"timeout_s", s.group.timeout_s},
                {"on_backup", s.group.sticky_on_backup},
                {"timeout_active_conns", s.group.timeout_active_conns}};
    out.push_back({{"name", s.cfg.name},
                   {"vip", s.cfg.vip.to_string(Family::kV4) + ":" + std::to_string(s.cfg.port)},
                   {"proto", proto_label(s.cfg.proto)},
                   {"mode", mode},
                   {"pool", s.cfg.pool},
                   {"backup_pool", s.cfg.backup_pool},
                   {"local_addresses", local},
                   {"sticky", sticky}});
  }
  return out;
}

json XlateApi::pools_json() {
  json out = json::array();
  LoadBalancer* lb = dp_.translator() ? dp_.translator()->lb() : nullptr;
  if (!lb) return out;
  for (size_t i = 0; i < lb->pools().size(); i++) {
    json backends = json::array();
    for (const BackendStatus& b : lb->pools()[i]->list())
      backends.push_back({{"id", b.spec.id},
                          {"address", addr(b.spec.addr)},
                          {"port", b.spec.port.host()},
                          {"weight", b.spec.weight},
                          {"admin", admin_state_name(b.spec.admin)},
                          {"healthy", b.spec.healthy},
                          {"takes_new", b.spec.takes_new()},
                          {"active_connections", b.active_conns},
                          {"total_connections", b.total_conns}});
    out.push_back({{"name", lb->pool_names()[i]}, {"backends", backends}});
  }
  return out;
}

json XlateApi::sticky_json(const std::string& service) {
  json out = json::array();
  LoadBalancer* lb = dp_.translator() ? dp_.translator()->lb() : nullptr;
  if (!lb || !lb->sticky()) return out;
  Dataplane::ReaderGuard guard(dp_);
  for (const StickyRecord& r : lb->sticky()->list(dp_.now_s())) {
    if (r.key.group >= lb->services().size()) continue;
    const LoadBalancer::Service& s = lb->services()[r.key.group];
    if (!service.empty() && s.cfg.name != service) continue;
    out.push_back({{"service", s.cfg.name},
                   {"key", r.key.to_string()},
                   {"backend", r.backend},
                   {"age_s", r.age_s},
                   {"idle_s", r.idle_s},
                   {"ttl_s", r.ttl_s},
                   {"active_connections", r.active_conns}});
  }
  return out;
}

json XlateApi::l7_json(size_t limit) {
  json workers = json::array(), conns = json::array();
  LoadBalancer* lb = dp_.translator() ? dp_.translator()->lb() : nullptr;
  Dataplane::ReaderGuard guard(dp_);
  for (auto& w : dp_.workers()) {
    const L7Proxy* l7 = w->l7();
    if (!l7 || !lb) continue;
    workers.push_back({{"worker", w->id()}, {"head_buffers", l7->pool_size()},
                       {"head_buffers_in_use", l7->pool_in_use()}});
    const ConnTable& t = w->table();
    const ConnXlateTable* xt = dp_.xlate(w->id());
    t.for_each([&](uint32_t slot) {
      ConnEntry e;
      FlowKey k;
      L7ConnRecord r;
      if (conns.size() >= limit || !t.read(slot, &e, &k)) return;
      if (!l7->read(slot, t.entry(slot).version, &r) || r.phase == L7Phase::kNone) return;
      const Tuple o = k.tuple(e.orig_dir());
      auto dir = [](const SpliceDirOffsets& d) {
        return json{{"seq", d.seq}, {"ack", d.ack}, {"tsval", d.tsval}, {"tsecr", d.tsecr},
                    {"win_from", d.win_from}, {"win_to", d.win_to}};
      };
      json row = {{"worker", w->id()},
                  {"service", r.service < lb->services().size() ? lb->services()[r.service].cfg.name : ""},
                  {"client", ep(o.src.as_v4(), o.sport)},
                  {"vip", ep(o.dst.as_v4(), o.dport)},
                  {"phase", l7_phase_name(r.phase)},
                  {"tcp_state", tcp_state_name(static_cast<TcpState>(e.l4_state))},
                  {"head_buffer", r.pending != kNoPending},
                  {"backend", nullptr},
                  {"local", nullptr},
                  {"offsets", nullptr}};
      if ((e.flags & connflag::kXlate) && xt) {
        const ConnXlate& x = xt->at(slot);
        row["backend"] = ep(x.reply_src, x.reply_sport);
        row["local"] = ep(x.reply_dst, x.reply_dport);
      }
      if (r.phase == L7Phase::kSpliced)
        row["offsets"] = {{"to_backend", dir(r.offsets.to_backend)}, {"to_client", dir(r.offsets.to_client)}};
      conns.push_back(std::move(row));
    });
  }
  return {{"workers", workers}, {"connections", conns}};
}

void XlateApi::register_routes(control::HttpApi& http) {
  http.route("GET", "/v1/lb/l7", [this](const ApiRequest& r) {
    size_t limit = 10000;
    if (auto l = r.query_value("limit")) {
      char* end = nullptr;
      unsigned long v = std::strtoul(l->c_str(), &end, 10);
      if (l->empty() || *end || v == 0) return ApiResult::error(400, "limit must be a positive integer");
      limit = v;
    }
    return ApiResult::ok(l7_json(limit));
  });
  http.route("GET", "/v1/lb/services", [this](const ApiRequest&) { return ApiResult::ok(services_json()); });
  http.route("GET", "/v1/lb/pools", [this](const ApiRequest&) { return ApiResult::ok(pools_json()); });
  http.route("GET", "/v1/lb/sticky", [this](const ApiRequest& r) {
    return ApiResult::ok(sticky_json(r.query_value("service").value_or("")));
  });
  http.route("GET", "/v1/nat/mappings", [this](const ApiRequest& r) {
    std::string inside = r.query_value("inside").value_or("");
    Family f;
    if (!inside.empty() && (!IpAddr::parse(inside, &f) || f != Family::kV4))
      return ApiResult::error(400, "inside is not an IPv4 address");
    size_t limit = 10000;
    if (auto l = r.query_value("limit")) {
      char* end = nullptr;
      unsigned long v = std::strtoul(l->c_str(), &end, 10);
      if (l->empty() || *end || v == 0) return ApiResult::error(400, "limit must be a positive integer");
      limit = v;
    }
    return ApiResult::ok(mappings_json(inside, limit));
  });
  http.route("GET", "/v1/nat/blocks", [this](const ApiRequest&) { return ApiResult::ok(blocks_json()); });
}

void XlateApi::collect(std::vector<prometheus::MetricFamily>& out) {
  Translator* tr = dp_.translator();
  if (!tr) return;
  using control::add_sample;
  if (LoadBalancer* lb = tr->lb(); lb && !lb->services().empty()) {
    auto active = control::gauge_family("baton_lb_backend_active_connections", "Connections open to a backend");
    auto total = control::counter_family("baton_lb_backend_connections_total", "Connections sent to a backend");
    auto up = control::gauge_family("baton_lb_backend_up", "1 if the backend takes new connections (admin up, healthy, weight > 0)");
    for (size_t i = 0; i < lb->pools().size(); i++)
      for (const BackendStatus& b : lb->pools()[i]->list()) {
        control::MetricLabels l = {{"pool", lb->pool_names()[i]},
                                   {"backend", addr(b.spec.addr) + ":" + std::to_string(b.spec.port.host())}};
        add_sample(active, l, static_cast<double>(b.active_conns));
        add_sample(total, l, static_cast<double>(b.total_conns));
        add_sample(up, l, b.spec.takes_new() ? 1 : 0);
      }
    auto sticky = control::gauge_family("baton_lb_sticky_entries", "Entries in the sticky table");
    add_sample(sticky, {}, lb->sticky()->size());
    auto heads = control::gauge_family("baton_l7_head_buffers_in_use", "L7 connections holding a request-head buffer, by worker");
    for (auto& w : dp_.workers())
      if (const L7Proxy* l7 = w->l7()) add_sample(heads, {{"worker", std::to_string(w->id())}}, l7->pool_in_use());
    for (auto* f : {&active, &total, &up, &sticky, &heads}) out.push_back(std::move(*f));
  }
  if (tr->snat_rules().empty()) return;
  auto maps = control::gauge_family("baton_nat_mappings", "Live NAT mappings by rule and worker");
  auto blocks = control::gauge_family("baton_nat_port_blocks_leased", "Port blocks leased to inside hosts");
  auto ports = control::gauge_family("baton_nat_ports_in_use", "Outside ports in use");
#define BATON_NAT_FAMILY(name, metric, help) auto f_##name = control::counter_family("baton_" metric, help);
  BATON_FOREACH_NAT_TABLE_COUNTER(BATON_NAT_FAMILY)
  BATON_FOREACH_PORT_ALLOC_COUNTER(BATON_NAT_FAMILY)
#undef BATON_NAT_FAMILY
  for (const Translator::SnatState& rule : tr->snat_rules()) {
    for (size_t w = 0; w < rule.maps.size(); w++) {
      control::MetricLabels l = {{"rule", rule.cfg.name}, {"worker", std::to_string(w)}};
      const NatTableStats& ts = rule.maps[w]->stats();
      PortAllocatorStats as = rule.alloc[w]->stats();
      add_sample(maps, l, rule.maps[w]->size());
      add_sample(blocks, l, static_cast<double>(as.blocks_leased));
      add_sample(ports, l, static_cast<double>(as.ports_in_use));
#define BATON_NAT_SAMPLE(name, metric, help) add_sample(f_##name, l, static_cast<double>(ts.name));
      BATON_FOREACH_NAT_TABLE_COUNTER(BATON_NAT_SAMPLE)
#undef BATON_NAT_SAMPLE
#define BATON_NAT_SAMPLE(name, metric, help) add_sample(f_##name, l, static_cast<double>(as.name));
      BATON_FOREACH_PORT_ALLOC_COUNTER(BATON_NAT_SAMPLE)
#undef BATON_NAT_SAMPLE
    }
  }
  out.push_back(std::move(maps));
  out.push_back(std::move(blocks));
  out.push_back(std::move(ports));
#define BATON_NAT_PUSH(name, metric, help) out.push_back(std::move(f_##name));
  BATON_FOREACH_NAT_TABLE_COUNTER(BATON_NAT_PUSH)
  BATON_FOREACH_PORT_ALLOC_COUNTER(BATON_NAT_PUSH)
#undef BATON_NAT_PUSH
}

}  // namespace baton
