"""The public Python API: load a model and hardware, estimate a step, simulate, plan, validate.

Every function takes the same names the CLI and run files use (a preset or HF id or config.json path for a model, a
hardware id/alias or .toml path) and returns the library's own result objects. docs/api.md shows each in use.
"""

from __future__ import annotations

import tomllib
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeAlias

from roofsim.hardware_specs.catalog import load_hardware
from roofsim.hardware_specs.spec import HardwareSpec
from roofsim.model.checkpoint_quant import CheckpointQuant
from roofsim.model.cost import Calibration
from roofsim.model.estimate import Estimate, estimate_deployment
from roofsim.model.loader import load_checkpoint_quant, load_model
from roofsim.model.quant import quant_for, resolve_quant  # noqa: F401 (quant_for: re-exported by roofsim)
from roofsim.model.spec import ModelSpec, ParallelSpec, QuantSpec
from roofsim.simulator.config import SimConfig
from roofsim.validation.profiles import (
    resolve_calibration,
    resolve_config_calibrations,
    resolve_plan_calibrations,
)

if TYPE_CHECKING:
    from roofsim.simulator.ensemble import EnsembleResult
    from roofsim.simulator.metrics import SimResult
    from roofsim.simulator.planning import PlanResult, PlanSpec
    from roofsim.validation.e2e import E2EResult
    from roofsim.validation.predict import Prediction
    from roofsim.validation.replay import ReplayResult

ModelLike: TypeAlias = ModelSpec | str | Path
HardwareLike: TypeAlias = HardwareSpec | str | Path
CalibrationLike: TypeAlias = Calibration | str | Path | None


def _model(m: ModelLike) -> ModelSpec:
    return m if isinstance(m, ModelSpec) else load_model(m)


def _hardware(h: HardwareLike) -> HardwareSpec:
    return h if isinstance(h, HardwareSpec) else load_hardware(h)


def _checkpoint(model: ModelLike) -> CheckpointQuant | None:
    """The checkpoint format of a model name/path, or of a ModelSpec's preset (None when it has none)."""
    if not isinstance(model, ModelSpec):
        return load_checkpoint_quant(model)
    try:
        return load_checkpoint_quant(model.hf_id or model.name)
    except KeyError:  # a ModelSpec built by hand or from a file: no preset behind it
        return None


def quant_of(model: ModelLike, hardware: HardwareLike | None = None, weight_dtype: str | None = None, *,
             kv_dtype: str = "auto", activation_dtype: str = "auto",
             group_size: int | None = None) -> tuple[QuantSpec, list[str]]:
    """The formats a deployment of `model` runs in, and notes saying where each came from: the checkpoint's own
    (its quantization_config / hf_quant_config.json; bf16 for an unquantised one) unless `weight_dtype`,
    `kv_dtype`, `activation_dtype` or `group_size` override it; on `hardware` without the checkpoint's activation
    format, 16-bit activations (weight-only kernels). What `roofsim estimate` does with its dtype flags."""
    hw = _hardware(hardware) if hardware is not None else None
    return resolve_quant(_checkpoint(model), weight_dtype, kv_dtype, hw, activation_dtype=activation_dtype,
                         group_size=group_size)


def estimate(model: ModelLike, hardware: HardwareLike, *, batch: int = 1, input_len: int = 1024,
             output_len: int = 256, tp: int = 1, pp: int = 1, ep: int = 1, attn_dp: int = 1,
             quant: QuantSpec | str | None = None, calibration: CalibrationLike = None,
             gpu_memory_utilization: float = 0.9) -> Estimate:
    """TTFT, TPOT, per-kernel breakdown and memory of one batch (`roofsim estimate`). `quant`: None = the
    checkpoint's own format (quant_of; bf16 for an unquantised checkpoint), a weight dtype name overriding it, or a
    QuantSpec used as given; `calibration` as resolve_calibration: None = the GPU's shipped (or transferred)
    profile, "default" = the cost model's defaults, a profile path, or a Calibration. `attn_dp` > 1: attention
    data-parallel ranks of a MoE model, each `tp` GPUs (docs/model.md)."""
    m = _model(model)
    par = ParallelSpec(tp=tp, pp=pp, ep=ep, attn_dp=attn_dp)
    par.validate_for(m)
    hw = _hardware(hardware)
    q = quant if isinstance(quant, QuantSpec) else quant_of(model, hw, quant)[0]
    return estimate_deployment(m, hw, q, par, resolve_calibration(calibration, hw)[0], batch, input_len,
                               output_len, gpu_memory_utilization)


def load_config(source: SimConfig | Mapping[str, Any] | str | Path) -> SimConfig:
    """A SimConfig from a run file (.toml path), a dict shaped like the run file, or a SimConfig."""
    if isinstance(source, SimConfig):
        return source
    if isinstance(source, Mapping):
        return SimConfig.model_validate(dict(source))
    path = Path(source)
    with path.open("rb") as f:
        return SimConfig.model_validate(tomllib.load(f))


