"""Ensemble speed: a 5,000-request run of Llama-3.1-8B on 2 x H100 (shipped calibration), once plainly and as a
16-member ensemble (kernel times drawn from the profile's error model) on a local process pool of --jobs workers;
prints both wall times, their ratio (target <= 5x on 2 cores) and the load average around each run.

--cpu: CPU time instead, steadier on a shared machine: the plain run, then the members in this process split
between two emulated workers (each with its own memo of step parts, as a pool's workers have), each member also
on the scaled oracle (PlainDecoding, as before members shared step parts), the plain run again after each worker;
ratio = the busier worker / the median plain run."""

from __future__ import annotations

import argparse
import json
import os
import time

import numpy as np

from roofsim.simulator.config import SimConfig
from roofsim.simulator.ensemble import clear_shared_parts, member_configs, member_strategy, run_ensemble
from roofsim.simulator.planning.executors import make_executor
from roofsim.simulator.run import resolve_config_quants, simulate
from roofsim.simulator.strategy import PlainDecoding
from roofsim.simulator.workload import build_trace
from roofsim.validation.profiles import error_model_for, resolve_config_calibrations


def config(num_requests: int) -> SimConfig:
    cfg = SimConfig.from_dict({"workload": {"kind": "named", "name": "conversation", "num_requests": num_requests},
                               "replicas": [{"model": "llama-3.1-8b", "hardware": "h100-sxm", "count": 2}]}, "bench")
    cfg, _ = resolve_config_calibrations(cfg)
    return resolve_config_quants(cfg)[0]


def cpu_ratios(cfg: SimConfig, members: int, workers: int = 2, scaled_oracle: bool = True) -> dict:
    """CPU seconds of the plain run and of every member (shared step parts and, unless not `scaled_oracle`, the
    scaled oracle), members dealt to `workers` emulated workers in turn; the busiest worker's total / plain."""
    em, _ = error_model_for("h100-sxm")
    rng = np.random.default_rng(cfg.seed)
    trace = build_trace(cfg.workload, rng)
    state = rng.bit_generator.state

    def run(c: SimConfig, factory: type) -> float:
        r = np.random.default_rng()
        r.bit_generator.state = dict(state)
        t = time.process_time()
        simulate(c, trace=trace, rng=r, strategy_factory=factory)
        return time.process_time() - t

    # the plain run before, between and after the workers, its median the ratio's denominator: one plain run on
    # shared cores moved by +-20 % between back-to-back invocations and the ratio with it (4.5-6.7)
    plains = [run(cfg, PlainDecoding)]
    cfgs = member_configs(cfg, [em] * len(cfg.replicas), members)
    shared, scaled = [0.0] * workers, [0.0] * workers
    for w in range(workers):
        clear_shared_parts()  # a fresh worker process
        for c in cfgs[w::workers]:
            shared[w] += run(c, member_strategy(c))
            if scaled_oracle:
                scaled[w] += run(c, PlainDecoding)
        plains.append(run(cfg, PlainDecoding))
    plain = float(np.median(plains))
    out = {"plain_cpu_s": round(plain, 2), "plain_runs_cpu_s": [round(x, 2) for x in plains],
           "workers_cpu_s_shared_parts": [round(x, 2) for x in shared],
           "cpu_ratio_shared_parts": round(max(shared) / plain, 2)}
    if scaled_oracle:
        out |= {"workers_cpu_s_scaled_oracle": [round(x, 2) for x in scaled],
                "cpu_ratio_scaled_oracle": round(max(scaled) / plain, 2)}
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--requests", type=int, default=5000)
    ap.add_argument("--members", type=int, default=16)
    ap.add_argument("--jobs", type=int, default=2)
    ap.add_argument("--cpu", action="store_true", help="CPU-time ratios in this process (see above)")
    ap.add_argument("--no-scaled-oracle", action="store_true",
                    help="with --cpu: skip the members' runs on the scaled oracle (half the time)")
    args = ap.parse_args()
    cfg = config(args.requests)
    if args.cpu:
        print(json.dumps({"requests": args.requests, "members": args.members,
                          **cpu_ratios(cfg, args.members, args.jobs, not args.no_scaled_oracle)}, indent=2))
        return
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
