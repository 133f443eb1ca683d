// SPDX-License-Identifier: Apache-2.0
//
// YAML -> Config. Theory of operation: the file is read into a yaml-cpp node tree (syntax errors
// stop here with the parser's mark), then walked once against the schema in docs/CONFIG.md.
// Every map goes through MapReader, which refuses unknown and duplicate keys, so a typo is an
// error rather than a silently ignored line. Scalars are converted by small typed readers that
// know the allowed range. Names are collected with the line that defined them, and references
// (port -> zone, rule -> zone, route -> port) are resolved after the whole tree has been read,
// because YAML does not order sections. The first problem found aborts with file:line: reason;
// nothing is returned unless the whole file is valid.
#include <yaml-cpp/yaml.h>

#include <cctype>
#include <cstdlib>
#include <fstream>
#include <map>
#include <set>
#include <sstream>
#include <string_view>

#include "config/config.h"

namespace baton {

namespace {

// Thrown inside the loader only; load/parse_config turn it into a ConfigError.
struct Fail {
  int line;
  std::string reason;
};

[[noreturn]] void fail(int line, std::string reason) { throw Fail{line, std::move(reason)}; }

int line_of(const YAML::Node& n) {
  if (!n.IsDefined()) return 0;
  YAML::Mark m = n.Mark();
  return m.is_null() ? 0 : m.line + 1;
}

const char* kind(const YAML::Node& n) {
  switch (n.Type()) {
    case YAML::NodeType::Null: return "nothing";
    case YAML::NodeType::Scalar: return "a scalar";
    case YAML::NodeType::Sequence: return "a list";
    case YAML::NodeType::Map: return "a map";
    default: return "an undefined value";
  }
}

// A value together with where it came from: its path in the schema ("ports[1].zone") and the
// line to blame (the value's own line, or its key's when the value is empty).
struct Val {
  YAML::Node node;
  int line = 0;
  std::string path;
};

std::string quoted(const std::string& s) { return "'" + s + "'"; }

std::string scalar(const Val& v, const char* expected) {
  if (!v.node.IsScalar())
    fail(v.line, v.path + ": expected " + expected + ", got " + kind(v.node));
  return v.node.Scalar();
}

// A YAML map checked against the keys the schema allows at this place.
class MapReader {
 public:
  MapReader(const Val& v, std::initializer_list<std::string_view> known) : path_(v.path) {
    line_ = v.line;
    if (v.node.IsNull()) return;  // "key:" with nothing under it reads as an empty map
    if (!v.node.IsMap())
      fail(v.line, (path_.empty() ? "top level" : path_) + ": expected a map, got " +
                       kind(v.node));
    for (auto it = v.node.begin(); it != v.node.end(); ++it) {
      int key_line = line_of(it->first);
      if (!it->first.IsScalar()) fail(key_line, where() + "keys must be plain names");
      std::string key = it->first.Scalar();
      bool ok = false;
      for (auto k : known) ok = ok || k == key;
      if (!ok) {
        std::string list;
        for (auto k : known) list += (list.empty() ? "" : ", ") + std::string(k);
        fail(key_line, where() + "unknown key " + quoted(key) + " (expected one of: " + list +
                           ")");
      }
      for (auto& e : entries_)
        if (e.first == key)
          fail(key_line, where() + "duplicate key " + quoted(key) + " (first at line " +
                             std::to_string(e.second.line) + ")");
      int value_line = line_of(it->second);
      entries_.push_back({key, Val{it->second, value_line > 0 ? value_line : key_line,
                                   path_.empty() ? key : path_ + "." + key}});
    }
  }

  const Val* get(std::string_view key) const {
    for (auto& e : entries_)
      if (e.first == key) return &e.second;
    return nullptr;
  }
  const Val& require(std::string_view key) const {
    if (auto* v = get(key)) return *v;
    fail(line_, where() + "missing required key " + quoted(std::string(key)));
  }
  int line() const { return line_; }
  const std::string& path() const { return path_; }

