"""Workloads: the `Trace` struct of arrays the engine replays, synthetic arrival processes and length
distributions (pydantic discriminated unions on `kind`), trace-file and built-in named workloads, and
`build_trace`, which turns any workload config plus a numpy Generator into a `Trace`."""

from __future__ import annotations

import logging
import math
import tomllib
from collections.abc import Callable
from dataclasses import dataclass
from functools import cache
from importlib import resources
from typing import Annotated, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, model_validator

from roofsim.hardware_specs.errors import UnknownNameError
from roofsim.simulator.clients import PROMPT_HASH_BLOCK_TOKENS, Harness, client_model, pooled_prompt_hash_ids
from roofsim.simulator.limits import MAX_DURATION_S, MAX_REQUESTS, MIN_RATE_SCALE, exceeds, limited

logger = logging.getLogger(__name__)

# Largest token count we accept anywhere: keeps per-request squares (attention cost sums) inside int64.
MAX_TOKENS = 2**31 - 1


# --------------------------------------------------------------------------------------------------
# Trace: what the engine consumes
# --------------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True, eq=False)  # eq on arrays would be ambiguous: compare by identity
class Trace:
    """Requests as a struct of arrays, sorted by arrival (arrays are made read-only).

    `arrival_s` is float64, finite, >= 0 and non-decreasing (all zeros for closed-loop and offline
    workloads: the engine decides when those are issued). Token counts are int64 in [1, MAX_TOKENS].
    """

    arrival_s: np.ndarray
    input_tokens: np.ndarray
    output_tokens: np.ndarray
    hash_ids: tuple[tuple[int, ...], ...] | None = None
    source: str = ""
    hash_block_tokens: int = 512  # prompt tokens per hash id (Mooncake: 512)

    def __post_init__(self) -> None:
        arrival = np.array(self.arrival_s, dtype=np.float64)
        inp = np.array(self.input_tokens, dtype=np.int64)
        out = np.array(self.output_tokens, dtype=np.int64)
        where = f" ({self.source})" if self.source else ""
        if arrival.ndim != 1 or inp.shape != arrival.shape or out.shape != arrival.shape:
            raise ValueError(
                f"trace{where}: arrival_s, input_tokens, output_tokens must be 1-D of equal length, "
                f"got shapes {arrival.shape}, {inp.shape}, {out.shape}"
            )
        if arrival.size:
            if not np.all(np.isfinite(arrival)):
                raise ValueError(f"trace{where}: arrival_s has a NaN or infinite value at index "
                                 f"{int(np.flatnonzero(~np.isfinite(arrival))[0])}")
            if arrival[0] < 0:
                raise ValueError(f"trace{where}: arrival_s[0]={arrival[0]} must be >= 0")
            back = np.flatnonzero(np.diff(arrival) < 0)
            if back.size:
                i = int(back[0]) + 1
                raise ValueError(f"trace{where}: arrival_s must be non-decreasing; "
                                 f"arrival_s[{i}]={arrival[i]} < arrival_s[{i - 1}]={arrival[i - 1]}")
            for name, arr in (("input_tokens", inp), ("output_tokens", out)):
                bad = np.flatnonzero((arr < 1) | (arr > MAX_TOKENS))
                if bad.size:
                    raise ValueError(f"trace{where}: {name}[{int(bad[0])}]={int(arr[bad[0]])} "
                                     f"must be in [1, {MAX_TOKENS}]")
        if self.hash_block_tokens < 1:
            raise ValueError(f"trace{where}: hash_block_tokens={self.hash_block_tokens} must be >= 1")
        if self.hash_ids is not None and len(self.hash_ids) != arrival.size:
            raise ValueError(f"trace{where}: hash_ids has {len(self.hash_ids)} entries for {arrival.size} requests")
        for frozen in (arrival, inp, out):
            frozen.flags.writeable = False
        object.__setattr__(self, "arrival_s", arrival)
        object.__setattr__(self, "input_tokens", inp)
        object.__setattr__(self, "output_tokens", out)

    def __len__(self) -> int:
        return int(self.arrival_s.size)

    def _take(self, index: slice | np.ndarray, arrival_s: np.ndarray, source: str) -> Trace:
        hashes = None
        if self.hash_ids is not None:
            if isinstance(index, slice):
                hashes = self.hash_ids[index]
            else:
                hashes = tuple(self.hash_ids[int(i)] for i in index)
        return Trace(arrival_s, self.input_tokens[index], self.output_tokens[index], hashes, source,
                     self.hash_block_tokens)

    def scale_rate(self, factor: float) -> Trace:
        """The same requests with every arrival time divided by `factor` (2 = twice the rate, half the span)."""
        if not (math.isfinite(factor) and factor > 0):
            raise ValueError(f"rate scale factor={factor} must be finite and > 0")
        return Trace(self.arrival_s / factor, self.input_tokens, self.output_tokens, self.hash_ids,
                     f"{self.source} x{factor:g} rate", self.hash_block_tokens)

    def window(self, start_s: float, end_s: float) -> Trace:
        """Requests arriving in [start_s, end_s), re-based so that `start_s` becomes t=0 (gaps are kept)."""
        if not (math.isfinite(start_s) and start_s >= 0 and end_s > start_s):
            raise ValueError(f"window [{start_s}, {end_s}) must have 0 <= start_s < end_s")
        lo = int(np.searchsorted(self.arrival_s, start_s, side="left"))
        hi = int(np.searchsorted(self.arrival_s, end_s, side="left"))
        sl = slice(lo, hi)
        return self._take(sl, self.arrival_s[sl] - start_s, f"{self.source} [{start_s:g}, {end_s:g}) s")

    def head(self, n: int) -> Trace:
        """The first `n` requests (all of them when the trace is shorter)."""
        if n < 0:
            raise ValueError(f"head n={n} must be >= 0")
        sl = slice(0, n)
        return self._take(sl, self.arrival_s[sl], f"{self.source} first {n}")

    @property
    def duration_s(self) -> float:
        """Span from t=0 to the last arrival (0 for an empty trace)."""
        return float(self.arrival_s[-1]) if self.arrival_s.size else 0.0

    @property
    def rate_per_s(self) -> float:
        """Mean arrival rate = (n - 1) / (last - first arrival), the inverse of the mean gap;
        `inf` when all requests arrive at once (closed-loop / offline), `nan` with fewer than two."""
        n = len(self)
        if n < 2:
            return math.nan
        span = float(self.arrival_s[-1] - self.arrival_s[0])
        return (n - 1) / span if span > 0 else math.inf

    @property
    def mean_input_tokens(self) -> float:
        return float(self.input_tokens.mean()) if len(self) else math.nan

    @property
    def mean_output_tokens(self) -> float:
        return float(self.output_tokens.mean()) if len(self) else math.nan


