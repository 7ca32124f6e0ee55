"""End-to-end benchmark validation: each benchmark-table row -> a SimConfig (mode, engine scheduler, calibration)
-> `simulate` -> predicted TTFT/TPOT/ITL/E2E/throughput, and the error statistics of predicted vs measured cells.
"""

from __future__ import annotations

import logging
import math
import os
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from pydantic import TypeAdapter

from roofsim.hardware_specs.catalog import load_hardware
from roofsim.hardware_specs.errors import InputError, RoofsimError
from roofsim.hardware_specs.spec import HardwareSpec
from roofsim.model.cost import Calibration
from roofsim.model.loader import load_model
from roofsim.model.quant import KV_DTYPES, WEIGHT_DTYPES, quant_for
from roofsim.model.spec import QuantSpec
from roofsim.model.uncertainty import E2E_INPUTS, ErrorModel
from roofsim.simulator.clients import HARNESSES, client_model
from roofsim.simulator.config import (
    ReplicaGroup,
    SarathiScheduler,
    SchedulerConfig,
    SimConfig,
    StaticScheduler,
)
from roofsim.simulator.engines import ALIASES, engine_names, engine_profile, engine_row, needs_model
from roofsim.simulator.ensemble import run_ensemble
from roofsim.simulator.metrics import SimResult
from roofsim.simulator.run import simulate
from roofsim.simulator.workload import (
    ClosedLoopArrivals,
    FixedLengths,
    OfflineArrivals,
    PoissonArrivals,
    SyntheticWorkload,
)
from roofsim.validation.bench_table import BenchRow, written_columns
from roofsim.validation.metrics_err import error_stats
from roofsim.validation.profiles import error_model_for, profile_for
from roofsim.validation.uncertainty import INTERVAL_LEVELS, IntervalCheck

logger = logging.getLogger(__name__)
_SCHEDULER: TypeAdapter[Any] = TypeAdapter(SchedulerConfig)

__all__ = ["METRICS", "RowPrediction", "E2EResult", "row_config", "engine_scheduler", "row_engine", "row_quant",
           "predict_row", "predict_table", "e2e_error_stats", "write_predictions", "CLOSED_LOOP_WAVES",
           "row_label", "row_harness", "CLIENT_CHOICES", "DEFAULT_CLOSED_LOOP_HARNESS", "disaggregated_config",
           "row_intervals", "interval_checks", "ROW_TOKEN_BUDGET_ENGINES", "FAR_OFF_FACTOR", "far_off_rows"]

# Measured column -> (predicted column, SimResult summary key and statistic, or a throughput key)
METRICS: dict[str, str] = {
    "ttft_ms": "ttft_s",
    "tpot_ms": "tpot_s",
    "itl_ms": "itl_s",
    "e2e_ms": "e2e_s",
    "output_tokens_per_s": "output_tokens_per_s",
    "requests_per_s": "requests_per_s",
}
# A closed-loop row is simulated the way AIConfigurator's generated benchmark scripts run genai-perf/aiperf
# (ai-dynamo/aiconfigurator bench_run.sh templates): `--warmup-request-count $((concurrency*2))` and
# `--request-count $((concurrency*10))` (later aiperf templates measure 20-50 x concurrency; 10 is the smallest, and
# later waves of a fixed-length closed loop repeat the same pattern). aiperf waits for every warm-up response before
# the measured phase starts (its warm-up docs, "Grace Period"), so the measured phase starts all clients together
# again; no concurrency ramp is set in those scripts. See docs/validation-e2e.md.
CLOSED_LOOP_WARMUP_PER_CLIENT = 2
CLOSED_LOOP_MEASURED_PER_CLIENT = 10
CLOSED_LOOP_WAVES = CLOSED_LOOP_WARMUP_PER_CLIENT + CLOSED_LOOP_MEASURED_PER_CLIENT  # requests per client in all
# The harness of a closed-loop row whose table does not say (no `harness` cell): aiperf, which AIConfigurator's
# benchmark scripts run (the silicon rows' stated assumption, docs/validation-e2e.md).
DEFAULT_CLOSED_LOOP_HARNESS = "aiperf"
# `clients` switch of predict_row/predict_table (`validate benchmarks --clients`): "harness" = each row's harness
# model (simulator/clients.py), "ideal" = lock-step clients.
CLIENT_CHOICES = ("harness", "ideal")


