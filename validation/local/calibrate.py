"""`roofsim calibrate --local`: fit the Calibration of this machine to what `measure_local` timed, with
validation.calibrate's least squares over held-out shape families (one fit per candidate GEMM row tile), fit
the engine's per-step overheads on short steps of the model itself, and write hardware + profile atomically.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import tempfile
import tomllib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

from roofsim.hardware_specs.catalog import hardware_from_dict
from roofsim.hardware_specs.spec import HardwareSpec
from roofsim.model.cost import Calibration, CostModel
from roofsim.model.spec import ModelSpec
from roofsim.validation.calibrate import (
    OPT_IN_FIELDS,
    CalibrationResult,
    FitData,
    cross_validate,
    fit_calibration,
    fitted_fields,
    prepare,
)
from roofsim.validation.kernel_tables import KernelMeasurement
from roofsim.validation.local.hardware import dumps_hardware, machine_hardware
from roofsim.validation.local.measure import FP32, LocalMeasurements, Progress, measure_local
from roofsim.validation.local.transformer import small_llama_spec
from roofsim.validation.metrics_err import ErrorStats, error_stats, grouped_stats
from roofsim.validation.predict import FIT_FIELDS
from roofsim.validation.profiles import atomic_write_text, write_calibration

log = logging.getLogger(__name__)

__all__ = ["LocalFit", "TorchFit", "fit_local", "fit_torch", "fit_step_overheads", "calibrate_local",
           "write_local_profile", "calibration_path_for", "torch_calibration_path_for", "step_errors",
           "TILE_M_CANDIDATES", "QUICK_TILE_M_CANDIDATES", "kernel_class"]

#: GEMM row-tile sizes tried by the fit. OpenBLAS packs a block of B for every call, so a GEMM with few rows costs
#: about as much as one with a tile of rows: the cost model's tile padding (gemm_tile_m) is what captures it.
TILE_M_CANDIDATES: tuple[int, ...] = (1, 4, 8, 16, 32, 48, 64, 96, 128)
QUICK_TILE_M_CANDIDATES: tuple[int, ...] = (1, 8, 16, 32, 64)
#: numpy's matmul hands a 1-row operand to BLAS sgemv (numpy/_core/src/umath/matmul.c.src: the vector @ matrix
#: case), which streams the weights at memory speed; m >= 2 goes to sgemm, which packs B on every call: on this
#: machine a (1, 4096) @ (4096, 4096) fp32 matmul takes 11 ms and m = 2 ... 16 take 40-53 ms. Not fitted.
GEMV_MAX_M = 1
#: OpenBLAS also skips packing for small problems (its small-matrix sgemm kernel on AVX-512 x86): measured on this
#: machine, m = 2 and 4 with (n, k) = (256, 768) (m*n*k = 0.39M, 0.79M) stream the weights like a GEMV, while
#: m = 2 with (768, 768) (1.18M) and m = 8 with (256, 768) (1.57M) are packed. Not fitted (an integer).
SMALL_MAX_MNK = 1_000_000
#: Array passes of the forward pass's unfused numpy elementwise code (validation/local/transformer.py), in units of
#: graph.elementwise's fused read + write. RMSNorm `x * (1/sqrt(mean(x*x) + eps)) * w`: x*x (read, write), mean
#: (read), x*r (read, write), *w (read, write) = 7 passes over t x h against 2 -> 3.5. SwiGLU `g / (1 + exp(-g)) * u`:
#: -g, exp, 1+, g/, *u = 7 reads + 5 writes of t x I against 2 reads + 1 write -> 4. Counted: the
#: starting point of the fit (validation.calibrate.OPT_IN_FIELDS), which finds what numpy actually costs.
NORM_PASSES = 3.5
ACT_PASSES = 4.0
#: RoPE's rotate-half (transformer.apply_rope): x1*c, x2*s, x2*c, x1*s (each reads and writes half), the - and +
#: (read two halves, write one), concatenate (read two halves, write the whole) = 5 reads + 4 writes vs 1 + 1.
ROPE_PASSES = 4.5

# ----------------------------------------------------------------------------------------- fitting
@dataclass(frozen=True)
class LocalFit:
    """The fitted calibration, the kernel fit it came from, the chosen tile and the overhead fit."""

    calibration: Calibration
    kernel_fit: CalibrationResult
    tile_m: int
    tile_scores: dict[int, float]  # tile_m -> held-out median |error| % over all rows
    step_overhead_s: float
    step_overhead_per_seq_s: float
    overhead_residual_pct: float  # median |error| % of the short model steps after the overhead fit
    held_out_by_class: dict[str, ErrorStats]  # kernel_class -> held-out error over all its rows, pooled
    torch: TorchFit | None = None  # the torch GEMMs' own profile, when torch was measured

    def summary(self) -> dict[str, Any]:
        """Held-out median |error| % per kernel key, pooled per class (gemm, memory_bound, attention), overall."""
        held = self.kernel_fit.held_out
        return {"held_out_median_abs_pct": {k: held[k].median_abs_pct_err for k in held},
                "held_out_pooled_median_abs_pct": {c: v.median_abs_pct_err for c, v in self.held_out_by_class.items()},
                "held_out_overall_median_abs_pct": self.kernel_fit.held_out_overall.median_abs_pct_err,
                "tile_m": self.tile_m, "tile_scores": self.tile_scores,
                "step_overhead_s": self.step_overhead_s, "step_overhead_per_seq_s": self.step_overhead_per_seq_s,
                "overhead_fit_median_abs_pct": self.overhead_residual_pct}


def fit_step_overheads(steps: Sequence[Mapping[str, Any]], tiny: ModelSpec, hw: HardwareSpec,
                       cal: Calibration) -> tuple[float, float, float]:
    """(step_overhead_s, step_overhead_per_seq_s, median |error| %) from short steps of the model: the measured time minus
    the kernels' predicted time (overheads zeroed) is fitted as a + b * sequences by non-negative least squares."""
    from scipy.optimize import nnls  # noqa: PLC0415

    from roofsim.validation.replay import step_shape  # noqa: PLC0415

    zero = cal.model_copy(update={"step_overhead_s": 0.0, "step_overhead_per_seq_s": 0.0})
    cost = CostModel(tiny, hw, FP32, calibration=zero)
    shapes = [step_shape(s["kind"], s["batch_size"], s["tokens"], s["ctx_sum"]) for s in steps]
    kernels = np.array([cost.step_seconds(sh) for sh in shapes])
    measured = np.array([float(s["seconds"]) for s in steps])
    seqs = np.array([float(sh.decode_seqs + sh.prefill_seqs) for sh in shapes])
    a = np.column_stack([np.ones_like(seqs), seqs])
    (base, per_seq), _ = nnls(a / measured[:, None], (measured - kernels) / measured)  # relative residuals
    pred = kernels + base + per_seq * seqs
    return float(base), float(per_seq), float(np.median(np.abs(pred - measured) / measured) * 100)


