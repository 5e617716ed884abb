#!/usr/bin/env python3
"""check_fixture_selftest.py FIXTURE_DIR: check_fixture.py must accept a fixture against itself
and a copy whose clock-dependent figures changed, and must fail on each kind of change it exists
to catch: a token, the decode bytes per step, a scenario value, an integer written as a real, a
number become null, a key missing, a key added, a row dropped. Prints "tw-test: PASS" or the
first mutation that was not caught and exits 1."""
import copy
import json
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import check_fixture  # noqa: E402


def differences(a, b, incomplete=False):
    out = []
    vol = check_fixture.VOLATILE + (check_fixture.VOLATILE_INCOMPLETE if incomplete else [])
    check_fixture.compare(a, b, "", vol, out)
    return out


def main():
    d = sys.argv[1]
    single = json.load(open(os.path.join(d, "single.json")))
    sweep = json.load(open(os.path.join(d, "sweep.json")))
    fails = []
    for name, doc in (("single", single), ("sweep", sweep)):
        if differences(doc, copy.deepcopy(doc)):
            fails.append(f"{name} against itself differs")
    # the clock moves: other times, throughputs, energies and provenance are no difference
    moved = copy.deepcopy(single)
    moved["metrics"]["ttft_s"] *= 1.7
    moved["metrics"]["spread"]["e2e_tokens_per_s"]["max"] += 1
    moved["energy"]["e2e"]["energy_j"] *= 3
    moved["provenance"]["host"] = "elsewhere"
    moved["projection_headline"] = (moved["projection_headline"].replace("9528", "12")
                                    .replace("23 million devices", "940 thousand devices"))
    slow = copy.deepcopy(single)
    slow["projection_headline"] = slow["projection_headline"].split(" takes ")[0] + (
        ": this device could not serve that demand. It would take 9 million devices")
    if differences(single, slow):
        fails.append("a slow machine's headline was reported: %s" % differences(single, slow))
    if differences(single, moved):
        fails.append("clock-dependent changes were reported: %s" % differences(single, moved))

    def mutated(doc, fn):
        m = copy.deepcopy(doc)
        fn(m)
        return m

    cases = {
        "a generated token": (single, lambda m: m["generated_tokens"][0].__setitem__(0, 1)),
        "decode bytes per step": (single, lambda m: m["metrics"].__setitem__(
            "decode_bytes_per_step", m["metrics"]["decode_bytes_per_step"] + 2)),
        "scenario.batch": (single, lambda m: m["scenario"].__setitem__("batch", 2)),
        "an integer written as a real": (single, lambda m: m["scenario"].__setitem__("gen", 5.0)),
        "a figure become null": (single, lambda m: m["metrics"].__setitem__("ttft_s", None)),
        "a missing key": (single, lambda m: m["memory"].pop("kv_cache_bytes")),
        "an added key": (single, lambda m: m["scenario"].__setitem__("extra", 1)),
        "a dropped row": (sweep, lambda m: m["rows"].pop()),
        "a row's energy label": (sweep, lambda m: m["rows"][3]["energy"].__setitem__(
            "label", "other")),
        "the headline's words": (single, lambda m: m.__setitem__(
            "projection_headline", m["projection_headline"].replace("W per device", "W per chip"))),
        "the model": (single, lambda m: m["model"].__setitem__("vocab_size", 510)),
    }
    for what, (doc, fn) in cases.items():
        if not differences(doc, mutated(doc, fn)):
            fails.append(f"not caught: {what}")
    if fails:
        for f in fails:
            print(f"tw-test: FAIL: {f}")
        return 1
    print(f"tw-test: PASS ({len(cases)} mutations caught)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
