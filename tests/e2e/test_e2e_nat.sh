#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# End-to-end NAT (mode l3, af_packet on veth, NAT_WORKERS workers, default 2):
#   inside bridge: in1 10.1.0.2, in2 10.1.0.3 (gateway 10.1.0.1 = batond port "inside")
#   outside:       srv 203.0.113.9 and 203.0.113.19 (batond port "outside" 203.0.113.1)
#   snat 10.1.0.0/24 -> pool 203.0.113.10 ports 20000-29999 (EIM, APDF)
#   static 10.1.0.3 <-> 203.0.113.50; port forward tcp 203.0.113.10:8080 -> 10.1.0.2:8000
# Asserts: the server sees the pool address (curl) and iperf3 runs through SNAT without a
# retransmission timeout; a fragmented ping (-s 4000) is answered with every fragment translated;
# a STUN-style probe from one local port to two destinations shows the same outside port
# (endpoint-independent mapping) and an answer from another server port is filtered (APDF) and
# counted; static NAT both ways; the port forward; hairpinning (in2 reaches
# in1 through 203.0.113.10:8080 and in1 sees in2's public address); the mapping in the API and
# the counters in /metrics. Negative control: the same batond without the SNAT rule cannot
# reach the server (its replies have no route to 10.1.0.0/24).
source "$(dirname "$0")/lib.sh"

IN1=${BT}n1; IN2=${BT}n2; SRV=${BT}ns
ns_add "$IN1"; ns_add "$IN2"; ns_add "$SRV"
bridge_add ${BT}nb
host_link "$IN1" eth0 10.1.0.2/24 02:00:00:01:00:02 ${BT}n1h
host_link "$IN2" eth0 10.1.0.3/24 02:00:00:01:00:03 ${BT}n2h
veth_pair ${BT}nbi ${BT}nbd   # bridge end, batond end
for l in ${BT}n1h ${BT}n2h ${BT}nbi; do ip link set "$l" master ${BT}nb; done
host_link "$SRV" eth0 203.0.113.9/24 02:00:00:03:00:09 ${BT}nsh
ip -n "$SRV" addr add 203.0.113.19/24 dev eth0
ip -n "$IN1" route add default via 10.1.0.1
ip -n "$IN2" route add default via 10.1.0.1
for l in ${BT}nbd ${BT}nsh; do sysctl -qw "net.ipv4.conf.$l.forwarding=0" 2>/dev/null || true; done

API=127.0.0.1:$(free_port); MET=127.0.0.1:$(free_port)
write_config() {  # file, with_snat, [pmd: af_packet (default), or pcap with the interfaces' MACs]
  local pmd=${3:-af_packet} opts=""
  [ "$pmd" = pcap ] && opts=",phy_mac=1"
  cat >"$1" <<YAML
instance: nat
mode: l3
workers: ${NAT_WORKERS:-2}
eal: {file_prefix: ${BT}nat, memory_mb: 256, no_huge: true}
ports:
  - {name: outside, device: "net_${pmd}0,iface=${BT}nsh$opts", zone: outside}
  - {name: inside, device: "net_${pmd}1,iface=${BT}nbd$opts", zone: inside}
zones:
  - {name: outside, default: deny}
  - {name: inside, default: permit}
acl:   # rules see the destination after DNAT (the inside host), as iptables' FORWARD does
  - {zone: outside, dst: 10.1.0.3/32, action: permit}
  - {zone: outside, dst: 10.1.0.2/32, proto: tcp, dport: 8000, action: permit}
conntrack: {capacity: 100000}
l3:
  addresses:
    - {port: outside, address: 203.0.113.1/24}
    - {port: inside, address: 10.1.0.1/24}
nat:
  capacity: 16384
  static:
    - {inside: 10.1.0.3, outside: 203.0.113.50}
  port_forward:
    - {proto: tcp, outside: "203.0.113.10:8080", inside: "10.1.0.2:8000"}
YAML
  if [ "$2" = yes ]; then cat >>"$1" <<YAML
  snat:
    - {name: egress, source: 10.1.0.0/24, pool: [203.0.113.10], ports: 20000-29999, block_size: 64}
YAML
  fi
  cat >>"$1" <<YAML
control: {listen: $API}
metrics: {listen: $MET}
YAML
}
write_config "$WORK/nat.yaml" yes
start_batond "$WORK/nat.yaml" "$API" nat; PID=$BATOND_PID
fail() {
  curl -sf "http://$MET/metrics" | grep -E '^baton_(drops_total|conn_translated|translated_packets)' | grep -v ' 0$' >&2 || true
  die "$@"
}
log "batond up (pid $PID)"

