"""Pure plotly figure builders for the dashboard: plain data in, `go.Figure` out (no streamlit, no I/O).

Tests call these directly and check the traces (roof heights, ridge points, kernel points, bar lengths).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import plotly.graph_objects as go

PHASE_COLORS = {"prefill": "#1f77b4", "decode": "#d62728"}
ROOF_COLORS = {"fp32": "#7f7f7f", "tf32": "#bcbd22", "bf16": "#2ca02c", "fp16": "#17becf", "fp8": "#ff7f0e",
               "int8": "#9467bd", "int4": "#8c564b", "fp4": "#e377c2"}
SCENARIO_COLORS = ("#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b")
# Roofs are drawn over this arithmetic-intensity range (FLOP/byte), widened to include every kernel.
AI_MIN, AI_MAX = 0.05, 1e5


def _layout(fig: go.Figure, title: str, **kw: Any) -> go.Figure:
    fig.update_layout(title=title, margin={"l": 60, "r": 20, "t": 50, "b": 50}, legend={"orientation": "h", "y": -0.2},
                      **kw)  # no template: Streamlit's theme styles the chart, and a template costs ~50 ms
    return fig


def marker_sizes(seconds: Sequence[float], smallest: float = 6.0, largest: float = 40.0) -> list[float]:
    """Marker diameters whose area is proportional to time (sqrt scaling), in [smallest, largest]."""
    s = np.sqrt(np.maximum(np.asarray(seconds, dtype=float), 0.0))
    top = float(s.max()) if s.size else 0.0
    if top <= 0:
        return [smallest] * len(s)
    return list(smallest + (largest - smallest) * s / top)


def roofline_figure(roofs: Sequence[Mapping[str, Any]], bandwidth_bytes_per_s: float,
                    kernels: Sequence[Mapping[str, Any]], title: str = "Roofline") -> go.Figure:
    """Log-log roofline: one roof min(peak, bandwidth x AI) per dtype with its ridge point marked, and each
    kernel (dict with phase, name, arithmetic_intensity, achieved_flops_per_s, seconds) as a point.

    Kernels with no FLOPs (copies, communication) cannot sit on a log axis and are left out; the caller says so.
    """
    fig = go.Figure()
    plotted = [k for k in kernels if k.get("arithmetic_intensity") and k.get("achieved_flops_per_s", 0) > 0]
    lo, hi = AI_MIN, AI_MAX
    if plotted:
        ais = [float(k["arithmetic_intensity"]) for k in plotted]
        lo, hi = min(lo, min(ais) / 2), max(hi, max(ais) * 2)
    for r in roofs:
        peak = float(r["peak_flops_per_s"])
        ridge = float(r["ridge_flops_per_byte"])
        xs = [lo, ridge, hi]
        ys = [bandwidth_bytes_per_s * lo, peak, peak]
        color = ROOF_COLORS.get(str(r["dtype"]), "#333333")
        fig.add_trace(go.Scatter(x=xs, y=ys, mode="lines", name=f"{r['dtype']} roof", line={"color": color},
                                 hovertemplate=f"{r['dtype']}: peak {peak:.3g} FLOP/s<extra></extra>"))
        fig.add_trace(go.Scatter(x=[ridge], y=[peak], mode="markers+text", name=f"{r['dtype']} ridge",
                                 marker={"symbol": "diamond", "size": 10, "color": color},
                                 text=[f"{ridge:.0f}"], textposition="top left", showlegend=False,
                                 hovertemplate=f"{r['dtype']} ridge: {ridge:.1f} FLOP/byte<extra></extra>"))
    sizes = marker_sizes([float(k["seconds"]) for k in plotted])
    for phase in ("prefill", "decode"):
        idx = [i for i, k in enumerate(plotted) if k.get("phase") == phase]
        if not idx:
            continue
        ks = [plotted[i] for i in idx]
        fig.add_trace(go.Scatter(
            x=[k["arithmetic_intensity"] for k in ks], y=[k["achieved_flops_per_s"] for k in ks],
            mode="markers", name=f"{phase} kernels",
            marker={"size": [sizes[i] for i in idx], "color": PHASE_COLORS[phase], "opacity": 0.7,
                    "line": {"width": 1, "color": "white"}},
            text=[f"{k['name']} ({k.get('bound', '')}-bound, {k['seconds'] * 1e6:.1f} us)" for k in ks],
            hovertemplate="%{text}<br>AI %{x:.3g} FLOP/B<br>%{y:.3g} FLOP/s<extra>" + phase + "</extra>"))
    _layout(fig, title, height=480)
    fig.update_xaxes(type="log", title="arithmetic intensity (FLOP/byte)")
    fig.update_yaxes(type="log", title="achieved FLOP/s")
    return fig


def kernel_time_figure(kernels: Sequence[Mapping[str, Any]], title: str = "Time per kernel") -> go.Figure:
    """Horizontal bars of each kernel's time (microseconds, all layers), one colour per phase."""
    fig = go.Figure()
    for phase in ("prefill", "decode"):
        ks = [k for k in kernels if k.get("phase") == phase]
        if not ks:
            continue
        fig.add_trace(go.Bar(y=[k["name"] for k in ks], x=[k["seconds"] * 1e6 for k in ks], orientation="h",
                             name=phase, marker_color=PHASE_COLORS[phase],
                             text=[f"{k['share']:.0%}" if "share" in k else "" for k in ks],
                             hovertemplate="%{y}: %{x:.1f} us<extra>" + phase + "</extra>"))
    _layout(fig, title, barmode="group", height=max(320, 22 * len({k["name"] for k in kernels}) + 120))
    fig.update_xaxes(title="time per step (us)", type="log")
    fig.update_yaxes(autorange="reversed")
    return fig


