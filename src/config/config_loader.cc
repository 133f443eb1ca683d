// SPDX-License-Identifier: Apache-2.0
//
// YAML -> Config. Theory of operation: the file is read into a yaml-cpp node tree (syntax errors
// stop here with the parser's mark), then walked once against the schema in docs/CONFIG.md.
// Every map goes through MapReader, which refuses unknown and duplicate keys, so a typo is an
// error rather than a silently ignored line. Scalars are converted by small typed readers that
// know the allowed range. Names are collected with the line that defined them, and references
// (port -> zone, rule -> zone, route -> port, service -> pool) are resolved after the whole tree
// has been read, because YAML does not order sections. So is the one-owner rule for outside
// addresses (NAT pools, static and port-forward addresses, VIPs, local addresses; see
// check_claims). The first problem found aborts with file:line: reason; nothing is returned
// unless the whole file is valid.
#include <yaml-cpp/yaml.h>

#include <algorithm>
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

// "n" or "lo-hi", inclusive, each in lo_min..hi_max; what names the thing ("port").
std::pair<uint64_t, uint64_t> range_of(const Val& v, uint64_t lo_min, uint64_t hi_max,
                                       const std::string& what) {
  std::string s = scalar(v, ("a " + what + " or a range \"lo-hi\"").c_str());
  auto dash = s.find('-');
  bool ok1, ok2 = true;
  uint64_t lo = parse_uint_text(s.substr(0, dash), &ok1), hi = lo;
  if (dash != std::string::npos) hi = parse_uint_text(s.substr(dash + 1), &ok2);
  if (!ok1 || !ok2)
    fail(v.line, v.path + ": bad " + what + " " + quoted(s) + " (expected a number or \"lo-hi\")");
  if (std::min(lo, hi) < lo_min || std::max(lo, hi) > hi_max)
    fail(v.line, v.path + ": " + what + " " + quoted(s) + " is out of range " +
                     std::to_string(lo_min) + ".." + std::to_string(hi_max));
  if (lo > hi) fail(v.line, v.path + ": " + what + " range " + quoted(s) + " has lo > hi");
  return {lo, hi};
}

