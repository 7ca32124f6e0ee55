"""What `roofsim calibrate --local` measures on this machine: numpy GEMMs at a model's weight shapes (cold
weights), STREAM, the forward pass's own elementwise and attention code, call overhead, short steps of the
model itself, and (with the torch extra) GEMMs through torch; returned as kernel-table rows (`measure_local`).
"""

from __future__ import annotations

import dataclasses
import itertools
import logging
import math
import os
import time
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from typing import Any

import numpy as np

from roofsim.model.spec import ModelSpec, QuantSpec
from roofsim.validation.kernel_tables import KernelMeasurement
from roofsim.validation.local import torch_gemm
from roofsim.validation.local.kernels import measure_overheads, prepare_gemm, prepare_stream, stream_arrays
from roofsim.validation.local.machine import MachineFacts, last_level_cache_bytes, use_caching_allocator
from roofsim.validation.local.microbench import PEAK_MIN_M
from roofsim.validation.local.timing import KernelRecord, Prepared, time_interleaved
from roofsim.validation.local.transformer import (
    _activation,
    _norm,
    apply_rope,
    build_local_llama,
    rope_tables,
    time_decode_steps,
    time_prefill_steps,
)

log = logging.getLogger(__name__)

__all__ = ["FP32", "FULL", "QUICK", "LocalMeasurements", "LocalPlan", "Progress", "measure_local",
           "measure_overhead_steps"]

#: The numpy forward pass computes, stores and caches everything in float32.
FP32 = QuantSpec(weight_dtype="fp32", activation_dtype="fp32", kv_dtype="fp32")

Progress = Callable[[str], None]


@dataclass(frozen=True, slots=True)
class LocalPlan:
    """What `measure_local` times. GEMM (n, k) families come from the target model plus generic squares."""

    gemm_m: tuple[int, ...]
    lm_head_m: tuple[int, ...]
    extra_nk: tuple[tuple[int, int], ...]
    gemm_rounds: int
    stream_repeats: int
    elementwise_tokens: tuple[int, ...]  # from cache-resident to DRAM-sized (the cache regime is fitted)
    elementwise_rounds: int
    decode_ctx: tuple[int, ...]
    prefill_seq: tuple[int, ...]
    attn_rounds: int
    step_batches: tuple[int, ...]
    step_repeats: int
    torch_m: tuple[int, ...] = (1, 4, 16, 64, 256, 512)  # GEMM rows through torch (when installed)


QUICK = LocalPlan(gemm_m=(1, 2, 4, 8, 16, 32, 64, 128, 256, 512), lm_head_m=(1, 2, 4, 8, 16),
                  extra_nk=((1024, 1024),), gemm_rounds=3, stream_repeats=3,
                  elementwise_tokens=tuple(2**i for i in range(5, 15)), elementwise_rounds=7,
                  decode_ctx=(64, 128, 256, 512, 1024, 2048), prefill_seq=(32, 64, 128, 256, 512), attn_rounds=3,
                  step_batches=(1, 4, 8), step_repeats=3)
FULL = LocalPlan(gemm_m=(1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024, 2048), lm_head_m=(1, 2, 4, 8, 16),
                 extra_nk=((1024, 1024), (4096, 4096), (1024, 4096), (4096, 1024)), gemm_rounds=7,
                 stream_repeats=6, elementwise_tokens=tuple(2**i for i in range(4, 15)), elementwise_rounds=9,
                 decode_ctx=(128, 256, 512, 1024, 2048, 4096), prefill_seq=(32, 64, 128, 256, 512, 1024),
                 attn_rounds=7, step_batches=(1, 2, 4, 8, 16), step_repeats=5)


@dataclass(frozen=True)
class LocalMeasurements:
    """Everything measured on this machine for one calibration (rows already in KernelMeasurement form)."""

    rows: tuple[KernelMeasurement, ...]
    peak_fp32_flops_per_s: float
    bandwidth_bytes_per_s: float  # best STREAM-counted bandwidth over ops and thread counts
    stream: dict[str, float]  # "<op>_t<threads>" -> best bytes/s
    overhead_steps: tuple[dict[str, Any], ...]  # short model steps: kind, batch_size, tokens, ctx_sum, seconds
    overhead_model: ModelSpec
    machine: MachineFacts
    quick: bool
    wall_s: float
    notes: tuple[str, ...] = ()
    torch_rows: tuple[KernelMeasurement, ...] = ()  # GEMMs through torch.matmul (framework "torch"), if installed
    torch_peaks: dict[str, float] = dataclasses.field(default_factory=dict)  # dtype -> best FLOP/s, m >= 512
    torch_version: str | None = None


