"""Simulator speed: Azure conversation trace replay (Llama-3.1-8B, 1 x H100, vLLM) and a 100k-request
saturated synthetic run; prints wall time, simulated-s per wall-s, iterations per second and peak memory."""

from __future__ import annotations

import argparse
import json
import resource
import sys
import time
from pathlib import Path

from roofsim.simulator.config import SimConfig
from roofsim.simulator.run import simulate

AZURE = Path(__file__).resolve().parents[2] / "shared/data/traces/azure_2023/AzureLLMInferenceTrace_conv.csv"


def azure(path: Path) -> dict:
    cfg = SimConfig.model_validate({
        "workload": {"kind": "trace", "path": str(path), "format": "azure"},
        "replicas": [{"model": "llama-3.1-8b", "hardware": "h100-sxm", "scheduler": {"kind": "vllm"}}]})
    return _run("azure_conv_vllm", cfg)


def saturated(n: int) -> dict:
    cfg = SimConfig.model_validate({
        "workload": {"kind": "synthetic", "arrival": {"kind": "poisson", "rate_per_s": 40.0},
                     "input": {"kind": "uniform", "low": 100, "high": 1000},
                     "output": {"kind": "uniform", "low": 50, "high": 300}, "num_requests": n},
        "replicas": [{"model": "llama-3.1-8b", "hardware": "h100-sxm", "scheduler": {"kind": "vllm"}}]})
    return _run(f"synthetic_{n}_saturated", cfg)


def _run(name: str, cfg: SimConfig) -> dict:
    t = time.perf_counter()
    r = simulate(cfg)
    wall = time.perf_counter() - t
    s = r.summary
    # time per iteration in each quarter of the run: flat = no O(n^2) bookkeeping
    st = r.series.start_s
    out = {"name": name, "requests": s["requests_total"], "completed": s["requests_completed"],
           "wall_s": round(wall, 2), "engine_wall_s": round(s["wall_s"], 2), "sim_duration_s": round(s["sim_duration_s"], 1),
           "iterations": s["iterations"], "sim_s_per_wall_s": round(s["sim_duration_s"] / wall, 1),
           "iterations_per_wall_s": round(s["iterations"] / wall), "saturated": s["saturated"],
           "stop_reason": s["stop_reason"], "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024),
           "sim_time_quartiles_s": [round(float(st[int(q * (st.size - 1))]), 1) for q in (0.25, 0.5, 0.75, 1.0)]}
    return out


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("which", choices=("azure", "saturated", "both"), nargs="?", default="both")
    p.add_argument("--trace", type=Path, default=AZURE)
    p.add_argument("-n", type=int, default=100_000)
    a = p.parse_args()
    if a.which in ("azure", "both"):
        if not a.trace.is_file():
            print(f"skip azure: {a.trace} absent", file=sys.stderr)
        else:
            print(json.dumps(azure(a.trace)))
    if a.which in ("saturated", "both"):
        print(json.dumps(saturated(a.n)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
