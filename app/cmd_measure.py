"""`roofsim measure` (serve synthetic traffic with the real numpy transformer, write a vLLM-layout log) and the
`roofsim calibrate --local` runner (measure this machine's kernels, fit, write hardware + calibration TOMLs)."""

from __future__ import annotations

import argparse
import logging
import math
import os
import sys
from pathlib import Path
from typing import Any

from roofsim.app.common import check_out, limit_arg, print_json, print_table, schema_arg
from roofsim.model.loader import load_model
from roofsim.model.spec import ModelSpec
from roofsim.simulator.config import SimConfig
from roofsim.simulator.outfiles import atomic_path
from roofsim.simulator.workload import PoissonArrivals

__all__ = ["register", "run_measure", "run_calibrate_local", "resolve_local_model", "DEFAULT_MODEL"]

#: The default model of `roofsim measure`: validation.local.transformer.small_llama_spec (124.7M parameters,
#: Llama architecture). Qwen3-0.6B is not the default: its per-head q/k RMSNorm is not in ModelSpec nor in the
#: numpy forward pass, and at fp32 it needs 2.4 GB of weights per decode step (~0.5 s/token on 2 cores).
DEFAULT_MODEL = "local-llama-125m"


def resolve_local_model(name: str) -> ModelSpec:
    """`local-llama-125m` (small_llama_spec) or `local-llama-tiny` (a 2-layer CI model), else a preset / HF id /
    config.json through model.loader. The forward pass's own check names unsupported features."""
    from roofsim.validation.local.transformer import check_supported, small_llama_spec  # noqa: PLC0415

    if name == DEFAULT_MODEL:
        spec = small_llama_spec()
    elif name == "local-llama-tiny":
        spec = small_llama_spec(hidden_size=256, num_layers=2, num_heads=4, num_kv_heads=2, intermediate_size=512,
                                vocab_size=4096, max_context_tokens=1024, name="local-llama-tiny")
    else:
        spec = load_model(name)
    check_supported(spec)
    return spec


def _input_len(text: str) -> int | tuple[int, int]:
    lo, sep, hi = text.partition(":")
    try:
        return (int(lo), int(hi)) if sep else int(lo)
    except ValueError:
        raise argparse.ArgumentTypeError(f"--input-len {text!r} must be N or LO:HI") from None


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = sub.add_parser("measure", help="serve synthetic traffic with a real numpy transformer on this CPU",
                       description="Run the real small transformer of validation.local (numpy, fp32) in a wall-clock "
                                   "serving loop and write the vLLM benchmark_serving JSON layout plus send_times "
                                   "and every step's time; also writes the model's config.json next to the log so "
                                   "`roofsim validate run LOG --model <that file>` can replay it.")
    p.add_argument("--model", default=DEFAULT_MODEL,
                   help=f"{DEFAULT_MODEL} (default, 124.7M params), local-llama-tiny, a preset or a config.json "
                        "(Llama-architecture: no MoE/MLA/sliding window)")
    p.add_argument("--mode", choices=("static", "continuous"), default="continuous")
    p.add_argument("--num-requests", type=limit_arg("MAX_REQUESTS", "--num-requests"), default=16)
    p.add_argument("--rate", type=_rate, default=math.inf, help="requests/s, Poisson (default inf: all at once)")
    p.add_argument("--input-len", type=_input_len, default=(32, 128), help="N or LO:HI (uniform); default 32:128")
    p.add_argument("--output-len", type=int, default=32)
    p.add_argument("--max-batch", type=limit_arg("MAX_BATCH_SEQS", "--max-batch"), default=8)
    p.add_argument("--seed", type=schema_arg(SimConfig, "seed", "--seed"), default=0)
    p.add_argument("--blas-threads", type=int, default=1,
                   help="OpenBLAS threads (default 1: steadier on a shared machine; use what calibrate used)")
    p.add_argument("--out", type=Path, required=True, help="log JSON to write")
    p.add_argument("--model-out", type=Path, default=None,
                   help="config.json of the served model (default: <out stem>.config.json next to the log)")
    p.add_argument("--force", action="store_true", help="overwrite --out and --model-out if they exist")
    p.add_argument("--json", action="store_true", help="print a JSON summary")
    p.set_defaults(func=run_measure)


