// SPDX-License-Identifier: Apache-2.0
//
// Wire vocabulary shared by every stage: byte order lives in the type (be16/be32 never convert
// implicitly), addresses are types, and a flow has one canonical key for both directions.
//
// Theory of operation for FlowKey: a connection is stored once, under the key whose first
// endpoint is the smaller (address, port) pair. A packet maps to that key and learns whether it
// travels lo->hi or hi->lo; the connection entry records which of the two was the initiator.
// One lookup per packet, one hash entry per connection, and both directions hash alike, which
// is also what lets any worker compute the owner of a flow (symmetric by construction).
#pragma once

#include <array>
#include <compare>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <string>
#include <optional>

namespace baton {

// Big-endian integers as they sit on the wire. Construct with from_host()/raw, read with host().
class be16 {
 public:
  constexpr be16() = default;
  static constexpr be16 from_host(uint16_t v) { return be16(__builtin_bswap16(v)); }
  static constexpr be16 from_raw(uint16_t raw) { return be16(raw); }
  constexpr uint16_t host() const { return __builtin_bswap16(raw_); }
  constexpr uint16_t raw() const { return raw_; }
  constexpr auto operator<=>(const be16&) const = default;

 private:
  constexpr explicit be16(uint16_t raw) : raw_(raw) {}
  uint16_t raw_ = 0;
};
static_assert(sizeof(be16) == 2);

class be32 {
 public:
  constexpr be32() = default;
  static constexpr be32 from_host(uint32_t v) { return be32(__builtin_bswap32(v)); }
  static constexpr be32 from_raw(uint32_t raw) { return be32(raw); }
  constexpr uint32_t host() const { return __builtin_bswap32(raw_); }
  constexpr uint32_t raw() const { return raw_; }
  constexpr auto operator<=>(const be32&) const = default;

 private:
  constexpr explicit be32(uint32_t raw) : raw_(raw) {}
  uint32_t raw_ = 0;
};
static_assert(sizeof(be32) == 4);

enum class Family : uint8_t { kNone = 0, kV4 = 4, kV6 = 6 };

// An IPv4 or IPv6 address in network byte order. IPv4 uses the first 4 bytes, the rest zero,
// so that a v4 key hashes over defined bytes.
struct IpAddr {
  std::array<uint8_t, 16> b{};

  static IpAddr v4(be32 a) {
    IpAddr r;
    uint32_t raw = a.raw();
    std::memcpy(r.b.data(), &raw, 4);
    return r;
  }
  static IpAddr v6(const uint8_t* p) {
    IpAddr r;
    std::memcpy(r.b.data(), p, 16);
    return r;
  }
  be32 as_v4() const {
    uint32_t raw;
    std::memcpy(&raw, b.data(), 4);
    return be32::from_raw(raw);
  }
  // Whether this is in the IPv4 form v4() makes: the 12 bytes after the address all zero.
  bool is_v4_form() const {
    uint32_t w;
    uint64_t q;
    std::memcpy(&w, b.data() + 4, 4);
    std::memcpy(&q, b.data() + 8, 8);
    return (w | q) == 0;
  }
  auto operator<=>(const IpAddr&) const = default;

  // Text forms; parse() accepts dotted quad or RFC 4291 text and says which family it was.
  std::string to_string(Family f) const;
  static std::optional<IpAddr> parse(const std::string& s, Family* family);
};

struct MacAddr {
  std::array<uint8_t, 6> b{};
  auto operator<=>(const MacAddr&) const = default;
  // Two loads each: std::array's == is a memcmp call, and mode l3 compares every frame's
  // destination with its port's MAC (18 instructions a packet, 5 % of a translated one's time).
  bool operator==(const MacAddr& o) const {
    uint32_t x, y;
    uint16_t u, v;
    std::memcpy(&x, b.data(), 4);
    std::memcpy(&y, o.b.data(), 4);
    std::memcpy(&u, b.data() + 4, 2);
    std::memcpy(&v, o.b.data() + 4, 2);
    return ((x ^ y) | (u ^ v)) == 0;
  }
  bool is_multicast() const { return b[0] & 1; }
  std::string to_string() const;
  static std::optional<MacAddr> parse(const std::string& s);
};

enum class IpProto : uint8_t { kIcmp = 1, kTcp = 6, kUdp = 17, kIcmp6 = 58 };

// A directional 5-tuple as parsed from one packet (plus VLAN, which scopes the flow).
struct Tuple {
  IpAddr src, dst;
  be16 sport, dport;   // ICMP query: both hold the identifier
  uint8_t proto = 0;
  Family family = Family::kNone;
  uint16_t vlan = 0;   // host order; 0 = untagged

