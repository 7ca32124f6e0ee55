"""Capacity planner: the bisection finds the SLO edge, replicas cover the rate, the winner is the cheapest
(fewest GPUs), the cache replaces simulations, a Dask cluster gives the local result, bad input fails cleanly."""

from __future__ import annotations

import json
import math
import time

import pytest

from roofsim.hardware_specs.errors import UnknownNameError
from roofsim.model.batch import BatchShape
from roofsim.simulator.config import (
    OrcaScheduler,
    ReplicaGroup,
    SarathiScheduler,
    SJFScheduler,
    StaticScheduler,
    VLLMScheduler,
)
from roofsim.simulator.planning import (
    DaskExecutor,
    PlannerError,
    PlanResult,
    PlanSpec,
    PointCache,
    ProcessExecutor,
    SerialExecutor,
    analytical_bounds,
    candidates,
    evaluate_point,
    grid_index,
    grid_rate,
    index_for_replicas,
    plan,
    point_config,
    point_key,
    replicas_at,
    resolve,
)
from roofsim.simulator.planning.cache import fingerprint_files
from roofsim.simulator.planning.points import point_of
from roofsim.simulator.schedulers import make_scheduler
from roofsim.simulator.workload import NamedWorkload

N = 150  # requests per point: small enough for a fast suite, large enough for a P99 with a tail


def _spec(**kw: object) -> PlanSpec:
    base: dict[str, object] = dict(model="llama-3.1-8b", workload=NamedWorkload(name="conversation"), rate_per_s=12.0,
                                   slo_ttft_s=1.0, slo_tpot_s=0.05, hardware=("h100-sxm", "l40s"), tp=(1, 2),
                                   num_requests=N, tolerance=0.1, verify_winner=False)
    base.update(kw)
    return PlanSpec(**base)  # type: ignore[arg-type]


def _comparable(r: PlanResult) -> list[dict]:
    return [o.as_dict() for o in r.outcomes]


@pytest.fixture(scope="module")
def exhaustive(tmp_path_factory: pytest.TempPathFactory) -> tuple[PlanResult, PointCache]:
    cache = PointCache(tmp_path_factory.mktemp("plan-cache"))
    return plan(_spec(exhaustive=True), SerialExecutor(), cache), cache


def test_grid_is_geometric_and_index_inverts_it() -> None:
    assert grid_rate(0, 0.05) == 1.0
    assert grid_rate(2, 0.05) == pytest.approx(1.1025)
    for r in (0.013, 0.5, 1.0, 7.3, 123.0):
        k = grid_index(r, 0.05)
        assert grid_rate(k, 0.05) <= r < grid_rate(k + 1, 0.05)


def test_capacity_is_the_slo_edge_within_tolerance(exhaustive: tuple[PlanResult, PointCache]) -> None:
    result, _ = exhaustive
    spec = result.spec
    o = next(o for o in result.outcomes if o.candidate.label.startswith("h100-sxm tp1"))
    assert o.status == "feasible"
    native = 1.0
    at = point_of(spec, o.capacity_per_s, evaluate_point(point_config(spec, o.candidate, o.capacity_per_s, native, N)))
    above_rate = o.capacity_per_s * (1 + spec.tolerance)
    above = point_of(spec, above_rate, evaluate_point(point_config(spec, o.candidate, above_rate, native, N)))
    assert at.feasible, at.why
    assert not above.feasible
    assert above.why  # names the SLO that failed


def test_replicas_cover_the_target_rate(exhaustive: tuple[PlanResult, PointCache]) -> None:
    result, _ = exhaustive
    feas = result.feasible
    assert len(feas) >= 2
    for o in feas:
        assert o.replicas * o.capacity_per_s >= result.spec.rate_per_s
        assert (o.replicas - 1) * o.capacity_per_s < result.spec.rate_per_s
        assert o.gpus == o.replicas * o.candidate.gpus
        assert o.load_per_replica_s == pytest.approx(result.spec.rate_per_s / o.replicas)


