"""GEMMs through PyTorch's CPU kernels (oneDNN/MKL), for `roofsim calibrate --local` when the optional `torch`
extra is installed (`pip install -e '.[torch]'`). numpy reaches only fp32/fp64 BLAS; torch adds bf16.

Timed like the numpy GEMMs (validation.local.timing.time_interleaved, cold weights cycled through copies
spanning 2x the last-level cache), on `threads` intra-op threads.
"""

from __future__ import annotations

import importlib.util
import itertools
import math
from collections.abc import Sequence
from typing import Any

import numpy as np

from roofsim.validation.local import microbench as mb

__all__ = ["TORCH_DTYPES", "FP16_NOTE", "torch_available", "torch_version", "prepare_torch_gemms"]

#: dtypes timed through torch.matmul. fp16 is left out: on a CPU without AVX512-FP16 torch runs fp16 matmul in a
#: scalar fallback (0.2 GFLOP/s measured on this machine, 300x slower than fp32), which measures the fallback.
TORCH_DTYPES: tuple[str, ...] = ("fp32", "bf16")
FP16_NOTE = ("fp16 is not timed through torch: without AVX512-FP16 torch's CPU fp16 matmul is a scalar fallback "
             "(0.2 GFLOP/s here)")


def torch_available() -> bool:
    """True when `import torch` would succeed (without importing it)."""
    return importlib.util.find_spec("torch") is not None


def torch_version() -> str | None:
    if not torch_available():
        return None
    import torch  # noqa: PLC0415

    return str(torch.__version__)


def prepare_torch_gemms(gemms: Sequence[tuple[int, int, int]], dtypes: Sequence[str], threads: int,
                        rng: np.random.Generator) -> list[mb.Prepared]:
    """One prepared C = A @ B per (m, n, k) x dtype, through torch.matmul(out=C) on `threads` threads. Weights
    shared per (n, k, dtype), cold: copies spanning 2x the last-level cache, cycled per call."""
    import torch  # noqa: PLC0415

    torch.set_num_threads(threads)
    tdt: dict[str, Any] = {"fp32": torch.float32, "bf16": torch.bfloat16}
    bad = [d for d in dtypes if d not in tdt]
    if bad:
        raise ValueError(f"dtypes {bad} cannot be timed through torch; choose from {sorted(tdt)} ({FP16_NOTE})")
    cold = 2 * mb.last_level_cache_bytes()
    gen = torch.Generator().manual_seed(int(rng.integers(2**31)))
    weights: dict[tuple[int, int, str], list[Any]] = {}
    out: list[mb.Prepared] = []
    for dtype in dtypes:
        size = 4 if dtype == "fp32" else 2
        for m, n, k in gemms:
            key = (n, k, dtype)
            if key not in weights:
                copies = max(1, min(64, math.ceil(cold / (size * n * k))))
                weights[key] = [torch.randn(k, n, generator=gen).to(tdt[dtype]) for _ in range(copies)]
            a = torch.randn(m, k, generator=gen).to(tdt[dtype])
            c = torch.empty(m, n, dtype=tdt[dtype])
            ring = itertools.cycle(weights[key])

            def fn(a: Any = a, c: Any = c, ring: Any = ring) -> Any:
                return torch.matmul(a, next(ring), out=c)

            rec = mb.KernelRecord(op="gemm", dtype=dtype, m=m, n=n, k=k, batch=1, flops=2.0 * m * n * k,
                                  bytes=float((m * k + k * n + m * n) * size), threads=threads)
            out.append((fn, rec))
    return out
