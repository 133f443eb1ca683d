// SPDX-License-Identifier: Apache-2.0
//
// baton-xlate-bench: NAT and load-balancer figures of docs/PERFORMANCE.md, printed as one JSON
// object (metric -> number); scripts/bench.sh runs each group in its own process.
//
//   baton-xlate-bench [-m MB] GROUP...   GROUP: l3fw1m nat1m lb1m lbl71m natlbnew l7new
//
// Theory of operation, as baton-bench's: Dataplane::create(cfg, with_ports = false) in mode l3,
// Worker::process_burst timed with rte_rdtsc, a TxSink counting what leaves. Unlike the
// firewall's frames, translated frames are rewritten in place (addresses, ports, TTL, MACs), so
// each pass first restores every frame from its original bytes, outside the timed region.
// Established flows are made by real handshakes through the pipeline (a translated connection
// needs its mapping, reply key and translation record, which only the pipeline makes), then
// the timed stream is pure ACKs of flows drawn at random from all of them, both directions.
//
//   l3fw1m    1M untranslated flows, mode l3 (the baseline for the two below)
//   nat1m     1M SNAT flows (1M inside hosts, 256 pool addresses, 8-port blocks)
//   lb1m      1M flows to one VIP, mode nat, 16 backends
//   natlbnew  whole connections (SYN .. last ACK, then removal by aging) through a full-NAT
//             VIP: firewall + NAT (source) + L4 LB (destination) per connection
//   l7new     whole L7 spliced connections (cookie handshake, request head, backend handshake,
//             replay, response, FIN both ways, removal by aging) through the L7 service of
//             tests/pipeline/l7_pipeline_test.cc (tests/pipeline/l7_topology.h)
#include <rte_cycles.h>
#include <rte_eal.h>
#include <rte_mbuf.h>
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <cstring>
#include <functional>
#include <map>
#include <memory>
#include <random>
#include <string>
#include <vector>

#include "config/config.h"
#include "dataplane/dataplane.h"
#include "dataplane/parser.h"
#include "pktgen/packet_builder.h"
#include "tests/pipeline/l7_topology.h"

