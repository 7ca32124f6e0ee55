"""Self-contained HTML reports (plotly JS inlined) for end-to-end validation: predicted-vs-measured scatter per
metric for benchmark tables, and predicted-vs-measured CDF overlays plus per-step times for a replayed log."""

from __future__ import annotations

import html
import math
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from roofsim.validation.bench_table import BenchRow
from roofsim.validation.e2e import METRICS, RowPrediction
from roofsim.validation.replay import ReplayResult

__all__ = ["benchmarks_report_html", "write_benchmarks_report", "replay_report_html", "write_replay_report",
           "scatter_figure", "cdf_figure"]


def _page(title: str, body: list[str]) -> str:
    from plotly.offline import get_plotlyjs  # noqa: PLC0415 (only when a report is asked for)

    return (f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title>"
            f"<script>{get_plotlyjs()}</script><style>body{{font-family:sans-serif;margin:2em}}"
            f"table{{border-collapse:collapse}}td,th{{border:1px solid #ccc;padding:2px 8px;text-align:right}}"
            f"</style></head><body><h1>{html.escape(title)}</h1>{''.join(body)}</body></html>")


def _table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    def cell(v: Any) -> str:
        if isinstance(v, float):
            return "" if math.isnan(v) else f"{v:.4g}"
        return html.escape(str(v))
    head = "".join(f"<th>{html.escape(h)}</th>" for h in headers)
    body = "".join("<tr>" + "".join(f"<td>{cell(v)}</td>" for v in r) + "</tr>" for r in rows)
    return f"<table><tr>{head}</tr>{body}</table>"


def scatter_figure(preds: Sequence[RowPrediction], metric: str, key: Callable[[BenchRow], str]):
    """Predicted vs measured `metric` (log-log), one trace per group, with the y = x line."""
    import plotly.graph_objects as go  # noqa: PLC0415

    fig = go.Figure()
    lo, hi = math.inf, 0.0
    groups: dict[str, list[RowPrediction]] = {}
    for p in preds:
        m = getattr(p.row, metric)
        if p.problem is None and m is not None and m > 0:
            groups.setdefault(key(p.row), []).append(p)
    for g, ps in sorted(groups.items()):
        x = [getattr(p.row, metric) for p in ps]
        y = [p.predicted[metric] for p in ps]
        lo, hi = min(lo, *x, *y), max(hi, *x, *y)
        text = [f"isl {p.row.isl} osl {p.row.osl} c {p.row.concurrency} tp {p.row.tp}" for p in ps]
        fig.add_trace(go.Scatter(x=x, y=y, mode="markers", name=g, text=text, marker={"size": 6, "opacity": 0.7}))
    if hi > 0:
        fig.add_trace(go.Scatter(x=[lo, hi], y=[lo, hi], mode="lines", name="y = x",
                                 line={"color": "black", "dash": "dash"}))
    fig.update_layout(title=f"{metric}: predicted vs measured", xaxis_title=f"measured {metric}",
                      yaxis_title=f"predicted {metric}", xaxis_type="log", yaxis_type="log", height=500)
    return fig


def benchmarks_report_html(preds: Sequence[RowPrediction], stats: Mapping[str, Mapping[str, Mapping[str, float]]],
                           title: str, problems: Sequence[str] = (), key: Callable[[BenchRow], str] | None = None,
                           notes: str = "") -> str:
    key = key or (lambda r: f"{r.model} {r.framework}")
    body = [f"<p>{html.escape(notes)}</p>" if notes else ""]
    rows = [[g, m, s["n"], s["median_abs_pct_err"], s["mape"], s["bias_pct"]]
            for g, d in stats.items() for m, s in d.items()]
    body.append("<h2>Error statistics (% of measured; bias = median signed error, + = predicted too slow)</h2>")
    body.append(_table(["group", "metric", "n", "median |err| %", "MAPE %", "bias %"], rows))
    for metric in METRICS:
        if any(p.problem is None and getattr(p.row, metric) is not None for p in preds):
            body.append(scatter_figure(preds, metric, key).to_html(full_html=False, include_plotlyjs=False))
    if problems:
        body.append(f"<h2>{len(problems)} rows not predicted</h2><ul>"
                    + "".join(f"<li>{html.escape(p)}</li>" for p in problems) + "</ul>")
    return _page(title, body)


def write_benchmarks_report(path: Path | str, *args: Any, **kw: Any) -> Path:
    path = Path(path)
    path.write_text(benchmarks_report_html(*args, **kw), encoding="utf-8")
    return path


def cdf_figure(measured: np.ndarray, predicted: np.ndarray, metric: str):
    """Empirical CDFs of measured and predicted values of one metric (milliseconds)."""
    import plotly.graph_objects as go  # noqa: PLC0415

    fig = go.Figure()
    for name, x in (("measured", measured), ("predicted", predicted)):
        x = np.sort(np.asarray(x, dtype=float)[np.isfinite(x)]) * 1e3
        if x.size > 4000:  # keep the file small: 4000 evenly spaced quantiles
            x = np.quantile(x, np.linspace(0, 1, 4000))
        fig.add_trace(go.Scatter(x=x, y=np.arange(1, x.size + 1) / max(x.size, 1), mode="lines", name=name))
    fig.update_layout(title=f"{metric} CDF", xaxis_title=f"{metric} (ms)", yaxis_title="fraction of requests"
                      if metric != "itl_s" else "fraction of gaps", height=400)
    return fig


def replay_report_html(res: ReplayResult, title: str) -> str:
    import plotly.graph_objects as go  # noqa: PLC0415

    body = ["<h2>Notes</h2><ul>" + "".join(f"<li>{html.escape(n)}</li>" for n in res.notes) + "</ul>"]
    rows = [[m, s, v["measured"] * 1e3, v["predicted"] * 1e3, v["err_pct"]]
            for m, d in res.comparison.items() for s, v in d.items()]
    rows += [[k, "", v["measured"], v["predicted"], v["err_pct"]] for k, v in res.totals.items()]
    body.append("<h2>Measured vs predicted (latencies in ms)</h2>")
    body.append(_table(["metric", "stat", "measured", "predicted", "err %"], rows))
    for m in res.comparison:
        body.append(cdf_figure(res.measured_values(m), res.predicted_values(m), m)
                    .to_html(full_html=False, include_plotlyjs=False))
    if res.steps:
        fig = go.Figure()
        for kind in ("prefill", "decode"):
            st = [s for s in res.steps if s["kind"] == kind]
            if st:
                b = [s["batch_size"] for s in st]
                fig.add_trace(go.Scatter(x=b, y=[s["measured_s"] * 1e3 for s in st], mode="markers+lines",
                                         name=f"{kind} measured"))
                fig.add_trace(go.Scatter(x=b, y=[s["predicted_s"] * 1e3 for s in st], mode="markers+lines",
                                         name=f"{kind} predicted", line={"dash": "dash"}))
        fig.update_layout(title="mean step time per batch size", xaxis_title="batch size",
                          yaxis_title="step time (ms)", height=400)
        body.append(fig.to_html(full_html=False, include_plotlyjs=False))
        body.append(_table(["kind", "batch", "n", "measured ms", "predicted ms", "err %"],
                           [[s["kind"], s["batch_size"], s["n"], s["measured_s"] * 1e3, s["predicted_s"] * 1e3,
                             s["err_pct"]] for s in res.steps]))
    return _page(title, body)


def write_replay_report(path: Path | str, res: ReplayResult, title: str) -> Path:
    path = Path(path)
    path.write_text(replay_report_html(res, title), encoding="utf-8")
    return path
