"""The kernel families the local measurements time, each as a prepared call plus its FLOP and byte counts:
numpy-BLAS GEMMs, STREAM-style bandwidth, per-call overhead and attention-shaped kernels."""

from __future__ import annotations

import math
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from typing import Any

import numpy as np

from roofsim.validation.local.machine import blas_threads
from roofsim.validation.local.timing import KernelRecord, Prepared, time_call, time_prepared

GEMM_DTYPES = {"fp32": np.float32, "fp64": np.float64}

FP16_SKIPPED_NOTE = (
    "fp16 GEMM skipped: numpy's BLAS (OpenBLAS) has no half-precision GEMM that np.matmul calls; "
    "np.matmul on float16 runs numpy's own generic inner loop, which would measure that fallback loop, "
    "not the machine. fp32 and fp64 go through sgemm/dgemm."
)


def prepare_gemm(
    m: int, n: int, k: int, dtype: str, rng: np.random.Generator, *, b: np.ndarray | None = None
) -> Prepared:
    """C[m,n] = A[m,k] @ B[k,n] through np.matmul (BLAS sgemm/dgemm); pass `b` to share one B across shapes.

    flops = 2*m*n*k (one multiply and one add per inner-product term); bytes = (m*k + k*n + m*n) * itemsize,
    the compulsory traffic (each operand read once, C written once).
    """
    if min(m, n, k) < 1:
        raise ValueError(f"GEMM shape m={m}, n={n}, k={k} must be positive")
    if dtype not in GEMM_DTYPES:
        raise ValueError(f"dtype={dtype!r} must be one of {sorted(GEMM_DTYPES)}; fp16: {FP16_SKIPPED_NOTE}")
    np_dtype = GEMM_DTYPES[dtype]
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
    return time_prepared(prepare_gemm(m, n, k, dtype, rng), target_s=target_s, min_repeats=min_repeats)


STREAM_OPS = ("copy", "scale", "add", "triad")
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

    def timed(fn: Callable[[], object], **shape: Any) -> KernelRecord:
        median, best, worst, repeats = time_call(fn, target_s=target_s, min_repeats=5, max_repeats=200)
        return KernelRecord(dtype="fp32", batch=1, measured_s=median, min_s=best, max_s=worst, repeats=repeats,
                            **shape)

    a = np.ones((1, 1), dtype=np.float32)
    out = np.empty((1, 1), dtype=np.float32)
    gemm = timed(lambda: np.matmul(a, a, out=out), op="gemm_overhead", m=1, n=1, k=1, flops=2.0, bytes=12.0)
    x = np.ones(1, dtype=np.float32)
    y = np.empty(1, dtype=np.float32)
    elementwise = timed(lambda: np.add(x, x, out=y), op="elementwise_overhead", n=1, flops=1.0, bytes=12.0)
    return gemm, elementwise


def measure_attention_decode(
    ctx_len: int, num_heads: int, head_dim: int, rng: np.random.Generator, *, target_s: float = 0.1
) -> KernelRecord:
    """Time one decode-attention shape on its own (see prepare_attention_decode for the counts)."""
    return time_prepared(prepare_attention_decode(ctx_len, num_heads, head_dim, rng), target_s=target_s)


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

    return fn, KernelRecord(op="attn_decode", dtype="fp32", batch=1, ctx_len=ctx_len, num_heads=num_heads,
                            head_dim=head_dim, flops=4.0 * num_heads * ctx_len * head_dim,
                            bytes=float((2 * num_heads * ctx_len * head_dim + 2 * num_heads * head_dim) * 4),
                            threads=blas_threads())


def measure_attention_prefill(
    seq_len: int, num_heads: int, head_dim: int, rng: np.random.Generator, *, target_s: float = 0.1
) -> KernelRecord:
    """Time one causal prefill-attention shape on its own (see prepare_attention_prefill for the counts)."""
    return time_prepared(prepare_attention_prefill(seq_len, num_heads, head_dim, rng), target_s=target_s)


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

    return fn, KernelRecord(op="attn_prefill", dtype="fp32", batch=1, seq_len=seq_len, num_heads=num_heads,
                            head_dim=head_dim, flops=4.0 * num_heads * seq_len * seq_len * head_dim,
                            bytes=float(4 * num_heads * seq_len * head_dim * 4 + 2 * num_heads * seq_len * seq_len * 4),
                            threads=blas_threads())
