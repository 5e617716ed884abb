#!/usr/bin/env python3
"""check_schema_selftest.py FIXTURE_DIR: doc/result.schema.json must accept the kept result
files and reject each kind of breakage a writer could make: a missing figure, a figure as text,
an unknown key (in a row, the scenario, the energy block, the top level), an incomplete run
without its reason, a complete run with one, a sweep without rows, a run with rows, assumed watts
without their figure, schema_version 2, a negative batch, a row with no repetition, a token id
that is not an integer; and (schema 1.2) the kept single run given a mixture of experts' block
and an expert-parallel scenario by hand must validate, and each breakage of those must not: a
missing expert figure, a load as a number, an unknown key in the block or in expert_parallel,
ep 1, a negative skew; (schema 1.4) the kept serving fixtures validate and each breakage of
their serving block does not. Prints "tw-test: PASS" or each breakage that validated, and exits 1."""
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
    moe = copy.deepcopy(single)
    moe["schema_minor"] = 2
    moe["scenario"].update({"routing_skew": 1.5, "devices": 2, "ep": 2})
    moe["experts"] = {
        "n_experts": 4, "experts_per_token": 2, "moe_layers": 2, "active_params": 95256,
        "routing_skew": 1.5, "load": [36, 20, 16, 16],
        "load_per_layer": [[16, 12, 10, 6], [20, 8, 6, 10]], "max_over_mean_load": 1.64,
        "decode_experts_per_layer": 2.5, "decode_experts_per_layer_uniform": 3.0,
        "expert_parallel": {"ep": 2, "dispatch_s": 0.25, "combine_s": 0.125,
                            "alltoall_share": 0.375, "alltoall_calls": 60,
                            "alltoall_bytes": 74752, "alltoall_algbw_gbps": 0.5,
                            "alltoall_busbw_gbps": 0.25}}
    serving = json.load(open(os.path.join(d, "serving.json")))
    findrate = json.load(open(os.path.join(d, "serving-findrate.json")))
    fails = []
    for name, doc in (("single", single), ("sweep", sweep), ("tp2", tp2), ("moe", moe),
                      ("serving", serving), ("serving-findrate", findrate)):
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
        ("experts without the uniform expectation", moe,
         delp(["experts", "decode_experts_per_layer_uniform"])),
        ("an expert load as a number", moe, setp(["experts", "load"], 88)),
        ("an expert load as reals", moe, setp(["experts", "load", 0], 3.5)),
        ("an unknown experts key", moe, setp(["experts", "imbalance"], 2)),
        ("an unknown expert_parallel key", moe, setp(["experts", "expert_parallel", "mb"], 1)),
        ("all-to-all bytes as text", moe, setp(["experts", "expert_parallel", "alltoall_bytes"],
                                                "73 KB")),
        ("scenario ep 1", moe, setp(["scenario", "ep"], 1)),
        ("a negative routing skew", moe, setp(["scenario", "routing_skew"], -1)),
        ("experts without their count", moe, delp(["experts", "n_experts"])),
        ("an unknown serving key", serving, setp(["serving", "qps"], 3)),
        ("a serving block without its requests", serving, delp(["serving", "requests"])),
        ("an unknown serving scenario", serving, setp(["serving", "scenario"], "burst")),
        ("a latency percentile as text", serving,
         setp(["serving", "summary", "ttft_s", "p99"], "0.2 s")),
        ("a latency distribution of n 0 with figures", serving,
         setp(["serving", "summary", "tpot_s", "n"], 0)),
        ("an unknown summary key", serving, setp(["serving", "summary", "ttft_p99_s"], 0.2)),
        ("goodput without its objectives", serving,
         delp(["serving", "summary", "goodput", "slo"])),
        ("a constraint without its verdict", serving,
         delp(["serving", "summary", "constraint", "met"])),
        ("limits of zero", serving, setp(["serving", "limits", "tpot_s"], 0)),
        ("a request with 0 output tokens", serving,
         setp(["serving", "requests", 3, "output_tokens"], 0)),
        ("a request with an unknown key", serving, setp(["serving", "requests", 3, "ttft_s"], 1)),
        ("an incomplete serving block without its reason", serving,
         setp(["serving", "complete"], False)),
        ("an unknown search verdict", findrate, setp(["serving", "findrate", "verdict"], "ok")),
        ("a trial without its outcome", findrate,
         delp(["serving", "findrate", "trials", 0, "met"])),
        ("a search of 0 trials", findrate, setp(["serving", "findrate", "trials"], [])),
        ("a search of 65 max trials", findrate,
         setp(["serving", "findrate", "config", "max_trials"], 65)),
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
