#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# A full live handoff driven by QEMU's own signals: adapters/baton-qmp listens to a scripted
# QMP server (real protocol: greeting, qmp_capabilities, MIGRATION events, pause-before-
# switchover with migrate-continue) and drives batond A; the VM namespace moves to host-b while
# QEMU is in pre-switchover. Connections must survive and the report must say SUCCESS.
source "$(dirname "$0")/lib.sh"

mig_topology
start_pair
start_vm_servers
ip netns exec "$CLI" ping -c 1 -W 2 $VM_IP >/dev/null || die "no path to the VM through A"

bg ip netns exec "$CLI" "$PY" "$ROOT/tests/e2e/tcp_tools.py" hold $VM_IP 7000 40 9 "$WORK/hold.json"
HOLD=${PIDS[-1]}
sleep 1.5

cat >"$WORK/qmp.script" <<SCRIPT
wait migrate-set-capabilities 10
migration setup
migration active
sleep 2
migration pre-switchover
wait migrate-continue 20
waitfile $WORK/moved 10
migration completed
SCRIPT
bg "$PY" "$ROOT/tests/adapters/fake_qmp_server.py" --listen "unix:$WORK/qmp.sock" \
  --script "$WORK/qmp.script" --record "$WORK/qmp.record"
for _ in $(seq 50); do [ -S "$WORK/qmp.sock" ] && break; sleep 0.1; done
bg "$PY" "$ROOT/adapters/baton-qmp" --qmp "unix:$WORK/qmp.sock" --api "$A_API" --vm vm1 \
  --peer b --pause-before-switchover
QMPA=${PIDS[-1]}

# QEMU stops the guest before switchover; once Baton has frozen and sent the final delta the
# adapter lets QEMU continue, and the guest comes up on the destination host.
for _ in $(seq 200); do grep -q migrate-continue "$WORK/qmp.record" 2>/dev/null && break; sleep 0.05; done
grep -q migrate-continue "$WORK/qmp.record" || die "the adapter never let QEMU continue"
[ "$(api_get "$A_API" /v1/vms/vm1/migration | jq -r .phase)" = frozen ] || die "A not frozen at switchover"
move_vm
touch "$WORK/moved"
wait "$QMPA" || die "baton-qmp reported failure"
r=$(api_get "$A_API" /v1/vms/vm1/migration)
log "report: $(jq -c '{result, rounds, entries, ms: {freeze: .ms.freeze, baton: .ms.baton_freeze}}' <<<"$r")"
[ "$(jq -r .result <<<"$r")" = SUCCESS ] || die "migration did not succeed: $r"
grep -q "pause-before-switchover" "$WORK/qmp.record" || die "pause-before-switchover was not set"
wait "$HOLD" || die "connections broke: $(jq -c '[.results[] | select(.ok == false)][:3]' "$WORK/hold.json")"
api_get "$B_API" /v1/vms | jq -e '.[] | select(.name == "vm1" and .state == "local")' >/dev/null || die "B does not hold vm1"
stop_batond "$A_PID"; stop_batond "$B_PID"
log "PASS"
