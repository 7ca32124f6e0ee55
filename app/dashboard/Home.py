"""Entry script of the roofsim dashboard (`roofsim app`): what each page does, with links to them."""

from __future__ import annotations

import streamlit as st

st.set_page_config(page_title="roofsim", page_icon=":material/speed:", layout="wide")

st.title("roofsim: what-if dashboard")
st.markdown(
    "Predict how fast an LLM is served on a given accelerator before renting it. Every number comes from the "
    "same roofline cost model and serving simulator the `roofsim` CLI uses, so the two never disagree."
)
st.page_link("pages/1_Step_explorer.py", label="Step explorer / roofline", icon=":material/ssid_chart:")
st.caption("One prefill and one decode step: every kernel on the device roofline, time and memory breakdown, "
           "TTFT/TPOT/throughput, two configurations side by side.")
st.page_link("pages/2_Serving_what-if.py", label="Serving what-if", icon=":material/dns:")
st.caption("Simulate a workload (open loop or closed-loop clients) or an uploaded trace under a scheduler, "
           "quantization, speculative decoding, early exit or prefix caching: latency CDFs, KPIs, load sweeps, "
           "scenarios overlaid; download the scenario as the TOML `roofsim simulate --config` takes.")
st.page_link("pages/3_Validation.py", label="Validation", icon=":material/fact_check:")
st.caption("Upload measured kernel tables, benchmark tables or serving logs and compare them with predictions "
           "(kernel costs, simulated benchmark rows, replayed logs): error tables, scatter and CDFs.")
st.page_link("pages/4_Capacity_planning.py", label="Capacity planning", icon=":material/calculate:")
st.caption("How many of which GPU, TP degree and quantization serve a target rate within P99 SLOs at the lowest "
           "cost: ranked candidates, Pareto front, why the runners-up lost.")
st.divider()
st.caption("Errors: a problem with what you entered or uploaded is shown as a message on its page. An error shown "
           "only by its type is a bug in roofsim: please report it on the project's issue tracker with the page, "
           "your inputs and the traceback that the terminal running `roofsim app` prints (`roofsim app -v` also "
           "shows it in the page).")
