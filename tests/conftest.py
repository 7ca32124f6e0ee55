"""Shared fixtures: the measured data in ../shared/data (skip cleanly when absent), the --update-golden flag
that lets tests/golden/test_golden.py rewrite its expected outputs, and `simulate_trace` for hand-made traces."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from hypothesis import settings

from roofsim.simulator.config import SimConfig
from roofsim.simulator.metrics import SimResult
from roofsim.simulator.run import simulate
from roofsim.simulator.workload import Trace

ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = Path(os.environ.get("ROOFSIM_SHARED_DATA", ROOT.parent / "shared" / "data"))

# Property-based tests draw the same examples on every run (derandomize, no example database): `make test` gives
# the same verdict on every machine and every run. HYPOTHESIS_PROFILE=explore searches with fresh randomness.
settings.register_profile("roofsim", derandomize=True, database=None)
settings.register_profile("explore", derandomize=False)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "roofsim"))


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption("--update-golden", action="store_true", default=False,
                     help="rewrite tests/golden/*.json from the current code instead of comparing against them")


@pytest.fixture(scope="session")
def update_golden(request: pytest.FixtureRequest) -> bool:
    """True when pytest ran with --update-golden: golden tests write their expected files and pass."""
    return bool(request.config.getoption("--update-golden"))


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """Path to ../shared/data; tests that need it skip with a reason when it is not there."""
    if not SHARED_DATA.is_dir():
        pytest.skip(f"measured data folder {SHARED_DATA} is absent (set ROOFSIM_SHARED_DATA)")
    return SHARED_DATA


def _simulate_trace(inputs: list[int], outputs: list[int], arrivals: list[float] | None = None, *,
                    scheduler: dict[str, Any] | None = None, seed: int = 0, router: str = "round_robin",
                    groups: list[dict[str, Any]] | None = None, run: dict[str, Any] | None = None,
                    **group: Any) -> SimResult:
    """Simulate a hand-made trace (all arrivals at t=0 unless given) on Llama-3.1-8B / H100 replicas (one group
    built from `scheduler` and `group` overrides, or the given `groups`); `run`: SimConfig-level fields."""
    n = len(inputs)
    trace = Trace(np.zeros(n) if arrivals is None else np.asarray(arrivals, float), np.asarray(inputs),
                  np.asarray(outputs), source="hand-made")
    if groups is None:
        groups = [{"model": "llama-3.1-8b", "hardware": "h100-sxm", "scheduler": scheduler or {"kind": "vllm"},
                   **group}]
    cfg = SimConfig.model_validate({
        "workload": {"kind": "synthetic", "arrival": {"kind": "offline"}, "input": {"kind": "fixed", "tokens": 1},
                     "output": {"kind": "fixed", "tokens": 1}, "num_requests": n},
        "replicas": groups, "router": {"kind": router}, "seed": seed, **(run or {})})
    return simulate(cfg, trace=trace)


@pytest.fixture(scope="session")
def simulate_trace() -> Callable[..., SimResult]:
    """`simulate_trace(inputs, outputs, arrivals=None, scheduler={...}, **group_overrides)` -> SimResult."""
    return _simulate_trace
