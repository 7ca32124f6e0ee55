"""How many requests a planner point simulates: the planner chooses it per point unless the PlanSpec forces one.
It starts from the candidate's concurrency (Little's law) and doubles until the run is steady (simulator/steady.py)
and its verdict no longer depends on the length, up to the limit MAX_PLAN_REQUESTS."""

from __future__ import annotations

import math
from typing import Any

from roofsim.simulator.limits import MAX_PLAN_REQUESTS
from roofsim.simulator.steady import MIN_REQUESTS

LADDER_BASE = 500  # lengths are 500 x 2^k requests: points of different candidates share cache keys
# Requests in the system at capacity ~ the concurrency L; the warm-up lasts ~L arrivals, the drain is cut one P90
# end-to-end latency (~1-2 L arrivals) before the end, and the steady window needs MIN_REQUESTS more.
CONCURRENCY_RUNS = 4
# A steady run is settled when doubling it moved both P99s by at most LENGTH_TOLERANCE x their SLO (both runs
# steady): what decides a point is which side of the SLO its P99s fall, so their moves are measured against it.
# A steady verdict alone is not enough: near capacity a 500-request run can be steady with half the P99 TTFT of a
# 4,000-request one (queue excursions last longer than a short run). Only a P99 at least SLO_MARGIN x the SLO
# settles at once, as infeasible: longer runs see longer excursions, so the P99 does not fall by half.
LENGTH_TOLERANCE = 0.10
SLO_MARGIN = 2.0


def start_requests(concurrency: float, cap: int = MAX_PLAN_REQUESTS) -> int:
    """First length tried for a candidate that holds up to `concurrency` requests at once: the smallest ladder
    length >= CONCURRENCY_RUNS x concurrency + MIN_REQUESTS (at most `cap`)."""
    need = CONCURRENCY_RUNS * max(1.0, concurrency) + MIN_REQUESTS
    k = max(0, math.ceil(math.log2(need / LADDER_BASE)))
    return min(cap, LADDER_BASE * 2**k)


def ladder(cap: int = MAX_PLAN_REQUESTS) -> list[int]:
    """Every length the planner may choose, up to `cap` (the last one = cap)."""
    out = [LADDER_BASE * 2**k for k in range(32) if LADDER_BASE * 2**k < cap]
    return [*out, cap]


def p99s(summary: dict[str, Any]) -> tuple[float, float]:
    """The P99 TTFT and TPOT a point is judged by: over the steady window when the run reached one (the warm-up
    and the drain left out), else over all measured requests."""
    st = summary.get("steady_state", {})
    src = st if st.get("steady") else summary
    return float(src["ttft_s"]["p99"]), float(src["tpot_s"]["p99"])


def overloaded(summary: dict[str, Any]) -> bool:
    """Stopped as overloaded, saturated or rejecting requests: a longer run only makes that worse."""
    return bool(summary["stop_reason"] != "completed" or summary["saturated"] or summary["requests_rejected"])


def _ratio(slo: tuple[float, float], p: tuple[float, float]) -> float:
    r = max(p[0] / slo[0], p[1] / slo[1] if math.isfinite(p[1]) else 0.0)
    return r if math.isfinite(r) else math.inf


def settled(slo: tuple[float, float], runs: list[tuple[int, dict[str, Any]]],
            forced: bool = False) -> tuple[bool, str]:
    """Whether the last of a point's runs (lengths in increasing order, their summaries) gives a verdict the run
    length no longer changes, and if not, why. A forced length has no other length to compare with: there a
    steady run counts as settled."""
    n, s = runs[-1]
    if overloaded(s):
        return True, ""
    st = s["steady_state"]
    if not st["steady"]:
        return False, f"{n} requests: not steady: {st['reason']}"
    if forced:
        return True, ""
    p = p99s(s)
    if _ratio(slo, p) >= SLO_MARGIN:
        return True, ""
    if len(runs) >= 2 and runs[-2][1]["steady_state"]["steady"] and not overloaded(runs[-2][1]):
        q = p99s(runs[-2][1])
        moved = [abs(a - b) / limit for a, b, limit in zip(p, q, slo, strict=True) if math.isfinite(a - b)]
        if all(m <= LENGTH_TOLERANCE for m in moved):
            return True, ""
        return False, (f"{n} requests: a P99 moved by {max(moved):.0%} of its SLO from {runs[-2][0]} requests "
                       f"(more than {LENGTH_TOLERANCE:.0%})")
    return False, f"{n} requests: steady, not yet checked at another length"


def next_length(slo: tuple[float, float], runs: list[tuple[int, dict[str, Any]]], cap: int) -> int | None:
    """The length to run next (double, at most `cap`), or None when the point is settled or at the cap."""
    n = runs[-1][0]
    if settled(slo, runs)[0] or n >= cap:
        return None
    return min(2 * n, cap)


__all__ = ["CONCURRENCY_RUNS", "LADDER_BASE", "LENGTH_TOLERANCE", "MAX_PLAN_REQUESTS", "SLO_MARGIN", "ladder", "next_length",
           "overloaded", "p99s", "settled", "start_requests"]
