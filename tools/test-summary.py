#!/usr/bin/env python3
"""Prints `N passed, N failed` (after `N skipped` when any) from one or more
of meson's testlog.json files: the one closing line CI reads. A log that
does not exist counts as one failure (its build or its run never happened).
Each failure is named on a line of its own before that closing line, with
its build directory, so the tail of a CI log says what to look at."""

import json
import os
import sys

passed = skipped = 0
failures = []
for path in sys.argv[1:]:
    layer = path.split("/")[0]
    if not os.path.exists(path):
        failures.append(f"FAILED {layer}: no {path} (the layer did not build or run)")
        continue
    with open(path) as log:
        for line in log:
            test = json.loads(line)
            result = test["result"]
            if result in ("OK", "EXPECTEDFAIL"):
                passed += 1
            elif result == "SKIP":
                skipped += 1
            else:
                failures.append(f"FAILED {layer}: {test['name']} ({result})")
for failure in failures:
    print(failure)
# Skips (a test whose prerequisite is missing, e.g. root) get a line of their
# own, so the closing line is always exactly `N passed, N failed`.
if skipped:
    print(f"{skipped} skipped")
print(f"{passed} passed, {len(failures)} failed")
