// SPDX-License-Identifier: Apache-2.0
#include "lb/health_checker.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>

namespace baton {

namespace {

constexpr size_t kMaxStatusLine = 1024;
constexpr int kMaxPollMs = 1000;  // upper bound of one wait; stop() wakes it earlier anyway

std::string errno_text(const char* what, int e) {
  return std::string(what) + ": " + std::strerror(e);
}

bool has_ctl(std::string_view s) {
  return std::any_of(s.begin(), s.end(),
                     [](char c) { return c == '\r' || c == '\n' || c == '\0'; });
}

}  // namespace

std::string HealthProbeConfig::validate() const {
  if (interval_ms == 0) return "health check interval must be positive";
  if (timeout_ms == 0) return "health check timeout must be positive";
  if (rise == 0 || fall == 0) return "health check rise and fall must be at least 1";
  if (kind == Kind::kHttp) {
    if (http_path.empty() || http_path[0] != '/' || has_ctl(http_path) ||
        http_path.find(' ') != std::string::npos)
      return "health check path must start with '/' and contain no spaces or line breaks";
    if (has_ctl(http_host)) return "health check host must not contain line breaks";
    if (status_min < 100 || status_max > 599 || status_min > status_max)
      return "health check status range must lie within 100..599";
  }
  return "";
}

bool HealthState::record(bool success) {
  if (success) {
    failures_ = 0;
    if (successes_ < UINT32_MAX) ++successes_;
    if (!up_ && successes_ >= rise_) return up_ = true;
  } else {
    successes_ = 0;
    if (failures_ < UINT32_MAX) ++failures_;
    if (up_ && failures_ >= fall_) {
      up_ = false;
      return true;
    }
  }
  return false;
}

int parse_http_status_line(std::string_view buf) {
  static constexpr std::string_view kPrefix = "HTTP/";
  // Reject early what can no longer become a status line.
  if (buf.substr(0, kPrefix.size()) != kPrefix.substr(0, std::min(buf.size(), kPrefix.size())))
    return -2;
  const size_t eol = buf.find('\n');
  if (eol == std::string_view::npos) return buf.size() >= kMaxStatusLine ? -2 : -1;
  std::string_view line = buf.substr(0, eol);
  if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
  // "HTTP/" DIGIT "." DIGIT SP 3DIGIT [SP reason]
  auto digit = [&](size_t i) { return i < line.size() && line[i] >= '0' && line[i] <= '9'; };
  if (line.size() < 12 || !digit(5) || line[6] != '.' || !digit(7) || line[8] != ' ' || !digit(9) ||
      !digit(10) || !digit(11) || (line.size() > 12 && line[12] != ' '))
    return -2;
  return (line[9] - '0') * 100 + (line[10] - '0') * 10 + (line[11] - '0');
}

HealthChecker::HealthChecker(OnChange on_change)
    : on_change_(std::move(on_change)),
      wake_fd_(eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC)),
      wake_errno_(errno) {}

HealthChecker::~HealthChecker() {
  stop();
  if (wake_fd_ >= 0) close(wake_fd_);
}

void HealthChecker::wake() const {
  const uint64_t one = 1;
  if (wake_fd_ >= 0) (void)!write(wake_fd_, &one, sizeof one);
}

bool HealthChecker::start(std::string* err) {
  if (wake_fd_ < 0) {
    if (err) *err = errno_text("eventfd", wake_errno_);
    return false;
  }
  if (thread_.joinable()) {
    if (err) *err = "health checker already running";
    return false;
  }
  stop_.store(false);
  thread_ = std::thread([this] { run(); });
  return true;
}

void HealthChecker::stop() {
  if (!thread_.joinable()) return;
  stop_.store(true);
  wake();
  thread_.join();
  std::lock_guard lock(mu_);
  for (auto& [id, p] : probes_) {
    if (p.fd >= 0) close(p.fd);
    p.fd = -1;
    p.phase = Phase::kIdle;
  }
}

