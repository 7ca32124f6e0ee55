"""Speculative decoding: closed-form tokens per step, speedup shrinking with batch, draft memory, determinism,
token accounting, bad input."""

from __future__ import annotations

import numpy as np
import pytest
from pydantic import ValidationError

from roofsim.hardware_specs.catalog import load_hardware
from roofsim.hardware_specs.errors import InputError
from roofsim.model.cost import CostModel
from roofsim.model.loader import load_model
from roofsim.model.techniques import SpeculativeConfig, SpeculativeCoster, closed_form_tokens, expected_tokens
from roofsim.simulator.config import SimConfig
from roofsim.simulator.run import build_replicas, simulate


def _cfg(spec: dict | None, n: int = 60, out: tuple[int, int] = (1500, 2500), model: str = "llama-3.1-8b",
         rate: float = 2.0, **rep: object) -> SimConfig:
    r = {"model": model, "hardware": "h100-sxm", **rep}
    if spec is not None:
        r["speculative"] = spec
    return SimConfig.model_validate({
        "workload": {"kind": "synthetic", "arrival": {"kind": "poisson", "rate_per_s": rate},
                     "input": {"kind": "uniform", "low": 50, "high": 500},
                     "output": {"kind": "uniform", "low": out[0], "high": out[1]}, "num_requests": n},
        "replicas": [r], "seed": 5})


@pytest.mark.parametrize(("a", "k"), [(0.6, 3), (0.8, 5)])
def test_mean_tokens_per_step_matches_leviathan_closed_form(a: float, k: int) -> None:
    r = simulate(_cfg({"drafter": {"kind": "ngram"}, "acceptance": {"kind": "iid", "rate": a}, "k": k}))
    s = r.summary
    want = (1 - a ** (k + 1)) / (1 - a)  # Leviathan et al. 2023, eq. (1)
    assert s["spec_decode_iterations"] > 1000
    assert s["spec_tokens_per_step"] == pytest.approx(want, rel=0.01)
    assert closed_form_tokens(a, k) == pytest.approx(want)
    # every request got exactly its output tokens, at non-decreasing times
    assert all(t.size == o for t, o in zip(r.token_times, r.output_tokens, strict=True))
    assert all(np.all(np.diff(t) >= 0) for t in r.token_times)


def test_speculation_cuts_tpot_and_is_deterministic() -> None:
    base = simulate(_cfg(None, n=30))
    spec = {"drafter": {"kind": "eagle"}, "acceptance": {"kind": "beta", "alpha": 8, "beta": 2}, "k": 4}
    a, b = simulate(_cfg(spec, n=30)), simulate(_cfg(spec, n=30))
    np.testing.assert_array_equal(a.completion_s, b.completion_s)
    np.testing.assert_array_equal(a.itl_s, b.itl_s)
    ratio = base.summary["tpot_s"]["mean"] / a.summary["tpot_s"]["mean"]
    assert 1.5 < ratio < 4.0  # E = 3.4 tokens/step at a=0.8, k=4, minus EAGLE draft and verify cost
    # Beta(8, 2) has mean 0.8; the pooled MLE leans high (requests with high rates make more accepted draws)
    assert 0.8 < a.summary["spec_alpha_estimate"] < 0.86


def test_speedup_shrinks_as_batch_grows() -> None:
    hw, m = load_hardware("h100-sxm"), load_model("llama-3.1-8b")
    spec = SpeculativeConfig(drafter={"kind": "eagle"}, acceptance={"kind": "iid", "rate": 0.8}, k=4)
    sc = SpeculativeCoster(CostModel(m, hw), spec)
    sp = [sc.speedup(b, 128) for b in (1, 16, 64, 256, 1024)]
    assert sp[0] > 1.6
    assert all(x > y for x, y in zip(sp, sp[1:], strict=False))  # verification turns compute-bound
    assert sp[-1] < 1.0  # at large batch and short context speculation costs more than it saves
    # long contexts keep decode memory-bound on KV reads, which verification shares: the gain survives longer
    assert sc.speedup(256, 4096) > sc.speedup(256, 128) > 0


