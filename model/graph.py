"""The per-kernel op graph of one serving iteration on one GPU of a TP x PP layout.

`step_kernels` lists every kernel of a forward pass for a BatchShape (each with `count` = how many times it runs
across the pipeline, and its `op` kind), split into the token-linear part (`linear_kernels` = `layer_kernels` of
the decoder layers + the once-per-step `fixed_kernels`, depends only on the number of tokens) and the attention
part (`attention_kernels`, depends on context lengths). FLOP formulas: a GEMM of [m,k]x[k,n] is
2mnk FLOPs (Kaplan et al. 2020, arXiv 2001.08361, sec. 2.1); attention is 2 FLOPs per multiply-add in QK^T and PV,
i.e. 4 * query-key pairs * head_dim per head (FlashAttention, Dao et al. 2022, arXiv 2205.14135, counts the same).
Bytes follow LLM-Viewer's split (weight / activation / KV, read / write), Yuan et al. 2024, arXiv 2402.16363.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Literal, get_args

from roofsim.hardware_specs.spec import DTYPE_BYTES
from roofsim.model.batch import BatchShape
from roofsim.model.checkpoint_quant import FP8_BLOCK_GROUP
from roofsim.model.kernel import Kernel, OpKind
from roofsim.model.spec import (
    DenseMLP,
    GQAAttention,
    LinearAttention,
    Mamba2Mixer,
    MLAAttention,
    MLASpec,
    ModelSpec,
    MoEMLP,
    MoESpec,
    NoMixer,
    ParallelSpec,
    QuantSpec,
    SparseAttention,
    bounded_span,
)


@dataclass(frozen=True, slots=True)
class GraphContext:
    """Per-(model, quant, parallel) constants of the graph, computed once."""

    model: ModelSpec
    quant: QuantSpec
    parallel: ParallelSpec
    wb: float  # weight bytes per parameter (incl. group scales)
    ab: float  # activation bytes per element between kernels
    kvb: float  # KV-cache bytes per element
    gemm_dtype: str
    attn_dtype: str  # tensor-core dtype of attention math (fp8 only with an fp8 KV cache and fp8 activations)
    heads: int  # query heads per GPU
    kv_heads: int  # KV heads stored per GPU
    kv_elems: int  # cached elements per token per layer per GPU
    dense_layers: int
    moe_layers: int
    full_layers: int  # layers with full attention
    window_layers: int  # sliding-window layers
    # attention head widths: prefill qk/v; decode qk/v (MLA decode attends in the latent space); query row width
    qk_dim: int
    v_dim: int
    dec_qk_dim: int
    dec_v_dim: int
    q_width: int  # query elements per token on this GPU
    attn: tuple[AttnGroup, ...] = ()  # the token-mixer groups of attention_kernels (layers of one kind each)
    moe_skew: float = 0.0  # Zipf exponent of the experts' routing popularity (0 = uniform; expert_load)
    attn_backend: AttnPolicy = ""  # the serving engine's attention-backend policy (attention_backend)


# ------------------------------------------------------------------------------------ attention backends
# An engine's attention-backend policy on one GPU (simulator/engines.py picks it by engine, version and GPU
# architecture, with its sources); "" = none named: roofsim's default attention pricing. attention_backend turns a
# policy and an attention group's features into the kernel family that runs it.
AttnPolicy = Literal["", "vllm-fa2", "vllm-fa3", "vllm-flashinfer", "sglang-fa3", "sglang-flashinfer",
                     "sglang-flashinfer-sm120", "sglang-trtllm", "trtllm"]
ATTN_POLICIES: tuple[str, ...] = get_args(AttnPolicy)
# Kernel families roofsim prices apart: `triton` (vLLM's Triton attention, honours the window), `triton_extend`
# (SGLang's Triton extend kernel, which visits every causal key tile and only masks the window: SKIP_TILE),
# `flash_attn_2` (FA2, whose decode runs windowed and MHA calls without the GQA swap: Kernel.gqa_unpacked). The
# others (flash_attn_3, flashinfer, trtllm, "") carry no flag.
TRITON_BACKENDS = ("triton", "triton_extend")


def attention_backend(policy: str, head_dim: int, window: int, kv_dtype: str, mla: bool, sinks: bool = False) -> str:
    """The kernel family `policy` runs an attention group of `head_dim` (qk) with a sliding `window` (0 = none),
    a `kv_dtype` cache and MLA or not on. Read off the backend AIConfigurator's collectors record per row
    (`kernel_source`, ../shared/data/kernels/aiconfigurator; docs/engines.md): vLLM on Ampere / Ada / Blackwell
    workstation GPUs runs FA2, and where FA2 cannot (an fp8 KV cache, head dim > 256) the next backend in its
    priority list that can: FlashInfer for head dims 64 / 128 / 256, Triton for the others (192 with an fp8 KV
    cache: measured; past 256: by the same order, not measured) and Triton for learned attention `sinks` (gpt-oss:
    vLLM's FlashAttention backend takes sinks only with FA3, FlashInfer off Blackwell has none; read from vLLM's
    backends, not measured); SGLang's FA3 (Hopper) falls back to Triton past head dim 256 and at 256 with a window,
    its FlashInfer (Ada) for head dims other than 128 / 256 and for MLA, and on Blackwell workstation GPUs for a
    window too."""
    if policy not in ATTN_POLICIES:
        raise ValueError(f"attention backend policy {policy!r} is not one of {list(ATTN_POLICIES)}")
    if policy == "vllm-fa2" and not mla:
        if sinks:
            return "triton"
        if head_dim <= 256 and kv_dtype != "fp8":
            return "flash_attn_2"
        return "flashinfer" if head_dim in (64, 128, 256) else "triton"
    if policy == "sglang-fa3" and not mla and (head_dim > 256 or (head_dim == 256 and window)):
        return "triton_extend"
    if policy in ("sglang-flashinfer", "sglang-flashinfer-sm120"):
        native = not mla and head_dim in (128, 256) and not (window and policy == "sglang-flashinfer-sm120")
        return "flashinfer" if native else "triton_extend"
    return {"vllm-fa3": "flash_attn_3", "vllm-flashinfer": "flashinfer", "sglang-fa3": "flash_attn_3",
            "sglang-trtllm": "trtllm", "trtllm": "trtllm"}.get(policy, "")


def prefill_window(backend: str, window: int) -> int:
    """The window a prefill kernel of `backend` skips keys by: none for SGLang's Triton extend kernel."""
    return 0 if backend == "triton_extend" else window


def backend_flag(backend: str, op: str, latent: bool, window: int, heads: int, kv_heads: int) -> str:
    """The Kernel flag an `op` ("attn_prefill" / "attn_decode") kernel of `backend` carries (a group of `heads`
    query / `kv_heads` KV heads, sliding `window`, 0 = none, MLA `latent` decode or not): "triton" for a Triton
    prefill, "gqa_unpacked" for an FA2 decode with a window or without GQA, else ""."""
    if op == "attn_prefill" and backend in TRITON_BACKENDS:
        return "triton"
    if op == "attn_decode" and backend == "flash_attn_2" and not latent and (window or heads == kv_heads):
        return "gqa_unpacked"
    return ""


