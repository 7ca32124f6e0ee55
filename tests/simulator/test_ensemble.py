"""Ensembles: a member without perturbation is the plain run bit for bit, the same seed gives the same ensemble
(in-process and on a process pool), members draw once per run, groups with one error model share the draw, a
member's shared-parts step equals its scaled cost model's."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
from scipy.stats import norm

from roofsim.model.batch import BatchShape, iteration_shape
from roofsim.model.cost import Calibration
from roofsim.model.uncertainty import LEVELS, ErrorGroup, ErrorModel
from roofsim.simulator.config import SimConfig
from roofsim.simulator.ensemble import (
    MemberDecoding,
    clear_shared_parts,
    member_configs,
    parse_levels,
    quantile_interval,
    run_ensemble,
)
from roofsim.simulator.planning.executors import ProcessExecutor
from roofsim.simulator.run import build_replicas, simulate
from roofsim.validation.profiles import error_model_for, resolve_config_calibrations

CAL = Calibration().model_dump()


def _cfg(**extra) -> SimConfig:
    rep = {"model": "llama-3.1-8b", "hardware": "h100-sxm", "calibration": CAL, "count": 2}
    return SimConfig.from_dict({"workload": {"kind": "named", "name": "conversation", "num_requests": 40},
                                "replicas": [rep], "router": {"kind": "power_of_two"}, "seed": 3, **extra}, "test")


def _em(sigma: float) -> ErrorModel:
    return ErrorModel(residuals="synthetic", groups=(
        ErrorGroup(key="*/*/*", n=500, log_ratio=tuple(sigma * float(norm.ppf(q)) for q in LEVELS)),
        ErrorGroup(key="gemm/*/*", n=500, log_ratio=tuple(0.5 * sigma * float(norm.ppf(q)) for q in LEVELS))))


def _strip(s: dict) -> dict:
    return {k: v for k, v in s.items() if k not in ("wall_s", "sim_s_per_wall_s", "iterations_per_wall_s")}


def test_member_without_perturbation_is_the_plain_run() -> None:
    """A random router draws from the run's generator after the trace: the member replays the same state."""
    cfg = _cfg()
    plain = _strip(simulate(cfg).summary)
    assert _strip(run_ensemble(cfg, [None], members=1).members[0]) == plain
    # an error model whose every quantile is 0 gives factors of exactly 1: the same numbers too
    zero = ErrorModel(residuals="synthetic", groups=(ErrorGroup(key="*/*/*", n=1, log_ratio=(0.0,) * len(LEVELS)),))
    assert _strip(run_ensemble(cfg, [zero], members=1).members[0]) == plain


def test_same_seed_same_ensemble_on_any_executor() -> None:
    cfg = _cfg()
    a = run_ensemble(cfg, [_em(0.2)], members=3)
    b = run_ensemble(cfg, [_em(0.2)], members=3)
    assert [_strip(s) for s in a.members] == [_strip(s) for s in b.members]
    ex = ProcessExecutor(2)
    try:
        c = run_ensemble(cfg, [_em(0.2)], members=3, executor=ex)
    finally:
        ex.close()
    assert [_strip(s) for s in c.members] == [_strip(s) for s in a.members]
    # the members differ from each other (perturbed), and another seed draws other members
    assert len({s["ttft_s"]["p99"] for s in a.members}) == 3
    d = run_ensemble(cfg.model_copy(update={"seed": 4}), [_em(0.2)], members=3)
    assert d.members[0]["tpot_s"]["p50"] != a.members[0]["tpot_s"]["p50"]


def test_member_configs_draw_once_per_error_model() -> None:
    """One draw per member and error model, held for the run: both groups on the same model get the same
    factors, a group on another model its own; members differ; None leaves the group unperturbed."""
    base = _cfg()
    g = base.replicas[0]
    cfg = base.model_copy(update={"replicas": (g, g.model_copy(update={"count": 1}), g)})
    em, other = _em(0.2), _em(0.3)
    members = member_configs(cfg, [em, em, other], 4)
    for m in members:
        s0, s1, s2 = (r.calibration.time_scale for r in m.replicas)
        assert s0 == s1 and s0 != s2
    assert len({m.replicas[0].calibration.time_scale for m in members}) == 4
    assert member_configs(cfg, [None, em, em], 1)[0].replicas[0].calibration.time_scale == ()
    with pytest.raises(ValueError, match="3 replica groups"):
        member_configs(cfg, [em], 1)


def test_ensemble_ranges_contain_their_median() -> None:
    ens = run_ensemble(_cfg(), [_em(0.2)], members=6)
    s = ens.summary()
    for m in ("ttft_s.p99", "tpot_s.p50", "e2e_s.p90", "output_tokens_per_s", "energy_j", "cost_usd"):
        lo80, hi80 = s[m]["80%"]
        lo90, hi90 = s[m]["90%"]
        assert lo90 <= lo80 <= s[m]["median"] <= hi80 <= hi90, m
    # slower kernels -> longer decode steps: TPOT of the members spreads around the factor's range
    tpot = ens.values("tpot_s.p50")
    assert tpot.max() / tpot.min() > 1.05


