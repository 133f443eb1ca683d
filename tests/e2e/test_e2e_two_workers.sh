#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# End-to-end, two workers: one batond (workers: 2, so two af_packet qpairs per port with kernel
# fanout) between a client namespace (outside) and a server namespace (inside, a VM with six
# addresses). iperf3 -P 4 for 5 s (50 Mbit/s per stream: the 2-core machine also runs the
# endpoints) runs while 300 concurrent short connections, spread over the
# server's addresses, each send and verify data. Asserts:
#   every connection and the iperf3 run succeed; both workers received packets and both shards
#   hold connections; packets were handed to the owning worker (baton_handoff_out_packets_total
#   > 0); no flow appears twice in GET /v1/connections (one owner per flow) and every flow of
#   one address pair is owned by the same worker (the owner hash is over the addresses, so
#   non-first fragments, which carry no ports, reach the same owner); the counters add up
#   (worker rx = port rx + handoff, worker rx = tx + dropped + handoff); SIGTERM exits 0.
source "$(dirname "$0")/lib.sh"
# DPDK runtime directories of this run go too.
trap 'cleanup; for d in ${BT}fw2; do rm -rf "/var/run/dpdk/$d"; done' EXIT

CLI=${BT}cli; SRV=${BT}srv
ADDRS=(10.77.0.10 10.77.0.11 10.77.0.12 10.77.0.13 10.77.0.14 10.77.0.15)
ns_add "$CLI"; ns_add "$SRV"
host_link "$CLI" eth0 10.77.0.1/24 02:00:00:77:00:01 ${BT}c
host_link "$SRV" eth0 10.77.0.10/24 02:00:00:77:00:10 ${BT}s
for a in "${ADDRS[@]:1}"; do ip -n "$SRV" addr add "$a/32" dev eth0; done
API=127.0.0.1:$(free_port); MET=127.0.0.1:$(free_port)
ipv4_list=$(IFS=,; echo "${ADDRS[*]}")
{ l2_config_head fw2 2; cat <<YAML; } >"$WORK/fw.yaml"
acl:
  - {zone: outside, dst: 10.77.0.8/29, proto: tcp, dport: 5201, action: permit}
  - {zone: outside, dst: 10.77.0.8/29, proto: tcp, dport: 7000, action: permit}
  - {zone: outside, proto: icmp, action: permit}
conntrack: {capacity: 100000}
vms:
  - {name: srv, mac: "02:00:00:77:00:10", ipv4: [$ipv4_list]}
YAML
start_batond "$WORK/fw.yaml" "$API" fw; PID=$BATOND_PID
log "batond up (pid $PID)"
ports=$(api_get "$API" /v1/ports)
[ "$(jq '[.[].rx_queues] | min' <<<"$ports")" -eq 2 ] || die "ports do not have 2 rx queues: $(jq -c '[.[].rx_queues]' <<<"$ports")"

# The API answers before the workers poll (batond starts them last): wait for "running".
for _ in $(seq 100); do grep -q "instance fw2 running" "$WORK/fw.log" && break; sleep 0.1; done
for a in "${ADDRS[@]}"; do
  ok=0
  for _ in 1 2 3 4 5; do ip netns exec "$CLI" ping -c 1 -W 2 "$a" >/dev/null && { ok=1; break; }; done
  [ $ok -eq 1 ] || die "ping $a through batond failed 5 times"
done

# --- iperf3 -P 4 for 5 s with 300 concurrent short connections alongside ---------------------
bg ip netns exec "$SRV" iperf3 -s -p 5201 -1 >"$WORK/iperf-server.log" 2>&1
bg ip netns exec "$SRV" "$PY" "$ROOT/tests/e2e/tcp_tools.py" serve 7000
sleep 0.5
to_before=$(tcp_counter "$CLI" TcpExtTCPTimeouts); to_before=${to_before:-0}
ip netns exec "$CLI" iperf3 -c 10.77.0.10 -p 5201 -P 4 -t 5 -b 50M -J >"$WORK/iperf.json" &
IPERF=$!; PIDS+=($IPERF)
sleep 1
storms=()
for a in "${ADDRS[@]}"; do
  ip netns exec "$CLI" "$PY" "$ROOT/tests/e2e/tcp_tools.py" storm "$a" 7000 50 2048 >"$WORK/storm-$a.out" 2>&1 &
  storms+=($!); PIDS+=($!)
done
fails=0
for i in "${!storms[@]}"; do
  wait "${storms[$i]}" || { fails=$((fails + 1)); cat "$WORK/storm-${ADDRS[$i]}.out" >&2; }
