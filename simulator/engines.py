"""Serving engines by name and version: the one table from `engine[==version]` (+ the GPU, + the model's context
length where the engine's own default depends on them) to the scheduler and limits roofsim simulates it with.
`simulate`, `validate`, `plan` and the dashboard all resolve engine names here (docs/engines.md)."""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from packaging.specifiers import SpecifierSet
from packaging.version import InvalidVersion, Version

from roofsim.hardware_specs.catalog import load_hardware
from roofsim.hardware_specs.errors import UnknownNameError
from roofsim.hardware_specs.spec import HardwareSpec

# vLLM (v0) EngineArgs.max_num_seqs = 256 (vllm/engine/arg_utils.py); the scheduler configs' default.
VLLM_MAX_NUM_SEQS = 256
# roofsim's default iteration token budget for policies that do not chunk prompts. vLLM v0 without chunked prefill
# uses max(max_model_len, 2048) (vllm/config.py SchedulerConfig), i.e. 8192 for the 8k-context Llama-3 models.
DEFAULT_MAX_BATCHED_TOKENS = 8192
# vLLM v0 with chunked prefill: "512 is the default max_num_batched_tokens for chunked prefill"
# (vLLM 0.4-0.5 docs/source/models/performance.rst; vllm/config.py SchedulerConfig.__post_init__ through 0.6.x);
# the Sarathi scheduler's default chunk.
VLLM_CHUNKED_PREFILL_TOKENS = 512
# vLLM 0.7+ V0 with chunked prefill: vllm/config.py `_DEFAULT_MAX_NUM_BATCHED_TOKENS = 2048` ("chosen to have a
# balance between ITL and TTFT"); also V1's OpenAI-server budget on GPUs outside the big-GPU class.
VLLM_DEFAULT_CHUNKED_TOKENS = 2048
# vLLM V0 arg_utils: chunked prefill is switched on by itself when max_model_len > 32768 ("use_long_context").
VLLM_LONG_CONTEXT_TOKENS = 32768

# vLLM V1 OpenAI API server, vllm/engine/arg_utils.py `_set_default_args_v1` (vLLM >= 0.9; later
# `EngineArgs.get_batch_defaults`): GPUs with >= 70 GiB that are not A100 get max_num_batched_tokens 8192 /
# max_num_seqs 1024, the others (and every GPU in 0.8.x) 2048 / 256.
VLLM_V1_BIG_GPU_BYTES = 70 * 2**30
VLLM_V1_BIG_GPU = (8192, 1024)
VLLM_V1_OTHER_GPU = (2048, 256)
# vLLM gpu_memory_utilization default 0.9 (EngineArgs / CacheConfig, every version in the table).
VLLM_GPU_MEMORY_UTILIZATION = 0.9
# vLLM V1 (0.8) host time per running sequence of one step: the engine core schedules, prepares inputs and
# turns the sampled tokens into outputs request by request in Python between two GPU steps (overlapping that
# work with the GPU, `--async-scheduling`, came later: vllm-project/vllm#27679). Fitted, not from a datasheet:
# validation.replay.fit_host_s_per_seq over the four vllm_llm-k8s 01_tp8_pp1 logs (Llama-3.3-70B, 8x A100-40GB,
# vLLM 0.8.3; the shipped A100 vLLM profile without per-sequence overhead): 33 us. Left out one log at a time the
# fit gives 23-60 us (docs/validation-e2e.md, Target 2).
VLLM_V1_HOST_S_PER_SEQ = 33e-6
# vLLM OpenAI API server: accept, validate, tokenize and hand one request to the engine, serialized in its one
# Python process. Estimated from the vllm_llm-k8s TP4 x PP2 Llama-3.3-70B logs at rate inf (same vLLM 0.8.3
# OpenAI API server, client and prompts as the TP8 logs it is scored on; the engine behind it is V0, which 0.8.3
# falls back to for pipeline parallelism without Ray's executor, per those runs' server logs): the first of 200
# simultaneous requests gets its first token only after the front end has taken in all of them,
# (min TTFT - mean TPOT) / 200 = 1.15, 1.04 and 1.14 ms (validation.replay.burst_frontend_s_per_request).
VLLM_FRONTEND_S_PER_REQUEST = 1.1e-3
# The same process detokenizes and streams every output token (vLLM V1 keeps the engine core in its own process
# and the output processing in the API server's). Estimated from the TP8 rate-inf log, the only one whose front
# end runs saturated (200 streams): the client got tokens no faster than one per 192 us (196 us): the 99th
# percentile of tokens per 5 (10) ms after the last first token, validation.replay.burst_frontend_s_per_token.
# Scored held out on the rate 1, 4 and 16 logs, in-sample on the rate-inf one.
VLLM_FRONTEND_S_PER_TOKEN = 190e-6

# TensorRT-LLM defaults: max_num_tokens 8192, max_batch_size 2048 (trtllm-build and the LLM API BuildConfig /
# TorchLlmArgs; trtllm-serve --help), chunked context off (`enable_chunked_context` / `enable_chunked_prefill`
# False), KvCacheConfig.free_gpu_memory_fraction 0.9.
TRTLLM_MAX_NUM_TOKENS = 8192
TRTLLM_MAX_BATCH_SIZE = 2048
TRTLLM_FREE_GPU_MEMORY_FRACTION = 0.9
# TensorRT-LLM 1.x (PyTorch executor): host seconds per kernel launch of an eager iteration (one with a prompt;
# generation-only iterations replay CUDA graphs). Not documented by TensorRT-LLM; fitted on the AIConfigurator
# silicon rows of Qwen3-235B-A22B-FP8 at tp 4 (TTFT median |error|) and scored on its tp 8 rows and on the dense
# models' rows (docs/validation-e2e.md, "TRT-LLM eager prompt iterations").
TRTLLM_HOST_S_PER_LAUNCH = 50e-6
# TensorRT-LLM's default capacity scheduler policy (SchedulerConfig.capacity_scheduler_policy, 0.x executor and
# 1.x LLM API alike) is GUARANTEED_NO_EVICT: a request is scheduled only when the KV blocks it needs to completion
# (prompt + max_tokens; max_seq_len - prompt when the client sends no max_tokens) fit beside those already promised
# to the running requests (cpp/tensorrt_llm/batch_manager/capacityScheduler.cpp GuaranteedNoEvictScheduler;
# TensorRT-LLM issue #9412: requests without max_tokens run one at a time for that reason).
_NO_EVICT_SOURCE = ("CapacitySchedulerPolicy GUARANTEED_NO_EVICT (capacityScheduler.cpp): admission reserves the KV "
                    "of every running request's prompt + max_tokens, so nothing is evicted (roofsim: the request's "
                    "output length stands for max_tokens)")
