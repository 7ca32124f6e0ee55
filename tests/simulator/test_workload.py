"""Synthetic workloads: arrival processes hit their rate and cv, lengths respect their laws, Trace ops, named workloads."""

from __future__ import annotations

import math
import tomllib
from pathlib import Path

import numpy as np
import pytest
from pydantic import TypeAdapter, ValidationError
from scipy import special, stats

from roofsim.hardware_specs.errors import UnknownNameError
from roofsim.simulator.workload import (
    BurstArrivals,
    ClosedLoopArrivals,
    ConstantArrivals,
    EmpiricalLengths,
    FixedLengths,
    GammaArrivals,
    LognormalLengths,
    NamedWorkload,
    NormalLengths,
    OfflineArrivals,
    PoissonArrivals,
    QuantileLengths,
    SyntheticWorkload,
    Trace,
    TraceWorkload,
    UniformLengths,
    WorkloadConfig,
    ZipfLengths,
    build_trace,
    named_workload,
    named_workload_stats,
    named_workloads,
    resolve_workload,
    sample_arrivals,
    sample_lengths,
)

TOML = Path(__file__).resolve().parents[2] / "simulator" / "data" / "workloads.toml"


def rng(seed: int = 0) -> np.random.Generator:
    return np.random.default_rng(seed)


def gaps_cv(arrival_s: np.ndarray) -> float:
    g = np.diff(np.concatenate([[0.0], arrival_s]))
    return float(g.std() / g.mean())


# ---------------------------------------------------------------- arrivals


def test_poisson_rate_and_cv_over_100k():
    t = sample_arrivals(PoissonArrivals(rate_per_s=7.0), rng(1), num_requests=100_000)
    assert t.size == 100_000
    assert abs(t.size / t[-1] / 7.0 - 1) < 0.02
    assert abs(gaps_cv(t) - 1.0) < 0.02
    assert np.all(np.diff(t) >= 0) and t[0] > 0


def test_poisson_gaps_are_not_rounded_or_truncated():
    t = sample_arrivals(PoissonArrivals(rate_per_s=1.0), rng(2), num_requests=50_000)
    g = np.diff(t)
    # Exponential(1): about e^-8 * 50k = 17 gaps above 8 s, and gaps are not multiples of any grid.
    assert 5 <= int(np.sum(g > 8.0)) <= 40
    assert np.unique(np.round(g, 9)).size > 49_000
    # KS test against Exp(1): a truncation or rounding would fail it.
    assert stats.kstest(g, "expon").pvalue > 0.01


@pytest.mark.parametrize("cv", [0.5, 3.0])
def test_gamma_cv_and_rate(cv):
    t = sample_arrivals(GammaArrivals(rate_per_s=4.0, cv=cv), rng(3), num_requests=100_000)
    assert abs(gaps_cv(t) / cv - 1) < 0.05
    assert abs(t.size / t[-1] / 4.0 - 1) < 0.04


def test_constant_arrivals_are_evenly_spaced():
    t = sample_arrivals(ConstantArrivals(rate_per_s=4.0), rng(), num_requests=5)
    np.testing.assert_allclose(t, [0.25, 0.5, 0.75, 1.0, 1.25])
    t = sample_arrivals(ConstantArrivals(rate_per_s=4.0), rng(), duration_s=1.0)
    np.testing.assert_allclose(t, [0.25, 0.5, 0.75])  # [0, 1): 1.0 itself is outside


def test_burst_rate_and_silence_in_off_periods():
    cfg = BurstArrivals(on_rate_per_s=20.0, off_rate_per_s=0.0, on_s=2.0, off_s=8.0)
    t = sample_arrivals(cfg, rng(4), duration_s=20_000.0)
    # mean rate = 20 * 2 / 10 = 4 req/s
    assert abs(t.size / 20_000.0 / 4.0 - 1) < 0.02
    phase = np.mod(t, 10.0)
    assert phase.max() < 2.0 + 1e-9
    cfg2 = BurstArrivals(on_rate_per_s=10.0, off_rate_per_s=2.0, on_s=1.0, off_s=1.0)
    t2 = sample_arrivals(cfg2, rng(5), duration_s=20_000.0)
    on = np.mod(t2, 2.0) < 1.0
    assert abs(on.sum() / 20_000 / 10 * 2 - 1) < 0.03 and abs((~on).sum() / 20_000 / 2 * 2 - 1) < 0.05