def test_winner_is_the_cheapest_feasible_and_pruning_keeps_it(exhaustive: tuple[PlanResult, PointCache]) -> None:
    result, cache = exhaustive
    w = result.winner
    assert w is not None and w.rank == 1
    assert w.usd_per_hour == min(o.usd_per_hour for o in result.feasible)
    for o in result.feasible[1:]:
        assert o.objective_gap_pct >= 0 and "expensive" in o.reason or "same cost" in o.reason
    pruned = plan(_spec(), SerialExecutor(), cache)  # branch and bound over the same points
    assert pruned.winner is not None
    assert pruned.winner.candidate == w.candidate and pruned.winner.usd_per_hour == w.usd_per_hour
    assert pruned.winner.capacity_per_s == w.capacity_per_s


def test_objective_gpus_picks_fewest_gpus(exhaustive: tuple[PlanResult, PointCache]) -> None:
    result, cache = exhaustive
    r = plan(_spec(exhaustive=True, objective="gpus"), SerialExecutor(), cache)
    assert r.stats.simulations == 0  # every point was in the cache
    assert r.winner is not None
    fewest = min(o.gpus for o in result.feasible)
    assert r.winner.gpus == fewest
    assert r.winner.usd_per_hour == min(o.usd_per_hour for o in result.feasible if o.gpus == fewest)


def test_second_identical_plan_runs_zero_simulations(tmp_path) -> None:
    spec = _spec(hardware=("h100-sxm",), tp=(1,), verify_winner=True)
    cache = PointCache(tmp_path)
    first = plan(spec, SerialExecutor(), cache)
    assert first.stats.simulations > 0 and first.stats.cache_hits == 0
    second = plan(spec, SerialExecutor(), cache)
    assert second.stats.simulations == 0
    assert second.stats.cache_hits == first.stats.simulations
    assert _comparable(second) == _comparable(first)
    # NaN-aware equality (a prefix-cache rate with no hashed prompts is undefined: NaN)
    assert json.dumps(second.winner_metrics, sort_keys=True) == json.dumps(first.winner_metrics, sort_keys=True)
    files = list(tmp_path.rglob("*.json"))
    assert len(files) == first.stats.simulations
    assert not list(tmp_path.rglob(".tmp-*"))  # atomic writes leave no temporaries


def test_cache_key_changes_with_the_config() -> None:
    spec, _ = resolve(_spec())
    c = candidates(spec)[0]
    a = point_key(point_config(spec, c, 2.0, 1.0, N))
    assert a == point_key(point_config(spec, c, 2.0, 1.0, N))
    assert a != point_key(point_config(spec, c, 2.1, 1.0, N))
    assert a != point_key(point_config(spec.model_copy(update={"seed": 1}), c, 2.0, 1.0, N))


def test_dask_local_cluster_gives_the_local_result() -> None:
    distributed = pytest.importorskip("distributed")
    spec = _spec(hardware=("h100-sxm",), tp=(1, 2), exhaustive=True)
    local = plan(spec, SerialExecutor())
    with distributed.LocalCluster(n_workers=2, processes=False, threads_per_worker=1, dashboard_address=None) as lc:
        ex = DaskExecutor(lc)
        try:
            assert ex.workers == 2
            remote = plan(spec, ex)
        finally:
            ex.close()
    assert remote.stats.simulations == local.stats.simulations
    assert _comparable(remote) == _comparable(local)


def test_unreachable_dask_scheduler_fails_fast() -> None:
    pytest.importorskip("distributed")
    t = time.perf_counter()
    with pytest.raises(PlannerError, match="cannot connect to the Dask scheduler at 'tcp://127.0.0.1:9'"):
        DaskExecutor("tcp://127.0.0.1:9", timeout_s=2.0)
    assert time.perf_counter() - t < 15


