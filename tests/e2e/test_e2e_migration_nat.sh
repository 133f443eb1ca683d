#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# End-to-end live handoff of a VM whose connections leave through dynamic SNAT (mode l3,
# migration protocol 3, docs/WIRE.md "Handoff parts"):
#
#   [vm ns] 10.89.0.10, default via 10.89.0.1
#      |  br-ha --(inside)-- batond A --(outside 203.0.113.1)--+
#      |  br-hb --(inside)-- batond B --(outside 203.0.113.2)--+-- br-up -- [srv ns] 203.0.113.9
#   (the VM's veth moves from br-ha to br-hb)               route 198.51.100.10/32 via A, then B
#
# The VM is declared at A only; B learns it (MAC, addresses) through the handoff. A and B have
# the same SNAT rule (10.89.0.0/24 -> pool 198.51.100.10, ports 20000-29999) and the
# same gateway address 10.89.0.1 on their inside ports, with the same MAC (a distributed anycast
# gateway, as EVPN fabrics give every host): the VM keeps its ARP entry for the gateway.
#
# The pool address must follow the VM: the server (standing in for the upstream router) routes
# 198.51.100.10/32 via A's outside address, and the move switches that route to B's. A real
# deployment does the same with a routing update (the destination host announces the pool
# prefix, by BGP or an SDN controller, when the VM lands) or, when the pool sits in the uplink's
# subnet, with a gratuitous ARP for the pool address from the destination; this harness flips the
# route at the same moment it moves the VM's veth, as the hypervisor's resume would.
#
# Asserts: 40 long-lived verified connections, 10 opened during pre-copy and an iperf3 stream,
# all from the VM to the server through SNAT, survive prepare -> precopy -> pause -> move ->
# resume with SUCCESS, no reset and no kernel retransmission timeout; the server sees the pool
# address before and after, and the same pool port for every connection (its socket list is the
# same set before and after); B's /v1/nat/mappings lists every mapping A had, with A's outside
# port, and A keeps none; neither instance drops a packet of the VM (no_connection,
# frozen_overflow, nat_filtered, neighbor_miss); a new connection leaves through B's SNAT. Negative control: B with NAT but without this pool (another SNAT
# pool) refuses at PREPARE with FAIL(CONFLICT) naming 198.51.100.10; the VM's connections keep
# working through A.
source "$(dirname "$0")/lib.sh"

VM_IP=10.89.0.10; VM_MAC=02:00:00:89:00:10; GW=10.89.0.1; GW_MAC=02:00:00:89:00:01
SRV_IP=203.0.113.9; POOL=198.51.100.10; OTHER_POOL=198.51.100.20
declare -A OUT_IP=([a]=203.0.113.1 [b]=203.0.113.2)
N=40; LATE=10

VMNS=${BT}vm; SRV=${BT}srv
ns_add "$VMNS"; ns_add "$SRV"
bridge_add ${BT}up; bridge_add ${BT}ha; bridge_add ${BT}hb
host_link "$VMNS" eth0 $VM_IP/24 $VM_MAC ${BT}vr
ip link set ${BT}vr master ${BT}ha
ip -n "$VMNS" route add default via $GW
host_link "$SRV" eth0 $SRV_IP/24 02:00:00:89:00:09 ${BT}sv
ip link set ${BT}sv master ${BT}up
for x in a b; do
  veth_pair ${BT}${x}u ${BT}${x}U; ip link set ${BT}${x}U master ${BT}up
  veth_pair ${BT}${x}h ${BT}${x}H; ip link set ${BT}${x}H master ${BT}h$x
  ip link set ${BT}${x}h address $GW_MAC   # the anycast gateway MAC (af_packet takes the veth's)
  # The root namespace must not route what arrives on batond's veths (batond does).
  for l in ${BT}${x}u ${BT}${x}h; do sysctl -qw "net.ipv4.conf.$l.forwarding=0" 2>/dev/null || true; done
done
ip -n "$SRV" route add $POOL/32 via ${OUT_IP[a]}

