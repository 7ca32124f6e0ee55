"""Images of VL requests: the vision encoder's kernels, their cost in the hot path, and how a run charges them
(SimConfig.images)."""

from __future__ import annotations

import math

import pytest

from roofsim.hardware_specs.catalog import load_hardware
from roofsim.model.batch import BatchShape
from roofsim.model.cost import CostModel
from roofsim.model.graph import graph_context, vision_kernels
from roofsim.model.loader import load_model
from roofsim.model.spec import ParallelSpec, QuantSpec
from roofsim.simulator.config import SimConfig
from roofsim.simulator.run import simulate

VL = "Qwen/Qwen3-VL-8B-Instruct"  # ViT: 27 layers, width 1152, MLP 4304, 16 heads, patch 16, merge 2 -> 4096


def _cfg(**images: object) -> SimConfig:
    data: dict = {"seed": 5, "workload": {"kind": "synthetic", "num_requests": 40,
                                         "arrival": {"kind": "poisson", "rate_per_s": 2.0},
                                         "input": {"kind": "fixed", "tokens": 200},
                                         "output": {"kind": "fixed", "tokens": 20}},
                  "replicas": [{"model": VL, "hardware": "h100-sxm"}]}
    if images:
        data["images"] = images
    return SimConfig.from_dict(data)


def test_vision_kernel_flops_by_hand() -> None:
    m = load_model(VL)
    v = m.vision
    assert v is not None
    n = v.patches(1024, 1024)
    assert (n, v.tokens_per_image(1024, 1024)) == (64 * 64, 1024)
    ks = vision_kernels(graph_context(m, QuantSpec(), ParallelSpec()), n, float(n * n))
    h, i, L = 1152, 4304, 27
    per_layer = (2 * n * 3 * h * h + n * 3 * h  # QKV with bias
                 + 4.0 * n * n * h  # bidirectional attention: QK^T and PV over n x n pairs
                 + 2 * n * h * h + n * h  # output projection
                 + 2 * n * i * h + n * i + 2 * n * h * i + n * h)  # MLP up and down with bias
    merged, out = 4 * h, n // 4
    fixed = 2 * n * h * 3 * 16 * 16 + n * h + 2 * out * merged * merged + out * merged + 2 * out * 4096 * merged + out * 4096
    gemm_attn = sum(k.flops * k.count for k in ks if k.op in ("gemm", "attn_prefill"))
    assert gemm_attn == pytest.approx(L * per_layer + fixed, rel=1e-12)
    # the model card's count (flops_per_image: 2 x ViT params per patch + attention) within 2 %
    assert gemm_attn == pytest.approx(v.flops_per_image(1024, 1024), rel=0.02)
    assert vision_kernels(graph_context(load_model("llama-3.1-8b"), QuantSpec(), ParallelSpec()), n, 1.0) == []


def test_hot_path_equals_the_kernel_breakdown_with_images() -> None:
    cm = CostModel(load_model(VL), load_hardware("h100-sxm"), parallel=ParallelSpec(tp=2))
    text = BatchShape.build(prefill=[(1224, 0)], decode_ctx=[300, 900])
    shape = BatchShape(prefill_tokens=text.prefill_tokens, prefill_seqs=1, prefill_attn_pairs=text.prefill_attn_pairs,
                       decode_seqs=2, decode_tokens=2, decode_ctx_tokens=text.decode_ctx_tokens,
                       vision_patches=4096, vision_attn_pairs=4096.0**2)
    full = cm.step(shape)
    assert cm.step_seconds_energy(shape) == pytest.approx((full.seconds, full.energy_j), rel=1e-12)
    v_s, _ = cm.vision_seconds_energy(4096, 4096.0**2)
    assert full.seconds - cm.step(text).seconds == pytest.approx(v_s, rel=1e-9)
    assert any(k.kernel.name == "vit_tp_allreduce" for k in full.kernels)


def test_a_run_charges_each_image_once() -> None:
    res = simulate(_cfg(height_px=1024, width_px=1024))
    cm = CostModel(load_model(VL), load_hardware("h100-sxm"))
    v_s, _ = cm.vision_seconds_energy(4096, 4096.0**2)
    s = res.summary
    assert s["vision_encoder_s"] == pytest.approx(40 * v_s, rel=1e-12)
    assert set(res.input_tokens.tolist()) == {200 + 1024}
    text = simulate(_cfg())
    assert "vision_encoder_s" not in text.summary
    assert s["ttft_s"]["mean"] > text.summary["ttft_s"]["mean"] + v_s * 0.99


def test_share_of_requests_with_images_is_drawn_from_the_seed() -> None:
    a = simulate(_cfg(height_px=512, width_px=512, per_request=2, share=0.5))
    b = simulate(_cfg(height_px=512, width_px=512, per_request=2, share=0.5))
    assert a.summary["vision_encoder_s"] == b.summary["vision_encoder_s"]
    tokens = a.input_tokens.tolist()
    with_images = sum(t == 200 + 2 * 256 for t in tokens)
    assert 0 < with_images < 40 and with_images + tokens.count(200) == 40
    # the text-only requests' draws are untouched: the arrival times equal the text-only run's
    assert a.arrival_s.tolist() == simulate(_cfg()).arrival_s.tolist()
    assert not math.isnan(a.summary["ttft_s"]["p99"])


def test_images_need_a_vision_encoder() -> None:
    cfg = SimConfig.from_dict({**_cfg(height_px=64, width_px=64).model_dump(mode="json"),
                               "replicas": [{"model": "llama-3.1-8b", "hardware": "h100-sxm"}]})
    with pytest.raises(ValueError, match="model 'llama-3.1-8b' has no vision encoder"):
        simulate(cfg)
