#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
#
# Tests the hypervisor adapters (adapters/baton-qmp, adapters/libvirt-hook-qemu) against a
# scripted QMP server that speaks the real protocol and a fake Baton control API that records
# every call. No batond, no QEMU, no root needed. Exits non-zero if any check fails.
set -uo pipefail
cd "$(dirname "$0")/../.."
ROOT=$(pwd)
PY=/usr/bin/python3
QMPD=$ROOT/tests/adapters/fake_qmp_server.py
APID=$ROOT/tests/adapters/fake_baton_api.py
ADAPTER=$ROOT/adapters/baton-qmp
HOOK=$ROOT/adapters/libvirt-hook-qemu
T=$(mktemp -d /tmp/baton-adapters.XXXXXX)
PIDS=()

cleanup() {
  local p
  for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null; done
  for p in "${PIDS[@]}"; do wait "$p" 2>/dev/null; done
  rm -rf "$T"
}
trap cleanup EXIT

passed=0; failed=0
ok() { echo "ok   $*"; passed=$((passed + 1)); }
bad() { echo "FAIL $*"; failed=$((failed + 1)); }
check() { local desc=$1; shift; if "$@"; then ok "$desc"; else bad "$desc"; fi; }

wait_file() { local i; for i in $(seq 100); do [ -e "$1" ] && return 0; sleep 0.05; done; return 1; }

# start_api NAME [fake_baton_api args...]: sets API_PORT; records to $T/NAME.api
start_api() {
  local name=$1; shift
  $PY "$APID" --port-file "$T/$name.apiport" --record "$T/$name.api" "$@" &
  PIDS+=($!)
  wait_file "$T/$name.apiport" || { echo "fake API did not start"; exit 1; }
  API_PORT=$(cat "$T/$name.apiport")
  : >>"$T/$name.api"
}

# start_qmp NAME unix|tcp [fake_qmp_server args...]: sets QMP_ADDR and QMP_PID; records to $T/NAME.qmp
start_qmp() {
  local name=$1 kind=$2; shift 2
  if [ "$kind" = unix ]; then
    $PY "$QMPD" --listen "unix:$T/$name.sock" --port-file "$T/$name.qmpport" --record "$T/$name.qmp" --linger 10 "$@" &
    QMP_PID=$!; PIDS+=($QMP_PID)
    wait_file "$T/$name.qmpport" || { echo "fake QMP did not start"; exit 1; }
    QMP_ADDR=unix:$T/$name.sock
  else
    $PY "$QMPD" --listen tcp:127.0.0.1:0 --port-file "$T/$name.qmpport" --record "$T/$name.qmp" --linger 10 "$@" &
    QMP_PID=$!; PIDS+=($QMP_PID)
    wait_file "$T/$name.qmpport" || { echo "fake QMP did not start"; exit 1; }
    QMP_ADDR=tcp:127.0.0.1:$(cat "$T/$name.qmpport")
  fi
  : >>"$T/$name.qmp"
}

# api_ops NAME: the recorded API operations, space separated (status GETs left out)
api_ops() { $PY -c 'import json,sys; print(" ".join(r["op"] for r in map(json.loads, open(sys.argv[1])) if r["op"] != "status"))' "$T/$1.api"; }
# qmp_cmds NAME: the recorded QMP commands, space separated
qmp_cmds() { $PY -c 'import json,sys; print(" ".join(r["execute"] for r in map(json.loads, open(sys.argv[1]))))' "$T/$1.qmp"; }
eq() { [ "$1" = "$2" ] || { echo "     got: '$1'"; echo "     want: '$2'"; return 1; }; }

run_adapter() {  # NAME args...: runs baton-qmp with a hard limit, output to $T/NAME.out, sets RC
  local name=$1; shift
  timeout 30 $PY "$ADAPTER" "$@" >"$T/$name.out" 2>&1
  RC=$?
  sed 's/^/     | /' "$T/$name.out"
}

echo "== baton-qmp: successful migration with pause-before-switchover (unix socket)"
start_api ok --pause-delay 0.3
start_qmp ok unix --step "wait qmp_capabilities" --step "wait query-migrate" \
  --step "migration setup" --step "migration active" --step "sleep 0.1" --step "event STOP" \
  --step "migration pre-switchover" --step "wait migrate-continue" --step "migration device" \
  --step "migration completed"