def row_harness(row: BenchRow, clients: str = "harness") -> tuple[str, str]:
    """The client model (simulator.clients HARNESSES name) a row is simulated with, and a note saying why."""
    if clients not in CLIENT_CHOICES:
        raise InputError(f"clients={clients!r} is not one of {list(CLIENT_CHOICES)}")
    if clients == "ideal":
        return "ideal", "clients: ideal (lock-step, --clients ideal)"
    if row.harness:
        if row.harness not in HARNESSES:
            raise InputError(f"harness={row.harness!r} is not one of {list(HARNESSES)}")
        return row.harness, f"clients: {row.harness} (the row's harness)"
    return DEFAULT_CLOSED_LOOP_HARNESS, (f"clients: {DEFAULT_CLOSED_LOOP_HARNESS} (ASSUMPTION: the table names no "
                                         f"harness)")


def row_label(row: BenchRow) -> str:
    """A short identity of a row for problem messages."""
    load = {"closed_loop": f"concurrency={row.concurrency}", "static_batch": f"batch={row.concurrency}",
            "poisson": f"qps={row.qps}", "offline": f"num_requests={row.num_requests}"}[row.mode]
    layout = (f"{row.prefill_replicas}P tp{row.prefill_tp} + {row.decode_replicas}D tp{row.decode_tp}"
              if row.disaggregated else f"tp{row.tp} pp{row.pp}" + (f" dp{row.attn_dp}" if row.attn_dp else ""))
    return (f"{row.model} on {row.num_gpus}x{row.hardware} {layout} {row.framework} {row.mode} "
            f"isl={row.isl} osl={row.osl} {load}")


# ------------------------------------------------------------------------------------------ engine defaults
def row_engine(row: BenchRow) -> tuple[str | None, str]:
    """The engine (simulator/engines.py) of a row's framework and framework_version, and a note. A version the
    table does not cover gets the engine's newest row (said so); a framework it does not know, None."""
    fw = row.framework.strip().lower()
    if fw not in (*engine_names(), *ALIASES):
        return None, (f"framework {row.framework!r} is not in the engine table: roofsim-default (V0-style "
                      f"continuous batching)")
    ver = row.framework_version.strip()
    if not ver:
        return fw, f"engine {fw}: no framework_version, the newest known profile"
    spec = f"{fw}=={ver}"
    try:
        engine_row(spec)
    except (KeyError, ValueError) as e:
        return fw, f"{e.args[0] if e.args else e}: the newest known {fw} profile used"
    return spec, f"engine {spec}"


def engine_scheduler(row: BenchRow) -> tuple[SchedulerConfig, str]:
    """The scheduler that stands for the row's serving engine at its default settings, and a note saying so.

    The defaults come from the engine table (simulator/engines.py, docs/engines.md) by the row's framework and
    framework_version, the same table `simulate --engine` reads: vLLM V1 = chunked prefill with the GPU class's
    token budget; TRT-LLM = in-flight batching, whole prompts join running decodes (orca), 8192 tokens; SGLang =
    prefill-first batches (our `vllm` policy) of at least chunked_prefill_size tokens; an unknown framework =
    roofsim-default. Row specifics: static_batch rows (Splitwise, Argonne) run one static batch; a policy that does
    not chunk gets max_batched_tokens >= isl so that the prompt can be scheduled at all (noted); SGLang's budget
    is sized from the row's isl (its longest prompt), not the model's context length.
    """
    if row.mode == "static_batch":
        c = row.concurrency or 1
        chunk = row.max_num_tokens
        if chunk is not None and chunk < c * row.isl:
            # the harness feeds the prompts in slices of max_num_tokens (llama-bench -b), then decodes the batch
            return (SarathiScheduler(max_num_seqs=c, max_batched_tokens=chunk, chunk_size=chunk),
                    f"static batch of {c} request(s), prompts in chunks of max_num_tokens={chunk} tokens")
        return (StaticScheduler(max_num_seqs=c, max_batched_tokens=max(c * row.isl, 1)),
                "static batch of concurrency requests, whole batch prefilled in one iteration")
    spec, note = row_engine(row)
    name = spec or "roofsim-default"
    max_len = load_model(row.model).max_context_tokens if needs_model(name) else None
    prof = engine_profile(name, row.hardware, max_model_len=max_len, gpus=row.tp * row.pp * (row.attn_dp or 1),
                          longest_prompt=row.isl)
    sched = prof.scheduler_config()
    note += _deployment_limits(row, sched)
    if prof.scheduler != "sarathi" and sched["max_batched_tokens"] < row.isl:
        sched["max_batched_tokens"] = row.isl
        note += f"; max_batched_tokens raised to isl={row.isl} so that the prompt can be scheduled"
    cfg: SchedulerConfig = _SCHEDULER.validate_python(sched)
    return cfg, f"{note}: {prof.summary()}"


