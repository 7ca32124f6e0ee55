"""Model descriptors from HuggingFace config.json files (and the llm-analysis format) and the bundled presets.

`load_model` takes a preset name / HF id / alias or a path; `model_from_hf_config` parses one config dict.
"""

from __future__ import annotations

import builtins
import logging
import re
import tomllib
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from functools import cache, lru_cache
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from roofsim.hardware_specs.errors import InputError, UnknownNameError
from roofsim.hardware_specs.loading import load_json_file
from roofsim.model.checkpoint_quant import CheckpointQuant, checkpoint_quant_of_file, quant_from_configs
from roofsim.model.params import count_params
from roofsim.model.spec import (
    MAX_LAYERS,
    MAX_MODEL_SIZE,
    MLP,
    DenseMLP,
    GQAAttention,
    LayerGroup,
    LinearAttention,
    Mamba2Mixer,
    Mixer,
    MLAAttention,
    MLASpec,
    ModelSpec,
    MoEMLP,
    MoESpec,
    NoMixer,
    NoMLP,
    ParallelSpec,
    QuantSpec,
    SparseAttention,
    VisionSpec,
    bounded_span,
)

log = logging.getLogger(__name__)

PRESET_DIR = Path(__file__).resolve().with_name("presets")
_INDEX_FILE = PRESET_DIR / "index.toml"

# BLOOM uses ALiBi and its config.json has no max_position_embeddings; it was trained on 2048-token
# sequences (BigScience, "BLOOM: A 176B-Parameter Open-Access Multilingual Language Model", arXiv 2211.05100, sec. 3.3).
BLOOM_TRAIN_SEQ_TOKENS = 2048

_MISSING = object()


class _Fields:
    """Typed access to one config dict; every failure is an InputError naming the file and the field."""

    def __init__(self, cfg: Mapping[str, Any], where: str) -> None:
        self.cfg, self.where = cfg, where

    def _get(self, keys: tuple[str, ...], default: Any) -> tuple[str, Any]:
        for key in keys:
            if key in self.cfg:
                return key, self.cfg[key]
        if default is _MISSING:
            names = " or ".join(repr(k) for k in keys)
            raise InputError(f"{self.where}: required field {names} is missing")
        return keys[0], default

    def _limit(self, key: builtins.str, value: builtins.int) -> builtins.int:
        """The value, or an InputError naming the size limit it is over (checked before anything loops on it)."""
        name, limit = ("MAX_LAYERS", MAX_LAYERS) if "layer" in key else ("MAX_MODEL_SIZE", MAX_MODEL_SIZE)
        if value > limit:
            raise InputError(f"{self.where}: field {key!r}={value} is over {name}={limit}")
        return value

    def int(self, *keys: str, default: Any = _MISSING, nullable: bool = False) -> Any:
        """A positive integer (None allowed only when `nullable`)."""
        key, value = self._get(keys, default)
        if value is None and nullable:
            return None
        if isinstance(value, bool) or not isinstance(value, int):
            raise InputError(f"{self.where}: field {key!r} must be an integer, got {value!r}")
        if value <= 0:
            raise InputError(f"{self.where}: field {key!r} must be > 0, got {value}")
        return self._limit(key, value)

    def count(self, *keys: builtins.str, default: Any = _MISSING) -> builtins.int:
        """A non-negative integer (0 allowed), null read as 0."""
        key, value = self._get(keys, default)
        if value is None:
            return 0
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            raise InputError(f"{self.where}: field {key!r} must be an integer >= 0, got {value!r}")
        return self._limit(key, value)

    def bool(self, key: builtins.str, default: Any = _MISSING) -> builtins.bool:
        key, value = self._get((key,), default)
        if not isinstance(value, bool):
            raise InputError(f"{self.where}: field {key!r} must be true or false, got {value!r}")
        return value

    def str(self, *keys: builtins.str, default: Any = _MISSING) -> builtins.str:
        key, value = self._get(keys, default)
        if not isinstance(value, str):
            raise InputError(f"{self.where}: field {key!r} must be a string, got {value!r}")
        return value

    def list(self, key: builtins.str, default: Any = _MISSING) -> builtins.list[Any]:
        key, value = self._get((key,), default)
        if value is None:
            return []
        if not isinstance(value, list):
            raise InputError(f"{self.where}: field {key!r} must be a list, got {value!r}")
        return value


def _head_dim(f: _Fields, hidden: int, heads: int) -> int:
    """Explicit head_dim when the config has one (Qwen3, gpt-oss), else hidden / heads."""
    explicit = f.int("head_dim", default=None, nullable=True)
    if explicit is not None:
        return explicit
    if hidden % heads:
        raise InputError(
            f"{f.where}: hidden size {hidden} is not a multiple of num_attention_heads={heads} "
            f"and the config has no 'head_dim'"
        )
    return hidden // heads


def _sliding_from_layer_types(f: _Fields, num_layers: int) -> int | None:
    """Number of 'sliding_attention' entries of `layer_types` (transformers >= 4.53 configs), None if absent."""
    if "layer_types" not in f.cfg or f.cfg["layer_types"] is None:
        return None
    types = f.list("layer_types")
    if len(types) != num_layers or not all(isinstance(t, str) for t in types):
        raise InputError(
            f"{f.where}: field 'layer_types' must list one string per layer ({num_layers}), got {types!r}"
        )
    unknown = sorted({t for t in types} - {"sliding_attention", "full_attention"})
    if unknown:
        raise InputError(
            f"{f.where}: field 'layer_types' has unsupported entries {unknown}; "
            f"known: sliding_attention, full_attention"
        )
    return types.count("sliding_attention")


def _window(f: _Fields, num_layers: int, family: str) -> tuple[int | None, int]:
    """(sliding_window, num_sliding_layers) for the llama-like families."""
    window = f.int("sliding_window", default=None, nullable=True)
    from_types = _sliding_from_layer_types(f, num_layers)
    if family.startswith("qwen"):
        # Qwen2/Qwen3 carry a sliding_window value but only use it when use_sliding_window is true, and then
        # only in layers >= max_window_layers (transformers Qwen2Attention / Qwen3Config.layer_types).
        if not f.bool("use_sliding_window", default=False):
            return None, 0
        if window is None:
            raise InputError(f"{f.where}: use_sliding_window is true but field 'sliding_window' is null")
        if from_types is not None:
            return window, from_types
        first = f.count("max_window_layers", default=num_layers)
        return window, max(0, num_layers - first)
    if window is None:
        if from_types:
            raise InputError(f"{f.where}: layer_types has sliding layers but field 'sliding_window' is null")
        return None, 0
    if from_types is not None:
        return (window, from_types) if from_types else (None, 0)
    return window, num_layers  # Mistral: every layer uses the window


def _llama_like(f: _Fields, family: str) -> dict[str, Any]:
    """Fields shared by llama, mistral, mixtral, qwen2/3(+moe), gpt_oss, deepseek: RMSNorm, RoPE, SwiGLU."""
    hidden = f.int("hidden_size")
    heads = f.int("num_attention_heads")
    layers = f.int("num_hidden_layers")
    window, sliding = _window(f, layers, family)
    return dict(
        vocab_size=f.int("vocab_size"),
        hidden_size=hidden,
        num_layers=layers,
        num_heads=heads,
        # HF LlamaConfig/MistralConfig: num_key_value_heads None or absent means MHA (= num_attention_heads).
        num_kv_heads=f.int("num_key_value_heads", default=heads, nullable=True) or heads,
        head_dim=_head_dim(f, hidden, heads),
        intermediate_size=f.int("intermediate_size"),
        mlp_gated=True,
        activation=f.str("hidden_act", default="silu"),
        norm="rmsnorm",
        position="rope",
        attention_bias=f.bool("attention_bias", default=False),
        mlp_bias=f.bool("mlp_bias", default=False),
        tie_word_embeddings=f.bool("tie_word_embeddings", default=False),
        max_context_tokens=f.int("max_position_embeddings"),
        sliding_window=window,
        num_sliding_layers=sliding,
    )


def _parse_llama(f: _Fields, family: str) -> dict[str, Any]:
    return _llama_like(f, family)


def _parse_qwen2(f: _Fields, family: str) -> dict[str, Any]:
    out = _llama_like(f, family)
    # Qwen2 always has q/k/v biases (no o_proj bias); the config has no attention_bias key.
    out["attention_bias"] = f.bool("attention_bias", default=True)
    return out


