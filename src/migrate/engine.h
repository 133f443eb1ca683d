// SPDX-License-Identifier: Apache-2.0
//
// The migration engine: hands one VM's state to one or more peer instances while the VM
// live-migrates, following the hypervisor's phases (seed 000 figure 17, DESIGN.md section 5).
//
// Source side, one OutSession (and thread) per VM being sent:
//   prepare  connect to every peer over mutual TLS, HELLO, PREPARE (profile + entry counts);
//            each peer answers ACCEPT or FAIL(reason)
//   precopy  track the VM's changes, stream the snapshot, then a delta round every
//            kRoundInterval until the pause signal; each round is acknowledged
//   pause    freeze the VM (its packets are parked on the hold ring), wait a grace period, send
//            the final delta: the entries exactly as of the last packet processed here
//   resume   ship the parked packets, ACTIVATE every peer, then delete the VM's entries here
//   failure  any FAIL, timeout or lost peer before ACTIVATE is sent: unfreeze, re-inject the
//            parked packets here, tell the peers to ABORT; forwarding goes on as if nothing
//            happened. After ACTIVATE only the peer's word rolls back; an outcome that cannot be
//            learned leaves the VM frozen here, "in doubt" (docs/WIRE.md)
//   drop     after ACCEPT a dropped connection is not a failure yet: the link reconnects within
//            the timeout, sends RESUME and resends what the peer has not applied (it keeps
//            every unacknowledged frame, up to resume_window_bytes); only a reconnect that
//            fails within the timeout, or a peer that no longer holds the migration, is
//            FAIL(TRANSFER). After activation a lost link only loses late packets.
// Destination side, one InSession per migration: install everything as pending, park the VM's
// packets until ACTIVATE, then activate the VM (one store), inject the source's parked packets
// and its own, in that order. An accepted connection whose first frame is HELLO starts a
// session; one whose first frame is RESUME is handed to the session of that migration id and
// that certificate identity (another identity: FAIL(AUTH); none: FAIL(TRANSFER)). A session
// whose connection dropped keeps its pending state for resume_grace_ms, waiting for it. A VM may come from several sources at once (n:1) and go to
// several peers (1:n).
//
// Every migration ends in a Report (SUCCESS or FAIL with a reason), visible in the API, a log
// line and the metrics.
#pragma once

#include <atomic>
#include <condition_variable>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include <nlohmann/json.hpp>
#include <prometheus/metric_family.h>

#include "dataplane/vm_traffic.h"
#include "migrate/feedback.h"

namespace baton {
class Dataplane;
namespace control {
class HttpApi;
}

namespace migrate {
class TlsContext;
class PeerListener;
class PeerLink;
struct Frame;
}  // namespace migrate

enum class MigrationMode : uint8_t {
  kFull,          // snapshot, deltas, final delta at pause: the real thing
  kSnapshotOnly,  // snapshot at prepare only: shows why a pre-pause snapshot breaks TCP
};

enum class MigrationPhase : uint8_t {
  kPreparing, kPrecopy, kFrozen, kActivating, kSucceeded, kFailed
};
const char* migration_phase_name(MigrationPhase p);

// What a finished (or running) migration reports.
struct MigrationReport {
  uint64_t id = 0;
  std::string vm, role;  // role: "source" or "destination"
  std::vector<std::string> peers;
  std::string mode;
  MigrationPhase phase = MigrationPhase::kPreparing;
  migrate::FailReason reason = migrate::FailReason::kNone;
  std::string detail;
  uint64_t entries_snapshot = 0, entries_delta = 0, entries_final = 0, tombstones = 0;
  uint64_t compact = 0;  // of the delta and final records, compact updates (protocol 7)
  uint64_t placed = 0;   // of those, updates naming their place at the peer (protocol 8)
  uint64_t entries_installed = 0, entries_stale = 0;
  uint64_t final_seq_moved = 0;  // TCP entries whose seq/ack moved after they were last sent
  uint32_t rounds = 0;
  uint32_t resumes = 0;  // dropped connections this migration came back from (RESUME)
  uint64_t bytes_sent = 0, frames_sent = 0;
  uint64_t held_packets = 0, forwarded_packets = 0, lost_packets = 0;
  // The VM's lifetime traffic that travelled (VM_COUNTERS, version 6), both directions; the
  // source sends it to the peers that speak version 6, a destination applies it on activation.
  bool traffic_carried = false;
  VmTraffic traffic;
  double prepare_ms = 0, precopy_ms = 0, final_delta_ms = 0, activation_ms = 0;
  double freeze_ms = 0;        // pause signal to activation confirmed by the peer(s)
  double baton_freeze_ms = 0;  // the part of it Baton spent (final delta + activation)
  nlohmann::json to_json() const;
  std::string summary() const;  // one log line
};

class MigrationEngine {
 public:
  explicit MigrationEngine(Dataplane& dp);
  ~MigrationEngine();

  // Loads TLS material and listens for peers (when configured). Without migration config the
  // engine still answers the API, refusing prepare with a clear error.
  bool start(std::string* err);
  void stop();

  void register_routes(control::HttpApi& api);
  void collect(std::vector<prometheus::MetricFamily>& out);

  // The signals. Each returns an HTTP status and a JSON body.
  std::pair<int, nlohmann::json> prepare(const std::string& vm,
                                         const std::vector<std::string>& peers,
                                         MigrationMode mode);
  std::pair<int, nlohmann::json> signal(const std::string& vm, const std::string& what);
  std::pair<int, nlohmann::json> status(const std::string& vm);
  nlohmann::json list();

 private:
  struct OutSession;
  struct InSession;
  void run_out(OutSession& s);
  // An accepted connection: its first frame says whether it starts or resumes a migration.
  void serve(std::unique_ptr<migrate::PeerLink> link);
  void run_in(std::unique_ptr<migrate::PeerLink> link, migrate::Frame hello);
  void hand_back(std::unique_ptr<migrate::PeerLink> link, const migrate::Frame& resume);
  void accept_loop();
  void finish(const MigrationReport& r);

  Dataplane& dp_;
  std::unique_ptr<migrate::TlsContext> server_ctx_, client_ctx_;
  std::unique_ptr<migrate::PeerListener> listener_;
  std::thread accept_thread_;
  std::atomic<bool> running_{false};

  std::mutex mu_;  // sessions_, in_threads_, history_, counters below
  std::map<std::string, std::shared_ptr<OutSession>> sessions_;  // by VM name, source side
  std::map<uint64_t, std::shared_ptr<InSession>> in_sessions_;  // by serial, after ACCEPT
  uint64_t in_serial_ = 0;
  std::vector<std::thread> threads_;
  std::vector<MigrationReport> history_;  // finished, newest last (bounded)
  std::map<std::string, uint64_t> results_;  // "source/SUCCESS" -> count
  uint64_t bytes_sent_total_ = 0, entries_sent_total_ = 0, held_total_ = 0, lost_total_ = 0;
  std::vector<double> freeze_samples_ms_;   // for the histogram
  std::vector<double> baton_freeze_samples_ms_;
  std::atomic<uint64_t> next_id_{1};
};

}  // namespace baton
