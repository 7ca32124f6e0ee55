"""Serving what-if: simulate a built-in workload (open loop or closed-loop clients) or an uploaded trace under a
scheduler, replica layout, quantization, speculative decoding, early exit and prefix caching; KPIs, latency CDFs, time
series, a latency-versus-load sweep, saved scenarios overlaid, and the config as TOML."""

from __future__ import annotations

import hashlib
from collections import OrderedDict
from typing import Any

import streamlit as st

from roofsim.app.common import WEIGHT_DTYPES
from roofsim.app.dashboard.ui import ACTIVATION_CHOICES, KV_CHOICES, ids, saved_upload, show_error
from roofsim.app.dashboard_state import (
    ACCEPTANCES,
    ARRIVAL_MODES,
    DRAFTERS,
    EARLY_EXITS,
    EXIT_DISTRIBUTIONS,
    USER_ERRORS,
    ServingForm,
    form_from_config,
    light_result,
    save_upload,
    serving_kpis,
    sim_config,
    sweep_rates,
    technique_kpis,
)
from roofsim.app.figures import latency_cdf_figure, latency_vs_load_figure, timeseries_figure
from roofsim.simulator.config import SCHEDULER_KINDS, SimConfig
from roofsim.simulator.run import simulate
from roofsim.simulator.traces import FORMATS
from roofsim.simulator.workload import named_workloads

st.set_page_config(page_title="roofsim: serving what-if", page_icon=":material/dns:", layout="wide")
st.title("Serving what-if")

MAX_SCENARIOS = 4
MAX_CACHED_RUNS = 64
ROUTERS = ("round_robin", "least_outstanding", "least_kv", "power_of_two")



@st.cache_resource(show_spinner=False)
def _results() -> OrderedDict[str, dict[str, Any]]:
    """Results keyed by the config's TOML (an LRU shared by sessions). Not st.cache_data: a cached function
    cannot drive the caller's progress bar, and a miss must show progress; a hit is a dict lookup."""
    return OrderedDict()


def run_cached(cfg: SimConfig, bar: Any | None = None, label: str = "") -> dict[str, Any]:
    key = cfg.to_toml()
    store = _results()
    if key in store:
        store.move_to_end(key)
        return store[key]

    def progress(done: int, total: int) -> None:
        if bar is not None:
            bar.progress(min(1.0, done / max(total, 1)), text=f"{label}simulated {done:,} of {total:,} requests")

    res = light_result(simulate(cfg, progress=progress))
    store[key] = res
    while len(store) > MAX_CACHED_RUNS:
        store.popitem(last=False)
    return res


def is_cached(cfg: SimConfig) -> bool:
    return cfg.to_toml() in _results()


# ---- restore a scenario from an uploaded TOML (before the widgets exist, so their state can be set) ----------
FIELD_KEYS = {f: f"sv_{f}" for f in ServingForm.__dataclass_fields__}
with st.sidebar:
    restore = st.file_uploader("Restore a scenario (TOML from *Download config*)", type=["toml"], key="restore")
if restore is not None:
    data = restore.getvalue()
    digest = hashlib.sha256(data).hexdigest()
    if st.session_state.get("restored_digest") != digest:
        try:
            cfg_up = SimConfig.from_toml(save_upload(restore.name, data))
            form_up = form_from_config(cfg_up)
        except USER_ERRORS as err:
            show_error(err, f"cannot restore {restore.name}")
        else:
            for f, key in FIELD_KEYS.items():
                st.session_state[key] = getattr(form_up, f)
            st.session_state["restored_digest"] = digest
            st.success(f"Restored the scenario from {restore.name}.")

d = ServingForm()
hw_ids, m_ids = ids()


def _w(kind: str, label: str, field: str, box: Any = st.sidebar, **kw: Any) -> Any:
    key = FIELD_KEYS[field]
    if key not in st.session_state:
        st.session_state[key] = getattr(d, field)
    return getattr(box, kind)(label, key=key, **kw)


