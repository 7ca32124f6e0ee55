"""Capacity planning, a client of the simulator: the cheapest (fewest-GPU, least-energy) replica
configuration that serves a target request rate within P99 TTFT/TPOT SLOs, searched by simulation."""

from roofsim.simulator.planning.bounds import Bounds, TraceStats, analytical_bounds
from roofsim.simulator.planning.cache import (
    CACHE_ENV,
    PointCache,
    code_fingerprint,
    default_cache_dir,
    point_key,
)
from roofsim.simulator.planning.evaluate import evaluate_point
from roofsim.simulator.planning.executors import (
    DaskExecutor,
    Executor,
    ProcessExecutor,
    SerialExecutor,
    make_executor,
)
from roofsim.simulator.planning.points import (
    grid_index,
    grid_rate,
    index_for_replicas,
    point_config,
    replicas_at,
    workload_at,
)
from roofsim.simulator.planning.pricing import usd_per_million_tokens
from roofsim.simulator.planning.result import Outcome, PlanResult, PlanStats, Point
from roofsim.simulator.planning.search import ProgressFn, plan, resolve
from roofsim.simulator.planning.spec import (
    Candidate,
    Objective,
    PlannerError,
    PlanSpec,
    candidates,
    quant_for,
)

__all__ = [
    "CACHE_ENV", "Bounds", "Candidate", "DaskExecutor", "Executor", "Objective", "Outcome", "PlanResult",
    "PlanSpec", "PlanStats", "PlannerError", "Point", "PointCache", "ProcessExecutor", "ProgressFn", "SerialExecutor",
    "TraceStats", "analytical_bounds", "candidates", "code_fingerprint", "default_cache_dir", "evaluate_point",
    "grid_index", "grid_rate", "index_for_replicas", "make_executor", "plan", "point_config", "point_key",
    "quant_for", "replicas_at", "resolve", "usd_per_million_tokens", "workload_at",
]