def _local_groups(data: FitData) -> np.ndarray:
    """Cross-validation groups: validation.calibrate.shape_family, except that elementwise rows are grouped by
    shape (tokens x width) across ops, not by op: numpy's pass counts are fitted per op (they are properties of
    the code, like a kernel's name), and what is held out is every op at an unseen size."""
    names = []
    for row, g in zip(data.rows, data.groups, strict=True):
        if row.op in ("rmsnorm", "silu_mul", "add", "rope"):
            names.append(f"elementwise tokens={row.tokens}")
        else:
            names.append(f"group {int(g)}")
    return np.unique(np.array(names, dtype=object), return_inverse=True)[1]


def kernel_class(op: str) -> str:
    """The three classes the local report pools: gemm, attention, memory_bound (numpy elementwise + STREAM)."""
    return "gemm" if op == "gemm" else "attention" if op.startswith("attn") else "memory_bound"


def _calibrate_rows(rows: Sequence[KernelMeasurement], base: Calibration, *, folds: int, seed: int, name: str
                    ) -> tuple[CalibrationResult, dict[str, ErrorStats]]:
    """validation.calibrate.calibrate for rows whose `hardware` is a TOML path (not a catalog id): the same
    prepare -> fit_calibration -> cross_validate steps, without the catalog lookup of the hardware id."""
    data, problems = prepare(rows, base)
    data = dataclasses.replace(data, groups=_local_groups(data))
    fields = fitted_fields(data, extra=OPT_IN_FIELDS)
    cal = fit_calibration(data, base, fields=fields, name=name, seed=seed)
    ins = data.features.seconds_params({x: getattr(cal, x) for x in FIT_FIELDS})
    classes = np.array([kernel_class(r.op) for r in data.rows])
    if folds:
        oof = cross_validate(data, base, folds=folds, seed=seed, fields=fields)
        held, held_all = grouped_stats(data.rows, oof, data.measured), error_stats(oof, data.measured)
        pooled = {c: error_stats(oof[classes == c], data.measured[classes == c]) for c in np.unique(classes)}
    else:
        held, held_all = {}, ErrorStats(0, math.nan, math.nan, math.nan, math.nan)
        pooled = {}
    return CalibrationResult(
        calibration=cal, fields=fields, in_sample=grouped_stats(data.rows, ins, data.measured),
        held_out=held, in_sample_overall=error_stats(ins, data.measured), held_out_overall=held_all,
        n_rows=len(data.measured), n_families=len(np.unique(data.groups)), folds=folds, problems=problems), pooled


