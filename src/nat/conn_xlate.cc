// SPDX-License-Identifier: Apache-2.0
#include "nat/conn_xlate.h"

#include <rte_errno.h>
#include <rte_hash_crc.h>

namespace baton {

const char* xlate_kind_name(XlateKind k) {
  switch (k) {
    case XlateKind::kNone: return "none";
    case XlateKind::kSnat: return "snat";
    case XlateKind::kStatic: return "static";
    case XlateKind::kDnat: return "dnat";
    case XlateKind::kHairpin: return "hairpin";
    case XlateKind::kLbNat: return "lb-nat";
    case XlateKind::kLbFullNat: return "lb-fullnat";
    case XlateKind::kCount: break;
  }
  return "?";
}

Tuple reply_tuple(const ConnXlate& x, uint8_t proto, uint16_t vlan) {
  Tuple t;
  t.family = Family::kV4;
  t.proto = proto;
  t.vlan = vlan;
  t.src = IpAddr::v4(x.reply_src);
  t.dst = IpAddr::v4(x.reply_dst);
  t.sport = x.reply_sport;
  t.dport = x.reply_dport;
  return t;
}

std::unique_ptr<ConnXlateTable> ConnXlateTable::create(const std::string& name,
                                                       const ConnTable& table, uint32_t capacity,
                                                       int socket, std::string* err) {
  if (table.ext_bytes() != sizeof(XlateRewrite)) {
    *err = "connection table " + table.name() + " has no room for translation records";
    return nullptr;
  }
  std::unique_ptr<ConnXlateTable> t(new ConnXlateTable());
  rte_hash_parameters hp{};
  std::string hname = "xl_" + name;
  hp.name = hname.c_str();
  hp.entries = std::max<uint32_t>(capacity, 64);
  hp.key_len = sizeof(FlowKeyV4);  // reply tuples are IPv4 (reply_tuple)
  hp.hash_func = rte_hash_crc;
  hp.socket_id = socket;
  // Owner-only (no concurrency flags); EXT_TABLE so that an insert below capacity never fails
  // on cuckoo displacement.
  hp.extra_flag = RTE_HASH_EXTRA_FLAGS_EXT_TABLE;
  t->index_ = rte_hash_create(&hp);
  if (!t->index_) {
    *err = "rte_hash_create(" + hname + "): " + rte_strerror(rte_errno);
    return nullptr;
  }
  // The index hashes the stored FlowKeyV4 with rte_hash_crc, as ConnTable's IPv4 hash does;
  // the worker's signatures are used only if that holds here.
  t->sigs_ok_ = ConnTable::hash_agrees(t->index_, Family::kV4);
  t->table_ = &table;
  t->records_.resize(table.slots());
  for (uint32_t s = 0; s < table.slots(); s++) new (table.ext(s)) XlateRewrite();
  return t;
}

XlateRewrite& ConnXlateTable::set(uint32_t slot, const ConnXlate& x) {
  records_[slot] = x;
  // The original tuple: the connection's key in the direction its initiator sent.
  const Tuple o = table_->key(slot).tuple(table_->entry(slot).orig_dir());
  const V4Endpoints orig{o.src.as_v4(), o.dst.as_v4(), o.sport, o.dport};
  const V4Endpoints reply{x.reply_src, x.reply_dst, x.reply_sport, x.reply_dport};
  auto* r = reinterpret_cast<XlateRewrite*>(table_->ext(slot));
  *r = XlateRewrite::make(orig, reply);
  return *r;
}

ConnXlateTable::~ConnXlateTable() {
  if (index_) rte_hash_free(index_);
}

// Keys are stored as FlowKeyV4. A key of another family finds nothing: its tail word holds its
// family, which no stored key has.
int32_t ConnXlateTable::lookup_reply(const FlowKey& k) const {
  const FlowKeyV4 v = FlowKeyV4::of(k);
  void* data = nullptr;
  if (rte_hash_lookup_data(index_, &v, &data) < 0) return -1;
  return static_cast<int32_t>(reinterpret_cast<uintptr_t>(data));
}

void ConnXlateTable::lookup_reply_bulk(const FlowKey* const* keys, uint32_t n,
                                       int32_t* slots) const {
  lookup_reply_bulk(keys, nullptr, n, slots);
}

void ConnXlateTable::lookup_reply_bulk(const FlowKey* const* keys, const hash_sig_t* sigs,
                                       uint32_t n, int32_t* slots) const {
  FlowKeyV4 v[RTE_HASH_LOOKUP_BULK_MAX];
  const void* p[RTE_HASH_LOOKUP_BULK_MAX];
  for (uint32_t i = 0; i < n; i++) {
    v[i] = FlowKeyV4::of(*keys[i]);
    p[i] = &v[i];
  }
  void* data[RTE_HASH_LOOKUP_BULK_MAX];
  uint64_t hits = 0;
  if (sigs && sigs_ok_)
    rte_hash_lookup_with_hash_bulk_data(index_, p, const_cast<hash_sig_t*>(sigs), n, &hits, data);
  else
    rte_hash_lookup_bulk_data(index_, p, n, &hits, data);
  for (uint32_t i = 0; i < n; i++)
    slots[i] = (hits >> i & 1) ? static_cast<int32_t>(reinterpret_cast<uintptr_t>(data[i])) : -1;
}

bool ConnXlateTable::add_reply(const FlowKey& k, uint32_t slot, int* rc) {
  if (k.family != Family::kV4) {
    *rc = -EINVAL;
    return false;
  }
  const FlowKeyV4 v = FlowKeyV4::of(k);
  if (rte_hash_lookup(index_, &v) >= 0) {
    *rc = -EEXIST;
    return false;
  }
  *rc = rte_hash_add_key_data(index_, &v, reinterpret_cast<void*>(uintptr_t{slot}));
  return *rc == 0;
}

void ConnXlateTable::remove_reply(const FlowKey& k) {
  const FlowKeyV4 v = FlowKeyV4::of(k);
  rte_hash_del_key(index_, &v);
}

}  // namespace baton
