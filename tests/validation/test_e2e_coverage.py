"""End-to-end interval coverage: the share of measured cells inside their intervals on a tiny hand-checkable table,
the split of rows into calibration and test halves, the conformal end-to-end terms (per level, nested; normalized
by a cell's spread and by a learned difficulty; rates scored as reciprocals), and a real ensemble row."""

from __future__ import annotations

import math

import numpy as np
import pytest

from roofsim.model.uncertainty import E2ETerm
from roofsim.validation.bench_table import BenchRow
from roofsim.validation.e2e import RowPrediction, interval_checks, predict_row, shipped_calibration
from roofsim.validation.uncertainty import (
    E2E_DIFFICULTY_MIN_UNITS,
    IntervalCheck,
    apply_e2e_term,
    capped_note,
    coverage_by,
    e2e_cell_keys,
    e2e_error_term,
    fit_e2e_term,
    interval_coverage,
    nested,
    split_units,
    widen,
)
from tests.validation.test_e2e import BASE as ROW


def _preds() -> list[RowPrediction]:
    """Four rows: TTFT 10 in (8, 12) / (7, 13); 14 only in the 90 % (7, 15); 5 in neither; a TPOT 1 in both; a
    blank TPOT cell and a failed row, neither scored."""
    def p(i: int, ttft: float | None, tpot: float | None, b: dict) -> RowPrediction:
        return RowPrediction(i, BenchRow(**{**ROW, "ttft_ms": ttft, "tpot_ms": tpot}),
                             {"ttft_ms": 10.0, "tpot_ms": 1.1}, intervals=b)
    return [p(0, 10.0, None, {"ttft_ms": {0.8: (8.0, 12.0), 0.9: (7.0, 13.0)},
                              "tpot_ms": {0.8: (0.9, 1.1), 0.9: (0.8, 1.2)}}),
            p(1, 14.0, None, {"ttft_ms": {0.8: (8.0, 12.0), 0.9: (7.0, 15.0)}}),
            p(2, 5.0, None, {"ttft_ms": {0.8: (8.0, 12.0), 0.9: (7.0, 13.0)}}),
            p(3, None, 1.0, {"tpot_ms": {0.8: (0.9, 1.1), 0.9: (0.85, 1.2)}}),
            RowPrediction(4, BenchRow(**{**ROW, "ttft_ms": 1.0}), problem="row 5: nope",
                          intervals={"ttft_ms": {0.8: (1.0, 2.0), 0.9: (1.0, 2.0)}})]


def test_coverage_of_a_tiny_table_by_hand() -> None:
    checks = interval_checks(_preds(), lambda r: r.framework)
    assert [(c.unit, c.metric, c.measured) for c in checks] == [
        ("0", "ttft_ms", 10.0), ("1", "ttft_ms", 14.0), ("2", "ttft_ms", 5.0), ("3", "tpot_ms", 1.0)]
    all_, = [r for r in coverage_by(checks, lambda c: c.metric) if r.label == "all"]
    assert all_.n == 4 and all_.covered == {0.8: 0.5, 0.9: 0.75}
    ttft = interval_coverage([c for c in checks if c.metric == "ttft_ms"], "ttft")
    assert ttft.covered == {0.8: pytest.approx(1 / 3), 0.9: pytest.approx(2 / 3)}
    assert ttft.half_width[0.8] == pytest.approx(math.log(1.5) / 2)  # every 80 % interval is (8, 12)
    # point 10 vs measured 10, 14, 5: median |log| = log(1.4)
    assert ttft.median_abs_err == pytest.approx(math.log(1.4))
    # width floor: numpy's linear 80 % quantile of |log err| = 0, log 1.4, log 2 sits at position 1.6
    assert ttft.abs_err_quantile[0.8] == pytest.approx(math.log(1.4) + 0.6 * (math.log(2) - math.log(1.4)))


