// SPDX-License-Identifier: Apache-2.0
//
// HealthChecker: active TCP-connect and HTTP GET probes of backends, on one control thread.
//
// Theory of operation
//
// * Probes go through the kernel's network stack (ordinary sockets), not through the DPDK
//   ports: batond owns its ports, so the host needs a route to the backends (a management or
//   kernel interface), the same arrangement as DPVS with keepalived. Optionally a probe binds
//   a source address so the backends see a known checker address.
// * One thread runs every probe with non-blocking sockets and poll(): connect (EINPROGRESS,
//   then POLLOUT and SO_ERROR), for HTTP send "GET <path> HTTP/1.0" with a Host header and
//   read until the status line is complete. Success: TCP connected; HTTP status line
//   "HTTP/1.x NNN" with NNN in [status_min, status_max]. The body is not read. Sockets are
//   closed with a reset (SO_LINGER 0) so the checker leaves no TIME_WAIT behind.
// * Per target: a probe every interval (measured from the previous probe's start; a probe
//   that outlasts the interval delays the next, probes of one target never overlap), each
//   with its own timeout; a pure HealthState counts consecutive results: `fall` failures in a row
//   take an up target down, `rise` successes in a row bring a down one up (HAProxy's rise/fall).
//   The initial state comes from the configuration.
// * on_change(id, up) runs on the checker thread, outside the checker's lock, when a target
//   changes state (the integrator marks the pool's backend; BackendPool is thread-safe).
// * add()/remove()/status()/list() are thread-safe; stop() (also in the destructor) wakes
//   the thread through an eventfd and joins it.
#pragma once

#include <atomic>
#include <chrono>
#include <cstdint>
#include <functional>
#include <map>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

#include "common/net_types.h"

namespace baton {

struct HealthProbeConfig {
  enum class Kind : uint8_t { kTcp, kHttp };
  Kind kind = Kind::kTcp;
  uint32_t interval_ms = 2000;
  uint32_t timeout_ms = 1000;   // may exceed interval_ms: probes never overlap
  uint32_t rise = 2;            // consecutive successes to come up
  uint32_t fall = 3;            // consecutive failures to go down
  std::string http_path = "/";  // kHttp: absolute path (and query)
  std::string http_host;        // kHttp: Host header; empty = "a.b.c.d:port" of the target
  uint16_t status_min = 200;    // kHttp: accepted status range (inclusive)
  uint16_t status_max = 399;
  be32 source_addr;  // 0 = the kernel chooses

  // Empty when valid, else the reason.
  std::string validate() const;
};

// Consecutive-result counter (pure).
class HealthState {
 public:
  HealthState(bool up, uint32_t rise, uint32_t fall) : up_(up), rise_(rise), fall_(fall) {}
  // Records one probe result; true when this result changed up().
  bool record(bool success);
  bool up() const { return up_; }
  uint32_t successes() const { return successes_; }  // consecutive
  uint32_t failures() const { return failures_; }    // consecutive

 private:
  bool up_;
  uint32_t rise_, fall_;
  uint32_t successes_ = 0, failures_ = 0;
};

// Status code of an HTTP/1.x status line at the start of buf: the code, or -1 while the line
// is incomplete, or -2 when it is malformed (RFC 9112 section 4: HTTP-version SP 3DIGIT SP ...).
int parse_http_status_line(std::string_view buf);

class HealthChecker {
 public:
  using Id = uint64_t;  // chosen by the caller, e.g. pool index << 32 | backend id
  using OnChange = std::function<void(Id id, bool up)>;

  struct Target {
    Id id = 0;
    be32 addr;
    be16 port;
    HealthProbeConfig config;
    bool initially_up = true;
  };
  struct Status {
    Id id = 0;
    bool up = false;
    uint32_t successes = 0;  // consecutive
    uint32_t failures = 0;   // consecutive
    uint64_t probes = 0;
    uint64_t probe_failures = 0;
    std::string last_error;  // of the last failed probe
  };

  explicit HealthChecker(OnChange on_change);
  ~HealthChecker();  // stop()
  HealthChecker(const HealthChecker&) = delete;
  HealthChecker& operator=(const HealthChecker&) = delete;

  // start() and stop() belong to one owner thread; stop() joins and may be called twice.
  bool start(std::string* err);
  void stop();

  // A new target probes at once. False with *err for a duplicate id or an invalid config.
  bool add(const Target& t, std::string* err);
  bool remove(Id id);
  std::optional<Status> status(Id id) const;
  std::vector<Status> list() const;

 private:
  using Clock = std::chrono::steady_clock;
  enum class Phase : uint8_t { kIdle, kConnecting, kSending, kReceiving };
  struct Probe {
    Target target;
    HealthState state;
    Status counters;  // probes, probe_failures, last_error
    Phase phase = Phase::kIdle;
    int fd = -1;
    Clock::time_point next_start;  // kIdle: when the next probe starts
    Clock::time_point started;     // of the probe in flight
    Clock::time_point deadline;    // of the probe in flight
    std::string out;               // kHttp: request bytes not yet sent
    std::string in;                // kHttp: response bytes so far
  };

  void run();
  void begin(Probe& p, Clock::time_point now);
  void advance(Probe& p, short revents);
  void on_connected(Probe& p);
  void finish(Probe& p, bool ok, std::string error);
  void wake() const;  // interrupts the thread's poll()

  OnChange on_change_;
  mutable std::mutex mu_;
  std::map<Id, Probe> probes_;
  std::vector<std::pair<Id, bool>> changes_;  // collected under mu_, delivered outside it
  const int wake_fd_;     // eventfd, for the life of the object
  const int wake_errno_;  // why it could not be created
  std::atomic<bool> stop_{false};
  std::thread thread_;
};

}  // namespace baton
