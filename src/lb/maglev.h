// SPDX-License-Identifier: Apache-2.0
//
// Maglev: weighted consistent hashing of flows onto backends (pure, no DPDK).
//
// Theory of operation (Eisenbud et al., "Maglev: A Fast and Reliable Software Network Load
// Balancer", NSDI 2016, section 3.4)
//
// The lookup table has M slots, M prime. Each backend derives a permutation of 0..M-1 from its
// stable key: offset = h1(key) mod M, skip = h2(key) mod (M - 1) + 1, and the j-th preferred
// slot is (offset + j * skip) mod M (M prime makes every skip coprime with M, so the sequence
// visits every slot). Backends take turns claiming their next preferred slot that is still
// free until the table is full. A flow goes to table[hash mod M]: one load per lookup.
//
// Weights as Katran does them (MaglevHashV2): in every round each backend adds its weight to a
// credit, and takes a turn only while the credit reaches the largest weight (which is then
// subtracted). So the heaviest backend claims a slot every round and a backend of weight w
// claims w/max_weight of a slot per round: slot counts proportional to weights.
//
// Why consistent: a backend's preference list does not depend on the others, so when one
// backend leaves, the slots it held go to others and most remaining slots keep their owner
// (the paper measures the extra movement; it shrinks as M grows relative to N). Keep
// M >= 100 * N for shares within about 1% of the weights.
//
// Determinism: the input is sorted by (key, id) before the build and the hash is fixed
// (stable_hash64 below, not std::hash), so two instances, or the same instance after a
// restart or a migration, build the same table from the same backend set whatever order
// the configuration listed them in.
#pragma once

#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

namespace baton {

// A 64-bit hash that is the same in every process, build and host (FNV-1a over the bytes, then
// the MurmurHash3 finaliser for avalanche). Not keyed: do not rely on it against adversaries.
uint64_t stable_hash64(std::string_view bytes, uint64_t seed = 0);

struct MaglevBackend {
  uint32_t id = 0;      // returned by lookup(); unique within one build
  std::string key;      // stable identity that fixes the permutation, e.g. "10.0.0.1:80"
  uint32_t weight = 1;  // 0 = takes no slots
};

class Maglev {
 public:
  static constexpr uint32_t kDefaultSize = 65537;
  static constexpr uint32_t kMaxSize = 16777213;  // largest prime below 2^24
  static constexpr uint32_t kNoBackend = UINT32_MAX;

  // Builds the table. Errors (duplicate id or key, empty key, size not a prime in
  // [3, kMaxSize], more weighted backends than slots) return nullopt with *err set. Backends of
  // weight 0 are left out; when none is left the table is empty and lookup() says kNoBackend.
  static std::optional<Maglev> build(std::span<const MaglevBackend> backends, uint32_t size,
                                     std::string* err);

  Maglev() = default;

  // Backend id for a flow hash (any 32 or 64-bit hash of the flow), or kNoBackend when empty.
  uint32_t lookup(uint64_t hash) const {
    return empty() ? kNoBackend : ids_[slots_[hash % slots_.size()]];
  }
  // The same as an index into the `backends` span given to build(), or -1 when empty.
  int32_t lookup_index(uint64_t hash) const {
    return empty() ? -1 : static_cast<int32_t>(slots_[hash % slots_.size()]);
  }

  // Asks for the line lookup(hash) will read (the table is bigger than the caches hold).
  void prefetch(uint64_t hash) const {
    if (!empty()) __builtin_prefetch(&slots_[hash % slots_.size()]);
  }

  bool empty() const { return slots_.empty(); }
  uint32_t size() const { return static_cast<uint32_t>(slots_.size()); }
  // Slots held by each input backend (index as in build()'s span); for tests and metrics.
  std::vector<uint32_t> slot_counts() const;

  static bool is_prime(uint32_t n);

 private:
  std::vector<uint32_t> slots_;  // slot -> index into ids_ (input order)
  std::vector<uint32_t> ids_;    // input index -> backend id
};

}  // namespace baton
