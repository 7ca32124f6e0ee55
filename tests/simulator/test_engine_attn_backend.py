"""The engines' attention backends (simulator/engines.py attn_backend -> model.graph.attention_backend ->
with_backend): the policy per engine and GPU, the kernel family per model feature, the Kernel flags the op graph
sets (the same rule validation.predict applies per measured row), and what a replica group carries."""

from __future__ import annotations

import pytest

from roofsim.hardware_specs.catalog import load_hardware
from roofsim.model.batch import BatchShape
from roofsim.model.cost import CostModel
from roofsim.model.graph import attention_backend, attention_kernels, graph_context
from roofsim.model.loader import load_model
from roofsim.model.spec import ParallelSpec, QuantSpec
from roofsim.simulator.config import ReplicaGroup, SimConfig, engine_overrides
from roofsim.simulator.engines import engine_profile, sglang_attn_backend, vllm_v1_attn_backend
from roofsim.simulator.run import build_replicas

PREFILL = BatchShape.build(prefill=[(8192, 0)])
DECODE = BatchShape.build(decode_ctx=[8192] * 64)
MIXED = BatchShape.build(prefill=[(1024, 3072)], decode_ctx=[6000] * 16)


def _shapes(model: str) -> tuple[BatchShape, BatchShape, BatchShape]:
    """PREFILL, DECODE, MIXED with the model's sliding window aggregates (as the scheduler builds them)."""
    m = load_model(model)
    w = m.sliding_window if m.num_sliding_layers else None
    return (BatchShape.build(prefill=[(8192, 0)], window=w), BatchShape.build(decode_ctx=[8192] * 64, window=w),
            BatchShape.build(prefill=[(1024, 3072)], decode_ctx=[6000] * 16, window=w))


@pytest.mark.parametrize(("engine", "gpu", "policy"), [
    ("vllm", "a100-sxm-80gb", "vllm-fa2"), ("vllm", "l40s", "vllm-fa2"), ("vllm", "rtx-pro-6000", "vllm-fa2"),
    ("vllm", "h100-sxm", "vllm-fa3"), ("vllm", "b200", "vllm-flashinfer"), ("vllm==0.8", "l40s", "vllm-fa2"),
    ("vllm", "mi300x", ""), ("vllm==0.7", "l40s", ""), ("sglang", "l40s", "sglang-flashinfer"),
    ("sglang", "h100-sxm", "sglang-fa3"), ("sglang", "b200", "sglang-trtllm"),
    ("sglang", "rtx-pro-6000", "sglang-flashinfer-sm120"), ("trtllm", "l40s", "trtllm"),
    ("roofsim-default", "l40s", ""),
])
def test_engine_policy_by_gpu(engine: str, gpu: str, policy: str) -> None:
    assert engine_profile(engine, gpu, max_model_len=8192).attn_backend == policy


def test_no_gpu_no_policy() -> None:
    assert vllm_v1_attn_backend(None) == sglang_attn_backend(None) == ""
    assert engine_profile("vllm==0.8").attn_backend == ""


def test_attention_sinks_take_vllm_triton_off_hopper() -> None:
    assert attention_backend("vllm-fa2", 64, 128, "bf16", False, sinks=True) == "triton"
    assert attention_backend("vllm-fa3", 64, 128, "bf16", False, sinks=True) == "flash_attn_3"
    c = graph_context(load_model("gpt-oss-20b"), QuantSpec(), ParallelSpec(), attn_backend="vllm-fa2")
    assert [g.backend for g in c.attn] == ["triton", "triton"]


