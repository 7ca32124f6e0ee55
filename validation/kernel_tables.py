"""Importers for measured kernel tables (AIConfigurator, Vidur, LLMCompass, generic CSV) into one record type.

Every row becomes a `KernelMeasurement` in SI units; a row that cannot be used becomes a problem string naming
file, row/line and reason (never silently dropped). Formats and mappings are documented in docs/validation-formats.md.
"""

from __future__ import annotations

import csv
import dataclasses
import logging
import math
import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from roofsim.hardware_specs.catalog import load_hardware
from roofsim.hardware_specs.errors import InputError, UnknownNameError
from roofsim.hardware_specs.loading import open_text_lines, read_csv_records

log = logging.getLogger(__name__)

__all__ = [
    "KernelMeasurement",
    "KernelTable",
    "normalize_dtype",
    "dtype_bytes",
    "read_aiconfigurator",
    "read_aiconfigurator_table",
    "read_vidur",
    "read_llmcompass",
    "read_generic_csv",
    "read_kernel_file",
    "read_kernel_tables",
    "GENERIC_REQUIRED",
    "AIC_TABLE_FAMILIES",
    "aic_system_hardware",
]


@dataclass(frozen=True, slots=True)
class KernelMeasurement:
    """One measured kernel time with the shape it was measured at (0 / "" for fields that do not apply)."""

    source: str
    hardware: str
    framework: str
    op: str
    dtype: str
    variant: str
    measured_s: float
    m: int = 0
    n: int = 0
    k: int = 0
    batch: int = 0
    seq_len: int = 0
    ctx_len: int = 0
    num_heads: int = 0
    num_kv_heads: int = 0
    head_dim: int = 0
    window: int = 0
    kv_dtype: str = ""
    message_bytes: float = 0.0
    num_gpus: int = 0
    tokens: int = 0
    hidden: int = 0
    tp: int = 0
    # MoE shapes (AIConfigurator moe/ and comm/moe_a2a tables): n = inter_size there.
    num_experts: int = 0
    topk: int = 0
    ep: int = 0
    file: str = ""
    row: int = 0


@dataclass(frozen=True, slots=True)
class KernelTable:
    """Rows read plus every row that could not be used (each problem names file, row/line and reason)."""

    rows: tuple[KernelMeasurement, ...]
    problems: tuple[str, ...]

    def __add__(self, other: KernelTable) -> KernelTable:
        return KernelTable(self.rows + other.rows, self.problems + other.problems)


_EMPTY = KernelTable((), ())

# --------------------------------------------------------------------------------------------- dtypes
# roofsim dtype names; the original spelling is kept in `variant` by the readers.
_DTYPE_MAP = {
    "bf16": "bf16", "bfloat16": "bf16", "torch.bfloat16": "bf16",
    "fp16": "fp16", "float16": "fp16", "half": "fp16", "torch.float16": "fp16",
    "fp32": "fp32", "float32": "fp32", "float": "fp32",
    "fp8": "fp8", "fp8_block": "fp8", "float8": "fp8", "e4m3": "fp8", "fp8_e4m3": "fp8",
    "int8": "int8", "int8_wo": "int8", "sq": "int8", "w8a8": "int8",
    "int4": "int4", "int4_wo": "int4", "w4a16": "int4",
    "fp4": "fp4", "nvfp4": "fp4", "mxfp4": "fp4", "w4a16_mxfp4": "fp4",
}
_DTYPE_BYTES = {"fp32": 4.0, "bf16": 2.0, "fp16": 2.0, "fp8": 1.0, "int8": 1.0, "int4": 0.5, "fp4": 0.5}


def normalize_dtype(name: str) -> str | None:
    """Map a tool's dtype spelling (bfloat16, half, fp8_block, int4_wo, sq, nvfp4 ...) to a roofsim dtype."""
    return _DTYPE_MAP.get(str(name).strip().lower())


def dtype_bytes(dtype: str) -> float:
    """Bytes per element of a roofsim dtype (int4/fp4 = 0.5)."""
    try:
        return _DTYPE_BYTES[dtype]
    except KeyError:
        raise ValueError(f"dtype={dtype!r} has no element size; known: {sorted(_DTYPE_BYTES)}") from None


class _RowError(Exception):
    """A field of one row is unusable; turned into a problem string by the caller."""


def _pos_float(value: Any, field: str) -> float:
    try:
        x = float(value)
    except (TypeError, ValueError):
        raise _RowError(f"field {field!r}={value!r} is not a number") from None
    if not math.isfinite(x) or x <= 0:
        raise _RowError(f"field {field!r}={value!r} must be a positive finite time")
    return x


def _int(value: Any, field: str) -> int:
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        raise _RowError(f"field {field!r} is empty")
    try:
        f = float(value)
    except (TypeError, ValueError):
        raise _RowError(f"field {field!r}={value!r} is not an integer") from None
    if not math.isfinite(f) or f != int(f) or f < 0:
        raise _RowError(f"field {field!r}={value!r} is not a non-negative integer")
    return int(f)


def _dtype(value: Any, field: str) -> str:
    d = normalize_dtype(value) if value is not None else None
    if d is None:
        raise _RowError(f"field {field!r}={value!r} is not a known dtype (known: {sorted(_DTYPE_MAP)})")
    return d


def _div(a: int, b: int, what: str) -> int:
    if b <= 0 or a % b:
        raise _RowError(f"{what}: {a} is not divisible by {b}")
    return a // b


# ------------------------------------------------------------------------------------- aiconfigurator
# The system folder and each row's `device` (the driver's device name, e.g. "NVIDIA L40S") are resolved through the
# hardware catalog (ids, aliases and driver names in hardware_specs/data/*.toml), so a GPU the catalog describes reads
# without a change here; `hardware=` overrides both (a GPU described only in a user file, or a renamed folder).
_MS = 1e-3
_US = 1e-6

_WHY_SPARSE = ("model.graph has DSA kernels (indexer + top-k attention) but no reader maps these module rows to "
               "them yet (per-model geometry of DeepSeek-V3.2 / GLM-5 / V4, the skip-indexer variants)")
_WHY_SPLIT = ("each row times one kernel of the layer (kernel_source: the causal conv1d, the chunked scan or the "
              "recurrent decode update) while model.graph costs the conv + state update of a phase as one fused "
              "kernel (graph._state_kernels), so a row is a part of a roofsim kernel")
