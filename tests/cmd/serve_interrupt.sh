#!/bin/sh
# serve_interrupt.sh TOKWATT DIR: a server run interrupted by SIGINT once some requests have
# finished must end within a few seconds with exit 1 and a result file marked incomplete whose
# serving block keeps every finished request (and only finished ones), with consistent figures.
# Prints "tw-test: PASS" or "tw-test: FAIL: ..." and exits 1.
set -u
tw=$1 dir=$2
fail() { echo "tw-test: FAIL: $*"; [ -f "$dir/err" ] && tail -n 30 "$dir/err"; exit 1; }
rm -rf "$dir" && mkdir -p "$dir" || fail "cannot create $dir"
res="$dir/out/r.json"
# 20 requests/s for up to 100000 requests: far longer than the test waits
"$tw" run --model tiny --dtype fp32 --threads 1 --membw-gbps 10 --peak-gflops 10 --watts 100 \
    --scenario server --rate 20 --requests 100000 --lengths uniform:4-24,2-6 --max-batch 4 \
    --progress --out "$res" >"$dir/stdout" 2>"$dir/err" &
pid=$!
i=0
# the progress line counts finished requests: wait for at least 3
until grep -Eq "serving: decode step ([3-9]|[1-9][0-9]+)/" "$dir/err" 2>/dev/null; do
    i=$((i + 1))
    [ $i -lt 600 ] || { kill -KILL $pid; fail "no request finished within 60 s"; }
    kill -0 $pid 2>/dev/null || fail "the run ended before it was interrupted"
    sleep 0.1
done
t0=$(date +%s%N)
kill -INT $pid || fail "kill -INT $pid"
wait $pid
rc=$?
ms=$((($(date +%s%N) - t0) / 1000000))
echo "exit $rc after $ms ms"
[ "$rc" = 1 ] || fail "exit status $rc, expected 1 (an incomplete run)"
[ "$ms" -lt 10000 ] || fail "took $ms ms to end after the signal"
python3 "$(dirname "$0")/check_json.py" "$res" \
    "r['complete'] is False" \
    "re.search('SIGINT', r['incomplete_reason'])" \
    "r['serving']['complete'] is False" \
    "re.search('SIGINT', r['serving']['incomplete_reason'])" \
    "r['serving']['summary']['n_measured'] >= 3" \
    "r['serving']['summary']['n_measured'] == len(r['serving']['requests'])" \
    "all(q['finish_s'] >= q['first_token_s'] >= q['admit_s'] >= q['arrival_s'] for q in r['serving']['requests'])" \
    "r['metrics']['e2e_tokens_per_s'] > 0" \
    || fail "the result file"
left=$(ls -A "$dir/out" | grep -v '^r\.json$')
[ -z "$left" ] || fail "left behind in $dir/out: $left"
echo "tw-test: PASS ($(python3 -c "import json; r=json.load(open('$res')); print(r['incomplete_reason'], '-', r['serving']['summary']['n_measured'], 'requests kept')"))"
