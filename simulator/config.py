"""SimConfig: the frozen, TOML round-trippable description of one simulation run (workload, replica groups,
scheduler and router policies as discriminated unions on `kind`, SLOs, seed, overload guards)."""

from __future__ import annotations

import copy
import tomllib
import types
from collections.abc import Sequence
from datetime import date, time
from pathlib import Path
from typing import Annotated, Any, Literal, Union, get_args, get_origin

import tomli_w
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from roofsim.hardware_specs.errors import InputError, RoofsimError
from roofsim.hardware_specs.loading import load_toml_file
from roofsim.model.cost import Calibration
from roofsim.model.graph import AttnPolicy
from roofsim.model.quant import ACTIVATION_DTYPES, KV_DTYPES, WEIGHT_DTYPES
from roofsim.model.spec import QuantSpec
from roofsim.model.techniques import Acceptance, Drafter, EarlyExitConfig, ExitDistribution, SpeculativeConfig
from roofsim.simulator.engines import (
    DEFAULT_MAX_BATCHED_TOKENS,
    ENGINE_GROUP_FIELDS,
    VLLM_CHUNKED_PREFILL_TOKENS,
    VLLM_MAX_NUM_SEQS,
    EngineProfile,
    engine_profile,
    needs_model,
)
from roofsim.simulator.limits import MAX_REPLICAS, exceeds, limited
from roofsim.simulator.sessions import SessionWorkload
from roofsim.simulator.workload import (
    MAX_TOKENS,
    Arrival,
    Lengths,
    NamedWorkload,
    NonNegSeconds,
    Requests,
    Seconds,
    SyntheticWorkload,
    TraceWorkload,
)

_FROZEN = ConfigDict(frozen=True, extra="forbid")
PosFloat = Annotated[float, Field(gt=0, allow_inf_nan=False)]
Degree = limited(int, "MAX_PARALLEL", ge=1)


# ---- scheduler policies ---------------------------------------------------------------------------------
class _SchedBase(BaseModel):
    model_config = _FROZEN
    max_num_seqs: limited(int, "MAX_BATCH_SEQS", ge=1) = Field(  # type: ignore[valid-type]
        VLLM_MAX_NUM_SEQS, description="most sequences in one iteration (vLLM max_num_seqs)")
    max_batched_tokens: int = Field(DEFAULT_MAX_BATCHED_TOKENS, ge=1, le=MAX_TOKENS,
                                    description="most tokens in one iteration")
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
    overlap: bool = Field(False, description=(
        "overlap scheduler (TensorRT-LLM 1.x PyTorch backend default): the next iteration is formed while the "
        "current one runs, so a request that arrives while the engine is busy joins one iteration later"))
    no_evict: bool = Field(False, description=(
        "GUARANTEED_NO_EVICT capacity policy (TensorRT-LLM's default): a request is admitted only while the KV "
        "pool holds every running request's prompt plus its whole output and this one's too, so none is ever "
        "preempted (the request's output length stands for its max_tokens)"))


class SarathiScheduler(_SchedBase):
    """Sarathi-Serve stall-free chunked prefill: decodes first, prefill chunks fill the rest of `chunk_size`."""

    kind: Literal["sarathi"] = "sarathi"
    chunk_size: int = Field(VLLM_CHUNKED_PREFILL_TOKENS, ge=1, le=MAX_TOKENS,
                            description="token budget of one iteration")


class SJFScheduler(_SchedBase):
    """vLLM-style batching with the waiting queue ordered by predicted output length (shortest first).
    Prediction = true length x exp(sigma * N(0, 1)) (learning-to-rank schedulers, predictor error sigma)."""

    kind: Literal["sjf"] = "sjf"
    predictor_sigma: float = Field(0.0, ge=0, allow_inf_nan=False)


SchedulerConfig = Annotated[
    StaticScheduler | VLLMScheduler | OrcaScheduler | SarathiScheduler | SJFScheduler,
    Field(discriminator="kind"),
]


# ---- routers --------------------------------------------------------------------------------------------
class _Router(BaseModel):
    model_config = _FROZEN


class RoundRobinRouter(_Router):
    kind: Literal["round_robin"] = "round_robin"


class LeastOutstandingRouter(_Router):
    """Replica with the fewest requests waiting or running (ties: lowest index)."""

    kind: Literal["least_outstanding"] = "least_outstanding"


