#!/bin/bash
# Issue 18's benchmark in one command: installs what bench/kernel_compare.py
# needs (tools/deps.sh's install_packages, which keeps Debian from starting
# the nginx, haproxy and iperf3 services it installs: the benchmark runs its
# own instances inside its namespaces), builds fulcrum in the release build
# directory build-bench, then runs bench/kernel_compare.py with the
# arguments given here (see bench/README.md).
#   bench/kernel_compare.sh                # 3 rounds x 5 s, every variant
#   bench/kernel_compare.sh --quick        # a smoke check, under a minute
set -euo pipefail
cd "$(dirname "$0")/.."
source tools/deps.sh
# ip (iproute2), nft (nftables), conntrack (flushed between variants), the
# peers (HAProxy, nginx with its stream module: also the real servers'
# http), the clients (wrk, iperf3: also the servers' iperf3 -s).
KERNEL_BENCH_PACKAGES=(python3 iproute2 nftables conntrack haproxy nginx libnginx-mod-stream iperf3 wrk)
install_packages "${FULCRUM_BUILD_PACKAGES[@]}" "${KERNEL_BENCH_PACKAGES[@]}"

build=build-bench
# GCC 12's false -Wrestrict in a release build (bench/README.md, sched_bench).
setup_build "$build" --buildtype=release -Dtests=false -Dcpp_args=-Wno-error=restrict
nice -n 19 ninja -C "$build" fulcrum
exec python3 bench/kernel_compare.py --fulcrum "$build/fulcrum" "$@"
