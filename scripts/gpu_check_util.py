#!/usr/bin/env python3
"""Helpers of scripts/gpu-check: the environment probe, verdicts read from the programs' own
reports (Criterion JSON, compute-sanitizer logs, `tokwatt info`, the CUDA benchmark, `tokwatt run`
results, cuobjdump listings), and the result file, rewritten atomically after every step.

Each verdict subcommand prints one line, "PASS detail", "FAIL detail" or "SKIP detail", and exits
0: the shell script records it. Only the standard library is used (the GPU machine's python3 is
whatever its image carries)."""
import argparse
import glob
import json
import os
import re
import shutil
import subprocess
import sys
import time

# ---- small helpers --------------------------------------------------------------------------


def sh(cmd, timeout=10):
    """Output of a command (stdout + stderr), or a line saying why there is none."""
    try:
        p = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout,
                           shell=isinstance(cmd, str))
        return (p.stdout + p.stderr).strip()
    except subprocess.TimeoutExpired:
        return "(no answer within %d s)" % timeout
    except OSError as e:
        return "(cannot run: %s)" % e


def which(name, extra=()):
    p = shutil.which(name)
    if p:
        return p
    for d in extra:
        c = os.path.join(d, name)
        if os.access(c, os.X_OK):
            return c
    return None


def load_json(path):
    try:
        with open(path) as f:
            return json.load(f)
    except (OSError, ValueError):
        return None


def write_atomic(path, text):
    """Writes a temporary file beside `path`, then renames it over `path` (never half-written)."""
    d = os.path.dirname(os.path.abspath(path))
    tmp = os.path.join(d, ".%s.part.%d" % (os.path.basename(path), os.getpid()))
    with open(tmp, "w") as f:
        f.write(text)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def write_exclusive(path, text):
    """Creates `path` only if it does not exist: temporary name, then a hard link (fails if the
    name is taken), so a result file is never overwritten."""
    d = os.path.dirname(os.path.abspath(path))
    os.makedirs(d, exist_ok=True)
    tmp = os.path.join(d, ".%s.part.%d" % (os.path.basename(path), os.getpid()))
    with open(tmp, "x") as f:
        f.write(text)
    try:
        os.link(tmp, path)
    finally:
        os.unlink(tmp)


CUDA_BIN = ["/usr/local/cuda/bin"]

# ---- probe ------------------------------------------------------------------------------------


def find_libs(pattern, dirs):
    hits = []
    for d in dirs:
        hits += sorted(glob.glob(os.path.join(d, pattern)))
    return hits


def python_pkg_dir(mod):
    """Folder of an nvidia.* wheel module (nvidia.nccl, nvidia.cublas), or None."""
    try:
        m = __import__(mod, fromlist=["__path__"])
        return list(m.__path__)[0]
    except Exception:  # noqa: BLE001 (any import failure means: not there)
        return None


