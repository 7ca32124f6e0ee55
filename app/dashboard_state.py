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

from app.cmd_estimate import estimate
from app.common import Deployment, quant_from_args
from hardware_specs.catalog import load_hardware
from hardware_specs.errors import RoofsimError
from hardware_specs.spec import DTYPE_BYTES, DTYPES, HardwareSpec
from model.loader import load_model
from model.spec import ParallelSpec

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
# No prediction function exists in validation/ yet, so the page predicts measured GEMM rows itself: a GEMM of
# shape (m, n, k) as one roofline Kernel (activation [m, k] and weight [k, n] in the row's dtype, 16-bit output)
# through model.cost.kernel_cost with the default calibration, exactly as the cost model costs a linear layer.


def predict_gemm_s(m: int, n: int, k: int, dtype: str, hw: HardwareSpec, calibration: Any = None,
                   weight_only: bool = False) -> float:
    """Predicted seconds of one (m, n, k) GEMM in `dtype` on `hw` (ValueError if the device lacks the dtype).

    weight_only: weights stored in `dtype` but multiplied in bf16 (int8_wo / int4_wo / w4a16 kernels).
    """
    from model.cost import DEFAULT_CALIBRATION, kernel_cost  # noqa: PLC0415
    from model.kernel import Kernel  # noqa: PLC0415

    wb = DTYPE_BYTES[dtype]
    compute = "bf16" if weight_only else dtype
    ab = DTYPE_BYTES[compute]
    kern = Kernel(name="gemm", kind="gemm", dtype=compute, flops=2.0 * m * n * k, weight_bytes=n * k * wb,
                  act_read_bytes=m * k * ab, act_write_bytes=m * n * 2.0, m=m, n=n, k=k)
    return kernel_cost(kern, hw, calibration or DEFAULT_CALIBRATION).seconds


def kernel_comparison(rows: Sequence[Any], max_rows: int = 4000, seed: int = 0
                      ) -> tuple[list[dict[str, Any]], dict[str, int]]:
    """Predicted vs measured for the GEMM rows of a KernelTable (evenly subsampled to max_rows, deterministic).

    Returns (records, skipped) where skipped counts rows not predicted, by reason (never silently dropped).
    """
    import numpy as np  # noqa: PLC0415

    skipped: dict[str, int] = {}
    gemms = []
    for r in rows:
        if r.op != "gemm":
            skipped[f"op {r.op} (only GEMMs are predicted here)"] = skipped.get(
                f"op {r.op} (only GEMMs are predicted here)", 0) + 1
        elif r.m <= 0 or r.n <= 0 or r.k <= 0:
            skipped["gemm without m/n/k"] = skipped.get("gemm without m/n/k", 0) + 1
        else:
            gemms.append(r)
    if len(gemms) > max_rows:
        pick = np.unique(np.linspace(0, len(gemms) - 1, max_rows).round().astype(int))
        skipped[f"subsampled to {len(pick)} of {len(gemms)} GEMM rows"] = len(gemms) - len(pick)
        gemms = [gemms[i] for i in pick]
    hws: dict[str, HardwareSpec | None] = {}
    out: list[dict[str, Any]] = []
    for r in gemms:
        if r.hardware not in hws:
            try:
                hws[r.hardware] = load_hardware(r.hardware)
            except USER_ERRORS:
                hws[r.hardware] = None
        hw = hws[r.hardware]
        if hw is None:
            skipped[f"hardware {r.hardware!r} not in the catalog"] = skipped.get(
                f"hardware {r.hardware!r} not in the catalog", 0) + 1
            continue
        try:
            wo = any(t in r.variant for t in ("_wo", "w4a16", "w8a16"))
            pred = predict_gemm_s(r.m, r.n, r.k, r.dtype, hw, weight_only=wo)
        except (ValueError, KeyError) as err:
            reason = f"{r.dtype} on {r.hardware}: {error_message(err)[:80]}"
            skipped[reason] = skipped.get(reason, 0) + 1
            continue
        out.append({"group": f"{r.hardware} {r.dtype}{' weight-only' if wo else ''} {r.framework}", "label": f"m={r.m} n={r.n} k={r.k}",
                    "op": r.op, "dtype": r.dtype, "hardware": r.hardware, "m": r.m, "n": r.n, "k": r.k,
                    "measured_s": r.measured_s, "predicted_s": pred,
                    "rel_error": (pred - r.measured_s) / r.measured_s})
    return out, skipped


def bench_comparison(rows: Sequence[Any]) -> tuple[list[dict[str, Any]], dict[str, int]]:
    """Predicted vs measured TTFT and TPOT of benchmark-table rows with a concurrency (static-batch estimate:
    `estimate` with batch = concurrency, input isl, output osl). Rows that cannot be predicted are counted."""
    skipped: dict[str, int] = {}
    out: list[dict[str, Any]] = []
    for r in rows:
        if not r.concurrency or (r.ttft_ms is None and r.tpot_ms is None):
            skipped["no concurrency or no measured TTFT/TPOT"] = skipped.get("no concurrency or no measured "
                                                                              "TTFT/TPOT", 0) + 1
            continue
        cfg = StepConfig(hardware=r.hardware, model=r.model, weight_dtype=r.weight_dtype,
                         kv_dtype=r.kv_dtype if r.kv_dtype in ("bf16", "fp16", "fp32", "fp8", "int8", "int4")
                         else "auto", tp=r.tp, pp=r.pp, batch=r.concurrency, input_len=r.isl, output_len=r.osl)
        try:
            v = step_view(cfg)
        except USER_ERRORS as err:
            reason = error_message(err).split("\n")[0][:100]
            skipped[reason] = skipped.get(reason, 0) + 1
            continue
        for metric, measured_ms, pred_s in (("TTFT", r.ttft_ms, v["ttft_s"]), ("TPOT", r.tpot_ms, v["tpot_s"])):
            if measured_ms is None:
                continue
            meas = measured_ms / 1e3
            out.append({"group": f"{metric} {r.framework}", "metric": metric, "model": r.model,
                        "hardware": r.hardware, "tp": r.tp, "weight_dtype": r.weight_dtype,
                        "concurrency": r.concurrency, "isl": r.isl, "osl": r.osl,
                        "label": f"{r.model} tp={r.tp} {r.weight_dtype} c={r.concurrency} {r.isl}/{r.osl}",
                        "measured_s": meas, "predicted_s": pred_s, "rel_error": (pred_s - meas) / meas})
    return out, skipped


