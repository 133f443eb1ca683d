// SPDX-License-Identifier: Apache-2.0
//
// L7Proxy: one worker's delayed-binding state for the L7 (HTTP/1.1) services: the SYN cookies
// that answer clients without keeping state, the bounded pool of head buffers of connections
// still reading their request head, the per-connection side table (phase and splice offsets)
// of the worker's connection-table shard, and the TCP segments batond writes itself. Pure
// logic: no DPDK. The worker (dataplane/worker_l7.cc) moves the packets, tracks the connection
// in conntrack and sends what this class builds.
//
// Theory of operation, one client connection (C = client ISN, L = SYN cookie, B = backend ISN):
//   client SYN           -> SYN-ACK(seq L): the cookie carries what batond must remember;
//                           nothing is stored, so a SYN flood grows no table.
//   client ACK(ack L+1)  -> cookie valid: the connection is created in phase kReading with a
//                           head buffer (L7Pending) from a fixed pool; none free -> the ACK is
//                           dropped as if the accept queue were full (the client retries).
//   head segments        -> taken in order, buffered, parsed incrementally (HttpHeadParser) and
//                           ACKed by batond. A head over max_request_head or malformed is
//                           answered 400 (phase kResponded: batond closes the connection itself).
//   head complete        -> routed (L7Router: Host, path, header, cookie -> pool, stickiness by
//                           cookie or header), backend and local port chosen as in full NAT, SYN
//                           to the backend from the local address with seq C and the client's
//                           options; phase kConnecting. The segment that completed the head is
//                           not ACKed by batond: the backend ACKs it once it has the replay, and
//                           until then the client's retransmission of it is the timer that sends
//                           the SYN again (batond keeps no retransmission timer).
//   backend SYN-ACK(B)   -> SpliceOffsets from both handshakes; the buffered bytes are replayed
//                           to the backend (seq C+1.., ack B+1); phase kSpliced. The head buffer
//                           stays until the backend ACKs the replay (a repeated SYN-ACK or an
//                           ACK short of it replays again), then returns to the pool.
//   spliced              -> every segment both ways: rewrite_segment() by the offsets (seq, ack,
//                           SACK, timestamps, window scale), then the address/port translation
//                           of the connection's ConnXlate. Conntrack tracks the connection as
//                           the client sees it (server ISN L): client segments as they come,
//                           backend segments after the rewrite.
// One backend per client connection: the first request's head chooses it and keep-alive
// requests on that connection stay on it (a second request is never parsed).
//
// Timers. A connection that holds a head buffer longer than head_timeout_s (slow or silent
// client, backend that never answers) is reset: the owner sweeps the pool once a second
// (sweep_due), which is cheap because the pool is small and bounded.
//
// Side table. L7ConnRecord is indexed by the connection's slot in the owner's ConnTable shard,
// like ConnXlate: plain fields, written by the owner inside the entry's seqlock bracket, so a
// reader (API, migration) copies a consistent record by checking the entry's version around
// the copy. What a migration must carry for a spliced connection is that record (phase,
// service, offsets) with the ConnEntry and ConnXlate: L7Handoff below.
//
// Migration (docs/WIRE.md, part l7). A connection travels when it holds no head buffer: phase
// kSpliced once the backend has ACKed the replay (at most one round trip after the splice), or
// kClosed with its backend side open (the destination goes on resetting the backend). One that
// holds a buffer (kReading, kConnecting, kResponded, or kSpliced with the replay unACKed) is not
// carried, because its bytes, parser and the replay's retransmission would have to travel too:
// the source leaves it out of every round (and sends it in a later one if its buffer is freed
// meanwhile), PREPARE counts it (VmReader::KindTally::l7_held), and after the switch its client
// finds no connection at the destination, as after a restart of batond. Such connections are
// young (head_timeout_s at most) and have exchanged nothing with a backend yet.
//
// Not supported, because the splice must stay byte-exact: inserting a sticky cookie into the
// response (stickiness follows a cookie the application sets), ECN (the SYN-ACK does not agree
// to it, nor does the SYN to the backend), IPv6 VIPs. Timestamps agreed with the client but
// refused by the backend cannot be bridged (splice_offsets.h): that connection is reset.
#pragma once

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "common/net_types.h"
#include "dataplane/packet_meta.h"
#include "lb/http_head_parser.h"
#include "lb/splice_offsets.h"
#include "lb/syn_cookie.h"

