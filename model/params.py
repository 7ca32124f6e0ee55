"""Parameter counts of a ModelSpec, by component, with the active (per-token) count for MoE models.

The counts follow the weight shapes of the HF reference implementations (LlamaForCausalLM, MixtralForCausalLM,
DeepseekV3ForCausalLM, OPTForCausalLM, BloomForCausalLM); the op graph uses the same shapes, so the sum of its
kernels' weight bytes equals params x bytes-per-param (tested).
"""

from __future__ import annotations

from dataclasses import dataclass

from roofsim.model import spec as ms
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
    vision: int = 0  # image encoder of a VL model (loaded with the model; text-only steps never run it)
    mtp: int = 0  # multi-token-prediction modules (not counted in total: engines load them for MTP drafting only)

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
            + self.vision
        )

    @property
    def active(self) -> int:
        """Parameters one token touches (Mixtral-8x7B: ~12.9B of 46.7B)."""
        return self.total - self.moe_routed + self.moe_routed_active

    @property
    def non_embedding_active(self) -> int:
        """Active parameters excluding the input embedding lookup (it is a gather, not a GEMM)."""
        return self.active - self.embedding - self.position


def _mla_params(h: int, heads: int, a: ms.MLASpec) -> int:
    qk_head = a.qk_nope_head_dim + a.qk_rope_head_dim
    if a.q_lora_rank:
        # q_a_proj, q_a_layernorm, q_b_proj (DeepSeek-V2 eq. 12-13)
        q = h * a.q_lora_rank + a.q_lora_rank + a.q_lora_rank * heads * qk_head
    else:
        q = h * heads * qk_head
    kv_a = h * (a.kv_lora_rank + a.qk_rope_head_dim) + a.kv_lora_rank  # kv_a_proj_with_mqa + kv_a_layernorm
    kv_b = a.kv_lora_rank * heads * (a.qk_nope_head_dim + a.v_head_dim)
    o = heads * a.v_head_dim * h
    return q + kv_a + kv_b + o


def mixer_params(mixer: ms.Mixer, m: ModelSpec) -> int:
    """Weights of one layer's token mixer (shapes of the HF modeling files named in each branch)."""
    h = m.hidden_size
    if isinstance(mixer, ms.MLAAttention):
        return _mla_params(h, mixer.num_heads, mixer.mla)
    if isinstance(mixer, ms.SparseAttention):
        # DeepSeek-V3.2 Indexer (inference/model.py): wq_b [q_lora -> heads x dim], wk [h -> dim] + k_norm,
        # weights_proj [h -> heads]; the attention proper is MLA (or GQA for MiniMax-M3).
        q_in = mixer.mla.q_lora_rank if mixer.mla is not None and mixer.mla.q_lora_rank else h
        idx = q_in * mixer.index_heads * mixer.index_head_dim + h * mixer.index_head_dim + 2 * mixer.index_head_dim
        idx += h * mixer.index_heads
        if mixer.mla is not None:
            return _mla_params(h, mixer.num_heads, mixer.mla) + idx
        q, kv = mixer.num_heads * mixer.head_dim, mixer.num_kv_heads * mixer.head_dim
        return 2 * h * q + (1 if mixer.k_eq_v else 2) * h * kv + idx
    if isinstance(mixer, ms.LinearAttention):
        # transformers Qwen3NextGatedDeltaNet: in_proj_qkvz [h -> 2 nk dk + 2 nv dv], in_proj_ba [h -> 2 nv],
        # conv1d over q,k,v channels (kernel K, no bias), dt_bias + A_log (nv each), gated RMSNorm (dv), out_proj.
        qk = 2 * mixer.num_k_heads * mixer.k_head_dim
        v = mixer.num_v_heads * mixer.v_head_dim
        return h * (qk + 2 * v) + h * 2 * mixer.num_v_heads + (qk + v) * mixer.conv_kernel + \
            2 * mixer.num_v_heads + mixer.v_head_dim + v * h
    if isinstance(mixer, ms.Mamba2Mixer):
        # transformers NemotronHMamba2Mixer / Mamba2Mixer: in_proj [h -> 2 d_in + 2 g N + heads], conv1d over
        # x,B,C with bias, dt_bias/A_log/D per head, gated RMSNorm (d_in), out_proj [d_in -> h].
        d_in = mixer.num_heads * mixer.head_dim
        conv = d_in + 2 * mixer.n_groups * mixer.state_size
        return h * (2 * d_in + 2 * mixer.n_groups * mixer.state_size + mixer.num_heads) + conv * (
            mixer.conv_kernel + 1) + 3 * mixer.num_heads + d_in + d_in * h
    if isinstance(mixer, ms.NoMixer):
        return 0
    q_dim = mixer.num_heads * mixer.head_dim
    kv_dim = mixer.num_kv_heads * mixer.head_dim
    v_dim = 0 if mixer.k_eq_v else mixer.num_kv_heads * mixer.v_dim
    o_in = mixer.num_heads * mixer.v_dim
    bias = (q_dim + kv_dim + v_dim + h) if mixer.bias else 0
    qk_norm = 2 * mixer.head_dim if (mixer.qk_norm or m.family.startswith("qwen3")) else 0  # q_norm/k_norm
    sinks = m.num_heads if m.family == "gpt_oss" else 0  # gpt-oss learned attention sinks, one per head
    gate = q_dim if mixer.output_gate else 0  # Qwen3NextAttention: q_proj emits query and gate
    return h * (q_dim + gate + kv_dim + v_dim) + o_in * h + bias + qk_norm + sinks


