"""Validation: upload (or pick) a measured kernel table, benchmark table or serving log and compare it with
roofsim's predictions: validation.predict for kernels, validation.e2e for benchmark rows, validation.replay for
logs; error tables from validation.metrics_err, predicted-vs-measured scatter and CDFs."""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

import streamlit as st

from roofsim.app.common import replay_quant
from roofsim.app.dashboard.state.common import USER_ERRORS, save_upload
from roofsim.app.dashboard.state.validation import (
    CALIBRATIONS,
    bench_error_table,
    bench_records,
    example_files,
    kernel_comparison,
    kernel_error_table,
    log_summary,
    overall_stats,
    replay_defaults,
    replay_max_batch,
    replay_table,
    subsample,
)
from roofsim.app.dashboard.ui import ids, saved_upload, show_error
from roofsim.app.figures import error_histogram_figure, latency_cdf_figure, predicted_vs_measured_figure
from roofsim.hardware_specs.errors import InputError
from roofsim.model.cost import Calibration
from roofsim.validation.bench_table import read_bench_table
from roofsim.validation.converters import convert_aiconfigurator_silicon
from roofsim.validation.e2e import predict_table, shipped_calibration
from roofsim.validation.e2e_report import cdf_figure, scatter_figure
from roofsim.validation.kernel_tables import read_kernel_tables
from roofsim.validation.logs import read_log
from roofsim.validation.profiles import profile_for, read_calibration
from roofsim.validation.replay import SCHEDULERS, make_scheduler_config, replay_log

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


@st.cache_resource(max_entries=16, show_spinner="Predicting every row with validation.predict ...")
def _kernels(path: str, digest: str, max_rows: int, calibration: str) -> tuple[Any, list[dict], list[str]]:
    return kernel_comparison(_load("kernel", path, digest).rows, max_rows=max_rows, calibration=calibration)


@st.cache_resource(max_entries=16, show_spinner=False)
def _e2e_store() -> dict[tuple, Any]:
    """predict_table results by (file, rows, calibration): resource-cached so a miss can drive a progress bar."""
    return {}


@st.cache_resource(max_entries=8, show_spinner=False)
def _replay_store() -> dict[tuple, Any]:
    return {}


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


def _headline(records: list[dict], label: str = "Rows compared") -> None:
    stats = overall_stats(records)
    c1, c2, c3, c4 = st.columns(4)
    c1.metric(label, f"{stats.n}")
    c2.metric("MAPE", f"{stats.mape:.1f} %")
    c3.metric("Median APE", f"{stats.median_abs_pct_err:.1f} %")
    c4.metric("Within 20 %", f"{100 * sum(abs(r['rel_error']) <= 0.2 for r in records) / len(records):.1f} %")


def _histogram(records: list[dict]) -> None:
    groups: dict[str, list[float]] = {}
    for r in records:
        groups.setdefault(r["group"], []).append(r["rel_error"])
    st.plotly_chart(error_histogram_figure(groups), key="err_hist")


