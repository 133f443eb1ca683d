// SPDX-License-Identifier: Apache-2.0
//
// batond: the Baton daemon. Loads and validates the config (refusing a bad one before touching
// anything), starts EAL with the ports it names, runs the workers on their lcores and the
// control side (API, metrics, migration engine) on the main lcore's thread, and on SIGTERM or
// SIGINT stops polling, drains, frees the ports and exits 0 with the final counters logged.
#include <rte_eal.h>
#include <rte_lcore.h>
#include <unistd.h>

#include <csignal>
#include <cstdio>
#include <cstring>
#include <string>
#include <thread>
#include <vector>

#include "common/log.h"
#include "config/config.h"
#include "control/daemon_api.h"
#include "dataplane/dataplane.h"
#include "dataplane/ports.h"
#include "migrate/engine.h"

namespace {

volatile std::sig_atomic_t g_stop = 0;
void on_signal(int) { g_stop = 1; }

void usage() {
  std::fprintf(stderr,
               "usage: batond --config FILE.yaml [--check] [--log-level debug|info|warn|error]\n"
               "  --check   validate the config and exit (0 = valid)\n");
}

// EAL arguments from the config: one lcore for the control side plus one per worker, mapped
// round-robin onto the CPUs we may run on (two instances on a 2-core test machine share them).
std::vector<std::string> eal_args(const baton::Config& cfg) {
  std::vector<std::string> a = {"batond"};
  long cpus = sysconf(_SC_NPROCESSORS_ONLN);
  if (cpus < 1) cpus = 1;
  std::string lcores;
  for (unsigned i = 0; i <= cfg.workers; i++) {
    if (i) lcores += ",";
    lcores += std::to_string(i) + "@" + std::to_string(i % cpus);
  }
  a.push_back("--lcores=" + lcores);
  a.push_back("--file-prefix=" + cfg.eal.file_prefix);
  a.push_back("-m");
  a.push_back(std::to_string(cfg.eal.memory_mb));
  if (cfg.eal.no_huge) a.push_back("--no-huge");
  a.push_back("--log-level=lib.eal:warning");
  for (const std::string& s : baton::Ports::eal_args(cfg)) a.push_back(s);
  for (const std::string& s : cfg.eal.extra_args) a.push_back(s);
  return a;
}

}  // namespace

int main(int argc, char** argv) {
  std::string config_path;
  bool check_only = false;
  for (int i = 1; i < argc; i++) {
    std::string arg = argv[i];
    if (arg == "--config" && i + 1 < argc) {
      config_path = argv[++i];
    } else if (arg == "--check") {
      check_only = true;
    } else if (arg == "--log-level" && i + 1 < argc) {
      std::string l = argv[++i];
      baton::set_log_level(l == "debug"  ? baton::LogLevel::kDebug
                           : l == "warn" ? baton::LogLevel::kWarn
                           : l == "error" ? baton::LogLevel::kError
                                          : baton::LogLevel::kInfo);
    } else {
      usage();
      return 2;
    }
  }
  if (config_path.empty()) {
    usage();
    return 2;
  }
  baton::ConfigError cerr;
  std::optional<baton::Config> cfg = baton::load_config(config_path, &cerr);
  if (!cfg) {
    std::fprintf(stderr, "batond: config refused: %s\n", cerr.to_string().c_str());
    return 2;
  }
  if (check_only) {
    std::printf("%s: ok\n", config_path.c_str());
    return 0;
  }

  std::vector<std::string> args = eal_args(*cfg);
  std::vector<char*> argv_eal;
  for (std::string& s : args) argv_eal.push_back(s.data());
  if (rte_eal_init(static_cast<int>(argv_eal.size()), argv_eal.data()) < 0) {
    std::fprintf(stderr, "batond: EAL init failed (args:");
    for (auto& s : args) std::fprintf(stderr, " %s", s.c_str());
    std::fprintf(stderr, ")\n");
    return 1;
  }

  std::string err;
  auto dp = baton::Dataplane::create(*cfg, true, &err);
  if (!dp) {
    BLOG_ERR("batond", "%s", err.c_str());
    rte_eal_cleanup();
    return 1;
  }
  baton::MigrationEngine engine(*dp);
  if (!engine.start(&err)) {
    BLOG_ERR("batond", "migration: %s", err.c_str());
    dp.reset();
    rte_eal_cleanup();
    return 1;
  }
  baton::DaemonApi api(*dp, &engine);
  if (!api.start(&err)) {
    BLOG_ERR("batond", "%s", err.c_str());
    engine.stop();
    dp.reset();
    rte_eal_cleanup();
    return 1;
  }
  if (!dp->start(&err)) {
    BLOG_ERR("batond", "%s", err.c_str());
    api.stop();
    engine.stop();
    dp.reset();
    rte_eal_cleanup();
    return 1;
  }
  std::signal(SIGTERM, on_signal);
  std::signal(SIGINT, on_signal);
  BLOG_INFO("batond", "instance %s running: %u workers, %zu ports, control %s, metrics %s",
            cfg->instance.c_str(), cfg->workers, cfg->ports.size(),
            cfg->control.listen.c_str(), cfg->metrics.listen.c_str());

  while (!g_stop) usleep(50 * 1000);

  BLOG_INFO("batond", "stopping");
  api.stop();
  engine.stop();
  dp->stop();
  api.log_final_counters();
  dp.reset();
  rte_eal_cleanup();
  BLOG_INFO("batond", "stopped");
  return 0;
}