# SGLang: chunked_prefill_size by GPU memory (python/sglang/srt/server_args.py `_handle_gpu_memory_settings`);
# 8192 on 80-GiB-class GPUs.
SGLANG_CHUNKED_PREFILL_SIZE = 8192
# SGLang max_running_requests: None -> the request pool, min(max(context-scaled, 2048), 4096) requests
# (model_runner `max_num_reqs`), capped by half the KV tokens; 2048 for a 128k-context 8B model on an 80 GB GPU.
SGLANG_MAX_RUNNING_REQUESTS = 2048

# splitwise-sim's profiles (data/perf_model.csv, Patel et al., "Splitwise", ISCA 2024; DGX-A100 and DGX-H100): the
# repository does not name the serving stack (its issue #4 asks, unanswered); configs/performance_model/db.yaml
# keeps vLLM profiles (data/vllm-*.csv) as separate, commented-out alternatives. What the rows show is eager
# execution: the decode iteration stops shortening with TP (Llama-2-70B batch 1, A100: 54.9 / 44.3 / 44.8 ms at
# tp 2 / 4 / 8) while the weights read per GPU halve, i.e. the host issuing the kernels one by one is the bound.


# Attention backend by engine and GPU architecture (the policy model.graph.attention_backend turns into a kernel
# family per attention group from its head dim, window, KV dtype and MLA). vLLM V1: FlashAttention 3 on Hopper, 2
# elsewhere (vllm/attention/utils/fa_utils.py get_flash_attn_version: "if hopper default to FA3, otherwise stick to
# FA2"), FlashInfer on datacenter Blackwell (vllm/platforms/cuda.py: SM100 defaults to FLASHINFER); SGLang: FA3 on
# Hopper, trtllm_mha on B200, FlashInfer on other architectures (docs/advanced_features/attention_backend.md,
# "Automatic Backend Selection"; server_args.py). The fallbacks by model feature are the kernel sources
# AIConfigurator recorded on A100 / H100 / L40S / RTX PRO 6000 (model.graph.attention_backend).
_VLLM_V1_ATTN = {"hopper": "vllm-fa3", "ampere": "vllm-fa2", "ada": "vllm-fa2"}
_SGLANG_ATTN = {"hopper": "sglang-fa3", "ampere": "sglang-flashinfer", "ada": "sglang-flashinfer"}


def _blackwell_workstation(hw: HardwareSpec) -> bool:
    """An SM120 Blackwell (RTX PRO / GeForce): the engines' datacenter-Blackwell (SM100) kernels do not run there."""
    return hw.architecture == "blackwell" and hw.id.startswith("rtx")


def _attn_policy(hardware: HardwareSpec | str | None, by_arch: dict[str, str], sm120: str, sm100: str) -> str:
    """The policy of an engine on this GPU: by architecture, Blackwell split into workstation (SM120) and
    datacenter (SM100); "" off NVIDIA, on an architecture the rule does not cover, or without a GPU."""
    if hardware is None:
        return ""
    hw = _hw(hardware)
    if hw.vendor != "nvidia":
        return ""
    if hw.architecture == "blackwell":
        return sm120 if _blackwell_workstation(hw) else sm100
    return by_arch.get(hw.architecture, "")


def vllm_v1_attn_backend(hardware: HardwareSpec | str | None) -> str:
    """vLLM V1's attention-backend policy on this GPU (_attn_policy)."""
    return _attn_policy(hardware, _VLLM_V1_ATTN, "vllm-fa2", "vllm-flashinfer")


def sglang_attn_backend(hardware: HardwareSpec | str | None) -> str:
    """SGLang's attention-backend policy on this GPU (_attn_policy)."""
    return _attn_policy(hardware, _SGLANG_ATTN, "sglang-flashinfer-sm120", "sglang-trtllm")


@dataclass(frozen=True, slots=True)
class HostCpu:
    """A GPU server's host CPU and the speed of one of its cores (SPECrate2017_int_base / cores): a single-threaded
    Python dispatch loop's time scales with 1 / that speed."""

    name: str
    int_rate_per_core: float


# The DGX datasheets name the host CPUs: DGX A100 = 2x AMD EPYC 7742 (NVIDIA DGX A100 datasheet), DGX H100 = 2x Intel
# Xeon Platinum 8480C (NVIDIA DGX H100 datasheet). Per-core speed: SPEC CPU2017 SPECrate2017_int_base / cores, the
# median of the published 2-socket results (spec.org/cpu2017/results, CINT2017 rate; read from its 2025-07-08 CSV
# export in github.com/blue-plum-cloud/cpu2017data data/test.csv): EPYC 7742, 21 results of 128 cores, median 674
# (646-701; e.g. Dell PowerEdge R7525, Dec 2019: 661) -> 5.27; Xeon Platinum 8480+, 46 results of 112 cores,
# median 912 (861-987; e.g. Dell PowerEdge XE9680, the 8-GPU HGX H100 server, Apr 2023: 861) -> 8.14. SPEC lists no
# 8480C (the DGX's custom part: 56 cores, 2.0 GHz base, 3.8 GHz max turbo like the 8480+, Intel ARK), so it
# stands in. The rate metric per core rather than SPECspeed2017_int_base (medians 8.84 / 14.5, x1.64): the speed
# metric runs 657.xz_s multi-threaded (OpenMP) on every core, and the Sapphire Rapids results built with Intel's
# 2022.0-2023.0 compilers carry SPEC's February 2024 note on a 523/623.xalancbmk-specific optimisation, worth about
# 9 % of SPECint speed and 4 % of SPECint rate (Phoronix, as reported by TechRadar Pro, February 2024).
DGX_A100_HOST = HostCpu("2x AMD EPYC 7742 (DGX A100)", 674 / 128)
DGX_H100_HOST = HostCpu("2x Intel Xeon Platinum 8480C (DGX H100; SPEC figures of the 8480+)", 912 / 112)
# Keyed by the GPU's hardware id (a power-capped id "<id>@<W>w" runs in the same host).
DGX_HOST_CPU = {"a100-sxm-80gb": DGX_A100_HOST, "a100-sxm-40gb": DGX_A100_HOST, "h100-sxm": DGX_H100_HOST}
# Host seconds per kernel launch on the reference core (DGX A100's EPYC 7742), by the model whose code the stack
# runs: fitted on the DGX-A100 rows only (median |error| of token_time at batch 1; Llama-2-70B 2.3 %, BLOOM-176B
# 1.8 %), reported on the DGX-H100 rows (docs/validation-e2e.md). BLOOM's eager model code costs x1.35 Llama-2's per
# launch of roofsim's op graph on the A100 host and x1.48 on the H100 host (each fitted on its own), so the cost
# is the model code's, not the GPU's. Another model gets the Llama-2 figure.
SPLITWISE_REF_HOST = DGX_A100_HOST
SPLITWISE_HOST_S_PER_LAUNCH = {"meta-llama/Llama-2-70b-hf": 42.3e-6, "bigscience/bloom": 57.0e-6}
SPLITWISE_DEFAULT_MODEL = "meta-llama/Llama-2-70b-hf"
# Host seconds per running sequence of one iteration, after the kernels (sampling, stop checks, per-request
# bookkeeping of the stack): the decode step grows with batch more than its GPU time (tp 8, batch 1 -> 64: A100
# +26 ms, H100 +20 ms measured, +5 / +3.5 ms of GPU time). Fitted on the DGX-A100 rows of batch > 1 (median |error|
# of token_time), reported on the DGX-H100 rows. Not scaled by the host core's speed: the measured growth is the
# same on both hosts (batch 1 -> 32, Llama-2-70B tp 8: +8.1 / +8.8 ms, tp 4: +7.3 / +7.2 ms), and held out both
# ways the unscaled cost scores better than the scaled one (docs/validation-e2e.md).
SPLITWISE_HOST_S_PER_SEQ = 210e-6
# Seconds per prompt of a prefill step beyond its GPU time and the launch floor: the measured prompt phase is
# slower than the decode step's host floor plus the GPU time by a time per prompt that the host core's speed does
# not set (Llama-2-70B tp 8, 128 tokens: A100 +20 ms, H100 +28 ms; batch of 512-token prompts at tp 2, where the GPU
# bounds the step: A100 +35 ms, H100 +15 ms per prompt). Fitted on the DGX-A100 rows of both models (the sum of the
# two models' median |error| of prompt_time, 0.5 ms grid), reported on the DGX-H100 rows (docs/validation-e2e.md).
SPLITWISE_PREFILL_S_PER_SEQ = 20e-3


