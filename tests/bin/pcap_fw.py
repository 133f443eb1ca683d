#!/usr/bin/python3
# SPDX-License-Identifier: Apache-2.0
"""Packets and expectations for tests/bin/test_pcap_firewall.sh (scapy; Debian's python3).

  gen DIR                 writes, for both phases, the input pcaps, the expected output pcaps
                          and DIR/<phase>.json (per packet: ingress port, expected fate)
      files phase:  files_in0.pcap / files_in1.pcap, read by net_pcap rx_pcap; every flow
                    enters on one port only, so the result does not depend on the order in
                    which the two ports' files are read.
      conv phase:   conv.pcap, one TCP conversation (handshake, data both ways, FIN teardown,
                    correct seq/ack) interleaved with attacks; replayed packet by packet in
                    lock-step onto the veth behind each port's rx_iface_in.
  replay DIR IF0 IF1 API  sends conv.pcap in order, packet i on IF<port i>, and waits after
                          each one until batond's workers counted it (GET API/v1/workers)
  compare EXPECTED ACTUAL  byte-for-byte, packet by packet; exit 1 with the differences
"""
import json
import os
import socket
import sys
import time
import urllib.request

CLI_MAC, SRV_MAC = "02:00:00:88:00:01", "02:00:00:88:00:10"
CLI, SRV = "10.88.0.1", "10.88.0.10"
OUT_HOST, OUT_HOST_MAC = "10.88.0.99", "02:00:00:88:00:99"


def scapy():
    from scapy import all as s  # noqa: PLC0415
    s.conf.verb = 0
    return s


