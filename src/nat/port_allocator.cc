// SPDX-License-Identifier: Apache-2.0
#include "nat/port_allocator.h"

#include <algorithm>
#include <bit>

namespace baton {

namespace {

uint32_t mix(uint32_t x) {
  uint64_t h = (uint64_t{x} + 0x9e3779b97f4a7c15ull) * 0xbf58476d1ce4e5b9ull;
  return static_cast<uint32_t>(h >> 32);
}

// First bit i in [lo, hi) that is clear in w and set in pattern, or -1.
int32_t scan(const uint64_t* w, uint32_t lo, uint32_t hi, uint64_t pattern) {
  while (lo < hi) {
    const uint32_t wi = lo / 64;
    const uint32_t end = std::min(hi, (wi + 1) * 64);
    uint64_t cand = ~w[wi] & pattern & (~0ull << (lo % 64));
    const uint32_t nbits = end - wi * 64;  // bits [0, nbits) of this word are in range
    if (nbits < 64) cand &= (1ull << nbits) - 1;
    if (cand) return static_cast<int32_t>(wi * 64 + std::countr_zero(cand));
    lo = end;
  }
  return -1;
}

}  // namespace

std::string PortBlockLayout::check() const {
  if (port_lo == 0) return "port range must start at 1 or above";
  if (port_lo > port_hi) return "port range " + std::to_string(port_lo) + "-" +
                                std::to_string(port_hi) + " is empty";
  if (block_size == 0) return "block size must be at least 1";
  if (block_size > range())
    return "block size " + std::to_string(block_size) + " is larger than the port range";
  return {};
}

const char* port_alloc_status_name(PortAllocStatus s) {
  switch (s) {
    case PortAllocStatus::kOk: return "ok";
    case PortAllocStatus::kHostLimit: return "host_block_limit";
    case PortAllocStatus::kPoolExhausted: return "pool_exhausted";
    case PortAllocStatus::kBadProto: return "bad_proto";
    case PortAllocStatus::kNotOwned: return "not_owned";
    case PortAllocStatus::kInUse: return "in_use";
    case PortAllocStatus::kAddrConflict: return "addr_conflict";
  }
  return "unknown";
}

std::unique_ptr<PortAllocator> PortAllocator::create(const Params& p, std::string* err) {
  auto fail = [&](const std::string& why) -> std::unique_ptr<PortAllocator> {
    if (err) *err = "port allocator: " + why;
    return nullptr;
  };
  if (p.addresses.empty()) return fail("no outside address");
  if (p.addresses.size() > 0xffff) return fail("more than 65535 outside addresses");
  if (std::string why = p.layout.check(); !why.empty()) return fail(why);
  if (p.workers == 0 || p.worker >= p.workers)
    return fail("worker " + std::to_string(p.worker) + " of " + std::to_string(p.workers));
  if (p.layout.blocks() < p.workers)
    return fail(std::to_string(p.layout.blocks()) + " port blocks cannot be shared by " +
                std::to_string(p.workers) + " workers");
  if (p.max_blocks_per_host == 0) return fail("max blocks per host must be at least 1");

  std::unique_ptr<PortAllocator> a(new PortAllocator());
  a->p_ = p;
  for (uint16_t i = 0; i < p.addresses.size(); ++i) a->addr_sorted_.emplace_back(p.addresses[i], i);
  std::sort(a->addr_sorted_.begin(), a->addr_sorted_.end());
  for (size_t i = 1; i < a->addr_sorted_.size(); ++i)
    if (a->addr_sorted_[i].first == a->addr_sorted_[i - 1].first)
      return fail("outside address listed twice");

  // Blocks j < blocks() with j % workers == worker.
  a->per_addr_ = (p.layout.blocks() - p.worker + p.workers - 1) / p.workers;
  a->words_ = (p.layout.block_size + 63u) / 64u;
  const uint32_t n = static_cast<uint32_t>(p.addresses.size()) * a->per_addr_;
  a->blocks_.resize(n);
  a->bits_.assign(size_t{n} * kNatProtoSpaces * a->words_, 0);
  a->free_.resize(p.addresses.size());
  for (uint32_t id = 0; id < n; ++id) {  // ids of one address are consecutive: FIFO in port order
    Fifo& f = a->free_[a->addr_idx_of(id)];
    if (f.tail == kNone) f.head = id;
    else a->blocks_[f.tail].next = id;
    f.tail = id;
  }
  // Every host holds at least one block: at most n hosts; keep the load factor <= 1/2.
  a->hosts_.resize(std::bit_ceil(std::max<size_t>(16, size_t{n} * 2)));
  return a;
}

int PortAllocator::addr_index(be32 addr) const {
  auto it = std::lower_bound(addr_sorted_.begin(), addr_sorted_.end(),
                             std::make_pair(addr, uint16_t{0}));
  return it != addr_sorted_.end() && it->first == addr ? it->second : -1;
}

uint32_t PortAllocator::id_of(be32 addr, uint16_t port) const {
  const int a = addr_index(addr);
  const int32_t j = p_.layout.block_of(port);
  if (a < 0 || j < 0 || static_cast<uint32_t>(j) % p_.workers != p_.worker) return kNone;
  return local_id(static_cast<uint32_t>(a), static_cast<uint32_t>(j));
}

int32_t PortAllocator::find_free(uint32_t id, int space, int parity) const {
  const uint32_t bs = p_.layout.block_size;
  uint64_t pattern = ~0ull;
  if (parity >= 0) {
    // Bit i is port first + i: the wanted bits are those with (first + i) % 2 == parity.
    const bool odd_bits = ((p_.layout.first_port(block_j(id)) ^ parity) & 1) != 0;
    pattern = odd_bits ? 0xaaaaaaaaaaaaaaaaull : 0x5555555555555555ull;
  }
  const uint64_t* w = bitmap(id, space);
  const uint32_t from = blocks_[id].cursor[space];
  int32_t bit = scan(w, from, bs, pattern);
  return bit >= 0 ? bit : scan(w, 0, from, pattern);
}

uint16_t PortAllocator::take(uint32_t id, int space, uint32_t bit) {
  Block& b = blocks_[id];
  bitmap(id, space)[bit / 64] |= 1ull << (bit % 64);
  store(b.used[space], static_cast<uint16_t>(b.used[space] + 1));
  b.cursor[space] = static_cast<uint16_t>(bit + 1 == p_.layout.block_size ? 0 : bit + 1);
  ++stats_.allocs;
  ++stats_.ports_in_use;
  return static_cast<uint16_t>(p_.layout.first_port(block_j(id)) + bit);
}

PortAllocator::Host* PortAllocator::find_host(be32 host) {
  const size_t mask = hosts_.size() - 1;
  for (size_t i = mix(host.raw()) & mask; hosts_[i].used; i = (i + 1) & mask)
    if (hosts_[i].addr == host) return &hosts_[i];
  return nullptr;
}

PortAllocator::Host& PortAllocator::add_host(be32 host, uint16_t addr_idx) {
  const size_t mask = hosts_.size() - 1;
  size_t i = mix(host.raw()) & mask;
  while (hosts_[i].used) i = (i + 1) & mask;  // never full: load factor <= 1/2
  hosts_[i] = Host{host, kNone, addr_idx, 0, true};
  ++stats_.hosts;
  return hosts_[i];
}

// Linear probing deletion by backward shift: later entries of the probe run move into the hole
// unless their home position lies cyclically in (hole, their position].
void PortAllocator::erase_host(Host* h) {
  const size_t mask = hosts_.size() - 1;
  size_t hole = static_cast<size_t>(h - hosts_.data());
  hosts_[hole].used = false;
  for (size_t j = (hole + 1) & mask; hosts_[j].used; j = (j + 1) & mask) {
    const size_t home = mix(hosts_[j].addr.raw()) & mask;
    const bool stays = hole < j ? (home > hole && home <= j) : (home > hole || home <= j);
    if (stays) continue;
    hosts_[hole] = hosts_[j];
    hosts_[j].used = false;
    hole = j;
  }
  --stats_.hosts;
}

uint32_t PortAllocator::pop_available(uint32_t a, uint32_t now_s) {
  Fifo& f = free_[a];
  const uint32_t id = f.head;
  if (id == kNone || load(blocks_[id].available_at, std::memory_order_relaxed) > now_s)
    return kNone;
  f.head = blocks_[id].next;
  if (f.head == kNone) f.tail = kNone;
  return id;
}

void PortAllocator::give_block(uint32_t id, Host& h) {
  blocks_[id].next = h.first_block;
  h.first_block = id;
  ++h.nblocks;
  store(blocks_[id].lease, uint64_t{h.addr.raw()} | uint64_t{1} << 32, std::memory_order_release);
  ++stats_.block_leases;
  ++stats_.blocks_leased;
}

void PortAllocator::release_block(uint32_t id, uint32_t now_s) {
  Block& b = blocks_[id];
  const be32 holder = be32::from_raw(static_cast<uint32_t>(b.lease));
  if (Host* h = find_host(holder)) {
    uint32_t* link = &h->first_block;
    while (*link != kNone && *link != id) link = &blocks_[*link].next;
    if (*link == id) *link = b.next;
    if (--h->nblocks == 0) erase_host(h);
  }
  // Hold-down stamp before the state word: a reader that sees "free" sees the stamp.
  store(b.available_at, now_s + p_.hold_down_s);
  store(b.lease, uint64_t{holder.raw()}, std::memory_order_release);  // kFree, last holder kept
  b.next = kNone;
  Fifo& f = free_[addr_idx_of(id)];
  if (f.tail == kNone) f.head = id;
  else blocks_[f.tail].next = id;
  f.tail = id;
  ++stats_.block_releases;
  --stats_.blocks_leased;
}

PortAllocator::Result PortAllocator::allocate(uint8_t proto, be32 inside, be16 inside_port,
                                              uint32_t now_s) {
  Result r;
  const int space = nat_proto_space(proto);
  if (space < 0) {
    r.status = PortAllocStatus::kBadProto;
    return r;
  }
  const int parity = p_.preserve_parity ? (inside_port.host() & 1) : -1;
  auto done = [&](uint32_t id, uint32_t bit) {
    r.addr = p_.addresses[addr_idx_of(id)];
    r.port = be16::from_host(take(id, space, bit));
    return r;
  };

  Host* h = find_host(inside);
  if (h && p_.preserve_port) {
    const uint32_t id = id_of(p_.addresses[h->addr_idx], inside_port.host());
    if (id != kNone && blocks_[id].lease == (uint64_t{inside.raw()} | uint64_t{1} << 32)) {
      const uint32_t bit = inside_port.host() - p_.layout.first_port(block_j(id));
      if (!(bitmap(id, space)[bit / 64] >> (bit % 64) & 1)) {
        ++stats_.preserved;
        return done(id, bit);
      }
    }
  }
  // Order of preference: a port of the inside port's parity in a held block (RFC 4787 REQ-4),
  // one in a new block, then any port in a held block.
  uint32_t id = kNone;
  int32_t bit = h ? find_in_host(*h, space, parity, &id) : -1;
  if (bit >= 0) return done(id, static_cast<uint32_t>(bit));

  if (!h || h->nblocks < p_.max_blocks_per_host) {
    // A new block: on the host's address (paired pooling, RFC 4787 REQ-2), or for a new host on
    // the first address with an available block, starting at a hash of the host.
    uint32_t a = 0;
    const uint32_t naddr = static_cast<uint32_t>(p_.addresses.size());
    if (h) {
      a = h->addr_idx;
      id = pop_available(a, now_s);
    } else {
      const uint32_t start = mix(inside.raw() ^ 0x2545f491u) % naddr;
      for (uint32_t i = 0; i < naddr && id == kNone; ++i) {
        a = (start + i) % naddr;
        id = pop_available(a, now_s);
      }
    }
    if (id != kNone) {
      give_block(id, h ? *h : add_host(inside, static_cast<uint16_t>(a)));
      bit = find_free(id, space, parity);
      if (bit < 0) bit = find_free(id, space, -1);  // a one-port block may lack the parity
      return done(id, static_cast<uint32_t>(bit));  // a block from the FIFO has every port free
    }
  }
  if (h && parity >= 0) {
    bit = find_in_host(*h, space, -1, &id);
    if (bit >= 0) return done(id, static_cast<uint32_t>(bit));
  }
  if (h && h->nblocks >= p_.max_blocks_per_host) {
    ++stats_.fail_host_limit;
    r.status = PortAllocStatus::kHostLimit;
  } else {
    ++stats_.fail_exhausted;
    r.status = PortAllocStatus::kPoolExhausted;
  }
  return r;
}

int32_t PortAllocator::find_in_host(const Host& h, int space, int parity, uint32_t* id) const {
  for (uint32_t b = h.first_block; b != kNone; b = blocks_[b].next) {
    if (blocks_[b].used[space] >= p_.layout.block_size) continue;
    const int32_t bit = find_free(b, space, parity);
    if (bit >= 0) {
      *id = b;
      return bit;
    }
  }
  return -1;
}

PortAllocStatus PortAllocator::reserve(uint8_t proto, be32 inside, be32 addr, be16 port) {
  const int space = nat_proto_space(proto);
  if (space < 0) return PortAllocStatus::kBadProto;
  const uint32_t id = id_of(addr, port.host());
  if (id == kNone) return PortAllocStatus::kNotOwned;
  Block& b = blocks_[id];
  const uint32_t bit = port.host() - p_.layout.first_port(block_j(id));
  const bool leased = (b.lease >> 32) == 1;
  if (leased) {
    if (static_cast<uint32_t>(b.lease) != inside.raw()) return PortAllocStatus::kInUse;
    if (bitmap(id, space)[bit / 64] >> (bit % 64) & 1) return PortAllocStatus::kInUse;
  } else {
    const uint32_t a = addr_idx_of(id);
    Host* h = find_host(inside);
    if (h && h->addr_idx != a) return PortAllocStatus::kAddrConflict;
    if (h && h->nblocks >= p_.max_blocks_per_host) return PortAllocStatus::kHostLimit;
    // Unlink from the middle of the address's FIFO (slow path: migrations, configuration).
    Fifo& f = free_[a];
    uint32_t prev = kNone;
    for (uint32_t s = f.head; s != id; s = blocks_[s].next) prev = s;
    if (prev == kNone) f.head = b.next;
    else blocks_[prev].next = b.next;
    if (f.tail == id) f.tail = prev;
    give_block(id, h ? *h : add_host(inside, static_cast<uint16_t>(a)));
  }
  take(id, space, bit);
  return PortAllocStatus::kOk;
}

std::optional<be32> PortAllocator::lessee(be32 addr, be16 port) const {
  const uint32_t id = id_of(addr, port.host());
  if (id == kNone) return std::nullopt;
  const uint64_t w = load(blocks_[id].lease, std::memory_order_acquire);
  if (static_cast<LeaseState>(w >> 32) != LeaseState::kLeased) return std::nullopt;
  return be32::from_raw(static_cast<uint32_t>(w));
}

bool PortAllocator::release(uint8_t proto, be32 addr, be16 port, uint32_t now_s) {
  const int space = nat_proto_space(proto);
  if (space < 0) return false;
  const uint32_t id = id_of(addr, port.host());
  if (id == kNone) return false;
  const uint32_t bit = port.host() - p_.layout.first_port(block_j(id));
  uint64_t& word = bitmap(id, space)[bit / 64];
  if (!(word >> (bit % 64) & 1)) return false;
  word &= ~(1ull << (bit % 64));
  Block& b = blocks_[id];
  store(b.used[space], static_cast<uint16_t>(b.used[space] - 1));
  ++stats_.releases;
  --stats_.ports_in_use;
  if (used_total(b) == 0) release_block(id, now_s);
  return true;
}

bool PortAllocator::in_use(uint8_t proto, be32 addr, be16 port) const {
  const int space = nat_proto_space(proto);
  const uint32_t id = space < 0 ? kNone : id_of(addr, port.host());
  if (id == kNone) return false;
  const uint32_t bit = port.host() - p_.layout.first_port(block_j(id));
  return bitmap(id, space)[bit / 64] >> (bit % 64) & 1;
}

}  // namespace baton
