"""One planner point: simulate a config and keep the machine-independent summary. This is the value the point
cache stores, so the cache fingerprint covers this module (the rest of the planning package only decides which
configs to run)."""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from roofsim.simulator.config import SimConfig
from roofsim.simulator.run import simulate

# Fields of a run summary that depend on the machine, not the config: never cached, never compared.
WALL_FIELDS = ("wall_s", "sim_s_per_wall_s", "iterations_per_wall_s")


@contextmanager
def _quiet_simulator() -> Iterator[None]:
    """Overloaded point runs are expected; keep their 'stopped early' warnings out of the user's terminal."""
    names = ("roofsim.simulator.cluster", "roofsim.simulator.run")
    loggers = [logging.getLogger(n) for n in names]
    levels = [lg.level for lg in loggers]
    for lg in loggers:
        lg.setLevel(logging.ERROR)
    try:
        yield
    finally:
        for lg, lv in zip(loggers, levels, strict=True):
            lg.setLevel(lv)


def evaluate_point(config: SimConfig) -> dict[str, Any]:
    """Simulate one config; return its summary without the machine-dependent wall-time fields, plus `wall_s`.
    Depends only on the config (and code), so any executor returns the same thing."""
    t0 = time.perf_counter()
    with _quiet_simulator():
        r = simulate(config)
    summary = {k: v for k, v in r.summary.items() if k not in WALL_FIELDS}
    return {"summary": summary, "wall_s": time.perf_counter() - t0}


__all__ = ["WALL_FIELDS", "evaluate_point"]