MEMORY_PARTS = (("weights_bytes", "weights"), ("activation_bytes", "activations"),
                ("non_torch_bytes", "non-torch (CUDA ctx, NCCL)"), ("kv_capacity_bytes", "KV cache"))


def memory_parts(memory: Mapping[str, float]) -> list[tuple[str, float]]:
    """(label, bytes) per GPU: weights, activations, non-torch, KV cache, and what gpu_memory_utilization keeps free."""
    parts = [(label, float(memory[key])) for key, label in MEMORY_PARTS]
    parts.append(("reserved (1 - utilization)", float(memory["capacity_bytes"] - memory["usable_bytes"])))
    return parts


def memory_figure(memories: Mapping[str, Mapping[str, float]], title: str = "Memory per GPU") -> go.Figure:
    """Stacked horizontal bar per config (label -> MemoryPlan.as_dict()), in GB (1e9 bytes)."""
    fig = go.Figure()
    labels = list(memories)
    colors = ("#1f77b4", "#ff7f0e", "#7f7f7f", "#2ca02c", "#dddddd")
    names = [p for p, _ in memory_parts(next(iter(memories.values())))] if memories else []
    for i, name in enumerate(names):
        xs = [dict(memory_parts(memories[lbl]))[name] / 1e9 for lbl in labels]
        fig.add_trace(go.Bar(y=labels, x=xs, name=name, orientation="h", marker_color=colors[i % len(colors)],
                             hovertemplate=f"{name}: " + "%{x:.2f} GB<extra></extra>"))
    _layout(fig, title, barmode="stack", height=160 + 60 * len(labels))
    fig.update_xaxes(title="GB (1e9 bytes)")
    return fig


def comparison_figure(views: Mapping[str, Mapping[str, float]], title: str = "Comparison") -> go.Figure:
    """Grouped bars of TTFT (ms), TPOT (ms) and output throughput (k tok/s) for each labelled step view."""
    fig = go.Figure()
    metrics = (("TTFT (ms)", "ttft_s", 1e3), ("TPOT (ms)", "tpot_s", 1e3),
               ("throughput (k tok/s)", "output_tokens_per_s", 1e-3))
    for i, (label, v) in enumerate(views.items()):
        fig.add_trace(go.Bar(x=[m[0] for m in metrics], y=[v[m[1]] * m[2] for m in metrics], name=label,
                             marker_color=SCENARIO_COLORS[i % len(SCENARIO_COLORS)]))
    return _layout(fig, title, barmode="group", height=380)


# ----------------------------------------------------------------------------------------- serving


def ecdf(values: Sequence[float]) -> tuple[np.ndarray, np.ndarray]:
    """Sorted finite values and their empirical CDF (i / n)."""
    v = np.asarray(values, dtype=float)
    v = np.sort(v[np.isfinite(v)])
    return v, (np.arange(1, v.size + 1) / v.size if v.size else v)


def latency_cdf_figure(scenarios: Mapping[str, Sequence[float]], metric: str = "TTFT",
                       max_points: int = 2000, band: Sequence[tuple[float, float, float]] = (),
                       band_label: str = "80 % interval (ensemble)") -> go.Figure:
    """Empirical CDF of one latency metric (seconds) per scenario, overlaid; `band`: (fraction of requests, low s,
    high s) per percentile, drawn as a shaded band (an ensemble's interval of the first scenario's percentiles)."""
    fig = go.Figure()
    if band:
        pts = sorted(band)
        fig.add_trace(go.Scatter(x=[lo for _, lo, _ in pts] + [hi for _, _, hi in reversed(pts)],
                                 y=[f for f, _, _ in pts] + [f for f, _, _ in reversed(pts)],
                                 fill="toself", mode="lines", name=band_label, line={"width": 0},
                                 fillcolor="rgba(99, 110, 250, 0.25)", hoverinfo="skip"))
    for i, (label, values) in enumerate(scenarios.items()):
        x, y = ecdf(values)
        if x.size > max_points:  # thin evenly in probability; keeps the shape, bounds the payload
            pick = np.unique(np.linspace(0, x.size - 1, max_points).astype(int))
            x, y = x[pick], y[pick]
        fig.add_trace(go.Scatter(x=x, y=y, mode="lines", name=label,
                                 line={"color": SCENARIO_COLORS[i % len(SCENARIO_COLORS)]}))
    _layout(fig, f"{metric} CDF", height=360)
    fig.update_xaxes(title=f"{metric} (s)")
    fig.update_yaxes(title="fraction of requests", range=[0, 1.02])
    return fig