# Every AIConfigurator table (file stem) in the data -> (op family folder, what roofsim does with it). "predicted":
# read and costed by validation.predict; "read, not predicted: ..." rows are read (the reason is predict's);
# "not read: ..." files are skipped by read_aiconfigurator with one problem naming the reason. docs/validation-formats.md
# carries the same table.
AIC_TABLE_FAMILIES: dict[str, tuple[str, str]] = {
    "gemm_perf": ("gemm", "predicted"),
    "context_attention_perf": ("attention", "predicted"),
    "generation_attention_perf": ("attention", "predicted"),
    "nccl_perf": ("comm", "predicted"),
    "custom_allreduce_perf": ("comm", "predicted"),
    # fused MoE module: the sum of the model's MoE kernels (validation.predict.moe_module_kernels)
    "moe_perf": ("moe", "predicted"),
    "wideep_moe_perf": ("moe", "read, not predicted: wide-EP module (EPLB slots, per-rank token counts) not mapped"),
    "wideep_context_moe_perf": ("moe", "read, not predicted: DeepEP wide-EP module (dispatch inside) not mapped"),
    "wideep_generation_moe_perf": ("moe", "read, not predicted: DeepEP wide-EP module (dispatch inside) not mapped"),
    "moe_a2a_perf": ("comm", "read, not predicted: MoE dispatch/combine all-to-all is not modelled separately"),
    "wideep_deepep_ll_perf": ("comm", "read, not predicted: DeepEP low-latency dispatch/combine not modelled"),
    "wideep_deepep_normal_perf": ("comm", "read, not predicted: DeepEP normal dispatch/combine not modelled"),
    "wideep_context_mlp_perf": ("mlp", "read, not predicted: fused MLP module (its GEMMs are in gemm_perf)"),
    "wideep_generation_mlp_perf": ("mlp", "read, not predicted: fused MLP module (its GEMMs are in gemm_perf)"),
    # DeepSeek MLA: the bare attention op (validation.predict.mla_kernels), the whole attention module with its
    # projections (SGLang's wide-EP tables time the same module), and the absorbed-projection batched GEMMs
    "context_mla_perf": ("mla", "predicted"),
    "generation_mla_perf": ("mla", "predicted"),
    "wideep_context_mla_perf": ("mla", "predicted"),
    "wideep_generation_mla_perf": ("mla", "predicted"),
    "mla_context_module_perf": ("mla", "predicted"),
    "mla_generation_module_perf": ("mla", "predicted"),
    "mla_bmm_perf": ("mla_bmm", "predicted"),
    "msa_context_module_perf": ("msa", f"not read: MiniMax sparse attention module; {_WHY_SPARSE}"),
    "msa_generation_module_perf": ("msa", f"not read: MiniMax sparse attention module; {_WHY_SPARSE}"),
    "dsa_context_module_perf": ("sparse_attention", f"not read: DeepSeek-V3.2 DSA module; {_WHY_SPARSE}"),
    "dsa_generation_module_perf": ("sparse_attention", f"not read: DeepSeek-V3.2 DSA module; {_WHY_SPARSE}"),
    "dsv4_csa_context_module_perf": ("sparse_attention", f"not read: DeepSeek-V4 CSA module; {_WHY_SPARSE}"),
    "dsv4_csa_generation_module_perf": ("sparse_attention", f"not read: DeepSeek-V4 CSA module; {_WHY_SPARSE}"),
    "dsv4_csa_topk_calib_perf": ("sparse_attention", f"not read: DeepSeek-V4 CSA top-k; {_WHY_SPARSE}"),
    "dsv4_hca_attn_module_perf": ("sparse_attention", f"not read: DeepSeek-V4 HCA module; {_WHY_SPARSE}"),
    "dsv4_hca_context_module_perf": ("sparse_attention", f"not read: DeepSeek-V4 HCA module; {_WHY_SPARSE}"),
    "dsv4_hca_generation_module_perf": ("sparse_attention", f"not read: DeepSeek-V4 HCA module; {_WHY_SPARSE}"),
    "dsv4_paged_mqa_logits_module_perf": ("sparse_attention", f"not read: DeepSeek-V4 indexer logits; {_WHY_SPARSE}"),
    "glm5_dsa_attn_module_perf": ("sparse_attention", f"not read: GLM-5 DSA module; {_WHY_SPARSE}"),
    "glm5_mqa_logits_module_perf": ("sparse_attention", f"not read: GLM-5 indexer logits; {_WHY_SPARSE}"),
    "glm5_topk_module_perf": ("sparse_attention", f"not read: GLM-5 top-k; {_WHY_SPARSE}"),
    "gdn_perf": ("linear_attention", f"not read: Gated DeltaNet; {_WHY_SPLIT}"),
    "mamba2_perf": ("linear_attention", "not read: Mamba2; the rows time the causal conv1d alone (kernel_source "
                                        "causal_conv1d_fn / _update, no SSD scan) while model.graph fuses conv and "
                                        "scan into one state kernel per phase (graph._state_kernels)"),
    "kda_perf": ("kda", f"not read: Kimi Delta Attention; {_WHY_SPLIT}"),
    "mhc_module_perf": ("mhc", "not read: DeepSeek-V4 manifold hyper-connection residual mixing (Sinkhorn "
                               "iterations): model.graph has no such kernel"),
    "encoder_attention_perf": ("encoder_attention", "not read: vision-encoder attention is bidirectional; "
                                                    "model.graph's attention kernels count causal query-key "
                                                    "pairs only"),
    # fp8 activation quantization: the static quantize pass and the dynamic scale (amax) pass, as memory-bound
    # vector kernels (validation.predict.quantize_kernel)
    "computescale_perf": ("quantize", "predicted"),
    "scale_matrix_perf": ("quantize", "predicted"),
}


def _catalog_id(name: str) -> str | None:
    """Catalog id of an id, alias or driver device name; None when the catalog does not describe it."""
    try:
        return load_hardware(name).id
    except (UnknownNameError, FileNotFoundError, InputError):
        return None


def aic_system_hardware(system: str, path: Path | str = "", hardware: str | None = None) -> str:
    """Hardware id of an AIConfigurator `<system>` folder (or the `hardware` override); InputError when the catalog
    does not describe it."""
    hw = _catalog_id(hardware or system)
    if hw is None:
        if hardware:
            raise InputError(f"{path}: --hardware {hardware!r} is not a GPU the hardware catalog describes "
                             f"(`roofsim list hardware` lists them; docs/hardware.md shows how to add one)")
        raise InputError(f"{path}: AIConfigurator system directory {system!r} is not a GPU the hardware catalog "
                         f"describes; add a hardware file whose id or aliases name it (docs/hardware.md) or pass "
                         f"--hardware <id>")
    return hw


def _aic_common(r: dict, ctx: dict) -> tuple[str, str]:
    dev = r.get("device")
    if dev is None or ctx["override"]:
        return ctx["system_hw"], ctx["framework"]
    devices = ctx["devices"]  # per-table cache: a table has one or two device names over many rows
    if dev not in devices:
        devices[dev] = _catalog_id(str(dev))
    hardware = devices[dev]
    if hardware is None:
        raise _RowError(f"field 'device'={dev!r} is not a GPU the hardware catalog describes (add its name to a "
                        f"hardware file's aliases, or pass --hardware)")
    return hardware, ctx["framework"]


def _aic_gemm(r: dict, ctx: dict) -> Iterable[KernelMeasurement]:
    hw, fw = _aic_common(r, ctx)
    raw = r["gemm_dtype"]
    yield KernelMeasurement(
        "aiconfigurator", hw, fw, "gemm", _dtype(raw, "gemm_dtype"),
        f"{r.get('kernel_source')}; gemm_dtype={raw}; {ctx['version']}",
        _pos_float(r["latency"], "latency") * _MS,
        m=_int(r["m"], "m"), n=_int(r["n"], "n"), k=_int(r["k"], "k"))