run_adapter ok --qmp "$QMP_ADDR" --api "127.0.0.1:$API_PORT" --vm vm1 --peer b --mode full --pause-before-switchover
wait "$QMP_PID"; qrc=$?
check "adapter exits 0 after completed + resume SUCCESS" [ "$RC" = 0 ]
check "fake QMP saw its whole script (migrate-continue arrived)" [ "$qrc" = 0 ]
check "API calls are prepare, pause, resume in that order" eq "$(api_ops ok)" "prepare pause resume"
check "prepare body names peer b and mode full" $PY -c '
import json,sys; r=[json.loads(l) for l in open(sys.argv[1])][0]
sys.exit(r["body"] != {"peers": ["b"], "mode": "full"} or r["vm"] != "vm1")' "$T/ok.api"
check "QMP commands: qmp_capabilities first, then pause-before-switchover, then migrate-continue" \
  eq "$(qmp_cmds ok)" "qmp_capabilities migrate-set-capabilities query-migrate migrate-continue"
check "migrate-set-capabilities enabled pause-before-switchover" $PY -c '
import json,sys; r=[json.loads(l) for l in open(sys.argv[1]) if "set-cap" in l][0]
sys.exit(r["arguments"] != {"capabilities": [{"capability": "pause-before-switchover", "state": True}]})' "$T/ok.qmp"
check "migrate-continue (state pre-switchover) was sent after pause returned" $PY -c '
import json,sys
api=[json.loads(l) for l in open(sys.argv[1])]; qmp=[json.loads(l) for l in open(sys.argv[2])]
pause=[r for r in api if r["op"]=="pause"][0]; cont=[r for r in qmp if r["execute"]=="migrate-continue"][0]
sys.exit(not (cont["t"] >= pause["t_end"] and cont["arguments"] == {"state": "pre-switchover"}))' "$T/ok.api" "$T/ok.qmp"
check "progress lines printed" grep -q "RESULT: migration completed, Baton SUCCESS" "$T/ok.out"

echo "== baton-qmp: failed migration (active, failed) over TCP"
start_api fl
start_qmp fl tcp --step "wait qmp_capabilities" --step "wait query-migrate" \
  --step "migration active" --step "sleep 0.1" --step "migration failed"
run_adapter fl --qmp "$QMP_ADDR" --api "127.0.0.1:$API_PORT" --vm vm1 --peer b --pause-before-switchover
wait "$QMP_PID"
check "adapter exits non-zero (3) after a failed migration" [ "$RC" = 3 ]
check "API calls are prepare then abort" eq "$(api_ops fl)" "prepare abort"
check "no migrate-continue sent" eq "$(qmp_cmds fl)" "qmp_capabilities migrate-set-capabilities query-migrate"

echo "== baton-qmp: cancelled migration"
start_api cn
start_qmp cn unix --step "wait query-migrate" --step "migration setup" --step "migration active" \
  --step "migration cancelling" --step "migration cancelled"
run_adapter cn --qmp "$QMP_ADDR" --api "127.0.0.1:$API_PORT" --vm vm1 --peer b
wait "$QMP_PID"
check "cancelled: exit 3, prepare then abort" eq "$RC $(api_ops cn)" "3 prepare abort"

echo "== baton-qmp: QMP server never sends the greeting"
start_api ng
start_qmp ng unix --no-greeting
t0=$(date +%s.%N)
run_adapter ng --qmp "$QMP_ADDR" --api "127.0.0.1:$API_PORT" --vm vm1 --peer b --timeout 2
el=$($PY -c "import sys; print(float(sys.argv[2]) - float(sys.argv[1]))" "$t0" "$(date +%s.%N)")
check "no greeting: adapter exits non-zero (not killed by timeout)" [ "$RC" != 0 -a "$RC" != 124 ]
check "no greeting: within its 2 s timeout (took ${el}s)" $PY -c "import sys; sys.exit(not 1.5 <= $el < 6)"
check "no greeting: clear message" grep -q "no QMP greeting within" "$T/ng.out"
check "no greeting: no Baton call" eq "$(api_ops ng)" ""

echo "== baton-qmp: nothing listening on the QMP socket"
run_adapter nl --qmp "unix:$T/nothing.sock" --api 127.0.0.1:9 --vm vm1 --peer b --timeout 2
check "no QMP socket: exit 2 with a message" eq "$RC $(grep -c 'cannot connect to QMP' "$T/nl.out")" "2 1"

echo "== baton-qmp: QMP connection lost mid-migration"
start_api lost
start_qmp lost unix --step "wait query-migrate" --step "migration setup" --step "migration active" --step "sleep 0.1" --step close
run_adapter lost --qmp "$QMP_ADDR" --api "127.0.0.1:$API_PORT" --vm vm1 --peer b
check "connection lost: exit 2, prepare then abort" eq "$RC $(api_ops lost)" "2 prepare abort"