 private:
  std::string where() const { return path_.empty() ? "" : path_ + ": "; }
  std::string path_;
  int line_ = 0;
  std::vector<std::pair<std::string, Val>> entries_;
};

std::vector<Val> list_of(const Val& v) {
  std::vector<Val> out;
  if (v.node.IsNull()) return out;
  if (!v.node.IsSequence()) fail(v.line, v.path + ": expected a list, got " + kind(v.node));
  for (size_t i = 0; i < v.node.size(); i++) {
    YAML::Node e = v.node[i];
    int l = line_of(e);
    out.push_back(Val{e, l > 0 ? l : v.line, v.path + "[" + std::to_string(i) + "]"});
  }
  return out;
}

std::string str(const Val& v) {
  return scalar(v, "a string");
}

// Names appear in metric labels and API paths: keep them to a safe alphabet.
std::string name_of(const Val& v) {
  std::string s = str(v);
  if (s.empty() || s.size() > 32) fail(v.line, v.path + ": a name has 1 to 32 characters");
  for (char c : s)
    if (!(std::isalnum(static_cast<unsigned char>(c)) || c == '-' || c == '_' || c == '.'))
      fail(v.line, v.path + ": name " + quoted(s) + " may only use letters, digits, '-', '_', '.'");
  return s;
}

uint64_t parse_uint_text(const std::string& s, bool* ok) {
  *ok = !s.empty() && s.size() <= 19;
  uint64_t r = 0;
  for (char c : s) {
    if (c < '0' || c > '9') *ok = false;
    r = r * 10 + static_cast<uint64_t>(c - '0');
  }
  return *ok ? r : 0;
}

uint64_t uint_in(const Val& v, uint64_t lo, uint64_t hi) {
  std::string s = scalar(v, "an integer");
  std::string range = std::to_string(lo) + ".." + std::to_string(hi);
  bool ok;
  uint64_t r = parse_uint_text(s, &ok);
  if (!ok) fail(v.line, v.path + ": expected an integer in " + range + ", got " + quoted(s));
  if (r < lo || r > hi)
    fail(v.line, v.path + ": " + s + " is out of range " + range);
  return r;
}

bool boolean(const Val& v) {
  std::string s = scalar(v, "true or false");
  if (s == "true" || s == "yes" || s == "on") return true;
  if (s == "false" || s == "no" || s == "off") return false;
  fail(v.line, v.path + ": expected true or false, got " + quoted(s));
}

Action action_of(const Val& v) {
  std::string s = scalar(v, "permit or deny");
  if (s == "permit") return Action::kPermit;
  if (s == "deny") return Action::kDeny;
  fail(v.line, v.path + ": expected permit or deny, got " + quoted(s));
}

IpAddr ip_of(const Val& v, Family* f) {
  std::string s = scalar(v, "an IP address");
  auto a = IpAddr::parse(s, f);
  if (!a) fail(v.line, v.path + ": bad IP address " + quoted(s));
  return *a;
}

// "addr/len" or a bare address (host prefix). With allow_host_bits the address keeps its host
// bits (an interface address such as 192.0.2.1/24); otherwise they must be zero, because
// "10.1.0.5/16" in a rule is almost always a typo for a host or for 10.1.0.0/16.
Prefix prefix_of(const Val& v, bool allow_host_bits) {
  std::string s = scalar(v, "an address prefix");
  auto p = Prefix::parse(s);
  if (!p) fail(v.line, v.path + ": bad address prefix " + quoted(s));
  std::string addr_text = s.substr(0, s.find('/'));
  Family f;
  IpAddr full = *IpAddr::parse(addr_text, &f);
  if (allow_host_bits) {
    p->addr = full;
  } else if (!(full == p->addr)) {
    fail(v.line, v.path + ": host bits set in " + quoted(s) + " (did you mean " +
                     p->to_string() + "?)");
  }
  return *p;
}

MacAddr mac_of(const Val& v) {
  std::string s = scalar(v, "a MAC address");
  auto m = MacAddr::parse(s);
  if (!m || s.size() != 17) fail(v.line, v.path + ": bad MAC address " + quoted(s) +
                                             " (expected xx:xx:xx:xx:xx:xx)");
  return *m;
}

uint8_t proto_of(const Val& v) {
  std::string s = scalar(v, "a protocol");
  if (s == "tcp") return 6;
  if (s == "udp") return 17;
  if (s == "icmp") return 1;
  if (s == "icmpv6") return 58;
  bool ok;
  uint64_t n = parse_uint_text(s, &ok);
  if (!ok || n > 255)
    fail(v.line, v.path + ": bad protocol " + quoted(s) +
                     " (expected tcp, udp, icmp, icmpv6 or a number 0..255)");
  return static_cast<uint8_t>(n);
}

PortRange port_range_of(const Val& v) {
  std::string s = scalar(v, "a port or a range \"lo-hi\"");
  auto dash = s.find('-');
  bool ok1, ok2 = true;
  uint64_t lo = parse_uint_text(s.substr(0, dash), &ok1), hi = lo;
  if (dash != std::string::npos) hi = parse_uint_text(s.substr(dash + 1), &ok2);
  if (!ok1 || !ok2)
    fail(v.line, v.path + ": bad port " + quoted(s) + " (expected a number or \"lo-hi\")");
  if (lo > 65535 || hi > 65535) fail(v.line, v.path + ": port " + quoted(s) +
                                                 " is out of range 0..65535");
  if (lo > hi) fail(v.line, v.path + ": port range " + quoted(s) + " has lo > hi");
  return PortRange{static_cast<uint16_t>(lo), static_cast<uint16_t>(hi)};
}

// "host:port" where host is an IPv4 literal, a bracketed IPv6 literal or a DNS name.
std::string endpoint_of(const Val& v, bool allow_port_zero) {
  std::string s = str(v);
  auto colon = s.rfind(':');
  std::string host = colon == std::string::npos ? "" : s.substr(0, colon);
  bool ok = colon != std::string::npos && !host.empty();
  uint64_t port = ok ? parse_uint_text(s.substr(colon + 1), &ok) : 0;
  if (ok && host.front() == '[') {
    Family f;
    ok = host.back() == ']' && IpAddr::parse(host.substr(1, host.size() - 2), &f) &&
         f == Family::kV6;
  } else if (ok) {
    for (char c : host)
      ok = ok && (std::isalnum(static_cast<unsigned char>(c)) || c == '.' || c == '-');
  }
  if (!ok) fail(v.line, v.path + ": bad address " + quoted(s) +
                            " (expected host:port, e.g. 127.0.0.1:9090 or [::1]:9090)");
  if (port > 65535 || (port == 0 && !allow_port_zero))
    fail(v.line, v.path + ": port in " + quoted(s) + " is out of range " +
                     (allow_port_zero ? "0" : "1") + "..65535");
  return s;
}

// A name defined somewhere, or a reference to one, with the line to blame.
struct Named {
  std::string name;
  int line;
};

class Loader {
 public:
  explicit Loader(Config* c) : c_(*c) {}

