#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# Binary test: the real batond with net_pcap ports, packets in from pcaps, packets out to pcaps,
# compared byte for byte with the outputs the test computes (tests/bin/pcap_fw.py).
#
# Ordering. net_pcap reads an rx_pcap file as fast as the worker polls it, independently on each
# port, so the order between the two ports' files is not defined. Two phases deal with that:
#   files  rx_pcap/tx_pcap on both ports; every flow enters on one port only (outside: permitted
#          and denied SYNs, UDP, ICMP, mid-stream ACK, truncated, bad checksum; inside: outbound
#          flows), so each output file is deterministic whatever the interleaving.
#   conv   a full TCP conversation (handshake, data both ways, FIN teardown, correct seq/ack)
#          with attacks interleaved (mid-stream ACK of an unknown flow, out-of-window segment,
#          RSTs with wrong seq from both sides, SYN to denied ports, truncated packet, bad IP
#          checksum). Its order matters across ports, so each port reads with rx_iface_in from
#          its own veth (still net_pcap, writing tx_pcap files) and the test replays conv.pcap
#          in lock-step: the next packet goes out only once batond's workers have counted the
#          previous one.
# Both phases check the drop counters by reason (API before stopping, and the final log line)
# and that batond exits 0 on SIGTERM.
source "$(dirname "$0")/../e2e/lib.sh"
# DPDK runtime directories of this run go too.
trap 'cleanup; for d in ${BT}pcap; do rm -rf "/var/run/dpdk/$d"; done' EXIT
TOOL=$ROOT/tests/bin/pcap_fw.py

$PY "$TOOL" gen "$WORK" >/dev/null || die "packet generation failed"

write_cfg() {  # file dev0 dev1
  local api=$4 met=$5
  cat >"$1" <<YAML
instance: pcapfw
mode: l2
workers: 1
eal: {file_prefix: ${BT}pcap, memory_mb: 256, no_huge: true}
ports:
  - {name: outside, device: "$2", zone: outside}
  - {name: inside, device: "$3", zone: inside}
zones:
  - {name: outside, default: deny}
  - {name: inside, default: permit}
acl:
  - {zone: outside, dst: 10.88.0.10/32, proto: tcp, dport: 80, action: permit}
  - {zone: outside, dst: 10.88.0.10/32, proto: udp, dport: 9999, action: permit}
  - {zone: outside, proto: icmp, action: permit}
conntrack: {capacity: 1024}
vms:
  - {name: srv, mac: "02:00:00:88:00:10", ipv4: [10.88.0.10]}
control: {listen: $api}
metrics: {listen: $met}
YAML
}

worker_rx() { api_get "$1" /v1/workers | jq '[.[].rx_packets] | add'; }

# Checks the drop counters of a running batond against phase $2's expectations.
check_drops() {  # api phase
  local api=$1 phase=$2 want got
  local counters; counters=$(api_get "$api" /v1/counters) || die "GET /v1/counters failed"
  for reason in $(jq -r '.drops | keys[]' "$WORK/$phase.json"); do
    want=$(jq ".drops[\"$reason\"]" "$WORK/$phase.json")
    got=$(jq ".drops[\"$reason\"]" <<<"$counters")
    [ "$got" = "$want" ] || die "$phase: drops $reason=$got, expected $want"
  done
  want=$(jq '[.drops[]] | add' "$WORK/$phase.json")
  got=$(jq '[.drops[]] | add' <<<"$counters")
  [ "$got" = "$want" ] || die "$phase: $got drops in total, expected $want ($(jq -c '.drops | with_entries(select(.value > 0))' <<<"$counters"))"
  log "$phase: drops as expected: $(jq -c .drops "$WORK/$phase.json")"
}

# Final log line: "final counters: rx=N tx=N dropped=N ... drops: reason=N ..."
check_final_log() {  # logfile phase
  local line; line=$(grep "final counters" "$1") || die "$2: no final counters logged"
  local reason want
  for reason in $(jq -r '.drops | keys[]' "$WORK/$2.json"); do
    want=$(jq ".drops[\"$reason\"]" "$WORK/$2.json")
    grep -q " $reason=$want\b" <<<"$line" || die "$2: final log line lacks $reason=$want: $line"
  done
  local fwd; fwd=$(jq '.forwarded | add' "$WORK/$2.json")
  grep -q " tx=$fwd " <<<"$line" || die "$2: final log line does not say tx=$fwd: $line"
}