echo "== baton-qmp: without pause-before-switchover, STOP during migration is the pause signal"
start_api stop
start_qmp stop tcp --step "wait query-migrate" --step "migration setup" --step "migration active" \
  --step "event STOP" --step "sleep 0.2" --step "migration completed"
run_adapter stop --qmp "$QMP_ADDR" --api "127.0.0.1:$API_PORT" --vm vm1 --peer b --peer c
check "STOP path: exit 0, prepare pause resume" eq "$RC $(api_ops stop)" "0 prepare pause resume"
check "STOP path: prepare names both peers (1:n)" grep -q '"peers": \["b", "c"\]' "$T/stop.api"
check "STOP path: no capability change, no migrate-continue" eq "$(qmp_cmds stop)" "qmp_capabilities query-migrate"

echo "== baton-qmp: Baton refuses (RESOURCES): QEMU is still released with migrate-continue"
start_api rf --refuse RESOURCES
start_qmp rf unix --step "wait query-migrate" --step "migration setup" --step "migration active" \
  --step "migration pre-switchover" --step "wait migrate-continue" --step "migration completed"
run_adapter rf --qmp "$QMP_ADDR" --api "127.0.0.1:$API_PORT" --vm vm1 --peer b --pause-before-switchover
wait "$QMP_PID"; qrc=$?
check "refused: adapter exits 1 (handoff failed)" [ "$RC" = 1 ]
check "refused: migrate-continue still sent (guest never left stopped)" [ "$qrc" = 0 ]
check "refused: prepare, pause (502), no resume" eq "$(api_ops rf)" "prepare pause"

echo "== baton-qmp: adapter attached while a migration is already active"
start_api late
start_qmp late unix --step "migration active" --step "wait query-migrate" --step "sleep 0.1" \
  --step "event STOP" --step "migration completed"
run_adapter late --qmp "$QMP_ADDR" --api "127.0.0.1:$API_PORT" --vm vm1 --peer b --pause-before-switchover
check "late attach: capability refused mid-migration, falls back to STOP; prepare pause resume" \
  eq "$RC $(api_ops late)" "0 prepare pause resume"

echo "== fake QMP server speaks the protocol (commands before qmp_capabilities are refused)"
start_qmp proto unix --step hang
check "CommandNotFound before negotiation, id echoed, then accepted" $PY - "$T/proto.sock" <<'EOF'
import json, socket, sys
s = socket.socket(socket.AF_UNIX); s.connect(sys.argv[1]); f = s.makefile("rwb")
g = json.loads(f.readline()); assert "QMP" in g and "version" in g["QMP"], g
def cmd(c, **kw):
    f.write(json.dumps(dict(execute=c, **kw)).encode() + b"\n"); f.flush(); return json.loads(f.readline())
r = cmd("query-migrate", id=7); assert r["error"]["class"] == "CommandNotFound" and r["id"] == 7, r
assert cmd("qmp_capabilities") == {"return": {}}
assert cmd("query-migrate") == {"return": {}}
r = cmd("migrate-continue", arguments={"state": "pre-switchover"}); assert r["error"]["class"] == "GenericError", r
r = cmd("no-such"); assert r["error"]["class"] == "CommandNotFound", r
EOF

# ---- libvirt hook ---------------------------------------------------------------------------
XML='<domain type="kvm"><name>dom1</name><uuid>4dea22b3-1d52-d8f3-2516-782e98ab3fa0</uuid><memory>1048576</memory></domain>'
XML_META='<domain type="kvm"><name>dom2</name><metadata><baton:vm xmlns:baton="https://baton.dev/xmlns/libvirt/1" name="tenant-7-web"/></metadata></domain>'
hook() {  # NAME conf-args... -- hook-args: runs the hook, sets RC, output in $T/NAME.hout/.herr
  local name=$1; shift
  local conf=$T/$name.conf; : >"$conf"
  while [ "$1" != -- ]; do echo "$1" >>"$conf"; shift; done; shift
  local t0; t0=$(date +%s%N)
  BATON_HOOK_CONF=$conf timeout 20 $PY "$HOOK" "$@" <"$T/stdin.xml" >"$T/$name.hout" 2>"$T/$name.herr"
  RC=$?
  HOOK_MS=$(( ($(date +%s%N) - t0) / 1000000 ))
  sed 's/^/     | /' "$T/$name.herr"
}

