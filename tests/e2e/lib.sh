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
  local cfg=$1 api=$2 name=$3 attempt
  # DPDK 22.11's af_packet PMD names its PACKET_FANOUT group getpid() ^ ifindex: two
  # processes started close together on neighbouring veths can pick the same group, and the
  # kernel refuses the second (EINVAL). A new process gets a new pid, so start again.
  for attempt in 1 2 3; do
    bg "$BATOND" --config "$cfg" >"$WORK/$name.log" 2>&1
    local pid=${PIDS[-1]}
    BATOND_PID=$pid
    for _ in $(seq 1 100); do
      # Ready when the API answers and the workers poll (the log line comes after both).
      if grep -q " running: " "$WORK/$name.log" && curl -sf "http://$api/v1/ports" >/dev/null 2>&1; then
        return 0
      fi
      kill -0 "$pid" 2>/dev/null || break
      sleep 0.1
    done
    if ! kill -0 "$pid" 2>/dev/null && grep -q "could not set PACKET_FANOUT" "$WORK/$name.log"; then
      log "batond $name: af_packet fanout group clash, starting again"
      continue
    fi
    break
  done
  cat "$WORK/$name.log" >&2
  die "batond $name did not come up"
}

# The part of a one-instance config the single-batond tests share: mode l2 between the port
# "outside" on the veth ${BT}c and "inside" on ${BT}s, zones outside (deny) and inside
# (permit), the API and metrics on $API and $MET. The test appends its acl, vms, conntrack.
l2_config_head() {  # instance workers
  cat <<YAML
instance: $1
mode: l2
workers: $2
eal: {file_prefix: ${BT}$1, memory_mb: 256, no_huge: true}
ports:
  - {name: outside, device: "net_af_packet0,iface=${BT}c", zone: outside}
  - {name: inside, device: "net_af_packet1,iface=${BT}s", zone: inside}
zones:
  - {name: outside, default: deny}
  - {name: inside, default: permit}
control: {listen: $API}
metrics: {listen: $MET}
YAML
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
  curl -sf "http://$1/metrics" | scrape_sum "$2"
}
# The sum of a metric's samples in a scrape on stdin: counters that must add up are read from
# one scrape, or traffic between scrapes (an ARP refresh) makes them disagree.
scrape_sum() {  # name
  awk -v n="$1" '$1 ~ "^"n"({|$)" {s+=$NF} END {printf "%d\n", s}'
}
metric_get() {  # addr name labelsubstring
  curl -sf "http://$1/metrics" | grep "^$2{" | grep -F "$3" | awk '{s+=$NF} END {printf "%d\n", s}'
}

# Kernel TCP counters of a namespace (nstat -a prints absolute values).
tcp_counter() {  # ns name
  ip netns exec "$1" nstat -az "$2" 2>/dev/null | awk -v n="$2" '$1==n {print $2}' | head -1
}

# A free TCP port on loopback for a control API / metrics endpoint, never one this script was
# given before (kept in $WORK/ports): the kernel hands a just-closed ephemeral port out again,
# and once a batond's API and metrics endpoints got the same port and it could not start.
free_port() {
  $PY - "$WORK/ports" <<'PY'
import socket, sys
path = sys.argv[1]
try:
    given = set(open(path).read().split())
except FileNotFoundError:
    given = set()
held = []  # every socket stays bound until the end, so no port comes back within this call
while True:
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    held.append(s)
    port = str(s.getsockname()[1])
    if port not in given:
        break
open(path, "a").write(port + "\n")
print(port)
PY
}

# ---- two-instance migration topology (DESIGN.md section 7) ------------------------------------
#  [cli ns] -- br-up --(af_packet)-- batond A --(af_packet)-- br-ha -- [vm ns]   (VM starts here)
#                  \---(af_packet)-- batond B --(af_packet)-- br-hb              (and moves here)
CLI_IP=10.88.0.1; VM_IP=10.88.0.10; VM_MAC=02:00:00:88:00:10
mig_topology() {
  CLI=${BT}cli; VMNS=${BT}vm
  ns_add "$CLI"; ns_add "$VMNS"
  bridge_add ${BT}up; bridge_add ${BT}ha; bridge_add ${BT}hb
  host_link "$CLI" eth0 $CLI_IP/24 02:00:00:88:00:01 ${BT}cl
  ip link set ${BT}cl master ${BT}up
  host_link "$VMNS" eth0 $VM_IP/24 $VM_MAC ${BT}vr
  ip link set ${BT}vr master ${BT}ha
  for x in a b; do
    veth_pair ${BT}${x}u ${BT}${x}U; ip link set ${BT}${x}U master ${BT}up
    veth_pair ${BT}${x}h ${BT}${x}H; ip link set ${BT}${x}H master ${BT}h$x
  done
}

# The VM's host changes: its veth leaves host-a's bridge for host-b's, sockets stay open. Like
# QEMU after a migration, the guest then announces itself so the switches re-learn its port.
move_vm() {
  ip link set ${BT}vr nomaster
  ip link set ${BT}vr master ${BT}hb
  # arping waits a second between probes: send one announcement now and one shortly after,
  # without holding up the hypervisor's resume (QEMU announces the same way, several times).
  ip netns exec "$VMNS" arping -q -U -c 1 -w 0 -I eth0 $VM_IP >/dev/null 2>&1 &
  (sleep 0.3; ip netns exec "$VMNS" arping -q -U -c 1 -w 0 -I eth0 $VM_IP >/dev/null 2>&1) &
}

