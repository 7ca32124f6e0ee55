"""Engine mechanics: batched advancing equals stepwise, TOML round trip and errors, rejection, preemption by
recompute and swap, pipeline lanes, routers, closed loop, overload guard, memory errors."""

from __future__ import annotations

import numpy as np
import pytest

from roofsim.hardware_specs.errors import InputError
from roofsim.model.memory import DoesNotFitError
from roofsim.simulator.config import ROUTER_KINDS, SimConfig
from roofsim.simulator.run import simulate


def _cfg(sched: dict | None = None, rate: float = 8.0, n: int = 400, replicas: dict | None = None,
         **top: object) -> SimConfig:
    rep = {"model": "llama-3.1-8b", "hardware": "h100-sxm", "scheduler": sched or {"kind": "vllm"}}
    rep.update(replicas or {})
    return SimConfig.model_validate({
        "workload": {"kind": "synthetic", "arrival": {"kind": "poisson", "rate_per_s": rate},
                     "input": {"kind": "uniform", "low": 50, "high": 1500},
                     "output": {"kind": "uniform", "low": 1, "high": 300}, "num_requests": n},
        "replicas": [rep], "seed": 3, **top})


@pytest.mark.parametrize("kind", ["vllm", "sarathi", "static"])
def test_fast_advance_equals_stepwise(kind: str) -> None:
    cfg = _cfg({"kind": kind}, replicas={"count": 2}, router={"kind": "power_of_two"})
    fast = simulate(cfg)
    slow = simulate(cfg.model_copy(update={"stepwise": True}))
    np.testing.assert_array_equal(fast.completion_s, slow.completion_s)
    np.testing.assert_array_equal(fast.itl_s, slow.itl_s)
    np.testing.assert_array_equal(fast.replica, slow.replica)


def test_toml_round_trip(tmp_path) -> None:
    cfg = _cfg({"kind": "sarathi", "chunk_size": 256}, replicas={"tp": 2, "count": 3},
               router={"kind": "least_kv"}, slo={"ttft_s": 0.5})
    p = tmp_path / "run.toml"
    p.write_text(cfg.to_toml())
    assert SimConfig.from_toml(p) == cfg


def test_malformed_toml_names_file_and_field(tmp_path) -> None:
    p = tmp_path / "bad.toml"
    p.write_text(_cfg().to_toml().replace("tp = 1", "tp = 0"))
    with pytest.raises(InputError, match=r"bad\.toml.*\n.*field replicas\.0\.tp"):
        SimConfig.from_toml(p)
    p.write_text("[workload\n")
    with pytest.raises(InputError, match=r"bad\.toml: not valid TOML"):
        SimConfig.from_toml(p)


def test_unknown_policy_lists_valid_ones() -> None:
    with pytest.raises(InputError, match="'static', 'vllm', 'orca', 'sarathi', 'sjf'"):
        SimConfig.from_dict({"workload": {"kind": "named", "name": "conversation"},
                             "replicas": [{"model": "llama-3.1-8b", "hardware": "h100-sxm",
                                           "scheduler": {"kind": "fifo"}}]})


def test_too_long_requests_are_rejected_and_counted() -> None:
    cfg = SimConfig.model_validate({
        "workload": {"kind": "synthetic", "arrival": {"kind": "poisson", "rate_per_s": 2.0},
                     "input": {"kind": "uniform", "low": 100, "high": 6000},
                     "output": {"kind": "fixed", "tokens": 10}, "num_requests": 200},
        "replicas": [{"model": "llama-2-7b", "hardware": "h100-sxm"}]})
    r = simulate(cfg)
    too_long = (r.input_tokens + r.output_tokens) > 4096
    assert too_long.sum() > 50
    np.testing.assert_array_equal(r.rejected, too_long)
    assert r.summary["requests_rejected"] == too_long.sum()
    assert r.summary["requests_completed"] == 200 - too_long.sum()
    assert "exceeds the model context (4096)" in r.reject_reasons[int(np.flatnonzero(too_long)[0])]


