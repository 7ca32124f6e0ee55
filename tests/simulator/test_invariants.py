"""One invariant suite over every scheduler policy x serving variant (the scikit-learn conformance way): every
request finishes or is rejected with a reason, counted once; tokens conserved; TTFT <= E2E; monotone timestamps;
KV blocks within capacity at every iteration (with preemption really happening under KV pressure); Little's law;
same seed -> bit-identical result; with KV tiers, every cached token from exactly one tier and every block evicted
from a tier written into the next. Unsupported combinations must fail with a clear error."""

from __future__ import annotations

from typing import Any, get_args

import numpy as np
import pytest

from roofsim.hardware_specs.errors import InputError
from roofsim.simulator.config import SCHEDULER_KINDS, SchedulerConfig, SimConfig
from roofsim.simulator.metrics import SimResult
from roofsim.simulator.run import simulate
from roofsim.simulator.schedulers import SCHEDULERS
from roofsim.simulator.workload import Trace, build_trace


def _kinds_of_union() -> tuple[str, ...]:
    """The `kind` of every member of the SchedulerConfig union (a new policy joins the suite by itself)."""
    union = get_args(SchedulerConfig)[0]
    return tuple(cls.model_fields["kind"].default for cls in get_args(union))


KINDS = _kinds_of_union()
VARIANTS = ("light", "kv_recompute", "kv_swap", "pp2", "prefix", "tiers", "speculative", "early_exit")
CASES = [(k, v) for v in VARIANTS for k in KINDS]
N = 120
SEED = 7
TOO_LONG = 5  # this request's prompt exceeds the model context (131072 tokens): rejected at routing
HASH_BLOCK = 64  # prompt tokens per prefix hash id in the prefix-caching variant
# KV pressure: gpu_memory_utilization 0.22 of an H100's 81,559 MiB leaves 730 KV blocks (11,680 tokens) next to
# Llama-3.1-8B's 16 GB of weights, while 20 req/s with 200-800 output tokens overfill it (50-60 preemptions per run).
KV_UTIL = 0.22
KV_BLOCKS = 730
# Little's law is exact for the true number in system; the engine samples it at iteration starts (arrivals
# during an iteration are seen one iteration late), which the bound absorbs (worst case of these 35 runs: 1.0%).
LITTLE_REL = 0.03
# Tiers variant: HBM cut to ~180 prefix blocks (utilization 0.22), a DRAM tier of 2 GB (238 blocks of 64 tokens x
# 128 KiB per token) and a 10 GB SSD below it; every 2nd request from the 60th on repeats the prompt of the request
# 60 before it (~270 distinct blocks back: past HBM, some past DRAM).
TIER_UTIL = 0.22
TIERS = [{"kind": "dram", "capacity_bytes": 2e9}, {"kind": "ssd", "capacity_bytes": 1e10}]


def _config(kind: str, variant: str, seed: int = SEED) -> SimConfig:
    sched: dict[str, Any] = {"kind": kind}
    if kind == "sjf":
        sched["predictor_sigma"] = 0.5
    group: dict[str, Any] = {"model": "llama-3.1-8b", "hardware": "h100-sxm", "scheduler": sched}
    rate, out = 4.0, {"kind": "uniform", "low": 1, "high": 300}
    if variant.startswith("kv_"):
        group["gpu_memory_utilization"] = KV_UTIL
        sched["preemption"] = variant.removeprefix("kv_")
        sched["max_batched_tokens"] = 2048  # smaller activation reserve: leaves room for the KV pool
        rate, out = 20.0, {"kind": "uniform", "low": 200, "high": 800}
    elif variant == "pp2":
        group["pp"] = 2
    elif variant == "prefix":
        group["prefix_caching"] = True
    elif variant == "tiers":
        group.update(prefix_caching=True, gpu_memory_utilization=TIER_UTIL, kv_tiers=TIERS)
    elif variant == "speculative":
        group["speculative"] = {"drafter": {"kind": "eagle"}, "acceptance": {"kind": "iid", "rate": 0.7}}
    elif variant == "early_exit":
        group["early_exit"] = {"kind": "per_token", "distribution": {
            "kind": "histogram", "layers": [16, 24, 32], "weights": [1.0, 1.0, 2.0]}}
    return SimConfig.model_validate({
        "workload": {"kind": "synthetic", "arrival": {"kind": "poisson", "rate_per_s": rate},
                     "input": {"kind": "uniform", "low": 50, "high": 1500}, "output": out, "num_requests": N},
        "replicas": [group], "seed": seed})