def simulate(config: SimConfig | Mapping[str, Any] | str | Path,
             progress: Callable[[float, float], None] | None = None) -> SimResult:
    """Replay the workload of `config` through its deployment (`roofsim simulate`); a replica group without a
    calibration gets its GPU's shipped or transferred profile (resolve_calibration), one without a `quant` table
    its checkpoint's own format (quant_of; bf16 for an unquantised checkpoint). Same config -> same result."""
    from roofsim.simulator.run import resolve_config_quants  # noqa: PLC0415
    from roofsim.simulator.run import simulate as _simulate  # noqa: PLC0415

    cfg, _ = resolve_config_calibrations(load_config(config))
    cfg, _ = resolve_config_quants(cfg)
    return _simulate(cfg, progress=progress)


def simulate_ensemble(config: SimConfig | Mapping[str, Any] | str | Path, members: int = 16,
                      levels: tuple[float, ...] = (0.8, 0.9), *, workers: int | None = 1,
                      dask_scheduler: str | None = None) -> EnsembleResult:
    """`roofsim simulate --ensemble M`: `members` replays of the same workload, each with every kernel family
    consistently fast or slow by a draw from its GPU's error model (error_model_for: the shipped profile's
    held-out-shape residuals, or the leave-one-GPU-out ones of a GPU nobody measured; docs/intervals.md).
    Calibrations and quantisation resolve as in `simulate`. `workers`: local processes (None: one per core);
    `dask_scheduler`: a Dask scheduler address instead. Same config -> same ensemble."""
    from roofsim.simulator.ensemble import run_ensemble  # noqa: PLC0415
    from roofsim.simulator.planning import make_executor  # noqa: PLC0415
    from roofsim.simulator.run import resolve_config_quants  # noqa: PLC0415
    from roofsim.validation.profiles import resolve_config_error_models  # noqa: PLC0415

    if members < 1:
        raise ValueError(f"members={members} must be >= 1")
    cfg, _ = resolve_config_calibrations(load_config(config))
    cfg, _ = resolve_config_quants(cfg)
    models, _ = resolve_config_error_models(cfg)
    ex = make_executor(dask_scheduler, workers)
    try:
        return run_ensemble(cfg, models, members, levels, ex)
    finally:
        ex.close()


def plan(spec: PlanSpec | Mapping[str, Any], *, workers: int | None = 1, dask_scheduler: str | None = None,
         cache_dir: str | Path | None = None) -> PlanResult:
    """Cheapest deployment that serves `spec.rate_per_s` within the SLOs (`roofsim plan`). `workers`: local
    processes (None: one per core); `dask_scheduler`: a Dask scheduler address instead; `cache_dir`: reuse
    simulated points across runs."""
    from roofsim.simulator import planning as planner  # noqa: PLC0415

    s = spec if isinstance(spec, planner.PlanSpec) else planner.PlanSpec.model_validate(dict(spec))
    s, _ = resolve_plan_calibrations(s)  # each GPU's shipped profile unless spec.calibrations names one
    cache = planner.PointCache(Path(cache_dir)) if cache_dir is not None else None
    return planner.plan(s, planner.make_executor(dask_scheduler, workers), cache)


def validate_kernels(path: str | Path, calibration: CalibrationLike | Callable[[HardwareSpec], Calibration] = None,
                     format: str = "auto") -> Prediction:
    """Predict every row of a measured kernel table (AIConfigurator, Vidur, LLMCompass or generic CSV; a file or a
    folder) and return predictions next to measurements (`roofsim validate kernels`)."""
    from roofsim.validation.kernel_tables import read_kernel_tables  # noqa: PLC0415
    from roofsim.validation.predict import predict_rows  # noqa: PLC0415

    table = read_kernel_tables(path, format)
    if calibration is None:
        return predict_rows(table.rows, lambda hw: resolve_calibration(None, hw)[0])
    cal = calibration if callable(calibration) else resolve_calibration(calibration, None)[0]
    return predict_rows(table.rows, cal)


def validate_benchmarks(path: str | Path, seed: int = 0) -> E2EResult:
    """Simulate every row of a benchmark table (validation-formats) with its GPU's shipped profile and return the
    predictions next to the measured TTFT/TPOT/throughput (`roofsim validate benchmarks`)."""
    from roofsim.validation.bench_table import read_bench_table  # noqa: PLC0415
    from roofsim.validation.e2e import predict_table  # noqa: PLC0415

    return predict_table(read_bench_table(path).rows, seed=seed)


def validate_log(log: str | Path, model: ModelLike, hardware: HardwareLike, *, tp: int = 1, pp: int = 1,
                 **options: Any) -> list[ReplayResult]:
    """Replay a real serving log through the simulator and compare per-request latencies (`roofsim validate
    run`): one ReplayResult per benchmark of the file (vLLM benchmark/bench serve JSON, GuideLLM, LLMPerf, SGLang
    bench_serving, genai-perf, AIPerf; format detected from the content). `options` as
    `roofsim.validation.replay.replay_log`."""
    from roofsim.validation.replay import replay_all  # noqa: PLC0415

    m = model if isinstance(model, str | Path) else model.name
    h = hardware if isinstance(hardware, str | Path) else hardware.id
    return replay_all(log, str(m), str(h), tp, pp, **options)
