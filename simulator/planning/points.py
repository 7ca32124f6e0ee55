"""The planner's points: the geometric rate grid, the simulation config of a (candidate, rate), judging a run
against the SLOs, and running a batch of points through the cache and an executor."""

from __future__ import annotations

import math
from typing import Any

from roofsim.simulator.config import SimConfig
from roofsim.simulator.planning.cache import PointCache, point_key
from roofsim.simulator.planning.evaluate import evaluate_point
from roofsim.simulator.planning.executors import Executor
from roofsim.simulator.planning.length import p99s
from roofsim.simulator.planning.pricing import replicas_for
from roofsim.simulator.planning.result import PlanStats, Point
from roofsim.simulator.planning.spec import Candidate, PlanSpec
from roofsim.simulator.workload import NamedWorkload, SyntheticWorkload, TraceWorkload, with_rate


# ---- the rate grid -----------------------------------------------------------------------------------------
def grid_rate(k: int, tolerance: float) -> float:
    """Rates live on a geometric grid (1 + tol)^k req/s, shared by every plan with the same tolerance, so that
    cache keys repeat when a plan is re-run or widened."""
    return float(round((1.0 + tolerance) ** k, 12))


def grid_index(rate: float, tolerance: float) -> int:
    """Largest k with grid_rate(k) <= rate."""
    k = math.floor(math.log(rate) / math.log1p(tolerance) + 1e-9)
    while grid_rate(k + 1, tolerance) <= rate:
        k += 1
    while grid_rate(k, tolerance) > rate:
        k -= 1
    return k


def replicas_at(spec: PlanSpec, k: int, tol: float) -> int:
    """Replicas a deployment needs when one replica's capacity is grid rate k."""
    return replicas_for(spec, grid_rate(k, tol))


def index_for_replicas(spec: PlanSpec, n: int, tol: float) -> int:
    """Smallest grid index whose rate needs at most n replicas (grid rate >= target / n): a candidate feasible
    there needs <= n replicas, infeasible there needs > n. These are the only rates the replica count
    depends on, so the count-phase search tests nothing else."""
    k = grid_index(spec.rate_per_s / n, tol)
    while replicas_at(spec, k, tol) > n:
        k += 1
    while replicas_at(spec, k - 1, tol) <= n:
        k -= 1
    return k


# ---- the workload and config at a rate ---------------------------------------------------------------------
def workload_at(spec: PlanSpec, rate: float, native_rate: float, num_requests: int) -> dict[str, Any]:
    """The spec's workload with mean arrival rate `rate` and `num_requests` requests. A synthetic/named
    workload keeps its seed-drawn gaps and lengths and rescales them (same seed -> the same requests, time-scaled);
    a trace is compressed or stretched by rate_scale = rate / its own mean rate."""
    wl = spec.workload
    if isinstance(wl, TraceWorkload):
        return {**wl.model_dump(mode="json", exclude_none=True), "rate_scale": rate / native_rate * wl.rate_scale,
                "max_requests": num_requests}
    if isinstance(wl, NamedWorkload):
        return {"kind": "named", "name": wl.name, "rate_per_s": rate, "num_requests": num_requests}
    assert isinstance(wl, SyntheticWorkload)
    d = wl.model_dump(mode="json", exclude_none=True)
    d["arrival"] = with_rate(wl.arrival, rate).model_dump(mode="json")
    d["num_requests"] = num_requests
    d.pop("duration_s", None)
    return d


def overload_guard(num_requests: int) -> int:
    """max_waiting_requests for point runs: a queue of 5% of all requests (>= 50) at one replica means the
    run is overloaded (queued requests then wait seconds for their first token); stopping there saves the
    minutes a hopeless run would spend draining. Independent of the SLOs so cached points serve any SLO."""
    return max(50, math.ceil(0.05 * num_requests))