# --------------------------------------------------------------------------------------------------
# Arrival processes
# --------------------------------------------------------------------------------------------------

_FROZEN = ConfigDict(frozen=True, extra="forbid")
PositiveFloat = Annotated[float, Field(gt=0, allow_inf_nan=False)]
NonNegFloat = Annotated[float, Field(ge=0, allow_inf_nan=False)]
# Sizes, rates and durations a user sets: bounded by the named limits of simulator/limits.py.
Rate = limited(float, "MAX_RATE_PER_S", gt=0)
NonNegRate = limited(float, "MAX_RATE_PER_S", ge=0)
Seconds = limited(float, "MAX_DURATION_S", gt=0)
NonNegSeconds = limited(float, "MAX_DURATION_S", ge=0)
Requests = limited(int, "MAX_REQUESTS", ge=1)


class PoissonArrivals(BaseModel):
    """Poisson process: independent exponential gaps of mean 1/rate, never truncated or rounded."""

    model_config = _FROZEN
    kind: Literal["poisson"] = "poisson"
    rate_per_s: Rate


class GammaArrivals(BaseModel):
    """Renewal process with Gamma gaps of mean 1/rate and coefficient of variation `cv`
    (cv=1 is Poisson, cv>1 bursty, cv<1 smoother): shape = 1/cv^2, scale = cv^2/rate."""

    model_config = _FROZEN
    kind: Literal["gamma"] = "gamma"
    rate_per_s: Rate
    cv: PositiveFloat


class ConstantArrivals(BaseModel):
    """Evenly spaced arrivals, one every 1/rate seconds."""

    model_config = _FROZEN
    kind: Literal["constant"] = "constant"
    rate_per_s: Rate


class BurstArrivals(BaseModel):
    """On/off modulated Poisson: `on_s` seconds at `on_rate_per_s`, then `off_s` seconds at
    `off_rate_per_s` (may be 0), repeating, starting with an on period. Mean rate =
    (on_rate*on_s + off_rate*off_s) / (on_s + off_s)."""

    model_config = _FROZEN
    kind: Literal["burst"] = "burst"
    on_rate_per_s: Rate
    off_rate_per_s: NonNegRate = 0.0
    on_s: Seconds
    off_s: NonNegSeconds


