"""Replica scheduler policies: each decides what one iteration of a lane runs (which waiting requests to admit,
which prefill chunks, whether running requests decode). One dict maps the config `kind` to the policy."""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import TYPE_CHECKING

from roofsim.hardware_specs.errors import UnknownNameError
from roofsim.model.batch import BatchShape
from roofsim.simulator.request import Request

if TYPE_CHECKING:
    from roofsim.simulator.config import SchedulerConfig
    from roofsim.simulator.replica import Lane, Replica

Chunks = list[tuple[Request, int]]


class Scheduler:
    """Base policy. `form` fills `chunks` with (request, new prefill tokens) and returns the number of
    sequences that decode this iteration (after `Replica.prepare_decode`, which may preempt)."""

    keyed = False  # waiting queue ordered by predicted output length instead of FCFS
    chunked = False

    def __init__(self, cfg: SchedulerConfig) -> None:
        self.cfg = cfg

    def never_fits(self, rep: Replica, r: Request) -> str:
        if not self.chunked and r.input_tokens > self.cfg.max_batched_tokens:
            return (f"prompt of {r.input_tokens} tokens exceeds max_batched_tokens={self.cfg.max_batched_tokens} "
                    f"and scheduler {self.cfg.kind!r} does not chunk prompts")
        return ""

    def form(self, rep: Replica, lane: Lane, now: float, chunks: Chunks) -> int:
        raise NotImplementedError

    def mixed_token_budget(self) -> int | None:
        """Most tokens of an iteration that mixes prompt and decode tokens; None: the policy never mixes them."""
        return None

    def min_seconds_per_request(self, prefill_s: float, decode_s: float, tokens: float, lanes: int,
                                step_seconds: Callable[[BatchShape], float]) -> float:
        """Lower bound of the replica time one request takes in steady state (the capacity planner's analytical
        bound is its inverse), from the request's prompt and decode times at the replica's best throughput,
        its prompt + decode tokens and the pipeline lanes."""
        at_best = max(decode_s, prefill_s)  # prefills and decodes overlap at best
        budget = self.mixed_token_budget()
        if budget is None:
            return at_best
        # mixed iterations of at most `budget` tokens: every prompt and decode token takes a slot, and no token
        # of an iteration costs less than a prompt token of a full budget with no attention context
        full = step_seconds(BatchShape(prefill_tokens=budget, prefill_seqs=1, prefill_attn_pairs=0))
        return max(at_best, tokens * full / budget / lanes)

    # -- shared pieces ----------------------------------------------------------------------------------
    @staticmethod
    def balanced(rep: Replica, lane: Lane) -> bool:
        """With pipeline lanes, a lane admits only while it holds no more than the emptiest lane plus its
        share of the queue (vLLM gives each request to the virtual engine with the fewest unfinished ones)."""
        if rep.pp == 1:
            return True
        least = min(len(other.running) for other in rep.lanes)
        return len(lane.running) <= least + len(rep.waiting) // rep.pp  # its share of the queue

    def swap_ins(self, rep: Replica, lane: Lane) -> None:
        """Bring swapped-out requests back (oldest first) while blocks and the sequence limit allow."""
        pool = rep.pool
        while rep.swapped and len(lane.running) < self.cfg.max_num_seqs:
            r = rep.swapped[0]
            if not pool.can_admit(pool.blocks_for(r.kv_tokens)):
                break
            rep.swapped.popleft()
            rep.swap_in(lane, r)

    def admit_whole(self, rep: Replica, lane: Lane, now: float, chunks: Chunks, budget: int,
                    reserve_full: bool = False, arrived_by: float = math.inf, no_evict: bool = False) -> None:
        """Admit waiting requests with their whole prompt in this iteration while the token budget, the
        sequence limit and free KV blocks allow (head-of-line: stop at the first that does not fit, or that
        arrived after `arrived_by`). A prompt longer than max_batched_tokens (only a recompute after
        preemption) is admitted alone. `no_evict`: the blocks of every running request's whole sequence
        (input + output) count as taken, so admitted requests never run out of KV (TensorRT-LLM's
        GUARANTEED_NO_EVICT)."""
        pool = rep.pool
        waiting = rep.waiting
        max_seqs = self.cfg.max_num_seqs
        reserved = 0
        # blocks promised to running requests until they finish (their whole sequence), under no_evict
        promised = sum(pool.blocks_for(q.input_tokens + q.output_tokens)
                       for ln in rep.lanes for q in ln.running) if no_evict else 0
        while waiting and len(lane.running) < max_seqs and self.balanced(rep, lane):
            r = waiting.peek()
            assert r is not None
            if r.arrival_s > arrived_by:
                break
            target = r.input_tokens + r.generated
            new = rep.new_prefill_tokens(r, target)  # = target unless prefix-cache hits
            if new > budget and (chunks or new <= self.cfg.max_batched_tokens):
                break
            blocks = pool.blocks_for(r.input_tokens + r.output_tokens if reserve_full else target)
            if not pool.can_admit(blocks + reserved):
                break
            if no_evict:
                whole = pool.blocks_for(r.input_tokens + r.output_tokens)
                if promised + whole > pool.total - pool.watermark:
                    break
                promised += whole
            if reserve_full:
                reserved += blocks - pool.blocks_for(target)
            waiting.pop()
            rep.admit(lane, r, now)
            chunks.append((r, new))
            budget -= new


