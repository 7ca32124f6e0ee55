"""Serving what-if: simulate a built-in workload (open loop or closed-loop clients) or an uploaded trace under a
scheduler, replica layout, quantization, speculative decoding, early exit and prefix caching; KPIs, latency CDFs, time
series, a latency-versus-load sweep, saved scenarios overlaid, and the config as TOML."""

from __future__ import annotations

import hashlib
from collections import OrderedDict
from typing import Any

import streamlit as st

from roofsim.app.dashboard.state.common import USER_ERRORS, config_toml, save_upload
from roofsim.app.dashboard.state.serving import (
    ARRIVAL_MODES,
    CUSTOM_ENGINE,
    DEPLOYMENTS,
    MAX_ENSEMBLE,
    SERVING_WIDGETS,
    WIDGETS_BY_KEY,
    cdf_band,
    is_moe,
    kpi_ranges,
    restore_scenario,
    serving_defaults,
    serving_ensemble,
    sim_config,
)
from roofsim.app.dashboard.state.serving_results import (
    light_result,
    serving_kpis,
    sweep_rates,
    technique_kpis,
)
from roofsim.app.dashboard.ui import saved_upload, show_error, widget_drawer
from roofsim.app.figures import latency_cdf_figure, latency_vs_load_figure, timeseries_figure
from roofsim.simulator.config import SimConfig, group_engine_profile
from roofsim.simulator.run import resolve_config_quants, simulate
from roofsim.validation.profiles import resolve_config_calibrations

st.set_page_config(page_title="roofsim: serving what-if", page_icon=":material/dns:", layout="wide")
st.title("Serving what-if")

MAX_SCENARIOS = 4
MAX_CACHED_RUNS = 64


@st.cache_resource(show_spinner=False)
def _results() -> OrderedDict[str, dict[str, Any]]:
    """Results keyed by the config's TOML (an LRU shared by sessions). Not st.cache_data: a cached function
    cannot drive the caller's progress bar, and a miss must show progress; a hit is a dict lookup."""
    return OrderedDict()


def run_cached(cfg: SimConfig, bar: Any | None = None, label: str = "") -> dict[str, Any]:
    key = config_toml(cfg)
    store = _results()
    if key in store:
        store.move_to_end(key)
        return store[key]

    def progress(done: int, total: int) -> None:
        if bar is not None:
            bar.progress(min(1.0, done / max(total, 1)), text=f"{label}simulated {done:,} of {total:,} requests")

    # the one calibration rule: groups without a profile get their GPU's shipped or transferred one
    res = light_result(simulate(resolve_config_calibrations(cfg)[0], progress=progress))
    store[key] = res
    while len(store) > MAX_CACHED_RUNS:
        store.popitem(last=False)
    return res


def is_cached(cfg: SimConfig) -> bool:
    return config_toml(cfg) in _results()


# ---- restore a scenario from an uploaded TOML (before the widgets exist, so their state can be set) ----------
with st.sidebar:
    restore = st.file_uploader("Restore a scenario (TOML from *Download config*)", type=["toml"], key="restore")
if restore is not None:
    data = restore.getvalue()
    digest = hashlib.sha256(data).hexdigest()
    if st.session_state.get("restored_digest") != digest:
        try:
            restored, missing = restore_scenario(SimConfig.from_toml(save_upload(restore.name, data)))
        except USER_ERRORS as err:
            show_error(err, f"cannot restore {restore.name}")
        else:
            st.session_state.update(restored)
            st.session_state["restored_digest"] = digest
            if missing:
                st.warning(f"Restored the scenario from {restore.name} except these fields, which the page cannot "
                           "show (the config below runs without them; `roofsim simulate --config` runs the file as "
                           "it is):\n" + "\n".join(f"- {m}" for m in missing), icon=":material/warning:")
            else:
                st.success(f"Restored the scenario from {restore.name}.")

# widgets not shown this run (e.g. chunk_size unless sarathi) keep their defaults in `values`
values = serving_defaults()
values["sv_ee_csv_path"] = st.session_state.get("sv_ee_csv_path", "")
w = widget_drawer(SERVING_WIDGETS, values)

