"""The discrete-event serving simulator: workloads and traces, requests, schedulers, paged KV cache, replicas,
routers, metrics, and `simulate(SimConfig) -> SimResult`."""

from roofsim.simulator.config import (
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
from roofsim.simulator.metrics import LatencyStats, SimResult, TimeSeries
from roofsim.simulator.request import Request
from roofsim.simulator.run import simulate
from roofsim.simulator.strategy import DecodeProgress, DecodeStrategy, PlainDecoding

__all__ = [
    "SLO", "LatencyStats", "LeastKVRouter", "LeastOutstandingRouter", "OrcaScheduler", "PowerOfTwoRouter",
    "ReplicaGroup", "Request", "RoundRobinRouter", "SJFScheduler", "SarathiScheduler", "SimConfig", "SimResult",
    "StaticScheduler", "DecodeProgress", "DecodeStrategy", "PlainDecoding", "TimeSeries", "VLLMScheduler", "simulate",
]