def _parse_mixtral(f: _Fields, family: str) -> dict[str, Any]:
    out = _llama_like(f, family)
    out["moe"] = MoESpec(
        num_experts=f.int("num_local_experts"),
        top_k=f.int("num_experts_per_tok"),
        expert_intermediate_size=out["intermediate_size"],
    )
    return out


def _qwen_moe_layout(f: _Fields, num_layers: int) -> tuple[int, int]:
    """(first_dense_layers, layer_freq) from decoder_sparse_step and mlp_only_layers.

    transformers Qwen3MoeDecoderLayer: layer i is MoE iff i not in mlp_only_layers and (i + 1) % step == 0.
    """
    step = f.int("decoder_sparse_step", default=1)
    dense_only = f.list("mlp_only_layers", default=[])
    if not all(isinstance(i, int) and not isinstance(i, bool) and 0 <= i < num_layers for i in dense_only):
        raise InputError(
            f"{f.where}: field 'mlp_only_layers' must list layer indices in [0, {num_layers}), got {dense_only!r}"
        )
    dense_set = set(dense_only)
    moe_layers = [i for i in range(num_layers) if i not in dense_set and (i + 1) % step == 0]
    if not moe_layers:
        raise InputError(f"{f.where}: decoder_sparse_step/mlp_only_layers leave no MoE layer")
    first, freq = moe_layers[0], step
    if moe_layers != list(range(first, num_layers, freq)):
        raise InputError(
            f"{f.where}: field 'mlp_only_layers'={dense_only!r} with decoder_sparse_step={step} gives MoE layers "
            f"that are not 'first k dense, then every n-th' (MoESpec cannot represent this layout)"
        )
    return first, freq


def _parse_qwen_moe(f: _Fields, family: str) -> dict[str, Any]:
    out = _parse_qwen2(f, family) if family == "qwen2_moe" else _llama_like(f, family)
    first, freq = _qwen_moe_layout(f, out["num_layers"])
    shared = f.count("shared_expert_intermediate_size", default=0) if family == "qwen2_moe" else 0
    out["moe"] = MoESpec(
        num_experts=f.int("num_experts"),
        top_k=f.int("num_experts_per_tok"),
        expert_intermediate_size=f.int("moe_intermediate_size"),
        num_shared_experts=1 if shared else 0,
        shared_intermediate_size=shared,
        first_dense_layers=first,
        dense_intermediate_size=out["intermediate_size"] if (first or freq > 1) else 0,
        layer_freq=freq,
    )
    return out


def _parse_deepseek(f: _Fields, family: str) -> dict[str, Any]:
    out = _llama_like(f, family)
    mla = MLASpec(
        q_lora_rank=f.count("q_lora_rank", default=0),  # null in DeepSeek-V2-Lite: full-rank query
        kv_lora_rank=f.int("kv_lora_rank"),
        qk_nope_head_dim=f.int("qk_nope_head_dim"),
        qk_rope_head_dim=f.int("qk_rope_head_dim"),
        v_head_dim=f.int("v_head_dim"),
    )
    out["mla"] = mla
    # head_dim of an MLA model = width of one head's q.k dot product (nope + rope part); V uses v_head_dim.
    out["head_dim"] = mla.qk_nope_head_dim + mla.qk_rope_head_dim
    n_routed = f.int("n_routed_experts", default=None, nullable=True)
    if n_routed is not None:
        moe_ffn = f.int("moe_intermediate_size")
        n_shared = f.count("n_shared_experts", default=0)
        first = f.count("first_k_dense_replace", default=0)
        out["moe"] = MoESpec(
            num_experts=n_routed,
            top_k=f.int("num_experts_per_tok"),
            expert_intermediate_size=moe_ffn,
            num_shared_experts=n_shared,
            # modeling_deepseek.py: shared_experts = DeepseekV3MLP(intermediate_size=moe_intermediate_size *
            # n_shared_experts); we describe it as n_shared experts of moe_intermediate_size each.
            shared_intermediate_size=moe_ffn if n_shared else 0,
            first_dense_layers=first,
            dense_intermediate_size=out["intermediate_size"] if first else 0,
            layer_freq=f.int("moe_layer_freq", default=1),
            # noaux_tc routing adds a learned per-expert bias (e_score_correction_bias) to the scores.
            router_bias=f.str("topk_method", default="") == "noaux_tc",
        )
    return out


def _parse_gpt_oss(f: _Fields, family: str) -> dict[str, Any]:
    out = _llama_like(f, family)
    # gpt-oss experts carry gate_up/down biases and the router a bias (transformers GptOssExperts/TopKRouter).
    out["mlp_bias"] = True
    out["moe"] = MoESpec(
        num_experts=f.int("num_local_experts"),
        top_k=f.int("experts_per_token", "num_experts_per_tok"),
        expert_intermediate_size=out["intermediate_size"],
        router_bias=True,
    )
    return out


def _parse_opt(f: _Fields, family: str) -> dict[str, Any]:
    hidden = f.int("hidden_size")
    heads = f.int("num_attention_heads")
    proj = f.int("word_embed_proj_dim", default=hidden)
    if proj != hidden:
        raise InputError(
            f"{f.where}: field 'word_embed_proj_dim'={proj} differs from hidden_size={hidden} "
            f"(OPT-350m style project_in/project_out); ModelSpec has no field for that projection"
        )
    if not f.bool("do_layer_norm_before", default=True):
        log.info("%s: post-LayerNorm OPT variant; described as layernorm all the same", f.where)
    bias = f.bool("enable_bias", default=True)
    return dict(
        vocab_size=f.int("vocab_size"),
        hidden_size=hidden,
        num_layers=f.int("num_hidden_layers"),
        num_heads=heads,
        num_kv_heads=heads,
        head_dim=_head_dim(f, hidden, heads),
        intermediate_size=f.int("ffn_dim"),
        mlp_gated=False,
        activation=f.str("activation_function", default="relu"),
        norm="layernorm",
        position="learned",
        attention_bias=bias,
        mlp_bias=bias,
        tie_word_embeddings=f.bool("tie_word_embeddings", default=True),  # HF OPTConfig default
        max_context_tokens=f.int("max_position_embeddings"),
    )


def _parse_bloom(f: _Fields, family: str) -> dict[str, Any]:
    hidden = f.int("hidden_size", "n_embed")
    heads = f.int("n_head", "num_attention_heads")
    return dict(
        vocab_size=f.int("vocab_size"),
        hidden_size=hidden,
        num_layers=f.int("n_layer", "num_hidden_layers"),
        num_heads=heads,
        num_kv_heads=heads,
        head_dim=_head_dim(f, hidden, heads),
        intermediate_size=4 * hidden,  # BloomMLP: dense_h_to_4h / dense_4h_to_h
        mlp_gated=False,
        activation="gelu",
        norm="layernorm",
        position="alibi",
        attention_bias=True,
        mlp_bias=True,
        tie_word_embeddings=f.bool("tie_word_embeddings", default=True),
        max_context_tokens=f.int("seq_length", default=BLOOM_TRAIN_SEQ_TOKENS),
    )


def _parse_gpt2(f: _Fields, family: str) -> dict[str, Any]:
    """gpt2 and gptj share n_embd/n_layer/n_head/n_inner/n_positions."""
    hidden = f.int("n_embd", "hidden_size")
    heads = f.int("n_head", "num_attention_heads")
    inner = f.int("n_inner", default=None, nullable=True) or 4 * hidden  # HF: n_inner null -> 4 * n_embd
    gptj = family == "gptj"
    return dict(
        vocab_size=f.int("vocab_size"),
        hidden_size=hidden,
        num_layers=f.int("n_layer", "num_hidden_layers"),
        num_heads=heads,
        num_kv_heads=heads,
        head_dim=_head_dim(f, hidden, heads),
        intermediate_size=inner,
        mlp_gated=False,
        activation=f.str("activation_function", default="gelu_new"),
        norm="layernorm",
        position="rope" if gptj else "learned",  # GPT-J: partial rotary (rotary_dim) embeddings
        attention_bias=not gptj,  # GPT-J q/k/v/out projections have no bias; GPT-2 Conv1D layers do
        mlp_bias=True,
        tie_word_embeddings=f.bool("tie_word_embeddings", default=not gptj),
        max_context_tokens=f.int("n_positions", "max_position_embeddings"),
    )


