// SPDX-License-Identifier: Apache-2.0
//
// One tracked connection, both directions. Plain data (no pointers): a migration copies it field
// by field through the codec, and the table stores it in a slot-indexed array (64 bytes, one
// line). Packet and byte counters are per-connection accounting, a table option: with it each
// entry is followed by its ConnCounters (conn_table.h, "Rows").
//
// Concurrency: the owning worker is the only writer. It brackets every update with
// ConnTable::begin_write/end_write, which bump `version` to odd and back to even (a seqlock), so
// another core (the control core taking a snapshot) can copy the entry and retry if it raced.
// The same counter is the entry's version on the wire: a destination applies a record only if
// its version is newer than what it holds, which makes duplicated or reordered deltas harmless.
#pragma once

#include <atomic>
#include <cstdint>

#include "common/net_types.h"

namespace baton {

// RFC 9293 connection states as a middlebox sees them (both ends' view folded into one).
enum class TcpState : uint8_t {
  kNone = 0,
  kSynSent,      // initiator's SYN seen
  kSynSent2,     // simultaneous open: both sides sent SYN
  kSynRecv,      // responder's SYN-ACK seen
  kEstablished,  // initiator's ACK of the SYN-ACK seen
  kFinWait,      // one side sent FIN
  kCloseWait,    // the FIN was acknowledged, other side still open (half-close)
  kLastAck,      // both sides sent FIN, last ACK pending
  kTimeWait,     // both FINs acknowledged
  kClose,        // RST seen
  kCount
};
const char* tcp_state_name(TcpState s);

// Per-direction window tracking state (Guido van Rooij, "Real Stateful TCP Packet Filtering in
// IP Filter"; the same scheme as Linux nf_conntrack_proto_tcp): the sender's highest sequence end,
// the highest end the receiver's window allows, the largest window seen, the window scale.
struct TcpPeer {
  uint32_t end = 0;     // highest seq + len sent by this side
  uint32_t maxend = 0;  // highest ack + window (scaled) the other side allowed us
  uint32_t maxwin = 0;  // largest scaled window this side advertised
  uint8_t wscale = 0;   // shift this side asked for (0 when not negotiated)
  uint8_t flags = 0;    // TcpPeerFlag bits
  // Before this side's first segment (no kDataSeen): a bare ACK of its went through in SYN_SENT
  // and `end` holds its ack (TcpTracker, the half-open case). Handshake-local: not on the wire.
  uint8_t half_open_ack = 0;
  uint8_t reserved = 0;
};
static_assert(sizeof(TcpPeer) == 16);

namespace peerflag {
constexpr uint8_t kWscaleSeen = 0x01;   // this side sent a window-scale option in its SYN
constexpr uint8_t kSackPerm = 0x02;
constexpr uint8_t kFinSent = 0x04;
constexpr uint8_t kFinAcked = 0x08;     // the other side acknowledged this side's FIN
constexpr uint8_t kDataSeen = 0x10;     // end/maxend valid (first segment seen)
}  // namespace peerflag

namespace connflag {
constexpr uint8_t kOrigIsHi = 0x01;   // the initiator is the key's hi endpoint
constexpr uint8_t kPending = 0x02;    // installed by a migration, not yet active
// Has an L7 proxy record (lb/l7_proxy.h), so that the packet path asks the proxy only for these:
// the proxy's side table is another line (and page walk) per packet, never prefetched, and with
// an L7 service configured it doubled an L4 LB packet's cost at 1M flows. Host-local (not a
// wire flag): set where the record is made (a cookie's ACK, a migration's install).
constexpr uint8_t kL7 = 0x04;
constexpr uint8_t kReplied = 0x08;    // UDP/ICMP: the responder has answered
constexpr uint8_t kFromPeer = 0x10;   // arrived through a migration (never loosely picked up)
constexpr uint8_t kXlate = 0x20;      // translated: its ConnXlate record is valid (nat/conn_xlate.h)
}  // namespace connflag

constexpr uint32_t kNoSlot = 0xffffffffu;

// Per-connection accounting (ConnTable::Params::accounting), by Dir; written with the entry,
// inside its seqlock bracket.
struct ConnCounters {
  uint64_t packets[2] = {0, 0};
  uint64_t bytes[2] = {0, 0};
};

struct ConnEntry {
  std::atomic<uint32_t> version{0};   // seqlock; even = stable
  uint8_t l4_state = 0;               // TcpState for TCP; unused otherwise
  uint8_t flags = 0;                  // connflag bits
  uint16_t vm_id = 0;                 // 0 = belongs to no VM
  uint32_t last_seen = 0;             // seconds on the owner's clock (Clock::now_s)
  uint8_t age_class = 0;              // which aging list it is on
  uint8_t zone = 0;                   // zone of the initiator's side (ingress port's zone)
  // Migration change tracking, written by the owner only: the VM's tracking epoch in which this
  // entry was last queued for a delta; 0 = never. Cleared before the VM's epoch wraps
  // (migrate::begin_epoch), so that an idle entry cannot alias a new epoch.
  uint16_t mig_epoch = 0;
  TcpPeer peer[2];                    // indexed by Dir: [kLoToHi] is the lo endpoint as sender
  // Intrusive links, slot numbers: the VM index (per VM and owner) and the owner's aging list.
  uint32_t vm_prev = kNoSlot, vm_next = kNoSlot;
  uint32_t age_prev = kNoSlot, age_next = kNoSlot;

  ConnEntry() = default;
  ConnEntry(const ConnEntry& o) { copy_from(o); }
  ConnEntry& operator=(const ConnEntry& o) {
    copy_from(o);
    return *this;
  }
  // Direction the initiator sends in.
  Dir orig_dir() const { return (flags & connflag::kOrigIsHi) ? Dir::kHiToLo : Dir::kLoToHi; }

 private:
  void copy_from(const ConnEntry& o) {
    version.store(o.version.load(std::memory_order_relaxed), std::memory_order_relaxed);
    l4_state = o.l4_state; flags = o.flags; vm_id = o.vm_id; last_seen = o.last_seen;
    age_class = o.age_class; zone = o.zone; mig_epoch = o.mig_epoch;
    peer[0] = o.peer[0]; peer[1] = o.peer[1];
    vm_prev = o.vm_prev; vm_next = o.vm_next; age_prev = o.age_prev; age_next = o.age_next;
  }
};
static_assert(sizeof(ConnEntry) == 64);

// What moves on an established entry, addressed by slot: a migration's compact update
// (migrate/codec.h) as the destination's owner writes it into the entry its installer learned
// holds the key. Filled in place, field by field: its own fields start unset (peer and
// counters zeroed by their types), and whoever makes one writes every field.
struct ConnUpdate {
  ConnUpdate() {}
  uint32_t slot;         // at the destination
  uint32_t version;      // the source's entry version
  uint64_t fingerprint;  // of the key the slot must still hold (FlowKey::fingerprint)
  uint32_t idle_s;       // age at the source; last_seen = now - idle_s
  uint8_t proto, l4_state, flags, zone;
  TcpPeer peer[2];
  ConnCounters counters;
};

}  // namespace baton
