#!/usr/bin/env python3
"""Totals of a meson test run: doctest cases for doctest suites, one per other
test. Prints "tests: N passed, M failed"; exits 1 if anything failed."""
import json
import re
import sys

SUMMARY = re.compile(r"\[doctest\] test cases:\s*(\d+) \|\s*(\d+) passed \|\s*(\d+) failed")
passed = failed = 0
with open(sys.argv[1]) as f:
    for line in f:
        if not line.strip():
            continue
        t = json.loads(line)
        ok = t.get("result") in ("OK", "EXPECTEDFAIL")
        m = SUMMARY.search(t.get("stdout") or "")
        if m:
            passed += int(m.group(2))
            failed += int(m.group(3))
            if not ok and int(m.group(3)) == 0:
                failed += 1  # exited non-zero after its cases (e.g. a crash in teardown)
        elif ok:
            passed += 1
        else:
            failed += 1
print(f"tests: {passed} passed, {failed} failed")
sys.exit(1 if failed else 0)
