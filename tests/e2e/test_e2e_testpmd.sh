#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# dpdk-testpmd as an independent traffic source and sink: batond has two net_memif ports (the
# memif servers, sockets under $WORK), testpmd has the two client ends. testpmd runs flowgen
# (UDP flows) for a few seconds; flowgen transmits on every forwarding port, so traffic runs
# both ways: testpmd port 0 -> batond outside -> batond inside -> testpmd port 1, and back.
# Then testpmd switches to rxonly for a moment to drain what is in flight, and the counters of
# the two independent implementations must agree exactly:
#   testpmd TX port 0 == batond outside RX, testpmd TX port 1 == batond inside RX,
#   batond inside TX == testpmd RX port 1, batond outside TX == testpmd RX port 0,
#   batond worker rx == tx + dropped, no drops but tx_full, one connection per flow.
# testpmd is driven through its interactive command line fed by a timed pipe.
source "$(dirname "$0")/lib.sh"
# DPDK runtime directories of this run go too.
trap 'cleanup; for d in ${BT}tp ${BT}tpfw; do rm -rf "/var/run/dpdk/$d"; done' EXIT
command -v dpdk-testpmd >/dev/null || die "dpdk-testpmd not installed (package dpdk-dev)"

FLOWS=64; SECONDS_RUN=${SECONDS_RUN:-4}; MIN_PKTS=20000
SOCK_OUT=$WORK/out.sock; SOCK_IN=$WORK/in.sock
API=127.0.0.1:$(free_port); MET=127.0.0.1:$(free_port)
cat >"$WORK/fw.yaml" <<YAML
instance: fwtp
mode: l2
workers: 1
eal: {file_prefix: ${BT}tpfw, memory_mb: 256, no_huge: true}
ports:
  - {name: outside, device: "net_memif0,role=server,id=0,socket=$SOCK_OUT,socket-abstract=no", zone: outside}
  - {name: inside, device: "net_memif1,role=server,id=0,socket=$SOCK_IN,socket-abstract=no", zone: inside}
zones:
  - {name: outside, default: deny}
  - {name: inside, default: permit}
acl:
  # UDP from outside is a new connection from the outside zone: permit it explicitly.
  - {zone: outside, proto: udp, action: permit}
conntrack: {capacity: 4096}
control: {listen: $API}
metrics: {listen: $MET}
YAML
start_batond "$WORK/fw.yaml" "$API" fw; PID=$BATOND_PID
log "batond up (pid $PID)"

# testpmd: main lcore on CPU 1 (mostly idle in the command line), forwarding lcore on CPU 0,
# away from batond's worker on CPU 1. Its command line is fed by a timed pipe with two
# handshakes through files: "rxonly" (flowgen stopped, testpmd only receives: the test waits
# until batond has forwarded everything in flight) and "drained" (final stats printed; batond's
# memif port counters read 0 once the peer disconnects, since DPDK's memif stats walk only the
# connected rings, so batond is read while testpmd still holds the links).
await() { for _ in $(seq 600); do [ -f "$WORK/$1" ] && return 0; sleep 0.1; done; return 1; }
{
  sleep 1
  for _ in $(seq 40); do   # until both memif links are up
    echo "show port info 0"; echo "show port info 1"; sleep 0.5
    [ "$(grep 'Link status:' "$WORK/testpmd.log" | tail -n 2 | grep -c 'Link status: up')" -eq 2 ] && break
  done
  # Flowgen for SECONDS_RUN seconds, longer (up to 20 s) until batond has seen MIN_PKTS: the
  # rate on a loaded 2-core machine varies by orders of magnitude.
  echo "start"; t0=$(date +%s)
  while :; do
    sleep 0.5; el=$(( $(date +%s) - t0 ))
    got=$(api_get "$API" /v1/workers | jq '[.[].rx_packets] | add' 2>/dev/null || echo 0)
    [ "$el" -ge "$SECONDS_RUN" ] && [ "${got:-0}" -ge "$MIN_PKTS" ] && break
    [ "$el" -ge 20 ] && break
  done
  echo "stop"
  echo "set fwd rxonly"; echo "start"; touch "$WORK/rxonly"
  await drainok; echo "stop"
  echo "show port stats all"; sleep 0.5; touch "$WORK/drained"
  await read; echo "quit"; sleep 5
} | timeout 100 stdbuf -oL dpdk-testpmd --lcores=0@1,1@0 --no-huge -m 512 --file-prefix "${BT}tp" --no-pci \
    --log-level=lib.eal:warning \
    --vdev="net_memif0,role=client,id=0,socket=$SOCK_OUT,socket-abstract=no" \
    --vdev="net_memif1,role=client,id=0,socket=$SOCK_IN,socket-abstract=no" \
    -- -i --total-num-mbufs=8192 --forward-mode=flowgen --flowgen-flows=$FLOWS --burst=32 \
    --nb-cores=1 >"$WORK/testpmd.log" 2>&1 &
TP=$!; PIDS+=($TP)
fail() { echo "--- testpmd log (tail)" >&2; grep -vE "^ +(RX|TX) (desc|threshold|offloads|Offloads|queue)|^ +[RT]X (desc|threshold)" "$WORK/testpmd.log" | tail -n 80 >&2; echo "--- batond log" >&2
         cat "$WORK/fw.log" >&2; die "$@"; }