# Engines whose simulated scheduler takes a row's max_num_tokens as its token budget. A held-out choice on the
# AIConfigurator silicon rows (docs/validation-e2e.md), decided on the Qwen3-32B rows of each engine and checked on
# the other model's rows: vLLM (Qwen3-32B TTFT median |error| 31 -> 13 %; held out, Llama-3.1-70B 233 -> 100 %);
# TRT-LLM 1.x with its overlap scheduler modelled (simulator/engines.py; Qwen3-32B TTFT 38 -> 23 %, TPOT
# 15 -> 17 %; held out, Llama-3.1-8B TTFT 41 -> 42 %, TPOT 10 -> 11 %, and Qwen3-235B-A22B-FP8 TTFT
# 33 -> 21 %, TPOT 33 -> 34 %). SGLang (TPOT 7 -> 11 %)
# measures closer to its whole-wave prefills, so its token limit stays recorded, not applied.
ROW_TOKEN_BUDGET_ENGINES = ("vllm", "trtllm")


def _deployment_limits(row: BenchRow, sched: dict[str, Any]) -> str:
    """Put the limits the row's deployment set (max_batch_size; max_num_tokens on ROW_TOKEN_BUDGET_ENGINES) over
    the engine's defaults in `sched` (a scheduler table; a chunking policy's chunk is its budget); say which."""
    said = []
    if row.max_batch_size is not None:
        sched["max_num_seqs"] = row.max_batch_size
        said.append(f"max_num_seqs {row.max_batch_size}")
    fw = row.framework.strip().lower()
    if row.max_num_tokens is not None and ALIASES.get(fw, fw) in ROW_TOKEN_BUDGET_ENGINES:
        sched["max_batched_tokens"] = row.max_num_tokens
        if "chunk_size" in sched:
            sched["chunk_size"] = row.max_num_tokens
        said.append(f"token budget {row.max_num_tokens}")
    elif row.max_num_tokens is not None:
        said.append(f"max_num_tokens {row.max_num_tokens} (recorded, not applied on {fw}: ROW_TOKEN_BUDGET_ENGINES)")
    return f"; the row's deployment sets {', '.join(said)}" if said else ""


def row_quant(row: BenchRow, hardware: HardwareSpec | None = None) -> QuantSpec:
    """QuantSpec of a row (model.quant.quant_for): fp8 weights -> W8A8 fp8, fp4 -> W4A4, int8/int4 -> weight-only
    with 16-bit activations; with `hardware`, activations the GPU cannot compute in run 16-bit (weight-only: an
    MXFP4 gpt-oss checkpoint on H100, fp8 weights on A100), as the engines serve them."""
    wd, kv = row.weight_dtype.lower(), row.kv_dtype.lower()
    for name, value, valid in (("weight_dtype", wd, WEIGHT_DTYPES), ("kv_dtype", kv, KV_DTYPES)):
        if value not in valid:
            raise InputError(f"{name}={getattr(row, name)!r} is not one of {list(valid)}")
    return quant_for(wd, kv, hardware)


