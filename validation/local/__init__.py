"""Measurements on the local machine: kernel microbenchmarks and a real numpy transformer serving loop.

These produce measured data (kernel tables, vLLM-layout serving logs) that the validation layer compares the
roofline cost model and the simulator against, on hardware anyone has: the CPU running the tests.
"""

from roofsim.validation.local.microbench import (
    KernelRecord,
    MachineMeasurements,
    measure_attention_decode,
    measure_attention_prefill,
    measure_gemm,
    measure_machine,
    measure_overheads,
    measure_stream,
)
from roofsim.validation.local.serve import RequestLog, RunLog, run_serving, vllm_log_dict, write_vllm_log
from roofsim.validation.local.transformer import (
    LocalLlama,
    StepRecord,
    build_local_llama,
    check_memory,
    estimate_memory_bytes,
    fill_cache,
    measure_step_times,
    small_llama_spec,
)

__all__ = [
    "KernelRecord",
    "LocalLlama",
    "MachineMeasurements",
    "RequestLog",
    "RunLog",
    "StepRecord",
    "build_local_llama",
    "check_memory",
    "estimate_memory_bytes",
    "fill_cache",
    "measure_attention_decode",
    "measure_attention_prefill",
    "measure_gemm",
    "measure_machine",
    "measure_overheads",
    "measure_step_times",
    "measure_stream",
    "run_serving",
    "small_llama_spec",
    "vllm_log_dict",
    "write_vllm_log",
]
