"""Step explorer: one prefill and one decode step of a configuration on the device roofline, with the time and
memory breakdown, TTFT/TPOT/throughput, and an optional side-by-side second configuration."""

from __future__ import annotations

import streamlit as st

from roofsim.app.dashboard.state.common import USER_ERRORS, parse_metric
from roofsim.app.dashboard.state.step import StepConfig, kernel_rows, step_metrics
from roofsim.app.dashboard.ui import cached_step_view, show_error, step_config_widgets
from roofsim.app.figures import comparison_figure, kernel_time_figure, memory_figure, roofline_figure

st.set_page_config(page_title="roofsim: step explorer", page_icon=":material/ssid_chart:", layout="wide")
st.title("Step explorer / roofline")

with st.sidebar:
    st.header("Configuration A")
    cfg_a = step_config_widgets(st, StepConfig())
    compare = st.toggle("Compare with configuration B", key="compare")

cfg_b = None
if compare:
    with st.expander("Configuration B (batch and lengths shared with A)", expanded=True):
        cfg_b = step_config_widgets(st, cfg_a.with_(hardware="a100-sxm-80gb"), prefix="b_", deployment_only=True,
                                    base=cfg_a)


def _view(cfg: StepConfig, name: str) -> dict | None:
    try:
        return cached_step_view(cfg.key())
    except USER_ERRORS as err:
        show_error(err, f"configuration {name}")
        return None


view_a = _view(cfg_a, "A")
view_b = _view(cfg_b, "B") if cfg_b is not None else None

if view_a is None:
    st.stop()

st.caption(f"**A**: {view_a['model']} on {view_a['num_gpus']} x {view_a['hardware_name']} (tp={view_a['tp']} "
           f"pp={view_a['pp']}); weights {view_a['weight_dtype']}, activations {view_a['activation_dtype']}, KV "
           f"{view_a['kv_dtype']}; batch {cfg_a.batch}, input {cfg_a.input_len}, output {cfg_a.output_len}")
if view_a["quantisation"]:
    st.caption("Quantisation (A): " + "; ".join(view_a["quantisation"]))


def _metric_row(view: dict, suffix: str = "", ref: dict | None = None) -> None:
    shown = step_metrics(view)
    ref_shown = step_metrics(ref) if ref is not None else None
    cols = st.columns(3) + st.columns(3)  # two rows of three: full numbers, never truncated
    for col, (label, value) in zip(cols, shown.items(), strict=True):
        delta = None
        if ref_shown is not None and label != "Max batch at context":
            try:
                d = parse_metric(value) - parse_metric(ref_shown[label])
                delta = f"{d:+.3g} vs A"
            except ValueError:
                delta = None
        good_low = label in ("TTFT", "TPOT", "E2E per request", "$ / 1M output tokens")
        col.metric(label + suffix, value, delta=delta, delta_color="inverse" if good_low else "normal")


_metric_row(view_a)
if not view_a["batch_fits"]:
    st.warning(f"Batch {cfg_a.batch} does not fit in the KV cache at {cfg_a.input_len + cfg_a.output_len} tokens "
               f"of context (at most {view_a['max_batch_at_context']}): requests would queue or be preempted.")
if view_b is not None:
    st.caption(f"**B**: {view_b['model']} on {view_b['num_gpus']} x {view_b['hardware_name']} (tp={view_b['tp']} "
               f"pp={view_b['pp']}); weights {view_b['weight_dtype']}, KV {view_b['kv_dtype']}"
               + ("; quantisation: " + "; ".join(view_b["quantisation"]) if view_b["quantisation"] else ""))
    _metric_row(view_b, " (B)", ref=view_a)

# One view at a time: drawing every chart on each rerun (as st.tabs does) is what made a knob change slow
# (median 0.40 s to the new number with four charts vs 0.17 s without; docs/performance.md).
VIEWS = ["Roofline", "Kernel times", "Memory", "A vs B"]
view = st.segmented_control("View", VIEWS, default="Roofline", key="step_view") or "Roofline"
views = {"A": view_a} | ({"B": view_b} if view_b is not None else {})

if view == "Roofline":
    cols = st.columns(len(views))
    for col, (name, v) in zip(cols, views.items(), strict=True):
        fig = roofline_figure(v["roofs"], v["bandwidth_bytes_per_s"], v["kernels"],
                              title=f"{name}: {v['hardware_name']} roofline, {v['model']}")
        col.plotly_chart(fig, key=f"roofline_{name}")
        skipped = sorted({k["name"] for k in v["kernels"] if not k["flops"]})
        ridges = ", ".join(f"{r['dtype']} {r['ridge_flops_per_byte']:.0f}" for r in v["roofs"])
        col.caption(f"Ridge points (FLOP/byte): {ridges}. Marker area is proportional to time. Kernels without "
                    f"FLOPs are not on the log axes: {', '.join(skipped) or 'none'}.")

elif view == "Kernel times":
    cols = st.columns(len(views))
    for col, (name, v) in zip(cols, views.items(), strict=True):
        col.plotly_chart(kernel_time_figure(v["kernels"], title=f"{name}: time per kernel (all layers)"),
                         key=f"kernels_{name}")
        col.dataframe(kernel_rows(v), hide_index=True, key=f"kernel_table_{name}")

elif view == "Memory":
    st.plotly_chart(memory_figure({n: v["memory"] for n, v in views.items()}), key="memory")
    for name, v in views.items():
        m = v["memory"]
        st.markdown(f"**{name}**: KV cache {m['kv_capacity_bytes'] / 1e9:.2f} GB per GPU = "
                    f"{m['max_kv_tokens']:,} tokens ({m['kv_bytes_per_token'] / 1e3:.1f} kB/token per GPU); "
                    f"weights {m['weights_bytes'] / 1e9:.2f} GB per GPU.")

else:
    if view_b is None:
        st.info("Turn on *Compare with configuration B* in the sidebar to put two devices or configs side by side.")
    else:
        st.plotly_chart(comparison_figure({"A": view_a, "B": view_b}), key="comparison")
