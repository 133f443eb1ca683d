// SPDX-License-Identifier: Apache-2.0
//
// VmReader's streamed reads (records encoded straight into ENTRIES frames) against its vector
// reads, and VmInstaller's frame submit plus the owner's batched apply, under one EAL
// (--no-huge) with two Dataplanes of two workers each. No lcore runs: the test thread is the
// owner of every shard (it inserts and changes entries as a worker would, queueing the slots on
// the VM's dirty rings) and applies B's commands with Worker::housekeeping.
#include <gtest/gtest.h>
#include <rte_eal.h>

#include <bit>
#include <map>
#include <memory>
#include <random>
#include <set>
#include <string>
#include <vector>

#include "config/config.h"
#include "conntrack/conn_table.h"
#include "dataplane/dataplane.h"
#include "migrate/codec.h"
#include "migrate/vm_state_io.h"
#include "tests/migrate/vm_flow_keys.h"
#include "tests/support/eal_env.h"
#include "tests/support/test_dataplane.h"

namespace baton::migrate {
namespace {

::testing::Environment* const kEal =
    ::testing::AddGlobalTestEnvironment(new EalEnv("migrate_test", 1024, {"-l", "0"}));

std::unique_ptr<Dataplane> make_dp(const std::string& instance, bool with_vm,
                                   int workers = 2) {
  std::string y = "instance: " + instance + "\nmode: l2\nworkers: " + std::to_string(workers) +
                  "\n"
                  "ports:\n"
                  "  - {name: uplink, device: null0, zone: outside}\n"
                  "  - {name: host, device: null1, zone: inside}\n"
                  "zones:\n"
                  "  - {name: outside, default: deny}\n"
                  "  - {name: inside, default: permit}\n"
                  "conntrack:\n  capacity: 8192\n"
                  "migration:\n  enabled: false\n";
  if (with_vm) y += "vms:\n  - {name: web1, mac: \"02:00:00:00:01:10\", ipv4: [10.1.0.10]}\n";
  return test_dataplane(y, "vm_state_io.yaml");
}

std::string unique_name(const char* base) {
  static int n = 0;
  return std::string(base) + std::to_string(n++);
}

// Source A with `n` established entries of VM web1 spread over both shards, tracked; the
// destination B knows the VM as arriving.
// The destination's fingerprint -> (worker, slot) map against a std::map model, through
// growth and backward-shift deletions; fingerprints share their high bits in clusters so that
// probe runs form (the home cell is taken from the high bits).
TEST(FingerprintSlotsTest, MatchesAModelAndAFingerprintPutForTwoPlacesIsAmbiguous) {
  std::mt19937_64 rng(11);
  FingerprintSlots m;
  struct Where {
    uint16_t worker;
    uint32_t slot;
  };
  std::map<uint64_t, Where> model;
  auto fp_of = [&] {
    const uint64_t cluster = rng() % 64;
    return (cluster << 58) | (rng() % 512) | 1;
  };
  for (int op = 0; op < 200000; op++) {
    const uint64_t fp = fp_of();
    if (rng() % 3) {
      const Where w{static_cast<uint16_t>(rng() % 4), static_cast<uint32_t>(rng() % 1000)};
      auto it = model.find(fp);
      if (it == model.end())
        model[fp] = w;
      else if (it->second.slot != w.slot || it->second.worker != w.worker)
        it->second.slot = kNoSlot;  // ambiguous from now on
      m.put(fp, w.worker, w.slot);
    } else {
      model.erase(fp);
      m.erase(fp);
    }
    if (op % 1000 == 0) {
      ASSERT_EQ(m.size(), model.size()) << "op " << op;
      for (auto& [f, w] : model) {
        const FingerprintSlots::Cell* c = m.find(f);
        ASSERT_TRUE(c) << "op " << op;
        ASSERT_EQ(c->slot, w.slot);
        if (w.slot != kNoSlot) ASSERT_EQ(c->worker, w.worker);
      }
      for (int k = 0; k < 100; k++) {
        const uint64_t f = fp_of();
        ASSERT_EQ(m.find(f) != nullptr, model.count(f) == 1);
      }
    }
  }
  // The same place again is no ambiguity (a stale or repeated record of one key).
  FingerprintSlots one;
  one.put(5, 1, 77);
  one.put(5, 1, 77);
  ASSERT_TRUE(one.find(5));
  EXPECT_EQ(one.find(5)->slot, 77u);
  one.put(5, 0, 77);
  EXPECT_EQ(one.find(5)->slot, kNoSlot) << "another worker's slot 77 is another place";
}

class VmStateIo : public ::testing::Test {
 protected:
  void SetUp() override {
    a = make_dp(unique_name("va"), true);
    b = make_dp(unique_name("vb"), false);
    ASSERT_TRUE(a && b);
    vm_a = *a->vms().find_by_name("web1");
    std::string err;
    ASSERT_TRUE(a->vms().open_migration_rings(vm_a, 2, 64, 4096, &err)) << err;
    VmConfig vc = a->vms().slot(vm_a).config;
    auto idb = b->vms().add(vc, &err);
    ASSERT_TRUE(idb) << err;
    vm_b = *idb;
    b->vms().slot(vm_b).state.store(VmState::kArriving);
    a->vms().slot(vm_a).state.store(VmState::kTracking);
  }

