"""`roofsim plan --slo-confidence P`: the risk of the plan's deployments (simulator.planning.risk) on each
candidate GPU's kernel error model, and its table."""

from __future__ import annotations

from roofsim.app.common import print_table
from roofsim.hardware_specs.errors import InputError
from roofsim.simulator.planning import Executor, PlanResult
from roofsim.simulator.planning.risk import DEFAULT_RISK_MEMBERS, RiskResult, plan_risk
from roofsim.validation.profiles import error_model_for

__all__ = ["plan_risk_for", "print_risk"]


def plan_risk_for(result: PlanResult, executor: Executor) -> RiskResult:
    """planning.risk.plan_risk with each candidate GPU's kernel error model (validation.profiles.error_model_for;
    a GPU without one is left out of the risk table)."""
    spec = result.spec
    ems = {}
    for hw in {o.candidate.hardware for o in result.feasible}:
        try:
            ems[hw] = error_model_for(hw)[0]
        except InputError:
            pass
    assert spec.slo_confidence is not None
    return plan_risk(result, ems, spec.slo_confidence, spec.risk_members or DEFAULT_RISK_MEMBERS, executor=executor)


def print_risk(risk: RiskResult) -> None:
    print(f"\nRISK: share of {risk.options[0].members if risk.options else 0} ensemble members (kernel error models) "
          f"meeting both P99 SLOs; required: {risk.confidence:.0%}")
    print_table([[o.label, str(o.replicas), str(o.gpus), f"{o.usd_per_hour:.2f}", f"{o.p_slo:.0%}",
                  "{:.3g} / {:.3g} / {:.3g}".format(*o.p99_ttft_s),
                  "{:.3g} / {:.3g} / {:.3g}".format(*(1e3 * x for x in o.p99_tpot_s))] for o in risk.options],
                ["deployment", "replicas", "GPUs", "$/hour", "P(SLO)", "P99 TTFT s min/med/max",
                 "P99 TPOT ms min/med/max"])
    c = risk.chosen
    print(f"WITH {risk.confidence:.0%} CONFIDENCE: {c.replicas} x {c.label} = {c.gpus} GPUs, ${c.usd_per_hour:.2f}/hour "
          f"(SLOs met in {c.p_slo:.0%} of members)" if c else
          f"NO DEPLOYMENT TRIED MEETS THE SLOs WITH {risk.confidence:.0%} CONFIDENCE")
