#!/bin/bash
# clang-tidy and clang-format over fulcrum's C++ sources:
#   ./tools/lint.sh tidy [BUILD_DIR]   # clang-tidy with .clang-tidy on every file of
#                                      # BUILD_DIR/compile_commands.json (default build-test)
#   ./tools/lint.sh format             # clang-format --dry-run --Werror with .clang-format
#                                      # on every tracked .cpp and .hpp file
# Exit status non-zero on any finding. The meson tests lint_tidy and
# lint_format (suite `lint`, in the default layer of tools/test.sh) run these.
set -euo pipefail
cd "$(dirname "$0")/.."
source tools/deps.sh
install_packages "${FULCRUM_LINT_PACKAGES[@]}"

case ${1:-} in
  tidy)
    build=${2:-build-test}
    if [[ ! -f $build/compile_commands.json ]]; then
      echo "$0: no $build/compile_commands.json (run meson setup $build first)" >&2
      exit 2
    fi
    # One clang-tidy per source file, on every CPU; .clang-tidy makes every
    # warning an error, so the exit status says whether there was any.
    run-clang-tidy -quiet -p "$build" "^$PWD/(src|tests|bench)/"
    ;;
  format)
    git ls-files '*.cpp' '*.hpp' | xargs clang-format --dry-run --Werror
    ;;
  *)
    echo "usage: $0 tidy [BUILD_DIR] | format" >&2
    exit 2
    ;;
esac
