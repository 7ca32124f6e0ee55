"""The planner's disaggregated search: cheapest-first over prefill:decode counts and per-pool layouts, stopping once
a round starts above the cheapest feasible deployment; outcomes feasible first."""

from __future__ import annotations

from roofsim.simulator.planning.disagg import plan_disaggregated, pool_pairs
from roofsim.simulator.planning.executors import SerialExecutor
from roofsim.simulator.planning.spec import PlanSpec

SPEC = {"model": "llama-3.1-8b", "rate_per_s": 24.0, "slo_ttft_s": 0.5, "slo_tpot_s": 0.02, "tp": [1, 2],
        "num_requests": 300, "candidates_per_round": 3,
        "workload": {"kind": "synthetic", "arrival": {"kind": "poisson", "rate_per_s": 1.0},
                     "input": {"kind": "uniform", "low": 1000, "high": 3000},
                     "output": {"kind": "uniform", "low": 100, "high": 400}, "num_requests": 300}}


def test_pool_pairs_cross_every_layout() -> None:
    pairs = pool_pairs(PlanSpec.model_validate(SPEC))
    assert [(p.tp, d.tp) for p, d in pairs] == [(1, 1), (1, 2), (2, 1), (2, 2)]


def test_cheapest_feasible_disaggregated_deployment_wins() -> None:
    out, stats = plan_disaggregated(PlanSpec.model_validate(SPEC), max_pool_replicas=3, executor=SerialExecutor())
    win = out[0]
    assert win.point.feasible and win.point.p99_ttft_s <= 0.5 and win.point.p99_tpot_s <= 0.02
    # every cheaper deployment that was simulated failed the SLOs; the search stopped early
    assert all(not o.point.feasible for o in out if o.usd_per_hour < win.usd_per_hour)
    assert stats.simulations == len(out) < stats.candidates
    # 24 req/s of 1000-3000-token prompts: one H100 cannot prefill them within the TTFT SLO, two can
    assert win.usd_per_hour == 2.99 * win.gpus
    assert win.prefill_replicas * win.prefill.gpus >= 2
