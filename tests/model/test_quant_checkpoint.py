"""Checkpoint quantisation (config.json quantization_config, hf_quant_config.json) mapped to QuantSpec, the
flags overriding it, and low-bit weight-only formats on GPUs without those tensor cores (gpt-oss on H100)."""

from __future__ import annotations

from pathlib import Path

import pytest

from roofsim.hardware_specs.catalog import load_hardware
from roofsim.hardware_specs.errors import InputError
from roofsim.model.batch import BatchShape
from roofsim.model.checkpoint_quant import quant_from_configs
from roofsim.model.cost import Calibration, CostModel
from roofsim.model.estimate import estimate_deployment
from roofsim.model.loader import load_checkpoint_quant, load_model
from roofsim.model.quant import quant_for, resolve_quant
from roofsim.model.spec import ParallelSpec, QuantSpec

H100 = load_hardware("h100-sxm")
A100 = load_hardware("a100-sxm-80gb")


def _spec(w: str, a: str, kv: str, group: int, scale: float) -> QuantSpec:
    return QuantSpec(weight_dtype=w, activation_dtype=a, kv_dtype=kv, group_size=group, scale_bytes=scale)


# One checkpoint of each scheme in the bundled presets, and the QuantSpec read off its files by hand:
# DeepSeek-R1 config.json: quant_method fp8, weight_block_size [128, 128], fp32 scale_inv per block, dynamic acts.
# DeepSeek-V3.2: the same with scale_fmt ue8m0 (1-byte scales). gpt-oss: quant_method mxfp4 (e2m1 + e8m0 per 32).
# nvidia/Llama-3.1-70B-Instruct-FP8 hf_quant_config.json: quant_algo FP8 (per-tensor), kv_cache_quant_algo FP8.
# nvidia/Qwen3-235B-A22B-NVFP4: quant_algo NVFP4, group_size 16, kv FP8.
# nvidia/Qwen3.6-27B-NVFP4: MIXED_PRECISION, MLP layers W4A16_NVFP4 (weight-only), attention FP8, kv FP8.
CASES = [
    ("deepseek-ai/DeepSeek-R1", "FP8 block 128x128", _spec("fp8", "fp8", "bf16", 16384, 4.0)),
    ("deepseek-ai/DeepSeek-V3.2", "FP8 block 128x128 (UE8M0 scales)", _spec("fp8", "fp8", "bf16", 16384, 1.0)),
    ("openai/gpt-oss-120b", "MXFP4", _spec("fp4", "bf16", "bf16", 32, 1.0)),
    ("nvidia/Llama-3.1-70B-Instruct-FP8", "ModelOpt FP8", _spec("fp8", "fp8", "fp8", 0, 4.0)),
    ("nvidia/Qwen3-235B-A22B-NVFP4", "ModelOpt NVFP4", _spec("fp4", "fp4", "fp8", 16, 1.0)),
    ("nvidia/Qwen3.6-27B-NVFP4", "ModelOpt W4A16_NVFP4", _spec("fp4", "bf16", "fp8", 16, 1.0)),
    ("nvidia/MiniMax-M3-NVFP4", "ModelOpt NVFP4", _spec("fp4", "fp4", "bf16", 16, 1.0)),  # experts, not MXFP8 rest
]


@pytest.mark.parametrize(("model", "scheme", "expected"), CASES)
def test_preset_checkpoint_formats(model: str, scheme: str, expected: QuantSpec) -> None:
    ckpt = load_checkpoint_quant(model)
    assert ckpt is not None
    assert (ckpt.scheme, ckpt.quant) == (scheme, expected)


def test_mxfp4_weight_bytes_include_the_e8m0_scales() -> None:
    ckpt = load_checkpoint_quant("gpt-oss-120b")
    assert ckpt is not None and ckpt.quant.weight_bytes_per_param == 0.5 + 1 / 32


def test_unquantised_checkpoint_has_none() -> None:
    assert load_checkpoint_quant("Llama-3.1-8B") is None


@pytest.mark.parametrize(
    ("qc", "expected"),
    [
        # AutoAWQ config.json: 4-bit, group 128, zero points (fp16 scale + packed 4-bit zero per group)
        ({"quant_method": "awq", "bits": 4, "group_size": 128, "zero_point": True, "version": "gemm"},
         _spec("int4", "bf16", "bf16", 128, 2.5)),
        # AutoGPTQ: symmetric, per-channel (group_size -1)
        ({"quant_method": "gptq", "bits": 4, "group_size": -1, "sym": True, "desc_act": False},
         _spec("int4", "bf16", "bf16", 0, 2.0)),
        # compressed-tensors W4A16 (llm-compressor "W4A16" preset): int4 weights per group of 128, no act quant
        ({"quant_method": "compressed-tensors", "config_groups": {"group_0": {
            "weights": {"num_bits": 4, "type": "int", "strategy": "group", "group_size": 128},
            "input_activations": None, "targets": ["Linear"]}}},
         _spec("int4", "bf16", "bf16", 128, 2.0)),
        # compressed-tensors FP8 dynamic per-channel with an fp8 KV cache
        ({"quant_method": "compressed-tensors", "kv_cache_scheme": {"num_bits": 8, "type": "float"},
          "config_groups": {"group_0": {"weights": {"num_bits": 8, "type": "float", "strategy": "channel"},
                                        "input_activations": {"num_bits": 8, "type": "float", "dynamic": True}}}},
         _spec("fp8", "fp8", "fp8", 0, 2.0)),
    ],
)
def test_config_schemes(qc: dict, expected: QuantSpec) -> None:
    ckpt = quant_from_configs({"quantization_config": qc})
    assert ckpt is not None and ckpt.quant == expected