def _parse_gpt_neo(f: _Fields, family: str) -> dict[str, Any]:
    hidden = f.int("hidden_size")
    heads = f.int("num_heads")
    layers = f.int("num_layers")
    # attention_types = [[["global", "local"], 12]] expands to the per-layer pattern (HF GPTNeoConfig).
    pattern: list[str] = []
    for entry in f.list("attention_types", default=[[["global"], layers]]):
        if not (isinstance(entry, list) and len(entry) == 2 and isinstance(entry[0], list)):
            raise InputError(
                f"{f.where}: field 'attention_types' entry {entry!r} is not [[types...], repeat]"
            )
        kinds, repeat = entry
        if not isinstance(repeat, int) or not all(k in ("global", "local") for k in kinds):
            raise InputError(f"{f.where}: field 'attention_types' entry {entry!r} has bad types or repeat")
        pattern.extend(kinds * repeat)
    if len(pattern) != layers:
        raise InputError(
            f"{f.where}: field 'attention_types' covers {len(pattern)} layers, num_layers={layers}"
        )
    local = pattern.count("local")
    return dict(
        vocab_size=f.int("vocab_size"),
        hidden_size=hidden,
        num_layers=layers,
        num_heads=heads,
        num_kv_heads=heads,
        head_dim=_head_dim(f, hidden, heads),
        intermediate_size=f.int("intermediate_size", default=None, nullable=True) or 4 * hidden,
        mlp_gated=False,
        activation=f.str("activation_function", default="gelu_new"),
        norm="layernorm",
        position="learned",
        attention_bias=False,  # GPTNeoSelfAttention: q/k/v without bias (out_proj has one)
        mlp_bias=True,
        tie_word_embeddings=f.bool("tie_word_embeddings", default=True),
        max_context_tokens=f.int("max_position_embeddings"),
        sliding_window=f.int("window_size", default=256) if local else None,
        num_sliding_layers=local,
    )


def _parse_llm_analysis(f: _Fields, family: str) -> dict[str, Any]:
    """llm-analysis ModelConfig JSON: described GPT-3-style (plain GELU MLP of ffn_embed_dim, biases, learned pos)."""
    hidden = f.int("hidden_dim")
    heads = f.int("n_head")
    # BLOOM entries (model_type or name) use ALiBi, and llm-analysis leaves their max_seq_len null
    bloom = f.cfg.get("model_type") == "bloom" or str(f.cfg.get("name", "")).startswith("bloom")
    seq = f.int("max_seq_len", default=BLOOM_TRAIN_SEQ_TOKENS if bloom else _MISSING, nullable=bloom)
    return dict(
        vocab_size=f.int("vocab_size"),
        hidden_size=hidden,
        num_layers=f.int("num_layers"),
        num_heads=heads,
        num_kv_heads=f.int("num_key_value_heads", default=heads, nullable=True) or heads,
        head_dim=_head_dim(f, hidden, heads),
        # llm-analysis ModelConfig: ffn_embed_dim None -> 4 * hidden_dim
        intermediate_size=f.int("ffn_embed_dim", default=None, nullable=True) or 4 * hidden,
        mlp_gated=False,
        activation="gelu",
        norm="layernorm",
        position="alibi" if bloom else "learned",
        attention_bias=True,
        mlp_bias=True,
        tie_word_embeddings=True,
        max_context_tokens=seq or BLOOM_TRAIN_SEQ_TOKENS,
    )


# ---- architectures described layer by layer (ModelSpec.layers) ----------------------------------------------
# Each parser below reads the per-layer structure of one family into LayerGroups; `_finish` derives the
# uniform-stack fields (heads, window, moe, mla ...) that the rest of the code and the simulator read.

HOW_TO_DESCRIBE = (
    "describe the model instead with a config.json of a supported model_type that has the same shapes "
    "(e.g. 'llama' for a dense GQA model, 'qwen3_moe' for MoE, 'deepseek_v3' for MLA), or build a ModelSpec "
    "in Python with `layers=` groups (model.spec: GQAAttention, MLAAttention, SparseAttention, "
    "LinearAttention, Mamba2Mixer; DenseMLP, MoEMLP)"
)


def _text_fields(f: _Fields) -> _Fields:
    """The language model's fields: `text_config` of a multimodal (…ForConditionalGeneration) config."""
    text = f.cfg.get("text_config")
    if text is None:
        return f
    if not isinstance(text, Mapping):
        raise InputError(f"{f.where}: field 'text_config' must be an object, got {text!r}")
    return _Fields(text, f"{f.where} text_config")


def _vision(f: _Fields, out_hidden: int) -> VisionSpec | None:
    """The image encoder of `vision_config` (Qwen3-VL/3.5 `depth`/`num_heads`, Gemma/CLIP `num_hidden_layers`,
    Kimi `vt_*` names), None when the config has none."""
    raw = f.cfg.get("vision_config")
    if not isinstance(raw, Mapping):
        return None
    v = _Fields(raw, f"{f.where} vision_config")
    merge = v.cfg.get("spatial_merge_size") or v.cfg.get("pooling_kernel_size")
    kernel = v.cfg.get("merge_kernel_size")
    if merge is None and isinstance(kernel, list) and kernel:
        merge = kernel[0]
    comp = v.cfg.get("img_token_compression_config")
    if merge is None and isinstance(comp, Mapping):
        merge = comp.get("spatial_merge_size")
    return VisionSpec(
        num_layers=v.int("depth", "num_hidden_layers", "vt_num_hidden_layers"),
        hidden_size=v.int("hidden_size", "vt_hidden_size"),
        intermediate_size=v.int("intermediate_size", "vt_intermediate_size"),
        num_heads=v.int("num_heads", "num_attention_heads", "vt_num_attention_heads"),
        patch_size=v.int("patch_size"),
        merge_size=merge if isinstance(merge, int) and merge > 0 else 1,
        out_hidden_size=v.int("out_hidden_size", "text_hidden_size", "projection_dim", default=out_hidden),
    )


def _base(f: _Fields, **extra: Any) -> dict[str, Any]:
    """Model-wide fields of a RMSNorm/RoPE/gated-MLP decoder; the parser adds `layers` and calls _finish."""
    out = dict(
        vocab_size=f.int("vocab_size"),
        hidden_size=f.int("hidden_size"),
        activation=f.str("hidden_act", "hidden_activation", default="silu"),
        tie_word_embeddings=f.bool("tie_word_embeddings", default=False),
        max_context_tokens=f.int("max_position_embeddings"),
        mtp_layers=f.count("num_nextn_predict_layers", "mtp_num_hidden_layers", default=0),
    )
    out.update(extra)
    return out


def _finish(out: dict[str, Any], per_layer: list[tuple[Mixer, MLP]]) -> dict[str, Any]:
    """Group consecutive equal layers and fill the uniform-stack fields from the groups."""
    groups: list[LayerGroup] = []
    for mixer, mlp in per_layer:
        if groups and groups[-1].mixer == mixer and groups[-1].mlp == mlp:
            groups[-1] = LayerGroup(count=groups[-1].count + 1, mixer=mixer, mlp=mlp)
        else:
            groups.append(LayerGroup(count=1, mixer=mixer, mlp=mlp))
    out["layers"] = tuple(groups)
    out["num_layers"] = len(per_layer)
    spans: dict[int, int] = {}
    for mixer, _ in per_layer:
        span = bounded_span(mixer)
        if span is not None:
            spans[span] = spans.get(span, 0) + 1
    if spans:  # the most common bounded span is the one the batch aggregates are computed with
        window = max(spans, key=lambda w: spans[w])
        out.update(sliding_window=window, num_sliding_layers=spans[window])
    attn = next((m for m, _ in per_layer if not isinstance(m, (NoMixer, LinearAttention, Mamba2Mixer))), None)
    if isinstance(attn, (MLAAttention, SparseAttention)) and attn.mla is not None:
        a = attn.mla
        out.update(mla=a, num_heads=attn.num_heads, num_kv_heads=attn.num_heads,
                   head_dim=a.qk_nope_head_dim + a.qk_rope_head_dim)
    elif isinstance(attn, (GQAAttention, SparseAttention)):
        out.update(num_heads=attn.num_heads, num_kv_heads=attn.num_kv_heads, head_dim=attn.head_dim)
    else:
        raise InputError(f"model with layers {[(g.count, g.mixer.kind) for g in groups]} has no attention layer")
    moe = next((m.moe for _, m in per_layer if isinstance(m, MoEMLP)), None)
    dense = next((m.intermediate_size for _, m in per_layer if isinstance(m, DenseMLP)), None)
    out["moe"] = moe
    out["intermediate_size"] = dense or (moe.expert_intermediate_size if moe else 1)
    return out


