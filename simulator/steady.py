"""Steady state of a finite run: where the warm-up (the system filling up from empty) ends, where the drain (no more
arrivals) begins, and whether the latencies in between are steady or still drifting.

- Warm-up: the run starts empty; it ends when the number of requests in the system (waiting + running, summed over
  replicas, averaged over equal time bins) first reaches its median over the arrival period.
- Drain: after the last arrival the system only empties, and a request that is still decoding then runs in ever
  smaller batches. The window ends one P90 end-to-end latency before the last arrival, so that nine in ten of the
  requests in it finished before the drain began.
- Drift: the measured requests that arrived in the window, in arrival order, are cut into BATCHES batches; a line
  fitted to the batch means of their TPOT (TTFT where most requests have one token) gives the drift from the first
  to the last batch. The window is steady when that drift is under DRIFT_LIMIT of the mean or within two standard
  errors of zero (the batch-means method: Law, "Simulation Modeling and Analysis", 5th ed., sec. 9.5).
- A saturated run (the waiting queue still growing at the last arrival) is never steady: its latencies grow with
  the run length.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

__all__ = ["BATCHES", "DRIFT_LIMIT", "MIN_REQUESTS", "in_system_by_time", "steady_state"]

BINS = 200  # equal-time bins of [0, last arrival] for the number in system
BATCHES = 10
MIN_REQUESTS = 100  # 10 batches of at least 10 requests
DRIFT_LIMIT = 0.10


def in_system_by_time(start_s: np.ndarray, replica: np.ndarray, in_system: np.ndarray, end_s: float,
                      bins: int = BINS) -> np.ndarray:
    """Mean number of requests in the system (summed over replicas) in each of `bins` equal parts of [0, end_s],
    from the per-iteration samples; a bin in which a replica ran no iteration counts that replica idle."""
    edges = np.linspace(0.0, end_s, bins + 1)
    total = np.zeros(bins)
    for r in np.unique(replica):
        sel = replica == r
        b = np.clip(np.searchsorted(edges, start_s[sel], side="right") - 1, 0, bins - 1)
        s = np.bincount(b, weights=in_system[sel].astype(np.float64), minlength=bins)
        c = np.bincount(b, minlength=bins)
        total += np.divide(s, c, out=np.zeros(bins), where=c > 0)
    return total


def _drift(y: np.ndarray) -> tuple[float, float, float]:
    """(drift first -> last batch, its standard error, mean) of the line fitted to the batch means of y."""
    k = BATCHES
    m = y.size // k
    means = np.array([np.nanmean(part) for part in np.array_split(y[: m * k], k)])
    x = np.arange(k, dtype=np.float64)
    slope, intercept = np.polyfit(x, means, 1)
    resid = means - (slope * x + intercept)
    se = math.sqrt(float(resid @ resid) / (k - 2) / float(((x - x.mean()) ** 2).sum()))
    return float(slope * (k - 1)), se * (k - 1), float(means.mean())


def steady_state(arrival_s: np.ndarray, tpot_s: np.ndarray, ttft_s: np.ndarray, e2e_s: np.ndarray,
                 measured: np.ndarray,
                 series_start_s: np.ndarray, series_replica: np.ndarray, series_in_system: np.ndarray,
                 last_arrival_s: float, saturated: bool) -> tuple[dict[str, Any], np.ndarray]:
    """The steady window (its description, and the indices of the measured requests that arrived in it; empty when
    the run is not steady, with the reason)."""
    # None, not NaN, for what is undefined: the summary round-trips through JSON (point cache) and compares equal
    out: dict[str, Any] = {"steady": False, "reason": "", "start_s": None, "end_s": float(last_arrival_s),
                           "requests": 0, "drift": None, "metric": ""}
    none = np.flatnonzero(measured)[:0]
    if saturated:
        out["reason"] = ("the waiting queue was still growing at the last arrival (load above capacity): latency "
                         "grows with the run length")
        return out, none
    if series_start_s.size == 0 or last_arrival_s <= 0:
        out["reason"] = "no iteration before the last arrival"
        return out, none
    occupancy = in_system_by_time(series_start_s, series_replica, series_in_system, last_arrival_s)
    first = int(np.argmax(occupancy >= np.median(occupancy)))
    warm_end = first / occupancy.size * last_arrival_s
    out["start_s"] = warm_end
    drain_start = float(last_arrival_s - np.percentile(e2e_s[measured], 90)) if measured.any() else 0.0
    out["end_s"] = drain_start
    window = np.flatnonzero(measured & (arrival_s >= warm_end) & (arrival_s <= drain_start))
    window = window[np.argsort(arrival_s[window], kind="stable")]
    out["requests"] = int(window.size)
    if window.size < MIN_REQUESTS:
        out["reason"] = (f"{window.size} measured requests arrived between the warm-up ({warm_end:.3g} s) and the "
                         f"drain ({drain_start:.3g} s): too few to judge (at least {MIN_REQUESTS}); run more requests")
        return out, none
    y, metric = tpot_s[window], "tpot_s"
    if np.isnan(y).mean() > 0.5:
        y, metric = ttft_s[window], "ttft_s"
    drift, se, mean = _drift(y)
    out.update(drift=drift / mean if mean > 0 else None, metric=metric)
    if abs(drift) > DRIFT_LIMIT * mean and abs(drift) > 2 * se:
        out["reason"] = (f"mean {metric.removesuffix('_s').upper()} drifts {drift / mean:+.0%} from the first to "
                         f"the last tenth of the window (limit {DRIFT_LIMIT:.0%}); run more requests (near capacity "
                         "the load wanders for longer)")
        return out, none
    out["steady"] = True
    return out, window
