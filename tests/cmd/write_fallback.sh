#!/bin/sh
# write_fallback.sh TOKWATT DIR: the destination checked at the start disappears while the run
# measures (the folder is replaced by a file); the result must still be written, to a
# temporary file named on stderr, and the run exits 1.
set -u
tw=$1 dir=$2
fail() { echo "tw-test: FAIL: $*"; [ -f "$dir/err" ] && tail -n 30 "$dir/err"; exit 1; }
rm -rf "$dir" && mkdir -p "$dir/dest" "$dir/tmp" || fail "cannot create $dir"
TMPDIR="$dir/tmp" "$tw" run --model tiny --prompt 64 --gen 64 --reps 1000 --warmup 0 --threads 1 \
    --membw-gbps 10 --peak-gflops 10 --progress --out "$dir/dest" >"$dir/stdout" 2>"$dir/err" &
pid=$!
i=0
until grep -q "progress: .*repetition" "$dir/err" 2>/dev/null; do
    i=$((i + 1))
    [ $i -lt 600 ] || { kill -KILL $pid; fail "no repetition started within 60 s"; }
    sleep 0.1
done
sleep 1 # a repetition or more completes
rm -rf "$dir/dest" && touch "$dir/dest"
kill -TERM $pid
wait $pid
rc=$?
[ "$rc" = 1 ] || fail "exit status $rc, expected 1"
grep -q "cannot write the result to $dir/dest/" "$dir/err" || fail "stderr does not say the write failed"
f=$(sed -n 's/^tokwatt run: the result was written to \(.*\) instead$/\1/p' "$dir/err")
[ -n "$f" ] || fail "stderr does not name the fallback file"
case "$f" in "$dir/tmp/tokwatt-"*.json) ;; *) fail "fallback $f is not in \$TMPDIR" ;; esac
python3 "$(dirname "$0")/check_json.py" "$f" "r['complete'] is False" \
    "r['metrics']['repetitions_complete'] >= 1" || fail "the fallback file"
echo "tw-test: PASS (written to $f)"
