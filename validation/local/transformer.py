"""A real Llama-architecture forward pass in numpy (float32) with random weights shaped by a ModelSpec:
RMSNorm, RoPE, GQA attention over a preallocated per-sequence KV cache, SwiGLU MLP, LM head. Every prefill
and decode step is timed, so the serving loop in serve.py produces measured step times for this CPU.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from roofsim.model.spec import ModelSpec
from roofsim.validation.local.machine import meminfo_bytes

logger = logging.getLogger(__name__)

#: Array backends the forward pass can run on. Only numpy is implemented; a torch backend would replace the
#: array allocations in `build_local_llama` and `LocalLlama._matmul`, the one place GEMMs are issued.
BACKENDS = ("numpy",)
#: Fraction of MemAvailable the model may use; the rest is margin for the OS and other processes.
MEMORY_USABLE_FRACTION = 0.8
_ACTIVATIONS = ("silu", "gelu", "gelu_new", "gelu_pytorch_tanh", "relu")
_ROPE_THETA = (
    10_000.0  # Llama-2's base (Su et al., RoFormer, arXiv 2104.09864, eq. 34); weights are random anyway.
)
_FLOAT_BYTES = 4


@dataclass(frozen=True, slots=True)
class StepRecord:
    """Wall time of one model step. kind: "prefill" | "decode"; tokens: new tokens processed;
    ctx_sum: sum over the batch's sequences of their KV length after the step (cached + new tokens)."""

    kind: str
    batch_size: int
    tokens: int
    ctx_sum: int
    seconds: float


def small_llama_spec(
    *,
    hidden_size: int = 768,
    num_layers: int = 12,
    num_heads: int = 12,
    num_kv_heads: int = 4,
    intermediate_size: int = 2048,
    vocab_size: int = 32000,
    max_context_tokens: int = 2048,
    name: str | None = None,
) -> ModelSpec:
    """A Llama-like ModelSpec built directly (no loader).

    The defaults give 124.7M parameters: 85M in the layers, 49M in the embedding and LM head.
    """
    if hidden_size % num_heads:
        raise ValueError(f"hidden_size={hidden_size} must be a multiple of num_heads={num_heads}")
    return ModelSpec(
        name=name or f"local-llama-h{hidden_size}-l{num_layers}",
        family="llama",
        vocab_size=vocab_size,
        hidden_size=hidden_size,
        num_layers=num_layers,
        num_heads=num_heads,
        num_kv_heads=num_kv_heads,
        head_dim=hidden_size // num_heads,
        intermediate_size=intermediate_size,
        max_context_tokens=max_context_tokens,
        source="roofsim validation.local.transformer.small_llama_spec (random weights)",
    )


# ---- validation and memory ---------------------------------------------------------------------------


def check_supported(spec: ModelSpec) -> None:
    """ValueError naming the feature when the numpy forward pass cannot run `spec`."""
    unsupported = []
    if spec.mla is not None:
        unsupported.append("multi-head latent attention (mla)")
    if spec.moe is not None:
        unsupported.append("mixture of experts (moe)")
    if spec.position == "alibi":
        unsupported.append("position='alibi'")
    if spec.num_sliding_layers:
        unsupported.append(f"sliding-window attention (num_sliding_layers={spec.num_sliding_layers})")
    if spec.activation not in _ACTIVATIONS:
        unsupported.append(f"activation={spec.activation!r} (supported: {', '.join(_ACTIVATIONS)})")
    if spec.position == "rope" and spec.head_dim % 2:
        unsupported.append(f"RoPE with odd head_dim={spec.head_dim}")
    if unsupported:
        raise ValueError(
            f"model {spec.name!r} uses {'; '.join(unsupported)}, which the local numpy "
            f"forward pass does not implement"
        )


