"""No request starves while capacity exists: for every scheduler, prompts shorter than, equal to and longer than the
iteration token budget, mixed with short ones, under KV pressure and without, every request either completes or is
rejected at routing with a reason that is true (it can never fit), and nothing is left waiting at the end."""

from __future__ import annotations

from typing import Any

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from roofsim.simulator.config import SCHEDULER_KINDS, SimConfig
from roofsim.simulator.run import build_replicas
from tests.conftest import _simulate_trace

CHUNKING = ("sarathi",)  # schedulers that split a prompt across iterations


def _pool_tokens(util: float, sched: dict[str, Any]) -> tuple[int, int]:
    """(KV blocks the admission may fill, block size) of the replica these tests build."""
    cfg = SimConfig.model_validate({
        "workload": {"kind": "named", "name": "chat-short", "num_requests": 1},
        "replicas": [{"model": "llama-3.1-8b", "hardware": "h100-sxm", "scheduler": sched,
                      "gpu_memory_utilization": util}]})
    pool = build_replicas(cfg)[0].pool
    return pool.total - int(pool.total * sched.get("watermark_fraction", 0.01)), 16


@settings(max_examples=60, deadline=None)
@given(kind=st.sampled_from(SCHEDULER_KINDS), budget=st.sampled_from([256, 1024]),
       util=st.sampled_from([0.22, 0.9]), data=st.data())
def test_every_request_completes_or_is_rejected_for_a_true_reason(kind: str, budget: int, util: float,
                                                                   data: st.DataObject) -> None:
    n = data.draw(st.integers(2, 10), label="requests")
    # 15,500-16,000 tokens overflow the 894-932-block pool at utilisation 0.22 (14,304-14,912 tokens)
    edge = st.sampled_from([budget - 1, budget, budget + 1, 2 * budget, 12 * budget, 15_500])
    inputs = data.draw(st.lists(st.one_of(edge, st.integers(1, 3 * budget)), min_size=n, max_size=n), label="in")
    outputs = data.draw(st.lists(st.integers(1, 400), min_size=n, max_size=n), label="out")
    gaps = data.draw(st.lists(st.floats(0.0, 0.5), min_size=n, max_size=n), label="gaps")
    sched: dict[str, Any] = {"kind": kind, "max_batched_tokens": budget, "max_num_seqs": 4}
    if kind == "sarathi":
        sched["chunk_size"] = budget
    r = _simulate_trace(inputs, outputs, list(np.cumsum(gaps)), scheduler=sched, gpu_memory_utilization=util)
    blocks, block = _pool_tokens(util, sched)
    for i, (inp, out) in enumerate(zip(inputs, outputs, strict=True)):
        never_fits = -(-(inp + out) // block) > blocks or (kind not in CHUNKING and inp > budget)
        if r.rejected[i]:
            assert never_fits, f"request {i} ({inp}+{out} tokens) rejected though it fits: {r.reject_reasons[i]}"
            assert r.reject_reasons[i]
        else:
            assert not never_fits, f"request {i} ({inp}+{out} tokens) should have been rejected ({kind})"
            assert r.completed[i], f"request {i} ({inp}+{out} tokens) neither completed nor rejected ({kind})"
    assert r.summary["requests_unfinished"] == 0