def test_unknown_method_names_it() -> None:
    with pytest.raises(InputError, match="quant_method='bitsandbytes' is not supported"):
        quant_from_configs({"quantization_config": {"quant_method": "bitsandbytes"}})


def test_side_file_beside_a_config_path(shared_data: Path) -> None:
    path = shared_data / "model_configs" / "aiconfigurator" / "nvidia--Llama-3.1-70B-Instruct-FP8_config.json"
    ckpt = load_checkpoint_quant(path)
    assert ckpt is not None and ckpt.quant == _spec("fp8", "fp8", "fp8", 0, 4.0)
    assert ckpt.source.endswith("nvidia--Llama-3.1-70B-Instruct-FP8_hf_quant_config.json")


def test_no_flag_applies_the_checkpoint_and_a_flag_overrides_it_with_a_note() -> None:
    ckpt = load_checkpoint_quant("openai/gpt-oss-120b")
    q, notes = resolve_quant(ckpt, hardware=H100)
    assert q == _spec("fp4", "bf16", "bf16", 32, 1.0)
    assert notes[0].startswith("MXFP4 from the checkpoint (model/presets/openai--gpt-oss-120b_config.json): "
                            "weights fp4, activations bf16, KV bf16")
    q, notes = resolve_quant(ckpt, "fp8", hardware=H100)
    assert (q.weight_dtype, q.activation_dtype) == ("fp8", "fp8")
    assert notes == ["--weight-dtype fp8 overrides the checkpoint's MXFP4 (model/presets/openai--gpt-oss-120b"
                     "_config.json)"]
    q, notes = resolve_quant(ckpt, kv_dtype="fp8", hardware=H100)
    assert q.kv_dtype == "fp8" and "--kv-dtype fp8 overrides the checkpoint's bf16" in notes
    assert resolve_quant(None)[0] == quant_for("bf16")


def test_fp8_checkpoint_on_a100_runs_weight_only() -> None:
    q, notes = resolve_quant(load_checkpoint_quant("deepseek-ai/DeepSeek-R1"), hardware=A100)
    assert (q.weight_dtype, q.activation_dtype, q.kv_dtype) == ("fp8", "bf16", "bf16")
    assert any("no fp8 tensor cores" in n for n in notes)


def test_gpt_oss_120b_estimates_on_h100() -> None:
    q, _ = resolve_quant(load_checkpoint_quant("openai/gpt-oss-120b"), hardware=H100)
    est = estimate_deployment(load_model("openai/gpt-oss-120b"), H100, q, ParallelSpec(), None, 8, 1024, 256)
    assert est.batch_fits and est.tpot_s > 0
    experts = [kc for kc in est.decode.kernels if kc.kernel.name in ("moe_up_gate", "moe_down")]
    # weight-only: bf16 tensor cores plus dequantisation of the active experts' weights on the vector units
    assert all(kc.kernel.dtype == "bf16" and kc.kernel.dequant_flops > 0 for kc in experts)
    assert all(kc.bound == "memory" for kc in experts)


def test_w4a4_on_h100_is_refused_pointing_at_weight_only() -> None:
    with pytest.raises(ValueError, match="weight-only on it: activation_dtype=bf16"):
        CostModel(load_model("gpt-oss-20b"), H100, quant_for("fp4"))
    cm = CostModel(load_model("gpt-oss-20b"), H100, quant_for("fp4", hardware=H100))
    assert cm.step(BatchShape.build(decode_ctx=[100])).seconds > 0


def test_block_scaled_fp8_checkpoint_runs_the_fp8_block_recipe() -> None:
    q, _ = resolve_quant(load_checkpoint_quant("deepseek-ai/DeepSeek-R1"), hardware=H100)
    cal = Calibration(gemm_eff_fp8=0.75, gemm_eff_fp8_block=0.5)
    step = CostModel(load_model("deepseek-v3"), H100, q, ParallelSpec(tp=8), cal).step(
        BatchShape.build(prefill=[(4096, 0)]))
    o_proj = next(kc for kc in step.kernels if kc.kernel.name == "o_proj")
    assert o_proj.kernel.dtype == "fp8_block"
    per_tensor = next(kc for kc in CostModel(load_model("deepseek-v3"), H100, quant_for("fp8"), ParallelSpec(tp=8),
                                             cal).step(BatchShape.build(prefill=[(4096, 0)])).kernels
                      if kc.kernel.name == "o_proj")
    assert per_tensor.kernel.dtype == "fp8"
    # per-tensor fp8 on Hopper computes at 1550 of the 1978.9 TFLOP/s (model.cost.FP8_ARCH_PEAK_FRACTION)
    assert o_proj.compute_s == pytest.approx(per_tensor.compute_s * 0.75 / 0.5 * 1550 / 1978.9)
