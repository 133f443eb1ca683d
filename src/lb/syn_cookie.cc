// SPDX-License-Identifier: Apache-2.0
#include "lb/syn_cookie.h"

#include <openssl/core_names.h>
#include <openssl/evp.h>
#include <openssl/params.h>

#include <algorithm>
#include <cstring>

namespace baton {
namespace {

constexpr uint32_t kCookieBits = 24;
constexpr uint32_t kCookieMask = (1u << kCookieBits) - 1;
// cookie_init_timestamp's layout of the low TSval bits.
constexpr uint32_t kTsBits = 6;
constexpr uint32_t kTsWscaleMask = 0xf;  // 15 = no window scale
constexpr uint32_t kTsSack = 1u << 4;
constexpr uint32_t kTsEcn = 1u << 5;
constexpr int8_t kMaxWscale = 14;  // RFC 7323 2.3

const std::array<uint16_t, 4>& mss_table(const Tuple& t) {
  return t.family == Family::kV6 ? SynCookie::kMssV6 : SynCookie::kMssV4;
}

}  // namespace

std::unique_ptr<SipHasher> SipHasher::create(const Key& key) {
  EVP_MAC* mac = EVP_MAC_fetch(nullptr, "SIPHASH", nullptr);
  if (!mac) return nullptr;
  EVP_MAC_CTX* ctx = EVP_MAC_CTX_new(mac);
  EVP_MAC_free(mac);  // the context holds its own reference
  if (!ctx) return nullptr;
  std::unique_ptr<SipHasher> h(new SipHasher(ctx));
  if (!h->set_key(key)) return nullptr;
  return h;
}

SipHasher::~SipHasher() { EVP_MAC_CTX_free(ctx_); }

bool SipHasher::set_key(const Key& key) {
  size_t out = 8;  // SipHash-2-4-64; OpenSSL's default is the 128-bit variant
  OSSL_PARAM params[] = {OSSL_PARAM_construct_size_t(OSSL_MAC_PARAM_SIZE, &out), OSSL_PARAM_END};
  return EVP_MAC_init(ctx_, key.data(), key.size(), params) == 1;
}

std::optional<uint64_t> SipHasher::hash(const void* data, size_t len) {
  // A NULL key restarts the MAC under the key already set, without re-deriving it.
  uint8_t out[8];
  size_t out_len = 0;
  if (EVP_MAC_init(ctx_, nullptr, 0, nullptr) != 1 ||
      EVP_MAC_update(ctx_, static_cast<const uint8_t*>(data), len) != 1 ||
      EVP_MAC_final(ctx_, out, &out_len, sizeof out) != 1 || out_len != sizeof out)
    return std::nullopt;
  uint64_t v = 0;
  for (int i = 7; i >= 0; --i) v = v << 8 | out[i];
  return v;
}

namespace {

// H(key, src, dst, sport, dport, count), as Linux's cookie_hash(). The low 32 bits are used;
// a MAC failure yields 0, which makes check() fail (cookies then never validate).
uint32_t cookie_hash(SipHasher& h, const Tuple& t, uint32_t count, bool* ok) {
  uint8_t in[40];
  size_t n = 0;
  auto put = [&](const void* p, size_t len) {
    std::memcpy(in + n, p, len);
    n += len;
  };
  size_t alen = t.family == Family::kV6 ? 16 : 4;
  uint16_t sport = t.sport.raw(), dport = t.dport.raw();
  put(t.src.b.data(), alen);
  put(t.dst.b.data(), alen);
  put(&sport, 2);
  put(&dport, 2);
  put(&count, 4);
  std::optional<uint64_t> v = h.hash(in, n);
  if (!v) *ok = false;
  return v ? static_cast<uint32_t>(*v) : 0;
}

}  // namespace

std::unique_ptr<SynCookie> SynCookie::create(const SynCookieSecret& secret) {
  std::unique_ptr<SynCookie> c(new SynCookie());
  for (Keys& k : c->keys_) {
    k.h0 = SipHasher::create(secret.h0);
    k.h1 = SipHasher::create(secret.h1);
    if (!k.h0 || !k.h1) return nullptr;
  }
  return c;
}

SynCookieIssue SynCookie::issue(const Tuple& syn, uint32_t client_isn,
                                const TcpSynOptions& offered, uint64_t now_s, uint32_t ts_now) {
  const auto& table = mss_table(syn);
  uint32_t mss_index = table.size() - 1;
  while (mss_index > 0 && offered.mss < table[mss_index]) --mss_index;

  uint32_t count = counter(now_s);
  Keys& k = keys_[current_];
  bool ok = true;
  SynCookieIssue r;
  r.isn = cookie_hash(*k.h0, syn, 0, &ok) + client_isn + (count << kCookieBits) +
          ((cookie_hash(*k.h1, syn, count, &ok) + mss_index) & kCookieMask);

  r.agreed.mss = table[mss_index];
  if (offered.timestamps) {
    r.agreed.timestamps = true;
    r.agreed.wscale = std::min(offered.wscale, kMaxWscale);
    r.agreed.sack_permitted = offered.sack_permitted;
    r.agreed.ecn = offered.ecn;
    uint32_t options = r.agreed.wscale >= 0 ? static_cast<uint32_t>(r.agreed.wscale) : kTsWscaleMask;
    if (r.agreed.sack_permitted) options |= kTsSack;
    if (r.agreed.ecn) options |= kTsEcn;
    // The clock rounded down to the option bits (cookie_init_timestamp), modulo 2^32.
    r.tsval = (ts_now & ~((1u << kTsBits) - 1)) | options;
    if ((ts_now & ((1u << kTsBits) - 1)) < options) r.tsval -= 1u << kTsBits;
  }
  return r;
}

std::optional<uint32_t> SynCookie::decode(Keys& keys, const Tuple& t, uint32_t client_isn,
                                          uint32_t cookie, uint32_t count) {
  bool ok = true;
  uint32_t rest = cookie - cookie_hash(*keys.h0, t, 0, &ok) - client_isn;
  // Only 8 bits of the counter are in the cookie: the age is their difference modulo 2^8.
  uint32_t age = (count - (rest >> kCookieBits)) & (0xffffffffu >> kCookieBits);
  if (age >= kMaxAge) return std::nullopt;
  uint32_t mss_index = (rest - cookie_hash(*keys.h1, t, count - age, &ok)) & kCookieMask;
  if (!ok || mss_index >= kMssV4.size()) return std::nullopt;
  return mss_index;
}

std::optional<TcpSynOptions> SynCookie::check(const Tuple& ack_tuple, uint32_t seq, uint32_t ack,
                                              std::optional<uint32_t> tsecr, uint64_t now_s) {
  uint32_t count = counter(now_s);
  uint32_t client_isn = seq - 1, cookie = ack - 1;
  std::optional<uint32_t> mss_index = decode(keys_[current_], ack_tuple, client_isn, cookie, count);
  if (!mss_index && have_previous_ && count - rotated_at_ < kMaxAge)
    mss_index = decode(keys_[current_ ^ 1], ack_tuple, client_isn, cookie, count);
  if (!mss_index) return std::nullopt;

  TcpSynOptions o;
  o.mss = mss_table(ack_tuple)[*mss_index];
  if (!tsecr) return o;  // no timestamps: only the MSS was kept (cookie_timestamp_decode)
  uint32_t options = *tsecr & ((1u << kTsBits) - 1);
  o.timestamps = true;
  o.sack_permitted = options & kTsSack;
  o.ecn = options & kTsEcn;
  uint32_t wscale = options & kTsWscaleMask;  // 0..14, or 15 for none
  if (wscale != kTsWscaleMask) o.wscale = static_cast<int8_t>(wscale);
  return o;
}

bool SynCookie::rotate(const SynCookieSecret& next, uint64_t now_s) {
  int slot = current_ ^ 1;
  if (!keys_[slot].set(next)) {
    have_previous_ = false;  // that slot is neither the old previous nor usable
    return false;
  }
  current_ = slot;
  have_previous_ = true;
  rotated_at_ = counter(now_s);
  return true;
}

}  // namespace baton
