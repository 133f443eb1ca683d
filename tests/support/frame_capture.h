// SPDX-License-Identifier: Apache-2.0
//
// A worker's TxSink (dataplane/worker.h) that keeps a copy of every frame it would have sent,
// with the port index it left by, and frees the mbufs.
#pragma once

#include <rte_mbuf.h>

#include <cstdint>
#include <vector>

#include "dataplane/worker.h"
#include "pktgen/packet_builder.h"

namespace baton {

struct Sent {
  uint16_t port;
  pktgen::Bytes frame;
};

struct Capture {
  TxSink sink{&Capture::on_tx, this};
  std::vector<Sent> sent;
  static void on_tx(void* ctx, uint16_t port, rte_mbuf** pkts, uint32_t n) {
    auto* c = static_cast<Capture*>(ctx);
    for (uint32_t i = 0; i < n; i++) {
      const uint8_t* p = rte_pktmbuf_mtod(pkts[i], const uint8_t*);
      c->sent.push_back({port, pktgen::Bytes(p, p + pkts[i]->data_len)});
      rte_pktmbuf_free(pkts[i]);
    }
  }
};

}  // namespace baton