def dgx_host(hardware: HardwareSpec | str) -> HostCpu:
    """The host CPU of the DGX this GPU ships in (DGX_HOST_CPU)."""
    gpu = re.sub(r"-cap[0-9.]+w$", "", _hw(hardware).id)  # a power-capped GPU (catalog.power_capped): same host
    if gpu not in DGX_HOST_CPU:
        raise ValueError(f"no DGX host known for GPU {gpu!r} (known: {sorted(DGX_HOST_CPU)}); without an "
                         "engine, set the replica group's host_s_per_launch and host_s_per_seq")
    return DGX_HOST_CPU[gpu]


def dgx_host_slowdown(hardware: HardwareSpec | str) -> float:
    """Host seconds on this GPU's DGX host per host second on the reference core (SPLITWISE_REF_HOST)."""
    return SPLITWISE_REF_HOST.int_rate_per_core / dgx_host(hardware).int_rate_per_core


def dgx_host_s_per_launch(hardware: HardwareSpec | str, model: str | None = None) -> float:
    """Host seconds to dispatch one kernel of `model`'s eager code on the DGX host of this GPU."""
    ref = SPLITWISE_HOST_S_PER_LAUNCH.get(model or SPLITWISE_DEFAULT_MODEL,
                                          SPLITWISE_HOST_S_PER_LAUNCH[SPLITWISE_DEFAULT_MODEL])
    return ref * dgx_host_slowdown(hardware)


def vllm_v1_defaults(hardware: HardwareSpec | str) -> tuple[int, int]:
    """(max_num_batched_tokens, max_num_seqs) of vLLM V1's OpenAI server on this GPU (the big-GPU rule above)."""
    hw = _hw(hardware)
    big = hw.memory.capacity_bytes >= VLLM_V1_BIG_GPU_BYTES and "a100" not in hw.id
    return VLLM_V1_BIG_GPU if big else VLLM_V1_OTHER_GPU


# SGLang server_args.py memory tiers (GPU memory in MiB as torch reports it): (upper bound GiB, chunked prefill
# size, reserved GiB for activations/CUDA graphs as a function of tp*pp) for mem_fraction_static.
_SGLANG_TIERS: tuple[tuple[float, int, Callable[[int], float]], ...] = (
    (20, 2048, lambda p: 2.8 + p / 10),   # T4, 4080
    (35, 2048, lambda p: 2.8 + p / 10),   # A10, L40, 4090, 5090
    (60, 4096, lambda p: 9.5 + p / 2),    # A100-40GB, L40S
    (90, 8192, lambda p: 9.5 + p / 2),    # H100, A100-80GB
    (160, 8192, lambda p: 12 + p / 2),    # H20, H200
    (math.inf, 16384, lambda p: 32.0),    # B200, MI300
)


def sglang_defaults(hardware: HardwareSpec | str, gpus: int = 1) -> tuple[int, float]:
    """(chunked_prefill_size, mem_fraction_static) of SGLang's server on this GPU with tp*pp = `gpus`
    (server_args.py: the tier table above; mem_fraction_static = (gpu_mem - reserved) / gpu_mem)."""
    gib = _hw(hardware).memory.capacity_bytes / 2**30
    chunk, reserved = next((c, r(gpus)) for top, c, r in _SGLANG_TIERS if gib < top)
    return chunk, round((gib - reserved) / gib, 3)


def _hw(hardware: HardwareSpec | str) -> HardwareSpec:
    return load_hardware(hardware) if isinstance(hardware, str) else hardware


# ------------------------------------------------------------------------------------------------ the table
@dataclass(frozen=True, slots=True)
class EngineContext:
    """What an engine's own defaults may depend on: the GPU, the replica's GPU count, the model's context length
    (max_model_len), the longest prompt it must admit (a benchmark row's isl; None = the context length) and the
    model's name (an eager stack's host cost per launch depends on the model's code)."""

    hardware: HardwareSpec | None = None
    gpus: int = 1
    max_model_len: int | None = None
    longest_prompt: int | None = None
    model: str | None = None

    def need_hw(self, what: str) -> HardwareSpec:
        if self.hardware is None:
            raise ValueError(f"{what} depends on the GPU; give the hardware")
        return self.hardware

    def need_len(self, what: str) -> int:
        if self.max_model_len is None:
            raise ValueError(f"{what} depends on the model's context length (max_model_len); give the model")
        return self.max_model_len


@dataclass(frozen=True, slots=True)
class Rule:
    """A setting the engine derives from the GPU or the model: `text` for the docs, `fn` to evaluate it."""

    text: str
    fn: Callable[[EngineContext], Any]

    def __str__(self) -> str:
        return self.text


Setting = Any  # a plain value or a Rule


