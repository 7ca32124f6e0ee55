"""Model, quantization and parallel-layout descriptors (frozen pydantic), with their validation rules."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, PositiveInt, model_validator

from roofsim.hardware_specs.spec import DTYPE_BYTES

# Size limits checked when a model is loaded or built, so a config with num_hidden_layers=10**30 is an error, not a
# hang or a MemoryError. The largest bundled model (Llama-3.1-405B, model/presets) has 126 layers, hidden 16384,
# vocab 250880 (BLOOM) and 163840 context tokens (DeepSeek-V3): the limits are 30x-100x beyond them.
MAX_LAYERS = 4096
MAX_MODEL_SIZE = 2**24  # any width, head count, expert count, vocabulary or context length of one model


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class MoESpec(_Frozen):
    num_experts: PositiveInt = Field(description="routed experts per MoE layer")
    top_k: PositiveInt = Field(description="routed experts per token")
    expert_intermediate_size: PositiveInt
    num_shared_experts: int = Field(0, ge=0)
    shared_intermediate_size: int = Field(0, ge=0, description="FFN size of one shared expert")
    first_dense_layers: int = Field(0, ge=0, description="leading layers that use a dense MLP (DeepSeek)")
    dense_intermediate_size: int = Field(0, ge=0, description="FFN size of those dense layers")
    layer_freq: PositiveInt = Field(1, description="every n-th layer (after the dense ones) is MoE")
    router_bias: bool = False
    latent_size: int = Field(0, ge=0, description=(
        "routed experts work in this latent width, behind a hidden->latent and a latent->hidden projection "
        "(Nemotron-3 latent MoE, Kimi-K3); 0 = experts read the hidden state"))

    @model_validator(mode="after")
    def _check(self) -> MoESpec:
        if self.top_k > self.num_experts:
            raise ValueError(f"top_k={self.top_k} must be <= num_experts={self.num_experts}")
        return self


class MLASpec(_Frozen):
    """Multi-head latent attention (DeepSeek-V2/V3): KV cached as a compressed latent plus a RoPE key."""

    q_lora_rank: int = Field(0, ge=0, description="0 = no low-rank query projection")
    kv_lora_rank: PositiveInt
    qk_nope_head_dim: PositiveInt
    qk_rope_head_dim: PositiveInt
    v_head_dim: PositiveInt


# ---- per-layer structure: what each layer's token mixer and MLP are, described by what they cost ------------


class GQAAttention(_Frozen):
    """Softmax attention with grouped KV heads. full: every prior key; sliding: the last `window` keys; chunked:
    keys of the query's own `window`-token chunk (Llama-4 local layers, costed as a window of that size: an upper
    bound). `rope=False` marks NoPE layers (same cost). `k_eq_v`: the layer projects and caches K only and uses it
    as V (Gemma-4 global layers, `attention_k_eq_v`). `compress_ratio` r: one cached entry per r tokens
    (DeepSeek-V4 compressed layers)."""

    kind: Literal["full", "sliding", "chunked"] = "full"
    num_heads: PositiveInt
    num_kv_heads: PositiveInt
    head_dim: PositiveInt
    v_head_dim: int = Field(0, ge=0, description="0 = head_dim")
    window: int = Field(0, ge=0, description="keys a query reads at most (sliding/chunked); 0 for full")
    rope: bool = True
    k_eq_v: bool = False
    qk_norm: bool = False
    bias: bool = False
    output_gate: bool = Field(False, description="q_proj also emits a sigmoid gate on the output (Qwen3-Next)")
    compress_ratio: PositiveInt = 1

    @model_validator(mode="after")
    def _check(self) -> GQAAttention:
        if (self.kind == "full") != (self.window == 0):
            raise ValueError(f"attention kind={self.kind!r} with window={self.window}: only sliding/chunked "
                             f"layers have a window (> 0)")
        if self.num_heads % self.num_kv_heads:
            raise ValueError(f"num_heads={self.num_heads} must be a multiple of num_kv_heads={self.num_kv_heads}")
        return self

    @property
    def v_dim(self) -> int:
        return self.v_head_dim or self.head_dim


class MLAAttention(_Frozen):
    """Multi-head latent attention (DeepSeek-V2/V3, Kimi-K2): the cache holds the latent plus the RoPE key."""

    kind: Literal["mla"] = "mla"
    num_heads: PositiveInt
    mla: MLASpec


class SparseAttention(_Frozen):
    """DeepSeek sparse attention (DSA, DeepSeek-V3.2; GLM-5; MiniMax-M3 block-sparse): a lightning indexer of
    `index_heads` x `index_head_dim` scores every cached entry, the attention proper reads the `topk` it selects.
    The attention proper is MLA (`mla` set) or GQA (num_kv_heads x head_dim). `compress_ratio` as GQAAttention."""

    kind: Literal["dsa"] = "dsa"
    num_heads: PositiveInt
    mla: MLASpec | None = None
    num_kv_heads: int = Field(0, ge=0, description="GQA KV heads when mla is None")
    head_dim: int = Field(0, ge=0, description="GQA head width when mla is None")
    index_heads: PositiveInt
    index_head_dim: PositiveInt
    topk: PositiveInt = Field(description="keys (cached entries) the attention proper reads per query")
    compress_ratio: PositiveInt = 1
    k_eq_v: bool = False

    @model_validator(mode="after")
    def _check(self) -> SparseAttention:
        if self.mla is None and not (self.num_kv_heads and self.head_dim):
            raise ValueError("sparse attention without mla needs num_kv_heads and head_dim > 0")
        return self


class LinearAttention(_Frozen):
    """Gated linear attention with a fixed matrix state per head (Gated DeltaNet: Qwen3-Next/3.5; Kimi delta
    attention: Kimi-K3): a k_head_dim x v_head_dim state per value head and a short causal convolution."""

    kind: Literal["linear"] = "linear"
    num_k_heads: PositiveInt
    num_v_heads: PositiveInt
    k_head_dim: PositiveInt
    v_head_dim: PositiveInt
    conv_kernel: PositiveInt = 4


class Mamba2Mixer(_Frozen):
    """Mamba-2 state-space mixer (Dao & Gu 2024, arXiv 2405.21060): num_heads x head_dim channels, each with a
    state of state_size; B/C shared within n_groups; chunked SSD scan of chunk_size in prefill."""

    kind: Literal["mamba2"] = "mamba2"
    num_heads: PositiveInt
    head_dim: PositiveInt
    state_size: PositiveInt
    n_groups: PositiveInt = 1
    conv_kernel: PositiveInt = 4
    chunk_size: PositiveInt = 128
    # dtype of the SSM state when the checkpoint pins it (config.json `mamba_ssm_cache_dtype`, e.g. Nemotron-H /
    # Nemotron-3: "float32"; vLLM honours it, MambaConfig.mamba_ssm_cache_dtype); None = the KV-cache dtype
    ssm_state_dtype: Literal["fp32", "bf16", "fp16"] | None = None


class NoMixer(_Frozen):
    """No token mixer in this layer (Nemotron-H MLP-only blocks, Nemotron-NAS no-op attention)."""

    kind: Literal["none"] = "none"


Mixer = Annotated[
    GQAAttention | MLAAttention | SparseAttention | LinearAttention | Mamba2Mixer | NoMixer,
    Field(discriminator="kind"),
]


class DenseMLP(_Frozen):
    kind: Literal["dense"] = "dense"
    intermediate_size: PositiveInt


class MoEMLP(_Frozen):
    kind: Literal["moe"] = "moe"
    moe: MoESpec


class NoMLP(_Frozen):
    kind: Literal["none"] = "none"


MLP = Annotated[DenseMLP | MoEMLP | NoMLP, Field(discriminator="kind")]


class LayerGroup(_Frozen):
    """`count` decoder layers with the same token mixer and MLP (their position in the stack does not change
    the cost of a step, so groups are counts, in order of first appearance)."""

    count: PositiveInt
    mixer: Mixer
    mlp: MLP


class VisionSpec(_Frozen):
    """A ViT image encoder of a VL model: its cost per image at a resolution (model.graph.vision_kernels charges
    it in the step that encodes a request's images; text-only requests skip it)."""

    num_layers: PositiveInt
    hidden_size: PositiveInt
    intermediate_size: PositiveInt
    num_heads: PositiveInt
    patch_size: PositiveInt
    merge_size: PositiveInt = Field(1, description="spatial merge: one LLM token per merge^2 patches")
    out_hidden_size: PositiveInt = Field(description="width of the LLM tokens the projector emits")
    gated_mlp: bool = False

    def patches(self, height_px: int, width_px: int) -> int:
        if height_px <= 0 or width_px <= 0:
            raise ValueError(f"image {height_px}x{width_px} px must have positive sides")
        return -(-height_px // self.patch_size) * -(-width_px // self.patch_size)

    def tokens_per_image(self, height_px: int, width_px: int) -> int:
        """LLM tokens one image becomes (patches / merge^2)."""
        return -(-self.patches(height_px, width_px) // (self.merge_size * self.merge_size))

    @property
    def params(self) -> int:
        """Patch embedding, ViT layers (QKV/O, MLP, two LayerNorms with bias), merger MLP to out_hidden_size."""
        h, i = self.hidden_size, self.intermediate_size
        layer = 4 * h * h + 4 * h + (3 if self.gated_mlp else 2) * h * i + i + h + 4 * h
        merged = h * self.merge_size * self.merge_size
        return 3 * self.patch_size**2 * h + self.num_layers * layer + merged * merged + merged * self.out_hidden_size

    def flops_per_image(self, height_px: int, width_px: int) -> float:
        """Forward FLOPs of one image: 2 x params per patch for the GEMMs (Kaplan et al. 2020, arXiv 2001.08361)
        plus bidirectional attention, 4 x patches^2 x hidden per layer (FlashAttention count)."""
        n = self.patches(height_px, width_px)
        h, i = self.hidden_size, self.intermediate_size
        per_patch = self.num_layers * (4 * h * h + (3 if self.gated_mlp else 2) * h * i)
        return 2.0 * n * per_patch + 4.0 * n * n * h * self.num_layers


class ModelSpec(_Frozen):
    name: str
    hf_id: str = ""
    family: str = Field(description="architecture family, e.g. llama, mixtral, qwen3_moe, deepseek_v3, opt")
    aliases: tuple[str, ...] = ()
    vocab_size: PositiveInt
    hidden_size: PositiveInt
    num_layers: PositiveInt
    num_heads: PositiveInt
    num_kv_heads: PositiveInt
    head_dim: PositiveInt
    intermediate_size: PositiveInt = Field(description="dense MLP hidden size")
    mlp_gated: bool = Field(True, description="SwiGLU/GeGLU (gate+up+down) vs plain up+down")
    activation: str = "silu"
    norm: Literal["rmsnorm", "layernorm"] = "rmsnorm"
    position: Literal["rope", "learned", "alibi"] = "rope"
    attention_bias: bool = False
    mlp_bias: bool = False
    tie_word_embeddings: bool = False
    max_context_tokens: PositiveInt = 4096
    sliding_window: int | None = Field(None, gt=0, description=(
        "keys a query of a windowed layer reads at most: the sliding window, a chunked-local chunk, a DSA top-k "
        "(the span the simulator's `*_win` batch aggregates are computed with)"))
    num_sliding_layers: int = Field(0, ge=0, description="layers whose queries read at most sliding_window keys")
    moe: MoESpec | None = None
    mla: MLASpec | None = None
    layers: tuple[LayerGroup, ...] = Field((), description=(
        "per-layer structure as groups of layers of one kind; () = the uniform stack the fields above describe"))
    vision: VisionSpec | None = None
    mtp_layers: int = Field(0, ge=0, description="multi-token-prediction modules (not loaded for plain decoding)")
    source: str = Field("", description="where the architecture numbers come from")

    @model_validator(mode="after")
    def _check(self) -> ModelSpec:
        if self.num_heads % self.num_kv_heads:
            raise ValueError(
                f"num_heads={self.num_heads} must be a multiple of num_kv_heads={self.num_kv_heads}"
            )
        if self.num_sliding_layers > self.num_layers:
            raise ValueError(
                f"num_sliding_layers={self.num_sliding_layers} exceeds num_layers={self.num_layers}"
            )
        if self.num_sliding_layers and self.sliding_window is None:
            raise ValueError("num_sliding_layers > 0 needs sliding_window")
        if self.layers:
            n = sum(g.count for g in self.layers)
            if n != self.num_layers:
                raise ValueError(f"layers describe {n} layers, num_layers={self.num_layers}")
            bounded = sum(g.count for g in self.layers if bounded_span(g.mixer) == self.sliding_window)
            if self.sliding_window is not None and bounded != self.num_sliding_layers:
                raise ValueError(f"num_sliding_layers={self.num_sliding_layers} but {bounded} layers read at most "
                                 f"sliding_window={self.sliding_window} keys")
        return self

    @property
    def layer_groups(self) -> tuple[LayerGroup, ...]:
        """The per-layer structure: `layers`, or the groups the uniform-stack fields describe."""
        if self.layers:
            return self.layers
        return _uniform_groups(self)

    def mixer_counts(self) -> tuple[tuple[Mixer, int], ...]:
        """(token mixer, layers) of each distinct mixer, in order of first appearance."""
        return _merge((g.mixer, g.count) for g in self.layer_groups)

    def mlp_counts(self) -> tuple[tuple[MLP, int], ...]:
        """(MLP, layers) of each distinct MLP kind, in order of first appearance."""
        return _merge((g.mlp, g.count) for g in self.layer_groups)

    @model_validator(mode="after")
    def _check_sizes(self) -> ModelSpec:
        if self.num_layers > MAX_LAYERS:
            raise ValueError(f"num_layers={self.num_layers} is over MAX_LAYERS={MAX_LAYERS}")
        for name in ("vocab_size", "hidden_size", "num_heads", "num_kv_heads", "head_dim", "intermediate_size",
                     "max_context_tokens"):
            if getattr(self, name) > MAX_MODEL_SIZE:
                raise ValueError(f"{name}={getattr(self, name)} is over MAX_MODEL_SIZE={MAX_MODEL_SIZE}")
        return self

    # ---- derived architecture facts -------------------------------------------------------------
    @property
    def q_dim(self) -> int:
        """Width of the query projection output."""
        if self.mla is not None:
            return self.num_heads * (self.mla.qk_nope_head_dim + self.mla.qk_rope_head_dim)
        return self.num_heads * self.head_dim

    @property
    def kv_dim(self) -> int:
        """Width of K (= width of V) for non-MLA attention."""
        return self.num_kv_heads * self.head_dim

    def is_moe_layer(self, layer: int) -> bool:
        if self.moe is None or layer < self.moe.first_dense_layers:
            return False
        return (layer - self.moe.first_dense_layers) % self.moe.layer_freq == 0

    @property
    def num_moe_layers(self) -> int:
        """Layers carrying a routed-expert MLP (the per-layer groups, or i >= first_dense_layers with
        (i - first) % layer_freq == 0 counted in closed form)."""
        if self.layers:
            return sum(g.count for g in self.layers if g.mlp.kind == "moe")
        if self.moe is None or self.num_layers <= self.moe.first_dense_layers:
            return 0
        return -(-(self.num_layers - self.moe.first_dense_layers) // self.moe.layer_freq)

    def kv_elements_per_token_per_layer(self) -> int:
        """Cached elements per token per layer: 2*kv_heads*head_dim, or latent+rope for MLA."""
        if self.mla is not None:
            # DeepSeek-V2 paper (arXiv 2405.04434), sec. 2.1.3: cache c_KV (d_c) plus the decoupled RoPE key.
            return self.mla.kv_lora_rank + self.mla.qk_rope_head_dim
        return 2 * self.num_kv_heads * self.head_dim


class QuantSpec(_Frozen):
    """Numeric formats: weights (with group scales for int4/int8/fp4), activations (GEMM inputs), KV cache."""

    weight_dtype: Literal["fp32", "bf16", "fp16", "fp8", "int8", "int4", "fp4"] = "bf16"
    activation_dtype: Literal["fp32", "bf16", "fp16", "fp8", "int8", "fp4"] = "bf16"
    kv_dtype: Literal["fp32", "bf16", "fp16", "fp8", "int8", "int4"] = "bf16"
    group_size: int = Field(128, ge=0, description="weights per scale for grouped formats; 0 = per-channel")
    scale_bytes: float = Field(2.0, ge=0, description="bytes of one scale (fp16 = 2, e8m0/fp8 = 1)")

    @property
    def weight_bytes_per_param(self) -> float:
        base = DTYPE_BYTES[self.weight_dtype]
        if self.weight_dtype in ("int4", "int8", "fp4") and self.group_size > 0:
            return base + self.scale_bytes / self.group_size
        return base

    @property
    def kv_bytes_per_element(self) -> float:
        base = DTYPE_BYTES[self.kv_dtype]
        if self.kv_dtype in ("int4", "int8") and self.group_size > 0:
            return base + self.scale_bytes / self.group_size
        return base

    @property
    def activation_bytes(self) -> float:
        # Activations that flow between kernels stay in 16-bit even for W8A8 (the GEMM quantizes its input).
        return 2.0 if self.activation_dtype in ("fp8", "int8", "fp4") else DTYPE_BYTES[self.activation_dtype]

    @property
    def gemm_dtype(self) -> str:
        """The dtype whose tensor-core peak bounds a GEMM: the wider of weight and activation formats."""
        if self.activation_dtype in ("fp8", "int8", "fp4"):
            return self.activation_dtype
        return self.activation_dtype  # weight-only quantization dequantizes to the activation dtype

    @property
    def weight_only(self) -> bool:
        return self.weight_dtype in ("int8", "int4", "fp4", "fp8") and self.activation_dtype in (
            "bf16",
            "fp16",
            "fp32",
        )


class ParallelSpec(_Frozen):
    """A replica's layout: `attn_dp` attention data-parallel ranks, each `tp`-way tensor parallel, over `pp`
    pipeline stages (GPUs = attn_dp x tp x pp); MoE experts `ep`-way expert parallel over the GPUs of a stage.

    attn_dp > 1 is the engines' attention data parallelism (vLLM `--data-parallel-size` with
    `--enable-expert-parallel`, SGLang `--enable-dp-attention`, TensorRT-LLM `enable_attention_dp`): attention and
    the dense layers are replicated on every rank and run that rank's own sequences; the MoE experts are sharded
    over all attn_dp x tp GPUs (ep of them expert-parallel, the rest tensor-parallel inside an expert)."""

    tp: PositiveInt = 1
    pp: PositiveInt = 1
    ep: PositiveInt = 1
    attn_dp: PositiveInt = 1

    @property
    def num_gpus(self) -> int:
        # Expert parallelism reuses the attention GPUs (as in vLLM/TRT-LLM attention-TP/DP + MoE-EP layouts).
        return self.attn_dp * self.tp * self.pp

    @property
    def moe_tp(self) -> int:
        """Tensor-parallel ways inside one expert: the GPUs of a stage the ep expert groups leave over."""
        return max(1, self.attn_dp * self.tp // self.ep)

    def validate_for(self, model: ModelSpec) -> None:
        """ValueError naming the constraint when this layout cannot shard `model`."""
        if model.num_heads % self.tp:
            raise ValueError(f"tp={self.tp} must divide num_heads={model.num_heads} of {model.name}")
        if model.mla is None and model.num_kv_heads % self.tp and self.tp % model.num_kv_heads:
            raise ValueError(
                f"tp={self.tp} must divide num_kv_heads={model.num_kv_heads} of {model.name}, "
                f"or be a multiple of it (KV heads replicated)"
            )
        if model.num_layers % self.pp:
            raise ValueError(f"pp={self.pp} must divide num_layers={model.num_layers} of {model.name}")
        if self.attn_dp > 1 and model.moe is None:
            raise ValueError(f"attn_dp={self.attn_dp} needs a mixture-of-experts model ({model.name} is dense: "
                             f"its attention ranks would be independent replicas; use the replica count)")
        if self.ep > 1:
            if model.moe is None:
                raise ValueError(f"ep={self.ep} needs a mixture-of-experts model; {model.name} is dense")
            if model.moe.num_experts % self.ep:
                raise ValueError(
                    f"ep={self.ep} must divide num_experts={model.moe.num_experts} of {model.name}"
                )
            if self.ep > self.num_gpus:
                raise ValueError(f"ep={self.ep} cannot exceed attn_dp*tp*pp={self.num_gpus} GPUs")
        if self.attn_dp > 1 and (self.attn_dp * self.tp) % self.ep:
            raise ValueError(f"ep={self.ep} must divide attn_dp*tp={self.attn_dp * self.tp}: the experts of a "
                             f"stage are sharded over its attention ranks' GPUs")

    def kv_heads_per_gpu(self, model: ModelSpec) -> int:
        """KV heads stored on each GPU: sharded when tp <= kv heads, one replicated head otherwise."""
        return max(1, model.num_kv_heads // self.tp)


def bounded_span(mixer: Mixer) -> int | None:
    """Keys one query of this mixer reads at most (window, chunk, DSA top-k), None when unbounded or stateful."""
    if isinstance(mixer, GQAAttention) and mixer.window and mixer.compress_ratio == 1:
        return mixer.window
    if isinstance(mixer, SparseAttention) and mixer.compress_ratio == 1:
        return mixer.topk
    return None


def _merge(pairs: Iterable[tuple[Any, int]]) -> tuple[tuple[Any, int], ...]:
    out: dict[Any, int] = {}
    for kind, n in pairs:
        out[kind] = out.get(kind, 0) + n
    return tuple(out.items())


def _uniform_groups(m: ModelSpec) -> tuple[LayerGroup, ...]:
    """The layer groups of a uniform stack: full (or MLA) then sliding layers, paired with dense then MoE MLPs
    (pairing is arbitrary: costs depend only on the counts of each kind)."""
    if m.mla is not None:
        mixers: list[tuple[Mixer, int]] = [(MLAAttention(num_heads=m.num_heads, mla=m.mla), m.num_layers)]
    else:
        gqa = dict(num_heads=m.num_heads, num_kv_heads=m.num_kv_heads, head_dim=m.head_dim,
                   rope=m.position == "rope", bias=m.attention_bias)
        mixers = [(GQAAttention(**gqa), m.num_layers - m.num_sliding_layers)]
        if m.num_sliding_layers:
            mixers.append((GQAAttention(kind="sliding", window=m.sliding_window, **gqa), m.num_sliding_layers))
    dense_inter = m.intermediate_size
    if m.moe is not None and m.moe.first_dense_layers and m.moe.dense_intermediate_size:
        dense_inter = m.moe.dense_intermediate_size
    n_moe = m.num_moe_layers
    mlps: list[tuple[MLP, int]] = [(DenseMLP(intermediate_size=dense_inter), m.num_layers - n_moe)]
    if m.moe is not None and n_moe:
        mlps.append((MoEMLP(moe=m.moe), n_moe))
    groups: list[LayerGroup] = []
    mixers = [p for p in mixers if p[1]]
    mlps = [p for p in mlps if p[1]]
    i = j = 0
    left_a, left_b = mixers[0][1], mlps[0][1]
    while i < len(mixers) and j < len(mlps):
        n = min(left_a, left_b)
        groups.append(LayerGroup(count=n, mixer=mixers[i][0], mlp=mlps[j][0]))
        left_a -= n
        left_b -= n
        if not left_a:
            i += 1
            left_a = mixers[i][1] if i < len(mixers) else 0
        if not left_b:
            j += 1
            left_b = mlps[j][1] if j < len(mlps) else 0
    return tuple(groups)