def parameter_count(spec: ModelSpec) -> int:
    """Parameters of the weights `build_local_llama` allocates (norm scales and biases included)."""
    d, q, kv, inter = spec.hidden_size, spec.q_dim, spec.kv_dim, spec.intermediate_size
    attention = d * q + 2 * d * kv + q * d + (q + 2 * kv + d if spec.attention_bias else 0)
    mlp_mats = 3 if spec.mlp_gated else 2
    mlp = mlp_mats * d * inter + ((mlp_mats - 1) * inter + d if spec.mlp_bias else 0)
    norms = 2 * d * (2 if spec.norm == "layernorm" else 1)
    per_layer = attention + mlp + norms
    embed = spec.vocab_size * d
    head = 0 if spec.tie_word_embeddings else spec.vocab_size * d
    positions = spec.max_context_tokens * d if spec.position == "learned" else 0
    final_norm = d * (2 if spec.norm == "layernorm" else 1)
    return spec.num_layers * per_layer + embed + head + positions + final_norm


def kv_cache_bytes(spec: ModelSpec, max_seqs: int, max_ctx_tokens: int) -> int:
    """fp32 K and V for max_seqs sequences of max_ctx_tokens, every layer, preallocated."""
    return spec.num_layers * max_seqs * max_ctx_tokens * spec.kv_elements_per_token_per_layer() * _FLOAT_BYTES


def activation_bytes(spec: ModelSpec, max_seqs: int, max_ctx_tokens: int) -> int:
    """Peak working set of one step: a full-context prefill's activations and its score matrix
    (heads x tokens x tokens), and one logits row per sequence."""
    t = max_ctx_tokens
    per_token = 3 * spec.hidden_size + spec.q_dim + 2 * spec.kv_dim + 3 * spec.intermediate_size
    scores = 2 * spec.num_heads * t * t
    logits = max_seqs * spec.vocab_size
    return (t * per_token + scores + logits) * _FLOAT_BYTES


def estimate_memory_bytes(spec: ModelSpec, max_seqs: int, max_ctx_tokens: int) -> int:
    """Bytes `build_local_llama` needs: fp32 parameters + preallocated KV cache + one step's activations."""
    return (
        parameter_count(spec) * _FLOAT_BYTES
        + kv_cache_bytes(spec, max_seqs, max_ctx_tokens)
        + activation_bytes(spec, max_seqs, max_ctx_tokens)
    )


def available_memory_bytes(meminfo: Path = Path("/proc/meminfo")) -> int:
    """MemAvailable from /proc/meminfo, in bytes."""
    return meminfo_bytes("MemAvailable", meminfo)


def check_memory(
    spec: ModelSpec, max_seqs: int, max_ctx_tokens: int, available_bytes: int | None = None
) -> int:
    """Raise ValueError (needed vs available) if the model would not fit in 80% of MemAvailable; else the need."""
    needed = estimate_memory_bytes(spec, max_seqs, max_ctx_tokens)
    available = available_memory_bytes() if available_bytes is None else available_bytes
    usable = int(available * MEMORY_USABLE_FRACTION)
    if needed > usable:
        params = parameter_count(spec)
        raise ValueError(
            f"model {spec.name!r} with max_seqs={max_seqs}, max_ctx_tokens={max_ctx_tokens} needs "
            f"{needed / 2**30:.2f} GiB ({params / 1e6:.1f}M fp32 parameters = {params * 4 / 2**30:.2f} GiB, "
            f"KV cache {kv_cache_bytes(spec, max_seqs, max_ctx_tokens) / 2**30:.2f} GiB, activations "
            f"{activation_bytes(spec, max_seqs, max_ctx_tokens) / 2**30:.2f} GiB) but only {usable / 2**30:.2f} "
            f"GiB may be used ({MEMORY_USABLE_FRACTION:.0%} of MemAvailable={available / 2**30:.2f} GiB)"
        )
    return needed


# ---- weights and cache -------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True, eq=False)
class LayerWeights:
    """One decoder layer; matrices are stored [in, out] so activations multiply from the left."""

    attn_norm: np.ndarray
    attn_norm_bias: np.ndarray | None
    wq: np.ndarray
    wk: np.ndarray
    wv: np.ndarray
    wo: np.ndarray
    bq: np.ndarray | None
    bk: np.ndarray | None
    bv: np.ndarray | None
    bo: np.ndarray | None
    mlp_norm: np.ndarray
    mlp_norm_bias: np.ndarray | None
    w_gate: np.ndarray | None
    w_up: np.ndarray
    w_down: np.ndarray
    b_gate: np.ndarray | None
    b_up: np.ndarray | None
    b_down: np.ndarray | None


