"""Measurements on the local machine: kernel microbenchmarks, a real numpy transformer serving loop, and the
calibration of this machine (`roofsim calibrate --local`) fitted to them.

These produce measured data (kernel tables, vLLM-layout serving logs) that the validation layer compares the
roofline cost model and the simulator against, on hardware anyone has: the CPU running the tests. Modules:
timing (records, timing harness), kernels (the kernel families), machine (machine facts, BLAS threads,
allocator), microbench (the generic grid), transformer and serve (the numpy Llama and its serving loop),
torch_gemm (GEMMs through torch), measure (what calibrate --local times), hardware (the HardwareSpec of this
machine), calibrate (the fit and the files it writes; not re-exported here, since it imports scipy.optimize: use
`roofsim.validation.local.calibrate`). The command lines are `roofsim calibrate --local` and `roofsim measure`
(app/); nothing here parses arguments.
"""

from roofsim.validation.local.hardware import dumps_hardware, machine_hardware
from roofsim.validation.local.kernels import (
    measure_attention_decode,
    measure_attention_prefill,
    measure_gemm,
    measure_overheads,
    measure_stream,
)
from roofsim.validation.local.machine import (
    MachineFacts,
    blas_threads,
    set_blas_threads,
    use_caching_allocator,
)
from roofsim.validation.local.measure import FP32, LocalMeasurements, measure_local
from roofsim.validation.local.microbench import MachineMeasurements, measure_machine
from roofsim.validation.local.serve import (
    RequestLog,
    RunLog,
    local_model_config,
    run_serving,
    vllm_log_dict,
    write_model_config,
    write_vllm_log,
)
from roofsim.validation.local.timing import KernelRecord, time_call, time_interleaved
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
    "FP32",
    "KernelRecord",
    "LocalLlama",
    "LocalMeasurements",
    "MachineFacts",
    "MachineMeasurements",
    "RequestLog",
    "RunLog",
    "StepRecord",
    "blas_threads",
    "build_local_llama",
    "check_memory",
    "dumps_hardware",
    "estimate_memory_bytes",
    "fill_cache",
    "local_model_config",
    "machine_hardware",
    "measure_attention_decode",
    "measure_attention_prefill",
    "measure_gemm",
    "measure_local",
    "measure_machine",
    "measure_overheads",
    "measure_step_times",
    "measure_stream",
    "run_serving",
    "set_blas_threads",
    "small_llama_spec",
    "time_call",
    "time_interleaved",
    "use_caching_allocator",
    "vllm_log_dict",
    "write_model_config",
    "write_vllm_log",
]
