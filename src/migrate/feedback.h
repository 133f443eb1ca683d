// SPDX-License-Identifier: Apache-2.0
//
// The answer a migration gives to the hypervisor side, and the reason a peer gives when it
// refuses or breaks off a handoff. The reasons follow seed 003 ("DI migration response"): a
// FAIL says why, and the why tells the hypervisor what to do next:
//   RESOURCES   the destination cannot hold the state      -> stop trying to move the VM here
//   UNSUPPORTED the destination does not know a state kind  -> stop, or move and accept the risk
//   CONFLICT    the state clashes with local policy         -> stop moving
//   TRANSFER    the transfer itself broke                   -> maybe try again
// plus three that Baton adds: AUTH (the peer failed mutual TLS), TIMEOUT (a stalled peer; a
// special case of an unsuccessful transfer, so a retry may help too) and ABORTED (an operator
// or the hypervisor called it off). kNone means SUCCESS.
//
// The numeric values go on the wire (FAIL and ABORT messages, docs/WIRE.md): append only.
#pragma once

#include <cstdint>
#include <optional>
#include <string_view>

namespace baton::migrate {

enum class FailReason : uint8_t {
  kNone = 0,
  kResources = 1,
  kUnsupported = 2,
  kConflict = 3,
  kTransfer = 4,
  kAuth = 5,
  kTimeout = 6,
  kAborted = 7,
};
constexpr uint8_t kFailReasonCount = 8;

// "SUCCESS" for kNone, otherwise the upper-case reason as the hypervisor side sees it.
constexpr const char* fail_reason_name(FailReason r) {
  switch (r) {
    case FailReason::kNone: return "SUCCESS";
    case FailReason::kResources: return "RESOURCES";
    case FailReason::kUnsupported: return "UNSUPPORTED";
    case FailReason::kConflict: return "CONFLICT";
    case FailReason::kTransfer: return "TRANSFER";
    case FailReason::kAuth: return "AUTH";
    case FailReason::kTimeout: return "TIMEOUT";
    case FailReason::kAborted: return "ABORTED";
  }
  return "UNKNOWN";
}

// Only a broken or stalled transfer is worth retrying as is; every other reason is a property of
// the two instances (capacity, features, policy, credentials) or a decision, and a retry would
// meet it again.
constexpr bool retry_may_help(FailReason r) {
  return r == FailReason::kTransfer || r == FailReason::kTimeout;
}

// Wire value -> reason; nullopt for a value this build does not know.
constexpr std::optional<FailReason> fail_reason_from_wire(uint8_t v) {
  if (v >= kFailReasonCount) return std::nullopt;
  return static_cast<FailReason>(v);
}

// Name -> reason (the inverse of fail_reason_name), for the control API and tests.
constexpr std::optional<FailReason> parse_fail_reason(std::string_view s) {
  for (uint8_t v = 0; v < kFailReasonCount; ++v) {
    auto r = static_cast<FailReason>(v);
    if (s == fail_reason_name(r)) return r;
  }
  return std::nullopt;
}

}  // namespace baton::migrate
