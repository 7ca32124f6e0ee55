"""Memory planner: weights, KV bytes per token, activation workspace and reserve per GPU -> KV-cache capacity.

Mirrors how vLLM sizes its KV cache: usable = capacity x gpu_memory_utilization; KV = usable - weights -
peak activations of a profiling run at max_num_batched_tokens - non-torch memory (CUDA context, NCCL buffers).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from roofsim.hardware_specs.errors import InputError
from roofsim.hardware_specs.spec import HardwareSpec
from roofsim.model.graph import cache_bytes, graph_context
from roofsim.model.params import count_params
from roofsim.model.spec import ModelSpec, ParallelSpec, QuantSpec

# CUDA context + cuBLAS/NCCL workspaces outside the PyTorch allocator: ~0.5-1 GB per GPU as reported by vLLM's
# memory profiler ("non_torch_memory") on A100/H100 (vLLM worker logs); we take 0.75e9 bytes.
NON_TORCH_BYTES = 0.75e9


class DoesNotFitError(InputError):
    """The model's weights (plus minimal workspace) exceed the memory of the layout; message has the breakdown."""


@dataclass(frozen=True, slots=True)
class MemoryPlan:
    capacity_bytes: float  # per GPU
    usable_bytes: float  # capacity x gpu_memory_utilization
    weights_bytes: float  # per GPU (largest pipeline stage)
    activation_bytes: float
    non_torch_bytes: float
    kv_capacity_bytes: float
    kv_bytes_per_token: float  # per GPU
    block_size: int
    max_kv_tokens: int  # whole blocks, of the whole replica (attn_dp ranks x each rank's blocks)
    max_context_tokens: int
    total_weight_bytes: float  # whole model, all GPUs
    # per-layer models: the fixed state of linear-attention / Mamba layers per sequence (reserved for max_seqs
    # sequences before the KV blocks), and the part of kv_bytes_per_token of sliding/chunked layers, which
    # hold at most window_tokens of a sequence (max_sequences counts them so; the token pool counts them whole)
    state_bytes_per_seq: float = 0.0
    window_bytes_per_token: float = 0.0
    window_tokens: int = 0

    @property
    def kv_blocks(self) -> int:
        return self.max_kv_tokens // self.block_size

    def max_sequences(self, context_tokens: int) -> int:
        """Sequences of `context_tokens` each that fit in the KV cache at once (block-rounded)."""
        if context_tokens <= 0:
            raise ValueError(f"context_tokens={context_tokens} must be > 0")
        blocks = math.ceil(context_tokens / self.block_size)
        if not self.window_bytes_per_token or context_tokens <= self.window_tokens:
            return self.kv_blocks // blocks
        # window layers stop growing at the window: a sequence needs fewer bytes than blocks x kv_bytes_per_token
        grow = self.kv_bytes_per_token - self.window_bytes_per_token
        per_seq = blocks * self.block_size * grow + self.window_tokens * self.window_bytes_per_token
        return int(self.kv_blocks * self.block_size * self.kv_bytes_per_token // per_seq)

    def as_dict(self) -> dict[str, float]:
        return {
            "capacity_bytes": self.capacity_bytes,
            "usable_bytes": self.usable_bytes,
            "weights_bytes": self.weights_bytes,
            "activation_bytes": self.activation_bytes,
            "non_torch_bytes": self.non_torch_bytes,
            "kv_capacity_bytes": self.kv_capacity_bytes,
            "kv_bytes_per_token": self.kv_bytes_per_token,
            "max_kv_tokens": self.max_kv_tokens,
            "block_size": self.block_size,
            "total_weight_bytes": self.total_weight_bytes,
            # per-layer models only (a uniform stack's plan reads as it always has)
            **({"state_bytes_per_seq": self.state_bytes_per_seq} if self.state_bytes_per_seq else {}),
            **({"window_bytes_per_token": self.window_bytes_per_token, "window_tokens": self.window_tokens}
               if self.window_bytes_per_token else {}),
        }


def weight_bytes_per_gpu(model: ModelSpec, quant: QuantSpec, parallel: ParallelSpec) -> tuple[float, float]:
    """(bytes on the most loaded GPU, bytes of the whole model)."""
    p = count_params(model)
    wb = quant.weight_bytes_per_param
    # Attention, dense MLPs, shared experts and norms are sharded over a rank's tp GPUs and replicated on each of
    # the attn_dp ranks; the routed experts are sharded over all attn_dp x tp GPUs of a stage (ep x moe_tp).
    layer_params = (p.attention + p.dense_mlp + p.moe_shared + p.norms) / parallel.tp + p.moe_routed / (
        parallel.tp * parallel.attn_dp)
    total = p.total * wb
    # Layers split evenly over pp stages; the embedding lives on the first stage and the LM head on the last,
    # both vocab-sharded over tp. KV projections are replicated when tp > kv heads.
    replicated = 0.0
    if model.mla is None and parallel.tp > model.num_kv_heads:
        kv_w = 2 * model.hidden_size * model.kv_dim * model.num_layers
        replicated = kv_w * (parallel.tp / model.num_kv_heads - 1) / parallel.tp
    per_stage_layers = (layer_params + replicated) / parallel.pp
    ends = max(p.embedding + p.position, p.lm_head) / parallel.tp if parallel.pp > 1 else (
        p.embedding + p.position + p.lm_head) / parallel.tp
    return (per_stage_layers + ends) * wb, total


def activation_bytes(model: ModelSpec, quant: QuantSpec, parallel: ParallelSpec, max_batched_tokens: int,
                     max_seqs: int) -> float:
    """Peak transient memory of a forward pass over max_batched_tokens (the largest live intermediates)."""
    c = graph_context(model, quant, parallel)
    h = model.hidden_size
    tp = parallel.tp
    inter = model.intermediate_size
    if model.moe is not None:
        inter = max(inter, 2 * model.moe.expert_intermediate_size * model.moe.top_k)
    widest = max(3 * h, (c.heads + 2 * c.kv_heads) * model.head_dim + h, 3 * inter // tp)
    per_token = (2 * h + widest) * c.ab
    logits = max_seqs * model.vocab_size / tp * 4.0 * 2  # fp32 logits + sampling workspace
    return max_batched_tokens * per_token + logits


def plan_memory(
    model: ModelSpec,
    hardware: HardwareSpec,
    quant: QuantSpec | None = None,
    parallel: ParallelSpec | None = None,
    gpu_memory_utilization: float = 0.9,
    max_batched_tokens: int = 8192,
    max_seqs: int = 256,
    block_size: int = 16,
    extra_bytes_per_gpu: float = 0.0,
    _probe: bool = False,
) -> MemoryPlan:
    """KV capacity of one replica; DoesNotFitError (with the breakdown and what would fit) when nothing is left."""
    quant = quant or QuantSpec()
    parallel = parallel or ParallelSpec()
    if not 0 < gpu_memory_utilization <= 1:
        raise ValueError(f"gpu_memory_utilization={gpu_memory_utilization} must be in (0, 1]")
    if block_size <= 0:
        raise ValueError(f"block_size={block_size} must be > 0")
    parallel.validate_for(model)
    cap = hardware.memory.capacity_bytes
    usable = cap * gpu_memory_utilization
    weights, total_w = weight_bytes_per_gpu(model, quant, parallel)
    # attention DP: the replica's token and sequence budgets are spread over its attn_dp ranks (vLLM and SGLang
    # size each DP rank's buffers for its own share), and each rank's GPUs hold the KV of that rank's sequences
    dp = parallel.attn_dp
    act = activation_bytes(model, quant, parallel, -(-max_batched_tokens // dp), -(-max_seqs // dp))
    c = graph_context(model, quant, parallel)
    state = win = 0.0
    window = 0
    if model.layers:
        grow, win, state, window = cache_bytes(model, quant, parallel)
        kv_tok = grow + win
    else:
        kv_tok = c.kv_elems * c.kvb * model.num_layers / parallel.pp
    kv_cap = usable - weights - act - NON_TORCH_BYTES - extra_bytes_per_gpu - -(-max_seqs // dp) * state
    blocks = dp * int(kv_cap // (kv_tok * block_size)) if kv_cap > 0 and kv_tok > 0 else 0
    plan = MemoryPlan(
        capacity_bytes=cap,
        usable_bytes=usable,
        weights_bytes=weights,
        activation_bytes=act,
        non_torch_bytes=NON_TORCH_BYTES + extra_bytes_per_gpu,
        kv_capacity_bytes=max(0.0, kv_cap),
        kv_bytes_per_token=kv_tok,
        block_size=block_size,
        max_kv_tokens=blocks * block_size,
        max_context_tokens=model.max_context_tokens,
        total_weight_bytes=total_w,
        state_bytes_per_seq=state,
        window_bytes_per_token=win,
        window_tokens=window,
    )
    if blocks < 1 and not _probe:
        # the suggestions are sized with this plan's batch, not the defaults: a layout that only fits a smaller
        # batch would be the very layout just rejected
        sizing = {"max_batched_tokens": max_batched_tokens, "max_seqs": max_seqs, "block_size": block_size,
                  "extra_bytes_per_gpu": extra_bytes_per_gpu}
        raise DoesNotFitError(_does_not_fit_message(model, hardware, quant, parallel, plan, kv_cap,
                                                    gpu_memory_utilization, sizing))
    return plan


def _gb(x: float) -> str:
    return f"{x / 1e9:.2f} GB"


def _does_not_fit_message(model: ModelSpec, hw: HardwareSpec, quant: QuantSpec, par: ParallelSpec,
                          plan: MemoryPlan, kv_cap: float, util: float, sizing: dict[str, float]) -> str:
    lines = [
        f"{model.name} does not fit on {par.num_gpus} x {hw.id} (tp={par.tp}, pp={par.pp}"
        + (f", attn_dp={par.attn_dp}" if par.attn_dp > 1 else "") + ") with "
        f"weights {quant.weight_dtype}, KV {quant.kv_dtype}, gpu_memory_utilization={util}:",
        f"  per-GPU capacity {_gb(plan.capacity_bytes)}, usable {_gb(plan.usable_bytes)}",
        f"  weights {_gb(plan.weights_bytes)} + activations {_gb(plan.activation_bytes)} + "
        f"non-torch {_gb(plan.non_torch_bytes)} leaves {_gb(kv_cap)} for the KV cache "
        f"(needs at least one block of {plan.block_size} tokens x {plan.kv_bytes_per_token / 1e3:.1f} kB)",
    ]
    suggestions = suggest_fits(model, hw, quant, par, util, **sizing)  # type: ignore[arg-type]
    if suggestions:
        lines.append("  would fit: " + "; ".join(suggestions))
    elif plan.activation_bytes >= plan.usable_bytes:
        lines.append(f"  the activations of one step over {sizing['max_batched_tokens']:.0f} batched tokens "
                     f"({_gb(plan.activation_bytes)}) alone exceed a GPU's usable memory and no layout tried fits "
                     "them; lower the batch or the prompt length")
    else:
        lines.append("  no tp in 1..8 with bf16/fp8/int4 weights fits on one node; add pipeline stages or a larger GPU")
    return "\n".join(lines)


def suggest_fits(model: ModelSpec, hw: HardwareSpec, quant: QuantSpec, par: ParallelSpec, util: float,
                 max_batched_tokens: int = 8192, max_seqs: int = 256, block_size: int = 16,
                 extra_bytes_per_gpu: float = 0.0) -> list[str]:
    """Smallest layouts/quantizations (tp up to 8, pp up to 4) that leave room for a KV cache with the same
    batch sizing (max_batched_tokens, max_seqs, block_size, extra bytes) as the plan that did not fit."""
    out: list[str] = []
    dtypes = [quant.weight_dtype] + [d for d in ("fp8", "int4") if d != quant.weight_dtype]
    for wd in dtypes:
        if wd == "fp8" and not hw.supports("fp8"):
            continue
        q = quant.model_copy(update={"weight_dtype": wd})
        for pp in (1, 2, 4):
            found = False
            for tp in (1, 2, 4, 8):
                cand = ParallelSpec(tp=tp, pp=pp, ep=1)
                try:
                    cand.validate_for(model)
                    if plan_memory(model, hw, q, cand, util, max_batched_tokens, max_seqs, block_size,
                                   extra_bytes_per_gpu, _probe=True).max_kv_tokens < 1:
                        continue
                except ValueError:
                    continue
                out.append(f"tp={tp} pp={pp} weights {wd}")
                found = True
                break
            if found:
                break
    return out[:3]
