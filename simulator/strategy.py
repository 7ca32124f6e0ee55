"""The decode-strategy contract between a Replica and its decoding technique (plain, speculative, early exit):
cost of an iteration, tokens each decoding request gains, KV reservation and rollback, technique counters; plus
plain decoding and the two progress trackers (implicit lane counter, per-request slots) the techniques build on."""

from __future__ import annotations

import heapq
from array import array
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

import numpy as np

from roofsim.model.batch import BatchShape
from roofsim.model.cost import CostModel
from roofsim.model.graph import attention_kernels, linear_kernels
from roofsim.model.memory import MemoryPlan
from roofsim.simulator.kvcache import decode_phase
from roofsim.simulator.request import Request

if TYPE_CHECKING:
    from roofsim.simulator.replica import Lane, Replica


@runtime_checkable
class DecodeProgress(Protocol):
    """Per-replica bookkeeping of decoding requests: which tokens they gain, the KV they hold and reserve.

    The Replica calls, for each lane iteration in this order: `reserve` (through `Replica.prepare_decode`, from
    the scheduler), `context`, then the strategy's `step`, then `advance`; and `complete` when the iteration
    ends. Around those, `join` when a request starts decoding (after the replica set its state, kv_tokens, blocks
    and bumped its stint, and counted it in `lane.n_dec`) and `leave` when it stops (finish or preemption).
    Work per iteration must stay O(1) in the batch size where the tracker allows it (ARCHITECTURE.md).
    """

    # times of the decode tokens of a request (metrics.py); None: the lane series dec_end_s/dec_cum hold them
    token_times: Callable[[Request], np.ndarray] | None

    def join(self, lane: Lane, r: Request) -> None:
        """Track `r`, which starts decoding on `lane` with r.kv_tokens KV tokens in r.blocks blocks; set
        r.join_counter."""
        ...

    def leave(self, lane: Lane, r: Request) -> tuple[int, int]:
        """Stop tracking `r`: (its KV tokens now, tokens it gained since `join`). The replica then releases the
        blocks of those KV tokens and adds the gain to r.generated."""
        ...

    def reserve(self, lane: Lane, now: float) -> int:
        """Allocate the KV blocks the next decode step of `lane` may write, preempting (Replica.preempt_one)
        while the pool is short; returns the number of decoding sequences left."""
        ...

    def context(self, lane: Lane, n_dec: int) -> tuple[int, int]:
        """(decode_ctx_tokens, windowed decode_ctx_tokens or -1 without a sliding window) of this step."""
        ...

    def advance(self, lane: Lane, n_dec: int) -> None:
        """Decide the tokens each of the `n_dec` decoding sequences gains in the iteration just costed."""
        ...

    def complete(self, lane: Lane, end: float) -> None:
        """Apply the gains of the iteration ending at `end`, roll back unused KV, and call
        `Replica.finish_decoding` for every request that has all its tokens."""
        ...


@runtime_checkable
class DecodeStrategy(Protocol):
    """A decoding technique as the Replica sees it (one instance per replica; it may keep run counters).

    `step` costs an iteration: (seconds, joules). `progress(rep)` makes the replica's DecodeProgress, which
    decides the tokens each decoding request gains per iteration (plain: 1; early exit: 1, at a mix of depths;
    speculative: accepted drafts + the bonus token). `counters()` are summed over the replicas of a run into the
    technique figures of the summary (speculative.technique_summary). Extra memory (draft weights and KV) is
    applied to the MemoryPlan before the replica is built (see `*_parts` in run.py's STRATEGY_PARTS).
    Techniques that change the step's cost refuse pp > 1: a pipeline stage's time comes from the cost model.
    """

    cost: CostModel
    pp: int

    def progress(self, rep: Replica) -> DecodeProgress: ...

    def step(self, shape: BatchShape) -> tuple[float, float]: ...

    def counters(self) -> dict[str, float]: ...