  // Inserts flow i at its owner in A (as the owner would).
  void add(uint32_t i) {
    FlowKey k = vm_flow_key(i);
    ConnEntry e;
    e.vm_id = vm_a;
    e.l4_state = static_cast<uint8_t>(TcpState::kEstablished);
    e.version.store(2);
    e.peer[0].end = 1000 + i;
    e.peer[1].end = 5000 + i;
    ConnCounters c;
    c.packets[0] = i;
    int32_t slot = a->shard(a->owner_of(k)).insert(k, e, &c);
    ASSERT_GE(slot, 0);
    slots[i] = static_cast<uint32_t>(slot);
  }
  // Moves flow i's sequence state on, as tracking the next segment would, and queues it.
  void advance(uint32_t i, uint32_t bytes) {
    FlowKey k = vm_flow_key(i);
    uint16_t w = a->owner_of(k);
    ConnTable& t = a->shard(w);
    t.begin_write(slots[i]);
    t.entry(slots[i]).peer[0].end += bytes;
    t.count(slots[i], Dir::kLoToHi, bytes);
    t.end_write(slots[i]);
    queue(w, slots[i]);
  }
  void remove(uint32_t i) {
    FlowKey k = vm_flow_key(i);
    uint16_t w = a->owner_of(k);
    a->shard(w).remove(slots[i]);
    queue(w, slots[i]);
  }
  void queue(uint16_t w, uint32_t slot) {
    VmSlot& vs = a->vms().slot(vm_a);
    ASSERT_EQ(rte_ring_sp_enqueue_elem(vs.dirty[VmSlot::parity(vs.epoch)][w], &slot, sizeof slot),
              0);
  }

  // Every frame a streamed read emits, kept as decoded messages.
  struct Captured {
    std::vector<FrameHeader> headers;
    std::vector<EntriesMsg> msgs;
    std::vector<ConnRecord> all() const {
      std::vector<ConnRecord> v;
      for (auto& m : msgs) v.insert(v.end(), m.records.begin(), m.records.end());
      return v;
    }
  };
  VmReader::FrameOut capture(Captured* c, uint32_t round, size_t per_frame) {
    VmReader::FrameOut o;
    o.migration_id = 77;
    o.round = round;
    o.per_frame = per_frame;
    o.emit = [c](uint8_t* p, size_t n, uint32_t records) {
      Frame f;
      ASSERT_EQ(decode_frame(p, n, &f), CodecError::kOk);
      EntriesMsg m;
      ASSERT_EQ(decode_body(f, &m), CodecError::kOk);
      ASSERT_EQ(m.records.size(), records);
      c->headers.push_back(f.header);
      c->msgs.push_back(std::move(m));
    };
    return o;
  }

  // A streamed read's frames, kept as bytes.
  using Frames = std::vector<std::vector<uint8_t>>;
  VmReader::FrameOut keep(Frames* frames, uint32_t round) {
    VmReader::FrameOut o;
    o.migration_id = 5;
    o.round = round;
    o.per_frame = 64;
    o.emit = [frames](uint8_t* p, size_t n, uint32_t) { frames->emplace_back(p, p + n); };
    return o;
  }
  // Hands the frames to B's installer, as the destination's session does, and applies them.
  void install(VmInstaller& inst, const Frames& frames) {
    Frame f;
    for (auto& fr : frames) {
      ASSERT_EQ(decode_frame(fr.data(), fr.size(), &f), CodecError::kOk);
      bool queued = false;
      uint32_t n = 0;
      ASSERT_EQ(inst.submit(f, 1000, &queued, &n), CodecError::kOk);
      EXPECT_TRUE(queued);
    }
    apply_at_b(inst);
  }

