#!/usr/bin/env python3
"""check_layers.py BUILD SRC: the layers the build enforces (CMakeLists.txt). Each probe
tests/layers/<layer>_includes_*.c includes a header of a layer above its own, or a backend's
private header, and is compiled (-fsyntax-only) with the exact command compile_commands.json
holds for a file of <layer> (kernels: kernels/backend.c; harness: harness/tw_util.c). Every probe
must fail, and for want of the header it names (not some other error); the layer's own file must
compile with the same command, so that a probe cannot fail for a reason of its own. Prints one
line per check and "tw-test: PASS", or the failures and exits 1."""
import json
import os
import re
import shlex
import subprocess
import sys

build, src = os.path.abspath(sys.argv[1]), os.path.abspath(sys.argv[2])
with open(os.path.join(build, "compile_commands.json")) as f:
    db = json.load(f)
LAYER_FILE = {"kernels": "kernels/backend.c", "harness": "harness/tw_util.c"}


def command_for(rel):
    want = os.path.realpath(os.path.join(src, rel))
    for e in db:
        path = e["file"] if os.path.isabs(e["file"]) else os.path.join(e["directory"], e["file"])
        if os.path.realpath(path) == want:
            args = e.get("arguments") or shlex.split(e["command"])
            return e["directory"], args, e["file"]
    sys.exit(f"tw-test: FAIL: {rel} is not in {build}/compile_commands.json")


def compile_as(layer_rel, source):
    cwd, args, orig = command_for(layer_rel)
    out, skip = [], False
    for a in args:
        if skip:
            skip = False
            continue
        if a == "-o":
            skip = True
            continue
        if a in ("-c",) or a.startswith("-o") and len(a) > 2 or a == orig:
            continue
        if os.path.realpath(os.path.join(cwd, a)) == os.path.realpath(os.path.join(src, layer_rel)):
            continue
        out.append(a)
    out += ["-fsyntax-only", source]
    p = subprocess.run(out, cwd=cwd, capture_output=True, text=True)
    return p.returncode, p.stderr


failures, checks = [], 0
for layer, rel in LAYER_FILE.items():
    rc, err = compile_as(rel, os.path.join(src, rel))
    checks += 1
    if rc != 0:
        failures.append(f"control: {rel} does not compile with its own flags:\n{err[-800:]}")
    else:
        print(f"ok: {rel} compiles with the {layer} layer's flags")
    probes = sorted(p for p in os.listdir(os.path.join(src, "tests/layers"))
                    if p.startswith(layer + "_includes_") and p.endswith(".c"))
    if not probes:
        failures.append(f"no probes for the {layer} layer")
    for probe in probes:
        path = os.path.join(src, "tests/layers", probe)
        header = re.search(r'#include "([^"]+)"', open(path).read()).group(1)
        rc, err = compile_as(rel, path)
        checks += 1
        if rc == 0:
            failures.append(f"{probe}: the {layer} layer could include \"{header}\"")
        elif header not in err or "No such file" not in err:
            failures.append(f"{probe}: failed, but not for want of \"{header}\":\n{err[-800:]}")
        else:
            print(f"ok: {probe}: \"{header}\" is out of the {layer} layer's reach")
for f in failures:
    print("FAIL:", f)
if failures:
    print(f"tw-test: FAIL ({len(failures)} of {checks} checks)")
    sys.exit(1)
print(f"tw-test: PASS ({checks} checks)")
