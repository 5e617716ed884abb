#!/bin/sh
# The checker must fail a command that prints what is wanted but exits 1, or crashes, or exits
# with another code than the one expected, and pass one that does what is wanted.
set -u
c="$(dirname "$0")/check_cmd.sh"
n=0
must() { # must pass|fail ARGS...
    want=$1
    shift
    if "$c" "$@" >/dev/null 2>&1; then got=pass; else got=fail; fi
    if [ "$got" != "$want" ]; then
        echo "tw-test: FAIL: check_cmd.sh $* should $want, did $got"
        n=$((n + 1))
    fi
}
must pass --exit 0 --out PASS -- sh -c 'echo PASS'
must fail --exit 0 --out PASS -- sh -c 'echo PASS; exit 1'
must fail --exit 0 --out PASS -- sh -c 'echo PASS; kill -SEGV $$'
must fail --exit 1 --out PASS -- sh -c 'echo PASS; kill -SEGV $$'
must fail --exit 2 --err usage -- sh -c 'echo usage >&2; kill -ABRT $$'
must pass --exit 2 --err usage -- sh -c 'echo usage >&2; exit 2'
must fail --exit 2 --err usage -- sh -c 'echo usage >&2; exit 1'
must fail --exit 0 --out PASS --no-err error -- sh -c 'echo PASS; echo error >&2'
must fail --exit 0 --json-out -- sh -c 'echo "{} trailing"'
must pass --exit 0 --json-out -- sh -c 'echo "{\"a\": [1, 2]}"'
must fail --exit 0 --check 'false' -- true
[ $n = 0 ] || exit 1
echo "tw-test: PASS"
