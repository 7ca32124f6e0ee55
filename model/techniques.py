"""Speculative decoding and early exit on top of the roofline CostModel: drafter/acceptance/exit configs, draft
passes, verification of k (or tree) tokens, partial-depth steps with exit heads and KV fill, and closed forms
(expected tokens per step, speedups) that the simulator and the reproductions check against."""

from __future__ import annotations

import math
from typing import Annotated, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, model_validator

from roofsim.model.batch import BatchShape
from roofsim.model.cost import CostModel
from roofsim.model.graph import fixed_kernels, gemm, layer_kernels
from roofsim.model.spec import ModelSpec

_FROZEN = ConfigDict(frozen=True, extra="forbid")
Prob = Annotated[float, Field(ge=0.0, le=1.0, allow_inf_nan=False)]


# ---- acceptance models ----------------------------------------------------------------------------------
class IIDAcceptance(BaseModel):
    """Every draft token is accepted with probability `rate`, independently (Leviathan et al. 2023,
    arXiv 2211.17192, sec. 3.1: E[tokens per step] = (1 - a^(k+1)) / (1 - a))."""

    model_config = _FROZEN
    kind: Literal["iid"] = "iid"
    rate: Prob


class PositionalAcceptance(BaseModel):
    """Acceptance of draft position i given positions < i were accepted (`rates[i]`); Medusa heads and
    EAGLE drafters accept later positions less often (Medusa, arXiv 2401.10774, per-head top-1 accuracy)."""

    model_config = _FROZEN
    kind: Literal["positional"] = "positional"
    rates: tuple[Prob, ...] = Field(min_length=1)


class BetaAcceptance(BaseModel):
    """Each request draws its own i.i.d. rate from Beta(alpha, beta) when it starts decoding (prompts differ:
    code and summaries accept more than chat; see OSD, arXiv 2310.07177)."""

    model_config = _FROZEN
    kind: Literal["beta"] = "beta"
    alpha: float = Field(gt=0, allow_inf_nan=False)
    beta: float = Field(gt=0, allow_inf_nan=False)

    @property
    def mean(self) -> float:
        return self.alpha / (self.alpha + self.beta)


Acceptance = Annotated[IIDAcceptance | PositionalAcceptance | BetaAcceptance, Field(discriminator="kind")]


# ---- drafters -------------------------------------------------------------------------------------------
class DraftModelDrafter(BaseModel):
    """A separate small model on the same GPUs (same quantization and TP as the target when it shards, else
    replicated), with its own weights and KV cache; it must share the target's vocabulary."""

    model_config = _FROZEN
    kind: Literal["draft_model"] = "draft_model"
    model: str = Field(description="model preset, HF id or config.json of the drafter")


class SelfDrafter(BaseModel):
    """Self-speculation by layer skipping (Draft & Verify, arXiv 2309.08168): the draft runs `draft_layers`
    of the model's layers; verification is a full pass. No extra memory."""

    model_config = _FROZEN
    kind: Literal["self"] = "self"
    draft_layers: int = Field(ge=1)


class LayerSkipDrafter(BaseModel):
    """LayerSkip early-exit drafting (arXiv 2404.16710): draft by exiting at `exit_layer` through the shared LM
    head; verification reuses the first exit_layer layers' activations and KV and runs only the rest."""

    model_config = _FROZEN
    kind: Literal["layerskip"] = "layerskip"
    exit_layer: int = Field(ge=1)


class MedusaDrafter(BaseModel):
    """Medusa heads (arXiv 2401.10774): k extra heads (a residual h x h block plus a vocab projection each) on
    the last hidden state propose k tokens in one go; a candidate tree is verified with tree attention."""

    model_config = _FROZEN
    kind: Literal["medusa"] = "medusa"


class EagleDrafter(BaseModel):
    """EAGLE-style feature-level draft head (arXiv 2401.15077): one decoder layer of the target's width plus the
    target's LM head, run once per draft token; its KV is one layer's worth per token."""

    model_config = _FROZEN
    kind: Literal["eagle"] = "eagle"


class NgramDrafter(BaseModel):
    """Prompt lookup / n-gram drafting (LLMA, arXiv 2304.04487; vLLM `ngram`): drafts copied from the context,
    no GPU draft compute; `lookup_s` is the CPU cost of the lookup per iteration."""

    model_config = _FROZEN
    kind: Literal["ngram"] = "ngram"
    lookup_s: float = Field(0.0, ge=0, allow_inf_nan=False)