class LeastKVRouter(_Router):
    """Replica with the smallest fraction of KV blocks in use plus blocks its queue will need."""

    kind: Literal["least_kv"] = "least_kv"


class PowerOfTwoRouter(_Router):
    """Two distinct replicas drawn from the run's Generator; the one with fewer outstanding requests wins."""

    kind: Literal["power_of_two"] = "power_of_two"


class PrefixAwareRouter(_Router):
    """Cache-aware routing (SGLang router's cache_aware policy, sgl-project/sglang sgl-router
    src/policies/cache_aware.rs): when the load is imbalanced -- outstanding requests max - min >
    `balance_abs_threshold` and max > min x `balance_rel_threshold` -- the least-loaded replica; otherwise the
    replica whose prefix cache (any tier) holds the longest prefix of the prompt, if that covers more than
    `cache_threshold` of it; otherwise the least-loaded replica. The match is read from the replicas' caches
    (llm-d's precise-prefix-cache-scorer view, fed by the engines' KV events). Defaults: SGLang router's
    (sglang_router router_args.py: cache_threshold 0.3, balance_abs_threshold 64, balance_rel_threshold 1.5)."""

    kind: Literal["prefix_aware"] = "prefix_aware"
    cache_threshold: float = Field(0.3, ge=0, le=1, description="least matched fraction of the prompt")
    balance_abs_threshold: int = Field(64, ge=0, description="imbalance: max - min outstanding above this ...")
    balance_rel_threshold: float = Field(1.5, ge=1, allow_inf_nan=False, description="... and max > min x this")


class StickySessionRouter(_Router):
    """Session affinity: every turn of a multi-turn session goes to the replica its first turn went to
    (the first turn, and requests without a session: least outstanding). No load guard, as with SGLang's
    consistent_hashing / manual policies and llm-d's session-affinity scorer."""

    kind: Literal["sticky_session"] = "sticky_session"


RouterConfig = Annotated[
    RoundRobinRouter | LeastOutstandingRouter | LeastKVRouter | PowerOfTwoRouter | PrefixAwareRouter
    | StickySessionRouter,
    Field(discriminator="kind"),
]


# ---- the KV link of a disaggregated deployment (docs/disaggregation.md) ------------------------------------
class _KVLink(BaseModel):
    model_config = _FROZEN
    bytes_per_s_per_gpu: PosFloat | None = Field(
        None, description="per-GPU, per-direction bandwidth of the link; None = the prefill GPU's hardware file")
    latency_s: NonNegSeconds | None = Field(None, description="per-transfer latency; None = the hardware file's")
    layerwise: bool = Field(False, description=(
        "send each layer's KV while the next layer computes (Mooncake, TRT-LLM/Dynamo layer-wise transfer): only "
        "the part of the transfer longer than the prefill iteration, and at least one layer's share, is exposed"))


class NVLinkKVLink(_KVLink):
    """Prefill and decode GPUs on one NVLink domain: the hardware's scale-up bandwidth and latency."""

    kind: Literal["nvlink"] = "nvlink"


class NetworkKVLink(_KVLink):
    """InfiniBand/RoCE between nodes (GPUDirect RDMA, e.g. NIXL/Mooncake transfer engine): the hardware's
    per-GPU scale-out NIC (h100-sxm: 400 Gb/s ConnectX-7 per GPU)."""

    kind: Literal["network"] = "network"


class PCIeKVLink(_KVLink):
    """Through host memory over PCIe (no GPUDirect): the hardware's PCIe bandwidth, crossed twice (device to
    host on the prefill side, host to device on the decode side; the two overlap, so the slower one counts)."""

    kind: Literal["pcie"] = "pcie"


KVLinkConfig = Annotated[NVLinkKVLink | NetworkKVLink | PCIeKVLink, Field(discriminator="kind")]


# ---- KV-cache tiers below HBM (docs/kv-tiers.md) -------------------------------------------------------------
# Default read bandwidth per GPU of the tiers without one in the hardware file ("dram" reads at the GPU's host
# link, HardwareSpec.interconnect.pcie_bytes_per_s). Per GPU because each GPU loads its own KV shard over its own
# path: NVIDIA DGX H100 has one 3.84 TB NVMe U.2 data drive and one ConnectX-7 400 Gb/s NIC per GPU (DGX H100
# datasheet, 8x of each for 8 GPUs).
KV_TIER_READ_BYTES_PER_S: dict[str, float] = {
    "ssd": 7e9,  # NVMe PCIe Gen4 x4 data-centre SSD, ~7,000 MB/s sequential read (Samsung PM1733 datasheet)
    "remote": 50e9,  # 400 Gb/s RDMA NIC (ConnectX-7) per GPU, as Mooncake's Transfer Engine uses it
}


