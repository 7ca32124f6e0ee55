"""Calibrate roofsim for the machine at hand: time real numpy kernels (validation.local), turn the peaks into a
HardwareSpec, fit the Calibration with validation.calibrate's least squares over held-out shape families, fit the
engine's per-step overheads on short steps of the model itself, and write hardware + profile atomically.
"""

from __future__ import annotations

import dataclasses
import itertools
import json
import logging
import math
import os
import re
import tempfile
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from roofsim.hardware_specs.catalog import hardware_from_dict, load_hardware
from roofsim.hardware_specs.spec import HardwareSpec
from roofsim.model.cost import Calibration, CostModel
from roofsim.model.spec import ModelSpec, QuantSpec
from roofsim.validation.calibrate import (
    OPT_IN_FIELDS,
    CalibrationResult,
    FitData,
    cross_validate,
    fit_calibration,
    fitted_fields,
    prepare,
)
from roofsim.validation.kernel_tables import KernelMeasurement
from roofsim.validation.local import microbench as mb
from roofsim.validation.local import torch_gemm
from roofsim.validation.local.transformer import (
    _activation,
    _norm,
    apply_rope,
    build_local_llama,
    fill_cache,
    rope_tables,
    small_llama_spec,
)
from roofsim.validation.metrics_err import ErrorStats, error_stats, grouped_stats
from roofsim.validation.predict import FIT_FIELDS
from roofsim.validation.profiles import write_calibration

log = logging.getLogger(__name__)

__all__ = ["FP32", "LocalPlan", "LocalMeasurements", "LocalFit", "QUICK", "FULL", "measure_local",
           "machine_hardware", "fit_local", "fit_step_overheads", "calibrate_local",
           "write_local_profile", "calibration_path_for", "dumps_hardware", "local_model_config",
           "write_model_config", "step_errors", "measure_overhead_steps", "TILE_M_CANDIDATES", "QUICK_TILE_M_CANDIDATES",
           "kernel_class", "TorchFit", "fit_torch", "torch_calibration_path_for"]

#: The numpy forward pass computes, stores and caches everything in float32.
FP32 = QuantSpec(weight_dtype="fp32", activation_dtype="fp32", kv_dtype="fp32")

#: GEMM row-tile sizes tried by the fit. OpenBLAS packs a block of B for every call, so a GEMM with few rows costs
#: about as much as one with a tile of rows: the cost model's tile padding (gemm_tile_m) is what captures it.
TILE_M_CANDIDATES: tuple[int, ...] = (1, 4, 8, 16, 32, 48, 64, 96, 128)
QUICK_TILE_M_CANDIDATES: tuple[int, ...] = (1, 8, 16, 32, 64)
#: numpy's matmul hands a 1-row operand to BLAS sgemv (numpy/_core/src/umath/matmul.c.src: the vector @ matrix
#: case), which streams the weights at memory speed; m >= 2 goes to sgemm, which packs B on every call: on this
#: machine a (1, 4096) @ (4096, 4096) fp32 matmul takes 11 ms and m = 2 ... 16 take 40-53 ms. Not fitted.
GEMV_MAX_M = 1
#: OpenBLAS also skips packing for small problems (its small-matrix sgemm kernel on AVX-512 x86): measured on this
#: machine, m = 2 and 4 with (n, k) = (256, 768) (m*n*k = 0.39M, 0.79M) stream the weights like a GEMV, while
#: m = 2 with (768, 768) (1.18M) and m = 8 with (256, 768) (1.57M) are packed. Not fitted (an integer).
SMALL_MAX_MNK = 1_000_000
#: Array passes of the forward pass's unfused numpy elementwise code (validation/local/transformer.py), in units of
#: graph.elementwise's fused read + write. RMSNorm `x * (1/sqrt(mean(x*x) + eps)) * w`: x*x (read, write), mean
#: (read), x*r (read, write), *w (read, write) = 7 passes over t x h against 2 -> 3.5. SwiGLU `g / (1 + exp(-g)) * u`:
#: -g, exp, 1+, g/, *u = 7 reads + 5 writes of t x I against 2 reads + 1 write -> 4. Counted: the
#: starting point of the fit (validation.calibrate.OPT_IN_FIELDS), which finds what numpy actually costs.
NORM_PASSES = 3.5
ACT_PASSES = 4.0
#: RoPE's rotate-half (transformer.apply_rope): x1*c, x2*s, x2*c, x1*s (each reads and writes half), the - and +
#: (read two halves, write one), concatenate (read two halves, write the whole) = 5 reads + 4 writes vs 1 + 1.
ROPE_PASSES = 4.5

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
    llc_bytes: int
    cpu_model: str
    logical_cpus: int
    blas: str
    blas_threads: int
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
                       rng: np.random.Generator) -> mb.Prepared:
    """The forward pass's own attention code for one sequence (transformer.LocalLlama._forward): n_new query
    tokens over ctx cached keys (ctx includes the new ones), GQA by stacking a KV group's queries as rows."""
    group = heads // kv_heads
    q = rng.standard_normal((n_new, heads, head_dim), dtype=np.float32)
    # K/V are views of a longer per-sequence cache slot, as in the forward pass (cache_k[slot, :, :end]): strided
    # over the slot's max context, here 2 x ctx. A decode step reads each sequence's cache once per layer, so the
    # decode timing cycles through copies spanning 2 x the last-level cache (cold, like GEMM weights); a prefill
    # reads the K/V it has just written (warm).
    per_copy = 2 * kv_heads * 2 * ctx * head_dim * 4
    copies = 1 if n_new > 1 else max(1, min(256, math.ceil(2 * mb.last_level_cache_bytes() / per_copy)))
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
    rec = mb.KernelRecord(op=op, dtype="fp32", batch=1, seq_len=n_new if n_new > 1 else 0,
                          ctx_len=ctx if n_new == 1 else 0, num_heads=heads, head_dim=head_dim)
    return fn, rec