def test_e2e_term_is_fitted_on_one_half_and_tested_on_the_other() -> None:
    checks = interval_checks(_preds())
    cal, test = split_units(checks)
    assert {c.unit for c in cal} == {"0", "2"} and {c.unit for c in test} == {"1", "3"}
    term = e2e_error_term(cal)
    # TTFT outside-distances at 80 %: row 0 log(10/12) < 0 (inside), row 2 log(8/5); with n = 2 the conformal
    # rank ceil(3 x 0.8) = 3 is clamped to the largest: log(1.6)
    assert term["ttft_ms"][0.8] == pytest.approx(math.log(1.6))
    assert set(term) == {"ttft_ms"}  # row 0's TPOT cell is blank: no TPOT in the calibration half
    wide = widen(test, term)
    assert [c.unit for c in wide] == ["1"]  # row 3's TPOT has no term: left out
    row1 = next(c for c in wide if c.unit == "1")
    assert row1.bounds[0.8] == pytest.approx((5.0, 19.2))
    assert interval_coverage([row1]).covered[0.8] == 1.0
    # a negative term narrows an interval at most to its midpoint
    narrow = widen([row1], {"ttft_ms": {0.8: -10.0, 0.9: 0.0}})[0]
    assert narrow.bounds[0.8][0] == pytest.approx(narrow.bounds[0.8][1])


def test_no_values_gives_an_empty_row() -> None:
    r = interval_coverage([IntervalCheck("0", "g", "m", 0.0, 1.0, {0.8: (1.0, 2.0)})])
    assert r.n == 0 and math.isnan(r.covered[0.8])


def test_a_row_ensemble_gives_intervals_around_its_prediction() -> None:
    p = predict_row(0, BenchRow(**{**ROW, "osl": 8}), shipped_calibration, ensemble=4)
    assert p.problem is None and "ensemble of 4: kernel error model h100-sxm-vllm" in p.notes[-1]
    for col in ("ttft_ms", "tpot_ms"):
        lo8, hi8 = p.intervals[col][0.8]
        lo9, hi9 = p.intervals[col][0.9]
        assert 0 < lo9 <= lo8 < hi8 <= hi9
        assert lo9 < p.predicted[col] * 2 and hi9 > p.predicted[col] / 2


def test_validate_benchmarks_ensemble_reports_coverage(tmp_path, capsys) -> None:  # noqa: ANN001
    import json

    from roofsim.app.cli import main
    from roofsim.validation.bench_table import write_bench_table

    t = write_bench_table([BenchRow(**{**ROW, "osl": 8, "ttft_ms": 50.0, "tpot_ms": 8.0})], tmp_path / "t.csv")
    assert main(["validate", "benchmarks", str(t), "--json", "--ensemble", "3"]) == 0
    cov = json.loads(capsys.readouterr().out)["coverage"]
    assert cov["members"] == 3
    assert [r["group"] for r in cov["by_metric"]] == ["all", "tpot_ms", "ttft_ms"]
    assert all(r["n"] == (2 if r["group"] == "all" else 1) for r in cov["by_metric"])
    assert set(cov["by_metric"][0]["covered"]) == {"80%", "90%"}
    assert cov["by_group"][0]["group"].startswith("meta-llama/Llama-3.1-8B-Instruct vllm h100-sxm")


def test_widened_levels_are_nested() -> None:
    """A 90 % term smaller than the 80 % one (few calibration rows) must not put the 90 % interval inside the 80 %
    one: each level is the hull of its own and the lower levels' intervals."""
    c = IntervalCheck("0", "g", "tpot_ms", 10.0, 10.0, {0.8: (9.0, 11.0), 0.9: (8.5, 11.5)})
    w = widen([c], {"tpot_ms": {0.8: 0.3, 0.9: 0.05}})[0]
    lo8, hi8 = w.bounds[0.8]
    assert (lo8, hi8) == pytest.approx((9.0 * math.exp(-0.3), 11.0 * math.exp(0.3)))
    assert w.bounds[0.9] == pytest.approx((lo8, hi8))  # 8.5 e^-0.05 > 9 e^-0.3: the 80 % bounds stand
    assert nested({0.9: (1.0, 3.0), 0.8: (0.5, 2.0)}) == {0.8: (0.5, 2.0), 0.9: (0.5, 3.0)}


