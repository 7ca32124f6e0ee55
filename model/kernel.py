"""Kernel: one GPU kernel of a forward pass with its FLOPs and bytes split LLM-Viewer style, typed by its op kind.

The cost model dispatches on `Kernel.op` (what the kernel computes), never on `Kernel.name` (a display label).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

# What a kernel computes; the cost model picks its roofline terms from this (model.cost.kernel_cost).
OpKind = Literal[
    "gemm",  # [m,k] x [k,n] matmul (projections, MLP, experts, LM head)
    "attn_prefill",  # causal attention of new tokens over themselves and cached context
    "attn_decode",  # attention of decode query tokens over the KV cache
    "embedding",  # token-embedding gather
    "norm",  # RMSNorm / LayerNorm (calibration: elementwise_norm_*)
    "activation",  # gated MLP activation, SiLU*mul / GELU (elementwise_act_*)
    "rope",  # rotary position embedding (elementwise_rope_*)
    "residual",  # residual add
    "elementwise",  # any other elementwise kernel (softmax, STREAM copy/scale/add)
    "sampling",  # logits softmax + sampling
    "allreduce",  # the serving framework's TP all-reduce (custom one-/two-shot kernels: comm_* fields)
    "nccl_allreduce",  # NCCL's all-reduce (nccl_* fields)
    "all_gather",
    "reduce_scatter",
    "all_to_all",
    "send_recv",  # point-to-point hand-off between pipeline stages
]
# The coarse roofline class of an op (reported as Kernel.kind: estimate output, validation reports).
KernelKind = Literal["gemm", "attn_prefill", "attn_decode", "elementwise", "comm", "pp_comm", "sampling"]
OP_KIND: dict[str, KernelKind] = {
    "gemm": "gemm", "attn_prefill": "attn_prefill", "attn_decode": "attn_decode",
    **{op: "elementwise" for op in ("embedding", "norm", "activation", "rope", "residual", "elementwise")},
    "sampling": "sampling",
    **{op: "comm" for op in ("allreduce", "nccl_allreduce", "all_gather", "reduce_scatter", "all_to_all")},
    "send_recv": "pp_comm",
}
ALLREDUCE_OPS = frozenset({"allreduce", "nccl_allreduce"})


@dataclass(frozen=True, slots=True)
class Kernel:
    """Per-invocation work of one kernel; `count` invocations per step (e.g. once per layer on this GPU).

    Bytes are split into weight, activation and KV-cache reads and writes (LLM-Viewer, Yuan et al. 2024,
    arXiv 2402.16363), which is what shows *why* decode is memory-bound. For a GEMM, (m, n, k) is the problem
    shape (activation [m, k] x weight [k, n]); `comm_bytes` and `comm_gpus` describe a collective.
    """

    name: str  # display label only
    op: OpKind
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
    # decode attention only: absorbed MLA, every query head against the one shared latent (kv_lora + rope) head; the
    # engines run it on tensor cores as a small GEMM per sequence (FlashMLA, TensorRT-LLM's XQA MLA kernels,
    # FlashInfer MLA), not as the CUDA-core GQA decode path of large head groups (model.cost.decode_compute_efficiency)
    latent: bool = False
    # a microbenchmark call timed alone and launched eagerly (no CUDA graph): it cannot finish before the host has
    # dispatched it, so a GEMM takes at least Calibration.gemm_eager_floor_s (AIConfigurator's vLLM fp8_block GEMM
    # rows). Simulated steps never set it: their host time is the step overheads, overlapped with the GPU's work.
    timed_eager: bool = False
    # a microbenchmark call replayed with all its operands resident in L2 (AIConfigurator's TRT-LLM GEMM collector
    # rotates min(5, ceil(L2 / weight bytes)) weight copies against one input): it reads at L2 bandwidth
    # (Calibration.gemm_l2_bytes_per_clk). Simulated steps never set it: each layer streams its own weights.
    l2_warm: bool = False
    # prefill attention run by the serving engine's Triton fallback kernel (SGLang's and vLLM's `triton` attention
    # backends, taken where the native FlashAttention / FlashInfer kernel lacks the head dim, window or sink): it
    # runs at its own rate per SM clock (Calibration.attn_prefill_triton_flops_per_clk[_fp8]), not at a share of
    # the tensor peak
    triton: bool = False
    # decode attention on FlashAttention-2's path without the GQA swap (model.cost.decode_work): every query head
    # gets its own thread block with the one query row padded to a whole tile, and the KV is not split. FA2's
    # varlen forward packs a GQA group's query heads into the tile's rows (`seqlenq_ngroups_swapped`), and only
    # that branch sets up split-KV, when num_heads > num_kv_heads and there is no sliding window (flash_api.cpp),
    # so vLLM's FA2 backend runs windowed and MHA decode unpacked
    gqa_unpacked: bool = False
    # a fused-MoE expert GEMM (routed rows over the active experts' weight sets; not a batched matmul): its fixed cost is
    # Calibration.gemm_grouped_overhead_s and weight-only dequantisation runs once per row tile
    moe_expert: bool = False
    # a GEMM whose kernel is built on warp-level mma.sync (Marlin and the Marlin MoE experts): on a GPU with
    # warpgroup MMA it reaches only model.cost.WARP_MMA_PEAK_FRACTION of the tensor peak (model.cost.gemm_kernel_peak)
    warp_mma: bool = False
    # a GEMM whose kernel gives each output tile one CTA that walks the whole K (CUTLASS scaled-mm kernels with the
    # default data-parallel tile scheduler, as vLLM's and SGLang's per-tensor fp8 linears call): it never splits K
    # to fill idle SMs as cuBLAS does (model.cost.gemm_shape_efficiency). Set where the kernel is known (validation
    # rows of a named engine); simulated steps leave it to the dtype (model.cost.NO_SPLITK_DTYPES)
    no_splitk: bool = False

    def __post_init__(self) -> None:
        if self.op not in OP_KIND:
            raise ValueError(f"kernel {self.name!r}: op={self.op!r} is not one of {sorted(OP_KIND)}")

    @property
    def kind(self) -> KernelKind:
        """The op's roofline class (gemm, attn_prefill, attn_decode, elementwise, comm, pp_comm, sampling)."""
        return OP_KIND[self.op]

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
