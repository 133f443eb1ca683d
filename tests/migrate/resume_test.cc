// SPDX-License-Identifier: Apache-2.0
//
// A migration whose TCP connection is cut goes on from the last acknowledged frame (docs/WIRE.md,
// "Sequence, ACK and resume"): two MigrationEngines, each over its own Dataplane (no ports, one
// worker), talk mutual TLS over loopback through a small TCP proxy that cuts the connection
// after a given number of source->destination bytes, or silences one direction and cuts on
// demand, and can then refuse new connections. The cases around ACTIVATE follow docs/WIRE.md,
// "Cut around activation": whatever the cut, the VM never ends up forwarded by both instances,
// and the packets parked at the source are forwarded exactly once, by one of them.
//
// No lcore runs: a pump thread is the owner of every shard (it applies the installer's and the
// deleter's commands with Worker::housekeeping), and the test thread changes the source's
// entries as an owner would, under the same mutex. The EAL is the one vm_state_io_test.cc
// starts for this binary.
#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <poll.h>
#include <rte_mbuf.h>
#include <rte_mempool.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstring>
#include <future>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "config/config.h"
#include "conntrack/conn_table.h"
#include "dataplane/dataplane.h"
#include "migrate/codec.h"
#include "migrate/engine.h"
#include "migrate/peer_link.h"
#include "migrate/vm_state_io.h"
#include "test_pki.h"
#include "tests/migrate/vm_flow_keys.h"
#include "tests/support/test_dataplane.h"

namespace baton::migrate {
namespace {

using Clock = std::chrono::steady_clock;

uint16_t free_port() {
  int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in sa{};
  sa.sin_family = AF_INET;
  sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  ::bind(fd, reinterpret_cast<sockaddr*>(&sa), sizeof sa);
  socklen_t len = sizeof sa;
  getsockname(fd, reinterpret_cast<sockaddr*>(&sa), &len);
  ::close(fd);
  return ntohs(sa.sin_port);
}

// Counts whole TLS records in one direction of a connection (RFC 8446 section 5.1: a 5-byte
// header whose last two bytes are the length). Every migration frame here is one record, so
// the count says which frame a cut lands after.
class RecordCounter {
 public:
  // Takes the next n bytes of the stream; returns how many records they completed.
  int feed(const char* p, size_t n) {
    int done = 0;
    for (size_t i = 0; i < n;) {
      if (have_ < sizeof head_) {
        head_[have_++] = static_cast<uint8_t>(p[i++]);
        if (have_ == sizeof head_) body_left_ = static_cast<size_t>(head_[3] << 8 | head_[4]);
      } else {
        const size_t take = std::min(body_left_, n - i);
        i += take;
        body_left_ -= take;
      }
      if (have_ == sizeof head_ && body_left_ == 0) {
        done++;
        have_ = 0;
      }
    }
    return done;
  }

