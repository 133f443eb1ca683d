// SPDX-License-Identifier: Apache-2.0
//
// baton-bench: the figures of docs/PERFORMANCE.md, printed as one JSON object (metric -> number).
// scripts/bench.sh runs each group in its own process (so a 16M-entry table's memory is gone
// before the next group) and merges the objects into bench/results.json.
//
//   baton-bench [-m MB] GROUP...     GROUP: fw64k fw1m fw16m newconn bytes scaling
//                                           migsnap migtrack migfreeze mig1m migscale callgrind
//                                           migfreezetls (the same through TLS over loopback)
//                                           (migfreeze10k, migfreeze100k: one half of migfreeze)
//   BATON_BENCH_SERIAL=1: the migration groups run the destination on the caller's thread
//   BATON_BENCH_REPS=N: freeze repetitions (profiling)
//
// Theory of operation. Everything runs in-process over Dataplane::create(cfg, with_ports=false)
// and Worker::process_burst; a Worker TxSink takes the forwarded packets. What is timed with
// rte_rdtsc is process_burst + flush_tx and nothing else:
// * Packets are built once into mbufs of a private pool and reused: the sink only counts (the
//   pipeline does not rewrite frames in L2 mode), so no allocation, copy or free is measured.
//   Every timed run checks that no packet was dropped (a drop would free a reused mbuf).
// * Established flows use fixed ISNs, so one real handshake through the pipeline gives an entry
//   that is valid for every flow; the other N-1 entries are copies inserted straight into the
//   owner's ConnTable (filling 16M tables through the pipeline would take minutes). The timed
//   packets are pure ACKs (64-byte frames with FCS) of flows drawn uniformly at random from all N,
//   both directions, so lookups are spread over the whole table.
// * Housekeeping (aging) is not in the per-packet figures; the new-connection figure adds the
//   measured cost of removing the entries by aging.
#include <pthread.h>
#include <rte_cycles.h>
#include <rte_eal.h>
#include <rte_malloc.h>
#include <rte_mbuf.h>
#include <rte_pause.h>
#include <sched.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <ctime>
#include <map>
#include <memory>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "config/config.h"
#include "conntrack/conn_table.h"
#include "dataplane/dataplane.h"
#include "migrate/codec.h"
#include "migrate/peer_link.h"
#include "migrate/vm_state_io.h"
#include "pktgen/packet_builder.h"

