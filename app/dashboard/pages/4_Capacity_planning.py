"""Capacity planning (placeholder): the page a later issue fills with the planner's sweep and its Pareto front."""

from __future__ import annotations

import streamlit as st

st.set_page_config(page_title="roofsim: capacity planning", page_icon=":material/calculate:", layout="wide")
st.title("Capacity planning")
st.info(
    "Coming with the capacity-planning issue: give a workload, a target request rate and SLOs (e.g. P99 TTFT "
    "under 1 s) and get the cheapest GPU type, count, TP degree and quantization that meets them. "
    "Until then, use the Serving what-if page's latency-versus-load sweep for one configuration at a time.",
    icon=":material/construction:",
)
