"""State of the validation page: kernel tables predicted by validation.predict, benchmark rows by validation.e2e,
serving logs replayed by validation.replay, as the records, error tables and examples the page shows."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from roofsim.app.dashboard.state.common import shared_data_dir
from roofsim.hardware_specs.errors import RoofsimError
from roofsim.hardware_specs.spec import HardwareSpec

# ----------------------------------------------------------------------------------------- validation
# The page predicts nothing itself: kernel rows go through validation.predict.predict_rows (GEMMs, attention,
# collectives, elementwise ops), benchmark tables through validation.e2e.predict_table (one simulation per row),
# serving logs through validation.replay.replay_log; error statistics come from validation.metrics_err.

CALIBRATIONS = ("shipped profile", "model defaults")


def kernel_calibration(choice: str) -> Any:
    """The `cal` argument of predict_rows: the shipped profile of each row's hardware, or the model defaults."""
    from roofsim.model.cost import DEFAULT_CALIBRATION  # noqa: PLC0415
    from roofsim.validation.profiles import resolve_calibration  # noqa: PLC0415

    if choice not in CALIBRATIONS:
        raise ValueError(f"calibration {choice!r} is not one of {', '.join(CALIBRATIONS)}")
    if choice == "model defaults":
        return DEFAULT_CALIBRATION
    cache: dict[str, Any] = {}

    def for_hw(hw: HardwareSpec) -> Any:
        if hw.id not in cache:
            try:
                cache[hw.id] = resolve_calibration(None, hw)[0]
            except RoofsimError:
                cache[hw.id] = DEFAULT_CALIBRATION
        return cache[hw.id]

    return for_hw


def subsample(rows: Sequence[Any], max_rows: int) -> tuple[list[Any], int]:
    """At most max_rows rows, evenly spaced over the table (deterministic), and how many were left out."""
    if max_rows < 1:
        raise ValueError(f"max_rows={max_rows} must be >= 1")
    if len(rows) <= max_rows:
        return list(rows), 0
    pick = np.unique(np.linspace(0, len(rows) - 1, max_rows).round().astype(int))
    return [rows[i] for i in pick], len(rows) - len(pick)


def kernel_comparison(rows: Sequence[Any], max_rows: int = 4000, calibration: str = "shipped profile"
                      ) -> tuple[Any, list[dict[str, Any]], list[str]]:
    """validation.predict.predict_rows over an even subsample of a KernelTable's rows.

    Returns (Prediction, records for the charts, notes): records carry group = metrics_err.group_key(row)
    (op/dtype/framework); notes list the subsampling and every reason rows were not predicted (never dropped)."""
    from roofsim.validation.metrics_err import group_key  # noqa: PLC0415
    from roofsim.validation.predict import predict_rows  # noqa: PLC0415

    picked, left_out = subsample(rows, max_rows)
    pred = predict_rows(picked, kernel_calibration(calibration))
    notes = [f"subsampled evenly to {len(picked)} of {len(rows)} rows"] if left_out else []
    notes += list(pred.problems)
    records = [{"group": group_key(r), "hardware": r.hardware, "op": r.op, "dtype": r.dtype,
                "label": shape_label(r),
                "measured_s": float(r.measured_s), "predicted_s": float(p),
                "rel_error": (float(p) - r.measured_s) / r.measured_s}
               for r, p in zip(pred.rows, pred.predicted_s, strict=True)]
    return pred, records, notes


def shape_label(r: Any) -> str:
    """A short description of a measured kernel row's shape (hover text)."""
    if r.m or r.n or r.k:
        return f"{r.op} m={r.m} n={r.n} k={r.k}"
    if r.message_bytes:
        return f"{r.op} {r.message_bytes:.3g} B on {r.num_gpus} GPUs"
    if r.batch or r.seq_len or r.ctx_len:
        return f"{r.op} batch={r.batch} seq={r.seq_len} ctx={r.ctx_len}"
    return f"{r.op} tokens={r.tokens} hidden={r.hidden}"