for _ in $(seq 300); do [ -f "$WORK/rxonly" ] && break; kill -0 "$TP" 2>/dev/null || break; sleep 0.1; done
[ -f "$WORK/rxonly" ] || fail "testpmd did not get through its flowgen run"
# Drained when batond's received count has not moved for 1 s.
last=-1; still=0
for _ in $(seq 150); do
  cur=$(api_get "$API" /v1/workers | jq '[.[].rx_packets] | add')
  if [ "$cur" = "$last" ]; then still=$((still + 1)); [ $still -ge 5 ] && break; else still=0; fi
  last=$cur; sleep 0.2
done
[ $still -ge 5 ] || fail "batond kept receiving for 30 s after testpmd stopped sending"
sleep 1   # testpmd's rxonly loop takes what batond forwarded last
touch "$WORK/drainok"
for _ in $(seq 300); do [ -f "$WORK/drained" ] && break; kill -0 "$TP" 2>/dev/null || break; sleep 0.1; done
for _ in $(seq 100); do [ "$(grep -c 'NIC statistics for port' "$WORK/testpmd.log")" -ge 2 ] && break; sleep 0.1; done
[ "$(grep -c 'NIC statistics for port' "$WORK/testpmd.log")" -ge 2 ] || fail "testpmd did not print its final stats"
ports=$(api_get "$API" /v1/ports); counters=$(api_get "$API" /v1/counters)
touch "$WORK/read"
rc=0; wait "$TP" || rc=$?
[ "$rc" -eq 0 ] || fail "testpmd exited $rc"
grep -q "Link status: up" "$WORK/testpmd.log" || fail "memif links did not come up"

# Final ethdev stats from "show port stats all" (the last NIC statistics block per port).
tp_stat() {  # port field (RX-packets|TX-packets)
  awk -v p="$1" -v f="$2:" '
    /NIC statistics for port/ { cur = $(NF-1) }
    cur == p { for (i = 1; i < NF; i++) if ($i == f) v = $(i+1) }
    END { print v + 0 }' "$WORK/testpmd.log"
}
tp_tx0=$(tp_stat 0 TX-packets); tp_rx0=$(tp_stat 0 RX-packets)
tp_tx1=$(tp_stat 1 TX-packets); tp_rx1=$(tp_stat 1 RX-packets)
log "testpmd: port0 tx=$tp_tx0 rx=$tp_rx0, port1 tx=$tp_tx1 rx=$tp_rx1"

b_rx0=$(jq '.[0].rx_packets' <<<"$ports"); b_tx0=$(jq '.[0].tx_packets' <<<"$ports")
b_rx1=$(jq '.[1].rx_packets' <<<"$ports"); b_tx1=$(jq '.[1].tx_packets' <<<"$ports")
w_rx=$(jq .totals.rx_packets <<<"$counters"); w_tx=$(jq .totals.tx_packets <<<"$counters")
w_dr=$(jq .totals.dropped <<<"$counters")
log "batond: outside rx=$b_rx0 tx=$b_tx0, inside rx=$b_rx1 tx=$b_tx1; workers rx=$w_rx tx=$w_tx dropped=$w_dr"
log "batond drops: $(jq -c '.drops | with_entries(select(.value > 0))' <<<"$counters")"

[ "$tp_tx0" -ge 5000 ] || fail "testpmd sent only $tp_tx0 packets on port 0"
[ "$tp_tx1" -ge 5000 ] || fail "testpmd sent only $tp_tx1 packets on port 1"
[ "$tp_tx0" -eq "$b_rx0" ] || fail "testpmd port 0 sent $tp_tx0, batond outside received $b_rx0"
[ "$tp_tx1" -eq "$b_rx1" ] || fail "testpmd port 1 sent $tp_tx1, batond inside received $b_rx1"
[ "$b_tx1" -eq "$tp_rx1" ] || fail "batond inside sent $b_tx1, testpmd port 1 received $tp_rx1"
[ "$b_tx0" -eq "$tp_rx0" ] || fail "batond outside sent $b_tx0, testpmd port 0 received $tp_rx0"
[ "$w_rx" -eq $((b_rx0 + b_rx1)) ] || fail "workers received $w_rx, ports $((b_rx0 + b_rx1))"
[ "$w_tx" -eq $((b_tx0 + b_tx1)) ] || fail "workers sent $w_tx, ports $((b_tx0 + b_tx1))"
[ "$w_rx" -eq $((w_tx + w_dr)) ] || fail "worker counters do not add up: rx=$w_rx tx=$w_tx dropped=$w_dr"
other=$(jq '[.drops | to_entries[] | select(.key != "tx_full") | .value] | add' <<<"$counters")
[ "$other" -eq 0 ] || fail "batond dropped packets for reasons other than tx_full: $(jq -c .drops <<<"$counters")"
[ $((tp_rx1 * 2)) -ge "$tp_tx0" ] || fail "less than half of testpmd's port 0 traffic came through ($tp_rx1 of $tp_tx0)"
conns=$(jq .connections <<<"$counters")
[ "$conns" -eq "$FLOWS" ] || fail "batond tracks $conns connections, testpmd generated $FLOWS flows"
udp=$(api_get "$API" "/v1/connections?limit=1000" | jq '[.[] | select(.proto == "udp")] | length')
[ "$udp" -eq "$FLOWS" ] || fail "GET /v1/connections lists $udp UDP flows, expected $FLOWS"

stop_batond "$PID"
grep -q "final counters: rx=$w_rx tx=$w_tx dropped=$w_dr" "$WORK/fw.log" \
  || fail "final counters differ from the API's: $(grep 'final counters' "$WORK/fw.log")"
log "PASS"