def test_exact_n_and_duration_limits():
    p = PoissonArrivals(rate_per_s=3.0)
    assert sample_arrivals(p, rng(), num_requests=1234).size == 1234
    t = sample_arrivals(p, rng(), duration_s=1000.0)
    assert t.max() < 1000.0 and abs(t.size / 3000 - 1) < 0.06
    # Both limits: the first one reached wins.
    assert sample_arrivals(p, rng(), num_requests=10, duration_s=1000.0).size == 10
    assert sample_arrivals(p, rng(), num_requests=10**6, duration_s=10.0).max() < 10.0


def test_same_seed_same_arrays_other_seed_differs():
    cfg = SyntheticWorkload(arrival=GammaArrivals(rate_per_s=2, cv=2), input=LognormalLengths(median=500, sigma=1),
                            output=UniformLengths(low=1, high=100), num_requests=500, correlation=0.3)
    a, b, c = build_trace(cfg, rng(9)), build_trace(cfg, rng(9)), build_trace(cfg, rng(10))
    for name in ("arrival_s", "input_tokens", "output_tokens"):
        np.testing.assert_array_equal(getattr(a, name), getattr(b, name))
    assert not np.array_equal(a.input_tokens, c.input_tokens)


def test_closed_loop_and_offline_all_at_zero_and_need_num_requests():
    for arrival in (ClosedLoopArrivals(clients=8, think_s=1.0), OfflineArrivals()):
        tr = build_trace(SyntheticWorkload(arrival=arrival, input=FixedLengths(tokens=10),
                                           output=FixedLengths(tokens=5), num_requests=7), rng())
        assert len(tr) == 7 and not tr.arrival_s.any()
        with pytest.raises(ValidationError, match="needs num_requests"):
            SyntheticWorkload(arrival=arrival, input=FixedLengths(tokens=10), output=FixedLengths(tokens=5),
                              duration_s=10.0)


def test_unknown_kind_lists_the_valid_ones():
    with pytest.raises(ValidationError) as e:
        TypeAdapter(WorkloadConfig).validate_python(
            {"kind": "synthetic", "arrival": {"kind": "poison", "rate_per_s": 1}, "input": {"kind": "fixed", "tokens": 1},
             "output": {"kind": "fixed", "tokens": 1}, "num_requests": 1})
    assert "poisson" in str(e.value) and "closed_loop" in str(e.value)
    with pytest.raises(ValidationError, match="extra"):
        PoissonArrivals(rate_per_s=1, rate=2)  # typo fails loudly
    with pytest.raises(ValidationError):
        PoissonArrivals(rate_per_s=0)


# ---------------------------------------------------------------- lengths


def test_uniform_and_fixed():
    x = sample_lengths(UniformLengths(low=3, high=5), rng(), 30_000)
    assert set(np.unique(x)) == {3, 4, 5} and abs(x.mean() - 4) < 0.02
    assert np.all(sample_lengths(FixedLengths(tokens=17), rng(), 10) == 17)


def test_normal_is_truncated_by_resampling_not_clamped():
    cfg = NormalLengths(mean=100, std=50, low=90, high=200)
    x = sample_lengths(cfg, rng(6), 200_000)
    assert x.min() == 90 and x.max() <= 200
    counts = np.bincount(x)
    # A clamp would pile all the mass below 90 onto 90 (about 42% of draws); truncation keeps 90 ~ 91.
    assert counts[90] / counts[91] == pytest.approx(1.0, abs=0.08)
    a, b = (89.5 - 100) / 50, (200.5 - 100) / 50
    assert x.mean() == pytest.approx(stats.truncnorm.mean(a, b, loc=100, scale=50), rel=0.005)


