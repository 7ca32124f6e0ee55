"""The one weight-dtype -> QuantSpec mapping (model.quant.quant_for) and the engine defaults
(simulator.engines) that the CLI, the log replay and the benchmark-row replay share."""

from __future__ import annotations

import pytest

from roofsim.hardware_specs.catalog import load_hardware
from roofsim.model.quant import quant_for
from roofsim.simulator.config import SarathiScheduler, VLLMScheduler
from roofsim.simulator.engines import vllm_v1_defaults


@pytest.mark.parametrize(("wd", "kv", "want"), [
    ("bf16", "auto", ("bf16", "bf16", "bf16", 128, 2.0)),
    ("fp16", "auto", ("fp16", "fp16", "fp16", 128, 2.0)),
    ("fp32", "auto", ("fp32", "fp32", "fp32", 128, 2.0)),
    ("fp8", "auto", ("fp8", "fp8", "bf16", 128, 2.0)),  # W8A8 fp8, 16-bit KV unless asked
    ("fp8", "fp8", ("fp8", "fp8", "fp8", 128, 2.0)),
    ("int8", "auto", ("int8", "bf16", "bf16", 128, 2.0)),  # weight-only
    ("int4", "int4", ("int4", "bf16", "int4", 128, 2.0)),
    ("fp4", "auto", ("fp4", "fp4", "bf16", 16, 1.0)),  # NVFP4: blocks of 16 with 8-bit scales
])
def test_quant_for_maps_weight_dtypes(wd: str, kv: str, want: tuple) -> None:
    q = quant_for(wd, kv)
    assert (q.weight_dtype, q.activation_dtype, q.kv_dtype, q.group_size, q.scale_bytes) == want


def test_quant_for_auto_follows_the_hardware_and_explicit_settings_win() -> None:
    assert quant_for("auto", hardware=load_hardware("cpu-generic")).kv_dtype == "fp32"  # no bf16: fp32 throughout
    assert quant_for("auto", hardware=load_hardware("h100-sxm")).weight_dtype == "bf16"
    q = quant_for("int4", activation_dtype="fp16", group_size=64)
    assert (q.activation_dtype, q.kv_dtype, q.group_size) == ("fp16", "fp16", 64)
    with pytest.raises(ValueError, match="weight_dtype='auto' needs the hardware"):
        quant_for("auto")
    with pytest.raises(ValueError, match="weight_dtype='int3' is not one of fp32, bf16, fp16, fp8, int8, int4, fp4"):
        quant_for("int3")


@pytest.mark.parametrize(("hw", "want"), [("h100-sxm", (8192, 1024)), ("a100-sxm-80gb", (2048, 256)),
                                          ("l40s", (2048, 256))])
def test_vllm_v1_defaults_big_gpu_rule(hw: str, want: tuple[int, int]) -> None:
    """>= 70 GiB and not A100 -> 8192/1024 (vLLM arg_utils `_set_default_args_v1`); an A100-80GB and a 48 GB
    L40S get 2048/256."""
    assert vllm_v1_defaults(hw) == want
    assert vllm_v1_defaults(load_hardware(hw)) == want


def test_scheduler_defaults_are_the_engine_defaults() -> None:
    assert (VLLMScheduler().max_num_seqs, VLLMScheduler().max_batched_tokens) == (256, 8192)
    assert SarathiScheduler().chunk_size == 512
