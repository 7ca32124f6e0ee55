"""The numpy Llama forward pass is correct (cache vs recompute, batched vs alone, GQA vs MHA), guards memory,
and the wall-clock serving loop writes a vLLM-layout log."""

from __future__ import annotations

import json
import math
import tracemalloc

import numpy as np
import pytest

from roofsim.model.spec import ModelSpec, MoESpec
from roofsim.validation.local import (
    build_local_llama,
    check_memory,
    estimate_memory_bytes,
    measure_step_times,
    run_serving,
    small_llama_spec,
    vllm_log_dict,
    write_vllm_log,
)
from roofsim.validation.local.transformer import parameter_count


def _tiny(num_heads: int = 4, num_kv_heads: int = 2, hidden: int = 64, layers: int = 2) -> ModelSpec:
    return small_llama_spec(
        hidden_size=hidden,
        num_layers=layers,
        num_heads=num_heads,
        num_kv_heads=num_kv_heads,
        intermediate_size=160,
        vocab_size=300,
        max_context_tokens=64,
    )


def reference_logits(model, tokens) -> np.ndarray:
    """Independent float64 recompute with no cache: HF-style rotate_half RoPE, repeat_kv, per-head loops."""
    spec, w = model.spec, model.weights
    tokens = np.asarray(tokens)
    t, hd, heads = len(tokens), spec.head_dim, spec.num_heads
    group = heads // spec.num_kv_heads

    def rms(x, weight):
        return x / np.sqrt((x**2).mean(-1, keepdims=True) + 1e-6) * weight

    inv_freq = 1.0 / 10000.0 ** (np.arange(0, hd, 2) / hd)
    angles = np.arange(t)[:, None] * inv_freq[None, :]
    cos = np.concatenate([np.cos(angles)] * 2, axis=-1)[:, None, :]
    sin = np.concatenate([np.sin(angles)] * 2, axis=-1)[:, None, :]

    def rope(x):
        rotated = np.concatenate([-x[..., hd // 2 :], x[..., : hd // 2]], axis=-1)
        return x * cos + rotated * sin

    x = w.embed[tokens].astype(np.float64)
    for layer in w.layers:
        h = rms(x, layer.attn_norm)
        q = rope((h @ layer.wq).reshape(t, heads, hd))
        k = rope((h @ layer.wk).reshape(t, spec.num_kv_heads, hd))
        v = (h @ layer.wv).reshape(t, spec.num_kv_heads, hd)
        out = np.zeros((t, heads, hd))
        for head in range(heads):
            kv = head // group
            scores = q[:, head] @ k[:, kv].T / math.sqrt(hd)
            scores[np.triu(np.ones((t, t), dtype=bool), 1)] = -np.inf
            p = np.exp(scores - scores.max(-1, keepdims=True))
            out[:, head] = (p / p.sum(-1, keepdims=True)) @ v[:, kv]
        x = x + out.reshape(t, heads * hd) @ layer.wo
        h = rms(x, layer.mlp_norm)
        gate = h @ layer.w_gate
        x = x + (gate / (1 + np.exp(-gate)) * (h @ layer.w_up)) @ layer.w_down
    return rms(x, w.final_norm) @ w.lm_head


def test_cached_decode_equals_full_recompute_without_cache() -> None:
    model = build_local_llama(_tiny(), np.random.default_rng(1), max_seqs=2, max_ctx_tokens=32)
    tokens = list(np.random.default_rng(2).integers(0, 300, size=12))
    slot = model.allocate()
    prefill = model.prefill([(slot, tokens[:6])], all_logits=True)
    ref = reference_logits(model, tokens[:6])
    assert ref.std() > 0.3  # logits are O(1), so a 1e-4 tolerance is a real check
    np.testing.assert_allclose(prefill, ref, rtol=1e-4, atol=1e-4)
    for t in range(6, 12):
        logits = model.decode([(slot, tokens[t])])[0]
        np.testing.assert_allclose(logits, reference_logits(model, tokens[: t + 1])[-1], rtol=1e-4, atol=1e-4)
    assert model.context_length(slot) == 12
    # A wrong cache (a corrupted key) must break the agreement: the comparison can fail.
    model.keys[0][slot, 0, 3] += 1.0
    assert not np.allclose(model.decode([(slot, 5)])[0], reference_logits(model, tokens + [5])[-1], atol=1e-3)


def test_batched_decode_of_different_lengths_equals_decoding_alone() -> None:
    spec = _tiny()
    batched = build_local_llama(spec, np.random.default_rng(3), max_seqs=3, max_ctx_tokens=40)
    alone = build_local_llama(spec, np.random.default_rng(3), max_seqs=3, max_ctx_tokens=40)
    rng = np.random.default_rng(4)
    prompts = [rng.integers(0, 300, size=n) for n in (5, 9, 14)]
    slots_b = [batched.allocate() for _ in prompts]
    slots_a = [alone.allocate() for _ in prompts]
    first_b = batched.prefill(list(zip(slots_b, prompts, strict=True)))  # one batched prefill
    first_a = np.concatenate([alone.prefill([(s, p)]) for s, p in zip(slots_a, prompts, strict=True)])
    np.testing.assert_allclose(first_b, first_a, rtol=1e-4, atol=1e-4)
    next_b = batched.sample(first_b)
    next_a = alone.sample(first_a)
    np.testing.assert_array_equal(next_b, next_a)
    for _ in range(4):
        logits_b = batched.decode([(s, int(t)) for s, t in zip(slots_b, next_b, strict=True)])
        logits_a = np.concatenate([alone.decode([(s, int(t))]) for s, t in zip(slots_a, next_a, strict=True)])
        np.testing.assert_allclose(logits_b, logits_a, rtol=1e-4, atol=1e-4)
        next_b, next_a = batched.sample(logits_b), alone.sample(logits_a)
    assert [batched.context_length(s) for s in slots_b] == [9, 13, 18]
    last = batched.steps[-1]
    assert (last.kind, last.batch_size, last.tokens, last.ctx_sum) == ("decode", 3, 3, 9 + 13 + 18)
    assert batched.steps[0].kind == "prefill" and batched.steps[0].tokens == 28
    assert all(s.seconds > 0 for s in batched.steps)


def test_gqa_code_with_kv_heads_equal_heads_is_reference_mha() -> None:
    model = build_local_llama(
        _tiny(num_heads=4, num_kv_heads=4), np.random.default_rng(5), max_seqs=1, max_ctx_tokens=16
    )
    tokens = np.random.default_rng(6).integers(0, 300, size=10)
    slot = model.allocate()
    np.testing.assert_allclose(
        model.prefill([(slot, tokens)], all_logits=True),
        reference_logits(model, tokens),
        rtol=1e-4,
        atol=1e-4,
    )


def test_parameter_count_of_the_100m_preset() -> None:
    spec = small_llama_spec()
    # per layer: q 768^2 + k,v 2*768*256 + o 768^2 + mlp 3*768*2048 + 2 norms; embed + head 2*32000*768 + norm.
    per_layer = 768 * 768 * 2 + 2 * 768 * 256 + 3 * 768 * 2048 + 2 * 768
    assert parameter_count(spec) == 12 * per_layer + 2 * 32000 * 768 + 768
    assert parameter_count(spec) == 124_668_672  # "~100M-class": 85M in the layers, 49M embed + head


def test_memory_check_raises_before_allocating() -> None:
    huge = small_llama_spec(
        hidden_size=65536,
        num_layers=64,
        num_heads=64,
        num_kv_heads=8,
        intermediate_size=4 * 65536,
        vocab_size=32000,
    )
    assert estimate_memory_bytes(huge, 1, 128) > 4 * 65536 * 65536 * 64  # > 1 TiB of fp32 MLP weights alone
    tracemalloc.start()
    try:
        with pytest.raises(ValueError, match=r"needs .* GiB .* MemAvailable="):
            build_local_llama(huge, np.random.default_rng(0), max_seqs=1, max_ctx_tokens=128)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 10 * 2**20  # nothing near the model's size was allocated
    tiny = _tiny()
    needed = check_memory(tiny, 2, 32, available_bytes=2**30)
    assert needed == estimate_memory_bytes(tiny, 2, 32)
    with pytest.raises(ValueError, match="80% of MemAvailable"):
        check_memory(tiny, 2, 32, available_bytes=int(needed / 0.8) - 1024)


def test_unsupported_features_are_named() -> None:
    moe = _tiny().model_copy(update={"moe": MoESpec(num_experts=4, top_k=2, expert_intermediate_size=32)})
    with pytest.raises(ValueError, match="mixture of experts"):
        build_local_llama(moe, np.random.default_rng(0), max_seqs=1, max_ctx_tokens=8)
    with pytest.raises(ValueError, match="backend='torch'"):
        build_local_llama(_tiny(), np.random.default_rng(0), max_seqs=1, max_ctx_tokens=8, backend="torch")


@pytest.mark.parametrize("mode", ["continuous", "static"])
def test_run_serving_tiny_model(mode: str, tmp_path) -> None:
    output_len = 4
    log = run_serving(
        _tiny(),
        mode,
        num_requests=6,
        rate_per_s=float("inf"),
        input_len=(3, 9),
        output_len=output_len,
        max_batch=3,
        seed=7,
    )
    assert len(log.requests) == 6
    for r in log.requests:
        assert 3 <= r.input_len <= 9
        assert len(r.token_times_s) == output_len
        assert len(r.itls_s) == output_len - 1
        assert 0 < r.ttft_s <= r.e2el_s
        assert list(r.token_times_s) == sorted(r.token_times_s)
    kinds = [(s.kind, s.batch_size) for s in log.steps]
    # All 6 arrive at 0 with max_batch 3: both modes run two batches of 3 (prefill, then 3 decode steps each).
    assert kinds == [("prefill", 3), ("decode", 3), ("decode", 3), ("decode", 3)] * 2
    assert sum(s.tokens for s in log.steps if s.kind == "prefill") == sum(r.input_len for r in log.requests)
    assert sum(s.tokens for s in log.steps if s.kind == "decode") == 6 * (output_len - 1)

    path = write_vllm_log(log, tmp_path / "run.json")
    data = json.loads(path.read_text())
    for key in (
        "date",
        "backend",
        "model_id",
        "num_prompts",
        "request_rate",
        "burstiness",
        "duration",
        "completed",
        "total_input_tokens",
        "total_output_tokens",
        "request_throughput",
        "output_throughput",
        "mean_ttft_ms",
        "median_ttft_ms",
        "p99_ttft_ms",
        "mean_tpot_ms",
        "median_tpot_ms",
        "p99_tpot_ms",
        "mean_itl_ms",
        "median_itl_ms",
        "p99_itl_ms",
        "mean_e2el_ms",
        "median_e2el_ms",
        "p99_e2el_ms",
        "input_lens",
        "output_lens",
        "ttfts",
        "itls",
        "generated_texts",
        "errors",
        "send_times",
        "steps",
        "machine",
        "seed",
        "mode",
    ):
        assert key in data, key
    assert data["backend"] == "roofsim-measure" and data["request_rate"] == "inf" and data["mode"] == mode
    assert data["completed"] == 6 and data["total_output_tokens"] == 6 * output_len
    assert [len(itl) for itl in data["itls"]] == [output_len - 1] * 6
    assert data["send_times"] == [0.0] * 6
    assert data["mean_ttft_ms"] == pytest.approx(1e3 * np.mean([r.ttft_s for r in log.requests]))
    assert data["steps"][0]["kind"] == "prefill" and data["steps"][0]["batch_size"] == 3
    # The second batch waits for the first: its TTFT includes that queueing.
    assert min(data["ttfts"][3:]) > max(data["ttfts"][:3])


def test_poisson_arrivals_are_seeded_and_continuous_batching_admits_between_steps() -> None:
    kwargs = dict(num_requests=6, rate_per_s=400.0, input_len=5, output_len=6, max_batch=4, seed=11)
    first = run_serving(_tiny(), "continuous", **kwargs)
    second = run_serving(_tiny(), "continuous", **kwargs)
    sends = [r.send_s for r in first.requests]
    assert sends == [r.send_s for r in second.requests]
    assert sends == sorted(sends) and sends[0] > 0
    assert vllm_log_dict(first)["send_times"][0] == 0.0
    for r in first.requests:
        assert r.token_times_s[0] >= r.send_s  # nothing is served before it is sent
    assert [r.input_len for r in first.requests] == [5] * 6


def test_measure_step_times_times_each_size_and_leaves_the_model_clean() -> None:
    model = build_local_llama(_tiny(), np.random.default_rng(8), max_seqs=4, max_ctx_tokens=64)
    steps = measure_step_times(
        model, np.random.default_rng(9), prefill_lens=(8, 16), decode_batch_sizes=(1, 3), decode_ctx_tokens=20,
        repeats=2,
    )  # fmt: skip
    got = [(s.kind, s.batch_size, s.tokens, s.ctx_sum) for s in steps]
    assert (
        got
        == [("prefill", 1, 8, 8)] * 2
        + [("prefill", 1, 16, 16)] * 2
        + [("decode", 1, 1, 20)] * 2
        + [("decode", 3, 3, 60)] * 2
    )
    assert model.steps == [] and not model.in_use.any()