 private:
  uint8_t head_[5] = {};
  size_t have_ = 0, body_left_ = 0;
};

// Forwards 127.0.0.1:port() to 127.0.0.1:upstream, one thread, poll()-driven. cut_after(n)
// arms a cut: once n more bytes went source->destination, both sockets of that connection are
// closed (each side sees the connection end). With stay_down, every later connection is closed
// as soon as it is accepted (the destination looks gone) until bring_up(). mute() silences the
// open connections one way (bytes read and dropped, no side sees an end), cut_now() cuts them.
class CutProxy {
 public:
  explicit CutProxy(uint16_t upstream) : upstream_(upstream) {
    listen_fd_ = ::socket(AF_INET, SOCK_STREAM, 0);
    int one = 1;
    setsockopt(listen_fd_, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    sockaddr_in sa{};
    sa.sin_family = AF_INET;
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    ::bind(listen_fd_, reinterpret_cast<sockaddr*>(&sa), sizeof sa);
    ::listen(listen_fd_, 16);
    socklen_t len = sizeof sa;
    getsockname(listen_fd_, reinterpret_cast<sockaddr*>(&sa), &len);
    port_ = ntohs(sa.sin_port);
    thread_ = std::thread([this] { run(); });
  }
  ~CutProxy() {
    stop_ = true;
    thread_.join();
    for (auto& p : pairs_) close_pair(p);
    ::close(listen_fd_);
  }
  uint16_t port() const { return port_; }
  void cut_after(size_t bytes, bool stay_down = false) {
    std::lock_guard<std::mutex> lock(mu_);
    cut_left_ = static_cast<int64_t>(bytes);
    stay_down_ = stay_down;
  }
  // From now on the open connections lose every byte sent one way, as a path that went
  // silent: no reset, no end. Later connections are not affected.
  void mute(bool to_destination) {
    std::lock_guard<std::mutex> lock(mu_);
    mute_req_[to_destination] = true;
  }
  // Whole TLS records (frames) lost that way so far.
  int muted_records(bool to_destination) const { return muted_[to_destination].load(); }
  // Cuts the open connections now, as cut_after does.
  void cut_now(bool stay_down = false) {
    std::lock_guard<std::mutex> lock(mu_);
    cut_req_ = true;
    stay_down_ = stay_down;
  }
  void bring_up() { down_ = false; }
  int cuts() const { return cuts_.load(); }
  int connections() const { return connections_.load(); }

 private:
  struct Pair {
    int down = -1, up = -1;  // source side, destination side
    bool muted[2] = {false, false};  // [to_destination]: bytes that way are dropped
    RecordCounter lost[2];
  };
  static void close_pair(Pair& p) {
    for (int* fd : {&p.down, &p.up})
      if (*fd >= 0) {
        ::shutdown(*fd, SHUT_RDWR);
        ::close(*fd);
        *fd = -1;
      }
  }
  void accept_one() {
    int c = ::accept(listen_fd_, nullptr, nullptr);
    if (c < 0) return;
    if (down_) {
      ::close(c);
      return;
    }
    int u = ::socket(AF_INET, SOCK_STREAM, 0);
    sockaddr_in sa{};
    sa.sin_family = AF_INET;
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    sa.sin_port = htons(upstream_);
    if (::connect(u, reinterpret_cast<sockaddr*>(&sa), sizeof sa) != 0) {
      ::close(u);
      ::close(c);
      return;
    }
    connections_++;
    pairs_.push_back({c, u});
  }
  // Applies mute() and cut_now() to the open connections.
  void take_requests() {
    std::lock_guard<std::mutex> lock(mu_);
    for (Pair& p : pairs_)
      for (int d = 0; d < 2; d++) p.muted[d] |= mute_req_[d];
    mute_req_[0] = mute_req_[1] = false;
    if (!cut_req_) return;
    cut_req_ = false;
    for (Pair& p : pairs_) close_pair(p);
    cuts_++;
    down_ = stay_down_;
  }
  // Moves what is readable on `from` to `to`; false when the connection is over.
  bool pump(Pair& p, bool to_destination) {
    char buf[16384];
    ssize_t n = ::read(to_destination ? p.down : p.up, buf, sizeof buf);
    if (n <= 0) return false;
    if (p.muted[to_destination]) {
      muted_[to_destination] += p.lost[to_destination].feed(buf, static_cast<size_t>(n));
      return true;
    }
    ssize_t pass = n;
    bool cut = false;
    if (to_destination) {
      std::lock_guard<std::mutex> lock(mu_);
      if (cut_left_ >= 0) {
        if (n >= cut_left_) {
          pass = cut_left_;
          cut = true;
          cut_left_ = -1;
          down_ = stay_down_;
        } else {
          cut_left_ -= n;
        }
      }
    }
    for (ssize_t off = 0; off < pass;) {
      ssize_t w = ::send(to_destination ? p.up : p.down, buf + off, pass - off, MSG_NOSIGNAL);
      if (w <= 0) return false;
      off += w;
    }
    if (cut) cuts_++;
    return !cut;
  }
  void run() {
    while (!stop_) {
      take_requests();
      std::erase_if(pairs_, [](const Pair& p) { return p.down < 0; });
      std::vector<pollfd> fds{{listen_fd_, POLLIN, 0}};
      for (auto& p : pairs_) {
        fds.push_back({p.down, POLLIN, 0});
        fds.push_back({p.up, POLLIN, 0});
      }
      if (::poll(fds.data(), fds.size(), 20) <= 0) continue;
      take_requests();  // bytes that woke us were sent after a request made during the poll
      if (fds[0].revents) accept_one();
      for (size_t i = 0; i < pairs_.size() && 1 + 2 * i < fds.size(); i++) {
        bool ok = true;
        if (fds[1 + 2 * i].revents) ok = pump(pairs_[i], true);
        if (ok && fds[2 + 2 * i].revents) ok = pump(pairs_[i], false);
        if (!ok) close_pair(pairs_[i]);
      }
      std::erase_if(pairs_, [](const Pair& p) { return p.down < 0; });
    }
  }

  uint16_t upstream_, port_ = 0;
  int listen_fd_ = -1;
  std::thread thread_;
  std::atomic<bool> stop_{false};
  std::vector<Pair> pairs_;  // the proxy thread's
  std::mutex mu_;
  int64_t cut_left_ = -1;  // bytes until the cut; -1 = not armed
  bool stay_down_ = false;
  bool mute_req_[2] = {false, false};
  bool cut_req_ = false;
  std::atomic<bool> down_{false};
  std::atomic<int> cuts_{0}, connections_{0};
  std::atomic<int> muted_[2] = {0, 0};
};

std::string yaml(const std::string& instance, bool source, uint16_t listen, uint16_t peer,
                 int grace_ms, int timeout_ms) {
  Pki& p = Pki::get();
  const std::string me = source ? "a" : "b";
  std::string y = "instance: " + instance +
                  "\nmode: l2\nworkers: 1\n"
                  "ports:\n"
                  "  - {name: uplink, device: null0, zone: outside}\n"
                  "  - {name: host, device: null1, zone: inside}\n"
                  "zones:\n"
                  "  - {name: outside, default: deny}\n"
                  "  - {name: inside, default: permit}\n"
                  "conntrack:\n  capacity: 16384\n"
                  "migration:\n"
                  "  cert: " + p.path(me + ".pem") + "\n  key: " + p.path(me + ".key") +
                  "\n  ca: " + p.path("ca.pem") +
                  "\n  timeout_ms: " + std::to_string(timeout_ms) +
                  "\n  resume_grace_ms: " + std::to_string(grace_ms) + "\n";
  if (source) {
    y += "  peers:\n    - {name: b, address: \"127.0.0.1:" + std::to_string(peer) + "\"}\n";
    y += "vms:\n  - {name: web1, mac: \"02:00:00:00:01:10\", ipv4: [10.1.0.10]}\n";
  } else {
    y += "  listen: \"127.0.0.1:" + std::to_string(listen) + "\"\n";
  }
  return y;
}

std::unique_ptr<Dataplane> make_dp(const std::string& y) {
  return test_dataplane(y, "resume.yaml");
}

bool precopy_acked(const nlohmann::json& r) {
  return r["phase"] == "precopy" && r["rounds"].get<int>() >= 2;
}

// What the destination must hold in the end: per key, the entry's version and moving fields.
struct Expect {
  uint32_t version = 0;
  uint32_t end0 = 0;
  uint64_t packets0 = 0;
};

class Resume : public ::testing::Test {
 protected:
  static constexpr uint32_t kFlows = 3000;  // ~330 KiB of snapshot: three ENTRIES frames

