"""AIConfigurator fused-MoE rows predicted as the sum of the model's MoE module kernels: the mapping by hand on a
small case (uniform routing), the power-law routing replay, the refusals with their reasons, and the vectorised
module rows equal to the scalar sum (no shared data needed)."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

from roofsim.hardware_specs.catalog import load_hardware
from roofsim.model.cost import Calibration, gemm_dequant_flops, gemm_kernel_peak, gemm_time, kernel_cost
from roofsim.validation.calibrate import fit_calibration, prepare
from roofsim.validation.kernel_tables import KernelMeasurement
from roofsim.validation.predict import (
    balanced_load,
    features,
    power_law_load,
    power_law_padded_rows,
    power_law_rank0_tokens,
    predict_kernel,
    predict_rows,
    row_kernels,
    why_unpredictable,
)

H100 = load_hardware("h100-sxm")
CAL = Calibration()


def _moe(dist: str = "balanced", moe_dtype: str = "bfloat16", op_name: str = "moe",
         source: str = "moe_torch_flow_cutlass", **kw) -> KernelMeasurement:
    shape = {"tokens": 4, "hidden": 1024, "n": 512, "num_experts": 8, "topk": 2, "tp": 1, "ep": 1, **kw}
    dtype = {"bfloat16": "bf16", "fp8": "fp8", "fp8_block": "fp8", "nvfp4": "fp4", "int4_wo": "int4",
             "w4afp8": "int4", "w4a8_mxfp4_mxfp8": "fp4"}[moe_dtype]
    return KernelMeasurement("aiconfigurator", "h100-sxm", "trtllm", "moe", dtype,
                             f"{op_name}; {source}; moe_dtype={moe_dtype}; distribution={dist}; 1.0", 1e-4, **shape)


def test_module_kernels_by_hand() -> None:
    """4 tokens, top-2 of 8 experts, hidden 1024, inter 512, bf16, one GPU, uniform routing: 8 routed rows over
    8 (1 - (3/4)^4) = 5.46875 expected experts (1 row each after rounding 1.46). The collector's balanced routing
    (token i takes experts i and i + 4) reads all 8 experts' weights."""
    ks = {k.name: k for k in row_kernels(_moe("uniform"))}
    assert list(ks) == ["moe_permute", "moe_up_gate", "moe_act", "moe_down", "moe_unpermute"]  # no router, no a2a
    active = 8 * (1 - 0.75 ** 4)
    up, down = ks["moe_up_gate"], ks["moe_down"]
    assert (up.m, up.n, up.k) == (1, 1024, 1024) and (down.m, down.n, down.k) == (1, 1024, 512)
    assert up.flops == 2 * 8 * 1024 * 1024 and down.flops == 2 * 8 * 1024 * 512
    assert up.weight_bytes == pytest.approx(active * 1024 * 1024 * 2)
    assert down.weight_bytes == pytest.approx(active * 1024 * 512 * 2)
    # gather 4 token rows into 8 expert rows, sum the 8 back into 4 (2 bytes per element)
    assert ks["moe_permute"].bytes == (4 + 8) * 1024 * 2 and ks["moe_unpermute"].bytes == (8 + 4) * 1024 * 2
    assert ks["moe_act"].bytes == (8 * 1024 + 8 * 512) * 2  # reads gate+up, writes one
    expected = sum(kernel_cost(k, H100, CAL).seconds for k in ks.values())
    assert predict_kernel(_moe("uniform"), H100, CAL) == pytest.approx(expected, rel=1e-12)
    balanced = {k.name: k for k in row_kernels(_moe())}
    assert balanced["moe_up_gate"].weight_bytes == 8 * 1024 * 1024 * 2
    assert balanced_load(4, 8, 2, 1) == (8.0, 8.0, 4.0)
    # fewer tokens than the stride ceil(E/k) = 48: token i starts at floor(48 i / T); one token on EP 64 (6
    # experts a rank) still puts its expert 0 on the timed rank, 2 tokens (starts 0 and 24) one row each on rank 0
    assert balanced_load(1, 384, 8, 64) == (1.0, 1.0, 1.0)
    assert balanced_load(2, 384, 8, 16) == (1.0, 1.0, 1.0)
    assert balanced_load(2, 384, 8, 8) == (2.0, 2.0, 2.0)