bool HealthChecker::add(const Target& t, std::string* err) {
  const std::string why = t.config.validate();
  auto fail = [&](const std::string& m) {
    if (err) *err = "health check " + std::to_string(t.id) + ": " + m;
    return false;
  };
  if (!why.empty()) return fail(why);
  if (t.addr.raw() == 0 || t.port.raw() == 0) return fail("target needs an address and a port");
  {
    std::lock_guard lock(mu_);
    if (probes_.count(t.id)) return fail("duplicate id");
    Probe p{t, HealthState(t.initially_up, t.config.rise, t.config.fall)};
    p.counters.id = t.id;
    p.next_start = Clock::now();
    probes_.emplace(t.id, std::move(p));
  }
  wake();
  return true;
}

bool HealthChecker::remove(Id id) {
  std::lock_guard lock(mu_);
  auto it = probes_.find(id);
  if (it == probes_.end()) return false;
  if (it->second.fd >= 0) close(it->second.fd);
  probes_.erase(it);
  return true;
}

std::optional<HealthChecker::Status> HealthChecker::status(Id id) const {
  std::lock_guard lock(mu_);
  auto it = probes_.find(id);
  if (it == probes_.end()) return std::nullopt;
  Status s = it->second.counters;
  s.up = it->second.state.up();
  s.successes = it->second.state.successes();
  s.failures = it->second.state.failures();
  return s;
}

std::vector<HealthChecker::Status> HealthChecker::list() const {
  std::vector<Id> ids;
  {
    std::lock_guard lock(mu_);
    for (const auto& [id, p] : probes_) ids.push_back(id);
  }
  std::vector<Status> out;
  for (Id id : ids)
    if (auto s = status(id)) out.push_back(*s);
  return out;
}

void HealthChecker::begin(Probe& p, Clock::time_point now) {
  const HealthProbeConfig& c = p.target.config;
  p.started = now;
  p.deadline = now + std::chrono::milliseconds(c.timeout_ms);
  p.next_start = now + std::chrono::milliseconds(c.interval_ms);
  p.in.clear();
  p.out.clear();
  p.fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (p.fd < 0) return finish(p, false, errno_text("socket", errno));
  const linger reset_on_close{1, 0};
  setsockopt(p.fd, SOL_SOCKET, SO_LINGER, &reset_on_close, sizeof reset_on_close);
  if (c.source_addr.raw() != 0) {
    sockaddr_in src{};
    src.sin_family = AF_INET;
    src.sin_addr.s_addr = c.source_addr.raw();
    if (bind(p.fd, reinterpret_cast<const sockaddr*>(&src), sizeof src) != 0)
      return finish(p, false, errno_text("bind source address", errno));
  }
  sockaddr_in dst{};
  dst.sin_family = AF_INET;
  dst.sin_addr.s_addr = p.target.addr.raw();
  dst.sin_port = p.target.port.raw();
  if (connect(p.fd, reinterpret_cast<const sockaddr*>(&dst), sizeof dst) == 0)
    return on_connected(p);
  if (errno != EINPROGRESS) return finish(p, false, errno_text("connect", errno));
  p.phase = Phase::kConnecting;
}

void HealthChecker::on_connected(Probe& p) {
  const HealthProbeConfig& c = p.target.config;
  if (c.kind == HealthProbeConfig::Kind::kTcp) return finish(p, true, "");
  const std::string host = c.http_host.empty() ? IpAddr::v4(p.target.addr).to_string(Family::kV4) +
                                                     ":" + std::to_string(p.target.port.host())
                                               : c.http_host;
  p.out = "GET " + c.http_path + " HTTP/1.0\r\nHost: " + host +
          "\r\nUser-Agent: baton-health-check\r\nAccept: */*\r\nConnection: close\r\n\r\n";
  p.phase = Phase::kSending;
  advance(p, POLLOUT);  // the socket buffer almost always takes the request at once
}

