#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
#
# Baton's main job on a network-namespace topology (DESIGN.md section 7), from a clean clone:
# installs dependencies, builds, starts two batond instances (A and B) as transparent firewalls
# in front of two "hosts", runs real TCP through A to a VM, then live-migrates the VM to B's host
# while an iperf3 stream and 50 verified connections run, and prints the report.
# Needs root (namespaces, veth). Exits non-zero if anything fails.
set -euo pipefail
cd "$(dirname "$0")/.."
[ "$(id -u)" -eq 0 ] || { echo "demo.sh: run as root (network namespaces)"; exit 1; }
scripts/install_deps.sh
scripts/build.sh
export BATON_BUILD=$PWD/build
source tests/e2e/lib.sh
set +x
say() { printf '\n== %s\n' "$*"; }

say "Topology: client -- br-up -- batond A -- br-ha -- VM   (batond B -- br-hb waits)"
mig_topology
start_pair
start_vm_servers
echo "A: API $A_API metrics http://$A_MET/metrics   B: API $B_API metrics http://$B_MET/metrics"

say "Stateful firewall: real TCP through A"
ip netns exec "$CLI" iperf3 -c $VM_IP -p 5201 -t 3 -J >"$WORK/fw.json"
printf 'iperf3 client -> VM through A: %.0f Mbit/s\n' "$(jq '.end.sum_received.bits_per_second/1e6' "$WORK/fw.json")"
if ip netns exec "$CLI" nc -z -w 1 $VM_IP 2222; then die "port 2222 should be closed by the ACL"; fi
echo "unsolicited SYN to port 2222: dropped (acl_deny=$(metric_get "$A_MET" baton_drops_total 'reason="acl_deny"'))"
"$BATONCTL" --api "$A_API" conns --limit 3

say "Live migration of vm1 from A to B, with traffic running"
bg ip netns exec "$CLI" iperf3 -c $VM_IP -p 5201 -t 8 -b 100M -J --logfile "$WORK/iperf.json"; IPERF=${PIDS[-1]}
bg ip netns exec "$CLI" "$PY" tests/e2e/tcp_tools.py hold $VM_IP 7000 50 8 "$WORK/hold.json"; HOLD=${PIDS[-1]}
sleep 2
"$BATONCTL" --api "$A_API" migrate prepare vm1 b >/dev/null
sleep 2
echo "hypervisor: pause (stop-and-copy begins)"
"$BATONCTL" --api "$A_API" migrate pause vm1 >/dev/null
move_vm
echo "hypervisor: VM now runs behind B; resume"
"$BATONCTL" --api "$A_API" migrate resume vm1 >/dev/null
wait "$HOLD" || die "connections broke during the migration"
wait "$IPERF" || die "iperf3 broke during the migration"
printf 'after the move: %s/50 long-lived connections intact, iperf3 %.0f Mbit/s with %s retransmits\n' \
  "$(jq .ok "$WORK/hold.json")" "$(jq '.end.sum_received.bits_per_second/1e6' "$WORK/iperf.json")" \
  "$(jq .end.sum_sent.retransmits "$WORK/iperf.json")"

say "Migration report (A)"
api_get "$A_API" /v1/vms/vm1/migration | jq -r '
  "result:            \(.result)",
  "entries:           snapshot \(.entries.snapshot), deltas \(.entries.delta) over \(.rounds) rounds, final \(.entries.final) (seq moved in final: \(.final_seq_moved)), installed at B \(.entries.installed)",
  "bytes to peer:     \(.bytes_sent)",
  "pre-copy:          \(.ms.precopy | floor) ms",
  "freeze:            \(.ms.freeze * 100 | floor / 100) ms pause->activation, of which Baton \(.ms.baton_freeze * 100 | floor / 100) ms",
  "packets held:      \(.packets.held), forwarded to B \(.packets.forwarded), lost \(.packets.lost)",
  "VM traffic count:  \(if .vm_traffic.carried then "\(.vm_traffic.bytes) bytes carried to B" else "stayed at A" end)"'
echo
"$BATONCTL" --api "$B_API" vms
stop_batond "$A_PID"; stop_batond "$B_PID"
say "done"
