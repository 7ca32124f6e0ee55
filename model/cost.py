"""The roofline cost model: seconds, bound, energy of every kernel and of a whole iteration (the simulator's oracle).

Per kernel: max(flops / (peak(dtype) * eff_compute(shape)), bytes / (bandwidth * eff_memory)) + launch overhead
(Williams et al., "Roofline", CACM 2009). Collectives use the alpha-beta model of a ring all-reduce
(Thakur et al., "Optimization of collective communication operations in MPICH", IJHPCA 2005). The efficiency
functions and their defaults are documented in docs/model.md; `Calibration` holds them and a fitted profile
(validation.calibrate) replaces the defaults without mutating anything. Kernels are costed by their op kind
(`Kernel.op`) through one time function per op class, which both `kernel_cost` and CostModel's closed form call.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping
from dataclasses import dataclass
from functools import lru_cache
from typing import Any, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, model_validator

from roofsim.hardware_specs.spec import HardwareSpec
from roofsim.model.batch import BatchShape
from roofsim.model.graph import (
    AttnGroup,
    AttnPolicy,
    GraphContext,
    attention_kernels,
    decode_heads,
    decode_keys,
    graph_context,
    group_attention_kernels,
    linear_kernels,
    prefill_keys,
    priced_apart,
    rank_shape,
    vision_kernels,
)
from roofsim.model.kernel import ALLREDUCE_OPS, Kernel
from roofsim.model.spec import ModelSpec, ParallelSpec, QuantSpec
from roofsim.model.uncertainty import group_key, kernel_family, parent_keys, regime_of

log = logging.getLogger(__name__)

Bound = Literal["compute", "memory", "overhead", "communication"]


class Calibration(BaseModel):
    """Efficiency curves and overheads of the cost model. Defaults: see docs/model.md for where each comes from.

    Fields added after the first profiles (per-kind overheads, per-dtype efficiencies, NCCL fields) inherit the
    field they refine when a profile or caller does not give them (`_INHERIT`), so an older profile TOML means
    exactly what it meant before.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    name: str = "default"
    hardware: str = ""
    # GEMM: achieved fraction of dense peak on large, well-shaped problems (cuBLAS/CUTLASS reach 70-80% on
    # A100/H100: AIConfigurator H100 bf16 table peaks near 0.75; see docs/model.md), then tile/wave/K losses.
    gemm_eff: float = Field(0.75, gt=0, le=1)
    # per-dtype peak fractions (of that dtype's own peak); fp8_block = fp8 with per-128x128-block scales
    # (DeepSeek-V3 recipe), whose per-block rescaling of the accumulators is compute proportional to the FLOPs
    gemm_eff_fp8: float = Field(0.75, gt=0, le=1)
    gemm_eff_fp8_block: float = Field(0.75, gt=0, le=1)
    gemm_eff_int8: float = Field(0.75, gt=0, le=1)
    gemm_tile_m: int = Field(64, gt=0)
    gemm_tile_n: int = Field(128, gt=0)
    gemm_tile_menu: tuple[tuple[int, int], ...] = Field(((64, 64), (64, 128), (128, 128), (128, 256)), description=(
        "output tiles (rows x cols) a plain GEMM's library picks from: the one with the least padded, wave-"
        "quantized work wins, as cuBLAS/CUTLASS heuristics pick per shape (CUTLASS's SM80/SM90 tile configs span "
        "64x64 to 128x256); () = gemm_tile_m x gemm_tile_n only (grouped GEMMs always use those)"))
    gemm_k_half: float = Field(128.0, ge=0, description="k at which K-loop efficiency is 50%")
    gemm_tensor_j_per_flop_ghz2: float = Field(2.11e-13, ge=0, description=(
        "energy of one dense 16-bit tensor FLOP per GHz^2 of clock (voltage rises with clock, so energy per op "
        "~ f^2): a GPU whose datasheet peak would draw more than its TDP (peak_bf16 x this x f_GHz^2 > tdp_w) runs "
        "its GEMMs at the power-limited rate, tdp_w / that power of its peak (narrower dtypes: same power at their "
        "higher peak). Default: the H100 SXM runs its dense bf16 peak at its TDP (700 W / (989.4 TFLOP/s x "
        "1.83^2), datasheet); 0 = no power limit"))
    gemm_splitk_min_k: int = Field(1024, gt=0, description="minimum K slice when split-K fills idle SMs")
    gemm_gemv_max_m: int = Field(0, ge=0, description=(
        "GEMMs with m at or below this run as a GEMV (no tile padding, no wave quantization: a weight stream); "
        "numpy/OpenBLAS sends a 1-row matmul to sgemv and m >= 2 to sgemm; 0 = every GEMM is tiled"))
    gemm_grouped_min_tile_m: int = Field(16, gt=0, description=(
        "smallest row tile of a grouped (MoE expert) GEMM: the fused-MoE kernels pick the row tile from the tokens "
        "per expert, padding each expert's rows to it (vLLM fused_moe get_default_config: BLOCK_SIZE_M 16 for "
        "small batches; TensorRT-LLM's CUTLASS MoE GEMM tiles of 16-128 rows), at most gemm_tile_m"))
    gemm_mem_eff: float = Field(0.80, gt=0, le=1)
    gemm_small_max_mnk: int = Field(0, ge=0, description=(
        "GEMMs with m*n*k at or below this also run unpacked, as a weight stream like a GEMV (OpenBLAS's "
        "small-matrix kernel on AVX-512 x86; measured here: (4, 256, 768) streams like a GEMV, (2, 768, 768) is "
        "packed); 0 = none"))
    gemm_gemv_mem_eff: float = Field(0.80, gt=0, le=1, description=(
        "gemm_mem_eff of a GEMV (m <= gemm_gemv_max_m; default: gemm_mem_eff): a vector-matrix product streams the "
        "weights once, while OpenBLAS's sgemm packs B into a buffer on every call (numpy on a CPU: a 1-row "
        "matmul streams at ~11 GB/s, 2-16 rows at ~3 GB/s)"))
    gemm_overlap_loss: float = Field(0.0, ge=0, le=1, description=(
        "fraction of the shorter of compute and memory time not hidden under the longer one (GEMM only): "
        "t = max(c, m) + loss * min(c, m); 0 = ideal roofline"))
    gemm_overhead_s: float = Field(2.5e-6, ge=0, description="launch + tail of one GEMM")
    # a benchmark GEMM with all its operands resident in L2 (Kernel.l2_warm) reads at the faster of HBM and
    # SMs x clock x this (fitted 5.5-8 per GPU on AIConfigurator's TRT-LLM rows); 0 = no L2 term
    gemm_l2_bytes_per_clk: float = Field(8.0, ge=0, description="L2 read bytes per SM per clock")
    gemm_overhead_clock_exp: float = Field(1.0, ge=0, description=(
        "a GPU's gemm_overhead_s (given at COMM_REF_CLOCK_HZ) scales as (COMM_REF_CLOCK_HZ / clock) to this power: "
        "the GEMM kernel's prologue, pipeline fill and epilogue run in SM cycles (AIConfigurator's smallest bf16 "
        "GEMMs: 2.6-2.8 us on A100 and H100, 1.8-2.2 us on L40S and RTX PRO 6000 at 2.5 GHz); the fp8 / block-"
        "scaled recipes' fixed costs, mostly their quantise kernels' launches, are not scaled; 0 = no scaling"))
    gemm_overhead_s_fp8: float = Field(2.5e-6, ge=0, description=(
        "fixed cost of one per-tensor fp8 GEMM call, including the activation quantisation that precedes it "
        "(default: gemm_overhead_s). TensorRT-LLM's dynamic per-tensor recipe reduces the activation's amax before "
        "quantising (FP8QDQ: scale kernel, quantise kernel, GEMM): >= 10-12 us on H100, L40S and RTX PRO 6000"))
    gemm_grouped_overhead_s: float = Field(2.5e-6, ge=0, description=(
        "fixed cost of one grouped (MoE expert) GEMM call at COMM_REF_CLOCK_HZ, scaled by clock as gemm_overhead_s, "
        "whatever its dtype: the fused-MoE module's routing kernels that its launch waits on (vLLM/SGLang "
        "moe_align_block_size, TensorRT-LLM's expert sort and offsets) and its grid of early-exiting tiles; fitted "
        "on fused-MoE module rows only (AIConfigurator moe_perf), 7-33 us per engine in the leave-one-GPU-out fits; "
        "the shipped profiles read no MoE tables and keep the default"))
    gemm_overhead_s_fp8_block: float = Field(2.5e-6, ge=0, description=(
        "fixed cost of one block-scaled GEMM call (fp8_block 1x128 activation groups, nvfp4 1x16 blocks): each "
        "group's scale is local, so one fused quantise kernel precedes the GEMM (TensorRT-LLM fp8_quantize_1x128, "
        "SGLang per_token_group_quant_fp8, FlashInfer fp4_quantize): 3.4-6 us minimum on the four GPUs "
        "(default: gemm_overhead_s_fp8)"))
    gemm_eager_floor_s: float = Field(1e-4, ge=0, description=(
        "least time of a GEMM call timed alone without a CUDA graph (Kernel.timed_eager): the host's Python "
        "dispatch of the framework's quantised linear (activation quantisation + GEMM launches); AIConfigurator's "
        "vLLM 0.24 fp8_block rows flatten at 55-340 us per call depending on the kernel vLLM picks. Only such "
        "microbenchmark rows pay it"))
    # Attention (FlashAttention-2/3): fraction of tensor peak; short sequences lose more (tile 128 rows).
    attn_prefill_eff: float = Field(0.55, gt=0, le=1)
    attn_prefill_eff_fp8: float = Field(0.55, gt=0, le=1)
    attn_prefill_s_half: float = Field(256.0, ge=0)
    attn_prefill_mem_eff: float = Field(0.80, gt=0, le=1, description=(
        "fraction of bandwidth of prefill attention's Q/K/V/O and KV-cache traffic (default: gemm_mem_eff); "
        "short prefills are latency-bound at 0.25-0.5 of the bandwidth GEMM weight streams reach"))
    attn_prefill_overhead_s: float = Field(2.5e-6, ge=0, description=(
        "fixed cost of one prefill attention call, in cycles given at COMM_REF_CLOCK_HZ (docs/model.md: TensorRT-LLM's "
        "smallest calls take 20-28 thousand cycles on A100, H100, L40S and RTX PRO 6000; seconds missed H100)"))
    attn_fp8_quant_s: float = Field(2.5e-6, ge=0, description=(
        "fixed cost of each fp8 quantisation pass of an attention call, in cycles given at COMM_REF_CLOCK_HZ: "
        "the new tokens' K/V written into an fp8 KV cache, the query cast to fp8 for fp8 attention math "
        "(AIConfigurator's SGLang tables: the smallest calls take 2-4 us more per fp8 operand on H100, L40S and "
        "RTX PRO 6000, prefill and decode alike; fitted leave-one-GPU-out 0.8-3.6 us per engine); 0 = none"))
    attn_prefill_cached_bytes_per_clk: float = Field(3.0, ge=0, description=(
        "bytes per SM per clock at which prefill attention moves the operands of a call whose working set fits in "
        "the L2 cache: such calls are bound by the latency of their tile loads, not DRAM bandwidth, so their rate "
        "scales with SMs x clock (A100/H100 move small calls slower than their HBM allows, L40S/RTX PRO 6000 "
        "faster than their GDDR). The DRAM share of the bytes is x^2/(1+x^2), x = bytes / l2_bytes; fitted on "
        "AIConfigurator's context-attention tables leave-one-GPU-out: 2.8-4.1 for every engine; 0 = every byte "
        "at DRAM bandwidth"))
    # the grid of prefill attention (docs/model.md, "prefill attention's grid"): a short grid leaves SMs idle
    attn_prefill_fill_half: float = Field(0.0, ge=0, description=(
        "CTAs per SM (prefill_ctas / SMs) at half the compute rate (prefill_fill_util); 0 = no grid-fill effect"))
    attn_prefill_cta_s: float = Field(0.0, ge=0, description=(
        "fixed cost of each query-tile CTA (prefill_ctas) per SM, in cycles given at COMM_REF_CLOCK_HZ: a tile's "
        "query load and output store whatever its keys (docs/model.md, prefill attention's grid); 0 = none"))
    attn_prefill_tile: float = Field(0.0, ge=0, description=(
        "key-tile width of the prefill kernel: tiles on the causal diagonal (and on a sliding window's trailing "
        "edge) are computed whole, so each edge adds min(tile, s)/2 scores per query (FlashAttention tiles are "
        "64-176 keys); 0 = exact causal/window pair counts"))
    attn_prefill_triton_flops_per_clk: float = Field(350.0, gt=0, description=(
        "tensor FLOPs per SM per clock of the engines' Triton prefill attention kernel (Kernel.triton): SGLang's "
        "extend_attention tiles 32-128 query rows with mma instructions whatever the GPU generation, so it reaches "
        "a similar rate per SM clock on Ada, Hopper and Blackwell (AIConfigurator's SGLang/vLLM context-attention "
        "tables: 300-400 at head dims 64-192 on L40S, H100 and RTX PRO 6000) instead of a share of the tensor peak"))
    attn_prefill_triton_flops_per_clk_fp8: float = Field(350.0, gt=0, description=(
        "attn_prefill_triton_flops_per_clk of fp8 attention (default: the 16-bit rate): Triton's fp8 dot runs "
        "1.2-2x faster per SM clock than its bf16 one on L40S, H100 and RTX PRO 6000, not the peaks' 2x"))
    attn_softmax_flops: float = Field(0.0, ge=0, description=(
        "softmax work per attention score in prefill, in tensor-FLOP equivalents (exp/max/sum run on the much "
        "slower SFU/FMA units: FlashAttention-3, arXiv 2407.08608, sec. 3); makes small head dims less efficient "
        "per FLOP; 0 = matmul FLOPs only"))
    attn_decode_mem_eff: float = Field(0.85, gt=0, le=1, description=(
        "fraction of DRAM bandwidth decode attention streams the KV cache at when enough work units are in flight "
        "(AIConfigurator tables: 0.8-0.95 of the datasheet on >1 GB of KV)"))
    attn_decode_eff: float = Field(0.55, gt=0, le=1, description=(
        "fraction of tensor peak of decode attention's math (default: attn_prefill_eff); "
        "fp8 decode uses attn_prefill_eff_fp8 x attn_decode_eff / attn_prefill_eff"))
    attn_decode_mem_eff_fp8kv: float = Field(0.85, gt=0, le=1, description=(
        "attn_decode_mem_eff when the KV cache is fp8 (default: attn_decode_mem_eff): half the bytes do not halve "
        "the time (dequantisation, narrower loads)"))
    attn_decode_overhead_s: float = Field(2.5e-6, ge=0, description=(
        "fixed cost of one decode attention call, in cycles given at COMM_REF_CLOCK_HZ (decode_attention_time)"))
    attn_decode_cuda_group: float = Field(1e4, ge=1, description=(
        "GQA group (query heads per KV head) above which decode attention's math runs on CUDA cores at "
        "attn_decode_cuda_eff x fp32 peak, not on tensor cores (TRT-LLM's XQA kernels take groups up to 32; "
        "AIConfigurator's TRT-LLM tables run groups of 48-128 3-5x slower on all four GPUs); a steep logistic "
        "step (exponent _L2_STEP) so the fit can place it; the default 10^4 is beyond any model's group (off)"))
    attn_decode_cuda_eff: float = Field(0.5, gt=0, le=1, description=(
        "fraction of fp32 peak of decode attention's math on CUDA cores (attn_decode_cuda_group)"))
    # Work units (docs/model.md, "decode attention"; defaults: the leave-one-GPU-out fits' typical values): one thread block per (sequence, KV head, KV split) as in
    # FlashDecoding / FlashInfer / TRT-LLM XQA; the SMs run units_per_sm of them at a time, each paying a fixed
    # cost and streaming its share of the KV cache at most at attn_decode_unit_bytes_per_s (Little's law: the
    # bytes one block keeps in flight over the memory latency), so few units cannot saturate DRAM.
    attn_decode_unit_s: float = Field(1e-6, ge=0, description=(
        "fixed time of one work unit (query load, block-table walk, partial-result write); 0 = no work-unit term"))
    attn_decode_unit_bytes_per_s: float = Field(6e10, gt=0, description=(
        "KV bandwidth one work unit (thread block) reaches on its own"))
    attn_decode_units_per_sm: float = Field(0.35, gt=0, description="work units an SM runs at a time")
    attn_decode_split_tokens: float = Field(128.0, ge=0, description=(
        "fewest KV tokens of one split-KV chunk: a call with fewer (sequence x KV head) units than SM slots "
        "splits each sequence's KV into up to ctx / this chunks to fill them; 0 = no split-KV"))
    attn_decode_split_s: float = Field(6e-6, ge=0, description=(
        "fixed cost of split-KV's reduction pass, paid in full when every unit is split many ways"))
    # The tables time the same KV cache call after call, so a KV working set that fits in L2 is read from L2:
    # GDDR cards with a large L2 (L40S 96 MiB, RTX PRO 6000 128 MiB) run such calls 1.6x faster than DRAM allows.
    attn_decode_l2_gain: float = Field(2.0, ge=1, description=(
        "bandwidth of a decode KV working set that fits in L2, relative to attn_decode_mem_eff x DRAM; 1 = none"))
    attn_decode_l2_frac: float = Field(1.0, gt=0, description=(
        "KV working set, as a fraction of the L2 size (HardwareSpec memory.l2_bytes), at which half the L2 gain is "
        "left (a steep logistic step: exponent _L2_STEP)"))
    # Absorbed-MLA decode without split-KV (ENGINE_MLA): one thread block per sequence walks its cached latent
    # token after token, every query head in it, so a few long sequences leave the GPU idle.
    attn_decode_latent_token_cycles: float = Field(0.0, ge=0, description=(
        "SM cycles one absorbed-MLA decode work unit spends per cached token when the engine's kernel runs one "
        "unit per sequence without split-KV on a GPU without warpgroup MMA (latent_nosplit_cycle_s); 0 = the "
        "kernel splits the KV like any decode kernel (ENGINE_MLA sets TensorRT-LLM's)"))
    # Memory-bound elementwise kernels reach 80-90% of STREAM-like bandwidth on large tensors.
    elementwise_mem_eff: float = Field(0.80, gt=0, le=1)
    vector_eff: float = Field(0.5, gt=0, le=1, description="fraction of fp32 vector peak for dequantization")
    elementwise_norm_passes: float = Field(1.0, gt=0, description=(
        "memory passes of a normalisation kernel (op kind 'norm') relative to graph.elementwise's one read "
        "and one write: an unfused implementation makes several (numpy's RMSNorm: x*x, mean, x*r, *w = 3.5x); "
        "1 = fused"))
    elementwise_act_passes: float = Field(1.0, gt=0, description=(
        "the same for the gated activation (op kind 'activation': mlp_act, moe_act, silu_mul, gelu): numpy's "
        "silu(g)*u = 4x; 1 = fused"))
    elementwise_rope_passes: float = Field(1.0, gt=0, description=(
        "the same for rotary embeddings (op kind 'rope'): numpy's rotate-half (x1*c, x2*s, -, x2*c, x1*s, +, "
        "concatenate) reads 5 and writes 4 arrays' worth against 1 + 1 -> 4.5; 1 = fused"))
    kernel_overhead_s: float = Field(2.5e-6, ge=0, description=(
        "launch + tail of one elementwise/sampling kernel; an unfused kernel pays it once per pass "
        "(elementwise_norm_passes / _act_passes / _rope_passes launches)"))
    elementwise_residual_fused: bool = Field(True, description=(
        "the op graph's residual adds (op kind 'residual') run inside the next normalisation kernel, so they pay "
        "their bytes but no launch of their own: vLLM's and SGLang's RMSNorm take the residual (fused_add_rms_norm, "
        "vllm/model_executor/layers/layernorm.py; sgl-kernel fused_add_rmsnorm), TensorRT-LLM's RMSNorm(residual=) "
        "and its all-reduce + residual + RMSNorm fusion (AllReduceFusionOp.RESIDUAL_RMS_NORM); False = a kernel of "
        "its own (numpy / torch eager, validation/local)"))
    elementwise_cache_gain: float = Field(1.0, ge=1, description=(
        "bandwidth of an elementwise kernel whose working set fits in the last-level cache, relative to DRAM "
        "(cache-aware roofline, Ilic et al., IEEE CAL 2014); 1 = every kernel streams from DRAM"))
    elementwise_norm_cache_gain: float = Field(1.0, ge=1, description=(
        "elementwise_cache_gain of normalisation kernels (default: elementwise_cache_gain); an unfused RMSNorm's row "
        "reduction runs at a fixed element rate in cache and DRAM alike, so it gains less from the cache"))
    elementwise_act_cache_gain: float = Field(1.0, ge=1, description=(
        "elementwise_cache_gain of the gated activation (default: elementwise_cache_gain): exp and division"))
    elementwise_rope_cache_gain: float = Field(1.0, ge=1, description=(
        "elementwise_cache_gain of rotary embeddings (default: elementwise_cache_gain)"))
    elementwise_cache_bytes: float = Field(0.0, ge=0, description=(
        "working set (bytes read + written by one pass) at which an elementwise kernel is halfway between cache "
        "and DRAM bandwidth: time x (1 + (gain - 1) s) / gain, s = ws^2 / (ws^2 + this^2); 0 = no cache regime"))
    # TP all-reduce as the serving framework runs it: its own one-shot/two-shot kernel (vLLM/SGLang custom
    # all-reduce, TRT-LLM's) below comm_oneshot_max_bytes, NCCL above (docs/model.md, "Collectives")
    comm_bw_eff: float = Field(0.20, gt=0, le=1, description=(
        "throughput of the engine's all-reduce kernel per thread block as a fraction of one 16-byte access per SM "
        "clock (it runs CUSTOM_AR_BLOCKS blocks); its bandwidth is min(link x nccl_bw_eff, this)"))
    comm_latency_s: float = Field(4e-6, ge=0, description=(
        "fixed cost of one engine all-reduce call at the reference clock (one-shot kernel; also added to the NCCL "
        "fallback above comm_oneshot_max_bytes)"))
    # two-shot = reduce-scatter + all-gather: more barriers than one-shot
    comm_twoshot_latency_x: float = Field(1.8, gt=0, description="two-shot kernel's fixed cost / one-shot's")
    comm_oneshot_max_bytes: float = Field(8 * 1024 * 1024, ge=0, description=(
        "largest message the engine's own all-reduce kernel takes (vLLM CustomAllreduce max_size = 8 MiB); "
        "above it, and on PCIe with more than 2 GPUs, the engine calls NCCL; 0 = always NCCL"))
    comm_floor_s: float = Field(0.0, ge=0, description="minimum time of one TP all-reduce call (host dispatch)")
    comm_custom_nvlink_only: bool = Field(False, description=(
        "the engine runs its own all-reduce kernel only between NVLink-connected GPUs and calls NCCL over PCIe "
        "(TensorRT-LLM's AUTO strategy: ENGINE_COMM); False = also on two PCIe GPUs with peer access (vLLM, SGLang)"))
    # NCCL collectives (all-gather, reduce-scatter, all-to-all, send/recv, NCCL all-reduce): NCCL's own tuning
    # model (latency per algorithm/protocol, bus bandwidth) on the datasheet link; these scale the link bandwidth
    nccl_bw_eff: float = Field(0.80, gt=0, le=1, description=(
        "bus bandwidth of NCCL's Simple protocol as a fraction of the datasheet NVLink bandwidth, on Ampere (default: "
        "NCCL's own link model, 20.0 of 25 GB/s per NVLink3 link, src/graph/topo.h); other generations scale it by "
        "NCCL's own ratio (NVLINK_NCCL_X)"))
    nccl_bw_eff_pcie: float = Field(0.75, gt=0, le=1, description=(
        "the same over PCIe or the network (default: NCCL's PCI_BW, 12 of 16 GB/s for PCIe Gen3 x16)"))
    nccl_pcie_share_exp: float = Field(1.0, ge=0, description=(
        "exponent of the PCIe share min(1, 2/n) (PCIE_RING_SHARE_GPUS): 1 = n GPUs share a root complex's "
        "forwarding bandwidth, 0 = a non-blocking PCIe switch; a property of the host, not of the GPU"))
    # AIConfigurator's nccl-tests tables (A100, H100 NVSwitch): per byte, 2 / 4 GPUs take 0.65-0.83 / 0.88-0.96 of
    # the 8-GPU time against the plain ring's 0.57 / 0.86; every three-GPU fit takes 0.4-0.7
    nccl_ring_extra_steps: float = Field(0.0, ge=0, description=(
        "steps of 1/n of the message one NCCL ring pass costs beyond its n-1 (all-reduce: 2(n-1)) steps"))
    nccl_latency_s: float = Field(0.0, ge=0, description=(
        "fixed cost added to NCCL's tuning-model latency (nccl-tests need none: 0)"))
    decode_cuda_graphs: bool = Field(False, description=(
        "decode-only iterations replay as CUDA graphs (vLLM/SGLang/TRT-LLM capture decode batches), so their "
        "framework all-reduces pay no comm_floor_s host dispatch (Kernel.graphed); False = every call pays it"))
    step_overhead_s: float = Field(1.0e-3, ge=0, description="per-iteration framework CPU overhead")
    step_overhead_per_seq_s: float = Field(1.0e-5, ge=0, description="per-sequence CPU cost of one iteration")
    # MoE routing: Zipf exponent of the experts' popularity (graph.expert_load; AIConfigurator's MoE tables time
    # power_law_1.01 / 1.2 routing); 0 = uniform; > 0: fewer experts' weights read, the busiest EP GPU sets the pace
    moe_routing_skew: float = Field(0.0, ge=0)
    source: str = "defaults (docs/model.md)"
    # One ensemble member's kernel time multipliers (model.uncertainty.ErrorModel.member_scales): every call of a
    # kernel in error group family/dtype/regime takes this factor x its time, its most specific group winning
    # (parent_keys). Runtime only: never written to profiles or run files; () = the plain prediction.
    time_scale: tuple[tuple[str, float], ...] = Field((), exclude_if=lambda v: not v)

    @model_validator(mode="before")
    @classmethod
    def _inherit(cls, data: Any) -> Any:
        """A refined field that is not given takes the value of the field it refines (given or default)."""
        if not isinstance(data, dict):
            return data
        if (_OBSOLETE | _OBSOLETE_DECODE) & data.keys():
            old = sorted(_OBSOLETE_DECODE & data.keys())
            if old:
                log.warning("calibration %r: %s belong to the earlier decode-attention model and are not read "
                            "(the work-unit model's defaults stand; rebuild the profile)", data.get("name", ""),
                            ", ".join(old))
            data = {k: v for k, v in data.items() if k not in _OBSOLETE | _OBSOLETE_DECODE}
        missing = [f for f in _INHERIT if f not in data]
        if not missing:
            return data
        data = dict(data)
        for f in missing:  # _INHERIT is ordered so a parent is filled before its children
            parent = _INHERIT[f]
            if parent in data:
                data[f] = data[parent]
        return data