def _aic_attention(r: dict, ctx: dict) -> Iterable[KernelMeasurement]:
    hw, fw = _aic_common(r, ctx)
    prefill = ctx["table"] == "context_attention_perf"
    step = _int(r["step"], "step")
    bw = r.get("beam_width", 1)
    raw, kv_raw = r["attn_dtype"], r["kv_cache_dtype"]
    yield KernelMeasurement(
        "aiconfigurator", hw, fw, "attn_prefill" if prefill else "attn_decode", _dtype(raw, "attn_dtype"),
        f"{r.get('kernel_source')}; attn_dtype={raw}; kv_cache_dtype={kv_raw}; beam_width={bw}; {ctx['version']}",
        _pos_float(r["latency"], "latency") * _MS,
        batch=_int(r["batch_size"], "batch_size"),
        # prefill: isl new tokens per sequence; decode: 1 new token attending to `step` cached tokens
        seq_len=_int(r["isl"], "isl") if prefill else 1,
        ctx_len=step,
        num_heads=_int(r["num_heads"], "num_heads"), num_kv_heads=_int(r["num_key_value_heads"], "num_key_value_heads"),
        head_dim=_int(r["head_dim"], "head_dim"), window=_int(r.get("window_size", 0), "window_size"),
        kv_dtype=_dtype(kv_raw, "kv_cache_dtype"))


_AIC_COLL = {"all_reduce": "allreduce", "all_gather": "allgather", "reduce_scatter": "reducescatter",
             "alltoall": "alltoall"}


def _aic_collective(r: dict, ctx: dict) -> Iterable[KernelMeasurement]:
    hw, fw = _aic_common(r, ctx)
    dcol = "nccl_dtype" if "nccl_dtype" in r else "allreduce_dtype"
    raw = r[dcol]
    dt = _dtype(raw, dcol)
    op_name = r.get("op_name")
    if op_name not in _AIC_COLL:
        raise _RowError(f"field 'op_name'={op_name!r} is not a known collective (known: {sorted(_AIC_COLL)})")
    impl = r.get("backend") or r.get("implementation") or ""
    # message_size counts elements (nccl-tests convention); bytes = elements * element size
    yield KernelMeasurement(
        "aiconfigurator", hw, fw, _AIC_COLL[op_name], dt,
        f"{r.get('kernel_source')}; {impl}; {dcol}={raw}; {ctx['version']}".replace("; ;", ";"),
        _pos_float(r["latency"], "latency") * _MS,
        message_bytes=_int(r["message_size"], "message_size") * dtype_bytes(dt),
        num_gpus=_int(r["num_gpus"], "num_gpus"))


# mixed-precision MoE recipes (low-bit weights on fp8 activations): the row's dtype is the weights' format, the
# recipe stays in the variant (validation.predict._MOE_QUANT). Predicted from the fp8 fit, never fitted
# (validation.calibrate: family "moe_mixed"), reported as their own families (transfer: "moe/<recipe>")
MOE_MIXED_DTYPES = {"w4afp8": "int4", "w4a8_mxfp4_mxfp8": "fp4"}


def _aic_moe(r: dict, ctx: dict) -> Iterable[KernelMeasurement]:
    hw, fw = _aic_common(r, ctx)
    raw = r["moe_dtype"]
    dtype = MOE_MIXED_DTYPES.get(raw) or _dtype(raw, "moe_dtype")
    extra = "".join(f"; {c}={r[c]}" for c in ("moe_kernel", "simulation_mode", "num_slots", "dp_num_tokens",
                                                "rank0_num_tokens") if c in r)
    yield KernelMeasurement(
        "aiconfigurator", hw, fw, "moe", dtype,
        f"{r.get('op_name')}; {r.get('kernel_source')}; moe_dtype={raw}; distribution={r.get('distribution')}"
        f"{extra}; {ctx['version']}",
        _pos_float(r["latency"], "latency") * _MS,
        tokens=_int(r["num_tokens"], "num_tokens"), hidden=_int(r["hidden_size"], "hidden_size"),
        n=_int(r["inter_size"], "inter_size"), num_experts=_int(r["num_experts"], "num_experts"),
        topk=_int(r["topk"], "topk"), tp=_int(r["moe_tp_size"], "moe_tp_size"), ep=_int(r["moe_ep_size"], "moe_ep_size"))


def _aic_moe_a2a(r: dict, ctx: dict) -> Iterable[KernelMeasurement]:
    hw, fw = _aic_common(r, ctx)
    raw = r["comm_dtype"]
    # 'default' = the backend's own wire dtype, not recorded: kept as dtype "" with the original in variant
    dt = "" if raw == "default" else _dtype(raw, "comm_dtype")
    phase = r["phase"]
    if phase not in ("dispatch", "combine"):
        raise _RowError(f"field 'phase'={phase!r} must be dispatch or combine")
    yield KernelMeasurement(
        "aiconfigurator", hw, fw, f"moe_{phase}", dt,
        f"{r.get('comm_backend')}; comm_dtype={raw}; sms={r.get('sms')}; node_num={r.get('node_num')}; "
        f"{ctx['version']}",
        _pos_float(r["latency"], "latency") * _US,  # moe_a2a_perf latency is in microseconds (CATALOG)
        tokens=_int(r["num_tokens"], "num_tokens"), hidden=_int(r["hidden_size"], "hidden_size"),
        num_experts=_int(r["num_experts"], "num_experts"), topk=_int(r["topk"], "topk"),
        ep=_int(r["ep_size"], "ep_size"))


def _aic_deepep(r: dict, ctx: dict) -> Iterable[KernelMeasurement]:
    hw, fw = _aic_common(r, ctx)
    ll = ctx["table"] == "wideep_deepep_ll_perf"
    for phase in ("dispatch", "combine"):
        if ll:
            t_us = _pos_float(r[f"{phase}_avg_t_us"], f"{phase}_avg_t_us")
            extra = f"bandwidth_gbps={r.get(f'{phase}_bandwidth_gbps')}"
        else:  # normal mode: transmit + notify (the moe_a2a tables show latency = transmit_us + notify_us)
            t_us = _pos_float(float(r[f"{phase}_transmit_us"]) + float(r[f"{phase}_notify_us"] or 0.0),
                              f"{phase}_transmit_us+{phase}_notify_us")
            extra = f"sms={r.get(f'{phase}_sms')}"
        yield KernelMeasurement(
            "aiconfigurator", hw, fw, f"moe_{phase}", "",
            f"deepep_{r.get('op_name')}; {extra}; node_num={r.get('node_num')}; {r.get('version')}",
            t_us * _US,
            tokens=_int(r["num_token"], "num_token"), hidden=_int(r["hidden_size"], "hidden_size"),
            num_experts=_int(r["num_experts"], "num_experts"), topk=_int(r["num_topk"], "num_topk"))


