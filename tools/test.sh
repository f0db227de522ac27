#!/bin/bash
# The README's test command, and what CI runs (.ci/run): builds fulcrum and
# runs every test layer, each in its own build directory, then prints the one
# closing line `N passed, N failed`, counted over all of them from their
# meson testlog.json (tools/test-summary.py):
#   default  tools/suite.sh: unit, e2e, netns and systemd tests (build-test/)
#   asan     tools/sanitize.sh asan: unit and e2e under ASan, LSan, UBSan (build-asan/)
#   tsan     tools/sanitize.sh tsan: unit and e2e under TSan (build-tsan/)
#   fuzz     tools/fuzz.sh: each libFuzzer target for 20 s (build-fuzz/)
# FULCRUM_LAYERS picks layers (default: all four, in that order). Arguments,
# if any, go to `meson test` of the default layer, which then runs alone:
#   ./tools/test.sh --suite unit      ./tools/test.sh e2e_upload_sha
# Works on a fresh Debian 12 machine as root: each layer installs the Debian
# packages it needs. Exits non-zero on any failure; a layer that could not
# run at all counts as one failure.
set -uo pipefail
cd "$(dirname "$0")/.."

layers=${FULCRUM_LAYERS:-default asan tsan fuzz}
(($#)) && layers=default
status=0
logs=()

# run_layer BUILD_DIR COMMAND...: runs one layer and keeps its log's path.
run_layer() {
  local log=$1/meson-logs/testlog.json
  shift
  rm -f "$log"  # never count a previous run's results
  logs+=("$log")
  local started=$SECONDS
  FULCRUM_NO_SUMMARY=1 "$@" || status=1
  echo "== $* took $((SECONDS - started)) s"
}

for layer in $layers; do
  case $layer in
    default) run_layer build-test bash tools/suite.sh "$@" ;;
    asan | tsan) run_layer "build-$layer" bash tools/sanitize.sh "$layer" ;;
    fuzz) run_layer build-fuzz bash tools/fuzz.sh ;;
    *) echo "test.sh: unknown layer '$layer' (default, asan, tsan, fuzz)" >&2; exit 2 ;;
  esac
done
python3 tools/test-summary.py "${logs[@]}" || status=1
exit $status
