"""Capacity planner: for every candidate replica configuration, the highest request rate one replica sustains
within P99 TTFT/TPOT SLOs (bisection over simulated rates, Vidur-Search style), then replicas, GPUs, $/hour,
$/1M output tokens and J/token for a target rate; ranked, with a Pareto front and why the runners-up lost."""

from __future__ import annotations

import json
import logging
import math
import multiprocessing
import os
import sys
import time
import types
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ProcessPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from typing import Any, Literal, Protocol, TypeVar

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, model_validator

from roofsim.hardware_specs.catalog import load_hardware
from roofsim.hardware_specs.errors import RoofsimError
from roofsim.model.batch import BatchShape, causal_pairs
from roofsim.model.cost import CostModel, check_dtypes
from roofsim.model.loader import load_model
from roofsim.model.memory import DoesNotFitError, plan_memory
from roofsim.model.spec import ParallelSpec, QuantSpec
from roofsim.simulator.config import SCHEDULER_KINDS, SimConfig
from roofsim.simulator.plan_cache import PointCache, point_key
from roofsim.simulator.run import simulate
from roofsim.simulator.workload import (
    ClosedLoopArrivals,
    NamedWorkload,
    OfflineArrivals,
    SyntheticWorkload,
    Trace,
    TraceWorkload,
    WorkloadConfig,
    build_trace,
    resolve_workload,
    with_rate,
)

logger = logging.getLogger(__name__)

Objective = Literal["cost", "gpus", "energy"]
Status = Literal["feasible", "pruned", "slo_unmet", "over_budget", "does_not_fit", "unsupported", "invalid"]
_FROZEN = ConfigDict(frozen=True, extra="forbid")
# Fields of a run summary that depend on the machine, not the config: never cached, never compared.
_WALL_FIELDS = ("wall_s", "sim_s_per_wall_s", "iterations_per_wall_s")
START_FRACTION = 0.4  # first rate tried = this x the analytical capacity bound (simulated capacities: 0.2-0.6x)
BOUND_SLACK = 1.25  # the analytical bound is a roofline idealisation; bisection's upper bracket is this x it


class PlannerError(RoofsimError):
    """A plan that cannot run: bad search space, unreachable cluster."""


# ---- what to search ----------------------------------------------------------------------------------------
class PlanSpec(BaseModel):
    """A capacity-planning question: the candidate space, the traffic, the SLOs and what to minimise."""

    model_config = _FROZEN
    model: str
    workload: WorkloadConfig
    rate_per_s: float = Field(gt=0, allow_inf_nan=False, description="target request rate of the deployment")
    slo_ttft_s: float = Field(gt=0, allow_inf_nan=False, description="P99 TTFT target")
    slo_tpot_s: float = Field(gt=0, allow_inf_nan=False, description="P99 TPOT target")
    hardware: tuple[str, ...] = Field(("h100-sxm",), min_length=1)
    tp: tuple[int, ...] = Field((1, 2, 4, 8), min_length=1)
    pp: tuple[int, ...] = Field((1,), min_length=1)
    weight_dtypes: tuple[str, ...] = Field(("bf16",), min_length=1)
    kv_dtypes: tuple[str, ...] = Field(("auto",), min_length=1, description="'auto' = bf16 (16-bit activations)")
    schedulers: tuple[str, ...] = Field(("vllm",), min_length=1)
    max_batch: tuple[int, ...] = Field((256,), min_length=1, description="max_num_seqs values")
    # JSON objects for the ReplicaGroup field `speculative` (None = off); passed through to SimConfig unchanged.
    speculative: tuple[str | None, ...] = (None,)
    max_batched_tokens: int | None = Field(None, ge=1, description=(
        "token budget of one iteration; None = max(8192, longest prompt rounded up to 1024): schedulers that "
        "do not chunk prompts reject longer ones, vLLM likewise sizes it from the context length"))
    chunk_size: int = Field(512, ge=1, description="Sarathi token budget")
    gpu_memory_utilization: float = Field(0.9, gt=0, le=1)
    objective: Objective = "cost"
    num_requests: int = Field(2000, ge=10)
    seed: int = 0
    tolerance: float = Field(0.05, gt=0, le=1, description="relative bisection tolerance of the capacity")
    max_gpus: int | None = Field(None, ge=1, description="GPU budget of the deployment")
    max_replicas: int = Field(256, ge=1, description="search no capacity below rate_per_s / max_replicas")
    candidates_per_round: int = Field(8, ge=1, description=(
        "searches advanced per round, cheapest lower bound first; more = more parallelism, less pruning"))
    exhaustive: bool = Field(False, description="simulate every candidate (no cost-bound pruning)")
    verify_winner: bool = Field(True, description="simulate the winning deployment (all replicas, routed)")

    @model_validator(mode="after")
    def _check(self) -> PlanSpec:
        for name in ("tp", "pp", "max_batch"):
            bad = [v for v in getattr(self, name) if v < 1]
            if bad:
                raise ValueError(f"{name}={bad[0]} must be >= 1")
        bad_s = [s for s in self.schedulers if s not in SCHEDULER_KINDS]
        if bad_s:
            raise ValueError(f"scheduler {bad_s[0]!r} is not one of {', '.join(SCHEDULER_KINDS)}")
        for s in self.speculative:
            if s is not None:
                try:
                    obj = json.loads(s)
                except ValueError as e:
                    raise ValueError(f"speculative={s!r} is not a JSON object: {e}") from None
                if not isinstance(obj, dict):
                    raise ValueError(f"speculative={s!r} must be a JSON object")
        wl = resolve_workload(self.workload)
        if isinstance(wl, SyntheticWorkload) and isinstance(wl.arrival, ClosedLoopArrivals | OfflineArrivals):
            raise ValueError(f"workload arrival kind {wl.arrival.kind!r} has no request rate to search over; "
                             "use an open-loop workload (poisson, gamma, constant, burst) or a trace")
        return self


def quant_for(weight_dtype: str, kv_dtype: str = "auto") -> QuantSpec:
    """The QuantSpec the CLI means by a weight dtype: fp8 -> W8A8 fp8, fp4 -> W4A4 (NVFP4 blocks of 16),
    int8/int4 -> weight-only with bf16 activations; kv 'auto' -> bf16."""
    act = {"fp8": "fp8", "fp4": "fp4", "fp32": "fp32", "fp16": "fp16"}.get(weight_dtype, "bf16")
    kv = "bf16" if kv_dtype == "auto" else kv_dtype
    if kv_dtype == "auto" and act in ("fp16", "fp32"):
        kv = act
    fp4 = weight_dtype == "fp4"
    return QuantSpec(weight_dtype=weight_dtype, activation_dtype=act, kv_dtype=kv,  # type: ignore[arg-type]
                     group_size=16 if fp4 else 128, scale_bytes=1.0 if fp4 else 2.0)