# ---------------------------------------------------------------------------------------- serving logs
if kind == "log":
    st.subheader(f"{loaded.source_format} log: {loaded.num_requests} requests")
    st.caption(f"{path.name}; request rate {loaded.request_rate_per_s or 'inf'} req/s")
    for note in loaded.notes:
        st.caption(f"note: {note}")
    guess = replay_defaults(path)
    hw_ids, m_ids = ids()
    if st.session_state.get("rp_source") != digest:  # a new log: its own defaults, not the last log's settings
        st.session_state["rp_source"] = digest
        for k, v in (("rp_model", guess["model"]), ("rp_hardware", guess["hardware"]), ("rp_tp", guess["tp"]),
                     ("rp_pp", guess["pp"]), ("rp_max_batch", replay_max_batch(path))):
            st.session_state[k] = v
    st.markdown("**Replay it in the simulator** (validation.replay.replay_log: same lengths, the log's send times or "
                "vLLM's regenerated Poisson draw)")
    with st.expander("Your own model, hardware or calibration (e.g. from `roofsim measure` and "
                     "`roofsim calibrate --local`)"):
        own = {name: saved_upload(st.file_uploader(label, type=types_, key=f"rp_{name}_file"))
               for name, label, types_ in (("model", "Model config.json", ["json"]),
                                           ("hardware", "HardwareSpec TOML", ["toml"]),
                                           ("calibration", "Calibration profile TOML", ["toml"]))}
    c1, c2, c3, c4, c5 = st.columns([3, 2, 1, 1, 2])
    model = own["model"] or c1.selectbox("Model", m_ids, key="rp_model")
    hardware = own["hardware"] or c2.selectbox("Hardware", hw_ids, key="rp_hardware")
    if own["model"]:
        c1.text_input("Model", Path(model).name, disabled=True, key="rp_model_own")
    if own["hardware"]:
        c2.text_input("Hardware", Path(hardware).name, disabled=True, key="rp_hw_own")
    tp = int(c3.number_input("TP", 1, 64, key="rp_tp"))
    pp = int(c4.number_input("PP", 1, 64, key="rp_pp"))
    sched_kind = c5.selectbox("Scheduler", SCHEDULERS, key="rp_scheduler",
                              help="vllm-v1 = chunked prefill with vLLM V1's token budget for this GPU")
    c1, c2, c3, c4 = st.columns([2, 1, 1, 2])
    cal_choice = ("uploaded profile" if own["calibration"] else
                  c1.selectbox("Calibration", CALIBRATIONS, key="rp_calibration",
                               help="shipped profile = the hardware's vLLM profile (validation.profiles.profile_for)"))
    if own["calibration"]:
        c1.text_input("Calibration", Path(own["calibration"]).name, disabled=True, key="rp_cal_own")
    dtype = c2.selectbox("Weights", ("auto", "bf16", "fp16", "fp32", "fp8"), key="rp_dtype",
                         help="auto: bf16, or fp32 on hardware without bf16 (a CPU measured with numpy)")
    max_batch = int(c3.number_input("Max batch (0 = default)", 0, 100_000, key="rp_max_batch",
                                    help="the server's max_num_seqs; a `roofsim measure` log records its steps"))
    cached_prompts = c4.checkbox("Prompts already in the prefix cache", key="rp_prompts_cached",
                                 help="replay each prompt as 1 new token (runs that resend the same prompts)")
    rkey = (str(path), digest, model, hardware, tp, pp, sched_kind, cal_choice, own["calibration"], dtype, max_batch,
            cached_prompts)
    store = _replay_store()
    if st.button("Replay in the simulator", type="primary", key="replay") and rkey not in store:
        with st.spinner("Replaying the log ..."):
            try:
                sched, _ = make_scheduler_config(sched_kind, hardware, max_batch or None)
                cal: Calibration | None = None
                if own["calibration"]:
                    cal = read_calibration(own["calibration"])
                elif cal_choice == CALIBRATIONS[0]:
                    try:
                        cal = profile_for(hardware, "vllm")
                    except InputError:  # hardware without a shipped profile (e.g. an uploaded one): defaults
                        st.caption(f"no shipped profile for {Path(hardware).name}: model defaults")
                store[rkey] = replay_log(path, model, hardware, tp, pp, scheduler=sched, calibration=cal,
                                         quant=replay_quant(dtype, hardware), prompts_cached=cached_prompts)
            except USER_ERRORS as err:
                show_error(err, "replay failed")
                st.stop()
    res = store.get(rkey)
    if res is None:
        summary = log_summary(loaded)
        st.dataframe(summary, hide_index=True, key="log_summary")
        st.plotly_chart(latency_cdf_figure({"measured": loaded.ttft_s}, metric="TTFT"), key="log_ttft_cdf")
        st.info("Press **Replay in the simulator** to put predicted distributions next to the measured ones.")
        st.stop()
    c = res.comparison
    metric_cols = st.columns(4)
    for col, (metric, label) in zip(metric_cols, (("ttft_s", "TTFT"), ("tpot_s", "TPOT"), ("e2e_s", "E2E"),
                                                  ("itl_s", "ITL")), strict=True):
        v = c[metric]["mean"]
        col.metric(f"mean {label} predicted", f"{v['predicted'] * 1e3:.2f} ms",
                   delta=f"{v['err_pct']:+.1f} % vs measured {v['measured'] * 1e3:.2f} ms", delta_color="off")
    st.subheader("Measured versus predicted")
    st.dataframe(replay_table(res), hide_index=True, key="replay_table")
    cols = st.columns(2)
    for i, metric in enumerate(m for m in ("ttft_s", "tpot_s", "e2e_s", "itl_s") if res.measured_values(m).size):
        cols[i % 2].plotly_chart(cdf_figure(res.measured_values(metric), res.predicted_values(metric), metric),
                                 key=f"replay_cdf_{metric}")
    if res.steps:
        st.dataframe(res.steps, hide_index=True, key="replay_steps")
    with st.expander("Assumptions of the replay"):
        for note in res.notes:
            st.markdown(f"- {note}")
    st.stop()

