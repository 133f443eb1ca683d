// SPDX-License-Identifier: Apache-2.0
//
// Per-connection address translation: what a NAT or load-balancing decision leaves behind for
// the fast path, in a side table of the owner's connection-table shard.
//
// Theory of operation. A translated connection has two tuples: the original one (as the
// initiator sends it, which is the connection's key in ConnTable) and the reply one (as the
// responder sends it, after translation). Linux conntrack keeps both in one hash; here the
// reply tuple lives in this table's own index, which maps its canonical FlowKey to the
// connection's slot. A packet whose key misses the connection table is looked up here; a hit is
// the reply direction of a translated connection. The record (ConnXlate) holds the reply tuple,
// from which both rewrites follow (decide once on the slow path, apply on the fast path):
//   orig direction:  (src, dst) := (reply.dst, reply.src)
//   reply direction: (src, dst) := (orig.dst, orig.src)
// with the checksums patched incrementally (nat/checksum.h). SNAT, static NAT, port forwarding,
// hairpinning and both load-balancer modes are all this one rule with a different reply tuple.
//
// What a packet reads is not the record but the rewrite derived from it (nat/xlate_rewrite.h):
// both tuples and both directions' checksum deltas, 32 bytes kept in the connection's row of
// the connection table (ConnTable::ext: the entry's page, the counters' line), as Linux
// conntrack keeps its NAT extension with the connection. So neither direction reads a line
// more than an untranslated packet: a reply no longer reads the connection's key for the
// original tuple (a line of rte_hash's key store), and no packet sums the eight old and new
// words of its change. The records themselves (the mapping, service, backend and sticky
// references the slow path needs) are in an array of their own, by slot.
//
// Threads: owner only for writes and for the index. The control core reads records of live
// connections (API, migration): a record is written before the connection's kXlate flag is set
// inside its seqlock bracket and is not changed afterwards, and a slot is reused only after an
// RCU grace period (the connection table's), so a reader that saw the flag reads a stable
// record.
#pragma once

#include <rte_hash.h>

#include <array>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "common/net_types.h"
#include "conntrack/conn_table.h"
#include "nat/xlate_rewrite.h"

namespace baton {

enum class XlateKind : uint8_t {
  kNone = 0,
  kSnat,        // source rewritten to a pool address (dynamic mapping)
  kStatic,      // 1:1 static NAT, either direction
  kDnat,        // port forwarding: destination rewritten
  kHairpin,     // inside to a mapped outside address of another inside host (both rewritten)
  kLbNat,       // load balancer, destination rewritten to the backend
  kLbFullNat,   // load balancer, destination to the backend and source to a local address
  kCount
};
const char* xlate_kind_name(XlateKind k);

constexpr uint32_t kNoMapping = 0xffffffffu;
constexpr uint16_t kNoService = 0xffff;

// Plain record (no pointers): a migration copies it field by field.
struct ConnXlate {
  // The reply tuple, IPv4: the responder's packets carry src = reply_src, dst = reply_dst.
  be32 reply_src, reply_dst;
  be16 reply_sport, reply_dport;
  XlateKind kind = XlateKind::kNone;
  uint8_t nat_rule = 0xff;        // SNAT rule whose mapping table holds `mapping`, 0xff = none
  uint16_t service = kNoService;  // LB service index, kNoService when not load balanced
  uint32_t backend = UINT32_MAX;  // the service's backend id (lb/backend_pool.h)
  uint32_t mapping = kNoMapping;  // NAT mapping slot of the owner (session reference), if any
  uint32_t sticky_slot = UINT32_MAX;  // sticky entry the connection holds a reference on
  uint32_t sticky_gen = 0;
};
static_assert(sizeof(ConnXlate) == 32);

// What a connection's translation holds at its instance, in terms another instance can
// resolve (addresses and ports, never slot numbers or ids): the migration's handoff of a
// translated connection (src/migrate, docs/WIRE.md). The reply tuple and kind travel in
// ConnXlate's first fields; this says what stands behind them.
//   mapping  SNAT and hairpin: the dynamic mapping the connection holds a session on. The
//            destination claims exactly outside_addr:outside_port for inside_addr:inside_port
//            (PortAllocator::reserve) and refuses when its own policy differs.
//   lb       load-balanced: the service (VIP, port; proto is the connection's) and the backend
//            by address:port. The full-NAT local endpoint is the reply tuple's destination.
//   sticky   the sticky entry the connection holds a reference on (its group is the service's):
//            key without the group id, the backend it names, and its times relative to now.
struct XlateHandoff {
  bool has_mapping = false;
  uint8_t mapping_behavior = 0;  // MappingBehavior of the source's rule
  uint8_t filtering = 0;         // FilteringBehavior of the source's rule
  be32 inside_addr, outside_addr;
  be16 inside_port, outside_port;