def _num_requests(row: BenchRow) -> int:
    if row.mode == "closed_loop":
        c = row.concurrency or 0
        if c < 1:
            raise InputError("closed_loop row has concurrency < 1")
        return max(row.num_requests or 0, CLOSED_LOOP_MEASURED_PER_CLIENT * c) + CLOSED_LOOP_WARMUP_PER_CLIENT * c
    if row.mode == "static_batch":
        if not row.concurrency:
            raise InputError("static_batch row has concurrency < 1")
        return row.concurrency
    if not row.num_requests:
        raise InputError(f"{row.mode} row has num_requests < 1")
    return row.num_requests


def row_config(row: BenchRow, calibration: Calibration | None = None, seed: int = 0, *,
               ramp_up_s: float | str = 0.0, clients: str = "harness") -> tuple[SimConfig, list[str]]:
    """The SimConfig that reproduces one benchmark row, and notes on every assumption it makes.
    `ramp_up_s` is the closed-loop client ramp (simulator.workload.ClosedLoopArrivals; 0 = all clients at once,
    as the benchmark scripts run); `clients` is "harness" (the row's harness model) or "ideal" (lock-step)."""
    sched, note = engine_scheduler(row)
    notes = [note]
    n = _num_requests(row)
    arrival: ClosedLoopArrivals | PoissonArrivals | OfflineArrivals
    if row.mode == "closed_loop":
        c = row.concurrency or 1
        harness, why = row_harness(row, clients)
        notes.append(why)
        arrival = ClosedLoopArrivals(clients=c, warmup_requests=CLOSED_LOOP_WARMUP_PER_CLIENT, warmup_drain=True,
                                     ramp_up_s=ramp_up_s, client=harness)
        start = "all clients start together" if ramp_up_s == 0 else f"clients ramp up ({ramp_up_s})"
        notes.append(f"closed loop like genai-perf/aiperf in AIConfigurator's benchmark scripts: {c} clients, "
                     f"{CLOSED_LOOP_WARMUP_PER_CLIENT * c} warm-up requests (excluded; all answered before the "
                     f"measured phase), then {n - CLOSED_LOOP_WARMUP_PER_CLIENT * c} measured; {start}")
    elif row.mode == "poisson" and row.qps is not None and math.isfinite(row.qps) and row.qps > 0:
        arrival = PoissonArrivals(rate_per_s=row.qps)
    elif row.mode == "poisson":
        arrival = OfflineArrivals()
        notes.append(f"qps={row.qps}: every request sent at t=0")
    else:
        arrival = OfflineArrivals()
    workload = SyntheticWorkload(arrival=arrival, input=FixedLengths(tokens=row.isl),
                                 output=FixedLengths(tokens=row.osl), num_requests=n)
    # The engine sets gpu_memory_utilization and prefix caching. Prompts repeat only when the harness draws them
    # from a pool (aiperf: 100 prompts; simulator/clients.py); otherwise random prompts share no prefix and the
    # cache, on or off, changes nothing.
    engine = row_engine(row)[0] if row.mode != "static_batch" else None
    pool = client_model(arrival.client).prompt_pool if isinstance(arrival, ClosedLoopArrivals) else 0
    caching = None if pool and engine is not None else False
    quant = row_quant(row, load_hardware(row.hardware))
    if quant.activation_dtype != row_quant(row).activation_dtype:
        notes.append(f"{row.weight_dtype} weights run weight-only on {row.hardware} ({quant.activation_dtype} "
                     "activations: the GPU has no such tensor cores)")
    extra: dict[str, Any] = {} if caching is None else {"prefix_caching": caching}
    extra.update(_static_engine_settings(row, notes))
    context = load_model(row.model).max_context_tokens
    if row.mode == "static_batch" and row.isl + row.osl > context:
        # a static benchmark that measured longer sequences than the model was trained for ran them (Splitwise's
        # 8k prompts on the 4k Llama-2): timing does not depend on the positions being in range
        extra["max_model_len"] = row.isl + row.osl
        notes.append(f"isl+osl={row.isl + row.osl} is past the model's {context}-token context: run as measured")
    group = ReplicaGroup(model=row.model, hardware=row.hardware, tp=row.tp, pp=row.pp, ep=row.ep,
                         attn_dp=row.attn_dp or 1, engine=engine,
                         quant=quant, scheduler=sched, calibration=calibration, **extra)
    if pool and engine is not None:
        notes[0] += (f"; prefix caching {'on' if group.prefix_caching else 'off'} (the engine's default): the "
                     f"harness draws every prompt from {pool} with replacement, so prompts repeat")
    elif row.mode != "static_batch" and engine is not None:
        notes[0] += "; prefix caching off: the benchmark client's random prompts share no prefix"
    if row.disaggregated:
        return disaggregated_config(row, group, workload, seed, notes), notes
    return SimConfig(workload=workload, replicas=(group,), seed=seed), notes