  void start(int grace_ms = 3000, int timeout_ms = 1000) {
    ASSERT_TRUE(Pki::get().ok()) << "openssl CLI failed to make the test PKI";
    static int n = 0;
    const uint16_t b_port = free_port();
    proxy_ = std::make_unique<CutProxy>(b_port);
    a_ = make_dp(yaml("ra" + std::to_string(n), true, 0, proxy_->port(), grace_ms, timeout_ms));
    std::string yb = yaml("rb" + std::to_string(n++), false, b_port, 0, grace_ms, timeout_ms);
    if (!b_conntrack_.empty()) {
      const std::string ct = "conntrack:\n  capacity: 16384\n";
      yb.replace(yb.find(ct), ct.size(), b_conntrack_);
    }
    b_ = make_dp(yb);
    ASSERT_TRUE(a_ && b_);
    b_address_ = "127.0.0.1:" + std::to_string(b_port);
    vm_a_ = *a_->vms().find_by_name("web1");
    for (uint32_t i = 0; i < kFlows; i++) add(i);
    pump_ = std::thread([this] {
      while (!stop_pump_) {
        {
          std::lock_guard<std::mutex> lock(owner_mu_);
          for (Dataplane* dp : {a_.get(), b_.get()})
            for (auto& w : dp->workers()) w->housekeeping();
        }
        usleep(100);
      }
    });
    ea_ = std::make_unique<MigrationEngine>(*a_);
    eb_ = std::make_unique<MigrationEngine>(*b_);
    std::string err;
    ASSERT_TRUE(eb_->start(&err)) << err;
    ASSERT_TRUE(ea_->start(&err)) << err;
  }
  void TearDown() override {
    if (ea_) ea_->stop();
    if (eb_) eb_->stop();
    stop_pump_ = true;
    if (pump_.joinable()) pump_.join();
    ea_.reset();
    eb_.reset();
  }

  // Inserts flow i at the source, as its owner would.
  void add(uint32_t i) {
    ConnEntry e;
    e.vm_id = vm_a_;
    e.l4_state = static_cast<uint8_t>(TcpState::kEstablished);
    e.version.store(2);
    e.peer[0].end = 1000 + i;
    e.peer[1].end = 5000 + i;
    ConnCounters c;
    c.packets[0] = i;
    int32_t slot = a_->shard(0).insert(vm_flow_key(i), e, &c);
    ASSERT_GE(slot, 0);
    slots_[i] = static_cast<uint32_t>(slot);
    expect_[i] = {2, 1000 + i, i};
  }
  // Moves flow i on (or removes it) while the VM is tracked, and queues it for the next delta.
  void advance(uint32_t i) {
    ConnTable& t = a_->shard(0);
    t.begin_write(slots_[i]);
    t.entry(slots_[i]).peer[0].end += 1448;
    t.count(slots_[i], Dir::kLoToHi, 1448);
    t.end_write(slots_[i]);
    ConnEntry e;
    ConnCounters c;
    ASSERT_TRUE(t.read(slots_[i], &e, nullptr, &c));
    expect_[i] = {e.version.load(), e.peer[0].end, c.packets[0]};
    queue(slots_[i]);
  }
  void remove(uint32_t i) {
    a_->shard(0).remove(slots_[i]);
    expect_.erase(i);
    queue(slots_[i]);
  }
  void queue(uint32_t slot) {
    VmSlot& vs = a_->vms().slot(vm_a_);
    ASSERT_EQ(rte_ring_sp_enqueue_elem(vs.dirty[VmSlot::parity(vs.epoch)][0], &slot, sizeof slot),
              0);
  }

  nlohmann::json source_report() { return ea_->status("web1").second; }
  // Waits for the source's report to satisfy `done`, at most ms.
  template <typename Pred>
  nlohmann::json wait_source(Pred done, int ms = 8000) {
    auto t0 = Clock::now();
    nlohmann::json r;
    while (Clock::now() - t0 < std::chrono::milliseconds(ms)) {
      r = source_report();
      if (done(r)) break;
      usleep(5000);
    }
    return r;
  }
  // The destination's finished report of the migration, once there is one.
  nlohmann::json wait_destination_done(int ms = 8000) {
    auto t0 = Clock::now();
    while (Clock::now() - t0 < std::chrono::milliseconds(ms)) {
      for (auto& r : eb_->list())
        if (r["role"] == "destination" && r["result"] != "RUNNING") return r;
      usleep(5000);
    }
    return {};
  }

  void migrate_to_end() {
    auto [code, r] = ea_->signal("web1", "pause");
    ASSERT_EQ(code, 200) << r.dump();
    std::tie(code, r) = ea_->signal("web1", "resume");
    ASSERT_EQ(code, 200) << r.dump();
  }

  // The VM's cumulative traffic (vm_traffic.h) as migrations before this one brought it to the
  // source: this one must hand it on (VM_COUNTERS) with what the source forwarded (nothing
  // here: no packet runs through the source's workers).
  void bring_traffic() {
    std::lock_guard<std::mutex> lock(a_->vms().control_mutex());
    a_->vms().slot(vm_a_).carried = kBrought;
  }
  // Both reports say the counts travelled; the destination holds them, as the VM's carried
  // figures, from its activation on.
  void expect_traffic_carried(const nlohmann::json& source, const nlohmann::json& dest) {
    const uint64_t bytes = kBrought.bytes[0] + kBrought.bytes[1];
    for (const nlohmann::json* r : {&source, &dest}) {
      EXPECT_EQ((*r)["vm_traffic"]["carried"], true) << r->dump();
      EXPECT_EQ((*r)["vm_traffic"]["bytes"].get<uint64_t>(), bytes) << r->dump();
    }
    std::lock_guard<std::mutex> lock(b_->vms().control_mutex());
    auto vm = b_->vms().find_by_name("web1");
    ASSERT_TRUE(vm);
    EXPECT_EQ(b_->vms().slot(*vm).carried, kBrought);
  }
  static constexpr VmTraffic kBrought{{7, 11}, {9000, 0x1'0000'0005ull}};