class ClosedLoopArrivals(BaseModel):
    """`clients` users each send a request, wait for it to finish, think `think_s`, send the next.
    The engine issues these; the trace carries lengths only (arrival_s all zeros).

    Benchmark-harness options (docs/workloads.md, "Closed loop like a benchmark client"):
    - `ramp_up_s`: how the clients start. 0 = all at t=0 (lockstep). A number R = client k (0-based) starts at
      k * R / clients, the linear concurrency ramp of aiperf's `--concurrency-ramp-duration`. "first_token" =
      client k+1 starts when client k's first request gets its first token (parameter-free: spreads the clients
      by one prefill each, no cost-model estimate needed).
    - `warmup_requests`: the first warmup_requests x clients requests issued are warm-up (genai-perf/aiperf
      `--warmup-request-count`, given per client); they run and are counted (`requests_warmup`) but excluded from
      latency and throughput statistics.
    - `warmup_drain`: True = aiperf's behaviour: after the last warm-up request is sent, nothing more is sent
      until every warm-up response is in; then the measured phase starts (with the ramp again). False = the
      measured requests follow the warm-up ones without a pause.
    - `client`: the benchmark harness whose clients these are (simulator/clients.py): the client-side gap between
      a response and the next request (drawn from the run's Generator) and the spacing of a phase's first sends.
      "ideal" = lock-step clients with no gap (identical requests then stay phase-locked).
    """

    model_config = _FROZEN
    kind: Literal["closed_loop"] = "closed_loop"
    clients: limited(int, "MAX_CLIENTS", gt=0)  # type: ignore[valid-type]
    think_s: NonNegSeconds = 0.0
    ramp_up_s: NonNegSeconds | Literal["first_token"] = 0.0
    warmup_requests: limited(int, "MAX_REQUESTS", ge=0) = Field(  # type: ignore[valid-type]
        0, description="warm-up requests per client, excluded from the metrics")
    warmup_drain: bool = True
    client: Harness = "ideal"


class OfflineArrivals(BaseModel):
    """Every request is present at t=0 (batch / offline inference)."""

    model_config = _FROZEN
    kind: Literal["offline"] = "offline"


Arrival = Annotated[
    PoissonArrivals | GammaArrivals | ConstantArrivals | BurstArrivals | ClosedLoopArrivals | OfflineArrivals,
    Field(discriminator="kind"),
]


def _renewal(draw_gaps: Callable[[np.random.Generator, int], np.ndarray], mean_gap_s: float,
             rng: np.random.Generator, n: int | None, duration_s: float | None) -> np.ndarray:
    """Arrival times of a renewal process started at t=0 (first arrival after one gap): exactly `n`
    arrivals, or every arrival in [0, duration_s), or whichever limit is hit first."""
    if duration_s is None:
        assert n is not None
        return np.cumsum(draw_gaps(rng, n))
    # Draw in deterministic chunks (size depends only on the config) until the duration is passed.
    expected = duration_s / mean_gap_s
    chunk = int(expected + 6 * math.sqrt(expected) + 64)
    if n is not None:
        chunk = min(chunk, n)
    parts: list[np.ndarray] = []
    last = 0.0
    total = 0
    while last < duration_s and (n is None or total < n):
        times = last + np.cumsum(draw_gaps(rng, chunk))
        parts.append(times)
        last = float(times[-1])
        total += times.size
    arrivals = np.concatenate(parts) if parts else np.empty(0)
    arrivals = arrivals[arrivals < duration_s]  # the run ends at duration_s: later arrivals never happen
    return arrivals[:n] if n is not None else arrivals


def _poisson(cfg: PoissonArrivals, rng: np.random.Generator, n: int | None, d: float | None) -> np.ndarray:
    mean = 1.0 / cfg.rate_per_s
    return _renewal(lambda g, k: g.exponential(mean, k), mean, rng, n, d)


def _gamma(cfg: GammaArrivals, rng: np.random.Generator, n: int | None, d: float | None) -> np.ndarray:
    shape = 1.0 / cfg.cv**2
    mean = 1.0 / cfg.rate_per_s
    return _renewal(lambda g, k: g.gamma(shape, mean / shape, k), mean, rng, n, d)


def _constant(cfg: ConstantArrivals, rng: np.random.Generator, n: int | None, d: float | None) -> np.ndarray:
    gap = 1.0 / cfg.rate_per_s
    limits = [math.ceil(d * cfg.rate_per_s)] if d is not None else []
    count = min(limits + ([n] if n is not None else []))
    arrivals = np.arange(1, count + 1, dtype=np.float64) * gap
    return arrivals[arrivals < d] if d is not None else arrivals


def _burst(cfg: BurstArrivals, rng: np.random.Generator, n: int | None, d: float | None) -> np.ndarray:
    # Time change: a unit-rate Poisson process in "operational time" Lambda(t) = integral of rate,
    # mapped back through Lambda^-1, is exactly the modulated Poisson process (Cinlar, 1975).
    period = cfg.on_s + cfg.off_s
    on_mass = cfg.on_rate_per_s * cfg.on_s
    cycle_mass = on_mass + cfg.off_rate_per_s * cfg.off_s

    def op_time(t: float) -> float:
        c, rem = divmod(t, period)
        return c * cycle_mass + min(rem, cfg.on_s) * cfg.on_rate_per_s + max(rem - cfg.on_s, 0) * cfg.off_rate_per_s

    u = _renewal(lambda g, k: g.exponential(1.0, k), 1.0, rng, n, None if d is None else op_time(d))
    cycles, rem = np.divmod(u, cycle_mass)
    in_on = rem < on_mass
    off_rate = cfg.off_rate_per_s if cfg.off_rate_per_s > 0 else 1.0  # unused when off_rate is 0
    t = cycles * period + np.where(in_on, rem / cfg.on_rate_per_s, cfg.on_s + (rem - on_mass) / off_rate)
    return np.maximum.accumulate(t)  # guards float ties at period edges; the map itself is monotone


