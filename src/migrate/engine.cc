// SPDX-License-Identifier: Apache-2.0
#include "migrate/engine.h"

#include <rte_mbuf.h>
#include <unistd.h>

#include <chrono>
#include <cstring>
#include <deque>
#include <optional>

#include "common/log.h"
#include "conntrack/conn_table.h"
#include "control/http_api.h"
#include "control/metrics.h"
#include "dataplane/dataplane.h"
#include "migrate/codec.h"
#include "migrate/negotiation.h"
#include "migrate/peer_link.h"
#include "migrate/vm_state_io.h"

namespace baton {

using migrate::Error;
using migrate::FailReason;
using migrate::Frame;
using migrate::LinkError;
using migrate::MsgKind;
using migrate::PeerLink;
using nlohmann::json;

namespace {

using Clock = std::chrono::steady_clock;
double ms_since(Clock::time_point t) {
  return std::chrono::duration<double, std::milli>(Clock::now() - t).count();
}

constexpr int kRoundIntervalMs = 100;   // pre-copy delta cadence
constexpr int kLingerMs = 1000;         // after SUCCESS, late packets still go to the peer
constexpr size_t kHeldPerFrame = 256;
constexpr size_t kHistory = 64;
constexpr int kInDoubtRetryMs = 5000;  // an activation left in doubt: how often to ask again

// A failure with its reason, thrown inside a session thread and turned into FAIL(reason).
struct SessionFail {
  FailReason reason;
  std::string detail;
  // The peer said it holds nothing of the migration: its FAIL or ABORT on the stream (it rolls
  // back), or ABORT as the answer to RESUME (it rolled back). After ACTIVATE only such a
  // failure lets the source roll back; any other leaves the peer's outcome unknown.
  bool peer_rolled_back = false;
};

[[noreturn]] void fail(FailReason r, std::string detail) { throw SessionFail{r, std::move(detail)}; }

FailReason link_reason(const Error& e) { return migrate::to_fail_reason(e); }

// A transport error that a new connection can cure: the peer reset or closed it, or the byte
// stream went out of step. AUTH and TIMEOUT are not: a reconnect would meet them again.
bool is_drop(const Error& e) {
  return e.code == LinkError::kTransfer || e.code == LinkError::kProtocol;
}

int ms_until(Clock::time_point t) {
  return static_cast<int>(
      std::max<int64_t>(0, std::chrono::duration_cast<std::chrono::milliseconds>(t - Clock::now())
                               .count()));
}

constexpr int kRedialFirstMs = 20;   // first pause between reconnect attempts, then doubled
constexpr int kRedialMaxMs = 500;

// A FAIL or ABORT from the peer ends the session with the peer's reason. On the stream both
// mean the peer rolls back; as the answer to RESUME only ABORT does (FAIL: it cannot resume,
// perhaps because it knows nothing of the migration).
void throw_if_refused(const Frame& f, const std::string& name, bool answers_resume = false) {
  if (f.header.kind == MsgKind::kFail) {
    migrate::FailMsg m;
    migrate::decode_body(f, &m);
    throw SessionFail{m.reason, name + ": " + m.detail, !answers_resume};
  }
  if (f.header.kind == MsgKind::kAbort) {
    migrate::AbortMsg m;
    migrate::decode_body(f, &m);
    throw SessionFail{m.reason, name + " aborted: " + m.detail, true};
  }
}

// What a source needs to come back to a peer after the link dropped (docs/WIRE.md, "Sequence,
// ACK and resume").
struct Redial {
  migrate::TlsContext* ctx = nullptr;
  std::string address;
  std::string identity;  // the peer certificate's CN at the first connect; a new link must match
  int budget_ms = 0;     // how long reconnecting may take: the migration's timeout
  size_t window = 0;     // unacknowledged bytes kept for resending (resume_window_bytes)
};

// One peer connection with its sequence numbers. On a destination, and on a source until the
// peer accepted the migration, a transport error ends the session. After ACCEPT a source's link
// is resumable: it keeps every frame the peer has not acknowledged (at most a window of bytes;
// beyond it, it waits for ACKs), and when the connection drops it reconnects, sends RESUME and
// resends what the peer has not applied, all inside send()/recv(): the state machine above
// never sees a drop that was cured.
struct Link {
  std::string name;
  std::unique_ptr<PeerLink> link;
  uint64_t seq = 0;
  uint64_t bytes = 0, frames = 0;
  // The protocol version negotiated with this peer (HELLO): every later frame carries it, so a
  // peer that speaks only older versions can still read us.
  uint16_t version = migrate::kProtocolVersionMax;

  // ---- resume (source, after ACCEPT) ----
  bool resumable = false;
  uint64_t mid = 0;
  Redial redial;
  uint64_t acked = 0;  // every frame up to this seq is applied at the peer
  std::deque<std::pair<uint64_t, std::vector<uint8_t>>> unacked;  // seq order, all > acked
  size_t unacked_bytes = 0;
  std::deque<Frame> inbox;  // frames read while looking for ACKs, for the next recv()
  // A source's: where the peer placed a round's entry records (PLACED, version 8), taken in
  // wherever frames are read; unset, they are dropped.
  std::function<void(const migrate::PlacedMsg&)> on_placed;
  uint32_t resumes = 0;
  // From ACTIVATE on, a silent connection is resumed like a dropped one: waiting longer on it
  // cannot tell whether the peer activated, a new connection can (docs/WIRE.md, "Cut around
  // activation").
  bool silence_is_drop = false;
  // The peer answered RESUME with ACTIVATED: it activated the VM and holds no session any more,
  // so nothing sent from now on can reach it.
  bool ended = false;

  // From here on a drop is cured by resuming. ACCEPT answered PREPARE: all sent so far is acked.
  void enable_resume(uint64_t migration_id, Redial r) {
    resumable = true;
    mid = migration_id;
    redial = std::move(r);
    acked = seq;
  }

  template <typename Msg>
  void send(const Msg& m, uint64_t mid_, int timeout_ms) {
    auto f = migrate::encode_frame(
        m, mid_, ++seq, Msg::kKind == MsgKind::kHello ? migrate::kProtocolVersionMin : version);
    transmit(f.data(), f.size(), timeout_ms);
  }
  // An already encoded frame (an ENTRIES frame built by VmReader), numbered for this link.
  void send_encoded(uint8_t* frame, size_t len, int timeout_ms) {
    migrate::set_frame_seq(frame, ++seq);
    transmit(frame, len, timeout_ms);
  }
  // Into *f, whose body keeps its capacity from frame to frame.
  void recv(Frame* f, int timeout_ms) {
    if (!inbox.empty()) {
      *f = std::move(inbox.front());
      inbox.pop_front();
      return;
    }
    for (;;) {
      Error e = link->recv(f, timeout_ms);
      if (e.code == LinkError::kNone) return;
      on_error(e, "from ");
    }
  }
  Frame recv(int timeout_ms) {
    Frame f;
    recv(&f, timeout_ms);
    return f;
  }
  // Receives a frame of kind Msg; a FAIL or ABORT from the peer ends the session with its reason.
  // ACKs met on the way are taken in (the peer acknowledges every frame).
  template <typename Msg>
  Msg expect(int timeout_ms) {
    Frame f;
    do recv(&f, timeout_ms);
    while (take_placed(f) || (Msg::kKind != MsgKind::kAck && absorb(f)));
    throw_if_refused(f, name);
    Msg m;
    migrate::CodecError ce = migrate::decode_body(f, &m);
    if (ce != migrate::CodecError::kOk)
      fail(FailReason::kTransfer, name + ": expected " + migrate::msg_kind_name(Msg::kKind) +
                                      ", got " + migrate::msg_kind_name(f.header.kind) + " (" +
                                      migrate::codec_error_name(ce) + ")");
    if constexpr (Msg::kKind == MsgKind::kAck) note_ack(m.acked_seq);
    return m;
  }
  // Waits until the peer has applied every frame up to `target`.
  void await_ack(uint64_t target, int timeout_ms) {
    while (acked < target) expect<migrate::AckMsg>(timeout_ms);
  }
  // Comes back to the peer on a fresh connection now (a retry of an activation left in doubt):
  // RESUME, then what it has not applied, within the budget; throws as resume() does.
  void reconnect() {
    if (!ended) resume(Error{LinkError::kTransfer, "retry after the activation was left in doubt"});
  }
  // The migration's last frame, best effort: the peer may close the connection as soon as it
  // has it, which is no drop to resume from (and the peer needs nothing more).
  template <typename Msg>
  void send_last(const Msg& m, uint64_t mid_, int timeout_ms) {
    if (ended) return;
    resumable = false;
    auto f = migrate::encode_frame(m, mid_, ++seq, version);
    bytes += f.size();
    frames++;
    link->send(f, timeout_ms);
  }
  // Whether the frame numbered `seq` left for the peer: acknowledged, or kept for resending.
  bool handed_over(uint64_t s) const {
    return acked >= s || (!unacked.empty() && unacked.back().first >= s);
  }