# refined field -> the field it defaults to (ordered: fp8 before fp8_block)
_INHERIT: dict[str, str] = {
    "gemm_eff_fp8": "gemm_eff",
    "gemm_eff_fp8_block": "gemm_eff_fp8",
    "gemm_eff_int8": "gemm_eff",
    "gemm_overhead_s": "kernel_overhead_s",
    "gemm_overhead_s_fp8": "gemm_overhead_s",
    "gemm_grouped_overhead_s": "gemm_overhead_s",
    "gemm_overhead_s_fp8_block": "gemm_overhead_s_fp8",
    "attn_prefill_eff_fp8": "attn_prefill_eff",
    "attn_prefill_triton_flops_per_clk_fp8": "attn_prefill_triton_flops_per_clk",
    "attn_prefill_mem_eff": "gemm_mem_eff",
    "gemm_gemv_mem_eff": "gemm_mem_eff",
    "elementwise_norm_cache_gain": "elementwise_cache_gain",
    "elementwise_act_cache_gain": "elementwise_cache_gain",
    "elementwise_rope_cache_gain": "elementwise_cache_gain",
    "attn_decode_eff": "attn_prefill_eff",
    "attn_decode_mem_eff_fp8kv": "attn_decode_mem_eff",
    "attn_prefill_overhead_s": "kernel_overhead_s",
    "attn_decode_overhead_s": "kernel_overhead_s",
    "nccl_bw_eff_pcie": "nccl_bw_eff",
}

# fields of the earlier communication model (one latency per hop, a GPU-count bandwidth exponent): a profile that
# still has them reads without them (docs/validation.md, "Profile files")
_OBSOLETE: frozenset[str] = frozenset({"nccl_hop_s", "nccl_bw_gpu_exp"})
# fields of the earlier decode-attention model (bandwidth ramps in context and in batch x KV heads, a per-sequence
# floor), replaced by the work-unit model: a profile that has them reads without them, with a warning
_OBSOLETE_DECODE: frozenset[str] = frozenset({"attn_decode_ctx_half", "attn_decode_par_half", "attn_decode_seq_s"})


DEFAULT_CALIBRATION = Calibration()


@lru_cache(maxsize=256)
def scale_table(time_scale: tuple[tuple[str, float], ...]) -> dict[str, float]:
    """Calibration.time_scale as a dict (one per distinct member, cached); time_factor memoises fallbacks in it."""
    return dict(time_scale)


def time_factor(table: dict[str, float], family: str, dtype: str, terms: Terms, comm: bool = False) -> float:
    """The multiplier of a kernel call of `family`/`dtype` with roofline `terms` (compute, memory, floor, overhead)
    in a member's scale_table: its error group's (model.uncertainty.regime_of), else the nearest pooled parent's,
    else 1."""
    key = group_key(family, dtype, regime_of(*terms, comm=comm))
    f = table.get(key)
    if f is None:
        f = next((table[p] for p in parent_keys(key) if p in table), 1.0)
        table[key] = f
    return f


