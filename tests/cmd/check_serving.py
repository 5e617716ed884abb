#!/usr/bin/env python3
"""check_serving.py FILE...: the serving block of each result file (schema 1.4) holds what its
own per-request records give, recomputed here in float64 Python from the definitions of
doc/METRICS.md, independently of harness/serve/: TTFT = first token - arrival, E2E = finish -
arrival, queue = admit - arrival, TPOT = (E2E - TTFT) / (output - 1) for output > 1; mean,
population std, min, max, numpy-linear median/p90/p95/p99 and LoadGen's sorted[int(n * 0.99)];
throughputs over the summary's window; goodput (every objective given holds with <=, a one-token
request's TPOT counted 0); the MLPerf constraint (LoadGen percentiles <= the limits); and the
capacity search's bracket (the highest rate that met, the lowest that failed). Prints
"tw-test: PASS" or every difference, exits 1.

check_serving.py --selftest FILE: the check must fail on FILE with one measured request's finish
moved by 0.5 s, with a search trial's outcome flipped, and with the window changed."""
import json
import math
import sys


def lin(s, p):
    """numpy.percentile's default (linear) on sorted s."""
    r = p / 100.0 * (len(s) - 1)
    lo = math.floor(r)
    hi = min(lo + 1, len(s) - 1)
    return s[lo] + (r - lo) * (s[hi] - s[lo])


def dist(v):
    if not v:
        return dict(n=0, mean=None, std=None, min=None, max=None, median=None, p90=None,
                    p95=None, p99=None, p99_loadgen=None)
    s = sorted(v)
    n = len(s)
    m = math.fsum(s) / n
    return dict(n=n, mean=m, std=math.sqrt(math.fsum((x - m) ** 2 for x in s) / n), min=s[0],
                max=s[-1], median=lin(s, 50), p90=lin(s, 90), p95=lin(s, 95), p99=lin(s, 99),
                p99_loadgen=s[min(int(n * 0.99), n - 1)])


def close(a, b):
    if a is None or b is None:
        return a is None and b is None
    if isinstance(a, bool) or isinstance(b, bool):
        return a == b
    return abs(a - b) <= 1e-9 * max(1.0, abs(a), abs(b))


