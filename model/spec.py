"""Model, quantization and parallel-layout descriptors (frozen pydantic), with their validation rules."""

from __future__ import annotations

from typing import Literal

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
    sliding_window: int | None = Field(None, gt=0, description="window of sliding-window layers (tokens)")
    num_sliding_layers: int = Field(0, ge=0, description="layers that use the sliding window")
    moe: MoESpec | None = None
    mla: MLASpec | None = None
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
        return self

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
        """Layers i >= first_dense_layers with (i - first) % layer_freq == 0, counted in closed form."""
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
    tp: PositiveInt = 1
    pp: PositiveInt = 1
    ep: PositiveInt = 1

    @property
    def num_gpus(self) -> int:
        # Expert parallelism reuses the TP x PP GPUs (as in vLLM/TRT-LLM attention-TP + MoE-EP layouts).
        return self.tp * self.pp

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
        if self.ep > 1:
            if model.moe is None:
                raise ValueError(f"ep={self.ep} needs a mixture-of-experts model; {model.name} is dense")
            if model.moe.num_experts % self.ep:
                raise ValueError(
                    f"ep={self.ep} must divide num_experts={model.moe.num_experts} of {model.name}"
                )
            if self.ep > self.num_gpus:
                raise ValueError(f"ep={self.ep} cannot exceed tp*pp={self.num_gpus} GPUs")

    def kv_heads_per_gpu(self, model: ModelSpec) -> int:
        """KV heads stored on each GPU: sharded when tp <= kv heads, one replicated head otherwise."""
        return max(1, model.num_kv_heads // self.tp)