namespace baton {

// ---- Segments batond writes ---------------------------------------------------------------

// A TCP/IPv4 segment to write as a frame: Ethernet (MACs zero: the router fills them), IPv4
// (TTL 64, DF, id 0), TCP with options in Linux's order (MSS; SACK-permitted and timestamps;
// window scale), both checksums computed in full.
struct TcpSegmentSpec {
  be32 src, dst;
  be16 sport, dport;
  uint32_t seq = 0, ack = 0;
  uint8_t flags = 0;
  uint16_t window = 0;
  uint16_t mss = 0;          // 0 = no MSS option (SYNs only)
  int8_t wscale = -1;        // -1 = no window-scale option (SYNs only)
  bool sack_permitted = false;
  bool timestamps = false;
  uint32_t tsval = 0, tsecr = 0;
  std::span<const uint8_t> payload;
};
constexpr size_t kEthHeaderLen = 14;
// Bytes written (the frame length), or 0 if it does not fit in `cap`.
size_t write_tcp_frame(const TcpSegmentSpec& s, uint8_t* out, size_t cap);
// The TCP checksum of an IPv4 packet at `ip` (header valid, `len` bytes readable) is right.
bool tcp_checksum_ok(const uint8_t* ip, size_t len);
// A window advertised under shift `from`, re-expressed under shift `to` (splice_offsets.h).
uint16_t rescale_window(uint16_t window, uint8_t from, uint8_t to);

// ---- Per-connection state -------------------------------------------------------------------

enum class L7Phase : uint8_t {
  kNone = 0,    // not an L7 connection (the slot belongs to something else, or to nobody)
  kReading,     // handshake done by cookie; reading the request head
  kConnecting,  // head complete, backend chosen, SYN sent to it
  kSpliced,     // both halves joined
  kResponded,   // batond answered the request itself (400, 503) and is closing
  kClosed,      // reset (by the client or by batond); backend segments get a RST
};
const char* l7_phase_name(L7Phase p);

constexpr uint32_t kNoPending = UINT32_MAX;

// Side-table row of one connection slot (see the header comment). Plain; no pointers.
struct L7ConnRecord {
  L7Phase phase = L7Phase::kNone;
  uint8_t reserved = 0;
  uint16_t service = 0;             // index into LoadBalancer::services()
  uint32_t pending = kNoPending;    // head buffer while one is held
  SpliceOffsets offsets;            // valid from kSpliced on
};

// What a migration carries of an L7 connection besides its entry and translation (the service
// is the translation's LB part; the backend and local port are its reply tuple). Plain fields.
struct L7Handoff {
  bool has = false;
  L7Phase phase = L7Phase::kNone;  // kSpliced or kClosed (l7_carried)
  SpliceOffsets offsets;           // both directions, as the owner applies them
  bool operator==(const L7Handoff&) const = default;
};
// Whether record r (of a connection with a translation when translated) may travel.
inline bool l7_carried(const L7ConnRecord& r, bool translated) {
  return r.pending == kNoPending && translated &&
         (r.phase == L7Phase::kSpliced || r.phase == L7Phase::kClosed);
}

// A connection that holds a head buffer: both handshakes' values and the bytes read.
struct L7Pending {
  bool in_use = false;
  uint32_t conn_slot = 0;
  uint32_t since = 0;            // owner's clock (s) when the buffer was taken or the phase began
  uint32_t client_isn = 0;       // C
  uint32_t lb_isn = 0;           // L
  uint32_t lb_tsval = 0;         // TSval of the SYN-ACK (and of every later segment to the client)
  int8_t lb_wscale = -1;         // shift announced to the client, -1 = none
  TcpSynOptions client;          // what the cookie recovered (mss, wscale, sack, timestamps)
  uint32_t client_tsval = 0;     // last TSval from the client, echoed in TSecr
  uint16_t client_window = 0;    // last raw window from the client
  uint32_t rcv_nxt = 0;          // next client byte batond expects
  uint32_t snd_nxt = 0;          // next byte batond sends the client (L+1, more after a response)
  uint32_t backend_isn = 0;      // B, once the backend answered
  uint32_t backend_tsval = 0;    // its SYN-ACK's TSval
  uint16_t backend_mss = 536;    // RFC 9293 3.7.1 default until the backend says otherwise
  uint32_t backend_ack = 0;      // last ack from the backend while the replay is unacknowledged
  uint32_t len = 0;              // bytes buffered (the replay)
  std::unique_ptr<uint8_t[]> buf;
  uint32_t cap = 0;
  std::unique_ptr<HttpHeadParser> parser;

