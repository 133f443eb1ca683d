// SPDX-License-Identifier: Apache-2.0
#include "common/net_types.h"

#include <arpa/inet.h>

#include <cstdio>

namespace baton {

std::string IpAddr::to_string(Family f) const {
  char buf[INET6_ADDRSTRLEN] = {};
  if (f == Family::kV6)
    inet_ntop(AF_INET6, b.data(), buf, sizeof buf);
  else
    inet_ntop(AF_INET, b.data(), buf, sizeof buf);
  return buf;
}

std::optional<IpAddr> IpAddr::parse(const std::string& s, Family* family) {
  IpAddr a;
  if (inet_pton(AF_INET, s.c_str(), a.b.data()) == 1) {
    if (family) *family = Family::kV4;
    return a;
  }
  if (inet_pton(AF_INET6, s.c_str(), a.b.data()) == 1) {
    if (family) *family = Family::kV6;
    return a;
  }
  return std::nullopt;
}

std::string MacAddr::to_string() const {
  char buf[18];
  std::snprintf(buf, sizeof buf, "%02x:%02x:%02x:%02x:%02x:%02x", b[0], b[1], b[2], b[3], b[4],
                b[5]);
  return buf;
}

std::optional<MacAddr> MacAddr::parse(const std::string& s) {
  MacAddr m;
  unsigned v[6];
  char tail;
  if (std::sscanf(s.c_str(), "%x:%x:%x:%x:%x:%x%c", &v[0], &v[1], &v[2], &v[3], &v[4], &v[5],
                  &tail) != 6)
    return std::nullopt;
  for (int i = 0; i < 6; i++) {
    if (v[i] > 0xff) return std::nullopt;
    m.b[i] = static_cast<uint8_t>(v[i]);
  }
  return m;
}

const char* proto_name(uint8_t proto) {
  switch (proto) {
    case 1: return "icmp";
    case 6: return "tcp";
    case 17: return "udp";
    case 58: return "icmpv6";
    default: return "ip";
  }
}

std::string to_string(const Tuple& t) {
  std::string s = proto_name(t.proto);
  s += ' ';
  bool v6 = t.family == Family::kV6;
  auto ep = [&](const IpAddr& a, be16 p) {
    std::string e = v6 ? "[" + a.to_string(t.family) + "]" : a.to_string(t.family);
    return e + ":" + std::to_string(p.host());
  };
  s += ep(t.src, t.sport) + " -> " + ep(t.dst, t.dport);
  if (t.vlan) s += " vlan " + std::to_string(t.vlan);
  return s;
}

}  // namespace baton