@pytest.mark.parametrize(("policy", "head_dim", "window", "kv", "mla", "backend"), [
    ("vllm-fa2", 128, 0, "bf16", False, "flash_attn_2"),
    ("vllm-fa2", 128, 4096, "fp8", False, "flashinfer"),  # FA2 has no fp8 KV cache
    ("vllm-fa2", 192, 0, "fp8", False, "triton"),  # nor FlashInfer head dim 192 (AIConfigurator: vllm_triton_attn)
    ("vllm-fa2", 512, 0, "bf16", False, "triton"),
    ("vllm-fa2", 128, 0, "bf16", True, ""),  # vLLM's MLA backends: not priced apart
    ("vllm-fa3", 64, 128, "bf16", False, "flash_attn_3"),
    ("sglang-fa3", 256, 0, "bf16", False, "flash_attn_3"),
    ("sglang-fa3", 256, 1024, "bf16", False, "triton_extend"),
    ("sglang-fa3", 512, 0, "fp8", False, "triton_extend"),
    ("sglang-flashinfer", 128, 4096, "bf16", False, "flashinfer"),
    ("sglang-flashinfer", 64, 0, "bf16", False, "triton_extend"),
    ("sglang-flashinfer", 192, 0, "bf16", False, "triton_extend"),
    ("sglang-flashinfer", 576, 0, "bf16", True, "triton_extend"),  # MLA off Hopper / B200: Triton
    ("sglang-flashinfer-sm120", 128, 0, "bf16", False, "flashinfer"),
    ("sglang-flashinfer-sm120", 128, 4096, "bf16", False, "triton_extend"),
    ("sglang-trtllm", 64, 128, "bf16", False, "trtllm"),
    ("trtllm", 64, 128, "fp8", False, "trtllm"),
    ("", 64, 128, "bf16", False, ""),
])
def test_kernel_family_by_model_feature(policy: str, head_dim: int, window: int, kv: str, mla: bool,
                                        backend: str) -> None:
    assert attention_backend(policy, head_dim, window, kv, mla) == backend


def test_unknown_policy_is_named() -> None:
    with pytest.raises(ValueError, match="'fa9' is not one of"):
        attention_backend("fa9", 128, 0, "bf16", False)


def _flags(model: str, policy: str, phase: int, kv: str = "bf16") -> list[tuple[str, bool, bool, int]]:
    c = graph_context(load_model(model), QuantSpec(kv_dtype=kv), ParallelSpec(), attn_backend=policy)
    return [(k.name, k.triton, k.gqa_unpacked, k.window) for k in attention_kernels(c, _shapes(model)[phase])]


def test_graph_sets_the_flags() -> None:
    # vLLM FA2 decodes a sliding window unpacked; FA3, FlashInfer and no engine do not
    assert _flags("mistral-7b-v0.1", "vllm-fa2", 1) == [("attn_decode_swa", False, True, 0)]
    for policy in ("", "vllm-fa3", "sglang-flashinfer"):
        assert _flags("mistral-7b-v0.1", policy, 1) == [("attn_decode_swa", False, False, 0)]
    assert _flags("mistral-7b-v0.1", "vllm-fa2", 1, kv="fp8") == [("attn_decode_swa", False, False, 0)]
    # GQA without a window keeps FA2's packed decode
    assert _flags("llama-3.1-8b", "vllm-fa2", 1) == [("attn_decode", False, False, 0)]
    # SGLang on Ada: gpt-oss's head dim 64 takes the Triton extend kernel, which visits every causal tile
    assert _flags("gpt-oss-20b", "sglang-flashinfer", 0) == [("attn_prefill", True, False, 0),
                                                                    ("attn_prefill_swa", True, False, 0)]
    assert _flags("gpt-oss-20b", "", 0) == [("attn_prefill", False, False, 0),
                                                   ("attn_prefill_swa", False, False, 128)]