def _write_temp_hardware(hw: HardwareSpec, folder: Path) -> Path:
    path = folder / f"{hw.id}.toml"
    path.write_text(dumps_hardware(hw), encoding="utf-8")
    return path


def _best_tile(rows: Sequence[KernelMeasurement], hw: HardwareSpec, tiles: Sequence[int],
               base: Callable[[int], Calibration], *, folds: int, seed: int, name: str,
               say: Callable[[int, float], None] | None = None
               ) -> tuple[int, CalibrationResult, dict[str, ErrorStats], dict[int, float]]:
    """Fit `rows` once per candidate gemm_tile_m (an integer the least squares cannot move), starting from
    base(tile); the tile with the lowest held-out median |error| wins. Returns (tile, its fit, its pooled held-out
    errors per kernel class, every tile's score)."""
    best: tuple[float, int, CalibrationResult, dict[str, ErrorStats]] | None = None
    scores: dict[int, float] = {}
    with tempfile.TemporaryDirectory(prefix="roofsim-local-") as tmp:
        hw_path = _write_temp_hardware(hw, Path(tmp))
        moved = [replace(r, hardware=str(hw_path)) for r in rows]
        for tm in tiles:
            res, pooled = _calibrate_rows(moved, base(tm), folds=folds, seed=seed, name=name)
            score = res.held_out_overall.median_abs_pct_err if folds else res.in_sample_overall.median_abs_pct_err
            scores[tm] = round(float(score), 2)
            if say is not None:
                say(tm, score)
            if best is None or score < best[0]:
                best = (score, tm, res, pooled)
    assert best is not None
    return best[1], best[2], best[3], scores