def test_draft_model_memory_reduces_kv_capacity() -> None:
    plain = build_replicas(_cfg(None, model="llama-3.1-70b", tp=4))[0]
    spec = {"drafter": {"kind": "draft_model", "model": "llama-3.1-8b"}, "k": 4}
    sr = build_replicas(_cfg(spec, model="llama-3.1-70b", tp=4))[0]
    d = load_model("llama-3.1-8b")
    # the drafter adds its weights (tp=4 shards) and its own KV per token
    assert sr.plan.kv_bytes_per_token > plain.plan.kv_bytes_per_token
    assert sr.pool.total < plain.pool.total
    kv_ratio = (plain.plan.kv_bytes_per_token + 2 * d.num_kv_heads // 4 * d.head_dim * 2 * d.num_layers) \
        / plain.plan.kv_bytes_per_token
    assert plain.pool.total / sr.pool.total > kv_ratio  # and weights take memory on top


def test_medusa_tree_verifies_more_tokens_and_accepts_more() -> None:
    hw, m = load_hardware("h100-sxm"), load_model("llama-3.1-8b")
    chain = SpeculativeConfig(drafter={"kind": "medusa"}, acceptance={"kind": "positional",
                              "rates": [0.6, 0.5, 0.4]}, k=3)
    tree = chain.model_copy(update={"tree_width": 3})
    assert tree.verify_tokens(3) == 10 and chain.verify_tokens(3) == 4
    assert expected_tokens(tree.position_rates(3)) > expected_tokens(chain.position_rates(3))
    # 1 + 0.6 + 0.6*0.5 + 0.6*0.5*0.4 = 2.02
    assert expected_tokens(chain.position_rates(3)) == pytest.approx(2.02)
    assert SpeculativeCoster(CostModel(m, hw), tree).extra_weight_bytes_per_gpu() == pytest.approx(
        3 * (4096 ** 2 + 4096 * 128256) * 2)


def test_adaptive_k_shrinks_under_low_acceptance() -> None:
    spec = {"drafter": {"kind": "eagle"}, "acceptance": {"kind": "iid", "rate": 0.2}, "k": 4,
            "adaptive_k": True, "k_min": 1, "k_max": 6}
    s = simulate(_cfg(spec, n=20, out=(300, 400))).summary
    assert s["spec_mean_k"] < 2.5


@pytest.mark.parametrize(("spec", "match"), [
    ({"drafter": {"kind": "ngram"}, "acceptance": {"kind": "iid", "rate": 1.2}}, "less than or equal to 1"),
    ({"drafter": {"kind": "ngram"}, "acceptance": {"kind": "positional", "rates": [0.5, -0.1]}, "k": 2},
     "greater than or equal to 0"),
    ({"drafter": {"kind": "ngram"}, "acceptance": {"kind": "positional", "rates": [0.5]}, "k": 3},
     "needs one per draft position"),
    ({"drafter": {"kind": "lookahead"}}, "draft_model.*ngram"),
])
def test_bad_speculative_config(spec: dict, match: str) -> None:
    with pytest.raises((InputError, ValidationError), match=match):
        SimConfig.from_dict(_cfg(None).model_dump(mode="json") | {
            "replicas": [{"model": "llama-3.1-8b", "hardware": "h100-sxm", "speculative": spec}]})


def test_draft_model_with_other_vocabulary_is_rejected() -> None:
    with pytest.raises(ValueError, match=r"vocab_size=32000.*128256"):
        build_replicas(_cfg({"drafter": {"kind": "draft_model", "model": "llama-2-7b"}}))
    with pytest.raises(ValueError, match=r"draft_layers=32 must be < .*num_layers=32"):
        build_replicas(_cfg({"drafter": {"kind": "self", "draft_layers": 32}}))


def test_speculative_and_early_exit_toml_round_trip(tmp_path) -> None:
    cfg = SimConfig.model_validate({"workload": {"kind": "named", "name": "conversation"}, "replicas": [
        {"model": "llama-3.1-8b", "hardware": "h100-sxm", "speculative": {
            "drafter": {"kind": "medusa"}, "acceptance": {"kind": "positional", "rates": [0.6, 0.5, 0.4, 0.3]},
            "k": 4, "tree_width": 2}},
        {"model": "llama-3.1-8b", "hardware": "h100-sxm", "early_exit": {
            "kind": "per_token", "distribution": {"kind": "histogram", "layers": [8, 32], "weights": [1, 1]}}}]})
    p = tmp_path / "run.toml"
    p.write_text(cfg.to_toml())
    assert SimConfig.from_toml(p) == cfg
    with pytest.raises(InputError, match="cannot both be set"):
        SimConfig.from_dict(cfg.model_dump(mode="json") | {"replicas": [
            cfg.replicas[0].model_dump(mode="json") | {"early_exit": cfg.replicas[1].early_exit.model_dump()}]})


@pytest.mark.parametrize("model", ["llama-3.1-8b", "gpt-oss-20b"])  # dense; sliding-window layers
def test_draft_pass_sums_are_bit_identical_to_the_per_shape_loops(model: str) -> None:
    from roofsim.model.batch import BatchShape
    from roofsim.model.techniques import LayerCoster

    cost = CostModel(load_model(model), load_hardware("h100-sxm"))
    lc = LayerCoster(cost)
    dec = BatchShape(decode_seqs=7, decode_tokens=7, decode_ctx_tokens=7 * 900)
    grown = [SpeculativeCoster._grow(dec, i) for i in range(5)]
    s = j = 0.0
    for g in grown[1:]:
        a, b = cost.step_seconds_energy(g)
        s, j = s + a, j + b
    assert cost.decode_passes(7, 7, dec.decode_ctx_tokens, dec.decode_ctx_tokens_win, 5, first=1) == (s, j)
    for layers, extra in ((3, (0.0, 0.0)), (cost.model.num_layers, (1e-5, 2e-3))):
        s = j = 0.0
        for g in grown:
            a, b = lc.partial_step(g, layers)
            s, j = s + a + extra[0], j + b + extra[1]
        assert lc.decode_passes(dec, layers, 5, extra=extra) == (s, j)
