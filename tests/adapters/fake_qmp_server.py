#!/usr/bin/python3
# SPDX-License-Identifier: Apache-2.0
"""A scripted QMP server that speaks the real protocol, for testing adapters/baton-qmp.

Protocol as QEMU implements it:
  * on connect the server sends the greeting
      {"QMP": {"version": {"qemu": {...}, "package": ""}, "capabilities": ["oob"]}}
  * until the client sends {"execute": "qmp_capabilities"} every other command is answered
      {"error": {"class": "CommandNotFound",
                 "desc": "Expecting capabilities negotiation with 'qmp_capabilities'"}}
  * a second qmp_capabilities gets CommandNotFound "Capabilities negotiation is already
    complete, command ignored"; unknown commands get CommandNotFound "The command X has not
    been found"; a command's "id" is echoed in its answer
  * events: {"event": NAME, "data": {...}, "timestamp": {"seconds": S, "microseconds": U}}
  * migrate-set-capabilities answers {"return": {}} (GenericError while a migration runs);
    migrate-continue answers {"return": {}} only in state pre-switchover, else GenericError
    "Migration not in expected state: STATE"; query-migrate reports the current status.

The script (--script FILE, one step per line, or --step STEP repeated) runs after a client has
connected:
  migration STATUS        set the migration status and emit MIGRATION {"status": STATUS}
  event NAME [JSON]       emit any event (e.g. "event STOP", "event RESUME")
  wait COMMAND [SECONDS]  wait until the client sent COMMAND (default 10 s; on timeout: exit 4)
  sleep SECONDS
  waitfile PATH [SECONDS] wait until PATH exists (the harness did its part, e.g. moved the VM)
  close                   close the connection (and end)
  hang                    keep the connection open doing nothing until killed
After the last step the server waits for the client to disconnect (at most --linger s).

--no-greeting: accept and send nothing (a broken/hung monitor).
--record FILE: every command received, one JSON line {"t": unix-time, "execute", "arguments"}.
--listen unix:/path | tcp:HOST:PORT (port 0 picks a free one; --port-file gets the port).
"""
import argparse
import json
import os
import socket
import sys
import threading
import time


class Conn:
    def __init__(self, sock, record):
        self.sock = sock
        self.record = record
        self.lock = threading.Lock()
        self.cv = threading.Condition()
        self.received = []
        self.negotiated = False
        self.status = None
        self.pbs = False
        self.closed = False

    def send(self, obj):
        data = json.dumps(obj).encode() + b"\r\n"
        with self.lock:
            try:
                self.sock.sendall(data)
            except OSError:
                pass

    def event(self, name, data=None):
        if not self.negotiated:
            return  # like QEMU: no events while in capabilities negotiation mode
        now = time.time()
        ev = {"event": name, "timestamp": {"seconds": int(now), "microseconds": int((now % 1) * 1e6)}}
        if data is not None:
            ev["data"] = data
        self.send(ev)

    def answer(self, req, ret=None, err=None):
        msg = {"return": ret if ret is not None else {}} if err is None else {"error": err}
        if "id" in req:
            msg["id"] = req["id"]
        self.send(msg)

    def handle(self, req):
        name = req.get("execute")
        if self.record:
            with open(self.record, "a") as f:
                f.write(json.dumps({"t": time.time(), "execute": name,
                                    "arguments": req.get("arguments")}) + "\n")
        with self.cv:
            self.received.append(name)
            self.cv.notify_all()
        if not isinstance(name, str):
            return self.answer(req, err={"class": "GenericError",
                                         "desc": "QMP input must be a JSON object with 'execute'"})
        if not self.negotiated:
            if name == "qmp_capabilities":
                self.negotiated = True
                return self.answer(req)
            return self.answer(req, err={"class": "CommandNotFound", "desc":
                                         "Expecting capabilities negotiation with 'qmp_capabilities'"})
        if name == "qmp_capabilities":
            return self.answer(req, err={"class": "CommandNotFound", "desc":
                                         "Capabilities negotiation is already complete, command ignored"})
        if name == "migrate-set-capabilities":
            if self.status in ("setup", "active", "pre-switchover", "device", "postcopy-active"):
                return self.answer(req, err={"class": "GenericError",
                                             "desc": "There's a migration process in progress"})
            for c in (req.get("arguments") or {}).get("capabilities", []):
                if c.get("capability") == "pause-before-switchover":
                    self.pbs = bool(c.get("state"))
            return self.answer(req)
        if name == "migrate-continue":
            want = (req.get("arguments") or {}).get("state")
            if self.status != "pre-switchover" or want != "pre-switchover":
                return self.answer(req, err={"class": "GenericError", "desc":
                                             "Migration not in expected state: %s" % (self.status or "none")})
            self.status = "device"
            return self.answer(req)
        if name == "query-migrate":
            return self.answer(req, ret={"status": self.status} if self.status else {})
        if name == "query-status":
            return self.answer(req, ret={"status": "running", "running": True, "singlestep": False})
        return self.answer(req, err={"class": "CommandNotFound",
                                     "desc": "The command %s has not been found" % name})

    def reader(self):
        buf = b""
        try:
            while True:
                chunk = self.sock.recv(65536)
                if not chunk:
                    break
                buf += chunk
                while buf.strip():
                    if b"\n" in buf:
                        line, buf = buf.split(b"\n", 1)
                    else:
                        try:  # QEMU also accepts a JSON object without a newline
                            json.loads(buf)
                        except ValueError:
                            break
                        line, buf = buf, b""
                    line = line.strip()
                    if not line:
                        continue
                    try:
                        req = json.loads(line)
                    except ValueError as e:
                        self.send({"error": {"class": "GenericError", "desc": "JSON parse error, %s" % e}})
                        continue
                    if not isinstance(req, dict):
                        self.send({"error": {"class": "GenericError", "desc": "QMP input must be a JSON object"}})
                        continue
                    self.handle(req)
        except OSError:
            pass
        with self.cv:
            self.closed = True
            self.cv.notify_all()

    def wait_command(self, name, timeout):
        end = time.monotonic() + timeout
        with self.cv:
            while name not in self.received:
                left = end - time.monotonic()
                if left <= 0 or self.closed:
                    return False
                self.cv.wait(left)
            self.received.remove(name)
            return True


