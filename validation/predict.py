"""Measured kernel row -> the equivalent roofsim Kernel -> predicted seconds, one row or a whole table (vectorised).

The shapes are turned into kernels with model.graph's own functions (gemm, elementwise, attention_kernels on a
one-layer ModelSpec), so every FLOP/byte formula stays in one place; `FeatureTable.seconds` re-evaluates
model.cost.kernel_cost in numpy for fast calibration and is tested equal to it row by row.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

import numpy as np

from roofsim.hardware_specs.catalog import load_hardware
from roofsim.hardware_specs.errors import RoofsimError
from roofsim.hardware_specs.spec import HardwareSpec
from roofsim.model.batch import BatchShape
from roofsim.model.checkpoint_quant import FP8_BLOCK_GROUP
from roofsim.model.cost import (
    COMM_REF_CLOCK_HZ,
    COMM_TERMS,
    PEAK_DTYPE,
    TRITON_MLA_FLOPS_PER_CLK,
    AttentionRates,
    Calibration,
    comm_terms,
    comm_time,
    decode_attention_time,
    decode_context,
    decode_work,
    gemm_clock_factor,
    gemm_dequant_flops,
    gemm_groups,
    gemm_is_stream,
    gemm_kernel_peak,
    gemm_quant_bytes,
    gemm_shape_efficiency,
    grouped_tile_m,
    kernel_cost,
    latent_nosplit_cycle_s,
    prefill_attention_peak,
    prefill_ctas,
    prefill_fill_util,
    prefill_memory_seconds,
    prefill_score_terms,
    tensor_power_factor,
    triton_mla_unit_s,
    warp_mma_only,
)
from roofsim.model.graph import (
    GraphContext,
    attention_kernels,
    elementwise,
    expert_load,
    gemm,
    graph_context,
    group_attention_kernels,
    layer_kernels,
    moe_kernels,
    prefill_window,
    with_backend,
)
from roofsim.model.kernel import ALLREDUCE_OPS, Kernel, OpKind
from roofsim.model.quant import ACTIVATION_DTYPES, KV_DTYPES
from roofsim.model.spec import MLASpec, ModelSpec, MoESpec, ParallelSpec, QuantSpec
from roofsim.validation.kernel_tables import KernelMeasurement

log = logging.getLogger(__name__)

__all__ = [
    "Unpredictable",
    "row_kernel",
    "row_kernels",
    "moe_module_kernels",
    "mla_kernels",
    "MLA_MODULE_KERNELS",
    "PREDICT_ONLY_OPS",
    "power_law_load",
    "power_law_rank0_tokens",
    "balanced_load",
    "predict_kernel",
    "why_unpredictable",
    "Prediction",
    "FeatureTable",
    "features",
    "predict_rows",
    "resolve_hardware",
    "pct_errors",
    "FIT_FIELDS",
    "PREDICTED_OPS",
]


class Unpredictable(ValueError):
    """A measured row that roofsim has no equivalent kernel for; the message is the reason."""


_ACT_DTYPES = ACTIVATION_DTYPES
_KV_DTYPES = KV_DTYPES

# op name -> how many (elements read, elements written, FLOPs per element) per tokens x hidden.
# Formulas follow model/graph.py: RMSNorm 4 FLOP/elem, LayerNorm 7, SiLU*mul and GELU 8 (linear_kernels,
# _mlp_linear); softmax: max, subtract, exp, sum, divide = 5 FLOP/elem (the same count the sampling kernel uses).
_ELEMENTWISE: dict[str, tuple[float, float, float]] = {
    "rmsnorm": (1.0, 1.0, 4.0),
    "layernorm": (1.0, 1.0, 7.0),
    "softmax": (1.0, 1.0, 5.0),
    "gelu": (1.0, 1.0, 8.0),
    "add": (2.0, 1.0, 1.0),  # residual add: two inputs, one output (graph.residual_add)
}
# the op kind of those rows (model.cost picks unfused passes / cache gain by it); others are plain "elementwise"
# (a standalone "add" row is a plain elementwise kernel: op kind "residual" is the op graph's add, which the engines
# fuse into the next norm, Calibration.elementwise_residual_fused)
_ELEMENTWISE_OP: dict[str, OpKind] = {"rmsnorm": "norm", "layernorm": "norm", "gelu": "activation"}
_COMM_OP: dict[str, OpKind] = {"allgather": "all_gather", "reducescatter": "reduce_scatter", "alltoall": "all_to_all"}
_COMM_OPS = ("allreduce", "allgather", "reducescatter", "alltoall", "send_recv")
PREDICTED_OPS: tuple[str, ...] = (
    "gemm", "attn_prefill", "attn_decode", "attn_qk_matmul", "attn_av_matmul", "embedding", "rope", "silu_mul",
    "moe", "mla_context", "mla_generation", "mla_context_module", "mla_generation_module", "mla_bmm", "quantize",
    *_ELEMENTWISE, *_COMM_OPS,
)
_REASONS = {
    "mlp": "fused MLP module rows are not predicted (compare the GEMM rows instead)",
    "moe_dispatch": "MoE all-to-all dispatch (DeepEP/NVLink kernels) is not modelled separately",
    "moe_combine": "MoE all-to-all combine (DeepEP/NVLink kernels) is not modelled separately",
    "attn_output_reshape": "KV/output reshape copies are folded into the attention kernel in roofsim",
    "attn_input_reshape": "KV/output reshape copies are folded into the attention kernel in roofsim",
}


def _need(row: KernelMeasurement, **fields: int | float) -> None:
    bad = [f"{k}={v}" for k, v in fields.items() if not v or v <= 0]
    if bad:
        raise Unpredictable(f"op {row.op!r} needs positive {', '.join(bad)}")


@lru_cache(maxsize=256)
def _ctx(act: str, kv: str, heads: int = 1, kv_heads: int = 1, head_dim: int = 1, window: int = 0) -> GraphContext:
    """A one-layer model whose attention has the row's head configuration (only attention fields matter)."""
    model = ModelSpec(
        name=f"probe-{heads}h{kv_heads}kv{head_dim}d",
        family="probe",
        vocab_size=1,
        hidden_size=heads * head_dim,
        num_layers=1,
        num_heads=heads,
        num_kv_heads=kv_heads,
        head_dim=head_dim,
        intermediate_size=1,
        sliding_window=window or None,
        num_sliding_layers=1 if window else 0,
        source="validation.predict probe (shape of a measured kernel row)",
    )
    # Weights are stored in the GEMM dtype: fp4 rows are NVFP4 W4A4 (one 8-bit scale per 16 weights, as
    # model.quant.quant_for), int8 rows SmoothQuant W8A8 (per-channel scales: group_size 0)
    fp4 = act == "fp4"
    quant = QuantSpec(weight_dtype=act, activation_dtype=act, kv_dtype=kv,  # type: ignore[arg-type]
                      group_size=16 if fp4 else 0 if act == "int8" else 128, scale_bytes=1.0 if fp4 else 2.0)
    return graph_context(model, quant, ParallelSpec())


@lru_cache(maxsize=8)
def _wo_ctx(weight_dtype: str) -> GraphContext:
    """A weight-only-quantized GEMM context (bf16 activations); group size 128 with fp16 scales (AWQ/GPTQ)."""
    model = ModelSpec(name="probe-wo", family="probe", vocab_size=1, hidden_size=1, num_layers=1, num_heads=1,
                      num_kv_heads=1, head_dim=1, intermediate_size=1, source="validation.predict probe")
    quant = QuantSpec(weight_dtype=weight_dtype, activation_dtype="bf16", kv_dtype="bf16")  # type: ignore[arg-type]
    return graph_context(model, quant, ParallelSpec())


def _dtypes(row: KernelMeasurement) -> tuple[str, str]:
    act = row.dtype
    if act not in _ACT_DTYPES:
        raise Unpredictable(f"dtype {act!r} is not a GEMM activation dtype roofsim models ({list(_ACT_DTYPES)})")
    kv = row.kv_dtype or (act if act in _KV_DTYPES else "bf16")
    if kv not in _KV_DTYPES:
        raise Unpredictable(f"kv_dtype {kv!r} is not a KV-cache dtype roofsim models ({list(_KV_DTYPES)})")
    return act, kv


def _attention(row: KernelMeasurement) -> Kernel:
    _need(row, batch=row.batch, num_heads=row.num_heads, num_kv_heads=row.num_kv_heads, head_dim=row.head_dim)
    if row.num_heads % row.num_kv_heads:
        raise Unpredictable(f"num_heads={row.num_heads} is not a multiple of num_kv_heads={row.num_kv_heads}")
    act, kv = _dtypes(row)
    backend = _row_backend(row)
    window = row.window if row.window and row.window > 0 else 0
    if row.op == "attn_prefill":
        window = prefill_window(backend, window)
    c = _ctx(act, kv, row.num_heads, row.num_kv_heads, row.head_dim, window)
    if row.op == "attn_prefill":
        _need(row, seq_len=row.seq_len)
        shape = BatchShape.build(prefill=[(row.seq_len, row.ctx_len)] * row.batch, window=window or None)
    else:  # one new token per sequence attending to ctx_len cached tokens (+ its own key)
        shape = BatchShape.build(decode_ctx=[row.ctx_len] * row.batch, window=window or None)
    (k,) = attention_kernels(c, shape)
    return with_backend(k, backend, window, row.num_heads, row.num_kv_heads)


def _row_backend(row: KernelMeasurement) -> str:
    """The kernel family (model.graph.attention_backend's names) the row was timed on, from its kernel source:
    the engine's Triton kernel (SGLang's extend kernel or vLLM's), vLLM's FA2, else none priced apart."""
    if row.op == "attn_prefill" and _triton_attention(row):
        return "triton_extend" if row.framework == "sglang" else "triton"
    return "flash_attn_2" if row.op == "attn_decode" and _fa2(row) else ""


def _fa2(row: KernelMeasurement) -> bool:
    """A row timed on vLLM's FlashAttention-2 backend (`kernel_source` vllm_flash_attn on Ampere, vllm_flash_attn_fa2
    on Ada and Blackwell workstation GPUs; FA3/FA4 on Hopper pack GQA with a window too)."""
    return row.framework == "vllm" and row.variant.split(";")[0].strip() in ("vllm_flash_attn", "vllm_flash_attn_fa2")


def _triton_attention(row: KernelMeasurement) -> bool:
    """A row timed on the engine's Triton attention kernel: AIConfigurator records the backend it ran in
    `kernel_source` (SGLang `triton`, vLLM `vllm_triton_attn`; the engines fall back to it per GPU and shape, e.g.
    SGLang for head dim 512 on Hopper and 64/192 on Ada, vLLM for head dim 192 with an fp8 KV cache on Ada and
    Blackwell workstation GPUs). SGLang's `extend_attention` kernel loops over every causal key tile and only
    masks the ones outside a sliding window (`SKIP_TILE`), so its rows cost the full causal pairs."""
    return "triton" in row.variant.split(";")[0]


def _timed_eager(row: KernelMeasurement) -> bool:
    """AIConfigurator's vLLM GEMM collector (collector/vllm/collect_gemm.py, since vLLM 0.19 data) times fp8_block
    without a CUDA graph (`use_cuda_graph=gemm_type != "fp8_block"`), one layer per call: each row is the slower of
    the GPU's work and the host's Python dispatch of RowParallelLinear.forward (model.cost.gemm_time floor)."""
    return row.source == "aiconfigurator" and row.framework == "vllm"


