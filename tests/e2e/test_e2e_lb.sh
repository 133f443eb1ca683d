#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# End-to-end L4 load balancing (mode l3, af_packet on veth, LB_WORKERS workers, default 2):
#   client 198.51.100.2/24 (gateway 198.51.100.1 = batond "outside")
#   backends b1 b2 b3 = 10.2.0.11-13:8000 on a bridge (gateway 10.2.0.1 = batond "inside"),
#   weights 3:2:1; the root namespace sits on the bridge as 10.2.0.250 to run health checks
#   (probes use the kernel's stack, as DPVS's keepalived does)
#   VIP 198.51.100.10:80 mode nat; 198.51.100.11:80 mode nat, sticky by source address;
#   198.51.100.12:80 mode fullnat from local address 10.2.0.100
# Asserts: 600 new connections to the VIP spread by weight (each backend within 6 points of
# its share) and backends see the client's address; 60 connections to the sticky VIP all land
# on one backend while the same client spreads over every backend on the plain VIP (the
# negative control for stickiness); full NAT backends see the local address; b1 killed: the
# HTTP health check marks it down within seconds, then every new connection succeeds on b2/b3;
# the API lists services, backends (health, active connections) and the sticky entry.
source "$(dirname "$0")/lib.sh"

CLI=${BT}lc
ns_add "$CLI"
host_link "$CLI" eth0 198.51.100.2/24 02:00:00:05:00:02 ${BT}lch
ip -n "$CLI" route add default via 198.51.100.1
bridge_add ${BT}lb
veth_pair ${BT}lbi ${BT}lbd   # bridge end, batond end
ip link set ${BT}lbi master ${BT}lb
ip addr add 10.2.0.250/24 dev ${BT}lb
for i in 1 2 3; do
  ns_add ${BT}b$i
  host_link ${BT}b$i eth0 10.2.0.1$i/24 02:00:00:06:00:1$i ${BT}b${i}h
  ip link set ${BT}b${i}h master ${BT}lb
  ip -n ${BT}b$i route add default via 10.2.0.1
done
for l in ${BT}lch ${BT}lbd; do sysctl -qw "net.ipv4.conf.$l.forwarding=0" 2>/dev/null || true; done

API=127.0.0.1:$(free_port); MET=127.0.0.1:$(free_port)
cat >"$WORK/lb.yaml" <<YAML
instance: lb
mode: l3
workers: ${LB_WORKERS:-2}
eal: {file_prefix: ${BT}lb, memory_mb: 256, no_huge: true}
ports:
  - {name: outside, device: "net_af_packet0,iface=${BT}lch", zone: outside}
  - {name: inside, device: "net_af_packet1,iface=${BT}lbd", zone: inside}
zones:
  - {name: outside, default: deny}
  - {name: inside, default: permit}
acl:   # rules see the destination after translation: the backends
  - {zone: outside, dst: 10.2.0.0/24, proto: tcp, dport: 8000, action: permit}
conntrack: {capacity: 100000}
l3:
  addresses:
    - {port: outside, address: 198.51.100.1/24}
    - {port: inside, address: 10.2.0.1/24}
lb:
  sticky_capacity: 4096
  pools:
    - name: web
      backends:
        - {address: 10.2.0.11, port: 8000, weight: 3}
        - {address: 10.2.0.12, port: 8000, weight: 2}
        - {address: 10.2.0.13, port: 8000, weight: 1}
      health_check: {type: http, path: /, interval_ms: 300, timeout_ms: 300, rise: 2, fall: 2}
  services:
    - {name: web, vip: 198.51.100.10, port: 80, proto: tcp, mode: nat, pool: web}
    - name: web-sticky
      vip: 198.51.100.11
      port: 80
      proto: tcp
      mode: nat
      pool: web
      sticky: {method: source-address, timeout: 60}
    - {name: web-fullnat, vip: 198.51.100.12, port: 80, proto: tcp, mode: fullnat, pool: web, local_addresses: [10.2.0.100]}
control: {listen: $API}
metrics: {listen: $MET}
YAML

