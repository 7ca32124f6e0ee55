"""KV-cache tiers below HBM: demotion order and bytes moved on a hand-computed case, load-back time (layer-wise
overlap or not), config checks, a hit served from DRAM in a simulation, determinism, the Mooncake trace's reuse."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

from roofsim.simulator.config import SimConfig
from roofsim.simulator.kvcache import PrefixCache, Tier, reuse_bound
from roofsim.simulator.replica import Replica
from roofsim.simulator.run import build_replicas, simulate
from roofsim.simulator.workload import Trace

DATA = Path(__file__).resolve().parents[3] / "shared" / "data"
MOONCAKE = DATA / "traces/mooncake/conversation_trace.jsonl"


def test_demotion_order_and_bytes_moved() -> None:
    # HBM 2 blocks, DRAM 2 blocks at 100 B/s, SSD 1 block at 10 B/s; a block is 50 B per GPU
    dram, ssd = Tier("dram", 2, 100.0), Tier("ssd", 1, 10.0)
    c = PrefixCache(2, 10, (dram, ssd), block_bytes=50.0)
    c.insert((1, 2))
    c.insert((3, 4))  # HBM holds 4, 3 (3 most recent); 2 then 1 demoted to DRAM
    assert list(c.lru) == [4, 3] and list(dram.lru) == [2, 1] and dram.bytes_written == 100.0
    c.insert((5, 6))  # 4 then 3 demoted; DRAM overflows into SSD (2, then 1); SSD holds 1 block: 2 dropped
    assert list(c.lru) == [6, 5] and list(dram.lru) == [4, 3] and list(ssd.lru) == [1]
    assert (dram.bytes_written, dram.evicted, ssd.bytes_written, ssd.evicted) == (200.0, 2, 100.0, 1)
    # (3, 4, 9): 3 and 4 are in DRAM -> 20 tokens, loaded back (2 x 50 B at 100 B/s = 1 s); 6, 5 demoted
    assert c.cached_tokens((3, 4, 9), 30) == 20 and c.lru == {6: None, 5: None}  # no side effect
    assert c.lookup((3, 4, 9), 30) == 20
    assert list(c.lru) == [4, 3] and list(dram.lru) == [6, 5] and list(ssd.lru) == [1]
    assert (dram.hit_tokens, dram.bytes_read, dram.bytes_written) == (20, 100.0, 300.0)
    # (1,) with a 5-token prompt: 4 tokens from SSD (the last is computed), the whole block read: 50 B / 10 B/s
    assert c.lookup((1,), 5) == 4
    assert (ssd.hit_tokens, ssd.bytes_read) == (4, 50.0)
    assert list(c.lru) == [3, 1] and list(dram.lru) == [5, 4] and list(ssd.lru) == [6]
    assert c.take_load_s() == pytest.approx(1.0 + 5.0) and c.take_load_s() == 0.0
    assert c.load_s == pytest.approx(6.0) and c.hit_tokens == 24
    # inserting a block held below HBM moves it up without a read (its KV was just computed); 3 goes down,
    # pushing 5 from DRAM into the SSD slot 6 left
    c.insert((6,))
    assert list(c.lru) == [1, 6] and list(dram.lru) == [4, 3] and list(ssd.lru) == [5] and ssd.bytes_read == 50.0


def test_tier_errors() -> None:
    with pytest.raises(ValueError, match="block_bytes"):
        PrefixCache(2, 10, (Tier("dram", 1, 1.0),))
    with pytest.raises(ValueError, match="read_bytes_per_s"):
        Tier("ssd", 1, 0.0)


def test_load_back_time_overlaps_layer_by_layer() -> None:
    layerwise, before = SimpleNamespace(load_layers=32), SimpleNamespace(load_layers=0)
    # load shorter than compute: only the first layer's load shows; longer: the excess too
    assert Replica._load_extra_s(layerwise, 1.0, 2.0) == pytest.approx(1.0 / 32)  # type: ignore[arg-type]
    assert Replica._load_extra_s(layerwise, 3.0, 1.0) == pytest.approx(3.0 / 32 + 31 / 32 * 2.0)  # type: ignore[arg-type]
    assert Replica._load_extra_s(before, 3.0, 1.0) == 3.0  # type: ignore[arg-type]


def test_reuse_bound() -> None:
    assert reuse_bound([(1, 2), (1, 2, 3), (4,)], [20, 25, 10], 10) == pytest.approx(20 / 55)


def _cfg(tiers: list[dict[str, object]], layerwise: bool = True) -> SimConfig:
    # gpu_memory_utilization 0.25 leaves ~3.5 GB of KV on an H100 for Llama-3.1-8B: ~50 prefix blocks of 512
    return SimConfig.model_validate({
        "workload": {"kind": "synthetic", "arrival": {"kind": "offline"}, "input": {"kind": "fixed", "tokens": 1},
                     "output": {"kind": "fixed", "tokens": 1}, "num_requests": 1},
        "replicas": [{"model": "llama-3.1-8b", "hardware": "h100-sxm", "scheduler": {"kind": "sarathi"},
                      "gpu_memory_utilization": 0.25, "prefix_caching": True, "kv_tiers": tiers,
                      "kv_load_layerwise": layerwise}]})


def _evicting_trace() -> Trace:
    # prompt A (4 blocks), then 40 distinct 4-block prompts (160 blocks > HBM), then A again
    h = ((1, 2, 3, 4),) + tuple((10 + 4 * k, 11 + 4 * k, 12 + 4 * k, 13 + 4 * k) for k in range(40)) + ((1, 2, 3, 4),)
    n = len(h)
    return Trace(np.arange(n, dtype=float), np.full(n, 2048), np.full(n, 4), h, "hand-made")


def test_dram_hit_in_a_simulation() -> None:
    dram = [{"kind": "dram", "capacity_bytes": 64e9}]
    hbm = simulate(_cfg([]), trace=_evicting_trace())
    tiered = simulate(_cfg(dram), trace=_evicting_trace())
    assert hbm.summary["prefix_cached_tokens"] == 0  # A's blocks were evicted before it came back
    kv = tiered.summary["kv_tiers"]
    block_bytes = 512 * 131072  # Llama-3.1-8B bf16 KV: 32 layers x 8 heads x 128 x 2 (K, V) x 2 bytes
    assert kv["dram"]["hit_tokens"] == 2047 and kv["hbm"]["hit_tokens"] == 0
    assert kv["dram"]["bytes_read"] == 4 * block_bytes
    assert kv["dram"]["hit_rate"] == pytest.approx(2047 / (42 * 2048))
    assert tiered.summary["prefix_cache_hit_rate"] == kv["dram"]["hit_rate"]
    # 164 distinct blocks were computed, HBM holds C: 164 - C demoted (C ~ 50), then 4 more when A's blocks came back
    hbm_blocks = build_replicas(_cfg(dram))[0].pool.total * 16 // 512
    assert 40 < hbm_blocks < 60
    assert kv["dram"]["bytes_written"] == (168 - hbm_blocks) * block_bytes
    assert tiered.ttft_s[-1] < 0.3 * hbm.ttft_s[-1]
    np.testing.assert_allclose(tiered.ttft_s[:-1], hbm.ttft_s[:-1])
    # load-back time: 4 blocks at 64 GB/s (H100 PCIe Gen5 x16); layer-wise only the first layer's share shows
    load = 4 * block_bytes / 64e9
    before = simulate(_cfg(dram, layerwise=False), trace=_evicting_trace())
    assert before.ttft_s[-1] - tiered.ttft_s[-1] == pytest.approx(load * 31 / 32, rel=1e-9)
    again = simulate(_cfg(dram), trace=_evicting_trace())
    np.testing.assert_array_equal(again.completion_s, tiered.completion_s)
    assert again.summary["kv_tiers"] == kv


def test_config_checks() -> None:
    with pytest.raises(ValueError, match="prefix_caching"):
        SimConfig.model_validate({
            "workload": {"kind": "named", "name": "chat-short"},
            "replicas": [{"model": "llama-3.1-8b", "hardware": "h100-sxm",
                          "kv_tiers": [{"kind": "dram", "capacity_bytes": 1e9}]}]})
    with pytest.raises(ValueError, match="distinct"):
        _cfg([{"kind": "dram", "capacity_bytes": 1e9}, {"kind": "dram", "capacity_bytes": 2e9}])
    cfg = _cfg([{"kind": "dram", "capacity_bytes": 1e9}, {"kind": "ssd", "capacity_bytes": 4e12}])
    assert SimConfig.model_validate(cfg.model_dump()) == cfg
    assert "kv_tiers" in cfg.to_toml()


@pytest.mark.skipif(not MOONCAKE.exists(), reason="../shared/data/traces/mooncake is absent")
def test_mooncake_reuse_per_tier() -> None:
    def run(tiers: list[dict[str, object]]) -> dict:
        return simulate(SimConfig.model_validate({
            "workload": {"kind": "trace", "path": str(MOONCAKE), "max_requests": 1500},
            "replicas": [{"model": "llama-3.1-8b", "hardware": "h100-sxm", "scheduler": {"kind": "sarathi"},
                          "prefix_caching": True, "kv_tiers": tiers}]})).summary

    dram = run([{"kind": "dram", "capacity_bytes": 1e12}])
    both = run([{"kind": "dram", "capacity_bytes": 256e9}, {"kind": "ssd", "capacity_bytes": 3.84e12}])
    bound = 0.2699  # reuse_bound over the same 1,500 requests (test_prefix_cache)
    assert bound - 0.05 < dram["prefix_cache_hit_rate"] < bound
    assert both["prefix_cache_hit_rate"] == pytest.approx(bound, abs=5e-4)
    assert dram["kv_tiers"]["hbm"]["hit_rate"] == pytest.approx(0.0389, abs=5e-4)
