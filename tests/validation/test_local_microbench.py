"""Microbenchmark records count FLOPs and bytes correctly, the timing harness takes the statistics it claims (on a
fake clock: no assertion here depends on how fast or loaded the machine is), and records yield calibration rows."""

from __future__ import annotations

import os

import numpy as np
import pytest

from roofsim.validation.local import timing
from roofsim.validation.local.kernels import (
    measure_attention_decode,
    measure_attention_prefill,
    measure_gemm,
    measure_overheads,
    measure_stream,
    prepare_gemm,
)
from roofsim.validation.local.machine import (
    MachineFacts,
    blas_threads,
    last_level_cache_bytes,
    set_blas_threads,
    use_caching_allocator,
)
from roofsim.validation.local.microbench import MachineMeasurements
from roofsim.validation.local.timing import ROW_KEYS, KernelRecord, time_call, time_interleaved

# Generous ceiling: every core at 6 GHz retiring 64 fp32 FLOP/cycle (two AVX-512 FMA pipes x 16 lanes x 2). Load
# only slows a kernel down, so a measured rate above this is a counting or timing bug, never a busy machine.
THEORETICAL_CAP_FLOPS_PER_S = (os.cpu_count() or 1) * 6e9 * 64


class FakeClock:
    """perf_counter_ns for the timing module: advances only when a timed function says it ran for `ns`."""

    def __init__(self) -> None:
        self.now_ns = 0

    def perf_counter_ns(self) -> int:
        return self.now_ns

    def work(self, ns: int) -> None:
        self.now_ns += ns


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> FakeClock:
    fake = FakeClock()
    monkeypatch.setattr(timing, "time", fake)  # only timing.py's view of the time module
    return fake


def test_gemm_counts_2mnk_flops_and_compulsory_bytes() -> None:
    rec = measure_gemm(64, 128, 256, "fp32", np.random.default_rng(0), target_s=0.01)
    assert rec.flops == 2 * 64 * 128 * 256
    assert rec.bytes == (64 * 256 + 256 * 128 + 64 * 128) * 4
    assert (rec.op, rec.m, rec.n, rec.k, rec.dtype) == ("gemm", 64, 128, 256, "fp32")
    assert rec.min_s <= rec.measured_s <= rec.max_s and rec.repeats >= 3
    rec64 = measure_gemm(8, 16, 32, "fp64", np.random.default_rng(0), target_s=0.01)
    assert rec64.bytes == (8 * 32 + 32 * 16 + 8 * 16) * 8


def test_measured_gemm_peak_is_positive_and_below_the_theoretical_cap() -> None:
    rec = measure_gemm(512, 512, 512, "fp32", np.random.default_rng(0), target_s=0.1)
    assert rec.flops_per_s == rec.flops / rec.measured_s
    assert 0 < rec.flops_per_s < THEORETICAL_CAP_FLOPS_PER_S


def test_fp16_is_refused_with_the_reason() -> None:
    with pytest.raises(ValueError, match="half-precision"):
        measure_gemm(8, 8, 8, "fp16", np.random.default_rng(0))


def test_stream_counts_bytes_the_stream_way() -> None:
    n = 100_000
    copy = measure_stream("copy", n, repeats=3)
    assert copy.bytes == 2 * 8 * n and copy.op == "copy" and copy.dtype == "fp64" and copy.n == n
    triad = measure_stream("triad", n, repeats=3)
    assert triad.bytes == 3 * 8 * n and triad.flops == 2 * n
    threaded = measure_stream("add", n, threads=2, repeats=3)
    assert threaded.op == "add_mt" and threaded.threads == 2 and threaded.bytes == 3 * 8 * n
    assert 0 < copy.bytes_per_s < 1e13  # no CPU streams 10 TB/s; load only lowers the figure
    with pytest.raises(ValueError, match="op='stream'"):
        measure_stream("stream", n)


def test_attention_records_count_flops_and_bytes() -> None:
    dec = measure_attention_decode(256, 4, 32, np.random.default_rng(0), target_s=0.01)
    assert dec.flops == 4 * 4 * 256 * 32
    assert dec.bytes == (2 * 4 * 256 * 32 + 2 * 4 * 32) * 4
    assert (dec.ctx_len, dec.num_heads, dec.head_dim, dec.seq_len) == (256, 4, 32, 0)
    pre = measure_attention_prefill(64, 2, 16, np.random.default_rng(0), target_s=0.01)
    assert pre.flops == 4 * 2 * 64 * 64 * 16
    assert pre.bytes == 4 * 2 * 64 * 16 * 4 + 2 * 2 * 64 * 64 * 4