 private:
  void transmit(const uint8_t* p, size_t n, int timeout_ms) {
    if (ended) fail(FailReason::kTransfer, name + " ended the migration after activating the VM");
    if (resumable) keep(p, n, timeout_ms);
    bytes += n;
    frames++;
    if (!link->send(p, n, timeout_ms)) on_error(link->last_error(), "send to ");  // resends p
    if (resumable) drain_acks();
  }
  // Keeps a copy of the frame being sent until it is acknowledged. Beyond the window the
  // sender first waits for ACKs: that bounds the copies and is the stream's flow control.
  void keep(const uint8_t* p, size_t n, int timeout_ms) {
    while (!unacked.empty() && unacked_bytes + n > redial.window) {
      Frame f;
      recv(&f, timeout_ms);
      if (!absorb(f)) inbox.push_back(std::move(f));
    }
    unacked.emplace_back(seq, std::vector<uint8_t>(p, p + n));
    unacked_bytes += n;
  }
  // Takes in the ACKs that have arrived, without waiting.
  void drain_acks() {
    Frame f;
    for (;;) {
      Error e = link->recv(&f, 0);
      if (e.code == LinkError::kTimeout) return;
      if (e.code != LinkError::kNone) return on_error(e, "from ");
      if (!absorb(f)) inbox.push_back(std::move(f));
    }
  }
  // An ACK is consumed here (true); a FAIL or ABORT ends the session; anything else is the
  // caller's.
  bool absorb(const Frame& f) {
    if (take_placed(f)) return true;
    throw_if_refused(f, name);
    migrate::AckMsg a;
    if (migrate::decode_body(f, &a) != migrate::CodecError::kOk) return false;
    note_ack(a.acked_seq);
    return true;
  }
  // A PLACED is consumed here (true); a malformed one ends the session.
  bool take_placed(const Frame& f) {
    if (f.header.kind != MsgKind::kPlaced) return false;
    migrate::PlacedMsg m;
    if (version < migrate::kProtocolVersionPlaced ||
        migrate::decode_body(f, &m) != migrate::CodecError::kOk)
      fail(FailReason::kTransfer, name + ": bad PLACED");
    if (on_placed) on_placed(m);
    return true;
  }
  void note_ack(uint64_t n) {
    if (n > seq)
      fail(FailReason::kTransfer, name + " acknowledged seq " + std::to_string(n) +
                                      ", beyond the " + std::to_string(seq) + " sent");
    acked = std::max(acked, n);
    while (!unacked.empty() && unacked.front().first <= acked) {
      unacked_bytes -= unacked.front().second.size();
      unacked.pop_front();
    }
  }
  // A transport error a new connection can cure (see is_drop and silence_is_drop).
  bool curable(const Error& e) const {
    return is_drop(e) || (silence_is_drop && e.code == LinkError::kTimeout);
  }
  // A failed send or recv: resume when that can cure it, otherwise end the session.
  void on_error(const Error& e, const char* dir) {
    if (!resumable || ended || !curable(e))
      fail(link_reason(e), std::string(dir) + name + ": " + migrate::link_error_name(e.code) +
                               (e.detail.empty() ? "" : " (" + e.detail + ")"));
    resume(e);
  }
  // The connection dropped: reconnect (mutual TLS again, the same peer identity) with backoff
  // within the budget, RESUME, resend what the peer has not applied. Throws TRANSFER when the
  // budget runs out, the peer's reason when it refuses (TRANSFER: it no longer holds the
  // migration; AUTH: we are not who started it).
  void resume(const Error& why) {
    const auto deadline = Clock::now() + std::chrono::milliseconds(redial.budget_ms);
    std::string last = why.detail;
    int pause_ms = kRedialFirstMs;
    for (;;) {
      link->close();
      const int left = ms_until(deadline);
      if (left <= 0)
        fail(FailReason::kTransfer, "link to " + name + " dropped (" + why.detail +
                                        ") and did not resume within " +
                                        std::to_string(redial.budget_ms) + " ms: " + last);
      Error e;
      auto fresh = PeerLink::connect(*redial.ctx, redial.address, left, &e);
      if (!fresh && e.code == LinkError::kAuth)
        fail(FailReason::kAuth, "reconnect to " + name + ": " + e.detail);
      if (fresh && fresh->peer_name() != redial.identity)
        fail(FailReason::kAuth, name + " came back as '" + fresh->peer_name() + "', not '" +
                                    redial.identity + "'");
      if (fresh) {
        link = std::move(fresh);
        if (rejoin(std::min(left, redial.budget_ms), &e)) {
          resumes++;
          BLOG_INFO("migrate", "migration %lu: link to %s resumed at seq %lu (sent %lu)", mid,
                    name.c_str(), acked, seq);
          return;
        }
      }
      last = e.detail;
      usleep(static_cast<useconds_t>(std::min(pause_ms, ms_until(deadline))) * 1000);
      pause_ms = std::min(pause_ms * 2, kRedialMaxMs);
    }
  }
  // RESUME on a fresh connection; the peer answers ACK(the last seq it applied) and we resend
  // what follows. false: this connection dropped too (*e says why), try another. A peer that
  // no longer holds the migration answers ACTIVATED (it activated the VM: the answer is the
  // caller's to read, nothing more is sent), ABORT (it rolled back) or FAIL.
  bool rejoin(int timeout_ms, Error* e) {
    auto f = migrate::encode_frame(migrate::ResumeMsg{acked, seq}, mid, 0, version);
    Frame answer;
    if (link->send(f, timeout_ms)) *e = link->recv(&answer, timeout_ms);
    else *e = link->last_error();
    if (e->code != LinkError::kNone) {
      if (curable(*e)) return false;
      fail(link_reason(*e), "resume with " + name + ": " + e->detail);
    }
    throw_if_refused(answer, name + " refused to resume", /*answers_resume=*/true);
    if (answer.header.kind == MsgKind::kActivated) {
      ended = true;
      unacked.clear();
      unacked_bytes = 0;
      inbox.push_back(std::move(answer));
      return true;
    }
    migrate::AckMsg a;
    if (migrate::decode_body(answer, &a) != migrate::CodecError::kOk)
      fail(FailReason::kTransfer, name + " answered RESUME with " +
                                      migrate::msg_kind_name(answer.header.kind));
    if (a.acked_seq < acked)
      fail(FailReason::kTransfer, name + " resumed at seq " + std::to_string(a.acked_seq) +
                                      ", behind its own ACK of " + std::to_string(acked));
    note_ack(a.acked_seq);
    for (auto& [s, frame] : unacked) {
      if (link->send(frame, timeout_ms)) continue;
      *e = link->last_error();
      if (curable(*e)) return false;
      fail(link_reason(*e), "resend to " + name + ": " + e->detail);
    }
    return true;
  }
};

// Where VmReader puts a round's frames: on every link as soon as each is full, so that the
// peers install frame k while frame k+1 is read.
migrate::VmReader::FrameOut to_links(std::vector<Link>& links, uint64_t mid, uint32_t round,
                                     int timeout_ms) {
  migrate::VmReader::FrameOut out;
  out.migration_id = mid;
  out.round = round;
  for (const Link& l : links) out.version = std::min(out.version, l.version);  // one frame for all
  out.emit = [&links, timeout_ms](uint8_t* frame, size_t len, uint32_t) {
    for (Link& l : links) l.send_encoded(frame, len, timeout_ms);
  };
  return out;
}

// Waits for the ACK of everything sent so far on every link.
void await_acks(std::vector<Link>& links, int timeout_ms) {
  for (Link& l : links) l.await_ack(l.seq, timeout_ms);
}

// What became of one peer after ACTIVATE (docs/WIRE.md, "Cut around activation").
enum class Outcome : uint8_t { kActive, kRolledBack, kUnknown };
struct Activation {
  Outcome outcome = Outcome::kUnknown;
  FailReason reason = FailReason::kNone;  // unless kActive: why
  std::string detail;
  uint64_t installed = 0;  // kActive: the entries the peer made active
};

// A failure while activating over `l`: the peer rolled back if it said so, or if ACTIVATE
// (frame `activate_seq`) never left here; otherwise nobody here knows whether it activated.
Activation settle(const Link& l, uint64_t activate_seq, const SessionFail& f) {
  const bool known = f.peer_rolled_back || !l.handed_over(activate_seq);
  return {known ? Outcome::kRolledBack : Outcome::kUnknown, f.reason, f.detail};
}

// Waits for the peer's ACTIVATED; with `retry`, comes back to it on a new connection first.
Activation await_activated(Link& l, uint64_t activate_seq, int timeout_ms, bool retry) {
  try {
    if (retry) l.reconnect();
    migrate::ActivatedMsg a = l.expect<migrate::ActivatedMsg>(timeout_ms);
    Activation r{Outcome::kActive};
    for (auto& kc : a.installed) r.installed += kc.count;
    return r;
  } catch (const SessionFail& f) {
    return settle(l, activate_seq, f);
  }
}

// Which side of the box a parked packet came in on: in L2 mode the first port faces the
// network and the second the hosts (docs/CONFIG.md).
migrate::Side side_of(Dataplane& dp, const rte_mbuf* m) {
  return dp.port_index(m->port) == 1 ? migrate::Side::kVm : migrate::Side::kNetwork;
}

std::vector<rte_mbuf*> drain_hold(VmSlot& vs) {
  std::vector<rte_mbuf*> out;
  if (!vs.hold) return out;
  void* p;
  while (rte_ring_sc_dequeue(vs.hold, &p) == 0) out.push_back(static_cast<rte_mbuf*>(p));
  return out;
}

// Re-injects packets into the pipeline in order (worker 0 hands them to their owners).
uint64_t reinject(Dataplane& dp, const std::vector<rte_mbuf*>& pkts) {
  uint64_t lost = 0;
  Worker& w0 = *dp.workers()[0];
  for (rte_mbuf* m : pkts) {
    int tries = 0;
    while (!w0.inject(m) && ++tries < 1000) usleep(100);
    if (tries >= 1000) {
      rte_pktmbuf_free(m);
      lost++;
    }
  }
  return lost;
}

std::vector<migrate::KindCount> conn_counts(uint64_t n) {
  return {migrate::KindCount{static_cast<uint8_t>(migrate::StateKind::kConn), n}};
}

}  // namespace

const char* migration_phase_name(MigrationPhase p) {
  switch (p) {
    case MigrationPhase::kPreparing: return "preparing";
    case MigrationPhase::kPrecopy: return "precopy";
    case MigrationPhase::kFrozen: return "frozen";
    case MigrationPhase::kActivating: return "activating";
    case MigrationPhase::kSucceeded: return "succeeded";
    case MigrationPhase::kFailed: return "failed";
  }
  return "?";
}

json MigrationReport::to_json() const {
  bool done = phase == MigrationPhase::kSucceeded || phase == MigrationPhase::kFailed;
  return {{"id", id},
          {"vm", vm},
          {"role", role},
          {"peers", peers},
          {"mode", mode},
          {"phase", migration_phase_name(phase)},
          {"result", !done ? "RUNNING" : migrate::fail_reason_name(reason)},
          {"reason", reason == FailReason::kNone ? "" : migrate::fail_reason_name(reason)},
          {"retry_may_help", migrate::retry_may_help(reason)},
          {"detail", detail},
          {"entries", {{"snapshot", entries_snapshot}, {"delta", entries_delta},
                       {"final", entries_final}, {"tombstones", tombstones},
                       {"compact", compact}, {"placed", placed},
                       {"installed", entries_installed}, {"stale", entries_stale}}},
          {"final_seq_moved", final_seq_moved},
          {"rounds", rounds},
          {"resumes", resumes},
          {"bytes_sent", bytes_sent},
          {"frames_sent", frames_sent},
          {"packets", {{"held", held_packets}, {"forwarded", forwarded_packets},
                       {"lost", lost_packets}}},
          {"vm_traffic", {{"carried", traffic_carried}, {"packets", traffic.total_packets()},
                          {"bytes", traffic.total_bytes()}}},
          {"ms", {{"prepare", prepare_ms}, {"precopy", precopy_ms},
                  {"final_delta", final_delta_ms}, {"activation", activation_ms},
                  {"freeze", freeze_ms}, {"baton_freeze", baton_freeze_ms}}}};
}

std::string MigrationReport::summary() const {
  char buf[768];
  std::snprintf(buf, sizeof buf,
                "migration %lu vm=%s role=%s result=%s%s%s entries snapshot=%lu delta=%lu "
                "final=%lu installed=%lu rounds=%u bytes=%lu freeze_ms=%.2f baton_ms=%.2f "
                "held=%lu forwarded=%lu lost=%lu seq_moved_in_final=%lu vm_traffic_bytes=%s",
                id, vm.c_str(), role.c_str(), migrate::fail_reason_name(reason),
                detail.empty() ? "" : " detail=", detail.c_str(), entries_snapshot, entries_delta,
                entries_final, entries_installed, rounds, bytes_sent, freeze_ms, baton_freeze_ms,
                held_packets, forwarded_packets, lost_packets, final_seq_moved,
                traffic_carried ? std::to_string(traffic.total_bytes()).c_str() : "not_carried");
  return buf;
}

// ---- source side ------------------------------------------------------------------------------

struct MigrationEngine::OutSession {
  MigrationReport report;
  uint16_t vm = 0;
  MigrationMode mode = MigrationMode::kFull;
  std::mutex mu;
  std::condition_variable cv;
  std::string signal;  // "", "pause", "resume", "abort"
  Clock::time_point pause_at{};
  // ACTIVATE went out and no peer's answer came back (docs/WIRE.md, "Cut around activation"):
  // the report says FAIL(TRANSFER), the VM stays frozen here, and the session waits on.
  bool in_doubt = false;