Drafter = Annotated[
    DraftModelDrafter | SelfDrafter | LayerSkipDrafter | MedusaDrafter | EagleDrafter | NgramDrafter,
    Field(discriminator="kind"),
]


class SpeculativeConfig(BaseModel):
    """Speculative decoding of one replica group. `k` draft tokens per step (Medusa: number of heads);
    `tree_width` candidates per draft position (1 = a chain); `adaptive_k` moves k between k_min and k_max
    from the acceptance seen in recent steps."""

    model_config = _FROZEN
    drafter: Drafter
    acceptance: Acceptance = IIDAcceptance(rate=0.7)
    k: int = Field(4, ge=1, le=64)
    tree_width: int = Field(1, ge=1, le=64)
    adaptive_k: bool = False
    k_min: int = Field(1, ge=1)
    k_max: int = Field(8, ge=1, le=64)

    @model_validator(mode="after")
    def _check(self) -> SpeculativeConfig:
        if self.adaptive_k and not self.k_min <= self.k <= self.k_max:
            raise ValueError(f"k={self.k} must lie in [k_min={self.k_min}, k_max={self.k_max}] with adaptive_k")
        longest = self.k_max if self.adaptive_k else self.k
        if isinstance(self.acceptance, PositionalAcceptance) and len(self.acceptance.rates) < longest:
            raise ValueError(f"acceptance.rates has {len(self.acceptance.rates)} entries; needs one per draft "
                             f"position (k={longest})")
        return self

    def position_rates(self, k: int, rate: float | None = None) -> np.ndarray:
        """Per-position conditional acceptance of a k-token step, tree widening included.

        A tree with `w` candidates per position accepts position i if any candidate matches: 1 - (1 - a_i)^w
        (candidates treated as independent: an upper bound; real top-w candidates are correlated)."""
        acc = self.acceptance
        if isinstance(acc, PositionalAcceptance):
            a = np.asarray(acc.rates[:k], dtype=np.float64)
        else:
            r = rate if rate is not None else (acc.rate if isinstance(acc, IIDAcceptance) else acc.mean)
            a = np.full(k, r, dtype=np.float64)
        if self.tree_width > 1:
            a = 1.0 - (1.0 - a) ** self.tree_width
        return a

    def verify_tokens(self, k: int) -> int:
        """Query tokens per sequence in the verification pass: the pending token plus the draft (tree) nodes."""
        return 1 + k * self.tree_width


def expected_tokens(rates: np.ndarray) -> float:
    """Expected tokens emitted per step = 1 (bonus) + sum_i prod_{j<=i} a_j; equals (1 - a^(k+1)) / (1 - a) for
    constant a (Leviathan et al. 2023, eq. 1)."""
    return 1.0 + float(np.cumprod(rates).sum())


def closed_form_tokens(a: float, k: int) -> float:
    """(1 - a^(k+1)) / (1 - a), Leviathan et al. 2023 (arXiv 2211.17192), eq. (1); k + 1 at a = 1."""
    if a >= 1.0:
        return float(k + 1)
    return (1.0 - a ** (k + 1)) / (1.0 - a)


# ---- early exit -----------------------------------------------------------------------------------------
class HistogramExit(BaseModel):
    """P(a token exits after layer layers[i]) = weights[i] (normalised); layers are 1-based depths."""

    model_config = _FROZEN
    kind: Literal["histogram"] = "histogram"
    layers: tuple[int, ...] = Field(min_length=1)
    weights: tuple[float, ...] = Field(min_length=1)

    @model_validator(mode="after")
    def _check(self) -> HistogramExit:
        if len(self.layers) != len(self.weights):
            raise ValueError(f"layers has {len(self.layers)} entries but weights has {len(self.weights)}")
        if any(w < 0 or not math.isfinite(w) for w in self.weights) or sum(self.weights) <= 0:
            raise ValueError(f"weights={self.weights} must be finite, >= 0 and not all zero")
        if any(layer < 1 for layer in self.layers):
            raise ValueError(f"exit layers {self.layers} must be >= 1")
        return self


class PerLayerExit(BaseModel):
    """probs[i] = P(exit after layer i+1 | reached it) at every layer; tokens left after the list run to the end."""

    model_config = _FROZEN
    kind: Literal["per_layer"] = "per_layer"
    probs: tuple[Prob, ...] = Field(min_length=1)


