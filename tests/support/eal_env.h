// SPDX-License-Identifier: Apache-2.0
//
// The EAL of a test binary: --no-huge, its own file prefix (test binaries run in parallel, and
// each removes its runtime directory when done), no PCI. One per binary:
//
//   ::testing::Environment* const kEal =
//       ::testing::AddGlobalTestEnvironment(new EalEnv("table_test", 512, {"-l", "0"}));
#pragma once

#include <gtest/gtest.h>
#include <rte_eal.h>
#include <unistd.h>

#include <filesystem>
#include <string>
#include <system_error>
#include <utility>
#include <vector>

namespace baton {

class EalEnv : public ::testing::Environment {
 public:
  // name: the binary's, and its file prefix's stem; mem_mb: EAL memory (-m); lcores: how the
  // lcores are given ({"-l", "0"}, {"--lcores", "..."}), or nothing for every CPU.
  EalEnv(std::string name, int mem_mb, std::vector<std::string> lcores = {})
      : name_(std::move(name)), mem_mb_(mem_mb), lcores_(std::move(lcores)) {}

  void SetUp() override {
    std::vector<std::string> args = {name_, "--no-huge", "-m", std::to_string(mem_mb_),
                                     "--no-pci", "--file-prefix",
                                     name_ + "_" + std::to_string(getpid()), "--log-level=error"};
    args.insert(args.end(), lcores_.begin(), lcores_.end());
    std::vector<char*> argv;
    for (auto& a : args) argv.push_back(a.data());
    ASSERT_GE(rte_eal_init(static_cast<int>(argv.size()), argv.data()), 0) << "rte_eal_init failed";
  }
  void TearDown() override {
    const std::string dir = rte_eal_get_runtime_dir();  // this process's alone
    rte_eal_cleanup();
    std::error_code ec;
    std::filesystem::remove_all(dir, ec);
  }

 private:
  std::string name_;
  int mem_mb_;
  std::vector<std::string> lcores_;
};

}  // namespace baton