def _layer_list(f: _Fields, key: str, n: int, known: tuple[str, ...]) -> list[str]:
    """A per-layer list of kind names; InputError naming the field for a wrong length or an unknown kind."""
    items = f.list(key)
    if len(items) != n:
        raise InputError(f"{f.where}: field {key!r} lists {len(items)} layers, num_hidden_layers={n}")
    unknown = sorted({str(t) for t in items} - set(known))
    if unknown:
        raise InputError(f"{f.where}: field {key!r} has layer kinds {unknown} that are not understood (known: "
                         f"{', '.join(known)}); {HOW_TO_DESCRIBE}")
    return [str(t) for t in items]


def _flags(f: _Fields, key: str, n: int) -> list[bool]:
    """A per-layer 0/1 list (moe_layer_freq, hybrid_layer_pattern, sparse_attention_freq)."""
    return [t == "1" for t in _layer_list(f, key, n, ("0", "1"))] if False else [
        bool(x) for x in _checked_flags(f, key, n)]


def _checked_flags(f: _Fields, key: str, n: int) -> list[int]:
    items = f.list(key)
    if len(items) != n or not all(x in (0, 1) and not isinstance(x, float) for x in items):
        raise InputError(f"{f.where}: field {key!r} must list 0 or 1 for each of the {n} layers, got {items!r}")
    return items


def _gqa(f: _Fields, **kw: Any) -> GQAAttention:
    try:
        return GQAAttention(**kw)
    except ValidationError as exc:
        raise InputError(f"{f.where}: attention fields give an invalid layer: {exc}") from exc


def _mla_of(f: _Fields) -> MLASpec:
    return MLASpec(
        q_lora_rank=f.count("q_lora_rank", default=0),
        kv_lora_rank=f.int("kv_lora_rank"),
        qk_nope_head_dim=f.int("qk_nope_head_dim"),
        qk_rope_head_dim=f.int("qk_rope_head_dim"),
        v_head_dim=f.int("v_head_dim"),
    )


def _deepseek_moe(f: _Fields, experts_key: str = "n_routed_experts") -> MoESpec:
    inter = f.int("moe_intermediate_size")
    shared = f.count("n_shared_experts", "num_shared_experts", default=0)
    return MoESpec(num_experts=f.int(experts_key), top_k=f.int("num_experts_per_tok", "num_experts_per_token"),
                   expert_intermediate_size=inter, num_shared_experts=shared,
                   shared_intermediate_size=inter if shared else 0, router_bias=True)


def _parse_llama4(f: _Fields, family: str) -> dict[str, Any]:
    """Llama-4: chunked local attention (attention_chunk_size) in RoPE layers, full attention in the NoPE layers
    (every 4th: transformers Llama4TextConfig.no_rope_layers default), MoE every interleave_moe_layer_step-th
    layer with one shared expert (Llama4TextMoe), dense layers of intermediate_size_mlp."""
    t = _text_fields(f)
    n = t.int("num_hidden_layers")
    nope = t.list("no_rope_layers", default=[int((i + 1) % 4 != 0) for i in range(n)]) or [
        int((i + 1) % 4 != 0) for i in range(n)]
    if len(nope) != n:
        raise InputError(f"{t.where}: field 'no_rope_layers' lists {len(nope)} layers, num_hidden_layers={n}")
    heads = dict(num_heads=t.int("num_attention_heads"), num_kv_heads=t.int("num_key_value_heads"),
                 head_dim=t.int("head_dim"), bias=t.bool("attention_bias", default=False))
    chunk = t.int("attention_chunk_size", default=None, nullable=True)
    local = _gqa(t, kind="chunked", window=chunk, **heads) if chunk else _gqa(t, **heads)
    nope_layer = _gqa(t, rope=False, **heads)
    step = t.int("interleave_moe_layer_step", default=1)
    inter = t.int("intermediate_size")
    moe = MoEMLP(moe=MoESpec(num_experts=t.int("num_local_experts"), top_k=t.int("num_experts_per_tok"),
                             expert_intermediate_size=inter, num_shared_experts=1, shared_intermediate_size=inter))
    dense = DenseMLP(intermediate_size=t.int("intermediate_size_mlp", default=inter))
    per_layer = [(local if nope[i] else nope_layer, moe if (i + 1) % step == 0 else dense) for i in range(n)]
    out = _base(t, max_context_tokens=t.int("max_position_embeddings"), vision=_vision(f, t.int("hidden_size")))
    out["tie_word_embeddings"] = f.bool("tie_word_embeddings", default=out["tie_word_embeddings"])
    return _finish(out, per_layer)


def _parse_gemma(f: _Fields, family: str) -> dict[str, Any]:
    """Gemma-3/4: sliding and full layers (layer_types), full layers with their own KV heads/head width
    (num_global_key_value_heads, global_head_dim) and K reused as V (attention_k_eq_v); Gemma-4 MoE layers run
    the dense MLP beside the routed experts (described as one shared expert); GeGLU MLPs, q/k norms."""
    t = _text_fields(f)
    n = t.int("num_hidden_layers")
    types = _layer_list(t, "layer_types", n, ("sliding_attention", "full_attention"))
    heads, kv, hd = t.int("num_attention_heads"), t.int("num_key_value_heads"), t.int("head_dim")
    window = t.int("sliding_window")
    local = _gqa(t, kind="sliding", window=window, num_heads=heads, num_kv_heads=kv, head_dim=hd, qk_norm=True)
    full = _gqa(t, num_heads=heads, num_kv_heads=t.int("num_global_key_value_heads", default=kv, nullable=True) or kv,
                head_dim=t.int("global_head_dim", default=hd, nullable=True) or hd, qk_norm=True,
                k_eq_v=bool(t.cfg.get("attention_k_eq_v", False)))
    inter = t.int("intermediate_size")
    mlp: MLP = DenseMLP(intermediate_size=inter)
    if t.cfg.get("enable_moe_block"):
        mlp = MoEMLP(moe=MoESpec(num_experts=t.int("num_experts"), top_k=t.int("top_k_experts"),
                                 expert_intermediate_size=t.int("moe_intermediate_size", "expert_intermediate_size"),
                                 num_shared_experts=1, shared_intermediate_size=inter))
    per_layer = [(local if k == "sliding_attention" else full, mlp) for k in types]
    out = _base(t, activation=t.str("hidden_activation", "hidden_act", default="gelu_pytorch_tanh"),
                tie_word_embeddings=f.bool("tie_word_embeddings", default=True), vision=_vision(f, t.int("hidden_size")))
    return _finish(out, per_layer)


def _parse_qwen_hybrid(f: _Fields, family: str) -> dict[str, Any]:
    """Qwen3.5/3.6 and Qwen3-Next: Gated DeltaNet linear-attention layers and gated full-attention layers
    (layer_types), MoE with one shared expert (or a dense MLP), MTP module, Qwen3-VL-style vision encoder."""
    t = _text_fields(f)
    n = t.int("num_hidden_layers")
    types = _layer_list(t, "layer_types", n, ("linear_attention", "full_attention"))
    full = _gqa(t, num_heads=t.int("num_attention_heads"), num_kv_heads=t.int("num_key_value_heads"),
                head_dim=t.int("head_dim"), qk_norm=True, output_gate=True)
    linear = LinearAttention(num_k_heads=t.int("linear_num_key_heads"), num_v_heads=t.int("linear_num_value_heads"),
                             k_head_dim=t.int("linear_key_head_dim"), v_head_dim=t.int("linear_value_head_dim"),
                             conv_kernel=t.int("linear_conv_kernel_dim", default=4))
    if "num_experts" in t.cfg and t.cfg["num_experts"]:
        shared = t.count("shared_expert_intermediate_size", default=0)
        mlp: MLP = MoEMLP(moe=MoESpec(num_experts=t.int("num_experts"), top_k=t.int("num_experts_per_tok"),
                                      expert_intermediate_size=t.int("moe_intermediate_size"),
                                      num_shared_experts=1 if shared else 0, shared_intermediate_size=shared))
    else:
        mlp = DenseMLP(intermediate_size=t.int("intermediate_size"))
    dense_only = set(t.list("mlp_only_layers", default=[]))
    dense = DenseMLP(intermediate_size=t.int("intermediate_size")) if dense_only else mlp
    per_layer = [(linear if k == "linear_attention" else full, dense if i in dense_only else mlp)
                 for i, k in enumerate(types)]
    out = _base(t, vision=_vision(f, t.int("hidden_size")))
    out["tie_word_embeddings"] = f.bool("tie_word_embeddings", default=out["tie_word_embeddings"])
    return _finish(out, per_layer)


