"""`roofsim validate benchmarks TABLE.csv` (simulate every benchmark-table row, error statistics per metric) and
`roofsim validate run LOG` (replay a real serving log, compare latency distributions and per-step times)."""

from __future__ import annotations

import argparse
import math
import sys
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from roofsim.app.common import (
    WEIGHT_DTYPES,
    check_out,
    limit_arg,
    print_json,
    print_notes_and_problems,
    print_table,
    replay_quant_and_notes,
    schema_arg,
)
from roofsim.hardware_specs.errors import InputError
from roofsim.simulator.config import ReplicaGroup
from roofsim.simulator.outfiles import atomic_path
from roofsim.validation.bench_table import BenchRow, read_bench_table
from roofsim.validation.e2e import (
    CLIENT_CHOICES,
    FAR_OFF_FACTOR,
    METRICS,
    RowPrediction,
    e2e_error_stats,
    far_off_rows,
    interval_checks,
    predict_table,
    shipped_calibration,
    write_predictions,
)
from roofsim.validation.logs import LOG_FORMATS, read_log
from roofsim.validation.profiles import profile_for, read_calibration, resolve_error_model
from roofsim.validation.replay import SCHEDULERS, make_scheduler_config, replay_all, replay_log
from roofsim.validation.uncertainty import INTERVAL_LEVELS, IntervalCheck, coverage_by, coverage_table

__all__ = ["register_benchmarks", "register_run", "validate_benchmarks", "validate_run"]


def _group(r: BenchRow) -> str:
    return f"{r.model} {r.framework} {r.hardware}"