def gen(d):
    s = scapy()
    Ether, IP, TCP, UDP, ICMP, Raw = s.Ether, s.IP, s.TCP, s.UDP, s.ICMP, s.Raw

    def c2s(**kw):
        return Ether(src=CLI_MAC, dst=SRV_MAC) / IP(src=CLI, dst=SRV, id=kw.pop("id", 1)) / TCP(**kw)

    def s2c(**kw):
        return Ether(src=SRV_MAC, dst=CLI_MAC) / IP(src=SRV, dst=CLI, id=kw.pop("id", 1)) / TCP(**kw)

    def finish(p):
        return p.__class__(bytes(p))  # computes lengths and checksums now

    opts = [("MSS", 1460), ("SAckOK", b""), ("WScale", 7)]
    cs, ss = 1000, 5000  # client and server ISNs
    cp, sp = 40000, 80
    req, resp = b"GET / HTTP/1.1\r\n" + b"x" * 84, b"HTTP/1.1 200 OK\r\n" + b"y" * 183
    far = cs + 1 + len(req) + (1 << 30)
    conv = []  # (port, packet, fate, note)

    def add(port, p, fate, note):
        conv.append((port, finish(p), fate, note))

    add(0, c2s(sport=cp, dport=sp, flags="S", seq=cs, window=64240, options=opts), "fwd", "SYN")
    add(1, s2c(sport=sp, dport=cp, flags="SA", seq=ss, ack=cs + 1, window=65160, options=opts), "fwd", "SYN-ACK")
    add(0, c2s(sport=cp, dport=sp, flags="A", seq=cs + 1, ack=ss + 1, window=502), "fwd", "ACK")
    add(0, c2s(sport=cp + 1, dport=sp, flags="A", seq=777777, ack=888888, window=502) / Raw(b"midstream"),
        "no_connection", "mid-stream ACK of an unknown flow")
    add(0, c2s(sport=cp, dport=sp, flags="PA", seq=cs + 1, ack=ss + 1, window=502) / Raw(req), "fwd", "request")
    add(1, s2c(sport=sp, dport=cp, flags="A", seq=ss + 1, ack=cs + 1 + len(req), window=509), "fwd", "ACK of request")
    add(1, s2c(sport=sp, dport=cp, flags="PA", seq=ss + 1, ack=cs + 1 + len(req), window=509) / Raw(resp),
        "fwd", "response")
    c_nxt, s_nxt = cs + 1 + len(req), ss + 1 + len(resp)
    add(0, c2s(sport=cp, dport=sp, flags="PA", seq=far, ack=s_nxt, window=502) / Raw(b"FORGED"),
        "tcp_out_of_window", "out-of-window segment")
    add(0, c2s(sport=cp, dport=sp, flags="R", seq=far, window=0), "tcp_bad_rst", "RST with a wrong seq")
    add(1, s2c(sport=sp, dport=cp, flags="R", seq=s_nxt + 100000, window=0), "tcp_bad_rst",
        "RST with a wrong seq from the inside")
    add(0, c2s(sport=cp, dport=sp, flags="A", seq=c_nxt, ack=s_nxt, window=502), "fwd", "ACK of response")
    add(0, c2s(sport=cp + 2, dport=22, flags="S", seq=4242, window=64240, options=opts), "acl_deny",
        "SYN to a port the ACL denies")
    full = bytes(finish(c2s(sport=cp, dport=sp, flags="PA", seq=c_nxt, ack=s_nxt, window=502) / Raw(b"z" * 40)))
    conv.append((0, Ether(full[:14 + 20 + 10]), "truncated", "truncated packet (cut in the TCP header)"))
    bad = bytearray(full)
    bad[14 + 10] ^= 0x5A  # IPv4 header checksum
    conv.append((0, Ether(bytes(bad)), "bad_ip_checksum", "in-window data with a bad IP checksum"))
    add(0, c2s(sport=cp, dport=sp, flags="FA", seq=c_nxt, ack=s_nxt, window=502), "fwd", "client FIN")
    add(1, s2c(sport=sp, dport=cp, flags="FA", seq=s_nxt, ack=c_nxt + 1, window=509), "fwd", "server FIN")
    add(0, c2s(sport=cp, dport=sp, flags="A", seq=c_nxt + 1, ack=s_nxt + 1, window=502), "fwd", "last ACK")
    add(0, c2s(sport=cp, dport=sp + 1, flags="S", seq=99, window=64240, options=opts), "acl_deny",
        "SYN to port 81 (not permitted)")
    write_phase(s, d, "conv", conv)

    # Files phase: flows that never cross ports, so each output is deterministic.
    files = []
    for i in range(4):
        files.append((0, finish(c2s(sport=41000 + i, dport=80, flags="S", seq=100 * i, window=64240, options=opts)),
                      "fwd", "permitted SYN %d" % i))
    files.append((0, finish(c2s(sport=41100, dport=22, flags="S", seq=1, window=64240)), "acl_deny", "SYN to 22"))
    files.append((0, finish(c2s(sport=41101, dport=80, flags="A", seq=5, ack=6, window=502)), "no_connection",
                  "mid-stream ACK"))
    for i in range(3):  # three datagrams of one new flow, read in one burst
        files.append((0, finish(Ether(src=CLI_MAC, dst=SRV_MAC) / IP(src=CLI, dst=SRV, id=i)
                                / UDP(sport=5000, dport=9999) / Raw(b"u" * 20)), "fwd", "permitted UDP %d" % i))
    files.append((0, finish(Ether(src=CLI_MAC, dst=SRV_MAC) / IP(src=CLI, dst=SRV) / UDP(sport=5000, dport=9998)
                            / Raw(b"u" * 20)), "acl_deny", "UDP to a closed port"))
    files.append((0, finish(Ether(src=CLI_MAC, dst=SRV_MAC) / IP(src=CLI, dst=SRV) / ICMP(type=8, id=7, seq=1)),
                  "fwd", "echo request"))
    files.append((0, Ether(full[:14 + 16]), "truncated", "truncated IPv4 header"))
    files.append((0, Ether(bytes(bad)), "bad_ip_checksum", "bad IP checksum"))
    # Inside: the VM opens a connection outward (inside permits), plus garbage.
    files.append((1, finish(Ether(src=SRV_MAC, dst=OUT_HOST_MAC) / IP(src=SRV, dst=OUT_HOST)
                            / TCP(sport=33000, dport=443, flags="S", seq=7, window=64240, options=opts)),
                  "fwd", "outbound SYN"))
    files.append((1, finish(Ether(src=SRV_MAC, dst=OUT_HOST_MAC) / IP(src=SRV, dst=OUT_HOST)
                            / TCP(sport=33001, dport=443, flags="PA", seq=7, ack=9, window=502) / Raw(b"q")),
                  "no_connection", "outbound mid-stream"))
    files.append((1, finish(Ether(src=SRV_MAC, dst=OUT_HOST_MAC) / IP(src=SRV, dst=OUT_HOST)
                            / UDP(sport=33002, dport=53) / Raw(b"dns?")), "fwd", "outbound UDP"))
    write_phase(s, d, "files", files)
    return 0


