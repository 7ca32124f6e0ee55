"""Pure helpers behind the dashboard: widget values <-> configs, cache keys, the numbers each page shows.

Nothing here imports streamlit, so tests and benchmarks call these functions directly.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, fields, replace
from pathlib import Path
from typing import Any

import numpy as np
from pydantic import ValidationError

from roofsim.app.cmd_estimate import estimate
from roofsim.app.common import Deployment, quant_from_args
from roofsim.hardware_specs.catalog import load_hardware
from roofsim.hardware_specs.errors import RoofsimError
from roofsim.hardware_specs.spec import DTYPES, HardwareSpec
from roofsim.model.loader import load_model
from roofsim.model.spec import ParallelSpec

# Errors that mean "the user asked for something impossible": shown with st.error, never as a traceback.
USER_ERRORS: tuple[type[BaseException], ...] = (RoofsimError, ValueError, KeyError, ValidationError,
                                                FileNotFoundError, UnicodeDecodeError)

# Dtypes that have a tensor-core roof (fp32/tf32 roofs are drawn too when the device lists them).
ROOF_DTYPES: tuple[str, ...] = DTYPES


def error_message(err: BaseException) -> str:
    """One readable message for a user error (pydantic errors listed field by field, KeyError unquoted)."""
    if isinstance(err, ValidationError):
        lines = [f"invalid {err.title}:"]
        for e in err.errors():
            loc = ".".join(str(p) for p in e["loc"]) or "(root)"
            lines.append(f"field {loc}: {e['msg']}")
        return "\n".join(lines)
    if isinstance(err, KeyError) and err.args:
        return str(err.args[0])
    return str(err) or type(err).__name__


@dataclass(frozen=True)
class StepConfig:
    """Everything the step explorer's widgets choose; hashable and JSON-able (the cache key)."""

    hardware: str = "h100-sxm"
    model: str = "Llama-3.1-8B"
    weight_dtype: str = "bf16"
    activation_dtype: str = "auto"
    kv_dtype: str = "auto"
    tp: int = 1
    pp: int = 1
    batch: int = 16
    input_len: int = 1024
    output_len: int = 256
    gpu_memory_utilization: float = 0.9

    def key(self) -> str:
        return json.dumps(asdict(self), sort_keys=True)

    @classmethod
    def from_key(cls, key: str) -> StepConfig:
        data = json.loads(key)
        known = {f.name for f in fields(cls)}
        unknown = set(data) - known
        if unknown:
            raise ValueError(f"unknown step-config fields {sorted(unknown)}; known: {sorted(known)}")
        return cls(**data)

    def with_(self, **changes: Any) -> StepConfig:
        return replace(self, **changes)

    def label(self) -> str:
        return (f"{self.model} on {self.tp * self.pp} x {self.hardware} ({self.weight_dtype} weights, "
                f"KV {self.kv_dtype}, tp={self.tp} pp={self.pp})")


def deployment(cfg: StepConfig) -> Deployment:
    """The Deployment the CLI would build from the same choices (same quantization defaults)."""
    mdl = load_model(cfg.model)
    hw = load_hardware(cfg.hardware)
    par = ParallelSpec(tp=cfg.tp, pp=cfg.pp)
    par.validate_for(mdl)
    ns = argparse.Namespace(weight_dtype=cfg.weight_dtype, activation_dtype=cfg.activation_dtype,
                            kv_dtype=cfg.kv_dtype, group_size=128)
    quant = quant_from_args(ns)
    gemm = quant.gemm_dtype
    if not hw.supports(gemm):
        have = [d for d in DTYPES if hw.supports(d)]
        raise ValueError(f"{hw.name} has no {gemm} tensor-core support (needed by weights {quant.weight_dtype} / "
                         f"activations {quant.activation_dtype}); it supports: {', '.join(have)}")
    return Deployment(mdl, hw, quant, par, None)


def roofs(hw: HardwareSpec) -> list[dict[str, float | str]]:
    """One roof per dtype the device supports: peak FLOP/s and the ridge point (FLOP/byte) peak / bandwidth."""
    bw = hw.memory.bandwidth_bytes_per_s
    out: list[dict[str, float | str]] = []
    for d in ROOF_DTYPES:
        peak = hw.peak_flops_per_s.get(d)
        if peak is not None:
            out.append({"dtype": d, "peak_flops_per_s": peak, "ridge_flops_per_byte": peak / bw})
    return out