def run_script(conn, steps, linger):
    for step in steps:
        parts = step.split(None, 2)
        if not parts or parts[0].startswith("#"):
            continue
        op = parts[0]
        if op == "migration":
            conn.status = parts[1]
            conn.event("MIGRATION", {"status": parts[1]})
        elif op == "event":
            data = json.loads(parts[2]) if len(parts) > 2 else None
            conn.event(parts[1], data)
        elif op == "wait":
            timeout = float(parts[2]) if len(parts) > 2 else 10.0
            if not conn.wait_command(parts[1], timeout):
                print("fake_qmp: timed out waiting for %s" % parts[1], file=sys.stderr)
                return 4
        elif op == "sleep":
            time.sleep(float(parts[1]))
        elif op == "waitfile":
            # The test harness's hand: e.g. the VM's veth has moved to the destination host.
            deadline = time.monotonic() + (float(parts[2]) if len(parts) > 2 else 10.0)
            while not os.path.exists(parts[1]):
                if time.monotonic() > deadline:
                    print("fake_qmp: timed out waiting for file %s" % parts[1], file=sys.stderr)
                    return 4
                time.sleep(0.01)
        elif op == "close":
            return 0
        elif op == "hang":
            while not conn.closed:
                time.sleep(0.2)
            return 0
        else:
            print("fake_qmp: unknown step %r" % step, file=sys.stderr)
            return 5
    end = time.monotonic() + linger
    while not conn.closed and time.monotonic() < end:
        time.sleep(0.05)
    return 0


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--listen", required=True)
    p.add_argument("--port-file")
    p.add_argument("--script")
    p.add_argument("--step", action="append", default=[])
    p.add_argument("--record")
    p.add_argument("--no-greeting", action="store_true")
    p.add_argument("--linger", type=float, default=30.0)
    args = p.parse_args()
    steps = list(args.step)
    if args.script:
        with open(args.script) as f:
            steps = [l.strip() for l in f if l.strip()] + steps

    if args.listen.startswith("unix:"):
        path = args.listen[5:]
        if os.path.exists(path):
            os.unlink(path)
        srv = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        srv.bind(path)
    elif args.listen.startswith("tcp:"):
        host, _, port = args.listen[4:].rpartition(":")
        srv = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        srv.bind((host, int(port)))
    else:
        sys.exit("fake_qmp: --listen unix:/path or tcp:host:port")
    srv.listen(1)
    if args.port_file:
        tmp = args.port_file + ".tmp"
        with open(tmp, "w") as f:
            f.write("%d\n" % (srv.getsockname()[1] if srv.family == socket.AF_INET else 0))
        os.rename(tmp, args.port_file)
    sock, _ = srv.accept()
    conn = Conn(sock, args.record)
    if args.no_greeting:
        while sock.recv(65536):
            pass
        return 0
    conn.send({"QMP": {"version": {"qemu": {"micro": 0, "minor": 2, "major": 8}, "package": ""},
                       "capabilities": ["oob"]}})
    t = threading.Thread(target=conn.reader, daemon=True)
    t.start()
    rc = run_script(conn, steps, args.linger)
    try:
        sock.shutdown(socket.SHUT_RDWR)
    except OSError:
        pass
    sock.close()
    return rc


if __name__ == "__main__":
    sys.exit(main())