def _static_engine_settings(row: BenchRow, notes: list[str]) -> dict[str, Any]:
    """The engine settings a static-batch row keeps under its own static scheduler: the host costs of an engine that
    runs every iteration eagerly (simulator/engines.py host_s_per_launch, host_s_per_seq and prefill_s_per_seq; the
    Splitwise rows' `splitwise` engine). A floor on prompt iterations only (trtllm 1.x) is not carried: the static
    tables without a framework version (Argonne's TRT-LLM rows, 2024) ran TensorRT engines, not the PyTorch
    executor."""
    spec = row_engine(row)[0] if row.mode == "static_batch" else None
    # (other settings may need the model: not asked)
    eng = engine_row(spec) if spec is not None else None
    if eng is None or not eng.host_s_per_launch or eng.eager_prompts_only:
        return {}
    prof = engine_profile(spec, row.hardware, gpus=row.tp * row.pp, model=row.model)
    if not prof.host_s_per_launch:
        return {}
    notes.append(f"engine {spec}: eager execution, {prof.host_s_per_launch * 1e6:.1f} us of host dispatch per kernel "
                 "launch" + (f", {prof.host_s_per_seq * 1e6:.0f} us of host time per sequence per iteration"
                             if prof.host_s_per_seq is not None else "")
                 + (f", {prof.prefill_s_per_seq * 1e3:g} ms per prompt of the prefill step"
                    if prof.prefill_s_per_seq else ""))
    return {"host_s_per_launch": prof.host_s_per_launch, "host_s_per_seq": prof.host_s_per_seq,
            "prefill_s_per_seq": prof.prefill_s_per_seq}


def disaggregated_config(row: BenchRow, group: ReplicaGroup, workload: SyntheticWorkload, seed: int,
                         notes: list[str]) -> SimConfig:
    """The run of a disaggregated row: `group` (the engine's settings) as the prefill pool and the decode pool
    with each pool's replicas, layout and engine limits (the row's pool columns); the KV crosses the GPUs'
    network link (the default kv_link)."""
    groups = tuple(group.model_copy(update={
        "role": pool, "count": getattr(row, f"{pool}_replicas"), "tp": getattr(row, f"{pool}_tp"),
        "pp": getattr(row, f"{pool}_pp"), "ep": getattr(row, f"{pool}_ep"),
        "attn_dp": getattr(row, f"{pool}_attn_dp") or 1, "scheduler": _pool_scheduler(row, pool, group.scheduler, notes)})
        for pool in ("prefill", "decode"))
    notes.append("disaggregated: " + " + ".join(
        f"{g.count} {g.role} x {f'dp{g.attn_dp} ' if g.attn_dp > 1 else ''}tp{g.tp} pp{g.pp} ep{g.ep} (max_num_seqs {g.scheduler.max_num_seqs}, "
        f"{g.scheduler.max_batched_tokens} tokens)" for g in groups)
        + "; KV handed over on the GPUs' network link; TTFT counts the handover (docs/disaggregation.md)")
    return SimConfig(workload=workload, replicas=groups, seed=seed)


