#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# The port kinds the other tests do not cover, through the real batond:
#   net_tap: DPDK creates two kernel tap interfaces; each is moved into a namespace and real
#            TCP runs through batond between them;
#   net_ring: batond starts on two ring ports, lists them, and stops cleanly;
#   hugepages: batond runs with EAL on reserved 2 MB hugepages (no --no-huge) when the kernel
#            lets us reserve them, and gives them back.
source "$(dirname "$0")/../e2e/lib.sh"

# --- net_tap ----------------------------------------------------------------------------------
CLI=${BT}tc; SRV=${BT}ts
ns_add "$CLI"; ns_add "$SRV"
API=127.0.0.1:$(free_port); MET=127.0.0.1:$(free_port)
cat >"$WORK/tap.yaml" <<YAML
instance: tap
workers: 1
eal: {file_prefix: ${BT}tap, memory_mb: 256, no_huge: true}
ports:
  - {name: outside, device: "net_tap0,iface=${BT}t0", zone: outside}
  - {name: inside, device: "net_tap1,iface=${BT}t1", zone: inside}
zones: [{name: outside, default: deny}, {name: inside, default: permit}]
acl: [{zone: outside, dst: 10.66.0.10/32, proto: tcp, dport: 7000, action: permit}]
conntrack: {capacity: 10000}
control: {listen: $API}
metrics: {listen: $MET}
YAML
start_batond "$WORK/tap.yaml" "$API" tap; PID=$BATOND_PID
# The tap interfaces exist while batond runs; hand each to its namespace.
for pair in "${BT}t0 $CLI 10.66.0.1 02:00:00:66:00:01" "${BT}t1 $SRV 10.66.0.10 02:00:00:66:00:10"; do
  set -- $pair
  ip link set "$1" netns "$2"
  ip -n "$2" link set "$1" address "$4"
  ip -n "$2" addr add "$3/24" dev "$1"
  ip -n "$2" link set "$1" up
  offloads_off "$2" "$1"
done
bg ip netns exec "$SRV" "$PY" "$ROOT/tests/e2e/tcp_tools.py" serve 7000
sleep 0.5
ip netns exec "$CLI" "$PY" "$ROOT/tests/e2e/tcp_tools.py" storm 10.66.0.10 7000 50 4096 || die "TCP through net_tap failed"
if ip netns exec "$CLI" nc -z -w 1 10.66.0.10 7001; then die "port 7001 should be closed"; fi
stop_batond "$PID"
log "net_tap: ok"

# --- net_ring ---------------------------------------------------------------------------------
API=127.0.0.1:$(free_port); MET=127.0.0.1:$(free_port)
sed -e "s/net_tap0,iface=${BT}t0/net_ring0/" -e "s/net_tap1,iface=${BT}t1/net_ring1/" \
    -e "s/file_prefix: ${BT}tap/file_prefix: ${BT}ring/" -e "s/listen: 127.0.0.1:[0-9]*}/listen: X}/" \
    "$WORK/tap.yaml" >"$WORK/ring.yaml"
sed -i "0,/listen: X/s//listen: $API/" "$WORK/ring.yaml"; sed -i "s/listen: X/listen: $MET/" "$WORK/ring.yaml"
start_batond "$WORK/ring.yaml" "$API" ring; PID=$BATOND_PID
api_get "$API" /v1/ports | jq -e '[.[].device] == ["net_ring0", "net_ring1"]' >/dev/null || die "ring ports not listed"
stop_batond "$PID"
log "net_ring: ok"

# --- hugepages ----------------------------------------------------------------------------------
before=$(cat /proc/sys/vm/nr_hugepages)
if echo $((before + 256)) > /proc/sys/vm/nr_hugepages 2>/dev/null && \
   [ "$(cat /proc/sys/vm/nr_hugepages)" -ge $((before + 256)) ]; then
  HP=$WORK/huge; mkdir -p "$HP"; mount -t hugetlbfs -o pagesize=2M nodev "$HP"
  API=127.0.0.1:$(free_port); MET=127.0.0.1:$(free_port)
  sed -e "s/no_huge: true/no_huge: false, extra_args: [\"--huge-dir=$(echo "$HP" | sed 's/\//\\\//g')\"]/" \
      -e "s/file_prefix: ${BT}ring/file_prefix: ${BT}huge/" -e "s/listen: 127.0.0.1:[0-9]*}/listen: X}/" \
      "$WORK/ring.yaml" >"$WORK/huge.yaml"
  sed -i "0,/listen: X/s//listen: $API/" "$WORK/huge.yaml"; sed -i "s/listen: X/listen: $MET/" "$WORK/huge.yaml"
  free0=$(awk '/HugePages_Free/ {print $2}' /proc/meminfo)
  start_batond "$WORK/huge.yaml" "$API" huge; PID=$BATOND_PID
  free1=$(awk '/HugePages_Free/ {print $2}' /proc/meminfo)
  stop_batond "$PID"
  umount "$HP"; echo "$before" > /proc/sys/vm/nr_hugepages
  log "hugepages: batond used $((free0 - free1)) of 256 reserved 2 MB pages"
  [ $((free0 - free1)) -gt 0 ] || die "batond did not use the hugepages"
else
  echo "$before" > /proc/sys/vm/nr_hugepages 2>/dev/null || true
  log "hugepages: the kernel would not reserve any here; only --no-huge was run"
fi
log "PASS"
