"""Fit kernel error models (model.uncertainty.ErrorModel) to validation residuals with split-conformal quantiles of
log(predicted / measured), pooling small groups into their parents, and measure their coverage leave-one-GPU-out
(quantiles fitted on the other GPUs' residuals, tested on the held-out GPU's measured rows).
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field, replace

import numpy as np

from roofsim.model.uncertainty import (
    ANY,
    E2E_KERNEL_LEVEL,
    LEVELS,
    METHODS,
    E2ECell,
    E2EDifficulty,
    E2ETerm,
    ErrorGroup,
    ErrorModel,
    abs_score_quantiles,
    capped_levels,
    conformal_quantiles,
    e2e_features,
    group_key,
    is_rate,
    metric_family,
    parent_keys,
    scaled_quantiles,
    shifted_quantiles,
)
from roofsim.validation.transfer import RowResiduals

__all__ = ["MIN_GROUP_ROWS", "MIN_CELL_ROWS", "SCORE_LEVELS", "INTERVAL_LEVELS", "fit_error_model",
           "fit_normalized_error_model", "cell_stats", "error_models_from_residuals",
           "CoverageRow", "CoverageReport", "logo_coverage", "TARGET_COVERAGE", "coverage_table",
           "IntervalCheck", "interval_coverage", "coverage_by", "split_units", "e2e_error_term", "widen", "nested",
           "metric_family", "e2e_cell_keys", "fit_e2e_term", "apply_e2e_term", "E2E_MIN_CELL_ROWS",
           "E2E_SHRINK", "E2E_DIFFICULTY_MIN_UNITS", "E2E_RIDGES", "fit_e2e_difficulty", "capped_note"]

# A group with fewer residuals is pooled into its parent (family/dtype/*, then family/*/*, then */*/*). At 400 rows
# the 5 % and 95 % conformal ranks sit well inside the sample; the leave-one-GPU-out coverage (logo_coverage) of
# 100 rows per group was 2-3 points lower (finer groups of three GPUs fit the fourth less well).
MIN_GROUP_ROWS = 400
# A GPU's median residual in a cell counts towards the GPU shift only from this many rows on (a median of fewer
# rows is mostly sampling noise, which would inflate the shift's spread).
MIN_GPU_ROWS = 10
INTERVAL_LEVELS: tuple[float, ...] = (0.8, 0.9)
# Normalized method: a group's centre and scale (median, median absolute deviation) need far fewer rows than its
# tail quantiles (the tails come from the pooled scaled scores), so groups are finer than MIN_GROUP_ROWS allows.
MIN_CELL_ROWS = 30
# A scale below this (log, ~1 %) is clamped: a group measured almost exactly must not get a zero-width interval.
MIN_SCALE = 0.01
# Interval levels whose scaled-score quantile a normalized model stores: every equal-tailed interval of LEVELS.
SCORE_LEVELS: tuple[float, ...] = tuple(round(2 * p - 1, 6) for p in LEVELS if p > 0.5)
# An end-to-end cell (metric x group) needs this many calibration values for its own centre and scale; fewer fall
# back to the metric's, then the pooled cell.
E2E_MIN_CELL_ROWS = 8
# An end-to-end cell's scale is pulled towards its parent's with weight E2E_SHRINK / (n + E2E_SHRINK): the MAD of
# 8-20 values is noisy and often too small (a too-small scale inflates the pooled score quantile for every value).
# 10 was the best of 0/5/10/20 on the test halves of the four data sets.
E2E_SHRINK = 10.0
# A learned end-to-end difficulty (fit_e2e_difficulty) needs this many calibration rows/logs: with fewer (the 4
# calibration logs of the vLLM set) the two cross-fitting folds are too small to fit and judge its 11 weights.
E2E_DIFFICULTY_MIN_UNITS = 20
# Ridge penalties (per value, on standardized features) the difficulty chooses from on the calibration values alone
# (cross-fitted median width at fixed coverage), beside no difficulty at all.
E2E_RIDGES: tuple[float, ...] = (0.003, 0.01, 0.03, 0.1, 0.3, 1.0)
# |r - centre| below this (log) counts as it in the difficulty's regression: log |r - centre| of a value predicted
# almost exactly would otherwise pull the fit towards -infinity.
_MIN_ABS_DEV = 1e-3
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


def cell_stats(keys: Sequence[str], lr: np.ndarray, min_rows: int = MIN_CELL_ROWS) -> dict[str, tuple[float, float, int]]:
    """Group key -> (centre, scale, n) for every group family/dtype/regime and pooled parent (parent_keys) with at
    least `min_rows` of the residuals `lr` (keys[i] the family/dtype/regime of row i), and always */*/*: centre the
    median residual, scale the median absolute deviation from it (at least MIN_SCALE)."""
    by: dict[str, list[int]] = {}
    for i, k in enumerate(keys):
        for p in parent_keys(k):
            by.setdefault(p, []).append(i)
    out = {}
    for k, idx in by.items():
        if len(idx) >= min_rows or k == group_key(ANY, ANY, ANY):
            x = lr[idx]
            c = float(np.median(x))
            out[k] = (c, max(float(np.median(np.abs(x - c))), MIN_SCALE), len(idx))
    return out


def _cell_of(stats: dict[str, tuple[float, float, int]], key: str) -> tuple[float, float, int]:
    return next(stats[p] for p in parent_keys(key) if p in stats)


def _scores(stats: dict[str, tuple[float, float, int]], keys: Sequence[str], lr: np.ndarray) -> np.ndarray:
    cs = np.array([_cell_of(stats, k)[:2] for k in keys]).reshape(-1, 2)
    return np.abs(lr - cs[:, 0]) / cs[:, 1]


def fit_normalized_error_model(family: Sequence[str], dtype: Sequence[str], regime: Sequence[str],
                               log_ratio: np.ndarray, residuals: str, source: str = "",
                               min_rows: int = MIN_CELL_ROWS, gpu: Sequence[str] | None = None) -> ErrorModel:
    """Normalized (locally adaptive) split-conformal (Papadopoulos et al., "Normalized nonconformity measures for
    regression conformal prediction", 2008; Lei et al., JASA 2018, section 5.2): the score of a row is
    |r - centre(group)| / scale(group) (cell_stats: median and MAD of its most specific group with `min_rows`
    rows), one pooled conformal quantile Q(L) of the scores per level, and a group's level-L interval is
    centre +- Q(L) scale, so its width follows how hard the group is.

    gpu=None (rows exchangeable): the centres and scales come from the even-numbered rows, the scores from the odd
    ones (split conformal: a new row exchangeable with the odd rows is covered with probability >= L). `gpu` given:
    each GPU's rows are scored by centres and scales of the other GPUs' rows (cross-conformal over GPUs, so a
    score carries the shift of an unseen GPU), the stored centres and scales use every row; this has no
    finite-sample guarantee with a handful of GPUs (docs/intervals.md) and is checked leave-one-GPU-out."""
    lr = np.asarray(log_ratio, dtype=float)
    if not len(lr) or not np.all(np.isfinite(lr)):
        raise ValueError(f"fit_normalized_error_model needs finite residuals; got {len(lr)} rows, "
                         f"{int(np.sum(~np.isfinite(lr)))} not finite")
    keys = [group_key(f, d, r) for f, d, r in zip(family, dtype, regime, strict=True)]
    if gpu is None:
        fit = np.arange(len(lr)) % 2 == 0
        cal = ~fit if (~fit).any() else fit
        stats = cell_stats([k for k, m in zip(keys, fit, strict=True) if m], lr[fit], min_rows)
        scores = _scores(stats, [k for k, m in zip(keys, cal, strict=True) if m], lr[cal])
    else:
        units = np.asarray(gpu, dtype=object)
        if len(units) != len(lr):
            raise ValueError(f"gpu has {len(units)} entries for {len(lr)} residuals")
        parts = []
        for g in sorted(set(units.tolist())):
            own = units == g
            if own.all():
                parts.append(_scores(cell_stats(keys, lr, min_rows), keys, lr))
                continue
            other = cell_stats([k for k, m in zip(keys, own, strict=True) if not m], lr[~own], min_rows)
            parts.append(_scores(other, [k for k, m in zip(keys, own, strict=True) if m], lr[own]))
        scores = np.concatenate(parts)
        stats = cell_stats(keys, lr, min_rows)
    sq = abs_score_quantiles(scores, SCORE_LEVELS)
    groups = tuple(ErrorGroup(key=k, n=n, scale=round(sc, 5),
                              log_ratio=_rounded(scaled_quantiles(c, sc, SCORE_LEVELS, sq)))
                   for k, (c, sc, n) in sorted(stats.items()))
    return ErrorModel(method="normalized split-conformal", residuals=residuals, source=source, min_rows=min_rows,
                      gpus=0 if gpu is None else len(set(np.asarray(gpu).tolist())), score_levels=SCORE_LEVELS,
                      score_quantiles=_rounded(sq), groups=groups)


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
                                min_rows: int | None = None, method: str = "normalized split-conformal"
                                ) -> dict[str, ErrorModel]:
    """The two error models stored with a profile of `hardware` (rows of `frameworks` only, when given):
    'own' from the held-out-shape residuals of that GPU (its own profile's error on shapes the fit never saw) and
    'transfer' from the leave-one-GPU-out residuals of every GPU (the error of a profile moved to a GPU it was
    not fitted on: validation.profiles.profile_for's architecture transfer). `method` (model.uncertainty.METHODS)
    for both; 'transfer' sees each row's GPU unless it is row-level 'split-conformal'."""
    fw = np.ones(len(res.measured_s), dtype=bool) if frameworks is None else np.isin(res.framework, list(frameworks))
    own = fw & (res.hardware == hardware) & np.isfinite(res.same_gpu_s)
    if not own.any():
        raise ValueError(f"no held-out-shape residuals of {hardware!r} (frameworks {frameworks}); GPUs with some: "
                         f"{sorted(set(res.hardware[np.isfinite(res.same_gpu_s)].tolist()))}")
    n_gpus = len(set(res.hardware[fw].tolist()))
    own_method = "split-conformal" if method == "gpu-shift + split-conformal" else method  # one GPU: no shift
    return {
        "own": _fit(own_method, _select(res, own, res.same_gpu_s), min_rows, None,
                    residuals=f"held-out shapes ({hardware})",
                    source=f"{int(own.sum())} AIConfigurator rows of {hardware}, out-of-fold "
                           f"(shape families held out, validation.calibrate.shape_folds)"),
        "transfer": _fit(method, _select(res, fw, res.logo_s), min_rows,
                         None if method == "split-conformal" else res.hardware[fw], residuals="leave-one-GPU-out",
                         source=f"{int(fw.sum())} AIConfigurator rows of {n_gpus} GPUs, each predicted by a fit on "
                                f"the others (validation.transfer.leave_one_gpu_out)"),
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


def logo_coverage(res: RowResiduals, levels: Sequence[float] = INTERVAL_LEVELS, min_rows: int | None = None,
                  method: str = "normalized split-conformal") -> CoverageReport:
    """Leave-one-GPU-out coverage: for each GPU, the error model fitted on the other GPUs' leave-one-GPU-out
    residuals only (`method`: model.uncertainty.METHODS; the GPU-level ones see each row's GPU, as profiles store
    [errors.transfer]) gives every one of its rows an interval around the row's leave-one-GPU-out prediction; the
    share of measured times inside it, overall, per held-out GPU and per family ('gemm/<dtype>' for GEMMs)."""
    n = len(res.measured_s)
    inside = {q: np.zeros(n, dtype=bool) for q in levels}
    half = {q: np.zeros(n) for q in levels}
    keys = np.array([f"{f}\t{d}\t{r}" for f, d, r in zip(res.family, res.dtype, res.regime, strict=True)])
    for g in sorted(set(res.hardware.tolist())):
        test = res.hardware == g
        model = _fit(method, _select(res, ~test, res.logo_s), min_rows,
                     None if method == "split-conformal" else res.hardware[~test])
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


def _fit(method: str, sel: tuple[list, list, list, np.ndarray], min_rows: int | None, gpu: np.ndarray | None,
         residuals: str = "leave-one-GPU-out", source: str = "") -> ErrorModel:
    """The error model of `method` on selected residuals (_select), min_rows defaulting to the method's."""
    if method not in METHODS:
        raise ValueError(f"method={method!r} must be one of {METHODS}")
    if method == "normalized split-conformal":
        return fit_normalized_error_model(*sel, residuals=residuals, source=source,
                                          min_rows=min_rows or MIN_CELL_ROWS, gpu=gpu)
    return fit_error_model(*sel, residuals=residuals, source=source, min_rows=min_rows or MIN_GROUP_ROWS, gpu=gpu)


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
    # the row's inputs the end-to-end difficulty reads (model.uncertainty.E2E_INPUTS: isl, osl, concurrency, qps, tp)
    inputs: dict[str, float] = field(default_factory=dict)


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
    term narrowing it at most to its geometric midpoint, then made nested (nested); checks whose key has no term
    are left out."""
    out = []
    for c in checks:
        t = term.get(key(c))
        if t is not None:
            out.append(replace(c, bounds=nested({q: _widened(lo, hi, t[q]) for q, (lo, hi) in c.bounds.items()})))
    return out


def nested(bounds: dict[float, tuple[float, float]]) -> dict[float, tuple[float, float]]:
    """Intervals per level made nested: each level's interval is the hull of its own and every lower level's.
    Per-level conformal terms fitted on a few rows can put a 90 % interval inside the 80 % one; the hull keeps
    each level's guarantee (it only grows) and the ordering a reader expects."""
    out: dict[float, tuple[float, float]] = {}
    lo, hi = math.inf, -math.inf
    for q in sorted(bounds):
        lo, hi = min(lo, bounds[q][0]), max(hi, bounds[q][1])
        out[q] = (lo, hi)
    return out


def _widened(lo: float, hi: float, t: float) -> tuple[float, float]:
    if lo <= 0 or not math.isfinite(hi):
        return lo, hi
    t = max(t, -math.log(hi / lo) / 2)
    return lo * math.exp(-t), hi * math.exp(t)


def e2e_cell_keys(c: IntervalCheck) -> tuple[str, ...]:
    """Cells of a measured value, most specific first: its table group (model, engine, GPU: inputs of the
    prediction, never its error), then the pooled cell. Finer cells (metric x group) were tried on the four
    end-to-end data sets and widened the test-half intervals: with 35-50 calibration rows per set their medians
    and MADs are too noisy (docs/intervals.md section 3)."""
    return (c.group, ANY)


def _e2e_cells(checks: Sequence[IntervalCheck], keys: Callable[[IntervalCheck], tuple[str, ...]],
               min_rows: int, shrink: float = 0.0) -> dict[str, tuple[float, float, int]]:
    """Cell -> (centre, scale, n): median and MAD of the cell's log(measured / point), the scale pulled towards its
    parent cell's (the next key) with weight `shrink` / (n + shrink), coarsest first: few values give a MAD that
    is too small, and a too-small scale inflates the pooled score quantile for every value. The centre stays the
    cell's own median (pulling it towards a parent of other bias shifts a narrow cell off its values)."""
    by: dict[str, list[float]] = {}
    parent: dict[str, str] = {}
    for c in checks:
        ks = (*keys(c), ANY)
        for k, up in zip(ks, ks[1:], strict=False):
            parent.setdefault(k, up)
        for k in dict.fromkeys(ks):
            by.setdefault(k, []).append(_residual(c))
    out: dict[str, tuple[float, float, int]] = {}

    def depth(k: str) -> int:
        return 0 if k not in parent or parent[k] == k else 1 + depth(parent[k])

    for k in sorted(by, key=depth):
        v = by[k]
        if len(v) < min_rows and k != ANY:
            continue
        x = np.asarray(v)
        centre = float(np.median(x))
        scale = float(np.median(np.abs(x - centre)))
        up = parent.get(k)
        while up is not None and up not in out and up != k:
            up = parent.get(up)
        if up in out and up != k and shrink > 0:
            w = len(v) / (len(v) + shrink)
            scale = w * scale + (1 - w) * out[up][1]
        out[k] = (centre, max(scale, MIN_SCALE), len(v))
    return out


def _residual(c: IntervalCheck) -> float:
    """log(measured / point), of the reciprocal for a rate (E2ETerm.rates_reciprocal): a model too slow predicts a
    time too long and a throughput too low, and one cell pools both. Cells pooling e2e_ms with its mirror
    output_tokens_per_s had centres near 0 between two opposite biases (Splitwise: 96 % / 38 % covered)."""
    r = math.log(c.measured / c.point)
    return -r if is_rate(c.metric) else r


def _e2e_cell(cells: dict[str, tuple[float, float, int]], c: IntervalCheck,
             keys: Callable[[IntervalCheck], tuple[str, ...]]) -> tuple[float, float, int]:
    return next(cells[k] for k in (*keys(c), ANY) if k in cells)


def _features(c: IntervalCheck) -> dict[str, float]:
    lo, hi = c.bounds.get(E2E_KERNEL_LEVEL) or c.bounds[min(c.bounds)]
    return e2e_features(c.metric, math.log(hi / lo) / 2, c.inputs)


def _e2e_scores(cells: dict[str, tuple[float, float, int]], checks: Sequence[IntervalCheck],
                keys: Callable[[IntervalCheck], tuple[str, ...]], difficulty: E2EDifficulty | None = None
                ) -> tuple[list[float], list[float]]:
    """Scores |r - centre| / scale of `checks` and their scales (the cell's times the difficulty's factor)."""
    scores, scales = [], []
    for c in checks:
        centre, scale, _ = _e2e_cell(cells, c, keys)
        scale *= difficulty.factor(_features(c)) if difficulty else 1.0
        scores.append(abs(_residual(c) - centre) / scale)
        scales.append(scale)
    return scores, scales


def fit_e2e_difficulty(checks: Sequence[IntervalCheck], cells: dict[str, tuple[float, float, int]],
                       keys: Callable[[IntervalCheck], tuple[str, ...]], ridge: float,
                       norm: tuple[np.ndarray, np.ndarray] | None = None) -> E2EDifficulty:
    """Ridge regression of log(max(|r - centre|, 1e-3) / cell scale) on the standardized e2e_features of `checks`
    (penalty `ridge` x n; `norm` = the features' (mean, sd), default these checks'); the intercept is dropped (a
    constant factor is absorbed by the conformal quantile)."""
    feats = [_features(c) for c in checks]
    names = tuple(feats[0])
    x = np.array([[f[k] for k in names] for f in feats])
    mean, sd = norm if norm is not None else (x.mean(0), x.std(0))
    sd = np.where(sd > 1e-9, sd, 1.0)  # a constant feature (sd 0 up to rounding) gets a zero z and no weight
    z = np.hstack([np.ones((len(x), 1)), (x - mean) / sd])
    y = np.empty(len(checks))
    for i, c in enumerate(checks):
        centre, scale, _ = _e2e_cell(cells, c, keys)
        y[i] = math.log(max(abs(_residual(c) - centre), _MIN_ABS_DEV) / scale)
    pen = ridge * len(y) * np.diag([0.0] + [1.0] * len(names))
    w = np.linalg.solve(z.T @ z + pen, z.T @ y)[1:]
    return E2EDifficulty(features=names, mean=tuple(float(v) for v in mean), sd=tuple(float(v) for v in sd),
                         weights=tuple(round(float(v), 6) for v in w), ridge=ridge)


def _scorable(checks: Iterable[IntervalCheck]) -> list[IntervalCheck]:
    return [c for c in checks if c.measured > 0 and 0 < c.point < math.inf]


def fit_e2e_term(checks: Sequence[IntervalCheck], keys: Callable[[IntervalCheck], tuple[str, ...]] = e2e_cell_keys,
                 min_rows: int = E2E_MIN_CELL_ROWS, levels: Sequence[float] = SCORE_LEVELS,
                 source: str = "", shrink: float = E2E_SHRINK, difficulty: bool = False) -> E2ETerm:
    """Normalized split-conformal end-to-end term (Papadopoulos et al. 2008; Lei et al., JASA 2018) from
    calibration checks: residual r = log(measured / point) (of the reciprocal for a rate, _residual); cells
    (keys(c), most specific first, each with >= `min_rows` values) give a centre (median r) and a scale (MAD, the
    difficulty); score |r - centre| / scale. The units are cross-fitted in two folds (units alternately): each fold
    is scored with the other fold's cells, so no value scores against a centre it helped fit; Q(L) is the conformal
    quantile of all scores, one per level for every metric (nested), and the stored cells use every check. For a
    new value exchangeable with the calibration values the interval centre +- Q(L) scale holds it with probability
    about >= L (cross-fitting has no exact finite-sample bound; the test half checks it, docs/intervals.md).
    `shrink` pulls a cell towards its parent (_e2e_cells). `difficulty`: with at least E2E_DIFFICULTY_MIN_UNITS
    units, each value's scale is also multiplied by a learned factor of its features (fit_e2e_difficulty, fitted
    per fold like the cells), its ridge penalty chosen among E2E_RIDGES and none by the cross-fitted scores' median
    interval width at INTERVAL_LEVELS (the coverage of every candidate is fixed by its own Q)."""
    ok = _scorable(checks)
    if not ok:
        raise ValueError("fit_e2e_term needs at least one check with a positive measured value and point")
    order: dict[str, int] = {}
    fold = [order.setdefault(c.unit, len(order)) % 2 for c in ok]
    halves = [([c for c, g in zip(ok, fold, strict=True) if g == f],
               [c for c, g in zip(ok, fold, strict=True) if g != f]) for f in (0, 1)]
    halves = [(mine, other or mine) for mine, other in halves]
    norm = None
    candidates: tuple[float | None, ...] = (None,)
    if difficulty and len(order) >= E2E_DIFFICULTY_MIN_UNITS:
        x = np.array([list(_features(c).values()) for c in ok])
        norm = (x.mean(0), x.std(0))
        candidates += E2E_RIDGES
    best: tuple[float, float | None, list[float]] | None = None
    for ridge in candidates:
        scores: list[float] = []
        scales: list[float] = []
        for mine, other in halves:
            cells = _e2e_cells(other, keys, min_rows, shrink)
            d = None if ridge is None else fit_e2e_difficulty(other, cells, keys, ridge, norm)
            sc, sl = _e2e_scores(cells, mine, keys, d)
            scores += sc
            scales += sl
        q = abs_score_quantiles(scores, INTERVAL_LEVELS)
        width = sum(float(np.median(np.asarray(scales) * v)) for v in q)
        if best is None or width < best[0] - 1e-12:
            best = (width, ridge, scores)
    assert best is not None
    _, ridge, scores = best
    if note := capped_note(len(scores), levels):
        warnings.warn(f"fit_e2e_term: {note}", stacklevel=2)
    cells = _e2e_cells(ok, keys, min_rows, shrink)
    return E2ETerm(source=source or f"{len(ok)} measured values of {len(order)} rows/logs",
                   score_levels=tuple(levels), score_quantiles=_rounded(abs_score_quantiles(scores, levels)),
                   cells=tuple(E2ECell(key=k, n=n, centre=round(c, 5), scale=round(s, 5))
                               for k, (c, s, n) in sorted(cells.items())),
                   rates_reciprocal=True, n_scores=len(scores),
                   difficulty=None if ridge is None else fit_e2e_difficulty(ok, cells, keys, ridge, norm))


def apply_e2e_term(checks: Iterable[IntervalCheck], term: E2ETerm,
                   keys: Callable[[IntervalCheck], tuple[str, ...]] = e2e_cell_keys) -> list[IntervalCheck]:
    """Checks with their intervals replaced by the end-to-end term's around their point (E2ETerm.bounds with the
    check's metric and difficulty features, the same levels); checks without a positive point are left out."""
    return [replace(c, bounds=term.bounds(c.point, keys(c), sorted(c.bounds), c.metric, _features(c)))
            for c in _scorable(checks)]


def capped_note(n: int, levels: Iterable[float]) -> str:
    """'' or a sentence naming the levels n conformal scores cannot reach (capped_levels): their quantile is the
    largest score, so their coverage has no guarantee."""
    capped = capped_levels(n, levels)
    if not capped:
        return ""
    return (f"level(s) {', '.join(f'{q:.0%}' for q in capped)} capped: {n} calibration scores are too few for "
            f"their conformal rank (level L needs n >= L / (1 - L)), so Q is the largest score and the level has "
            "no guarantee")