  // The bytes from the client's first byte (C+1) on.
  std::span<const uint8_t> bytes() const { return {buf.get(), len}; }
};

// What take() made of a client segment's bytes in phase kReading.
enum class L7Take : uint8_t {
  kNeedMore,   // new bytes taken; ACK them
  kComplete,   // the head is complete (with these bytes)
  kDuplicate,  // nothing new (a retransmission): ACK again
  kGap,        // starts after rcv_nxt: dropped (the ACK sent again asks for the missing part)
  kTooLarge,   // the head exceeds the service's max_request_head
  kMalformed,  // the parser refused the head (malformed or unsupported)
};

// ---- The proxy --------------------------------------------------------------------------------

class L7Proxy {
 public:
  static constexpr uint8_t kLbWscale = 7;          // shift batond announces to clients
  static constexpr uint32_t kTailBytes = 2048;     // room after the head for the first body bytes
  static constexpr uint32_t kPoolBudget = 8u << 20;  // bytes of head buffers per worker
  static constexpr uint32_t kHeadTimeoutS = 10;    // HAProxy's "timeout http-request" role

  struct Params {
    uint32_t conn_slots = 0;      // ConnTable::slots() of the owner's shard
    uint32_t max_head = 8192;     // largest max_request_head of the L7 services
    uint32_t pending = 0;         // head buffers; 0 = derived from kPoolBudget
    SynCookieSecret secret;
  };
  // nullptr with *err when OpenSSL offers no SipHash.
  static std::unique_ptr<L7Proxy> create(const Params& p, std::string* err);

  // ---- Side table ----
  L7ConnRecord& record(uint32_t slot) { return records_[slot]; }
  const L7ConnRecord& record(uint32_t slot) const { return records_[slot]; }
  bool is_l7(uint32_t slot) const { return records_[slot].phase != L7Phase::kNone; }
  // Copies the record of `slot` consistently with the entry's seqlock `version` (any core).
  bool read(uint32_t slot, const std::atomic<uint32_t>& version, L7ConnRecord* out) const;