  void load(const YAML::Node& root) {
    if (!root.IsDefined() || root.IsNull()) fail(1, "the file is empty");
    MapReader top(Val{root, line_of(root), ""},
                  {"instance", "mode", "workers", "burst", "eal", "ports", "zones", "acl",
                   "conntrack", "vms", "l3", "control", "metrics", "migration"});
    if (auto* v = top.get("instance")) c_.instance = name_of(*v);
    int mode_line = top.line();
    if (auto* v = top.get("mode")) {
      std::string m = scalar(*v, "l2 or l3");
      if (m == "l2") c_.mode = Mode::kL2;
      else if (m == "l3") c_.mode = Mode::kL3;
      else fail(v->line, "mode: expected l2 or l3, got " + quoted(m));
      mode_line = v->line;
    }
    if (auto* v = top.get("workers")) c_.workers = static_cast<uint16_t>(uint_in(*v, 1, 64));
    if (auto* v = top.get("burst")) c_.burst = static_cast<uint32_t>(uint_in(*v, 1, 1024));
    if (auto* v = top.get("eal")) eal(*v);
    int ports_line = top.line();
    if (auto* v = top.get("ports")) {
      ports_line = v->line;
      for (auto& e : list_of(*v)) port(e);
    }
    if (auto* v = top.get("zones")) {
      for (auto& e : list_of(*v)) zone(e);
      if (c_.zones.size() > 256) fail(v->line, "zones: at most 256 zones");
    }
    if (auto* v = top.get("acl"))
      for (auto& e : list_of(*v)) c_.acl.push_back(rule(e, nullptr));
    if (auto* v = top.get("conntrack")) conntrack(*v);
    if (auto* v = top.get("vms"))
      for (auto& e : list_of(*v)) vm(e);
    if (auto* v = top.get("l3")) l3(*v);
    if (auto* v = top.get("control")) {
      MapReader m(*v, {"listen"});
      if (auto* l = m.get("listen")) c_.control.listen = endpoint_of(*l, true);
    }
    if (auto* v = top.get("metrics")) {
      MapReader m(*v, {"listen"});
      if (auto* l = m.get("listen")) c_.metrics.listen = endpoint_of(*l, true);
    }
    if (auto* v = top.get("migration")) migration(*v);

    // Whole-file checks, after every section has been read.
    if (c_.ports.empty()) fail(ports_line, "ports: at least one port is required");
    if (c_.mode == Mode::kL2 && c_.ports.size() != 2)
      fail(mode_line, "mode l2 (bump in the wire) needs exactly 2 ports, " +
                          std::to_string(c_.ports.size()) + " given");
    for (auto& r : zone_refs_)
      if (!zones_.count(r.name))
        fail(r.line, "unknown zone " + quoted(r.name) + " (zones: " + names(zones_) + ")");
    for (auto& r : port_refs_)
      if (!ports_.count(r.name))
        fail(r.line, "unknown port " + quoted(r.name) + " (ports: " + names(ports_) + ")");
    for (auto& [name, line] : vms_)
      if (zones_.count(name))
        fail(line, "vm " + quoted(name) + " has the name of a zone (its profile rules would "
                   "be ambiguous)");
  }

