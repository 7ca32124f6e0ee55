"""The local validation loop: calibrate this machine, serve real traffic with the numpy transformer, replay the log
in the simulator with the local calibration, repeat; writes docs/validation-local.md and its plotly figures.

Run: `make validate-local` or `.venv/bin/python scripts/validate_local.py [--repeats 3] [--full] [--model M]`.
Re-run it on a quiet machine for the figures to quote; it prints progress to stderr.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import sys
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from roofsim.app.cmd_measure import resolve_local_model  # noqa: E402
from roofsim.model.spec import ModelSpec  # noqa: E402
from roofsim.simulator.config import StaticScheduler, VLLMScheduler  # noqa: E402
from roofsim.validation.local import FP32, run_serving, set_blas_threads, write_model_config, write_vllm_log  # noqa: E402
from roofsim.validation.local.calibrate import calibrate_local  # noqa: E402
from roofsim.validation.replay import ReplayResult, replay_log  # noqa: E402

METRICS = ("ttft_s", "tpot_s", "itl_s", "e2e_s")


@dataclass(frozen=True)
class Workload:
    mode: str = "continuous"
    num_requests: int = 12
    rate_per_s: float = math.inf
    input_len: tuple[int, int] = (32, 128)
    output_len: int = 16
    max_batch: int = 4


@dataclass(frozen=True)
class Repeat:
    index: int
    kernel: dict[str, float]  # op/dtype/source -> held-out median |error| %
    kernel_n: dict[str, int]
    kernel_overall: float
    kernel_class: dict[str, float]  # gemm / memory_bound / attention -> pooled held-out median |error| %
    torch: dict[str, float]  # GEMMs through torch (own profile): key -> held-out median |error| %; {} without torch
    torch_peaks: dict[str, float]
    peak_fp32: float
    bandwidth: float
    tile_m: int
    step_overhead_s: float
    step_overhead_per_seq_s: float
    calibrate_wall_s: float
    replay: ReplayResult
    run_wall_s: float


def say(msg: str) -> None:
    print(f"[validate-local {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def one_repeat(i: int, spec: ModelSpec, model_name: str, wl: Workload, work: Path, quick: bool, seed: int) -> Repeat:
    say(f"repeat {i + 1}: calibrating ({'quick' if quick else 'full'} grid)")
    t0 = time.perf_counter()
    hw, fit, meas, (hw_path, cal_path) = calibrate_local(work / f"local-cpu-{i}.toml", quick=quick,
                                                         model=resolve_local_model(model_name), seed=seed + i,
                                                         progress=say)
    cal_wall = time.perf_counter() - t0
    say(f"repeat {i + 1}: serving {wl.num_requests} requests with {spec.name}")
    t0 = time.perf_counter()
    runlog = run_serving(spec, wl.mode, wl.num_requests, wl.rate_per_s, wl.input_len,  # type: ignore[arg-type]
                         wl.output_len, wl.max_batch, seed + i)
    run_wall = time.perf_counter() - t0
    log_path = write_vllm_log(runlog, work / f"run-{i}.json")
    cfg = write_model_config(spec, work / f"run-{i}.config.json")
    sched = (StaticScheduler if wl.mode == "static" else VLLMScheduler)(max_num_seqs=wl.max_batch,
                                                                         max_batched_tokens=wl.max_batch * wl.input_len[1])
    say(f"repeat {i + 1}: replaying the log in the simulator")
    rep = replay_log(log_path, str(cfg), str(hw_path), scheduler=sched, quant=FP32, calibration=fit.calibration,
                     seed=seed + i)
    held = fit.kernel_fit.held_out
    return Repeat(i, {k: v.median_abs_pct_err for k, v in held.items()}, {k: v.n for k, v in held.items()},
                  fit.kernel_fit.held_out_overall.median_abs_pct_err,
                  {c: v.median_abs_pct_err for c, v in fit.held_out_by_class.items()},
                  {} if fit.torch is None else {k: v.median_abs_pct_err
                                                for k, v in fit.torch.kernel_fit.held_out.items()},
                  dict(meas.torch_peaks), hw.peak("fp32"),
                  hw.memory.bandwidth_bytes_per_s, fit.tile_m, fit.step_overhead_s, fit.step_overhead_per_seq_s,
                  cal_wall, rep, run_wall)


def _spread(values: list[float], fmt: str = "{:.1f}") -> str:
    v = [x for x in values if x is not None and math.isfinite(x)]
    if not v:
        return "-"
    if len(v) == 1:
        return fmt.format(v[0])
    return f"{fmt.format(float(np.median(v)))} ({fmt.format(min(v))} to {fmt.format(max(v))})"


def figures(reps: list[Repeat], fig_dir: Path) -> list[str]:
    import plotly.graph_objects as go  # noqa: PLC0415
    from plotly.subplots import make_subplots  # noqa: PLC0415

    fig_dir.mkdir(parents=True, exist_ok=True)
    figs = {}
    last = reps[-1].replay
    fig = make_subplots(rows=1, cols=4, subplot_titles=[m.replace("_s", "") for m in METRICS])
    for j, m in enumerate(METRICS, start=1):
        for label, vals, color in (("measured", last.measured_values(m), "#1f77b4"),
                                   ("predicted", last.predicted_values(m), "#d62728")):
            x = np.sort(np.asarray(vals, dtype=float))
            if x.size == 0:
                continue
            fig.add_trace(go.Scatter(x=x, y=np.arange(1, x.size + 1) / x.size, mode="lines", name=label,
                                     line={"color": color}, showlegend=j == 1), row=1, col=j)
        fig.update_xaxes(title_text="seconds", row=1, col=j)
    fig.update_layout(title="Local run: measured vs replayed latency CDFs (last repeat)", height=380, width=1300)
    figs["validation-local-latency"] = fig

    fig = go.Figure()
    for r in reps:
        for kind, sym in (("prefill", "square"), ("decode", "circle")):
            st = [s for s in r.replay.steps if s["kind"] == kind]
            fig.add_trace(go.Scatter(x=[s["measured_s"] for s in st], y=[s["predicted_s"] for s in st],
                                     mode="markers", marker={"symbol": sym, "size": 9},
                                     text=[f"{kind} batch {s['batch_size']} (n={s['n']})" for s in st],
                                     name=f"repeat {r.index + 1} {kind}"))
    allv = [v for r in reps for s in r.replay.steps for v in (s["measured_s"], s["predicted_s"])]
    if allv:
        lo, hi = min(allv) * 0.8, max(allv) * 1.25
        fig.add_trace(go.Scatter(x=[lo, hi], y=[lo, hi], mode="lines", line={"dash": "dash", "color": "grey"},
                                 name="predicted = measured"))
    fig.update_layout(title="Mean step time per (kind, batch size): predicted vs measured", xaxis_type="log",
                      yaxis_type="log", xaxis_title="measured s", yaxis_title="predicted s", height=500, width=700)
    figs["validation-local-steps"] = fig

    fig = go.Figure()
    keys = sorted({k for r in reps for k in r.kernel})
    for r in reps:
        fig.add_trace(go.Bar(x=keys, y=[r.kernel.get(k, float("nan")) for k in keys], name=f"repeat {r.index + 1}"))
    fig.add_hline(y=10, line_dash="dash", annotation_text="10% target")
    fig.update_layout(title="Kernel level: held-out median |error| % by kernel family", barmode="group",
                      yaxis_title="median |error| %", height=420, width=900)
    figs["validation-local-kernels"] = fig
    # One page, plotly.js loaded once: one file per figure repeated the same page head three times.
    body = "\n".join(f.to_html(full_html=False, include_plotlyjs="cdn" if i == 0 else False, div_id=name)
                     for i, (name, f) in enumerate(figs.items()))
    path = fig_dir / "validation-local.html"
    path.write_text('<!doctype html><html><head><meta charset="utf-8"><title>Local end-to-end validation</title>'
                    f"</head><body>\n{body}\n</body></html>\n", encoding="utf-8")
    return [path.name]


LOAD_BEFORE = float("nan")


def write_doc(reps: list[Repeat], wl: Workload, spec: ModelSpec, model_name: str, quick: bool, figs: list[str],
              out: Path, cmdline: str, wall_s: float) -> None:
    from roofsim.validation.local.machine import blas_name, cpu_model_name  # noqa: PLC0415
    from roofsim.validation.local.torch_gemm import torch_version  # noqa: PLC0415

    lines = ["# Local validation: calibrate this machine, serve a real model, replay it", "",
             f"Generated by `{cmdline}` on {datetime.now(UTC).strftime('%Y-%m-%d %H:%M UTC')} "
             f"({wall_s / 60:.1f} min). Machine: {cpu_model_name()}, {reps[0].replay.log.path and ''}"
             f"{blas_name()}, Python {platform.python_version()}, "
             + (f"torch {torch_version()} (the optional extra)" if torch_version() else "torch not installed")
             + ". 1-minute load average before the run: "
             f"{LOAD_BEFORE:.2f} on {os.cpu_count()} vCPUs (other processes on the machine add noise; the repeats "
             "show the spread).", "",
             "## The loop", "",
             "1. `roofsim calibrate --local" + (" --quick" if quick else "") + f" --local-model {model_name}` "
             "times real numpy kernels (validation/local/measure.py): fp32 GEMMs at the model's weight shapes "
             "and generic squares over m = 1 ... 512/2048, STREAM copy/scale/add, the forward pass's own "
             "RMSNorm/SwiGLU/add/RoPE and GQA attention code, the 1x1x1 call overhead, and steps of "
             "the same model (short prefill and decode steps, for the step overheads); with torch installed, also "
             "the model's GEMMs through torch in fp32 and bf16. It writes `local-cpu.toml` (HardwareSpec: "
             "measured peaks and bandwidth, num_units = BLAS threads) and `local-cpu.calibration.toml` (the fitted "
             "Calibration and the fit record), and with torch `local-cpu.torch.calibration.toml`, each atomically.",
             "2. `roofsim measure` serves synthetic requests with the real numpy transformer "
             f"({spec.name}: {spec.num_layers} layers, hidden {spec.hidden_size}, {spec.num_heads} heads / "
             f"{spec.num_kv_heads} KV heads) in wall-clock time and writes the vLLM benchmark log with "
             "`send_times` and every step.",
             "3. `roofsim validate run LOG --model LOG.config.json --hardware local-cpu.toml --calibration "
             "local-cpu.calibration.toml` replays the log in the simulator (vLLM-style prefill-first continuous "
             "batching, max_num_seqs = the run's max batch, fp32 weights/activations/KV) and compares TTFT, TPOT, "
             "ITL and E2E, and every step's time by (kind, batch size).", "",
             f"Workload: {wl.mode} batching, {wl.num_requests} requests, rate "
             f"{'inf (all at t=0)' if math.isinf(wl.rate_per_s) else wl.rate_per_s}, input "
             f"{wl.input_len[0]}-{wl.input_len[1]} tokens (uniform), output {wl.output_len} tokens, max batch "
             f"{wl.max_batch}, 1 BLAS thread. {len(reps)} repeat(s), each with its own calibration and run "
             "(seeds 0, 1, 2 ...).", "",
             "## Kernel level, held-out shape families", "",
             "Median absolute error of each row predicted by a fit that never saw its shape family (5-fold, "
             "GEMM family = weight shape (n, k); attention = length bucket; elementwise = size: every op at "
             "one token count, and the STREAM arrays). Median over repeats (min to max):", "",
             "| kernels | rows | held-out median abs error % |", "|---|---|---|"]
    for k in sorted({k for r in reps for k in r.kernel}):
        lines.append(f"| {k} | {reps[0].kernel_n.get(k, '-')} | {_spread([r.kernel.get(k, math.nan) for r in reps])} |")
    names = {"gemm": "**GEMM** (all rows pooled)", "memory_bound": "**memory-bound** (numpy elementwise + STREAM, "
             "pooled)", "attention": "**attention** (pooled)"}
    for c, label in names.items():
        lines.append(f"| {label} | | {_spread([r.kernel_class.get(c, math.nan) for r in reps])} |")
    lines.append(f"| all | | {_spread([r.kernel_overall for r in reps])} |")
    torch_keys = sorted({k for r in reps for k in r.torch})
    if torch_keys:
        lines += ["", "GEMMs through PyTorch's CPU kernels (the optional torch extra; fitted into their own profile, "
                  "`<stem>.torch.calibration.toml`, since the numpy engine does not run them), held-out median abs "
                  "error %, and best GFLOP/s at m >= 512:", "", "| kernels | held-out median abs error % |",
                  "|---|---|"]
        lines += [f"| {k} | {_spread([r.torch.get(k, math.nan) for r in reps])} |" for k in torch_keys]
        lines += [f"| peak {d} GFLOP/s | {_spread([r.torch_peaks.get(d, math.nan) / 1e9 for r in reps])} |"
                  for d in sorted({d for r in reps for d in r.torch_peaks})]
    lines += ["", "Measured machine figures per repeat: peak fp32 "
              + _spread([r.peak_fp32 / 1e9 for r in reps]) + " GFLOP/s; bandwidth "
              + _spread([r.bandwidth / 1e9 for r in reps], "{:.2f}") + " GB/s; gemm_tile_m "
              + ", ".join(str(r.tile_m) for r in reps) + "; step overhead "
              + _spread([r.step_overhead_s * 1e3 for r in reps], "{:.2f}") + " ms + "
              + _spread([r.step_overhead_per_seq_s * 1e3 for r in reps], "{:.3f}") + " ms per sequence; "
              + "calibration wall time " + _spread([r.calibrate_wall_s for r in reps], "{:.0f}") + " s.", "",
              "## End to end on the real run", "",
              "Predicted vs measured mean (and p50/p90) of each latency metric; error % = 100 (pred - meas) / meas, "
              "median over repeats (min to max):", "",
              "| metric | stat | measured s | predicted s | error % |", "|---|---|---|---|---|"]
    for m in METRICS:
        for st in ("mean", "p50", "p90"):
            cs = [r.replay.comparison[m][st] for r in reps]
            lines.append(f"| {m} | {st} | {_spread([c['measured'] for c in cs], '{:.3f}')} | "
                         f"{_spread([c['predicted'] for c in cs], '{:.3f}')} | "
                         f"{_spread([c['err_pct'] for c in cs], '{:+.1f}')} |")
    tot = [r.replay.totals["duration_s"] for r in reps]
    lines += [f"| duration | | {_spread([t['measured'] for t in tot], '{:.2f}')} | "
              f"{_spread([t['predicted'] for t in tot], '{:.2f}')} | {_spread([t['err_pct'] for t in tot], '{:+.1f}')} |",
              "", "Targets: mean TPOT within 15%, mean TTFT within 20%. Per repeat: "
              + "; ".join(f"repeat {r.index + 1}: TPOT {r.replay.comparison['tpot_s']['mean']['err_pct']:+.1f}%, "
                          f"TTFT {r.replay.comparison['ttft_s']['mean']['err_pct']:+.1f}%" for r in reps) + ".", "",
              "### Per-step times (mean per kind and batch size)", "",
              "| repeat | kind | batch | steps | measured ms | predicted ms | error % |", "|---|---|---|---|---|---|---|"]
    for r in reps:
        for s in r.replay.steps:
            lines.append(f"| {r.index + 1} | {s['kind']} | {s['batch_size']} | {s['n']} | "
                         f"{s['measured_s'] * 1e3:.1f} | {s['predicted_s'] * 1e3:.1f} | {s['err_pct']:+.1f} |")
    lines += ["", "## Figures", ""] + [f"- [{f}](figures/{f})" for f in figs] + ["", "## Notes from the replay", ""]
    lines += [f"- {n}" for n in reps[-1].replay.notes]
    lines += ["", "## How the cost model handles this machine", "",
              "- **Caching allocator** (validation/local/machine.py `use_caching_allocator`, on in both the "
              "calibration and the served run): glibc is told to keep freed memory (no mmap, no trim), as PyTorch's "
              "caching allocator and vLLM's preallocated buffers do. Without it every numpy temporary above 128 KiB "
              "was a fresh mmap whose pages fault on first touch, which in this VM made a (256, 768) float32 "
              "`x / (1 + y)` 6x slower and numpy's RMSNorm up to 4x slower than on reused memory; the served "
              "model's batch-4 prefill steps took 869-985 ms without it and 594-650 ms with it (earlier runs).",
              "- **GEMV vs packed GEMM** (`gemm_gemv_max_m = 1`, `gemm_gemv_mem_eff`, validation/local/calibrate.py "
              "`GEMV_MAX_M`): numpy calls OpenBLAS sgemv for m = 1, which streams the weights at ~11 GB/s, while "
              "m >= 2 goes through sgemm, which packs B on every call and reads weights at ~3 GB/s up to m ~ 16. "
              "The GEMV gets its own memory efficiency (fitted), so m = 1 and m = 2...16 no longer pull one "
              "efficiency two ways; the packing cost is `gemm_mem_eff` with `gemm_overlap_loss` near 1 (packing "
              "and compute do not overlap). Small problems (m*n*k <= 10^6, `gemm_small_max_mnk`) also run unpacked "
              "in OpenBLAS and are costed like the GEMV. The calibration grid includes every decode batch size "
              "the run uses.",
              "- **Cold weights**: the calibration times every GEMM with copies of B spanning 2x the last-level "
              "cache, cycled per call, because the served model's weights are many times the cache; a "
              "cache-resident B made decode GEMMs ~1.5x too fast (TPOT -32% in one run with a cache-resident B).",
              "- **Unfused elementwise ops and the cache regime** (`elementwise_{norm,act,rope}_passes`, "
              "`elementwise_cache_gain` and its per-class refinements, `elementwise_cache_bytes`, all fitted): "
              "numpy's RMSNorm, SiLU x up and RoPE make several array passes (counted 3.5, 4 and 4.5 from the code "
              "as the starting point; the fit finds what numpy costs, since its broadcasting multiplies and the "
              "row mean run below streaming speed), each a separate call paying `kernel_overhead_s`; and a working "
              "set that fits in the last-level cache runs faster than DRAM (a cache-aware roofline), by a factor "
              "that depends on the op: ~3x for a plain add, less for RMSNorm, whose row reduction runs at a fixed "
              "element rate. The elementwise rows span 32 to 16,384 tokens, so both regimes are measured, and are "
              "timed in the same interleaved rounds as the DRAM-sized STREAM rows.",
              "",
              "## What the cost model cannot express yet", "",
              "- **Per-sequence, per-layer attention overhead**: the numpy engine runs attention one sequence at a "
              "time in every layer; `step_overhead_per_seq_s` is per step, so it is fitted on short steps of the "
              "served model itself (a separate run from the validated one) and holds only for that model (an "
              "`attn_overhead_per_seq_s` charged per layer would transfer across depths). Attention kernel rows "
              "(numpy batched matmuls over a few heads) are far off held-out; they are a small part of these steps.",
              "- **A second cache level**: `add` at 32-64 tokens (< 1 MiB, L2-resident) runs ~2x faster than the "
              "one-level cache regime predicts.",
              ""]
    out.write_text("\n".join(lines) + "\n", encoding="utf-8")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--full", action="store_true", help="full calibration grid (default: --quick)")
    p.add_argument("--model", default="local-llama-125m")
    p.add_argument("--num-requests", type=int, default=Workload.num_requests)
    p.add_argument("--output-len", type=int, default=Workload.output_len)
    p.add_argument("--max-batch", type=int, default=Workload.max_batch)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--work", type=Path, default=ROOT / "test-artifacts" / "validate-local")
    p.add_argument("--doc", type=Path, default=ROOT / "docs" / "validation-local.md")
    p.add_argument("--json", type=Path, default=None, help="also write the per-repeat numbers as JSON here")
    args = p.parse_args(argv)
    global LOAD_BEFORE
    LOAD_BEFORE = os.getloadavg()[0]
    started = time.perf_counter()
    set_blas_threads(1)
    spec = resolve_local_model(args.model)
    wl = Workload(num_requests=args.num_requests, output_len=args.output_len, max_batch=args.max_batch)
    args.work.mkdir(parents=True, exist_ok=True)
    reps = [one_repeat(i, spec, args.model, wl, args.work, not args.full, args.seed) for i in range(args.repeats)]
    figs = figures(reps, args.doc.parent / "figures")
    cmd = "python scripts/validate_local.py " + " ".join(argv if argv is not None else sys.argv[1:])
    write_doc(reps, wl, spec, args.model, not args.full, figs, args.doc, cmd.strip(), time.perf_counter() - started)
    summary: dict[str, Any] = {f"repeat_{r.index + 1}": {"kernel_held_out_median_abs_pct": r.kernel,
                                                         "comparison": r.replay.comparison, "steps": r.replay.steps}
                               for r in reps}
    if args.json:
        args.json.write_text(json.dumps(summary, indent=1, default=float))
    for r in reps:
        c = r.replay.comparison
        say(f"repeat {r.index + 1}: kernel held-out {r.kernel_overall:.1f}%; TPOT mean {c['tpot_s']['mean']['err_pct']:+.1f}%"
            f", TTFT mean {c['ttft_s']['mean']['err_pct']:+.1f}%")
    say(f"wrote {args.doc}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
