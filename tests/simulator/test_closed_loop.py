"""Closed loop like a benchmark client: client ramp-up (linear, first-token), warm-up requests counted but excluded
from the statistics, aiperf's drained warm-up, determinism, stepwise == fast advance, and every scheduler."""

from __future__ import annotations

import numpy as np
import pytest
from pydantic import ValidationError

from roofsim.simulator.config import SCHEDULER_KINDS, SimConfig
from roofsim.simulator.run import simulate


def _cfg(clients: int = 4, n: int = 24, kind: str = "sarathi", isl: int = 1000, osl: int = 20,
         replicas: int = 1, **arrival: object) -> SimConfig:
    sched: dict[str, object] = {"kind": kind}
    if kind == "sjf":
        sched["predictor_sigma"] = 0.5
    return SimConfig.model_validate({
        "workload": {"kind": "synthetic", "arrival": {"kind": "closed_loop", "clients": clients, **arrival},
                     "input": {"kind": "fixed", "tokens": isl}, "output": {"kind": "fixed", "tokens": osl},
                     "num_requests": n},
        "replicas": [{"model": "llama-3.1-8b", "hardware": "h100-sxm", "scheduler": sched, "count": replicas}],
        "seed": 1})


def test_linear_ramp_starts_client_k_at_k_times_ramp_over_clients() -> None:
    r = simulate(_cfg(clients=4, n=4, ramp_up_s=2.0))
    np.testing.assert_allclose(np.sort(r.arrival_s), [0.0, 0.5, 1.0, 1.5])
    # far apart (a 1000-token prefill takes ~0.05 s): nobody waits behind another prompt
    assert r.ttft_s.max() < 1.5 * r.ttft_s.min()


def test_first_token_ramp_starts_next_client_at_previous_first_token() -> None:
    r = simulate(_cfg(clients=4, n=4, ramp_up_s="first_token"))
    order = np.argsort(r.arrival_s, kind="stable")
    arr, first = r.arrival_s[order], r.first_token_s[order]
    assert arr[0] == 0.0
    np.testing.assert_array_equal(arr[1:], first[:-1])  # client k+1 sends exactly at client k's first token
    lock = simulate(_cfg(clients=4, n=4))
    assert r.ttft_s.mean() < 0.6 * lock.ttft_s.mean()  # no prompt waits behind the whole wave


def test_warmup_is_counted_and_excluded() -> None:
    r = simulate(_cfg(clients=4, n=24, warmup_requests=2))
    s = r.summary
    assert s["requests_total"] == 24 and s["requests_completed"] == 24
    assert s["requests_warmup"] == 8 and s["requests_measured"] == 16
    assert r.warmup.sum() == 8 and r.warmup[:8].all() and not r.warmup[8:].any()
    assert s["ttft_s"]["mean"] == pytest.approx(float(r.ttft_s[~r.warmup].mean()))
    # drained (aiperf): the measured phase starts when the last warm-up response is in
    assert s["measure_start_s"] == pytest.approx(float(r.completion_s[r.warmup].max()))
    assert r.arrival_s[~r.warmup].min() >= r.completion_s[r.warmup].max()
    assert s["requests_per_s"] == pytest.approx(16 / (s["sim_duration_s"] - s["measure_start_s"]))
    # the ITL pool holds only measured requests' gaps: 16 x (osl - 1)
    assert r.itl_s.size == 16 * 19


def test_drained_warmup_restarts_lockstep_and_undrained_flows_on() -> None:
    lock = simulate(_cfg(clients=4, n=16))
    drained = simulate(_cfg(clients=4, n=24, warmup_requests=2))
    flowing = simulate(_cfg(clients=4, n=24, warmup_requests=2, warmup_drain=False))
    # with fixed lengths and a drain, the measured phase repeats the cold start: same per-request TTFTs
    np.testing.assert_allclose(np.sort(drained.ttft_s[~drained.warmup]), np.sort(lock.ttft_s), rtol=1e-9)
    # without the drain, measured requests follow warm-up ones at once (measurement starts before warm-up ends)
    assert flowing.summary["measure_start_s"] < flowing.completion_s[flowing.warmup].max()


def test_num_requests_must_exceed_warmup() -> None:
    with pytest.raises(ValidationError, match="warm-up"):
        _cfg(clients=4, n=8, warmup_requests=2)


@pytest.mark.parametrize("ramp", [0.5, "first_token"])
def test_deterministic_and_stepwise_equal(ramp: object) -> None:
    cfg = _cfg(clients=6, n=40, ramp_up_s=ramp, warmup_requests=1, replicas=2)
    a, b = simulate(cfg), simulate(cfg)
    np.testing.assert_array_equal(a.completion_s, b.completion_s)
    slow = simulate(cfg.model_copy(update={"stepwise": True}))
    np.testing.assert_array_equal(a.completion_s, slow.completion_s)
    np.testing.assert_array_equal(a.arrival_s, slow.arrival_s)


@pytest.mark.parametrize("kind", SCHEDULER_KINDS)
def test_every_scheduler_finishes_with_ramp_and_warmup(kind: str) -> None:
    r = simulate(_cfg(clients=8, n=48, kind=kind, isl=600, osl=30, ramp_up_s="first_token", warmup_requests=1))
    s = r.summary
    assert s["requests_completed"] == 48 and s["requests_measured"] == 40
    assert (r.ttft_s[r.completed] <= r.e2e_s[r.completed]).all()
    assert r.series.running.max() <= 8  # never more than `clients` outstanding
    np.testing.assert_array_equal([t.size for t in r.token_times], r.output_tokens)


def test_toml_round_trip_of_harness_options(tmp_path) -> None:
    cfg = _cfg(ramp_up_s="first_token", warmup_requests=2, warmup_drain=False)
    p = tmp_path / "run.toml"
    p.write_text(cfg.to_toml())
    assert SimConfig.from_toml(p) == cfg
