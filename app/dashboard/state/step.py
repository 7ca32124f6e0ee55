"""State of the step explorer: the configuration its widgets choose (the cache key), the estimate it shows (the
CLI's `estimate` plus the device roofs) and the metric cards and kernel table."""

from __future__ import annotations

import argparse
import json
from dataclasses import asdict, dataclass, fields, replace
from typing import Any

from roofsim.app.cmd_estimate import estimate
from roofsim.app.common import Deployment, quant_and_notes
from roofsim.hardware_specs.catalog import load_hardware
from roofsim.hardware_specs.spec import DTYPES, HardwareSpec
from roofsim.model.loader import load_checkpoint_quant, load_model
from roofsim.model.spec import ParallelSpec
from roofsim.validation.profiles import resolve_calibration

# Dtypes that have a tensor-core roof (fp32/tf32 roofs are drawn too when the device lists them).
ROOF_DTYPES: tuple[str, ...] = DTYPES


@dataclass(frozen=True)
class StepConfig:
    """Everything the step explorer's widgets choose; hashable and JSON-able (the cache key)."""

    hardware: str = "h100-sxm"
    model: str = "Llama-3.1-8B"
    weight_dtype: str = "checkpoint"  # the checkpoint's own format, as the CLI without --weight-dtype
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
                            kv_dtype=cfg.kv_dtype, group_size=None)
    quant, notes = quant_and_notes(ns, load_checkpoint_quant(cfg.model), hw)
    gemm = quant.gemm_dtype
    if not hw.supports(gemm):
        have = [d for d in DTYPES if hw.supports(d)]
        raise ValueError(f"{hw.name} has no {gemm} tensor-core support (needed by weights {quant.weight_dtype} / "
                         f"activations {quant.activation_dtype}); it supports: {', '.join(have)}")
    return Deployment(mdl, hw, quant, par, resolve_calibration(None, hw)[0], tuple(notes))  # the CLI's rules


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
    r["calibration"] = resolve_calibration(None, dep.hardware)[1]
    r["quantisation"] = list(dep.quant_notes)
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


def kernel_rows(view: dict[str, Any]) -> list[dict[str, Any]]:
    """The per-kernel table: one row per kernel of the prefill and the decode step."""
    return [{"phase": k["phase"], "kernel": k["name"], "kind": k["kind"], "dtype": k["dtype"],
             "GFLOP": k["flops"] / 1e9, "MB": k["bytes"] / 1e6,
             "FLOP/byte": k["arithmetic_intensity"], "bound": k["bound"],
             "time_us": k["seconds"] * 1e6, "share": k["share"]} for k in view["kernels"]]