def kernel_error_table(pred: Any) -> list[dict[str, Any]]:
    """validation.metrics_err.grouped_stats of a Prediction (group = op/dtype/framework), as table rows."""
    from roofsim.validation.metrics_err import grouped_stats  # noqa: PLC0415

    if not len(pred.rows):
        return []
    return stats_rows(grouped_stats(pred.rows, pred.predicted_s, pred.measured_s))


def stats_rows(stats: Mapping[str, Any], by: str = "group") -> list[dict[str, Any]]:
    """ErrorStats per group -> table rows (percentages; bias = median signed error, + = predicted too slow)."""
    return [{by: g, "rows": s.n, "median APE %": s.median_abs_pct_err, "MAPE %": s.mape,
             "P90 APE %": s.p90_abs_pct_err, "bias %": s.bias_pct} for g, s in stats.items()]


def overall_stats(records: Sequence[Mapping[str, Any]]) -> Any:
    """validation.metrics_err.error_stats over every record (predicted_s vs measured_s)."""
    from roofsim.validation.metrics_err import error_stats  # noqa: PLC0415

    return error_stats([r["predicted_s"] for r in records], [r["measured_s"] for r in records])


def bench_group(row: Any) -> str:
    """Error-table group of a benchmark row: model and framework (as the e2e report groups them)."""
    return f"{row.model} {row.framework}"


def bench_records(preds: Sequence[Any]) -> list[dict[str, Any]]:
    """Predicted-vs-measured latency cells (seconds) of predict_table's rows, for the scatter and histogram."""
    out = []
    for p in preds:
        if p.problem is not None:
            continue
        for col in ("ttft_ms", "tpot_ms", "itl_ms", "e2e_ms"):
            meas = getattr(p.row, col)
            pred = p.predicted.get(col, math.nan)
            if meas is None or meas <= 0 or not math.isfinite(pred):
                continue
            metric = col[:-3].upper()
            out.append({"group": f"{metric} {p.row.framework}", "metric": metric, "model": p.row.model,
                        "hardware": p.row.hardware, "tp": p.row.tp, "mode": p.row.mode,
                        "concurrency": p.row.concurrency, "isl": p.row.isl, "osl": p.row.osl,
                        "label": f"{p.row.model} tp={p.row.tp} c={p.row.concurrency} {p.row.isl}/{p.row.osl}",
                        "measured_s": meas / 1e3, "predicted_s": pred / 1e3, "rel_error": (pred - meas) / meas})
    return out


def bench_error_table(preds: Sequence[Any]) -> list[dict[str, Any]]:
    """validation.e2e.e2e_error_stats (group = model + framework) flattened to one row per (group, metric)."""
    from roofsim.validation.e2e import e2e_error_stats  # noqa: PLC0415

    rows = []
    for g, d in e2e_error_stats(preds, key=bench_group).items():
        for metric, s in d.items():
            rows.append({"group": g, "metric": metric, "rows": s["n"], "median APE %": s["median_abs_pct_err"],
                         "MAPE %": s["mape"], "P90 APE %": s["p90_abs_pct_err"], "bias %": s["bias_pct"]})
    return rows


def replay_defaults(path: str | Path) -> dict[str, Any]:
    """Model/hardware/TP/PP of a log, guessed from its file name (vllm_llm-k8s: serving_<org>-<model>_tpN_ppM_...;
    the runs were on 8 x A100-40GB) — the page shows them as editable defaults, never as facts."""
    import re  # noqa: PLC0415

    name = Path(path).name
    out: dict[str, Any] = {"model": "Llama-3.1-8B", "hardware": "h100-sxm", "tp": 1, "pp": 1}
    m = re.search(r"_tp(\d+)_pp(\d+)", name)
    if m:
        out["tp"], out["pp"] = int(m.group(1)), int(m.group(2))
    if "Llama-3.3-70B" in name:
        out.update(model="Llama-3.3-70B", hardware="a100-sxm-40gb")
    return out