def _scaled(table: dict[str, float], family: str, dtype: str, terms: Terms) -> Terms:
    f = time_factor(table, family, dtype, terms)
    c, m, fl, o = terms
    return c * f, m * f, fl * f, o * f


@dataclass(frozen=True, slots=True)
class KernelCost:
    kernel: Kernel
    seconds: float  # all `count` invocations
    compute_s: float  # one invocation
    memory_s: float  # one invocation
    bound: Bound

    @property
    def achieved_flops_per_s(self) -> float:
        return self.kernel.flops * self.kernel.count / self.seconds if self.seconds > 0 else 0.0

    @property
    def achieved_bytes_per_s(self) -> float:
        return self.kernel.bytes * self.kernel.count / self.seconds if self.seconds > 0 else 0.0


@dataclass(frozen=True, slots=True)
class StepCost:
    seconds: float
    kernels: tuple[KernelCost, ...]
    overhead_s: float
    flops: float  # per GPU
    bytes: float  # per GPU
    energy_j: float  # all GPUs of the replica
    num_gpus: int
    peak_flops_per_s: float
    bandwidth_bytes_per_s: float

    @property
    def seconds_by_bound(self) -> dict[str, float]:
        out = {"compute": 0.0, "memory": 0.0, "communication": 0.0, "overhead": self.overhead_s}
        for kc in self.kernels:
            out[kc.bound] += kc.seconds
        return out

    @property
    def bound(self) -> str:
        by = self.seconds_by_bound
        return max(by, key=lambda k: by[k])

    @property
    def mfu(self) -> float:
        return self.flops / (self.seconds * self.peak_flops_per_s) if self.seconds > 0 else 0.0

    @property
    def mbu(self) -> float:
        return self.bytes / (self.seconds * self.bandwidth_bytes_per_s) if self.seconds > 0 else 0.0


def _wave_util(tiles: float, units: int) -> float:
    waves = math.ceil(tiles / units)
    return tiles / (waves * units)


# GEMM recipes that run on another dtype's tensor-core peak
PEAK_DTYPE: dict[str, str] = {"fp8_block": "fp8"}


# bytes per element of the activation a quantised-activation GEMM writes in its quantise kernel (W8A8 fp8 / int8,
# W4A4 fp4); that kernel reads the 16-bit activation (2 bytes per element) and writes this
QUANT_ACT_BYTES: dict[str, float] = {"fp8": 1.0, "fp8_block": 1.0, "int8": 1.0, "fp4": 0.5}


def gemm_quant_bytes(k: Kernel) -> float:
    """Bytes the quantise kernel inside a quantised-activation GEMM call moves: it reads the 16-bit [rows, k]
    activation and writes it quantised (scales are 1/16-1/128 of that), as a separate pass before the GEMM."""
    out = QUANT_ACT_BYTES.get(k.dtype)
    if out is None or not (k.n and k.k):
        return 0.0
    return k.flops / (2.0 * k.n) * (2.0 + out)  # rows x k elements (a grouped GEMM: every group's rows)


def tensor_power_factor(hw: HardwareSpec, cal: Calibration) -> float:
    """Fraction of its datasheet tensor peaks a GPU sustains under its power limit (gemm_tensor_j_per_flop_ghz2):
    the L40S (350 W for 362 TFLOP/s at 2.52 GHz) reaches 0.72 of it, the H100 SXM and A100 all; 1 off GPUs."""
    if not cal.gemm_tensor_j_per_flop_ghz2 or hw.kind != "gpu" or not hw.supports("bf16"):
        return 1.0
    ghz = hw.compute.clock_hz / 1e9
    return min(1.0, hw.power.tdp_w / (hw.peak("bf16") * cal.gemm_tensor_j_per_flop_ghz2 * ghz * ghz))


# Fraction of its datasheet fp8 peak a per-tensor fp8 GEMM can reach, by architecture (before gemm_eff_fp8). On
# Hopper the best published fp8 GEMM, DeepGEMM at "up to 1550 TFLOPS" on H800 (github.com/deepseek-ai/DeepGEMM
# README, 2025-04-18 news; H800 has the H100 SXM's SMs and clock), reaches 0.78 of the 1978.9 TFLOP/s peak, and
# AIConfigurator's large fp8 GEMMs run at only 1.16-1.35x the bf16 rate on H100 against 1.38-1.81x on the mma.sync
# GPUs (L40S, RTX PRO 6000), whatever the engine's kernel: cuBLASLt (TensorRT-LLM), sgl-kernel's and vLLM's
# CUTLASS sm90 kernels (vLLM's with fast accumulation, scaled_mm_sm90_fp8_dispatch.cuh, so not only the
# promotion of Hopper's reduced-precision fp8 accumulator, DeepSeek-V3 report arXiv:2412.19437 sec. 3.3.2).
# Per-tensor fp8 only: block-scaled fp8 (fp8_block) rescales every K block on the CUDA cores on every
# architecture and runs below its peak everywhere (H100's fp8_block outruns its fp8 in the same tables; applying
# the fraction to it raised fp8_block's leave-one-GPU-out error by 3 points). A prior, not fitted: H100 is the
# only Hopper GPU measured, so no leave-one-GPU-out fit could pin it.
FP8_ARCH_PEAK_FRACTION: dict[str, float] = {"hopper": 1550.0 / 1978.9}


def gemm_peak_flops(dtype: str, hw: HardwareSpec, cal: Calibration) -> float:
    """FLOP/s a GEMM of `dtype` computes at on `hw` before its efficiency: the peak of the dtype it runs on
    (PEAK_DTYPE), limited by the power limit (tensor_power_factor) and, for per-tensor fp8, the architecture's
    fp8 accumulation (FP8_ARCH_PEAK_FRACTION)."""
    frac = FP8_ARCH_PEAK_FRACTION.get(hw.architecture, 1.0) if dtype == "fp8" else 1.0
    return hw.peak(PEAK_DTYPE.get(dtype, dtype)) * tensor_power_factor(hw, cal) * frac


# GEMM dtypes whose kernels give each output tile one CTA that walks the whole K, never splitting it to fill idle
# SMs as cuBLAS does: nvfp4 (FlashInfer's SM120 CUTLASS FP4 GEMM, include/flashinfer/gemm/fp4_gemm_cutlass_template_
# sm120.h: one 128x128x128 tile configuration with a data-parallel schedule; later FlashInfer adds 128x8-128x64
# tiles and StreamK, which tables of newer engines would show) and block-scaled fp8 (DeepGEMM's persistent scheduler
# hands out whole output blocks, deep_gemm/include/deep_gemm/common/scheduler.cuh; vLLM's and TensorRT-LLM's CUTLASS
# blockwise kernels use the default data-parallel tile scheduler). AIConfigurator's few-tile long-K rows take the
# one-CTA time (RTX PRO 6000 nvfp4, m=2 n=256 k=51200: 183 us, split-K predicted 13 us; TensorRT-LLM fp8_block
# m=1 n=2048 k=51200: 192 us, split-K predicted 93 us). fp8_block unsplit: leave-one-GPU-out fp8_block 19.0 ->
# 16.5 %, nvfp4 16.6 -> 15.1 % (300 rows per stratum); the fp8 MLA-BMM rows, which share the fitted block-scaled
# fixed cost but are grouped GEMMs, lose 1.7 points (docs/validation.md). Per-tensor fp8 splits or not by kernel,
# not by dtype: Kernel.no_splitk.
NO_SPLITK_DTYPES: frozenset[str] = frozenset({"fp4", "fp8_block"})
# Smallest output tile (rows, cols) of a dtype's GEMM kernels where it is above gemm_tile_menu's: the SM120 FP4
# GEMM above has only 128x128 (with NO_SPLITK_DTYPES: leave-one-GPU-out nvfp4 16.3 -> 14.1 %, P90 68 -> 36 %, 40 rows
# per stratum)
GEMM_MIN_TILE: dict[str, tuple[int, int]] = {"fp4": (128, 128)}
# The one output tile of a dtype's GEMM kernel on a GPU without warpgroup MMA (warp_mma_only: Ada, SM120 Blackwell):
# TensorRT-LLM's block-scaled fp8 GEMM there is a 32x128x128 tile on a (m/32, n/128) grid, no split-K
# (cpp/tensorrt_llm/kernels/cutlass_kernels/fp8_blockscale_gemm/fp8_blockscale_gemm_kernel.cuh: gemm_dispatch_sm89
# TileShape 32x128x128 grid_k = 1, gemm_dispatch_sm120 SM120BlockScaledBuilder<32, 128>), where Hopper runs DeepGEMM's
# 64-256-wide blocks (the menu)
GEMM_WARP_MMA_TILES: dict[str, tuple[tuple[int, int], ...]] = {"fp8_block": ((32, 128),)}

# GEMM recipes whose fixed cost is their own knob (gemm_overhead_s_fp8 / _fp8_block), not gemm_overhead_s
QUANT_RECIPES: frozenset[str] = frozenset({"fp8", "fp8_block", "fp4"})


def gemm_clock_factor(dtype: str, hw: HardwareSpec, cal: Calibration) -> float:
    """Multiplier of gemm_overhead(dtype) on `hw`: (COMM_REF_CLOCK_HZ / clock) ** gemm_overhead_clock_exp for
    the plain GEMM's gemm_overhead_s on a GPU, 1 for the quantised recipes' fixed costs."""
    if not cal.gemm_overhead_clock_exp or hw.kind != "gpu" or dtype in QUANT_RECIPES:
        return 1.0
    return (COMM_REF_CLOCK_HZ / hw.compute.clock_hz) ** cal.gemm_overhead_clock_exp


def gemm_overhead(dtype: str, cal: Calibration) -> float:
    """Fixed cost of one GEMM call: quantised-activation recipes pay the quantise kernel(s) that precede the GEMM
    inside the call, per-tensor fp8 (a global amax first) and block-scaled fp8_block / nvfp4 (one fused kernel)
    each their own."""
    if dtype == "fp8":
        return cal.gemm_overhead_s_fp8
    if dtype in ("fp8_block", "fp4"):
        return cal.gemm_overhead_s_fp8_block
    return cal.gemm_overhead_s


def gemm_peak_efficiency(dtype: str, cal: Calibration) -> float:
    """The GEMM's fraction of its dtype's peak on a large, well-shaped problem (per-dtype calibration)."""
    if dtype == "fp8":
        return cal.gemm_eff_fp8
    if dtype == "fp8_block":
        return cal.gemm_eff_fp8_block
    if dtype == "int8":
        return cal.gemm_eff_int8
    return cal.gemm_eff


def gemm_is_stream(m: int, n: int, k: int, cal: Calibration) -> bool:
    """True when the GEMM runs unpacked, as a weight stream: a GEMV (m <= gemm_gemv_max_m) or a small GEMM
    (m*n*k <= gemm_small_max_mnk): no tile padding or wave quantization, gemm_gemv_mem_eff."""
    return m <= cal.gemm_gemv_max_m or m * n * k <= cal.gemm_small_max_mnk


def gemm_shape_efficiency(m: int, n: int, k: int, units: int, cal: Calibration, groups: float = 1.0,
                          weight_only: bool = False, dtype: str = "bf16", no_splitk: bool = False,
                          warp_mma: bool = False, power: float = 1.0) -> float:
    """Tile padding x wave quantization (depends only on the integer tiling fields of `cal`); 1 for a GEMV
    (m <= gemm_gemv_max_m).

    Tile padding: a [m,n] output is computed in tiles of gemm_tile_menu (the best for the shape), so m=1 costs a
    whole tile row of MMA work (it stays memory-bound anyway). Waves: tiles run in ceil(tiles/SMs) waves; when
    there are fewer tiles than SMs, cuBLAS splits K (down to gemm_splitk_min_k per slice) to fill them; the
    kernels of NO_SPLITK_DTYPES (and a `no_splitk` kernel, Kernel.no_splitk) do not, GEMM_MIN_TILE bounds a dtype's
    tiles from below and on a `warp_mma` GPU (warp_mma_only) GEMM_WARP_MMA_TILES replaces the menu; a GEMM that
    leaves SMs idle on a power-limited GPU (`power` = tensor_power_factor < 1) runs its busy SMs faster
    (_tiled_efficiency). A grouped GEMM of `groups` experts with m rows each pads every expert's rows to its own row tile (the power of two >= m,
    from gemm_grouped_min_tile_m to gemm_tile_m, by gemm_tile_n) and runs the tiles of all experts in one launch.
    A `weight_only` GEMM (low-bit weights dequantised in the kernel: TensorRT-LLM's fpA_intB, Marlin) is not a
    cuBLAS call and keeps gemm_tile_m x gemm_tile_n (the menu cost its LOGO error 19 points on int4_wo).
    """
    if gemm_is_stream(m, n, k, cal) and groups <= 1.0:
        return 1.0
    tm, tn = cal.gemm_tile_m, cal.gemm_tile_n
    if groups > 1.0:
        return _tiled_efficiency(m, n, k, units, grouped_tile_m(m, cal), tn, groups, cal.gemm_splitk_min_k)
    menu = (() if weight_only else cal.gemm_tile_menu) or ((tm, tn),)
    if warp_mma:
        menu = GEMM_WARP_MMA_TILES.get(dtype, menu)
    lo_m, lo_n = GEMM_MIN_TILE.get(dtype, (0, 0))
    menu = tuple((max(a, lo_m), max(b, lo_n)) for a, b in menu)
    slice_k = k + 1 if no_splitk or dtype in NO_SPLITK_DTYPES else cal.gemm_splitk_min_k  # a slice longer than K: no split
    return max(_tiled_efficiency(m, n, k, units, a, b, 1.0, slice_k, power) for a, b in menu)


def grouped_tile_m(m: int, cal: Calibration) -> int:
    """Row tile of a grouped GEMM with m rows per group: the power of two >= m, from gemm_grouped_min_tile_m to
    gemm_tile_m."""
    return min(cal.gemm_tile_m, max(cal.gemm_grouped_min_tile_m, 1 << max(0, math.ceil(math.log2(max(1, m))))))


def gemm_dequant_flops(k: Kernel, cal: Calibration) -> float:
    """Vector FLOPs of a weight-only GEMM's dequantisation: once per weight for a plain GEMM (graph.gemm); a fused-
    MoE expert GEMM (Marlin, the Triton / CUTLASS W4A16 experts) dequantises each expert's weights in registers
    for every row tile of that expert, ceil(m / grouped_tile_m) times (AIConfigurator int4_wo / w4a16_mxfp4 module
    rows: the error grew with tokens per expert, most on the GPUs whose tensor-to-fp32 peak ratio is ~16, A100 and
    H100, against ~4 on L40S and RTX PRO 6000)."""
    if not k.dequant_flops or not k.moe_expert:
        return k.dequant_flops
    return k.dequant_flops * math.ceil(max(1, k.m) / grouped_tile_m(k.m, cal))