class KVTier(BaseModel):
    """One tier below HBM that prefix blocks evicted from HBM (or from the tier above) are demoted to, and loaded
    back from on a hit (LMCache CPU/disk/remote backends, Mooncake Store). Sizes and bandwidths are per GPU."""

    model_config = _FROZEN
    kind: Literal["dram", "ssd", "remote"]
    capacity_bytes: PosFloat = Field(description="bytes of KV this tier holds per GPU of the replica")
    read_bytes_per_s: PosFloat | None = Field(
        None, description="load-back bandwidth per GPU; None = the kind's default (dram: the GPU's host link, "
        "ssd: 7 GB/s, remote: 50 GB/s; docs/kv-tiers.md)")


# ---- replicas, SLOs, the run ----------------------------------------------------------------------------
class ReplicaGroup(BaseModel):
    """`count` identical replicas, each an attn_dp x tp x pp group of GPUs serving one model copy. `role` puts the group
    in the prefill or the decode pool of a disaggregated deployment (docs/disaggregation.md)."""

    model_config = _FROZEN
    role: Literal["colocated", "prefill", "decode"] = Field(
        "colocated", description="colocated = prefill and decode on the same replica; prefill/decode = the pool "
        "of a disaggregated deployment (every group of the run is then prefill or decode)")
    model: str = Field(description="model preset, HF id or config.json path")
    hardware: str = Field(description="hardware id/alias or .toml path")
    engine: str | None = Field(None, description=(
        "serving engine NAME[==VERSION] (vllm, vllm==0.5.4, trtllm==1.0, sglang; docs/engines.md): fills the "
        "scheduler, gpu_memory_utilization and prefix_caching settings not given explicitly; None = "
        "roofsim-default (the schema defaults)"))
    tp: Degree = 1
    pp: Degree = 1
    ep: Degree = 1
    attn_dp: Degree = Field(1, description=(
        "attention data-parallel ranks of a MoE replica, each tp-way (vLLM --data-parallel-size with expert "
        "parallel, SGLang --enable-dp-attention, TensorRT-LLM enable_attention_dp): attention and dense layers "
        "replicated per rank, experts sharded over all attn_dp x tp GPUs (docs/model.md)"))
    count: limited(int, "MAX_REPLICAS", ge=1) = 1  # type: ignore[valid-type]
    quant: QuantSpec | None = Field(
        None, description="number formats; absent = the checkpoint's own (its quantization_config / "
        "hf_quant_config.json, bf16 for an unquantised one) on this hardware (simulator.run.group_quant). A table "
        "given is the whole format: fields it omits take QuantSpec's defaults (bf16), not the checkpoint's")
    scheduler: SchedulerConfig = VLLMScheduler()
    gpu_memory_utilization: float = Field(0.9, gt=0, le=1)
    block_size: limited(int, "MAX_BLOCK_TOKENS", ge=1) = Field(  # type: ignore[valid-type]
        16, description="KV-cache block (page) size, tokens")
    calibration: Calibration | None = None
    speculative: SpeculativeConfig | None = Field(None, description="speculative decoding (docs/techniques.md)")
    early_exit: EarlyExitConfig | None = Field(None, description="early exit / layer skipping (docs/techniques.md)")
    prefix_caching: bool = Field(False, description="automatic prefix caching: prompt blocks whose hash ids are "
                                 "cached skip prefill (per-replica LRU over the KV pool; docs/simulator.md)")
    kv_tiers: tuple[KVTier, ...] = Field(
        (), description="prefix-cache tiers below HBM, top down (e.g. dram then ssd); needs prefix_caching")
    kv_load_layerwise: bool = Field(
        True, description="load-back from the tiers overlaps with compute layer by layer (LMCache layerwise "
        "retrieval, vLLM KV connector); false: the load finishes before the iteration computes")
    max_model_len: int | None = Field(None, ge=1, le=MAX_TOKENS, description=(
        "most input+output tokens of one request (the engine's --max-model-len); None = the model's context "
        "(max_position_embeddings). A benchmark that forced longer sequences through the model (Splitwise's "
        "8k prompts on the 4k Llama-2) sets it to what it ran"))
    frontend_s_per_request: NonNegSeconds = Field(
        0.0, description="serialized per-request front-end time (API server: accept, tokenize, hand to the engine) "
                    "before a request can be scheduled; one queue per replica (docs/simulator.md)")
    frontend_s_per_token: NonNegSeconds = Field(
        0.0, description="front-end time per streamed output token (API server: detokenize, serialize, send); a "
                    "step's outputs are handled in batch order, running requests first, so a new request's first "
                    "token reaches the client that many tokens' time after the step ends (docs/simulator.md)")
    host_s_per_launch: NonNegSeconds = Field(
        0.0, description="eager execution (no CUDA graphs): host seconds to dispatch one kernel; an iteration "
                    "takes max(GPU time, kernel launches x this) (simulator/strategy.py HostDispatchFloor); 0 = the "
                    "host keeps ahead of the GPU. Set by host-bound engines (splitwise; docs/engines.md)")
    eager_prompts_only: bool = Field(
        False, description="host_s_per_launch applies to iterations with a prompt only: generation-only iterations "
                    "replay CUDA graphs (trtllm 1.x; docs/engines.md)")
    prefill_s_per_seq: NonNegSeconds = Field(
        0.0, description="seconds a step with prefills takes per prompt in it beyond its GPU time and host dispatch, "
                    "the GPUs idling (simulator/strategy.py HostDispatchFloor); 0 = none. Set by the eager "
                    "splitwise engine (docs/engines.md)")
    host_s_per_seq: NonNegSeconds | None = Field(
        None, description="the engine's host time per running sequence of one step, not overlapped with the GPU; "
                    "replaces the calibration's step_overhead_per_seq_s (None = the calibration's). Set by engines "
                    "that schedule and process outputs request by request between steps (vllm==0.8; "
                    "docs/engines.md)")
    attn_backend: AttnPolicy = Field(
        "", description="the engine's attention-backend policy on this GPU (model.graph.attention_backend picks the "
                    "kernel per attention group from it: a Triton prefill fallback, FA2's unpacked decode); '' = "
                    "roofsim's default attention pricing. Set by the engine (docs/engines.md)")

    @model_validator(mode="before")
    @classmethod
    def _apply_engine(cls, data: Any) -> Any:
        """Fill the settings the engine decides and the user did not set (explicit fields win)."""
        if not isinstance(data, dict):
            return data
        if not data.get("engine"):
            sched = data.get("scheduler")
            if isinstance(sched, dict) and "kind" not in sched:  # no engine: roofsim-default's kind
                data = {**data, "scheduler": {**sched, "kind": VLLMScheduler().kind}}
            return data
        return merge_engine(data, group_engine_profile(data))

    @model_validator(mode="after")
    def _check_techniques(self) -> ReplicaGroup:
        if self.speculative is not None and self.early_exit is not None:
            raise ValueError("speculative and early_exit cannot both be set; for early-exit drafting use "
                             "speculative.drafter.kind = 'layerskip'")
        if self.kv_tiers and not self.prefix_caching:
            raise ValueError("kv_tiers hold evicted prefix-cache blocks: set prefix_caching = true")
        if self.attn_dp > 1 and (self.speculative is not None or self.early_exit is not None):
            raise ValueError(f"attn_dp={self.attn_dp} with speculative decoding or early exit is not modelled "
                             f"(their steps are costed on the whole batch, not per attention rank)")
        kinds = [t.kind for t in self.kv_tiers]
        if len(set(kinds)) != len(kinds):
            raise ValueError(f"kv_tiers kinds={kinds} must be distinct (one tier of each kind)")
        return self


