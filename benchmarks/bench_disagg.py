"""Simulator speed of a disaggregated deployment against a colocated one on the same GPUs: Llama-3.1-8B on four
H100s (4 colocated replicas vs 2 prefill + 2 decode), the same Poisson trace; prints wall time, iterations per
second and the ratio (docs/performance.md)."""

from __future__ import annotations

import argparse
import json
import time

from roofsim.simulator.config import SimConfig
from roofsim.simulator.run import simulate

GROUP = {"model": "llama-3.1-8b", "hardware": "h100-sxm", "scheduler": {"kind": "vllm"}}


def configs(n: int, rate: float) -> dict[str, SimConfig]:
    wl = {"kind": "synthetic", "arrival": {"kind": "poisson", "rate_per_s": rate},
          "input": {"kind": "uniform", "low": 100, "high": 3000}, "output": {"kind": "uniform", "low": 50, "high": 500},
          "num_requests": n}
    return {
        "colocated_4": SimConfig.model_validate({"workload": wl, "replicas": [{**GROUP, "count": 4}]}),
        "disagg_2p2d": SimConfig.model_validate({"workload": wl, "replicas": [
            {**GROUP, "role": "prefill", "count": 2}, {**GROUP, "role": "decode", "count": 2}]}),
    }


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("-n", type=int, default=20_000)
    p.add_argument("--rate", type=float, default=40.0)
    a = p.parse_args()
    out = {}
    for name, cfg in configs(a.n, a.rate).items():
        t = time.perf_counter()
        s = simulate(cfg).summary
        wall = time.perf_counter() - t
        out[name] = {"wall_s": round(wall, 2), "iterations": s["iterations"],
                     "iterations_per_wall_s": round(s["iterations"] / wall),
                     "sim_s_per_wall_s": round(s["sim_duration_s"] / wall, 1), "completed": s["requests_completed"],
                     "ttft_p50_ms": round(s["ttft_s"]["p50"] * 1e3, 1), "tpot_p50_ms": round(s["tpot_s"]["p50"] * 1e3, 2)}
    out["wall_ratio_disagg_over_colocated"] = round(out["disagg_2p2d"]["wall_s"] / out["colocated_4"]["wall_s"], 2)
    print(json.dumps(out, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
