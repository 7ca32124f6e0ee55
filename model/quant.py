"""The one mapping from a weight dtype (as users name it) to a QuantSpec, and the dtype choices derived from
QuantSpec's own Literal fields."""

from __future__ import annotations

from typing import get_args

from roofsim.hardware_specs.spec import HardwareSpec
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
    scales are 8-bit for fp4 (NVFP4/MXFP4), fp16 otherwise (GPTQ/AWQ)."""
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
    kv = (act if act in _WIDE else "bf16") if kv_dtype == "auto" else kv_dtype
    fp4 = wd == "fp4"
    group = group_size if group_size is not None else (16 if fp4 else 128)
    return QuantSpec(weight_dtype=wd, activation_dtype=act, kv_dtype=kv, group_size=group,  # type: ignore[arg-type]
                     scale_bytes=1.0 if fp4 else 2.0)


__all__ = ["ACTIVATION_DTYPES", "KV_DTYPES", "WEIGHT_DTYPES", "quant_for"]
