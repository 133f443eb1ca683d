// SPDX-License-Identifier: Apache-2.0
#include "lb/maglev.h"

#include <algorithm>
#include <set>

namespace baton {

namespace {

uint64_t fmix64(uint64_t k) {
  k ^= k >> 33;
  k *= 0xff51afd7ed558ccdull;
  k ^= k >> 33;
  k *= 0xc4ceb9fe1a85ec53ull;
  k ^= k >> 33;
  return k;
}

// Two independent hashes of the key give the permutation's offset and skip (paper, 3.4).
constexpr uint64_t kOffsetSeed = 0x6d61676c65766f66ull;  // "maglevof"
constexpr uint64_t kSkipSeed = 0x6d61676c6576736bull;    // "maglevsk"

}  // namespace

uint64_t stable_hash64(std::string_view bytes, uint64_t seed) {
  uint64_t h = 0xcbf29ce484222325ull ^ fmix64(seed + bytes.size());
  for (unsigned char c : bytes) h = (h ^ c) * 0x100000001b3ull;
  return fmix64(h);
}

bool Maglev::is_prime(uint32_t n) {
  if (n < 2) return false;
  if (n % 2 == 0) return n == 2;
  for (uint64_t d = 3; d * d <= n; d += 2)
    if (n % d == 0) return false;
  return true;
}

std::optional<Maglev> Maglev::build(std::span<const MaglevBackend> backends, uint32_t size,
                                    std::string* err) {
  auto fail = [&](const std::string& why) -> std::optional<Maglev> {
    if (err) *err = "maglev: " + why;
    return std::nullopt;
  };
  if (size < 3 || size > kMaxSize || !is_prime(size))
    return fail("table size " + std::to_string(size) + " is not a prime in [3, " +
                std::to_string(kMaxSize) + "]");

  std::set<uint32_t> ids;
  std::set<std::string_view> keys;
  for (const MaglevBackend& b : backends) {
    if (b.key.empty()) return fail("backend " + std::to_string(b.id) + " has an empty key");
    if (!ids.insert(b.id).second) return fail("duplicate backend id " + std::to_string(b.id));
    if (!keys.insert(b.key).second) return fail("duplicate backend key '" + b.key + "'");
  }

  // Turn order: by (key, id), so the table does not depend on the order of the input.
  std::vector<uint32_t> order;
  for (uint32_t i = 0; i < backends.size(); ++i)
    if (backends[i].weight > 0) order.push_back(i);
  std::sort(order.begin(), order.end(), [&](uint32_t a, uint32_t b) {
    if (backends[a].key != backends[b].key) return backends[a].key < backends[b].key;
    return backends[a].id < backends[b].id;
  });
  if (order.size() > size)
    return fail(std::to_string(order.size()) + " weighted backends do not fit " +
                std::to_string(size) + " slots");

  Maglev m;
  m.ids_.reserve(backends.size());
  for (const MaglevBackend& b : backends) m.ids_.push_back(b.id);
  if (order.empty()) return m;  // empty table: every lookup says kNoBackend

  constexpr uint32_t kFree = UINT32_MAX;
  m.slots_.assign(size, kFree);
  const size_t n = order.size();
  std::vector<uint64_t> offset(n), skip(n), next(n, 0), credit(n, 0);
  uint64_t max_weight = 0;
  for (size_t t = 0; t < n; ++t) {
    const MaglevBackend& b = backends[order[t]];
    offset[t] = stable_hash64(b.key, kOffsetSeed) % size;
    skip[t] = stable_hash64(b.key, kSkipSeed) % (size - 1) + 1;
    max_weight = std::max<uint64_t>(max_weight, b.weight);
  }

  uint32_t filled = 0;
  for (;;) {
    for (size_t t = 0; t < n; ++t) {
      credit[t] += backends[order[t]].weight;
      if (credit[t] < max_weight) continue;
      credit[t] -= max_weight;
      // Next preferred slot that is still free; the permutation visits all M slots, so one
      // is found while any is free.
      uint64_t c = (offset[t] + next[t] * skip[t]) % size;
      while (m.slots_[c] != kFree) {
        ++next[t];
        c = (offset[t] + next[t] * skip[t]) % size;
      }
      m.slots_[c] = order[t];
      ++next[t];
      if (++filled == size) return m;
    }
  }
}

std::vector<uint32_t> Maglev::slot_counts() const {
  std::vector<uint32_t> counts(ids_.size(), 0);
  for (uint32_t s : slots_) ++counts[s];
  return counts;
}

}  // namespace baton