namespace baton {
namespace {

using pktgen::Bytes;
using pktgen::Pkt;
using namespace tcpflag;

constexpr uint16_t kOut = 0, kIn = 1;  // port indexes: outside (server side), inside (clients)
constexpr uint32_t kBurst = 32;
constexpr uint32_t kCliIsn = 1000, kSrvIsn = 5000;

std::map<std::string, double> g_results;
std::map<std::string, std::string> g_notes;
// --no-accounting: tables without per-connection counters (conntrack.accounting: false); every
// key is recorded with the suffix "_no_accounting".
bool g_accounting = true;
// --huge: EAL memory from hugepages (bench.sh reserves them), as in production; every key is
// recorded with the suffix "_huge".
bool g_huge = false;

void put(const std::string& k, double v) {
  const std::string key = k + (g_accounting ? "" : "_no_accounting") + (g_huge ? "_huge" : "");
  g_results[key] = v;
  std::fprintf(stderr, "  %s = %.3f\n", key.c_str(), v);
}

double tsc_hz() { return static_cast<double>(rte_get_tsc_hz()); }

// CPU time of the calling thread: on a shared machine, wall time includes other people's work.
double thread_cpu_ms() {
  timespec ts;
  clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
  return static_cast<double>(ts.tv_sec) * 1e3 + static_cast<double>(ts.tv_nsec) / 1e6;
}

// 100 ACL rules that match none of the benchmark's flows, ahead of the zone defaults, so rte_acl
// has a real trie to walk for every new connection.
std::string config_yaml(const std::string& instance, uint32_t capacity, uint16_t workers,
                        bool with_vm, uint32_t time_wait_s = 120) {
  std::string y = "instance: " + instance + "\nmode: l2\nworkers: " + std::to_string(workers) +
                  "\nports:\n"
                  "  - {name: uplink, device: null0, zone: outside}\n"
                  "  - {name: host, device: null1, zone: inside}\n"
                  "zones:\n"
                  "  - {name: outside, default: deny}\n"
                  "  - {name: inside, default: permit}\n"
                  "acl:\n";
  for (int i = 0; i < 100; i++) {
    char r[200];
    std::snprintf(r, sizeof r,
                  "  - {zone: %s, dst: 192.%d.%d.0/24, proto: %s, dport: %d, action: %s}\n",
                  i % 2 ? "inside" : "outside", 168 + i / 50, i % 50, i % 3 ? "tcp" : "udp",
                  1000 + i, i % 4 ? "deny" : "permit");
    y += r;
  }
  y += "conntrack:\n  capacity: " + std::to_string(capacity) + "\n" +
       (g_accounting ? "" : "  accounting: false\n") +
       "  timeouts: {tcp_time_wait: " + std::to_string(time_wait_s) + "}\n" +
       "migration:\n  enabled: false\n";
  if (with_vm) y += "vms:\n  - {name: vm1, mac: \"02:00:00:00:01:10\", ipv4: [11.0.0.1]}\n";
  return y;
}

std::unique_ptr<Dataplane> make_dp(const std::string& yaml) {
  ConfigError cerr;
  auto cfg = parse_config(yaml, "bench.yaml", &cerr);
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

std::string uniq(const char* b) {
  static int n = 0;
  return std::string(b) + std::to_string(n++);
}

// Counts what the worker forwards; frees nothing (the mbufs are reused).
struct CountSink {
  TxSink sink{&CountSink::on_tx, this};
  uint64_t n = 0;
  static void on_tx(void* ctx, uint16_t, rte_mbuf**, uint32_t k) { static_cast<CountSink*>(ctx)->n += k; }
};
// Frees what the worker forwards (for mbufs built per use).
struct FreeSink {
  TxSink sink{&FreeSink::on_tx, this};
  uint64_t n = 0;
  static void on_tx(void* ctx, uint16_t, rte_mbuf** p, uint32_t k) {
    static_cast<FreeSink*>(ctx)->n += k;
    rte_pktmbuf_free_bulk(p, k);
  }
};

rte_mempool* bench_pool(uint32_t n) {
  // Small data room: a 64-byte frame needs no more, and millions of mbufs then fit.
  rte_mempool* p = rte_pktmbuf_pool_create(uniq("bpool").c_str(), n, 0, 0,
                                           RTE_PKTMBUF_HEADROOM + 128, SOCKET_ID_ANY);
  if (!p) {
    std::fprintf(stderr, "cannot create a pool of %u mbufs\n", n);
    std::exit(1);
  }
  return p;
}

rte_mbuf* to_mbuf(rte_mempool* pool, const Bytes& b, uint16_t port) {
  rte_mbuf* m = rte_pktmbuf_alloc(pool);
  if (!m) {
    std::fprintf(stderr, "mbuf pool empty\n");
    std::exit(1);
  }
  std::memcpy(rte_pktmbuf_append(m, static_cast<uint16_t>(b.size())), b.data(), b.size());
  m->port = port;
  return m;
}

// Flow i: client 10.x.y.z:(1024 + i / 2^24) -> server 11.0.0.(1 + i % 4):80. Clients sort below
// servers, so every key has the client as its lo end and one template entry fits all flows.
struct Flow {
  std::string cli, srv;
  uint16_t cport;
};
Flow flow(uint32_t i) {
  char c[32], s[32];
  uint32_t a = i & 0xffffff;
  std::snprintf(c, sizeof c, "10.%u.%u.%u", a >> 16, (a >> 8) & 255, a & 255);
  std::snprintf(s, sizeof s, "11.0.0.%u", 1 + i % 4);
  return {c, s, static_cast<uint16_t>(1024 + (i >> 24))};
}
Pkt c2s(const Flow& f, uint32_t seq, uint32_t ack, uint8_t fl) {
  return Pkt().ipv4(f.cli, f.srv).tcp(f.cport, 80).seq(seq).ack(ack).flags(fl).win(65535).pad_to(60);
}
Pkt s2c(const Flow& f, uint32_t seq, uint32_t ack, uint8_t fl) {
  return Pkt().ipv4(f.srv, f.cli).tcp(80, f.cport).seq(seq).ack(ack).flags(fl).win(65535).pad_to(60);
}
// Steady-state packets: duplicate pure ACKs, accepted any number of times.
Bytes ack_c2s(const Flow& f) { return c2s(f, kCliIsn + 1, kSrvIsn + 1, kAck).build(); }
Bytes ack_s2c(const Flow& f) { return s2c(f, kSrvIsn + 1, kCliIsn + 1, kAck).build(); }

FlowKey key_of(uint32_t i) {
  Flow f = flow(i);
  Family fam;
  Tuple t;
  t.src = *IpAddr::parse(f.cli, &fam);
  t.dst = *IpAddr::parse(f.srv, &fam);
  t.family = Family::kV4;
  t.proto = 6;
  t.sport = be16::from_host(f.cport);
  t.dport = be16::from_host(80);
  return FlowKey::from_tuple(t, nullptr);
}

// Runs one mbuf through a worker and frees it if forwarded.
void run_one(Dataplane& dp, Worker& w, const Bytes& b, uint16_t port) {
  FreeSink fs;
  w.set_tx_sink(&fs.sink);
  rte_mbuf* m = to_mbuf(dp.pool(), b, port);
  w.process_burst(&m, 1);
  w.flush_tx();
  w.set_tx_sink(nullptr);
}

// Establishes flow 0 through the pipeline for real and returns its entry (the template).
ConnEntry template_entry(Dataplane& dp, uint16_t vm) {
  Flow f = flow(0);
  uint16_t owner = dp.owner_of(key_of(0));
  Worker& w = *dp.workers()[owner];
  run_one(dp, w, c2s(f, kCliIsn, 0, kSyn).build(), kIn);
  run_one(dp, w, s2c(f, kSrvIsn, kCliIsn + 1, kSyn | kAck).build(), kOut);
  run_one(dp, w, ack_c2s(f), kIn);
  int32_t s = dp.shard(owner).lookup(key_of(0));
  if (s < 0 || dp.shard(owner).entry(s).l4_state != static_cast<uint8_t>(TcpState::kEstablished)) {
    std::fprintf(stderr, "template flow not established\n");
    std::exit(1);
  }
  ConnEntry e = dp.shard(owner).entry(s);
  e.vm_id = vm;
  e.vm_prev = e.vm_next = e.age_prev = e.age_next = kNoSlot;
  if (vm) {  // make flow 0 a VM entry too
    dp.shard(owner).remove(s);
    dp.shard(owner).insert(key_of(0), e);
  }
  return e;
}

// Inserts flows [1, n) as copies of the template, each at its owner.
void fill(Dataplane& dp, uint32_t n, const ConnEntry& tmpl) {
  for (uint32_t i = 1; i < n; i++) {
    FlowKey k = key_of(i);
    if (dp.shard(dp.owner_of(k)).insert(k, tmpl) < 0) {
      std::fprintf(stderr, "insert %u failed\n", i);
      std::exit(1);
    }
  }
}

// npkts mbufs of random flows among flows [0, n) whose owner is `owner` (or any if < 0).
std::vector<rte_mbuf*> ack_stream(Dataplane& dp, rte_mempool* pool, uint32_t n, uint32_t npkts,
                                  int owner, uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::vector<rte_mbuf*> v;
  v.reserve(npkts);
  while (v.size() < npkts) {
    uint32_t i = static_cast<uint32_t>(rng() % n);
    if (owner >= 0 && dp.owner_of(key_of(i)) != owner) continue;
    Flow f = flow(i);
    bool back = v.size() & 1;
    v.push_back(to_mbuf(pool, back ? ack_s2c(f) : ack_c2s(f), back ? kOut : kIn));
  }
  return v;
}

// Cycles per packet over `passes` passes of the stream, bursts of 32, process_burst + flush_tx.
double drive(Worker& w, std::vector<rte_mbuf*>& pkts, int passes) {
  CountSink cs;
  w.set_tx_sink(&cs.sink);
  uint64_t drops0 = w.stats().dropped;
  uint64_t t0 = rte_rdtsc();
  for (int p = 0; p < passes; p++)
    for (size_t i = 0; i < pkts.size(); i += kBurst) {
      w.process_burst(&pkts[i], static_cast<uint32_t>(std::min<size_t>(kBurst, pkts.size() - i)));
      w.flush_tx();
    }
  uint64_t t1 = rte_rdtsc();
  w.set_tx_sink(nullptr);
  uint64_t n = static_cast<uint64_t>(passes) * pkts.size();
  if (w.stats().dropped != drops0 || cs.n != n) {
    std::fprintf(stderr, "benchmark packets were dropped (%lu of %lu forwarded)\n", cs.n, n);
    std::exit(1);
  }
  return static_cast<double>(t1 - t0) / static_cast<double>(n);
}

// The same stream as a NIC delivers it: a receive ring of kRing mbufs recycled burst after
// burst, each burst's frames written into the ring's mbufs just before the worker polls them
// (the NIC's DMA, which DDIO places in the last-level cache; untimed here, as it is the NIC's
// work), with the IPv4 header checksum verified as a NIC with RTE_ETH_RX_OFFLOAD_IPV4_CKSUM
// reports it. drive() instead hands the worker 262144 distinct mbufs that are cold in DRAM,
// which no NIC does, and has the parser check every checksum; both figures are reported.
double drive_nic(Worker& w, rte_mempool* ring_pool, std::vector<rte_mbuf*>& pkts, int passes) {
  constexpr uint32_t kRing = 1024;
  rte_mbuf* ring[kRing];
  if (rte_pktmbuf_alloc_bulk(ring_pool, ring, kRing) != 0) {
    std::fprintf(stderr, "cannot allocate the receive ring\n");
    std::exit(1);
  }
  CountSink cs;
  w.set_tx_sink(&cs.sink);
  uint64_t drops0 = w.stats().dropped;
  uint64_t cycles = 0;
  uint32_t at = 0;
  for (int p = 0; p < passes; p++)
    for (size_t i = 0; i < pkts.size(); i += kBurst) {
      const uint32_t n = static_cast<uint32_t>(std::min<size_t>(kBurst, pkts.size() - i));
      rte_mbuf** rx = &ring[at];
      for (uint32_t k = 0; k < n; k++) {
        const rte_mbuf* src = pkts[i + k];
        rte_pktmbuf_reset(rx[k]);
        std::memcpy(rte_pktmbuf_append(rx[k], src->data_len), rte_pktmbuf_mtod(src, const void*),
                    src->data_len);
        rx[k]->port = src->port;
        rx[k]->ol_flags = RTE_MBUF_F_RX_IP_CKSUM_GOOD;  // RTE_ETH_RX_OFFLOAD_IPV4_CKSUM (ports.cc)
      }
      at = (at + kBurst) % kRing;
      uint64_t t0 = rte_rdtsc();
      w.process_burst(rx, n);
      w.flush_tx();
      cycles += rte_rdtsc() - t0;
    }
  w.set_tx_sink(nullptr);
  rte_pktmbuf_free_bulk(ring, kRing);
  uint64_t n = static_cast<uint64_t>(passes) * pkts.size();
  if (w.stats().dropped != drops0 || cs.n != n) {
    std::fprintf(stderr, "benchmark packets were dropped (%lu of %lu forwarded)\n", cs.n, n);
    std::exit(1);
  }
  return static_cast<double>(cycles) / static_cast<double>(n);
}

double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v[v.size() / 2];
}

// ---- firewall ---------------------------------------------------------------------------------

void bench_fw(uint32_t entries, const std::string& key) {
  std::fprintf(stderr, "fw: %u entries\n", entries);
  auto dp = make_dp(config_yaml(uniq("fw"), entries, 1, false));
  ConnEntry t = template_entry(*dp, 0);
  auto t0 = std::chrono::steady_clock::now();
  fill(*dp, entries, t);
  std::fprintf(stderr, "  filled in %.1f s, table %u entries\n",
               std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count(),
               dp->shard(0).size());
  rte_mempool* pool = bench_pool(300000);
  auto pkts = ack_stream(*dp, pool, entries, 262144, -1, 7);
  Worker& w = *dp->workers()[0];
  rte_mempool* ring_pool = bench_pool(2048);
  drive_nic(w, ring_pool, pkts, 1);  // warm-up
  std::vector<double> runs, cold;
  for (int r = 0; r < 5; r++) runs.push_back(drive_nic(w, ring_pool, pkts, 2));
  for (int r = 0; r < 3; r++) cold.push_back(drive(w, pkts, 2));
  put(key, median(runs));
  put(key + "_cold_mbufs", median(cold));
  rte_pktmbuf_free_bulk(pkts.data(), static_cast<unsigned>(pkts.size()));
  rte_mempool_free(ring_pool);
  rte_mempool_free(pool);
}

// What memory gives a lookup on this machine, in the EAL's memory (4 KiB or 2 MiB pages) and at
// the footprint of each fw table (entries x 177 bytes, fw_bytes_per_conn_2p20): cycles per
// line for 4M random independent line loads, as many in flight as the core allows (the floor
// for a packet that touches L such lines is L times this, whatever the prefetching); the same
// for a random 96-byte row read at both ends (an entry and its counters: two adjacent lines,
// the second cheaper than a random one); and the latency of one line (a dependent chase).
// docs/PERFORMANCE.md compares the fw figures with them.
void bench_memfloor() {
  constexpr size_t kLoads = size_t{1} << 22;
  std::vector<uint32_t> idx(kLoads);
  std::mt19937_64 rng(12345);
  for (auto [entries, tag] : {std::pair<uint64_t, const char*>{1u << 16, "64k"}, {1u << 20, "1m"},
                              {1u << 24, "16m"}}) {
    const size_t bytes = entries * 177, lines = bytes / 64;
    auto* m = static_cast<uint8_t*>(rte_malloc("memfloor", bytes, 64));
    if (m == nullptr) {
      std::fprintf(stderr, "memfloor: cannot allocate %zu bytes\n", bytes);
      continue;
    }
    std::memset(m, 1, bytes);
    for (auto& v : idx) v = static_cast<uint32_t>(rng() % lines);
    uint64_t best = UINT64_MAX, best_row = UINT64_MAX, sum = 0;
    for (int r = 0; r < 5; r++) {
      const uint64_t t0 = rte_rdtsc();
      for (uint32_t i : idx) sum += m[size_t{i} * 64];
      best = std::min(best, rte_rdtsc() - t0);
    }
    const size_t rows = bytes / 96;
    for (int r = 0; r < 5; r++) {
      const uint64_t t0 = rte_rdtsc();
      for (uint32_t i : idx) {
        const size_t at = size_t{i} % rows * 96;
        sum += m[at] + m[at + 95];
      }
      best_row = std::min(best_row, rte_rdtsc() - t0);
    }
    // A chase through a random cycle of up to 1M lines spread over the whole region.
    const size_t n = std::min<size_t>(lines, 1u << 20), stride = lines / n;
    std::vector<uint32_t> perm(n);
    for (size_t i = 0; i < n; i++) perm[i] = static_cast<uint32_t>(i);
    std::shuffle(perm.begin(), perm.end(), rng);
    for (size_t i = 0; i < n; i++) {
      const uint64_t next = size_t{perm[(i + 1) % n]} * stride * 64;
      std::memcpy(m + size_t{perm[i]} * stride * 64, &next, 8);
    }
    uint64_t at = size_t{perm[0]} * stride * 64;
    const uint64_t t0 = rte_rdtsc();
    for (size_t i = 0; i < n; i++) std::memcpy(&at, m + at, 8);
    const uint64_t chase = rte_rdtsc() - t0;
    put(std::string("mem_random_line_cycles_") + tag, static_cast<double>(best) / kLoads);
    put(std::string("mem_random_row_cycles_") + tag, static_cast<double>(best_row) / kLoads);
    put(std::string("mem_latency_cycles_") + tag, static_cast<double>(chase) / n);
    if ((sum + at) == 42) std::fprintf(stderr, " ");  // keeps the loads
    rte_free(m);
  }
}

// Memory per connection of capacity, all tables and indexes counted. "1M" is 1,000,000; 2^20 is
// recorded too, since rte_hash rounds its buckets and free ring up to a power of two of the
// positions (capacity plus 1/64 slack), and 2^20 + slack crosses one: those parts double there.
// IPv4 and IPv6 connections live in separate hashes with their own capacities
// (conntrack.capacity, capacity_v6): fw_bytes_per_conn is an IPv4 table's (capacity_v6: 0),
// fw_bytes_per_conn_v6 an IPv6 one's, per entry of its family.
void bench_bytes() {
  auto per_conn = [](uint32_t v4, uint32_t v6, const std::string& suffix) {
    std::string y = config_yaml(uniq("by"), std::max<uint32_t>(v4, 1), 1, false);
    const std::string cap_line = "  capacity: " + std::to_string(std::max<uint32_t>(v4, 1)) + "\n";
    y.replace(y.find(cap_line), cap_line.size(),
              cap_line + "  capacity_v6: " + std::to_string(v6) + "\n");
    auto dp = make_dp(y);
    const ConnTable& t = dp->shard(0);
    const double cap = v6 ? v6 : v4;
    put("fw_bytes_per_conn" + suffix, static_cast<double>(t.memory_bytes()) / cap);
    put("fw_bytes_per_conn" + suffix + "_hash", static_cast<double>(t.memory_split().hash) / cap);
    put("fw_bytes_per_conn" + suffix + "_entries", static_cast<double>(t.memory_split().entries) / cap);
    put("fw_bytes_per_conn" + suffix + "_counters", static_cast<double>(t.memory_split().counters) / cap);
  };
  per_conn(1000000, 0, "");
  per_conn(1u << 20, 0, "_2p20");
  // IPv6 only: the IPv4 hash of capacity 1 (the config needs one) costs a few hundred bytes.
  per_conn(0, 1000000, "_v6");
}

// Whole lifetimes: SYN, SYN|ACK, ACK, FIN|ACK, FIN|ACK, ACK per connection through the
// pipeline (bursts of 32 connections per phase), then the TIME_WAIT entries removed by aging.
void bench_newconn() {
  constexpr uint32_t kConns = 196608;  // 6 x 196608 mbufs ~ 450 MB
  auto dp = make_dp(config_yaml(uniq("nc"), kConns + 1024, 1, false, 1));
  rte_mempool* pool = bench_pool(kConns * 6 + 1024);
  rte_mempool* ring_pool = bench_pool(2048);
  std::vector<rte_mbuf*> pkts;
  pkts.reserve(kConns * 6);
  for (uint32_t b = 0; b < kConns; b += kBurst) {
    for (int ph = 0; ph < 6; ph++)
      for (uint32_t i = b; i < b + kBurst; i++) {
        Flow f = flow(i + 100);
        const uint32_t c = kCliIsn, s = kSrvIsn;
        Bytes x;
        uint16_t port = kIn;
        switch (ph) {
          case 0: x = c2s(f, c, 0, kSyn).build(); break;
          case 1: x = s2c(f, s, c + 1, kSyn | kAck).build(); port = kOut; break;
          case 2: x = c2s(f, c + 1, s + 1, kAck).build(); break;
          case 3: x = c2s(f, c + 1, s + 1, kFin | kAck).build(); break;
          case 4: x = s2c(f, s + 1, c + 2, kFin | kAck).build(); port = kOut; break;
          case 5: x = c2s(f, c + 2, s + 2, kAck).build(); break;
        }
        pkts.push_back(to_mbuf(pool, x, port));
      }
  }
  std::fprintf(stderr, "  %zu packets built\n", pkts.size());
  Worker& w = *dp->workers()[0];
  w.set_now(0);
  ConnTable& t = dp->shard(0);
  // Cycles per connection of one run over all packets: the handshake and teardown (per packet
  // as drive_nic or drive counts them), then removal by aging, the same ConnTable::expire the
  // worker runs a little every loop. Aging empties the table, so the next run starts afresh.
  auto one_run = [&](bool nic) {
    // The worker's gauges are kept by its aging callback, which the direct expire() below
    // skips: compare with the counts before the run.
    const uint64_t created0 = w.stats().conn_created;
    const uint64_t tw0 = w.stats().conns[static_cast<int>(TcpState::kTimeWait)];
    double per_packet = nic ? drive_nic(w, ring_pool, pkts, 1) : drive(w, pkts, 1);
    if (w.stats().conn_created - created0 != kConns ||
        w.stats().conns[static_cast<int>(TcpState::kTimeWait)] - tw0 != kConns) {
      std::fprintf(stderr, "newconn: %lu created, %u live\n", w.stats().conn_created - created0,
                   t.size());
      std::exit(1);
    }
    uint64_t t2 = rte_rdtsc();
    for (uint32_t guard = 0; t.size() > 0 && guard < kConns; guard++)
      t.expire(1000, 64, [](const ConnEntry&) { return 1u; }, [](uint32_t) {});
    uint64_t t3 = rte_rdtsc();
    if (t.size()) {
      std::fprintf(stderr, "newconn: aging left %u entries\n", t.size());
      std::exit(1);
    }
    return per_packet * 6 + static_cast<double>(t3 - t2) / kConns;
  };
  const double nic = one_run(true), cold = one_run(false);
  put("fw_new_conns_per_second", tsc_hz() / nic);
  put("fw_new_conn_cycles", nic);
  put("fw_new_conns_per_second_cold_mbufs", tsc_hz() / cold);
  put("fw_new_conn_cycles_cold_mbufs", cold);
  rte_pktmbuf_free_bulk(pkts.data(), static_cast<unsigned>(pkts.size()));
  rte_mempool_free(ring_pool);
  rte_mempool_free(pool);
}

void pin(int cpu) {
  cpu_set_t s;
  CPU_ZERO(&s);
  CPU_SET(cpu % static_cast<int>(std::max(1u, std::thread::hardware_concurrency())), &s);
  pthread_setaffinity_np(pthread_self(), sizeof s, &s);
}

// Packets per second with 1 worker (one thread) and 2 workers (two threads, one per CPU), each
// thread driving its own worker with flows that worker owns (no handoff), 64k entries per worker.
// Packets per second with 1 and 2 workers, each worker on its own CPU with its own shard,
// stream and receive ring, packets delivered as a NIC does (drive_nic; the rate of a worker is
// the TSC rate over its cycles per packet while the others run too). Cold mbufs (drive) made
// the figure a measure of DRAM bandwidth, which two workers share: 131,072 mbufs per worker.
// The two set-ups are measured in alternation, 7 rounds, and the ratio of each round taken: on
// a shared VM the speed of the CPUs drifts by tens of percent from one minute to the next (one
// 1-worker run then one 2-worker run gave ratios from 0.22 to 1.2), and a round's two
// measurements are seconds apart. Puts the medians.
void bench_scaling() {
  constexpr uint32_t kPerWorker = 65536, kPkts = 131072;
  struct Setup {
    std::unique_ptr<Dataplane> dp;
    rte_mempool* pool = nullptr;
    std::vector<rte_mempool*> rings;  // per worker
    std::vector<std::vector<rte_mbuf*>> streams;
  };
  auto setup = [&](uint16_t workers) {
    Setup s;
    s.dp = make_dp(config_yaml(uniq("sc"), kPerWorker * workers * 2, workers, false));
    ConnEntry t = template_entry(*s.dp, 0);
    fill(*s.dp, kPerWorker * workers, t);
    s.pool = bench_pool(kPkts * workers + 1024);
    for (uint16_t w = 0; w < workers; w++) {
      s.streams.push_back(ack_stream(*s.dp, s.pool, kPerWorker * workers, kPkts, w, 11 + w));
      s.rings.push_back(bench_pool(2048));
    }
    return s;
  };
  // One measurement: every worker drives its stream 4 times at once; their rates add up.
  auto pps = [&](Setup& s) {
    const size_t workers = s.streams.size();
    std::vector<double> cycles(workers);
    std::vector<std::thread> th;
    for (uint16_t w = 0; w < workers; w++)
      th.emplace_back([&, w] {
        pin(w);
        cycles[w] = drive_nic(*s.dp->workers()[w], s.rings[w], s.streams[w], 4);
      });
    for (auto& x : th) x.join();
    double total = 0;
    for (double c : cycles) total += tsc_hz() / c;
    return total;
  };
  Setup one = setup(1), two = setup(2);
  pps(one);  // warm both: caches, page faults of the tables
  pps(two);
  std::vector<double> p1, p2, ratio;
  for (int round = 0; round < 7; round++) {
    p1.push_back(pps(one));
    p2.push_back(pps(two));
    ratio.push_back(p2.back() / (2 * p1.back()));
  }
  for (Setup* s : {&one, &two}) {
    for (auto& st : s->streams) rte_pktmbuf_free_bulk(st.data(), static_cast<unsigned>(st.size()));
    for (rte_mempool* r : s->rings) rte_mempool_free(r);
    rte_mempool_free(s->pool);
  }
  put("fw_pps_1_worker", median(p1));
  put("fw_pps_2_workers", median(p2));
  put("fw_scaling_2_workers", median(ratio));
}

// ---- migration --------------------------------------------------------------------------------

struct MigPair {
  std::unique_ptr<Dataplane> a, b;
  uint16_t vm_a = 0, vm_b = 0;
  ConnEntry tmpl;
};

MigPair mig_pair(uint32_t entries) {
  MigPair p;
  p.a = make_dp(config_yaml(uniq("A"), entries + 4096, 1, true));
  p.b = make_dp(config_yaml(uniq("B"), entries + 4096, 1, false));
  p.vm_a = *p.a->vms().find_by_name("vm1");
  p.tmpl = template_entry(*p.a, p.vm_a);
  fill(*p.a, entries, p.tmpl);
  std::string err;
  if (!p.a->vms().open_migration_rings(p.vm_a, 1, 1024, std::max<uint32_t>(4096, entries * 2), &err)) {
    std::fprintf(stderr, "rings: %s\n", err.c_str());
    std::exit(1);
  }
  VmConfig vc = p.a->vms().slot(p.vm_a).config;
  p.vm_b = *p.b->vms().add(vc, &err);
  p.b->vms().slot(p.vm_b).state.store(VmState::kArriving);
  p.b->vms().open_migration_rings(p.vm_b, 1, 1024, 4096, &err);
  return p;
}

// The destination of a migration, as MigrationEngine's InSession drives it: each ENTRIES
// frame's bytes land in B's receive Frame, B's VmInstaller decodes them into commands and B's
// worker applies them (Worker::housekeeping: no lcore runs it); end_round() waits for every
// command, as B does at ROUND_END / FINAL_END, and with `activate` makes the VM active at B (one
// store and a grace period, as at ACTIVATE). After a round that does not activate, B's PLACED
// goes back to A's reader (before the ACK, as in the engine), so that the next round's updates
// name their places. Three ways to get the frames there:
// * kThreaded (the figures): B runs on a thread of its own, since it is another host; frames
//   cross through a queue of kDepth frames (the socket's buffers; the sender blocks when it is
//   full), so B installs frame k while A reads frame k+1, as the engine's sessions do. B's
//   session and B's worker share that one thread (on a real host they have a core each).
// * kSerial: everything on the caller's thread, one step after the other (the CPU split).
// * kTls: as kThreaded, but the frames go through a real PeerLink over loopback (mutual TLS
//   1.3, certificates made with the openssl CLI), and end_round() is the engine's ROUND_END or
//   FINAL_END and ACK round trip.
class Destination {
 public:
  enum class Mode { kThreaded, kSerial, kTls };
  struct Times {
    double submit = 0, apply = 0;  // ms of B's work (submit includes decoding)
  };
  Destination(MigPair& p, migrate::VmReader& reader, migrate::VmInstaller& inst, Mode mode)
      : p_(p), reader_(reader), inst_(inst), mode_(mode) {
    // B's thread gets the second CPU: it would inherit the main thread's, which EAL pinned
    // to lcore 0's, and the two "hosts" would take turns on one core.
    if (mode == Mode::kTls) {
      open_link();
      th_ = std::thread([this] {
        pin(1);
        run_tls();
      });
      connect();
    } else if (mode == Mode::kThreaded) {
      th_ = std::thread([this] {
        pin(1);
        run();
      });
    }
  }
  ~Destination() {
    stop_.store(true);
    if (th_.joinable()) th_.join();
    if (!pki_.empty()) std::system(("rm -rf '" + pki_ + "'").c_str());
  }
  // A's side: hands over one frame (blocks while kDepth frames wait, or the socket is full).
  void send(uint8_t* frame, size_t len) {
    bytes_ += len;
    if (mode_ == Mode::kTls) {
      migrate::set_frame_seq(frame, ++seq_);
      if (!a_->send(frame, len, 5000)) die("send: " + a_->last_error().detail);
      return;
    }
    const uint64_t h = head_.load(std::memory_order_relaxed);
    wait_until([&] { return h - tail_.load(std::memory_order_acquire) < kDepth; });
    if (migrate::decode_frame(frame, len, &slots_[h % kDepth]) != migrate::CodecError::kOk)
      die("decode failed");
    head_.store(h + 1, std::memory_order_release);
    if (mode_ == Mode::kSerial) take(slots_[h % kDepth]);
  }
  // A's side: the round is over; returns when B installed it all (and is active if asked).
  void end_round(bool activate, uint32_t round) {
    if (mode_ == Mode::kTls) {
      std::vector<uint8_t> f =
          activate ? migrate::encode_frame(migrate::FinalEndMsg{round, 0}, 1, ++seq_)
                   : migrate::encode_frame(migrate::RoundEndMsg{round, 0}, 1, ++seq_);
      if (!a_->send(f, 5000)) die("send: " + a_->last_error().detail);
      migrate::Frame ack;
      for (;;) {
        if (a_->recv(&ack, 5000).code != migrate::LinkError::kNone) die("no ACK");
        if (ack.header.kind != migrate::MsgKind::kPlaced) break;
        migrate::PlacedMsg m;
        if (migrate::decode_body(ack, &m) != migrate::CodecError::kOk || !reader_.apply_placed(m))
          die("bad PLACED");
      }
      if (ack.header.kind != migrate::MsgKind::kAck) die("no ACK");
      return;
    }
    activate_ = activate;
    end_.store(true, std::memory_order_release);
    if (mode_ == Mode::kSerial) finish();
    wait_until([&] { return done_.load(std::memory_order_acquire); });
    done_.store(false, std::memory_order_relaxed);
    if (!activate && !reader_.apply_placed(migrate::PlacedMsg{round, std::move(places_)}))
      die("PLACED refused");
  }
  migrate::VmReader::FrameOut out(uint32_t round) {
    migrate::VmReader::FrameOut o;
    o.migration_id = 1;
    o.round = round;
    o.emit = [this](uint8_t* frame, size_t len, uint32_t) { send(frame, len); };
    return o;
  }
  size_t bytes() const { return bytes_; }
  Times times;  // read after end_round

