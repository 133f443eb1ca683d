// SPDX-License-Identifier: Apache-2.0
//
// BackendPool: one server farm of an L4 service (IPv4 backends) and its Maglev table.
//
// Theory of operation
//
// * Control side (any thread; mutators serialise on a mutex): the pool keeps the backend list
//   (id, address, port, weight, admin state up/draining/down, health). Every change builds a
//   new immutable PoolSnapshot (the list as published, the Maglev table over the backends that
//   take new connections, the backup pool) and publishes it with one atomic pointer store. The
//   previous snapshot goes to the retire callback, which frees it once no worker can still hold
//   it (the dataplane waits for an RCU grace period; tests may free at once).
// * Worker side (lock-free, while online in RCU): pick() loads the snapshot once and looks the
//   flow hash up in its Maglev table; if no primary backend takes new connections it asks the
//   backup pool (seed 000 section 3.2.1.3.2: server farm and backup server farm). A backup's
//   own backup is not consulted.
// * Existing connections are never re-mapped here: the connection table stores the backend
//   chosen at connection setup, and the pool only decides for new connections. Draining or
//   failing a backend therefore moves no established flow.
// * Which backends take what:
//     new connections (Maglev)        admin up, healthy, weight > 0
//     persistent (sticky) connections  admin up or draining, healthy (weight ignored)
//     nothing                          admin down, or unhealthy
//   Draining honours persistence as HAProxy's "drain" and F5's "disabled" do: clients bound to
//   the backend by a sticky entry keep reaching it while nobody new is sent there.
// * Backend ids are chosen by the caller and must be unique across a pool and its backup (the
//   integrator numbers all backends of the process). The Maglev key of a backend is
//   "a.b.c.d:port", not the id, so two instances with the same backends agree on the table
//   even if they number them differently.
// * Per-backend counters (active and total connections) are relaxed atomics that live as long
//   as the backend is in the pool; a backend removed and added again starts from zero.
#pragma once

#include <atomic>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "common/net_types.h"
#include "lb/maglev.h"

namespace baton {

using BackendId = uint32_t;
inline constexpr BackendId kNoBackend = UINT32_MAX;

class BackendPool;

enum class AdminState : uint8_t { kUp = 0, kDraining = 1, kDown = 2 };
const char* admin_state_name(AdminState s);
std::optional<AdminState> parse_admin_state(std::string_view s);

struct BackendSpec {
  BackendId id = kNoBackend;
  be32 addr;  // IPv4, network order
  be16 port;
  uint32_t weight = 1;  // 0..kMaxWeight; 0 = no new connections (like draining)
  AdminState admin = AdminState::kUp;
  bool healthy = true;  // the health checker's verdict (initial value from config)

  bool takes_new() const { return admin == AdminState::kUp && healthy && weight > 0; }
  bool takes_persistent() const { return admin != AdminState::kDown && healthy; }
  std::string maglev_key() const;  // "a.b.c.d:port"
};

struct BackendCounters {
  std::atomic<int64_t> active{0};  // may dip below 0 if a backend was re-added mid-connection
  std::atomic<uint64_t> total{0};
};

// A backend as a worker may use it: by value, nothing to keep alive.
struct BackendPick {
  BackendId id = kNoBackend;
  be32 addr;
  be16 port;
  bool backup = false;  // from the backup farm
};

// One published state of the pool. Immutable after publication.
struct PoolSnapshot {
  struct Backend {
    BackendSpec spec;
    std::shared_ptr<BackendCounters> counters;  // workers use the pointee, never copy this
  };
  std::vector<Backend> backends;       // sorted by id
  std::vector<uint32_t> maglev_index;  // Maglev input index -> index into backends
  Maglev maglev;                       // over the backends that take new connections
  const BackendPool* backup = nullptr;

