#!/bin/bash
# Builds the libFuzzer targets (tests/fuzz/) with clang, ASan and UBSan in
# build-fuzz/ and runs each one for FUZZ_SECONDS (default 20) from its seeds,
# as the meson tests of suite `fuzz`; then prints `N passed, N failed`.
#   ./tools/fuzz.sh
#   FUZZ_SECONDS=600 ./tools/fuzz.sh fuzz_config    # a long run of one target
# Extra arguments go to `meson test`. Only the fuzz targets are built.
set -euo pipefail
cd "$(dirname "$0")/.."
source tools/deps.sh
install_packages "${FULCRUM_FUZZ_PACKAGES[@]}"

build=build-fuzz
CXX=clang++ setup_build "$build" -Dfuzz=true -Dtests=false -Db_sanitize=address,undefined -Db_lundef=false
targets=()
for source in tests/fuzz/*_fuzz.cpp; do
  targets+=("tests/fuzz/$(basename "$source" .cpp)")
done
ninja -C "$build" "${targets[@]}"

status=0
meson test -C "$build" --no-rebuild --suite fuzz --print-errorlogs "$@" || status=$?
if [[ ${FULCRUM_NO_SUMMARY:-0} != 1 ]]; then
  python3 tools/test-summary.py "$build/meson-logs/testlog.json"
fi
exit $status
