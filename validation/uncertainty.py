"""Fit kernel error models (model.uncertainty.ErrorModel) to validation residuals with split-conformal quantiles of
log(predicted / measured), pooling small groups into their parents, and measure their coverage leave-one-GPU-out
(quantiles fitted on the other GPUs' residuals, tested on the held-out GPU's measured rows).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from roofsim.model.uncertainty import ANY, ErrorGroup, ErrorModel, conformal_quantiles, group_key
from roofsim.validation.transfer import RowResiduals

__all__ = ["MIN_GROUP_ROWS", "INTERVAL_LEVELS", "fit_error_model", "error_models_from_residuals",
           "CoverageRow", "CoverageReport", "logo_coverage", "TARGET_COVERAGE"]

# A group with fewer residuals is pooled into its parent (family/dtype/*, then family/*/*, then */*/*). At 400 rows
# the 5 % and 95 % conformal ranks sit well inside the sample; the leave-one-GPU-out coverage (logo_coverage) of
# 100 rows per group was 2-3 points lower (finer groups of three GPUs fit the fourth less well).
MIN_GROUP_ROWS = 400
INTERVAL_LEVELS: tuple[float, ...] = (0.8, 0.9)
# Issue #18 targets: share of measured rows inside the interval (low, high) per level.
TARGET_COVERAGE: dict[float, tuple[float, float]] = {0.8: (0.75, 0.88), 0.9: (0.85, 0.95)}


def fit_error_model(family: Sequence[str], dtype: Sequence[str], regime: Sequence[str], log_ratio: np.ndarray,
                    residuals: str, source: str = "", min_rows: int = MIN_GROUP_ROWS) -> ErrorModel:
    """An ErrorModel from one residual per row (log(predicted / measured)) and the row's family, dtype and regime:
    conformal quantiles per group family/dtype/regime with at least `min_rows` rows, per pooled parent
    family/dtype/* and family/*/* likewise, and always */*/* (every row)."""
    lr = np.asarray(log_ratio, dtype=float)
    if not len(lr) or not np.all(np.isfinite(lr)):
        raise ValueError(f"fit_error_model needs finite residuals; got {len(lr)} rows, "
                         f"{int(np.sum(~np.isfinite(lr)))} not finite")
    by: dict[str, list[int]] = {}
    for i, (f, d, r) in enumerate(zip(family, dtype, regime, strict=True)):
        for key in (group_key(f, d, r), group_key(f, d, ANY), group_key(f, ANY, ANY)):
            by.setdefault(key, []).append(i)
    groups = [ErrorGroup(key=k, n=len(idx), log_ratio=tuple(round(x, 5) for x in conformal_quantiles(lr[idx])))
              for k, idx in sorted(by.items()) if len(idx) >= min_rows]
    groups.append(ErrorGroup(key=group_key(ANY, ANY, ANY), n=len(lr),
                             log_ratio=tuple(round(x, 5) for x in conformal_quantiles(lr))))
    return ErrorModel(residuals=residuals, source=source, min_rows=min_rows, groups=tuple(groups))


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
                                    min_rows=min_rows),
    }


@dataclass(frozen=True)
class CoverageRow:
    """Coverage of one group of held-out rows: share inside each level's interval, median half-width of the
    interval and the point prediction's median absolute error, both in log space (|log(predicted / measured)|:
    0.1 is about 10 %; symmetric where relative widths of multiplicative intervals are not)."""

    label: str
    n: int
    covered: dict[float, float]
    half_width: dict[float, float]
    median_abs_err: float


@dataclass(frozen=True)
class CoverageReport:
    overall: CoverageRow
    by_family: tuple[CoverageRow, ...]
    by_gpu: tuple[CoverageRow, ...]
    levels: tuple[float, ...]

    def table(self) -> str:
        """Markdown: one line overall, per held-out GPU, per family, with the issue's targets."""
        lv = self.levels
        head = ("| rows | n | " + " | ".join(f"{q:.0%} covered" for q in lv) + " | "
                + " | ".join(f"{q:.0%} half-width" for q in lv) + " | point median abs log err | half-width / error "
                f"({lv[0]:.0%}) |")
        lines = [head, "|" + "---|" * (4 + 2 * len(lv))]
        for r in (self.overall, *self.by_gpu, *self.by_family):
            lines.append(f"| {r.label} | {r.n} | " + " | ".join(f"{r.covered[q]:.1%}" for q in lv) + " | "
                         + " | ".join(f"{r.half_width[q]:.3f}" for q in lv) + f" | {r.median_abs_err:.3f} | "
                         f"{r.half_width[lv[0]] / r.median_abs_err:.2f} |")
        t = "; ".join(f"{q:.0%} interval covers {lo:.0%}-{hi:.0%}" for q, (lo, hi) in TARGET_COVERAGE.items())
        return "\n".join(lines) + f"\n\nTargets: {t}; median half-width <= 1.5 x the point's median abs error (log space)."


def _row(label: str, inside: dict[float, np.ndarray], half: dict[float, np.ndarray], err: np.ndarray,
         sel: np.ndarray) -> CoverageRow:
    return CoverageRow(label, int(sel.sum()), {q: float(v[sel].mean()) for q, v in inside.items()},
                       {q: float(np.median(v[sel])) for q, v in half.items()}, float(np.median(err[sel])))


def logo_coverage(res: RowResiduals, levels: Sequence[float] = INTERVAL_LEVELS,
                  min_rows: int = MIN_GROUP_ROWS) -> CoverageReport:
    """Leave-one-GPU-out coverage: for each GPU, the error model fitted on the other GPUs' leave-one-GPU-out
    residuals gives every one of its rows an interval around the row's leave-one-GPU-out prediction; the share of
    measured times inside it, overall, per held-out GPU and per family ('gemm/<dtype>' for GEMMs)."""
    n = len(res.measured_s)
    inside = {q: np.zeros(n, dtype=bool) for q in levels}
    half = {q: np.zeros(n) for q in levels}
    for g in sorted(set(res.hardware.tolist())):
        test = res.hardware == g
        model = fit_error_model(*_select(res, ~test, res.logo_s), residuals="leave-one-GPU-out", min_rows=min_rows)
        for i in np.flatnonzero(test):
            for q in levels:
                lo, hi = model.interval(res.family[i], res.dtype[i], res.regime[i], q)
                p = res.logo_s[i]
                inside[q][i] = p * lo <= res.measured_s[i] <= p * hi
                half[q][i] = np.log(hi / lo) / 2.0
    err = np.abs(np.log(res.logo_s / res.measured_s))
    fam = np.array([f"gemm/{d}" if f == "gemm" else f for f, d in zip(res.family, res.dtype, strict=True)],
                   dtype=object)
    return CoverageReport(
        overall=_row("all", inside, half, err, np.ones(n, dtype=bool)),
        by_family=tuple(_row(f, inside, half, err, fam == f) for f in sorted(set(fam.tolist()))),
        by_gpu=tuple(_row(f"held out: {g}", inside, half, err, res.hardware == g)
                     for g in sorted(set(res.hardware.tolist()))),
        levels=tuple(levels))