def step_view(cfg: StepConfig) -> dict[str, Any]:
    """What the step explorer shows for one config: `estimate` output plus the device roofs.

    Raises the user errors in USER_ERRORS (does not fit, unsupported dtype, impossible TP, too long context).
    """
    dep = deployment(cfg)
    r = estimate(dep, cfg.batch, cfg.input_len, cfg.output_len, cfg.gpu_memory_utilization)
    for k in r["kernels"]:
        k["achieved_flops_per_s"] = k["flops"] / k["seconds"] if k["seconds"] > 0 else 0.0
    r["roofs"] = roofs(dep.hardware)
    r["bandwidth_bytes_per_s"] = dep.hardware.memory.bandwidth_bytes_per_s
    r["hardware_name"] = dep.hardware.name
    r["price_usd_per_hour"] = dep.hardware.price_usd_per_hour * dep.parallel.num_gpus
    # $ per million output tokens at this batch, assuming the replica is kept busy decoding.
    r["usd_per_million_output_tokens"] = r["price_usd_per_hour"] / 3600.0 / r["output_tokens_per_s"] * 1e6
    return r


def step_metrics(view: dict[str, Any]) -> dict[str, str]:
    """The metric cards of the step explorer, formatted exactly as shown (tests parse these strings)."""
    return {
        "TTFT": f"{view['ttft_s'] * 1e3:.3f} ms",
        "TPOT": f"{view['tpot_s'] * 1e3:.3f} ms",
        "Output throughput": f"{view['output_tokens_per_s']:.1f} tok/s",
        "E2E per request": f"{view['e2e_s']:.3f} s",
        "Max batch at context": f"{view['max_batch_at_context']}",
        "$ / 1M output tokens": f"{view['usd_per_million_output_tokens']:.3f}",
    }


def parse_metric(text: str) -> float:
    """The number at the start of a formatted metric ('8.811 ms' -> 8.811)."""
    head = text.strip().split()[0].replace(",", "")
    value = float(head)
    if not math.isfinite(value):
        raise ValueError(f"metric {text!r} is not a finite number")
    return value


def kernel_rows(view: dict[str, Any]) -> list[dict[str, Any]]:
    """The per-kernel table: one row per kernel of the prefill and the decode step."""
    return [{"phase": k["phase"], "kernel": k["name"], "kind": k["kind"], "dtype": k["dtype"],
             "GFLOP": k["flops"] / 1e9, "MB": k["bytes"] / 1e6,
             "FLOP/byte": k["arithmetic_intensity"], "bound": k["bound"],
             "time_us": k["seconds"] * 1e6, "share": k["share"]} for k in view["kernels"]]


# ----------------------------------------------------------------------------------------- validation
# The page predicts nothing itself: kernel rows go through validation.predict.predict_rows (GEMMs, attention,
# collectives, elementwise ops), benchmark tables through validation.e2e.predict_table (one simulation per row),
# serving logs through validation.replay.replay_log; error statistics come from validation.metrics_err.

CALIBRATIONS = ("shipped profile", "model defaults")


def kernel_calibration(choice: str) -> Any:
    """The `cal` argument of predict_rows: the shipped profile of each row's hardware, or the model defaults."""
    from roofsim.model.cost import DEFAULT_CALIBRATION  # noqa: PLC0415
    from roofsim.validation.profiles import profile_for  # noqa: PLC0415

    if choice not in CALIBRATIONS:
        raise ValueError(f"calibration {choice!r} is not one of {', '.join(CALIBRATIONS)}")
    if choice == "model defaults":
        return DEFAULT_CALIBRATION
    cache: dict[str, Any] = {}

    def for_hw(hw: HardwareSpec) -> Any:
        if hw.id not in cache:
            try:
                cache[hw.id] = profile_for(hw)
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


def shared_data_dir() -> Path:
    """../shared/data next to the checkout (or $ROOFSIM_SHARED_DATA): measured data the examples come from."""
    env = os.environ.get("ROOFSIM_SHARED_DATA")
    return Path(env) if env else Path(__file__).resolve().parents[2] / "shared" / "data"


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


def save_upload(name: str, data: bytes, folder: Path | None = None) -> Path:
    """Write an uploaded file to a private temp folder under its own (sanitised) name; readers take paths."""
    safe = "".join(c if c.isalnum() or c in "._-" else "_" for c in Path(name).name) or "upload"
    folder = folder or Path(tempfile.mkdtemp(prefix="roofsim-upload-"))
    path = folder / safe
    path.write_bytes(data)
    return path


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


