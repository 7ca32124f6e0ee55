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
from roofsim.model.spec import MAX_LAYERS, MAX_MODEL_SIZE, MLASpec, ModelSpec, MoESpec

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
        position="learned",
        attention_bias=True,
        mlp_bias=True,
        tie_word_embeddings=True,
        max_context_tokens=f.int("max_seq_len"),
    )


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
                f"supported: {', '.join(supported_families())}"
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


@lru_cache(maxsize=1)
def _presets() -> tuple[tuple[_Preset, ...], dict[str, str]]:
    """The preset index and a lookup from every normalised id/alias to the canonical name."""
    with _INDEX_FILE.open("rb") as fh:
        raw = tomllib.load(fh)
    presets = tuple(
        _Preset(m["name"], m["hf_id"], tuple(m.get("aliases", ())), m["file"]) for m in raw["model"]
    )
    lookup: dict[str, str] = {}
    for p in presets:
        for key in (p.name, p.hf_id, *p.aliases):
            if not key:
                continue
            norm = normalize_model_id(key)
            if lookup.setdefault(norm, p.name) != p.name:
                raise RuntimeError(f"{_INDEX_FILE}: {key!r} of {p.name} collides with {lookup[norm]}")
    return presets, lookup


def model_ids() -> list[str]:
    """Canonical names of the bundled presets, in index order."""
    return [p.name for p in _presets()[0]]


def known_model_names() -> list[str]:
    """Canonical names, HF ids and aliases that load_model resolves."""
    return sorted({k for p in _presets()[0] for k in (p.name, p.hf_id, *p.aliases) if k})


@cache
def _load_preset(canonical: str) -> ModelSpec:
    preset = next(p for p in _presets()[0] if p.name == canonical)
    path = PRESET_DIR / preset.file
    config = read_config_file(path)
    cited = config.get("_source")
    source = f"model/presets/{preset.file}" + (f" ({cited})" if isinstance(cited, str) else "")
    return model_from_hf_config(
        config, preset.name, source=source, hf_id=preset.hf_id, aliases=preset.aliases
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


@lru_cache(maxsize=256)
def _resolve_preset(name: str) -> ModelSpec:
    _, lookup = _presets()
    canonical = lookup.get(normalize_model_id(name))
    if canonical is None:
        raise UnknownNameError("model", name, known_model_names())
    return _load_preset(canonical)


def list_models() -> list[ModelSpec]:
    """Every bundled preset as a ModelSpec, in index order."""
    return [_load_preset(n) for n in model_ids()]