  // Waits for a signal until timeout; returns it (consumed) or "".
  std::string wait_signal(int timeout_ms) {
    std::unique_lock<std::mutex> lock(mu);
    cv.wait_for(lock, std::chrono::milliseconds(timeout_ms), [&] { return !signal.empty(); });
    std::string s;
    std::swap(s, signal);
    return s;
  }
  MigrationReport snapshot() {
    std::lock_guard<std::mutex> lock(mu);
    return report;
  }
  void set_phase(MigrationPhase p) {
    std::lock_guard<std::mutex> lock(mu);
    report.phase = p;
  }
  // A new attempt at an activation left in doubt, asked by `sig` (resume or abort; "" for the
  // session's own timer). false: it was not in doubt.
  bool leave_doubt(const std::string& sig) {
    std::lock_guard<std::mutex> lock(mu);
    if (!in_doubt) return false;
    in_doubt = false;
    report.phase = MigrationPhase::kActivating;
    report.reason = FailReason::kNone;
    report.detail.clear();
    if (!sig.empty()) signal = sig;
    return true;
  }
};

// A migration as the destination holds it across connections. Its thread owns everything
// (pending entries, parked packets, the loop's state) and reads the source's frames through
// recv(), which delivers each seq exactly once and in order. When the connection drops after
// ACCEPT the thread parks in recv() for the grace period instead of failing: the accept side
// hands a connection that came back with RESUME (same migration id, same certificate identity)
// to the mailbox below, and the thread goes on with it where it stopped.
struct MigrationEngine::InSession {
  uint64_t mid = 0;
  std::string peer;  // the source certificate's CN
  int grace_ms = 0;
  int timeout_ms = 0;

  // The session thread's own.
  Link* link = nullptr;
  uint64_t applied = 0;  // the last seq applied, and acknowledged
  std::optional<migrate::ActivatedMsg> activated;  // repeated after a resume: it may be lost
  uint32_t resumes = 0;

  // The mailbox, shared with the accept side under mu.
  std::mutex mu;
  std::condition_variable cv;
  std::unique_ptr<PeerLink> returned;  // a connection that came back, not yet taken
  migrate::ResumeMsg resume;           // what the source said on it
  bool stopping = false;

  // Accept side: a RESUME for this migration arrived on `fresh`. If the thread still waits on
  // the old connection (it went silent, no reset reached us), shut that down so it notices.
  void offer(std::unique_ptr<PeerLink> fresh, const migrate::ResumeMsg& r) {
    std::lock_guard<std::mutex> lock(mu);
    returned = std::move(fresh);
    resume = r;
    if (link && link->link) link->link->interrupt();
    cv.notify_all();
  }

  // The next frame of the stream; a frame resent after a resume that was applied already is
  // skipped, a gap is a broken stream (treated as a drop).
  void recv(Frame* f, int timeout_ms) {
    for (;;) {
      Error e = link->link->recv(f, timeout_ms);
      if (e.code == LinkError::kNone) {
        if (f->header.seq <= applied) continue;
        if (f->header.seq == applied + 1) return;
        e = Error{LinkError::kProtocol, "seq " + std::to_string(f->header.seq) + " after " +
                                            std::to_string(applied)};
        link->link->close();
      }
      if (!is_drop(e) || grace_ms == 0)
        fail(link_reason(e), "from " + link->name + ": " + migrate::link_error_name(e.code) +
                                 (e.detail.empty() ? "" : " (" + e.detail + ")"));
      park(e);
    }
  }

  // The frame `seq` is applied: acknowledge it. A failed send closes the link, and the next
  // recv() parks; the resumed source then hears ACK(applied) anyway.
  void ack(uint64_t seq) {
    applied = seq;
    send_or_close(migrate::AckMsg{seq});
  }
  // Where the round's entry records went (version 8), just before the round's ACK: a lost
  // one only means the source's updates keep naming fingerprints.
  void placed(const migrate::PlacedMsg& m) { send_or_close(m); }
  void answer_activate(const migrate::ActivatedMsg& am) {
    activated = am;
    send_or_close(am);
  }

 private:
  template <typename Msg>
  void send_or_close(const Msg& m) {
    auto f = migrate::encode_frame(m, mid, ++link->seq, link->version);
    if (!link->link->send(f, timeout_ms)) {
      link->link->close();
      return;
    }
    link->bytes += f.size();
    link->frames++;
  }