def test_shard_dtype_and_gating() -> None:
    # moe_tp 2 halves each expert's width; EP 2 keeps half the experts and half the rows, and still no all-to-all
    (up,) = [k for k in row_kernels(_moe(tp=2)) if k.name == "moe_up_gate"]
    assert (up.n, up.k) == (512, 1024)
    ks = row_kernels(_moe(ep=2))
    assert [k.name for k in ks] == ["moe_permute", "moe_up_gate", "moe_act", "moe_down", "moe_unpermute"]
    assert ks[1].flops == 2 * 4 * 1024 * 1024
    # Nemotron-style non-gated experts: one up projection of the inter width
    names = [k.name for k in row_kernels(_moe(source="moe_torch_flow_nongated"))]
    assert "moe_up" in names and "moe_up_gate" not in names
    assert {k.dtype for k in row_kernels(_moe(moe_dtype="fp8")) if k.op == "gemm"} == {"fp8"}
    assert {k.dtype for k in row_kernels(_moe(moe_dtype="fp8_block")) if k.op == "gemm"} == {"fp8_block"}
    wo = [k for k in row_kernels(_moe(moe_dtype="int4_wo")) if k.op == "gemm"]
    assert {k.dtype for k in wo} == {"bf16"} and all(k.dequant_flops > 0 for k in wo)  # Marlin W4A16
    # mixed recipes: low-bit weights on fp8 activations run the per-tensor fp8 GEMM (not the fp8_block recipe,
    # although int4's scale group is 128) and read int4 / fp4 weights: a quarter of the bf16 bytes
    bf16_up = next(k for k in row_kernels(_moe()) if k.name == "moe_up_gate")
    for raw in ("w4afp8", "w4a8_mxfp4_mxfp8"):
        up = next(k for k in row_kernels(_moe(moe_dtype=raw)) if k.name == "moe_up_gate")
        assert up.dtype == "fp8" and up.dequant_flops == 0
        assert up.weight_bytes == pytest.approx(bf16_up.weight_bytes / 4, rel=0.07)  # + scales


def test_masked_remote_slots_of_triton_experts() -> None:
    """EP 2 on vLLM's Triton experts: every token's 2 slots stay in the buffers (4 x 2 = 8 rows), 4 routed here;
    the GEMMs write zeros for the 4 remote rows, the activation and the top-k sum cover all 8. SGLang keeps the
    tokens with a slot on rank 0: 1 - (1 - 4/8)^2 = 3/4 of them, and its collector clamps the remote ids to local
    expert 0, so the GEMMs compute all 6 of their slots. TensorRT-LLM's CUTLASS keeps only its 4 rows."""
    def vllm(**kw) -> KernelMeasurement:
        return replace(_moe("uniform", source="vllm_unquantizedfusedmoe_triton_tritonexperts", **kw), framework="vllm")
    ks = {k.name: k for k in row_kernels(vllm(ep=2))}
    assert ks["moe_up_gate"].flops == 2 * 4 * 1024 * 1024  # the FLOPs of the 4 routed rows only
    assert ks["moe_up_gate"].act_write_bytes == 8 * 1024 * 2 and ks["moe_down"].act_write_bytes == 8 * 1024 * 2
    assert ks["moe_act"].bytes == (8 * 1024 + 8 * 512) * 2
    assert ks["moe_unpermute"].bytes == (8 + 4) * 1024 * 2
    sg = {k.name: k for k in row_kernels(replace(vllm(ep=2), framework="sglang"))}
    assert sg["moe_unpermute"].act_read_bytes == pytest.approx(4 * 0.75 * 2 * 1024 * 2)
    assert sg["moe_up_gate"].flops == pytest.approx(2 * 6 * 1024 * 1024)  # 6 computed rows, not the 4 routed
    assert sg["moe_down"].flops == pytest.approx(2 * 6 * 1024 * 512)
    cutlass = {k.name: k for k in row_kernels(_moe("uniform", ep=2))}
    assert cutlass["moe_unpermute"].bytes == (4 + 4) * 1024 * 2
    # the Triton experts gather each routed row inside the up GEMM: no permute kernel (TensorRT-LLM's CUTLASS runs one)
    assert {k.name: k.bytes for k in row_kernels(vllm(ep=1))} == {
        k.name: k.bytes for k in row_kernels(_moe("uniform")) if k.name != "moe_permute"}
    assert "moe_permute" not in {k.name for k in row_kernels(replace(vllm(), framework="sglang"))}
    assert "moe_permute" in {k.name for k in row_kernels(replace(_moe(source="flashinfer_cutlass"), framework="vllm"))}