# ----------------------------------------------------------------------------------------- serving what-if


ARRIVAL_MODES = ("open loop (rate)", "closed loop (clients)")
DRAFTERS = ("off", "eagle", "medusa", "draft_model", "self", "layerskip", "ngram")
ACCEPTANCES = ("iid", "positional", "beta")
EARLY_EXITS = ("off", "per_token", "skipdecode")
EXIT_DISTRIBUTIONS = ("histogram", "per_layer", "csv")


@dataclass(frozen=True)
class ServingForm:
    """The serving page's widgets: one replica group, one workload (built-in or uploaded trace), SLOs, seed, and the
    techniques (speculative decoding, early exit, prefix caching, front-end time, closed-loop clients)."""

    workload: str = "conversation"
    rate_per_s: float = 4.0
    num_requests: int = 1000
    trace_path: str = ""  # set: replay this trace file instead of the built-in workload
    trace_format: str = "auto"
    rate_scale: float = 1.0
    # closed loop like a benchmark client (simulator.workload.ClosedLoopArrivals) over the built-in workload's lengths
    arrival_mode: str = "open loop (rate)"
    clients: int = 16
    think_s: float = 0.0
    ramp_up_s: float = 0.0
    ramp_first_token: bool = False  # ramp_up_s = "first_token"
    warmup_requests: int = 0
    warmup_drain: bool = True
    model: str = "Llama-3.1-8B"
    hardware: str = "h100-sxm"
    tp: int = 1
    pp: int = 1
    count: int = 1
    weight_dtype: str = "bf16"
    activation_dtype: str = "auto"
    kv_dtype: str = "auto"
    scheduler: str = "vllm"
    max_num_seqs: int = 256
    max_batched_tokens: int = 8192
    chunk_size: int = 512
    predictor_sigma: float = 0.0
    preemption: str = "recompute"
    router: str = "round_robin"
    prefix_caching: bool = False
    frontend_s_per_request: float = 0.0
    # speculative decoding (model.techniques.SpeculativeConfig)
    spec_drafter: str = "off"
    spec_draft_model: str = "Qwen3-0.6B"
    spec_draft_layers: int = 16
    spec_exit_layer: int = 8
    spec_lookup_s: float = 0.0
    spec_k: int = 4
    spec_acceptance: str = "iid"
    spec_rate: float = 0.7
    spec_rates: str = "0.8, 0.7, 0.6, 0.5"
    spec_alpha: float = 7.0
    spec_beta: float = 3.0
    spec_tree_width: int = 1
    spec_adaptive_k: bool = False
    spec_k_min: int = 1
    spec_k_max: int = 8
    # early exit (model.techniques.PerTokenExit / SkipDecodeExit)
    ee_kind: str = "off"
    ee_distribution: str = "histogram"
    ee_layers: str = "16, 24, 32"
    ee_weights: str = "0.3, 0.3, 0.4"
    ee_probs: str = "0.05, 0.05, 0.05"
    ee_csv_path: str = ""
    ee_batch_sync: bool = True
    ee_kv_fill: str = "copy"
    ee_exit_head: str = "classifier"
    ee_max_layers: int = 32
    ee_min_layers: int = 16
    ee_max_position: int = 2048
    slo_ttft_s: float = 1.0
    slo_tpot_s: float = 0.1
    seed: int = 0

    def with_(self, **changes: Any) -> ServingForm:
        return replace(self, **changes)


def parse_list(text: str, what: str, kind: type = float) -> tuple[Any, ...]:
    """'0.8, 0.7' -> (0.8, 0.7); ValueError naming the widget for anything else."""
    parts = [p.strip() for p in str(text).replace(";", ",").split(",") if p.strip()]
    try:
        vals = tuple(kind(p) for p in parts)
    except ValueError:
        raise ValueError(f"{what}: {text!r} is not a comma-separated list of {kind.__name__} values") from None
    if not vals:
        raise ValueError(f"{what}: give at least one value")
    return vals


def _fmt_list(vals: Sequence[Any]) -> str:
    return ", ".join(f"{v:g}" if isinstance(v, float) else str(v) for v in vals)