gen_certs "$WORK/certs"
# Writes $WORK/$1.yaml. $6: the SNAT pool address (B's negative control uses another one).
nat_mig_config() {  # x api met mig peer_addr pool
  local x=$1 vms="vms: []"
  [ "$x" = a ] && vms="vms:
  - {name: vm1, mac: \"$VM_MAC\", ipv4: [$VM_IP]}"
  cat >"$WORK/$x.yaml" <<YAML
instance: $x
mode: l3
workers: 1
eal: {file_prefix: ${BT}n$x, memory_mb: 384, no_huge: true}
ports:
  - {name: outside, device: "net_af_packet0,iface=${BT}${x}u", zone: outside}
  - {name: inside, device: "net_af_packet1,iface=${BT}${x}h", zone: inside}
zones:
  - {name: outside, default: deny}
  - {name: inside, default: permit}
conntrack: {capacity: 100000}
$vms
l3:
  addresses:
    - {port: outside, address: ${OUT_IP[$x]}/24}
    - {port: inside, address: $GW/24}
nat:
  capacity: 16384
  snat:
    - {name: egress, source: 10.89.0.0/24, pool: [$6], ports: 20000-29999, block_size: 64}
control: {listen: $2}
metrics: {listen: $3}
$(mig_section "$x" "$4" "$5" 3000)
YAML
}
start_nat_pair() {  # B's pool
  A_API=127.0.0.1:$(free_port); B_API=127.0.0.1:$(free_port)
  A_MET=127.0.0.1:$(free_port); B_MET=127.0.0.1:$(free_port)
  A_MIG=127.0.0.1:$(free_port); B_MIG=127.0.0.1:$(free_port)
  nat_mig_config a "$A_API" "$A_MET" "$A_MIG" "$B_MIG" $POOL
  nat_mig_config b "$B_API" "$B_MET" "$B_MIG" "$A_MIG" "$1"
  start_batond "$WORK/a.yaml" "$A_API" a; A_PID=$BATOND_PID
  start_batond "$WORK/b.yaml" "$B_API" b; B_PID=$BATOND_PID
  # The server resolves both next hops (and so each instance learns the server, as a router
  # learns its upstream long before any VM moves); the VM resolves its gateway at A.
  for x in a b; do ip netns exec "$SRV" arping -q -c 1 -w 1 -I eth0 ${OUT_IP[$x]} >/dev/null 2>&1 || true; done
  ip netns exec "$VMNS" arping -q -c 1 -w 1 -I eth0 $GW >/dev/null 2>&1 || true
}
fail() {
  for x in A B; do m=${x}_MET; echo "$x drops: $(curl -sf "http://${!m}/metrics" | grep '^baton_drops_total' | grep -v ' 0$' | tr '\n' ' ')" >&2; done
  die "$@"
}
# The pool endpoints the server sees for its echo connections, sorted.
server_peers() {
  ip netns exec "$SRV" ss -Htn state established '( sport = :7000 )' | awk '{print $NF}' | sort
}
# inside -> outside of the VM's mappings at an instance, sorted.
vm_mappings() { api_get "$1" "/v1/nat/mappings?inside=$VM_IP" | jq -r '.[] | "\(.proto) \(.inside) \(.outside)"' | sort; }
await_phase() {  # api want polls: prints the report once its phase is want (or failed)
  local r ph
  for _ in $(seq "$3"); do
    r=$(api_get "$1" /v1/vms/vm1/migration); ph=$(jq -r .phase <<<"$r")
    { [ "$ph" = "$2" ] || [ "$ph" = failed ]; } && break
    sleep 0.1
  done
  echo "$r"
}

T="$PY $ROOT/tests/e2e/tcp_tools.py"
bg ip netns exec "$SRV" $T serve 7000
bg ip netns exec "$SRV" iperf3 -s -p 5201 --logfile "$WORK/iperf-server.log"
bg ip netns exec "$SRV" $T whoami 8000 srv
start_nat_pair $POOL
log "A and B up"
seen=""
for _ in 1 2 3; do seen=$(ip netns exec "$VMNS" curl -s -m 3 http://$SRV_IP:8000/) && break; done
[[ "$seen" == "srv $POOL:"* ]] || fail "the server does not see the pool address through A: '$seen'"
log "through A the server sees $seen"

# --- the handoff ------------------------------------------------------------------------------
bg ip netns exec "$VMNS" tcpdump -i eth0 -n -U -w "$WORK/rst.pcap" 'tcp[tcpflags] & tcp-rst != 0' 2>/dev/null
sleep 0.3
counters() { for ns in "$VMNS" "$SRV"; do echo "$(tcp_counter "$ns" TcpExtTCPTimeouts) $(tcp_counter "$ns" TcpOutRsts)"; done | awk '{t+=$1; r+=$2} END {print t+0, r+0}'; }
read -r to0 rst0 < <(counters)
bg ip netns exec "$VMNS" iperf3 -c $SRV_IP -p 5201 -t 14 -b 100M -J --logfile "$WORK/iperf.json"
IPERF=${PIDS[-1]}
bg ip netns exec "$VMNS" $T hold $SRV_IP 7000 $N 12 "$WORK/hold.json"
HOLD=${PIDS[-1]}
sleep 2

log "prepare"
migrate_signal "$A_API" vm1 "" '{"peers": ["b"]}' >/dev/null
r=$(await_phase "$A_API" precopy 50)
[ "$(jq -r .phase <<<"$r")" = precopy ] || fail "no pre-copy: $r"
# Connections opened after pre-copy began (new mappings) reach B only through the deltas.
bg ip netns exec "$VMNS" $T hold $SRV_IP 7000 $LATE 8 "$WORK/late.json"
HOLD_LATE=${PIDS[-1]}
sleep 2

peers_before=$(server_peers)
maps_a=$(vm_mappings "$A_API")
n_before=$(wc -l <<<"$peers_before")
[ "$n_before" -eq $((N + LATE)) ] || fail "server sees $n_before echo connections, want $((N + LATE))"
grep -qv "^$POOL:" <<<"$peers_before" && fail "the server sees a peer that is not the pool address: $(grep -v "^$POOL:" <<<"$peers_before" | head -3)"
log "A holds $(wc -l <<<"$maps_a") mappings of the VM; the server sees $n_before connections from $POOL"

log "pause"
r=$(migrate_signal "$A_API" vm1 pause)
[ "$(jq -r .phase <<<"$r")" = frozen ] || fail "pause did not freeze: $r"
# The move: the VM's veth changes bridges and announces itself (as QEMU does), and the pool
# address's route moves to B (the routing update of a real deployment).
ip link set ${BT}vr nomaster; ip link set ${BT}vr master ${BT}hb
ip netns exec "$VMNS" arping -q -U -c 1 -w 0 -I eth0 $VM_IP >/dev/null 2>&1 &
ip -n "$SRV" route replace $POOL/32 via ${OUT_IP[b]}
log "VM moved to host-b, $POOL routed via B"
r=$(migrate_signal "$A_API" vm1 resume)
echo "$r" | jq -c '{result, detail, entries, packets}'
[ "$(jq -r .result <<<"$r")" = SUCCESS ] || fail "migration did not succeed: $r"
sleep 1
peers_after=$(server_peers)
maps_b=$(vm_mappings "$B_API")
maps_a_after=$(vm_mappings "$A_API")

wait "$HOLD" || fail "long-lived connections broke: $(jq -c '[.results[] | select(.ok == false)][:3]' "$WORK/hold.json")"
wait "$HOLD_LATE" || fail "connections opened during pre-copy broke: $(jq -c '[.results[] | select(.ok == false)][:3]' "$WORK/late.json")"
read -r to1 rst1 < <(counters)   # now, while iperf3 still runs: its own end is not the move's doing
wait "$IPERF" || fail "iperf3 failed: $(tail -5 "$WORK/iperf.json")"
log "iperf3 through SNAT: $(jq '.end.sum_received.bits_per_second/1e6 | floor' "$WORK/iperf.json") Mbit/s, retransmits $(jq .end.sum_sent.retransmits "$WORK/iperf.json")"
log "RTOs $((to1 - to0)), RSTs $((rst1 - rst0))"
[ $((rst1 - rst0)) -eq 0 ] || fail "resets were sent: $(tcpdump -r "$WORK/rst.pcap" -n 2>/dev/null | head -5)"
[ $((to1 - to0)) -eq 0 ] || fail "$((to1 - to0)) retransmission timeouts during the move"

# Same pool address and port for every connection, seen from the server.
[ "$peers_after" = "$peers_before" ] || fail "the server's peers changed: $(diff <(echo "$peers_before") <(echo "$peers_after") | head -6)"
# B recreated every mapping with A's outside endpoint; A released them.
[ "$maps_b" = "$maps_a" ] || fail "B's mappings differ from A's: $(diff <(echo "$maps_a") <(echo "$maps_b") | head -6)"
[ -z "$maps_a_after" ] || fail "A still holds mappings of the VM: $(head -3 <<<"$maps_a_after")"
for p in $peers_before; do grep -q " $p\$" <<<"$maps_b" || fail "server's peer $p is not an outside endpoint at B"; done
log "B lists the VM's $(wc -l <<<"$maps_b") mappings with A's outside ports; the server's $n_before peers are unchanged"
for x in A B; do
  met=${x}_MET
  # neighbor_miss: B forwards the packets parked during the freeze to the VM's declared MAC,
  # before it has exchanged any ARP with the VM.
  for reason in no_connection frozen_overflow nat_filtered neighbor_miss; do
    n=$(metric_get "${!met}" baton_drops_total "reason=\"$reason\"")
    [ "$n" -eq 0 ] || fail "$x dropped $n packets as $reason"
  done
done
api_get "$B_API" /v1/vms | jq -e '.[] | select(.name == "vm1" and .state == "local")' >/dev/null || fail "B does not hold vm1"
# A new connection from the VM now leaves through B's SNAT.
seen=$(ip netns exec "$VMNS" curl -s -m 3 http://$SRV_IP:8000/) || fail "no new connection through B"
[[ "$seen" == "srv $POOL:"* ]] || fail "through B the server sees '$seen'"
stop_batond "$A_PID"; stop_batond "$B_PID"

# --- negative control: B translates, but not with this pool ----------------------------------------
log "negative control: B without pool $POOL"
ip link set ${BT}vr nomaster; ip link set ${BT}vr master ${BT}ha
ip -n "$SRV" route replace $POOL/32 via ${OUT_IP[a]}
start_nat_pair $OTHER_POOL
bg ip netns exec "$VMNS" $T hold $SRV_IP 7000 10 5 "$WORK/neg.json"
HOLD=${PIDS[-1]}
sleep 1.5
migrate_signal "$A_API" vm1 "" '{"peers": ["b"]}' >/dev/null
r=$(await_phase "$A_API" failed 50)
echo "$r" | jq -c '{phase, result, detail}'
[ "$(jq -r .result <<<"$r")" = CONFLICT ] || fail "expected FAIL(CONFLICT): $r"
jq -r .detail <<<"$r" | grep -qF "$POOL" || fail "the CONFLICT does not name $POOL: $r"
wait "$HOLD" || fail "connections broke after the refused migration: $(jq -c '[.results[] | select(.ok == false)][:3]' "$WORK/neg.json")"
api_get "$A_API" /v1/vms | jq -e '.[] | select(.name == "vm1" and .state == "local")' >/dev/null || fail "vm1 not local at A"
[ -z "$(vm_mappings "$B_API")" ] || fail "B kept mappings of a refused VM"
log "B refused with CONFLICT naming $POOL; the VM's connections kept working through A"
stop_batond "$A_PID"; stop_batond "$B_PID"
log "PASS"
