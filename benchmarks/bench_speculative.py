"""Simulator speed with speculative decoding: iterations per CPU second of plain decoding vs each drafter on
Qwen3-8B / 1 x H100 (vLLM scheduler, 600 Poisson requests, 50-500 input and 200-600 output tokens).

Run: `.venv/bin/python benchmarks/bench_speculative.py [--repeats 3] [--json out.json]`; best of the repeats.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from roofsim.simulator.config import SimConfig  # noqa: E402
from roofsim.simulator.run import simulate  # noqa: E402

DRAFTERS: dict[str, dict | None] = {
    "plain": None,
    "eagle k=4": {"drafter": {"kind": "eagle"}, "acceptance": {"kind": "beta", "alpha": 8, "beta": 2}, "k": 4},
    "draft model k=4": {"drafter": {"kind": "draft_model", "model": "qwen3-0.6b"},
                        "acceptance": {"kind": "iid", "rate": 0.7}, "k": 4},
    "self (12 layers) k=3": {"drafter": {"kind": "self", "draft_layers": 12}, "acceptance": {"kind": "iid", "rate": 0.6},
                             "k": 3},
    "medusa k=3": {"drafter": {"kind": "medusa"}, "acceptance": {"kind": "iid", "rate": 0.6}, "k": 3},
}


def config(spec: dict | None, n: int) -> SimConfig:
    rep: dict = {"model": "qwen3-8b", "hardware": "h100-sxm"}
    if spec is not None:
        rep["speculative"] = spec
    return SimConfig.model_validate({
        "workload": {"kind": "synthetic", "arrival": {"kind": "poisson", "rate_per_s": 8.0},
                     "input": {"kind": "uniform", "low": 50, "high": 500},
                     "output": {"kind": "uniform", "low": 200, "high": 600}, "num_requests": n},
        "replicas": [rep], "seed": 5})


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--requests", type=int, default=600)
    p.add_argument("--json", type=Path, default=None)
    args = p.parse_args(argv)
    rows = []
    for name, spec in DRAFTERS.items():
        cfg = config(spec, args.requests)
        best, iters = float("inf"), 0
        for _ in range(args.repeats):
            t = time.process_time()
            r = simulate(cfg)
            best = min(best, time.process_time() - t)
            iters = int(r.summary["iterations"])
        rows.append({"case": name, "iterations": iters, "cpu_s": round(best, 3),
                     "us_per_iteration": round(best / iters * 1e6, 1)})
        print(f"{name:22s} {iters:6d} iterations  {best:6.3f} s CPU  {best / iters * 1e6:6.1f} us/iteration",
              flush=True)
    if args.json:
        args.json.write_text(json.dumps(rows, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
