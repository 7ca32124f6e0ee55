"""Attention data parallelism (ParallelSpec.attn_dp): replicated attention/dense weights, experts over every GPU,
KV per rank, the busiest rank's step with no attention all-reduce at tp 1, and the layouts it refuses."""

from __future__ import annotations

import re

import pytest

from roofsim.hardware_specs.catalog import load_hardware
from roofsim.model.batch import BatchShape
from roofsim.model.cost import CostModel
from roofsim.model.graph import rank_shape
from roofsim.model.loader import load_model
from roofsim.model.memory import activation_bytes, plan_memory, weight_bytes_per_gpu
from roofsim.model.quant import quant_for
from roofsim.model.spec import ParallelSpec

H100 = load_hardware("h100-sxm")
DSV3 = load_model("deepseek-v3")
FP8 = quant_for("fp8")  # 1 byte per weight, bf16 KV cache
ADP16 = ParallelSpec(tp=1, attn_dp=16, ep=16)  # the silicon rows' DeepSeek-V3 prefill worker


def test_weights_replicated_per_rank_experts_over_all_gpus() -> None:
    # DeepSeek-V3 parameters (model.params.count_params): attention 11,413,547,008 + dense MLP 1,189,085,184 +
    # shared experts and routers 2,660,776,448 + norms 881,664 = 15,264,290,304 on every rank; routed experts
    # 653,908,770,816 / 16 GPUs = 40,869,298,176; embedding + LM head 2 x 926,679,040 on every rank (tp 1)
    per_gpu, total = weight_bytes_per_gpu(DSV3, FP8, ADP16)
    assert per_gpu == 15_264_290_304 + 40_869_298_176 + 1_853_358_080
    # the tp-16 layout shards everything 16 ways: (15,264,290,304 + 653,908,770,816 + 1,853,358,080) / 16
    assert weight_bytes_per_gpu(DSV3, FP8, ParallelSpec(tp=16, ep=16))[0] == 671_026_419_200 / 16
    assert total == weight_bytes_per_gpu(DSV3, FP8, ParallelSpec(tp=16, ep=16))[1]