def test_power_law_routing_replay() -> None:
    # one GPU holds every expert: all tokens x topk rows, whatever the skew
    assert power_law_load(64, 8, 2, 1, 1.2)[1] == 128
    # EP 4: the busiest rank (the one timed) gets more than the uniform quarter of the rows
    active, rows = power_law_load(256, 64, 4, 4, 1.2)
    assert rows > 256 * 4 / 4 and 1 <= active <= 16
    skewed = {k.name: k for k in row_kernels(_moe("power_law_1.2", tokens=256, num_experts=64, topk=4, ep=4))}
    # the expert GEMMs compute every expert's rows padded to the row tile (from the mean rows per expert, here
    # 372 / 16 ~ 23 -> 32): more than the routed rows, since the skew leaves many experts a few rows each
    padded = power_law_padded_rows(256, 64, 4, 4, 1.2, 32)
    assert rows < padded < rows + 16 * 32
    assert skewed["moe_up_gate"].m == 32
    assert skewed["moe_up_gate"].flops == pytest.approx(2 * padded * 1024 * 1024)
    assert skewed["moe_down"].flops == pytest.approx(2 * padded * 1024 * 512)


def test_power_law_generator_versions() -> None:
    """4 tokens x top-8 of 384 experts on EP 16 (AIConfigurator's SGLang 0.5.10 H100 rows): every sampled share
    rounds to 0, so the generator alone places the 32 rows. Today's collector hands them one per rank in turn
    (2 rows on 2 experts of the timed rank, from 2 tokens: the measured 46.5 us reads 2 experts' weights); the
    pre-2026-04-19 ones gave them to the experts in sorted order, here 24 consecutive experts of one rank."""
    # (one replay in 32 rounds one share up to a row: 2.03)
    assert power_law_load(4, 384, 8, 16, 1.01) == pytest.approx((2.0, 2.0), abs=0.05)
    assert power_law_rank0_tokens(4, 384, 8, 16, 1.01) == pytest.approx(2.0, abs=0.05)
    assert power_law_load(4, 384, 8, 16, 1.01, generator="largest_first") == (24.0, 24.0)
    assert power_law_load(4, 384, 8, 16, 1.01, generator="smallest_first") == (24.0, 24.0)
    # capped at one row per token and expert (round_robin, smallest_first): 2 experts x 4096 tokens take all rows;
    # largest_first had no cap (a token could draw an expert twice)
    for gen in ("round_robin", "smallest_first", "largest_first"):
        assert power_law_load(4096, 8, 2, 1, 1.01, generator=gen)[1] == 8192
    from roofsim.validation.predict import _power_law_rank0  # noqa: PLC0415
    assert _power_law_rank0(4096, 8, 2, 1, 1.01, 32, "round_robin").max() <= 4096
    assert _power_law_rank0(4096, 8, 2, 1, 1.01, 32, "largest_first").max() > 4096
    # the table's file names the generator (first commit of its data in ai-dynamo/aiconfigurator)
    old = replace(_moe("power_law_1.01", tokens=4, num_experts=384, topk=8, ep=16),
                  file="x/h100_sxm/moe/trtllm/1.3.0rc10/moe_perf.parquet")
    new = replace(old, file="x/h100_sxm/moe/trtllm/1.3.0rc20/moe_perf.parquet")
    up = {r.file: next(k for k in row_kernels(r) if k.name == "moe_up_gate") for r in (old, new)}
    assert up[old.file].weight_bytes == pytest.approx(24 / 2.03125 * up[new.file].weight_bytes)  # experts read


