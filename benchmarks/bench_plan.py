"""Planner speed: a plan over >= 200 candidate configurations (run lengths chosen by the planner, or -n) on a local
process pool (cold cache), then the identical plan again (warm cache); prints wall and CPU times (this process plus its
worker processes), the load average around each run, simulations and cache hits."""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import sys
import tempfile
import time
from pathlib import Path

from roofsim.simulator.planning import PlanSpec, PointCache, make_executor, plan
from roofsim.simulator.workload import NamedWorkload


def spec(num_requests: int | None, exhaustive: bool) -> PlanSpec:
    # 5 GPUs x 4 tp x 2 weight dtypes x 2 kv dtypes x 2 schedulers x 2 batch limits = 320 candidates
    return PlanSpec(model="llama-3.1-70b", workload=NamedWorkload(name="conversation"), rate_per_s=20.0,
                    slo_ttft_s=2.0, slo_tpot_s=0.1, hardware=("h100-sxm", "h200-sxm", "a100-sxm-80gb", "l40s", "b200"),
                    tp=(1, 2, 4, 8), weight_dtypes=("bf16", "fp8"), kv_dtypes=("auto", "fp8"),
                    schedulers=("vllm", "sarathi"), max_batch=(128, 256), num_requests=num_requests,
                    exhaustive=exhaustive)


def run(s: PlanSpec, cache_dir: Path, workers: int | None) -> dict:
    ex = make_executor(None, workers)
    load0 = os.getloadavg()[0]
    kids0 = resource.getrusage(resource.RUSAGE_CHILDREN)
    t, c = time.perf_counter(), time.process_time()
    try:
        r = plan(s, ex, PointCache(cache_dir))
    finally:
        ex.close()  # joins the pool's workers, so their CPU time is in RUSAGE_CHILDREN below
    wall = time.perf_counter() - t
    kids = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = time.process_time() - c + (kids.ru_utime - kids0.ru_utime) + (kids.ru_stime - kids0.ru_stime)
    w = r.winner
    return {"wall_s": round(wall, 1), "cpu_s": round(cpu, 1), "load_avg_1min": [round(load0, 2),
            round(os.getloadavg()[0], 2)], "candidates": r.stats.candidates, "simulated_candidates":
            r.stats.simulated_candidates, "simulations": r.stats.simulations, "cache_hits": r.stats.cache_hits,
            "rounds": r.stats.rounds, "sim_cpu_s": round(r.stats.sim_wall_s, 1), "workers": r.stats.workers,
            "by_status": r.stats.by_status,
            "winner": f"{w.replicas} x {w.candidate.label} ${w.usd_per_hour:.2f}/h, capacity {w.capacity_per_s:.4g} req/s"
            if w else None}


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("-n", "--num-requests", type=int, default=None,
                   help="requests per point (default: the planner chooses per point until steady)")
    p.add_argument("--workers", type=int, default=None, help="default: all cores")
    p.add_argument("--exhaustive", action="store_true", help="no cost-bound pruning (simulates every candidate)")
    p.add_argument("--cache-dir", type=Path, help="default: a fresh temporary directory (cold start)")
    a = p.parse_args()
    tmp = None
    cache_dir = a.cache_dir
    if cache_dir is None:
        tmp = tempfile.mkdtemp(prefix="roofsim-bench-plan-")
        cache_dir = Path(tmp)
    try:
        s = spec(a.num_requests, a.exhaustive)
        cold = run(s, cache_dir, a.workers)
        warm = run(s, cache_dir, a.workers)
    finally:
        if tmp is not None:
            shutil.rmtree(tmp, ignore_errors=True)
    out = {"cores": os.cpu_count(), "num_requests": a.num_requests, "exhaustive": a.exhaustive,
           "cold": cold, "warm": warm}
    json.dump(out, sys.stdout, indent=2)
    sys.stdout.write("\n")
    return 0


if __name__ == "__main__":  # the spawn-based process pool re-imports this module
    sys.exit(main())
