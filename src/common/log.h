// SPDX-License-Identifier: Apache-2.0
//
// One-line structured logging for the control side (never called per packet on a worker).
// Lines look like "2026-11-22T10:00:00.123Z info migrate: vm=web1 phase=precopy ...".
#pragma once

#include <cstdarg>

namespace baton {

enum class LogLevel { kDebug, kInfo, kWarn, kError };

void set_log_level(LogLevel level);
void logf(LogLevel level, const char* component, const char* fmt, ...)
    __attribute__((format(printf, 3, 4)));

#define BLOG_INFO(comp, ...) ::baton::logf(::baton::LogLevel::kInfo, comp, __VA_ARGS__)
#define BLOG_WARN(comp, ...) ::baton::logf(::baton::LogLevel::kWarn, comp, __VA_ARGS__)
#define BLOG_ERR(comp, ...) ::baton::logf(::baton::LogLevel::kError, comp, __VA_ARGS__)
#define BLOG_DEBUG(comp, ...) ::baton::logf(::baton::LogLevel::kDebug, comp, __VA_ARGS__)

}  // namespace baton