@dataclass(frozen=True, slots=True)
class EngineRow:
    """One row of the table: an engine over a version range, each setting with the source it was read from."""

    engine: str
    versions: str  # PEP 440 specifier set ("" = the engine has no versions)
    label: str
    scheduler: Setting  # roofsim scheduler kind (simulator/config.py)
    max_batched_tokens: Setting
    max_num_seqs: Setting
    chunk_size: Setting  # None = chunked prefill off
    prefix_caching: Setting
    preemption: str
    gpu_memory_utilization: Setting
    sources: tuple[tuple[str, str], ...]  # (setting, where the engine sets it)
    notes: tuple[str, ...] = ()
    overlap: bool = False  # the next iteration is formed while the current one runs (orca scheduler option)
    host_s_per_launch: Setting = 0.0  # eager execution: host seconds per kernel launch (0 = not host-bound)
    eager_prompts_only: bool = False  # host_s_per_launch only on iterations with a prompt (CUDA graphs otherwise)
    no_evict: bool = False  # admission reserves KV for every running request's whole sequence (orca option)
    # host costs of the serving process (ReplicaGroup fields of the same names; 0 / None = none beyond the
    # calibration's step overheads)
    frontend_s_per_request: Setting = 0.0
    frontend_s_per_token: Setting = 0.0
    host_s_per_seq: Setting = None  # replaces Calibration.step_overhead_per_seq_s; None = the calibration's
    prefill_s_per_seq: Setting = 0.0  # seconds per prompt of a step with prefills, GPUs idle (HostDispatchFloor)
    attn_backend: Setting = ""  # attention-backend policy (model.graph.AttnPolicy); "" = roofsim's default pricing

    @property
    def name(self) -> str:
        return f"{self.engine}{self.versions}" if self.versions else self.engine

    def contains(self, version: Version) -> bool:
        return not self.versions or SpecifierSet(self.versions).contains(version, prereleases=True)


# The replica-group fields (simulator/config.py ReplicaGroup) an engine fills besides its scheduler table.
ENGINE_GROUP_FIELDS = ("gpu_memory_utilization", "prefix_caching", "host_s_per_launch", "eager_prompts_only",
                       "frontend_s_per_request", "frontend_s_per_token", "host_s_per_seq", "prefill_s_per_seq",
                       "attn_backend")


@dataclass(frozen=True, slots=True)
class EngineProfile:
    """An engine row resolved for one GPU and model: the scheduler settings roofsim simulates it with."""

    name: str  # the row, e.g. "vllm>=0.9,<1.0"
    label: str
    scheduler: str
    max_batched_tokens: int
    max_num_seqs: int
    chunk_size: int | None
    prefix_caching: bool
    preemption: str
    gpu_memory_utilization: float
    sources: tuple[tuple[str, str], ...] = field(default=(), compare=False)
    notes: tuple[str, ...] = field(default=(), compare=False)
    overlap: bool = False
    host_s_per_launch: float = 0.0
    eager_prompts_only: bool = False
    no_evict: bool = False
    frontend_s_per_request: float = 0.0
    frontend_s_per_token: float = 0.0
    host_s_per_seq: float | None = None
    prefill_s_per_seq: float = 0.0
    attn_backend: str = ""

    def scheduler_config(self) -> dict[str, Any]:
        """The `scheduler` table of a replica group (simulator/config.py SchedulerConfig)."""
        d: dict[str, Any] = {"kind": self.scheduler, "max_num_seqs": self.max_num_seqs,
                             "max_batched_tokens": self.max_batched_tokens, "preemption": self.preemption}
        if self.scheduler == "sarathi":
            d["chunk_size"] = self.chunk_size if self.chunk_size is not None else self.max_batched_tokens
        if self.scheduler == "orca":
            d["overlap"] = self.overlap
            d["no_evict"] = self.no_evict
        return d

    def group_settings(self) -> dict[str, Any]:
        """The replica-group fields this engine fills when the user did not set them."""
        return {"scheduler": self.scheduler_config(), **{k: getattr(self, k) for k in ENGINE_GROUP_FIELDS}}

    def summary(self) -> str:
        chunk = f"chunked prefill {self.chunk_size}" if self.chunk_size else "no chunked prefill"
        overlap = ", overlap scheduler" if self.overlap else ""
        if self.host_s_per_launch:
            overlap += (f", eager host dispatch {self.host_s_per_launch * 1e6:.1f} us per kernel launch"
                        + (" (iterations with a prompt; CUDA graphs otherwise)" if self.eager_prompts_only else ""))
        overlap += ", KV reserved to completion (no eviction)" if self.no_evict else ""
        if self.frontend_s_per_request or self.frontend_s_per_token:
            overlap += (f", front end {self.frontend_s_per_request * 1e3:g} ms per request + "
                        f"{self.frontend_s_per_token * 1e6:g} us per streamed token")
        if self.host_s_per_seq is not None:
            overlap += f", engine host time {self.host_s_per_seq * 1e6:g} us per running sequence per step"
        if self.prefill_s_per_seq:
            overlap += f", {self.prefill_s_per_seq * 1e3:g} ms per prompt of a prefill step"
        return (f"{self.name} ({self.label}): {self.scheduler} scheduler{overlap}, {chunk}, token budget "
                f"{self.max_batched_tokens}, max_num_seqs {self.max_num_seqs}, prefix caching "
                f"{'on' if self.prefix_caching else 'off'}, gpu_memory_utilization {self.gpu_memory_utilization:g}")


def _v0_chunked(budget: int) -> Rule:
    return Rule(f"on when max_model_len > {VLLM_LONG_CONTEXT_TOKENS} ({budget} tokens), else off",
                lambda c: budget if c.need_len("vLLM V0 chunked prefill") > VLLM_LONG_CONTEXT_TOKENS else None)


def _v0_kind() -> Rule:
    return Rule("sarathi when chunked, else vllm",
                lambda c: "sarathi" if c.need_len("vLLM V0 scheduler") > VLLM_LONG_CONTEXT_TOKENS else "vllm")


def _v0_budget(chunked: int) -> Rule:
    def fn(c: EngineContext) -> int:
        n = c.need_len("vLLM V0 max_num_batched_tokens")
        return chunked if n > VLLM_LONG_CONTEXT_TOKENS else max(n, 2048)
    return Rule(f"{chunked} when chunked, else max(max_model_len, 2048)", fn)


_V0_SOURCES = (
    ("max_num_seqs", "vllm/engine/arg_utils.py EngineArgs.max_num_seqs = 256"),
    ("max_batched_tokens", "vllm/config.py SchedulerConfig.__post_init__: max(max_model_len, 2048) without "
                           "chunked prefill"),
    ("chunked prefill", "vllm/engine/arg_utils.py: enable_chunked_prefill None -> on for max_model_len > 32768 "
                        "(use_long_context), else off"),
    ("prefix_caching", "vllm/engine/arg_utils.py enable_prefix_caching = False (V0)"),
    ("preemption", "vllm/core/scheduler.py: recompute for single-sequence groups (swap only for beam search)"),
    ("gpu_memory_utilization", "vllm/engine/arg_utils.py gpu_memory_utilization = 0.9"),
)
_VLLM_ATTN_RULE = Rule("vLLM V1 by GPU: Hopper FA3, Ampere / Ada / Blackwell workstation FA2 (an fp8 KV cache or "
                       "head dim > 256: FlashInfer at head dim 64 / 128 / 256, else Triton; attention sinks: Triton), "
                       "datacenter Blackwell FlashInfer",
                       lambda c: vllm_v1_attn_backend(c.hardware))
