"""Every HuggingFace config.json in ../shared/data loads; per-layer architectures (window, chunked, NoPE, MLA, DSA,
linear attention, Mamba-2, heterogeneous MLPs) match their model cards' parameter counts and hand-computed KV/state
bytes, and the closed-form step cost equals the per-kernel one for every layer kind."""

from __future__ import annotations

from pathlib import Path

import pytest

from roofsim.hardware_specs.catalog import load_hardware
from roofsim.hardware_specs.errors import InputError
from roofsim.model.batch import BatchShape
from roofsim.model.cost import CostModel
from roofsim.model.graph import attention_kernels, cache_bytes, graph_context
from roofsim.model.loader import load_model, model_from_hf_config
from roofsim.model.memory import plan_memory
from roofsim.model.params import count_params
from roofsim.model.spec import ParallelSpec, QuantSpec
from tests.conftest import SHARED_DATA

CONFIGS = SHARED_DATA / "model_configs"
AIC = CONFIGS / "aiconfigurator"
H100 = load_hardware("h100-sxm")


def _config_files() -> list[Path]:
    if not CONFIGS.is_dir():
        return []
    return sorted(p for p in CONFIGS.rglob("*.json") if not p.name.endswith("_hf_quant_config.json"))


@pytest.fixture(scope="module")
def aic(shared_data: Path) -> Path:
    return shared_data / "model_configs" / "aiconfigurator"


def test_every_config_in_the_data_loads(shared_data: Path) -> None:
    files = _config_files()
    assert len(files) == 136
    for p in files:
        m = load_model(p)
        assert sum(g.count for g in m.layer_groups) == m.num_layers, p.name
        assert count_params(m).total > 0


# Published sizes (total, active per token). Sources:
# Llama-4 Scout / Maverick: meta-llama/Llama-4-Scout-17B-16E and Llama-4-Maverick-17B-128E model cards (109B /
#   400B total, 17B active).
# Qwen3.5-397B-A17B: Qwen/Qwen3.5-397B-A17B model card (397B total, 17B activated; the activated count leaves
#   out the embedding, as the gpt-oss card does: compared with non_embedding_active).
# Kimi-K2: Kimi Team 2025, "Kimi K2: Open Agentic Intelligence", arXiv 2507.20534 sec. 2 (1.04T total, 32.6B
#   activated).
# DeepSeek-V3.2: deepseek-ai/DeepSeek-V3.2 model card: the V3 architecture plus the indexer, 685B in the checkpoint
#   including the MTP module (compared with total + mtp).
# Nemotron-H-56B: NVIDIA 2025, "Nemotron-H: A Family of Accurate and Efficient Hybrid Mamba-Transformer Models",
#   arXiv 2504.03624 (56B).
# Nemotron-3-Nano-30B-A3B: nvidia/NVIDIA-Nemotron-3-Nano-30B-A3B-BF16 model card (31.6B total, 3.6B active
#   including embeddings).
# Llama-3.3-Nemotron-Super-49B-v1: nvidia model card (49B).
# MiniMax-M2: MiniMaxAI/MiniMax-M2 model card (230B total); M2.5 has the same configuration.
# MiMo-V2-Flash: XiaomiMiMo/MiMo-V2-Flash model card (309B total, 15B active).
CARDS: list[tuple[str, float, float | None]] = [
    ("meta-llama--Llama-4-Scout-17B-16E-Instruct", 109e9, 17e9),
    ("meta-llama--Llama-4-Maverick-17B-128E-Instruct", 400e9, 17e9),
    ("moonshotai--Kimi-K2-Instruct", 1.04e12, 32.6e9),
    ("nvidia--Nemotron-H-56B-Base-8K", 56e9, None),
    ("nvidia--NVIDIA-Nemotron-3-Nano-30B-A3B-BF16", 31.6e9, 3.6e9),
    ("nvidia--Llama-3_3-Nemotron-Super-49B-v1", 49e9, None),
    ("MiniMaxAI--MiniMax-M2.5", 230e9, None),
    ("XiaomiMiMo--MiMo-V2-Flash", 309e9, None),
]