 private:
  static std::string names(const std::map<std::string, int>& m) {
    std::string s;
    for (auto& [n, l] : m) s += (s.empty() ? "" : ", ") + n;
    return s.empty() ? "none defined" : s;
  }

  // Records a definition; a second one with the same name is refused.
  static void define(std::map<std::string, int>* m, const char* what, const std::string& name,
                     int line) {
    auto [it, fresh] = m->emplace(name, line);
    if (!fresh)
      fail(line, std::string("duplicate ") + what + " " + quoted(name) +
                     " (first defined at line " + std::to_string(it->second) + ")");
  }

  void eal(const Val& v) {
    MapReader m(v, {"file_prefix", "memory_mb", "no_huge", "extra_args"});
    if (auto* x = m.get("file_prefix")) c_.eal.file_prefix = name_of(*x);
    if (auto* x = m.get("memory_mb"))
      c_.eal.memory_mb = static_cast<uint32_t>(uint_in(*x, 16, 1u << 20));
    if (auto* x = m.get("no_huge")) c_.eal.no_huge = boolean(*x);
    if (auto* x = m.get("extra_args"))
      for (auto& e : list_of(*x)) c_.eal.extra_args.push_back(str(e));
  }

  void port(const Val& v) {
    MapReader m(v, {"name", "device", "zone", "rx_desc", "tx_desc"});
    PortConfig p;
    p.name = name_of(m.require("name"));
    p.device = str(m.require("device"));
    if (p.device.empty()) fail(m.require("device").line, m.path() + ".device: must not be empty");
    const Val& z = m.require("zone");
    p.zone = name_of(z);
    zone_refs_.push_back({p.zone, z.line});
    if (auto* x = m.get("rx_desc")) p.rx_desc = static_cast<uint16_t>(uint_in(*x, 32, 32768));
    if (auto* x = m.get("tx_desc")) p.tx_desc = static_cast<uint16_t>(uint_in(*x, 32, 32768));
    define(&ports_, "port", p.name, m.require("name").line);
    for (auto& other : c_.ports)
      if (other.device == p.device)
        fail(m.require("device").line, "ports " + quoted(other.name) + " and " +
                                           quoted(p.name) + " use the same device " +
                                           quoted(p.device));
    c_.ports.push_back(std::move(p));
  }

  void zone(const Val& v) {
    MapReader m(v, {"name", "default"});
    ZoneConfig z;
    z.name = name_of(m.require("name"));
    if (auto* x = m.get("default")) z.default_action = action_of(*x);
    define(&zones_, "zone", z.name, m.require("name").line);
    c_.zones.push_back(std::move(z));
  }

  // vm_name != nullptr: a rule inside a VM profile, whose zone is the VM itself.
  AclRule rule(const Val& v, const std::string* vm_name) {
    std::initializer_list<std::string_view> keys_zone = {"zone", "src", "dst",   "proto", "sport",
                                                         "dport", "vlan", "action", "log"};
    std::initializer_list<std::string_view> keys_vm = {"src",  "dst",    "proto", "sport",
                                                       "dport", "vlan", "action", "log"};
    MapReader m(v, vm_name ? keys_vm : keys_zone);
    AclRule r;
    r.line = m.line();
    if (vm_name) {
      r.zone = *vm_name;
    } else {
      const Val& z = m.require("zone");
      r.zone = name_of(z);
      zone_refs_.push_back({r.zone, z.line});
    }
    if (auto* x = m.get("src")) r.src = prefix_of(*x, false);
    if (auto* x = m.get("dst")) r.dst = prefix_of(*x, false);
    if (r.src && r.dst && r.src->family != r.dst->family)
      fail(m.get("dst")->line, m.path() + ": src and dst are of different address families");
    if (auto* x = m.get("proto")) r.proto = proto_of(*x);
    if (auto* x = m.get("sport")) r.sport = port_range_of(*x);
    if (auto* x = m.get("dport")) r.dport = port_range_of(*x);
    if (auto* x = m.get("vlan")) r.vlan = static_cast<uint16_t>(uint_in(*x, 0, 4095));
    r.action = action_of(m.require("action"));
    if (auto* x = m.get("log")) r.log = boolean(*x);
    return r;
  }