def group_engine_profile(group: dict[str, Any] | ReplicaGroup) -> EngineProfile:
    """The engine profile of a replica group (dict or model) on its GPU, for its model's context length."""
    g = group if isinstance(group, dict) else group.model_dump()
    spec, hw = str(g["engine"]), g.get("hardware")
    try:
        max_len = None
        if needs_model(spec):
            from roofsim.model.loader import load_model  # noqa: PLC0415  (only engines that need the model)

            max_len = g.get("max_model_len") or load_model(g["model"]).max_context_tokens
        gpus = int(g.get("tp", 1) or 1) * int(g.get("pp", 1) or 1) * int(g.get("attn_dp", 1) or 1)
        return engine_profile(spec, hw, max_model_len=max_len, gpus=gpus, model=g.get("model"))
    except (RoofsimError, KeyError, TypeError) as e:
        msg = str(e.args[0]) if isinstance(e, KeyError) and e.args else str(e)
        raise ValueError(f"engine {spec!r}: {msg}") from None


def _explicit(value: Any) -> dict[str, Any]:
    """The explicitly given keys of a table: a dict's keys, a model's fields_set (+ its kind)."""
    if isinstance(value, BaseModel):
        keys = set(value.model_fields_set) | ({"kind"} if "kind" in type(value).model_fields else set())
        return value.model_dump(mode="json", include=keys)
    return dict(value) if isinstance(value, dict) else {}