namespace baton {
namespace {

using pktgen::Bytes;
using pktgen::Pkt;
using namespace tcpflag;

constexpr uint16_t kOut = 0, kIn = 1;
constexpr uint32_t kBurst = 32;
constexpr uint32_t kCliIsn = 1000, kSrvIsn = 5000;
const char* kOutMac = "02:ba:70:00:00:01";  // port MACs without ports (dataplane.cc)
const char* kInMac = "02:ba:70:00:00:02";
const char* kNhOut = "02:00:00:00:0a:01";  // next hops' MACs
const char* kNhIn = "02:00:00:00:0a:02";

std::map<std::string, double> g_results;
// --huge: EAL memory from hugepages (bench.sh reserves them), as in production; every key is
// recorded with the suffix "_huge".
bool g_huge = false;

void put(const std::string& k, double v) {
  const std::string key = k + (g_huge ? "_huge" : "");
  g_results[key] = v;
  std::fprintf(stderr, "  %s = %.3f\n", key.c_str(), v);
}

// Clients (10.0.0.0/8) sit behind next hop 172.16.0.2 on the inside port, servers and backends
// (11.0.0.0/8, 12.0.0.0/8) behind 203.0.113.2 on the outside port: one neighbour each way.
std::string config_yaml(const std::string& instance, uint32_t capacity, const std::string& extra) {
  return "instance: " + instance +
         "\nmode: l3\nworkers: 1\n"
         "ports:\n"
         "  - {name: outside, device: null0, zone: outside}\n"
         "  - {name: inside, device: null1, zone: inside}\n"
         "zones:\n"
         "  - {name: outside, default: permit}\n"
         "  - {name: inside, default: permit}\n"
         "conntrack:\n  capacity: " + std::to_string(capacity) +
         "\nmigration:\n  enabled: false\n"
         "l3:\n"
         "  addresses:\n"
         "    - {port: outside, address: 203.0.113.1/24}\n"
         "    - {port: inside, address: 172.16.0.1/24}\n"
         "  routes:\n"
         "    - {prefix: 10.0.0.0/8, via: 172.16.0.2, port: inside}\n"
         "    - {prefix: 11.0.0.0/8, via: 203.0.113.2, port: outside}\n"
         "    - {prefix: 12.0.0.0/8, via: 203.0.113.2, port: outside}\n" +
         extra;
}

std::string uniq(const char* b) {
  static int n = 0;
  return std::string(b) + std::to_string(n++);
}

std::unique_ptr<Dataplane> make_dp(const std::string& yaml) {
  ConfigError cerr;
  auto cfg = parse_config(yaml, "xlate-bench.yaml", &cerr);
  if (!cfg) {
    std::fprintf(stderr, "config: %s\n", cerr.to_string().c_str());
    std::exit(1);
  }
  std::string err;
  auto dp = Dataplane::create(*cfg, false, &err);
  if (!dp) {
    std::fprintf(stderr, "dataplane: %s\n", err.c_str());
    std::exit(1);
  }
  return dp;
}

// n mbufs of `room` bytes each (after the headroom).
rte_mempool* bench_pool(uint32_t n, uint16_t room = 128) {
  rte_mempool* p = rte_pktmbuf_pool_create(uniq("xpool").c_str(), n, 0, 0,
                                           RTE_PKTMBUF_HEADROOM + room, SOCKET_ID_ANY);
  if (!p) {
    std::fprintf(stderr, "cannot create a pool of %u mbufs\n", n);
    std::exit(1);
  }
  return p;
}

void load(rte_mbuf* m, const Bytes& b, uint16_t port) {
  rte_pktmbuf_reset(m);
  char* d = rte_pktmbuf_append(m, static_cast<uint16_t>(b.size()));
  if (!d) {
    std::fprintf(stderr, "a %zu-byte frame does not fit in the bench's mbufs\n", b.size());
    std::exit(1);
  }
  std::memcpy(d, b.data(), b.size());
  m->port = port;
}

// Counts what leaves and keeps the mbufs (they are reloaded each pass).
struct CountSink {
  TxSink sink{&CountSink::on_tx, this};
  uint64_t n = 0;
  std::vector<uint8_t> last;  // copy of the last frame, for the warm-up checks
  static void on_tx(void* ctx, uint16_t, rte_mbuf** p, uint32_t k) {
    auto* c = static_cast<CountSink*>(ctx);
    c->n += k;
    if (k) c->last.assign(rte_pktmbuf_mtod(p[k - 1], uint8_t*), rte_pktmbuf_mtod(p[k - 1], uint8_t*) + p[k - 1]->data_len);
  }
};

// Frees what leaves, counting it, and keeps a copy of each frame when `out` is set.
struct KeepSink {
  TxSink sink{&KeepSink::on_tx, this};
  std::vector<std::vector<uint8_t>>* out = nullptr;
  uint64_t n = 0;
  static void on_tx(void* ctx, uint16_t, rte_mbuf** p, uint32_t k) {
    auto* c = static_cast<KeepSink*>(ctx);
    for (uint32_t j = 0; j < k; j++) {
      if (c->out) c->out->emplace_back(rte_pktmbuf_mtod(p[j], uint8_t*), rte_pktmbuf_mtod(p[j], uint8_t*) + p[j]->data_len);
      rte_pktmbuf_free(p[j]);
    }
    c->n += k;
  }
};

void print_drops(const Worker& w) {
  for (int r = 0; r < kDropReasonCount; r++)
    if (w.stats().drops[r]) std::fprintf(stderr, "  %s %lu\n", drop_reason_name(static_cast<DropReason>(r)), w.stats().drops[r]);
}

// One burst of `frames` arriving on `port` (loaded into mbufs of `pool` outside the timed
// region): the cycles of process_burst + flush_tx are added to *cycles, the frames that left are
// appended to *out if it is set. Exits unless exactly `expect` frames left.
void timed_burst(Worker& w, rte_mempool* pool, const std::vector<Bytes>& frames, uint16_t port,
                 uint64_t expect, uint64_t* cycles, std::vector<std::vector<uint8_t>>* out,
                 const char* what) {
  std::vector<rte_mbuf*> m(frames.size());
  for (size_t i = 0; i < frames.size(); i++) {
    m[i] = rte_pktmbuf_alloc(pool);
    if (!m[i]) {
      std::fprintf(stderr, "%s: mbuf pool empty\n", what);
      std::exit(1);
    }
    load(m[i], frames[i], port);
    m[i]->ol_flags = RTE_MBUF_F_RX_IP_CKSUM_GOOD;  // the NIC's verdict, as in pass()
  }
  KeepSink keep;
  keep.out = out;
  w.set_tx_sink(&keep.sink);
  const uint64_t t0 = rte_rdtsc();
  w.process_burst(m.data(), static_cast<uint32_t>(m.size()));
  w.flush_tx();
  *cycles += rte_rdtsc() - t0;
  w.set_tx_sink(nullptr);
  if (keep.n != expect) {
    std::fprintf(stderr, "%s: %lu frames left for %zu in, %lu expected\n", what, keep.n, frames.size(), expect);
    print_drops(w);
    std::exit(1);
  }
}

// The frames of one benchmark: original bytes and the mbufs they are loaded into.
struct Stream {
  std::vector<Bytes> frames;
  std::vector<uint16_t> ports;
  std::vector<rte_mbuf*> mbufs;
};

// Processes every frame of s once, in bursts; returns cycles per packet of the processing only.
// All frames must be forwarded. Two ways to feed the worker:
// * as a NIC does (`ring` given; the figures): each burst is written into a recycled ring of
//   1,024 mbufs just before the poll, with the NIC's IPv4 checksum verdict (ports.cc enables
//   RTE_ETH_RX_OFFLOAD_IPV4_CKSUM), so mbuf headers are warm and the frame's lines just written,
//   as a driver's recycled descriptors and a DMA into the last-level cache leave them. The same
//   method as baton-bench's fw figures;
// * cold (`ring` null; the `_cold_mbufs` keys): 262,144 distinct mbufs all loaded before the
//   timed loop, cold in DRAM by the time each is polled, checksums in software.
double pass(Worker& w, Stream& s, rte_mempool* ring = nullptr) {
  constexpr uint32_t kRing = 1024;
  rte_mbuf* rx[kRing];
  if (ring && rte_pktmbuf_alloc_bulk(ring, rx, kRing) != 0) {
    std::fprintf(stderr, "cannot allocate the receive ring\n");
    std::exit(1);
  }
  if (!ring)
    for (size_t i = 0; i < s.frames.size(); i++) load(s.mbufs[i], s.frames[i], s.ports[i]);
  CountSink cs;
  w.set_tx_sink(&cs.sink);
  const uint64_t drops0 = w.stats().dropped;
  uint64_t cycles = 0;
  for (size_t i = 0, at = 0; i < s.frames.size(); i += kBurst, at = (at + kBurst) % kRing) {
    const uint32_t n = static_cast<uint32_t>(std::min<size_t>(kBurst, s.frames.size() - i));
    rte_mbuf** burst = ring ? &rx[at] : &s.mbufs[i];
    if (ring)
      for (uint32_t k = 0; k < n; k++) {
        load(burst[k], s.frames[i + k], s.ports[i + k]);
        burst[k]->ol_flags = RTE_MBUF_F_RX_IP_CKSUM_GOOD;
      }
    const uint64_t t0 = rte_rdtsc();
    w.process_burst(burst, n);
    w.flush_tx();
    cycles += rte_rdtsc() - t0;
  }
  w.set_tx_sink(nullptr);
  if (ring) rte_pktmbuf_free_bulk(rx, kRing);
  if (w.stats().dropped != drops0 || cs.n != s.frames.size()) {
    std::fprintf(stderr, "benchmark packets were dropped (%lu of %zu forwarded)\n", cs.n, s.frames.size());
    print_drops(w);
    std::exit(1);
  }
  return static_cast<double>(cycles) / static_cast<double>(s.frames.size());
}

double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v[v.size() / 2];
}

// Teaches the router both next hops (an ARP request for our address from each).
void learn_neighbours(Dataplane& dp, Worker& w, rte_mempool* pool) {
  Stream s;
  s.frames = {Pkt().eth(kNhIn, "ff:ff:ff:ff:ff:ff").arp(1, kNhIn, "172.16.0.2", "172.16.0.1").build(),
              Pkt().eth(kNhOut, "ff:ff:ff:ff:ff:ff").arp(1, kNhOut, "203.0.113.2", "203.0.113.1").build()};
  s.ports = {kIn, kOut};
  for (size_t i = 0; i < 2; i++) {
    rte_mbuf* m = rte_pktmbuf_alloc(pool);
    load(m, s.frames[i], s.ports[i]);
    CountSink cs;
    w.set_tx_sink(&cs.sink);
    w.process_burst(&m, 1);
    w.flush_tx();
    w.set_tx_sink(nullptr);
    if (cs.n) rte_pktmbuf_free(m);  // the ARP reply left; nothing else is kept
  }
  (void)dp;
}

// Client i: 10.x.y.z:40000 (one client host per flow).
std::string client(uint32_t i) {
  char c[32];
  std::snprintf(c, sizeof c, "10.%u.%u.%u", (i >> 16) & 255, (i >> 8) & 255, i & 255);
  return c;
}

// A TCP segment as it arrives on `port` (our MAC as destination).
Bytes seg(uint16_t port, const std::string& src, uint16_t sport, const std::string& dst,
          uint16_t dport, uint32_t seq, uint32_t ack, uint8_t fl) {
  const char* from = port == kIn ? kNhIn : kNhOut;
  const char* to = port == kIn ? kInMac : kOutMac;
  return Pkt().eth(from, to).ipv4(src, dst).tcp(sport, dport).seq(seq).ack(ack).flags(fl).win(65535).pad_to(60).build();
}

// What the server side of flow i answers to: its address and port as the server sees them,
// read from the frame the pipeline sent out (the translation's choice).
struct Seen {
  std::string addr;
  uint16_t port;
};
Seen seen_source(const std::vector<uint8_t>& f) {
  char a[32];
  std::snprintf(a, sizeof a, "%u.%u.%u.%u", f[26], f[27], f[28], f[29]);
  return {a, static_cast<uint16_t>(f[34] << 8 | f[35])};
}
Seen seen_dest(const std::vector<uint8_t>& f) {
  char a[32];
  std::snprintf(a, sizeof a, "%u.%u.%u.%u", f[30], f[31], f[32], f[33]);
  return {a, static_cast<uint16_t>(f[36] << 8 | f[37])};
}

// Runs one frame and returns the frame that left (exits if it was dropped).
std::vector<uint8_t> one(Worker& w, rte_mempool* pool, const Bytes& b, uint16_t port) {
  rte_mbuf* m = rte_pktmbuf_alloc(pool);
  load(m, b, port);
  CountSink cs;
  w.set_tx_sink(&cs.sink);
  w.process_burst(&m, 1);
  w.flush_tx();
  w.set_tx_sink(nullptr);
  if (cs.n != 1) {
    std::fprintf(stderr, "setup frame dropped\n");
    print_drops(w);
    std::exit(1);
  }
  rte_pktmbuf_free(m);
  return cs.last;
}

// Establishes n flows from clients to (dst, dport) through the pipeline and returns, per flow,
// the endpoints its server side sees: (server addr:port, client as seen).
struct FlowView {
  std::string cli;
  Seen srv, cli_seen;
};
std::vector<FlowView> establish(Worker& w, rte_mempool* pool, uint32_t n,
                                const std::function<std::string(uint32_t)>& dst, uint16_t dport) {
  std::vector<FlowView> v(n);
  for (uint32_t i = 0; i < n; i++) {
    v[i].cli = client(i);
    auto out = one(w, pool, seg(kIn, v[i].cli, 40000, dst(i), dport, kCliIsn, 0, kSyn), kIn);
    v[i].cli_seen = seen_source(out);
    v[i].srv = seen_dest(out);
    one(w, pool, seg(kOut, v[i].srv.addr, v[i].srv.port, v[i].cli_seen.addr, v[i].cli_seen.port, kSrvIsn, kCliIsn + 1, kSyn | kAck), kOut);
    one(w, pool, seg(kIn, v[i].cli, 40000, dst(i), dport, kCliIsn + 1, kSrvIsn + 1, kAck), kIn);
    if (i && i % 262144 == 0) std::fprintf(stderr, "  %u flows\n", i);
  }
  return v;
}

// 262144 pure ACKs of random flows, both directions, as they arrive.
Stream ack_stream(const std::vector<FlowView>& v, rte_mempool* pool,
                  const std::function<std::string(uint32_t)>& dst, uint16_t dport) {
  Stream s;
  std::mt19937_64 rng(7);
  for (uint32_t k = 0; k < 262144; k++) {
    const uint32_t i = static_cast<uint32_t>(rng() % v.size());
    if (k & 1) {
      s.frames.push_back(seg(kOut, v[i].srv.addr, v[i].srv.port, v[i].cli_seen.addr, v[i].cli_seen.port, kSrvIsn + 1, kCliIsn + 1, kAck));
      s.ports.push_back(kOut);
    } else {
      s.frames.push_back(seg(kIn, v[i].cli, 40000, dst(i), dport, kCliIsn + 1, kSrvIsn + 1, kAck));
      s.ports.push_back(kIn);
    }
    rte_mbuf* m = rte_pktmbuf_alloc(pool);
    if (!m) {
      std::fprintf(stderr, "mbuf pool empty\n");
      std::exit(1);
    }
    s.mbufs.push_back(m);
  }
  return s;
}

void bench_steady(const char* what, const std::string& extra, uint32_t n,
                  const std::function<std::string(uint32_t)>& dst, uint16_t dport,
                  const std::string& key) {
  std::fprintf(stderr, "%s: %u flows\n", what, n);
  auto dp = make_dp(config_yaml(uniq(what), n + n / 8, extra));
  Worker& w = *dp->workers()[0];
  w.set_now(1);
  rte_mempool* pool = bench_pool(300000);
  learn_neighbours(*dp, w, pool);
  auto flows = establish(w, pool, n, dst, dport);
  Stream s = ack_stream(flows, pool, dst, dport);
  rte_mempool* ring = bench_pool(2048);
  pass(w, s, ring);  // warm-up
  std::vector<double> nic, cold;
  // BATON_BENCH_ROUNDS: more rounds than the figures need, for a profiler to sample.
  const int rounds = getenv("BATON_BENCH_ROUNDS") ? atoi(getenv("BATON_BENCH_ROUNDS")) : 5;
  for (int r = 0; r < rounds; r++) {  // alternating, so that both see the same machine
    nic.push_back(pass(w, s, ring));
    cold.push_back(pass(w, s));
  }
  put(key, median(nic));
  put(key + "_cold_mbufs", median(cold));
  rte_pktmbuf_free_bulk(s.mbufs.data(), static_cast<unsigned>(s.mbufs.size()));
  rte_mempool_free(ring);
  rte_mempool_free(pool);
}

std::string server(uint32_t i) { return "11.0.0." + std::to_string(1 + i % 4); }
std::string vip(uint32_t) { return "11.0.0.100"; }

const char* kSnat =
    "nat:\n"
    "  capacity: 1200000\n"
    "  snat:\n"
    "    - {name: bench, source: 10.0.0.0/8, pool: [198.18.0.0/24], ports: 1024-65535, block_size: 8, max_blocks_per_host: 1}\n";

std::string lb_yaml(const char* mode, int backends) {
  std::string y = "lb:\n  pools:\n    - name: web\n      backends:\n";
  for (int b = 0; b < backends; b++)
    y += "        - {address: 12.0.0." + std::to_string(b + 1) + ", port: 8080}\n";
  y += std::string("  services:\n    - {name: web, vip: 11.0.0.100, port: 80, proto: tcp, mode: ") + mode +
       ", pool: web" + (std::string(mode) == "fullnat" ? ", local_addresses: [198.18.1.1, 198.18.1.2, 198.18.1.3, 198.18.1.4]" : "") + "}\n";
  return y;
}

const char* kL7Service =
    "    - {name: site, vip: 11.0.0.101, port: 80, proto: tcp, mode: l7, pool: web,"
    " local_addresses: [198.18.2.1], max_request_head: 8192}\n";

// Whole connections through a full-NAT VIP: SYN, SYN|ACK, ACK, FIN|ACK, FIN|ACK, ACK, in bursts
// of 32 connections per phase, then the TIME_WAIT entries removed by aging (the same expire the
// worker runs). The backend's frames must carry what the pipeline chose (local address and
// port, backend), so each burst's phases are built from the frames its SYNs produced.
void bench_natlbnew() {
  constexpr uint32_t kConns = 131072;
  std::fprintf(stderr, "natlbnew: %u connections\n", kConns);
  auto dp = make_dp(config_yaml(uniq("nl"), kConns + 4096, lb_yaml("fullnat", 16)));
  Worker& w = *dp->workers()[0];
  w.set_now(1);
  rte_mempool* pool = bench_pool(4 * kBurst * 6 + 1024);
  learn_neighbours(*dp, w, pool);
  uint64_t cycles = 0;
  auto run = [&](const std::vector<Bytes>& frames, uint16_t port, std::vector<std::vector<uint8_t>>* out) {
    timed_burst(w, pool, frames, port, kBurst, &cycles, out, "natlbnew");
  };
  const uint32_t c = kCliIsn, s = kSrvIsn;
  for (uint32_t b = 0; b < kConns; b += kBurst) {
    std::vector<Bytes> f(kBurst);
    std::vector<std::vector<uint8_t>> syn_out;
    for (uint32_t i = 0; i < kBurst; i++) f[i] = seg(kIn, client(b + i), 40000, "11.0.0.100", 80, c, 0, kSyn);
    run(f, kIn, &syn_out);
    std::vector<Seen> be(kBurst), loc(kBurst);
    for (uint32_t i = 0; i < kBurst; i++) {
      be[i] = seen_dest(syn_out[i]);
      loc[i] = seen_source(syn_out[i]);
    }
    auto back = [&](uint32_t seq, uint32_t ack, uint8_t fl) {
      for (uint32_t i = 0; i < kBurst; i++) f[i] = seg(kOut, be[i].addr, be[i].port, loc[i].addr, loc[i].port, seq, ack, fl);
      run(f, kOut, nullptr);
    };
    auto fwd = [&](uint32_t seq, uint32_t ack, uint8_t fl) {
      for (uint32_t i = 0; i < kBurst; i++) f[i] = seg(kIn, client(b + i), 40000, "11.0.0.100", 80, seq, ack, fl);
      run(f, kIn, nullptr);
    };
    back(s, c + 1, kSyn | kAck);
    fwd(c + 1, s + 1, kAck);
    fwd(c + 1, s + 1, kFin | kAck);
    back(s + 1, c + 2, kFin | kAck);
    fwd(c + 2, s + 2, kAck);
  }
  ConnTable& t = dp->shard(0);
  if (w.stats().conn_translated != kConns) {
    std::fprintf(stderr, "natlbnew: %lu translated\n", w.stats().conn_translated);
    std::exit(1);
  }
  const uint64_t t2 = rte_rdtsc();
  w.set_now(100000);  // everything is past TIME_WAIT: housekeeping ages it all out
  for (uint32_t guard = 0; t.size() > 0 && guard < kConns; guard++) w.housekeeping();
  const uint64_t t3 = rte_rdtsc();
  put("fw_nat_lb_new_conn_aging_left", t.size());
  const double secs = static_cast<double>(cycles + (t3 - t2)) / static_cast<double>(rte_get_tsc_hz());
  put("fw_nat_lb_new_conns_per_second", kConns / secs);
  put("fw_nat_lb_new_conn_cycles", static_cast<double>(cycles + (t3 - t2)) / kConns);
  rte_mempool_free(pool);
}

// Whole L7 spliced connections through the service of tests/pipeline/l7_topology.h (the one the
// L7 pipeline test checks byte for byte), in bursts of 32 connections per phase:
//   client SYN -> cookie SYN-ACK; client ACK (consumed); client GET head -> SYN to the backend;
//   backend SYN-ACK -> head replayed to it; backend response (ACKs the replay) -> client;
//   client FIN -> backend; backend FIN -> client; client's last ACK -> backend;
// then the TIME_WAIT entries removed by aging, as natlbnew. The bench plays the backend: its
// frames carry what the pipeline chose (backend, local port), read from the SYNs it sent, and
// the client's carry the cookie and TSval read from the SYN-ACKs. Clients are distinct hosts
// (198.18.0.0/15 behind the client's next hop) with varied source ports, as real clients.
void bench_l7new() {
  namespace t = l7topo;
  constexpr uint32_t kConns = 65536;
  const std::string head = "GET /index.html HTTP/1.1\r\nHost: www.example\r\nUser-Agent: bench\r\nAccept: */*\r\n\r\n";
  const std::string resp = "HTTP/1.1 204 No Content\r\nServer: bench\r\n\r\n";
  const uint32_t hl = static_cast<uint32_t>(head.size()), rl = static_cast<uint32_t>(resp.size());
  std::fprintf(stderr, "l7new: %u connections\n", kConns);
  auto dp = make_dp("instance: " + uniq("l7") + "\n" +
                    t::config_yaml(kConns + 4096, "    - {prefix: 198.18.0.0/15, via: 203.0.113.9, port: outside}\n"));
  Worker& w = *dp->workers()[0];
  w.set_now(100);
  rte_mempool* pool = bench_pool(4 * kBurst + 1024, 512);
  uint64_t arp_cycles = 0;  // neighbours, untimed
  timed_burst(w, pool, {t::arp_from_client()}, kOut, 1, &arp_cycles, nullptr, "l7new arp");
  for (int h = 0; h < t::kHosts; h++) timed_burst(w, pool, {t::arp_from_host(h)}, kIn, 1, &arp_cycles, nullptr, "l7new arp");

  uint64_t cycles = 0;
  std::vector<Bytes> f(kBurst);
  std::vector<std::vector<uint8_t>> out;
  auto parse = [](const std::vector<uint8_t>& frame) {
    PacketMeta pm;
    DropReason why;
    if (!parse_packet(frame.data(), static_cast<uint32_t>(frame.size()), &pm, &why)) {
      std::fprintf(stderr, "l7new: a frame batond sent does not parse\n");
      std::exit(1);
    }
    return pm;
  };
  std::vector<t::Client> c(kBurst);
  std::vector<uint16_t> lport(kBurst);
  std::vector<int> host(kBurst);
  std::vector<uint32_t> bisn(kBurst);
  constexpr uint32_t tb = 90000;  // the backends' TSval clock
  // One phase: frames made by `make(i)` for the burst's connections, `expect` frames out.
  auto phase = [&](uint16_t port, uint64_t expect, bool keep, const std::function<Bytes(uint32_t)>& make) {
    for (uint32_t i = 0; i < kBurst; i++) f[i] = make(i);
    out.clear();
    timed_burst(w, pool, f, port, expect, &cycles, keep ? &out : nullptr, "l7new");
  };
  auto from_backend = [&](uint32_t i) {
    return t::from_host(host[i]).ipv4(t::kHostIp[host[i]], t::kLocal).tcp(t::kBackendPort, lport[i]);
  };
  for (uint32_t b = 0; b < kConns; b += kBurst) {
    for (uint32_t i = 0; i < kBurst; i++) {
      const uint32_t k = b + i;
      char addr[32];
      std::snprintf(addr, sizeof addr, "198.%u.%u.%u", 18 + (k >> 16), (k >> 8) & 255, k & 255);
      c[i] = t::Client{};
      c[i].addr = addr;
      c[i].port = static_cast<uint16_t>(1024 + (k * 7919u) % 64000);
      c[i].isn = 0x10000000u + k * 65537u;
      bisn[i] = 0x70000000u + k * 131u;
    }
    phase(kOut, kBurst, true, [&](uint32_t i) { return c[i].syn().build(); });
    for (uint32_t i = 0; i < kBurst; i++) {
      const PacketMeta sa = parse(out[i]);
      if (sa.tcp.ack != c[i].isn + 1) {
        std::fprintf(stderr, "l7new: SYN-ACKs out of order\n");
        std::exit(1);
      }
      c[i].lb_isn = sa.tcp.seq;
      c[i].lb_tsval = sa.tcp.tsval;
      c[i].tsval++;
    }
    phase(kOut, 0, false, [&](uint32_t i) { return c[i].seg(0, 0, kAck).build(); });
    phase(kOut, kBurst, true, [&](uint32_t i) { return c[i].data(head, 0).build(); });
    for (uint32_t i = 0; i < kBurst; i++) {
      const PacketMeta syn = parse(out[i]);
      host[i] = t::host_of(syn.tuple.dst.to_string(Family::kV4));
      if (syn.tcp.seq != c[i].isn || host[i] < 0) {
        std::fprintf(stderr, "l7new: backend SYNs out of order or to an unknown host\n");
        std::exit(1);
      }
      lport[i] = syn.tuple.sport.host();
    }
    phase(kIn, kBurst, false, [&](uint32_t i) {  // -> the head replayed
      return from_backend(i).seq(bisn[i]).ack(c[i].isn + 1).flags(kSyn | kAck).win(65160).mss(1460)
          .sack_perm().ts(tb, c[i].tsval).wscale(7).build();
    });
    phase(kIn, kBurst, false, [&](uint32_t i) {  // the response, ACKing the replay
      return from_backend(i).seq(bisn[i] + 1).ack(c[i].isn + 1 + hl).flags(kAck | kPsh).win(502)
          .ts(tb + 1, c[i].tsval).payload(resp).build();
    });
    phase(kOut, kBurst, false, [&](uint32_t i) {
      c[i].tsval++;
      return c[i].seg(hl, rl, kFin | kAck).build();
    });
    phase(kIn, kBurst, false, [&](uint32_t i) {
      return from_backend(i).seq(bisn[i] + 1 + rl).ack(c[i].isn + 2 + hl).flags(kFin | kAck).win(502)
          .ts(tb + 2, c[i].tsval).build();
    });
    phase(kOut, kBurst, false, [&](uint32_t i) {
      c[i].tsval++;
      return c[i].seg(hl + 1, rl + 1, kAck).build();
    });
  }
  const WorkerStats& st = w.stats();
  if (st.l7_splices != kConns || st.conns[static_cast<int>(TcpState::kTimeWait)] != int64_t{kConns} ||
      w.l7()->pool_free() != w.l7()->pool_size()) {
    std::fprintf(stderr, "l7new: %lu spliced, %ld in TIME_WAIT, %u of %u head buffers free\n", st.l7_splices,
                 static_cast<long>(st.conns[static_cast<int>(TcpState::kTimeWait)]), w.l7()->pool_free(), w.l7()->pool_size());
    std::exit(1);
  }
  ConnTable& table = w.table();
  const uint64_t t2 = rte_rdtsc();
  w.set_now(100000);  // everything is past TIME_WAIT: housekeeping ages it all out
  for (uint32_t guard = 0; table.size() > 0 && guard < kConns; guard++) w.housekeeping();
  const uint64_t t3 = rte_rdtsc();
  put("l7_splice_aging_left", table.size());
  const uint64_t all = cycles + (t3 - t2);
  put("l7_splices_per_second", kConns / (static_cast<double>(all) / static_cast<double>(rte_get_tsc_hz())));
  put("l7_splice_cycles", static_cast<double>(all) / kConns);
  rte_mempool_free(pool);
}

}  // namespace
}  // namespace baton