  // The destination holds exactly the expected entries (key, version, moving fields), active.
  void expect_destination_holds_exactly_the_source() {
    auto vm = b_->vms().find_by_name("web1");
    ASSERT_TRUE(vm);
    EXPECT_EQ(b_->vms().slot(*vm).state.load(), VmState::kLocal);
    VmReader reader(*b_, *vm);
    std::vector<ConnRecord> got = reader.snapshot();
    EXPECT_EQ(got.size(), expect_.size());
    for (const ConnRecord& r : got) {
      const uint32_t i = r.key.hi_port.host() - 10000u;  // vm_flow_key(i)
      auto it = expect_.find(i);
      ASSERT_NE(it, expect_.end()) << "unexpected entry of flow " << i;
      EXPECT_TRUE(r.key == vm_flow_key(i)) << "flow " << i;
      EXPECT_FALSE(r.deleted) << "flow " << i;
      EXPECT_EQ(r.version, it->second.version) << "flow " << i;
      EXPECT_EQ(r.peer[0].end, it->second.end0) << "flow " << i;
      EXPECT_EQ(r.packets[0], it->second.packets0) << "flow " << i;
    }
  }

  // ---- around activation ----
  static constexpr uint32_t kParked = 8;  // packets parked at the source: one HELD_PACKETS frame

  // Pre-copy, pause, then kParked packets parked at the source as its workers would park them;
  // the mbufs in use in each pool are noted first.
  void freeze_with_parked_packets() {
    auto [code, body] = ea_->prepare("web1", {"b"}, MigrationMode::kFull);
    ASSERT_EQ(code, 202) << body.dump();
    nlohmann::json r = wait_source(precopy_acked);
    ASSERT_TRUE(precopy_acked(r)) << r.dump();
    std::tie(code, r) = ea_->signal("web1", "pause");
    ASSERT_EQ(code, 200) << r.dump();
    a_mbufs_ = rte_mempool_in_use_count(a_->pool());
    b_mbufs_ = rte_mempool_in_use_count(b_->pool());
    VmSlot& vs = a_->vms().slot(vm_a_);
    ASSERT_EQ(vs.state.load(), VmState::kFrozen);
    for (uint32_t i = 0; i < kParked; i++) {
      rte_mbuf* m = rte_pktmbuf_alloc(a_->pool());
      ASSERT_NE(m, nullptr);
      char* p = rte_pktmbuf_append(m, 128);
      ASSERT_NE(p, nullptr);
      std::memset(p, 0, 128);
      m->port = 1;  // came in on the host port (port ids stand for the configured ports here)
      ASSERT_EQ(rte_ring_mp_enqueue(vs.hold, m), 0);
      vs.held++;
    }
  }
  // The resume signal, on a thread of its own: it answers once the activation has an outcome.
  std::future<std::pair<int, nlohmann::json>> resume_async() {
    return std::async(std::launch::async, [this] { return ea_->signal("web1", "resume"); });
  }
  // Starts a migration (destination grace period grace_ms, timeouts 600 ms), freezes, and
  // resumes with ACTIVATE lost on the way to the destination and then the link down for good:
  // the source cannot learn the outcome and is in doubt. *answer: the resume call's answer.
  void leave_activation_in_doubt(int grace_ms, std::pair<int, nlohmann::json>* answer) {
    ASSERT_NO_FATAL_FAILURE(start(grace_ms, /*timeout_ms=*/600));
    ASSERT_NO_FATAL_FAILURE(freeze_with_parked_packets());
    proxy_->mute(/*to_destination=*/true);
    auto resumed = resume_async();
    ASSERT_TRUE(eventually([&] { return proxy_->muted_records(true) >= 2; }));
    proxy_->cut_now(/*stay_down=*/true);
    *answer = resumed.get();
    ASSERT_NO_FATAL_FAILURE(expect_source_in_doubt());
  }
  template <typename Pred>
  static bool eventually(Pred p, int ms = 5000) {
    for (auto t0 = Clock::now(); Clock::now() - t0 < std::chrono::milliseconds(ms); usleep(2000))
      if (p()) return true;
    return p();
  }
  static std::optional<VmState> vm_state(Dataplane& dp) {
    std::lock_guard<std::mutex> lock(dp.vms().control_mutex());
    auto vm = dp.vms().find_by_name("web1");
    if (!vm) return std::nullopt;
    return dp.vms().slot(*vm).state.load();
  }
  // How many of the source's reports (finished, or running) say `result`. A report joins the
  // history a moment after its phase says it ended.
  int source_results(const std::string& result) {
    int n = 0;
    for (auto& r : ea_->list()) n += r["role"] == "source" && r["result"] == result;
    return n;
  }
  // The activation was left in doubt: the source reports TRANSFER saying so and keeps the VM
  // frozen with every entry and every parked packet (the shipped ones too), forwarding none.
  void expect_source_in_doubt() {
    nlohmann::json r = source_report();
    EXPECT_EQ(r["result"], "TRANSFER") << r.dump();
    EXPECT_NE(r["detail"].get<std::string>().find("activation outcome unknown"), std::string::npos)
        << r.dump();
    EXPECT_EQ(vm_state(*a_), VmState::kFrozen);
    EXPECT_EQ(a_->shard(0).size(), kFlows);
    EXPECT_EQ(rte_mempool_in_use_count(a_->pool()), a_mbufs_ + kParked);
    EXPECT_EQ(source_results("SUCCESS"), 0);
  }
  // The VM is the destination's: active there with every entry and the parked packets
  // forwarded there once; gone from the source, which reported SUCCESS once and freed them.
  void expect_handed_over() {
    EXPECT_EQ(source_report()["result"], "SUCCESS") << source_report().dump();
    EXPECT_TRUE(eventually([&] { return source_results("SUCCESS") > 0; }, 2000));
    EXPECT_EQ(source_results("SUCCESS"), 1);
    EXPECT_FALSE(vm_state(*a_)) << "the source keeps the VM after SUCCESS";
    EXPECT_EQ(a_->shard(0).size(), 0u);
    EXPECT_EQ(rte_mempool_in_use_count(a_->pool()), a_mbufs_);
    nlohmann::json d = wait_destination_done();
    EXPECT_EQ(d["result"], "SUCCESS") << d.dump();
    expect_destination_holds_exactly_the_source();
    EXPECT_EQ(rte_mempool_in_use_count(b_->pool()), b_mbufs_ + kParked)
        << "the parked packets reach the destination's pipeline exactly once";
    EXPECT_EQ(d["packets"]["forwarded"].get<uint64_t>(), kParked) << d.dump();
    EXPECT_EQ(d["packets"]["lost"].get<uint64_t>(), 0u) << d.dump();
  }
  // The VM is the source's again: local with every entry, the parked packets forwarded there
  // once; the destination rolled back (no VM, no entry, no packet kept).
  void expect_both_rolled_back() {
    EXPECT_EQ(vm_state(*a_), VmState::kLocal);
    EXPECT_EQ(a_->shard(0).size(), kFlows);
    EXPECT_EQ(rte_mempool_in_use_count(a_->pool()), a_mbufs_ + kParked)
        << "the parked packets reach the source's pipeline exactly once";
    EXPECT_EQ(source_results("SUCCESS"), 0);
    nlohmann::json d = wait_destination_done();
    EXPECT_NE(d["result"], "SUCCESS") << d.dump();
    EXPECT_FALSE(vm_state(*b_));
    EXPECT_EQ(b_->shard(0).size(), 0u);
    EXPECT_EQ(rte_mempool_in_use_count(b_->pool()), b_mbufs_);
  }

