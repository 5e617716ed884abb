#!/usr/bin/env bash
# Renders a `tokwatt report` page in headless Chromium (Debian's `chromium` package) and checks:
# the page loads, every chart's <svg> is in the rendered DOM with marks drawn in it, and no
# request leaves the page. Requests are read from Chromium's net log: the page's own requests are
# those whose network isolation key is file://; the browser's background requests (updates,
# accounts) have other keys and are not the page's. A probe page with one external image is
# rendered first and must show up as a request, so a check that sees nothing cannot pass by
# accident. Exits 77 (ctest SKIP_RETURN_CODE) when chromium is not installed.
# usage: report_chromium.sh TOKWATT_BINARY
set -euo pipefail
tokwatt=${1:?usage: report_chromium.sh TOKWATT_BINARY}
chrome=""
for c in chromium chromium-browser; do
    if command -v "$c" >/dev/null 2>&1; then chrome=$c; break; fi
done
if [[ -z $chrome ]]; then
    echo "SKIP: chromium is not installed (scripts/deps installs it with TW_WITH_CHROMIUM=1)"
    exit 77
fi
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
fail() { echo "FAIL: $*" >&2; exit 1; }

# Two small runs and a report of them. --watts so the projection is drawn on a machine with no
# readable power sensor (labelled ASSUMED on the page); the no-power page is cli_report_no_power.
for b in 1 3; do
    "$tokwatt" run --model tiny --prompt 17 --gen 5 --batch $b --reps 2 --warmup 0 --watts 120 \
        --membw-gbps 10 --peak-gflops 20 \
        --out "$tmp/run-b$b.json" >/dev/null 2>"$tmp/run.log" || { cat "$tmp/run.log" >&2; fail "tokwatt run"; }
done
# with the kept serving result (schema 1.4) beside them: its two charts follow the four
serving="$(cd "$(dirname "$0")" && pwd)/data/results/serving-findrate.json"
"$tokwatt" report "$tmp"/run-b*.json "$serving" --out "$tmp/rep" 2>"$tmp/rep.log" || { cat "$tmp/rep.log" >&2; fail "tokwatt report"; }
page="$tmp/rep/report.html"
[[ -s $page ]] || fail "no report.html"

# Static: no attribute or CSS reference to anything outside the page.
if grep -Eio '(src|href|xlink:href|action|data)=["'"'"'][^"'"'"'#][^"'"'"']*' "$page" | head -3 | grep -q .; then
    fail "report.html references an outside resource: $(grep -Eio '(src|href)=["'"'"'][^"'"'"'#][^"'"'"']*' "$page" | head -3)"
fi
grep -Eiq '<script|<link|<iframe|<img|@import' "$page" && fail "report.html has a script, link, iframe, img or @import"
grep -Eo 'url\([^)]*\)' "$page" | grep -v 'url(#' | grep -q . && fail "report.html has a CSS url() to outside the page"

flags=(--headless --disable-gpu --no-sandbox --disable-background-networking
       --disable-component-update --disable-sync --no-first-run --disable-default-apps
       --disable-extensions --no-default-browser-check "--host-resolver-rules=MAP * ~NOTFOUND"
       --user-data-dir="$tmp/profile")
render() { # render FILE NETLOG DOMOUT
    timeout 60 "$chrome" "${flags[@]}" --log-net-log="$2" --dump-dom "file://$1" >"$3" 2>"$tmp/chrome.log" ||
        { tail -5 "$tmp/chrome.log" >&2; fail "chromium failed on $1"; }
}
page_requests() { # URLs the page itself requested (not file: or data:)
    grep '"network_isolation_key":"file://' "$1" | grep -o '"url":"[^"]*"' |
        grep -v '"url":"\(file\|data\|about\|chrome\):' || true
}

# The probe: an external image must be seen as a request.
printf '<!DOCTYPE html><html><body><img src="http://tokwatt-probe.invalid/x.png"/></body></html>' >"$tmp/probe.html"
render "$tmp/probe.html" "$tmp/probe-net.json" "$tmp/probe-dom.html"
page_requests "$tmp/probe-net.json" | grep -q 'tokwatt-probe.invalid' ||
    fail "the net-log check did not see the probe page's external request: the check is broken"

render "$page" "$tmp/net.json" "$tmp/dom.html"
reqs=$(page_requests "$tmp/net.json")
[[ -z $reqs ]] || fail "the report page made requests: $reqs"
grep -q '<h1>' "$tmp/dom.html" || fail "the rendered DOM has no <h1>: the page did not load"
for id in chart-throughput chart-roofline chart-energy chart-projection chart-serving-latency chart-serving-cdf; do
    # the chart's element and at least 3 drawn marks inside it (up to its closing tag)
    block=$(awk -v id="$id" 'index($0, "<svg id=\"" id "\"") {on=1} on {print} on && /<\/svg>/ {exit}' "$tmp/dom.html")
    [[ -n $block ]] || fail "chart $id is not in the rendered DOM"
    marks=$(grep -Eo '<(circle|rect|polyline|line|path)' <<<"$block" | wc -l)
    ((marks >= 3)) || fail "chart $id has $marks drawn marks"
    echo "ok: $id in the DOM with $marks marks"
done
echo "ok: no request left the page; probe request detected"
