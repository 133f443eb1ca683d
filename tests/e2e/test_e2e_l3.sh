#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# End-to-end, routed L3 mode: batond is the default gateway of two namespaces, over
# net_af_packet on veth (a port's MAC is the veth's own MAC).
#   client 10.91.1.2/24 via 10.91.1.1 (batond port "outside", zone outside)
#   server 10.91.2.2/24 via 10.91.2.1 (batond port "inside", zone inside)
# Asserts: the client's ARP for 10.91.1.1 is answered with the port's MAC, and batond resolves
# the server itself (the server's neighbour entry for 10.91.2.1 is batond's inside MAC); the
# first packet to an unresolved next hop is counted as neighbor_miss; ping crosses the router
# and the TTL is decremented both ways (the server sees ttl 63 from a client sending 64, the
# client's replies show ttl=63); 50 concurrent TCP connections through the router all verify
# their echo; an unsolicited SYN from outside to a closed port is dropped (acl_deny); IPv6 link
# chatter is dropped as ipv6_unrouted; SIGTERM exits 0.
# L3_WORKERS (default 2) sets the worker count: with 2, ARP reaching worker 1 is handed to
# worker 0, the neighbour table's owner.
source "$(dirname "$0")/lib.sh"

CLI=${BT}l3c; SRV=${BT}l3s
ns_add "$CLI"; ns_add "$SRV"
host_link "$CLI" eth0 10.91.1.2/24 02:00:00:91:01:02 ${BT}lc
host_link "$SRV" eth0 10.91.2.2/24 02:00:00:91:02:02 ${BT}ls
ip -n "$CLI" route add default via 10.91.1.1
ip -n "$SRV" route add default via 10.91.2.1
# The root namespace must not route what arrives on batond's veths (batond does).
for l in ${BT}lc ${BT}ls; do
  sysctl -qw "net.ipv4.conf.$l.forwarding=0" 2>/dev/null || true
done
OUT_MAC=$(cat /sys/class/net/${BT}lc/address); IN_MAC=$(cat /sys/class/net/${BT}ls/address)

API=127.0.0.1:$(free_port); MET=127.0.0.1:$(free_port)
cat >"$WORK/l3.yaml" <<YAML
instance: l3
mode: l3
workers: ${L3_WORKERS:-2}
eal: {file_prefix: ${BT}l3, memory_mb: 256, no_huge: true}
ports:
  - {name: outside, device: "net_af_packet0,iface=${BT}lc", zone: outside}
  - {name: inside, device: "net_af_packet1,iface=${BT}ls", zone: inside}
zones:
  - {name: outside, default: deny}
  - {name: inside, default: permit}
acl:
  - {zone: outside, dst: 10.91.2.2/32, proto: tcp, dport: 7000, action: permit}
  - {zone: outside, proto: icmp, action: permit}
conntrack: {capacity: 100000}
l3:
  addresses:
    - {port: outside, address: 10.91.1.1/24}
    - {port: inside, address: 10.91.2.1/24}
control: {listen: $API}
metrics: {listen: $MET}
YAML
start_batond "$WORK/l3.yaml" "$API" l3; PID=$BATOND_PID
# On failure, show what batond counted.
fail() {
  curl -sf "http://$MET/metrics" | grep -E '^baton_(drops_total|worker_(rx|tx)_packets|handoff)' | grep -v ' 0$' >&2 || true
  die "$@"
}
log "batond up (pid $PID), outside MAC $OUT_MAC, inside MAC $IN_MAC"

# --- ARP and the first packet to an unresolved next hop ---------------------------------------
miss_before=$(metric_get "$MET" baton_drops_total 'reason="neighbor_miss"')
# The first echo resolves both sides (and is dropped as neighbor_miss while batond asks for the
# server); retried in case the machine is slow.
for _ in 1 2 3; do ip netns exec "$CLI" ping -c 1 -W 1 10.91.2.2 >/dev/null 2>&1 && break; done
for _ in $(seq 20); do
  [ "$(ip -n "$SRV" neigh show 10.91.2.1 | grep -ci "$IN_MAC")" -gt 0 ] && break
  sleep 0.1
done
neigh_cli=$(ip -n "$CLI" neigh show 10.91.1.1)
log "client: $neigh_cli"
grep -qi "lladdr $OUT_MAC" <<<"$neigh_cli" || fail "client's ARP for 10.91.1.1 not answered with $OUT_MAC"
neigh_srv=$(ip -n "$SRV" neigh show 10.91.2.1)
log "server: $neigh_srv"
grep -qi "lladdr $IN_MAC" <<<"$neigh_srv" || fail "batond did not ARP for the server from $IN_MAC"
miss_after=$(metric_get "$MET" baton_drops_total 'reason="neighbor_miss"')
[ "$miss_after" -gt "$miss_before" ] || fail "no neighbor_miss counted for the unresolved next hop"

