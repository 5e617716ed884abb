#!/bin/sh
# three_runs.sh TOKWATT DIR: three runs started in the same second into one folder leave three
# result files (the names would be equal: <UTC second>-<host>-<model>.json), none overwritten.
set -u
tw=$1 dir=$2
fail() { echo "tw-test: FAIL: $*"; exit 1; }
rm -rf "$dir" && mkdir -p "$dir" || fail "cannot create $dir"
# start just after a second boundary, so that all three start within that second
python3 -c 'import time; time.sleep(1.02 - time.time() % 1)'
for i in 1 2 3; do
    "$tw" run --model tiny --prompt 5 --gen 3 --reps 2 --warmup 0 --threads 1 --membw-gbps 10 \
        --peak-gflops 10 --out "$dir" >"$dir.out$i" 2>"$dir.err$i" &
    eval "pid$i=$!"
done
for i in 1 2 3; do
    eval "wait \$pid$i" || { cat "$dir.err$i"; fail "run $i failed"; }
done
n=$(ls "$dir"/*.json | wc -l)
ls -l "$dir"
[ "$n" = 3 ] || fail "$n result files, expected 3"
left=$(ls -A "$dir" | grep -v '\.json$')
[ -z "$left" ] || fail "left behind: $left"
for f in "$dir"/*.json; do
    python3 "$(dirname "$0")/check_json.py" "$f" "r['complete'] is True" || fail "$f"
done
echo "tw-test: PASS ($(ls "$dir" | tr '\n' ' '))"
