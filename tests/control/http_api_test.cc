// SPDX-License-Identifier: Apache-2.0
#include "control/http_api.h"

#include <stdexcept>
#include <string>

#include <gtest/gtest.h>
#include <httplib.h>

namespace baton::control {
namespace {

using nlohmann::json;

// A server on an ephemeral port with a few routes; every test talks real HTTP to it.
class HttpApiTest : public ::testing::Test {
 protected:
  void SetUp() override {
    api_.route("GET", "/v1/vms/:vm/migration", [](const ApiRequest& r) {
      return ApiResult::ok({{"vm", r.param("vm")}, {"method", r.method}});
    });
    api_.route("POST", "/v1/vms/:vm/migration/:verb", [](const ApiRequest& r) {
      return ApiResult::ok({{"vm", r.param("vm")}, {"verb", r.param("verb")}, {"body", r.body}});
    });
    api_.route("POST", "/v1/vms/:vm/migration", [](const ApiRequest& r) {
      if (!r.body.is_object() || !r.body.contains("peers"))
        return ApiResult::error(400, "peers required");
      return ApiResult{201, {{"peers", r.body["peers"]}}};
    });
    api_.route("GET", "/v1/connections", [](const ApiRequest& r) {
      json q = json::object();
      for (const auto& [k, v] : r.query) q[k] = v;
      return ApiResult::ok({{"query", q}, {"has_vm", r.query_value("vm").has_value()}});
    });
    api_.route("GET", "/v1/boom", [](const ApiRequest&) -> ApiResult {
      throw std::runtime_error("kaboom");
    });
    std::string err;
    ASSERT_TRUE(api_.start(&err)) << err;
    ASSERT_NE(api_.port(), 0);
    client_ = std::make_unique<httplib::Client>("127.0.0.1", api_.port());
  }

  static json body_of(const httplib::Result& res) { return json::parse(res->body); }

