"""Every model config of the data is a bundled preset by its HF id, and model_summary describes each that loads."""

from __future__ import annotations

from pathlib import Path

import pytest

from roofsim.model.loader import (
    PRESET_DIR,
    known_model_names,
    list_models,
    load_checkpoint_quant,
    load_model,
    model_ids,
    model_summary,
    preset_load_errors,
)

# Files whose per-layer lists were folded when bundled (model/presets/NOTICE).
FOLDED = {"nvidia--MiniMax-M3-NVFP4_config.json", "nvidia--MiniMax-M3-NVFP4_hf_quant_config.json",
          "nvidia--NVIDIA-Nemotron-3.5-Lightning-30B-A3B-NVFP4_hf_quant_config.json"}


def test_every_data_config_is_a_preset_by_hf_id(shared_data: Path) -> None:
    names = {n.lower() for n in known_model_names()}
    ai = shared_data / "model_configs" / "aiconfigurator"
    for p in ai.glob("*_config.json"):
        if p.name.endswith("_hf_quant_config.json"):
            continue
        org, _, repo = p.name.removesuffix("_config.json").partition("--")
        # meta-llama/Meta-Llama-3.1-* are the presets meta-llama/Llama-3.1-* (the hub's current ids)
        assert f"{org}/{repo.removeprefix('Meta-')}".lower() in names, p.name
        if p.name not in FOLDED:
            assert (PRESET_DIR / p.name).read_bytes() == p.read_bytes(), p.name
    for p in (shared_data / "model_configs" / "llm_analysis").glob("*.json"):
        org, sep, repo = p.stem.partition("_")
        assert (f"{org}/{repo}" if sep else p.stem).lower() in names, p.name


def test_hf_ids_resolve_exactly_before_loosely() -> None:
    r1 = load_model("deepseek-ai/DeepSeek-R1")
    assert (r1.name, r1.hf_id, r1.family, r1.num_layers) == ("DeepSeek-R1", "deepseek-ai/DeepSeek-R1", "deepseek_v3", 61)
    assert load_model("DeepSeek-V3").hf_id == "deepseek-ai/DeepSeek-V3"  # not DeepSeek-V3.2 ('-v3.2' normalised)
    kimi = load_checkpoint_quant("moonshotai/Kimi-K2-Instruct")  # resolves whether or not its parser exists yet
    assert kimi is not None and kimi.source == "model/presets/moonshotai--Kimi-K2-Instruct_config.json"
    assert load_model("meta-llama/Llama-2-70b-chat-hf").name == "Llama-2-70B"  # loose match keeps working


def test_list_models_and_load_errors_partition_the_presets() -> None:
    loaded = [m.name for m in list_models()]
    errors = preset_load_errors()
    assert sorted(loaded + list(errors)) == sorted(model_ids())
    assert "gpt-oss-120b" in loaded and "DeepSeek-R1" in loaded
    assert all("model_type" in e or "field" in e for e in errors.values())


def test_model_summary_by_hand() -> None:
    s = model_summary(load_model("deepseek-ai/DeepSeek-R1"), 8192)
    assert s.layers_by_kind == {"attention: mla": 61, "mlp: dense": 3, "mlp: moe top-8 of 256 + 1 shared": 58}
    assert s.kv_bytes_per_token == (512 + 64) * 2 * 61  # MLA latent + RoPE key, 16-bit, every layer
    assert s.total_params == pytest.approx(671e9, rel=0.02) and s.active_params == pytest.approx(37e9, rel=0.02)
    # gpt-oss-120b: 18 full + 18 sliding-window (128) layers, 8 KV heads x 64 x K,V x 2 bytes = 2048 B per layer
    g = model_summary(load_model("openai/gpt-oss-120b"), 8192)
    assert g.layers_by_kind == {"attention: full": 18, "attention: sliding window 128": 18,
                                "mlp: moe top-4 of 128": 36}
    assert g.kv_bytes_per_token == 18 * 2048 + 18 * 2048 * 128 / 8192
    with pytest.raises(ValueError, match="context_tokens=0 must be > 0"):
        model_summary(load_model("gpt-oss-20b"), 0)


def test_model_summary_of_hybrids_by_hand() -> None:
    # Nemotron-3 Nano: pattern M (Mamba-2) x 23, E (MoE MLP, no mixer) x 23, * (GQA) x 6
    s = model_summary(load_model("nvidia/NVIDIA-Nemotron-3-Nano-30B-A3B-BF16"), 8192)
    assert s.layers_by_kind == {"mamba: mamba2 state 128": 23, "mixer: none": 23, "attention: full": 6,
                                "mlp: none": 29, "mlp: moe top-6 of 128 + 1 shared": 23}
    kv = 6 * 2 * 128 * 2 * 2  # 6 attention layers x 2 KV heads x 128 x (K, V) x 2 bytes
    # per Mamba layer: 64 heads x head_dim 64 x state 128 in fp32 (config: mamba_ssm_cache_dtype "float32"), plus
    # 3 conv taps of 64 x 64 + 2 x 8 groups x 128 channels in bf16
    state = 23 * (64 * 64 * 128 * 4 + 3 * (64 * 64 + 2 * 8 * 128) * 2)
    assert s.state_bytes_per_seq == state
    assert s.kv_bytes_per_token == kv + state / 8192
    # Qwen3.5-27B: 3 gated-delta layers per full-attention layer
    q = model_summary(load_model("Qwen/Qwen3.5-27B"), 8192)
    assert q.layers_by_kind == {"linear attention: gated delta": 48, "attention: full": 16, "mlp: dense": 64}
    assert q.kv_bytes_per_token == 16 * 4 * 256 * 2 * 2 + q.state_bytes_per_seq / 8192
