// SPDX-License-Identifier: Apache-2.0
//
// The daemon's control side: the HTTP/JSON API routes and the Prometheus collector, both reading
// the dataplane (counters summed over workers, tables read under an RCU reader guard), and the
// migration routes that hand signals to the migration engine.
#pragma once

#include <atomic>
#include <memory>
#include <string>
#include <thread>

#include <nlohmann/json.hpp>

#include "control/http_api.h"
#include "control/metrics.h"
#include "control/xlate_api.h"

namespace baton {

class Dataplane;
class MigrationEngine;

class DaemonApi {
 public:
  DaemonApi(Dataplane& dp, MigrationEngine* engine = nullptr);
  ~DaemonApi();
  bool start(std::string* err);
  void stop();
  void log_final_counters();

  // The JSON documents behind the routes (also used by tests).
  nlohmann::json ports_json();
  nlohmann::json workers_json();
  nlohmann::json vms_json();
  nlohmann::json counters_json();
  // Filters: vm name, address (either end), state name; limit caps the rows.
  nlohmann::json connections_json(const std::string& vm, const std::string& addr,
                                  const std::string& state, size_t limit);
  std::vector<prometheus::MetricFamily> collect();

 private:
  void register_routes();
  void sample_rates();  // new connections per second, busy ratio: every second
  void collect_vms(std::vector<prometheus::MetricFamily>& out);

  Dataplane& dp_;
  MigrationEngine* engine_;
  std::unique_ptr<control::HttpApi> http_;
  std::unique_ptr<control::MetricsServer> metrics_;
  XlateApi xlate_;
  std::thread sampler_;
  std::atomic<bool> sampling_{false};
  std::atomic<double> new_conns_per_s_{0};
  std::vector<std::atomic<double>> busy_ratio_;
};

}  // namespace baton