def _cold_gemm(m: int, n: int, k: int, weights: Sequence[np.ndarray], rng: np.random.Generator) -> mb.Prepared:
    """microbench.prepare_gemm's record with a call that cycles through `weights` (copies of B)."""
    _, rec = mb.prepare_gemm(m, n, k, "fp32", rng, b=weights[0])
    a = rng.standard_normal((m, k), dtype=np.float32)
    c = np.empty((m, n), dtype=np.float32)
    ring = itertools.cycle(weights)

    def fn() -> np.ndarray:
        return np.matmul(a, next(ring), out=c)
    return fn, rec


def _prepare_elementwise(op: str, tokens: int, hidden: int, inter: int, rng: np.random.Generator,
                         heads: int = 12, kv_heads: int = 4, head_dim: int = 64) -> mb.Prepared:
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
        return fn, mb.KernelRecord(op=op, dtype="fp32", m=tokens, batch=1, num_heads=heads, head_dim=head_dim)
    else:
        raise ValueError(f"op={op!r} must be one of rmsnorm, silu_mul, add, rope")
    return fn, mb.KernelRecord(op=op, dtype="fp32", n=width, m=tokens, batch=1)


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
        slots = [model.allocate() for _ in range(b)]
        for s in slots:
            fill_cache(model, s, ctx - 1, rng)
        for rep in range(repeats + 1):
            model.lengths[slots] = ctx - 1
            model.decode([(s, 1) for s in slots], record=rep > 0)
        for s in slots:
            model.release(s)
    for b in sorted({1, bmax}):
        slots = [model.allocate() for _ in range(b)]
        for rep in range(repeats + 1):
            model.lengths[slots] = 0
            model.prefill([(s, np.arange(ctx) % tiny.vocab_size) for s in slots], record=rep > 0)
        for s in slots:
            model.release(s)
    steps = [{"kind": s.kind, "batch_size": s.batch_size, "tokens": s.tokens, "ctx_sum": s.ctx_sum,
              "seconds": s.seconds} for s in model.steps]
    return tiny, steps


def _record_row(rec: mb.KernelRecord, hardware: str, kv_heads: int = 0, variant: str = "") -> KernelMeasurement:
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


