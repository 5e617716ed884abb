#!/usr/bin/env python3
"""check_fixture.py FIXTURE NEW [--incomplete]: the result file NEW of a deterministic run has
the content of the kept FIXTURE (tests/data/results/, captured before the run loop left
bench/cmd_run.c): the same keys at every level, the same JSON type for every value (an integer
stays an integer, a number does not become null), and the same values for everything that does
not depend on the clock or the machine: the scenario, the model, prompt and generated tokens,
the memory plan, the ceilings given on the command line, the decode bytes per step, the token
counts of the energy phases, units, labels, flags and the communicator's shape.

Not compared (their keys and types still are): provenance values, times and throughput figures
(metrics.*, ranks.*), energies and watts, the power trace, host names. Text that quotes figures is
compared with every number replaced by '#': an incomplete run's reason, and the projection
headline up to what the device would take (that scales with the measured throughput, words and
all: a slow machine "could not serve that demand"). A logits dump's path is compared by its file name. With --incomplete (a run stopped by a
signal after a varying number of repetitions) the repetition and token counts of the metrics and
energy phases are not compared either.

Keys a later schema added on purpose are listed in ADDED: NEW may carry them, nothing else.
Prints every difference (up to 40) and exits 1, or exits 0."""
import json
import os
import re
import sys

ROW = r"^(rows\.\*\.)?"
# keys added since the fixtures were captured (schema 1.1, doc/RESULTS.md), allowed in NEW only
ADDED = [
    ROW + r"plan$",  # each row's own plan: its combination and the engine it ran on
    r"^schema_minor$",
    # schema 1.3: how the read ceiling was measured, the bf16 ceiling, the flag for a fraction > 1
    r"^roofline\.(membw_method|peak_bf16_gflops|peak_bf16_source)$",
    ROW + r"metrics\.exceeds_ceiling$",
    # schema 1.3: the datasheet roofline and the fractions of it (machine-dependent values)
    r"^roofline\.(peak_dtype|datasheet_membw_gbps|datasheet_peak_gflops|datasheet_source)$",
    ROW + r"metrics\.(decode_bandwidth_fraction_datasheet|prefill_mfu_datasheet)$",
    # schema 1.5: the decode step's FLOPs and its fractions of the peak and of the roofline
    ROW + r"metrics\.(decode_flops_per_step|decode_gflops|decode_mfu|decode_roofline_fraction)$",
]
# leaves whose values are not compared
VOLATILE = [
    r"^provenance\.",
    ROW + r"metrics\.(prefill_tokens_per_s|decode_tokens_per_s|e2e_tokens_per_s|ttft_s|"
    r"decode_bandwidth_gbps|decode_bandwidth_fraction|prefill_gflops|prefill_mfu|"
    r"collective_share)$",
    ROW + r"metrics\.tpot_s\.(mean|p50|p99)$",
    ROW + r"metrics\.spread\.[a-z0-9_]+\.(median|mean|min|max|stddev)$",
    ROW + r"ranks\.\*\.(ttft_s|tpot_p50_s|decode_tokens_per_s|collective_share|mean_power_w)$",
    ROW + r"energy\.(prefill|decode|e2e)\.(energy_j|seconds|mean_power_w|"
    r"mean_power_w_per_device|peak_power_w|j_per_token|tokens_per_j)$",
    r"^comm\.rank_hosts\.\*$",
]
VOLATILE_INCOMPLETE = [
    ROW + r"metrics\.repetitions_complete$",
    ROW + r"metrics\.(tpot_s|spread\.[a-z0-9_]+)\.n$",
    ROW + r"energy\.(prefill|decode|e2e)\.(tokens|regions)$",
]
# subtrees not compared beyond their presence and type (sensor-specific, or arrays of samples)
OPAQUE = [ROW + r"energy\.provenance$", ROW + r"energy\.trace\.(t_s|power_w)$"]
MASKED = [ROW + r"incomplete_reason$"]
# the projection headline: what it was computed from (tokens/s, watts, their label, the scenario
# and its demand) is compared, numbers masked; what follows ("takes ...", or ": this device could
# not serve that demand" on a slow machine) scales with the measured throughput, words and all
HEADLINE = [ROW + r"projection_headline$"]
HEADLINE_TAIL = re.compile(r" takes |: this device could not serve")
BASENAME = [ROW + r"logits_dump\.path$"]


def kind(v):
    if v is None:
        return "null"
    if isinstance(v, bool):
        return "boolean"
    if isinstance(v, int):
        return "integer"
    if isinstance(v, float):
        return "real"
    if isinstance(v, str):
        return "string"
    if isinstance(v, list):
        return "array"
    return "object"


def matches(pats, path):
    return any(re.search(p, path) for p in pats)


def mask(s):
    return re.sub(r"[0-9]+(\.[0-9]+)?(e[+-]?[0-9]+)?", "#", s)


def compare(fx, new, path, volatile, out):
    shown = path or "(top)"
    if kind(fx) != kind(new):
        out.append(f"{shown}: {kind(fx)} in the fixture, {kind(new)} now")
        return
    if matches(OPAQUE, path):
        return
    if isinstance(fx, dict):
        for k in fx:
            sub = f"{path}.{k}" if path else k
            if k not in new:
                out.append(f"{sub}: missing now")
            else:
                compare(fx[k], new[k], sub, volatile, out)
        for k in new:
            sub = f"{path}.{k}" if path else k
            if k not in fx and not matches(ADDED, sub):
                out.append(f"{sub}: new key, not in the fixture (nor in ADDED)")
        return
    if isinstance(fx, list):
        if len(fx) != len(new):
            out.append(f"{shown}: {len(fx)} elements in the fixture, {len(new)} now")
            return
        for a, b in zip(fx, new):
            compare(a, b, f"{path}.*", volatile, out)
        return
    if matches(volatile, path):
        return
    if matches(MASKED, path):
        fx, new = mask(fx), mask(new)
    elif matches(HEADLINE, path):
        fx, new = mask(HEADLINE_TAIL.split(fx)[0]), mask(HEADLINE_TAIL.split(new)[0])
    elif matches(BASENAME, path):
        fx, new = os.path.basename(fx), os.path.basename(new)
    if fx != new:
        out.append(f"{shown}: {fx!r} in the fixture, {new!r} now")


def main():
    args = sys.argv[1:]
    incomplete = "--incomplete" in args
    args = [a for a in args if a != "--incomplete"]
    if len(args) != 2:
        print(__doc__)
        return 2
    docs = []
    for p in args:
        try:
            with open(p) as f:
                docs.append(json.load(f))
        except Exception as e:
            print(f"{p}: {e}")
            return 1
    volatile = VOLATILE + (VOLATILE_INCOMPLETE if incomplete else [])
    out = []
    compare(docs[0], docs[1], "", volatile, out)
    if out:
        for line in out[:40]:
            print(f"tw-test: FAIL: {line}")
        if len(out) > 40:
            print(f"tw-test: FAIL: ... and {len(out) - 40} more")
        return 1
    print(f"tw-test: PASS ({args[1]} has the content of {args[0]})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