def test_round_robin_fill_is_the_collectors_loop() -> None:
    """_round_robin_fill (levelled in closed form) equals helper.py _round_robin_adjust_per_rank run step by step."""
    from roofsim.validation.predict import _round_robin_fill  # noqa: PLC0415

    def step_by_step(c2: np.ndarray, remaining: int, room: bool) -> None:
        while remaining > 0:
            moved = False
            for r in range(c2.shape[0]):
                ok = np.flatnonzero(c2[r] < cap if room else c2[r] > 0)
                if not len(ok):
                    continue
                c2[r, ok[np.argmin(c2[r, ok]) if room else np.argmax(c2[r, ok])]] += 1 if room else -1
                remaining, moved = remaining - 1, True
                if not remaining:
                    break
            if not moved:
                break

    rng = np.random.default_rng(3)
    for _ in range(80):
        ep, cap, topk = int(rng.choice([1, 2, 4])), int(rng.integers(1, 30)), int(rng.integers(1, 5))
        c = rng.integers(0, 2 * cap, ep * int(rng.integers(topk, 9))).astype(float)
        ref = np.minimum(c, cap).reshape(ep, -1)
        step_by_step(ref, int(np.maximum(c - cap, 0).sum()), True)
        delta = int(cap * topk - ref.sum())
        step_by_step(ref, abs(delta), delta > 0)
        got = c.reshape(ep, -1).copy()
        _round_robin_fill(got, cap, cap * topk)
        np.testing.assert_array_equal(got, ref)


@pytest.mark.parametrize(("row", "reason"), [
    (_moe(op_name="wideep_moe"), "wide-EP"),
    (_moe("power_law_1.01_eplb"), "EPLB"),
    (_moe(moe_dtype="fp8", ep=3), "does not divide"),
])
def test_refused_rows_name_the_reason(row: KernelMeasurement, reason: str) -> None:
    why = why_unpredictable(row)
    assert why is not None and reason in why
    assert predict_kernel(row, H100, CAL) is None


def test_module_rows_vectorised_and_fit_only_the_expert_gemm_fixed_cost() -> None:
    rows = [_moe(), _moe("power_law_1.01", tokens=256, num_experts=64, topk=4, ep=4),
            _moe(moe_dtype="fp8_block", tokens=1024),
            KernelMeasurement("t", "h100-sxm", "trtllm", "gemm", "bf16", "", 1e-4, m=64, n=4096, k=4096)]
    pred = predict_rows(rows, CAL)
    ref = [predict_kernel(r, H100, CAL) for r in rows]
    np.testing.assert_allclose(pred.predicted_s, ref, rtol=1e-12)
    ft = features(pred.kernels, pred.hardware, CAL, pred.parts)
    np.testing.assert_allclose(ft.subset(np.array([1, 3])).seconds(CAL), [ref[1], ref[3]], rtol=1e-12)
    # module rows move no knob of another family: only the GEMM row constrains gemm_eff
    data, _ = prepare(rows, CAL)
    assert list(data.family) == ["moe", "moe", "moe", "gemm"]
    # the module rows of one engine weigh alike in the fit whatever their recipe (bf16, fp8_block): one weight key
    assert data.weight_key[0] == data.weight_key[1] == data.weight_key[2] != data.weight_key[3]
    moved = replace(rows[0], measured_s=1.0)
    only_moe, _ = prepare([moved, rows[1]], CAL)
    assert fit_calibration(only_moe, CAL, fields=("gemm_eff",)).gemm_eff == CAL.gemm_eff

    # ... but they pin the expert GEMMs' fixed cost: rows made with 20 us give it back
    cal20 = CAL.model_copy(update={"gemm_grouped_overhead_s": 20e-6})
    made = [replace(r, measured_s=predict_kernel(r, H100, cal20)) for r in rows[:3]]
    data20, _ = prepare(made, CAL)
    fitted = fit_calibration(data20, CAL, fields=("gemm_grouped_overhead_s",)).gemm_grouped_overhead_s
    assert fitted == pytest.approx(20e-6, rel=1e-3)


