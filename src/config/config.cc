// SPDX-License-Identifier: Apache-2.0
#include "config/config.h"

#include <cerrno>
#include <cstdlib>

namespace baton {

namespace {

int family_bits(Family f) { return f == Family::kV6 ? 128 : 32; }

// Zeroes every bit of a beyond the first len (network order, most significant bit first).
void mask_host_bits(IpAddr* a, uint8_t len) {
  for (int i = 0; i < 16; i++) {
    int keep = static_cast<int>(len) - 8 * i;
    if (keep >= 8) continue;
    a->b[i] = keep <= 0 ? 0 : static_cast<uint8_t>(a->b[i] & (0xff00 >> keep));
  }
}

}  // namespace

bool Prefix::contains(const IpAddr& a, Family f) const {
  if (f != family) return false;
  IpAddr masked = a;
  mask_host_bits(&masked, len);
  return masked == addr;
}

std::string Prefix::to_string() const {
  return addr.to_string(family) + "/" + std::to_string(len);
}

std::optional<Prefix> Prefix::parse(const std::string& s) {
  Prefix p;
  std::string addr_text = s;
  int len = -1;
  if (auto slash = s.find('/'); slash != std::string::npos) {
    addr_text = s.substr(0, slash);
    std::string len_text = s.substr(slash + 1);
    if (len_text.empty() || len_text.size() > 3) return std::nullopt;
    for (char c : len_text)
      if (c < '0' || c > '9') return std::nullopt;
    len = std::atoi(len_text.c_str());
  }
  auto a = IpAddr::parse(addr_text, &p.family);
  if (!a) return std::nullopt;
  if (len < 0) len = family_bits(p.family);
  if (len > family_bits(p.family)) return std::nullopt;
  p.len = static_cast<uint8_t>(len);
  p.addr = *a;
  mask_host_bits(&p.addr, p.len);
  return p;
}

std::string ConfigError::to_string() const {
  std::string s = file.empty() ? std::string("<config>") : file;
  if (line > 0) s.append(":").append(std::to_string(line));
  s.append(": ").append(reason);
  return s;
}

}  // namespace baton
