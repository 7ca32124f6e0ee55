"""State of the capacity-planning page: its widgets as one table of session key -> PlanSpec dump path (one
PlanSpec.model_validate builds the question) and the winner, ranked table and messages it shows."""

from __future__ import annotations

from typing import Any, get_args

from roofsim.app.dashboard.state.common import CHECKPOINT, KV_CHOICES, MAX_SEED, WEIGHT_OR_CHECKPOINT
from roofsim.app.dashboard.state.form import NEVER, SKIP, Values, Widget, build_dict, defaults, is_, restore
from roofsim.hardware_specs.catalog import hardware_ids
from roofsim.model.loader import model_ids

# The planner is moving to roofsim.simulator.planning (another branch); the import follows at merge.
from roofsim.simulator.planning import Objective, PlanSpec
from roofsim.simulator.workload import TraceFormat, named_workloads

SOURCES = ("built-in", "upload a trace")
_built_in, _upload = is_("pl_source", SOURCES[0]), is_("pl_source", SOURCES[1])


# One row per widget: session key, PlanSpec dump path, element, label, default [, options, when, converters, kw].
# The default sweep (2 GPUs x TP 1, 2; 200 requests a point) answers in seconds.
PLAN_WIDGETS: tuple[Widget, ...] = (
    Widget("pl_model", "model", "selectbox", "Model", "Llama-3.1-8B", model_ids),
    Widget("pl_source", "workload.kind", "radio", "Workload", SOURCES[0], SOURCES,
           to_cfg=lambda s: "named" if s == SOURCES[0] else "trace",
           from_cfg=lambda k: {"named": SOURCES[0], "trace": SOURCES[1]}.get(k, SKIP), kw={"horizontal": True}),
    Widget("pl_workload", "workload.name", "selectbox", "Built-in workload", "conversation", named_workloads,
           when=_built_in),
    Widget("pl_trace_format", "workload.format", "selectbox", "Trace format", "auto", get_args(TraceFormat),
           when=_upload),
    # an uploaded trace replaces the built-in workload (rate-scaled to each tried rate)
    Widget("pl_trace_path", "workload.path", "", "", "", when=_upload, **NEVER),
    Widget("pl_rate", "rate_per_s", "number_input", "Target rate (req/s)", 8.0,
           kw={"min_value": 0.0, "step": 1.0, "format": "%g"}),
    Widget("pl_slo_ttft", "slo_ttft_s", "number_input", "P99 TTFT SLO (s)", 1.0,
           kw={"min_value": 0.0, "format": "%.3f"}),
    Widget("pl_slo_tpot", "slo_tpot_s", "number_input", "P99 TPOT SLO (s)", 0.1,
           kw={"min_value": 0.0, "format": "%.4f"}),
    Widget("pl_objective", "objective", "radio", "Minimise", "cost", get_args(Objective), kw={"horizontal": True}),
    Widget("pl_hardware", "hardware", "multiselect", "Hardware", ["h100-sxm", "a100-sxm-80gb"], hardware_ids),
    Widget("pl_tp", "tp", "multiselect", "TP degrees", [1, 2], (1, 2, 4, 8)),
    Widget("pl_weights", "weight_dtypes", "multiselect", "Weight dtypes", [CHECKPOINT], WEIGHT_OR_CHECKPOINT),
    Widget("pl_kv", "kv_dtypes", "multiselect", "KV-cache dtypes", ["auto"], KV_CHOICES),
    Widget("pl_requests", "num_requests", "number_input", "Requests per point", 200,
           kw={"min_value": 10, "step": 100}),
    Widget("pl_tolerance", "tolerance", "number_input", "Capacity tolerance", 0.1,
           kw={"min_value": 0.0, "max_value": 1.0, "step": 0.05}),
    Widget("pl_max_gpus", "max_gpus", "number_input", "GPU budget (0 = none)", 0,
           to_cfg=lambda n: n or None, absent=0, kw={"min_value": 0}),
    Widget("pl_seed", "seed", "number_input", "Seed", 0, kw={"min_value": 0, "max_value": MAX_SEED}),
    Widget("pl_exhaustive", "exhaustive", "checkbox", "Simulate every candidate (fuller Pareto front, slower)",
           False),
)


def plan_spec(values: Values | None = None, **changes: Any) -> PlanSpec:
    """The PlanSpec (what `roofsim plan` runs) the widget values describe: one PlanSpec.model_validate."""
    v = defaults(PLAN_WIDGETS) | dict(values or {}) | changes
    for w in PLAN_WIDGETS:
        if w.widget == "multiselect" and not v[w.key]:
            raise ValueError(f"pick at least one value for {w.path.replace('_', ' ')}")
    return PlanSpec.model_validate(build_dict(PLAN_WIDGETS, v))


def restore_question(spec: PlanSpec) -> tuple[dict[str, Any], list[str]]:
    """(widget values, the fields the page cannot show) of a PlanSpec."""
    return restore(PLAN_WIDGETS, spec, plan_spec)

def winner_kpis(result: Any) -> dict[str, str]:
    """KPI cards of the winning deployment (empty when nothing meets the SLOs); tests parse these strings."""
    w = result.winner
    if w is None:
        return {}
    return {
        "Winner": w.candidate.label,
        "Replicas": f"{w.replicas}",
        "GPUs": f"{w.gpus}",
        "$ / hour": f"{w.usd_per_hour:.2f}",
        "$ / 1M output tokens": f"{w.usd_per_million_tokens:.3f}",
        "J / output token": f"{w.j_per_token:.3g}",
        "Capacity / replica": f"{w.capacity_per_s:.3g} req/s",
        "P99 TTFT at load": f"{w.p99_ttft_s * 1e3:.1f} ms",
        "P99 TPOT at load": f"{w.p99_tpot_s * 1e3:.2f} ms",
    }


def plan_table(result: Any) -> list[dict[str, str]]:
    """app.plan_report's ranked table (the CLI's columns) as records for st.dataframe."""
    from roofsim.app.plan_report import HEADERS, table_rows  # noqa: PLC0415

    return [dict(zip(HEADERS, row, strict=True)) for row in table_rows(result)]


def runner_up_reasons(result: Any, limit: int = 8) -> list[str]:
    """Why the next candidates lost to the winner (the planner's own reasons), best first."""
    w = result.winner
    out = []
    for o in result.outcomes:
        if o is w or not o.reason:
            continue
        out.append(f"{o.candidate.label} ({o.status.replace('_', ' ')}): {o.reason}")
        if len(out) >= limit:
            break
    return out


def closest_message(result: Any) -> str:
    """The message shown when no candidate meets the SLOs: the nearest candidates and how far off they were."""
    near = result.closest()
    lines = [f"No candidate meets P99 TTFT <= {result.spec.slo_ttft_s:g} s and P99 TPOT <= "
             f"{result.spec.slo_tpot_s * 1e3:g} ms at {result.spec.rate_per_s:g} req/s."]
    if near:
        lines.append("Closest candidates (best P99 latency / SLO ratio seen):")
        lines += [f"- {o.candidate.label}: {o.slo_ratio:.2f}x the SLO; {o.reason}" for o in near]
    else:
        by = ", ".join(f"{v} {k.replace('_', ' ')}" for k, v in result.stats.by_status.items())
        lines.append(f"No candidate came close: {by}. Relax the SLOs, add hardware or TP degrees.")
    return "\n".join(lines)
