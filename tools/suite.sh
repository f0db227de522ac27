#!/bin/bash
# The main test layer of tools/test.sh: builds fulcrum in build-test/ and runs
# meson's default suites there (unit, e2e, netns, systemd; the last two need
# root), then prints one line `N passed, N failed`. Extra arguments go to
# `meson test`. Exit status non-zero on any failure. Works on a fresh Debian
# 12 machine as root: installs what it needs.
set -euo pipefail
cd "$(dirname "$0")/.."
source tools/deps.sh
install_packages "${FULCRUM_TEST_PACKAGES[@]}"

build=${FULCRUM_TEST_BUILD:-build-test}
setup_build "$build"
ninja -C "$build"

status=0
meson test -C "$build" --print-errorlogs "$@" || status=$?

# The closing line (tools/test-summary.py), unless the caller prints it.
if [[ ${FULCRUM_NO_SUMMARY:-0} != 1 ]]; then
  python3 tools/test-summary.py "$build/meson-logs/testlog.json"
fi
exit $status
