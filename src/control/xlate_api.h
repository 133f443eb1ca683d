// SPDX-License-Identifier: Apache-2.0
//
// Control API and metrics of the translation stage (NAT mappings and port blocks; the load
// balancer's services, backends and sticky entries): read-only views over the translator's
// tables, taken under an RCU reader guard like every other listing.
#pragma once

#include <prometheus/metric_family.h>

#include <nlohmann/json.hpp>
#include <vector>

#include "control/http_api.h"

namespace baton {

class Dataplane;

class XlateApi {
 public:
  explicit XlateApi(Dataplane& dp) : dp_(dp) {}
  void register_routes(control::HttpApi& http);
  void collect(std::vector<prometheus::MetricFamily>& out);

  // GET /v1/nat/mappings[?inside=addr][&limit=N]: dynamic mappings of every worker, then the
  // configured static ones and port forwards.
  nlohmann::json mappings_json(const std::string& inside, size_t limit);
  // GET /v1/nat/blocks: port blocks leased to inside hosts (or in hold-down).
  nlohmann::json blocks_json();
  // GET /v1/lb/services, /v1/lb/pools (backends: weight, admin state, health, connections),
  // /v1/lb/sticky[?service=name].
  nlohmann::json services_json();
  nlohmann::json pools_json();
  nlohmann::json sticky_json(const std::string& service);
  // GET /v1/lb/l7[?limit=N]: per worker the head buffers in use, and the L7 connections with
  // their phase, backend side and splice offsets (lb/l7_proxy.h).
  nlohmann::json l7_json(size_t limit);

 private:
  Dataplane& dp_;
};

}  // namespace baton