@dataclass(frozen=True)
class Candidate:
    """One replica configuration of the search space."""

    hardware: str
    tp: int
    pp: int
    weight_dtype: str
    kv_dtype: str
    scheduler: str
    max_batch: int
    speculative: str | None = None

    @property
    def gpus(self) -> int:
        return self.tp * self.pp

    @property
    def label(self) -> str:
        kv = "" if self.kv_dtype == "auto" else f"/kv-{self.kv_dtype}"
        spec = "" if self.speculative is None else f" spec={self.speculative}"
        return (f"{self.hardware} tp{self.tp}" + (f" pp{self.pp}" if self.pp > 1 else "")
                + f" {self.weight_dtype}{kv} {self.scheduler} b{self.max_batch}{spec}")

    def group(self, spec: PlanSpec, count: int = 1) -> dict[str, Any]:
        sched: dict[str, Any] = {"kind": self.scheduler, "max_num_seqs": self.max_batch,
                                 "max_batched_tokens": spec.max_batched_tokens}
        if self.scheduler == "sarathi":
            sched["chunk_size"] = spec.chunk_size
        g: dict[str, Any] = {"model": spec.model, "hardware": self.hardware, "tp": self.tp, "pp": self.pp,
                             "count": count, "quant": quant_for(self.weight_dtype, self.kv_dtype).model_dump(),
                             "scheduler": sched, "gpu_memory_utilization": spec.gpu_memory_utilization}
        if self.speculative is not None:
            g["speculative"] = json.loads(self.speculative)
        return g

    def as_dict(self) -> dict[str, Any]:
        return {"hardware": self.hardware, "tp": self.tp, "pp": self.pp, "weight_dtype": self.weight_dtype,
                "kv_dtype": self.kv_dtype, "scheduler": self.scheduler, "max_batch": self.max_batch,
                "speculative": self.speculative, "gpus": self.gpus, "label": self.label}


def candidates(spec: PlanSpec) -> list[Candidate]:
    """Every combination of the space, in a fixed order (hardware, weights, kv, tp, pp, scheduler, batch, spec);
    hardware names are resolved to catalog ids (UnknownNameError with close names for a typo)."""
    hw_ids: list[str] = []
    for name in spec.hardware:
        hid = load_hardware(name).id
        if hid not in hw_ids:
            hw_ids.append(hid)
    out = []
    for hw in hw_ids:
        for wd in dict.fromkeys(spec.weight_dtypes):
            for kv in dict.fromkeys(spec.kv_dtypes):
                for tp in sorted(set(spec.tp)):
                    for pp in sorted(set(spec.pp)):
                        for sch in dict.fromkeys(spec.schedulers):
                            for mb in sorted(set(spec.max_batch)):
                                for sp in dict.fromkeys(spec.speculative):
                                    out.append(Candidate(hw, tp, pp, wd, kv, sch, mb, sp))
    return out


# ---- the rate grid and the workload at a rate --------------------------------------------------------------
def grid_rate(k: int, tolerance: float) -> float:
    """Rates live on a geometric grid (1 + tol)^k req/s, shared by every plan with the same tolerance, so that
    cache keys repeat when a plan is re-run or widened."""
    return float(round((1.0 + tolerance) ** k, 12))


def grid_index(rate: float, tolerance: float) -> int:
    """Largest k with grid_rate(k) <= rate."""
    k = math.floor(math.log(rate) / math.log1p(tolerance) + 1e-9)
    while grid_rate(k + 1, tolerance) <= rate:
        k += 1
    while grid_rate(k, tolerance) > rate:
        k -= 1
    return k


def workload_at(spec: PlanSpec, rate: float, native_rate: float) -> dict[str, Any]:
    """The spec's workload with mean arrival rate `rate` and `num_requests` requests. A synthetic/named
    workload keeps its seed-drawn gaps and lengths and rescales them (same seed -> the same requests, time-scaled);
    a trace is compressed or stretched by rate_scale = rate / its own mean rate."""
    wl = spec.workload
    if isinstance(wl, TraceWorkload):
        return {**wl.model_dump(mode="json", exclude_none=True), "rate_scale": rate / native_rate * wl.rate_scale,
                "max_requests": spec.num_requests}
    if isinstance(wl, NamedWorkload):
        return {"kind": "named", "name": wl.name, "rate_per_s": rate, "num_requests": spec.num_requests}
    assert isinstance(wl, SyntheticWorkload)
    d = wl.model_dump(mode="json", exclude_none=True)
    d["arrival"] = with_rate(wl.arrival, rate).model_dump(mode="json")
    d["num_requests"] = spec.num_requests
    d.pop("duration_s", None)
    return d


def overload_guard(num_requests: int) -> int:
    """max_waiting_requests for point runs: a queue of 5% of all requests (>= 50) at one replica means the
    run is overloaded (queued requests then wait seconds for their first token); stopping there saves the
    minutes a hopeless run would spend draining. Independent of the SLOs so cached points serve any SLO."""
    return max(50, math.ceil(0.05 * num_requests))


def point_config(spec: PlanSpec, cand: Candidate, rate: float, native_rate: float, count: int = 1,
                 with_slo: bool = False) -> SimConfig:
    data: dict[str, Any] = {"workload": workload_at(spec, rate, native_rate), "replicas": [cand.group(spec, count)],
                            "seed": spec.seed}
    if with_slo:
        data["slo"] = {"ttft_s": spec.slo_ttft_s, "tpot_s": spec.slo_tpot_s}
    else:
        data["max_waiting_requests"] = overload_guard(spec.num_requests)
    return SimConfig.model_validate(data)


# ---- one evaluation (runs in a worker) ---------------------------------------------------------------------
@contextmanager
def _quiet_simulator() -> Iterator[None]:
    """Overloaded point runs are expected; keep their 'stopped early' warnings out of the user's terminal."""
    names = ("roofsim.simulator.cluster", "roofsim.simulator.run")
    loggers = [logging.getLogger(n) for n in names]
    levels = [lg.level for lg in loggers]
    for lg in loggers:
        lg.setLevel(logging.ERROR)
    try:
        yield
    finally:
        for lg, lv in zip(loggers, levels, strict=True):
            lg.setLevel(lv)


def evaluate_point(config: SimConfig) -> dict[str, Any]:
    """Simulate one config; return its summary without the machine-dependent wall-time fields, plus `wall_s`.
    Depends only on the config (and code), so any executor returns the same thing."""
    t0 = time.perf_counter()
    with _quiet_simulator():
        r = simulate(config)
    summary = {k: v for k, v in r.summary.items() if k not in _WALL_FIELDS}
    return {"summary": summary, "wall_s": time.perf_counter() - t0}


# ---- executors ---------------------------------------------------------------------------------------------
T = TypeVar("T")
R = TypeVar("R")


class Executor(Protocol):
    """Runs a batch of independent tasks and returns their results in order."""

    workers: int

    def map(self, fn: Callable[[T], R], items: Sequence[T]) -> list[R]: ...

    def close(self) -> None: ...


