"""The decode-strategy contract (simulator/strategy.py): plain decoding is the cost model's iterations summed, a
strategy's cost and per-iteration token gain drive the replica exactly, and every strategy kind conforms."""

from __future__ import annotations

import numpy as np
import pytest

from roofsim.hardware_specs.catalog import load_hardware
from roofsim.model.batch import BatchShape, causal_pairs
from roofsim.model.cost import CostModel
from roofsim.model.loader import load_model
from roofsim.simulator.config import SimConfig
from roofsim.simulator.replica import Replica
from roofsim.simulator.run import STRATEGY_PARTS, build_replicas, simulate, strategy_kind
from roofsim.simulator.strategy import DecodeProgress, DecodeStrategy, PlainDecoding, SlotProgress

IN, OUT, N = 100, 41, 8  # prompt and output tokens of each request, requests (all at t=0)


def _cfg(n: int = N, **rep: object) -> SimConfig:
    return SimConfig.model_validate({
        "workload": {"kind": "synthetic", "arrival": {"kind": "offline"},
                     "input": {"kind": "fixed", "tokens": IN}, "output": {"kind": "fixed", "tokens": OUT},
                     "num_requests": n},
        "replicas": [{"model": "llama-3.1-8b", "hardware": "h100-sxm", **rep}], "seed": 1})


class DoubleGain:
    """A fake technique: every decoding sequence gains 2 tokens per iteration (1 when one is left), costed as
    a plain iteration; it keeps the replicas it served to check their KV pools afterwards."""

    def __init__(self, cost: CostModel) -> None:
        self.cost = cost
        self.pp = cost.parallel.pp
        self.replicas: list[Replica] = []

    def progress(self, rep: Replica) -> SlotProgress:
        self.replicas.append(rep)
        return SlotProgress(rep, self)

    def step(self, shape: BatchShape) -> tuple[float, float]:
        return self.cost.step_seconds_energy(shape)

    def counters(self) -> dict[str, float]:
        return {}

    def lookahead_tokens(self) -> int:
        return 2

    def draw_rate(self) -> float:
        return 0.0

    def gains(self, rates: np.ndarray, remaining: np.ndarray) -> np.ndarray:
        return np.minimum(2, remaining)


class DoubleCost(PlainDecoding):
    """Plain decoding whose every iteration takes twice as long."""

    def step(self, shape: BatchShape) -> tuple[float, float]:
        s, j = self.cost.step_seconds_energy(shape)
        return 2.0 * s, j


def test_plain_strategy_is_the_cost_models_iterations_summed() -> None:
    r = simulate(_cfg(n=1))
    cost = CostModel(load_model("llama-3.1-8b"), load_hardware("h100-sxm"))
    t = cost.step_seconds_energy(BatchShape(prefill_tokens=IN, prefill_seqs=1,
                                            prefill_attn_pairs=causal_pairs(IN, 0)))[0]
    times = [t]
    for j in range(1, OUT):  # decode step j reads the prompt's KV and j tokens (the one it writes included)
        t += cost.step_seconds_energy(BatchShape(decode_seqs=1, decode_tokens=1, decode_ctx_tokens=IN + j))[0]
        times.append(t)
    assert r.summary["iterations"] == OUT
    np.testing.assert_array_equal(r.token_times[0], np.array(times))
    assert r.completion_s[0] == t


def test_two_tokens_per_iteration_halve_the_decode_iterations() -> None:
    plain = simulate(_cfg())
    fakes: list[DoubleGain] = []

    def make(cost: CostModel) -> DoubleGain:
        fakes.append(DoubleGain(cost))
        return fakes[-1]

    fast = simulate(_cfg(), strategy_factory=make)
    # one prefill iteration for all N prompts, then OUT - 1 = 40 decode tokens: 40 iterations vs 20
    assert plain.summary["iterations"] == 1 + (OUT - 1)
    assert fast.summary["iterations"] == 1 + (OUT - 1) // 2
    np.testing.assert_array_equal(fast.series.decode_seqs, [0] + [N] * ((OUT - 1) // 2))
    # every request got its tokens, two per decode iteration at the same time
    for t in fast.token_times:
        assert t.size == OUT
        np.testing.assert_array_equal(t[1::2], t[2::2])
    # the lookahead blocks were rolled back and every block returned
    assert [rep.pool.used for f in fakes for rep in f.replicas] == [0]


def test_step_cost_of_the_strategy_sets_the_clock() -> None:
    base, slow = simulate(_cfg()), simulate(_cfg(), strategy_factory=DoubleCost)
    assert slow.summary["iterations"] == base.summary["iterations"]
    np.testing.assert_array_equal(slow.completion_s, 2.0 * base.completion_s)  # x2 is exact in binary floats


@pytest.mark.parametrize(("tech", "kind"), [
    ({}, "plain"),
    ({"speculative": {"drafter": {"kind": "eagle"}, "acceptance": {"kind": "iid", "rate": 0.7}}}, "speculative"),
    ({"early_exit": {"kind": "per_token", "distribution": {"kind": "histogram", "layers": [16, 32],
                                                           "weights": [1.0, 1.0]}}}, "early_exit"),
])
def test_every_strategy_kind_conforms_and_replica_has_no_subclass(tech: dict, kind: str) -> None:
    cfg = _cfg(**tech)
    assert strategy_kind(cfg.replicas[0]) == kind
    assert kind in STRATEGY_PARTS
    rep = build_replicas(cfg)[0]
    assert type(rep) is Replica and not Replica.__subclasses__()
    assert isinstance(rep.strategy, DecodeStrategy)
    assert isinstance(rep.progress, DecodeProgress)
    r = simulate(cfg)
    assert r.summary["requests_completed"] == N
    assert all(t.size == OUT for t in r.token_times)
