// SPDX-License-Identifier: Apache-2.0
//
// Health checks: the pure pieces (rise/fall counter, status line parser, config validation) as
// fixture tables, then the checker thread against local endpoints on 127.0.0.1: a TCP
// listener, a tiny HTTP responder answering 200 or 503, one that never answers, a closed port.
// Tests wait for state changes (polling with a generous deadline), never sleep-and-assert.
#include "lb/health_checker.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <functional>
#include <mutex>
#include <thread>
#include <vector>

namespace baton {
namespace {

using namespace std::chrono_literals;

const be32 kLoopback = be32::from_host(0x7f000001);

// ---- Pure pieces ------------------------------------------------------------------------------

TEST(HealthState, RiseAndFallCountConsecutiveResults) {
  struct Case {
    const char* what;
    bool initially_up;
    uint32_t rise, fall;
    std::vector<bool> results;
    std::vector<bool> up_after;  // up() after each result
  };
  const std::vector<Case> cases = {
      {"falls after 3 failures", true, 2, 3, {0, 0, 0, 0}, {1, 1, 0, 0}},
      {"a success resets the failures", true, 2, 3, {0, 0, 1, 0, 0, 0}, {1, 1, 1, 1, 1, 0}},
      {"rises after 2 successes", false, 2, 3, {1, 1, 1}, {0, 1, 1}},
      {"a failure resets the successes", false, 2, 3, {1, 0, 1, 1}, {0, 0, 0, 1}},
      {"rise 1 / fall 1 follow each result", true, 1, 1, {0, 1, 0}, {0, 1, 0}},
  };
  for (const Case& c : cases) {
    HealthState s(c.initially_up, c.rise, c.fall);
    for (size_t i = 0; i < c.results.size(); ++i) {
      const bool before = s.up();
      const bool changed = s.record(c.results[i]);
      EXPECT_EQ(s.up(), c.up_after[i]) << c.what << ", result " << i;
      EXPECT_EQ(changed, before != s.up()) << c.what << ", result " << i;
    }
  }
}

TEST(HealthCheck, ParsesStatusLines) {
  struct Case {
    const char* in;
    int want;
  };
  const std::vector<Case> cases = {
      {"HTTP/1.1 200 OK\r\nServer: x\r\n", 200},
      {"HTTP/1.0 503 Service Unavailable\r\n", 503},
      {"HTTP/1.1 204\r\n", 204},
      {"HTTP/1.1 301 Moved\n", 301},
      {"HTTP/1.1 200 OK", -1},  // line not complete yet
      {"HTT", -1},
      {"", -1},
      {"XTTP/1.1 200 OK\r\n", -2},
      {"SSH-2.0-OpenSSH", -2},
      {"HTTP/1.1 20 OK\r\n", -2},
      {"HTTP/2 200\r\n", -2},
      {"HTTP/1.1 200OK\r\n", -2},
      {"HTTP/1.1  200 OK\r\n", -2},
  };
  for (const Case& c : cases) EXPECT_EQ(parse_http_status_line(c.in), c.want) << c.in;
  EXPECT_EQ(parse_http_status_line("HTTP/1.1 200 " + std::string(2000, 'x')), -2) << "too long";
}

TEST(HealthCheck, ConfigValidation) {
  struct Case {
    const char* what;
    std::function<void(HealthProbeConfig&)> change;
    const char* error;  // nullptr = valid
  };
  using K = HealthProbeConfig::Kind;
  const std::vector<Case> cases = {
      {"tcp defaults", [](HealthProbeConfig&) {}, nullptr},
      {"http defaults", [](HealthProbeConfig& c) { c.kind = K::kHttp; }, nullptr},
      {"interval 0", [](HealthProbeConfig& c) { c.interval_ms = 0; }, "interval"},
      {"timeout 0", [](HealthProbeConfig& c) { c.timeout_ms = 0; }, "timeout"},
      {"timeout above interval", [](HealthProbeConfig& c) { c.timeout_ms = c.interval_ms * 2; },
       nullptr},
      {"rise 0", [](HealthProbeConfig& c) { c.rise = 0; }, "rise"},
      {"relative path",
       [](HealthProbeConfig& c) {
         c.kind = K::kHttp;
         c.http_path = "health";
       },
       "path"},
      {"path with CRLF",
       [](HealthProbeConfig& c) {
         c.kind = K::kHttp;
         c.http_path = "/\r\nX: y";
       },
       "path"},
      {"host with CRLF",
       [](HealthProbeConfig& c) {
         c.kind = K::kHttp;
         c.http_host = "a\r\nb";
       },
       "host"},
      {"status range",
       [](HealthProbeConfig& c) {
         c.kind = K::kHttp;
         c.status_min = 400;
         c.status_max = 300;
       },
       "status"},
  };
  for (const Case& c : cases) {
    HealthProbeConfig cfg;
    c.change(cfg);
    const std::string err = cfg.validate();
    if (c.error == nullptr)
      EXPECT_EQ(err, "") << c.what;
    else
      EXPECT_NE(err.find(c.error), std::string::npos) << c.what << ": '" << err << "'";
  }
}

// ---- Local endpoints --------------------------------------------------------------------------

// A listener on 127.0.0.1:<ephemeral> served by one thread.
class Endpoint {
 public:
  enum class Mode { kAcceptAndClose, kHttp, kSilent };

