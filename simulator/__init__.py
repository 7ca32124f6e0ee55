"""The discrete-event serving simulator: workloads and traces, requests, schedulers, paged KV cache, replicas,
routers, metrics, and `simulate(SimConfig) -> SimResult`."""

from simulator.config import (
    SLO,
    LeastKVRouter,
    LeastOutstandingRouter,
    OrcaScheduler,
    PowerOfTwoRouter,
    ReplicaGroup,
    RoundRobinRouter,
    SarathiScheduler,
    SimConfig,
    SJFScheduler,
    StaticScheduler,
    VLLMScheduler,
)
from simulator.metrics import LatencyStats, SimResult, TimeSeries
from simulator.replica import StepModel
from simulator.request import Request
from simulator.run import simulate

__all__ = [
    "SLO", "LatencyStats", "LeastKVRouter", "LeastOutstandingRouter", "OrcaScheduler", "PowerOfTwoRouter",
    "ReplicaGroup", "Request", "RoundRobinRouter", "SJFScheduler", "SarathiScheduler", "SimConfig", "SimResult",
    "StaticScheduler", "StepModel", "TimeSeries", "VLLMScheduler", "simulate",
]
