// SPDX-License-Identifier: Apache-2.0
//
// L7Router: chooses a backend pool for an HTTP request from its parsed head. Pure logic.
//
// Theory of operation. Rules are evaluated in order and the first whose every condition holds
// wins (conditions within one rule are ANDed; an absent condition always holds); when none
// matches, the default target applies. A target names a pool (an index the integrator assigns)
// and, optionally, how the request is made sticky: by the value of a named cookie or header.
// The decision carries that value, taken from the head, as the sticky key; when the request
// does not carry the cookie or header the key is absent and the integrator falls back to the
// pool's normal choice (and, for cookie stickiness, may insert the cookie in the response).
//
// Conditions:
//   host         "example.com" matches that host exactly; "*.example.com" matches any host
//                ending in ".example.com" (one or more labels before it, not "example.com"
//                itself). Case-insensitive; the request's port is ignored (host_name()).
//   path_prefix  a byte prefix of the raw path (no query, no decoding): "/api" also matches
//                "/apix"; write "/api/" to mean the directory.
//   header       the first field with that name (case-insensitive) has exactly that value.
//   cookie       the first cookie with that name (case-sensitive) has exactly that value.
//
// Rules are validated once by build() (host patterns, path prefixes, names must be tokens);
// route() then only compares. One backend per client connection: the router runs once, on the
// connection's first request head, and keep-alive requests stay on the chosen backend.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "lb/http_head_parser.h"

namespace baton {

enum class StickyBy : uint8_t { kNone, kCookie, kHeader };

struct L7Target {
  uint32_t pool = 0;
  StickyBy sticky_by = StickyBy::kNone;
  std::string sticky_name;  // the cookie or header whose value is the sticky key
};

struct NameValue {
  std::string name, value;
};

struct L7Match {
  std::optional<std::string> host;         // "example.com" or "*.example.com"
  std::optional<std::string> path_prefix;  // starts with '/'
  std::optional<NameValue> header;
  std::optional<NameValue> cookie;
};

struct L7Rule {
  std::string name;  // for logs and metrics
  L7Match match;
  L7Target target;
};

struct L7Decision {
  uint32_t pool = 0;
  int rule = -1;  // index of the matching rule; -1 = the default target
  StickyBy sticky_by = StickyBy::kNone;
  std::optional<std::string_view> sticky_key;  // points into the parsed head
};

class L7Router {
 public:
  // Validates every rule; on a bad one returns nullopt and says which and why in *error.
  static std::optional<L7Router> build(std::vector<L7Rule> rules, L7Target default_target,
                                       std::string* error);

  // `head` must be complete (HttpParseStatus::kComplete).
  L7Decision route(const HttpHeadParser& head) const;

  const std::vector<L7Rule>& rules() const { return rules_; }

 private:
  L7Router(std::vector<L7Rule> rules, L7Target default_target)
      : rules_(std::move(rules)), default_(std::move(default_target)) {}
  static bool matches(const L7Match& m, const HttpHeadParser& head);

  std::vector<L7Rule> rules_;
  L7Target default_;
};

}  // namespace baton