@dataclass(frozen=True, slots=True, eq=False)
class LlamaWeights:
    embed: np.ndarray  # [vocab, hidden]
    positions: np.ndarray | None  # [max_ctx, hidden] for learned positions
    layers: tuple[LayerWeights, ...]
    final_norm: np.ndarray
    final_norm_bias: np.ndarray | None
    lm_head: np.ndarray  # [hidden, vocab] (a transposed view of embed when tied)


def init_weights(spec: ModelSpec, rng: np.random.Generator) -> LlamaWeights:
    """Random fp32 weights: matrices ~ N(0, 1/fan_in) so activations and logits stay O(1) through the layers
    (with HF's 0.02 init the logits of a tiny model would be ~1e-3 and every comparison would pass trivially)."""
    d, q, kv, inter, vocab = (
        spec.hidden_size,
        spec.q_dim,
        spec.kv_dim,
        spec.intermediate_size,
        spec.vocab_size,
    )

    def mat(fan_in: int, fan_out: int) -> np.ndarray:
        out = rng.standard_normal((fan_in, fan_out), dtype=np.float32)
        out *= np.float32(1.0 / math.sqrt(fan_in))
        return out

    def vec(size: int, enabled: bool) -> np.ndarray | None:
        return (rng.standard_normal(size, dtype=np.float32) * np.float32(0.1)) if enabled else None

    def norm(size: int) -> np.ndarray:
        return np.float32(1.0) + np.float32(0.1) * rng.standard_normal(size, dtype=np.float32)

    layernorm = spec.norm == "layernorm"
    layers = []
    for _ in range(spec.num_layers):
        layers.append(
            LayerWeights(
                attn_norm=norm(d),
                attn_norm_bias=vec(d, layernorm),
                wq=mat(d, q),
                wk=mat(d, kv),
                wv=mat(d, kv),
                wo=mat(q, d),
                bq=vec(q, spec.attention_bias),
                bk=vec(kv, spec.attention_bias),
                bv=vec(kv, spec.attention_bias),
                bo=vec(d, spec.attention_bias),
                mlp_norm=norm(d),
                mlp_norm_bias=vec(d, layernorm),
                w_gate=mat(d, inter) if spec.mlp_gated else None,
                w_up=mat(d, inter),
                w_down=mat(inter, d),
                b_gate=vec(inter, spec.mlp_bias and spec.mlp_gated),
                b_up=vec(inter, spec.mlp_bias),
                b_down=vec(d, spec.mlp_bias),
            )
        )
    embed = rng.standard_normal((vocab, d), dtype=np.float32)
    lm_head = embed.T if spec.tie_word_embeddings else mat(d, vocab)
    positions = (
        rng.standard_normal((spec.max_context_tokens, d), dtype=np.float32) * np.float32(0.1)
        if spec.position == "learned"
        else None
    )
    return LlamaWeights(
        embed=embed,
        positions=positions,
        layers=tuple(layers),
        final_norm=norm(d),
        final_norm_bias=vec(d, layernorm),
        lm_head=lm_head,
    )


def rope_tables(max_positions: int, head_dim: int) -> tuple[np.ndarray, np.ndarray]:
    """cos, sin [max_positions, head_dim/2] for RoPE in the rotate-half layout of HF Llama."""
    inv_freq = 1.0 / (_ROPE_THETA ** (np.arange(0, head_dim, 2, dtype=np.float64) / head_dim))
    angles = np.outer(np.arange(max_positions, dtype=np.float64), inv_freq)
    return np.cos(angles).astype(np.float32), np.sin(angles).astype(np.float32)


def apply_rope(x: np.ndarray, cos: np.ndarray, sin: np.ndarray) -> np.ndarray:
    """Rotate x [tokens, heads, head_dim] by its tokens' angles; cos/sin are [tokens, head_dim/2]."""
    half = x.shape[-1] // 2
    x1, x2 = x[..., :half], x[..., half:]
    c, s = cos[:, None, :], sin[:, None, :]
    return np.concatenate((x1 * c - x2 * s, x2 * c + x1 * s), axis=-1)


