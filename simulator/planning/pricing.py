"""What a deployment costs: replicas for a target rate, $/hour from the catalog's GPU prices, $/1M output
tokens, and the ranking key (objective first) that branch and bound compares deployments by."""

from __future__ import annotations

import math

from roofsim.hardware_specs.catalog import load_hardware
from roofsim.simulator.planning.spec import Candidate, PlanSpec

RankKey = tuple[float, float, str]


def replicas_for(spec: PlanSpec, capacity_per_s: float) -> int:
    """Replicas of `capacity_per_s` each that serve the target rate (the 1e-9 keeps an exact fit at n)."""
    return max(1, math.ceil(spec.rate_per_s / capacity_per_s - 1e-9))


def gpu_usd_per_hour(cand: Candidate) -> float:
    """Rental price of one GPU of the candidate's hardware (catalog `price_usd_per_hour`, sources there)."""
    return load_hardware(cand.hardware).price_usd_per_hour


def deployment_usd_per_hour(cand: Candidate, replicas: int) -> float:
    return replicas * cand.gpus * gpu_usd_per_hour(cand)


def usd_per_million_tokens(usd_per_hour: float, output_tokens_per_s: float) -> float:
    """Cost of a million output tokens for a deployment producing `output_tokens_per_s`."""
    return usd_per_hour / 3600 / output_tokens_per_s * 1e6


def ranking_key(spec: PlanSpec, cand: Candidate, n: int) -> RankKey:
    """The ranking key of `cand` deployed as n replicas (objectives cost and gpus): lower is better; the same
    order as the final ranking (objective, the other of cost/GPUs, label), so pruning on it is exact."""
    gpus = n * cand.gpus
    usd = deployment_usd_per_hour(cand, n)
    return (float(gpus), usd, cand.label) if spec.objective == "gpus" else (usd, float(gpus), cand.label)


def replicas_cap(spec: PlanSpec, cand: Candidate, incumbent: RankKey) -> int:
    """Most replicas with which `cand` still ranks at or above the incumbent key (0: it cannot)."""
    unit = cand.gpus * (1.0 if spec.objective == "gpus" else gpu_usd_per_hour(cand))
    n = int(incumbent[0] / unit) + 1
    while n >= 1 and ranking_key(spec, cand, n) > incumbent:
        n -= 1
    return n


__all__ = ["RankKey", "deployment_usd_per_hour", "gpu_usd_per_hour", "ranking_key", "replicas_cap",
           "replicas_for", "usd_per_million_tokens"]