  HttpApi api_{HttpApiConfig{"127.0.0.1:0", 1024, 2}};
  std::unique_ptr<httplib::Client> client_;
};

TEST_F(HttpApiTest, PathParamsReachHandler) {
  auto res = client_->Get("/v1/vms/web1/migration");
  ASSERT_TRUE(res);
  EXPECT_EQ(res->status, 200);
  EXPECT_EQ(res->get_header_value("Content-Type"), "application/json");
  EXPECT_EQ(body_of(res), (json{{"vm", "web1"}, {"method", "GET"}}));
}

TEST_F(HttpApiTest, TwoPathParamsAndJsonBody) {
  auto res = client_->Post("/v1/vms/db%2D2/migration/pause", R"({"force": true})",
                           "application/json");
  ASSERT_TRUE(res);
  EXPECT_EQ(res->status, 200);
  EXPECT_EQ(body_of(res),
            (json{{"vm", "db-2"}, {"verb", "pause"}, {"body", {{"force", true}}}}));
}

TEST_F(HttpApiTest, HandlerStatusIsKept) {
  auto res = client_->Post("/v1/vms/web1/migration", R"({"peers": ["10.0.0.2"]})",
                           "application/json");
  ASSERT_TRUE(res);
  EXPECT_EQ(res->status, 201);
  auto bad = client_->Post("/v1/vms/web1/migration", "{}", "application/json");
  ASSERT_TRUE(bad);
  EXPECT_EQ(bad->status, 400);
  EXPECT_EQ(body_of(bad), (json{{"error", "peers required"}}));
}

TEST_F(HttpApiTest, QueryParams) {
  auto res = client_->Get("/v1/connections?vm=web1&addr=10.0.0.1&limit=5");
  ASSERT_TRUE(res);
  EXPECT_EQ(res->status, 200);
  EXPECT_EQ(body_of(res),
            (json{{"query", {{"vm", "web1"}, {"addr", "10.0.0.1"}, {"limit", "5"}}},
                  {"has_vm", true}}));
  auto none = client_->Get("/v1/connections");
  ASSERT_TRUE(none);
  EXPECT_EQ(body_of(none)["has_vm"], false);
}

TEST_F(HttpApiTest, MalformedJsonIs400BeforeHandler) {
  auto res = client_->Post("/v1/vms/web1/migration", "{\"peers\": [", "application/json");
  ASSERT_TRUE(res);
  EXPECT_EQ(res->status, 400);
  EXPECT_EQ(res->get_header_value("Content-Type"), "application/json");
  EXPECT_TRUE(body_of(res).contains("error"));
  EXPECT_NE(body_of(res)["error"].get<std::string>().find("JSON"), std::string::npos);
}

TEST_F(HttpApiTest, UnknownPathIs404Json) {
  auto res = client_->Get("/v1/nope");
  ASSERT_TRUE(res);
  EXPECT_EQ(res->status, 404);
  EXPECT_EQ(res->get_header_value("Content-Type"), "application/json");
  EXPECT_TRUE(body_of(res).contains("error"));
  // A parameter never spans segments.
  auto deeper = client_->Get("/v1/vms/a/b/migration");
  ASSERT_TRUE(deeper);
  EXPECT_EQ(deeper->status, 404);
}

TEST_F(HttpApiTest, WrongMethodIs405WithAllow) {
  auto res = client_->Delete("/v1/connections");
  ASSERT_TRUE(res);
  EXPECT_EQ(res->status, 405);
  EXPECT_EQ(res->get_header_value("Allow"), "GET");
  EXPECT_TRUE(body_of(res).contains("error"));
}

TEST_F(HttpApiTest, HandlerThrowIs500Json) {
  auto res = client_->Get("/v1/boom");
  ASSERT_TRUE(res);
  EXPECT_EQ(res->status, 500);
  EXPECT_NE(body_of(res)["error"].get<std::string>().find("kaboom"), std::string::npos);
}

TEST_F(HttpApiTest, OversizedBodyIs413Json) {
  const std::string big = "{\"peers\": [\"" + std::string(4096, 'x') + "\"]}";
  auto res = client_->Post("/v1/vms/web1/migration", big, "application/json");
  ASSERT_TRUE(res);
  EXPECT_EQ(res->status, 413);
  EXPECT_EQ(res->get_header_value("Content-Type"), "application/json");
  EXPECT_TRUE(body_of(res).contains("error"));
}

TEST_F(HttpApiTest, BindFailureIsReported) {
  HttpApi second(HttpApiConfig{"127.0.0.1:" + std::to_string(api_.port())});
  std::string err;
  EXPECT_FALSE(second.start(&err));
  EXPECT_NE(err.find("cannot bind"), std::string::npos) << err;
  EXPECT_FALSE(second.running());
}

TEST_F(HttpApiTest, RouteAfterStartThrows) {
  EXPECT_THROW(api_.route("GET", "/late", [](const ApiRequest&) { return ApiResult{}; }),
               std::logic_error);
}

TEST_F(HttpApiTest, StopIsIdempotentAndClosesPort) {
  const uint16_t port = api_.port();
  api_.stop();
  api_.stop();
  httplib::Client c("127.0.0.1", port);
  c.set_connection_timeout(1, 0);
  EXPECT_FALSE(c.Get("/v1/connections"));
}

TEST(HttpApi, BadListenAddressIsReported) {
  for (const char* listen : {"nonsense", "127.0.0.1:", "127.0.0.1:70000", "[::1]9090"}) {
    HttpApi api(HttpApiConfig{listen});
    std::string err;
    EXPECT_FALSE(api.start(&err)) << listen;
    EXPECT_FALSE(err.empty()) << listen;
  }
}

TEST(HttpApi, DispatchWithoutServer) {
  HttpApi api;
  api.route("GET", "/v1/ports/:port.json", [](const ApiRequest& r) {
    return ApiResult::ok({{"port", r.param("port")}});
  });
  EXPECT_EQ(api.dispatch("GET", "/v1/ports/wan0.json", {}, "").body["port"], "wan0");
  // '.' in a pattern is literal.
  EXPECT_EQ(api.dispatch("GET", "/v1/ports/wan0xjson", {}, "").status, 404);
}

TEST(ParseHostPort, Forms) {
  std::string host, err;
  uint16_t port = 0;
  ASSERT_TRUE(parse_host_port("127.0.0.1:9090", &host, &port, &err));
  EXPECT_EQ(host, "127.0.0.1");
  EXPECT_EQ(port, 9090);
  ASSERT_TRUE(parse_host_port("[::1]:80", &host, &port, &err));
  EXPECT_EQ(host, "::1");
  EXPECT_EQ(port, 80);
  EXPECT_FALSE(parse_host_port("::1:80", &host, &port, &err));
  EXPECT_FALSE(parse_host_port(":80", &host, &port, &err));
}

}  // namespace
}  // namespace baton::control