 private:
  static constexpr size_t kDepth = 4;
  using clk = std::chrono::steady_clock;
  static double ms(clk::time_point a, clk::time_point b) {
    return std::chrono::duration<double, std::milli>(b - a).count();
  }
  [[noreturn]] static void die(const std::string& why) {
    std::fprintf(stderr, "destination: %s\n", why.c_str());
    std::exit(1);
  }
  // One side waiting for the other: spins, yielding between short bursts. Neither side
  // sleeps: a dataplane host's cores do not idle, and here a sleeping vCPU came back slower
  // (a futex wait instead made the median 10k freeze 1.14-1.35 ms rather than 0.92-1.6 ms,
  // and its p99 worse, on the idle machine). On a loaded machine a yield may cost a time slice.
  template <class Ready>
  static void wait_until(Ready ready) {
    while (!ready()) {
      for (int i = 0; i < 64; i++) rte_pause();
      sched_yield();
    }
  }
  // B: one frame.
  void take(const migrate::Frame& f) {
    auto t0 = clk::now();
    bool queued = false;
    uint32_t n = 0;
    if (inst_.submit(f, 5000, &queued, &n) != migrate::CodecError::kOk || !queued)
      die("submit failed");
    auto t1 = clk::now();
    if (mode_ != Mode::kTls) tail_.fetch_add(1, std::memory_order_release);  // the slot is free
    for (auto& w : p_.b->workers()) w->housekeeping();
    times.submit += ms(t0, t1);
    times.apply += ms(t1, clk::now());
  }
  // B: after the round's last frame.
  void finish() {
    end_.store(false, std::memory_order_relaxed);
    auto t0 = clk::now();
    for (auto& w : p_.b->workers()) w->housekeeping();  // a command the queue left behind
    if (!inst_.wait(5000)) die("install timed out");
    if (inst_.failed) die("install failed for " + std::to_string(inst_.failed));
    if (inst_.unmatched) die(std::to_string(inst_.unmatched) + " compact updates unmatched");
    times.apply += ms(t0, clk::now());
    if (activate_) {
      p_.b->vms().slot(p_.vm_b).state.store(VmState::kLocal, std::memory_order_seq_cst);
      p_.b->grace_period();
    } else {
      places_ = inst_.take_places();
    }
    done_.store(true, std::memory_order_release);
  }
  void run() {
    for (;;) {
      wait_until([&] {
        return stop_.load(std::memory_order_acquire) || end_.load(std::memory_order_acquire) ||
               tail_.load(std::memory_order_relaxed) != head_.load(std::memory_order_acquire);
      });
      if (stop_.load(std::memory_order_acquire)) return;
      const uint64_t t = tail_.load(std::memory_order_relaxed);
      if (t != head_.load(std::memory_order_acquire))
        take(slots_[t % kDepth]);
      else
        finish();  // end_ set and every frame taken
    }
  }
  void run_tls() {
    auto b = listener_->accept(5000, &link_err_);
    if (!b) die("accept: " + link_err_.detail);
    linked_.store(true, std::memory_order_release);
    migrate::Frame f;
    while (!stop_.load(std::memory_order_relaxed)) {
      migrate::Error e = b->recv(&f, 100);
      if (e.code == migrate::LinkError::kTimeout) continue;
      if (e.code != migrate::LinkError::kNone) die("recv: " + e.detail);
      if (f.header.kind == migrate::MsgKind::kEntries) {
        take(f);
        continue;
      }
      activate_ = f.header.kind == migrate::MsgKind::kFinalEnd;
      finish();
      if (!activate_) {
        migrate::RoundEndMsg re;
        if (migrate::decode_body(f, &re) != migrate::CodecError::kOk) die("bad ROUND_END");
        if (!b->send(migrate::encode_frame(migrate::PlacedMsg{re.round, std::move(places_)}, 1,
                                           f.header.seq),
                     5000))
          die("placed");
      }
      migrate::AckMsg a;
      a.acked_seq = f.header.seq;
      if (!b->send(migrate::encode_frame(a, 1, f.header.seq), 5000)) die("ack");
    }
  }
  // A CA and two instances it signed, as the engine's config would name them.
  void open_link() {
    char tmpl[] = "/tmp/baton-bench-pki-XXXXXX";
    if (!mkdtemp(tmpl)) die("mkdtemp");
    pki_ = tmpl;
    const std::string ec = "-newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes ";
    std::string cmd = "cd '" + pki_ + "' && openssl req -x509 " + ec +
                      "-keyout ca.key -out ca.pem -days 2 -subj /CN=bench-ca";
    for (const char* who : {"a", "b"})
      cmd += std::string(" && openssl req ") + ec + "-keyout " + who + ".key -out " + who +
             ".csr -subj /CN=bench-" + who + " && openssl x509 -req -in " + who +
             ".csr -CA ca.pem -CAkey ca.key -CAcreateserial -days 2 -out " + who + ".pem";
    if (std::system(("(" + cmd + ") >/dev/null 2>&1").c_str()) != 0) die("openssl CLI failed");
    std::string err;
    auto ctx = [&](migrate::TlsContext::Role r, const char* who) {
      auto c = migrate::TlsContext::create(r, pki_ + "/" + who + ".pem", pki_ + "/" + who + ".key",
                                           pki_ + "/ca.pem", &err);
      if (!c) die("tls: " + err);
      return c;
    };
    server_ctx_ = ctx(migrate::TlsContext::Role::kServer, "b");
    client_ctx_ = ctx(migrate::TlsContext::Role::kClient, "a");
    listener_ = migrate::PeerListener::listen(*server_ctx_, "127.0.0.1:0", &link_err_);
    if (!listener_) die("listen: " + link_err_.detail);
  }
  // A's end, once B's thread is accepting.
  void connect() {
    migrate::Error e;
    a_ = migrate::PeerLink::connect(*client_ctx_, "127.0.0.1:" + std::to_string(listener_->port()),
                                    5000, &e);
    if (!a_) die("connect: " + e.detail);
    wait_until([&] { return linked_.load(std::memory_order_acquire); });
  }

