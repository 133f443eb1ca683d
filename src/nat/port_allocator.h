// SPDX-License-Identifier: Apache-2.0
//
// PortAllocator: outside ports for dynamic source NAT, leased in blocks per inside address.
// Pure logic, no DPDK; one instance per worker, used only by that worker (except "any core").
//
// Theory of operation
//
//   pool addresses a0..aN-1  x  port range [port_lo, port_hi] cut into blocks of block_size ports
//   block j of every address belongs to worker j % workers          (port_owner())
//   a block is leased to one inside host; a host's blocks all sit on one outside address
//   ports inside a host's blocks are handed out per protocol (TCP, UDP, ICMP identifiers)
//
// * Blocks (RFC 6431 / RFC 7422 style port-block allocation): a host's first mapping leases a
//   block; later ones take ports from the host's blocks, and a host whose blocks are full for
//   that protocol leases another, up to max_blocks_per_host (then allocation fails with
//   kHostLimit; the caller counts it). The block size bounds how many log lines an operator
//   needs to know who used a port (one per block, not per connection).
// * Paired pooling (RFC 4787 REQ-2): a host's second and later blocks come from the outside
//   address of its first, so every mapping of the host shows the same address. Once a host holds
//   no block it is forgotten and may land elsewhere next time. The first address tried for a host
//   is a hash of the host, the same on every worker and every restart.
// * Ownership across workers: block j (counted per address, from port_lo) belongs to worker
//   j % workers, and a worker's allocator only ever hands out its own blocks. A packet addressed
//   to outside addr:port is therefore owned by port_owner(port) without any shared state: the
//   dispatcher sends replies there. For endpoint-independent mapping and paired pooling to hold
//   across workers, every outbound NAT flow of one inside host must be created on one worker;
//   inside_owner() is the suggested choice (a hash of the inside address).
// * No immediate reuse (RFC 6056 section 3, RFC 4787's spirit): within a block, ports are taken
//   next-fit from a per-protocol cursor, so a port just freed is handed out again only after the
//   cursor went round the block. A block whose ports are all free (every protocol) leaves its
//   host and waits hold_down_s before any host may lease it again: each address keeps its free
//   blocks in one FIFO, released blocks join at the tail stamped with the end of their
//   hold-down, and a lease takes the head only when that time has passed (stamps grow with time,
//   so the head is always the first to become available).
// * Port preservation (optional): when the inside port falls in a block the host already holds
//   and is free, the host gets it. Port parity (RFC 4787 REQ-4, optional, on by default): a port
//   of the inside port's parity in a held block, else in a new block while the host may lease
//   one, else any port of a held block.
//
// Threads: every method is owner-only except those marked "any core". A lease listing from
// another core reads each block's (host, state) as one atomic word and its port counts and
// hold-down stamp separately; a block that changes during the walk may show a count from just
// before or after. The object must outlive every reader.
#pragma once

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "common/net_types.h"

namespace baton {

// How the port range is cut into blocks. Ports past the last whole block are never used.
struct PortBlockLayout {
  uint16_t port_lo = 1024;
  uint16_t port_hi = 65535;
  uint16_t block_size = 64;