  explicit Endpoint(Mode mode) : mode_(mode) {
    fd_ = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = kLoopback.raw();
    socklen_t len = sizeof a;
    if (fd_ < 0 || bind(fd_, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0 ||
        listen(fd_, 64) != 0 || getsockname(fd_, reinterpret_cast<sockaddr*>(&a), &len) != 0) {
      ADD_FAILURE() << "cannot listen on 127.0.0.1";
      return;
    }
    port_ = be16::from_raw(a.sin_port);
    thread_ = std::thread([this] { serve(); });
  }
  ~Endpoint() {
    stop_.store(true);
    if (thread_.joinable()) thread_.join();
    for (int c : held_) close(c);
    if (fd_ >= 0) close(fd_);
  }
  be16 port() const { return port_; }
  void set_status(int s) { status_.store(s); }
  std::string last_request() {
    std::lock_guard lock(mu_);
    return last_request_;
  }

 private:
  void serve() {
    while (!stop_.load()) {
      pollfd p{fd_, POLLIN, 0};
      if (poll(&p, 1, 20) <= 0) continue;
      const int c = accept4(fd_, nullptr, nullptr, SOCK_CLOEXEC);
      if (c < 0) continue;
      if (mode_ == Mode::kSilent) {
        held_.push_back(c);  // connected, never answers
        continue;
      }
      if (mode_ == Mode::kHttp) answer(c);
      close(c);
    }
  }
  void answer(int c) {
    std::string req;
    char buf[512];
    while (req.find("\r\n\r\n") == std::string::npos) {
      pollfd p{c, POLLIN, 0};
      if (poll(&p, 1, 1000) <= 0) return;
      const ssize_t n = recv(c, buf, sizeof buf, 0);
      if (n <= 0) return;
      req.append(buf, static_cast<size_t>(n));
    }
    {
      std::lock_guard lock(mu_);
      last_request_ = req;
    }
    const int s = status_.load();
    const std::string resp = "HTTP/1.0 " + std::to_string(s) + (s == 200 ? " OK" : " Nope") +
                             "\r\nContent-Length: 2\r\n\r\nok";
    (void)!send(c, resp.data(), resp.size(), MSG_NOSIGNAL);
  }

  Mode mode_;
  int fd_ = -1;
  be16 port_;
  std::atomic<int> status_{200};
  std::atomic<bool> stop_{false};
  std::vector<int> held_;
  std::mutex mu_;
  std::string last_request_;
  std::thread thread_;
};

// A port nobody listens on: bound once, then closed (connection refused).
be16 closed_port() {
  const int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = kLoopback.raw();
  socklen_t len = sizeof a;
  bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof a);
  getsockname(fd, reinterpret_cast<sockaddr*>(&a), &len);
  close(fd);
  return be16::from_raw(a.sin_port);
}

bool wait_for(const std::function<bool()>& pred, std::chrono::milliseconds limit = 10s) {
  const auto deadline = std::chrono::steady_clock::now() + limit;
  while (std::chrono::steady_clock::now() < deadline) {
    if (pred()) return true;
    std::this_thread::sleep_for(5ms);
  }
  return pred();
}

// Records every change with the checker's counters at that moment.
struct Changes {
  struct Change {
    HealthChecker::Id id;
    bool up;
    HealthChecker::Status status;
  };
  std::mutex mu;
  std::vector<Change> log;
  HealthChecker* checker = nullptr;