def test_sglang_triton_prefill_costs_every_causal_pair() -> None:
    m, pf = load_model("gpt-oss-20b"), _shapes("gpt-oss-20b")[0]
    c0 = graph_context(m, QuantSpec(), ParallelSpec())
    c1 = graph_context(m, QuantSpec(), ParallelSpec(), attn_backend="sglang-flashinfer")
    c2 = graph_context(m, QuantSpec(), ParallelSpec(), attn_backend="vllm-fa2")  # vLLM's Triton keeps the window
    swa0, swa1, swa2 = (attention_kernels(c, pf)[1] for c in (c0, c1, c2))
    assert swa1.flops == attention_kernels(c1, pf)[0].flops  # the window only masks scores
    assert pf.prefill_attn_pairs / pf.prefill_attn_pairs_win == pytest.approx(8192 * 8193 / 2 / (128 * 8192 - 127 * 128 / 2), rel=1e-3)
    assert swa1.flops / swa0.flops == pytest.approx(pf.prefill_attn_pairs / pf.prefill_attn_pairs_win)
    assert (swa2.flops, swa2.window, swa2.triton) == (swa0.flops, 128, True)


@pytest.mark.parametrize(("model", "gpu", "policy"), [
    ("mistral-7b-v0.1", "l40s", "vllm-fa2"), ("gpt-oss-20b", "l40s", "sglang-flashinfer"),
    ("gpt-oss-20b", "l40s", "vllm-fa2"), ("google/gemma-4-26B-A4B", "h100-sxm", "sglang-fa3"),
])
def test_closed_form_equals_the_kernels(model: str, gpu: str, policy: str) -> None:
    cost = CostModel(load_model(model), load_hardware(gpu), attn_backend=policy)
    for shape in (*_shapes(model), PREFILL, DECODE, MIXED):
        assert cost.step_seconds(shape) == pytest.approx(cost.step(shape).seconds, rel=1e-9)


def test_step_moves_only_where_a_flag_is_set() -> None:
    """Llama-3.1-8B (GQA, head dim 128, no window) costs the same under every engine; Mistral-7B's windowed FA2
    decode on L40S (vLLM) costs more (one padded tile per query head, no split-KV: 71 -> 112 ms for 64 x 8k)."""
    l40s = load_hardware("l40s")
    llama = load_model("llama-3.1-8b")
    base = CostModel(llama, l40s)
    for policy in ("vllm-fa2", "sglang-flashinfer", "trtllm"):
        c = CostModel(llama, l40s, attn_backend=policy)
        assert (c.step_seconds(PREFILL), c.step_seconds(DECODE)) == (base.step_seconds(PREFILL),
                                                                      base.step_seconds(DECODE))
    mistral, (pf, dec, _) = load_model("mistral-7b-v0.1"), _shapes("mistral-7b-v0.1")
    b, v = CostModel(mistral, l40s), CostModel(mistral, l40s, attn_backend="vllm-fa2")
    assert v.step_seconds(pf) == b.step_seconds(pf)
    assert v.step_seconds(dec) / b.step_seconds(dec) == pytest.approx(1.587, abs=0.005)


def test_replica_group_carries_the_policy() -> None:
    assert ReplicaGroup(model="llama-3.1-8b", hardware="l40s").attn_backend == ""  # no engine: unchanged
    g = ReplicaGroup(model="llama-3.1-8b", hardware="l40s", engine="sglang")
    assert g.attn_backend == "sglang-flashinfer"
    assert "attn_backend" not in engine_overrides(g)
    mine = ReplicaGroup(model="llama-3.1-8b", hardware="l40s", engine="sglang", attn_backend="")
    assert mine.attn_backend == "" and engine_overrides(mine)["attn_backend"] == ""
    with pytest.raises(ValueError, match="attn_backend"):
        ReplicaGroup(model="llama-3.1-8b", hardware="l40s", attn_backend="fa9")


def test_simulated_replicas_cost_with_the_engines_backend() -> None:
    def policy(**group: str) -> str:
        cfg = SimConfig.model_validate({"replicas": [{"model": "gpt-oss-20b", "hardware": "l40s", **group}],
                                        "workload": {"kind": "named", "name": "conversation", "num_requests": 2}})
        return build_replicas(cfg)[0].strategy.cost.attn_backend
    assert policy() == ""
    assert policy(engine="sglang") == "sglang-flashinfer"
    assert policy(engine="vllm") == "vllm-fa2"