def cmd_probe(a):
    facts = {}
    lines = []

    def say(key, value):
        facts[key] = value
        lines.append("%-22s %s" % (key + ":", value))

    osr = {}
    try:
        for line in open("/etc/os-release"):
            k, _, v = line.strip().partition("=")
            osr[k] = v.strip('"')
    except OSError:
        pass
    say("os", osr.get("PRETTY_NAME", "unknown (no /etc/os-release)"))
    say("kernel", sh(["uname", "-srm"]))
    say("glibc", sh("ldd --version 2>&1 | head -1"))
    say("cpus", str(os.cpu_count()))
    try:
        mem = [l for l in open("/proc/meminfo") if l.startswith("MemTotal")][0].split()[1]
        say("memory", "%.1f GiB (MemTotal; on the device machine it grows as used)" %
            (int(mem) / 2**20))
    except (OSError, IndexError):
        say("memory", "unknown")
    smi = which("nvidia-smi")
    if smi:
        q = sh([smi, "--query-gpu=index,name,driver_version,compute_cap,memory.total,"
                "clocks.sm,clocks.mem,power.limit", "--format=csv,noheader"], timeout=15)
        say("nvidia-smi", smi)
        say("gpus", q.replace("\n", " | ") or "(none listed)")
        first = [f.strip() for f in q.splitlines()[0].split(",")] if q else []
        if len(first) >= 4 and first[0].isdigit():
            facts["gpu_name"], facts["gpu_cc"] = first[1], first[3]
    else:
        say("nvidia-smi", "not found")
        say("gpus", "none (no nvidia-smi)")
    nvcc = which("nvcc", CUDA_BIN)
    say("nvcc", nvcc or "not found")
    if nvcc:
        rel = [l for l in sh([nvcc, "--version"]).splitlines() if "release" in l]
        say("nvcc version", rel[0].split(",", 1)[-1].strip() if rel else "?")
        say("nvcc archs", " ".join(sh([nvcc, "--list-gpu-code"]).split()))
    cuda_lib_dirs = ["/usr/local/cuda/lib64", "/usr/local/cuda/targets/x86_64-linux/lib",
                     "/usr/lib/x86_64-linux-gnu", "/usr/lib64"]
    cub = find_libs("libcublasLt.so*", cuda_lib_dirs)
    pc = python_pkg_dir("nvidia.cublas")
    if pc:
        cub += find_libs("libcublasLt.so*", [os.path.join(pc, "lib")])
    say("cublasLt", ", ".join(cub[:4]) or "not found")
    nccl_py = python_pkg_dir("nvidia.nccl")
    nccl = find_libs("libnccl.so*", cuda_lib_dirs)
    if nccl_py:
        nccl = find_libs("libnccl.so*", [os.path.join(nccl_py, "lib")]) + nccl
    say("nccl", ", ".join(nccl[:4]) or "not found")
    say("nccl python wheel", nccl_py or "not installed")
    for tool in ("compute-sanitizer", "cuobjdump", "nvdisasm", "ncu", "cmake", "ninja", "gcc",
                 "pkg-config", "python3", "mpirun"):
        p = which(tool, CUDA_BIN + ["/usr/local/cuda/compute-sanitizer"])
        v = ""
        if p and tool in ("cmake", "gcc"):
            v = " (" + sh([p, "--version"]).splitlines()[0] + ")"
        say(tool, (p + v) if p else "not found")
    crit = find_libs("libcriterion.so*", ["/usr/lib/x86_64-linux-gnu", "/usr/lib", "/usr/lib64",
                                          "/usr/local/lib"])
    say("system criterion", ", ".join(crit[:2]) or "not found")
    debs = sorted(glob.glob(os.path.join(a.debs, "*.deb"))) if a.debs else []
    src = ""
    if a.debs and os.path.exists(os.path.join(a.debs, "SOURCE.txt")):
        src = open(os.path.join(a.debs, "SOURCE.txt")).read().strip().replace("\n", "; ")
    say("carried .debs", "%d (%s)%s" % (len(debs), " ".join(os.path.basename(d).split("_")[0]
                                                           for d in debs) or "none",
                                        "; " + src if src else ""))
    say("git", sh("git rev-parse --short=12 HEAD 2>/dev/null; git status --porcelain "
                  "--untracked-files=no 2>/dev/null | wc -l | sed 's/$/ modified files/'")
        .replace("\n", ", "))
    print("\n".join(lines))
    with open(a.out_json, "w") as f:
        json.dump(facts, f, indent=1)
    return 0


# ---- verdicts -----------------------------------------------------------------------------------


