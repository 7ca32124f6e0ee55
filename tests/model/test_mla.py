"""Absorbed-MLA decode attention: its kernels carry Kernel.latent and take the tensor-core (prefill) efficiency in
the per-kernel cost and in CostModel's closed form alike, so a CUDA-core attn_decode_eff never prices them."""

from __future__ import annotations

import pytest

from roofsim.hardware_specs.catalog import load_hardware
from roofsim.model.batch import BatchShape
from roofsim.model.cost import Calibration, CostModel, kernel_cost
from roofsim.model.graph import step_kernels
from roofsim.model.loader import load_model
from roofsim.model.spec import ParallelSpec, QuantSpec

H100 = load_hardware("h100-sxm")
DECODE = BatchShape.build(decode_ctx=[4096] * 64)
# a decode efficiency so low that the math would dominate every decode kernel priced with it
CAL = Calibration(attn_decode_eff=0.001, attn_prefill_eff=0.5)


def test_mla_decode_is_latent_and_priced_at_the_prefill_rate() -> None:
    ks = [k for k in step_kernels(load_model("deepseek-v3"), QuantSpec(), ParallelSpec(tp=8), DECODE)
          if k.op == "attn_decode"]
    assert ks and all(k.latent for k in ks)
    c = kernel_cost(ks[0], H100, CAL)
    assert c.compute_s == pytest.approx(ks[0].flops / (H100.peak("bf16") * 0.5))
    # the latent cache read dominates 64 sequences x 4096 entries x 128 heads, not the math: at DRAM bandwidth or at
    # the per-unit bandwidth of decode_attention_time's floor (64 one-unit sequences on 132 SMs)
    assert c.bound != "compute" and c.seconds / ks[0].count > 3 * c.compute_s
    gqa = [k for k in step_kernels(load_model("llama-3.1-8b"), QuantSpec(), ParallelSpec(), DECODE)
           if k.op == "attn_decode"]
    assert gqa and not any(k.latent for k in gqa)
    assert kernel_cost(gqa[0], H100, CAL).compute_s == pytest.approx(gqa[0].flops / (H100.peak("bf16") * 0.001))


def test_closed_form_prices_the_latent_decode_like_its_kernels() -> None:
    cm = CostModel(load_model("deepseek-v3"), H100, QuantSpec(), ParallelSpec(tp=8), CAL)
    full = cm.step(DECODE)
    assert cm.step_seconds_energy(DECODE) == pytest.approx((full.seconds, full.energy_j), rel=1e-12)