def _aic_mlp(r: dict, ctx: dict) -> Iterable[KernelMeasurement]:
    hw, fw = _aic_common(r, ctx)
    raw = r["quant_type"]
    phase = "context" if "context" in ctx["table"] else "generation"
    yield KernelMeasurement(
        "aiconfigurator", hw, fw, "mlp", _dtype(raw, "quant_type"),
        f"{r.get('kernel_source')}; {phase}; quant_type={raw}; {ctx['version']}",
        _pos_float(r["avg_ms"], "avg_ms") * _MS,
        tokens=_int(r["num_token"], "num_token"), hidden=_int(r["hidden_size"], "hidden_size"),
        n=_int(r["intermediate_size"], "intermediate_size"))


# AIConfigurator MLA tables (collector/{trtllm,sglang,vllm}/collect_mla*.py): every collector builds DeepSeek-V3's
# MLA geometry, `num_heads` is the heads of one GPU (num_heads // tp_size, as logged), `isl` the new tokens of a
# context row (1 in generation) and `step` the tokens already cached (prefix in context, history in generation).
# table -> (op, the op_name its rows carry)
_AIC_MLA_OPS = {
    "context_mla_perf": ("mla_context", "mla_context"),
    "generation_mla_perf": ("mla_generation", "mla_generation"),
    # SGLang's wide-EP tables time its whole DeepSeek attention module (collector/sglang/collect_mla_module.py)
    "wideep_context_mla_perf": ("mla_context_module", "mla_context"),
    "wideep_generation_mla_perf": ("mla_generation_module", "mla_generation"),
    "mla_context_module_perf": ("mla_context_module", "mla_context_module"),
    "mla_generation_module_perf": ("mla_generation_module", "mla_generation_module"),
}
# the module collectors build the layer from these checkpoints' config.json; predict knows their MLA geometry
AIC_MLA_MODELS = ("deepseek-ai/DeepSeek-V3",)
_AIC_MLA_GEMM = ("bfloat16", "fp8_block", "nvfp4")  # module projections' recipe (collect_mla_module gemm_type)
_AIC_KV = ("bfloat16", "fp8")


def _one_of(r: dict, field: str, known: Sequence[str]) -> str:
    v = r.get(field)
    if v not in known:
        raise _RowError(f"field {field!r}={v!r} is not one of {list(known)}")
    return str(v)


def _aic_mla(r: dict, ctx: dict) -> Iterable[KernelMeasurement]:
    hw, fw = _aic_common(r, ctx)
    table = ctx["table"]
    op, op_name = _AIC_MLA_OPS[table]
    _one_of(r, "op_name", (op_name,))
    raw, kv_raw = r["mla_dtype"], _one_of(r, "kv_cache_dtype", _AIC_KV)
    dt, kv = _dtype(raw, "mla_dtype"), _dtype(kv_raw, "kv_cache_dtype")
    prefill = op.startswith("mla_context")
    isl, step = _int(r["isl"], "isl"), _int(r["step"], "step")
    extra = ""
    if op.endswith("_module"):
        model = _one_of(r, "model", AIC_MLA_MODELS) if "model" in r else AIC_MLA_MODELS[0]
        recipe = _one_of(r, "gemm_type" if "gemm_type" in r else "mla_dtype", _AIC_MLA_GEMM)
        if table.startswith("wideep_"):
            # SGLang's wide-EP collector asks for bfloat16 (compute, cache) and logs every row as
            # mla_dtype=fp8_block, kv_cache_dtype=fp8 (collector/sglang/collect_mla_module.py
            # _build_wideep_mla_test_cases, "run with bfloat16, log as fp8_block/fp8"); it loads DeepSeek-V3's
            # config.json, whose quantization_config (fp8, 128x128 blocks) SGLang applies to the projections when
            # no quantization is given: its 131k-token context rows run at 89 % of the H100's bf16 peak, which only
            # fp8 GEMMs reach (read as bf16 the context module was predicted +21 to +37 % on those rows, as
            # fp8_block -2 to -10 %). Its generation rows carry the cached length in `isl` with step 0 (log_isl =
            # seq_length, log_step = 0).
            recipe, dt, kv = "fp8_block", "fp8", "bf16"
            extra = f"; projections in the checkpoint's fp8_block, bf16 cache (logged kv_cache_dtype={kv_raw})"
            if not prefill:
                isl, step = 1, isl + step
        dt = _dtype(recipe, "gemm_type")
        extra = f"; gemm_dtype={recipe}; model={model}{extra}"
    yield KernelMeasurement(
        "aiconfigurator", hw, fw, op, dt,
        f"{r.get('kernel_source')}; mla_dtype={raw}; kv_cache_dtype={kv_raw}{extra}; {table}; {ctx['version']}",
        _pos_float(r["latency"], "latency") * _MS,
        batch=_int(r["batch_size"], "batch_size"), seq_len=isl if prefill else 1, ctx_len=step,
        num_heads=_int(r["num_heads"], "num_heads"), kv_dtype=kv, tp=_int(r["tp_size"], "tp_size"))


# mla_bmm_perf (collector/*/collect_mla_bmm.py): per head, [num_tokens, 128] x [128, 512] (mla_gen_pre: q_nope
# times W_UK into the latent) or [num_tokens, 512] x [512, 128] (mla_gen_post: the latent output times W_UV);
# qk_nope_head_dim 128 and kv_lora_rank 512 are the collectors' fixed DeepSeek-V3 dimensions.
_AIC_MLA_BMM_NK = {"mla_gen_pre": (512, 128), "mla_gen_post": (128, 512)}


def _aic_mla_bmm(r: dict, ctx: dict) -> Iterable[KernelMeasurement]:
    hw, fw = _aic_common(r, ctx)
    op_name = _one_of(r, "op_name", tuple(_AIC_MLA_BMM_NK))
    raw = _one_of(r, "bmm_dtype", ("bfloat16", "fp8"))
    n, k = _AIC_MLA_BMM_NK[op_name]
    tokens = _int(r["num_tokens"], "num_tokens")
    yield KernelMeasurement(
        "aiconfigurator", hw, fw, "mla_bmm", _dtype(raw, "bmm_dtype"),
        f"{op_name}; {r.get('kernel_source')}; bmm_dtype={raw}; {ctx['version']}",
        _pos_float(r["latency"], "latency") * _MS,
        m=tokens, n=n, k=k, tokens=tokens, num_heads=_int(r["num_heads"], "num_heads"))


# quantize tables (collector/*/collect_computescale.py): on a bf16 [m, k] activation, scale_matrix times the static
# fp8 quantization (scale given) and compute_scale the dynamic one minus the static one, i.e. the scale (amax)
# computation alone; a difference at or below zero is logged as 0 and is a reader problem (not a time).
_AIC_QUANT_OPS = {"scale_matrix_perf": "scale_matrix", "computescale_perf": "compute_scale"}


def _aic_quantize(r: dict, ctx: dict) -> Iterable[KernelMeasurement]:
    hw, fw = _aic_common(r, ctx)
    op_name = _one_of(r, "op_name", (_AIC_QUANT_OPS[ctx["table"]],))
    raw = _one_of(r, "quant_dtype", ("fp8",))
    yield KernelMeasurement(
        "aiconfigurator", hw, fw, "quantize", _dtype(raw, "quant_dtype"),
        f"{op_name}; {r.get('kernel_source')}; quant_dtype={raw}; {ctx['version']}",
        _pos_float(r["latency"], "latency") * _MS,
        m=_int(r["m"], "m"), k=_int(r["k"], "k"), tokens=_int(r["m"], "m"), hidden=_int(r["k"], "k"))