def _stream_rows(recs: Iterable[mb.KernelRecord], hardware: str) -> list[KernelMeasurement]:
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
    mb.use_caching_allocator()  # as run_serving does: numpy temporaries reuse freed memory (see its docstring)
    threads = mb.blas_threads()

    # GEMM: interleaved rounds over every shape (microbench.time_interleaved), one shared B per (n, k)
    shapes = [(n, k) for _, n, k in _model_gemm_shapes(spec)] + list(plan.extra_nk)
    gemms = [(m, n, k) for n, k in dict.fromkeys(shapes) for m in plan.gemm_m]
    gemms += [(m, spec.vocab_size, spec.hidden_size) for m in plan.lm_head_m]
    say(f"timing {len(gemms)} GEMM shapes ({plan.gemm_rounds} interleaved rounds, {threads} BLAS thread(s))")
    # Cold weights, as in the forward pass (the served model's weights are many times the last-level cache): each
    # (n, k) gets enough copies of B to span 2 x LLC and successive calls cycle through them, so a small weight
    # matrix is not timed from cache (a cache-resident 768 x 2048 B made m = 4 decode GEMMs ~1.5x too fast).
    cold_bytes = 2 * mb.last_level_cache_bytes()
    shared: dict[tuple[int, int], list[np.ndarray]] = {}
    prepared = []
    for m, n, k in gemms:
        if (n, k) not in shared:
            copies = max(1, min(64, math.ceil(cold_bytes / (4 * n * k))))
            shared[n, k] = [rng.standard_normal((k, n), dtype=np.float32) for _ in range(copies)]
        prepared.append(_cold_gemm(m, n, k, shared[n, k], rng))
    gemm_recs = mb.time_interleaved(prepared, plan.gemm_rounds, rng)
    del prepared, shared

    torch_rows: list[KernelMeasurement] = []
    torch_peaks: dict[str, float] = {}
    version = torch_gemm.torch_version() if use_torch else None
    if version is not None:
        tg = [(m, n, k) for n, k in dict.fromkeys(shapes) for m in plan.torch_m]
        say(f"timing {len(tg) * len(torch_gemm.TORCH_DTYPES)} GEMMs through torch {version} "
            f"({'/'.join(torch_gemm.TORCH_DTYPES)}, {threads} thread(s))")
        t_recs = mb.time_interleaved(torch_gemm.prepare_torch_gemms(tg, torch_gemm.TORCH_DTYPES, threads, rng),
                                     plan.gemm_rounds, rng)
        torch_rows = [replace(_record_row(r, hardware), framework="torch", variant=f"torch {version}")
                      for r in t_recs]
        for r in t_recs:
            if r.m >= mb.PEAK_MIN_M:
                torch_peaks[r.dtype] = max(torch_peaks.get(r.dtype, 0.0), r.flops / r.min_s)

    say("timing STREAM copy/scale/add/triad (1 thread and all CPUs) interleaved with the forward pass's "
        "elementwise code, then attention and call overhead")
    llc = mb.last_level_cache_bytes()
    from concurrent.futures import ThreadPoolExecutor  # noqa: PLC0415

    thread_options = sorted({1, os.cpu_count() or 1})
    ew = [_prepare_elementwise(op, t, spec.hidden_size, spec.intermediate_size, rng, spec.num_heads,
                               spec.num_kv_heads, spec.head_dim)
          for op in ("rmsnorm", "silu_mul", "add", "rope") for t in plan.elementwise_tokens]
    with ThreadPoolExecutor(max_workers=max(thread_options)) as pool:
        arrays = mb.stream_arrays(4 * llc // 8)
        stream_prep = [mb.prepare_stream(op, arrays, threads=t, pool=pool) for t in thread_options
                       for op in ("copy", "scale", "add", "triad")]
        # one interleaved set: the DRAM-sized STREAM rows and the elementwise rows see the same machine state
        # (in separate phases a drift of DRAM bandwidth between them would offset one against the other)
        mem_recs = mb.time_interleaved(stream_prep + ew, max(plan.stream_repeats, plan.elementwise_rounds), rng)
        stream_recs, ew_recs = mem_recs[:len(stream_prep)], mem_recs[len(stream_prep):]
        del arrays, stream_prep, ew

    gemm_ovh, _ = mb.measure_overheads()
    attn = [_prepare_attention(1, c, spec.num_heads, spec.num_kv_heads, spec.head_dim, rng) for c in plan.decode_ctx]
    attn += [_prepare_attention(s, s, spec.num_heads, spec.num_kv_heads, spec.head_dim, rng)
             for s in plan.prefill_seq]
    ew_attn = ew_recs + mb.time_interleaved(attn, plan.attn_rounds, rng)

    say(f"timing engine overhead: short prefill/decode steps of {spec.name}")
    tiny, steps = measure_overhead_steps(spec, plan.step_batches, plan.step_repeats, rng)

    rows = [_record_row(r, hardware) for r in gemm_recs]
    rows.append(_record_row(replace(gemm_ovh, op="gemm"), hardware, variant="1x1x1 call overhead"))
    rows += _stream_rows(stream_recs, hardware)
    rows += [_record_row(r, hardware, kv_heads=spec.num_kv_heads) for r in ew_attn]
    stream = {f"{r.op.split('_')[0]}_t{r.threads}": r.bytes / r.min_s for r in stream_recs}
    big = [r.flops / r.min_s for r in gemm_recs if r.m >= mb.PEAK_MIN_M]
    if not big:
        raise ValueError(f"no GEMM with m >= {mb.PEAK_MIN_M} was timed; cannot measure the peak")
    notes = ("peak fp32 = best FLOP/s (fastest of the rounds) over GEMMs with m >= "
             f"{mb.PEAK_MIN_M}; bandwidth = best STREAM-counted bandwidth over copy/scale/add/triad on 1 and "
             f"{max(thread_options)} threads",
             (f"bf16 GEMMs measured through torch {version} (their own profile, <stem>.torch.calibration.toml); "
              + torch_gemm.FP16_NOTE) if version else
             "fp16/bf16 are not measured (numpy has no BLAS half-precision GEMM; install the torch extra for bf16): "
             "the HardwareSpec lists fp32 only",
             "STREAM rows enter the fit as single-thread elementwise rows with the same bytes; triad is left out "
             "(numpy runs it as two passes)")
    return LocalMeasurements(
        rows=tuple(rows), peak_fp32_flops_per_s=max(big), bandwidth_bytes_per_s=max(stream.values()),
        stream=stream, overhead_steps=tuple(steps), overhead_model=tiny, llc_bytes=llc,
        cpu_model=mb.cpu_model_name(), logical_cpus=os.cpu_count() or 1, blas=mb.blas_name(), blas_threads=threads,
        quick=quick, wall_s=time.perf_counter() - started, notes=notes, torch_rows=tuple(torch_rows),
        torch_peaks=torch_peaks, torch_version=version)


# ----------------------------------------------------------------------------------------- hardware
def _mem_total_bytes(meminfo: Path = Path("/proc/meminfo")) -> int:
    for line in meminfo.read_text().splitlines():
        if line.startswith("MemTotal:"):
            return int(line.split()[1]) * 1024
    raise ValueError(f"{meminfo} has no MemTotal line")


def _clock_hz(cpu_model: str) -> float:
    m = re.search(r"@\s*([\d.]+)\s*GHz", cpu_model)
    if m:
        return float(m.group(1)) * 1e9
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("cpu MHz"):
                return float(line.split(":", 1)[1]) * 1e6
    except OSError:
        pass
    return 2.5e9  # cpu-generic.toml's placeholder clock; only informative, no cost formula reads it


def machine_hardware(meas: LocalMeasurements, hw_id: str = "local-cpu") -> HardwareSpec:
    """A HardwareSpec for this machine: measured fp32 peak and bandwidth; num_units = BLAS threads (the cores a
    GEMM runs on); capacity = MemTotal; last-level cache from /sys; power, price and links from cpu-generic.toml
    (not measurable here, stated in `sources`)."""
    generic = load_hardware("cpu-generic")
    when = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    measured = (f"measured by `roofsim calibrate --local{' --quick' if meas.quick else ''}` on {when}: "
                f"{meas.cpu_model}, {meas.logical_cpus} logical CPUs, {meas.blas} with {meas.blas_threads} thread(s)")
    data = {
        "id": hw_id,
        "name": f"This machine ({meas.cpu_model}, {meas.blas_threads} BLAS thread(s))",
        "vendor": "local",
        "architecture": "cpu",
        "kind": "cpu",
        # fp32: numpy's BLAS (what the numpy forward pass runs); bf16: torch's CPU kernels, when measured
        "peak_flops_per_s": {"fp32": float(meas.peak_fp32_flops_per_s),
                             **{d: float(v) for d, v in meas.torch_peaks.items() if d != "fp32"}},
        "memory": {"capacity_bytes": float(_mem_total_bytes()),
                   "bandwidth_bytes_per_s": float(meas.bandwidth_bytes_per_s),
                   "l2_bytes": float(meas.llc_bytes)},
        "compute": {"num_units": int(meas.blas_threads), "clock_hz": _clock_hz(meas.cpu_model)},
        "interconnect": generic.interconnect.model_dump(),
        "power": generic.power.model_dump(),
        "price_usd_per_hour": generic.price_usd_per_hour,
        "sources": {"compute": measured + " (peak = best GEMM FLOP/s, m >= 512; fp32 through numpy's BLAS"
                               + (f", bf16 through torch {meas.torch_version}" if meas.torch_peaks else "") + ")",
                    "memory": measured + " (bandwidth = best STREAM-counted copy/scale/add/triad; capacity = "
                                         "/proc/meminfo MemTotal; cache = /sys cpu0 largest cache)",
                    "interconnect": "copied from cpu-generic.toml: " + generic.sources.interconnect,
                    "power": "copied from cpu-generic.toml (not measured): " + generic.sources.power,
                    "price": "copied from cpu-generic.toml: " + generic.sources.price},
        "notes": "; ".join(meas.notes),
    }
    return hardware_from_dict(data, source="validation.local_calibrate.machine_hardware")


def _toml_value(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int):
        return str(v)
    if isinstance(v, float):
        return repr(v)
    if isinstance(v, str):
        return json.dumps(v)  # a JSON string is a valid TOML basic string
    if isinstance(v, (list, tuple)):
        return "[" + ", ".join(_toml_value(x) for x in v) + "]"
    raise TypeError(f"cannot write {type(v).__name__} value {v!r} to TOML")


def dumps_hardware(hw: HardwareSpec) -> str:
    """The TOML text of a HardwareSpec (load_hardware reads it back to an equal spec; tested)."""
    d = hw.model_dump(exclude_none=True)
    lines = ["# HardwareSpec of this machine, written by `roofsim calibrate --local` (validation/local_calibrate.py).",
             "# Its calibration profile is the file next to it named <stem>.calibration.toml."]
    tables = [(k, v) for k, v in d.items() if isinstance(v, Mapping)]
    for k, v in d.items():
        if not isinstance(v, Mapping):
            lines.append(f"{k} = {_toml_value(v)}")
    for k, v in tables:
        lines.append(f"\n[{k}]")
        lines += [f"{kk} = {_toml_value(vv)}" for kk, vv in v.items()]
    return "\n".join(lines) + "\n"


# ----------------------------------------------------------------------------------------- fitting
@dataclass(frozen=True)
class LocalFit:
    """The fitted calibration, the kernel fit it came from, the chosen tile and the overhead fit."""

    calibration: Calibration
    kernel_fit: CalibrationResult
    tile_m: int
    tile_scores: dict[int, float]  # tile_m -> held-out median |error| % over all rows
    step_overhead_s: float
    step_overhead_per_seq_s: float
    overhead_residual_pct: float  # median |error| % of the short model steps after the overhead fit
    held_out_by_class: dict[str, ErrorStats]  # kernel_class -> held-out error over all its rows, pooled
    torch: TorchFit | None = None  # the torch GEMMs' own profile, when torch was measured

    def summary(self) -> dict[str, Any]:
        """Held-out median |error| % per kernel key, pooled per class (gemm, memory_bound, attention), overall."""
        held = self.kernel_fit.held_out
        return {"held_out_median_abs_pct": {k: held[k].median_abs_pct_err for k in held},
                "held_out_pooled_median_abs_pct": {c: v.median_abs_pct_err for c, v in self.held_out_by_class.items()},
                "held_out_overall_median_abs_pct": self.kernel_fit.held_out_overall.median_abs_pct_err,
                "tile_m": self.tile_m, "tile_scores": self.tile_scores,
                "step_overhead_s": self.step_overhead_s, "step_overhead_per_seq_s": self.step_overhead_per_seq_s,
                "overhead_fit_median_abs_pct": self.overhead_residual_pct}


def fit_step_overheads(steps: Sequence[Mapping[str, Any]], tiny: ModelSpec, hw: HardwareSpec,
                       cal: Calibration) -> tuple[float, float, float]:
    """(step_overhead_s, step_overhead_per_seq_s, median |error| %) from short steps of the model: the measured time minus
    the kernels' predicted time (overheads zeroed) is fitted as a + b * sequences by non-negative least squares."""
    from scipy.optimize import nnls  # noqa: PLC0415

    from roofsim.validation.replay import step_shape  # noqa: PLC0415

    zero = cal.model_copy(update={"step_overhead_s": 0.0, "step_overhead_per_seq_s": 0.0})
    cost = CostModel(tiny, hw, FP32, calibration=zero)
    shapes = [step_shape(s["kind"], s["batch_size"], s["tokens"], s["ctx_sum"]) for s in steps]
    kernels = np.array([cost.step_seconds(sh) for sh in shapes])
    measured = np.array([float(s["seconds"]) for s in steps])
    seqs = np.array([float(sh.decode_seqs + sh.prefill_seqs) for sh in shapes])
    a = np.column_stack([np.ones_like(seqs), seqs])
    (base, per_seq), _ = nnls(a / measured[:, None], (measured - kernels) / measured)  # relative residuals
    pred = kernels + base + per_seq * seqs
    return float(base), float(per_seq), float(np.median(np.abs(pred - measured) / measured) * 100)


def _local_groups(data: FitData) -> np.ndarray:
    """Cross-validation groups: validation.calibrate.shape_family, except that elementwise rows are grouped by
    shape (tokens x width) across ops, not by op: numpy's pass counts are fitted per op (they are properties of
    the code, like a kernel's name), and what is held out is every op at an unseen size."""
    names = []
    for row, g in zip(data.rows, data.groups, strict=True):
        if row.op in ("rmsnorm", "silu_mul", "add", "rope"):
            names.append(f"elementwise tokens={row.tokens}")
        else:
            names.append(f"group {int(g)}")
    return np.unique(np.array(names, dtype=object), return_inverse=True)[1]


def kernel_class(op: str) -> str:
    """The three classes the local report pools: gemm, attention, memory_bound (numpy elementwise + STREAM)."""
    return "gemm" if op == "gemm" else "attention" if op.startswith("attn") else "memory_bound"


def _calibrate_rows(rows: Sequence[KernelMeasurement], base: Calibration, *, folds: int, seed: int, name: str
                    ) -> tuple[CalibrationResult, dict[str, ErrorStats]]:
    """validation.calibrate.calibrate for rows whose `hardware` is a TOML path (not a catalog id): the same
    prepare -> fit_calibration -> cross_validate steps, without the catalog lookup of the hardware id."""
    data, problems = prepare(rows, base)
    data = dataclasses.replace(data, groups=_local_groups(data))
    fields = fitted_fields(data, extra=OPT_IN_FIELDS)
    cal = fit_calibration(data, base, fields=fields, name=name, seed=seed)
    ins = data.features.seconds_params({x: getattr(cal, x) for x in FIT_FIELDS})
    classes = np.array([kernel_class(r.op) for r in data.rows])
    if folds:
        oof = cross_validate(data, base, folds=folds, seed=seed, fields=fields)
        held, held_all = grouped_stats(data.rows, oof, data.measured), error_stats(oof, data.measured)
        pooled = {c: error_stats(oof[classes == c], data.measured[classes == c]) for c in np.unique(classes)}
    else:
        held, held_all = {}, ErrorStats(0, math.nan, math.nan, math.nan, math.nan)
        pooled = {}
    return CalibrationResult(
        calibration=cal, fields=fields, in_sample=grouped_stats(data.rows, ins, data.measured),
        held_out=held, in_sample_overall=error_stats(ins, data.measured), held_out_overall=held_all,
        n_rows=len(data.measured), n_families=len(np.unique(data.groups)), folds=folds, problems=problems), pooled


def _write_temp_hardware(hw: HardwareSpec, folder: Path) -> Path:
    path = folder / f"{hw.id}.toml"
    path.write_text(dumps_hardware(hw), encoding="utf-8")
    return path


def _best_tile(rows: Sequence[KernelMeasurement], hw: HardwareSpec, tiles: Sequence[int],
               base: Callable[[int], Calibration], *, folds: int, seed: int, name: str,
               say: Callable[[int, float], None] | None = None
               ) -> tuple[int, CalibrationResult, dict[str, ErrorStats], dict[int, float]]:
    """Fit `rows` once per candidate gemm_tile_m (an integer the least squares cannot move), starting from
    base(tile); the tile with the lowest held-out median |error| wins. Returns (tile, its fit, its pooled held-out
    errors per kernel class, every tile's score)."""
    best: tuple[float, int, CalibrationResult, dict[str, ErrorStats]] | None = None
    scores: dict[int, float] = {}
    with tempfile.TemporaryDirectory(prefix="roofsim-local-") as tmp:
        hw_path = _write_temp_hardware(hw, Path(tmp))
        moved = [replace(r, hardware=str(hw_path)) for r in rows]
        for tm in tiles:
            res, pooled = _calibrate_rows(moved, base(tm), folds=folds, seed=seed, name=name)
            score = res.held_out_overall.median_abs_pct_err if folds else res.in_sample_overall.median_abs_pct_err
            scores[tm] = round(float(score), 2)
            if say is not None:
                say(tm, score)
            if best is None or score < best[0]:
                best = (score, tm, res, pooled)
    assert best is not None
    return best[1], best[2], best[3], scores


def fit_local(meas: LocalMeasurements, hw: HardwareSpec, *, folds: int = 5, seed: int = 0,
              tiles: Sequence[int] = TILE_M_CANDIDATES, name: str = "local-cpu",
              progress: Progress | None = None) -> LocalFit:
    """validation.calibrate.calibrate for each candidate gemm_tile_m (an integer the least squares cannot move);
    the tile with the lowest held-out median |error| wins; then the step overheads on the tiny-model steps."""
    say = progress or (lambda msg: log.info("%s", msg))

    def base(tm: int) -> Calibration:
        return Calibration(name=name, hardware=hw.id, gemm_tile_m=tm, gemm_tile_n=64, gemm_gemv_max_m=GEMV_MAX_M,
                           gemm_small_max_mnk=SMALL_MAX_MNK, elementwise_norm_passes=NORM_PASSES,
                           elementwise_act_passes=ACT_PASSES, step_overhead_s=0.0, step_overhead_per_seq_s=0.0,
                           # start the cache regime (fitted; validation.calibrate.fitted_fields): 2x faster
                           # below a quarter of the last-level cache
                           elementwise_cache_gain=2.0, elementwise_cache_bytes=meas.llc_bytes / 4,
                           elementwise_norm_cache_gain=2.0, elementwise_act_cache_gain=2.0,
                           elementwise_rope_passes=ROPE_PASSES, elementwise_rope_cache_gain=2.0)

    tile_m, res, pooled, scores = _best_tile(meas.rows, hw, tiles, base, folds=folds, seed=seed, name=name,
                                             say=lambda tm, score: say(f"gemm_tile_m={tm}: held-out median "
                                                                       f"|error| {score:.1f}%"))
    a, b, resid = fit_step_overheads(meas.overhead_steps, meas.overhead_model, hw, res.calibration)
    cal = res.calibration.model_copy(update={
        "step_overhead_s": a, "step_overhead_per_seq_s": b,
        "source": (f"roofsim calibrate --local{' --quick' if meas.quick else ''}: {res.n_rows} numpy kernel rows "
                   f"on {meas.cpu_model} ({meas.blas_threads} BLAS thread(s)), {res.folds}-fold held-out shape "
                   f"families; gemm_tile_m chosen from {list(tiles)}; step overheads from "
                   f"{len(meas.overhead_steps)} short steps of {meas.overhead_model.name} (they hold for that model)")})
    return LocalFit(cal, res, tile_m, scores, a, b, resid, pooled)


@dataclass(frozen=True)
class TorchFit:
    """The GEMMs timed through torch (fp32, bf16), fitted on their own: a profile for a torch CPU engine."""

    calibration: Calibration
    kernel_fit: CalibrationResult
    tile_m: int
    tile_scores: dict[int, float]
    version: str


def fit_torch(meas: LocalMeasurements, hw: HardwareSpec, *, folds: int = 5, seed: int = 0,
              tiles: Sequence[int] = QUICK_TILE_M_CANDIDATES, name: str = "local-cpu-torch",
              progress: Progress | None = None) -> TorchFit:
    """validation.calibrate over the torch GEMM rows alone (its kernels are not numpy's: oneDNN/MKL, their own
    packing and small-matrix paths), tile chosen by held-out error as in fit_local."""
    if not meas.torch_rows:
        raise ValueError("no GEMMs were timed through torch (is the optional torch extra installed?)")
    say = progress or (lambda msg: log.info("%s", msg))

    def base(tm: int) -> Calibration:
        return Calibration(name=name, hardware=hw.id, gemm_tile_m=tm, gemm_tile_n=64, gemm_gemv_max_m=GEMV_MAX_M,
                           step_overhead_s=0.0, step_overhead_per_seq_s=0.0)

    tile_m, res, _, scores = _best_tile(meas.torch_rows, hw, tiles, base, folds=folds, seed=seed, name=name)
    score = scores[tile_m]
    say(f"torch {meas.torch_version}: gemm_tile_m={tile_m}, held-out median |error| {score:.1f}%")
    cal = res.calibration.model_copy(update={
        "source": (f"roofsim calibrate --local{' --quick' if meas.quick else ''}: {res.n_rows} GEMMs through torch "
                   f"{meas.torch_version} on {meas.cpu_model} ({meas.blas_threads} thread(s)); kernels only "
                   f"(no step overheads: those belong to the engine that runs them)")})
    return TorchFit(cal, res, tile_m, scores, meas.torch_version or "?")


def torch_calibration_path_for(hardware_path: Path | str) -> Path:
    """The torch GEMM profile written next to a local hardware TOML: <stem>.torch.calibration.toml."""
    p = Path(hardware_path)
    return p.with_name(f"{p.stem}.torch.calibration.toml")


# ----------------------------------------------------------------------------------------- writing
def calibration_path_for(hardware_path: Path | str) -> Path:
    """The calibration profile written next to a local hardware TOML: <stem>.calibration.toml."""
    p = Path(hardware_path)
    return p.with_name(f"{p.stem}.calibration.toml")


def _atomic_write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise


def write_local_profile(hw: HardwareSpec, fit: LocalFit, meas: LocalMeasurements, out: Path | str
                        ) -> tuple[Path, Path]:
    """Write the HardwareSpec to `out` and the calibration profile to <stem>.calibration.toml, each atomically
    (temp file + fsync + os.replace): an interrupted run leaves the previous files or none, never half a file.
    The profile is written first, so a hardware file is never newer than its calibration."""
    out = Path(out)
    text = dumps_hardware(hw)
    hardware_from_dict(__import__("tomllib").loads(text), source=str(out))  # round-trip check before any write
    meta = {"machine": {"cpu_model": meas.cpu_model, "logical_cpus": meas.logical_cpus, "blas": meas.blas,
                        "blas_threads": meas.blas_threads},
            "quick": meas.quick, "measure_wall_s": round(meas.wall_s, 1),
            "peak_fp32_flops_per_s": meas.peak_fp32_flops_per_s, "bandwidth_bytes_per_s": meas.bandwidth_bytes_per_s,
            "hardware_file": out.name, "gemm_tile_m": fit.tile_m,
            "tile_m_held_out_median_abs_pct": {str(k): v for k, v in fit.tile_scores.items()},
            "overhead_fit_median_abs_pct": round(fit.overhead_residual_pct, 2),
            "held_out_pooled_median_abs_pct": {c: round(v.median_abs_pct_err, 2)
                                               for c, v in fit.held_out_by_class.items()},
            **fit.kernel_fit.meta()}
    cal_path = write_calibration(fit.calibration, calibration_path_for(out), meta)
    if fit.torch is not None:
        t = fit.torch
        write_calibration(t.calibration, torch_calibration_path_for(out), {
            "torch_version": t.version, "hardware_file": out.name, "gemm_tile_m": t.tile_m,
            "peak_flops_per_s": dict(meas.torch_peaks),
            "tile_m_held_out_median_abs_pct": {str(k): v for k, v in t.tile_scores.items()}, **t.kernel_fit.meta()})
    _atomic_write(out, text)
    return out, cal_path


def calibrate_local(out: Path | str, *, quick: bool, model: ModelSpec | None = None, seed: int = 0,
                    folds: int = 5, hw_id: str = "local-cpu", progress: Progress | None = None,
                    use_torch: bool = True) -> tuple[HardwareSpec, LocalFit, LocalMeasurements, tuple[Path, Path]]:
    """Measure, fit and write: the whole `roofsim calibrate --local`. With torch installed (and `use_torch`), its
    GEMMs get their own profile, <stem>.torch.calibration.toml (fit_torch)."""
    spec = model or small_llama_spec()
    rng = np.random.default_rng(seed)
    meas = measure_local(spec, quick, rng, progress=progress, use_torch=use_torch)
    hw = machine_hardware(meas, hw_id)
    tiles = QUICK_TILE_M_CANDIDATES if quick else TILE_M_CANDIDATES
    fit = fit_local(meas, hw, folds=folds, seed=seed, name=f"{hw_id}-fitted", progress=progress, tiles=tiles)
    if meas.torch_rows:
        fit = replace(fit, torch=fit_torch(meas, hw, folds=folds, seed=seed, name=f"{hw_id}-torch-fitted",
                                           tiles=tiles, progress=progress))
    paths = write_local_profile(hw, fit, meas, out)
    return hw, fit, meas, paths


# ----------------------------------------------------------------------------------------- model configs
def local_model_config(spec: ModelSpec) -> dict[str, Any]:
    """A HuggingFace LlamaConfig-style config.json dict for a Llama-architecture ModelSpec, so the simulator
    (which loads models by preset name or config path) can load the model the local run served."""
    if spec.family not in ("llama", "mistral", "qwen2", "qwen3") or spec.moe or spec.mla or spec.num_sliding_layers:
        raise ValueError(f"model {spec.name!r} (family {spec.family!r}) has no Llama-style config.json; "
                         f"pass the preset or config.json it came from instead")
    return {"architectures": ["LlamaForCausalLM"], "model_type": "llama", "hidden_size": spec.hidden_size,
            "num_hidden_layers": spec.num_layers, "num_attention_heads": spec.num_heads,
            "num_key_value_heads": spec.num_kv_heads, "head_dim": spec.head_dim,
            "intermediate_size": spec.intermediate_size, "vocab_size": spec.vocab_size,
            "max_position_embeddings": spec.max_context_tokens, "hidden_act": spec.activation,
            "tie_word_embeddings": spec.tie_word_embeddings, "attention_bias": spec.attention_bias,
            "mlp_bias": spec.mlp_bias, "rms_norm_eps": 1e-6, "torch_dtype": "float32",
            "_roofsim_source": spec.source}


def write_model_config(spec: ModelSpec, path: Path | str) -> Path:
    path = Path(path)
    _atomic_write(path, json.dumps(local_model_config(spec), indent=1) + "\n")
    return path


# ----------------------------------------------------------------------------------------- e2e checks
def step_errors(steps: Sequence[Mapping[str, Any]], spec: ModelSpec, hw: HardwareSpec, cal: Calibration
                ) -> list[dict[str, Any]]:
    """Measured vs predicted per recorded step, grouped by (kind, batch size): mean seconds and error %."""
    from roofsim.validation.replay import compare_steps  # noqa: PLC0415

    return compare_steps([dict(s) for s in steps], CostModel(spec, hw, FP32, calibration=cal))
