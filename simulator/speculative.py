"""Speculative decoding in the simulator: a StepModel that costs draft + verification and samples accepted tokens
from the run's Generator, and a Replica whose lanes keep per-request progress in numpy arrays (vectorised per
iteration, no per-request Python loop), with KV lookahead allocation and rollback of rejected tokens."""

from __future__ import annotations

import dataclasses
import logging
from array import array
from collections.abc import Callable
from typing import Any

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
from roofsim.simulator.early_exit import EarlyExitStepModel
from roofsim.simulator.replica import Lane, Replica, StepModel
from roofsim.simulator.request import DECODING, Request

logger = logging.getLogger(__name__)

ADAPT_EVERY = 16  # decode steps between re-choosing k (adaptive_k); keeps the k search off most iterations
ADAPT_DECAY = 0.9  # weight of the past in the acceptance estimate per adaptation window


class SpeculativeStepModel(StepModel):
    """Cost of a speculative iteration (draft passes + verification) and the acceptance sampler.

    `step` returns k, the draft length of this iteration; the replica then calls `sample(rates, k)` once for
    the whole batch (vectorised) and `record` with the outcome."""

    def __init__(self, cost: CostModel, spec: SpeculativeConfig, rng: np.random.Generator,
                 draft: CostModel | None = None) -> None:
        super().__init__(cost)
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
        # counters (summed over the run)
        self.decode_steps = 0
        self.seq_steps = 0  # decoding sequences x decode iterations
        self.emitted = 0
        self.proposed = 0  # draft positions offered (k per sequence per step; a tree counts its depth)
        self.accepted = 0
        self.draft_s = 0.0
        self.rejections = 0
        self.k_sum = 0
        self._acc_w = 0.0
        self._fail_w = 0.0
        self._since_adapt = 0
        self._last_shape: BatchShape | None = None

    def verify_tokens(self) -> int:
        return self.spec.verify_tokens(self.k)

    def draw_rate(self) -> float:
        """Acceptance rate of a request starting to decode (Beta: one draw from the run's Generator)."""
        if self.beta is not None:
            return float(self.rng.beta(*self.beta))
        return float(self.fixed_rate)

    def step(self, shape: BatchShape) -> tuple[float, float, int]:
        if shape.decode_seqs == 0:
            s, j, d = self.coster.step(shape, self.k)
            self.draft_s += d
            return s, j, 1
        s, j, d = self.coster.step(shape, self.k)
        self.draft_s += d
        self._last_shape = shape
        return s, j, self.k

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
        self.decode_steps += 1
        self.seq_steps += n
        self.k_sum += k * n
        self.emitted += int(emitted.sum())
        self.proposed += k * n
        self.accepted += acc
        self.rejections += int((accepted < k).sum())
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
        return {"spec_decode_steps": self.decode_steps, "spec_seq_steps": self.seq_steps,
                "spec_emitted": self.emitted, "spec_proposed": self.proposed, "spec_accepted": self.accepted,
                "spec_draft_s": self.draft_s, "spec_k_sum": self.k_sum,
                "spec_rejections": self.rejections}


class _SpecLane:
    """Per-request decode progress of one lane as parallel numpy arrays indexed by slot."""

    __slots__ = ("active", "kv", "blocks", "remaining", "rate", "req", "free", "hw", "log_end", "log_emit",
                 "pending")

    def __init__(self, cap: int = 64) -> None:
        self.active = np.zeros(cap, dtype=bool)
        self.kv = np.zeros(cap, dtype=np.int64)
        self.blocks = np.zeros(cap, dtype=np.int64)
        self.remaining = np.zeros(cap, dtype=np.int64)
        self.rate = np.zeros(cap, dtype=np.float64)
        self.req: list[Request | None] = [None] * cap
        self.free: list[int] = list(range(cap - 1, -1, -1))
        self.hw = 0  # slots ever used (high-water mark)
        self.log_end = array("d")  # end time of each decode iteration of this lane
        self.log_emit: list[np.ndarray] = []  # tokens emitted per slot in that iteration (length hw then)
        self.pending: tuple[np.ndarray, np.ndarray] | None = None

    def alloc(self) -> int:
        if not self.free:
            cap = self.kv.size
            for name in ("active", "kv", "blocks", "remaining", "rate"):
                old = getattr(self, name)
                new = np.zeros(2 * cap, dtype=old.dtype)
                new[:cap] = old
                setattr(self, name, new)
            self.req.extend([None] * cap)
            self.free = list(range(2 * cap - 1, cap - 1, -1))
        slot = self.free.pop()
        self.hw = max(self.hw, slot + 1)
        return slot


