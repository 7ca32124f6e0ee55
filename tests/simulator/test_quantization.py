"""Quantization end to end: KV/weight formats raise KV capacity in the planner, hence larger batches and fewer
preemptions in the simulator; weight-only int4 speeds memory-bound decode; missing hardware formats fail."""

from __future__ import annotations

import pytest

from roofsim.hardware_specs.catalog import load_hardware
from roofsim.model.batch import BatchShape
from roofsim.model.cost import CostModel
from roofsim.model.loader import load_model
from roofsim.simulator.config import SimConfig
from roofsim.simulator.run import build_replicas, simulate


def _cfg(quant: dict, hardware: str = "h100-sxm", gmu: float = 0.35) -> SimConfig:
    return SimConfig.model_validate({
        "workload": {"kind": "synthetic", "arrival": {"kind": "poisson", "rate_per_s": 40.0},
                     "input": {"kind": "uniform", "low": 1000, "high": 3000},
                     "output": {"kind": "uniform", "low": 200, "high": 600}, "num_requests": 150},
        "replicas": [{"model": "llama-3.1-8b", "hardware": hardware, "quant": quant,
                      "gpu_memory_utilization": gmu}], "seed": 2})


def test_fp8_kv_doubles_capacity_and_cuts_preemptions() -> None:
    # gpu_memory_utilization 0.26: a 2,061-block bf16 pool, full enough that preemptions are many (17 vs 8)
    bf = build_replicas(_cfg({}, gmu=0.26))[0].pool.total
    f8 = build_replicas(_cfg({"kv_dtype": "fp8"}, gmu=0.26))[0].pool.total
    assert f8 == pytest.approx(2 * bf, rel=0.01)
    a, b = simulate(_cfg({}, gmu=0.26)).summary, simulate(_cfg({"kv_dtype": "fp8"}, gmu=0.26)).summary
    assert a["preemptions"] > 0
    assert b["preemptions"] < a["preemptions"]
    assert b["mean_batch_size"] > a["mean_batch_size"]
    assert b["output_tokens_per_s"] > a["output_tokens_per_s"]


def test_int4_weights_free_memory_and_speed_up_decode() -> None:
    bf = build_replicas(_cfg({}))[0].pool.total
    w4 = build_replicas(_cfg({"weight_dtype": "int4"}))[0].pool.total
    assert w4 > 1.5 * bf  # ~12 GB of bf16 weights shrink to ~4 GB, out of a 28 GB budget
    hw, m = load_hardware("h100-sxm"), load_model("llama-3.1-8b")
    from roofsim.model.spec import QuantSpec  # noqa: PLC0415

    one = BatchShape(decode_seqs=1, decode_tokens=1, decode_ctx_tokens=512)
    t16 = CostModel(m, hw).step_seconds(one)
    t4 = CostModel(m, hw, QuantSpec(weight_dtype="int4")).step_seconds(one)
    assert 1.8 < t16 / t4 < 4.0  # weight bytes / ~3.9, minus the fixed overheads
    big = BatchShape(prefill_tokens=8192, prefill_seqs=4, prefill_attn_pairs=4 * 2048 * 2049 / 2)
    # weight-only int4 dequantizes to bf16: a compute-bound prefill gains nothing (slightly slower)
    assert CostModel(m, hw, QuantSpec(weight_dtype="int4")).step_seconds(big) >= 0.98 * CostModel(m, hw).step_seconds(big)


def test_missing_hardware_format_is_a_clear_error() -> None:
    with pytest.raises(ValueError, match="'a100-sxm-80gb' has no fp8 support"):
        build_replicas(_cfg({"weight_dtype": "fp8", "activation_dtype": "fp8"}, hardware="a100-sxm-80gb"))
    with pytest.raises(ValueError, match="no fp4 support"):
        build_replicas(_cfg({"weight_dtype": "fp4", "activation_dtype": "fp4"}, hardware="h100-sxm"))