def _parse_qwen3_vl(f: _Fields, family: str) -> dict[str, Any]:
    """Qwen3-VL(-MoE): the Qwen3 / Qwen3-MoE language model of text_config plus the vision encoder."""
    t = _text_fields(f)
    out = _parse_qwen_moe(t, "qwen3_moe") if family == "qwen3_vl_moe" else _llama_like(t, "qwen3")
    out["vision"] = _vision(f, out["hidden_size"])
    out["tie_word_embeddings"] = f.bool("tie_word_embeddings", default=out["tie_word_embeddings"])
    return out


def _parse_deepseek_sparse(f: _Fields, family: str) -> dict[str, Any]:
    """DeepSeek-V3.2 and GLM-5 (glm_moe_dsa): DeepSeek-V3 (MLA + MoE) with DeepSeek sparse attention: a
    lightning indexer of index_n_heads x index_head_dim selecting index_topk tokens (DeepSeek-V3.2-Exp report)."""
    # GLM-5.2+ list the layer kinds (layer_types: deepseek_sparse_attention / full_attention); without the
    # list every layer is sparse.
    plain = _Fields({k: v for k, v in f.cfg.items() if k != "layer_types"}, f.where)
    out = _parse_deepseek(plain, family)
    n = out["num_layers"]
    dsa = SparseAttention(num_heads=out["num_heads"], mla=out["mla"], index_heads=f.int("index_n_heads"),
                          index_head_dim=f.int("index_head_dim"), topk=f.int("index_topk"))
    mla = MLAAttention(num_heads=out["num_heads"], mla=out["mla"])
    kinds = (_layer_list(f, "layer_types", n, ("deepseek_sparse_attention", "full_attention"))
             if f.cfg.get("layer_types") else ["deepseek_sparse_attention"] * n)
    mixers: list[Mixer] = [dsa if k == "deepseek_sparse_attention" else mla for k in kinds]
    moe = out["moe"]
    spec = ModelSpec(name="_", family="deepseek_v3", **{k: v for k, v in out.items() if k != "mtp_layers"})
    dense = DenseMLP(intermediate_size=out["intermediate_size"])
    per_layer = [(mixers[i], MoEMLP(moe=moe) if spec.is_moe_layer(i) else dense) for i in range(n)]
    out = {k: v for k, v in out.items() if k not in ("sliding_window", "num_sliding_layers")}
    out["mtp_layers"] = f.count("num_nextn_predict_layers", default=0)
    return _finish(out, per_layer)


def _parse_kimi(f: _Fields, family: str) -> dict[str, Any]:
    """Kimi-K2/K2.5 (DeepSeek-V3 architecture under model_type kimi_k2 / kimi_k25 with a vision encoder) and
    Kimi-K3 (kimi_linear: Kimi delta attention layers + MLA layers, latent MoE)."""
    t = _text_fields(f)
    text_type = t.cfg.get("model_type", family)
    if text_type != "kimi_linear":
        out = _parse_deepseek(t, "deepseek_v3")
        out["mtp_layers"] = t.count("num_nextn_predict_layers", default=0)
        out["vision"] = _vision(f, out["hidden_size"])
        return out
    n = t.int("num_hidden_layers")
    lin_cfg = t.cfg.get("linear_attn_config")
    if not isinstance(lin_cfg, Mapping):
        raise InputError(f"{t.where}: field 'linear_attn_config' is missing; {HOW_TO_DESCRIBE}")
    lin = _Fields(lin_cfg, f"{t.where} linear_attn_config")
    full_layers = {i - 1 for i in lin.list("full_attn_layers")}  # 1-based layer numbers (modeling_kimi_linear)
    heads, hd = lin.int("num_heads"), lin.int("head_dim")
    kda = LinearAttention(num_k_heads=heads, num_v_heads=heads, k_head_dim=hd, v_head_dim=hd,
                          conv_kernel=lin.int("short_conv_kernel_size", default=4))
    mla = MLAAttention(num_heads=t.int("num_attention_heads"), mla=_mla_of(t))
    e = t.int("num_experts")
    inter = t.int("moe_intermediate_size")
    shared = t.count("num_shared_experts", default=0)
    moe = MoEMLP(moe=MoESpec(num_experts=e, top_k=t.int("num_experts_per_token", "num_experts_per_tok"),
                             expert_intermediate_size=inter, num_shared_experts=shared,
                             shared_intermediate_size=inter if shared else 0, router_bias=True,
                             latent_size=t.count("routed_expert_hidden_size", default=0)))
    first = t.count("first_k_dense_replace", default=0)
    dense = DenseMLP(intermediate_size=t.int("intermediate_size"))
    per_layer = [(mla if i in full_layers else kda, dense if i < first else moe) for i in range(n)]
    out = _base(t, vision=_vision(f, t.int("hidden_size")))
    return _finish(out, per_layer)


def _parse_minimax(f: _Fields, family: str) -> dict[str, Any]:
    """MiniMax-M2.x (GQA + MoE, MTP modules) and M3 (block-sparse attention after the first dense-attention
    layers, sparse_attention_config; dense MLP in the first layers, moe_layer_freq)."""
    t = _text_fields(f)
    n = t.int("num_hidden_layers")
    heads = dict(num_heads=t.int("num_attention_heads"), num_kv_heads=t.int("num_key_value_heads"),
                 head_dim=t.int("head_dim"), qk_norm=t.bool("use_qk_norm", default=False))
    full = _gqa(t, **heads)
    mixers: list[Mixer] = [full] * n
    sparse_cfg = t.cfg.get("sparse_attention_config")
    if isinstance(sparse_cfg, Mapping) and sparse_cfg.get("use_sparse_attention"):
        s = _Fields(sparse_cfg, f"{t.where} sparse_attention_config")
        dsa = SparseAttention(num_heads=heads["num_heads"], num_kv_heads=heads["num_kv_heads"],
                              head_dim=heads["head_dim"], index_heads=s.int("sparse_num_index_heads"),
                              index_head_dim=s.int("sparse_index_dim"),
                              topk=s.int("sparse_topk_blocks") * s.int("sparse_block_size"))
        mixers = [dsa if on else full for on in _flags(s, "sparse_attention_freq", n)]
    shared_inter = t.count("shared_intermediate_size", default=0)
    n_shared = t.count("n_shared_experts", default=1 if shared_inter else 0) if shared_inter else 0
    moe = MoEMLP(moe=MoESpec(num_experts=t.int("num_local_experts"), top_k=t.int("num_experts_per_tok"),
                             expert_intermediate_size=t.int("moe_intermediate_size", "intermediate_size"),
                             num_shared_experts=n_shared, shared_intermediate_size=shared_inter if n_shared else 0,
                             router_bias=t.bool("use_routing_bias", default=False)))
    freq = t.cfg.get("moe_layer_freq")
    if isinstance(freq, list):
        dense = DenseMLP(intermediate_size=t.int("dense_intermediate_size"))
        mlps: list[MLP] = [moe if on else dense for on in _flags(t, "moe_layer_freq", n)]
    else:
        mlps = [moe] * n
    out = _base(t, vision=_vision(f, t.int("hidden_size")))
    out["mtp_layers"] = t.count("num_mtp_modules", "num_nextn_predict_layers", default=0) if t.cfg.get(
        "use_mtp", True) else 0
    return _finish(out, list(zip(mixers, mlps, strict=True)))


def _parse_mimo(f: _Fields, family: str) -> dict[str, Any]:
    """MiMo-7B: the Qwen2 architecture (q/k/v biases) plus MTP layers."""
    out = _parse_qwen2(f, "qwen2")
    return out


def _parse_mimo_v2(f: _Fields, family: str) -> dict[str, Any]:
    """MiMo-V2-Flash: full and sliding-window layers with their own head counts (hybrid_layer_pattern: 1 =
    sliding), v_head_dim != head_dim, dense first layer then MoE (moe_layer_freq)."""
    n = f.int("num_hidden_layers")
    full = _gqa(f, num_heads=f.int("num_attention_heads"), num_kv_heads=f.int("num_key_value_heads"),
                head_dim=f.int("head_dim"), v_head_dim=f.count("v_head_dim", default=0))
    swa = _gqa(f, kind="sliding", window=f.int("sliding_window_size", "sliding_window"),
               num_heads=f.int("swa_num_attention_heads", "num_attention_heads"),
               num_kv_heads=f.int("swa_num_key_value_heads", "num_key_value_heads"),
               head_dim=f.int("swa_head_dim", "head_dim"), v_head_dim=f.count("swa_v_head_dim", default=0))
    mixers = [swa if on else full for on in _flags(f, "hybrid_layer_pattern", n)]
    moe = MoEMLP(moe=_deepseek_moe(f))
    dense = DenseMLP(intermediate_size=f.int("intermediate_size"))
    mlps = [moe if on else dense for on in _flags(f, "moe_layer_freq", n)]
    return _finish(_base(f), list(zip(mixers, mlps, strict=True)))


