// SPDX-License-Identifier: Apache-2.0
//
// HttpApi: the control API's HTTP/JSON front end (DESIGN.md section 6), a thin router over
// httplib::Server.
//
// Theory of operation. The daemon registers routes before start(): a method, a pattern such
// as "/v1/vms/:vm/migration" (":name" matches one path segment) and a handler that turns an
// ApiRequest into an ApiResult {status, json body}. We do our own matching instead of
// registering each route with httplib because the Debian httplib (0.11) has no ":param"
// support and because we want one place that makes every answer JSON: unknown path -> 404,
// known path with another method -> 405, malformed JSON body -> 400 before the handler runs,
// body over the limit -> 413, handler exception -> 500. All bodies are JSON objects or
// arrays with Content-Type application/json; errors are {"error": "..."}.
//
// Threading. start() binds synchronously (so a busy port is reported to the caller, not
// logged from a thread) and serves from a small httplib thread pool. Handlers therefore run
// on API threads, possibly concurrently with each other: they must not touch worker-owned
// state directly (STYLE.md item 3) but read snapshots or send typed commands. The route table
// is frozen by start(); route() after start() is a programming error and throws.
#pragma once

#include <cstddef>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

#include <nlohmann/json.hpp>

namespace httplib {
class Server;
}

namespace baton::control {

struct ApiRequest {
  std::string method;  // "GET", "POST", ...
  std::string path;    // decoded path without the query string
  std::map<std::string, std::string> params;  // path parameters by name (":vm" -> "vm")
  std::map<std::string, std::string> query;   // query parameters; the last one wins
  nlohmann::json body;  // parsed body; null when the request had none

  // Path parameter `name`; empty when the route has no such parameter.
  const std::string& param(const std::string& name) const;
  // Query parameter `name`, if present (possibly empty: "?vm=").
  std::optional<std::string> query_value(const std::string& name) const;
};

struct ApiResult {
  int status = 200;
  nlohmann::json body = nlohmann::json::object();

  static ApiResult ok(nlohmann::json body) { return {200, std::move(body)}; }
  static ApiResult error(int status, std::string_view message);
};

using ApiHandler = std::function<ApiResult(const ApiRequest&)>;

struct HttpApiConfig {
  std::string listen = "127.0.0.1:9090";  // "host:port", "[v6]:port"; port 0 = any free port
  std::size_t max_body_bytes = 1 << 20;   // larger request bodies get 413
  std::size_t threads = 4;
};

// Splits "host:port" / "[v6addr]:port". Returns false with a reason on a malformed string.
bool parse_host_port(std::string_view listen, std::string* host, uint16_t* port,
                     std::string* error);

class HttpApi {
 public:
  explicit HttpApi(HttpApiConfig config = {});
  ~HttpApi();
  HttpApi(const HttpApi&) = delete;
  HttpApi& operator=(const HttpApi&) = delete;

  // Registers a handler. Throws std::logic_error after start() or on a bad pattern.
  void route(std::string_view method, std::string_view pattern, ApiHandler handler);

  // Binds and starts serving on a thread. Returns false (and sets *error) when the address
  // is malformed or the bind fails; nothing is left running in that case.
  bool start(std::string* error);
  // Stops serving and joins the thread. Idempotent.
  void stop();

  bool running() const { return thread_.joinable(); }
  // The bound port (useful after binding port 0); 0 before start().
  uint16_t port() const { return port_; }

  // Runs the router without HTTP: what a request with this method, decoded path, query and
  // raw body would get. Used by the server and by tests.
  ApiResult dispatch(std::string_view method, std::string_view path,
                     std::map<std::string, std::string> query, std::string_view raw_body) const;

 private:
  struct Route;
  ApiResult dispatch_impl(std::string_view method, std::string_view path,
                          std::map<std::string, std::string> query, std::string_view raw_body,
                          std::string* allow) const;

  HttpApiConfig config_;
  std::vector<Route> routes_;
  std::unique_ptr<httplib::Server> server_;
  std::thread thread_;
  uint16_t port_ = 0;
};

}  // namespace baton::control
