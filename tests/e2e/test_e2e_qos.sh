#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# End-to-end, a VM's QoS rate: one batond with two workers between a client namespace
# (outside) and a server namespace (inside) that holds the VM "srv" (10.78.0.10, profile
# qos_rate_bps 40 Mbit/s) and an address that belongs to no VM (10.78.0.20). Asserts:
#   iperf3 -P 4 to the VM, and from it (-R), each gets at most the rate (the policer is one per
#   VM, shared by both workers, so four streams spread over two workers still add up to the
#   rate) and a sizeable part of it (TCP settles under the policer rather than collapsing);
#   the negative control: the same iperf3 to the address of no VM runs several times faster;
#   batond counts the drops (baton_drops_total{reason="qos_exceeded"}), and GET /v1/vms and
#   /metrics (baton_vm_qos_*) show the VM's rate and its drops per direction.
# Then the profile's SYN-flood guard (max_half_open 20): 60 SYNs from a forged address that
# never answers leave 20 handshakes to the VM unfinished and are dropped past them
# (half_open_limit); a real client's connection to the VM is refused while they stand, and the
# VM's own connections out (the other direction) are not.
source "$(dirname "$0")/lib.sh"
trap 'cleanup; rm -rf "/var/run/dpdk/${BT}qos"' EXIT

RATE=40000000
CLI=${BT}cli; SRV=${BT}srv
ns_add "$CLI"; ns_add "$SRV"
host_link "$CLI" eth0 10.78.0.1/24 02:00:00:78:00:01 ${BT}c
host_link "$SRV" eth0 10.78.0.10/24 02:00:00:78:00:10 ${BT}s
ip -n "$SRV" addr add 10.78.0.20/32 dev eth0
API=127.0.0.1:$(free_port); MET=127.0.0.1:$(free_port)
{ l2_config_head qos 2; cat <<YAML; } >"$WORK/fw.yaml"
acl:
  - {zone: outside, dst: 10.78.0.0/24, proto: tcp, dport: 5201, action: permit}
  - {zone: outside, proto: icmp, action: permit}
conntrack: {capacity: 10000}
vms:
  - {name: srv, mac: "02:00:00:78:00:10", ipv4: [10.78.0.10], profile: {qos_rate_bps: $RATE, max_half_open: 20}}
YAML
start_batond "$WORK/fw.yaml" "$API" fw; PID=$BATOND_PID
for _ in $(seq 100); do grep -q "instance qos running" "$WORK/fw.log" && break; sleep 0.1; done
for a in 10.78.0.10 10.78.0.20; do
  ok=0
  for _ in 1 2 3 4 5; do ip netns exec "$CLI" ping -c 1 -W 2 "$a" >/dev/null && { ok=1; break; }; done
  [ $ok -eq 1 ] || die "ping $a through batond failed 5 times"
done

# iperf3 -P 4 for 4 s; prints the received rate in bit/s.
run_iperf() {  # address name [extra iperf3 args]
  local addr=$1 name=$2; shift 2
  bg ip netns exec "$SRV" iperf3 -s -p 5201 -1 >"$WORK/server-$name.log" 2>&1
  sleep 0.5
  ip netns exec "$CLI" iperf3 -c "$addr" -p 5201 -P 4 -t 4 -J "$@" >"$WORK/$name.json" ||
    die "iperf3 $name failed: $(jq -r '.error // empty' "$WORK/$name.json" 2>/dev/null)"
  jq '.end.sum_received.bits_per_second | floor' "$WORK/$name.json"
}
mbit() { awk -v b="$1" 'BEGIN {printf "%.1f Mbit/s", b / 1e6}'; }

to_vm=$(run_iperf 10.78.0.10 to_vm)
from_vm=$(run_iperf 10.78.0.10 from_vm -R)
no_vm=$(run_iperf 10.78.0.20 no_vm)
log "rate $(mbit $RATE): to the VM $(mbit "$to_vm"), from the VM $(mbit "$from_vm"), to no VM $(mbit "$no_vm")"