  void conntrack(const Val& v) {
    MapReader m(v, {"capacity", "timeouts"});
    if (auto* x = m.get("capacity"))
      c_.conntrack.capacity = static_cast<uint32_t>(uint_in(*x, 1, UINT32_MAX));
    auto* t = m.get("timeouts");
    if (!t) return;
    Timeouts& to = c_.conntrack.timeouts;
    struct Field {
      const char* key;
      uint32_t* dst;
    } fields[] = {{"tcp_syn_sent", &to.tcp_syn_sent},       {"tcp_syn_recv", &to.tcp_syn_recv},
                  {"tcp_established", &to.tcp_established}, {"tcp_fin_wait", &to.tcp_fin_wait},
                  {"tcp_close_wait", &to.tcp_close_wait},   {"tcp_last_ack", &to.tcp_last_ack},
                  {"tcp_time_wait", &to.tcp_time_wait},     {"tcp_close", &to.tcp_close},
                  {"udp", &to.udp},                         {"udp_stream", &to.udp_stream},
                  {"icmp", &to.icmp}};
    MapReader tm(*t, {"tcp_syn_sent", "tcp_syn_recv", "tcp_established", "tcp_fin_wait",
                      "tcp_close_wait", "tcp_last_ack", "tcp_time_wait", "tcp_close", "udp",
                      "udp_stream", "icmp"});
    for (auto& f : fields)
      if (auto* x = tm.get(f.key)) *f.dst = static_cast<uint32_t>(uint_in(*x, 1, UINT32_MAX));
  }

  void vm(const Val& v) {
    MapReader m(v, {"name", "mac", "ipv4", "ipv6", "vlan", "profile"});
    VmConfig vm;
    const Val& n = m.require("name");
    vm.name = name_of(n);
    define(&vms_, "vm", vm.name, n.line);
    const Val& mac = m.require("mac");
    vm.mac = mac_of(mac);
    if (vm.mac.is_multicast() || vm.mac == MacAddr{})
      fail(mac.line, mac.path + ": " + quoted(vm.mac.to_string()) +
                         " is not a unicast MAC address");
    define(&macs_, "vm MAC", vm.mac.to_string(), mac.line);
    auto addresses = [&](const char* key, Family want, std::vector<IpAddr>* out) {
      auto* x = m.get(key);
      if (!x) return;
      for (auto& e : list_of(*x)) {
        Family f;
        IpAddr a = ip_of(e, &f);
        if (f != want)
          fail(e.line, e.path + ": " + quoted(e.node.Scalar()) + " is not an " +
                           (want == Family::kV4 ? "IPv4" : "IPv6") + " address");
        define(&vm_ips_, "vm address", a.to_string(f), e.line);
        out->push_back(a);
      }
    };
    addresses("ipv4", Family::kV4, &vm.ipv4);
    addresses("ipv6", Family::kV6, &vm.ipv6);
    if (auto* x = m.get("vlan")) vm.vlan = static_cast<uint16_t>(uint_in(*x, 0, 4095));
    if (auto* x = m.get("profile")) {
      MapReader pm(*x, {"qos_rate_bps", "nat_public_ip", "acl"});
      if (auto* q = pm.get("qos_rate_bps")) vm.profile.qos_rate_bps = uint_in(*q, 0, UINT64_MAX / 2);
      if (auto* q = pm.get("nat_public_ip")) {
        Family f;
        vm.profile.nat_public_ip = ip_of(*q, &f);
      }
      if (auto* q = pm.get("acl"))
        for (auto& e : list_of(*q)) vm.profile.acl.push_back(rule(e, &vm.name));
    }
    c_.vms.push_back(std::move(vm));
  }