def test_expert_gemm_fixed_cost_and_l2_warm_weights() -> None:
    """The two expert GEMMs pay gemm_grouped_overhead_s (clock-scaled like gemm_overhead_s, H100 is the reference
    clock); a module whose expert weights and largest activation fit in L2 reads them from L2."""
    small = row_kernels(_moe())  # 8 experts x 3 x 1024 x 512 bf16 = 25 MB < H100's 50 MB L2
    gemms = [k for k in small if k.op == "gemm"]
    assert [k.name for k in gemms] == ["moe_up_gate", "moe_down"] and all(k.l2_warm for k in gemms)
    cal = CAL.model_copy(update={"gemm_grouped_overhead_s": 30e-6})
    for k in gemms:
        assert kernel_cost(k, H100, cal).seconds - kernel_cost(k, H100, CAL).seconds == pytest.approx(27.5e-6)
    big = row_kernels(_moe(tokens=4096, hidden=7168, n=2048, num_experts=256, topk=8))  # 11 GB of experts
    assert not any(k.l2_warm for k in big)


def test_weight_only_experts_dequantise_per_row_tile() -> None:
    """A W4A16 expert GEMM dequantises its weights once per row tile of each expert (ceil(m / 64) at the default
    gemm_tile_m): 2 FLOPs per weight per tile, on the vector units."""
    ks = {k.name: k for k in row_kernels(_moe(moe_dtype="int4_wo", source="sglang_marlin_moe", tokens=1024))}
    up = ks["moe_up_gate"]
    assert up.m == 256  # 1024 tokens x top-2 over 8 experts
    assert gemm_dequant_flops(up, CAL) == pytest.approx(4 * up.dequant_flops)
    assert up.dequant_flops == pytest.approx(2 * 8 * 1024 * 1024)  # once per weight of the 8 experts' [1024, 1024]
    one = {k.name: k for k in row_kernels(_moe(moe_dtype="int4_wo", source="sglang_marlin_moe", tokens=4))}
    assert gemm_dequant_flops(one["moe_down"], CAL) == one["moe_down"].dequant_flops  # one tile per expert


def test_marlin_experts_run_at_the_mma_sync_rate_on_warpgroup_mma_gpus() -> None:
    """Marlin expert GEMMs (warp-level mma.sync) reach WARP_MMA_PEAK_FRACTION of H100's tensor peak; on A100, whose
    datasheet peak is the mma.sync rate, and for the CUTLASS experts they keep the full peak."""
    marlin = {k.name: k for k in row_kernels(_moe(moe_dtype="int4_wo", source="sglang_marlin_moe", tokens=1024))}
    cutlass = {k.name: k for k in row_kernels(_moe(tokens=1024))}
    assert marlin["moe_up_gate"].warp_mma and not marlin["moe_act"].warp_mma
    assert not any(k.warp_mma for k in cutlass.values())
    a100 = load_hardware("a100-sxm-80gb")
    up = marlin["moe_up_gate"]
    plain = replace(up, warp_mma=False)
    assert gemm_kernel_peak(up, H100, CAL) == pytest.approx(0.63 * H100.peak("bf16"))
    assert gemm_kernel_peak(up, a100, CAL) == gemm_kernel_peak(plain, a100, CAL) == a100.peak("bf16")
    # the tensor part of the compute term grows by 1 / 0.63; the per-tile dequantisation on the vector units not
    c_marlin, c_plain = gemm_time(up, H100, CAL)[0], gemm_time(plain, H100, CAL)[0]
    vector = gemm_dequant_flops(up, CAL) / (H100.peak("fp32") * CAL.vector_eff)
    assert c_marlin - vector == pytest.approx((c_plain - vector) / 0.63)
