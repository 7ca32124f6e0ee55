"""What a plan returns: per candidate its simulated points and outcome (status, capacity, replicas, cost,
latency, rank, why it lost), the ranked outcomes with the Pareto front, and search statistics."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

from roofsim.simulator.planning.spec import Candidate, PlanSpec, Status


@dataclass(frozen=True)
class Point:
    """One simulated (candidate, rate)."""

    rate_per_s: float
    feasible: bool
    p99_ttft_s: float
    p99_tpot_s: float
    why: str  # '' when feasible
    num_requests: int = 0  # of the run judged (the last of the lengths tried)
    steady: bool = False  # that run reached a steady state (simulator/steady.py)
    settled: bool = True  # its verdict no longer changes with the run length (planning/length.py)
    unsettled_why: str = ""

    def as_dict(self) -> dict[str, Any]:
        return {"rate_per_s": self.rate_per_s, "feasible": self.feasible, "p99_ttft_s": self.p99_ttft_s,
                "p99_tpot_s": self.p99_tpot_s, "why": self.why, "num_requests": self.num_requests,
                "steady": self.steady, "settled": self.settled, "unsettled_why": self.unsettled_why}


@dataclass(frozen=True)
class Outcome:
    """What the plan found for one candidate."""

    candidate: Candidate
    status: Status
    reason: str = ""
    capacity_ub: float = math.nan
    capacity_per_s: float = math.nan  # highest feasible grid rate found (a rate this replica is proven to sustain)
    # lowest grid rate found infeasible (inf: none): the capacity lies in [capacity_per_s, capacity_below_per_s).
    # = capacity x (1 + tolerance) for the winner and with --exhaustive; other feasible candidates stop once the
    # replica count is known, so theirs can be a few grid steps wider.
    capacity_below_per_s: float = math.nan
    replicas: int = 0
    gpus: int = 0
    usd_per_hour: float = math.nan
    usd_per_million_tokens: float = math.nan
    j_per_token: float = math.nan
    load_per_replica_s: float = math.nan
    p99_ttft_s: float = math.nan  # at the deployment's per-replica load (target / replicas)
    p99_tpot_s: float = math.nan
    points: tuple[Point, ...] = ()
    rank: int = 0
    pareto: bool = False
    objective_gap_pct: float = math.nan  # vs the winner
    slo_ratio: float = math.nan  # best max(P99 TTFT / SLO, P99 TPOT / SLO) seen (infeasible candidates)
    objective_lb: float = math.nan  # pruned candidates: objective lower bound when pruned
    # The points that decide its capacity (highest feasible, lowest infeasible rate simulated): the most
    # requests one of them ran, whether all their verdicts are settled (steady and stable, or overloaded:
    # planning/length.py; None = nothing simulated) and, if not, why.
    num_requests: int = 0
    steady: bool | None = None
    unsteady_why: str = ""

    def as_dict(self) -> dict[str, Any]:
        d = {k: getattr(self, k) for k in ("status", "reason", "capacity_ub", "capacity_per_s",
                                           "capacity_below_per_s", "replicas", "gpus",
                                           "usd_per_hour", "usd_per_million_tokens", "j_per_token",
                                           "load_per_replica_s", "p99_ttft_s", "p99_tpot_s", "rank", "pareto",
                                           "objective_gap_pct", "slo_ratio", "objective_lb", "num_requests",
                                           "steady", "unsteady_why")}
        return {"candidate": self.candidate.as_dict(), **d, "points": [p.as_dict() for p in self.points]}


@dataclass
class PlanStats:
    candidates: int = 0
    simulated_candidates: int = 0
    simulations: int = 0
    cache_hits: int = 0
    rounds: int = 0
    sim_wall_s: float = 0.0
    wall_s: float = 0.0
    workers: int = 1
    by_status: dict[str, int] = field(default_factory=dict)


@dataclass(frozen=True)
class PlanResult:
    spec: PlanSpec
    outcomes: tuple[Outcome, ...]  # ranked: feasible by objective, then pruned, then infeasible
    stats: PlanStats
    winner_metrics: dict[str, Any] | None = None  # the winning deployment, all replicas, simulated at the target rate

    @property
    def winner(self) -> Outcome | None:
        return self.outcomes[0] if self.outcomes and self.outcomes[0].status == "feasible" else None

    @property
    def feasible(self) -> list[Outcome]:
        return [o for o in self.outcomes if o.status == "feasible"]

    @property
    def pareto(self) -> list[Outcome]:
        return [o for o in self.outcomes if o.pareto]

    @property
    def unsteady(self) -> list[Outcome]:
        """Simulated candidates whose capacity rests on a verdict that could change with the run length."""
        return [o for o in self.outcomes if o.steady is False]

    def closest(self, n: int = 5) -> list[Outcome]:
        """Infeasible candidates that came nearest to the SLOs (smallest latency / SLO ratio)."""
        near = [o for o in self.outcomes if o.status == "slo_unmet" and math.isfinite(o.slo_ratio)]
        return sorted(near, key=lambda o: (o.slo_ratio, o.candidate.label))[:n]

    def as_dict(self) -> dict[str, Any]:
        w = self.winner
        spec = self.spec.model_dump(mode="json", exclude={"calibrations"})
        spec["calibrations"] = {hw: c.name for hw, c in self.spec.calibrations.items()}  # the profiles by name
        return {"spec": spec,
                "winner": w.as_dict() if w else None,
                "winner_metrics": self.winner_metrics,
                "outcomes": [o.as_dict() for o in self.outcomes],
                "pareto": [o.candidate.label for o in self.pareto],
                "closest": [o.candidate.label for o in self.closest()] if w is None else [],
                "unsteady": [o.candidate.label for o in self.unsteady],
                "stats": self.stats.__dict__}


__all__ = ["Outcome", "PlanResult", "PlanStats", "Point"]
