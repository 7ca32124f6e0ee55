"""Default batching settings of the serving engines roofsim stands in for (vLLM, TensorRT-LLM, SGLang), each with
the engine source it comes from; the scheduler configs, the log replay and the benchmark-row replay read them here."""

from __future__ import annotations

from roofsim.hardware_specs.catalog import load_hardware
from roofsim.hardware_specs.spec import HardwareSpec

# vLLM (v0) EngineArgs.max_num_seqs = 256 (vllm/engine/arg_utils.py); the scheduler configs' default.
VLLM_MAX_NUM_SEQS = 256
# roofsim's default iteration token budget for policies that do not chunk prompts. vLLM v0 without chunked prefill
# uses max(max_model_len, 2048) (vllm/config.py SchedulerConfig), i.e. 8192 for the 8k-context Llama-3 models.
DEFAULT_MAX_BATCHED_TOKENS = 8192
# vLLM v0 with chunked prefill: "512 is the default max_num_batched_tokens for chunked prefill"
# (vLLM 0.4-0.5 docs/source/models/performance.rst); the Sarathi scheduler's default chunk.
VLLM_CHUNKED_PREFILL_TOKENS = 512

# vLLM V1 OpenAI API server, vllm/engine/arg_utils.py `_set_default_args_v1` (vLLM >= 0.9): GPUs with >= 70 GiB
# that are not A100 get max_num_batched_tokens 8192 / max_num_seqs 1024, the others (and every GPU in 0.8.x)
# 2048 / 256.
VLLM_V1_BIG_GPU_BYTES = 70 * 2**30
VLLM_V1_BIG_GPU = (8192, 1024)
VLLM_V1_OTHER_GPU = (2048, 256)

# TensorRT-LLM trtllm-serve (PyTorch backend) defaults: max_num_tokens 8192, max_batch_size 2048, chunked context
# off (trtllm-serve --help; the engine profile of validation/e2e.py `engine_scheduler`).
TRTLLM_MAX_NUM_TOKENS = 8192
TRTLLM_MAX_BATCH_SIZE = 2048
# SGLang: chunked_prefill_size 8192 on large-memory GPUs (python/sglang/srt/server_args.py, sized from GPU memory),
# max_running_requests 1024 (the engine profile of validation/e2e.py `engine_scheduler`).
SGLANG_CHUNKED_PREFILL_SIZE = 8192
SGLANG_MAX_RUNNING_REQUESTS = 1024


def vllm_v1_defaults(hardware: HardwareSpec | str) -> tuple[int, int]:
    """(max_num_batched_tokens, max_num_seqs) of vLLM V1's OpenAI server on this GPU (the big-GPU rule above)."""
    hw = load_hardware(hardware) if isinstance(hardware, str) else hardware
    big = hw.memory.capacity_bytes >= VLLM_V1_BIG_GPU_BYTES and "a100" not in hw.id
    return VLLM_V1_BIG_GPU if big else VLLM_V1_OTHER_GPU


__all__ = [
    "DEFAULT_MAX_BATCHED_TOKENS", "SGLANG_CHUNKED_PREFILL_SIZE", "SGLANG_MAX_RUNNING_REQUESTS",
    "TRTLLM_MAX_BATCH_SIZE", "TRTLLM_MAX_NUM_TOKENS", "VLLM_CHUNKED_PREFILL_TOKENS", "VLLM_MAX_NUM_SEQS",
    "VLLM_V1_BIG_GPU", "VLLM_V1_BIG_GPU_BYTES", "VLLM_V1_OTHER_GPU", "vllm_v1_defaults",
]
