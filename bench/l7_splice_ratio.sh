#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# l7_splice_throughput_ratio (scripts/bench.sh step l7ratio): the throughput of one download
# through an L7 spliced connection against the same download forwarded plainly (routed, tracked,
# not translated) through the same batond, in network namespaces with af_packet on veth as
# tests/e2e/test_e2e_l7.sh (whose helpers and cleanup this uses). Prints one JSON object on
# stdout; logs go to stderr. Not a test: nothing fails on a missed target.
#
#   client 198.51.100.2/24 (gateway 198.51.100.1 = batond "outside")
#   backend 10.2.0.11:8000 (tcp_tools.py whoami, GET /bytes/N) (gateway 10.2.0.1 = "inside")
#   VIP 198.51.100.10:80 mode l7 (local address 10.2.0.100)   -> the backend: spliced
#   VIP 198.51.100.12:80 mode fullnat (local 10.2.0.101)       -> the backend: context
#   10.2.0.11:8000 itself                                      -> routed: the reference
#
# Each round downloads RATIO_MB (default 200) MB by the three paths back to back, in an order
# that turns from round to round; the ratio of a round is spliced / routed (each round is
# compared within itself because the load of this shared machine changes between rounds), and
# the figure is the median of RATIO_ROUNDS (default 3) rounds. RATIO_WORKERS (default 1) batond
# workers. Run as root (namespaces); everything is removed on exit, failed or not (lib.sh).
exec 3>&1 1>&2   # lib.sh logs on stdout: keep stdout for the JSON
source "$(dirname "$0")/../tests/e2e/lib.sh"

MB=${RATIO_MB:-200}; ROUNDS=${RATIO_ROUNDS:-3}; N=$((MB * 1024 * 1024))
CLI=${BT}9c; SRV=${BT}9s
ns_add "$CLI"; ns_add "$SRV"
host_link "$CLI" eth0 198.51.100.2/24 02:00:00:09:00:02 ${BT}9ch
host_link "$SRV" eth0 10.2.0.11/24 02:00:00:09:01:11 ${BT}9sh
ip -n "$CLI" route add default via 198.51.100.1
ip -n "$SRV" route add default via 10.2.0.1

VIP=198.51.100.10; L4VIP=198.51.100.12; DIRECT=10.2.0.11:8000
API=127.0.0.1:$(free_port)
cat >"$WORK/ratio.yaml" <<YAML
instance: l7ratio
mode: l3
workers: ${RATIO_WORKERS:-1}
eal: {file_prefix: ${BT}l7r, memory_mb: 256, no_huge: true}
ports:
  - {name: outside, device: "net_af_packet0,iface=${BT}9ch", zone: outside}
  - {name: inside, device: "net_af_packet1,iface=${BT}9sh", zone: inside}
zones:
  - {name: outside, default: deny}
  - {name: inside, default: permit}
acl:   # rules see the destination after the backend is chosen: one rule for all three paths
  - {zone: outside, dst: 10.2.0.11/32, proto: tcp, dport: 8000, action: permit}
conntrack: {capacity: 10000}
l3:
  addresses:
    - {port: outside, address: 198.51.100.1/24}
    - {port: inside, address: 10.2.0.1/24}
lb:
  pools:
    - {name: one, backends: [{address: 10.2.0.11, port: 8000}]}
  services:
    - {name: spliced, vip: $VIP, port: 80, mode: l7, local_addresses: [10.2.0.100], pool: one}
    - {name: plain, vip: $L4VIP, port: 80, mode: fullnat, local_addresses: [10.2.0.101], pool: one}
control: {listen: $API}
YAML

bg ip netns exec "$SRV" "$PY" "$ROOT/tests/e2e/tcp_tools.py" whoami 8000 b1
sleep 0.5
start_batond "$WORK/ratio.yaml" "$API" ratio
log "batond up (pid $BATOND_PID), $MB MB x $ROUNDS rounds, ${RATIO_WORKERS:-1} worker(s)"
for _ in 1 2 3; do ip netns exec "$CLI" curl -sf -m 5 -o /dev/null "http://$VIP/" && break; sleep 0.2; done  # ARP
splices() { api_get "$API" /v1/counters | jq .totals.l7_splices; }

# Bytes per second of one download of N bytes from URL $1, after checking all N arrived.
get() {
  local r
  r=$(ip netns exec "$CLI" curl -sf -m 300 -o /dev/null -w '%{size_download} %{speed_download}' "http://$1/bytes/$N") ||
    die "download from $1 failed"
  [ "${r% *}" = "$N" ] || die "download from $1: ${r% *} bytes, want $N"
  echo "${r#* }"
}
l7s=() fwd=() fns=() ratios=()
for r in $(seq "$ROUNDS"); do
  s0=$(splices)
  # The order turns each round, so that no path always runs first (or after the same one).
  for k in 0 1 2; do
    case $(( (k + r) % 3 )) in
      0) a=$(get "$VIP") ;;
      1) b=$(get "$DIRECT") ;;
      2) c=$(get "$L4VIP") ;;
    esac
  done
  [ "$(splices)" -gt "$s0" ] || die "the L7 download was not spliced (l7_splices did not move)"
  l7s+=("$a"); fwd+=("$b"); fns+=("$c")
  ratios+=("$(awk -v a="$a" -v b="$b" 'BEGIN {printf "%.4f", a / b}')")
  log "round $r: spliced $(awk -v v="$a" 'BEGIN {printf "%.1f", v / 1e6}') MB/s, routed $(awk -v v="$b" 'BEGIN {printf "%.1f", v / 1e6}') MB/s, full NAT $(awk -v v="$c" 'BEGIN {printf "%.1f", v / 1e6}') MB/s: ratio ${ratios[-1]}"
done
median() { printf '%s\n' "$@" | sort -g | awk '{v[NR] = $1} END {print v[int((NR + 1) / 2)]}'; }
stop_batond "$BATOND_PID"
fn_ratios=()
for i in "${!l7s[@]}"; do fn_ratios+=("$(awk -v a="${l7s[$i]}" -v b="${fns[$i]}" 'BEGIN {printf "%.4f", a / b}')"); done
jq -n --argjson r "$(median "${ratios[@]}")" --argjson f "$(median "${fn_ratios[@]}")" \
      --argjson a "$(median "${l7s[@]}")" --argjson b "$(median "${fwd[@]}")" --argjson c "$(median "${fns[@]}")" \
      --argjson w "${RATIO_WORKERS:-1}" --argjson mb "$MB" --argjson n "$ROUNDS" \
  '{l7_splice_throughput_ratio: $r, l7_splice_fullnat_ratio: $f, l7_splice_bytes_per_second: $a,
    l7_routed_bytes_per_second: $b, l7_fullnat_bytes_per_second: $c, l7_ratio_workers: $w,
    l7_ratio_megabytes: $mb, l7_ratio_rounds: $n}' >&3
