// SPDX-License-Identifier: Apache-2.0
//
// The slot tables' live flags: one byte a slot, written by the table's owner (release) and read
// by any core (acquire). A listing walks all of them, so it skips empty stretches eight flags at
// a time (a plain 8-byte read: a flag it sees set is read again with acquire before fn runs).
#pragma once

#include <atomic>
#include <cstdint>
#include <cstring>

namespace baton {

inline bool live_flag(const uint8_t* flags, uint32_t i) {
  return std::atomic_ref<uint8_t>(const_cast<uint8_t&>(flags[i])).load(std::memory_order_acquire);
}

// fn(uint32_t slot) for every slot < n whose flag is set when visited.
template <class Fn>
void for_each_live(const uint8_t* flags, uint32_t n, Fn&& fn) {
  uint32_t s = 0;
  for (; s + 8 <= n; s += 8) {
    uint64_t w;
    std::memcpy(&w, flags + s, 8);
    if (w == 0) continue;
    for (uint32_t i = s; i < s + 8; ++i)
      if (live_flag(flags, i)) fn(i);
  }
  for (; s < n; ++s)
    if (live_flag(flags, s)) fn(s);
}

}  // namespace baton