T="$PY $ROOT/tests/e2e/tcp_tools.py"
bg ip netns exec "$SRV" $T whoami 8000 srv
bg ip netns exec "$SRV" $T udp-reflect 203.0.113.9:3478 3479
bg ip netns exec "$SRV" $T udp-reflect 203.0.113.19:3478
bg ip netns exec "$IN1" $T whoami 8000 in1
bg ip netns exec "$IN2" $T whoami 8000 in2
bg ip netns exec "$SRV" iperf3 -s -1 -p 5201
sleep 0.7

# --- SNAT: the server sees the pool address --------------------------------------------------
seen=""
for _ in 1 2 3; do seen=$(ip netns exec "$IN1" curl -s -m 3 http://203.0.113.9:8000/) && break; done
log "in1 -> srv: server saw '$seen'"
[[ "$seen" =~ ^srv\ 203\.0\.113\.10:([0-9]+)$ ]] || fail "server did not see the pool address: '$seen'"
port=${BASH_REMATCH[1]}
[ "$port" -ge 20000 ] && [ "$port" -le 29999 ] || fail "outside port $port not from the pool's range"

rto0=$(tcp_counter "$IN1" TcpExtTCPTimeouts)
ip netns exec "$IN1" iperf3 -c 203.0.113.9 -p 5201 -t 4 -J >"$WORK/iperf.json" || fail "iperf3 through SNAT failed"
rto1=$(tcp_counter "$IN1" TcpExtTCPTimeouts)
bps=$(jq '.end.sum_received.bits_per_second' "$WORK/iperf.json")
log "iperf3 through SNAT: $(jq -n "$bps/1e6 | floor") Mbit/s, RTOs $(( ${rto1:-0} - ${rto0:-0} ))"
[ "$(( ${rto1:-0} - ${rto0:-0} ))" -eq 0 ] || fail "retransmission timeouts through SNAT"

# --- endpoint-independent mapping, address-and-port-dependent filtering -----------------------
filt0=$(metric_get "$MET" baton_drops_total 'reason="nat_filtered"')
ip netns exec "$IN1" $T udp-probe 5000 1.5 203.0.113.9:3478 203.0.113.19:3478 >"$WORK/stun.out" || { cat "$WORK/stun.out"; fail "STUN-style probe got no answer"; }
cat "$WORK/stun.out"
m1=$(awk '$1=="answer" && $2=="203.0.113.9:3478" {print $3}' "$WORK/stun.out")
m2=$(awk '$1=="answer" && $2=="203.0.113.19:3478" {print $3}' "$WORK/stun.out")
[ -n "$m1" ] && [ "$m1" = "$m2" ] || fail "mapping differs per destination: $m1 vs $m2 (want endpoint-independent)"
[[ "$m1" == 203.0.113.10:* ]] || fail "mapped address $m1 is not the pool's"
! grep -q "^extra" "$WORK/stun.out" || fail "an answer from another server port passed the filter"
filt1=$(metric_get "$MET" baton_drops_total 'reason="nat_filtered"')
[ "$filt1" -gt "$filt0" ] || fail "nat_filtered did not count the answer from the other port"
log "EIM: both destinations saw $m1; APDF dropped $(( filt1 - filt0 )) answers from another port"

# --- static NAT both ways, port forward, hairpin ---------------------------------------------
seen=$(ip netns exec "$IN2" curl -s -m 3 http://203.0.113.9:8000/) || fail "in2 -> srv failed"
[[ "$seen" == "srv 203.0.113.50:"* ]] || fail "static NAT: server saw '$seen'"
seen=$(ip netns exec "$SRV" curl -s -m 3 http://203.0.113.50:8000/) || fail "srv -> 203.0.113.50 failed"
[[ "$seen" == "in2 203.0.113.9:"* ]] || fail "static NAT inbound: in2 saw '$seen'"
seen=$(ip netns exec "$SRV" curl -s -m 3 http://203.0.113.10:8080/) || fail "port forward failed"
[[ "$seen" == "in1 203.0.113.9:"* ]] || fail "port forward: in1 saw '$seen'"
seen=$(ip netns exec "$IN2" curl -s -m 3 http://203.0.113.10:8080/) || fail "hairpin failed"
[[ "$seen" == "in1 203.0.113.50:"* ]] || fail "hairpin: in1 saw '$seen' (want in2's public address)"
log "static both ways, port forward and hairpin verified"
if ip netns exec "$SRV" curl -s -m 2 http://203.0.113.10:8000/ >/dev/null; then
  fail "an unsolicited connection to the pool address went through"
fi

# --- API and metrics ------------------------------------------------------------------------
maps=$(api_get "$API" "/v1/nat/mappings") || fail "no /v1/nat/mappings"
echo "$maps" | jq -e '[.[] | select(.inside == "10.1.0.2:5000" and .outside == "'"$m1"'" and .type == "snat")] | length == 1' >/dev/null \
  || { echo "$maps" | jq . | head -40; fail "mapping of 10.1.0.2:5000 not listed as $m1"; }
"$BATONCTL" --api "$API" nat mappings --inside 10.1.0.2 | grep -q "snat .*10.1.0.2:5000 .*$m1" \
  || fail "batonctl nat mappings does not show 10.1.0.2:5000 -> $m1"
# The connection list shows the reply tuple the translation chose (conntrack -L style).
"$BATONCTL" --api "$API" conns --addr 10.1.0.2 | grep -q "src=203.0.113.9 dst=203.0.113.10 sport=3478 dport=${m1#*:}" \
  || { "$BATONCTL" --api "$API" conns --addr 10.1.0.2 >&2; fail "batonctl conns does not show the translated reply tuple"; }
tr=$(metric_sum "$MET" baton_conn_translated_total)
[ "$tr" -ge 6 ] || fail "conn_translated_total is $tr"
log "API lists $(echo "$maps" | jq length) mappings; $tr translated connections"
stop_batond "$PID"

# --- fragments through SNAT: ping -s 4000, three fragments each way ---------------------------
# On the pcap PMD: af_packet's fanout group (DPDK sets PACKET_FANOUT_FLAG_DEFRAG) has the kernel
# reassemble IPv4 fragments before batond sees them, and cuts the 4028-byte datagram to its
# 2048-byte ring frame. Only the first fragment carries the ICMP identifier SNAT translates; the
# server reassembles a request only if every fragment comes from the pool address, and in1 gets
# a reply only if every fragment of it reaches 10.1.0.2.
write_config "$WORK/frag.yaml" yes pcap
start_batond "$WORK/frag.yaml" "$API" frag; PID=$BATOND_PID
ip netns exec "$IN1" ping -c 2 -i 0.3 -W 2 203.0.113.9 >/dev/null || true  # a new batond resolves both neighbours
bg ip netns exec "$SRV" tcpdump -U --immediate-mode -i eth0 -n -w "$WORK/frag.pcap" icmp 2>"$WORK/tcpdump.err"
TCPD=${PIDS[-1]}
for _ in $(seq 50); do grep -q "listening on" "$WORK/tcpdump.err" 2>/dev/null && break; sleep 0.1; done
sleep 0.2
ip netns exec "$IN1" ping -c 3 -i 0.3 -W 2 -s 4000 203.0.113.9 >"$WORK/ping_frag.out" || true
sleep 1.2  # libpcap hands packets over per ring block; let it time out
kill "$TCPD" 2>/dev/null; wait "$TCPD" 2>/dev/null || true
replies=$(grep -c "bytes from 203.0.113.9" "$WORK/ping_frag.out" || true)
later=$(tcpdump -r "$WORK/frag.pcap" -n 'src host 203.0.113.10 and ip[6:2] & 0x1fff != 0' 2>/dev/null | wc -l)
leaked=$(tcpdump -r "$WORK/frag.pcap" -n 'src net 10.1.0.0/24' 2>/dev/null | wc -l)
log "ping -s 4000 through SNAT: $replies replies; the server saw $later later fragments from the pool address, $leaked packets from inside addresses"
[ "$replies" -ge 3 ] || { cat "$WORK/ping_frag.out"; fail "fragmented echo through SNAT: $replies of 3 replies"; }
[ "$later" -ge 6 ] && [ "$leaked" -eq 0 ] || fail "fragments reached the server untranslated ($later from the pool, $leaked from inside)"
stop_batond "$PID"

# --- negative control: no SNAT, no way back ---------------------------------------------------
write_config "$WORK/nosnat.yaml" no
start_batond "$WORK/nosnat.yaml" "$API" nosnat; PID=$BATOND_PID
if ip netns exec "$IN1" curl -s -m 2 http://203.0.113.9:8000/ >/dev/null; then
  fail "negative control: in1 reached the server without SNAT"
fi
log "negative control: without the SNAT rule in1 cannot reach the server"
stop_batond "$PID"
log "PASS"