# ----------------------------------------------------------------------------------------- measuring
def _model_gemm_shapes(spec: ModelSpec) -> list[tuple[str, int, int]]:
    """(name, n, k) of every weight GEMM the numpy forward pass issues (it runs q, k, v, gate, up separately)."""
    d, q, kv, inter = spec.hidden_size, spec.q_dim, spec.kv_dim, spec.intermediate_size
    shapes = [("q", q, d), ("kv", kv, d), ("o", d, q), ("up", inter, d), ("down", d, inter)]
    out: list[tuple[str, int, int]] = []
    for name, n, k in shapes:
        if all((n, k) != (n2, k2) for _, n2, k2 in out):
            out.append((name, n, k))
    return out


def _prepare_attention(n_new: int, ctx: int, heads: int, kv_heads: int, head_dim: int,
                       rng: np.random.Generator) -> Prepared:
    """The forward pass's own attention code for one sequence (transformer.LocalLlama._forward): n_new query
    tokens over ctx cached keys (ctx includes the new ones), GQA by stacking a KV group's queries as rows."""
    group = heads // kv_heads
    q = rng.standard_normal((n_new, heads, head_dim), dtype=np.float32)
    # K/V are views of a longer per-sequence cache slot, as in the forward pass (cache_k[slot, :, :end]): strided
    # over the slot's max context, here 2 x ctx. A decode step reads each sequence's cache once per layer, so the
    # decode timing cycles through copies spanning 2 x the last-level cache (cold, like GEMM weights); a prefill
    # reads the K/V it has just written (warm).
    per_copy = 2 * kv_heads * 2 * ctx * head_dim * 4
    copies = 1 if n_new > 1 else max(1, min(256, math.ceil(2 * last_level_cache_bytes() / per_copy)))
    caches = [(rng.standard_normal((kv_heads, 2 * ctx, head_dim), dtype=np.float32)[:, :ctx],
               rng.standard_normal((kv_heads, 2 * ctx, head_dim), dtype=np.float32)[:, :ctx]) for _ in range(copies)]
    ring = itertools.cycle(caches)
    scale = np.float32(1.0 / math.sqrt(head_dim))
    start = ctx - n_new
    allowed = np.arange(ctx)[None, :] <= (start + np.arange(n_new))[:, None]

    def fn() -> np.ndarray:
        keys, values = next(ring)
        q4 = (q * scale).reshape(n_new, kv_heads, group, head_dim).transpose(1, 2, 0, 3)
        qg = q4.reshape(kv_heads, group * n_new, head_dim)
        scores = np.matmul(qg, keys.transpose(0, 2, 1)).reshape(kv_heads, group, n_new, ctx)
        if n_new > 1:
            scores = np.where(allowed, scores, np.float32(-np.inf))
        scores = scores - scores.max(axis=-1, keepdims=True)
        probs = np.exp(scores)
        probs /= probs.sum(axis=-1, keepdims=True)
        out = np.matmul(probs.reshape(kv_heads, group * n_new, ctx), values)
        return out.reshape(kv_heads, group, n_new, head_dim).transpose(2, 0, 1, 3).reshape(n_new, heads * head_dim)

    op = "attn_prefill" if n_new > 1 else "attn_decode"
    rec = KernelRecord(op=op, dtype="fp32", batch=1, seq_len=n_new if n_new > 1 else 0,
                          ctx_len=ctx if n_new == 1 else 0, num_heads=heads, head_dim=head_dim)
    return fn, rec


def _cold_gemm(m: int, n: int, k: int, weights: Sequence[np.ndarray], rng: np.random.Generator) -> Prepared:
    """kernels.prepare_gemm's record with a call that cycles through `weights` (copies of B)."""
    _, rec = prepare_gemm(m, n, k, "fp32", rng, b=weights[0])
    a = rng.standard_normal((m, k), dtype=np.float32)
    c = np.empty((m, n), dtype=np.float32)
    ring = itertools.cycle(weights)

    def fn() -> np.ndarray:
        return np.matmul(a, next(ring), out=c)
    return fn, rec


