"""Hand-computed roofline cases, FLOP/byte accounting, bounds, fast path == full path, dtype and layout errors."""

from __future__ import annotations

import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from roofsim.hardware_specs.catalog import load_hardware
from roofsim.model.batch import BatchShape, causal_pairs, windowed_pairs
from roofsim.model.cost import (
    DEFAULT_CALIBRATION,
    ENGINE_COMM,
    Calibration,
    CostModel,
    allreduce_seconds,
    kernel_cost,
    warp_mma_only,
)
from roofsim.model.graph import expected_active_experts, gemm, graph_context, step_kernels
from roofsim.model.loader import load_model
from roofsim.model.params import count_params
from roofsim.model.spec import ParallelSpec, QuantSpec

H100 = load_hardware("h100-sxm")
LLAMA8 = load_model("llama-3.1-8b")


def test_4096_cubed_bf16_gemm_on_h100_is_2n3_over_peak_times_efficiency() -> None:
    ctx = graph_context(LLAMA8, QuantSpec(), ParallelSpec())
    k = gemm("g", 4096, 4096, 4096, ctx, count=1)
    assert k.flops == 2 * 4096**3
    # Hand-computed efficiency with the defaults: every tile of the menu divides 4096 and leaves the same waves
    # (64x128: 2048 tiles = 16 waves of 132 SMs, 128x256: 512 = 4 waves; utilisation 2048/2112), so the largest,
    # 128x256, is taken; K ramp 4096/(4096+128), peak fraction 0.75; the H100 runs its peak within its TDP.
    eff = 0.75 * (2048 / (16 * 132)) * (4096 / (4096 + 128))
    assert eff == pytest.approx(0.70524, rel=1e-4)
    expected = 2 * 4096**3 / (989.4e12 * eff) + 2.5e-6
    kc = kernel_cost(k, H100, DEFAULT_CALIBRATION)
    assert kc.seconds == pytest.approx(expected, rel=1e-12)
    assert kc.seconds == pytest.approx(199.5e-6, rel=0.001)
    assert kc.bound == "compute"


def test_memory_bound_gemv_costs_weight_bytes_over_bandwidth() -> None:
    ctx = graph_context(LLAMA8, QuantSpec(), ParallelSpec())
    k = gemm("gemv", 1, 14336, 4096, ctx, count=1)
    kc = kernel_cost(k, H100, DEFAULT_CALIBRATION)
    weight = 14336 * 4096 * 2
    expected = (weight + 4096 * 2 + 14336 * 2) / (3.35e12 * 0.80) + 2.5e-6
    assert kc.seconds == pytest.approx(expected, rel=1e-9)
    assert kc.bound == "memory"


def test_forward_flops_are_two_per_parameter_plus_attention() -> None:
    ctx_len = 2000
    shape = BatchShape.build(decode_ctx=[ctx_len])
    ks = step_kernels(LLAMA8, QuantSpec(), ParallelSpec(), shape)
    gemm_flops = sum(k.flops * k.count for k in ks if k.kind == "gemm")
    p = count_params(LLAMA8)
    # Kaplan et al. 2020: forward FLOPs per token = 2 N (non-embedding parameters incl. the LM head)
    assert gemm_flops == pytest.approx(2 * p.non_embedding_active, rel=1e-3)
    attn = sum(k.flops * k.count for k in ks if k.kind == "attn_decode")
    # QK^T and PV: 2 * 2 * n_layer * context * d_attn (Kaplan et al. Table 1)
    assert attn == pytest.approx(4 * 32 * (ctx_len + 1) * 32 * 128, rel=1e-12)


def test_weight_bytes_of_a_decode_step_are_the_whole_model_once() -> None:
    shape = BatchShape.build(decode_ctx=[100, 200, 300])
    ks = step_kernels(LLAMA8, QuantSpec(), ParallelSpec(), shape)
    p = count_params(LLAMA8)
    weight = sum(k.weight_bytes * k.count for k in ks)
    # every weight once, except the embedding table of which only the 3 looked-up rows are read
    assert weight == pytest.approx((p.total - p.embedding) * 2 + 3 * 4096 * 2, rel=1e-12)
    kv_read = sum(k.kv_read_bytes * k.count for k in ks)
    assert kv_read == pytest.approx((101 + 201 + 301) * 32 * 2 * 8 * 128 * 2, rel=1e-12)
    for k in ks:
        parts = k.weight_bytes + k.act_read_bytes + k.act_write_bytes + k.kv_read_bytes + k.kv_write_bytes
        assert k.bytes == pytest.approx(parts)


def test_decode_batch1_memory_bound_prefill_2048_compute_bound_on_h100() -> None:
    cm = CostModel(LLAMA8, H100)
    decode = cm.step(BatchShape.build(decode_ctx=[1024]))
    prefill = cm.step(BatchShape.build(prefill=[(2048, 0)]))
    assert decode.seconds_by_bound["memory"] > 0.6 * decode.seconds
    assert decode.bound == "memory"
    assert prefill.bound == "compute"
    assert prefill.mfu > 0.4
    # batch-1 decode streams 16 GB of weights: between the bandwidth bound and 2x it
    assert 16.06e9 / 3.35e12 < decode.seconds < 2 * 16.06e9 / 3.35e12


@settings(max_examples=60, deadline=None)
@given(
    prefill=st.lists(st.tuples(st.integers(1, 3000), st.integers(0, 5000)), max_size=4),
    decode=st.lists(st.integers(0, 20000), max_size=40),
)
def test_fast_path_equals_full_breakdown(prefill: list[tuple[int, int]], decode: list[int]) -> None:
    if not prefill and not decode:
        return
    name = ["gpt-oss-20b", "deepseek-v3", "llama-3.1-8b"][len(decode) % 3]  # SWA+MoE, MLA+MoE, dense GQA
    quant = QuantSpec(kv_dtype=["bf16", "int8", "fp8"][len(prefill) % 3])
    # every other example runs with the refinements of section 2 switched on (they must stay in the closed form)
    cal = None if len(decode) % 2 else Calibration(
        gemm_overhead_s=1e-6, attn_prefill_overhead_s=1.5e-5, attn_decode_overhead_s=1.1e-5,
        attn_decode_unit_s=3e-7, attn_decode_split_tokens=200.0, attn_decode_cuda_group=6.0,
        attn_decode_l2_gain=3.0, attn_prefill_eff_fp8=0.3, gemm_overlap_loss=0.2,
        attn_decode_eff=0.05, attn_prefill_tile=96.0, attn_softmax_flops=150.0, attn_prefill_mem_eff=0.3,
        gemm_overhead_s_fp8=1.3e-5, attn_decode_mem_eff_fp8kv=0.35, elementwise_norm_passes=3.5,
        elementwise_act_passes=4.0,
        comm_oneshot_max_bytes=1e6, comm_floor_s=5e-6, attn_decode_latent_token_cycles=190.0,
        attn_prefill_fill_half=0.4, attn_prefill_cta_s=1e-6)
    # DeepSeek-V3 on a GPU without warpgroup MMA: its latent decode runs without split-KV when the knob is set
    hw = load_hardware("l40s" if name == "deepseek-v3" else "h200-sxm")
    cm = CostModel(load_model(name), hw, quant, calibration=cal)
    shape = BatchShape.build(prefill=prefill, decode_ctx=decode, window=cm.model.sliding_window)
    full = cm.step(shape)
    fast_s, fast_j = cm.step_seconds_energy(shape)
    # the hot path evaluates the attention kernels in closed form: same math, summed in another order
    assert fast_s == pytest.approx(full.seconds, rel=1e-12)
    assert fast_j == pytest.approx(full.energy_j, rel=1e-12)
    assert fast_s == cm.step_seconds(shape)  # memoised second call


def test_energy_between_idle_and_tdp() -> None:
    cm = CostModel(LLAMA8, H100, parallel=ParallelSpec(tp=2))
    s = cm.step(BatchShape.build(prefill=[(1024, 0)], decode_ctx=[500] * 16))
    p = H100.power
    assert p.idle_w * 2 * s.seconds <= s.energy_j <= p.tdp_w * 2 * s.seconds


def test_causal_and_windowed_pairs() -> None:
    assert causal_pairs(4, 0) == 1 + 2 + 3 + 4
    assert causal_pairs(3, 10) == 11 + 12 + 13
    assert windowed_pairs(4, 0, 2) == 1 + 2 + 2 + 2
    assert windowed_pairs(3, 10, 100) == causal_pairs(3, 10)
    assert windowed_pairs(3, 10, 5) == 15


def test_expected_active_experts() -> None:
    assert expected_active_experts(1, 8, 2) == pytest.approx(2.0)
    assert expected_active_experts(1000, 8, 2) == pytest.approx(8.0)
    assert expected_active_experts(2, 8, 2) == pytest.approx(8 * (1 - 0.75**2))