echo "== libvirt hook: destination 'migrate begin -' prepares at the source instance"
start_api src; SRC=$API_PORT
start_api own; OWN=$API_PORT
echo "$XML" >"$T/stdin.xml"
hook h1 "api = http://127.0.0.1:$OWN" "peer = b" "source_api = 127.0.0.1:$SRC" "vm.dom1 = vm1" -- dom1 migrate begin -
check "migrate begin: exit 0" [ "$RC" = 0 ]
check "migrate begin: stdout empty (XML unchanged)" [ ! -s "$T/h1.hout" ]
check "migrate begin: prepare vm1 peers [b] at the source instance" $PY -c '
import json,sys; r=[json.loads(l) for l in open(sys.argv[1]) if "prepare" in l]
sys.exit(len(r) != 1 or r[0]["vm"] != "vm1" or r[0]["body"] != {"peers": ["b"], "mode": "full"})' "$T/src.api"
check "migrate begin: nothing sent to this host's own instance" eq "$(api_ops own)" ""

echo "== libvirt hook: destination ops that need nothing"
for op in "prepare begin -" "start begin -" "started begin -" "stopped end -" "reconnect begin -"; do
  # shellcheck disable=SC2086
  hook h0 "api = 127.0.0.1:$OWN" "peer = b" "source_api = 127.0.0.1:$SRC" -- dom1 $op
  check "'$op': exit 0, no API call" eq "$RC $(api_ops src | wc -w) $(api_ops own | wc -w)" "0 1 0"
done

echo "== libvirt hook: source 'release end migrated' resumes a migration still running"
hook h2 "api = 127.0.0.1:$SRC" "peer = a" "source_api = 127.0.0.1:$OWN" "vm.dom1 = vm1" -- dom1 release end migrated
check "release migrated: exit 0 and prepare, resume at the source instance" eq "$RC $(api_ops src)" "0 prepare resume"

echo "== libvirt hook: destination release while the migration to it runs -> abort"
start_api src2; SRC2=$API_PORT
hook h3a "api = 127.0.0.1:$OWN" "peer = b" "source_api = 127.0.0.1:$SRC2" "vm.dom1 = vm1" -- dom1 migrate begin -
hook h3 "api = 127.0.0.1:$OWN" "peer = b" "source_api = 127.0.0.1:$SRC2" "vm.dom1 = vm1" -- dom1 release end failed
check "incoming QEMU released: prepare then abort at the source instance" eq "$RC $(api_ops src2)" "0 prepare abort"

echo "== libvirt hook: name from <metadata>, 1:n peers"
start_api meta
echo "$XML_META" >"$T/stdin.xml"
hook h4 "peer = b, c" "source_api = 127.0.0.1:$API_PORT" -- dom2 migrate begin -
check "metadata name and peers [b, c]" grep -q '"vm": "tenant-7-web", "op": "prepare", "body": {"peers": \["b", "c"\]' "$T/meta.api"

echo "== libvirt hook: policy=required refuses the migration when the peer refuses"
start_api ref --refuse RESOURCES
echo "$XML" >"$T/stdin.xml"
hook h5 "peer = b" "source_api = 127.0.0.1:$API_PORT" "policy = required" -- dom1 migrate begin -
check "required + RESOURCES: exit 1 with the reason on stderr" eq "$RC $(grep -c RESOURCES "$T/h5.herr")" "1 1"
hook h6 "peer = b" "source_api = 127.0.0.1:$API_PORT" -- dom1 migrate begin -
check "best-effort + refusal: exit 0" [ "$RC" = 0 ]

echo "== libvirt hook: Baton unreachable never blocks libvirt for long"
hook h7 "peer = b" "source_api = 127.0.0.1:9" "timeout = 2" -- dom1 migrate begin -
check "unreachable, best-effort: exit 0 in ${HOOK_MS} ms" [ "$RC" = 0 -a "$HOOK_MS" -lt 5000 ]
hook h8 "peer = b" "source_api = 127.0.0.1:9" "policy = required" -- dom1 migrate begin -
check "unreachable, required: exit 1" [ "$RC" = 1 ]
BATON_SOURCE_API=127.0.0.1:$SRC2 BATON_PEER=b hook h9 -- vmx migrate begin -
check "environment (BATON_SOURCE_API, BATON_PEER) configures the hook" eq "$RC $(api_ops src2)" "0 prepare abort prepare"

echo "$passed passed, $failed failed"
[ "$failed" = 0 ]