  uint32_t range() const { return uint32_t{port_hi} - port_lo + 1; }
  // Whole blocks per address.
  uint32_t blocks() const { return block_size ? range() / block_size : 0; }
  // Block number of `port` (per address), or -1 when the port is in no block.
  int32_t block_of(uint16_t port) const {
    if (port < port_lo || port > port_hi || block_size == 0) return -1;
    uint32_t b = (uint32_t{port} - port_lo) / block_size;
    return b < blocks() ? static_cast<int32_t>(b) : -1;
  }
  uint16_t first_port(uint32_t block) const {
    return static_cast<uint16_t>(port_lo + block * block_size);
  }
  // Empty if usable, else why not.
  std::string check() const;
};

// The worker whose PortAllocator owns outside `port` (the same for every pool address), or -1
// when the port is in no block (not a dynamic NAT port). workers >= 1.
inline int port_owner(uint16_t port, const PortBlockLayout& layout, uint16_t workers) {
  int32_t b = layout.block_of(port);
  return b < 0 || workers == 0 ? -1 : static_cast<int>(static_cast<uint32_t>(b) % workers);
}

// The worker suggested for every outbound NAT flow of inside host `inside` (see the header).
inline uint16_t inside_owner(be32 inside, uint16_t workers) {
  uint64_t h = (uint64_t{inside.raw()} ^ 0x5bd1e995u) * 0xff51afd7ed558ccdull;
  return workers ? static_cast<uint16_t>((h >> 32) % workers) : 0;
}

// Protocols with their own port space: TCP, UDP, ICMP (query identifiers).
constexpr uint8_t kNatProtoSpaces = 3;
// Index of proto's port space, or -1 if the NAT does not translate ports of that protocol.
constexpr int nat_proto_space(uint8_t proto) {
  return proto == static_cast<uint8_t>(IpProto::kTcp)    ? 0
         : proto == static_cast<uint8_t>(IpProto::kUdp)  ? 1
         : proto == static_cast<uint8_t>(IpProto::kIcmp) ? 2
                                                          : -1;
}

enum class PortAllocStatus : uint8_t {
  kOk = 0,
  kHostLimit,      // the host holds max_blocks_per_host blocks, all full for this protocol
  kPoolExhausted,  // no block available (for a host already paired: on its address)
  kBadProto,       // not TCP, UDP or ICMP
  kNotOwned,       // reserve(): address not in the pool, or port in no block of this worker
  kInUse,          // reserve(): the port is taken, or its block is leased to another host
  kAddrConflict,   // reserve(): the host's blocks are on another address (paired pooling)
};
const char* port_alloc_status_name(PortAllocStatus s);

// name, metric suffix (baton_<suffix>), help
#define BATON_FOREACH_PORT_ALLOC_COUNTER(X)                                                  \
  X(allocs, "nat_port_allocs_total", "Outside ports handed out")                            \
  X(releases, "nat_port_releases_total", "Outside ports given back")                        \
  X(block_leases, "nat_port_block_leases_total", "Port blocks leased to an inside host")    \
  X(block_releases, "nat_port_block_releases_total", "Port blocks back to the pool")        \
  X(fail_host_limit, "nat_port_fail_host_limit_total",                                      \
    "Allocations refused: host at its block limit")                                         \
  X(fail_exhausted, "nat_port_fail_exhausted_total", "Allocations refused: no free block")   \
  X(preserved, "nat_port_preserved_total", "Allocations that kept the inside port")

// Counters written by the owner only; gauges too. Read from any core (a value a few operations
// late is fine).
struct alignas(64) PortAllocatorStats {
#define BATON_COUNTER_FIELD(name, metric, help) uint64_t name = 0;
  BATON_FOREACH_PORT_ALLOC_COUNTER(BATON_COUNTER_FIELD)
#undef BATON_COUNTER_FIELD
  uint64_t blocks_leased = 0;  // gauge
  uint64_t ports_in_use = 0;   // gauge, all protocols
  uint64_t hosts = 0;          // gauge: inside hosts holding at least one block
};

class PortAllocator {
 public:
  struct Params {
    std::vector<be32> addresses;       // the pool's outside addresses, distinct
    PortBlockLayout layout;
    uint16_t max_blocks_per_host = 8;
    uint32_t hold_down_s = 120;        // a released block waits this long before reuse
    uint16_t worker = 0;               // this allocator hands out blocks j with j % workers == worker
    uint16_t workers = 1;
    bool preserve_port = true;         // keep the inside port when it is free in a held block
    bool preserve_parity = true;       // RFC 4787 REQ-4
  };

  static std::unique_ptr<PortAllocator> create(const Params& p, std::string* err);

  struct Result {
    PortAllocStatus status = PortAllocStatus::kOk;
    be32 addr;
    be16 port;
    bool ok() const { return status == PortAllocStatus::kOk; }
  };
  // An outside (addr, port) for a new mapping of inside:inside_port over proto.
  Result allocate(uint8_t proto, be32 inside, be16 inside_port, uint32_t now_s);
  // Takes exactly addr:port for host `inside` (a mapping installed with a fixed outside endpoint,
  // e.g. handed over by a migration). Leases the port's block to the host if it is free, ignoring
  // its hold-down (the port is not new to the world: its mapping moves). Never for an address or
  // block this worker does not own (kNotOwned).
  PortAllocStatus reserve(uint8_t proto, be32 inside, be32 addr, be16 port);
  // Gives back a port from allocate()/reserve(). False (and no change) if it was not in use.
  bool release(uint8_t proto, be32 addr, be16 port, uint32_t now_s);

  // ---- Any core ----------------------------------------------------------------------------

  enum class LeaseState : uint8_t { kFree = 0, kLeased = 1 };
  struct Lease {
    be32 outside;             // pool address
    uint16_t first_port = 0;  // host order
    uint16_t last_port = 0;
    be32 host;                // inside address (leased) or last holder (held)
    bool held = false;        // released, in hold-down until available_at
    uint32_t available_at = 0;
    uint16_t ports_used[kNatProtoSpaces] = {0, 0, 0};
  };
  // fn(const Lease&) for every leased block and every block still in hold-down at now_s.
  template <class Fn>
  void for_each_lease(uint32_t now_s, Fn&& fn) const;

  // The inside host addr:port's block is leased to, or nullopt when the block is free (or not
  // this worker's). Any core (one atomic read of the block's lease word).
  std::optional<be32> lessee(be32 addr, be16 port) const;
  // Whether addr:port is handed out for proto (tests, diagnostics).
  bool in_use(uint8_t proto, be32 addr, be16 port) const;
  const PortAllocatorStats& stats() const { return stats_; }
  const Params& params() const { return p_; }
  // Blocks this allocator may lease (all addresses).
  uint32_t owned_blocks() const { return static_cast<uint32_t>(blocks_.size()); }

