"""Benchmark of the cost model hot path: microseconds per `CostModel.step_seconds` call after warm-up.

Run: .venv/bin/python benchmarks/bench_cost.py   (results go in docs/performance.md)
"""

from __future__ import annotations

import platform
import time

import numpy as np

from roofsim.hardware_specs.catalog import load_hardware
from roofsim.model.batch import BatchShape
from roofsim.model.cost import CostModel
from roofsim.model.loader import load_model
from roofsim.model.spec import ParallelSpec


def bench(model: str, hw: str, tp: int, n: int = 50_000) -> dict[str, float]:
    m = load_model(model)
    cm = CostModel(m, load_hardware(hw), parallel=ParallelSpec(tp=tp))
    rng = np.random.default_rng(0)
    # a realistic mix: decode batches of 1..256 over contexts up to 8k, with a prefill chunk every 4th step
    shapes = []
    for i in range(2000):
        b = int(rng.integers(1, 257))
        ctx = int(rng.integers(100, 8000)) * b
        if i % 4 == 0:
            new = int(rng.integers(16, 2048))
            shapes.append(BatchShape(prefill_tokens=new, prefill_seqs=1, prefill_attn_pairs=new * (new + 1) / 2,
                                     decode_seqs=b, decode_tokens=b, decode_ctx_tokens=ctx))
        else:
            shapes.append(BatchShape(decode_seqs=b, decode_tokens=b, decode_ctx_tokens=ctx))
    for s in shapes:  # warm-up fills the memo of the token-linear part
        cm.step_seconds(s)
    t0 = time.perf_counter()
    for i in range(n):
        cm.step_seconds(shapes[i % len(shapes)])
    per_call = (time.perf_counter() - t0) / n
    t0 = time.perf_counter()
    for i in range(2000):
        cm.step(shapes[i])
    full = (time.perf_counter() - t0) / 2000
    return {"us_per_step_seconds": per_call * 1e6, "us_per_full_breakdown": full * 1e6}


def main() -> None:
    print(f"python {platform.python_version()} on {platform.machine()}, {platform.processor() or 'cpu'}")
    print("| model | hardware | tp | step_seconds (us/call) | full breakdown step() (us/call) |")
    print("|---|---|---|---|---|")
    for model, hw, tp in (("llama-3.1-8b", "h100-sxm", 1), ("llama-3.1-70b", "h100-sxm", 4),
                          ("mixtral-8x7b", "a100-sxm-80gb", 2), ("deepseek-v3", "h200-sxm", 8),
                          ("gpt-oss-20b", "h100-sxm", 1)):
        r = bench(model, hw, tp)
        print(f"| {model} | {hw} | {tp} | {r['us_per_step_seconds']:.1f} | {r['us_per_full_breakdown']:.0f} |")


if __name__ == "__main__":
    main()
