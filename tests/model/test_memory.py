"""Memory planner: weights per shard, KV bytes per token (GQA, MLA, KV dtype), capacity, does-not-fit errors."""

from __future__ import annotations

import pytest

from roofsim.hardware_specs.catalog import load_hardware
from roofsim.model.loader import load_model
from roofsim.model.memory import NON_TORCH_BYTES, DoesNotFitError, plan_memory
from roofsim.model.spec import ParallelSpec, QuantSpec

H100 = load_hardware("h100-sxm")


def test_llama8b_on_h100_plan() -> None:
    m = load_model("llama-3.1-8b")
    plan = plan_memory(m, H100, gpu_memory_utilization=0.9, max_batched_tokens=8192, max_seqs=256)
    assert plan.weights_bytes == pytest.approx(8.030261248e9 * 2)
    # GQA: 32 layers x (K + V) x 8 kv heads x 128 x 2 bytes
    assert plan.kv_bytes_per_token == 32 * 2 * 8 * 128 * 2 == 131072
    left = H100.memory.capacity_bytes * 0.9 - plan.weights_bytes - plan.activation_bytes - NON_TORCH_BYTES
    assert plan.kv_capacity_bytes == pytest.approx(left)
    assert plan.max_kv_tokens == int(left // (131072 * 16)) * 16
    assert plan.max_sequences(4096) == plan.max_kv_tokens // 4096


def test_tp_and_kv_dtype_scale_capacity() -> None:
    m = load_model("llama-3.1-70b")
    tp4 = plan_memory(m, H100, parallel=ParallelSpec(tp=4))
    tp8 = plan_memory(m, H100, parallel=ParallelSpec(tp=8))
    assert tp8.weights_bytes == pytest.approx(tp4.weights_bytes / 2, rel=1e-9)
    assert tp8.kv_bytes_per_token == tp4.kv_bytes_per_token / 2
    fp8kv = plan_memory(m, H100, QuantSpec(kv_dtype="fp8"), ParallelSpec(tp=4))
    assert fp8kv.kv_bytes_per_token == tp4.kv_bytes_per_token / 2
    assert fp8kv.max_kv_tokens >= 2 * tp4.max_kv_tokens - 16


def test_mla_latent_cache_is_small_and_replicated() -> None:
    m = load_model("deepseek-v3")
    plan = plan_memory(m, load_hardware("h200-sxm"), QuantSpec(weight_dtype="fp8", activation_dtype="fp8"),
                       ParallelSpec(tp=8))
    # DeepSeek-V2 paper: the cache holds d_c = 512 latent + 64 RoPE-key elements per token per layer
    assert plan.kv_bytes_per_token == 61 * (512 + 64) * 2


def test_does_not_fit_shows_breakdown_and_suggests_a_fix() -> None:
    m = load_model("llama-3.1-70b")
    with pytest.raises(DoesNotFitError) as e:
        plan_memory(m, H100)
    msg = str(e.value)
    assert "does not fit on 1 x h100-sxm" in msg
    assert "weights 141." in msg
    # 81,559 MiB (85.52 GB) x 0.9 = 76.97 GB usable: 141 GB / 2 = 70.6 GB of weights per GPU leaves ~3.6 GB of KV
    # at tp=2 (bf16), and fp8 weights (70.6 GB) fit on one GPU
    assert "would fit: tp=2 pp=1 weights bf16; tp=1 pp=1 weights fp8" in msg
    assert isinstance(e.value, ValueError)


def test_bad_utilisation_rejected() -> None:
    with pytest.raises(ValueError, match="gpu_memory_utilization=1.5 must be in"):
        plan_memory(load_model("llama-3.1-8b"), H100, gpu_memory_utilization=1.5)
