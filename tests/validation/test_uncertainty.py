"""Kernel error models from residuals: pooling of small groups, profile storage (schema 3 [errors], older versions
refused with the rebuild command), the shipped profiles' error models, and leave-one-GPU-out coverage."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest

from roofsim.hardware_specs.errors import InputError
from roofsim.model.cost import Calibration
from roofsim.validation.profiles import (
    error_model_for,
    read_calibration,
    read_error_models,
    resolve_error_model,
    write_calibration,
)
from roofsim.validation.transfer import RowResiduals
from roofsim.validation.uncertainty import error_models_from_residuals, fit_error_model, logo_coverage


def _residuals(n_per_gpu: int = 600, seed: int = 0) -> RowResiduals:
    """Four GPUs, two families; log(pred/measured) ~ N(0.1, 0.2) for gemm and N(-0.2, 0.4) for attn_decode."""
    rng = np.random.default_rng(seed)
    hw, fam, lr = [], [], []
    for g in ("a", "b", "c", "d"):
        for f, mu, sd in (("gemm", 0.1, 0.2), ("attn_decode", -0.2, 0.4)):
            hw += [g] * n_per_gpu
            fam += [f] * n_per_gpu
            lr.append(rng.normal(mu, sd, n_per_gpu))
    r = np.concatenate(lr)
    n = len(r)
    measured = np.exp(rng.normal(-9, 1, n))
    obj = lambda xs: np.array(xs, dtype=object)  # noqa: E731
    return RowResiduals(obj(hw), obj(fam), obj(["bf16"] * n), obj(["vllm"] * n), obj(["memory-large"] * n),
                        measured, measured * np.exp(r), measured * np.exp(0.5 * r))


def test_small_groups_pool_into_their_parent() -> None:
    fam = ["gemm"] * 500 + ["attn_decode"] * 50
    lr = np.r_[np.zeros(500), np.ones(50)]
    em = fit_error_model(fam, ["bf16"] * 550, ["memory-large"] * 550, lr, "test", min_rows=100)
    keys = {g.key for g in em.groups}
    assert "gemm/bf16/memory-large" in keys and not any(k.startswith("attn_decode") for k in keys)
    assert em.group("attn_decode", "bf16", "memory-large").key == "*/*/*"
    assert em.group("attn_decode", "bf16", "memory-large").n == 550
    with pytest.raises(ValueError, match="finite"):
        fit_error_model(["gemm"], ["bf16"], ["overhead"], np.array([np.nan]), "test")


def test_error_models_round_trip_through_a_profile(tmp_path: Path) -> None:
    errs = error_models_from_residuals(_residuals(), "b", min_rows=100)
    assert errs["own"].residuals == "held-out shapes (b)" and errs["transfer"].residuals == "leave-one-GPU-out"
    p = write_calibration(Calibration(name="x"), tmp_path / "x.toml", {"rows": 1}, errs)
    assert read_error_models(p) == errs
    em, label = resolve_error_model(p, "h100-sxm")
    assert em == errs["own"] and "held-out shapes" in label
    # the own (held-out-shape) residuals are half the leave-one-GPU-out ones here: narrower intervals
    lo_o, hi_o = errs["own"].interval("gemm", "bf16", "memory-large", 0.9)
    lo_t, hi_t = errs["transfer"].interval("gemm", "bf16", "memory-large", 0.9)
    assert np.log(hi_o / lo_o) == pytest.approx(0.5 * np.log(hi_t / lo_t), rel=0.15)


def test_old_profiles_drop_the_old_comm_bw_eff(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    old = tmp_path / "v2.toml"
    old.write_text("schema_version = 2\n[calibration]\ngemm_eff = 0.6\ncomm_bw_eff = 0.85\n")
    cal = read_calibration(old)
    assert cal.gemm_eff == 0.6 and cal.comm_bw_eff == Calibration().comm_bw_eff
    assert "comm_bw_eff" in caplog.text and "v2.toml" in caplog.text
    new = tmp_path / "v3.toml"
    new.write_text("schema_version = 3\n[calibration]\ncomm_bw_eff = 0.3\n")
    assert read_calibration(new).comm_bw_eff == 0.3


def test_old_profiles_have_no_error_model(tmp_path: Path) -> None:
    old = tmp_path / "old.toml"
    old.write_text("schema_version = 2\n[calibration]\ngemm_eff = 0.6\n")
    with pytest.raises(InputError, match=r"schema_version 2 predates error models.*scripts/build_profiles.py"):
        read_error_models(old)
    with pytest.raises(InputError, match="carry no error model"):
        resolve_error_model("default", "h100-sxm")


def test_logo_coverage_on_exchangeable_gpus() -> None:
    """GPUs drawn from one law are exchangeable: the coverage is the level to within sampling error."""
    rep = logo_coverage(_residuals(n_per_gpu=1500), min_rows=100)
    assert rep.overall.n == 12000
    assert rep.overall.covered[0.9] == pytest.approx(0.9, abs=0.015)
    assert rep.overall.covered[0.8] == pytest.approx(0.8, abs=0.02)
    assert "| all | 12000 |" in rep.table()


def test_shipped_profiles_carry_error_models() -> None:
    own, label = error_model_for("h100-sxm")
    assert own.residuals == "held-out shapes (h100-sxm)" and "held-out shapes" in label
    transfer, label = error_model_for("h200-sxm")  # Hopper without a profile: borrows h100-sxm's
    assert transfer.residuals == "leave-one-GPU-out" and "h100-sxm->h200" in label
    lo, hi = transfer.interval("gemm", "bf16", "compute-large", 0.9)
    assert lo < 1.0 < hi


def _gpu_shifted(seed: int, n: int = 60, cells: int = 8) -> RowResiduals:
    """Four GPUs x `cells` families; each GPU shifts each family as a whole by N(0, 0.3) (log space) on top of a
    row noise N(0, 0.1): rows of one GPU are not exchangeable with the others'."""
    rng = np.random.default_rng(seed)
    hw, fam, lr = [], [], []
    for c in range(cells):
        for g in "abcd":
            hw += [g] * n
            fam += [f"f{c}"] * n
            lr.append(rng.normal(0, 0.3) + rng.normal(0, 0.1, n))
    r = np.concatenate(lr)
    m = np.exp(rng.normal(-9, 1, len(r)))
    obj = lambda xs: np.array(xs, dtype=object)  # noqa: E731
    k = len(r)
    return RowResiduals(obj(hw), obj(fam), obj(["bf16"] * k), obj(["vllm"] * k), obj(["memory-large"] * k),
                        m, m * np.exp(r), m * np.exp(r))


