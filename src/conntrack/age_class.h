// SPDX-License-Identifier: Apache-2.0
//
// Aging classes: one per distinct timeout. An entry sits on its owner's list for its class;
// since every entry on a list has the same timeout, the list head is always the next to expire
// (lazily: traffic refreshes last_seen without moving the entry, and the ager re-queues it).
#pragma once

#include <cstdint>

#include "config/config.h"
#include "conntrack/conn_entry.h"

namespace baton {

enum class AgeClass : uint8_t {
  kTcpSynSent, kTcpSynRecv, kTcpEstablished, kTcpFinWait, kTcpCloseWait, kTcpLastAck,
  kTcpTimeWait, kTcpClose, kUdp, kUdpStream, kIcmp, kOther, kCount
};
constexpr uint8_t kAgeClassCount = static_cast<uint8_t>(AgeClass::kCount);

inline AgeClass age_class_of(uint8_t proto, TcpState s, bool replied) {
  if (proto == 6) {
    switch (s) {
      case TcpState::kSynSent:
      case TcpState::kSynSent2: return AgeClass::kTcpSynSent;
      case TcpState::kSynRecv: return AgeClass::kTcpSynRecv;
      case TcpState::kEstablished: return AgeClass::kTcpEstablished;
      case TcpState::kFinWait: return AgeClass::kTcpFinWait;
      case TcpState::kCloseWait: return AgeClass::kTcpCloseWait;
      case TcpState::kLastAck: return AgeClass::kTcpLastAck;
      case TcpState::kTimeWait: return AgeClass::kTcpTimeWait;
      default: return AgeClass::kTcpClose;
    }
  }
  if (proto == 17) return replied ? AgeClass::kUdpStream : AgeClass::kUdp;
  if (proto == 1 || proto == 58) return AgeClass::kIcmp;
  return replied ? AgeClass::kUdpStream : AgeClass::kOther;
}

inline uint32_t age_class_timeout(const Timeouts& t, uint8_t cls) {
  switch (static_cast<AgeClass>(cls)) {
    case AgeClass::kTcpSynSent: return t.tcp_syn_sent;
    case AgeClass::kTcpSynRecv: return t.tcp_syn_recv;
    case AgeClass::kTcpEstablished: return t.tcp_established;
    case AgeClass::kTcpFinWait: return t.tcp_fin_wait;
    case AgeClass::kTcpCloseWait: return t.tcp_close_wait;
    case AgeClass::kTcpLastAck: return t.tcp_last_ack;
    case AgeClass::kTcpTimeWait: return t.tcp_time_wait;
    case AgeClass::kTcpClose: return t.tcp_close;
    case AgeClass::kUdp: return t.udp;
    case AgeClass::kUdpStream: return t.udp_stream;
    case AgeClass::kIcmp: return t.icmp;
    default: return t.udp;
  }
}

}  // namespace baton