def _prepare_elementwise(op: str, tokens: int, hidden: int, inter: int, rng: np.random.Generator,
                         heads: int = 12, kv_heads: int = 4, head_dim: int = 64) -> Prepared:
    """The forward pass's own elementwise code: RMSNorm, SwiGLU's silu(gate) * up, the residual add, RoPE on q
    and k."""
    if op == "rmsnorm":
        x = rng.standard_normal((tokens, hidden), dtype=np.float32)
        w = np.ones(hidden, dtype=np.float32)

        def fn() -> object:
            return _norm(x, w, None, "rmsnorm")
        width = hidden
    elif op == "silu_mul":
        gate = rng.standard_normal((tokens, inter), dtype=np.float32)
        up = rng.standard_normal((tokens, inter), dtype=np.float32)

        def fn() -> object:
            return _activation(gate, "silu") * up
        width = inter
    elif op == "add":
        a = rng.standard_normal((tokens, hidden), dtype=np.float32)
        b = rng.standard_normal((tokens, hidden), dtype=np.float32)

        def fn() -> object:
            return a + b
        width = hidden
    elif op == "rope":
        cos, sin = rope_tables(tokens, head_dim)
        q = rng.standard_normal((tokens, heads, head_dim), dtype=np.float32)
        k = rng.standard_normal((tokens, kv_heads, head_dim), dtype=np.float32)

        def fn() -> object:
            return apply_rope(q, cos, sin), apply_rope(k, cos, sin)
        return fn, KernelRecord(op=op, dtype="fp32", m=tokens, batch=1, num_heads=heads, head_dim=head_dim)
    else:
        raise ValueError(f"op={op!r} must be one of rmsnorm, silu_mul, add, rope")
    return fn, KernelRecord(op=op, dtype="fp32", n=width, m=tokens, batch=1)


def measure_overhead_steps(spec: ModelSpec, batches: Sequence[int], repeats: int,
                           rng: np.random.Generator) -> tuple[ModelSpec, list[dict[str, Any]]]:
    """Time short steps of the model itself: decode steps (batch sizes `batches`, 16 cached tokens each) and
    prefills (1 and max(batches) sequences of 16 tokens); `repeats` timed steps each after a warm-up. What the
    kernel model misses on these short steps (Python dispatch, per-sequence attention calls, the GEMV/GEMM switch)
    is fitted as the step overheads. The serving run validated later is a separate run with other shapes."""
    tiny = spec
    bmax = max(batches)
    model = build_local_llama(tiny, rng, max_seqs=bmax, max_ctx_tokens=64)
    ctx = 16
    for b in batches:
        time_decode_steps(model, b, ctx, repeats, rng)
    for b in sorted({1, bmax}):
        time_prefill_steps(model, [np.arange(ctx) % tiny.vocab_size] * b, repeats)
    steps = [{"kind": s.kind, "batch_size": s.batch_size, "tokens": s.tokens, "ctx_sum": s.ctx_sum,
              "seconds": s.seconds} for s in model.steps]
    return tiny, steps


def _record_row(rec: KernelRecord, hardware: str, kv_heads: int = 0, variant: str = "") -> KernelMeasurement:
    common = dict(source="roofsim calibrate --local", hardware=hardware, framework="numpy", dtype=rec.dtype,
                  variant=variant, measured_s=rec.measured_s)
    if rec.op == "gemm":
        return KernelMeasurement(op="gemm", m=rec.m, n=rec.n, k=rec.k, **common)  # type: ignore[arg-type]
    if rec.op in ("attn_prefill", "attn_decode"):
        return KernelMeasurement(op=rec.op, batch=1, seq_len=rec.seq_len, ctx_len=rec.ctx_len,
                                 num_heads=rec.num_heads, num_kv_heads=kv_heads or rec.num_heads,
                                 head_dim=rec.head_dim, **common)  # type: ignore[arg-type]
    if rec.op in ("rmsnorm", "silu_mul", "add"):  # predict.py: tokens x hidden (silu_mul: hidden = intermediate)
        return KernelMeasurement(op=rec.op, tokens=rec.m, hidden=rec.n, **common)  # type: ignore[arg-type]
    if rec.op == "rope":  # predict.py: tokens x (heads + kv_heads) x head_dim rotated
        return KernelMeasurement(op="rope", tokens=rec.m, num_heads=rec.num_heads, num_kv_heads=kv_heads,
                                 head_dim=rec.head_dim, **common)  # type: ignore[arg-type]
    raise ValueError(f"no kernel row for measured op {rec.op!r}")