_SGLANG_ATTN_RULE = Rule("SGLang by GPU: Hopper FA3 (Triton past head dim 256), B200 trtllm_mha, others FlashInfer "
                         "(Triton for head dims other than 128 / 256 and MLA; on Blackwell workstation GPUs for a "
                         "sliding window too)", lambda c: sglang_attn_backend(c.hardware))
_ATTN_SOURCE = ("attn_backend", "the attention kernels by GPU architecture and model feature (model.graph."
                "attention_backend): vllm/attention/utils/fa_utils.py get_flash_attn_version, vllm/platforms/cuda.py, "
                "vllm/v1/attention/backends/flash_attn.py (sinks only with FA3); "
                "SGLang docs/advanced_features/attention_backend.md; the fallbacks as AIConfigurator's collectors "
                "recorded the backend per row (kernel_source)")

_TRTLLM_ATTN_SOURCE = ("attn_backend", "TensorRT-LLM's own attention kernels, FMHA for context and XQA / masked MHA "
                       "for generation (docs/source/advanced/gpt-attention.md): roofsim's default attention pricing, "
                       "no fallback kernel")


_V1_SOURCES = (
    ("scheduler", "vllm/engine/arg_utils.py _set_default_args_v1: 'V1 always uses chunked prefills'; decodes "
                  "first, prompt chunks fill the token budget (vllm/v1/core/sched/scheduler.py)"),
    ("prefix_caching", "vllm/engine/arg_utils.py _set_default_args_v1: 'V1 enables prefix caching by default'"),
    ("preemption", "vllm/v1/core/sched/scheduler.py: recompute (V1 has no swap)"),
    ("gpu_memory_utilization", "vllm/config.py CacheConfig.gpu_memory_utilization = 0.9"),
    _ATTN_SOURCE,
)


def _v1_big(i: int, what: str) -> Rule:
    return Rule(f"{VLLM_V1_BIG_GPU[i]} on GPUs >= 70 GiB that are not A100, else {VLLM_V1_OTHER_GPU[i]}",
                lambda c: vllm_v1_defaults(c.need_hw(f"vLLM V1 {what}"))[i])


def _sglang_chunk() -> Rule:
    return Rule("by GPU memory: < 35 GiB 2048, < 60 GiB 4096, < 160 GiB 8192, else 16384",
                lambda c: sglang_defaults(c.need_hw("SGLang chunked_prefill_size"), c.gpus)[0])


def _sglang_budget() -> Rule:
    def fn(c: EngineContext) -> int:
        chunk = sglang_defaults(c.need_hw("SGLang chunked_prefill_size"), c.gpus)[0]
        longest = c.longest_prompt if c.longest_prompt is not None else c.need_len("SGLang token budget")
        return max(chunk, longest)
    return Rule("max(chunked_prefill_size, longest prompt = max_model_len, or a benchmark row's isl)", fn)


