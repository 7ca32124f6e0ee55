"""Plans with a probability: the risk of each ranked deployment as the share of ensemble members (kernel error
models, simulator.ensemble) in which it meets the P99 SLOs, and the cheapest deployment meeting them with a stated
confidence ("P99 TTFT <= 1 s with 90 % confidence"), adding replicas to a candidate when its own count falls short.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from roofsim.model.cost import Calibration
from roofsim.model.uncertainty import ErrorModel
from roofsim.simulator.ensemble import run_ensemble
from roofsim.simulator.planning.executors import Executor
from roofsim.simulator.planning.points import point_config, point_of
from roofsim.simulator.planning.result import Outcome, PlanResult
from roofsim.simulator.planning.search import resolve

__all__ = ["DeploymentRisk", "RiskResult", "deployment_risk", "plan_risk", "choose", "DEFAULT_RISK_MEMBERS"]

DEFAULT_RISK_MEMBERS = 16


@dataclass(frozen=True)
class DeploymentRisk:
    """`replicas` x one candidate at the target rate: the share of `members` ensemble members meeting both P99
    SLOs unsaturated (planning.points.point_of, the judge of every plan point) and its cost per hour."""

    label: str
    replicas: int
    gpus: int
    usd_per_hour: float
    members: int
    p_slo: float
    p99_ttft_s: tuple[float, float, float]  # members' min, median, max
    p99_tpot_s: tuple[float, float, float]

    def as_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


@dataclass(frozen=True)
class RiskResult:
    confidence: float
    options: tuple[DeploymentRisk, ...]  # every deployment tried, in plan rank order
    chosen: DeploymentRisk | None  # cheapest with p_slo >= confidence; None: none did

    def as_dict(self) -> dict[str, Any]:
        return {"confidence": self.confidence, "chosen": self.chosen.as_dict() if self.chosen else None,
                "options": [o.as_dict() for o in self.options]}


def _spread(x: Sequence[float]) -> tuple[float, float, float]:
    v = sorted(x)
    return (v[0], v[len(v) // 2], v[-1]) if v else (math.nan, math.nan, math.nan)


def deployment_risk(result: PlanResult, outcome: Outcome, replicas: int, error_model: ErrorModel,
                    members: int = DEFAULT_RISK_MEMBERS, executor: Executor | None = None,
                    native_rate: float | None = None) -> DeploymentRisk:
    """Run `replicas` x outcome's candidate at the spec's target rate (the routed deployment with the SLOs, as
    the planner verifies its winner) as an ensemble drawing from `error_model`; the share meeting the SLOs."""
    spec = result.spec
    ts = resolve(spec)[1]
    if native_rate is None:
        native_rate = ts.native_rate
    # the length of the planner's routed deployment run (search.deployment_requests): the forced length, else the
    # candidate's capacity point's per replica, at most what a point may replay
    n = spec.num_requests if spec.num_requests is not None else min(ts.requests,
                                                                     max(outcome.num_requests, 1) * replicas)
    cfg = point_config(spec, outcome.candidate, spec.rate_per_s, native_rate, n, count=replicas, with_slo=True)
    # a GPU the plan ran on the model defaults (no calibration in spec.calibrations) is perturbed around them
    cfg = cfg.model_copy(update={"replicas": tuple(g if g.calibration is not None else
                                                   g.model_copy(update={"calibration": Calibration()})
                                                   for g in cfg.replicas)})
    ens = run_ensemble(cfg, [error_model] * len(cfg.replicas), members, executor=executor)
    ok = [point_of(spec, spec.rate_per_s, {"summary": s}).feasible for s in ens.members]
    per_replica = outcome.usd_per_hour / outcome.replicas if outcome.replicas else math.nan
    per_gpu = outcome.gpus // outcome.replicas if outcome.replicas else 0
    return DeploymentRisk(outcome.candidate.label, replicas, per_gpu * replicas, per_replica * replicas, members,
                          sum(ok) / len(ok), _spread([float(s["ttft_s"]["p99"]) for s in ens.members]),
                          _spread([float(s["tpot_s"]["p99"]) for s in ens.members]))


def choose(options: Sequence[DeploymentRisk], confidence: float) -> DeploymentRisk | None:
    """The cheapest option (then fewest GPUs, then first tried) whose SLOs hold in >= `confidence` of members."""
    ok = [(o.usd_per_hour, o.gpus, i) for i, o in enumerate(options) if o.p_slo >= confidence]
    return options[min(ok)[2]] if ok else None


def plan_risk(result: PlanResult, error_models: Mapping[str, ErrorModel], confidence: float,
              members: int = DEFAULT_RISK_MEMBERS, top: int = 3, extra_replicas: int = 2,
              executor: Executor | None = None) -> RiskResult:
    """Risk of the plan's `top` feasible deployments and of each with up to `extra_replicas` more replicas
    (stopping at the first count meeting `confidence`), each on the error model of its hardware
    (error_models[hardware id]; a candidate whose GPU has none is skipped); the cheapest meeting `confidence`."""
    if not 0 < confidence < 1:
        raise ValueError(f"confidence={confidence} must be strictly between 0 and 1")
    native_rate = resolve(result.spec)[1].native_rate
    options: list[DeploymentRisk] = []
    for o in result.feasible[:top]:
        em = error_models.get(o.candidate.hardware)
        if em is None:
            continue
        for r in range(o.replicas, o.replicas + extra_replicas + 1):
            options.append(deployment_risk(result, o, r, em, members, executor, native_rate))
            if options[-1].p_slo >= confidence:
                break
    return RiskResult(confidence, tuple(options), choose(options, confidence))
