// SPDX-License-Identifier: Apache-2.0
//
// A Dataplane without ports (Dataplane::create(cfg, with_ports = false)) from a YAML text, as
// the in-process tests build theirs: a config error or a refused create is a test failure
// (with the loader's file:line reason or create's), and nullptr.
#pragma once

#include <gtest/gtest.h>

#include <functional>
#include <memory>
#include <string>

#include "config/config.h"
#include "dataplane/dataplane.h"

namespace baton {

// file: the name errors are reported under; edit: changes to the parsed config before create.
inline std::unique_ptr<Dataplane> test_dataplane(const std::string& yaml, const std::string& file,
                                                 const std::function<void(Config&)>& edit = {}) {
  ConfigError ce;
  auto cfg = parse_config(yaml, file, &ce);
  EXPECT_TRUE(cfg) << ce.to_string();
  if (!cfg) return nullptr;
  if (edit) edit(*cfg);
  std::string err;
  auto dp = Dataplane::create(*cfg, false, &err);
  EXPECT_TRUE(dp) << err;
  return dp;
}

}  // namespace baton