def _tiled_efficiency(m: int, n: int, k: int, units: int, tm: int, tn: int, groups: float, splitk_min_k: int,
                      power: float = 1.0) -> float:
    """Padding x wave utilisation of [m,n] (x groups) in tm x tn tiles, split-K filling idle SMs. `power`: the
    GPU's tensor_power_factor p, already in the peak: the power limit binds on the SMs in use, so a wave that keeps
    only a fraction f of them busy runs them at min(1, p / f) of their clock-limited rate (a sub-wave GEMM on the
    L40S, p = 0.72, up to 1/0.72 times the power-limited rate per SM); full waves run at p."""
    mt, nt = math.ceil(m / tm), math.ceil(n / tn)
    pad = (m * n) / (mt * tm * nt * tn)
    tiles = max(1, round(mt * nt * groups))
    if tiles < units:
        split = max(1, min(k // splitk_min_k, units // tiles))
        tiles *= split
    full, last = divmod(tiles, units)
    if power >= 1.0 or not last:
        return pad * _wave_util(tiles, units)
    # full waves at the power-limited rate, the last partial wave of last/units SMs at min(1, power / that)
    return pad * (full + last / units) / (full + max(power, last / units))


def gemm_groups(k: Kernel) -> float:
    """Experts of a grouped GEMM kernel (graph.gemm with `rows`): its FLOPs cover rows = groups x m; 1 for a plain
    GEMM (whose bias adds at most 1/(2k) to 2mnk)."""
    if not (k.m and k.n and k.k):
        return 1.0
    g = k.flops / (2.0 * k.m * k.n * k.k)
    return g if g > 1.01 else 1.0


def gemm_compute_efficiency(m: int, n: int, k: int, units: int, cal: Calibration, dtype: str = "bf16",
                            groups: float = 1.0, weight_only: bool = False, no_splitk: bool = False,
                            warp_mma: bool = False, power: float = 1.0) -> float:
    """Fraction of peak a GEMM reaches: eff_max(dtype) x tile padding x wave quantization x K-loop ramp."""
    kramp = k / (k + cal.gemm_k_half)
    shape = gemm_shape_efficiency(m, n, k, units, cal, groups, weight_only, dtype, no_splitk, warp_mma, power)
    return gemm_peak_efficiency(dtype, cal) * shape * kramp


# NCCL's tuning model (NVIDIA/nccl src/graph/tuning.cc @ 5067397, ncclTopoTuneModel): per protocol (LL, LL128,
# Simple) a base latency plus one hardware latency per ring step, in us, by link type (NVLink, PCIe, network).
NCCL_BASE_LAT_US = (6.6, 14.0, 8.4)
NCCL_HW_LAT_US = {"nvlink": (0.6, 1.9, 3.4), "pcie": (1.0, 2.5, 5.7), "net": (2.7, 4.0, 14.0)}
NCCL_NVLS_LAT_US = 25.0  # NVLS (NVLink SHARP) Simple latency, NVLink
# Across nodes (same tuning model): a ring crosses the network on only 2(nodes-1) of an all-reduce's 2(n-1) steps
# (nodes-1 of an all-gather's / reduce-scatter's n-1), its other steps stay on the node's fabric at that link's
# latency (LL's x 1.8 when nNodes > 1), at least NCCL's per-step network overhead (getNetOverhead: 1 us on x86
# hosts, x 3 for Simple); an all-reduce can also run as a tree, 2 x ((ppn-1) intra + log2(nodes) network hops) on
# the tree constants below, at half the bus bandwidth x 0.92 (LL: / 3.8). No multi-node collective is measured in
# ../shared (the nccl-tests tables stop at 8 GPUs): these constants are NCCL's, not fitted.
NCCL_TREE_BASE_LAT_US = (6.8, 14.0, 8.4)
NCCL_TREE_HW_LAT_US = {"nvlink": (0.6, 1.25, 4.0), "pcie": (1.0, 1.9, 4.0), "net": (5.0, 8.5, 14.0)}
NCCL_NET_OVERHEAD_US = 1.0
NCCL_TREE_BW_EFF = (0.92 / 3.8, 0.92)  # LL, Simple: busBw x these, algorithm bandwidth = half of it
# LL bus bandwidth cap, GB/s, one node (llMaxBws, by compute capability: Ampere index for sm80-89)
NCCL_LL_MAX_BW = {"volta": 39.0e9, "ampere": 87.7e9, "ada": 87.7e9, "hopper": 141.0e9, "blackwell": 282.0e9}
NCCL_NVLS_EFF = {"hopper": 0.85, "blackwell": 0.74}  # nvlsEfficiency: in-switch reduction on NVSwitch parts
# NCCL counts an NVLink link of each generation at its own fraction of the datasheet rate (src/graph/topo.h:
# SM80_NVLINK_BW 20.0, SM90 20.6, SM100 40.1 GB/s against 25 / 25 / 50 GB/s per link and direction for NVLink 3 / 4
# / 5): nccl_bw_eff is the Ampere fraction (default 0.80 = 20/25), and a Hopper link carries 20.6/20 of it, a
# Blackwell one (40.1/50)/(20/25). AIConfigurator's nccl-tests at 256 MiB over 4 GPUs: ring bus bandwidth 0.69 of
# the datasheet on A100, 0.74 on H100. Leave-one-GPU-out (40 per stratum): all-gather 13.1 -> 12.4 %, reduce-scatter
# 12.5 -> 11.1, all-to-all 15.3 -> 14.8, NCCL all-reduce 12.8 -> 12.1, the engines' all-reduce 21.1 -> 20.2.
NVLINK_NCCL_X = {"hopper": 20.6 / 20.0, "blackwell": (40.1 / 50.0) / (20.0 / 25.0)}
# NVLS all-reduce is taken from 8 GPUs up: AIConfigurator's H100 nccl-tests all-reduce tables reach a ring-formula
# bus bandwidth of 445 GB/s at 8 GPUs (above the 450 GB/s link's ring ceiling) but 320-350 GB/s at 2-4 GPUs
NCCL_NVLS_MIN_GPUS = 8
# An NVLS all-reduce moves (n+1)/n of the message over each GPU's link each way, not the (n-1)/n a ring step
# count suggests: its reduce-scatter half reads every slice through the switch (multimem.ld_reduce, PTX ISA
# "multimem": the switch reduces the copies of all n GPUs, the GPU's own included), so each GPU sends the whole
# message and receives its reduced 1/n; the all-gather half writes that 1/n once (multimem.st) and receives all n
# slices (NCCL src/device/all_reduce.h, the NVLS algorithm: scatter by ld_reduce, gather by multicast store).
# AIConfigurator's 8-GPU H100 nccl-tests fp16 all-reduce of 256 MiB takes 1.09 ms: message / time = 246 GB/s; the
# (n+1)/n traffic at 0.85 x 450 GB/s x NVLINK_NCCL_X x nccl_bw_eff (0.74, fitted on the other GPUs) predicts 258,
# (n-1)/n 331.
# Leave-one-GPU-out (300 per stratum): NCCL all-reduce 13.7 -> 12.8 %, the engines' all-reduce (NCCL above 8 MiB)
# 22.0 -> 21.2 %.
# NCCL's latency constants are taken at this SM clock (H100 SXM's); a GPU's fixed costs scale with 1/clock
# (kernel launch, flag polling and fences run in cycles): nccl-tests 8-GPU all-reduce latency x clock is
# 31.9 / 28.4 us.GHz on A100 / H100, 56 / 61 on L40S / RTX PRO 6000 (PCIe)
COMM_REF_CLOCK_HZ = 1.83e9
# vLLM csrc/custom_all_reduce.cuh @ 036bb68 (SGLang's custom all-reduce is a port): 36 blocks of 512 threads;
# one-shot at 2 GPUs, on full NVLink below 512 KB up to 4 GPUs / 256 KB up to 8, two-shot above; no custom kernel
# on more than two PCIe-only GPUs (custom_all_reduce.py: NCCL instead)
CUSTOM_AR_BLOCKS = 36
# The engine kernel's flag barrier between PCIe peers (2 GPUs without NVLink: custom_ok) costs what one step of
# NCCL's Simple protocol (flags and data apart, like these kernels) costs more over PCIe than over NVLink: 5.7 - 3.4
# us (NCCL_HW_LAT_US), bus time like every PCIe step (comm_terms). AIConfigurator's 2-GPU graphed one-shot
# rows, 0.25-8 KB: 5.2-5.7 us on L40S, 4.5 on H100 and 5.2 on A100 despite the L40S's higher clock; without the
# term one comm_latency_s averaged NVLink and PCIe barriers (leave-one-GPU-out, 40 per stratum: the engines'
# all-reduce 23.9 -> 22.5 %).
CUSTOM_AR_PCIE_LAT_US = NCCL_HW_LAT_US["pcie"][2] - NCCL_HW_LAT_US["nvlink"][2]
_ACCESS_BYTES = 16.0  # one 128-bit access (the kernels' packed loads)

# GPUs without NVLink exchange peer-to-peer over PCIe through the host's root complex (or PCIe switches): a pair
# streams at the x16 link's rate, but the n GPUs of a larger ring or all-to-all share the root complex's forwarding
# bandwidth, so each gets (2/n)^nccl_pcie_share_exp of the pair's (roofsim's assumption: the host topology is on
# no datasheet; NCCL user guide, "Troubleshooting", PCI Access Control Services: peer traffic routed through the CPU
# root complex instead of a PCIe switch loses bandwidth). AIConfigurator's nccl-tests tables: L40S (Gen4 x16)
# all-reduce bus bandwidth 20 / 5.2 / 1.4 GB/s at 2 / 4 / 8 GPUs, RTX PRO 6000 (Gen5 x16) 38 / 26 / 22 GB/s: the
# exponent fits 1.6-2.0 on the one host and 0.1-0.5 on the other, a host property that a fit keeps apart from the
# link's efficiency (0.6 of the link over 2 GPUs on both) and that a GPU predicted from its datasheet takes as 1
# (validation.calibrate.HOST_FABRIC_FIELDS).
PCIE_RING_SHARE_GPUS = 2.0

# Calibration fields that follow from an engine's all-reduce code rather than from a fit: TensorRT-LLM's AUTO
# strategy returns NCCL when the TP group is not all NVLink-connected (cpp/tensorrt_llm/plugins/ncclPlugin/
# allreducePlugin.cpp and thop/allreduceOp.cpp, selectImplementation: `if (isAuto && !mIsNVLINKSupported) return
# NCCL`); AIConfigurator's L40S / RTX PRO 6000 TRT-LLM all-reduce tables match their nccl-tests tables within 10 %.
ENGINE_COMM: dict[str, dict[str, Any]] = {"trtllm": {"comm_custom_nvlink_only": True}}
# TensorRT-LLM's absorbed-MLA generation kernel on GPUs without warpgroup MMA (A100, L40S, RTX PRO 6000) runs one
# thread block per sequence with no split-KV: AIConfigurator's generation_mla_perf tables (TRT-LLM 1.0-1.1, a few
# sequences, 2k-128k cached tokens) take 163-177 cycles per cached token on A100, 196-201 on L40S and 139-236 on
# RTX PRO 6000, whatever the heads (1-128) and the KV dtype, one sequence as long as 32 (on H100 its kernel splits
# the KV: 1-140 cycles). 190 is the middle of the three GPUs; each alone predicts the others within 20 %.
ENGINE_MLA: dict[str, dict[str, Any]] = {"trtllm": {"attn_decode_latent_token_cycles": 190.0}}
# Sequences per SM that the no-split kernel runs at that per-token speed: in the same tables a token takes 1.4-2x
# as long once 0.5-1 sequences per SM run (A100 64 sequences: 235 cycles, 128: 340; L40S 64: 324-355), as if the
# SMs served half as many sequences at full speed. One unit per SM with whole waves (the other choice) left
# TensorRT-LLM's MLA generation rows at 17 / 16 / 26 % on A100 / L40S / RTX PRO 6000 held out, this 19 / 13 / 15 %;
# each GPU pair picks 0.5 for the third (leave-one-GPU-out, 40 rows per stratum).
LATENT_NOSPLIT_UNITS_PER_SM = 0.5
# SGLang's Triton absorbed-MLA decode (layers/attention/triton_ops/decode_attention.py, the grouped kernel: one
# program per sequence x block of TRITON_MLA_BLOCK_H query heads x KV split) costs the GPU a fixed amount of SM time
# per (sequence, head block), whatever the cached length: AIConfigurator's SGLang 0.5.14 generation_mla_perf rows
# with <= 32 cached tokens grow by 0.71 us per unit on the L40S (1-1024 units, 142 SMs x 2.52 GHz: 2.54e5 SM
# cycles); the RTX PRO 6000's rows (0.52 us per unit, 188 SMs x 2.49 GHz: 2.44e5) were held out of the choice.
TRITON_MLA_BLOCK_H = 16
TRITON_MLA_UNIT_CYCLES = 2.54e5
# Its math (scores over 576, values over 512 per head and cached token) runs at a rate per SM clock, not at a share
# of the tensor peak: the L40S's 128-head rows with >= 16k cached tokens reach a median 140 FLOPs per SM cycle (the
# RTX PRO 6000's, held out, 136; 64 heads: 119 / 116).
TRITON_MLA_FLOPS_PER_CLK = 140.0

# the calibration-free terms of a communication kernel (FeatureTable keeps one column per name)
COMM_TERMS: tuple[str, ...] = (
    "custom", "gpus", "bytes", "link_bw", "nvlink", "clock_hz", "ll_max_bw", "traffic", "lat_ll", "lat_ll128",
    "lat_simple", "nvls_eff", "oneshot", "custom_ok", "lat_tree_ll", "lat_tree_simple", "pcie_share")


def comm_terms(k: Kernel, hw: HardwareSpec) -> dict[str, float]:
    """Calibration-free terms of one communication kernel (COMM_TERMS): the link it crosses, NCCL's ring
    latencies per protocol for its step count (seconds at COMM_REF_CLOCK_HZ), the bytes per GPU per byte of
    message (`traffic`: ring all-reduce 2(n-1)/n, all-gather / reduce-scatter / all-to-all (n-1)/n of the
    nccl-tests buffer, send/recv 1; Thakur et al. 2005) and which engine kernel an all-reduce runs."""
    n = max(1, k.comm_gpus)
    ic = hw.interconnect
    nodes = 1 if n <= ic.scaleup_max_gpus else math.ceil(n / max(1, ic.scaleup_max_gpus))
    intra = "nvlink" if ic.scaleup_bytes_per_s > ic.pcie_bytes_per_s else "pcie"  # a fabric faster than PCIe
    share = 1.0  # the fraction of the link a GPU gets when n GPUs share the host's PCIe fabric
    if nodes == 1:
        nvlink, bw = intra == "nvlink", (ic.scaleup_bytes_per_s or ic.pcie_bytes_per_s)
        if not nvlink:
            share = min(1.0, PCIE_RING_SHARE_GPUS / n)
    else:  # across nodes the bus bandwidth is the GPU's network port
        nvlink, bw = False, ic.scaleout_bytes_per_s or ic.pcie_bytes_per_s
    allreduce = k.op in ALLREDUCE_OPS
    steps = 1.0 if k.op == "send_recv" else 2.0 * (n - 1) if allreduce else float(n - 1)
    traffic = 1.0 if k.op == "send_recv" else steps / n
    # comm_time scales every latency by COMM_REF_CLOCK_HZ / clock (cycles), but a PCIe step's hardware latency is
    # bus time (a posted write and a flag poll through the host's PCIe fabric): stated at the GPU's clock here, it
    # comes out unscaled. AIConfigurator's nccl-tests all-reduce of 512 B over 8 GPUs: 22.6 us on L40S (2.52 GHz),
    # 24.6 on RTX PRO 6000 (2.43 GHz), i.e. 1.3 / 1.4 us per step above the clock-scaled base (NCCL's table: 1.0),
    # 1.75 / 1.86 if the steps scaled too. Leave-one-GPU-out (40 per stratum, CUSTOM_AR_PCIE_LAT_US unscaled too):
    # all-gather 13.9 -> 13.1 %, reduce-scatter 12.9 -> 12.5, all-to-all 15.5 -> 15.3, the engines' all-reduce
    # 21.3 -> 21.1, NCCL all-reduce 12.8 either way.
    step_x = hw.compute.clock_hz / COMM_REF_CLOCK_HZ if intra == "pcie" else 1.0
    lat, tree = _nccl_latencies_us(steps, n, nodes, intra, allreduce and k.op != "send_recv", step_x)
    nvls = allreduce and nvlink and n >= NCCL_NVLS_MIN_GPUS
    if nvlink:
        bw *= NVLINK_NCCL_X.get(hw.architecture, 1.0)
    return {"custom": float(k.op == "allreduce"), "gpus": float(n), "bytes": k.comm_bytes, "link_bw": bw,
            "nvlink": float(nvlink), "clock_hz": hw.compute.clock_hz,
            "ll_max_bw": NCCL_LL_MAX_BW.get(hw.architecture, NCCL_LL_MAX_BW["ampere"]), "traffic": traffic,
            "lat_ll": lat[0] * 1e-6, "lat_ll128": lat[1] * 1e-6, "lat_simple": lat[2] * 1e-6,
            "nvls_eff": NCCL_NVLS_EFF.get(hw.architecture, 0.0) if nvls else 0.0,
            "oneshot": float(n == 2 or (n <= 4 and k.comm_bytes < 512 * 1024) or k.comm_bytes < 256 * 1024),
            "custom_ok": float(n <= ic.scaleup_max_gpus and (n == 2 or nvlink)),
            "lat_tree_ll": tree[0] * 1e-6, "lat_tree_simple": tree[1] * 1e-6, "pcie_share": share}


def _nccl_latencies_us(steps: float, n: int, nodes: int, intra: str, allreduce: bool, step_x: float = 1.0
                       ) -> tuple[list[float], tuple[float, float]]:
    """NCCL's ring latency per protocol (LL, LL128, Simple) for `steps` ring steps over `n` GPUs on `nodes`
    nodes (one node: each step's hardware latency x `step_x`), and its tree all-reduce latency (LL, Simple; inf
    where NCCL runs no tree: one node here, whose all-reduces the ring/NVLS model was fitted on, and every other
    collective), in us."""
    if nodes == 1:
        return [b + steps * h * step_x for b, h in zip(NCCL_BASE_LAT_US, NCCL_HW_LAT_US[intra], strict=True)], \
            (math.inf, math.inf)
    inter = 2.0 * (nodes - 1) if allreduce else float(nodes - 1)
    ring = []
    for p, (b, h, net) in enumerate(zip(NCCL_BASE_LAT_US, NCCL_HW_LAT_US[intra], NCCL_HW_LAT_US["net"],
                                        strict=True)):
        h_intra = max(h * (1.8 if p == 0 else 1.0), NCCL_NET_OVERHEAD_US * (3.0 if p == 2 else 1.0))
        ring.append(b + (steps - inter) * h_intra + inter * net)
    if not allreduce:
        return ring, (math.inf, math.inf)
    ppn, hops = n / nodes, math.log2(nodes)
    tree = tuple(NCCL_TREE_BASE_LAT_US[p] + 2.0 * ((ppn - 1) * NCCL_TREE_HW_LAT_US[intra][p] * (1.8 if p == 0 else 1.0)
                                                  + hops * NCCL_TREE_HW_LAT_US["net"][p]) for p in (0, 2))
    return ring, (tree[0], tree[1])


def comm_time(f: Mapping[str, Any], p: Mapping[str, Any], graphed: Any = False) -> Any:
    """Seconds of communication kernels from their comm_terms `f` and calibration fields `p` (floats or numpy
    arrays alike: kernel_cost and FeatureTable share this). NCCL: the fastest of ring LL (half the bus bandwidth,
    capped), LL128 (92 %, NVLink only), Simple and, from 8 NVSwitch GPUs on Hopper/Blackwell, NVLS all-reduce
    ((n+1)/n of the message per GPU at nvls_eff), each latency + traffic x bytes / bandwidth (NCCL
    ncclTopoGetAlgoTime). The engine's all-reduce: one-shot ((n-1) x bytes) or two-shot (2(n-1)/n x bytes) at
    min(link, blocks x clock x 16 B x comm_bw_eff) (its barrier CUSTOM_AR_PCIE_LAT_US dearer between PCIe peers), or
    NCCL + its call cost; eager calls never below comm_floor_s."""
    ck = COMM_REF_CLOCK_HZ / f["clock_hz"]
    nvlink = f["nvlink"] > 0
    busbw = f["link_bw"] * np.where(nvlink, p["nccl_bw_eff"],
                                    p["nccl_bw_eff_pcie"] * f["pcie_share"] ** p["nccl_pcie_share_exp"])
    # each ring pass pays nccl_ring_extra_steps more steps of 1/n of the message (pipeline fill and drain)
    moved = (f["traffic"] + p["nccl_ring_extra_steps"] / f["gpus"]) * f["bytes"]
    t = ck * f["lat_simple"] + moved / busbw
    t = np.minimum(t, ck * f["lat_ll"] + moved / np.minimum(f["ll_max_bw"], 0.5 * busbw))
    t = np.where(nvlink, np.minimum(t, ck * f["lat_ll128"] + moved / (0.92 * busbw)), t)
    nvls_eff = np.maximum(f["nvls_eff"], 1e-30)
    t = np.where(f["nvls_eff"] > 0, np.minimum(t, ck * NCCL_NVLS_LAT_US * 1e-6 + (f["gpus"] + 1) / f["gpus"]
                                               * f["bytes"] / (nvls_eff * busbw)), t)
    tree_bw = 0.5 * busbw  # a tree all-reduce's algorithm bandwidth: half the bus bandwidth (NCCL ratio .5)
    t = np.minimum(t, ck * f["lat_tree_ll"] + f["bytes"] / (NCCL_TREE_BW_EFF[0] * tree_bw))
    t = np.minimum(t, ck * f["lat_tree_simple"] + f["bytes"] / (NCCL_TREE_BW_EFF[1] * tree_bw))
    nccl = t + p["nccl_latency_s"]
    n = f["gpus"]
    kbw = np.minimum(busbw, CUSTOM_AR_BLOCKS * f["clock_hz"] * _ACCESS_BYTES * p["comm_bw_eff"])
    lat = ck * p["comm_latency_s"]
    klat = lat + np.where(nvlink, 0.0, CUSTOM_AR_PCIE_LAT_US * 1e-6)  # PCIe bus time: not clock-scaled
    kernel = np.where(f["oneshot"] > 0, klat + (n - 1) * f["bytes"] / kbw,
                      klat * p["comm_twoshot_latency_x"] + 2 * (n - 1) / n * f["bytes"] / kbw)
    custom_ok = (f["custom_ok"] > 0) & (nvlink | np.logical_not(p["comm_custom_nvlink_only"]))
    own = np.where(custom_ok & (f["bytes"] < p["comm_oneshot_max_bytes"]), kernel, nccl + lat)
    own = np.where(graphed, own, np.maximum(own, p["comm_floor_s"]))
    return np.where(f["custom"] > 0, own, nccl)


def allreduce_seconds(message_bytes: float, gpus: int, hw: HardwareSpec, cal: Calibration,
                      nccl: bool = False, graphed: bool = False) -> float:
    """All-reduce of `message_bytes` over `gpus`: the serving framework's TP all-reduce (default) or NCCL's
    (comm_time; docs/model.md "Communication"). Eager framework calls never go below `comm_floor_s` (host
    dispatch); `graphed` calls (replayed in a CUDA graph) do."""
    if gpus <= 1 or message_bytes <= 0:
        return 0.0
    k = Kernel(name="nccl_allreduce" if nccl else "tp_allreduce", op="nccl_allreduce" if nccl else "allreduce",
               dtype="bf16", comm_bytes=message_bytes, comm_gpus=gpus)
    return float(comm_time(comm_terms(k, hw), cal.__dict__, graphed))


def comm_seconds(k: Kernel, hw: HardwareSpec, cal: Calibration) -> float:
    """One invocation of a communication kernel: op `allreduce` is the framework's all-reduce (comm_* fields),
    everything else (all-gather, reduce-scatter, all-to-all, send/recv, `nccl_allreduce`) runs on NCCL (nccl_*)."""
    if k.op in ALLREDUCE_OPS and (k.comm_gpus <= 1 or k.comm_bytes <= 0):
        return 0.0
    return float(comm_time(comm_terms(k, hw), cal.__dict__, k.graphed))


def prefill_score_terms(scores: float, heads: int, window: int, t: float, seqs: float) -> tuple[float, float]:
    """(scores, edge) of a prefill attention call: effective scores = scores + edge x min(tile, s)/2 with s the
    mean new tokens per sequence; edge = heads x tokens x edges, edges = 1 (causal diagonal) + 1 (the window's
    trailing edge, when the chunk is longer than the window)."""
    s = t / max(1.0, seqs)
    edges = 2.0 if window and s > window else 1.0
    return scores, heads * t * edges


def prefill_score_work(scores: float, edge: float, flops_per_score: float, s: float, cal: Calibration) -> float:
    """Tensor-FLOP equivalents of prefill attention's `scores` (`flops_per_score` matmul FLOPs each): the whole
    tiles computed at causal/window edges (attn_prefill_tile) plus the softmax per score (attn_softmax_flops)."""
    return (scores + edge * min(cal.attn_prefill_tile, s) / 2.0) * (flops_per_score + cal.attn_softmax_flops)


def prefill_attention_flops(k: Kernel, cal: Calibration) -> float:
    """prefill_score_work of a prefill attention kernel (k.flops when attn_prefill_tile and attn_softmax_flops
    are both 0)."""
    if not k.scores or not (cal.attn_prefill_tile or cal.attn_softmax_flops):
        return k.flops
    scores, edge = prefill_score_terms(k.scores, k.heads, k.window, k.m, k.n)
    return prefill_score_work(scores, edge, k.flops / scores, k.m / max(1, k.n), cal)


def elementwise_passes(op: str, cal: Calibration) -> float:
    """Memory-traffic multiplier of an elementwise kernel of op kind `op` (unfused implementations make several
    passes): normalisation, gated activation, rotary embedding; 1 for anything else."""
    if op == "norm":
        return cal.elementwise_norm_passes
    if op == "activation":
        return cal.elementwise_act_passes
    if op == "rope":
        return cal.elementwise_rope_passes
    return 1.0


def elementwise_cache_factor(ws_bytes: float, cal: Calibration, op: str = "elementwise") -> float:
    """Memory-time multiplier of an elementwise kernel of op kind `op` moving `ws_bytes` per pass: 1/gain when its
    working set is far below elementwise_cache_bytes (served from cache), 1 far above it (DRAM), a smooth step
    between; gain per class like elementwise_passes (normalisation, gated activation, rotary embedding, other)."""
    gain = (cal.elementwise_norm_cache_gain if op == "norm" else cal.elementwise_act_cache_gain
            if op == "activation" else cal.elementwise_rope_cache_gain if op == "rope"
            else cal.elementwise_cache_gain)
    c = cal.elementwise_cache_bytes
    if gain == 1.0 or c <= 0:
        return 1.0
    s = ws_bytes * ws_bytes / (ws_bytes * ws_bytes + c * c)
    return (1.0 + (gain - 1.0) * s) / gain


def decode_compute_efficiency(dtype: str, cal: Calibration, latent: bool = False) -> float:
    """Decode attention's fraction of tensor peak: attn_decode_eff (16-bit); fp8 scales attn_prefill_eff_fp8 by
    the same decode/prefill ratio (so a profile without attn_decode_eff keeps attn_prefill_eff[_fp8]). Absorbed-MLA
    decode (`latent`, Kernel.latent) runs its heads x latent products on tensor cores like a prefill tile:
    attn_prefill_eff[_fp8]. A TensorRT-LLM fit of attn_decode_eff at 0.025 (its CUDA-core GQA path; leave-one-GPU-out
    on 40 rows per stratum) biased its MLA generation rows +23 to +32 % (H100, L40S, RTX PRO 6000 held out), up to
    25x at 128 heads; with this rate -2 to -25 %."""
    if latent:
        return cal.attn_prefill_eff_fp8 if dtype == "fp8" else cal.attn_prefill_eff
    if dtype == "fp8":
        return cal.attn_prefill_eff_fp8 * cal.attn_decode_eff / cal.attn_prefill_eff
    return cal.attn_decode_eff


# ---- the time functions of the oracle -------------------------------------------------------------------------
# One function per op class returns the terms of one invocation, (compute_s, memory_s, floor_s, overhead_s);
# kernel_cost feeds them one Kernel's fields, CostModel's closed form feeds the attention ones batch aggregates.
# roofline_body combines the terms and CostModel._energy prices them, for both. A new cost term goes in one place.
Terms = tuple[float, float, float, float]
# (error group key, seconds, joules) of a step's kernels per group, unscaled (CostModel.step_parts)
Parts = tuple[tuple[str, float, float], ...]


def roofline_body(compute: float, memory: float, floor: float = 0.0, overlap: float = 0.0) -> float:
    """Seconds of one invocation before its fixed overhead: the slowest of compute, memory and a floor, plus the
    fraction `overlap` of the shorter of compute and memory that does not hide under the longer one."""
    body = max(compute, memory, floor)
    return body + overlap * min(compute, memory) if overlap else body


@dataclass(frozen=True, slots=True)
class AttentionRates:
    """The hardware x calibration rates of attention in one (attention dtype, KV dtype): computed per kernel by
    kernel_cost, once per CostModel for the closed form."""

    peak: float  # tensor FLOP/s of prefill attention in the attention dtype (prefill_attention_peak)
    prefill_eff: float  # attn_prefill_eff[_fp8]
    decode_flops_per_s: float  # peak x decode_compute_efficiency
    vector_flops_per_s: float  # fp32 peak x vector_eff (KV dequantization); 0 when there is none
    decode_mem_eff: float  # attn_decode_mem_eff[_fp8kv]
    bw: float  # memory bytes/s
    l2_bytes: float  # last-level cache (prefill_memory_seconds; decode attention's KV working set)
    sm_clocks_per_s: float  # SMs x clock: the rate unit of attn_prefill_cached_bytes_per_clk
    units: float = 1.0  # SMs (decode attention's work-unit slots)
    cycle: float = 1.0  # COMM_REF_CLOCK_HZ / clock: decode attention's fixed costs run in cycles
    fp32_flops_per_s: float = 0.0  # fp32 peak (decode math of large GQA groups on CUDA cores)
    # absorbed-MLA decode without split-KV: seconds per cached token of one unit (latent_nosplit_cycle_s); 0 = splits
    latent_token_s: Any = 0.0
    # fp8 operands quantised inside the call (an fp8 KV cache; fp8 attention math; not absorbed MLA): attn_fp8_quant_s each
    quant_passes: Any = 0.0
    # absorbed-MLA decode by SGLang's Triton kernel: GPU seconds per (sequence, head block) (triton_mla_unit_s); 0 = not
    triton_unit_s: Any = 0.0


# Dense 16-bit tensor FLOPs per SM per clock from which an NVIDIA GPU has warpgroup MMA (Hopper's wgmma: 4096;
# datacenter Blackwell's tcgen05: 8192); below it (Ampere 2048, Ada and Blackwell workstation GB202 1024 per
# hardware_specs/data) attention kernels are built on warp-level mma.sync
WARPGROUP_MMA_FLOPS_PER_CLK = 4096.0


def warp_mma_only(hw: HardwareSpec) -> bool:
    """An NVIDIA GPU whose attention kernels run on warp-level mma.sync (no warpgroup MMA); False for other
    vendors and for hardware without 16-bit tensor math (a CPU)."""
    if hw.vendor != "nvidia" or not hw.supports("bf16"):
        return False
    return hw.peak("bf16") / (hw.compute.num_units * hw.compute.clock_hz) < WARPGROUP_MMA_FLOPS_PER_CLK * 0.99


# Fraction of the tensor peak a kernel built on warp-level mma.sync reaches on a GPU with warpgroup MMA: "WGMMA
# instructions are necessary to extract the full compute of the H100 ... without them, the GPU seems to top out
# around 63% of its peak utilization" (Hazy Research, "GPUs Go Brrr", hazyresearch.stanford.edu/blog/2024-05-12-tk).
# Marlin issues m16n8k16 mma.sync (vLLM csrc/quantization/gptq_marlin/marlin_mma.h, shared by its MoE experts):
# AIConfigurator's H100 Marlin MoE rows (SGLang sglang_marlin_moe, vLLM MarlinExperts) ran 1.8-1.9x the model's
# compute time, against 0.7-1.2x on A100, L40S and RTX PRO 6000, whose datasheet peak is the mma.sync rate. A prior,
# not fitted: H100 is the only warpgroup-MMA GPU measured, so no leave-one-GPU-out fit could pin it.
WARP_MMA_PEAK_FRACTION = 0.63


def gemm_kernel_peak(k: Kernel, hw: HardwareSpec, cal: Calibration) -> float:
    """gemm_peak_flops of the kernel's dtype, times WARP_MMA_PEAK_FRACTION for a Kernel.warp_mma kernel on a GPU
    with warpgroup MMA (an mma.sync kernel on an mma.sync GPU runs at its datasheet peak)."""
    peak = gemm_peak_flops(k.dtype, hw, cal)
    if k.warp_mma and hw.vendor == "nvidia" and hw.supports("bf16") and not warp_mma_only(hw):
        return peak * WARP_MMA_PEAK_FRACTION
    return peak


def prefill_attention_peak(hw: HardwareSpec, dtype: str) -> float:
    """Tensor peak of prefill attention in `dtype`. fp8 attention reaches the fp8 peak only on NVIDIA GPUs with
    warpgroup MMA (FlashAttention-3 and TensorRT-LLM's sm90+ kernels); on mma.sync GPUs it runs at the 16-bit rate.
    AIConfigurator's context-attention tables: fitted per GPU, TensorRT-LLM's fp8 rows reach 0.58 of the bf16 rows'
    peak fraction (of a peak twice as high) on H100 but 0.37-0.40 on L40S and RTX PRO 6000, i.e. no faster than
    bf16; one fp8 efficiency over the doubled peak missed every held-out GPU by 30-34 % (TensorRT-LLM)."""
    peak = hw.peak(dtype)
    if dtype == "fp8" and warp_mma_only(hw):
        return hw.peak("bf16")
    return peak


def latent_nosplit_cycle_s(hw: HardwareSpec) -> float:
    """Seconds per SM cycle (1 / clock) of a GPU whose engines may run absorbed-MLA decode one sequence per thread
    block (an NVIDIA GPU without warpgroup MMA: Ampere, Ada, Blackwell workstation parts;
    attn_decode_latent_token_cycles), else 0. FlashMLA and TensorRT-LLM's sm90+ MLA kernels split the KV across
    thread blocks (docs/model.md, MLA)."""
    return 1.0 / hw.compute.clock_hz if warp_mma_only(hw) else 0.0


def triton_mla_unit_s(hw: HardwareSpec) -> float:
    """Seconds the whole GPU spends per (sequence, TRITON_MLA_BLOCK_H-head block) of SGLang's Triton absorbed-MLA
    decode: TRITON_MLA_UNIT_CYCLES SM cycles spread over every SM."""
    return TRITON_MLA_UNIT_CYCLES / (hw.compute.num_units * hw.compute.clock_hz)


def attention_rates(hw: HardwareSpec, cal: Calibration, dtype: str, kv_dtype: str,
                    dequant: bool = False, latent: bool = False, triton: bool = False) -> AttentionRates:
    """The attention rates of `hw` x `cal`; `triton`: prefill by the engines' Triton kernel (Kernel.triton), whose
    rate is attn_prefill_triton_flops_per_clk[_fp8] per SM clock (prefill_eff 1)."""
    peak = hw.peak(dtype)
    sm_clocks = hw.compute.num_units * hw.compute.clock_hz
    triton_rate = cal.attn_prefill_triton_flops_per_clk_fp8 if dtype == "fp8" else cal.attn_prefill_triton_flops_per_clk
    serial = latent_nosplit_cycle_s(hw) * cal.attn_decode_latent_token_cycles if latent else 0.0
    return AttentionRates(
        peak=triton_rate * sm_clocks if triton else prefill_attention_peak(hw, dtype),
        prefill_eff=1.0 if triton else cal.attn_prefill_eff_fp8 if dtype == "fp8" else cal.attn_prefill_eff,
        decode_flops_per_s=(TRITON_MLA_FLOPS_PER_CLK * sm_clocks if triton and latent
                            else peak * decode_compute_efficiency(dtype, cal, latent)),
        vector_flops_per_s=hw.peak("fp32") * cal.vector_eff if dequant else 0.0,
        decode_mem_eff=cal.attn_decode_mem_eff_fp8kv if kv_dtype == "fp8" else cal.attn_decode_mem_eff,
        bw=hw.memory.bandwidth_bytes_per_s,
        l2_bytes=hw.memory.l2_bytes,
        sm_clocks_per_s=sm_clocks,
        units=hw.compute.num_units,
        cycle=COMM_REF_CLOCK_HZ / hw.compute.clock_hz,
        fp32_flops_per_s=hw.peak("fp32"),
        latent_token_s=serial,
        triton_unit_s=triton_mla_unit_s(hw) if triton and latent else 0.0,
        # absorbed-MLA decode pays none: TensorRT-LLM's fp8-latent generation rows take the bf16 rows' 14.7 us
        quant_passes=0.0 if latent else float(kv_dtype == "fp8") + float(dtype == "fp8"),
    )


def prefill_memory_seconds(nbytes: Any, bw: Any, l2_bytes: Any, sm_clocks_per_s: Any, mem_eff: float,
                           cached_bytes_per_clk: float) -> Any:
    """Memory time of a prefill attention call moving `nbytes` (floats or numpy arrays alike: kernel_cost and
    FeatureTable share this): the DRAM share x^2/(1+x^2) of the bytes (x = nbytes / l2_bytes) at bandwidth x
    attn_prefill_mem_eff, the rest at attn_prefill_cached_bytes_per_clk per SM clock (0: all at DRAM rate)."""
    dram = nbytes / (bw * mem_eff)
    if not cached_bytes_per_clk:
        return dram
    x2 = (nbytes / l2_bytes) ** 2
    share = x2 / (1.0 + x2)
    return share * dram + (1.0 - share) * nbytes / (cached_bytes_per_clk * sm_clocks_per_s)


# exponent of prefill_fill_util's saturation in the grid's CTAs per SM: AIConfigurator's context-attention rows at
# 1-16 thousand tokens (all engines, A100, H100, L40S, RTX PRO 6000) slow down as 1 + (CTAs per SM / 0.25) ** -0.5
# from 1/16 to 1 CTA per SM (3x, 2x, 1.4x at 1/16, 1/4, 1); exponent 1 (a plain wave count) is too steep there
PREFILL_FILL_EXP = 0.5


def prefill_ctas(seqs: Any, heads: Any, s: Any) -> Any:
    """Query-tile CTAs of a prefill attention call (FlashAttention's grid: sequences x heads x query tiles of
    FA2_TILE_M rows) of `seqs` sequences of `s` mean new tokens with `heads` query heads (floats or arrays)."""
    return seqs * heads * -(-s // FA2_TILE_M)  # ceil for floats and arrays alike (a float stays a Python float)


def prefill_fill_util(ctas: Any, units: Any, fill_half: float) -> Any:
    """Fraction of its compute rate a prefill attention grid of `ctas` CTAs (prefill_ctas) reaches on `units`
    SMs: x / (1 + x), x = (CTAs per SM / attn_prefill_fill_half) ** PREFILL_FILL_EXP; 1 when fill_half is 0."""
    if not fill_half:
        return 1.0
    x = (ctas / (units * fill_half)) ** PREFILL_FILL_EXP
    return x / (1.0 + x)


def prefill_attention_time(work: float, nbytes: float, s: float, r: AttentionRates, cal: Calibration,
                           ctas: float = 0.0) -> Terms:
    """Prefill attention of `work` tensor-FLOP equivalents (prefill_score_work) moving `nbytes`, with `s` mean new
    tokens per sequence over `ctas` query-tile CTAs (prefill_ctas; 0: a full grid): FlashAttention's efficiency
    ramps as s / (s + attn_prefill_s_half) (128-row tiles) and with the grid's fill (prefill_fill_util); a call
    whose bytes fit in L2 moves them at a per-SM rate (prefill_memory_seconds)."""
    fill = prefill_fill_util(ctas, r.units, cal.attn_prefill_fill_half) if ctas else 1.0
    compute = work / (r.peak * (r.prefill_eff * fill * s / (s + cal.attn_prefill_s_half))) if work else 0.0
    memory = prefill_memory_seconds(nbytes, r.bw, r.l2_bytes, r.sm_clocks_per_s, cal.attn_prefill_mem_eff,
                                    cal.attn_prefill_cached_bytes_per_clk)
    return compute, memory, 0.0, r.cycle * (cal.attn_prefill_overhead_s + r.quant_passes * cal.attn_fp8_quant_s
                                            + ctas / r.units * cal.attn_prefill_cta_s)


def _maximum(a: Any, b: Any) -> Any:
    """max of floats, np.maximum of arrays: decode_attention_time serves kernel_cost (floats, hot path) and
    FeatureTable (arrays) alike. The float comparison is tried first (the hot path); an array's truth value raises
    ValueError, and only the vectorised fit pays for that."""
    try:
        return a if a >= b else b
    except ValueError:
        return np.maximum(a, b)


def _minimum(a: Any, b: Any) -> Any:
    try:
        return a if a <= b else b
    except ValueError:
        return np.minimum(a, b)


# exponent of the logistic step from L2 to DRAM bandwidth in the KV working set / (l2_bytes x attn_decode_l2_frac):
# the tables step within a factor of 2 of the working set (fits on the four GPUs: exponents 14-20)
_L2_STEP = 16.0


# FlashAttention-2 forward tile (query rows x keys) of an unpacked decode call (Kernel.gqa_unpacked): kBlockM 128
# query rows, keys in blocks of 64 (flash_fwd_launch_template.h, head dims <= 256 on sm8x)
FA2_TILE_M = 128
FA2_TILE_N = 64
# KV bandwidth one such unit reaches (in place of attn_decode_unit_bytes_per_s): AIConfigurator's vLLM FA2 MHA decode
# rows with 1-4 units over 8-134 MB of KV stream 22 / 26 / 26 GB/s per unit on A100 / L40S / RTX PRO 6000
FA2_UNSWAPPED_UNIT_BYTES_PER_S = 2.4e10


def decode_work(k: Kernel) -> tuple[float, int, float]:
    """(tensor FLOPs, work units per sequence, GQA group) of decode kernel `k` for decode_attention_time: its
    FLOPs, KV heads and query heads per KV head; an unpacked call (Kernel.gqa_unpacked, which also splits no KV)
    runs one unit per query head over a FA2_TILE_M-row tile of its query rows and key blocks of FA2_TILE_N
    (AIConfigurator's vLLM FA2 decode rows with a 128-key window on L40S and RTX PRO 6000 take 0.3-3 ms at
    256-2048 sequences x 16-64 heads, 4-60x a packed call's time: as a tile per head, not as the KV read)."""
    kv_heads, group = max(1, k.k), max(1.0, k.heads / max(1, k.k))
    if not k.gqa_unpacked:
        return k.flops, kv_heads, group
    q = k.m / max(1, k.n)  # query rows per sequence and head
    ctx = decode_context(k)
    pad = math.ceil(FA2_TILE_M / q) * (math.ceil(ctx / FA2_TILE_N) * FA2_TILE_N / max(ctx, 1.0))
    return k.flops * pad, max(1, k.heads), 1.0


def decode_context(k: Kernel) -> float:
    """Cached entries per sequence of decode kernel `k` (KV read over the KV written per query token, times the
    query tokens per sequence: a speculative verify step has several)."""
    return k.kv_read_bytes / max(1.0, k.kv_write_bytes) * k.m / max(1, k.n)


def decode_attention_time(flops: Any, dequant_flops: Any, nbytes: Any, kv_bytes: Any, ctx: Any, seqs: Any,
                          kv_heads: Any, group: Any, r: AttentionRates, p: Mapping[str, Any],
                          nosplit: Any = False) -> Terms:
    """Decode attention of `seqs` sequences over `ctx` cached tokens each (`kv_bytes` of KV cache, `nbytes` in all)
    with `kv_heads` KV heads of `group` query heads each, under calibration fields `p` (floats or numpy arrays).

    memory: nbytes at attn_decode_mem_eff[_fp8kv] x DRAM bandwidth, attn_decode_l2_gain x that when the KV
    working set fits in L2. floor (work units): seqs x kv_heads units, split-KV into chunks of at least
    attn_decode_split_tokens to fill the SMs' slots (SMs x attn_decode_units_per_sm); each wave of units takes
    attn_decode_unit_s + its share of the bytes at attn_decode_unit_bytes_per_s (`nosplit`: a kernel that splits no
    KV, Kernel.gqa_unpacked; a bool or an array of them). overhead: the call's fixed cost
    and split-KV's reduction pass. Fixed costs are cycles: given at COMM_REF_CLOCK_HZ, scaled by 1/clock (the
    tables' smallest calls take 10-14 us on A100 at 1.41 GHz, 4-7 us on L40S / RTX PRO 6000 at 2.5 GHz)."""
    compute = flops / r.decode_flops_per_s
    cuda = 1.0 / (1.0 + (p["attn_decode_cuda_group"] / group) ** _L2_STEP)
    triton = type(r.triton_unit_s) is not float or r.triton_unit_s  # the float 0.0 of every other kernel skips this
    if triton:  # SGLang's Triton MLA decode: every head's math at its own per-clock rate (decode_flops_per_s)
        cuda = np.where(r.triton_unit_s > 0, 0.0, cuda)
    compute = compute * (1.0 - cuda) + flops * cuda / (r.fp32_flops_per_s * p["attn_decode_cuda_eff"])
    if r.vector_flops_per_s:
        compute = compute + dequant_flops / r.vector_flops_per_s
    fill = kv_bytes / (r.l2_bytes * p["attn_decode_l2_frac"])
    hit = 1.0 / (1.0 + _minimum(fill, 1e6) ** _L2_STEP)
    memory = nbytes / (r.bw * r.decode_mem_eff * (1.0 + (p["attn_decode_l2_gain"] - 1.0) * hit))
    pairs = seqs * kv_heads
    slots = r.units * p["attn_decode_units_per_sm"]
    split = 1.0
    if p["attn_decode_split_tokens"]:
        split = _maximum(1.0, _minimum(ctx / p["attn_decode_split_tokens"], slots / pairs))
    unit_bw = p["attn_decode_unit_bytes_per_s"]
    if nosplit is not False:  # the hot path's packed kernels skip this
        split = np.where(nosplit, 1.0, split) if np.ndim(nosplit) else 1.0 if nosplit else split
        unit_bw = (np.where(nosplit, FA2_UNSWAPPED_UNIT_BYTES_PER_S, unit_bw) if np.ndim(nosplit)
                   else FA2_UNSWAPPED_UNIT_BYTES_PER_S if nosplit else unit_bw)
    units = pairs * split
    waves = _maximum(1.0, units / slots)
    floor = waves * (r.cycle * p["attn_decode_unit_s"] + nbytes / (units * unit_bw))
    serial = r.latent_token_s
    if type(serial) is not float or serial:  # the float 0.0 of every kernel that splits skips this
        # absorbed MLA without split-KV: one unit per sequence walking its `ctx` cached tokens in turn, at full
        # speed while at most LATENT_NOSPLIT_UNITS_PER_SM x SMs sequences run, slower in proportion beyond
        waves = _maximum(1.0, pairs / (r.units * LATENT_NOSPLIT_UNITS_PER_SM))
        one = waves * (r.cycle * p["attn_decode_unit_s"] + ctx * serial)
        split = np.where(serial > 0, 1.0, split) if np.ndim(serial) else 1.0
        floor = np.where(serial > 0, one, floor) if np.ndim(serial) else one
    if triton:
        # SGLang's Triton MLA decode: its programs' fixed SM time per (sequence, head block) bounds the call
        floor = _maximum(floor, pairs * np.ceil(group / TRITON_MLA_BLOCK_H) * r.triton_unit_s)
    overhead = r.cycle * (p["attn_decode_overhead_s"] + p["attn_decode_split_s"] * (1.0 - 1.0 / split)
                          + r.quant_passes * p["attn_fp8_quant_s"])
    return compute, memory, floor, overhead


def _vector_seconds(flops: float, hw: HardwareSpec, cal: Calibration) -> float:
    return flops / (hw.peak("fp32") * cal.vector_eff) if flops else 0.0


def gemm_time(k: Kernel, hw: HardwareSpec, cal: Calibration) -> Terms:
    """A GEMM: tile/wave/K-loop compute efficiency, weight-only dequantization on the vector units, its own
    memory efficiency as a weight stream (GEMV / small GEMM), a per-recipe fixed cost; a call timed alone and
    eagerly waits for its host dispatch (floor gemm_eager_floor_s)."""
    peak = gemm_kernel_peak(k, hw, cal)
    groups = gemm_groups(k)
    eff_c = gemm_compute_efficiency(k.m, k.n, k.k, hw.compute.num_units, cal, k.dtype, groups, bool(k.dequant_flops),
                                    k.no_splitk, warp_mma_only(hw), tensor_power_factor(hw, cal))
    stream = gemm_is_stream(k.m, k.n, k.k, cal) and groups == 1.0
    eff_m = cal.gemm_gemv_mem_eff if stream else cal.gemm_mem_eff
    compute = (k.flops / (peak * eff_c) if k.flops else 0.0) + _vector_seconds(gemm_dequant_flops(k, cal), hw, cal)
    floor = cal.gemm_eager_floor_s if k.timed_eager else 0.0
    quant = gemm_quant_bytes(k) / (hw.memory.bandwidth_bytes_per_s * cal.gemm_mem_eff)
    memory = k.bytes / (hw.memory.bandwidth_bytes_per_s * eff_m)
    if k.l2_warm and cal.gemm_l2_bytes_per_clk:  # a benchmark replaying the call with its operands in L2
        memory = min(memory, k.bytes / (hw.compute.num_units * hw.compute.clock_hz * cal.gemm_l2_bytes_per_clk))
    fixed = (cal.gemm_grouped_overhead_s * gemm_clock_factor("bf16", hw, cal) if k.moe_expert else
             gemm_overhead(k.dtype, cal) * gemm_clock_factor(k.dtype, hw, cal))
    return compute, memory, floor, fixed + quant


def elementwise_time(k: Kernel, hw: HardwareSpec, cal: Calibration) -> Terms:
    """An elementwise or sampling kernel on the vector units; an unfused one (per op kind) makes several memory
    passes and launches, a small working set runs at cache bandwidth, and a residual add fused into the next norm
    (elementwise_residual_fused) launches nothing of its own."""
    passes = elementwise_passes(k.op, cal)
    eff_m = cal.elementwise_mem_eff / (passes * elementwise_cache_factor(k.bytes, cal, k.op))
    compute = _vector_seconds(k.flops, hw, cal) + _vector_seconds(k.dequant_flops, hw, cal)
    launch = 0.0 if k.op == "residual" and cal.elementwise_residual_fused else cal.kernel_overhead_s * passes
    return compute, k.bytes / (hw.memory.bandwidth_bytes_per_s * eff_m), 0.0, launch


def kernel_cost(k: Kernel, hw: HardwareSpec, cal: Calibration) -> KernelCost:
    """Roofline time of `k` on `hw` under calibration `cal`, by the time function of its op kind."""
    if k.kind in ("comm", "pp_comm"):
        t = comm_seconds(k, hw, cal)
        if cal.time_scale:
            t *= time_factor(scale_table(cal.time_scale), kernel_family(k), k.dtype, (0.0, t, 0.0, 0.0), comm=True)
        return KernelCost(k, t * k.count, 0.0, t, "communication")
    terms, overlap = _kernel_terms(k, hw, cal)
    if cal.time_scale:  # an ensemble member: this kernel's error-group multiplier on every term
        terms = _scaled(scale_table(cal.time_scale), kernel_family(k), k.dtype, terms)
    return _kernel_cost(k, terms, overlap)


def kernel_part(k: Kernel, hw: HardwareSpec, cal: Calibration) -> tuple[str, KernelCost]:
    """kernel_cost of `k` under an unscaled `cal` and the error group (model.uncertainty.group_key) whose
    multiplier an ensemble member's time_scale applies to all its terms (the group time_factor looks up)."""
    if cal.time_scale:
        raise ValueError("kernel_part needs an unscaled calibration (time_scale=()); got a member's")
    if k.kind in ("comm", "pp_comm"):
        t = comm_seconds(k, hw, cal)
        key = group_key(kernel_family(k), k.dtype, regime_of(0.0, t, 0.0, 0.0, comm=True))
        return key, KernelCost(k, t * k.count, 0.0, t, "communication")
    terms, overlap = _kernel_terms(k, hw, cal)
    return group_key(kernel_family(k), k.dtype, regime_of(*terms)), _kernel_cost(k, terms, overlap)


def _kernel_terms(k: Kernel, hw: HardwareSpec, cal: Calibration) -> tuple[Terms, float]:
    """(compute, memory, floor, overhead) of one call of a non-communication kernel by the time function of its
    op kind, and the share of the shorter of compute and memory not hidden (roofline_body's overlap)."""
    kind = k.kind
    if kind == "gemm":
        return gemm_time(k, hw, cal), cal.gemm_overlap_loss
    if kind == "attn_prefill":
        r = attention_rates(hw, cal, k.dtype, k.kv_dtype, triton=k.triton)
        s = k.m / max(1, k.n)
        compute, memory, floor, overhead = prefill_attention_time(prefill_attention_flops(k, cal), k.bytes, s, r,
                                                                  cal, prefill_ctas(max(1, k.n), k.heads, s))
        return (compute + _vector_seconds(k.dequant_flops, hw, cal), memory, floor, overhead), 0.0
    if kind == "attn_decode":
        r = attention_rates(hw, cal, k.dtype, k.kv_dtype, bool(k.dequant_flops), k.latent, k.triton)
        flops, units, group = decode_work(k)
        return decode_attention_time(
            flops, k.dequant_flops, k.bytes, k.kv_read_bytes, decode_context(k), k.n, units, group, r,
            cal.__dict__, k.gqa_unpacked), 0.0
    return elementwise_time(k, hw, cal), 0.0  # elementwise, sampling: vector units


def _kernel_cost(k: Kernel, terms: Terms, overlap: float) -> KernelCost:
    compute, memory, floor, overhead = terms
    body = roofline_body(compute, memory, floor, overlap)
    bound: Bound = "compute" if compute >= memory else "memory"
    if overhead > body or floor > max(compute, memory):
        bound = "overhead"
    return KernelCost(k, (body + overhead) * k.count, compute, memory, bound)


class CostModel:
    """Batch -> seconds and joules for one (model, hardware, quant, parallel, calibration): the simulator's oracle.

    `step` costs every kernel of the op graph with kernel_cost (the per-kernel breakdown); `step_seconds_energy`
    (the hot path) memoises the token-linear kernels and evaluates the same attention time functions on the batch
    aggregates, and returns step(shape)'s seconds and joules to rounding (tested). Partial-depth and speculative
    costing (model.techniques) use only the public building blocks: kernels_seconds_energy,
    linear_seconds_energy, attention_seconds_energy, decode_attention, overhead_seconds(_energy), idle_energy_j.
    """

    def __init__(
        self,
        model: ModelSpec,
        hardware: HardwareSpec,
        quant: QuantSpec | None = None,
        parallel: ParallelSpec | None = None,
        calibration: Calibration | None = None,
        attn_backend: AttnPolicy = "",
    ) -> None:
        self.model = model
        self.hardware = hardware
        self.quant = quant or QuantSpec()
        self.parallel = parallel or ParallelSpec()
        self.calibration = calibration or DEFAULT_CALIBRATION
        self.attn_backend = attn_backend  # the engine's attention-backend policy (graph.attention_backend)
        self.ctx: GraphContext = graph_context(model, self.quant, self.parallel, self.calibration.moe_routing_skew,
                                               attn_backend)
        check_dtypes(hardware, self.quant)
        self._linear_memo: dict[tuple[int, int, bool, int | None], tuple[float, float]] = {}
        self._vision_memo: dict[tuple[int, float], tuple[float, float]] = {}
        self._linear_parts: dict[tuple[int, int, bool, int | None], Parts] = {}
        # decode-only steps under CUDA graphs: the TP all-reduces skip the host-dispatch floor
        self._graphed = self.calibration.decode_cuda_graphs and self.parallel.tp > 1
        self.num_gpus = self.parallel.num_gpus
        p = hardware.power
        self._idle_w, self._dyn_w = p.idle_w, p.tdp_w - p.idle_w
        self._attn = self._attention_consts()
        # attention rates of the closed form, computed once (the hot path evaluates attention every step)
        self._rates = attention_rates(hardware, self.calibration, self.ctx.attn_dtype, self.quant.kv_dtype,
                                      dequant=self.quant.kv_dtype in ("int8", "int4"))
        self._latent_rates = attention_rates(hardware, self.calibration, self.ctx.attn_dtype, self.quant.kv_dtype,
                                             dequant=self.quant.kv_dtype in ("int8", "int4"), latent=True)
        self._cal_fields = self.calibration.__dict__  # decode_attention_time reads the fields by name
        # decode_heads per attention group of the model (a group built elsewhere, e.g. partial depth, is computed)
        self._decode_heads = {id(g): decode_heads(g) for g in self.ctx.attn}
        # an ensemble member's kernel time multipliers (Calibration.time_scale); None = the plain prediction
        self._scales = scale_table(self.calibration.time_scale) if self.calibration.time_scale else None

    # ---- full breakdown ---------------------------------------------------------------------------------
    def step(self, shape: BatchShape) -> StepCost:
        shape, moe = self._rank(shape)
        kernels = self._linear(shape, moe) + attention_kernels(self.ctx, shape)
        if shape.vision_patches:
            kernels += vision_kernels(self.ctx, shape.vision_patches, shape.vision_attn_pairs)
        cal, hw = self.calibration, self.hardware
        costs = tuple(kernel_cost(k, hw, cal) for k in kernels)
        overhead = self._overhead(shape)
        seconds = sum(c.seconds for c in costs) + overhead
        flops = sum(c.kernel.flops * c.kernel.count for c in costs)
        nbytes = sum(c.kernel.bytes * c.kernel.count for c in costs)
        energy = sum(self._kernel_energy(c) for c in costs) + self.idle_energy_j(overhead)
        return StepCost(
            seconds=seconds,
            kernels=costs,
            overhead_s=overhead,
            flops=flops,
            bytes=nbytes,
            energy_j=energy,
            num_gpus=self.num_gpus,
            peak_flops_per_s=hw.peak(self.quant.gemm_dtype),
            bandwidth_bytes_per_s=hw.memory.bandwidth_bytes_per_s,
        )

    def _linear(self, shape: BatchShape, moe_tokens: int | None) -> list[Kernel]:
        return linear_kernels(self.ctx, shape.tokens, shape.logit_tokens, self._graphed and not shape.prefill_tokens,
                              moe_tokens)

    def _rank(self, shape: BatchShape) -> tuple[BatchShape, int | None]:
        """The step's batch as its busiest attention-DP rank runs it (graph.rank_shape) and the tokens the routed
        experts take (every rank's); (shape, None) without attention DP."""
        if self.parallel.attn_dp == 1:
            return shape, None
        return rank_shape(shape, self.parallel.attn_dp), shape.tokens

    # ---- hot path -----------------------------------------------------------------------------------------
    def step_seconds(self, shape: BatchShape) -> float:
        return self.step_seconds_energy(shape)[0]

    def step_seconds_energy(self, shape: BatchShape) -> tuple[float, float]:
        """(seconds, joules) of one iteration; equals step(shape) to rounding, in microseconds."""
        shape, moe = self._rank(shape)
        graphed = self._graphed and not shape.prefill_tokens
        lin = self._linear_memo.get((shape.tokens, shape.logit_tokens, graphed, moe))
        if lin is None:
            lin = self.linear_seconds_energy(shape.tokens, shape.logit_tokens, graphed, moe)
        seconds, energy = lin
        a_s, a_j = self.attention_seconds_energy(shape)
        seconds += a_s
        energy += a_j
        if shape.vision_patches:
            v_s, v_j = self.vision_seconds_energy(shape.vision_patches, shape.vision_attn_pairs)
            seconds += v_s
            energy += v_j
        overhead = self._overhead(shape)
        return seconds + overhead, energy + self.idle_energy_j(overhead)

    def step_parts(self, shape: BatchShape) -> tuple[Parts, float]:
        """step_seconds_energy of an unscaled model (no time_scale) split by error group: ((group key, s, J), ...)
        (the token-linear kernels summed per key, then the vision and attention parts) and the overhead seconds
        (never scaled). An ensemble member's step is
        sum(factor(key) * part) + overhead (simulator.ensemble), its scaled step_seconds_energy to rounding."""
        if self._scales is not None:
            raise ValueError("step_parts needs an unscaled CostModel (calibration.time_scale=()); got a member's")
        shape, moe = self._rank(shape)
        graphed = self._graphed and not shape.prefill_tokens
        lin_key = (shape.tokens, shape.logit_tokens, graphed, moe)
        lin = self._linear_parts.get(lin_key)
        if lin is None:
            per_kernel: list[tuple[str, float, float]] = []
            self.kernels_seconds_energy(linear_kernels(self.ctx, *lin_key), per_kernel)
            acc: dict[str, tuple[float, float]] = {}
            for k, s, j in per_kernel:
                s0, j0 = acc.get(k, (0.0, 0.0))
                acc[k] = (s0 + s, j0 + j)
            lin = tuple((k, s, j) for k, (s, j) in acc.items())
            if len(self._linear_parts) > 200_000:
                self._linear_parts.clear()
            self._linear_parts[lin_key] = lin
        parts: list[tuple[str, float, float]] = []
        if shape.vision_patches:
            self.kernels_seconds_energy(vision_kernels(self.ctx, shape.vision_patches, shape.vision_attn_pairs),
                                        parts)
        self.attention_seconds_energy(shape, parts)
        return lin + tuple(parts), self._overhead(shape)

    # ---- building blocks (public: model.techniques composes partial-depth and speculative steps from them) ---
    def kernels_seconds_energy(self, kernels: list[Kernel], parts: list[tuple[str, float, float]] | None = None
                               ) -> tuple[float, float]:
        """(s, J) of `kernels` (each all its `count` invocations), summed in order; `parts`: also appends each
        kernel's (error group key, s, J) to it (step_parts)."""
        if parts is None:
            costs = [kernel_cost(k, self.hardware, self.calibration) for k in kernels]
            return sum(c.seconds for c in costs), sum(self._kernel_energy(c) for c in costs)
        seconds = energy = 0.0
        for k in kernels:
            key, c = kernel_part(k, self.hardware, self.calibration)
            j = self._kernel_energy(c)
            parts.append((key, c.seconds, j))
            seconds += c.seconds
            energy += j
        return seconds, energy

    def linear_seconds_energy(self, tokens: int, logit_tokens: int, graphed: bool = False,
                              moe_tokens: int | None = None) -> tuple[float, float]:
        """(s, J) of the token-linear kernels of a step of `tokens` rows, `logit_tokens` of them through the LM
        head (graph.linear_kernels), memoised; `graphed`: replayed as a CUDA graph (a decode-only step when
        Calibration.decode_cuda_graphs and TP > 1); `moe_tokens`: the routed experts' tokens under attention DP."""
        key = (tokens, logit_tokens, graphed, moe_tokens)
        lin = self._linear_memo.get(key)
        if lin is None:
            lin = self.kernels_seconds_energy(linear_kernels(self.ctx, tokens, logit_tokens, graphed, moe_tokens))
            if len(self._linear_memo) > 200_000:
                self._linear_memo.clear()
            self._linear_memo[key] = lin
        return lin

    def vision_seconds_energy(self, patches: int, pairs: float) -> tuple[float, float]:
        """(s, J) of the vision encoder over `patches` patches (graph.vision_kernels), memoised: the same image
        sizes repeat."""
        v = self._vision_memo.get((patches, pairs))
        if v is None:
            v = self.kernels_seconds_energy(vision_kernels(self.ctx, patches, pairs))
            if len(self._vision_memo) > 100_000:
                self._vision_memo.clear()
            self._vision_memo[(patches, pairs)] = v
        return v

    def _attention_consts(self) -> tuple[tuple[float, ...], ...]:
        """Per-unit coefficients of the attention kernels of graph.attention_kernels (closed form, same math), one
        tuple per softmax-attention group of ctx.attn (fixed-state and DSA groups are costed by their kernels)."""
        c = self.ctx
        out = []
        for g in c.attn:
            kv_tok = g.elems * c.kvb
            out.append((
                2.0 * g.heads * (g.qk_dim + g.v_dim),  # prefill FLOPs per query-key pair
                g.q_width * c.ab + kv_tok + g.heads * g.v_dim * c.ab + kv_tok,  # prefill bytes per new token
                kv_tok,  # bytes per cached token read
                2.0 * g.heads * (g.dec_qk_dim + g.dec_v_dim),  # decode FLOPs per (context token x query)
                g.q_width * c.ab + g.heads * g.v_dim * c.ab + kv_tok,  # decode bytes per query token
                2.0 * g.elems if self.quant.kv_dtype in ("int8", "int4") else 0.0,  # dequant FLOPs per ctx token
            ))
        return tuple(out)

    def attention_seconds_energy(self, shape: BatchShape, parts: list[tuple[str, float, float]] | None = None
                                 ) -> tuple[float, float]:
        """(s, J) of all attention of `shape`: sum(kernel_cost(k)) over attention_kernels(ctx, shape) in closed
        form on the batch aggregates (the same time functions; equal to rounding, tested); `parts` as
        kernels_seconds_energy's."""
        cal, c = self.calibration, self.ctx
        seconds = energy = 0.0
        for g, consts in zip(c.attn, self._attn, strict=True):
            # a few kernels whatever the batch, or a backend's flagged kernels: cost them directly
            if g.state_bytes or g.index_flops or priced_apart(g):
                sec, jou = self.kernels_seconds_energy(group_attention_kernels(c, g, shape), parts)
                seconds += sec
                energy += jou
                continue
            pf_flops, pf_bytes_tok, ctx_bytes = consts[:3]
            if shape.prefill_tokens:
                t = shape.prefill_tokens
                pairs, ctx_read = prefill_keys(g, shape)
                s = t / max(1, shape.prefill_seqs)
                work = pf_flops * pairs
                if pairs and (cal.attn_prefill_tile or cal.attn_softmax_flops):  # prefill_attention_flops
                    scores, edge = prefill_score_terms(float(pairs) * g.heads, g.heads,
                                                       g.window if g.primary else 0,
                                                       t, max(1, shape.prefill_seqs))
                    work = prefill_score_work(scores, edge, pf_flops / g.heads, s, cal)
                comp, mem, floor, over = prefill_attention_time(
                    work, t * pf_bytes_tok + ctx_read * ctx_bytes, s, self._rates, cal,
                    prefill_ctas(max(1, shape.prefill_seqs), g.heads, s))
                if self._scales is not None:
                    comp, mem, floor, over = _scaled(self._scales, "attn_prefill", c.attn_dtype,
                                                     (comp, mem, floor, over))
                sec, jou = self._roofline_energy(comp, mem, over, g.layers, floor)
                if parts is not None:
                    parts.append((group_key("attn_prefill", c.attn_dtype, regime_of(comp, mem, floor, over)),
                                  sec, jou))
                seconds += sec
                energy += jou
            if shape.decode_seqs:
                ctx = decode_keys(g, shape.decode_seqs, shape.decode_ctx_tokens, shape.decode_ctx_tokens_win)
                sec, jou = self._decode_attention_group(g, consts, shape.decode_seqs, shape.decode_tokens, ctx,
                                                        parts)
                seconds += sec
                energy += jou
        return seconds, energy

    def _decode_attention_group(self, g: AttnGroup, consts: tuple[float, ...], seqs: int, tokens: int,
                                ctx: float, parts: list[tuple[str, float, float]] | None = None) -> tuple[float, float]:
        """(s, J) of decode attention of `seqs` sequences issuing `tokens` queries over `ctx` cached entries in
        the layers of group `g` (one group of attention_seconds_energy; `parts` as its)."""
        _, _, ctx_bytes, dec_flops, dec_bytes_q, deq = consts
        comp, mem, floor, over = decode_attention_time(
            dec_flops * ctx * (tokens / seqs), deq * ctx, tokens * dec_bytes_q + ctx * ctx_bytes, ctx * ctx_bytes,
            ctx / seqs, seqs, *(self._decode_heads.get(id(g)) or decode_heads(g)),
            self._latent_rates if g.latent_decode else self._rates,
            self._cal_fields)
        if self._scales is not None:
            comp, mem, floor, over = _scaled(self._scales, "attn_decode", self.ctx.attn_dtype,
                                             (comp, mem, floor, over))
        sec, jou = self._roofline_energy(comp, mem, over, g.layers, floor)
        if parts is not None:
            parts.append((group_key("attn_decode", self.ctx.attn_dtype, regime_of(comp, mem, floor, over)),
                          sec, jou))
        return sec, jou

    def decode_attention(self, seqs: int, tokens: int, ctx: int, ctx_win: int) -> tuple[float, float]:
        """attention_seconds_energy of a decode-only BatchShape, without building it (same arithmetic)."""
        c = self.ctx
        a_s = a_j = 0.0
        for g, consts in zip(c.attn, self._attn, strict=True):
            if g.state_bytes or g.index_flops or priced_apart(g):
                shape = BatchShape(decode_seqs=seqs, decode_tokens=tokens, decode_ctx_tokens=ctx,
                                   decode_ctx_tokens_win=ctx_win)
                sec, jou = self.kernels_seconds_energy(group_attention_kernels(c, g, shape))
            else:
                sec, jou = self._decode_attention_group(g, consts, seqs, tokens,
                                                        decode_keys(g, seqs, ctx, ctx_win))
            a_s += sec
            a_j += jou
        return a_s, a_j

    def decode_passes(self, seqs: int, tokens: int, ctx: int, ctx_win: int, passes: int, first: int = 0,
                      start: tuple[float, float] = (0.0, 0.0)) -> tuple[float, float]:
        """Sum of step_seconds_energy over the decode-only iterations i = first .. passes-1 whose contexts grow by
        `seqs` tokens a pass (ctx + i*seqs: a draft model drafting), summed in the same order as a loop over the
        BatchShapes (bit-identical, tested) without building them; `start` is the running sum to add to."""
        lin = self.linear_seconds_energy(tokens, tokens, self._graphed)
        overhead = self.overhead_seconds(seqs)
        o_j = self.idle_energy_j(overhead)
        total_s, total_j = start
        for i in range(first, passes):
            add = seqs * i
            a_s, a_j = self.decode_attention(seqs, tokens, ctx + add, ctx_win + add)
            total_s += lin[0] + a_s + overhead
            total_j += lin[1] + a_j + o_j
        return total_s, total_j

    def overhead_seconds(self, seqs: int) -> float:
        """Framework CPU time of one non-empty iteration over `seqs` sequences."""
        cal = self.calibration
        return cal.step_overhead_s + cal.step_overhead_per_seq_s * seqs

    def overhead_seconds_energy(self, shape: BatchShape) -> tuple[float, float]:
        """(s, J) of the framework overhead of the iteration `shape` (0 for an empty one), the GPUs idling."""
        o = self._overhead(shape)
        return o, self.idle_energy_j(o)

    def idle_energy_j(self, seconds: float) -> float:
        """Joules of all GPUs of the replica idling for `seconds` (CPU-side work: overheads, n-gram lookup)."""
        return seconds * self._idle_w * self.num_gpus

    # ---- private: the roofline-to-energy combination shared by both evaluations --------------------------
    def _energy(self, seconds: float, per_s: float, busy_s: float) -> float:
        """Idle power plus dynamic power scaled by the utilisation busy_s / per_s of the bound resource."""
        util = busy_s / per_s if per_s > 0 else 0.0
        return seconds * (self._idle_w + self._dyn_w * min(1.0, util)) * self.num_gpus

    def _roofline_energy(self, compute: float, memory: float, overhead: float, count: int,
                         floor: float = 0.0) -> tuple[float, float]:
        per = roofline_body(compute, memory, floor) + overhead
        total = per * count
        return total, self._energy(total, per, max(compute, memory))

    def _kernel_energy(self, c: KernelCost) -> float:
        if c.seconds <= 0:
            return 0.0
        return self._energy(c.seconds, c.seconds / c.kernel.count, max(c.compute_s, c.memory_s))

    def _overhead(self, shape: BatchShape) -> float:
        if shape.is_empty:
            return 0.0
        return self.overhead_seconds(shape.decode_seqs + shape.prefill_seqs)

    def pipeline_stage_seconds(self, shape: BatchShape) -> float:
        """Time one pipeline stage holds a micro-batch: the layer work split evenly over pp stages."""
        total = self.step_seconds(shape)
        if self.parallel.pp == 1:
            return total
        overhead = self._overhead(shape)
        return (total - overhead) / self.parallel.pp + overhead


def check_dtypes(hw: HardwareSpec, quant: QuantSpec) -> None:
    """ValueError when the hardware lacks a format the configuration computes in. Low-bit weights with 16-bit
    activations (weight-only) need only the 16-bit tensor cores: the GEMM dequantises them (its dequant_flops)."""
    needed = {quant.gemm_dtype}
    if quant.weight_dtype in ("fp8", "fp4") and not quant.weight_only:
        needed.add(quant.weight_dtype)
    if quant.kv_dtype == "fp8" and quant.activation_dtype == "fp8":
        needed.add("fp8")
    for d in sorted(needed):
        if not hw.supports(d):
            try:
                hw.peak(d)  # raises the ValueError that lists what the hardware has
            except ValueError as exc:
                if quant.weight_dtype == d:
                    raise ValueError(f"{exc}; {d} weights run weight-only on it: activation_dtype=bf16 "
                                     f"(model.quant.resolve_quant picks that when given the hardware)") from exc
                raise