def _at_zero(cfg: ClosedLoopArrivals | OfflineArrivals, rng: np.random.Generator,
             n: int | None, d: float | None) -> np.ndarray:
    assert n is not None
    return np.zeros(n)


_ARRIVALS: dict[str, Callable[..., np.ndarray]] = {
    "poisson": _poisson,
    "gamma": _gamma,
    "constant": _constant,
    "burst": _burst,
    "closed_loop": _at_zero,
    "offline": _at_zero,
}


def sample_arrivals(arrival: BaseModel, rng: np.random.Generator, num_requests: int | None = None,
                    duration_s: float | None = None) -> np.ndarray:
    """Arrival times (float64, non-decreasing) of `arrival`: exactly `num_requests`, or all in
    [0, duration_s), or whichever comes first when both are given."""
    kind = getattr(arrival, "kind", None)
    if kind not in _ARRIVALS:
        raise UnknownNameError("arrival kind", str(kind), _ARRIVALS)
    if num_requests is None and duration_s is None:
        raise ValueError("give num_requests or duration_s (or both)")
    if kind in ("closed_loop", "offline") and num_requests is None:
        raise ValueError(f"arrival kind {kind!r} needs num_requests (the engine decides when requests are sent)")
    return _ARRIVALS[kind](arrival, rng, num_requests, duration_s)


def mean_rate_per_s(arrival: BaseModel) -> float:
    """Long-run mean arrival rate of an open-loop process (nan for closed-loop and offline)."""
    if isinstance(arrival, PoissonArrivals | GammaArrivals | ConstantArrivals):
        return arrival.rate_per_s
    if isinstance(arrival, BurstArrivals):
        return (arrival.on_rate_per_s * arrival.on_s + arrival.off_rate_per_s * arrival.off_s) / (
            arrival.on_s + arrival.off_s)
    return math.nan


def with_rate(arrival: BaseModel, rate_per_s: float) -> BaseModel:
    """The same process shape at a new mean rate (a burst scales both rates; cv is kept)."""
    if isinstance(arrival, PoissonArrivals | GammaArrivals | ConstantArrivals):
        return arrival.model_copy(update={"rate_per_s": rate_per_s})
    if isinstance(arrival, BurstArrivals):
        f = rate_per_s / mean_rate_per_s(arrival)
        return arrival.model_copy(update={"on_rate_per_s": arrival.on_rate_per_s * f,
                                          "off_rate_per_s": arrival.off_rate_per_s * f})
    raise ValueError(f"arrival kind {arrival.kind!r} has no rate to override")  # type: ignore[attr-defined]


# --------------------------------------------------------------------------------------------------
# Length distributions. Every one is sampled by inverse CDF from uniforms, which makes truncation
# exact (no loop) and lets a Gaussian copula correlate input and output lengths.
# --------------------------------------------------------------------------------------------------

Tokens = Annotated[int, Field(ge=1, le=MAX_TOKENS)]


class FixedLengths(BaseModel):
    """Every request has exactly `tokens` tokens."""

    model_config = _FROZEN
    kind: Literal["fixed"] = "fixed"
    tokens: Tokens


class UniformLengths(BaseModel):
    """Integers uniform on [low, high], both inclusive."""

    model_config = _FROZEN
    kind: Literal["uniform"] = "uniform"
    low: Tokens
    high: Tokens

    @model_validator(mode="after")
    def _check(self) -> UniformLengths:
        if self.high < self.low:
            raise ValueError(f"uniform lengths: high={self.high} < low={self.low}")
        return self


def _check_bounds(low: int, high: int | None, name: str) -> None:
    if high is not None and high < low:
        raise ValueError(f"{name} lengths: high={high} < low={low}")


def _truncnorm_bounds(loc: float, scale: float, low: int, high: int | None,
                      transform: Callable[[float], float], name: str) -> tuple[float, float]:
    """Standardised bounds of the continuous interval [low-0.5, high+0.5) that rounds onto [low, high];
    rejects a config whose range holds (numerically) no probability mass instead of clamping."""
    from scipy import stats  # noqa: PLC0415 (see _ppf_normal)

    a = (transform(low - 0.5) - loc) / scale
    b = math.inf if high is None else (transform(high + 0.5) - loc) / scale
    mass = float(stats.norm.sf(a) - stats.norm.sf(b)) if a > 0 else float(stats.norm.cdf(b) - stats.norm.cdf(a))
    if not mass > 1e-12:
        raise ValueError(f"{name} lengths: the range [{low}, {high}] holds {mass:.3g} of the distribution's "
                         "probability; widen the range or move the distribution")
    return a, b


