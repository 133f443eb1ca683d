#!/usr/bin/python3
# SPDX-License-Identifier: Apache-2.0
"""Real TCP endpoints for the end-to-end tests (run inside network namespaces).

  serve PORT                         echo server (threads), forever
  storm HOST PORT N SIZE             N concurrent connections, each sends SIZE random bytes and
                                     verifies the echo; exit 1 unless all N succeed
  hold HOST PORT N SECONDS OUT.json  N long-lived connections exchanging and verifying data
                                     every 100 ms for SECONDS; writes per-connection results
  session HOST PORT SECONDS          one connection, prints its local port, verifies an echo
                                     every 100 ms; exit 1 on any error
  forge IFACE SRC SPORT DST DPORT SEQ ACK KIND   scapy: send one forged segment
                                     (KIND: oow = out-of-window data, rst = RST with that seq)
"""
import json
import os
import socket
import sys
import threading
import time


def serve(port):
    srv = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    srv.bind(("0.0.0.0", port))
    srv.listen(1024)

    def echo(c):
        try:
            while True:
                d = c.recv(65536)
                if not d:
                    break
                c.sendall(d)
        except OSError:
            pass
        finally:
            c.close()

    while True:
        c, _ = srv.accept()
        threading.Thread(target=echo, args=(c,), daemon=True).start()


def exchange(s, payload):
    s.sendall(payload)
    got = b""
    while len(got) < len(payload):
        d = s.recv(len(payload) - len(got))
        if not d:
            raise ConnectionError("closed by peer")
        got += d
    if got != payload:
        raise ValueError("echo differs")


def storm(host, port, n, size):
    ok = [0]
    errors = []
    lock = threading.Lock()
    start = threading.Barrier(n)

    def one(i):
        try:
            s = socket.create_connection((host, port), timeout=20)
            start.wait(timeout=30)
            exchange(s, os.urandom(size))
            s.close()
            with lock:
                ok[0] += 1
        except Exception as e:  # noqa: BLE001 - every failure is reported
            with lock:
                errors.append(f"{i}: {e!r}")

    ts = [threading.Thread(target=one, args=(i,)) for i in range(n)]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    print(f"storm: {ok[0]}/{n} ok")
    for e in errors[:10]:
        print("  " + e)
    return 0 if ok[0] == n else 1


def hold(host, port, n, seconds, out):
    results = [None] * n
    socks = []
    for i in range(n):
        s = socket.create_connection((host, port), timeout=10)
        s.settimeout(float(os.environ.get("HOLD_TIMEOUT", "30")))
        socks.append(s)
    print(f"hold: {n} connections open", flush=True)
    deadline = time.time() + seconds

    def run(i):
        s = socks[i]
        rounds = 0
        try:
            while time.time() < deadline:
                exchange(s, os.urandom(64 + (i % 7) * 100))
                rounds += 1
                time.sleep(0.1)
            s.close()
            results[i] = {"ok": True, "rounds": rounds}
        except Exception as e:  # noqa: BLE001
            results[i] = {"ok": False, "rounds": rounds, "error": repr(e)}

    ts = [threading.Thread(target=run, args=(i,)) for i in range(n)]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    ok = sum(1 for r in results if r and r["ok"])
    with open(out, "w") as f:
        json.dump({"ok": ok, "n": n, "results": results}, f)
    print(f"hold: {ok}/{n} ok")
    return 0 if ok == n else 1


def session(host, port, seconds):
    s = socket.create_connection((host, port), timeout=10)
    s.settimeout(10)
    print(s.getsockname()[1], flush=True)
    deadline = time.time() + seconds
    n = 0
    while time.time() < deadline:
        exchange(s, b"hello %d\n" % n)
        n += 1
        time.sleep(0.1)
    s.close()
    print(f"session: {n} exchanges ok", flush=True)
    return 0


def forge(iface, src, sport, dst, dport, seq, ack, kind):
    from scapy.all import IP, TCP, Raw, sendp, Ether, get_if_hwaddr, conf  # noqa: PLC0415
    conf.verb = 0
    ip = IP(src=src, dst=dst)
    if kind == "oow":
        pkt = ip / TCP(sport=sport, dport=dport, flags="PA", seq=seq, ack=ack, window=502) / Raw(b"FORGED")
    else:
        pkt = ip / TCP(sport=sport, dport=dport, flags="R", seq=seq, window=0)
    from scapy.all import send  # noqa: PLC0415
    send(pkt, iface=iface)
    return 0


def main(argv):
    cmd = argv[1]
    if cmd == "serve":
        return serve(int(argv[2]))
    if cmd == "storm":
        return storm(argv[2], int(argv[3]), int(argv[4]), int(argv[5]))
    if cmd == "hold":
        return hold(argv[2], int(argv[3]), int(argv[4]), float(argv[5]), argv[6])
    if cmd == "session":
        return session(argv[2], int(argv[3]), float(argv[4]))
    if cmd == "forge":
        return forge(argv[2], argv[3], int(argv[4]), argv[5], int(argv[6]), int(argv[7]),
                     int(argv[8]), argv[9])
    print(__doc__)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv))