def _hetero(seed: int, units: int, per_unit: int = 1) -> list[IntervalCheck]:
    """Two groups of very different difficulty: log(measured / point) ~ 0.2 + N(0, 0.05) for group 'easy' and
    -0.5 + N(0, 0.5) for 'hard' (a biased, hard group), `units` rows each."""
    rng = np.random.default_rng(seed)
    out = []
    for u in range(units):
        for g, mu, sd in (("easy", 0.2, 0.05), ("hard", -0.5, 0.5)):
            for _ in range(per_unit):
                out.append(IntervalCheck(str(u), g, "ttft_ms", float(np.exp(mu + rng.normal(0, sd))), 1.0,
                                         {0.8: (0.9, 1.1), 0.9: (0.85, 1.15)}))
    return out


def test_normalized_e2e_term_covers_each_group_at_its_level() -> None:
    """Centre and scale per group from the calibration values, one scaled-score quantile: on fresh rows each group
    is covered at about the level (a single width for both would over-cover 'easy' and under-cover 'hard'), and
    the half-width follows the group's spread."""
    term = fit_e2e_term(_hetero(0, 400), shrink=0.0)
    assert term.cell(e2e_cell_keys(_hetero(0, 1)[0])).key == "easy"
    assert term.score_quantile(0.8) < term.score_quantile(0.9)
    test = apply_e2e_term(_hetero(1, 2000), term)
    for g in ("easy", "hard"):
        row = interval_coverage([c for c in test if c.group == g])
        assert row.covered[0.8] == pytest.approx(0.8, abs=0.03) and row.covered[0.9] == pytest.approx(0.9, abs=0.03)
    easy, hard = (interval_coverage([c for c in test if c.group == g]).half_width[0.8] for g in ("easy", "hard"))
    assert hard / easy == pytest.approx(10.0, rel=0.2)
    # the interval is centred on the group's bias: the easy group's point 1.0 lies below its 80 % interval
    assert min(c.bounds[0.8][0] for c in test if c.group == "easy") > 1.0
    for c in test:
        assert c.bounds[0.9][0] <= c.bounds[0.8][0] < c.bounds[0.8][1] <= c.bounds[0.9][1]


def test_e2e_term_falls_back_to_coarser_cells() -> None:
    """Cells under E2E_MIN_CELL_ROWS values are not stored; a value uses its most specific stored cell; a cell's
    scale is pulled towards its parent's by shrink / (n + shrink)."""
    with pytest.warns(UserWarning, match=r"level\(s\) 95%, 98%, 99% capped: 10 calibration scores"):
        term = fit_e2e_term(_hetero(0, 5))  # 5 values per group: only the pooled cell
    assert {c.key for c in term.cells} == {"*"} and next(iter(term.cells)).n == 10
    assert term.cell(e2e_cell_keys(_hetero(0, 1)[0])).key == "*"
    # group a: ten values log 2 +- 0.1, group b: ten values 0 +- 0.3; pooled MAD 0.35 (half the values sit log2/2
    # from the pooled median); a's scale 0.1 is pulled halfway (10 / (10 + 10)) towards it, its centre is its own
    checks = [IntervalCheck(str(u), "a" if u < 10 else "b", "ttft_ms",
                            (2.0 * math.exp(0.1 * (-1) ** u)) if u < 10 else math.exp(0.3 * (-1) ** u), 1.0,
                            {0.8: (1.0, 1.0)}) for u in range(20)]
    with pytest.warns(UserWarning, match=r"level\(s\) 98%, 99% capped: 20 calibration scores"):
        term = fit_e2e_term(checks, shrink=10.0)
    pooled, a = term.cell(("*",)), term.cell(("a",))
    assert a.centre == pytest.approx(math.log(2), abs=1e-5)
    assert a.scale == pytest.approx(0.5 * 0.1 + 0.5 * pooled.scale, abs=1e-5)