def with_backend(k: Kernel, backend: str, window: int, heads: int, kv_heads: int) -> Kernel:
    """Attention kernel `k` as `backend` runs it (backend_flag). The one rule both the op graph and
    validation.predict (per measured row) apply."""
    flag = backend_flag(backend, k.op, k.latent, window, heads, kv_heads)
    return replace(k, **{flag: True}) if flag else k


def priced_apart(g: AttnGroup) -> bool:
    """Whether group `g`'s backend sets a Kernel flag on its prefill or decode kernel (the closed form of
    model.cost then costs its kernels)."""
    return any(backend_flag(g.backend, op, g.latent_decode, g.window, g.heads, g.kv_heads)
               for op in ("attn_prefill", "attn_decode"))


@dataclass(frozen=True, slots=True)
class AttnGroup:
    """Per-GPU constants of the attention (token-mixer) kernels of `layers` layers of one kind."""

    kind: str  # full, sliding, chunked, mla, dsa, linear, mamba2
    layers: int
    heads: int
    kv_heads: int
    entry_bytes: float  # cache bytes of one cached entry of one layer (K+V, MLA latent, DSA + indexer key)
    elems: int  # cached elements of one entry of the attention proper (K+V or the MLA latent)
    qk_dim: int
    v_dim: int
    dec_qk_dim: int
    dec_v_dim: int
    q_width: int
    window: int = 0  # keys (entries) one query reads at most; 0 = all
    ratio: int = 1  # tokens per cached entry (DeepSeek-V4 compression)
    primary: bool = False  # window is the model's sliding_window: use the batch's *_win aggregates
    index_flops: float = 0.0  # DSA indexer FLOPs per (query, entry): 2 x index heads x index dim
    index_bytes: float = 0.0  # DSA indexer key bytes per entry
    state_bytes: float = 0.0  # linear / Mamba: fixed state per sequence per layer (matrix state + conv window)
    state_flops: float = 0.0  # linear / Mamba: recurrent FLOPs per token
    scan_flops: float = 0.0  # linear / Mamba: chunked-scan FLOPs per prefill token
    io_bytes: float = 0.0  # linear / Mamba: activation bytes in + out per token
    backend: str = ""  # the kernel family the engine runs it with (attention_backend; "" = roofsim's default)

    @property
    def latent_decode(self) -> bool:
        """Decode attends in the absorbed MLA latent (dec_qk_dim = kv_lora + rope, not the expanded head)."""
        return self.dec_qk_dim != self.qk_dim


def decode_heads(g: AttnGroup) -> tuple[int, float]:
    """(KV heads, query heads per KV head) of group `g`'s decode kernel (model.cost.decode_attention_time): a
    per-head KV cache's heads and GQA group; (1, 1) for MLA/DSA, whose latent is one entry every head reads (the
    absorbed decode is one wide tensor-core product per sequence)."""
    if g.kind in ("mla", "dsa"):
        return 1, 1.0
    return max(1, g.kv_heads), g.heads / max(1, g.kv_heads)


def decode_keys(g: AttnGroup, seqs: float, ctx: float, ctx_win: float) -> float:
    """Entries a decode step of group `g` reads over `seqs` sequences with `ctx` keys in all (`ctx_win` with
    each limited to the model's sliding_window): all of them / ratio, the window aggregate, or at most
    `window` per sequence (exact when every context is longer than the window)."""
    if not g.window:
        return ctx / g.ratio if g.ratio != 1 else ctx
    if g.primary:
        return ctx_win
    return min(ctx / g.ratio, seqs * g.window)


def prefill_keys(g: AttnGroup, shape: BatchShape) -> tuple[float, float]:
    """(query-entry pairs, previously cached entries read) of the prefill chunks of `shape` for group `g`."""
    pairs, ctx = shape.prefill_attn_pairs, shape.prefill_ctx_tokens
    if g.ratio != 1:
        pairs, ctx = pairs / g.ratio, ctx / g.ratio
    if not g.window:
        return pairs, ctx
    if g.primary:
        return shape.prefill_attn_pairs_win, min(ctx, shape.prefill_seqs * g.window)
    return min(pairs, shape.prefill_tokens * g.window), min(ctx, shape.prefill_seqs * g.window)