def error_table(records: Sequence[Mapping[str, Any]], by: str = "group") -> list[dict[str, Any]]:
    """Per group: rows, mean/median/P90 absolute percentage error and the signed bias (mean relative error)."""
    import numpy as np  # noqa: PLC0415

    groups: dict[str, list[float]] = {}
    for rec in records:
        groups.setdefault(str(rec[by]), []).append(float(rec["rel_error"]))
    table = []
    for g, errs in sorted(groups.items()):
        e = np.asarray(errs)
        a = np.abs(e)
        table.append({by: g, "rows": int(e.size), "MAPE %": float(100 * a.mean()),
                      "median APE %": float(100 * np.median(a)), "P90 APE %": float(100 * np.percentile(a, 90)),
                      "bias %": float(100 * e.mean()), "within 20 %": float(100 * (a <= 0.2).mean())})
    return table


def shared_data_dir() -> Path:
    """../shared/data next to the checkout (or $ROOFSIM_SHARED_DATA): measured data the examples come from."""
    env = os.environ.get("ROOFSIM_SHARED_DATA")
    return Path(env) if env else Path(__file__).resolve().parents[2] / "shared" / "data"


EXAMPLES: dict[str, tuple[str, str]] = {
    "AIConfigurator H100 GEMM (SGLang 0.5.6)": (
        "kernel", "kernels/aiconfigurator/h100_sxm/gemm/sglang/0.5.6.post2/gemm_perf.parquet"),
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
        logs = sorted((root / "serving" / "vllm_llm-k8s").glob("results_serving_*/*/serving_*.json"))[:6]
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


@dataclass(frozen=True)
class ServingForm:
    """The serving page's widgets: one replica group, one workload (built-in or uploaded trace), SLOs, seed."""

    workload: str = "conversation"
    rate_per_s: float = 4.0
    num_requests: int = 1000
    trace_path: str = ""  # set: replay this trace file instead of the built-in workload
    trace_format: str = "auto"
    rate_scale: float = 1.0
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
    slo_ttft_s: float = 1.0
    slo_tpot_s: float = 0.1
    seed: int = 0

    def with_(self, **changes: Any) -> ServingForm:
        return replace(self, **changes)


def sim_config(form: ServingForm) -> Any:
    """The SimConfig (the same object `roofsim simulate --config` reads from TOML) for the form."""
    from simulator.config import SimConfig  # noqa: PLC0415

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
    else:
        workload = {"kind": "named", "name": form.workload, "rate_per_s": form.rate_per_s,
                    "num_requests": form.num_requests}
    return SimConfig.from_dict({
        "workload": workload,
        "replicas": [{"model": form.model, "hardware": form.hardware, "tp": form.tp, "pp": form.pp,
                      "count": form.count, "quant": quant.model_dump(), "scheduler": sched}],
        "router": {"kind": form.router},
        "slo": {"ttft_s": form.slo_ttft_s, "tpot_s": form.slo_tpot_s},
        "seed": form.seed,
    }, "dashboard form")


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
        raise ValueError("the dashboard shows built-in workloads and traces; this config has a synthetic workload "
                         "(run it with `roofsim simulate --config`)")
    s = g.scheduler
    return base.with_(
        **w, model=g.model, hardware=g.hardware, tp=g.tp, pp=g.pp, count=g.count,
        weight_dtype=g.quant.weight_dtype, activation_dtype=g.quant.activation_dtype, kv_dtype=g.quant.kv_dtype,
        scheduler=s.kind, max_num_seqs=s.max_num_seqs, max_batched_tokens=s.max_batched_tokens,
        chunk_size=getattr(s, "chunk_size", base.chunk_size),
        predictor_sigma=getattr(s, "predictor_sigma", base.predictor_sigma), preemption=s.preemption,
        router=cfg.router.kind, slo_ttft_s=cfg.slo.ttft_s or base.slo_ttft_s,
        slo_tpot_s=cfg.slo.tpot_s or base.slo_tpot_s, seed=cfg.seed)


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


def sweep_rates(rate_per_s: float, points: int = 5) -> list[float]:
    """Offered loads of the latency-versus-load sweep: 0.25x .. 2x the current rate (geometric, rounded)."""
    if rate_per_s <= 0 or points < 2:
        raise ValueError(f"rate_per_s={rate_per_s} must be > 0 and points={points} >= 2")
    return [float(round(rate_per_s * f, 4)) for f in np.geomspace(0.25, 2.0, points)]