def _trace(cfg: SimConfig, variant: str) -> Trace:
    """The workload's trace with one over-long prompt; with prefix caching, hash ids where every prompt opens
    with one of 4 shared system prompts of 8 blocks (the rest of the prompt is unique)."""
    t = build_trace(cfg.workload, np.random.default_rng(cfg.seed))
    inp = t.input_tokens.copy()
    inp[TOO_LONG] = 140_000
    hashes = None
    if variant in ("prefix", "tiers"):
        rng = np.random.default_rng(cfg.seed + 1)
        system = rng.integers(0, 4, len(t)).tolist()
        owner = [i - 60 if variant == "tiers" and i >= 60 and i % 2 == 0 else i for i in range(len(t))]
        hashes = tuple(tuple(system[o] * 100 + b if b < 8 else 10_000 + o * 1_000 + b
                             for b in range(-(-n // HASH_BLOCK)))
                       for o, n in zip(owner, inp.tolist(), strict=True))
    return Trace(t.arrival_s, inp, t.output_tokens, hashes, "invariants", HASH_BLOCK)


_CACHE: dict[tuple[str, str], SimResult] = {}


def _run(kind: str, variant: str, seed: int = SEED) -> SimResult:
    cfg = _config(kind, variant, seed)
    return simulate(cfg, trace=_trace(cfg, variant))


def _result(kind: str, variant: str) -> SimResult:
    if (kind, variant) not in _CACHE:
        _CACHE[kind, variant] = _run(kind, variant)
    return _CACHE[kind, variant]


def test_suite_covers_every_scheduler_kind() -> None:
    assert set(KINDS) == set(SCHEDULER_KINDS) == set(SCHEDULERS)
    assert len(KINDS) == len(SCHEDULER_KINDS) == 5


@pytest.mark.parametrize(("kind", "variant"), CASES)
def test_every_request_finishes_or_is_rejected_once(kind: str, variant: str) -> None:
    r = _result(kind, variant)
    s = r.summary
    assert s["stop_reason"] == "completed"
    assert np.all(r.completed ^ r.rejected)  # each request exactly one of the two
    assert (s["requests_completed"], s["requests_rejected"], s["requests_unfinished"]) == (N - 1, 1, 0)
    assert np.flatnonzero(r.rejected).tolist() == [TOO_LONG]
    assert "exceeds the model context (131072)" in r.reject_reasons[TOO_LONG]
    assert all(reason == "" for i, reason in enumerate(r.reject_reasons) if i != TOO_LONG)
    assert s["requests_waiting_at_end"] == s["requests_running_at_end"] == 0


@pytest.mark.parametrize(("kind", "variant"), CASES)
def test_tokens_conserved(kind: str, variant: str) -> None:
    r = _result(kind, variant)
    done = r.completed
    produced = np.array([t.size for t in r.token_times])
    np.testing.assert_array_equal(produced[done], r.output_tokens[done])
    assert produced[TOO_LONG] == 0
    assert r.itl_s.size == int((r.output_tokens[done] - 1).sum())
    tokens = r.summary["output_tokens_per_s"] * r.summary["measure_duration_s"]
    assert tokens == pytest.approx(float(r.output_tokens[done].sum()), rel=1e-12)


@pytest.mark.parametrize(("kind", "variant"), CASES)
def test_timestamps_monotone_and_ttft_within_e2e(kind: str, variant: str) -> None:
    r = _result(kind, variant)
    d = r.completed
    assert np.all(r.arrival_s[d] <= r.first_scheduled_s[d])
    assert np.all(r.first_scheduled_s[d] < r.first_token_s[d])
    assert np.all(r.first_token_s[d] <= r.completion_s[d])
    assert np.all(r.ttft_s[d] <= r.e2e_s[d])
    assert np.all(np.diff(r.arrival_s) >= 0)
    # a speculative step emits several tokens at one instant; every other step emits one per sequence
    strict = variant != "speculative"
    for i in np.flatnonzero(d):
        t = r.token_times[i]
        assert t[0] == r.first_token_s[i] and t[-1] == r.completion_s[i]
        gaps = np.diff(t)
        assert np.all(gaps > 0) if strict else np.all(gaps >= 0)
    assert np.isnan(r.first_token_s[TOO_LONG]) and np.isnan(r.completion_s[TOO_LONG])
    s = r.series
    assert np.all(np.diff(s.start_s) >= 0) and np.all(s.duration_s > 0)
    if variant != "pp2":  # one lane: an iteration starts after the previous one ended
        assert np.all(s.start_s[1:] >= (s.start_s + s.duration_s)[:-1])


@pytest.mark.parametrize(("kind", "variant"), CASES)
def test_kv_within_capacity(kind: str, variant: str) -> None:
    r = _result(kind, variant)
    s = r.series
    assert np.all(s.kv_blocks_used <= s.kv_blocks_total)
    assert np.all(s.kv_blocks_used >= 0) and s.kv_blocks_used.max() > 0
    assert r.summary["max_kv_usage"] == s.kv_usage.max() <= 1.0
    pre = r.summary["preemptions"]
    if variant == "tiers":  # its small pool preempts a few requests; their re-admissions look the cache up again
        assert int(r.preemptions.sum()) == pre
    elif not variant.startswith("kv_"):
        assert pre == 0
    elif kind == "static":
        # static batching reserves input + output blocks at admission, so a batch never outgrows the pool
        assert pre == 0
        assert np.all(s.kv_blocks_total == KV_BLOCKS)
    else:  # the pressure is real: the pool fills up and running sequences are preempted
        assert np.all(s.kv_blocks_total == KV_BLOCKS)
        assert pre > 0
        assert s.kv_blocks_used.max() >= 0.99 * KV_BLOCKS
        assert int(r.preemptions.sum()) == pre


def _time_average_in_system(r: SimResult) -> float:
    """Engine count (waiting + admitted) sampled at each iteration start, held until the next start or until
    every running iteration ended (pipeline lanes overlap); idle time counts as 0 in system."""
    s = r.series
    order = np.argsort(s.start_s, kind="stable")
    start = s.start_s[order]
    reach = np.maximum.accumulate(start + s.duration_s[order])
    until = np.minimum(np.append(start[1:], np.inf), reach)
    return float(np.sum((s.waiting + s.running)[order] * (until - start))) / r.summary["sim_duration_s"]


@pytest.mark.parametrize(("kind", "variant"), CASES)
def test_littles_law(kind: str, variant: str) -> None:
    r = _result(kind, variant)
    T = r.summary["sim_duration_s"]
    lam = r.completed.sum() / T
    W = float(np.mean(r.e2e_s[r.completed]))
    assert _time_average_in_system(r) == pytest.approx(lam * W, rel=LITTLE_REL)


def _summary_without_wall(r: SimResult) -> dict[str, Any]:
    return {k: v for k, v in r.summary.items() if k not in ("wall_s", "sim_s_per_wall_s", "iterations_per_wall_s")}


@pytest.mark.parametrize(("kind", "variant"), CASES)
def test_same_seed_bit_identical(kind: str, variant: str) -> None:
    a = _result(kind, variant)
    b = _run(kind, variant)
    for name in ("first_scheduled_s", "first_token_s", "completion_s", "itl_s", "preemptions"):
        np.testing.assert_array_equal(getattr(a, name), getattr(b, name))
    for field in ("start_s", "duration_s", "kv_blocks_used", "waiting", "running"):
        np.testing.assert_array_equal(getattr(a.series, field), getattr(b.series, field))
    np.testing.assert_equal(_summary_without_wall(a), _summary_without_wall(b))


@pytest.mark.parametrize("kind", KINDS)
def test_another_seed_changes_the_run(kind: str) -> None:
    a, c = _result(kind, "light"), _run(kind, "light", seed=SEED + 1)
    assert not np.array_equal(a.arrival_s, c.arrival_s)
    assert not np.array_equal(a.completion_s, c.completion_s)


def test_variants_really_use_their_technique() -> None:
    """The variant runs are not silently plain runs."""
    for kind in KINDS:
        assert _result(kind, "prefix").summary["prefix_cache_hit_rate"] > 0.1
        tiers = _result(kind, "tiers").summary["kv_tiers"]
        assert tiers["dram"]["hit_tokens"] > 0 and tiers["ssd"]["hit_tokens"] > 0
        assert _result(kind, "speculative").summary["spec_tokens_per_step"] > 1.5
        assert _result(kind, "early_exit").summary["ee_depth_fraction"] < 1.0
        assert set(_result(kind, "pp2").series.lane.tolist()) == {0, 1}
        assert "spec_tokens_per_step" not in _result(kind, "light").summary


@pytest.mark.parametrize("kind", KINDS)
def test_tier_blocks_conserved(kind: str) -> None:
    """Every prompt token served from the cache comes from exactly one tier, and every block evicted from a tier
    above the last is written into the next one; reads take bytes / the tier's bandwidth."""
    s = _result(kind, "tiers").summary
    kv = s["kv_tiers"]
    assert sum(t["hit_tokens"] for t in kv.values()) == s["prefix_cached_tokens"]
    block_bytes = HASH_BLOCK * 131072  # Llama-3.1-8B bf16 KV per token per GPU
    assert kv["dram"]["evicted_blocks"] * block_bytes == kv["ssd"]["bytes_written"]
    assert kv["dram"]["bytes_read"] == pytest.approx(
        block_bytes * kv["dram"]["load_s"] * 64e9 / block_bytes, rel=1e-12)  # read at the H100's 64 GB/s PCIe
    assert kv["ssd"]["load_s"] * 7e9 == pytest.approx(kv["ssd"]["bytes_read"], rel=1e-12)


@pytest.mark.parametrize("kind", KINDS)
def test_pp_with_speculative_is_a_clear_error(kind: str) -> None:
    cfg = _config(kind, "speculative")
    group = cfg.replicas[0].model_copy(update={"pp": 2})
    with pytest.raises(ValueError, match="speculative decoding with pp=2 is not modelled"):
        simulate(cfg.model_copy(update={"replicas": (group,)}))


def test_speculative_with_early_exit_is_a_clear_error() -> None:
    data = _config("vllm", "speculative").model_dump(mode="json", exclude_none=True)
    data["replicas"][0]["early_exit"] = _config("vllm", "early_exit").replicas[0].early_exit.model_dump(mode="json")
    with pytest.raises(InputError, match="speculative and early_exit cannot both be set"):
        SimConfig.from_dict(data)


def test_measured_poisson_rate_matches() -> None:
    wl = _config("vllm", "light").workload.model_copy(update={"num_requests": 5000})
    arrival = build_trace(wl.model_copy(update={"arrival": wl.arrival.model_copy(update={"rate_per_s": 6.0})}),
                          np.random.default_rng(SEED)).arrival_s
    gaps = np.diff(np.concatenate(([0.0], arrival)))
    assert 1.0 / gaps.mean() == pytest.approx(6.0, rel=0.06)  # sd of the estimate ~1.4%