with st.sidebar:
    st.header("Workload")
    trace_up = st.file_uploader("Upload a trace (Azure, Vidur, Mooncake, BurstGPT, CSV, JSONL)",
                                type=["csv", "jsonl", "json", "txt"], key="trace_upload")
    trace_path = ""
    if trace_up is not None:
        trace_path = saved_upload(trace_up)
        _w("selectbox", "Trace format", "trace_format", options=("auto", *FORMATS))
        _w("number_input", "Rate scale (2 = twice as fast)", "rate_scale", min_value=0.01, max_value=100.0)
    else:
        st.session_state[FIELD_KEYS["trace_path"]] = ""
        wl_names = named_workloads()
        _w("selectbox", "Built-in workload", "workload", options=wl_names)
        mode = _w("radio", "Arrivals", "arrival_mode", options=ARRIVAL_MODES, horizontal=True)
        if mode == ARRIVAL_MODES[0]:
            _w("number_input", "Request rate (req/s)", "rate_per_s", min_value=0.01, max_value=10_000.0, step=1.0)
        else:  # a benchmark client: clients send, wait for the answer, think, send again
            c1, c2 = st.columns(2)
            _w("number_input", "Clients (concurrency)", "clients", box=c1, min_value=1, max_value=100_000)
            _w("number_input", "Think time (s)", "think_s", box=c2, min_value=0.0, max_value=3600.0)
            first = _w("checkbox", "Ramp: next client starts at the previous one's first token", "ramp_first_token")
            if not first:
                _w("number_input", "Linear ramp-up over (s; 0 = all at once)", "ramp_up_s", min_value=0.0,
                   max_value=3600.0)
            c1, c2 = st.columns(2)
            _w("number_input", "Warm-up requests per client", "warmup_requests", box=c1, min_value=0,
               max_value=1000, help="sent first, counted, excluded from the statistics (genai-perf/aiperf)")
            _w("checkbox", "Drain warm-up first", "warmup_drain", box=c2,
               help="aiperf: the measured phase starts when every warm-up answer is in")
    _w("number_input", "Requests", "num_requests", min_value=10, max_value=100_000, step=500)
    st.header("Deployment")
    _w("selectbox", "Model", "model", options=m_ids)
    _w("selectbox", "Hardware", "hardware", options=hw_ids)
    c1, c2, c3 = st.columns(3)
    _w("number_input", "TP", "tp", box=c1, min_value=1, max_value=64)
    _w("number_input", "PP", "pp", box=c2, min_value=1, max_value=64)
    _w("number_input", "Replicas", "count", box=c3, min_value=1, max_value=256)
    c1, c2, c3 = st.columns(3)
    _w("selectbox", "Weights", "weight_dtype", box=c1, options=WEIGHT_DTYPES)
    _w("selectbox", "Activations", "activation_dtype", box=c2, options=ACTIVATION_CHOICES)
    _w("selectbox", "KV cache", "kv_dtype", box=c3, options=KV_CHOICES)
    st.header("Scheduler")
    sched = _w("selectbox", "Policy", "scheduler", options=SCHEDULER_KINDS)
    c1, c2 = st.columns(2)
    _w("number_input", "max_num_seqs", "max_num_seqs", box=c1, min_value=1, max_value=4096)
    _w("number_input", "max_batched_tokens", "max_batched_tokens", box=c2, min_value=16, max_value=1_000_000)
    if sched == "sarathi":
        _w("number_input", "Chunk size (tokens)", "chunk_size", min_value=16, max_value=65536)
    if sched == "sjf":
        _w("number_input", "Length predictor error sigma", "predictor_sigma", min_value=0.0, max_value=5.0)
    _w("selectbox", "Preemption", "preemption", options=("recompute", "swap"))
    _w("selectbox", "Router", "router", options=ROUTERS)
    _w("checkbox", "Prefix caching", "prefix_caching",
       help="reuse cached prompt blocks (needs a trace with hash ids, e.g. Mooncake)")
    _w("number_input", "Front-end time per request (s)", "frontend_s_per_request", min_value=0.0, max_value=10.0,
       format="%.4f", help="serialized API-server time per request before it can be scheduled")
    st.header("Speculative decoding")
    drafter = _w("selectbox", "Drafter", "spec_drafter", options=DRAFTERS)
    if drafter != "off":
        if drafter == "draft_model":
            _w("selectbox", "Draft model (same vocabulary)", "spec_draft_model", options=m_ids)
        elif drafter == "self":
            _w("number_input", "Draft layers", "spec_draft_layers", min_value=1, max_value=1000)
        elif drafter == "layerskip":
            _w("number_input", "Exit layer", "spec_exit_layer", min_value=1, max_value=1000)
        elif drafter == "ngram":
            _w("number_input", "Lookup CPU time (s)", "spec_lookup_s", min_value=0.0, max_value=1.0, format="%.5f")
        c1, c2 = st.columns(2)
        _w("number_input", "k (draft tokens)", "spec_k", box=c1, min_value=1, max_value=64)
        _w("number_input", "Tree width", "spec_tree_width", box=c2, min_value=1, max_value=64)
        acc = _w("selectbox", "Acceptance", "spec_acceptance", options=ACCEPTANCES)
        if acc == "iid":
            _w("slider", "Acceptance rate", "spec_rate", min_value=0.0, max_value=1.0, step=0.01)
        elif acc == "positional":
            _w("text_input", "Rate per draft position (comma-separated)", "spec_rates")
        else:
            c1, c2 = st.columns(2)
            _w("number_input", "Beta alpha", "spec_alpha", box=c1, min_value=0.01, max_value=1000.0)
            _w("number_input", "Beta beta", "spec_beta", box=c2, min_value=0.01, max_value=1000.0)
        if _w("checkbox", "Adaptive k", "spec_adaptive_k"):
            c1, c2 = st.columns(2)
            _w("number_input", "k min", "spec_k_min", box=c1, min_value=1, max_value=64)
            _w("number_input", "k max", "spec_k_max", box=c2, min_value=1, max_value=64)
    st.header("Early exit")
    ee = _w("selectbox", "Early exit", "ee_kind", options=EARLY_EXITS)
    if ee == "per_token":
        dist = _w("selectbox", "Exit distribution", "ee_distribution", options=EXIT_DISTRIBUTIONS)
        if dist == "histogram":
            _w("text_input", "Exit layers (comma-separated)", "ee_layers")
            _w("text_input", "Weights (comma-separated)", "ee_weights")
        elif dist == "per_layer":
            _w("text_input", "P(exit | reached) per layer (comma-separated)", "ee_probs")
        else:
            ee_up = st.file_uploader("Measured exit layers (CSV, one per row)", type=["csv", "txt"], key="ee_upload")
            if ee_up is not None:
                st.session_state[FIELD_KEYS["ee_csv_path"]] = saved_upload(ee_up)
        c1, c2 = st.columns(2)
        _w("checkbox", "Batch sync", "ee_batch_sync", box=c1)
        _w("selectbox", "KV fill", "ee_kv_fill", box=c2, options=("copy", "recompute"))
        _w("selectbox", "Exit head", "ee_exit_head", options=("classifier", "lm_head"))
    elif ee == "skipdecode":
        c1, c2, c3 = st.columns(3)
        _w("number_input", "Max layers", "ee_max_layers", box=c1, min_value=1, max_value=1000)
        _w("number_input", "Min layers", "ee_min_layers", box=c2, min_value=1, max_value=1000)
        _w("number_input", "Max position", "ee_max_position", box=c3, min_value=1, max_value=10_000_000)
    st.header("SLOs and seed")
    c1, c2 = st.columns(2)
    _w("number_input", "TTFT SLO (s)", "slo_ttft_s", box=c1, min_value=0.001, max_value=600.0)
    _w("number_input", "TPOT SLO (s)", "slo_tpot_s", box=c2, min_value=0.0001, max_value=10.0, format="%.4f")
    _w("number_input", "Seed", "seed", min_value=0, max_value=2**31 - 1)