# Goodput is below the policed frame rate (headers count against the bucket); 5 % on top for
# the bucket's initial 100 ms and iperf3 timing the receiver from its first byte. Above that,
# the policer let too much through.
for pair in "to_vm:$to_vm" "from_vm:$from_vm"; do
  name=${pair%%:*}; bps=${pair#*:}
  [ "$bps" -le $((RATE * 105 / 100)) ] || die "$name: $(mbit "$bps") is above the VM's rate $(mbit $RATE)"
  [ "$bps" -ge $((RATE / 4)) ] || die "$name: $(mbit "$bps") is far below the VM's rate $(mbit $RATE)"
done
[ "$no_vm" -ge $((RATE * 3)) ] ||
  die "negative control: to an address of no VM only $(mbit "$no_vm"), not clearly above the rate"

dropped=$(metric_get "$MET" baton_drops_total 'reason="qos_exceeded"')
vm=$(api_get "$API" /v1/vms | jq -c '.[] | select(.name == "srv") | .qos')
log "batond: $dropped packets dropped as qos_exceeded; GET /v1/vms: $vm"
[ "$dropped" -gt 0 ] || die "no packet was counted as qos_exceeded"
[ "$(jq .rate_bps <<<"$vm")" -eq $RATE ] || die "GET /v1/vms shows the rate as $(jq .rate_bps <<<"$vm")"
[ "$(jq .dropped_to_vm <<<"$vm")" -gt 0 ] || die "no drop counted towards the VM"
[ "$(jq .dropped_from_vm <<<"$vm")" -gt 0 ] || die "no drop counted from the VM"
[ $(($(jq .dropped_to_vm <<<"$vm") + $(jq .dropped_from_vm <<<"$vm"))) -eq "$dropped" ] ||
  die "the VM's drops ($vm) do not add up to baton_drops_total ($dropped)"
m_to=$(metric_get "$MET" baton_vm_qos_dropped_packets_total 'direction="to_vm"')
m_rate=$(metric_get "$MET" baton_vm_qos_rate_bits_per_second 'vm="srv"')
[ "$m_to" -eq "$(jq .dropped_to_vm <<<"$vm")" ] || die "/metrics shows $m_to drops to the VM, the API $vm"
[ "${m_rate%.*}" -eq $RATE ] || die "/metrics shows the VM's rate as $m_rate"

ip netns exec "$CLI" "$PY" "$ROOT/tests/e2e/tcp_tools.py" syn-flood 10.78.0.99 10.78.0.10 5201 60 ||
  die "scapy could not send the SYNs"
half=$(api_get "$API" /v1/vms | jq -c '.[] | select(.name == "srv") | .half_open')
limited=$(metric_get "$MET" baton_drops_total 'reason="half_open_limit"')
log "after 60 forged SYNs: half-open $half, $limited dropped as half_open_limit"
to=$(jq .to_vm <<<"$half")
# Two workers read each other's count a little late: two SYNs arriving together may both pass.
[ "$to" -ge 20 ] && [ "$to" -le 22 ] || die "the VM has $to half-open connections to it (limit 20)"
[ $((to + limited)) -eq 60 ] || die "$to half-open + $limited dropped is not the 60 SYNs sent"
[ "$(metric_get "$MET" baton_vm_half_open_connections 'vm="srv",direction="to_vm"')" -eq "$to" ] ||
  die "/metrics disagrees with the API on the half-open count"
bg ip netns exec "$SRV" iperf3 -s -p 5201 -1
sleep 0.5
if ip netns exec "$CLI" nc -z -w 2 10.78.0.10 5201; then die "a client connected past the half-open limit"; fi
[ "$(metric_get "$MET" baton_drops_total 'reason="half_open_limit"')" -gt "$limited" ] ||
  die "the client's SYN was not dropped as half_open_limit"
bg ip netns exec "$CLI" "$PY" "$ROOT/tests/e2e/tcp_tools.py" serve 7777
sleep 0.5
ip netns exec "$SRV" nc -z -w 2 10.78.0.1 7777 || die "the VM's own connection out was refused"

stop_batond "$PID"
log "PASS"