def _norm(
    x: np.ndarray, weight: np.ndarray, bias: np.ndarray | None, kind: str, eps: float = 1e-6
) -> np.ndarray:
    if kind == "rmsnorm":
        # Zhang & Sennrich 2019, "Root Mean Square Layer Normalization" (arXiv 1910.07467).
        return x * (1.0 / np.sqrt(np.mean(x * x, axis=-1, keepdims=True) + eps)) * weight
    centred = x - x.mean(axis=-1, keepdims=True)
    out = centred / np.sqrt(np.mean(centred * centred, axis=-1, keepdims=True) + eps) * weight
    return out + bias if bias is not None else out


def _activation(x: np.ndarray, kind: str) -> np.ndarray:
    if kind == "silu":
        return x / (1.0 + np.exp(-x))
    if kind == "relu":
        return np.maximum(x, 0)
    # tanh approximation of GELU (Hendrycks & Gimpel 2016, arXiv 1606.08415, sec. 2).
    return 0.5 * x * (1.0 + np.tanh(np.float32(math.sqrt(2 / math.pi)) * (x + np.float32(0.044715) * x**3)))


# ---- the model ---------------------------------------------------------------------------------------


class LocalLlama:
    """Weights, a preallocated KV cache of `max_seqs` slots x `max_ctx_tokens`, and the timed step log.

    Build with `build_local_llama`. Each sequence lives in a slot: `allocate()` it, `prefill` its prompt,
    `decode` one token at a time, `release` it. Mutable by design: the cache and `steps` change each step.
    """

    __slots__ = ("spec", "weights", "keys", "values", "lengths", "in_use", "steps", "_cos", "_sin", "rng")

    def __init__(
        self,
        spec: ModelSpec,
        weights: LlamaWeights,
        keys: tuple[np.ndarray, ...],
        values: tuple[np.ndarray, ...],
        rope: tuple[np.ndarray, np.ndarray] | None,
        rng: np.random.Generator,
    ) -> None:
        self.spec = spec
        self.weights = weights
        self.keys = keys  # per layer: [max_seqs, kv_heads, max_ctx, head_dim]
        self.values = values
        self.lengths = np.zeros(keys[0].shape[0], dtype=np.int64)
        self.in_use = np.zeros(keys[0].shape[0], dtype=bool)
        self.steps: list[StepRecord] = []
        self._cos: np.ndarray | None
        self._sin: np.ndarray | None
        self._cos, self._sin = rope if rope is not None else (None, None)
        self.rng = rng

    @property
    def max_seqs(self) -> int:
        return self.keys[0].shape[0]

    @property
    def max_ctx_tokens(self) -> int:
        return self.keys[0].shape[2]

    # ---- slots --------------------------------------------------------------------------------
    def allocate(self) -> int:
        """A free KV slot (its cache is empty); ValueError when all `max_seqs` are taken."""
        free = np.flatnonzero(~self.in_use)
        if not free.size:
            raise ValueError(f"all max_seqs={self.max_seqs} KV slots are in use")
        slot = int(free[0])
        self.in_use[slot] = True
        self.lengths[slot] = 0
        return slot

    def release(self, slot: int) -> None:
        self._check_slot(slot)
        self.in_use[slot] = False
        self.lengths[slot] = 0

    def context_length(self, slot: int) -> int:
        return int(self.lengths[slot])

    def _check_slot(self, slot: int) -> None:
        if not 0 <= slot < self.max_seqs or not self.in_use[slot]:
            raise ValueError(f"slot={slot} is not an allocated slot (0 <= slot < {self.max_seqs})")

    # ---- steps --------------------------------------------------------------------------------
    def prefill(
        self,
        prompts: Sequence[tuple[int, Sequence[int] | np.ndarray]],
        *,
        all_logits: bool = False,
        record: bool = True,
    ) -> np.ndarray:
        """Process each (slot, prompt tokens) after what the slot already caches; projections and MLP run as
        one GEMM over all the prompts' tokens, attention per sequence. Returns the logits of each prompt's last
        token [len(prompts), vocab], or of every token [sum tokens, vocab] with all_logits."""
        segments = [(slot, np.asarray(tokens, dtype=np.int64)) for slot, tokens in prompts]
        if not segments or any(seg.size == 0 for _, seg in segments):
            raise ValueError("prefill needs at least one prompt and every prompt at least one token")
        return self._timed("prefill", segments, all_logits, record)

    def decode(self, batch: Sequence[tuple[int, int]], *, record: bool = True) -> np.ndarray:
        """One decode step: each (slot, token) appends one token; returns next-token logits [batch, vocab]."""
        if not batch:
            raise ValueError("decode needs at least one (slot, token)")
        segments = [(slot, np.array([token], dtype=np.int64)) for slot, token in batch]
        return self._timed("decode", segments, False, record)

    def sample(self, logits: np.ndarray, temperature: float = 0.0) -> np.ndarray:
        """Next tokens [batch]: argmax when temperature == 0, else a draw from softmax(logits / T) with self.rng."""
        if temperature < 0:
            raise ValueError(f"temperature={temperature} must be >= 0")
        if temperature == 0:
            return np.argmax(logits, axis=-1)
        z = logits / temperature
        z = z - z.max(axis=-1, keepdims=True)
        p = np.exp(z)
        p /= p.sum(axis=-1, keepdims=True)
        cumulative = np.cumsum(p, axis=-1)
        rows: int = logits.shape[0]  # an int, so numpy's stubs pick the array-returning overload of random()
        draws = self.rng.random(rows)[:, None]
        return np.minimum((cumulative < draws).sum(axis=-1), logits.shape[-1] - 1)

    def _timed(
        self, kind: str, segments: list[tuple[int, np.ndarray]], all_logits: bool, record: bool
    ) -> np.ndarray:
        seen = set()
        for slot, tokens in segments:
            self._check_slot(slot)
            if slot in seen:
                raise ValueError(f"slot={slot} appears twice in one step")
            seen.add(slot)
            if self.lengths[slot] + tokens.size > self.max_ctx_tokens:
                raise ValueError(
                    f"slot={slot}: {self.lengths[slot]} cached + {tokens.size} new tokens exceed "
                    f"max_ctx_tokens={self.max_ctx_tokens}"
                )
            if tokens.min() < 0 or tokens.max() >= self.spec.vocab_size:
                raise ValueError(f"slot={slot}: token ids must be in [0, {self.spec.vocab_size})")
        start = time.perf_counter()
        logits = self._forward(segments, all_logits)
        seconds = time.perf_counter() - start
        if record:
            self.steps.append(
                StepRecord(
                    kind=kind,
                    batch_size=len(segments),
                    tokens=sum(int(t.size) for _, t in segments),
                    ctx_sum=int(sum(self.lengths[slot] for slot, _ in segments)),
                    seconds=seconds,
                )
            )
        return logits

    def _matmul(self, a: np.ndarray, b: np.ndarray) -> np.ndarray:
        """Every weight GEMM goes through here (the hook for another array backend)."""
        return a @ b

    def _forward(self, segments: list[tuple[int, np.ndarray]], all_logits: bool) -> np.ndarray:
        spec, w = self.spec, self.weights
        heads, kv_heads, hd = spec.num_heads, spec.num_kv_heads, spec.head_dim
        group = heads // kv_heads
        starts = [int(self.lengths[slot]) for slot, _ in segments]
        sizes = [int(t.size) for _, t in segments]
        offsets = np.concatenate(([0], np.cumsum(sizes)))
        tokens = np.concatenate([t for _, t in segments])
        positions = np.concatenate([np.arange(s, s + n) for s, n in zip(starts, sizes, strict=True)])
        total = int(offsets[-1])
        scale = np.float32(1.0 / math.sqrt(hd))

        x = w.embed[tokens]
        if w.positions is not None:
            x = x + w.positions[positions]
        cos = self._cos[positions] if self._cos is not None else None
        sin = self._sin[positions] if self._sin is not None else None
        attn = np.empty((total, heads * hd), dtype=np.float32)

        for index, layer in enumerate(w.layers):
            h = _norm(x, layer.attn_norm, layer.attn_norm_bias, spec.norm)
            q = self._matmul(h, layer.wq)
            k = self._matmul(h, layer.wk)
            v = self._matmul(h, layer.wv)
            if layer.bq is not None:
                q += layer.bq
                k += layer.bk
                v += layer.bv
            q = q.reshape(total, heads, hd)
            k = k.reshape(total, kv_heads, hd)
            v = v.reshape(total, kv_heads, hd)
            if cos is not None and sin is not None:  # set together from `rope`
                q = apply_rope(q, cos, sin)
                k = apply_rope(k, cos, sin)
            cache_k, cache_v = self.keys[index], self.values[index]
            for seg, (slot, _) in enumerate(segments):
                lo, hi, start = offsets[seg], offsets[seg + 1], starts[seg]
                n = hi - lo
                end = start + n
                cache_k[slot, :, start:end] = k[lo:hi].transpose(1, 0, 2)
                cache_v[slot, :, start:end] = v[lo:hi].transpose(1, 0, 2)
                keys = cache_k[slot, :, :end]  # [kv_heads, ctx, hd]
                values = cache_v[slot, :, :end]
                # GQA: query head h reads kv head h // group (HF repeat_kv); stack a kv group's queries as rows.
                qg: np.ndarray = (q[lo:hi] * scale).reshape(n, kv_heads, group, hd).transpose(1, 2, 0, 3)
                qg = qg.reshape(kv_heads, group * n, hd)
                scores = np.matmul(qg, keys.transpose(0, 2, 1)).reshape(kv_heads, group, n, end)
                if n > 1:
                    # Causal: the token at position start+i sees keys 0..start+i.
                    allowed = np.arange(end)[None, :] <= (start + np.arange(n))[:, None]
                    scores = np.where(allowed, scores, np.float32(-np.inf))
                scores = scores - scores.max(axis=-1, keepdims=True)
                probs = np.exp(scores)
                probs /= probs.sum(axis=-1, keepdims=True)
                out = np.matmul(probs.reshape(kv_heads, group * n, end), values)  # [kv, group*n, hd]
                attn[lo:hi] = out.reshape(kv_heads, group, n, hd).transpose(2, 0, 1, 3).reshape(n, heads * hd)
            o = self._matmul(attn, layer.wo)
            if layer.bo is not None:
                o += layer.bo
            x = x + o

            h = _norm(x, layer.mlp_norm, layer.mlp_norm_bias, spec.norm)
            up = self._matmul(h, layer.w_up)
            if layer.b_up is not None:
                up += layer.b_up
            if layer.w_gate is not None:
                gate = self._matmul(h, layer.w_gate)
                if layer.b_gate is not None:
                    gate += layer.b_gate
                act = _activation(gate, spec.activation) * up  # SwiGLU (Shazeer 2020, arXiv 2002.05202)
            else:
                act = _activation(up, spec.activation)
            down = self._matmul(act, layer.w_down)
            if layer.b_down is not None:
                down += layer.b_down
            x = x + down

        for seg, (slot, _) in enumerate(segments):
            self.lengths[slot] = starts[seg] + sizes[seg]
        rows = x if all_logits else x[offsets[1:] - 1]
        rows = _norm(rows, w.final_norm, w.final_norm_bias, spec.norm)
        return self._matmul(rows, w.lm_head)


