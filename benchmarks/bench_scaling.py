"""Simulator scaling: is wall time per simulated iteration flat as a saturated run grows (no O(n^2) bookkeeping)?

Two measurements of the same saturated workload (Llama-3.1-8B, 1 x H100-SXM, vLLM scheduler, prompts U(100, 1000),
outputs U(50, 300) tokens; one replica serves ~34 req/s of it, so Poisson 70 req/s is ~2x its capacity and the
waiting queue grows to tens of thousands of requests; `--arrival offline` puts all of them in the queue at t=0):

  windows  one run of N requests (default 100,000); a PlainDecoding subclass stamps perf_counter every `--window`
           iterations, so we get wall microseconds per iteration in successive windows of the run, plus
           requests completed and the waiting-queue length at each window (from the per-iteration series).
  sizes    the same workload with num_requests = 12.5k, 25k, 50k, 100k, each in a fresh subprocess (so peak RSS
           is that run's): engine wall / iterations must not grow with N.

Each run prints one JSON line. Pin to a core on a shared machine: `taskset -c 0 .venv/bin/python
benchmarks/bench_scaling.py windows` (and `sizes`).
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import subprocess
import sys
import time
from array import array

from roofsim.model.batch import BatchShape
from roofsim.model.cost import CostModel
from roofsim.simulator.config import SimConfig
from roofsim.simulator.run import simulate
from roofsim.simulator.strategy import PlainDecoding

SIZES = (12_500, 25_000, 50_000, 100_000)


def config(n: int, arrival: str, rate: float) -> SimConfig:
    arr = {"kind": "offline"} if arrival == "offline" else {"kind": "poisson", "rate_per_s": rate}
    return SimConfig.from_dict({
        "workload": {"kind": "synthetic", "arrival": arr,
                     "input": {"kind": "uniform", "low": 100, "high": 1000},
                     "output": {"kind": "uniform", "low": 50, "high": 300}, "num_requests": n},
        "replicas": [{"model": "llama-3.1-8b", "hardware": "h100-sxm", "scheduler": {"kind": "vllm"}}]})


def _peak_rss_mb() -> int:
    return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)


def _common(s: dict, wall: float, cpu: float) -> dict:
    it = s["iterations"]
    return {"requests": s["requests_total"], "completed": s["requests_completed"], "iterations": it,
            "sim_duration_s": round(s["sim_duration_s"], 1), "wall_total_s": round(wall, 2),
            "cpu_total_s": round(cpu, 2),
            "wall_engine_s": round(s["wall_s"], 2), "us_per_iteration_engine": round(1e6 * s["wall_s"] / it, 1),
            "sim_s_per_wall_s": round(s["sim_duration_s"] / wall, 1), "iterations_per_wall_s": round(it / wall),
            "saturated": s["saturated"], "waiting_at_last_arrival": s["waiting_at_last_arrival"],
            "stop_reason": s["stop_reason"], "requests_per_s": round(s["requests_per_s"], 2),
            "mean_batch_size": round(s["mean_batch_size"], 1), "peak_rss_mb": _peak_rss_mb()}


def windows(n: int, arrival: str, rate: float, window: int) -> dict:
    stamps = array("d")  # perf_counter after every `window`-th iteration was costed
    cpu_stamps = array("d")  # process CPU time at the same points (robust to other processes on the core)

    class StampingDecoding(PlainDecoding):
        """Plain decoding that records the wall clock every `window` iterations (one compare + decrement per step)."""

        def __init__(self, cost: CostModel) -> None:
            super().__init__(cost)
            self.k = 0

        def step(self, shape: BatchShape) -> tuple[float, float]:
            if self.k == 0:  # before iterations 1, window + 1, 2 * window + 1, ...
                self.k = window
                stamps.append(time.perf_counter())
                cpu_stamps.append(time.process_time())
            self.k -= 1
            return super().step(shape)

    progress: list[tuple[float, int]] = []

    def cb(done: int, total: int) -> None:
        progress.append((time.perf_counter(), done))

    cfg = config(n, arrival, rate)
    t0, c0 = time.perf_counter(), time.process_time()
    r = simulate(cfg, progress=cb, strategy_factory=StampingDecoding)
    wall, cpu = time.perf_counter() - t0, time.process_time() - c0
    out = {"mode": "windows", "arrival": arrival, "rate_per_s": None if arrival == "offline" else rate,
           "window_iterations": window, **_common(r.summary, wall, cpu)}
    st, waiting = r.series.start_s, r.series.waiting
    us = [1e6 * (b - a) / window for a, b in zip(stamps[:-1], stamps[1:], strict=False)]
    cus = [1e6 * (b - a) / window for a, b in zip(cpu_stamps[:-1], cpu_stamps[1:], strict=False)]
    rows = []
    for i, (u, c) in enumerate(zip(us, cus, strict=True)):
        hi = (i + 1) * window - 1  # index of the last iteration in this window
        rows.append({"iterations": f"{i * window}-{hi + 1}", "wall_us_per_it": round(u, 1),
                     "cpu_us_per_it": round(c, 1), "sim_time_end_s": round(float(st[hi]), 1),
                     "waiting_at_end": int(waiting[hi])})
    out["windows"] = rows
    for key, v in (("wall", us), ("cpu", cus)):
        out[f"{key}_us_per_it_window_median_min_max"] = [round(statistics.median(v), 1), round(min(v), 1),
                                                         round(max(v), 1)]
        # first vs last quarter of the windows: the O(n^2) check
        q = max(1, len(v) // 4)
        out[f"{key}_us_per_it_first_vs_last_quarter"] = [round(statistics.mean(v[:q]), 1),
                                                         round(statistics.mean(v[-q:]), 1)]
    out["progress_callbacks"] = len(progress)
    # engine setup before the first iteration (trace generation, cost-model / memory-plan construction)
    out["setup_wall_s"] = round(stamps[0] - t0, 2)
    out["setup_cpu_s"] = round(cpu_stamps[0] - c0, 2)
    return out


def one(n: int, arrival: str, rate: float) -> dict:
    t0, c0 = time.perf_counter(), time.process_time()
    r = simulate(config(n, arrival, rate))
    wall, cpu = time.perf_counter() - t0, time.process_time() - c0
    return {"mode": "size", "arrival": arrival, "rate_per_s": None if arrival == "offline" else rate,
            **_common(r.summary, wall, cpu), "cpu_us_per_iteration_total": round(1e6 * cpu / r.summary["iterations"], 1)}


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("mode", choices=("windows", "sizes", "one"))
    p.add_argument("-n", type=int, default=100_000, help="requests (windows / one)")
    p.add_argument("--arrival", choices=("poisson", "offline"), default="poisson")
    p.add_argument("--rate", type=float, default=70.0, help="Poisson rate, req/s (~2x one replica's capacity)")
    p.add_argument("--window", type=int, default=10_000, help="iterations per window")
    p.add_argument("--sizes", type=int, nargs="+", default=list(SIZES))
    a = p.parse_args()
    if a.mode == "windows":
        print(json.dumps(windows(a.n, a.arrival, a.rate, a.window)))
    elif a.mode == "one":
        print(json.dumps(one(a.n, a.arrival, a.rate)))
    else:
        for n in a.sizes:  # fresh interpreter per size: peak RSS is that run's own
            cmd = [sys.executable, __file__, "one", "-n", str(n), "--arrival", a.arrival, "--rate", str(a.rate)]
            res = subprocess.run(cmd, check=True, capture_output=True, text=True)
            print(res.stdout.strip().splitlines()[-1], flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
