// SPDX-License-Identifier: Apache-2.0
//
// batonctl: the command-line client of batond's control API (DESIGN.md section 6).
//
// Each command is one HTTP request; the answer is printed as a table (src/control/
// cli_render.h) or, with --json, as the JSON the API returned. Endpoints (the contract batond
// implements):
//   ports        GET  /v1/ports
//   workers      GET  /v1/workers
//   vms          GET  /v1/vms
//   conns        GET  /v1/connections?vm=&addr=&state=&limit=
//   counters     GET  /v1/counters
//   migrations   GET  /v1/migrations
//   migrate prepare VM PEER...  POST /v1/vms/VM/migration {"peers": [...], "mode": "..."}
//   migrate pause|resume|abort VM  POST /v1/vms/VM/migration/<verb>
//   migrate status VM           GET  /v1/vms/VM/migration
// Exit status: 0 ok, 1 the API answered with an error (printed to stderr), 2 the API could
// not be reached, 64 bad usage.
#include <cctype>
#include <cstdio>
#include <cstdlib>
#include <iostream>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include <httplib.h>
#include <nlohmann/json.hpp>

#include "control/cli_render.h"

namespace {

using nlohmann::json;
namespace ctl = baton::control;

constexpr const char* kDefaultApi = "127.0.0.1:9090";
constexpr int kExitApiError = 1;
constexpr int kExitUnreachable = 2;
constexpr int kExitUsage = 64;

const char* kUsage = R"(usage: batonctl [--api HOST:PORT] [--json] COMMAND [ARGS]

commands:
  ports                          port counters
  workers                        worker counters and load
  vms                            VMs and their addresses
  conns [--vm NAME] [--addr IP] [--state STATE] [--limit N]
                                 connections, conntrack -L style
  counters                       totals and drops by reason
  migrations                     migrations in progress or recent
  nat mappings [--inside IP]     NAT mappings (dynamic, static, port forwards)
  nat blocks                     port blocks leased to inside hosts
  lb services|pools              load-balanced services; backends with health and connections
  lb sticky [--service NAME]     sticky entries
  migrate prepare VM PEER [PEER...] [--mode full|snapshot-only|off]
  migrate pause|resume|abort|status VM

options:
  --api HOST:PORT   control API address (default $BATON_API, else 127.0.0.1:9090)
  --json            print the API's JSON instead of a table
)";

struct Options {
  std::string api;
  bool json = false;
  std::vector<std::string> args;          // positional: command and its operands
  std::map<std::string, std::string> flags;  // command flags: --vm, --addr, ...
};

[[noreturn]] void usage_error(const std::string& msg) {
  std::cerr << "batonctl: " << msg << " (batonctl --help for usage)\n";
  std::exit(kExitUsage);
}

Options parse_args(int argc, char** argv) {
  Options o;
  const char* env = std::getenv("BATON_API");
  o.api = env && *env ? env : kDefaultApi;
  static const std::vector<std::string> kValued = {"api", "vm", "addr", "state", "limit", "mode", "inside", "service"};
  for (int i = 1; i < argc; ++i) {
    std::string a = argv[i];
    if (a == "-h" || a == "--help") {
      std::cout << kUsage;
      std::exit(0);
    }
    if (a == "--json") {
      o.json = true;
      continue;
    }
    if (a.rfind("--", 0) == 0) {
      std::string name = a.substr(2), value;
      auto eq = name.find('=');
      if (eq != std::string::npos) {
        value = name.substr(eq + 1);
        name.resize(eq);
      } else {
        if (i + 1 >= argc) usage_error("--" + name + " needs a value");
        value = argv[++i];
      }
      bool known = false;
      for (const auto& k : kValued) known = known || k == name;
      if (!known) usage_error("unknown option --" + name);
      if (name == "api")
        o.api = value;
      else
        o.flags[name] = value;
      continue;
    }
    o.args.push_back(std::move(a));
  }
  return o;
}

