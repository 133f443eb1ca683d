# SPDX-License-Identifier: Apache-2.0
# Shared helpers for the end-to-end tests: network namespaces joined by veth pairs, batond
# instances on net_af_packet, cleanup of everything by name and PID even when a test fails.
# Every name carries $BT (short, unique per run) so parallel or leftover runs never collide.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
BUILD=${BATON_BUILD:-$ROOT/build}
BATOND=$BUILD/src/batond
BATONCTL=$BUILD/tools/batonctl
PY=/usr/bin/python3   # Debian's interpreter: it sees python3-scapy
BT=${BT:-b$(( $$ % 1000 ))}
WORK=$(mktemp -d /tmp/baton-e2e.XXXXXX)
PIDS=()
NSS=()
LINKS=()

log() { echo "[$(date +%T)] $*"; }
die() { echo "FAIL: $*" >&2; exit 1; }

cleanup() {
  set +e
  for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null; done
  sleep 0.3
  for p in "${PIDS[@]}"; do kill -9 "$p" 2>/dev/null; done
  for ns in "${NSS[@]}"; do
    for p in $(ip netns pids "$ns" 2>/dev/null); do kill -9 "$p" 2>/dev/null; done
    ip netns del "$ns" 2>/dev/null
  done
  for l in "${LINKS[@]}"; do ip link del "$l" 2>/dev/null; done
  if [ -n "${KEEP_WORK:-}" ]; then echo "work dir kept: $WORK"; else rm -rf "$WORK"; fi
}
trap cleanup EXIT

# Runs a command in the background and remembers its PID for cleanup.
bg() { "$@" & PIDS+=($!); }

ns_add() { ip netns add "$1"; NSS+=("$1"); ip -n "$1" link set lo up; }

# veth with every offload off: af_packet would otherwise see partial checksums and GSO
# super-frames (DESIGN.md section 8).
offloads_off() {  # [ns] ifname
  if [ $# -eq 2 ]; then ip netns exec "$1" ethtool -K "$2" tx off rx off tso off gso off gro off >/dev/null 2>&1 || true
  else ethtool -K "$1" tx off rx off tso off gso off gro off >/dev/null 2>&1 || true; fi
}

# Host end in namespace $1 named $2 with address $3 (cidr) and MAC $4; root end named $5.
host_link() {
  local ns=$1 ifn=$2 addr=$3 mac=$4 peer=$5
  ip link add "$peer" type veth peer name "$peer-x"
  LINKS+=("$peer")
  ip link set "$peer-x" netns "$ns"
  ip -n "$ns" link set "$peer-x" name "$ifn"
  ip -n "$ns" link set "$ifn" address "$mac"
  ip -n "$ns" addr add "$addr" dev "$ifn"
  ip -n "$ns" link set "$ifn" up
  ip link set "$peer" up
  offloads_off "$ns" "$ifn"; offloads_off "$peer"
}

# A plain root-namespace veth pair (both ends stay in the root namespace).
veth_pair() {
  ip link add "$1" type veth peer name "$2"; LINKS+=("$1")
  ip link set "$1" up; ip link set "$2" up
  offloads_off "$1"; offloads_off "$2"
}

bridge_add() {
  ip link add "$1" type bridge; LINKS+=("$1")
  ip link set "$1" type bridge stp_state 0 forward_delay 0 ageing_time 3000 2>/dev/null || true
  ip link set "$1" up
}

# Starts batond with config $1; waits for its API on $2 (host:port). Output to $WORK/$3.log.
# Sets BATOND_PID (call it directly, not in $(...), so the process stays our child).
start_batond() {
  local cfg=$1 api=$2 name=$3
  bg "$BATOND" --config "$cfg" >"$WORK/$name.log" 2>&1
  local pid=${PIDS[-1]}
  BATOND_PID=$pid
  for _ in $(seq 1 100); do
    if curl -sf "http://$api/v1/ports" >/dev/null 2>&1; then return 0; fi
    kill -0 "$pid" 2>/dev/null || { cat "$WORK/$name.log" >&2; die "batond $name exited"; }
    sleep 0.1
  done
  cat "$WORK/$name.log" >&2
  die "batond $name did not come up"
}

stop_batond() {  # pid: SIGTERM, expect exit 0
  local pid=$1 rc=0
  kill -TERM "$pid"
  wait "$pid" || rc=$?
  [ "$rc" -eq 0 ] || die "batond exited $rc on SIGTERM"
}

api_get() { curl -sf "http://$1$2"; }
api_post() { curl -s -X POST -H 'Content-Type: application/json' -d "${3:-{\}}" "http://$1$2"; }

# Sum of a metric over all its label sets.
metric_sum() {  # addr name
  curl -sf "http://$1/metrics" | awk -v n="$2" '$1 ~ "^"n"({|$)" {s+=$NF} END {printf "%d\n", s}'
}
metric_get() {  # addr name labelsubstring
  curl -sf "http://$1/metrics" | grep "^$2{" | grep -F "$3" | awk '{s+=$NF} END {printf "%d\n", s}'
}

# Kernel TCP counters of a namespace (nstat -a prints absolute values).
tcp_counter() {  # ns name
  ip netns exec "$1" nstat -az "$2" 2>/dev/null | awk -v n="$2" '$1==n {print $2}' | head -1
}

# A free TCP port on loopback for a control API / metrics endpoint.
free_port() { $PY -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
