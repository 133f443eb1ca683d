// SPDX-License-Identifier: Apache-2.0
#include "control/metrics.h"

#include <atomic>
#include <stdexcept>
#include <string>

#include <gtest/gtest.h>
#include <httplib.h>

namespace baton::control {
namespace {

std::string scrape(uint16_t port) {
  httplib::Client c("127.0.0.1", port);
  auto res = c.Get("/metrics");
  if (!res || res->status != 200) return {};
  return res->body;
}

TEST(MetricsServer, ScrapeServesCollectorFamiliesAsText) {
  std::atomic<int> calls{0};
  MetricsServer server("127.0.0.1:0", [&calls] {
    ++calls;
    auto rx = counter_family("baton_port_rx_packets_total", "Packets received per port.");
    add_sample(rx, {{"port", "wan0"}, {"queue", "0"}}, 1234);
    add_sample(rx, {{"port", "lan0"}, {"queue", "1"}}, 5);
    auto drops = counter_family("baton_drops_total", "Packets dropped, by reason.");
    add_sample(drops, {{"reason", "acl_deny"}}, 7);
    auto occ = gauge_family("baton_conntrack_entries", "Connections in the table.");
    add_sample(occ, {}, 42);
    auto freeze = histogram_family("baton_migration_freeze_seconds", "Freeze time.");
    add_histogram(freeze, {{"vm", "web1"}}, {0.01, 0.1}, {3, 1, 1}, 0.25);
    return std::vector<prometheus::MetricFamily>{rx, drops, occ, freeze};
  });
  std::string err;
  ASSERT_TRUE(server.start(&err)) << err;
  ASSERT_NE(server.port(), 0);

  const std::string text = scrape(server.port());
  EXPECT_GE(calls.load(), 1);
  for (const char* line : {
           "# HELP baton_port_rx_packets_total Packets received per port.\n",
           "# TYPE baton_port_rx_packets_total counter\n",
           "baton_port_rx_packets_total{port=\"wan0\",queue=\"0\"} 1234",
           "baton_port_rx_packets_total{port=\"lan0\",queue=\"1\"} 5",
           "baton_drops_total{reason=\"acl_deny\"} 7",
           "# TYPE baton_conntrack_entries gauge\n",
           "baton_conntrack_entries 42",
           "# TYPE baton_migration_freeze_seconds histogram\n",
           "baton_migration_freeze_seconds_count{vm=\"web1\"} 5\n",
           "baton_migration_freeze_seconds_bucket{vm=\"web1\",le=\"0.01",
           "\"} 3\n",
           "baton_migration_freeze_seconds_bucket{vm=\"web1\",le=\"0.1",
           "\"} 4\n",
           "baton_migration_freeze_seconds_bucket{vm=\"web1\",le=\"+Inf\"} 5\n",
       })
    EXPECT_NE(text.find(line), std::string::npos) << "missing: " << line << "\nin:\n" << text;

  // Collected at scrape time, not cached.
  const int before = calls.load();
  scrape(server.port());
  EXPECT_GT(calls.load(), before);
}

TEST(MetricsServer, CollectorExceptionGivesEmptyScrapeNotCrash) {
  MetricsServer server("127.0.0.1:0", []() -> std::vector<prometheus::MetricFamily> {
    throw std::runtime_error("snapshot failed");
  });
  std::string err;
  ASSERT_TRUE(server.start(&err)) << err;
  httplib::Client c("127.0.0.1", server.port());
  auto res = c.Get("/metrics");
  ASSERT_TRUE(res);
  EXPECT_EQ(res->status, 200);
  EXPECT_EQ(res->body.find("baton_"), std::string::npos);
}

TEST(MetricsServer, BindFailureIsReported) {
  MetricsServer first("127.0.0.1:0", [] { return std::vector<prometheus::MetricFamily>{}; });
  std::string err;
  ASSERT_TRUE(first.start(&err)) << err;
  MetricsServer second("127.0.0.1:" + std::to_string(first.port()),
                       [] { return std::vector<prometheus::MetricFamily>{}; });
  EXPECT_FALSE(second.start(&err));
  EXPECT_NE(err.find("cannot bind"), std::string::npos) << err;
  MetricsServer bad("nonsense", [] { return std::vector<prometheus::MetricFamily>{}; });
  EXPECT_FALSE(bad.start(&err));
}

TEST(MetricFamilies, NamingRuleIsEnforced) {
  EXPECT_THROW(counter_family("rx_packets_total", ""), std::invalid_argument);  // no prefix
  EXPECT_THROW(counter_family("baton_rx_packets", ""), std::invalid_argument);  // no _total
  EXPECT_THROW(gauge_family("baton_entries_total", ""), std::invalid_argument);
  EXPECT_THROW(gauge_family("baton-entries", ""), std::invalid_argument);
  EXPECT_NO_THROW(gauge_family("baton_conntrack_entries", ""));
  auto f = gauge_family("baton_conntrack_entries", "");
  EXPECT_THROW(add_sample(f, {{"le", "1"}}, 1), std::invalid_argument);
  EXPECT_THROW(add_sample(f, {{"bad-label", "1"}}, 1), std::invalid_argument);
  auto h = histogram_family("baton_freeze_seconds", "");
  EXPECT_THROW(add_sample(h, {}, 1), std::invalid_argument);
  EXPECT_THROW(add_histogram(h, {}, {0.1, 0.01}, {1, 1, 1}, 0), std::invalid_argument);
  EXPECT_THROW(add_histogram(h, {}, {0.1}, {1}, 0), std::invalid_argument);
}

TEST(MetricFamilies, HistogramBucketsAreCumulative) {
  auto h = histogram_family("baton_batch_packets", "");
  add_histogram(h, {}, {1, 8, 32}, {2, 3, 4, 5}, 100);
  ASSERT_EQ(h.metric.size(), 1u);
  const auto& hist = h.metric[0].histogram;
  ASSERT_EQ(hist.bucket.size(), 3u);
  EXPECT_EQ(hist.bucket[0].cumulative_count, 2u);
  EXPECT_EQ(hist.bucket[1].cumulative_count, 5u);
  EXPECT_EQ(hist.bucket[2].cumulative_count, 9u);
  EXPECT_EQ(hist.sample_count, 14u);
  EXPECT_DOUBLE_EQ(hist.sample_sum, 100);
}

}  // namespace
}  // namespace baton::control
