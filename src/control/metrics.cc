// SPDX-License-Identifier: Apache-2.0
#include "control/metrics.h"

#include <exception>
#include <stdexcept>

#include <prometheus/check_names.h>
#include <prometheus/collectable.h>
#include <prometheus/exposer.h>

#include "common/log.h"
#include "control/http_api.h"

namespace baton::control {

class MetricsServer::Adapter : public prometheus::Collectable {
 public:
  explicit Adapter(MetricsCollector collector) : collector_(std::move(collector)) {}

  std::vector<prometheus::MetricFamily> Collect() const override {
    // An exception must not unwind into civetweb; a failed scrape shows up as missing
    // series (and the log line), which Prometheus alerting already handles.
    try {
      return collector_ ? collector_() : std::vector<prometheus::MetricFamily>{};
    } catch (const std::exception& e) {
      BLOG_ERR("metrics", "collector threw: %s", e.what());
    } catch (...) {
      BLOG_ERR("metrics", "collector threw a non-exception");
    }
    return {};
  }

 private:
  MetricsCollector collector_;
};

MetricsServer::MetricsServer(std::string listen, MetricsCollector collector)
    : listen_(std::move(listen)), adapter_(std::make_shared<Adapter>(std::move(collector))) {}

MetricsServer::~MetricsServer() { stop(); }

bool MetricsServer::start(std::string* error) {
  if (exposer_) {
    *error = "metrics server already started";
    return false;
  }
  std::string host;
  uint16_t port = 0;
  if (!parse_host_port(listen_, &host, &port, error)) return false;
  // civetweb wants "[v6]:port" for IPv6 and "a.b.c.d:port" for IPv4.
  const std::string bind =
      (host.find(':') != std::string::npos ? "[" + host + "]" : host) + ":" +
      std::to_string(port);
  try {
    // Two threads: Prometheus plus one human with curl. CivetServer throws when the
    // listening socket cannot be opened.
    exposer_ = std::make_unique<prometheus::Exposer>(bind, 2);
  } catch (const std::exception& e) {
    *error = "cannot bind metrics to " + listen_ + ": " + e.what();
    return false;
  }
  exposer_->RegisterCollectable(adapter_);
  const auto ports = exposer_->GetListeningPorts();
  port_ = ports.empty() ? port : static_cast<uint16_t>(ports.front());
  BLOG_INFO("metrics", "metrics on %s port %u", host.c_str(), unsigned{port_});
  return true;
}

void MetricsServer::stop() {
  exposer_.reset();
  port_ = 0;
}

namespace {

void check_family_name(const std::string& name, prometheus::MetricType type) {
  if (!prometheus::CheckMetricName(name))
    throw std::invalid_argument("invalid metric name '" + name + "'");
  if (name.rfind("baton_", 0) != 0)
    throw std::invalid_argument("metric '" + name + "' must start with baton_");
  const bool total = name.size() > 6 && name.compare(name.size() - 6, 6, "_total") == 0;
  if (type == prometheus::MetricType::Counter && !total)
    throw std::invalid_argument("counter '" + name + "' must end with _total");
  if (type != prometheus::MetricType::Counter && total)
    throw std::invalid_argument("only counters end with _total: '" + name + "'");
}

prometheus::MetricFamily make_family(std::string name, std::string help,
                                     prometheus::MetricType type) {
  check_family_name(name, type);
  prometheus::MetricFamily f;
  f.name = std::move(name);
  f.help = std::move(help);
  f.type = type;
  return f;
}

prometheus::ClientMetric make_metric(const MetricLabels& labels) {
  prometheus::ClientMetric m;
  m.label.reserve(labels.size());
  for (const auto& [name, value] : labels) {
    // "le" and "quantile" belong to histograms and summaries.
    if (!prometheus::CheckLabelName(name) || name == "le" || name == "quantile")
      throw std::invalid_argument("invalid label name '" + name + "'");
    m.label.push_back({name, value});
  }
  return m;
}

}  // namespace

prometheus::MetricFamily counter_family(std::string name, std::string help) {
  return make_family(std::move(name), std::move(help), prometheus::MetricType::Counter);
}

prometheus::MetricFamily gauge_family(std::string name, std::string help) {
  return make_family(std::move(name), std::move(help), prometheus::MetricType::Gauge);
}

prometheus::MetricFamily histogram_family(std::string name, std::string help) {
  return make_family(std::move(name), std::move(help), prometheus::MetricType::Histogram);
}

void add_sample(prometheus::MetricFamily& family, const MetricLabels& labels, double value) {
  prometheus::ClientMetric m = make_metric(labels);
  switch (family.type) {
    case prometheus::MetricType::Counter: m.counter.value = value; break;
    case prometheus::MetricType::Gauge: m.gauge.value = value; break;
    case prometheus::MetricType::Untyped: m.untyped.value = value; break;
    default:
      throw std::invalid_argument("add_sample on non counter/gauge family '" + family.name +
                                  "'");
  }
  family.metric.push_back(std::move(m));
}

void add_histogram(prometheus::MetricFamily& family, const MetricLabels& labels,
                   const std::vector<double>& upper_bounds,
                   const std::vector<uint64_t>& counts, double sum) {
  if (family.type != prometheus::MetricType::Histogram)
    throw std::invalid_argument("add_histogram on non-histogram family '" + family.name + "'");
  if (counts.size() != upper_bounds.size() + 1)
    throw std::invalid_argument("add_histogram: need one count per bound plus overflow");
  prometheus::ClientMetric m = make_metric(labels);
  uint64_t cumulative = 0;
  for (std::size_t i = 0; i < upper_bounds.size(); ++i) {
    if (i > 0 && !(upper_bounds[i] > upper_bounds[i - 1]))
      throw std::invalid_argument("add_histogram: bounds must increase");
    cumulative += counts[i];
    m.histogram.bucket.push_back({cumulative, upper_bounds[i]});
  }
  // The serializer writes le="+Inf" with sample_count after the finite buckets.
  m.histogram.sample_count = cumulative + counts.back();
  m.histogram.sample_sum = sum;
  family.metric.push_back(std::move(m));
}

}  // namespace baton::control