  // Starts web1's migration to b; *report: the source's, once it says the migration failed.
  void prepare_until_failed(nlohmann::json* report) {
    auto [code, body] = ea_->prepare("web1", {"b"}, MigrationMode::kFull);
    ASSERT_EQ(code, 202) << body.dump();
    *report = wait_source([](const nlohmann::json& j) { return j["phase"] == "failed"; });
  }
  // A migration that failed before the pause (nothing parked) with `reason` on both sides: the
  // source has the VM local again with every entry (`flows` of them); the destination, its
  // detail saying `why`, rolled back to no VM and no entry.
  void expect_failed_and_rolled_back(const nlohmann::json& source_report, const char* reason,
                                     const char* why, uint32_t flows = kFlows) {
    EXPECT_EQ(source_report["result"], reason) << source_report.dump();
    EXPECT_EQ(vm_state(*a_), VmState::kLocal);
    EXPECT_EQ(a_->shard(0).size(), flows);
    nlohmann::json d = wait_destination_done();
    EXPECT_EQ(d["result"], reason) << d.dump();
    EXPECT_NE(d["detail"].get<std::string>().find(why), std::string::npos) << d.dump();
    EXPECT_FALSE(vm_state(*b_));
    EXPECT_EQ(b_->shard(0).size(), 0u);
  }

  std::unique_ptr<CutProxy> proxy_;
  std::unique_ptr<Dataplane> a_, b_;
  std::unique_ptr<MigrationEngine> ea_, eb_;
  std::string b_address_;
  uint16_t vm_a_ = 0;
  std::mutex owner_mu_;  // the owner of the shards: the pump or the test thread
  std::thread pump_;
  std::atomic<bool> stop_pump_{false};
  std::map<uint32_t, uint32_t> slots_;
  std::map<uint32_t, Expect> expect_;
  unsigned a_mbufs_ = 0, b_mbufs_ = 0;  // mbufs in use before packets were parked
  std::string b_conntrack_;  // the destination's conntrack section, if not the default
};

TEST_F(Resume, LinkCutInTheSnapshotResumesAndTheDestinationHoldsEveryEntry) {
  ASSERT_NO_FATAL_FAILURE(start());
  proxy_->cut_after(150 * 1024);  // in the second of three ENTRIES frames of the snapshot
  auto [code, body] = ea_->prepare("web1", {"b"}, MigrationMode::kFull);
  ASSERT_EQ(code, 202) << body.dump();
  nlohmann::json r = wait_source(precopy_acked);
  ASSERT_TRUE(precopy_acked(r)) << r.dump();
  ASSERT_NO_FATAL_FAILURE(migrate_to_end());
  r = source_report();
  EXPECT_EQ(r["result"], "SUCCESS") << r.dump();
  EXPECT_EQ(proxy_->cuts(), 1);
  EXPECT_GE(r["resumes"].get<int>(), 1) << r.dump();
  EXPECT_EQ(r["entries"]["snapshot"].get<uint64_t>(), kFlows);
  nlohmann::json d = wait_destination_done();
  EXPECT_EQ(d["result"], "SUCCESS") << d.dump();
  EXPECT_GE(d["resumes"].get<int>(), 1) << d.dump();
  expect_destination_holds_exactly_the_source();
  EXPECT_FALSE(a_->vms().find_by_name("web1")) << "the source keeps the VM after SUCCESS";
}

TEST_F(Resume, LinkCutInTheFinalDeltaResumesWithMovedAndDeletedEntries) {
  ASSERT_NO_FATAL_FAILURE(start());
  ASSERT_NO_FATAL_FAILURE(bring_traffic());
  auto [code, body] = ea_->prepare("web1", {"b"}, MigrationMode::kFull);
  ASSERT_EQ(code, 202) << body.dump();
  nlohmann::json r = wait_source(precopy_acked);
  ASSERT_TRUE(precopy_acked(r)) << r.dump();
  {
    // Every flow moves on and every seventh ends right before the pause: the final delta
    // carries ~3000 records, tombstones among them. (A pre-copy round may pick some of them
    // up first; the cut then lands in that round's frames, which is a cut all the same.)
    std::lock_guard<std::mutex> lock(owner_mu_);
    for (uint32_t i = 0; i < kFlows; i++) i % 7 == 0 ? remove(i) : advance(i);
  }
  proxy_->cut_after(8 * 1024);
  ASSERT_NO_FATAL_FAILURE(migrate_to_end());
  r = source_report();
  EXPECT_EQ(r["result"], "SUCCESS") << r.dump();
  EXPECT_EQ(proxy_->cuts(), 1);
  EXPECT_GE(r["resumes"].get<int>(), 1) << r.dump();
  nlohmann::json d = wait_destination_done();
  EXPECT_EQ(d["result"], "SUCCESS") << d.dump();
  expect_destination_holds_exactly_the_source();
  expect_traffic_carried(r, d);
}

TEST_F(Resume, DestinationGoneLongerThanTheBudgetFailsTransferAndBothSidesRollBack) {
  ASSERT_NO_FATAL_FAILURE(start(/*grace_ms=*/1500));
  proxy_->cut_after(150 * 1024, /*stay_down=*/true);
  auto t0 = Clock::now();
  nlohmann::json r;
  ASSERT_NO_FATAL_FAILURE(prepare_until_failed(&r));
  auto ms = std::chrono::duration_cast<std::chrono::milliseconds>(Clock::now() - t0).count();
  EXPECT_GE(ms, 900) << "the source gave up before its reconnect budget (timeout_ms 1000)";
  EXPECT_EQ(r["resumes"].get<int>(), 0);
  // The destination rolls back after its grace period.
  expect_failed_and_rolled_back(r, "TRANSFER", "did not resume");
}

// A destination of protocol version 5 (session 9's builds): answers HELLO, then notes the
// header version and kind of the next frame it gets and closes. The source under test speaks
// version 6.
class Version5Peer {
 public:
  Version5Peer() {
    Pki& p = Pki::get();
    std::string err;
    ctx_ = TlsContext::create(TlsContext::Role::kServer, p.path("b.pem"), p.path("b.key"),
                              p.path("ca.pem"), &err);
    EXPECT_TRUE(ctx_) << err;
    Error e;
    if (ctx_) listener_ = PeerListener::listen(*ctx_, "127.0.0.1:0", &e);
    EXPECT_TRUE(listener_) << e.detail;
    if (!listener_) return;
    thread_ = std::thread([this] {
      Error err;
      auto link = listener_->accept(8000, &err);
      if (!link) return;
      Frame f;
      if (link->recv(&f, 5000).code != LinkError::kNone) return;
      HelloMsg h;
      h.version_max = kProtocolVersionFamilies;
      h.instance = "b";
      link->send(encode_frame(h, f.header.migration_id, 1, kProtocolVersionMin), 5000);
      if (link->recv(&f, 5000).code == LinkError::kNone) {
        next_version = f.header.version;
        next_kind = static_cast<int>(f.header.kind);
      }
      link->close();
    });
  }
  ~Version5Peer() {
    if (thread_.joinable()) thread_.join();
  }
  uint16_t port() const { return listener_ ? listener_->port() : 0; }
  void join() { thread_.join(); }
  std::atomic<int> next_version{0}, next_kind{0};

