#!/bin/bash
# Builds fulcrum with sanitizers and runs the unit and e2e suites under them,
# then prints `N passed, N failed` (a layer of tools/test.sh):
#   ./tools/sanitize.sh asan   # AddressSanitizer + LeakSanitizer + UBSan, in build-asan/
#   ./tools/sanitize.sh tsan   # ThreadSanitizer, in build-tsan/
# Extra arguments go to `meson test` (a suite, one test). Any report fails the
# test that caused it: a unit test aborts; an e2e test finds the report files
# of its processes (tests/e2e/harness.py, route_sanitizer_reports).
set -euo pipefail
cd "$(dirname "$0")/.."
source tools/deps.sh
install_packages "${FULCRUM_SANITIZE_PACKAGES[@]}"

if (($# < 1)); then
  echo "usage: $0 asan|tsan [meson test arguments]" >&2
  exit 2
fi
kind=$1
shift
case $kind in
  asan)
    build=build-asan
    options=(-Db_sanitize=address,undefined -Db_lundef=false)
    # Stop at the first error of any kind, with a stack, and check for leaks
    # at every exit (fulcrum exits normally after SIGTERM).
    export ASAN_OPTIONS=detect_leaks=1:halt_on_error=1:abort_on_error=1:check_initialization_order=1:strict_init_order=1:detect_stack_use_after_return=1
    export UBSAN_OPTIONS=halt_on_error=1:abort_on_error=1:print_stacktrace=1
    ;;
  tsan)
    build=build-tsan
    options=(-Db_sanitize=thread)
    # Report every race and go on (the e2e harness collects the reports);
    # exit status 66 at exit when there was one.
    export TSAN_OPTIONS=halt_on_error=0:second_deadlock_stack=1
    ;;
  *)
    echo "$0: unknown sanitizer build '$kind' (asan or tsan)" >&2
    exit 2
    ;;
esac

setup_build "$build" "${options[@]}"
ninja -C "$build"

status=0
# clang-tidy and clang-format (suite lint) judge the sources, not the build:
# tools/test.sh runs them once. The systemd suite installs the build into a
# minimal Debian container, which has no sanitizer runtimes. The soak test
# runs in the default layer only: minutes of load, several times slower
# under a sanitizer, would double the layer's time.
meson test -C "$build" --no-suite lint --no-suite systemd --no-suite soak --print-errorlogs "$@" || status=$?
if [[ ${FULCRUM_NO_SUMMARY:-0} != 1 ]]; then
  python3 tools/test-summary.py "$build/meson-logs/testlog.json"
fi
exit $status