@pytest.mark.parametrize("mode", ["recompute", "swap"])
def test_preemption_under_kv_pressure(mode: str) -> None:
    # 0.3 of an H100 leaves ~1k blocks: long outputs exhaust them and force preemption
    cfg = _cfg({"kind": "vllm", "preemption": mode}, rate=30.0, n=300,
               replicas={"gpu_memory_utilization": 0.26})
    r = simulate(cfg)
    assert r.summary["preemptions"] > 0
    assert r.summary["requests_completed"] == 300
    np.testing.assert_array_equal([t.size for t in r.token_times], r.output_tokens)
    assert np.all(r.series.kv_blocks_used <= r.series.kv_blocks_total)


def test_pipeline_parallel_runs_and_has_bubbles() -> None:
    r1 = simulate(_cfg(rate=2.0, n=200, replicas={"pp": 2}))
    assert r1.summary["requests_completed"] == 200
    assert set(np.unique(r1.series.lane)) == {0, 1}
    np.testing.assert_array_equal([t.size for t in r1.token_times], r1.output_tokens)


def test_closed_loop_keeps_clients_busy() -> None:
    cfg = SimConfig.model_validate({
        "workload": {"kind": "synthetic", "arrival": {"kind": "closed_loop", "clients": 8, "think_s": 0.5},
                     "input": {"kind": "fixed", "tokens": 500}, "output": {"kind": "fixed", "tokens": 50},
                     "num_requests": 200},
        "replicas": [{"model": "llama-3.1-8b", "hardware": "h100-sxm"}]})
    r = simulate(cfg)
    assert r.summary["requests_completed"] == 200
    assert r.series.running.max() == 8  # never more than `clients` outstanding


def test_overload_stops_by_itself_and_reports_unfinished() -> None:
    cfg = _cfg(rate=200.0, n=20000, max_sim_time_s=20.0)
    r = simulate(cfg)
    s = r.summary
    assert s["stop_reason"].startswith("max_sim_time_s=20")
    assert s["saturated"]
    assert s["requests_unfinished"] > 1000
    assert s["requests_unfinished"] == s["requests_waiting_at_end"] + s["requests_running_at_end"] + (
        20000 - s["requests_completed"] - s["requests_rejected"] - s["requests_waiting_at_end"]
        - s["requests_running_at_end"])
    r2 = simulate(cfg.model_copy(update={"max_waiting_requests": 500, "max_sim_time_s": None}))
    assert r2.summary["stop_reason"].startswith("overload: 501 requests waiting")


def test_model_that_does_not_fit_gives_breakdown() -> None:
    with pytest.raises(DoesNotFitError, match="does not fit.*weights"):
        simulate(_cfg(replicas={"model": "llama-2-70b"}))


@pytest.mark.parametrize("router", ROUTER_KINDS)
def test_routers_spread_load(router: str) -> None:
    r = simulate(_cfg(rate=10.0, n=400, replicas={"count": 3}, router={"kind": router}))
    counts = np.bincount(r.replica, minlength=3)
    assert r.summary["requests_completed"] == 400
    assert counts.min() > 60
    if router == "round_robin":
        np.testing.assert_array_equal(r.replica, np.arange(400) % 3)


def test_cost_and_energy_definitions() -> None:
    r = simulate(_cfg(n=200, replicas={"tp": 2}))
    s = r.summary
    price = 2 * 2.99  # two h100-sxm GPUs, price_usd_per_hour from the hardware file
    assert s["cost_usd"] == pytest.approx(price * s["sim_duration_s"] / 3600)
    assert s["cost_per_million_output_tokens_usd"] == pytest.approx(
        s["cost_usd"] / r.output_tokens.sum() * 1e6)
    assert 0 < s["mfu"] < 1 and 0 < s["mbu"] < 1
    assert s["energy_per_output_token_j"] > 0
