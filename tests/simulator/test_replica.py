"""The replica mechanics seen through simulate(): each iteration's duration is the cost model's step time of the
batch it formed, tokens are stamped at iteration ends, pipeline stages overlap micro-batches, the serialized
front end delays admission, and requests a replica can never hold are rejected with the reason."""

from __future__ import annotations

import numpy as np
import pytest

from roofsim.hardware_specs.catalog import load_hardware
from roofsim.model.batch import BatchShape
from roofsim.model.cost import CostModel
from roofsim.model.loader import load_model
from roofsim.model.spec import ParallelSpec, QuantSpec


def _cost(hardware: str = "h100-sxm", pp: int = 1) -> CostModel:
    return CostModel(load_model("llama-3.1-8b"), load_hardware(hardware), QuantSpec(), ParallelSpec(pp=pp))


def test_iteration_times_are_the_cost_models_step_times(simulate_trace) -> None:
    # one 100-token prompt, 5 output tokens: a prefill, then decodes attending to 100, 101, 102, 103 cached tokens
    r = simulate_trace([100], [5])
    cost = _cost()
    want = [cost.step_seconds_energy(BatchShape.build(prefill=[(100, 0)]))[0]]
    want += [cost.step_seconds_energy(BatchShape.build(decode_ctx=[100 + i]))[0] for i in range(4)]
    np.testing.assert_allclose(r.series.duration_s, want, rtol=1e-12)
    np.testing.assert_allclose(r.series.start_s, np.concatenate(([0.0], np.cumsum(want)[:-1])), rtol=1e-12)
    # tokens are stamped at the end of the iteration that emitted them
    np.testing.assert_allclose(r.token_times[0], np.cumsum(want), rtol=1e-12)
    assert r.ttft_s[0] == pytest.approx(want[0], rel=1e-12)


def test_batched_decode_sums_the_contexts(simulate_trace) -> None:
    r = simulate_trace([100, 300], [2, 2])
    cost = _cost()
    prefill = cost.step_seconds_energy(BatchShape.build(prefill=[(100, 0), (300, 0)]))[0]
    decode = cost.step_seconds_energy(BatchShape.build(decode_ctx=[100, 300]))[0]
    np.testing.assert_allclose(r.series.duration_s, [prefill, decode], rtol=1e-12)
    np.testing.assert_allclose(r.completion_s, [prefill + decode] * 2, rtol=1e-12)


def test_energy_is_step_joules_plus_idle(simulate_trace) -> None:
    r = simulate_trace([100], [3])
    cost = _cost()
    shapes = [BatchShape.build(prefill=[(100, 0)]), BatchShape.build(decode_ctx=[100]),
              BatchShape.build(decode_ctx=[101])]
    joules = sum(cost.step_seconds_energy(s)[1] for s in shapes)
    assert r.summary["energy_j"] == pytest.approx(joules, rel=1e-12)  # busy from t=0 to the last token: no idle


def test_pipeline_stages_overlap_micro_batches(simulate_trace) -> None:
    # pp=2: two requests land on the two lanes; lane 1's prefill enters stage 0 when lane 0's leaves it
    r = simulate_trace([100, 100], [1, 1], pp=2)
    s = r.series
    stage = _cost(pp=2).pipeline_stage_seconds(BatchShape.build(prefill=[(100, 0)]))
    assert s.lane.tolist() == [0, 1]
    assert s.start_s.tolist() == [0.0, stage]
    np.testing.assert_allclose(s.duration_s, [2 * stage, 2 * stage], rtol=1e-15)
    assert r.completion_s.tolist() == [2 * stage, 3 * stage]


def test_frontend_serializes_admission(simulate_trace) -> None:
    r = simulate_trace([100] * 3, [1] * 3, frontend_s_per_request=0.1)
    np.testing.assert_allclose(r.first_scheduled_s, [0.1, 0.2, 0.3], rtol=1e-12)
    assert r.summary["requests_completed"] == 3


def test_requests_that_never_fit_are_rejected(simulate_trace) -> None:
    # gpu_memory_utilization 0.22 of 81,559 MiB leaves 730 blocks (7 kept free by the 1% watermark): 723 x 16 = 11,568 tokens
    r = simulate_trace([11_000, 11_000, 100], [568, 569, 1], gpu_memory_utilization=0.22,
                       scheduler={"kind": "sarathi", "max_batched_tokens": 2048})
    assert r.completed.tolist() == [True, False, True]
    assert r.reject_reasons[1] == ("input+output=11569 tokens needs 724 KV blocks; the replica has 730 "
                                   "(7 kept free)")


def test_preempted_request_loses_no_tokens(simulate_trace) -> None:
    # two requests that cannot both grow to 9,000 tokens in a 730-block pool: the later one is preempted and
    # recomputed, and still emits exactly its tokens in increasing time order
    r = simulate_trace([1000, 1000], [8000, 8000], gpu_memory_utilization=0.22,
                       scheduler={"kind": "vllm", "max_batched_tokens": 2048})
    assert r.preemptions.tolist() == [0, 1]
    assert [t.size for t in r.token_times] == [8000, 8000]
    assert np.all(np.diff(r.token_times[1]) > 0)
    assert r.first_token_s[1] < r.completion_s[0] < r.completion_s[1]
