"""Speculative decoding in the simulator: a decode strategy that costs draft + verification, samples the accepted
tokens of every decoding sequence from the run's Generator (per-request progress in strategy.SlotProgress, with KV
lookahead allocation and rollback of rejected tokens), and the drafter's memory; the technique summary figures."""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Iterable
from typing import TYPE_CHECKING

import numpy as np

from roofsim.model.batch import BatchShape
from roofsim.model.cost import CostModel
from roofsim.model.loader import load_model
from roofsim.model.memory import DoesNotFitError, MemoryPlan, plan_memory
from roofsim.model.spec import ParallelSpec
from roofsim.model.techniques import (
    BetaAcceptance,
    IIDAcceptance,
    PositionalAcceptance,
    SpeculativeConfig,
    SpeculativeCoster,
    expected_tokens,
)
from roofsim.simulator.strategy import DecodeProgress, DecodeStrategy, SlotProgress, StrategyMaker

if TYPE_CHECKING:
    from roofsim.simulator.config import ReplicaGroup
    from roofsim.simulator.replica import Replica

logger = logging.getLogger(__name__)

ADAPT_EVERY = 16  # decode steps between re-choosing k (adaptive_k); keeps the k search off most iterations
ADAPT_DECAY = 0.9  # weight of the past in the acceptance estimate per adaptation window


class SpeculativeDecoding:
    """Cost of a speculative iteration (draft passes + verification with the current draft length k) and the
    acceptance sampler: `gains` draws the accepted drafts of every decoding sequence at once (vectorised),
    records the outcome and, with adaptive_k, re-chooses k now and then."""

    def __init__(self, cost: CostModel, spec: SpeculativeConfig, rng: np.random.Generator,
                 draft: CostModel | None = None) -> None:
        self.cost = cost
        self.pp = cost.parallel.pp
        self.spec = spec
        self.rng = rng
        self.coster = SpeculativeCoster(cost, spec, draft)
        self.k = spec.k
        self.tree = spec.tree_width
        acc = spec.acceptance
        self.beta = (acc.alpha, acc.beta) if isinstance(acc, BetaAcceptance) else None
        self.fixed_rate = (acc.rate if isinstance(acc, IIDAcceptance)
                           else acc.mean if isinstance(acc, BetaAcceptance) else np.nan)
        self._pos = np.asarray(acc.rates, dtype=np.float64) if isinstance(acc, PositionalAcceptance) else None
        # run totals under technique_summary's names: decode iterations, decoding sequences x decode iterations,
        # tokens emitted, draft positions offered (k per sequence per step; a tree counts its depth) and accepted,
        # sequences with a rejection, k summed over sequences, drafting seconds
        self.totals: dict[str, float] = dict.fromkeys(
            ("spec_decode_steps", "spec_seq_steps", "spec_emitted", "spec_proposed", "spec_accepted",
             "spec_rejections", "spec_k_sum"), 0)
        self.totals["spec_draft_s"] = 0.0
        self._acc_w = 0.0
        self._fail_w = 0.0
        self._since_adapt = 0
        self._last_shape: BatchShape | None = None

    def progress(self, rep: Replica) -> DecodeProgress:
        return SlotProgress(rep, self)

    def lookahead_tokens(self) -> int:
        """KV slots a sequence's verification writes (k drafts + bonus, a tree's nodes)."""
        return self.spec.verify_tokens(self.k)

    def draw_rate(self) -> float:
        """Acceptance rate of a request starting to decode (Beta: one draw from the run's Generator)."""
        if self.beta is not None:
            return float(self.rng.beta(*self.beta))
        return float(self.fixed_rate)

    def step(self, shape: BatchShape) -> tuple[float, float]:
        s, j, d = self.coster.step(shape, self.k)
        self.totals["spec_draft_s"] += d
        if shape.decode_seqs:
            self._last_shape = shape
        return s, j

    def gains(self, rates: np.ndarray, remaining: np.ndarray) -> np.ndarray:
        """Accepted drafts plus the bonus token of each sequence (at most its remaining tokens)."""
        k = self.k
        accepted = self.sample(rates, k)
        emitted = np.minimum(accepted + 1, remaining)
        self.record(accepted, emitted, k)
        return emitted

    def sample(self, rates: np.ndarray, k: int) -> np.ndarray:
        """Accepted draft tokens per sequence: the run of leading successes among k positions."""
        n = rates.size
        # per-position rates [k] or per-sequence rates [n, 1]; the comparison broadcasts them over the draws
        p = self._pos[:k] if self._pos is not None else rates[:, None]
        if self.tree > 1:
            p = 1.0 - (1.0 - p) ** self.tree
        ok = self.rng.random((n, k)) < p
        return np.cumprod(ok, axis=1).sum(axis=1)

    def record(self, accepted: np.ndarray, emitted: np.ndarray, k: int) -> None:
        n = accepted.size
        acc = int(accepted.sum())
        t = self.totals
        t["spec_decode_steps"] += 1
        t["spec_seq_steps"] += n
        t["spec_k_sum"] += k * n
        t["spec_emitted"] += int(emitted.sum())
        t["spec_proposed"] += k * n
        t["spec_accepted"] += acc
        t["spec_rejections"] += int((accepted < k).sum())
        if self.spec.adaptive_k:
            # MLE of an i.i.d. rate from truncated geometric runs: successes / (successes + failures seen)
            self._acc_w += acc
            self._fail_w += int((accepted < k).sum())
            self._since_adapt += 1
            if self._since_adapt >= ADAPT_EVERY:
                self._adapt()

    def _adapt(self) -> None:
        """Pick the k in [k_min, k_max] with the most expected tokens per second at the last batch shape."""
        self._since_adapt = 0
        tot = self._acc_w + self._fail_w
        if tot <= 0 or self._last_shape is None:
            return
        a = self._acc_w / tot
        self._acc_w *= ADAPT_DECAY
        self._fail_w *= ADAPT_DECAY
        spec, shape = self.spec, self._last_shape
        best, best_rate = self.k, -1.0
        for k in range(spec.k_min, spec.k_max + 1):
            rates = np.full(k, a) if self._pos is None else self._pos[:k]
            if self.tree > 1:
                rates = 1.0 - (1.0 - rates) ** self.tree
            r = expected_tokens(rates) / self.coster.step(shape, k)[0]
            if r > best_rate:
                best, best_rate = k, r
        self.k = best

    def counters(self) -> dict[str, float]:
        return dict(self.totals)