def test_kv_per_rank_and_the_replica_pool() -> None:
    plan = plan_memory(DSV3, H100, FP8, ADP16, 0.9, max_batched_tokens=8192, max_seqs=256)
    # MLA latent cache, whole on each GPU of a rank: (512 + 64) elements x 61 layers x 2 bytes
    assert plan.kv_bytes_per_token == 576 * 61 * 2
    # each rank's buffers hold its share of the budgets: ceil(8192 / 16) tokens, ceil(256 / 16) sequences
    act = activation_bytes(DSV3, FP8, ADP16, 512, 16)
    assert plan.activation_bytes == act
    kv_cap = H100.memory.capacity_bytes * 0.9 - 57_986_946_560 - act - 0.75e9  # 80 GiB
    assert plan.kv_capacity_bytes == pytest.approx(kv_cap)
    # the replica's pool is 16 ranks x each rank's whole blocks of 16 tokens
    assert plan.max_kv_tokens == 16 * int(kv_cap // (70_272 * 16)) * 16


def test_rank_shape_is_the_busiest_rank() -> None:
    dec = BatchShape.build(decode_ctx=[1000] * 33)
    r = rank_shape(dec, 16)  # ceil(33 / 16) = 3 sequences of the mean context
    assert (r.decode_seqs, r.decode_tokens, r.decode_ctx_tokens, r.logit_tokens) == (3, 3, 3 * 1001, 3)
    one = BatchShape.build(prefill=[(8192, 0)])
    assert rank_shape(one, 16) == one  # a prompt is never split over ranks: one rank prefills it whole
    assert rank_shape(dec, 1) is dec
    # 32 prompts with 1,024 image patches each: the busiest of 16 ranks prefills 2 and encodes their images
    vl = BatchShape(prefill_tokens=32 * 2000, prefill_seqs=32, vision_patches=32 * 1024, vision_attn_pairs=32 * 1024.0**2)
    r = rank_shape(vl, 16)
    assert (r.prefill_seqs, r.vision_patches, r.vision_attn_pairs) == (2, 2 * 1024, 2 * 1024.0**2)


def test_step_has_no_attention_allreduce_at_tp1_and_experts_see_every_rank() -> None:
    shape = BatchShape.build(decode_ctx=[1000] * 32)
    ks = {c.kernel.name: c.kernel for c in CostModel(DSV3, H100, FP8, ADP16).step(shape).kernels}
    assert "tp_allreduce" not in ks and "logits_gather" not in ks
    assert ks["qkv_a_proj"].m == 2 and ks["attn_decode"].n == 2  # 32 sequences over 16 ranks
    # the experts take all 32 tokens: 32 x top-8 / 16 GPUs = 16 rows per GPU, whole experts (moe_tp 1)
    up = ks["moe_up_gate"]
    assert (up.n, up.k) == (2 * 2048, 7168) and up.flops == 2 * 16 * 4096 * 7168
    assert ks["moe_all_to_all"].comm_gpus == 16
    tp16 = {c.kernel.name: c.kernel for c in CostModel(DSV3, H100, FP8, ParallelSpec(tp=16, ep=16)).step(shape)
            .kernels}
    assert tp16["tp_allreduce"].comm_gpus == 16 and tp16["moe_up_gate"].flops == up.flops
    # tp 4 inside each of 4 ranks: a 4-way all-reduce over the rank's 8 sequences
    k4 = {c.kernel.name: c.kernel for c in CostModel(DSV3, H100, FP8, ParallelSpec(tp=4, attn_dp=4, ep=16))
          .step(shape).kernels}
    assert k4["tp_allreduce"].comm_gpus == 4 and k4["qkv_a_proj"].m == 8
    # ranks hold different tokens, so the experts' tokens cross ranks even when ep <= tp: dp 4 x tp 4 with ep 4
    # dispatches over all 16 GPUs (tp 16 with ep 16 sends none: every rank already holds the batch)
    k_ep4 = {c.kernel.name: c.kernel for c in CostModel(DSV3, H100, FP8, ParallelSpec(tp=4, attn_dp=4, ep=4))
             .step(shape).kernels}
    assert k_ep4["moe_all_to_all"].comm_gpus == 16 and "moe_all_to_all" not in tp16


def test_a_lone_prompt_runs_on_one_rank_and_the_experts_take_only_its_tokens() -> None:
    ks = {c.kernel.name: c.kernel for c in CostModel(DSV3, H100, FP8, ADP16).step(
        BatchShape.build(prefill=[(1024, 0)])).kernels}
    assert ks["qkv_a_proj"].m == 1024 and ks["attn_prefill"].m == 1024  # all on one GPU, the other 15 idle
    # the experts see the 1024 real tokens (no padding of the idle ranks): 1024 x top-8 / 16 GPUs = 512 rows
    assert ks["moe_up_gate"].flops == 2 * 512 * 4096 * 7168


def test_closed_form_matches_the_kernels() -> None:
    cm = CostModel(DSV3, H100, FP8, ADP16)
    shape = BatchShape.build(prefill=[(512, 0)] * 3, decode_ctx=[700] * 20)
    assert cm.step_seconds_energy(shape)[0] == pytest.approx(cm.step(shape).seconds, rel=1e-9)


@pytest.mark.parametrize(("par", "model", "msg"), [
    (ParallelSpec(tp=4, attn_dp=2), "llama-3.1-8b", "attn_dp=2 needs a mixture-of-experts model"),
    (ParallelSpec(tp=1, attn_dp=4, ep=8), "deepseek-v3", "ep=8 cannot exceed attn_dp*tp*pp=4 GPUs"),
    (ParallelSpec(tp=1, attn_dp=6, ep=4), "deepseek-v3", "ep=4 must divide attn_dp*tp=6"),
])
def test_impossible_layouts_are_refused(par: ParallelSpec, model: str, msg: str) -> None:
    with pytest.raises(ValueError, match=re.escape(msg)):
        par.validate_for(load_model(model))