compare_outputs() {  # phase
  local rc=0
  for p in 0 1; do
    [ -f "$WORK/$1_out$p.pcap" ] || die "$1: batond wrote no $1_out$p.pcap"
    $PY "$TOOL" compare "$WORK/$1_expect$p.pcap" "$WORK/$1_out$p.pcap" || rc=1
  done
  [ $rc -eq 0 ] || die "$1: output pcaps differ from the expected ones"
}

# --- phase 1: rx_pcap files in, tx_pcap files out ------------------------------------------
API=127.0.0.1:$(free_port); MET=127.0.0.1:$(free_port)
write_cfg "$WORK/files.yaml" \
  "net_pcap0,rx_pcap=$WORK/files_in0.pcap,tx_pcap=$WORK/files_out0.pcap" \
  "net_pcap1,rx_pcap=$WORK/files_in1.pcap,tx_pcap=$WORK/files_out1.pcap" "$API" "$MET"
start_batond "$WORK/files.yaml" "$API" files
total=$(jq '.received | add' "$WORK/files.json")
for _ in $(seq 100); do [ "$(worker_rx "$API")" -ge "$total" ] && break; sleep 0.1; done
[ "$(worker_rx "$API")" -eq "$total" ] || die "files: batond received $(worker_rx "$API") packets, the pcaps hold $total"
check_drops "$API" files
ports=$(api_get "$API" /v1/ports)
for p in 0 1; do
  want=$(jq ".received[$p]" "$WORK/files.json"); got=$(jq ".[$p].rx_packets" <<<"$ports")
  [ "$got" = "$want" ] || die "files: port $p rx_packets=$got, expected $want"
  want=$(jq ".forwarded[$p]" "$WORK/files.json"); got=$(jq ".[$p].tx_packets" <<<"$ports")
  [ "$got" = "$want" ] || die "files: port $p tx_packets=$got, expected $want"
done
stop_batond "$BATOND_PID"
check_final_log "$WORK/files.log" files
compare_outputs files
log "files phase: outputs match"

# --- phase 2: the conversation, replayed in lock-step through rx_iface_in --------------------
# Root-namespace veth pairs with IPv6 off, so the kernel sends nothing of its own on them.
for p in 0 1; do
  a=${BT}p$p; b=${BT}q$p
  ip link add "$a" type veth peer name "$b"; LINKS+=("$a")
  for i in "$a" "$b"; do
    sysctl -qw "net.ipv6.conf.$i.disable_ipv6=1" 2>/dev/null || true
    offloads_off "$i"; ip link set "$i" up
  done
done
API=127.0.0.1:$(free_port); MET=127.0.0.1:$(free_port)
write_cfg "$WORK/conv.yaml" \
  "net_pcap0,rx_iface_in=${BT}q0,tx_pcap=$WORK/conv_out0.pcap" \
  "net_pcap1,rx_iface_in=${BT}q1,tx_pcap=$WORK/conv_out1.pcap" "$API" "$MET"
start_batond "$WORK/conv.yaml" "$API" conv
sleep 0.3
[ "$(worker_rx "$API")" -eq 0 ] || die "conv: batond received $(worker_rx "$API") stray packets before the replay"
$PY "$TOOL" replay "$WORK" "${BT}p0" "${BT}p1" "$API" || die "conv: replay failed"
check_drops "$API" conv
conn=$(api_get "$API" "/v1/connections?addr=10.88.0.1" | jq -c '.[] | select(.sport == 40000)')
[ -n "$conn" ] || die "conv: the conversation is not in the table"
st=$(jq -r .state <<<"$conn")
case "$st" in TIME_WAIT|time_wait) ;; *) die "conv: connection in state $st after the teardown, expected TIME_WAIT" ;; esac
[ "$(jq .packets_orig <<<"$conn")" -eq 6 ] && [ "$(jq .packets_reply <<<"$conn")" -eq 4 ] \
  || die "conv: connection counted $(jq -c '[.packets_orig, .packets_reply]' <<<"$conn") packets, expected [6,4]"
log "conv: connection $(jq -c '{state, packets_orig, packets_reply}' <<<"$conn")"
stop_batond "$BATOND_PID"
check_final_log "$WORK/conv.log" conv
compare_outputs conv
log "PASS"
