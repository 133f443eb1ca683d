#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# Runs the benchmarks and records them: bench/results.json (metric -> number, plus machine,
# date, git_revision) and docs/PERFORMANCE.md (figures against the targets of the issues).
# Each group runs in its own baton-bench process so that large tables are freed in between.
# Not a test: the figures depend on the machine; nothing here fails on a missed target.
#
#   scripts/bench.sh            every step; results.json and PERFORMANCE.md written anew
#   scripts/bench.sh STEP...    only these steps (names below, e.g. nat1m, callgrind; `l7` for
#                               l7new and l7ratio); their keys are merged into results.json with
#                               STEP_date and STEP_git_revision, and PERFORMANCE.md is left alone
#   scripts/bench.sh [STEP...] doc  the same, then PERFORMANCE.md regenerated from results.json
#                               (`doc` alone measures nothing)
#   BENCH_REPEAT=3 scripts/bench.sh ...   each step three times, the median of each key
set -euo pipefail
cd "$(dirname "$0")/.."
steps=()
regen=0
for s in "$@"; do
  if [ "$s" = doc ]; then regen=1; else steps+=("$s"); fi
done
want() {  # want <step> [group]: is the step selected (all are when none is named)?
  [ $regen -eq 1 ] && [ ${#steps[@]} -eq 0 ] && return 1  # `doc` alone measures nothing
  [ ${#steps[@]} -eq 0 ] && return 0
  local s
  for s in "${steps[@]}"; do
    if [ "$s" = "$1" ] || [ "$s" = "${2:-}" ]; then return 0; fi
  done
  return 1
}
if [ $regen -eq 0 ] || [ ${#steps[@]} -gt 0 ]; then  # `doc` alone needs neither
  scripts/install_deps.sh
  BUILD_DIR=${BUILD_DIR:-build} scripts/build.sh
fi
dir=${BUILD_DIR:-build}
bin="$dir/bench/baton-bench"
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT

# BENCH_REPEAT=N (default 1): each step runs N times and every key records the median of its
# runs. On a shared machine one run can land in a busy minute (the same code has measured 300
# and 470 cycles per packet an hour apart); the median of three does not move with one such run.
repeat=${BENCH_REPEAT:-1}
machine() {  # CPU model, its TSC rate (the cycle figures' clock), CPUs, memory
  local tsc
  tsc=$(jq -r '.tsc_hz // empty' "$out"/*.json 2>/dev/null | head -1)
  echo "$(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //')${tsc:+, TSC $tsc Hz}, $(nproc) CPUs, $(awk '/MemTotal/ {print int($2/1048576)}' /proc/meminfo) GB"
}
median_json() {  # median_json <file>...: per key, the median of the numbers the files give
  python3 - "$@" <<'PY'
import json, sys
runs = [json.load(open(f)) for f in sys.argv[1:]]
out = {}
for k in {k for r in runs for k in r}:
    v = sorted(r[k] for r in runs if isinstance(r.get(k), (int, float)))
    out[k] = v[len(v) // 2] if v else None
print(json.dumps(out))
PY
}
measure() {  # measure <name> <command...>: the step's runs, their median in $out/<name>.json
  local name=$1; shift
  local i ok=()
  for ((i = 1; i <= repeat; i++)); do
    if [ "$repeat" -gt 1 ]; then echo "bench: $name (run $i of $repeat)" >&2; else echo "bench: $name" >&2; fi
    if "$@" >"$out/$name.$i.run" 2>"$out/$name.log"; then
      ok+=("$out/$name.$i.run")
    else
      echo "bench: $name failed:" >&2; tail -5 "$out/$name.log" >&2
    fi
  done
  if [ ${#ok[@]} -gt 0 ]; then median_json "${ok[@]}" >"$out/$name.json"; else echo '{}' >"$out/$name.json"; fi
}
run() {  # run <name> <baton-bench args...>
  local name=$1; shift
  want "$name" || return 0
  measure "$name" "$bin" "$@"
}
# EAL memory on 2 MiB hugepages, as a deployment runs (keys end in _huge): reserve them if the
# machine has the memory, else skip.
hugepages_ready() {
  local want=3000 have
  have=$(cat /proc/sys/vm/nr_hugepages 2>/dev/null || echo 0)
  if [ "$have" -lt "$want" ] && [ "$(awk '/MemAvailable/ {print int($2/1024)}' /proc/meminfo)" -gt 12000 ]; then
    echo "$want" >/proc/sys/vm/nr_hugepages 2>/dev/null || true
    have=$(cat /proc/sys/vm/nr_hugepages 2>/dev/null || echo 0)
  fi
  # EAL finds hugepages through a hugetlbfs mount; a machine without systemd's has none.
  if [ "$have" -ge "$want" ] && ! grep -q '^[^ ]* [^ ]* hugetlbfs ' /proc/mounts; then
    mkdir -p /dev/hugepages && mount -t hugetlbfs nodev /dev/hugepages 2>/dev/null || true
  fi
  [ "$have" -ge "$want" ] && grep -q '^[^ ]* [^ ]* hugetlbfs ' /proc/mounts
}
run fw64k fw64k
run fw1m -m 4096 fw1m
# 16M entries: ~196 bytes each (2^24 + slack rounds rte_hash up) plus 262144 packet mbufs; --no-huge memory is given with -m.
if [ "$(awk '/MemAvailable/ {print int($2/1024)}' /proc/meminfo)" -gt 9000 ]; then
  run fw16m -m 8192 fw16m
elif want fw16m; then
  echo '{"fw_cycles_per_packet_16m": null}' >"$out/fw16m.json"
fi
run bytes bytes
# The memory under those tables (cycles per random line, latency) at their footprints; 16M's is 3 GB.
if [ "$(awk '/MemAvailable/ {print int($2/1024)}' /proc/meminfo)" -gt 6000 ]; then
  run memfloor -m 4096 memfloor
fi
# Without per-connection counters (conntrack.accounting: false): keys end in _no_accounting.
if [ "$(awk '/MemAvailable/ {print int($2/1024)}' /proc/meminfo)" -gt 9000 ]; then
  run fwnoacct --no-accounting -m 8192 fw64k fw1m fw16m bytes
else
  run fwnoacct --no-accounting -m 4096 fw64k fw1m bytes
fi
if { want fwhuge || want fwhuge_noacct; } && hugepages_ready; then
  run fwhuge --huge -m 5800 fw64k fw1m fw16m
  run fwhuge_noacct --huge --no-accounting -m 5800 fw64k fw1m fw16m
fi
if want memfloorhuge && hugepages_ready; then
  run memfloorhuge --huge -m 5800 memfloor
fi
run newconn -m 2048 newconn
run scaling scaling
run migsnap -m 4096 migsnap
run migtrack migtrack
run migfreeze -m 3072 migfreeze
if want migfreezehuge && hugepages_ready; then  # the same on hugepages (keys end in _huge)
  run migfreezehuge --huge -m 5000 migfreeze
fi
run mig1m -m 4096 mig1m   # in-process (keys migrate_1m_inprocess_*)
# The issue's 1M figure: two batond processes, the VM's 1M connections opened by baton-pktgen.
if want mig1md && [ "$(awk '/MemAvailable/ {print int($2/1024)}' /proc/meminfo)" -gt 6000 ]; then
  measure mig1md env BATON_BUILD="$PWD/$dir" bash bench/mig_daemons.sh
fi
run migfreezetls -m 4096 migfreezetls   # the same through TLS over loopback (context)
# Points of the migration plot the groups above do not give (a 1M freeze: 2M entries at A).
if [ "$(awk '/MemAvailable/ {print int($2/1024)}' /proc/meminfo)" -gt 9000 ]; then
  run migscale -m 6144 migscale
fi
# NAT and load balancing (baton-xlate-bench): 1M translated flows made by real handshakes.
xrun() {  # xrun <name> <baton-xlate-bench args...>
  local name=$1; shift
  want "$name" "${XRUN_GROUP:-}" || return 0
  measure "$name" "$dir/bench/baton-xlate-bench" "$@"
}
xrun l3fw1m -m 4096 l3fw1m
xrun nat1m -m 6144 nat1m
xrun lb1m -m 4096 lb1m
xrun lbl71m -m 4096 lbl71m   # lb1m with an L7 service configured beside it
xrun natlbnew -m 2048 natlbnew
if want xlatehuge && hugepages_ready; then  # the three 1M figures on hugepages (keys end in _huge)
  xrun xlatehuge --huge -m 5800 l3fw1m nat1m lb1m
fi
# L7: whole spliced connections in-process (cycles), then the splice's throughput through
# af_packet against plain forwarding, end to end in network namespaces with the real batond.
XRUN_GROUP=l7 xrun l7new -m 2048 l7new
if want l7ratio l7; then
  echo "bench: l7ratio" >&2
  if ! BATON_BUILD="$PWD/$dir" bench/l7_splice_ratio.sh >"$out/l7ratio.json" 2>"$out/l7ratio.log"; then
    echo "bench: l7ratio failed:" >&2; tail -5 "$out/l7ratio.log" >&2
    echo '{}' >"$out/l7ratio.json"
  fi
  grep -E 'round|FAIL' "$out/l7ratio.log" >&2 || true
fi

# Instructions per packet: callgrind counts only inside Worker::process_burst.
if want callgrind; then
  echo "bench: callgrind" >&2
  cg=$(valgrind --tool=callgrind --callgrind-out-file="$out/cg.out" --collect-atstart=no \
         --toggle-collect='baton::Worker::process_burst*' "$bin" -m 1024 callgrind 2>"$out/cg.log" || true)
  ir=$(callgrind_annotate "$out/cg.out" 2>/dev/null | awk '/PROGRAM TOTALS/ {gsub(",", "", $1); print $1; exit}')
  pk=$(echo "$cg" | jq -r '.callgrind_packets // empty' 2>/dev/null || true)
  if [ -n "$ir" ] && [ -n "$pk" ]; then
    echo "{\"fw_instructions_per_packet_64k\": $(echo "$ir / $pk" | bc -l)}" >"$out/cg.json"
  else
    echo "bench: callgrind failed" >&2; tail -5 "$out/cg.log" >&2
    echo '{"fw_instructions_per_packet_64k": null}' >"$out/cg.json"
  fi
fi

if [ ${#steps[@]} -gt 0 ]; then  # a selection: merge its keys, leave the document alone
  compgen -G "$out/*.json" >/dev/null || { echo "bench: no step named ${steps[*]}" >&2; exit 2; }
  # Each step's date, revision and machine (a later session may run on other hardware).
  stamp=$(for s in "${steps[@]}"; do
    jq -n --arg s "$s" --arg d "$(date -u +%Y-%m-%dT%H:%M:%SZ)" --arg m "$(machine)" \
          --arg g "$(git rev-parse --short HEAD 2>/dev/null || echo unknown)" \
          '{($s + "_date"): $d, ($s + "_git_revision"): $g, ($s + "_machine"): $m}'
  done)
  jq -s 'add | del(.callgrind_packets)' bench/results.json "$out"/*.json <(echo "$stamp") >"$out/merged"
  mv "$out/merged" bench/results.json
  echo "bench: merged the keys of ${steps[*]} into bench/results.json" >&2
  [ $regen -eq 1 ] || exit 0
elif [ $regen -eq 0 ]; then  # every step: results.json anew
  jq -s --arg m "$(machine)" --arg d "$(date -u +%Y-%m-%dT%H:%M:%SZ)" \
        --arg g "$(git rev-parse --short HEAD 2>/dev/null || echo unknown)" \
     'add | del(.callgrind_packets) | . + {machine: $m, date: $d, git_revision: $g}' \
     "$out"/*.json >bench/results.json
fi
python3 - bench/results.json docs/PERFORMANCE.md <<'PY'
import json, sys
r = json.load(open(sys.argv[1]))
def f(k, fmt="{:,.0f}"):
    v = r.get(k)
    return "n/a" if v is None else fmt.format(v)
def ok(cond):
    return "n/a" if cond is None else ("met" if cond else "**missed**")
def get(k):
    return r.get(k)
c64, c1m, c16m = get("fw_cycles_per_packet_64k"), get("fw_cycles_per_packet_1m"), get("fw_cycles_per_packet_16m")
rows = [
 ("fw_cycles_per_packet_64k", f("fw_cycles_per_packet_64k"), "(reference for 16M)", "n/a"),
 ("fw_cycles_per_packet_1m", f("fw_cycles_per_packet_1m"), "<= 150", ok(None if c1m is None else c1m <= 150)),
 ("fw_cycles_per_packet_16m", f("fw_cycles_per_packet_16m"), "<= 1.25 x 64k",
  ok(None if c16m is None or c64 is None else c16m <= 1.25 * c64)),
 ("fw_instructions_per_packet_64k", f("fw_instructions_per_packet_64k"), "(callgrind, context)", "n/a"),
 ("fw_new_conns_per_second", f("fw_new_conns_per_second"), ">= 1,000,000",
  ok(None if get("fw_new_conns_per_second") is None else get("fw_new_conns_per_second") >= 1e6)),
 ("fw_bytes_per_conn", f("fw_bytes_per_conn", "{:,.1f}"), "<= 160",
  ok(None if get("fw_bytes_per_conn") is None else get("fw_bytes_per_conn") <= 160)),
 ("l3_fw_cycles_per_packet_1m", f("l3_fw_cycles_per_packet_1m"), "(mode l3 baseline for NAT/LB)", "n/a"),
 ("nat_cycles_per_packet_1m", f("nat_cycles_per_packet_1m"), "<= 200",
  ok(None if get("nat_cycles_per_packet_1m") is None else get("nat_cycles_per_packet_1m") <= 200)),
 ("lb_cycles_per_packet_1m", f("lb_cycles_per_packet_1m"), "<= 200",
  ok(None if get("lb_cycles_per_packet_1m") is None else get("lb_cycles_per_packet_1m") <= 200)),
 ("fw_nat_lb_new_conns_per_second", f("fw_nat_lb_new_conns_per_second"), ">= 500,000",
  ok(None if get("fw_nat_lb_new_conns_per_second") is None else get("fw_nat_lb_new_conns_per_second") >= 5e5)),
 ("l7_splices_per_second", f("l7_splices_per_second"), "(reported)", "n/a"),
 ("l7_splice_throughput_ratio", f("l7_splice_throughput_ratio", "{:.2f}"), ">= 0.9",
  ok(None if get("l7_splice_throughput_ratio") is None else get("l7_splice_throughput_ratio") >= 0.9)),
 ("fw_scaling_2_workers", f("fw_scaling_2_workers", "{:.2f}"), ">= 0.9",
  ok(None if get("fw_scaling_2_workers") is None else get("fw_scaling_2_workers") >= 0.9)),
 ("migrate_snapshot_entries_per_second", f("migrate_snapshot_entries_per_second"), ">= 2,000,000",
  ok(None if get("migrate_snapshot_entries_per_second") is None else get("migrate_snapshot_entries_per_second") >= 2e6)),
 ("migrate_tracking_cycles_per_packet", f("migrate_tracking_cycles_per_packet", "{:.1f}"), "< 10",
  "n/a" if get("migrate_tracking_cycles_per_packet") is None else
  ("below noise (see notes)" if get("migrate_tracking_cycles_per_packet") < 0 else
   ok(get("migrate_tracking_cycles_per_packet") < 10))),
 ("migrate_freeze_ms_p99_10k", f("migrate_freeze_ms_p99_10k", "{:.2f}"), "< 1 ms",
  ok(None if get("migrate_freeze_ms_p99_10k") is None else get("migrate_freeze_ms_p99_10k") < 1)),
 ("migrate_freeze_ms_p99_100k", f("migrate_freeze_ms_p99_100k", "{:.2f}"), "< 5 ms",
  ok(None if get("migrate_freeze_ms_p99_100k") is None else get("migrate_freeze_ms_p99_100k") < 5)),
 ("migrate_1m_total_seconds", f("migrate_1m_total_seconds", "{:.2f}"), "< 2 s",
  ok(None if get("migrate_1m_total_seconds") is None else get("migrate_1m_total_seconds") < 2)),
 ("migrate_1m_bytes", f("migrate_1m_bytes"), "(reported)", "n/a"),
 ("migrate_freeze_tls_ms_p99_10k", f("migrate_freeze_tls_ms_p99_10k", "{:.2f}"), "(context: TLS)", "n/a"),
 ("migrate_freeze_tls_ms_p99_100k", f("migrate_freeze_tls_ms_p99_100k", "{:.2f}"), "(context: TLS)", "n/a"),
 ("migrate_1m_tls_total_seconds", f("migrate_1m_tls_total_seconds", "{:.2f}"), "(context: TLS)", "n/a"),
]
out = []
out.append("<!-- SPDX-License-Identifier: Apache-2.0 -->")
out.append("# Performance\n")
out.append("Generated by `scripts/bench.sh` from `bench/results.json`; do not edit by hand.\n")
out.append(f"Machine: {r.get('machine')}. Date: {r.get('date')}. Revision: {r.get('git_revision')}. "
           f"TSC: {f('tsc_hz')} Hz.\n")
out.append("| metric | measured | target | |")
out.append("|---|---|---|---|")
for k, v, t, s in rows:
    out.append(f"| `{k}` | {v} | {t} | {s} |")
out.append("")
out.append("Context figures: fw cycles/packet with cold mbufs and software checksums (64k / 1M / 16M) " +
           f("fw_cycles_per_packet_64k_cold_mbufs") + " / " + f("fw_cycles_per_packet_1m_cold_mbufs") + " / " +
           f("fw_cycles_per_packet_16m_cold_mbufs") + "; bytes per connection at capacity 2^20 " +
           f("fw_bytes_per_conn_2p20", "{:,.1f}") + " (1,000,000: rte_hash " + f("fw_bytes_per_conn_hash", "{:,.1f}") +
           ", RCU defer queue " + f("fw_bytes_per_conn_rcu_dq", "{:,.1f}") + ", entries " +
           f("fw_bytes_per_conn_entries", "{:,.1f}") + ").\n")
out.append("Context figures: 1-worker pps " + f("fw_pps_1_worker") + ", 2-worker pps " + f("fw_pps_2_workers") +
           ", cycles per packet of a kLocal VM's flows " + f("migrate_local_cycles_per_packet") +
           ", cycles per new connection " + f("fw_new_conn_cycles") +
           (" (handshake + teardown + aging removal)" if not get("fw_new_conn_aging_left") else
            " (handshake + teardown only: aging stalled with " + f("fw_new_conn_aging_left") +
            " TIME_WAIT entries left, see notes)") +
           ", cycles per L7 spliced connection " + f("l7_splice_cycles") + ".\n")
out.append("""Peers for scale (from the issue): DPDK io-forward about 40 cycles/packet; DPVS full-NAT about
760 cycles/packet and 200k new TCP connections/s per worker; Katran about 700 cycles/packet; Linux
conntrack about 2,000 cycles/packet and 256 bytes per connection.

## How each figure is measured (read before quoting one)

Everything runs in one process (`bench/baton_bench.cc`) over `Dataplane::create(cfg, with_ports=false)`
and `Worker::process_burst`, with a `TxSink` in place of the NIC. Only `process_burst + flush_tx` is
inside the `rte_rdtsc` brackets.

* **fw_cycles_per_packet_***: one worker, 100 ACL rules configured, table filled with N established
  TCP flows (one real handshake through the pipeline gives an entry with fixed ISNs; the other N-1
  are copies inserted into the owner's ConnTable directly, since filling 16M entries through the
  pipeline would take minutes). Timed traffic: 262,144 prebuilt 64-byte (60 + FCS) pure-ACK frames
  of flows drawn uniformly at random from all N, both directions, bursts of 32, replayed 2 times
  per run, median of 5 runs, delivered as a NIC delivers them: a receive ring of 1,024 mbufs
  recycled burst after burst, each burst's frames written into the ring's mbufs just before the
  worker polls them (the NIC's DMA, which DDIO places in the last-level cache; untimed, as it is
  the NIC's work), with the IPv4 header checksum verified as a NIC with
  `RTE_ETH_RX_OFFLOAD_IPV4_CKSUM` reports it (`RTE_MBUF_F_RX_IP_CKSUM_GOOD`). The `_cold_mbufs`
  keys are the same stream handed over as 262,144 distinct mbufs that are cold in DRAM, with the
  parser checking every checksum, which no NIC does (the figures recorded before this change
  were measured that way). Allocation and freeing are not measured; a drop aborts the run. The
  ACL is not on this path (it is consulted only for new flows). Aging is not included.
* **--no-huge**: EAL memory is 4 KiB pages, so large tables pay TLB misses a hugepage
  deployment would not; the 1M and 16M figures are pessimistic for that reason.
* **fw_new_conns_per_second**: 196,608 connections, each SYN, SYN|ACK, ACK, FIN|ACK, FIN|ACK,
  ACK (bursts of 32 connections per phase, ACL classification of every SYN), plus the time to
  remove the TIME_WAIT entries with `ConnTable::expire` (the aging the worker runs). Packets are
  prebuilt and freed by the sink (the free is inside the timed loop). Known problem: driven
  from a thread that is not a registered RCU reader, `ConnTable::expire` stops removing after
  about 6k entries (`fw_new_conn_aging_left` counts what is left); when that happens the figure
  excludes removal. To be investigated by the table's owner.
* **fw_bytes_per_conn**: `ConnTable::memory_bytes() / capacity()` for a table of capacity
  1,000,000: hash buckets, extendable buckets, key store, free rings, RCU defer queue, 96-byte
  entries, live flags, VM heads. Capacity, not live entries: the memory is reserved up front.
  The `_hash`, `_rcu_dq` and `_entries` keys split it (DPDK heap growth across each step of
  `ConnTable::create`). `fw_bytes_per_conn_2p20` is the same at capacity 2^20, where capacity
  plus the 1/32 slack crosses a power of two and rte_hash's buckets, free ring and defer queue,
  all sized to a power of two, double. Where the rest goes: the 40-byte `FlowKey` (IPv6-sized,
  48 bytes in the key store) and the 96-byte entry; an IPv4-only key table (16 bytes) and a
  64-byte entry are the two changes that would reach 160.
* **fw_scaling_2_workers**: pps of two std::threads (pinned to CPU 0 and 1) each driving its own
  worker with flows that worker owns (64k per worker, no handoff), divided by twice the pps of one
  thread driving one worker. This machine has 2 CPUs, shared with the OS and with anything else
  running, so the figure is noisy: one run gave 1.09, the recorded run (made while other
  engineers were compiling on the same two CPUs) 0.22. It says nothing reliable either way
  here; rerun on an idle machine with dedicated cores.
* **fw_instructions_per_packet_64k**: `valgrind --tool=callgrind`, collection toggled on only
  inside `Worker::process_burst`, Ir divided by the packets processed (32,768 ACKs over 64k entries
  plus one handshake). Less noisy than cycles on a shared machine.
* **migrate_snapshot_entries_per_second**: `VmReader::snapshot()` of a VM with 1,048,576 entries,
  each record encoded straight from its entry into ENTRIES frames of 1,024 records as the engine
  streams them (each frame dropped once encoded); median of 3.
* **migrate_tracking_cycles_per_packet**: the same stream as fw (64k entries, all of one VM),
  median cycles/packet with the VM in kTracking (epoch bumped at the start of each run, dirty
  ring drained after it) minus the median with the VM in kLocal, 9 alternating runs. The
  difference is far below the run-to-run noise of this shared machine, so the figure may even be
  negative: read it as "not measurable here", and see the callgrind count for a stable figure.
* **migrate_freeze_ms_p99_10k / _100k**: in-process, two Dataplanes in one EAL, one worker each,
  A's table holding twice the changed entries. Each of 100 repetitions changes 10k (100k) entries
  in a delta round through A's pipeline, then times, from the pause to B active: VM frozen,
  grace period, the final `VmReader::delta()` streamed as frames of 1,024 records (each record
  encoded straight from its entry), each frame handed to B as it fills; B (its own thread, pinned
  to the second CPU, as the other host) decodes each frame into worker commands and its worker
  applies them (Worker::housekeeping on B's thread), waits for all at the end, activates (one
  store, grace period). Frames cross through a 4-frame queue (a socket's buffers); no TLS, no
  network. The p99 of 100 is the second worst repetition (`migrate_freeze_ms_max_*` the worst;
  until session 13, 20 repetitions and their worst as the p99); `migrate_freeze_ms_median_*` is
  the median of the same 100. `BATON_BENCH_SERIAL=1` runs B on A's thread; stderr shows each repetition's split.
* **migrate_1m_total_seconds / _bytes** (`bench/mig_daemons.sh`): two batond processes (one
  worker each, net_memif ports, `--no-huge`), the VM's 1,000,000 connections opened through A by
  `baton-pktgen --open` (every SYN, SYN|ACK and ACK through A's strict tracking), then A's
  control API: prepare, pause as soon as the snapshot round is acknowledged, resume as soon as the
  VM is frozen; B must hold all 1M. The time is A's report: prepare + pre-copy + Baton's part of
  the freeze (the pre-copy includes the script's reaction to the snapshot round, a 10 ms poll and
  a curl); the bytes are the frames A sent (TLS records not counted). `_daemons_*` keys: context.
* **migrate_1m_inprocess_total_seconds / _bytes**: in-process, 1,000,000 entries, as above: tracking on,
  snapshot streamed to B, freeze, final delta, activate. Bytes are the ENTRIES frames (header +
  112-byte records).
* **migrate_freeze_tls_ms_p99_* / migrate_1m_tls_total_seconds** (context): the same, but the
  frames go through a real `PeerLink` over loopback (mutual TLS 1.3, AES-128-GCM), and each
  round ends with the engine's ROUND_END / FINAL_END and ACK round trip. Encryption alone is
  about 1.3 GB/s per core here (`openssl speed`), 11 MB for 100k records, once at each end.
* **l7_splices_per_second** (`baton-xlate-bench l7new`): 65,536 whole L7 connections through
  the service of `tests/pipeline/l7_pipeline_test.cc` (the configuration and client frames are
  shared, `tests/pipeline/l7_topology.h`), one worker, bursts of 32 connections per phase:
  client SYN -> SYN-cookie SYN-ACK; the client's ACK (the cookie checked, the connection
  created with a head buffer); a 79-byte GET head -> routed, SYN to the backend; the backend's
  SYN-ACK -> the head replayed; the backend's 42-byte response (ACKs the replay, buffer back)
  -> rewritten to the client; FIN both ways and the last ACK, rewritten; then the TIME_WAIT
  entries removed by aging. 8 frames in and 8 out per connection; the bench plays the clients
  (distinct hosts, varied ports) and the backends, reading the cookie and the local port from
  the frames batond sent (copied inside the timed region, as natlbnew's). Timed: `process_burst
  + flush_tx` of every phase plus the aging; `l7_splice_cycles` is the same time per connection.
  Beyond full NAT's work this has the cookie (a SipHash when it is made and when it is
  checked), the head parser and router, three frames written (SYN-ACK, backend SYN, replay)
  and the splice rewrite (seq, ack, timestamps, window) of every later segment.
* **l7_splice_throughput_ratio** (`bench/l7_splice_ratio.sh`, end to end): the real batond
  (mode l3, 1 worker, af_packet on veth with offloads off, as the e2e tests) between a client
  namespace and a backend namespace (`tcp_tools.py whoami`). Each round downloads 200 MB with
  curl three ways back to back: through an L7 VIP (spliced), straight to the backend's address
  (routed and tracked by the same batond, not translated: the "plain forwarded connection"),
  and through a full-NAT VIP (`l7_splice_fullnat_ratio`, context). The figure is the median over
  3 rounds of spliced / routed within a round; medians of the three speeds are recorded as
  `l7_*_bytes_per_second`. On a 2-CPU machine batond's polling worker, curl, the Python server
  and the veth softirqs share the CPUs with whatever else runs: with builds running, single
  rounds gave ratios from 0.67 to 1.54, so the figure means something only on an idle machine.
* **Migration plot** (below; `bench/plot_migration.py`): whole migrations of N flows
  (`migrate_total_seconds_1k/_10k/_100k`, median of 3, and `migrate_1m_inprocess_total_seconds`) and
  freezes with N entries changed in the final round (`migrate_freeze_ms_p99_*` and `_median_*`
  for 1k, 10k, 100k, 1M; 1M: 5 repetitions), as above.

![Migration time against number of flows](migration_scaling.svg)
""")
open(sys.argv[2], "w").write("\n".join(out))
PY
# Time against number of flows (migration), embedded in PERFORMANCE.md; matplotlib comes with
# the Debian package (python3-matplotlib), hence that interpreter.
/usr/bin/python3 bench/plot_migration.py bench/results.json docs/migration_scaling.svg ||
  echo "bench: migration plot failed" >&2
echo "bench: wrote bench/results.json, docs/PERFORMANCE.md and docs/migration_scaling.svg" >&2
