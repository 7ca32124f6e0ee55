"""The generic microbenchmark grid of this machine: GEMM peaks (fp32, fp64), STREAM bandwidth on one thread
and all CPUs, call overhead and attention kernels, timed in interleaved rounds (`measure_machine`).
"""

from __future__ import annotations

import logging
import os
import platform
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field

import numpy as np

from roofsim.validation.local.kernels import (
    FP16_SKIPPED_NOTE,
    GEMM_DTYPES,
    STREAM_OPS,
    measure_overheads,
    prepare_attention_decode,
    prepare_attention_prefill,
    prepare_gemm,
    prepare_stream,
    stream_arrays,
)
from roofsim.validation.local.machine import MachineFacts
from roofsim.validation.local.timing import KernelRecord, time_interleaved

logger = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class MachineMeasurements:
    """Everything `measure_machine` measured, plus a summary (peaks, bandwidth, overheads) and machine facts."""

    records: tuple[KernelRecord, ...]
    peak_fp32_flops_per_s: float
    peak_fp64_flops_per_s: float
    matmul_overhead_s: float
    elementwise_overhead_s: float
    machine: MachineFacts
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
            known = sorted({(r.op, r.threads) for r in self.records if r.op.split("_")[0] in STREAM_OPS})
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
        for op in STREAM_OPS:
            for threads in sorted({r.threads for r in self.records if r.op.split("_")[0] == op}):
                best, median = self.bandwidth_bytes_per_s(op, threads)
                summary[f"{op}_t{threads}_best_bytes_per_s"] = best
                summary[f"{op}_t{threads}_median_bytes_per_s"] = median
        return {
            "machine": {
                **asdict(self.machine),
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
    machine = MachineFacts.of_this_machine()
    records: list[KernelRecord] = []

    gemms = [(m, n, k, "fp32") for m in plan.gemm_m for n, k in plan.gemm_nk]
    gemms += [(m, n, k, "fp64") for m in plan.gemm_m if m >= plan.fp64_min_m for n, k in plan.gemm_nk]
    shared_b: dict[tuple[int, int, str], np.ndarray] = {}
    for _, n, k, dtype in gemms:
        if (n, k, dtype) not in shared_b:
            shared_b[n, k, dtype] = rng.standard_normal((k, n)).astype(GEMM_DTYPES[dtype])
    prepared = [prepare_gemm(m, n, k, dtype, rng, b=shared_b[n, k, dtype]) for m, n, k, dtype in gemms]
    records += time_interleaved(prepared, plan.gemm_rounds, rng)
    del prepared, shared_b
    records.sort(key=lambda r: (r.dtype, r.n, r.k, r.m))
    logger.info("GEMM: %d shapes in %.1f s", len(records), time.perf_counter() - started)

    llc = machine.llc_bytes
    threads_options = sorted({1, os.cpu_count() or 1})
    with ThreadPoolExecutor(max_workers=max(threads_options)) as pool:
        for multiple in plan.stream_multiples:
            arrays = stream_arrays(multiple * llc // 8)
            stream = [
                prepare_stream(op, arrays, threads=threads, pool=pool)
                for threads in threads_options
                for op in STREAM_OPS
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
        machine=machine,
        quick=quick,
        wall_s=time.perf_counter() - started,
        notes=(
            FP16_SKIPPED_NOTE,
            "STREAM bytes are counted as STREAM does (copy/scale 2 words, add/triad 3 words per element); "
            "numpy's triad is two passes (multiply, then add in place) so it moves 5 words.",
            "Single-thread STREAM ops are named copy/scale/add/triad; multi-thread ones <op>_mt.",
        ),
    )