_poisson_rate = schema_arg(PoissonArrivals, "rate_per_s", "--rate", float)


def _rate(text: str) -> float:
    """--rate: a Poisson rate within the limits, or inf (every request at t=0)."""
    return math.inf if text.strip().lower() in ("inf", "infinity") else float(_poisson_rate(text))


def run_measure(args: argparse.Namespace) -> int:
    from roofsim.validation.local import (  # noqa: PLC0415
        check_memory,
        run_serving,
        set_blas_threads,
        vllm_log_dict,
        write_model_config,
        write_vllm_log,
    )

    model_out = args.model_out or args.out.with_name(f"{args.out.stem}.config.json")
    check_out(args.out, "--out", args.force)  # before minutes of serving
    check_out(model_out, "--model-out", args.force)
    spec = resolve_local_model(args.model)
    for flag, v in (("--num-requests", args.num_requests), ("--output-len", args.output_len),
                    ("--max-batch", args.max_batch), ("--blas-threads", args.blas_threads)):
        if v < 1:
            raise ValueError(f"{flag}={v} must be >= 1")
    hi = args.input_len if isinstance(args.input_len, int) else args.input_len[1]
    max_ctx = hi + args.output_len
    if max_ctx > spec.max_context_tokens:
        raise ValueError(f"--input-len up to {hi} + --output-len {args.output_len} = {max_ctx} tokens exceeds "
                         f"model {spec.name!r}'s max_context_tokens={spec.max_context_tokens}")
    # Before anything is allocated: the weights + KV cache + one step's activations must fit in memory.
    check_memory(spec, args.max_batch, max_ctx)
    set_blas_threads(args.blas_threads)
    if not args.json:
        print(f"serving {args.num_requests} requests with {spec.name} ({args.mode}, max batch {args.max_batch}, "
              f"{args.blas_threads} BLAS thread(s)) ...", file=sys.stderr)
    runlog = run_serving(spec, args.mode, args.num_requests, args.rate, args.input_len, args.output_len,
                         args.max_batch, args.seed)
    with atomic_path(args.out) as tmp:
        write_vllm_log(runlog, tmp)
    write_model_config(spec, model_out)  # atomic (validation.profiles.atomic_write_text)
    d = vllm_log_dict(runlog)
    summary = {k: d[k] for k in ("duration", "completed", "total_input_tokens", "total_output_tokens",
                                 "output_throughput", "mean_ttft_ms", "median_ttft_ms", "mean_tpot_ms",
                                 "median_tpot_ms", "mean_itl_ms", "mean_e2el_ms")}
    summary.update({"log": str(args.out), "model_config": str(model_out), "model": spec.name,
                    "steps": len(runlog.steps)})
    if args.json:
        print_json(summary)
        return 0
    print_table([[k, f"{v:.4g}" if isinstance(v, float) else str(v)] for k, v in summary.items()],
                ["quantity", "value"])
    print(f"\nreplay it: roofsim validate run {args.out} --model {model_out} --hardware HW.toml "
          f"--calibration HW.calibration.toml")
    return 0


# ------------------------------------------------------------------------------------ calibrate --local
def default_local_profile() -> Path:
    """Where `calibrate --local` writes without --out: a per-user folder, never the current one (a checkout would
    get untracked files): $XDG_CONFIG_HOME/roofsim/local-cpu.toml, else ~/.config/roofsim/local-cpu.toml."""
    base = os.environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return Path(base) / "roofsim" / "local-cpu.toml"