def _parse_step3(f: _Fields, family: str) -> dict[str, Any]:
    """Step-3.x Flash: full and sliding layers (layer_types), first_k_dense_replace dense layers, then MoE
    with share_expert_dim shared experts, MTP layers."""
    n = f.int("num_hidden_layers")
    types = _layer_list(f, "layer_types", n, ("sliding_attention", "full_attention"))
    heads = dict(num_heads=f.int("num_attention_heads"), num_kv_heads=f.int("num_key_value_heads"),
                 head_dim=f.int("head_dim"))
    full, swa = _gqa(f, **heads), _gqa(f, kind="sliding", window=f.int("sliding_window"), **heads)
    shared = f.count("n_shared_experts", default=0)
    moe = MoEMLP(moe=MoESpec(num_experts=f.int("num_experts"), top_k=f.int("num_experts_per_tok"),
                             expert_intermediate_size=f.int("moe_intermediate_size"), num_shared_experts=shared,
                             shared_intermediate_size=f.count("share_expert_dim", default=0) if shared else 0,
                             router_bias=f.bool("use_moe_router_bias", default=False)))
    dense = DenseMLP(intermediate_size=f.int("intermediate_size"))
    first = f.count("first_k_dense_replace", default=0)
    per_layer = [(swa if k == "sliding_attention" else full, dense if i < first else moe)
                 for i, k in enumerate(types)]
    return _finish(_base(f), per_layer)


_SSM_STATE_DTYPES = {"float32": "fp32", "bfloat16": "bf16", "float16": "fp16"}


def _ssm_state_dtype(f: _Fields) -> str | None:
    """`mamba_ssm_cache_dtype` of the config ("auto" or absent = the KV-cache dtype, as in vLLM)."""
    value = f.str("mamba_ssm_cache_dtype", default="auto")
    if value == "auto":
        return None
    if value not in _SSM_STATE_DTYPES:
        raise InputError(f"{f.where}: field 'mamba_ssm_cache_dtype' is {value!r}; known: auto, "
                         f"{', '.join(_SSM_STATE_DTYPES)}")
    return _SSM_STATE_DTYPES[value]


_NEMOTRON_H_BLOCKS = {"M": "mamba", "*": "attention", "-": "mlp", "E": "moe"}


def _parse_nemotron_h(f: _Fields, family: str) -> dict[str, Any]:
    """Nemotron-H and Nemotron-3: a stack of single-operator blocks (hybrid_override_pattern characters or
    layers_block_type names): Mamba-2 mixers, GQA attention, squared-ReLU MLPs, (latent) MoE."""
    if "layers_block_type" in f.cfg:
        blocks = _layer_list(f, "layers_block_type", len(f.list("layers_block_type")),
                             tuple(_NEMOTRON_H_BLOCKS.values()))
    else:
        pattern = f.str("hybrid_override_pattern")
        unknown = sorted(set(pattern) - set(_NEMOTRON_H_BLOCKS))
        if unknown:
            raise InputError(f"{f.where}: field 'hybrid_override_pattern' has block kinds {unknown} that are not "
                             f"understood (known: M, *, -, E); {HOW_TO_DESCRIBE}")
        blocks = [_NEMOTRON_H_BLOCKS[c] for c in pattern]
    mamba = Mamba2Mixer(num_heads=f.int("mamba_num_heads"), head_dim=f.int("mamba_head_dim"),
                        state_size=f.int("ssm_state_size"), n_groups=f.int("n_groups", default=1),
                        conv_kernel=f.int("conv_kernel", default=4), chunk_size=f.int("chunk_size", default=128),
                        ssm_state_dtype=_ssm_state_dtype(f))
    attn = _gqa(f, num_heads=f.int("num_attention_heads"), num_kv_heads=f.int("num_key_value_heads"),
                head_dim=f.int("head_dim", "attention_head_dim"), bias=f.bool("attention_bias", default=False))
    none_mix, none_mlp = NoMixer(), NoMLP()
    table: dict[str, tuple[Mixer, MLP]] = {"mamba": (mamba, none_mlp), "attention": (attn, none_mlp),
                                           "mlp": (none_mix, DenseMLP(intermediate_size=f.int("intermediate_size")))}
    if "moe" in blocks:
        shared = f.count("moe_shared_expert_intermediate_size", default=0)
        table["moe"] = (none_mix, MoEMLP(moe=MoESpec(
            num_experts=f.int("n_routed_experts"), top_k=f.int("num_experts_per_tok"),
            expert_intermediate_size=f.int("moe_intermediate_size"), num_shared_experts=1 if shared else 0,
            shared_intermediate_size=shared, router_bias=True,
            latent_size=f.count("moe_latent_size", default=0))))
    out = _base(f, mlp_gated=False, activation=f.str("mlp_hidden_act", default="relu2"),
                mlp_bias=f.bool("mlp_bias", default=False))
    return _finish(out, [table[b] for b in blocks])


