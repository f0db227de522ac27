#!/bin/sh
# Runs one libFuzzer target for a while, as the meson test fuzz_NAME does:
#   run-fuzz.sh FUZZER SEEDS WORKDIR [libFuzzer options]
# for FUZZ_SECONDS (default 20). It starts from the seeds in SEEDS (read
# only) and keeps what it finds in WORKDIR, emptied first: new inputs in
# WORKDIR/corpus, a crashing input as WORKDIR/crash-* (libFuzzer's exit
# status then fails the test). The last lines give the executions made.
set -eu
fuzzer=$1 seeds=$2 work=$3
shift 3
rm -rf "$work"
mkdir -p "$work/corpus"
# libFuzzer's own exit status for a finding is 77, which meson reads as a
# skip: make every finding (crash, leak, slow input) exit 1.
exec "$fuzzer" -max_total_time="${FUZZ_SECONDS:-20}" -timeout=10 -print_final_stats=1 \
  -error_exitcode=1 -timeout_exitcode=1 -artifact_prefix="$work/" "$@" "$work/corpus" "$seeds"
