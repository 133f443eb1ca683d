// SPDX-License-Identifier: Apache-2.0
//
// The handoff's sequence as MigrationEngine runs it, for in-process tests with two dataplanes
// (A, where the VM runs, and B, where it goes), one worker each: track, snapshot, freeze, final
// delta, activate, and the VM delete that ends it at A (after SUCCESS) or at B (rollback). Every
// record crosses the wire codec as ENTRIES frames of the negotiated version, and B's worker
// applies each frame's install command before the next (housekeeping). Shared by the NAT/LB
// (xlate_pipeline_test.cc) and L7 (l7_pipeline_test.cc) handoff tests.
#pragma once

#include <gtest/gtest.h>

#include <memory>
#include <string>
#include <vector>

#include "dataplane/dataplane.h"
#include "migrate/codec.h"
#include "migrate/vm_state_io.h"

namespace baton::pipetest {

struct HandoffSteps {
  Dataplane* a = nullptr;
  Dataplane* b = nullptr;
  uint16_t vm_a = 0, vm_b = 0;
  uint16_t version = migrate::kProtocolVersionMax;
  uint32_t round = 0;
  std::unique_ptr<migrate::VmReader> reader;
  std::unique_ptr<migrate::VmInstaller> inst;

  // Track, snapshot and ship; the VM arrives at B (state kArriving: its entries pending).
  void precopy() {
    std::string err;
    ASSERT_TRUE(a->vms().open_migration_rings(vm_a, 1, 1024, 8192, &err)) << err;
    auto idb = b->vms().add(a->vms().slot(vm_a).config, &err);
    ASSERT_TRUE(idb) << err;
    vm_b = *idb;
    b->vms().slot(vm_b).state.store(VmState::kArriving);
    ASSERT_TRUE(b->vms().open_migration_rings(vm_b, 1, 1024, 8192, &err)) << err;
    reader = std::make_unique<migrate::VmReader>(*a, vm_a);
    inst = std::make_unique<migrate::VmInstaller>(*b, vm_b);
    VmSlot& vs = a->vms().slot(vm_a);
    vs.epoch.fetch_add(1);
    vs.state.store(VmState::kTracking);
    a->grace_period();
    ship(Read::kSnapshot);
  }
  // A delta round while the VM still runs at A.
  void delta() {
    a->vms().slot(vm_a).epoch.fetch_add(1);
    a->grace_period();
    ship(Read::kRound);
  }
  // Freeze at A and ship the final delta.
  void final_delta() {
    a->vms().slot(vm_a).state.store(VmState::kFrozen);
    a->grace_period();
    ship(Read::kFinal);
  }
  enum class Read { kSnapshot, kRound, kFinal };
  void ship(Read what) {
    migrate::VmReader::FrameOut fo;
    fo.migration_id = 42;
    fo.round = round++;
    fo.version = version;
    std::vector<std::vector<uint8_t>> frames;
    fo.emit = [&](uint8_t* p, size_t n, uint32_t) { frames.emplace_back(p, p + n); };
    using Drain = migrate::VmReader::Drain;
    if (what == Read::kSnapshot)
      reader->snapshot(fo);
    else
      reader->delta(what == Read::kRound ? Drain::kEndedEpoch : Drain::kAll, fo);
    for (auto& fr : frames) {
      migrate::Frame f;
      ASSERT_EQ(migrate::decode_frame(fr.data(), fr.size(), &f), migrate::CodecError::kOk);
      EXPECT_EQ(f.header.version, version);
      bool queued = false;
      uint32_t n = 0;
      ASSERT_EQ(inst->submit(f, 1000, &queued, &n), migrate::CodecError::kOk);
      ASSERT_TRUE(queued);
      b->workers()[0]->housekeeping();
      ASSERT_TRUE(inst->wait(1000));
    }
  }
  void activate() {
    b->vms().slot(vm_b).state.store(VmState::kLocal);
    b->grace_period();
  }
  static void delete_vm(Worker& w, uint16_t vm) {
    WorkerCommand del;
    del.kind = WorkerCommand::Kind::kDeleteVm;
    del.vm = vm;
    ASSERT_TRUE(w.command(&del));
    w.housekeeping();
    ASSERT_TRUE(del.done.load());
  }
};

}  // namespace baton::pipetest