  bool has_lb = false;
  be32 vip, backend_addr;
  be16 vip_port, backend_port;

  bool has_sticky = false;
  uint8_t sticky_method = 0;      // StickyKeyMethod
  uint8_t sticky_family = 0;      // StickyKey::family
  uint8_t sticky_prefix_len = 0;
  uint32_t sticky_value_len = 0;
  std::array<uint8_t, 16> sticky_data{};
  be32 sticky_backend_addr;
  be16 sticky_backend_port;
  uint32_t sticky_age_s = 0, sticky_idle_s = 0, sticky_ttl_s = 0;

  bool operator==(const XlateHandoff&) const = default;
};

// The reply tuple of a record as a directional Tuple (proto and vlan from the connection).
Tuple reply_tuple(const ConnXlate& x, uint8_t proto, uint16_t vlan);

class ConnXlateTable {
 public:
  // One record per slot of table, which must have been created with ext_bytes =
  // sizeof(XlateRewrite); capacity: reply keys held at most (translated connections live at
  // once).
  static std::unique_ptr<ConnXlateTable> create(const std::string& name, const ConnTable& table,
                                                uint32_t capacity, int socket, std::string* err);
  ~ConnXlateTable();
  ConnXlateTable(const ConnXlateTable&) = delete;
  ConnXlateTable& operator=(const ConnXlateTable&) = delete;

  // Sets the record of the connection at slot, which is in the table with its key and
  // direction (IPv4), and derives its rewrite, returned for the caller's route hints. Before
  // the connection's kXlate flag is set.
  XlateRewrite& set(uint32_t slot, const ConnXlate& x);
  const ConnXlate& at(uint32_t slot) const { return records_[slot]; }
  // What the packets of the connection at slot have rewritten (its row's line: ConnTable::ext).
  const XlateRewrite& rewrite(uint32_t slot) const {
    return *reinterpret_cast<const XlateRewrite*>(table_->ext(slot));
  }
  uint32_t slots() const { return table_->slots(); }

  // Connection slot whose reply tuple has key k, or -1.
  int32_t lookup_reply(const FlowKey& k) const;
  // The same for n <= RTE_HASH_LOOKUP_BULK_MAX keys: slots[i] = slot or -1.
  void lookup_reply_bulk(const FlowKey* const* keys, uint32_t n, int32_t* slots) const;
  // The same with each key's ConnTable::hash() given (the worker has it already; or nullptr):
  // used as the index's signature when create() found the two hash functions equal.
  void lookup_reply_bulk(const FlowKey* const* keys, const hash_sig_t* sigs, uint32_t n,
                         int32_t* slots) const;
  bool takes_signatures() const { return sigs_ok_; }
  // Registers the reply key of the connection at slot (an IPv4 key: reply tuples are). false:
  // index full (-ENOSPC), the key already taken by another connection (-EEXIST), or not IPv4
  // (-EINVAL); *rc says which.
  bool add_reply(const FlowKey& k, uint32_t slot, int* rc);
  void remove_reply(const FlowKey& k);
  uint32_t size() const { return rte_hash_count(index_); }

 private:
  ConnXlateTable() = default;
  rte_hash* index_ = nullptr;
  const ConnTable* table_ = nullptr;
  // The records, by slot, apart from the rows: read when a connection is set up, ends or is
  // handed off, never by its packets, which read only the rewrite in the row.
  std::vector<ConnXlate> records_;
  bool sigs_ok_ = false;  // ConnTable::hash() == the index's hash (checked in create())
};

}  // namespace baton