def point_config(spec: PlanSpec, cand: Candidate, rate: float, native_rate: float, num_requests: int,
                 count: int = 1, with_slo: bool = False) -> SimConfig:
    """`count` replicas of `cand` at `rate`, `num_requests` requests: with the SLOs (the routed deployment run) or
    with the overload guard instead (point runs, which judge the SLOs themselves)."""
    data: dict[str, Any] = {"workload": workload_at(spec, rate, native_rate, num_requests),
                            "replicas": [cand.group(spec, count)], "seed": spec.seed}
    if with_slo:
        data["slo"] = {"ttft_s": spec.slo_ttft_s, "tpot_s": spec.slo_tpot_s}
    else:
        data["max_waiting_requests"] = overload_guard(num_requests)
    return SimConfig.model_validate(data)


# ---- judging and running points ----------------------------------------------------------------------------
def point_of(spec: PlanSpec, rate: float, value: dict[str, Any], settled: tuple[bool, str] = (True, "")) -> Point:
    """The point an evaluated run makes: feasible when it completed unsaturated, rejected nothing and met both
    P99 SLOs (over its steady window when it has one: length.p99s); otherwise `why` says what failed.
    `settled`: whether the run length no longer changes that verdict, and if not why (length.settled)."""
    s = value["summary"]
    ttft, tpot = p99s(s)
    why = []
    if s["stop_reason"] != "completed":
        why.append(f"overloaded ({s['stop_reason']})")
    elif s["saturated"]:
        why.append(f"saturated ({s['waiting_at_last_arrival']} requests still queued at the last arrival)")
    if s["requests_rejected"]:
        why.append(f"{s['requests_rejected']} requests rejected")
    if not ttft <= spec.slo_ttft_s:
        why.append(f"P99 TTFT {ttft:.3g} s > {spec.slo_ttft_s:g} s")
    if tpot > spec.slo_tpot_s:  # NaN (all one-token outputs) passes
        why.append(f"P99 TPOT {tpot * 1e3:.3g} ms > {spec.slo_tpot_s * 1e3:g} ms")
    return Point(rate, not why, ttft, tpot, "; ".join(why), int(s["requests_total"]),
                 bool(s["steady_state"]["steady"]), settled[0], settled[1])


def slo_ratio(spec: PlanSpec, p: Point) -> float:
    """max(P99 TTFT / SLO, P99 TPOT / SLO) of a point (inf when undefined): how far it is from feasible."""
    r = max(p.p99_ttft_s / spec.slo_ttft_s, (p.p99_tpot_s / spec.slo_tpot_s) if math.isfinite(p.p99_tpot_s) else 0)
    return r if math.isfinite(r) else math.inf


class PointRunner:
    """Runs point configs through the cache and the executor, counting simulations."""

    def __init__(self, executor: Executor, cache: PointCache | None, stats: PlanStats) -> None:
        self.executor, self.cache, self.stats = executor, cache, stats

    def run(self, configs: list[SimConfig]) -> list[dict[str, Any]]:
        keys = [point_key(c) for c in configs] if self.cache is not None else [None] * len(configs)
        out: list[dict[str, Any] | None] = [None] * len(configs)
        todo: dict[str, list[int]] = {}
        for i, key in enumerate(keys):
            hit = self.cache.get(key) if (self.cache is not None and key is not None) else None
            if hit is not None:
                out[i] = hit
                self.stats.cache_hits += 1
            else:
                todo.setdefault(key or f"#{i}", []).append(i)
        order = list(todo)
        results = self.executor.map(evaluate_point, [configs[todo[k][0]] for k in order])
        for k, res in zip(order, results, strict=True):
            self.stats.simulations += 1
            self.stats.sim_wall_s += res.pop("wall_s", 0.0)
            if self.cache is not None and not k.startswith("#"):
                self.cache.put(k, res)
            for i in todo[k]:
                out[i] = res
        return out  # type: ignore[return-value]


__all__ = ["PointRunner", "grid_index", "grid_rate", "index_for_replicas", "overload_guard", "point_config",
           "point_of", "replicas_at", "slo_ratio", "workload_at"]
