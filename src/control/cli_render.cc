// SPDX-License-Identifier: Apache-2.0
#include "control/cli_render.h"

#include <algorithm>
#include <cctype>
#include <cinttypes>
#include <cmath>
#include <cstdio>
#include <set>
#include <utility>

namespace baton::control {

namespace {

using nlohmann::json;

const json kNull;

const json& get(const json& obj, const char* key) {
  if (!obj.is_object()) return kNull;
  auto it = obj.find(key);
  return it == obj.end() ? kNull : *it;
}

std::string scalar_text(const json& v) {
  switch (v.type()) {
    case json::value_t::null: return "-";
    case json::value_t::string: {
      const auto& s = v.get_ref<const std::string&>();
      return s.empty() ? "-" : s;
    }
    case json::value_t::boolean: return v.get<bool>() ? "yes" : "no";
    case json::value_t::number_unsigned: return std::to_string(v.get<uint64_t>());
    case json::value_t::number_integer: return std::to_string(v.get<int64_t>());
    case json::value_t::number_float: {
      char buf[64];
      std::snprintf(buf, sizeof buf, "%.3f", v.get<double>());
      std::string s = buf;
      while (!s.empty() && s.back() == '0') s.pop_back();
      if (!s.empty() && s.back() == '.') s.pop_back();
      return s;
    }
    case json::value_t::array: {
      if (v.empty()) return "-";
      std::string out;
      for (const auto& e : v) {
        if (!out.empty()) out += ',';
        out += e.is_structured() ? e.dump() : scalar_text(e);
      }
      return out;
    }
    default: return v.dump();
  }
}

// Integer value of a field, or `fallback` when absent or not a number.
int64_t int_field(const json& obj, const char* key, int64_t fallback = 0) {
  const json& v = get(obj, key);
  if (v.is_number_integer()) return v.get<int64_t>();
  if (v.is_number_unsigned()) return static_cast<int64_t>(v.get<uint64_t>());
  if (v.is_number_float()) return static_cast<int64_t>(v.get<double>());
  return fallback;
}

struct ProtoInfo {
  std::string name;
  int number;
};

ProtoInfo proto_info(const json& v) {
  static const std::pair<const char*, int> kKnown[] = {
      {"icmp", 1}, {"tcp", 6}, {"udp", 17}, {"icmpv6", 58}, {"sctp", 132}};
  if (v.is_number()) {
    const int n = v.get<int>();
    for (const auto& [name, num] : kKnown)
      if (num == n) return {name, n};
    return {"unknown", n};
  }
  std::string name = v.is_string() ? v.get<std::string>() : "unknown";
  std::transform(name.begin(), name.end(), name.begin(),
                 [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
  for (const auto& [known, num] : kKnown)
    if (name == known) return {name, num};
  return {name, 0};
}

std::string upper(std::string s) {
  std::transform(s.begin(), s.end(), s.begin(),
                 [](unsigned char c) { return static_cast<char>(std::toupper(c)); });
  return s;
}

}  // namespace

std::string field_text(const nlohmann::json& object, const char* key) {
  return scalar_text(get(object, key));
}

std::string render_table(const std::vector<std::string>& headers,
                         const std::vector<std::vector<std::string>>& rows,
                         const std::vector<bool>& right) {
  std::vector<std::size_t> width(headers.size());
  for (std::size_t c = 0; c < headers.size(); ++c) width[c] = headers[c].size();
  for (const auto& row : rows)
    for (std::size_t c = 0; c < row.size() && c < width.size(); ++c)
      width[c] = std::max(width[c], row[c].size());

  auto line = [&](const std::vector<std::string>& cells) {
    std::string out;
    for (std::size_t c = 0; c < width.size(); ++c) {
      const std::string& cell = c < cells.size() ? cells[c] : std::string("-");
      const std::size_t pad = width[c] - std::min(width[c], cell.size());
      if (c > 0) out += "  ";
      if (c < right.size() && right[c]) {
        out.append(pad, ' ');
        out += cell;
      } else {
        out += cell;
        out.append(pad, ' ');
      }
    }
    while (!out.empty() && out.back() == ' ') out.pop_back();
    return out + "\n";
  };

  std::string out = line(headers);
  for (const auto& row : rows) out += line(row);
  return out;
}

std::string render_conn_line(const nlohmann::json& c) {
  const ProtoInfo proto = proto_info(get(c, "proto"));
  const int64_t left = std::max<int64_t>(0, int_field(c, "timeout_s") - int_field(c, "idle_s"));
  char head[64];
  std::snprintf(head, sizeof head, "%-8s %d %" PRId64 " ", proto.name.c_str(), proto.number,
                left);
  std::string out = head;
  // conntrack prints a state only for stateful protocols.
  const json& state = get(c, "state");
  if (proto.name != "udp" && state.is_string() && !state.get<std::string>().empty())
    out += upper(state.get<std::string>()) + " ";

  const bool icmp = proto.name == "icmp" || proto.name == "icmpv6";
  auto tuple = [&](const std::string& src, const std::string& dst, const std::string& sport,
                   const std::string& dport) {
    std::string t = "src=" + src + " dst=" + dst + " ";
    if (icmp)
      t += "id=" + sport + " ";
    else
      t += "sport=" + sport + " dport=" + dport + " ";
    return t;
  };
  const std::string src = field_text(c, "src"), dst = field_text(c, "dst");
  const std::string sport = field_text(c, "sport"), dport = field_text(c, "dport");
  // Counters only with conntrack.accounting (as conntrack -L prints them only with acct on).
  const bool acct = !get(c, "packets_orig").is_null();
  auto counters = [&](const char* packets, const char* bytes) {
    return acct ? "packets=" + field_text(c, packets) + " bytes=" + field_text(c, bytes) + " "
                : std::string();
  };
  out += tuple(src, dst, sport, dport) + counters("packets_orig", "bytes_orig");
  // Reply tuple: NATed entries say where replies come from; otherwise it is the mirror.
  auto reply = [&](const char* key, const std::string& mirror) {
    const json& v = get(c, key);
    return v.is_null() ? mirror : scalar_text(v);
  };
  out += tuple(reply("reply_src", dst), reply("reply_dst", src), reply("reply_sport", dport),
               reply("reply_dport", sport)) +
         counters("packets_reply", "bytes_reply");
  out.pop_back();  // the last part's trailing space
  const json& flags = get(c, "flags");
  if (flags.is_array())
    for (const auto& f : flags)
      if (f.is_string()) out += " [" + upper(f.get<std::string>()) + "]";
  const json& vm = get(c, "vm");
  if (vm.is_string() && !vm.get<std::string>().empty()) out += " vm=" + vm.get<std::string>();
  const json& zone = get(c, "zone");
  if (zone.is_string() && !zone.get<std::string>().empty())
    out += " zone=" + zone.get<std::string>();
  if (int_field(c, "vlan") != 0) out += " vlan=" + field_text(c, "vlan");
  return out;
}

std::string render_conns(const nlohmann::json& conns) {
  std::string out;
  if (!conns.is_array()) return render_generic(conns);
  for (const auto& c : conns) out += render_conn_line(c) + "\n";
  return out;
}

std::string render_ports(const nlohmann::json& ports) {
  static const char* kKeys[] = {"name",       "device",     "zone",     "rx_packets",
                                "rx_bytes",   "tx_packets", "tx_bytes", "rx_errors",
                                "tx_errors",  "rx_missed"};
  std::vector<std::vector<std::string>> rows;
  if (ports.is_array())
    for (const auto& p : ports) {
      std::vector<std::string> row;
      for (const char* k : kKeys) row.push_back(field_text(p, k));
      rows.push_back(std::move(row));
    }
  return render_table({"NAME", "DEVICE", "ZONE", "RX_PKTS", "RX_BYTES", "TX_PKTS", "TX_BYTES",
                       "RX_ERR", "TX_ERR", "RX_MISSED"},
                      rows, {false, false, false, true, true, true, true, true, true, true});
}

std::string render_workers(const nlohmann::json& workers) {
  std::vector<std::vector<std::string>> rows;
  if (workers.is_array())
    for (const auto& w : workers) {
      std::string busy = "-";
      const json& b = get(w, "busy_ratio");
      if (b.is_number()) {
        char buf[32];
        std::snprintf(buf, sizeof buf, "%.1f%%", b.get<double>() * 100.0);
        busy = buf;
      }
      rows.push_back({field_text(w, "id"), field_text(w, "lcore"), field_text(w, "rx_packets"),
                      field_text(w, "tx_packets"), field_text(w, "dropped"), busy,
                      field_text(w, "connections")});
    }
  return render_table({"ID", "LCORE", "RX_PKTS", "TX_PKTS", "DROPPED", "BUSY", "CONNS"}, rows,
                      {true, true, true, true, true, true, true});
}

namespace {
// A VM's QoS rate in bit/s with an SI prefix ("40M"), "-" without one.
std::string qos_rate_text(const json& v) {
  const json& rate = get(get(v, "qos"), "rate_bps");
  if (!rate.is_number()) return "-";
  double r = rate.get<double>();
  const char* unit = "";
  for (const char* u : {"k", "M", "G"}) {
    if (r < 1000 || std::fmod(r, 1000) != 0) break;
    r /= 1000;
    unit = u;
  }
  char buf[32];
  std::snprintf(buf, sizeof buf, "%g%s", r, unit);
  return buf;
}
// Its drops, from the VM / to the VM.
std::string qos_drops_text(const json& v) {
  const json& q = get(v, "qos");
  if (!q.is_object()) return "-";
  return field_text(q, "dropped_from_vm") + "/" + field_text(q, "dropped_to_vm");
}
// Its lifetime bytes (here and carried by migrations), from the VM / to the VM.
std::string lifetime_bytes_text(const json& v) {
  const json& t = get(v, "lifetime");
  if (!t.is_object()) return "-";
  return field_text(get(t, "from_vm"), "bytes") + "/" + field_text(get(t, "to_vm"), "bytes");
}
// Its unfinished handshakes, opened by the VM / to it, and the profile's limit if any.
std::string half_open_text(const json& v) {
  const json& h = get(v, "half_open");
  if (!h.is_object()) return "-";
  std::string t = field_text(h, "from_vm") + "/" + field_text(h, "to_vm");
  if (get(h, "limit").is_number()) t += " max " + field_text(h, "limit");
  return t;
}
}  // namespace

std::string render_vms(const nlohmann::json& vms) {
  std::vector<std::vector<std::string>> rows;
  if (vms.is_array())
    for (const auto& v : vms)
      rows.push_back({field_text(v, "id"), field_text(v, "name"), field_text(v, "mac"),
                      field_text(v, "ipv4"), field_text(v, "ipv6"), field_text(v, "vlan"),
                      field_text(v, "state"), field_text(v, "connections"),
                      lifetime_bytes_text(v), half_open_text(v), qos_rate_text(v),
                      qos_drops_text(v)});
  return render_table({"ID", "NAME", "MAC", "IPV4", "IPV6", "VLAN", "STATE", "CONNS",
                       "BYTES_FROM/TO", "HALF_OPEN", "QOS", "QOS_DROPS"},
                      rows,
                      {true, false, false, false, false, true, false, true, true, true, true, true});
}

std::string render_nat_mappings(const nlohmann::json& mappings) {
  std::vector<std::vector<std::string>> rows;
  if (mappings.is_array())
    for (const auto& m : mappings)
      rows.push_back({field_text(m, "type"), field_text(m, "proto"), field_text(m, "inside"),
                      field_text(m, "outside"), field_text(m, "sessions"),
                      field_text(m, "expires_in_s"), field_text(m, "owner")});
  return render_table({"TYPE", "PROTO", "INSIDE", "OUTSIDE", "SESSIONS", "EXPIRES", "WORKER"}, rows,
                      {false, false, false, false, true, true, true});
}

std::string render_lb_pools(const nlohmann::json& pools) {
  std::vector<std::vector<std::string>> rows;
  if (pools.is_array())
    for (const auto& p : pools) {
      const json& backends = get(p, "backends");
      if (!backends.is_array()) continue;
      for (const auto& b : backends)
        rows.push_back({field_text(p, "name"), field_text(b, "address") + ":" + field_text(b, "port"),
                        field_text(b, "weight"), field_text(b, "admin"),
                        b.value("healthy", false) ? "up" : "down",
                        field_text(b, "active_connections"), field_text(b, "total_connections")});
    }
  return render_table({"POOL", "BACKEND", "WEIGHT", "ADMIN", "HEALTH", "ACTIVE", "TOTAL"}, rows,
                      {false, false, true, false, false, true, true});
}

std::string render_counters(const nlohmann::json& counters) {
  std::string out;
  const json& totals = get(counters, "totals");
  if (totals.is_object() && !totals.empty()) {
    std::vector<std::vector<std::string>> rows;
    for (const auto& [k, v] : totals.items()) rows.push_back({k, scalar_text(v)});
    out += render_table({"TOTAL", "VALUE"}, rows, {false, true});
  }
  const json& drops = get(counters, "drops");
  if (drops.is_object()) {
    std::vector<std::pair<std::string, const json*>> items;
    for (const auto& [k, v] : drops.items()) items.emplace_back(k, &v);
    // Largest first: the reason to look at is at the top. Ties by name, for stable output.
    std::stable_sort(items.begin(), items.end(), [](const auto& a, const auto& b) {
      const double x = a.second->is_number() ? a.second->template get<double>() : 0;
      const double y = b.second->is_number() ? b.second->template get<double>() : 0;
      return x != y ? x > y : a.first < b.first;
    });
    std::vector<std::vector<std::string>> rows;
    for (const auto& [k, v] : items) rows.push_back({k, scalar_text(*v)});
    if (!out.empty()) out += "\n";
    out += render_table({"DROP_REASON", "PACKETS"}, rows, {false, true});
  }
  if (out.empty()) out = render_generic(counters);
  return out;
}

std::string render_generic(const nlohmann::json& value) {
  if (value.is_array()) {
    if (value.empty()) return "(none)\n";
    // Union of keys, in first-seen order.
    std::vector<std::string> keys;
    std::set<std::string> seen;
    bool all_objects = true;
    for (const auto& e : value) {
      if (!e.is_object()) {
        all_objects = false;
        break;
      }
      for (const auto& [k, v] : e.items())
        if (seen.insert(k).second) keys.push_back(k);
    }
    if (!all_objects) {
      std::string out;
      for (const auto& e : value) out += (e.is_structured() ? e.dump() : scalar_text(e)) + "\n";
      return out;
    }
    std::vector<std::string> headers;
    std::vector<bool> right;
    for (const auto& k : keys) {
      headers.push_back(upper(k));
      right.push_back(value.front().is_object() && get(value.front(), k.c_str()).is_number());
    }
    std::vector<std::vector<std::string>> rows;
    for (const auto& e : value) {
      std::vector<std::string> row;
      for (const auto& k : keys) {
        const json& v = get(e, k.c_str());
        row.push_back(v.is_object() ? v.dump() : scalar_text(v));
      }
      rows.push_back(std::move(row));
    }
    return render_table(headers, rows, right);
  }
  if (value.is_object()) {
    std::size_t width = 0;
    for (const auto& [k, v] : value.items()) width = std::max(width, k.size());
    std::string out;
    for (const auto& [k, v] : value.items()) {
      out += k + ":";
      out.append(width - k.size() + 1, ' ');
      out += (v.is_object() ? v.dump() : scalar_text(v)) + "\n";
    }
    return out;
  }
  return scalar_text(value) + "\n";
}

}  // namespace baton::control
