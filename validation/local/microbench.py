"""Microbenchmarks of this machine with real kernels: numpy-BLAS GEMMs, STREAM-style bandwidth, per-call
overhead and attention-shaped kernels, each timed as the median of repeats after warm-up (perf_counter_ns).

Run: `python -m validation.local.microbench [--quick] [--seed 0] [--out machine.json]`.
"""

from __future__ import annotations

import argparse
import ctypes
import json
import logging
import math
import os
import platform
import re
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import numpy as np

logger = logging.getLogger(__name__)

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

_DTYPES = {"fp32": np.float32, "fp64": np.float64}
FALLBACK_LLC_BYTES = 32 * 2**20

FP16_SKIPPED_NOTE = (
    "fp16 GEMM skipped: numpy's BLAS (OpenBLAS) has no half-precision GEMM that np.matmul calls; "
    "np.matmul on float16 runs numpy's own generic inner loop, which would measure that fallback loop, "
    "not the machine. fp32 and fp64 go through sgemm/dgemm."
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


@dataclass(frozen=True, slots=True)
class MachineMeasurements:
    """Everything `measure_machine` measured, plus a summary (peaks, bandwidth, overheads) and machine facts."""

    records: tuple[KernelRecord, ...]
    peak_fp32_flops_per_s: float
    peak_fp64_flops_per_s: float
    matmul_overhead_s: float
    elementwise_overhead_s: float
    llc_bytes: int
    cpu_model: str
    logical_cpus: int
    blas: str
    blas_threads: int
    quick: bool
    wall_s: float
    notes: tuple[str, ...] = field(default_factory=tuple)

    def to_rows(self) -> Iterator[dict[str, object]]:
        """One dict per record with exactly ROW_KEYS (op, dtype, shape fields, measured_s, flops, bytes)."""
        for record in self.records:
            yield record.row()

    def bandwidth_bytes_per_s(self, op: str = "triad", threads: int = 1) -> tuple[float, float]:
        """(best, median) STREAM-counted bandwidth of `op` on `threads` threads, over its array sizes."""
        name = op if threads == 1 else f"{op}_mt"
        recs = [r for r in self.records if r.op == name and r.threads == threads]
        if not recs:
            known = sorted({(r.op, r.threads) for r in self.records if r.op.split("_")[0] in _STREAM_OPS})
            raise ValueError(f"no STREAM record for op={op!r} threads={threads}; measured: {known}")
        best = max(r.bytes / r.min_s for r in recs)
        median = float(np.median([r.bytes / r.measured_s for r in recs]))
        return best, median

    def to_dict(self) -> dict[str, object]:
        """JSON-ready form: the summary, the notes and the calibration rows (plus min/max/repeats/threads)."""
        summary = {
            "peak_fp32_flops_per_s": self.peak_fp32_flops_per_s,
            "peak_fp64_flops_per_s": self.peak_fp64_flops_per_s,
            "matmul_overhead_s": self.matmul_overhead_s,
            "elementwise_overhead_s": self.elementwise_overhead_s,
        }
        for op in _STREAM_OPS:
            for threads in sorted({r.threads for r in self.records if r.op.split("_")[0] == op}):
                best, median = self.bandwidth_bytes_per_s(op, threads)
                summary[f"{op}_t{threads}_best_bytes_per_s"] = best
                summary[f"{op}_t{threads}_median_bytes_per_s"] = median
        return {
            "machine": {
                "cpu_model": self.cpu_model,
                "logical_cpus": self.logical_cpus,
                "blas": self.blas,
                "blas_threads": self.blas_threads,
                "llc_bytes": self.llc_bytes,
                "numpy": np.__version__,
                "python": platform.python_version(),
            },
            "quick": self.quick,
            "wall_s": self.wall_s,
            "summary": summary,
            "notes": list(self.notes),
            "rows": list(self.to_rows()),
            "records": [asdict(r) for r in self.records],
        }


# ---- timing -----------------------------------------------------------------------------------------


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


# ---- kernels ----------------------------------------------------------------------------------------


Prepared = tuple[Callable[[], object], KernelRecord]
"""A kernel ready to time: the call, and its record with the timing fields still 0."""


def prepare_gemm(
    m: int, n: int, k: int, dtype: str, rng: np.random.Generator, *, b: np.ndarray | None = None
) -> Prepared:
    """C[m,n] = A[m,k] @ B[k,n] through np.matmul (BLAS sgemm/dgemm); pass `b` to share one B across shapes.

    flops = 2*m*n*k (one multiply and one add per inner-product term); bytes = (m*k + k*n + m*n) * itemsize,
    the compulsory traffic (each operand read once, C written once).
    """
    if min(m, n, k) < 1:
        raise ValueError(f"GEMM shape m={m}, n={n}, k={k} must be positive")
    if dtype not in _DTYPES:
        raise ValueError(f"dtype={dtype!r} must be one of {sorted(_DTYPES)}; fp16: {FP16_SKIPPED_NOTE}")
    np_dtype = _DTYPES[dtype]
    a = rng.standard_normal((m, k), dtype=np.float64).astype(np_dtype)
    if b is None:
        b = rng.standard_normal((k, n), dtype=np.float64).astype(np_dtype)
    elif b.shape != (k, n) or b.dtype != np_dtype:
        raise ValueError(f"b has shape {b.shape} and dtype {b.dtype}; need {(k, n)} {np.dtype(np_dtype)}")
    c = np.empty((m, n), dtype=np_dtype)
    itemsize = np.dtype(np_dtype).itemsize
    record = KernelRecord(
        op="gemm",
        dtype=dtype,
        m=m,
        n=n,
        k=k,
        batch=1,
        flops=2.0 * m * n * k,
        bytes=float((m * k + k * n + m * n) * itemsize),
        threads=blas_threads(),
    )
    return (lambda: np.matmul(a, b, out=c)), record


def measure_gemm(
    m: int,
    n: int,
    k: int,
    dtype: str,
    rng: np.random.Generator,
    *,
    target_s: float = 0.1,
    min_repeats: int = 3,
) -> KernelRecord:
    """Time one GEMM shape on its own (see prepare_gemm for the FLOP and byte counts)."""
    return _time_prepared(prepare_gemm(m, n, k, dtype, rng), target_s=target_s, min_repeats=min_repeats)


def _time_prepared(prepared: Prepared, *, target_s: float, min_repeats: int = 3) -> KernelRecord:
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


_STREAM_OPS = ("copy", "scale", "add", "triad")
# Words moved per element as STREAM counts them (McCalpin, STREAM README): copy/scale 2, add/triad 3.
_STREAM_WORDS = {"copy": 2, "scale": 2, "add": 3, "triad": 3}


def stream_arrays(num_elements: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """STREAM's three float64 arrays, filled with constants as STREAM does (np.full touches every page)."""
    return np.full(num_elements, 1.0), np.full(num_elements, 2.0), np.full(num_elements, 0.5)


def prepare_stream(
    op: str,
    arrays: tuple[np.ndarray, np.ndarray, np.ndarray],
    *,
    threads: int = 1,
    pool: ThreadPoolExecutor | None = None,
) -> Prepared:
    """STREAM kernel on float64 arrays a, b, c: copy b=a, scale b=s*c, add c=a+b, triad a=b+s*c.

    Every op writes into a preallocated array with out= (no temporaries); triad is np.multiply then np.add
    into `a`, so it really moves 5 words per element, but bytes are counted the STREAM way (copy 2 x 8 x n,
    triad 3 x 8 x n) so numbers compare with published STREAM results. With threads > 1 the arrays are split
    into contiguous chunks run on `pool` (numpy ufuncs release the GIL) and the op is named `<op>_mt`.
    """
    if op not in _STREAM_WORDS:
        raise ValueError(f"op={op!r} must be one of {list(_STREAM_WORDS)}")
    a, b, c = arrays
    num_elements = a.size
    if num_elements < threads or threads < 1:
        raise ValueError(f"need 1 <= threads={threads} <= num_elements={num_elements}")
    if threads > 1 and pool is None:
        raise ValueError(f"threads={threads} needs a thread pool")
    scalar = 3.0

    def kernel(lo: int, hi: int) -> None:
        if op == "copy":
            np.copyto(b[lo:hi], a[lo:hi])
        elif op == "scale":
            np.multiply(c[lo:hi], scalar, out=b[lo:hi])
        elif op == "add":
            np.add(a[lo:hi], b[lo:hi], out=c[lo:hi])
        else:
            np.multiply(c[lo:hi], scalar, out=a[lo:hi])
            np.add(a[lo:hi], b[lo:hi], out=a[lo:hi])

    bounds = np.linspace(0, num_elements, threads + 1).astype(int)

    if threads == 1:
        def fn() -> None:
            kernel(0, num_elements)
    else:
        assert pool is not None  # threads > 1 without a pool was rejected above

        def fn() -> None:
            list(pool.map(kernel, bounds[:-1], bounds[1:]))

    return fn, KernelRecord(
        op=op if threads == 1 else f"{op}_mt",
        dtype="fp64",
        n=num_elements,
        batch=1,
        flops=float(num_elements * {"copy": 0, "scale": 1, "add": 1, "triad": 2}[op]),
        bytes=float(_STREAM_WORDS[op] * 8 * num_elements),
        threads=threads,
    )


def measure_stream(op: str, num_elements: int, *, threads: int = 1, repeats: int = 5) -> KernelRecord:
    """Time one STREAM op on its own arrays (see prepare_stream for the byte counting)."""
    arrays = stream_arrays(num_elements)
    with ThreadPoolExecutor(max_workers=threads) as pool:
        fn, record = prepare_stream(op, arrays, threads=threads, pool=pool)
        median, best, worst, reps = time_call(fn, min_repeats=repeats, max_repeats=repeats, warmup=1)
    return replace(record, measured_s=median, min_s=best, max_s=worst, repeats=reps)


def measure_overheads(*, target_s: float = 0.05) -> tuple[KernelRecord, KernelRecord]:
    """Per-call cost of a 1x1x1 np.matmul and of a 1-element np.add(out=): Python + numpy dispatch overhead."""
    a = np.ones((1, 1), dtype=np.float32)
    out = np.empty((1, 1), dtype=np.float32)
    mm = time_call(lambda: np.matmul(a, a, out=out), target_s=target_s, min_repeats=5, max_repeats=200)
    x = np.ones(1, dtype=np.float32)
    y = np.empty(1, dtype=np.float32)
    ew = time_call(lambda: np.add(x, x, out=y), target_s=target_s, min_repeats=5, max_repeats=200)
    gemm = KernelRecord(
        op="gemm_overhead",
        dtype="fp32",
        m=1,
        n=1,
        k=1,
        batch=1,
        measured_s=mm[0],
        flops=2.0,
        bytes=12.0,
        min_s=mm[1],
        max_s=mm[2],
        repeats=mm[3],
    )
    elementwise = KernelRecord(
        op="elementwise_overhead",
        dtype="fp32",
        n=1,
        batch=1,
        measured_s=ew[0],
        flops=1.0,
        bytes=12.0,
        min_s=ew[1],
        max_s=ew[2],
        repeats=ew[3],
    )
    return gemm, elementwise


def measure_attention_decode(
    ctx_len: int, num_heads: int, head_dim: int, rng: np.random.Generator, *, target_s: float = 0.1
) -> KernelRecord:
    """Time one decode-attention shape on its own (see prepare_attention_decode for the counts)."""
    return _time_prepared(prepare_attention_decode(ctx_len, num_heads, head_dim, rng), target_s=target_s)


def _softmax_times(scores: np.ndarray, values: np.ndarray) -> np.ndarray:
    """Row softmax of `scores` in place (max-subtracted), then times `values`: the attention kernels' shared tail."""
    scores -= scores.max(axis=-1, keepdims=True)
    np.exp(scores, out=scores)
    scores /= scores.sum(axis=-1, keepdims=True)
    return np.matmul(scores, values)


def prepare_attention_decode(
    ctx_len: int, num_heads: int, head_dim: int, rng: np.random.Generator
) -> Prepared:
    """One query token against ctx_len cached keys/values per head: softmax(q K^T / sqrt(d)) V, fp32.

    flops = 4 * heads * ctx * head_dim (QK^T and PV, 2 flops per multiply-add; softmax's ~5 per score is left
    out, as FLOP counts of attention usually do); bytes = (2*heads*ctx*head_dim + 2*heads*head_dim) * 4: read
    K and V once, read q, write the output (the ctx-long score vector stays in cache).
    """
    if min(ctx_len, num_heads, head_dim) < 1:
        raise ValueError(f"ctx_len={ctx_len}, num_heads={num_heads}, head_dim={head_dim} must be positive")
    q = rng.standard_normal((num_heads, 1, head_dim), dtype=np.float32)
    keys = rng.standard_normal((num_heads, ctx_len, head_dim), dtype=np.float32)
    values = rng.standard_normal((num_heads, ctx_len, head_dim), dtype=np.float32)
    keys_t = keys.transpose(0, 2, 1)
    scale = np.float32(1.0 / math.sqrt(head_dim))

    def fn() -> np.ndarray:
        return _softmax_times(np.matmul(q * scale, keys_t), values)

    return fn, KernelRecord(
        op="attn_decode",
        dtype="fp32",
        batch=1,
        ctx_len=ctx_len,
        num_heads=num_heads,
        head_dim=head_dim,
        flops=4.0 * num_heads * ctx_len * head_dim,
        bytes=float((2 * num_heads * ctx_len * head_dim + 2 * num_heads * head_dim) * 4),
        threads=blas_threads(),
    )


def measure_attention_prefill(
    seq_len: int, num_heads: int, head_dim: int, rng: np.random.Generator, *, target_s: float = 0.1
) -> KernelRecord:
    """Time one causal prefill-attention shape on its own (see prepare_attention_prefill for the counts)."""
    return _time_prepared(prepare_attention_prefill(seq_len, num_heads, head_dim, rng), target_s=target_s)


def prepare_attention_prefill(
    seq_len: int, num_heads: int, head_dim: int, rng: np.random.Generator
) -> Prepared:
    """Causal self-attention over seq_len tokens per head, materialising the score matrix (fp32).

    numpy computes the full seq x seq scores and masks the upper triangle, so the executed flops are
    4 * heads * seq^2 * head_dim (dense; the useful causal half is 2 * heads * seq^2 * head_dim).
    bytes = 4 * heads * seq * head_dim * 4 (read q, k, v, write o) + 2 * heads * seq^2 * 4 (write the scores
    once and read them once); the softmax passes over the score matrix add more on top of that.
    """
    if min(seq_len, num_heads, head_dim) < 1:
        raise ValueError(f"seq_len={seq_len}, num_heads={num_heads}, head_dim={head_dim} must be positive")
    q = rng.standard_normal((num_heads, seq_len, head_dim), dtype=np.float32)
    keys = rng.standard_normal((num_heads, seq_len, head_dim), dtype=np.float32)
    values = rng.standard_normal((num_heads, seq_len, head_dim), dtype=np.float32)
    keys_t = keys.transpose(0, 2, 1)
    scale = np.float32(1.0 / math.sqrt(head_dim))
    mask = np.triu(np.full((seq_len, seq_len), -np.inf, dtype=np.float32), k=1)

    def fn() -> np.ndarray:
        scores = np.matmul(q * scale, keys_t)
        scores += mask
        return _softmax_times(scores, values)

    return fn, KernelRecord(
        op="attn_prefill",
        dtype="fp32",
        batch=1,
        seq_len=seq_len,
        num_heads=num_heads,
        head_dim=head_dim,
        flops=4.0 * num_heads * seq_len * seq_len * head_dim,
        bytes=float(4 * num_heads * seq_len * head_dim * 4 + 2 * num_heads * seq_len * seq_len * 4),
        threads=blas_threads(),
    )


# ---- machine facts ----------------------------------------------------------------------------------


def last_level_cache_bytes() -> int:
    """Largest cache of cpu0 from /sys (index*/size, e.g. '36608K'); 32 MiB when it cannot be read."""
    sizes = []
    for path in Path("/sys/devices/system/cpu/cpu0/cache").glob("index*/size"):
        match = re.fullmatch(r"(\d+)([KMG]?)", path.read_text().strip())
        if match:
            sizes.append(int(match.group(1)) * {"": 1, "K": 2**10, "M": 2**20, "G": 2**30}[match.group(2)])
    if not sizes:
        logger.warning("could not read the cache size from /sys; assuming %d bytes", FALLBACK_LLC_BYTES)
        return FALLBACK_LLC_BYTES
    return max(sizes)


def cpu_model_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _openblas_libs() -> list[str]:
    """Paths of the OpenBLAS libraries mapped into this process (numpy's own first), from /proc/self/maps.

    scipy ships its own OpenBLAS too; once scipy is imported both are mapped, so prefer numpy.libs."""
    try:
        maps = Path("/proc/self/maps").read_text()
    except OSError:
        return []
    paths: list[str] = []
    for line in maps.splitlines():
        parts = line.split()
        path = parts[-1] if len(parts) >= 6 else ""
        name = Path(path).name
        if "openblas" in name and ".so" in name and path not in paths:
            paths.append(path)
    return sorted(paths, key=lambda p: "numpy.libs" not in p)


def _openblas_function(suffix: str) -> Callable[..., int] | None:
    names = (f"scipy_openblas_{suffix}64_", f"scipy_openblas_{suffix}", f"openblas_{suffix}64_",
             f"openblas_{suffix}")
    for path in _openblas_libs():
        lib = ctypes.CDLL(path)
        for name in names:
            if hasattr(lib, name):
                return getattr(lib, name)  # type: ignore[no-any-return]
    return None


def blas_threads() -> int:
    """Threads OpenBLAS uses now (asked from the library); else its env settings, else one per CPU."""
    get = _openblas_function("get_num_threads")
    if get is not None:
        return int(get())
    for var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS"):
        value = os.environ.get(var, "")
        if value.isdigit() and int(value) > 0:
            return int(value)
    return os.cpu_count() or 1


def set_blas_threads(threads: int) -> None:
    """Set OpenBLAS's thread count for this process. On a shared machine one thread is often faster than
    two: a BLAS call with 2 threads waits for whichever thread another process has preempted."""
    if threads < 1:
        raise ValueError(f"threads={threads} must be >= 1")
    setter = _openblas_function("set_num_threads")
    if setter is None:
        raise ValueError(
            "cannot set BLAS threads: numpy's BLAS is not OpenBLAS (set OMP_NUM_THREADS before start)"
        )
    setter(ctypes.c_int(threads))


#: glibc mallopt parameters (malloc.h): M_TRIM_THRESHOLD = -1, M_MMAP_MAX = -4.
_M_TRIM_THRESHOLD, _M_MMAP_MAX = -1, -4
_caching_allocator_on = False


def use_caching_allocator() -> bool:
    """Make this process keep freed memory, like the caching allocators real engines use (PyTorch's CUDA/CPU
    caching allocator, vLLM's preallocated buffers): glibc's malloc is told never to serve a block by mmap
    (M_MMAP_MAX = 0) and not to return freed heap to the OS below 2 GiB (M_TRIM_THRESHOLD). Without it every numpy
    temporary above the mmap threshold (128 KiB .. 32 MiB) is a fresh mmap whose pages fault on first touch;
    in this VM that made a (256, 768) float32 `x / (1 + y)` 6x slower than the same call on reused memory
    (1105 vs 171 us) and numpy's RMSNorm 4x slower, a cost no bandwidth or FLOP figure describes. Both the
    calibration and the served model run with it, so the two see the same machine. True when applied (Linux
    glibc); False elsewhere (nothing changes). Process-wide and idempotent."""
    global _caching_allocator_on  # noqa: PLW0603 - one switch per process
    if _caching_allocator_on:
        return True
    try:
        libc = ctypes.CDLL("libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return False
    mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    ok = mallopt(_M_MMAP_MAX, 0) == 1 and mallopt(_M_TRIM_THRESHOLD, 2**31 - 1) == 1
    _caching_allocator_on = ok
    return ok


def blas_name() -> str:
    try:
        info = np.show_config(mode="dicts")["Build Dependencies"]["blas"]
        return f"{info.get('name', '?')} {info.get('version', '')}".strip()
    except Exception:  # noqa: BLE001 - show_config's layout differs across numpy versions
        return "unknown"


# ---- the whole measurement --------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Plan:
    gemm_m: tuple[int, ...]
    gemm_nk: tuple[tuple[int, int], ...]
    fp64_min_m: int
    gemm_rounds: int
    stream_multiples: tuple[int, ...]
    stream_repeats: int
    decode_ctx: tuple[int, ...]
    prefill_seq: tuple[int, ...]
    attn_heads: tuple[tuple[int, int], ...]
    attn_rounds: int


_QUICK = _Plan(
    gemm_m=(1, 8, 64, 256, 1024, 2048),
    gemm_nk=((1024, 1024), (4096, 4096)),
    fp64_min_m=1024,
    gemm_rounds=5,
    stream_multiples=(4,),
    stream_repeats=4,
    decode_ctx=(128, 1024, 8192),
    prefill_seq=(64, 256, 1024),
    attn_heads=((12, 64),),
    attn_rounds=5,
)
_FULL = _Plan(
    gemm_m=(1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024, 2048),
    gemm_nk=((256, 256), (1024, 1024), (4096, 4096), (4096, 1024), (1024, 4096)),
    fp64_min_m=1,
    gemm_rounds=9,
    stream_multiples=(4, 8),
    stream_repeats=8,
    decode_ctx=(128, 256, 512, 1024, 2048, 4096, 8192),
    prefill_seq=(64, 128, 256, 512, 1024),
    attn_heads=((12, 64), (32, 128)),
    attn_rounds=9,
)

#: GEMMs with at least this many rows count as "large" for the peak FLOP/s.
PEAK_MIN_M = 512


def measure_machine(quick: bool, rng: np.random.Generator) -> MachineMeasurements:
    """Measure GEMM peaks, STREAM bandwidth, call overhead and attention kernels on this machine.

    `quick` takes ~30-40 s on a 2-core machine; the full grid ~2-3 minutes. GEMMs and attention kernels are
    timed in interleaved rounds (`time_interleaved`) so load from other processes does not line up with one
    shape. `rng` fills the operands and draws the order of every round.
    """
    plan = _QUICK if quick else _FULL
    started = time.perf_counter()
    records: list[KernelRecord] = []

    gemms = [(m, n, k, "fp32") for m in plan.gemm_m for n, k in plan.gemm_nk]
    gemms += [(m, n, k, "fp64") for m in plan.gemm_m if m >= plan.fp64_min_m for n, k in plan.gemm_nk]
    shared_b: dict[tuple[int, int, str], np.ndarray] = {}
    for _, n, k, dtype in gemms:
        if (n, k, dtype) not in shared_b:
            shared_b[n, k, dtype] = rng.standard_normal((k, n)).astype(_DTYPES[dtype])
    prepared = [prepare_gemm(m, n, k, dtype, rng, b=shared_b[n, k, dtype]) for m, n, k, dtype in gemms]
    records += time_interleaved(prepared, plan.gemm_rounds, rng)
    del prepared, shared_b
    records.sort(key=lambda r: (r.dtype, r.n, r.k, r.m))
    logger.info("GEMM: %d shapes in %.1f s", len(records), time.perf_counter() - started)

    llc = last_level_cache_bytes()
    threads_options = sorted({1, os.cpu_count() or 1})
    with ThreadPoolExecutor(max_workers=max(threads_options)) as pool:
        for multiple in plan.stream_multiples:
            arrays = stream_arrays(multiple * llc // 8)
            stream = [
                prepare_stream(op, arrays, threads=threads, pool=pool)
                for threads in threads_options
                for op in _STREAM_OPS
            ]
            records += time_interleaved(stream, plan.stream_repeats, rng)
            del arrays, stream
    logger.info("STREAM done at %.1f s", time.perf_counter() - started)

    gemm_overhead, elementwise_overhead = measure_overheads()
    records += [gemm_overhead, elementwise_overhead]

    attention = []
    for heads, head_dim in plan.attn_heads:
        attention += [prepare_attention_decode(ctx, heads, head_dim, rng) for ctx in plan.decode_ctx]
        attention += [prepare_attention_prefill(seq, heads, head_dim, rng) for seq in plan.prefill_seq]
    records += time_interleaved(attention, plan.attn_rounds, rng)
    del attention
    logger.info("attention done at %.1f s", time.perf_counter() - started)

    def peak(dtype: str) -> float:
        large = [r.flops_per_s for r in records if r.op == "gemm" and r.dtype == dtype and r.m >= PEAK_MIN_M]
        return max(large) if large else float("nan")

    return MachineMeasurements(
        records=tuple(records),
        peak_fp32_flops_per_s=peak("fp32"),
        peak_fp64_flops_per_s=peak("fp64"),
        matmul_overhead_s=gemm_overhead.measured_s,
        elementwise_overhead_s=elementwise_overhead.measured_s,
        llc_bytes=llc,
        cpu_model=cpu_model_name(),
        logical_cpus=os.cpu_count() or 1,
        blas=blas_name(),
        blas_threads=blas_threads(),
        quick=quick,
        wall_s=time.perf_counter() - started,
        notes=(
            FP16_SKIPPED_NOTE,
            "STREAM bytes are counted as STREAM does (copy/scale 2 words, add/triad 3 words per element); "
            "numpy's triad is two passes (multiply, then add in place) so it moves 5 words.",
            "Single-thread STREAM ops are named copy/scale/add/triad; multi-thread ones <op>_mt.",
        ),
    )


def _log_summary(result: MachineMeasurements) -> None:
    logger.info(
        "cpu: %s, %d logical CPUs, BLAS %s (%d threads)",
        result.cpu_model,
        result.logical_cpus,
        result.blas,
        result.blas_threads,
    )
    logger.info(
        "peak fp32 %.1f GFLOP/s, fp64 %.1f GFLOP/s",
        result.peak_fp32_flops_per_s / 1e9,
        result.peak_fp64_flops_per_s / 1e9,
    )
    for op in _STREAM_OPS:
        for threads in sorted({r.threads for r in result.records if r.op.split("_")[0] == op}):
            best, median = result.bandwidth_bytes_per_s(op, threads)
            logger.info(
                "%-5s %d thread(s): best %.2f GB/s, median %.2f GB/s", op, threads, best / 1e9, median / 1e9
            )
    logger.info(
        "overhead: 1x1x1 matmul %.2f us, 1-element add %.2f us",
        result.matmul_overhead_s * 1e6,
        result.elementwise_overhead_s * 1e6,
    )
    for r in result.records:
        if r.op.startswith("attn"):
            logger.info(
                "%s heads=%d hd=%d seq=%d ctx=%d: %.3f ms, %.1f GFLOP/s, %.2f GB/s",
                r.op,
                r.num_heads,
                r.head_dim,
                r.seq_len,
                r.ctx_len,
                r.measured_s * 1e3,
                r.flops_per_s / 1e9,
                r.bytes_per_s / 1e9,
            )
    logger.info("wall %.1f s", result.wall_s)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="small grid, ~40 s")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, help="write the measurements as JSON here")
    parser.add_argument("--blas-threads", type=int, help="OpenBLAS threads (default: its own, one per CPU)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    if args.blas_threads:
        set_blas_threads(args.blas_threads)
    result = measure_machine(args.quick, np.random.default_rng(args.seed))
    _log_summary(result)
    if args.out:
        args.out.write_text(json.dumps(result.to_dict(), indent=1))
        logger.info("wrote %s", args.out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
