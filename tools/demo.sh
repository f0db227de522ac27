#!/bin/bash
# Builds fulcrum and runs it in front of three local demo servers
# (conf/demo.yaml). Ctrl-C stops everything. Works on a fresh Debian 12
# machine as root: installs what it needs.
set -euo pipefail
cd "$(dirname "$0")/.."
source tools/deps.sh
install_packages "${FULCRUM_BUILD_PACKAGES[@]}"

build=build-demo
setup_build "$build" -Dtests=false
ninja -C "$build"

pids=()
cleanup() {
  local pid
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  wait 2>/dev/null || true
}
trap cleanup EXIT
trap 'exit 0' INT TERM

for server in alpha:9001 beta:9002 gamma:9003; do
  "$build/fulcrum-demo-server" "${server%%:*}" "127.0.0.1:${server##*:}" >/dev/null &
  pids+=($!)
done
"$build/fulcrum" --check -c conf/demo.yaml
"$build/fulcrum" -c conf/demo.yaml &
pids+=($!)
sleep 0.5

cat <<'TEXT'

fulcrum is running in front of three demo servers (alpha, beta, gamma; weights 1, 2, 3).
  connect:   nc 127.0.0.1 8080     (each connection is greeted by the server it reached, then echoed)
  try:       for i in $(seq 6); do echo hi | nc -N 127.0.0.1 8080; done
  dashboard: http://127.0.0.1:9100/   (JSON: /stats, Prometheus: /metrics)
  stop:      Ctrl-C
The access log of every session appears below.

TEXT
wait "${pids[-1]}"