class NormalLengths(BaseModel):
    """Normal(mean, std) rounded to integers and truncated to [low, high] (resampled, not clamped:
    out-of-range draws are redrawn, done exactly by inverse-CDF sampling of the truncated law)."""

    model_config = _FROZEN
    kind: Literal["normal"] = "normal"
    mean: Annotated[float, Field(allow_inf_nan=False)]
    std: PositiveFloat
    low: Tokens = 1
    high: Tokens | None = None

    @model_validator(mode="after")
    def _check(self) -> NormalLengths:
        _check_bounds(self.low, self.high, "normal")
        _truncnorm_bounds(self.mean, self.std, self.low, self.high, float, "normal")
        return self


class LognormalLengths(BaseModel):
    """Lognormal: ln(tokens) ~ Normal(mu, sigma), given `mu` or `median` (= e^mu), rounded and
    truncated to [low, high] (resampled, not clamped, as for NormalLengths)."""

    model_config = _FROZEN
    kind: Literal["lognormal"] = "lognormal"
    median: PositiveFloat | None = None
    mu: Annotated[float, Field(allow_inf_nan=False)] | None = None
    sigma: PositiveFloat
    low: Tokens = 1
    high: Tokens | None = None

    @model_validator(mode="after")
    def _check(self) -> LognormalLengths:
        if (self.median is None) == (self.mu is None):
            raise ValueError("lognormal lengths: give exactly one of median and mu")
        _check_bounds(self.low, self.high, "lognormal")
        _truncnorm_bounds(self.log_mu, self.sigma, self.low, self.high, math.log, "lognormal")
        return self

    @property
    def log_mu(self) -> float:
        return self.mu if self.mu is not None else math.log(self.median)  # type: ignore[arg-type]


class ZipfLengths(BaseModel):
    """Zipf on [low, high]: P(tokens = low + k) proportional to (k + 1)^-a, k = 0 .. high-low."""

    model_config = _FROZEN
    kind: Literal["zipf"] = "zipf"
    a: PositiveFloat
    low: Tokens = 1
    high: Tokens

    @model_validator(mode="after")
    def _check(self) -> ZipfLengths:
        _check_bounds(self.low, self.high, "zipf")
        if self.high - self.low >= 10_000_000:
            raise ValueError(f"zipf lengths: support [{self.low}, {self.high}] has more than 1e7 values")
        return self


class EmpiricalLengths(BaseModel):
    """Draws uniformly (with replacement) from the given token counts (a bootstrap of observed values)."""

    model_config = _FROZEN
    kind: Literal["empirical"] = "empirical"
    values: Annotated[tuple[Tokens, ...], Field(min_length=1)]

    @classmethod
    def from_trace(cls, trace: Trace, which: Literal["input", "output"]) -> EmpiricalLengths:
        arr = trace.input_tokens if which == "input" else trace.output_tokens
        return cls(values=tuple(int(v) for v in arr))


class QuantileLengths(BaseModel):
    """A quantile table: `tokens[i]` is the `probabilities[i]` quantile; the quantile function is
    linearly interpolated between points and rounded. probabilities run from 0 to 1 (min and max)."""

    model_config = _FROZEN
    kind: Literal["quantiles"] = "quantiles"
    probabilities: Annotated[tuple[Annotated[float, Field(ge=0, le=1)], ...], Field(min_length=2)]
    tokens: tuple[Annotated[float, Field(ge=1, le=MAX_TOKENS)], ...]

    @model_validator(mode="after")
    def _check(self) -> QuantileLengths:
        p, q = self.probabilities, self.tokens
        if len(p) != len(q):
            raise ValueError(f"quantile lengths: {len(p)} probabilities but {len(q)} tokens")
        if p[0] != 0 or p[-1] != 1:
            raise ValueError(f"quantile lengths: probabilities must start at 0 and end at 1, got {p[0]}..{p[-1]}")
        if any(b <= a for a, b in zip(p, p[1:], strict=False)):
            raise ValueError("quantile lengths: probabilities must be strictly increasing")
        if any(b < a for a, b in zip(q, q[1:], strict=False)):
            raise ValueError("quantile lengths: tokens must be non-decreasing")
        return self

    def mean_tokens(self) -> float:
        """Mean of the interpolated (continuous) quantile function."""
        p, q = np.asarray(self.probabilities), np.asarray(self.tokens)
        return float(np.sum(np.diff(p) * (q[1:] + q[:-1]) / 2))