 private:
  MigPair& p_;
  migrate::VmReader& reader_;  // A's: takes B's PLACED
  migrate::VmInstaller& inst_;
  std::vector<uint32_t> places_;  // B's, after a round that did not activate
  Mode mode_;
  migrate::Frame slots_[kDepth];
  std::atomic<uint64_t> head_{0}, tail_{0};
  std::atomic<bool> end_{false}, done_{false}, stop_{false}, linked_{false};
  bool activate_ = false;
  size_t bytes_ = 0;
  uint64_t seq_ = 0;
  std::string pki_;
  std::unique_ptr<migrate::TlsContext> server_ctx_, client_ctx_;
  std::unique_ptr<migrate::PeerListener> listener_;
  std::unique_ptr<migrate::PeerLink> a_;
  migrate::Error link_err_;
  std::thread th_;
};

Destination::Mode destination_mode(bool tls = false) {
  if (tls) return Destination::Mode::kTls;
  const char* e = std::getenv("BATON_BENCH_SERIAL");
  return e && *e && *e != '0' ? Destination::Mode::kSerial : Destination::Mode::kThreaded;
}

// Snapshot and encode at the source only: frames are dropped once encoded (the engine would
// write them to the link).
void bench_migsnap() {
  constexpr uint32_t kN = 1u << 20;
  MigPair p = mig_pair(kN);
  migrate::VmReader r(*p.a, p.vm_a);
  std::vector<double> rates;
  for (int rep = 0; rep < 3; rep++) {
    migrate::VmReader::FrameOut o;
    o.emit = [](uint8_t*, size_t, uint32_t) {};
    auto t0 = std::chrono::steady_clock::now();
    uint64_t n = r.snapshot(o).records;
    double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    if (n != kN) std::exit(1);
    rates.push_back(kN / s);
  }
  put("migrate_snapshot_entries_per_second", median(rates));
}

// Cycles per packet of a VM's established flows with the VM kLocal and kTracking, alternating.
void bench_migtrack() {
  constexpr uint32_t kN = 65536;
  MigPair p = mig_pair(kN);
  rte_mempool* pool = bench_pool(300000);
  auto pkts = ack_stream(*p.a, pool, kN, 262144, -1, 5);
  Worker& w = *p.a->workers()[0];
  VmSlot& vs = p.a->vms().slot(p.vm_a);
  migrate::VmReader reader(*p.a, p.vm_a);
  drive(w, pkts, 1);
  std::vector<double> local, tracking;
  for (int rep = 0; rep < 9; rep++) {
    vs.state.store(VmState::kLocal);
    local.push_back(drive(w, pkts, 2));
    // A delta round starts: new epoch, so each entry is queued once more, then steady state.
    vs.epoch.fetch_add(1);
    vs.state.store(VmState::kTracking);
    tracking.push_back(drive(w, pkts, 2));
    reader.delta(migrate::VmReader::Drain::kAll, nullptr);  // drain the dirty rings
  }
  vs.state.store(VmState::kLocal);
  put("migrate_local_cycles_per_packet", median(local));
  put("migrate_tracking_cycles_per_packet", median(tracking) - median(local));
  rte_pktmbuf_free_bulk(pkts.data(), static_cast<unsigned>(pkts.size()));
  rte_mempool_free(pool);
}

// Freeze time: from the pause (VM frozen) to B active with the final delta installed, for
// `changed` entries changed since the last round, out of twice as many. Puts the p99 of `reps`
// repetitions (BATON_BENCH_REPS overrides; of 100, the second worst: the worst alone is the one
// repetition a neighbour's burst happened to hit) as migrate_freeze[_tls]_ms_p99_<tag>, their
// median as ..._median_<tag> and the worst as ..._max_<tag>. Per repetition, stderr shows the
// split.
void migfreeze(uint32_t changed, const char* tag, int reps = 100, bool tls = false) {
  const uint32_t total = std::max<uint32_t>(changed * 2, 20000);
  MigPair p = mig_pair(total);
  migrate::VmReader reader(*p.a, p.vm_a);
  VmSlot& vs = p.a->vms().slot(p.vm_a);
  VmSlot& vb = p.b->vms().slot(p.vm_b);
  vs.epoch.fetch_add(1);
  vs.state.store(VmState::kTracking);
  p.a->grace_period();
  // One installer for the whole migration, as the destination's session has, sized by
  // PREPARE's count as there.
  migrate::VmInstaller inst(*p.b, p.vm_b);
  inst.expect(total);
  Destination b(p, reader, inst, destination_mode(tls));
  // The packets that change entries are built before the snapshot round: building them (tens
  // of MB of fresh mbufs) between it and the first freeze evicted both tables from the cache,
  // and made the first repetition the slowest of every run.
  rte_mempool* pool = bench_pool(changed + 1024);
  std::vector<rte_mbuf*> touch;
  for (uint32_t i = 0; i < changed; i++)
    touch.push_back(to_mbuf(pool, ack_c2s(flow(i)), kIn));
  reader.snapshot(b.out(0));
  b.end_round(false, 0);
  Worker& w = *p.a->workers()[0];
  std::vector<double> ms;
  if (const char* e = std::getenv("BATON_BENCH_REPS")) reps = std::max(1, std::atoi(e));
  for (int rep = 0; rep < reps; rep++) {
    vs.state.store(VmState::kTracking);
    vb.state.store(VmState::kArriving);
    vs.epoch.fetch_add(1);
    p.a->grace_period();
    drive(w, touch, 1);  // `changed` entries change in this round
    using clk = std::chrono::steady_clock;
    b.times = {};
    const double cpu0 = thread_cpu_ms();
    auto t0 = clk::now();
    vs.state.store(VmState::kFrozen, std::memory_order_seq_cst);
    p.a->grace_period();
    auto t1 = clk::now();
    uint64_t n = reader.delta(migrate::VmReader::Drain::kAll, b.out(1 + rep)).records;
    auto t2 = clk::now();
    b.end_round(true, 1 + rep);
    auto t3 = clk::now();
    const double cpu = thread_cpu_ms() - cpu0;
    auto msd = [](clk::time_point a, clk::time_point b) {
      return std::chrono::duration<double, std::milli>(b - a).count();
    };
    ms.push_back(msd(t0, t3));
    std::fprintf(stderr,
                 "  freeze %u rep %d: %.3f ms = grace %.3f + A read/encode/send %.3f (A cpu %.3f) "
                 "+ B finishing %.3f; B: submit %.3f, apply %.3f\n",
                 changed, rep, msd(t0, t3), msd(t0, t1), msd(t1, t2), cpu, msd(t2, t3),
                 b.times.submit, b.times.apply);
    if (n != changed) {
      std::fprintf(stderr, "final delta has %lu records, expected %u\n", n, changed);
      std::exit(1);
    }
  }
  rte_pktmbuf_free_bulk(touch.data(), static_cast<unsigned>(touch.size()));
  rte_mempool_free(pool);
  const std::string prefix = tls ? "migrate_freeze_tls_ms_" : "migrate_freeze_ms_";
  put(prefix + "median_" + tag, median(ms));
  std::sort(ms.begin(), ms.end());
  put(prefix + "p99_" + tag, ms[static_cast<size_t>(std::ceil(0.99 * ms.size())) - 1]);
  put(prefix + "max_" + tag, ms.back());
}

// A whole migration of n entries: tracking on, snapshot, freeze, final delta, activation.
// Returns seconds; *bytes gets the ENTRIES frames' bytes.
double migtotal(uint32_t n, size_t* bytes, bool tls = false) {
  MigPair p = mig_pair(n);
  migrate::VmReader reader(*p.a, p.vm_a);
  VmSlot& vs = p.a->vms().slot(p.vm_a);
  migrate::VmInstaller inst(*p.b, p.vm_b);
  inst.expect(n);  // PREPARE's count, as the destination's session does
  Destination b(p, reader, inst, destination_mode(tls));
  auto t0 = std::chrono::steady_clock::now();
  vs.epoch.fetch_add(1);
  vs.state.store(VmState::kTracking);
  p.a->grace_period();
  reader.snapshot(b.out(0));
  b.end_round(false, 0);
  vs.state.store(VmState::kFrozen);
  p.a->grace_period();
  reader.delta(migrate::VmReader::Drain::kAll, b.out(1));
  b.end_round(true, 1);
  double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  if (p.b->shard(0).vm_count(p.vm_b) != n) {
    std::fprintf(stderr, "B holds %u entries\n", p.b->shard(0).vm_count(p.vm_b));
    std::exit(1);
  }
  *bytes = b.bytes();
  return s;
}

void bench_mig1m() {
  size_t bytes = 0;
  // In one process; the migrate_1m_* keys come from two batond (bench/mig_daemons.sh).
  put("migrate_1m_inprocess_total_seconds", migtotal(1000000, &bytes));
  put("migrate_1m_inprocess_bytes", static_cast<double>(bytes));
}

// The points of the time-against-flows plot (bench/plot_migration.py) the other groups do not
// give: whole migrations of 1k, 10k and 100k flows (median of 3), freezes with 1k and 1M
// entries changed in the final round (1M: 5 repetitions).
void bench_migscale() {
  for (auto [n, tag] : {std::pair<uint32_t, const char*>{1000, "1k"}, {10000, "10k"},
                        {100000, "100k"}}) {
    std::vector<double> s;
    for (int rep = 0; rep < 3; rep++) {
      size_t bytes = 0;
      s.push_back(migtotal(n, &bytes));
    }
    put(std::string("migrate_total_seconds_") + tag, median(s));
  }
  migfreeze(1000, "1k");
  migfreeze(1000000, "1m", 5);
}

// Small run for callgrind: 64k entries, 32768 packets once through process_burst. bench.sh
// collects only inside Worker::process_burst and divides Ir by the packet count printed.
void bench_callgrind() {
  constexpr uint32_t kN = 65536, kPkts = 32768;
  auto dp = make_dp(config_yaml(uniq("cg"), kN, 1, false));
  ConnEntry t = template_entry(*dp, 0);
  fill(*dp, kN, t);
  rte_mempool* pool = bench_pool(kPkts + 1024);
  auto pkts = ack_stream(*dp, pool, kN, kPkts, -1, 3);
  drive(*dp->workers()[0], pkts, 1);
  put("callgrind_packets", kPkts + 3);  // + the template flow's handshake
}

}  // namespace
}  // namespace baton