def draft_cost_model(cost: CostModel, name: str) -> CostModel:
    """The drafter's CostModel on the target's GPUs: same quantization, the target's TP when it shards the
    drafter, else replicated (tp=1 math on every GPU)."""
    draft = load_model(name)
    par = ParallelSpec(tp=cost.parallel.tp)
    try:
        par.validate_for(draft)
    except ValueError:
        par = ParallelSpec()
    return CostModel(draft, cost.hardware, cost.quant, par, cost.calibration, cost.attn_backend)


def speculative_parts(group: ReplicaGroup, cost: CostModel, plan: MemoryPlan) -> tuple[StrategyMaker, MemoryPlan]:
    """(strategy maker given the run's Generator, memory plan with the drafter's weights and KV) of a replica
    group with `speculative` set."""
    spec = group.speculative
    assert spec is not None
    if cost.parallel.pp > 1:
        raise ValueError(f"speculative decoding with pp={cost.parallel.pp} is not modelled; use pp=1")
    draft = draft_cost_model(cost, spec.drafter.model) if spec.drafter.kind == "draft_model" else None
    coster = SpeculativeCoster(cost, spec, draft)
    extra_w = coster.extra_weight_bytes_per_gpu()
    extra_kv = coster.extra_kv_bytes_per_token()
    if extra_w or extra_kv:
        sched = group.scheduler
        plan = plan_memory(cost.model, cost.hardware, cost.quant, cost.parallel, group.gpu_memory_utilization,
                           max_batched_tokens=sched.max_batched_tokens, max_seqs=sched.max_num_seqs,
                           block_size=group.block_size, extra_bytes_per_gpu=extra_w)
        kv_tok = plan.kv_bytes_per_token + extra_kv
        blocks = int(plan.kv_capacity_bytes // (kv_tok * plan.block_size))
        if blocks < 1:
            raise DoesNotFitError(f"{cost.model.name} with drafter {spec.drafter.kind} leaves no KV blocks: "
                                  f"{plan.kv_capacity_bytes / 1e9:.2f} GB for {kv_tok / 1e3:.1f} kB per token "
                                  f"(target + drafter KV)")
        plan = dataclasses.replace(plan, kv_bytes_per_token=kv_tok, max_kv_tokens=blocks * plan.block_size)
    return (lambda rng: SpeculativeDecoding(cost, spec, rng, draft)), plan


def technique_summary(strategies: Iterable[DecodeStrategy], busy_s: float) -> dict[str, float]:
    """Speculation and early-exit figures of a run from the summed counters of its replicas' decode strategies
    (empty when neither technique is used); see docs/techniques.md."""
    tot: dict[str, float] = {}
    for st in strategies:
        for key, v in st.counters().items():
            tot[key] = tot.get(key, 0.0) + v
    out: dict[str, float] = {}
    nan = float("nan")
    if "spec_seq_steps" in tot:
        ss = tot["spec_seq_steps"]
        out["spec_tokens_per_step"] = tot["spec_emitted"] / ss if ss else nan
        out["spec_acceptance_rate"] = tot["spec_accepted"] / tot["spec_proposed"] if tot["spec_proposed"] else nan
        # per-token rate a: MLE from the runs of leading acceptances (successes / (successes + rejections))
        rej = tot["spec_rejections"]
        out["spec_alpha_estimate"] = tot["spec_accepted"] / (tot["spec_accepted"] + rej) if tot["spec_accepted"] + rej else nan
        out["spec_mean_k"] = tot["spec_k_sum"] / ss if ss else nan
        out["spec_decode_iterations"] = int(tot["spec_decode_steps"])
        out["spec_draft_time_fraction"] = tot["spec_draft_s"] / busy_s if busy_s > 0 else nan
    if "ee_tokens" in tot:
        t, L = tot["ee_tokens"], tot["ee_layers_x_tokens"]
        out["ee_mean_requested_depth"] = tot["ee_requested"] / t if t else nan
        out["ee_mean_executed_depth"] = tot["ee_executed"] / t if t else nan
        out["ee_depth_fraction"] = tot["ee_executed"] / L if L else nan
        out["ee_sync_loss_layers"] = (tot["ee_executed"] - tot["ee_requested"]) / t if t else nan
        out["ee_energy_saved_j"] = tot["ee_full_j"] - tot["ee_j"]
        out["ee_energy_saved_fraction"] = 1.0 - tot["ee_j"] / tot["ee_full_j"] if tot["ee_full_j"] else nan
        out["ee_time_saved_fraction"] = 1.0 - tot["ee_s"] / tot["ee_full_s"] if tot["ee_full_s"] else nan
    return out


__all__ = ["SpeculativeDecoding", "draft_cost_model", "speculative_parts", "technique_summary"]