def test_tp_adds_allreduce_and_cuts_weight_time() -> None:
    shape = BatchShape.build(decode_ctx=[1000] * 8)
    one = CostModel(LLAMA8, H100).step(shape)
    two = CostModel(LLAMA8, H100, parallel=ParallelSpec(tp=2)).step(shape)
    names = {kc.kernel.name for kc in two.kernels}
    assert "tp_allreduce" in names
    assert two.seconds_by_bound["communication"] > 0
    assert two.seconds < one.seconds
    # defaults on H100 (its clock is the reference: no clock scaling): the engine's one-shot kernel at 2 GPUs, 4 us +
    # 1 MB at min(NVLink x 0.8, 36 blocks x 1.83 GHz x 16 B x 0.2 = 210.8 GB/s); 8 GPUs: two-shot (1 MB > 256 KB)
    kbw = 36 * 1.83e9 * 16 * 0.2
    assert allreduce_seconds(1e6, 2, H100, DEFAULT_CALIBRATION) == pytest.approx(4e-6 + 1e6 / kbw)
    t8 = allreduce_seconds(1e6, 8, H100, DEFAULT_CALIBRATION)
    assert t8 == pytest.approx(4e-6 * 1.8 + 1.75e6 / kbw)


def test_weight_only_int4_cuts_decode_time_and_fp8_needs_hardware_support() -> None:
    shape = BatchShape.build(decode_ctx=[512])
    bf16 = CostModel(LLAMA8, H100).step_seconds(shape)
    int4 = CostModel(LLAMA8, H100, QuantSpec(weight_dtype="int4")).step_seconds(shape)
    assert int4 < 0.6 * bf16
    a100 = load_hardware("a100-sxm-80gb")
    with pytest.raises(ValueError, match="has no fp8 support"):
        CostModel(LLAMA8, a100, QuantSpec(weight_dtype="fp8", activation_dtype="fp8"))


def test_parallel_layout_errors_name_the_constraint() -> None:
    with pytest.raises(ValueError, match="tp=3 must divide num_heads=32"):
        CostModel(LLAMA8, H100, parallel=ParallelSpec(tp=3))
    with pytest.raises(ValueError, match="pp=5 must divide num_layers=32"):
        ParallelSpec(pp=5).validate_for(LLAMA8)
    with pytest.raises(ValueError, match="ep=2 needs a mixture-of-experts model"):
        ParallelSpec(tp=2, ep=2).validate_for(LLAMA8)
    mixtral = load_model("mixtral-8x7b")
    with pytest.raises(ValueError, match="ep=3 must divide num_experts=8"):
        ParallelSpec(tp=3, ep=3).validate_for(mixtral.model_copy(update={"num_heads": 48, "num_kv_heads": 24}))


def test_mixtral_decode_reads_only_active_experts_at_batch_one() -> None:
    mixtral = load_model("mixtral-8x7b")
    ks = step_kernels(mixtral, QuantSpec(), ParallelSpec(tp=2), BatchShape.build(decode_ctx=[100]))
    expert_w = sum(k.weight_bytes * k.count for k in ks if k.name.startswith("moe_") and k.kind == "gemm" and k.name != "moe_router")
    # top-2 of 8 experts: 2 experts x 3 matrices x 4096 x 14336 per layer, halved by tp=2, bf16
    assert expert_w == pytest.approx(32 * 2 * 3 * 4096 * 14336 / 2 * 2, rel=1e-9)


def test_calibration_changes_cost_without_mutating_defaults() -> None:
    slow = Calibration(name="slow", gemm_eff=0.375)
    shape = BatchShape.build(prefill=[(4096, 0)])
    a = CostModel(LLAMA8, H100).step(shape)
    b = CostModel(LLAMA8, H100, calibration=slow).step(shape)
    assert b.seconds > 1.6 * a.seconds - 1e-3
    assert DEFAULT_CALIBRATION.gemm_eff == 0.75
    assert math.isfinite(b.mfu)


# ---- refinements of the roofline (docs/model.md section 2): hand-computed on h100-sxm -------------------------
def _decode_kernel(batch: int, ctx_len: int, cal_model=LLAMA8):
    c = graph_context(cal_model, QuantSpec(), ParallelSpec())
    from roofsim.model.graph import attention_kernels

    (k,) = attention_kernels(c, BatchShape.build(decode_ctx=[ctx_len] * batch))
    return k


def test_refined_fields_inherit_the_field_they_refine() -> None:
    old = Calibration(kernel_overhead_s=7e-6, gemm_eff=0.5, attn_prefill_eff=0.4, nccl_bw_eff=0.3)
    assert (old.gemm_overhead_s, old.attn_prefill_overhead_s, old.attn_decode_overhead_s) == (7e-6, 7e-6, 7e-6)
    assert (old.gemm_eff_fp8, old.gemm_eff_fp8_block, old.gemm_eff_int8) == (0.5, 0.5, 0.5)
    assert old.attn_prefill_eff_fp8 == 0.4 and old.nccl_bw_eff_pcie == 0.3
    # fields of the earlier communication model are dropped on read
    assert Calibration(nccl_hop_s=1e-6, nccl_bw_gpu_exp=0.2) == Calibration()