def _replica_scheduler(settings: dict[str, Any], attn_dp: int) -> dict[str, Any]:
    """The engine's scheduler settings for a replica of `attn_dp` attention-DP ranks. The engine's limits are per
    rank (each vLLM / SGLang DP rank is an engine core with its own max_num_seqs and token budget): the replica,
    which steps its ranks together, holds attn_dp times them, as the planner and the silicon converter count them."""
    sched = dict(settings["scheduler"])
    if attn_dp > 1:
        for key in ("max_num_seqs", "max_batched_tokens", "chunk_size"):
            if key in sched:
                sched[key] = int(sched[key]) * attn_dp
    return sched


def merge_engine(data: dict[str, Any], prof: EngineProfile) -> dict[str, Any]:
    """A replica-group dict with the engine's settings under the explicit ones. A scheduler kind other than the
    engine's keeps the engine's values of the fields that kind has."""
    out = dict(data)
    settings = prof.group_settings()
    for key in ENGINE_GROUP_FIELDS:
        out.setdefault(key, settings[key])
    user = _explicit(data.get("scheduler", {}))
    sched = _replica_scheduler(settings, int(data.get("attn_dp", 1) or 1))
    kind = user.get("kind", sched["kind"])
    model = next((m for m in _models_in(SchedulerConfig) if kind in kinds_of(m)), None)
    if model is not None:
        sched = {k: v for k, v in sched.items() if k in model.model_fields}
    out["scheduler"] = {**sched, **user, "kind": kind}
    return out


def engine_overrides(group: ReplicaGroup) -> dict[str, Any]:
    """The replica group as a dict holding only what differs from its engine's settings (so that a printed config
    reads back to the same group and a changed `engine` in the file takes effect)."""
    d = group.model_dump(mode="json", exclude_none=True)
    if group.engine is None:
        return d
    settings = group_engine_profile(group).group_settings()
    for key in ENGINE_GROUP_FIELDS:
        if d.get(key) == settings[key]:
            d.pop(key, None)
    eng, sched = _replica_scheduler(settings, group.attn_dp), d.get("scheduler", {})
    if sched.get("kind") == eng["kind"]:
        defaults = type(group.scheduler)().model_dump(mode="json")  # what a field the engine leaves alone takes
        rest = {k: v for k, v in sched.items() if eng.get(k, defaults.get(k, _MISSING)) != v}
        if rest:
            d["scheduler"] = rest  # no kind: the engine's applies, and a changed engine brings its own
        else:
            d.pop("scheduler", None)
    return d


_MISSING = object()


# The workloads a run accepts: workload.py's WorkloadConfig members plus the multi-turn sessions of sessions.py
# (which builds on workload.py, so the union that adds it lives here; tests/simulator/test_config.py checks that
# it keeps every member of WorkloadConfig).
RunWorkload = Annotated[SyntheticWorkload | TraceWorkload | NamedWorkload | SessionWorkload,
                        Field(discriminator="kind")]


class SLO(BaseModel):
    """Per-request latency targets for goodput; an unset target is not checked."""

    model_config = _FROZEN
    ttft_s: PosFloat | None = None
    tpot_s: PosFloat | None = None


# Input guards, not engine limits: engines resize images to a pixel budget far below this (Qwen2.5/3-VL
# processors cap max_pixels at 16384 x 28 x 28 = 12.8 MP, i.e. sides of a few thousand pixels).
MAX_IMAGE_SIDE_PX = 32768
MAX_IMAGES_PER_REQUEST = 1024


class ImageInputs(BaseModel):
    """Images sent with the workload's requests, for VL models (ModelSpec.vision). Each image becomes
    VisionSpec.tokens_per_image LLM tokens, added to the request's input tokens (the workload's input lengths
    are its text), and runs through the vision encoder in the step of the request's first prefill chunk."""

    model_config = _FROZEN
    per_request: int = Field(1, ge=1, le=MAX_IMAGES_PER_REQUEST)
    height_px: int = Field(ge=1, le=MAX_IMAGE_SIDE_PX)
    width_px: int = Field(ge=1, le=MAX_IMAGE_SIDE_PX)
    share: Annotated[float, Field(gt=0, le=1)] = 1.0  # of requests carrying images (drawn from the seed)


