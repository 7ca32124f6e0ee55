"""Malformed and extreme command lines, each run in a subprocess with a time bound: the exit code must be the
expected one (1 nothing done, 2 bad input, 130 interrupted), stderr must name the input and hold no traceback, and
no output file may be left half written. tests/app/test_cli_robustness.py runs the fast cases in-process.

Run: `.venv/bin/python scripts/cli_robustness.py [--fast] [-k SUBSTRING] [--timeout 60]`; exit 0 when every case
passes. The table (CASES) and the files it needs (make_fixtures) are importable.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Case:
    """One command line; `{d}` in an argument is the fixture folder. `names`: text stderr must contain (the flag,
    field, file or limit); `fast`: fails before any simulation (the in-process pytest subset runs these)."""

    id: str
    argv: tuple[str, ...]
    code: int
    names: str
    fast: bool = True
    no_file: str | None = None  # a path (with {d}) that must not exist afterwards


def _c(id: str, cmd: str, code: int, names: str, fast: bool = True, no_file: str | None = None) -> Case:
    return Case(id, tuple(cmd.split()), code, names, fast, no_file)


SIM = "simulate --num-requests 5"
EST = "estimate --model llama-3.1-8b --hardware h100"
PLAN = "plan --model llama-3.1-8b --workload conversation --slo-ttft-p99 1 --slo-tpot-p99 0.1 --no-cache"

CASES: tuple[Case, ...] = (
    # ---- simulate: flag limits (item 1) and flag syntax
    _c("sim-duration-1e308", "simulate --duration 1e308", 2, "--duration"),
    _c("sim-duration-1e9", "simulate --duration 1e9", 2, "MAX_DURATION_S"),
    _c("sim-duration-0", "simulate --duration 0", 2, "--duration"),
    _c("sim-duration-nan", "simulate --duration nan", 2, "--duration"),
    _c("sim-duration-inf", "simulate --duration inf", 2, "--duration"),
    _c("sim-duration-neg", "simulate --duration -5", 2, "--duration"),
    _c("sim-num-requests-1e12", "simulate --num-requests 1e12", 2, "MAX_REQUESTS"),
    _c("sim-num-requests-0", "simulate --num-requests 0", 2, "--num-requests"),
    _c("sim-num-requests-float", "simulate --num-requests 2.5", 2, "--num-requests"),
    _c("sim-num-requests-word", "simulate --num-requests many", 2, "--num-requests"),
    _c("sim-replicas-1e6", "simulate --replicas 1000000", 2, "MAX_REPLICAS"),
    _c("sim-replicas-0", "simulate --replicas 0", 2, "--replicas"),
    _c("sim-tp-huge", "simulate --tp 100000", 2, "MAX_PARALLEL"),
    _c("sim-tp-0", "simulate --tp 0", 2, "--tp"),
    _c("sim-pp-neg", "simulate --pp -1", 2, "--pp"),
    _c("sim-rate-1e-300", f"{SIM} --rate 1e-300", 2, "MAX_DURATION_S"),
    _c("sim-rate-0", "simulate --rate 0", 2, "--rate"),
    _c("sim-rate-huge", "simulate --rate 1e12", 2, "MAX_RATE_PER_S"),
    _c("sim-rate-nan", "simulate --rate nan", 2, "--rate"),
    _c("sim-rate-scale-0", "simulate --rate-scale 0", 2, "--rate-scale"),
    _c("sim-rate-scale-neg", "simulate --rate-scale -2", 2, "--rate-scale"),
    _c("sim-rate-scale-tiny", "simulate --rate-scale 1e-300", 2, "--rate-scale"),
    _c("sim-rate-duration-implied", "simulate --rate 100000 --duration 1000000", 2, "MAX_REQUESTS"),
    _c("sim-seed-neg", "simulate --seed -1", 2, "--seed"),
    _c("sim-seed-huge", "simulate --seed 99999999999999999999999", 2, "MAX_SEED"),
    _c("sim-unknown-model", f"{SIM} --model llama-9000", 2, "llama-9000"),
    _c("sim-unknown-hardware", f"{SIM} --hardware h9000", 2, "h9000"),
    _c("sim-unknown-workload", f"{SIM} --workload nope", 2, "nope"),
    _c("sim-workload-and-trace", "simulate --workload conversation --trace {d}/trace.csv", 2, "--trace"),
    _c("sim-missing-trace", f"{SIM} --trace {{d}}/absent.csv", 2, "absent.csv"),
    _c("sim-set-no-equals", "simulate --set seed", 2, "--set"),
    _c("sim-set-unknown-key", "simulate --set replicas.0.schedulr.kind=vllm", 2, "schedulr"),
    _c("sim-set-bad-index", "simulate --set replicas.5.tp=2", 2, "replicas"),
    _c("sim-set-count-huge", "simulate --set replicas.0.count=100000", 2, "MAX_REPLICAS"),
    _c("sim-set-max-seqs-huge", "simulate --set replicas.*.scheduler.max_num_seqs=1e9", 2, "MAX_BATCH_SEQS"),
    _c("sim-set-block-huge", "simulate --set replicas.0.block_size=10000000", 2, "MAX_BLOCK_TOKENS"),
    _c("sim-set-max-sim-time-inf", "simulate --set max_sim_time_s=inf", 2, "max_sim_time_s"),
    _c("sim-set-frontend-huge", "simulate --set replicas.0.frontend_s_per_request=1e12", 2, "MAX_DURATION_S"),
    _c("sim-set-seed-neg", "simulate --set seed=-5", 2, "seed"),
    _c("sim-set-gpu-util-2", "simulate --set replicas.0.gpu_memory_utilization=2", 2, "gpu_memory_utilization"),
    _c("sim-config-missing", "simulate --config {d}/absent.toml", 2, "absent.toml"),
    _c("sim-config-bad-toml", "simulate --config {d}/bad.toml", 2, "bad.toml"),
    _c("sim-config-empty", "simulate --config {d}/empty.toml", 2, "workload"),
    _c("sim-config-unknown-field", "simulate --config {d}/typo.toml", 2, "replicaz"),
    _c("sim-config-is-dir", "simulate --config {d}", 2, "{d}"),
    _c("sim-config-clients-1e8", "simulate --config {d}/clients.toml", 2, "MAX_CLIENTS"),
    _c("sim-out-is-file", f"{SIM} --out {{d}}/bad.toml", 2, "--out"),
    _c("sim-out-existing", f"{SIM} --out {{d}}/outdir", 2, "--force"),
    _c("sim-out-nothing-completes", f"{SIM} --set max_sim_time_s=0.001 --json --out {{d}}/fresh", 0, "", False),
    # ---- estimate
    _c("est-batch-1e9", f"{EST} --batch 1e9", 2, "MAX_BATCH_SEQS"),
    _c("est-batch-0", f"{EST} --batch 0", 2, "--batch"),
    _c("est-batch-too-big", f"{EST} --batch 100000", 2, "lower the batch"),
    _c("est-input-len-huge", f"{EST} --input-len 1e12", 2, "--input-len"),
    _c("est-output-len-0", f"{EST} --output-len 0", 2, "--output-len"),
    _c("est-tp-3", f"{EST} --tp 3", 2, "tp=3"),
    _c("est-tp-huge", f"{EST} --tp 4096", 2, "MAX_PARALLEL"),
    _c("est-gpu-util-0", f"{EST} --gpu-memory-utilization 0", 2, "--gpu-memory-utilization"),
    _c("est-gpu-util-nan", f"{EST} --gpu-memory-utilization nan", 2, "--gpu-memory-utilization"),
    _c("est-model-utf16", "estimate --model {d}/utf16/config.json --hardware h100", 2, "config.json"),
    _c("est-model-nested", "estimate --model {d}/nested/config.json --hardware h100", 2, "nested too deeply"),
    _c("est-hardware-bad-toml", "estimate --model llama-3.1-8b --hardware {d}/bad.toml", 2, "bad.toml"),
    _c("est-calibration-missing", f"{EST} --calibration {{d}}/absent.toml", 2, "absent.toml"),
    # ---- plan
    _c("plan-rate-0", f"{PLAN} --rate 0", 2, "--rate"),
    _c("plan-num-requests-huge", f"{PLAN} --rate 1 --num-requests 1e9", 2, "MAX_REQUESTS"),
    _c("plan-seed-neg", f"{PLAN} --rate 1 --seed -3", 2, "--seed"),
    _c("plan-tp-word", f"{PLAN} --rate 1 --tp one", 2, "--tp"),
    _c("plan-tp-huge", f"{PLAN} --rate 1 --tp 1,100000", 2, "MAX_PARALLEL"),
    _c("plan-report-no-folder", f"{PLAN} --rate 1 --report {{d}}/no/such/r.html", 2, "--report"),
    _c("plan-report-exists", f"{PLAN} --rate 1 --report {{d}}/bad.toml", 2, "--force"),
    # ---- validate, convert, calibrate, measure
    _c("val-bench-header-only", "validate benchmarks {d}/header.csv", 1, "header.csv"),
    _c("val-bench-missing", "validate benchmarks {d}/absent.csv", 2, "absent.csv"),
    _c("val-bench-report-exists", "validate benchmarks {d}/header.csv --report {d}/bad.toml", 2, "--report"),
    _c("val-bench-out-exists", "validate benchmarks {d}/header.csv --out {d}/bad.toml", 2, "--out"),
    _c("val-bench-concurrency-1e8", "validate benchmarks {d}/big.csv", 1, "MAX_CLIENTS", False),
    _c("val-kernels-empty-dir", "validate kernels {d}/emptydir", 1, "emptydir"),
    _c("val-kernels-missing", "validate kernels {d}/absent.csv", 2, "absent.csv"),
    _c("val-kernels-max-rows-0", "validate kernels {d}/emptydir --max-rows 0", 2, "--max-rows"),
    _c("val-run-missing-log", "validate run {d}/absent.json --model llama-3.1-8b --hardware h100", 2, "absent.json"),
    _c("val-run-bad-json", "validate run {d}/bad.json --model llama-3.1-8b --hardware h100", 2, "bad.json"),
    _c("val-run-tp-huge", "validate run {d}/bad.json --model llama-3.1-8b --hardware h100 --tp 5000", 2,
       "MAX_PARALLEL"),
    _c("convert-out-exists", "convert splitwise {d}/header.csv --out {d}/bad.toml", 2, "--force"),
    _c("convert-src-missing", "convert splitwise {d}/absent.csv --out {d}/conv.csv", 2, "absent.csv",
       no_file="{d}/conv.csv"),
    _c("convert-out-no-folder", "convert splitwise {d}/header.csv --out {d}/no/such/x.csv", 2, "--out"),
    _c("calibrate-no-sources", "calibrate --hardware h100 --out {d}/p.toml", 2, "SOURCES"),
    _c("calibrate-out-exists", "calibrate {d}/emptydir --hardware h100 --out {d}/bad.toml", 2, "--force"),
    _c("calibrate-local-with-hw", "calibrate --local --hardware h100", 2, "--local"),
    _c("calibrate-local-out-not-toml", "calibrate --local --out {d}/x.json", 2, "--out"),
    _c("measure-out-exists", "measure --out {d}/bad.toml", 2, "--force"),
    _c("measure-num-requests-huge", "measure --out {d}/m.json --num-requests 1e9", 2, "MAX_REQUESTS"),
    _c("measure-rate-neg", "measure --out {d}/m.json --rate -1", 2, "--rate"),
    _c("app-port", "app --port 70000", 2, "--port"),
)


def make_fixtures(d: Path) -> None:
    """The files the cases read, in folder `d`."""
    d.mkdir(parents=True, exist_ok=True)
    (d / "bad.toml").write_text("x = [1,\n", encoding="utf-8")
    (d / "empty.toml").write_text("", encoding="utf-8")
    (d / "bad.json").write_text("{not json", encoding="utf-8")
    (d / "typo.toml").write_text('replicaz = 1\n[workload]\nkind = "named"\nname = "conversation"\n',
                                 encoding="utf-8")
    (d / "clients.toml").write_text(
        'seed = 0\n[workload]\nkind = "synthetic"\nnum_requests = 10\n'
        '[workload.arrival]\nkind = "closed_loop"\nclients = 100000000\n'
        '[workload.input]\nkind = "fixed"\ntokens = 10\n[workload.output]\nkind = "fixed"\ntokens = 10\n'
        '[[replicas]]\nmodel = "llama-3.1-8b"\nhardware = "h100"\n', encoding="utf-8")
    (d / "trace.csv").write_text("arrival_s,input_tokens,output_tokens\n0,10,10\n", encoding="utf-8")
    from roofsim.validation.bench_table import COLUMNS  # noqa: PLC0415

    (d / "header.csv").write_text(",".join((*COLUMNS, "notes")) + "\n", encoding="utf-8")
    (d / "big.csv").write_text("model,hardware,num_gpus,tp,pp,ep,weight_dtype,kv_dtype,framework,mode,isl,osl,"
                               "concurrency,ttft_ms\nmeta-llama/Llama-3.1-8B-Instruct,h100-sxm,1,1,1,1,bf16,bf16,"
                               "sglang,closed_loop,128,8,100000000,20\n", encoding="utf-8")
    (d / "emptydir").mkdir(exist_ok=True)
    (d / "outdir").mkdir(exist_ok=True)
    (d / "outdir" / "summary.json").write_text("{}", encoding="utf-8")
    (d / "utf16").mkdir(exist_ok=True)
    (d / "utf16" / "config.json").write_text('{"model_type": "llama"}', encoding="utf-16")
    (d / "nested").mkdir(exist_ok=True)
    (d / "nested" / "config.json").write_text("[" * 100_000 + "]" * 100_000, encoding="utf-8")


def expand(case: Case, d: Path) -> tuple[list[str], str, str | None]:
    argv = [a.replace("{d}", str(d)) for a in case.argv]
    return argv, case.names.replace("{d}", str(d)), case.no_file.replace("{d}", str(d)) if case.no_file else None


def leftovers(d: Path) -> list[str]:
    """Temp files an interrupted or failed write left behind (atomic_path's `.name.*.tmp*`)."""
    return sorted(str(p) for p in d.rglob(".*.tmp*"))


def check(case: Case, code: int, err: str, d: Path) -> list[str]:
    """What is wrong with one finished case (empty: it passed)."""
    _, names, no_file = expand(case, d)
    bad = []
    if code != case.code:
        bad.append(f"exit {code}, expected {case.code}")
    if "Traceback (most recent call last)" in err:
        bad.append("traceback on stderr")
    if "internal error" in err:
        bad.append("reported as an internal error")
    if names and names not in err:
        bad.append(f"stderr does not name {names!r}")
    if no_file and Path(no_file).exists():
        bad.append(f"{no_file} was written")
    return bad


def run_case(case: Case, d: Path, timeout_s: float) -> tuple[int, str, float]:
    argv, _, _ = expand(case, d)
    t0 = time.monotonic()
    try:
        p = subprocess.run([sys.executable, "-m", "roofsim.app.cli", *argv], capture_output=True, text=True,
                           timeout=timeout_s, env={**os.environ, "XDG_CONFIG_HOME": str(d / "xdg")})
        return p.returncode, p.stderr, time.monotonic() - t0
    except subprocess.TimeoutExpired as e:
        return -1, f"HANG: no exit within {timeout_s:g} s\n{e.stderr or ''}", time.monotonic() - t0


def interrupt_case(d: Path, sig: int, timeout_s: float) -> list[str]:
    """SIGINT/SIGTERM during a simulate --out run: exit 130, every file in --out whole (JSON parses), no temp."""
    out = d / f"interrupted-{sig}"
    p = subprocess.Popen([sys.executable, "-m", "roofsim.app.cli", "simulate", "--num-requests", "200000",
                          "--out", str(out), "--json"], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    time.sleep(3.0)
    p.send_signal(sig)
    try:
        _, err = p.communicate(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        p.kill()
        return [f"no exit within {timeout_s:g} s after {signal.Signals(sig).name}"]
    bad = [] if p.returncode in (130, 0) else [f"exit {p.returncode}, expected 130"]
    if "Traceback" in err:
        bad.append("traceback on stderr")
    for f in out.glob("*.json") if out.exists() else ():
        try:
            json.loads(f.read_text(encoding="utf-8"))
        except ValueError:
            bad.append(f"{f} is not whole")
    return bad + [f"left {t}" for t in leftovers(out)] if out.exists() else bad


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--fast", action="store_true", help="only the cases that fail before any simulation")
    ap.add_argument("-k", default="", help="only cases whose id contains this")
    ap.add_argument("--timeout", type=float, default=90.0, help="seconds per case (default 90)")
    ap.add_argument("--dir", type=Path, default=None, help="fixture folder (default: a fresh temp folder)")
    args = ap.parse_args()
    import tempfile  # noqa: PLC0415

    d = args.dir or Path(tempfile.mkdtemp(prefix="roofsim-robust-"))
    make_fixtures(d)
    cases = [c for c in CASES if args.k in c.id and (c.fast or not args.fast)]
    failed = 0
    for c in cases:
        code, err, wall = run_case(c, d, args.timeout)
        bad = check(c, code, err, d)
        failed += bool(bad)
        print(f"{'FAIL' if bad else 'ok  '} {c.id:32} exit {code:4} {wall:5.1f} s  {'; '.join(bad)}", flush=True)
    if not args.fast and not args.k:
        for sig in (signal.SIGINT, signal.SIGTERM):
            bad = interrupt_case(d, sig, args.timeout)
            failed += bool(bad)
            print(f"{'FAIL' if bad else 'ok  '} interrupt-{signal.Signals(sig).name:22} {'; '.join(bad)}", flush=True)
    left = leftovers(d)
    if left:
        failed += 1
        print(f"FAIL temp files left: {', '.join(left)}")
    total = len(cases) + (2 if not args.fast and not args.k else 0)
    print(f"\n{total - failed} of {total} cases passed ({d})")
    return 0 if failed == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