Lengths = Annotated[
    FixedLengths | UniformLengths | NormalLengths | LognormalLengths | ZipfLengths | EmpiricalLengths
    | QuantileLengths,
    Field(discriminator="kind"),
]


def _round(x: np.ndarray, low: int, high: int | None) -> np.ndarray:
    # Rounding the continuous draw on [low-0.5, high+0.5) lands in [low, high]; the clip only absorbs
    # floating-point error at the interval ends, never real draws.
    return np.clip(np.floor(x + 0.5), low, MAX_TOKENS if high is None else high).astype(np.int64)


def _ppf_fixed(cfg: FixedLengths, u: np.ndarray) -> np.ndarray:
    return np.full(u.shape, cfg.tokens, dtype=np.int64)


def _ppf_uniform(cfg: UniformLengths, u: np.ndarray) -> np.ndarray:
    k = np.floor(u * (cfg.high - cfg.low + 1)).astype(np.int64)
    return cfg.low + np.minimum(k, cfg.high - cfg.low)  # u < 1, the minimum only guards float error


def _ppf_normal(cfg: NormalLengths, u: np.ndarray) -> np.ndarray:
    # scipy.stats is imported where lengths are drawn, not with the module: a process that only replays a built
    # trace (an ensemble member's or a planner's pool worker) then starts without it (about a second of CPU)
    from scipy import stats  # noqa: PLC0415

    a, b = _truncnorm_bounds(cfg.mean, cfg.std, cfg.low, cfg.high, float, "normal")
    return _round(cfg.mean + cfg.std * stats.truncnorm.ppf(u, a, b), cfg.low, cfg.high)


def _ppf_lognormal(cfg: LognormalLengths, u: np.ndarray) -> np.ndarray:
    from scipy import stats  # noqa: PLC0415 (see _ppf_normal)

    a, b = _truncnorm_bounds(cfg.log_mu, cfg.sigma, cfg.low, cfg.high, math.log, "lognormal")
    return _round(np.exp(cfg.log_mu + cfg.sigma * stats.truncnorm.ppf(u, a, b)), cfg.low, cfg.high)


@cache
def _zipf_cdf(a: float, size: int) -> np.ndarray:
    w = np.arange(1, size + 1, dtype=np.float64) ** -a
    cdf = np.cumsum(w)
    return cdf / cdf[-1]


def _ppf_zipf(cfg: ZipfLengths, u: np.ndarray) -> np.ndarray:
    cdf = _zipf_cdf(cfg.a, cfg.high - cfg.low + 1)
    k = np.minimum(np.searchsorted(cdf, u, side="right"), cdf.size - 1)
    return cfg.low + k.astype(np.int64)


def _ppf_empirical(cfg: EmpiricalLengths, u: np.ndarray) -> np.ndarray:
    values = np.asarray(cfg.values, dtype=np.int64)
    idx = np.minimum((u * values.size).astype(np.int64), values.size - 1)
    return np.sort(values)[idx]


def _ppf_quantiles(cfg: QuantileLengths, u: np.ndarray) -> np.ndarray:
    x = np.interp(u, np.asarray(cfg.probabilities), np.asarray(cfg.tokens))
    return _round(x, 1, None)


_LENGTHS: dict[str, Callable[..., np.ndarray]] = {
    "fixed": _ppf_fixed,
    "uniform": _ppf_uniform,
    "normal": _ppf_normal,
    "lognormal": _ppf_lognormal,
    "zipf": _ppf_zipf,
    "empirical": _ppf_empirical,
    "quantiles": _ppf_quantiles,
}


def lengths_ppf(lengths: BaseModel, u: np.ndarray) -> np.ndarray:
    """Token counts (int64 >= 1) at probabilities `u` in [0, 1) of a length distribution."""
    kind = getattr(lengths, "kind", None)
    if kind not in _LENGTHS:
        raise UnknownNameError("length distribution kind", str(kind), _LENGTHS)
    return _LENGTHS[kind](lengths, np.asarray(u, dtype=np.float64))


def sample_lengths(lengths: BaseModel, rng: np.random.Generator, n: int) -> np.ndarray:
    """`n` independent token counts from a length distribution."""
    return lengths_ppf(lengths, rng.random(n))


# --------------------------------------------------------------------------------------------------
# Workload configs
# --------------------------------------------------------------------------------------------------