class CsvExit(BaseModel):
    """Measured exit layers, one integer per row (first column; a non-numeric header is skipped)."""

    model_config = _FROZEN
    kind: Literal["csv"] = "csv"
    path: str


ExitDistribution = Annotated[HistogramExit | PerLayerExit | CsvExit, Field(discriminator="kind")]


class PerTokenExit(BaseModel):
    """CALM-style per-token exit (arXiv 2207.07061). Batch synchronisation: the iteration runs every token to the
    deepest exit of the batch (`batch_sync`; False = tokens leave the batch at their exit, weights are still
    read to the deepest layer). Layers a token skipped get KV by `kv_fill`: "copy" projects K/V from the copied
    hidden state (CALM), "recompute" runs the skipped layers for it later as extra rows (FREE, arXiv
    2310.05424; EE-LLM, arXiv 2312.04916). `exit_head`: "lm_head" = a vocab projection per exit point (CALM's
    softmax confidence), "classifier" = a tiny h -> 1 head."""

    model_config = _FROZEN
    kind: Literal["per_token"] = "per_token"
    distribution: ExitDistribution
    batch_sync: bool = True
    kv_fill: Literal["copy", "recompute"] = "copy"
    exit_head: Literal["lm_head", "classifier"] = "classifier"


class SkipDecodeExit(BaseModel):
    """SkipDecode (arXiv 2307.02628): one executed depth per position for the whole batch, falling linearly
    from `max_layers` at position 0 to `min_layers` at `max_position`; the skipped layers are the lowest ones,
    so later tokens never need KV a previous token skipped."""

    model_config = _FROZEN
    kind: Literal["skipdecode"] = "skipdecode"
    max_layers: int = Field(ge=1)
    min_layers: int = Field(ge=1)
    max_position: int = Field(2048, ge=1)

    @model_validator(mode="after")
    def _check(self) -> SkipDecodeExit:
        if self.min_layers > self.max_layers:
            raise ValueError(f"min_layers={self.min_layers} must be <= max_layers={self.max_layers}")
        return self

    def depth(self, position: float) -> int:
        f = min(1.0, max(0.0, position / self.max_position))
        return int(round(self.max_layers - (self.max_layers - self.min_layers) * f))


EarlyExitConfig = Annotated[PerTokenExit | SkipDecodeExit, Field(discriminator="kind")]


def exit_pmf(dist: HistogramExit | PerLayerExit, num_layers: int) -> np.ndarray:
    """P(exit depth = d) for d = 0..num_layers (index 0 unused); ValueError naming an exit beyond the model."""
    pmf = np.zeros(num_layers + 1)
    if isinstance(dist, HistogramExit):
        for layer, w in zip(dist.layers, dist.weights, strict=True):
            if layer > num_layers:
                raise ValueError(f"exit layer {layer} exceeds the model's num_layers={num_layers}")
            pmf[layer] += w
        return pmf / pmf.sum()
    if len(dist.probs) > num_layers:
        raise ValueError(f"per_layer probs has {len(dist.probs)} entries; the model has num_layers={num_layers}")
    alive = 1.0
    for i, p in enumerate(dist.probs):
        pmf[i + 1] = alive * p
        alive *= 1.0 - p
    pmf[num_layers] += alive
    return pmf


