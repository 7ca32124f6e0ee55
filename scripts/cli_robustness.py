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


SHORT = {"$PLAN": "plan --model llama-3.1-8b --workload conversation --slo-ttft-p99 1 --slo-tpot-p99 0.1 --no-cache",
         "$EST": "estimate --model llama-3.1-8b --hardware h100"}
# id | expected exit code | text stderr must contain | "slow" (runs a simulation) and/or no_file=PATH | argv
TABLE = """
sim-duration-1e308 | 2 | --duration |  | simulate --duration 1e308
sim-duration-1e9 | 2 | MAX_DURATION_S |  | simulate --duration 1e9
sim-duration-0 | 2 | --duration |  | simulate --duration 0
sim-duration-nan | 2 | --duration |  | simulate --duration nan
sim-duration-inf | 2 | --duration |  | simulate --duration inf
sim-duration-neg | 2 | --duration |  | simulate --duration -5
sim-num-requests-1e12 | 2 | MAX_REQUESTS |  | simulate --num-requests 1e12
sim-num-requests-0 | 2 | --num-requests |  | simulate --num-requests 0
sim-num-requests-float | 2 | --num-requests |  | simulate --num-requests 2.5
sim-num-requests-word | 2 | --num-requests |  | simulate --num-requests many
sim-replicas-1e6 | 2 | MAX_REPLICAS |  | simulate --replicas 1000000
sim-replicas-0 | 2 | --replicas |  | simulate --replicas 0
sim-tp-huge | 2 | MAX_PARALLEL |  | simulate --tp 100000
sim-tp-0 | 2 | --tp |  | simulate --tp 0
sim-pp-neg | 2 | --pp |  | simulate --pp -1
sim-rate-1e-300 | 2 | MAX_DURATION_S |  | simulate --num-requests 5 --rate 1e-300
sim-rate-0 | 2 | --rate |  | simulate --rate 0
sim-rate-huge | 2 | MAX_RATE_PER_S |  | simulate --rate 1e12
sim-rate-nan | 2 | --rate |  | simulate --rate nan
sim-rate-scale-0 | 2 | --rate-scale |  | simulate --rate-scale 0
sim-rate-scale-neg | 2 | --rate-scale |  | simulate --rate-scale -2
sim-rate-scale-tiny | 2 | --rate-scale |  | simulate --rate-scale 1e-300
sim-rate-duration-implied | 2 | MAX_REQUESTS |  | simulate --rate 100000 --duration 1000000
sim-seed-neg | 2 | --seed |  | simulate --seed -1
sim-seed-huge | 2 | MAX_SEED |  | simulate --seed 99999999999999999999999
sim-unknown-model | 2 | llama-9000 |  | simulate --num-requests 5 --model llama-9000
sim-unknown-hardware | 2 | h9000 |  | simulate --num-requests 5 --hardware h9000
sim-unknown-workload | 2 | nope |  | simulate --num-requests 5 --workload nope
sim-workload-and-trace | 2 | --trace |  | simulate --workload conversation --trace {d}/trace.csv
sim-missing-trace | 2 | absent.csv |  | simulate --num-requests 5 --trace {d}/absent.csv
sim-set-no-equals | 2 | --set |  | simulate --set seed
sim-set-unknown-key | 2 | schedulr |  | simulate --set replicas.0.schedulr.kind=vllm
sim-set-bad-index | 2 | replicas |  | simulate --set replicas.5.tp=2
sim-set-count-huge | 2 | MAX_REPLICAS |  | simulate --set replicas.0.count=100000
sim-set-max-seqs-huge | 2 | MAX_BATCH_SEQS |  | simulate --set replicas.*.scheduler.max_num_seqs=1e9
sim-set-block-huge | 2 | MAX_BLOCK_TOKENS |  | simulate --set replicas.0.block_size=10000000
sim-set-max-sim-time-inf | 2 | max_sim_time_s |  | simulate --set max_sim_time_s=inf
sim-set-frontend-huge | 2 | MAX_DURATION_S |  | simulate --set replicas.0.frontend_s_per_request=1e12
sim-set-seed-neg | 2 | seed |  | simulate --set seed=-5
sim-set-gpu-util-2 | 2 | gpu_memory_utilization |  | simulate --set replicas.0.gpu_memory_utilization=2
sim-config-missing | 2 | absent.toml |  | simulate --config {d}/absent.toml
sim-config-bad-toml | 2 | bad.toml |  | simulate --config {d}/bad.toml
sim-config-empty | 2 | workload |  | simulate --config {d}/empty.toml
sim-config-unknown-field | 2 | replicaz |  | simulate --config {d}/typo.toml
sim-config-is-dir | 2 | {d} |  | simulate --config {d}
sim-config-clients-1e8 | 2 | MAX_CLIENTS |  | simulate --config {d}/clients.toml
sim-out-is-file | 2 | --out |  | simulate --num-requests 5 --out {d}/bad.toml
sim-out-existing | 2 | --force |  | simulate --num-requests 5 --out {d}/outdir
sim-out-nothing-completes | 0 |  | slow | simulate --num-requests 5 --set max_sim_time_s=0.001 --json --out {d}/fresh
est-batch-1e9 | 2 | MAX_BATCH_SEQS |  | $EST --batch 1e9
est-batch-0 | 2 | --batch |  | $EST --batch 0
est-batch-too-big | 2 | lower the batch |  | $EST --batch 100000
est-input-len-huge | 2 | --input-len |  | $EST --input-len 1e12
est-output-len-0 | 2 | --output-len |  | $EST --output-len 0
est-tp-3 | 2 | tp=3 |  | $EST --tp 3
est-tp-huge | 2 | MAX_PARALLEL |  | $EST --tp 4096
est-gpu-util-0 | 2 | --gpu-memory-utilization |  | $EST --gpu-memory-utilization 0
est-gpu-util-nan | 2 | --gpu-memory-utilization |  | $EST --gpu-memory-utilization nan
est-model-utf16 | 2 | config.json |  | estimate --model {d}/utf16/config.json --hardware h100
est-model-nested | 2 | MAX_NESTING_DEPTH |  | estimate --model {d}/nested/config.json --hardware h100
est-hardware-bad-toml | 2 | bad.toml |  | estimate --model llama-3.1-8b --hardware {d}/bad.toml
est-calibration-missing | 2 | absent.toml |  | $EST --calibration {d}/absent.toml
plan-rate-0 | 2 | --rate |  | $PLAN --rate 0
plan-num-requests-huge | 2 | MAX_REQUESTS |  | $PLAN --rate 1 --num-requests 1e9
plan-seed-neg | 2 | --seed |  | $PLAN --rate 1 --seed -3
plan-tp-word | 2 | --tp |  | $PLAN --rate 1 --tp one
plan-tp-huge | 2 | MAX_PARALLEL |  | $PLAN --rate 1 --tp 1,100000
plan-report-no-folder | 2 | --report |  | $PLAN --rate 1 --report {d}/no/such/r.html
plan-report-exists | 2 | --force |  | $PLAN --rate 1 --report {d}/bad.toml
val-bench-header-only | 1 | header.csv |  | validate benchmarks {d}/header.csv
val-bench-missing | 2 | absent.csv |  | validate benchmarks {d}/absent.csv
val-bench-report-exists | 2 | --report |  | validate benchmarks {d}/header.csv --report {d}/bad.toml
val-bench-out-exists | 2 | --out |  | validate benchmarks {d}/header.csv --out {d}/bad.toml
val-bench-concurrency-1e8 | 1 | MAX_CLIENTS | slow | validate benchmarks {d}/big.csv
val-kernels-empty-dir | 1 | emptydir |  | validate kernels {d}/emptydir
val-kernels-missing | 2 | absent.csv |  | validate kernels {d}/absent.csv
val-kernels-max-rows-0 | 2 | --max-rows |  | validate kernels {d}/emptydir --max-rows 0
val-run-missing-log | 2 | absent.json |  | validate run {d}/absent.json --model llama-3.1-8b --hardware h100
val-run-bad-json | 2 | bad.json |  | validate run {d}/bad.json --model llama-3.1-8b --hardware h100
val-run-tp-huge | 2 | MAX_PARALLEL |  | validate run {d}/bad.json --model llama-3.1-8b --hardware h100 --tp 5000
convert-out-exists | 2 | --force |  | convert splitwise {d}/header.csv --out {d}/bad.toml
convert-src-missing | 2 | absent.csv | no_file={d}/conv.csv | convert splitwise {d}/absent.csv --out {d}/conv.csv
convert-out-no-folder | 2 | --out |  | convert splitwise {d}/header.csv --out {d}/no/such/x.csv
calibrate-no-sources | 2 | SOURCES |  | calibrate --hardware h100 --out {d}/p.toml
calibrate-out-exists | 2 | --force |  | calibrate {d}/emptydir --hardware h100 --out {d}/bad.toml
calibrate-local-with-hw | 2 | --local |  | calibrate --local --hardware h100
calibrate-local-out-not-toml | 2 | --out |  | calibrate --local --out {d}/x.json
measure-out-exists | 2 | --force |  | measure --out {d}/bad.toml
measure-num-requests-huge | 2 | MAX_REQUESTS |  | measure --out {d}/m.json --num-requests 1e9
measure-rate-neg | 2 | --rate |  | measure --out {d}/m.json --rate -1
app-port | 2 | --port |  | app --port 70000
"""