# --------------------------------------------------------------------------------------------- benchmarks
def register_benchmarks(vsub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = vsub.add_parser("benchmarks", help="simulate every row of an end-to-end benchmark table and score it",
                        description="Simulate every row of a benchmark table (docs/validation-formats.md) and report "
                                    "median/mean absolute %% error and bias of TTFT, TPOT, ITL, E2E and throughput. "
                                    "Blank measured cells are predicted but not scored.")
    p.add_argument("table", type=Path, help="benchmark table CSV (roofsim convert ... writes one)")
    p.add_argument("--json", action="store_true", help="print one JSON object (no progress bar)")
    p.add_argument("--out", type=Path, default=None, help="write the table with pred_ columns added")
    p.add_argument("--force", action="store_true", help="overwrite --out and --report if they exist")
    p.add_argument("--report", type=Path, default=None, help="write a self-contained HTML report")
    p.add_argument("--calibration", type=Path, default=None,
                   help="calibration profile .toml for every row (default: the shipped profile of each row's "
                        "hardware and framework)")
    p.add_argument("--max-rows", type=int, default=None, help="simulate only the first N rows (stated in output)")
    p.add_argument("--workers", type=int, default=None, help="processes (default: min(2, cpus) for > 8 rows)")
    p.add_argument("--clients", choices=CLIENT_CHOICES, default="harness",
                   help="closed-loop clients: each row's benchmark harness (its `harness` column, aiperf when "
                        "blank; simulator/clients.py) or 'ideal' lock-step clients (docs/workloads.md)")
    _ensemble_arg(p)
    p.set_defaults(func=run_benchmarks)


def _ensemble_arg(p: argparse.ArgumentParser) -> None:
    p.add_argument("--ensemble", type=int, default=0, metavar="M",
                   help="also run each row/log as an ensemble of M members drawing from its profile's kernel "
                        "error model and report coverage: the share of measured values inside the 80 %% / 90 %% "
                        "intervals, overall and per group (docs/intervals.md)")


def _coverage_json(checks: list[IntervalCheck], key: Callable[[IntervalCheck], str]) -> list[dict[str, Any]]:
    return [{"group": r.label, "n": r.n, "covered": {f"{q:.0%}": v for q, v in r.covered.items()},
             "median_log_half_width": {f"{q:.0%}": v for q, v in r.half_width.items()},
             "point_median_abs_log_err": r.median_abs_err} for r in coverage_by(checks, key)]


def _print_coverage(checks: list[IntervalCheck], key: Callable[[IntervalCheck], str], first: str) -> None:
    print("\ninterval coverage (kernel error models only; docs/intervals.md):")
    print(coverage_table(coverage_by(checks, key), INTERVAL_LEVELS, first))


def _tqdm(show: bool) -> Callable[[Iterable[RowPrediction], int], Iterable[RowPrediction]] | None:
    if not show:
        return None

    def wrap(it: Iterable[RowPrediction], total: int) -> Iterable[RowPrediction]:
        from tqdm import tqdm  # noqa: PLC0415

        return tqdm(it, total=total, desc="simulating rows", file=sys.stderr, mininterval=0.5)
    return wrap


def validate_benchmarks(table: Path, calibration: Path | None = None, max_rows: int | None = None,
                        workers: int | None = None, show_progress: bool = False, clients: str = "harness",
                        ensemble: int = 0) -> tuple[dict[str, Any], tuple[RowPrediction, ...]]:
    """The JSON object of `roofsim validate benchmarks` and the row predictions behind it (+ "coverage" per metric
    and per group with `ensemble` > 1)."""
    if max_rows is not None and max_rows <= 0:
        raise InputError(f"--max-rows={max_rows} must be > 0")
    t = read_bench_table(table)
    rows = list(t.rows)
    notes = []
    if max_rows is not None and len(rows) > max_rows:
        notes.append(f"--max-rows {max_rows}: simulated the first {max_rows} of {len(rows)} rows")
        rows = rows[:max_rows]
    cal = read_calibration(calibration) if calibration is not None else shipped_calibration
    em = None
    if ensemble > 1 and calibration is not None:
        em = resolve_error_model(calibration, rows[0].hardware if rows else "h100-sxm")[0]
    res = predict_table(rows, cal, workers=workers, clients=clients, progress=_tqdm(show_progress),
                        ensemble=ensemble, error_model=em)
    if clients != "harness":
        notes.append(f"--clients {clients}: closed-loop rows replayed with lock-step clients")
    stats = e2e_error_stats(res.predictions)
    out = {"by_metric": {m: {k: s[k] for k in ("n", "median_abs_pct_err", "mape", "bias_pct")}
                         for m, s in stats.get("all", {}).items()},
           "by_group": e2e_error_stats(res.predictions, _group),
           "rows": len(rows), "rows_predicted": len(res.ok),
           "problems": list(t.problems) + list(res.problems), "notes": notes,
           "calibration": str(calibration) if calibration else "shipped (per hardware and framework)",
           "far_off": {"factor": FAR_OFF_FACTOR, "ttft_ms": far_off_rows(res.predictions, _group)}}
    if ensemble > 1:
        checks = interval_checks(res.predictions, _group)
        out["coverage"] = {"members": ensemble, "by_metric": _coverage_json(checks, lambda c: c.metric),
                           "by_group": _coverage_json(checks, lambda c: c.group)[1:]}
    return out, res.predictions


def run_benchmarks(args: argparse.Namespace) -> int:
    from roofsim.app.cmd_validate import nothing_predicted  # noqa: PLC0415 (cmd_validate imports this module)

    check_out(args.out, "--out", args.force)
    check_out(args.report, "--report", args.force)
    out, preds = validate_benchmarks(args.table, args.calibration, args.max_rows, args.workers,
                                     show_progress=not args.json, clients=args.clients, ensemble=args.ensemble)
    nothing_predicted(out, out["rows"], args.table)
    if args.out is not None:
        with atomic_path(args.out) as tmp:
            write_predictions(preds, tmp, force=True)
    if args.report is not None:
        from roofsim.validation.e2e_report import write_benchmarks_report  # noqa: PLC0415

        with atomic_path(args.report) as tmp:
            write_benchmarks_report(tmp, preds, out["by_group"], f"roofsim end-to-end validation: {args.table}",
                                    out["problems"], _group, notes=f"calibration: {out['calibration']}")
    if args.json:
        print_json(out)
        return 0
    rows = [[g, m, str(s["n"]), f"{s['median_abs_pct_err']:.1f}", f"{s['mape']:.1f}", f"{s['bias_pct']:+.1f}"]
            for g, d in out["by_group"].items() for m, s in d.items()]
    rows += [["all", m, str(s["n"]), f"{s['median_abs_pct_err']:.1f}", f"{s['mape']:.1f}", f"{s['bias_pct']:+.1f}"]
             for m, s in out["by_metric"].items()]
    print_table(rows, ["group", "metric", "n", "median|e|%", "MAPE%", "bias%"])
    if args.ensemble > 1:
        checks = interval_checks(preds, _group)
        _print_coverage(checks, lambda c: c.metric, "metric")
        print(coverage_table(coverage_by(checks, lambda c: c.group)[1:], INTERVAL_LEVELS, "group"))
    print(f"\n{out['rows_predicted']} of {out['rows']} rows predicted (calibration: {out['calibration']})")
    _print_far_off(out["far_off"])
    print_notes_and_problems(out)
    for what, path in (("predictions", args.out), ("report", args.report)):
        if path is not None:
            print(f"{what} written to {path}")
    return 0


def _print_far_off(far: dict[str, Any]) -> None:
    """The rows whose predicted TTFT is beyond `factor` x the measured one either way, counted per group (JSON:
    every row)."""
    rows = far["ttft_ms"]
    if not rows:
        return
    f = far["factor"]
    print(f"\n{len(rows)} row(s) with a predicted TTFT above {f:g}x or below 1/{f:g} of the measured one "
          "(--json lists each):")
    groups: dict[str, list[float]] = {}
    for r in rows:
        groups.setdefault(r["group"], []).append(r["ratio"])
    print_table([[g, str(len(v)), f"{min(v):.2f}-{max(v):.2f}"] for g, v in sorted(groups.items())],
                ["group", "rows", "predicted / measured"])


# ------------------------------------------------------------------------------------------------ run
def register_run(vsub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = vsub.add_parser("run", help="replay a real serving log and compare latency distributions",
                        description="Replay the requests of a serving log (vLLM bench serve / benchmark_serving, "
                                    "GuideLLM, LLMPerf, SGLang bench_serving, AIPerf, genai-perf; every benchmark "
                                    "of a sweep file) with the same lengths and send times (or vLLM's regenerated Poisson "
                                    "draw) and compare mean/P50/P90/P99 of TTFT, TPOT, ITL, E2E, duration and "
                                    "throughput; per-step times too when the log records them.")
    p.add_argument("log", type=Path)
    p.add_argument("--model", required=True)
    p.add_argument("--hardware", required=True)
    p.add_argument("--tp", type=limit_arg("MAX_PARALLEL", "--tp"), default=1)
    p.add_argument("--pp", type=limit_arg("MAX_PARALLEL", "--pp"), default=1)
    p.add_argument("--format", choices=LOG_FORMATS, default="auto",
                   help="auto (default) detects the format from the content (docs/validation-formats.md)")
    p.add_argument("--benchmark", type=int, default=None,
                   help="replay only benchmark N (0-based) of a multi-benchmark file (default: every benchmark)")
    p.add_argument("--scheduler", choices=SCHEDULERS, default="vllm-v1",
                   help="vllm-v1 (default) = chunked prefill with vLLM V1's token budget for this GPU")
    p.add_argument("--max-batch", type=limit_arg("MAX_BATCH_SEQS", "--max-batch"), default=None,
                   help="max sequences per iteration (max_num_seqs)")
    p.add_argument("--max-batched-tokens", type=int, default=None, help="token budget of one iteration")
    p.add_argument("--weight-dtype", choices=("auto", *WEIGHT_DTYPES), default=None,
                   help="default: the checkpoint's format (its quantization_config / hf_quant_config.json), as "
                        "auto for an unquantised one; auto: bf16, or fp32 end to end on hardware without bf16 "
                        "(the numpy engine)")
    p.add_argument("--gpu-memory-utilization", type=schema_arg(ReplicaGroup, "gpu_memory_utilization",
                                                               "--gpu-memory-utilization", float), default=0.9)
    p.add_argument("--calibration", type=Path, default=None,
                   help="profile .toml (default: the shipped vLLM profile of the hardware)")
    p.add_argument("--prompts-cached", action="store_true",
                   help="the server's prefix cache already held every prompt (same prompts sent before with "
                        "prefix caching on): replay each prompt's last, partial block as new tokens")
    p.add_argument("--json", action="store_true")
    p.add_argument("--report", type=Path, default=None)
    p.add_argument("--force", action="store_true", help="overwrite --report if it exists")
    _ensemble_arg(p)
    p.set_defaults(func=run_run)


def validate_run(args: argparse.Namespace) -> tuple[dict[str, Any], list[Any]]:
    """The JSON of `roofsim validate run` and the ReplayResults behind it: one object for a one-benchmark log (or
    --benchmark N), else {"log", "calibration", "benchmarks": [one object per benchmark]}."""
    sched, note = make_scheduler_config(args.scheduler, args.hardware, args.max_batch, args.max_batched_tokens)
    if args.calibration is not None:
        cal = read_calibration(args.calibration)
    else:
        try:
            cal = profile_for(args.hardware, "vllm")
        except InputError:
            cal = None
    # fp32 weights: fp32 activations and KV too; no --weight-dtype: the checkpoint's format
    quant, quant_notes = replay_quant_and_notes(args.weight_dtype, args.model, args.hardware)
    opts: dict[str, Any] = dict(scheduler=sched, quant=quant, calibration=cal,
                                gpu_memory_utilization=args.gpu_memory_utilization, prompts_cached=args.prompts_cached)
    ensemble = getattr(args, "ensemble", 0)
    if ensemble > 1:
        opts.update(ensemble=ensemble, error_model=resolve_error_model(args.calibration, args.hardware, "vllm")[0])
    if args.benchmark is not None:
        results = [replay_log(read_log(args.log, args.format, args.benchmark), args.model, args.hardware, args.tp,
                              args.pp, **opts)]
    else:
        results = replay_all(args.log, args.model, args.hardware, args.tp, args.pp, log_format=args.format, **opts)
    outs = []
    checks = [c for i, res in enumerate(results) for c in res.interval_checks(str(i))]
    for res in results:
        o = res.as_json()
        o["notes"] = o["notes"] + [note] + [f"quantisation: {n}" for n in quant_notes]
        o["calibration"] = cal.name if cal is not None else "default"
        outs.append(o)
    cov = {"coverage": {"members": ensemble, "by_metric": _coverage_json(checks, lambda c: c.group)}} if checks else {}
    if len(outs) == 1:
        return {**outs[0], **cov}, results
    return {"log": str(args.log), "calibration": outs[0]["calibration"], "benchmarks": outs, **cov}, results


def _report_path(path: Path, i: int, n: int) -> Path:
    return path if n == 1 else path.with_name(f"{path.stem}-{i}{path.suffix}")


def run_run(args: argparse.Namespace) -> int:
    check_out(args.report, "--report", args.force)
    out, results = validate_run(args)
    outs = out.get("benchmarks", [out])
    if args.report is not None:
        from roofsim.validation.e2e_report import write_replay_report  # noqa: PLC0415

        for i, res in enumerate(results):
            with atomic_path(_report_path(args.report, i, len(results))) as tmp:
                write_replay_report(tmp, res, f"roofsim replay of {args.log} {res.log.label} on {args.model} / "
                                              f"{args.hardware} tp{args.tp} pp{args.pp}")
    if args.json:
        print_json(out)
        return 0

    def f(x: float, scale: float = 1.0) -> str:
        return "nan" if not math.isfinite(x) else f"{x * scale:.4g}"
    for i, o in enumerate(outs):
        if len(outs) > 1:
            print(f"{'' if i == 0 else chr(10)}== {o['benchmark'] or f'benchmark {i}'}: {o['requests']} requests")
        rows = [[m, s, f(v["measured"], 1e3), f(v["predicted"], 1e3), f(v["err_pct"])]
                for m, d in o["comparison"].items() for s, v in d.items()]
        rows += [[k, "", f(v["measured"]), f(v["predicted"]), f(v["err_pct"])] for k, v in o["totals"].items()]
        print_table(rows, ["metric", "stat", "measured (ms)", "predicted (ms)", "err%"])
        if o["steps"]:
            print()
            print_table([[s["kind"], str(s["batch_size"]), str(s["n"]), f(s["measured_s"], 1e3),
                          f(s["predicted_s"], 1e3), f(s["err_pct"])] for s in o["steps"]],
                        ["step", "batch", "n", "measured (ms)", "predicted (ms)", "err%"])
        print(f"\n{o['requests']} requests replayed (calibration: {o['calibration']})")
        for n in o["notes"]:
            print(f"note: {n}")
    if args.ensemble > 1:
        checks = [c for i, res in enumerate(results) for c in res.interval_checks(str(i))]
        _print_coverage(checks, lambda c: c.metric, "statistic")
    if args.report is not None:
        print(f"report written to {args.report}" if len(results) == 1 else
              f"{len(results)} reports written to {_report_path(args.report, 0, 2).name} ...")
    return 0


_ = METRICS  # re-exported for callers that format the table
