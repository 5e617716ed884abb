#!/bin/sh
# check_cmd.sh: runs one command and checks what a command-level test must check, all of it:
# the exact exit code (a command killed by a signal never passes, whatever it printed), and
# patterns in its stdout and stderr; optionally that stdout or a file is JSON, and a further
# check command. Every command-level ctest entry goes through this script (cmake/tests.cmake,
# tw_cmd_test), because CTest's PASS_REGULAR_EXPRESSION ignores the exit code and WILL_FAIL
# passes on a crash.
#
# usage: check_cmd.sh [options] -- COMMAND [ARG...]
#   --exit N          the exit code the command must return (default 0)
#   --out RE          stdout must match the extended regular expression RE (repeatable)
#   --err RE          stderr must match RE (repeatable)
#   --no-out RE       stdout must not match RE (repeatable)
#   --no-err RE       stderr must not match RE (repeatable)
#   --json-out        stdout must be exactly one JSON document
#   --json-file F     F must exist after the command and be JSON
#   --rm PATH         removed before the command runs (a result file must not exist yet)
#   --check CMD       run with sh -c after the command, with $TW_OUT and $TW_ERR naming the
#                     captured stdout and stderr files; must exit 0
#   --skip N          exit code N of the command means "skipped" (passed on to ctest)
# Prints "tw-test: PASS" and exits 0, or names every failed check and exits 1.
set -u
want=0
skip=""
json_out=0
checks=""
nl='
'
outs=""; errs=""; nouts=""; noerrs=""; jfiles=""
while [ $# -gt 0 ]; do
    case "$1" in
    --exit) want="$2"; shift 2 ;;
    --out) outs="$outs$2$nl"; shift 2 ;;
    --err) errs="$errs$2$nl"; shift 2 ;;
    --no-out) nouts="$nouts$2$nl"; shift 2 ;;
    --no-err) noerrs="$noerrs$2$nl"; shift 2 ;;
    --json-out) json_out=1; shift ;;
    --json-file) jfiles="$jfiles$2$nl"; shift 2 ;;
    --rm) rm -rf -- "$2"; shift 2 ;;
    --check) checks="$checks$2$nl"; shift 2 ;;
    --skip) skip="$2"; shift 2 ;;
    --) shift; break ;;
    *) echo "check_cmd.sh: unknown option '$1'" >&2; exit 2 ;;
    esac
done
[ $# -gt 0 ] || { echo "check_cmd.sh: no command (give it after --)" >&2; exit 2; }

tmp=$(mktemp -d "${TMPDIR:-/tmp}/tw-check.XXXXXX") || exit 1
trap 'rm -rf "$tmp"' EXIT
"$@" >"$tmp/out" 2>"$tmp/err"
rc=$?
fail=0
bad() {
    echo "tw-test: FAIL: $*"
    fail=1
}

if [ -n "$skip" ] && [ "$rc" = "$skip" ]; then
    cat "$tmp/out" "$tmp/err"
    echo "tw-test: SKIP (exit $rc)"
    exit "$rc"
fi
if [ "$rc" -gt 128 ] && [ "$rc" -lt 160 ]; then
    bad "killed by signal $((rc - 128)) (exit status $rc), expected exit $want"
elif [ "$rc" != "$want" ]; then
    bad "exit code $rc, expected $want"
fi

# one pattern per line; each is checked on its own
each() { # each LIST FILE MODE(1: must match, 0: must not) WHAT
    printf '%s' "$1" | while IFS= read -r re; do
        [ -n "$re" ] || continue
        if grep -Eq -- "$re" "$2"; then
            [ "$3" = 1 ] || echo "$4 must not match: $re"
        else
            [ "$3" = 0 ] || echo "$4 lacks: $re"
        fi
    done
}
msgs=$( each "$outs" "$tmp/out" 1 stdout; each "$errs" "$tmp/err" 1 stderr;
        each "$nouts" "$tmp/out" 0 stdout; each "$noerrs" "$tmp/err" 0 stderr )
if [ -n "$msgs" ]; then
    printf '%s\n' "$msgs" | while IFS= read -r m; do echo "tw-test: FAIL: $m"; done
    fail=1
fi

isjson() {
    python3 -c '
import json, sys
try:
    json.load(open(sys.argv[1]))
except Exception as e:
    print(e)
    sys.exit(1)' "$1"
}
if [ "$json_out" = 1 ]; then
    m=$(isjson "$tmp/out") || bad "stdout is not one JSON document: $m"
fi
if [ -n "$jfiles" ]; then
    while IFS= read -r f; do
        [ -n "$f" ] || continue
        if [ ! -f "$f" ]; then bad "no file $f"; continue; fi
        m=$(isjson "$f") || bad "$f is not JSON: $m"
    done <<EOF
$jfiles
EOF
fi
if [ -n "$checks" ]; then
    while IFS= read -r c; do
        [ -n "$c" ] || continue
        m=$(TW_OUT="$tmp/out" TW_ERR="$tmp/err" sh -c "$c" 2>&1) || bad "check '$c' failed: $m"
    done <<EOF
$checks
EOF
fi

if [ "$fail" != 0 ]; then
    echo "---- command: $*"
    echo "---- stdout (last 40 lines):"
    tail -n 40 "$tmp/out"
    echo "---- stderr (last 40 lines):"
    tail -n 40 "$tmp/err"
    exit 1
fi
echo "tw-test: PASS ($*)"
exit 0
