"""SimConfig: the frozen, TOML round-trippable description of one simulation run (workload, replica groups,
scheduler and router policies as discriminated unions on `kind`, SLOs, seed, overload guards)."""

from __future__ import annotations

import math
import tomllib
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from roofsim.hardware_specs.errors import InputError
from roofsim.model.cost import Calibration
from roofsim.model.spec import QuantSpec
from roofsim.model.techniques import EarlyExitConfig, SpeculativeConfig
from roofsim.simulator.workload import WorkloadConfig

_FROZEN = ConfigDict(frozen=True, extra="forbid")
PosFloat = Annotated[float, Field(gt=0, allow_inf_nan=False)]


# ---- scheduler policies ---------------------------------------------------------------------------------
class _SchedBase(BaseModel):
    model_config = _FROZEN
    max_num_seqs: int = Field(256, ge=1, description="most sequences in one iteration (vLLM max_num_seqs)")
    max_batched_tokens: int = Field(8192, ge=1, description="most tokens in one iteration")
    preemption: Literal["recompute", "swap"] = "recompute"
    watermark_fraction: float = Field(0.01, ge=0, lt=1, description="KV blocks kept free at admission (vLLM)")


class StaticScheduler(_SchedBase):
    """FasterTransformer-style: a batch is admitted when the replica is empty and runs until all finish."""

    kind: Literal["static"] = "static"


class VLLMScheduler(_SchedBase):
    """vLLM (v0) continuous batching, prefill-prioritising: an iteration is prefills of waiting requests,
    or one decode step of every running request."""

    kind: Literal["vllm"] = "vllm"


class OrcaScheduler(_SchedBase):
    """Orca iteration-level batching: every iteration decodes all running requests and adds whole prompts."""

    kind: Literal["orca"] = "orca"


class SarathiScheduler(_SchedBase):
    """Sarathi-Serve stall-free chunked prefill: decodes first, prefill chunks fill the rest of `chunk_size`."""

    kind: Literal["sarathi"] = "sarathi"
    chunk_size: int = Field(512, ge=1, description="token budget of one iteration")


class SJFScheduler(_SchedBase):
    """vLLM-style batching with the waiting queue ordered by predicted output length (shortest first).
    Prediction = true length x exp(sigma * N(0, 1)) (learning-to-rank schedulers, predictor error sigma)."""

    kind: Literal["sjf"] = "sjf"
    predictor_sigma: float = Field(0.0, ge=0, allow_inf_nan=False)


SchedulerConfig = Annotated[
    StaticScheduler | VLLMScheduler | OrcaScheduler | SarathiScheduler | SJFScheduler,
    Field(discriminator="kind"),
]
SCHEDULER_KINDS = ("static", "vllm", "orca", "sarathi", "sjf")


# ---- routers --------------------------------------------------------------------------------------------
class RoundRobinRouter(BaseModel):
    model_config = _FROZEN
    kind: Literal["round_robin"] = "round_robin"


class LeastOutstandingRouter(BaseModel):
    """Replica with the fewest requests waiting or running (ties: lowest index)."""

    model_config = _FROZEN
    kind: Literal["least_outstanding"] = "least_outstanding"


class LeastKVRouter(BaseModel):
    """Replica with the smallest fraction of KV blocks in use plus blocks its queue will need."""

    model_config = _FROZEN
    kind: Literal["least_kv"] = "least_kv"


class PowerOfTwoRouter(BaseModel):
    """Two distinct replicas drawn from the run's Generator; the one with fewer outstanding requests wins."""

    model_config = _FROZEN
    kind: Literal["power_of_two"] = "power_of_two"


RouterConfig = Annotated[
    RoundRobinRouter | LeastOutstandingRouter | LeastKVRouter | PowerOfTwoRouter, Field(discriminator="kind")
]


# ---- replicas, SLOs, the run ----------------------------------------------------------------------------
class ReplicaGroup(BaseModel):
    """`count` identical replicas, each a tp x pp group of GPUs serving one model copy."""

    model_config = _FROZEN
    model: str = Field(description="model preset, HF id or config.json path")
    hardware: str = Field(description="hardware id/alias or .toml path")
    tp: int = Field(1, ge=1)
    pp: int = Field(1, ge=1)
    ep: int = Field(1, ge=1)
    count: int = Field(1, ge=1)
    quant: QuantSpec = QuantSpec()
    scheduler: SchedulerConfig = VLLMScheduler()
    gpu_memory_utilization: float = Field(0.9, gt=0, le=1)
    block_size: int = Field(16, ge=1, description="KV-cache block (page) size, tokens")
    calibration: Calibration | None = None
    speculative: SpeculativeConfig | None = Field(None, description="speculative decoding (docs/techniques.md)")
    early_exit: EarlyExitConfig | None = Field(None, description="early exit / layer skipping (docs/techniques.md)")
    prefix_caching: bool = Field(False, description="automatic prefix caching: prompt blocks whose hash ids are "
                                 "cached skip prefill (per-replica LRU over the KV pool; docs/simulator.md)")
    frontend_s_per_request: float = Field(
        0.0, ge=0, allow_inf_nan=False,
        description="serialized per-request front-end time (API server: accept, tokenize, hand to the engine) "
                    "before a request can be scheduled; one queue per replica (docs/simulator.md)")

    @model_validator(mode="after")
    def _check_techniques(self) -> ReplicaGroup:
        if self.speculative is not None and self.early_exit is not None:
            raise ValueError("speculative and early_exit cannot both be set; for early-exit drafting use "
                             "speculative.drafter.kind = 'layerskip'")
        return self