def test_fields_of_the_earlier_decode_model_are_dropped_with_a_warning(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level("WARNING", logger="roofsim.model.cost"):
        old = Calibration(name="old", attn_decode_ctx_half=20.0, attn_decode_seq_s=1e-7, attn_decode_mem_eff=0.6)
    assert old == Calibration(name="old", attn_decode_mem_eff=0.6)
    assert "attn_decode_ctx_half, attn_decode_seq_s" in caplog.text
    assert Calibration(gemm_eff_fp8=0.4).gemm_eff_fp8_block == 0.4  # fp8_block refines fp8
    assert Calibration(kernel_overhead_s=7e-6, gemm_overhead_s=1e-6).gemm_overhead_s == 1e-6
    assert Calibration(gemm_overhead_s=1e-6).gemm_overhead_s_fp8 == 1e-6
    assert Calibration(gemm_mem_eff=0.6).attn_prefill_mem_eff == 0.6
    assert Calibration(attn_decode_mem_eff=0.6).attn_decode_mem_eff_fp8kv == 0.6


def test_per_kind_overheads() -> None:
    ctx = graph_context(LLAMA8, QuantSpec(), ParallelSpec())
    cal = Calibration(gemm_overhead_s=1e-6, attn_decode_overhead_s=2e-5, kernel_overhead_s=0.0)
    g = gemm("gemv", 1, 14336, 4096, ctx, count=1)
    assert kernel_cost(g, H100, cal).seconds == pytest.approx(g.bytes / (3.35e12 * 0.8) + 1e-6, rel=1e-12)
    k = _decode_kernel(1, 1000)
    ctx = k.kv_read_bytes / k.kv_write_bytes  # mean context per query token
    assert ctx == 1001 and k.count == 32  # the new token attends to itself too
    plain = cal.model_copy(update=NO_UNITS)
    mem = k.bytes / (3.35e12 * 0.85)  # attn_decode_mem_eff default
    assert kernel_cost(k, H100, plain).seconds == pytest.approx(32 * (mem + 2e-5), rel=1e-12)


def test_fp8_gemm_uses_its_own_efficiency_and_fp8_block_the_fp8_peak() -> None:
    ctx = graph_context(LLAMA8, QuantSpec(), ParallelSpec())
    cal = Calibration(gemm_eff_fp8=0.5, gemm_eff_fp8_block=0.25, gemm_overhead_s=0.0)
    shape = (2048 / (16 * 132)) * (4096 / (4096 + 128))  # as the 4096^3 bf16 case
    for dtype, eff in (("fp8", 0.5), ("fp8_block", 0.25), ("bf16", 0.75)):
        k = gemm("g", 4096, 4096, 4096, ctx, count=1, dtype=dtype)
        # per-tensor fp8 on Hopper: 1550 TFLOP/s of the 1978.9 peak (model.cost.FP8_ARCH_PEAK_FRACTION)
        peak = {"bf16": 989.4e12, "fp8": 1550e12, "fp8_block": 1978.9e12}[dtype]
        # fp8 calls first quantise the bf16 activation: read 2 + write 1 bytes per element at gemm_mem_eff 0.8
        quant = 0.0 if dtype == "bf16" else 4096 * 4096 * 3 / (3.35e12 * 0.8)
        assert kernel_cost(k, H100, cal).seconds == pytest.approx(2 * 4096**3 / (peak * eff * shape) + quant,
                                                                  rel=1e-12)


def test_gemm_overlap_loss_adds_a_fraction_of_the_shorter_roofline_term() -> None:
    ctx = graph_context(LLAMA8, QuantSpec(), ParallelSpec())
    k = gemm("g", 256, 4096, 4096, ctx, count=1)
    base = kernel_cost(k, H100, Calibration(gemm_overhead_s=0.0))
    lossy = kernel_cost(k, H100, Calibration(gemm_overhead_s=0.0, gemm_overlap_loss=0.5))
    c, m = base.compute_s, base.memory_s
    assert base.seconds == pytest.approx(max(c, m), rel=1e-12)
    assert lossy.seconds == pytest.approx(max(c, m) + 0.5 * min(c, m), rel=1e-12)


# decode attention with the work-unit, L2 and CUDA-core terms switched off: the plain bandwidth roofline
NO_UNITS = {"attn_decode_unit_s": 0.0, "attn_decode_unit_bytes_per_s": 1e30, "attn_decode_split_s": 0.0,
            "attn_decode_l2_gain": 1.0}


def test_decode_work_units_split_kv_and_waves_by_hand() -> None:
    k = _decode_kernel(2, 1000)  # 2 sequences x 8 KV heads = 16 (sequence, KV head) pairs; H100: 132 SMs
    cal = Calibration(**{**NO_UNITS, "attn_decode_unit_s": 1e-6, "attn_decode_unit_bytes_per_s": 1e9,
                         "attn_decode_units_per_sm": 1.0, "attn_decode_split_tokens": 100.0,
                         "attn_decode_split_s": 4e-6, "attn_decode_overhead_s": 0.0})
    # split-KV fills the 132 slots: min(1001 / 100, 132 / 16) = 8.25 chunks per pair, one wave of 132 units
    split = 132 / 16
    kc = kernel_cost(k, H100, cal)
    assert kc.seconds == pytest.approx(32 * (1e-6 + k.bytes / (132 * 1e9) + 4e-6 * (1 - 1 / split)), rel=1e-12)
    assert kc.bound == "overhead"  # the work-unit floor, not DRAM, binds
    # no split-KV: 16 units stream the bytes, one wave
    whole = cal.model_copy(update={"attn_decode_split_tokens": 0.0})
    assert kernel_cost(k, H100, whole).seconds == pytest.approx(32 * (1e-6 + k.bytes / (16 * 1e9)), rel=1e-12)
    # 1024 sequences x 8 KV heads over 132 slots: 8192 / 132 waves, each a unit's fixed cost and its bytes
    many = _decode_kernel(1024, 2)
    waves = 8192 / 132
    assert kernel_cost(many, H100, cal).seconds == pytest.approx(
        32 * waves * (1e-6 + many.bytes / (8192 * 1e9)), rel=1e-12)


def test_decode_kv_in_l2_streams_at_the_l2_gain_and_fixed_costs_scale_with_clock() -> None:
    cal = Calibration(**{**NO_UNITS, "attn_decode_l2_gain": 2.0, "attn_decode_overhead_s": 0.0})
    small = _decode_kernel(1, 1000)  # 4.1 MB of KV per layer: fits H100's 50 MiB L2
    big = _decode_kernel(8, 8192)  # 268 MB: does not
    off = Calibration(**NO_UNITS)
    assert kernel_cost(small, H100, cal).memory_s == pytest.approx(kernel_cost(small, H100, off).memory_s / 2,
                                                                   rel=1e-9)
    assert kernel_cost(big, H100, cal).memory_s == pytest.approx(kernel_cost(big, H100, off).memory_s, rel=1e-9)
    # fixed costs are cycles at H100's 1.83 GHz: an L40S (2.52 GHz) call costs 1.83/2.52 of it
    l40s = load_hardware("l40s")
    fixed = Calibration(**{**NO_UNITS, "attn_decode_overhead_s": 1e-5, "attn_decode_mem_eff": 1.0})
    tiny = _decode_kernel(1, 1)
    body = kernel_cost(tiny, l40s, fixed).memory_s
    assert kernel_cost(tiny, l40s, fixed).seconds == pytest.approx(32 * (body + 1e-5 * 1.83 / 2.52), rel=1e-12)


def test_attention_fixed_costs_run_in_cycles_and_each_fp8_operand_pays_a_quantise_pass() -> None:
    from roofsim.model.graph import attention_kernels

    l40s = load_hardware("l40s")  # 2.52 GHz against the 1.83 GHz reference clock
    cal = Calibration(attn_prefill_overhead_s=1e-5, attn_decode_overhead_s=8e-6, attn_fp8_quant_s=3e-6,
                      attn_decode_split_s=0.0)
    free = cal.model_copy(update={"attn_prefill_overhead_s": 0.0, "attn_decode_overhead_s": 0.0,
                                  "attn_fp8_quant_s": 0.0})

    def fixed(k, hw) -> float:  # the fixed cost of one call: the time it adds over the same call without one
        return (kernel_cost(k, hw, cal).seconds - kernel_cost(k, hw, free).seconds) / k.count

    shape = BatchShape.build(prefill=[(64, 0)])
    (p16,) = attention_kernels(graph_context(LLAMA8, QuantSpec(), ParallelSpec()), shape)
    (p8kv,) = attention_kernels(graph_context(LLAMA8, QuantSpec(kv_dtype="fp8"), ParallelSpec()), shape)
    (p8,) = attention_kernels(graph_context(LLAMA8, QuantSpec(activation_dtype="fp8", weight_dtype="fp8",
                                                              kv_dtype="fp8"), ParallelSpec()), shape)
    assert (p16.kv_dtype, p8kv.kv_dtype, p8.dtype) == ("bf16", "fp8", "fp8")
    r = 1.83 / 2.52
    assert fixed(p16, l40s) == pytest.approx(1e-5 * r, rel=1e-9)
    # an fp8 KV cache: the new K/V are quantised into it (one pass); fp8 math also quantises the query (two)
    assert fixed(p8kv, l40s) == pytest.approx((1e-5 + 3e-6) * r, rel=1e-9)
    assert fixed(p8, l40s) == pytest.approx((1e-5 + 2 * 3e-6) * r, rel=1e-9)
    assert fixed(p16, H100) == pytest.approx(1e-5, rel=1e-9)  # H100 runs at the reference clock
    dec = BatchShape.build(decode_ctx=[100])
    (d16,) = attention_kernels(graph_context(LLAMA8, QuantSpec(), ParallelSpec()), dec)
    (d8,) = attention_kernels(graph_context(LLAMA8, QuantSpec(kv_dtype="fp8"), ParallelSpec()), dec)
    assert fixed(d16, l40s) == pytest.approx(8e-6 * r, rel=1e-9)
    assert fixed(d8, l40s) == pytest.approx((8e-6 + 3e-6) * r, rel=1e-9)


def test_unpacked_gqa_decode_runs_a_padded_tile_per_query_head_by_hand() -> None:
    import dataclasses

    from roofsim.model.cost import FA2_TILE_M, FA2_TILE_N, decode_work
    from roofsim.model.graph import attention_kernels

    (k,) = attention_kernels(graph_context(LLAMA8, QuantSpec(), ParallelSpec()),
                             BatchShape.build(decode_ctx=[99] * 4))  # 32 query heads over 8 KV heads of 128
    assert decode_work(k) == (k.flops, 8, 4.0)
    u = dataclasses.replace(k, gqa_unpacked=True)
    # 100 keys (99 cached + its own) pad to 2 blocks of 64; the one query row to a 128-row tile
    assert (FA2_TILE_M, FA2_TILE_N) == (128, 64)
    flops, units, group = decode_work(u)
    assert (units, group) == (32, 1.0)
    assert flops == pytest.approx(k.flops * 128 * 128 / 100, rel=1e-12)
    assert flops == pytest.approx(4 * 32 * 128 * 128 * 2 * 2 * 128, rel=1e-12)  # seqs x heads x tile x 4 d
    slow = kernel_cost(u, H100, DEFAULT_CALIBRATION).compute_s
    assert slow == pytest.approx(kernel_cost(k, H100, DEFAULT_CALIBRATION).compute_s * 128 * 128 / 100, rel=1e-12)
    # and splits no KV: one sequence of 8 MHA heads over 16k keys runs 8 units at FA2_UNSWAPPED_UNIT_BYTES_PER_S
    from roofsim.model.cost import FA2_UNSWAPPED_UNIT_BYTES_PER_S, attention_rates, decode_attention_time

    (m,) = attention_kernels(graph_context(load_model("llama-2-7b"), QuantSpec(), ParallelSpec(tp=4)),
                             BatchShape.build(decode_ctx=[16383]))
    assert (m.heads, m.k) == (8, 8)
    mu = dataclasses.replace(m, gqa_unpacked=True)
    r = attention_rates(H100, DEFAULT_CALIBRATION, m.dtype, m.kv_dtype)
    args = (m.flops, 0.0, m.bytes, m.kv_read_bytes, 16384.0, 1, 8, 1.0, r, DEFAULT_CALIBRATION.__dict__)
    floor = decode_attention_time(*args, True)[2]
    assert floor == pytest.approx(1e-6 + m.bytes / (8 * FA2_UNSWAPPED_UNIT_BYTES_PER_S), rel=1e-12)
    split = 46.2 / 8  # 132 SMs x 0.35 slots over 8 units: each sequence's KV cut 5.8 ways
    assert decode_attention_time(*args)[2] == pytest.approx(1e-6 + m.bytes / (8 * split * 6e10), rel=1e-12)
    assert kernel_cost(mu, H100, DEFAULT_CALIBRATION).seconds > 10 * kernel_cost(m, H100, DEFAULT_CALIBRATION).seconds


def test_large_gqa_groups_run_decode_math_on_cuda_cores() -> None:
    import dataclasses

    k = _decode_kernel(8, 4096)  # 32 query heads over 8 KV heads: group 4
    cal = Calibration(**{**NO_UNITS, "attn_decode_cuda_group": 40.0, "attn_decode_cuda_eff": 0.5})
    assert kernel_cost(k, H100, cal).compute_s == pytest.approx(k.flops / (989.4e12 * 0.55), rel=1e-9)
    wide = dataclasses.replace(k, heads=8 * 64)  # group 64: fp32 CUDA cores (H100 67 TFLOP/s) at 0.5
    assert kernel_cost(wide, H100, cal).compute_s == pytest.approx(wide.flops / (67e12 * 0.5), rel=1e-3)


def test_allreduce_one_shot_two_shot_floor_and_nccl_by_hand() -> None:
    # h100-sxm: NVLink 450 GB/s per direction, clock 1.83 GHz (= COMM_REF_CLOCK_HZ: latencies unscaled); NCCL counts
    # a Hopper link at 20.6/20 of an Ampere one (NVLINK_NCCL_X): bus bandwidth 0.8 x 450 x 1.03 = 370.8 GB/s
    bus = 0.8 * 450e9 * 1.03
    cal = Calibration(comm_latency_s=1e-6, comm_bw_eff=0.25, comm_twoshot_latency_x=2.0, comm_oneshot_max_bytes=1e6,
                      nccl_bw_eff=0.8)
    kbw = min(450e9 * 0.8, 36 * 1.83e9 * 16 * 0.25)  # the kernel's 36 blocks, not the link, set the pace
    small, mid, big = 64e3, 400e3, 4e6
    assert allreduce_seconds(small, 8, H100, cal) == pytest.approx(1e-6 + 7 * small / kbw, rel=1e-12)  # one-shot
    assert allreduce_seconds(mid, 8, H100, cal) == pytest.approx(2e-6 + 1.75 * mid / kbw, rel=1e-12)  # two-shot
    assert allreduce_seconds(mid, 4, H100, cal) == pytest.approx(1e-6 + 3 * mid / kbw, rel=1e-12)  # < 512 KB
    fast = cal.model_copy(update={"comm_latency_s": 0.0, "comm_floor_s": 2e-5})
    assert allreduce_seconds(16, 2, H100, fast) == pytest.approx(2e-5, rel=1e-12)  # the eager floor
    # NCCL, 8 GPUs, 64 KB: ring LL (6.6 + 14 x 0.6 us, half the bus bandwidth capped at Hopper's 141 GB/s)
    # beats LL128 (14 + 14 x 1.9 us), Simple (8.4 + 14 x 3.4 us) and NVLS (25 us)
    ll = 15.0e-6 + 1.75 * small / 141e9
    assert allreduce_seconds(small, 8, H100, cal, nccl=True) == pytest.approx(ll, rel=1e-9)
    # above the engine's 1 MB limit: NCCL (256 MB at 8 GPUs: NVLS, 9/8 of it over each link at 0.85 x the bus:
    # the switch reads the whole message from every GPU and multicasts every slice back) + its call cost
    huge = float(1 << 28)
    nvls = 25e-6 + 9 / 8 * huge / (0.85 * bus)
    assert nvls < (8.4 + 14 * 3.4) * 1e-6 + 1.75 * huge / bus  # still faster than the Simple ring
    assert allreduce_seconds(huge, 8, H100, cal, nccl=True) == pytest.approx(nvls, rel=1e-9)
    assert allreduce_seconds(big, 8, H100, cal) == pytest.approx(
        allreduce_seconds(big, 8, H100, cal, nccl=True) + 1e-6, rel=1e-12)
    # 4 GPUs: no NVLS; Simple ring, 2(n-1)/n of the message at the bus bandwidth
    assert allreduce_seconds(huge, 4, H100, cal, nccl=True) == pytest.approx(
        (8.4 + 6 * 3.4) * 1e-6 + 1.5 * huge / bus, rel=1e-9)


def test_decode_compute_efficiency_is_its_own_field_and_inherits_prefill() -> None:
    assert Calibration(attn_prefill_eff=0.4).attn_decode_eff == 0.4  # older profiles keep their meaning
    k = _decode_kernel(8, 4096)
    slow = Calibration(attn_decode_eff=0.002, attn_decode_overhead_s=0.0, **NO_UNITS)  # very slow decode math
    kc = kernel_cost(k, H100, slow)
    assert kc.compute_s == pytest.approx(k.flops / (H100.peak("bf16") * 0.002), rel=1e-12)
    assert kc.seconds == pytest.approx(k.count * kc.compute_s, rel=1e-12) and kc.bound == "compute"
    # prefill is untouched; fp8 decode scales attn_prefill_eff_fp8 by the decode/prefill ratio
    assert kernel_cost(k, H100, Calibration(attn_decode_overhead_s=0.0, **NO_UNITS)).bound == "memory"
    from roofsim.model.cost import decode_compute_efficiency

    cal = Calibration(attn_prefill_eff=0.5, attn_prefill_eff_fp8=0.4, attn_decode_eff=0.25)
    assert decode_compute_efficiency("fp8", cal) == pytest.approx(0.2) and decode_compute_efficiency("bf16", cal) == 0.25


def test_gemv_regime_has_no_tile_padding() -> None:
    ctx = graph_context(LLAMA8, QuantSpec(), ParallelSpec())
    from roofsim.model.cost import gemm_shape_efficiency

    tiled, gemv = Calibration(), Calibration(gemm_gemv_max_m=1)
    assert gemm_shape_efficiency(1, 4096, 4096, 132, gemv) == 1.0
    assert gemm_shape_efficiency(1, 4096, 4096, 132, tiled) < 1 / 64  # one row of a 64-row tile
    assert gemm_shape_efficiency(2, 4096, 4096, 132, gemv) == gemm_shape_efficiency(2, 4096, 4096, 132, tiled)
    cpu = H100.model_copy(update={"compute": H100.compute.model_copy(update={"num_units": 2})})
    g = gemm("gemv", 1, 4096, 4096, ctx, count=1)
    # a GEMV streams the weights: memory-bound at gemm_mem_eff (2 units would otherwise make the padded tile bind)
    assert kernel_cost(g, cpu, gemv).seconds == pytest.approx(g.bytes / (3.35e12 * 0.8) + 2.5e-6, rel=1e-12)


def test_prefill_tile_padding_and_softmax_work_by_hand() -> None:
    c = graph_context(LLAMA8, QuantSpec(), ParallelSpec())  # 32 heads of 128
    from roofsim.model.graph import attention_kernels

    (k,) = attention_kernels(c, BatchShape.build(prefill=[(1024, 0)] * 2))
    pairs = 2 * 1024 * 1025 / 2
    assert (k.scores, k.heads, k.window) == (pairs * 32, 32, 0)
    cal = Calibration(attn_prefill_tile=128.0, attn_softmax_flops=100.0, attn_prefill_overhead_s=0.0,
                      attn_prefill_s_half=0.0)
    # effective scores: exact + one causal edge of min(128, 1024)/2 keys per query per head
    work = (pairs * 32 + 32 * 2048 * 64) * (4 * 128 + 100)
    assert kernel_cost(k, H100, cal).compute_s == pytest.approx(work / (H100.peak("bf16") * 0.55), rel=1e-12)
    gpt = load_model("gpt-oss-20b")  # sliding window 128: a chunk longer than the window pays a second edge
    (_, swa) = attention_kernels(graph_context(gpt, QuantSpec(), ParallelSpec()),
                                 BatchShape.build(prefill=[(1024, 0)], window=gpt.sliding_window))
    assert swa.window == 128
    from roofsim.model.cost import prefill_score_terms

    assert prefill_score_terms(swa.scores, swa.heads, swa.window, 1024, 1)[1] == swa.heads * 1024 * 2


def test_prefill_memory_of_a_call_that_fits_in_l2_runs_at_the_per_sm_rate_by_hand() -> None:
    from roofsim.model.cost import prefill_memory_seconds
    from roofsim.model.graph import attention_kernels

    l40s = load_hardware("l40s")  # 142 SMs x 2.52 GHz, 864 GB/s, 96 MiB L2
    c = graph_context(LLAMA8, QuantSpec(), ParallelSpec())  # 32 query heads, 8 KV heads of 128
    (k,) = attention_kernels(c, BatchShape.build(prefill=[(64, 0)] * 4))
    # bf16: Q 64x32x128, K and V 64x8x128 read and written to the cache, O 64x32x128: 2 bytes each, 4 sequences
    assert k.bytes == 4 * 64 * 2 * (32 * 128 * 2 + 8 * 128 * 4)
    cal = Calibration(attn_prefill_mem_eff=0.5, attn_prefill_cached_bytes_per_clk=4.0)
    x2 = (k.bytes / 100663296) ** 2  # 6 MiB against 96 MiB: 0.4 % of the bytes go to DRAM
    share = x2 / (1 + x2)
    expected = share * k.bytes / (864e9 * 0.5) + (1 - share) * k.bytes / (4.0 * 142 * 2.52e9)
    assert expected == pytest.approx(4.435e-6, rel=1e-3)  # 3.3x faster than half the GDDR bandwidth (14.6 us)
    assert kernel_cost(k, l40s, cal).memory_s == pytest.approx(expected, rel=1e-12)
    # 0 switches the regime off; a working set 100x the L2 moves at DRAM bandwidth to 1e-4
    off = kernel_cost(k, l40s, cal.model_copy(update={"attn_prefill_cached_bytes_per_clk": 0.0})).memory_s
    assert off == pytest.approx(k.bytes / (864e9 * 0.5), rel=1e-12)
    big = 100 * 100663296.0
    assert prefill_memory_seconds(big, 864e9, 100663296.0, 142 * 2.52e9, 0.5, 4.0) == pytest.approx(
        big / (864e9 * 0.5), rel=1e-4)


def test_fp8_prefill_attention_runs_at_the_16_bit_rate_without_warpgroup_mma() -> None:
    from roofsim.model.cost import prefill_attention_peak
    from roofsim.model.graph import attention_kernels

    l40s, rtx, b200, mi300x = (load_hardware(h) for h in ("l40s", "rtx-pro-6000", "b200", "mi300x"))
    assert prefill_attention_peak(H100, "fp8") == 1978.9e12  # Hopper: wgmma, 4096 FLOP/clk/SM
    assert prefill_attention_peak(b200, "fp8") == b200.peak("fp8")  # tcgen05
    assert prefill_attention_peak(l40s, "fp8") == 362.05e12  # Ada mma.sync: the bf16 peak, not 733e12
    assert prefill_attention_peak(rtx, "fp8") == 480e12  # Blackwell workstation GB202, 1024 FLOP/clk/SM
    assert prefill_attention_peak(mi300x, "fp8") == mi300x.peak("fp8")  # not an NVIDIA part: its fp8 peak
    assert prefill_attention_peak(l40s, "bf16") == 362.05e12
    c = graph_context(LLAMA8, QuantSpec(weight_dtype="fp8", activation_dtype="fp8", kv_dtype="fp8"), ParallelSpec())
    (k,) = attention_kernels(c, BatchShape.build(prefill=[(4096, 0)]))
    assert k.dtype == "fp8"
    cal = Calibration(attn_prefill_eff_fp8=0.4, attn_prefill_s_half=0.0)
    assert kernel_cost(k, l40s, cal).compute_s == pytest.approx(k.flops / (362.05e12 * 0.4), rel=1e-12)
    assert kernel_cost(k, H100, cal).compute_s == pytest.approx(k.flops / (1978.9e12 * 0.4), rel=1e-12)


def test_graphed_allreduce_skips_the_host_dispatch_floor() -> None:
    cal = Calibration(comm_floor_s=4e-5, comm_latency_s=1e-6)
    eager = allreduce_seconds(4096, 4, H100, cal)
    graphed = allreduce_seconds(4096, 4, H100, cal, graphed=True)
    assert eager == 4e-5 and graphed == allreduce_seconds(4096, 4, H100, cal.model_copy(update={"comm_floor_s": 0}))
    assert graphed < 1e-5


def test_pcie_links_clock_scaling_and_engine_fallback_by_hand() -> None:
    """PCIe (L40S: 32 GB/s, 2.52 GHz): NCCL's base latencies scaled by 1.83/2.52, its PCIe steps not (bus time),
    nccl_bw_eff_pcie, no LL128, the
    root complex shared by the ring (2/n of the link per GPU above 2 GPUs); the engine's own kernel only at 2 GPUs
    (its PCIe barrier costs 2.3 us more; more PCIe GPUs: NCCL plus the engine's call cost), and never over PCIe for
    TensorRT-LLM (ENGINE_COMM)."""
    l40s = load_hardware("l40s")
    cal = Calibration(nccl_bw_eff_pcie=0.5, comm_latency_s=3e-6)
    ck = 1.83e9 / 2.52e9
    big = float(1 << 26)
    simple = (ck * 8.4 + 6 * 5.7) * 1e-6 + 1.5 * big / 8e9  # 4 GPUs, Simple ring at 0.5 x 32 GB/s x 2/4
    assert allreduce_seconds(big, 4, l40s, cal, nccl=True) == pytest.approx(simple, rel=1e-9)
    pair = (ck * 8.4 + 2 * 5.7) * 1e-6 + 1.0 * big / 16e9  # 2 GPUs: the whole 0.5 x 32 GB/s
    assert allreduce_seconds(big, 2, l40s, cal, nccl=True) == pytest.approx(pair, rel=1e-9)
    small = 4096.0
    ll = (ck * 6.6 + 6 * 1.0) * 1e-6 + 1.5 * small / 4e9  # LL: half the bus bandwidth (under the 87.7 GB/s cap)
    assert allreduce_seconds(small, 4, l40s, cal, nccl=True) == pytest.approx(ll, rel=1e-9)
    assert allreduce_seconds(small, 4, l40s, cal) == pytest.approx(ll + ck * 3e-6, rel=1e-9)
    kbw = min(16e9, 36 * 2.52e9 * 16 * 0.2)
    # the kernel's PCIe flag barrier: NCCL's Simple step over PCIe minus over NVLink, 5.7 - 3.4 us, bus time
    assert allreduce_seconds(small, 2, l40s, cal) == pytest.approx(ck * 3e-6 + 2.3e-6 + small / kbw, rel=1e-9)
    trt = cal.model_copy(update=ENGINE_COMM["trtllm"])
    ll2 = (ck * 6.6 + 2 * 1.0) * 1e-6 + small / 8e9
    assert allreduce_seconds(small, 2, l40s, trt) == pytest.approx(ll2 + ck * 3e-6, rel=1e-9)
    # over NVLink TensorRT-LLM runs its own kernel like the others
    assert allreduce_seconds(small, 2, H100, trt) == allreduce_seconds(small, 2, H100, cal)


def test_ring_extra_steps_and_pcie_share_exponent_by_hand() -> None:
    """A ring pass costs nccl_ring_extra_steps more steps of 1/n of the message; over PCIe the per-GPU share of the
    link is min(1, 2/n) to the power nccl_pcie_share_exp (1: a shared root complex, 0: a non-blocking switch)."""
    huge = float(1 << 28)
    cal = Calibration(nccl_bw_eff=0.8, nccl_ring_extra_steps=0.5)
    # H100, 4 GPUs: Simple ring, (2(n-1) + 0.5)/n = 1.625 of the message at 0.8 x 450 GB/s x 20.6/20
    assert allreduce_seconds(huge, 4, H100, cal, nccl=True) == pytest.approx(
        (8.4 + 6 * 3.4) * 1e-6 + 1.625 * huge / (360e9 * 1.03), rel=1e-9)
    assert allreduce_seconds(huge, 4, H100, cal, nccl=True) > allreduce_seconds(
        huge, 4, H100, cal.model_copy(update={"nccl_ring_extra_steps": 0.0}), nccl=True)
    l40s = load_hardware("l40s")
    ck, big = 1.83e9 / 2.52e9, float(1 << 26)
    for exp, share in ((0.0, 1.0), (1.0, 0.5), (2.0, 0.25)):  # 4 GPUs: 2/4 of the link, to the exponent
        c = Calibration(nccl_bw_eff_pcie=0.5, nccl_pcie_share_exp=exp)
        assert allreduce_seconds(big, 4, l40s, c, nccl=True) == pytest.approx(
            (ck * 8.4 + 6 * 5.7) * 1e-6 + 1.5 * big / (16e9 * share), rel=1e-9)
    # 2 PCIe GPUs and NVLink never share: the exponent does not move them
    for hw, n in ((l40s, 2), (H100, 8)):
        assert allreduce_seconds(big, n, hw, Calibration(nccl_pcie_share_exp=3.0), nccl=True) == \
            allreduce_seconds(big, n, hw, Calibration(), nccl=True)


def test_fp8_gemm_pays_its_own_fixed_cost() -> None:
    ctx = graph_context(LLAMA8, QuantSpec(weight_dtype="fp8", activation_dtype="fp8"), ParallelSpec())
    cal = Calibration(gemm_overhead_s=2e-6, gemm_overhead_s_fp8=1.3e-5)
    g8, g16 = gemm("q", 16, 4096, 4096, ctx, count=1), gemm("q", 16, 4096, 4096, ctx, count=1, dtype="bf16")
    zero = cal.model_copy(update={"gemm_overhead_s": 0.0, "gemm_overhead_s_fp8": 0.0})
    assert kernel_cost(g8, H100, cal).seconds == pytest.approx(kernel_cost(g8, H100, zero).seconds + 1.3e-5)
    assert kernel_cost(g16, H100, cal).seconds == pytest.approx(kernel_cost(g16, H100, zero).seconds + 2e-6)


def test_block_scaled_recipes_pay_the_block_quantise_fixed_cost() -> None:
    # fp8_block (1x128 groups) and nvfp4 (1x16 blocks) quantise the activation in one fused kernel: their own fixed
    # cost, inherited from the per-tensor fp8 one when not given
    ctx = graph_context(LLAMA8, QuantSpec(), ParallelSpec())
    rtx = load_hardware("rtx-pro-6000")
    cal = Calibration(gemm_overhead_s=2e-6, gemm_overhead_s_fp8=1.2e-5, gemm_overhead_s_fp8_block=4.5e-6)
    zero = cal.model_copy(update={"gemm_overhead_s": 0.0, "gemm_overhead_s_fp8": 0.0,
                                  "gemm_overhead_s_fp8_block": 0.0})
    for dtype, hw, fixed in (("fp8_block", H100, 4.5e-6), ("fp4", rtx, 4.5e-6), ("fp8", H100, 1.2e-5),
                             ("bf16", H100, 2e-6)):
        k = gemm("q", 16, 4096, 4096, ctx, count=1, dtype=dtype)
        assert kernel_cost(k, hw, cal).seconds == pytest.approx(kernel_cost(k, hw, zero).seconds + fixed, rel=1e-12)
    assert Calibration(gemm_overhead_s_fp8=1.2e-5).gemm_overhead_s_fp8_block == 1.2e-5


def test_eagerly_timed_gemm_waits_for_its_host_dispatch() -> None:
    from dataclasses import replace
    ctx = graph_context(LLAMA8, QuantSpec(), ParallelSpec())
    cal = Calibration(gemm_overhead_s_fp8_block=5e-6, gemm_eager_floor_s=9e-5)
    small = gemm("q", 16, 4096, 4096, ctx, count=1, dtype="fp8_block")  # ~18 us of weights at 0.8 x 3.35 TB/s
    big = gemm("q", 16384, 16384, 16384, ctx, count=1, dtype="fp8_block")  # ~11 ms of math
    for k in (small, big):
        graphed = kernel_cost(k, H100, cal)
        eager = kernel_cost(replace(k, timed_eager=True), H100, cal)
        body = max(graphed.compute_s, graphed.memory_s)
        serial = 5e-6 + k.m * 4096 * 3 / (3.35e12 * 0.8)  # fixed cost + the activation-quantise pass (k = 4096)
        if k is big:
            serial = 5e-6 + 16384 * 16384 * 3 / (3.35e12 * 0.8)
        assert eager.seconds == pytest.approx(max(body, 9e-5) + serial, rel=1e-12)
        assert graphed.seconds == pytest.approx(body + serial, rel=1e-12)
    assert kernel_cost(replace(small, timed_eager=True), H100, cal).bound == "overhead"


def test_fp8_kv_decode_uses_its_own_bandwidth_fraction() -> None:
    c = graph_context(LLAMA8, QuantSpec(kv_dtype="fp8"), ParallelSpec())
    from roofsim.model.graph import attention_kernels

    (k,) = attention_kernels(c, BatchShape.build(decode_ctx=[8192] * 8))
    assert k.kv_dtype == "fp8"
    base = Calibration(attn_decode_overhead_s=0.0, **NO_UNITS)
    half = base.model_copy(update={"attn_decode_mem_eff_fp8kv": 0.425})  # half the default 0.85
    assert kernel_cost(k, H100, half).memory_s == pytest.approx(2 * kernel_cost(k, H100, base).memory_s, rel=1e-12)
    (k16,) = attention_kernels(graph_context(LLAMA8, QuantSpec(), ParallelSpec()),
                               BatchShape.build(decode_ctx=[8192] * 8))
    assert kernel_cost(k16, H100, half).seconds == kernel_cost(k16, H100, base).seconds


def test_decode_steps_under_cuda_graphs_skip_the_allreduce_floor() -> None:
    m70 = load_model("llama-3.1-70b")
    eager = Calibration(comm_oneshot_max_bytes=8e6, comm_floor_s=4e-5)
    graphs = eager.model_copy(update={"decode_cuda_graphs": True})
    par = ParallelSpec(tp=4)
    dec = BatchShape.build(decode_ctx=[1000] * 8)
    mixed = BatchShape.build(prefill=[(8, 0)], decode_ctx=[1000] * 8)
    a, b = CostModel(m70, H100, parallel=par, calibration=eager), CostModel(m70, H100, parallel=par, calibration=graphs)
    for cm in (a, b):
        for sh in (dec, mixed):
            assert cm.step_seconds(sh) == pytest.approx(cm.step(sh).seconds, rel=1e-12)
    fast = allreduce_seconds(8 * 8192 * 2, 4, H100, eager, graphed=True)
    assert fast < 4e-5
    assert a.step_seconds(dec) - b.step_seconds(dec) == pytest.approx(2 * 80 * (4e-5 - fast), rel=1e-9)
    assert a.step_seconds(mixed) == b.step_seconds(mixed)  # a step with prefill runs eagerly


def test_unfused_elementwise_passes_multiply_memory_traffic() -> None:
    ctx = graph_context(LLAMA8, QuantSpec(), ParallelSpec())
    from roofsim.model.graph import elementwise

    norm = elementwise("input_norm", 4096 * 4096, 4096 * 4096, 4, ctx, 1, op="norm")
    act = elementwise("mlp_act", 2 * 4096 * 14336, 4096 * 14336, 8, ctx, 1, op="activation")
    add = elementwise("residual_add", 2 * 4096 * 4096, 4096 * 4096, 1, ctx, 1, op="residual")
    fused = Calibration(kernel_overhead_s=0.0)
    unfused = fused.model_copy(update={"elementwise_norm_passes": 3.5, "elementwise_act_passes": 4.0})
    assert kernel_cost(norm, H100, unfused).memory_s == pytest.approx(3.5 * kernel_cost(norm, H100, fused).memory_s)
    assert kernel_cost(act, H100, unfused).memory_s == pytest.approx(4 * kernel_cost(act, H100, fused).memory_s)
    assert kernel_cost(add, H100, unfused).seconds == kernel_cost(add, H100, fused).seconds


def test_unfused_passes_pay_one_launch_each_and_cache_regime_speeds_small_working_sets() -> None:
    ctx = graph_context(LLAMA8, QuantSpec(), ParallelSpec())
    from roofsim.model.graph import elementwise

    tiny = elementwise("input_norm", 8, 8, 4, ctx, 1, op="norm")  # overhead-bound
    cal = Calibration(kernel_overhead_s=5e-6, elementwise_norm_passes=3.5)
    assert kernel_cost(tiny, H100, cal).seconds == pytest.approx(3.5 * 5e-6, rel=1e-3)
    # cache regime: time x (1 + (gain - 1) s) / gain with s = ws^2 / (ws^2 + C^2)
    c = 4e6
    cached = Calibration(kernel_overhead_s=0.0, elementwise_cache_gain=3.0, elementwise_cache_bytes=c)
    dram = Calibration(kernel_overhead_s=0.0)
    for ws, factor in ((1e3, 1 / 3), (c, (1 + 2 * 0.5) / 3), (4e9, 1.0)):
        x = ws / (3 * ctx.ab)  # reads 2x, writes x elements: ws bytes in all
        add = elementwise("residual_add", 2 * x, x, 1, ctx, 1, op="residual")
        assert add.bytes == pytest.approx(ws)
        ratio = kernel_cost(add, H100, cached).memory_s / kernel_cost(add, H100, dram).memory_s
        assert ratio == pytest.approx(factor, rel=1e-3), ws
    # per class: a normalisation kernel takes elementwise_norm_cache_gain (inherits elementwise_cache_gain)
    assert Calibration(elementwise_cache_gain=3.0).elementwise_norm_cache_gain == 3.0
    x = 1e3 / (2 * ctx.ab)
    norm = elementwise("input_norm", x, x, 4, ctx, 1, op="norm")
    own = cached.model_copy(update={"elementwise_norm_cache_gain": 1.5})
    assert (kernel_cost(norm, H100, own).memory_s / kernel_cost(norm, H100, dram).memory_s
            == pytest.approx(1 / 1.5, rel=1e-3))
    # gain 1 or no cache size: exactly the DRAM roofline
    k = elementwise("residual_add", 1e5, 1e5, 1, ctx, 1, op="residual")
    for off in (Calibration(elementwise_cache_gain=1.0, elementwise_cache_bytes=c),
                Calibration(elementwise_cache_gain=3.0, elementwise_cache_bytes=0.0)):
        assert kernel_cost(k, H100, off).seconds == kernel_cost(k, H100, Calibration()).seconds


def test_gemv_uses_its_own_memory_efficiency() -> None:
    from roofsim.model.kernel import Kernel

    def gemm(m: int) -> Kernel:
        return Kernel(name="g", op="gemm", dtype="bf16", flops=2.0 * m * 4096 * 4096, weight_bytes=2 * 4096 * 4096,
                      act_read_bytes=2 * m * 4096, act_write_bytes=2 * m * 4096, m=m, n=4096, k=4096)
    cal = Calibration(gemm_gemv_max_m=1, gemm_mem_eff=0.2, gemm_gemv_mem_eff=0.8)
    bw = H100.memory.bandwidth_bytes_per_s
    assert kernel_cost(gemm(1), H100, cal).memory_s == pytest.approx(gemm(1).bytes / (bw * 0.8))
    assert kernel_cost(gemm(2), H100, cal).memory_s == pytest.approx(gemm(2).bytes / (bw * 0.2))
    # not given: it follows gemm_mem_eff, so older profiles mean what they meant
    assert Calibration(gemm_mem_eff=0.33).gemm_gemv_mem_eff == 0.33


def test_small_gemms_run_unpacked_like_a_gemv() -> None:
    from roofsim.model.cost import gemm_is_stream, gemm_shape_efficiency

    cal = Calibration(gemm_gemv_max_m=1, gemm_small_max_mnk=1_000_000, gemm_tile_m=64)
    assert gemm_is_stream(1, 4096, 4096, cal) and gemm_is_stream(4, 256, 768, cal)
    assert not gemm_is_stream(2, 768, 768, cal)  # 1.18M > 1M: packed and tiled
    assert gemm_shape_efficiency(4, 256, 768, 1, cal) == 1.0
    assert gemm_shape_efficiency(2, 768, 768, 1, cal) == pytest.approx(2 / 64)
    assert not gemm_is_stream(4, 256, 768, Calibration())  # default: off


def test_tile_menu_takes_the_least_padded_tile_per_shape() -> None:
    from roofsim.model.cost import gemm_shape_efficiency

    one = Calibration(gemm_tile_menu=())
    # n = 64 on the 188-SM RTX PRO 6000: a 64x64 tile wastes nothing; 16384/64 = 256 tiles = 2 waves (256/376)
    assert gemm_shape_efficiency(16384, 64, 2560, 188, DEFAULT_CALIBRATION) == pytest.approx(256 / 376)
    # the single 64x128 tile pads n to 128: half of the same waves' work is padding
    assert gemm_shape_efficiency(16384, 64, 2560, 188, one) == pytest.approx(0.5 * 256 / 376)
    # m = 1, n = 128, k = 6144: 64x64 -> 2 tiles, split-K 6 ways (6144 // 1024) = 12 of 188 SMs, 1/64 of each tile
    assert gemm_shape_efficiency(1, 128, 6144, 188, DEFAULT_CALIBRATION) == pytest.approx(1 / 64 * 12 / 188)
    # weight-only GEMMs (not cuBLAS calls) keep the single tile
    assert gemm_shape_efficiency(16384, 64, 2560, 188, DEFAULT_CALIBRATION, weight_only=True) == \
        pytest.approx(0.5 * 256 / 376)
    # grouped GEMMs keep gemm_tile_m x gemm_tile_n whatever the menu
    assert gemm_shape_efficiency(8, 512, 7168, 132, DEFAULT_CALIBRATION, groups=4) == \
        gemm_shape_efficiency(8, 512, 7168, 132, one, groups=4)


def test_power_limit_and_clock_scaled_fixed_cost_from_the_datasheet() -> None:
    from roofsim.model.cost import gemm_clock_factor, gemm_shape_efficiency, tensor_power_factor

    l40s, rtx = load_hardware("l40s"), load_hardware("rtx-pro-6000")
    cal = DEFAULT_CALIBRATION
    # 362.05 TFLOP/s x 2.11e-13 J x 2.52^2 = 485 W against the L40S's 350 W TDP; 629 W against the RTX's 600 W
    assert tensor_power_factor(l40s, cal) == pytest.approx(350 / (362.05e12 * 2.11e-13 * 2.52**2))
    assert tensor_power_factor(l40s, cal) == pytest.approx(0.7215, abs=1e-4)
    assert tensor_power_factor(rtx, cal) == pytest.approx(600 / (480e12 * 2.11e-13 * 2.493**2))
    assert tensor_power_factor(H100, cal) == tensor_power_factor(load_hardware("a100-sxm-80gb"), cal) == 1.0
    assert tensor_power_factor(l40s, Calibration(gemm_tensor_j_per_flop_ghz2=0.0)) == 1.0
    # the L40S's tensor-bound 18176 x 8192 x 8192 bf16 GEMM (whole waves on its 142 SMs with every tile of the menu)
    # takes 1/0.72 of the time at its datasheet peak
    ctx = graph_context(LLAMA8, QuantSpec(), ParallelSpec())
    k = gemm("g", 142 * 128, 8192, 8192, ctx, count=1)
    off = Calibration(gemm_tensor_j_per_flop_ghz2=0.0, gemm_overhead_s=0.0)
    on = Calibration(gemm_overhead_s=0.0)
    assert kernel_cost(k, l40s, on).seconds == pytest.approx(kernel_cost(k, l40s, off).seconds
                                                             / tensor_power_factor(l40s, cal))
    # the power limit binds on the SMs in use: one 128x128 tile of fp4 on 188 SMs runs at the clock-limited rate,
    # and a last partial wave of 71 of 142 SMs (f = 0.5 < 0.72) at full clock: (1 + 0.5) / (1 + 0.72) of the wave
    p = tensor_power_factor(l40s, cal)
    assert gemm_shape_efficiency(1, 128, 6144, 188, cal, dtype="fp4", power=0.95) == pytest.approx(1 / 128 / 188 / 0.95)
    assert gemm_shape_efficiency(213 * 64, 64, 64, 142, cal.model_copy(update={"gemm_tile_menu": ()}),
                                 power=p) == pytest.approx(0.5 * 1.5 / (1 + p))  # 213 64x128 tiles, half padded
    # gemm_overhead_s is given at 1.83 GHz and runs in cycles; the fp8 recipes' fixed costs do not scale
    assert gemm_clock_factor("bf16", l40s, cal) == pytest.approx(1.83 / 2.52)
    assert gemm_clock_factor("bf16", H100, cal) == 1.0
    assert gemm_clock_factor("fp8", l40s, cal) == gemm_clock_factor("fp8_block", l40s, cal) == 1.0
    tiny = gemm("g", 1, 64, 64, ctx, count=1)
    assert kernel_cost(tiny, l40s, cal).seconds - kernel_cost(tiny, l40s, cal.model_copy(
        update={"gemm_overhead_s": 0.0})).seconds == pytest.approx(2.5e-6 * 1.83 / 2.52)


def test_per_tensor_fp8_on_hopper_runs_at_its_architecture_fraction_of_the_fp8_peak() -> None:
    """gemm_peak_flops: a per-tensor fp8 GEMM on Hopper computes at 1550 / 1978.9 of the fp8 peak (DeepGEMM's best
    on H800; promoted wgmma accumulation), the mma.sync GPUs and every block-scaled or 16-bit GEMM at the full
    (power-limited) peak of the dtype they run on."""
    from roofsim.model import cost
    from roofsim.model.cost import gemm_peak_flops, tensor_power_factor

    cal = DEFAULT_CALIBRATION
    l40s = load_hardware("l40s")
    assert gemm_peak_flops("fp8", H100, cal) == pytest.approx(1550e12, rel=1e-9)
    assert gemm_peak_flops("fp8_block", H100, cal) == gemm_peak_flops("int8", H100, cal) == 1978.9e12
    assert gemm_peak_flops("bf16", H100, cal) == 989.4e12
    assert gemm_peak_flops("fp8", l40s, cal) == pytest.approx(733e12 * tensor_power_factor(l40s, cal), rel=1e-12)
    # a tensor-bound 8192^3 fp8 GEMM on H100 takes 1978.9 / 1550 of the time an unlimited fp8 peak would give
    ctx = graph_context(LLAMA8, QuantSpec(weight_dtype="fp8", activation_dtype="fp8"), ParallelSpec())
    k = gemm("g", 8192, 8192, 8192, ctx, count=1)
    assert k.dtype == "fp8"
    big = kernel_cost(k, H100, cal).compute_s
    assert big == pytest.approx(k.flops / (1550e12 * cost.gemm_compute_efficiency(8192, 8192, 8192, 132, cal, "fp8")),
                                rel=1e-9)


def test_l2_warm_benchmark_gemm_reads_at_l2_bandwidth() -> None:
    """A microbenchmark GEMM replayed with its operands in L2 (Kernel.l2_warm) reads at SMs x clock x
    gemm_l2_bytes_per_clk when that beats HBM; a serving GEMM (l2_warm False) never does."""
    from dataclasses import replace

    from roofsim.model.cost import gemm_time

    rtx = load_hardware("rtx-pro-6000")
    ctx = graph_context(LLAMA8, QuantSpec(), ParallelSpec())
    g = gemm("g", 16384, 64, 2560, ctx, count=1)  # an 84 MB activation: fits the 128 MB L2
    cold = gemm_time(g, rtx, DEFAULT_CALIBRATION)[1]
    assert cold == pytest.approx(g.bytes / (1.597e12 * 0.8))
    warm = gemm_time(replace(g, l2_warm=True), rtx, DEFAULT_CALIBRATION)[1]
    assert warm == pytest.approx(g.bytes / (188 * 2.493e9 * 8.0))  # 3.75 TB/s against 1.28
    assert gemm_time(replace(g, l2_warm=True), rtx, Calibration(gemm_l2_bytes_per_clk=0.0))[1] == cold


def test_decode_context_counts_cached_entries_per_sequence_in_a_verify_step() -> None:
    import dataclasses

    from roofsim.model.cost import decode_context

    k = _decode_kernel(4, 999)  # 1000 entries per sequence (the new token's own key included)
    assert decode_context(k) == pytest.approx(1000.0)
    # a speculative verify step: 5 query tokens per sequence write 5 entries each, over the same context
    verify = dataclasses.replace(k, m=5 * k.n, kv_write_bytes=5 * k.kv_write_bytes)
    assert decode_context(verify) == pytest.approx(1000.0)


def test_warp_mma_only_by_architecture_and_a_cpu_costs_without_tensor_math() -> None:
    # mma.sync GPUs (Ampere 2048, Ada 1024 dense bf16 FLOPs per SM per clock) vs warpgroup MMA (Hopper 4096)
    assert warp_mma_only(load_hardware("a100-sxm-80gb")) and warp_mma_only(load_hardware("l40s"))
    assert not warp_mma_only(load_hardware("h100-sxm"))
    cpu = load_hardware("cpu-generic")  # fp32 only: no tensor-core question to ask, and no ValueError
    assert not warp_mma_only(cpu)
    cm = CostModel(load_model("llama-3.1-8b"), cpu, QuantSpec(weight_dtype="fp32", activation_dtype="fp32",
                                                                 kv_dtype="fp32"), ParallelSpec(), Calibration())
    assert cm.step_seconds_energy(BatchShape.build(decode_ctx=[64]))[0] > 0


def test_fp4_and_block_fp8_gemms_split_no_k_and_fp4_tiles_start_at_128() -> None:
    from roofsim.model.cost import gemm_shape_efficiency

    # m = 1, n = 128, k = 6144 on 188 SMs: bf16 splits 2 64x64 tiles 6 ways; fp4 runs one 128x128 CTA
    assert gemm_shape_efficiency(1, 128, 6144, 188, DEFAULT_CALIBRATION) == pytest.approx(1 / 64 * 12 / 188)
    assert gemm_shape_efficiency(1, 128, 6144, 188, DEFAULT_CALIBRATION, dtype="fp4") == \
        pytest.approx(1 / 128 * 1 / 188)
    # fp8_block (DeepGEMM, CUTLASS blockwise: one CTA per output tile) and a no_splitk kernel (CUTLASS scaled-mm)
    # keep the menu's 64x64 tiles but run them unsplit: 2 CTAs
    for kw in ({"dtype": "fp8_block"}, {"dtype": "fp8", "no_splitk": True}):
        assert gemm_shape_efficiency(1, 128, 6144, 188, DEFAULT_CALIBRATION, **kw) == \
            pytest.approx(1 / 64 * 2 / 188)
    assert gemm_shape_efficiency(1, 128, 6144, 188, DEFAULT_CALIBRATION, dtype="fp8") == \
        pytest.approx(1 / 64 * 12 / 188)
    # on a GPU without warpgroup MMA, block-scaled fp8 runs TensorRT-LLM's one 32x128 tile: m = 1 pads 1/32 of it
    assert gemm_shape_efficiency(1, 128, 6144, 188, DEFAULT_CALIBRATION, dtype="fp8_block", warp_mma=True) == \
        pytest.approx(1 / 32 * 1 / 188)
    assert gemm_shape_efficiency(1, 128, 6144, 188, DEFAULT_CALIBRATION, warp_mma=True) == \
        pytest.approx(1 / 64 * 12 / 188)  # other dtypes keep the menu
    # nvfp4 m = 2, n = 256, k = 51200 (a 183 us AIConfigurator row on the RTX PRO 6000): two 128x128 tiles, no split
    assert gemm_shape_efficiency(2, 256, 51200, 188, DEFAULT_CALIBRATION, dtype="fp4") == \
        pytest.approx(2 / 128 * 2 / 188)
    # a large fp4 GEMM pads nothing but loses the finer waves of 64-wide tiles: 1024 128x128 tiles in 6 waves
    assert gemm_shape_efficiency(4096, 4096, 4096, 188, DEFAULT_CALIBRATION, dtype="fp4") == \
        pytest.approx(1024 / (6 * 188))


def test_prefill_attention_rate_follows_the_grid_fill_and_each_cta_pays_a_fixed_cost() -> None:
    from roofsim.model.cost import prefill_ctas, prefill_fill_util
    from roofsim.model.graph import attention_kernels

    # grid: sequences x heads x 128-row query tiles; half rate at fill_half CTAs per SM, 1/(1+2) at a quarter of it
    assert prefill_ctas(2, 32, 300) == 2 * 32 * 3
    assert prefill_fill_util(0.25 * 132, 132, 0.25) == pytest.approx(0.5)
    assert prefill_fill_util(0.25 * 132 / 4, 132, 0.25) == pytest.approx(1 / 3)
    assert prefill_fill_util(5, 132, 0.0) == 1.0  # switched off
    ctx = graph_context(LLAMA8, QuantSpec(), ParallelSpec())
    (one,) = attention_kernels(ctx, BatchShape.build(prefill=[(4096, 0)]))  # 32 heads x 32 tiles: 7.8 CTAs/SM
    (many,) = attention_kernels(ctx, BatchShape.build(prefill=[(4096, 0)] * 8))
    base = Calibration(attn_prefill_overhead_s=0.0, attn_fp8_quant_s=0.0)
    filled = base.model_copy(update={"attn_prefill_fill_half": 0.25})

    def compute(k, cal) -> float:
        return kernel_cost(k, H100, cal).compute_s

    util = prefill_fill_util(32 * 32, 132, 0.25)  # the 1-sequence call: 0.848 of the rate
    assert util == pytest.approx(1 / (1 + (0.25 * 132 / 1024) ** 0.5))
    assert compute(one, filled) == pytest.approx(compute(one, base) / util, rel=1e-9)
    assert compute(many, filled) == pytest.approx(compute(many, base) / prefill_fill_util(8 * 32 * 32, 132, 0.25),
                                                  rel=1e-9)  # 8 sequences: 8x the CTAs, 0.94 of the rate
    # a CTA fixed cost in cycles at the reference clock: 8 x 32 x 32 CTAs over 132 SMs of 1 us each (H100: 1.83 GHz)
    per_cta = base.model_copy(update={"attn_prefill_cta_s": 1e-6})
    extra = (kernel_cost(many, H100, per_cta).seconds - kernel_cost(many, H100, base).seconds) / many.count
    assert extra == pytest.approx(8 * 32 * 32 / 132 * 1e-6, rel=1e-9)
