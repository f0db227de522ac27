#!/bin/bash
# The shipped alerting rules (conf/prometheus/fulcrum-alerts.yml) are valid
# (`promtool check rules`) and raise exactly the alerts their unit tests
# expect on synthetic series (`promtool test rules`). promtool comes from
# Debian's prometheus package (tools/deps.sh); without it the test is
# skipped, except in CI (CI set), where it fails.
set -euo pipefail
cd "$(dirname "$0")/../.."
if ! command -v promtool > /dev/null; then
  if [[ -n ${CI:-} ]]; then
    echo "promtool is not installed (Debian package prometheus)" >&2
    exit 1
  fi
  echo "promtool is not installed: skipped"
  exit 77
fi
promtool check rules conf/prometheus/fulcrum-alerts.yml
promtool test rules tests/prometheus/fulcrum-alerts.test.yml