def speculative_dict(form: ServingForm) -> dict[str, Any] | None:
    """The ReplicaGroup `speculative` table of the form (None when off)."""
    if form.spec_drafter == "off":
        return None
    if form.spec_drafter not in DRAFTERS:
        raise ValueError(f"drafter {form.spec_drafter!r} is not one of {', '.join(DRAFTERS)}")
    drafter: dict[str, Any] = {"kind": form.spec_drafter}
    if form.spec_drafter == "draft_model":
        drafter["model"] = form.spec_draft_model
    elif form.spec_drafter == "self":
        drafter["draft_layers"] = form.spec_draft_layers
    elif form.spec_drafter == "layerskip":
        drafter["exit_layer"] = form.spec_exit_layer
    elif form.spec_drafter == "ngram":
        drafter["lookup_s"] = form.spec_lookup_s
    acc: dict[str, Any] = {"kind": form.spec_acceptance}
    if form.spec_acceptance == "iid":
        acc["rate"] = form.spec_rate
    elif form.spec_acceptance == "positional":
        acc["rates"] = parse_list(form.spec_rates, "acceptance rates per position")
    elif form.spec_acceptance == "beta":
        acc.update(alpha=form.spec_alpha, beta=form.spec_beta)
    else:
        raise ValueError(f"acceptance {form.spec_acceptance!r} is not one of {', '.join(ACCEPTANCES)}")
    d: dict[str, Any] = {"drafter": drafter, "acceptance": acc, "k": form.spec_k, "tree_width": form.spec_tree_width}
    if form.spec_adaptive_k:
        d.update(adaptive_k=True, k_min=form.spec_k_min, k_max=form.spec_k_max)
    return d


def early_exit_dict(form: ServingForm) -> dict[str, Any] | None:
    """The ReplicaGroup `early_exit` table of the form (None when off)."""
    if form.ee_kind == "off":
        return None
    if form.ee_kind == "skipdecode":
        return {"kind": "skipdecode", "max_layers": form.ee_max_layers, "min_layers": form.ee_min_layers,
                "max_position": form.ee_max_position}
    if form.ee_kind != "per_token":
        raise ValueError(f"early exit {form.ee_kind!r} is not one of {', '.join(EARLY_EXITS)}")
    dist: dict[str, Any] = {"kind": form.ee_distribution}
    if form.ee_distribution == "histogram":
        dist.update(layers=parse_list(form.ee_layers, "exit layers", int),
                    weights=parse_list(form.ee_weights, "exit weights"))
    elif form.ee_distribution == "per_layer":
        dist["probs"] = parse_list(form.ee_probs, "exit probability per layer")
    elif form.ee_distribution == "csv":
        if not form.ee_csv_path:
            raise ValueError("early exit from a CSV of measured exit layers: upload the CSV")
        dist["path"] = form.ee_csv_path
    else:
        raise ValueError(f"exit distribution {form.ee_distribution!r} is not one of {', '.join(EXIT_DISTRIBUTIONS)}")
    return {"kind": "per_token", "distribution": dist, "batch_sync": form.ee_batch_sync, "kv_fill": form.ee_kv_fill,
            "exit_head": form.ee_exit_head}


def _closed_loop_workload(form: ServingForm) -> dict[str, Any]:
    """The built-in workload's lengths with benchmark-client arrivals (a synthetic workload)."""
    from roofsim.simulator.workload import named_workload  # noqa: PLC0415

    base = named_workload(form.workload)
    arrival = {"kind": "closed_loop", "clients": form.clients, "think_s": form.think_s,
               "ramp_up_s": "first_token" if form.ramp_first_token else form.ramp_up_s,
               "warmup_requests": form.warmup_requests, "warmup_drain": form.warmup_drain}
    return {"kind": "synthetic", "arrival": arrival, "input": base.input.model_dump(mode="json"),
            "output": base.output.model_dump(mode="json"), "correlation": base.correlation,
            "num_requests": form.num_requests}


