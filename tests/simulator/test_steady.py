"""Steady-state detection (simulator/steady.py): the number in system by time, the warm-up, drain and drift rules,
and their verdicts on real runs: a light load is steady, a saturated one is not, and a run near capacity becomes
steady when it is long enough."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from roofsim.simulator.config import SimConfig
from roofsim.simulator.run import simulate
from roofsim.simulator.steady import in_system_by_time, steady_state


def test_in_system_by_time_sums_replicas_and_counts_idle_bins() -> None:
    start = np.array([0.1, 0.2, 0.6, 0.1, 0.9])
    replica = np.array([0, 0, 0, 1, 1])
    n = np.array([2, 4, 6, 1, 3])
    # bins [0, .5), [.5, 1]: replica 0 means 3 and 6, replica 1 means 1 and 3
    assert in_system_by_time(start, replica, n, 1.0, bins=2).tolist() == [4.0, 9.0]
    # replica 1 has no iteration in the second of four bins: it counts as idle there
    assert in_system_by_time(start, replica, n, 1.0, bins=4).tolist() == [4.0, 0.0, 6.0, 3.0]


def test_saturated_and_short_runs_are_not_steady() -> None:
    t = np.linspace(0, 10, 500)
    ones = np.ones(500, bool)
    st, w = steady_state(t, t, t, t, ones, t, np.zeros(500, int), np.ones(500, int), 10.0, True)
    assert not st["steady"] and "still growing" in st["reason"] and w.size == 0
    st, w = steady_state(t[:50], t[:50], t[:50], t[:50], ones[:50], t, np.zeros(500, int), np.ones(500, int),
                         10.0, False)
    assert not st["steady"] and "too few" in st["reason"]


def test_a_drifting_latency_is_not_steady_a_flat_one_is() -> None:
    rng = np.random.default_rng(0)
    n = 2000
    arrival = np.sort(rng.uniform(0, 100, n))
    occupancy_t = np.linspace(0, 100, 5000)
    occ = np.full(5000, 10)
    flat = 0.02 + 0.002 * rng.standard_normal(n)
    args = (np.ones(n, bool), occupancy_t, np.zeros(5000, int), occ, 100.0, False)
    e2e = np.full(n, 1.0)
    st, w = steady_state(arrival, flat, flat, e2e, *args)
    assert st["steady"] and abs(st["drift"]) < 0.05 and w.size == st["requests"]
    assert st["end_s"] == pytest.approx(99.0)  # one P90 end-to-end latency (1 s) before the last arrival
    rising = flat * (1 + arrival / 100)  # +100 % over the run
    st, _ = steady_state(arrival, rising, rising, e2e, *args)
    assert not st["steady"] and "drifts +" in st["reason"] and st["drift"] > 0.5


def _run(rate: float, n: int) -> dict[str, Any]:
    cfg = SimConfig.model_validate({
        "workload": {"kind": "named", "name": "conversation", "rate_per_s": rate, "num_requests": n},
        "replicas": [{"model": "llama-3.1-8b", "hardware": "h100-sxm"}], "seed": 0})
    return simulate(cfg).summary


def test_verdicts_on_real_runs() -> None:
    light = _run(4.0, 2000)
    st = light["steady_state"]
    assert st["steady"] and st["start_s"] > 0 and 1900 <= st["requests"] < 2000
    assert st["ttft_s"]["mean"] == pytest.approx(light["ttft_s"]["mean"], rel=0.1)
    over = _run(40.0, 2000)
    assert over["saturated"] and not over["steady_state"]["steady"]
    # at rate 8 (this replica saturates near 20 req/s) 2,000 requests still drift; 8,000 settle
    assert not _run(8.0, 2000)["steady_state"]["steady"]
    assert _run(8.0, 8000)["steady_state"]["steady"]
