"""The capacity search: for every candidate the highest request rate one replica sustains within the P99 SLOs
(bisection over simulated grid rates, Vidur-Search style), pruned by analytical bounds and by branch and bound
against the best deployment found so far; then the deployments, their ranking and the winner's verification."""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np

from roofsim.simulator.config import SimConfig
from roofsim.simulator.planning.bounds import Bounds, TraceStats, analytical_bounds
from roofsim.simulator.planning.cache import PointCache
from roofsim.simulator.planning.executors import Executor, make_executor
from roofsim.simulator.planning.length import MAX_PLAN_REQUESTS, ladder, next_length, settled
from roofsim.simulator.planning.points import (
    PointRunner,
    grid_index,
    grid_rate,
    index_for_replicas,
    point_config,
    point_of,
    replicas_at,
    slo_ratio,
    workload_at,
)
from roofsim.simulator.planning.pricing import (
    RankKey,
    deployment_usd_per_hour,
    ranking_key,
    replicas_cap,
    replicas_for,
    usd_per_million_tokens,
)
from roofsim.simulator.planning.ranking import explain_runners_up, rank
from roofsim.simulator.planning.result import Outcome, PlanResult, PlanStats, Point
from roofsim.simulator.planning.spec import Candidate, PlannerError, PlanSpec, candidates
from roofsim.simulator.sessions import run_trace
from roofsim.simulator.workload import Trace, TraceWorkload

START_FRACTION = 0.4  # first rate tried = this x the analytical capacity bound (simulated capacities: 0.2-0.6x)
BOUND_SLACK = 1.25  # the analytical bound is a roofline idealisation; bisection's upper bracket is this x it
STEP_DOWN = math.log(2.5)  # no feasible rate yet and no incumbent: next try is rate / 2.5
STEP_UP = math.log(2.0)  # feasible up to the top of the bracket: next try is rate x 2

ProgressFn = Callable[[int, int], None]


