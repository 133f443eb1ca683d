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
  syn-flood SRC DST DPORT N          scapy: N SYNs from address SRC (ports 20000..), nothing else
  whoami PORT [NAME]                 HTTP/1.1 server (keep-alive): every response body is
                                     "NAME ip:port" of the peer it sees; GET /upload/N and
                                     POST echo a sha256 (for the L7 tests)
  udp-reflect [ADDR:]PORT [OTHER]    UDP: answers each datagram with "ip:port" of its sender;
                                     with OTHER also sends the answer from port OTHER
  http-spread HOST PORT N [PAR]      N GETs, each on a new connection (PAR at a time); prints
                                     {"counts": {first word of body: n}, "failed": k, "bodies": [...]}
  udp-probe LPORT SECS HOST:PORT...  UDP from local port LPORT to each target; prints each answer
                                     on a line, then anything else received within SECS
  bye PORT                           server that sends "bye" and closes first (it keeps TIME_WAIT)
  tw-reuse IFACE HOST PORT N         for N local ports: a connection to a `bye` server, then (scapy)
                                     a SYN from the same port with a random ISN, which the server
                                     in TIME_WAIT accepts (SYN-ACK) or answers with an ACK of the
                                     old connection; after such an ACK (which this host's kernel
                                     resets) the SYN is sent again and must get a SYN-ACK; prints
                                     {"accepted", "challenged", "reconnected", "unanswered"}
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


def syn_flood(src, dst, dport, n):
    from scapy.all import IP, TCP, conf, send  # noqa: PLC0415
    conf.verb = 0
    send([IP(src=src, dst=dst) / TCP(sport=20000 + i, dport=dport, flags="S", seq=1000 + i)
          for i in range(n)])
    return 0