def fit_local(meas: LocalMeasurements, hw: HardwareSpec, *, folds: int = 5, seed: int = 0,
              tiles: Sequence[int] = TILE_M_CANDIDATES, name: str = "local-cpu",
              progress: Progress | None = None) -> LocalFit:
    """validation.calibrate.calibrate for each candidate gemm_tile_m (an integer the least squares cannot move);
    the tile with the lowest held-out median |error| wins; then the step overheads on the tiny-model steps."""
    say = progress or (lambda msg: log.info("%s", msg))

    def base(tm: int) -> Calibration:
        return Calibration(name=name, hardware=hw.id, gemm_tile_m=tm, gemm_tile_n=64, gemm_gemv_max_m=GEMV_MAX_M,
                           gemm_tile_menu=(),  # numpy/torch on a CPU: one packing tile, no GPU tile menu
                           gemm_small_max_mnk=SMALL_MAX_MNK, elementwise_norm_passes=NORM_PASSES,
                           elementwise_act_passes=ACT_PASSES, step_overhead_s=0.0, step_overhead_per_seq_s=0.0,
                           # start the cache regime (fitted; validation.calibrate.fitted_fields): 2x faster
                           # below a quarter of the last-level cache
                           elementwise_cache_gain=2.0, elementwise_cache_bytes=meas.machine.llc_bytes / 4,
                           elementwise_norm_cache_gain=2.0, elementwise_act_cache_gain=2.0,
                           elementwise_rope_passes=ROPE_PASSES, elementwise_rope_cache_gain=2.0,
                           elementwise_residual_fused=False)  # transformer.py adds the residual on its own

    tile_m, res, pooled, scores = _best_tile(meas.rows, hw, tiles, base, folds=folds, seed=seed, name=name,
                                             say=lambda tm, score: say(f"gemm_tile_m={tm}: held-out median "
                                                                       f"|error| {score:.1f}%"))
    a, b, resid = fit_step_overheads(meas.overhead_steps, meas.overhead_model, hw, res.calibration)
    cal = res.calibration.model_copy(update={
        "step_overhead_s": a, "step_overhead_per_seq_s": b,
        "source": (f"roofsim calibrate --local{' --quick' if meas.quick else ''}: {res.n_rows} numpy kernel rows "
                   f"on {meas.machine.cpu_model} ({meas.machine.blas_threads} BLAS thread(s)), {res.folds}-fold "
                   f"held-out shape families; gemm_tile_m chosen from {list(tiles)}; step overheads from "
                   f"{len(meas.overhead_steps)} short steps of {meas.overhead_model.name} (they hold for that model)")})
    return LocalFit(cal, res, tile_m, scores, a, b, resid, pooled)


@dataclass(frozen=True)
class TorchFit:
    """The GEMMs timed through torch (fp32, bf16), fitted on their own: a profile for a torch CPU engine."""

    calibration: Calibration
    kernel_fit: CalibrationResult
    tile_m: int
    tile_scores: dict[int, float]
    version: str


def fit_torch(meas: LocalMeasurements, hw: HardwareSpec, *, folds: int = 5, seed: int = 0,
              tiles: Sequence[int] = QUICK_TILE_M_CANDIDATES, name: str = "local-cpu-torch",
              progress: Progress | None = None) -> TorchFit:
    """validation.calibrate over the torch GEMM rows alone (its kernels are not numpy's: oneDNN/MKL, their own
    packing and small-matrix paths), tile chosen by held-out error as in fit_local."""
    if not meas.torch_rows:
        raise ValueError("no GEMMs were timed through torch (is the optional torch extra installed?)")
    say = progress or (lambda msg: log.info("%s", msg))

    def base(tm: int) -> Calibration:
        return Calibration(name=name, hardware=hw.id, gemm_tile_m=tm, gemm_tile_n=64, gemm_gemv_max_m=GEMV_MAX_M,
                           gemm_tile_menu=(),  # numpy/torch on a CPU: one packing tile, no GPU tile menu
                           step_overhead_s=0.0, step_overhead_per_seq_s=0.0, elementwise_residual_fused=False)

    tile_m, res, _, scores = _best_tile(meas.torch_rows, hw, tiles, base, folds=folds, seed=seed, name=name)
    score = scores[tile_m]
    say(f"torch {meas.torch_version}: gemm_tile_m={tile_m}, held-out median |error| {score:.1f}%")
    cal = res.calibration.model_copy(update={
        "source": (f"roofsim calibrate --local{' --quick' if meas.quick else ''}: {res.n_rows} GEMMs through torch "
                   f"{meas.torch_version} on {meas.machine.cpu_model} ({meas.machine.blas_threads} thread(s)); "
                   f"kernels only (no step overheads: those belong to the engine that runs them)")})
    return TorchFit(cal, res, tile_m, scores, meas.torch_version or "?")


def torch_calibration_path_for(hardware_path: Path | str) -> Path:
    """The torch GEMM profile written next to a local hardware TOML: <stem>.torch.calibration.toml."""
    p = Path(hardware_path)
    return p.with_name(f"{p.stem}.torch.calibration.toml")


