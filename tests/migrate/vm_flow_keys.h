// SPDX-License-Identifier: Apache-2.0
//
// Flow i of the migration tests' VM (10.1.0.10, as their configs declare it): its TCP
// connection from port 80 to 192.0.x.y:(10000 + i), x.y = i. A key names its flow: hi_port
// - 10000 is i.
#pragma once

#include <cstdint>

#include "common/net_types.h"

namespace baton::migrate {

inline FlowKey vm_flow_key(uint32_t i) {
  FlowKey k;
  k.family = Family::kV4;
  k.proto = 6;
  k.lo_addr.b[0] = 10;
  k.lo_addr.b[1] = 1;
  k.lo_addr.b[3] = 10;
  k.hi_addr.b[0] = 192;
  k.hi_addr.b[2] = static_cast<uint8_t>(i >> 8);
  k.hi_addr.b[3] = static_cast<uint8_t>(i);
  k.lo_port = be16::from_host(80);
  k.hi_port = be16::from_host(static_cast<uint16_t>(10000 + i));
  return k;
}

}  // namespace baton::migrate