class StaticBatching(Scheduler):
    """FasterTransformer: when the lane is empty, admit a batch (KV reserved for input+output), prefill it in
    one iteration, then decode until every request of the batch has finished; nobody joins meanwhile."""

    def form(self, rep: Replica, lane: Lane, now: float, chunks: Chunks) -> int:
        if lane.running:
            return rep.prepare_decode(lane, now)
        self.swap_ins(rep, lane)
        if lane.running:
            return rep.prepare_decode(lane, now)
        self.admit_whole(rep, lane, now, chunks, self.cfg.max_batched_tokens, reserve_full=True)
        return 0


class VLLMBatching(Scheduler):
    """vLLM v0 default: swapped requests come back first; if none are left swapped and the head of the queue
    fits, the iteration prefills waiting requests only; otherwise every running request decodes."""

    def form(self, rep: Replica, lane: Lane, now: float, chunks: Chunks) -> int:
        self.swap_ins(rep, lane)
        if not rep.swapped and rep.waiting:
            self.admit_whole(rep, lane, now, chunks, self.cfg.max_batched_tokens)
            if chunks:
                return 0
        return rep.prepare_decode(lane, now)

    def min_seconds_per_request(self, prefill_s: float, decode_s: float, tokens: float, lanes: int,
                                step_seconds: Callable[[BatchShape], float]) -> float:
        # an iteration is prefills only or decodes only, so a request's two costs add up
        return decode_s + prefill_s


class SJFBatching(VLLMBatching):
    """vLLM batching with the waiting queue ordered by predicted output length (shortest first)."""

    keyed = True


class OrcaBatching(Scheduler):
    """Orca: every iteration decodes all running requests and adds whole prompts within the token budget.

    With `overlap` (TensorRT-LLM 1.x's overlap scheduler) the executor fetches new requests and forms iteration
    n+1 while iteration n runs on the GPU, so a busy lane admits only requests that had arrived when its previous
    iteration was formed; an idle lane admits at once (the executor blocks on its request queue). With
    `no_evict` (TensorRT-LLM's GUARANTEED_NO_EVICT) a request joins only when the KV pool can hold it and every
    running request to completion."""

    def __init__(self, cfg: SchedulerConfig) -> None:
        super().__init__(cfg)
        self.formed_s: dict[int, float] = {}  # lane id -> when its previous iteration was formed

    def form(self, rep: Replica, lane: Lane, now: float, chunks: Chunks) -> int:
        busy = bool(lane.running)
        self.swap_ins(rep, lane)
        n_dec = rep.prepare_decode(lane, now)
        arrived_by = math.inf
        if getattr(self.cfg, "overlap", False):
            if busy:
                arrived_by = self.formed_s.get(id(lane), math.inf)
            self.formed_s[id(lane)] = now
        if not rep.swapped:
            self.admit_whole(rep, lane, now, chunks, self.cfg.max_batched_tokens - n_dec, arrived_by=arrived_by,
                             no_evict=getattr(self.cfg, "no_evict", False))
        return n_dec

    def mixed_token_budget(self) -> int | None:
        return self.cfg.max_batched_tokens


class SarathiBatching(Scheduler):
    """Sarathi-Serve stall-free batching: decodes first, then chunks of in-progress prompts, then new prompts,
    until the iteration holds min(chunk_size, max_batched_tokens) tokens."""

    chunked = True

    def form(self, rep: Replica, lane: Lane, now: float, chunks: Chunks) -> int:
        self.swap_ins(rep, lane)
        n_dec = rep.prepare_decode(lane, now)
        budget = min(self.cfg.chunk_size, self.cfg.max_batched_tokens) - n_dec  # type: ignore[union-attr]
        for r in lane.prefilling:
            if budget <= 0:
                break
            new = min(budget, r.prefill_target - r.prefilled)
            chunks.append((r, new))
            budget -= new
        if rep.swapped:
            return n_dec
        pool = rep.pool
        waiting = rep.waiting
        while budget > 0 and waiting and len(lane.running) < self.cfg.max_num_seqs and self.balanced(rep, lane):
            w = waiting.peek()  # not `r`: that name is the Request of the prefilling loop above
            assert w is not None
            if not pool.can_admit(pool.blocks_for(w.input_tokens + w.generated)):
                break
            waiting.pop()
            rep.admit(lane, w, now)
            new = min(budget, w.prefill_target - w.prefilled)  # prefilled = prefix-cache hit tokens
            chunks.append((w, new))
            budget -= new
        return n_dec

    def mixed_token_budget(self) -> int | None:
        return min(self.cfg.chunk_size, self.cfg.max_batched_tokens)  # type: ignore[union-attr]


SCHEDULERS: dict[str, type[Scheduler]] = {
    "static": StaticBatching,
    "vllm": VLLMBatching,
    "orca": OrcaBatching,
    "sarathi": SarathiBatching,
    "sjf": SJFBatching,
}


def make_scheduler(cfg: SchedulerConfig) -> Scheduler:
    kind = getattr(cfg, "kind", None)
    if kind not in SCHEDULERS:
        raise UnknownNameError("scheduler kind", str(kind), SCHEDULERS)
    return SCHEDULERS[kind](cfg)


__all__ = ["SCHEDULERS", "OrcaBatching", "SJFBatching", "SarathiBatching", "Scheduler", "StaticBatching",
           "VLLMBatching", "make_scheduler"]