done
ok=$(cat "$WORK"/storm-*.out | awk '/^storm:/ {split($2, a, "/"); s += a[1]} END {print s + 0}')
log "storm: $ok/300 connections ok"
if [ "$fails" -ne 0 ] || [ "$ok" -ne 300 ]; then
  api_get "$API" /v1/counters | jq -c '{drops: (.drops | with_entries(select(.value > 0))), totals, connections_by_state}' >&2
  api_get "$API" /v1/workers | jq -c . >&2
  api_get "$API" /v1/ports | jq -c "[.[] | {name, rx_packets, tx_packets, rx_missed, rx_errors, tx_errors}]" >&2
  api_get "$API" /v1/connections?limit=100000 >"$WORK/conns-fail.json"
fi
[ "$fails" -eq 0 ] && [ "$ok" -eq 300 ] || die "connection storm: only $ok of 300 connections succeeded"
wait "$IPERF" || die "iperf3 -P 4 failed: $(jq -r '.error // empty' "$WORK/iperf.json" 2>/dev/null)"
bps=$(jq '.end.sum_received.bits_per_second' "$WORK/iperf.json")
streams=$(jq '.end.streams | length' "$WORK/iperf.json")
[ "$streams" -eq 4 ] || die "iperf3 reports $streams streams, expected 4"
to_after=$(tcp_counter "$CLI" TcpExtTCPTimeouts); to_after=${to_after:-0}
log "iperf3 -P 4: $(awk -v b="$bps" 'BEGIN{printf "%.1f Mbit/s", b/1e6}'), retransmits=$(jq '.end.sum_sent.retransmits' "$WORK/iperf.json"), per stream $(jq -c '[.end.streams[].receiver.bits_per_second / 1e6 | floor]' "$WORK/iperf.json") Mbit/s, client RTOs=$((to_after - to_before)), port rx_missed=$(api_get "$API" /v1/ports | jq -c '[.[].rx_missed]')"

# --- both workers worked, handoff happened, one owner per flow ---------------------------------
workers=$(api_get "$API" /v1/workers)
log "workers: $(jq -c '[.[] | {id, rx_packets, connections}]' <<<"$workers")"
[ "$(jq length <<<"$workers")" -eq 2 ] || die "GET /v1/workers lists $(jq length <<<"$workers") workers"
[ "$(jq '[.[].rx_packets] | min' <<<"$workers")" -gt 0 ] || die "a worker received nothing"
[ "$(jq '[.[].connections] | min' <<<"$workers")" -gt 0 ] || die "a worker's shard holds no connection"
handoff=$(metric_sum "$MET" baton_handoff_out_packets_total)
log "handoff: $handoff packets handed to their owner"
[ "$handoff" -gt 0 ] || die "no packet was handed off between workers"

conns=$(api_get "$API" "/v1/connections?limit=100000")
n=$(jq length <<<"$conns")
total=$(jq '[.[].connections] | add' <<<"$workers")
[ "$n" -eq "$total" ] || die "GET /v1/connections lists $n entries, the workers count $total"
[ "$n" -ge 305 ] || die "only $n connections in the table after 300 + 5 connections"
dups=$(jq '[group_by([.proto, .src, .sport, .dst, .dport, .vlan])[] | select(length > 1)] | length' <<<"$conns")
[ "$dups" -eq 0 ] || die "$dups flows appear more than once (in two shards?)"
split=$(jq '[group_by([.src, .dst] | sort)[] | select(([.[].owner] | unique | length) > 1)] | length' <<<"$conns")
[ "$split" -eq 0 ] || die "$split address pairs have connections in both shards"
owners=$(jq -c '[group_by(.owner)[] | {owner: .[0].owner, n: length}]' <<<"$conns")
log "connections by owner: $owners"
[ "$(jq '[.[].owner] | unique | length' <<<"$conns")" -eq 2 ] || die "connections are all in one shard: $owners"
for a in "${ADDRS[@]}"; do
  c=$(jq --arg a "$a" '[.[] | select(.dst == $a and .dport == 7000)] | length' <<<"$conns")
  [ "$c" -eq 50 ] || die "$c connections to $a:7000 in the table, expected 50"
done

# --- counters add up (after the traffic stopped) -------------------------------------------
sleep 1
m=$(curl -sf "http://$MET/metrics") || die "GET /metrics failed"
msum() { scrape_sum "$1" <<<"$m"; }
rx=$(msum baton_worker_rx_packets_total); tx=$(msum baton_worker_tx_packets_total)
dr=$(msum baton_worker_dropped_packets_total); ho=$(msum baton_handoff_out_packets_total)
prx=$(msum baton_port_rx_packets_total)
log "workers rx=$rx tx=$tx dropped=$dr handoff=$ho; ports rx=$prx; drops: $(api_get "$API" /v1/counters | jq -c '.drops | with_entries(select(.value > 0))')"
[ "$rx" -eq $((prx + ho)) ] || die "worker rx ($rx) != port rx ($prx) + handoff ($ho)"
[ "$rx" -eq $((tx + dr + ho)) ] || die "worker rx ($rx) != tx ($tx) + dropped ($dr) + handoff ($ho)"

stop_batond "$PID"
grep -q "final counters" "$WORK/fw.log" || die "no final counters logged"
log "PASS"