@dataclass
class _Search:
    """Search state of one candidate over rate-grid indices: `lo` feasible, `hi` infeasible (simulated, or the
    analytical bracket while `hi_by_bound`). Count phase: only the replica count ceil(target / capacity) is
    sought, by testing the grid rates where it changes (`index_for_replicas`), and the search stops as soon as
    no rate inside (lo, hi) can change it. Refine phase (`refine`: --exhaustive, and the winner at the end):
    ordinary bisection until hi = lo + 1, i.e. the capacity to the tolerance."""

    cand: Candidate
    bounds: Bounds
    floor: int  # lowest grid index worth simulating
    ub: int | None  # grid index of the upper bracket (bound x slack); None: no finite bound
    lo: int | None = None
    hi: int | None = None
    hi_by_bound: bool = True
    points: dict[int, Point] = field(default_factory=dict)
    done: bool = False
    pruned: bool = False
    refine: bool = False

    def n_min(self, spec: PlanSpec, tol: float) -> int:
        """Fewest replicas still possible: capacity < grid rate hi, so capacity <= grid rate hi - 1."""
        return replicas_at(spec, self.hi - 1, tol) if self.hi is not None else 1

    def n_est(self, spec: PlanSpec, tol: float) -> int:
        """Best guess of the final count (search order): the proven count, else the analytical estimate."""
        if self.lo is not None:
            return replicas_at(spec, self.lo, tol)
        k = grid_index(self.bounds.capacity_est * START_FRACTION, tol)
        return max(self.n_min(spec, tol), replicas_at(spec, k, tol))

    def sorted_points(self) -> tuple[Point, ...]:
        return tuple(self.points[k] for k in sorted(self.points))

    def next_index(self, spec: PlanSpec, tol: float, n_cap: int | None) -> int | None:
        """The grid index to simulate next, or None (and `done`). `n_cap`: most replicas with which this
        candidate can still win (None = no incumbent or no pruning): a candidate with no feasible rate yet is
        tested right at that threshold, so one simulation either prunes it or makes it a contender."""
        if self.done:
            return None
        if self.lo is None:
            return self._first_feasible_index(spec, tol, n_cap)
        if self.refine:
            return self._refine_index(tol)
        return self._count_index(spec, tol, n_cap)

    def _first_feasible_index(self, spec: PlanSpec, tol: float, n_cap: int | None) -> int | None:
        """No feasible rate yet: step down from the bracket's top toward the floor."""
        if self.hi is not None and not self.hi_by_bound and self.hi <= self.floor:
            self.done = True  # infeasible even at the lowest rate worth having
            return None
        if n_cap is not None:
            k = index_for_replicas(spec, n_cap, tol)
        elif self.hi is None or self.hi_by_bound:  # nothing simulated: start below the throughput bound
            k = index_for_replicas(spec, self.n_est(spec, tol), tol)
        else:
            down = max(1, math.ceil(STEP_DOWN / math.log1p(tol)))
            k = index_for_replicas(spec, replicas_at(spec, self.hi - down, tol), tol)
        return max(self.floor, k if self.hi is None else min(k, self.hi - 1))

    def _refine_index(self, tol: float) -> int | None:
        """Ordinary bisection of [lo, hi) down to one grid step."""
        assert self.lo is not None
        if self.hi is None:
            return self.lo + max(1, math.ceil(STEP_UP / math.log1p(tol)))
        if self.hi - self.lo <= 1:
            if self.hi_by_bound:  # the bracket's top is the bound's, never simulated: test it
                return self.hi
            self.done = True
            return None
        return (self.lo + self.hi) // 2

    def _count_index(self, spec: PlanSpec, tol: float, n_cap: int | None) -> int | None:
        """Count-phase bisection over replica counts: the grid rate where the count halves the bracket."""
        assert self.lo is not None
        n_hi = replicas_at(spec, self.lo, tol)
        if n_hi == 1:  # one replica is enough: no higher capacity changes the count
            self.done = True
            return None
        if self.hi is None:
            n = n_hi // 2
        else:
            n_lo = replicas_at(spec, self.hi - 1, tol)
            if n_lo == n_hi:  # no rate inside (lo, hi) changes the count
                if self.hi_by_bound:
                    return self.hi
                self.done = True
                return None
            n = (n_lo + n_hi) // 2
        if n_cap is not None:
            n = min(n, n_cap)
        return index_for_replicas(spec, n, tol)

    def record(self, k: int, p: Point) -> None:
        # Proposals lie inside (lo, hi), or at hi while that is only the bound's bracket.
        self.points[k] = p
        if p.feasible:
            self.lo = k if self.lo is None else max(self.lo, k)
            if self.hi is not None and self.hi <= self.lo:  # feasible at the bound's bracket: it was no bound
                self.hi, self.hi_by_bound = None, False
        else:
            self.hi = k if (self.hi is None or self.hi_by_bound) else min(self.hi, k)
            self.hi_by_bound = False

    def refine_step(self, spec: PlanSpec, tol: float) -> list[tuple[_Search, int]]:
        """Switch to (or go on with) the refine phase; the next proposal, if any."""
        self.refine, self.done = True, False
        k = self.next_index(spec, tol, None)
        return [] if k is None else [(self, k)]


