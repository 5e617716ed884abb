#!/usr/bin/env python3
"""check_csv.py FILE [--rows N] [--numeric COL[,COL...]] [--has COL[,COL...]] [--expr EXPR]:
parses FILE with Python's csv module (RFC 4180 quoting) and checks that every line has as many
cells as the header, that there are N data rows, that each --has column exists, that each
--numeric column exists and holds a plain number (float() accepts it, no unit or bound sign) in
every row, and that each --expr (with `rows`, a list of dicts) is true."""
import csv
import sys


def main():
    args = sys.argv[1:]
    if not args:
        print(__doc__)
        return 2
    path, args = args[0], args[1:]
    want_rows, numeric, has, exprs = None, [], [], []
    while args:
        k, v, args = args[0], args[1], args[2:]
        if k == "--rows":
            want_rows = int(v)
        elif k == "--numeric":
            numeric += v.split(",")
        elif k == "--has":
            has += v.split(",")
        elif k == "--expr":
            exprs.append(v)
        else:
            print(f"unknown option {k}")
            return 2
    with open(path, newline="") as f:
        lines = list(csv.reader(f, strict=True))
    if not lines:
        print(f"{path}: empty")
        return 1
    head = lines[0]
    for i, line in enumerate(lines[1:], 2):
        if len(line) != len(head):
            print(f"{path}:{i}: {len(line)} cells, the header has {len(head)}")
            return 1
    rows = [dict(zip(head, line)) for line in lines[1:]]
    if want_rows is not None and len(rows) != want_rows:
        print(f"{path}: {len(rows)} data rows, expected {want_rows}")
        return 1
    for c in has + numeric:
        if c not in head:
            print(f"{path}: no column {c!r} (columns: {', '.join(head)[:2000]})")
            return 1
    for c in numeric:
        for i, row in enumerate(rows, 2):
            try:
                float(row[c])
            except ValueError:
                print(f"{path}:{i}: column {c!r} is not a plain number: {row[c]!r}")
                return 1
    for e in exprs:
        if not eval(e, {"rows": rows, "float": float, "len": len, "all": all, "any": any}):
            print(f"{path}: not true: {e}")
            return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
