#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# Installs everything Baton builds and tests with, from Debian 12 packages. Idempotent: a
# machine that has them all does no apt work at all.
set -euo pipefail

PKGS=(
  build-essential g++ meson ninja-build pkg-config
  libdpdk-dev dpdk-dev            # DPDK 22.11 (rte_hash, rte_acl, rte_ring, rte_rcu), dpdk-testpmd
  libyaml-cpp-dev prometheus-cpp-dev libgtest-dev libbpf-dev libssl-dev libcpp-httplib-dev nlohmann-json3-dev
  libpcap-dev
  iproute2 ethtool iperf3 curl netcat-openbsd tcpdump python3-scapy openssl procps psmisc
  iputils-ping iputils-arping
  valgrind jq
  python3-matplotlib              # bench/plot_migration.py (scripts/bench.sh)
)

missing=()
for p in "${PKGS[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -eq 0 ]; then
  exit 0
fi
if [ "$(id -u)" -ne 0 ]; then
  echo "install_deps: need root to install: ${missing[*]}" >&2
  exit 1
fi
echo "install_deps: installing ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
