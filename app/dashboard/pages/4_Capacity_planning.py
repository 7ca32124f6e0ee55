"""Capacity planning: how many of which GPU, TP degree and quantization serve a target rate within P99 TTFT/TPOT
SLOs at the lowest cost (simulator.planner.plan, the engine of `roofsim plan`): ranked table, Pareto front, the
winner's metrics and why the runners-up lost."""

from __future__ import annotations

from collections import OrderedDict
from typing import Any

import streamlit as st

from roofsim.app.common import KV_DTYPES, WEIGHT_DTYPES
from roofsim.app.dashboard.ui import ids, saved_upload, show_error
from roofsim.app.dashboard_state import (
    USER_ERRORS,
    PlanForm,
    closest_message,
    plan_spec,
    plan_table,
    runner_up_reasons,
    winner_kpis,
)
from roofsim.app.plan_report import pareto_figure, winner_summary_text
from roofsim.simulator.planner import PlannerError, SerialExecutor, plan
from roofsim.simulator.traces import FORMATS
from roofsim.simulator.workload import named_workloads

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


d = PlanForm()
hw_ids, m_ids = ids()
with st.sidebar:
    st.header("Question")
    model = st.selectbox("Model", m_ids, index=m_ids.index(d.model), key="pl_model")
    wl_names = named_workloads()
    source = st.radio("Workload", ("built-in", "upload a trace"), horizontal=True, key="pl_source")
    trace_path, trace_format, workload = "", d.trace_format, d.workload
    if source == "built-in":
        workload = st.selectbox("Built-in workload", wl_names, index=wl_names.index(d.workload), key="pl_workload")
    else:
        up = st.file_uploader("Trace (Azure, Vidur, Mooncake, BurstGPT, CSV, JSONL); its arrivals are time-scaled "
                              "to every rate the planner tries", type=["csv", "jsonl", "json", "txt"],
                              key="pl_trace_upload")
        trace_format = st.selectbox("Trace format", ("auto", *FORMATS), key="pl_trace_format")
        trace_path = saved_upload(up)
    rate = st.number_input("Target rate (req/s)", 0.01, 100_000.0, d.rate_per_s, step=1.0, key="pl_rate")
    c1, c2 = st.columns(2)
    slo_ttft = c1.number_input("P99 TTFT SLO (s)", 0.001, 600.0, d.slo_ttft_s, format="%.3f", key="pl_slo_ttft")
    slo_tpot = c2.number_input("P99 TPOT SLO (s)", 0.0001, 10.0, d.slo_tpot_s, format="%.4f", key="pl_slo_tpot")
    objective = st.radio("Minimise", ("cost", "gpus", "energy"), horizontal=True, key="pl_objective")
    st.header("Candidates")
    hardware = st.multiselect("Hardware", hw_ids, default=list(d.hardware), key="pl_hardware")
    tp = st.multiselect("TP degrees", [1, 2, 4, 8], default=list(d.tp), key="pl_tp")
    weights = st.multiselect("Weight dtypes", WEIGHT_DTYPES, default=list(d.weight_dtypes), key="pl_weights")
    kvs = st.multiselect("KV-cache dtypes", ("auto", *KV_DTYPES), default=list(d.kv_dtypes), key="pl_kv")
    st.header("Search")
    c1, c2 = st.columns(2)
    num_requests = c1.number_input("Requests per point", 10, 100_000, d.num_requests, step=100, key="pl_requests")
    tolerance = c2.number_input("Capacity tolerance", 0.01, 1.0, d.tolerance, step=0.05, key="pl_tolerance")
    c1, c2 = st.columns(2)
    max_gpus = c1.number_input("GPU budget (0 = none)", 0, 100_000, d.max_gpus, key="pl_max_gpus")
    seed = c2.number_input("Seed", 0, 2**31 - 1, d.seed, key="pl_seed")
    exhaustive = st.checkbox("Simulate every candidate (fuller Pareto front, slower)", key="pl_exhaustive")

if source != "built-in" and not trace_path:
    st.info("Upload a trace to plan for it (or pick a built-in workload).")
    st.stop()
form = PlanForm(model=model, workload=workload, trace_path=trace_path, trace_format=trace_format,
                rate_per_s=float(rate), slo_ttft_s=float(slo_ttft),
                slo_tpot_s=float(slo_tpot), hardware=tuple(hardware), tp=tuple(int(t) for t in tp),
                weight_dtypes=tuple(weights), kv_dtypes=tuple(kvs), objective=objective,
                num_requests=int(num_requests), tolerance=float(tolerance), max_gpus=int(max_gpus),
                exhaustive=bool(exhaustive), seed=int(seed))
try:
    spec = plan_spec(form)
except USER_ERRORS as err:
    show_error(err, "invalid question")
    st.stop()

key = spec.model_dump_json()
store = _plans()
n_cands = len(form.hardware) * len(form.tp) * len(form.weight_dtypes) * len(form.kv_dtypes)
st.caption(f"{n_cands} candidate(s); {form.num_requests} requests per simulated point.")
if st.button("Run plan", type="primary", key="run_plan") and key not in store:
    bar = st.progress(0.0, text="pruning candidates analytically ...")

    def progress(done: int, total: int) -> None:
        bar.progress(min(1.0, done / max(total, 1)), text=f"{done} of {total} candidates settled")

    plan_errors: tuple[type[BaseException], ...] = (*USER_ERRORS, PlannerError)
    try:
        store[key] = plan(spec, SerialExecutor(), None, progress)
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
           + f"; {stats.simulations} simulations in {stats.wall_s:.1f} s.")
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