# --- ping across, TTL decremented both ways ------------------------------------------------------
bg ip netns exec "$SRV" tcpdump -U --immediate-mode -i eth0 -n -w "$WORK/ttl.pcap" "icmp and src 10.91.1.2" 2>"$WORK/tcpdump.err"
TCPD=${PIDS[-1]}
for _ in $(seq 50); do grep -q "listening on" "$WORK/tcpdump.err" 2>/dev/null && break; sleep 0.1; done
sleep 0.2
ip netns exec "$CLI" ping -c 3 -i 0.3 -W 2 -t 64 10.91.2.2 >"$WORK/ping.out" || { cat "$WORK/ping.out"; fail "ping through the router failed"; }
sleep 1.2  # libpcap hands packets over per ring block; let it time out
kill "$TCPD" 2>/dev/null; wait "$TCPD" 2>/dev/null || true
grep -q "ttl=63" "$WORK/ping.out" || { cat "$WORK/ping.out"; fail "echo replies did not arrive with ttl 63"; }
seen=$(tcpdump -r "$WORK/ttl.pcap" -n -v 2>/dev/null | grep -c "ttl 63" || true)
other=$(tcpdump -r "$WORK/ttl.pcap" -n -v 2>/dev/null | grep "ttl " | grep -vc "ttl 63" || true)
log "server saw $seen echo requests with ttl 63, $other with another ttl"
[ "$seen" -ge 3 ] && [ "$other" -eq 0 ] || fail "server did not see ttl 63 on every request"
# The router's rewrite keeps every checksum valid (tcpdump -v flags a bad IP checksum).
if tcpdump -r "$WORK/ttl.pcap" -n -v 2>/dev/null | grep -qi "bad cksum"; then fail "bad IP checksum after the TTL rewrite"; fi

# --- 50 concurrent connections through the router ------------------------------------------------
bg ip netns exec "$SRV" "$PY" "$ROOT/tests/e2e/tcp_tools.py" serve 7000
sleep 0.5
ip netns exec "$CLI" "$PY" "$ROOT/tests/e2e/tcp_tools.py" storm 10.91.2.2 7000 50 2048 || fail "connection storm through the router failed"
log "50 connections through the router verified"
conns=$(api_get "$API" "/v1/connections?addr=10.91.1.2" | jq length)
[ "$conns" -ge 50 ] || fail "expected >= 50 tracked connections, got $conns"

# --- an unsolicited SYN from outside to a closed port ----------------------------------------------
deny_before=$(metric_get "$MET" baton_drops_total 'reason="acl_deny"')
if ip netns exec "$CLI" nc -z -w 2 10.91.2.2 2222; then fail "SYN to a closed port went through"; fi
deny_after=$(metric_get "$MET" baton_drops_total 'reason="acl_deny"')
[ "$deny_after" -gt "$deny_before" ] || fail "acl_deny did not count the SYN"
# The inside zone may open connections outward through the router.
bg ip netns exec "$CLI" "$PY" "$ROOT/tests/e2e/tcp_tools.py" serve 7100
sleep 0.3
ip netns exec "$SRV" "$PY" "$ROOT/tests/e2e/tcp_tools.py" storm 10.91.1.2 7100 5 100 || fail "inside-initiated connection failed"

v6=$(metric_get "$MET" baton_drops_total 'reason="ipv6_unrouted"')
log "drops: neighbor_miss=$(metric_get "$MET" baton_drops_total 'reason="neighbor_miss"') acl_deny=$deny_after ipv6_unrouted=$v6 not_for_us=$(metric_get "$MET" baton_drops_total 'reason="not_for_us"')"

# Every frame is accounted for: what came in (plus what Baton originated) went out, was
# dropped with a reason, was consumed by Baton itself (ARP), or was handed to its owner.
sum() { metric_sum "$MET" "baton_worker_$1_packets_total"; }
in_=$(( $(sum rx) + $(sum local_out) ))
out_=$(( $(sum tx) + $(sum dropped) + $(sum local_in) + $(metric_sum "$MET" baton_handoff_out_packets_total) ))
log "accounted: in $in_, out $out_"
[ "$in_" -eq "$out_" ] || die "worker counters do not balance: in=$in_ out=$out_"
stop_batond "$PID"
log "PASS"