def cmd_criterion(a):
    """Criterion's JSON report: tests must have run (not 'Tested: 0'), none failed or crashed, and
    none skipped on a GPU machine except by --allow-skip. Tests left out by --filter appear as
    skipped with the message 'Test is disabled' and are not counted."""
    rep = load_json(a.report)
    if rep is None:
        tail = ""
        if a.log and os.path.exists(a.log):
            tail = " ".join(open(a.log, errors="replace").read().split()[-30:])
        print("FAIL no Criterion report (the test program crashed, hung or timed out): " +
              tail[-300:])
        return 0
    ran, failed, skipped = [], [], []
    for s in rep.get("test_suites", []):
        for t in s.get("tests", []):
            name = "%s/%s" % (s.get("name"), t.get("name"))
            st = t.get("status", "")
            msgs = " ".join(t.get("messages", []))
            if st == "SKIPPED":
                if "Test is disabled" in msgs:
                    continue
                if a.allow_skip and re.search(a.allow_skip, msgs):
                    continue
                skipped.append("%s (%s)" % (name, msgs[:160]))
            elif st == "PASSED":
                ran.append(name)
            else:
                ran.append(name)
                failed.append("%s %s: %s" % (name, st, msgs[:240]))
    if failed:
        print("FAIL %d of %d tests failed: %s" % (len(failed), len(ran), "; ".join(failed)[:900]))
    elif skipped:
        print("FAIL %d tests skipped on a GPU machine: %s" % (len(skipped),
                                                              "; ".join(skipped)[:600]))
    elif not ran:
        print("FAIL Tested: 0 (no test ran)")
    else:
        print("PASS %d tests passed (%s)" % (len(ran), ", ".join(ran)[:400]))
    return 0


def cmd_info(a):
    """`tokwatt info --format json`: CUDA built, a device seen, and an image for it."""
    d = load_json(a.info)
    if d is None:
        print("FAIL tokwatt info gave no JSON (see its log)")
        return 0
    if not d.get("cuda_built"):
        print("FAIL CUDA backend not built into this tokwatt")
        return 0
    devs = d.get("cuda_devices") or []
    if not devs:
        print("FAIL CUDA unusable: %s (runtime %s, driver %s)" %
              (d.get("cuda_status"), d.get("cuda_runtime"), d.get("cuda_driver")))
        return 0
    parts = []
    bad = []
    for dv in devs:
        img = dv.get("cuda_image") or {}
        parts.append("%s cc %s, %s SMs, image: %s" % (dv.get("name"), dv.get("compute_capability"),
                                                     dv.get("sm_count"),
                                                     img.get("summary", "not reported")))
        if img and not img.get("runnable", True):
            bad.append(dv.get("name"))
    if bad:
        print("FAIL no kernel image for %s: %s" % (", ".join(bad), "; ".join(parts)))
    elif a.expect_jit and not all((dv.get("cuda_image") or {}).get("mode") == "jit"
                                  for dv in devs):
        print("FAIL CUDA_FORCE_PTX_JIT=1 but the image is not JIT from PTX: " + "; ".join(parts))
    else:
        print("PASS driver %s, runtime %s; %s" % (d.get("cuda_driver"), d.get("cuda_runtime"),
                                                  "; ".join(parts)))
    return 0


def cmd_sanitizer(a):
    log = open(a.log, errors="replace").read() if os.path.exists(a.log) else ""
    sums = [int(x) for x in re.findall(r"ERROR SUMMARY: (\d+) error", log)]
    crit = io_capture(cmd_criterion, argparse.Namespace(report=a.report, log=a.log,
                                                        allow_skip=None))
    if not sums:
        print("FAIL no ERROR SUMMARY from compute-sanitizer (it did not run, or was killed): " +
              " ".join(log.split()[-25:])[-300:])
    elif any(sums):
        first = re.search(r"=+ (Invalid|Race|Uninitialized|Barrier|Error|Program hit)[^\n]*", log)
        print("FAIL %d errors (%s): %s" % (sum(sums), "+".join(map(str, sums)),
                                           first.group(0)[:300] if first else ""))
    elif not crit.startswith("PASS"):
        print("FAIL sanitizer found 0 errors but the tests under it: " + crit)
    else:
        print("PASS 0 errors in %d processes; %s" % (len(sums), crit[5:200]))
    return 0


