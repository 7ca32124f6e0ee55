"""Multi-turn (chat / agentic) workload: sessions whose every prompt extends the previous turn's prompt and answer,
with prefix-block hash ids that make the shared part reusable, and a session id per request for sticky routing."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, PositiveFloat

from roofsim.simulator.limits import exceeds, limited
from roofsim.simulator.workload import (
    MAX_DURATION_S,
    MAX_TOKENS,
    Lengths,
    NamedWorkload,
    QuantileLengths,
    Rate,
    SyntheticWorkload,
    Trace,
    TraceWorkload,
    build_trace,
    lengths_ppf,
)

_FROZEN = ConfigDict(frozen=True, extra="forbid")

# Statistics of the Mooncake conversation trace (kvcache-ai/Mooncake FAST25 release, conversation_trace.jsonl,
# 12,031 requests over 1 h). The trace has no session ids; a request is the next turn of an earlier one when the
# earlier one's hash ids (all but its last, partial block) lead its own: 3,975 requests (33 %) continue one of
# 8,056 sessions. Turns per session: mean 1.49, 75 % single-turn, p99 7, max 43. New tokens per turn = input -
# previous input - previous output: median 26 (so prompt = previous prompt + previous answer + new text holds;
# 11 % are slightly negative, clipped to 1). Gap between turns (arrival to arrival): median 126 s, lognormal
# sigma 0.98. Every request shares hash id 0: a system prompt of at least one 512-token block. The quantile tables
# are the trace's own (p = 0, .1, .25, .5, .75, .9, .99, 1); docs/workloads.md shows how they were computed.
_P = (0.0, 0.1, 0.25, 0.5, 0.75, 0.9, 0.99, 1.0)
MOONCAKE_FIRST_INPUT = QuantileLengths(
    probabilities=_P, tokens=(891, 907, 1459, 5933, 14283, 26280, 87220, 126195))
MOONCAKE_NEW_INPUT = QuantileLengths(probabilities=_P, tokens=(1, 1, 9, 26, 384, 4363, 16805, 91467))
MOONCAKE_OUTPUT = QuantileLengths(probabilities=_P, tokens=(1, 24, 156, 350, 472, 597, 1119, 2000))
MOONCAKE_TURNS_MEAN = 1.49
MOONCAKE_THINK_MEDIAN_S = 126.0
MOONCAKE_THINK_SIGMA = 0.98


class SessionWorkload(BaseModel):
    """Sessions start as a Poisson process; a session has a geometric number of turns (mean `turns_mean`);
    turn k+1 arrives a lognormal gap after turn k (arrival to arrival, as traces record it) with prompt =
    prompt k + answer k + `new_input` tokens. The first prompt starts with a `system_prompt_tokens` prefix shared
    by every session. Defaults: the Mooncake conversation trace's statistics (module comment). A session ends
    early when its next prompt would pass `max_input_tokens`."""

    model_config = _FROZEN
    kind: Literal["sessions"] = "sessions"
    session_rate_per_s: Rate = Field(description="mean rate of new sessions (Poisson)")  # type: ignore[valid-type]
    num_sessions: limited(int, "MAX_REQUESTS", ge=1) = Field(  # type: ignore[valid-type]
        description="sessions to generate")
    turns_mean: float = Field(MOONCAKE_TURNS_MEAN, ge=1, le=1000, description="mean turns per session (geometric)")
    first_input: Lengths = Field(MOONCAKE_FIRST_INPUT, description="prompt tokens of a first turn (incl. the "
                                 "system prompt)")
    new_input: Lengths = Field(MOONCAKE_NEW_INPUT, description="new user tokens a later turn adds")
    output: Lengths = Field(MOONCAKE_OUTPUT, description="answer tokens of every turn")
    think_median_s: PositiveFloat = MOONCAKE_THINK_MEDIAN_S
    think_sigma: float = Field(MOONCAKE_THINK_SIGMA, ge=0, le=10, allow_inf_nan=False)
    system_prompt_tokens: int = Field(512, ge=0, le=MAX_TOKENS, description="prefix shared by every session")
    block_tokens: limited(int, "MAX_BLOCK_TOKENS", ge=1) = Field(  # type: ignore[valid-type]
        16, description="prompt tokens per prefix-block hash id (the engine's KV block: vLLM's 16)")
    max_input_tokens: int = Field(128_000, ge=1, le=MAX_TOKENS, description="a session ends before a prompt "
                                  "longer than this (keep prompt + answer within the model's context)")


@dataclass(frozen=True, slots=True, eq=False)
class SessionTrace(Trace):
    """A Trace whose requests belong to sessions: `session_ids[i]` is request i's session."""

    session_ids: tuple[int, ...] = ()