# A CA, certificates for a and b, and a rogue CA with its own "a".
gen_certs() {
  local d=$1
  mkdir -p "$d"
  (
    cd "$d"
    openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 2 \
      -subj "/CN=baton-test-ca" -keyout ca.key -out ca.pem 2>/dev/null
    openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 2 \
      -subj "/CN=rogue-ca" -keyout rogue-ca.key -out rogue-ca.pem 2>/dev/null
    for n in a b c rogue; do
      ca=ca; [ $n = rogue ] && ca=rogue-ca
      openssl req -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -subj "/CN=$n" \
        -keyout $n.key -out $n.csr 2>/dev/null
      openssl x509 -req -in $n.csr -CA $ca.pem -CAkey $ca.key -CAcreateserial -days 2 \
        -out $n.pem 2>/dev/null
    done
  )
}

# The migration section of instance $1's config (a|b; its peer is the other one): listening
# on $2, the peer at $3, peer timeout $4 ms. Certificate ${CERT:-$1} (from gen_certs in
# $WORK/certs); EXTRA_PEER (a YAML mapping) is appended to the peer list.
mig_section() {
  local x=$1 other=b cert=${CERT:-$1}
  [ "$x" = b ] && other=a
  cat <<YAML
migration:
  listen: $2
  cert: $WORK/certs/$cert.pem
  key: $WORK/certs/$cert.key
  ca: $WORK/certs/ca.pem
  peers: [{name: $other, address: "$3"}${EXTRA_PEER:+, $EXTRA_PEER}]
  timeout_ms: $4
YAML
}

# Writes the config of instance $1 (a|b) to $WORK/$1.yaml. Environment knobs:
#   CAPACITY (default 100000), CERT (certificate name, default $1),
#   EXTRA_PEER (a YAML mapping appended to the peer list)
mig_config() {
  local x=$1 api=$2 met=$3 mig=$4 peer_addr=$5
  local cap=${CAPACITY:-100000}
  local vms="vms: []"
  if [ "$x" = a ]; then  # the VM starts behind A; B learns of it through the handoff
    # Its profile closes port 5202 to the client, which the zone ACL opens: the rule travels.
    # Its QoS rate (10 Gbit/s, above what this machine forwards) and SYN-flood guard (1000
    # unfinished handshakes per direction, above what the tests open at once) travel too.
    vms="vms:
  - {name: vm1, mac: \"$VM_MAC\", ipv4: [$VM_IP],
     profile: {qos_rate_bps: 10000000000, max_half_open: 1000,
               acl: [{src: $CLI_IP/32, proto: tcp, dport: 5202, action: deny}]}}"
  fi
  cat >"$WORK/$x.yaml" <<YAML
instance: $x
mode: l2
workers: 1
eal: {file_prefix: ${BT}$x, memory_mb: 384, no_huge: true}
ports:
  - {name: uplink, device: "net_af_packet0,iface=${BT}${x}u", zone: outside}
  - {name: host, device: "net_af_packet1,iface=${BT}${x}h", zone: inside}
zones:
  - {name: outside, default: deny}
  - {name: inside, default: permit}
acl:
  - {zone: outside, dst: $VM_IP/32, proto: tcp, dport: "5201-5202", action: permit}
  - {zone: outside, dst: $VM_IP/32, proto: tcp, dport: 7000, action: permit}
  - {zone: outside, proto: icmp, action: permit}
conntrack: {capacity: $cap}
$vms
control: {listen: $api}
metrics: {listen: $met}
$(mig_section "$x" "$mig" "$peer_addr" "${MIG_TIMEOUT_MS:-3000}")
YAML
}

# Starts A and B (configs from mig_config) and sets A_API B_API A_MET B_MET A_PID B_PID.
start_pair() {
  A_API=127.0.0.1:$(free_port); B_API=127.0.0.1:$(free_port)
  A_MET=127.0.0.1:$(free_port); B_MET=127.0.0.1:$(free_port)
  A_MIG=127.0.0.1:$(free_port); B_MIG=127.0.0.1:$(free_port)
  [ -d "$WORK/certs" ] || gen_certs "$WORK/certs"
  mig_config a "$A_API" "$A_MET" "$A_MIG" "$B_MIG"
  CERT=${B_CERT:-} CAPACITY=${B_CAPACITY:-${CAPACITY:-100000}} mig_config b "$B_API" "$B_MET" "$B_MIG" "$A_MIG"
  start_batond "$WORK/a.yaml" "$A_API" a; A_PID=$BATOND_PID
  start_batond "$WORK/b.yaml" "$B_API" b; B_PID=$BATOND_PID
}

# VM-side servers: echo on 7000, iperf3 on 5201.
start_vm_servers() {
  bg ip netns exec "$VMNS" "$PY" "$ROOT/tests/e2e/tcp_tools.py" serve 7000
  bg ip netns exec "$VMNS" iperf3 -s -p 5201
  sleep 0.5
}

migrate_signal() {  # api vm what [body]
  local out
  out=$(api_post "$1" "/v1/vms/$2/migration${3:+/$3}" "${4:-{\}}")
  echo "$out"
}