def _attn_groups(model: ModelSpec, quant: QuantSpec, parallel: ParallelSpec, policy: str = ""
                 ) -> tuple[AttnGroup, ...]:
    tp, kvb = parallel.tp, quant.kv_bytes_per_element
    sinks = model.family == "gpt_oss"  # learned attention sinks in every layer (model.params counts them)
    out: list[AttnGroup] = []
    for mixer, n in model.mixer_counts():
        if isinstance(mixer, NoMixer):
            continue
        if isinstance(mixer, (LinearAttention, Mamba2Mixer)):
            out.append(_state_group(mixer, n, tp, kvb, quant.activation_bytes))
            continue
        heads = mixer.num_heads // tp
        mla = mixer.mla if isinstance(mixer, (MLAAttention, SparseAttention)) else None
        if mla is not None:
            # vLLM/SGLang keep the MLA latent cache replicated on every TP rank (DeepSeek-V2, arXiv 2405.04434).
            kv_heads, elems = max(1, model.num_kv_heads // tp), mla.kv_lora_rank + mla.qk_rope_head_dim
            qk, v = mla.qk_nope_head_dim + mla.qk_rope_head_dim, mla.v_head_dim
            # decode with weight absorption attends in the latent space
            dqk, dv = mla.kv_lora_rank + mla.qk_rope_head_dim, mla.kv_lora_rank
        else:
            assert isinstance(mixer, (GQAAttention, SparseAttention))
            kv_heads = max(1, mixer.num_kv_heads // tp)
            qk = mixer.head_dim
            v = mixer.v_dim if isinstance(mixer, GQAAttention) else mixer.head_dim
            k_eq_v = mixer.k_eq_v
            elems = kv_heads * (qk if k_eq_v else qk + v)
            dqk, dv = qk, v
        window = mixer.window if isinstance(mixer, GQAAttention) else 0
        index_flops = index_bytes = 0.0
        if isinstance(mixer, SparseAttention):
            window = mixer.topk
            # DeepSeek-V3.2-Exp (arXiv 2512.02556 sec. 2.1): index score of a (query, key) = sum over index heads
            # of w * ReLU(q . k): 2 x heads x dim FLOPs; one index key of index_head_dim cached per entry.
            index_flops, index_bytes = 2.0 * mixer.index_heads * mixer.index_head_dim, mixer.index_head_dim * kvb
        out.append(AttnGroup(
            kind=mixer.kind, layers=n, heads=heads, kv_heads=kv_heads, entry_bytes=elems * kvb + index_bytes, elems=elems,
            qk_dim=qk, v_dim=v, dec_qk_dim=dqk, dec_v_dim=dv, q_width=heads * qk, window=window,
            ratio=mixer.compress_ratio if isinstance(mixer, (GQAAttention, SparseAttention)) else 1,
            primary=bool(window) and bounded_span(mixer) == model.sliding_window,
            index_flops=index_flops, index_bytes=index_bytes,
            # DSA runs its own sparse kernels: no engine backend rule covers them
            backend=attention_backend(policy, qk, window, quant.kv_dtype, mla is not None, sinks)
            if policy and not index_flops else ""))
    return tuple(out)


def _state_group(mixer: LinearAttention | Mamba2Mixer, n: int, tp: int, sb: float, ab: float) -> AttnGroup:
    """A fixed-state mixer: per-sequence state, recurrent FLOPs per decode token, chunked-scan FLOPs per prefill
    token (all per GPU: heads sharded over TP)."""
    if isinstance(mixer, LinearAttention):
        # Gated DeltaNet (Yang et al. 2024, arXiv 2412.06464 sec. 3): a dk x dv state per value head; a decode
        # token decays it, reads S k, writes the rank-1 delta and reads S q (~8 dk dv FLOPs); the chunked
        # prefill (chunk C = 64, fla's chunk_gated_delta_rule) adds 2C(dk+dv) intra-chunk FLOPs per token.
        heads, dk, dv, chunk = mixer.num_v_heads // tp or 1, mixer.k_head_dim, mixer.v_head_dim, 64
        conv = (2 * mixer.num_k_heads * dk + mixer.num_v_heads * dv) // tp
        state = heads * dk * dv + (mixer.conv_kernel - 1) * conv
        qkv = (2 * mixer.num_k_heads * dk + 2 * mixer.num_v_heads * dv) // tp
    else:
        # Mamba-2 SSD (Dao & Gu 2024, arXiv 2405.21060 sec. 6): a head_dim x state state per head; recurrent
        # step ~6 P N FLOPs per head; the chunked scan costs 2Q(N + P) per token per head within a chunk of Q.
        heads, dk, dv, chunk = mixer.num_heads // tp or 1, mixer.state_size, mixer.head_dim, mixer.chunk_size
        conv = (mixer.num_heads * mixer.head_dim + 2 * mixer.n_groups * mixer.state_size) // tp
        # the SSM state in its pinned dtype, the conv window in the cache dtype (vLLM
        # vllm/model_executor/layers/mamba/mamba_utils.py MambaStateDtypeCalculator.mamba2_state_dtype)
        ssm_b = DTYPE_BYTES[mixer.ssm_state_dtype] if mixer.ssm_state_dtype else sb
        state = heads * dk * dv * ssm_b / sb + (mixer.conv_kernel - 1) * conv
        qkv = conv + heads * dv
    recur = heads * (8.0 * dk * dv) + 2.0 * mixer.conv_kernel * conv
    return AttnGroup(kind=mixer.kind, layers=n, heads=heads, kv_heads=heads, entry_bytes=0.0, elems=0, qk_dim=dk, v_dim=dv,
                     dec_qk_dim=dk, dec_v_dim=dv, q_width=0, state_bytes=state * sb, state_flops=recur,
                     scan_flops=recur + heads * 2.0 * chunk * (dk + dv), io_bytes=qkv * ab + heads * dv * ab)


def graph_context(model: ModelSpec, quant: QuantSpec, parallel: ParallelSpec,
                  moe_skew: float = 0.0, attn_backend: AttnPolicy = "") -> GraphContext:
    parallel.validate_for(model)
    tp = parallel.tp
    kv_heads = parallel.kv_heads_per_gpu(model)
    if model.mla is not None:
        # vLLM/SGLang keep the MLA latent cache replicated on every TP rank (DeepSeek-V2, arXiv 2405.04434).
        kv_elems = model.kv_elements_per_token_per_layer()
    else:
        kv_elems = 2 * kv_heads * model.head_dim
    moe_layers = model.num_moe_layers
    heads = model.num_heads // tp
    if model.mla is not None:
        a = model.mla
        # Prefill: MLA expands K/V per head (qk head = nope+rope, v head = v_head_dim).
        qk_d, v_d = a.qk_nope_head_dim + a.qk_rope_head_dim, a.v_head_dim
        # Decode with weight absorption attends in the latent space: scores over kv_lora+rope, values over kv_lora.
        dec_qk, dec_v = a.kv_lora_rank + a.qk_rope_head_dim, a.kv_lora_rank
    else:
        qk_d = v_d = dec_qk = dec_v = model.head_dim
    return GraphContext(
        model=model,
        quant=quant,
        parallel=parallel,
        wb=quant.weight_bytes_per_param,
        ab=quant.activation_bytes,
        kvb=quant.kv_bytes_per_element,
        # a 128x128-block-scaled fp8 checkpoint (model.checkpoint_quant) runs the fp8_block GEMM recipe
        # (int4 weights with group-128 scales on fp8 activations are not block-scaled fp8: per-tensor fp8 recipe)
        gemm_dtype="fp8_block" if quant.gemm_dtype == "fp8" and quant.weight_dtype == "fp8"
        and quant.group_size == FP8_BLOCK_GROUP
        else quant.gemm_dtype,
        attn_dtype=(
            "fp8" if quant.kv_dtype == "fp8" and quant.activation_dtype == "fp8"
            else "fp16" if quant.activation_dtype == "fp16" else "fp32" if quant.activation_dtype == "fp32"
            else "bf16"
        ),
        heads=heads,
        kv_heads=kv_heads,
        kv_elems=kv_elems,
        dense_layers=model.num_layers - moe_layers,
        moe_layers=moe_layers,
        full_layers=model.num_layers - model.num_sliding_layers,
        window_layers=model.num_sliding_layers,
        qk_dim=qk_d,
        v_dim=v_d,
        dec_qk_dim=dec_qk,
        dec_v_dim=dec_v,
        q_width=heads * qk_d,
        attn=_attn_groups(model, quant, parallel, attn_backend),
        moe_skew=moe_skew,
        attn_backend=attn_backend,
    )


def gemm(
    name: str,
    m: int,
    n: int,
    k: int,
    ctx: GraphContext,
    count: int,
    bias: bool = False,
    weight_dtype_bytes: float | None = None,
    dtype: str | None = None,
    rows: float | None = None,
    weight_sets: float = 1,
    moe_expert: bool = False,
) -> Kernel:
    """A token-parallel GEMM: activation [m,k] times weight [k,n]. A grouped (MoE) GEMM gives `rows`, the rows of
    all groups (FLOPs and activations; m is then the rows per group, which sets the tiling), and `weight_sets`,
    the distinct weight matrices it reads (active experts); `moe_expert` marks a fused-MoE expert GEMM (Kernel.moe_expert)."""
    r = m if rows is None else rows
    wb = ctx.wb if weight_dtype_bytes is None else weight_dtype_bytes
    weights = (weight_sets * n * k + (n if bias else 0)) * wb
    dequant = 2.0 * weight_sets * n * k if ctx.quant.weight_only and weight_dtype_bytes is None else 0.0
    return Kernel(
        name=name,
        op="gemm",
        dtype=dtype or ctx.gemm_dtype,
        flops=2.0 * r * n * k + (r * n if bias else 0),
        weight_bytes=weights,
        act_read_bytes=r * k * ctx.ab,
        act_write_bytes=r * n * ctx.ab,
        count=count,
        m=m,
        n=n,
        k=k,
        dequant_flops=dequant,
        moe_expert=moe_expert,
    )


def elementwise(name: str, elems_read: float, elems_written: float, flops_per_elem: float, ctx: GraphContext,
                count: int, weight_elems: float = 0.0, *, op: OpKind) -> Kernel:
    """A memory-bound vector kernel; `op` (norm, activation, rope, residual, elementwise) selects its calibration."""
    return Kernel(
        name=name,
        op=op,
        dtype="fp32",
        flops=flops_per_elem * max(elems_read, elems_written),
        weight_bytes=weight_elems * 2.0,
        act_read_bytes=elems_read * ctx.ab,
        act_write_bytes=elems_written * ctx.ab,
        count=count,
    )


def expected_active_experts(tokens: int, num_experts: int, top_k: int) -> float:
    """Expected distinct experts hit by `tokens` tokens routing uniformly to top_k of num_experts.

    P(expert unused) = (1 - top_k/E)^tokens under independent uniform routing, so E * (1 - that) are active.
    """
    if tokens <= 0:
        return 0.0
    return num_experts * (1.0 - (1.0 - top_k / num_experts) ** tokens)


def _mixer_linear(t: int, c: GraphContext, kernels: list[Kernel]) -> None:
    """Projections of a per-layer (ModelSpec.layers) model: each token mixer's input/output GEMMs, shapes as in
    model.params.mixer_params, sharded over TP."""
    m, tp, h = c.model, c.parallel.tp, c.model.hidden_size
    for mixer, n in m.mixer_counts():
        if isinstance(mixer, NoMixer):
            continue
        if isinstance(mixer, (MLAAttention, SparseAttention)) and mixer.mla is not None:
            a = mixer.mla
            heads = mixer.num_heads // tp
            qk_head = a.qk_nope_head_dim + a.qk_rope_head_dim
            q_in = a.q_lora_rank or h
            _latent_a_proj(t, a, h, c, n, kernels)
            kernels.append(gemm("q_proj", t, heads * qk_head, q_in, c, n))
            _latent_norms(t, a, c, n, kernels)
            kernels.append(gemm("kv_b_proj", t, heads * (a.qk_nope_head_dim + a.v_head_dim), a.kv_lora_rank, c, n))
            kernels.append(gemm("o_proj", t, h, heads * a.v_head_dim, c, n))
        elif isinstance(mixer, LinearAttention):
            qk = 2 * mixer.num_k_heads * mixer.k_head_dim // tp
            v = mixer.num_v_heads * mixer.v_head_dim // tp
            kernels.append(gemm("linear_in_proj", t, qk + 2 * v + 2 * mixer.num_v_heads // tp, h, c, n))
            kernels.append(gemm("linear_out_proj", t, h, v, c, n))
        elif isinstance(mixer, Mamba2Mixer):
            d_in = mixer.num_heads * mixer.head_dim // tp
            bc = 2 * mixer.n_groups * mixer.state_size
            kernels.append(gemm("mamba_in_proj", t, 2 * d_in + bc + mixer.num_heads // tp, h, c, n))
            kernels.append(gemm("mamba_out_proj", t, h, d_in, c, n))
        else:
            heads = mixer.num_heads // tp
            kv = max(1, mixer.num_kv_heads // tp)
            v_dim = mixer.v_dim if isinstance(mixer, GQAAttention) else mixer.head_dim
            k_eq_v = mixer.k_eq_v
            gate = heads * mixer.head_dim if isinstance(mixer, GQAAttention) and mixer.output_gate else 0
            q_in = h
            n_qkv = heads * mixer.head_dim + gate + kv * mixer.head_dim + (0 if k_eq_v else kv * v_dim)
            bias = isinstance(mixer, GQAAttention) and mixer.bias
            kernels.append(gemm("qkv_proj", t, n_qkv, q_in, c, n, bias=bias))
            if isinstance(mixer, SparseAttention):
                kernels.append(gemm("indexer_proj", t, (mixer.index_heads * (mixer.index_head_dim + 1)
                                                        + mixer.index_head_dim), h, c, n))
            kernels.append(gemm("o_proj", t, h, heads * v_dim, c, n, bias=bias))
        if isinstance(mixer, SparseAttention) and mixer.mla is not None:
            q_in = mixer.mla.q_lora_rank or h
            kernels.append(gemm("indexer_proj", t, mixer.index_heads * mixer.index_head_dim, q_in, c, n))
            kernels.append(gemm("indexer_k_w", t, mixer.index_head_dim + mixer.index_heads, h, c, n))


def expert_load(tokens: int, num_experts: int, top_k: int, ep: int = 1, skew: float = 0.0) -> tuple[float, float]:
    """(distinct experts hit, rows routed) on the busiest of `ep` expert-parallel GPUs for `tokens` tokens.

    Expert i is picked by a token with probability q_i = top_k * w_i / sum(w), w_i = (i+1)^-skew (Zipf; skew 0 =
    uniform, where this equals expected_active_experts / ep and tokens * top_k / ep), capped at 1; experts sit
    round-robin on the EP GPUs (i mod ep), so GPU 0 holds the hottest and sets the pace of the step."""
    if tokens <= 0:
        return 0.0, 0.0
    if skew == 0.0:
        return expected_active_experts(tokens, num_experts, top_k) / ep, tokens * top_k / ep
    w = [(i + 1) ** -skew for i in range(num_experts)]
    total = sum(w)
    q = [min(1.0, top_k * x / total) for x in w[::ep]]
    return sum(1.0 - (1.0 - p) ** tokens for p in q), tokens * sum(q)


def _latent_a_proj(t: int, a: MLASpec, h: int, c: GraphContext, n: int, kernels: list[Kernel]) -> None:
    """MLA's down-projections of the hidden state: with a query LoRA the engines run the query's (q_lora_rank) and
    the KV latent + RoPE key's (kv_lora_rank + rope) as one GEMM (vLLM / SGLang `fused_qkv_a_proj(_with_mqa)`,
    TensorRT-LLM `kv_a_proj_with_mqa` over both), one quantised-GEMM fixed cost per layer; without one, kv_a alone."""
    latent = a.kv_lora_rank + a.qk_rope_head_dim
    if a.q_lora_rank:
        kernels.append(gemm("qkv_a_proj", t, a.q_lora_rank + latent, h, c, n))
    else:
        kernels.append(gemm("kv_a_proj", t, latent, h, c, n))


def _latent_norms(t: int, a: MLASpec, c: GraphContext, count: int, kernels: list[Kernel]) -> None:
    """MLA's RMSNorms of the compressed query and KV latents (DeepSeek-V2, arXiv 2405.04434 sec. 2.1.2 / its
    modeling_deepseek.py q_a_layernorm, kv_a_layernorm): one vector pass each over the latent widths."""
    for name, width in (("q_a_norm", a.q_lora_rank), ("kv_a_norm", a.kv_lora_rank)):
        if width:
            kernels.append(elementwise(name, t * width, t * width, 4, c, count, weight_elems=width, op="norm"))


def _attention_linear(t: int, c: GraphContext, kernels: list[Kernel]) -> None:
    m, L = c.model, c.model.num_layers
    if m.layers:
        _mixer_linear(t, c, kernels)
        return
    h = m.hidden_size
    if m.mla is not None:
        a = m.mla
        qk_head = a.qk_nope_head_dim + a.qk_rope_head_dim
        _latent_a_proj(t, a, h, c, L, kernels)
        if a.q_lora_rank:
            kernels.append(gemm("q_b_proj", t, c.heads * qk_head, a.q_lora_rank, c, L))
        else:
            kernels.append(gemm("q_proj", t, c.heads * qk_head, h, c, L))
        _latent_norms(t, a, c, L, kernels)
        kernels.append(gemm("kv_b_proj", t, c.heads * (a.qk_nope_head_dim + a.v_head_dim), a.kv_lora_rank, c, L))
        rot = t * c.heads * a.qk_rope_head_dim
        kernels.append(elementwise("rope", rot, rot, 6, c, L, op="rope"))
        kernels.append(gemm("o_proj", t, h, c.heads * a.v_head_dim, c, L))
        return
    hd = m.head_dim
    n_qkv = (c.heads + 2 * c.kv_heads) * hd
    kernels.append(gemm("qkv_proj", t, n_qkv, h, c, L, bias=m.attention_bias))
    if m.position == "rope":
        rot = t * (c.heads + c.kv_heads) * hd
        kernels.append(elementwise("rope", rot, rot, 6, c, L, op="rope"))
    kernels.append(gemm("o_proj", t, h, c.heads * hd, c, L, bias=m.attention_bias))


def _mlp_linear(t: int, c: GraphContext, kernels: list[Kernel], moe_tokens: int | None = None) -> None:
    """`moe_tokens`: the tokens the routed experts take when they differ from the rank's t (attention DP: every
    rank's; layer_kernels)."""
    m = c.model

    def load(e: MoESpec) -> tuple[float, float] | None:
        return None if moe_tokens is None else expert_load(moe_tokens, e.num_experts, e.top_k, c.parallel.ep,
                                                           c.moe_skew)
    if m.layers:  # per-layer models: one set of kernels per distinct MLP (heterogeneous widths, MoE kinds)
        for mlp, n in m.mlp_counts():
            if isinstance(mlp, DenseMLP):
                _dense_mlp(t, c, mlp.intermediate_size, n, kernels)
            elif isinstance(mlp, MoEMLP):
                _moe_mlp(t, c, mlp.moe, n, kernels, load(mlp.moe))
        return
    if c.dense_layers:
        inter = m.intermediate_size
        if m.moe is not None and m.moe.first_dense_layers and m.moe.dense_intermediate_size:
            inter = m.moe.dense_intermediate_size
        _dense_mlp(t, c, inter, c.dense_layers, kernels)
    if c.moe_layers and m.moe is not None:
        _moe_mlp(t, c, m.moe, c.moe_layers, kernels, load(m.moe))


def _dense_mlp(t: int, c: GraphContext, inter: int, layers: int, kernels: list[Kernel]) -> None:
    m, h, gated = c.model, c.model.hidden_size, c.model.mlp_gated
    i_gpu = inter // c.parallel.tp
    up_n = 2 * i_gpu if gated else i_gpu
    kernels.append(gemm("mlp_up_gate" if gated else "mlp_up", t, up_n, h, c, layers, bias=m.mlp_bias))
    kernels.append(elementwise("mlp_act", t * up_n, t * i_gpu, 8, c, layers, op="activation"))
    kernels.append(gemm("mlp_down", t, h, i_gpu, c, layers, bias=m.mlp_bias))


def moe_kernels(c: GraphContext, t: int, load: tuple[float, float] | None = None,
                slot_rows: float | None = None) -> list[Kernel]:
    """The MoE block of a uniform MoE model over `t` tokens (count = its MoE layers); see _moe_mlp. `load`:
    (distinct experts hit, rows routed) on this GPU when a measured routing is known (default: expert_load);
    `slot_rows`: see _moe_mlp."""
    assert c.model.moe is not None
    ks: list[Kernel] = []
    _moe_mlp(t, c, c.model.moe, c.moe_layers, ks, load, slot_rows)
    return ks




def _moe_mlp(t: int, c: GraphContext, e: MoESpec, n_moe: int, kernels: list[Kernel],
             load: tuple[float, float] | None = None, slot_rows: float | None = None) -> None:
    """The MoE block of `n_moe` layers over `t` tokens: router, the grouped expert GEMMs as the fused-MoE kernels
    run them, shared experts, the EP dispatch/combine all-to-alls.

    Each grouped GEMM reads the weights of the experts its tokens hit and computes the rows routed to them
    (expert_load: uniform routing, or Zipf-skewed by GraphContext.moe_skew); its m is the mean rows per expert,
    which sets the row tile (model.cost.gemm_shape_efficiency), and its FLOPs over 2mnk give the expert count.
    `slot_rows`: the (token, top-k slot) rows the module's buffers hold when it keeps the slots routed to other EP
    ranks (default: only the routed rows). vLLM's and SGLang's Triton/Marlin fused_experts mask a remote slot's
    expert id to -1 (vLLM expert_map; SGLang's rank-local top-k ids) but keep its row: the GEMM blocks of those
    rows write zeros, and the activation and the top-k sum run over every slot (fused_moe.py intermediate caches
    of [tokens, top_k, N])."""
    m, tp = c.model, c.parallel.tp
    gated = m.mlp_gated
    h = e.latent_size or m.hidden_size  # latent MoE: the experts work in the latent width
    ep, moe_tp = c.parallel.ep, c.parallel.moe_tp
    if e.latent_size:  # Nemotron-3 latent MoE: hidden -> latent before the experts, latent -> hidden after
        kernels.append(gemm("moe_latent_in", t, e.latent_size, m.hidden_size, c, n_moe))
        kernels.append(gemm("moe_latent_out", t, m.hidden_size, e.latent_size, c, n_moe))
    kernels.append(gemm("moe_router", t, e.num_experts, m.hidden_size, c, n_moe, weight_dtype_bytes=2.0,
                        dtype="bf16" if c.gemm_dtype not in ("fp32",) else "fp32"))
    active, routed_rows = load if load is not None else expert_load(t, e.num_experts, e.top_k, ep, c.moe_skew)
    ie = e.expert_intermediate_size // moe_tp
    up_n = 2 * ie if gated else ie
    rows_per_expert = max(1, round(routed_rows / active)) if active > 0 else 1
    # The fused-MoE module gathers each token's rows into expert order before the grouped GEMMs and sums the
    # top-k outputs back after them (vLLM moe_align_block_size / moe_sum, TensorRT-LLM expandInputRows /
    # finalizeMoeRouting): two memory-bound kernels over the routed rows.
    kernels.append(elementwise("moe_permute", t * h, routed_rows * h, 1, c, n_moe, op="elementwise"))
    slots = max(routed_rows, slot_rows or 0.0)
    # One grouped GEMM per layer: FLOPs of all routed rows, weights of the active experts only; masked slot rows
    # are written as zeros.
    for name, n, k in (("moe_up_gate" if gated else "moe_up", up_n, h), ("moe_down", h, ie)):
        g = gemm(name, rows_per_expert, n, k, c, n_moe, rows=routed_rows, weight_sets=active,
                 moe_expert=True)
        if slots > routed_rows:
            g = replace(g, act_write_bytes=slots * n * c.ab)
        kernels.append(g)
        if name != "moe_down":
            kernels.append(elementwise("moe_act", slots * up_n, slots * ie, 8, c, n_moe, op="activation"))
    kernels.append(elementwise("moe_unpermute", slots * h, t * h, 2, c, n_moe, op="elementwise"))
    if e.num_shared_experts:
        si = e.num_shared_experts * e.shared_intermediate_size // tp
        s_up = 2 * si if gated else si
        kernels.append(gemm("shared_expert_up_gate", t, s_up, m.hidden_size, c, n_moe))
        kernels.append(gemm("shared_expert_down", t, m.hidden_size, si, c, n_moe))
    dp = c.parallel.attn_dp
    if ep > tp or dp > 1:
        # Dispatch + combine all-to-all of the routed activations, only when the expert group spans ranks holding
        # different tokens: attention-DP ranks (over all dp x tp GPUs, whatever ep), or an EP group wider than
        # the attention TP group. Under attention TP alone every EP rank already holds the whole batch (after the
        # attention all-reduce): it runs its own experts on it and the layer's second TP all-reduce sums the
        # partial outputs, so the engines send no all-to-all (vLLM FusedMoEParallelConfig.use_all2all_kernels =
        # dp_size > 1 and use_ep; TensorRT-LLM fused_moe enable_alltoall requires enable_attention_dp).
        a2a = routed_rows * h * c.ab
        kernels.append(Kernel(name="moe_all_to_all", op="all_to_all", dtype="bf16", comm_bytes=a2a,
                              comm_gpus=dp * tp if dp > 1 else ep, count=2 * n_moe, act_read_bytes=a2a,
                              act_write_bytes=a2a))

def layer_kernels(c: GraphContext, tokens: int, graphed: bool = False, moe_tokens: int | None = None
                  ) -> list[Kernel]:
    """The decoder layers' token-linear kernels over `tokens` rows (each `count` = the layers it runs in);
    `graphed`: the step replays as a CUDA graph (its TP all-reduces pay no host dispatch); `moe_tokens`: with
    attention DP, the tokens of all ranks, which the routed experts take (None: `tokens`)."""
    m, L, tp, t = c.model, c.model.num_layers, c.parallel.tp, tokens
    h = m.hidden_size
    ks: list[Kernel] = []
    if t <= 0:
        return ks
    norm_flops = 4 if m.norm == "rmsnorm" else 7
    ks.append(elementwise("input_norm", t * h, t * h, norm_flops, c, L, weight_elems=h, op="norm"))
    _attention_linear(t, c, ks)
    ks.append(elementwise("residual_add", 2 * t * h, t * h, 1, c, 2 * L, op="residual"))
    ks.append(elementwise("post_attn_norm", t * h, t * h, norm_flops, c, L, weight_elems=h, op="norm"))
    _mlp_linear(t, c, ks, moe_tokens)
    if tp > 1:
        msg = t * h * c.ab
        ks.append(Kernel(name="tp_allreduce", op="allreduce", dtype="bf16", comm_bytes=msg, comm_gpus=tp,
                         count=2 * L, act_read_bytes=msg, act_write_bytes=msg, graphed=graphed))
    return ks


def _entry_kernels(c: GraphContext, tokens: int) -> list[Kernel]:
    """Once per step before the layers: the embedding gather (the pipeline hand-off follows the layers)."""
    if tokens <= 0:
        return []
    t, h = tokens, c.model.hidden_size
    return [Kernel(name="embedding", op="embedding", dtype="fp32", weight_bytes=t * h * c.wb,
                   act_write_bytes=t * h * c.ab, count=1)]


def _exit_kernels(c: GraphContext, tokens: int, logit_tokens: int) -> list[Kernel]:
    """Once per step after the layers: the pipeline hand-offs, then final norm, LM head, logits gather, sampling."""
    m, tp, t = c.model, c.parallel.tp, tokens
    h = m.hidden_size
    ks: list[Kernel] = []
    if t > 0 and c.parallel.pp > 1:
        msg = t * h * c.ab
        ks.append(Kernel(name="pp_send_recv", op="send_recv", dtype="bf16", comm_bytes=msg, comm_gpus=2,
                         count=c.parallel.pp - 1))
    if logit_tokens > 0:
        lt = logit_tokens
        ks.append(elementwise("final_norm", lt * h, lt * h, 4, c, 1, weight_elems=h, op="norm"))
        ks.append(gemm("lm_head", lt, m.vocab_size // tp, h, c, 1))
        if tp > 1:
            msg = lt * (m.vocab_size // tp) * 4.0
            ks.append(Kernel(name="logits_gather", op="all_gather", dtype="fp32", comm_bytes=msg, comm_gpus=tp,
                             count=1, act_read_bytes=msg, act_write_bytes=msg * tp))
        ks.append(Kernel(name="sampling", op="sampling", dtype="fp32", flops=5.0 * lt * m.vocab_size,
                         act_read_bytes=lt * m.vocab_size * 4.0, act_write_bytes=lt * 8.0, count=1))
    return ks


def fixed_kernels(c: GraphContext, tokens: int, logit_tokens: int) -> list[Kernel]:
    """The kernels that run once per step whatever the depth: embedding, pipeline hand-offs, LM head, sampling."""
    return _entry_kernels(c, tokens) + _exit_kernels(c, tokens, logit_tokens)


def linear_kernels(model_ctx: GraphContext, tokens: int, logit_tokens: int, graphed: bool = False,
                   moe_tokens: int | None = None) -> list[Kernel]:
    """Kernels whose cost depends only on the number of tokens in the step (and of tokens needing logits), in
    execution order: fixed entry kernels, the layers' kernels, fixed exit kernels; `moe_tokens` as
    layer_kernels'."""
    c = model_ctx
    return (_entry_kernels(c, tokens) + layer_kernels(c, tokens, graphed, moe_tokens)
            + _exit_kernels(c, tokens, logit_tokens))


def vision_kernels(c: GraphContext, patches: int, pairs: float) -> list[Kernel]:
    """The vision encoder (ModelSpec.vision) over `patches` image patches of this step, `pairs` = sum over images
    of patches^2: patch embedding, per ViT layer QKV / attention / output / MLP GEMMs and two TP all-reduces,
    then the patch merger to the LLM width (shapes of VisionSpec.params). The tower runs in 16-bit: quantised VL
    checkpoints keep it unquantised (the ModelOpt NVFP4 configs of Gemma-4, Qwen3.5 and Kimi-K2.5 in
    ../shared/data/model_configs exclude `model.vision_tower*` / `model.visual*` / `vision_tower*`);
    heads and MLP sharded over TP as vLLM's Qwen2.5/3-VL vision towers do."""
    v = c.model.vision
    if v is None or patches <= 0:
        return []
    tp = c.parallel.tp
    dt = "fp16" if c.gemm_dtype == "fp16" else "fp32" if c.gemm_dtype == "fp32" else "bf16"
    vc = replace(c, wb=2.0, ab=2.0, gemm_dtype=dt)
    h, i, L, heads = v.hidden_size, v.intermediate_size, v.num_layers, max(1, v.num_heads // tp)
    hd = h // v.num_heads
    merged = h * v.merge_size * v.merge_size
    out = -(-patches // (v.merge_size * v.merge_size))
    ks = [gemm("vit_patch_embed", patches, h, 3 * v.patch_size**2, vc, 1, bias=True)]
    ks += [gemm("vit_qkv", patches, 3 * h // tp, h, vc, L, bias=True),
           Kernel(name="vit_attn", op="attn_prefill", dtype=dt, flops=4.0 * pairs * heads * hd,
                  act_read_bytes=patches * 3 * heads * hd * 2.0, act_write_bytes=patches * heads * hd * 2.0,
                  count=L, m=patches, n=1, k=heads, scores=pairs * heads, heads=heads),
           gemm("vit_o_proj", patches, h, h // tp, vc, L, bias=True),
           gemm("vit_mlp_up", patches, (2 if v.gated_mlp else 1) * i // tp, h, vc, L, bias=True),
           elementwise("vit_act", patches * i / tp, patches * i / tp, 8.0, vc, L, op="activation"),
           gemm("vit_mlp_down", patches, h, i // tp, vc, L, bias=True),
           elementwise("vit_norm", 2 * patches * h, 2 * patches * h, 5.0, vc, L, 2 * h, op="norm")]
    if tp > 1:
        msg = patches * h * 2.0
        ks.append(Kernel(name="vit_tp_allreduce", op="allreduce", dtype="bf16", comm_bytes=msg, comm_gpus=tp,
                         count=2 * L, act_read_bytes=msg, act_write_bytes=msg))
    ks += [gemm("vit_merger_fc1", out, merged, merged, vc, 1, bias=True),
           gemm("vit_merger_fc2", out, v.out_hidden_size, merged, vc, 1, bias=True)]
    return ks


def attention_kernels(c: GraphContext, shape: BatchShape) -> list[Kernel]:
    """Attention over the KV cache: prefill (causal, chunk attends to prior context) and decode, one pair of
    kernels per token-mixer group; fixed-state mixers (linear attention, Mamba-2) read and write their state."""
    ks: list[Kernel] = []
    for g in c.attn:
        ks.extend(group_attention_kernels(c, g, shape))
    return ks


def group_attention_kernels(c: GraphContext, g: AttnGroup, shape: BatchShape) -> list[Kernel]:
    """The attention kernels of one token-mixer group (the closed form of model.cost mirrors them)."""
    if g.state_bytes:
        return _state_kernels(c, g, shape)
    ks: list[Kernel] = []
    kv_tok_bytes = g.elems * c.kvb  # per cached entry per layer on this GPU
    suffix = {"full": "", "mla": "", "sliding": "_swa"}.get(g.kind, "_" + g.kind)
    if shape.prefill_tokens:
        # SGLang's Triton extend kernel visits every causal key tile: a sliding window only masks scores
        pg = g if prefill_window(g.backend, g.window) == g.window else replace(g, window=0, primary=False)
        pairs, ctx_read = prefill_keys(pg, shape)
        t = shape.prefill_tokens
        if g.index_flops:  # the indexer scores every cached entry
            all_pairs = shape.prefill_attn_pairs / g.ratio
            ks.append(Kernel(name="dsa_indexer_prefill", op="attn_prefill", dtype=c.attn_dtype,
                             flops=g.index_flops * all_pairs, act_read_bytes=t * g.index_flops / 2 * c.ab,
                             kv_read_bytes=shape.prefill_ctx_tokens / g.ratio * g.index_bytes,
                             kv_write_bytes=t / g.ratio * g.index_bytes, count=g.layers, m=t,
                             n=max(1, shape.prefill_seqs), k=1))
        ks.append(
            Kernel(
                name="attn_prefill" + suffix,
                op="attn_prefill",
                dtype=c.attn_dtype,
                flops=2.0 * pairs * g.heads * (g.qk_dim + g.v_dim),
                act_read_bytes=t * g.q_width * c.ab + t * kv_tok_bytes,
                act_write_bytes=t * g.heads * g.v_dim * c.ab,
                kv_read_bytes=ctx_read * kv_tok_bytes,
                kv_write_bytes=t * kv_tok_bytes,
                count=g.layers,
                m=t,
                n=max(1, shape.prefill_seqs),
                k=g.kv_heads,
                kv_dtype=c.quant.kv_dtype,
                scores=float(pairs) * g.heads,
                heads=g.heads,
                window=pg.window if pg.primary else 0,
            )
        )
        ks[-1] = with_backend(ks[-1], g.backend, g.window, g.heads, g.kv_heads)
    if shape.decode_seqs:
        ctx = decode_keys(g, shape.decode_seqs, shape.decode_ctx_tokens, shape.decode_ctx_tokens_win)
        q_per_seq = shape.decode_tokens / shape.decode_seqs
        dec_kvh, dec_group = decode_heads(g)
        if g.index_flops:
            entries = shape.decode_ctx_tokens / g.ratio
            ks.append(Kernel(name="dsa_indexer_decode", op="attn_decode", dtype=c.attn_dtype,
                             flops=g.index_flops * entries * q_per_seq,
                             act_read_bytes=shape.decode_tokens * g.index_flops / 2 * c.ab,
                             kv_read_bytes=entries * g.index_bytes, kv_write_bytes=shape.decode_tokens * g.index_bytes,
                             count=g.layers, m=shape.decode_tokens, n=shape.decode_seqs, k=1,
                             kv_dtype=c.quant.kv_dtype))
        ks.append(
            Kernel(
                name="attn_decode" + suffix,
                op="attn_decode",
                dtype=c.attn_dtype,
                flops=2.0 * ctx * q_per_seq * g.heads * (g.dec_qk_dim + g.dec_v_dim),
                act_read_bytes=shape.decode_tokens * g.q_width * c.ab,
                act_write_bytes=shape.decode_tokens * g.heads * g.v_dim * c.ab,
                kv_read_bytes=ctx * kv_tok_bytes,
                kv_write_bytes=shape.decode_tokens * kv_tok_bytes,
                count=g.layers,
                m=shape.decode_tokens,
                n=shape.decode_seqs,
                k=dec_kvh,  # KV heads on this GPU: with n, the decode kernel's parallel work units
                heads=round(dec_kvh * dec_group),  # with k, the GQA group
                kv_dtype=c.quant.kv_dtype,
                dequant_flops=(2.0 * ctx * g.elems if c.quant.kv_dtype in ("int8", "int4") else 0.0),
                latent=g.latent_decode,
            )
        )
        ks[-1] = with_backend(ks[-1], g.backend, g.window, g.heads, g.kv_heads)
    return ks


def _state_kernels(c: GraphContext, g: AttnGroup, shape: BatchShape) -> list[Kernel]:
    """Linear attention / Mamba-2: the prefill chunked scan (tensor cores: an attention-prefill class kernel)
    writes each chunk's final state; a decode step is a memory-bound recurrent update reading and writing the
    state of every sequence (an elementwise-class kernel)."""
    ks: list[Kernel] = []
    if shape.prefill_tokens:
        t, seqs = shape.prefill_tokens, max(1, shape.prefill_seqs)
        ks.append(Kernel(name=f"{g.kind}_scan_prefill", op="attn_prefill", dtype=c.attn_dtype,
                         flops=g.scan_flops * t, act_read_bytes=t * g.io_bytes, kv_read_bytes=seqs * g.state_bytes,
                         kv_write_bytes=seqs * g.state_bytes, count=g.layers, m=t, n=seqs, k=g.kv_heads))
    if shape.decode_seqs:
        n = shape.decode_seqs
        ks.append(Kernel(name=f"{g.kind}_state_decode", op="elementwise", dtype="fp32",
                         flops=g.state_flops * shape.decode_tokens, act_read_bytes=shape.decode_tokens * g.io_bytes,
                         kv_read_bytes=n * g.state_bytes, kv_write_bytes=n * g.state_bytes, count=g.layers))
    return ks


def rank_shape(shape: BatchShape, attn_dp: int) -> BatchShape:
    """The batch of the busiest of `attn_dp` attention data-parallel ranks a replica's batch is spread over: the
    engines place whole sequences on a rank (vLLM's DP coordinator, SGLang's DP controller), so the busiest holds
    ceil(seqs / attn_dp) of the decode sequences and of the prefill chunks, each with the batch's mean tokens,
    pairs and context; the ranks step together (the MoE collectives join them every layer), so the replica's step
    is that rank's, but its routed experts take the tokens of every rank (the replica's shape.tokens: moe_tokens of
    linear_kernels); the images of the prompts it prefills are its share of the vision patches. attn_dp = 1 returns
    `shape`."""
    if attn_dp == 1 or shape.is_empty:
        return shape
    ds, ps = shape.decode_seqs, shape.prefill_seqs
    fd = -(-ds // attn_dp) / ds if ds else 0.0
    fp = -(-ps // attn_dp) / ps if ps else 0.0
    per_dec = shape.decode_tokens // ds if ds else 0
    return BatchShape(
        prefill_tokens=round(shape.prefill_tokens * fp), prefill_seqs=round(ps * fp),
        prefill_attn_pairs=shape.prefill_attn_pairs * fp, prefill_ctx_tokens=round(shape.prefill_ctx_tokens * fp),
        decode_seqs=round(ds * fd), decode_tokens=round(ds * fd) * per_dec,
        decode_ctx_tokens=round(shape.decode_ctx_tokens * fd),
        # -1: derived again (one logit per decode token and prefill chunk) unless the step set its own count
        logit_tokens=-1 if shape.logit_tokens == shape.decode_tokens + ps else round(shape.logit_tokens * max(fd, fp)),
        prefill_attn_pairs_win=shape.prefill_attn_pairs_win * fp,
        decode_ctx_tokens_win=round(shape.decode_ctx_tokens_win * fd),
        # a rank encodes the images of the prompts it prefills: the busiest holds its share of the patches
        vision_patches=round(shape.vision_patches * fp) if ps else shape.vision_patches,
        vision_attn_pairs=shape.vision_attn_pairs * fp if ps else shape.vision_attn_pairs)


def step_kernels(model: ModelSpec, quant: QuantSpec, parallel: ParallelSpec, shape: BatchShape) -> list[Kernel]:
    """Every kernel of one iteration on one GPU (of the busiest attention rank), in execution order of kind
    (linear, then attention)."""
    c = graph_context(model, quant, parallel)
    rank = rank_shape(shape, parallel.attn_dp)
    moe = shape.tokens if parallel.attn_dp > 1 else None
    return linear_kernels(c, rank.tokens, rank.logit_tokens, moe_tokens=moe) + attention_kernels(c, rank)


def cache_bytes(model: ModelSpec, quant: QuantSpec, parallel: ParallelSpec) -> tuple[float, float, float, int]:
    """(bytes per context token of the layers whose cache grows with the context, bytes per token of the
    sliding/chunked layers, which hold at most `window` tokens, that window, fixed bytes per sequence) on one GPU
    (its pipeline stage's share). Full, MLA and DSA layers (with the indexer's key) grow with the context,
    compressed layers by 1/ratio; linear-attention and Mamba layers hold a fixed state per sequence."""
    grow = win = state = 0.0
    window = 0
    for g in graph_context(model, quant, parallel).attn:
        if g.state_bytes:
            state += g.state_bytes * g.layers
        elif g.window and g.kind in ("sliding", "chunked"):
            win += g.entry_bytes * g.layers
            window = max(window, g.window)
        else:
            grow += g.entry_bytes / g.ratio * g.layers
    pp = parallel.pp
    return grow / pp, win / pp, state / pp, window


def kv_bytes_per_token(model: ModelSpec, quant: QuantSpec, parallel: ParallelSpec) -> float:
    """KV-cache bytes one token occupies on one GPU (its pipeline stage's layers); of a per-layer model, the
    layers with a KV cache (window layers included: exact up to the window; cache_bytes has the split)."""
    if model.layers:
        grow, win, _, _ = cache_bytes(model, quant, parallel)
        return grow + win
    c = graph_context(model, quant, parallel)
    return c.kv_elems * c.kvb * model.num_layers / parallel.pp


def bytes_of(dtype: str) -> float:
    return DTYPE_BYTES[dtype]