  HealthChecker::OnChange callback() {
    return [this](HealthChecker::Id id, bool up) {
      HealthChecker::Status s = *checker->status(id);  // the callback runs outside its lock
      std::lock_guard lock(mu);
      log.push_back({id, up, s});
    };
  }
  std::optional<Change> last(HealthChecker::Id id) {
    std::lock_guard lock(mu);
    for (auto it = log.rbegin(); it != log.rend(); ++it)
      if (it->id == id) return *it;
    return std::nullopt;
  }
};

HealthChecker::Target target(HealthChecker::Id id, be16 port, bool up, uint32_t rise, uint32_t fall,
                             HealthProbeConfig::Kind kind = HealthProbeConfig::Kind::kTcp) {
  HealthChecker::Target t;
  t.id = id;
  t.addr = kLoopback;
  t.port = port;
  t.initially_up = up;
  t.config.kind = kind;
  t.config.interval_ms = 30;
  t.config.timeout_ms = 30;
  t.config.rise = rise;
  t.config.fall = fall;
  return t;
}

TEST(HealthChecker, TcpProbesBringUpAListenerAndTakeDownAClosedPort) {
  Endpoint listener(Endpoint::Mode::kAcceptAndClose);
  Changes changes;
  HealthChecker checker(changes.callback());
  changes.checker = &checker;
  std::string err;
  auto open = target(1, listener.port(), false, 3, 2);
  open.config.timeout_ms = 2000;  // success must not depend on scheduling
  ASSERT_TRUE(checker.add(open, &err)) << err;
  ASSERT_TRUE(checker.add(target(2, closed_port(), true, 2, 2), &err)) << err;
  EXPECT_FALSE(checker.add(target(2, closed_port(), true, 2, 2), &err));
  ASSERT_TRUE(checker.start(&err)) << err;

  ASSERT_TRUE(wait_for([&] { return changes.last(2).has_value(); }))
      << "closed port never went down";
  auto down = *changes.last(2);
  EXPECT_FALSE(down.up);
  EXPECT_EQ(down.status.failures, 2u) << "down exactly at `fall`";
  EXPECT_NE(down.status.last_error.find("connect"), std::string::npos) << down.status.last_error;

  ASSERT_TRUE(wait_for([&] { return changes.last(1).has_value(); })) << "listener never came up";
  auto up = *changes.last(1);
  EXPECT_TRUE(up.up);
  EXPECT_EQ(up.status.successes, 3u) << "up exactly at `rise`";
  EXPECT_EQ(up.status.probe_failures, 0u);
  EXPECT_TRUE(checker.status(1)->up);

  EXPECT_TRUE(checker.remove(2));
  EXPECT_FALSE(checker.status(2).has_value());
  EXPECT_EQ(checker.list().size(), 1u);
  checker.stop();
}

TEST(HealthChecker, HttpProbeFollowsTheStatusCode) {
  Endpoint web(Endpoint::Mode::kHttp);
  web.set_status(503);
  Changes changes;
  HealthChecker checker(changes.callback());
  changes.checker = &checker;
  auto t = target(7, web.port(), true, 2, 3, HealthProbeConfig::Kind::kHttp);
  t.config.timeout_ms = 2000;  // answers always arrive in time
  t.config.http_path = "/healthz?deep=1";
  t.config.http_host = "app.example";
  std::string err;
  ASSERT_TRUE(checker.add(t, &err)) << err;
  ASSERT_TRUE(checker.start(&err)) << err;

  ASSERT_TRUE(wait_for([&] { return changes.last(7).has_value(); }));
  auto down = *changes.last(7);
  EXPECT_FALSE(down.up);
  EXPECT_EQ(down.status.failures, 3u);
  EXPECT_EQ(down.status.last_error, "HTTP status 503");
  const std::string req = web.last_request();
  EXPECT_EQ(req.rfind("GET /healthz?deep=1 HTTP/1.0\r\n", 0), 0u) << req;
  EXPECT_NE(req.find("\r\nHost: app.example\r\n"), std::string::npos) << req;

  web.set_status(200);
  ASSERT_TRUE(wait_for([&] { return changes.last(7)->up; })) << "never came back up";
  EXPECT_EQ(changes.last(7)->status.successes, 2u);
}

TEST(HealthChecker, ProbesTimeOutWhenNobodyAnswers) {
  Endpoint silent(Endpoint::Mode::kSilent);
  Changes changes;
  HealthChecker checker(changes.callback());
  changes.checker = &checker;
  std::string err;
  auto t = target(3, silent.port(), true, 1, 2, HealthProbeConfig::Kind::kHttp);
  t.config.timeout_ms = 100;
  ASSERT_TRUE(checker.add(t, &err)) << err;
  ASSERT_TRUE(checker.start(&err)) << err;
  ASSERT_TRUE(wait_for([&] { return changes.last(3).has_value(); }));
  EXPECT_FALSE(changes.last(3)->up);
  EXPECT_EQ(changes.last(3)->status.last_error, "timeout");
  // stop() joins even with a probe in flight; the destructor after it is a no-op.
  checker.stop();
  checker.stop();
}

TEST(HealthChecker, RefusesBadTargets) {
  HealthChecker checker(nullptr);
  std::string err;
  auto t = target(1, be16::from_host(80), true, 1, 1);
  t.config.rise = 0;
  EXPECT_FALSE(checker.add(t, &err));
  EXPECT_NE(err.find("rise"), std::string::npos) << err;
  t = target(1, be16(), true, 1, 1);
  EXPECT_FALSE(checker.add(t, &err));
  EXPECT_NE(err.find("port"), std::string::npos) << err;
  EXPECT_FALSE(checker.remove(1));
}

}  // namespace
}  // namespace baton