class SpeculativeReplica(Replica):
    """A replica whose decoding sequences advance by different numbers of tokens per iteration."""

    step_model: SpeculativeStepModel

    def __init__(self, *args: Any, **kw: Any) -> None:
        super().__init__(*args, **kw)
        self.spec_lanes = [_SpecLane() for _ in self.lanes]
        self._slot: dict[int, int] = {}
        self._segs: dict[int, list[list[int]]] = {}

    # -- joining and leaving: O(1) per request ------------------------------------------------------------
    def _join_decode(self, lane: Lane, r: Request, kv: int, blocks: int) -> None:
        sl = self.spec_lanes[lane.idx]
        slot = sl.alloc()
        sl.active[slot] = True
        sl.kv[slot] = kv
        sl.blocks[slot] = blocks
        sl.remaining[slot] = r.output_tokens - r.generated
        sl.rate[slot] = self.step_model.draw_rate()
        sl.req[slot] = r
        self._slot[r.id] = slot
        self._segs.setdefault(r.id, []).append([lane.idx, slot, len(sl.log_end), -1])
        r.state = DECODING
        r.join_counter = 0
        r.kv_tokens = kv
        r.blocks = blocks
        r.stint += 1
        lane.n_dec += 1

    def _leave_decode(self, lane: Lane, r: Request) -> int:
        sl = self.spec_lanes[lane.idx]
        slot = self._slot.pop(r.id)
        emitted = int((r.output_tokens - r.generated) - sl.remaining[slot])
        kv = int(sl.kv[slot])
        sl.active[slot] = False
        sl.req[slot] = None
        sl.free.append(slot)
        self._segs[r.id][-1][3] = len(sl.log_end)
        r.generated += emitted
        r.join_counter = -1
        r.stint += 1
        lane.n_dec -= 1
        return kv

    # -- one iteration: vectorised over the lane's slots -------------------------------------------------
    def prepare_decode(self, lane: Lane, now: float) -> int:
        """Reserve KV for the verification tokens of every decoding sequence (lookahead slots), preempting
        (LIFO) while the pool is short."""
        sl = self.spec_lanes[lane.idx]
        q = self.step_model.verify_tokens()
        B = self.B
        while True:
            h = sl.hw
            act = sl.active[:h]
            need_arr = np.where(act, -(-(sl.kv[:h] + q) // B) - sl.blocks[:h], 0)
            need = int(need_arr.sum())
            if need <= self.pool.total - self.pool.used or not self.preempt_one(lane, now):
                break
        if lane.n_dec and need <= self.pool.total - self.pool.used:
            self.pool.allocate(need)
            sl.blocks[:h] += need_arr
        return lane.n_dec

    def _decode_context(self, lane: Lane, n_dec: int) -> tuple[int, int]:
        W = self.window
        if not n_dec:
            return 0, (0 if W is not None else -1)
        sl = self.spec_lanes[lane.idx]
        kv = sl.kv[: sl.hw][sl.active[: sl.hw]]
        d = int(kv.sum()) + n_dec  # one query token each (the coster adds the draft tokens)
        return d, (int(np.minimum(kv + 1, W).sum()) if W is not None else -1)

    def _advance_decode(self, lane: Lane, n_dec: int, k: int) -> None:
        if not n_dec:
            return
        sl = self.spec_lanes[lane.idx]
        idx = np.flatnonzero(sl.active[: sl.hw])
        accepted = self.step_model.sample(sl.rate[idx], k)
        emitted = np.minimum(accepted + 1, sl.remaining[idx])  # accepted drafts plus the bonus token
        self.step_model.record(accepted, emitted, k)
        sl.pending = (idx, emitted)

    def _end_decode(self, lane: Lane, end: float) -> None:
        sl = self.spec_lanes[lane.idx]
        assert sl.pending is not None
        idx, emitted = sl.pending
        sl.pending = None
        sl.remaining[idx] -= emitted
        sl.kv[idx] += emitted
        # roll back the KV of rejected draft tokens: keep the blocks the accepted tokens fill
        keep = -(-sl.kv[idx] // self.B)
        self.pool.release(int((sl.blocks[idx] - keep).sum()))
        sl.blocks[idx] = keep
        row = np.zeros(sl.hw, dtype=np.int8)
        row[idx] = emitted
        sl.log_end.append(end)
        sl.log_emit.append(row)
        for slot in idx[sl.remaining[idx] <= 0].tolist():
            r = sl.req[slot]
            assert r is not None
            self._finish(lane, r, end, decoding=True)

    def decode_token_times(self, r: Request) -> np.ndarray:
        """Times of the tokens `r` got from decode iterations (several tokens can share an iteration's end)."""
        parts: list[np.ndarray] = []
        for li, slot, it0, it1 in self._segs.get(r.id, ()):
            sl = self.spec_lanes[li]
            if it1 < 0:
                it1 = len(sl.log_end)
            ends = np.frombuffer(sl.log_end, np.float64)[it0:it1]
            counts = np.fromiter((row[slot] if slot < row.size else 0 for row in sl.log_emit[it0:it1]),
                                 np.int64, it1 - it0)
            parts.append(np.repeat(ends, counts))
        return np.concatenate(parts) if parts else np.empty(0)


def draft_cost_model(cost: CostModel, name: str) -> CostModel:
    """The drafter's CostModel on the target's GPUs: same quantization, the target's TP when it shards the
    drafter, else replicated (tp=1 math on every GPU)."""
    draft = load_model(name)
    par = ParallelSpec(tp=cost.parallel.tp)
    try:
        par.validate_for(draft)
    except ValueError:
        par = ParallelSpec()
    return CostModel(draft, cost.hardware, cost.quant, par, cost.calibration)


def technique_parts(group: Any, cost: CostModel, plan: MemoryPlan,
                    ) -> tuple[Callable[[np.random.Generator], StepModel] | None, MemoryPlan, type[Replica]]:
    """(step-model maker given the run's Generator, memory plan with the drafter's memory, replica class) of a
    ReplicaGroup with `speculative` or `early_exit` set; (None, plan, Replica) for a plain group."""
    spec, ee = group.speculative, group.early_exit
    if spec is None and ee is None:
        return None, plan, Replica
    if spec is not None and ee is not None:
        raise ValueError("speculative and early_exit cannot both be set on a replica group; for early-exit "
                         "drafting use speculative.drafter.kind = 'layerskip'")
    if ee is not None:
        EarlyExitStepModel(cost, ee, np.random.default_rng(0))  # validate now (exit layers vs depth, pp)
        return (lambda rng: EarlyExitStepModel(cost, ee, rng)), plan, Replica
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
    return (lambda rng: SpeculativeStepModel(cost, spec, rng, draft)), plan, SpeculativeReplica


def technique_summary(step_models: list[StepModel], busy_s: float) -> dict[str, float]:
    """Speculation and early-exit figures of a run (empty when neither is used); see docs/techniques.md."""
    tot: dict[str, float] = {}
    for sm in step_models:
        f = getattr(sm, "counters", None)
        if f is None:
            continue
        for key, v in f().items():
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


__all__ = ["SpeculativeReplica", "SpeculativeStepModel", "draft_cost_model", "technique_parts", "technique_summary"]