T="$PY $ROOT/tests/e2e/tcp_tools.py"
for i in 1 2 3; do bg ip netns exec ${BT}b$i $T whoami 8000 b$i; done
B1_PID=${PIDS[0]}
sleep 0.5
start_batond "$WORK/lb.yaml" "$API" lb; PID=$BATOND_PID
fail() {
  curl -sf "http://$MET/metrics" | grep -E '^baton_(drops_total|conn_translated|lb_)' | grep -v ' 0$' >&2 || true
  api_get "$API" /v1/lb/pools >&2 || true
  die "$@"
}
log "batond up (pid $PID)"
for _ in 1 2 3; do ip netns exec "$CLI" curl -s -m 2 http://198.51.100.10/ >/dev/null && break; done

# --- spread by weight -----------------------------------------------------------------------
ip netns exec "$CLI" $T http-spread 198.51.100.10 80 600 8 >"$WORK/spread.json"
jq -c '{counts, failed}' "$WORK/spread.json"
[ "$(jq .failed "$WORK/spread.json")" -eq 0 ] || fail "connections to the VIP failed"
for pair in b1:50 b2:33 b3:17; do
  b=${pair%:*}; want=${pair#*:}
  got=$(jq ".counts.$b // 0" "$WORK/spread.json")
  pct=$(( got * 100 / 600 ))
  [ $(( pct - want )) -le 6 ] && [ $(( want - pct )) -le 6 ] || fail "$b got $pct% of new connections, weight says $want%"
done
jq -r '.bodies[]' "$WORK/spread.json" | grep -qv " 198.51.100.2:" && fail "a backend did not see the client's own address (mode nat)"
log "weights 3:2:1 -> $(jq -c .counts "$WORK/spread.json"); backends see the client address"

# --- stickiness by source address, and its negative control ----------------------------------
ip netns exec "$CLI" $T http-spread 198.51.100.11 80 60 4 >"$WORK/sticky.json"
sticky_backends=$(jq '.counts | length' "$WORK/sticky.json")
[ "$(jq .failed "$WORK/sticky.json")" -eq 0 ] || fail "connections to the sticky VIP failed"
[ "$sticky_backends" -eq 1 ] || fail "sticky VIP spread one client over $sticky_backends backends"
plain_backends=$(jq '.counts | length' "$WORK/spread.json")
[ "$plain_backends" -ge 2 ] || fail "negative control: the plain VIP kept one client on one backend"
stuck=$(jq -r '.counts | keys[0]' "$WORK/sticky.json")
api_get "$API" /v1/lb/sticky | jq -e '[.[] | select(.service == "web-sticky")] | length == 1' >/dev/null \
  || fail "sticky entry not listed"
log "sticky VIP: 60/60 connections on $stuck (plain VIP used $plain_backends backends)"

# --- full NAT --------------------------------------------------------------------------------
body=$(ip netns exec "$CLI" curl -s -m 3 http://198.51.100.12/) || fail "full NAT VIP failed"
[[ "$body" == b?" 10.2.0.100:"* ]] || fail "full NAT: backend saw '$body'"
log "full NAT: $body"

# --- a backend dies: health check, new connections elsewhere ----------------------------------
kill "$B1_PID"; wait "$B1_PID" 2>/dev/null || true
down=0
for _ in $(seq 50); do
  st=$(api_get "$API" /v1/lb/pools | jq -r '.[] | select(.name=="web") | .backends[] | select(.address=="10.2.0.11") | .healthy')
  [ "$st" = false ] && { down=1; break; }
  sleep 0.1
done
[ "$down" -eq 1 ] || fail "health check did not mark b1 down"
ip netns exec "$CLI" $T http-spread 198.51.100.10 80 200 8 >"$WORK/after.json"
jq -c '{counts, failed}' "$WORK/after.json"
[ "$(jq .failed "$WORK/after.json")" -eq 0 ] || fail "new connections failed after b1 died"
[ "$(jq '.counts.b1 // 0' "$WORK/after.json")" -eq 0 ] || fail "b1 still got new connections"
log "b1 killed: marked down, 200/200 new connections on b2/b3"
api_get "$API" /v1/lb/services | jq -e 'length == 3' >/dev/null || fail "services not listed"
"$BATONCTL" --api "$API" lb pools | grep -Eq "^web +10.2.0.11:8000 +3 +up +down" || fail "batonctl lb pools does not show b1 down"
metric_sum "$MET" baton_lb_backend_connections_total | grep -qv '^0$' || fail "no per-backend connection counters"
stop_batond "$PID"
log "PASS"
