#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# baton-pktgen drives synthetic TCP conversations (handshake, data both ways, teardown, exact
# seq/ack) through the real batond over net_memif, plus one far out-of-window segment per flow:
# every conversation packet must come back out of the other port, no attack may, and batond's
# counters must agree (connections created, tcp_out_of_window drops).
source "$(dirname "$0")/../e2e/lib.sh"
PKTGEN=$BUILD/tools/baton-pktgen
FLOWS=64
SOCK_OUT=$WORK/out.sock; SOCK_IN=$WORK/in.sock
API=127.0.0.1:$(free_port); MET=127.0.0.1:$(free_port)
cat >"$WORK/fw.yaml" <<YAML
instance: pktgen
workers: 1
eal: {file_prefix: ${BT}pg, memory_mb: 256, no_huge: true}
ports:
  - {name: outside, device: "net_memif0,role=server,id=0,socket=$SOCK_OUT,socket-abstract=no", zone: outside}
  - {name: inside, device: "net_memif1,role=server,id=0,socket=$SOCK_IN,socket-abstract=no", zone: inside}
zones: [{name: outside, default: permit}, {name: inside, default: deny}]
conntrack: {capacity: 10000}
control: {listen: $API}
metrics: {listen: $MET}
YAML
start_batond "$WORK/fw.yaml" "$API" pktgen; PID=$BATOND_PID
rc=0
timeout 120 "$PKTGEN" --no-huge -m 256 --no-pci -l 0 --file-prefix ${BT}pgc --log-level=error \
  --vdev="net_memif0,role=client,id=0,socket=$SOCK_OUT,socket-abstract=no" \
  --vdev="net_memif1,role=client,id=0,socket=$SOCK_IN,socket-abstract=no" \
  -- --flows $FLOWS --segments 4 --attack >"$WORK/pktgen.json" 2>"$WORK/pktgen.err" || rc=$?
cat "$WORK/pktgen.json"
[ -s "$WORK/pktgen.json" ] || { cat "$WORK/pktgen.err"; die "baton-pktgen printed nothing"; }
if [ "$(jq .lost "$WORK/pktgen.json")" -ne 0 ]; then
  curl -s "http://$MET/metrics" | grep -E '^baton_(drops|port_.*(missed|errors))' | grep -v ' 0$' || true
  die "conversation packets were lost"
fi
[ "$(jq .send_failed "$WORK/pktgen.json")" -eq 0 ] || die "baton-pktgen could not send some packets"
[ "$(jq .attacks_passed "$WORK/pktgen.json")" -eq 0 ] || die "out-of-window segments passed"
[ "$rc" -eq 0 ] || die "baton-pktgen exited $rc"
created=$(metric_sum "$MET" baton_conn_created_total)
oow=$(metric_get "$MET" baton_drops_total 'reason="tcp_out_of_window"')
log "batond: $created connections created, $oow out-of-window drops"
[ "$created" -eq $FLOWS ] || die "expected $FLOWS connections, batond created $created"
[ "$oow" -eq $FLOWS ] || die "expected $FLOWS out-of-window drops, got $oow"

# --open (the migration benchmark's filler): 5,000 connections opened in bursts and left open,
# each through batond's strict tracking: every handshake packet comes back and batond holds
# them all established.
OPEN=5000
timeout 120 "$PKTGEN" --no-huge -m 256 --no-pci -l 0 --file-prefix ${BT}pgo --log-level=error \
  --vdev="net_memif0,role=client,id=0,socket=$SOCK_OUT,socket-abstract=no" \
  --vdev="net_memif1,role=client,id=0,socket=$SOCK_IN,socket-abstract=no" \
  -- --open --flows $OPEN --clients 8 >"$WORK/open.json" 2>"$WORK/open.err" ||
  die "baton-pktgen --open: $(cat "$WORK/open.json" "$WORK/open.err")"
cat "$WORK/open.json"
[ "$(jq .received "$WORK/open.json")" -eq $(( 3 * OPEN )) ] || die "handshake packets were lost"
# (The first 8 reuse the TIME_WAIT entries of the conversations above: same addresses and ports.)
established=$(metric_get "$MET" baton_connections 'state="established"')
[ "$established" -eq $OPEN ] || die "$established connections established, expected $OPEN"
stop_batond "$PID"
log "PASS"