def io_capture(fn, ns):
    import io
    old = sys.stdout
    sys.stdout = io.StringIO()
    try:
        fn(ns)
        return sys.stdout.getvalue().strip()
    finally:
        sys.stdout = old


def cmd_bench(a):
    d = load_json(a.json)
    if d is None:
        print("FAIL no benchmark JSON")
        return 0
    parts = []
    c = d.get("copy")
    if c:
        parts.append("copy %.0f GB/s" % (c["copy_bw_bytes_per_s"] / 1e9))
    for r in d.get("results", []):
        shape = "x".join(str(r[k]) for k in ("m", "n", "k") if k in r) or \
            ("S=%s" % r.get("seq") if "seq" in r else "b%s" % r.get("batch"))
        s = "%s %s %s: %.1f TFLOP/s" % (r.get("kernel"), r.get("impl"), shape, r.get("tflops", 0))
        if r.get("ratio_to_cublas") is not None and r.get("impl") != "cublas":
            s += " (%.2fx cuBLAS)" % r["ratio_to_cublas"]
        if r.get("fraction_of_copy_bw") is not None:
            s += " %.0f%% of copy BW" % (100 * r["fraction_of_copy_bw"])
        parts.append(s)
    print("PASS " + "; ".join(parts))
    return 0


def run_figures(d):
    rows = d.get("rows") or [d]
    out = []
    for r in rows:
        sc, m = r.get("scenario", {}), r.get("metrics", {})
        out.append("b%s p%s: decode %.1f t/s, prefill %.0f t/s%s" % (
            sc.get("batch"), sc.get("prompt"), m.get("decode_tokens_per_s") or 0,
            m.get("prefill_tokens_per_s") or 0,
            (", %.0f%% of BW roofline" % (100 * m["decode_bandwidth_fraction"]))
            if m.get("decode_bandwidth_fraction") else ""))
    return "; ".join(out)


def cmd_run(a):
    d = load_json(a.json)
    if d is None:
        print("FAIL no result JSON from tokwatt run")
    elif not d.get("complete", False):
        print("FAIL result marked incomplete: " + run_figures(d))
    else:
        print("PASS " + run_figures(d))
    return 0


# ---- SASS and fatbin (cuobjdump on the built executable) --------------------------------------

SASS_WANT = [
    # (kernel-name substring, instruction, at least, why)
    ("tw_k_gemm_mma", "HMMA", 1, "mma.sync GEMM on tensor cores"),
    ("tw_k_gemv", "HMMA", 1, "decode GEMV on tensor cores"),
    ("tw_k_attn_prefill", "HMMA", 1, "flash attention on tensor cores"),
    ("tw_k_gemm_wgmma", "HGMMA", 1, "wgmma warpgroup MMA"),
    ("tw_k_gemm_wgmma_tma", "HGMMA", 1, "wgmma_tma warpgroup MMA"),
    ("tw_k_gemm_wgmma_tma", "UTMALDG", 1, "wgmma_tma TMA loads"),
]

SASS_NO_LOCAL = ("tw_k_gemm_wgmma_tma", "tw_k_gemv", "tw_k_gemm_mma")


def sass_functions(text):
    """{function name: SASS text} from `cuobjdump -sass` output."""
    funcs, name, buf = {}, None, []
    for line in text.splitlines():
        m = re.match(r"\s*Function : (\S+)", line)
        if m:
            if name:
                funcs[name] = "\n".join(buf)
            name, buf = m.group(1), []
        elif name:
            buf.append(line)
    if name:
        funcs[name] = "\n".join(buf)
    return funcs


