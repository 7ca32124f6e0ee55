"""Parameter counts of a ModelSpec, by component, with the active (per-token) count for MoE models.

The counts follow the weight shapes of the HF reference implementations (LlamaForCausalLM, MixtralForCausalLM,
DeepseekV3ForCausalLM, OPTForCausalLM, BloomForCausalLM); the op graph uses the same shapes, so the sum of its
kernels' weight bytes equals params x bytes-per-param (tested).
"""

from __future__ import annotations

from dataclasses import dataclass

from roofsim.model.spec import ModelSpec


@dataclass(frozen=True, slots=True)
class ParamCounts:
    embedding: int
    lm_head: int  # 0 when tied to the embedding
    position: int  # learned position embeddings
    attention: int  # all layers
    dense_mlp: int  # all dense-MLP layers
    moe_routed: int  # all routed experts of all MoE layers
    moe_routed_active: int  # the top-k routed experts a token uses, all MoE layers
    moe_shared: int  # shared experts + routers, all MoE layers
    norms: int

    @property
    def total(self) -> int:
        return (
            self.embedding
            + self.lm_head
            + self.position
            + self.attention
            + self.dense_mlp
            + self.moe_routed
            + self.moe_shared
            + self.norms
        )

    @property
    def active(self) -> int:
        """Parameters one token touches (Mixtral-8x7B: ~12.9B of 46.7B)."""
        return self.total - self.moe_routed + self.moe_routed_active

    @property
    def non_embedding_active(self) -> int:
        """Active parameters excluding the input embedding lookup (it is a gather, not a GEMM)."""
        return self.active - self.embedding - self.position


def attention_params_per_layer(m: ModelSpec) -> int:
    h = m.hidden_size
    if m.mla is not None:
        a = m.mla
        qk_head = a.qk_nope_head_dim + a.qk_rope_head_dim
        if a.q_lora_rank:
            # q_a_proj, q_a_layernorm, q_b_proj (DeepSeek-V2 eq. 12-13)
            q = h * a.q_lora_rank + a.q_lora_rank + a.q_lora_rank * m.num_heads * qk_head
        else:
            q = h * m.num_heads * qk_head
        kv_a = h * (a.kv_lora_rank + a.qk_rope_head_dim) + a.kv_lora_rank  # kv_a_proj_with_mqa + kv_a_layernorm
        kv_b = a.kv_lora_rank * m.num_heads * (a.qk_nope_head_dim + a.v_head_dim)
        o = m.num_heads * a.v_head_dim * h
        return q + kv_a + kv_b + o
    q = h * m.q_dim
    kv = 2 * h * m.kv_dim
    o = m.q_dim * h
    bias = (m.q_dim + 2 * m.kv_dim + h) if m.attention_bias else 0
    qk_norm = 2 * m.head_dim if m.family.startswith("qwen3") else 0  # Qwen3 q_norm/k_norm
    sinks = m.num_heads if m.family == "gpt_oss" else 0  # gpt-oss learned attention sinks, one per head
    return q + kv + o + bias + qk_norm + sinks


def mlp_params(h: int, inter: int, gated: bool, bias: bool) -> int:
    mats = 3 if gated else 2
    b = ((2 if gated else 1) * inter + h) if bias else 0
    return mats * h * inter + b


def count_params(m: ModelSpec) -> ParamCounts:
    h = m.hidden_size
    attn = attention_params_per_layer(m) * m.num_layers
    dense_layers = m.num_layers - m.num_moe_layers
    dense_inter = m.intermediate_size
    if m.moe is not None and m.moe.first_dense_layers and m.moe.dense_intermediate_size:
        dense_inter = m.moe.dense_intermediate_size
    dense = mlp_params(h, dense_inter, m.mlp_gated, m.mlp_bias) * dense_layers
    routed = routed_active = shared = 0
    if m.moe is not None:
        e = m.moe
        expert = mlp_params(h, e.expert_intermediate_size, m.mlp_gated, m.mlp_bias)
        router = h * e.num_experts + (e.num_experts if e.router_bias else 0)
        shared_one = mlp_params(h, e.shared_intermediate_size, m.mlp_gated, m.mlp_bias) if e.num_shared_experts else 0
        n = m.num_moe_layers
        routed = n * e.num_experts * expert
        routed_active = n * e.top_k * expert
        shared = n * (router + e.num_shared_experts * shared_one)
    norm_size = 2 * h if m.norm == "layernorm" else h  # layernorm has a bias
    norms = (2 * m.num_layers + 1) * norm_size
    if m.mla is not None:
        pass  # the MLA latent norms are counted in attention_params_per_layer
    embedding = m.vocab_size * h
    lm_head = 0 if m.tie_word_embeddings else m.vocab_size * h
    position = m.max_context_tokens * h if m.position == "learned" else 0
    if m.family == "bloom":
        norms += 2 * h  # word_embeddings_layernorm (BLOOM applies a LayerNorm right after the embedding)
    return ParamCounts(
        embedding=embedding,
        lm_head=lm_head,
        position=position,
        attention=attn,
        dense_mlp=dense,
        moe_routed=routed,
        moe_routed_active=routed_active,
        moe_shared=shared,
        norms=norms,
    )
