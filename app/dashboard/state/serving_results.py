"""What a serving what-if run shows: the light copy of a SimResult the page keeps, its KPI cards and the rates of
the latency-versus-load sweep."""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import numpy as np


def light_result(result: Any, bins: int = 300) -> dict[str, Any]:
    """What the serving page keeps of a SimResult: the summary, per-request latencies of completed requests,
    and the per-iteration series binned over simulated time (throughput, queue, batch size, KV usage)."""
    done = np.asarray(result.completed, dtype=bool)
    s = result.series
    out: dict[str, Any] = {"summary": dict(result.summary),
                           "ttft_s": np.asarray(result.ttft_s)[done], "tpot_s": np.asarray(result.tpot_s)[done],
                           "e2e_s": np.asarray(result.e2e_s)[done]}
    t = np.asarray(s.start_s, dtype=float)
    if t.size == 0:
        out["series"] = {k: (np.zeros(0), np.zeros(0)) for k in ("throughput", "waiting", "batch", "kv")}
        return out
    end = float((t + np.asarray(s.duration_s)).max())
    edges = np.linspace(0.0, max(end, 1e-9), bins + 1)
    idx = np.clip(np.searchsorted(edges, t, side="right") - 1, 0, bins - 1)
    width = edges[1] - edges[0]
    n = np.bincount(idx, minlength=bins)
    occupied = n > 0

    def mean_of(v: Any) -> np.ndarray:
        total = np.bincount(idx, weights=np.asarray(v, dtype=float), minlength=bins)
        return np.divide(total, n, out=np.full(bins, np.nan), where=occupied)

    # each decode sequence emits one token per iteration; a finished prefill emits the first token
    tokens = np.bincount(idx, weights=np.asarray(s.decode_seqs, dtype=float), minlength=bins)
    mid = (edges[:-1] + edges[1:]) / 2
    # waiting/running are per replica: sum the replicas' means for the cluster-wide queue
    waiting = np.zeros(bins)
    for rep in np.unique(s.replica):
        sel = np.asarray(s.replica) == rep
        tot = np.bincount(idx[sel], weights=np.asarray(s.waiting, dtype=float)[sel], minlength=bins)
        cnt = np.bincount(idx[sel], minlength=bins)
        waiting += np.divide(tot, cnt, out=np.zeros(bins), where=cnt > 0)
    out["series"] = {"throughput": (mid, tokens / width), "waiting": (mid[occupied], waiting[occupied]),
                     "batch": (mid[occupied], mean_of(s.batch_size)[occupied]),
                     "kv": (mid[occupied], 100 * mean_of(s.kv_usage)[occupied])}
    return out


def serving_kpis(summary: Mapping[str, Any]) -> dict[str, str]:
    """The KPI cards of the serving page, formatted as shown (tests parse these strings)."""

    def ms(x: float) -> str:
        return f"{x * 1e3:.1f} ms" if math.isfinite(x) else "n/a"

    return {
        "P50 TTFT": ms(summary["ttft_s"]["p50"]), "P99 TTFT": ms(summary["ttft_s"]["p99"]),
        "P50 TPOT": ms(summary["tpot_s"]["p50"]), "P99 TPOT": ms(summary["tpot_s"]["p99"]),
        "P50 E2E": f"{summary['e2e_s']['p50']:.2f} s", "P99 E2E": f"{summary['e2e_s']['p99']:.2f} s",
        "Throughput": f"{summary['output_tokens_per_s']:.0f} tok/s",
        "Goodput": f"{summary['goodput_requests_per_s']:.2f} req/s",
        "$ / 1M tokens": f"{summary['cost_per_million_output_tokens_usd']:.3f}",
        "J / token": f"{summary['energy_per_output_token_j']:.3f}",
    }


def technique_kpis(summary: Mapping[str, Any]) -> dict[str, str]:
    """KPI cards for speculation (spec_*), early exit (ee_*), prefix caching and warm-up, when the run has them."""

    def pct(x: float) -> str:
        return f"{100 * x:.1f} %" if math.isfinite(x) else "n/a"

    def num(x: float, fmt: str) -> str:
        return format(x, fmt) if math.isfinite(x) else "n/a"

    out: dict[str, str] = {}
    if "spec_tokens_per_step" in summary:
        out["Tokens / step"] = num(summary["spec_tokens_per_step"], ".3f")
        out["Acceptance rate"] = pct(summary["spec_acceptance_rate"])
        out["Mean k"] = num(summary["spec_mean_k"], ".2f")
        out["Draft time share"] = pct(summary["spec_draft_time_fraction"])
    if "ee_mean_executed_depth" in summary:
        out["Executed depth"] = num(summary["ee_mean_executed_depth"], ".2f") + " layers"
        out["Requested depth"] = num(summary["ee_mean_requested_depth"], ".2f") + " layers"
        out["Time saved"] = pct(summary["ee_time_saved_fraction"])
        out["Energy saved"] = pct(summary["ee_energy_saved_fraction"])
        out["Energy saved (J)"] = num(summary["ee_energy_saved_j"], ".4g") + " J"
    if "prefix_cache_hit_rate" in summary:
        out["Prefix-cache hit rate"] = pct(summary["prefix_cache_hit_rate"])
    return out


def sweep_rates(rate_per_s: float, points: int = 5) -> list[float]:
    """Offered loads of the latency-versus-load sweep: 0.25x .. 2x the current rate (geometric, rounded)."""
    if rate_per_s <= 0 or points < 2:
        raise ValueError(f"rate_per_s={rate_per_s} must be > 0 and points={points} >= 2")
    return [float(round(rate_per_s * f, 4)) for f in np.geomspace(0.25, 2.0, points)]
