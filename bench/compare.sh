#!/bin/bash
# The benchmark of issue #8 in one command: installs the peers (HAProxy,
# nginx with its stream module, iperf3, wrk), builds fulcrum in a release
# build directory of its own, then runs bench/compare.py with the arguments
# given here (see `bench/compare.sh --help` and docs/performance.md).
#   bench/compare.sh                  # the full comparison
#   bench/compare.sh --quick          # a short smoke check
set -euo pipefail
cd "$(dirname "$0")/.."
source tools/deps.sh
# deps.sh keeps Debian from starting the nginx and haproxy services it
# installs: the benchmark runs its own instances from a temporary directory.
install_packages "${FULCRUM_BUILD_PACKAGES[@]}" python3 haproxy nginx libnginx-mod-stream iperf3 wrk

build=build-release
setup_build "$build" --buildtype=release -Dtests=false
ninja -C "$build" fulcrum
exec python3 bench/compare.py "$@"