def test_lognormal_median_and_bounds():
    x = sample_lengths(LognormalLengths(median=300, sigma=0.8), rng(7), 100_000)
    assert np.median(x) == pytest.approx(300, rel=0.02) and x.min() >= 1
    y = sample_lengths(LognormalLengths(mu=math.log(300), sigma=0.8, low=100, high=1000), rng(7), 50_000)
    assert y.min() >= 100 and y.max() <= 1000


def test_inconsistent_length_configs_are_rejected():
    with pytest.raises(ValidationError, match="high=5 < low=10"):
        UniformLengths(low=10, high=5)
    with pytest.raises(ValidationError, match="probability"):
        NormalLengths(mean=10_000, std=1, high=100)
    with pytest.raises(ValidationError, match="exactly one of median and mu"):
        LognormalLengths(median=3, mu=1, sigma=1)
    with pytest.raises(ValidationError):
        FixedLengths(tokens=0)


def test_zipf_head_probability():
    x = sample_lengths(ZipfLengths(a=1.2, low=10, high=1000), rng(8), 100_000)
    w = np.arange(1, 992) ** -1.2
    assert np.mean(x == 10) == pytest.approx(w[0] / w.sum(), rel=0.02)
    assert x.min() == 10 and x.max() <= 1000


def test_empirical_and_quantiles():
    tr = Trace(np.zeros(3), [5, 7, 9], [1, 2, 3])
    e = EmpiricalLengths.from_trace(tr, "input")
    x = sample_lengths(e, rng(), 30_000)
    assert set(np.unique(x)) == {5, 7, 9} and x.mean() == pytest.approx(7, abs=0.03)
    q = QuantileLengths(probabilities=(0, 0.5, 1), tokens=(10, 20, 100))
    assert q.mean_tokens() == pytest.approx(0.5 * 15 + 0.5 * 60)
    assert sample_lengths(q, rng(), 100_000).mean() == pytest.approx(37.5, rel=0.01)
    with pytest.raises(ValidationError, match="start at 0"):
        QuantileLengths(probabilities=(0.1, 1), tokens=(1, 2))


def test_gaussian_copula_correlation():
    cfg = SyntheticWorkload(arrival=OfflineArrivals(), input=LognormalLengths(median=1000, sigma=1),
                            output=LognormalLengths(median=100, sigma=1), num_requests=50_000, correlation=0.6)
    tr = build_trace(cfg, rng(11))
    n = len(tr)
    z = [special.ndtri(stats.rankdata(a) / (n + 1)) for a in (tr.input_tokens, tr.output_tokens)]
    assert np.corrcoef(*z)[0, 1] == pytest.approx(0.6, abs=0.02)


# ---------------------------------------------------------------- Trace


def test_trace_ops():
    tr = Trace([0.0, 1.0, 2.0, 3.0, 4.0], [1, 2, 3, 4, 5], [5, 4, 3, 2, 1], ((1,), (2,), (3,), (4,), (5,)), "t")
    assert len(tr) == 5 and tr.duration_s == 4.0 and tr.rate_per_s == 1.0
    fast = tr.scale_rate(2.0)
    assert fast.duration_s == 2.0 and fast.rate_per_s == 2.0
    assert tr.scale_rate(0.5).duration_s == 8.0
    w = tr.window(1.0, 3.0)
    np.testing.assert_array_equal(w.arrival_s, [0.0, 1.0])
    np.testing.assert_array_equal(w.input_tokens, [2, 3])
    assert w.hash_ids == ((2,), (3,))
    h = tr.head(2)
    assert len(h) == 2 and h.mean_input_tokens == 1.5 and h.mean_output_tokens == 4.5
    with pytest.raises(ValueError):
        tr.scale_rate(0)
    with pytest.raises(ValueError, match="read-only"):
        tr.arrival_s[0] = 3.0


