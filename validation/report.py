"""Self-contained HTML error report (plotly JS inlined, works offline): predicted-vs-measured and error-vs-size plots
per op group, and the statistics table."""

from __future__ import annotations

import html
import os
import tempfile
from collections.abc import Mapping
from pathlib import Path

import numpy as np

from roofsim.validation.metrics_err import ErrorStats, group_key
from roofsim.validation.predict import Prediction

__all__ = ["kernel_report_html", "write_kernel_report"]

_MAX_POINTS_PER_GROUP = 3000  # keeps the file small; the statistics use every row


def _sample(idx: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    return idx if len(idx) <= _MAX_POINTS_PER_GROUP else np.sort(rng.choice(idx, _MAX_POINTS_PER_GROUP, replace=False))


def kernel_report_html(pred: Prediction, by_op: Mapping[str, ErrorStats], overall: ErrorStats | None,
                       title: str, problems: tuple[str, ...] = (), notes: str = "") -> str:
    import plotly.graph_objects as go  # noqa: PLC0415 (only when a report is asked for)
    from plotly.offline import get_plotlyjs  # noqa: PLC0415

    rng = np.random.default_rng(0)
    meas = pred.measured_s
    p = pred.predicted_s
    keys = np.array([f"{r.hardware}: {group_key(r)}" for r in pred.rows], dtype=object)
    # size axis: FLOPs for tensor-core kernels, bytes moved for memory-bound and communication kernels
    size = np.array([k.flops if k.kind in ("gemm", "attn_prefill", "attn_decode") and k.flops else
                     (k.comm_bytes if k.kind in ("comm", "pp_comm") else k.bytes) for k in pred.kernels])
    err = 100.0 * (p - meas) / meas
    scatter, versus = go.Figure(), go.Figure()
    for key in sorted(set(keys.tolist())):
        idx = _sample(np.flatnonzero(keys == key), rng)
        scatter.add_trace(go.Scattergl(x=meas[idx], y=p[idx], mode="markers", name=key, marker={"size": 4},
                                       hovertemplate="measured %{x:.3g} s<br>predicted %{y:.3g} s"))
        versus.add_trace(go.Scattergl(x=size[idx], y=err[idx], mode="markers", name=key, marker={"size": 4}))
    if len(meas):
        lo, hi = float(min(meas.min(), p.min())), float(max(meas.max(), p.max()))
        scatter.add_trace(go.Scatter(x=[lo, hi], y=[lo, hi], mode="lines", name="y = x",
                                     line={"color": "black", "dash": "dash"}))
    scatter.update_layout(title="Predicted vs measured kernel time", xaxis={"type": "log", "title": "measured (s)"},
                          yaxis={"type": "log", "title": "predicted (s)"}, height=650)
    versus.add_hline(y=0, line={"color": "black", "dash": "dash"})
    versus.update_layout(title="Error vs problem size (FLOPs for GEMM/attention, bytes for memory/communication)",
                         xaxis={"type": "log", "title": "FLOPs or bytes"},
                         yaxis={"title": "error % = 100 (predicted - measured) / measured"}, height=650)
    rows_html = "".join(
        f"<tr><td>{html.escape(k)}</td><td>{s.n}</td><td>{s.median_abs_pct_err:.1f}</td><td>{s.mape:.1f}</td>"
        f"<td>{s.p90_abs_pct_err:.1f}</td><td>{s.bias_pct:+.1f}</td></tr>" for k, s in by_op.items())
    if overall is not None:
        rows_html += (f"<tr><th>overall</th><th>{overall.n}</th><th>{overall.median_abs_pct_err:.1f}</th>"
                      f"<th>{overall.mape:.1f}</th><th>{overall.p90_abs_pct_err:.1f}</th>"
                      f"<th>{overall.bias_pct:+.1f}</th></tr>")
    probs = "".join(f"<li>{html.escape(x)}</li>" for x in problems)
    return f"""<!DOCTYPE html>
<html><head><meta charset="utf-8"><title>{html.escape(title)}</title>
<script type="text/javascript">{get_plotlyjs()}</script>
<style>body{{font-family:sans-serif;margin:2em}} table{{border-collapse:collapse}}
td,th{{border:1px solid #ccc;padding:3px 8px;text-align:right}} td:first-child{{text-align:left}}</style>
</head><body>
<h1>{html.escape(title)}</h1>
<p>{html.escape(notes)}</p>
<p>Error = 100 (predicted &minus; measured) / measured; bias = median signed error (positive: predicted too
slow). Plots show at most {_MAX_POINTS_PER_GROUP} random rows per group; the table uses every row.</p>
<table><tr><th>group</th><th>n</th><th>median |err| %</th><th>MAPE %</th><th>P90 |err| %</th><th>bias %</th></tr>
{rows_html}</table>
{scatter.to_html(full_html=False, include_plotlyjs=False)}
{versus.to_html(full_html=False, include_plotlyjs=False)}
<h2>Rows not predicted ({len(problems)} reasons)</h2><ul>{probs}</ul>
</body></html>
"""


def write_kernel_report(path: Path | str, pred: Prediction, by_op: Mapping[str, ErrorStats],
                        overall: ErrorStats | None, title: str, problems: tuple[str, ...] = (),
                        notes: str = "") -> Path:
    """Write the report atomically (temp file in the same directory, then os.replace)."""
    path = Path(path)
    text = kernel_report_html(pred, by_op, overall, title, problems, notes)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
        os.chmod(tmp, 0o644)  # mkstemp makes 0600; a profile/report is meant to be shared
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path
