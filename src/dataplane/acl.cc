// SPDX-License-Identifier: Apache-2.0
#include "dataplane/acl.h"

#include <rte_acl.h>
#include <rte_errno.h>
#include <rte_memory.h>

#include <atomic>
#include <bit>
#include <cstddef>
#include <cstdio>
#include <cstring>

namespace baton {

namespace {

// rte_acl walks its input one byte for the first field, then in groups of exactly 4 bytes
// (one group per input_index, each group's fields contiguous and in definition order). Multi-byte
// fields are read most significant byte first, i.e. the key holds them in network order while
// rule values are given in host order (rte_acl.h: "fields ... in host byte order").
//
//   offset 0      zone            first field, 1 byte (bytes 1..3 are padding, never matched)
//   offset 4..7   proto | spare | vlan      one 4-byte group; spare is always wild, it only
//                                           fills the group to 4 bytes
//   then          src, dst        one 32-bit MASK field per 4 bytes (4 each for IPv6)
//   last          sport | dport   one 4-byte group of two 16-bit ranges
struct Key4 {
  uint8_t zone;
  uint8_t pad[3];
  uint8_t proto;
  uint8_t spare;
  be16 vlan;
  uint8_t src[4];
  uint8_t dst[4];
  be16 sport;
  be16 dport;
};
static_assert(sizeof(Key4) == 20);
static_assert(offsetof(Key4, proto) == 4 && offsetof(Key4, vlan) == 6);
static_assert(offsetof(Key4, src) == 8 && offsetof(Key4, dst) == 12);
static_assert(offsetof(Key4, sport) == 16 && offsetof(Key4, dport) == 18);

struct Key6 {
  uint8_t zone;
  uint8_t pad[3];
  uint8_t proto;
  uint8_t spare;
  be16 vlan;
  uint8_t src[16];
  uint8_t dst[16];
  be16 sport;
  be16 dport;
};
static_assert(sizeof(Key6) == 44);
static_assert(offsetof(Key6, src) == 8 && offsetof(Key6, dst) == 24);
static_assert(offsetof(Key6, sport) == 40 && offsetof(Key6, dport) == 42);

// Field indexes, shared by both families up to the addresses.
enum : uint8_t { kFZone, kFProto, kFSpare, kFVlan, kFAddr };
constexpr uint32_t kAddrWords4 = 1, kAddrWords6 = 4;
constexpr uint32_t fields_for(uint32_t words) { return kFAddr + 2 * words + 2; }
constexpr uint32_t kFields4 = fields_for(kAddrWords4);  // 8
constexpr uint32_t kFields6 = fields_for(kAddrWords6);  // 14

RTE_ACL_RULE_DEF(Rule4, kFields4);
RTE_ACL_RULE_DEF(Rule6, kFields6);

// Field definitions for a key with `words` 32-bit words per address.
rte_acl_config make_config(uint32_t words) {
  rte_acl_config c;
  std::memset(&c, 0, sizeof c);
  c.num_categories = 1;
  c.num_fields = fields_for(words);
  uint8_t input = 0;
  auto def = [&](uint8_t field, uint8_t type, uint8_t size, uint8_t in, uint32_t offset) {
    c.defs[field] = rte_acl_field_def{type, size, field, in, offset};
  };
  def(kFZone, RTE_ACL_FIELD_TYPE_BITMASK, 1, input++, 0);
  def(kFProto, RTE_ACL_FIELD_TYPE_BITMASK, 1, input, 4);
  def(kFSpare, RTE_ACL_FIELD_TYPE_BITMASK, 1, input, 5);
  def(kFVlan, RTE_ACL_FIELD_TYPE_RANGE, 2, input++, 6);
  uint32_t off = 8;
  for (uint32_t w = 0; w < 2 * words; w++, off += 4)  // src words, then dst words
    def(static_cast<uint8_t>(kFAddr + w), RTE_ACL_FIELD_TYPE_MASK, 4, input++, off);
  uint8_t sport = static_cast<uint8_t>(kFAddr + 2 * words);
  def(sport, RTE_ACL_FIELD_TYPE_RANGE, 2, input, off);
  def(static_cast<uint8_t>(sport + 1), RTE_ACL_FIELD_TYPE_RANGE, 2, input, off + 2);
  return c;
}

// Fills one rule's fields; f points at `fields_for(words)` rte_acl_field.
void fill_fields(const AclRule& r, uint8_t zone, uint32_t words, rte_acl_field* f) {
  std::memset(f, 0, sizeof(rte_acl_field) * fields_for(words));
  f[kFZone].value.u8 = zone;
  f[kFZone].mask_range.u8 = 0xff;
  f[kFProto].value.u8 = r.proto.value_or(0);
  f[kFProto].mask_range.u8 = r.proto ? 0xff : 0;
  f[kFVlan].value.u16 = r.vlan.value_or(0);
  f[kFVlan].mask_range.u16 = r.vlan ? *r.vlan : 0xffff;
  auto addr = [&](const std::optional<Prefix>& p, uint32_t first) {
    for (uint32_t w = 0; w < words; w++) {
      rte_acl_field& x = f[first + w];
      if (!p) continue;  // value 0, mask length 0: any
      uint32_t raw;
      std::memcpy(&raw, p->addr.b.data() + 4 * w, 4);
      int bits = static_cast<int>(p->len) - 32 * static_cast<int>(w);
      x.value.u32 = be32::from_raw(raw).host();
      x.mask_range.u32 = static_cast<uint32_t>(bits < 0 ? 0 : bits > 32 ? 32 : bits);
    }
  };
  addr(r.src, kFAddr);
  addr(r.dst, kFAddr + words);
  uint32_t sport = kFAddr + 2 * words;
  f[sport].value.u16 = r.sport.lo;
  f[sport].mask_range.u16 = r.sport.hi;
  f[sport + 1].value.u16 = r.dport.lo;
  f[sport + 1].mask_range.u16 = r.dport.hi;
}

bool family_has(const AclRule& r, Family fam) {
  if (r.src) return r.src->family == fam;
  if (r.dst) return r.dst->family == fam;
  return true;  // no address: the rule applies to both families
}

// Builds one family's context from the rules that apply to it; nullptr with *err empty when
// there are none (rte_acl refuses to build an empty set, and there is nothing to look up).
template <typename RuleT>
rte_acl_ctx* build_family(const std::vector<AclRule>& rules, const std::vector<uint8_t>& zone_of,
                          Family fam, uint32_t words, std::string* err) {
  static std::atomic<uint32_t> seq{0};
  std::vector<RuleT> out;
  for (size_t i = 0; i < rules.size(); i++) {
    if (!family_has(rules[i], fam)) continue;
    RuleT r;
    std::memset(&r, 0, sizeof r);
    r.data.category_mask = 1;
    // Earlier rules get higher priority: rte_acl returns the highest-priority match.
    r.data.priority = RTE_ACL_MAX_PRIORITY - static_cast<int32_t>(i);
    r.data.userdata = static_cast<uint32_t>(i + 1);  // 0 is rte_acl's "no match"
    fill_fields(rules[i], zone_of[i], words, r.field);
    out.push_back(r);
  }
  if (out.empty()) return nullptr;

  // Names must be unique: rte_acl_create() hands back an existing context of the same name,
  // and a reload builds the new ACL while the old one is still in use.
  char name[RTE_ACL_NAMESIZE];
  std::snprintf(name, sizeof name, "baton-acl%c-%u", fam == Family::kV4 ? '4' : '6',
                seq.fetch_add(1));
  rte_acl_param prm;
  std::memset(&prm, 0, sizeof prm);
  prm.name = name;
  prm.socket_id = SOCKET_ID_ANY;
  prm.rule_size = RTE_ACL_RULE_SZ(fields_for(words));
  prm.max_rule_num = static_cast<uint32_t>(out.size());
  rte_acl_ctx* ctx = rte_acl_create(&prm);
  if (!ctx) {
    *err = std::string("rte_acl_create: ") + rte_strerror(rte_errno);
    return nullptr;
  }
  int rc = rte_acl_add_rules(ctx, reinterpret_cast<const rte_acl_rule*>(out.data()),
                             static_cast<uint32_t>(out.size()));
  if (rc == 0) {
    rte_acl_config cfg = make_config(words);
    rc = rte_acl_build(ctx, &cfg);
    if (rc != 0) *err = std::string("rte_acl_build: ") + std::strerror(-rc);
  } else {
    *err = std::string("rte_acl_add_rules: ") + std::strerror(-rc);
  }
  if (rc != 0) {
    rte_acl_free(ctx);
    return nullptr;
  }
  return ctx;
}

template <typename KeyT>
void fill_key(const AclQuery& q, KeyT* k, size_t addr_len) {
  // rte_acl reads the key in 4-byte words right after this; each word is stored whole, from
  // registers. Filled field by field (zone, then proto and vlan, then the ports), three words
  // came from narrower stores still in flight, and each read of them stalled (store
  // forwarding), about a third of this function's time in the new-connections profile.
  static_assert(std::endian::native == std::endian::little);
  static_assert(offsetof(KeyT, dport) == offsetof(KeyT, sport) + 2);
  auto* out = reinterpret_cast<uint8_t*>(k);
  const uint32_t zone = q.zone;  // and the three pad bytes
  const uint32_t proto_vlan =
      q.tuple.proto | uint32_t{be16::from_host(q.tuple.vlan).raw()} << 16;  // spare = 0
  const uint32_t ports = q.tuple.sport.raw() | uint32_t{q.tuple.dport.raw()} << 16;
  std::memcpy(out + offsetof(KeyT, zone), &zone, 4);
  std::memcpy(out + offsetof(KeyT, proto), &proto_vlan, 4);
  std::memcpy(k->src, q.tuple.src.b.data(), addr_len);
  std::memcpy(k->dst, q.tuple.dst.b.data(), addr_len);
  std::memcpy(out + offsetof(KeyT, sport), &ports, 4);
}

constexpr uint32_t kChunk = 64;

}  // namespace

std::unique_ptr<Acl> Acl::build(const std::vector<AclRule>& rules,
                                const std::vector<ZoneConfig>& zones, std::string* err) {
  std::string local;
  if (!err) err = &local;
  err->clear();
  if (zones.size() > 256) {
    *err = "at most 256 zones (the ACL key holds an 8-bit zone index)";
    return nullptr;
  }
  std::unique_ptr<Acl> acl(new Acl());
  for (auto& z : zones) acl->zone_default_.push_back(z.default_action);
  std::vector<uint8_t> zone_of;
  for (auto& r : rules) {
    size_t z = 0;
    while (z < zones.size() && zones[z].name != r.zone) z++;
    if (z == zones.size()) {
      *err = "rule at line " + std::to_string(r.line) + ": unknown zone '" + r.zone + "'";
      return nullptr;
    }
    zone_of.push_back(static_cast<uint8_t>(z));
    acl->rules_.push_back(RuleInfo{r.action, r.log});
  }
  acl->ctx4_ = build_family<Rule4>(rules, zone_of, Family::kV4, kAddrWords4, err);
  if (!err->empty()) return nullptr;
  acl->ctx6_ = build_family<Rule6>(rules, zone_of, Family::kV6, kAddrWords6, err);
  if (!err->empty()) return nullptr;
  return acl;
}

Acl::~Acl() {
  rte_acl_free(ctx4_);
  rte_acl_free(ctx6_);
}

AclMatch Acl::zone_default(uint8_t zone) const {
  // An unknown zone index is a caller bug; deny rather than guess.
  Action a = zone < zone_default_.size() ? zone_default_[zone] : Action::kDeny;
  return AclMatch{a, -1, false};
}

AclMatch Acl::from_result(uint32_t userdata, uint8_t zone) const {
  if (userdata == 0) return zone_default(zone);
  const RuleInfo& r = rules_[userdata - 1];
  return AclMatch{r.action, static_cast<int32_t>(userdata - 1), r.log};
}

void Acl::classify(const AclQuery* const* q, uint32_t n, AclMatch* out) const {
  Key4 keys4[kChunk];
  Key6 keys6[kChunk];
  const uint8_t* data4[kChunk];
  const uint8_t* data6[kChunk];
  uint32_t idx4[kChunk], idx6[kChunk], res4[kChunk], res6[kChunk];
  for (uint32_t base = 0; base < n; base += kChunk) {
    uint32_t end = n - base < kChunk ? n : base + kChunk;
    uint32_t n4 = 0, n6 = 0;
    for (uint32_t i = base; i < end; i++) {
      const AclQuery& x = *q[i];
      if (x.tuple.family == Family::kV4 && ctx4_) {
        fill_key(x, &keys4[n4], 4);
        data4[n4] = reinterpret_cast<const uint8_t*>(&keys4[n4]);
        idx4[n4++] = i;
      } else if (x.tuple.family == Family::kV6 && ctx6_) {
        fill_key(x, &keys6[n6], 16);
        data6[n6] = reinterpret_cast<const uint8_t*>(&keys6[n6]);
        idx6[n6++] = i;
      } else {
        out[i] = zone_default(x.zone);  // no rule for this family, or not IP at all
      }
    }
    if (n4) {
      rte_acl_classify(ctx4_, data4, res4, n4, 1);
      for (uint32_t j = 0; j < n4; j++) out[idx4[j]] = from_result(res4[j], q[idx4[j]]->zone);
    }
    if (n6) {
      rte_acl_classify(ctx6_, data6, res6, n6, 1);
      for (uint32_t j = 0; j < n6; j++) out[idx6[j]] = from_result(res6[j], q[idx6[j]]->zone);
    }
  }
}

// One query, as a new connection asks: one key on the stack, not classify()'s chunk of 64 keys
// per family (whose be16 members are constructed on every call).
AclMatch Acl::classify_one(const AclQuery& q) const {
  uint32_t res = 0;
  if (q.tuple.family == Family::kV4 && ctx4_) {
    Key4 k;
    fill_key(q, &k, 4);
    const uint8_t* data = reinterpret_cast<const uint8_t*>(&k);
    rte_acl_classify(ctx4_, &data, &res, 1, 1);
  } else if (q.tuple.family == Family::kV6 && ctx6_) {
    Key6 k;
    fill_key(q, &k, 16);
    const uint8_t* data = reinterpret_cast<const uint8_t*>(&k);
    rte_acl_classify(ctx6_, &data, &res, 1, 1);
  } else {
    return zone_default(q.zone);
  }
  return from_result(res, q.zone);
}

}  // namespace baton