class SyntheticWorkload(BaseModel):
    """Arrivals from a process, input/output lengths from distributions. `correlation` is the
    Gaussian-copula correlation of (input, output) lengths: 0 = independent; the normal-scores
    correlation of a trace estimates it. With both `num_requests` and `duration_s` the first limit wins."""

    model_config = _FROZEN
    kind: Literal["synthetic"] = "synthetic"
    arrival: Arrival
    input: Lengths
    output: Lengths
    num_requests: Requests | None = None
    duration_s: Seconds | None = None
    correlation: Annotated[float, Field(gt=-1, lt=1)] = 0.0

    @model_validator(mode="after")
    def _check(self) -> SyntheticWorkload:
        if self.num_requests is None and self.duration_s is None:
            raise ValueError("synthetic workload: give num_requests or duration_s (or both)")
        if self.arrival.kind in ("closed_loop", "offline") and self.num_requests is None:
            raise ValueError(f"synthetic workload: arrival kind {self.arrival.kind!r} needs num_requests")
        if isinstance(self.arrival, ClosedLoopArrivals) and self.num_requests is not None:
            warm = self.arrival.warmup_requests * self.arrival.clients
            if warm and self.num_requests <= warm:
                raise ValueError(f"synthetic workload: num_requests={self.num_requests} must exceed the "
                                 f"{warm} warm-up requests (warmup_requests={self.arrival.warmup_requests} x "
                                 f"clients={self.arrival.clients}), or nothing is measured")
        _check_size(self.arrival, self.num_requests, self.duration_s)
        return self


def _check_size(arrival: BaseModel, num_requests: int | None, duration_s: float | None) -> None:
    """Before any arrival is drawn: an open-loop process must not imply more than MAX_REQUESTS requests (rate x
    duration) nor arrivals spread over more than MAX_DURATION_S (requests / rate: at 1e-300 req/s the clock
    reaches 1e300 s, where adding a step of milliseconds changes nothing and every latency reads 0)."""
    rate = mean_rate_per_s(arrival)
    if math.isnan(rate):
        return
    if duration_s is not None and num_requests is None:
        implied = rate * duration_s
        if implied > MAX_REQUESTS:
            raise ValueError("synthetic workload: rate x duration_s = " + exceeds(implied, "MAX_REQUESTS",
                             "implied requests") + "; lower the rate or the duration, or set num_requests")
    if duration_s is None and num_requests is not None:
        span = num_requests / rate
        if span > MAX_DURATION_S:
            raise ValueError(f"synthetic workload: {num_requests} requests at {rate:g} req/s arrive over ~"
                             + exceeds(span, "MAX_DURATION_S", "span_s") + "; raise the rate or set duration_s")


TraceFormat = Literal["auto", "azure", "vidur", "mooncake", "burstgpt", "csv", "jsonl"]


class TraceWorkload(BaseModel):
    """Replay a trace file. Applied in this order: window [start_s, end_s) of the file's own times
    (re-based to start_s), then `rate_scale` (2 = twice as fast), then the first `max_requests`."""

    model_config = _FROZEN
    kind: Literal["trace"] = "trace"
    path: str
    format: TraceFormat = "auto"
    rate_scale: limited(float, "MAX_RATE_PER_S", gt=0, low_limit=MIN_RATE_SCALE) = 1.0  # type: ignore[valid-type]
    start_s: NonNegSeconds | None = None
    end_s: Seconds | None = None
    max_requests: Requests | None = None
    drop_failed: bool = False  # drop rows with 0 output tokens (failed requests), with a warning

    @model_validator(mode="after")
    def _check(self) -> TraceWorkload:
        if self.start_s is not None and self.end_s is not None and self.end_s <= self.start_s:
            raise ValueError(f"trace workload: end_s={self.end_s} must be > start_s={self.start_s}")
        return self


class NamedWorkload(BaseModel):
    """A built-in workload from simulator/data/workloads.toml, optionally at another mean rate or size.
    Giving num_requests or duration_s replaces the built-in size (both of them)."""

    model_config = _FROZEN
    kind: Literal["named"] = "named"
    name: str
    rate_per_s: Rate | None = None
    num_requests: Requests | None = None
    duration_s: Seconds | None = None

    @model_validator(mode="after")
    def _check(self) -> NamedWorkload:
        if self.name in _workloads_toml():  # an unknown name is reported (with close names) when resolved
            resolve_workload(self)  # the overrides' implied size is checked now, not when the run starts
        return self


WorkloadConfig = Annotated[SyntheticWorkload | TraceWorkload | NamedWorkload, Field(discriminator="kind")]


# --------------------------------------------------------------------------------------------------
# Built-in named workloads
# --------------------------------------------------------------------------------------------------


@cache
def _workloads_toml() -> dict:
    text = resources.files("roofsim.simulator").joinpath("data/workloads.toml").read_text(encoding="utf-8")
    return tomllib.loads(text)["workloads"]


def named_workloads() -> list[str]:
    """Names of the built-in workloads."""
    return sorted(_workloads_toml())


def named_workload_stats(name: str) -> dict[str, float]:
    """The trace statistics the built-in workload was fitted to (see docs/workloads.md)."""
    table = _workloads_toml()
    if name not in table:
        raise UnknownNameError("workload", name, table)
    return dict(table[name].get("stats", {}))