def whoami(port, name):
    import http.server  # noqa: PLC0415
    import hashlib  # noqa: PLC0415

    class H(http.server.BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def reply(self, body):
            body = body.encode()
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.send_header("Content-Type", "text/plain")
            self.end_headers()
            self.wfile.write(body)

        def do_GET(self):
            if self.path.startswith("/bytes/"):
                n = int(self.path.split("/")[2])
                self.send_response(200)
                self.send_header("Content-Length", str(n))
                self.end_headers()
                block = bytes(range(256)) * 256
                while n > 0:
                    k = min(n, len(block))
                    self.wfile.write(block[:k])
                    n -= k
                return
            self.reply("%s %s:%d\n" % (name, self.client_address[0], self.client_address[1]))

        def do_POST(self):
            n = int(self.headers.get("Content-Length", "0"))
            h = hashlib.sha256()
            while n > 0:
                d = self.rfile.read(min(n, 65536))
                if not d:
                    break
                h.update(d)
                n -= len(d)
            self.reply(h.hexdigest() + "\n")

        def log_message(self, *a):
            pass

    class S(http.server.ThreadingHTTPServer):
        daemon_threads = True
        allow_reuse_address = True
        request_queue_size = 1024

    S(("0.0.0.0", port), H).serve_forever()


def udp_reflect(bind, other):
    addr, _, port = bind.rpartition(":")
    addr = addr or "0.0.0.0"
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.bind((addr, int(port)))
    o = None
    if other:
        o = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        o.bind((addr, other))
    while True:
        d, peer = s.recvfrom(2048)
        msg = ("%s:%d" % peer).encode()
        s.sendto(msg, peer)
        if o:
            o.sendto(b"other " + msg, peer)


def udp_probe(lport, secs, targets):
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.bind(("0.0.0.0", lport))
    s.settimeout(2.0)
    rc = 0
    for t in targets:
        host, port = t.rsplit(":", 1)
        got = None
        for _ in range(3):  # the first datagram may wait for ARP on the far side
            s.sendto(b"probe", (host, int(port)))
            try:
                while True:
                    d, peer = s.recvfrom(2048)
                    if peer == (host, int(port)):
                        got = d.decode()
                        break
                    print("extra %s:%d %s" % (peer[0], peer[1], d.decode()), flush=True)
                break
            except socket.timeout:
                continue
        if got is None:
            print("noanswer %s" % t, flush=True)
            rc = 1
        else:
            print("answer %s %s" % (t, got), flush=True)
    end = time.time() + secs
    while time.time() < end:
        s.settimeout(max(0.05, end - time.time()))
        try:
            d, peer = s.recvfrom(2048)
            print("extra %s:%d %s" % (peer[0], peer[1], d.decode()), flush=True)
        except socket.timeout:
            break
    return rc


def http_spread(host, port, n, par):
    import concurrent.futures  # noqa: PLC0415
    counts, failed, bodies = {}, [0], []
    lock = threading.Lock()

    def one(_):
        try:
            with socket.create_connection((host, port), timeout=5) as c:
                c.sendall(b"GET / HTTP/1.1\r\nHost: %s\r\nConnection: close\r\n\r\n" % host.encode())
                data = b""
                while True:
                    d = c.recv(65536)
                    if not d:
                        break
                    data += d
            body = data.split(b"\r\n\r\n", 1)[1].decode().strip()
            with lock:
                counts[body.split()[0]] = counts.get(body.split()[0], 0) + 1
                bodies.append(body)
        except (OSError, IndexError):
            with lock:
                failed[0] += 1

    with concurrent.futures.ThreadPoolExecutor(par) as ex:
        list(ex.map(one, range(n)))
    print(json.dumps({"counts": counts, "failed": failed[0], "bodies": bodies[:20]}))
    return 0


def bye(port):
    srv = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    srv.bind(("0.0.0.0", port))
    srv.listen(64)
    while True:
        c, _ = srv.accept()
        c.sendall(b"bye")
        c.close()


def tw_reuse(iface, host, port, n):
    import random  # noqa: PLC0415
    from scapy.all import IP, TCP, AsyncSniffer, conf, send  # noqa: PLC0415
    conf.verb = 0
    out = {"accepted": 0, "challenged": 0, "reconnected": 0, "unanswered": 0}

    # The server's answer to a SYN from sport: "synack", "ack" or None. Sniffed rather than
    # matched by sr1, which takes an ACK whose ack is not our ISN + 1 for no answer.
    def syn(sport, isn):
        ready = threading.Event()
        sn = AsyncSniffer(iface=iface, count=1, timeout=2, started_callback=ready.set,
                          filter=f"tcp and src host {host} and src port {port} and dst port {sport}")
        sn.start()
        ready.wait(2)
        send(IP(dst=host) / TCP(sport=sport, dport=port, flags="S", seq=isn, window=1024))
        sn.join()
        if not sn.results:
            return None
        flags = int(sn.results[0][TCP].flags)
        return "synack" if flags & 0x12 == 0x12 else "ack" if flags & 0x10 else None

    # Ports below the ephemeral range (32768 up): an earlier test's connection from this host
    # may still hold one of those in TIME_WAIT, and that blocks bind() here.
    for sport in range(21000, 21000 + n):
        c = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        c.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        c.bind(("0.0.0.0", sport))
        c.settimeout(5)
        c.connect((host, port))
        while c.recv(100):
            pass
        c.close()
        time.sleep(0.05)  # the server's last ACK; it is in TIME_WAIT on this tuple now
        isn = random.getrandbits(32)
        first = syn(sport, isn)  # this host's kernel resets whatever answers (no socket)
        if first == "synack":
            out["accepted"] += 1
        elif first == "ack":
            out["challenged"] += 1
            time.sleep(0.3)
            if syn(sport, isn) == "synack":
                out["reconnected"] += 1
            else:
                out["unanswered"] += 1
        else:
            out["unanswered"] += 1
    print(json.dumps(out))
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
    if cmd == "syn-flood":
        return syn_flood(argv[2], argv[3], int(argv[4]), int(argv[5]))
    if cmd == "whoami":
        return whoami(int(argv[2]), argv[3] if len(argv) > 3 else "server")
    if cmd == "udp-reflect":
        return udp_reflect(argv[2], int(argv[3]) if len(argv) > 3 else 0)
    if cmd == "http-spread":
        return http_spread(argv[2], int(argv[3]), int(argv[4]), int(argv[5]) if len(argv) > 5 else 8)
    if cmd == "bye":
        return bye(int(argv[2]))
    if cmd == "tw-reuse":
        return tw_reuse(argv[2], argv[3], int(argv[4]), int(argv[5]))
    if cmd == "udp-probe":
        return udp_probe(int(argv[2]), float(argv[3]), argv[4:])
    print(__doc__)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv))
