#!/bin/sh
# interrupt.sh TOKWATT DIR MODE SIGNAL [MPIRUN...]: a run interrupted while it measures must end
# within a few seconds with exit 1 and a result file marked incomplete, naming the signal and
# the rank, with the repetitions completed so far, and no temporary file left behind.
#   MODE proc   one process, SIGNAL sent to it
#        job    under MPIRUN ... -np 2, SIGNAL sent to mpirun (Ctrl-C to the job: mpirun sends
#               SIGTERM to every rank)
#        rank0  under MPIRUN, SIGNAL sent to rank 0 alone
#        rank1  under MPIRUN, SIGNAL sent to rank 1 alone
# Prints "tw-test: PASS" or "tw-test: FAIL: ..." and exits 1.
set -u
tw=$1 dir=$2 mode=$3 sig=$4
shift 4
fail() { echo "tw-test: FAIL: $*"; [ -f "$dir/err" ] && tail -n 30 "$dir/err"; exit 1; }
rm -rf "$dir" && mkdir -p "$dir" || fail "cannot create $dir"
res="$dir/out/r.json"
args="run --model tiny --prompt 64 --gen 64 --reps 1000 --warmup 0 --threads 1 --membw-gbps 10 --peak-gflops 10 --progress --out $res"
if [ "$mode" = proc ]; then
    "$tw" $args >"$dir/stdout" 2>"$dir/err" &
else
    "$@" -np 2 "$tw" $args --tp 2 >"$dir/stdout" 2>"$dir/err" &
fi
pid=$!
# measuring: the first repetition's progress line, then a little more
i=0
until grep -q "progress: .*repetition" "$dir/err" 2>/dev/null; do
    i=$((i + 1))
    [ $i -lt 600 ] || { kill -KILL $pid; fail "no repetition started within 60 s"; }
    kill -0 $pid 2>/dev/null || fail "the run ended before it was interrupted"
    sleep 0.1
done
sleep 1 # a repetition or more completes
target=$pid
want_rank=0
if [ "$mode" = rank0 ] || [ "$mode" = rank1 ]; then
    want_rank=${mode#rank}
    target=""
    for c in $(pgrep -P $pid); do
        r=$(tr '\0' '\n' <"/proc/$c/environ" 2>/dev/null | sed -n 's/^OMPI_COMM_WORLD_RANK=//p')
        [ "$r" = "$want_rank" ] && target=$c
    done
    [ -n "$target" ] || { kill -KILL $pid; fail "no process of rank $want_rank under mpirun $pid"; }
fi
t0=$(date +%s.%N)
kill -"$sig" "$target" || fail "kill -$sig $target"
wait $pid
rc=$?
dt=$(echo "$(date +%s.%N) - $t0" | bc)
echo "exit $rc after $dt s"
[ "$rc" = 1 ] || fail "exit status $rc, expected 1 (an incomplete run)"
[ "$(echo "$dt < 10" | bc)" = 1 ] || fail "took $dt s to end after the signal"
# Ctrl-C to mpirun reaches the ranks as SIGTERM
want_sig="SIG$sig"
[ "$mode" = job ] && want_sig="SIGTERM|SIGINT"
python3 "$(dirname "$0")/check_json.py" "$res" \
    "r['complete'] is False" \
    "re.fullmatch('$want_sig', r['interrupted']['signal'])" \
    "re.search('$want_sig', r['incomplete_reason'])" \
    "'$mode' == 'job' or r['interrupted']['rank'] == $want_rank" \
    "'$mode' == 'proc' or re.search('on rank [0-9]', r['incomplete_reason'])" \
    "r['metrics']['repetitions_complete'] >= 1" \
    "r['metrics']['decode_tokens_per_s'] > 0" || fail "the result file"
left=$(ls -A "$dir/out" | grep -v '^r\.json$')
[ -z "$left" ] || fail "left behind in $dir/out: $left"
echo "tw-test: PASS ($mode, SIG$sig: $(python3 -c "import json; print(json.load(open('$res'))['incomplete_reason'])"))"