 private:
  static constexpr uint32_t kNone = 0xffffffffu;

  struct Block {
    uint64_t lease = 0;         // host raw (low 32) | LeaseState << 32; atomic_ref (readers)
    uint32_t next = kNone;      // next in its address's free FIFO, or in its host's list
    uint32_t available_at = 0;  // end of hold-down; atomic_ref
    uint16_t used[kNatProtoSpaces] = {0, 0, 0};    // atomic_ref
    uint16_t cursor[kNatProtoSpaces] = {0, 0, 0};  // next-fit start per protocol
  };
  struct Fifo {
    uint32_t head = kNone, tail = kNone;
  };
  struct Host {
    be32 addr;
    uint32_t first_block = kNone;
    uint16_t addr_idx = 0;
    uint16_t nblocks = 0;
    bool used = false;          // false = empty table slot
  };

  PortAllocator() = default;

  // Fields readers see are accessed through atomic_ref (C++20 has no atomic_ref<const T>).
  template <class T>
  static T load(const T& x, std::memory_order o) {
    return std::atomic_ref<T>(const_cast<T&>(x)).load(o);
  }
  template <class T>
  static void store(T& x, T v, std::memory_order o = std::memory_order_relaxed) {
    std::atomic_ref<T>(x).store(v, o);
  }

  // Local block id <-> (address index, per-address block number j).
  uint32_t local_id(uint32_t addr_idx, uint32_t j) const {
    return addr_idx * per_addr_ + (j - p_.worker) / p_.workers;
  }
  uint32_t addr_idx_of(uint32_t id) const { return id / per_addr_; }
  uint32_t block_j(uint32_t id) const { return (id % per_addr_) * p_.workers + p_.worker; }
  int addr_index(be32 addr) const;  // -1 if not in the pool
  // Local id of addr:port, or kNone when not this worker's.
  uint32_t id_of(be32 addr, uint16_t port) const;

  uint64_t* bitmap(uint32_t id, int space) {
    return &bits_[(size_t{id} * kNatProtoSpaces + space) * words_];
  }
  const uint64_t* bitmap(uint32_t id, int space) const {
    return &bits_[(size_t{id} * kNatProtoSpaces + space) * words_];
  }
  // Takes bit `bit` of block id's space (must be free); returns the port.
  uint16_t take(uint32_t id, int space, uint32_t bit);
  // A free bit next-fit from the cursor; parity 0/1 restricts to ports of that parity, -1 any.
  int32_t find_free(uint32_t id, int space, int parity) const;
  // The same over every block of host h; *id gets the block.
  int32_t find_in_host(const Host& h, int space, int parity, uint32_t* id) const;

  Host* find_host(be32 host);
  Host& add_host(be32 host, uint16_t addr_idx);  // the caller gives it a block at once
  void erase_host(Host* h);                       // moves other entries: pointers go stale

  // Head of address a's free FIFO if its hold-down has passed at now_s (unlinked), else kNone.
  uint32_t pop_available(uint32_t a, uint32_t now_s);
  void give_block(uint32_t id, Host& h);
  void release_block(uint32_t id, uint32_t now_s);
  uint16_t used_total(const Block& b) const {
    return static_cast<uint16_t>(b.used[0] + b.used[1] + b.used[2]);
  }

  Params p_;
  uint32_t per_addr_ = 0;             // blocks of one address this worker owns
  size_t words_ = 0;                  // 64-bit words per (block, space) bitmap
  std::vector<Block> blocks_;         // local id -> block
  std::vector<uint64_t> bits_;        // per (block, space): block_size bits, 1 = in use
  std::vector<Fifo> free_;            // per address: free blocks, oldest release first
  std::vector<Host> hosts_;           // open addressing, linear probing, power-of-two size
  std::vector<std::pair<be32, uint16_t>> addr_sorted_;  // (address, index), for addr_index()
  PortAllocatorStats stats_;
};

template <class Fn>
void PortAllocator::for_each_lease(uint32_t now_s, Fn&& fn) const {
  for (uint32_t id = 0; id < blocks_.size(); ++id) {
    const Block& b = blocks_[id];
    const uint64_t w = load(b.lease, std::memory_order_acquire);
    const auto st = static_cast<LeaseState>(w >> 32);
    const uint32_t avail = load(b.available_at, std::memory_order_relaxed);
    const bool held = st == LeaseState::kFree && avail > now_s;
    if (st != LeaseState::kLeased && !held) continue;
    Lease l;
    l.outside = p_.addresses[addr_idx_of(id)];
    l.first_port = p_.layout.first_port(block_j(id));
    l.last_port = static_cast<uint16_t>(l.first_port + p_.layout.block_size - 1);
    l.host = be32::from_raw(static_cast<uint32_t>(w));
    l.held = held;
    l.available_at = held ? avail : 0;
    for (int s = 0; s < kNatProtoSpaces; ++s)
      l.ports_used[s] = load(b.used[s], std::memory_order_relaxed);
    fn(l);
  }
}

}  // namespace baton