# ----------------------------------------------------------------------------------------- writing
def calibration_path_for(hardware_path: Path | str) -> Path:
    """The calibration profile written next to a local hardware TOML: <stem>.calibration.toml."""
    p = Path(hardware_path)
    return p.with_name(f"{p.stem}.calibration.toml")


def write_local_profile(hw: HardwareSpec, fit: LocalFit, meas: LocalMeasurements, out: Path | str
                        ) -> tuple[Path, Path]:
    """Write the HardwareSpec to `out` and the calibration profile to <stem>.calibration.toml, each atomically
    (temp file + fsync + os.replace): an interrupted run leaves the previous files or none, never half a file.
    The profile is written first, so a hardware file is never newer than its calibration."""
    out = Path(out)
    text = dumps_hardware(hw)
    hardware_from_dict(tomllib.loads(text), source=str(out))  # round-trip check before any write
    machine = {k: v for k, v in dataclasses.asdict(meas.machine).items() if k != "llc_bytes"}
    meta = {"machine": machine,
            "quick": meas.quick, "measure_wall_s": round(meas.wall_s, 1),
            "peak_fp32_flops_per_s": meas.peak_fp32_flops_per_s, "bandwidth_bytes_per_s": meas.bandwidth_bytes_per_s,
            "hardware_file": out.name, "gemm_tile_m": fit.tile_m,
            "tile_m_held_out_median_abs_pct": {str(k): v for k, v in fit.tile_scores.items()},
            "overhead_fit_median_abs_pct": round(fit.overhead_residual_pct, 2),
            "held_out_pooled_median_abs_pct": {c: round(v.median_abs_pct_err, 2)
                                               for c, v in fit.held_out_by_class.items()},
            **fit.kernel_fit.meta()}
    cal_path = write_calibration(fit.calibration, calibration_path_for(out), meta)
    if fit.torch is not None:
        t = fit.torch
        write_calibration(t.calibration, torch_calibration_path_for(out), {
            "torch_version": t.version, "hardware_file": out.name, "gemm_tile_m": t.tile_m,
            "peak_flops_per_s": dict(meas.torch_peaks),
            "tile_m_held_out_median_abs_pct": {str(k): v for k, v in t.tile_scores.items()}, **t.kernel_fit.meta()})
    atomic_write_text(out, text)
    return out, cal_path


def calibrate_local(out: Path | str, *, quick: bool, model: ModelSpec | None = None, seed: int = 0,
                    folds: int = 5, hw_id: str = "local-cpu", progress: Progress | None = None,
                    use_torch: bool = True) -> tuple[HardwareSpec, LocalFit, LocalMeasurements, tuple[Path, Path]]:
    """Measure, fit and write: the whole `roofsim calibrate --local`. With torch installed (and `use_torch`), its
    GEMMs get their own profile, <stem>.torch.calibration.toml (fit_torch)."""
    spec = model or small_llama_spec()
    rng = np.random.default_rng(seed)
    meas = measure_local(spec, quick, rng, progress=progress, use_torch=use_torch)
    hw = machine_hardware(meas, hw_id)
    tiles = QUICK_TILE_M_CANDIDATES if quick else TILE_M_CANDIDATES
    fit = fit_local(meas, hw, folds=folds, seed=seed, name=f"{hw_id}-fitted", progress=progress, tiles=tiles)
    if meas.torch_rows:
        fit = replace(fit, torch=fit_torch(meas, hw, folds=folds, seed=seed, name=f"{hw_id}-torch-fitted",
                                           tiles=tiles, progress=progress))
    paths = write_local_profile(hw, fit, meas, out)
    return hw, fit, meas, paths


# ----------------------------------------------------------------------------------------- e2e checks
def step_errors(steps: Sequence[Mapping[str, Any]], spec: ModelSpec, hw: HardwareSpec, cal: Calibration
                ) -> list[dict[str, Any]]:
    """Measured vs predicted per recorded step, grouped by (kind, batch size): mean seconds and error %."""
    from roofsim.validation.replay import compare_steps  # noqa: PLC0415

    return compare_steps([dict(s) for s in steps], CostModel(spec, hw, FP32, calibration=cal))
