"""The one mapping from a weight dtype (as users name it) to a QuantSpec, the dtype choices derived from
QuantSpec's own Literal fields, and `resolve_quant`: a checkpoint's own format unless flags override it."""

from __future__ import annotations

from typing import get_args

from roofsim.hardware_specs.spec import HardwareSpec
from roofsim.model.checkpoint_quant import CheckpointQuant
from roofsim.model.spec import QuantSpec

WEIGHT_DTYPES: tuple[str, ...] = get_args(QuantSpec.model_fields["weight_dtype"].annotation)
ACTIVATION_DTYPES: tuple[str, ...] = get_args(QuantSpec.model_fields["activation_dtype"].annotation)
KV_DTYPES: tuple[str, ...] = get_args(QuantSpec.model_fields["kv_dtype"].annotation)

# Weight dtype -> GEMM input dtype: fp8 weights run W8A8 fp8 (vLLM/TRT-LLM fp8 checkpoints), fp4 runs W4A4
# (NVFP4/MXFP4), 16/32-bit weights keep their dtype; int8/int4 are weight-only (GPTQ/AWQ) with bf16 activations.
_ACTIVATION_FOR = {"fp8": "fp8", "fp4": "fp4", "fp32": "fp32", "fp16": "fp16"}
_WIDE = ("bf16", "fp16", "fp32")


def quant_for(weight_dtype: str, kv_dtype: str = "auto", hardware: HardwareSpec | None = None, *,
              activation_dtype: str = "auto", group_size: int | None = None) -> QuantSpec:
    """The QuantSpec meant by a weight dtype. 'auto' weights = bf16, or fp32 on `hardware` without bf16 (as the
    numpy engine of `roofsim measure` runs); 'auto' activations follow the weights (see _ACTIVATION_FOR); 'auto'
    KV = the activation dtype when it is 16/32-bit, else bf16. Group size: NVFP4 blocks of 16 for fp4, else 128;
    scales are 8-bit for fp4 (NVFP4/MXFP4), fp16 otherwise (GPTQ/AWQ). With `hardware`, 'auto' activations the
    GPU cannot compute in (fp4 before Blackwell, fp8 before Hopper) become 16-bit: weight-only (see
    _native_activation)."""
    wd = weight_dtype
    if wd == "auto":
        if hardware is None:
            raise ValueError("weight_dtype='auto' needs the hardware (bf16 if it has bf16, else fp32)")
        wd = "bf16" if hardware.supports("bf16") else "fp32"
    for name, value, valid in (("weight_dtype", wd, WEIGHT_DTYPES),
                               ("activation_dtype", activation_dtype, ("auto", *ACTIVATION_DTYPES)),
                               ("kv_dtype", kv_dtype, ("auto", *KV_DTYPES))):
        if value not in valid:
            raise ValueError(f"{name}={value!r} is not one of {', '.join(valid)}")
    act = _ACTIVATION_FOR.get(wd, "bf16") if activation_dtype == "auto" else activation_dtype
    if activation_dtype == "auto" and hardware is not None:
        act = _native_activation(act, hardware)
    kv = (act if act in _WIDE else "bf16") if kv_dtype == "auto" else kv_dtype
    fp4 = wd == "fp4"
    group = group_size if group_size is not None else (16 if fp4 else 128)
    return QuantSpec(weight_dtype=wd, activation_dtype=act, kv_dtype=kv, group_size=group,  # type: ignore[arg-type]
                     scale_bytes=1.0 if fp4 else 2.0)


def _native_activation(act: str, hardware: HardwareSpec) -> str:
    """`act`, or the 16-bit dtype when `hardware` has no tensor-core path for it: the engines then run the low-bit
    weights through dequantising kernels with 16-bit math (vLLM Marlin FP8/FP4 on Ampere/Hopper, triton_kernels
    MXFP4 MoE for gpt-oss on Hopper; vLLM docs "Quantization: supported hardware")."""
    if act in ("fp8", "fp4", "int8") and not hardware.supports(act):
        return "bf16" if hardware.supports("bf16") else "fp16"
    return act


def resolve_quant(checkpoint: CheckpointQuant | None, weight_dtype: str | None = None, kv_dtype: str = "auto",
                  hardware: HardwareSpec | None = None, *, activation_dtype: str = "auto",
                  group_size: int | None = None) -> tuple[QuantSpec, list[str]]:
    """The QuantSpec a deployment runs in and notes saying where it came from (for stderr / the result).

    No `weight_dtype`: the checkpoint's format (bf16 for an unquantised one, via quant_for 'auto' when `hardware`
    is given); a `weight_dtype`, `activation_dtype`, `kv_dtype` or `group_size` given explicitly overrides the
    checkpoint's and a note says so. With `hardware`, activations it cannot compute in fall back to 16-bit
    (weight-only dequantising kernels), noted too."""
    notes: list[str] = []
    if checkpoint is None or weight_dtype is not None:
        wd = weight_dtype or ("auto" if hardware is not None else "bf16")
        q = quant_for(wd, kv_dtype, hardware, activation_dtype=activation_dtype, group_size=group_size)
        if checkpoint is not None and (q.weight_dtype, q.activation_dtype) != (
                checkpoint.quant.weight_dtype, checkpoint.quant.activation_dtype):
            notes.append(f"--weight-dtype {weight_dtype} overrides the checkpoint's {checkpoint.scheme} "
                         f"({checkpoint.source})")
    else:
        q = checkpoint.quant
        notes.append(f"{checkpoint.scheme} from the checkpoint ({checkpoint.source}): weights {q.weight_dtype}, "
                     f"activations {q.activation_dtype}, KV {q.kv_dtype}")
        changes: dict[str, object] = {}
        for field, value in (("activation_dtype", activation_dtype), ("kv_dtype", kv_dtype)):
            if value != "auto" and value != getattr(q, field):
                changes[field] = value
                notes.append(f"--{field.replace('_', '-')} {value} overrides the checkpoint's {getattr(q, field)}")
        if group_size is not None and group_size != q.group_size:
            changes["group_size"] = group_size
            notes.append(f"--group-size {group_size} overrides the checkpoint's {q.group_size}")
        if changes:
            q = QuantSpec(**{**q.model_dump(), **changes})
        if hardware is not None and activation_dtype == "auto":
            act = _native_activation(q.activation_dtype, hardware)
            if act != q.activation_dtype:
                kv = q.kv_dtype if kv_dtype != "auto" or checkpoint.kv_stated else act
                q = QuantSpec(**{**q.model_dump(), "activation_dtype": act, "kv_dtype": kv})
    if hardware is not None and q.weight_only and q.weight_dtype in ("fp8", "fp4") \
            and not hardware.supports(q.weight_dtype):
        notes.append(f"{hardware.name} has no {q.weight_dtype} tensor cores: {q.weight_dtype} weights run "
                     f"weight-only, dequantised to {q.activation_dtype} in the GEMM")
    return q, notes


__all__ = ["ACTIVATION_DTYPES", "KV_DTYPES", "WEIGHT_DTYPES", "quant_for", "resolve_quant"]
