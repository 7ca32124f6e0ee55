"""Fit kernel error models (model.uncertainty.ErrorModel) to validation residuals with split-conformal quantiles of
log(predicted / measured), pooling small groups into their parents, and measure their coverage leave-one-GPU-out
(quantiles fitted on the other GPUs' residuals, tested on the held-out GPU's measured rows).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field, replace

import numpy as np

from roofsim.model.uncertainty import (
    ANY,
    ErrorGroup,
    ErrorModel,
    conformal_quantiles,
    group_key,
    shifted_quantiles,
)
from roofsim.validation.transfer import RowResiduals

__all__ = ["MIN_GROUP_ROWS", "INTERVAL_LEVELS", "fit_error_model", "error_models_from_residuals",
           "CoverageRow", "CoverageReport", "logo_coverage", "TARGET_COVERAGE", "coverage_table",
           "IntervalCheck", "interval_coverage", "coverage_by", "split_units", "e2e_error_term", "widen"]

# A group with fewer residuals is pooled into its parent (family/dtype/*, then family/*/*, then */*/*). At 400 rows
# the 5 % and 95 % conformal ranks sit well inside the sample; the leave-one-GPU-out coverage (logo_coverage) of
# 100 rows per group was 2-3 points lower (finer groups of three GPUs fit the fourth less well).
MIN_GROUP_ROWS = 400
# A GPU's median residual in a cell counts towards the GPU shift only from this many rows on (a median of fewer
# rows is mostly sampling noise, which would inflate the shift's spread).
MIN_GPU_ROWS = 10
INTERVAL_LEVELS: tuple[float, ...] = (0.8, 0.9)
# Issue #18 targets: share of measured rows inside the interval (low, high) per level.
TARGET_COVERAGE: dict[float, tuple[float, float]] = {0.8: (0.75, 0.88), 0.9: (0.85, 0.95)}


def fit_error_model(family: Sequence[str], dtype: Sequence[str], regime: Sequence[str], log_ratio: np.ndarray,
                    residuals: str, source: str = "", min_rows: int = MIN_GROUP_ROWS,
                    gpu: Sequence[str] | None = None) -> ErrorModel:
    """An ErrorModel from one residual per row (log(predicted / measured)) and the row's family, dtype and regime:
    quantiles per group family/dtype/regime with at least `min_rows` rows, per pooled parent family/dtype/* and
    family/*/* likewise, and always */*/* (every row).

    gpu=None: split-conformal quantiles of the rows (a new row exchangeable with them). `gpu` given (the GPU of each
    row, for leave-one-GPU-out residuals): the GPU is the unit of exchangeability, since a new GPU shifts a whole
    group at once. Each group's quantiles are then those of centre + within-GPU deviation + a new GPU's shift
    (model.uncertainty.shifted_quantiles, gpu_shift_model)."""
    lr = np.asarray(log_ratio, dtype=float)
    if not len(lr) or not np.all(np.isfinite(lr)):
        raise ValueError(f"fit_error_model needs finite residuals; got {len(lr)} rows, "
                         f"{int(np.sum(~np.isfinite(lr)))} not finite")
    by: dict[str, list[int]] = {}
    for i, (f, d, r) in enumerate(zip(family, dtype, regime, strict=True)):
        for key in (group_key(f, d, r), group_key(f, d, ANY), group_key(f, ANY, ANY)):
            by.setdefault(key, []).append(i)
    keys = [k for k, idx in sorted(by.items()) if len(idx) >= min_rows]
    by[group_key(ANY, ANY, ANY)] = list(range(len(lr)))
    keys.append(group_key(ANY, ANY, ANY))
    if gpu is None:
        groups = [ErrorGroup(key=k, n=len(by[k]), log_ratio=_rounded(conformal_quantiles(lr[by[k]])))
                  for k in keys]
        return ErrorModel(residuals=residuals, source=source, min_rows=min_rows, groups=tuple(groups))
    units = np.asarray(gpu, dtype=object)
    if len(units) != len(lr):
        raise ValueError(f"gpu has {len(units)} entries for {len(lr)} residuals")
    shift = _pooled_shift_sd(by, lr, units)
    n_gpus = len(set(units.tolist()))
    groups = []
    for k in keys:
        idx = np.asarray(by[k])
        centre, within = _centre_and_within(lr[idx], units[idx])
        sd2, df = shift.get(_shift_pool(k), shift.get(ANY, (0.0, 0)))  # no cell of 2 GPUs: the overall pool
        sd = float(np.sqrt(sd2 * (1.0 + 1.0 / n_gpus))) if df else 0.0
        groups.append(ErrorGroup(key=k, n=len(idx), gpu_shift_sd=round(sd, 5),
                                 log_ratio=_rounded(shifted_quantiles(within, centre, sd, df))))
    return ErrorModel(method="gpu-shift + split-conformal", residuals=residuals, source=source, min_rows=min_rows,
                      gpus=n_gpus, groups=tuple(groups))


def _rounded(q: Sequence[float]) -> tuple[float, ...]:
    return tuple(round(x, 5) for x in q)


def _centre_and_within(lr: np.ndarray, units: np.ndarray) -> tuple[float, np.ndarray]:
    """The mean over GPUs of each GPU's median residual (every GPU weighs the same, whatever its row count) and
    every row's deviation from its GPU's median (GPUs under MIN_GPU_ROWS rows: from the centre)."""
    med = {u: float(np.median(lr[units == u])) for u in set(units.tolist()) if np.sum(units == u) >= MIN_GPU_ROWS}
    centre = float(np.mean(list(med.values()))) if med else float(np.median(lr))
    return centre, lr - np.array([med.get(u, centre) for u in units.tolist()])


def _shift_pool(key: str) -> str:
    """The cells whose GPU spread a group's shift is pooled from: its family/dtype (the unit a member draws once,
    model.uncertainty.ErrorModel.draw_keys) for family/dtype/regime and family/dtype/*, its family for family/*/*,
    every cell for */*/*."""
    f, d, _ = key.split("/")
    return f if d == ANY and f != ANY else (ANY if f == ANY else f"{f}/{d}")


def _pooled_shift_sd(by: dict[str, list[int]], lr: np.ndarray, units: np.ndarray) -> dict[str, tuple[float, int]]:
    """Pool -> (variance of a GPU's shift, degrees of freedom): per family/dtype/regime cell, the sample variance of
    its GPUs' median residuals (GPUs with >= MIN_GPU_ROWS rows; K GPUs give K - 1 degrees of freedom), pooled
    over the cells of each family/dtype, family and overall (_shift_pool) with weights K - 1."""
    acc: dict[str, list[float]] = {}
    for k, idx in by.items():
        f, d, r = k.split("/")
        if ANY in (f, d, r):
            continue
        x, u = lr[idx], units[idx]
        meds = [float(np.median(x[u == g])) for g in set(u.tolist()) if np.sum(u == g) >= MIN_GPU_ROWS]
        if len(meds) < 2:
            continue
        ss, df = float(np.var(meds, ddof=1)) * (len(meds) - 1), len(meds) - 1
        for pool in (f"{f}/{d}", f, ANY):
            a = acc.setdefault(pool, [0.0, 0])
            a[0] += ss
            a[1] += df
    return {p: (ss / df, int(df)) for p, (ss, df) in acc.items()}


def _select(res: RowResiduals, sel: np.ndarray, predicted: np.ndarray) -> tuple[list, list, list, np.ndarray]:
    return (res.family[sel].tolist(), res.dtype[sel].tolist(), res.regime[sel].tolist(),
            np.log(predicted[sel] / res.measured_s[sel]))


def error_models_from_residuals(res: RowResiduals, hardware: str, frameworks: Sequence[str] | None = None,
                                min_rows: int = MIN_GROUP_ROWS) -> dict[str, ErrorModel]:
    """The two error models stored with a profile of `hardware` (rows of `frameworks` only, when given):
    'own' from the held-out-shape residuals of that GPU (its own profile's error on shapes the fit never saw) and
    'transfer' from the leave-one-GPU-out residuals of every GPU (the error of a profile moved to a GPU it was
    not fitted on: validation.profiles.profile_for's architecture transfer)."""
    fw = np.ones(len(res.measured_s), dtype=bool) if frameworks is None else np.isin(res.framework, list(frameworks))
    own = fw & (res.hardware == hardware) & np.isfinite(res.same_gpu_s)
    if not own.any():
        raise ValueError(f"no held-out-shape residuals of {hardware!r} (frameworks {frameworks}); GPUs with some: "
                         f"{sorted(set(res.hardware[np.isfinite(res.same_gpu_s)].tolist()))}")
    n_gpus = len(set(res.hardware[fw].tolist()))
    return {
        "own": fit_error_model(*_select(res, own, res.same_gpu_s), residuals=f"held-out shapes ({hardware})",
                               source=f"{int(own.sum())} AIConfigurator rows of {hardware}, out-of-fold "
                                      f"(shape families held out, validation.calibrate.shape_folds)",
                               min_rows=min_rows),
        "transfer": fit_error_model(*_select(res, fw, res.logo_s), residuals="leave-one-GPU-out",
                                    source=f"{int(fw.sum())} AIConfigurator rows of {n_gpus} GPUs, each predicted "
                                           f"by a fit on the others (validation.transfer.leave_one_gpu_out)",
                                    min_rows=min_rows, gpu=res.hardware[fw]),
    }


@dataclass(frozen=True)
class CoverageRow:
    """Coverage of one group of held-out rows: share inside each level's interval, median half-width of the
    interval and the point prediction's median absolute error, both in log space (|log(predicted / measured)|:
    0.1 is about 10 %; symmetric where relative widths of multiplicative intervals are not). `abs_err_quantile`:
    per level, that quantile of the point's abs log error: the half-width an interval of one width for every row,
    centred on the point, needs to cover exactly the level's share of these rows (the width floor, docs/intervals.md
    section 3)."""

    label: str
    n: int
    covered: dict[float, float]
    half_width: dict[float, float]
    median_abs_err: float
    abs_err_quantile: dict[float, float] = field(default_factory=dict)


@dataclass(frozen=True)
class CoverageReport:
    overall: CoverageRow
    by_family: tuple[CoverageRow, ...]
    by_gpu: tuple[CoverageRow, ...]
    levels: tuple[float, ...]

    def table(self, families: bool = True) -> str:
        """Markdown: one line overall, per held-out GPU, per family (when `families`), with the issue's targets."""
        rows = (self.overall, *self.by_gpu, *(self.by_family if families else ()))
        return coverage_table(rows, self.levels) + "\n\n" + TARGETS_TEXT


TARGETS_TEXT = ("Targets: " + "; ".join(f"{q:.0%} interval covers {lo:.0%}-{hi:.0%}"
                                        for q, (lo, hi) in TARGET_COVERAGE.items())
                + "; median half-width <= 1.5 x the point's median abs error (log space).")


def coverage_table(rows: Sequence[CoverageRow], levels: Sequence[float], first: str = "rows") -> str:
    """Markdown table of coverage rows: share covered and median half-width per level, the point's median abs log
    error, the ratio of the first level's half-width to it and the same ratio of the width floor (CoverageRow)."""
    lv = tuple(levels)
    head = (f"| {first} | n | " + " | ".join(f"{q:.0%} covered" for q in lv) + " | "
            + " | ".join(f"{q:.0%} half-width" for q in lv) + " | point median abs log err | half-width / error "
            f"({lv[0]:.0%}) | floor / error ({lv[0]:.0%}) |")
    lines = [head, "|" + "---|" * (5 + 2 * len(lv))]
    for r in rows:
        err = r.median_abs_err if r.median_abs_err > 0 else math.nan
        floor = r.abs_err_quantile.get(lv[0], math.nan) / err
        lines.append(f"| {r.label} | {r.n} | " + " | ".join(f"{r.covered[q]:.1%}" for q in lv) + " | "
                     + " | ".join(f"{r.half_width[q]:.3f}" for q in lv) + f" | {r.median_abs_err:.3f} | "
                     f"{r.half_width[lv[0]] / err:.2f} | {floor:.2f} |")
    return "\n".join(lines)


def _row(label: str, inside: dict[float, np.ndarray], half: dict[float, np.ndarray], err: np.ndarray,
         sel: np.ndarray) -> CoverageRow:
    return CoverageRow(label, int(sel.sum()), {q: float(v[sel].mean()) for q, v in inside.items()},
                       {q: float(np.median(v[sel])) for q, v in half.items()}, float(np.median(err[sel])),
                       {q: float(np.quantile(err[sel], q)) for q in inside})


def logo_coverage(res: RowResiduals, levels: Sequence[float] = INTERVAL_LEVELS,
                  min_rows: int = MIN_GROUP_ROWS, gpu_shift: bool = True) -> CoverageReport:
    """Leave-one-GPU-out coverage: for each GPU, the error model fitted on the other GPUs' leave-one-GPU-out
    residuals only (GPU-level with `gpu_shift`, as profiles store [errors.transfer]; else row-level split-conformal)
    gives every one of its rows an interval around the row's leave-one-GPU-out prediction; the share of measured
    times inside it, overall, per held-out GPU and per family ('gemm/<dtype>' for GEMMs)."""
    n = len(res.measured_s)
    inside = {q: np.zeros(n, dtype=bool) for q in levels}
    half = {q: np.zeros(n) for q in levels}
    keys = np.array([f"{f}\t{d}\t{r}" for f, d, r in zip(res.family, res.dtype, res.regime, strict=True)])
    for g in sorted(set(res.hardware.tolist())):
        test = res.hardware == g
        model = fit_error_model(*_select(res, ~test, res.logo_s), residuals="leave-one-GPU-out", min_rows=min_rows,
                                gpu=res.hardware[~test] if gpu_shift else None)
        for key in set(keys[test].tolist()):
            rows = test & (keys == key)
            ratio = res.measured_s[rows] / res.logo_s[rows]
            for q in levels:
                lo, hi = model.interval(*key.split("\t"), q)
                inside[q][rows] = (lo <= ratio) & (ratio <= hi)
                half[q][rows] = np.log(hi / lo) / 2.0
    err = np.abs(np.log(res.logo_s / res.measured_s))
    fam = np.array([f"gemm/{d}" if f == "gemm" else f for f, d in zip(res.family, res.dtype, strict=True)],
                   dtype=object)
    return CoverageReport(
        overall=_row("all", inside, half, err, np.ones(n, dtype=bool)),
        by_family=tuple(_row(f, inside, half, err, fam == f) for f in sorted(set(fam.tolist()))),
        by_gpu=tuple(_row(f"held out: {g}", inside, half, err, res.hardware == g)
                     for g in sorted(set(res.hardware.tolist()))),
        levels=tuple(levels))


# ------------------------------------------------------------------------------------------- end to end
@dataclass(frozen=True)
class IntervalCheck:
    """One measured serving value against its ensemble interval: `unit` is the benchmark row or log it comes from
    (the unit split_units splits on), `group` its table group, `metric` e.g. 'ttft_ms' or 'ttft_s.p99', `point`
    the plain run's prediction, `bounds` level -> (low, high)."""

    unit: str
    group: str
    metric: str
    measured: float
    point: float
    bounds: dict[float, tuple[float, float]]


def interval_coverage(checks: Sequence[IntervalCheck], label: str = "all") -> CoverageRow:
    """Share of `checks` whose measured value lies in its interval per level, the median log half-width
    (log(high / low) / 2) and the point's median |log(point / measured)|. Checks with a non-positive or non-finite
    value or bound are left out (n counts the rest)."""
    ok = [c for c in checks if c.measured > 0 and c.point > 0 and math.isfinite(c.point)
          and all(0 < lo <= hi < math.inf for lo, hi in c.bounds.values())]
    levels = sorted({q for c in checks for q in c.bounds})
    if not ok:
        return CoverageRow(label, 0, dict.fromkeys(levels, math.nan), dict.fromkeys(levels, math.nan), math.nan)
    cov = {q: float(np.mean([c.bounds[q][0] <= c.measured <= c.bounds[q][1] for c in ok])) for q in levels}
    half = {q: float(np.median([math.log(c.bounds[q][1] / c.bounds[q][0]) / 2 for c in ok])) for q in levels}
    err = [abs(math.log(c.point / c.measured)) for c in ok]
    return CoverageRow(label, len(ok), cov, half, float(np.median(err)),
                       {q: float(np.quantile(err, q)) for q in levels})


def coverage_by(checks: Sequence[IntervalCheck], key: Callable[[IntervalCheck], str]) -> list[CoverageRow]:
    """interval_coverage overall ('all') and per key(check), keys sorted."""
    groups: dict[str, list[IntervalCheck]] = {}
    for c in checks:
        groups.setdefault(key(c), []).append(c)
    return [interval_coverage(checks), *(interval_coverage(groups[k], k) for k in sorted(groups))]


def split_units(checks: Iterable[IntervalCheck]) -> tuple[list[IntervalCheck], list[IntervalCheck]]:
    """(calibration, test): the checks of every other unit in first-seen order (units 0, 2, 4, ... calibrate the
    end-to-end term, 1, 3, 5, ... test it), so no row or log is in both halves."""
    order: dict[str, int] = {}
    cal, test = [], []
    for c in checks:
        (cal if order.setdefault(c.unit, len(order)) % 2 == 0 else test).append(c)
    return cal, test


def _outside(c: IntervalCheck, q: float) -> float:
    """How far (log) the measured value lies outside the level-q interval; negative inside (Romano et al.,
    "Conformalized Quantile Regression", NeurIPS 2019)."""
    lo, hi = c.bounds[q]
    return max(math.log(lo / c.measured), math.log(c.measured / hi))


def e2e_error_term(checks: Sequence[IntervalCheck], key: Callable[[IntervalCheck], str] = lambda c: c.metric
                   ) -> dict[str, dict[float, float]]:
    """The end-to-end term per key (default: per metric) and level: the conformal level-quantile of the
    calibration checks' outside-distances (_outside). Widening each interval by it in log space (widen, same key)
    covers a new exchangeable check with probability >= level: the errors kernel models do not carry
    (scheduling, CPU overhead, clients)."""
    groups: dict[str, list[IntervalCheck]] = {}
    for c in checks:
        if c.measured > 0 and all(0 < lo <= hi < math.inf for lo, hi in c.bounds.values()):
            groups.setdefault(key(c), []).append(c)
    return {k: {q: conformal_quantiles([_outside(c, q) for c in mine], (q,))[0] for q in sorted(mine[0].bounds)}
            for k, mine in sorted(groups.items())}


def widen(checks: Iterable[IntervalCheck], term: dict[str, dict[float, float]],
          key: Callable[[IntervalCheck], str] = lambda c: c.metric) -> list[IntervalCheck]:
    """Checks with each level-q interval widened by their key's term in log space: (low e^-t, high e^t), a negative
    term narrowing it at most to its geometric midpoint; checks whose key has no term are left out."""
    out = []
    for c in checks:
        t = term.get(key(c))
        if t is not None:
            out.append(replace(c, bounds={q: _widened(lo, hi, t[q]) for q, (lo, hi) in c.bounds.items()}))
    return out


def _widened(lo: float, hi: float, t: float) -> tuple[float, float]:
    if lo <= 0 or not math.isfinite(hi):
        return lo, hi
    t = max(t, -math.log(hi / lo) / 2)
    return lo * math.exp(-t), hi * math.exp(t)
