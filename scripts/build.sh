#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# Configures and builds Baton. BUILD_DIR (default build) and extra meson options as arguments,
# e.g. scripts/build.sh -Db_sanitize=address,undefined with BUILD_DIR=build-asan.
set -euo pipefail
cd "$(dirname "$0")/.."
dir=${BUILD_DIR:-build}
if [ ! -f "$dir/build.ninja" ]; then
  meson setup "$dir" "$@" >/dev/null
fi
ninja -C "$dir" >"$dir.log" 2>&1 || { tail -60 "$dir.log"; exit 1; }
