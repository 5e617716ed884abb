#!/usr/bin/env bash
# A run measured with --power none gives a result with no watts; `tokwatt report` must still write
# the page (throughput, roofline and energy charts) and say in the projection section why it is
# not drawn. Prints the page's projection caption on success.
# usage: report_no_power.sh TOKWATT_BINARY OUTDIR
set -euo pipefail
tokwatt=${1:?usage: report_no_power.sh TOKWATT OUTDIR}
out=${2:?usage: report_no_power.sh TOKWATT OUTDIR}
rm -rf "$out" && mkdir -p "$out"
"$tokwatt" run --model tiny --prompt 9 --gen 3 --reps 1 --warmup 0 --power none \
    --membw-gbps 10 --peak-gflops 20 \
    --out "$out/run.json" >/dev/null
"$tokwatt" report "$out/run.json" --out "$out/rep" >/dev/null
page="$out/rep/report.html"
[[ -s $page ]] || { echo "FAIL: no report.html" >&2; exit 1; }
for id in chart-throughput chart-roofline chart-energy chart-projection; do
    grep -q "<svg id=\"$id\"" "$page" || { echo "FAIL: $id missing" >&2; exit 1; }
done
grep -o 'Not drawn: [^<]*' "$page"
