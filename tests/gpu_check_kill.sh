#!/usr/bin/env bash
# scripts/gpu-check must survive its own limits (issue 14); checked here, without a GPU, on the
# already built tree (--no-build):
#  1. killed with SIGKILL in the middle of a step (as the device tool kills a command at its
#     limit, everything it started with it), $OUT still holds a valid partial result JSON that
#     names the running step and lists the finished ones, and a readable log tarball with their
#     logs, and nothing half-written;
#  2. a step that hangs is stopped at its share of the budget and recorded as a timed-out FAIL,
#     and the check still ends inside its budget with a complete result (verdict FAIL, exit 3);
#  3. where CUDA is unusable the check FAILs: no GPU step passes, exit 3;
#  4. --plan: the default plan fits its budget (exit 0), a budget too small does not (exit 3).
# The hang is the check's own test hook, TW_GPU_CHECK_TEST_HANG=STEP (that step's command
# becomes a sleep; the result records the hook and its verdict can then never be PASS).
# usage: gpu_check_kill.sh SOURCE_DIR BUILD_DIR
set -uo pipefail
src=${1:?usage: gpu_check_kill.sh SOURCE_DIR BUILD_DIR}
build=${2:?usage: gpu_check_kill.sh SOURCE_DIR BUILD_DIR}
check=$src/scripts/gpu-check
tmp=$(mktemp -d)
sid=""
cleanup() {
    [[ -n $sid ]] && pkill -KILL -s "$sid" 2>/dev/null
    rm -rf "$tmp"
}
trap cleanup EXIT
fail() {
    echo "FAIL: $*" >&2
    for f in "$tmp"/*.log; do [[ -f $f ]] && { echo "--- $f" >&2; tail -20 "$f" >&2; }; done
    exit 1
}
common=(--no-build --build "$build")
unset OUT TW_GPU_CHECK_BUDGET_S TW_GPU_CHECK_TEST_HANG

# ---- 4. the plan ----------------------------------------------------------------------------
"$check" --plan >"$tmp/plan.log" 2>&1 || fail "the default plan does not fit (exit $?)"
grep -q '^fits: ' "$tmp/plan.log" || fail "--plan printed no verdict"
TW_GPU_CHECK_BUDGET_S=100 "$check" --plan >"$tmp/plan-small.log" 2>&1
rc=$?
((rc == 3)) || fail "a 100 s budget should not fit the plan: exit $rc"
"$check" --bogus >/dev/null 2>&1
(($? == 2)) || fail "an unknown option should exit 2"

# ---- 1. SIGKILL in the middle of a step --------------------------------------------------------
out1=$tmp/out1
# In a session of its own, so that the kill reaches every process the check started. The session
# leader writes its own pid (setsid may fork, so $! need not be it).
OUT=$out1 TW_GPU_CHECK_BUDGET_S=120 TW_GPU_CHECK_TEST_HANG=cuda-usable \
    setsid bash -c 'echo $$ >"$0"; exec "$@"' "$tmp/leader.pid" "$check" "${common[@]}" \
    --logs "$tmp/logs1" --results "$tmp/res1" >"$tmp/run1.log" 2>&1 </dev/null &
for _ in $(seq 1 100); do [[ -s $tmp/leader.pid ]] && break; sleep 0.1; done
pid=$(cat "$tmp/leader.pid" 2>/dev/null)
[[ -n $pid ]] || fail "the check did not start"
sid=$(ps -o sid= -p "$pid" | tr -d ' ')
mine=$(ps -o sid= -p $$ | tr -d ' ')
if [[ -z $sid || $sid != "$pid" || $sid == "$mine" ]]; then
    sid=""
    fail "the check is not the leader of a session of its own (pid $pid)"
fi
running=""
for _ in $(seq 1 300); do # wait until the result says the hanging step is running (<= 30 s)
    running=$(python3 -c 'import json,sys
try: print(json.load(open(sys.argv[1])).get("running") or "")
except Exception: pass' "$out1/gpu-check.json" 2>/dev/null)
    [[ $running == cuda-usable ]] && break
    kill -0 "$pid" 2>/dev/null || fail "the check ended before the hanging step"
    sleep 0.1
done
[[ $running == cuda-usable ]] || fail "the result never said step cuda-usable was running"
sleep 1
pkill -KILL -s "$sid"
wait "$pid" 2>/dev/null
sid=""
python3 - "$out1/gpu-check.json" <<'PY' || fail "partial result after the kill"
import json, sys
d = json.load(open(sys.argv[1]))
steps = [c["step"] for c in d["checks"]]
assert d["schema"] == "tokwatt.gpu-check/2", d["schema"]
assert d["complete"] is False and d["verdict"] == "INCOMPLETE", (d["complete"], d["verdict"])
assert d["running"] == "cuda-usable", d["running"]
assert steps == ["probe", "build"], steps
assert d["checks"][1]["result"] == "SKIP", d["checks"][1]
assert d["test_hook"] and "cuda-usable" in d["test_hook"], d["test_hook"]
assert d["environment"]["os"], "no environment probe"
assert d["plan"]["budget_s"] == 120 and d["plan"]["fits"] is False, d["plan"]["budget_s"]
PY
tar -tzf "$out1/gpu-check-logs.tgz" >"$tmp/tar1.txt" 2>&1 || fail "log tarball unreadable"
for f in probe.txt probe.log steps.tsv meta.tsv gpu-check.json; do
    grep -q "logs1/$f\$" "$tmp/tar1.txt" || fail "log tarball lacks $f: $(tr '\n' ' ' <"$tmp/tar1.txt")"
done
left=$(cd "$out1" && ls -A | sort | tr '\n' ' ')
[[ $left == "gpu-check-logs.tgz gpu-check.json " ]] || fail "unexpected files in OUT: $left"
[[ ! -e $tmp/res1 ]] || [[ -z $(ls -A "$tmp/res1") ]] || fail "a killed check wrote a final result"

# ---- 2. a hanging step is bounded by the budget ------------------------------------------------
out2=$tmp/out2
t0=$SECONDS
OUT=$out2 TW_GPU_CHECK_BUDGET_S=35 TW_GPU_CHECK_TEST_HANG=cuda-usable \
    timeout -s KILL 90 "$check" "${common[@]}" --no-sanitizer --no-bench --no-8b \
    --logs "$tmp/logs2" --results "$tmp/res2" >"$tmp/run2.log" 2>&1 </dev/null
rc=$?
wall=$((SECONDS - t0))
((rc == 3)) || fail "bounded run: exit $rc (want 3)"
((wall <= 35 + 10)) || fail "bounded run took $wall s against a 35 s budget"
python3 - "$out2/gpu-check.json" <<'PY' || fail "result of the bounded run"
import json, sys
d = json.load(open(sys.argv[1]))
c = {s["step"]: s for s in d["checks"]}
assert d["complete"] is True and d["verdict"] == "FAIL", (d["complete"], d["verdict"])
u = c["cuda-usable"]
assert u["result"] == "FAIL" and "timed out" in u["detail"], u
# stopped at its share (<= its 20 s cap), give or take the 5 s kill grace and whole seconds
assert 5 <= u["timeout_s"] <= 20 and u["timeout_s"] - 1 <= u["wall_s"] <= u["timeout_s"] + 6, u
assert not [s for s in d["checks"] if s["result"] == "PASS" and s["step"] != "probe"], d["checks"]
PY
# (the listing to a file first: grep -q ending a pipe early would fail it under pipefail)
tar -tzf "$out2/gpu-check-logs.tgz" >"$tmp/tar2.txt" 2>&1 || fail "log tarball of the bounded run unreadable"
grep -q 'logs2/cuda-usable.log$' "$tmp/tar2.txt" || fail "no cuda-usable.log in the tarball"
[[ -f $out2/gpu-check-summary.md ]] || fail "no summary in OUT"

# ---- 3. no usable CUDA: FAIL, never PASS -------------------------------------------------------
if nvidia-smi -L >/dev/null 2>&1; then
    echo "a GPU is present here: the no-GPU verdict part is not applicable"
else
    out3=$tmp/out3
    OUT=$out3 timeout -s KILL 90 "$check" "${common[@]}" --no-sanitizer --no-bench --no-8b \
        --logs "$tmp/logs3" --results "$tmp/res3" >"$tmp/run3.log" 2>&1 </dev/null
    rc=$?
    ((rc == 3)) || fail "no-GPU run: exit $rc (want 3)"
    n=$(ls "$tmp/res3"/*.json 2>/dev/null | wc -l)
    ((n == 1)) || fail "no-GPU run: $n final result files (want 1)"
    python3 - "$out3/gpu-check.json" "$tmp/res3"/*.json <<'PY' || fail "result of the no-GPU run"
import json, sys
d = json.load(open(sys.argv[1]))
assert json.load(open(sys.argv[2]))["checks"] == d["checks"]
c = {s["step"]: s for s in d["checks"]}
assert d["complete"] is True and d["verdict"] == "FAIL" and d["test_hook"] is None, d["verdict"]
assert c["cuda-usable"]["result"] == "FAIL", c["cuda-usable"]
for s in ("gpu-tests", "gpu-engine", "ptx-jit"):
    assert c[s]["result"] != "PASS", c[s]
PY
fi
echo "gpu_check_kill: ok (kill, budget, no-GPU verdict, plan)"
