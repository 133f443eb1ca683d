// SPDX-License-Identifier: Apache-2.0
#include "control/cli_render.h"

#include <string>

#include <gtest/gtest.h>

namespace baton::control {
namespace {

using nlohmann::json;

json web1_conn() {
  return json::parse(R"({
    "proto": "tcp", "state": "established", "src": "10.0.0.1", "sport": 40000,
    "dst": "10.1.0.10", "dport": 80, "vlan": 0, "vm": "web1", "zone": "outside",
    "packets_orig": 10, "bytes_orig": 800, "packets_reply": 9, "bytes_reply": 700,
    "idle_s": 1, "timeout_s": 432000, "version": 3, "owner": 1, "flags": []
  })");
}

TEST(RenderConns, ConntrackStyleLine) {
  EXPECT_EQ(render_conn_line(web1_conn()),
            "tcp      6 431999 ESTABLISHED src=10.0.0.1 dst=10.1.0.10 sport=40000 dport=80 "
            "packets=10 bytes=800 src=10.1.0.10 dst=10.0.0.1 sport=80 dport=40000 packets=9 "
            "bytes=700 vm=web1 zone=outside");
}

TEST(RenderConns, FlagsVlanAndNatReplyTuple) {
  json c = web1_conn();
  c["flags"] = {"assured"};
  c["vlan"] = 100;
  c["reply_src"] = "192.168.1.5";
  c["reply_dport"] = 61000;
  EXPECT_EQ(render_conn_line(c),
            "tcp      6 431999 ESTABLISHED src=10.0.0.1 dst=10.1.0.10 sport=40000 dport=80 "
            "packets=10 bytes=800 src=192.168.1.5 dst=10.0.0.1 sport=80 dport=61000 packets=9 "
            "bytes=700 [ASSURED] vm=web1 zone=outside vlan=100");
}

TEST(RenderConns, UdpHasNoStateAndExpiredClampsToZero) {
  json c = web1_conn();
  c["proto"] = "udp";
  c["state"] = "replied";
  c["idle_s"] = 50;
  c["timeout_s"] = 30;
  c["vm"] = "";
  const std::string line = render_conn_line(c);
  EXPECT_EQ(line.rfind("udp      17 0 src=10.0.0.1 ", 0), 0u) << line;
  EXPECT_EQ(line.find("vm="), std::string::npos) << line;
}

TEST(RenderConns, IcmpShowsIdAndMissingFieldsDoNotThrow) {
  json c = {{"proto", "icmp"}, {"src", "10.0.0.1"}, {"dst", "10.0.0.2"}, {"sport", 77}};
  const std::string line = render_conn_line(c);
  // No counters in the row (conntrack.accounting off): none printed, as conntrack -L does.
  EXPECT_EQ(line.rfind("icmp     1 0 src=10.0.0.1 dst=10.0.0.2 id=77 src=10.0.0.2 dst=10.0.0.1 id=-",
                       0),
            0u)
      << line;
  EXPECT_EQ(line.find("packets="), std::string::npos) << line;
  EXPECT_NO_THROW(render_conn_line(json::object()));
  EXPECT_NO_THROW(render_conn_line(json(42)));
}

TEST(RenderConns, OneLinePerConnection) {
  json list = json::array({web1_conn(), web1_conn()});
  const std::string out = render_conns(list);
  EXPECT_EQ(std::count(out.begin(), out.end(), '\n'), 2);
  EXPECT_EQ(render_conns(json::array()), "");
}

TEST(RenderPorts, AlignedTable) {
  json ports = json::parse(R"([
    {"name": "wan0", "device": "0000:03:00.0", "zone": "outside", "rx_packets": 1234567,
     "rx_bytes": 99999999, "tx_packets": 5, "tx_bytes": 300, "rx_errors": 0, "tx_errors": 0,
     "rx_missed": 12},
    {"name": "lan0", "device": "net_tap0", "zone": "inside", "rx_packets": 1,
     "rx_bytes": 60, "tx_packets": 2, "tx_bytes": 120, "rx_errors": 0, "tx_errors": 0,
     "rx_missed": 0}
  ])");
  EXPECT_EQ(render_ports(ports),
            "NAME  DEVICE        ZONE     RX_PKTS  RX_BYTES  TX_PKTS  TX_BYTES  RX_ERR  TX_ERR  RX_MISSED\n"
            "wan0  0000:03:00.0  outside  1234567  99999999        5       300       0       0         12\n"
            "lan0  net_tap0      inside         1        60        2       120       0       0          0\n");
}

