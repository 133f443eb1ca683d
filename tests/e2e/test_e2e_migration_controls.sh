#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# The negative controls that show the handoff test can fail, and the failure paths:
#   1. handoff off: the same VM move without any migration breaks the connections (B's strict
#      conntrack drops their mid-stream packets as no_connection);
#   2. snapshot only (no deltas, no final delta): connections whose sequence numbers moved on
#      after the snapshot break at B (the seed's "snapshot at 99, VM at 110");
#   3. B refuses for RESOURCES (capacity too small): A reports FAIL(RESOURCES), the VM's
#      connections keep working through A;
#   4. B killed in the middle of pre-copy: A tries to resume the dropped link for its timeout
#      (docs/WIRE.md, resume), then fails with TRANSFER and rolls back, connections work;
#   5. a peer with a certificate from another CA gets FAIL(AUTH) and learns nothing;
#   6. 1:n: the VM's state goes to two peers at once (both firewalls of an asymmetric path);
#      both activate it with every entry;
#   7. 1:n with one peer too small: FAIL(RESOURCES), the connections keep working through A and
#      the other peer keeps nothing of the VM.
source "$(dirname "$0")/lib.sh"
export HOLD_TIMEOUT=3
N=20

scenario_start() {  # fresh instances for each scenario
  for p in ${A_PID:-} ${B_PID:-}; do kill "$p" 2>/dev/null || true; wait "$p" 2>/dev/null || true; done
  ip link set ${BT}vr nomaster; ip link set ${BT}vr master ${BT}ha
  start_pair
  # The VM is back behind A: announce it so the uplink bridge forgets B's port.
  ip netns exec "$VMNS" arping -q -U -c 1 -w 0 -I eth0 $VM_IP >/dev/null 2>&1 || true
  ip netns exec "$CLI" ping -c 1 -W 2 $VM_IP >/dev/null || die "no path to the VM through A"
}
hold_start() {  # seconds out
  bg ip netns exec "$CLI" "$PY" "$ROOT/tests/e2e/tcp_tools.py" hold $VM_IP 7000 $N "$1" "$WORK/$2.json"
  HOLD=${PIDS[-1]}
  sleep 1.5
}
hold_ok() { wait "$HOLD"; }
await_failed() {  # polls (100 ms apart) until A's migration of vm1 has failed; prints the report
  local r
  for _ in $(seq "$1"); do
    r=$(api_get "$A_API" /v1/vms/vm1/migration); [ "$(jq -r .phase <<<"$r")" = failed ] && break; sleep 0.1
  done
  echo "$r"
}
ok_count() { jq .ok "$WORK/$1.json"; }

mig_topology
gen_certs "$WORK/certs"
start_vm_servers

# 1. handoff off ---------------------------------------------------------------------------------
log "1: move without handoff"
scenario_start
hold_start 6 off
move_vm
if hold_ok; then die "connections survived a move without handoff: the test cannot fail"; fi
nc=$(metric_get "$B_MET" baton_drops_total 'reason="no_connection"')
log "   broken: $((N - $(ok_count off)))/$N; B dropped $nc mid-stream packets as no_connection"
[ "$nc" -gt 0 ] || die "B did not drop mid-stream packets"

# 2. snapshot only -----------------------------------------------------------------------------------
log "2: snapshot-only handoff"
scenario_start
hold_start 7 snap
r=$(migrate_signal "$A_API" vm1 "" '{"peers": ["b"], "mode": "snapshot-only"}')
sleep 1.5   # the connections move on past the snapshot
migrate_signal "$A_API" vm1 pause >/dev/null
move_vm
r=$(migrate_signal "$A_API" vm1 resume)
[ "$(jq -r .result <<<"$r")" = SUCCESS ] || die "snapshot-only migration did not complete: $r"
if hold_ok; then die "connections survived a stale snapshot"; fi
bad=$(( $(metric_get "$B_MET" baton_drops_total 'reason="tcp_out_of_window"') + $(metric_get "$B_MET" baton_drops_total 'reason="tcp_invalid"') ))
log "   broken: $((N - $(ok_count snap)))/$N; B dropped $bad segments against the stale state"
[ "$bad" -gt 0 ] || die "B did not reject segments against the stale snapshot"

# 3. RESOURCES -------------------------------------------------------------------------------------------
log "3: destination too small"
B_CAPACITY=8 scenario_start
hold_start 5 res
r=$(migrate_signal "$A_API" vm1 "" '{"peers": ["b"]}')
r=$(await_failed 50)
[ "$(jq -r .result <<<"$r")" = RESOURCES ] || die "expected FAIL(RESOURCES): $r"
log "   A: $(jq -c '{result, detail}' <<<"$r")"
hold_ok || die "connections broke after a refused migration"
api_get "$A_API" /v1/vms | jq -e '.[] | select(.name == "vm1" and .state == "local")' >/dev/null || die "vm1 not local at A"