@pytest.mark.parametrize(("name", "total", "active"), CARDS)
def test_params_match_model_cards(aic: Path, name: str, total: float, active: float | None) -> None:
    p = count_params(load_model(aic / f"{name}_config.json"))
    assert p.total == pytest.approx(total, rel=0.02)
    if active is not None:
        assert p.active == pytest.approx(active, rel=0.02)


def test_params_qwen35_and_deepseek_v32(aic: Path) -> None:
    q = count_params(load_model(aic / "Qwen--Qwen3.5-397B-A17B_config.json"))
    assert q.total == pytest.approx(397e9, rel=0.02)
    assert q.non_embedding_active == pytest.approx(17e9, rel=0.02)
    d = count_params(load_model(aic / "deepseek-ai--DeepSeek-V3.2_config.json"))
    assert d.total + d.mtp == pytest.approx(685e9, rel=0.02)


BF16 = QuantSpec()
ONE = ParallelSpec()


def test_cache_bytes_by_kind(aic: Path) -> None:
    """(growing bytes per token, window-layer bytes per token, window, state bytes per sequence), by hand (bf16)."""
    def cb(name: str) -> tuple[float, float, float, int]:
        return cache_bytes(load_model(aic / f"{name}_config.json"), BF16, ONE)

    # Llama-4 Scout: 12 NoPE full layers x 2 (K,V) x 8 heads x 128 x 2 B; 36 chunked layers hold <= 8192 tokens
    assert cb("meta-llama--Llama-4-Scout-17B-16E-Instruct") == (12 * 4096, 36 * 4096, 0, 8192)
    # Gemma-4 26B-A4B: 5 full layers, 2 KV heads x 512, K reused as V; 25 sliding layers of 8 x 256 (K and V)
    assert cb("google--gemma-4-26B-A4B") == (5 * 2 * 512 * 2, 25 * 2 * 8 * 256 * 2, 0, 1024)
    # Qwen3.5-35B-A3B: 10 full layers of 2 KV heads x 256; 30 Gated DeltaNet layers: 32 value heads x 128 x 128
    # state + 3 conv steps x (2 x 16 x 128 + 32 x 128) channels
    assert cb("Qwen--Qwen3.5-35B-A3B") == (10 * 2 * 2 * 256 * 2, 0, 30 * (32 * 128 * 128 + 3 * 8192) * 2, 0)
    # DeepSeek-V3.2: MLA latent 512 + RoPE key 64 + indexer key 128 per layer, 61 layers
    assert cb("deepseek-ai--DeepSeek-V3.2") == (61 * (512 + 64 + 128) * 2, 0, 0, 0)
    # Nemotron-3-Nano: 6 attention layers of 2 KV heads x 128; 23 Mamba-2 layers: 64 heads x 64 x 128 state +
    # 3 conv steps x (64 x 64 + 2 x 8 x 128) channels; the SSM state in fp32 (mamba_ssm_cache_dtype), conv in bf16
    assert cb("nvidia--NVIDIA-Nemotron-3-Nano-30B-A3B-BF16") == (
        6 * 2 * 2 * 128 * 2, 0, 23 * (64 * 64 * 128 * 4 + 3 * (4096 + 2048) * 2), 0)
    # DeepSeek-V4-Flash: one 512-wide K=V head; 21 layers of 4-token entries (+ 128-wide index key), 20 of
    # 128-token entries, 2 sliding layers of 128 tokens (compress_ratios[:43]; the 44th entry is the MTP layer's)
    assert cb("deepseek-ai--DeepSeek-V4-Flash") == (
        21 * (512 + 128) * 2 / 4 + 20 * 512 * 2 / 128, 2 * 512 * 2, 0, 128)


