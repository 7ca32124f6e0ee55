"""Capacity planning: how many of which GPU, TP degree and quantization serve a target rate within P99 TTFT/TPOT
SLOs at the lowest cost (simulator.planning.plan, the engine of `roofsim plan`): ranked table, Pareto front, the
winner's metrics and why the runners-up lost."""

from __future__ import annotations

from collections import OrderedDict
from typing import Any

import streamlit as st

from roofsim.app.dashboard.state.capacity import (
    PLAN_WIDGETS,
    SOURCES,
    closest_message,
    plan_spec,
    plan_table,
    runner_up_reasons,
    winner_kpis,
)
from roofsim.app.dashboard.state.common import USER_ERRORS
from roofsim.app.dashboard.state.form import defaults
from roofsim.app.dashboard.ui import saved_upload, show_error, widget_drawer
from roofsim.app.plan_report import pareto_figure, winner_summary_text

# The planner is moving to roofsim.simulator.planning (another branch); the import follows at merge.
from roofsim.simulator.planning import PlannerError, SerialExecutor, plan
from roofsim.validation.profiles import resolve_plan_calibrations

st.set_page_config(page_title="roofsim: capacity planning", page_icon=":material/calculate:", layout="wide")
st.title("Capacity planning")
st.caption("For every candidate (hardware x TP x quantization) the planner finds the highest rate one replica "
           "sustains within the P99 SLOs by bisection over simulated rates, then the replicas, GPUs and cost that "
           "serve the target rate, for a built-in workload or your own trace. Same engine as `roofsim plan`; "
           "larger sweeps belong there (process pool, Dask, point cache).")

MAX_PLANS = 16


@st.cache_resource(show_spinner=False)
def _plans() -> OrderedDict[str, Any]:
    """PlanResults by the PlanSpec's JSON (an LRU shared by sessions); resource-cached so a miss shows progress."""
    return OrderedDict()


values = defaults(PLAN_WIDGETS)
w = widget_drawer(PLAN_WIDGETS, values)
with st.sidebar:
    st.header("Question")
    w("pl_model")
    if w("pl_source") == SOURCES[1]:
        up = st.file_uploader("Trace (Azure, Vidur, Mooncake, BurstGPT, CSV, JSONL); its arrivals are time-scaled "
                              "to every rate the planner tries", type=["csv", "jsonl", "json", "txt"],
                              key="pl_trace_upload")
        values["pl_trace_path"] = saved_upload(up)
    w("pl_workload")
    w("pl_trace_format")
    w("pl_rate")
    c1, c2 = st.columns(2)
    w("pl_slo_ttft", c1)
    w("pl_slo_tpot", c2)
    w("pl_objective")
    st.header("Candidates")
    for key in ("pl_hardware", "pl_tp", "pl_weights", "pl_kv"):
        w(key)
    st.header("Search")
    c1, c2 = st.columns(2)
    w("pl_requests", c1)
    w("pl_tolerance", c2)
    c1, c2 = st.columns(2)
    w("pl_max_gpus", c1)
    w("pl_seed", c2)
    w("pl_exhaustive")

if values["pl_source"] != SOURCES[0] and not values["pl_trace_path"]:
    st.info("Upload a trace to plan for it (or pick a built-in workload).")
    st.stop()
try:
    spec = plan_spec(values)
except USER_ERRORS as err:
    show_error(err, "invalid question")
    st.stop()

key = spec.model_dump_json()
store = _plans()
n_cands = len(spec.hardware) * len(spec.tp) * len(spec.weight_dtypes) * len(spec.kv_dtypes)
st.caption(f"{n_cands} candidate(s); {spec.num_requests} requests per simulated point.")
if st.button("Run plan", type="primary", key="run_plan") and key not in store:
    bar = st.progress(0.0, text="pruning candidates analytically ...")

    def progress(done: int, total: int) -> None:
        bar.progress(min(1.0, done / max(total, 1)), text=f"{done} of {total} candidates settled")

    plan_errors: tuple[type[BaseException], ...] = (*USER_ERRORS, PlannerError)
    try:
        resolved, _ = resolve_plan_calibrations(spec)  # each GPU's shipped profile, as `roofsim plan`
        store[key] = plan(resolved, SerialExecutor(), None, progress)
    except plan_errors as err:
        show_error(err, "plan failed")
        st.stop()
    finally:
        bar.empty()
    while len(store) > MAX_PLANS:
        store.popitem(last=False)
result = store.get(key)
if result is None:
    st.info("Press **Run plan**. The default sweep (2 GPU types x TP 1, 2) takes a few seconds; questions you have "
            "run before come back instantly.")
    st.stop()
store.move_to_end(key)

stats = result.stats
st.caption(f"{stats.candidates} candidates: " + ", ".join(f"{v} {k.replace('_', ' ')}" for k, v in
                                                         stats.by_status.items())
           + f"; {stats.simulations} simulations in {stats.wall_s:.1f} s. Calibration: "
           + ", ".join(f"{hw} {cal.name}" for hw, cal in result.spec.calibrations.items()) + ".")
w = result.winner
if w is None:
    st.error(closest_message(result), icon=":material/block:")
else:
    kpis = winner_kpis(result)
    st.subheader(f"Winner: {kpis['Replicas']} x {w.candidate.label}")
    items = [(k, v) for k, v in kpis.items() if k != "Winner"]
    for row in (items[:4], items[4:]):
        for col, (label, value) in zip(st.columns(5), row, strict=False):
            col.metric(label, value)
    m = result.winner_metrics
    if m is not None:
        with st.expander("The winning deployment simulated at the target rate (all replicas, routed)"):
            st.code(winner_summary_text(m), language=None)
        if not (m["ttft_s"]["p99"] <= spec.slo_ttft_s and m["tpot_s"]["p99"] <= spec.slo_tpot_s) or m["saturated"]:
            st.warning("The routed deployment misses an SLO that each replica met alone at its share of the load "
                       "(routing imbalance); consider one more replica.")
    reasons = runner_up_reasons(result)
    if reasons:
        st.markdown("**Why the runners-up lost**\n" + "\n".join(f"- {r}" for r in reasons))
if result.feasible:
    st.plotly_chart(pareto_figure(result), key="pareto")
    if any(o.status == "pruned" for o in result.outcomes):
        st.caption("Pruned candidates stopped once their cost lower bound exceeded a feasible candidate's; tick "
                   "*Simulate every candidate* for the full front.")
st.subheader("All candidates, ranked")
st.dataframe(plan_table(result), hide_index=True, key="plan_table")