  const Backend* find(BackendId id) const;
  bool has_new_capacity() const { return !maglev.empty(); }
};

// Status of one backend for the control API and metrics.
struct BackendStatus {
  BackendSpec spec;
  int64_t active_conns = 0;
  uint64_t total_conns = 0;
};

class BackendPool {
 public:
  // Hands over a function that frees an old snapshot; call it once no reader can hold it.
  using RetireFn = std::function<void(std::function<void()> free_fn)>;

  struct Params {
    std::string name;                             // for messages
    uint32_t maglev_size = Maglev::kDefaultSize;  // prime
    RetireFn retire;                              // required
  };
  static constexpr uint32_t kMaxWeight = 65535;
  static constexpr size_t kMaxBackends = 4096;

  static std::unique_ptr<BackendPool> create(Params p, std::string* err);
  // Frees the current snapshot at once: destroy the pool only when no worker can reach it, and
  // not while another pool uses it as backup.
  ~BackendPool();
  BackendPool(const BackendPool&) = delete;
  BackendPool& operator=(const BackendPool&) = delete;

  // ---- Control side (thread-safe among themselves; each publishes one new snapshot) ----
  // False with *err on bad input (duplicate or unknown id, address 0, port 0, weight above
  // kMaxWeight, an address:port already in the pool, too many backends); nothing changes then.
  bool add(const BackendSpec& b, std::string* err);
  bool remove(BackendId id, std::string* err);
  bool set_weight(BackendId id, uint32_t weight, std::string* err);
  bool set_admin(BackendId id, AdminState s, std::string* err);
  bool set_healthy(BackendId id, bool healthy, std::string* err);
  // Replaces the whole list in one step (configuration reload). Backends whose id stays keep
  // their counters and, when keep_health is set, their current health instead of the spec's.
  bool set_backends(const std::vector<BackendSpec>& specs, bool keep_health, std::string* err);
  // The farm used when no backend of this one takes new connections; nullptr clears. Refuses
  // this pool itself. The backup must outlive its use (clear, wait a grace period, destroy).
  bool set_backup(const BackendPool* backup, std::string* err);

  std::vector<BackendStatus> list() const;
  std::optional<BackendStatus> status(BackendId id) const;
  const std::string& name() const { return name_; }

  // ---- Worker side (lock-free; the caller is online in RCU while it uses the results) ----
  // Backend for a new connection with this flow hash: primary farm, else backup farm, else
  // nullopt (no backend available: the caller drops or resets, and counts it).
  std::optional<BackendPick> pick(uint64_t flow_hash) const;
  // Asks for the Maglev slot pick(flow_hash) will read.
  void prefetch_pick(uint64_t flow_hash) const;
  // The backend if it may take a persistent (sticky) connection now, searched in this farm
  // and then its backup; nullopt if unknown, down, unhealthy.
  std::optional<BackendPick> find_persistent(BackendId id) const;
  // Connection accounting for metrics; unknown ids (removed backends) are ignored.
  void conn_opened(BackendId id) const;
  void conn_closed(BackendId id) const;

  // The current snapshot (valid until the caller's next quiescent state).
  const PoolSnapshot* snapshot() const { return current_.load(std::memory_order_acquire); }

 private:
  BackendPool() = default;

  using Backends = std::vector<PoolSnapshot::Backend>;
  bool validate_and_publish(Backends next, const BackendPool* backup, std::string* err);
  // find() in the current list for a mutator; nullptr with *err set if unknown.
  PoolSnapshot::Backend* find_mut(Backends& list, BackendId id, std::string* err) const;
  template <class Fn>
  bool mutate(BackendId id, std::string* err, Fn&& fn);
  const PoolSnapshot::Backend* find_any(BackendId id, bool* backup) const;

  std::string name_;
  uint32_t maglev_size_ = Maglev::kDefaultSize;
  RetireFn retire_;
  mutable std::mutex mu_;  // serialises the control side
  std::atomic<const PoolSnapshot*> current_{nullptr};
};

}  // namespace baton