  // Applies B's queued commands on its workers' (this) thread and waits for them.
  void apply_at_b(VmInstaller& inst) {
    for (int i = 0; i < 64; i++)
      for (auto& w : b->workers()) w->housekeeping();
    ASSERT_TRUE(inst.wait(1000));
  }

  std::unique_ptr<Dataplane> a, b;
  uint16_t vm_a = 0, vm_b = 0;
  std::map<uint32_t, uint32_t> slots;  // flow -> slot at A
};

TEST_F(VmStateIo, StreamedSnapshotCarriesTheVectorSnapshotInFramesOfAtMostPerFrame) {
  for (uint32_t i = 0; i < 50; i++) add(i);
  VmReader vec(*a, vm_a), wire(*a, vm_a);
  std::vector<ConnRecord> expect = vec.snapshot();
  ASSERT_EQ(expect.size(), 50u);
  Captured c;
  VmReader::Counts n = wire.snapshot(capture(&c, 0, 7));
  EXPECT_EQ(n.records, 50u);
  EXPECT_EQ(n.tombstones, 0u);
  ASSERT_EQ(c.msgs.size(), 8u);  // 7 x 7 + 1
  for (size_t i = 0; i < c.msgs.size(); i++) {
    EXPECT_EQ(c.headers[i].kind, MsgKind::kEntries);
    EXPECT_EQ(c.headers[i].migration_id, 77u);
    EXPECT_EQ(c.headers[i].seq, 0u) << "the sender numbers frames per link";
    EXPECT_EQ(c.msgs[i].round, 0u);
    EXPECT_EQ(c.msgs[i].records.size(), i + 1 < c.msgs.size() ? 7u : 1u);
  }
  // Equal but for the idle time, which may tick between the two reads.
  std::vector<ConnRecord> got = c.all();
  for (auto* v : {&got, &expect})
    for (ConnRecord& rec : *v) rec.idle_s = 0;
  EXPECT_EQ(got, expect);
  EXPECT_EQ(wire.live(), 50u);
}

TEST_F(VmStateIo, StreamedDeltaSendsChangedEntriesAndTombstonesOnly) {
  for (uint32_t i = 0; i < 40; i++) add(i);
  constexpr uint64_t kSeed = 99;
  VmReader r(*a, vm_a, kSeed);
  Captured snap;
  r.snapshot(capture(&snap, 0, kRecordsPerFrame));
  for (uint32_t i = 0; i < 10; i++) advance(i, 100);
  advance(3, 100);  // queued twice: sent once, as of now
  remove(20);
  remove(21);
  Captured d;
  VmReader::Counts n = r.delta(VmReader::Drain::kAll, capture(&d, 1, 4));
  EXPECT_EQ(n.records, 12u);
  EXPECT_EQ(n.tombstones, 2u);
  EXPECT_EQ(n.compact, 10u) << "entries sent in an earlier round travel as compact updates";
  EXPECT_EQ(n.seq_moved, 10u);
  ASSERT_EQ(d.msgs.size(), 3u);
  std::map<uint64_t, uint32_t> flow_of;  // fingerprint -> flow
  for (uint32_t i = 0; i < 40; i++) flow_of[vm_flow_key(i).fingerprint(kSeed)] = i;
  std::map<uint32_t, ConnRecord> got;  // by flow
  for (const ConnRecord& rec : d.all())
    got[rec.compact ? flow_of.at(rec.fingerprint) : rec.key.hi_port.host() - 10000] = rec;
  ASSERT_EQ(got.size(), 12u);
  for (uint32_t i = 0; i < 10; i++) {
    ASSERT_TRUE(got.count(i));
    EXPECT_TRUE(got[i].compact);
    EXPECT_FALSE(got[i].deleted);
    EXPECT_EQ(got[i].key.proto, vm_flow_key(i).proto);
    EXPECT_EQ(got[i].peer[0].end, 1000 + i + (i == 3 ? 200 : 100));
    EXPECT_EQ(got[i].bytes[0], i == 3 ? 200u : 100u);
  }
  EXPECT_TRUE(got[20].deleted && got[21].deleted);
  EXPECT_EQ(r.live(), 38u);
  // Nothing changed since: an empty delta sends no frame at all.
  Captured none;
  EXPECT_EQ(r.delta(VmReader::Drain::kAll, capture(&none, 2, 4)).records, 0u);
  EXPECT_TRUE(none.msgs.empty());
}

// A peer before version 7 takes whole records only.
TEST_F(VmStateIo, AnOlderPeerGetsWholeRecordsForUpdates) {
  for (uint32_t i = 0; i < 20; i++) add(i);
  VmReader r(*a, vm_a, 5);
  Captured snap, d;
  VmReader::FrameOut o = capture(&snap, 0, kRecordsPerFrame);
  o.version = kProtocolVersionCumulative;
  r.snapshot(o);
  for (uint32_t i = 0; i < 5; i++) advance(i, 10);
  o = capture(&d, 1, kRecordsPerFrame);
  o.version = kProtocolVersionCumulative;
  VmReader::Counts n = r.delta(VmReader::Drain::kAll, o);
  EXPECT_EQ(n.records, 5u);
  EXPECT_EQ(n.compact, 0u);
  for (const ConnRecord& rec : d.all()) EXPECT_FALSE(rec.compact);
}

// Frames through the installer: the snapshot's records teach it where each key is, the next
// round's compact updates land there exactly (per owner), and one whose entry is gone at the
// destination is counted unmatched, not applied elsewhere.
TEST_F(VmStateIo, CompactUpdatesLandOnTheEntriesTheSnapshotInstalled) {
  for (uint32_t i = 0; i < 300; i++) add(i);
  constexpr uint64_t kSeed = 0x5eed;
  VmReader r(*a, vm_a, kSeed);
  VmInstaller inst(*b, vm_b, kSeed);
  auto ship = [&](uint32_t round, bool snapshot) {
    Frames frames;
    VmReader::Counts c = snapshot ? r.snapshot(keep(&frames, round))
                                  : r.delta(VmReader::Drain::kAll, keep(&frames, round));
    install(inst, frames);
    return c;
  };
  ship(0, true);
  ASSERT_EQ(inst.applied, 300u);
  for (uint32_t i = 0; i < 300; i += 3) advance(i, 7);
  VmReader::Counts c = ship(1, false);
  EXPECT_EQ(c.compact, 100u);
  EXPECT_EQ(inst.applied, 400u);
  EXPECT_EQ(inst.unmatched, 0u);
  auto state_at_b = [&](uint32_t i, ConnEntry* e, ConnCounters* ctr) {
    const FlowKey k = vm_flow_key(i);
    const int32_t s = b->shard(b->owner_of(k)).lookup(k);
    return s >= 0 && b->shard(b->owner_of(k)).read(s, e, nullptr, ctr);
  };
  for (uint32_t i = 0; i < 300; i++) {
    ConnEntry e;
    ConnCounters ctr;
    ASSERT_TRUE(state_at_b(i, &e, &ctr)) << "flow " << i;
    EXPECT_EQ(e.peer[0].end, 1000 + i + (i % 3 == 0 ? 7 : 0)) << "flow " << i;
    EXPECT_EQ(ctr.bytes[0], i % 3 == 0 ? 7u : 0u) << "flow " << i;
    EXPECT_TRUE(e.flags & connflag::kPending);
  }
  // Flow 6's entry vanishes at the destination: its next compact update finds no entry.
  const FlowKey k6 = vm_flow_key(6);
  ConnTable& t6 = b->shard(b->owner_of(k6));
  t6.remove(static_cast<uint32_t>(t6.lookup(k6)));
  advance(6, 1);
  advance(9, 1);
  c = ship(2, false);
  EXPECT_EQ(c.compact, 2u);
  EXPECT_EQ(inst.unmatched, 1u);
  EXPECT_EQ(inst.applied, 401u);
  EXPECT_LT(t6.lookup(k6), 0) << "an update without its key does not bring the entry back";

  // A frame with a bad compact update queues nothing, the good ones before it included.
  EntriesMsg m;
  for (uint32_t i : {3u, 12u, 15u}) {
    ConnRecord u;
    u.compact = true;
    u.fingerprint = vm_flow_key(i).fingerprint(kSeed);
    u.key.proto = vm_flow_key(i).proto;
    u.version = 1000;
    u.l4_state = static_cast<uint8_t>(TcpState::kEstablished);
    m.records.push_back(u);
  }
  std::vector<uint8_t> bad = encode_frame(m, 5, 1);
  bad[kHeaderSize + 8 + 2 * kCompactRecordSize + 10] = 1;  // the third's reserved byte
  Frame f;
  ASSERT_EQ(decode_frame(bad.data(), bad.size(), &f), CodecError::kOk);
  bool queued = true;
  uint32_t n = 1;
  EXPECT_EQ(inst.submit(f, 1000, &queued, &n), CodecError::kBadValue);
  EXPECT_FALSE(queued);
  apply_at_b(inst);
  EXPECT_EQ(inst.applied, 401u);
  ConnEntry e;
  ConnCounters ctr;
  ASSERT_TRUE(state_at_b(3, &e, &ctr));
  EXPECT_NE(e.version.load(), 1000u);
}

// Version 8: B's PLACED for the snapshot round (a placement per entry record, in the order A
// sent them) teaches A where each entry went; the next round's updates name their places and
// land there with no fingerprint lookup (an installer that never learnt a fingerprint applies
// them), while a placement that names another entry's slot places nothing.
TEST_F(VmStateIo, PlacedUpdatesLandWherePlacedSaidWithNoLookup) {
  for (uint32_t i = 0; i < 300; i++) add(i);
  constexpr uint64_t kSeed = 0x91ace;
  VmReader r(*a, vm_a, kSeed);
  VmInstaller inst(*b, vm_b, kSeed);
  Frames frames;
  r.snapshot(keep(&frames, 0));
  install(inst, frames);
  ASSERT_EQ(inst.applied, 300u);
  const std::vector<uint32_t> places = inst.take_places();
  ASSERT_EQ(places.size(), 300u);
  EXPECT_TRUE(inst.take_places().empty()) << "the next round counts afresh";
  const unsigned bits = std::bit_width(b->worker_count() - 1u);
  auto place_of = [&](uint32_t i) {
    const FlowKey k = vm_flow_key(i);
    const uint16_t w = b->owner_of(k);
    return static_cast<uint32_t>(b->shard(w).lookup(k)) << bits | w;
  };
  std::set<uint32_t> expected, got(places.begin(), places.end());
  for (uint32_t i = 0; i < 300; i++) expected.insert(place_of(i));
  EXPECT_EQ(got, expected) << "each entry's slot and owner, once";
  EXPECT_FALSE(r.apply_placed(PlacedMsg{1, places})) << "another round's";
  EXPECT_FALSE(r.apply_placed(PlacedMsg{0, {places.begin(), places.end() - 1}})) << "one short";
  ASSERT_TRUE(r.apply_placed(PlacedMsg{0, places}));
  EXPECT_FALSE(r.apply_placed(PlacedMsg{0, places})) << "taken once";

  for (uint32_t i = 0; i < 300; i += 3) advance(i, 7);
  frames.clear();
  VmReader::Counts c = r.delta(VmReader::Drain::kAll, keep(&frames, 1));
  EXPECT_EQ(c.compact, 100u);
  EXPECT_EQ(c.placed, 100u);
  VmInstaller fresh(*b, vm_b, kSeed);  // knows no fingerprint
  install(fresh, frames);
  EXPECT_EQ(fresh.applied, 100u);
  EXPECT_EQ(fresh.unmatched, 0u);
  for (uint32_t i = 0; i < 300; i++) {
    const FlowKey k = vm_flow_key(i);
    ConnEntry e;
    ConnTable& t = b->shard(b->owner_of(k));
    ASSERT_TRUE(t.read(static_cast<uint32_t>(t.lookup(k)), &e, nullptr, nullptr));
    EXPECT_EQ(e.peer[0].end, 1000 + i + (i % 3 == 0 ? 7 : 0)) << "flow " << i;
  }

  // Flow 6's update sent with flow 7's place: nothing lands, and flow 7 is untouched.
  EntriesMsg m;
  ConnRecord u;
  u.compact = true;
  u.fingerprint = vm_flow_key(6).fingerprint(kSeed);
  u.key.proto = vm_flow_key(6).proto;
  u.place = place_of(7);
  u.version = 1000;
  u.l4_state = static_cast<uint8_t>(TcpState::kEstablished);
  m.records.push_back(u);
  u.place = (b->shard(0).slots() + 5) << bits;  // no such slot
  m.records.push_back(u);
  const std::vector<uint8_t> forged = encode_frame(m, 5, 1);
  Frame f;
  ASSERT_EQ(decode_frame(forged.data(), forged.size(), &f), CodecError::kOk);
  bool queued = false;
  uint32_t n = 0;
  ASSERT_EQ(fresh.submit(f, 1000, &queued, &n), CodecError::kOk);
  apply_at_b(fresh);
  EXPECT_EQ(fresh.unmatched, 2u);
  EXPECT_EQ(fresh.applied, 100u);
  const FlowKey k7 = vm_flow_key(7);
  ConnEntry e7;
  ConnTable& t7 = b->shard(b->owner_of(k7));
  ASSERT_TRUE(t7.read(static_cast<uint32_t>(t7.lookup(k7)), &e7, nullptr, nullptr));
  EXPECT_NE(e7.version.load(), 1000u);
}

// The owner's side of a compact update: it lands only on a live entry of the command's VM,
// installed from the peer, whose key has the update's fingerprint; anything else is counted
// unmatched and changes nothing, and an older version is stale.
TEST_F(VmStateIo, AnUpdateLandsOnlyWhereItsSlotStillHoldsItsKey) {
  for (uint32_t i = 0; i < 8; i++) add(i);
  constexpr uint64_t kSeed = 0x77;
  VmReader r(*a, vm_a, kSeed);
  VmInstaller inst(*b, vm_b, kSeed);
  Frames frames;
  r.snapshot(keep(&frames, 0));
  install(inst, frames);
  ASSERT_EQ(inst.applied, 8u);
  const FlowKey k3 = vm_flow_key(3), k4 = vm_flow_key(4);
  const uint16_t w = b->owner_of(k3);
  ConnTable& t = b->shard(w);
  const int32_t s3 = t.lookup(k3);
  ASSERT_GE(s3, 0);
  auto update = [&](uint64_t fp, uint32_t version) {
    ConnUpdate u;
    u.slot = static_cast<uint32_t>(s3);
    u.version = version;
    u.fingerprint = fp;
    u.idle_s = 0;
    u.proto = k3.proto;
    u.l4_state = static_cast<uint8_t>(TcpState::kEstablished);
    u.flags = 0;
    u.zone = 0;
    u.peer[0] = TcpPeer{};
    u.peer[0].end = 9000 + version;
    u.peer[1] = TcpPeer{};
    u.counters = ConnCounters{};
    return u;
  };
  auto run = [&](uint16_t vm, const ConnUpdate& u) {
    WorkerCommand c;
    c.vm = vm;
    c.fp_seed = kSeed;
    c.updates.push_back(u);
    ASSERT_TRUE(b->workers()[w]->command(&c));
    while (!c.done.load()) b->workers()[w]->housekeeping();
    EXPECT_EQ(c.applied + c.stale + c.unmatched, 1u);
    inst.applied += c.applied;
    inst.stale += c.stale;
    inst.unmatched += c.unmatched;
  };
  auto end_at_b = [&] {
    ConnEntry e;
    EXPECT_TRUE(t.read(static_cast<uint32_t>(s3), &e, nullptr, nullptr));
    return e.peer[0].end;
  };
  const uint32_t before = end_at_b();
  run(vm_b, update(k4.fingerprint(kSeed), 100));  // another key's fingerprint
  EXPECT_EQ(inst.unmatched, 1u);
  run(vm_b, update(k3.fingerprint(kSeed + 1), 100));  // another migration's
  EXPECT_EQ(inst.unmatched, 2u);
  run(static_cast<uint16_t>(vm_b + 1), update(k3.fingerprint(kSeed), 100));  // another VM
  EXPECT_EQ(inst.unmatched, 3u);
  EXPECT_EQ(end_at_b(), before);
  run(vm_b, update(k3.fingerprint(kSeed), 100));
  EXPECT_EQ(inst.applied, 9u);
  EXPECT_EQ(end_at_b(), 9100u);
  run(vm_b, update(k3.fingerprint(kSeed), 50));  // an older copy
  EXPECT_EQ(inst.stale, 1u);
  EXPECT_EQ(end_at_b(), 9100u);
}

TEST_F(VmStateIo, FramesInstallAtTheOwnersExactlyAndTwiceIsANoOp) {
  for (uint32_t i = 0; i < 300; i++) add(i);
  VmReader r(*a, vm_a);
  VmInstaller inst(*b, vm_b);
  Frames frames;
  r.snapshot(keep(&frames, 0));
  ASSERT_EQ(frames.size(), 5u);
  for (int pass = 0; pass < 2; pass++) {
    install(inst, frames);
    EXPECT_EQ(inst.applied, 300u) << "pass " << pass;
    EXPECT_EQ(inst.stale, pass == 0 ? 0u : 300u);
  }
  EXPECT_EQ(inst.failed, 0u);
  EXPECT_EQ(b->shard(0).vm_count(vm_b) + b->shard(1).vm_count(vm_b), 300u);
  for (uint32_t i = 0; i < 300; i++) {
    FlowKey k = vm_flow_key(i);
    uint16_t w = b->owner_of(k);
    int32_t s = b->shard(w).lookup(k);
    ASSERT_GE(s, 0) << "flow " << i;
    ConnEntry e;
    ConnCounters c;
    ASSERT_TRUE(b->shard(w).read(s, &e, nullptr, &c));
    EXPECT_EQ(e.peer[0].end, 1000 + i);
    EXPECT_EQ(e.peer[1].end, 5000 + i);
    EXPECT_EQ(c.packets[0], i);
    EXPECT_EQ(e.vm_id, vm_b);
    EXPECT_TRUE(e.flags & connflag::kPending);
  }
}

// A flow closed and opened again with the same key, in another slot, while the VM's ring
// overflowed: the delta walks the VM instead of the ring, and must send the old entry's
// tombstone before the new entry, whose version (a new entry's) is below the old one's.
TEST_F(VmStateIo, AKeyBackInAnotherSlotAfterARingOverflowArrivesAsTheNewEntry) {
  for (uint32_t i = 0; i < 40; i++) add(i);
  VmReader r(*a, vm_a);
  VmInstaller inst(*b, vm_b);
  ASSERT_TRUE(inst.submit(r.snapshot(), 1000));
  advance(5, 100);
  advance(5, 100);
  ASSERT_TRUE(inst.submit(r.delta(VmReader::Drain::kAll, nullptr), 1000));
  apply_at_b(inst);
  const FlowKey k = vm_flow_key(5);
  const uint16_t wb = b->owner_of(k);
  ASSERT_GE(b->shard(wb).lookup(k), 0);
  ASSERT_EQ(b->shard(wb).entry(b->shard(wb).lookup(k)).peer[0].end, 1205u);

  const uint32_t old_slot = slots[5];
  a->shard(a->owner_of(k)).remove(old_slot);  // neither change queued: the ring lost them
  add(5);
  ASSERT_NE(slots[5], old_slot);
  a->vms().slot(vm_a).dirty_overflow[0].store(true);
  ASSERT_TRUE(inst.submit(r.delta(VmReader::Drain::kAll, nullptr), 1000));
  apply_at_b(inst);
  const int32_t s = b->shard(wb).lookup(k);
  ASSERT_GE(s, 0) << "the old entry's tombstone removed the new one";
  EXPECT_EQ(b->shard(wb).entry(s).peer[0].end, 1005u) << "the new entry's state";
  EXPECT_EQ(inst.failed, 0u);
}

// The owner looks keys up a batch (32) ahead: a later record of the same key, in the same batch
// or the next, must see what an earlier one inserted or removed.
TEST_F(VmStateIo, RepeatedKeyWithinABatchSeesTheEarlierRecord) {
  auto rec = [](uint32_t i, uint32_t version, uint32_t end) {
    ConnRecord r;
    r.key = vm_flow_key(i);
    r.version = version;
    r.l4_state = static_cast<uint8_t>(TcpState::kEstablished);
    r.peer[0].end = end;
    return r;
  };
  EntriesMsg m;
  for (uint32_t i = 0; i < 20; i++) m.records.push_back(rec(i, 2, 100));
  m.records.push_back(rec(3, 4, 200));                   // update of an insert of this batch
  m.records.push_back(ConnRecord::tombstone(vm_flow_key(5), 4));  // removal of one
  m.records.push_back(rec(5, 6, 300));                   // and again
  m.records.push_back(ConnRecord::tombstone(vm_flow_key(7), 4));
  for (uint32_t i = 20; i < 40; i++) m.records.push_back(rec(i, 2, 100));  // past one batch
  m.records.push_back(rec(39, 8, 400));
  m.records.push_back(rec(0, 4, 500));                   // inserted by the batch before
  m.records.push_back(ConnRecord::tombstone(vm_flow_key(1), 4));  // and removed from it
  std::vector<uint8_t> fr = encode_frame(m, 1, 1);
  Frame f;
  ASSERT_EQ(decode_frame(fr.data(), fr.size(), &f), CodecError::kOk);
  // One worker, so that the batches are the frame's records in order.
  b = make_dp(unique_name("vb"), false, 1);
  ASSERT_TRUE(b);
  std::string err;
  auto idb = b->vms().add(a->vms().slot(vm_a).config, &err);
  ASSERT_TRUE(idb) << err;
  vm_b = *idb;
  VmInstaller inst(*b, vm_b);
  bool queued = false;
  uint32_t n = 0;
  ASSERT_EQ(inst.submit(f, 1000, &queued, &n), CodecError::kOk);
  EXPECT_EQ(n, m.records.size());
  apply_at_b(inst);
  EXPECT_EQ(inst.failed, 0u);
  EXPECT_EQ(inst.removed, 3u);
  auto end_of = [&](uint32_t i) -> int64_t {
    FlowKey k = vm_flow_key(i);
    int32_t s = b->shard(b->owner_of(k)).lookup(k);
    if (s < 0) return -1;
    return b->shard(b->owner_of(k)).entry(s).peer[0].end;
  };
  EXPECT_EQ(end_of(3), 200);
  EXPECT_EQ(end_of(5), 300);
  EXPECT_EQ(end_of(7), -1);
  EXPECT_EQ(end_of(39), 400);
  EXPECT_EQ(end_of(0), 500);
  EXPECT_EQ(end_of(1), -1);
  EXPECT_EQ(end_of(2), 100);
  EXPECT_EQ(b->shard(0).vm_count(vm_b), 38u);
}

TEST_F(VmStateIo, ABadFrameQueuesNothing) {
  EntriesMsg m;
  for (uint32_t i = 0; i < 10; i++) {
    ConnRecord r;
    r.key = vm_flow_key(i);
    r.version = 2;
    m.records.push_back(r);
  }
  std::vector<uint8_t> good = encode_frame(m, 1, 1);
  VmInstaller inst(*b, vm_b);
  auto submit = [&](std::vector<uint8_t> bytes, bool fix_len) {
    if (fix_len) {  // keep the header's body_len true to the bytes so the body is what is wrong
      uint32_t body = static_cast<uint32_t>(bytes.size() - kHeaderSize);
      bytes[8] = static_cast<uint8_t>(body >> 24);
      bytes[9] = static_cast<uint8_t>(body >> 16);
      bytes[10] = static_cast<uint8_t>(body >> 8);
      bytes[11] = static_cast<uint8_t>(body);
    }
    Frame f;
    EXPECT_EQ(decode_frame(bytes.data(), bytes.size(), &f), CodecError::kOk);
    bool queued = true;
    uint32_t n = 1;
    CodecError e = inst.submit(f, 1000, &queued, &n);
    EXPECT_FALSE(queued);
    EXPECT_EQ(n, 0u);
    return e;
  };
  std::vector<uint8_t> bad = good;
  bad[kHeaderSize + 8 + 3 * kConnRecordSize + 5] = 5;  // record 3: family 5
  EXPECT_EQ(submit(bad, false), CodecError::kBadValue);
  bad = good;
  bad.pop_back();  // last record one byte short
  EXPECT_EQ(submit(bad, true), CodecError::kTruncated);
  bad.resize(kHeaderSize + 6);  // not even round and count
  EXPECT_EQ(submit(bad, true), CodecError::kTruncated);
  bad = good;
  bad.push_back(0);
  EXPECT_EQ(submit(bad, true), CodecError::kTrailingBytes);
  bad = good;
  bad[kHeaderSize + 7] = 11;  // count 11, room for 10 records of 112 bytes
  EXPECT_EQ(submit(bad, false), CodecError::kTruncated);
  bad[kHeaderSize + 7] = 14;  // room for 13 compact updates (84 bytes), the smallest record
  EXPECT_EQ(submit(bad, false), CodecError::kBadCount);
  bad = encode_frame(m, 1, 1, kProtocolVersionCumulative);
  bad[kHeaderSize + 7] = 11;  // before version 7 every record has 112 bytes at least
  EXPECT_EQ(submit(bad, false), CodecError::kBadCount);
  std::vector<uint8_t> hello = encode_frame(HelloMsg{}, 1, 1);
  Frame hf;
  ASSERT_EQ(decode_frame(hello.data(), hello.size(), &hf), CodecError::kOk);
  bool queued = true;
  uint32_t n = 0;
  EXPECT_EQ(inst.submit(hf, 1000, &queued, &n), CodecError::kKindMismatch);
  apply_at_b(inst);
  EXPECT_EQ(inst.applied, 0u);
  EXPECT_EQ(b->shard(0).size() + b->shard(1).size(), 0u);
}

}  // namespace
}  // namespace baton::migrate
