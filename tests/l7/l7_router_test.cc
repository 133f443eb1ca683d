// SPDX-License-Identifier: Apache-2.0
//
// L7Router against a fixture table: one rule set, request heads, and the pool, rule and sticky
// key each must get; then the rule validation of build().
#include "lb/l7_router.h"

#include <gtest/gtest.h>

#include <string>
#include <vector>

namespace baton {
namespace {

constexpr uint32_t kDefaultPool = 0, kApiPool = 1, kSitePool = 2, kStaticPool = 3, kCanaryPool = 4;

L7Router make_router() {
  std::vector<L7Rule> rules(4);
  rules[0].name = "api";
  rules[0].match.host = "API.example.com";  // compared case-insensitively
  rules[0].match.path_prefix = "/v1/";
  rules[0].target.pool = kApiPool;

  rules[1].name = "sites";
  rules[1].match.host = "*.example.com";
  rules[1].target = {kSitePool, StickyBy::kCookie, "SRV"};

  rules[2].name = "static";
  rules[2].match.path_prefix = "/static/";
  rules[2].target.pool = kStaticPool;

  rules[3].name = "canary";
  rules[3].match.header = NameValue{"X-Canary", "1"};
  rules[3].match.cookie = NameValue{"beta", "yes"};
  rules[3].target = {kCanaryPool, StickyBy::kHeader, "X-User"};

  std::string error;
  std::optional<L7Router> r = L7Router::build(std::move(rules), {kDefaultPool}, &error);
  EXPECT_TRUE(r) << error;
  return std::move(*r);
}

struct Case {
  const char* description;
  std::string host_and_fields;  // field lines after the request line, each ending in CRLF
  std::string target;
  uint32_t pool;
  int rule;
  std::optional<std::string> sticky_key;
};

const std::vector<Case> kCases = {
    {"host and path prefix", "Host: api.example.com\r\n", "/v1/users", kApiPool, 0, {}},
    {"host case and port do not matter", "Host: Api.EXAMPLE.com:8443\r\n", "/v1/x", kApiPool, 0, {}},
    {"both conditions needed: path misses, wildcard takes it", "Host: api.example.com\r\n", "/v2/users",
     kSitePool, 1, {}},
    {"wildcard with the sticky cookie", "Host: www.example.com\r\nCookie: a=1; SRV=b3\r\n", "/", kSitePool,
     1, "b3"},
    {"wildcard matches several labels", "Host: a.b.example.com\r\n", "/", kSitePool, 1, {}},
    {"wildcard does not match the bare domain", "Host: example.com\r\n", "/", kDefaultPool, -1, {}},
    {"wildcard needs the dot", "Host: badexample.com\r\n", "/", kDefaultPool, -1, {}},
    {"path prefix alone", "Host: other.org\r\n", "/static/app.js?v=2", kStaticPool, 2, {}},
    {"path prefix is a byte prefix of the path", "Host: other.org\r\n", "/staticx", kDefaultPool, -1, {}},
    {"query is not part of the path", "Host: other.org\r\n", "/x?/static/", kDefaultPool, -1, {}},
    {"header and cookie together, sticky by header",
     "Host: other.org\r\nx-canary: 1\r\nCookie: beta=yes\r\nX-User: u42\r\n", "/", kCanaryPool, 3, "u42"},
    {"header without the cookie", "Host: other.org\r\nX-Canary: 1\r\n", "/", kDefaultPool, -1, {}},
    {"cookie with another value", "Host: other.org\r\nX-Canary: 1\r\nCookie: beta=no\r\n", "/", kDefaultPool,
     -1, {}},
    {"cookie value is case-sensitive", "Host: other.org\r\nX-Canary: 1\r\nCookie: beta=YES\r\n", "/",
     kDefaultPool, -1, {}},
    {"header value is compared exactly", "Host: other.org\r\nX-Canary: 10\r\nCookie: beta=yes\r\n", "/",
     kDefaultPool, -1, {}},
    {"sticky header absent", "Host: other.org\r\nX-Canary: 1\r\nCookie: beta=yes\r\n", "/", kCanaryPool, 3,
     {}},
    {"first match wins", "Host: www.example.com\r\nX-Canary: 1\r\nCookie: beta=yes\r\n", "/static/a",
     kSitePool, 1, {}},
    {"absolute-form authority is the host", "Host: api.example.com\r\n", "http://api.example.com/v1/",
     kApiPool, 0, {}},
};

TEST(L7Router, RoutesByFirstMatchingRule) {
  L7Router router = make_router();
  for (const Case& c : kCases) {
    SCOPED_TRACE(c.description);
    HttpHeadParser head;
    std::string text = "GET " + c.target + " HTTP/1.1\r\n" + c.host_and_fields + "\r\n";
    ASSERT_EQ(head.feed(text), HttpParseStatus::kComplete) << head.error_reason();
    L7Decision d = router.route(head);
    EXPECT_EQ(d.pool, c.pool);
    EXPECT_EQ(d.rule, c.rule);
    EXPECT_EQ(d.sticky_key, c.sticky_key);
    StickyBy want = c.rule == 1 ? StickyBy::kCookie : c.rule == 3 ? StickyBy::kHeader : StickyBy::kNone;
    EXPECT_EQ(d.sticky_by, want);
  }
}

TEST(L7Router, DefaultTargetCarriesItsStickiness) {
  std::string error;
  auto router = L7Router::build({}, {7, StickyBy::kCookie, "LB"}, &error);
  ASSERT_TRUE(router) << error;
  HttpHeadParser head;
  ASSERT_EQ(head.feed("GET / HTTP/1.0\r\nCookie: LB=s1\r\n\r\n"), HttpParseStatus::kComplete);
  L7Decision d = router->route(head);
  EXPECT_EQ(d.pool, 7u);
  EXPECT_EQ(d.rule, -1);
  EXPECT_EQ(d.sticky_key, "s1");
}

struct BadRule {
  const char* description;
  L7Match match;
  L7Target target;
};

TEST(L7Router, RefusesInvalidRules) {
  const std::vector<BadRule> bad = {
      {"wildcard not a whole label", {.host = "*foo.com"}, {}},
      {"wildcard in the middle", {.host = "a.*.com"}, {}},
      {"port in the host", {.host = "example.com:80"}, {}},
      {"empty host", {.host = ""}, {}},
      {"path prefix without slash", {.path_prefix = "api"}, {}},
      {"empty header name", {.header = NameValue{"", "x"}}, {}},
      {"header name with space", {.header = NameValue{"X A", "x"}}, {}},
      {"cookie name with '='", {.cookie = NameValue{"a=b", "x"}}, {}},
      {"sticky without a name", {}, {1, StickyBy::kCookie, ""}},
  };
  for (const BadRule& b : bad) {
    SCOPED_TRACE(b.description);
    std::vector<L7Rule> rules(2);
    rules[1] = {"bad", b.match, b.target};
    std::string error;
    EXPECT_FALSE(L7Router::build(rules, {}, &error));
    EXPECT_NE(error.find("rule 1 (bad)"), std::string::npos) << error;
  }
  std::string error;
  EXPECT_FALSE(L7Router::build({}, {0, StickyBy::kHeader, "a b"}, &error));
  EXPECT_NE(error.find("default"), std::string::npos) << error;
}

}  // namespace
}  // namespace baton
