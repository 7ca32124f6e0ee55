"""planning.risk: the share of ensemble members meeting the SLOs per deployment, and a plan with a stated confidence
choosing a more conservative deployment than the median plan on a constructed error model."""

from __future__ import annotations

import math

import pytest

from roofsim.model.uncertainty import LEVELS, ErrorGroup, ErrorModel
from roofsim.simulator.planning import PlanSpec, SerialExecutor, plan
from roofsim.simulator.planning.risk import DeploymentRisk, choose, plan_risk


def _opt(label: str, replicas: int, usd: float, p: float) -> DeploymentRisk:
    return DeploymentRisk(label, replicas, replicas, usd, 8, p, (0, 0, 0), (0, 0, 0))


def test_choose_the_cheapest_deployment_meeting_the_confidence() -> None:
    opts = [_opt("a", 1, 3.0, 0.5), _opt("a", 2, 6.0, 0.875), _opt("b", 1, 5.0, 0.9), _opt("a", 3, 9.0, 1.0)]
    assert choose(opts, 0.9) is opts[2]
    assert choose(opts, 0.5) is opts[0]
    assert choose(opts[:2], 0.9) is None


def _bimodal() -> ErrorModel:
    """Every kernel either as predicted (u >= 0.5) or 4x slower (u <= 0.45): log(pred / measured) = -log 4."""
    q = tuple(-math.log(4.0) if lv <= 0.45 else 0.0 for lv in LEVELS)
    return ErrorModel(residuals="constructed", groups=(ErrorGroup(key="*/*/*", n=100, log_ratio=q),))


def test_confidence_picks_a_more_conservative_deployment() -> None:
    """One replica serves 60 req/s within the SLOs at the point prediction (the median plan); in members 4x slower
    it saturates, so 90 % confidence needs more replicas."""
    spec = PlanSpec(model="llama-3.1-8b", workload={"kind": "named", "name": "chat-short"}, rate_per_s=60,
                    slo_ttft_s=1.0, slo_tpot_s=0.1, tp=(1,), num_requests=100, slo_confidence=0.9)
    result = plan(spec, SerialExecutor())
    w = result.winner
    assert w is not None and w.replicas == 1
    risk = plan_risk(result, {"h100-sxm": _bimodal()}, 0.9, members=6, executor=SerialExecutor())
    first = risk.options[0]
    assert first.replicas == 1 and first.p_slo < 0.9  # the median plan's deployment fails in the slow members
    assert risk.chosen is not None and risk.chosen.replicas > w.replicas and risk.chosen.p_slo >= 0.9
    assert risk.chosen.usd_per_hour == pytest.approx(w.usd_per_hour * risk.chosen.replicas)
    with pytest.raises(ValueError, match="confidence=1"):
        plan_risk(result, {}, 1.0)
