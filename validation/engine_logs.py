"""What a vLLM server log says about memory: the memory profiler's lines of every worker (total, utilisation,
weights, non-torch memory, activation peak, KV cache) and the engine's "Maximum concurrency" line, so the memory
planner (roofsim.model.memory.plan_memory) can be checked against what the engine really reserved.

The lines read (vLLM 0.7-0.8 `worker.py` memory profiling and `executor_base.py`; the text is quoted by the regular
expressions below):

    the current vLLM instance can use total_gpu_memory (39.49GiB) x gpu_memory_utilization (0.90) = 35.55GiB
    model weights take 16.46GiB; non_torch_memory takes 0.93GiB; PyTorch activation peak memory takes 0.25GiB;
        the rest of the memory reserved for KV Cache is 17.90GiB.
    Maximum concurrency for 131072 tokens per request: 3.12x

Ray prefixes (`(RayWorkerWrapper pid=..., ip=...)`), ANSI colours and "[repeated Nx across cluster]" suffixes are
ignored; a repeated line stands for the workers it names but is read once.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from roofsim.hardware_specs.errors import InputError
from roofsim.hardware_specs.loading import open_text_lines

__all__ = ["VllmMemoryProfile", "VllmWorkerMemory", "read_vllm_memory_profile"]

GIB = 2**30
_N = r"\d+(?:\.\d+)?"  # a decimal number as vLLM prints it
_TOTAL = re.compile(rf"total_gpu_memory \((?P<total>{_N})GiB\) x gpu_memory_utilization \((?P<util>{_N})\)")
_SPLIT = re.compile(rf"model weights take (?P<w>{_N})GiB; non_torch_memory takes (?P<nt>{_N})GiB; PyTorch "
                    rf"activation peak memory takes (?P<act>{_N})GiB; the rest of the memory reserved for KV Cache "
                    rf"is (?P<kv>{_N})GiB")
_CONCURRENCY = re.compile(rf"Maximum concurrency for (?P<tokens>\d{{1,18}}) tokens per request: (?P<x>{_N})x")
_VERSION = re.compile(r"Initializing an? (?P<engine>V\d) LLM engine \(v(?P<version>[\w.+-]+)\)")


@dataclass(frozen=True)
class VllmWorkerMemory:
    """One worker's memory profile, bytes (the log prints GiB to two decimals: +-0.005 GiB)."""

    weights_bytes: float
    non_torch_bytes: float
    activation_bytes: float
    kv_bytes: float
    line: int


@dataclass(frozen=True)
class VllmMemoryProfile:
    """The memory lines of one vLLM server start-up."""

    path: str
    version: str | None  # "0.8.3" from "Initializing a V0 LLM engine (v0.8.3)"
    total_bytes: float  # the runtime's device total vLLM multiplies by the utilisation
    gpu_memory_utilization: float
    workers: tuple[VllmWorkerMemory, ...]  # distinct profile lines (a repeated line is read once)
    max_concurrency_tokens: int | None  # "Maximum concurrency for N tokens per request"
    max_concurrency: float | None  # its "Mx": KV capacity of the smallest worker / N tokens

    @property
    def kv_tokens(self) -> float | None:
        """KV tokens the engine holds per replica (max_concurrency x tokens; the smallest worker decides)."""
        if self.max_concurrency is None or self.max_concurrency_tokens is None:
            return None
        return self.max_concurrency * self.max_concurrency_tokens


def read_vllm_memory_profile(path: Path | str) -> VllmMemoryProfile:
    """The memory profile of the first engine start-up in a vLLM server log; InputError naming the file when it has
    no memory-profiling lines (vLLM < 0.7 and V1 engines print other lines: not read yet)."""
    path = Path(path)
    total = util = None
    version = None
    workers: list[VllmWorkerMemory] = []
    seen: set[tuple[str, ...]] = set()
    conc_tokens = conc = None
    with open_text_lines(path, what="vLLM server log") as lines:
        for i, line in enumerate(lines, 1):
            if version is None and (m := _VERSION.search(line)):
                version = m["version"]
            if total is None and (m := _TOTAL.search(line)):
                total, util = float(m["total"]) * GIB, float(m["util"])
            elif m := _SPLIT.search(line):
                key = (m["w"], m["nt"], m["act"], m["kv"])
                if key not in seen:
                    seen.add(key)
                    workers.append(VllmWorkerMemory(float(m["w"]) * GIB, float(m["nt"]) * GIB,
                                                    float(m["act"]) * GIB, float(m["kv"]) * GIB, i))
            elif conc is None and (m := _CONCURRENCY.search(line)):
                conc_tokens, conc = int(m["tokens"]), float(m["x"])
    if total is None or util is None or not workers:
        raise InputError(f"{path}: no vLLM memory-profiling lines ('total_gpu_memory (...) x "
                         "gpu_memory_utilization (...)' and 'model weights take ...'); read: vLLM 0.7-0.8 V0 "
                         "server logs")
    return VllmMemoryProfile(str(path), version, total, util, tuple(workers), conc_tokens, conc)