def _parse(table: str) -> tuple[Case, ...]:
    cases = []
    for line in table.strip().splitlines():
        cid, code, names, flags, cmd = (f.strip() for f in line.split(" | "))
        for short, full in SHORT.items():
            cmd = cmd.replace(short, full)
        no_file = next((f.removeprefix("no_file=") for f in flags.split() if f.startswith("no_file=")), None)
        cases.append(Case(cid, tuple(cmd.split()), int(code), names, "slow" not in flags.split(), no_file))
    return tuple(cases)


CASES: tuple[Case, ...] = _parse(TABLE)


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
    row = {"model": "meta-llama/Llama-3.1-8B-Instruct", "hardware": "h100-sxm", "num_gpus": 1, "tp": 1, "pp": 1,
           "ep": 1, "weight_dtype": "bf16", "kv_dtype": "bf16", "framework": "sglang", "mode": "closed_loop",
           "isl": 128, "osl": 8, "concurrency": 100_000_000, "ttft_ms": 20}
    (d / "big.csv").write_text(",".join((*COLUMNS, "notes")) + "\n" + ",".join(
        str(row.get(c, "")) for c in (*COLUMNS, "notes")) + "\n", encoding="utf-8")
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
        p = subprocess.run([sys.executable, "-m", "roofsim", *argv], capture_output=True, text=True,
                           timeout=timeout_s, env={**os.environ, "XDG_CONFIG_HOME": str(d / "xdg")})
        return p.returncode, p.stderr, time.monotonic() - t0
    except subprocess.TimeoutExpired as e:
        return -1, f"HANG: no exit within {timeout_s:g} s\n{e.stderr or ''}", time.monotonic() - t0


def interrupt_case(d: Path, sig: int, timeout_s: float) -> list[str]:
    """SIGINT/SIGTERM during a simulate --out run: exit 130, every file in --out whole (JSON parses), no temp."""
    out = d / f"interrupted-{sig}"
    p = subprocess.Popen([sys.executable, "-m", "roofsim", "simulate", "--num-requests", "200000",
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
    sigs = [] if args.fast else [s for s in (signal.SIGINT, signal.SIGTERM) if args.k in f"interrupt-{s.name}"]
    if sigs:
        for sig in sigs:
            bad = interrupt_case(d, sig, args.timeout)
            failed += bool(bad)
            print(f"{'FAIL' if bad else 'ok  '} interrupt-{signal.Signals(sig).name:22} {'; '.join(bad)}", flush=True)
    left = leftovers(d)
    if left:
        failed += 1
        print(f"FAIL temp files left: {', '.join(left)}")
    total = len(cases) + len(sigs)
    print(f"\n{total - failed} of {total} cases passed ({d})")
    return 0 if failed == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