def cmd_sass(a):
    elf = sh([a.cuobjdump, "--list-elf", a.binary], timeout=60)
    ptx = sh([a.cuobjdump, "--list-ptx", a.binary], timeout=60)
    archs_elf = sorted(set(re.findall(r"\.(sm_\d+a?f?)\.cubin", elf)))
    archs_ptx = sorted(set(re.findall(r"\.(sm_\d+a?f?)\.ptx", ptx)))
    sass = sh([a.cuobjdump, "-sass", "-arch", a.arch, a.binary], timeout=120)
    funcs = sass_functions(sass)
    res = {"elf_archs": archs_elf, "ptx_archs": archs_ptx, "sass_arch": a.arch, "kernels": {}}
    problems = []
    for sub, ins, least, why in SASS_WANT:
        if "wgmma" in sub and a.arch != "sm_90a":
            continue
        names = [f for f in funcs if sub in f and not (sub == "tw_k_gemm_wgmma" and "tma" in f)]
        n = sum(len(re.findall(r"\b%s\b" % ins, funcs[f])) for f in names)
        res["kernels"]["%s %s" % (sub, ins)] = n
        if n < least:
            problems.append("%s: %d %s (want >= %d: %s)" % (sub, n, ins, least, why))
    # local memory (an array the compiler could not keep in registers) in the kernels whose
    # speed depends on it
    for sub in SASS_NO_LOCAL:
        local = sum(len(re.findall(r"\b(LDL|STL)\b", t)) for f, t in funcs.items() if sub in f)
        res["kernels"]["%s LDL/STL" % sub] = local
        if local:
            problems.append("%s: %d local-memory loads/stores (LDL/STL)" % (sub, local))
    if "sm_80" not in archs_ptx:
        problems.append("no compute_80 PTX in the fatbin (cuobjdump --list-ptx: %s)" %
                        (archs_ptx or "none"))
    with open(a.out_json, "w") as f:
        json.dump(res, f, indent=1)
    detail = "ELF %s, PTX %s; %s" % (",".join(archs_elf),
                                     ",".join(a.replace("sm_", "compute_") for a in archs_ptx),
                                     ", ".join("%s=%d" % kv for kv in res["kernels"].items()))
    print(("FAIL " + "; ".join(problems) + " | " if problems else "PASS ") + detail)
    return 0


# ---- the result file ----------------------------------------------------------------------------

STEP_FIELDS = ("step", "result", "detail", "start_s", "wall_s", "timeout_s", "estimate_s", "rc",
               "log")


def read_steps(logs):
    steps = []
    p = os.path.join(logs, "steps.tsv")
    if os.path.exists(p):
        for line in open(p, errors="replace"):
            f = line.rstrip("\n").split("\t")
            if len(f) < 3:
                continue
            rec = dict(zip(STEP_FIELDS, f))
            for k in ("start_s", "wall_s", "timeout_s", "estimate_s", "rc"):
                if k in rec:
                    try:
                        rec[k] = int(rec[k])
                    except ValueError:
                        rec[k] = None
            steps.append(rec)
    return steps


def read_meta(logs):
    meta = {}
    p = os.path.join(logs, "meta.tsv")
    if os.path.exists(p):
        for line in open(p, errors="replace"):
            k, _, v = line.rstrip("\n").partition("\t")
            meta[k] = v
    return meta


def build_result(logs, complete, running):
    meta = read_meta(logs)
    steps = read_steps(logs)
    failed = [s["step"] for s in steps if s["result"] == "FAIL"]
    hook = meta.get("test_hook") or None
    if not complete:
        verdict = "INCOMPLETE"
    elif failed or hook:
        verdict = "FAIL"
    else:
        verdict = "PASS"
    doc = {
        "schema": "tokwatt.gpu-check/2",
        "complete": bool(complete),
        "running": running or None,
        "verdict": verdict,
        "failed_steps": failed,
        "skipped_steps": [s["step"] for s in steps if s["result"] == "SKIP"],
        "device": meta.get("device", "unknown"),
        "date": meta.get("stamp"),
        "updated_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "elapsed_s": int(meta.get("elapsed_s", "0") or 0),
        "budget_s": int(meta.get("budget_s", "0") or 0),
        "git_commit": meta.get("git_commit"),
        "git_dirty": meta.get("git_dirty") == "1",
        "options": meta.get("options", ""),
        "test_hook": hook,
        "suggested_path": meta.get("suggested_path"),
        "checks": steps,
    }
    doc["plan"] = load_json(os.path.join(logs, "plan.json"))
    for key, name in (("environment", "probe.json"), ("cuda_info", "info.json"),
                      ("cuda_info_forced_ptx_jit", "info-jit.json"), ("sass", "sass.json"),
                      ("bench", "bench.json"), ("bench_wgmma", "bench-wgmma.json"),
                      ("bench_wgmma_tma", "bench-wgmma_tma.json")):
        v = load_json(os.path.join(logs, name))
        if v is not None:
            doc[key] = v
    runs = {}
    for p in sorted(glob.glob(os.path.join(logs, "run-8b-*.json"))):
        v = load_json(p)
        if v is not None:
            runs[os.path.basename(p)[len("run-8b-"):-5]] = v
    if runs:
        doc["engine_runs"] = runs
    return doc