  // ---- Handshake with the client ----
  // The SYN-ACK answering a SYN of tuple `syn` (src = client) to a service whose head limit is
  // max_head; now_s the owner's clock, ts_now the TSval clock (ms).
  TcpSegmentSpec syn_ack(const Tuple& syn, const TcpInfo& tcp, uint32_t max_head, uint64_t now_s,
                         uint32_t ts_now);
  // The options the client's ACK (or first data segment) proves, or nullopt: no valid cookie.
  std::optional<TcpSynOptions> check_cookie(const Tuple& t, const TcpInfo& tcp, uint64_t now_s);
  // The SYN-cookie secret is replaced by a fresh random one every kSecretLifetimeS, the previous
  // kept for the cookies it issued (SynCookie::rotate), as FreeBSD reseeds its syncookie
  // secrets: a secret read out of memory is worth minutes, not the process's lifetime. A cookie
  // lives at most kMaxAge intervals, which is the lifetime, so the previous secret is enough. A
  // SYN and its ACK reach the same owner, so each worker's proxy rotates on its own. The owner
  // calls this from its housekeeping; true when it rotated. If OpenSSL fails, the current secret
  // stays and the next call tries again.
  static constexpr uint32_t kSecretLifetimeS = SynCookie::kMaxAge * SynCookie::kPeriodSeconds;
  bool rotate_secret_due(uint64_t now_s);
  // The client's SYN and batond's SYN-ACK as conntrack would have seen them, rebuilt from the
  // cookie ACK and the options it proved: the connection's entry starts from them.
  static void handshake(const TcpInfo& ack, const TcpSynOptions& o, uint32_t max_head,
                        TcpInfo* syn, TcpInfo* syn_ack);

  // ---- Head buffers ----
  // Takes a buffer for connection `slot` after a valid cookie ACK (seq C+1, ack L+1), or
  // kNoPending when the pool is empty.
  uint32_t open(uint32_t slot, const TcpInfo& ack, const TcpSynOptions& client, uint32_t now_s);
  L7Pending& pending(uint32_t i) { return pool_[i]; }
  void release(uint32_t pending);
  // Forgets slot's record and gives its buffer back (the connection is being removed).
  void forget(uint32_t slot);
  // Feeds the payload of a client segment starting at `seq`.
  L7Take take(L7Pending& p, uint32_t seq, std::span<const uint8_t> data, uint32_t max_head);
  // Pending buffers held since before now_s - kHeadTimeoutS, at most once a second.
  template <class Fn>
  void sweep_due(uint32_t now_s, Fn&& fn);
  uint32_t pool_size() const { return static_cast<uint32_t>(pool_.size()); }
  uint32_t pool_free() const { return static_cast<uint32_t>(free_.size()); }
  // Buffers in use, for the control side (any core).
  uint32_t pool_in_use() const { return in_use_.load(std::memory_order_relaxed); }

  // ---- Segments from batond ----
  // To the client (src = VIP): seq snd_nxt, ack rcv_nxt, TSval tl, the free buffer as window.
  TcpSegmentSpec to_client(const L7Pending& p, const Tuple& client_tuple, uint8_t flags,
                           std::span<const uint8_t> payload = {}) const;
  // The SYN to the backend: seq C and the client's options. `to` is local -> backend.
  TcpSegmentSpec backend_syn(const L7Pending& p, const Tuple& to) const;
  // The replayed bytes [from, from + n) to the backend, in the backend's spaces (offsets o).
  TcpSegmentSpec backend_data(const L7Pending& p, const Tuple& to, const SpliceOffsets& o,
                              uint32_t from, uint32_t n) const;

 private:
  L7Proxy() = default;

  std::unique_ptr<SynCookie> cookie_;
  uint64_t next_rotation_s_ = 0;  // 0: not scheduled yet (the first call schedules it)
  std::vector<L7ConnRecord> records_;
  std::vector<L7Pending> pool_;
  std::vector<uint32_t> free_;
  std::atomic<uint32_t> in_use_{0};
  uint32_t last_sweep_ = 0;
};

template <class Fn>
void L7Proxy::sweep_due(uint32_t now_s, Fn&& fn) {
  if (now_s == last_sweep_) return;
  last_sweep_ = now_s;
  for (uint32_t i = 0; i < pool_.size(); i++) {
    const L7Pending& p = pool_[i];
    if (p.in_use && now_s - p.since >= kHeadTimeoutS) fn(p.conn_slot);
  }
}

}  // namespace baton
