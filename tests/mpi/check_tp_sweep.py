#!/usr/bin/env python3
"""Checks the result file of a `tokwatt run --tp LIST` sweep (ctest mpi_run_tp_sweep_*).

usage: check_tp_sweep.py RESULT.json TPLIST LAUNCHED_RANKS ROWS_PER_DEGREE

Asserts: one row per combination, degrees outermost in the order given; each row's scenario
tp/devices is its degree and its per-rank figures list exactly ranks 0..tp-1; tp=1 rows spent
no time in collectives and tp>1 rows some; the same (dtype, batch, prompt, gen) generated the
same greedy tokens at every degree (the sharded engine matches tp=1); the communicator block
names the launched rank count. Prints "tw-test: PASS" or "tw-test: FAIL ..." and exits 0/1.
"""
import json
import sys


def main():
    path, tplist, launched, per = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
    tps = [int(t) for t in tplist.split(",")]
    r = json.load(open(path))
    fails = []
    rows = r.get("rows", [])
    if r.get("kind") != "sweep" or not r.get("complete"):
        fails.append("kind %r complete %r" % (r.get("kind"), r.get("complete")))
    if len(rows) != len(tps) * per:
        fails.append("%d rows, expected %d (%d degrees x %d)" % (len(rows), len(tps) * per,
                                                                  len(tps), per))
    if r.get("comm", {}).get("ranks") != launched:
        fails.append("comm.ranks %r, expected %d" % (r.get("comm", {}).get("ranks"), launched))
    tokens = {}
    for i, row in enumerate(rows):
        want = tps[i // per]
        sc = row["scenario"]
        if sc["tp"] != want or sc["devices"] != want:
            fails.append("row %d: tp %r devices %r, expected %d" % (i, sc["tp"], sc["devices"], want))
        ranks = [q["rank"] for q in row.get("ranks", [])]
        if ranks != list(range(want)):
            fails.append("row %d (tp %d): per-rank figures of ranks %r" % (i, want, ranks))
        share = row["metrics"]["collective_share"]
        if (want == 1) != (share == 0):
            fails.append("row %d (tp %d): collective share %r" % (i, want, share))
        gen = row["generated_tokens"]
        if not gen or not all(len(g) == sc["gen"] for g in gen):
            fails.append("row %d: generated tokens %r" % (i, gen))
        key = (sc["dtype"], sc["kv_dtype"], sc["batch"], sc["prompt"], sc["gen"])
        if key in tokens and tokens[key][1] != gen:
            fails.append("row %d: tp %d generated %r but tp %d generated %r for %r"
                         % (i, want, gen, tokens[key][0], tokens[key][1], key))
        tokens.setdefault(key, (want, gen))
    if len(tokens) != per:
        fails.append("%d distinct combinations per degree, expected %d" % (len(tokens), per))
    for f in fails:
        print("tw-test: FAIL " + f)
    if not fails:
        print("tw-test: PASS %d rows, degrees %s in order, identical tokens at every degree"
              % (len(rows), tplist))
    return 1 if fails else 0


if __name__ == "__main__":
    sys.exit(main())
