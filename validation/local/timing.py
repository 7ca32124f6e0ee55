"""The timing harness of the local measurements: a kernel record, a kernel ready to time, and the two ways of
timing (one kernel on its own; many kernels in interleaved rounds), each the median of repeats after warm-up
(perf_counter_ns)."""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace

import numpy as np

#: Keys of every row `MachineMeasurements.to_rows()` yields; the calibration fit reads exactly these.
ROW_KEYS: tuple[str, ...] = (
    "op",
    "dtype",
    "m",
    "n",
    "k",
    "batch",
    "seq_len",
    "ctx_len",
    "num_heads",
    "head_dim",
    "measured_s",
    "flops",
    "bytes",
)


@dataclass(frozen=True, slots=True)
class KernelRecord:
    """One measured kernel. Shape fields that do not apply are 0.

    gemm: m x k @ k x n. attn_decode: batch=1 query token over ctx_len cached tokens, num_heads x head_dim.
    attn_prefill: causal over seq_len tokens. copy/scale/add/triad: n = array elements (op name gets a
    `_mt` suffix when run on more than one thread). `measured_s` is the median over repeats, `min_s` the best.
    `flops` are the floating-point operations the kernel executes; `bytes` the compulsory memory traffic
    as documented per op in the measure_* functions.
    """

    op: str
    dtype: str
    m: int = 0
    n: int = 0
    k: int = 0
    batch: int = 0
    seq_len: int = 0
    ctx_len: int = 0
    num_heads: int = 0
    head_dim: int = 0
    measured_s: float = 0.0
    flops: float = 0.0
    bytes: float = 0.0
    min_s: float = 0.0
    max_s: float = 0.0
    repeats: int = 0
    threads: int = 1

    def row(self) -> dict[str, object]:
        """The calibration row: exactly ROW_KEYS."""
        return {key: getattr(self, key) for key in ROW_KEYS}

    @property
    def flops_per_s(self) -> float:
        return self.flops / self.measured_s

    @property
    def bytes_per_s(self) -> float:
        return self.bytes / self.measured_s


Prepared = tuple[Callable[[], object], KernelRecord]
"""A kernel ready to time: the call, and its record with the timing fields still 0."""


def time_call(
    fn: Callable[[], object],
    *,
    min_repeats: int = 3,
    max_repeats: int = 50,
    target_s: float = 0.1,
    min_sample_s: float = 2e-4,
    warmup: int = 1,
) -> tuple[float, float, float, int]:
    """Time `fn`: warm up, then (median, min, max) seconds per call over `repeats` samples.

    A sample runs `fn` enough times back to back to last at least `min_sample_s`, so sub-microsecond calls are
    not dominated by the clock read; the number of samples aims at `target_s` of total timing, clamped to
    [min_repeats, max_repeats].
    """
    if min_repeats < 1 or max_repeats < min_repeats:
        raise ValueError(f"need 1 <= min_repeats={min_repeats} <= max_repeats={max_repeats}")
    for _ in range(warmup):
        fn()
    start = time.perf_counter_ns()
    fn()
    once_s = max((time.perf_counter_ns() - start) * 1e-9, 1e-9)
    inner = max(1, math.ceil(min_sample_s / once_s))
    repeats = int(min(max_repeats, max(min_repeats, math.ceil(target_s / (once_s * inner)))))
    samples = np.empty(repeats)
    for i in range(repeats):
        start = time.perf_counter_ns()
        for _ in range(inner):
            fn()
        samples[i] = (time.perf_counter_ns() - start) * 1e-9 / inner
    return float(np.median(samples)), float(samples.min()), float(samples.max()), repeats


def time_prepared(prepared: Prepared, *, target_s: float, min_repeats: int = 3) -> KernelRecord:
    fn, record = prepared
    median, best, worst, repeats = time_call(fn, target_s=target_s, min_repeats=min_repeats)
    return replace(record, measured_s=median, min_s=best, max_s=worst, repeats=repeats)


def time_interleaved(
    prepared: Sequence[Prepared],
    rounds: int,
    rng: np.random.Generator,
    *,
    min_sample_s: float = 2e-3,
) -> list[KernelRecord]:
    """Time many kernels in `rounds` rounds, each round visiting every kernel once in a fresh random order.

    On a shared machine a burst of someone else's load then spreads over many kernels as one sample each,
    and the per-kernel median over rounds discards it, instead of spoiling every repeat of one kernel.
    A sample repeats a kernel back to back until it lasts `min_sample_s`.
    """
    if rounds < 1:
        raise ValueError(f"rounds={rounds} must be >= 1")
    inner = []
    for fn, _ in prepared:
        fn()  # warm-up: page faults, BLAS thread start, caches
        start = time.perf_counter_ns()
        fn()
        once_s = max((time.perf_counter_ns() - start) * 1e-9, 1e-9)
        inner.append(max(1, math.ceil(min_sample_s / once_s)))
    samples = np.empty((len(prepared), rounds))
    for r in range(rounds):
        for i in rng.permutation(len(prepared)):
            fn, count = prepared[i][0], inner[i]
            start = time.perf_counter_ns()
            for _ in range(count):
                fn()
            samples[i, r] = (time.perf_counter_ns() - start) * 1e-9 / count
    return [
        replace(
            record,
            measured_s=float(np.median(samples[i])),
            min_s=float(samples[i].min()),
            max_s=float(samples[i].max()),
            repeats=rounds,
        )
        for i, (_, record) in enumerate(prepared)
    ]
