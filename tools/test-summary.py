#!/usr/bin/env python3
"""Prints `N passed, N failed` (after `N skipped` when any) from one or more
of meson's testlog.json files: the one closing line CI reads. A log that
does not exist counts as one failure (its build or its run never happened)."""

import json
import os
import sys

passed = failed = skipped = 0
for path in sys.argv[1:]:
    if not os.path.exists(path):
        failed += 1
        continue
    with open(path) as log:
        for line in log:
            result = json.loads(line)["result"]
            if result in ("OK", "EXPECTEDFAIL"):
                passed += 1
            elif result == "SKIP":
                skipped += 1
            else:
                failed += 1
# Skips (a test whose prerequisite is missing, e.g. root) get a line of their
# own, so the closing line is always exactly `N passed, N failed`.
if skipped:
    print(f"{skipped} skipped")
print(f"{passed} passed, {failed} failed")