TEST(RenderVms, AddressesJoinedAndEmptyAsDash) {
  json vms = json::parse(R"([
    {"id": 1, "name": "web1", "mac": "52:54:00:00:00:01", "ipv4": ["10.1.0.10", "10.1.0.11"],
     "ipv6": [], "vlan": 100, "state": "active", "connections": 17},
    {"id": 2, "name": "db", "mac": "52:54:00:00:00:02", "ipv4": ["10.1.0.12"], "ipv6": [],
     "vlan": 0, "state": "local", "connections": 3,
     "lifetime": {"from_vm": {"packets": 40, "bytes": 5120}, "to_vm": {"packets": 30, "bytes": 1800}},
     "half_open": {"from_vm": 2, "to_vm": 11, "limit": 256},
     "qos": {"rate_bps": 40000000, "burst_bytes": 500000, "dropped_from_vm": 12,
             "dropped_to_vm": 7}}
  ])");
  EXPECT_EQ(render_vms(vms),
            "ID  NAME  MAC                IPV4                 IPV6  VLAN  STATE   CONNS  BYTES_FROM/TO     HALF_OPEN  QOS  QOS_DROPS\n"
            " 1  web1  52:54:00:00:00:01  10.1.0.10,10.1.0.11  -      100  active     17              -             -    -          -\n"
            " 2  db    52:54:00:00:00:02  10.1.0.12            -        0  local       3      5120/1800  2/11 max 256  40M       12/7\n");
}

TEST(RenderNat, MappingsOneRowEach) {
  json m = json::parse(R"([{"type":"snat","proto":"udp","inside":"10.1.0.2:5000","outside":"203.0.113.10:20064","sessions":2,"expires_in_s":null,"owner":1},
                           {"type":"static","proto":"any","inside":"10.1.0.3","outside":"203.0.113.50"}])");
  EXPECT_EQ(render_nat_mappings(m),
            "TYPE    PROTO  INSIDE         OUTSIDE             SESSIONS  EXPIRES  WORKER\n"
            "snat    udp    10.1.0.2:5000  203.0.113.10:20064         2        -       1\n"
            "static  any    10.1.0.3       203.0.113.50               -        -       -\n");
}

TEST(RenderLb, PoolsOneRowPerBackend) {
  json p = json::parse(R"([{"name":"web","backends":[
      {"address":"10.2.0.11","port":8000,"weight":3,"admin":"up","healthy":false,"active_connections":0,"total_connections":313},
      {"address":"10.2.0.12","port":8000,"weight":2,"admin":"draining","healthy":true,"active_connections":4,"total_connections":193}]}])");
  EXPECT_EQ(render_lb_pools(p),
            "POOL  BACKEND         WEIGHT  ADMIN     HEALTH  ACTIVE  TOTAL\n"
            "web   10.2.0.11:8000       3  up        down         0    313\n"
            "web   10.2.0.12:8000       2  draining  up           4    193\n");
}

TEST(RenderWorkers, BusyAsPercent) {
  json w = json::parse(R"([{"id": 0, "lcore": 1, "rx_packets": 10, "tx_packets": 9,
                            "dropped": 1, "busy_ratio": 0.125, "connections": 3}])");
  const std::string out = render_workers(w);
  EXPECT_NE(out.find("12.5%"), std::string::npos) << out;
  EXPECT_EQ(out.rfind("ID  LCORE  RX_PKTS", 0), 0u) << out;
}

TEST(RenderCounters, DropsSortedByCount) {
  json c = json::parse(R"({"totals": {"rx_packets": 100},
                           "drops": {"acl_deny": 3, "bad_checksum": 9, "no_route": 3}})");
  EXPECT_EQ(render_counters(c),
            "TOTAL       VALUE\n"
            "rx_packets    100\n"
            "\n"
            "DROP_REASON   PACKETS\n"
            "bad_checksum        9\n"
            "acl_deny            3\n"
            "no_route            3\n");
}

TEST(RenderGeneric, ObjectsArraysScalars) {
  EXPECT_EQ(render_generic(json{{"phase", "precopy"}, {"sent_entries", 10}}),
            "phase:        precopy\nsent_entries: 10\n");
  EXPECT_EQ(render_generic(json::array()), "(none)\n");
  EXPECT_EQ(render_generic(json::parse(R"([{"vm": "web1", "phase": "freeze"},
                                           {"vm": "db", "bytes": 5}])")),
            // Keys come sorted (nlohmann::json objects are ordered maps).
            "PHASE   VM    BYTES\n"
            "freeze  web1  -\n"
            "-       db    5\n");
  EXPECT_EQ(render_generic(json(1.5)), "1.5\n");
}

}  // namespace
}  // namespace baton::control