int main(int argc, char** argv) {
  using namespace baton;
  std::string mem = "2048";
  std::vector<std::string> groups;
  for (int i = 1; i < argc; i++) {
    std::string a = argv[i];
    if (a == "-m" && i + 1 < argc)
      mem = argv[++i];
    else if (a == "--huge")
      g_huge = true;
    else if (a == "--no-accounting")
      g_accounting = false;
    else
      groups.push_back(a);
  }
  std::vector<std::string> args = {"baton-bench", "-m", mem, "--no-pci", "-l", "0",
                                   "--file-prefix", "bench_" + std::to_string(getpid()),
                                   "--log-level=error"};
  if (!g_huge) args.insert(args.begin() + 1, "--no-huge");
  std::vector<char*> eargv;
  for (auto& a : args) eargv.push_back(a.data());
  if (rte_eal_init(static_cast<int>(eargv.size()), eargv.data()) < 0) {
    std::fprintf(stderr, "rte_eal_init failed\n");
    return 1;
  }
  for (const std::string& g : groups) {
    if (g == "fw64k") bench_fw(1u << 16, "fw_cycles_per_packet_64k");
    else if (g == "fw1m") bench_fw(1u << 20, "fw_cycles_per_packet_1m");
    else if (g == "fw16m") bench_fw(1u << 24, "fw_cycles_per_packet_16m");
    else if (g == "bytes") bench_bytes();
    else if (g == "memfloor") bench_memfloor();
    else if (g == "newconn") bench_newconn();
    else if (g == "scaling") bench_scaling();
    else if (g == "migsnap") bench_migsnap();
    else if (g == "migtrack") bench_migtrack();
    else if (g == "migfreeze") {
      migfreeze(10000, "10k");
      migfreeze(100000, "100k");
    } else if (g == "migfreezetls") {
      migfreeze(10000, "10k", 100, true);
      migfreeze(100000, "100k", 100, true);
      size_t bytes = 0;
      put("migrate_1m_tls_total_seconds", migtotal(1000000, &bytes, true));
    } else if (g == "migfreeze10k") {
      migfreeze(10000, "10k");
    } else if (g == "migfreeze100k") {
      migfreeze(100000, "100k");
    } else if (g == "mig1m") bench_mig1m();
    else if (g == "migscale") bench_migscale();
    else if (g == "callgrind") bench_callgrind();
    else {
      std::fprintf(stderr, "unknown group %s\n", g.c_str());
      return 2;
    }
  }
  std::printf("{");
  bool first = true;
  for (auto& [k, v] : g_results) {
    std::printf("%s\"%s\": %.10g", first ? "" : ", ", k.c_str(), v);
    first = false;
  }
  std::printf(", \"tsc_hz\": %.0f}\n", baton::tsc_hz());
  rte_eal_cleanup();
  return 0;
}
