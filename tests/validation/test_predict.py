"""predict_kernel on hand-checkable rows, the vectorised table equals kernel_cost, error statistics on a tiny table."""

from __future__ import annotations

import math
from dataclasses import replace

import numpy as np
import pytest

from roofsim.hardware_specs.catalog import load_hardware
from roofsim.model.batch import BatchShape
from roofsim.model.cost import Calibration, allreduce_seconds, kernel_cost, tensor_power_factor
from roofsim.model.graph import attention_kernels, gemm
from roofsim.validation.kernel_tables import KernelMeasurement
from roofsim.validation.metrics_err import error_stats, group_key, grouped_stats
from roofsim.validation.predict import (
    _ctx,
    features,
    predict_kernel,
    predict_rows,
    row_kernel,
    why_unpredictable,
)

H100 = load_hardware("h100-sxm")
CAL = Calibration()


def _row(op: str, dtype: str = "bf16", **kw) -> KernelMeasurement:
    return KernelMeasurement("test", kw.pop("hardware", "h100-sxm"), kw.pop("framework", "fw"), op, dtype,
                             kw.pop("variant", ""), kw.pop("measured_s", 1e-4), **kw)


def test_gemm_row_equals_kernel_cost_of_graph_gemm() -> None:
    row = _row("gemm", m=4096, n=4096, k=4096)
    expected = kernel_cost(gemm("g", 4096, 4096, 4096, _ctx("bf16", "bf16"), 1), H100, CAL).seconds
    assert predict_kernel(row, H100, CAL) == pytest.approx(expected, rel=1e-12)
    # hand roofline: 2*4096^3 FLOPs at 989.4e12 x 0.75 x K-ramp 4096/(4096+128) (tiles 64x128 fill 132 SMs evenly?)
    flops = 2 * 4096**3
    tiles = (4096 // 64) * (4096 // 128)  # 2048 tiles, 16 waves of 132 -> 2048 / (16 * 132)
    eff = 0.75 * (tiles / (math.ceil(tiles / 132) * 132)) * 4096 / (4096 + 128)
    assert predict_kernel(row, H100, CAL) == pytest.approx(flops / (989.4e12 * eff) + 2.5e-6, rel=1e-9)


def test_fp8_gemm_uses_fp8_peak_and_one_byte_weights() -> None:
    k = row_kernel(_row("gemm", "fp8", m=8192, n=8192, k=8192))
    assert k.dtype == "fp8" and k.weight_bytes == 8192 * 8192 * 1.0


def test_weight_only_int4_row_dequantizes_to_bf16() -> None:
    k = row_kernel(_row("gemm", "int4", variant="x; gemm_dtype=int4_wo; v", m=16, n=4096, k=4096))
    assert k.dtype == "bf16" and k.dequant_flops == 2.0 * 4096 * 4096


def test_attention_rows_match_graph_attention_kernels() -> None:
    pre = _row("attn_prefill", batch=4, seq_len=1024, num_heads=32, num_kv_heads=8, head_dim=128)
    (k,) = attention_kernels(_ctx("bf16", "bf16", 32, 8, 128), BatchShape.build(prefill=[(1024, 0)] * 4))
    assert row_kernel(pre) == k
    # causal pairs: 4 * 1024*1025/2; FLOPs = 2 * pairs * heads * (128 + 128)
    assert k.flops == 2.0 * 4 * 1024 * 1025 / 2 * 32 * 256
    dec = _row("attn_decode", batch=8, seq_len=1, ctx_len=2048, num_heads=32, num_kv_heads=8, head_dim=128)
    kd = row_kernel(dec)
    # KV read: 8 sequences x (2048 + 1) keys x 2 (K,V) x 8 heads x 128 x 2 bytes
    assert kd.kv_read_bytes == 8 * 2049 * 2 * 8 * 128 * 2


def test_allreduce_row_is_allreduce_seconds() -> None:
    row = _row("allreduce", message_bytes=1 << 20, num_gpus=8)
    assert predict_kernel(row, H100, CAL) == pytest.approx(allreduce_seconds(1 << 20, 8, H100, CAL), rel=1e-12)
    floor = CAL.model_copy(update={"comm_floor_s": 4e-5})
    graph = _row("allreduce", variant="SGLang_CustomAllReduce_graph; sglang_graph", message_bytes=1024, num_gpus=8)
    assert predict_kernel(graph, H100, floor) == allreduce_seconds(1024, 8, H100, floor, graphed=True) < 4e-5
    assert predict_kernel(replace(graph, variant="SGLang_CustomAllReduce_eager; sglang_eager"), H100, floor) == 4e-5


def test_unpredictable_rows_give_reasons() -> None:
    assert "MoE" in (why_unpredictable(_row("moe_dispatch")) or "")
    assert why_unpredictable(_row("cpu_overhead_schedule")) is not None
    assert predict_kernel(_row("mystery_op"), H100, CAL) is None
    pred = predict_rows([_row("gemm", hardware="mi210", m=1, n=1, k=1), _row("gemm", m=64, n=64, k=64)], CAL)
    assert len(pred.rows) == 1
    assert len(pred.problems) == 1 and "mi210" in pred.problems[0] and "1 row(s)" in pred.problems[0]


def test_vectorised_attention_fixed_costs_scale_with_the_rows_clock() -> None:
    """Attention's fixed costs run in cycles of the row's GPU (model.cost.prefill_attention_time /
    decode_attention_time): the vectorised copy scales them by the row's clock, not the reference's."""
    rows = [_row("attn_prefill", hardware=hw, batch=2, seq_len=40, num_heads=8, num_kv_heads=8, head_dim=64,
                 kv_dtype=kv)
            for hw in ("l40s", "a100-sxm-80gb") for kv in ("bf16", "fp8")
            if not (hw.startswith("a100") and kv == "fp8")]
    rows.append(_row("attn_decode", hardware="l40s", batch=4, seq_len=1, ctx_len=50, num_heads=8, num_kv_heads=2,
                     head_dim=128, kv_dtype="fp8"))
    cal = Calibration(attn_prefill_overhead_s=2e-5, attn_decode_overhead_s=1e-5, attn_fp8_quant_s=5e-6)
    ref = [kernel_cost(row_kernel(r), load_hardware(r.hardware), cal).seconds for r in rows]
    np.testing.assert_allclose(predict_rows(rows, cal).predicted_s, ref, rtol=1e-12)


def test_vllm_fa2_decode_with_a_window_is_unpacked() -> None:
    kw = dict(framework="vllm", hardware="l40s", batch=256, seq_len=1, ctx_len=7, num_heads=48, num_kv_heads=2,
              head_dim=128, window=128)
    fa2 = _row("attn_decode", variant="vllm_flash_attn_fa2; attn_dtype=bfloat16", **kw)
    assert row_kernel(fa2).gqa_unpacked
    assert not row_kernel(replace(fa2, window=0)).gqa_unpacked  # FA2 packs the group without a window
    assert row_kernel(replace(fa2, window=0, num_kv_heads=48)).gqa_unpacked  # MHA: nothing to swap, no split-KV
    assert not row_kernel(replace(fa2, variant="vllm_flashinfer_fidecode; a")).gqa_unpacked
    assert not row_kernel(replace(fa2, framework="sglang")).gqa_unpacked
    rows = [fa2, replace(fa2, window=0)]
    ref = [kernel_cost(row_kernel(r), load_hardware("l40s"), CAL).seconds for r in rows]
    np.testing.assert_allclose(predict_rows(rows, CAL).predicted_s, ref, rtol=1e-12)
    assert ref[0] > 5 * ref[1]  # 12288 padded tiles, not 512 packed units


def test_vectorised_features_equal_kernel_cost_row_by_row() -> None:
    rows = [
        _row("gemm", m=1, n=4096, k=4096), _row("gemm", "fp8", m=3000, n=1000, k=700),
        _row("attn_prefill", batch=2, seq_len=300, num_heads=16, num_kv_heads=4, head_dim=64),
        _row("attn_decode", kv_dtype="fp8", batch=8, seq_len=1, ctx_len=4000, num_heads=32, num_kv_heads=8,
             head_dim=128),
        _row("attn_prefill", "fp8", kv_dtype="fp8", batch=1, seq_len=5000, num_heads=8, num_kv_heads=8,
             head_dim=128, window=1024),
        _row("attn_decode", batch=64, seq_len=1, ctx_len=100, num_heads=8, num_kv_heads=1, head_dim=128),
        _row("rmsnorm", "fp16", tokens=100, hidden=4096), _row("silu_mul", "fp16", tokens=7, hidden=11008),
        _row("rope", "fp16", tokens=300, num_heads=32, num_kv_heads=8, head_dim=128), _row("add", tokens=9, hidden=64),
        _row("allreduce", message_bytes=1e6, num_gpus=4), _row("allgather", message_bytes=1e7, num_gpus=8),
        _row("send_recv", message_bytes=1e5, num_gpus=2),
        _row("attn_qk_matmul", "fp16", batch=8, seq_len=2048, ctx_len=2048, num_heads=24, head_dim=128),
    ]
    rows += [
        _row("gemm", "fp8", m=64, n=7168, k=2048, variant="deepgemm; gemm_dtype=fp8_block; v"),
        _row("gemm", "int8", m=512, n=4096, k=4096, variant="sq; gemm_dtype=sq; v"),
        _row("attn_decode", batch=1024, seq_len=1, ctx_len=4, num_heads=32, num_kv_heads=8, head_dim=128),
        _row("attn_decode", batch=8, seq_len=1, ctx_len=900, num_heads=32, num_kv_heads=8, head_dim=128,
             kv_dtype="fp8"),
        _row("attn_prefill", batch=2, seq_len=300, num_heads=32, num_kv_heads=8, head_dim=128, kv_dtype="fp8"),
        _row("allreduce", message_bytes=2e4, num_gpus=8), _row("allreduce", message_bytes=2e3, num_gpus=2),
        _row("allreduce", framework="nccl", message_bytes=3e6, num_gpus=4),
        _row("allreduce", variant="vLLM_custom_graph; vllm_graph; allreduce_dtype=bfloat16", message_bytes=2e3,
             num_gpus=4),
        _row("attn_prefill", "fp8", variant="triton; attn_dtype=fp8", batch=3, seq_len=700, num_heads=8,
             num_kv_heads=1, head_dim=512),
    ]
    plain = Calibration(gemm_eff=0.6, kernel_overhead_s=4e-6, comm_latency_s=2e-5, attn_decode_unit_s=2e-6)
    # every refinement switched on, so the vectorised copy is checked on each new term too
    rich = plain.model_copy(update={
        "gemm_eff_fp8": 0.4, "gemm_eff_fp8_block": 0.3, "gemm_eff_int8": 0.5, "gemm_overlap_loss": 0.3,
        "gemm_overhead_s": 2e-6, "attn_prefill_eff_fp8": 0.35, "attn_prefill_overhead_s": 1.5e-5,
        "attn_decode_overhead_s": 1.2e-5, "attn_decode_split_tokens": 300.0, "attn_decode_l2_gain": 3.0,
        "attn_decode_cuda_group": 6.0, "attn_decode_units_per_sm": 2.0,
        "attn_decode_eff": 0.05, "gemm_gemv_max_m": 1, "attn_prefill_tile": 96.0, "attn_softmax_flops": 150.0,
        "attn_prefill_mem_eff": 0.3, "gemm_overhead_s_fp8": 1.3e-5, "attn_decode_mem_eff_fp8kv": 0.35,
        "elementwise_norm_passes": 3.5, "elementwise_act_passes": 4.0, "gemm_gemv_mem_eff": 0.25,
        "elementwise_cache_gain": 3.0, "elementwise_cache_bytes": 2e6,
        "elementwise_norm_cache_gain": 1.5, "elementwise_act_cache_gain": 2.0, "elementwise_rope_passes": 4.5,
        "elementwise_rope_cache_gain": 1.7,
        "comm_oneshot_max_bytes": 1e6, "comm_floor_s": 9e-6, "nccl_bw_eff": 0.5, "nccl_latency_s": 7e-6,
        "nccl_hop_s": 1e-6, "nccl_bw_gpu_exp": 0.2, "attn_prefill_triton_flops_per_clk": 420.0,
        "attn_fp8_quant_s": 4e-6, "attn_prefill_fill_half": 0.4, "attn_prefill_cta_s": 1e-6})
    for cal in (plain, rich):
        pred = predict_rows(rows, cal)
        ref = np.array([kernel_cost(row_kernel(r), H100, cal).seconds for r in rows])
        np.testing.assert_allclose(pred.predicted_s, ref, rtol=1e-12)
        ft = features(pred.kernels, pred.hardware, cal)
        np.testing.assert_allclose(ft.seconds(cal), ref, rtol=1e-12)
    assert not np.allclose(predict_rows(rows, plain).predicted_s, predict_rows(rows, rich).predicted_s)


def test_vllm_fp8_block_gemm_rows_are_timed_eagerly_and_costed_alike_vectorised() -> None:
    # AIConfigurator's vLLM collector times fp8_block without a CUDA graph (collect_gemm.py use_cuda_graph); the
    # other engines' and dtypes' GEMM rows are graphed
    blk = "DeepGemmFp8BlockScaledMMKernel; gemm_dtype=fp8_block; 0.24.0"
    vllm_blk = replace(_row("gemm", "fp8", m=64, n=7168, k=2048, framework="vllm", variant=blk),
                       source="aiconfigurator")
    trt_blk = replace(vllm_blk, framework="trtllm", variant="torch_flow; gemm_dtype=fp8_block; 1.3.0rc20")
    vllm_fp8 = replace(vllm_blk, variant="CutlassFP8ScaledMMLinearKernel; gemm_dtype=fp8; 0.24.0")
    assert [row_kernel(r).timed_eager for r in (vllm_blk, trt_blk, vllm_fp8)] == [True, False, False]
    rtx = "rtx-pro-6000"
    rows = [vllm_blk, trt_blk, vllm_fp8,
            replace(vllm_blk, hardware=rtx, m=8192, n=8192, k=8192),
            replace(_row("gemm", "fp4", m=32, n=4096, k=4096, hardware=rtx,
                         variant="FlashInferCutlassNvFp4LinearKernel; gemm_dtype=nvfp4; 0.24.0"))]
    cal = Calibration(gemm_eff_fp8=0.6, gemm_eff_fp8_block=0.4, gemm_overhead_s_fp8=1.1e-5,
                      gemm_overhead_s_fp8_block=4e-6, gemm_eager_floor_s=1.5e-4)
    hws = [load_hardware(r.hardware) for r in rows]
    ref = np.array([kernel_cost(row_kernel(r), hw, cal).seconds for r, hw in zip(rows, hws, strict=True)])
    pred = predict_rows(rows, cal)
    np.testing.assert_allclose(pred.predicted_s, ref, rtol=1e-12)
    # a small eager call: the host floor, the fixed cost and the quantise pass (64 x 2048 elements, 3 bytes each)
    assert ref[0] == pytest.approx(1.5e-4 + 4e-6 + 64 * 2048 * 3 / (3.35e12 * 0.8), rel=1e-12)
    assert ref[3] > 1.5e-4 + 4e-6  # 8192^3 on the RTX PRO 6000: GPU-bound above the floor


def test_error_stats_exact_values() -> None:
    measured = [1.0, 2.0, 4.0, 10.0, 5.0]
    predicted = [1.1, 1.0, 4.0, 13.0, 5.5]  # errors: +10, -50, 0, +30, +10 %
    s = error_stats(predicted, measured)
    assert s.n == 5
    assert s.median_abs_pct_err == pytest.approx(10.0)
    assert s.mape == pytest.approx(20.0)
    # |e| sorted 0,10,10,30,50: P90 (linear) = 30 + 0.6 * 20 = 42
    assert s.p90_abs_pct_err == pytest.approx(42.0)
    assert s.bias_pct == pytest.approx(10.0)


def test_grouped_stats_by_op_dtype_framework() -> None:
    rows = [_row("gemm", measured_s=1.0), _row("gemm", measured_s=2.0), _row("gemm", "fp8", measured_s=1.0,
                                                                             variant="s; gemm_dtype=fp8_block; v"),
            _row("allreduce", framework="", measured_s=1.0)]
    g = grouped_stats(rows, np.array([1.5, 1.0, 0.8, 1.0]))
    assert list(g) == ["allreduce/bf16", "gemm/bf16/fw", "gemm/fp8_block/fw"]
    assert g["gemm/bf16/fw"].median_abs_pct_err == pytest.approx(50.0)
    assert g["gemm/bf16/fw"].bias_pct == pytest.approx(0.0)  # +50 and -50
    assert g["gemm/fp8_block/fw"].bias_pct == pytest.approx(-20.0)
    assert group_key(rows[3]) == "allreduce/bf16"


def test_error_stats_rejects_bad_input() -> None:
    with pytest.raises(ValueError, match="at least one"):
        error_stats([], [])
    with pytest.raises(ValueError, match="positive"):
        error_stats([1.0], [0.0])


def test_stream_rows_are_not_costed_as_unfused_norms() -> None:
    from roofsim.model.kernel import Kernel

    cal = CAL.model_copy(update={"elementwise_norm_passes": 3.5, "kernel_overhead_s": 0.0})
    copy = _row("rmsnorm", "fp32", framework="stream", variant="stream_copy", tokens=1 << 20, hidden=1)
    norm = _row("rmsnorm", "fp32", framework="numpy", tokens=1 << 20, hidden=1)
    k: Kernel = row_kernel(copy)
    assert k.name == "stream_copy" and row_kernel(norm).name == "rmsnorm"
    assert predict_kernel(norm, H100, cal) == pytest.approx(3.5 * predict_kernel(copy, H100, cal), rel=1e-9)


def test_trtllm_benchmark_gemm_is_l2_warm_when_its_weight_copies_and_operands_fit_in_l2() -> None:
    """AIConfigurator's TRT-LLM collector rotates min(5, ceil(L2 / weight bytes)) weight copies against one input:
    on the L40S (96 MiB L2) five 4 MiB bf16 weight copies plus a small input fit, one 64 MiB weight does not."""
    def row(fw: str, m: int, n: int, k: int) -> KernelMeasurement:
        return KernelMeasurement("aiconfigurator", "l40s", fw, "gemm", "bf16", "x; gemm_dtype=bfloat16; v", 1e-5,
                                 m=m, n=n, k=k)
    assert row_kernel(row("trtllm", 16, 1024, 2048)).l2_warm  # 5 x 4 MiB + 64 KiB + 32 KiB
    assert not row_kernel(row("trtllm", 16, 8192, 4096)).l2_warm  # two 64 MiB copies exceed 96 MiB


def test_vllm_and_sglang_benchmark_gemms_are_l2_warm_when_their_six_copies_fit_in_l2() -> None:
    """AIConfigurator's vLLM collector runs 6 RowParallelLinear layers on one input per timed call (1 layer for
    fp8_block and nvfp4), SGLang's 6 ops each with its own input: on the L40S (96 MiB L2) six 12 MiB bf16 weights
    fit, six 16 MiB ones do not; one 64 MiB fp8_block weight fits; an unknown collector is never L2-warm."""
    def row(fw: str, n: int, k: int, dtype: str = "bf16", gd: str = "bfloat16") -> KernelMeasurement:
        return KernelMeasurement("aiconfigurator", "l40s", fw, "gemm", dtype, f"x; gemm_dtype={gd}; v", 1e-5,
                                 m=16, n=n, k=k)
    assert row_kernel(row("vllm", 3072, 2048)).l2_warm  # 6 x (12 MiB + 96 KiB output) + 64 KiB input
    assert row_kernel(row("sglang", 3072, 2048)).l2_warm  # 6 x (12 MiB + 64 KiB input + 96 KiB output)
    assert not row_kernel(row("vllm", 4096, 2048)).l2_warm and not row_kernel(row("sglang", 4096, 2048)).l2_warm
    block = row("vllm", 8192, 8192, "fp8", "fp8_block")  # 64 MiB of fp8 weights, one layer
    assert row_kernel(block).l2_warm and not row_kernel(row("vllm", 8192, 8192)).l2_warm
    assert not row_kernel(row("other", 1024, 2048)).l2_warm


def test_triton_prefill_runs_at_its_rate_per_sm_clock_over_every_causal_tile() -> None:
    """A row AIConfigurator timed on the engine's Triton kernel (kernel_source `triton`) is a Kernel.triton: its
    math runs at attn_prefill_triton_flops_per_clk[_fp8] x SMs x clock (whatever the tensor peak), ramped by
    attn_prefill_s_half; SGLang's kernel covers the full causal triangle (the sliding window only masks scores),
    vLLM's skips the tiles outside the window."""
    shape = dict(batch=4, seq_len=2048, num_heads=16, num_kv_heads=2, head_dim=128, window=128, framework="sglang")
    native = row_kernel(_row("attn_prefill", variant="fa3; attn_dtype=bfloat16", **shape))
    tri = row_kernel(_row("attn_prefill", variant="triton; attn_dtype=bfloat16", **shape))
    assert tri.triton and not native.triton
    pairs = 4 * 2048 * 2049 / 2  # causal pairs of 4 sequences of 2048 new tokens, no window
    assert tri.flops == pytest.approx(pairs * 16 * 4 * 128)  # QK and PV: 2 x 2 x d FLOPs per score and head
    # the FlashAttention kernel skips the keys outside the 128-key window: 128 x 129 / 2 + (2048 - 128) x 128 pairs
    assert native.flops == pytest.approx(4 * (128 * 129 / 2 + 1920 * 128) * 16 * 4 * 128)
    cal = Calibration(attn_prefill_triton_flops_per_clk=300.0, attn_prefill_s_half=256.0, attn_prefill_overhead_s=0.0)
    compute = tri.flops / (300.0 * 132 * 1.83e9 * 2048 / (2048 + 256))
    assert kernel_cost(tri, H100, cal).seconds == pytest.approx(compute, rel=1e-9)
    fp8 = row_kernel(_row("attn_prefill", "fp8", variant="triton; attn_dtype=fp8", **shape))
    assert kernel_cost(fp8, H100, cal).compute_s == pytest.approx(compute, rel=1e-9)  # the 16-bit rate inherited
    fast = cal.model_copy(update={"attn_prefill_triton_flops_per_clk_fp8": 450.0})
    assert kernel_cost(fp8, H100, fast).compute_s == pytest.approx(compute * 300.0 / 450.0, rel=1e-9)
    vllm = row_kernel(_row("attn_prefill", variant="vllm_triton_attn; attn_dtype=bfloat16",
                           **{**shape, "framework": "vllm"}))
    assert vllm.triton and vllm.flops == pytest.approx(native.flops)


def test_vllm_and_sglang_per_tensor_fp8_gemms_do_not_split_k() -> None:
    """vLLM's and SGLang's per-tensor fp8 linears are CUTLASS scaled-mm kernels (one CTA per output tile, no split-K:
    Kernel.no_splitk); TensorRT-LLM's is a cuBLASLt call and the 16-bit rows are torch linears (cuBLAS), which
    split K. On the L40S (142 SMs) m = 16, n = 256, k = 16384 is four 64x64 tiles: 4 CTAs unsplit, 4 x 16 split,
    either a partial wave whose SMs run free of the power limit (model.cost.tensor_power_factor, 0.72)."""
    def row(fw: str, dtype: str, gd: str) -> KernelMeasurement:
        return KernelMeasurement("aiconfigurator", "l40s", fw, "gemm", dtype, f"x; gemm_dtype={gd}; v", 1e-5,
                                 m=16, n=256, k=16384)
    l40s = load_hardware("l40s")
    power = tensor_power_factor(l40s, Calibration())
    for fw in ("vllm", "sglang"):
        k = row_kernel(row(fw, "fp8", "fp8"))
        assert k.no_splitk and k.dtype == "fp8"
        ft = features([k], [l40s], Calibration())
        assert ft.gemm_shape_eff[0] == pytest.approx(16 / 64 * 4 / 142 / power)
    for fw, dtype, gd in (("trtllm", "fp8", "fp8"), ("vllm", "bf16", "bfloat16")):
        k = row_kernel(row(fw, dtype, gd))
        assert not k.no_splitk
        assert features([k], [l40s], Calibration()).gemm_shape_eff[0] == pytest.approx(16 / 64 * 4 * 16 / 142 / power)
