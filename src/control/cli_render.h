// SPDX-License-Identifier: Apache-2.0
//
// cli_render: how batonctl prints control API answers for humans. Kept apart from the CLI's
// HTTP code so tests can check the output without a server.
//
// Every function takes the JSON exactly as the API returns it (see tools/batonctl.cc for the
// endpoint contract) and never throws on a missing or mistyped field: it prints "-" instead,
// so an older batonctl against a newer batond still shows what it can.
#pragma once

#include <string>
#include <vector>

#include <nlohmann/json.hpp>

namespace baton::control {

// A plain aligned table: header row then one row per entry; columns listed in `right` are
// right-aligned (numbers). Ends with a newline; no trailing spaces.
std::string render_table(const std::vector<std::string>& headers,
                         const std::vector<std::vector<std::string>>& rows,
                         const std::vector<bool>& right = {});

// One connection in `conntrack -L` form:
//   tcp      6 431999 ESTABLISHED src=10.0.0.1 dst=10.1.0.10 sport=40000 dport=80 packets=10
//   bytes=800 src=10.1.0.10 dst=10.0.0.1 sport=80 dport=40000 packets=9 bytes=700 [ASSURED]
//   vm=web1 zone=outside
// (one line). The third field is the time left before expiry (timeout_s - idle_s). The reply
// tuple is the mirrored original unless the entry carries reply_src/reply_dst/reply_sport/
// reply_dport (NAT). UDP shows no state, like conntrack; ICMP shows id= instead of ports.
std::string render_conn_line(const nlohmann::json& conn);
// All connections, one line each.
std::string render_conns(const nlohmann::json& conns);

std::string render_ports(const nlohmann::json& ports);
std::string render_workers(const nlohmann::json& workers);
std::string render_vms(const nlohmann::json& vms);
// /v1/nat/mappings and /v1/lb/pools (one row per backend).
std::string render_nat_mappings(const nlohmann::json& mappings);
std::string render_lb_pools(const nlohmann::json& pools);
// {drops: {reason: n}, totals: {name: n}}: two sections, drops sorted by count.
std::string render_counters(const nlohmann::json& counters);
// Anything else (migration status, the migration list): an array of objects becomes a table
// with the union of keys, an object becomes "key: value" lines, a scalar is printed as is.
std::string render_generic(const nlohmann::json& value);

// A field as text: strings as is, integers exactly, other numbers with up to 3 decimals,
// arrays joined with ',', missing/null/empty as "-".
std::string field_text(const nlohmann::json& object, const char* key);

}  // namespace baton::control