// Percent-encodes one path segment (a VM name may hold anything).
std::string encode_segment(const std::string& s) {
  static const char* kHex = "0123456789ABCDEF";
  std::string out;
  for (unsigned char c : s) {
    if (std::isalnum(c) || c == '-' || c == '_' || c == '.' || c == '~') {
      out += static_cast<char>(c);
    } else {
      out += '%';
      out += kHex[c >> 4];
      out += kHex[c & 15];
    }
  }
  return out;
}

class Api {
 public:
  explicit Api(const std::string& api) : api_(api) {
    // "host:port" or "[v6addr]:port"; the port is required.
    std::string host;
    int port = 0;
    std::size_t colon = std::string::npos;
    if (!api.empty() && api.front() == '[') {
      const auto close = api.find(']');
      if (close != std::string::npos && close + 1 < api.size() && api[close + 1] == ':') {
        host = api.substr(1, close - 1);
        colon = close + 1;
      }
    } else if (api.find(':') == api.rfind(':')) {
      colon = api.find(':');
      if (colon != std::string::npos) host = api.substr(0, colon);
    }
    if (colon != std::string::npos) {
      char* end = nullptr;
      const long p = std::strtol(api.c_str() + colon + 1, &end, 10);
      if (*end == '\0' && end != api.c_str() + colon + 1) port = static_cast<int>(p);
    }
    if (host.empty() || port <= 0 || port > 65535)
      usage_error("bad API address '" + api + "' (want HOST:PORT)");
    client_ = std::make_unique<httplib::Client>(host, port);
    client_->set_connection_timeout(3, 0);
    client_->set_read_timeout(30, 0);
    client_->set_write_timeout(10, 0);
  }

  json get(const std::string& path, const httplib::Params& params = {}) {
    return finish("GET", path, client_->Get(path, params, httplib::Headers{}));
  }

  json post(const std::string& path, const json& body) {
    return finish("POST", path, client_->Post(path, body.dump(), "application/json"));
  }

 private:
  json finish(const char* method, const std::string& path, const httplib::Result& res) {
    if (!res) {
      const auto err = res.error();
      if (err == httplib::Error::Connection)
        std::cerr << "batonctl: cannot connect to the control API at " << api_
                  << " (is batond running? use --api or BATON_API)\n";
      else
        std::cerr << "batonctl: " << method << " " << path << " to " << api_ << " failed: "
                  << httplib::to_string(err) << "\n";
      std::exit(kExitUnreachable);
    }
    json body = json::parse(res->body, nullptr, /*allow_exceptions=*/false);
    if (res->status < 200 || res->status > 299) {
      if (!body.is_discarded() && body.is_object() && body.contains("error"))
        std::cerr << body.dump() << "\n";
      else
        std::cerr << "batonctl: " << method << " " << path << ": HTTP " << res->status << " "
                  << res->body << "\n";
      std::exit(kExitApiError);
    }
    if (body.is_discarded()) {
      std::cerr << "batonctl: " << method << " " << path << ": answer is not JSON\n";
      std::exit(kExitApiError);
    }
    return body;
  }

  std::string api_;
  std::unique_ptr<httplib::Client> client_;
};

void print(const Options& o, const json& body, std::string (*render)(const json&)) {
  if (o.json)
    std::cout << body.dump(2) << "\n";
  else
    std::cout << render(body);
}

void expect_operands(const Options& o, std::size_t min, std::size_t max) {
  if (o.args.size() < min || o.args.size() > max)
    usage_error("wrong number of arguments for '" + o.args[0] + "'");
}

void expect_flags(const Options& o, std::initializer_list<const char*> allowed) {
  for (const auto& [name, value] : o.flags) {
    bool ok = false;
    for (const char* a : allowed) ok = ok || name == a;
    if (!ok) usage_error("--" + name + " does not apply to '" + o.args[0] + "'");
  }
}

