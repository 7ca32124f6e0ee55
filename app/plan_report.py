"""Capacity-plan report: the ranked table as rows, the cost-versus-P99-latency Pareto figure (plotly), and a
self-contained HTML page with both."""

from __future__ import annotations

import html
import math
from pathlib import Path
from typing import Any

import plotly.graph_objects as go
from plotly.subplots import make_subplots

from roofsim.simulator.limits import MAX_PLAN_REQUESTS
from roofsim.simulator.outfiles import atomic_write_text
from roofsim.simulator.planning import Outcome, PlanResult

HEADERS = ["#", "configuration", "status", "capacity/replica", "replicas", "GPUs", "$/hour", "$/1M out tok",
           "J/out tok", "P99 TTFT", "P99 TPOT", "requests", "steady", "why not the winner"]


def _num(x: float, fmt: str) -> str:
    return format(x, fmt) if isinstance(x, int | float) and math.isfinite(x) else "-"


def outcome_row(o: Outcome) -> list[str]:
    status = o.status.replace("_", " ") + (" *" if o.pareto else "")
    cap = f"{o.capacity_per_s:.3g} req/s" if math.isfinite(o.capacity_per_s) else "-"
    if math.isfinite(o.capacity_per_s) and o.capacity_below_per_s > o.capacity_per_s * 1.25:
        # the search stopped once the replica count was known: show the bracket, not a false precision
        top = f"{o.capacity_below_per_s:.3g}" if math.isfinite(o.capacity_below_per_s) else "inf"
        cap = f"{o.capacity_per_s:.3g}-{top} req/s"
    ttft = f"{o.p99_ttft_s:.3g} s" if math.isfinite(o.p99_ttft_s) else "-"
    tpot = f"{o.p99_tpot_s * 1e3:.3g} ms" if math.isfinite(o.p99_tpot_s) else "-"
    steady = "-" if o.steady is None else "yes" if o.steady else "NO"
    return [str(o.rank) if o.rank else "", o.candidate.label, status, cap, str(o.replicas or "-"),
            str(o.gpus or "-"), _num(o.usd_per_hour, ".2f"), _num(o.usd_per_million_tokens, ".3f"),
            _num(o.j_per_token, ".3g"), ttft, tpot, str(o.num_requests or "-"), steady, o.reason]


def run_length_text(result: PlanResult) -> str:
    """How long the simulated points were: forced, or chosen by the planner (the range it used)."""
    n = result.spec.num_requests
    if n is not None:
        return f"{n} requests per point (--num-requests)"
    used = sorted({q.num_requests for o in result.outcomes for q in o.points})
    span = f"{used[0]}-{used[-1]}" if len(used) > 1 else f"{used[0]}" if used else "-"
    return (f"requests per point chosen by the planner until steady and stable ({span}, at most "
            f"{MAX_PLAN_REQUESTS})")


def unsteady_text(result: PlanResult) -> str | None:
    """A warning naming the candidates whose capacity rests on a point that was not steady (or not stable across
    lengths), with the first reason; None when every capacity is settled."""
    bad = result.unsteady
    if not bad:
        return None
    hint = ("drop --num-requests to let the planner choose the length" if result.spec.num_requests is not None
            else f"they reached the limit MAX_PLAN_REQUESTS={MAX_PLAN_REQUESTS} first")
    return (f"NOT STEADY: the capacity of {len(bad)} candidate(s) rests on a run whose verdict may change with "
            f"its length ({hint}): " + "; ".join(f"{o.candidate.label} ({o.unsteady_why})" for o in bad[:3])
            + ("; ..." if len(bad) > 3 else ""))


def table_rows(result: PlanResult, limit: int | None = None) -> list[list[str]]:
    outs = list(result.outcomes)
    if limit is not None:
        outs = outs[:limit]
    return [outcome_row(o) for o in outs]


def pareto_figure(result: PlanResult) -> go.Figure:
    """Feasible configurations: deployment $/hour against P99 TTFT and P99 TPOT at the deployment's per-replica
    load; the Pareto front (nothing else is as cheap and as fast on both) is joined by a line, the winner starred."""
    feas = result.feasible
    fig = make_subplots(rows=1, cols=2, subplot_titles=("P99 TTFT vs cost", "P99 TPOT vs cost"))
    for col, attr, scale, unit in ((1, "p99_ttft_s", 1.0, "s"), (2, "p99_tpot_s", 1e3, "ms")):
        for front in (False, True):
            pts = [o for o in feas if o.pareto == front]
            if front:
                pts.sort(key=lambda o: o.usd_per_hour)
            fig.add_trace(go.Scatter(
                x=[o.usd_per_hour for o in pts], y=[getattr(o, attr) * scale for o in pts],
                mode="lines+markers" if front else "markers",
                name="Pareto front" if front else "feasible", legendgroup="front" if front else "other",
                showlegend=col == 1, marker={"size": 10 if front else 7},
                text=[f"{o.candidate.label}<br>{o.replicas} replica(s), {o.gpus} GPUs" for o in pts],
                hovertemplate="%{text}<br>$%{x:.2f}/h<br>%{y:.3g} " + unit + "<extra></extra>"), row=1, col=col)
        w = result.winner
        if w is not None:
            fig.add_trace(go.Scatter(x=[w.usd_per_hour], y=[getattr(w, attr) * scale], mode="markers",
                                     marker={"symbol": "star", "size": 18, "color": "gold",
                                             "line": {"width": 1, "color": "black"}},
                                     name="winner", showlegend=col == 1, text=[w.candidate.label],
                                     hovertemplate="winner: %{text}<extra></extra>"), row=1, col=col)
        fig.update_xaxes(title_text="deployment cost, $/hour", row=1, col=col)
        fig.update_yaxes(title_text=f"P99 {'TTFT' if col == 1 else 'TPOT'} at load, {unit}", row=1, col=col)
    s = result.spec
    fig.add_hline(y=s.slo_ttft_s, line_dash="dot", annotation_text="SLO", row=1, col=1)
    fig.add_hline(y=s.slo_tpot_s * 1e3, line_dash="dot", annotation_text="SLO", row=1, col=2)
    fig.update_layout(title=f"{s.model}: {s.rate_per_s:g} req/s, P99 TTFT <= {s.slo_ttft_s:g} s, "
                            f"P99 TPOT <= {s.slo_tpot_s * 1e3:g} ms", height=480)
    return fig