_AIC_HANDLERS: dict[str, Callable[[dict, dict], Iterable[KernelMeasurement]]] = {
    **{table: _aic_mla for table in _AIC_MLA_OPS},
    "mla_bmm_perf": _aic_mla_bmm,
    **{table: _aic_quantize for table in _AIC_QUANT_OPS},
    "gemm_perf": _aic_gemm,
    "context_attention_perf": _aic_attention,
    "generation_attention_perf": _aic_attention,
    "nccl_perf": _aic_collective,
    "custom_allreduce_perf": _aic_collective,
    "moe_perf": _aic_moe,
    "wideep_context_moe_perf": _aic_moe,
    "wideep_generation_moe_perf": _aic_moe,
    "wideep_moe_perf": _aic_moe,
    "moe_a2a_perf": _aic_moe_a2a,
    "wideep_deepep_ll_perf": _aic_deepep,
    "wideep_deepep_normal_perf": _aic_deepep,
    "wideep_context_mlp_perf": _aic_mlp,
    "wideep_generation_mlp_perf": _aic_mlp,
}


def _run_rows(records: Iterable[tuple[int, dict]], handler, ctx: dict, file: str, where: str
              ) -> KernelTable:
    rows: list[KernelMeasurement] = []
    problems: list[str] = []
    for idx, r in records:
        try:
            for km in handler(r, ctx):
                rows.append(_stamp(km, file, idx))
        except _RowError as e:
            problems.append(f"{file} {where} {idx}: {e}")
        except (KeyError, TypeError, ValueError) as e:
            problems.append(f"{file} {where} {idx}: unusable row ({type(e).__name__}: {e})")
    return KernelTable(tuple(rows), tuple(problems))


def _stamp(km: KernelMeasurement, file: str, row: int) -> KernelMeasurement:
    object.__setattr__(km, "file", file)  # freshly built, not yet shared: set provenance in place
    object.__setattr__(km, "row", row)
    return km


def read_aiconfigurator_table(path: Path | str, hardware: str | None = None,
                              select: Callable[[Any], Sequence[int]] | None = None) -> KernelTable:
    """Read one AIConfigurator parquet table (`<system>/<family>/<framework>/<version>/<table>.parquet`); the system
    folder and `device` column resolve through the hardware catalog, `hardware` (id/alias) overrides both.
    `select(pyarrow_table)` -> the parquet row indices to read (a sample); default every row.

    `row` in records and problems is the 0-based parquet row index.
    """
    import pyarrow.parquet as pq

    path = Path(path)
    table = path.stem
    handler = _AIC_HANDLERS.get(table)
    if handler is None:
        if table in AIC_TABLE_FAMILIES:
            raise InputError(f"{path}: {AIC_TABLE_FAMILIES[table][1]}")
        raise InputError(f"{path}: unknown AIConfigurator table {table!r}; known: {sorted(_AIC_HANDLERS)}")
    parts = path.parts
    if len(parts) < 5:
        raise InputError(f"{path}: expected <system>/<family>/<framework>/<version>/{table}.parquet")
    system, framework, version = parts[-5], parts[-3], parts[-2]
    system_hw = aic_system_hardware(system, path, hardware)
    try:
        pa_table = pq.read_table(path)
    except Exception as e:  # pyarrow raises several types for a corrupt file
        raise InputError(f"{path}: cannot read parquet: {e}") from e
    index = list(range(pa_table.num_rows)) if select is None else [int(i) for i in select(pa_table)]
    data = (pa_table if select is None else pa_table.take(index)).to_pydict()
    cols = list(data)
    ctx = {"system_hw": system_hw, "override": hardware is not None, "devices": {}, "framework": framework.lower(),
           "table": table, "version": f"{framework} {version}"}
    records = ((row, {c: data[c][j] for c in cols}) for j, row in enumerate(index))
    return _run_rows(records, handler, ctx, str(path), "row")


def read_aiconfigurator(root: Path | str, *, systems: Sequence[str] | None = None,
                        families: Sequence[str] | None = None, frameworks: Sequence[str] | None = None,
                        tables: Sequence[str] | None = None, hardware: str | None = None) -> KernelTable:
    """Read every AIConfigurator parquet table under root, optionally filtered by system / op family /
    framework directory names and table stems (e.g. tables=["gemm_perf"]). Tables roofsim does not read
    (AIC_TABLE_FAMILIES "not read: ...") become one problem each naming the reason; `hardware` overrides the
    system folder and device column (read_aiconfigurator_table)."""
    root = Path(root)
    if not root.is_dir():
        raise InputError(f"{root}: not a directory")
    out = _EMPTY
    for p in sorted(root.glob("*/*/*/*/*.parquet")):
        system, family, fw, _ver, _ = p.relative_to(root).parts
        if (systems and system not in systems) or (families and family not in families) or \
                (frameworks and fw not in frameworks) or (tables and p.stem not in tables):
            continue
        status = AIC_TABLE_FAMILIES.get(p.stem, (family, "not read: unknown AIConfigurator table"))[1]
        if status.startswith("not read"):
            out = out + KernelTable((), (f"{p}: {status}",))
            continue
        out = out + read_aiconfigurator_table(p, hardware)
    return out


# ---------------------------------------------------------------------------------------------- vidur
# Vidur compute folders name the GPU SKU; Vidur's profiling.md says the same a100 compute data serves both the
# a100_pairwise_nvlink (A100 80GB PCIe) and a100_dgx (A100 80GB SXM) nodes. We map it to a100-sxm-80gb.
VIDUR_COMPUTE_HW = {"a100": "a100-sxm-80gb", "h100": "h100-sxm", "a40": "a40"}
# profiling.md: a100_pair_nvlink = 4x A100 80GB PCIe with pairwise NVLink; h100_pair_nvlink = 4x H100 NVL;
# a100_dgx = DGX A100 8x 80GB; h100_dgx = DGX H100.
VIDUR_NETWORK_HW = {"a100_dgx": "a100-sxm-80gb", "h100_dgx": "h100-sxm", "a100_pairwise_nvlink": "a100-pcie-80gb",
                    "h100_pairwise_nvlink": "h100-nvl", "a40_pairwise_nvlink": "a40"}

_VIDUR_OPS = ("emb", "input_layernorm", "attn_pre_proj", "attn_rope", "attn_post_proj",
              "post_attention_layernorm", "mlp_up_proj", "mlp_act", "mlp_down_proj", "add")
_MEDIAN = "time_stats.{}.median"


def _csv_records(path: Path) -> tuple[list[str], Iterable[tuple[int, dict]]]:
    return read_csv_records(path, what="kernel table")


def _need_cols(path: Path, header: Sequence[str], cols: Iterable[str]) -> None:
    missing = [c for c in cols if c not in header]
    if missing:
        raise InputError(f"{path}: missing column(s) {missing} (has {list(header)[:12]}...)")