# ---- partial-depth costing ------------------------------------------------------------------------------
class LayerCoster:
    """Splits CostModel.step into the once-per-step kernels (graph.fixed_kernels: embedding, pipeline hand-offs,
    LM head), per-layer (graph.layer_kernels), attention and overhead terms, so a pass can be costed at any depth
    or with a different number of rows per layer (memoised per token count). Uses CostModel's public API only.

    Per-layer time is the average over layers (dense and MoE layers of mixed models are averaged), so
    `partial_step(shape, L)` equals `CostModel.step_seconds_energy(shape)` up to rounding (tested)."""

    def __init__(self, cost: CostModel) -> None:
        self.cost = cost
        self.L = cost.model.num_layers
        self._layer: dict[int, tuple[float, float]] = {}
        self._fixed: dict[tuple[int, int], tuple[float, float]] = {}
        self._gemm: dict[tuple[str, int, int, int], tuple[float, float]] = {}

    def layer(self, tokens: int) -> tuple[float, float]:
        """(s, J) of one average decoder layer's token-linear kernels over `tokens` rows."""
        if tokens <= 0:
            return 0.0, 0.0
        v = self._layer.get(tokens)
        if v is None:
            s, j = self.cost.kernels_seconds_energy(layer_kernels(self.cost.ctx, tokens))
            v = self._layer[tokens] = (s / self.L, j / self.L)
        return v

    def fixed(self, tokens: int, logit_tokens: int) -> tuple[float, float]:
        """(s, J) of the embedding, pipeline hand-offs and the LM head/sampling of `logit_tokens` rows."""
        key = (tokens, logit_tokens)
        v = self._fixed.get(key)
        if v is None:
            v = self._fixed[key] = self.cost.kernels_seconds_energy(fixed_kernels(self.cost.ctx, tokens, logit_tokens))
        return v

    def gemm(self, name: str, m: int, n: int, k: int) -> tuple[float, float]:
        """(s, J) of one [m,k] x [k,n] GEMM in the model's formats (exit heads, Medusa heads, KV copy)."""
        if m <= 0:
            return 0.0, 0.0
        key = (name, m, n, k)
        v = self._gemm.get(key)
        if v is None:
            v = self._gemm[key] = self.cost.kernels_seconds_energy([gemm(name, m, n, k, self.cost.ctx, 1)])
        return v

    def attention(self, shape: BatchShape) -> tuple[float, float]:
        """(s, J) of attention over all layers for `shape`."""
        return self.cost.attention_seconds_energy(shape)

    def overhead(self, shape: BatchShape) -> tuple[float, float]:
        return self.cost.overhead_seconds_energy(shape)

    def decode_passes(self, dec: BatchShape, layers: int, passes: int,
                      extra: tuple[float, float] = (0.0, 0.0)) -> tuple[float, float]:
        """Sum of partial_step(_grow(dec, i), layers) + extra for i < passes (draft passes over a decode-only shape
        whose contexts grow by one token per sequence a pass), same arithmetic and order as that loop (bit-identical,
        tested), without building the shapes."""
        n, t = dec.decode_seqs, dec.decode_tokens
        fs, fj = self.fixed(t, dec.logit_tokens)
        ls, lj = self.layer(t)
        o = self.cost.overhead_seconds(n)
        oj = self.cost.idle_energy_j(o)
        f = layers / self.L
        ds = dj = 0.0
        for i in range(passes):
            add = n * i
            a_s, a_j = self.cost.decode_attention(n, t, dec.decode_ctx_tokens + add, dec.decode_ctx_tokens_win + add)
            ds = ds + (fs + layers * ls + f * a_s + o) + extra[0]
            dj = dj + (fj + layers * lj + f * a_j + oj) + extra[1]
        return ds, dj

    def partial_step(self, shape: BatchShape, layers: int, logit_tokens: int | None = None) -> tuple[float, float]:
        """(s, J) of a forward pass of `shape` through the first `layers` layers, then the LM head."""
        lt = shape.logit_tokens if logit_tokens is None else logit_tokens
        fs, fj = self.fixed(shape.tokens, lt)
        ls, lj = self.layer(shape.tokens)
        a_s, a_j = self.attention(shape)
        os_, oj = self.overhead(shape)
        f = layers / self.L
        return fs + layers * ls + f * a_s + os_, fj + layers * lj + f * a_j + oj


def decode_only(shape: BatchShape) -> BatchShape:
    return BatchShape(decode_seqs=shape.decode_seqs, decode_tokens=shape.decode_tokens,
                      decode_ctx_tokens=shape.decode_ctx_tokens, decode_ctx_tokens_win=shape.decode_ctx_tokens_win)


def prefill_only(shape: BatchShape) -> BatchShape:
    return BatchShape(prefill_tokens=shape.prefill_tokens, prefill_seqs=shape.prefill_seqs,
                      prefill_attn_pairs=shape.prefill_attn_pairs, prefill_ctx_tokens=shape.prefill_ctx_tokens,
                      prefill_attn_pairs_win=shape.prefill_attn_pairs_win)


# ---- speculative decoding costs -------------------------------------------------------------------------
def check_draft_model(target: ModelSpec, draft: ModelSpec) -> None:
    if draft.vocab_size != target.vocab_size:
        raise ValueError(f"drafter.model {draft.name!r} has vocab_size={draft.vocab_size}; the target "
                         f"{target.name!r} has {target.vocab_size}: a draft model must share the vocabulary")


