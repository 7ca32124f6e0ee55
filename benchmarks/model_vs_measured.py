"""Compare single-kernel and single-step predictions with measurements in ../shared/data (for docs/model.md).

Run: .venv/bin/python benchmarks/model_vs_measured.py [--shared ../shared/data]
Prints markdown tables: Vidur's H100 per-op timings of Llama-2-7B (fp16, CUDA events) against our per-kernel
predictions, and the AIConfigurator silicon TPOT of Llama-3.1-8B (TRT-LLM, H100, TP1, lowest concurrency 8)
against one decode step of the same batch.
"""

from __future__ import annotations

import argparse
import csv
import statistics
from pathlib import Path

from roofsim.hardware_specs.catalog import load_hardware
from roofsim.model.batch import BatchShape
from roofsim.model.cost import DEFAULT_CALIBRATION, CostModel, kernel_cost
from roofsim.model.graph import graph_context, linear_kernels
from roofsim.model.loader import load_model
from roofsim.model.spec import ParallelSpec, QuantSpec

VIDUR_OPS = {"attn_pre_proj": "qkv_proj", "attn_post_proj": "o_proj", "mlp_up_proj": "mlp_up_gate",
             "mlp_down_proj": "mlp_down", "mlp_act": "mlp_act", "input_layernorm": "input_norm",
             "attn_rope": "rope", "add": "residual_add"}


def vidur_ops(shared: Path) -> None:
    path = shared / "kernels/vidur/profiling/compute/h100/meta-llama/Llama-2-7b-hf/mlp.csv"
    m = load_model("llama-2-7b")
    hw = load_hardware("h100-sxm")
    q = QuantSpec(weight_dtype="fp16", activation_dtype="fp16", kv_dtype="fp16")
    rows = list(csv.DictReader(path.open()))
    print(f"\nVidur {path.relative_to(shared)}: median of measured / predicted per-op time (us), fp16\n")
    print("| tokens | tp | " + " | ".join(VIDUR_OPS) + " |")
    print("|---|---|" + "---|" * len(VIDUR_OPS))
    errs: dict[str, list[float]] = {op: [] for op in VIDUR_OPS}
    seen = set()
    for r in rows:
        t, tp = int(r["num_tokens"]), int(r["num_tensor_parallel_workers"])
        ks = {k.name: k for k in linear_kernels(graph_context(m, q, ParallelSpec(tp=tp)), t, 0)}
        cells = []
        for op, name in VIDUR_OPS.items():
            meas = float(r[f"time_stats.{op}.median"]) * 1e-3
            k = ks[name]
            pred = kernel_cost(k, hw, DEFAULT_CALIBRATION).seconds / k.count
            errs[op].append(abs(pred - meas) / meas)
            cells.append(f"{meas * 1e6:.0f} / {pred * 1e6:.0f}")
        if t in (1, 16, 128, 512, 1024, 4096) and tp in (1, 2) and (t, tp) not in seen:
            seen.add((t, tp))
            print(f"| {t} | {tp} | " + " | ".join(cells) + " |")
    print(f"\nMedian absolute error over all {len(rows)} rows (tokens 1..4096, tp 1/2/4/8):\n")
    print("| op | median abs error |")
    print("|---|---|")
    for op, e in errs.items():
        print(f"| {op} | {statistics.median(e):.1%} |")


def silicon_tpot(shared: Path) -> None:
    path = shared / "serving/aiconfigurator_silicon/silicon_sample_h100.csv"
    m = load_model("llama-3.1-8b")
    cm = CostModel(m, load_hardware("h100-sxm"))
    print(f"\n{path.relative_to(shared)}: Llama-3.1-8B-Instruct, TRT-LLM, TP1, concurrency 8 (lowest measured)\n")
    print("| isl | osl | measured TPOT ms | one decode step at batch 8, ctx isl+osl/2 (ms) | error |")
    print("|---|---|---|---|---|")
    for r in csv.DictReader(path.open()):
        if "8B" not in r["model_path"] or r["tp_size"] != "1" or r["batch_size"] != "8" or r["mode"] != "agg":
            continue
        isl, osl = int(r["isl"]), int(r["osl"])
        pred = cm.step_seconds(BatchShape.build(decode_ctx=[isl + osl // 2] * 8))
        meas = float(r["silicon_tpot_ms"]) * 1e-3
        print(f"| {isl} | {osl} | {meas * 1e3:.2f} | {pred * 1e3:.2f} | {(pred - meas) / meas:+.1%} |")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--shared", type=Path, default=Path(__file__).resolve().parents[2] / "shared" / "data")
    args = ap.parse_args()
    vidur_ops(args.shared)
    silicon_tpot(args.shared)


if __name__ == "__main__":
    main()