def sim_config(form: ServingForm) -> Any:
    """The SimConfig (the same object `roofsim simulate --config` reads from TOML) for the form."""
    from roofsim.simulator.config import ReplicaGroup, SimConfig  # noqa: PLC0415

    ns = argparse.Namespace(weight_dtype=form.weight_dtype, activation_dtype=form.activation_dtype,
                            kv_dtype=form.kv_dtype, group_size=128)
    quant = quant_from_args(ns)
    sched: dict[str, Any] = {"kind": form.scheduler, "max_num_seqs": form.max_num_seqs,
                             "max_batched_tokens": form.max_batched_tokens, "preemption": form.preemption}
    if form.scheduler == "sarathi":
        sched["chunk_size"] = form.chunk_size
    if form.scheduler == "sjf":
        sched["predictor_sigma"] = form.predictor_sigma
    if form.trace_path:
        workload: dict[str, Any] = {"kind": "trace", "path": form.trace_path, "format": form.trace_format,
                                    "rate_scale": form.rate_scale, "max_requests": form.num_requests}
    elif form.arrival_mode == ARRIVAL_MODES[1]:
        workload = _closed_loop_workload(form)
    else:
        workload = {"kind": "named", "name": form.workload, "rate_per_s": form.rate_per_s,
                    "num_requests": form.num_requests}
    group: dict[str, Any] = {"model": form.model, "hardware": form.hardware, "tp": form.tp, "pp": form.pp,
                             "count": form.count, "quant": quant.model_dump(), "scheduler": sched}
    spec, ee = speculative_dict(form), early_exit_dict(form)
    if spec is not None:
        group["speculative"] = spec
    if ee is not None:
        group["early_exit"] = ee
    # fields that landed in ReplicaGroup after the dashboard: set only when on, so configs stay valid either way
    optional = {"prefix_caching": form.prefix_caching, "frontend_s_per_request": form.frontend_s_per_request}
    for name, value in optional.items():
        if value:
            if name not in ReplicaGroup.model_fields:
                raise ValueError(f"{name} needs a simulator with ReplicaGroup.{name}")
            group[name] = value
    return SimConfig.from_dict({
        "workload": workload,
        "replicas": [group],
        "router": {"kind": form.router},
        "slo": {"ttft_s": form.slo_ttft_s, "tpot_s": form.slo_tpot_s},
        "seed": form.seed,
    }, "dashboard form")


def _spec_fields(spec: Any, base: ServingForm) -> dict[str, Any]:
    if spec is None:
        return {}
    d = spec.drafter
    acc = spec.acceptance
    out: dict[str, Any] = {"spec_drafter": d.kind, "spec_k": spec.k, "spec_tree_width": spec.tree_width,
                           "spec_acceptance": acc.kind, "spec_adaptive_k": spec.adaptive_k}
    if spec.adaptive_k:
        out.update(spec_k_min=spec.k_min, spec_k_max=spec.k_max)
    if d.kind == "draft_model":
        out["spec_draft_model"] = d.model
    elif d.kind == "self":
        out["spec_draft_layers"] = d.draft_layers
    elif d.kind == "layerskip":
        out["spec_exit_layer"] = d.exit_layer
    elif d.kind == "ngram":
        out["spec_lookup_s"] = d.lookup_s
    if acc.kind == "iid":
        out["spec_rate"] = acc.rate
    elif acc.kind == "positional":
        out["spec_rates"] = _fmt_list(acc.rates)
    else:
        out.update(spec_alpha=acc.alpha, spec_beta=acc.beta)
    return out


def _ee_fields(ee: Any) -> dict[str, Any]:
    if ee is None:
        return {}
    if ee.kind == "skipdecode":
        return {"ee_kind": "skipdecode", "ee_max_layers": ee.max_layers, "ee_min_layers": ee.min_layers,
                "ee_max_position": ee.max_position}
    dist = ee.distribution
    out: dict[str, Any] = {"ee_kind": "per_token", "ee_distribution": dist.kind, "ee_batch_sync": ee.batch_sync,
                           "ee_kv_fill": ee.kv_fill, "ee_exit_head": ee.exit_head}
    if dist.kind == "histogram":
        out.update(ee_layers=_fmt_list(dist.layers), ee_weights=_fmt_list(dist.weights))
    elif dist.kind == "per_layer":
        out["ee_probs"] = _fmt_list(dist.probs)
    else:
        out["ee_csv_path"] = dist.path
    return out


