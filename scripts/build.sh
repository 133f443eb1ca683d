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
# TARGETS=tests builds only the GoogleTest binaries (the sanitizer build needs nothing else).
targets=()
if [ "${TARGETS:-}" = tests ]; then
  mapfile -t targets < <(ninja -C "$dir" -t targets all | grep -oE '^tests/[a-z0-9_]+/[a-z0-9_]+_test(:| )' | tr -d ': ' | sort -u)
fi
ninja -C "$dir" "${targets[@]}" >"$dir.log" 2>&1 || { tail -60 "$dir.log"; exit 1; }