def test_quantile_interval_and_levels() -> None:
    assert quantile_interval([1.0, 2.0, 3.0, 4.0, 5.0], 0.5) == (2.0, 4.0)
    assert parse_levels("90, 80") == (0.8, 0.9)
    with pytest.raises(ValueError, match="between 0 and 100"):
        parse_levels("80,100")
    assert np.isnan(quantile_interval([float("nan")], 0.8)[0])


def _h100_members(n: int) -> tuple[SimConfig, list[SimConfig]]:
    """_cfg on the shipped H100 profile, and `n` members drawn from its error model."""
    plain = _cfg()
    cfg = resolve_config_calibrations(plain.model_copy(update={"replicas": (
        plain.replicas[0].model_copy(update={"calibration": None}),)}))[0]
    em, _ = error_model_for("h100-sxm")
    return cfg, member_configs(cfg, [em], n)


def test_member_step_sums_the_parts_in_order_and_members_share_them() -> None:
    """A member's step is exactly (==) the loop over CostModel.step_parts in its order times the member's
    multipliers, on a miss and on a hit; two members of one unscaled model share one memo and its key tuples."""
    clear_shared_parts()
    _, members = _h100_members(3)
    a, b = (MemberDecoding(build_replicas(m)[0].cost) for m in members[1:])
    assert a._memo is b._memo
    base = a._shared.base
    shapes = [BatchShape(decode_seqs=7, decode_tokens=7, decode_ctx_tokens=9000),
              BatchShape(decode_seqs=7, decode_tokens=7, decode_ctx_tokens=9007)]
    for shape in shapes:
        parts, overhead = base.step_parts(shape)
        want_s = want_j = 0.0
        for key, s, j in parts:
            want_s += a._factor(key) * s
            want_j += a._factor(key) * j
        want = (want_s + overhead, want_j + base.idle_energy_j(overhead))
        assert a.step(shape) == want  # computed (a miss)
        assert a.step(shape) == want  # from the memo
        assert b.step(shape) != want  # another draw
    assert len(a._memo) == 2 and len(a._shared.keys) == 1  # both decode steps: one key sequence


def test_member_step_is_the_dot_product_of_the_unscaled_parts() -> None:
    """MemberDecoding (shared unscaled parts x the member's multipliers) equals the member CostModel's scaled
    step to rounding, for prefill, decode and mixed steps, with regime-specific groups and pooled fallbacks."""
    cfg, members = _h100_members(2)
    cost = build_replicas(members[1])[0].cost
    assert cost.calibration.time_scale  # a perturbed member
    dot = MemberDecoding(cost)
    shapes = [BatchShape(prefill_tokens=3000, prefill_seqs=2, prefill_attn_pairs=3e6, prefill_ctx_tokens=500),
              BatchShape(decode_seqs=7, decode_tokens=7, decode_ctx_tokens=9000),
              BatchShape(prefill_tokens=700, prefill_seqs=1, prefill_attn_pairs=2.5e5, decode_seqs=120,
                         decode_tokens=120, decode_ctx_tokens=150_000)]
    for shape in shapes:
        s, j = cost.step_seconds_energy(shape)
        s2, j2 = dot.step(shape)
        assert s2 == pytest.approx(s, rel=1e-12) and j2 == pytest.approx(j, rel=1e-12)
        assert s != pytest.approx(build_replicas(cfg)[0].cost.step_seconds(shape), rel=1e-3)  # really scaled
    with pytest.raises(ValueError, match="unscaled"):
        cost.step_parts(shapes[0])


def test_an_ensemble_member_matches_its_scaled_run() -> None:
    cfg = _cfg()
    member = member_configs(cfg, [_em(0.2)], 1)[0]
    got = run_ensemble(cfg, [_em(0.2)], members=1).members[0]
    want = simulate(member).summary
    assert got["iterations"] == want["iterations"]
    for m in ("ttft_s", "tpot_s", "e2e_s"):
        assert got[m]["p99"] == pytest.approx(want[m]["p99"], rel=1e-9)
    assert got["energy_j"] == pytest.approx(want["energy_j"], rel=1e-9)


def test_iteration_shape_is_the_checked_constructors_shape() -> None:
    """The engine's unchecked constructor gives the BatchShape the dataclass gives: equal, same hash, every field
    the same value of the same type (members key their memo on the fields, so a 0 for a 0.0 would split it)."""
    for f in [(0, 0, 0.0, 0, 30, 30, 30_000, 30, 0.0, 30_000),
              (700, 2, 2.5e5, 96, 120, 120, 150_000, 122, 2.4e5, 4096 * 120)]:
        a, b = iteration_shape(*f), BatchShape(*f)
        assert a == b and hash(a) == hash(b)
        assert [(type(v), v) for v in dataclasses.astuple(a)] == [(type(v), v) for v in dataclasses.astuple(b)]
        assert (a.vision_patches, a.vision_attn_pairs) == (0, 0.0)
        with pytest.raises(dataclasses.FrozenInstanceError):
            a.decode_seqs = 1  # type: ignore[misc]