class GainStrategy(DecodeStrategy, Protocol):
    """What SlotProgress asks of a strategy whose decoding requests gain different numbers of tokens."""

    def lookahead_tokens(self) -> int:
        """KV tokens a decoding sequence may write in one step (reserved before, rolled back after)."""
        ...

    def draw_rate(self) -> float:
        """A per-request parameter drawn when the request starts decoding (speculation: its acceptance rate)."""
        ...

    def gains(self, rates: np.ndarray, remaining: np.ndarray) -> np.ndarray:
        """Tokens each decoding sequence gains this step, 1 <= gain <= remaining (called once per step)."""
        ...


StrategyMaker = Callable[[np.random.Generator], DecodeStrategy]


class PlainDecoding:
    """Plain autoregressive decoding: every decoding sequence gains one token per iteration, costed by the
    CostModel (a subclass may override `step` to instrument it, as benchmarks/bench_scaling.py does)."""

    def __init__(self, cost: CostModel) -> None:
        self.cost = cost
        self.pp = cost.parallel.pp

    def progress(self, rep: Replica) -> DecodeProgress:
        return CounterProgress(rep)

    def step(self, shape: BatchShape) -> tuple[float, float]:
        return self.cost.step_seconds_energy(shape)

    def counters(self) -> dict[str, float]:
        return {}


class HostDispatchFloor:
    """A decode strategy run eagerly: the host dispatches every kernel of an iteration one by one, `s_per_launch`
    each, while the GPU runs the ones already queued, so an iteration takes max(GPU time, launches x
    s_per_launch) plus the framework overhead; the GPUs idle through the gap. Launches are counted from the op
    graph (model.graph: the token-linear kernels and the attention kernels of the step's phases). With
    `prompt_only` the engine replays CUDA graphs for generation-only iterations, so only iterations with a prompt
    pay the floor (TensorRT-LLM's PyTorch executor). A step with prefills then adds `prefill_s_per_seq` per prompt
    in it (ReplicaGroup.prefill_s_per_seq), the GPUs idling."""

    def __init__(self, inner: DecodeStrategy, s_per_launch: float, prompt_only: bool = False,
                 prefill_s_per_seq: float = 0.0) -> None:
        self.inner, self.cost, self.pp, self.s_per_launch = inner, inner.cost, inner.pp, s_per_launch
        self.prompt_only, self.prefill_s_per_seq = prompt_only, prefill_s_per_seq
        ctx = self.cost.ctx
        linear = sum(k.count for k in linear_kernels(ctx, 1, 1))
        decode = sum(k.count for k in attention_kernels(ctx, BatchShape(decode_seqs=1, decode_ctx_tokens=1)))
        prefill = sum(k.count for k in attention_kernels(
            ctx, BatchShape(prefill_tokens=1, prefill_seqs=1, prefill_attn_pairs=1.0)))
        # launches by (has prefill, has decode)
        self.launches = {(p, d): linear + p * prefill + d * decode for p in (0, 1) for d in (0, 1)}

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)  # the wrapped technique's extras (GainStrategy)

    def progress(self, rep: Replica) -> DecodeProgress:
        return self.inner.progress(rep)

    def counters(self) -> dict[str, float]:
        return self.inner.counters()

    def step(self, shape: BatchShape) -> tuple[float, float]:
        seconds, joules = self.inner.step(shape)
        if shape.is_empty or (self.prompt_only and not shape.prefill_tokens):
            return seconds, joules
        overhead = self.cost.overhead_seconds_energy(shape)[0]
        host = self.launches[bool(shape.prefill_tokens), bool(shape.decode_seqs)] * self.s_per_launch
        gap = max(host - (seconds - overhead), 0.0) + shape.prefill_seqs * self.prefill_s_per_seq
        if gap <= 0:
            return seconds, joules
        return seconds + gap, joules + self.cost.idle_energy_j(gap)


def plain_parts(group: object, cost: CostModel, plan: MemoryPlan) -> tuple[StrategyMaker, MemoryPlan]:
    """(strategy maker given the run's Generator, memory plan) of a plain replica group."""
    return (lambda rng: PlainDecoding(cost)), plan