def test_overheads_are_timed_per_call() -> None:
    gemm, elementwise = measure_overheads(target_s=0.01)
    for rec in (gemm, elementwise):
        assert rec.min_s <= rec.measured_s <= rec.max_s and 5 <= rec.repeats <= 200
        assert rec.measured_s > 1e-8  # a numpy call through Python takes more than 10 ns on any CPU
    assert (gemm.op, gemm.m, gemm.n, gemm.k, gemm.flops) == ("gemm_overhead", 1, 1, 1, 2.0)
    assert (elementwise.op, elementwise.n, elementwise.flops, elementwise.bytes) == ("elementwise_overhead", 1, 1.0, 12.0)


def test_time_call_takes_the_median_of_the_requested_repeats(clock: FakeClock) -> None:
    costs_ns = iter([9, 9, 9, 5000, 1000, 3000, 2000])  # warm-up x2, the calibration call, then the 4 samples

    def fn() -> None:
        clock.work(next(costs_ns))

    median, best, worst, repeats = time_call(fn, min_repeats=4, max_repeats=4, min_sample_s=0.0, warmup=2)
    assert repeats == 4 and next(costs_ns, None) is None  # every planned call ran, no more
    assert (best, median, worst) == pytest.approx((1e-6, 2.5e-6, 5e-6))
    with pytest.raises(ValueError, match="min_repeats"):
        time_call(lambda: None, min_repeats=5, max_repeats=2)


def test_rows_have_exactly_the_calibration_keys() -> None:
    records = (
        KernelRecord(op="gemm", dtype="fp32", m=2, n=3, k=4, batch=1, measured_s=1e-6, flops=48.0, bytes=104.0,
                     min_s=1e-6, max_s=2e-6, repeats=3),
        KernelRecord(op="copy", dtype="fp64", n=10, batch=1, measured_s=1e-7, flops=0.0, bytes=160.0, min_s=5e-8,
                     max_s=2e-7, repeats=3),
    )
    machine = MachineFacts(cpu_model="x", logical_cpus=1, blas="b", blas_threads=1, llc_bytes=2**20)
    result = MachineMeasurements(records=records, peak_fp32_flops_per_s=1.0, peak_fp64_flops_per_s=1.0,
                                 matmul_overhead_s=1e-6, elementwise_overhead_s=1e-7, machine=machine, quick=True,
                                 wall_s=1.0)
    rows = list(result.to_rows())
    assert [tuple(r) for r in rows] == [ROW_KEYS, ROW_KEYS]
    assert rows[0]["measured_s"] == 1e-6 and rows[0]["m"] == 2 and rows[1]["seq_len"] == 0
    best, median = result.bandwidth_bytes_per_s("copy")
    assert best == pytest.approx(160 / 5e-8) and median == pytest.approx(160 / 1e-7)
    with pytest.raises(ValueError, match="no STREAM record"):
        result.bandwidth_bytes_per_s("triad")
    d = result.to_dict()
    assert d["summary"]["copy_t1_best_bytes_per_s"] == pytest.approx(160 / 5e-8)
    assert {k: d["machine"][k] for k in ("cpu_model", "blas_threads", "llc_bytes")} == {
        "cpu_model": "x", "blas_threads": 1, "llc_bytes": 2**20}


def test_last_level_cache_is_read() -> None:
    assert last_level_cache_bytes() >= 2**20


def test_time_interleaved_times_every_kernel_every_round(clock: FakeClock) -> None:
    calls = {"fast": 0, "slow": 0}

    def fast() -> None:  # 250 us a call: repeated 4 times to fill a 1 ms sample
        calls["fast"] += 1
        clock.work(250_000)

    def slow() -> None:  # 3 ms a call: one call fills a sample
        calls["slow"] += 1
        clock.work(3_000_000)

    template = KernelRecord(op="x", dtype="fp32")
    recs = time_interleaved([(fast, template), (slow, template)], 3, np.random.default_rng(0), min_sample_s=1e-3)
    assert [r.repeats for r in recs] == [3, 3]
    assert calls == {"fast": 2 + 3 * 4, "slow": 2 + 3}  # warm-up, calibration, then the rounds
    assert (recs[0].min_s, recs[0].measured_s, recs[0].max_s) == pytest.approx((2.5e-4,) * 3)
    assert (recs[1].min_s, recs[1].measured_s, recs[1].max_s) == pytest.approx((3e-3,) * 3)


def test_prepare_gemm_refuses_a_mismatched_shared_b() -> None:
    with pytest.raises(ValueError, match="need"):
        prepare_gemm(4, 8, 16, "fp32", np.random.default_rng(0), b=np.zeros((8, 16), dtype=np.float32))


def test_blas_threads_can_be_set_and_read_back() -> None:
    before = blas_threads()
    try:
        set_blas_threads(1)
        assert blas_threads() == 1
    finally:
        set_blas_threads(before)
    assert blas_threads() == before
    with pytest.raises(ValueError, match="threads=0"):
        set_blas_threads(0)


def test_caching_allocator_is_switched_on_once_on_linux_glibc() -> None:
    import platform

    on = use_caching_allocator()
    assert use_caching_allocator() == on  # idempotent
    if platform.system() == "Linux" and platform.libc_ver()[0] == "glibc":
        assert on
