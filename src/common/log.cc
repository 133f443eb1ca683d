// SPDX-License-Identifier: Apache-2.0
#include "common/log.h"

#include <sys/time.h>

#include <atomic>
#include <cstdio>
#include <ctime>
#include <mutex>

namespace baton {
namespace {
std::atomic<LogLevel> g_level{LogLevel::kInfo};
std::mutex g_mu;
const char* kNames[] = {"debug", "info", "warn", "error"};
}  // namespace

void set_log_level(LogLevel level) { g_level = level; }

void logf(LogLevel level, const char* component, const char* fmt, ...) {
  if (level < g_level.load(std::memory_order_relaxed)) return;
  timeval tv;
  gettimeofday(&tv, nullptr);
  tm t;
  gmtime_r(&tv.tv_sec, &t);
  char ts[32];
  strftime(ts, sizeof ts, "%Y-%m-%dT%H:%M:%S", &t);
  char msg[1024];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(msg, sizeof msg, fmt, ap);
  va_end(ap);
  std::lock_guard<std::mutex> lock(g_mu);
  std::fprintf(stderr, "%s.%03ldZ %s %s: %s\n", ts, tv.tv_usec / 1000,
               kNames[static_cast<int>(level)], component, msg);
  std::fflush(stderr);
}

}  // namespace baton