ENGINES: tuple[EngineRow, ...] = (
    EngineRow(
        "roofsim-default", "", "roofsim's own default (vLLM V0-style, no chunked prefill, fixed 8192 budget)",
        "vllm", DEFAULT_MAX_BATCHED_TOKENS, VLLM_MAX_NUM_SEQS, None, False, "recompute", 0.9,
        (("all", "roofsim simulator/config.py schema defaults; vLLM V0 values for an 8k-context model"),),
        ("a replica group of a run file that names no engine; prompts longer than 8192 tokens are rejected",)),
    EngineRow(
        "vllm", "<0.6", "vLLM V0, chunked prefill off unless the model's context is > 32k",
        _v0_kind(), _v0_budget(VLLM_CHUNKED_PREFILL_TOKENS), VLLM_MAX_NUM_SEQS,
        _v0_chunked(VLLM_CHUNKED_PREFILL_TOKENS), False, "recompute", VLLM_GPU_MEMORY_UTILIZATION,
        (*_V0_SOURCES, ("chunk_size", "vllm/config.py SchedulerConfig: 512 with chunked prefill; vLLM 0.4-0.5 "
                                      "docs/source/models/performance.rst"))),
    EngineRow(
        "vllm", ">=0.6,<0.7", "vLLM V0, chunked prefill optional (--enable-chunked-prefill)",
        _v0_kind(), _v0_budget(VLLM_CHUNKED_PREFILL_TOKENS), VLLM_MAX_NUM_SEQS,
        _v0_chunked(VLLM_CHUNKED_PREFILL_TOKENS), False, "recompute", VLLM_GPU_MEMORY_UTILIZATION,
        (*_V0_SOURCES, ("chunk_size", "vllm/config.py SchedulerConfig.__post_init__ (0.6.x): 512 with chunked "
                                      "prefill"))),
    EngineRow(
        "vllm", ">=0.7,<0.8", "vLLM V0, chunked prefill optional, 2048-token chunked budget",
        _v0_kind(), _v0_budget(VLLM_DEFAULT_CHUNKED_TOKENS), VLLM_MAX_NUM_SEQS,
        _v0_chunked(VLLM_DEFAULT_CHUNKED_TOKENS), False, "recompute", VLLM_GPU_MEMORY_UTILIZATION,
        (*_V0_SOURCES, ("chunk_size", "vllm/config.py _DEFAULT_MAX_NUM_BATCHED_TOKENS = 2048 with chunked "
                                      "prefill"))),
    EngineRow(
        "vllm", ">=0.8,<0.9", "vLLM V1 (default engine from 0.8), OpenAI server",
        "sarathi", VLLM_V1_OTHER_GPU[0], VLLM_V1_OTHER_GPU[1], VLLM_V1_OTHER_GPU[0], True, "recompute",
        VLLM_GPU_MEMORY_UTILIZATION,
        (*_V1_SOURCES, ("max_batched_tokens, max_num_seqs", "vllm/engine/arg_utils.py _set_default_args_v1 "
                        "(0.8.x): OPENAI_API_SERVER 2048 tokens, max_num_seqs 256 on every GPU"),
         ("host_s_per_seq", f"{VLLM_V1_HOST_S_PER_SEQ * 1e6:g} us engine-core host time per running sequence "
                            "per step, not overlapped with the GPU (fitted on the vllm_llm-k8s vLLM 0.8.3 TP8 "
                            "logs, docs/validation-e2e.md Target 2; replaces the calibration's "
                            "step_overhead_per_seq_s)"),
         ("frontend_s_per_request, frontend_s_per_token", f"API server, one Python process: "
                            f"{VLLM_FRONTEND_S_PER_REQUEST * 1e3:g} ms per request and "
                            f"{VLLM_FRONTEND_S_PER_TOKEN * 1e6:g} us per streamed token (read off the "
                            "vllm_llm-k8s vLLM 0.8.3 rate-inf logs, docs/validation-e2e.md Target 2)")),
        ("the host costs are fitted on vLLM 0.8.3 and held for 0.8.x only; the later rows keep none (vLLM moved "
         "work off the step path since, e.g. --async-scheduling)",),
        frontend_s_per_request=VLLM_FRONTEND_S_PER_REQUEST, frontend_s_per_token=VLLM_FRONTEND_S_PER_TOKEN,
        host_s_per_seq=VLLM_V1_HOST_S_PER_SEQ,
        attn_backend=_VLLM_ATTN_RULE),
    EngineRow(
        "vllm", ">=0.9,<1.0", "vLLM V1, OpenAI server, budget by GPU class",
        "sarathi", _v1_big(0, "max_num_batched_tokens"), _v1_big(1, "max_num_seqs"),
        _v1_big(0, "max_num_batched_tokens"), True, "recompute", VLLM_GPU_MEMORY_UTILIZATION,
        (*_V1_SOURCES, ("max_batched_tokens, max_num_seqs", "vllm/engine/arg_utils.py _set_default_args_v1, "
                        "later EngineArgs.get_batch_defaults: device memory >= 70 GiB and 'a100' not in the device "
                        "name -> OPENAI_API_SERVER 8192 / 1024, else 2048 / 256 (PR #17885 keeps A100 out)")),
        attn_backend=_VLLM_ATTN_RULE),
    EngineRow(
        "trtllm", ">=0.11,<1.0", "TensorRT-LLM 0.x (TensorRT engines), in-flight batching",
        "orca", TRTLLM_MAX_NUM_TOKENS, TRTLLM_MAX_BATCH_SIZE, None, False, "recompute",
        TRTLLM_FREE_GPU_MEMORY_FRACTION,
        (("scheduler", "in-flight batching: context (whole prompts) and generation requests in one batch "
                       "(docs/source/advanced/gpt-attention.md, inflight batching)"),
         ("max_batched_tokens, max_num_seqs", "trtllm-build --max_num_tokens 8192, --max_batch_size 2048 "
                                              "(tensorrt_llm/builder.py BuildConfig defaults)"),
         ("chunked prefill", "ExecutorConfig enable_chunked_context = False"),
         ("prefix_caching", "executor KvCacheConfig enable_block_reuse = False (0.x C++ executor default)"),
         ("gpu_memory_utilization", "KvCacheConfig free_gpu_memory_fraction = 0.9 (of the memory left after "
                                    "weights; roofsim applies it to the whole GPU)"),
         ("preemption", _NO_EVICT_SOURCE),
         _TRTLLM_ATTN_SOURCE),
        ("a prompt longer than max_num_tokens is rejected (no chunked context)",), no_evict=True,
        attn_backend="trtllm"),
    EngineRow(
        "trtllm", ">=1.0,<2.0", "TensorRT-LLM 1.x (PyTorch backend, trtllm-serve), in-flight batching",
        "orca", TRTLLM_MAX_NUM_TOKENS, TRTLLM_MAX_BATCH_SIZE, None, True, "recompute",
        TRTLLM_FREE_GPU_MEMORY_FRACTION,
        (("scheduler", "tensorrt_llm/_torch/pyexecutor: in-flight batching of context and generation requests"),
         ("max_batched_tokens, max_num_seqs", "tensorrt_llm/llmapi/llm_args.py max_num_tokens 8192, "
                                              "max_batch_size 2048 (trtllm-serve --help)"),
         ("chunked prefill", "llm_args.py enable_chunked_prefill = False"),
         ("prefix_caching", "llm_args.py KvCacheConfig.enable_block_reuse = True"),
         ("gpu_memory_utilization", "KvCacheConfig.free_gpu_memory_fraction = 0.9"),
         ("preemption", _NO_EVICT_SOURCE),
         _TRTLLM_ATTN_SOURCE,
         ("overlap", "llm_args.py disable_overlap_scheduler = False: PyExecutor._executor_loop_overlap fetches "
                     "new requests and schedules iteration n+1 before iteration n's outputs are processed "
                     "(tensorrt_llm/_torch/pyexecutor/py_executor.py; docs/source/torch/features/"
                     "overlap_scheduler.md), so a request arriving while the GPU is busy joins one iteration "
                     "later"),
         ("host_s_per_launch", "CUDA graphs replay generation-only iterations only (llm_args.py CudaGraphConfig; "
                               "model_engine.py runs a batch with a context request eagerly; the piecewise "
                               "prefill CUDA graphs that reduce 'context-phase launch overhead' are opt-in, "
                               "TorchCompileConfig), so an iteration with a prompt takes at least its kernel "
                               f"launches x {TRTLLM_HOST_S_PER_LAUNCH * 1e6:g} us (TRTLLM_HOST_S_PER_LAUNCH, fitted "
                               "on one silicon model and layout, docs/validation-e2e.md)")),
        ("a prompt longer than max_num_tokens is rejected (no chunked prefill)",
         "offline trtllm-bench runs size max_batch_size / max_num_tokens from memory: trtllm_bench_limits"),
        overlap=True, no_evict=True, host_s_per_launch=TRTLLM_HOST_S_PER_LAUNCH, eager_prompts_only=True,
        attn_backend="trtllm"),
    EngineRow(
        "sglang", ">=0.4,<1.0", "SGLang, prefill-first batches, radix cache",
        "vllm", _sglang_budget(), SGLANG_MAX_RUNNING_REQUESTS, _sglang_chunk(), True, "recompute",
        Rule("mem_fraction_static = (gpu_mem - reserved) / gpu_mem, reserved by GPU-memory tier and tp*pp",
             lambda c: sglang_defaults(c.need_hw("SGLang mem_fraction_static"), c.gpus)[1]),
        (("scheduler", "python/sglang/srt/managers/scheduler.py: a prefill batch runs whenever one can be formed, "
                       "decode otherwise; enable_mixed_chunk = False (server_args.py)"),
         ("chunk_size", "server_args.py _handle_gpu_memory_settings: chunked_prefill_size by GPU memory"),
         ("max_batched_tokens", "roofsim: a long prompt's back-to-back prefill chunks run as one prefill "
                                "iteration, so the budget is raised to the longest prompt (SGLang's own prefill "
                                "batch limit is max_prefill_tokens = 16384, server_args.py)"),
         ("max_num_seqs", "max_running_requests None -> model_runner max_num_reqs, min(max(., 2048), 4096)"),
         ("prefix_caching", "server_args.py disable_radix_cache = False"),
         ("preemption", "scheduler.py retract_decode: retracted requests are recomputed"),
         ("gpu_memory_utilization", "server_args.py mem_fraction_static from GPU memory and tp*pp"),
         _ATTN_SOURCE),
        ("modelled with roofsim's prefill-first `vllm` policy; chunked_prefill_size is reported, not simulated",),
        attn_backend=_SGLANG_ATTN_RULE),
    EngineRow(
        "splitwise", "", "eager PyTorch serving stack of splitwise-sim's DGX-A100/H100 profiles (2023), no CUDA graphs",
        "vllm", DEFAULT_MAX_BATCHED_TOKENS, VLLM_MAX_NUM_SEQS, None, False, "recompute", 0.9,
        (("stack", "splitwise-sim (Mutinifni/splitwise-sim) data/perf_model.csv; the stack is not named there (issue "
                   "#4), vLLM profiles are separate files (configs/performance_model/db.yaml)"),
         ("host_s_per_launch", "eager execution: every kernel is dispatched by the host; "
                               + ", ".join(f"{m.split('/')[-1]} {v * 1e6:g} us"
                                           for m, v in SPLITWISE_HOST_S_PER_LAUNCH.items())
                               + " per launch on the reference core (DGX A100's EPYC 7742; fitted on the DGX-A100 "
                               "rows, reported on the DGX-H100 rows; other models: Llama-2's), x the reference "
                               "core's speed / the DGX host core's (SPECrate2017_int_base per core, DGX_HOST_CPU: "
                               f"EPYC 7742 {DGX_A100_HOST.int_rate_per_core:.2f}, Xeon 8480C/+ "
                               f"{DGX_H100_HOST.int_rate_per_core:.2f}); an iteration takes max(GPU time, kernel "
                               "launches x host_s_per_launch) (simulator/strategy.py HostDispatchFloor)"),
         ("host_s_per_seq", f"{SPLITWISE_HOST_S_PER_SEQ * 1e6:g} us of host time per running sequence per iteration "
                            "(fitted on the DGX-A100 rows of batch > 1, reported on the DGX-H100 rows; the same on "
                            "both hosts)"),
         ("prefill_s_per_seq", f"{SPLITWISE_PREFILL_S_PER_SEQ * 1e3:g} ms per prompt of a prefill step, the GPUs "
                               "idling (fitted on the DGX-A100 prompt_time rows, reported on the DGX-H100 rows; not "
                               "scaled by the host core's speed)"),
         ("scheduler and limits", "roofsim-default's (the benchmark ran static batches: validation.e2e runs each row "
                                  "as one)")),
        ("for GPUs in a DGX A100 / DGX H100 host only (elsewhere set a replica group's host_s_per_launch and "
         "host_s_per_seq)",),
        host_s_per_launch=Rule("DGX host: the model's seconds per launch on the reference core x reference / host "
                               "core speed",
                               lambda c: dgx_host_s_per_launch(c.need_hw("splitwise host dispatch"), c.model)),
        host_s_per_seq=SPLITWISE_HOST_S_PER_SEQ, prefill_s_per_seq=SPLITWISE_PREFILL_S_PER_SEQ),
)

