"""The accelerator descriptor: a frozen pydantic model holding datasheet numbers in SI units, each with a source."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, PositiveInt, model_validator

DType = Literal["fp32", "tf32", "bf16", "fp16", "fp8", "int8", "int4", "fp4"]
DTYPES: tuple[str, ...] = ("fp32", "tf32", "bf16", "fp16", "fp8", "int8", "int4", "fp4")
# Bytes per element of each dtype (int4/fp4 pack two per byte).
DTYPE_BYTES: dict[str, float] = {
    "fp32": 4.0,
    "tf32": 4.0,
    "bf16": 2.0,
    "fp16": 2.0,
    "fp8": 1.0,
    "int8": 1.0,
    "int4": 0.5,
    "fp4": 0.5,
}


# A datasheet number: finite and > 0 (`inf` or `nan` in a hardware file would silently make a kernel free).
PositiveFloat = Annotated[float, Field(gt=0, allow_inf_nan=False)]


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class PeakFlops(_Frozen):
    """Dense (no structured sparsity) peak tensor/vector throughput per dtype, FLOP/s (ops/s for int)."""

    fp32: PositiveFloat
    tf32: PositiveFloat | None = None
    bf16: PositiveFloat | None = None
    fp16: PositiveFloat | None = None
    fp8: PositiveFloat | None = None
    int8: PositiveFloat | None = None
    int4: PositiveFloat | None = None
    fp4: PositiveFloat | None = None

    def get(self, dtype: str) -> float | None:
        if dtype not in DTYPES:
            raise ValueError(f"unknown dtype {dtype!r}; valid: {', '.join(DTYPES)}")
        value: float | None = getattr(self, dtype)
        return value


class MemorySpec(_Frozen):
    capacity_bytes: PositiveFloat = Field(description="device memory, bytes (the capacity the driver reports (nvidia-smi MiB x 2**20; docs/hardware.md))")
    bandwidth_bytes_per_s: PositiveFloat = Field(description="peak device-memory bandwidth, bytes/s")
    l2_bytes: PositiveFloat = Field(description="last-level on-chip cache, bytes")


class ComputeSpec(_Frozen):
    num_units: PositiveInt = Field(description="SMs (NVIDIA), CUs (AMD), MMEs+TPCs (Gaudi) or cores (CPU)")
    clock_hz: PositiveFloat = Field(description="boost clock used for the peak numbers, Hz")


class InterconnectSpec(_Frozen):
    """Per-GPU scale-up link (NVLink/xGMI/RoCE) and host link. Bandwidths are per direction."""

    scaleup_bytes_per_s: float = Field(ge=0, allow_inf_nan=False, description="per-GPU, per-direction scale-up bandwidth; 0 if none")
    scaleup_latency_s: PositiveFloat = Field(description="one-hop latency of the scale-up fabric")
    scaleup_max_gpus: PositiveInt = Field(description="GPUs reachable over the scale-up fabric (node/domain)")
    pcie_bytes_per_s: PositiveFloat = Field(description="host link, per direction")
    scaleout_bytes_per_s: float = Field(ge=0, allow_inf_nan=False, description="per-GPU network bandwidth between nodes")
    scaleout_latency_s: PositiveFloat = 5e-6


class PowerSpec(_Frozen):
    tdp_w: PositiveFloat
    idle_w: PositiveFloat

    @model_validator(mode="after")
    def _idle_below_tdp(self) -> PowerSpec:
        if self.idle_w >= self.tdp_w:
            raise ValueError(f"idle_w={self.idle_w} must be below tdp_w={self.tdp_w}")
        return self


class Sources(_Frozen):
    """Where each group of numbers comes from (URLs or document names)."""

    compute: str
    memory: str
    interconnect: str
    power: str
    price: str


class HardwareSpec(_Frozen):
    id: str = Field(pattern=r"^[a-z0-9][a-z0-9.\-]*$")
    name: str
    vendor: str
    architecture: str = Field(description="architecture family, e.g. ampere, hopper, blackwell, cdna3, cpu")
    kind: Literal["gpu", "accelerator", "cpu"] = "gpu"
    aliases: tuple[str, ...] = ()
    peak_flops_per_s: PeakFlops
    memory: MemorySpec
    compute: ComputeSpec
    interconnect: InterconnectSpec
    power: PowerSpec
    price_usd_per_hour: PositiveFloat = Field(description="typical on-demand price of one device, USD/hour")
    sources: Sources
    notes: str = ""

    def peak(self, dtype: str) -> float:
        """Dense peak FLOP/s for `dtype`; ValueError if the silicon lacks it."""
        value = self.peak_flops_per_s.get(dtype)
        if value is None:
            have = [d for d in DTYPES if self.peak_flops_per_s.get(d) is not None]
            raise ValueError(
                f"hardware {self.id!r} has no {dtype} support; it supports: {', '.join(have)}"
            )
        return value

    def supports(self, dtype: str) -> bool:
        return self.peak_flops_per_s.get(dtype) is not None