def test_gpu_shift_intervals_hold_on_an_unseen_gpu() -> None:
    """A between-GPU shift (sd 0.3) three times the row noise (sd 0.1): row-level conformal quantiles of three GPUs
    cover a fourth GPU's rows far less often than stated; the GPU-level method (within-GPU deviations + the
    t-predicted shift of a new GPU, fitted on the three) reaches its level, averaged over 12 draws of the GPUs."""
    row, gpu = [], []
    for s in range(12):
        row.append(logo_coverage(_gpu_shifted(s), min_rows=100, method="split-conformal").overall.covered)
        gpu.append(logo_coverage(_gpu_shifted(s), min_rows=100, method="gpu-shift + split-conformal").overall.covered)
    assert np.mean([c[0.9] for c in row]) < 0.75 and np.mean([c[0.8] for c in row]) < 0.68
    assert np.mean([c[0.9] for c in gpu]) == pytest.approx(0.9, abs=0.03)
    assert np.mean([c[0.8] for c in gpu]) == pytest.approx(0.8, abs=0.04)


def test_gpu_shift_model_stores_its_method_and_shift() -> None:
    res = _gpu_shifted(0)
    em = fit_error_model(res.family, res.dtype, res.regime, np.log(res.logo_s / res.measured_s), "logo",
                         min_rows=100, gpu=res.hardware)
    assert em.method == "gpu-shift + split-conformal" and em.gpus == 4
    g = em.group("f0", "bf16", "memory-large")
    lr = np.log(res.logo_s / res.measured_s)
    f0 = res.family == "f0"
    meds = [np.median(lr[f0 & (res.hardware == h)]) for h in "abcd"]
    # the family's own cell: sample sd of its 4 GPU medians x sqrt(1 + 1/4) (prediction of one new GPU)
    assert g.gpu_shift_sd == pytest.approx(np.std(meds, ddof=1) * np.sqrt(1.25), abs=1e-5)
    # */*/* pools the 8 cells (24 degrees of freedom): near the true 0.3 x sqrt(1 + 1/4)
    pooled = next(x for x in em.groups if x.key == "*/*/*")
    assert pooled.gpu_shift_sd == pytest.approx(0.3 * np.sqrt(1.25), rel=0.3)
    lo, hi = em.interval("f0", "bf16", "memory-large", 0.9)
    assert np.log(hi / lo) / 2 > 1.645 * g.gpu_shift_sd


