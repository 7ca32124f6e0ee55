"""Harness client models: identical closed-loop clients stay phase-locked with `ideal` and drift apart with a
harness's client gaps; pooled prompts repeat; the client is reachable from configs and --set."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from roofsim.simulator.clients import CLIENT_MODELS, HARNESSES, client_model, pooled_prompt_hash_ids
from roofsim.simulator.config import ReplicaGroup, SimConfig, apply_overrides
from roofsim.simulator.run import simulate
from roofsim.simulator.workload import ClosedLoopArrivals, FixedLengths, SyntheticWorkload, build_trace

CLIENTS = 8
WAVES = 6


def _run(client: str):
    wl = SyntheticWorkload(arrival=ClosedLoopArrivals(clients=CLIENTS, client=client),
                           input=FixedLengths(tokens=256), output=FixedLengths(tokens=64),
                           num_requests=CLIENTS * WAVES)
    return simulate(SimConfig(workload=wl, replicas=(ReplicaGroup(model="meta-llama/Llama-3.1-8B",
                                                                  hardware="h100-sxm"),)))


def _distinct_finish_times_last_wave(res) -> int:
    order = np.argsort(res.arrival_s, kind="stable")
    last = order[-CLIENTS:]
    return len(set(np.round(res.completion_s[last], 9).tolist()))


def test_ideal_clients_stay_locked_and_harness_clients_drift_apart() -> None:
    ideal = _run("ideal")
    # lock-step: the last wave of 8 identical requests finishes in one iteration
    assert _distinct_finish_times_last_wave(ideal) == 1
    assert np.ptp(ideal.arrival_s[np.argsort(ideal.arrival_s)[-CLIENTS:]]) == 0.0
    # aiperf's client gaps (exponential, 2 ms mean) spread the sends by a few ms, but every send lands inside one
    # engine iteration, so the next prefills batch together again and the wave still finishes in one iteration:
    # lock-step is an attractor of the engine, not only of ideal clients (docs/validation-e2e.md, "Clients")
    harness = _run("aiperf")
    last = np.argsort(harness.arrival_s)[-CLIENTS:]
    assert np.ptp(harness.arrival_s[last]) > 1e-3
    assert _distinct_finish_times_last_wave(harness) == 1


def test_gaps_longer_than_an_iteration_break_the_lock(monkeypatch: pytest.MonkeyPatch) -> None:
    slow = dataclasses.replace(CLIENT_MODELS["aiperf"], gap_s=0.05)
    monkeypatch.setitem(CLIENT_MODELS, "aiperf", slow)
    res = _run("aiperf")
    assert _distinct_finish_times_last_wave(res) == 6  # the last wave of 8 finishes over 6 iterations
    assert res.summary["ttft_s"]["mean"] < 0.5 * _run("ideal").summary["ttft_s"]["mean"]


def test_aiperf_gaps_are_exponential_with_the_stated_mean() -> None:
    m = client_model("aiperf")
    g = m.gaps(np.random.default_rng(0), 200_000)
    assert g.mean() == pytest.approx(m.gap_s, rel=0.01)
    assert g.std() == pytest.approx(m.gap_s, rel=0.02)  # exponential: std = mean
    rng = np.random.default_rng(1)
    state = rng.bit_generator.state
    assert not client_model("ideal").gaps(rng, 5).any() and rng.bit_generator.state == state  # no draw


def test_every_harness_has_a_model_with_a_source_and_unknown_names_fail() -> None:
    assert set(HARNESSES) == set(CLIENT_MODELS)
    assert all(CLIENT_MODELS[h].source for h in HARNESSES)
    with pytest.raises(ValueError, match="client='wrk' is not one of"):
        client_model("wrk")


def test_pooled_prompts_share_blocks_only_with_the_same_prompt() -> None:
    ids = pooled_prompt_hash_ids(np.random.default_rng(0), np.array([40, 40, 40, 40, 40, 40]), 2, 16)
    assert all(len(x) == 3 for x in ids)  # ceil(40 / 16) blocks
    keys = [x[0] >> 32 for x in ids]
    assert set(keys) <= {0, 1} and len(set(keys)) == 2
    for a, b in zip(ids, keys, strict=True):
        assert a == (b << 32, (b << 32) + 1, (b << 32) + 2)


def test_a_pooled_client_gets_hash_ids_and_an_unpooled_one_none(monkeypatch: pytest.MonkeyPatch) -> None:
    wl = SyntheticWorkload(arrival=ClosedLoopArrivals(clients=2, client="aiperf"), input=FixedLengths(tokens=20),
                           output=FixedLengths(tokens=4), num_requests=6)
    assert build_trace(wl, np.random.default_rng(0)).hash_ids is None
    monkeypatch.setitem(CLIENT_MODELS, "aiperf", dataclasses.replace(CLIENT_MODELS["aiperf"], prompt_pool=3))
    tr = build_trace(wl, np.random.default_rng(0))
    assert tr.hash_ids is not None and len(tr.hash_ids) == 6 and tr.hash_block_tokens == 16
    assert len({h[0] >> 32 for h in tr.hash_ids}) <= 3


def test_client_is_settable_and_validated() -> None:
    base = {"workload": {"kind": "synthetic", "arrival": {"kind": "closed_loop", "clients": 2},
                         "input": {"kind": "fixed", "tokens": 8}, "output": {"kind": "fixed", "tokens": 2},
                         "num_requests": 4},
            "replicas": [{"model": "meta-llama/Llama-3.1-8B", "hardware": "h100-sxm"}]}
    cfg = SimConfig.model_validate(apply_overrides(base, ["workload.arrival.client=vllm-bench"]))
    assert cfg.workload.arrival.client == "vllm-bench"
    assert SimConfig.model_validate(base).workload.arrival.client == "ideal"
    with pytest.raises(ValueError, match="client"):
        SimConfig.model_validate(apply_overrides(base, ["workload.arrival.client=wrk"]))