class SerialExecutor:
    """In this process, one task after another (tests, one-core machines)."""

    workers = 1

    def map(self, fn: Callable[[T], R], items: Sequence[T]) -> list[R]:
        return [fn(x) for x in items]

    def close(self) -> None:
        pass


def _noop() -> None:
    return None


def _start_pool(workers: int) -> ProcessPoolExecutor:
    """A spawn pool whose workers are all started now, with a bare `__main__` while they start.

    A spawned worker re-runs the parent's `__main__` file. Under Streamlit (and its AppTest) `__main__` is the
    page script, which must not run again in a worker; the planner's tasks only need importable modules, so the
    workers are started while `sys.modules["__main__"]` is a bare module, then it is put back.
    """
    pool = ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn"))
    main = sys.modules.get("__main__")
    sys.modules["__main__"] = types.ModuleType("__main__")
    try:
        # submitting `workers` tasks at once makes the executor spawn every worker now (it spawns on demand)
        for f in [pool.submit(_noop) for _ in range(workers)]:
            f.result()
    finally:
        if main is not None:
            sys.modules["__main__"] = main
    return pool


class ProcessExecutor:
    """A local process pool (spawn start method: safe with threads, same behaviour on every OS); one worker per
    core by default. Callers' scripts need the usual `if __name__ == "__main__":` guard."""

    def __init__(self, workers: int | None = None) -> None:
        self.workers = workers or os.cpu_count() or 1
        if self.workers < 1:
            raise ValueError(f"workers={self.workers} must be >= 1")
        self._pool: ProcessPoolExecutor | None = None

    def map(self, fn: Callable[[T], R], items: Sequence[T]) -> list[R]:
        if len(items) <= 1 and self._pool is None:
            return [fn(x) for x in items]  # not worth starting the pool for
        if self._pool is None:
            self._pool = _start_pool(self.workers)
        return list(self._pool.map(fn, items, chunksize=1))

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(cancel_futures=True)
            self._pool = None


class DaskExecutor:
    """Tasks on a Dask distributed cluster: a scheduler address (`tcp://host:port`) or a Client/LocalCluster.
    An unreachable address fails after `timeout_s` with a PlannerError instead of hanging."""

    def __init__(self, address: Any, timeout_s: float = 5.0) -> None:
        from distributed import Client  # noqa: PLC0415 (only needed for cluster runs)

        self._own = True
        try:
            if isinstance(address, Client):
                self.client, self._own = address, False
            elif isinstance(address, str):
                self.client = Client(address, timeout=f"{timeout_s}s", set_as_default=False)
            else:  # a cluster object (LocalCluster, ...)
                self.client = Client(address, set_as_default=False)
        except (OSError, TimeoutError) as e:
            raise PlannerError(f"cannot connect to the Dask scheduler at {address!r} within {timeout_s:g} s: {e}. "
                               "Is `dask scheduler` running there and reachable?") from None
        info = self.client.scheduler_info()
        self.workers = max(1, sum(w.get("nthreads", 1) for w in info.get("workers", {}).values()))

    def map(self, fn: Callable[[T], R], items: Sequence[T]) -> list[R]:
        if not items:
            return []
        futures = self.client.map(fn, list(items), pure=False)
        return list(self.client.gather(futures))

    def close(self) -> None:
        if self._own:
            self.client.close()


def make_executor(dask_scheduler: str | None = None, workers: int | None = None) -> Executor:
    """Dask when given a scheduler address; else a local process pool (`workers` processes, default all
    cores), or in-process when workers == 1."""
    if dask_scheduler:
        return DaskExecutor(dask_scheduler)
    if workers == 1:
        return SerialExecutor()
    return ProcessExecutor(workers)


# ---- analytical bounds (no simulation) ---------------------------------------------------------------------
@dataclass(frozen=True)
class TraceStats:
    mean_input: float
    mean_output: float
    p99_input: int
    max_input: int
    max_total: int
    native_rate: float

    @classmethod
    def of(cls, trace: Trace) -> TraceStats:
        tot = trace.input_tokens + trace.output_tokens
        return cls(trace.mean_input_tokens, trace.mean_output_tokens,
                   int(np.percentile(trace.input_tokens, 99, method="higher")), int(trace.input_tokens.max()),
                   int(tot.max()), trace.rate_per_s)


@dataclass(frozen=True)
class Bounds:
    """What the roofline model says before any simulation. `status` is None when the candidate is worth
    simulating; `capacity_ub` (req/s) bounds what one replica can sustain within the TPOT SLO."""

    status: Status | None
    reason: str = ""
    capacity_ub: float = math.nan
    ttft_lb_s: float = math.nan
    tpot_lb_s: float = math.nan
    max_kv_tokens: int = 0
    capacity_est: float = math.nan  # steady-state throughput bound (req/s): where the search starts