def _l2_warm(row: KernelMeasurement, k: Kernel) -> bool:
    """Whether AIConfigurator's GEMM collector finds the call's operands in L2 (Kernel.l2_warm): it replays a few
    copies of the layer in turn and times the mean call, so when all the copies, the input and the outputs fit in
    the GPU's L2 every call reads from L2. Copies per collector (ai-dynamo/aiconfigurator collector/):
    trtllm/collect_gemm.py min(5, ceil(L2 / weight bytes)) weight copies against one input; vllm/collect_gemm.py
    `outside_loop_count` 6 RowParallelLinear layers on one input (1 for fp8_block and nvfp4); sglang/
    collect_gemm.py 6 ops, each with its own input and weights."""
    if row.source != "aiconfigurator" or not k.weight_bytes:
        return False
    l2 = resolve_hardware(row.hardware).memory.l2_bytes
    act = k.act_read_bytes + k.act_write_bytes
    if row.framework == "trtllm":
        copies = max(1, min(5, math.ceil(l2 / k.weight_bytes)))
        return copies * k.weight_bytes + act <= l2
    if row.framework == "vllm":
        copies = 1 if k.dtype in ("fp8_block", "fp4") else 6
        return copies * (k.weight_bytes + k.act_write_bytes) + k.act_read_bytes <= l2
    if row.framework == "sglang":
        return 6 * (k.weight_bytes + act) <= l2
    return False


def _cutlass_scaled_mm(row: KernelMeasurement, act: str) -> bool:
    """Whether the row's per-tensor fp8 GEMM is a CUTLASS scaled-mm kernel that never splits K (Kernel.no_splitk):
    vLLM's CutlassFP8ScaledMMLinearKernel and SGLang's sgl_kernel fp8_scaled_mm (AIConfigurator `kernel_source`)
    build cutlass_3x_gemm with the default data-parallel tile scheduler, 64x64 to 128x128 output tiles by m (vLLM
    csrc/quantization/cutlass_w8a8/c3x/scaled_mm_sm90_fp8_dispatch.cuh); TensorRT-LLM's fp8 linear is a cuBLASLt
    call, which splits K."""
    return row.source == "aiconfigurator" and act == "fp8" and row.framework in ("vllm", "sglang")


def _gemm(row: KernelMeasurement) -> Kernel:
    _need(row, m=row.m, n=row.n, k=row.k)
    wo = re.search(r"\b(int8|int4|fp8|fp4)_wo\b|w4a16", row.variant)
    if wo or row.dtype in ("int4", "fp4") and "a16" in row.variant:
        # weight-only quantization: low-bit weights dequantized to 16-bit in the GEMM (graph.gemm dequant FLOPs)
        wdt = row.dtype if row.dtype in ("int8", "int4", "fp8", "fp4") else "int4"
        c = _wo_ctx(wdt)
        return gemm("gemm", row.m, row.n, row.k, c, 1)
    act, kv = _dtypes(row)
    c = _ctx(act, kv)
    if act == "fp8" and "fp8_block" in row.variant:
        # fp8 with per-block scales (DeepSeek-V3 recipe): same operands, its own peak efficiency
        # (model.cost.gemm_peak_efficiency), costed on the fp8 peak (model.cost.PEAK_DTYPE)
        g = gemm("gemm", row.m, row.n, row.k, c, 1, dtype="fp8_block")
        return dataclasses.replace(g, timed_eager=_timed_eager(row), l2_warm=_l2_warm(row, g))
    # Weights and activations are stored in the GEMM dtype (fp8 rows read fp8 operands and write 16-bit output;
    # graph.gemm keeps 16-bit activations between kernels, which is what a serving engine does).
    g = gemm("gemm", row.m, row.n, row.k, c, 1)
    return dataclasses.replace(g, l2_warm=_l2_warm(row, g), no_splitk=_cutlass_scaled_mm(row, act))


def _batched_matmul(row: KernelMeasurement) -> Kernel:
    """LLMCompass Q_mul_K / A_mul_V: batch*heads independent [s,d]x[d,ctx] (or [s,ctx]x[ctx,d]) matmuls,
    costed as one GEMM whose rows stack the batch and heads (same FLOPs, same tile count)."""
    _need(row, batch=row.batch, num_heads=row.num_heads, head_dim=row.head_dim, seq_len=row.seq_len,
          ctx_len=row.ctx_len)
    act, kv = _dtypes(row)
    c = _ctx(act, kv)
    bh = row.batch * row.num_heads
    n, k = (row.ctx_len, row.head_dim) if row.op == "attn_qk_matmul" else (row.head_dim, row.ctx_len)
    g = gemm(row.op, bh * row.seq_len, n, k, c, 1)
    # the "weight" operand (K or V) differs per batch x head: bh copies are read, not one
    return Kernel(name=g.name, op="gemm", dtype=g.dtype, flops=g.flops, weight_bytes=g.weight_bytes * bh,
                  act_read_bytes=g.act_read_bytes, act_write_bytes=g.act_write_bytes, m=g.m, n=g.n, k=g.k)


def _elementwise(row: KernelMeasurement) -> Kernel:
    act, kv = _dtypes(row)
    c = _ctx(act, kv)
    if row.op == "rope":
        _need(row, tokens=row.tokens, num_heads=row.num_heads, head_dim=row.head_dim)
        rot = row.tokens * (row.num_heads + row.num_kv_heads) * row.head_dim  # graph._attention_linear
        return elementwise("rope", rot, rot, 6, c, 1, op="rope")
    _need(row, tokens=row.tokens, hidden=row.hidden)
    t, h = row.tokens, row.hidden
    if row.op == "embedding":  # a gather of t rows of the table (graph.linear_kernels "embedding")
        return Kernel(name="embedding", op="embedding", dtype="fp32", weight_bytes=t * h * c.wb,
                      act_write_bytes=t * h * c.ab)
    if row.op == "silu_mul":  # gated MLP activation: reads gate and up halves, writes one (graph mlp_act)
        return elementwise("silu_mul", 2 * t * h, t * h, 8, c, 1, op="activation")
    rd, wr, fl = _ELEMENTWISE[row.op]
    # STREAM copy/scale/add rows (validation.local.measure) borrow the rmsnorm/add shapes; they are plain
    # elementwise kernels, so model.cost.elementwise_passes does not treat a copy as an unfused normalisation
    stream = row.variant.startswith("stream_")
    return elementwise(row.variant if stream else row.op, rd * t * h, wr * t * h, fl, c, 1,
                       weight_elems=h if row.op in ("rmsnorm", "layernorm") else 0.0,
                       op="elementwise" if stream else _ELEMENTWISE_OP.get(row.op, "elementwise"))


def _comm(row: KernelMeasurement) -> Kernel:
    _need(row, message_bytes=row.message_bytes, num_gpus=row.num_gpus)
    if row.op == "send_recv":
        return Kernel(name="send_recv", op="send_recv", dtype=row.dtype, comm_bytes=row.message_bytes, comm_gpus=2)
    if row.num_gpus < 2:
        raise Unpredictable(f"collective {row.op!r} on num_gpus={row.num_gpus} moves no data")
    # model.cost.comm_seconds: tp_allreduce -> ring all-reduce; any other comm kernel -> (n-1)/n of the bytes over
    # the link with n-1 latency steps, which is the ring all-gather / reduce-scatter / all-to-all cost
    # (Thakur et al. 2005); nccl-tests message_size is the full buffer (output of all-gather, input of
    # reduce-scatter), which is what that formula takes.
    # The frameworks' own all-reduce tables (custom one-shot/two-shot kernels) are the TP all-reduce of the graph;
    # nccl-tests and Vidur's torch.distributed rows are NCCL's.
    op: OpKind
    if row.op == "allreduce":
        op = "nccl_allreduce" if row.framework in ("nccl", "vidur", "llmcompass", "") else "allreduce"
        name = "tp_allreduce" if op == "allreduce" else op
    else:
        op, name = _COMM_OP[row.op], row.op
    # AIConfigurator's vLLM/SGLang all-reduce tables time each size both eagerly and replayed in a CUDA graph
    # (variant "..._graph; vllm_graph" / "..._eager"): only eager calls pay the host-dispatch floor
    # TRT-LLM's table (kernel source "TRTLLM") has no eager rows: its 3-4 us small messages (A100, H100) show no
    # host dispatch, so its calls are timed as replayed
    graphed = op == "allreduce" and bool(re.search(r"_graph\b|^TRTLLM\b", row.variant))
    return Kernel(name=name, op=op, dtype=row.dtype, comm_bytes=row.message_bytes, comm_gpus=row.num_gpus,
                  graphed=graphed)


# ------------------------------------------------------------------------------------------------ fused MoE
# AIConfigurator's moe_perf collectors (collector/{vllm,sglang,trtllm}/collect_moe*.py, aiconfigurator-core 0.12)
# time one GPU's fused-MoE call: vLLM/SGLang `fused_experts(hidden, w1, w2, topk_weights, topk_ids, expert_map)`,
# TensorRT-LLM's MoE module forward, on `num_tokens` tokens whose top-k ids were computed beforehand (routing logits
# are synthetic) and with the rank's own experts (num_experts / moe_ep_size, inter_size / moe_tp_size wide). The
# timed region is therefore the module of model.graph._moe_mlp without the router GEMM (ids precomputed), without
# shared experts (none in the module) and without the EP all-to-all (one process, no dispatch): the token gather
# into expert order, the grouped up(+gate) GEMM, the activation, the grouped down GEMM and the top-k sum back.
MOE_MODULE_KERNELS = frozenset({"moe_permute", "moe_up_gate", "moe_up", "moe_act", "moe_down", "moe_unpermute"})
# moe_dtype -> (weight, activation, group size, scale bytes): the recipe each collector builds.
#   fp8: per-tensor W8A8; fp8_block: 128x128 block scales (graph_context runs it as the fp8_block GEMM recipe);
#   int4_wo: Marlin W4A16, group 128, bf16 scales; w4a16_mxfp4: MXFP4 weights (group 32, e8m0 scales) on 16-bit
#   activations; nvfp4: W4A4, one fp8 scale per 16 weights (as model.quant.quant_for); w4afp8: TensorRT-LLM's
#   int4 group-128 weights with 16-bit scales on per-tensor fp8 activations (WInt4AFP8 MoE); w4a8_mxfp4_mxfp8:
#   MXFP4 weights (group 32, e8m0 scales) on MXFP8 activations, a Blackwell f8f6f4 MMA at the fp8 rate.
_MOE_QUANT: dict[str, tuple[str, str, int, float]] = {
    "bfloat16": ("bf16", "bf16", 128, 2.0), "float16": ("fp16", "fp16", 128, 2.0),
    "fp8": ("fp8", "fp8", 0, 2.0), "fp8_block": ("fp8", "fp8", FP8_BLOCK_GROUP, 2.0),
    "int4_wo": ("int4", "bf16", 128, 2.0), "w4a16_mxfp4": ("fp4", "bf16", 32, 1.0), "nvfp4": ("fp4", "fp4", 16, 1.0),
    "w4afp8": ("int4", "fp8", 128, 2.0), "w4a8_mxfp4_mxfp8": ("fp4", "fp8", 32, 1.0),
}


def _variant_field(variant: str, key: str) -> str:
    m = re.search(rf"\b{key}=([^;]+)", variant)
    return m.group(1).strip() if m else ""


