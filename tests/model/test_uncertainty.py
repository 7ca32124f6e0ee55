"""Kernel error models: split-conformal coverage on a synthetic case with a known error distribution, interval and
draw arithmetic, and the oracle's perturbation hook (one factor per error group, the same on every step)."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy.stats import norm

from roofsim.hardware_specs.catalog import load_hardware
from roofsim.model.batch import BatchShape
from roofsim.model.cost import Calibration, CostModel
from roofsim.model.loader import load_model
from roofsim.model.uncertainty import (
    LEVELS,
    E2ECell,
    E2EDifficulty,
    E2ETerm,
    ErrorGroup,
    ErrorModel,
    abs_score_quantiles,
    conformal_quantiles,
    kernel_family,
    metric_family,
    regime_of,
    scaled_quantiles,
)


def _model(groups: dict[str, tuple[float, ...]]) -> ErrorModel:
    return ErrorModel(residuals="synthetic", groups=tuple(ErrorGroup(key=k, n=1000, log_ratio=v)
                                                          for k, v in groups.items()))


def _normal(sigma: float, mu: float = 0.0) -> tuple[float, ...]:
    return tuple(mu + sigma * float(norm.ppf(q)) for q in LEVELS)


def test_conformal_ranks_by_hand() -> None:
    # n = 19 scores 1..19: level 0.95 -> ceil(20 * 0.95) = 19th; 0.05 -> floor(20 * 0.05) = 1st; 0.5 -> 10th
    q = conformal_quantiles(range(1, 20), (0.05, 0.5, 0.95))
    assert q == (1.0, 10.0, 19.0)
    # n = 9: 0.95 needs rank ceil(9.5) = 10 > n: clamped to the largest score (documented loss of the guarantee)
    assert conformal_quantiles(range(1, 10), (0.95,)) == (9.0,)
    with pytest.raises(ValueError, match="at least one score"):
        conformal_quantiles([])


@pytest.mark.parametrize("level", [0.8, 0.9])
def test_split_conformal_coverage_on_a_known_distribution(level: float) -> None:
    """Residuals from a skewed, heavy-tailed law (Student t, 3 dof, shifted by 0.2): with n = 99 calibration rows
    per trial the equal-tailed ranks make the marginal coverage exactly `level`; 400 trials x 50 new rows pin it to
    +-0.01 (about 4 standard deviations of the trial-averaged coverage)."""
    from roofsim.validation.uncertainty import fit_error_model

    rng = np.random.default_rng(7)
    inside = []
    for _ in range(400):
        cal = 0.2 + 0.3 * rng.standard_t(3, 99)
        em = fit_error_model(["gemm"] * 99, ["bf16"] * 99, ["compute-large"] * 99, cal, "synthetic", min_rows=50)
        lo, hi = em.interval("gemm", "bf16", "compute-large", level)
        new = 0.2 + 0.3 * rng.standard_t(3, 50)
        # residual r = log(pred / measured): measured = pred x exp(-r) with pred = 1
        measured = np.exp(-new)
        inside.append(np.mean((measured >= lo) & (measured <= hi)))
    assert np.mean(inside) == pytest.approx(level, abs=0.01)


def test_interval_and_pooling_fallback() -> None:
    em = _model({"*/*/*": _normal(0.5), "gemm/bf16/*": _normal(0.1, mu=0.05)})
    lo, hi = em.interval("gemm", "bf16", "memory-large", 0.9)
    assert lo == pytest.approx(math.exp(-0.05 - 0.1 * 1.6448536), rel=1e-6)
    assert hi == pytest.approx(math.exp(-0.05 + 0.1 * 1.6448536), rel=1e-6)
    assert em.group("gemm", "fp8", "overhead").key == "*/*/*"  # no gemm/fp8 group: pooled
    with pytest.raises(ValueError, match="level=0.75"):
        em.interval("gemm", "bf16", "overhead", 0.75)
    with pytest.raises(ValueError, match=r"\*/\*/\*"):
        _model({"gemm/*/*": _normal(0.1)})
    with pytest.raises(ValueError, match="normalized split-conformal' needs score_levels"):
        ErrorModel(method="normalized split-conformal", residuals="synthetic",
                   groups=(ErrorGroup(key="*/*/*", n=1000, log_ratio=_normal(0.5)),))


def test_member_draw_shared_by_the_regimes_of_a_family() -> None:
    """One probability per family/dtype: every regime of gemm/bf16 sits at the same quantile of its own law."""
    em = _model({"*/*/*": _normal(0.5), "gemm/bf16/*": _normal(0.1), "gemm/bf16/overhead": _normal(0.3)})
    assert em.draw_keys() == ("*/*", "gemm/bf16")
    scales = dict(em.member_scales({"*/*": 0.5, "gemm/bf16": 0.9}))
    z = float(norm.ppf(0.9))
    assert scales["gemm/bf16/*"] == pytest.approx(math.exp(-0.1 * z), rel=1e-3)
    assert scales["gemm/bf16/overhead"] == pytest.approx(math.exp(-0.3 * z), rel=1e-3)
    assert scales["*/*/*"] == pytest.approx(1.0)


def _cost(cal: Calibration) -> CostModel:
    return CostModel(load_model("llama-3.1-8b"), load_hardware("h100-sxm"), calibration=cal)


SHAPES = [BatchShape(decode_seqs=8, decode_tokens=8, decode_ctx_tokens=8 * 900),
          BatchShape(decode_seqs=64, decode_tokens=64, decode_ctx_tokens=64 * 3000),
          BatchShape(prefill_tokens=2048, prefill_seqs=2, prefill_attn_pairs=2 * 1024 * 1025 / 2)]


def test_one_factor_per_group_on_every_step() -> None:
    """A member's factor multiplies every kernel of its group on every step (not a per-step draw): kernel by kernel,
    perturbed time = factor x plain time, and the closed form agrees with the per-kernel path."""
    plain = _cost(Calibration())
    scales = (("*/*/*", 1.3), ("gemm/*/*", 0.8))
    pert = _cost(Calibration(time_scale=scales))
    for shape in SHAPES:
        a, b = plain.step(shape), pert.step(shape)
        for ka, kb in zip(a.kernels, b.kernels, strict=True):
            f = 0.8 if kernel_family(ka.kernel) == "gemm" else 1.3
            assert kb.seconds == pytest.approx(f * ka.seconds, rel=1e-12)
        assert b.overhead_s == a.overhead_s  # the framework's CPU time is not a kernel: not perturbed
        assert pert.step_seconds_energy(shape)[0] == pytest.approx(b.seconds, rel=1e-12)
        assert pert.step_seconds_energy(shape)[1] == pytest.approx(b.energy_j, rel=1e-12)


def test_unit_factors_are_the_plain_model_bit_for_bit() -> None:
    plain = _cost(Calibration())
    ones = _cost(Calibration(time_scale=(("*/*/*", 1.0),)))
    for shape in SHAPES:
        assert ones.step_seconds_energy(shape) == plain.step_seconds_energy(shape)


def test_time_scale_is_runtime_only() -> None:
    cal = Calibration(time_scale=(("*/*/*", 1.1),))
    assert "time_scale" not in Calibration().model_dump()
    assert cal.model_dump()["time_scale"] == (("*/*/*", 1.1),)
    assert hash(cal) != hash(Calibration())


def test_regimes() -> None:
    assert regime_of(1e-6, 5e-7, 0.0, 3e-6) == "overhead"
    assert regime_of(1e-4, 5e-5, 0.0, 3e-6) == "compute-large"
    assert regime_of(1e-6, 5e-6, 0.0, 3e-6) == "memory-small"
    assert regime_of(0.0, 5e-6, 0.0, 0.0, comm=True) == "communication-small"


def test_abs_score_ranks_and_scaled_quantiles_by_hand() -> None:
    # n = 19 scores 1..19 (signs dropped): L = 0.9 -> ceil(20 x 0.9) = 18th; 0.5 -> 10th; 0.99 -> rank 20 > n: 19
    assert abs_score_quantiles([-x for x in range(1, 20)], (0.5, 0.9, 0.99)) == (10.0, 18.0, 19.0)
    # centre 0.1, scale 0.2, Q(0.8) = 1.5, Q(0.9) = 2: the 80 % interval is 0.1 +- 0.3, the median the centre
    q = scaled_quantiles(0.1, 0.2, (0.8, 0.9), (1.5, 2.0), (0.05, 0.1, 0.5, 0.9, 0.95))
    assert q == pytest.approx((0.1 - 0.4, 0.1 - 0.3, 0.1, 0.1 + 0.3, 0.1 + 0.4))


@pytest.mark.parametrize("level", [0.8, 0.9])
def test_normalized_conformal_coverage_per_group(level: float) -> None:
    """Two groups whose errors differ tenfold in spread (t, 3 dof): the normalized model's interval of each group
    covers about `level` of that group's new rows (one pooled quantile would over-cover the easy group and
    under-cover the hard one), and its width is in proportion to the group's spread."""
    from roofsim.validation.uncertainty import fit_normalized_error_model

    rng = np.random.default_rng(3)
    fam = ["gemm"] * 400 + ["attn_decode"] * 400
    inside: dict[str, list[float]] = {"gemm": [], "attn_decode": []}
    widths = []
    for _ in range(100):
        lr = np.concatenate([0.1 + 0.03 * rng.standard_t(3, 400), -0.2 + 0.3 * rng.standard_t(3, 400)])
        em = fit_normalized_error_model(fam, ["bf16"] * 800, ["compute-large"] * 800, lr, "synthetic")
        assert em.method == "normalized split-conformal"
        for f, mu, sd in (("gemm", 0.1, 0.03), ("attn_decode", -0.2, 0.3)):
            lo, hi = em.interval(f, "bf16", "compute-large", level)
            measured = np.exp(-(mu + sd * rng.standard_t(3, 50)))
            inside[f].append(float(np.mean((measured >= lo) & (measured <= hi))))
        w = [np.log(np.divide(*em.interval(f, "bf16", "compute-large", level)[::-1])) for f in ("gemm", "attn_decode")]
        widths.append(w[1] / w[0])
    for f in inside:
        assert np.mean(inside[f]) == pytest.approx(level, abs=0.025), f
    assert np.median(widths) == pytest.approx(10.0, rel=0.15)