  Tuple reverse() const {
    Tuple r = *this;
    r.src = dst;
    r.dst = src;
    r.sport = dport;
    r.dport = sport;
    return r;
  }
  bool operator==(const Tuple&) const = default;
};

// Which way a packet travels relative to its canonical key.
enum class Dir : uint8_t { kLoToHi = 0, kHiToLo = 1 };
inline Dir opposite(Dir d) { return d == Dir::kLoToHi ? Dir::kHiToLo : Dir::kLoToHi; }

// The canonical, direction-free key of a connection: 40 bytes, every byte defined (hashable).
struct FlowKey {
  IpAddr lo_addr, hi_addr;
  be16 lo_port, hi_port;
  uint8_t proto = 0;
  Family family = Family::kNone;
  uint16_t vlan = 0;

  // Canonicalises a tuple; *dir tells whether the tuple's source is the key's lo endpoint.
  static FlowKey from_tuple(const Tuple& t, Dir* dir) {
    FlowKey k;
    k.proto = t.proto;
    k.family = t.family;
    k.vlan = t.vlan;
    bool src_is_lo = t.src < t.dst || (t.src == t.dst && t.sport.host() <= t.dport.host());
    if (src_is_lo) {
      k.lo_addr = t.src; k.lo_port = t.sport; k.hi_addr = t.dst; k.hi_port = t.dport;
    } else {
      k.lo_addr = t.dst; k.lo_port = t.dport; k.hi_addr = t.src; k.hi_port = t.sport;
    }
    if (dir) *dir = src_is_lo ? Dir::kLoToHi : Dir::kHiToLo;
    return k;
  }
  // The tuple of a packet travelling in direction d.
  Tuple tuple(Dir d) const {
    Tuple t;
    t.proto = proto; t.family = family; t.vlan = vlan;
    if (d == Dir::kLoToHi) {
      t.src = lo_addr; t.sport = lo_port; t.dst = hi_addr; t.dport = hi_port;
    } else {
      t.src = hi_addr; t.sport = hi_port; t.dst = lo_addr; t.dport = lo_port;
    }
    return t;
  }
  bool operator==(const FlowKey&) const = default;

  // Symmetric 32-bit hash that picks the owning worker. It covers the two addresses and the
  // VLAN but not the ports, so a non-first fragment (no ports) lands on the owner of its flow.
  // Independent of rte_hash's hash, so owner choice and bucket choice do not correlate.
  // The owning worker of `workers`: owner_hash() scaled onto [0, workers) by a multiply, not a
  // division (a `div` per packet with two workers or more).
  uint16_t owner(uint16_t workers) const {
    return static_cast<uint16_t>((uint64_t{owner_hash()} * workers) >> 32);
  }
  uint32_t owner_hash() const {
    uint64_t h = 0x9e3779b97f4a7c15ull ^ vlan;
    const uint8_t* p = lo_addr.b.data();
    for (size_t i = 0; i < 32; i += 8) {  // lo_addr then hi_addr, contiguous
      uint64_t w;
      std::memcpy(&w, p + i, 8);
      h = (h ^ w) * 0xff51afd7ed558ccdull;
      h ^= h >> 32;
    }
    return static_cast<uint32_t>(h);
  }

