#!/bin/sh
# fixture_run.sh CASE TOKWATT OUT.json [MPIRUN...]: runs one of the deterministic result-file
# cases (tiny models, fixed seed, ceilings given so that nothing is measured for them) and
# leaves its result at OUT.json. The same script captured tests/data/results/CASE.json (see the
# README there) and runs the case again in ctest (result_fixture_CASE), where
# check_fixture.py compares the new file with the kept one.
#   single     one combination, assumed watts (energy block and headline), warm-up
#   sweep      8 combinations: batch x prompt x weight dtype, no power
#   window     a sliding-window model (tiny-mistral): decode bytes count the window
#   preset     a scenario preset (caveats in the scenario), its model and lengths overridden
#   dump       one combination with a logits dump (the row's logits_dump block)
#   incomplete a single run stopped by SIGTERM while it measures (exit 1, marked incomplete)
#   tp2        mpirun -np 2 --tp 2: per-rank figures, communicator, shared host power
#   tpsweep    mpirun -np 2 --tp 1,2: one row per degree
# Exits 0 when the run ended as the case expects (exit code, a file at OUT), else 1.
set -u
case_=$1 tw=$2 out=$3
shift 3
mpirun="$*"
fail() { echo "tw-test: FAIL: $*"; [ -f "$out.err" ] && tail -n 30 "$out.err"; exit 1; }
rm -f "$out" "$out.err" "${out%.json}.npy"
mkdir -p "$(dirname "$out")" || fail "cannot create the folder of $out"
# The kept files' tokens came from GEMMs that keep activations in fp32; the bf16 dot-product and
# AMX levels round them to bf16 (doc/METRICS.md), which flips near-tied greedy tokens. These cases
# check the result file, not the kernels (test_gemm and kernels_check do that on every level), so
# they run on AVX2, which every x86-64 machine this suite runs on has.
if [ -z "${TW_SIMD:-}" ] && grep -qw avx2 /proc/cpuinfo 2>/dev/null; then
    TW_SIMD=avx2
    export TW_SIMD
fi
base="run --threads 1 --membw-gbps 10 --peak-gflops 20 --seed 7 --out $out"
want=0
case "$case_" in
single) set -- $base --model tiny --prompt 9 --gen 5 --warmup 1 --reps 2 --watts 100 ;;
sweep) set -- $base --model tiny --batch 1,3 --prompt 5,8 --gen 3 --dtype bf16,fp32 --warmup 0 --reps 2 \
    --power none ;;
window) set -- $base --model tiny-mistral --batch 2 --prompt 11 --gen 6 --warmup 0 --reps 1 \
    --kv-dtype fp32 --power none ;;
preset) set -- $base --preset mlperf-llama3.1-8b-offline-h100x1 --model tiny --batch 2 \
    --prompt 6 --gen 3 --tp 1 --dtype bf16 --warmup 0 --reps 1 --power none ;;
dump) set -- $base --model tiny --batch 2 --prompt 4 --gen 3 --warmup 0 --reps 1 --power none \
    --dump-logits "${out%.json}.npy" ;;
incomplete)
    "$tw" $base --model tiny --prompt 64 --gen 64 --warmup 0 --reps 1000 --watts 100 --progress \
        >/dev/null 2>"$out.err" &
    pid=$!
    i=0
    until grep -Eq "progress: .*repetition ([2-9]|[0-9]{2,})/" "$out.err" 2>/dev/null; do
        i=$((i + 1))
        [ $i -lt 600 ] || { kill -KILL $pid; fail "no second repetition within 60 s"; }
        kill -0 $pid 2>/dev/null || fail "the run ended before it was interrupted"
        sleep 0.1
    done
    kill -TERM $pid
    wait $pid
    rc=$?
    [ "$rc" = 1 ] || fail "exit $rc, expected 1 (an incomplete run)"
    [ -f "$out" ] || fail "no result file $out"
    echo "tw-test: PASS (incomplete)"
    exit 0
    ;;
tp2) want=mpi; set -- $base --model tiny --tp 2 --prompt 9 --gen 5 --warmup 1 --reps 2 --watts 100 ;;
tpsweep) want=mpi; set -- $base --model tiny --tp 1,2 --dtype fp32 --batch 2 --prompt 7 --gen 4 --warmup 0 \
    --reps 1 --power none ;;
*) fail "unknown case $case_" ;;
esac
if [ "$want" = mpi ]; then
    [ -n "$mpirun" ] || fail "case $case_ needs an mpirun command line"
    $mpirun -np 2 "$tw" "$@" >/dev/null 2>"$out.err"
else
    "$tw" "$@" >/dev/null 2>"$out.err"
fi
rc=$?
[ "$rc" = 0 ] || fail "exit $rc"
[ -f "$out" ] || fail "no result file $out"
echo "tw-test: PASS ($case_)"