def build_local_llama(
    spec: ModelSpec,
    rng: np.random.Generator,
    *,
    max_seqs: int,
    max_ctx_tokens: int,
    backend: str = "numpy",
    available_bytes: int | None = None,
) -> LocalLlama:
    """Check support and memory (before allocating anything), then draw weights from `rng` and preallocate
    the KV cache. `available_bytes` overrides /proc/meminfo's MemAvailable (for tests)."""
    if backend not in BACKENDS:
        raise ValueError(
            f"backend={backend!r} is not available; implemented: {BACKENDS} (a torch backend "
            f"would subclass LocalLlama and override _matmul and the allocations)"
        )
    check_supported(spec)
    if max_seqs < 1:
        raise ValueError(f"max_seqs={max_seqs} must be >= 1")
    if not 1 <= max_ctx_tokens <= spec.max_context_tokens:
        raise ValueError(
            f"max_ctx_tokens={max_ctx_tokens} must be in [1, {spec.max_context_tokens}] "
            f"(the model's max_context_tokens)"
        )
    needed = check_memory(spec, max_seqs, max_ctx_tokens, available_bytes)
    logger.info(
        "building %s: %.1fM params, %.2f GiB estimated",
        spec.name,
        parameter_count(spec) / 1e6,
        needed / 2**30,
    )
    weights = init_weights(spec, rng)
    shape = (max_seqs, spec.num_kv_heads, max_ctx_tokens, spec.head_dim)
    keys = tuple(np.zeros(shape, dtype=np.float32) for _ in range(spec.num_layers))
    values = tuple(np.zeros(shape, dtype=np.float32) for _ in range(spec.num_layers))
    rope = rope_tables(max_ctx_tokens, spec.head_dim) if spec.position == "rope" else None
    return LocalLlama(spec, weights, keys, values, rope, rng)