int main(int argc, char** argv) {
  using namespace baton;
  std::string mem = "4096";
  std::vector<std::string> groups;
  for (int i = 1; i < argc; i++) {
    std::string a = argv[i];
    if (a == "-m" && i + 1 < argc)
      mem = argv[++i];
    else if (a == "--huge")
      g_huge = true;
    else
      groups.push_back(a);
  }
  std::vector<std::string> args = {"baton-xlate-bench", "-m", mem, "--no-pci", "-l", "0",
                                   "--file-prefix", "xbench_" + std::to_string(getpid()),
                                   "--log-level=error"};
  if (!g_huge) args.insert(args.begin() + 1, "--no-huge");
  std::vector<char*> eargv;
  for (auto& a : args) eargv.push_back(a.data());
  if (rte_eal_init(static_cast<int>(eargv.size()), eargv.data()) < 0) {
    std::fprintf(stderr, "rte_eal_init failed\n");
    return 1;
  }
  const uint32_t n = getenv("BATON_BENCH_FLOWS") ? static_cast<uint32_t>(atoi(getenv("BATON_BENCH_FLOWS"))) : 1u << 20;
  for (const std::string& g : groups) {
    if (g == "l3fw1m") bench_steady("l3fw", "", n, server, 80, "l3_fw_cycles_per_packet_1m");
    else if (g == "nat1m") bench_steady("nat", kSnat, n, server, 80, "nat_cycles_per_packet_1m");
    else if (g == "lb1m") bench_steady("lb", lb_yaml("nat", 16), n, vip, 80, "lb_cycles_per_packet_1m");
    // The same L4 traffic with an L7 service configured beside it (its proxy and side table
    // exist; no packet goes to it): what an L7 service costs the connections that are not L7.
    else if (g == "lbl71m")
      bench_steady("lbl7", lb_yaml("nat", 16) + kL7Service, n, vip, 80,
                   "lb_cycles_per_packet_1m_l7_configured");
    else if (g == "natlbnew") bench_natlbnew();
    else if (g == "l7new") bench_l7new();
    else {
      std::fprintf(stderr, "unknown group %s\n", g.c_str());
      return 2;
    }
  }
  g_results["tsc_hz"] = static_cast<double>(rte_get_tsc_hz());  // the cycle figures' clock
  std::printf("{");
  bool first = true;
  for (auto& [k, v] : g_results) {
    std::printf("%s\"%s\": %.3f", first ? "" : ", ", k.c_str(), v);
    first = false;
  }
  std::printf("}\n");
  rte_eal_cleanup();
  return 0;
}