def _by_isl(seed: int, units: int) -> list[IntervalCheck]:
    """One group whose error size follows a row input: log(measured / point) ~ N(0, 0.02 x isl / 128) for isl
    drawn from 128 .. 4096 (a 32x spread of difficulty inside the one cell)."""
    rng = np.random.default_rng(seed)
    out = []
    for u in range(units):
        isl = float(rng.choice([128, 512, 1024, 4096]))
        out.append(IntervalCheck(str(u), "g", "ttft_ms", float(np.exp(rng.normal(0, 0.02 * isl / 128))), 1.0,
                                 {0.8: (0.9, 1.1), 0.9: (0.85, 1.15)}, {"isl": isl}))
    return out


def test_learned_difficulty_narrows_and_covers_per_input() -> None:
    """fit_e2e_term(difficulty=True): each value's scale follows its features (here log isl), so on fresh rows
    every isl is covered at about the level, where one scale per cell over-covers the short prompts and
    under-covers the long ones; the median width drops."""
    cal, test = _by_isl(0, 600), _by_isl(1, 4000)
    plain, learned = fit_e2e_term(cal), fit_e2e_term(cal, difficulty=True)
    assert plain.difficulty is None and learned.difficulty is not None
    w = dict(zip(learned.difficulty.features, learned.difficulty.weights, strict=True))
    assert w["log_isl"] > 0.5 and abs(w["log_osl"]) < 1e-9  # osl absent: a constant feature gets no weight
    def worst(term: E2ETerm) -> float:  # the largest miss of the 80 % level over the four prompt lengths
        out = apply_e2e_term(test, term)
        return max(abs(interval_coverage([c for c in out if c.inputs["isl"] == isl]).covered[0.8] - 0.8)
                   for isl in (128, 512, 1024, 4096))
    assert worst(plain) > 0.15 and worst(learned) < 0.15
    assert interval_coverage(apply_e2e_term(test, learned)).covered[0.9] == pytest.approx(0.9, abs=0.03)
    assert (interval_coverage(apply_e2e_term(test, learned)).half_width[0.8]
            < 0.85 * interval_coverage(apply_e2e_term(test, plain)).half_width[0.8])  # 0.196 vs 0.250
    # too few rows/logs to fit and judge the weights: the cells alone
    with pytest.warns(UserWarning, match="capped"):
        assert fit_e2e_term(_by_isl(0, E2E_DIFFICULTY_MIN_UNITS - 1), difficulty=True).difficulty is None


def test_a_rate_is_scored_as_its_reciprocal() -> None:
    """A model 20 % too slow predicts E2E 20 % long and throughput 20 % low; with the rate's residual taken of its
    reciprocal both share one cell centre, and each interval sits on its own side of the point."""
    checks = []
    for u in range(40):
        e = 0.2 + 0.01 * (-1) ** u
        checks += [IntervalCheck(str(u), "g", "e2e_ms", 100.0 / math.exp(e), 100.0, {0.8: (90.0, 110.0)}),
                   IntervalCheck(str(u), "g", "output_tokens_per_s", 50.0 * math.exp(e), 50.0, {0.8: (45.0, 55.0)})]
    with pytest.warns(UserWarning, match=r"level\(s\) 99% capped: 80 calibration scores"):
        term = fit_e2e_term(checks)
    assert term.rates_reciprocal and term.cell(("g",)).centre == pytest.approx(-0.2, abs=0.011)
    out = apply_e2e_term(checks, term)
    assert interval_coverage(out).covered[0.8] == 1.0
    assert all(c.bounds[0.8][1] < c.point for c in out if c.metric == "e2e_ms")
    assert all(c.bounds[0.8][0] > c.point for c in out if c.metric == "output_tokens_per_s")