@lru_cache(maxsize=512)
def _moe_ctx(hidden: int, inter: int, experts: int, topk: int, tp: int, ep: int, moe_dtype: str, gated: bool
             ) -> GraphContext:
    """A one-layer MoE model of the row's shape on a TP x EP layout whose expert shard is the row's (moe_tp =
    tp // ep in graph._moe_mlp, so tp = moe_tp x moe_ep); attention fields are placeholders the module never uses."""
    w, a, group, scale = _MOE_QUANT[moe_dtype]
    gpus = tp * ep
    model = ModelSpec(
        name=f"probe-moe-{hidden}h{inter}i{experts}e{topk}k", family="probe", vocab_size=1, hidden_size=hidden,
        num_layers=1, num_heads=gpus, num_kv_heads=gpus, head_dim=1, intermediate_size=inter, mlp_gated=gated,
        moe=MoESpec(num_experts=experts, top_k=topk, expert_intermediate_size=inter),
        source="validation.predict probe (shape of a measured fused-MoE row)")
    quant = QuantSpec(weight_dtype=w, activation_dtype=a, kv_dtype="bf16",  # type: ignore[arg-type]
                      group_size=group, scale_bytes=scale)
    return graph_context(model, quant, ParallelSpec(tp=gpus, ep=ep))


def power_law_load(tokens: int, experts: int, topk: int, ep: int, alpha: float, draws: int = 32,
                   generator: str = "round_robin") -> tuple[float, float]:
    """(distinct experts hit, rows routed) on the measured GPU under AIConfigurator's power-law routing, the mean
    over `draws` replays of its generator (collector helper `_generate_power_law_distribution`): tokens per expert
    drawn i.i.d. from p(x) ~ x^-alpha on [1, 0.8 tokens] ([0.01, 2] when tokens x topk <= experts), scaled to sum
    tokens x topk and rounded; the EP rank (block of experts/ep consecutive experts) with the most rows is swapped to
    rank 0, the rank timed. A token may draw the same expert twice (its rows are counts, not capped at `tokens`).
    This is a different law from the Zipf popularity of GraphContext.moe_skew, so the rows' own law is replayed."""
    rank0 = _power_law_rank0(tokens, experts, topk, ep, alpha, draws, generator)
    return float((rank0 > 0).sum(axis=1).mean()), float(rank0.sum(axis=1).mean())


def power_law_padded_rows(tokens: int, experts: int, topk: int, ep: int, alpha: float, tile: int,
                          draws: int = 32, generator: str = "round_robin") -> float:
    """Rows the grouped GEMMs compute on the timed rank under power-law routing when every expert's rows are
    padded to a multiple of `tile` (vLLM/SGLang moe_align_block_size pads each expert to BLOCK_SIZE_M; CUTLASS
    grouped GEMMs tile each expert's problem alike): the mean over the replays of sum ceil(rows_e / tile) x tile.
    Skewed routing leaves many experts a few rows each, so this exceeds the mean-rows padding."""
    rank0 = _power_law_rank0(tokens, experts, topk, ep, alpha, draws, generator)
    return float((np.ceil(rank0 / tile) * tile).sum(axis=1).mean())