def _closed_loop_fields(wl: Any, base: ServingForm) -> dict[str, Any]:
    """A synthetic closed-loop workload whose lengths are a built-in workload's -> the form; ValueError otherwise."""
    from roofsim.simulator.workload import ClosedLoopArrivals, named_workload, named_workloads  # noqa: PLC0415

    if not isinstance(wl.arrival, ClosedLoopArrivals):
        raise ValueError(f"the dashboard shows built-in workloads, closed-loop clients over their lengths and traces; "
                         f"this config has a synthetic {wl.arrival.kind} workload (run it with `roofsim simulate "
                         "--config`)")
    name = next((n for n in named_workloads() if (lambda b: (b.input, b.output, b.correlation)
                                                  == (wl.input, wl.output, wl.correlation))(named_workload(n))), None)
    if name is None:
        raise ValueError("this closed-loop workload's lengths are not those of a built-in workload (run it with "
                         "`roofsim simulate --config`)")
    a = wl.arrival
    first = a.ramp_up_s == "first_token"
    return {"workload": name, "arrival_mode": ARRIVAL_MODES[1], "clients": a.clients, "think_s": a.think_s,
            "ramp_up_s": 0.0 if first else float(a.ramp_up_s), "ramp_first_token": first,
            "warmup_requests": a.warmup_requests, "warmup_drain": a.warmup_drain,
            "num_requests": wl.num_requests or base.num_requests}


def form_from_config(cfg: Any) -> ServingForm:
    """The widgets that reproduce a SimConfig (an uploaded TOML); ValueError for what one form cannot show."""
    if len(cfg.replicas) != 1:
        raise ValueError(f"the dashboard edits one replica group; this config has {len(cfg.replicas)} "
                         "(run it with `roofsim simulate --config`)")
    g = cfg.replicas[0]
    wl = cfg.workload
    base = ServingForm()
    w: dict[str, Any] = {}
    if wl.kind == "named":
        w = {"workload": wl.name, "rate_per_s": wl.rate_per_s or base.rate_per_s,
             "num_requests": wl.num_requests or base.num_requests}
    elif wl.kind == "trace":
        w = {"trace_path": wl.path, "trace_format": wl.format, "rate_scale": wl.rate_scale,
             "num_requests": wl.max_requests or base.num_requests}
    else:
        w = _closed_loop_fields(wl, base)
    s = g.scheduler
    return base.with_(
        **w, model=g.model, hardware=g.hardware, tp=g.tp, pp=g.pp, count=g.count,
        weight_dtype=g.quant.weight_dtype, activation_dtype=g.quant.activation_dtype, kv_dtype=g.quant.kv_dtype,
        scheduler=s.kind, max_num_seqs=s.max_num_seqs, max_batched_tokens=s.max_batched_tokens,
        chunk_size=getattr(s, "chunk_size", base.chunk_size),
        predictor_sigma=getattr(s, "predictor_sigma", base.predictor_sigma), preemption=s.preemption,
        router=cfg.router.kind, slo_ttft_s=cfg.slo.ttft_s or base.slo_ttft_s,
        slo_tpot_s=cfg.slo.tpot_s or base.slo_tpot_s, seed=cfg.seed,
        prefix_caching=bool(getattr(g, "prefix_caching", False)),
        frontend_s_per_request=float(getattr(g, "frontend_s_per_request", 0.0)),
        **_spec_fields(g.speculative, base), **_ee_fields(g.early_exit))


def light_result(result: Any, bins: int = 300) -> dict[str, Any]:
    """What the serving page keeps of a SimResult: the summary, per-request latencies of completed requests,
    and the per-iteration series binned over simulated time (throughput, queue, batch size, KV usage)."""
    import numpy as np  # noqa: PLC0415

    done = np.asarray(result.completed, dtype=bool)
    s = result.series
    out: dict[str, Any] = {"summary": dict(result.summary),
                           "ttft_s": np.asarray(result.ttft_s)[done], "tpot_s": np.asarray(result.tpot_s)[done],
                           "e2e_s": np.asarray(result.e2e_s)[done]}
    t = np.asarray(s.start_s, dtype=float)
    if t.size == 0:
        out["series"] = {k: (np.zeros(0), np.zeros(0)) for k in ("throughput", "waiting", "batch", "kv")}
        return out
    end = float((t + np.asarray(s.duration_s)).max())
    edges = np.linspace(0.0, max(end, 1e-9), bins + 1)
    idx = np.clip(np.searchsorted(edges, t, side="right") - 1, 0, bins - 1)
    width = edges[1] - edges[0]
    n = np.bincount(idx, minlength=bins)
    occupied = n > 0

    def mean_of(v: Any) -> np.ndarray:
        total = np.bincount(idx, weights=np.asarray(v, dtype=float), minlength=bins)
        return np.divide(total, n, out=np.full(bins, np.nan), where=occupied)

    # each decode sequence emits one token per iteration; a finished prefill emits the first token
    tokens = np.bincount(idx, weights=np.asarray(s.decode_seqs, dtype=float), minlength=bins)
    mid = (edges[:-1] + edges[1:]) / 2
    # waiting/running are per replica: sum the replicas' means for the cluster-wide queue
    waiting = np.zeros(bins)
    for rep in np.unique(s.replica):
        sel = np.asarray(s.replica) == rep
        tot = np.bincount(idx[sel], weights=np.asarray(s.waiting, dtype=float)[sel], minlength=bins)
        cnt = np.bincount(idx[sel], minlength=bins)
        waiting += np.divide(tot, cnt, out=np.zeros(bins), where=cnt > 0)
    out["series"] = {"throughput": (mid, tokens / width), "waiting": (mid[occupied], waiting[occupied]),
                     "batch": (mid[occupied], mean_of(s.batch_size)[occupied]),
                     "kv": (mid[occupied], 100 * mean_of(s.kv_usage)[occupied])}
    return out