def _vidur_mlp(path: Path, hw: str, model: str) -> KernelTable:
    header, recs = _csv_records(path)
    _need_cols(path, header, ["n_head", "n_kv_head", "n_embd", "n_expanded_embd", "vocab_size", "use_gated_mlp",
                              "num_tokens", "num_tensor_parallel_workers"])
    # phi-2 (parallel attention + MLP) has no post_attention_layernorm: take the ops the file has
    ops = [o for o in _VIDUR_OPS if _MEDIAN.format(o) in header]
    if not ops:
        raise InputError(f"{path}: no time_stats.<op>.median column for any of {list(_VIDUR_OPS)}")
    norm = "layernorm" if "phi" in model.lower() else "rmsnorm"  # phi-2 uses LayerNorm; the others RMSNorm

    def handler(r: dict, ctx: dict) -> Iterable[KernelMeasurement]:
        nh, nkv, d = _int(r["n_head"], "n_head"), _int(r["n_kv_head"], "n_kv_head"), _int(r["n_embd"], "n_embd")
        ff, tok = _int(r["n_expanded_embd"], "n_expanded_embd"), _int(r["num_tokens"], "num_tokens")
        tp = _int(r["num_tensor_parallel_workers"], "num_tensor_parallel_workers")
        gated = str(r["use_gated_mlp"]).strip().lower()
        if gated not in ("true", "false"):
            raise _RowError(f"field 'use_gated_mlp'={r['use_gated_mlp']!r} is not True/False")
        gated_b = gated == "true"
        hd = _div(d, nh, "n_embd / n_head")
        heads_tp = _div(nh, tp, "n_head / tp")
        # fewer KV heads than TP ranks: each rank holds one replicated KV head
        kv_tp = 1 if nkv < tp else _div(nkv, tp, "n_kv_head / tp")
        ff_tp = _div(ff, tp, "n_expanded_embd / tp")
        shapes: dict[str, tuple[str, dict]] = {
            "emb": ("embedding", {"tokens": tok, "hidden": d}),
            "input_layernorm": (norm, {"tokens": tok, "hidden": d}),
            # QKV GEMM per TP shard: (q heads + 2 kv heads) * head_dim / tp output columns
            "attn_pre_proj": ("gemm", {"m": tok, "n": (nh + 2 * nkv) * hd // tp, "k": d}),
            "attn_rope": ("rope", {"tokens": tok, "num_heads": heads_tp, "num_kv_heads": kv_tp, "head_dim": hd}),
            "attn_post_proj": ("gemm", {"m": tok, "n": d, "k": heads_tp * hd}),
            "post_attention_layernorm": (norm, {"tokens": tok, "hidden": d}),
            "mlp_up_proj": ("gemm", {"m": tok, "n": (2 if gated_b else 1) * ff_tp, "k": d}),
            "mlp_act": ("silu_mul" if gated_b else "gelu", {"tokens": tok, "hidden": ff_tp}),
            "mlp_down_proj": ("gemm", {"m": tok, "n": d, "k": ff_tp}),
            "add": ("add", {"tokens": tok, "hidden": d}),
        }
        if ((nh + 2 * nkv) * hd) % tp:
            raise _RowError(f"QKV width {(nh + 2 * nkv) * hd} is not divisible by tp={tp}")
        out = []
        for name in ops:
            op, sh = shapes[name]
            col = _MEDIAN.format(name)
            out.append(KernelMeasurement("vidur", hw, "vidur", op, "fp16", f"{name}; {model}",
                                         _pos_float(r[col], col) * _MS, tp=tp, **sh))
        return out

    return _run_rows(recs, handler, {}, str(path), "line")


def _vidur_network(path: Path, node: str) -> KernelTable:
    header, recs = _csv_records(path)
    coll = path.stem  # all_reduce | send_recv
    col = _MEDIAN.format(coll)
    _need_cols(path, header, [col, "num_workers", "size"])
    hw = VIDUR_NETWORK_HW.get(node, node)
    op = {"all_reduce": "allreduce", "send_recv": "send_recv"}[coll]

    def handler(r: dict, ctx: dict) -> Iterable[KernelMeasurement]:
        yield KernelMeasurement(
            "vidur", hw, "vidur", op, "fp16",
            f"node={node}; devices_per_node={r.get('devices_per_node')}; max_devices_per_node="
            f"{r.get('max_devices_per_node')}",
            _pos_float(r[col], col) * _MS,
            message_bytes=_int(r["size"], "size") * 2.0,  # size counts fp16 elements
            num_gpus=_int(r["num_workers"], "num_workers"))

    return _run_rows(recs, handler, {}, str(path), "line")


def _vidur_attention(path: Path, hw: str) -> KernelTable:
    header, recs = _csv_records(path)
    _need_cols(path, header, ["n_embd", "n_q_head", "n_kv_head", "num_tensor_parallel_workers", "batch_size",
                              "prefill_chunk_size", "kv_cache_size", "is_prefill"])

    def handler(r: dict, ctx: dict) -> Iterable[KernelMeasurement]:
        d, nq, nkv = _int(r["n_embd"], "n_embd"), _int(r["n_q_head"], "n_q_head"), _int(r["n_kv_head"], "n_kv_head")
        tp = _int(r["num_tensor_parallel_workers"], "num_tensor_parallel_workers")
        flag = str(r["is_prefill"]).strip().lower()
        if flag not in ("true", "false"):
            raise _RowError(f"field 'is_prefill'={r['is_prefill']!r} is not True/False")
        prefill = flag == "true"
        chunk = _int(r["prefill_chunk_size"], "prefill_chunk_size")
        batch = _int(r["batch_size"], "batch_size")
        seq_len = chunk if prefill else 1
        ctx_len = _int(r["kv_cache_size"], "kv_cache_size")
        num_heads = _div(nq, tp, "n_q_head / tp")
        num_kv_heads = _div(nkv, tp, "n_kv_head / tp")
        head_dim = _div(d, nq, "n_embd / n_q_head")
        main = "attn_prefill" if prefill else "attn_decode"
        out = []
        for name, op in ((main, main), ("attn_input_reshape", "attn_input_reshape"),
                         ("attn_output_reshape", "attn_output_reshape")):
            col = _MEDIAN.format(name)
            raw = r.get(col)
            if name != main and (raw in (None, "") or float(raw) == 0.0):
                continue  # reshape not timed (0.0 ms) in this row: nothing measured to record
            out.append(KernelMeasurement("vidur", hw, "vidur", op, "fp16",
                                         f"{r.get('attention_backend')}; {r.get('profile_method')}",
                                         _pos_float(raw, col) * _MS, batch=batch, seq_len=seq_len,
                                         ctx_len=ctx_len, num_heads=num_heads, num_kv_heads=num_kv_heads,
                                         head_dim=head_dim, tp=tp))
        return out

    return _run_rows(recs, handler, {}, str(path), "line")


def _vidur_cpu(path: Path, hw: str) -> KernelTable:
    header, recs = _csv_records(path)
    _need_cols(path, header, ["model_name", "batch_size", "tensor_parallel_degree"])
    medians = [c for c in header if c.endswith("_median")]
    extra_means = [c for c in header if c.endswith("_mean") and c[:-5] + "_median" not in header]

    def handler(r: dict, ctx: dict) -> Iterable[KernelMeasurement]:
        b, tp = _int(r["batch_size"], "batch_size"), _int(r["tensor_parallel_degree"], "tensor_parallel_degree")
        out = []
        for c in medians + extra_means:
            name = c.rsplit("_", 1)[0]
            out.append(KernelMeasurement("vidur", hw, "vidur", f"cpu_overhead_{name}", "",
                                         f"{r['model_name']}; {c.rsplit('_', 1)[1]}", _pos_float(r[c], c) * _MS,
                                         batch=b, tp=tp))
        return out

    return _run_rows(recs, handler, {}, str(path), "line")


def _read_tree(root: Path | str, pattern: str, read_file: Callable[[Path], KernelTable]) -> KernelTable:
    """`read_file` over root (one file) or every file under root matching `pattern`, in sorted order."""
    root = Path(root)
    files = [root] if root.is_file() else sorted(root.rglob(pattern))
    out = _EMPTY
    for p in files:
        out = out + read_file(p)
    return out


def read_vidur(root: Path | str) -> KernelTable:
    """Read Vidur profiling CSVs under root (a vidur data folder, or any folder/file inside it)."""
    return _read_tree(root, "*.csv", _read_vidur_file)


def _read_vidur_file(p: Path) -> KernelTable:
    parts = p.parts
    if p.name == "mlp.csv" and "compute" in parts:
        i = parts.index("compute")
        gpu, model = parts[i + 1], "/".join(parts[i + 2:-1])
        return _vidur_mlp(p, VIDUR_COMPUTE_HW.get(gpu, gpu), model)
    if p.stem in ("all_reduce", "send_recv") and "network" in parts:
        return _vidur_network(p, parts[parts.index("network") + 1])
    m = re.fullmatch(r"([a-z0-9]+)_attention", p.stem)
    if m:
        return _vidur_attention(p, VIDUR_COMPUTE_HW.get(m.group(1), m.group(1)))
    m = re.fullmatch(r"([a-z0-9]+)_cpu_overheads", p.stem)
    if m:
        return _vidur_cpu(p, VIDUR_COMPUTE_HW.get(m.group(1), m.group(1)))
    return KernelTable((), (f"{p}: not a recognised Vidur profiling table",))


# ----------------------------------------------------------------------------------------- llmcompass
# LLMCompass ae/figure5 real-hardware files. The A100 is taken as the 80GB SXM part (assumption, documented).
LLMCOMPASS_HW = {"A100": "a100-sxm-80gb", "MI210": "mi210"}
# GPT-3 175B layer of transformer_A100.csv / transformerAR_A100.csv: d_model 12288, 96 heads, TP4, batch 8.
_G3_D, _G3_H, _G3_TP, _G3_B = 12288, 96, 4, 8
_G3_OPS = ("Q_K_V", "Q_mul_K", "A_mul_V", "Wo_proj", "W1_proj", "W2_proj", "Softmax", "LayerNorm_MHA",
           "LayerNorm_FFN", "GeLU", "AllReduce_MHA", "AllReduce_FFN")


def _g3_shapes(decode: bool) -> dict[str, tuple[str, dict]]:
    d, tp, b = _G3_D, _G3_TP, _G3_B
    h, hd = _G3_H // tp, d // _G3_H
    s = 1 if decode else 2048          # new tokens per sequence
    ctx = 2048 + 1024 if decode else 2048  # KV length attended to (decode step at KV 2048+1024)
    t = b * s
    attn = {"batch": b, "seq_len": s, "ctx_len": ctx, "num_heads": h, "num_kv_heads": h, "head_dim": hd, "tp": tp}
    return {
        "Q_K_V": ("gemm", {"m": t, "n": 3 * d // tp, "k": d, "tp": tp}),
        "Q_mul_K": ("attn_qk_matmul", attn),
        "A_mul_V": ("attn_av_matmul", attn),
        "Wo_proj": ("gemm", {"m": t, "n": d, "k": d // tp, "tp": tp}),
        "W1_proj": ("gemm", {"m": t, "n": 4 * d // tp, "k": d, "tp": tp}),
        "W2_proj": ("gemm", {"m": t, "n": d, "k": 4 * d // tp, "tp": tp}),
        "Softmax": ("softmax", {"tokens": b * h * s, "hidden": ctx, "tp": tp}),
        "LayerNorm_MHA": ("layernorm", {"tokens": t, "hidden": d, "tp": tp}),
        "LayerNorm_FFN": ("layernorm", {"tokens": t, "hidden": d, "tp": tp}),
        "GeLU": ("gelu", {"tokens": t, "hidden": 4 * d // tp, "tp": tp}),
        "AllReduce_MHA": ("allreduce", {"message_bytes": t * d * 2.0, "num_gpus": tp, "tp": tp}),
        "AllReduce_FFN": ("allreduce", {"message_bytes": t * d * 2.0, "num_gpus": tp, "tp": tp}),
    }


def _llmcompass_file(p: Path) -> KernelTable:
    m = re.fullmatch(r"(matmul|softmax|layernorm|gelu|transformer|transformerAR)_(\w+)", p.stem)
    if not m:
        return KernelTable((), (f"{p}: not a recognised LLMCompass real-hardware table",))
    kind, dev = m.groups()
    hw = LLMCOMPASS_HW.get(dev, dev.lower())
    rows: list[KernelMeasurement] = []
    problems: list[str] = []
    with open_text_lines(p, what="kernel table") as text:
        try:
            lines = [[c.strip() for c in row] for row in csv.reader(text)]
        except csv.Error as e:
            raise InputError(f"{p}: malformed CSV ({e})") from None
    if kind.startswith("transformer"):
        shapes = _g3_shapes(kind == "transformerAR")
        vals = [r for r in lines if r]
        if len(vals) != len(_G3_OPS):
            return KernelTable((), (f"{p}: expected {len(_G3_OPS)} lines ({', '.join(_G3_OPS)}), got {len(vals)}",))
    for ln, cells in enumerate(lines, start=1):
        if not cells or cells == [""]:
            continue
        try:
            if kind == "matmul":
                if len(cells) < 4 or not cells[3].endswith("ms"):
                    raise _RowError(f"expected M, N, K, 'x.xxms'[, 'x.xTflops'], got {cells}")
                mm, nn, kk = (_int(c, f) for c, f in zip(cells[:3], "MNK", strict=True))
                rows.append(KernelMeasurement("llmcompass", hw, "llmcompass", "gemm", "fp16", "matmul",
                                              _pos_float(cells[3][:-2], "time_ms") * _MS, m=mm, n=nn, k=kk,
                                              file=str(p), row=ln))
            elif kind in ("softmax", "layernorm"):
                if len(cells) != 3:
                    raise _RowError(f"expected M, N, G elements/s, got {cells}")
                mm, nn = _int(cells[0], "M"), _int(cells[1], "N")
                g = _pos_float(cells[2], "G_elements_per_s")
                rows.append(KernelMeasurement("llmcompass", hw, "llmcompass", kind, "fp16", kind,
                                              mm * nn / (g * 1e9), tokens=mm, hidden=nn, file=str(p), row=ln))
            elif kind == "gelu":
                if len(cells) != 2:
                    raise _RowError(f"expected M, G elements/s, got {cells}")
                mm, g = _int(cells[0], "M"), _pos_float(cells[1], "G_elements_per_s")
                rows.append(KernelMeasurement("llmcompass", hw, "llmcompass", "gelu", "fp16",
                                              "gelu; tokens = number of elements", mm / (g * 1e9), tokens=mm,
                                              hidden=1, file=str(p), row=ln))
            else:
                name = _G3_OPS[ln - 1]
                op, sh = shapes[name]
                rows.append(KernelMeasurement("llmcompass", hw, "llmcompass", op, "fp16",
                                              f"GPT-3 175B layer {'decode' if kind == 'transformerAR' else 'prefill'}"
                                              f"; {name}", _pos_float(cells[0], "seconds"), file=str(p), row=ln,
                                              **sh))
        except _RowError as e:
            problems.append(f"{p} line {ln}: {e}")
    return KernelTable(tuple(rows), tuple(problems))


def read_llmcompass(root: Path | str) -> KernelTable:
    """Read LLMCompass `ae/figure5/*/real_hardware/*.csv` files under root (or one such file)."""
    return _read_tree(root, "figure5/*/real_hardware/*.csv", _llmcompass_file)


# ---------------------------------------------------------------------------------------- generic CSV
GENERIC_REQUIRED = ("op", "dtype", "hardware", "measured_s")
_FIELDS = {f.name: f.type for f in dataclasses.fields(KernelMeasurement)}
_GENERIC_STR = {"source", "framework", "variant", "kv_dtype"}
_GENERIC_FLOAT = {"message_bytes"}
_GENERIC_INT = {n for n, t in _FIELDS.items() if t == "int"} - {"row"}
_GENERIC_ALLOWED = set(GENERIC_REQUIRED) | _GENERIC_STR | _GENERIC_FLOAT | _GENERIC_INT


def read_generic_csv(path: Path | str) -> KernelTable:
    """Read a CSV with header: op, dtype, hardware, measured_s (seconds) + optional KernelMeasurement fields.

    Unknown columns and missing required columns raise InputError; a bad cell is a problem naming line and field.
    """
    path = Path(path)
    header, records = read_csv_records(path, what="kernel table")
    if not header:
        raise InputError(f"{path}: empty file, expected a header with {list(GENERIC_REQUIRED)}")
    missing = [c for c in GENERIC_REQUIRED if c not in header]
    if missing:
        raise InputError(f"{path} line 1: missing required column(s) {missing}")
    unknown = [c for c in header if c not in _GENERIC_ALLOWED]
    if unknown:
        raise InputError(f"{path} line 1: unknown column(s) {unknown}; allowed: {sorted(_GENERIC_ALLOWED)}")
    rows: list[KernelMeasurement] = []
    problems: list[str] = []
    for ln, r in records:
        try:
            rows.append(_generic_row(r, str(path), ln))
        except _RowError as e:
            problems.append(f"{path} line {ln}: {e}")
    return KernelTable(tuple(rows), tuple(problems))


def _generic_row(r: dict, file: str, ln: int) -> KernelMeasurement:
    if None in r:
        raise _RowError(f"{len(r[None])} more cell(s) than header columns")
    kw: dict[str, Any] = {}
    for key, raw in r.items():
        if raw is None:
            raise _RowError(f"field {key!r} is missing (fewer cells than header columns)")
        val = raw.strip()
        if key == "measured_s":
            kw[key] = _pos_float(val, key)
        elif key in ("dtype", "kv_dtype"):
            if key == "kv_dtype" and val == "":
                kw[key] = ""
            else:
                kw[key] = _dtype(val, key)
        elif key in ("op", "hardware"):
            if not val:
                raise _RowError(f"field {key!r} is empty")
            kw[key] = val
        elif key in _GENERIC_STR:
            kw[key] = val
        elif key in _GENERIC_FLOAT:
            try:
                x = float(val) if val else 0.0
            except ValueError:
                raise _RowError(f"field {key!r}={val!r} is not a number") from None
            if not math.isfinite(x) or x < 0:
                raise _RowError(f"field {key!r}={val!r} must be a non-negative finite number")
            kw[key] = x
        else:
            kw[key] = _int(val, key) if val else 0
    kw.setdefault("source", "csv")
    kw.setdefault("framework", "")
    kw.setdefault("variant", "")
    return KernelMeasurement(**kw, file=file, row=ln)


# --------------------------------------------------------------------------------------------- dispatch
_FORMATS = ("auto", "aiconfigurator", "vidur", "llmcompass", "csv")
_IGNORED_SUFFIXES = {".yaml", ".yml", ".md", ".json", ".pdf", ".txt", ""}


def read_kernel_file(path: Path | str, format: str = "auto") -> KernelTable:
    """Read one kernel table file; format auto-detects from the extension, path and header."""
    path = Path(path)
    if format not in _FORMATS:
        raise InputError(f"{path}: unknown kernel table format {format!r}; known: {list(_FORMATS)}")
    if not path.is_file():
        raise InputError(f"{path}: no such file")
    if format == "auto":
        format = _detect(path)
    if format == "aiconfigurator":
        return read_aiconfigurator_table(path)
    if format == "vidur":
        return _read_vidur_file(path)
    if format == "llmcompass":
        return _llmcompass_file(path)
    return read_generic_csv(path)


def _detect(path: Path) -> str:
    if path.suffix == ".parquet":
        return "aiconfigurator"
    if path.suffix != ".csv":
        raise InputError(f"{path}: cannot detect the kernel table format (expected .parquet or .csv)")
    if "real_hardware" in path.parts:
        return "llmcompass"
    with open_text_lines(path, what="kernel table") as lines:
        first = next(lines, "")
    cols = [c.strip() for c in first.split(",")]
    if "measured_s" in cols:
        return "csv"
    if any(c.startswith("time_stats.") for c in cols) or "model_name" in cols and "schedule_median" in cols:
        return "vidur"
    raise InputError(f"{path}: cannot detect the kernel table format from its header {cols[:6]}; "
                     f"a generic CSV needs columns {list(GENERIC_REQUIRED)}")


def read_kernel_tables(path: Path | str, format: str = "auto") -> KernelTable:
    """Read a kernel table file, or every table under a directory (non-table files such as yaml/md/json
    metadata are skipped with a debug log; unrecognised .csv/.parquet files become problems)."""
    path = Path(path)
    if path.is_file():
        return read_kernel_file(path, format)
    if not path.is_dir():
        raise InputError(f"{path}: no such file or directory")
    out = _EMPTY
    tables = 0
    for p in sorted(x for x in path.rglob("*") if x.is_file()):
        if p.suffix not in (".csv", ".parquet"):
            log.debug("skipping non-table file %s", p)
            continue
        tables += 1
        try:
            out = out + read_kernel_file(p, format)
        except InputError as e:
            out = out + KernelTable((), (str(e),))
    if not tables:
        return KernelTable((), (f"{path}: no kernel table (.csv or .parquet file) in the folder (nothing read)",))
    return out