class SpeculativeCoster:
    """Cost of one speculative iteration: k sequential draft passes batched over the decoding sequences, then one
    target pass verifying verify_tokens(k) query tokens per sequence (plus any prefill chunks of the iteration)."""

    def __init__(self, cost: CostModel, spec: SpeculativeConfig, draft: CostModel | None = None) -> None:
        self.cost, self.spec, self.draft = cost, spec, draft
        d = spec.drafter
        L = cost.model.num_layers
        if isinstance(d, DraftModelDrafter) and draft is None:
            raise ValueError("drafter kind 'draft_model' needs the draft CostModel")
        if draft is not None:
            check_draft_model(cost.model, draft.model)
        if isinstance(d, SelfDrafter) and d.draft_layers >= L:
            raise ValueError(f"drafter.draft_layers={d.draft_layers} must be < the model's num_layers={L}")
        if isinstance(d, LayerSkipDrafter) and d.exit_layer >= L:
            raise ValueError(f"drafter.exit_layer={d.exit_layer} must be < the model's num_layers={L}")
        if spec.tree_width > 1 and isinstance(d, NgramDrafter | DraftModelDrafter | SelfDrafter | LayerSkipDrafter):
            pass  # allowed: a tree of top-w drafts per position costs the same draft passes (sampling is free)
        self.layers = LayerCoster(cost)

    def verify_shape(self, shape: BatchShape, k: int) -> BatchShape:
        """`shape` (one query token per decoding sequence) with verify_tokens(k) query tokens per sequence."""
        q = self.spec.verify_tokens(k)
        n = shape.decode_seqs
        if n == 0:
            return shape
        extra = n * (q - 1)
        return BatchShape(
            prefill_tokens=shape.prefill_tokens, prefill_seqs=shape.prefill_seqs,
            prefill_attn_pairs=shape.prefill_attn_pairs, prefill_ctx_tokens=shape.prefill_ctx_tokens,
            decode_seqs=n, decode_tokens=n * q, decode_ctx_tokens=shape.decode_ctx_tokens + extra,
            prefill_attn_pairs_win=shape.prefill_attn_pairs_win,
            decode_ctx_tokens_win=shape.decode_ctx_tokens_win + extra,
        )

    def step(self, shape: BatchShape, k: int) -> tuple[float, float, float]:
        """(seconds, joules, draft seconds) of one iteration of `shape` drafting k tokens per decoding sequence."""
        n = shape.decode_seqs
        if n == 0:
            s, j = self.cost.step_seconds_energy(shape)
            if isinstance(self.spec.drafter, DraftModelDrafter) and shape.prefill_tokens:
                ds, dj = self.draft.step_seconds_energy(shape)  # type: ignore[union-attr]
                return s + ds, j + dj, ds
            return s, j, 0.0
        vshape = self.verify_shape(shape, k)
        d = self.spec.drafter
        lc = self.layers
        L = lc.L
        ds = dj = 0.0
        if isinstance(d, LayerSkipDrafter):
            # verification reuses the first exit_layer layers of the draft tokens (shared KV/activations)
            E = d.exit_layer
            ds, dj = lc.decode_passes(decode_only(shape), E, k)
            fs, fj = lc.fixed(vshape.tokens, vshape.logit_tokens)
            l1s, l1j = lc.layer(shape.tokens)  # first E layers: the pending token (+ prefill) only
            l2s, l2j = lc.layer(vshape.tokens)
            a_s, a_j = lc.attention(vshape)
            os_, oj = lc.overhead(vshape)
            vs = fs + E * l1s + (L - E) * l2s + a_s + os_
            vj = fj + E * l1j + (L - E) * l2j + a_j + oj
            return vs + ds, vj + dj, ds
        vs, vj = self.cost.step_seconds_energy(vshape)
        if isinstance(d, DraftModelDrafter):
            assert self.draft is not None
            first = BatchShape(prefill_tokens=shape.prefill_tokens, prefill_seqs=shape.prefill_seqs,
                               prefill_attn_pairs=shape.prefill_attn_pairs,
                               prefill_ctx_tokens=shape.prefill_ctx_tokens, decode_seqs=n, decode_tokens=n,
                               decode_ctx_tokens=shape.decode_ctx_tokens)
            if k > 0:
                ds, dj = self.draft.decode_passes(n, shape.decode_tokens, shape.decode_ctx_tokens,
                                                  shape.decode_ctx_tokens_win, k, first=1,
                                                  start=self.draft.step_seconds_energy(first))
        elif isinstance(d, SelfDrafter):
            ds, dj = lc.decode_passes(decode_only(shape), d.draft_layers, k)
        elif isinstance(d, EagleDrafter):
            h = self.cost.model.hidden_size
            # per pass: one layer plus the fusing GEMM [feature, token embedding] -> h
            ds, dj = lc.decode_passes(decode_only(shape), 1, k, extra=lc.gemm("eagle_fc", n, h, 2 * h))
        elif isinstance(d, MedusaDrafter):
            h, v = self.cost.model.hidden_size, self.cost.model.vocab_size // self.cost.parallel.tp
            rs, rj = lc.gemm("medusa_resblock", n, h, h)
            hs, hj = lc.gemm("medusa_vocab", n, v, h)
            ds, dj = k * (rs + hs), k * (rj + hj)
        elif isinstance(d, NgramDrafter):
            ds = d.lookup_s
            dj = self.cost.idle_energy_j(ds)
        return vs + ds, vj + dj, ds

    @staticmethod
    def _grow(shape: BatchShape, i: int) -> BatchShape:
        """The i-th draft pass: each sequence's context is i tokens longer."""
        if i == 0:
            return shape
        add = shape.decode_seqs * i
        return BatchShape(decode_seqs=shape.decode_seqs, decode_tokens=shape.decode_tokens,
                          decode_ctx_tokens=shape.decode_ctx_tokens + add,
                          decode_ctx_tokens_win=shape.decode_ctx_tokens_win + add)

    # -- memory -------------------------------------------------------------------------------------------
    def extra_weight_bytes_per_gpu(self) -> float:
        """Drafter weights resident on each GPU of the replica."""
        from roofsim.model.memory import weight_bytes_per_gpu  # noqa: PLC0415

        d, m, c = self.spec.drafter, self.cost.model, self.cost.ctx
        tp = self.cost.parallel.tp
        if isinstance(d, DraftModelDrafter):
            assert self.draft is not None
            return weight_bytes_per_gpu(self.draft.model, self.draft.quant, self.draft.parallel)[0]
        if isinstance(d, MedusaDrafter):
            return self.spec.k * (m.hidden_size ** 2 + m.hidden_size * m.vocab_size) * c.wb / tp
        if isinstance(d, EagleDrafter):
            per_layer = weight_bytes_per_gpu(m, self.cost.quant, self.cost.parallel)[0]
            lm = (m.hidden_size * m.vocab_size * (1 if m.tie_word_embeddings else 2)) * c.wb / tp
            return (per_layer - lm) / m.num_layers + 2 * m.hidden_size ** 2 * c.wb / tp
        return 0.0

    def extra_kv_bytes_per_token(self) -> float:
        """Drafter KV bytes per cached token on each GPU (a draft model's cache; EAGLE's one layer)."""
        d = self.spec.drafter
        if isinstance(d, DraftModelDrafter):
            assert self.draft is not None
            c = self.draft.ctx
            return c.kv_elems * c.kvb * self.draft.model.num_layers / self.draft.parallel.pp
        if isinstance(d, EagleDrafter):
            c = self.cost.ctx
            return c.kv_elems * c.kvb
        return 0.0

    # -- closed forms -------------------------------------------------------------------------------------
    def speedup(self, batch: int, context: int, k: int | None = None, rate: float | None = None) -> float:
        """Expected decode speedup at `batch` sequences of `context` tokens: E[tokens] x t_plain / t_spec."""
        k = self.spec.k if k is None else k
        plain = BatchShape(decode_seqs=batch, decode_tokens=batch, decode_ctx_tokens=batch * (context + 1))
        t1 = self.cost.step_seconds_energy(plain)[0]
        ts = self.step(plain, k)[0]
        return expected_tokens(self.spec.position_rates(k, rate)) * t1 / ts


