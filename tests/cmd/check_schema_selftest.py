#!/usr/bin/env python3
"""check_schema_selftest.py FIXTURE_DIR: doc/result.schema.json must accept the kept result
files and reject each kind of breakage a writer could make: a missing figure, a figure as text,
an unknown key (in a row, the scenario, the energy block, the top level), an incomplete run
without its reason, a complete run with one, a sweep without rows, a run with rows, assumed watts
without their figure, schema_version 2, a negative batch, a row with no repetition, a token id
that is not an integer. Prints "tw-test: PASS" or each breakage that validated, and exits 1."""
import copy
import json
import os
import sys

import jsonschema


def main():
    d = sys.argv[1]
    here = os.path.dirname(os.path.abspath(__file__))
    with open(os.path.join(here, "..", "..", "doc", "result.schema.json")) as f:
        v = jsonschema.Draft202012Validator(json.load(f))
    single = json.load(open(os.path.join(d, "single.json")))
    sweep = json.load(open(os.path.join(d, "sweep.json")))
    tp2 = json.load(open(os.path.join(d, "tp2.json")))
    fails = []
    for name, doc in (("single", single), ("sweep", sweep), ("tp2", tp2)):
        errs = list(v.iter_errors(doc))
        if errs:
            fails.append(f"the kept {name}.json does not validate: {errs[0].message}")

    def setp(path, val):
        def f(m):
            o = m
            for k in path[:-1]:
                o = o[k]
            o[path[-1]] = val
        return f

    def delp(path):
        def f(m):
            o = m
            for k in path[:-1]:
                o = o[k]
            del o[path[-1]]
        return f

    cases = [
        ("a missing figure", single, delp(["metrics", "ttft_s"])),
        ("a figure as text", single, setp(["metrics", "e2e_tokens_per_s"], "9528 t/s")),
        ("an unknown top-level key", single, setp(["extra"], 1)),
        ("an unknown scenario key", single, setp(["scenario", "batch_size"], 1)),
        ("an unknown energy key", single, setp(["energy", "watts"], 100)),
        ("an unknown key in a sweep row", sweep, setp(["rows", 0, "note"], "x")),
        ("a sweep row without completeness", sweep, delp(["rows", 1, "complete"])),
        ("incomplete without a reason", single, setp(["complete"], False)),
        ("complete with a reason", single, setp(["incomplete_reason"], "why")),
        ("a sweep without rows", sweep, delp(["rows"])),
        ("a run with rows", single, setp(["rows"], sweep["rows"])),
        ("assumed watts without their figure", single, delp(["energy", "assumed_w_per_device"])),
        ("schema_version 2", single, setp(["schema_version"], 2)),
        ("batch 0", single, setp(["scenario", "batch"], 0)),
        ("a row without a complete repetition", single, setp(["metrics", "repetitions_complete"], 0)),
        ("a token id as a real", single, setp(["generated_tokens", 0, 0], 3.5)),
        ("an unknown energy source", single, setp(["energy", "source"], "guess")),
        ("ranks as a number", tp2, setp(["ranks"], 2)),
        ("a rank without its figures", tp2, delp(["ranks", 1, "ttft_s"])),
        ("combined without ranks", tp2, delp(["energy", "ranks"])),
        ("a phase with an unknown key", single, setp(["energy", "decode", "joules"], 1)),
        ("provenance without the host", single, delp(["provenance", "host"])),
        ("a bad UTC time", single, setp(["provenance", "end_utc"], "yesterday")),
        ("a missing memory parameter count", single, delp(["memory", "params"])),
    ]
    for what, doc, fn in cases:
        m = copy.deepcopy(doc)
        fn(m)
        if v.is_valid(m):
            fails.append(f"validated although broken: {what}")
    if fails:
        for f in fails:
            print(f"tw-test: FAIL: {f}")
        return 1
    print(f"tw-test: PASS ({len(cases)} breakages rejected)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
