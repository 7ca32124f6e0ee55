"""The Python API runs a checkpoint in its own format unless told otherwise (roofsim.estimate, quant_of, simulate)."""

from __future__ import annotations

import roofsim
from roofsim.simulator.run import group_quant


def test_estimate_runs_the_checkpoint_format_and_a_dtype_overrides_it() -> None:
    e = roofsim.estimate("Qwen/Qwen3-32B-FP8", "h100-sxm")
    assert (e.quant.weight_dtype, e.quant.activation_dtype, e.quant.group_size) == ("fp8", "fp8", 128 * 128)
    spec = roofsim.load_model("Qwen/Qwen3-32B-FP8")  # a ModelSpec of a preset finds its checkpoint too
    assert roofsim.estimate(spec, "h100-sxm").quant == e.quant
    assert roofsim.estimate("Qwen/Qwen3-32B-FP8", "h100-sxm", quant="bf16").quant == roofsim.quant_for("bf16")
    # an unquantised checkpoint: the bf16 estimate, bit for bit
    assert roofsim.estimate("llama-3.1-8b", "h100-sxm", batch=4).tpot_s == roofsim.estimate(
        "llama-3.1-8b", "h100-sxm", batch=4, quant="bf16").tpot_s


def test_quant_of_returns_the_notes() -> None:
    q, notes = roofsim.quant_of("Qwen/Qwen3-32B-FP8", "a100-sxm-80gb", kv_dtype="fp8")
    assert (q.weight_dtype, q.activation_dtype, q.kv_dtype) == ("fp8", "bf16", "fp8")
    assert notes[0].startswith("FP8 block 128x128 from the checkpoint")
    assert "--kv-dtype fp8 overrides the checkpoint's bf16" in notes
    assert any("no fp8 tensor cores" in n for n in notes)
    assert roofsim.quant_of("llama-3.1-8b") == (roofsim.QuantSpec(), [])


def test_simulate_resolves_a_group_without_quant_from_its_checkpoint() -> None:
    cfg = roofsim.load_config({"workload": {"kind": "named", "name": "conversation", "num_requests": 20},
                               "replicas": [{"model": "Qwen/Qwen3-32B-FP8", "hardware": "h100-sxm"}]})
    assert cfg.replicas[0].quant is None
    q, notes = group_quant(cfg.replicas[0])
    assert q.weight_dtype == "fp8" and notes
    assert roofsim.simulate(cfg).requests_completed == 20