  // Waits for the source to come back. Everything stays as it was: the pending entries, the
  // VM's parked packets (the hold ring bounds them), the frames applied so far.
  void park(const Error& why) {
    std::unique_ptr<PeerLink> old;
    migrate::ResumeMsg r;
    {
      std::unique_lock<std::mutex> lock(mu);
      cv.wait_for(lock, std::chrono::milliseconds(grace_ms), [&] { return returned || stopping; });
      if (stopping) fail(FailReason::kAborted, "daemon stopping");
      if (!returned)
        fail(FailReason::kTransfer, "link from " + link->name + " dropped (" + why.detail +
                                        ") and the source did not resume within " +
                                        std::to_string(grace_ms) + " ms");
      old = std::move(link->link);
      link->link = std::move(returned);  // under mu: offer() may interrupt the current link
      r = resume;
    }
    old.reset();
    if (r.acked_seq > applied || r.sent_seq < applied) {
      const std::string why_not = "source resumed at acked " + std::to_string(r.acked_seq) +
                                  ", sent " + std::to_string(r.sent_seq) + "; applied here " +
                                  std::to_string(applied);
      send_or_close(migrate::FailMsg{FailReason::kTransfer, why_not});
      fail(FailReason::kTransfer, why_not);
    }
    resumes++;
    BLOG_INFO("migrate", "migration %lu from %s resumed at seq %lu (source sent %lu)", mid,
              link->name.c_str(), applied, r.sent_seq);
    ack(applied);
    if (activated) send_or_close(*activated);
  }
};

MigrationEngine::MigrationEngine(Dataplane& dp) : dp_(dp) {}
MigrationEngine::~MigrationEngine() { stop(); }

bool MigrationEngine::start(std::string* err) {
  const MigrationConfig& mc = dp_.config().migration;
  running_ = true;
  if (!mc.enabled || mc.cert.empty()) return true;
  server_ctx_ = migrate::TlsContext::create(migrate::TlsContext::Role::kServer, mc.cert, mc.key,
                                           mc.ca, err);
  if (!server_ctx_) return false;
  client_ctx_ = migrate::TlsContext::create(migrate::TlsContext::Role::kClient, mc.cert, mc.key,
                                           mc.ca, err);
  if (!client_ctx_) return false;
  if (!mc.listen.empty()) {
    Error e;
    listener_ = migrate::PeerListener::listen(*server_ctx_, mc.listen, &e);
    if (!listener_) {
      *err = "migration listener on " + mc.listen + ": " + e.detail;
      return false;
    }
    accept_thread_ = std::thread([this] { accept_loop(); });
    BLOG_INFO("migrate", "listening for peers on %s", mc.listen.c_str());
  }
  return true;
}

void MigrationEngine::stop() {
  if (!running_.exchange(false)) return;
  {
    std::lock_guard<std::mutex> lock(mu_);
    for (auto& [name, s] : sessions_) {
      std::lock_guard<std::mutex> l(s->mu);
      s->signal = "abort";
      s->cv.notify_all();
    }
  }
  {
    std::lock_guard<std::mutex> lock(mu_);
    for (auto& [serial, in] : in_sessions_) {  // parked ones stop waiting for a RESUME
      std::lock_guard<std::mutex> l(in->mu);
      in->stopping = true;
      in->cv.notify_all();
    }
  }
  if (accept_thread_.joinable()) accept_thread_.join();
  std::vector<std::thread> ts;
  {
    std::lock_guard<std::mutex> lock(mu_);
    ts.swap(threads_);
  }
  for (auto& t : ts)
    if (t.joinable()) t.join();
}

std::pair<int, json> MigrationEngine::prepare(const std::string& vm,
                                              const std::vector<std::string>& peers,
                                              MigrationMode mode) {
  const MigrationConfig& mc = dp_.config().migration;
  if (!client_ctx_) return {503, {{"error", "migration is not configured (migration.cert/key/ca)"}}};
  if (peers.empty()) return {400, {{"error", "name at least one peer"}}};
  for (const std::string& p : peers) {
    bool known = false;
    for (const PeerConfig& pc : mc.peers) known |= pc.name == p;
    if (!known) return {400, {{"error", "unknown peer '" + p + "'"}}};
  }
  uint16_t id;
  {
    std::lock_guard<std::mutex> lock(dp_.vms().control_mutex());
    auto found = dp_.vms().find_by_name(vm);
    if (!found) return {404, {{"error", "no VM named '" + vm + "'"}}};
    id = *found;
    if (dp_.vms().slot(id).state.load() != VmState::kLocal)
      return {409, {{"error", "VM '" + vm + "' is " +
                                  vm_state_name(dp_.vms().slot(id).state.load())}}};
  }
  auto s = std::make_shared<OutSession>();
  s->vm = id;
  s->mode = mode;
  s->report.id = next_id_++;
  s->report.vm = vm;
  s->report.role = "source";
  s->report.peers = peers;
  s->report.mode = mode == MigrationMode::kFull ? "full" : "snapshot-only";
  {
    std::lock_guard<std::mutex> lock(mu_);
    auto it = sessions_.find(vm);
    if (it != sessions_.end()) {
      MigrationPhase p = it->second->snapshot().phase;
      if (p != MigrationPhase::kSucceeded && p != MigrationPhase::kFailed)
        return {409, {{"error", "a migration of '" + vm + "' is already running"}}};
    }
    sessions_[vm] = s;
    threads_.emplace_back([this, s] { run_out(*s); });
  }
  return {202, s->report.to_json()};
}

std::pair<int, json> MigrationEngine::signal(const std::string& vm, const std::string& what) {
  std::shared_ptr<OutSession> s;
  {
    std::lock_guard<std::mutex> lock(mu_);
    auto it = sessions_.find(vm);
    if (it == sessions_.end()) return {404, {{"error", "no migration of '" + vm + "'"}}};
    s = it->second;
  }
  MigrationReport r = s->snapshot();
  // An activation left in doubt takes resume (ask the peer again now) and abort (take the VM
  // back here); the answer is the outcome of that attempt.
  const bool in_doubt = (what == "resume" || what == "abort") && s->leave_doubt(what);
  if (!in_doubt) {
    if (r.phase == MigrationPhase::kSucceeded || r.phase == MigrationPhase::kFailed)
      return {409, {{"error", "migration of '" + vm + "' has ended"}, {"report", r.to_json()}}};
    if (what == "pause" && r.phase != MigrationPhase::kPrecopy && r.phase != MigrationPhase::kPreparing)
      return {409, {{"error", std::string("cannot pause in phase ") + migration_phase_name(r.phase)}}};
    if (what == "resume" && r.phase != MigrationPhase::kFrozen && r.phase != MigrationPhase::kPrecopy &&
        r.phase != MigrationPhase::kPreparing)
      return {409, {{"error", std::string("cannot resume in phase ") + migration_phase_name(r.phase)}}};
    std::lock_guard<std::mutex> lock(s->mu);
    if (what == "pause") s->pause_at = Clock::now();
    s->signal = what;
  }
  s->cv.notify_all();
  // pause and resume answer when the step is done, so a hypervisor hook can block on them.
  const int timeout = static_cast<int>(dp_.config().migration.timeout_ms) * 3;
  auto t0 = Clock::now();
  while (ms_since(t0) < timeout) {
    r = s->snapshot();
    bool done = r.phase == MigrationPhase::kSucceeded || r.phase == MigrationPhase::kFailed;
    if (done || (what == "pause" && r.phase == MigrationPhase::kFrozen)) break;
    if (what == "abort" && done) break;
    usleep(1000);
  }
  int code = r.phase == MigrationPhase::kFailed && what != "abort" ? 502 : 200;
  return {code, r.to_json()};
}

std::pair<int, json> MigrationEngine::status(const std::string& vm) {
  std::lock_guard<std::mutex> lock(mu_);
  auto it = sessions_.find(vm);
  if (it != sessions_.end()) return {200, it->second->snapshot().to_json()};
  for (auto h = history_.rbegin(); h != history_.rend(); ++h)
    if (h->vm == vm) return {200, h->to_json()};
  return {404, {{"error", "no migration of '" + vm + "'"}}};
}

json MigrationEngine::list() {
  std::lock_guard<std::mutex> lock(mu_);
  json out = json::array();
  for (auto& h : history_) out.push_back(h.to_json());
  for (auto& [name, s] : sessions_) {
    MigrationReport r = s->snapshot();
    if (r.phase != MigrationPhase::kSucceeded && r.phase != MigrationPhase::kFailed)
      out.push_back(r.to_json());
  }
  return out;
}

void MigrationEngine::finish(const MigrationReport& r) {
  if (r.reason == FailReason::kNone)
    BLOG_INFO("migrate", "%s", r.summary().c_str());
  else
    BLOG_WARN("migrate", "%s", r.summary().c_str());
  std::lock_guard<std::mutex> lock(mu_);
  history_.push_back(r);
  if (history_.size() > kHistory) history_.erase(history_.begin());
  results_[r.role + "/" + migrate::fail_reason_name(r.reason)]++;
  bytes_sent_total_ += r.bytes_sent;
  entries_sent_total_ += r.entries_snapshot + r.entries_delta + r.entries_final;
  held_total_ += r.held_packets;
  lost_total_ += r.lost_packets;
  if (r.role == "source" && r.reason == FailReason::kNone) {
    freeze_samples_ms_.push_back(r.freeze_ms);
    baton_freeze_samples_ms_.push_back(r.baton_freeze_ms);
  }
}

void MigrationEngine::run_out(OutSession& s) {
  const MigrationConfig& mc = dp_.config().migration;
  const int tmo = static_cast<int>(mc.timeout_ms);
  VmSlot& vs = dp_.vms().slot(s.vm);
  const uint64_t mid = s.report.id;
  std::vector<Link> links;
  std::vector<Redial> redials;  // per link, for after ACCEPT
  auto t_start = Clock::now();
  bool tracking = false;
  VmConfig vm_cfg;
  {
    std::lock_guard<std::mutex> lock(dp_.vms().control_mutex());
    vm_cfg = vs.config;
  }
  auto update = [&](auto&& fn) {
    std::lock_guard<std::mutex> lock(s.mu);
    fn(s.report);
  };
  auto count_links = [&](MigrationReport& r) {
    r.bytes_sent = r.frames_sent = r.resumes = 0;
    for (const Link& l : links) {
      r.bytes_sent += l.bytes;
      r.frames_sent += l.frames;
      r.resumes += l.resumes;
    }
  };
  // Parked packets shipped to the primary peer, kept here until it activates the VM: a
  // rollback forwards them here (the peer drops its copies when it rolls back).
  std::vector<rte_mbuf*> shipped;
  bool rolled_back = false;
  try {
    // ---- prepare: authenticate, negotiate, ask for capacity -------------------------------
    for (const std::string& p : s.report.peers) {
      std::string addr;
      for (const PeerConfig& pc : mc.peers)
        if (pc.name == p) addr = pc.address;
      Error e;
      auto link = PeerLink::connect(*client_ctx_, addr, tmo, &e);
      if (!link) fail(link_reason(e), "connect to " + p + " (" + addr + "): " + e.detail);
      redials.push_back(Redial{client_ctx_.get(), addr, link->peer_name(), tmo,
                               mc.resume_window_bytes});
      links.push_back(Link{p, std::move(link)});
    }
    const migrate::VmReader::KindTally tally = migrate::VmReader::tally(dp_, s.vm);
    for (Link& l : links) {
      migrate::HelloMsg h;
      h.instance = dp_.config().instance;
      auto f = migrate::encode_frame(h, mid, ++l.seq, migrate::kProtocolVersionMin);
      if (!l.link->send(f, tmo)) fail(link_reason(l.link->last_error()), "hello to " + l.name);
      migrate::HelloMsg peer = l.expect<migrate::HelloMsg>(tmo);
      auto v = migrate::negotiate_version(migrate::kProtocolVersionMin,
                                          migrate::kProtocolVersionMax, peer.version_min,
                                          peer.version_max);
      if (!v.ok) fail(FailReason::kUnsupported, l.name + " speaks no common protocol version");
      if (!(peer.kinds & migrate::kind_bit(migrate::StateKind::kConn)))
        fail(FailReason::kUnsupported, l.name + " cannot install connections");
      if (tally.carried_xlate && v.value < migrate::kProtocolVersionXlate)
        fail(FailReason::kUnsupported,
             l.name + " speaks no protocol version that carries translated connections");
      if (tally.carried_handoff && v.value < migrate::kProtocolVersionHandoff)
        fail(FailReason::kUnsupported,
             l.name + " speaks no protocol version that carries SNAT, hairpin or load-balanced "
                      "connections (" + std::to_string(tally.carried_handoff) + " here)");
      if (tally.carried_l7 && v.value < migrate::kProtocolVersionL7)
        fail(FailReason::kUnsupported,
             l.name + " speaks no protocol version that carries L7 spliced connections (" +
                 std::to_string(tally.carried_l7) + " here)");
      if (vm_cfg.profile.max_half_open && v.value < migrate::kProtocolVersionCumulative)
        fail(FailReason::kUnsupported,
             l.name + " speaks no protocol version that carries the profile's max_half_open");
      l.version = v.value;
      migrate::PrepareMsg pm;
      pm.protocol_version = v.value;
      pm.source_instance = dp_.config().instance;
      pm.vm = vm_cfg;
      if (vm_cfg.profile.nat_public_ip) pm.nat_family = Family::kV4;
      pm.counts = tally.counts;
      pm.needs = tally.needs;
      pm.conn_v6 = tally.conn_v6;
      l.send(pm, mid, tmo);
      l.expect<migrate::AcceptMsg>(tmo);
      // The peer holds the migration now (pending state it keeps across a drop): from here on
      // a dropped connection is resumed, not failed.
      l.enable_resume(mid, redials[&l - links.data()]);
    }
    update([&](MigrationReport& r) {
      r.prepare_ms = ms_since(t_start);
      r.phase = MigrationPhase::kPrecopy;
    });

    // ---- pre-copy: snapshot, then delta rounds until the pause signal ---------------------
    std::string err;
    {
      std::lock_guard<std::mutex> lock(dp_.vms().control_mutex());
      if (!dp_.vms().open_migration_rings(s.vm, dp_.worker_count(), mc.hold_packets,
                                          std::max<uint32_t>(4096, tally.counts[0].count * 2), &err))
        fail(FailReason::kResources, "local: " + err);
    }
    migrate::VmReader reader(dp_, s.vm, mid);  // the migration id seeds the fingerprints
    // One destination names its placements in our updates; for several, each would need its
    // own frames (1:n sends the same ones to all), and fingerprints serve them all.
    if (links.size() == 1)
      links[0].on_placed = [&reader](const migrate::PlacedMsg& m) { reader.apply_placed(m); };
    struct Unhook {  // the reader goes before the links (a rollback still reads from them)
      std::vector<Link>& links;
      ~Unhook() {
        for (Link& l : links) l.on_placed = nullptr;
      }
    } unhook{links};
    auto t_precopy = Clock::now();
    if (s.mode == MigrationMode::kFull) {
      if (!migrate::begin_epoch(dp_, s.vm, tmo))
        fail(FailReason::kTimeout, "local: workers did not clear the tracking marks");
      vs.state.store(VmState::kTracking, std::memory_order_seq_cst);
      tracking = true;
      dp_.grace_period();
    }
    migrate::VmReader::Counts snap = reader.snapshot(to_links(links, mid, 0, tmo));
    for (Link& l : links) l.send(migrate::RoundEndMsg{0, snap.records}, mid, tmo);
    await_acks(links, tmo);
    update([&](MigrationReport& r) {
      r.entries_snapshot = snap.records;
      r.rounds = 1;
    });
    uint32_t round = 1;
    std::string sig;
    for (;;) {
      sig = s.wait_signal(kRoundIntervalMs);
      if (sig == "abort") fail(FailReason::kAborted, "aborted by the operator");
      if (sig == "pause" || sig == "resume") break;
      if (!running_) fail(FailReason::kAborted, "daemon stopping");
      if (s.mode != MigrationMode::kFull) {
        for (Link& l : links) l.send(migrate::RoundEndMsg{round, 0}, mid, tmo);  // keepalive
        await_acks(links, tmo);
        continue;
      }
      if (!migrate::begin_epoch(dp_, s.vm, tmo))
        fail(FailReason::kTimeout, "local: workers did not clear the tracking marks");
      dp_.grace_period();
      migrate::VmReader::Counts d =
          reader.delta(migrate::VmReader::Drain::kEndedEpoch, to_links(links, mid, round, tmo));
      for (Link& l : links) l.send(migrate::RoundEndMsg{round, d.records}, mid, tmo);
      await_acks(links, tmo);
      update([&](MigrationReport& r) {
        r.entries_delta += d.records;
        r.tombstones += d.tombstones;
        r.compact += d.compact;
        r.placed += d.placed;
        r.rounds++;
      });
      round++;
    }

    // ---- pause: freeze, final delta exact to the last packet processed here ---------------
    Clock::time_point t_pause;
    {
      std::lock_guard<std::mutex> lock(s.mu);
      t_pause = s.pause_at == Clock::time_point{} ? Clock::now() : s.pause_at;
    }
    vs.state.store(VmState::kFrozen, std::memory_order_seq_cst);
    dp_.grace_period();  // no worker is inside a packet of this VM any more
    migrate::VmReader::Counts fin;
    if (s.mode == MigrationMode::kFull)
      fin = reader.delta(migrate::VmReader::Drain::kAll, to_links(links, mid, round, tmo));
    // The VM's lifetime traffic as of the freeze (no worker counts its packets any more), to
    // the peers that keep it.
    migrate::VmCountersMsg counters;
    {
      std::lock_guard<std::mutex> lock(dp_.vms().control_mutex());
      counters.traffic = vs.carried;
    }
    counters.traffic += dp_.vm_traffic(s.vm);
    bool counters_sent = false;
    for (Link& l : links)
      if (l.version >= migrate::kProtocolVersionCumulative) {
        l.send(counters, mid, tmo);
        counters_sent = true;
      }
    for (Link& l : links) l.send(migrate::FinalEndMsg{round, reader.live()}, mid, tmo);
    await_acks(links, tmo);
    double final_ms = ms_since(t_pause);
    update([&](MigrationReport& r) {
      r.precopy_ms = std::chrono::duration<double, std::milli>(t_pause - t_precopy).count();
      r.entries_final = fin.records;
      r.tombstones += fin.tombstones;
      r.compact += fin.compact;
      r.placed += fin.placed;
      r.final_seq_moved = fin.seq_moved;
      r.rounds++;
      r.final_delta_ms = final_ms;
      r.phase = MigrationPhase::kFrozen;
      r.traffic_carried = counters_sent;
      r.traffic = counters.traffic;
    });

    // ---- resume: ship parked packets, activate the peers --------------------------------
    if (sig != "resume") {
      // The hypervisor's stop-and-copy: bounded, so a lost resume cannot freeze a VM forever.
      sig = s.wait_signal(tmo * 6);
      if (sig == "abort") fail(FailReason::kAborted, "aborted by the operator");
      if (sig != "resume") fail(FailReason::kTimeout, "no resume signal");
    }
    auto t_resume = Clock::now();
    update([&](MigrationReport& r) { r.phase = MigrationPhase::kActivating; });
    // Sends parked packets to the primary peer (where the VM runs now); the mbufs are copied
    // and freed (or put in *keep) first, so a failed send leaks nothing.
    auto ship = [&](std::vector<rte_mbuf*> pkts, std::vector<rte_mbuf*>* keep = nullptr) {
      std::vector<migrate::HeldPacketsMsg> msgs;
      for (size_t i = 0; i < pkts.size(); i += kHeldPerFrame) {
        migrate::HeldPacketsMsg& hm = msgs.emplace_back();
        for (size_t j = i; j < std::min(pkts.size(), i + kHeldPerFrame); j++) {
          rte_mbuf* m = pkts[j];
          migrate::HeldPacket hp;
          hp.side = side_of(dp_, m);
          const uint8_t* p = rte_pktmbuf_mtod(m, const uint8_t*);
          hp.frame.assign(p, p + std::min<size_t>(m->data_len, migrate::kMaxHeldFrameLen));
          hm.packets.push_back(std::move(hp));
        }
      }
      const auto n = static_cast<uint64_t>(pkts.size());
      if (keep) keep->insert(keep->end(), pkts.begin(), pkts.end());
      else for (rte_mbuf* m : pkts) rte_pktmbuf_free(m);
      for (const auto& hm : msgs) links[0].send(hm, mid, tmo);
      return n;
    };
    uint64_t forwarded = ship(drain_hold(vs), &shipped);

    // The commit point: once ACTIVATE may have reached a peer, this instance never rolls back
    // on its own, since the peer may forward the VM's traffic already. A cut link is resumed
    // (a silent one too); a peer whose answer cannot be had leaves the migration in doubt
    // (docs/WIRE.md, "Cut around activation").
    std::vector<uint64_t> activate_seq;
    std::vector<std::optional<Activation>> act(links.size());
    for (size_t i = 0; i < links.size(); i++) {
      Link& l = links[i];
      l.silence_is_drop = true;
      activate_seq.push_back(l.seq + 1);
      try {
        l.send(migrate::ActivateMsg{}, mid, tmo);
      } catch (const SessionFail& f) {
        act[i] = settle(l, activate_seq[i], f);
      }
    }
    for (size_t i = 0; i < links.size(); i++)
      if (!act[i]) act[i] = await_activated(links[i], activate_seq[i], tmo, false);
    for (bool reported = false;; reported = true) {
      std::string unknown;
      for (size_t i = 0; i < links.size(); i++)
        if (act[i]->outcome == Outcome::kUnknown)
          unknown += (unknown.empty() ? "" : "; ") + act[i]->detail;
      if (unknown.empty()) break;
      // In doubt. Forwarding here could duplicate a peer that runs the VM, deleting here could
      // lose the VM if no peer does: the VM stays frozen (its packets parked, then dropped
      // when the hold ring is full) until a peer answers or the operator decides.
      update([&](MigrationReport& r) {
        r.reason = FailReason::kTransfer;
        r.detail = "activation outcome unknown: ACTIVATE sent, no ACTIVATED (" + unknown +
                   "); vm " + r.vm + " stays frozen here until the peer answers (asked again "
                   "every " + std::to_string(kInDoubtRetryMs / 1000) + " s and on resume); "
                   "abort takes it back here, only if the peer does not run it";
        r.phase = MigrationPhase::kFailed;
        r.held_packets = vs.held.load();
        r.lost_packets = vs.hold_dropped.load();
        count_links(r);
        s.in_doubt = true;
        s.signal.clear();  // a signal from before the doubt does not decide it
      });
      if (!reported) finish(s.snapshot());  // once: a retry that changes nothing is no news
      const std::string sig = running_ ? s.wait_signal(kInDoubtRetryMs) : "";
      if (!running_) {  // the daemon stops: nothing decides for the operator, the VM stays frozen
        for (rte_mbuf* m : shipped) rte_pktmbuf_free(m);
        return;
      }
      if (sig == "abort")
        throw SessionFail{FailReason::kAborted, "aborted by the operator while the activation "
                                                "at the peer was unknown: " + unknown};
      s.leave_doubt("");  // the timer's retry (a signal has left the doubt already)
      for (size_t i = 0; i < links.size(); i++)
        if (act[i]->outcome == Outcome::kUnknown)
          act[i] = await_activated(links[i], activate_seq[i], tmo, true);
    }
    // Every outcome is known. No peer activated: roll back here, as they did.
    uint64_t installed = 0;
    bool any_active = false;
    const Activation* refused = nullptr;
    for (const auto& a : act) {
      if (a->outcome == Outcome::kActive) {
        any_active = true;
        installed += a->installed;
      } else if (!refused) {
        refused = &*a;
      }
    }
    if (!any_active) throw SessionFail{refused->reason, refused->detail, true};
    for (rte_mbuf* m : shipped) rte_pktmbuf_free(m);
    shipped.clear();
    double activation_ms = ms_since(t_resume);
    double freeze_ms = ms_since(t_pause);
    update([&](MigrationReport& r) {
      r.entries_installed = installed;
      r.activation_ms = activation_ms;
      r.freeze_ms = freeze_ms;
      r.baton_freeze_ms = final_ms + activation_ms;
    });

    // Committed. Packets still arriving here (the network has not re-learned where the VM
    // is) go to the peer for a moment; then the entries are deleted. The VM runs at the peer
    // now whatever becomes of the link: a link lost for good here (after its resume attempts)
    // only loses the late packets, it never rolls back.
    bool late_link = true;
    uint64_t late_lost = 0;
    auto forward_late = [&](std::vector<rte_mbuf*> pkts, bool end) {
      if (!late_link) {
        late_lost += pkts.size();
        for (rte_mbuf* m : pkts) rte_pktmbuf_free(m);
        return;
      }
      try {
        forwarded += ship(std::move(pkts));
        if (end)
          for (Link& l : links) l.send_last(migrate::HeldPacketsMsg{}, mid, tmo);  // nothing follows
      } catch (const SessionFail& f) {
        late_link = false;
        BLOG_WARN("migrate", "vm %s: late packets no longer reach the peer: %s",
                  s.report.vm.c_str(), f.detail.c_str());
      }
    };
    auto t_linger = Clock::now();
    while (ms_since(t_linger) < kLingerMs && running_ && late_link) {
      usleep(20 * 1000);
      forward_late(drain_hold(vs), false);
    }
    vs.state.store(VmState::kGone, std::memory_order_seq_cst);
    dp_.grace_period();
    forward_late(drain_hold(vs), true);
    uint64_t removed = 0;
    migrate::VmInstaller::delete_vm(dp_, s.vm, tmo, &removed, /*retire=*/true);
    {
      std::lock_guard<std::mutex> lock(dp_.vms().control_mutex());
      auto retired = dp_.vms().remove(s.vm);
      dp_.grace_period();  // no worker still reads the VM's profile rules or policer
    }
    update([&](MigrationReport& r) {
      r.forwarded_packets = forwarded;
      r.held_packets = vs.held.load();
      r.lost_packets = vs.hold_dropped.load() + late_lost;
      count_links(r);  // with the phase: a caller that sees it ended reads the whole report
      r.phase = MigrationPhase::kSucceeded;
      if (refused) {  // several peers, some refused: the VM runs at those that activated it
        r.phase = MigrationPhase::kFailed;
        r.reason = refused->reason;
        r.detail = "activated at some peers only: " + refused->detail;
      }
    });
  } catch (const SessionFail& f) {
    // Rollback: the VM keeps running here exactly as before.
    rolled_back = true;
    if (tracking || vs.state.load() == VmState::kFrozen) {
      vs.state.store(VmState::kLocal, std::memory_order_seq_cst);
      dp_.grace_period();
    }
    // The packets shipped to the peer are older than those still parked.
    uint64_t lost = reinject(dp_, shipped) + reinject(dp_, drain_hold(vs));
    shipped.clear();
    for (Link& l : links) {
      if (!l.link || !l.link->is_open()) continue;
      migrate::AbortMsg a;
      a.reason = f.reason;
      a.detail = f.detail;
      auto fr = migrate::encode_frame(a, mid, ++l.seq);
      l.link->send(fr, 200);
    }
    update([&](MigrationReport& r) {
      r.reason = f.reason;
      r.detail = f.detail;
      r.held_packets = vs.held.load();
      r.lost_packets = vs.hold_dropped.load() + lost;
      count_links(r);
      r.phase = MigrationPhase::kFailed;
    });
  }
  for (Link& l : links)
    if (l.link) l.link->close();
  {
    std::lock_guard<std::mutex> lock(dp_.vms().control_mutex());
    if (rolled_back) {
      dp_.grace_period();
      dp_.vms().close_migration_rings(s.vm);
    }
  }
  finish(s.snapshot());
}

// ---- destination side -------------------------------------------------------------------------

void MigrationEngine::accept_loop() {
  while (running_) {
    Error e;
    auto link = listener_->accept(200, &e, static_cast<int>(dp_.config().migration.timeout_ms));
    if (!link) {
      if (e.code == LinkError::kAuth)
        BLOG_WARN("migrate", "peer refused: authentication failed: %s", e.detail.c_str());
      continue;
    }
    std::lock_guard<std::mutex> lock(mu_);
    auto* raw = link.release();
    threads_.emplace_back([this, raw] { serve(std::unique_ptr<PeerLink>(raw)); });
  }
}

void MigrationEngine::serve(std::unique_ptr<PeerLink> plink) {
  Frame f;
  Error e = plink->recv(&f, static_cast<int>(dp_.config().migration.timeout_ms));
  if (e.code != LinkError::kNone) {
    BLOG_WARN("migrate", "peer %s sent no first frame: %s", plink->peer_name().c_str(),
              e.detail.c_str());
    return;
  }
  if (f.header.kind == MsgKind::kResume)
    hand_back(std::move(plink), f);
  else
    run_in(std::move(plink), std::move(f));
}

// A source came back after a drop. Only the peer that started the migration may continue it:
// the migration id is the source's choice, the certificate identity is not.
void MigrationEngine::hand_back(std::unique_ptr<PeerLink> plink, const Frame& f) {
  const uint64_t mid = f.header.migration_id;
  auto refuse = [&](FailReason r, const std::string& why) {
    BLOG_WARN("migrate", "RESUME of migration %lu from %s refused: %s", mid,
              plink->peer_name().c_str(), why.c_str());
    plink->send(migrate::encode_frame(migrate::FailMsg{r, why}, mid, 1, f.header.version), 200);
    plink->close();
  };
  migrate::ResumeMsg rm;
  if (migrate::decode_body(f, &rm) != migrate::CodecError::kOk)
    return refuse(FailReason::kTransfer, "bad RESUME");
  std::shared_ptr<InSession> s;
  bool others = false;
  {
    std::lock_guard<std::mutex> lock(mu_);
    for (auto& [serial, in] : in_sessions_) {
      if (in->mid != mid) continue;
      if (in->peer == plink->peer_name())
        s = in;
      else
        others = true;
    }
  }
  if (!s && others)
    return refuse(FailReason::kAuth, "migration " + std::to_string(mid) +
                                         " was started by another peer");
  if (s) return s->offer(std::move(plink), rm);
  // It ended here. A source whose activation was left in doubt asks how: ACTIVATED if this
  // instance activated the VM (as it answered then), ABORT if it rolled back; FAIL when it no
  // longer remembers (docs/WIRE.md, "Cut around activation").
  std::optional<MigrationReport> past;
  {
    std::lock_guard<std::mutex> lock(mu_);
    for (auto h = history_.rbegin(); h != history_.rend() && !past; ++h)
      if (h->role == "destination" && h->id == mid && h->peers == std::vector{plink->peer_name()})
        past = *h;
  }
  if (!past)
    return refuse(FailReason::kTransfer, "no migration " + std::to_string(mid) +
                                             " here (it ended or was rolled back)");
  BLOG_INFO("migrate", "RESUME of migration %lu from %s after its end here: %s", mid,
            plink->peer_name().c_str(), migrate::fail_reason_name(past->reason));
  if (past->reason == FailReason::kNone) {
    migrate::ActivatedMsg am;
    am.installed = conn_counts(past->entries_installed);
    plink->send(migrate::encode_frame(am, mid, 1, f.header.version), 200);
  } else {
    migrate::AbortMsg am{past->reason, "migration " + std::to_string(mid) +
                                           " was rolled back here: " + past->detail};
    plink->send(migrate::encode_frame(am, mid, 1, f.header.version), 200);
  }
  plink->close();
}

void MigrationEngine::run_in(std::unique_ptr<PeerLink> plink, Frame f) {
  const MigrationConfig& mc = dp_.config().migration;
  const int tmo = static_cast<int>(mc.timeout_ms);
  Link link{plink->peer_name(), std::move(plink)};
  MigrationReport rep;
  rep.role = "destination";
  rep.peers = {link.name};
  uint16_t vm = 0;
  bool added_vm = false;
  std::vector<rte_mbuf*> from_source;  // the source's parked packets, in order
  uint64_t mid = 0;
  auto t_start = Clock::now();
  Clock::time_point t_final{};
  auto session = std::make_shared<InSession>();
  session->link = &link;
  session->peer = link.name;
  session->grace_ms = static_cast<int>(mc.resume_grace_ms);
  session->timeout_ms = tmo;
  // Registered once ACCEPT is sent (a RESUME finds it from then on) until the loop ends, so
  // that a source coming back during a rollback hears FAIL(TRANSFER), not silence.
  uint64_t serial = 0;
  auto unregister = [&] {
    {
      std::lock_guard<std::mutex> lock(mu_);
      in_sessions_.erase(serial);
    }
    // A RESUME that found the session just before may still offer(): `link` dies with us.
    std::lock_guard<std::mutex> lock(session->mu);
    session->link = nullptr;
  };
  try {
    migrate::HelloMsg hello;
    if (migrate::decode_body(f, &hello) != migrate::CodecError::kOk)
      fail(FailReason::kTransfer, "expected HELLO");
    mid = f.header.migration_id;
    rep.id = mid;
    session->mid = mid;
    // The source decides with the same rule; frames after HELLO carry the common version.
    auto v = migrate::negotiate_version(migrate::kProtocolVersionMin, migrate::kProtocolVersionMax,
                                        hello.version_min, hello.version_max);
    if (v.ok) link.version = v.value;
    migrate::HelloMsg mine;
    mine.instance = dp_.config().instance;
    link.send(mine, mid, tmo);
    Frame pf = link.recv(tmo);
    migrate::PrepareMsg prep;
    if (migrate::decode_body(pf, &prep) != migrate::CodecError::kOk)
      fail(FailReason::kTransfer, "expected PREPARE");
    rep.vm = prep.vm.name;

    // Decide: capacity, kinds, conflicts with what runs here.
    migrate::LocalView view;
    view.headroom_percent = mc.headroom_percent;
    std::array<uint64_t, 2> free_by_family{};
    for (uint16_t w = 0; w < dp_.worker_count(); w++) {
      const ConnTable& t = dp_.shard(w);
      free_by_family[0] += t.capacity(Family::kV4) - t.size(Family::kV4);
      free_by_family[1] += t.capacity(Family::kV6) - t.size(Family::kV6);
    }
    view.free[static_cast<int>(migrate::StateKind::kConn)] = free_by_family[0] + free_by_family[1];
    view.conn_free_by_family = free_by_family;
    // Translated connections: their mappings, backends and sticky entries are resolved here
    // (Translator::adopt); PREPARE's needs are checked against this instance's pools and
    // services before anything moves.
    Translator* tr = dp_.translator();
    if (tr && tr->enabled()) {
      view.kinds |= migrate::kind_bit(migrate::StateKind::kNatMapping) |
                    migrate::kind_bit(migrate::StateKind::kLbConn) |
                    migrate::kind_bit(migrate::StateKind::kSticky);
      uint64_t nat_free = 0;
      for (const auto& r : tr->snat_rules())
        for (const auto& m : r.maps) nat_free += m->capacity() - std::min(m->capacity(), m->size());
      view.free[static_cast<int>(migrate::StateKind::kNatMapping)] = nat_free;
      view.free[static_cast<int>(migrate::StateKind::kLbConn)] = UINT64_MAX;  // conn table's
      StickyTable* st = tr->lb() ? tr->lb()->sticky() : nullptr;
      view.free[static_cast<int>(migrate::StateKind::kSticky)] =
          st ? st->capacity() - std::min(st->capacity(), st->size()) : 0;
      view.check_nat = [tr](const migrate::NatNeed& n) {
        return tr->check_mapping(n.proto, n.inside_addr, n.outside_addr, n.outside_port);
      };
      view.check_lb = [this, tr](const migrate::LbNeed& n) {
        Dataplane::ReaderGuard guard(dp_);  // pool snapshots
        return tr->lb()->check_handoff(n.proto, n.vip, n.vip_port, n.backend_addr, n.backend_port,
                                       n.local_addr);
      };
      // Spliced L7 connections install like load-balanced ones plus their splice offsets; an
      // instance with no L7 service has nowhere to put them (its check_lb names the VIP).
      if (tr->lb() && tr->lb()->l7_max_head()) {
        view.kinds |= migrate::kind_bit(migrate::StateKind::kL7Conn);
        view.free[static_cast<int>(migrate::StateKind::kL7Conn)] = UINT64_MAX;  // conn table's
      }
    }
    {
      std::lock_guard<std::mutex> lock(dp_.vms().control_mutex());
      VmTable& vms = dp_.vms();
      std::optional<uint16_t> existing = vms.find_by_name(prep.vm.name);
      for (uint16_t id : vms.ids()) {
        // A VM already arriving from another source is the n:1 case, not a conflict.
        if (existing && id == *existing && vms.slot(id).state.load() == VmState::kArriving)
          continue;
        view.vms.push_back(vms.slot(id).config);
        if (vms.slot(id).config.profile.nat_public_ip)
          view.nat_public_in_use.push_back({*vms.slot(id).config.profile.nat_public_ip, Family::kV4});
      }
      migrate::Decision d = migrate::decide(prep, view);
      if (!d.accepted()) {
        migrate::FailMsg fm;
        fm.reason = d.reason;
        fm.detail = d.detail;
        link.send(fm, mid, tmo);
        fail(d.reason, d.detail);
      }
      std::string err;
      if (existing) {
        vm = *existing;
      } else {
        auto id = vms.add(prep.vm, &err);
        if (!id) {
          link.send(migrate::FailMsg{FailReason::kConflict, err}, mid, tmo);
          fail(FailReason::kConflict, err);
        }
        vm = *id;
        added_vm = true;
        vms.slot(vm).state.store(VmState::kArriving, std::memory_order_seq_cst);
      }
      if (!vms.open_migration_rings(vm, dp_.worker_count(), mc.hold_packets, 4096, &err)) {
        link.send(migrate::FailMsg{FailReason::kResources, err}, mid, tmo);
        fail(FailReason::kResources, err);
      }
    }
    link.send(migrate::AcceptMsg{}, mid, tmo);
    session->applied = pf.header.seq;  // ACCEPT answers PREPARE
    {
      std::lock_guard<std::mutex> lock(mu_);
      serial = ++in_serial_;
      in_sessions_[serial] = session;
    }
    rep.prepare_ms = ms_since(t_start);
    rep.phase = MigrationPhase::kPrecopy;
    BLOG_INFO("migrate", "accepted vm=%s from %s (migration %lu)", rep.vm.c_str(),
              link.name.c_str(), mid);

    migrate::VmInstaller inst(dp_, vm, mid);  // fingerprints under the source's seed
    for (const migrate::KindCount& kc : prep.counts)
      if (kc.kind == static_cast<uint8_t>(migrate::StateKind::kConn))
        inst.expect(std::min<uint64_t>(kc.count, free_by_family[0] + free_by_family[1]));
    // A translated record this instance could not hold (its mapping's port taken here, its
    // backend unknown ...): the source hears FAIL(CONFLICT) instead of the ACK and rolls back,
    // and so do we (catch below).
    auto refuse_conflict = [&](const migrate::VmInstaller& in) {
      if (in.conflict.empty()) return;
      const std::string why = "vm " + rep.vm + ": " + in.conflict;
      link.send(migrate::FailMsg{FailReason::kConflict, why}, mid, tmo);
      fail(FailReason::kConflict, why);
    };
    // PREPARE's capacity check counts the VM's entries per address family (from version 5)
    // against the free slots of all shards; an entry can still find its own shard's table full,
    // or a VM opens connections after PREPARE.
    // A connection left behind would be cut by this instance's strict tracking: FAIL, roll back.
    auto refuse_full = [&](const migrate::VmInstaller& in) {
      if (in.failed == 0) return;
      const std::string why = "vm " + rep.vm + ": " + std::to_string(in.failed) +
                              " entries found no room in the connection table (its worker's, "
                              "for its address family)";
      link.send(migrate::FailMsg{FailReason::kResources, why}, mid, tmo);
      fail(FailReason::kResources, why);
    };
    // A compact update of an entry this migration did not install here (or that is gone):
    // this instance cannot place it, and a connection left behind would be cut. TRANSFER: a
    // retry starts from whole records.
    auto refuse_unmatched = [&](const migrate::VmInstaller& in) {
      if (in.unmatched == 0) return;
      const std::string why = "vm " + rep.vm + ": " + std::to_string(in.unmatched) +
                              " compact updates name entries this instance does not hold";
      link.send(migrate::FailMsg{FailReason::kTransfer, why}, mid, tmo);
      fail(FailReason::kTransfer, why);
    };
    bool final_seen = false, held_done = false;
    uint64_t in_round = 0;  // records received since the last ROUND_END / FINAL_END
    Frame fr;            // reused: an ENTRIES body keeps its buffer from frame to frame
    for (;;) {
      // The source sends a frame every round interval during pre-copy; after the final delta
      // it waits for the hypervisor's resume, which it bounds by 6 timeouts.
      session->recv(&fr, final_seen ? tmo * 7 : tmo);
      switch (fr.header.kind) {
        case MsgKind::kEntries: {
          bool queued = false;
          uint32_t n = 0;
          migrate::CodecError ce = inst.submit(fr, tmo, &queued, &n);
          if (ce != migrate::CodecError::kOk)
            fail(FailReason::kTransfer, std::string("bad ENTRIES: ") + migrate::codec_error_name(ce));
          if (!queued) fail(FailReason::kTimeout, "workers did not take entries");
          if (final_seen)
            rep.entries_final += n;  // (none expected: FINAL_END closes the last round)
          else
            in_round += n;
          session->ack(fr.header.seq);  // queued for its owners: applied, for a resume
          break;
        }
        case MsgKind::kRoundEnd:
        case MsgKind::kFinalEnd:
          if (!inst.wait(tmo)) fail(FailReason::kTimeout, "workers did not install entries");
          refuse_conflict(inst);
          refuse_full(inst);
          refuse_unmatched(inst);
          if (fr.header.kind == MsgKind::kFinalEnd)
            rep.entries_final += in_round;
          else
            (rep.rounds == 0 ? rep.entries_snapshot : rep.entries_delta) += in_round;
          in_round = 0;
          rep.rounds++;
          if (fr.header.kind == MsgKind::kFinalEnd) {
            final_seen = true;
            t_final = Clock::now();
            rep.phase = MigrationPhase::kFrozen;
          } else {
            // A round of more entry records than one frame holds (4M) goes unplaced: the
            // source's updates of it stay compact.
            migrate::PlacedMsg pm{0, inst.take_places()};
            if (link.version >= migrate::kProtocolVersionPlaced &&
                pm.places.size() <= migrate::PlacedMsg::kMaxPlaces) {
              migrate::RoundEndMsg re;
              if (migrate::decode_body(fr, &re) != migrate::CodecError::kOk)
                fail(FailReason::kTransfer, "bad ROUND_END");
              pm.round = re.round;
              session->placed(pm);
            }
          }
          session->ack(fr.header.seq);
          break;
        case MsgKind::kVmCounters: {
          // Kept aside until activation: a rolled-back migration leaves the VM's figures here
          // as they were.
          migrate::VmCountersMsg cm;
          if (link.version < migrate::kProtocolVersionCumulative ||
              migrate::decode_body(fr, &cm) != migrate::CodecError::kOk)
            fail(FailReason::kTransfer, "bad VM_COUNTERS");
          rep.traffic_carried = true;
          rep.traffic = cm.traffic;  // applied on activation
          session->ack(fr.header.seq);
          break;
        }
        case MsgKind::kHeldPackets: {
          migrate::HeldPacketsMsg hm;
          if (migrate::decode_body(fr, &hm) != migrate::CodecError::kOk)
            fail(FailReason::kTransfer, "bad HELD_PACKETS");
          session->ack(fr.header.seq);
          if (hm.packets.empty() && rep.phase == MigrationPhase::kSucceeded) {
            held_done = true;
            break;
          }
          for (auto& hp : hm.packets) {
            rte_mbuf* m = rte_pktmbuf_alloc(dp_.pool());
            if (!m || !rte_pktmbuf_append(m, hp.frame.size())) {
              if (m) rte_pktmbuf_free(m);
              rep.lost_packets++;
              continue;
            }
            std::memcpy(rte_pktmbuf_mtod(m, uint8_t*), hp.frame.data(), hp.frame.size());
            int idx = hp.side == migrate::Side::kVm ? 1 : 0;
            auto& ports = dp_.ports().all();
            m->port = ports.size() > static_cast<size_t>(idx) ? ports[idx].port_id : 0;
            if (rep.phase == MigrationPhase::kSucceeded) {
              rep.lost_packets += reinject(dp_, {m});  // late packets after activation
              rep.forwarded_packets++;
            } else {
              from_source.push_back(m);
            }
          }
          break;
        }
        case MsgKind::kActivate: {
          if (!final_seen) fail(FailReason::kTransfer, "ACTIVATE before the final delta");
          if (!inst.wait(tmo)) fail(FailReason::kTimeout, "workers did not install entries");
          refuse_conflict(inst);
          refuse_full(inst);
          refuse_unmatched(inst);
          auto t_act = Clock::now();
          // One store makes every pending entry of the VM usable at once (all tables).
          VmSlot& vs = dp_.vms().slot(vm);
          // Source's parked packets first (older), then what was parked here, injected right
          // after the store (workers take injected packets before their RX queues); then, after
          // a grace period, the few a worker parked while the store was landing. The source
          // hears ACTIVATED before that grace period: the VM is active from the store on, and
          // the wait only concerns packets already here.
          {
            // With the activation: from here on the workers count the VM's packets here. Added
            // (n:1, several sources each bring what they counted).
            std::lock_guard<std::mutex> lock(dp_.vms().control_mutex());
            vs.carried += rep.traffic;  // zero without VM_COUNTERS
          }
          vs.state.store(VmState::kLocal, std::memory_order_seq_cst);
          rep.forwarded_packets += from_source.size();
          rep.lost_packets += reinject(dp_, from_source);
          from_source.clear();
          std::vector<rte_mbuf*> mine_held = drain_hold(vs);
          rep.held_packets = mine_held.size();
          rep.lost_packets += reinject(dp_, mine_held);
          uint64_t live = 0;
          for (uint16_t w = 0; w < dp_.worker_count(); w++) live += dp_.shard(w).vm_count(vm);
          migrate::ActivatedMsg am;
          am.installed = conn_counts(live);
          session->answer_activate(am);
          session->ack(fr.header.seq);
          dp_.grace_period();
          mine_held = drain_hold(vs);
          rep.held_packets += mine_held.size();
          rep.lost_packets += reinject(dp_, mine_held) + vs.hold_dropped.load();
          rep.entries_installed = live;
          rep.entries_stale = inst.stale;
          rep.activation_ms = ms_since(t_act);
          rep.freeze_ms = t_final == Clock::time_point{} ? 0 : ms_since(t_final);
          rep.phase = MigrationPhase::kSucceeded;
          break;
        }
        case MsgKind::kAbort: {
          migrate::AbortMsg a;
          migrate::decode_body(fr, &a);
          fail(a.reason, "source aborted: " + a.detail);
        }
        default:
          fail(FailReason::kTransfer, std::string("unexpected ") + migrate::msg_kind_name(fr.header.kind));
      }
      if (rep.phase == MigrationPhase::kSucceeded && held_done) break;
      if (rep.phase == MigrationPhase::kSucceeded && !running_) break;
    }
    unregister();
  } catch (const SessionFail& f) {
    unregister();
    if (rep.phase == MigrationPhase::kSucceeded) {
      // Already active here: the late-packet stream ending early loses nothing we own.
    } else {
      rep.reason = f.reason;
      rep.detail = f.detail;
      rep.phase = MigrationPhase::kFailed;
      for (rte_mbuf* m : from_source) rte_pktmbuf_free(m);
      if (vm) {
        VmSlot& vs = dp_.vms().slot(vm);
        if (added_vm) {
          vs.state.store(VmState::kGone, std::memory_order_seq_cst);
          dp_.grace_period();
          for (rte_mbuf* m : drain_hold(vs)) rte_pktmbuf_free(m);
        }
        uint64_t removed = 0;
        migrate::VmInstaller::delete_vm(dp_, vm, tmo, &removed, /*retire=*/added_vm);
        if (added_vm) {
          std::lock_guard<std::mutex> lock(dp_.vms().control_mutex());
          dp_.grace_period();
          auto retired = dp_.vms().remove(vm);
          dp_.grace_period();  // no worker still reads the VM's profile rules or policer
        }
      }
    }
  }
  rep.resumes = session->resumes;
  rep.bytes_sent = link.bytes;
  rep.frames_sent = link.frames;
  link.link->close();
  finish(rep);
}

// ---- API and metrics --------------------------------------------------------------------------

void MigrationEngine::register_routes(control::HttpApi& api) {
  using control::ApiRequest;
  using control::ApiResult;
  auto wrap = [](std::pair<int, json> r) { return ApiResult{r.first, std::move(r.second)}; };
  api.route("POST", "/v1/vms/:vm/migration", [this, wrap](const ApiRequest& req) {
    std::vector<std::string> peers;
    MigrationMode mode = MigrationMode::kFull;
    if (req.body.is_object()) {
      if (req.body.contains("peers")) {
        if (!req.body["peers"].is_array()) return ApiResult::error(400, "peers must be a list of peer names");
        for (auto& p : req.body["peers"]) {
          if (!p.is_string()) return ApiResult::error(400, "peers must be a list of peer names");
          peers.push_back(p.get<std::string>());
        }
      }
      if (req.body.contains("mode")) {
        std::string m = req.body["mode"].is_string() ? req.body["mode"].get<std::string>() : "";
        if (m == "full")
          mode = MigrationMode::kFull;
        else if (m == "snapshot-only")
          mode = MigrationMode::kSnapshotOnly;
        else
          return ApiResult::error(400, "mode must be full or snapshot-only");
      }
    } else if (!req.body.is_null()) {
      return ApiResult::error(400, "body must be a JSON object");
    }
    return wrap(prepare(req.param("vm"), peers, mode));
  });
  for (const char* what : {"pause", "resume", "abort"}) {
    std::string w = what;
    api.route("POST", "/v1/vms/:vm/migration/" + w,
              [this, wrap, w](const ApiRequest& req) { return wrap(signal(req.param("vm"), w)); });
  }
  api.route("GET", "/v1/vms/:vm/migration",
            [this, wrap](const ApiRequest& req) { return wrap(status(req.param("vm"))); });
  api.route("GET", "/v1/migrations", [this](const ApiRequest&) { return ApiResult::ok(list()); });
}

void MigrationEngine::collect(std::vector<prometheus::MetricFamily>& out) {
  using control::add_sample;
  auto phase = control::gauge_family("baton_migration_phase",
                                     "Migration phase per VM: 0 preparing, 1 precopy, 2 frozen, 3 activating, 4 succeeded, 5 failed");
  auto entries = control::gauge_family("baton_migration_entries", "Entries sent by the running or last migration of a VM, by round kind");
  std::lock_guard<std::mutex> lock(mu_);
  for (auto& [name, s] : sessions_) {
    MigrationReport r = s->snapshot();
    add_sample(phase, {{"vm", name}, {"role", "source"}}, static_cast<double>(r.phase));
    add_sample(entries, {{"vm", name}, {"round", "snapshot"}}, r.entries_snapshot);
    add_sample(entries, {{"vm", name}, {"round", "delta"}}, r.entries_delta);
    add_sample(entries, {{"vm", name}, {"round", "final"}}, r.entries_final);
  }
  out.push_back(std::move(phase));
  out.push_back(std::move(entries));
  auto results = control::counter_family("baton_migrations_total", "Finished migrations by role and result");
  for (auto& [k, v] : results_) {
    auto slash = k.find('/');
    add_sample(results, {{"role", k.substr(0, slash)}, {"result", k.substr(slash + 1)}}, v);
  }
  out.push_back(std::move(results));
  auto c = [&](const char* n, const char* h, uint64_t v) {
    auto f = control::counter_family(n, h);
    add_sample(f, {}, v);
    out.push_back(std::move(f));
  };
  c("baton_migration_sent_bytes_total", "Bytes sent to peers by finished migrations", bytes_sent_total_);
  c("baton_migration_sent_entries_total", "Entries sent to peers by finished migrations", entries_sent_total_);
  c("baton_migration_held_packets_total", "Packets parked while a VM was frozen", held_total_);
  c("baton_migration_lost_packets_total", "Parked packets lost (hold buffer full or not delivered)", lost_total_);
  const std::vector<double> bounds = {0.5, 1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 5000};
  auto hist = [&](const char* n, const char* h, const std::vector<double>& samples) {
    auto f = control::histogram_family(n, h);
    std::vector<uint64_t> counts(bounds.size() + 1, 0);
    double sum = 0;
    for (double v : samples) {
      size_t i = 0;
      while (i < bounds.size() && v > bounds[i]) i++;
      counts[i]++;
      sum += v / 1000.0;
    }
    std::vector<double> secs;
    for (double b : bounds) secs.push_back(b / 1000.0);
    control::add_histogram(f, {}, secs, counts, sum);
    out.push_back(std::move(f));
  };
  hist("baton_migration_freeze_seconds", "Pause signal to activation at the peer", freeze_samples_ms_);
  hist("baton_migration_baton_freeze_seconds", "Part of the freeze spent by Baton (final delta and activation)",
       baton_freeze_samples_ms_);
}

}  // namespace baton