# widgets not shown this run (e.g. chunk_size unless sarathi) have no state: their defaults apply
values = {f: st.session_state.get(k, getattr(d, f)) for f, k in FIELD_KEYS.items()}
values["trace_path"] = trace_path
form_kwargs: dict[str, Any] = {f: (int(v) if isinstance(getattr(d, f), int) and not isinstance(v, bool) else v)
                               for f, v in values.items()}
form = ServingForm(**form_kwargs)
try:
    cfg = sim_config(form)
except USER_ERRORS as err:
    show_error(err, "invalid scenario")
    st.stop()

toml_text = cfg.to_toml()
c1, c2, c3 = st.columns([1, 1, 2])
run_clicked = c1.button("Run simulation", type="primary", key="run")
c2.download_button("Download config (TOML)", toml_text, file_name="roofsim-scenario.toml", mime="application/toml",
                   key="download", help="The same file `roofsim simulate --config` takes.")

with st.expander("Scenario TOML"):
    st.code(toml_text, language="toml")

result: dict[str, Any] | None = None
if run_clicked or is_cached(cfg):
    bar = st.progress(0.0, text="starting ...") if not is_cached(cfg) else None
    try:
        result = run_cached(cfg, bar)
    except USER_ERRORS as err:
        show_error(err, "simulation failed")
        st.stop()
    finally:
        if bar is not None:
            bar.empty()
else:
    st.info("Press **Run simulation**. Settings you have run before come back instantly (results are kept per "
            "config).")
    st.stop()

