#!/bin/sh
# interrupt.sh TOKWATT DIR MODE SIGNAL [MPIRUN...]: a run interrupted while it measures must end
# within a few seconds with exit 1 and a result file marked incomplete, naming the signal and
# the rank, with the repetitions completed so far, and no temporary file left behind.
#   MODE proc   one process, SIGNAL sent to it
#        job    under MPIRUN ... -np 2, SIGNAL sent to mpirun (Ctrl-C to the job: mpirun sends
#               SIGTERM to every rank)
#        rank0  under MPIRUN, SIGNAL sent to rank 0 alone
#        rank1  under MPIRUN, SIGNAL sent to rank 1 alone
#        threads  --tp 2 --comm threads (two rank threads of one process), SIGNAL sent to it
# With --watts 100 (a CPU socket's assumed power, shared by the ranks on this host) the energy of
# the interrupted run is the host's, counted once, and the headline agrees with it.
# Prints "tw-test: PASS" or "tw-test: FAIL: ..." and exits 1.
set -u
tw=$1 dir=$2 mode=$3 sig=$4
shift 4
launcher="$*"
fail() { echo "tw-test: FAIL: $*"; [ -f "$dir/err" ] && tail -n 30 "$dir/err"; exit 1; }
rm -rf "$dir" && mkdir -p "$dir" || fail "cannot create $dir"
res="$dir/out/r.json"
args="run --model tiny --prompt 64 --gen 64 --reps 1000 --warmup 0 --threads 1 --membw-gbps 10 --peak-gflops 10 --watts 100 --progress --out $res"
if [ "$mode" = proc ]; then
    "$tw" $args >"$dir/stdout" 2>"$dir/err" &
elif [ "$mode" = threads ]; then
    "$tw" $args --tp 2 --comm threads >"$dir/stdout" 2>"$dir/err" &
else
    $launcher -np 2 "$tw" $args --tp 2 >"$dir/stdout" 2>"$dir/err" &
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
    # mpirun's children (no pgrep: /proc/PID/stat, the parent pid after the command's name)
    for st in /proc/[0-9]*/stat; do
        read -r line <"$st" 2>/dev/null || continue
        set -- ${line##*) }
        [ "$2" = "$pid" ] || continue
        c=${st#/proc/}
        c=${c%/stat}
        r=$(tr '\0' '\n' <"/proc/$c/environ" 2>/dev/null | sed -n 's/^OMPI_COMM_WORLD_RANK=//p')
        [ "$r" = "$want_rank" ] && target=$c
    done
    [ -n "$target" ] || { kill -KILL $pid; fail "no process of rank $want_rank under mpirun $pid"; }
fi
t0=$(date +%s%N)
kill -"$sig" "$target" || fail "kill -$sig $target"
wait $pid
rc=$?
ms=$((($(date +%s%N) - t0) / 1000000))
echo "exit $rc after $ms ms"
[ "$rc" = 1 ] || fail "exit status $rc, expected 1 (an incomplete run)"
[ "$ms" -lt 10000 ] || fail "took $ms ms to end after the signal"
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
    "r['metrics']['decode_tokens_per_s'] > 0" \
    "r['energy']['devices'] == 1" \
    "'$mode' == 'proc' or 'combined' in r['energy']" \
    "abs(r['energy']['e2e']['mean_power_w'] - 100) < 1e-6" \
    "abs(float(re.search('at ([0-9.e+]+) tokens/s and 100 W', r['projection_headline']).group(1)) / r['metrics']['e2e_tokens_per_s'] - 1) < 1e-3" \
    || fail "the result file"
left=$(ls -A "$dir/out" | grep -v '^r\.json$')
[ -z "$left" ] || fail "left behind in $dir/out: $left"
echo "tw-test: PASS ($mode, SIG$sig: $(python3 -c "import json; print(json.load(open('$res'))['incomplete_reason'])"))"
