"""summarize() on hand-built requests: TTFT/TPOT/ITL/E2E/queueing as defined in docs/metrics.md, percentiles,
throughput, goodput under SLOs, warm-up exclusion, energy and cost of an idle replica."""

from __future__ import annotations

import math

import numpy as np
import pytest

from roofsim.hardware_specs.catalog import load_hardware
from roofsim.simulator.config import SimConfig
from roofsim.simulator.metrics import LatencyStats, SimResult, summarize
from roofsim.simulator.request import DONE, REJECTED, Request
from roofsim.simulator.run import build_replicas

END_S = 4.0


def _request(i: int, arrival: float, inp: int, out: int, sched: float = math.nan,
             tokens: tuple[float, ...] = (), reject: str = "") -> Request:
    r = Request(i, arrival, inp, out, replica=0)
    if reject:
        r.state, r.reject_reason = REJECTED, reject
        return r
    r.state, r.first_scheduled_s, r.first_token_s, r.completion_s = DONE, sched, tokens[0], tokens[-1]
    # one token per segment: the shape a request has after recompute preemptions (each re-prefill emits one)
    r.segments = [[t, 0, 0, 0] for t in tokens]
    return r


def _requests() -> list[Request]:
    return [_request(0, 0.0, 10, 3, 0.5, (1.0, 1.5, 2.5)),  # TTFT 1, E2E 2.5, TPOT 0.75, ITL 0.5 and 1
            _request(1, 1.0, 20, 1, 1.1, (1.2,)),  # TTFT 0.2, E2E 0.2, no TPOT
            _request(2, 2.0, 30, 2, 2.0, (3.0, 3.25)),  # TTFT 1, E2E 1.25, TPOT 0.25, ITL 0.25
            _request(3, 3.0, 99, 9, reject="too long")]


def _summarize(requests: list[Request], ttft: float | None = None, tpot: float | None = None) -> SimResult:
    cfg = SimConfig.model_validate({
        "workload": {"kind": "synthetic", "arrival": {"kind": "offline"}, "input": {"kind": "fixed", "tokens": 1},
                     "output": {"kind": "fixed", "tokens": 1}, "num_requests": 1},
        "replicas": [{"model": "llama-3.1-8b", "hardware": "h100-sxm"}]})
    return summarize(requests, build_replicas(cfg), slo_ttft_s=ttft, slo_tpot_s=tpot, stop_reason="completed",
                     last_arrival_s=3.0, wall_s=1.0, end_s=END_S)


def test_per_request_definitions() -> None:
    r = _summarize(_requests())
    np.testing.assert_allclose(r.ttft_s[:3], [1.0, 0.2, 1.0], rtol=1e-15)
    np.testing.assert_allclose(r.e2e_s[:3], [2.5, 0.2, 1.25], rtol=1e-15)
    np.testing.assert_allclose(r.queueing_s[:3], [0.5, 0.1, 0.0], rtol=1e-12)
    np.testing.assert_allclose(r.normalized_latency_s[:3], [2.5 / 3, 0.2, 0.625], rtol=1e-15)
    assert r.tpot_s[0] == pytest.approx(0.75) and math.isnan(r.tpot_s[1]) and r.tpot_s[2] == pytest.approx(0.25)
    np.testing.assert_allclose(np.sort(r.itl_s), [0.25, 0.5, 1.0], rtol=1e-15)
    assert [t.tolist() for t in r.token_times] == [[1.0, 1.5, 2.5], [1.2], [3.0, 3.25], []]
    assert r.completed.tolist() == [True, True, True, False] and r.rejected.tolist() == [False] * 3 + [True]
    assert r.reject_reasons == ("", "", "", "too long")


def test_summary_statistics_and_throughput() -> None:
    s = _summarize(_requests()).summary
    assert (s["requests_total"], s["requests_completed"], s["requests_rejected"], s["requests_unfinished"]) == (
        4, 3, 1, 0)
    assert s["ttft_s"]["mean"] == pytest.approx(2.2 / 3) and s["ttft_s"]["p50"] == 1.0
    assert s["tpot_s"]["mean"] == pytest.approx(0.5)  # the 1-token request has no TPOT
    assert s["itl_s"]["mean"] == pytest.approx(1.75 / 3)  # pooled gaps 0.5, 1.0, 0.25
    assert s["e2e_s"]["p50"] == 1.25 and s["e2e_s"]["mean"] == pytest.approx(3.95 / 3)
    assert s["sim_duration_s"] == s["measure_duration_s"] == END_S and s["measure_start_s"] == 0.0
    assert s["input_tokens_per_s"] == 60 / END_S  # completed requests only
    assert s["output_tokens_per_s"] == 6 / END_S
    assert s["requests_per_s"] == 3 / END_S
    assert s["goodput_requests_per_s"] == 3 / END_S and s["slo_attainment"] == 1.0  # no SLO set
    assert s["iterations"] == 0 and math.isnan(s["mean_batch_size"]) and math.isnan(s["mfu"])
    assert not s["saturated"] and s["preemptions"] == 0


@pytest.mark.parametrize(("ttft", "tpot", "ok"), [
    (0.5, None, 1),  # only request 1 has TTFT <= 0.5
    (None, 0.5, 2),  # request 0's TPOT 0.75 fails; the 1-token request passes
    (1.0, 0.5, 2),  # TTFT <= 1.0 includes equality
    (0.1, 0.1, 0),
])
def test_goodput_with_slos(ttft: float | None, tpot: float | None, ok: int) -> None:
    s = _summarize(_requests(), ttft, tpot).summary
    assert s["goodput_requests_per_s"] == ok / END_S
    assert s["slo_attainment"] == ok / 3


def test_warmup_requests_are_counted_but_not_measured() -> None:
    reqs = _requests()
    reqs[0].warmup = True
    s = _summarize(reqs).summary
    assert (s["requests_completed"], s["requests_warmup"], s["requests_measured"]) == (3, 1, 2)
    assert s["measure_start_s"] == 1.0 and s["measure_duration_s"] == 3.0  # first measured request sent
    assert s["requests_per_s"] == 2 / 3.0 and s["output_tokens_per_s"] == 3 / 3.0
    assert s["itl_s"]["mean"] == 0.25 and s["ttft_s"]["mean"] == pytest.approx(0.6)


def test_energy_and_cost_of_an_idle_replica() -> None:
    hw = load_hardware("h100-sxm")
    s = _summarize(_requests()).summary
    assert s["energy_j"] == hw.power.idle_w * END_S == 280.0  # no iteration ran: idle the whole time
    assert s["energy_per_output_token_j"] == pytest.approx(280.0 / 6)
    assert s["cost_usd"] == pytest.approx(hw.price_usd_per_hour * END_S / 3600)
    assert s["cost_per_million_output_tokens_usd"] == pytest.approx(2.99 * END_S / 3600 / 6 * 1e6)


def test_latency_stats_percentiles_linear() -> None:
    st = LatencyStats.of(np.append(np.arange(1.0, 101.0), np.nan))  # NaN (undefined values) dropped
    assert (st.count, st.mean, st.p50, st.p90) == (100, 50.5, 50.5, pytest.approx(90.1))
    assert st.p95 == pytest.approx(95.05) and st.p99 == pytest.approx(99.01)
    assert st.as_dict() == {"mean": 50.5, "p50": 50.5, "p90": st.p90, "p95": st.p95, "p99": st.p99}
    empty = LatencyStats.of(np.array([np.nan]))
    assert empty.count == 0 and math.isnan(empty.mean) and math.isnan(empty.p99)