def cmd_result(a):
    doc = build_result(a.logs, a.complete, a.running)
    text = json.dumps(doc, indent=1) + "\n"
    for out in a.out:
        write_atomic(out, text)
    if a.final:
        try:
            write_exclusive(a.final, text)
        except FileExistsError:
            print("gpu-check: %s exists; not overwritten" % a.final, file=sys.stderr)
            return 1
    return 0


def cmd_summary(a):
    doc = build_result(a.logs, True, None)
    print("## gpu-check on %s (%s)" % (doc["device"], doc["date"]))
    print()
    print("| step | result | s | detail |")
    print("|---|---|---:|---|")
    for s in doc["checks"]:
        print("| %s | %s | %s | %s |" % (s["step"], s["result"], s.get("wall_s", ""),
                                         (s.get("detail") or "").replace("|", "/")[:400]))
    print()
    print("Elapsed %d s of a %d s budget. Verdict: %s%s" % (
        doc["elapsed_s"], doc["budget_s"], doc["verdict"],
        (" (failed: %s)" % ", ".join(doc["failed_steps"])) if doc["failed_steps"] else ""))
    return 0


def main():
    ap = argparse.ArgumentParser(description=__doc__)
    sub = ap.add_subparsers(dest="cmd", required=True)
    p = sub.add_parser("probe")
    p.add_argument("--out-json", required=True)
    p.add_argument("--debs", default="")
    p.set_defaults(fn=cmd_probe)
    p = sub.add_parser("criterion")
    p.add_argument("report")
    p.add_argument("--log")
    p.add_argument("--allow-skip")
    p.set_defaults(fn=cmd_criterion)
    p = sub.add_parser("info")
    p.add_argument("info")
    p.add_argument("--expect-jit", action="store_true")
    p.set_defaults(fn=cmd_info)
    p = sub.add_parser("sanitizer")
    p.add_argument("log")
    p.add_argument("report")
    p.set_defaults(fn=cmd_sanitizer)
    p = sub.add_parser("bench")
    p.add_argument("json")
    p.set_defaults(fn=cmd_bench)
    p = sub.add_parser("run")
    p.add_argument("json")
    p.set_defaults(fn=cmd_run)
    p = sub.add_parser("sass")
    p.add_argument("--cuobjdump", required=True)
    p.add_argument("--binary", required=True)
    p.add_argument("--arch", required=True)
    p.add_argument("--out-json", required=True)
    p.set_defaults(fn=cmd_sass)
    p = sub.add_parser("result")
    p.add_argument("--logs", required=True)
    p.add_argument("--out", action="append", default=[])
    p.add_argument("--final")
    p.add_argument("--complete", type=int, default=0)
    p.add_argument("--running", default="")
    p.set_defaults(fn=cmd_result)
    p = sub.add_parser("summary")
    p.add_argument("--logs", required=True)
    p.set_defaults(fn=cmd_summary)
    a = ap.parse_args()
    return a.fn(a)


if __name__ == "__main__":
    sys.exit(main())
