// SPDX-License-Identifier: Apache-2.0
#include "lb/l7_router.h"

#include <cctype>

namespace baton {
namespace {

// A host pattern is a DNS-style name (letters, digits, '-', '.', '_'), optionally behind "*.".
bool valid_host_pattern(std::string_view p) {
  if (p.starts_with("*.")) p.remove_prefix(2);
  if (p.empty() || p.front() == '.') return false;
  for (unsigned char c : p)
    if (!std::isalnum(c) && c != '-' && c != '.' && c != '_') return false;
  return true;
}

const char* check_target(const L7Target& t) {
  if (t.sticky_by != StickyBy::kNone && !is_http_token(t.sticky_name))
    return "sticky cookie/header name must be a non-empty token";
  return nullptr;
}

const char* check_match(const L7Match& m) {
  if (m.host && !valid_host_pattern(*m.host))
    return "host must be a name or *.name (no port, '*' only as the first label)";
  if (m.path_prefix && !m.path_prefix->starts_with("/")) return "path_prefix must start with '/'";
  if (m.header && !is_http_token(m.header->name)) return "header name must be a token";
  if (m.cookie && !is_http_token(m.cookie->name)) return "cookie name must be a token";
  return nullptr;
}

bool host_matches(std::string_view pattern, std::string_view host) {
  if (pattern.starts_with("*.")) {
    std::string_view suffix = pattern.substr(1);  // ".example.com"
    return host.size() > suffix.size() &&
           ascii_iequals(host.substr(host.size() - suffix.size()), suffix);
  }
  return ascii_iequals(pattern, host);
}

}  // namespace

std::optional<L7Router> L7Router::build(std::vector<L7Rule> rules, L7Target default_target,
                                        std::string* error) {
  if (const char* why = check_target(default_target)) {
    if (error) *error = std::string("default target: ") + why;
    return std::nullopt;
  }
  for (size_t i = 0; i < rules.size(); ++i) {
    const L7Rule& r = rules[i];
    const char* why = check_match(r.match);
    if (!why) why = check_target(r.target);
    if (why) {
      if (error) *error = "rule " + std::to_string(i) + " (" + r.name + "): " + why;
      return std::nullopt;
    }
  }
  return L7Router(std::move(rules), std::move(default_target));
}

bool L7Router::matches(const L7Match& m, const HttpHeadParser& head) {
  if (m.host && !host_matches(*m.host, head.host_name())) return false;
  if (m.path_prefix && !head.path().starts_with(*m.path_prefix)) return false;
  if (m.header && head.field(m.header->name) != m.header->value) return false;
  if (m.cookie && head.cookie(m.cookie->name) != m.cookie->value) return false;
  return true;
}

L7Decision L7Router::route(const HttpHeadParser& head) const {
  int index = -1;
  const L7Target* target = &default_;
  for (size_t i = 0; i < rules_.size(); ++i) {
    if (matches(rules_[i].match, head)) {
      index = static_cast<int>(i);
      target = &rules_[i].target;
      break;
    }
  }
  L7Decision d;
  d.pool = target->pool;
  d.rule = index;
  d.sticky_by = target->sticky_by;
  if (target->sticky_by == StickyBy::kCookie) d.sticky_key = head.cookie(target->sticky_name);
  if (target->sticky_by == StickyBy::kHeader) d.sticky_key = head.field(target->sticky_name);
  return d;
}

}  // namespace baton