with st.sidebar:
    st.header("Workload")
    trace_up = st.file_uploader("Upload a trace (Azure, Vidur, Mooncake, BurstGPT, CSV, JSONL)",
                                type=["csv", "jsonl", "json", "txt"], key="trace_upload")
    values["sv_trace_path"] = saved_upload(trace_up)
    w("sv_trace_format")
    w("sv_rate_scale")
    w("sv_workload")
    if w("sv_arrival_mode") == ARRIVAL_MODES[1]:  # a benchmark client: clients send, wait, think, send again
        c1, c2 = st.columns(2)
        w("sv_clients", c1)
        w("sv_think_s", c2)
        w("sv_ramp_first_token")
        w("sv_ramp_up_s")
        c1, c2 = st.columns(2)
        w("sv_warmup_requests", c1)
        w("sv_warmup_drain", c2)
    w("sv_rate_per_s")
    w("sv_num_requests")
    st.header("Deployment")
    w("sv_model")
    w("sv_hardware")
    for col, key in zip(st.columns(3), ("sv_tp", "sv_pp", "sv_count"), strict=True):
        w(key, col)
    if WIDGETS_BY_KEY["sv_attn_dp"].when(values):  # a mixture-of-experts model: attention DP and EP
        for col, key in zip(st.columns(2), ("sv_attn_dp", "sv_ep"), strict=True):
            w(key, col)
    for col, key in zip(st.columns(3), ("sv_weight_dtype", "sv_activation_dtype", "sv_kv_dtype"), strict=True):
        w(key, col)
    if w("sv_deployment") == DEPLOYMENTS[1]:  # the replicas above are the prefill pool
        w("sv_decode_hardware")
        for pair in (("sv_decode_tp", "sv_decode_count"), ("sv_kv_link", "sv_kv_layerwise")):
            for col, key in zip(st.columns(2), pair, strict=True):
                w(key, col)
    st.header("Scheduler")
    if w("sv_engine") not in (None, CUSTOM_ENGINE):
        try:
            prof = group_engine_profile({"engine": values["sv_engine"], "model": values["sv_model"],
                                         "hardware": values["sv_hardware"], "tp": values["sv_tp"],
                                         "pp": values["sv_pp"],
                                         "attn_dp": values["sv_attn_dp"] if is_moe(values) else 1})
            st.caption(prof.summary())
        except USER_ERRORS as err:
            show_error(err, "engine")
    w("sv_scheduler")
    c1, c2 = st.columns(2)
    w("sv_max_num_seqs", c1)
    w("sv_max_batched_tokens", c2)
    for key in ("sv_chunk_size", "sv_predictor_sigma", "sv_preemption", "sv_router", "sv_prefix_caching",
                "sv_frontend_s_per_request"):
        w(key)
    st.header("Speculative decoding")
    if w("sv_spec_drafter") != "off":
        for key in ("sv_spec_draft_model", "sv_spec_draft_layers", "sv_spec_exit_layer", "sv_spec_lookup_s"):
            w(key)
        c1, c2 = st.columns(2)
        w("sv_spec_k", c1)
        w("sv_spec_tree_width", c2)
        w("sv_spec_acceptance")
        w("sv_spec_rate")
        w("sv_spec_rates")
        if values["sv_spec_acceptance"] == "beta":
            c1, c2 = st.columns(2)
            w("sv_spec_alpha", c1)
            w("sv_spec_beta", c2)
        if w("sv_spec_adaptive_k"):
            c1, c2 = st.columns(2)
            w("sv_spec_k_min", c1)
            w("sv_spec_k_max", c2)
    st.header("Early exit")
    ee = w("sv_ee_kind")
    if ee == "per_token":
        dist = w("sv_ee_distribution")
        for key in ("sv_ee_layers", "sv_ee_weights", "sv_ee_probs"):
            w(key)
        if dist == "csv":
            ee_up = st.file_uploader("Measured exit layers (CSV, one per row)", type=["csv", "txt"], key="ee_upload")
            if ee_up is not None:
                st.session_state["sv_ee_csv_path"] = values["sv_ee_csv_path"] = saved_upload(ee_up)
        c1, c2 = st.columns(2)
        w("sv_ee_batch_sync", c1)
        w("sv_ee_kv_fill", c2)
        w("sv_ee_exit_head")
    elif ee == "skipdecode":
        for col, key in zip(st.columns(3), ("sv_ee_max_layers", "sv_ee_min_layers", "sv_ee_max_position"),
                            strict=True):
            w(key, col)
    st.header("SLOs and seed")
    c1, c2 = st.columns(2)
    w("sv_slo_ttft_s", c1)
    w("sv_slo_tpot_s", c2)
    w("sv_seed")
    members = int(st.number_input(
        "Ensemble members (ranges)", min_value=1, max_value=MAX_ENSEMBLE, value=1, key="sv_ensemble",
        help="More than 1: the run is repeated that many times with kernel times drawn from the calibration "
             "profile's measured error model; the KPI cards show 80 % ranges and the CDFs a band (docs/intervals.md)."))

try:
    cfg = sim_config(values)
except USER_ERRORS as err:
    show_error(err, "invalid scenario")
    st.stop()

toml_text = config_toml(cfg)
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

ens: dict[str, dict[str, Any]] | None = None
if members > 1:
    ens_key = f"{toml_text}\n# ensemble members = {members}"
    if ens_key not in _results():
        bar = st.progress(0.0, text=f"ensemble of {members} ...")
        try:
            _results()[ens_key] = serving_ensemble(cfg, members)
        except USER_ERRORS as err:
            show_error(err, "no ranges")
        finally:
            bar.empty()
    ens = _results().get(ens_key)

