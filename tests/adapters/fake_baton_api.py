#!/usr/bin/python3
# SPDX-License-Identifier: Apache-2.0
"""A tiny stand-in for batond's migration control API, recording every call.

Routes (as src/migrate/engine.cc): POST /v1/vms/VM/migration (202), POST .../pause|resume|abort,
GET /v1/vms/VM/migration. Each call is appended to --record as one JSON line
{"t_start", "t_end", "method", "path", "vm", "op", "body", "status"}; t_end is taken after the
answer was written, so "QMP command after pause returned" can be checked against it.

Behaviour knobs:
  --vms a,b          VMs that exist (others get 404 on prepare); default: any
  --pause-delay S    pause answers after S seconds (makes ordering checks meaningful)
  --refuse REASON    the migration fails in negotiation: status shows phase=failed result=REASON,
                     pause/resume answer 502
  --fail-prepare N   prepare answers HTTP N (e.g. 503)
  --port-file FILE   write the bound port (listen port 0 = free port)
"""
import argparse
import json
import os
import re
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import unquote

ROUTE = re.compile(r"^/v1/vms/([^/]+)/migration(?:/(pause|resume|abort))?$")


class State:
    def __init__(self, args):
        self.args = args
        self.lock = threading.Lock()
        self.rec_lock = threading.Lock()
        self.sessions = {}
        self.next_id = 1

    def report(self, s):
        return {"id": s["id"], "vm": s["vm"], "role": "source", "peers": s["peers"], "mode": s["mode"],
                "phase": s["phase"], "result": s["result"], "reason": s["reason"],
                "detail": s.get("detail", ""), "entries": {"snapshot": 3}, "rounds": 1,
                "ms": {"freeze": 1.5, "baton_freeze": 0.4}}


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, fmt, *a):
        pass

    def reply(self, status, body, t0, vm, op, req):
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)
        self.wfile.flush()
        rec = self.server.args.record
        if rec:
            with self.server.state.rec_lock, open(rec, "a") as f:
                f.write(json.dumps({"t_start": t0, "t_end": time.time(), "method": self.command,
                                    "path": self.path, "vm": vm, "op": op, "body": req,
                                    "status": status}) + "\n")

    def handle_any(self):
        t0 = time.time()
        n = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(n) if n else b""
        try:
            req = json.loads(raw) if raw else None
        except ValueError:
            return self.reply(400, {"error": "body is not JSON"}, t0, None, None, raw.decode("utf-8", "replace"))
        m = ROUTE.match(self.path)
        if not m:
            return self.reply(404, {"error": "no route"}, t0, None, None, req)
        vm, op = unquote(m.group(1)), m.group(2)
        st, a = self.server.state, self.server.args
        if self.command == "GET" and op is None:
            with st.lock:
                s = st.sessions.get(vm)
                if not s:
                    return self.reply(404, {"error": "no migration of '%s'" % vm}, t0, vm, "status", req)
                return self.reply(200, st.report(s), t0, vm, "status", req)
        if self.command != "POST":
            return self.reply(405, {"error": "method"}, t0, vm, op, req)
        if op is None:
            if a.fail_prepare:
                return self.reply(a.fail_prepare, {"error": "injected failure"}, t0, vm, "prepare", req)
            if a.vms and vm not in a.vms.split(","):
                return self.reply(404, {"error": "no VM named '%s'" % vm}, t0, vm, "prepare", req)
            peers = (req or {}).get("peers") or []
            if not peers:
                return self.reply(400, {"error": "name at least one peer"}, t0, vm, "prepare", req)
            with st.lock:
                s = st.sessions.get(vm)
                if s and s["phase"] not in ("succeeded", "failed"):
                    return self.reply(409, {"error": "a migration of '%s' is already running" % vm},
                                      t0, vm, "prepare", req)
                s = {"id": st.next_id, "vm": vm, "peers": peers, "mode": (req or {}).get("mode", "full"),
                     "phase": "precopy", "result": "RUNNING", "reason": ""}
                if a.refuse:
                    s.update(phase="failed", result=a.refuse, reason=a.refuse, detail="peer refused")
                st.next_id += 1
                st.sessions[vm] = s
                rep = st.report(s)
                rep["phase"] = "preparing"
            return self.reply(202, rep, t0, vm, "prepare", req)
        with st.lock:
            s = st.sessions.get(vm)
        if not s:
            return self.reply(404, {"error": "no migration of '%s'" % vm}, t0, vm, op, req)
        if op == "pause" and a.pause_delay:
            time.sleep(a.pause_delay)
        with st.lock:
            if s["phase"] in ("succeeded",) or (s["phase"] == "failed" and op == "abort"):
                return self.reply(409, {"error": "migration of '%s' has ended" % vm,
                                        "report": st.report(s)}, t0, vm, op, req)
            if s["phase"] == "failed":
                return self.reply(502, st.report(s), t0, vm, op, req)
            if op == "pause":
                s["phase"] = "frozen"
            elif op == "resume":
                s.update(phase="succeeded", result="SUCCESS")
            else:
                s.update(phase="failed", result="ABORTED", reason="ABORTED")
            return self.reply(200, st.report(s), t0, vm, op, req)

    do_GET = handle_any
    do_POST = handle_any


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--listen", default="127.0.0.1:0")
    p.add_argument("--port-file")
    p.add_argument("--record")
    p.add_argument("--vms", default="")
    p.add_argument("--pause-delay", type=float, default=0.0)
    p.add_argument("--refuse", default="")
    p.add_argument("--fail-prepare", type=int, default=0)
    args = p.parse_args()
    host, _, port = args.listen.rpartition(":")
    srv = ThreadingHTTPServer((host, int(port)), Handler)
    srv.daemon_threads = True
    srv.args = args
    srv.state = State(args)
    if args.port_file:
        with open(args.port_file + ".tmp", "w") as f:
            f.write("%d\n" % srv.server_address[1])
        os.rename(args.port_file + ".tmp", args.port_file)
    try:
        srv.serve_forever()
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    main()
