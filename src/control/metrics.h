// SPDX-License-Identifier: Apache-2.0
//
// MetricsServer: the Prometheus endpoint (DESIGN.md section 6), a prometheus-cpp Exposer
// serving GET /metrics.
//
// Theory of operation. Baton does not keep prometheus-cpp Counter objects: counters are plain
// per-worker fields summed on read (STYLE.md item 10). So instead of a Registry the daemon
// hands us one collector function; a prometheus::Collectable adapter calls it on every scrape
// (on a civetweb thread) and the Exposer serializes whatever families it returns. The
// collector must therefore be safe to call from a non-worker thread at any time: it reads
// counters (torn reads of single 64-bit fields are fine) and snapshots, never locks a worker.
//
// Naming rule, checked by the helpers below (they throw std::invalid_argument, a programming
// error the first test catches): every family is `baton_*`, the unit is in the name
// (`_bytes`, `_seconds`, `_packets`), counters end in `_total`, and a port, queue or drop
// reason is a label, never part of the name:
//   baton_port_rx_packets_total{port="wan0",queue="1"}
//   baton_drops_total{reason="acl_deny"}
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include <prometheus/metric_family.h>

namespace prometheus {
class Exposer;
}

namespace baton::control {

using MetricsCollector = std::function<std::vector<prometheus::MetricFamily>()>;
using MetricLabels = std::vector<std::pair<std::string, std::string>>;

class MetricsServer {
 public:
  // listen: "host:port"; port 0 binds any free port (see port()).
  MetricsServer(std::string listen, MetricsCollector collector);
  ~MetricsServer();
  MetricsServer(const MetricsServer&) = delete;
  MetricsServer& operator=(const MetricsServer&) = delete;

  // Binds and serves /metrics. Returns false with a reason if the address is bad or busy.
  bool start(std::string* error);
  void stop();
  uint16_t port() const { return port_; }

 private:
  class Adapter;
  std::string listen_;
  std::shared_ptr<Adapter> adapter_;  // the Exposer only holds a weak_ptr to it
  std::unique_ptr<prometheus::Exposer> exposer_;
  uint16_t port_ = 0;
};

constexpr std::string_view kDefaultMetricsListen = "127.0.0.1:9100";

// Family builders. Names are checked against the rule above.
prometheus::MetricFamily counter_family(std::string name, std::string help);
prometheus::MetricFamily gauge_family(std::string name, std::string help);
prometheus::MetricFamily histogram_family(std::string name, std::string help);

// Appends one sample to a counter or gauge family (throws on a histogram family or a
// reserved/invalid label name).
void add_sample(prometheus::MetricFamily& family, const MetricLabels& labels, double value);

// Appends one histogram sample. `upper_bounds` are the finite, increasing bucket bounds;
// `counts` has upper_bounds.size() + 1 entries: observations per bucket (not cumulative),
// the last one for values above every bound. The +Inf bucket and _count are derived.
void add_histogram(prometheus::MetricFamily& family, const MetricLabels& labels,
                   const std::vector<double>& upper_bounds,
                   const std::vector<uint64_t>& counts, double sum);

}  // namespace baton::control