# ---- early-exit costs -----------------------------------------------------------------------------------
class EarlyExitCoster:
    """Cost of a decode iteration whose tokens execute different depths (prefill tokens always run all layers).

    `counts[d]` = decode tokens whose *requested* exit is depth d. The batch rule: with synchronisation every
    row runs to max d; without, rows leave at their exit (GEMMs shrink per layer; weights are read to the
    deepest layer). Layers above a token's executed depth need KV: "copy" = the copied state's rows added to
    each skipped layer's K/V projection; "recompute" = the skipped layers' rows added later (marginal rows of a layer)."""

    def __init__(self, cost: CostModel, exit_layers: np.ndarray, batch_sync: bool, kv_fill: str,
                 exit_head: str) -> None:
        self.cost = cost
        self.lc = LayerCoster(cost)
        self.L = cost.model.num_layers
        self.exit_layers = np.asarray(sorted(set(int(x) for x in exit_layers if x < self.L)), dtype=np.int64)
        self.batch_sync, self.kv_fill, self.exit_head = batch_sync, kv_fill, exit_head
        m = cost.model
        self._kv_n = 2 * cost.ctx.kv_heads * m.head_dim if m.mla is None else m.kv_elements_per_token_per_layer()
        self._head_n = m.vocab_size // cost.parallel.tp if exit_head == "lm_head" else 1

    def step(self, shape: BatchShape, counts: np.ndarray) -> tuple[float, float, float]:
        """(seconds, joules, executed token-layers of the decode tokens) for requested exit depths `counts`."""
        lc, L = self.lc, self.L
        n = shape.decode_tokens
        p = shape.prefill_tokens
        if n == 0:
            s, j = self.cost.step_seconds_energy(shape)
            return s, j, 0.0
        depths = np.flatnonzero(counts)
        dmax = int(depths[-1])
        # rows of decode tokens alive at layer l (1-based): r[l-1]
        if self.batch_sync:
            exec_counts = np.zeros(L + 1, dtype=np.int64)
            exec_counts[dmax] = n
        else:
            exec_counts = counts.astype(np.int64)
        alive = np.cumsum(exec_counts[::-1])[::-1][1:]  # alive[l-1] = tokens with executed depth >= l
        s = j = 0.0
        # layer GEMMs, grouped over runs of equal row counts
        bounds = np.flatnonzero(np.diff(alive)) + 1
        starts = np.concatenate(([0], bounds))
        ends = np.concatenate((bounds, [L]))
        recompute = self.kv_fill == "recompute"
        kv_n, h = self._kv_n, self.cost.model.hidden_size
        for a, b in zip(starts.tolist(), ends.tolist(), strict=True):
            rows = int(alive[a])
            run = b - a
            ls, lj = lc.layer(rows + p)
            s, j = s + run * ls, j + run * lj
            fill = n - rows
            if fill:
                if recompute:
                    fs, fj = lc.layer(rows + p + fill)
                    s, j = s + run * (fs - ls), j + run * (fj - lj)
                else:
                    # the copied states' rows join the layer's K/V projection (fused into its QKV GEMM)
                    gs, gj = lc.gemm("kv_proj", rows + p + fill, kv_n, h)
                    bs, bj = lc.gemm("kv_proj", rows + p, kv_n, h)
                    s, j = s + run * (gs - bs), j + run * (gj - bj)
        # exit heads at the exit points a token passes (tokens that continue past them evaluate the head)
        for e in self.exit_layers.tolist():
            if e > dmax:
                break
            rows = int(alive[e - 1])
            hs, hj = lc.gemm("exit_head", rows, self._head_n, h)
            s, j = s + hs, j + hj
        executed = float(alive.sum())
        # attention: prefill at full depth, decode in proportion to the token-layers executed
        if p:
            a_s, a_j = lc.attention(prefill_only(shape))
            s, j = s + a_s, j + a_j
        d_s, d_j = lc.attention(decode_only(shape))
        frac = executed / (n * L)
        if self.kv_fill == "recompute":
            frac = 1.0  # the skipped layers' K/V are computed and attention over them runs later anyway
        s, j = s + frac * d_s, j + frac * d_j
        fs, fj = lc.fixed(shape.tokens, shape.logit_tokens)
        os_, oj = lc.overhead(shape)
        return s + fs + os_, j + fj + oj, executed


__all__ = [
    "Acceptance", "BetaAcceptance", "CsvExit", "DraftModelDrafter", "Drafter", "EagleDrafter",
    "EarlyExitConfig", "EarlyExitCoster", "ExitDistribution", "HistogramExit", "IIDAcceptance", "LayerCoster",
    "LayerSkipDrafter", "MedusaDrafter", "NgramDrafter", "PerLayerExit", "PerTokenExit", "PositionalAcceptance",
    "SelfDrafter", "SkipDecodeExit", "SpeculativeCoster", "SpeculativeConfig", "check_draft_model",
    "closed_form_tokens", "decode_only", "exit_pmf", "expected_tokens", "prefill_only",
]