def _pool_scheduler(row: BenchRow, pool: str, sched: SchedulerConfig, notes: list[str]) -> SchedulerConfig:
    """`sched` with the pool's own limits when the row gives them (a pool limit is what the benchmarked deployment
    set on that pool's workers, so it applies on every engine); a token limit under the prompt is raised to it,
    with a note."""
    seqs, tokens = getattr(row, f"{pool}_max_batch_size"), getattr(row, f"{pool}_max_num_tokens")
    upd: dict[str, int] = {}
    if seqs is not None:
        upd["max_num_seqs"] = seqs
    if tokens is not None:
        if tokens < row.isl:
            notes.append(f"{pool}_max_num_tokens={tokens} is below the prompt's {row.isl} tokens: the {pool} pool "
                         f"runs with {row.isl}, one prompt per iteration at least")
        upd["max_batched_tokens"] = max(tokens, row.isl)
        if "chunk_size" in type(sched).model_fields:
            upd["chunk_size"] = upd["max_batched_tokens"]
    return type(sched).model_validate({**sched.model_dump(), **upd}) if upd else sched


# ------------------------------------------------------------------------------------------- prediction
@dataclass(frozen=True)
class RowPrediction:
    """Predicted columns of one row (None when the row could not be simulated; `problem` says why)."""

    index: int
    row: BenchRow
    predicted: dict[str, float] = field(default_factory=dict)
    calibration: str = ""
    notes: tuple[str, ...] = ()
    problem: str | None = None
    # predict_row(ensemble=M): column -> level -> (low, high) of the M-member ensemble (simulator.ensemble)
    intervals: dict[str, dict[float, tuple[float, float]]] = field(default_factory=dict)


def _predicted(res: SimResult) -> dict[str, float]:
    s = res.summary
    out: dict[str, float] = {}
    for col, key in METRICS.items():
        v = s[key]["mean"] * 1e3 if col.endswith("_ms") else s[key]
        out[col] = float(v)
    return out


CalibrationChoice = Calibration | Callable[[BenchRow], Calibration] | None


def shipped_calibration(row: BenchRow) -> Calibration:
    """The shipped profile for the row's hardware and framework (validation.profiles.profile_for); the model
    defaults, named as such, when no profile is shipped for it."""
    try:
        return profile_for(row.hardware, row.framework.lower() or None)
    except InputError as e:
        return Calibration(name=f"defaults-for-{row.hardware}", hardware=row.hardware,
                           source=f"defaults (docs/model.md): no usable shipped profile ({e})")


def row_intervals(row: BenchRow, cfg: SimConfig, members: int, error_model: ErrorModel | None = None,
                  levels: Sequence[float] = INTERVAL_LEVELS) -> tuple[dict[str, dict[float, tuple[float, float]]], str]:
    """Column -> level -> (low, high) of an ensemble of `members` (simulator.ensemble.run_ensemble) of the row's
    config, every replica group drawing from `error_model` (default: the error model of the row's shipped profile,
    validation.profiles.error_model_for), and a note naming the error model."""
    label = "given error model"
    if error_model is None:
        error_model, label = error_model_for(row.hardware, row.framework.lower() or None)
    ens = run_ensemble(cfg, [error_model] * len(cfg.replicas), members, levels)
    out: dict[str, dict[float, tuple[float, float]]] = {}
    for col, key in METRICS.items():
        ms = col.endswith("_ms")
        out[col] = {q: tuple(x * (1e3 if ms else 1.0) for x in ens.interval(f"{key}.mean" if ms else key, q))
                    for q in levels}  # type: ignore[misc]
    return out, f"ensemble of {members}: kernel error model {label}"