# What `simulate` (flags), `plan` and the dashboard run when no engine is named: the table's newest vLLM row (V1),
# the engine `validate run` replays vLLM logs with, so one name means one thing everywhere. roofsim-default (the
# schema defaults) stays selectable by name.
DEFAULT_ENGINE = "vllm"
ALIASES = {"tensorrt-llm": "trtllm", "tensorrt_llm": "trtllm", "trt-llm": "trtllm", "roofsim": "roofsim-default"}
_SPEC = re.compile(r"^\s*([A-Za-z][A-Za-z0-9_.\-]*)\s*(?:==\s*v?(\S+))?\s*$")


def engine_names() -> tuple[str, ...]:
    """The engine names the table knows (what `--engine` accepts without a version)."""
    return tuple(dict.fromkeys(r.engine for r in ENGINES))


def known_engines() -> tuple[str, ...]:
    """Every row's name, e.g. 'vllm>=0.9,<1.0' (for error messages and the docs)."""
    return tuple(r.name for r in ENGINES)


def engine_choices() -> tuple[str, ...]:
    """One name per row that selects it (the newest by bare name first): what a menu offers, e.g. the dashboard."""
    out: list[str] = list(engine_names())
    for r in ENGINES:
        if not r.versions:
            continue
        specs = list(SpecifierSet(r.versions))
        low = next((s.version for s in specs if s.operator == ">="), None)
        if low is None:  # "<0.6": the minor release before the bound
            major, minor = (int(x) for x in next(s.version for s in specs if s.operator == "<").split(".")[:2])
            low = f"{major}.{minor - 1}"
        out.append(f"{r.engine}=={low}")
    return tuple(out)


class UnknownEngineError(UnknownNameError, ValueError):
    """An engine name or version the table does not cover (a ValueError too, so pydantic reports it on the field)."""


def engine_row(spec: str) -> EngineRow:
    """The table row of `engine[==version]`; without a version the engine's newest row."""
    m = _SPEC.match(spec or "")
    if m is None:
        raise UnknownEngineError("engine", str(spec), known_engines())
    name, ver = m.group(1).lower(), m.group(2)
    name = ALIASES.get(name, name)
    rows = [r for r in ENGINES if r.engine == name]
    if not rows:
        raise UnknownEngineError("engine", spec, [*engine_names(), *known_engines()])
    if ver is None:
        return rows[-1]
    if not rows[0].versions:
        raise ValueError(f"engine {spec!r}: {name} has no versions; use {name!r}")
    try:
        version = Version(ver)
    except InvalidVersion:
        raise ValueError(f"engine {spec!r}: {ver!r} is not a version (e.g. {name}==0.10.1)") from None
    if version.is_prerelease or version.is_devrelease:
        version = Version(version.base_version)  # a release candidate gets its release's defaults
    for r in rows:
        if r.contains(version):
            return r
    raise UnknownEngineError("engine version", spec, [r.name for r in rows])


def _value(v: Setting, ctx: EngineContext) -> Any:
    return v.fn(ctx) if isinstance(v, Rule) else v


