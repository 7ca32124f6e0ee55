"""The limits of every size, count and duration a user can set (one table, docs/reliability.md), and `limited`,
the annotation that puts one on a pydantic field: checked before anything is allocated, named in the error."""

from __future__ import annotations

import math
from typing import Annotated, Any

from pydantic import AfterValidator, Field

# name -> (value, why). The values bound memory and time of one run on a laptop; raise one here (and in the docs
# table) if a real use needs more. Each error that enforces a limit names it.
LIMITS: dict[str, tuple[float, str]] = {
    "MAX_REQUESTS": (1_000_000, "requests of one run (num_requests, max_requests, requests implied by rate x "
                                "duration): each costs ~1 kB of arrays and simulator state"),
    "MAX_PLAN_REQUESTS": (32_000, "requests of one planner point when the planner chooses the length (it doubles "
                                  "a run until it is steady): 16x the 2,000 a point once had, ~10 s of one core"),
    "MAX_DURATION_S": (1e7, "seconds of simulated time (arrival window, trace span, max_sim_time_s, think and "
                            "front-end times): ~116 days; float64 clock steps stay below 2e-9 s up to here, "
                            "far finer than one GPU step, so step times never vanish into the clock"),
    "MAX_RATE_PER_S": (1e6, "arrival rate, requests/s (also --rate-scale)"),
    "MIN_RATE_SCALE": (1e-6, "smallest --rate-scale / rate_scale"),
    "MAX_REPLICAS": (4096, "replicas of one run, summed over replica groups (and the planner's max_replicas)"),
    "MAX_PARALLEL": (1024, "tp, pp and ep degree of one replica"),
    "MAX_CLIENTS": (100_000, "closed-loop clients (benchmark concurrency)"),
    "MAX_BATCH_SEQS": (1_000_000, "sequences in one iteration (max_num_seqs, plan --max-batch, estimate --batch)"),
    "MAX_BLOCK_TOKENS": (65_536, "tokens per KV-cache block"),
    "MAX_SEED": (2**63 - 1, "random seed (TOML integers are 64-bit signed)"),
}


def limit(name: str) -> float:
    """The value of limit `name` (KeyError listing the known ones)."""
    if name not in LIMITS:
        raise KeyError(f"no limit {name!r}; known: {', '.join(LIMITS)}")
    return LIMITS[name][0]


MAX_REQUESTS = int(limit("MAX_REQUESTS"))
MAX_PLAN_REQUESTS = int(limit("MAX_PLAN_REQUESTS"))
MAX_DURATION_S = limit("MAX_DURATION_S")
MAX_RATE_PER_S = limit("MAX_RATE_PER_S")
MIN_RATE_SCALE = limit("MIN_RATE_SCALE")
MAX_REPLICAS = int(limit("MAX_REPLICAS"))
MAX_PARALLEL = int(limit("MAX_PARALLEL"))
MAX_CLIENTS = int(limit("MAX_CLIENTS"))
MAX_BATCH_SEQS = int(limit("MAX_BATCH_SEQS"))
MAX_BLOCK_TOKENS = int(limit("MAX_BLOCK_TOKENS"))
MAX_SEED = int(limit("MAX_SEED"))


def _num(x: float) -> str:
    return str(x) if isinstance(x, int) else f"{x:g}"


def exceeds(value: float, name: str, what: str = "") -> str:
    """The message of a value over limit `name`."""
    subject = f"{what}={_num(value)}" if what else _num(value)
    return f"{subject} is above the limit {name}={_num(limit(name))} (roofsim.simulator.limits, docs/reliability.md)"


def _checker(name: str, low: float | None) -> Any:
    top = limit(name)

    def check(v: Any) -> Any:
        if isinstance(v, float) and not math.isfinite(v):
            raise ValueError(f"{v} is not a finite number")
        if v > top:
            raise ValueError(exceeds(v, name))
        if low is not None and v < low:
            raise ValueError(f"{_num(v)} is below the limit {_num(low)}")
        return v
    return check


def limited(tp: type, name: str, ge: float | None = None, gt: float | None = None,
            low_limit: float | None = None) -> Any:
    """`tp` (int or float) with a lower bound (ge/gt, pydantic's own) and the named upper limit; floats must be
    finite. The JSON schema carries the maximum and the limit's name (`x-limit`); `low_limit` is an extra named
    lower bound (e.g. MIN_RATE_SCALE)."""
    extra = {"maximum": limit(name), "x-limit": name}
    field = Field(ge=ge, gt=gt, json_schema_extra=extra) if tp is int else Field(
        ge=ge, gt=gt, allow_inf_nan=False, json_schema_extra=extra)
    return Annotated[tp, field, AfterValidator(_checker(name, low_limit))]


__all__ = [
    "LIMITS", "MAX_BATCH_SEQS", "MAX_BLOCK_TOKENS", "MAX_CLIENTS", "MAX_DURATION_S", "MAX_PARALLEL",
    "MAX_PLAN_REQUESTS", "MAX_RATE_PER_S", "MAX_REPLICAS", "MAX_REQUESTS", "MAX_SEED", "MIN_RATE_SCALE", "exceeds",
    "limit", "limited",
]