def analytical_bounds(spec: PlanSpec, cand: Candidate, ts: TraceStats) -> Bounds:
    """Skip what cannot work (layout, dtype, memory, latency floor) and bound the capacity.

    Latency floors: a request alone pays at least the prefill of its prompt (TTFT) and one batch-1 decode step
    per token (TPOT); P99 of a pointwise lower bound bounds the P99. Capacity: in steady state decoding runs at
    batch b <= min(max_batch, KV tokens / (mean input + mean output / 2)) per pipeline lane, and b is held where
    one decode step stays within the TPOT SLO; a request costs at least its share of such a step per output
    token, and at least its prompt at the best prefill throughput (Roofline, Williams et al. 2009)."""
    model = load_model(spec.model)
    hw = load_hardware(cand.hardware)
    quant = quant_for(cand.weight_dtype, cand.kv_dtype)
    par = ParallelSpec(tp=cand.tp, pp=cand.pp)
    try:
        par.validate_for(model)
    except ValueError as e:
        return Bounds("invalid", str(e))
    try:
        check_dtypes(hw, quant)
    except ValueError as e:
        return Bounds("unsupported", str(e))
    if spec.max_gpus is not None and cand.gpus > spec.max_gpus:
        return Bounds("over_budget", f"one replica needs {cand.gpus} GPUs > max_gpus={spec.max_gpus}")
    # resolved by plan(); None would fail inside plan_memory (None * per-token bytes) anyway
    assert spec.max_batched_tokens is not None
    try:
        mem = plan_memory(model, hw, quant, par, spec.gpu_memory_utilization,
                          max_batched_tokens=spec.max_batched_tokens, max_seqs=cand.max_batch)
    except DoesNotFitError as e:
        first = str(e).splitlines()
        return Bounds("does_not_fit", " ".join(s.strip() for s in first[:3]))
    if cand.scheduler != "sarathi" and ts.max_input > spec.max_batched_tokens:
        return Bounds("does_not_fit", f"the longest prompt ({ts.max_input} tokens) exceeds max_batched_tokens="
                      f"{spec.max_batched_tokens} and scheduler {cand.scheduler!r} does not chunk prompts")
    usable_kv = mem.max_kv_tokens * (1 - 0.01)  # the scheduler keeps a 1% watermark free
    if ts.max_total > usable_kv:
        return Bounds("does_not_fit", f"the longest request ({ts.max_total} tokens) exceeds the KV cache "
                      f"({mem.max_kv_tokens} tokens); the replica would reject it", max_kv_tokens=mem.max_kv_tokens)
    cost = CostModel(model, hw, quant, par)
    cin = max(1, round(ts.mean_input))

    def dec(b: int, ctx: int) -> float:
        return cost.step_seconds(BatchShape(decode_seqs=b, decode_tokens=b, decode_ctx_tokens=b * ctx))

    p = ts.p99_input
    ttft_lb = cost.step_seconds(BatchShape(prefill_tokens=p, prefill_seqs=1, prefill_attn_pairs=causal_pairs(p, 0)))
    tpot_lb = dec(1, p)
    kw: dict[str, Any] = {"capacity_ub": math.nan, "ttft_lb_s": ttft_lb, "tpot_lb_s": tpot_lb,
                          "max_kv_tokens": mem.max_kv_tokens}
    if ttft_lb > spec.slo_ttft_s:
        return Bounds("slo_unmet", f"the P99 prompt ({p} tokens) alone takes {ttft_lb:.3g} s to prefill > "
                      f"TTFT SLO {spec.slo_ttft_s:g} s", **kw)
    if tpot_lb > spec.slo_tpot_s:
        return Bounds("slo_unmet", f"one decode step with a single {p}-token request takes {tpot_lb * 1e3:.3g} ms "
                      f"> TPOT SLO {spec.slo_tpot_s * 1e3:g} ms", **kw)
    lanes = cand.pp
    b_max = max(1, min(cand.max_batch, int(mem.max_kv_tokens / (ts.mean_input + ts.mean_output / 2) / lanes)))
    lo, hi = 1, b_max  # largest b with dec(b) <= SLO (step time grows with b)
    if dec(hi, cin) <= spec.slo_tpot_s:
        lo = hi
    while hi - lo > 1:
        mid = (lo + hi) // 2
        if dec(mid, cin) <= spec.slo_tpot_s:
            lo = mid
        else:
            hi = mid
    b = lo
    decode_s_per_token = dec(b, cin) / (b * lanes)
    chunk = spec.max_batched_tokens
    seqs = max(1, round(chunk / ts.mean_input))
    per_seq = max(1, chunk // seqs)
    pf = cost.step_seconds(BatchShape(prefill_tokens=per_seq * seqs, prefill_seqs=seqs,
                                      prefill_attn_pairs=seqs * causal_pairs(per_seq, 0)))
    prefill_s_per_token = pf / (per_seq * seqs) / lanes
    decode_s = max(0.0, ts.mean_output - 1) * decode_s_per_token  # the first output token comes from prefill
    prefill_s = ts.mean_input * prefill_s_per_token
    per_request_s = max(decode_s, prefill_s)
    if cand.speculative is None:  # (speculation changes tokens per step; keep the plain bound there)
        if cand.scheduler in ("vllm", "sjf"):
            # an iteration is prefills only or decodes only, so a request's two costs add up
            per_request_s = decode_s + prefill_s
        elif cand.scheduler in ("sarathi", "orca"):
            # mixed iterations of at most `budget` tokens; every prompt and decode token takes a slot, and no
            # token of an iteration costs less than a prompt token of a full budget with no attention context
            budget = min(spec.chunk_size, chunk) if cand.scheduler == "sarathi" else chunk
            full = cost.step_seconds(BatchShape(prefill_tokens=budget, prefill_seqs=1, prefill_attn_pairs=0))
            per_request_s = max(per_request_s, (ts.mean_input + max(0.0, ts.mean_output - 1)) * full / budget
                                / lanes)
    est = 1.0 / per_request_s
    # A finite run is feasible while its backlog at the last arrival stays small (saturation: more than
    # max(20, 5%) of the requests waiting) plus what runs: n - backlog requests must complete within the
    # arrival window n / rate, so rate <= est x n / (n - backlog). A run that fits in one batch has no bound.
    backlog = cand.max_batch * lanes + max(20.0, 0.05 * spec.num_requests)
    ub = est * spec.num_requests / (spec.num_requests - backlog) if spec.num_requests > backlog else math.inf
    return Bounds(None, "", ub, ttft_lb, tpot_lb, mem.max_kv_tokens, est)


# ---- results -----------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Point:
    """One simulated (candidate, rate)."""

    rate_per_s: float
    feasible: bool
    p99_ttft_s: float
    p99_tpot_s: float
    why: str  # '' when feasible

    def as_dict(self) -> dict[str, Any]:
        return {"rate_per_s": self.rate_per_s, "feasible": self.feasible, "p99_ttft_s": self.p99_ttft_s,
                "p99_tpot_s": self.p99_tpot_s, "why": self.why}


@dataclass(frozen=True)
class Outcome:
    """What the plan found for one candidate."""

    candidate: Candidate
    status: Status
    reason: str = ""
    capacity_ub: float = math.nan
    capacity_per_s: float = math.nan  # highest feasible grid rate found (a rate this replica is proven to sustain)
    # lowest grid rate found infeasible (inf: none): the capacity lies in [capacity_per_s, capacity_below_per_s).
    # = capacity x (1 + tolerance) for the winner and with --exhaustive; other feasible candidates stop once the
    # replica count is known, so theirs can be a few grid steps wider.
    capacity_below_per_s: float = math.nan
    replicas: int = 0
    gpus: int = 0
    usd_per_hour: float = math.nan
    usd_per_million_tokens: float = math.nan
    j_per_token: float = math.nan
    load_per_replica_s: float = math.nan
    p99_ttft_s: float = math.nan  # at the deployment's per-replica load (target / replicas)
    p99_tpot_s: float = math.nan
    points: tuple[Point, ...] = ()
    rank: int = 0
    pareto: bool = False
    objective_gap_pct: float = math.nan  # vs the winner
    slo_ratio: float = math.nan  # best max(P99 TTFT / SLO, P99 TPOT / SLO) seen (infeasible candidates)
    objective_lb: float = math.nan  # pruned candidates: objective lower bound when pruned

    def as_dict(self) -> dict[str, Any]:
        d = {k: getattr(self, k) for k in ("status", "reason", "capacity_ub", "capacity_per_s",
                                           "capacity_below_per_s", "replicas", "gpus",
                                           "usd_per_hour", "usd_per_million_tokens", "j_per_token",
                                           "load_per_replica_s", "p99_ttft_s", "p99_tpot_s", "rank", "pareto",
                                           "objective_gap_pct", "slo_ratio", "objective_lb")}
        return {"candidate": self.candidate.as_dict(), **d, "points": [p.as_dict() for p in self.points]}


@dataclass
class PlanStats:
    candidates: int = 0
    simulated_candidates: int = 0
    simulations: int = 0
    cache_hits: int = 0
    rounds: int = 0
    sim_wall_s: float = 0.0
    wall_s: float = 0.0
    workers: int = 1
    by_status: dict[str, int] = field(default_factory=dict)


@dataclass(frozen=True)
class PlanResult:
    spec: PlanSpec
    outcomes: tuple[Outcome, ...]  # ranked: feasible by objective, then pruned, then infeasible
    stats: PlanStats
    winner_metrics: dict[str, Any] | None = None  # the winning deployment, all replicas, simulated at the target rate

    @property
    def winner(self) -> Outcome | None:
        return self.outcomes[0] if self.outcomes and self.outcomes[0].status == "feasible" else None

    @property
    def feasible(self) -> list[Outcome]:
        return [o for o in self.outcomes if o.status == "feasible"]

    @property
    def pareto(self) -> list[Outcome]:
        return [o for o in self.outcomes if o.pareto]

    def closest(self, n: int = 5) -> list[Outcome]:
        """Infeasible candidates that came nearest to the SLOs (smallest latency / SLO ratio)."""
        near = [o for o in self.outcomes if o.status == "slo_unmet" and math.isfinite(o.slo_ratio)]
        return sorted(near, key=lambda o: (o.slo_ratio, o.candidate.label))[:n]

    def as_dict(self) -> dict[str, Any]:
        w = self.winner
        return {"spec": self.spec.model_dump(mode="json"),
                "winner": w.as_dict() if w else None,
                "winner_metrics": self.winner_metrics,
                "outcomes": [o.as_dict() for o in self.outcomes],
                "pareto": [o.candidate.label for o in self.pareto],
                "closest": [o.candidate.label for o in self.closest()] if w is None else [],
                "stats": self.stats.__dict__}


# ---- the search --------------------------------------------------------------------------------------------
STEP_DOWN = math.log(2.5)  # no feasible rate yet and no incumbent: next try is rate / 2.5
STEP_UP = math.log(2.0)  # feasible up to the top of the bracket: next try is rate x 2


def replicas_at(spec: PlanSpec, k: int, tol: float) -> int:
    """Replicas a deployment needs when one replica's capacity is grid rate k."""
    return max(1, math.ceil(spec.rate_per_s / grid_rate(k, tol) - 1e-9))


def index_for_replicas(spec: PlanSpec, n: int, tol: float) -> int:
    """Smallest grid index whose rate needs at most n replicas (grid rate >= target / n): a candidate feasible
    there needs <= n replicas, infeasible there needs > n. These are the only rates the replica count
    depends on, so the count-phase search tests nothing else."""
    k = grid_index(spec.rate_per_s / n, tol)
    while replicas_at(spec, k, tol) > n:
        k += 1
    while replicas_at(spec, k - 1, tol) <= n:
        k -= 1
    return k


def _key(spec: PlanSpec, cand: Candidate, n: int) -> tuple[float, float, str]:
    """The ranking key of `cand` deployed as n replicas (objectives cost and gpus): lower is better; the same
    order as the final ranking (objective, the other of cost/GPUs, label), so pruning on it is exact."""
    gpus = n * cand.gpus
    usd = gpus * load_hardware(cand.hardware).price_usd_per_hour
    return (float(gpus), usd, cand.label) if spec.objective == "gpus" else (usd, float(gpus), cand.label)


def _n_cap(spec: PlanSpec, cand: Candidate, inc: tuple[float, float, str]) -> int:
    """Most replicas with which `cand` still ranks at or above the incumbent key (0: it cannot)."""
    unit = cand.gpus * (1.0 if spec.objective == "gpus" else load_hardware(cand.hardware).price_usd_per_hour)
    n = int(inc[0] / unit) + 1
    while n >= 1 and _key(spec, cand, n) > inc:
        n -= 1
    return n


@dataclass
class _Search:
    """Search state of one candidate over rate-grid indices: `lo` feasible, `hi` infeasible (simulated, or the
    analytical bracket while `hi_by_bound`). Count phase: only the replica count ceil(target / capacity) is
    sought, by testing the grid rates where it changes (`index_for_replicas`), and the search stops as soon as
    no rate inside (lo, hi) can change it. Refine phase (`refine`: --exhaustive, and the winner at the end):
    ordinary bisection until hi = lo + 1, i.e. the capacity to the tolerance."""

    cand: Candidate
    bounds: Bounds
    floor: int  # lowest grid index worth simulating
    ub: int | None  # grid index of the upper bracket (bound x slack); None: no finite bound
    lo: int | None = None
    hi: int | None = None
    hi_by_bound: bool = True
    points: dict[int, Point] = field(default_factory=dict)
    done: bool = False
    pruned: bool = False
    refine: bool = False

    def n_min(self, spec: PlanSpec, tol: float) -> int:
        """Fewest replicas still possible: capacity < grid rate hi, so capacity <= grid rate hi - 1."""
        return replicas_at(spec, self.hi - 1, tol) if self.hi is not None else 1

    def n_est(self, spec: PlanSpec, tol: float) -> int:
        """Best guess of the final count (search order): the proven count, else the analytical estimate."""
        if self.lo is not None:
            return replicas_at(spec, self.lo, tol)
        k = grid_index(self.bounds.capacity_est * START_FRACTION, tol)
        return max(self.n_min(spec, tol), replicas_at(spec, k, tol))

    def next_index(self, spec: PlanSpec, tol: float, n_cap: int | None) -> int | None:
        """The grid index to simulate next, or None (and `done`). `n_cap`: most replicas with which this
        candidate can still win (None = no incumbent or no pruning): a candidate with no feasible rate yet is
        tested right at that threshold, so one simulation either prunes it or makes it a contender."""
        if self.done:
            return None
        if self.lo is None:
            if self.hi is not None and not self.hi_by_bound and self.hi <= self.floor:  # infeasible even at the lowest rate worth having
                self.done = True
                return None
            if n_cap is not None:
                k = index_for_replicas(spec, n_cap, tol)
            elif self.hi is None or self.hi_by_bound:  # nothing simulated: start below the throughput bound
                k = index_for_replicas(spec, self.n_est(spec, tol), tol)
            else:
                down = max(1, math.ceil(STEP_DOWN / math.log1p(tol)))
                k = index_for_replicas(spec, replicas_at(spec, self.hi - down, tol), tol)
            return max(self.floor, k if self.hi is None else min(k, self.hi - 1))
        if self.refine:
            if self.hi is None:
                return self.lo + max(1, math.ceil(STEP_UP / math.log1p(tol)))
            if self.hi - self.lo <= 1:
                if self.hi_by_bound:  # the bracket's top is the bound's, never simulated: test it
                    return self.hi
                self.done = True
                return None
            return (self.lo + self.hi) // 2
        n_hi = replicas_at(spec, self.lo, tol)
        if n_hi == 1:  # one replica is enough: no higher capacity changes the count
            self.done = True
            return None
        if self.hi is None:
            n = n_hi // 2
        else:
            n_lo = replicas_at(spec, self.hi - 1, tol)
            if n_lo == n_hi:  # no rate inside (lo, hi) changes the count
                if self.hi_by_bound:
                    return self.hi
                self.done = True
                return None
            n = (n_lo + n_hi) // 2
        if n_cap is not None:
            n = min(n, n_cap)
        return index_for_replicas(spec, n, tol)

    def record(self, k: int, p: Point) -> None:
        # Proposals lie inside (lo, hi), or at hi while that is only the bound's bracket.
        self.points[k] = p
        if p.feasible:
            self.lo = k if self.lo is None else max(self.lo, k)
            if self.hi is not None and self.hi <= self.lo:  # feasible at the bound's bracket: it was no bound
                self.hi, self.hi_by_bound = None, False
        else:
            self.hi = k if (self.hi is None or self.hi_by_bound) else min(self.hi, k)
            self.hi_by_bound = False


def _point(spec: PlanSpec, rate: float, value: dict[str, Any]) -> Point:
    s = value["summary"]
    ttft, tpot = float(s["ttft_s"]["p99"]), float(s["tpot_s"]["p99"])
    why = []
    if s["stop_reason"] != "completed":
        why.append(f"overloaded ({s['stop_reason']})")
    elif s["saturated"]:
        why.append(f"saturated ({s['waiting_at_last_arrival']} requests still queued at the last arrival)")
    if s["requests_rejected"]:
        why.append(f"{s['requests_rejected']} requests rejected")
    if not ttft <= spec.slo_ttft_s:
        why.append(f"P99 TTFT {ttft:.3g} s > {spec.slo_ttft_s:g} s")
    if tpot > spec.slo_tpot_s:  # NaN (all one-token outputs) passes
        why.append(f"P99 TPOT {tpot * 1e3:.3g} ms > {spec.slo_tpot_s * 1e3:g} ms")
    return Point(rate, not why, ttft, tpot, "; ".join(why))


def _slo_ratio(spec: PlanSpec, p: Point) -> float:
    r = max(p.p99_ttft_s / spec.slo_ttft_s, (p.p99_tpot_s / spec.slo_tpot_s) if math.isfinite(p.p99_tpot_s) else 0)
    return r if math.isfinite(r) else math.inf


class _Runner:
    """Runs point configs through the cache and the executor, counting simulations."""

    def __init__(self, executor: Executor, cache: PointCache | None, stats: PlanStats) -> None:
        self.executor, self.cache, self.stats = executor, cache, stats

    def run(self, configs: list[SimConfig]) -> list[dict[str, Any]]:
        keys = [point_key(c) for c in configs] if self.cache is not None else [None] * len(configs)
        out: list[dict[str, Any] | None] = [None] * len(configs)
        todo: dict[str, list[int]] = {}
        for i, key in enumerate(keys):
            hit = self.cache.get(key) if (self.cache is not None and key is not None) else None
            if hit is not None:
                out[i] = hit
                self.stats.cache_hits += 1
            else:
                todo.setdefault(key or f"#{i}", []).append(i)
        order = list(todo)
        results = self.executor.map(evaluate_point, [configs[todo[k][0]] for k in order])
        for k, res in zip(order, results, strict=True):
            self.stats.simulations += 1
            self.stats.sim_wall_s += res.pop("wall_s", 0.0)
            if self.cache is not None and not k.startswith("#"):
                self.cache.put(k, res)
            for i in todo[k]:
                out[i] = res
        return out  # type: ignore[return-value]


def _objective_value(spec: PlanSpec, o: Outcome) -> tuple[float, ...]:
    if spec.objective == "gpus":
        return (o.gpus, o.usd_per_hour)
    if spec.objective == "energy":
        return (o.j_per_token, o.usd_per_hour)
    return (o.usd_per_hour, o.gpus)


def _deployment(spec: PlanSpec, cand: Candidate, capacity: float) -> tuple[int, float]:
    replicas = max(1, math.ceil(spec.rate_per_s / capacity - 1e-9))
    return replicas, replicas * cand.gpus * load_hardware(cand.hardware).price_usd_per_hour


def _lower_bound(spec: PlanSpec, s: _Search, tol: float) -> float:
    """Objective lower bound of a candidate still in the search: capacity <= grid rate hi - 1."""
    return _key(spec, s.cand, s.n_min(spec, tol))[0]


def _incumbent(spec: PlanSpec, searches: list[_Search], tol: float) -> tuple[float, float, str] | None:
    """The best ranking key among candidates with a feasible rate (an upper bound of the winner's key)."""
    best = None
    for s in searches:
        if s.lo is None or s.pruned:
            continue
        n = replicas_at(spec, s.lo, tol)
        if spec.max_gpus is not None and n * s.cand.gpus > spec.max_gpus:
            continue
        k = _key(spec, s.cand, n)
        best = k if best is None or k < best else best
    return best


ProgressFn = Callable[[int, int], None]


def plan(spec: PlanSpec, executor: Executor | None = None, cache: PointCache | None = None,
         progress: ProgressFn | None = None) -> PlanResult:
    """Answer a capacity-planning question. Same spec -> same result on any executor (every point depends only
    on its config and seed; the search advances in rounds whose decisions depend only on results)."""
    t0 = time.perf_counter()
    own = executor is None
    ex: Executor = executor if executor is not None else make_executor()
    stats = PlanStats(workers=ex.workers)
    try:
        return _plan(spec, ex, cache, progress, stats, t0)
    finally:
        if own:
            ex.close()


def resolve(spec: PlanSpec) -> tuple[PlanSpec, TraceStats]:
    """The spec with defaults that depend on the workload filled in (max_batched_tokens), and the statistics of
    the requests every point replays (lengths do not depend on the rate: same seed, time-scaled arrivals)."""
    wl = spec.workload
    probe_wl = wl if isinstance(wl, TraceWorkload) else workload_at(spec, 1.0, 1.0)
    probe_cfg = SimConfig.model_validate({"workload": probe_wl, "replicas": [{"model": "x", "hardware": "x"}]})
    probe = build_trace(probe_cfg.workload, np.random.default_rng(spec.seed))
    if isinstance(wl, TraceWorkload):
        probe = probe.head(spec.num_requests)
    if len(probe) < 2:
        raise PlannerError(f"the workload has {len(probe)} request(s); a plan needs at least 2")
    ts = TraceStats.of(probe)
    if isinstance(wl, TraceWorkload) and not (math.isfinite(ts.native_rate) and ts.native_rate > 0):
        raise PlannerError(f"trace {wl.path} has no arrival rate to scale (all arrivals at one instant)")
    if spec.max_batched_tokens is None:
        spec = spec.model_copy(update={"max_batched_tokens": max(8192, -(-ts.max_input // 1024) * 1024)})
    return spec, ts


def _plan(spec: PlanSpec, ex: Executor, cache: PointCache | None, progress: ProgressFn | None,
          stats: PlanStats, t0: float) -> PlanResult:
    spec, ts = resolve(spec)
    tol = spec.tolerance
    cands = candidates(spec)
    stats.candidates = len(cands)
    native = ts.native_rate
    runner = _Runner(ex, cache, stats)
    outcomes: dict[Candidate, Outcome] = {}
    searches: list[_Search] = []
    done_count = 0

    def tick() -> None:
        if progress is not None:
            progress(done_count, len(cands))

    min_rate = spec.rate_per_s / spec.max_replicas
    for c in cands:
        b = analytical_bounds(spec, c, ts)
        if b.status is None:
            floor_rate = min_rate
            if spec.max_gpus is not None:
                floor_rate = max(floor_rate, spec.rate_per_s / (spec.max_gpus // c.gpus))
            if b.capacity_ub * BOUND_SLACK < floor_rate:
                b = replace(b, status="over_budget", reason=(
                    f"at most {b.capacity_ub:.3g} req/s per replica (analytical bound): more than "
                    f"{spec.rate_per_s / floor_rate:.0f} replicas needed"))
        if b.status is not None:
            ratio = max(b.ttft_lb_s / spec.slo_ttft_s, b.tpot_lb_s / spec.slo_tpot_s) if b.status == "slo_unmet" \
                else math.nan
            outcomes[c] = Outcome(c, b.status, b.reason, capacity_ub=b.capacity_ub, slo_ratio=ratio)
            done_count += 1
            continue
        if math.isfinite(b.capacity_ub):
            ub = grid_index(b.capacity_ub * BOUND_SLACK, tol)
            searches.append(_Search(c, b, grid_index(floor_rate, tol), ub, hi=ub + 1))
        else:  # no bound: the search brackets the capacity by simulation alone
            searches.append(_Search(c, b, grid_index(floor_rate, tol), None, hi=None, hi_by_bound=False))
    tick()
    stats.simulated_candidates = len(searches)

    # Round by round: up to candidates_per_round live searches each propose one rate; all run at once; then the
    # incumbent (best key among feasible rates) prunes every search whose lower bound ranks below it.
    prune = not spec.exhaustive and spec.objective in ("cost", "gpus")
    if spec.exhaustive:
        for s in searches:
            s.refine = True

    def run_round(proposals: list[tuple[_Search, int]], extra: Sequence[SimConfig] = ()) -> list[dict[str, Any]]:
        stats.rounds += 1
        configs = [point_config(spec, s.cand, grid_rate(k, tol), native) for s, k in proposals]
        values = runner.run(configs + list(extra))
        for (s, k), value in zip(proposals, values, strict=False):
            s.record(k, _point(spec, grid_rate(k, tol), value))
        return values[len(proposals):]

    while True:
        inc = _incumbent(spec, searches, tol) if prune else None
        caps: dict[int, int | None] = {}
        for s in searches:
            if s.done or s.pruned:
                continue
            n_cap = _n_cap(spec, s.cand, inc) if inc is not None else None
            caps[id(s)] = n_cap
            if n_cap is not None and n_cap < s.n_min(spec, tol):  # n_cap is None exactly when inc is None
                s.pruned = True
        live = [s for s in searches if not s.done and not s.pruned]
        # Best first: the searches whose estimated deployment ranks best go first, a fixed number per round (not
        # tied to the worker count, so any executor takes the same path); the incumbent they produce prunes the
        # rest, most of them before or after a single simulation at their threshold rate.
        proposals: list[tuple[_Search, int]] = []
        for s in sorted(live, key=lambda s: (_key(spec, s.cand, s.n_est(spec, tol)),
                                             _key(spec, s.cand, s.n_min(spec, tol)))):
            if len(proposals) >= spec.candidates_per_round:
                break
            k = s.next_index(spec, tol, caps[id(s)])
            if k is not None:
                proposals.append((s, k))
        n_done = len(cands) - len(searches) + sum(1 for s in searches if s.done or s.pruned)
        if n_done != done_count:
            done_count = n_done
            tick()
        if not proposals:
            assert all(s.done or s.pruned for s in searches)
            break
        run_round(proposals)

    # Feasible candidates: replicas, cost, then one run of one replica at the deployment's per-replica load.
    feasible: list[tuple[_Search, int, float]] = []
    for s in searches:
        c = s.cand
        pts = tuple(s.points[k] for k in sorted(s.points))
        if s.pruned:
            lb = _lower_bound(spec, s, tol)
            outcomes[c] = Outcome(c, "pruned", "", capacity_ub=s.bounds.capacity_ub, points=pts, objective_lb=lb)
            continue
        if s.lo is None:
            worst = min(pts, key=lambda p: _slo_ratio(spec, p)) if pts else None
            floor = grid_rate(s.floor, tol)
            why = worst.why if worst else "no rate tried"
            outcomes[c] = Outcome(c, "slo_unmet", f"SLO unmet at every rate tried down to {floor:.3g} req/s "
                                  f"(best: {worst.rate_per_s:.3g} req/s: {why})" if worst else why,
                                  capacity_ub=s.bounds.capacity_ub, points=pts,
                                  slo_ratio=_slo_ratio(spec, worst) if worst else math.nan)
            continue
        cap = grid_rate(s.lo, tol)
        reps, usd = _deployment(spec, c, cap)
        if spec.max_gpus is not None and reps * c.gpus > spec.max_gpus:
            outcomes[c] = Outcome(c, "over_budget", f"needs {reps} replicas x {c.gpus} GPUs > max_gpus="
                                  f"{spec.max_gpus}", capacity_ub=s.bounds.capacity_ub, capacity_per_s=cap,
                                  points=pts)
            continue
        feasible.append((s, reps, usd))

    # The winner's capacity to the tolerance (count-phase searches stop once the count is known): its first
    # refinement step, the per-replica load runs and the routed deployment run go out in one round.
    def winner_of(items: list[tuple[_Search, int, float]]) -> tuple[_Search, int] | None:
        if not items:
            return None
        s, reps, _ = min(items, key=lambda t: _key(spec, t[0].cand, t[1]))
        return s, reps

    def refine_step(ws: _Search | None) -> list[tuple[_Search, int]]:
        if ws is None:
            return []
        ws.refine, ws.done = True, False
        k = ws.next_index(spec, tol, None)
        return [] if k is None else [(ws, k)]

    early = winner_of(feasible) if spec.objective != "energy" else None
    load_cfgs = [point_config(spec, s.cand, spec.rate_per_s / reps, native) for s, reps, _ in feasible]
    verify_cfgs = []
    if early is not None and spec.verify_winner:
        verify_cfgs = [point_config(spec, early[0].cand, spec.rate_per_s, native, count=early[1], with_slo=True)]
    winner_metrics = None
    step = refine_step(early[0] if early else None)
    if load_cfgs or step:
        extra = run_round(step, load_cfgs + verify_cfgs)
        loads, winner_metrics = extra[:len(load_cfgs)], (extra[-1]["summary"] if verify_cfgs else None)
    else:
        loads = []
    for (s, reps, usd), value in zip(feasible, loads, strict=True):
        c = s.cand
        summ = value["summary"]
        out_rate = spec.rate_per_s * ts.mean_output  # output tokens/s of the deployment
        outcomes[c] = Outcome(
            c, "feasible", "", capacity_ub=s.bounds.capacity_ub, capacity_per_s=grid_rate(s.lo, tol),  # type: ignore[arg-type]
            replicas=reps, gpus=reps * c.gpus, usd_per_hour=usd, usd_per_million_tokens=usd / 3600 / out_rate * 1e6,
            j_per_token=float(summ["energy_per_output_token_j"]), load_per_replica_s=spec.rate_per_s / reps,
            p99_ttft_s=float(summ["ttft_s"]["p99"]), p99_tpot_s=float(summ["tpot_s"]["p99"]))

    ranked = _rank(spec, [outcomes[c] for c in cands])
    ws = early[0] if early else None
    if ws is None and ranked and ranked[0].status == "feasible":  # objective energy: ranked by the load runs
        ws = next(s for s in searches if s.cand == ranked[0].candidate)
        step = refine_step(ws)
        if spec.verify_winner:
            verify_cfgs = [point_config(spec, ws.cand, spec.rate_per_s, native, count=ranked[0].replicas,
                                        with_slo=True)]
            winner_metrics = run_round(step, verify_cfgs)[0]["summary"]
        elif step:
            run_round(step)
    while ws is not None and (step := refine_step(ws)):
        run_round(step)
    # Points, capacity and the bracket's top for the table (the winner's capacity may just have been refined).
    final: dict[Candidate, Outcome] = {}
    for s in searches:
        o = outcomes[s.cand]
        if o.status in ("feasible", "over_budget"):
            o = replace(o, capacity_per_s=grid_rate(s.lo, tol),  # type: ignore[arg-type]
                        capacity_below_per_s=grid_rate(s.hi, tol) if s.hi is not None and not s.hi_by_bound
                        else math.inf)
        final[s.cand] = replace(o, points=tuple(s.points[k] for k in sorted(s.points)))
    ranked = [replace(o, points=final[o.candidate].points, capacity_per_s=final[o.candidate].capacity_per_s,
                      capacity_below_per_s=final[o.candidate].capacity_below_per_s)
              if o.candidate in final else o for o in ranked]
    by: dict[str, int] = {}
    for o in ranked:
        by[o.status] = by.get(o.status, 0) + 1
    stats.by_status = by
    stats.wall_s = time.perf_counter() - t0
    return PlanResult(spec, tuple(ranked), stats, winner_metrics)


def _rank(spec: PlanSpec, outs: list[Outcome]) -> list[Outcome]:
    feas = sorted((o for o in outs if o.status == "feasible"), key=lambda o: (*_objective_value(spec, o),
                                                                              o.candidate.label))
    w = feas[0] if feas else None
    order = {"pruned": 0, "slo_unmet": 1, "over_budget": 2, "does_not_fit": 3, "unsupported": 4, "invalid": 5}
    rest = sorted((o for o in outs if o.status != "feasible"),
                  key=lambda o: (order[o.status], o.objective_lb if o.status == "pruned" else
                                 (o.slo_ratio if math.isfinite(o.slo_ratio) else math.inf), o.candidate.label))
    ranked: list[Outcome] = []
    for i, o in enumerate(feas):
        gap = math.nan
        reason = ""
        if w is not None and o is not w:
            gap, reason = _gap(spec, o, w)
        dominated = any(q is not o and q.usd_per_hour <= o.usd_per_hour and q.p99_ttft_s <= o.p99_ttft_s
                        and q.p99_tpot_s <= o.p99_tpot_s and (q.usd_per_hour, q.p99_ttft_s, q.p99_tpot_s)
                        != (o.usd_per_hour, o.p99_ttft_s, o.p99_tpot_s) for q in feas)
        ranked.append(replace(o, rank=i + 1, objective_gap_pct=gap, reason=reason, pareto=not dominated))
    for o in rest:
        if o.status == "pruned" and w is not None:
            lb = o.objective_lb
            if lb <= (w.usd_per_hour if spec.objective == "cost" else w.gpus) * (1 + 1e-9):
                o = replace(o, objective_gap_pct=0.0, reason=(
                    "at best ties the winner's " + ("cost" if spec.objective == "cost" else "GPU count")
                    + " and ranks below it on the tie-break (GPUs/cost, then name); search stopped there"))
            elif spec.objective == "cost":
                g = 100 * (lb / w.usd_per_hour - 1)
                o = replace(o, objective_gap_pct=g, reason=(
                    f"at least {g:.0f}% more expensive than the winner (${lb:.2f}/h or more) even at the capacity "
                    "its simulations allow; search stopped there"))
            else:
                o = replace(o, objective_gap_pct=100 * (lb / w.gpus - 1), reason=(
                    f"needs at least {lb:.0f} GPUs vs the winner's {w.gpus} even at the capacity its simulations "
                    "allow; search stopped there"))
        ranked.append(o)
    return ranked


def _gap(spec: PlanSpec, o: Outcome, w: Outcome) -> tuple[float, str]:
    if spec.objective == "gpus":
        if o.gpus > w.gpus:
            return 100 * (o.gpus / w.gpus - 1), f"{o.gpus - w.gpus} more GPUs ({o.gpus} vs {w.gpus})"
        return 100 * (o.usd_per_hour / w.usd_per_hour - 1), (
            f"same {o.gpus} GPUs, {100 * (o.usd_per_hour / w.usd_per_hour - 1):.0f}% more expensive")
    if spec.objective == "energy":
        g = 100 * (o.j_per_token / w.j_per_token - 1)
        return g, f"{g:.0f}% more energy per output token"
    g = 100 * (o.usd_per_hour / w.usd_per_hour - 1)
    if g <= 1e-9:
        return g, "same cost; ranked below by GPU count and name"
    return g, f"{g:.0f}% more expensive (${o.usd_per_hour:.2f}/h vs ${w.usd_per_hour:.2f}/h)"


__all__ = [
    "Bounds", "Candidate", "DaskExecutor", "Executor", "Outcome", "PlanResult", "PlanSpec", "PlanStats",
    "PlannerError", "Point", "ProcessExecutor", "SerialExecutor", "TraceStats", "analytical_bounds", "candidates",
    "evaluate_point", "grid_index", "grid_rate", "make_executor", "plan", "point_config", "quant_for", "resolve",
    "workload_at",
]
