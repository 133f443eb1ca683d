#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
#
# Runs the whole test suite from a clean clone: installs dependencies, builds a release and a
# sanitizer (ASan+UBSan) build, runs every GoogleTest binary in both, then the binary tests
# (real batond) and the end-to-end tests (real Linux TCP endpoints in network namespaces).
# Ends with one line "N passed, M failed" and exits non-zero if anything failed.
#
#   scripts/test.sh              everything
#   TEST_FILTER=e2e_fw scripts/test.sh   only end-to-end scripts whose name contains it
#   SKIP_ASAN=1 scripts/test.sh  skip the sanitizer build (quick local runs)
set -uo pipefail
cd "$(dirname "$0")/.."
ROOT=$(pwd)
RESULTS=$ROOT/test-results
rm -rf "$RESULTS"; mkdir -p "$RESULTS"

scripts/install_deps.sh || { echo "0 passed, 1 failed"; exit 1; }
scripts/build.sh || { echo "build failed"; echo "0 passed, 1 failed"; exit 1; }
if [ -z "${SKIP_ASAN:-}" ]; then
  BUILD_DIR=build-asan TARGETS=tests scripts/build.sh -Db_sanitize=address,undefined -Dbuildtype=plain -Doptimization=1 \
    -Db_lundef=false || { echo "sanitizer build failed"; echo "0 passed, 1 failed"; exit 1; }
fi

passed=0; failed=0; failures=(); skipped=()

# GoogleTest: count individual test cases from each binary's XML report.
run_gtests() {
  local dir=$1 tag=$2
  for bin in "$dir"/tests/*/*_test; do
    [ -x "$bin" ] || continue
    local name; name=$(basename "$bin")
    local xml=$RESULTS/$tag-$name.xml
    echo "== $tag $name"
    ASAN_OPTIONS=detect_leaks=0:abort_on_error=1 UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
      timeout 600 "$bin" --gtest_output="xml:$xml" >"$RESULTS/$tag-$name.log" 2>&1
    local rc=$?
    if [ -f "$xml" ]; then
      local t f
      t=$(grep -o 'tests="[0-9]*"' "$xml" | head -1 | tr -dc 0-9)
      f=$(grep -o 'failures="[0-9]*"' "$xml" | head -1 | tr -dc 0-9)
      passed=$((passed + t - f)); failed=$((failed + f))
      grep -q 'failures="0"' "$xml" || failures+=("$tag/$name")
      grep -E '^\[  (FAILED|PASSED) ' "$RESULTS/$tag-$name.log" | tail -n 20
    fi
    if [ $rc -ne 0 ] && { [ ! -f "$xml" ] || grep -q 'failures="0"' "$xml"; }; then
      # Crashed or sanitizer abort: the binary as a whole counts as one failure.
      failed=$((failed + 1)); failures+=("$tag/$name (exit $rc)")
      tail -n 30 "$RESULTS/$tag-$name.log"
    fi
  done
}

if [ -z "${TEST_FILTER:-}" ]; then
  run_gtests build release
  [ -z "${SKIP_ASAN:-}" ] && run_gtests build-asan asan
fi

# Binary and end-to-end tests: each script is one test; it cleans up after itself.
for t in tests/bin/test_*.sh tests/e2e/test_*.sh; do
  [ -f "$t" ] || continue
  case "$t" in *"${TEST_FILTER:-}"*) ;; *) continue ;; esac
  name=$(basename "$t" .sh)
  echo "== $name"
  # A script marked "# known-flaky: <why>" is reported, not run, unless BATON_RUN_FLAKY=1: an
  # open bug it exposes is recorded in the issue, and the rest of the suite stays meaningful.
  if flaky=$(sed -n 's/^# known-flaky: //p' "$t") && [ -n "$flaky" ] && [ -z "${BATON_RUN_FLAKY:-}" ]; then
    skipped+=("$name"); echo "   SKIPPED (known flaky: $flaky)"; continue
  fi
  start=$(date +%s)
  if BATON_BUILD=$ROOT/build timeout 900 bash "$t" >"$RESULTS/$name.log" 2>&1; then
    passed=$((passed + 1)); echo "   ok ($(( $(date +%s) - start ))s)"
  else
    failed=$((failed + 1)); failures+=("$name")
    echo "   FAILED ($(( $(date +%s) - start ))s); last lines:"; tail -n 40 "$RESULTS/$name.log" | sed 's/^/   | /'
  fi
done

if [ ${#failures[@]} -gt 0 ]; then
  echo "failed: ${failures[*]}"
fi
if [ ${#skipped[@]} -gt 0 ]; then
  echo "skipped as known flaky (BATON_RUN_FLAKY=1 runs them): ${skipped[*]}"
fi
echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ] && [ "$passed" -gt 0 ]