  // A 64-bit fingerprint of the whole key under `seed`, never 0: how a migration's compact
  // update names a connection both ends already hold (migrate/codec.h). wyhash (final v4) for
  // 40 bytes: keyed, so that without the seed nobody picks a key to collide with another's, and
  // each 128-bit multiply takes the chained state as one operand, so that the zero words of an
  // IPv4 key (addresses are 16-byte fields) cannot zero a product.
  // A seed with its first round done: it depends on the seed alone, so whoever fingerprints
  // many keys under one seed (a migration) does it once, a multiply off each key's chain.
  struct Seed {
    explicit Seed(uint64_t seed) : mixed(seed ^ mum(seed ^ kS0, kS1)) {}
    uint64_t mixed;
  };
  uint64_t fingerprint(Seed seed) const {
    uint64_t w[5];
    std::memcpy(w, this, sizeof w);
    return fingerprint_of(w, seed);
  }
  uint64_t fingerprint(uint64_t seed) const { return fingerprint(Seed(seed)); }
  // The same of a key's five words (FlowKeyV4 has them without building the FlowKey).
  static uint64_t fingerprint_of(const uint64_t (&w)[5], Seed s) {
    constexpr uint64_t s0 = kS0, s1 = kS1;
    uint64_t seed = s.mixed;
    seed = mum(w[0] ^ s1, w[1] ^ seed);
    seed = mum(w[2] ^ s1, w[3] ^ seed);
    const unsigned __int128 r = static_cast<unsigned __int128>(w[3] ^ s1) * (w[4] ^ seed);
    const uint64_t h =
        mum(static_cast<uint64_t>(r) ^ s0 ^ sizeof w, static_cast<uint64_t>(r >> 64) ^ s1);
    return h ? h : 1;
  }

 private:
  static constexpr uint64_t kS0 = 0xa0761d6478bd642full, kS1 = 0xe7037ed1a0b428dbull;
  static uint64_t mum(uint64_t a, uint64_t b) {
    const unsigned __int128 r = static_cast<unsigned __int128>(a) * b;
    return static_cast<uint64_t>(r) ^ static_cast<uint64_t>(r >> 64);
  }
};
static_assert(sizeof(FlowKey) == 40, "FlowKey is hashed as raw bytes; no padding allowed");

// An IPv4 FlowKey in 16 bytes, as the IPv4 hashes store it (ConnTable, ConnXlateTable): both
// addresses (lo in the low half), then the FlowKey's last word (ports, protocol, family, VLAN)
// unchanged. rte_hash stores a key with an 8-byte data word rounded up to 16 bytes: 32 bytes a
// position instead of a FlowKey's 48, and two words to hash instead of five.
struct FlowKeyV4 {
  uint64_t addrs;
  uint64_t tail;

  static constexpr size_t kTailOffset = 32;  // FlowKey: lo_addr, hi_addr, then the tail word
  // Three 8-byte loads, not a copy of the key: the worker writes its keys in 8-byte words
  // (worker.cc canonical_key), and a copy's 16-byte loads could not be forwarded from them (a
  // stall when the key is hashed right after, half of process_burst's time at 64k NAT flows).
  static FlowKeyV4 of(const FlowKey& k) {
    const auto* p = reinterpret_cast<const uint8_t*>(&k);
    uint64_t lo, hi, tail;
    std::memcpy(&lo, p, 8);
    std::memcpy(&hi, p + 16, 8);
    std::memcpy(&tail, p + kTailOffset, 8);
    return {(lo & 0xffffffffu) | (hi << 32), tail};
  }
  // Each address is written as one 16-byte vector (the address, then zeros): copies of a
  // FlowKey load it in 16-byte halves, and a load that spans several smaller stores cannot be
  // forwarded from them. With four-byte stores here, that stall was the top of the migration
  // reader's profile (a 10k-entry final delta read in 0.85 ms, 0.73 ms with this).
  uint64_t fingerprint(FlowKey::Seed seed) const {  // expand().fingerprint(seed)
    const uint64_t w[5] = {addrs & 0xffffffffu, 0, addrs >> 32, 0, tail};
    return FlowKey::fingerprint_of(w, seed);
  }
  uint64_t fingerprint(uint64_t seed) const { return fingerprint(FlowKey::Seed(seed)); }
  FlowKey expand() const {
    using u64x2 = uint64_t __attribute__((vector_size(16)));
    const u64x2 lo = {addrs & 0xffffffffu, 0}, hi = {addrs >> 32, 0};
    FlowKey k;
    std::memcpy(k.lo_addr.b.data(), &lo, sizeof lo);
    std::memcpy(k.hi_addr.b.data(), &hi, sizeof hi);
    std::memcpy(reinterpret_cast<uint8_t*>(&k) + kTailOffset, &tail, sizeof tail);
    return k;
  }
};
static_assert(sizeof(FlowKeyV4) == 16);
static_assert(offsetof(FlowKey, lo_port) == FlowKeyV4::kTailOffset);

// Human form "tcp 10.0.0.1:1234 -> 10.0.0.2:80" of a tuple.
std::string to_string(const Tuple& t);
const char* proto_name(uint8_t proto);

}  // namespace baton