def run_calibrate_local(args: argparse.Namespace) -> int:
    """`roofsim calibrate --local`: measure, fit, write <out> (HardwareSpec) and <out stem>.calibration.toml."""
    from roofsim.validation.local import set_blas_threads  # noqa: PLC0415
    from roofsim.validation.local.calibrate import calibrate_local, torch_calibration_path_for  # noqa: PLC0415

    threads = args.blas_threads if args.blas_threads is not None else 1
    if threads < 1:
        raise ValueError(f"--blas-threads={threads} must be >= 1")
    if args.folds < 0 or args.folds == 1:
        raise ValueError(f"--folds={args.folds} must be 0 (no cross-validation) or >= 2")
    out = args.out or default_local_profile()
    if out.suffix != ".toml":
        raise ValueError(f"--out {out} must end in .toml (the hardware descriptor; the calibration goes next to it)")
    if args.out is not None:  # roofsim's own per-user default is replaced on a re-run; a path the user gave is not
        check_out(out, "--out", args.force)
        check_out(out.with_name(f"{out.stem}.calibration.toml"), "--out (its calibration file)", args.force)
    model = resolve_local_model(args.local_model)
    set_blas_threads(threads)

    def say(msg: str) -> None:
        if not args.json:
            print(f"[calibrate --local] {msg}", file=sys.stderr, flush=True)
        logging.getLogger(__name__).info("%s", msg)

    say(f"writing {out} and {out.stem}.calibration.toml next to it" + ("" if args.out else " (default; --out to change)"))

    hw, fit, meas, (hw_path, cal_path) = calibrate_local(out, quick=args.quick, model=model, seed=args.seed,
                                                         folds=args.folds, progress=say,
                                                         use_torch=not getattr(args, "no_torch", False))
    s = fit.summary()
    res: dict[str, Any] = {
        "hardware_file": str(hw_path), "calibration_file": str(cal_path),
        "peak_flops_per_s": {"fp32": hw.peak("fp32")},
        "bandwidth_bytes_per_s": hw.memory.bandwidth_bytes_per_s,
        "stream_best_bytes_per_s": meas.stream,
        "blas_threads": meas.machine.blas_threads, "quick": meas.quick, "measure_wall_s": meas.wall_s,
        "rows": fit.kernel_fit.n_rows, "shape_families": fit.kernel_fit.n_families,
        "held_out_median_abs_pct_err": s["held_out_median_abs_pct"],
        "held_out_overall_median_abs_pct_err": s["held_out_overall_median_abs_pct"],
        "held_out_pooled_median_abs_pct_err": s["held_out_pooled_median_abs_pct"],
        "gemm_tile_m": fit.tile_m, "step_overhead_s": fit.step_overhead_s,
        "step_overhead_per_seq_s": fit.step_overhead_per_seq_s, "calibration": fit.calibration.model_dump(),
        "problems": list(fit.kernel_fit.problems),
        # GEMMs through PyTorch's CPU kernels: their own profile (None when torch is not installed or --no-torch)
        "torch": None if fit.torch is None else {
            "version": fit.torch.version, "peak_flops_per_s": meas.torch_peaks,
            "calibration_file": str(torch_calibration_path_for(hw_path)), "gemm_tile_m": fit.torch.tile_m,
            "held_out_median_abs_pct_err": {k: v.median_abs_pct_err for k, v in fit.torch.kernel_fit.held_out.items()}},
    }
    if args.json:
        print_json(res)
        return 0
    print(f"peak fp32 {hw.peak('fp32') / 1e9:.1f} GFLOP/s, bandwidth {hw.memory.bandwidth_bytes_per_s / 1e9:.2f} GB/s "
          f"({meas.machine.blas_threads} BLAS thread(s), measured in {meas.wall_s:.0f} s)")
    rows = [[k, str(v.n), f"{v.median_abs_pct_err:.1f}", f"{fit.kernel_fit.in_sample[k].median_abs_pct_err:.1f}"]
            for k, v in fit.kernel_fit.held_out.items()]
    rows += [[f"all {c} (pooled)", str(v.n), f"{v.median_abs_pct_err:.1f}", ""]
             for c, v in fit.held_out_by_class.items()]
    print_table(rows, ["op/dtype/source", "n", "held-out median|e|%", "in-sample median|e|%"])
    print(f"\ngemm_tile_m={fit.tile_m}; step overhead {fit.step_overhead_s * 1e3:.2f} ms + "
          f"{fit.step_overhead_per_seq_s * 1e3:.3f} ms/sequence")
    print(f"wrote {hw_path} (HardwareSpec) and {cal_path} (calibration profile)")
    if fit.torch is not None:
        t = fit.torch
        print(f"torch {t.version}: peak " + ", ".join(f"{d} {v / 1e9:.1f} GFLOP/s" for d, v in meas.torch_peaks.items())
              + "; held-out " + ", ".join(f"{k} {v.median_abs_pct_err:.1f}%" for k, v in t.kernel_fit.held_out.items())
              + f"; wrote {torch_calibration_path_for(hw_path)}")
    return 0