def timeseries_figure(series: Mapping[str, tuple[Sequence[float], Sequence[float]]], y_title: str,
                      title: str, step: bool = True) -> go.Figure:
    """One line per scenario: label -> (times_s, values)."""
    fig = go.Figure()
    for i, (label, (t, y)) in enumerate(series.items()):
        fig.add_trace(go.Scatter(x=list(t), y=list(y), mode="lines", name=label,
                                 line={"color": SCENARIO_COLORS[i % len(SCENARIO_COLORS)],
                                       "shape": "hv" if step else "linear"}))
    _layout(fig, title, height=320)
    fig.update_xaxes(title="simulated time (s)")
    fig.update_yaxes(title=y_title)
    return fig


def latency_vs_load_figure(curves: Mapping[str, Sequence[Mapping[str, float]]],
                           keys: Sequence[tuple[str, str]] = (("ttft_p50_s", "P50 TTFT"), ("ttft_p99_s", "P99 TTFT"))
                           ) -> go.Figure:
    """Latency (s) against offered request rate for each scenario: label -> [{rate_per_s, <key>: seconds}]."""
    fig = go.Figure()
    dashes = ("solid", "dash", "dot")
    for i, (label, pts) in enumerate(curves.items()):
        pts = sorted(pts, key=lambda p: p["rate_per_s"])
        for j, (key, name) in enumerate(keys):
            fig.add_trace(go.Scatter(x=[p["rate_per_s"] for p in pts], y=[p[key] for p in pts],
                                     mode="lines+markers", name=f"{label}: {name}",
                                     line={"color": SCENARIO_COLORS[i % len(SCENARIO_COLORS)],
                                           "dash": dashes[j % len(dashes)]}))
    _layout(fig, "Latency versus load", height=380)
    fig.update_xaxes(title="offered load (requests/s)")
    fig.update_yaxes(title="latency (s)", type="log")
    return fig


# ----------------------------------------------------------------------------------------- validation


def predicted_vs_measured_figure(measured_s: Sequence[float], predicted_s: Sequence[float],
                                 groups: Sequence[str] | None = None, labels: Sequence[str] | None = None,
                                 title: str = "Predicted versus measured") -> go.Figure:
    """Log-log scatter of predicted against measured seconds with the y = x line and +-20% bands."""
    m = np.asarray(measured_s, dtype=float)
    p = np.asarray(predicted_s, dtype=float)
    if m.shape != p.shape:
        raise ValueError(f"measured ({m.size}) and predicted ({p.size}) must have the same length")
    ok = np.isfinite(m) & np.isfinite(p) & (m > 0) & (p > 0)
    g = np.asarray(groups if groups is not None else ["all"] * m.size, dtype=object)
    lab = np.asarray(labels if labels is not None else [""] * m.size, dtype=object)
    fig = go.Figure()
    if ok.any():
        lo = float(min(m[ok].min(), p[ok].min())) / 1.5
        hi = float(max(m[ok].max(), p[ok].max())) * 1.5
        fig.add_trace(go.Scatter(x=[lo, hi], y=[lo, hi], mode="lines", name="y = x", line={"color": "black"}))
        for f, dash in ((1.2, "dot"), (1 / 1.2, "dot")):
            fig.add_trace(go.Scatter(x=[lo, hi], y=[lo * f, hi * f], mode="lines", showlegend=f > 1,
                                     name="+-20%", line={"color": "gray", "dash": dash}))
    for i, grp in enumerate(dict.fromkeys(g[ok].tolist())):
        sel = ok & (g == grp)
        fig.add_trace(go.Scatter(x=m[sel], y=p[sel], mode="markers", name=str(grp), text=lab[sel],
                                 marker={"color": SCENARIO_COLORS[i % len(SCENARIO_COLORS)], "size": 6,
                                         "opacity": 0.7},
                                 hovertemplate="%{text}<br>measured %{x:.3g} s<br>predicted %{y:.3g} s<extra></extra>"))
    _layout(fig, title, height=460)
    fig.update_xaxes(type="log", title="measured (s)")
    fig.update_yaxes(type="log", title="predicted (s)")
    return fig


def error_histogram_figure(rel_errors: Mapping[str, Sequence[float]], title: str = "Relative error") -> go.Figure:
    """Histogram of (predicted - measured) / measured per group, in percent."""
    fig = go.Figure()
    for i, (grp, errs) in enumerate(rel_errors.items()):
        e = [100 * x for x in errs if math.isfinite(x)]
        fig.add_trace(go.Histogram(x=e, name=grp, opacity=0.6, nbinsx=40,
                                   marker_color=SCENARIO_COLORS[i % len(SCENARIO_COLORS)]))
    _layout(fig, title, barmode="overlay", height=320)
    fig.update_xaxes(title="error (%)")
    return fig