class SLO(BaseModel):
    """Per-request latency targets for goodput; an unset target is not checked."""

    model_config = _FROZEN
    ttft_s: PosFloat | None = None
    tpot_s: PosFloat | None = None


class SimConfig(BaseModel):
    """One simulation run. Same config (including seed) -> bit-identical SimResult."""

    model_config = _FROZEN
    workload: WorkloadConfig
    replicas: tuple[ReplicaGroup, ...] = Field(min_length=1)
    router: RouterConfig = RoundRobinRouter()
    seed: int = 0
    slo: SLO = SLO()
    max_sim_time_s: PosFloat | None = Field(
        None, description="stop the simulated clock here; None = max(4 x last arrival, last arrival + 3600 s)")
    max_waiting_requests: int | None = Field(
        None, ge=1, description="overload guard: stop when this many requests wait in one replica")
    stepwise: bool = Field(False, description="yield to simpy after every iteration (slow; for checking)")

    @model_validator(mode="after")
    def _check(self) -> SimConfig:
        if self.max_sim_time_s is not None and not math.isfinite(self.max_sim_time_s):
            raise ValueError(f"max_sim_time_s={self.max_sim_time_s} must be finite")
        return self

    @classmethod
    def from_toml(cls, path: str | Path) -> SimConfig:
        """Read a run file; InputError naming the file and every bad field."""
        path = Path(path)
        try:
            data = tomllib.loads(path.read_text(encoding="utf-8"))
        except tomllib.TOMLDecodeError as e:
            raise InputError(f"{path}: not valid TOML: {e}") from None
        return cls.from_dict(data, str(path))

    @classmethod
    def from_dict(cls, data: dict[str, Any], source: str = "<dict>") -> SimConfig:
        try:
            return cls.model_validate(data)
        except ValidationError as err:
            lines = [f"{source}: invalid simulation config:"]
            for e in err.errors():
                loc = ".".join(str(p) for p in e["loc"]) or "(root)"
                lines.append(f"  field {loc}: {e['msg']}")
            raise InputError("\n".join(lines)) from None

    def to_toml(self) -> str:
        """TOML text that from_toml reads back to an equal config (unset optional fields are omitted)."""
        return dumps_toml(self.model_dump(mode="json", exclude_none=True))


# ---- a small TOML writer (tables, arrays of tables, scalars, arrays of scalars) -------------------------
def _key(k: str) -> str:
    return k if k.replace("_", "").replace("-", "").isalnum() else '"' + k.replace('"', '\\"') + '"'


def _scalar(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int):
        return str(v)
    if isinstance(v, float):
        if not math.isfinite(v):
            return "inf" if v > 0 else ("-inf" if v < 0 else "nan")
        return repr(v)
    if isinstance(v, str):
        return '"' + v.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n") + '"'
    if isinstance(v, list | tuple):
        return "[" + ", ".join(_scalar(x) for x in v) + "]"
    raise ValueError(f"cannot write {type(v).__name__} value {v!r} to TOML")


def dumps_toml(data: dict[str, Any], prefix: str = "") -> str:
    """Serialise nested dicts (tables), lists of dicts (arrays of tables) and scalars."""
    head: list[str] = []
    tail: list[str] = []
    for k, v in data.items():
        name = f"{prefix}.{_key(k)}" if prefix else _key(k)
        if isinstance(v, dict):
            tail.append(f"\n[{name}]\n" + dumps_toml(v, name))
        elif isinstance(v, list | tuple) and v and all(isinstance(x, dict) for x in v):
            for item in v:
                tail.append(f"\n[[{name}]]\n" + dumps_toml(item, name))
        else:
            head.append(f"{_key(k)} = {_scalar(v)}")
    return "\n".join(head) + ("\n" if head else "") + "".join(tail)


__all__ = [
    "SCHEDULER_KINDS", "LeastKVRouter", "LeastOutstandingRouter", "OrcaScheduler", "PowerOfTwoRouter",
    "ReplicaGroup", "RoundRobinRouter", "RouterConfig", "SLO", "SarathiScheduler", "SJFScheduler",
    "SchedulerConfig", "SimConfig", "StaticScheduler", "VLLMScheduler", "dumps_toml",
]
