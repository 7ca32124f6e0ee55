"""Ensemble speed: a 5,000-request run of Llama-3.1-8B on 2 x H100 (shipped calibration), once plainly and as a
16-member ensemble (kernel times drawn from the profile's error model) on a local process pool of --jobs workers;
prints both wall times, their ratio (target <= 5x on 2 cores) and the load average around each run."""

from __future__ import annotations

import argparse
import json
import os
import time

from roofsim.simulator.config import SimConfig
from roofsim.simulator.ensemble import run_ensemble
from roofsim.simulator.planning.executors import make_executor
from roofsim.simulator.run import resolve_config_quants, simulate
from roofsim.validation.profiles import error_model_for, resolve_config_calibrations


def config(num_requests: int) -> SimConfig:
    cfg = SimConfig.from_dict({"workload": {"kind": "named", "name": "conversation", "num_requests": num_requests},
                               "replicas": [{"model": "llama-3.1-8b", "hardware": "h100-sxm", "count": 2}]}, "bench")
    cfg, _ = resolve_config_calibrations(cfg)
    return resolve_config_quants(cfg)[0]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--requests", type=int, default=5000)
    ap.add_argument("--members", type=int, default=16)
    ap.add_argument("--jobs", type=int, default=2)
    args = ap.parse_args()
    cfg = config(args.requests)
    em, label = error_model_for("h100-sxm")
    load0 = os.getloadavg()[0]
    t = time.perf_counter()
    plain = simulate(cfg)
    single = time.perf_counter() - t
    load1 = os.getloadavg()[0]
    ex = make_executor(None, args.jobs)
    t = time.perf_counter()
    try:  # wall time includes starting the pool's worker processes
        ens = run_ensemble(cfg, [em] * len(cfg.replicas), args.members, executor=ex)
    finally:
        ex.close()
    wall = time.perf_counter() - t
    load2 = os.getloadavg()[0]
    s = ens.summary(("ttft_s.p99", "tpot_s.p50", "output_tokens_per_s"))
    print(json.dumps({
        "requests": args.requests, "members": args.members, "jobs": args.jobs, "error_model": label,
        "single_run_wall_s": round(single, 2), "single_run_iterations": plain.summary["iterations"],
        "ensemble_wall_s": round(wall, 2), "ratio": round(wall / single, 2), "target_ratio": 5.0,
        "load_avg_1min": {"before": load0, "after_single": load1, "after_ensemble": load2},
        "ranges": s,
    }, indent=2))


if __name__ == "__main__":
    main()