@dataclass
class _Plan:
    """What the phases of one plan share: the resolved spec, the requests' statistics, the point runner, the
    outcomes decided so far and the live searches."""

    spec: PlanSpec
    ts: TraceStats
    cands: list[Candidate]
    runner: PointRunner
    stats: PlanStats
    progress: ProgressFn | None
    outcomes: dict[Candidate, Outcome] = field(default_factory=dict)
    searches: list[_Search] = field(default_factory=list)
    done_count: int = 0

    @property
    def tol(self) -> float:
        return self.spec.tolerance

    def tick(self) -> None:
        if self.progress is not None:
            self.progress(self.done_count, len(self.cands))

    def config(self, cand: Candidate, rate: float, num_requests: int, count: int = 1,
               with_slo: bool = False) -> SimConfig:
        return point_config(self.spec, cand, rate, self.ts.native_rate, num_requests, count, with_slo)

    def deployment_requests(self, s: _Search, replicas: int) -> int:
        """Length of the routed deployment run: the forced length, else the winner's capacity point's per
        replica (at most the most a point may replay)."""
        if self.spec.num_requests is not None:
            return self.spec.num_requests
        assert s.lo is not None
        return min(self.ts.requests, s.points[s.lo].num_requests * replicas)

    def run_round(self, proposals: list[tuple[_Search, int]], loads: Sequence[tuple[_Search, float]] = (),
                  extra: Sequence[SimConfig] = ()
                  ) -> tuple[list[tuple[Point, dict[str, Any]]], list[dict[str, Any]]]:
        """Simulate the proposals (recorded in their searches), the points `loads` (search, rate) and the
        `extra` configs at once. Each point starts at its candidate's first length and, when the planner
        chooses the lengths, is run again at twice the length while its verdict still depends on it
        (length.next_length): all pending points go out together each time. Returns the loads' points and
        summaries (the last run of each) and `extra`'s values."""
        self.stats.rounds += 1
        spec, slo = self.spec, (self.spec.slo_ttft_s, self.spec.slo_tpot_s)
        forced = spec.num_requests is not None
        items = [(s, grid_rate(k, self.tol)) for s, k in proposals] + list(loads)
        runs: list[list[tuple[int, dict[str, Any]]]] = [[] for _ in items]
        todo = {i: s.bounds.start_requests for i, (s, _) in enumerate(items)}
        extra_values: list[dict[str, Any]] | None = None
        while todo or extra_values is None:
            idx = list(todo)
            values = self.runner.run([self.config(items[i][0].cand, items[i][1], todo[i]) for i in idx]
                                     + (list(extra) if extra_values is None else []))
            if extra_values is None:
                extra_values = values[len(idx):]
            for i, value in zip(idx, values, strict=False):
                runs[i].append((todo.pop(i), value["summary"]))
                nxt = None if forced else next_length(slo, runs[i], self.ts.requests)
                if nxt is not None:
                    todo[i] = nxt
        points = [point_of(spec, rate, {"summary": r[-1][1]}, settled(slo, r, forced))
                  for (_, rate), r in zip(items, runs, strict=True)]
        for (s, k), pt in zip(proposals, points, strict=False):
            s.record(k, pt)
        load_summaries = [r[-1][1] for r in runs[len(proposals):]]
        return list(zip(points[len(proposals):], load_summaries, strict=True)), extra_values


def plan(spec: PlanSpec, executor: Executor | None = None, cache: PointCache | None = None,
         progress: ProgressFn | None = None) -> PlanResult:
    """Answer a capacity-planning question. Same spec -> same result on any executor (every point depends only
    on its config and seed; the search advances in rounds whose decisions depend only on results)."""
    t0 = time.perf_counter()
    own = executor is None
    ex: Executor = executor if executor is not None else make_executor()
    stats = PlanStats(workers=ex.workers)
    try:
        return _plan(spec, ex, cache, progress, stats, t0)
    finally:
        if own:
            ex.close()


