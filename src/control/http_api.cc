// SPDX-License-Identifier: Apache-2.0
#include "control/http_api.h"

#include <sys/socket.h>

#include <cctype>
#include <cerrno>
#include <chrono>
#include <cstring>
#include <regex>
#include <stdexcept>

#include <httplib.h>

#include "common/log.h"

namespace baton::control {

namespace {

constexpr const char* kJsonType = "application/json";
const std::string kEmpty;

const char* reason_phrase(int status) {
  switch (status) {
    case 400: return "bad request";
    case 404: return "not found";
    case 405: return "method not allowed";
    case 413: return "request body too large";
    case 414: return "request URI too long";
    case 500: return "internal error";
    case 503: return "service unavailable";
    default: return "request failed";
  }
}

}  // namespace

struct HttpApi::Route {
  std::string method;
  std::string pattern;
  std::regex re;
  std::vector<std::string> names;  // path parameter names in capture order
  ApiHandler handler;
};

const std::string& ApiRequest::param(const std::string& name) const {
  auto it = params.find(name);
  return it == params.end() ? kEmpty : it->second;
}

std::optional<std::string> ApiRequest::query_value(const std::string& name) const {
  auto it = query.find(name);
  if (it == query.end()) return std::nullopt;
  return it->second;
}

ApiResult ApiResult::error(int status, std::string_view message) {
  return {status, nlohmann::json{{"error", std::string(message)}}};
}

bool parse_host_port(std::string_view listen, std::string* host, uint16_t* port,
                     std::string* error) {
  std::string_view h, p;
  if (!listen.empty() && listen.front() == '[') {
    auto close = listen.find(']');
    if (close == std::string_view::npos || close + 1 >= listen.size() ||
        listen[close + 1] != ':') {
      *error = "expected [address]:port in '" + std::string(listen) + "'";
      return false;
    }
    h = listen.substr(1, close - 1);
    p = listen.substr(close + 2);
  } else {
    auto colon = listen.rfind(':');
    if (colon == std::string_view::npos || listen.find(':') != colon) {
      *error = "expected host:port in '" + std::string(listen) + "'";
      return false;
    }
    h = listen.substr(0, colon);
    p = listen.substr(colon + 1);
  }
  if (h.empty() || p.empty() || p.size() > 5) {
    *error = "expected host:port in '" + std::string(listen) + "'";
    return false;
  }
  unsigned value = 0;
  for (char c : p) {
    if (c < '0' || c > '9') {
      *error = "bad port in '" + std::string(listen) + "'";
      return false;
    }
    value = value * 10 + static_cast<unsigned>(c - '0');
  }
  if (value > 65535) {
    *error = "port out of range in '" + std::string(listen) + "'";
    return false;
  }
  *host = std::string(h);
  *port = static_cast<uint16_t>(value);
  return true;
}

HttpApi::HttpApi(HttpApiConfig config) : config_(std::move(config)) {}

HttpApi::~HttpApi() { stop(); }

void HttpApi::route(std::string_view method, std::string_view pattern, ApiHandler handler) {
  if (server_) throw std::logic_error("HttpApi::route after start()");
  if (pattern.empty() || pattern.front() != '/')
    throw std::logic_error("HttpApi::route: pattern must start with '/'");
  Route r;
  r.method = std::string(method);
  r.pattern = std::string(pattern);
  r.handler = std::move(handler);
  // Translate "/v1/vms/:vm/migration" into ^/v1/vms/([^/]+)/migration$, escaping the
  // literal parts so a '.' or '+' in a pattern means itself.
  std::string re = "^";
  std::size_t i = 0;
  while (i < pattern.size()) {
    if (pattern[i] == ':' && (i == 0 || pattern[i - 1] == '/')) {
      // A name is [A-Za-z0-9_]+, so "/:port.json" has the parameter "port".
      std::size_t end = i + 1;
      while (end < pattern.size() && (std::isalnum(static_cast<unsigned char>(pattern[end])) ||
                                      pattern[end] == '_'))
        ++end;
      std::string name(pattern.substr(i + 1, end - i - 1));
      if (name.empty()) throw std::logic_error("HttpApi::route: empty parameter name");
      r.names.push_back(std::move(name));
      re += "([^/]+)";
      i = end;
      continue;
    }
    char c = pattern[i++];
    if (std::strchr(".^$|()[]{}*+?\\", c)) re += '\\';
    re += c;
  }
  re += "$";
  r.re = std::regex(re);
  routes_.push_back(std::move(r));
}

ApiResult HttpApi::dispatch(std::string_view method, std::string_view path,
                            std::map<std::string, std::string> query,
                            std::string_view raw_body) const {
  return dispatch_impl(method, path, std::move(query), raw_body, nullptr);
}

ApiResult HttpApi::dispatch_impl(std::string_view method, std::string_view path,
                                 std::map<std::string, std::string> query,
                                 std::string_view raw_body, std::string* allow) const {
  const std::string p(path);
  const Route* found = nullptr;
  std::smatch match;
  std::string allowed;
  for (const Route& r : routes_) {
    std::smatch m;
    if (!std::regex_match(p, m, r.re)) continue;
    // HEAD is answered by the GET route (httplib strips the body).
    if (r.method == method || (method == "HEAD" && r.method == "GET")) {
      found = &r;
      match = std::move(m);
      break;
    }
    if (!allowed.empty()) allowed += ", ";
    allowed += r.method;
  }
  if (!found) {
    if (allow) *allow = allowed;
    if (!allowed.empty())
      return ApiResult::error(405, std::string(method) + " not allowed on " + p +
                                       " (allowed: " + allowed + ")");
    return ApiResult::error(404, "no such endpoint: " + p);
  }

  ApiRequest req;
  req.method = std::string(method);
  req.path = p;
  req.query = std::move(query);
  for (std::size_t i = 0; i < found->names.size(); ++i)
    req.params[found->names[i]] = match[i + 1].str();
  if (!raw_body.empty()) {
    req.body = nlohmann::json::parse(raw_body, nullptr, /*allow_exceptions=*/false);
    if (req.body.is_discarded())
      return ApiResult::error(400, "request body is not valid JSON");
  }

  try {
    ApiResult res = found->handler(req);
    if (res.status < 100 || res.status > 599) {
      BLOG_ERR("api", "%s %s: handler returned status %d", req.method.c_str(), p.c_str(),
               res.status);
      return ApiResult::error(500, "handler returned an invalid status");
    }
    return res;
  } catch (const std::exception& e) {
    BLOG_ERR("api", "%s %s: handler threw: %s", req.method.c_str(), p.c_str(), e.what());
    return ApiResult::error(500, std::string("internal error: ") + e.what());
  } catch (...) {
    BLOG_ERR("api", "%s %s: handler threw a non-exception", req.method.c_str(), p.c_str());
    return ApiResult::error(500, "internal error");
  }
}

bool HttpApi::start(std::string* error) {
  if (server_) {
    *error = "HTTP API already started";
    return false;
  }
  std::string host;
  uint16_t port = 0;
  if (!parse_host_port(config_.listen, &host, &port, error)) return false;

  auto server = std::make_unique<httplib::Server>();
  const std::size_t threads = config_.threads ? config_.threads : 1;
  server->new_task_queue = [threads] { return new httplib::ThreadPool(threads); };
  server->set_payload_max_length(config_.max_body_bytes);
  // httplib's default also sets SO_REUSEPORT, which would let a second batond share (and
  // steal half of) this port silently; keep only SO_REUSEADDR for quick restarts.
  server->set_socket_options([](int sock) {
    int yes = 1;
    ::setsockopt(sock, SOL_SOCKET, SO_REUSEADDR, &yes, sizeof yes);
  });
  server->set_read_timeout(5, 0);
  server->set_write_timeout(5, 0);

  auto handle = [this](const httplib::Request& hreq, httplib::Response& hres) {
    std::map<std::string, std::string> query;
    for (const auto& [k, v] : hreq.params) query[k] = v;
    std::string allow;
    ApiResult r = dispatch_impl(hreq.method, hreq.path, std::move(query), hreq.body, &allow);
    // A 405 carries the methods that would work (RFC 9110 section 15.5.6).
    if (r.status == 405) hres.set_header("Allow", allow);
    hres.status = r.status;
    hres.set_content(r.body.dump(), kJsonType);
  };
  // One catch-all per method: matching, 404 and 405 are ours (see the header).
  server->Get(".*", handle);
  server->Post(".*", handle);
  server->Put(".*", handle);
  server->Patch(".*", handle);
  server->Delete(".*", handle);
  // Errors httplib produces itself (413 body too large, 400 unparsable request, ...) get a
  // JSON body too.
  server->set_error_handler(httplib::Server::HandlerWithResponse(
      [](const httplib::Request&, httplib::Response& hres) {
        if (!hres.body.empty()) return httplib::Server::HandlerResponse::Unhandled;
        hres.set_content(
            ApiResult::error(hres.status, reason_phrase(hres.status)).body.dump(), kJsonType);
        return httplib::Server::HandlerResponse::Handled;
      }));

  int bound = 0;
  errno = 0;
  if (port == 0) {
    bound = server->bind_to_any_port(host);
    if (bound <= 0) bound = 0;
  } else if (server->bind_to_port(host, port)) {
    bound = port;
  }
  if (bound == 0) {
    *error = "cannot bind control API to " + config_.listen;
    if (errno != 0) *error += std::string(": ") + std::strerror(errno);
    return false;
  }
  port_ = static_cast<uint16_t>(bound);
  server_ = std::move(server);
  thread_ = std::thread([srv = server_.get()] { srv->listen_after_bind(); });
  // httplib's stop() is a no-op until the accept loop has started, so a stop() right after
  // start() would hang the join; wait for the loop (it starts within microseconds).
  for (int i = 0; i < 2000 && !server_->is_running(); ++i)
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  BLOG_INFO("api", "control API listening on %s port %u", host.c_str(), unsigned{port_});
  return true;
}

void HttpApi::stop() {
  if (!server_) return;
  server_->stop();
  if (thread_.joinable()) thread_.join();
  server_.reset();
  port_ = 0;
}

}  // namespace baton::control