def serving_kpis(summary: Mapping[str, Any]) -> dict[str, str]:
    """The KPI cards of the serving page, formatted as shown (tests parse these strings)."""

    def ms(x: float) -> str:
        return f"{x * 1e3:.1f} ms" if math.isfinite(x) else "n/a"

    return {
        "P50 TTFT": ms(summary["ttft_s"]["p50"]), "P99 TTFT": ms(summary["ttft_s"]["p99"]),
        "P50 TPOT": ms(summary["tpot_s"]["p50"]), "P99 TPOT": ms(summary["tpot_s"]["p99"]),
        "P50 E2E": f"{summary['e2e_s']['p50']:.2f} s", "P99 E2E": f"{summary['e2e_s']['p99']:.2f} s",
        "Throughput": f"{summary['output_tokens_per_s']:.0f} tok/s",
        "Goodput": f"{summary['goodput_requests_per_s']:.2f} req/s",
        "$ / 1M tokens": f"{summary['cost_per_million_output_tokens_usd']:.3f}",
        "J / token": f"{summary['energy_per_output_token_j']:.3f}",
    }


def technique_kpis(summary: Mapping[str, Any]) -> dict[str, str]:
    """KPI cards for speculation (spec_*), early exit (ee_*), prefix caching and warm-up, when the run has them."""

    def pct(x: float) -> str:
        return f"{100 * x:.1f} %" if math.isfinite(x) else "n/a"

    def num(x: float, fmt: str) -> str:
        return format(x, fmt) if math.isfinite(x) else "n/a"

    out: dict[str, str] = {}
    if "spec_tokens_per_step" in summary:
        out["Tokens / step"] = num(summary["spec_tokens_per_step"], ".3f")
        out["Acceptance rate"] = pct(summary["spec_acceptance_rate"])
        out["Mean k"] = num(summary["spec_mean_k"], ".2f")
        out["Draft time share"] = pct(summary["spec_draft_time_fraction"])
    if "ee_mean_executed_depth" in summary:
        out["Executed depth"] = num(summary["ee_mean_executed_depth"], ".2f") + " layers"
        out["Requested depth"] = num(summary["ee_mean_requested_depth"], ".2f") + " layers"
        out["Time saved"] = pct(summary["ee_time_saved_fraction"])
        out["Energy saved"] = pct(summary["ee_energy_saved_fraction"])
        out["Energy saved (J)"] = num(summary["ee_energy_saved_j"], ".4g") + " J"
    if "prefix_cache_hit_rate" in summary:
        out["Prefix-cache hit rate"] = pct(summary["prefix_cache_hit_rate"])
    return out


def sweep_rates(rate_per_s: float, points: int = 5) -> list[float]:
    """Offered loads of the latency-versus-load sweep: 0.25x .. 2x the current rate (geometric, rounded)."""
    if rate_per_s <= 0 or points < 2:
        raise ValueError(f"rate_per_s={rate_per_s} must be > 0 and points={points} >= 2")
    return [float(round(rate_per_s * f, 4)) for f in np.geomspace(0.25, 2.0, points)]


# ----------------------------------------------------------------------------------------- capacity planning


