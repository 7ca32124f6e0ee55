"""Leave-one-GPU-out validation: fit a calibration on every measured GPU but one and predict the held-out GPU's
kernel rows from its HardwareSpec alone; error per op family, dtype and framework, the same-GPU held-out-shape
error beside it, and a per-knob identifiability report (value per GPU, bounds, effect of freezing on LOGO error).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from roofsim.hardware_specs.errors import InputError
from roofsim.hardware_specs.spec import HardwareSpec
from roofsim.model.cost import Calibration, kernel_cost
from roofsim.model.kernel import Kernel
from roofsim.model.uncertainty import regime_from_bound
from roofsim.validation import kernel_tables
from roofsim.validation.calibrate import (
    BOUNDS,
    HOST_FABRIC_FIELDS,
    FitData,
    engine_base,
    fit_calibration,
    fitted_fields,
    prepare,
    shape_folds,
)
from roofsim.validation.kernel_tables import KernelMeasurement, KernelTable
from roofsim.validation.metrics_err import ErrorStats, dtype_label, error_stats
from roofsim.validation.predict import FIT_FIELDS, why_unpredictable

__all__ = ["FitFn", "TransferReport", "KnobReport", "family_of", "deterministic_sample", "leave_one_gpu_out",
           "default_fit", "freezing", "knob_report", "read_aiconfigurator_sample", "TARGETS_PCT",
           "TRANSFER_FAMILIES", "RowResiduals", "row_regime"]

# (data, base) -> calibration fitted to data
FitFn = Callable[[FitData, Calibration], Calibration]

# Issue #13 targets, median absolute % error leave-one-GPU-out, by family (dtype for GEMM).
TARGETS_PCT: dict[str, float] = {
    "gemm/bf16": 8.0, "gemm/fp16": 8.0, "gemm/fp8": 12.0, "gemm/fp8_block": 12.0, "gemm/nvfp4": 12.0,
    "attn_prefill": 10.0, "attn_decode": 12.0, "custom_allreduce": 12.0, "nccl_allreduce": 12.0,
    "nccl_allgather": 12.0, "nccl_reducescatter": 12.0, "nccl_alltoall": 12.0, "moe": 15.0,
    # issue #16: MLA kernel rows within the MoE module's 15 %
    "mla_context": 15.0, "mla_generation": 15.0, "mla_context_module": 15.0, "mla_generation_module": 15.0,
    "mla_bmm": 15.0,
}

# A row of these families is fitted and predicted; other families are reported with their reason.
_NCCL_FRAMEWORKS = ("nccl", "vidur", "llmcompass", "")


def family_of(row: KernelMeasurement) -> str:
    """The op family of a row: gemm, attn_prefill, attn_decode, custom_allreduce (the engines' own all-reduce),
    nccl_<collective>, moe, moe_a2a (dispatch/combine), or the row's op."""
    if row.op in ("allreduce", "allgather", "reducescatter", "alltoall", "send_recv"):
        if row.op == "allreduce" and row.framework not in _NCCL_FRAMEWORKS:
            return "custom_allreduce"
        return f"nccl_{row.op}"
    if row.op in ("moe_dispatch", "moe_combine"):
        return "moe_a2a"
    return row.op


def _key(row: KernelMeasurement) -> tuple[str, str, str]:
    return family_of(row), dtype_label(row), row.framework


def _scope(row: KernelMeasurement) -> str:
    """Which fit predicts the row: one calibration per engine (its GEMM/attention/all-reduce tables), NCCL alone."""
    return "nccl" if row.framework in _NCCL_FRAMEWORKS else row.framework


# AIConfigurator op-family folders the reader turns into rows (the others are listed by table in the report).
TRANSFER_FAMILIES: tuple[str, ...] = ("gemm", "attention", "comm", "moe", "mlp", "mla", "mla_bmm", "quantize")
_FIRST_FAMILIES = TRANSFER_FAMILIES[:5]
# columns whose values split a table into strata sampled separately (dtype, collective, phase)
_STRATA = ("gemm_dtype", "attn_dtype", "kv_cache_dtype", "op_name", "nccl_dtype", "allreduce_dtype", "moe_dtype",
           "phase", "quant_type", "num_gpus", "gemm_type", "bmm_dtype")


def read_aiconfigurator_sample(root: Path | str, per_stratum: int, seed: int = 0,
                               families: Sequence[str] = TRANSFER_FAMILIES) -> tuple[KernelTable, dict[str, str]]:
    """Every AIConfigurator table of `families` under root (kernel_tables.read_aiconfigurator_table: GPUs resolve
    through the hardware catalog), at most `per_stratum` rows per (table, dtype, collective, phase, GPU count)
    stratum drawn with numpy's generator from `seed` (row ids stay the parquet row index): a 100k-row GEMM table
    costs seconds instead of minutes. Also returns table -> reason for every table not read (its op family is
    outside `families`, or roofsim reads no rows of it: kernel_tables.AIC_TABLE_FAMILIES)."""
    root = Path(root)
    if not root.is_dir():
        raise InputError(f"{root}: not a directory")
    out = KernelTable((), ())
    skipped: dict[str, str] = {}
    rng = np.random.default_rng(seed)

    def select(table) -> list[int]:
        cols = [c for c in _STRATA if c in table.column_names]
        strata = list(zip(*(table.column(c).to_pylist() for c in cols), strict=True)) if cols else \
            [()] * table.num_rows
        by: dict[tuple, list[int]] = {}
        for i, s in enumerate(strata):
            by.setdefault(s, []).append(i)
        return sorted(i for _, idx in sorted(by.items(), key=lambda kv: str(kv[0]))
                      for i in (idx if len(idx) <= per_stratum else rng.choice(idx, per_stratum, replace=False)))

    # the tables of the families read first draw first from the one generator, so adding a family to the transfer
    # set leaves the sample (and the figures) of the earlier families unchanged
    for p in sorted(root.glob("*/*/*/*/*.parquet"), key=lambda q: (q.relative_to(root).parts[1] not in
                                                                    _FIRST_FAMILIES, q)):
        family = p.relative_to(root).parts[1]
        status = kernel_tables.AIC_TABLE_FAMILIES.get(p.stem, (family, "not read: unknown AIConfigurator table"))[1]
        if status.startswith("not read"):
            skipped[f"{family}/{p.stem}"] = status.removeprefix("not read: ")
        elif family not in families:
            skipped[f"{family}/{p.stem}"] = "op family not part of the transfer set"
        else:
            out = out + kernel_tables.read_aiconfigurator_table(p, select=select)
    return out, skipped


def deterministic_sample(rows: Sequence[KernelMeasurement], per_key: int, seed: int = 0
                         ) -> list[KernelMeasurement]:
    """At most `per_key` rows per (GPU, family, dtype, framework), drawn with numpy's generator from `seed`; the
    kept rows stay in input order, so the same input and seed always give the same sample."""
    rng = np.random.default_rng(seed)
    by: dict[tuple, list[int]] = {}
    for i, r in enumerate(rows):
        by.setdefault((r.hardware, *_key(r)), []).append(i)
    keep: list[int] = []
    for k in sorted(by):
        idx = by[k]
        keep.extend(idx if len(idx) <= per_key else rng.choice(idx, per_key, replace=False).tolist())
    return [rows[i] for i in sorted(keep)]


def default_fit(max_rows_per_key: int = 3000, frozen: Iterable[str] = (), seed: int = 0,
                extra: Sequence[str] = ()) -> FitFn:
    """fit_calibration on every field the data constrains (fitted_fields(data, extra=extra): `extra` adds knobs the
    GPU fit leaves at their defaults, e.g. calibrate.FROZEN_GPU_FIELDS) except `frozen` (kept at the base value)."""
    skip = set(frozen)

    def fit(data: FitData, base: Calibration) -> Calibration:
        fields = tuple(f for f in fitted_fields(data, extra=extra) if f not in skip)
        return fit_calibration(data, base, fields=fields, max_rows_per_key=max_rows_per_key, seed=seed)
    return fit


def freezing(frozen: Iterable[str], max_rows_per_key: int = 3000, extra: Sequence[str] = ()) -> FitFn:
    """default_fit with `frozen` held at the base calibration's values (the identifiability experiment)."""
    return default_fit(max_rows_per_key, frozen, extra=extra)


@dataclass(frozen=True)
class RowResiduals:
    """Every predicted row of a leave_one_gpu_out run, one array entry each: the raw material of the kernel error
    models (validation.uncertainty). `regime` is model.uncertainty's (bound, small/large) under the fit that
    predicted the row."""

    hardware: np.ndarray  # GPU id
    family: np.ndarray  # family_of(row)
    dtype: np.ndarray  # metrics_err.dtype_label(row)
    framework: np.ndarray
    regime: np.ndarray
    measured_s: np.ndarray
    logo_s: np.ndarray  # predicted by the fit on the other GPUs
    same_gpu_s: np.ndarray  # out-of-fold, the GPU's own fit with the row's shape family held out; nan = not run


def row_regime(kernels: Sequence[Kernel], hw: HardwareSpec, cal: Calibration) -> str:
    """model.uncertainty's regime of a row predicted as `kernels` (one kernel, or a module's): the bound of its
    longest kernel, small/large by the summed time of one call of the row."""
    costs = [kernel_cost(k, hw, cal) for k in kernels]
    top = max(costs, key=lambda c: c.seconds)
    return regime_from_bound(top.bound, sum(c.seconds for c in costs))


@dataclass(frozen=True)
class TransferReport:
    """LOGO error per (family, dtype, framework) pooled over held-out GPUs and per GPU; same-GPU held-out-shape
    error (secondary); families not predicted with their reasons; the calibration fitted per (held-out GPU, scope)."""

    logo: dict[tuple[str, str, str], ErrorStats]
    logo_by_gpu: dict[tuple[str, str, str, str], ErrorStats]
    same_gpu: dict[tuple[str, str, str], ErrorStats]
    not_predicted: dict[tuple[str, str], int]  # (family, reason) -> rows
    fits: dict[tuple[str, str], Calibration]  # (held-out GPU, scope) -> calibration fitted on the others
    own_fits: dict[tuple[str, str], Calibration]  # (GPU, scope) -> calibration fitted on that GPU alone
    gpus: tuple[str, ...]
    n_rows: int
    notes: tuple[str, ...] = field(default=())

    def family_stats(self) -> dict[str, ErrorStats]:
        """LOGO error per target family ('gemm/<dtype>' for GEMMs, 'moe/<recipe>' for mixed-precision MoE modules,
        else the family), every framework pooled."""
        return _pooled(self._residuals, lambda k: f"{k[0]}/{k[1]}" if k[0] == "gemm" or (
            k[0] == "moe" and k[1] in kernel_tables.MOE_MIXED_DTYPES) else k[0])

    # signed % errors per (family, dtype, framework): kept so pooled figures are medians of rows, not of medians
    _residuals: dict[tuple[str, str, str], np.ndarray] = field(default_factory=dict, repr=False)
    # signed % errors per (held-out GPU, family, dtype, framework), for the residual plots
    residuals_by_gpu: dict[tuple[str, ...], np.ndarray] = field(default_factory=dict, repr=False)
    rows: RowResiduals | None = field(default=None, repr=False)  # per predicted row (the error models' input)

    def table(self) -> str:
        """The markdown table `make validate` prints first and docs/validation.md quotes."""
        lines = ["| family | dtype | framework | n | LOGO median abs % | LOGO P90 % | LOGO bias % | "
                 "per held-out GPU (median %) | same-GPU held-out-shape median % (secondary) |",
                 "|---|---|---|---|---|---|---|---|---|"]
        for k, s in sorted(self.logo.items()):
            per = ", ".join(f"{g} {self.logo_by_gpu[(g, *k)].median_abs_pct_err:.0f}"
                            for g in self.gpus if (g, *k) in self.logo_by_gpu)
            same = self.same_gpu.get(k)
            lines.append(f"| {k[0]} | {k[1]} | {k[2]} | {s.n} | {s.median_abs_pct_err:.1f} | "
                         f"{s.p90_abs_pct_err:.1f} | {s.bias_pct:+.1f} | {per} | "
                         f"{f'{same.median_abs_pct_err:.1f}' if same else '-'} |")
        return "\n".join(lines)

    def family_table(self) -> str:
        """Per target family (frameworks pooled) against the issue's targets."""
        lines = ["| family | n | LOGO median abs % | LOGO P90 % | LOGO bias % | target % | met |",
                 "|---|---|---|---|---|---|---|"]
        for fam, s in sorted(self.family_stats().items()):
            t = TARGETS_PCT.get(fam)
            met = "-" if t is None else ("yes" if s.median_abs_pct_err <= t else
                                         f"no (+{s.median_abs_pct_err - t:.1f})")
            lines.append(f"| {fam} | {s.n} | {s.median_abs_pct_err:.1f} | {s.p90_abs_pct_err:.1f} | "
                         f"{s.bias_pct:+.1f} | {t if t is not None else '-'} | {met} |")
        return "\n".join(lines)

    def not_predicted_table(self) -> str:
        lines = ["| family | rows | why not predicted |", "|---|---|---|"]
        for (fam, why), n in sorted(self.not_predicted.items()):
            lines.append(f"| {fam} | {n} | {why} |")
        return "\n".join(lines)


def _pooled(res: Mapping[tuple[str, str, str], np.ndarray], label: Callable[[tuple[str, str, str]], str]
            ) -> dict[str, ErrorStats]:
    by: dict[str, list[np.ndarray]] = {}
    for k, e in res.items():
        by.setdefault(label(k), []).append(e)
    return {lab: _stats_of_errors(np.concatenate(es)) for lab, es in by.items()}


def _stats_of_errors(e: np.ndarray) -> ErrorStats:
    # error_stats takes (predicted, measured); a signed % error e is predicted = 1 + e/100 against measured 1
    return error_stats(1.0 + e / 100.0, np.ones_like(e))


def _params(cal: Calibration) -> dict[str, float]:
    return {f: getattr(cal, f) for f in FIT_FIELDS}


def leave_one_gpu_out(rows: Sequence[KernelMeasurement], base: Calibration, fit: FitFn | None = None,
                      same_gpu_folds: int = 0, seed: int = 0, own_fits: bool = True) -> TransferReport:
    """For every GPU in `rows`: per scope (one engine's tables, or NCCL), fit `fit` (default: default_fit()) to
    the rows of the other GPUs and predict the GPU's rows from its own HardwareSpec. Rows that cannot be predicted
    are counted by family and reason. `same_gpu_folds` > 1 adds the same-GPU held-out-shape error (shape-family
    cross-validation on the GPU alone) as the secondary column; `own_fits` also fits each GPU alone (knob_report)."""
    fit = fit or default_fit()
    not_pred: dict[tuple[str, str], int] = {}
    ok: list[KernelMeasurement] = []
    for r in rows:
        why = why_unpredictable(r)
        if why is None:
            ok.append(r)
        else:
            not_pred[(family_of(r), why)] = not_pred.get((family_of(r), why), 0) + 1
    data, problems = prepare(ok, base)
    for p in problems:  # e.g. a dtype the GPU has no peak for: counted under the family "(row problems)"
        not_pred[("(see reason)", p.split(" (e.g.")[0])] = 0
    gpus = tuple(sorted({r.hardware for r in data.rows}))
    if len(gpus) < 2:
        raise ValueError(f"leave-one-GPU-out needs rows of at least 2 GPUs; got {list(gpus)}")
    hw = np.array([r.hardware for r in data.rows], dtype=object)
    scope = np.array([_scope(r) for r in data.rows], dtype=object)
    keys = [_key(r) for r in data.rows]
    pred = np.full(len(data.measured), np.nan)
    same = np.full(len(data.measured), np.nan)
    fits: dict[tuple[str, str], Calibration] = {}
    own: dict[tuple[str, str], Calibration] = {}
    regime = np.full(len(data.measured), "", dtype=object)
    p = data.prediction
    for g in gpus:
        for sc in sorted(set(scope[hw == g].tolist())):
            test = np.flatnonzero((hw == g) & (scope == sc))
            train = np.flatnonzero((hw != g) & (scope == sc))
            if not len(train):
                continue  # no other GPU has this engine's tables: reported as not transferable below
            sbase = engine_base(base, sc)
            # the host-fabric knobs are fitted on the training GPUs' hosts, not carried to the held-out GPU
            cal = fit(data.subset(train), sbase).model_copy(
                update={f: getattr(sbase, f) for f in HOST_FABRIC_FIELDS})
            fits[(g, sc)] = cal
            pred[test] = data.features.subset(test).seconds_params(_params(cal))
            mine = data.subset(test)
            if own_fits:
                own[(g, sc)] = fit(mine, sbase)
            rcal = own.get((g, sc), cal)  # the regime a GPU's own profile sees its kernels in
            for i in test:
                regime[i] = row_regime(p.parts[i] if p.parts else (p.kernels[i],), p.hardware[i], rcal)
            if same_gpu_folds > 1 and len(np.unique(mine.groups)) >= same_gpu_folds:
                same[test] = _same_gpu(mine, sbase, fit, same_gpu_folds, seed)
    done = ~np.isnan(pred)
    for i in np.flatnonzero(~done):
        k = (keys[i][0], f"no other GPU has {keys[i][2]} tables of this family to fit on")
        not_pred[k] = not_pred.get(k, 0) + 1
    err = 100.0 * (pred - data.measured) / data.measured
    same_err = 100.0 * (same - data.measured) / data.measured
    res: dict[tuple[str, str, str], list[float]] = {}
    res_gpu: dict[tuple[str, ...], list[float]] = {}
    res_same: dict[tuple[str, str, str], list[float]] = {}
    for i in np.flatnonzero(done):
        res.setdefault(keys[i], []).append(err[i])
        res_gpu.setdefault((hw[i], *keys[i]), []).append(err[i])
        if not math.isnan(same_err[i]):
            res_same.setdefault(keys[i], []).append(same_err[i])
    resid = {k: np.asarray(v) for k, v in res.items()}
    return TransferReport(
        logo={k: _stats_of_errors(v) for k, v in sorted(resid.items())},
        logo_by_gpu={k: _stats_of_errors(np.asarray(v)) for k, v in sorted(res_gpu.items())},  # type: ignore[misc]
        same_gpu={k: _stats_of_errors(np.asarray(v)) for k, v in sorted(res_same.items())},
        not_predicted=not_pred, fits=fits, own_fits=own, gpus=gpus, n_rows=int(done.sum()),
        _residuals=resid, residuals_by_gpu={k: np.asarray(v) for k, v in sorted(res_gpu.items())},
        rows=RowResiduals(hw[done], np.array([k[0] for k in keys], dtype=object)[done],
                          np.array([k[1] for k in keys], dtype=object)[done],
                          np.array([k[2] for k in keys], dtype=object)[done], regime[done], data.measured[done],
                          pred[done], same[done]))


def _same_gpu(mine: FitData, base: Calibration, fit: FitFn, folds: int, seed: int) -> np.ndarray:
    """Out-of-fold predictions on one GPU with `fit`: whole shape families held out (calibrate.shape_folds)."""
    fold = shape_folds(mine.groups, folds, seed)
    oof = np.empty(len(mine.measured))
    for f in range(folds):
        test = fold == f
        cal = fit(mine.subset(np.flatnonzero(~test)), base)
        oof[test] = mine.features.seconds_params(_params(cal))[test]
    return oof


# ------------------------------------------------------------------------------------------ identifiability
@dataclass(frozen=True)
class KnobReport:
    """One Calibration knob: its value fitted on each GPU alone per scope, the spread, bound flags and the
    effect on LOGO median error (points, per family) of freezing it at the base value."""

    name: str
    values: dict[tuple[str, str], float]  # (GPU, scope) -> value fitted on that GPU alone
    at_bound: tuple[tuple[str, str], ...]  # fits whose value sits on a BOUNDS limit
    freeze_delta: dict[str, float]  # family -> LOGO median abs % with the knob frozen minus with it fitted

    @property
    def spread(self) -> float:
        """max/min of the positive fitted values (1 = every GPU and engine agree); inf when one is 0."""
        v = [x for x in self.values.values()]
        if not v:
            return math.nan
        lo, hi = min(v), max(v)
        return math.inf if lo <= 0 < hi else (hi / lo if lo > 0 else 1.0)

    @property
    def earns_its_place(self) -> bool:
        """True when freezing it makes some family's LOGO median worse by more than 0.5 point."""
        return any(d > 0.5 for d in self.freeze_delta.values())


def _bound_hit(name: str, value: float) -> bool:
    lo, hi, scale = BOUNDS[name]
    tol = 1e-3 * scale
    return value <= lo + tol or value >= hi - tol


def knob_report(report: TransferReport, rows: Sequence[KernelMeasurement], base: Calibration,
                knobs: Sequence[str], fit_frozen: Callable[[str], FitFn] | None = None,
                fit: FitFn | None = None) -> list[KnobReport]:
    """KnobReport per knob: values from report.own_fits (`report` made with `fit`, default default_fit()); freeze
    effect = LOGO median per family with the knob frozen (`fit_frozen(knob)`, default freezing((knob,))) minus with
    `fit`, both on the rows of the families whose fit moves that knob."""
    fit_frozen = fit_frozen or (lambda k: freezing((k,)))
    baselines: dict[frozenset[str], dict[str, ErrorStats]] = {}
    out = []
    for k in knobs:
        # NCCL knobs are fitted by the "nccl" scope, the others by the engines' scopes (where an engine fit leaves
        # an nccl_* knob it only inherits its comm_* parent)
        nccl = k.startswith("nccl_")
        vals = {key: float(getattr(c, k)) for key, c in report.own_fits.items()
                if (key[1] == "nccl") == nccl and getattr(c, k) != getattr(base, k)}
        touched = {family_of(r) for r in rows if _moves(k, r)}
        sub = [r for r in rows if family_of(r) in touched]
        delta: dict[str, float] = {}
        if sub and vals:
            key = frozenset(touched)
            if key not in baselines:  # same rows with nothing frozen (shared stages, e.g. gemm_mem_eff, move too)
                baselines[key] = leave_one_gpu_out(sub, base, fit=fit, own_fits=False).family_stats()
            fams = baselines[key]
            frozen = leave_one_gpu_out(sub, base, fit=fit_frozen(k), own_fits=False).family_stats()
            delta = {f: frozen[f].median_abs_pct_err - fams[f].median_abs_pct_err for f in frozen if f in fams}
        out.append(KnobReport(k, vals, tuple(key for key, v in vals.items() if _bound_hit(k, v)), delta))
    return out


_KNOB_FAMILY = {"gemm": ("gemm",), "attn_prefill": ("attn_prefill",), "attn_decode": ("attn_decode",),
                "comm": ("custom_allreduce",), "nccl": ("nccl_",)}


def _moves(knob: str, row: KernelMeasurement) -> bool:
    fam = family_of(row)
    if knob.startswith("attn_prefill_eff"):  # decode scales its efficiency by attn_prefill_eff (staged fit)
        return fam in ("attn_prefill", "attn_decode")
    if knob == "attn_softmax_flops":
        return fam == "attn_prefill"
    for prefix, fams in _KNOB_FAMILY.items():
        if knob.startswith(prefix):
            return any(fam.startswith(f) for f in fams)
    return False
