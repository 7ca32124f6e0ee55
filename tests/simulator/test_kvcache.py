"""Paged KV-cache accounting: block rounding, admission watermark, allocation limits, the decode-phase rule,
prefix-cache hits and LRU eviction, and block growth / preemption accounting seen through simulate()."""

from __future__ import annotations

import numpy as np
import pytest

from roofsim.model.memory import MemoryPlan
from roofsim.simulator.kvcache import BlockPool, PrefixCache, decode_phase


def _plan(max_kv_tokens: int, block_size: int = 16) -> MemoryPlan:
    return MemoryPlan(capacity_bytes=80e9, usable_bytes=72e9, weights_bytes=16e9, activation_bytes=1e9,
                      non_torch_bytes=1e9, kv_capacity_bytes=max_kv_tokens * 131072.0, kv_bytes_per_token=131072.0,
                      block_size=block_size, max_kv_tokens=max_kv_tokens, max_context_tokens=131072,
                      total_weight_bytes=16e9)


def test_block_rounding() -> None:
    pool = BlockPool(_plan(1610), watermark_fraction=0.0)
    assert pool.total == 100  # 1610 tokens hold 100 whole 16-token blocks
    assert [pool.blocks_for(t) for t in (0, 1, 15, 16, 17, 160, 161)] == [0, 1, 1, 1, 2, 10, 11]
    assert BlockPool(_plan(1600, block_size=32), 0.0).blocks_for(33) == 2


def test_allocation_release_peak_and_watermark() -> None:
    pool = BlockPool(_plan(1600), watermark_fraction=0.05)
    assert (pool.total, pool.watermark, pool.used, pool.free) == (100, 5, 0, 100)
    assert pool.can_admit(95) and not pool.can_admit(96)  # admission keeps 5 blocks free
    pool.allocate(60)
    pool.release(20)
    assert (pool.used, pool.free, pool.peak_used) == (40, 60, 60)
    assert pool.can_admit(55) and not pool.can_admit(56)
    pool.allocate(60)  # running sequences may grow into the watermark, up to the last block
    assert (pool.used, pool.free, pool.peak_used) == (100, 0, 100)


def test_capacity_errors() -> None:
    pool = BlockPool(_plan(1600), watermark_fraction=0.0)
    pool.allocate(90)
    with pytest.raises(AssertionError, match="KV over-allocation: 101 > 100 blocks"):
        pool.allocate(11)
    assert pool.used == 90  # the failed allocation changed nothing
    pool.release(90)
    with pytest.raises(AssertionError, match="released twice"):
        pool.release(1)


@pytest.mark.parametrize(("join", "kv", "phase"), [(0, 16, 0), (0, 100, 12), (5, 20, 1), (3, 3, 0)])
def test_decode_phase(join: int, kv: int, phase: int) -> None:
    assert decode_phase(join, kv, 16) == phase
    # the rule: at counter c the sequence holds kv + (c - join) tokens and needs a block when that is a multiple
    # of 16, i.e. exactly when c % 16 == phase
    needs = [c for c in range(join, join + 48) if (kv + c - join) % 16 == 0]
    assert needs and all(c % 16 == phase for c in needs)


def test_prefix_hits_count_and_last_token_is_computed() -> None:
    c = PrefixCache(capacity_blocks=10, block_tokens=100)
    assert c.lookup((1, 2, 3), 300) == 0
    c.insert((1, 2, 3))
    assert c.lookup((1, 2, 9), 250) == 200  # two leading blocks
    assert c.lookup((1, 2, 3), 300) == 299  # the whole prompt cached: its last token is still computed
    assert c.lookup((5, 1), 200) == 0  # a hit must start at the first block
    assert c.cached_tokens((), 50) == 0
    assert (c.lookups, c.lookup_tokens, c.hit_tokens, c.hit_requests) == (4, 1050, 499, 2)


def test_prefix_lru_eviction_follows_recency() -> None:
    c = PrefixCache(capacity_blocks=4, block_tokens=10)
    c.insert((1, 2))
    c.insert((3, 4))
    c.lookup((1, 2), 20)  # refreshes 1 and 2
    c.insert((5,))  # over capacity: evicts 4 (the tail of the least recently used prefix) first
    assert list(c.lru) == [3, 2, 1, 5] and c.hit_blocks((3, 4)) == 1
    c.insert((6, 7))  # evicts 3, then 2: prefix (1, 2) keeps only its head
    assert list(c.lru) == [1, 5, 7, 6]
    assert c.hit_blocks((1, 2)) == 1 and c.hit_blocks((3, 4)) == 0


def test_prefix_cache_rejects_empty_capacity() -> None:
    with pytest.raises(ValueError, match="capacity_blocks=0"):
        PrefixCache(0, 16)
    with pytest.raises(ValueError, match="block_tokens=0"):
        PrefixCache(4, 0)


def test_blocks_grow_at_block_boundaries(simulate_trace) -> None:
    # 100-token prompt: 7 blocks at admission; decode step c writes KV token 101 + c, a new (8th) block at
    # token 113 (c = 12); 20 output tokens = 1 prefill + 19 decode iterations
    r = simulate_trace([100], [20])
    assert r.series.kv_blocks_used.tolist() == [7] * 13 + [8] * 7


def test_blocks_released_at_completion(simulate_trace) -> None:
    # 17 and 40 tokens: 2 + 3 blocks; the one-token request frees its 2 blocks after the prefill iteration
    r = simulate_trace([17, 40], [1, 3])
    assert r.series.kv_blocks_used.tolist() == [5, 3, 3]


def _pressure(preemption: str, simulate_trace):
    # 730 KV blocks on one H100 (81,559 MiB) at gpu_memory_utilization 0.22; 40 requests of 1000 + 600 tokens at once
    return simulate_trace([1000] * 40, [600] * 40, scheduler={
        "kind": "vllm", "preemption": preemption, "max_batched_tokens": 2048}, gpu_memory_utilization=0.22)


def test_recompute_preemption_reprefills_generated_tokens(simulate_trace) -> None:
    r = _pressure("recompute", simulate_trace)
    s = r.series
    assert r.completed.all() and int(s.kv_blocks_total[0]) == 730
    assert r.summary["preemptions"] == int(r.preemptions.sum()) > 0
    assert s.kv_blocks_used.max() <= 730
    # a recomputed request prefills its prompt plus the tokens generated before eviction
    assert int(s.prefill_tokens.sum()) > 40 * 1000


def test_swap_preemption_does_not_recompute(simulate_trace) -> None:
    r = _pressure("swap", simulate_trace)
    s = r.series
    assert r.completed.all() and r.summary["preemptions"] > 0
    assert int(s.prefill_tokens.sum()) == 40 * 1000  # swapped KV comes back over PCIe, nothing recomputed
    assert np.all(s.kv_blocks_used <= 730)
