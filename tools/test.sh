#!/bin/bash
# Builds fulcrum and runs the whole test suite (unit and end-to-end), then
# prints one line `N passed, N failed`. Exit status non-zero on any failure.
# Works on a fresh Debian 12 machine as root: installs what it needs.
set -euo pipefail
cd "$(dirname "$0")/.."
source tools/deps.sh
install_packages "${FULCRUM_TEST_PACKAGES[@]}"

build=${FULCRUM_TEST_BUILD:-build-test}
setup_build "$build"
ninja -C "$build"

status=0
meson test -C "$build" --print-errorlogs "$@" || status=$?

python3 - "$build/meson-logs/testlog.json" <<'PY'
import json, sys
passed = failed = skipped = 0
with open(sys.argv[1]) as log:
    for line in log:
        result = json.loads(line)["result"]
        if result in ("OK", "EXPECTEDFAIL"):
            passed += 1
        elif result == "SKIP":
            skipped += 1
        else:
            failed += 1
summary = f"{passed} passed, {failed} failed"
if skipped:
    summary += f", {skipped} skipped"
print(summary)
PY
exit $status