# 4. B killed during pre-copy ------------------------------------------------------------------------------
log "4: destination dies during pre-copy"
scenario_start
hold_start 8 kill
migrate_signal "$A_API" vm1 "" '{"peers": ["b"]}' >/dev/null
sleep 1
kill -9 "$B_PID"; t0=$(date +%s%N)
r=$(await_failed 100)
ms=$(( ($(date +%s%N) - t0) / 1000000 ))
[ "$(jq -r .phase <<<"$r")" = failed ] || die "A did not roll back: $r"
[ "$(jq -r .result <<<"$r")" = TRANSFER ] || die "expected FAIL(TRANSFER) after the resume attempts: $r"
log "   A: $(jq -c '{result, detail, resumes}' <<<"$r") after ${ms} ms"
# The reconnect budget is the timeout: the rollback comes after it, not long after.
[ "$ms" -lt $(( ${MIG_TIMEOUT_MS:-3000} + 2000 )) ] || die "rollback took ${ms} ms"
hold_ok || die "connections broke after the rollback"
B_PID=""

# 5. AUTH -------------------------------------------------------------------------------------------------------
log "5: peer with a certificate from another CA"
B_CERT=rogue scenario_start
r=$(migrate_signal "$A_API" vm1 "" '{"peers": ["b"]}')
r=$(await_failed 50)
[ "$(jq -r .result <<<"$r")" = AUTH ] || die "expected FAIL(AUTH): $r"
log "   A: $(jq -c '{result, detail}' <<<"$r")"
api_get "$B_API" /v1/vms | jq -e 'length == 0' >/dev/null || die "B learned about a VM from an unauthenticated peer"
api_get "$B_API" /v1/migrations | jq -e 'length == 0' >/dev/null || die "B started a session with an unauthenticated peer"

# 6. 1:n ---------------------------------------------------------------------------------------------------------
log "6: one VM to two peers"
veth_pair ${BT}cu ${BT}cU; veth_pair ${BT}ch ${BT}cH   # C stands beside B, off the bridges
C_API=127.0.0.1:$(free_port); C_MET=127.0.0.1:$(free_port); C_MIG=127.0.0.1:$(free_port)
EXTRA_PEER="{name: c, address: \"$C_MIG\"}" scenario_start
mig_config c "$C_API" "$C_MET" "$C_MIG" "$A_MIG"
start_batond "$WORK/c.yaml" "$C_API" c; C_PID=$BATOND_PID
hold_start 6 multi
migrate_signal "$A_API" vm1 "" '{"peers": ["b", "c"]}' >/dev/null
sleep 1
migrate_signal "$A_API" vm1 pause >/dev/null
move_vm
r=$(migrate_signal "$A_API" vm1 resume)
[ "$(jq -r .result <<<"$r")" = SUCCESS ] || die "1:n migration failed: $r"
hold_ok || die "connections broke in the 1:n migration"
nb=$(api_get "$B_API" /v1/vms | jq '.[] | select(.name == "vm1" and .state == "local") | .connections')
nc=$(api_get "$C_API" /v1/vms | jq '.[] | select(.name == "vm1" and .state == "local") | .connections')
log "   B holds ${nb:-0} entries of vm1, C holds ${nc:-0}"
[ -n "$nb" ] && [ "$nb" -ge $N ] && [ "${nc:-0}" -ge $N ] || die "both peers must hold the VM's entries"

# 7. 1:n, one peer refusing ----------------------------------------------------------------------------------
log "7: one VM to two peers, one of them too small"
kill "$C_PID"; wait "$C_PID" 2>/dev/null || true
EXTRA_PEER="{name: c, address: \"$C_MIG\"}" scenario_start
CAPACITY=8 mig_config c "$C_API" "$C_MET" "$C_MIG" "$A_MIG"
start_batond "$WORK/c.yaml" "$C_API" c; C_PID=$BATOND_PID
hold_start 5 mixed
migrate_signal "$A_API" vm1 "" '{"peers": ["b", "c"]}' >/dev/null
r=$(await_failed 50)
[ "$(jq -r .result <<<"$r")" = RESOURCES ] || die "expected FAIL(RESOURCES) from c: $r"
log "   A: $(jq -c '{result, detail}' <<<"$r")"
hold_ok || die "connections broke after a 1:n migration that one peer refused"
api_get "$A_API" /v1/vms | jq -e '.[] | select(.name == "vm1" and .state == "local")' >/dev/null || die "vm1 not local at A"
# B would have taken the VM: the failure must leave it nothing of vm1.
for _ in $(seq 50); do
  nb=$(api_get "$B_API" /v1/vms | jq '[.[] | select(.name == "vm1")] | length')
  [ "$nb" = 0 ] && break; sleep 0.1
done
[ "$nb" = 0 ] || die "B kept vm1 after the 1:n migration failed: $(api_get "$B_API" /v1/vms)"
bm=$(api_get "$B_API" /v1/migrations)
log "   B: $(jq -c '[.[] | {role, phase, result}]' <<<"$bm")"
jq -e 'length == 1 and .[0].phase == "failed"' <<<"$bm" >/dev/null || die "B's session did not end failed: $bm"
log "PASS"