def test_unknown_hardware_names_close_matches() -> None:
    with pytest.raises(UnknownNameError, match="h100x") as e:
        candidates(_spec(hardware=("h100-sxm", "h100x")))
    assert "h100" in str(e.value)


def test_impossible_slo_says_so_and_shows_the_closest() -> None:
    r = plan(_spec(slo_ttft_s=0.02, hardware=("h100-sxm",), tp=(1, 2, 3)), SerialExecutor())
    assert r.winner is None
    statuses = {o.candidate.tp: o for o in r.outcomes}
    assert statuses[3].status == "invalid" and "tp=3 must divide" in statuses[3].reason
    closest = r.closest()
    assert closest and all(o.status == "slo_unmet" for o in closest)
    assert all(o.slo_ratio > 1 for o in closest)
    assert "TTFT" in closest[0].reason


def test_does_not_fit_and_unsupported_are_skipped_without_simulating() -> None:
    r = plan(_spec(model="llama-3.1-70b", hardware=("a100-sxm-80gb",), tp=(1,), weight_dtypes=("bf16", "fp8")),
             SerialExecutor())
    by = {o.candidate.weight_dtype: o for o in r.outcomes}
    assert by["bf16"].status == "does_not_fit" and "does not fit" in by["bf16"].reason
    assert by["fp8"].status == "unsupported" and "fp8" in by["fp8"].reason
    assert r.stats.simulations == 0


def test_closed_loop_workload_is_rejected() -> None:
    from roofsim.simulator.workload import SyntheticWorkload

    wl = SyntheticWorkload(arrival={"kind": "closed_loop", "clients": 4}, input={"kind": "fixed", "tokens": 10},
                           output={"kind": "fixed", "tokens": 10}, num_requests=20)
    with pytest.raises(ValueError, match="no request rate"):
        _spec(workload=wl)


def test_bad_speculative_json_is_rejected() -> None:
    with pytest.raises(ValueError, match="not a JSON object"):
        _spec(speculative=("{k: 4",))
    assert math.isfinite(grid_rate(-40, 0.05))


def test_index_for_replicas_is_where_the_count_changes() -> None:
    spec = _spec()
    for n in (1, 2, 3, 7, 40):
        k = index_for_replicas(spec, n, 0.05)
        assert replicas_at(spec, k, 0.05) <= n < replicas_at(spec, k - 1, 0.05)
        assert grid_rate(k, 0.05) >= spec.rate_per_s / n * (1 - 1e-9) > grid_rate(k - 1, 0.05)


def _wider_spec(**kw: object) -> PlanSpec:
    return _spec(hardware=("h100-sxm", "l40s", "a100-sxm-80gb"), tp=(1, 2, 4), weight_dtypes=("bf16", "fp8"),
                 schedulers=("vllm", "sarathi"), **kw)


@pytest.fixture(scope="module")
def wide(tmp_path_factory: pytest.TempPathFactory) -> tuple[PlanResult, PlanResult]:
    """The same 36-candidate plan searched exhaustively and by branch and bound (separate caches)."""
    exh = plan(_wider_spec(exhaustive=True), SerialExecutor(), PointCache(tmp_path_factory.mktemp("exh")))
    bb = plan(_wider_spec(), SerialExecutor(), PointCache(tmp_path_factory.mktemp("bb")))
    return exh, bb