def write_phase(s, d, name, pkts):
    meta = []
    ins = {0: [], 1: []}
    outs = {0: [], 1: []}
    for port, p, fate, note in pkts:
        ins[port].append(p)
        if fate == "fwd":
            outs[1 - port].append(p)
        meta.append({"port": port, "fate": fate, "note": note, "len": len(bytes(p))})
    if name == "conv":
        s.wrpcap(os.path.join(d, "conv.pcap"), [p for _, p, _, _ in pkts])
    else:
        for port in (0, 1):
            s.wrpcap(os.path.join(d, "%s_in%d.pcap" % (name, port)), ins[port])
    for port in (0, 1):
        s.wrpcap(os.path.join(d, "%s_expect%d.pcap" % (name, port)), outs[port])
    drops = {}
    for m in meta:
        if m["fate"] != "fwd":
            drops[m["fate"]] = drops.get(m["fate"], 0) + 1
    with open(os.path.join(d, name + ".json"), "w") as f:
        json.dump({"packets": meta, "drops": drops, "forwarded": [len(outs[0]), len(outs[1])],
                   "received": [len(ins[0]), len(ins[1])]}, f, indent=1)


def worker_rx(api):
    with urllib.request.urlopen("http://%s/v1/workers" % api, timeout=2) as r:
        return sum(w["rx_packets"] for w in json.load(r))


def replay(d, if0, if1, api):
    s = scapy()
    pkts = s.rdpcap(os.path.join(d, "conv.pcap"))
    with open(os.path.join(d, "conv.json")) as f:
        meta = json.load(f)["packets"]
    socks = {}
    for port, ifn in ((0, if0), (1, if1)):
        sk = socket.socket(socket.AF_PACKET, socket.SOCK_RAW)
        sk.bind((ifn, 0))
        socks[port] = sk
    base = worker_rx(api)
    for i, (p, m) in enumerate(zip(pkts, meta)):
        socks[m["port"]].send(bytes(p))
        deadline = time.time() + 5
        while worker_rx(api) < base + i + 1:
            if time.time() > deadline:
                print("replay: packet %d (%s) not counted by batond within 5 s" % (i, m["note"]))
                return 1
            time.sleep(0.01)
        got = worker_rx(api)
        if got != base + i + 1:
            print("replay: batond counted %d packets after packet %d, expected %d (stray traffic?)"
                  % (got - base, i, i + 1))
            return 1
    print("replay: %d packets sent and counted in order" % len(pkts))
    return 0


def compare(expected, actual):
    s = scapy()
    exp = [bytes(p) for p in s.rdpcap(expected)]
    act = [bytes(p) for p in s.rdpcap(actual)] if os.path.getsize(actual) > 24 else []
    bad = 0
    for i in range(max(len(exp), len(act))):
        e = exp[i] if i < len(exp) else None
        a = act[i] if i < len(act) else None
        if e != a:
            bad += 1
            show = lambda b: "-" if b is None else s.Ether(b).summary() + " (%d bytes)" % len(b)  # noqa: E731
            print("  packet %d differs: expected %s, got %s" % (i, show(e), show(a)))
    print("compare %s: %d expected, %d written, %d differ" % (os.path.basename(actual), len(exp), len(act), bad))
    return 1 if bad else 0


def main(argv):
    if len(argv) >= 2 and argv[1] == "gen":
        return gen(argv[2])
    if len(argv) >= 2 and argv[1] == "replay":
        return replay(*argv[2:6])
    if len(argv) >= 2 and argv[1] == "compare":
        return compare(argv[2], argv[3])
    print(__doc__)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv))
