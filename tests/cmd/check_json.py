#!/usr/bin/env python3
"""check_json.py FILE EXPR...: loads the JSON file FILE as `r` and checks that every Python
expression EXPR is true (also available: `rows`, the result's rows: r["rows"] for a sweep,
[r] for a single run). Prints the first failing expression and exits 1; exits 0 when all hold.
Used by cmake/tests.cmake for checks on result files and --format json output."""
import json
import math
import re
import sys


def main():
    if len(sys.argv) < 3:
        print(__doc__)
        return 2
    path = sys.argv[1]
    try:
        with open(path) as f:
            r = json.load(f)
    except Exception as e:  # a missing or broken file is a failure with its reason
        print(f"{path}: {e}")
        return 1
    rows = r.get("rows", [r]) if isinstance(r, dict) else r
    env = {"r": r, "rows": rows, "math": math, "re": re, "len": len, "all": all, "any": any,
           "abs": abs, "isinstance": isinstance}
    for expr in sys.argv[2:]:
        try:
            ok = eval(expr, env)
        except Exception as e:
            print(f"{path}: {expr}: {type(e).__name__}: {e}")
            return 1
        if not ok:
            print(f"{path}: not true: {expr}")
            return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