s = result["summary"]
kpis = serving_kpis(s)
ranges = kpi_ranges(ens) if ens is not None else {}
rows = [list(kpis.items())[:5], list(kpis.items())[5:]]
tech = list(technique_kpis(s).items())
rows += [tech[i:i + 5] for i in range(0, len(tech), 5)]
for row in rows:
    for col, (label, value) in zip(st.columns(5), row, strict=False):
        col.metric(label, value)
        if label in ranges:
            col.caption(ranges[label])
if ens is not None:
    st.caption(f"Ranges: 80 % intervals over an ensemble of {members} runs whose kernel times are drawn from the "
               "profiles' measured kernel error models (one draw per kernel family held for the whole run); they do "
               "not carry scheduling or framework-overhead error (docs/intervals.md).")
st.caption(f"{s['requests_completed']:,} of {s['requests_total']:,} requests completed ({s['stop_reason']}); "
           f"{s['requests_rejected']} rejected; SLO attainment {s['slo_attainment']:.1%}; {s['preemptions']} "
           f"preemptions; {s['iterations']:,} iterations simulated in {s['wall_s']:.2f} s wall "
           f"({s['sim_s_per_wall_s']:.0f} simulated s per wall s).")
if quant_notes := resolve_config_quants(cfg)[1]:  # a group without a quant table: its checkpoint's format
    st.caption("Quantisation: " + "; ".join(quant_notes))
if s.get("requests_warmup"):
    st.caption(f"{s['requests_warmup']:,} warm-up requests ran and are excluded from the statistics.")
if "prefix_cache_hit_rate" in s and not values["sv_trace_path"]:
    st.caption("Prefix caching needs prompts with hash ids (a trace such as Mooncake's); built-in workloads have "
               "none, so nothing is reused.")
if dis := s.get("disaggregation"):
    h = dis["handover"]
    st.caption(" ".join(
        f"{pool.capitalize()} pool: {dis[pool]['gpus']} GPUs, busy {dis[pool]['busy_fraction']:.0%}, mean batch "
        f"{dis[pool]['mean_batch_size']:.1f}, peak KV {dis[pool]['max_kv_usage']:.0%}." for pool in ("prefill", "decode"))
        + f" Handover: median {h['handover_s']['p50'] * 1e3:.1f} ms (KV wait {h['decode_kv_wait_s']['p50'] * 1e3:.1f}"
        f" ms, transfer {h['transfer_s']['p50'] * 1e3:.1f} ms); first token at the prefill replica after "
        f"{h['prefill_ttft_s']['p50'] * 1e3:.0f} ms (median); TTFT counts the handover.")
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
        band = cdf_band(ens, f"{metric.lower()}_s") if ens is not None else ()
        col.plotly_chart(latency_cdf_figure({n: r[f"{metric.lower()}_s"] for n, r in shown.items()}, metric=metric,
                                            band=band), key=f"cdf_{metric}")
with tab_time:
    c1, c2 = st.columns(2)
    series_spec = (("throughput", "output tokens/s", "Throughput", c1), ("waiting", "requests", "Queue (waiting)", c2),
                   ("batch", "sequences", "Batch size", c1), ("kv", "% of blocks", "KV-cache usage", c2))
    for key, ytitle, title, col in series_spec:
        col.plotly_chart(timeseries_figure({n: r["series"][key] for n, r in shown.items()}, ytitle, title,
                                           step=key != "throughput"), key=f"ts_{key}")
with tab_load:
    if values["sv_trace_path"] or values["sv_arrival_mode"] != ARRIVAL_MODES[0]:
        st.info("The load sweep varies the built-in workload's open-loop rate; for a trace change *Rate scale*, "
                "for closed-loop clients change *Clients*.")
    else:
        rates = sweep_rates(values["sv_rate_per_s"])
        n_sweep = min(values["sv_num_requests"], 1000)
        st.caption(f"Rates {', '.join(f'{r:g}' for r in rates)} req/s, {n_sweep} requests each (cached per rate).")
        if st.button("Run load sweep", key="sweep"):
            bar = st.progress(0.0)
            for i, rate in enumerate(rates):
                c = sim_config(values, sv_rate_per_s=rate, sv_num_requests=n_sweep)
                bar.progress(i / len(rates), text=f"rate {rate:g} req/s")
                try:
                    run_cached(c)
                except USER_ERRORS as err:
                    show_error(err, f"rate {rate:g}")
            bar.empty()
        pts = []
        for rate in rates:
            c = sim_config(values, sv_rate_per_s=rate, sv_num_requests=n_sweep)
            if is_cached(c):
                ss = run_cached(c)["summary"]
                pts.append({"rate_per_s": rate, "ttft_p50_s": ss["ttft_s"]["p50"], "ttft_p99_s": ss["ttft_s"]["p99"],
                            "e2e_p50_s": ss["e2e_s"]["p50"]})
        if pts:
            st.plotly_chart(latency_vs_load_figure({"current": pts}), key="load_curve")
            st.dataframe(pts, hide_index=True, key="load_table")