def test_e2e_term_is_stored_in_a_profile(tmp_path: Path) -> None:
    """Schema 4 added [e2e]; a version-3 profile reads unchanged (no term) and gains only [e2e] and the version when
    a term is stored into it; a version-2 one is refused (it has no error models either)."""
    from roofsim.model.uncertainty import E2ECell, E2ETerm
    from roofsim.validation.profiles import PROFILE_SCHEMA_VERSION, read_e2e_term, store_e2e_term

    assert PROFILE_SCHEMA_VERSION == 5
    errs = error_models_from_residuals(_residuals(), "b", min_rows=100)
    p = write_calibration(Calibration(name="x", gemm_eff=0.7), tmp_path / "x.toml", {"rows": 1}, errs)
    v3 = tmp_path / "v3.toml"
    v3.write_text(p.read_text().replace("schema_version = 5", "schema_version = 3"))
    assert read_e2e_term(v3) is None and read_calibration(v3).gemm_eff == 0.7
    term = E2ETerm(source="t", score_levels=(0.8, 0.9), score_quantiles=(1.2, 1.9),
                   cells=(E2ECell(key="ttft", n=9, centre=-0.1, scale=0.3), E2ECell(key="*", n=20, centre=0, scale=1)))
    store_e2e_term(v3, term)
    assert read_e2e_term(v3) == term and read_error_models(v3) == errs and read_calibration(v3).gemm_eff == 0.7
    assert "schema_version = 5\n" in v3.read_text()
    # a fitted term (rates as reciprocals, its score count, a learned difficulty) reads back equal
    from roofsim.model.uncertainty import E2EDifficulty
    fitted = term.model_copy(update={"rates_reciprocal": True, "n_scores": 40, "difficulty": E2EDifficulty(
        features=("log_isl", "is_ttft"), mean=(6.0, 0.5), sd=(1.2, 0.5), weights=(0.3, -0.1), ridge=0.3)})
    store_e2e_term(v3, fitted)
    assert read_e2e_term(v3) == fitted
    v2 = tmp_path / "v2.toml"
    v2.write_text("schema_version = 2\n[calibration]\ngemm_eff = 0.6\n")
    with pytest.raises(InputError, match="predates error models"):
        store_e2e_term(v2, term)


def test_ensemble_result_reports_the_e2e_term_around_the_point() -> None:
    from roofsim.model.uncertainty import E2ECell, E2ETerm
    from roofsim.simulator.ensemble import EnsembleResult

    term = E2ETerm(score_levels=(0.8, 0.9), score_quantiles=(1.0, 2.0),
                   cells=(E2ECell(key="ttft", n=9, centre=0.0, scale=0.1), E2ECell(key="*", n=20, centre=0, scale=1)))
    members = tuple({"ttft_s": {"p99": v}, "cost_usd": v} for v in (0.9, 1.0, 1.1))
    s = EnsembleResult(members, (0.8, 0.9), 0, {"ttft_s": {"p99": 2.0}, "cost_usd": 1.0}, term).summary(
        ("ttft_s.p99", "cost_usd"))
    assert s["ttft_s.p99"]["e2e 80%"] == pytest.approx([2.0 * np.exp(-0.1), 2.0 * np.exp(0.1)])
    assert s["ttft_s.p99"]["e2e 90%"] == pytest.approx([2.0 * np.exp(-0.2), 2.0 * np.exp(0.2)])
    assert "e2e 80%" not in s["cost_usd"]  # no cell of its own: the pooled cell is not applied to costs


def test_normalized_logo_coverage_on_an_unseen_gpu() -> None:
    """The default method scores each training GPU against the other GPUs' centres and scales, so its scores carry
    a new GPU's shift: on the shifted GPUs above it reaches the issue's bands (85-95 % at 90 %, 75-88 % at 80 %),
    averaged over 12 draws (it over-covers slightly: its scores come from fits on two GPUs, the test from three)."""
    cov = [logo_coverage(_gpu_shifted(s)).overall.covered for s in range(12)]
    assert 0.9 <= np.mean([c[0.9] for c in cov]) <= 0.95
    assert 0.8 <= np.mean([c[0.8] for c in cov]) <= 0.88
    em = error_models_from_residuals(_gpu_shifted(0), "a")["transfer"]
    assert em.method == "normalized split-conformal" and em.gpus == 4 and em.score_levels[-1] == 0.99


