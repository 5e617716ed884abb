#!/bin/sh
# export_interrupt.sh TOKWATT DIR SIGNAL: an export stopped by SIGNAL while it writes exits 1
# and leaves no temporary model.safetensors.tmp.* behind (they are gigabytes for real models).
set -u
tw=$1 dir=$2 sig=$3
fail() { echo "tw-test: FAIL: $*"; [ -f "$dir.err" ] && tail -n 20 "$dir.err"; exit 1; }
rm -rf "$dir" "$dir.err"
"$tw" export --model llama-3.2-1b --out "$dir" >/dev/null 2>"$dir.err" &
pid=$!
i=0
until ls "$dir" 2>/dev/null | grep -q '\.tmp\.'; do
    i=$((i + 1))
    [ $i -lt 600 ] || { kill -KILL $pid; fail "no temporary file within 60 s"; }
    kill -0 $pid 2>/dev/null || fail "the export ended before it was interrupted"
    sleep 0.1
done
kill -"$sig" $pid
wait $pid
rc=$?
[ "$rc" = 1 ] || fail "exit status $rc, expected 1"
grep -q "interrupted by SIG$sig" "$dir.err" || fail "stderr does not say it was interrupted"
left=$(ls -A "$dir" 2>/dev/null)
[ -z "$left" ] || fail "left behind in $dir: $left"
rm -rf "$dir" "$dir.err"
echo "tw-test: PASS"
