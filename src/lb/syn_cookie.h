// SPDX-License-Identifier: Apache-2.0
//
// SynCookie: stateless SYN cookies (RFC 4987 3.6) for the L7 load balancer, which answers the
// client's handshake itself: a SYN costs no state, the SYN-ACK's sequence number carries what
// the LB must remember, and the client's ACK proves it received it. Pure logic: the caller
// passes the clock; no DPDK.
//
// Theory of operation, as Linux net/ipv4/syncookies.c:
//   cookie = H0(tuple) + client_isn + (count << 24) + ((H1(tuple, count) + mss_index) mod 2^24)
// where tuple is the SYN's (src, dst, sport, dport), count = now / 64 s, H0 and H1 SipHash-2-4
// under two independent keys, and mss_index (0..3) picks the largest entry of a small MSS table
// not above the client's MSS. The client's ACK carries seq = client_isn + 1 and
// ack = cookie + 1; check() subtracts H0 and client_isn, reads count's low 8 bits from the top
// byte, accepts only a count of now or one interval before (a cookie lives 64 to 128 s; Linux
// uses 60 s intervals), recomputes H1 for that count and accepts only a remainder below 4.
// The MSS index is protected only by that range check: an ack changed by 1..3 may validate with
// another MSS, as in Linux, which gains nothing for someone who saw the SYN-ACK anyway; any other
// change fails except with probability about 2^-22.
//
// A cookie has no room for the other SYN options, so, as Linux's cookie_init_timestamp, when
// the client offered timestamps they ride in the low 6 bits of the SYN-ACK's TSval, which the
// client echoes in TSecr: bits 0-3 the client's window scale (15 = none), bit 4 SACK-permitted,
// bit 5 ECN. The TSval is the caller's clock rounded down to those bits, so it never runs ahead
// of the clock. Without timestamps only the MSS survives: the SYN-ACK grants no window scale,
// SACK or ECN (issue() says what it may grant). These option bits are not authenticated (as in
// Linux): a client that passed the cookie can only hurt its own connection with them.
//
// Secrets. A SynCookieSecret is two 128-bit keys; every worker that may see the ACK of a SYN
// it answered needs the same secret. rotate() makes a new secret current and keeps the
// previous one for validation while its cookies can still be valid (2 intervals), so a
// rotation breaks no handshake in flight.
//
// PRF choice: OpenSSL 3's EVP_MAC "SIPHASH" (Debian 12 ships OpenSSL 3.0), with one keyed
// context per key reused through EVP_MAC_init(ctx, NULL, ...). Measured on the shared 2-core
// development machine at quiet moments: 80-100 ns per MAC (16-byte IPv4 input; 90 ns for 40
// bytes), so 200-230 ns per cookie issued or checked (two MACs; SynCookie test
// AcceptsManyClientsAndReportsCost prints it). The EVP layer is most of that (parameter lookups
// by name on every final); a context duplicated per call costs 136 ns per MAC, EVP_Q_mac
// 720 ns, and a plain C SipHash-2-4 24 ns (about 50 ns per cookie). The library costs about 2x
// the ~100 ns budget, not far beyond it, so it is used and there is no home-grown crypto to
// review; if the SYN-flood budget says otherwise, only SipHasher needs replacing, and its test
// (the published SipHash-2-4 vectors) stays.
//
// A SynCookie (its OpenSSL contexts) belongs to one thread: one per worker.
#pragma once

#include <openssl/types.h>

#include <array>
#include <cstdint>
#include <memory>
#include <optional>

#include "common/net_types.h"

namespace baton {

// SipHash-2-4 with a 64-bit output under one 128-bit key.
class SipHasher {
 public:
  using Key = std::array<uint8_t, 16>;
  // nullptr when OpenSSL offers no SipHash (e.g. a FIPS-only configuration).
  static std::unique_ptr<SipHasher> create(const Key& key);
  ~SipHasher();
  SipHasher(const SipHasher&) = delete;
  SipHasher& operator=(const SipHasher&) = delete;

  bool set_key(const Key& key);
  // The hash as the little-endian integer of SipHash's output bytes; nullopt if OpenSSL failed.
  std::optional<uint64_t> hash(const void* data, size_t len);