def predict_row(index: int, row: BenchRow, calibration: CalibrationChoice = None, seed: int = 0,
                ramp_up_s: float | str = 0.0, clients: str = "harness", ensemble: int = 0,
                error_model: ErrorModel | None = None) -> RowPrediction:
    """Simulate one row (and, with `ensemble` > 1, an ensemble of it: row_intervals). A row that cannot be
    simulated comes back with `problem` set (never raised)."""
    cal_name = ""
    try:
        cal = calibration(row) if callable(calibration) else calibration
        cal_name = cal.name if cal is not None else "default"
        cfg, notes = row_config(row, cal, seed, ramp_up_s=ramp_up_s, clients=clients)
        res = simulate(cfg)
    except (RoofsimError, ValueError, KeyError) as e:
        msg = str(e.args[0]) if isinstance(e, KeyError) and e.args else str(e)
        return RowPrediction(index, row, calibration=cal_name, problem=f"row {index + 1} ({row_label(row)}): {msg}")
    s = res.summary
    if s["requests_completed"] < s["requests_total"]:
        return RowPrediction(index, row, calibration=cal_name, notes=tuple(notes),
                             problem=f"row {index + 1} ({row_label(row)}): only {s['requests_completed']} of "
                                     f"{s['requests_total']} requests finished ({s['stop_reason']}; "
                                     f"rejected: {s['requests_rejected']})")
    intervals: dict[str, dict[float, tuple[float, float]]] = {}
    if ensemble > 1:
        try:
            intervals, note = row_intervals(row, cfg, ensemble, error_model)
        except (RoofsimError, ValueError) as e:
            note = f"no interval: {e}"
        notes.append(note)
    return RowPrediction(index, row, _predicted(res), cal_name, tuple(notes), intervals=intervals)


def _job(args: tuple[int, BenchRow, CalibrationChoice, int, float | str, str, int, ErrorModel | None]
         ) -> RowPrediction:
    return predict_row(*args)


@dataclass(frozen=True)
class E2EResult:
    predictions: tuple[RowPrediction, ...]
    problems: tuple[str, ...]

    @property
    def ok(self) -> tuple[RowPrediction, ...]:
        return tuple(p for p in self.predictions if p.problem is None)


