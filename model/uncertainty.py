"""Kernel-level error distributions of the cost model (`ErrorModel`, fitted by validation.uncertainty) and what the
oracle needs to apply them: the error group of a kernel (family x dtype x regime), intervals, and the correlated
per-member kernel time factors an ensemble hands to model.cost through `Calibration.time_scale`.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, model_validator

from roofsim.model.kernel import Kernel

__all__ = ["LEVELS", "SMALL_KERNEL_S", "ANY", "ErrorGroup", "ErrorModel", "kernel_family", "regime_of",
           "group_key", "parent_keys", "regime_from_bound", "conformal_quantiles", "shifted_quantiles", "METHODS"]

# Quantile levels stored per group: enough resolution to sample a member factor by inverse CDF, and exact grid
# points for the equal-tailed 50/80/90/95/98/99 % intervals ((1 -+ level) / 2).
LEVELS: tuple[float, ...] = (0.005, 0.01, 0.025, 0.05, *(round(0.1 + 0.05 * i, 2) for i in range(17)),
                             0.95, 0.975, 0.99, 0.995)
# A kernel call predicted below this (body + fixed cost, one invocation) is "small": launch, tail and cache
# effects dominate short kernels, so their errors differ from those of long ones (docs/intervals.md).
SMALL_KERNEL_S = 20e-6
ANY = "*"  # wildcard part of a pooled group key

# "split-conformal": quantiles of the rows' residuals (rows exchangeable). "gpu-shift + split-conformal": a new GPU
# shifts a whole group at once, so quantiles of (within-GPU deviation + predictive GPU shift) (docs/intervals.md).
METHODS = ("split-conformal", "gpu-shift + split-conformal")

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


class ErrorGroup(BaseModel):
    """One error group: `key` family/dtype/regime ('*' = pooled over that part), its row count and the conformal
    quantiles of log(predicted / measured) at ErrorModel.levels (non-decreasing). `gpu_shift_sd`: the predictive
    standard deviation of a new GPU's shift folded into the quantiles (0 for row-level split-conformal)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    key: str
    n: int = Field(gt=0)
    log_ratio: tuple[float, ...]
    gpu_shift_sd: float = Field(0.0, ge=0)

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

    method: Literal["split-conformal", "gpu-shift + split-conformal"] = "split-conformal"
    residuals: str = Field(description="which residuals: 'leave-one-GPU-out' or 'held-out shapes (<GPU>)'")
    gpus: int = Field(0, ge=0, description="GPUs the shift of a new GPU was estimated from (gpu-shift method)")
    source: str = ""
    min_rows: int = Field(100, gt=0)
    levels: tuple[float, ...] = LEVELS
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