class CounterProgress:
    """One token per decoding sequence per iteration, never iterated per step (O(1) per iteration).

    The lane's `counter` counts tokens emitted per decoding sequence; a request's progress is the counter minus
    its join_counter. `sum_kv` is the KV tokens of all decoding sequences, `phase_count` the blocks the next step
    needs, `finish_heap` the requests that finish keyed by the counter value at which they do (Lane's fields).
    """

    def __init__(self, rep: Replica) -> None:
        self.token_times: Callable[[Request], np.ndarray] | None = None  # the lane series hold them
        self.rep = rep
        self.B = rep.B
        self.window = rep.window

    def join(self, lane: Lane, r: Request) -> None:
        J = lane.counter
        kv = r.kv_tokens
        r.join_counter = J
        ph = decode_phase(J, kv, self.B)
        r.phase = ph
        lane.phase_count[ph] += 1
        lane.sum_kv += kv
        heapq.heappush(lane.finish_heap, (J + r.output_tokens - r.generated, r.id, r.stint, r))
        W = self.window
        if W is not None:
            if kv >= W:
                lane.n_cap += 1
            else:
                lane.sum_uncapped += kv
                heapq.heappush(lane.win_heap, (J + W - kv, r.id, r.stint, r))

    def leave(self, lane: Lane, r: Request) -> tuple[int, int]:
        emitted = lane.counter - r.join_counter
        kv = r.kv_tokens + emitted
        lane.phase_count[r.phase] -= 1
        lane.sum_kv -= kv
        if self.window is not None:
            if kv >= self.window:
                lane.n_cap -= 1
            else:
                lane.sum_uncapped -= kv
        r.segments[-1][3] = emitted
        return kv, emitted

    def reserve(self, lane: Lane, now: float) -> int:
        pool = self.rep.pool
        need = lane.phase_count[lane.counter % self.B]
        while need > pool.total - pool.used:
            if not self.rep.preempt_one(lane, now):
                break
            need = lane.phase_count[lane.counter % self.B]
        if lane.n_dec:
            pool.allocate(need)
        return lane.n_dec

    def context(self, lane: Lane, n_dec: int) -> tuple[int, int]:
        """O(1): every decoding sequence adds one KV token."""
        W = self.window
        if not n_dec:
            return 0, (0 if W is not None else -1)
        lane.sum_kv += n_dec
        if W is not None:
            lane.sum_uncapped += n_dec - lane.n_cap
            c_after = lane.counter + 1
            wh = lane.win_heap
            while wh and wh[0][0] <= c_after:
                _, _, stint, r = heapq.heappop(wh)
                if r.stint == stint:
                    lane.sum_uncapped -= W
                    lane.n_cap += 1
        return lane.sum_kv, (lane.sum_uncapped + lane.n_cap * W if W is not None else -1)

    def advance(self, lane: Lane, n_dec: int) -> None:
        if n_dec:
            lane.counter += 1

    def complete(self, lane: Lane, end: float) -> None:
        lane.dec_end_s.append(end)
        lane.dec_cum.append(lane.counter)
        fh = lane.finish_heap
        c = lane.counter
        while fh and fh[0][0] <= c:
            _, _, stint, r = heapq.heappop(fh)
            if r.stint == stint:
                self.rep.finish_decoding(lane, r, end)


class _Slots:
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


