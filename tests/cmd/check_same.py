#!/usr/bin/env python3
"""check_same.py A.json B.json KEY...: the two result files hold equal values at every dotted KEY
("generated_tokens", "experts.load", "metrics.decode_bytes_per_step"; a single run's row keys are
at the top). A key missing from either file is a failure. Used to hold a parallel run to the
same run on one rank (cmake/tests.cmake). Prints "tw-test: PASS" or each difference, exits 1."""
import json
import sys


def get(doc, key):
    v = doc
    for k in key.split("."):
        if not isinstance(v, dict) or k not in v:
            raise KeyError(key)
        v = v[k]
    return v


def main():
    if len(sys.argv) < 4:
        print(__doc__)
        return 2
    docs = []
    for p in sys.argv[1:3]:
        try:
            with open(p) as f:
                docs.append(json.load(f))
        except Exception as e:
            print(f"tw-test: FAIL: {p}: {e}")
            return 1
    bad = 0
    for key in sys.argv[3:]:
        try:
            a, b = get(docs[0], key), get(docs[1], key)
        except KeyError:
            print(f"tw-test: FAIL: {key} is missing from {sys.argv[1]} or {sys.argv[2]}")
            bad += 1
            continue
        if a != b:
            print(f"tw-test: FAIL: {key}: {str(a)[:300]} in {sys.argv[1]}, "
                  f"{str(b)[:300]} in {sys.argv[2]}")
            bad += 1
    if bad:
        return 1
    print(f"tw-test: PASS ({len(sys.argv) - 3} keys equal)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