def resolve(spec: PlanSpec) -> tuple[PlanSpec, TraceStats]:
    """The spec with defaults that depend on the workload filled in (max_batched_tokens), and the statistics of
    the requests every point replays (lengths do not depend on the rate: same seed, time-scaled arrivals)."""
    wl = spec.workload
    most = spec.num_requests if spec.num_requests is not None else MAX_PLAN_REQUESTS
    probe = _probe(spec, most)
    if isinstance(wl, TraceWorkload):
        probe = probe.head(most)
    if len(probe) < 2:
        raise PlannerError(f"the workload has {len(probe)} request(s); a plan needs at least 2")
    ts = TraceStats.of(probe)
    if spec.num_requests is None and not isinstance(wl, TraceWorkload):
        # a synthetic workload of n requests draws its own lengths: the longest prompt and request of every
        # length a point may run (the ladder below `most`) must fit the budget and the KV cache
        shorter = [TraceStats.of(_probe(spec, n)) for n in ladder(most)[:-1]]
        ts = replace(ts, max_input=max(ts.max_input, *(t.max_input for t in shorter)),
                     max_total=max(ts.max_total, *(t.max_total for t in shorter)))
    if isinstance(wl, TraceWorkload) and not (math.isfinite(ts.native_rate) and ts.native_rate > 0):
        raise PlannerError(f"trace {wl.path} has no arrival rate to scale (all arrivals at one instant)")
    if spec.max_batched_tokens is None and spec.engine is None:  # an engine brings its own budget per GPU
        spec = spec.model_copy(update={"max_batched_tokens": max(8192, -(-ts.max_input // 1024) * 1024)})
    return spec, ts


def _probe(spec: PlanSpec, n: int) -> Trace:
    """The requests of a point of n requests (their lengths do not depend on the rate: same seed, time-scaled
    arrivals); a trace workload: the whole trace."""
    wl = spec.workload
    probe_wl = wl if isinstance(wl, TraceWorkload) else workload_at(spec, 1.0, 1.0, n)
    probe_cfg = SimConfig.model_validate({"workload": probe_wl, "replicas": [{"model": "x", "hardware": "x"}]})
    return run_trace(probe_cfg.workload, np.random.default_rng(spec.seed))


def _plan(spec: PlanSpec, ex: Executor, cache: PointCache | None, progress: ProgressFn | None,
          stats: PlanStats, t0: float) -> PlanResult:
    """The phases in order: prune by the analytical bounds; count-phase bisection under branch and bound;
    settle the searches; size the feasible deployments; rank; refine (and verify) the winner; explain why the
    runners-up lost."""
    spec, ts = resolve(spec)
    p = _Plan(spec, ts, candidates(spec), PointRunner(ex, cache, stats), stats, progress)
    stats.candidates = len(p.cands)
    _prune_by_bounds(p)
    _search_counts(p)
    feasible = _settle_searches(p)
    early, winner_metrics = _size_deployments(p, feasible)
    ranked = rank(spec, [p.outcomes[c] for c in p.cands])
    winner_metrics = _settle_winner(p, ranked, early, winner_metrics)
    ranked = explain_runners_up(spec, _with_final_points(p, ranked))
    by: dict[str, int] = {}
    for o in ranked:
        by[o.status] = by.get(o.status, 0) + 1
    stats.by_status = by
    stats.wall_s = time.perf_counter() - t0
    return PlanResult(spec, tuple(ranked), stats, winner_metrics)


# ---- phase 1: prune by the analytical bounds ---------------------------------------------------------------
def _prune_by_bounds(p: _Plan) -> None:
    """Decide without simulation every candidate the roofline bounds rule out (layout, dtype, memory, latency
    floor, too many replicas needed even at the capacity bound); start a search for each of the others,
    bracketed between the lowest rate worth having and the bound (x BOUND_SLACK)."""
    spec, tol = p.spec, p.tol
    min_rate = spec.rate_per_s / spec.max_replicas
    for c in p.cands:
        b = analytical_bounds(spec, c, p.ts)
        if b.status is None:
            floor_rate = min_rate
            if spec.max_gpus is not None:
                floor_rate = max(floor_rate, spec.rate_per_s / (spec.max_gpus // c.gpus))
            if b.capacity_ub * BOUND_SLACK < floor_rate:
                b = replace(b, status="over_budget", reason=(
                    f"at most {b.capacity_ub:.3g} req/s per replica (analytical bound): more than "
                    f"{spec.rate_per_s / floor_rate:.0f} replicas needed"))
        if b.status is not None:
            ratio = max(b.ttft_lb_s / spec.slo_ttft_s, b.tpot_lb_s / spec.slo_tpot_s) if b.status == "slo_unmet" \
                else math.nan
            p.outcomes[c] = Outcome(c, b.status, b.reason, capacity_ub=b.capacity_ub, slo_ratio=ratio)
            p.done_count += 1
            continue
        if math.isfinite(b.capacity_ub):
            ub = grid_index(b.capacity_ub * BOUND_SLACK, tol)
            p.searches.append(_Search(c, b, grid_index(floor_rate, tol), ub, hi=ub + 1))
        else:  # no bound: the search brackets the capacity by simulation alone
            p.searches.append(_Search(c, b, grid_index(floor_rate, tol), None, hi=None, hi_by_bound=False))
    p.tick()
    p.stats.simulated_candidates = len(p.searches)


# ---- phases 2 and 3: count-phase bisection under branch and bound ------------------------------------------
def _search_counts(p: _Plan) -> None:
    """Round by round: branch and bound prunes against the incumbent, then up to candidates_per_round live
    searches each propose one rate (count-phase bisection) and all run at once, until every search is done or
    pruned. --exhaustive refines every search to the tolerance and prunes nothing."""
    prune = not p.spec.exhaustive and p.spec.objective in ("cost", "gpus")
    if p.spec.exhaustive:
        for s in p.searches:
            s.refine = True
    while True:
        caps = _branch_and_bound(p, prune)
        proposals = _propose(p, caps)
        n_done = len(p.cands) - len(p.searches) + sum(1 for s in p.searches if s.done or s.pruned)
        if n_done != p.done_count:
            p.done_count = n_done
            p.tick()
        if not proposals:
            assert all(s.done or s.pruned for s in p.searches)
            return
        p.run_round(proposals)


def _incumbent(spec: PlanSpec, searches: list[_Search], tol: float) -> RankKey | None:
    """The best ranking key among candidates with a feasible rate (an upper bound of the winner's key)."""
    best = None
    for s in searches:
        if s.lo is None or s.pruned:
            continue
        n = replicas_at(spec, s.lo, tol)
        if spec.max_gpus is not None and n * s.cand.gpus > spec.max_gpus:
            continue
        k = ranking_key(spec, s.cand, n)
        best = k if best is None or k < best else best
    return best


def _branch_and_bound(p: _Plan, prune: bool) -> dict[int, int | None]:
    """Prune every live search that cannot rank above the incumbent even with the fewest replicas its bracket
    allows; per live search (by id), the most replicas with which it could still win (None: no incumbent)."""
    inc = _incumbent(p.spec, p.searches, p.tol) if prune else None
    caps: dict[int, int | None] = {}
    for s in p.searches:
        if s.done or s.pruned:
            continue
        n_cap = replicas_cap(p.spec, s.cand, inc) if inc is not None else None
        caps[id(s)] = n_cap
        if n_cap is not None and n_cap < s.n_min(p.spec, p.tol):  # n_cap is None exactly when inc is None
            s.pruned = True
    return caps


def _propose(p: _Plan, caps: dict[int, int | None]) -> list[tuple[_Search, int]]:
    """The rates to simulate this round. Best first: the searches whose estimated deployment ranks best go
    first, a fixed number per round (not tied to the worker count, so any executor takes the same path); the
    incumbent they produce prunes the rest, most of them before or after one simulation at their threshold."""
    spec, tol = p.spec, p.tol
    live = [s for s in p.searches if not s.done and not s.pruned]
    proposals: list[tuple[_Search, int]] = []
    for s in sorted(live, key=lambda s: (ranking_key(spec, s.cand, s.n_est(spec, tol)),
                                         ranking_key(spec, s.cand, s.n_min(spec, tol)))):
        if len(proposals) >= spec.candidates_per_round:
            break
        k = s.next_index(spec, tol, caps[id(s)])
        if k is not None:
            proposals.append((s, k))
    return proposals


# ---- after the search: outcomes, deployments, the winner ---------------------------------------------------
def _settle_searches(p: _Plan) -> list[tuple[_Search, int, float]]:
    """Outcomes of the searched candidates that are not feasible deployments (pruned, SLO unmet at every rate,
    over the GPU budget); the others as (search, replicas, $/hour)."""
    spec, tol = p.spec, p.tol
    feasible: list[tuple[_Search, int, float]] = []
    for s in p.searches:
        c, pts, ub = s.cand, s.sorted_points(), s.bounds.capacity_ub
        if s.pruned:
            lb = ranking_key(spec, c, s.n_min(spec, tol))[0]  # capacity <= grid rate hi - 1
            p.outcomes[c] = Outcome(c, "pruned", "", capacity_ub=ub, points=pts, objective_lb=lb)
        elif s.lo is None:
            nearest = min(pts, key=lambda q: slo_ratio(spec, q)) if pts else None
            why = nearest.why if nearest else "no rate tried"
            p.outcomes[c] = Outcome(c, "slo_unmet", f"SLO unmet at every rate tried down to "
                                    f"{grid_rate(s.floor, tol):.3g} req/s (best: {nearest.rate_per_s:.3g} req/s: "
                                    f"{why})" if nearest else why, capacity_ub=ub, points=pts,
                                    slo_ratio=slo_ratio(spec, nearest) if nearest else math.nan)
        else:
            cap = grid_rate(s.lo, tol)
            reps = replicas_for(spec, cap)
            if spec.max_gpus is not None and reps * c.gpus > spec.max_gpus:
                p.outcomes[c] = Outcome(c, "over_budget", f"needs {reps} replicas x {c.gpus} GPUs > max_gpus="
                                        f"{spec.max_gpus}", capacity_ub=ub, capacity_per_s=cap, points=pts)
            else:
                feasible.append((s, reps, deployment_usd_per_hour(c, reps)))
    return feasible


def _size_deployments(p: _Plan, feasible: list[tuple[_Search, int, float]]
                      ) -> tuple[_Search | None, dict[str, Any] | None]:
    """One round: each feasible deployment's replica simulated at its per-replica load (latency, energy), the
    likely winner's first refinement step and (verify_winner) its routed deployment at the target rate.
    Returns the early winner (objectives cost and gpus: known before the load runs) and its metrics."""
    spec = p.spec
    early: tuple[_Search, int] | None = None
    if feasible and spec.objective != "energy":
        s, reps, _ = min(feasible, key=lambda t: ranking_key(spec, t[0].cand, t[1]))
        early = (s, reps)
    load_points = [(s, spec.rate_per_s / reps) for s, reps, _ in feasible]
    verify_cfgs = []
    if early is not None and spec.verify_winner:
        verify_cfgs = [p.config(early[0].cand, spec.rate_per_s, p.deployment_requests(*early), count=early[1],
                                with_slo=True)]
    winner_metrics = None
    step = early[0].refine_step(spec, p.tol) if early else []
    loads: list[tuple[Point, dict[str, Any]]] = []
    if load_points or step:
        loads, extra = p.run_round(step, load_points, verify_cfgs)
        winner_metrics = extra[-1]["summary"] if verify_cfgs else None
    out_rate = spec.rate_per_s * p.ts.mean_output  # output tokens/s of the deployment
    for (s, reps, usd), (load, summ) in zip(feasible, loads, strict=True):
        assert s.lo is not None
        c = s.cand
        p.outcomes[c] = Outcome(
            c, "feasible", "", capacity_ub=s.bounds.capacity_ub, capacity_per_s=grid_rate(s.lo, p.tol),
            replicas=reps, gpus=reps * c.gpus, usd_per_hour=usd,
            usd_per_million_tokens=usd_per_million_tokens(usd, out_rate),
            j_per_token=float(summ["energy_per_output_token_j"]), load_per_replica_s=spec.rate_per_s / reps,
            p99_ttft_s=load.p99_ttft_s, p99_tpot_s=load.p99_tpot_s)
    return (early[0] if early else None), winner_metrics


def _settle_winner(p: _Plan, ranked: list[Outcome], ws: _Search | None,
                   winner_metrics: dict[str, Any] | None) -> dict[str, Any] | None:
    """Refine the winner's capacity to the tolerance; with objective energy the winner is known only from the
    load runs, so it is verified here. Returns the winning deployment's metrics."""
    spec = p.spec
    if ws is None and ranked and ranked[0].status == "feasible":
        ws = next(s for s in p.searches if s.cand == ranked[0].candidate)
        step = ws.refine_step(spec, p.tol)
        if spec.verify_winner:
            verify = p.config(ws.cand, spec.rate_per_s, p.deployment_requests(ws, ranked[0].replicas),
                              count=ranked[0].replicas, with_slo=True)
            winner_metrics = p.run_round(step, extra=[verify])[1][0]["summary"]
        elif step:
            p.run_round(step)
    while ws is not None and (step := ws.refine_step(spec, p.tol)):
        p.run_round(step)
    return winner_metrics


def _with_final_points(p: _Plan, ranked: list[Outcome]) -> list[Outcome]:
    """Every searched outcome with all its points; feasible and over-budget ones with the capacity and the
    bracket's top as they stand now (the winner's capacity may just have been refined)."""
    searches = {s.cand: s for s in p.searches}
    out = []
    for o in ranked:
        s = searches.get(o.candidate)
        if s is not None:
            deciding = [s.points[k] for k in (s.lo, s.hi) if k is not None and k in s.points]
            o = replace(o, points=s.sorted_points(), num_requests=max((q.num_requests for q in deciding), default=0),
                        steady=all(q.settled for q in deciding) if deciding else None,
                        unsteady_why="; ".join(f"at {q.rate_per_s:.3g} req/s: {q.unsettled_why}"
                                               for q in deciding if not q.settled))
            if o.status in ("feasible", "over_budget"):
                assert s.lo is not None
                o = replace(o, capacity_per_s=grid_rate(s.lo, p.tol), capacity_below_per_s=grid_rate(s.hi, p.tol)
                            if s.hi is not None and not s.hi_by_bound else math.inf)
        out.append(o)
    return out


__all__ = ["BOUND_SLACK", "START_FRACTION", "ProgressFn", "plan", "resolve"]