 private:
  explicit SipHasher(EVP_MAC_CTX* ctx) : ctx_(ctx) {}
  EVP_MAC_CTX* ctx_;
};

struct SynCookieSecret {
  SipHasher::Key h0{}, h1{};  // fill from a CSPRNG (RAND_bytes)
};

// The SYN options the cookie deals with. wscale: 0..14, or kNone.
struct TcpSynOptions {
  static constexpr int8_t kNone = -1;
  uint16_t mss = 0;  // 0 = no MSS option (RFC 9293 3.7.1 defaults apply)
  int8_t wscale = kNone;
  bool sack_permitted = false;
  bool timestamps = false;
  bool ecn = false;  // ECN-setup SYN (ECE and CWR, RFC 3168 6.1.1)
  bool operator==(const TcpSynOptions&) const = default;
};

// What the LB puts in its SYN-ACK.
struct SynCookieIssue {
  uint32_t isn = 0;      // the SYN-ACK's seq (ack = client_isn + 1)
  uint32_t tsval = 0;    // the SYN-ACK's TSval, when agreed.timestamps
  // What the SYN-ACK may grant, and what check() will recover: mss is the table entry encoded
  // (at most the client's); without timestamps, no window scale, SACK or ECN.
  TcpSynOptions agreed;
};

class SynCookie {
 public:
  static constexpr uint32_t kPeriodSeconds = 64;  // one counter interval
  static constexpr uint32_t kMaxAge = 2;          // intervals a cookie stays valid
  // Linux's tables: IPv4 {536, 1300, 1440, 1460}; IPv6 {1220, 1420, 1440, 8940}.
  static constexpr std::array<uint16_t, 4> kMssV4 = {536, 1300, 1440, 1460};
  static constexpr std::array<uint16_t, 4> kMssV6 = {1220, 1420, 1440, 8940};

  // nullptr when OpenSSL offers no SipHash.
  static std::unique_ptr<SynCookie> create(const SynCookieSecret& secret);

  // For a SYN: `syn` is its tuple (src = client), client_isn its seq, `offered` its options,
  // now_s a monotonic clock in seconds, ts_now the LB's TSval clock.
  SynCookieIssue issue(const Tuple& syn, uint32_t client_isn, const TcpSynOptions& offered,
                       uint64_t now_s, uint32_t ts_now);

  // For the client's first ACK (or first data segment) of a handshake the LB has no state for:
  // its tuple (src = client), seq and ack, and its TSecr if it carried a timestamp option.
  // Returns the options recovered (mss from the table; the rest from TSecr, timestamps = true
  // when TSecr was given), or nullopt when the cookie is not valid. On success the LB's ISN is
  // ack - 1, the client's seq - 1, and the LB's SYN-ACK TSval was `tsecr`.
  std::optional<TcpSynOptions> check(const Tuple& ack_tuple, uint32_t seq, uint32_t ack,
                                     std::optional<uint32_t> tsecr, uint64_t now_s);

  // Makes `next` current; the previous secret stays valid for cookies it issued up to now.
  // False (and the previous secret forgotten; the current one kept) if OpenSSL failed.
  bool rotate(const SynCookieSecret& next, uint64_t now_s);

 private:
  struct Keys {
    std::unique_ptr<SipHasher> h0, h1;
    bool set(const SynCookieSecret& s) { return h0->set_key(s.h0) && h1->set_key(s.h1); }
  };
  SynCookie() = default;
  static uint32_t counter(uint64_t now_s) { return static_cast<uint32_t>(now_s / kPeriodSeconds); }
  // The MSS index encoded in a cookie made by `keys`, or nullopt.
  std::optional<uint32_t> decode(Keys& keys, const Tuple& t, uint32_t client_isn, uint32_t cookie,
                                 uint32_t count);

  Keys keys_[2];
  int current_ = 0;
  bool have_previous_ = false;
  // Counter when the previous secret stopped issuing; 2 intervals later all its cookies are too
  // old anyway, and check() stops spending MACs on it.
  uint32_t rotated_at_ = 0;
};

}  // namespace baton
