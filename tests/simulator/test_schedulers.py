"""Batch formation of every scheduler policy on hand-made traces (all arriving at t=0 unless stated): the
per-iteration series (prefill tokens, prefill and decode sequences) against hand-worked schedules."""

from __future__ import annotations

import pytest

from roofsim.hardware_specs.errors import UnknownNameError
from roofsim.simulator.config import SCHEDULER_KINDS, VLLMScheduler
from roofsim.simulator.schedulers import SCHEDULERS, make_scheduler


def _batches(r) -> tuple[list[int], list[int], list[int]]:
    s = r.series
    return s.prefill_tokens.tolist(), s.prefill_seqs.tolist(), s.decode_seqs.tolist()


def test_vllm_prefills_all_waiting_then_decodes(simulate_trace) -> None:
    # 3 prompts of 100 tokens, 3 output tokens each: one prefill iteration (token 1), two decode iterations
    r = simulate_trace([100] * 3, [3] * 3)
    assert _batches(r) == ([300, 0, 0], [3, 0, 0], [0, 3, 3])


def test_vllm_token_budget_splits_prefills(simulate_trace) -> None:
    # max_batched_tokens=250 fits two whole prompts; the third is prefilled alone next (prefill-prioritising)
    r = simulate_trace([100] * 3, [3] * 3, scheduler={"kind": "vllm", "max_batched_tokens": 250})
    assert _batches(r) == ([200, 100, 0, 0], [2, 1, 0, 0], [0, 0, 3, 3])
    assert r.first_scheduled_s[2] == r.series.start_s[1] > 0


def test_max_num_seqs_caps_the_running_set(simulate_trace) -> None:
    # two run to completion (1 prefill + 2 decodes), then the third gets in
    r = simulate_trace([100] * 3, [3] * 3, scheduler={"kind": "vllm", "max_num_seqs": 2})
    assert _batches(r) == ([200, 0, 0, 100, 0, 0], [2, 0, 0, 1, 0, 0], [0, 2, 2, 0, 1, 1])
    assert r.first_scheduled_s[2] == r.completion_s[0] == r.completion_s[1]


def test_orca_mixes_decodes_and_whole_prompts(simulate_trace) -> None:
    # iteration 2 decodes the first two and adds the third prompt (100 <= 250 - 2 decode tokens)
    r = simulate_trace([100] * 3, [3] * 3, scheduler={"kind": "orca", "max_batched_tokens": 250})
    assert _batches(r) == ([200, 100, 0, 0], [2, 1, 0, 0], [0, 2, 3, 1])


def test_orca_overlap_admits_a_busy_lanes_arrival_one_iteration_later(simulate_trace) -> None:
    # request 0 alone from t=0 (3 output tokens: a prefill then two decodes); request 1 arrives during the
    # prefill. Plain orca adds it to iteration 2; with the overlap scheduler iteration 2 was formed (at the end
    # of iteration 1, before request 1's arrival counted) from the requests known when iteration 1 was formed,
    # so request 1 joins iteration 3. An idle lane admits at once either way (request 0 at t=0).
    plain = simulate_trace([100, 100], [3, 3], [0.0, 1e-4], scheduler={"kind": "orca"})
    lagged = simulate_trace([100, 100], [3, 3], [0.0, 1e-4], scheduler={"kind": "orca", "overlap": True})
    assert _batches(plain) == ([100, 100, 0, 0], [1, 1, 0, 0], [0, 1, 2, 1])
    assert _batches(lagged) == ([100, 0, 100, 0, 0], [1, 0, 1, 0, 0], [0, 1, 1, 1, 1])
    assert lagged.first_scheduled_s[0] == plain.first_scheduled_s[0] == 0.0
    assert lagged.first_scheduled_s[1] == lagged.series.start_s[2] > plain.first_scheduled_s[1]


def test_sarathi_chunks_prompts_within_the_budget(simulate_trace) -> None:
    # chunk 128: 300-token prompt as 128 + 128 + 44; the 100-token prompt fills the rest of iteration 3 (84)
    # and finishes (16) next to the first request's decode
    r = simulate_trace([300, 100], [2, 3], scheduler={"kind": "sarathi", "chunk_size": 128})
    assert _batches(r) == ([128, 128, 128, 16, 0, 0], [1, 1, 2, 1, 0, 0], [0, 0, 0, 1, 1, 1])
    assert r.first_token_s[0] == r.series.start_s[3]  # token 1 at the end of iteration 3
    assert r.first_scheduled_s[1] == r.series.start_s[2]


