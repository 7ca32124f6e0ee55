"""A disaggregated run whose prefill worker has 16 attention data-parallel ranks: the prompt's KV lives on one
rank's GPU and crosses over that GPU's link, where a tp-16 worker holds a copy on all 16 and sends over 16 links;
either way each of the tp-16 decode replica's GPUs receives its own copy of the MLA latent."""

from __future__ import annotations

from typing import Any

import pytest

from roofsim.simulator.config import SimConfig, engine_overrides
from roofsim.simulator.run import simulate

GROUP = {"model": "deepseek-v3", "hardware": "h100-sxm", "ep": 16,
         "quant": {"weight_dtype": "fp8", "activation_dtype": "fp8"}}
ONE = {"kind": "synthetic", "arrival": {"kind": "poisson", "rate_per_s": 1.0},
       "input": {"kind": "fixed", "tokens": 2000}, "output": {"kind": "fixed", "tokens": 4}, "num_requests": 1}
KV_BYTES_PER_TOKEN = (512 + 64) * 61 * 2  # DeepSeek-V3's MLA latent cache, bf16, on each GPU that holds it


def _run(prefill: dict[str, Any]) -> dict[str, Any]:
    cfg = SimConfig.model_validate({"workload": ONE, "replicas": [
        {**GROUP, "role": "prefill", **prefill}, {**GROUP, "role": "decode", "tp": 16}]})
    return simulate(cfg).summary["disaggregation"]["handover"]


def test_handover_leaves_over_one_ranks_link() -> None:
    adp = _run({"tp": 1, "attn_dp": 16})
    tp16 = _run({"tp": 16})
    copies = 16 * 2000 * KV_BYTES_PER_TOKEN  # the decode replica keeps the latent on each of its 16 GPUs
    assert adp["bytes_total"] == tp16["bytes_total"] == copies
    # one rank's GPU sends all 16 copies over its NIC; the tp-16 worker sends them over 16 (h100-sxm: 50 GB/s, 5 us)
    assert adp["transfer_s"]["p50"] == pytest.approx(5e-6 + copies / 50e9, rel=1e-9)
    assert tp16["transfer_s"]["p50"] == pytest.approx(5e-6 + copies / 16 / 50e9, rel=1e-9)


def test_engine_limits_are_per_rank() -> None:
    """vLLM's max_num_seqs and token budget hold per DP rank (each rank is an engine core): a 4-rank replica holds
    four times the engine's defaults; an explicit setting is the replica's own and is kept."""
    base = {"workload": ONE, "replicas": [{"model": "Qwen3-30B-A3B", "hardware": "h100-sxm", "engine": "vllm"}]}
    one = SimConfig.model_validate(base).replicas[0].scheduler
    dp = SimConfig.model_validate({**base, "replicas": [{**base["replicas"][0], "attn_dp": 4, "ep": 4}]})
    s = dp.replicas[0].scheduler
    assert (s.max_num_seqs, s.max_batched_tokens, s.chunk_size) == (
        4 * one.max_num_seqs, 4 * one.max_batched_tokens, 4 * one.chunk_size)
    # a printed config keeps only what differs from the engine's (scaled) settings, and reads back the same
    assert "scheduler" not in engine_overrides(dp.replicas[0])
    own = SimConfig.model_validate({**base, "replicas": [{**base["replicas"][0], "attn_dp": 4, "ep": 4,
                                                          "scheduler": {"kind": "sarathi", "max_num_seqs": 64}}]})
    assert own.replicas[0].scheduler.max_num_seqs == 64


def test_a_sequence_must_fit_one_ranks_kv() -> None:
    """A 30k-token request fits the 4-rank pool (4 x 1266 blocks at 26 % of an H100) but not one rank, where its KV
    would live: it is rejected with the rank's capacity; with more memory per rank it is served."""
    def run(util: float) -> tuple[int, tuple[str, ...]]:
        cfg = SimConfig.model_validate({"workload": {
            "kind": "synthetic", "arrival": {"kind": "poisson", "rate_per_s": 1.0},
            "input": {"kind": "fixed", "tokens": 30000}, "output": {"kind": "fixed", "tokens": 8}, "num_requests": 2},
            "replicas": [{"model": "Qwen3-30B-A3B", "hardware": "h100-sxm", "attn_dp": 4, "ep": 4, "engine": "vllm",
                          "gpu_memory_utilization": util}]})
        r = simulate(cfg)
        return r.requests_completed, r.reject_reasons
    done, why = run(0.26)
    assert done == 0 and why[0] == ("input+output=30008 tokens needs 1876 KV blocks; one of the replica's 4 "
                                    "attention-DP ranks has 1266 (12 kept free)")
    assert run(0.3)[0] == 2