def _stream_rows(recs: Iterable[KernelRecord], hardware: str) -> list[KernelMeasurement]:
    """Single-thread STREAM copy/scale/add as elementwise rows with the same bytes (numpy ufuncs are single-threaded,
    like the forward pass's elementwise ops). float64 arrays of n elements = 2n float32 elements: copy and scale
    move 1 read + 1 write (predict.py 'rmsnorm' shape, hidden=1), add 2 reads + 1 write ('add'). Triad is two
    numpy passes (not one kernel) and is left out of the fit."""
    out = []
    for r in recs:
        if r.threads != 1 or r.op not in ("copy", "scale", "add"):
            continue
        op = "add" if r.op == "add" else "rmsnorm"
        out.append(KernelMeasurement(source="roofsim calibrate --local", hardware=hardware, framework="stream",
                                     op=op, dtype="fp32", variant=f"stream_{r.op}", measured_s=r.measured_s,
                                     tokens=2 * r.n, hidden=1))
    return out


def measure_local(spec: ModelSpec, quick: bool, rng: np.random.Generator, *, hardware: str = "local-cpu",
                  progress: Progress | None = None, use_torch: bool = True) -> LocalMeasurements:
    """Time GEMMs at `spec`'s weight shapes (plus generic squares), STREAM, the forward pass's elementwise and
    attention code at `spec`'s head layout, call overhead, and short steps of `spec` itself."""
    plan = QUICK if quick else FULL
    say = progress or (lambda msg: log.info("%s", msg))
    started = time.perf_counter()
    use_caching_allocator()  # as run_serving does: numpy temporaries reuse freed memory (see its docstring)
    machine = MachineFacts.of_this_machine()
    threads = machine.blas_threads

    # GEMM: interleaved rounds over every shape (timing.time_interleaved), one shared B per (n, k)
    shapes = [(n, k) for _, n, k in _model_gemm_shapes(spec)] + list(plan.extra_nk)
    gemms = [(m, n, k) for n, k in dict.fromkeys(shapes) for m in plan.gemm_m]
    gemms += [(m, spec.vocab_size, spec.hidden_size) for m in plan.lm_head_m]
    say(f"timing {len(gemms)} GEMM shapes ({plan.gemm_rounds} interleaved rounds, {threads} BLAS thread(s))")
    # Cold weights, as in the forward pass (the served model's weights are many times the last-level cache): each
    # (n, k) gets enough copies of B to span 2 x LLC and successive calls cycle through them, so a small weight
    # matrix is not timed from cache (a cache-resident 768 x 2048 B made m = 4 decode GEMMs ~1.5x too fast).
    cold_bytes = 2 * last_level_cache_bytes()
    shared: dict[tuple[int, int], list[np.ndarray]] = {}
    prepared = []
    for m, n, k in gemms:
        if (n, k) not in shared:
            copies = max(1, min(64, math.ceil(cold_bytes / (4 * n * k))))
            shared[n, k] = [rng.standard_normal((k, n), dtype=np.float32) for _ in range(copies)]
        prepared.append(_cold_gemm(m, n, k, shared[n, k], rng))
    gemm_recs = time_interleaved(prepared, plan.gemm_rounds, rng)
    del prepared, shared

    torch_rows: list[KernelMeasurement] = []
    torch_peaks: dict[str, float] = {}
    version = torch_gemm.torch_version() if use_torch else None
    if version is not None:
        tg = [(m, n, k) for n, k in dict.fromkeys(shapes) for m in plan.torch_m]
        say(f"timing {len(tg) * len(torch_gemm.TORCH_DTYPES)} GEMMs through torch {version} "
            f"({'/'.join(torch_gemm.TORCH_DTYPES)}, {threads} thread(s))")
        t_recs = time_interleaved(torch_gemm.prepare_torch_gemms(tg, torch_gemm.TORCH_DTYPES, threads, rng),
                                     plan.gemm_rounds, rng)
        torch_rows = [replace(_record_row(r, hardware), framework="torch", variant=f"torch {version}")
                      for r in t_recs]
        for r in t_recs:
            if r.m >= PEAK_MIN_M:
                torch_peaks[r.dtype] = max(torch_peaks.get(r.dtype, 0.0), r.flops / r.min_s)

    say("timing STREAM copy/scale/add/triad (1 thread and all CPUs) interleaved with the forward pass's "
        "elementwise code, then attention and call overhead")
    llc = machine.llc_bytes
    thread_options = sorted({1, os.cpu_count() or 1})
    ew = [_prepare_elementwise(op, t, spec.hidden_size, spec.intermediate_size, rng, spec.num_heads,
                               spec.num_kv_heads, spec.head_dim)
          for op in ("rmsnorm", "silu_mul", "add", "rope") for t in plan.elementwise_tokens]
    with ThreadPoolExecutor(max_workers=max(thread_options)) as pool:
        arrays = stream_arrays(4 * llc // 8)
        stream_prep = [prepare_stream(op, arrays, threads=t, pool=pool) for t in thread_options
                       for op in ("copy", "scale", "add", "triad")]
        # one interleaved set: the DRAM-sized STREAM rows and the elementwise rows see the same machine state
        # (in separate phases a drift of DRAM bandwidth between them would offset one against the other)
        mem_recs = time_interleaved(stream_prep + ew, max(plan.stream_repeats, plan.elementwise_rounds), rng)
        stream_recs, ew_recs = mem_recs[:len(stream_prep)], mem_recs[len(stream_prep):]
        del arrays, stream_prep, ew

    gemm_ovh, _ = measure_overheads()
    attn = [_prepare_attention(1, c, spec.num_heads, spec.num_kv_heads, spec.head_dim, rng) for c in plan.decode_ctx]
    attn += [_prepare_attention(s, s, spec.num_heads, spec.num_kv_heads, spec.head_dim, rng)
             for s in plan.prefill_seq]
    ew_attn = ew_recs + time_interleaved(attn, plan.attn_rounds, rng)

    say(f"timing engine overhead: short prefill/decode steps of {spec.name}")
    tiny, steps = measure_overhead_steps(spec, plan.step_batches, plan.step_repeats, rng)

    rows = [_record_row(r, hardware) for r in gemm_recs]
    rows.append(_record_row(replace(gemm_ovh, op="gemm"), hardware, variant="1x1x1 call overhead"))
    rows += _stream_rows(stream_recs, hardware)
    rows += [_record_row(r, hardware, kv_heads=spec.num_kv_heads) for r in ew_attn]
    stream = {f"{r.op.split('_')[0]}_t{r.threads}": r.bytes / r.min_s for r in stream_recs}
    big = [r.flops / r.min_s for r in gemm_recs if r.m >= PEAK_MIN_M]
    if not big:
        raise ValueError(f"no GEMM with m >= {PEAK_MIN_M} was timed; cannot measure the peak")
    notes = ("peak fp32 = best FLOP/s (fastest of the rounds) over GEMMs with m >= "
             f"{PEAK_MIN_M}; bandwidth = best STREAM-counted bandwidth over copy/scale/add/triad on 1 and "
             f"{max(thread_options)} threads",
             (f"bf16 GEMMs measured through torch {version} (their own profile, <stem>.torch.calibration.toml); "
              + torch_gemm.FP16_NOTE) if version else
             "fp16/bf16 are not measured (numpy has no BLAS half-precision GEMM; install the torch extra for bf16): "
             "the HardwareSpec lists fp32 only",
             "STREAM rows enter the fit as single-thread elementwise rows with the same bytes; triad is left out "
             "(numpy runs it as two passes)")
    return LocalMeasurements(
        rows=tuple(rows), peak_fp32_flops_per_s=max(big), bandwidth_bytes_per_s=max(stream.values()),
        stream=stream, overhead_steps=tuple(steps), overhead_model=tiny, machine=machine, quick=quick,
        wall_s=time.perf_counter() - started, notes=notes, torch_rows=tuple(torch_rows),
        torch_peaks=torch_peaks, torch_version=version)
