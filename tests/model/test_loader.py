"""Tests of model/loader.py: every family parsed from real config.json files, name resolution, bad input."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from roofsim.hardware_specs.errors import InputError, UnknownNameError
from roofsim.model.loader import (
    PRESET_DIR,
    list_models,
    load_model,
    model_from_file,
    model_from_hf_config,
    model_ids,
    normalize_model_id,
    preset_load_errors,
)


def _preset_config(file: str) -> dict:
    return json.loads((PRESET_DIR / file).read_text())


LLAMA31_8B = "meta-llama--Meta-Llama-3.1-8B_config.json"
QWEN3_8B = "Qwen--Qwen3-8B_config.json"
QWEN3_30B = "Qwen--Qwen3-30B-A3B_config.json"
MIXTRAL = "mistralai--Mixtral-8x7B-v0.1_config.json"
DSV3 = "deepseek-ai--DeepSeek-V3_config.json"
GPT_OSS_20B = "openai--gpt-oss-20b_config.json"


# ---- families: exact values from the real files -----------------------------------------------------


def test_llama_31_8b() -> None:
    m = load_model("Llama-3.1-8B")
    assert (m.family, m.hidden_size, m.num_layers, m.num_heads, m.num_kv_heads) == ("llama", 4096, 32, 32, 8)
    assert (m.head_dim, m.intermediate_size, m.vocab_size) == (128, 14336, 128256)
    assert m.tie_word_embeddings is False
    assert (m.mlp_gated, m.norm, m.position, m.activation) == (True, "rmsnorm", "rope", "silu")
    assert (m.attention_bias, m.mlp_bias) == (False, False)
    assert m.max_context_tokens == 131072  # rope_scaling (llama3) is ignored, max_position_embeddings kept
    assert (m.sliding_window, m.num_sliding_layers, m.moe, m.mla) == (None, 0, None, None)
    assert m.hf_id == "meta-llama/Llama-3.1-8B"


def test_llama_2_presets_use_real_swiglu_width() -> None:
    assert load_model("llama-2-7b").intermediate_size == 11008
    m70 = load_model("llama-2-70b")
    assert (m70.num_layers, m70.hidden_size, m70.num_heads, m70.num_kv_heads) == (80, 8192, 64, 8)
    assert m70.intermediate_size == 28672
    assert load_model("llama-2-13b").num_kv_heads == 40


def test_mistral_sliding_window_on_every_layer() -> None:
    m = load_model("mistral-7b")
    assert (m.family, m.sliding_window, m.num_sliding_layers, m.num_kv_heads) == ("mistral", 4096, 32, 8)
    assert m.max_context_tokens == 32768


def test_mixtral_8x7b() -> None:
    m = load_model("mixtral-8x7b")
    assert m.moe is not None
    assert (m.moe.num_experts, m.moe.top_k, m.moe.expert_intermediate_size) == (8, 2, 14336)
    assert (m.moe.num_shared_experts, m.moe.first_dense_layers, m.moe.layer_freq) == (0, 0, 1)
    assert m.num_moe_layers == 32
    assert m.sliding_window is None  # "sliding_window": null in the real file
    m22 = load_model("mixtral-8x22b")
    assert (m22.num_layers, m22.hidden_size, m22.moe.expert_intermediate_size) == (56, 6144, 16384)


def test_qwen3_dense_has_head_dim_and_no_window() -> None:
    m = load_model("qwen3-8b")
    assert (m.family, m.num_layers, m.hidden_size, m.num_heads, m.num_kv_heads) == ("qwen3", 36, 4096, 32, 8)
    assert (m.head_dim, m.intermediate_size, m.vocab_size, m.max_context_tokens) == (128, 12288, 151936, 40960)
    small = load_model("Qwen/Qwen3-0.6B")
    # head_dim 128 is explicit: 16 heads x 128 = 2048 != hidden 1024
    assert (small.hidden_size, small.num_heads, small.head_dim, small.tie_word_embeddings) == (1024, 16, 128, True)


def test_qwen3_sliding_window_only_when_enabled() -> None:
    cfg = _preset_config(QWEN3_8B)
    cfg["sliding_window"] = 4096  # set, but use_sliding_window is false -> no window
    assert model_from_hf_config(cfg, "q").sliding_window is None
    cfg["use_sliding_window"] = True
    cfg["max_window_layers"] = 28  # layers >= 28 of 36 use the window
    m = model_from_hf_config(cfg, "q")
    assert (m.sliding_window, m.num_sliding_layers) == (4096, 8)


def test_qwen3_moe() -> None:
    m = load_model("qwen3-30b-a3b")
    assert m.family == "qwen3_moe" and m.moe is not None
    assert (m.moe.num_experts, m.moe.top_k, m.moe.expert_intermediate_size) == (128, 8, 768)
    assert (m.num_layers, m.num_kv_heads, m.num_moe_layers) == (48, 4, 48)
    big = load_model("Qwen/Qwen3-235B-A22B")
    assert (big.num_layers, big.moe.expert_intermediate_size, big.num_heads) == (94, 1536, 64)


def test_qwen3_moe_sparse_step_and_mlp_only_layers() -> None:
    cfg = _preset_config(QWEN3_30B)
    cfg["decoder_sparse_step"] = 2  # MoE in layers 1, 3, 5, ... ((i + 1) % 2 == 0)
    m = model_from_hf_config(cfg, "q")
    assert (m.moe.first_dense_layers, m.moe.layer_freq, m.num_moe_layers) == (1, 2, 24)
    assert m.moe.dense_intermediate_size == 6144
    cfg["decoder_sparse_step"], cfg["mlp_only_layers"] = 1, [0, 1]
    m = model_from_hf_config(cfg, "q")
    assert (m.moe.first_dense_layers, m.num_moe_layers) == (2, 46)
    cfg["mlp_only_layers"] = [5]  # a hole in the middle: not representable -> refuse, never drop
    with pytest.raises(InputError, match="mlp_only_layers"):
        model_from_hf_config(cfg, "q", source="x/config.json")


def test_deepseek_v3_mla_and_moe() -> None:
    m = load_model("deepseek-v3")
    assert m.mla is not None and m.moe is not None
    assert (m.mla.q_lora_rank, m.mla.kv_lora_rank) == (1536, 512)
    assert (m.mla.qk_nope_head_dim, m.mla.qk_rope_head_dim, m.mla.v_head_dim) == (128, 64, 128)
    assert (m.num_layers, m.hidden_size, m.num_heads, m.num_kv_heads, m.head_dim) == (61, 7168, 128, 128, 192)
    assert (m.moe.num_experts, m.moe.top_k, m.moe.num_shared_experts) == (256, 8, 1)
    assert (m.moe.expert_intermediate_size, m.moe.shared_intermediate_size) == (2048, 2048)
    assert (m.moe.first_dense_layers, m.moe.dense_intermediate_size, m.moe.layer_freq) == (3, 18432, 1)
    assert m.moe.router_bias is True  # topk_method noaux_tc
    assert m.num_moe_layers == 58
    assert m.kv_elements_per_token_per_layer() == 576
    assert "fp8" in m.source  # quantization_config noted, architecture only


def test_gpt_oss_alternating_sliding_window() -> None:
    m = load_model("gpt-oss-20b")
    assert (m.family, m.num_layers, m.hidden_size, m.head_dim, m.num_heads, m.num_kv_heads) == (
        "gpt_oss",
        24,
        2880,
        64,
        64,
        8,
    )
    assert (m.sliding_window, m.num_sliding_layers) == (128, 12)
    assert (m.attention_bias, m.mlp_bias, m.mlp_gated) == (True, True, True)
    assert (m.moe.num_experts, m.moe.top_k, m.moe.expert_intermediate_size, m.moe.router_bias) == (32, 4, 2880, True)
    big = load_model("openai/gpt-oss-120b")
    assert (big.num_layers, big.num_sliding_layers, big.moe.num_experts) == (36, 18, 128)


def test_opt_plain_relu_mlp_with_biases() -> None:
    m = load_model("opt-13b")
    assert (m.family, m.mlp_gated, m.activation, m.norm, m.position) == ("opt", False, "relu", "layernorm", "learned")
    assert (m.attention_bias, m.mlp_bias, m.tie_word_embeddings) == (True, True, True)
    assert (m.hidden_size, m.num_layers, m.num_heads, m.intermediate_size, m.vocab_size) == (5120, 40, 40, 20480, 50272)
    assert load_model("facebook/opt-66b").num_heads == 72


def test_opt_projected_embedding_is_refused() -> None:
    cfg = _preset_config("opt-13b.json")
    cfg["word_embed_proj_dim"] = 512
    with pytest.raises(InputError, match="word_embed_proj_dim"):
        model_from_hf_config(cfg, "opt-350m-like", source="opt/config.json")


def test_bloom() -> None:
    m = load_model("bloom-176b")
    assert (m.num_layers, m.num_heads, m.hidden_size, m.vocab_size, m.head_dim) == (70, 112, 14336, 250880, 128)
    assert (m.position, m.norm, m.mlp_gated, m.activation, m.intermediate_size) == (
        "alibi",
        "layernorm",
        False,
        "gelu",
        4 * 14336,
    )
    assert (m.attention_bias, m.mlp_bias, m.tie_word_embeddings, m.max_context_tokens) == (True, True, True, 2048)


def test_gpt3_preset() -> None:
    m = load_model("gpt-3-175b")
    assert (m.num_layers, m.hidden_size, m.num_heads, m.head_dim, m.max_context_tokens, m.vocab_size) == (
        96,
        12288,
        96,
        128,
        2048,
        50257,
    )
    assert (m.intermediate_size, m.position, m.mlp_gated) == (49152, "learned", False)


def test_gpt2_gptj_gptneo() -> None:
    # Key sets of the HF gpt2, EleutherAI/gpt-j-6b and EleutherAI/gpt-neo-1.3B config.json files.
    gpt2 = {"model_type": "gpt2", "n_embd": 768, "n_layer": 12, "n_head": 12, "n_inner": None, "n_positions": 1024,
            "vocab_size": 50257, "activation_function": "gelu_new"}  # fmt: skip
    m = model_from_hf_config(gpt2, "gpt2")
    assert (m.intermediate_size, m.position, m.tie_word_embeddings, m.attention_bias) == (3072, "learned", True, True)
    gptj = {"model_type": "gptj", "n_embd": 4096, "n_layer": 28, "n_head": 16, "n_inner": None, "rotary_dim": 64,
            "n_positions": 2048, "vocab_size": 50400, "tie_word_embeddings": False}  # fmt: skip
    m = model_from_hf_config(gptj, "gpt-j-6b")
    assert (m.head_dim, m.position, m.attention_bias, m.mlp_bias, m.tie_word_embeddings) == (256, "rope", False, True, False)
    neo = {"model_type": "gpt_neo", "hidden_size": 2048, "num_layers": 24, "num_heads": 16, "intermediate_size": None,
           "attention_types": [[["global", "local"], 12]], "window_size": 256, "max_position_embeddings": 2048,
           "vocab_size": 50257}  # fmt: skip
    m = model_from_hf_config(neo, "gpt-neo-1.3B")
    assert (m.intermediate_size, m.sliding_window, m.num_sliding_layers) == (8192, 256, 12)


def test_llm_analysis_format(shared_data: Path) -> None:
    la = shared_data / "model_configs" / "llm_analysis"
    m = model_from_file(la / "megatron-lm-175b.json")
    assert (m.name, m.family, m.num_layers, m.hidden_size, m.num_heads, m.intermediate_size) == (
        "megatron-lm-175b",
        "gpt3",
        96,
        12288,
        96,
        49152,
    )
    assert (m.mlp_gated, m.activation, m.position, m.attention_bias, m.max_context_tokens) == (
        False,
        "gelu",
        "learned",
        True,
        2048,
    )
    assert model_from_file(la / "upstage_Llama-2-70b-instruct-v2.json").num_kv_heads == 8
    # BLOOM entries leave "max_seq_len" null (or out): ALiBi, no position table, BLOOM's 2048-token training length
    bloom = model_from_file(la / "bigscience_bloom-7b1.json")
    assert (bloom.position, bloom.max_context_tokens) == ("alibi", 2048)
    with pytest.raises(InputError, match="max_seq_len"):
        model_from_hf_config({"hidden_dim": 64, "n_head": 4, "num_layers": 2, "vocab_size": 10}, "x")


def test_quantized_checkpoints_parse_architecture_only(shared_data: Path) -> None:
    ai = shared_data / "model_configs" / "aiconfigurator"
    fp8 = model_from_file(ai / "Qwen--Qwen3-32B-FP8_config.json")
    ref = load_model("qwen3-32b")
    assert fp8.model_dump(exclude={"name", "hf_id", "aliases", "source"}) == ref.model_dump(
        exclude={"name", "hf_id", "aliases", "source"}
    )
    assert "quantization fp8" in fp8.source
    nv = model_from_file(ai / "nvidia--Llama-3.1-70B-Instruct-FP8_config.json")
    assert (nv.num_layers, nv.intermediate_size) == (80, 28672)


# ---- presets vs their sources --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("preset", "original"),
    [
        ("llama-2-7b.json", "NousResearch_Llama-2-7b-hf.json"),
        ("llama-2-70b.json", "upstage_Llama-2-70b-instruct-v2.json"),
        ("opt-13b.json", "facebook_opt-13b.json"),
        ("opt-66b.json", "facebook_opt-66b.json"),
        ("opt-175b.json", "facebook_opt-175b.json"),
    ],
)
def test_converted_presets_match_llm_analysis(shared_data: Path, preset: str, original: str) -> None:
    ref = model_from_file(shared_data / "model_configs" / "llm_analysis" / original)
    got = model_from_file(PRESET_DIR / preset)
    keys = ("num_layers", "num_heads", "num_kv_heads", "hidden_size", "vocab_size", "max_context_tokens")
    assert [getattr(got, k) for k in keys] == [getattr(ref, k) for k in keys]
    if preset.startswith("opt"):  # OPT is a plain MLP: the llm-analysis ffn_embed_dim is the real width
        assert got.intermediate_size == ref.intermediate_size


# ---- name resolution --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("query", "canonical"),
    [
        ("meta-llama/Llama-3.1-8B-Instruct", "Llama-3.1-8B"),
        ("meta-llama/Meta-Llama-3.1-8B", "Llama-3.1-8B"),
        ("meta-llama/Llama-3.1-8B", "Llama-3.1-8B"),
        ("META-LLAMA/LLAMA-3.1-8B-INSTRUCT", "Llama-3.1-8B"),
        ("llama-3.1-8b", "Llama-3.1-8B"),
        ("llama3.1-8b", "Llama-3.1-8B"),
        ("meta-llama/Llama-2-70b-chat-hf", "Llama-2-70B"),
        ("meta-llama/Llama-3.3-70B-Instruct", "Llama-3.3-70B"),
        ("mistralai/Mixtral-8x7B-Instruct-v0.1", "Mixtral-8x7B"),
        ("mixtral-8x7b", "Mixtral-8x7B"),
        ("mistralai/Mistral-7B-Instruct-v0.1", "Mistral-7B-v0.1"),
        ("qwen3-30b-a3b", "Qwen3-30B-A3B"),
        ("Qwen/Qwen3-8B-Base", "Qwen3-8B"),
        ("deepseek-v3", "DeepSeek-V3"),
        ("deepseek-ai/DeepSeek-V3-Base", "DeepSeek-V3"),
        ("gpt-oss-20b", "gpt-oss-20b"),
        ("opt-175b", "OPT-175B"),
        ("bloom-176b", "BLOOM-176B"),
        ("bigscience/bloom", "BLOOM-176B"),
        ("gpt3-175b", "GPT-3-175B"),
        ("gpt-3-175b", "GPT-3-175B"),
    ],
)
def test_resolution(query: str, canonical: str) -> None:
    assert load_model(query).name == canonical


def test_llama_33_is_its_own_preset_with_31_architecture() -> None:
    m33, m31 = load_model("llama-3.3-70b"), load_model("llama-3.1-70b")
    assert (m33.name, m33.hf_id) == ("Llama-3.3-70B", "meta-llama/Llama-3.3-70B-Instruct")
    assert m33.model_dump(exclude={"name", "hf_id", "aliases", "source"}) == m31.model_dump(
        exclude={"name", "hf_id", "aliases", "source"}
    )


def test_normalize_model_id() -> None:
    assert normalize_model_id("meta-llama/Meta-Llama-3.1-70B-Instruct") == "llama-3.1-70b"
    assert normalize_model_id("Mixtral-8x22B-Instruct-v0.1") == "mixtral-8x22b"


def test_every_preset_and_alias_resolves_to_itself() -> None:
    specs = list_models()
    assert [m.name for m in specs] == model_ids()
    assert len(specs) == len(model_ids()) >= 141 and not preset_load_errors()  # every bundled config loads
    for m in specs:
        for key in filter(None, (m.name, m.hf_id, *m.aliases)):
            assert load_model(key) is m  # lru-cached: the same object


def test_unknown_model_lists_close_matches() -> None:
    with pytest.raises(UnknownNameError) as info:
        load_model("llama-3.1-9b")
    err = info.value
    assert isinstance(err, KeyError)
    assert "llama-3.1-8b" in err.close
    assert "llama-3.1-8b" in str(err) and "unknown model 'llama-3.1-9b'" in str(err)


# ---- files and malformed input -----------------------------------------------------------------------


def test_load_from_file_and_directory(tmp_path: Path) -> None:
    d = tmp_path / "my-llama"
    d.mkdir()
    (d / "config.json").write_text((PRESET_DIR / LLAMA31_8B).read_text())
    by_dir, by_file = load_model(d), load_model(str(d / "config.json"))
    assert by_dir.name == by_file.name == "my-llama"
    assert by_dir.intermediate_size == 14336
    assert str(d / "config.json") in by_dir.source


def _write(tmp_path: Path, cfg: dict | str) -> Path:
    p = tmp_path / "config.json"
    p.write_text(cfg if isinstance(cfg, str) else json.dumps(cfg))
    return p


def test_missing_hidden_size_names_file_and_field(tmp_path: Path) -> None:
    cfg = _preset_config(LLAMA31_8B)
    del cfg["hidden_size"]
    p = _write(tmp_path, cfg)
    with pytest.raises(InputError, match="hidden_size") as info:
        load_model(p)
    assert str(p) in str(info.value)


def test_string_instead_of_int(tmp_path: Path) -> None:
    cfg = _preset_config(LLAMA31_8B)
    cfg["num_hidden_layers"] = "32"
    p = _write(tmp_path, cfg)
    with pytest.raises(InputError, match=r"'num_hidden_layers' must be an integer, got '32'") as info:
        load_model(p)
    assert str(p) in str(info.value)


def test_unsupported_model_type(tmp_path: Path) -> None:
    cfg = _preset_config(LLAMA31_8B)
    cfg["model_type"] = "mamba"
    p = _write(tmp_path, cfg)
    with pytest.raises(InputError, match=r"'model_type'='mamba' is not supported.*llama") as info:
        load_model(p)
    assert str(p) in str(info.value)


def test_invalid_json_and_missing_file(tmp_path: Path) -> None:
    p = _write(tmp_path, '{"model_type": "llama", "hidden_size": 4096,')
    with pytest.raises(InputError, match="not valid JSON: line 1") as info:
        load_model(p)
    assert str(p) in str(info.value)
    with pytest.raises(InputError, match="nope.json"):
        load_model(str(tmp_path / "nope.json"))


def test_inconsistent_heads_is_input_error(tmp_path: Path) -> None:
    cfg = _preset_config(LLAMA31_8B)
    cfg["num_key_value_heads"] = 5  # 32 heads are not a multiple of 5
    p = _write(tmp_path, cfg)
    with pytest.raises(InputError, match="num_kv_heads=5") as info:
        load_model(p)
    assert str(p) in str(info.value)


def test_model_type_from_architectures() -> None:
    cfg = _preset_config(MIXTRAL)
    del cfg["model_type"]
    assert model_from_hf_config(cfg, "m").family == "mixtral"
    cfg["architectures"] = ["FancyForCausalLM"]
    with pytest.raises(InputError, match="'model_type' is missing"):
        model_from_hf_config(cfg, "m", source="m/config.json")


# Required keys of each real config: deleting any one must give an InputError naming it.
REQUIRED = {
    LLAMA31_8B: ["hidden_size", "num_hidden_layers", "num_attention_heads", "intermediate_size", "vocab_size",
                 "max_position_embeddings"],
    QWEN3_30B: ["hidden_size", "num_hidden_layers", "num_attention_heads", "intermediate_size", "vocab_size",
                "max_position_embeddings", "num_experts", "num_experts_per_tok", "moe_intermediate_size"],
    MIXTRAL: ["hidden_size", "num_hidden_layers", "num_attention_heads", "intermediate_size", "vocab_size",
              "max_position_embeddings", "num_local_experts", "num_experts_per_tok"],
    DSV3: ["hidden_size", "num_hidden_layers", "num_attention_heads", "intermediate_size", "vocab_size",
           "max_position_embeddings", "kv_lora_rank", "qk_nope_head_dim", "qk_rope_head_dim", "v_head_dim",
           "moe_intermediate_size", "num_experts_per_tok"],
    GPT_OSS_20B: ["hidden_size", "num_hidden_layers", "num_attention_heads", "intermediate_size", "vocab_size",
                  "max_position_embeddings", "num_local_experts", "sliding_window"],
    "opt-13b.json": ["hidden_size", "num_hidden_layers", "num_attention_heads", "ffn_dim", "vocab_size",
                     "max_position_embeddings"],
    "bloom-176b.json": ["hidden_size", "n_layer", "n_head", "vocab_size"],
    "gpt-3-175b.json": ["n_embd", "n_layer", "n_head", "vocab_size", "n_positions"],
}  # fmt: skip
_CASES = [(f, k) for f, keys in REQUIRED.items() for k in keys]
_CONFIGS = {f: _preset_config(f) for f in REQUIRED}


@settings(max_examples=60, deadline=None)
@given(case=st.sampled_from(_CASES))
def test_deleting_a_required_key_is_input_error(case: tuple[str, str]) -> None:
    file, key = case
    cfg = copy.deepcopy(_CONFIGS[file])
    del cfg[key]
    with pytest.raises(InputError, match=f"{file}.*'{key}'"):
        model_from_hf_config(cfg, "x", source=f"presets/{file}")


_NOT_AN_INT = st.one_of(st.text(max_size=5), st.floats(allow_nan=False), st.booleans(), st.lists(st.integers(), max_size=2))


@settings(max_examples=60, deadline=None)
@given(case=st.sampled_from([c for c in _CASES if c[1] != "sliding_window"]), bad=_NOT_AN_INT)
def test_ill_typed_required_key_is_input_error(case: tuple[str, str], bad: object) -> None:
    file, key = case
    cfg = copy.deepcopy(_CONFIGS[file])
    cfg[key] = bad
    with pytest.raises(InputError, match=f"{file}.*'{key}'"):
        model_from_hf_config(cfg, "x", source=f"presets/{file}")