def test_sarathi_budget_is_min_of_chunk_and_max_batched_tokens(simulate_trace) -> None:
    r = simulate_trace([300], [1], scheduler={"kind": "sarathi", "chunk_size": 512, "max_batched_tokens": 100})
    assert _batches(r) == ([100, 100, 100], [1, 1, 1], [0, 0, 0])


def test_sjf_admits_shortest_predicted_output_first(simulate_trace) -> None:
    # one sequence at a time, outputs 5, 3, 1, 2: served 2, 3, 1, 0 (predictor_sigma 0: exact prediction)
    r = simulate_trace([100] * 4, [5, 3, 1, 2], scheduler={"kind": "sjf", "max_num_seqs": 1})
    assert sorted(range(4), key=lambda i: r.first_scheduled_s[i]) == [2, 3, 1, 0]
    fcfs = simulate_trace([100] * 4, [5, 3, 1, 2], scheduler={"kind": "vllm", "max_num_seqs": 1})
    assert sorted(range(4), key=lambda i: fcfs.first_scheduled_s[i]) == [0, 1, 2, 3]


def test_static_batch_runs_to_completion_before_the_next(simulate_trace) -> None:
    # outputs 2, 4, 1 at t=0 and one more at t=1 ms: the late one waits until the whole batch has finished
    r = simulate_trace([100] * 4, [2, 4, 1, 2], [0, 0, 0, 0.001], scheduler={"kind": "static"})
    assert _batches(r) == ([300, 0, 0, 0, 100, 0], [3, 0, 0, 0, 1, 0], [0, 2, 1, 1, 0, 1])
    assert r.first_scheduled_s[3] == r.completion_s[1] == max(r.completion_s[:3])
    vllm = simulate_trace([100] * 4, [2, 4, 1, 2], [0, 0, 0, 0.001])
    assert vllm.first_scheduled_s[3] < r.first_scheduled_s[3]


@pytest.mark.parametrize("kind", ["static", "vllm", "orca", "sjf"])
def test_non_chunking_schedulers_reject_prompts_over_the_budget(simulate_trace, kind: str) -> None:
    r = simulate_trace([300, 100], [2, 2], scheduler={"kind": kind, "max_batched_tokens": 200})
    assert r.rejected.tolist() == [True, False]
    assert r.reject_reasons[0] == (f"prompt of 300 tokens exceeds max_batched_tokens=200 and scheduler "
                                   f"{kind!r} does not chunk prompts")


def test_sarathi_serves_prompts_over_the_budget(simulate_trace) -> None:
    r = simulate_trace([300, 100], [2, 2], scheduler={"kind": "sarathi", "max_batched_tokens": 200})
    assert r.completed.tolist() == [True, True]


def test_one_policy_per_kind() -> None:
    assert tuple(SCHEDULERS) == SCHEDULER_KINDS
    sched = make_scheduler(VLLMScheduler(max_num_seqs=7))
    assert type(sched) is SCHEDULERS["vllm"] and sched.cfg.max_num_seqs == 7
    assert [k for k, cls in SCHEDULERS.items() if cls.chunked] == ["sarathi"]
    assert [k for k, cls in SCHEDULERS.items() if cls.keyed] == ["sjf"]


def test_unknown_kind_lists_the_valid_ones() -> None:
    class Fake:
        kind = "fifo"

    with pytest.raises(UnknownNameError, match="fifo") as e:
        make_scheduler(Fake())  # type: ignore[arg-type]
    assert all(k in str(e.value) for k in SCHEDULER_KINDS)


def test_orca_no_evict_waits_for_the_kv_of_whole_sequences(simulate_trace) -> None:
    # at gpu_memory_utilization 0.23 the pool holds one 9,000-token sequence (563 blocks) but not two. Plain orca
    # admits both 1,000-token prompts and preempts the later one when they grow; GUARANTEED_NO_EVICT (no_evict)
    # admits the second only when the first has finished, and nothing is preempted
    kw = {"gpu_memory_utilization": 0.23}
    plain = simulate_trace([1000, 1000], [8000, 8000], scheduler={"kind": "orca"}, **kw)
    kept = simulate_trace([1000, 1000], [8000, 8000], scheduler={"kind": "orca", "no_evict": True}, **kw)
    assert plain.preemptions.tolist() == [0, 1]
    assert kept.preemptions.tolist() == [0, 0]
    assert plain.first_scheduled_s[1] == 0.0
    assert kept.first_scheduled_s[1] == kept.completion_s[0] > 0
    assert [t.size for t in kept.token_times] == [8000, 8000]