def check(path, fails, doc=None):
    if doc is None:
        doc = json.load(open(path))
    rows = doc["rows"] if doc["kind"] == "sweep" else [doc]
    n_blocks = 0
    for ri, row in enumerate(rows):
        sv = row.get("serving")
        if sv is None:
            continue
        n_blocks += 1
        where = f"{path}" + (f" rows[{ri}]" if doc["kind"] == "sweep" else "")
        s = sv["summary"]
        meas = [q for q in sv["requests"] if not q["warmup"]]
        ttft = [q["first_token_s"] - q["arrival_s"] for q in meas]
        e2e = [q["finish_s"] - q["arrival_s"] for q in meas]
        queue = [q["admit_s"] - q["arrival_s"] for q in meas]
        tpot = [(q["finish_s"] - q["first_token_s"]) / (q["output_tokens"] - 1)
                for q in meas if q["output_tokens"] > 1]
        w = s["t_end_s"] - s["t_start_s"]
        dev = s["n_devices"]
        out_tok = sum(q["output_tokens"] for q in meas)
        in_tok = sum(q["input_tokens"] for q in meas)
        want = {
            "n_measured": len(meas), "n_warmup_excluded": len(sv["requests"]) - len(meas),
            "n_single_token": sum(q["output_tokens"] == 1 for q in meas),
            "input_tokens": in_tok, "output_tokens": out_tok, "window_s": w,
            "request_rps": len(meas) / w, "output_tokens_per_s": out_tok / w,
            "total_tokens_per_s": (in_tok + out_tok) / w,
            "request_rps_per_device": len(meas) / w / dev,
            "output_tokens_per_s_per_device": out_tok / w / dev,
            "total_tokens_per_s_per_device": (in_tok + out_tok) / w / dev,
        }
        for name, v in (("ttft_s", ttft), ("tpot_s", tpot), ("e2e_s", e2e), ("queue_s", queue)):
            for k, x in dist(v).items():
                want[f"{name}.{k}"] = x
        g = s["goodput"]
        if g is not None:
            slo = g["slo"]
            good = [q for q, tt, ee in zip(meas, ttft, e2e)
                    if (slo["ttft_s"] is None or tt <= slo["ttft_s"])
                    and (slo["tpot_s"] is None or
                         (0.0 if q["output_tokens"] < 2 else
                          (ee - tt) / (q["output_tokens"] - 1)) <= slo["tpot_s"])
                    and (slo["e2e_s"] is None or ee <= slo["e2e_s"])]
            want["goodput.n_good"] = len(good)
            want["goodput.request_rps"] = len(good) / w
            want["goodput.output_tokens_per_s"] = sum(q["output_tokens"] for q in good) / w
            want["goodput.output_tokens_per_s_per_device"] = \
                sum(q["output_tokens"] for q in good) / w / dev
        lim = sv["limits"]
        if lim is not None:
            frac = lim["percentile"] / 100.0
            st, sp = sorted(ttft), sorted(tpot)
            tp = st[min(int(len(st) * frac), len(st) - 1)]
            pp = sp[min(int(len(sp) * frac), len(sp) - 1)] if sp else None
            want["constraint.ttft_pctl_s"] = tp
            want["constraint.tpot_pctl_s"] = pp
            want["constraint.ttft_met"] = tp <= lim["ttft_s"]
            want["constraint.tpot_met"] = pp is None or pp <= lim["tpot_s"]
            want["constraint.met"] = want["constraint.ttft_met"] and want["constraint.tpot_met"]
            want["constraint.min_duration_met"] = w >= lim["min_duration_s"]
        for key, x in want.items():
            o = s
            for k in key.split("."):
                o = o[k]
            if not close(o, x):
                fails.append(f"{where}: serving.summary.{key} is {o}, its requests give {x}")
        fr = sv["findrate"]
        if fr is not None:
            met = [t["rate_rps"] for t in fr["trials"] if t["met"]]
            failed = [t["rate_rps"] for t in fr["trials"] if not t["met"]]
            if not close(fr["rate_rps"], max(met) if met else None):
                fails.append(f"{where}: findrate.rate_rps {fr['rate_rps']} is not the highest "
                             f"rate that met")
            if not close(fr["upper_rps"], min(failed) if failed else None):
                fails.append(f"{where}: findrate.upper_rps {fr['upper_rps']} is not the lowest "
                             f"rate that failed")
            if fr["verdict"] == "found":
                d = fr["config"]["decimals"]
                lo, hi = fr["rate_rps"], fr["upper_rps"]
                if not (math.floor(lo * 10 ** d) + 1 >= math.floor(hi * 10 ** d)):
                    fails.append(f"{where}: found, but [{lo}, {hi}) is wider than LoadGen's "
                                 f"precision of {d} decimals")
    if n_blocks == 0:
        fails.append(f"{path}: no serving block")


def selftest(path):
    base = json.load(open(path))
    bad = []

    def moved(d):
        q = [q for q in d["serving"]["requests"] if not q["warmup"]][10]
        q["finish_s"] += 0.5

    def flipped(d):
        t = d["serving"]["findrate"]["trials"]
        t[0]["met"] = not t[0]["met"]

    def window(d):
        d["serving"]["summary"]["t_end_s"] += 1.0

    cases = [("a moved request", moved), ("a window changed", window)]
    if base["serving"]["findrate"] is not None:
        cases.append(("a flipped trial", flipped))
    for what, fn in cases:
        d = json.loads(json.dumps(base))
        fn(d)
        fails = []
        check(path, fails, d)
        if not fails:
            bad.append(what)
    for b in bad:
        print(f"tw-test: FAIL: the check passed {path} with {b}")
    if bad:
        return 1
    print(f"tw-test: PASS ({len(cases)} breakages caught)")
    return 0


def main():
    if sys.argv[1:2] == ["--selftest"] and len(sys.argv) == 3:
        return selftest(sys.argv[2])
    if len(sys.argv) < 2:
        print(__doc__)
        return 2
    fails = []
    for p in sys.argv[1:]:
        check(p, fails)
    for f in fails[:40]:
        print("tw-test: FAIL: " + f)
    if fails:
        return 1
    print(f"tw-test: PASS ({len(sys.argv) - 1} file(s))")
    return 0


if __name__ == "__main__":
    sys.exit(main())
