"""What a capacity plan searches: the question (PlanSpec: candidate space, traffic, SLOs, objective) and the
candidate replica configurations it expands to."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, model_validator

from roofsim.hardware_specs.catalog import load_hardware
from roofsim.hardware_specs.errors import RoofsimError
from roofsim.model.cost import Calibration
from roofsim.model.loader import load_checkpoint_quant, load_model
from roofsim.model.quant import quant_for, resolve_quant
from roofsim.model.spec import QuantSpec
from roofsim.simulator.config import SCHEDULER_KINDS, Degree, SchedulerConfig
from roofsim.simulator.engines import DEFAULT_ENGINE, engine_profile, engine_row, needs_model
from roofsim.simulator.limits import MAX_PARALLEL, MAX_REPLICAS, limited
from roofsim.simulator.schedulers import Scheduler, make_scheduler
from roofsim.simulator.workload import (
    MAX_TOKENS,
    ClosedLoopArrivals,
    OfflineArrivals,
    Rate,
    Requests,
    SyntheticWorkload,
    WorkloadConfig,
    resolve_workload,
)

Objective = Literal["cost", "gpus", "energy"]
Status = Literal["feasible", "pruned", "slo_unmet", "over_budget", "does_not_fit", "unsupported", "invalid"]
_FROZEN = ConfigDict(frozen=True, extra="forbid")
_SCHEDULER_CONFIG: TypeAdapter[Any] = TypeAdapter(SchedulerConfig)


class PlannerError(RoofsimError):
    """A plan that cannot run: bad search space, unreachable cluster."""


class PlanSpec(BaseModel):
    """A capacity-planning question: the candidate space, the traffic, the SLOs and what to minimise."""

    model_config = _FROZEN
    model: str
    workload: WorkloadConfig
    rate_per_s: Rate = Field(description="target request rate of the deployment")
    slo_ttft_s: float = Field(gt=0, allow_inf_nan=False, description="P99 TTFT target")
    slo_tpot_s: float = Field(gt=0, allow_inf_nan=False, description="P99 TPOT target")
    # (left out of dumps when unset, so plans without a confidence dump as before)
    slo_confidence: float | None = Field(None, gt=0, lt=1, exclude_if=lambda v: v is None, description=(
        "require the SLOs to hold with this probability over the kernel error models (planning.risk; front ends "
        "run it after the plan): None = the median plan"))
    risk_members: int | None = Field(None, ge=2, le=1024, exclude_if=lambda v: v is None, description=(
        "ensemble members per deployment judged by risk (None: planning.risk.DEFAULT_RISK_MEMBERS, 16)"))
    hardware: tuple[str, ...] = Field(("h100-sxm",), min_length=1)
    tp: tuple[Degree, ...] = Field((1, 2, 4, 8), min_length=1)
    pp: tuple[Degree, ...] = Field((1,), min_length=1)
    attn_dp: tuple[Degree, ...] = Field((1, 2, 4, 8), min_length=1, description=(
        "attention data-parallel ranks per replica to try (ReplicaGroup.attn_dp; each rank tp x pp GPUs, the "
        "experts expert-parallel over all attn_dp x tp GPUs of a stage). Only a mixture-of-experts model gets "
        "values > 1, on ranks of the smallest tp of the space, and only layouts within the GPU budget: max_gpus, "
        "else the largest tp x pp of the space (attn_dp_layouts)"))
    weight_dtypes: tuple[str, ...] = Field(min_length=1, description=(
        "weight dtypes to try; 'checkpoint' = the checkpoint's own format (its scales, activations and KV as "
        "stated, 16-bit activations on a GPU without its format). Absent: ('checkpoint',) for a quantised "
        "checkpoint, else ('bf16',)"))
    kv_dtypes: tuple[str, ...] = Field(("auto",), min_length=1, description="'auto' = bf16 (16-bit activations)")
    engine: str | None = Field(DEFAULT_ENGINE, description=(
        "serving engine NAME[==VERSION] (docs/engines.md): sets each candidate's scheduler kind, max_batch, token "
        "budget, chunk size and gpu_memory_utilization for its GPU; fields set explicitly here win. Default: the "
        "newest vLLM (V1), as `simulate`; None = this spec's own fields (schedulers, max_batch, ...)"))
    schedulers: tuple[str, ...] = Field(("vllm",), min_length=1)
    max_batch: tuple[limited(int, "MAX_BATCH_SEQS", ge=1), ...] = Field(  # type: ignore[valid-type]
        (256,), min_length=1, description="max_num_seqs values")
    # JSON objects for the ReplicaGroup field `speculative` (None = off); passed through to SimConfig unchanged.
    speculative: tuple[str | None, ...] = (None,)
    max_batched_tokens: int | None = Field(None, ge=1, le=MAX_TOKENS, description=(
        "token budget of one iteration; None = max(8192, longest prompt rounded up to 1024): schedulers that "
        "do not chunk prompts reject longer ones, vLLM likewise sizes it from the context length"))
    chunk_size: int = Field(512, ge=1, le=MAX_TOKENS, description="Sarathi token budget")
    gpu_memory_utilization: float = Field(0.9, gt=0, le=1)
    objective: Objective = "cost"
    num_requests: Requests | None = Field(None, ge=10, description=(
        "requests per simulated point; None = the planner chooses per point: from the candidate's concurrency "
        "(Little's law), doubled until the run is steady and its verdict stable (planning/length.py), at most "
        "MAX_PLAN_REQUESTS. A given length is used as is, and the plan says where it was too short to be steady"))
    seed: limited(int, "MAX_SEED", ge=0) = 0  # type: ignore[valid-type]
    tolerance: float = Field(0.05, gt=0, le=1, description="relative bisection tolerance of the capacity")
    max_gpus: int | None = Field(None, ge=1, le=MAX_REPLICAS * MAX_PARALLEL,
                                 description="GPU budget of the deployment")
    max_replicas: limited(int, "MAX_REPLICAS", ge=1) = Field(  # type: ignore[valid-type]
        256, description="search no capacity below rate_per_s / max_replicas")
    candidates_per_round: int = Field(8, ge=1, description=(
        "searches advanced per round, cheapest lower bound first; more = more parallelism, less pruning"))
    exhaustive: bool = Field(False, description="simulate every candidate (no cost-bound pruning)")
    verify_winner: bool = Field(True, description="simulate the winning deployment (all replicas, routed)")
    calibrations: dict[str, Calibration] = Field(default_factory=dict, description=(
        "cost-model calibration per hardware catalog id; a GPU not listed uses the model defaults. The front ends "
        "(roofsim plan, the API, the dashboard) fill it with each GPU's shipped profile, the one calibration rule "
        "(validation.profiles.resolve_plan_calibrations)"))

    @model_validator(mode="before")
    @classmethod
    def _checkpoint_weights(cls, data: Any) -> Any:
        """No weight_dtypes: the checkpoint's own format when it is quantised, else bf16; 'checkpoint' of an
        unquantised checkpoint is bf16 (so its candidates keep their bf16 labels)."""
        if not isinstance(data, dict):
            return data
        wanted = data.get("weight_dtypes")
        if wanted is None or "checkpoint" in wanted:
            try:
                quantised = load_checkpoint_quant(data["model"]) is not None
            except (KeyError, TypeError, ValueError, OSError):  # an unknown model fails later, with its own message
                quantised = False
            own = "checkpoint" if quantised else "bf16"
            wanted = (own,) if wanted is None else tuple(dict.fromkeys(own if w == "checkpoint" else w
                                                                       for w in wanted))
            data = {**data, "weight_dtypes": wanted}
        return data

    @model_validator(mode="after")
    def _check(self) -> PlanSpec:
        for name in ("tp", "pp", "attn_dp", "max_batch"):
            bad = [v for v in getattr(self, name) if v < 1]
            if bad:
                raise ValueError(f"{name}={bad[0]} must be >= 1")
        if self.engine is not None:
            engine_row(self.engine)  # an unknown engine or version fails here, naming the known ones
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


@dataclass(frozen=True)
class Candidate:
    """One replica configuration of the search space. `max_batch` and the token budget are per attention rank
    (an engine's --max-num-seqs / --max-num-batched-tokens are per data-parallel rank): the replica's are
    attn_dp times them (`seqs`, `tokens`)."""

    hardware: str
    tp: int
    pp: int
    weight_dtype: str
    kv_dtype: str
    scheduler: str
    max_batch: int
    speculative: str | None = None
    # set from PlanSpec.engine for this GPU (None: the PlanSpec's own value)
    engine: str | None = None
    max_batched_tokens: int | None = None
    chunk_size: int | None = None
    gpu_memory_utilization: float | None = None
    attn_dp: int = 1
    ep: int = 1

    @property
    def gpus(self) -> int:
        return self.attn_dp * self.tp * self.pp

    @property
    def seqs(self) -> int:
        """The replica's max_num_seqs: max_batch on each of its attention ranks."""
        return self.attn_dp * self.max_batch

    @property
    def layout(self) -> str:
        """tp2, or dp4 x tp1 for attention data parallelism (pp appended when > 1)."""
        dp = f"dp{self.attn_dp} x " if self.attn_dp > 1 else ""
        return f"{dp}tp{self.tp}" + (f" pp{self.pp}" if self.pp > 1 else "")

    @property
    def label(self) -> str:
        kv = "" if self.kv_dtype == "auto" else f"/kv-{self.kv_dtype}"
        spec = "" if self.speculative is None else f" spec={self.speculative}"
        eng = f" {self.engine}:" if self.engine else ""
        return (f"{self.hardware} {self.layout}"
                + f" {self.weight_dtype}{kv}{eng} {self.scheduler} b{self.max_batch}{spec}")

    def tokens(self, spec: PlanSpec) -> int:
        """The replica's iteration token budget: its engine's, else the PlanSpec's resolved one, on each
        attention rank."""
        n = self.max_batched_tokens if self.max_batched_tokens is not None else spec.max_batched_tokens
        assert n is not None, "resolved by plan()"
        return self.attn_dp * n

    def memory_utilization(self, spec: PlanSpec) -> float:
        return self.gpu_memory_utilization if self.gpu_memory_utilization is not None else spec.gpu_memory_utilization

    def scheduler_config(self, spec: PlanSpec) -> dict[str, Any]:
        """The `scheduler` table of this candidate's replica group."""
        sched: dict[str, Any] = {"kind": self.scheduler, "max_num_seqs": self.seqs,
                                 "max_batched_tokens": self.tokens(spec)}
        if self.scheduler == "sarathi":
            sched["chunk_size"] = self.attn_dp * (self.chunk_size if self.chunk_size is not None else spec.chunk_size)
        return sched

    def scheduler_policy(self, spec: PlanSpec) -> Scheduler:
        """The scheduler implementation this candidate's replicas run (its capacity bound, whether it chunks)."""
        return make_scheduler(_SCHEDULER_CONFIG.validate_python(self.scheduler_config(spec)))

    def quant(self, spec: PlanSpec) -> QuantSpec:
        """The formats this candidate runs in: the checkpoint's (over `kv_dtype`, on this hardware) for weight
        dtype 'checkpoint', else quant_for(weight_dtype, kv_dtype)."""
        if self.weight_dtype == "checkpoint":
            return resolve_quant(load_checkpoint_quant(spec.model), None, self.kv_dtype,
                                 load_hardware(self.hardware))[0]
        return quant_for(self.weight_dtype, self.kv_dtype)

    def group(self, spec: PlanSpec, count: int = 1) -> dict[str, Any]:
        g: dict[str, Any] = {"model": spec.model, "hardware": self.hardware, "tp": self.tp, "pp": self.pp,
                             "count": count, "quant": self.quant(spec).model_dump(),
                             "scheduler": self.scheduler_config(spec),
                             "gpu_memory_utilization": self.memory_utilization(spec)}
        if self.engine is not None:
            g["engine"] = self.engine  # fills what the candidate leaves open (prefix caching)
        if self.hardware in spec.calibrations:
            g["calibration"] = spec.calibrations[self.hardware]
        if self.speculative is not None:
            g["speculative"] = json.loads(self.speculative)
        if self.attn_dp > 1:
            g.update(attn_dp=self.attn_dp, ep=self.ep)
        return g

    def as_dict(self) -> dict[str, Any]:
        d = {"hardware": self.hardware, "tp": self.tp, "pp": self.pp, "weight_dtype": self.weight_dtype,
             "kv_dtype": self.kv_dtype, "scheduler": self.scheduler, "max_batch": self.max_batch,
             "speculative": self.speculative, "gpus": self.gpus, "label": self.label}
        if self.attn_dp > 1:
            d.update(attn_dp=self.attn_dp, ep=self.ep)
        if self.engine is not None:
            d.update(engine=self.engine, max_batched_tokens=self.max_batched_tokens, chunk_size=self.chunk_size,
                     gpu_memory_utilization=self.gpu_memory_utilization)
        return d


def candidates(spec: PlanSpec) -> list[Candidate]:
    """Every combination of the space, in a fixed order (hardware, weights, kv, tp, pp, attn_dp, scheduler, batch,
    spec); hardware names are resolved to catalog ids (UnknownNameError with close names for a typo)."""
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
                        eng, schedulers, batches = _engine_settings(spec, hw, tp * pp)
                        for dp, ep in attn_dp_layouts(spec, tp, pp):
                            for sch in schedulers:
                                for mb in batches:
                                    for sp in dict.fromkeys(spec.speculative):
                                        if dp == 1 or sp is None:  # attn_dp with speculation is not modelled
                                            out.append(Candidate(hw, tp, pp, wd, kv, sch, mb, sp, **eng,
                                                                 attn_dp=dp, ep=ep))
    return out


def attn_dp_layouts(spec: PlanSpec, tp: int, pp: int) -> list[tuple[int, int]]:
    """(attn_dp, ep) layouts of a tp x pp rank: (1, 1), and for a mixture-of-experts model with ranks of the
    space's smallest tp (tp 1 by default: TensorRT-LLM's attention DP and SGLang's dp-attention at dp = tp run one
    GPU per rank; larger ranks would add long runs of big replicas for little) each attn_dp > 1 of the space within
    the GPU budget (max_gpus, else the largest tp x pp of the space, so the search covers the same replica sizes),
    with the experts expert-parallel over all attn_dp x tp GPUs of a stage (vLLM --enable-expert-parallel:
    EP = DP x TP), kept only where that ep divides the experts."""
    out = [(1, 1)]
    moe = load_model(spec.model).moe
    if moe is None or tp != min(spec.tp):
        return out
    budget = spec.max_gpus if spec.max_gpus is not None else max(spec.tp) * max(spec.pp)
    for dp in sorted(set(spec.attn_dp) - {1}):
        if dp * tp * pp <= budget and moe.num_experts % (dp * tp) == 0:
            out.append((dp, dp * tp))
    return out


def _engine_settings(spec: PlanSpec, hw: str, gpus: int) -> tuple[dict[str, Any], list[str], list[int]]:
    """(Candidate engine fields, scheduler kinds, max_batch values) of one GPU and replica size: PlanSpec.engine's
    profile (simulator/engines.py) under the PlanSpec fields the user set explicitly."""
    given = spec.model_fields_set
    schedulers = list(dict.fromkeys(spec.schedulers))
    batches = sorted(set(spec.max_batch))
    if spec.engine is None:
        return {}, schedulers, batches
    max_len = None
    if needs_model(spec.engine):
        max_len = load_model(spec.model).max_context_tokens
    prof = engine_profile(spec.engine, hw, max_model_len=max_len, gpus=gpus)
    eng = {"engine": spec.engine,
           "max_batched_tokens": spec.max_batched_tokens if "max_batched_tokens" in given else prof.max_batched_tokens,
           "chunk_size": spec.chunk_size if "chunk_size" in given or prof.chunk_size is None else prof.chunk_size,
           "gpu_memory_utilization": (spec.gpu_memory_utilization if "gpu_memory_utilization" in given
                                      else prof.gpu_memory_utilization)}
    return (eng, schedulers if "schedulers" in given else [prof.scheduler],
            batches if "max_batch" in given else [prof.max_num_seqs])


__all__ = ["Candidate", "Objective", "PlanSpec", "PlannerError", "Status", "attn_dp_layouts", "candidates",
           "quant_for"]
