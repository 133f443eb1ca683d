// SPDX-License-Identifier: Apache-2.0
//
// HttpHeadParser against fixture tables: complete heads with what must be read from them,
// refused heads each with its error kind (malformed, smuggling, unsupported, too large), then
// the same sample head fed split at every byte position (and every pair of positions).
#include "lb/http_head_parser.h"

#include <gtest/gtest.h>

#include <string>
#include <vector>

namespace baton {
namespace {

using namespace std::string_literals;
using S = HttpParseStatus;
using E = HttpParseError;

struct Good {
  const char* description;
  std::string head;  // may be followed by body bytes that must not be consumed
  std::string method, target, path, host, host_name;
  uint8_t minor;
};

const std::vector<Good> kGood = {
    {"origin-form GET", "GET /index.html HTTP/1.1\r\nHost: example.com\r\n\r\n", "GET",
     "/index.html", "/index.html", "example.com", "example.com", 1},
    {"query is not part of the path; port is not part of the host name",
     "GET /a/b?x=1&y HTTP/1.1\r\nHost: Example.COM:8080\r\n\r\n", "GET", "/a/b?x=1&y", "/a/b",
     "Example.COM:8080", "Example.COM", 1},
    {"absolute-form: host from the target", "GET http://example.com/p?q HTTP/1.1\r\nHost: example.com\r\n\r\n",
     "GET", "http://example.com/p?q", "/p", "example.com", "example.com", 1},
    {"absolute-form without a path means /", "GET HTTPS://h.test:81 HTTP/1.1\r\nHost: h.test:81\r\n\r\n",
     "GET", "HTTPS://h.test:81", "/", "h.test:81", "h.test", 1},
    {"HTTP/1.0 needs no Host", "GET / HTTP/1.0\r\n\r\n", "GET", "/", "/", "", "", 0},
    {"OPTIONS *", "OPTIONS * HTTP/1.1\r\nHost: a\r\n\r\n", "OPTIONS", "*", "*", "a", "a", 1},
    {"IPv6 literal host", "GET / HTTP/1.1\r\nHost: [2001:db8::1]:8080\r\n\r\n", "GET", "/", "/",
     "[2001:db8::1]:8080", "[2001:db8::1]", 1},
    {"empty Host is allowed (RFC 9110 7.2)", "GET / HTTP/1.1\r\nHost:\r\n\r\n", "GET", "/", "/", "",
     "", 1},
    {"body after the head is not consumed",
     "POST /up HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\n\r\nhello", "POST", "/up", "/up", "a",
     "a", 1},
    {"pipelined second request is not consumed",
     "GET /1 HTTP/1.1\r\nHost: a\r\n\r\nGET /2 HTTP/1.1\r\nHost: a\r\n\r\n", "GET", "/1", "/1", "a",
     "a", 1},
    {"extension method", "PURGE /x HTTP/1.1\r\nHost: a\r\n\r\n", "PURGE", "/x", "/x", "a", "a", 1},
};

TEST(HttpHeadParser, ParsesCompleteHeads) {
  for (const Good& c : kGood) {
    SCOPED_TRACE(c.description);
    HttpHeadParser p;
    size_t consumed = 0;
    ASSERT_EQ(p.feed(c.head, &consumed), S::kComplete) << p.error_reason();
    EXPECT_EQ(p.method(), c.method);
    EXPECT_EQ(p.target(), c.target);
    EXPECT_EQ(p.path(), c.path);
    EXPECT_EQ(p.host(), c.host);
    EXPECT_EQ(p.host_name(), c.host_name);
    EXPECT_EQ(p.version_minor(), c.minor);
    size_t head_length = c.head.find("\r\n\r\n") + 4;  // the first empty line ends the head
    EXPECT_EQ(p.head_length(), head_length);
    EXPECT_EQ(consumed, head_length);
  }
}

struct Bad {
  const char* description;
  std::string head;
  E error;
};

const std::vector<Bad> kBad = {
    // request line
    {"bare LF ends a line", "GET / HTTP/1.1\nHost: a\n\n", E::kMalformed},
    {"bare LF in a field line", "GET / HTTP/1.1\r\nHost: a\n\r\n", E::kMalformed},
    {"bare CR inside a field value", "GET / HTTP/1.1\r\nHost: a\r\nX: a\rb\r\n\r\n", E::kMalformed},
    {"empty line before the request line", "\r\nGET / HTTP/1.1\r\nHost: a\r\n\r\n", E::kMalformed},
    {"two spaces after the method", "GET  / HTTP/1.1\r\nHost: a\r\n\r\n", E::kMalformed},
    {"space after the version", "GET / HTTP/1.1 \r\nHost: a\r\n\r\n", E::kMalformed},
    {"tab as separator", "GET\t/ HTTP/1.1\r\nHost: a\r\n\r\n", E::kMalformed},
    {"HTTP/0.9 request line", "GET /\r\n\r\n", E::kMalformed},
    {"lower-case version", "GET / http/1.1\r\nHost: a\r\n\r\n", E::kMalformed},
    {"version with two digits", "GET / HTTP/1.10\r\nHost: a\r\n\r\n", E::kMalformed},
    {"invalid method character", "GE(T / HTTP/1.1\r\nHost: a\r\n\r\n", E::kMalformed},
    {"control character in target", "GET /a\x01 HTTP/1.1\r\nHost: a\r\n\r\n", E::kMalformed},
    {"non-ASCII in target", "GET /caf\xc3\xa9 HTTP/1.1\r\nHost: a\r\n\r\n", E::kMalformed},
    {"fragment in target", "GET /a#b HTTP/1.1\r\nHost: a\r\n\r\n", E::kMalformed},
    {"* outside OPTIONS", "GET * HTTP/1.1\r\nHost: a\r\n\r\n", E::kMalformed},
    {"relative target", "GET index.html HTTP/1.1\r\nHost: a\r\n\r\n", E::kMalformed},
    {"scheme other than http", "GET ftp://a/x HTTP/1.1\r\nHost: a\r\n\r\n", E::kMalformed},
    {"userinfo in absolute-form", "GET http://u@a/x HTTP/1.1\r\nHost: a\r\n\r\n", E::kMalformed},
    {"TLS ClientHello", "\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03"s, E::kMalformed},
    // fields
    {"obs-fold", "GET / HTTP/1.1\r\nHost: a\r\nX-A: b\r\n c\r\n\r\n", E::kMalformed},
    {"whitespace before the first field (obs-fold on it)", "GET / HTTP/1.1\r\n Host: a\r\n\r\n", E::kMalformed},
    {"whitespace before the colon", "GET / HTTP/1.1\r\nHost : a\r\n\r\n", E::kMalformed},
    {"field without colon", "GET / HTTP/1.1\r\nHost: a\r\nX-A\r\n\r\n", E::kMalformed},
    {"empty field name", "GET / HTTP/1.1\r\nHost: a\r\n: b\r\n\r\n", E::kMalformed},
    {"invalid field name character", "GET / HTTP/1.1\r\nHost: a\r\nX(A): b\r\n\r\n", E::kMalformed},
    {"NUL in a field value", "GET / HTTP/1.1\r\nHost: a\r\nX: a\0b\r\n\r\n"s, E::kMalformed},
    {"DEL in a field value", "GET / HTTP/1.1\r\nHost: a\r\nX: a\x7f\r\n\r\n", E::kMalformed},
    // Host
    {"HTTP/1.1 without Host", "GET / HTTP/1.1\r\nX: a\r\n\r\n", E::kMalformed},
    {"two Host fields", "GET / HTTP/1.1\r\nHost: a\r\nhost: b\r\n\r\n", E::kMalformed},
    {"invalid Host value", "GET / HTTP/1.1\r\nHost: a/b\r\n\r\n", E::kMalformed},
    {"Host with a non-numeric port", "GET / HTTP/1.1\r\nHost: a:8o\r\n\r\n", E::kMalformed},
    {"Host differs from the absolute-form authority", "GET http://a/ HTTP/1.1\r\nHost: b\r\n\r\n", E::kMalformed},
    // smuggling (RFC 9112 6.1, 6.3, 11.2)
    {"Content-Length and Transfer-Encoding",
     "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n", E::kMalformed},
    {"two different Content-Length fields",
     "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\n", E::kMalformed},
    {"Content-Length list with different values", "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5, 6\r\n\r\n", E::kMalformed},
    {"Content-Length with a sign", "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: +5\r\n\r\n", E::kMalformed},
    {"Content-Length in hex", "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 0x5\r\n\r\n", E::kMalformed},
    {"empty Content-Length", "POST / HTTP/1.1\r\nHost: a\r\nContent-Length:\r\n\r\n", E::kMalformed},
    {"Content-Length too long", "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 1234567890123456789\r\n\r\n", E::kMalformed},
    {"Transfer-Encoding in HTTP/1.0", "POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n", E::kMalformed},
    {"Transfer-Encoding not ending in chunked", "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked, gzip\r\n\r\n", E::kMalformed},
    {"Transfer-Encoding without chunked", "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip\r\n\r\n", E::kMalformed},
    {"chunked twice", "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n", E::kMalformed},
    {"chunked with parameters", "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked;x=1\r\n\r\n", E::kMalformed},
    {"look-alike coding", "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: xchunked\r\n\r\n", E::kMalformed},
    {"vertical tab before chunked", "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding:\x0b" "chunked\r\n\r\n", E::kMalformed},
    {"Transfer-Encoding with a space before the colon", "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding : chunked\r\n\r\n", E::kMalformed},
    {"Transfer-Encoding continued by obs-fold", "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip\r\n ,chunked\r\n\r\n", E::kMalformed},
    // unsupported
    {"HTTP/2 connection preface", "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n", E::kUnsupported},
    {"HTTP/2.0 request line", "GET / HTTP/2.0\r\nHost: a\r\n\r\n", E::kUnsupported},
    {"HTTP/1.2", "GET / HTTP/1.2\r\nHost: a\r\n\r\n", E::kUnsupported},
    {"HTTP/0.9 with a version", "GET / HTTP/0.9\r\n\r\n", E::kUnsupported},
    {"CONNECT", "CONNECT a:443 HTTP/1.1\r\nHost: a:443\r\n\r\n", E::kUnsupported},
};

TEST(HttpHeadParser, RefusesBadHeadsWithTheirKind) {
  for (const Bad& c : kBad) {
    SCOPED_TRACE(c.description);
    HttpHeadParser p;
    EXPECT_EQ(p.feed(c.head), S::kError);
    EXPECT_EQ(p.error(), c.error) << p.error_reason();
    EXPECT_STRNE(p.error_reason(), "");
    // The error sticks and nothing more is consumed.
    size_t consumed = 1;
    EXPECT_EQ(p.feed("GET / HTTP/1.1\r\n", &consumed), S::kError);
    EXPECT_EQ(consumed, 0u);
  }
}

TEST(HttpHeadParser, RefusesOtherProtocolsBeforeTheFirstLineEnds) {
  HttpHeadParser p;
  EXPECT_EQ(p.feed("GET"), S::kNeedMore);
  EXPECT_EQ(p.feed(std::string("\x16\x03", 2)), S::kError);
  EXPECT_EQ(p.error(), E::kMalformed);
}

TEST(HttpHeadParser, AcceptsHeadOfExactlyTheLimitAndRefusesOneMore) {
  const std::string base = "GET / HTTP/1.1\r\nHost: a\r\nX: \r\n\r\n";
  HttpHeadLimits limits;
  limits.max_head_bytes = 64;
  std::string exact = base;
  exact.insert(exact.find("X: ") + 3, 64 - base.size(), 'v');
  ASSERT_EQ(exact.size(), 64u);
  HttpHeadParser p(limits);
  EXPECT_EQ(p.feed(exact), S::kComplete) << p.error_reason();
  EXPECT_EQ(p.head_length(), 64u);

  std::string over = exact;
  over.insert(over.find("X: ") + 3, "v");
  p.reset();
  EXPECT_EQ(p.feed(over), S::kError);
  EXPECT_EQ(p.error(), E::kTooLarge);
}

TEST(HttpHeadParser, RefusesOversizedHeadAsSoonAsTheBufferIsFull) {
  HttpHeadLimits limits;
  limits.max_head_bytes = 100;
  HttpHeadParser p(limits);
  std::string head = "GET / HTTP/1.1\r\nHost: a\r\nX: " + std::string(40, 'v');
  EXPECT_EQ(p.feed(head), S::kNeedMore);
  size_t consumed = 0;
  // The head cannot end within 100 bytes once 100 bytes without the end are held.
  EXPECT_EQ(p.feed(std::string(200, 'v'), &consumed), S::kError);
  EXPECT_EQ(p.error(), E::kTooLarge);
  EXPECT_EQ(consumed, 100 - head.size());
}

TEST(HttpHeadParser, RefusesTooManyFields) {
  HttpHeadLimits limits;
  limits.max_fields = 3;
  HttpHeadParser p(limits);
  EXPECT_EQ(p.feed("GET / HTTP/1.1\r\nHost: a\r\nA: 1\r\nB: 2\r\n\r\n"), S::kComplete);
  p.reset();
  EXPECT_EQ(p.feed("GET / HTTP/1.1\r\nHost: a\r\nA: 1\r\nB: 2\r\nC: 3\r\n\r\n"), S::kError);
  EXPECT_EQ(p.error(), E::kMalformed);
  EXPECT_STREQ(p.error_reason(), "too many fields");
}

TEST(HttpHeadParser, FindsFieldsByCaseInsensitiveNameWithOwsTrimmed) {
  HttpHeadParser p;
  ASSERT_EQ(p.feed("GET / HTTP/1.1\r\nHost: a\r\nX-Trace: \t one two \t\r\nx-trace: second\r\n"
                   "X-Empty:\r\nX-Obs: caf\xc3\xa9\r\n\r\n"),
            S::kComplete);
  EXPECT_EQ(p.field("x-TRACE"), "one two");  // the first of two, inner space kept
  EXPECT_EQ(p.field("X-Empty"), "");
  EXPECT_EQ(p.field("X-Obs"), "caf\xc3\xa9");  // obs-text is allowed in values
  EXPECT_EQ(p.field("X-Missing"), std::nullopt);
  ASSERT_EQ(p.fields().size(), 5u);
  EXPECT_EQ(p.fields()[2].name, "x-trace");
}

TEST(HttpHeadParser, FindsCookiesByCaseSensitiveName) {
  HttpHeadParser p;
  ASSERT_EQ(p.feed("GET / HTTP/1.1\r\nHost: a\r\nCookie: a=1; b=\"two\"; c = 3 ;bad; d=\r\n"
                   "Cookie: e=5; a=ignored\r\n\r\n"),
            S::kComplete);
  EXPECT_EQ(p.cookie("a"), "1");
  EXPECT_EQ(p.cookie("b"), "two");
  EXPECT_EQ(p.cookie("c"), "3");
  EXPECT_EQ(p.cookie("d"), "");
  EXPECT_EQ(p.cookie("e"), "5");
  EXPECT_EQ(p.cookie("bad"), std::nullopt);
  EXPECT_EQ(p.cookie("A"), std::nullopt);
}

TEST(HttpHeadParser, ReadsMessageFraming) {
  HttpHeadParser p;
  ASSERT_EQ(p.feed("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 12, 12\r\n\r\n"), S::kComplete);
  EXPECT_EQ(p.content_length(), 12u);
  EXPECT_FALSE(p.chunked());
  p.reset();
  ASSERT_EQ(p.feed("POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip,\t Chunked\r\n\r\n"), S::kComplete);
  EXPECT_EQ(p.content_length(), std::nullopt);
  EXPECT_TRUE(p.chunked());
  p.reset();
  ASSERT_EQ(p.feed("GET / HTTP/1.1\r\nHost: a\r\n\r\n"), S::kComplete);
  EXPECT_EQ(p.content_length(), std::nullopt);
  EXPECT_FALSE(p.chunked());
}

TEST(HttpHeadParser, LeavesThePipelinedRequestForTheNextParse) {
  const std::string stream = "GET /1 HTTP/1.1\r\nHost: a\r\n\r\nGET /2 HTTP/1.1\r\nHost: b\r\n\r\n";
  HttpHeadParser p;
  size_t consumed = 0;
  ASSERT_EQ(p.feed(stream, &consumed), S::kComplete);
  EXPECT_EQ(p.target(), "/1");
  std::string rest = stream.substr(consumed);
  EXPECT_EQ(rest, "GET /2 HTTP/1.1\r\nHost: b\r\n\r\n");
  p.reset();
  ASSERT_EQ(p.feed(rest, &consumed), S::kComplete);
  EXPECT_EQ(p.target(), "/2");
  EXPECT_EQ(p.host(), "b");
  EXPECT_EQ(consumed, rest.size());
}

// One sample head, with a body after it, fed in pieces; every result must equal the
// single-feed parse.
const std::string kSample =
    "POST /api/v1/items?id=7 HTTP/1.1\r\n"
    "Host: shop.example.com:8080\r\n"
    "User-Agent: curl/8.0\r\n"
    "Cookie: session=abc; lb=\"b2\"\r\n"
    "Content-Length: 4\r\n"
    "\r\n"
    "body";

void expect_sample(const HttpHeadParser& p, size_t consumed) {
  ASSERT_EQ(p.status(), S::kComplete) << p.error_reason();
  EXPECT_EQ(p.method(), "POST");
  EXPECT_EQ(p.path(), "/api/v1/items");
  EXPECT_EQ(p.host_name(), "shop.example.com");
  EXPECT_EQ(p.field("user-agent"), "curl/8.0");
  EXPECT_EQ(p.cookie("lb"), "b2");
  EXPECT_EQ(p.content_length(), 4u);
  EXPECT_EQ(p.head_length(), kSample.size() - 4);
  EXPECT_EQ(consumed, kSample.size() - 4);
}

// Feeds the pieces in order until the head completes; returns the bytes consumed in total.
size_t feed_pieces(HttpHeadParser& p, const std::vector<std::string_view>& pieces) {
  size_t total = 0;
  for (std::string_view piece : pieces) {
    size_t consumed = 0;
    HttpParseStatus s = p.feed(piece, &consumed);
    total += consumed;
    if (s != S::kNeedMore) break;
    EXPECT_EQ(consumed, piece.size());
  }
  return total;
}

TEST(HttpHeadParser, ParsesTheSameHeadSplitAtEveryBytePosition) {
  std::string_view s = kSample;
  HttpHeadParser p;
  for (size_t i = 0; i <= s.size(); ++i) {
    SCOPED_TRACE("split at " + std::to_string(i));
    p.reset();
    expect_sample(p, feed_pieces(p, {s.substr(0, i), s.substr(i)}));
  }
}

TEST(HttpHeadParser, ParsesTheSameHeadSplitAtEveryPairOfPositions) {
  std::string_view s = kSample;
  HttpHeadParser p;
  for (size_t i = 0; i <= s.size(); ++i) {
    for (size_t j = i; j <= s.size(); ++j) {
      p.reset();
      size_t consumed = feed_pieces(p, {s.substr(0, i), s.substr(i, j - i), s.substr(j)});
      ASSERT_EQ(p.status(), S::kComplete) << "split at " << i << ", " << j;
      ASSERT_EQ(consumed, kSample.size() - 4) << "split at " << i << ", " << j;
    }
  }
}

TEST(HttpHeadParser, ParsesTheSameHeadFedOneByteAtATime) {
  HttpHeadParser p;
  std::vector<std::string_view> bytes;
  for (size_t i = 0; i < kSample.size(); ++i) bytes.push_back(std::string_view(kSample).substr(i, 1));
  expect_sample(p, feed_pieces(p, bytes));
}

TEST(HttpHeadParser, FindsABareLfOrCrWhateverTheSplit) {
  const std::string head = "GET / HTTP/1.1\r\nHost: a\r\nX: a\rb\r\n\r\n";
  for (size_t i = 0; i <= head.size(); ++i) {
    HttpHeadParser p;
    feed_pieces(p, {std::string_view(head).substr(0, i), std::string_view(head).substr(i)});
    EXPECT_EQ(p.status(), S::kError) << "split at " << i;
  }
}

TEST(HttpHeadParser, ResetServesANewConnection) {
  HttpHeadParser p;
  EXPECT_EQ(p.feed("BAD\x01"), S::kError);
  p.reset();
  EXPECT_EQ(p.status(), S::kNeedMore);
  EXPECT_EQ(p.feed("GET / HTTP/1.1\r\nHost: a\r\n\r\n"), S::kComplete);
  EXPECT_EQ(p.host(), "a");
}

}  // namespace
}  // namespace baton