def test_branch_and_bound_gives_the_exhaustive_answer(wide: tuple[PlanResult, PlanResult]) -> None:
    exh, bb = wide
    assert exh.winner is not None and bb.winner is not None
    assert bb.winner.candidate == exh.winner.candidate
    assert (bb.winner.replicas, bb.winner.gpus, bb.winner.usd_per_hour) == (
        exh.winner.replicas, exh.winner.gpus, exh.winner.usd_per_hour)
    # the winner's capacity is refined to the tolerance: the same grid rate, or one step off where the
    # simulated feasibility is not monotone in the rate
    tol = bb.spec.tolerance
    assert abs(math.log(bb.winner.capacity_per_s / exh.winner.capacity_per_s)) <= math.log1p(tol) + 1e-9
    assert bb.winner.capacity_below_per_s == pytest.approx(bb.winner.capacity_per_s * (1 + tol))
    # every other candidate B&B kept is feasible there too, with the exhaustive replica count and a
    # capacity bracket that holds the exhaustive capacity
    by = {o.candidate: o for o in exh.outcomes}
    for o in bb.feasible:
        e = by[o.candidate]
        assert e.status == "feasible" and o.replicas == e.replicas and o.usd_per_hour == e.usd_per_hour
        assert o.capacity_per_s <= e.capacity_per_s * (1 + tol) and e.capacity_per_s < o.capacity_below_per_s
    # pruned candidates really were no better than the winner
    for o in bb.outcomes:
        if o.status == "pruned" and by[o.candidate].status == "feasible":
            assert by[o.candidate].usd_per_hour >= exh.winner.usd_per_hour
    assert bb.stats.simulations < exh.stats.simulations / 3


def test_count_phase_stops_once_the_replica_count_is_known(wide: tuple[PlanResult, PlanResult]) -> None:
    _, bb = wide
    spec, tol = bb.spec, bb.spec.tolerance
    for o in bb.feasible:
        k_lo = grid_index(o.capacity_per_s * (1 + 1e-9), tol)
        if math.isfinite(o.capacity_below_per_s):
            k_hi = grid_index(o.capacity_below_per_s * (1 + 1e-9), tol)
            assert replicas_at(spec, k_lo, tol) == replicas_at(spec, k_hi - 1, tol) == o.replicas
        else:
            assert o.replicas == 1
    pruned = [o for o in bb.outcomes if o.status == "pruned"]
    assert pruned and sum(len(o.points) for o in pruned) <= 2 * len(pruned)  # most at most one threshold test


def test_branch_and_bound_is_the_same_on_a_process_pool(wide: tuple[PlanResult, PlanResult], tmp_path) -> None:
    _, bb = wide
    ex = ProcessExecutor(2)
    try:
        pooled = plan(_wider_spec(), ex, PointCache(tmp_path))
    finally:
        ex.close()
    assert pooled.stats.simulations == bb.stats.simulations and pooled.stats.rounds == bb.stats.rounds
    assert _comparable(pooled) == _comparable(bb)


def test_capacity_bound_accounts_for_a_finite_run() -> None:
    """Short runs (all requests fit in one batch) have no throughput bound; long runs get a finite one a bit
    above the steady-state throughput bound."""
    spec, ts = resolve(_spec())
    c = next(c for c in candidates(spec) if c.hardware == "h100-sxm" and c.tp == 1)
    short = analytical_bounds(spec, c, ts)
    assert short.status is None and short.capacity_ub == math.inf and math.isfinite(short.capacity_est)
    spec2, ts2 = resolve(_spec(num_requests=2000))
    long = analytical_bounds(spec2, c, ts2)
    backlog = c.max_batch + 100
    assert long.capacity_ub == pytest.approx(long.capacity_est * 2000 / (2000 - backlog))


def test_process_pool_does_not_rerun_a_script_main(tmp_path, monkeypatch) -> None:
    """Under Streamlit (and AppTest) `__main__` is a page script; spawned workers must not execute it again."""
    import sys
    import types

    marker = tmp_path / "ran"
    script = tmp_path / "page.py"
    script.write_text(f"open({str(marker)!r}, 'w').write('x')\nraise SystemExit('a page script must not run')\n")
    fake = types.ModuleType("__main__")
    fake.__file__ = str(script)
    monkeypatch.setitem(sys.modules, "__main__", fake)
    ex = ProcessExecutor(2)
    try:
        assert ex.map(abs, [-3, -1, 2]) == [3, 1, 2]
    finally:
        ex.close()
    assert not marker.exists()
    assert sys.modules["__main__"] is fake


