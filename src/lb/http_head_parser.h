// SPDX-License-Identifier: Apache-2.0
//
// HttpHeadParser: an incremental HTTP/1.1 request-head parser for L7 load balancing (delayed
// binding reads the head before choosing a backend). Pure logic: no DPDK, no clock.
//
// Theory of operation. Bytes are fed as TCP segments deliver them; a head may span several
// segments and a split may fall anywhere, even between CR and LF. feed() copies bytes into a
// buffer the parser owns, sized once at construction to the configured head limit, and handles
// each line as soon as its CRLF arrives: the request line first (RFC 9112 section 3), then field
// lines (RFC 9112 section 5), then the empty line that ends the head. So a bad request line is
// refused on the segment that carries it, and garbage such as a TLS ClientHello is refused on
// its first byte (the method must be a token). Once the head is complete, whole-head checks run
// (Host, message framing) and the accessors return string_views into the buffer: the parser
// must outlive them and reset() invalidates them.
//
// feed() consumes bytes only up to the end of the head: what follows (a body, or a pipelined
// second request) is left to the caller, and head_length() says where the body starts.
//
// Reject rather than guess. Anything a lenient parser would have to interpret is an error, so
// the load balancer and the backend can never disagree about where this request ends (request
// smuggling, RFC 9112 section 11.2) or what host it is for:
//   kTooLarge     the head does not end within max_head_bytes (request line, fields and the
//                 final CRLF all count).
//   kMalformed    a bare LF or bare CR (RFC 9112 2.2); empty lines before the request line;
//                 a request line that is not exactly `token SP target SP HTTP/d.d`; a target
//                 with control, space, non-ASCII or '#' bytes, "*" outside OPTIONS, a scheme
//                 other than http/https or userinfo in absolute-form; an obs-fold line
//                 (RFC 9112 5.2); whitespace before the colon (RFC 9112 5.1); a field name that
//                 is not a token or a value with control characters (RFC 9110 5.5); more than
//                 max_fields fields; no Host in HTTP/1.1, more than one Host, an invalid Host,
//                 or a Host that differs from an absolute-form target's authority (RFC 9112
//                 3.2, 3.2.2); Content-Length that is not digits or whose values differ
//                 (RFC 9110 8.6); both Content-Length and Transfer-Encoding (RFC 9112 6.1);
//                 Transfer-Encoding in HTTP/1.0, or whose last coding is not a single
//                 "chunked" (RFC 9112 6.3 item 4, 7).
//   kUnsupported  a well-formed version other than HTTP/1.0 and HTTP/1.1 (so the HTTP/2
//                 preface "PRI * HTTP/2.0" is refused as unsupported), and CONNECT (a reverse
//                 proxy does not tunnel).
// error_reason() gives a short static text for logs and tests.
//
// Not supported, because the first request of a connection is all delayed binding reads (one
// backend per client connection; keep-alive requests stay on it): parsing bodies, chunked
// framing, responses, and trailers. Not done, because the path is only used to choose a pool:
// percent-decoding or dot-segment removal of the path (route on the raw path; do not use path
// prefixes as access control).
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <optional>
#include <span>
#include <string_view>
#include <vector>

namespace baton {

struct HttpHeadLimits {
  uint32_t max_head_bytes = 8192;  // the whole head, final CRLF included
  uint32_t max_fields = 100;       // field lines
};

enum class HttpParseStatus : uint8_t { kNeedMore, kComplete, kError };
enum class HttpParseError : uint8_t { kNone, kTooLarge, kMalformed, kUnsupported };
const char* to_string(HttpParseError e);

struct HttpField {
  std::string_view name;   // as sent (compare with ascii_iequals)
  std::string_view value;  // leading and trailing OWS removed
};

// ASCII case-insensitive equality (field names, host names, schemes).
bool ascii_iequals(std::string_view a, std::string_view b);
// RFC 9110 5.6.2: token = 1*tchar (field names, methods, cookie names).
bool is_http_token(std::string_view s);

class HttpHeadParser {
 public:
  explicit HttpHeadParser(const HttpHeadLimits& limits = {});
  HttpHeadParser(const HttpHeadParser&) = delete;
  HttpHeadParser& operator=(const HttpHeadParser&) = delete;

  // Feeds the next bytes of the stream. *consumed (if given) receives how many bytes of `data`
  // belong to the head: all of them while kNeedMore, up to and including the final CRLF on
  // kComplete. After kComplete or kError the status sticks and nothing more is consumed.
  HttpParseStatus feed(std::string_view data, size_t* consumed = nullptr);
  // Forgets everything (keeps the buffer) so that the parser can serve another connection.
  void reset();

  HttpParseStatus status() const { return status_; }
  HttpParseError error() const { return error_; }
  const char* error_reason() const { return reason_; }

  // The head, once kComplete; before that (or after an error) they may hold partial results.
  size_t head_length() const { return status_ == HttpParseStatus::kComplete ? len_ : 0; }
  std::string_view method() const { return method_; }
  std::string_view target() const { return target_; }  // the request-target as sent
  // The target's path without the query: "/a/b" for "/a/b?x" and "http://h/a/b?x", "/" for
  // "http://h", "*" for OPTIONS *.
  std::string_view path() const { return path_; }
  uint8_t version_minor() const { return version_minor_; }  // HTTP/1.<minor>: 0 or 1
  // The authority the request is for, port included: an absolute-form target's authority,
  // else the Host field; empty for HTTP/1.0 without Host. host_name() strips the port.
  std::string_view host() const { return host_; }
  std::string_view host_name() const;

  std::span<const HttpField> fields() const { return fields_; }
  // The first field with this name (case-insensitive), if any.
  std::optional<std::string_view> field(std::string_view name) const;
  // The value of the first cookie with this name (case-sensitive, RFC 6265 5.4) across all
  // Cookie fields; surrounding DQUOTEs removed. Pairs without '=' are skipped.
  std::optional<std::string_view> cookie(std::string_view name) const;

  std::optional<uint64_t> content_length() const { return content_length_; }
  bool chunked() const { return chunked_; }

 private:
  enum class Stage : uint8_t { kRequestLine, kFields };

  static constexpr size_t kMethodChecked = SIZE_MAX;  // checked_ once the method is complete

  bool reject(HttpParseError e, const char* reason);  // records the error; returns false
  bool early_check();                       // the partial request line so far
  bool on_line(std::string_view line);      // one complete line, CRLF removed
  bool on_request_line(std::string_view line);
  bool on_field_line(std::string_view line);
  bool finish();                            // whole-head checks after the empty line
  bool parse_target();
  bool check_framing();

  HttpHeadLimits limits_;
  std::unique_ptr<char[]> buf_;
  size_t len_ = 0;          // bytes held
  size_t line_start_ = 0;   // start of the line being received
  size_t checked_ = 0;      // bytes of the method already checked (early_check)
  Stage stage_ = Stage::kRequestLine;
  HttpParseStatus status_ = HttpParseStatus::kNeedMore;
  HttpParseError error_ = HttpParseError::kNone;
  const char* reason_ = "";

  std::string_view method_, target_, path_, host_;
  uint8_t version_minor_ = 0;
  std::vector<HttpField> fields_;  // capacity max_fields, reserved once
  std::optional<uint64_t> content_length_;
  bool chunked_ = false;
};

}  // namespace baton