def test_capped_levels_are_named() -> None:
    """A level L needs n >= L / (1 - L) scores for its conformal rank: 8 scores cap 90 %, 9 do not."""
    assert capped_note(9, (0.8, 0.9)) == ""
    note = capped_note(8, (0.8, 0.9))
    assert note.startswith("level(s) 90% capped: 8 calibration scores") and "80%" not in note
    with pytest.warns(UserWarning, match="90%, 95%, 98%, 99% capped: 8 calibration scores"):
        term = fit_e2e_term(_hetero(0, 4))  # 8 values
    assert term.capped((0.8, 0.9)) == (0.9,)


def test_stored_term_carries_the_learned_difficulty(tmp_path) -> None:  # noqa: ANN001
    """scripts/validate_e2e.py's stored term (one cell per metric family) keeps the difficulty its fit chooses, and
    the data sets' units stay apart (row '0' of two sets is two rows for the folds); stored into a profile it reads
    back equal and scales a value's bounds by exp(sum w (x - mean) / sd) of a hand-built feature vector."""
    import importlib.util
    import shutil
    from pathlib import Path

    from roofsim.model.uncertainty import e2e_features
    from roofsim.validation import profiles

    root = Path(__file__).resolve().parents[2]
    spec = importlib.util.spec_from_file_location("validate_e2e", root / "scripts" / "validate_e2e.py")
    mod = importlib.util.module_from_spec(spec)
    assert spec.loader is not None
    spec.loader.exec_module(mod)
    term = mod.stored_term({"a": ("A", _by_isl(0, 300)), "b": ("B", _by_isl(1, 300))})
    assert term.n_scores == 600 and term.difficulty is not None
    assert {c.key for c in term.cells} == {"ttft", "*"}
    d = term.difficulty
    w = dict(zip(d.features, d.weights, strict=True))
    assert w["log_isl"] > 0.5
    shutil.copy(profiles.PROFILE_DIR / "h100-sxm.toml", tmp_path / "h100-sxm.toml")
    profiles.store_e2e_term(tmp_path / "h100-sxm.toml", term)
    back = profiles.read_e2e_term(tmp_path / "h100-sxm.toml")
    assert back == term
    x = e2e_features("ttft_s.p99", 0.05, {"isl": 4096, "osl": 128, "concurrency": 8, "tp": 1})
    factor = math.exp(sum(wi * (x[f] - m) / s for f, m, s, wi in zip(d.features, d.mean, d.sd, d.weights,
                                                                      strict=True)))
    assert factor > 1.5  # a long prompt: harder than the fit's average row
    c = back.cell(("ttft",))
    lo, hi = back.bounds(2.0, ("ttft",), (0.8,), "ttft_s.p99", x)[0.8]
    h = back.score_quantile(0.8) * c.scale * factor
    assert (lo, hi) == pytest.approx((2.0 * math.exp(c.centre - h), 2.0 * math.exp(c.centre + h)), rel=1e-9)
    lo1, hi1 = back.bounds(2.0, ("ttft",), (0.8,), "ttft_s.p99")[0.8]  # no features: the cell's scale alone
    assert math.log(hi / lo) == pytest.approx(factor * math.log(hi1 / lo1), rel=1e-9)
    # 12 rows in each of two sets are 24 rows/logs, past E2E_DIFFICULTY_MIN_UNITS (20): the difficulty is tried;
    # 24 scores are too few for the stored 98 / 99 % levels, which the fit names
    with pytest.warns(UserWarning, match="98%, 99% capped: 24 calibration scores"):
        small = mod.stored_term({"a": ("A", _by_isl(0, 12)), "b": ("B", _by_isl(1, 12))})
    assert small.difficulty is not None