def _html_table(rows: list[list[str]]) -> str:
    head = "".join(f"<th>{html.escape(h)}</th>" for h in HEADERS)
    body = "".join("<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in r) + "</tr>" for r in rows)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def report_html(result: PlanResult, command: str = "", offline: bool = True) -> str:
    """One page: summary, figure, winner metrics, the full ranked table. `offline` inlines plotly.js (~4.6 MB) so the
    report opens without a network; offline=False loads it from its CDN (small files for the docs)."""
    s, st = result.spec, result.stats
    w = result.winner
    parts = [f"<h1>roofsim capacity plan: {html.escape(s.model)}</h1>"]
    if command:
        parts.append(f"<pre>{html.escape(command)}</pre>")
    if w is not None:
        parts.append(f"<p><b>Winner ({html.escape(s.objective)}):</b> {w.replicas} x {html.escape(w.candidate.label)}"
                     f" = {w.gpus} GPUs, ${w.usd_per_hour:.2f}/hour, ${w.usd_per_million_tokens:.3f} per million "
                     f"output tokens, {w.j_per_token:.3g} J/output token; capacity {w.capacity_per_s:.3g} req/s per "
                     "replica.</p>")
    else:
        parts.append("<p><b>No candidate meets the SLOs.</b> Closest: "
                     + "; ".join(html.escape(f"{o.candidate.label} ({o.reason})") for o in result.closest()) + "</p>")
    parts.append(f"<p>{html.escape(run_length_text(result))}.</p>")
    if (warning := unsteady_text(result)) is not None:
        parts.append(f"<p><b>{html.escape(warning)}</b></p>")
    parts.append(f"<p>{st.candidates} candidates, {st.simulated_candidates} simulated, {st.simulations} simulations "
                 f"run, {st.cache_hits} from cache, {st.wall_s:.1f} s wall on {st.workers} worker(s). "
                 "Latencies are at the deployment's per-replica load; * = on the Pareto front.</p>")
    parts.append(pareto_figure(result).to_html(full_html=False, include_plotlyjs=True if offline else "cdn"))
    if result.winner_metrics is not None:
        m = result.winner_metrics
        parts.append("<h2>Winning deployment, simulated at the target rate</h2><pre>" + html.escape(
            winner_summary_text(m)) + "</pre>")
    parts.append("<h2>All candidates</h2>" + _html_table(table_rows(result)))
    style = ("<style>body{font-family:sans-serif;margin:1.5em}table{border-collapse:collapse;font-size:12px}"
             "td,th{border:1px solid #ccc;padding:2px 6px;text-align:right}td:nth-child(2),td:last-child"
             "{text-align:left}</style>")
    return f"<!DOCTYPE html><html><head><meta charset='utf-8'><title>roofsim plan</title>{style}</head><body>" \
           + "\n".join(parts) + "</body></html>"


def winner_summary_text(m: dict[str, Any]) -> str:
    def ms(d: dict[str, float], k: str) -> str:
        return f"{d[k] * 1e3:.1f}" if math.isfinite(d[k]) else "-"

    lines = [f"requests {m['requests_completed']}/{m['requests_total']} completed, stop: {m['stop_reason']}"
             + (", SATURATED" if m["saturated"] else ""),
             "latency (ms)   mean     p50     p90     p99"]
    for key, label in (("ttft_s", "TTFT"), ("tpot_s", "TPOT"), ("e2e_s", "E2E")):
        d = m[key]
        lines.append(f"{label:<12}" + "".join(f"{ms(d, k):>8}" for k in ("mean", "p50", "p90", "p99")))
    lines.append(f"throughput {m['requests_per_s']:.2f} req/s, {m['output_tokens_per_s']:.0f} output tok/s; "
                 f"SLO attainment {m['slo_attainment']:.1%}; goodput {m['goodput_requests_per_s']:.2f} req/s")
    lines.append(f"energy {m['energy_per_output_token_j']:.3g} J/output token; "
                 f"${m['cost_per_million_output_tokens_usd']:.3f} per million output tokens (busy-time priced)")
    return "\n".join(lines)


def write_report(result: PlanResult, path: Path, command: str = "", offline: bool = True) -> None:
    """The HTML report, written whole or not at all (simulator.outfiles)."""
    atomic_write_text(path, report_html(result, command, offline))


__all__ = ["HEADERS", "outcome_row", "pareto_figure", "report_html", "run_length_text", "table_rows",
           "unsteady_text", "winner_summary_text", "write_report"]
