"""The cluster: router choices (round robin order, least outstanding, least KV, power of two on the run's seeded
Generator), heterogeneous replica groups, rejection at routing, and the stop conditions."""

from __future__ import annotations

from typing import get_args

import numpy as np
import pytest
import simpy

from roofsim.hardware_specs.errors import UnknownNameError
from roofsim.simulator.cluster import ROUTERS, Cluster
from roofsim.simulator.config import RouterConfig


def test_every_router_kind_has_an_implementation() -> None:
    kinds = {cls.model_fields["kind"].default for cls in get_args(get_args(RouterConfig)[0])}
    assert kinds == set(ROUTERS) == {"round_robin", "least_outstanding", "least_kv", "power_of_two", "prefix_aware",
                                     "sticky_session"}


def test_unknown_router_lists_the_valid_ones() -> None:
    with pytest.raises(UnknownNameError, match="random") as e:
        Cluster(simpy.Environment(), [], "random", [], np.random.default_rng(0), None, 1.0, None)
    assert all(k in str(e.value) for k in ROUTERS)


def test_round_robin_order(simulate_trace) -> None:
    r = simulate_trace([100] * 7, [2] * 7, [0.0, 0.0, 0.1, 0.2, 0.3, 0.4, 0.5], count=3)
    assert r.replica.tolist() == [0, 1, 2, 0, 1, 2, 0]


# A: long prompt, B and C: short prompts, all decoding for ~10 s; D short. With two replicas, after A -> 0 and
# B -> 1 both hold one request (least outstanding ties to replica 0) while replica 0 holds ~250 KV blocks against
# replica 1's 2 (least KV sends C to 1); D then goes where fewer requests / fewer blocks are.
_LONG = ([4000, 16, 16, 16], [2000, 2000, 2000, 10], [0.0, 0.5, 1.0, 1.5])


def test_least_outstanding(simulate_trace) -> None:
    r = simulate_trace(*_LONG, router="least_outstanding", count=2)
    assert r.replica.tolist() == [0, 1, 0, 1]


def test_least_kv(simulate_trace) -> None:
    r = simulate_trace(*_LONG, router="least_kv", count=2)
    assert r.replica.tolist() == [0, 1, 1, 1]


@pytest.mark.parametrize("seed", [0, 1])
def test_power_of_two_draws_from_the_seeded_generator(simulate_trace, seed: int) -> None:
    # every request finds all four replicas idle: of the two drawn, the lower index wins the tie; with a
    # hand-made trace the router's draws are the first the run's Generator makes
    n = 12
    r = simulate_trace([100] * n, [1] * n, [float(i) for i in range(n)], router="power_of_two", count=4, seed=seed)
    rng = np.random.default_rng(seed)
    assert r.replica.tolist() == [int(min(rng.choice(4, size=2, replace=False))) for _ in range(n)]
    assert r.replica.max() == 2  # replica 3 can never win a tie


def test_power_of_two_prefers_the_less_loaded(simulate_trace) -> None:
    # two replicas: both are always drawn; request 0 decodes for seconds on replica 0, so the rest go to 1
    r = simulate_trace([100] * 4, [1000, 2, 2, 2], [0.0, 0.1, 0.2, 0.3], router="power_of_two", count=2)
    assert r.replica.tolist() == [0, 1, 1, 1]


def test_heterogeneous_groups(simulate_trace) -> None:
    groups = [{"model": "llama-3.1-8b", "hardware": "h100-sxm"},
              {"model": "llama-3.1-8b", "hardware": "l40s", "count": 2}]
    r = simulate_trace([500] * 6, [50] * 6, [0.0, 0.0, 0.0, 10.0, 10.0, 10.0], groups=groups)
    assert r.replica.tolist() == [0, 1, 2, 0, 1, 2]  # group order, then count
    total = {int(i): int(t) for i, t in zip(r.series.replica, r.series.kv_blocks_total, strict=True)}
    assert total[1] == total[2] < total[0]  # 48 GB L40S vs 80 GiB H100
    # the same request is slower on an L40S (lower HBM bandwidth) and identical on the two L40S replicas
    assert r.e2e_s[1] == r.e2e_s[2] > r.e2e_s[0]


def test_rejection_at_routing_names_the_reason(simulate_trace) -> None:
    r = simulate_trace([131000, 100], [1000, 2], count=2)
    assert r.rejected.tolist() == [True, False] and r.replica.tolist() == [0, 1]
    assert r.reject_reasons[0] == "input+output=132000 tokens exceeds the model context (131072)"
    assert r.summary["stop_reason"] == "completed"


def test_overload_guard_stops_the_run(simulate_trace) -> None:
    r = simulate_trace([100] * 10, [5] * 10, run={"max_waiting_requests": 3})
    s = r.summary
    assert s["stop_reason"] == "overload: 4 requests waiting at replica 0 (max_waiting_requests=3)"
    assert s["saturated"] and s["requests_completed"] == 0 and s["requests_unfinished"] == 10


def test_time_limit_stops_the_run(simulate_trace) -> None:
    r = simulate_trace([100, 100], [2, 2], [0.0, 10.0], run={"max_sim_time_s": 5.0})
    s = r.summary
    assert s["stop_reason"] == "max_sim_time_s=5 reached"
    assert r.completed.tolist() == [True, False] and s["requests_unfinished"] == 1
    assert s["sim_duration_s"] == 5.0