def test_each_scheduler_policy_gives_its_own_capacity_bound() -> None:
    """Seconds a request takes at least: static overlaps prefill and decode, vLLM/SJF add them (an iteration is
    one or the other), Orca and Sarathi also pay every token at a full mixed iteration's per-token cost."""
    def step_s(shape: BatchShape) -> float:  # 10 ms fixed + 0.1 ms per prompt token
        return 0.01 + 1e-4 * shape.prefill_tokens

    def bound(cfg: object) -> float:
        return make_scheduler(cfg).min_seconds_per_request(0.3, 0.5, 20000.0, 2, step_s)  # type: ignore[arg-type]

    assert bound(StaticScheduler()) == 0.5
    assert bound(VLLMScheduler()) == bound(SJFScheduler()) == 0.8
    assert bound(OrcaScheduler(max_batched_tokens=4096)) == pytest.approx(20000 * (0.01 + 0.4096) / 4096 / 2)
    assert bound(SarathiScheduler(chunk_size=512, max_batched_tokens=4096)) == pytest.approx(
        20000 * (0.01 + 0.0512) / 512 / 2)
    assert bound(SarathiScheduler(chunk_size=8192, max_batched_tokens=4096)) == bound(
        OrcaScheduler(max_batched_tokens=4096))
    # mixed iterations never bound below the plain prefill/decode overlap
    assert make_scheduler(OrcaScheduler()).min_seconds_per_request(0.3, 0.5, 10.0, 1, step_s) == 0.5


def test_cache_fingerprint_covers_the_simulation_not_the_search() -> None:
    files = {p.as_posix() for p in fingerprint_files()}
    assert {"simulator/run.py", "simulator/schedulers.py", "simulator/planning/evaluate.py", "model/cost.py",
            "hardware_specs/data/h100-sxm.toml"} <= files
    assert [f for f in files if f.startswith("simulator/planning/")] == ["simulator/planning/evaluate.py"]


# ---- PlanSpec.engine (simulator/engines.py) --------------------------------------------------------------------
def test_engine_sets_each_candidates_scheduler_for_its_gpu_and_explicit_fields_win() -> None:
    spec, _ = resolve(_spec(engine="vllm==0.10", hardware=("h100-sxm", "a100-sxm-80gb"), tp=(1,)))
    by_hw = {c.hardware: c for c in candidates(spec)}
    h, a = by_hw["h100-sxm"], by_hw["a100-sxm-80gb"]
    assert (h.scheduler, h.max_batch, h.max_batched_tokens, h.chunk_size) == ("sarathi", 1024, 8192, 8192)
    assert (a.scheduler, a.max_batch, a.max_batched_tokens, a.chunk_size) == ("sarathi", 256, 2048, 2048)
    assert "vllm==0.10: sarathi b1024" in h.label
    g = ReplicaGroup.model_validate(h.group(spec))  # the simulated group is the engine's (prefix caching too)
    assert g == ReplicaGroup(model="llama-3.1-8b", hardware="h100-sxm", engine="vllm==0.10", quant=g.quant)
    assert h.scheduler_policy(spec).chunked
    spec, _ = resolve(_spec(engine="vllm==0.10", hardware=("h100-sxm",), tp=(1,), max_batch=(64,),
                            schedulers=("vllm",), gpu_memory_utilization=0.8))
    (c,) = candidates(spec)
    assert (c.scheduler, c.max_batch, c.max_batched_tokens, c.gpu_memory_utilization) == ("vllm", 64, 8192, 0.8)
    # no engine named: the default engine (vLLM V1: chunked prefill); roofsim-default keeps the V0-style policy
    assert [c.scheduler for c in candidates(resolve(_spec(tp=(1,)))[0])] == ["sarathi", "sarathi"]
    assert [c.scheduler for c in candidates(resolve(_spec(tp=(1,), engine="roofsim-default"))[0])] == ["vllm", "vllm"]
    with pytest.raises(ValueError, match="unknown engine version 'vllm==7'"):
        _spec(engine="vllm==7")


