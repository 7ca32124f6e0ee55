"""MoE decode as the fused-MoE kernels run it: grouped expert GEMMs costed from the rows each expert receives
(uniform or Zipf-skewed routing), small per-expert row tiles, and the bound label of a decode step."""

from __future__ import annotations

import math

import pytest

from roofsim.hardware_specs.catalog import load_hardware
from roofsim.model.batch import BatchShape
from roofsim.model.cost import DEFAULT_CALIBRATION, Calibration, CostModel, gemm_shape_efficiency, kernel_cost
from roofsim.model.graph import expected_active_experts, expert_load, graph_context, moe_kernels
from roofsim.model.loader import load_model
from roofsim.model.quant import quant_for
from roofsim.model.spec import ParallelSpec

H100 = load_hardware("h100-sxm")  # 132 SMs, 3.35 TB/s, 1978.9 dense fp8 TFLOP/s
CAL = DEFAULT_CALIBRATION  # tile 64 x 128, grouped row tile >= 16, split-K slices >= 1024, gemm_eff 0.75


def test_grouped_shape_efficiency_by_hand() -> None:
    # 8 experts x 1 row, n=512, k=7168: each expert's row padded to a 16-row tile (1/16), 4 n-tiles per expert,
    # 32 tiles split-K 4 ways (7168 // 1024 = 7, 132 // 32 = 4) = 128 tiles in one wave of 132 SMs.
    assert gemm_shape_efficiency(1, 512, 7168, 132, CAL, groups=8) == pytest.approx(1 / 16 * 128 / 132)
    # the same shape as one plain GEMM takes a tile of gemm_tile_menu, at least 64 rows: 64x64, 8 tiles split 7
    # ways = 56 of 132 SMs
    assert gemm_shape_efficiency(1, 512, 7168, 132, CAL) == pytest.approx(1 / 64 * 56 / 132)
    # 40 rows per expert take a 64-row tile (the power of two >= 40), 3 experts: 3 x 4 tiles split 7 ways = 84
    assert gemm_shape_efficiency(40, 512, 7168, 132, CAL, groups=3) == pytest.approx(40 / 64 * 84 / 132)


def test_deepseek_decode_expert_gemm_by_hand() -> None:
    # DeepSeek-V3, TP=8 (experts split 8 ways: 2048 / 8 = 256 -> up+gate n = 512), fp8, one decode token:
    # top-8 of 256 experts -> 8 experts hit, 8 rows (1 per expert).
    model = load_model("deepseek-v3")
    c = graph_context(model, quant_for("fp8"), ParallelSpec(tp=8))
    up = next(k for k in moe_kernels(c, 1) if k.name == "moe_up_gate")
    assert (up.m, up.n, up.k, up.count) == (1, 512, 7168, 58)
    assert up.flops == 2 * 8 * 512 * 7168
    assert up.weight_bytes == 8 * 512 * 7168  # fp8: one byte per weight, the 8 experts hit
    nbytes = 8 * 512 * 7168 + 8 * 7168 * 2 + 8 * 512 * 2
    kc = kernel_cost(up, H100, CAL)
    assert kc.memory_s == pytest.approx(nbytes / (3.35e12 * 0.80))
    eff = 0.75 * (1 / 16 * 128 / 132) * 7168 / (7168 + 128)
    # per-tensor fp8 on Hopper: 1550 of the 1978.9 TFLOP/s fp8 peak (model.cost.FP8_ARCH_PEAK_FRACTION)
    assert kc.compute_s == pytest.approx(2 * 8 * 512 * 7168 / (1550e12 * eff))
    assert kc.bound == "memory"  # ~11 us of weights vs ~1 us of padded tensor-core work


@pytest.mark.parametrize("batch", [1, 8, 64])
def test_deepseek_decode_is_not_labelled_compute_bound(batch: int) -> None:
    cm = CostModel(load_model("deepseek-v3"), H100, quant_for("fp8"), ParallelSpec(tp=8))
    step = cm.step(BatchShape.build(decode_ctx=[2048] * batch))
    assert step.bound != "compute"
    by = step.seconds_by_bound
    assert by["compute"] < by["memory"]
    assert {kc.bound for kc in step.kernels if kc.kernel.name in ("moe_up_gate", "moe_down")} == {"memory"}


def test_expert_load_uniform_equals_the_expected_active_experts() -> None:
    assert expert_load(10, 256, 8, 8) == pytest.approx((expected_active_experts(10, 256, 8) / 8, 10.0))


def test_expert_load_zipf_by_hand() -> None:
    # 4 experts, top-1, Zipf exponent 1: weights 1, 1/2, 1/3, 1/4 (sum 25/12) -> q = .48, .24, .16, .12
    q = [0.48, 0.24, 0.16, 0.12]
    active, rows = expert_load(2, 4, 1, 1, skew=1.0)
    assert active == pytest.approx(sum(1 - (1 - p) ** 2 for p in q))  # 1.672 < uniform 4 x (1 - .75^2) = 1.75
    assert rows == pytest.approx(2.0)
    # EP=2: GPU 0 holds experts 0 and 2 (round robin): 2 x (.48 + .16) = 1.28 rows, more than 2 x 1 / 2
    active, rows = expert_load(2, 4, 1, 2, skew=1.0)
    assert (active, rows) == (pytest.approx(1 - 0.52**2 + 1 - 0.84**2), pytest.approx(1.28))


def test_routing_skew_reads_fewer_expert_weights() -> None:
    model = load_model("qwen3-30b-a3b")
    flat = CostModel(model, H100, quant_for("bf16"))
    skewed = CostModel(model, H100, quant_for("bf16"), calibration=Calibration(moe_routing_skew=1.2))
    shape = BatchShape.build(decode_ctx=[1000] * 16)

    def expert_bytes(cm: CostModel) -> float:
        return sum(kc.kernel.weight_bytes for kc in cm.step(shape).kernels if kc.kernel.name == "moe_down")

    assert expert_bytes(skewed) < expert_bytes(flat)
    assert math.isclose(expert_bytes(flat) / (128 * 768 * 2048 * 2),
                        expected_active_experts(16, 128, 8) / 128)