  void l3(const Val& v) {
    MapReader m(v, {"addresses", "routes"});
    if (auto* x = m.get("addresses"))
      for (auto& e : list_of(*x)) {
        MapReader am(e, {"port", "address"});
        L3Address a;
        const Val& p = am.require("port");
        a.port = name_of(p);
        port_refs_.push_back({a.port, p.line});
        a.prefix = prefix_of(am.require("address"), true);
        c_.l3_addresses.push_back(std::move(a));
      }
    if (auto* x = m.get("routes"))
      for (auto& e : list_of(*x)) {
        MapReader rm(e, {"prefix", "via", "port"});
        Route r;
        r.prefix = prefix_of(rm.require("prefix"), false);
        if (auto* via = rm.get("via")) {
          Family f;
          r.via = ip_of(*via, &f);
          if (f != r.prefix.family)
            fail(via->line, rm.path() + ": next hop and prefix are of different families");
        }
        const Val& p = rm.require("port");
        r.port = name_of(p);
        port_refs_.push_back({r.port, p.line});
        c_.routes.push_back(std::move(r));
      }
  }

  void migration(const Val& v) {
    MapReader m(v, {"enabled", "listen", "cert", "key", "ca", "peers", "hold_packets",
                    "timeout_ms", "headroom_percent", "max_delta_rounds"});
    MigrationConfig& g = c_.migration;
    if (auto* x = m.get("enabled")) g.enabled = boolean(*x);
    if (auto* x = m.get("listen")) g.listen = endpoint_of(*x, true);
    if (auto* x = m.get("cert")) g.cert = str(*x);
    if (auto* x = m.get("key")) g.key = str(*x);
    if (auto* x = m.get("ca")) g.ca = str(*x);
    if (auto* x = m.get("peers"))
      for (auto& e : list_of(*x)) {
        MapReader pm(e, {"name", "address"});
        PeerConfig p;
        const Val& n = pm.require("name");
        p.name = name_of(n);
        define(&peers_, "peer", p.name, n.line);
        p.address = endpoint_of(pm.require("address"), false);
        g.peers.push_back(std::move(p));
      }
    if (auto* x = m.get("hold_packets"))
      g.hold_packets = static_cast<uint32_t>(uint_in(*x, 1, 1u << 20));
    if (auto* x = m.get("timeout_ms"))
      g.timeout_ms = static_cast<uint32_t>(uint_in(*x, 1, 3600 * 1000));
    if (auto* x = m.get("headroom_percent"))
      g.headroom_percent = static_cast<uint32_t>(uint_in(*x, 0, 100));
    if (auto* x = m.get("max_delta_rounds"))
      g.max_delta_rounds = static_cast<uint32_t>(uint_in(*x, 1, 1000));
    // Mutual TLS is not optional: a migration carries a VM's connection state.
    if (g.enabled && (!g.listen.empty() || !g.peers.empty()))
      for (const char* k : {"cert", "key", "ca"})
        if (!m.get(k))
          fail(m.line(), "migration: " + std::string(k) +
                             " is required when migration is enabled with a listen address "
                             "or peers (mutual TLS)");
  }

  Config& c_;
  std::map<std::string, int> ports_, zones_, vms_, macs_, vm_ips_, peers_;
  std::vector<Named> zone_refs_, port_refs_;
};

std::optional<Config> parse_root(const std::string& text, const std::string& name,
                                 ConfigError* err) {
  Config c;
  c.file = name;
  try {
    YAML::Node root = YAML::Load(text);
    Loader(&c).load(root);
  } catch (const Fail& f) {
    if (err) *err = ConfigError{name, f.line, f.reason};
    return std::nullopt;
  } catch (const YAML::Exception& e) {
    if (err)
      *err = ConfigError{name, e.mark.is_null() ? 0 : e.mark.line + 1,
                         "YAML syntax error: " + e.msg};
    return std::nullopt;
  }
  return c;
}

}  // namespace

std::optional<Config> parse_config(const std::string& yaml_text, const std::string& name,
                                   ConfigError* err) {
  return parse_root(yaml_text, name, err);
}

std::optional<Config> load_config(const std::string& path, ConfigError* err) {
  std::ifstream in(path);
  if (!in) {
    if (err) *err = ConfigError{path, 0, "cannot open the file"};
    return std::nullopt;
  }
  std::stringstream ss;
  ss << in.rdbuf();
  auto c = parse_root(ss.str(), path, err);
  if (!c) return c;
  // TLS material named relative to the config file, so a config directory can be moved whole.
  auto slash = path.rfind('/');
  if (slash != std::string::npos) {
    std::string dir = path.substr(0, slash + 1);
    for (std::string* f : {&c->migration.cert, &c->migration.key, &c->migration.ca})
      if (!f->empty() && (*f)[0] != '/') *f = dir + *f;
  }
  return c;
}

}  // namespace baton
