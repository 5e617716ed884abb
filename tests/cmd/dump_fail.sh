#!/bin/bash
# dump_fail.sh TOKWATT DIR: the logits dump cannot be written (the file-size limit stops it: the
# dump is ~325 KB, the limit 100 KB, the result ~20 KB); the result file must still be written
# and say so, the run exits 1, and no temporary file of the dump is left.
set -u
tw=$1 dir=$2
fail() { echo "tw-test: FAIL: $*"; [ -f "$dir/err" ] && tail -n 30 "$dir/err"; exit 1; }
rm -rf "$dir" && mkdir -p "$dir/dump" || fail "cannot create $dir"
(
    trap '' XFSZ # write(2) then fails with EFBIG instead of killing the process
    ulimit -f 100
    exec "$tw" run --model tiny --batch 4 --prompt 9 --gen 40 --reps 1 --warmup 0 --threads 1 \
        --membw-gbps 10 --peak-gflops 10 --out "$dir/r.json" --dump-logits "$dir/dump/l.npy"
) >"$dir/stdout" 2>"$dir/err"
rc=$?
[ "$rc" = 1 ] || fail "exit status $rc, expected 1"
grep -q "logits dump .* was not written" "$dir/err" || fail "stderr does not say the dump failed"
python3 "$(dirname "$0")/check_json.py" "$dir/r.json" "r['complete'] is True" \
    "r['logits_dump']['written'] is False" "'File too large' in r['logits_dump']['error']" \
    "r['metrics']['repetitions_complete'] == 1" || fail "the result file"
left=$(ls -A "$dir/dump")
[ -z "$left" ] || fail "left behind in $dir/dump: $left"
echo "tw-test: PASS"
