"""The vLLM 0.8 V1 host costs on the engine table (simulator/engines.py: host_s_per_seq, frontend_s_per_request,
frontend_s_per_token): set on the 0.8 row only, carried into the replica group under explicit settings, and what
`simulate --engine vllm==0.8` adds to `--engine vllm`."""

from __future__ import annotations

import json

import pytest

from roofsim.app.cli import main
from roofsim.model.cost import DEFAULT_CALIBRATION, Calibration
from roofsim.simulator.config import ReplicaGroup, engine_overrides
from roofsim.simulator.engines import (
    VLLM_FRONTEND_S_PER_REQUEST,
    VLLM_FRONTEND_S_PER_TOKEN,
    VLLM_V1_HOST_S_PER_SEQ,
    engine_profile,
)
from roofsim.simulator.run import group_calibration
from roofsim.validation.replay import SERVERS

A100 = "a100-sxm-80gb"  # vLLM 0.8 and the newest row share the scheduler limits here (2048 tokens, 256 seqs)


def test_only_the_vllm_08_row_carries_the_host_costs() -> None:
    p = engine_profile("vllm==0.8.3", A100)
    assert (p.host_s_per_seq, p.frontend_s_per_request, p.frontend_s_per_token) == (33e-6, 1.1e-3, 190e-6)
    assert "33 us per running sequence" in p.summary() and "1.1 ms per request" in p.summary()
    for spec in ("vllm", "vllm==0.9.2", "vllm==0.7.3", "trtllm", "sglang", "roofsim-default"):
        q = engine_profile(spec, A100, max_model_len=8192)
        assert (q.host_s_per_seq, q.frontend_s_per_request, q.frontend_s_per_token) == (None, 0.0, 0.0), spec
    # the replay's vLLM V1 server is that row (one source)
    assert SERVERS["vllm-v1"] == (VLLM_FRONTEND_S_PER_REQUEST, VLLM_FRONTEND_S_PER_TOKEN, VLLM_V1_HOST_S_PER_SEQ)


def test_replica_group_takes_them_under_explicit_settings() -> None:
    g = ReplicaGroup(model="llama-3.1-8b", hardware=A100, engine="vllm==0.8")
    assert (g.host_s_per_seq, g.frontend_s_per_request, g.frontend_s_per_token) == (33e-6, 1.1e-3, 190e-6)
    assert engine_overrides(g).keys().isdisjoint({"host_s_per_seq", "frontend_s_per_request", "frontend_s_per_token"})
    mine = ReplicaGroup(model="llama-3.1-8b", hardware=A100, engine="vllm==0.8", host_s_per_seq=2e-5,
                        frontend_s_per_request=0.0)
    assert (mine.host_s_per_seq, mine.frontend_s_per_request, mine.frontend_s_per_token) == (2e-5, 0.0, 190e-6)
    assert engine_overrides(mine)["host_s_per_seq"] == 2e-5 and engine_overrides(mine)["frontend_s_per_request"] == 0
    newest = ReplicaGroup(model="llama-3.1-8b", hardware=A100, engine="vllm")
    assert (newest.host_s_per_seq, newest.frontend_s_per_request, newest.frontend_s_per_token) == (None, 0.0, 0.0)


def test_host_time_per_sequence_replaces_the_calibrations() -> None:
    cal = Calibration(step_overhead_s=2e-3, step_overhead_per_seq_s=1e-5)
    g = ReplicaGroup(model="llama-3.1-8b", hardware=A100, engine="vllm==0.8", calibration=cal)
    assert group_calibration(g) == cal.model_copy(update={"step_overhead_per_seq_s": 33e-6})
    bare = ReplicaGroup(model="llama-3.1-8b", hardware=A100, engine="vllm==0.8")
    assert group_calibration(bare) == DEFAULT_CALIBRATION.model_copy(update={"step_overhead_per_seq_s": 33e-6})
    assert group_calibration(ReplicaGroup(model="llama-3.1-8b", hardware=A100, engine="vllm",
                                          calibration=cal)) is cal


def _run(capsys, *args: str) -> dict:
    assert main(["simulate", "--model", "llama-3.1-8b", "--hardware", A100, "--num-requests", "40", "--rate", "4",
                 "--seed", "3", "--json", *args]) == 0
    return json.loads(capsys.readouterr().out)


def test_simulate_vllm_08_differs_from_vllm_by_the_host_costs(capsys) -> None:
    old, new = _run(capsys, "--engine", "vllm==0.8"), _run(capsys, "--engine", "vllm")
    same = _run(capsys, "--engine", "vllm", "--set", "replicas.0.host_s_per_seq=33e-6",
                "--set", "replicas.0.frontend_s_per_request=1.1e-3", "--set", "replicas.0.frontend_s_per_token=190e-6")
    for k in ("ttft_s", "tpot_s", "e2e_s"):
        assert old[k] == same[k]
    # the front end adds at least its 1.1 ms to every first token, the host time per sequence to every step
    assert old["ttft_s"]["p50"] > new["ttft_s"]["p50"] + 1.1e-3
    assert old["tpot_s"]["p50"] > new["tpot_s"]["p50"] + 23e-6


def test_planner_bounds_pay_the_engines_host_time_per_sequence() -> None:
    """The planner's analytic decode floor uses the calibration the simulated replicas run (group_calibration): on
    `--engine vllm==0.8` a batch-1 decode step pays 33 us of host time where the model defaults charge 10 us."""
    from roofsim.simulator.planning import PlanSpec, analytical_bounds, candidates, resolve
    from roofsim.simulator.workload import NamedWorkload

    def floor(engine: str) -> float:
        spec, ts = resolve(PlanSpec(model="llama-3.1-8b", workload=NamedWorkload(name="conversation"),
                                    rate_per_s=4.0, slo_ttft_s=5.0, slo_tpot_s=0.5, hardware=(A100,), tp=(1,),
                                    num_requests=100, engine=engine, verify_winner=False))
        return analytical_bounds(spec, candidates(spec)[0], ts).tpot_lb_s

    extra = VLLM_V1_HOST_S_PER_SEQ - DEFAULT_CALIBRATION.step_overhead_per_seq_s
    assert floor("vllm==0.8") - floor("vllm") == pytest.approx(extra, rel=1e-9)
