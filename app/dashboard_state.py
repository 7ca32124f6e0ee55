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