def _parse_nemotron_nas(f: _Fields, family: str) -> dict[str, Any]:
    """Llama-3.3-Nemotron-Super (DeciLM, nemotron-nas): per-layer block_configs with no-op attention, KV heads
    from n_heads_in_group and FFN widths from ffn_mult (modeling_decilm _ffn_mult_to_intermediate_size)."""
    h, heads = f.int("hidden_size"), f.int("num_attention_heads")
    per_layer: list[tuple[Mixer, MLP]] = []
    for i, block in enumerate(f.list("block_configs")):
        b = _Fields(block if isinstance(block, Mapping) else {}, f"{f.where} block_configs[{i}]")
        a = _Fields(b.cfg.get("attention") or {}, f"{b.where}.attention")
        m = _Fields(b.cfg.get("ffn") or {}, f"{b.where}.ffn")
        for part, key in ((a, "replace_with_linear"), (m, "replace_with_linear"), (a, "window_length"),
                          (a, "sparsify"), (m, "sparsify")):
            if part.cfg.get(key):
                raise InputError(f"{part.where}: field {key!r}={part.cfg[key]!r} is not understood; {HOW_TO_DESCRIBE}")
        if a.cfg.get("no_op"):
            mixer: Mixer = NoMixer()
        else:
            mixer = _gqa(a, num_heads=heads, num_kv_heads=heads // a.int("n_heads_in_group"), head_dim=h // heads)
        if m.cfg.get("no_op"):
            mlp: MLP = NoMLP()
        else:
            mult = m.cfg.get("ffn_mult")
            if not isinstance(mult, (int, float)) or mult <= 0:
                raise InputError(f"{m.where}: field 'ffn_mult' must be a positive number, got {mult!r}")
            inter = int(2 * mult * h / 3)
            mlp = DenseMLP(intermediate_size=-(-inter // 256) * 256)  # rounded up to a multiple of 256
        per_layer.append((mixer, mlp))
    if len(per_layer) != f.int("num_hidden_layers"):
        raise InputError(f"{f.where}: field 'block_configs' lists {len(per_layer)} layers, "
                         f"num_hidden_layers={f.int('num_hidden_layers')}")
    return _finish(_base(f), per_layer)


def _parse_deepseek_v4(f: _Fields, family: str) -> dict[str, Any]:
    """DeepSeek-V4: one shared 512-wide KV head (K reused as V) per layer; compress_ratios per layer: 0 = sliding
    window only, 4 = entries of 4 tokens read through the sparse indexer (index_topk), 128 = entries of 128 tokens
    read whole. The window branch of the compressed layers (sliding_window keys) is not costed."""
    n = f.int("num_hidden_layers")
    ratios = f.list("compress_ratios")
    if len(ratios) != n + 1 and len(ratios) != n:
        raise InputError(f"{f.where}: field 'compress_ratios' lists {len(ratios)} entries for {n} layers")
    heads = dict(num_heads=f.int("num_attention_heads"), num_kv_heads=f.int("num_key_value_heads"),
                 head_dim=f.int("head_dim"))
    swa = _gqa(f, kind="sliding", window=f.int("sliding_window"), k_eq_v=True, **heads)
    mixers: list[Mixer] = []
    for r in ratios[:n]:
        if r == 0:
            mixers.append(swa)
        elif r == 4:
            mixers.append(SparseAttention(num_heads=heads["num_heads"], num_kv_heads=heads["num_kv_heads"],
                                          head_dim=heads["head_dim"], index_heads=f.int("index_n_heads"),
                                          index_head_dim=f.int("index_head_dim"), topk=f.int("index_topk"),
                                          compress_ratio=4, k_eq_v=True))
        elif isinstance(r, int) and r > 0:
            mixers.append(_gqa(f, k_eq_v=True, compress_ratio=r, **heads))
        else:
            raise InputError(f"{f.where}: field 'compress_ratios' entry {r!r} is not understood; {HOW_TO_DESCRIBE}")
    moe = MoEMLP(moe=_deepseek_moe(f))
    return _finish(_base(f), [(m, moe) for m in mixers])


_PARSERS: dict[str, Callable[[_Fields, str], dict[str, Any]]] = {
    "llama": _parse_llama,
    "mistral": _parse_llama,
    "mixtral": _parse_mixtral,
    "qwen2": _parse_qwen2,
    "qwen3": _parse_llama,
    "qwen2_moe": _parse_qwen_moe,
    "qwen3_moe": _parse_qwen_moe,
    "deepseek_v2": _parse_deepseek,
    "deepseek_v3": _parse_deepseek,
    "gpt_oss": _parse_gpt_oss,
    "opt": _parse_opt,
    "bloom": _parse_bloom,
    "gpt2": _parse_gpt2,
    "gptj": _parse_gpt2,
    "gpt_neo": _parse_gpt_neo,
    "llama4": _parse_llama4,
    "gemma3": _parse_gemma,
    "gemma3_text": _parse_gemma,
    "gemma4": _parse_gemma,
    "gemma4_text": _parse_gemma,
    "qwen3_next": _parse_qwen_hybrid,
    "qwen3_5": _parse_qwen_hybrid,
    "qwen3_5_moe": _parse_qwen_hybrid,
    "qwen3_vl": _parse_qwen3_vl,
    "qwen3_vl_moe": _parse_qwen3_vl,
    "deepseek_v32": _parse_deepseek_sparse,
    "glm_moe_dsa": _parse_deepseek_sparse,
    "deepseek_v4": _parse_deepseek_v4,
    "deepseek_ref": _parse_deepseek_v4,
    "kimi_k2": _parse_kimi,
    "kimi_k25": _parse_kimi,
    "kimi_k3": _parse_kimi,
    "minimax_m2": _parse_minimax,
    "minimax_m3": _parse_minimax,
    "minimax_m3_vl": _parse_minimax,
    "mimo": _parse_mimo,
    "mimo_v2_flash": _parse_mimo_v2,
    "step3p7": _parse_step3,
    "nemotron_h": _parse_nemotron_h,
    "nemotron-nas": _parse_nemotron_nas,
}

# `architectures[0]` -> model_type, for configs that lack model_type.
_ARCHITECTURES = {
    "LlamaForCausalLM": "llama",
    "MistralForCausalLM": "mistral",
    "MixtralForCausalLM": "mixtral",
    "Qwen2ForCausalLM": "qwen2",
    "Qwen3ForCausalLM": "qwen3",
    "Qwen2MoeForCausalLM": "qwen2_moe",
    "Qwen3MoeForCausalLM": "qwen3_moe",
    "DeepseekV2ForCausalLM": "deepseek_v2",
    "DeepseekV3ForCausalLM": "deepseek_v3",
    "GptOssForCausalLM": "gpt_oss",
    "OPTForCausalLM": "opt",
    "BloomForCausalLM": "bloom",
    "GPT2LMHeadModel": "gpt2",
    "GPTJForCausalLM": "gptj",
    "GPTNeoForCausalLM": "gpt_neo",
}

LLM_ANALYSIS_FAMILY = "gpt3"


def supported_families() -> list[str]:
    """model_type values that model_from_hf_config understands (plus the llm-analysis format)."""
    return sorted(_PARSERS)


def _is_llm_analysis(cfg: Mapping[str, Any]) -> bool:
    return "hidden_dim" in cfg and "n_head" in cfg and "hidden_size" not in cfg


def _family(f: _Fields) -> str:
    if _is_llm_analysis(f.cfg):
        return LLM_ANALYSIS_FAMILY
    if "model_type" in f.cfg:
        model_type = f.str("model_type")
        if model_type not in _PARSERS:
            raise InputError(
                f"{f.where}: field 'model_type'={model_type!r} is not supported; "
                f"supported: {', '.join(supported_families())}; {HOW_TO_DESCRIBE}"
            )
        return model_type
    archs = f.list("architectures", default=[])
    for arch in archs:
        if arch in _ARCHITECTURES:
            return _ARCHITECTURES[arch]
    raise InputError(
        f"{f.where}: field 'model_type' is missing and 'architectures'={archs!r} names no supported "
        f"architecture; supported model_type values: {', '.join(supported_families())}"
    )


def model_from_hf_config(config: dict[str, Any], name: str, source: str = "", **overrides: Any) -> ModelSpec:
    """Parse a HuggingFace config.json dict (or an llm-analysis model JSON) into a ModelSpec.

    `source` names the file in error messages and is stored on the spec. `overrides` (hf_id, aliases,
    family ...) replace parsed ModelSpec fields, for presets. Raises InputError naming file and field.
    """
    where = source or f"config of {name!r}"
    if not isinstance(config, Mapping):
        raise InputError(f"{where}: a config must be a JSON object, got {type(config).__name__}")
    f = _Fields(config, where)
    family = _family(f)
    parser = _parse_llm_analysis if family == LLM_ANALYSIS_FAMILY else _PARSERS[family]
    fields = parser(f, family)
    notes = [source] if source else []
    quant = config.get("quantization_config")
    if isinstance(quant, Mapping) and quant.get("quant_method"):
        # Architecture only: the checkpoint's number format is a QuantSpec choice, not part of ModelSpec.
        notes.append(f"checkpoint quantization {quant['quant_method']} (ignored: architecture only)")
    fields.update(name=name, family=family, source="; ".join(notes))
    fields.update(overrides)
    try:
        return ModelSpec(**fields)
    except ValidationError as exc:
        raise InputError(f"{where}: config gives an invalid model description: {exc}") from exc


def read_config_file(path: str | Path) -> dict[str, Any]:
    """The JSON object in `path` (a config.json or a directory holding one); InputError if unreadable or over
    a roofsim.hardware_specs.loading limit (size, nesting depth, encoding)."""
    p = Path(path)
    if p.is_dir():
        p = p / "config.json"
    data = load_json_file(p, what="model config")
    if not isinstance(data, dict):
        raise InputError(f"{p}: a model config must be a JSON object, got {type(data).__name__}")
    return data


def model_from_file(path: str | Path, name: str | None = None) -> ModelSpec:
    """Parse a config.json file (or a directory containing config.json)."""
    p = Path(path)
    file = p / "config.json" if p.is_dir() else p
    config = read_config_file(p)
    if not name:
        default = p.name if p.is_dir() else (p.parent.name if p.name == "config.json" else p.stem)
        own = config.get("name")  # llm-analysis files name their model
        name = own if isinstance(own, str) and own else default
    return model_from_hf_config(config, name, source=str(file))


# ---- presets ----------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Preset:
    name: str
    hf_id: str
    aliases: tuple[str, ...]
    file: str
    quant_file: str = ""  # the checkpoint's hf_quant_config.json (ModelOpt), when it has one
    # ModelSpec fields that differ from the config file: an index entry that reuses another model's config.json
    # for an architecture-equal model states the differences here (index.toml `[model.overrides]`)
    overrides: tuple[tuple[str, Any], ...] = ()


_SUFFIXES = re.compile(r"(-instruct|-chat|-hf|-base|-v\d+(\.\d+)*)$")


def normalize_model_id(text: str) -> str:
    """Lower-case id without org, 'Meta-' prefix and -Instruct/-Chat/-hf/-Base/-v0.1 suffixes."""
    base = text.strip().lower().rpartition("/")[2]
    base = base.removeprefix("meta-")
    while True:
        stripped = _SUFFIXES.sub("", base)
        if stripped == base:
            return base
        base = stripped


def _exact_keys(key: str) -> tuple[str, ...]:
    """A name/HF id as typed (lower case), with and without its org."""
    low = key.strip().lower()
    return (low, low.rpartition("/")[2]) if "/" in low else (low,)


@lru_cache(maxsize=1)
def _presets() -> tuple[tuple[_Preset, ...], dict[str, str], dict[str, str]]:
    """The preset index, a lookup from every exact name/HF id/alias (with and without org) to the canonical name,
    and a loose one from normalised ids (normalize_model_id; the first preset in index order wins, so
    DeepSeek-V3 and DeepSeek-V3.2, equal once '-v3.2' is stripped, are told apart by the exact lookup)."""
    with _INDEX_FILE.open("rb") as fh:
        raw = tomllib.load(fh)
    presets = tuple(
        _Preset(m["name"], m["hf_id"], tuple(m.get("aliases", ())), m["file"], m.get("quant_file", ""),
                tuple(sorted(m.get("overrides", {}).items())))
        for m in raw["model"]
    )
    exact: dict[str, str] = {}
    loose: dict[str, str] = {}
    for p in presets:
        for key in (p.name, p.hf_id, *p.aliases):
            if not key:
                continue
            for k in _exact_keys(key):
                if exact.setdefault(k, p.name) != p.name and k == key.strip().lower():
                    raise RuntimeError(f"{_INDEX_FILE}: {key!r} of {p.name} collides with {exact[k]}")
            loose.setdefault(normalize_model_id(key), p.name)
    return presets, exact, loose


def model_ids() -> list[str]:
    """Canonical names of the bundled presets, in index order."""
    return [p.name for p in _presets()[0]]


def known_model_names() -> list[str]:
    """Canonical names, HF ids and aliases that load_model resolves."""
    return sorted({k for p in _presets()[0] for k in (p.name, p.hf_id, *p.aliases) if k})


def _preset(canonical: str) -> _Preset:
    return next(p for p in _presets()[0] if p.name == canonical)


@cache
def _load_preset(canonical: str) -> ModelSpec:
    preset = _preset(canonical)
    path = PRESET_DIR / preset.file
    config = read_config_file(path)
    cited = config.get("_source")
    source = f"model/presets/{preset.file}" + (f" ({cited})" if isinstance(cited, str) else "")
    if preset.overrides:
        source += " with " + ", ".join(f"{k}={v}" for k, v in preset.overrides)
    return model_from_hf_config(
        config, preset.name, source=source, hf_id=preset.hf_id, aliases=preset.aliases, **dict(preset.overrides)
    )


def _looks_like_path(text: str) -> bool:
    p = Path(text).expanduser()
    return text.endswith(".json") or p.is_file() or (p.is_dir() and (p / "config.json").is_file())


def load_model(name_or_path: str | Path) -> ModelSpec:
    """A ModelSpec from a preset name / HF id / alias (case-insensitive) or a config.json path or directory.

    Raises UnknownNameError (a KeyError, listing close matches) for an unknown name and InputError for a
    file that is missing or malformed.
    """
    if isinstance(name_or_path, Path) or _looks_like_path(name_or_path):
        return model_from_file(Path(name_or_path).expanduser())
    return _resolve_preset(name_or_path)


def _canonical(name: str) -> str:
    _, exact, loose = _presets()
    low = name.strip().lower()
    canonical = exact.get(low) or exact.get(low.rpartition("/")[2]) or loose.get(normalize_model_id(name))
    if canonical is None:
        raise UnknownNameError("model", name, known_model_names())
    return canonical


@lru_cache(maxsize=256)
def _resolve_preset(name: str) -> ModelSpec:
    return _load_preset(_canonical(name))


@cache
def _preset_checkpoint_quant(canonical: str) -> CheckpointQuant | None:
    preset = _preset(canonical)
    config = read_config_file(PRESET_DIR / preset.file)
    side = read_config_file(PRESET_DIR / preset.quant_file) if preset.quant_file else None
    where = f"model/presets/{preset.file}" + (f" + {preset.quant_file}" if preset.quant_file else "")
    return quant_from_configs(config, side, where)


def load_checkpoint_quant(name_or_path: str | Path) -> CheckpointQuant | None:
    """The number format the checkpoint of a preset / HF id / config path ships in (its `quantization_config`
    and hf_quant_config.json side file, model.checkpoint_quant), or None when it is unquantised. The CLI applies
    it when no --weight-dtype is given (model.quant.resolve_quant)."""
    if isinstance(name_or_path, Path) or _looks_like_path(name_or_path):
        p = Path(name_or_path).expanduser()
        file = p / "config.json" if p.is_dir() else p
        return checkpoint_quant_of_file(file, read_config_file(file))
    return _preset_checkpoint_quant(_canonical(name_or_path))


def list_models() -> list[ModelSpec]:
    """Every bundled preset that loads, as a ModelSpec, in index order (preset_load_errors lists the others)."""
    return [m for m in map(_try_preset, model_ids()) if isinstance(m, ModelSpec)]


def preset_load_errors() -> dict[str, str]:
    """Canonical name -> the error of every bundled preset whose architecture the parsers do not describe yet."""
    return {n: str(m) for n, m in zip(model_ids(), map(_try_preset, model_ids()), strict=True)
            if not isinstance(m, ModelSpec)}


def _try_preset(canonical: str) -> ModelSpec | InputError:
    try:
        return _load_preset(canonical)
    except InputError as exc:
        return exc


@dataclass(frozen=True, slots=True)
class ModelSummary:
    """The architecture of a model as `roofsim list models` shows it."""

    name: str
    hf_id: str
    family: str
    layers_by_kind: dict[str, int]  # "attention: full" / "mamba: mamba2 state 128" / "mlp: moe top-8 of 256"
    total_params: int
    active_params: int  # per token (ParamCounts.active)
    kv_bytes_per_token: float  # KV cache + fixed state of one sequence of context_tokens, over all layers, per token
    context_tokens: int
    state_bytes_per_seq: float = 0.0  # the fixed state of linear-attention / Mamba layers (in kv_bytes_per_token)


def _mixer_label(m: Mixer) -> str:
    if isinstance(m, GQAAttention):
        kind = {"full": "full", "sliding": f"sliding window {m.window}", "chunked": f"chunked {m.window}"}[m.kind]
        label = f"attention: {kind}"
        return label + (f", compressed 1/{m.compress_ratio}" if m.compress_ratio > 1 else "")
    if isinstance(m, MLAAttention):
        return "attention: mla"
    if isinstance(m, SparseAttention):
        return f"attention: sparse{' mla' if m.mla is not None else ''} top-{m.topk}" + (
            f", compressed 1/{m.compress_ratio}" if m.compress_ratio > 1 else "")
    if isinstance(m, LinearAttention):
        return "linear attention: gated delta"
    if isinstance(m, Mamba2Mixer):
        return f"mamba: mamba2 state {m.state_size}"
    return "mixer: none"


def _mlp_label(m: MLP) -> str:
    if isinstance(m, MoEMLP):
        shared = f" + {m.moe.num_shared_experts} shared" if m.moe.num_shared_experts else ""
        return f"mlp: moe top-{m.moe.top_k} of {m.moe.num_experts}{shared}"
    return "mlp: dense" if isinstance(m, DenseMLP) else "mlp: none"


def model_summary(spec: ModelSpec, context_tokens: int, quant: QuantSpec | None = None) -> ModelSummary:
    """Layers by token-mixer and MLP kind, total and active parameters, and the cache bytes per token of one
    sequence of `context_tokens` in `quant`'s KV format (default 16-bit): full/MLA/sparse layers hold every token
    (compressed ones 1/ratio of them), a sliding-window layer min(window, context) tokens, and linear-attention /
    Mamba layers a fixed state per sequence, spread over its tokens (model.graph.cache_bytes, unsharded)."""
    if context_tokens <= 0:
        raise ValueError(f"context_tokens={context_tokens} must be > 0")
    from roofsim.model.graph import cache_bytes  # noqa: PLC0415 (graph is heavier than the loader needs)

    kinds: dict[str, int] = {}
    for mixer, n in spec.mixer_counts():
        kinds[_mixer_label(mixer)] = kinds.get(_mixer_label(mixer), 0) + n
    for mlp, n in spec.mlp_counts():
        kinds[_mlp_label(mlp)] = kinds.get(_mlp_label(mlp), 0) + n
    grow, win, state, window = cache_bytes(spec, quant or QuantSpec(), ParallelSpec())
    held = grow * context_tokens + win * min(context_tokens, window) + state
    p = count_params(spec)
    return ModelSummary(spec.name, spec.hf_id, spec.family, kinds, p.total, p.active, held / context_tokens,
                        context_tokens, state)