# ---------------------------------------------------------------------------------------- benchmark tables
if kind == "bench":
    n = len(loaded.rows)
    c1, c2 = st.columns(2)
    max_rows = int(c1.number_input("Rows to simulate (evenly subsampled)", 1, 5000, min(8, n), key="bench_rows",
                                   help="each row is one simulation (validation.e2e.predict_table)"))
    cal_choice = c2.selectbox("Calibration", CALIBRATIONS, key="bench_calibration",
                              help="shipped profile = per row's hardware and framework")
    picked, left_out = subsample(loaded.rows, max_rows)
    bkey = (str(path), digest, len(picked), cal_choice)
    store = _e2e_store()
    if bkey not in store:
        bar = st.progress(0.0, text=f"simulating {len(picked)} benchmark rows ...")

        def progress(it: Any, total: int) -> Any:
            for i, x in enumerate(it):
                bar.progress((i + 1) / total, text=f"simulated {i + 1} of {total} benchmark rows")
                yield x

        try:
            store[bkey] = predict_table(picked, shipped_calibration if cal_choice == CALIBRATIONS[0] else None,
                                        workers=1, progress=progress)
        except USER_ERRORS as err:
            show_error(err, "prediction failed")
            st.stop()
        finally:
            bar.empty()
    e2e = store[bkey]
    records = bench_records(e2e.predictions)
    st.caption(f"{len(picked)} of {n} rows simulated" + (f" (evenly subsampled; {left_out} left out)" if left_out
                                                          else "") + ": each row becomes a SimConfig with its "
               "engine's default scheduler and the benchmark client's load (validation.e2e.row_config).")
    if not records:
        st.error("No row of this file could be predicted: " + "; ".join(e2e.problems or ["no measured latency"]))
        st.stop()
    _headline(records, "Cells compared")
    cols = st.columns(2)
    for col, metric in zip(cols, ("ttft_ms", "tpot_ms"), strict=True):
        if any(getattr(p.row, metric) for p in e2e.ok):
            col.plotly_chart(scatter_figure(e2e.predictions, metric, lambda r: f"{r.model} {r.framework}"),
                             key=f"scatter_{metric}")
    st.subheader("Error by group (validation.e2e.e2e_error_stats)")
    st.dataframe(bench_error_table(e2e.predictions), hide_index=True, key="error_table")
    _histogram(records)
    if e2e.problems:
        st.subheader("Rows not predicted")
        for p in e2e.problems:
            st.markdown(f"- {p}")
    with st.expander("All compared cells"):
        st.dataframe(records, hide_index=True, key="records")
    st.stop()

# ---------------------------------------------------------------------------------------- kernel tables
n = len(loaded.rows)
st.caption(f"{n} measured rows; {len(loaded.problems)} rows the importer could not use. Every row is predicted by "
           "validation.predict.predict_rows (GEMM, attention, elementwise, collectives) through model.cost.")
c1, c2 = st.columns(2)
max_rows = int(c1.number_input("Most rows to predict (evenly subsampled)", 100, 200_000, 2000, step=500,
                               key="max_rows"))
cal_choice = c2.selectbox("Calibration", CALIBRATIONS, key="calibration",
                          help="shipped profile = validation.profiles.profile_for(hardware)")
try:
    pred, records, notes = _kernels(str(path), digest, max_rows, cal_choice)
except USER_ERRORS as err:
    show_error(err, "prediction failed")
    st.stop()

if not records:
    st.error("No row of this file could be predicted: " + "; ".join(notes or ["empty table"]))
    st.stop()

_headline(records)
st.plotly_chart(predicted_vs_measured_figure([r["measured_s"] for r in records], [r["predicted_s"] for r in records],
                                             groups=[r["group"] for r in records],
                                             labels=[r["label"] for r in records]), key="pvm")
st.subheader("Error by group (validation.metrics_err)")
st.caption("Percentage error = 100 (predicted - measured) / measured; bias is the median signed error "
           "(+ = predicted too slow).")
st.dataframe(kernel_error_table(pred), hide_index=True, key="error_table")
_histogram(records)
if notes:
    st.subheader("Rows not compared")
    for note in notes:
        st.markdown(f"- {note}")
with st.expander("All compared rows"):
    st.dataframe(records, hide_index=True, key="records")