void HealthChecker::advance(Probe& p, short revents) {
  const HealthProbeConfig& c = p.target.config;
  switch (p.phase) {
    case Phase::kIdle:
      return;
    case Phase::kConnecting: {
      int e = 0;
      socklen_t len = sizeof e;
      if (getsockopt(p.fd, SOL_SOCKET, SO_ERROR, &e, &len) != 0) e = errno;
      if (e != 0) return finish(p, false, errno_text("connect", e));
      if (revents & POLLOUT) return on_connected(p);
      if (revents & (POLLERR | POLLHUP)) return finish(p, false, "connect: socket error");
      return;
    }
    case Phase::kSending: {
      const ssize_t n = send(p.fd, p.out.data(), p.out.size(), MSG_NOSIGNAL);
      if (n < 0) {
        if (errno == EAGAIN || errno == EWOULDBLOCK) return;
        return finish(p, false, errno_text("send", errno));
      }
      p.out.erase(0, static_cast<size_t>(n));
      if (p.out.empty()) p.phase = Phase::kReceiving;
      return;
    }
    case Phase::kReceiving: {
      char buf[512];
      const ssize_t n = recv(p.fd, buf, sizeof buf, 0);
      if (n < 0) {
        if (errno == EAGAIN || errno == EWOULDBLOCK) return;
        return finish(p, false, errno_text("recv", errno));
      }
      if (n == 0) return finish(p, false, "connection closed before the status line");
      p.in.append(buf, static_cast<size_t>(n));
      const int code = parse_http_status_line(p.in);
      if (code == -1) return;
      if (code == -2) return finish(p, false, "malformed HTTP status line");
      if (code < c.status_min || code > c.status_max)
        return finish(p, false, "HTTP status " + std::to_string(code));
      return finish(p, true, "");
    }
  }
}

void HealthChecker::finish(Probe& p, bool ok, std::string error) {
  if (p.fd >= 0) close(p.fd);
  p.fd = -1;
  p.phase = Phase::kIdle;
  p.out.clear();
  p.in.clear();
  ++p.counters.probes;
  if (!ok) {
    ++p.counters.probe_failures;
    p.counters.last_error = std::move(error);
  }
  if (p.state.record(ok)) changes_.emplace_back(p.target.id, p.state.up());
}

void HealthChecker::run() {
  std::vector<pollfd> pfds;
  std::vector<Id> ids;  // ids[i] owns pfds[i]; index 0 is the wake-up eventfd
  std::vector<std::pair<Id, bool>> changes;
  auto deliver = [&] {
    {
      std::lock_guard lock(mu_);
      changes.swap(changes_);
    }
    for (const auto& [id, up] : changes)
      if (on_change_) on_change_(id, up);
    changes.clear();
  };

  while (!stop_.load()) {
    pfds.assign(1, pollfd{wake_fd_, POLLIN, 0});
    ids.assign(1, 0);
    int wait_ms = kMaxPollMs;
    {
      std::lock_guard lock(mu_);
      const Clock::time_point now = Clock::now();
      for (auto& [id, p] : probes_) {
        if (p.phase == Phase::kIdle && now >= p.next_start) begin(p, now);
        const Clock::time_point until = p.phase == Phase::kIdle ? p.next_start : p.deadline;
        const auto ms = std::chrono::ceil<std::chrono::milliseconds>(until - now).count();
        wait_ms = static_cast<int>(std::clamp<int64_t>(ms, 0, wait_ms));
        if (p.phase == Phase::kIdle) continue;
        pfds.push_back(
            {p.fd, static_cast<short>(p.phase == Phase::kReceiving ? POLLIN : POLLOUT), 0});
        ids.push_back(id);
      }
    }
    deliver();

    poll(pfds.data(), pfds.size(), wait_ms);
    if (pfds[0].revents & POLLIN) {
      uint64_t v;
      (void)!read(wake_fd_, &v, sizeof v);
    }

    {
      std::lock_guard lock(mu_);
      for (size_t i = 1; i < pfds.size(); ++i) {
        if (pfds[i].revents == 0) continue;
        auto it = probes_.find(ids[i]);
        // The target may have been removed (and the fd number reused) while we polled.
        if (it == probes_.end() || it->second.fd != pfds[i].fd) continue;
        advance(it->second, pfds[i].revents);
      }
      const Clock::time_point now = Clock::now();
      for (auto& [id, p] : probes_)
        if (p.phase != Phase::kIdle && now >= p.deadline) finish(p, false, "timeout");
    }
    deliver();
  }
}

}  // namespace baton