def test_e2e_term_bounds_and_metric_families() -> None:
    term = E2ETerm(score_levels=(0.8, 0.9), score_quantiles=(1.0, 2.0),
                   cells=(E2ECell(key="ttft", n=10, centre=0.1, scale=0.2), E2ECell(key="*", n=20, centre=0.0,
                                                                                     scale=0.5)))
    b = term.bounds(2.0, ("ttft_ms|x", "ttft"), (0.8, 0.9))
    assert b[0.8] == pytest.approx((2.0 * math.exp(-0.1), 2.0 * math.exp(0.3)))
    assert b[0.9] == pytest.approx((2.0 * math.exp(-0.3), 2.0 * math.exp(0.5)))
    assert term.cell(("nope",)).key == "*" and term.score_quantile(0.85) == pytest.approx(1.5)
    with pytest.raises(ValueError, match="level=0.95"):
        term.score_quantile(0.95)
    with pytest.raises(ValueError, match="non-decreasing"):
        E2ETerm(score_levels=(0.8, 0.9), score_quantiles=(2.0, 1.0), cells=term.cells)
    assert [metric_family(m) for m in ("ttft_ms", "ttft_s.p99", "tpot_s", "itl_s.mean", "e2e_ms",
                                       "output_tokens_per_s", "cost_usd")] == [
        "ttft", "ttft", "tpot", "itl", "e2e", "throughput", "cost_usd"]


