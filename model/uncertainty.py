"""Kernel-level error distributions of the cost model (`ErrorModel`, fitted by validation.uncertainty) and what the
oracle needs to apply them: the error group of a kernel (family x dtype x regime), intervals, and the correlated
per-member kernel time factors an ensemble hands to model.cost through `Calibration.time_scale`.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from typing import Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, model_validator

from roofsim.model.kernel import Kernel

__all__ = ["LEVELS", "SMALL_KERNEL_S", "ANY", "ErrorGroup", "ErrorModel", "kernel_family", "regime_of",
           "group_key", "parent_keys", "regime_from_bound", "conformal_quantiles", "shifted_quantiles", "METHODS",
           "abs_score_quantiles", "capped_levels", "scaled_quantiles", "E2ECell", "E2EDifficulty", "E2ETerm",
           "metric_family", "is_rate", "e2e_features", "E2E_INPUTS", "E2E_KERNEL_LEVEL"]

# Quantile levels stored per group: enough resolution to sample a member factor by inverse CDF, and exact grid
# points for the equal-tailed 50/80/90/95/98/99 % intervals ((1 -+ level) / 2).
LEVELS: tuple[float, ...] = (0.005, 0.01, 0.025, 0.05, *(round(0.1 + 0.05 * i, 2) for i in range(17)),
                             0.95, 0.975, 0.99, 0.995)
# A kernel call predicted below this (body + fixed cost, one invocation) is "small": launch, tail and cache
# effects dominate short kernels, so their errors differ from those of long ones (docs/intervals.md).
SMALL_KERNEL_S = 20e-6
ANY = "*"  # wildcard part of a pooled group key

# "split-conformal": quantiles of the rows' residuals (rows exchangeable). "gpu-shift + split-conformal": a new GPU
# shifts a whole group at once, so quantiles of (within-GPU deviation + predictive GPU shift). "normalized
# split-conformal": centre +- one pooled quantile of |residual - centre| / scale times each group's scale, so the
# width follows the group's difficulty (docs/intervals.md).
METHODS = ("split-conformal", "gpu-shift + split-conformal", "normalized split-conformal")

Regime = Literal["overhead", "compute-small", "compute-large", "memory-small", "memory-large",
                 "communication-small", "communication-large"]


def kernel_family(k: Kernel) -> str:
    """The error family of a kernel, named like validation.transfer.family_of names measured rows: gemm,
    attn_prefill, attn_decode, elementwise (norms, activations, rope, residual, embedding, sampling),
    custom_allreduce (the framework's TP all-reduce), nccl_<collective>."""
    kind = k.kind
    if kind in ("gemm", "attn_prefill", "attn_decode"):
        return kind
    if kind in ("elementwise", "sampling"):
        return "elementwise"
    if k.op == "allreduce":
        return "custom_allreduce"
    if k.op == "send_recv":
        return "nccl_send_recv"
    return "nccl_" + k.op.replace("_", "")  # nccl_allreduce, nccl_allgather, nccl_reducescatter, nccl_alltoall


def regime_of(compute_s: float, memory_s: float, floor_s: float, overhead_s: float, comm: bool = False) -> str:
    """Regime of one kernel call from its roofline terms (model.cost's time functions): overhead-bound when the fixed
    cost exceeds the body or the floor dominates, else compute- or memory-bound (communication for collectives),
    split at SMALL_KERNEL_S into small and large."""
    body = max(compute_s, memory_s, floor_s)
    if not comm and (overhead_s > body or floor_s > max(compute_s, memory_s)):
        return "overhead"
    return regime_from_bound("communication" if comm else ("compute" if compute_s >= memory_s else "memory"),
                             body + overhead_s)


def regime_from_bound(bound: str, call_s: float) -> str:
    """regime_of from model.cost's KernelCost.bound and the predicted seconds of one call."""
    if bound == "overhead":
        return bound
    return f"{bound}-{'small' if call_s < SMALL_KERNEL_S else 'large'}"


def group_key(family: str, dtype: str, regime: str) -> str:
    return f"{family}/{dtype}/{regime}"


def parent_keys(key: str) -> tuple[str, ...]:
    """`key` and the pooled groups it falls back to, most specific first: f/d/r, f/d/*, f/*/*, */*/*."""
    f, d, _ = key.split("/")
    return tuple(dict.fromkeys((key, group_key(f, d, ANY), group_key(f, ANY, ANY), group_key(ANY, ANY, ANY))))


def conformal_quantiles(scores: Iterable[float], levels: Iterable[float] = LEVELS) -> tuple[float, ...]:
    """Split-conformal quantiles of `scores` (n calibration residuals): the upper level q >= 0.5 is the
    ceil((n+1) q)-th smallest score, the lower level q < 0.5 the floor((n+1) q)-th, so a new exchangeable residual
    falls below the upper one with probability >= q and below the lower one with probability <= q (Vovk et al.,
    "Algorithmic Learning in a Random World", 2005; Lei et al., JASA 2018). A rank beyond the n scores is clamped
    to the extreme score: levels that need more than n rows lose their guarantee (groups are pooled to avoid it)."""
    s = np.sort(np.asarray(list(scores), dtype=float))
    n = len(s)
    if n == 0:
        raise ValueError("conformal_quantiles needs at least one score; got none")
    out = []
    for q in levels:
        rank = math.ceil((n + 1) * q - 1e-9) if q >= 0.5 else math.floor((n + 1) * q + 1e-9)
        out.append(float(s[min(max(rank, 1), n) - 1]))
    return tuple(out)


def shifted_quantiles(within: Iterable[float], centre: float, shift_sd: float, shift_df: int,
                      levels: Iterable[float] = LEVELS, grid: int = 200) -> tuple[float, ...]:
    """Quantiles at `levels` of centre + e + shift_sd * T: e a within-GPU deviation (split-conformal quantiles of
    `within` on a `grid`-point probability grid), T an independent Student t with `shift_df` degrees of freedom
    (the normal-theory prediction of one new GPU's shift from the GPUs seen; normal when shift_df is 0 and
    shift_sd is 0). The sum's quantiles are those of the grid x grid equally weighted pair sums."""
    from scipy.stats import t as student_t  # noqa: PLC0415 (only the fit needs scipy)

    mid = (np.arange(grid) + 0.5) / grid
    e = np.asarray(conformal_quantiles(within, mid))
    d = shift_sd * student_t.ppf(mid, shift_df) if shift_sd > 0 and shift_df > 0 else np.zeros(1)
    sums = np.sort((e[:, None] + d[None, :]).ravel())
    return tuple(float(centre + x) for x in np.quantile(sums, list(levels)))


def abs_score_quantiles(scores: Iterable[float], levels: Iterable[float]) -> tuple[float, ...]:
    """Split-conformal quantiles of non-negative nonconformity scores: level L is the ceil((n+1) L)-th smallest of
    the n scores, so a new exchangeable score is at most it with probability >= L; non-decreasing in L, so the
    intervals it gives are nested. A rank beyond n is clamped to the largest score (that level loses its guarantee)."""
    s = np.sort(np.abs(np.asarray(list(scores), dtype=float)))
    if not len(s):
        raise ValueError("abs_score_quantiles needs at least one score; got none")
    ranks = [min(max(math.ceil((len(s) + 1) * q - 1e-9), 1), len(s)) for q in levels]
    return tuple(float(s[r - 1]) if q > 0 else 0.0 for q, r in zip(levels, ranks, strict=True))


def capped_levels(n: int, levels: Iterable[float]) -> tuple[float, ...]:
    """The levels abs_score_quantiles clamps for n scores: rank ceil((n+1) L) beyond n, so the largest score stands
    in and the level loses its guarantee (level L needs n >= L / (1 - L): 9 scores at 90 %, 99 at 99 %)."""
    return tuple(q for q in levels if q > 0 and math.ceil((n + 1) * q - 1e-9) > n)


def scaled_quantiles(centre: float, scale: float, score_levels: Sequence[float], score_q: Sequence[float],
                     levels: Iterable[float] = LEVELS) -> tuple[float, ...]:
    """Quantiles at `levels` of a normalized-conformal group (Papadopoulos et al. 2008; Lei et al., JASA 2018):
    the level-p quantile is centre + sign(p - 1/2) x Q(|2p - 1|) x scale, Q the pooled conformal quantile of the
    scaled score |r - centre| / scale (`score_q` at the increasing interval levels `score_levels`, linear between
    them, Q(0) = 0), so the equal-tailed interval of level L is centre +- Q(L) scale."""
    out = []
    for p in levels:
        q = float(np.interp(abs(2 * p - 1), [0.0, *score_levels], [0.0, *score_q]))
        out.append(centre + math.copysign(q * scale, p - 0.5))
    return tuple(out)


class ErrorGroup(BaseModel):
    """One error group: `key` family/dtype/regime ('*' = pooled over that part), its row count and the conformal
    quantiles of log(predicted / measured) at ErrorModel.levels (non-decreasing). `gpu_shift_sd`: the predictive
    standard deviation of a new GPU's shift folded into the quantiles (0 for row-level split-conformal)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    key: str
    n: int = Field(gt=0)
    log_ratio: tuple[float, ...]
    gpu_shift_sd: float = Field(0.0, ge=0)
    scale: float = Field(0.0, ge=0, description="normalized method: the group's difficulty (MAD of its residuals)")

    @model_validator(mode="after")
    def _check(self) -> ErrorGroup:
        if len(self.key.split("/")) != 3:
            raise ValueError(f"error group key={self.key!r} must be family/dtype/regime")
        if any(b < a for a, b in zip(self.log_ratio, self.log_ratio[1:], strict=False)):
            raise ValueError(f"error group {self.key}: log_ratio quantiles must be non-decreasing")
        return self


class ErrorModel(BaseModel):
    """Kernel error distributions of one calibration profile: per group, split-conformal quantiles of
    log(predicted / measured) over residuals the fit never saw (`residuals`: leave-one-GPU-out for GPUs without
    their own profile, held-out shape families for the profile's own GPU; method 'gpu-shift + split-conformal' adds
    the predicted shift of a GPU none of them came from). A kernel uses its most specific group; groups under
    `min_rows` rows were pooled into their parent when fitted (parent_keys)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    method: Literal["split-conformal", "gpu-shift + split-conformal", "normalized split-conformal"] = \
        "split-conformal"
    residuals: str = Field(description="which residuals: 'leave-one-GPU-out' or 'held-out shapes (<GPU>)'")
    gpus: int = Field(0, ge=0, description="GPUs the shift of a new GPU was estimated from (gpu-shift method)")
    source: str = ""
    min_rows: int = Field(100, gt=0)
    levels: tuple[float, ...] = LEVELS
    # normalized method: interval levels and the conformal quantile of the scaled score at each (scaled_quantiles)
    score_levels: tuple[float, ...] = ()
    score_quantiles: tuple[float, ...] = ()
    groups: tuple[ErrorGroup, ...]

    @model_validator(mode="after")
    def _check(self) -> ErrorModel:
        if list(self.levels) != sorted(set(self.levels)) or not all(0 < q < 1 for q in self.levels):
            raise ValueError(f"levels={self.levels} must be strictly increasing in (0, 1)")
        for g in self.groups:
            if len(g.log_ratio) != len(self.levels):
                raise ValueError(f"error group {g.key}: {len(g.log_ratio)} quantiles for {len(self.levels)} levels")
        if group_key(ANY, ANY, ANY) not in {g.key for g in self.groups}:
            raise ValueError("an ErrorModel needs the pooled group */*/* (the fallback of every kernel)")
        if len(self.score_levels) != len(self.score_quantiles):
            raise ValueError(f"score_levels ({len(self.score_levels)}) and score_quantiles "
                             f"({len(self.score_quantiles)}) must pair up")
        if self.method == "normalized split-conformal" and not self.score_levels:
            raise ValueError("method='normalized split-conformal' needs score_levels and score_quantiles (the "
                             "conformal quantiles of the scaled score); got none")
        return self

    def _by_key(self) -> dict[str, ErrorGroup]:
        return {g.key: g for g in self.groups}

    def group(self, family: str, dtype: str, regime: str) -> ErrorGroup:
        """The most specific stored group of (family, dtype, regime) (parent_keys order)."""
        by = self._by_key()
        return next(by[k] for k in parent_keys(group_key(family, dtype, regime)) if k in by)

    def quantile(self, group: ErrorGroup, u: float) -> float:
        """log(predicted / measured) at probability `u` in `group`, linear between stored levels, held at the end
        levels outside them."""
        return float(np.interp(u, self.levels, group.log_ratio))

    def interval(self, family: str, dtype: str, regime: str, level: float = 0.9) -> tuple[float, float]:
        """(low, high) multipliers of a predicted kernel time holding the measured time with probability >= `level`
        (equal tails): measured = predicted x exp(-log_ratio), so low = exp(-q[(1+level)/2]), high =
        exp(-q[(1-level)/2]). `level` must put both tails on stored levels (80 %, 90 %, ...)."""
        lo_q, hi_q = round((1 - level) / 2, 6), round((1 + level) / 2, 6)
        levels = [round(q, 6) for q in self.levels]
        if lo_q not in levels or hi_q not in levels:
            ok = [round(2 * q - 1, 4) for q in self.levels if q > 0.5 and round(1 - q, 6) in levels]
            raise ValueError(f"level={level} needs quantile levels {lo_q} and {hi_q}; stored intervals: {ok}")
        g = self.group(family, dtype, regime)
        return math.exp(-g.log_ratio[levels.index(hi_q)]), math.exp(-g.log_ratio[levels.index(lo_q)])

    def draw_keys(self) -> tuple[str, ...]:
        """The independent draws of one ensemble member, in a fixed order: one per family/dtype (every regime of it
        shares the draw), per family and one overall (for the pooled groups)."""
        keys = {"/".join(g.key.split("/")[:2]) for g in self.groups}
        return tuple(sorted(keys))

    def member_scales(self, u: dict[str, float]) -> tuple[tuple[str, float], ...]:
        """Calibration.time_scale of one member whose probability per draw key (draw_keys) is `u`: every group's
        kernel time multiplier exp(-quantile(group, u[family/dtype])). One draw per family/dtype for all its regimes
        and all steps (comonotone: a GPU slow on a family's large calls is slow on its small ones too)."""
        out = []
        for g in self.groups:
            p = u["/".join(g.key.split("/")[:2])]
            out.append((g.key, math.exp(-self.quantile(g, p))))
        return tuple(out)

    def sample_member(self, rng: np.random.Generator) -> tuple[tuple[str, float], ...]:
        """member_scales at uniform draws from `rng` (one per draw key, in draw_keys order)."""
        keys = self.draw_keys()
        return self.member_scales(dict(zip(keys, rng.random(len(keys)).tolist(), strict=True)))


class E2ECell(BaseModel):
    """One cell of an end-to-end term: `key` (e.g. 'ttft|vllm', 'ttft', '*'), the median log(measured / predicted)
    of its calibration values (`centre`) and their median absolute deviation from it (`scale`, the difficulty)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    key: str
    n: int = Field(gt=0)
    centre: float
    scale: float = Field(gt=0)


# Row inputs an end-to-end difficulty reads (validation.uncertainty.IntervalCheck.inputs): prompt and output tokens,
# closed-loop concurrency (static batch size), open-loop request rate, tensor parallelism.
E2E_INPUTS: tuple[str, ...] = ("isl", "osl", "concurrency", "qps", "tp")
# The kernel interval level whose half-width is a difficulty feature: the lowest level the checks of the fit carry
# (validation INTERVAL_LEVELS), so a run reads its ensemble's spread at the same level whatever levels it prints.
E2E_KERNEL_LEVEL = 0.8
_METRIC_FAMILIES = ("ttft", "tpot", "itl", "e2e", "throughput")


def e2e_features(metric: str, kernel_half_width: float, inputs: Mapping[str, float]) -> dict[str, float]:
    """The features of a serving value's end-to-end difficulty, all known at prediction time: the log of the kernel
    ensemble's half-width (log(high / low) / 2 at E2E_KERNEL_LEVEL; at least 1e-3), the logs of the row's inputs
    (E2E_INPUTS; a missing or non-positive input counts as 1, the rate as log(1 + qps)) and the metric family
    (one indicator each)."""
    out = {"log_kernel_half_width": math.log(max(kernel_half_width, 1e-3))}
    for k in E2E_INPUTS:
        v = float(inputs.get(k) or 0.0)
        out[f"log_{k}"] = math.log1p(max(v, 0.0)) if k == "qps" else math.log(max(v, 1.0))
    fam = metric_family(metric)
    out |= {f"is_{m}": float(fam == m) for m in _METRIC_FAMILIES}
    return out


class E2EDifficulty(BaseModel):
    """A learned difficulty of serving values (normalized conformal with a fitted scale, Lei et al., JASA 2018,
    section 5.2; Papadopoulos et al. 2008): a value's scale is its cell's times exp(sum_i w_i (x_i - mean_i) /
    sd_i) over the `features` of e2e_features, the weights a ridge fit of log |r - centre| / cell scale on the
    calibration values. A feature missing from a value counts as its mean (factor 1)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    features: tuple[str, ...]
    mean: tuple[float, ...]
    sd: tuple[float, ...]
    weights: tuple[float, ...]
    ridge: float = Field(ge=0)

    @model_validator(mode="after")
    def _check(self) -> E2EDifficulty:
        n = len(self.features)
        if not (len(self.mean) == len(self.sd) == len(self.weights) == n) or any(s <= 0 for s in self.sd):
            raise ValueError(f"features ({n}), mean ({len(self.mean)}), sd ({len(self.sd)}) and weights "
                             f"({len(self.weights)}) must pair up, every sd > 0")
        return self

    def factor(self, x: Mapping[str, float]) -> float:
        """exp(sum_i w_i (x_i - mean_i) / sd_i): the value's scale over its cell's."""
        return math.exp(sum(w * (x.get(f, m) - m) / s
                            for f, m, s, w in zip(self.features, self.mean, self.sd, self.weights, strict=True)))


class E2ETerm(BaseModel):
    """Serving-level (end-to-end) error of the simulator as a normalized split-conformal interval around a point
    prediction: measured in point x exp(centre +- Q(L) scale) with the centre and scale of the most specific cell
    (`cell`) and Q the conformal quantile of the scaled calibration scores (docs/intervals.md section 3). Carries
    every error of the prediction (kernels, scheduler, CPU overhead, clients), not only the kernels'.
    `rates_reciprocal`: a rate's (throughput's) residual is its reciprocal's, log(point / measured), so one cell's
    centre means the same bias for a time and a rate (terms fitted before it read as measured, False).
    `difficulty`: a learned per-value scale factor (E2EDifficulty; None: the cell's scale alone)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    method: Literal["normalized split-conformal"] = "normalized split-conformal"
    source: str = ""
    score_levels: tuple[float, ...]
    score_quantiles: tuple[float, ...]
    cells: tuple[E2ECell, ...]
    rates_reciprocal: bool = False
    difficulty: E2EDifficulty | None = None
    n_scores: int | None = Field(default=None, gt=0)  # calibration scores behind score_quantiles (capped levels)

    @model_validator(mode="after")
    def _check(self) -> E2ETerm:
        if len(self.score_levels) != len(self.score_quantiles) or not self.score_levels:
            raise ValueError(f"score_levels ({len(self.score_levels)}) and score_quantiles "
                             f"({len(self.score_quantiles)}) must pair up, at least one")
        if any(b < a for a, b in zip(self.score_quantiles, self.score_quantiles[1:], strict=False)):
            raise ValueError("score_quantiles must be non-decreasing (nested intervals)")
        if ANY not in {c.key for c in self.cells}:
            raise ValueError("an E2ETerm needs the pooled cell '*' (the fallback of every value)")
        return self

    def cell(self, keys: Iterable[str]) -> E2ECell:
        """The first of `keys` (most specific first) with a stored cell, else the pooled '*'."""
        by = {c.key: c for c in self.cells}
        return next((by[k] for k in keys if k in by), by[ANY])

    def score_quantile(self, level: float) -> float:
        """Q(level), linear between the stored levels (Q(0) = 0); ValueError above the highest stored level."""
        if not 0 < level <= self.score_levels[-1] + 1e-9:
            raise ValueError(f"level={level} must be in (0, {self.score_levels[-1]}] (stored levels)")
        return float(np.interp(level, [0.0, *self.score_levels], [0.0, *self.score_quantiles]))

    def bounds(self, point: float, keys: Iterable[str], levels: Iterable[float], metric: str = "",
               features: Mapping[str, float] | None = None) -> dict[float, tuple[float, float]]:
        """level -> (low, high) around a positive `point` for a value of `metric` whose cell keys are `keys` and whose
        difficulty features are `features` (e2e_features; None: factor 1): nested, since Q is non-decreasing."""
        c = self.cell(keys)
        centre = -c.centre if self.rates_reciprocal and is_rate(metric) else c.centre
        scale = c.scale * (self.difficulty.factor(features) if self.difficulty and features is not None else 1.0)
        out = {}
        for q in levels:
            h = self.score_quantile(q) * scale
            out[q] = (point * math.exp(centre - h), point * math.exp(centre + h))
        return out

    def capped(self, levels: Iterable[float]) -> tuple[float, ...]:
        """The stored levels among `levels` whose Q is the largest calibration score (capped_levels of n_scores)."""
        return capped_levels(self.n_scores, levels) if self.n_scores else ()


def is_rate(metric: str) -> bool:
    """A per-second quantity ('output_tokens_per_s', 'requests_per_s'): its error runs opposite to a time's."""
    return metric.split(".")[0].endswith("_per_s")


def metric_family(metric: str) -> str:
    """'ttft_ms', 'ttft_s.p99' -> 'ttft'; 'output_tokens_per_s' -> 'throughput': the same quantity whatever table
    or statistic it comes from (the cell an E2ETerm stored in a profile is looked up by)."""
    base = metric.split(".")[0]
    if base == "output_tokens_per_s":
        return "throughput"
    stem = base.removesuffix("_ms").removesuffix("_s")
    return stem if stem in ("ttft", "tpot", "itl", "e2e") else base