PortRange port_range_of(const Val& v, uint16_t lo_min = 0) {
  auto [lo, hi] = range_of(v, lo_min, 65535, "port");
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

// ---- NAT and load balancer scalars. Both are IPv4 only (issue 4), so every address here refuses
// IPv6 with a reason rather than "bad address".

std::string dotted(const IpAddr& a) { return a.to_string(Family::kV4); }

// A host address batond may translate to or from: not 0/8 ("this network"), loopback,
// multicast, reserved (240/4) or broadcast.
bool is_unicast_v4(const IpAddr& a) {
  uint32_t h = a.as_v4().host();
  return (h >> 24) != 0 && (h >> 24) != 127 && (h >> 28) < 14;
}

IpAddr v4_text(const Val& v, const std::string& text) {
  Family f;
  auto a = IpAddr::parse(text, &f);
  if (!a) fail(v.line, v.path + ": bad IP address " + quoted(text));
  if (f != Family::kV4)
    fail(v.line, v.path + ": " + quoted(text) +
                     " is an IPv6 address; NAT and the load balancer are IPv4 only");
  if (!is_unicast_v4(*a))
    fail(v.line, v.path + ": " + quoted(text) + " is not a unicast host address");
  return *a;
}

IpAddr v4_of(const Val& v) { return v4_text(v, scalar(v, "an IPv4 address")); }

Prefix v4_prefix_of(const Val& v) {
  Prefix p = prefix_of(v, false);
  if (p.family != Family::kV4)
    fail(v.line, v.path + ": " + quoted(v.node.Scalar()) +
                     " is an IPv6 prefix; NAT and the load balancer are IPv4 only");
  return p;
}

// "203.0.113.10:8080"
std::pair<IpAddr, uint16_t> v4_endpoint_of(const Val& v) {
  std::string s = scalar(v, "address:port");
  auto colon = s.find(':');
  if (!s.empty() && (s[0] == '[' || colon != s.rfind(':')))
    fail(v.line, v.path + ": " + quoted(s) +
                     " is an IPv6 endpoint; NAT and the load balancer are IPv4 only");
  bool ok = colon != std::string::npos;
  uint64_t port = ok ? parse_uint_text(s.substr(colon + 1), &ok) : 0;
  if (!ok) fail(v.line, v.path + ": bad address " + quoted(s) +
                            " (expected IPv4 address:port, e.g. 203.0.113.10:8080)");
  if (port < 1 || port > 65535)
    fail(v.line, v.path + ": port in " + quoted(s) + " is out of range 1..65535");
  return {v4_text(v, s.substr(0, colon)), static_cast<uint16_t>(port)};
}

// One of a fixed set of words, each mapped to a value.
template <typename E>
E word_of(const Val& v, std::initializer_list<std::pair<std::string_view, E>> words) {
  std::string list;
  for (auto& w : words) list += (list.empty() ? "" : ", ") + std::string(w.first);
  std::string s = scalar(v, list.c_str());
  for (auto& w : words)
    if (w.first == s) return w.second;
  fail(v.line, v.path + ": expected one of " + list + ", got " + quoted(s));
}

uint8_t l4_proto_of(const Val& v) { return word_of<uint8_t>(v, {{"tcp", 6}, {"udp", 17}}); }
const char* proto_name(uint8_t p) { return p == 6 ? "tcp" : "udp"; }

// RFC 4787 sections 4.1 and 5 name the same three behaviours for mapping and filtering.
NatBehavior nat_behavior_of(const Val& v) {
  return word_of<NatBehavior>(
      v, {{"endpoint-independent", NatBehavior::kEndpointIndependent},
          {"address-dependent", NatBehavior::kAddressDependent},
          {"address-and-port-dependent", NatBehavior::kAddressAndPortDependent}});
}

// An HTTP field or cookie name: an RFC 9110 section 5.6.2 token. Header names compare
// case-insensitively (RFC 9110 section 5.1), so they are stored lower-case; cookie names keep
// their case (RFC 6265 compares them exactly).
std::string http_token_of(const Val& v, bool lower) {
  const std::string s = str(v);
  if (s.empty() || s.size() > 64) fail(v.line, v.path + ": a name has 1 to 64 characters");
  std::string out = s;
  for (char& c : out) {
    bool tchar = std::isalnum(static_cast<unsigned char>(c)) ||
                 std::string_view("!#$%&'*+-.^_`|~").find(c) != std::string_view::npos;
    if (!tchar) fail(v.line, v.path + ": " + quoted(s) + " is not an HTTP token");
    if (lower) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  }
  return out;
}

// Text matched against a request (header or cookie value, path prefix): visible ASCII only, so
// it can never hold the CR/LF that ends a line in the request head.
std::string http_text_of(const Val& v) {
  std::string s = str(v);
  if (s.empty() || s.size() > 256) fail(v.line, v.path + ": expected 1 to 256 characters");
  for (char c : s)
    if (c < 0x21 || c > 0x7e)
      fail(v.line, v.path + ": " + quoted(s) + " may only hold visible ASCII (no spaces)");
  return s;
}

// A Host header value: a DNS name or address, optionally with :port. Stored lower-case because
// hosts compare case-insensitively (RFC 9110 section 7.2).
std::string http_host_of(const Val& v) {
  const std::string s = str(v);
  if (s.empty() || s.size() > 255) fail(v.line, v.path + ": a host has 1 to 255 characters");
  std::string out = s;
  for (char& c : out) {
    if (!(std::isalnum(static_cast<unsigned char>(c)) || c == '-' || c == '.' || c == ':' ||
          c == '[' || c == ']'))
      fail(v.line, v.path + ": " + quoted(s) + " is not a host name");
    c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  }
  return out;
}

bool is_prime(uint32_t n) {
  if (n < 2) return false;
  for (uint32_t d = 2; d * d <= n; d++)
    if (n % d == 0) return false;
  return true;
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
                   "conntrack", "vms", "l3", "control", "metrics", "migration", "nat", "lb"});
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
    if (auto* v = top.get("nat")) nat(*v);
    if (auto* v = top.get("lb")) lb(*v);

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
    if (c_.mode == Mode::kL2)
      for (auto [on, key] : {std::pair{c_.nat.enabled(), "nat"}, {c_.lb.enabled(), "lb"}})
        if (on)
          fail(mode_line, std::string("mode l2 (bump in the wire) cannot run ") + key +
                              ": it needs mode: l3 (translated and balanced flows are routed, "
                              "and a bump in the wire has no addresses of its own)");
    for (auto& r : pool_refs_)
      if (!pools_.count(r.name))
        fail(r.line, "unknown pool " + quoted(r.name) + " (pools: " + names(pools_) + ")");
    check_table_sizes();
    check_claims();
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
    MapReader m(v, {"capacity", "capacity_v6", "accounting", "timeouts"});
    if (auto* x = m.get("capacity"))
      c_.conntrack.capacity = static_cast<uint32_t>(uint_in(*x, 1, UINT32_MAX));
    if (auto* x = m.get("capacity_v6"))
      c_.conntrack.capacity_v6 = static_cast<uint32_t>(uint_in(*x, 0, UINT32_MAX));
    if (auto* x = m.get("accounting")) c_.conntrack.accounting = boolean(*x);
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
      MapReader pm(*x, {"qos_rate_bps", "nat_public_ip", "acl", "max_half_open"});
      if (auto* q = pm.get("qos_rate_bps")) vm.profile.qos_rate_bps = uint_in(*q, 0, UINT64_MAX / 2);
      if (auto* q = pm.get("max_half_open"))
        vm.profile.max_half_open = static_cast<uint32_t>(uint_in(*q, 0, UINT32_MAX));
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
                    "timeout_ms", "headroom_percent", "max_delta_rounds",
                    "resume_window_bytes", "resume_grace_ms"});
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
    if (auto* x = m.get("resume_window_bytes"))
      g.resume_window_bytes = static_cast<uint32_t>(uint_in(*x, 1u << 20, 1u << 30));
    if (auto* x = m.get("resume_grace_ms"))
      g.resume_grace_ms = static_cast<uint32_t>(uint_in(*x, 0, 3600 * 1000));
    // Mutual TLS is not optional: a migration carries a VM's connection state.
    if (g.enabled && (!g.listen.empty() || !g.peers.empty()))
      for (const char* k : {"cert", "key", "ca"})
        if (!m.get(k))
          fail(m.line(), "migration: " + std::string(k) +
                             " is required when migration is enabled with a listen address "
                             "or peers (mutual TLS)");
  }


  // ---- nat ------------------------------------------------------------------------------
  void nat(const Val& v) {
    MapReader m(v, {"mapping_timeout", "capacity", "hairpinning", "snat", "static",
                    "port_forward"});
    NatConfig& n = c_.nat;
    if (auto* x = m.get("mapping_timeout")) {
      n.mapping_timeout_s = static_cast<uint32_t>(uint_in(*x, 0, 86400));
      if (n.mapping_timeout_s < 120)
        fail(x->line, x->path + ": " + std::to_string(n.mapping_timeout_s) +
                          " is too short; RFC 4787 REQ-5 needs at least 120 seconds");
    }
    if (auto* x = m.get("capacity"))
      n.capacity = static_cast<uint32_t>(uint_in(*x, 1, kMaxTableEntries));
    if (auto* x = m.get("hairpinning")) n.hairpinning = boolean(*x);
    if (auto* x = m.get("snat"))
      for (auto& e : list_of(*x)) n.snat.push_back(snat_rule(e));
    if (auto* x = m.get("static"))
      for (auto& e : list_of(*x)) {
        MapReader sm(e, {"inside", "outside"});
        StaticNat st;
        st.line = sm.line();
        const Val& in = sm.require("inside");
        st.inside = v4_of(in);
        define(&static_inside_, "static NAT inside address", dotted(st.inside), in.line);
        const Val& out = sm.require("outside");
        st.outside = v4_of(out);
        claim(st.outside, 0, PortRange{}, out);  // 1:1 owns every port of its outside address
        n.static_nat.push_back(st);
      }
    if (auto* x = m.get("port_forward"))
      for (auto& e : list_of(*x)) {
        MapReader pm(e, {"proto", "outside", "inside"});
        PortForward f;
        f.line = pm.line();
        if (auto* p = pm.get("proto")) f.proto = l4_proto_of(*p);
        const Val& out = pm.require("outside");
        std::tie(f.outside, f.outside_port) = v4_endpoint_of(out);
        std::tie(f.inside, f.inside_port) = v4_endpoint_of(pm.require("inside"));
        claim(f.outside, f.proto, PortRange{f.outside_port, f.outside_port}, out);
        n.port_forward.push_back(f);
      }
  }

  SnatRule snat_rule(const Val& v) {
    MapReader m(v, {"name", "source", "exclude", "pool", "ports", "block_size",
                    "max_blocks_per_host", "mapping", "filtering"});
    SnatRule r;
    r.line = m.line();
    const Val& n = m.require("name");
    r.name = name_of(n);
    define(&snat_, "snat rule", r.name, n.line);
    r.source = v4_prefix_of(m.require("source"));
    if (auto* x = m.get("exclude")) {
      for (auto& e : list_of(*x)) r.exclude.push_back(v4_prefix_of(e));
      // The dataplane reads an empty list as the default, so "[]" cannot mean "none".
      if (r.exclude.empty())
        fail(x->line, x->path + ": must not be empty (leave it out to exclude the rule's own "
                                "source)");
    } else {
      r.exclude = {r.source};  // traffic between inside hosts stays untranslated
    }
    if (auto* x = m.get("ports")) r.ports = port_range_of(*x, 1);
    uint32_t range_size = static_cast<uint32_t>(r.ports.hi) - r.ports.lo + 1;
    if (auto* x = m.get("block_size")) {
      r.block_size = static_cast<uint16_t>(uint_in(*x, 1, 32768));
      if (r.block_size > range_size)
        fail(x->line, x->path + ": " + std::to_string(r.block_size) +
                          " is larger than the port range " + std::to_string(r.ports.lo) + "-" +
                          std::to_string(r.ports.hi) + " (" + std::to_string(range_size) +
                          " ports)");
    } else if (r.block_size > range_size) {
      r.block_size = static_cast<uint16_t>(range_size);  // a narrow range is one block
    }
    if (auto* x = m.get("max_blocks_per_host"))
      r.max_blocks_per_host = static_cast<uint16_t>(uint_in(*x, 1, 65535));
    if (auto* x = m.get("mapping")) r.mapping = nat_behavior_of(*x);
    if (auto* x = m.get("filtering")) r.filtering = nat_behavior_of(*x);
    r.pool = snat_pool(m.require("pool"), r.ports);
    return r;
  }

  // A pool is a list of addresses, "first-last" ranges and prefixes (every address of a prefix
  // is used, network and broadcast included: the pool is routed to batond, not a link). Each
  // address is claimed for the rule's port range.
  std::vector<IpAddr> snat_pool(const Val& v, PortRange ports) {
    std::vector<Val> items;
    if (v.node.IsScalar()) items.push_back(v);  // a single range or prefix without brackets
    else items = list_of(v);
    std::vector<IpAddr> pool;
    std::set<IpAddr> seen;
    auto add = [&](const Val& item, uint32_t first, uint32_t last) {
      if (pool.size() + (uint64_t{last} - first + 1) > kMaxPoolAddresses)
        fail(item.line, v.path + ": more than " + std::to_string(kMaxPoolAddresses) +
                            " addresses in one pool");
      for (uint64_t h = first; h <= last; h++) {
        IpAddr a = IpAddr::v4(be32::from_host(static_cast<uint32_t>(h)));
        if (!is_unicast_v4(a))
          fail(item.line, item.path + ": " + dotted(a) + " is not a unicast host address");
        if (!seen.insert(a).second)
          fail(item.line, item.path + ": " + dotted(a) + " is already in this pool");
        claim(a, 0, ports, item, true);
        pool.push_back(a);
      }
    };
    for (auto& item : items) {
      std::string s = scalar(item, "an IPv4 address, range or prefix");
      if (auto dash = s.find('-'); dash != std::string::npos) {
        uint32_t first = v4_text(item, s.substr(0, dash)).as_v4().host();
        uint32_t last = v4_text(item, s.substr(dash + 1)).as_v4().host();
        if (first > last) fail(item.line, item.path + ": range " + quoted(s) + " has first > last");
        add(item, first, last);
      } else if (s.find('/') != std::string::npos) {
        Prefix p = v4_prefix_of(item);
        uint32_t first = p.addr.as_v4().host();
        add(item, first, first + static_cast<uint32_t>((uint64_t{1} << (32 - p.len)) - 1));
      } else {
        uint32_t h = v4_text(item, s).as_v4().host();
        add(item, h, h);
      }
    }
    if (pool.empty()) fail(v.line, v.path + ": at least one address is required");
    return pool;
  }

  // ---- lb -------------------------------------------------------------------------------
  void lb(const Val& v) {
    MapReader m(v, {"sticky_capacity", "pools", "services"});
    if (auto* x = m.get("sticky_capacity"))
      c_.lb.sticky_capacity = static_cast<uint32_t>(uint_in(*x, 1, kMaxTableEntries));
    if (auto* x = m.get("pools"))
      for (auto& e : list_of(*x)) c_.lb.pools.push_back(lb_pool(e));
    if (auto* x = m.get("services"))
      for (auto& e : list_of(*x)) c_.lb.services.push_back(service(e));
  }

  PoolConfig lb_pool(const Val& v) {
    MapReader m(v, {"name", "backends", "health_check"});
    PoolConfig p;
    p.line = m.line();
    const Val& n = m.require("name");
    p.name = name_of(n);
    define(&pools_, "pool", p.name, n.line);
    const Val& bs = m.require("backends");
    std::map<std::string, int> seen;
    for (auto& e : list_of(bs)) {
      MapReader bm(e, {"address", "port", "weight", "state"});
      BackendConfig b;
      b.line = bm.line();
      b.address = v4_of(bm.require("address"));
      if (auto* x = bm.get("port")) b.port = static_cast<uint16_t>(uint_in(*x, 1, 65535));
      if (auto* x = bm.get("weight")) {
        if (x->node.IsScalar() && x->node.Scalar() == "0")
          fail(x->line, x->path + ": weight 0 is not allowed (1..65535); to stop new "
                                  "connections use state: down or draining");
        b.weight = static_cast<uint32_t>(uint_in(*x, 1, 65535));
      }
      if (auto* x = bm.get("state"))
        b.state = word_of<BackendState>(*x, {{"up", BackendState::kUp},
                                             {"down", BackendState::kDown},
                                             {"draining", BackendState::kDraining}});
      define(&seen, "backend",
             dotted(b.address) + (b.port ? ":" + std::to_string(b.port) : ""), b.line);
      backends_.push_back({b.address, e.path, b.line});
      p.backends.push_back(b);
    }
    if (p.backends.empty()) fail(bs.line, bs.path + ": at least one backend is required");
    if (auto* x = m.get("health_check")) p.health = health_check(*x);
    return p;
  }

  HealthCheckConfig health_check(const Val& v) {
    MapReader m(v, {"type", "interval_ms", "timeout_ms", "rise", "fall", "path", "host",
                    "expect"});
    HealthCheckConfig h;
    h.kind = word_of<HealthCheckKind>(m.require("type"), {{"tcp", HealthCheckKind::kTcp},
                                                          {"http", HealthCheckKind::kHttp},
                                                          {"none", HealthCheckKind::kNone}});
    // Keys that a probe of this type would not use are refused, so they are never silently
    // ignored.
    auto only_for = [&](const char* key, bool allowed, const char* types) {
      if (auto* x = m.get(key); x && !allowed)
        fail(x->line, x->path + ": only for health_check type " + types);
    };
    for (const char* key : {"interval_ms", "timeout_ms", "rise", "fall"})
      only_for(key, h.kind != HealthCheckKind::kNone, "tcp or http");
    for (const char* key : {"path", "host", "expect"})
      only_for(key, h.kind == HealthCheckKind::kHttp, "http");
    if (auto* x = m.get("interval_ms"))
      h.interval_ms = static_cast<uint32_t>(uint_in(*x, 100, 3600 * 1000));
    if (auto* x = m.get("timeout_ms"))
      h.timeout_ms = static_cast<uint32_t>(uint_in(*x, 10, 3600 * 1000));
    if (h.timeout_ms > h.interval_ms)
      fail(m.line(), m.path() + ": timeout_ms (" + std::to_string(h.timeout_ms) +
                         ") must not exceed interval_ms (" + std::to_string(h.interval_ms) +
                         "): one probe at a time");
    if (auto* x = m.get("rise")) h.rise = static_cast<uint16_t>(uint_in(*x, 1, 100));
    if (auto* x = m.get("fall")) h.fall = static_cast<uint16_t>(uint_in(*x, 1, 100));
    if (auto* x = m.get("path")) {
      h.http_path = http_text_of(*x);
      if (h.http_path[0] != '/') fail(x->line, x->path + ": must start with '/'");
    }
    if (auto* x = m.get("host")) h.http_host = http_host_of(*x);
    if (auto* x = m.get("expect")) {
      auto [lo, hi] = range_of(*x, 100, 599, "status code");
      h.expect_lo = static_cast<uint16_t>(lo);
      h.expect_hi = static_cast<uint16_t>(hi);
    }
    return h;
  }

  ServiceConfig service(const Val& v) {
    MapReader m(v, {"name", "vip", "proto", "port", "mode", "local_addresses", "pool",
                    "backup_pool", "table_size", "sticky", "max_request_head", "rules"});
    ServiceConfig s;
    s.line = m.line();
    const Val& n = m.require("name");
    s.name = name_of(n);
    define(&services_, "service", s.name, n.line);
    const Val& vip = m.require("vip");
    s.vip = v4_of(vip);
    if (auto* x = m.get("proto")) s.proto = l4_proto_of(*x);
    s.port = static_cast<uint16_t>(uint_in(m.require("port"), 1, 65535));
    claim(s.vip, s.proto, PortRange{s.port, s.port}, vip);
    const Val* mode = m.get("mode");
    if (mode)
      s.mode = word_of<LbMode>(*mode, {{"nat", LbMode::kNat},
                                       {"fullnat", LbMode::kFullNat},
                                       {"l7", LbMode::kL7}});
    const std::string mode_name = mode ? mode->node.Scalar() : "nat";
    bool l7 = s.mode == LbMode::kL7;
    if (l7 && s.proto != 6)
      fail(mode->line, m.path() + ": mode l7 (HTTP/1.1) needs proto tcp");
    // Mode nat keeps the client's address towards the backend; fullnat and l7 replace it with
    // one of these, which is what lets the backends answer without a route back through batond.
    if (auto* x = m.get("local_addresses")) {
      if (s.mode == LbMode::kNat)
        fail(x->line, x->path + ": only for mode fullnat or l7 (mode nat keeps the client's "
                                "address)");
      for (auto& e : list_of(*x)) {
        s.local_addresses.push_back(v4_of(e));
        claim(s.local_addresses.back(), 0, PortRange{}, e);
      }
      if (s.local_addresses.empty())
        fail(x->line, x->path + ": at least one address is required");
    } else if (s.mode != LbMode::kNat) {
      fail(m.line(), m.path() + ": mode " + mode_name +
                         " needs local_addresses (the source addresses batond uses towards "
                         "the backends)");
    }
    const Val& pool = m.require("pool");
    s.pool = name_of(pool);
    pool_refs_.push_back({s.pool, pool.line});
    if (auto* x = m.get("backup_pool")) {
      s.backup_pool = name_of(*x);
      if (s.backup_pool == s.pool)
        fail(x->line, x->path + ": the backup pool must differ from pool " + quoted(s.pool));
      pool_refs_.push_back({s.backup_pool, x->line});
    }
    if (auto* x = m.get("table_size")) {
      s.table_size = static_cast<uint32_t>(uint_in(*x, 1009, 1000003));
      if (!is_prime(s.table_size))
        fail(x->line, x->path + ": " + std::to_string(s.table_size) +
                          " is not prime (Maglev needs a prime table size, e.g. 65537)");
    }
    table_size_lines_.push_back(m.get("table_size") ? m.get("table_size")->line : s.line);
    if (auto* x = m.get("sticky")) s.sticky = sticky(*x, s, mode_name);
    auto only_l7 = [&](const char* key) {
      auto* x = m.get(key);
      if (x && !l7) fail(x->line, x->path + ": only for mode l7 (mode is " + mode_name + ")");
      return x;
    };
    if (auto* x = only_l7("max_request_head"))
      s.max_request_head = static_cast<uint32_t>(uint_in(*x, 1024, 65536));
    if (auto* x = only_l7("rules"))
      for (auto& e : list_of(*x)) s.l7_rules.push_back(l7_rule(e));
    return s;
  }

  StickyConfig sticky(const Val& v, const ServiceConfig& s, const std::string& mode_name) {
    MapReader m(v, {"method", "prefix_len", "name", "timeout", "on_backup",
                    "timeout_active_conns"});
    StickyConfig k;
    const Val& method = m.require("method");
    k.method = word_of<StickyMethod>(method, {{"source-address", StickyMethod::kSourceAddress},
                                              {"source-prefix", StickyMethod::kSourcePrefix},
                                              {"cookie", StickyMethod::kCookie},
                                              {"header", StickyMethod::kHeader}});
    bool http = k.method == StickyMethod::kCookie || k.method == StickyMethod::kHeader;
    if (http && s.mode != LbMode::kL7)
      fail(method.line, method.path + ": " + method.node.Scalar() +
                            " stickiness reads the HTTP request and needs mode l7 (mode is " +
                            mode_name + ")");
    auto* prefix_len = m.get("prefix_len");
    if (k.method == StickyMethod::kSourcePrefix) {
      if (!prefix_len) fail(m.line(), m.path() + ": method source-prefix needs prefix_len (1..32)");
      k.prefix_len = static_cast<uint8_t>(uint_in(*prefix_len, 1, 32));
    } else if (prefix_len) {
      fail(prefix_len->line, prefix_len->path + ": only for method source-prefix");
    }
    auto* name = m.get("name");
    if (http) {
      if (!name)
        fail(m.line(), m.path() + ": method " + method.node.Scalar() + " needs name (the " +
                           method.node.Scalar() + "'s name)");
      k.name = http_token_of(*name, k.method == StickyMethod::kHeader);
    } else if (name) {
      fail(name->line, name->path + ": only for method cookie or header");
    }
    if (auto* x = m.get("timeout")) k.timeout_s = static_cast<uint32_t>(uint_in(*x, 1, 604800));
    if (auto* x = m.get("on_backup")) {
      k.on_backup = boolean(*x);
      if (k.on_backup && s.backup_pool.empty())
        fail(x->line, x->path + ": the service has no backup_pool");
    }
    if (auto* x = m.get("timeout_active_conns")) k.timeout_active_conns = boolean(*x);
    return k;
  }

  L7RuleConfig l7_rule(const Val& v) {
    MapReader m(v, {"host", "path_prefix", "header", "cookie", "pool"});
    L7RuleConfig r;
    r.line = m.line();
    if (auto* x = m.get("host")) r.host = http_host_of(*x);
    if (auto* x = m.get("path_prefix")) {
      r.path_prefix = http_text_of(*x);
      if (r.path_prefix[0] != '/') fail(x->line, x->path + ": must start with '/'");
    }
    auto name_value = [&](const char* key, bool lower, std::string* name, std::string* value) {
      auto* x = m.get(key);
      if (!x) return;
      MapReader nm(*x, {"name", "value"});
      *name = http_token_of(nm.require("name"), lower);
      *value = http_text_of(nm.require("value"));
    };
    name_value("header", true, &r.header_name, &r.header_value);
    name_value("cookie", false, &r.cookie_name, &r.cookie_value);
    if (!m.get("host") && !m.get("path_prefix") && !m.get("header") && !m.get("cookie"))
      fail(m.line(), m.path() + ": a rule needs at least one of host, path_prefix, header, "
                                "cookie (the service's pool already takes what no rule matches)");
    const Val& pool = m.require("pool");
    r.pool = name_of(pool);
    pool_refs_.push_back({r.pool, pool.line});
    return r;
  }

  // Maglev fills table_size slots in turns among the backends; with fewer than 100 slots per
  // backend the shares drift more than 1% from the weights (Maglev paper, section 5.3).
  void check_table_sizes() {
    for (size_t i = 0; i < c_.lb.services.size(); i++) {
      const ServiceConfig& s = c_.lb.services[i];
      for (const std::string* name : {&s.pool, &s.backup_pool})
        for (auto& p : c_.lb.pools)
          if (!name->empty() && p.name == *name && s.table_size < 100 * p.backends.size())
            fail(table_size_lines_[i],
                 "service " + quoted(s.name) + ": table_size " + std::to_string(s.table_size) +
                     " is too small for pool " + quoted(p.name) + " (" +
                     std::to_string(p.backends.size()) +
                     " backends need at least 100 slots each; use a prime >= " +
                     std::to_string(100 * p.backends.size()) + ")");
    }
  }

  // ---- outside addresses ------------------------------------------------------------------
  // Every address batond answers for on the outside owns all of it or some of its ports: an
  // interface address or VM address all of it, a static NAT outside address and a local
  // address all of it (they translate every port), an SNAT pool address the rule's port range
  // for every protocol, a port forward or a service one protocol and port. Two owners of the
  // same address, protocol and port would take each other's packets, so any overlap is an
  // error, blamed on the later line. Different ports of one address may go to different
  // owners: a service on port 80 of an SNAT pool address whose range is 1024-65535 is fine.
  // Two SNAT rules never share an address, even on disjoint ranges: replies find their rule
  // by outside address alone (Translator::pool_rule).
  struct Claim {
    IpAddr addr;
    uint8_t proto = 0;  // 0 = every protocol
    PortRange ports;
    std::string what;   // schema path
    int line = 0;
    bool vm = false;    // a VM's own address: may be a backend
    bool snat = false;  // an SNAT pool address
  };

  void claim(const IpAddr& a, uint8_t proto, PortRange ports, const Val& v, bool snat = false) {
    claims_.push_back(Claim{a, proto, ports, v.path, v.line, false, snat});
  }

  static std::string describe(const Claim& c) {
    std::string s = c.what + " " + dotted(c.addr);
    if (c.proto != 0) return s + " " + proto_name(c.proto) + "/" + std::to_string(c.ports.lo);
    if (c.ports.lo != 0 || c.ports.hi != 65535)
      s += " ports " + std::to_string(c.ports.lo) + "-" + std::to_string(c.ports.hi);
    return s;
  }

  static bool overlap(const Claim& a, const Claim& b) {
    if (a.snat && b.snat) return true;
    return (a.proto == 0 || b.proto == 0 || a.proto == b.proto) && a.ports.lo <= b.ports.hi &&
           b.ports.lo <= a.ports.hi;
  }

  void check_claims() {
    if (claims_.empty()) return;
    std::map<IpAddr, std::vector<Claim>> owners;
    // Interface and VM addresses come from other sections and are checked there; here they
    // are owners the NAT and LB addresses must stay clear of.
    for (size_t i = 0; i < c_.l3_addresses.size(); i++) {
      const Prefix& p = c_.l3_addresses[i].prefix;
      if (p.family == Family::kV4)
        owners[p.addr].push_back(
            Claim{p.addr, 0, {}, "l3.addresses[" + std::to_string(i) + "] (interface)", 0});
    }
    for (size_t i = 0; i < c_.vms.size(); i++)
      for (auto& a : c_.vms[i].ipv4)
        owners[a].push_back(Claim{a, 0, {}, "vm " + quoted(c_.vms[i].name), 0, true});
    std::stable_sort(claims_.begin(), claims_.end(),
                     [](const Claim& a, const Claim& b) { return a.line < b.line; });
    for (auto& c : claims_) {
      auto& list = owners[c.addr];
      for (auto& o : list)
        if (overlap(c, o))
          fail(c.line, describe(c) + " collides with " + describe(o) +
                           (o.line ? " (line " + std::to_string(o.line) + ")" : ""));
      list.push_back(c);
    }
    for (auto& b : backends_) {
      auto it = owners.find(b.addr);
      if (it == owners.end()) continue;
      for (auto& o : it->second)
        if (!o.vm)
          fail(b.line, b.what + ": backend " + dotted(b.addr) + " is batond's own " +
                           describe(o) + (o.line ? " (line " + std::to_string(o.line) + ")" : "") +
                           "; a backend is a server behind batond");
    }
  }

  // Largest NAT mapping table (per worker) and sticky table; beyond this the tables would not
  // fit the memory a DPDK instance is given.
  static constexpr uint64_t kMaxTableEntries = 1u << 24;
  static constexpr uint32_t kMaxPoolAddresses = 1024;  // one SNAT rule, after expansion

  Config& c_;
  std::map<std::string, int> ports_, zones_, vms_, macs_, vm_ips_, peers_;
  std::map<std::string, int> snat_, static_inside_, pools_, services_;
  std::vector<Named> zone_refs_, port_refs_, pool_refs_;
  std::vector<Claim> claims_;
  struct Backend {
    IpAddr addr;
    std::string what;
    int line;
  };
  std::vector<Backend> backends_;
  std::vector<int> table_size_lines_;  // parallel to c_.lb.services
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