def replay_max_batch(path: str | Path) -> int:
    """The largest batch a `roofsim measure` log's steps record (its max_num_seqs, or what the run reached); 0 for
    logs without steps (the scheduler's default then applies)."""
    from roofsim.validation.replay import read_steps  # noqa: PLC0415

    try:
        steps = read_steps(path)
    except (RoofsimError, ValueError, OSError):
        return 0
    return max((int(s["batch_size"]) for s in steps), default=0)


def replay_table(res: Any) -> list[dict[str, Any]]:
    """ReplayResult.comparison and .totals as rows: measured vs predicted (ms for latencies) and error %."""
    rows = []
    for metric, d in res.comparison.items():
        for stat, v in d.items():
            rows.append({"metric": metric.removesuffix("_s").upper(), "stat": stat, "measured": v["measured"] * 1e3,
                         "predicted": v["predicted"] * 1e3, "unit": "ms", "error %": v["err_pct"]})
    for key, v in res.totals.items():
        rows.append({"metric": key, "stat": "", "measured": v["measured"], "predicted": v["predicted"],
                     "unit": {"duration_s": "s", "output_tokens_per_s": "tok/s"}.get(key, "req/s"),
                     "error %": v["err_pct"]})
    return rows


EXAMPLES: dict[str, tuple[str, str]] = {
    "AIConfigurator H100 GEMM (SGLang 0.5.6)": (
        "kernel", "kernels/aiconfigurator/h100_sxm/gemm/sglang/0.5.6.post2/gemm_perf.parquet"),
    "AIConfigurator H100 decode attention (vLLM 0.24)": (
        "kernel", "kernels/aiconfigurator/h100_sxm/attention/vllm/0.24.0/generation_attention_perf.parquet"),
    "AIConfigurator H100 prefill attention (vLLM 0.24)": (
        "kernel", "kernels/aiconfigurator/h100_sxm/attention/vllm/0.24.0/context_attention_perf.parquet"),
    "AIConfigurator H100 NCCL collectives (2.27.3)": (
        "kernel", "kernels/aiconfigurator/h100_sxm/comm/nccl/2.27.3/nccl_perf.parquet"),
    "AIConfigurator A100 GEMM (vLLM)": ("kernel", "kernels/aiconfigurator/a100_sxm/gemm"),
    "Vidur H100 Llama-2-7B per-op": ("kernel", "kernels/vidur/profiling/compute/h100/meta-llama/Llama-2-7b-hf/mlp.csv"),
    "AIConfigurator H100 end-to-end (silicon)": ("bench_aic", "serving/aiconfigurator_silicon/silicon_sample_h100.csv"),
}


def example_files(kind: str) -> dict[str, Path]:
    """The bundled/shared examples of one kind that exist on this machine (label -> path)."""
    root = shared_data_dir()
    out = {}
    for label, (k, rel) in EXAMPLES.items():
        if k.startswith(kind) and (root / rel).exists():
            out[label] = root / rel
    if kind == "log":
        logs = sorted((root / "serving" / "vllm_llm-k8s").glob("results_serving_*/01_*/serving_*.json"))[:4]
        out.update({f"vLLM benchmark_serving: {p.parent.name}/{p.name}": p for p in logs})
    return out


def log_summary(log: Any) -> list[dict[str, Any]]:
    """P50/P90/P99 and mean of measured TTFT, TPOT ((e2e - ttft)/(out - 1)) and E2E of a ServingLog, seconds."""
    import numpy as np  # noqa: PLC0415

    out_tok = np.asarray(log.output_tokens, dtype=float)
    tpot = np.where(out_tok > 1, (log.e2e_s - log.ttft_s) / np.maximum(out_tok - 1, 1), np.nan)
    rows = []
    for name, v in (("TTFT", log.ttft_s), ("TPOT", tpot), ("E2E", log.e2e_s)):
        v = np.asarray(v, dtype=float)
        v = v[np.isfinite(v)]
        if v.size:
            rows.append({"metric": name, "requests": int(v.size), "mean_s": float(v.mean()),
                         "p50_s": float(np.percentile(v, 50)), "p90_s": float(np.percentile(v, 90)),
                         "p99_s": float(np.percentile(v, 99))})
    return rows