class SimConfig(BaseModel):
    """One simulation run. Same config (including seed) -> bit-identical SimResult."""

    model_config = _FROZEN
    workload: RunWorkload
    replicas: tuple[ReplicaGroup, ...] = Field(min_length=1)
    router: RouterConfig = RoundRobinRouter()
    seed: limited(int, "MAX_SEED", ge=0) = 0  # type: ignore[valid-type]
    slo: SLO = SLO()
    max_sim_time_s: Seconds | None = Field(
        None, description="stop the simulated clock here; None = max(4 x last arrival, last arrival + 3600 s)")
    max_waiting_requests: Requests | None = Field(
        None, description="overload guard: stop when this many requests wait in one replica")
    stepwise: bool = Field(False, description="yield to simpy after every iteration (slow; for checking)")
    images: ImageInputs | None = Field(None, description="images with the requests (VL models); None = text only")
    kv_link: KVLinkConfig = Field(NetworkKVLink(), description=(
        "the link KV crosses from the prefill to the decode pool (disaggregated deployments only)"))

    @model_validator(mode="after")
    def _check(self) -> SimConfig:
        total = sum(g.count for g in self.replicas)
        if total > MAX_REPLICAS:
            raise ValueError("replicas: " + exceeds(total, "MAX_REPLICAS", "sum of count"))
        roles = [g.role for g in self.replicas]
        if set(roles) != {"colocated"} and ("colocated" in roles or not {"prefill", "decode"} <= set(roles)):
            raise ValueError(f"replicas: roles {roles}: a disaggregated deployment needs every group to be "
                             f"'prefill' or 'decode', with at least one of each")
        return self

    @property
    def disaggregated(self) -> bool:
        """True when the replica groups form a prefill pool and a decode pool."""
        return self.replicas[0].role != "colocated"

    @classmethod
    def from_toml(cls, path: str | Path) -> SimConfig:
        """Read a run file; InputError naming the file and every bad field."""
        path = Path(path)
        try:
            data = load_toml_file(path, what="run file")
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
                lines.append(f"  field {loc}: {e['msg'].removeprefix('Value error, ')}")
            raise InputError("\n".join(lines)) from None

    def to_toml(self) -> str:
        """TOML text that from_toml reads back to an equal config (module function to_toml)."""
        return to_toml(self)


# ---- choices derived from the schema: argparse choices, dashboard options and error messages import these -----
def _models_in(tp: Any) -> tuple[type[BaseModel], ...]:
    """The pydantic models a field annotation admits (Annotated, unions and Optional unwrapped)."""
    if get_origin(tp) is Annotated:
        return _models_in(get_args(tp)[0])
    if get_origin(tp) in (Union, types.UnionType):
        return tuple(m for a in get_args(tp) for m in _models_in(a))
    return (tp,) if isinstance(tp, type) and issubclass(tp, BaseModel) else ()


def kinds_of(union: Any) -> tuple[str, ...]:
    """The `kind` values of a discriminated union of configs, in declaration order."""
    return tuple(k for m in _models_in(union) for k in get_args(m.model_fields["kind"].annotation))


SCHEDULER_KINDS = kinds_of(SchedulerConfig)
ROUTER_KINDS = kinds_of(RouterConfig)
KV_LINK_KINDS = kinds_of(KVLinkConfig)
REPLICA_ROLES: tuple[str, ...] = get_args(ReplicaGroup.model_fields["role"].annotation)
PREEMPTION_MODES: tuple[str, ...] = get_args(_SchedBase.model_fields["preemption"].annotation)
DRAFTER_KINDS = kinds_of(Drafter)
ACCEPTANCE_KINDS = kinds_of(Acceptance)
EARLY_EXIT_KINDS = kinds_of(EarlyExitConfig)
EXIT_DISTRIBUTION_KINDS = kinds_of(ExitDistribution)
WORKLOAD_KINDS = kinds_of(RunWorkload)
ARRIVAL_KINDS = kinds_of(Arrival)
LENGTH_KINDS = kinds_of(Lengths)
# WEIGHT_DTYPES, ACTIVATION_DTYPES, KV_DTYPES come from QuantSpec's Literals (roofsim.model.quant), re-exported here.