def _length_spec(**kw: object) -> PlanSpec:
    """One cheap candidate (16 sequences, short requests) whose capacity sits near 73 req/s."""
    from roofsim.simulator.workload import SyntheticWorkload

    wl = SyntheticWorkload(arrival={"kind": "poisson", "rate_per_s": 1.0}, input={"kind": "fixed", "tokens": 256},
                           output={"kind": "uniform", "low": 8, "high": 24}, num_requests=100)
    return PlanSpec(model="llama-3.1-8b", workload=wl, rate_per_s=100.0, slo_ttft_s=0.2, slo_tpot_s=0.02,
                    hardware=("h100-sxm",), tp=(1,), tolerance=0.1, verify_winner=False, engine="vllm",
                    max_batch=(16,), **kw)  # type: ignore[arg-type]


def test_capacity_does_not_change_with_the_run_length_once_steady() -> None:
    """The planner chooses each point's length (doubling until steady and stable); a user-forced length above
    every length it chose gives the same capacity, and a too-short forced length is reported not steady."""
    auto = plan(_length_spec(), SerialExecutor(), None)
    w = auto.winner
    assert w is not None and w.steady and not auto.unsteady
    lengths = {q.num_requests for q in w.points}
    # chosen per point, up to MAX_PLAN_REQUESTS (32,000) for the point nearest the SLO edge
    assert min(lengths) >= 500 and max(lengths) == w.num_requests == 32000
    assert w.capacity_per_s == pytest.approx(72.890483685103)
    long = plan(_length_spec(num_requests=32000), SerialExecutor(), None)
    assert long.winner is not None and long.winner.steady
    assert long.winner.capacity_per_s == w.capacity_per_s and long.winner.replicas == w.replicas
    short = plan(_length_spec(num_requests=100), SerialExecutor(), None)
    assert short.winner is not None and short.winner.steady is False
    assert short.winner.capacity_per_s != w.capacity_per_s  # too short: warm-up and drain flatter the latency
    assert "not steady" in short.winner.unsteady_why and short.unsteady == [short.winner]


def test_next_length_doubles_until_two_steady_runs_agree() -> None:
    from roofsim.simulator.planning.length import next_length, settled, start_requests

    assert start_requests(16) == 500 and start_requests(256) == 2000 and start_requests(10**6, cap=32000) == 32000

    def run(steady: bool, ttft: float, tpot: float = 0.01, saturated: bool = False) -> dict:
        stats = {"ttft_s": {"p99": ttft}, "tpot_s": {"p99": tpot}}
        return {"stop_reason": "completed", "saturated": saturated, "requests_rejected": 0, **stats,
                "steady_state": {"steady": steady, "reason": "too few", **stats}}

    slo = (1.0, 0.05)
    assert next_length(slo, [(500, run(False, 0.5))], 32000) == 1000  # not steady: longer
    assert next_length(slo, [(500, run(True, 0.5))], 32000) == 1000  # steady once: check at twice the length
    assert next_length(slo, [(500, run(True, 0.5)), (1000, run(True, 0.58))], 32000) is None  # moved 8% of SLO
    assert next_length(slo, [(500, run(True, 0.5)), (1000, run(True, 0.8))], 32000) == 2000  # moved 30%
    assert next_length(slo, [(500, run(True, 2.5))], 32000) is None  # 2.5x the SLO: infeasible at any length
    assert next_length(slo, [(500, run(False, 0.5, saturated=True))], 32000) is None  # overloaded
    assert next_length(slo, [(16000, run(False, 0.5))], 20000) == 20000  # the cap (a trace's length) is last
    assert next_length(slo, [(20000, run(False, 0.5))], 20000) is None
    assert settled(slo, [(200, run(True, 0.5))], forced=True) == (True, "")
    assert settled(slo, [(100, run(False, 0.5))], forced=True)[1].startswith("100 requests: not steady")