def test_window_layers_read_at_most_the_window_and_planner_counts_them(aic: Path) -> None:
    m = load_model(aic / "google--gemma-4-26B-A4B_config.json")
    shape = BatchShape.build(decode_ctx=[4000, 9000], window=m.sliding_window)
    ks = {k.name: k for k in attention_kernels(graph_context(m, BF16, ONE), shape)}
    assert ks["attn_decode_swa"].kv_read_bytes == 2 * 1024 * 2 * 8 * 256 * 2
    assert ks["attn_decode"].kv_read_bytes == (4001 + 9001) * 2 * 512 * 2
    plan = plan_memory(m, H100)
    full_tok = plan.kv_bytes_per_token - plan.window_bytes_per_token
    per_seq = 32768 * full_tok + 1024 * plan.window_bytes_per_token
    assert plan.max_sequences(32768) == int(plan.max_kv_tokens * plan.kv_bytes_per_token // per_seq)
    assert plan.max_sequences(32768) > plan.kv_blocks // (32768 // plan.block_size)


def test_state_layers_read_and_write_their_state(aic: Path) -> None:
    m = load_model(aic / "nvidia--NVIDIA-Nemotron-3-Nano-30B-A3B-BF16_config.json")
    shape = BatchShape.build(decode_ctx=[100, 50000])
    ks = {k.name: k for k in attention_kernels(graph_context(m, BF16, ONE), shape)}
    state = 64 * 64 * 128 * 4 + 3 * (4096 + 2048) * 2  # SSM state in fp32 (mamba_ssm_cache_dtype), conv in bf16
    assert (ks["mamba2_state_decode"].kv_read_bytes, ks["mamba2_state_decode"].kv_write_bytes) == (2 * state,
                                                                                                   2 * state)
    assert ks["mamba2_state_decode"].count == 23
    plan = plan_memory(m, H100, max_seqs=64)  # 256 fp32 states (12.6 GB) do not fit beside the bf16 weights
    assert plan.state_bytes_per_seq == 23 * state


def test_dsa_reads_topk_plus_its_indexer(aic: Path) -> None:
    m = load_model(aic / "deepseek-ai--DeepSeek-V3.2_config.json")
    shape = BatchShape.build(decode_ctx=[10000, 1000], window=m.sliding_window)
    ks = {k.name: k for k in attention_kernels(graph_context(m, BF16, ONE), shape)}
    assert ks["attn_decode_dsa"].kv_read_bytes == (2048 + 1001) * (512 + 64) * 2
    assert ks["dsa_indexer_decode"].kv_read_bytes == (10001 + 1001) * 128 * 2
    assert ks["dsa_indexer_decode"].flops == 2 * 64 * 128 * (10001 + 1001)


KINDS = [
    "meta-llama--Llama-4-Scout-17B-16E-Instruct",  # chunked local + NoPE full, MoE + shared expert
    "google--gemma-4-26B-A4B",  # sliding + full with K=V and other heads
    "Qwen--Qwen3.5-35B-A3B",  # gated DeltaNet + gated full attention
    "deepseek-ai--DeepSeek-V3.2",  # DSA over MLA
    "MiniMaxAI--MiniMax-M3",  # DSA over GQA, heterogeneous MLPs
    "nvidia--NVIDIA-Nemotron-3-Super-120B-A12B-FP8",  # Mamba-2 + attention + latent MoE
    "deepseek-ai--DeepSeek-V4-Flash",  # compressed entries, sliding, DSA on compressed entries
    "nvidia--Llama-3_3-Nemotron-Super-49B-v1",  # no-op attention, heterogeneous widths
    "moonshotai--Kimi-K3",  # delta attention + MLA
]


@pytest.mark.parametrize("name", KINDS)
def test_closed_form_equals_per_kernel_cost(aic: Path, name: str) -> None:
    m = load_model(aic / f"{name}_config.json")
    cm = CostModel(m, H100, parallel=ParallelSpec(tp=8) if m.num_heads % 8 == 0 else ONE)
    shapes = [
        BatchShape.build(prefill=[(3000, 0), (500, 7000)], decode_ctx=[20, 9000, 150000], window=m.sliding_window),
        BatchShape.build(decode_ctx=[5, 300000], window=m.sliding_window),
        BatchShape.build(prefill=[(64, 0)], window=m.sliding_window),
    ]
    for shape in shapes:
        full = cm.step(shape)
        assert cm.step_seconds_energy(shape) == pytest.approx((full.seconds, full.energy_j), rel=1e-12)
    dec = shapes[1]
    lin = cm.linear_seconds_energy(dec.tokens, dec.logit_tokens, cm._graphed)
    a_s, _ = cm.decode_attention(dec.decode_seqs, dec.decode_tokens, dec.decode_ctx_tokens, dec.decode_ctx_tokens_win)
    assert lin[0] + a_s + cm.overhead_seconds(dec.decode_seqs) == pytest.approx(cm.step(dec).seconds, rel=1e-12)


def test_unknown_layer_kind_names_the_field() -> None:
    cfg = {"model_type": "step3p7", "num_hidden_layers": 2, "hidden_size": 64, "num_attention_heads": 4,
           "num_key_value_heads": 2, "head_dim": 16, "vocab_size": 100, "max_position_embeddings": 128,
           "intermediate_size": 128, "sliding_window": 8, "layer_types": ["full_attention", "mystery_attention"],
           "num_experts": 4, "num_experts_per_tok": 2, "moe_intermediate_size": 32}
    with pytest.raises(InputError, match=r"'layer_types'.*mystery_attention.*describe the model instead"):
        model_from_hf_config(cfg, "x")
    with pytest.raises(InputError, match=r"'model_type'='brand_new'.*describe the model instead"):
        model_from_hf_config({"model_type": "brand_new"}, "x")


def test_vision_encoder_is_a_spec_field(aic: Path) -> None:
    m = load_model(aic / "Qwen--Qwen3-VL-8B-Instruct_config.json")
    v = m.vision
    assert v is not None and (v.num_layers, v.hidden_size, v.patch_size, v.merge_size) == (27, 1152, 16, 2)
    assert v.tokens_per_image(448, 448) == 28 * 28 // 4
    n = 28 * 28
    assert v.flops_per_image(448, 448) == 2.0 * n * 27 * (4 * 1152**2 + 2 * 1152 * 4304) + 4.0 * n * n * 1152 * 27


def test_ssm_state_dtype_from_config(aic: Path, tmp_path: Path) -> None:
    import json
    cfg = json.loads((aic / "nvidia--NVIDIA-Nemotron-3-Nano-30B-A3B-BF16_config.json").read_text())
    m32 = load_model(aic / "nvidia--NVIDIA-Nemotron-3-Nano-30B-A3B-BF16_config.json")
    cfg["mamba_ssm_cache_dtype"] = "auto"
    (tmp_path / "auto.json").write_text(json.dumps(cfg))
    m_auto = load_model(tmp_path / "auto.json")
    # "auto": the SSM state in the cache dtype (bf16): 64 x 64 x 128 x 2 bytes fewer per Mamba layer
    diff = (plan_memory(m32, H100, max_seqs=64).state_bytes_per_seq
            - plan_memory(m_auto, H100, max_seqs=64).state_bytes_per_seq)
    assert diff == 23 * 64 * 64 * 128 * 2
    cfg["mamba_ssm_cache_dtype"] = "float8"
    (tmp_path / "bad.json").write_text(json.dumps(cfg))
    with pytest.raises(ValueError, match="mamba_ssm_cache_dtype.*'float8'.*known: auto, float32"):
        load_model(tmp_path / "bad.json")
