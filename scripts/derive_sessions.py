"""Derive the multi-turn session statistics of simulator/sessions.py (its MOONCAKE_* defaults) from the Mooncake
conversation trace: chain requests into sessions by their prefix-block hash ids, then report turns per session,
first-turn prompt, new tokens per turn, answer length quantiles and the gap between turns.
Usage: .venv/bin/python scripts/derive_sessions.py [--data ../shared/data]"""

from __future__ import annotations

import argparse
import json
import logging
from pathlib import Path

import numpy as np

logger = logging.getLogger("derive_sessions")
P = (0.0, 0.1, 0.25, 0.5, 0.75, 0.9, 0.99, 1.0)


def chain(rows: list[dict]) -> np.ndarray:
    """parent[j] = the latest earlier request whose full blocks (all its ids but a partial last one) lead request
    j's ids, sharing at least two blocks (one shared block is the system prompt every request has); -1 = none."""
    latest: dict[tuple[int, ...], int] = {}
    parent = np.full(len(rows), -1)
    for j, r in enumerate(rows):
        ids = r["hash_ids"]
        for n in range(len(ids) - 1, 1, -1):
            p = latest.get(tuple(ids[:n]))
            if p is not None:
                parent[j] = p
                break
        latest[tuple(ids[:-1])] = j
        latest[tuple(ids)] = j
    return parent


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--data", type=Path, default=Path(__file__).resolve().parents[2] / "shared" / "data")
    args = ap.parse_args()
    path = args.data / "traces/mooncake/conversation_trace.jsonl"
    rows = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    parent = chain(rows)
    inp = np.array([r["input_length"] for r in rows])
    out = np.array([r["output_length"] for r in rows])
    ts = np.array([r["timestamp"] for r in rows]) / 1000.0
    session = np.empty(len(rows), dtype=int)
    n_sessions = 0
    for j, p in enumerate(parent):
        if p < 0:
            session[j], n_sessions = n_sessions, n_sessions + 1
        else:
            session[j] = session[p]
    cont = parent >= 0
    turns = np.bincount(session)
    new = inp[cont] - inp[parent[cont]] - out[parent[cont]]
    gap = ts[cont] - ts[parent[cont]]
    q = [100 * p for p in P]
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    logger.info("%d requests, %d continue one of %d sessions", len(rows), cont.sum(), n_sessions)
    logger.info("turns per session: mean %.2f, single-turn %.1f %%, p99 %d, max %d", turns.mean(),
                100 * (turns == 1).mean(), np.percentile(turns, 99), turns.max())
    logger.info("first-turn input quantiles %s: %s", P, np.percentile(inp[~cont], q).round().tolist())
    logger.info("new tokens per turn (clipped to 1; %.1f %% negative): %s", 100 * (new < 0).mean(),
                np.percentile(np.maximum(new, 1), q).round().tolist())
    logger.info("output quantiles: %s", np.percentile(out, q).round().tolist())
    logger.info("gap between turns: median %.1f s, lognormal sigma %.2f", np.median(gap), np.log(gap[gap > 0]).std())


if __name__ == "__main__":
    main()