def engine_profile(spec: str, hardware: HardwareSpec | str | None = None, *, max_model_len: int | None = None,
                   gpus: int = 1, longest_prompt: int | None = None, model: str | None = None) -> EngineProfile:
    """The settings of `engine[==version]` (e.g. 'vllm==0.5.4', 'vllm' = the newest known, 'trtllm==1.0',
    'sglang') on this GPU for a model of `max_model_len` context tokens on tp*pp = `gpus` GPUs. Unknown engine or
    version: UnknownEngineError listing the known ones; a setting that depends on a missing input: ValueError."""
    row = engine_row(spec)
    hw = _hw(hardware) if hardware is not None else None
    ctx = EngineContext(hw, gpus, max_model_len, longest_prompt, model)
    try:
        vals = {k: _value(getattr(row, k), ctx) for k in (
            "scheduler", "max_batched_tokens", "max_num_seqs", "chunk_size", *ENGINE_GROUP_FIELDS)}
    except ValueError as e:
        raise ValueError(f"engine {spec!r} ({row.name}): {e}") from None
    return EngineProfile(name=row.name, label=row.label, preemption=row.preemption, sources=row.sources,
                         notes=row.notes, overlap=row.overlap, no_evict=row.no_evict, **vals)


def needs_model(spec: str) -> bool:
    """Whether the engine's settings depend on the model's context length (so the caller must load the model)."""
    row = engine_row(spec)
    return any(isinstance(getattr(row, k), Rule) and "max_model_len" in getattr(row, k).text for k in (
        "scheduler", "max_batched_tokens", "max_num_seqs", "chunk_size"))


def engine_table_markdown() -> str:
    """The table of docs/engines.md, generated from ENGINES (a test keeps the page equal to it)."""
    def cell(v: Setting) -> str:
        if v is None:
            return "off"
        if isinstance(v, bool):
            return "on" if v else "off"
        return str(v).replace("|", "\\|")
    head = ("| engine | versions | what | scheduler | token budget | max_num_seqs | chunked prefill | prefix caching "
            "| preemption | gpu_memory_utilization | attention backend |\n|---|---|---|---|---|---|---|---|---|---|---|\n")
    rows = [f"| `{r.engine}` | `{r.versions or '-'}` | {r.label} | {cell(r.scheduler)}{' (overlap)' if r.overlap else ''}"
            f"{' (no-evict)' if r.no_evict else ''} "
            f"| {cell(r.max_batched_tokens)} "
            f"| {cell(r.max_num_seqs)} | {cell(r.chunk_size)} | {cell(r.prefix_caching)} | {r.preemption} "
            f"| {cell(r.gpu_memory_utilization)} | {cell(r.attn_backend or '-')} |" for r in ENGINES]
    sources = []
    for r in ENGINES:
        sources.append(f"\n**{r.name}**\n")
        sources += [f"- {what}: {src}" for what, src in r.sources]
        sources += [f"- note: {n}" for n in r.notes]
    return head + "\n".join(rows) + "\n\n### Sources\n" + "\n".join(sources) + "\n"


# ------------------------------------------------------------------------------------------ trtllm-bench
def trtllm_bench_limits(param_count: float, weight_bytes_per_param: float, kv_bytes_per_token: float,
                        hardware: HardwareSpec | str, tp: int, pp: int, isl: int, osl: int,
                        kv_fraction: float = 0.95) -> tuple[int, int]:
    """(max_batch_size, max_num_tokens) that `trtllm-bench throughput` picks for an offline run when none is given
    (tensorrt_llm/bench/build/tuning.py calc_engine_setting + finetune_setting): the KV memory left after the
    weights, x 0.95, holds `requests` sequences of isl + osl tokens; batch = min(requests, 4096) / pp rounded up
    (to 32 below 256, min 64; to 128 below 1024; else to 256); tokens = min(batch x (1 + isl/osl), 32768) rounded up
    (to 256 below 4096, min 2048; to 512 below 8192; else to 1024). `kv_bytes_per_token` is for the whole model."""
    gpus = tp * pp
    free = _hw(hardware).memory.capacity_bytes * gpus - param_count * weight_bytes_per_param
    if free <= 0:
        raise ValueError(f"the weights ({param_count * weight_bytes_per_param / 2**30:.1f} GiB) do not fit on "
                         f"{gpus} GPU(s)")
    requests = free * kv_fraction / (kv_bytes_per_token * (isl + osl))
    raw_bs = min(requests, 4096) / pp
    raw_tokens = min(raw_bs * (1 + isl / osl), 32768)
    if raw_bs < 256:
        bs = max(64, 32 * math.ceil(raw_bs / 32))
    elif raw_bs < 1024:
        bs = 128 * math.ceil(raw_bs / 128)
    else:
        bs = 256 * math.ceil(raw_bs / 256)
    if raw_tokens < 4096:
        tokens = max(2048, 256 * math.ceil(raw_tokens / 256))
    elif raw_tokens < 8192:
        tokens = 512 * math.ceil(raw_tokens / 512)
    else:
        tokens = 1024 * math.ceil(raw_tokens / 1024)
    return bs, tokens


__all__ = [
    "ALIASES", "DEFAULT_ENGINE", "DGX_A100_HOST", "DGX_H100_HOST", "DGX_HOST_CPU", "HostCpu", "SPLITWISE_DEFAULT_MODEL",
    "SPLITWISE_HOST_S_PER_LAUNCH", "SPLITWISE_HOST_S_PER_SEQ", "SPLITWISE_PREFILL_S_PER_SEQ", "SPLITWISE_REF_HOST",
    "TRTLLM_HOST_S_PER_LAUNCH", "dgx_host", "dgx_host_slowdown", "dgx_host_s_per_launch", "sglang_attn_backend",
    "vllm_v1_attn_backend", "DEFAULT_MAX_BATCHED_TOKENS", "ENGINE_GROUP_FIELDS", "ENGINES", "EngineContext",
    "EngineProfile", "EngineRow", "Rule",
    "SGLANG_CHUNKED_PREFILL_SIZE", "SGLANG_MAX_RUNNING_REQUESTS", "TRTLLM_FREE_GPU_MEMORY_FRACTION",
    "TRTLLM_MAX_BATCH_SIZE", "TRTLLM_MAX_NUM_TOKENS", "UnknownEngineError", "VLLM_CHUNKED_PREFILL_TOKENS",
    "VLLM_DEFAULT_CHUNKED_TOKENS", "VLLM_GPU_MEMORY_UTILIZATION", "VLLM_LONG_CONTEXT_TOKENS", "VLLM_MAX_NUM_SEQS",
    "VLLM_V1_BIG_GPU", "VLLM_V1_BIG_GPU_BYTES", "VLLM_V1_OTHER_GPU", "VLLM_V1_HOST_S_PER_SEQ",
    "VLLM_FRONTEND_S_PER_REQUEST", "VLLM_FRONTEND_S_PER_TOKEN", "engine_choices", "engine_names",
    "engine_profile",
    "engine_table_markdown",
    "engine_row", "known_engines", "needs_model", "sglang_defaults", "trtllm_bench_limits", "vllm_v1_defaults",
]
