"""Validation: upload (or pick) a measured kernel table, benchmark table or serving log and compare it with
the cost model's predictions (predicted-vs-measured scatter, error histogram, per-group error table)."""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

import streamlit as st

from app.dashboard.ui import show_error
from app.dashboard_state import (
    USER_ERRORS,
    bench_comparison,
    error_table,
    example_files,
    kernel_comparison,
    log_summary,
    save_upload,
)
from app.figures import error_histogram_figure, latency_cdf_figure, predicted_vs_measured_figure
from validation.bench_table import read_bench_table
from validation.converters import convert_aiconfigurator_silicon
from validation.kernel_tables import read_kernel_tables
from validation.logs import read_log

st.set_page_config(page_title="roofsim: validation", page_icon=":material/fact_check:", layout="wide")
st.title("Validation: predicted versus measured")

KINDS = {
    "Kernel table": ("kernel", "CSV or parquet: AIConfigurator, Vidur, LLMCompass or generic (op, dtype, hardware, "
                     "measured_s, m, n, k ...)", ["csv", "parquet"]),
    "Benchmark table": ("bench", "roofsim benchmark-table CSV (model, hardware, tp, isl, osl, concurrency, ttft_ms, "
                        "tpot_ms ...)", ["csv"]),
    "Serving log": ("log", "vLLM benchmark_serving --save-result JSON, GuideLLM JSON or LLMPerf individual "
                    "responses", ["json"]),
}
kind_label = st.radio("Measured data", list(KINDS), horizontal=True, key="kind")
kind, help_text, types = KINDS[kind_label]
examples = example_files(kind)
choices = ["Upload a file", *examples]
source = st.selectbox("Source", choices, index=1 if examples else 0, key="source",
                      help="Examples come from ../shared/data when it is present.")


@st.cache_data(max_entries=16, show_spinner="Reading the measured data ...")
def _load(kind: str, path: str, digest: str) -> Any:
    """Read one file (digest keys uploads by content)."""
    if kind == "kernel":
        return read_kernel_tables(path)
    if kind == "bench_aic":
        return convert_aiconfigurator_silicon(path)
    if kind == "bench":
        return read_bench_table(path)
    return read_log(path)


@st.cache_data(max_entries=16, show_spinner="Predicting ...")
def _compare(kind: str, path: str, digest: str, max_rows: int) -> tuple[list[dict], dict[str, int]]:
    data = _load(kind, path, digest)
    if kind == "kernel":
        return kernel_comparison(data.rows, max_rows=max_rows)
    return bench_comparison(data.rows)


path: Path | None = None
load_kind = kind
digest = ""
if source == "Upload a file":
    up = st.file_uploader(help_text, type=types, key="upload")
    if up is None:
        st.info("Upload a file, or pick one of the examples above.")
        st.stop()
    data = up.getvalue()
    digest = hashlib.sha256(data).hexdigest()
    path = save_upload(up.name, data)
else:
    path = examples[source]
    load_kind = "bench_aic" if kind == "bench" and "silicon" in path.name else kind
    digest = f"example:{path}"

try:
    loaded = _load(load_kind, str(path), digest)
except USER_ERRORS as err:
    show_error(err, f"could not read {path.name}")
    st.stop()

if kind == "log":
    st.subheader(f"{loaded.source_format} log: {loaded.num_requests} requests")
    st.caption(f"{path.name}; request rate {loaded.request_rate_per_s or 'inf'} req/s")
    summary = log_summary(loaded)
    st.dataframe(summary, hide_index=True, key="log_summary")
    cols = st.columns(len(summary))
    for col, row in zip(cols, summary, strict=True):
        col.metric(f"measured P50 {row['metric']}", f"{row['p50_s'] * 1e3:.2f} ms")
    st.plotly_chart(latency_cdf_figure({"measured": loaded.ttft_s}, metric="TTFT"), key="log_ttft_cdf")
    st.plotly_chart(latency_cdf_figure({"measured": loaded.e2e_s}, metric="E2E"), key="log_e2e_cdf")
    for note in loaded.notes:
        st.caption(f"note: {note}")
    st.info("Replay this log through the serving simulator on the *Serving what-if* page (upload it as a trace) "
            "to put predicted CDFs next to these.")
    st.stop()

max_rows = 4000
if kind == "kernel":
    n = len(loaded.rows)
    st.caption(f"{n} measured rows; {len(loaded.problems)} rows the importer could not use. GEMMs are predicted "
               f"with the roofline of model.cost.kernel_cost (default calibration); other ops are counted below.")
    max_rows = int(st.number_input("Most GEMM rows to predict (evenly subsampled)", 100, 50_000, 4000, step=500,
                                   key="max_rows"))
try:
    records, skipped = _compare(load_kind, str(path), digest, max_rows)
except USER_ERRORS as err:
    show_error(err, "prediction failed")
    st.stop()

if not records:
    st.error("No row of this file could be predicted: " + "; ".join(f"{k} ({v})" for k, v in skipped.items()))
    st.stop()

table = error_table(records)
total = len(records)
mape = sum(abs(r["rel_error"]) for r in records) / total * 100
c1, c2, c3 = st.columns(3)
c1.metric("Rows compared", f"{total}")
c2.metric("MAPE", f"{mape:.1f} %")
c3.metric("Within 20 %", f"{100 * sum(abs(r['rel_error']) <= 0.2 for r in records) / total:.1f} %")
st.plotly_chart(predicted_vs_measured_figure([r["measured_s"] for r in records], [r["predicted_s"] for r in records],
                                             groups=[r["group"] for r in records],
                                             labels=[r["label"] for r in records]), key="pvm")
st.subheader("Error by group")
st.dataframe(table, hide_index=True, key="error_table")
groups: dict[str, list[float]] = {}
for r in records:
    groups.setdefault(r["group"], []).append(r["rel_error"])
st.plotly_chart(error_histogram_figure(groups), key="err_hist")
if kind == "bench":
    st.caption("Benchmark rows are predicted with the static-batch estimate (`roofsim estimate` with batch = "
               "concurrency): TPOT is the decode step at that batch; TTFT is the prefill of the whole batch, an "
               "upper bound for closed-loop clients that arrive staggered.")
if skipped:
    st.subheader("Rows not compared")
    st.dataframe([{"reason": k, "rows": v} for k, v in skipped.items()], hide_index=True, key="skipped")
with st.expander("All compared rows"):
    st.dataframe(records, hide_index=True, key="records")