s = result["summary"]
kpis = serving_kpis(s)
rows = [list(kpis.items())[:5], list(kpis.items())[5:]]
tech = list(technique_kpis(s).items())
rows += [tech[i:i + 5] for i in range(0, len(tech), 5)]
for row in rows:
    for col, (label, value) in zip(st.columns(5), row, strict=False):
        col.metric(label, value)
st.caption(f"{s['requests_completed']:,} of {s['requests_total']:,} requests completed ({s['stop_reason']}); "
           f"{s['requests_rejected']} rejected; SLO attainment {s['slo_attainment']:.1%}; {s['preemptions']} "
           f"preemptions; {s['iterations']:,} iterations simulated in {s['wall_s']:.2f} s wall "
           f"({s['sim_s_per_wall_s']:.0f} simulated s per wall s).")
if s.get("requests_warmup"):
    st.caption(f"{s['requests_warmup']:,} warm-up requests ran and are excluded from the statistics.")
if "prefix_cache_hit_rate" in s and not form.trace_path:
    st.caption("Prefix caching needs prompts with hash ids (a trace such as Mooncake's); built-in workloads have "
               "none, so nothing is reused.")
if s.get("saturated"):
    st.warning("The system is saturated: the queue keeps growing at this load. Latencies grow with the run length.")

scenarios: OrderedDict[str, str] = st.session_state.setdefault("scenarios", OrderedDict())
c1, c2 = st.columns([3, 1])
name = c1.text_input("Scenario name", value=f"scenario {len(scenarios) + 1}", key="scenario_name")
if c2.button("Keep this scenario", key="keep"):
    scenarios[name] = toml_text
    while len(scenarios) > MAX_SCENARIOS:
        scenarios.popitem(last=False)
if scenarios and st.button("Clear kept scenarios", key="clear"):
    scenarios.clear()

shown: dict[str, dict[str, Any]] = {"current": result}
for sname, stoml in scenarios.items():
    if stoml != toml_text and stoml in _results():
        shown[sname] = _results()[stoml]
if len(shown) > 1:
    st.caption("Overlaid: " + ", ".join(shown))

tab_lat, tab_time, tab_load = st.tabs(["Latency CDFs", "Over time", "Latency vs load"])
with tab_lat:
    c1, c2, c3 = st.columns(3)
    for col, metric in zip((c1, c2, c3), ("TTFT", "TPOT", "E2E"), strict=True):
        col.plotly_chart(latency_cdf_figure({n: r[f"{metric.lower()}_s"] for n, r in shown.items()}, metric=metric),
                         key=f"cdf_{metric}")
with tab_time:
    c1, c2 = st.columns(2)
    series_spec = (("throughput", "output tokens/s", "Throughput", c1), ("waiting", "requests", "Queue (waiting)", c2),
                   ("batch", "sequences", "Batch size", c1), ("kv", "% of blocks", "KV-cache usage", c2))
    for key, ytitle, title, col in series_spec:
        col.plotly_chart(timeseries_figure({n: r["series"][key] for n, r in shown.items()}, ytitle, title,
                                           step=key != "throughput"), key=f"ts_{key}")
with tab_load:
    if form.trace_path or form.arrival_mode != ARRIVAL_MODES[0]:
        st.info("The load sweep varies the built-in workload's open-loop rate; for a trace change *Rate scale*, "
                "for closed-loop clients change *Clients*.")
    else:
        rates = sweep_rates(form.rate_per_s)
        n_sweep = min(form.num_requests, 1000)
        st.caption(f"Rates {', '.join(f'{r:g}' for r in rates)} req/s, {n_sweep} requests each (cached per rate).")
        if st.button("Run load sweep", key="sweep"):
            bar = st.progress(0.0)
            for i, rate in enumerate(rates):
                c = sim_config(form.with_(rate_per_s=rate, num_requests=n_sweep))
                bar.progress(i / len(rates), text=f"rate {rate:g} req/s")
                try:
                    run_cached(c)
                except USER_ERRORS as err:
                    show_error(err, f"rate {rate:g}")
            bar.empty()
        pts = []
        for rate in rates:
            c = sim_config(form.with_(rate_per_s=rate, num_requests=n_sweep))
            if is_cached(c):
                ss = run_cached(c)["summary"]
                pts.append({"rate_per_s": rate, "ttft_p50_s": ss["ttft_s"]["p50"], "ttft_p99_s": ss["ttft_s"]["p99"],
                            "e2e_p50_s": ss["e2e_s"]["p50"]})
        if pts:
            st.plotly_chart(latency_vs_load_figure({"current": pts}), key="load_curve")
            st.dataframe(pts, hide_index=True, key="load_table")
