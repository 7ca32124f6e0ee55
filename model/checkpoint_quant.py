"""The number formats a quantised checkpoint ships in, read from its config.json `quantization_config` and its
ModelOpt `hf_quant_config.json` side file, mapped to a QuantSpec (weights, group scales, activations, KV cache).

Formats and their layouts: FP8 block 128x128 with fp32 or UE8M0 scales (DeepSeek-V3, arXiv 2412.19437, sec. 3.3.2);
ModelOpt FP8 per-tensor W8A8, NVFP4 (e2m1 values, one fp8-e4m3 scale per 16, NVIDIA ModelOpt docs "Quantization
formats") and W4A16_NVFP4; OCP MXFP4 (e2m1, one e8m0 scale per 32; OCP Microscaling Formats spec v1.0, sec. 5),
the gpt-oss MoE weights; compressed-tensors config_groups (num_bits/type/group_size/strategy); AWQ and GPTQ int4
with fp16 scales per group (Lin et al. 2023, arXiv 2306.00978; Frantar et al. 2022, arXiv 2210.17323).
A mixed-precision checkpoint is described by the format of its MLP/expert weights, which hold most parameters.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from roofsim.hardware_specs.errors import InputError
from roofsim.hardware_specs.loading import load_json_file
from roofsim.model.spec import QuantSpec

# A 128x128 weight block shares one scale (DeepSeek-V3 FP8 recipe): "weights per scale" = 16384.
FP8_BLOCK_GROUP = 128 * 128


@dataclass(frozen=True, slots=True)
class CheckpointQuant:
    """The QuantSpec a checkpoint's weights are stored in, the scheme's name (for notes) and the files read."""

    quant: QuantSpec
    scheme: str
    source: str
    kv_stated: bool = False  # the checkpoint fixes the KV-cache format (else the KV dtype is the usual default)


def _q(weight: str, act: str, group: int, scale_bytes: float, kv: str | None) -> QuantSpec:
    # Unstated KV: the 16-bit activation dtype, else bf16 (model.quant.quant_for's 'auto' rule).
    kv_dtype = kv or (act if act in ("bf16", "fp16", "fp32") else "bf16")
    return QuantSpec(weight_dtype=weight, activation_dtype=act, kv_dtype=kv_dtype,  # type: ignore[arg-type]
                     group_size=group, scale_bytes=scale_bytes)


# ModelOpt quant_algo: weight dtype, activation dtype, weights per scale (0 = per tensor/channel), bytes per scale
_MODELOPT_TABLE = """
FP8 fp8 fp8 0 4;  FP8_PER_CHANNEL_PER_TOKEN fp8 fp8 0 4;  FP8_BLOCK_SCALES fp8 fp8 16384 4;  MXFP8 fp8 fp8 32 1
NVFP4 fp4 fp4 16 1;  W4A16_NVFP4 fp4 bf16 16 1;  NVFP4_AWQ fp4 fp4 16 1;  MXFP4 fp4 bf16 32 1
W4A8_MXFP4_FP8 fp4 fp8 32 1;  W4A8_NVFP4_FP8 fp4 fp8 16 1
INT4_AWQ int4 bf16 128 2;  W4A16_AWQ int4 bf16 128 2;  W4A8_AWQ int4 fp8 128 2
INT8_SQ int8 int8 0 2;  W8A8_SQ_PER_CHANNEL int8 int8 0 2;  INT8_WEIGHT_ONLY int8 bf16 0 2
"""
_MODELOPT: dict[str, tuple[str, str, int, float]] = {
    name: (w, a, int(g), float(b))
    for name, w, a, g, b in (e.split() for e in _MODELOPT_TABLE.replace("\n", ";").split(";") if e.strip())
}


def _kv(value: Any, where: str) -> str | None:
    """KV dtype of `kv_cache_quant_algo` ("FP8", null) or compressed-tensors `kv_cache_scheme` ({num_bits, type})."""
    if value is None:
        return None
    if isinstance(value, str):
        v = value.upper()
        if v in ("FP8", "FP8_E4M3"):
            return "fp8"
        if v in ("INT8",):
            return "int8"
        raise InputError(f"{where}: KV-cache quantisation {value!r} is not supported; known: FP8, INT8")
    if isinstance(value, Mapping):
        bits, kind = value.get("num_bits"), value.get("type", "float")
        if bits == 8:
            return "fp8" if kind == "float" else "int8"
        raise InputError(f"{where}: kv_cache_scheme {dict(value)!r} is not supported (8-bit float or int only)")
    raise InputError(f"{where}: KV-cache quantisation {value!r} is neither a name nor a scheme object")


def _main_algo(layers: Mapping[str, Any]) -> str:
    """The quant_algo of a MIXED_PRECISION checkpoint's routed experts, else MLP layers (they hold most
    parameters), else the commonest."""
    algos = [(name, v.get("quant_algo")) for name, v in layers.items()
             if isinstance(v, Mapping) and isinstance(v.get("quant_algo"), str)]
    routed = [a for n, a in algos if ".experts." in n and "shared" not in n]
    mlp = [a for n, a in algos if any(s in n for s in ("mlp", "expert", "ffn"))]
    counts = Counter(routed or mlp or [a for _, a in algos])
    if not counts:
        raise ValueError("no quant_algo in quantized_layers")
    return counts.most_common(1)[0][0]


def _modelopt(q: Mapping[str, Any], where: str) -> CheckpointQuant:
    algo = q.get("quant_algo")
    if algo == "MIXED_PRECISION":
        layers = q.get("quantized_layers")
        if not isinstance(layers, Mapping) or not layers:
            raise InputError(f"{where}: quant_algo MIXED_PRECISION without a 'quantized_layers' table")
        algo = q.get("moe_quant_algo") or _main_algo(layers)
    if algo not in _MODELOPT:
        raise InputError(f"{where}: ModelOpt quant_algo {algo!r} is not supported; known: {', '.join(_MODELOPT)}")
    w, a, group, scale = _MODELOPT[algo]
    if isinstance(q.get("group_size"), int) and group not in (0, FP8_BLOCK_GROUP):
        group = q["group_size"]
    kv = _kv(q.get("kv_cache_quant_algo", q.get("kv_cache_scheme")), where)
    return CheckpointQuant(_q(w, a, group, scale, kv), f"ModelOpt {algo}", where, kv is not None)


def _ct_format(spec: Mapping[str, Any] | None, where: str) -> str | None:
    """dtype of a compressed-tensors weights/input_activations entry (None = not quantised)."""
    if not spec:
        return None
    bits, kind = spec.get("num_bits"), spec.get("type", "int")
    formats = {(8, "float"): "fp8", (4, "float"): "fp4", (8, "int"): "int8", (4, "int"): "int4"}
    if (bits, kind) not in formats:
        raise InputError(f"{where}: compressed-tensors format num_bits={bits!r} type={kind!r} is not supported")
    return formats[(bits, kind)]


def _compressed_tensors(q: Mapping[str, Any], where: str) -> CheckpointQuant:
    groups = q.get("config_groups")
    if not isinstance(groups, Mapping) or not groups:
        raise InputError(f"{where}: compressed-tensors quantization_config without 'config_groups'")
    g = next(iter(groups.values()))
    wspec = g.get("weights") or {}
    w = _ct_format(wspec, where)
    if w is None:
        raise InputError(f"{where}: config group has no quantised 'weights'")
    a = _ct_format(g.get("input_activations"), where) or "bf16"
    strategy = wspec.get("strategy", "group" if wspec.get("group_size") else "tensor")
    if strategy == "block":
        block = wspec.get("block_structure") or [128, 128]
        group = int(block[0]) * int(block[1])
    else:
        group = int(wspec.get("group_size") or 0) if strategy == "group" else 0
    # fp4 scales are fp8 (NVFP4) / e8m0; int and fp8 scales are 16/32-bit (compressed-tensors stores bf16/fp32).
    scale = 1.0 if w == "fp4" else 2.0
    kv = _kv(q.get("kv_cache_scheme"), where)
    return CheckpointQuant(_q(w, a, group, scale, kv), f"compressed-tensors {w} {strategy}", where, kv is not None)


def _fp8(q: Mapping[str, Any], where: str) -> CheckpointQuant:
    block = q.get("weight_block_size")
    ue8m0 = q.get("scale_fmt") == "ue8m0"
    if block:
        group = int(block[0]) * int(block[1])
        name = f"FP8 block {block[0]}x{block[1]}" + (" (UE8M0 scales)" if ue8m0 else "")
    else:
        group, name = 0, "FP8 per-tensor"
    return CheckpointQuant(_q("fp8", "fp8", group, 1.0 if ue8m0 else 4.0, None), name, where)


def _int4(q: Mapping[str, Any], where: str, method: str) -> CheckpointQuant:
    bits = q.get("bits", q.get("w_bit", 4))
    if bits not in (4, 8):
        raise InputError(f"{where}: {method} bits={bits!r} is not supported (4 or 8)")
    size = q.get("group_size", q.get("q_group_size", 128))
    group = 0 if size in (None, -1) else int(size)
    # fp16 scale per group, plus a packed 4-bit zero point when asymmetric (AWQ always; GPTQ unless sym)
    zero = method == "awq" or not q.get("sym", True)
    return CheckpointQuant(_q("int4" if bits == 4 else "int8", "bf16", group, 2.0 + (0.5 if zero else 0.0), None),
                           f"{method.upper()} int{bits} group {group or 'per-channel'}", where)


def quant_from_configs(config: Mapping[str, Any], side: Mapping[str, Any] | None = None,
                       where: str = "config") -> CheckpointQuant | None:
    """The checkpoint format of a config.json dict and its optional hf_quant_config.json dict (which wins: it is
    what TensorRT-LLM and vLLM read for ModelOpt checkpoints); None for an unquantised checkpoint."""
    if side is not None:
        q = side.get("quantization", side)
        if isinstance(q, Mapping) and q.get("quant_algo"):
            return _modelopt(q, where)
    q = config.get("quantization_config")
    if not isinstance(q, Mapping):
        text = config.get("text_config")
        q = text.get("quantization_config") if isinstance(text, Mapping) else None
    if not isinstance(q, Mapping):
        return None
    method = str(q.get("quant_method", "")).lower()
    if method == "fp8" and not q.get("quant_algo"):
        return _fp8(q, where)
    if method == "mxfp4":
        # gpt-oss: MoE weights MXFP4, activations bf16 (OpenAI gpt-oss model card, "MXFP4 quantization")
        return CheckpointQuant(_q("fp4", "bf16", 32, 1.0, None), "MXFP4", where)
    if method in ("awq", "gptq"):
        return _int4(q, where, method)
    if q.get("quant_algo"):
        return _modelopt(q, where)
    if method == "compressed-tensors" or "config_groups" in q:
        return _compressed_tensors(q, where)
    raise InputError(
        f"{where}: quantization_config quant_method={method!r} is not supported; known: fp8, mxfp4, awq, gptq, "
        f"modelopt, compressed-tensors (pass --weight-dtype to describe the weights instead)")


def side_file_for(config_path: Path) -> Path | None:
    """The hf_quant_config.json beside a config: `hf_quant_config.json` in a checkpoint directory, or
    `<stem>hf_quant_config.json` for a `<stem>config.json` file (the data's `org--name_config.json` naming)."""
    if config_path.name == "config.json":
        p = config_path.with_name("hf_quant_config.json")
    elif config_path.name.endswith("config.json"):
        p = config_path.with_name(config_path.name.removesuffix("config.json") + "hf_quant_config.json")
    else:
        return None
    return p if p.is_file() else None


def checkpoint_quant_of_file(config_path: Path, config: Mapping[str, Any]) -> CheckpointQuant | None:
    """quant_from_configs of a config file already read and its side file, if there is one."""
    side_path = side_file_for(config_path)
    side = None
    where = str(config_path)
    if side_path is not None:
        side = load_json_file(side_path, what="quantisation side file")
        where = f"{config_path} + {side_path.name}"
    return quant_from_configs(config, side, where)


__all__ = ["FP8_BLOCK_GROUP", "CheckpointQuant", "checkpoint_quant_of_file", "quant_from_configs", "side_file_for"]