@pytest.mark.parametrize("arrival,inp,match", [
    ([0.0, float("nan")], [1, 1], "NaN"),
    ([1.0, 0.5], [1, 1], "non-decreasing"),
    ([-1.0, 0.5], [1, 1], ">= 0"),
    ([0.0, 1.0], [1, 0], r"input_tokens\[1\]=0"),
])
def test_trace_rejects_bad_arrays(arrival, inp, match):
    with pytest.raises(ValueError, match=match):
        Trace(arrival, inp, [1, 1])


def test_trace_workload_rate_scale_window_max(tmp_path):
    p = tmp_path / "t.csv"
    p.write_text("arrival_s,input_tokens,output_tokens\n" + "".join(f"{i},{i + 1},{i + 2}\n" for i in range(11)))
    base = build_trace(TraceWorkload(path=str(p)), rng())
    assert base.duration_s == 10.0
    assert build_trace(TraceWorkload(path=str(p), rate_scale=2.0), rng()).duration_s == 5.0
    assert build_trace(TraceWorkload(path=str(p), rate_scale=0.5), rng()).duration_s == 20.0
    sub = build_trace(TraceWorkload(path=str(p), start_s=2, end_s=6, rate_scale=2, max_requests=3), rng())
    np.testing.assert_allclose(sub.arrival_s, [0.0, 0.5, 1.0])
    np.testing.assert_array_equal(sub.input_tokens, [3, 4, 5])


# ---------------------------------------------------------------- named workloads


def test_named_workloads_listed():
    assert {"conversation", "code", "mooncake-conversation", "arxiv-summarization", "chat-short"} <= set(
        named_workloads())
    with pytest.raises(UnknownNameError, match="closest: conversation"):
        named_workload("conversatoin")


@pytest.mark.parametrize("name", ["conversation", "code", "mooncake-conversation", "arxiv-summarization",
                                  "chat-short"])
def test_named_workload_means_match_toml_stats(name):
    table = tomllib.loads(TOML.read_text())["workloads"][name]
    st = named_workload_stats(name)
    assert st == table["stats"]
    cfg = NamedWorkload(name=name, num_requests=60_000)
    tr = build_trace(cfg, rng(12))
    assert len(tr) == 60_000 and tr.source == name
    assert tr.mean_input_tokens == pytest.approx(st["input_mean_tokens"], rel=0.03)
    assert tr.mean_output_tokens == pytest.approx(st["output_mean_tokens"], rel=0.03)
    if "input_max_tokens" in st:
        assert tr.input_tokens.max() <= st["input_max_tokens"] and tr.output_tokens.min() >= st["output_min_tokens"]


def test_named_conversation_matches_the_azure_trace_statistics():
    # Hand-checked against the trace (docs/workloads.md): 19,366 requests over 3,501.7 s, gap cv 1.094.
    st = named_workload_stats("conversation")
    assert st["requests"] == 19366 and st["rate_per_s"] == pytest.approx(19365 / 3501.72, rel=1e-4)
    arrival = named_workload("conversation").arrival
    assert arrival.kind == "gamma" and arrival.cv == pytest.approx(1.094, abs=0.001)
    tr = build_trace(NamedWorkload(name="conversation", num_requests=100_000), rng(13))
    assert tr.rate_per_s == pytest.approx(st["rate_per_s"], rel=0.02)
    assert gaps_cv(tr.arrival_s) == pytest.approx(1.094, rel=0.03)


def test_named_overrides():
    cfg = resolve_workload(NamedWorkload(name="code", rate_per_s=10.0, duration_s=60.0))
    assert isinstance(cfg, SyntheticWorkload)
    assert cfg.arrival.rate_per_s == 10.0 and cfg.arrival.cv == named_workload("code").arrival.cv
    assert cfg.duration_s == 60.0 and cfg.num_requests is None
    assert named_workload("chat-short").num_requests == 200
