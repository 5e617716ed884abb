#!/usr/bin/env python3
"""serve_schema.py SCHEMA FILE...: validates serving result files against the result schema once
the schema describes the serving block (the result side of issue 15); exits 77 (skipped, saying
why) while it does not yet, 1 on a violation, 0 when every file validates."""
import json
import sys

import jsonschema


def main():
    schema = json.load(open(sys.argv[1]))
    if "serving" not in json.dumps(schema):
        print("tw-test: SKIP: %s does not describe the serving block yet" % sys.argv[1])
        return 77
    v = jsonschema.Draft202012Validator(schema)
    bad = 0
    for path in sys.argv[2:]:
        errs = list(v.iter_errors(json.load(open(path))))
        for e in errs[:5]:
            print("tw-test: FAIL: %s: %s: %s" % (path, "/".join(map(str, e.absolute_path)),
                                                 e.message[:300]))
        bad += bool(errs)
    if bad:
        return 1
    print("tw-test: PASS (%d serving results valid)" % (len(sys.argv) - 2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
