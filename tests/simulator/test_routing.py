"""Cache-aware and session routing and the multi-turn workload: router choice on constructed cases (longest
cached prefix, cache threshold, load-balance guard, lower tiers, ties), session stickiness, the session
generator's structure and statistics, determinism, and prefix-aware vs round-robin reuse in a simulation."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest

from roofsim.simulator.cluster import ROUTERS
from roofsim.simulator.config import PrefixAwareRouter, SimConfig
from roofsim.simulator.kvcache import PrefixCache, Tier, reuse_bound
from roofsim.simulator.request import Request
from roofsim.simulator.run import simulate
from roofsim.simulator.sessions import SessionWorkload, build_session_trace


def _rep(idx: int, outstanding: int, held: tuple[int, ...] = (), below: tuple[int, ...] = ()) -> SimpleNamespace:
    """A replica as the routers see it: its load and a 16-token-block prefix cache holding `held` in HBM and
    `below` in a DRAM tier."""
    dram = Tier("dram", 100, 1e9)
    cache = PrefixCache(100, 16, (dram,), block_bytes=1.0)
    cache.insert(held)
    for h in below:
        dram.lru[h] = None
    return SimpleNamespace(idx=idx, outstanding=outstanding, prefix=cache)


def _route(kind: str, reps: list[SimpleNamespace], r: Request, **cfg: float) -> int:
    c = SimpleNamespace(replicas=reps, router_cfg=PrefixAwareRouter(**cfg), session_replica={})
    return ROUTERS[kind](c, r).idx  # type: ignore[arg-type]


def _req(n_tokens: int, prefix: tuple[int, ...], session: int = -1) -> Request:
    r = Request(0, 0.0, n_tokens, 1)
    r.prefix, r.session = prefix, session
    return r


def test_prefix_aware_picks_longest_cached_prefix() -> None:
    reps = [_rep(0, 5, (1,)), _rep(1, 10, (1, 2, 3)), _rep(2, 0)]
    # replica 1 holds 3 of the 4 blocks: 48 of 64 tokens = 0.75 > 0.3, loads 0..10 are balanced (10 <= 64)
    assert _route("prefix_aware", reps, _req(64, (1, 2, 3, 4))) == 1
    # the same 48 tokens of a 200-token prompt are 0.24 <= 0.3: least outstanding instead
    assert _route("prefix_aware", reps, _req(200, (1, 2, 3, 4))) == 2
    # a lower threshold takes the match
    assert _route("prefix_aware", reps, _req(200, (1, 2, 3, 4)), cache_threshold=0.2) == 1
    # no prefix known: least outstanding
    assert _route("prefix_aware", reps, _req(64, ())) == 2


def test_prefix_aware_load_guard() -> None:
    # max - min = 70 > 64 and 70 > 0 x 1.5: imbalanced, the least-loaded replica wins over the cached prefix
    reps = [_rep(0, 0), _rep(1, 70, (1, 2, 3))]
    assert _route("prefix_aware", reps, _req(64, (1, 2, 3, 4))) == 0
    # 70 - 10 = 60 <= 64: balanced, the prefix wins
    reps = [_rep(0, 10), _rep(1, 70, (1, 2, 3))]
    assert _route("prefix_aware", reps, _req(64, (1, 2, 3, 4))) == 1
    # 110 - 40 = 70 > 64 but 110 <= 40 x 3: the relative test keeps it balanced
    reps = [_rep(0, 40), _rep(1, 110, (1, 2, 3))]
    assert _route("prefix_aware", reps, _req(64, (1, 2, 3, 4)), balance_rel_threshold=3.0) == 1
    assert _route("prefix_aware", reps, _req(64, (1, 2, 3, 4))) == 0
    # a cluster built without the router's settings uses the defaults (64, 1.5)
    c = SimpleNamespace(replicas=reps, router_cfg=None, session_replica={})
    assert ROUTERS["prefix_aware"](c, _req(64, (1, 2, 3, 4))).idx == 0  # type: ignore[arg-type]


def test_prefix_aware_counts_lower_tiers_and_breaks_ties_low() -> None:
    reps = [_rep(0, 3, (1, 2)), _rep(1, 3, below=(1, 2, 3, 4)), _rep(2, 0, (1, 2))]
    assert _route("prefix_aware", reps, _req(64, (1, 2, 3, 4))) == 1  # 64 > 63 tokens: capped, still best
    reps = [_rep(0, 3, (1, 2)), _rep(1, 0, (1, 2))]
    assert _route("prefix_aware", reps, _req(64, (1, 2, 3, 4))) == 0


def test_sticky_sessions() -> None:
    reps = [_rep(0, 4), _rep(1, 1), _rep(2, 2)]
    c = SimpleNamespace(replicas=reps, router_cfg=None, session_replica={})
    route = ROUTERS["sticky_session"]
    assert route(c, _req(10, (), session=7)).idx == 1  # type: ignore[arg-type]  # first turn: least outstanding
    reps[1].outstanding = 50
    assert route(c, _req(10, (), session=7)).idx == 1  # type: ignore[arg-type]  # later turns stay
    assert route(c, _req(10, (), session=8)).idx == 2  # type: ignore[arg-type]
    assert route(c, _req(10, ())).idx == 2  # type: ignore[arg-type]  # no session
    assert c.session_replica == {7: reps[1], 8: reps[2]}


def test_session_trace_structure() -> None:
    cfg = SessionWorkload(session_rate_per_s=0.5, num_sessions=400)
    t = build_session_trace(cfg, np.random.default_rng(1))
    again = build_session_trace(cfg, np.random.default_rng(1))
    np.testing.assert_array_equal(t.input_tokens, again.input_tokens)
    assert t.hash_ids == again.hash_ids and t.session_ids == again.session_ids
    assert np.all(np.diff(t.arrival_s) >= 0)
    sid = np.array(t.session_ids)
    assert set(sid.tolist()) == set(range(400))  # no first prompt passes max_input_tokens (the trace's max 126,195)
    assert t.hash_block_tokens == 16
    for s in range(40):
        turns = np.flatnonzero(sid == s)
        for a, b in zip(turns, turns[1:], strict=False):
            # prompt = previous prompt + previous answer + >= 1 new token; it keeps the previous full blocks
            assert t.input_tokens[b] >= t.input_tokens[a] + t.output_tokens[a] + 1
            keep = int(t.input_tokens[a]) // 16
            assert t.hash_ids[b][:keep] == t.hash_ids[a][:keep]
            assert t.hash_ids[b][keep] not in t.hash_ids[a]
            assert t.arrival_s[b] > t.arrival_s[a]
        for i in turns:
            assert len(t.hash_ids[i]) == -(-int(t.input_tokens[i]) // 16)
            assert t.hash_ids[i][:32] == tuple(range(32))  # the 512-token system prompt, common to all
    # past the system prompt, sessions share no block
    own = [{h for i in np.flatnonzero(sid == s) for h in t.hash_ids[i][32:]} for s in range(40)]
    assert sum(len(o) for o in own) == len(set().union(*own))


def _successive(sid: np.ndarray) -> list[tuple[int, int]]:
    out = []
    for s in np.unique(sid):
        turns = np.flatnonzero(sid == s)
        out += list(zip(turns, turns[1:], strict=False))
    return out


def test_session_statistics_follow_the_config() -> None:
    cfg = SessionWorkload(session_rate_per_s=1.0, num_sessions=4000, first_input={"kind": "fixed", "tokens": 600},
                          new_input={"kind": "fixed", "tokens": 50}, output={"kind": "fixed", "tokens": 100})
    t = build_session_trace(cfg, np.random.default_rng(2))
    sid = np.array(t.session_ids)
    assert len(t) / 4000 == pytest.approx(1.49, abs=0.03)  # geometric turns, mean 1.49
    gaps = [t.arrival_s[b] - t.arrival_s[a] for a, b in _successive(sid)]
    assert np.median(gaps) == pytest.approx(126.0, rel=0.08)
    # turn k's prompt: 600 + (k - 1) x (100 + 50)
    assert set(t.input_tokens.tolist()) <= {600 + k * 150 for k in range(40)}
    assert (t.input_tokens == 600).sum() == 4000


def test_session_workload_errors() -> None:
    with pytest.raises(ValueError, match="turns_mean"):
        SessionWorkload(session_rate_per_s=1.0, num_sessions=1, turns_mean=0.5)
    with pytest.raises(ValueError, match="MAX_DURATION_S"):
        build_session_trace(SessionWorkload(session_rate_per_s=1e-6, num_sessions=100), np.random.default_rng(0))


def _sim(router: str) -> dict:
    return simulate(SimConfig.model_validate({
        "workload": {"kind": "sessions", "session_rate_per_s": 0.5, "num_sessions": 30, "turns_mean": 4.0,
                     "first_input": {"kind": "fixed", "tokens": 2000}, "output": {"kind": "fixed", "tokens": 20}},
        "replicas": [{"model": "llama-3.1-8b", "hardware": "h100-sxm", "count": 3, "scheduler": {"kind": "sarathi"},
                      "prefix_caching": True}],
        "router": {"kind": router}})).summary


def test_prefix_aware_raises_reuse_over_round_robin() -> None:
    rr, pa, sticky = _sim("round_robin"), _sim("prefix_aware"), _sim("sticky_session")
    cfg = SessionWorkload(session_rate_per_s=0.5, num_sessions=30, turns_mean=4.0,
                          first_input={"kind": "fixed", "tokens": 2000}, output={"kind": "fixed", "tokens": 20})
    t = build_session_trace(cfg, np.random.default_rng(0))
    bound = reuse_bound(t.hash_ids, t.input_tokens, 16)
    # everything fits in HBM (~300k tokens per replica): routing alone decides. Sticky sessions keep each session
    # on one replica and reach the bound but for the system prompt, computed once on each of the 3 replicas
    # instead of once; prefix-aware does too except for turns whose new text makes the cached part <= 30 % of
    # the prompt (SGLang's cache_threshold), which go to the least-loaded replica; round robin finds a turn's
    # predecessor on the same replica 1 time in 3
    total = int(t.input_tokens.sum())
    assert sticky["prefix_cached_tokens"] == round(bound * total) - 2 * 512
    assert sticky["prefix_cache_hit_rate"] - 0.02 < pa["prefix_cache_hit_rate"] <= sticky["prefix_cache_hit_rate"]
    assert rr["prefix_cache_hit_rate"] < pa["prefix_cache_hit_rate"] - 0.25
    assert pa["requests_completed"] == rr["requests_completed"] == len(t)
    again = _sim("prefix_aware")
    assert (again["prefix_cached_tokens"], again["ttft_s"]) == (pa["prefix_cached_tokens"], pa["ttft_s"])