int run(const Options& o) {
  if (o.args.empty()) usage_error("no command");
  const std::string& cmd = o.args[0];
  Api api(o.api);

  if (cmd == "ports" || cmd == "workers" || cmd == "vms" || cmd == "counters" ||
      cmd == "migrations") {
    expect_operands(o, 1, 1);
    expect_flags(o, {});
    const json body = api.get("/v1/" + cmd);
    print(o, body,
          cmd == "ports"      ? ctl::render_ports
          : cmd == "workers"  ? ctl::render_workers
          : cmd == "vms"      ? ctl::render_vms
          : cmd == "counters" ? ctl::render_counters
                              : ctl::render_generic);
    return 0;
  }

  if (cmd == "nat" || cmd == "lb") {
    expect_operands(o, 2, 2);
    const std::string& what = o.args[1];
    httplib::Params params;
    for (const auto& [name, value] : o.flags) params.emplace(name, value);
    if (cmd == "nat" && what == "mappings") {
      expect_flags(o, {"inside"});
      print(o, api.get("/v1/nat/mappings", params), ctl::render_nat_mappings);
    } else if (cmd == "lb" && what == "pools") {
      expect_flags(o, {});
      print(o, api.get("/v1/lb/pools"), ctl::render_lb_pools);
    } else if (cmd == "lb" && what == "sticky") {
      expect_flags(o, {"service"});
      print(o, api.get("/v1/lb/sticky", params), ctl::render_generic);
    } else if ((cmd == "nat" && what == "blocks") || (cmd == "lb" && what == "services")) {
      expect_flags(o, {});
      print(o, api.get("/v1/" + cmd + "/" + what), ctl::render_generic);
    } else {
      usage_error("unknown " + cmd + " listing '" + what + "'");
    }
    return 0;
  }

  if (cmd == "conns") {
    expect_operands(o, 1, 1);
    expect_flags(o, {"vm", "addr", "state", "limit"});
    httplib::Params params;
    for (const auto& [name, value] : o.flags) params.emplace(name, value);
    if (auto it = o.flags.find("limit"); it != o.flags.end()) {
      char* end = nullptr;
      const long n = std::strtol(it->second.c_str(), &end, 10);
      if (it->second.empty() || *end != '\0' || n <= 0) usage_error("--limit needs a positive number");
    }
    print(o, api.get("/v1/connections", params), ctl::render_conns);
    return 0;
  }

  if (cmd == "migrate") {
    if (o.args.size() < 3) usage_error("migrate needs a verb and a VM");
    const std::string& verb = o.args[1];
    const std::string base = "/v1/vms/" + encode_segment(o.args[2]) + "/migration";
    if (verb == "prepare") {
      expect_flags(o, {"mode"});
      if (o.args.size() < 4) usage_error("migrate prepare needs at least one PEER");
      json req = {{"peers", json::array()}};
      for (std::size_t i = 3; i < o.args.size(); ++i) req["peers"].push_back(o.args[i]);
      if (auto it = o.flags.find("mode"); it != o.flags.end()) {
        const std::string& m = it->second;
        if (m != "full" && m != "snapshot-only" && m != "off")
          usage_error("--mode is full, snapshot-only or off");
        req["mode"] = m;
      }
      print(o, api.post(base, req), ctl::render_generic);
      return 0;
    }
    expect_operands(o, 3, 3);
    expect_flags(o, {});
    if (verb == "pause" || verb == "resume" || verb == "abort") {
      print(o, api.post(base + "/" + verb, json::object()), ctl::render_generic);
      return 0;
    }
    if (verb == "status") {
      print(o, api.get(base), ctl::render_generic);
      return 0;
    }
    usage_error("unknown migrate verb '" + verb + "'");
  }

  usage_error("unknown command '" + cmd + "'");
}

}  // namespace

int main(int argc, char** argv) { return run(parse_args(argc, argv)); }