def named_workload(name: str) -> SyntheticWorkload:
    """The built-in workload `name` as a SyntheticWorkload."""
    table = _workloads_toml()
    if name not in table:
        raise UnknownNameError("workload", name, table)
    entry = table[name]
    fields = {k: entry[k] for k in ("arrival", "input", "output", "num_requests", "duration_s", "correlation")
              if k in entry}
    return SyntheticWorkload(**fields)


def resolve_workload(cfg: SyntheticWorkload | TraceWorkload | NamedWorkload) -> SyntheticWorkload | TraceWorkload:
    """A named workload turned into the SyntheticWorkload it stands for (overrides applied);
    other configs unchanged. The engine reads `.arrival` of the result for closed-loop settings."""
    if not isinstance(cfg, NamedWorkload):
        return cfg
    base = named_workload(cfg.name)
    update: dict[str, object] = {}
    if cfg.rate_per_s is not None:
        update["arrival"] = with_rate(base.arrival, cfg.rate_per_s)
    if cfg.num_requests is not None or cfg.duration_s is not None:
        update["num_requests"] = cfg.num_requests
        update["duration_s"] = cfg.duration_s
    return SyntheticWorkload(**{**dict(base), **update})  # re-validated, e.g. closed-loop needs num_requests


def build_trace(cfg: SyntheticWorkload | TraceWorkload | NamedWorkload, rng: np.random.Generator) -> Trace:
    """The requests of a workload. Same config and same Generator state -> identical arrays.
    Draw order for synthetic workloads: arrival gaps, then input uniforms, then output uniforms."""
    source = cfg.name if isinstance(cfg, NamedWorkload) else ""
    cfg = resolve_workload(cfg)
    if isinstance(cfg, TraceWorkload):
        from roofsim.simulator.traces import read_trace  # traces.py imports Trace from here

        trace = read_trace(cfg.path, cfg.format, drop_failed=cfg.drop_failed)
        if cfg.start_s is not None or cfg.end_s is not None:
            trace = trace.window(cfg.start_s or 0.0, math.inf if cfg.end_s is None else cfg.end_s)
        if cfg.rate_scale != 1.0:
            trace = trace.scale_rate(cfg.rate_scale)
            if trace.duration_s > MAX_DURATION_S:
                raise ValueError(f"trace {cfg.path}: rate_scale={cfg.rate_scale:g} stretches the arrivals to "
                                 + exceeds(trace.duration_s, "MAX_DURATION_S", "span_s"))
        if cfg.max_requests is not None:
            trace = trace.head(cfg.max_requests)
        return trace
    if not isinstance(cfg, SyntheticWorkload):
        raise UnknownNameError("workload kind", str(getattr(cfg, "kind", cfg)), ["synthetic", "trace", "named"])
    arrival_s = sample_arrivals(cfg.arrival, rng, cfg.num_requests, cfg.duration_s)
    n = arrival_s.size
    u_in = rng.random(n)
    u_out = rng.random(n)
    if cfg.correlation != 0.0:
        from scipy import special  # noqa: PLC0415 (see _ppf_normal)

        # Gaussian copula: z_out = rho z_in + sqrt(1 - rho^2) z_indep, mapped back to uniforms.
        z_in, z_ind = special.ndtri(u_in), special.ndtri(u_out)
        u_out = special.ndtr(cfg.correlation * z_in + math.sqrt(1 - cfg.correlation**2) * z_ind)
    if not source:
        source = f"synthetic {cfg.arrival.kind}"
    logger.debug("built %d requests for %s", n, source)
    inp = lengths_ppf(cfg.input, u_in)
    hashes = None
    if isinstance(cfg.arrival, ClosedLoopArrivals) and (pool := client_model(cfg.arrival.client).prompt_pool):
        # the harness draws each prompt from a fixed pool (simulator/clients.py): drawn last, so that the
        # lengths of a pooled and an unpooled run are the same
        hashes = pooled_prompt_hash_ids(rng, inp, pool)
    return Trace(arrival_s, inp, lengths_ppf(cfg.output, u_out), hashes, source, PROMPT_HASH_BLOCK_TOKENS)


__all__ = [
    "MAX_TOKENS", "Arrival", "BurstArrivals", "ClosedLoopArrivals", "ConstantArrivals", "EmpiricalLengths",
    "FixedLengths", "GammaArrivals", "Lengths", "LognormalLengths", "NamedWorkload",
    "NormalLengths", "OfflineArrivals", "PoissonArrivals", "QuantileLengths", "SyntheticWorkload", "Trace",
    "TraceFormat", "TraceWorkload", "UniformLengths", "WorkloadConfig", "ZipfLengths", "build_trace",
    "lengths_ppf", "mean_rate_per_s", "named_workload", "named_workload_stats", "named_workloads",
    "resolve_workload", "sample_arrivals", "sample_lengths", "with_rate",
]
