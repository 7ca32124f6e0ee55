"""validation.replay: send times replayed exactly, vLLM's Poisson draw regenerated when absent (and said so),
wrong-format logs rejected cleanly, per-step comparison, and a real vLLM log within a measured bound."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from roofsim.hardware_specs.catalog import load_hardware
from roofsim.hardware_specs.errors import InputError
from roofsim.model.cost import Calibration, CostModel
from roofsim.model.loader import load_model
from roofsim.model.spec import ParallelSpec, QuantSpec
from roofsim.validation.logs import regenerate_poisson_arrivals
from roofsim.validation.replay import (
    compare_steps,
    make_scheduler_config,
    prompt_hash_ids,
    replay_log,
    step_shape,
)

MODEL, HW = "meta-llama/Llama-3.1-8B-Instruct", "h100-sxm"


def vllm_log(path: Path, send: list[float] | None, **extra) -> Path:
    n = 4
    d = {"request_rate": 2.0, "duration": 3.0, "input_lens": [100, 200, 50, 300], "output_lens": [5, 3, 8, 2],
         "ttfts": [0.05, 0.04, 0.06, 0.05], "itls": [[0.01] * 4, [0.01] * 2, [0.01] * 7, [0.01]],
         "errors": [""] * n, **extra}
    if send is not None:
        d["send_times"] = send
    path.write_text(json.dumps(d))
    return path


def test_send_times_replayed_exactly(tmp_path: Path) -> None:
    send = [0.0, 1.25, 0.5, 2.0]  # out of order on purpose: request 2 was sent before request 1
    res = replay_log(vllm_log(tmp_path / "l.json", send), MODEL, HW, calibration=Calibration())
    assert res.sim.arrival_s.tolist() == [0.0, 0.5, 1.25, 2.0]
    assert res.order.tolist() == [0, 2, 1, 3]
    assert res.sim.input_tokens.tolist() == [100, 50, 200, 300]
    assert res.sim.output_tokens.tolist() == [5, 8, 3, 2]
    assert "arrivals: the log's own send times" in res.notes
    c = res.comparison
    assert c["ttft_s"]["mean"]["measured"] == pytest.approx(0.05)
    assert c["tpot_s"]["mean"]["measured"] == pytest.approx(0.01)
    assert c["e2e_s"]["p50"]["predicted"] > 0 and np.isfinite(c["itl_s"]["p99"]["err_pct"])
    assert res.totals["duration_s"]["measured"] == 3.0


def test_regenerated_arrivals_when_no_send_times(tmp_path: Path) -> None:
    res = replay_log(vllm_log(tmp_path / "l.json", None, seed=7), MODEL, HW, calibration=Calibration())
    assert res.sim.arrival_s.tolist() == regenerate_poisson_arrivals(4, 2.0, 7).tolist()
    assert any(n.startswith("ASSUMPTION") and "RandomState(7)" in n for n in res.notes)


def test_wrong_format_is_a_clean_error(tmp_path: Path) -> None:
    p = tmp_path / "g.json"
    p.write_text(json.dumps({"benchmarks": []}))
    with pytest.raises(InputError, match="not a vLLM benchmark_serving JSON"):
        replay_log(p, MODEL, HW, log_format="vllm")
    p.write_text(json.dumps({"ttfts": [0.1], "input_lens": [1], "output_lens": [1], "itls": [[]]}))
    with pytest.raises(InputError, match="neither send times nor a request rate"):
        replay_log(p, MODEL, HW)
    with pytest.raises(InputError, match="unknown scheduler"):
        make_scheduler_config("fifo", HW)


def test_per_step_comparison(tmp_path: Path) -> None:
    steps = [{"kind": "prefill", "batch_size": 2, "tokens": 200, "ctx_sum": 200, "seconds": 0.02},
             {"kind": "decode", "batch_size": 2, "tokens": 2, "ctx_sum": 210, "seconds": 0.010},
             {"kind": "decode", "batch_size": 2, "tokens": 2, "ctx_sum": 212, "seconds": 0.012}]
    res = replay_log(vllm_log(tmp_path / "l.json", [0, 0, 0, 0], steps=steps), MODEL, HW,
                     calibration=Calibration())
    cost = CostModel(load_model(MODEL), load_hardware(HW), QuantSpec(), ParallelSpec(), Calibration())
    dec = [s for s in res.steps if s["kind"] == "decode"]
    assert len(res.steps) == 2 and dec[0]["n"] == 2 and dec[0]["measured_s"] == pytest.approx(0.011)
    expect = (cost.step(step_shape("decode", 2, 2, 210)).seconds + cost.step(step_shape("decode", 2, 2, 212)).seconds) / 2
    assert dec[0]["predicted_s"] == pytest.approx(expect)
    shape = step_shape("prefill", 2, 200, 200)
    assert (shape.prefill_seqs, shape.prefill_attn_pairs) == (2, 2 * 100 * 101 / 2)
    assert compare_steps(steps[:1], cost)[0]["predicted_s"] == pytest.approx(cost.step(shape).seconds)


# Bounds measured on this log (docs/validation-e2e.md) with the shipped A100 vLLM profile, plus margin.
def test_real_vllm_log_rate_4(shared_data: Path) -> None:
    from roofsim.validation.profiles import profile_for  # noqa: PLC0415

    log = (shared_data / "serving/vllm_llm-k8s/results_serving_meta-llama-Llama-3.3-70B-Instruct/01_tp8_pp1/"
           "serving_meta-llama-Llama-3.3-70B-Instruct_tp8_pp1_sharegpt_qps_04.json")
    res = replay_log(log, "meta-llama/Llama-3.3-70B-Instruct", "a100-sxm-40gb", 8,
                     calibration=profile_for("a100-sxm-40gb", "vllm"))
    c = res.comparison
    assert c["tpot_s"]["mean"]["measured"] == pytest.approx(0.02708, rel=1e-3)  # vLLM's own mean_tpot_ms
    assert abs(c["tpot_s"]["mean"]["err_pct"]) < 25
    assert abs(c["ttft_s"]["mean"]["err_pct"]) < 40
    assert abs(res.totals["duration_s"]["err_pct"]) < 10


def test_prompts_cached_uses_a_warm_prefix_cache(tmp_path: Path) -> None:
    log = vllm_log(tmp_path / "l.json", [0.0, 0.5, 1.0, 1.5])
    cold = replay_log(log, MODEL, HW, calibration=Calibration())
    hot = replay_log(log, MODEL, HW, calibration=Calibration(), prompts_cached=True)
    s = hot.sim.summary
    # vLLM V1 caches full 16-token blocks only: 96 + 48 + 192 + 288 of 650 tokens hit, the partial last
    # blocks (4, 2, 8 and 12 tokens) are recomputed
    assert s["prefix_cached_tokens"] == 624
    assert s["prefix_cache_hit_rate"] == pytest.approx(624 / 650)
    assert (hot.sim.ttft_s < cold.sim.ttft_s).all()
    # cached prompts keep their KV: same input lengths, same peak KV blocks
    assert hot.sim.input_tokens.tolist() == cold.sim.input_tokens.tolist()
    assert hot.sim.series.kv_blocks_used.max() == cold.sim.series.kv_blocks_used.max()
    # prefix caching on but cold: distinct prompts share nothing
    on = replay_log(log, MODEL, HW, calibration=Calibration(), prefix_caching=True)
    assert on.sim.summary["prefix_cached_tokens"] == 0
    with pytest.raises(InputError, match="prefix_caching"):
        replay_log(log, MODEL, HW, prompts_cached=True, prefix_caching=False)


def test_prompt_hash_ids_cover_full_blocks_and_drop_a_whole_last_block() -> None:
    ids = prompt_hash_ids(np.array([1, 16, 17, 32, 33]), np.array([0, 1, 2, 3, 4]), 16)
    # 16- and 32-token prompts lose their last (full) block: vLLM V1 recomputes it for the last token's logits
    assert [len(i) for i in ids] == [0, 0, 1, 1, 2]
    assert ids[3] == (3 * 2**32,)


def test_frontend_cost_delays_a_burst(tmp_path: Path) -> None:
    log = vllm_log(tmp_path / "l.json", [0.0, 0.0, 0.0, 0.0])
    base = replay_log(log, MODEL, HW, calibration=Calibration())
    fe = replay_log(log, MODEL, HW, calibration=Calibration(), frontend_s_per_request=0.005)
    assert fe.sim.first_scheduled_s.min() == pytest.approx(0.005)
    assert fe.sim.first_scheduled_s.max() >= 0.020 - 1e-12
    assert fe.comparison["ttft_s"]["mean"]["predicted"] > base.comparison["ttft_s"]["mean"]["predicted"]