def test_e2e_term_reciprocal_rates_and_difficulty() -> None:
    """A term that scores rates as reciprocals puts a rate's interval on the other side of its point (centre
    negated); a learned difficulty multiplies the cell's scale by exp(w (x - mean) / sd), a missing feature at
    its mean; an old term (rates as measured) keeps the centre's sign for every metric."""
    cells = (E2ECell(key="*", n=20, centre=0.1, scale=0.2),)
    d = E2EDifficulty(features=("log_isl",), mean=(5.0,), sd=(2.0,), weights=(0.5,), ridge=0.1)
    term = E2ETerm(score_levels=(0.8,), score_quantiles=(1.0,), cells=cells, rates_reciprocal=True, difficulty=d)
    assert term.bounds(1.0, (), (0.8,), "e2e_ms")[0.8] == pytest.approx((math.exp(-0.1), math.exp(0.3)))
    assert term.bounds(1.0, (), (0.8,), "output_tokens_per_s")[0.8] == pytest.approx((math.exp(-0.3),
                                                                                      math.exp(0.1)))
    h = 0.2 * math.exp(0.5 * (9.0 - 5.0) / 2.0)  # twice as far from the mean in sd: scale x e
    assert term.bounds(1.0, (), (0.8,), "e2e_ms", {"log_isl": 9.0})[0.8] == pytest.approx(
        (math.exp(0.1 - h), math.exp(0.1 + h)))
    assert d.factor({}) == 1.0
    old = E2ETerm(score_levels=(0.8,), score_quantiles=(1.0,), cells=cells)
    assert old.bounds(1.0, (), (0.8,), "output_tokens_per_s")[0.8] == pytest.approx((math.exp(-0.1), math.exp(0.3)))
    with pytest.raises(ValueError, match="every sd > 0"):
        E2EDifficulty(features=("a",), mean=(0.0,), sd=(0.0,), weights=(1.0,), ridge=0.0)