@dataclass(frozen=True)
class PlanForm:
    """The capacity page's widgets; the default sweep (2 GPUs x TP 1, 2; 200 requests a point) answers in seconds."""

    model: str = "Llama-3.1-8B"
    workload: str = "conversation"
    trace_path: str = ""  # an uploaded trace replaces the built-in workload (rate-scaled to each tried rate)
    trace_format: str = "auto"
    rate_per_s: float = 8.0
    slo_ttft_s: float = 1.0
    slo_tpot_s: float = 0.1
    hardware: tuple[str, ...] = ("h100-sxm", "a100-sxm-80gb")
    tp: tuple[int, ...] = (1, 2)
    weight_dtypes: tuple[str, ...] = ("bf16",)
    kv_dtypes: tuple[str, ...] = ("auto",)
    objective: str = "cost"
    num_requests: int = 200
    tolerance: float = 0.1
    max_gpus: int = 0  # 0 = no budget
    exhaustive: bool = False
    seed: int = 0

    def with_(self, **changes: Any) -> PlanForm:
        return replace(self, **changes)


def plan_spec(form: PlanForm) -> Any:
    """The simulator.planner.PlanSpec `roofsim plan` would build from the same choices."""
    from roofsim.simulator.planner import PlanSpec  # noqa: PLC0415
    from roofsim.simulator.workload import NamedWorkload, TraceWorkload  # noqa: PLC0415

    for name in ("hardware", "tp", "weight_dtypes", "kv_dtypes"):
        if not getattr(form, name):
            raise ValueError(f"pick at least one value for {name.replace('_', ' ')}")
    wl = (TraceWorkload(path=form.trace_path, format=form.trace_format) if form.trace_path  # type: ignore[arg-type]
          else NamedWorkload(name=form.workload))
    return PlanSpec(model=form.model, workload=wl, rate_per_s=form.rate_per_s,
                    slo_ttft_s=form.slo_ttft_s, slo_tpot_s=form.slo_tpot_s, hardware=tuple(form.hardware),
                    tp=tuple(form.tp), weight_dtypes=tuple(form.weight_dtypes), kv_dtypes=tuple(form.kv_dtypes),
                    objective=form.objective, num_requests=form.num_requests, tolerance=form.tolerance,
                    max_gpus=form.max_gpus or None, exhaustive=form.exhaustive, seed=form.seed)


def winner_kpis(result: Any) -> dict[str, str]:
    """KPI cards of the winning deployment (empty when nothing meets the SLOs); tests parse these strings."""
    w = result.winner
    if w is None:
        return {}
    return {
        "Winner": w.candidate.label,
        "Replicas": f"{w.replicas}",
        "GPUs": f"{w.gpus}",
        "$ / hour": f"{w.usd_per_hour:.2f}",
        "$ / 1M output tokens": f"{w.usd_per_million_tokens:.3f}",
        "J / output token": f"{w.j_per_token:.3g}",
        "Capacity / replica": f"{w.capacity_per_s:.3g} req/s",
        "P99 TTFT at load": f"{w.p99_ttft_s * 1e3:.1f} ms",
        "P99 TPOT at load": f"{w.p99_tpot_s * 1e3:.2f} ms",
    }


def plan_table(result: Any) -> list[dict[str, str]]:
    """app.plan_report's ranked table (the CLI's columns) as records for st.dataframe."""
    from roofsim.app.plan_report import HEADERS, table_rows  # noqa: PLC0415

    return [dict(zip(HEADERS, row, strict=True)) for row in table_rows(result)]


def runner_up_reasons(result: Any, limit: int = 8) -> list[str]:
    """Why the next candidates lost to the winner (the planner's own reasons), best first."""
    w = result.winner
    out = []
    for o in result.outcomes:
        if o is w or not o.reason:
            continue
        out.append(f"{o.candidate.label} ({o.status.replace('_', ' ')}): {o.reason}")
        if len(out) >= limit:
            break
    return out


def closest_message(result: Any) -> str:
    """The message shown when no candidate meets the SLOs: the nearest candidates and how far off they were."""
    near = result.closest()
    lines = [f"No candidate meets P99 TTFT <= {result.spec.slo_ttft_s:g} s and P99 TPOT <= "
             f"{result.spec.slo_tpot_s * 1e3:g} ms at {result.spec.rate_per_s:g} req/s."]
    if near:
        lines.append("Closest candidates (best P99 latency / SLO ratio seen):")
        lines += [f"- {o.candidate.label}: {o.slo_ratio:.2f}x the SLO; {o.reason}" for o in near]
    else:
        by = ", ".join(f"{v} {k.replace('_', ' ')}" for k, v in result.stats.by_status.items())
        lines.append(f"No candidate came close: {by}. Relax the SLOs, add hardware or TP degrees.")
    return "\n".join(lines)
