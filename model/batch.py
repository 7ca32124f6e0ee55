"""BatchShape: the aggregates of one serving iteration that the op graph and the cost model need (O(1) to cost)."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, fields


def causal_pairs(new: int, ctx: int) -> float:
    """Query-key pairs a causal chunk of `new` tokens after `ctx` cached tokens attends to.

    Token i (0-based) of the chunk sees ctx + i + 1 keys, so the sum is new*ctx + new*(new+1)/2.
    """
    return new * ctx + new * (new + 1) / 2.0


def windowed_pairs(new: int, ctx: int, window: int) -> float:
    """Like causal_pairs, but every query sees at most `window` keys (sliding-window attention)."""
    total = 0.0
    # queries whose full causal span is <= window, then the rest see exactly `window` keys
    first_full = max(0, min(new, window - ctx))  # query i sees ctx+i+1 keys; <= window while i < window-ctx
    total += first_full * ctx + first_full * (first_full + 1) / 2.0
    total += (new - first_full) * window
    return total


@dataclass(frozen=True, slots=True)
class BatchShape:
    """One iteration of a serving engine, as aggregates.

    prefill chunks: `prefill_seqs` chunks with `prefill_tokens` new tokens in all, that attend to
    `prefill_attn_pairs` query-key pairs and read `prefill_ctx_tokens` previously cached tokens.
    decode: `decode_seqs` sequences issuing `decode_tokens` query tokens (1 each, more when verifying a
    speculative draft) over `decode_ctx_tokens` cached tokens in all.
    The `*_win` fields are the same sums with every query limited to the model's sliding window.
    `vision_*`: images whose encoder pass runs in this step (their LLM tokens are among the prefill tokens).
    """

    prefill_tokens: int = 0
    prefill_seqs: int = 0
    prefill_attn_pairs: float = 0.0
    prefill_ctx_tokens: int = 0
    decode_seqs: int = 0
    decode_tokens: int = 0
    decode_ctx_tokens: int = 0
    logit_tokens: int = -1  # -1: one per decode token and one per prefill chunk
    prefill_attn_pairs_win: float = -1.0  # -1: same as the unwindowed sum
    decode_ctx_tokens_win: int = -1
    # images encoded in this step by a VL model's vision encoder (ModelSpec.vision): their patches in all, and
    # the sum over images of patches^2 (bidirectional attention within an image)
    vision_patches: int = 0
    vision_attn_pairs: float = 0.0

    def __post_init__(self) -> None:
        if self.prefill_tokens < 0 or self.decode_seqs < 0 or self.decode_ctx_tokens < 0 or self.vision_patches < 0:
            raise ValueError(f"negative batch aggregate in {self}")
        if self.prefill_seqs > self.prefill_tokens:
            raise ValueError(f"prefill_seqs={self.prefill_seqs} exceeds prefill_tokens={self.prefill_tokens}")
        if self.decode_tokens < self.decode_seqs:
            object.__setattr__(self, "decode_tokens", self.decode_seqs)
        if self.logit_tokens < 0:
            object.__setattr__(self, "logit_tokens", self.decode_tokens + self.prefill_seqs)
        if self.prefill_attn_pairs_win < 0:
            object.__setattr__(self, "prefill_attn_pairs_win", self.prefill_attn_pairs)
        if self.decode_ctx_tokens_win < 0:
            object.__setattr__(self, "decode_ctx_tokens_win", self.decode_ctx_tokens)

    @property
    def tokens(self) -> int:
        """Rows of every token-parallel GEMM in this iteration."""
        return self.prefill_tokens + self.decode_tokens

    @property
    def is_empty(self) -> bool:
        return self.tokens == 0 and self.vision_patches == 0

    @classmethod
    def build(
        cls,
        prefill: Iterable[tuple[int, int]] = (),
        decode_ctx: Iterable[int] = (),
        window: int | None = None,
        decode_query_tokens: int = 1,
        logit_tokens: int = -1,
    ) -> BatchShape:
        """From explicit prefill chunks (new_tokens, cached_tokens) and decode context lengths.

        The decode context length is the number of tokens already in the KV cache that the new token attends to
        (its own key is added by the step).
        """
        p_tok = p_seq = p_ctx = 0
        p_pairs = p_pairs_w = 0.0
        for new, ctx in prefill:
            if new <= 0 or ctx < 0:
                raise ValueError(f"prefill chunk (new={new}, ctx={ctx}) needs new > 0 and ctx >= 0")
            p_tok += new
            p_seq += 1
            p_ctx += ctx
            p_pairs += causal_pairs(new, ctx)
            if window is not None:
                p_pairs_w += windowed_pairs(new, ctx, window)
        d_seq = d_ctx = d_ctx_w = 0
        for c in decode_ctx:
            if c < 0:
                raise ValueError(f"decode context length {c} must be >= 0")
            d_seq += 1
            d_ctx += c + decode_query_tokens  # keys attended include the new tokens
            if window is not None:
                d_ctx_w += min(c + decode_query_tokens, window)
        return cls(
            prefill_tokens=p_tok,
            prefill_seqs=p_seq,
            prefill_attn_pairs=p_pairs,
            prefill_ctx_tokens=p_ctx,
            decode_seqs=d_seq,
            decode_tokens=d_seq * decode_query_tokens,
            decode_ctx_tokens=d_ctx,
            logit_tokens=logit_tokens,
            prefill_attn_pairs_win=p_pairs_w if window is not None else -1.0,
            decode_ctx_tokens_win=d_ctx_w if window is not None else -1,
        )


# BatchShape's slot setters in field order, for iteration_shape: a frozen dataclass's generated __init__ sets each
# field through object.__setattr__ and then runs __post_init__, about a fifth of an ensemble member's iteration
(_SET_PT, _SET_PS, _SET_PP, _SET_PC, _SET_DS, _SET_DT, _SET_DC, _SET_LT, _SET_PPW, _SET_DCW, _SET_VP,
 _SET_VPP) = (getattr(BatchShape, f.name).__set__ for f in fields(BatchShape))
_NEW = object.__new__


def iteration_shape(prefill_tokens: int, prefill_seqs: int, prefill_attn_pairs: float, prefill_ctx_tokens: int,
                    decode_seqs: int, decode_tokens: int, decode_ctx_tokens: int, logit_tokens: int,
                    prefill_attn_pairs_win: float, decode_ctx_tokens_win: int) -> BatchShape:
    """The BatchShape of a simulated iteration with every derived field given (no vision): equal to
    BatchShape(...) of the same fields, without its checks (the engine's counters are non-negative and consistent
    by construction), for the engine's hot path."""
    s = _NEW(BatchShape)
    _SET_PT(s, prefill_tokens)
    _SET_PS(s, prefill_seqs)
    _SET_PP(s, prefill_attn_pairs)
    _SET_PC(s, prefill_ctx_tokens)
    _SET_DS(s, decode_seqs)
    _SET_DT(s, decode_tokens)
    _SET_DC(s, decode_ctx_tokens)
    _SET_LT(s, logit_tokens)
    _SET_PPW(s, prefill_attn_pairs_win)
    _SET_DCW(s, decode_ctx_tokens_win)
    _SET_VP(s, 0)
    _SET_VPP(s, 0.0)
    return s