def fill_cache(model: LocalLlama, slot: int, length: int, rng: np.random.Generator) -> None:
    """Give `slot` `length` cached tokens of random K/V without running a prefill: a decode step's cost depends
    on the context length, not on the values, so step-time benchmarks skip the long prefills."""
    model._check_slot(slot)
    if not 0 <= length < model.max_ctx_tokens:
        raise ValueError(f"length={length} must be in [0, max_ctx_tokens={model.max_ctx_tokens})")
    for keys, values in zip(model.keys, model.values, strict=True):
        keys[slot, :, :length] = rng.standard_normal(keys[slot, :, :length].shape, dtype=np.float32)
        values[slot, :, :length] = rng.standard_normal(values[slot, :, :length].shape, dtype=np.float32)
    model.lengths[slot] = length


def measure_step_times(
    model: LocalLlama,
    rng: np.random.Generator,
    *,
    prefill_lens: Sequence[int] = (32, 128, 512),
    decode_batch_sizes: Sequence[int] = (1, 4, 16),
    decode_ctx_tokens: int = 512,
    repeats: int = 3,
) -> tuple[StepRecord, ...]:
    """Time single-sequence prefills of each length and decode steps of each batch size (every sequence at
    `decode_ctx_tokens` cached tokens), `repeats` times each after one warm-up; returns every timed step.
    Slots are released afterwards and model.steps is left as it was."""
    if repeats < 1:
        raise ValueError(f"repeats={repeats} must be >= 1")
    if max(decode_batch_sizes) > model.max_seqs:
        raise ValueError(f"decode batch {max(decode_batch_sizes)} exceeds max_seqs={model.max_seqs}")
    kept = list(model.steps)
    model.steps.clear()
    try:
        for n in prefill_lens:
            time_prefill_steps(model, [rng.integers(0, model.spec.vocab_size, size=n)], repeats)
        for batch in decode_batch_sizes:
            time_decode_steps(model, batch, decode_ctx_tokens, repeats, rng)
        return tuple(model.steps)
    finally:
        model.steps[:] = kept


def time_prefill_steps(model: LocalLlama, prompts: Sequence[np.ndarray], repeats: int) -> None:
    """One prefill step of all `prompts` (one fresh slot each), run repeats + 1 times, the first unrecorded
    (warm-up); the slots are released afterwards."""
    slots = [model.allocate() for _ in prompts]
    for rep in range(repeats + 1):
        model.lengths[slots] = 0
        model.prefill(list(zip(slots, prompts, strict=True)), record=rep > 0)
    for s in slots:
        model.release(s)


def time_decode_steps(model: LocalLlama, batch: int, ctx_tokens: int, repeats: int, rng: np.random.Generator
                      ) -> None:
    """A decode step of `batch` sequences, each at `ctx_tokens` tokens after the step (random K/V from `rng`),
    run repeats + 1 times, the first unrecorded (warm-up); the slots are released afterwards."""
    slots = [model.allocate() for _ in range(batch)]
    for s in slots:
        fill_cache(model, s, ctx_tokens - 1, rng)
    for rep in range(repeats + 1):
        model.lengths[slots] = ctx_tokens - 1
        model.decode([(s, 1) for s in slots], record=rep > 0)
    for s in slots:
        model.release(s)
