"""Kernel: one GPU kernel of a forward pass with its FLOPs and bytes split LLM-Viewer style."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

KernelKind = Literal["gemm", "attn_prefill", "attn_decode", "elementwise", "comm", "pp_comm", "sampling"]


@dataclass(frozen=True, slots=True)
class Kernel:
    """Per-invocation work of one kernel; `count` invocations per step (e.g. once per layer on this GPU).

    Bytes are split into weight, activation and KV-cache reads and writes (LLM-Viewer, Yuan et al. 2024,
    arXiv 2402.16363), which is what shows *why* decode is memory-bound. For a GEMM, (m, n, k) is the problem
    shape (activation [m, k] x weight [k, n]); `comm_bytes` and `comm_gpus` describe a collective.
    """

    name: str
    kind: KernelKind
    dtype: str
    flops: float = 0.0
    weight_bytes: float = 0.0
    act_read_bytes: float = 0.0
    act_write_bytes: float = 0.0
    kv_read_bytes: float = 0.0
    kv_write_bytes: float = 0.0
    count: int = 1
    m: int = 0
    n: int = 0
    k: int = 0
    comm_bytes: float = 0.0
    comm_gpus: int = 1
    dequant_flops: float = 0.0  # extra vector work of weight-only or KV dequantization
    # attention only: query-key scores (pairs x query heads on this GPU), query heads, sliding window (0 = full);
    # what the cost model needs for per-score softmax work and tile padding at the causal/window edges
    scores: float = 0.0
    heads: int = 0
    window: int = 0
    # replayed inside a CUDA graph (no per-call host dispatch): the framework all-reduce's comm_floor_s, a host
    # dispatch cost, does not apply (AIConfigurator's vLLM/SGLang tables time both modes: 5 vs 44 us on A100)
    graphed: bool = False
    kv_dtype: str = ""  # attention only: the KV-cache dtype ("" = the kernel dtype)

    @property
    def bytes(self) -> float:
        return (
            self.weight_bytes
            + self.act_read_bytes
            + self.act_write_bytes
            + self.kv_read_bytes
            + self.kv_write_bytes
        )

    @property
    def arithmetic_intensity(self) -> float:
        b = self.bytes
        return self.flops / b if b > 0 else float("inf")
