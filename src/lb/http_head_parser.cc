// SPDX-License-Identifier: Apache-2.0
#include "lb/http_head_parser.h"

#include <cstring>

namespace baton {
namespace {

bool is_digit(unsigned char c) { return c >= '0' && c <= '9'; }
bool is_alnum(unsigned char c) { return is_digit(c) || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z'); }
bool is_hex(unsigned char c) { return is_digit(c) || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F'); }
// RFC 9110 5.6.2: tchar = "!" / "#" / "$" / "%" / "&" / "'" / "*" / "+" / "-" / "." / "^" /
// "_" / "`" / "|" / "~" / DIGIT / ALPHA.
bool is_tchar(unsigned char c) {
  return is_alnum(c) || (c != 0 && std::strchr("!#$%&'*+-.^_`|~", c) != nullptr);
}
bool is_ows(char c) { return c == ' ' || c == '\t'; }
std::string_view trim_ows(std::string_view s) {
  while (!s.empty() && is_ows(s.front())) s.remove_prefix(1);
  while (!s.empty() && is_ows(s.back())) s.remove_suffix(1);
  return s;
}
char ascii_lower(char c) { return (c >= 'A' && c <= 'Z') ? static_cast<char>(c + 32) : c; }
bool is_digits(std::string_view s) {
  if (s.empty()) return false;
  for (char c : s)
    if (!is_digit(c)) return false;
  return true;
}

// RFC 3986 3.2.2 / 3.2.3 (RFC 9110 7.2): uri-host [ ":" port ], where uri-host is an
// IP-literal in brackets or a reg-name / IPv4 address (unreserved, pct-encoded, sub-delims).
// An empty value is allowed: RFC 9110 7.2 asks for one when the target has no authority.
bool valid_authority(std::string_view a) {
  std::string_view host = a, port;
  if (!a.empty() && a.front() == '[') {
    size_t close = a.find(']');
    if (close == std::string_view::npos || close < 2) return false;
    for (char c : a.substr(1, close - 1))
      if (!is_hex(c) && c != ':' && c != '.') return false;
    if (close + 1 < a.size() && a[close + 1] != ':') return false;
    port = close + 1 < a.size() ? a.substr(close + 2) : std::string_view{};
    host = {};
  } else if (size_t colon = a.find(':'); colon != std::string_view::npos) {
    host = a.substr(0, colon);
    port = a.substr(colon + 1);
  }
  if (!port.empty() && !is_digits(port)) return false;
  for (unsigned char c : host) {
    bool ok = is_alnum(c) || (c != 0 && std::strchr("-._~%!$&'()*+,;=", c) != nullptr);
    if (!ok) return false;
  }
  return true;
}

// Splits a comma-separated list (RFC 9110 5.6.1), skipping empty elements; f(element) returns
// false to stop with failure.
template <typename F>
bool for_each_element(std::string_view list, F f) {
  while (true) {
    size_t comma = list.find(',');
    std::string_view e = trim_ows(list.substr(0, comma));
    if (!e.empty() && !f(e)) return false;
    if (comma == std::string_view::npos) return true;
    list.remove_prefix(comma + 1);
  }
}

}  // namespace

const char* to_string(HttpParseError e) {
  switch (e) {
    case HttpParseError::kNone: return "none";
    case HttpParseError::kTooLarge: return "too_large";
    case HttpParseError::kMalformed: return "malformed";
    case HttpParseError::kUnsupported: return "unsupported";
  }
  return "?";
}

bool is_http_token(std::string_view s) {
  if (s.empty()) return false;
  for (unsigned char c : s)
    if (!is_tchar(c)) return false;
  return true;
}

bool ascii_iequals(std::string_view a, std::string_view b) {
  if (a.size() != b.size()) return false;
  for (size_t i = 0; i < a.size(); ++i)
    if (ascii_lower(a[i]) != ascii_lower(b[i])) return false;
  return true;
}

HttpHeadParser::HttpHeadParser(const HttpHeadLimits& limits)
    : limits_(limits), buf_(new char[limits.max_head_bytes]) {
  fields_.reserve(limits.max_fields);
}

void HttpHeadParser::reset() {
  len_ = line_start_ = checked_ = 0;
  stage_ = Stage::kRequestLine;
  status_ = HttpParseStatus::kNeedMore;
  error_ = HttpParseError::kNone;
  reason_ = "";
  method_ = target_ = path_ = host_ = {};
  version_minor_ = 0;
  fields_.clear();
  content_length_.reset();
  chunked_ = false;
}

bool HttpHeadParser::reject(HttpParseError e, const char* reason) {
  status_ = HttpParseStatus::kError;
  error_ = e;
  reason_ = reason;
  return false;
}

HttpParseStatus HttpHeadParser::feed(std::string_view data, size_t* consumed) {
  size_t taken = 0;
  if (consumed) *consumed = 0;
  while (status_ == HttpParseStatus::kNeedMore && taken < data.size()) {
    // Copy up to and including the next LF, within the limit.
    size_t n = std::min<size_t>(limits_.max_head_bytes - len_, data.size() - taken);
    const void* lf = std::memchr(data.data() + taken, '\n', n);
    if (lf) n = static_cast<const char*>(lf) - (data.data() + taken) + 1;
    std::memcpy(buf_.get() + len_, data.data() + taken, n);
    len_ += n;
    taken += n;
    if (consumed) *consumed = taken;
    if (!lf) {
      if (stage_ == Stage::kRequestLine) early_check();
    } else if (len_ - line_start_ < 2 || buf_[len_ - 2] != '\r') {
      // RFC 9112 2.2: every line ends in CRLF; a bare LF is refused rather than tolerated.
      reject(HttpParseError::kMalformed, "bare LF");
    } else {
      std::string_view line(buf_.get() + line_start_, len_ - 2 - line_start_);
      line_start_ = len_;
      on_line(line);
    }
    // A full buffer that holds no complete head can never complete within the limit.
    if (status_ == HttpParseStatus::kNeedMore && len_ == limits_.max_head_bytes)
      reject(HttpParseError::kTooLarge, "head too large");
  }
  return status_;
}

// While the request line is incomplete, its method so far must be token characters: a client
// speaking another protocol (TLS, SSH) is refused at once rather than after max_head_bytes or a
// timeout.
bool HttpHeadParser::early_check() {
  for (; checked_ < len_; ++checked_) {
    unsigned char c = buf_[checked_];
    if (c == ' ') {
      checked_ = kMethodChecked;  // the rest waits for the whole line
      return true;
    }
    if (!is_tchar(c))
      return reject(HttpParseError::kMalformed, checked_ == 0 && c == '\r'
                                                   ? "empty line before request line"
                                                   : "invalid method");
  }
  return true;
}

bool HttpHeadParser::on_line(std::string_view line) {
  if (stage_ == Stage::kRequestLine) {
    stage_ = Stage::kFields;
    return on_request_line(line);
  }
  if (line.empty()) return finish();
  return on_field_line(line);
}

// RFC 9112 3: request-line = method SP request-target SP HTTP-version, single spaces.
bool HttpHeadParser::on_request_line(std::string_view line) {
  if (line.empty()) return reject(HttpParseError::kMalformed, "empty line before request line");
  size_t sp1 = line.find(' ');
  size_t sp2 = sp1 == std::string_view::npos ? sp1 : line.find(' ', sp1 + 1);
  if (sp2 == std::string_view::npos)
    return reject(HttpParseError::kMalformed, "request line needs method, target and version");
  method_ = line.substr(0, sp1);
  target_ = line.substr(sp1 + 1, sp2 - sp1 - 1);
  std::string_view version = line.substr(sp2 + 1);
  if (!is_http_token(method_)) return reject(HttpParseError::kMalformed, "invalid method");
  // RFC 9112 2.3: HTTP-version = "HTTP" "/" DIGIT "." DIGIT, case-sensitive.
  if (version.size() != 8 || version.substr(0, 5) != "HTTP/" || !is_digit(version[5]) ||
      version[6] != '.' || !is_digit(version[7]))
    return reject(HttpParseError::kMalformed, "invalid HTTP version");
  if (version[5] != '1' || (version[7] != '0' && version[7] != '1'))
    return reject(HttpParseError::kUnsupported, "HTTP version not 1.0 or 1.1");
  version_minor_ = static_cast<uint8_t>(version[7] - '0');
  if (method_ == "CONNECT") return reject(HttpParseError::kUnsupported, "CONNECT");
  return parse_target();
}

// RFC 9112 3.2: origin-form "/path?query", absolute-form "http://authority/path?query",
// asterisk-form "*" (OPTIONS only). authority-form belongs to CONNECT, refused above.
bool HttpHeadParser::parse_target() {
  if (target_.empty()) return reject(HttpParseError::kMalformed, "empty request target");
  for (unsigned char c : target_)
    if (c <= 0x20 || c >= 0x7f || c == '#')
      return reject(HttpParseError::kMalformed, "invalid character in request target");
  if (target_ == "*") {
    if (method_ != "OPTIONS") return reject(HttpParseError::kMalformed, "* target outside OPTIONS");
    path_ = target_;
    return true;
  }
  std::string_view rest = target_;
  if (rest.front() != '/') {
    size_t sep = rest.find("://");
    if (sep == std::string_view::npos ||
        !(ascii_iequals(rest.substr(0, sep), "http") || ascii_iequals(rest.substr(0, sep), "https")))
      return reject(HttpParseError::kMalformed, "request target neither origin- nor absolute-form");
    rest.remove_prefix(sep + 3);
    size_t end = rest.find_first_of("/?");
    std::string_view authority = rest.substr(0, end);
    // RFC 9110 4.2.4: userinfo is deprecated and a classic way to confuse host checks.
    if (authority.empty() || authority.find('@') != std::string_view::npos ||
        !valid_authority(authority))
      return reject(HttpParseError::kMalformed, "invalid authority in absolute-form target");
    host_ = authority;
    rest.remove_prefix(authority.size());
  }
  path_ = rest.substr(0, rest.find('?'));
  if (path_.empty()) path_ = "/";  // RFC 9110 4.2.3: an empty path means "/"
  return true;
}

// RFC 9112 5.1: field-line = field-name ":" OWS field-value OWS.
bool HttpHeadParser::on_field_line(std::string_view line) {
  if (is_ows(line.front())) return reject(HttpParseError::kMalformed, "obs-fold");
  size_t colon = line.find(':');
  if (colon == std::string_view::npos) return reject(HttpParseError::kMalformed, "field without colon");
  std::string_view name = line.substr(0, colon);
  if (!name.empty() && is_ows(name.back()))
    return reject(HttpParseError::kMalformed, "whitespace before colon");
  if (!is_http_token(name)) return reject(HttpParseError::kMalformed, "invalid field name");
  std::string_view value = trim_ows(line.substr(colon + 1));
  // RFC 9110 5.5: field-vchar = VCHAR / obs-text, with SP / HTAB inside; CR, LF, NUL and the
  // other controls are refused.
  for (unsigned char c : value)
    if ((c < 0x20 && c != '\t') || c == 0x7f)
      return reject(HttpParseError::kMalformed, "control character in field value");
  if (fields_.size() == limits_.max_fields)
    return reject(HttpParseError::kMalformed, "too many fields");
  fields_.push_back({name, value});
  return true;
}

bool HttpHeadParser::finish() {
  // RFC 9112 3.2: 400 for HTTP/1.1 without Host and for more than one Host.
  const HttpField* host = nullptr;
  for (const HttpField& f : fields_) {
    if (!ascii_iequals(f.name, "host")) continue;
    if (host) return reject(HttpParseError::kMalformed, "more than one Host");
    host = &f;
  }
  if (!host && version_minor_ == 1) return reject(HttpParseError::kMalformed, "missing Host");
  if (host && !valid_authority(host->value)) return reject(HttpParseError::kMalformed, "invalid Host");
  if (!host_.empty()) {
    // RFC 9112 3.2.2 says to use the target's authority and ignore Host; two different answers
    // to "which host" are refused instead, so no later hop can pick the other one.
    if (host && !ascii_iequals(host->value, host_))
      return reject(HttpParseError::kMalformed, "Host differs from target authority");
  } else if (host) {
    host_ = host->value;
  }
  if (!check_framing()) return false;
  status_ = HttpParseStatus::kComplete;
  return true;
}

// Message framing (RFC 9112 6): the one place where a load balancer and a backend that read a
// request differently let a second, hidden request through.
bool HttpHeadParser::check_framing() {
  bool has_te = false;
  int chunked_count = 0;
  bool last_chunked = false;
  for (const HttpField& f : fields_) {
    if (ascii_iequals(f.name, "content-length")) {
      // RFC 9110 8.6: a list of identical values may stand for one; different ones may not.
      bool ok = for_each_element(f.value, [&](std::string_view e) {
        if (!is_digits(e) || e.size() > 18) return false;  // 18 digits cannot overflow
        uint64_t v = 0;
        for (char c : e) v = v * 10 + static_cast<uint64_t>(c - '0');
        if (content_length_ && *content_length_ != v) return false;
        content_length_ = v;
        return true;
      });
      if (!ok || !content_length_)
        return reject(HttpParseError::kMalformed, "invalid or conflicting Content-Length");
    } else if (ascii_iequals(f.name, "transfer-encoding")) {
      has_te = true;
      bool ok = for_each_element(f.value, [&](std::string_view e) {
        if (!is_http_token(e)) return false;  // parameters are refused too: rare and a parsing risk
        last_chunked = ascii_iequals(e, "chunked");
        chunked_count += last_chunked;
        return true;
      });
      if (!ok) return reject(HttpParseError::kMalformed, "invalid Transfer-Encoding");
    }
  }
  if (!has_te) return true;
  if (content_length_)
    return reject(HttpParseError::kMalformed, "both Content-Length and Transfer-Encoding");
  if (version_minor_ == 0)
    return reject(HttpParseError::kMalformed, "Transfer-Encoding in HTTP/1.0");
  if (!last_chunked || chunked_count != 1)
    return reject(HttpParseError::kMalformed, "Transfer-Encoding not ending in one chunked");
  chunked_ = true;
  return true;
}

std::string_view HttpHeadParser::host_name() const {
  if (!host_.empty() && host_.front() == '[') return host_.substr(0, host_.find(']') + 1);
  return host_.substr(0, host_.find(':'));
}

std::optional<std::string_view> HttpHeadParser::field(std::string_view name) const {
  for (const HttpField& f : fields_)
    if (ascii_iequals(f.name, name)) return f.value;
  return std::nullopt;
}

// RFC 6265 5.4 / 4.2.1: cookie-string = cookie-pair *( ";" SP cookie-pair ).
std::optional<std::string_view> HttpHeadParser::cookie(std::string_view name) const {
  for (const HttpField& f : fields_) {
    if (!ascii_iequals(f.name, "cookie")) continue;
    std::string_view rest = f.value;
    while (!rest.empty()) {
      size_t semi = rest.find(';');
      std::string_view pair = trim_ows(rest.substr(0, semi));
      rest = semi == std::string_view::npos ? std::string_view{} : rest.substr(semi + 1);
      size_t eq = pair.find('=');
      if (eq == std::string_view::npos || trim_ows(pair.substr(0, eq)) != name) continue;
      std::string_view value = trim_ows(pair.substr(eq + 1));
      if (value.size() >= 2 && value.front() == '"' && value.back() == '"')
        value = value.substr(1, value.size() - 2);
      return value;
    }
  }
  return std::nullopt;
}

}  // namespace baton