# ---- TOML out ---------------------------------------------------------------------------------------------
def to_toml(cfg: BaseModel) -> str:
    """TOML text of a config that model_validate reads back to an equal config. Unset optional fields are
    omitted: TOML has no null, and an omitted field takes its default (None). A replica group with an engine
    carries only what differs from the engine's settings (config_dict)."""
    return tomli_w.dumps(config_dict(cfg) if isinstance(cfg, SimConfig) else
                         cfg.model_dump(mode="json", exclude_none=True))


def config_dict(cfg: SimConfig) -> dict[str, Any]:
    """The run as a plain dict (JSON types, no None) whose replica groups hold only their settings that differ
    from their engine's (engine_overrides); SimConfig.model_validate reads it back to an equal config."""
    d = cfg.model_dump(mode="json", exclude_none=True)
    d["replicas"] = [engine_overrides(g) for g in cfg.replicas]
    if not cfg.disaggregated:  # a colocated run file stays as it was before disaggregation existed
        d.pop("kv_link")
        for g in d["replicas"]:
            g.pop("role", None)
    return d


# ---- --set PATH=VALUE overrides on the config dict, before validation ----------------------------------------
DELETE = object()  # value of `PATH=none`: remove the key, so the field takes its default


def parse_value(text: str) -> Any:
    """A --set value read as a TOML value (2 -> int, 2.5 -> float, true, [1, 2], {k = 1}, "x"); a bare word that
    is not TOML is a string (kind=sarathi); `none` is DELETE."""
    text = text.strip()
    if text.lower() == "none":
        return DELETE
    try:
        doc = tomllib.loads(f"v = {text}")
    except tomllib.TOMLDecodeError:
        return text
    value = doc.get("v")
    # dates have no place in a config: 2024-01-01 stays the string it was typed as
    return text if len(doc) != 1 or isinstance(value, date | time) else value


def apply_overrides(data: dict[str, Any], sets: Sequence[str], schema: type[BaseModel] | None = None
                    ) -> dict[str, Any]:
    """A copy of the config dict `data` with every `PATH=VALUE` of `sets` written into it (see set_path);
    `schema` defaults to SimConfig."""
    out = copy.deepcopy(data)
    for item in sets:
        path, sep, text = item.partition("=")
        if not sep or not path.strip():
            raise InputError(f"--set {item!r}: expected PATH=VALUE, e.g. replicas.0.tp=2 or slo.ttft_s=0.5")
        set_path(out, path.strip(), parse_value(text), schema or SimConfig)
    return out


def set_path(data: dict[str, Any], path: str, value: Any, schema: type[BaseModel]) -> None:
    """Write `value` at the dotted `path` of the config dict `data` (list items by index, `*` = every item,
    index len appends one), creating missing tables from the schema's defaults. InputError naming the path and
    the valid keys at the level that is wrong; values are checked later by pydantic."""
    _set_key(data, (schema,), path.split("."), 0, value, path)