 private:
  std::unique_ptr<TlsContext> ctx_;
  std::unique_ptr<PeerListener> listener_;
  std::thread thread_;
};

// Version 6 carries the profile's max_half_open: a source does not hand a VM with a limit to a
// version-5 peer (its guard would drop silently) and says why before PREPARE; a VM without one
// still goes, its PREPARE encoded at version 5.
TEST(Version5Destination, GetsNoVmWithAHalfOpenLimitButOneWithout) {
  ASSERT_TRUE(Pki::get().ok()) << "openssl CLI failed to make the test PKI";
  for (bool limited : {true, false}) {
    Version5Peer peer;
    ASSERT_NE(peer.port(), 0);
    std::string y = yaml(std::string("v5a") + (limited ? "1" : "0"), true, 0, peer.port(), 1000, 1000);
    if (limited) {
      const std::string v4 = "ipv4: [10.1.0.10]";
      y.replace(y.find(v4), v4.size(), v4 + ", profile: {max_half_open: 50}");
    }
    auto a = make_dp(y);
    ASSERT_TRUE(a);
    MigrationEngine ea(*a);
    std::string err;
    ASSERT_TRUE(ea.start(&err)) << err;
    auto [code, body] = ea.prepare("web1", {"b"}, MigrationMode::kFull);
    ASSERT_EQ(code, 202) << body.dump();
    peer.join();
    nlohmann::json r;
    for (int i = 0; i < 400; i++, usleep(10000))
      if ((r = ea.status("web1").second)["phase"] == "failed") break;
    if (limited) {
      EXPECT_EQ(r["result"], "UNSUPPORTED") << r.dump();
      EXPECT_NE(r["detail"].get<std::string>().find("max_half_open"), std::string::npos) << r.dump();
      EXPECT_NE(peer.next_kind.load(), static_cast<int>(MsgKind::kPrepare));
    } else {
      EXPECT_EQ(peer.next_kind.load(), static_cast<int>(MsgKind::kPrepare));
      EXPECT_EQ(peer.next_version.load(), kProtocolVersionFamilies);
      EXPECT_EQ(r["phase"], "failed") << r.dump();  // the peer closed after PREPARE
    }
    EXPECT_EQ(a->vms().slot(*a->vms().find_by_name("web1")).state.load(), VmState::kLocal);
    ea.stop();
  }
}

// PREPARE says how many of the VM's 3,000 connections are IPv6 (none): the destination, with
// 1,000 free IPv4 slots and 20,000 IPv6 ones, refuses before anything moves, naming the table.
TEST_F(Resume, EntriesWithoutRoomInTheirFamilyAreRefusedAtPrepare) {
  b_conntrack_ = "conntrack:\n  capacity: 1000\n  capacity_v6: 20000\n";
  ASSERT_NO_FATAL_FAILURE(start());
  nlohmann::json r;
  ASSERT_NO_FATAL_FAILURE(prepare_until_failed(&r));
  EXPECT_EQ(r["entries"]["snapshot"].get<uint64_t>(), 0u) << r.dump();
  expect_failed_and_rolled_back(r, "RESOURCES", "table conn (IPv4): 3000 entries");
}

// PREPARE's 3,000 connections fit the destination's 3,400 IPv4 slots (with 10 % headroom); then
// the VM opens 1,000 more during pre-copy. The destination must not activate a VM with some of
// its connections missing: the round that finds no room FAILs with RESOURCES, both sides roll
// back, and the source forwards on with every entry.
TEST_F(Resume, EntriesWithoutRoomAtTheDestinationFailResourcesAndBothSidesRollBack) {
  b_conntrack_ = "conntrack:\n  capacity: 3400\n";
  ASSERT_NO_FATAL_FAILURE(start());
  auto [code, body] = ea_->prepare("web1", {"b"}, MigrationMode::kFull);
  ASSERT_EQ(code, 202) << body.dump();
  nlohmann::json r = wait_source(precopy_acked);
  ASSERT_TRUE(precopy_acked(r)) << r.dump();
  {
    std::lock_guard<std::mutex> lock(owner_mu_);
    for (uint32_t i = kFlows; i < kFlows + 1000; i++) {
      ASSERT_NO_FATAL_FAILURE(add(i));
      queue(slots_[i]);
    }
  }
  r = wait_source([](const nlohmann::json& j) { return j["phase"] == "failed"; });
  expect_failed_and_rolled_back(r, "RESOURCES", "no room", kFlows + 1000);
}

// A RESUME on a connection of its own, straight to the destination's listener.
FailMsg resume_as(const std::string& who, const std::string& address, uint64_t mid) {
  std::string err;
  Pki& p = Pki::get();
  auto ctx = TlsContext::create(TlsContext::Role::kClient, p.path(who + ".pem"),
                                p.path(who + ".key"), p.path("ca.pem"), &err);
  EXPECT_TRUE(ctx) << err;
  if (!ctx) return {};
  Error e;
  auto link = PeerLink::connect(*ctx, address, 2000, &e);
  EXPECT_TRUE(link) << e.detail;
  if (!link) return {};
  EXPECT_TRUE(link->send(encode_frame(ResumeMsg{0, 5}, mid, 0), 2000));
  Frame f;
  e = link->recv(&f, 2000);
  EXPECT_EQ(e.code, LinkError::kNone) << e.detail;
  FailMsg fm{FailReason::kNone, ""};
  EXPECT_EQ(decode_body(f, &fm), CodecError::kOk) << msg_kind_name(f.header.kind);
  return fm;
}

TEST_F(Resume, ResumeFromAnotherCertificateGetsAuthAndTheMigrationGoesOn) {
  ASSERT_NO_FATAL_FAILURE(start());
  auto [code, body] = ea_->prepare("web1", {"b"}, MigrationMode::kFull);
  ASSERT_EQ(code, 202) << body.dump();
  nlohmann::json r = wait_source(precopy_acked);
  ASSERT_TRUE(precopy_acked(r)) << r.dump();
  const uint64_t mid = r["id"].get<uint64_t>();
  // baton-c is a legitimate peer of the same CA, but not the one that started migration `mid`.
  FailMsg other = resume_as("c", b_address_, mid);
  EXPECT_EQ(other.reason, FailReason::kAuth) << other.detail;
  // A migration the destination does not hold: TRANSFER (nothing to resume).
  FailMsg unknown = resume_as("a", b_address_, mid + 1000);
  EXPECT_EQ(unknown.reason, FailReason::kTransfer) << unknown.detail;
  ASSERT_NO_FATAL_FAILURE(migrate_to_end());
  r = source_report();
  EXPECT_EQ(r["result"], "SUCCESS") << r.dump();
  EXPECT_EQ(r["resumes"].get<int>(), 0);
  expect_destination_holds_exactly_the_source();
}

// ---- cut around activation (docs/WIRE.md, "Cut around activation") ----------------------------

// The source sent HELD_PACKETS and ACTIVATE, the destination got neither; the link is cut.
TEST_F(Resume, ActivateLostInACutIsResentAndTheVmMovesOnce) {
  ASSERT_NO_FATAL_FAILURE(start());
  ASSERT_NO_FATAL_FAILURE(freeze_with_parked_packets());
  proxy_->mute(/*to_destination=*/true);
  auto resumed = resume_async();
  ASSERT_TRUE(eventually([&] { return proxy_->muted_records(true) >= 2; }))
      << "HELD_PACKETS and ACTIVATE should have left the source";
  EXPECT_EQ(vm_state(*b_), VmState::kArriving);
  proxy_->cut_now();
  auto [code, r] = resumed.get();
  EXPECT_EQ(code, 200) << r.dump();
  EXPECT_EQ(r["result"], "SUCCESS") << r.dump();
  EXPECT_GE(r["resumes"].get<int>(), 1) << r.dump();
  EXPECT_EQ(r["packets"]["forwarded"].get<uint64_t>(), kParked) << r.dump();
  expect_handed_over();
}

// The destination activated the VM; its ACTIVATED is lost in the cut. It answers the RESUME
// with ACTIVATED again.
TEST_F(Resume, ActivatedLostInACutIsAnsweredAgainOnResume) {
  ASSERT_NO_FATAL_FAILURE(start());
  ASSERT_NO_FATAL_FAILURE(freeze_with_parked_packets());
  proxy_->mute(/*to_destination=*/false);
  auto resumed = resume_async();
  // ACK(HELD_PACKETS), ACTIVATED, ACK(ACTIVATE): all lost.
  ASSERT_TRUE(eventually([&] {
    return vm_state(*b_) == VmState::kLocal && proxy_->muted_records(false) >= 3;
  }));
  EXPECT_EQ(source_report()["phase"], "activating") << source_report().dump();
  proxy_->cut_now();
  auto [code, r] = resumed.get();
  EXPECT_EQ(r["result"], "SUCCESS") << r.dump();
  EXPECT_GE(r["resumes"].get<int>(), 1) << r.dump();
  expect_handed_over();
}

// As above, but nothing ends the connection: its silence, not a reset, makes the source come
// back on a new one once timeout_ms has passed (the destination drops the old one then). It used to fail with TIMEOUT and roll back,
// forwarding the VM's traffic while the destination did too.
TEST_F(Resume, ActivatedLostOnASilentLinkIsAskedForOnANewConnection) {
  ASSERT_NO_FATAL_FAILURE(start(/*grace_ms=*/3000, /*timeout_ms=*/600));
  ASSERT_NO_FATAL_FAILURE(freeze_with_parked_packets());
  proxy_->mute(/*to_destination=*/false);
  auto resumed = resume_async();
  ASSERT_TRUE(eventually([&] { return vm_state(*b_) == VmState::kLocal; }));
  auto [code, r] = resumed.get();
  EXPECT_EQ(r["result"], "SUCCESS") << r.dump();
  EXPECT_GE(r["resumes"].get<int>(), 1) << r.dump();
  EXPECT_EQ(proxy_->cuts(), 0);
  expect_handed_over();
}

// ACTIVATE went out and the destination stayed unreachable past the source's budget: the
// activation is in doubt. The source keeps the VM frozen rather than forward it (the
// destination might run it) and reports TRANSFER saying so. When the destination is back (still
// holding the migration in its grace period), the resume signal asks again and the migration
// completes: the destination receives ACTIVATE once and the parked packets once.
TEST_F(Resume, InDoubtActivationCompletesWhenTheDestinationIsBack) {
  std::pair<int, nlohmann::json> answer;
  ASSERT_NO_FATAL_FAILURE(leave_activation_in_doubt(/*grace_ms=*/4000, &answer));
  auto [code, r] = answer;
  EXPECT_EQ(code, 502) << r.dump();
  EXPECT_EQ(vm_state(*b_), VmState::kArriving) << "the destination waits for a RESUME";
  proxy_->bring_up();
  std::tie(code, r) = ea_->signal("web1", "resume");
  EXPECT_EQ(code, 200) << r.dump();
  EXPECT_EQ(r["result"], "SUCCESS") << r.dump();
  EXPECT_EQ(source_results("TRANSFER"), 1) << "the in-doubt report stays in the history";
  expect_handed_over();
}

// The same, with nobody signalling: the source asks again by itself every 5 s
// (kInDoubtRetryMs), and the first retry after the destination is back completes the handoff.
TEST_F(Resume, InDoubtActivationCompletesByItselfWhenTheDestinationIsBack) {
  std::pair<int, nlohmann::json> answer;
  ASSERT_NO_FATAL_FAILURE(leave_activation_in_doubt(/*grace_ms=*/9000, &answer));
  auto [code, r] = answer;
  EXPECT_EQ(code, 502) << r.dump();
  proxy_->bring_up();
  r = wait_source([](const nlohmann::json& x) { return x["result"] == "SUCCESS"; }, 8000);
  EXPECT_EQ(r["result"], "SUCCESS") << r.dump();
  expect_handed_over();
}

// The daemon stops while an activation is in doubt: nothing decides for the operator. The stop
// does not wait for the next retry, and the VM stays frozen at the source with its entries, as
// the peer may run it.
TEST_F(Resume, DaemonStopWhileInDoubtLeavesTheVmFrozen) {
  std::pair<int, nlohmann::json> answer;
  ASSERT_NO_FATAL_FAILURE(leave_activation_in_doubt(/*grace_ms=*/1000, &answer));
  const auto t0 = Clock::now();
  ea_->stop();
  EXPECT_LT(Clock::now() - t0, std::chrono::milliseconds(3000));
  EXPECT_EQ(vm_state(*a_), VmState::kFrozen);
  EXPECT_EQ(a_->shard(0).size(), kFlows);
  EXPECT_EQ(source_results("SUCCESS"), 0);
}

// The destination activated the VM, then stayed unreachable past the source's budget and past
// its own grace period: its session has ended. The source stays frozen meanwhile; asked again,
// the destination answers from its history that it activated the VM.
TEST_F(Resume, InDoubtActivationIsConfirmedByADestinationThatAlreadyEndedIt) {
  ASSERT_NO_FATAL_FAILURE(start(/*grace_ms=*/1000, /*timeout_ms=*/600));
  ASSERT_NO_FATAL_FAILURE(freeze_with_parked_packets());
  proxy_->mute(/*to_destination=*/false);
  auto resumed = resume_async();
  ASSERT_TRUE(eventually([&] {
    return vm_state(*b_) == VmState::kLocal && proxy_->muted_records(false) >= 3;
  }));
  proxy_->cut_now(/*stay_down=*/true);
  auto [code, r] = resumed.get();
  EXPECT_EQ(code, 502) << r.dump();
  ASSERT_NO_FATAL_FAILURE(expect_source_in_doubt());
  EXPECT_EQ(vm_state(*b_), VmState::kLocal);
  nlohmann::json d = wait_destination_done();
  EXPECT_EQ(d["result"], "SUCCESS") << d.dump();
  proxy_->bring_up();
  std::tie(code, r) = ea_->signal("web1", "resume");
  EXPECT_EQ(r["result"], "SUCCESS") << r.dump();
  expect_handed_over();
}

// ACTIVATE never reached the destination, which rolled back when its grace period ended. Asked
// again, it says so (ABORT), and the source rolls back too: the VM is the source's again with
// the parked packets, the shipped ones included.
TEST_F(Resume, InDoubtActivationRollsBackWhenTheDestinationRolledBack) {
  std::pair<int, nlohmann::json> answer;
  ASSERT_NO_FATAL_FAILURE(leave_activation_in_doubt(/*grace_ms=*/1000, &answer));
  nlohmann::json d = wait_destination_done();
  EXPECT_EQ(d["result"], "TRANSFER") << d.dump();
  proxy_->bring_up();
  auto [code, r] = ea_->signal("web1", "resume");
  EXPECT_EQ(code, 502) << r.dump();
  EXPECT_EQ(r["result"], "TRANSFER") << r.dump();
  EXPECT_NE(r["detail"].get<std::string>().find("rolled back here"), std::string::npos) << r.dump();
  expect_both_rolled_back();
}

// The operator knows the destination does not run the VM: abort takes it back at the source,
// which the destination never activated (it rolls back when its grace period ends).
TEST_F(Resume, AbortTakesAnInDoubtVmBackAtTheSource) {
  std::pair<int, nlohmann::json> answer;
  ASSERT_NO_FATAL_FAILURE(leave_activation_in_doubt(/*grace_ms=*/1000, &answer));
  auto [code, r] = ea_->signal("web1", "abort");
  EXPECT_EQ(code, 200) << r.dump();
  EXPECT_EQ(r["result"], "ABORTED") << r.dump();
  expect_both_rolled_back();
}

}  // namespace
}  // namespace baton::migrate