class SlotProgress:
    """Decoding requests that gain different numbers of tokens per iteration (the strategy's `gains`): per-request
    progress in numpy arrays, vectorised per iteration (no per-request Python loop), KV reserved for
    `lookahead_tokens` per sequence before the step and the blocks of tokens not gained released after it."""

    def __init__(self, rep: Replica, strategy: GainStrategy) -> None:
        self.rep = rep
        self.strategy = strategy
        self.lanes = [_Slots() for _ in rep.lanes]
        self._slot: dict[int, int] = {}
        self._segs: dict[int, list[list[int]]] = {}
        self.token_times: Callable[[Request], np.ndarray] | None = self._token_times

    def join(self, lane: Lane, r: Request) -> None:
        sl = self.lanes[lane.idx]
        slot = sl.alloc()
        sl.active[slot] = True
        sl.kv[slot] = r.kv_tokens
        sl.blocks[slot] = r.blocks
        sl.remaining[slot] = r.output_tokens - r.generated
        sl.rate[slot] = self.strategy.draw_rate()
        sl.req[slot] = r
        self._slot[r.id] = slot
        self._segs.setdefault(r.id, []).append([lane.idx, slot, len(sl.log_end), -1])
        r.join_counter = 0

    def leave(self, lane: Lane, r: Request) -> tuple[int, int]:
        sl = self.lanes[lane.idx]
        slot = self._slot.pop(r.id)
        emitted = int((r.output_tokens - r.generated) - sl.remaining[slot])
        kv = int(sl.kv[slot])
        sl.active[slot] = False
        sl.req[slot] = None
        sl.free.append(slot)
        self._segs[r.id][-1][3] = len(sl.log_end)
        return kv, emitted

    def reserve(self, lane: Lane, now: float) -> int:
        sl = self.lanes[lane.idx]
        pool = self.rep.pool
        q = self.strategy.lookahead_tokens()
        B = self.rep.B
        while True:
            h = sl.hw
            act = sl.active[:h]
            need_arr = np.where(act, -(-(sl.kv[:h] + q) // B) - sl.blocks[:h], 0)
            need = int(need_arr.sum())
            if need <= pool.total - pool.used or not self.rep.preempt_one(lane, now):
                break
        if lane.n_dec and need <= pool.total - pool.used:
            pool.allocate(need)
            sl.blocks[:h] += need_arr
        return lane.n_dec

    def context(self, lane: Lane, n_dec: int) -> tuple[int, int]:
        W = self.rep.window
        if not n_dec:
            return 0, (0 if W is not None else -1)
        sl = self.lanes[lane.idx]
        kv = sl.kv[: sl.hw][sl.active[: sl.hw]]
        d = int(kv.sum()) + n_dec  # one query token each (a speculative coster adds the draft tokens)
        return d, (int(np.minimum(kv + 1, W).sum()) if W is not None else -1)

    def advance(self, lane: Lane, n_dec: int) -> None:
        if not n_dec:
            return
        sl = self.lanes[lane.idx]
        idx = np.flatnonzero(sl.active[: sl.hw])
        sl.pending = (idx, self.strategy.gains(sl.rate[idx], sl.remaining[idx]))

    def complete(self, lane: Lane, end: float) -> None:
        sl = self.lanes[lane.idx]
        assert sl.pending is not None
        idx, emitted = sl.pending
        sl.pending = None
        sl.remaining[idx] -= emitted
        sl.kv[idx] += emitted
        # roll back the KV of tokens not gained (rejected drafts): keep the blocks the gained tokens fill
        keep = -(-sl.kv[idx] // self.rep.B)
        self.rep.pool.release(int((sl.blocks[idx] - keep).sum()))
        sl.blocks[idx] = keep
        row = np.zeros(sl.hw, dtype=np.int8)
        row[idx] = emitted
        sl.log_end.append(end)
        sl.log_emit.append(row)
        for slot in idx[sl.remaining[idx] <= 0].tolist():
            r = sl.req[slot]
            assert r is not None
            self.rep.finish_decoding(lane, r, end)

    def _token_times(self, r: Request) -> np.ndarray:
        """Times of the tokens `r` got from decode iterations (several tokens can share an iteration's end)."""
        parts: list[np.ndarray] = []
        for li, slot, it0, it1 in self._segs.get(r.id, ()):
            sl = self.lanes[li]
            if it1 < 0:
                it1 = len(sl.log_end)
            ends = np.frombuffer(sl.log_end, np.float64)[it0:it1]
            counts = np.fromiter((row[slot] if slot < row.size else 0 for row in sl.log_emit[it0:it1]),
                                 np.int64, it1 - it0)
            parts.append(np.repeat(ends, counts))
        return np.concatenate(parts) if parts else np.empty(0)


__all__ = ["CounterProgress", "DecodeProgress", "DecodeStrategy", "GainStrategy", "HostDispatchFloor", "PlainDecoding",
           "SlotProgress", "StrategyMaker", "plain_parts"]