def _set_key(node: dict[str, Any], models: tuple[type[BaseModel], ...], segs: list[str], i: int, value: Any,
             path: str, default_kind: str | None = None, engine: bool = False) -> None:
    where, key = ".".join(segs[:i]) or "the top level", segs[i]
    if len(models) > 1 and node.get("kind") is None and engine:
        # no kind given in a replica group with an engine: the engine's kind applies at validation, so any
        # member's keys are accepted here and checked by pydantic
        chosen = models
    elif len(models) > 1:  # a discriminated union: the table's kind (else the default's) says which keys are valid
        kind = node.get("kind", default_kind)
        chosen = tuple(m for m in models if kind in kinds_of(m))
        if not chosen and key != "kind":
            kinds = [k for m in models for k in kinds_of(m)]
            raise InputError(f"--set {path}: set {where}.kind first (one of {', '.join(kinds)})")
    else:
        chosen = models
    owner = next((m for m in chosen or models if key in m.model_fields), None)
    if owner is None:
        valid = sorted({k for m in chosen for k in m.model_fields})
        others = [k for m in models if m not in chosen and key in m.model_fields for k in kinds_of(m)]
        hint = f" ({key!r} belongs to kind {', '.join(others)}: set {where}.kind first)" if others else ""
        raise InputError(f"--set {path}: {where} has no key {key!r}{hint}; valid keys: {', '.join(valid)}")
    field = owner.model_fields[key]
    if i == len(segs) - 1:
        if value is DELETE:
            if field.is_required():
                raise InputError(f"--set {path}: {where}.{key} is required and cannot be removed")
            node.pop(key, None)
            return
        if key == "kind" and len(models) > 1:
            # a new policy kind keeps only the settings it has (a draft model's `model` means nothing to eagle)
            new = next((m for m in models if value in kinds_of(m)), None)
            for k in [k for k in node if new is not None and k not in new.model_fields]:
                del node[k]
        node[key] = value
        return
    default = field.get_default(call_default_factory=True)
    sub = _models_in(field.annotation)
    if sub:
        default_kind = getattr(default, "kind", None) if isinstance(default, BaseModel) else None
        if key not in node:
            # only the default's explicitly given fields, not its kind: the others take their defaults at
            # validation, and a replica group's engine may still fill them (ReplicaGroup.engine)
            node[key] = ({k: v for k, v in _explicit(default).items() if k != "kind"}
                         if isinstance(default, BaseModel) else {})
        if not isinstance(node[key], dict):
            raise InputError(f"--set {path}: {where}.{key} is {node[key]!r}, not a table")
        _set_key(node[key], sub, segs, i + 1, value, path, default_kind, bool(node.get("engine")))
    elif (item := _item_type(field.annotation)) is not None:
        node[key] = list(node[key] if node.get(key) is not None else default or ())
        _set_items(node[key], item, segs, i + 1, value, path)
    else:
        raise InputError(f"--set {path}: {where}.{key} is a single value; it has no key {segs[i + 1]!r}")


def _set_items(seq: list[Any], item: Any, segs: list[str], i: int, value: Any, path: str) -> None:
    where, seg = ".".join(segs[:i]), segs[i]
    if seg == "*":
        idx = list(range(len(seq)))
    elif seg.isdigit() and int(seg) <= len(seq):
        idx = [int(seg)]
    else:
        raise InputError(f"--set {path}: {where} is a list of {len(seq)} item(s); {seg!r} is not an index "
                         f"(0..{len(seq) - 1}, {len(seq)} to append one, * for every item)")
    models = _models_in(item)
    last = i == len(segs) - 1
    if not last and not models:
        raise InputError(f"--set {path}: the items of {where} are single values; they have no key {segs[i + 1]!r}")
    for n in reversed(idx):  # reversed: deleting an item leaves the lower indices in place
        if last and value is DELETE:
            if n < len(seq):
                del seq[n]
            continue
        if n == len(seq):
            seq.append(value if last else {})
        elif last:
            seq[n] = value
        if not last:
            _set_key(seq[n], models, segs, i + 1, value, path)


def _item_type(tp: Any) -> Any:
    """The item type of a tuple/list annotation (Annotated and Optional unwrapped), else None."""
    if get_origin(tp) is Annotated:
        return _item_type(get_args(tp)[0])
    if get_origin(tp) in (Union, types.UnionType):
        return next((t for a in get_args(tp) if (t := _item_type(a)) is not None), None)
    return get_args(tp)[0] if get_origin(tp) in (tuple, list) and get_args(tp) else None


__all__ = [
    "ACCEPTANCE_KINDS", "ACTIVATION_DTYPES", "ARRIVAL_KINDS", "DELETE", "DRAFTER_KINDS", "EARLY_EXIT_KINDS",
    "EXIT_DISTRIBUTION_KINDS", "KV_DTYPES", "KV_LINK_KINDS", "KV_TIER_READ_BYTES_PER_S", "KVLinkConfig", "KVTier",
    "LENGTH_KINDS", "PREEMPTION_MODES", "ROUTER_KINDS", "RunWorkload", "SCHEDULER_KINDS", "WEIGHT_DTYPES",
    "WORKLOAD_KINDS", "ImageInputs", "LeastKVRouter", "LeastOutstandingRouter", "NVLinkKVLink", "NetworkKVLink",
    "OrcaScheduler", "PCIeKVLink", "PowerOfTwoRouter", "PrefixAwareRouter", "REPLICA_ROLES", "ReplicaGroup",
    "RoundRobinRouter", "RouterConfig", "SLO", "SarathiScheduler", "SJFScheduler", "SchedulerConfig", "SimConfig",
    "StaticScheduler", "StickySessionRouter", "VLLMScheduler", "apply_overrides",
    "config_dict", "engine_overrides", "group_engine_profile", "kinds_of", "merge_engine", "parse_value",
    "set_path", "to_toml",
]
