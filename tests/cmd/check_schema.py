#!/usr/bin/env python3
"""check_schema.py [--schema SCHEMA.json] FILE...: validates each JSON FILE against the JSON
Schema (default doc/result.schema.json beside this tree) with the jsonschema package (Debian's
python3-jsonschema, installed by scripts/deps), draft 2020-12. Prints every violation (the key's
path and the rule broken) and exits 1 when a file does not validate; exits 0 when all do. The
schema itself is checked first.

check_schema.py --every DIR...: every file the suite wrote under the folders: each *.json that is
a result file (a schema_version and kind run or sweep) against doc/result.schema.json, each
tokwatt-export.json against doc/export.schema.json; other JSON there (copies of configs, export's
Hugging Face config.json, deliberately broken inputs) is counted and named as not checked. Exits
77 (skipped) when the folders hold no result file yet."""
import json
import os
import sys

try:
    import jsonschema
except ImportError:
    print("tw-test: FAIL: python3's jsonschema module is missing (scripts/deps installs "
          "python3-jsonschema)")
    sys.exit(1)


def validator(path):
    with open(path) as f:
        schema = json.load(f)
    cls = jsonschema.Draft202012Validator
    cls.check_schema(schema)
    return cls(schema)


def report(v, p, doc):
    errs = sorted(v.iter_errors(doc), key=lambda e: list(e.absolute_path))
    for e in errs[:20]:
        where = "/".join(str(x) for x in e.absolute_path) or "(top)"
        print(f"tw-test: FAIL: {p}: {where}: {e.message[:300]}")
    return bool(errs)


def every(dirs, docdir):
    res_v = validator(os.path.join(docdir, "result.schema.json"))
    exp_v = validator(os.path.join(docdir, "export.schema.json"))
    n = {"result": 0, "export": 0}
    skipped, bad = [], 0
    for d in dirs:
        for root, _, files in os.walk(d):
            for name in sorted(files):
                p = os.path.join(root, name)
                if not name.endswith(".json") or not os.path.isfile(p):
                    continue  # a FIFO (run_model_fifo_refused) would block
                try:
                    with open(p) as f:
                        doc = json.load(f)
                except Exception:
                    skipped.append(p + " (not JSON)")
                    continue
                if name == "tokwatt-export.json":
                    n["export"] += 1
                    bad += report(exp_v, p, doc)
                elif isinstance(doc, dict) and "schema_version" in doc and \
                        doc.get("kind") in ("run", "sweep"):
                    n["result"] += 1
                    bad += report(res_v, p, doc)
                else:
                    skipped.append(p)
    if skipped:
        print(f"not checked: {len(skipped)} other JSON files (copies of configs, exports' Hugging "
              f"Face config.json, broken inputs), e.g. {', '.join(skipped[:5])}")
    if bad:
        return 1
    if n["result"] == 0:
        print("tw-test: SKIP: no result file under " + " ".join(dirs))
        return 77
    print(f"tw-test: PASS ({n['result']} result files and {n['export']} export manifests valid)")
    return 0


def main():
    args = sys.argv[1:]
    here = os.path.dirname(os.path.abspath(__file__))
    if args[:1] == ["--every"]:
        return every(args[1:], os.path.join(here, "..", "..", "doc"))
    schema_path = os.path.join(here, "..", "..", "doc", "result.schema.json")
    if args[:1] == ["--schema"]:
        schema_path, args = args[1], args[2:]
    if not args:
        print(__doc__)
        return 2
    v = validator(schema_path)
    bad = 0
    for p in args:
        try:
            with open(p) as f:
                doc = json.load(f)
        except Exception as e:
            print(f"tw-test: FAIL: {p}: {e}")
            bad += 1
            continue
        bad += report(v, p, doc)
    if bad:
        return 1
    print(f"tw-test: PASS ({len(args)} file(s) valid against {os.path.basename(schema_path)})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