def _power_law_rank0(tokens: int, experts: int, topk: int, ep: int, alpha: float, draws: int,
                     generator: str = "round_robin") -> np.ndarray:
    """Rows per expert of the timed EP rank, one line per replay of the collector's generator (power_law_load)."""
    return _power_law_counts(tokens, experts, topk, ep, alpha, draws, generator)[:, : experts // ep]


def power_law_rank0_tokens(tokens: int, experts: int, topk: int, ep: int, alpha: float, draws: int = 32,
                           generator: str = "round_robin") -> float:
    """Tokens with at least one top-k slot on the timed EP rank under power-law routing, the mean over the
    replays: the collector hands the experts to the tokens column by column (helper.py _assign_experts_from_counts:
    the experts sorted by count with np.argsort(-counts), each repeated by its count, reshaped (topk, tokens).T),
    so the entry at flat position p is a slot of token p mod tokens."""
    counts = _power_law_counts(tokens, experts, topk, ep, alpha, draws, generator).astype(np.int64)
    hit = []
    for c in counts:
        flat = np.repeat(np.argsort(-c), c[np.argsort(-c)])
        hit.append(len(np.unique(np.flatnonzero(flat < experts // ep) % tokens)))
    return float(np.mean(hit))


@lru_cache(maxsize=4096)
def _power_law_counts(tokens: int, experts: int, topk: int, ep: int, alpha: float, draws: int,
                      generator: str) -> np.ndarray:
    """Rows per expert (all experts, the busiest EP rank swapped to rank 0), one line per replay."""
    lo, hi = (1.0, 0.8 * tokens) if tokens * topk > experts else (0.01, 2.0)
    rng = np.random.default_rng(0)
    u = rng.random((draws, experts))
    b = 1.0 - alpha
    x = ((hi ** b - lo ** b) * u + lo ** b) ** (1.0 / b) if abs(b) > 1e-9 else lo * (hi / lo) ** u
    target = tokens * topk
    counts = np.round(x / x.sum(axis=1, keepdims=True) * target)
    per_rank = experts // ep
    for c in counts:
        if generator == "round_robin":
            _round_robin_fill(c.reshape(ep, per_rank), tokens, target)
        else:
            _sorted_fill(c, tokens if generator == "smallest_first" else math.inf, target,
                         smallest_first=generator == "smallest_first")
    blocks = counts.reshape(draws, ep, per_rank)
    busiest = blocks.sum(axis=2).argmax(axis=1)  # swapped with rank 0, the rank timed
    rank0 = blocks[:, 0].copy()
    blocks[:, 0] = blocks[np.arange(draws), busiest]
    blocks[np.arange(draws), busiest] = rank0
    return blocks.reshape(draws, experts)


def _sorted_fill(c: np.ndarray, cap: float, target: float, smallest_first: bool) -> None:
    """The pre-2026-04-19 generators (in place): the overflow above `cap` poured into the smallest experts in turn,
    then the missing rows one each over the experts from the smallest (else the largest) up, skipping full ones;
    a surplus taken one each from the smallest up (from the largest when the one reached is empty)."""
    # descending counts as torch.argsort(descending=True); the order of equal counts (the many zero experts of a
    # small batch) is its sort's, taken as index order (a stable sort; a random order: 0.3 points worse LOGO)
    order = np.argsort(-c, kind="stable")
    over = np.maximum(c - cap, 0.0).sum()
    np.minimum(c, cap, out=c)
    for i in order[::-1]:
        if over <= 0:
            break
        add = min(cap - c[i], over)
        c[i] += add
        over -= add
    delta = int(target - c.sum())
    walk = order[::-1] if smallest_first else order
    while delta > 0:
        room = walk[c[walk] < cap][:delta]
        c[room] += 1
        delta -= len(room)
    for i in range(-delta):
        j = order[-(i % len(c)) - 1]
        c[j if c[j] > 0 else int(np.argmax(c))] -= 1


def _round_robin_fill(c2: np.ndarray, cap: int, target: float) -> None:
    """The collector's _round_robin_adjust_per_rank (in place on the EP x experts-per-rank counts): rows over the
    cap, then the missing rows, handed out one per rank in rank order, each to the rank's least-loaded expert
    below the cap (first on ties); a surplus taken one per rank from its most-loaded non-empty expert."""
    over = int(np.maximum(c2 - cap, 0.0).sum())
    np.minimum(c2, cap, out=c2)
    _hand_out(c2, over, cap)
    delta = int(target - c2.sum())
    if delta > 0:
        _hand_out(c2, delta, cap)
    elif delta < 0:  # taking from the most loaded = levelling the negated counts up to 0
        for r, q in enumerate(_round_robin_quota(-delta, c2.sum(axis=1))):
            c2[r] = -_level_up(-c2[r], q, 0)


def _hand_out(c2: np.ndarray, n: int, cap: int) -> None:
    """n rows one per rank in turn, each to the rank's least-loaded expert below cap (in place)."""
    for r, q in enumerate(_round_robin_quota(n, (cap - c2).sum(axis=1))):
        c2[r] = _level_up(c2[r], q, cap)


def _largest_int(ok: Callable[[int], bool], lo: int, hi: int) -> int:
    """The largest integer in [lo, hi] where the monotone `ok` holds (ok(lo) holds)."""
    while lo < hi:
        mid = (lo + hi + 1) // 2
        lo, hi = (mid, hi) if ok(mid) else (lo, mid - 1)
    return lo


def _round_robin_quota(n: int, room: np.ndarray) -> np.ndarray:
    """Units each rank receives when n are handed out one per rank per round, in rank order, to ranks with room."""
    rounds = _largest_int(lambda k: np.minimum(room, k).sum() <= n, 0, int(room.max()))
    quota = np.minimum(room, rounds)
    quota[np.flatnonzero(room > rounds)[: n - int(quota.sum())]] += 1
    return quota.astype(int)


def _level_up(v: np.ndarray, q: int, cap: float) -> np.ndarray:
    """v after q steps of +1 to its smallest entry below cap (the first on ties): the low entries levelled up."""
    if q <= 0:
        return v
    level = _largest_int(lambda lv: np.maximum(lv - v, 0.0).sum() <= q, int(v.min()), int(cap))
    out = np.maximum(v, level)
    left = q - int((out - v).sum())
    out[np.flatnonzero(out == level)[:left]] += 1
    return out


# AIConfigurator's power-law routing generator changed twice; each table was collected with the code of its day
# (ai-dynamo/aiconfigurator git history of the collectors, first commit of each table's data file):
#   "largest_first": the missing rows go one each to the largest experts, no cap (collector/trtllm/collect_moe.py
#     @ e46d908, helper.py @ 6996779); tables added before 2026-02-10;
#   "smallest_first": each expert capped at `tokens`, the overflow and the missing rows go to the smallest experts
#     first (helper.py @ 2b97693, 2026-02-10); tables added 2026-02-10 .. 04-18;
#   "round_robin": capped, the overflow and missing rows handed out one per EP rank in turn, each to its rank's
#     least-loaded expert (first index on ties), surplus taken from its most-loaded (helper.py
#     _round_robin_adjust_per_rank @ 13dadba, 2026-04-19, unchanged through 095f58a); every later table.
# Keyed by the table's <system>/<framework>/<version>; tables not named are "round_robin" (the current code).
_POWER_LAW_GENERATOR: dict[str, str] = {
    "a100_sxm/trtllm/1.0.0": "largest_first",  # added 2025-10-13 (e46d908)
    "l40s/trtllm/1.0.0": "largest_first",  # 2025-11-07 (3de8825)
    "h100_sxm/sglang/0.5.6.post2": "largest_first",  # 2025-12-22 (6996779)
    "a100_sxm/vllm/0.14.0": "smallest_first",  # 2026-02-19 (d1f7bf2)
    "h100_sxm/trtllm/1.3.0rc10": "smallest_first",  # 2026-04-18 (89995c0)
}


def _generator_of(row: KernelMeasurement) -> str:
    """Which power-law generator version a row's table was collected with (_POWER_LAW_GENERATOR)."""
    m = re.search(r"([^/]+)/moe/([^/]+)/([^/]+)/[^/]+$", row.file.replace("\\", "/"))
    return _POWER_LAW_GENERATOR.get("/".join(m.groups()), "round_robin") if m else "round_robin"


@lru_cache(maxsize=4096)
def balanced_load(tokens: int, experts: int, topk: int, ep: int) -> tuple[float, float, float]:
    """(distinct experts hit, rows routed, tokens with a slot) on EP rank 0 (experts [0, experts/ep)) under
    AIConfigurator's balanced routing (collector helper.py balanced_logits): token i takes experts
    (i + j s) mod E, s = ceil(E/topk), j < topk, and with fewer tokens than s the tokens spread over the stride,
    floor((i s / tokens + j s) mod E). One token on EP 64 still puts a row on rank 0, where the uniform
    expectation (graph.expert_load) gives it topk/ep = 0.125."""
    stride = math.ceil(experts / topk)
    i, j = np.arange(tokens)[:, None], np.arange(topk)[None, :]
    ids = (i + j * stride) % experts if tokens >= stride else np.floor((i * stride / tokens + j * stride) % experts)
    local = ids < experts // ep
    return float(len(np.unique(ids[local]))), float(local.sum()), float(local.any(axis=1).sum())


def _moe_load(row: KernelMeasurement) -> tuple[float, float] | None:
    """The routing the row was measured under: None = uniform (graph.expert_load), else the balanced or power-law
    replay (distinct experts hit, rows routed on the timed rank)."""
    dist = _variant_field(row.variant, "distribution")
    if dist == "uniform":
        return None
    if dist == "balanced":
        return balanced_load(row.tokens, row.num_experts, row.topk, row.ep)[:2]
    m = re.fullmatch(r"power_law_([0-9.]+)", dist)
    if not m:
        raise Unpredictable(f"MoE routing distribution {dist!r} is not mapped (balanced, uniform, power_law_<alpha>;"
                            f" EPLB-rebalanced *_eplb rows need the replica placement)")
    return power_law_load(row.tokens, row.num_experts, row.topk, row.ep, float(m.group(1)),
                          generator=_generator_of(row))


def _slot_rows(row: KernelMeasurement, load: tuple[float, float] | None) -> float | None:
    """The (token, top-k slot) rows the module's buffers keep on the timed EP rank (graph._moe_mlp `slot_rows`),
    None when it keeps only its routed rows. vLLM's collector passes every token with the global top-k ids and
    vLLM's expert_map (collector/vllm/collect_moe.py: fused_experts(..., global_num_experts, expert_map)); SGLang's
    passes the tokens with at least one slot on rank 0, remote slots masked to -1 (collector/helper.py
    build_rank0_local_workload). Their Triton and Marlin experts keep the masked slots' rows (SGLang's computes
    them: moe_module_kernels); FlashInfer/CUTLASS
    (TensorRT-LLM's kernel) and the OpenAI Triton mxfp4 path gather only the local rows."""
    source = _kernel_source(row)
    if row.ep <= 1 or row.framework not in ("vllm", "sglang") or not re.search(r"triton|marlin|vllm_fused_moe",
                                                                               source) or "oaitriton" in source:
        return None
    slots = row.tokens * row.topk
    if row.framework == "vllm":
        return float(slots)
    dist = _variant_field(row.variant, "distribution")
    if dist == "balanced":
        return balanced_load(row.tokens, row.num_experts, row.topk, row.ep)[2] * row.topk
    if load is not None:  # power-law routing: the replayed assignment of experts to tokens
        alpha = float(_variant_field(row.variant, "distribution").removeprefix("power_law_"))
        return power_law_rank0_tokens(row.tokens, row.num_experts, row.topk, row.ep, alpha,
                                      generator=_generator_of(row)) * row.topk
    hit = 1.0 - (1.0 - 1.0 / row.ep) ** row.topk  # chance a token has a slot on rank 0
    return row.tokens * hit * row.topk


def moe_module_kernels(row: KernelMeasurement) -> tuple[Kernel, ...]:
    """The kernels of the fused-MoE module an AIConfigurator moe row times (MOE_MODULE_KERNELS), built by
    graph.moe_kernels on a one-layer model of the row's shape, dtype, TP x EP shard and routing distribution."""
    op_name = row.variant.split(";", 1)[0].strip()
    if op_name != "moe":
        raise Unpredictable(f"MoE op {op_name!r} is not the single-GPU 'moe' module, the only one mapped (the wide-EP "
                            f"tables time DeepEP dispatch or EPLB slots with per-rank token counts)")
    _need(row, tokens=row.tokens, hidden=row.hidden, n=row.n, num_experts=row.num_experts, topk=row.topk,
          tp=row.tp, ep=row.ep)
    raw = _variant_field(row.variant, "moe_dtype")
    if raw not in _MOE_QUANT:
        raise Unpredictable(f"moe_dtype {raw!r} has no QuantSpec mapping (mapped: {sorted(_MOE_QUANT)})")
    if row.num_experts % row.ep:
        raise Unpredictable(f"moe_ep_size={row.ep} does not divide num_experts={row.num_experts}")
    # Nemotron-3 style experts (TensorRT-LLM moe_torch_flow_nongated): up -> relu^2 -> down, no gate projection
    gated = "nongated" not in row.variant
    c = _moe_ctx(row.hidden, row.n, row.num_experts, row.topk, row.tp, row.ep, raw, gated)
    load = _moe_load(row)
    skewed = _variant_field(row.variant, "distribution").startswith("power_law")
    slots = _slot_rows(row, load)
    if slots and row.framework == "sglang":
        # SGLang's collector clamps the masked ids to 0 before its Triton / Marlin experts ("the fused_moe kernel
        # indexes weight tensors by expert ID without masking, so clamp -1 to 0; the zero weight still ensures no
        # contribution": collector/sglang/collect_moe.py run_op, ai-dynamo/aiconfigurator @ cb4d907 (the 0.5.10
        # tables) and e23be5a (0.5.14)): every slot of a rank-0 token is a computed row, the remote ones of local
        # expert 0 (whose weights a skewed rank reads anyway)
        active = load[0] if load is not None else expert_load(row.tokens, row.num_experts, row.topk, row.ep)[0]
        load, slots = (max(1.0, active), slots), None
    ks = tuple(k for k in moe_kernels(c, row.tokens, load, slots) if k.name in MOE_MODULE_KERNELS)
    assert all(k.count == 1 for k in ks)
    if skewed:
        ks = tuple(_padded_tiles(k, row) if k.moe_expert else k for k in ks)
    if _gathers_in_gemm(row):
        ks = tuple(k for k in ks if k.name != "moe_permute")
    if "marlin" in _kernel_source(row):  # Marlin experts issue mma.sync (model.cost.WARP_MMA_PEAK_FRACTION)
        ks = tuple(dataclasses.replace(k, warp_mma=True) if k.moe_expert else k for k in ks)
    return _moe_l2_warm(row, ks)


def _gathers_in_gemm(row: KernelMeasurement) -> bool:
    """vLLM's and SGLang's Triton and Marlin fused-MoE experts (and the OpenAI Triton MXFP4 matmul) read each
    routed row of the hidden states straight from its token inside the up GEMM (fused_moe_kernel's A pointers
    `offs_token // top_k`, vllm/model_executor/layers/fused_moe/fused_moe.py; Marlin MoE's sorted_token_ids;
    matmul_ogs gather_indx): the module runs no permute kernel. TensorRT-LLM's and FlashInfer's CUTLASS MoE copy
    the rows into expert order first (expandInputRowsKernel)."""
    source = _kernel_source(row)
    return row.framework in ("vllm", "sglang") and "flashinfer" not in source and bool(
        re.search(r"triton|marlin|vllm_fused_moe", source))


def _kernel_source(row: KernelMeasurement) -> str:
    """The collector's kernel source of a row (the variant's second field, e.g. 'sglang_marlin_moe')."""
    return row.variant.split(";")[1].strip() if ";" in row.variant else ""


_TILING = Calibration()  # the integer tiling every fit keeps (gemm_tile_m, gemm_grouped_min_tile_m)


def _padded_tiles(k: Kernel, row: KernelMeasurement) -> Kernel:
    """An expert GEMM under power-law routing as its row tiles: m = the row tile (from the mean rows per expert,
    model.cost.grouped_tile_m), FLOPs and per-tile dequantisation of the padded rows of every expert
    (power_law_padded_rows), so the tile count and padding follow the skewed per-expert rows, not their mean."""
    alpha = float(_variant_field(row.variant, "distribution").removeprefix("power_law_"))
    tile = grouped_tile_m(k.m, _TILING)
    padded = power_law_padded_rows(row.tokens, row.num_experts, row.topk, row.ep, alpha, tile,
                                   generator=_generator_of(row))
    routed = k.flops / (2.0 * k.n * k.k)
    if padded <= routed:
        return k
    scale = padded / routed
    tiles = padded / tile
    sets = k.dequant_flops / (2.0 * k.n * k.k)  # weight sets (active experts) of a weight-only GEMM
    return dataclasses.replace(k, m=tile, flops=k.flops * scale,
                               dequant_flops=k.dequant_flops * tiles / sets if k.dequant_flops else 0.0)


def _moe_l2_warm(row: KernelMeasurement, ks: tuple[Kernel, ...]) -> tuple[Kernel, ...]:
    """The module's GEMMs as Kernel.l2_warm when the expert weights they read and the largest activation fit in
    the GPU's L2 together: the collectors replay the call on the same weight tensors (benchmark_with_power, a CUDA
    graph when it captures), so every call after the first finds them in L2."""
    gemms = [k for k in ks if k.op == "gemm"]
    working = sum(k.weight_bytes for k in gemms) + max(k.act_read_bytes + k.act_write_bytes for k in ks)
    if working > resolve_hardware(row.hardware).memory.l2_bytes:
        return ks
    return tuple(dataclasses.replace(k, l2_warm=True) if k.op == "gemm" else k for k in ks)


# ------------------------------------------------------------------------------------------------ DeepSeek MLA
# Every AIConfigurator MLA collector builds DeepSeek-V3's attention (collector/trtllm/collect_mla.py `Scenario`,
# collector/sglang/collect_mla.py constants; the module collectors load deepseek-ai/DeepSeek-V3's config.json):
# hidden 7168, q_lora_rank 1536, kv_lora_rank 512, qk_nope 128, qk_rope 64, v_head_dim 128.
_DSV3_HIDDEN = 7168
_DSV3_MLA = MLASpec(q_lora_rank=1536, kv_lora_rank=512, qk_nope_head_dim=128, qk_rope_head_dim=64, v_head_dim=128)
# The module tables time the attention block of one decoder layer (collect_mla_module.py: DeepseekV3DecoderLayer's
# self_attn forward): the query/latent projections and their RMSNorms, RoPE, the attention over the cache and the
# output projection, i.e. graph._attention_linear's MLA kernels plus the attention kernel (decode: the absorbed
# W_UK / W_UV batched GEMMs have the FLOPs and weights of kv_b_proj, which stands for them).
MLA_MODULE_KERNELS = frozenset({"qkv_a_proj", "q_b_proj", "q_proj", "kv_a_proj", "q_a_norm", "kv_a_norm", "kv_b_proj",
                                "rope", "o_proj"})


@lru_cache(maxsize=256)
def _mla_ctx(heads: int, recipe: str, kv: str) -> GraphContext:
    """A one-layer DeepSeek-V3 MLA model with `heads` query heads on one GPU, projections in the `recipe` of
    _MOE_QUANT (bfloat16, fp8_block, nvfp4), the cache in `kv`."""
    w, a, group, scale = _MOE_QUANT[recipe]
    model = ModelSpec(
        name=f"probe-mla-{heads}h", family="probe", vocab_size=1, hidden_size=_DSV3_HIDDEN, num_layers=1,
        num_heads=heads, num_kv_heads=heads, head_dim=_DSV3_MLA.qk_nope_head_dim + _DSV3_MLA.qk_rope_head_dim,
        intermediate_size=1, mla=_DSV3_MLA, source="validation.predict probe (DeepSeek-V3 MLA, AIConfigurator row)")
    quant = QuantSpec(weight_dtype=w, activation_dtype=a, kv_dtype=kv,  # type: ignore[arg-type]
                      group_size=group, scale_bytes=scale)
    return graph_context(model, quant, ParallelSpec())


def _latent_prefill(row: KernelMeasurement) -> bool:
    """SGLang's bare MLA context collector feeds its default backend (FA3 on Hopper, Triton on Ada/Blackwell
    workstation parts) the absorbed form: every query head of kv_lora + rope = 576 wide against one latent KV head,
    values of kv_lora = 512 (collector/sglang/collect_mla.py run_mla: head_dim_total, num_kv_heads=1); only its
    trtllm_mla backend (SM100) runs the expanded 192/128 heads TensorRT-LLM's context kernel uses."""
    return row.op == "mla_context" and row.framework == "sglang" and not row.variant.startswith("trtllm_mla")


# SGLang's MLA token pool holds pages of 64 tokens plus one padding page (mem_cache/memory_pool.py
# MLATokenToKVPool: size + page_size slots); AIConfigurator's collector sizes it to the row's tokens rounded up
# to whole pages (collector/sglang/collect_mla.py run_mla: kv_cache_size, MLA_PAGE_SIZE = 64).
_SGLANG_MLA_PAGE = 64


def _fa3_pool_cast(row: KernelMeasurement) -> float:
    """Cache tokens SGLang's FA3 MLA path converts from fp8 to bf16 before its kernel, 0 when it converts none.
    Its absorbed-MLA branch (layers/attention/flashattention_backend.py forward_decode / forward_extend) reads the
    layer's whole KV pool as `get_key_buffer(layer_id).to(q.dtype)`: FA3 has no bf16-query x fp8-cache MLA kernel,
    so an fp8 cache costs one cast pass over every pool slot (read 1 byte, write 2 per element) and the kernel then
    reads the bf16 copy (sgl-project/sglang issue #35291; H100 rows: the fp8 - bf16 time grows with the pool
    tokens x 576 elements, not with the tokens attended)."""
    if row.framework != "sglang" or row.kv_dtype != "fp8" or row.variant.split(";")[0].strip() != "flash_attention":
        return 0.0
    tokens = row.batch * (row.seq_len + row.ctx_len)
    return max(1, math.ceil(tokens / _SGLANG_MLA_PAGE)) * _SGLANG_MLA_PAGE + _SGLANG_MLA_PAGE


def mla_kernels(row: KernelMeasurement) -> tuple[Kernel, ...]:
    """The kernels an AIConfigurator MLA row times, from graph's MLA model of DeepSeek-V3 with the row's heads:
    bare op = RoPE of the new tokens (TensorRT-LLM's MLA preprocessing / mla_rope_generation, SGLang's cache
    write) + the attention kernel (prefill: causal over isl new tokens after `step` cached; generation: one token
    over `step` cached, absorbed into the latent); module = those plus the projections (MLA_MODULE_KERNELS)."""
    _need(row, batch=row.batch, num_heads=row.num_heads, seq_len=row.seq_len)
    if row.kv_dtype not in ("bf16", "fp8"):
        raise Unpredictable(f"MLA kv_cache_dtype {row.kv_dtype!r} is not mapped (bf16, fp8)")
    module = row.op.endswith("_module")
    recipe = _variant_field(row.variant, "gemm_dtype") if module else "bfloat16"
    if recipe not in _MOE_QUANT:
        raise Unpredictable(f"MLA projection recipe {recipe!r} has no QuantSpec mapping (mapped: {sorted(_MOE_QUANT)})")
    pool = _fa3_pool_cast(row)
    c = _mla_ctx(row.num_heads, recipe, "bf16" if pool else row.kv_dtype)
    prefill = row.op.startswith("mla_context")
    shape = (BatchShape.build(prefill=[(row.seq_len, row.ctx_len)] * row.batch) if prefill
             else BatchShape.build(decode_ctx=[row.ctx_len] * row.batch))
    (g,) = c.attn
    if _latent_prefill(row):
        g = dataclasses.replace(g, qk_dim=g.dec_qk_dim, v_dim=g.dec_v_dim, q_width=g.heads * g.dec_qk_dim, kv_heads=1)
    names = MLA_MODULE_KERNELS if module else frozenset({"rope"})
    linear = [k for k in layer_kernels(c, row.batch * row.seq_len) if k.name in names]
    if module and row.framework == "vllm":
        linear = _vllm_mla_module(linear, c, row.batch * row.seq_len, prefill)
    attn = group_attention_kernels(c, g, shape)
    if not prefill and _triton_attention(row):
        # ... and its decode kernel, whose fixed SM time per (sequence, 16-head block) model.cost prices
        # (TRITON_MLA_UNIT_CYCLES; L40S / RTX PRO 6000 rows were under-predicted by 42 / 58 % as FlashMLA-like)
        # (the graph's latent kernel has one head, the shared latent; this one carries the query heads it blocks)
        attn = [dataclasses.replace(k, triton=True, heads=row.num_heads) if k.kind == "attn_decode" else k
                for k in attn]
    if prefill and _triton_attention(row):
        # SGLang's default MLA backend on Ada / Blackwell workstation GPUs is Triton (kernel source `triton`): its
        # extend kernel runs at the engine's fitted Triton prefill rate, as its attention-table rows do
        # (L40S / RTX PRO 6000 held out: under-predicted by 56-61 % at the FlashAttention efficiency)
        attn = [dataclasses.replace(k, triton=True) if k.kind == "attn_prefill" else k for k in attn]
    if pool:
        latent = _DSV3_MLA.kv_lora_rank + _DSV3_MLA.qk_rope_head_dim  # read in 16-bit elements: 1 byte each
        linear.append(elementwise("kv_pool_cast", pool * latent / 2, pool * latent, 0, c, 1, op="elementwise"))
    ks = (*linear, *attn)
    assert all(k.count == 1 for k in ks)
    return ks


def _vllm_mla_module(linear: list[Kernel], c: GraphContext, t: int, prefill: bool) -> list[Kernel]:
    """vLLM's MLA layer (vllm/model_executor/layers/attention/mla_attention.py, MLACommonImpl @ 0.24; AIConfigurator
    collector/vllm/collect_mla_module.py times DeepseekV2MLAAttention.forward in a CUDA graph) runs as separate
    kernels what TensorRT-LLM fuses into its MLA preprocessing: concat_and_cache_mla writes each new token's
    latent and rope key to the cache; prefill expands the latent with kv_b_proj and concatenates the shared rope
    key onto every head's key (torch.cat); decode absorbs W_UK / W_UV as two per-head batched GEMMs (torch.bmm,
    the mla_bmm table's mla_gen_pre / mla_gen_post) around the attention, and concatenates each head's absorbed
    query with its rope part. Modelled by the graph's kernels these launches were missing: the vLLM module rows
    (every GPU) were under-predicted by 15-40 %, the TensorRT-LLM ones were not."""
    a = c.model.mla
    assert a is not None
    h = c.heads
    latent = a.kv_lora_rank + a.qk_rope_head_dim
    out = [k for k in linear if prefill or k.name != "kv_b_proj"]
    out.append(elementwise("kv_cache_write", t * latent, t * latent, 0, c, 1, op="elementwise"))
    if prefill:
        k_elems = t * h * (a.qk_nope_head_dim + a.qk_rope_head_dim)
        out.append(elementwise("k_concat", k_elems, k_elems, 0, c, 1, op="elementwise"))
        return out
    # vLLM dequantises kv_b_proj into the 16-bit W_UK / W_UV at load (process_weights_after_loading)
    for name, n, k in (("mla_gen_pre", a.kv_lora_rank, a.qk_nope_head_dim), ("mla_gen_post", a.v_head_dim,
                                                                            a.kv_lora_rank)):
        out.append(gemm(name, t, n, k, c, 1, weight_dtype_bytes=2.0, dtype="bf16", rows=t * h, weight_sets=h))
    q_elems = t * h * latent
    out.append(elementwise("q_concat", q_elems, q_elems, 0, c, 1, op="elementwise"))
    return out


def _mla_bmm(row: KernelMeasurement) -> tuple[Kernel, ...]:
    """mla_gen_pre / mla_gen_post: num_heads independent [tokens, k] x [k, n] products with one weight matrix per
    head, a grouped GEMM (graph.gemm rows / weight_sets); the fp8 path (fp8_block_scaling_bmm_out) first quantizes
    the activation per 1x128 block and runs the block-scaled recipe: model.cost.gemm_time charges that quantise pass
    (read 16-bit, write 8-bit) and its fixed cost to the fp8_block GEMM call, as for any quantised-activation GEMM.
    A call whose bytes fit in the L2 reads them from it (Kernel.l2_warm): the collectors replay the same tensors."""
    _need(row, m=row.m, n=row.n, k=row.k, num_heads=row.num_heads)
    h = row.num_heads
    if row.dtype == "bf16":
        g = gemm("mla_bmm", row.m, row.n, row.k, _ctx("bf16", "bf16"), 1, rows=row.m * h, weight_sets=h)
    elif row.dtype != "fp8":
        raise Unpredictable(f"mla_bmm dtype {row.dtype!r} is not mapped (bf16, fp8)")
    else:
        g = gemm("mla_bmm", row.m, row.n, row.k, _ctx("fp8", "fp8"), 1, rows=row.m * h, weight_sets=h,
                 dtype="fp8_block")
    # the collectors (trtllm/sglang collect_mla_bmm.py) replay one call on the same tensors (a CUDA graph, or
    # repeat_n=1): when operands, output and the quantised copy fit in the L2 they are read from it (L40S / RTX PRO
    # 6000 held out: 52 / 29 % -> 27 / 24 % LOGO, A100 / H100 unchanged: their calls this small are fixed costs)
    l2 = resolve_hardware(row.hardware).memory.l2_bytes
    return (dataclasses.replace(g, l2_warm=g.bytes + gemm_quant_bytes(g) <= l2),)


def _quantize(row: KernelMeasurement) -> Kernel:
    """fp8 activation quantization of a bf16 [m, k] tensor: scale_matrix = one vector pass reading 16-bit and
    writing 8-bit elements (bytes counted in 16-bit elements: k/2 written); compute_scale = the amax reduction the
    dynamic recipe adds, one pass reading the tensor and writing one scale."""
    _need(row, m=row.m, k=row.k)
    c = _ctx("bf16", "bf16")
    elems = row.m * row.k
    if row.variant.startswith("scale_matrix"):
        return elementwise("fp8_quantize", elems, elems / 2, 2, c, 1, op="elementwise")
    if row.variant.startswith("compute_scale"):
        return elementwise("fp8_amax", elems, 1, 1, c, 1, op="elementwise")
    raise Unpredictable(f"quantize op {row.variant.split(';')[0]!r} is not mapped (scale_matrix, compute_scale)")


# ops whose rows are the sum of several kernels (row_kernels); mla_bmm's bf16 rows are one grouped GEMM
_MODULES: dict[str, Callable[[KernelMeasurement], tuple[Kernel, ...]]] = {
    "moe": moe_module_kernels,
    **{op: mla_kernels for op in ("mla_context", "mla_generation", "mla_context_module", "mla_generation_module")},
    "mla_bmm": _mla_bmm,
}
# Rows predicted from the knobs their kernels' own families fit (GEMM, attention, elementwise tables), never fitted
# themselves (a module row, even of one kernel, is kind 8 in FeatureTable): adding the MLA-BMM or quantize rows to
# the GEMM / elementwise fit moved the GEMM families' leave-one-GPU-out medians by up to 3.5 points.
PREDICT_ONLY_OPS: frozenset[str] = frozenset({*_MODULES, "quantize"})


_BUILDERS: dict[str, Callable[[KernelMeasurement], Kernel]] = {
    "gemm": _gemm,
    "attn_prefill": _attention,
    "attn_decode": _attention,
    "attn_qk_matmul": _batched_matmul,
    "attn_av_matmul": _batched_matmul,
    **{op: _elementwise for op in ("embedding", "rope", "silu_mul", *_ELEMENTWISE)},
    **{op: _comm for op in _COMM_OPS},
    "quantize": _quantize,
}


def row_kernel(row: KernelMeasurement) -> Kernel:
    """The roofsim Kernel equivalent to a measured row; Unpredictable(reason) when there is none (a module row,
    e.g. fused MoE, is several kernels: row_kernels)."""
    if row.op in _MODULES:
        raise Unpredictable(f"a {row.op} row times a module of several kernels (row_kernels)")
    builder = _BUILDERS.get(row.op)
    if builder is None:
        if row.op.startswith("cpu_overhead_"):
            raise Unpredictable("CPU-side engine overhead, not a GPU kernel (validated with serving benchmarks)")
        raise Unpredictable(_REASONS.get(row.op, f"op {row.op!r} has no roofsim kernel; predicted ops: "
                                                  f"{sorted(PREDICTED_OPS)}"))
    try:
        return builder(row)
    except Unpredictable:
        raise
    except ValueError as e:  # a shape that the model descriptors reject (e.g. heads not divisible)
        raise Unpredictable(str(e)) from e


def row_kernels(row: KernelMeasurement) -> tuple[Kernel, ...]:
    """The kernels whose summed time is the measured row: (row_kernel(row),), or a module's kernels (fused MoE:
    moe_module_kernels, MLA: mla_kernels). Unpredictable(reason) when there is none."""
    module = _MODULES.get(row.op)
    if module is None:
        return (row_kernel(row),)
    try:
        return module(row)
    except Unpredictable:
        raise
    except ValueError as e:  # a shape the model descriptors reject
        raise Unpredictable(str(e)) from e


def why_unpredictable(row: KernelMeasurement) -> str | None:
    """None when the row can be predicted, else the reason."""
    try:
        row_kernels(row)
    except Unpredictable as e:
        return str(e)
    return None


def predict_kernel(row: KernelMeasurement, hw: HardwareSpec, cal: Calibration) -> float | None:
    """Predicted seconds of the measured kernel (or module: the sum of its kernels) on `hw` under `cal`, or None
    when the row cannot be predicted (why_unpredictable gives the reason). A dtype the hardware lacks raises
    ValueError from hw.peak."""
    try:
        ks = row_kernels(row)
    except Unpredictable:
        return None
    return sum(kernel_cost(k, hw, cal).seconds for k in ks)


_MODULE = "module"  # Prediction.kernels entry of a row costed as the sum of its parts, never fitted


def _summary(parts: tuple[Kernel, ...]) -> Kernel:
    """One kernel standing for a module row in Prediction.kernels (reports size it by FLOPs/bytes): the sum of the
    parts' work, typed as its largest GEMM. FeatureTable costs the parts, never this."""
    main = max(parts, key=lambda k: k.flops)
    return Kernel(name=_MODULE, op=main.op, dtype=main.dtype, flops=sum(k.flops for k in parts),
                  weight_bytes=sum(k.weight_bytes for k in parts), act_read_bytes=sum(k.act_read_bytes for k in parts),
                  act_write_bytes=sum(k.act_write_bytes for k in parts))


# ----------------------------------------------------------------------------------------- hardware
def resolve_hardware(name: str) -> HardwareSpec:
    """load_hardware, with the measured-data spelling kept in the error."""
    try:
        return load_hardware(name)
    except (RoofsimError, KeyError) as e:
        msg = str(e.args[0]) if isinstance(e, KeyError) and e.args else str(e)
        raise Unpredictable(f"hardware {name!r} has no catalog entry ({msg.split('. Known')[0]})") from None


# ----------------------------------------------------------------------------------- vectorised table
# 4 = the framework TP all-reduce, 5 = an NCCL collective / send-recv, 7 = a collective that costs nothing,
# 8 = a module row (the sum of FeatureTable.parts)
_KIND_CODE = {"gemm": 0, "attn_prefill": 1, "attn_decode": 2, "elementwise": 3, "sampling": 3}
# GEMM dtype -> which per-dtype peak efficiency (model.cost.gemm_peak_efficiency) and fixed cost
# (model.cost.gemm_overhead); fp4 (W4A4) has the 16-bit efficiency and the block-scaled recipe's fixed cost
_GEMM_DTYPE_CODE = {"fp8": 1, "fp8_block": 2, "int8": 3, "fp4": 4}


@dataclass(frozen=True)
class FeatureTable:
    """Per-row constants of kernel_cost so that predicted seconds for any Calibration is a few numpy ops.

    Integer GEMM tiling fields (gemm_tile_m, gemm_tile_n, gemm_splitk_min_k, gemm_gemv_max_m, gemm_small_max_mnk) are
    frozen into `gemm_shape_eff` and `gemm_gemv`
    (pad x wave), so `seconds(cal)` is exact only for a cal with the same integer fields as `tiling`.
    """

    kind: np.ndarray  # int8 code, _KIND_CODE
    flops: np.ndarray
    bytes: np.ndarray
    peak: np.ndarray  # FLOP/s of the kernel dtype (fp32 vector peak for elementwise)
    fp32_peak: np.ndarray
    bw: np.ndarray
    dequant: np.ndarray
    gemm_shape_eff: np.ndarray  # pad * wave (GEMM), 0 otherwise
    gemm_k: np.ndarray
    gemm_clock: np.ndarray  # model.cost.gemm_clock_factor: the GPU's fixed GEMM costs against the reference's
    gemm_l2: np.ndarray  # SMs x clock of an L2-warm GEMM (Kernel.l2_warm), else 0: its L2 bytes/s per bytes/clk
    gemm_gemv: np.ndarray  # 1 when the GEMM runs unpacked (model.cost.gemm_is_stream): gemm_gemv_mem_eff
    gemm_dtype: np.ndarray  # _GEMM_DTYPE_CODE (0 = 16-bit / gemm_eff)
    gemm_eager: np.ndarray  # 1 when the GEMM was timed alone without a CUDA graph (Kernel.timed_eager)
    gemm_quant: np.ndarray  # bytes of the activation-quantise pass inside the call (model.cost.gemm_quant_bytes)
    gemm_grouped: np.ndarray  # 1 for a fused-MoE expert GEMM (Kernel.moe_expert): gemm_grouped_overhead_s
    attn_fp8: np.ndarray  # 1 when attention math runs in fp8 (attn_prefill_eff_fp8)
    ew_class: np.ndarray  # elementwise: 1 normalisation, 2 activation, 3 rope (model.cost.elementwise_passes), else 0
    attn_s: np.ndarray  # mean new tokens per sequence (prefill)
    attn_ctas: np.ndarray  # prefill: query-tile CTAs (model.cost.prefill_ctas)
    attn_ctx: np.ndarray  # decode: cached entries per sequence (model.cost.decode_context)
    attn_kvh: np.ndarray  # decode: KV heads
    attn_group: np.ndarray  # decode: query heads per KV head
    attn_nosplit: np.ndarray  # decode: 1 = the kernel splits no KV (Kernel.gqa_unpacked)
    attn_kv: np.ndarray  # decode: KV-cache bytes read
    attn_seqs: np.ndarray  # decode sequences
    units: np.ndarray  # attention: SMs of the row's hardware (decode work-unit slots; SMs x clock for prefill)
    l2: np.ndarray  # attention: L2 bytes of the row's hardware (prefill memory, decode KV working set)
    clock: np.ndarray  # attention: SM clock of the row's hardware, Hz
    attn_kv8: np.ndarray  # attention with an fp8 KV cache (attn_decode_mem_eff_fp8kv, attn_fp8_quant_s)
    attn_latent: np.ndarray  # absorbed-MLA decode (Kernel.latent): the prefill efficiency
    attn_serial: np.ndarray  # absorbed-MLA decode: model.cost.latent_nosplit_cycle_s (s per cycle of a no-split unit)
    attn_scores: np.ndarray  # prefill: query-key scores (model.cost.prefill_score_terms)
    attn_edge: np.ndarray  # prefill: scores per unit of min(tile, s)/2 at causal/window edges
    attn_triton: np.ndarray  # prefill by the engine's Triton kernel (Kernel.triton): `peak` holds SMs x clock
    attn_triton_unit: np.ndarray  # absorbed-MLA decode by SGLang's Triton kernel: model.cost.triton_mla_unit_s
    comm: np.ndarray  # (rows, len(COMM_TERMS)): model.cost.comm_terms of communication rows, else 0
    comm_graphed: np.ndarray  # 1 = replayed in a CUDA graph: no comm_floor_s
    tiling: tuple  # _tiling(cal)
    # module rows (kind 8, e.g. a fused-MoE row): their time is the sum of `parts` rows whose `owner` is the row
    parts: FeatureTable | None = None
    owner: np.ndarray | None = None

    def __len__(self) -> int:
        return len(self.kind)

    def subset(self, idx: np.ndarray) -> FeatureTable:
        """The rows `idx` (indices or a boolean mask; no repeats), with the parts of their module rows."""
        cols: dict[str, Any] = {f: (getattr(self, f)[idx] if f not in ("tiling", "parts", "owner") else None)
                                for f in self.__dataclass_fields__}
        cols["tiling"] = self.tiling
        if self.parts is not None and self.owner is not None:
            sel = np.asarray(idx)
            sel = np.flatnonzero(sel) if sel.dtype == bool else sel.astype(np.int64)
            pos = np.full(len(self), -1, dtype=np.int64)
            pos[sel] = np.arange(len(sel))
            keep = np.flatnonzero(pos[self.owner] >= 0)
            cols["parts"] = self.parts.subset(keep)
            cols["owner"] = pos[self.owner[keep]]
        return FeatureTable(**cols)

    def seconds(self, cal: Calibration) -> np.ndarray:
        """kernel_cost(k, hw, cal).seconds for every row (tested equal)."""
        if _tiling(cal) != self.tiling:
            raise ValueError(f"FeatureTable built for tiling {self.tiling}; calibration {cal.name!r} has "
                             f"{_tiling(cal)}")
        p = {f: getattr(cal, f) for f in FIT_FIELDS}
        return self.seconds_params(p)

    def seconds_params(self, p: dict[str, float]) -> np.ndarray:
        kind = self.kind
        with np.errstate(divide="ignore", invalid="ignore"):
            geff = np.choose(self.gemm_dtype, (p["gemm_eff"], p["gemm_eff_fp8"], p["gemm_eff_fp8_block"],
                                               p["gemm_eff_int8"], p["gemm_eff"]))
            aeff = np.where(self.attn_fp8 > 0, p["attn_prefill_eff_fp8"], p["attn_prefill_eff"])
            # model.cost.attention_rates: a Triton kernel's rate is per SM clock (its peak column holds SMs x clock)
            peff = np.where(self.attn_triton > 0, np.where(self.attn_fp8 > 0, p["attn_prefill_triton_flops_per_clk_fp8"],
                                                           p["attn_prefill_triton_flops_per_clk"]), aeff)
            eff_c = np.where(
                kind == 0, geff * self.gemm_shape_eff * self.gemm_k / (self.gemm_k + p["gemm_k_half"]),
                np.where(kind == 1, peff * self.attn_s / (self.attn_s + p["attn_prefill_s_half"])
                         * prefill_fill_util(np.maximum(self.attn_ctas, 1e-9), self.units, p["attn_prefill_fill_half"]),
                         np.where(kind == 2, np.where(self.attn_latent > 0, aeff,
                                                      np.where(self.attn_fp8 > 0, p["attn_prefill_eff_fp8"]
                                                               * p["attn_decode_eff"] / p["attn_prefill_eff"],
                                                               p["attn_decode_eff"])), p["vector_eff"])))
            passes = np.choose(self.ew_class, (1.0, p["elementwise_norm_passes"], p["elementwise_act_passes"],
                                               p["elementwise_rope_passes"]))
            cache = 1.0  # model.cost.elementwise_cache_factor
            gain = np.choose(self.ew_class, (p["elementwise_cache_gain"], p["elementwise_norm_cache_gain"],
                                             p["elementwise_act_cache_gain"], p["elementwise_rope_cache_gain"]))
            if p["elementwise_cache_bytes"] > 0:
                ws2 = self.bytes * self.bytes
                s = ws2 / (ws2 + p["elementwise_cache_bytes"] ** 2)
                cache = (1.0 + (gain - 1.0) * s) / gain
            gemm_m = np.where(self.gemm_gemv > 0, p["gemm_gemv_mem_eff"], p["gemm_mem_eff"])
            # model.cost.gemm_time: an L2-warm benchmark GEMM reads at the faster of HBM and L2
            gemm_m = np.where(self.gemm_l2 > 0, np.maximum(gemm_m, self.gemm_l2 * p["gemm_l2_bytes_per_clk"] / self.bw),
                              gemm_m)
            eff_m = np.where(kind == 0, gemm_m, np.where(kind == 1, p["attn_prefill_mem_eff"],
                                                         p["elementwise_mem_eff"] / (passes * cache)))
            flops = self.flops
            if p["attn_prefill_tile"] or p["attn_softmax_flops"]:  # model.cost.prefill_attention_flops
                work = ((self.attn_scores + self.attn_edge * np.minimum(p["attn_prefill_tile"], self.attn_s) / 2.0)
                        * (self.flops / self.attn_scores + p["attn_softmax_flops"]))
                flops = np.where((kind == 1) & (self.attn_scores > 0), work, flops)
            compute = np.where(flops > 0, flops / (self.peak * eff_c), 0.0)
            compute = compute + np.where(self.dequant > 0, self.dequant / (self.fp32_peak * p["vector_eff"]), 0.0)
            memory = self.bytes / (self.bw * eff_m)
            if p["attn_prefill_cached_bytes_per_clk"]:  # model.cost.prefill_memory_seconds
                memory = np.where(kind == 1, prefill_memory_seconds(
                    self.bytes, self.bw, self.l2, self.units * self.clock, p["attn_prefill_mem_eff"],
                    p["attn_prefill_cached_bytes_per_clk"]), memory)
        overhead = np.choose(np.minimum(kind, 3), (p["gemm_overhead_s"], p["attn_prefill_overhead_s"],
                                                   p["attn_decode_overhead_s"], p["kernel_overhead_s"]))
        overhead = np.where(kind == 3, overhead * passes, overhead)  # an unfused kernel: one launch per pass
        # model.cost.prefill_attention_time: the fixed costs run in cycles (given at COMM_REF_CLOCK_HZ), one more
        # attn_fp8_quant_s per fp8 operand (AttentionRates.quant_passes)
        quant_passes = (self.attn_kv8 + self.attn_fp8) * (self.attn_latent == 0)  # none for absorbed MLA
        overhead = np.where(kind == 1, (overhead + quant_passes * p["attn_fp8_quant_s"]
                                        + self.attn_ctas / np.where(kind == 1, self.units, 1.0)
                                        * p["attn_prefill_cta_s"]) * COMM_REF_CLOCK_HZ
                            / np.where(kind == 1, self.clock, 1.0), overhead)
        # model.cost.gemm_overhead: per-tensor fp8 and block-scaled (fp8_block, fp4) recipes
        gemm_fixed = np.where(self.gemm_grouped > 0, p["gemm_grouped_overhead_s"],
                              np.choose(self.gemm_dtype, (p["gemm_overhead_s"], p["gemm_overhead_s_fp8"],
                                                          p["gemm_overhead_s_fp8_block"], p["gemm_overhead_s"],
                                                          p["gemm_overhead_s_fp8_block"])))
        quant = np.divide(self.gemm_quant, self.bw * p["gemm_mem_eff"], out=np.zeros(len(kind)),
                          where=self.gemm_quant > 0)
        overhead = np.where(kind == 0, gemm_fixed * self.gemm_clock + quant, overhead)
        floor = np.where((kind == 0) & (self.gemm_eager > 0), p["gemm_eager_floor_s"], 0.0)
        dec = kind == 2
        if dec.any():  # decode attention: model.cost.decode_attention_time on the rows' arrays
            # the KV dequantisation is in the generic compute above; vector_flops_per_s 0 skips it here
            # SGLang's Triton MLA decode computes at a rate per SM clock (model.cost.attention_rates)
            rate = np.where(self.attn_triton_unit[dec] > 0, TRITON_MLA_FLOPS_PER_CLK * self.units[dec] * self.clock[dec],
                            self.peak[dec] * eff_c[dec])
            r = AttentionRates(peak=self.peak[dec], prefill_eff=0.0, decode_flops_per_s=rate,
                               vector_flops_per_s=0.0,
                               decode_mem_eff=np.where(self.attn_kv8[dec] > 0, p["attn_decode_mem_eff_fp8kv"],
                                                       p["attn_decode_mem_eff"]),
                               bw=self.bw[dec], units=self.units[dec], l2_bytes=self.l2[dec],
                               sm_clocks_per_s=self.units[dec] * self.clock[dec],
                               cycle=COMM_REF_CLOCK_HZ / self.clock[dec], fp32_flops_per_s=self.fp32_peak[dec],
                               latent_token_s=self.attn_serial[dec] * p["attn_decode_latent_token_cycles"],
                               quant_passes=quant_passes[dec], triton_unit_s=self.attn_triton_unit[dec])
            terms = decode_attention_time(self.flops[dec], self.dequant[dec], self.bytes[dec], self.attn_kv[dec],
                                          self.attn_ctx[dec], self.attn_seqs[dec], self.attn_kvh[dec],
                                          self.attn_group[dec], r, p, self.attn_nosplit[dec] > 0)
            for arr, t in zip((compute, memory, floor, overhead), terms, strict=True):
                arr[dec] = t
            compute[dec] += np.where(self.dequant[dec] > 0, self.dequant[dec] / (self.fp32_peak[dec] * p["vector_eff"]),
                                     0.0)
        body = (np.maximum(np.maximum(compute, memory), floor) + np.where(kind == 0, p["gemm_overlap_loss"], 0.0)
                * np.minimum(compute, memory) + overhead)
        comm = np.zeros(len(kind))
        sel = (kind == 4) | (kind == 5)
        if sel.any():  # model.cost.comm_time on the rows' comm_terms
            comm[sel] = comm_time({t: self.comm[sel, j] for j, t in enumerate(COMM_TERMS)}, p,
                                  self.comm_graphed[sel] > 0)
        # kind 7: a collective that moves nothing (all-reduce over 1 GPU or 0 bytes) is free (allreduce_seconds)
        out = np.where((kind == 7) | (kind == 8), 0.0, np.where(sel, comm, body))
        if self.parts is not None and self.owner is not None and len(self.owner):
            np.add.at(out, self.owner, self.parts.seconds_params(p))  # kind 8: a module = the sum of its kernels
        return out


def _tiling(cal: Calibration) -> tuple:
    """The GEMM fields frozen into the FeatureTable: integer tiling (gemm_shape_eff), power limit (peak)."""
    return (cal.gemm_tile_m, cal.gemm_tile_n, cal.gemm_splitk_min_k, cal.gemm_gemv_max_m, cal.gemm_small_max_mnk,
            cal.gemm_grouped_min_tile_m, cal.gemm_tile_menu, cal.gemm_tensor_j_per_flop_ghz2,
            cal.gemm_overhead_clock_exp)


# Calibration fields the vectorised cost depends on (continuous ones; the integer tiling is frozen in).
FIT_FIELDS: tuple[str, ...] = (
    "gemm_eff", "gemm_eff_fp8", "gemm_eff_fp8_block", "gemm_eff_int8", "gemm_k_half", "gemm_mem_eff", "gemm_l2_bytes_per_clk",
    "gemm_gemv_mem_eff", "gemm_overlap_loss", "gemm_overhead_s", "gemm_overhead_s_fp8", "gemm_overhead_s_fp8_block",
    "gemm_grouped_overhead_s",
    "gemm_eager_floor_s",
    "attn_prefill_eff", "attn_prefill_eff_fp8", "attn_prefill_s_half", "attn_prefill_mem_eff",
    "attn_prefill_overhead_s", "attn_prefill_fill_half", "attn_prefill_cta_s", "attn_prefill_tile", "attn_softmax_flops",
    "attn_prefill_cached_bytes_per_clk",
    "attn_prefill_triton_flops_per_clk", "attn_prefill_triton_flops_per_clk_fp8",
    "attn_decode_mem_eff", "attn_decode_mem_eff_fp8kv", "attn_decode_eff", "attn_decode_overhead_s",
    "attn_decode_unit_s", "attn_decode_unit_bytes_per_s", "attn_decode_units_per_sm", "attn_decode_split_tokens",
    "attn_decode_split_s", "attn_decode_l2_gain", "attn_decode_l2_frac", "attn_decode_cuda_group",
    "attn_decode_cuda_eff", "attn_decode_latent_token_cycles", "attn_fp8_quant_s",
    "elementwise_mem_eff", "elementwise_norm_passes", "elementwise_act_passes", "elementwise_rope_passes",
    "vector_eff", "kernel_overhead_s",
    "elementwise_cache_gain", "elementwise_cache_bytes", "elementwise_norm_cache_gain", "elementwise_act_cache_gain",
    "elementwise_rope_cache_gain",
    "comm_bw_eff", "comm_latency_s", "comm_twoshot_latency_x", "comm_oneshot_max_bytes", "comm_floor_s",
    "comm_custom_nvlink_only",
    "nccl_bw_eff", "nccl_bw_eff_pcie", "nccl_latency_s", "nccl_ring_extra_steps", "nccl_pcie_share_exp",
)

_COLS = ("flops", "bytes", "peak", "fp32_peak", "bw", "dequant", "gemm_shape_eff", "gemm_k", "gemm_clock", "gemm_l2", "gemm_gemv",
         "gemm_eager",
         "gemm_quant", "gemm_grouped",
         "attn_s", "attn_ctas", "attn_ctx", "attn_kvh", "attn_group", "attn_nosplit", "attn_kv", "attn_seqs", "units", "l2", "clock", "attn_kv8",
         "attn_latent", "attn_serial", "attn_scores", "attn_edge", "attn_triton", "attn_triton_unit",
         "comm_graphed")


# elementwise class codes of FeatureTable.ew_class by op kind (model.cost.elementwise_passes)
_EW_CLASS = {"norm": 1, "activation": 2, "rope": 3}


def features(kernels: Sequence[Kernel], hws: Sequence[HardwareSpec], cal: Calibration,
             parts: Sequence[tuple[Kernel, ...]] = ()) -> FeatureTable:
    """FeatureTable of kernels (count 1 each) on their hardware; integer tiling taken from `cal`. `parts` (per row,
    Prediction.parts): a row with several kernels is a module row whose time is the sum of them."""
    if not parts:
        return _features(kernels, hws, cal)
    module = [len(p) > 1 or k.name == _MODULE for k, p in zip(kernels, parts, strict=True)]
    ft = _features([None if mod else k for k, mod in zip(kernels, module, strict=True)], hws, cal)
    sub = [(i, k) for i, (p, mod) in enumerate(zip(parts, module, strict=True)) if mod for k in p]
    owner = np.array([i for i, _ in sub], dtype=np.int64)
    sub_ft = _features([k for _, k in sub], [hws[i] for i, _ in sub], cal)
    return dataclasses.replace(ft, parts=sub_ft, owner=owner)


def _features(kernels: Sequence[Kernel | None], hws: Sequence[HardwareSpec], cal: Calibration) -> FeatureTable:
    """features() of single kernels; None marks a module row (kind 8, costed by its parts)."""
    n = len(kernels)
    cols = {name: np.zeros(n) for name in _COLS}
    comm = np.zeros((n, len(COMM_TERMS)))
    kind = np.zeros(n, dtype=np.int8)
    gdt = np.zeros(n, dtype=np.int64)
    afp8 = np.zeros(n, dtype=np.int8)
    ewc = np.zeros(n, dtype=np.int64)
    for i, (k, hw) in enumerate(zip(kernels, hws, strict=True)):
        if k is None:
            kind[i] = 8
            continue
        if k.count != 1:
            raise ValueError(f"features() expects count=1 kernels; {k.name} has count={k.count}")
        if k.kind in ("comm", "pp_comm"):
            # the calibration-free terms come from model.cost.comm_terms, so the formulas stay in model/cost.py
            terms = comm_terms(k, hw)
            free = k.op in ALLREDUCE_OPS and (
                k.comm_gpus <= 1 or k.comm_bytes <= 0)
            kind[i] = 7 if free else 4 if terms["custom"] else 5
            comm[i] = [terms[t] for t in COMM_TERMS]
            cols["comm_graphed"][i] = float(k.graphed)
            continue
        kind[i] = _KIND_CODE[k.kind]
        cols["flops"][i] = k.flops
        cols["bytes"][i] = k.bytes
        cols["bw"][i] = hw.memory.bandwidth_bytes_per_s
        cols["fp32_peak"][i] = hw.peak("fp32")
        cols["dequant"][i] = gemm_dequant_flops(k, cal) if k.kind == "gemm" else k.dequant_flops
        if k.kind == "attn_prefill":
            cols["peak"][i] = (hw.compute.num_units * hw.compute.clock_hz if k.triton
                               else prefill_attention_peak(hw, k.dtype))
            cols["attn_triton"][i] = float(k.triton)
            cols["attn_kv8"][i] = float(k.kv_dtype == "fp8")
            afp8[i] = k.dtype == "fp8"
        elif k.kind == "gemm":
            cols["peak"][i] = gemm_kernel_peak(k, hw, cal)
        elif k.kind == "attn_decode":
            cols["peak"][i] = hw.peak(PEAK_DTYPE.get(k.dtype, k.dtype))
            afp8[i] = k.dtype == "fp8"
        else:
            cols["peak"][i] = hw.peak("fp32")
            ewc[i] = _EW_CLASS.get(k.op, 0)
        if k.kind == "gemm":
            groups = gemm_groups(k)  # a grouped (MoE) GEMM pads each expert's rows to its own tile
            cols["gemm_shape_eff"][i] = gemm_shape_efficiency(k.m, k.n, k.k, hw.compute.num_units, cal, groups,
                                                              bool(k.dequant_flops), k.dtype, k.no_splitk,
                                                              warp_mma_only(hw), tensor_power_factor(hw, cal))
            cols["gemm_k"][i] = k.k
            # a fused-MoE expert GEMM's fixed cost is clock-scaled whatever its dtype (model.cost.gemm_time)
            expert = k.moe_expert
            cols["gemm_clock"][i] = gemm_clock_factor("bf16" if expert else k.dtype, hw, cal)
            cols["gemm_grouped"][i] = float(expert)
            cols["gemm_l2"][i] = hw.compute.num_units * hw.compute.clock_hz if k.l2_warm else 0.0
            cols["gemm_gemv"][i] = float(gemm_is_stream(k.m, k.n, k.k, cal) and groups == 1.0)
            cols["gemm_eager"][i] = float(k.timed_eager)
            cols["gemm_quant"][i] = gemm_quant_bytes(k)
            gdt[i] = _GEMM_DTYPE_CODE.get(k.dtype, 0)
        elif k.kind == "attn_prefill":
            cols["attn_s"][i] = k.m / max(1, k.n)
            cols["attn_ctas"][i] = prefill_ctas(max(1, k.n), k.heads, cols["attn_s"][i])
            if k.scores:
                cols["attn_scores"][i], cols["attn_edge"][i] = prefill_score_terms(k.scores, k.heads, k.window,
                                                                                   k.m, k.n)
        elif k.kind == "attn_decode":
            cols["attn_ctx"][i] = decode_context(k)
            cols["flops"][i], cols["attn_kvh"][i], cols["attn_group"][i] = decode_work(k)
            cols["attn_nosplit"][i] = float(k.gqa_unpacked)
            cols["attn_kv"][i] = k.kv_read_bytes
            cols["attn_seqs"][i] = k.n
            cols["attn_kv8"][i] = float(k.kv_dtype == "fp8")
            cols["attn_latent"][i] = float(k.latent)
            cols["attn_serial"][i] = latent_nosplit_cycle_s(hw) if k.latent else 0.0
            cols["attn_triton_unit"][i] = triton_mla_unit_s(hw) if k.latent and k.triton else 0.0
        if k.kind in ("attn_prefill", "attn_decode"):
            cols["units"][i], cols["l2"][i], cols["clock"][i] = (hw.compute.num_units, hw.memory.l2_bytes,
                                                                 hw.compute.clock_hz)
    return FeatureTable(kind=kind, gemm_dtype=gdt, attn_fp8=afp8, ew_class=ewc, comm=comm,
                        tiling=_tiling(cal), **cols)


# ------------------------------------------------------------------------------------- whole tables
@dataclass(frozen=True)
class Prediction:
    """Rows that were predicted (with their kernels and hardware) and every row that was not, with the reason."""

    rows: tuple[KernelMeasurement, ...]
    kernels: tuple[Kernel, ...]
    hardware: tuple[HardwareSpec, ...]
    predicted_s: np.ndarray
    problems: tuple[str, ...]
    # per row, the kernels whose times sum to it ((kernel,) for a one-kernel row; a module's kernels otherwise,
    # when `kernels` holds a summary of them); empty = every row is its one kernel
    parts: tuple[tuple[Kernel, ...], ...] = ()

    @property
    def measured_s(self) -> np.ndarray:
        return np.array([r.measured_s for r in self.rows], dtype=float)


def _where(row: KernelMeasurement) -> str:
    # parquet tables count 0-based rows, CSV readers 1-based lines (header = line 1)
    unit = "row" if row.file.endswith(".parquet") else "line"
    return f"{row.file} {unit} {row.row}" if row.file else f"{unit} {row.row}"


def predict_rows(rows: Iterable[KernelMeasurement], cal: Calibration | Callable[[HardwareSpec], Calibration],
                 hardware: str | None = None, progress: Callable[[Iterable], Iterable] | None = None,
                 ) -> Prediction:
    """Predict every row; rows without a kernel, on unknown hardware, in a dtype the hardware lacks, or on other
    hardware than `hardware` (when given) become problems, grouped by reason with the first rows named.

    `cal` is one Calibration or a function hardware -> Calibration (e.g. validation.profiles.profile_for).
    """
    only = load_hardware(hardware).id if hardware else None
    hw_cache: dict[str, HardwareSpec | str] = {}
    kept: list[KernelMeasurement] = []
    kernels: list[Kernel] = []
    parts: list[tuple[Kernel, ...]] = []
    hws: list[HardwareSpec] = []
    skipped: dict[str, list[str]] = {}
    it: Iterable[KernelMeasurement] = rows if progress is None else progress(rows)
    for row in it:
        hw = hw_cache.get(row.hardware)
        if hw is None:
            try:
                hw = resolve_hardware(row.hardware)
            except Unpredictable as e:
                hw = str(e)
            hw_cache[row.hardware] = hw
        try:
            if isinstance(hw, str):
                raise Unpredictable(hw)
            if only is not None and hw.id != only:
                raise Unpredictable(f"measured on {hw.id}, excluded by --hardware {hardware}")
            ks = row_kernels(row)
            for k in ks:
                if k.kind in ("gemm", "attn_prefill", "attn_decode") and not hw.supports(PEAK_DTYPE.get(k.dtype,
                                                                                                      k.dtype)):
                    raise Unpredictable(f"{hw.id} has no {k.dtype} tensor-core peak")
        except Unpredictable as e:
            skipped.setdefault(str(e), []).append(_where(row))
            continue
        kept.append(row)
        kernels.append(ks[0] if len(ks) == 1 and row.op not in PREDICT_ONLY_OPS else _summary(ks))
        parts.append(ks)
        hws.append(hw)
    problems = tuple(
        f"{len(where)} row(s) not predicted: {reason} (e.g. {', '.join(where[:3])}{' ...' if len(where) > 3 else ''})"
        for reason, where in skipped.items())
    pred = np.empty(len(kept))
    by_cal: dict[int, list[int]] = {}
    cals: dict[int, Calibration] = {}
    for i, hw in enumerate(hws):
        c = cal(hw) if callable(cal) else cal
        by_cal.setdefault(id(c), []).append(i)
        cals[id(c)] = c
    for key, idx in by_cal.items():
        c = cals[key]
        ft = features([kernels[i] for i in idx], [hws[i] for i in idx], c, [parts[i] for i in idx])
        pred[idx] = ft.seconds(c)
    return Prediction(tuple(kept), tuple(kernels), tuple(hws), pred, problems, tuple(parts))


def pct_errors(predicted: np.ndarray, measured: np.ndarray) -> np.ndarray:
    """Signed percentage error 100 (predicted - measured) / measured."""
    return 100.0 * (np.asarray(predicted) - np.asarray(measured)) / np.asarray(measured)
