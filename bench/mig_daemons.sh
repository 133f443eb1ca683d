#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# A VM with FLOWS (default 1,000,000) open TCP connections moves between two batond processes:
# baton-pktgen opens the connections through A (net_memif ports; the VM is the clients'
# addresses), then A's control API drives the migration to B over the real peer link (mutual
# TLS over loopback): prepare, pause as soon as the snapshot round is acknowledged, resume as
# soon as the VM is frozen. Prints one JSON object:
#   migrate_1m_total_seconds  prepare + pre-copy + Baton's part of the freeze, as A's report
#                             gives them (the pre-copy includes this script's reaction to the
#                             snapshot round: a poll every 10 ms and a curl)
#   migrate_1m_bytes          what A sent to B (A's report: frames, TLS records not counted)
#   migrate_1m_daemons_{snapshot,rounds,freeze_ms,baton_freeze_ms,open_seconds}: context
# Exit non-zero if the connections did not all open, the migration failed, or B does not hold
# them all.
source "$(dirname "$0")/../tests/e2e/lib.sh"
exec 3>&1 1>&2  # stdout carries the JSON only (scripts/bench.sh reads it)
FLOWS=${FLOWS:-1000000}
CLIENTS=64
PKTGEN=$BUILD/tools/baton-pktgen
CAP=$(( FLOWS + FLOWS / 4 + 1024 ))
MEM=$(( 256 + FLOWS / 2000 ))  # MB: tables (about 160 bytes a connection) and their slack

ips=$(seq -s, 1 $CLIENTS | sed 's/\([0-9]*\)/10.0.0.\1/g')
gen_certs "$WORK/certs"
declare -A API MIG MET
for x in a b; do
  API[$x]=127.0.0.1:$(free_port); MIG[$x]=127.0.0.1:$(free_port); MET[$x]=127.0.0.1:$(free_port)
done
for x in a b; do
  other=b; [ $x = b ] && other=a
  vms="vms: []"
  # The VM is the generator's client side (flowgen: MAC 02:00:00:00:00:01, 10.0.0.1 + i).
  [ $x = a ] && vms="vms: [{name: vm1, mac: \"02:00:00:00:00:01\", ipv4: [$ips]}]"
  cat >"$WORK/$x.yaml" <<YAML
instance: $x
workers: 1
eal: {file_prefix: ${BT}md$x, memory_mb: $MEM, no_huge: true}
ports:
  - {name: vmside, device: "net_memif0,role=server,id=0,socket=$WORK/$x-vm.sock,socket-abstract=no", zone: inside}
  - {name: uplink, device: "net_memif1,role=server,id=0,socket=$WORK/$x-up.sock,socket-abstract=no", zone: outside}
zones: [{name: inside, default: permit}, {name: outside, default: deny}]
conntrack: {capacity: $CAP, capacity_v6: 1024}
$vms
control: {listen: ${API[$x]}}
metrics: {listen: ${MET[$x]}}
$(mig_section "$x" "${MIG[$x]}" "${MIG[$other]}" 20000)
YAML
done
start_batond "$WORK/a.yaml" "${API[a]}" a; PID_A=$BATOND_PID
start_batond "$WORK/b.yaml" "${API[b]}" b; PID_B=$BATOND_PID

timeout 600 "$PKTGEN" --no-huge -m 1024 --no-pci -l 0 --file-prefix ${BT}mdg --log-level=error \
  --vdev="net_memif0,role=client,id=0,socket=$WORK/a-vm.sock,socket-abstract=no" \
  --vdev="net_memif1,role=client,id=0,socket=$WORK/a-up.sock,socket-abstract=no" \
  -- --open --flows "$FLOWS" --clients $CLIENTS --timeout-ms 5000 >"$WORK/open.json" 2>"$WORK/open.err" ||
  die "opening $FLOWS connections through A: $(cat "$WORK/open.json" "$WORK/open.err")"
conns() { api_get "$1" /v1/vms | jq '[.[] | select(.name == "vm1") | .connections] | add // 0'; }
held=$(conns "${API[a]}")
[ "$held" -eq "$FLOWS" ] || die "A holds $held of vm1's $FLOWS connections"

post() { api_post "${API[a]}" "/v1/vms/vm1/migration$1" "${2:-{\}}" >/dev/null; }
status() { api_get "${API[a]}" /v1/vms/vm1/migration; }
post "" '{"peers": ["b"]}'
for _ in $(seq 6000); do  # the snapshot round is acknowledged: pause
  s=$(status)
  [ "$(jq -r .phase <<<"$s")" = failed ] && die "migration failed: $s"
  [ "$(jq .rounds <<<"$s")" -ge 1 ] && break
  sleep 0.01
done
post /pause
post /resume
s=$(status)
[ "$(jq -r .result <<<"$s")" = SUCCESS ] || die "migration did not succeed: $s"
moved=$(conns "${API[b]}")
[ "$moved" -eq "$FLOWS" ] || die "B holds $moved of vm1's $FLOWS connections"
jq -c --argjson open "$(jq .seconds "$WORK/open.json")" '{
  migrate_1m_total_seconds: ((.ms.prepare + .ms.precopy + .ms.baton_freeze) / 1000),
  migrate_1m_bytes: .bytes_sent,
  migrate_1m_daemons_snapshot: .entries.snapshot,
  migrate_1m_daemons_rounds: .rounds,
  migrate_1m_daemons_freeze_ms: .ms.freeze,
  migrate_1m_daemons_baton_freeze_ms: .ms.baton_freeze,
  migrate_1m_daemons_open_seconds: $open}' <<<"$s" >&3