def test_ensemble_result_scales_the_e2e_term_by_the_runs_difficulty() -> None:
    """A term with a learned difficulty: the e2e range of a metric is widened by exp(w . z) of the run's features
    (the members' 80 % half-width, the run's inputs, the metric family); a run whose inputs are unknown leaves them
    out, so they count as the fit's means."""
    from roofsim.model.uncertainty import E2ECell, E2EDifficulty, E2ETerm
    from roofsim.simulator.ensemble import EnsembleResult

    d = E2EDifficulty(features=("log_kernel_half_width", "log_concurrency", "is_ttft"), mean=(-3.0, 2.0, 0.5),
                      sd=(1.0, 1.0, 0.5), weights=(0.2, -0.3, 0.4), ridge=0.1)
    term = E2ETerm(score_levels=(0.8, 0.9), score_quantiles=(1.0, 2.0), difficulty=d,
                   cells=(E2ECell(key="ttft", n=9, centre=0.0, scale=0.1), E2ECell(key="*", n=20, centre=0, scale=1)))
    members = tuple({"ttft_s": {"p99": v}} for v in (0.9, 1.0, 1.1))
    point = {"ttft_s": {"p99": 2.0}}
    ens = EnsembleResult(members, (0.8, 0.9), 0, point, term, {"isl": 1000, "concurrency": 32.0, "tp": 2})
    lo, hi = np.quantile([0.9, 1.0, 1.1], (0.1, 0.9))
    z = (math.log(math.log(hi / lo) / 2) + 3.0, math.log(32.0) - 2.0, (1.0 - 0.5) / 0.5)
    factor = math.exp(0.2 * z[0] - 0.3 * z[1] + 0.4 * z[2])
    s = ens.summary(("ttft_s.p99",))["ttft_s.p99"]
    assert s["e2e 80%"] == pytest.approx([2.0 * np.exp(-0.1 * factor), 2.0 * np.exp(0.1 * factor)], rel=1e-9)
    assert s["e2e 90%"] == pytest.approx([2.0 * np.exp(-0.2 * factor), 2.0 * np.exp(0.2 * factor)], rel=1e-9)
    # inputs unknown: log_concurrency counts as its mean; the kernel spread and the metric still apply
    s0 = EnsembleResult(members, (0.8, 0.9), 0, point, term).summary(("ttft_s.p99",))["ttft_s.p99"]
    f0 = math.exp(0.2 * z[0] + 0.4 * z[2])
    assert s0["e2e 80%"] == pytest.approx([2.0 * np.exp(-0.1 * f0), 2.0 * np.exp(0.1 * f0)], rel=1e-9)


def test_run_inputs_state_a_run_as_a_benchmark_row() -> None:
    """run_inputs: a closed loop gives its clients and no rate, a Poisson workload its rate and no concurrency;
    isl/osl are the trace's means, tp the first group's."""
    from roofsim.simulator.config import ReplicaGroup, SimConfig
    from roofsim.simulator.ensemble import run_inputs
    from roofsim.simulator.workload import (
        ClosedLoopArrivals,
        FixedLengths,
        PoissonArrivals,
        SyntheticWorkload,
        build_trace,
    )

    def inputs(arrival) -> dict[str, float]:  # noqa: ANN001
        wl = SyntheticWorkload(arrival=arrival, input=FixedLengths(tokens=700), output=FixedLengths(tokens=90),
                               num_requests=10)
        cfg = SimConfig(replicas=(ReplicaGroup(model="llama-3.1-8b", hardware="h100-sxm", tp=2),), workload=wl)
        return run_inputs(cfg, build_trace(wl, np.random.default_rng(0)))

    assert inputs(ClosedLoopArrivals(clients=16)) == {"isl": 700.0, "osl": 90.0, "concurrency": 16.0, "qps": 0.0,
                                                      "tp": 2.0}
    assert inputs(PoissonArrivals(rate_per_s=3.5)) == {"isl": 700.0, "osl": 90.0, "concurrency": 0.0, "qps": 3.5,
                                                       "tp": 2.0}