def predict_table(rows: Sequence[BenchRow], calibration: CalibrationChoice = shipped_calibration, *,
                  seed: int = 0, workers: int | None = None, ramp_up_s: float | str = 0.0, clients: str = "harness",
                  progress: Callable[[Iterable[RowPrediction], int], Iterable[RowPrediction]] | None = None,
                  ensemble: int = 0, error_model: ErrorModel | None = None) -> E2EResult:
    """Simulate every row (in a process pool of `workers`, default min(2, cpus) when there are more than 8 rows;
    results are in row order and do not depend on the pool). `progress(iterator, total)` may wrap the results.
    `clients`: "harness" (each closed-loop row's harness model, simulator/clients.py) or "ideal" (lock-step).
    `ensemble` > 1: each row also gets intervals (row_intervals; `error_model`, default the row's profile's)."""
    if clients not in CLIENT_CHOICES:
        raise InputError(f"clients={clients!r} is not one of {list(CLIENT_CHOICES)}")
    jobs = [(i, r, calibration, seed, ramp_up_s, clients, ensemble, error_model) for i, r in enumerate(rows)]
    if workers is None:
        workers = min(2, os.cpu_count() or 1) if len(rows) > 8 else 1
    if workers > 1:
        with ProcessPoolExecutor(max_workers=workers) as ex:
            it: Iterable[RowPrediction] = ex.map(_job, jobs, chunksize=max(1, len(jobs) // (workers * 16)))
            if progress is not None:
                it = progress(it, len(jobs))
            preds = list(it)
    else:
        it = map(_job, jobs)
        if progress is not None:
            it = progress(it, len(jobs))
        preds = list(it)
    return E2EResult(tuple(preds), tuple(p.problem for p in preds if p.problem))


def _scored(p: RowPrediction, col: str) -> tuple[float, float] | None:
    """(predicted, measured) of `col` when the row measured it (> 0) and the prediction is finite, else None."""
    meas, pred = getattr(p.row, col), p.predicted.get(col, math.nan)
    if meas is None or meas <= 0 or not math.isfinite(pred):
        return None
    return pred, meas


def e2e_error_stats(preds: Sequence[RowPrediction], key: Callable[[BenchRow], str] | None = None
                    ) -> dict[str, dict[str, dict[str, float | int]]]:
    """{group: {metric: {n, median_abs_pct_err, mape, p90_abs_pct_err, bias_pct}}} over the rows with both a
    measured and a predicted value (blank measured cells are not scored). Group "all" when key is None."""
    groups: dict[str, list[RowPrediction]] = {}
    for p in preds:
        if p.problem is None:
            groups.setdefault(key(p.row) if key else "all", []).append(p)
    out: dict[str, dict[str, dict[str, float | int]]] = {}
    for g in sorted(groups):
        d: dict[str, dict[str, float | int]] = {}
        for col in METRICS:
            pairs = [pm for p in groups[g] if (pm := _scored(p, col)) is not None]
            if pairs:
                arr = np.array(pairs, dtype=float)
                st = error_stats(arr[:, 0], arr[:, 1]).as_dict()
                d[col] = {k: st[k] for k in ("n", "median_abs_pct_err", "mape", "p90_abs_pct_err", "bias_pct")}
        out[g] = d
    return out


# issue #14's report rule: a row whose predicted TTFT is more than FAR_OFF_FACTOR times or less than 1 / FAR_OFF_FACTOR
# of the measured one is listed by name, so a reader can see (and the docs can give) its reason
FAR_OFF_FACTOR = 3.0


def far_off_rows(preds: Sequence[RowPrediction], key: Callable[[BenchRow], str], metric: str = "ttft_ms",
                 factor: float = FAR_OFF_FACTOR) -> list[dict[str, Any]]:
    """The scored rows whose predicted `metric` lies outside [measured / factor, measured x factor]: index (0-based
    table row), group (`key`), isl, osl, concurrency, tp, measured, predicted and their ratio, in table order."""
    if factor <= 1:
        raise ValueError(f"far_off_rows: factor={factor} must be > 1")
    out = []
    for p in preds:
        pm = _scored(p, metric) if p.problem is None else None
        if pm is None:
            continue
        pred, meas = pm
        ratio = pred / meas
        if ratio > factor or ratio < 1 / factor:
            out.append({"index": p.index, "group": key(p.row), "isl": p.row.isl, "osl": p.row.osl,
                        "concurrency": p.row.concurrency, "tp": p.row.tp, "measured": meas, "predicted": pred,
                        "ratio": ratio})
    return out


def write_predictions(preds: Sequence[RowPrediction], path: Path | str, *, force: bool = False) -> Path:
    """The table with pred_<metric> columns (+ calibration, problem) added. Refuses to overwrite unless force."""
    import csv  # noqa: PLC0415

    path = Path(path)
    if path.exists() and not force:
        raise InputError(f"{path} exists; pass --force to overwrite it")
    row_cols = written_columns([p.row for p in preds])
    cols = [*row_cols, *(f"pred_{c}" for c in METRICS), "calibration", "problem"]

    def fmt(v: object) -> str:
        if v is None:
            return ""
        if isinstance(v, float):
            return "inf" if math.isinf(v) else repr(v)
        return str(v)

    with path.open("w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(cols)
        for p in preds:
            vals = [getattr(p.row, c) for c in row_cols]
            vals += [p.predicted.get(c) for c in METRICS]
            vals += [p.calibration, p.problem or ""]
            w.writerow([fmt(v) for v in vals])
    return path


def interval_checks(preds: Sequence[RowPrediction], key: Callable[[BenchRow], str] | None = None
                    ) -> list[IntervalCheck]:
    """One validation.uncertainty.IntervalCheck per scored cell of every row predicted with intervals (unit = the
    row's index, group = key(row) or 'all', inputs = the row's model.uncertainty.E2E_INPUTS that it sets)."""
    out = []
    for p in preds:
        inputs = {k: float(v) for k in E2E_INPUTS if (v := getattr(p.row, k)) is not None}
        for col, bounds in p.intervals.items():
            m = getattr(p.row, col)
            if p.problem is None and m is not None and m > 0:
                out.append(IntervalCheck(str(p.index), key(p.row) if key else "all", col, float(m),
                                         p.predicted[col], bounds, inputs))
    return out