def build_session_trace(cfg: SessionWorkload, rng: np.random.Generator) -> SessionTrace:
    """The requests of a multi-turn workload, sorted by arrival. Draw order: session start gaps, turn counts,
    then per session (in start order) its first prompt, answers, new inputs and gaps."""
    n = cfg.num_sessions
    starts = np.cumsum(rng.exponential(1.0 / cfg.session_rate_per_s, n))
    if starts[-1] > MAX_DURATION_S:
        raise ValueError(f"session workload: {n} sessions at {cfg.session_rate_per_s:g}/s start over ~"
                         + exceeds(float(starts[-1]), "MAX_DURATION_S", "span_s"))
    # geometric on {1, 2, ...} with mean turns_mean: P(continue) = 1 - 1 / turns_mean
    turns = rng.geometric(1.0 / cfg.turns_mean, n) if cfg.turns_mean > 1 else np.ones(n, dtype=np.int64)
    B, sys_tok = cfg.block_tokens, cfg.system_prompt_tokens
    shared = sys_tok // B  # the system prompt's full blocks (ids 0 .. shared-1) are common to every session
    next_id = shared
    rows: list[tuple[float, int, int, int, tuple[int, ...]]] = []
    for s in range(n):
        k = int(turns[s])
        first = int(lengths_ppf(cfg.first_input, rng.random(1))[0])
        outs = lengths_ppf(cfg.output, rng.random(k)).tolist()
        news = lengths_ppf(cfg.new_input, rng.random(k)).tolist()
        gaps = (cfg.think_median_s * np.exp(cfg.think_sigma * rng.standard_normal(k))).tolist()
        prompt = max(first, sys_tok + 1)
        ids = list(range(shared))
        t = float(starts[s])
        for j in range(k):
            if prompt > cfg.max_input_tokens:
                break
            fresh = -(-prompt // B) - len(ids)  # >= 1: a prompt grows past its predecessor's full blocks
            ids.extend(range(next_id, next_id + fresh))
            next_id += fresh
            rows.append((t, prompt, int(outs[j]), s, tuple(ids)))
            del ids[prompt // B:]  # the next prompt keeps the full blocks; the partial last one's content changes
            prompt += int(outs[j]) + int(news[j])
            t += gaps[j]
    rows.sort(key=lambda r: r[0])  # stable: a session's turns stay in order
    arr = np.array([r[0] for r in rows])
    return SessionTrace(arr, np.array([r[1] for r in rows]), np.array([r[2] for r in rows]),
                        tuple(r[4] for r in rows), f"sessions {n} x {cfg.turns_mean:g} turns", B,
                        tuple(r[3] for r in rows))


def run_trace(cfg: SyntheticWorkload | TraceWorkload | NamedWorkload | SessionWorkload,
              rng: np.random.Generator) -> Trace:
    """The requests of any workload a run accepts (config.RunWorkload): sessions here, the others by
    workload.build_trace."""
    return build_session_trace(cfg, rng) if isinstance(cfg, SessionWorkload) else build_trace(cfg, rng)


__all__ = ["SessionTrace", "SessionWorkload", "build_session_trace", "run_trace"]
