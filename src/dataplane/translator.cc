// SPDX-License-Identifier: Apache-2.0
#include "dataplane/translator.h"

#include <algorithm>

namespace baton {

std::unique_ptr<Translator> Translator::create(const Config& cfg, uint16_t workers,
                                               std::string* err) {
  (void)workers, (void)err;
  std::unique_ptr<Translator> t(new Translator());
  const NatConfig& nat = cfg.nat;
  for (const StaticNat& s : nat.static_nat) {
    t->static_out_[s.outside.as_v4().raw()] = s.inside.as_v4();
    t->static_in_[s.inside.as_v4().raw()] = s.outside.as_v4();
    t->service_addrs_.push_back(s.outside.as_v4());
  }
  for (const PortForward& f : nat.port_forward) {
    t->forwards_[ForwardKey{f.proto, f.outside.as_v4().raw(),
                            be16::from_host(f.outside_port).raw()}] =
        Endpoint{f.inside.as_v4(), be16::from_host(f.inside_port)};
    t->service_addrs_.push_back(f.outside.as_v4());
  }
  std::sort(t->service_addrs_.begin(), t->service_addrs_.end(),
            [](be32 a, be32 b) { return a.raw() < b.raw(); });
  t->service_addrs_.erase(std::unique(t->service_addrs_.begin(), t->service_addrs_.end()),
                          t->service_addrs_.end());
  t->enabled_ = cfg.nat.enabled() || cfg.lb.enabled();
  return t;
}

Translator::~Translator() = default;

bool Translator::is_service_address(be32 a) const {
  return std::binary_search(service_addrs_.begin(), service_addrs_.end(), a,
                            [](be32 x, be32 y) { return x.raw() < y.raw(); });
}

void Translator::release(uint16_t worker, const ConnXlate& x, uint8_t proto) {
  (void)worker, (void)x, (void)proto;
}

}  // namespace baton
