"""Ranking a plan's outcomes (feasible by the objective, then the rest by how close they came), the Pareto
front over cost and P99 latency, and why each runner-up lost to the winner."""

from __future__ import annotations

import math
from dataclasses import replace

from roofsim.simulator.planning.result import Outcome
from roofsim.simulator.planning.spec import PlanSpec

# Order of the candidates that are not feasible: the nearest misses first.
_STATUS_ORDER = {"pruned": 0, "slo_unmet": 1, "over_budget": 2, "does_not_fit": 3, "unsupported": 4, "invalid": 5}


def objective_value(spec: PlanSpec, o: Outcome) -> tuple[float, ...]:
    """Sort key of a feasible outcome: the objective, then cost (or GPUs, when cost is the objective)."""
    if spec.objective == "gpus":
        return (o.gpus, o.usd_per_hour)
    if spec.objective == "energy":
        return (o.j_per_token, o.usd_per_hour)
    return (o.usd_per_hour, o.gpus)


def _dominated(o: Outcome, feasible: list[Outcome]) -> bool:
    """Some other feasible outcome is no worse in $/hour, P99 TTFT and P99 TPOT, and better in one."""
    return any(q is not o and q.usd_per_hour <= o.usd_per_hour and q.p99_ttft_s <= o.p99_ttft_s
               and q.p99_tpot_s <= o.p99_tpot_s and (q.usd_per_hour, q.p99_ttft_s, q.p99_tpot_s)
               != (o.usd_per_hour, o.p99_ttft_s, o.p99_tpot_s) for q in feasible)


def rank(spec: PlanSpec, outs: list[Outcome]) -> list[Outcome]:
    """Feasible outcomes by the objective (then name), numbered from 1 and flagged on the Pareto front; then
    the others by status, pruned ones by their objective lower bound, infeasible ones by SLO ratio."""
    feas = sorted((o for o in outs if o.status == "feasible"), key=lambda o: (*objective_value(spec, o),
                                                                              o.candidate.label))
    rest = sorted((o for o in outs if o.status != "feasible"),
                  key=lambda o: (_STATUS_ORDER[o.status], o.objective_lb if o.status == "pruned" else
                                 (o.slo_ratio if math.isfinite(o.slo_ratio) else math.inf), o.candidate.label))
    return [replace(o, rank=i + 1, pareto=not _dominated(o, feas)) for i, o in enumerate(feas)] + rest


def explain_runners_up(spec: PlanSpec, ranked: list[Outcome]) -> list[Outcome]:
    """The ranked outcomes with each feasible runner-up's gap to the winner and its reason, and each pruned
    candidate's objective bound against the winner's (nothing to explain without a winner)."""
    w = ranked[0] if ranked and ranked[0].status == "feasible" else None
    if w is None:
        return ranked
    out: list[Outcome] = []
    for o in ranked:
        if o.status == "feasible" and o is not w:
            gap, reason = _gap(spec, o, w)
            o = replace(o, objective_gap_pct=gap, reason=reason)
        elif o.status == "pruned":
            o = _explain_pruned(spec, o, w)
        out.append(o)
    return out


def _explain_pruned(spec: PlanSpec, o: Outcome, w: Outcome) -> Outcome:
    lb = o.objective_lb
    if lb <= (w.usd_per_hour if spec.objective == "cost" else w.gpus) * (1 + 1e-9):
        return replace(o, objective_gap_pct=0.0, reason=(
            "at best ties the winner's " + ("cost" if spec.objective == "cost" else "GPU count")
            + " and ranks below it on the tie-break (GPUs/cost, then name); search stopped there"))
    if spec.objective == "cost":
        g = 100 * (lb / w.usd_per_hour - 1)
        return replace(o, objective_gap_pct=g, reason=(
            f"at least {g:.0f}% more expensive than the winner (${lb:.2f}/h or more) even at the capacity "
            "its simulations allow; search stopped there"))
    return replace(o, objective_gap_pct=100 * (lb / w.gpus - 1), reason=(
        f"needs at least {lb:.0f} GPUs vs the winner's {w.gpus} even at the capacity its simulations "
        "allow; search stopped there"))


def _gap(spec: PlanSpec, o: Outcome, w: Outcome) -> tuple[float, str]:
    if spec.objective == "gpus":
        if o.gpus > w.gpus:
            return 100 * (o.gpus / w.gpus - 1), f"{o.gpus - w.gpus} more GPUs ({o.gpus} vs {w.gpus})"
        return 100 * (o.usd_per_hour / w.usd_per_hour - 1), (
            f"same {o.gpus} GPUs, {100 * (o.usd_per_hour / w.usd_per_hour - 1):.0f}% more expensive")
    if spec.objective == "energy":
        g = 100 * (o.j_per_token / w.j_per_token - 1)
        return g, f"{g:.0f}% more energy per output token"
    g = 100 * (o.usd_per_hour / w.usd_per_hour - 1)
    if g <= 1e-9:
        return g, "same cost; ranked below by GPU count and name"
    return g, f"{g:.0f}% more expensive (${o.usd_per_hour:.2f}/h vs ${w.usd_per_hour:.2f}/h)"


__all__ = ["explain_runners_up", "objective_value", "rank"]