def attention_params_per_layer(m: ModelSpec) -> int:
    """Token-mixer weights of one layer of a uniform stack (the first layer group's mixer otherwise)."""
    return mixer_params(m.layer_groups[0].mixer, m)


def mlp_params(h: int, inter: int, gated: bool, bias: bool) -> int:
    mats = 3 if gated else 2
    b = ((2 if gated else 1) * inter + h) if bias else 0
    return mats * h * inter + b


def moe_params(m: ModelSpec, e: ms.MoESpec) -> tuple[int, int, int]:
    """(all routed experts, the top-k a token uses, shared experts + router + latent projections) of one layer."""
    h = m.hidden_size
    width = e.latent_size or h
    expert = mlp_params(width, e.expert_intermediate_size, m.mlp_gated, m.mlp_bias)
    router = h * e.num_experts + (e.num_experts if e.router_bias else 0)
    shared_one = mlp_params(h, e.shared_intermediate_size, m.mlp_gated, m.mlp_bias) if e.num_shared_experts else 0
    # latent MoE (Nemotron-3): fc1_latent_proj [h -> latent] and fc2_latent_proj [latent -> h] around the experts
    latent = 2 * h * e.latent_size
    return e.num_experts * expert, e.top_k * expert, router + e.num_shared_experts * shared_one + latent


def count_params(m: ModelSpec) -> ParamCounts:
    h = m.hidden_size
    attn = sum(mixer_params(mixer, m) * n for mixer, n in m.mixer_counts())
    dense = routed = routed_active = shared = 0
    for mlp, n in m.mlp_counts():
        if isinstance(mlp, ms.DenseMLP):
            dense += mlp_params(h, mlp.intermediate_size, m.mlp_gated, m.mlp_bias) * n
        elif isinstance(mlp, ms.MoEMLP):
            r, ra, sh = moe_params(m, mlp.moe)
            routed, routed_active, shared = routed + n * r, routed_active + n * ra, shared + n * sh
    norm_size = 2 * h if m.norm == "layernorm" else h  # layernorm has a bias
    norms = (2 * m.num_layers + 1) * norm_size  # the MLA latent norms are counted in mixer_params
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
        vision=m.vision.params if m.vision is not None else 0,
        mtp=m.mtp_layers * _mtp_params(m),
    )


def _mtp_params(m: ModelSpec) -> int:
    """One multi-token-prediction module (DeepSeek-V3, arXiv 2412.19437 sec. 2.2): a projection [2h -> h], two
    norms and one decoder layer of the last group's kind; it shares the embedding and the LM head."""
    h = m.hidden_size
    last = m.layer_groups[-1]
    mlp = last.mlp
    if isinstance(mlp, ms.MoEMLP):
        mlp_w = sum(moe_params(m, mlp.moe)[::2])
    elif isinstance(mlp, ms.DenseMLP):
        mlp_w = mlp_params(h, mlp.intermediate_size, m.mlp_gated, m.mlp_bias)
    else:
        mlp_w = 0
    return 2 * h * h + 4 * h + mixer_params(last.mixer, m) + mlp_w
